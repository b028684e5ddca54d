// SPDX-License-Identifier: GPL-2.0-only
/*
 * The guard's kernel SQL lexer, run in the kernel with BPF_PROG_TEST_RUN
 * (tests/bpf/lex_test.bpf.c) over an evasion corpus that must be read as
 * what it is, an allow corpus that must not, and the bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "dbwarden_abi.h"

struct lex_args {
	__u32 len;
	__u32 rc;
	struct dbw_lex_result res;
};

struct lexer {
	struct bpf_object *obj;
	int prog_fd, my_fd, buf_fd, ncpu;
	int mysql; /* lex with MySQL's rules */
	__u8 *vals; /* one DBW_LEX_MAX value per CPU */
};

static int setup(void **state)
{
	struct lexer *l = calloc(1, sizeof(*l));

	l->obj = bpf_object__open_file(DBW_TEST_BPF_DIR "/lex_test.bpf.o", NULL);
	if (!l->obj || bpf_object__load(l->obj)) {
		fprintf(stderr, "cannot load lex_test.bpf.o (needs root and BPF)\n");
		return -1;
	}
	l->prog_fd = bpf_program__fd(bpf_object__find_program_by_name(l->obj, "lex_run"));
	l->my_fd = bpf_program__fd(bpf_object__find_program_by_name(l->obj, "lex_run_mysql"));
	l->buf_fd = bpf_map__fd(bpf_object__find_map_by_name(l->obj, "lex_buf"));
	l->ncpu = libbpf_num_possible_cpus();
	l->vals = calloc(l->ncpu, DBW_LEX_MAX);
	*state = l;
	return 0;
}

static int teardown(void **state)
{
	struct lexer *l = *state;

	if (!l)
		return 0; /* setup failed, and said why */
	bpf_object__close(l->obj);
	free(l->vals);
	free(l);
	return 0;
}

/* Lex text (len bytes) in the kernel. */
static struct dbw_lex_result lexn(void **state, const char *text, size_t len)
{
	struct lexer *l = *state;
	struct lex_args a = { .len = len };
	/* a syscall program's context is copied back into ctx_in */
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &a, .ctx_size_in = sizeof(a));
	__u32 zero = 0;
	size_t n = len < DBW_LEX_MAX ? len : DBW_LEX_MAX;

	for (int cpu = 0; cpu < l->ncpu; cpu++)
		memcpy(l->vals + (size_t)cpu * DBW_LEX_MAX, text, n);
	assert_int_equal(bpf_map_update_elem(l->buf_fd, &zero, l->vals, 0), 0);
	assert_int_equal(bpf_prog_test_run_opts(l->mysql ? l->my_fd : l->prog_fd, &opts), 0);
	assert_int_equal(a.rc, 0);
	return a.res;
}

static struct dbw_lex_result lex(void **state, const char *text)
{
	return lexn(state, text, strlen(text));
}

#define V(x) (1u << DBW_VERB_##x)
#define WW   DBW_LEX_F_WITHOUT_WHERE
#define DYN  DBW_LEX_F_DYNAMIC

struct lex_case {
	const char *sql;
	__u32 verbs, flags, nstmts;
};

static void check(void **state, const struct lex_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct dbw_lex_result r = lex(state, c[i].sql);

		if (r.verbs != c[i].verbs || r.flags != c[i].flags || r.nstmts != c[i].nstmts)
			fail_msg("%s: verbs %#x flags %#x nstmts %u, want %#x %#x %u", c[i].sql,
				 r.verbs, r.flags, r.nstmts, c[i].verbs, c[i].flags, c[i].nstmts);
	}
}

/* However a DROP or a WHERE-less DELETE is spelled, it is read as one. */
static void test_evasions(void **state)
{
	static const struct lex_case cases[] = {
		{ "DROP TABLE t", V(DROP), 0, 1 },
		{ "dRoP\t\n  TaBlE t", V(DROP), 0, 1 },
		{ "/* x */DROP/* y */TABLE t", V(DROP), 0, 1 },
		{ "DROP -- comment\nTABLE t", V(DROP), 0, 1 },
		{ "/* /* nested */ DROP TABLE fake */ DROP TABLE t", V(DROP), 0, 1 },
		{ "SELECT 1; DROP TABLE t", V(SELECT) | V(DROP), 0, 2 },
		{ "SELECT 1;DROP TABLE t;", V(SELECT) | V(DROP), 0, 2 },
		{ "  (  SELECT 1 ) ; ; DROP TABLE IF EXISTS t", V(SELECT) | V(DROP), 0, 2 },
		{ "SELECT 'a''b'; DROP TABLE t", V(SELECT) | V(DROP), 0, 2 },
		{ "SELECT E'\\''; DROP TABLE t", V(SELECT) | V(DROP), 0, 2 },
		{ "SELECT $x$ $$ $x$; DROP TABLE t", V(SELECT) | V(DROP), 0, 2 },
		{ "SELECT \"a\"\"b\"; DROP TABLE t", V(SELECT) | V(DROP), 0, 2 },
		{ "TRUNCATE t", V(TRUNCATE), 0, 1 },
		{ "DELETE FROM t", V(DELETE), WW, 1 },
		{ "delete from t;", V(DELETE), WW, 1 },
		{ "UPDATE t SET a = 1", V(UPDATE), WW, 1 },
		{ "UPDATE t SET a = (SELECT b FROM u WHERE c = 1)", V(UPDATE) | V(SELECT), WW, 1 },
		{ "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", V(DELETE) | V(SELECT),
		  WW, 1 },
		{ "WITH RECURSIVE r AS (SELECT 1), d AS (DELETE FROM t) SELECT 1",
		  V(SELECT) | V(DELETE), WW, 1 },
		{ "EXPLAIN ANALYZE DELETE FROM t", V(EXPLAIN) | V(DELETE), WW, 1 },
		{ "EXPLAIN (ANALYZE, FORMAT JSON) DELETE FROM t", V(EXPLAIN) | V(DELETE), WW, 1 },
		{ "PREPARE p AS DELETE FROM t", V(PREPARE) | V(DELETE), WW, 1 },
		{ "COPY (DELETE FROM t RETURNING *) TO STDOUT", V(COPY) | V(DELETE), WW, 1 },
		{ "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$", V(DO), DYN, 1 },
		{ "DO $f$ BEGIN EXECUTE 'DROP TABLE t'; END $f$ LANGUAGE plpgsql", V(DO), DYN, 1 },
		{ "EXECUTE p", V(EXECUTE), DYN, 1 },
		{ "CALL wipe()", V(CALL), DYN, 1 },
	};

	check(state, cases, sizeof(cases) / sizeof(cases[0]));
}

/* Words in strings, comments, identifiers and clauses are not verbs. */
static void test_allowed(void **state)
{
	static const struct lex_case cases[] = {
		{ "SELECT 'DROP TABLE t'", V(SELECT), 0, 1 },
		{ "SELECT \"drop\" FROM x", V(SELECT), 0, 1 },
		{ "SELECT 1 -- DROP TABLE t", V(SELECT), 0, 1 },
		{ "SELECT /* DROP TABLE t */ 1", V(SELECT), 0, 1 },
		{ "SELECT $$DROP TABLE t$$", V(SELECT), 0, 1 },
		{ "SELECT $tag$ '; DROP TABLE t; $$ $tag$", V(SELECT), 0, 1 },
		{ "SELECT E'\\' DROP TABLE t'", V(SELECT), 0, 1 },
		{ "DELETE FROM t WHERE id = 1", V(DELETE), 0, 1 },
		{ "DELETE FROM t USING u WHERE t.id = u.id", V(DELETE), 0, 1 },
		{ "UPDATE t SET a = 1 WHERE b = 2", V(UPDATE), 0, 1 },
		{ "SELECT * FROM t FOR UPDATE", V(SELECT), 0, 1 },
		{ "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 2",
		  V(INSERT) | V(VALUES), 0, 1 },
		{ "SELECT drop, delete FROM t", V(SELECT), 0, 1 },
		{ "INSERT INTO t SELECT * FROM u", V(INSERT) | V(SELECT), 0, 1 },
		{ "BEGIN; COMMIT", V(BEGIN) | V(COMMIT), 0, 2 },
		{ "SELECT $1::int + 1.5e-3", V(SELECT), 0, 1 },
		{ "", 0, 0, 0 },
		{ "-- only a comment", 0, 0, 0 },
	};

	check(state, cases, sizeof(cases) / sizeof(cases[0]));
}

static __u64 h(const char *name)
{
	return dbw_name_hash(name, strlen(name));
}

static void assert_objects(struct dbw_lex_result r, const char **names, __u32 n)
{
	assert_int_equal(r.nobjects, n);
	for (__u32 i = 0; i < n; i++)
		if (r.objects[i] != h(names[i]))
			fail_msg("object %u: want %s", i, names[i]);
}

static void test_objects(void **state)
{
	assert_objects(lex(state, "DROP TABLE a, b"), (const char *[]){ "a", "b" }, 2);
	assert_objects(lex(state, "DROP TABLE IF EXISTS Public.Users"),
		       (const char *[]){ "public.users" }, 1);
	assert_objects(lex(state, "drop table \"Odd\".\"Na\"\"me\""),
		       (const char *[]){ "Odd.Na\"me" }, 1);
	assert_objects(lex(state, "TRUNCATE TABLE ONLY x, y"), (const char *[]){ "x", "y" }, 2);
	assert_objects(lex(state, "UPDATE users SET a = 1 WHERE id = 2"),
		       (const char *[]){ "users" }, 1);
	assert_objects(lex(state, "INSERT INTO s.t (a, b) VALUES (1, 2)"),
		       (const char *[]){ "s.t" }, 1);
	assert_objects(lex(state, "SELECT * FROM a x, b AS y JOIN c ON c.id = x.id WHERE d = 1"),
		       (const char *[]){ "a", "b", "c" }, 3);
	assert_objects(lex(state, "DELETE FROM comment WHERE id = 1"),
		       (const char *[]){ "comment" }, 1);
	assert_objects(lex(state, "SELECT 1 FROM (SELECT 2) s"), (const char *[]){ NULL }, 0);
	/* more relations than kept: flagged, so a rule on objects still holds */
	assert_true(lex(state, "SELECT * FROM a, b, c, d, e, f, g, h, i").flags &
		    DBW_LEX_F_OBJECTS_FULL);
}

static void test_bounds(void **state)
{
	size_t n = DBW_LEX_MAX + 1;
	char *big = malloc(n + 1);
	struct dbw_lex_result r;

	memset(big, ' ', n);
	memcpy(big, "SELECT 1", 8);
	memcpy(big + n - 12, "; DROP TABLE", 12);
	big[n] = 0;
	/* the DROP is past what the lexer reads: it says so */
	r = lexn(state, big, n);
	assert_true(r.flags & DBW_LEX_F_INCOMPLETE);
	free(big);
	assert_true(lex(state, "SELECT 'unterminated").flags & DBW_LEX_F_UNTERMINATED);
	assert_true(lex(state, "SELECT 1 /* open comment").flags & DBW_LEX_F_UNTERMINATED);
	assert_true(lex(state, "SELECT $q$ open").flags & DBW_LEX_F_UNTERMINATED);
	assert_true(lex(state, "SELECT \"open").flags & DBW_LEX_F_UNTERMINATED);
	r = lex(state, "SELECT 'done'");
	assert_int_equal(r.flags, 0);
}

/* MySQL's rules: what hides a DROP there, and what only looks like one. */
static void test_mysql(void **state)
{
	static const struct lex_case evasions[] = {
		{ "DROP TABLE `t`", V(DROP), 0, 1 },
		{ "DROP # comment\nTABLE t", V(DROP), 0, 1 },
		{ "/*! DROP TABLE t */", V(DROP), 0, 1 },
		{ "/*!50000 DROP */ TABLE t", V(DROP), 0, 1 },
		{ "/*M!100000 DROP TABLE t */", V(DROP), 0, 1 },
		{ "/* /* not nested */ DROP TABLE t", V(DROP), 0, 1 },
		{ "SELECT 1--1\n; DROP TABLE t", V(SELECT) | V(DROP), 0, 2 },
		{ "SELECT 'a\\\\'; DROP TABLE t", V(SELECT) | V(DROP), 0, 2 },
		{ "SELECT \"x\\\"\"; DROP TABLE t", V(SELECT) | V(DROP), 0, 2 },
		{ "SELECT $$; DROP TABLE t", V(SELECT) | V(DROP), 0, 2 },
		{ "SELECT `a``b`; DROP TABLE t", V(SELECT) | V(DROP), 0, 2 },
		{ "delete from `t` limit 1", V(DELETE), WW, 1 },
	};
	static const struct lex_case allowed[] = {
		{ "SELECT 'DROP TABLE t'", V(SELECT), 0, 1 },
		{ "SELECT \"DROP TABLE t\"", V(SELECT), 0, 1 },
		{ "SELECT 'it\\'s; DROP TABLE t'", V(SELECT), 0, 1 },
		{ "SELECT 1 # ; DROP TABLE t", V(SELECT), 0, 1 },
		{ "SELECT 1 -- ; DROP TABLE t", V(SELECT), 0, 1 },
		{ "SELECT /* DROP TABLE t */ 1", V(SELECT), 0, 1 },
		{ "SELECT 1 AS `drop`", V(SELECT), 0, 1 },
	};
	struct lexer *l = *state;
	struct dbw_lex_result r;

	l->mysql = 1;
	check(state, evasions, sizeof(evasions) / sizeof(evasions[0]));
	check(state, allowed, sizeof(allowed) / sizeof(allowed[0]));
	/* a backticked name is an object as written */
	r = lex(state, "TRUNCATE `shop`.`Orders`");
	assert_int_equal(r.nobjects, 1);
	assert_true(r.objects[0] == dbw_name_hash("shop.Orders", 11));
	/* an executable comment that never ends is still code, a plain one unterminated */
	r = lex(state, "SELECT 1 /* DROP TABLE t");
	assert_true(r.flags & DBW_LEX_F_UNTERMINATED);
	/* the same texts with PostgreSQL's rules read differently */
	l->mysql = 0;
	r = lex(state, "/* /* nested */ DROP TABLE t");
	assert_false(r.verbs & V(DROP));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_evasions), cmocka_unit_test(test_allowed),
		cmocka_unit_test(test_objects),	 cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_mysql),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
