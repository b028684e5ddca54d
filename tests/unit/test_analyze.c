// SPDX-License-Identifier: GPL-2.0-only
/*
 * SQL analysis (analyze.c): normalization, verb, objects, WHERE-less
 * writes, fingerprints and the result cache.
 *
 * The promise checked hardest is that no literal leaves the host: every
 * normalized text is read back through PostgreSQL's own scanner and must
 * hold no constant token, whatever went in (valid SQL, a cut capture,
 * garbage, every prefix of a statement).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include "analyze.h"

static int setup(void **state)
{
	*state = sql_analyzer_new(256);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	sql_analyzer_free(*state);
	return 0;
}

static struct sql_analysis an(void *a, const char *sql, bool truncated)
{
	struct sql_analysis r;

	assert_int_equal(sql_analyze(a, sql, strlen(sql), truncated, &r), 0);
	assert_non_null(r.normalized);
	assert_non_null(r.verb);
	return r;
}

/*
 * The oracle: PostgreSQL's scanner reads text without error and finds no
 * string, number, bit-string or hex constant in it.
 */
static void assert_no_constant(const char *text, const char *from)
{
	PgQueryScanResult r = pg_query_scan(text);
	PgQuery__ScanResult *sr;

	if (r.error)
		fail_msg("normalized \"%s\" (from \"%s\") does not scan: %s", text, from,
			 r.error->message);
	sr = pg_query__scan_result__unpack(NULL, r.pbuf.len, (const uint8_t *)r.pbuf.data);
	assert_non_null(sr);
	for (size_t i = 0; i < sr->n_tokens; i++) {
		PgQuery__Token t = sr->tokens[i]->token;

		if (t == PG_QUERY__TOKEN__SCONST || t == PG_QUERY__TOKEN__USCONST ||
		    t == PG_QUERY__TOKEN__BCONST || t == PG_QUERY__TOKEN__XCONST ||
		    t == PG_QUERY__TOKEN__ICONST || t == PG_QUERY__TOKEN__FCONST ||
		    t == PG_QUERY__TOKEN__SQL_COMMENT || t == PG_QUERY__TOKEN__C_COMMENT)
			fail_msg("normalized \"%s\" (from \"%s\") keeps a constant or comment "
				 "at %d",
				 text, from, sr->tokens[i]->start);
	}
	pg_query__scan_result__free_unpacked(sr, NULL);
	pg_query_free_scan_result(r);
}

/* ---- normalization ------------------------------------------------------------ */

static void test_normalize(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "SELECT * FROM users WHERE name = 'alice' AND age > 30",
		  "SELECT * FROM users WHERE name = $1 AND age > $2" },
		{ "SELECT * FROM t WHERE id IN (1, 2, 3) AND tag IN ('a', 'b')",
		  "SELECT * FROM t WHERE id IN ($1, $2, $3) AND tag IN ($4, $5)" },
		{ "INSERT INTO t (a, b) VALUES (1, 'x'), (2.5, E'y\\n')",
		  "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)" },
		{ "SELECT -1, 1e10, .5, B'0101', X'ff', 'it''s', $$dollar$$, $q$tag$q$",
		  "SELECT $1, $2, $3, $4, $5, $6, $7, $8" },
		{ "SELECT now() - interval '1 day'", "SELECT now() - interval $1" },
		/* parameters already there are kept; new ones continue after them */
		{ "SELECT $1, 'x' FROM t WHERE a = $2", "SELECT $1, $3 FROM t WHERE a = $2" },
		/* the terminator does not make another statement */
		{ "SELECT 1;", "SELECT $1" },
		{ "SELECT 1 ;; \n", "SELECT $1" },
		/* utility statements the normalizer leaves alone: the scanner pass replaces */
		{ "CREATE ROLE app PASSWORD 'hunter2'", "CREATE ROLE app PASSWORD $1" },
		{ "SET search_path = 'shop'", "SET search_path = $1" },
		{ "COPY t FROM '/tmp/file.csv'", "COPY t FROM $1" },
		/* not SQL: the scanner alone */
		{ "SELEC 'x', 5 FROM t", "SELEC $1, $2 FROM t" },
		{ "SELEC $2, 'x' FROM t WHERE a = $1", "SELEC $2, $3 FROM t WHERE a = $1" },
		/* identifiers, quoted or not, are not literals */
		{ "SELECT \"Weird 'Name'\" FROM s.t", "SELECT \"Weird 'Name'\" FROM s.t" },
		{ "SELECT U&\"d\\0061t\" FROM t WHERE a = U&'d\\0061t'",
		  "SELECT U&\"d\\0061t\" FROM t WHERE a = $1" },
	};
	void *a = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sql_analysis r = an(a, cases[i].in, false);

		if (strcmp(r.normalized, cases[i].out))
			fail_msg("\"%s\" normalized to \"%s\", want \"%s\"", cases[i].in,
				 r.normalized, cases[i].out);
		assert_no_constant(r.normalized, cases[i].in);
	}
}

static void test_comments_removed(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "SELECT 1 -- secret_comment\n", "SELECT $1" },
		/* the comment goes, the blank after it stays */
		{ "/* secret_comment */ SELECT a FROM t", " SELECT a FROM t" },
		{ "SELECT a /* it's secret_comment */ FROM t", "SELECT a  FROM t" },
		{ "SELECT a FROM t -- secret_comment 'x'", "SELECT a FROM t" },
		/* nested C comments, as PostgreSQL nests them */
		{ "SELECT /* a /* secret_comment */ b */ 1", "SELECT  $1" },
		/* not SQL, with comments */
		{ "SELEC /* secret_comment */ x -- secret_comment", "SELEC  x" },
	};
	void *a = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sql_analysis r = an(a, cases[i].in, false);

		if (strcmp(r.normalized, cases[i].out))
			fail_msg("\"%s\" normalized to \"%s\", want \"%s\"", cases[i].in,
				 r.normalized, cases[i].out);
		assert_null(strstr(r.normalized, "secret_comment"));
		assert_null(strstr(r.normalized, "/*"));
		assert_null(strstr(r.normalized, "--"));
	}
}

/*
 * Statements carrying the markers zqx (in strings) and 987654 (in numbers)
 * only where they are literal values or comments.
 */
static const char *const leaky[] = {
	"SELECT 'zqx_1' FROM t WHERE n = 987654",
	"UPDATE users SET email = 'zqx@example.com', pin = 987654 WHERE id = 987654",
	"INSERT INTO t VALUES (E'zqx\\'s', 987654.5, 9.87654e5, B'1', X'987654', $$zqx$$, "
	"$q$zqx$q$)",
	"SELECT /* zqx 987654 */ 1 -- zqx 987654\nFROM t",
	"SELECT U&'zqx\\0041', N'zqx', 'zqx'\n'zqx'",
	"SELECT * FROM t WHERE a IN ('zqx', 'zqx2', 987654) AND b = ANY('{zqx}')",
	"CREATE ROLE app PASSWORD 'zqx'",
	"ALTER USER app WITH PASSWORD 'zqx' VALID UNTIL '987654'",
	"COPY t FROM '/zqx/987654.csv'",
	"SET application_name = 'zqx'",
	"DO $body$ BEGIN RAISE NOTICE 'zqx %', 987654; END $body$",
	"PREPARE p AS SELECT 'zqx', 987654",
	"EXPLAIN ANALYZE SELECT * FROM t WHERE a = 'zqx' AND b = 987654",
	"SELECT '987654'::int, 987654::text, 'zqx' ~ 'zqx'",
	"SELEC 'zqx' 987654 FROM",
	"SELECT 'zqx",
	"SELECT 1, 'ok', 'zqx",
	"SELECT $tag$zqx 987654",
	"SELECT /* zqx 987654",
	"SELECT E'zqx\\",
	"SELECT E'zqx\\'987654",
	"\x01\xff 'zqx' \xfe 987654",
	"SELECT 'zqx\xff 987654'",
	"SELECT E'\\xff zqx 987654'",
	"SELECT E'\\u00zz zqx 987654'",
	"SELECT 'caf\xc3\xa9 zqx 987654'",
	"SELECT 0x987654, 987_654, 1.987654.5, 987654abc",
	"SELECT 1 FROM t WHERE a = 'it''s zqx' AND b = 'x''987654'",
	"'zqx'",
	"987654",
};

static void assert_no_marker(const char *norm, const char *from)
{
	if (strstr(norm, "zqx") || strstr(norm, "987654"))
		fail_msg("normalized \"%s\" (from \"%s\") keeps a literal", norm, from);
}

/* Whole statements, parseable or not, reported as cut or not. */
static void test_no_literal_survives(void **state)
{
	void *a = *state;

	for (size_t i = 0; i < sizeof(leaky) / sizeof(leaky[0]); i++) {
		for (int trunc = 0; trunc < 2; trunc++) {
			struct sql_analysis r = an(a, leaky[i], trunc);

			assert_no_marker(r.normalized, leaky[i]);
			assert_no_constant(r.normalized, leaky[i]);
			if (trunc)
				assert_false(r.parsed);
		}
	}
	/* the plain cases the brief names, by name */
	assert_false(an(a, "UPDATE t SET a = 'zqx_cut_here_and_more", true).parsed);
	assert_string_equal(an(a, "UPDATE t SET a = 'zqx_cut_here_and_more", true).normalized,
			    "UPDATE t SET a = $1");
	assert_string_equal(an(a, "SELECT * FROM t WHERE a = 'zqx", false).normalized,
			    "SELECT * FROM t WHERE a = $1");
	assert_false(an(a, "SELECT * FROM t WHERE a = 'zqx", false).parsed);
}

/* A capture can end anywhere: every prefix, reported cut, leaks nothing. */
static void test_no_literal_in_any_prefix(void **state)
{
	static const char *const marker_parts[] = { "zq", "qx", "9876", "8765", "7654" };
	void *a = *state;
	char buf[256];

	for (size_t i = 0; i < sizeof(leaky) / sizeof(leaky[0]); i++) {
		size_t n = strlen(leaky[i]);

		assert_true(n < sizeof(buf));
		for (size_t cut = 0; cut <= n; cut++) {
			struct sql_analysis r;

			memcpy(buf, leaky[i], cut);
			buf[cut] = 0;
			r = an(a, buf, true);
			assert_false(r.parsed);
			assert_no_constant(r.normalized, buf);
			for (size_t m = 0; m < sizeof(marker_parts) / sizeof(marker_parts[0]); m++)
				if (strstr(r.normalized, marker_parts[m]))
					fail_msg("normalized \"%s\" (from \"%s\") keeps part of a "
						 "literal",
						 r.normalized, buf);
		}
	}
}

/* ---- verb, objects, flags ----------------------------------------------------- */

static void test_verbs(void **state)
{
	static const struct {
		const char *sql, *verb;
	} cases[] = {
		{ "SELECT 1", "SELECT" },
		{ "select * from t", "SELECT" },
		{ "WITH x AS (SELECT 1) SELECT * FROM x", "SELECT" },
		{ "INSERT INTO t VALUES (1)", "INSERT" },
		{ "UPDATE t SET a = 1 WHERE b = 2", "UPDATE" },
		{ "DELETE FROM t WHERE a = 1", "DELETE" },
		{ "DROP TABLE t", "DROP" },
		{ "DROP INDEX i", "DROP" },
		{ "CREATE TABLE t (a int)", "CREATE" },
		{ "CREATE INDEX i ON t (a)", "CREATE" },
		{ "CREATE VIEW v AS SELECT 1", "CREATE" },
		{ "COPY t FROM STDIN", "COPY" },
		{ "COPY (SELECT 1) TO STDOUT", "COPY" },
		{ "BEGIN", "BEGIN" },
		{ "START TRANSACTION", "BEGIN" },
		{ "COMMIT", "COMMIT" },
		{ "ROLLBACK", "ROLLBACK" },
		{ "TRUNCATE t", "TRUNCATE" },
		{ "ALTER TABLE t ADD COLUMN b int", "ALTER" },
		{ "GRANT SELECT ON t TO u", "GRANT" },
		{ "REVOKE SELECT ON t FROM u", "REVOKE" },
		{ "SET work_mem = '64MB'", "SET" },
		{ "EXPLAIN SELECT 1", "EXPLAIN" },
		{ "VACUUM t", "VACUUM" },
	};
	void *a = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sql_analysis r = an(a, cases[i].sql, false);

		if (strcmp(r.verb, cases[i].verb))
			fail_msg("verb of \"%s\" is %s, want %s", cases[i].sql, r.verb,
				 cases[i].verb);
		assert_true(r.parsed);
	}
	/* cut or broken: the first word, even behind a comment */
	assert_string_equal(an(a, "/* x */ DROP TABLE t /* and 1 MB more", true).verb, "DROP");
	assert_string_equal(an(a, "INSERT INTO t VALUES ('zqx", true).verb, "INSERT");
	assert_string_equal(an(a, "  (SELECT 1", false).verb, "SELECT");
	assert_string_equal(an(a, "hello world", false).verb, "UNKNOWN");
	assert_string_equal(an(a, "", false).verb, "UNKNOWN");
}

/* Objects as a fixed list, in order. */
static void assert_objects(void *a, const char *sql, const char *const *want, size_t n)
{
	struct sql_analysis r = an(a, sql, false);

	assert_true(r.parsed);
	if (r.nobjects != n)
		fail_msg("\"%s\": %zu objects, want %zu", sql, r.nobjects, n);
	for (size_t i = 0; i < n; i++)
		if (strcmp(r.objects[i], want[i]))
			fail_msg("\"%s\": object %zu is %s, want %s", sql, i, r.objects[i],
				 want[i]);
}

#define OBJECTS(a, sql, ...)                                            \
	do {                                                            \
		static const char *const w_[] = { __VA_ARGS__ };        \
		assert_objects(a, sql, w_, sizeof(w_) / sizeof(w_[0])); \
	} while (0)

static void test_objects(void **state)
{
	void *a = *state;

	OBJECTS(a,
		"SELECT * FROM orders o JOIN customers c ON o.cid = c.id "
		"LEFT JOIN sales.items i USING (oid) WHERE c.x IN (SELECT y FROM audit.log)",
		"orders", "customers", "sales.items", "audit.log");
	OBJECTS(a, "SELECT * FROM sales.orders", "sales.orders");
	OBJECTS(a, "SELECT * FROM t t1, t t2, public.t", "t", "public.t");
	OBJECTS(a, "DROP TABLE a, b", "a", "b");
	OBJECTS(a, "DROP TABLE IF EXISTS s.a, b CASCADE", "s.a", "b");
	OBJECTS(a, "INSERT INTO dst SELECT * FROM src", "dst", "src");
	OBJECTS(a, "UPDATE t SET a = u.a FROM u WHERE t.id = u.id", "t", "u");
	OBJECTS(a, "TRUNCATE a, b", "a", "b");
	assert_int_equal(an(a, "SELECT 1", false).nobjects, 0);
}

/* A CTE's name is not a relation; a relation is never hidden behind one. */
static void test_cte_objects(void **state)
{
	void *a = *state;

	OBJECTS(a, "WITH recent AS (SELECT * FROM orders) SELECT * FROM recent", "orders");
	OBJECTS(a, "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "t");
	assert_int_equal(an(a,
			    "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) "
			    "SELECT * FROM r",
			    false)
				 .nobjects,
			 0);
	/* schema-qualified: never a CTE */
	OBJECTS(a, "WITH t AS (SELECT 1) SELECT * FROM t, public.t", "public.t");
	/* the target of a write is always a table, whatever CTE shares its name */
	OBJECTS(a, "WITH secrets AS (SELECT 1) DELETE FROM secrets", "secrets");
	OBJECTS(a, "WITH t AS (SELECT 1) UPDATE t SET a = 1", "t");
	OBJECTS(a, "WITH t AS (SELECT 1) INSERT INTO t SELECT * FROM t", "t");
	/* a CTE is seen only inside its statement */
	OBJECTS(a,
		"SELECT * FROM secrets WHERE EXISTS "
		"(WITH secrets AS (SELECT 1) SELECT 1 FROM secrets)",
		"secrets");
	/* without RECURSIVE a CTE sees only the ones before it */
	OBJECTS(a, "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b", "b");
	OBJECTS(a, "WITH t AS (SELECT * FROM t) SELECT * FROM t", "t");
}

static void test_without_where(void **state)
{
	static const struct {
		const char *sql;
		bool ww;
	} cases[] = {
		{ "DELETE FROM t", true },
		{ "UPDATE t SET a = 1", true },
		{ "DELETE FROM t WHERE a = 1", false },
		{ "UPDATE t SET a = 1 WHERE b = 2", false },
		{ "DELETE FROM t USING u WHERE t.id = u.id", false },
		{ "UPDATE t SET a = 1 WHERE true", false },
		{ "SELECT * FROM t", false },
		{ "INSERT INTO t VALUES (1)", false },
		{ "TRUNCATE t", false },
		{ "WITH d AS (DELETE FROM t RETURNING *) SELECT 1 FROM d", true },
		{ "WITH d AS (DELETE FROM t WHERE a = 1 RETURNING *) SELECT 1 FROM d", false },
		{ "EXPLAIN ANALYZE UPDATE t SET a = 1", true },
	};
	void *a = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sql_analysis r = an(a, cases[i].sql, false);

		if (r.without_where != cases[i].ww)
			fail_msg("without_where of \"%s\" is %d", cases[i].sql, r.without_where);
	}
}

/* ---- fingerprint and cache ----------------------------------------------------- */

static void test_fingerprint(void **state)
{
	static const char *const same[] = {
		"SELECT * FROM t WHERE id = 1 AND name = 'a'",
		"SELECT * FROM t WHERE id = 99 AND name = 'zzz'",
		"select *  from t where id = 7 and name = 'b' -- comment",
		"SELECT * FROM t WHERE id = $1 AND name = $2",
	};
	static const char *const other[] = {
		"SELECT * FROM u WHERE id = 1 AND name = 'a'",
		"SELECT * FROM t WHERE id = 1 OR name = 'a'",
		"SELECT a FROM t WHERE id = 1 AND name = 'a'",
		"DELETE FROM t WHERE id = 1 AND name = 'a'",
	};
	void *a = *state;
	char fp[17];

	snprintf(fp, sizeof(fp), "%s", an(a, same[0], false).fingerprint);
	assert_int_equal(strlen(fp), 16);
	assert_int_equal(strspn(fp, "0123456789abcdef"), 16);
	for (size_t i = 1; i < sizeof(same) / sizeof(same[0]); i++)
		assert_string_equal(an(a, same[i], false).fingerprint, fp);
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		struct sql_analysis r = an(a, other[i], false);

		assert_int_equal(strlen(r.fingerprint), 16);
		assert_string_not_equal(r.fingerprint, fp);
	}
	/* what does not parse has none */
	assert_string_equal(an(a, "SELEC 1", false).fingerprint, "");
	assert_string_equal(an(a, same[0], true).fingerprint, "");
}

/* Every field of two analyses, compared; the normalized text by value. */
static void assert_same_analysis(const struct sql_analysis *x, const struct sql_analysis *y,
				 const char *sql)
{
	if (strcmp(x->normalized, y->normalized) || strcmp(x->fingerprint, y->fingerprint) ||
	    strcmp(x->verb, y->verb) || x->verbs != y->verbs || x->parsed != y->parsed ||
	    x->without_where != y->without_where || x->nobjects != y->nobjects)
		fail_msg("\"%s\": [%s] %s %s v%x p%d w%d o%zu vs [%s] %s %s v%x p%d w%d o%zu", sql,
			 x->normalized, x->fingerprint, x->verb, x->verbs, x->parsed,
			 x->without_where, x->nobjects, y->normalized, y->fingerprint, y->verb,
			 y->verbs, y->parsed, y->without_where, y->nobjects);
	for (size_t i = 0; i < x->nobjects; i++)
		assert_string_equal(x->objects[i], y->objects[i]);
}

/* A copy of an analysis that outlives the analyzer's next call. */
struct kept {
	struct sql_analysis r;
	char norm[512];
	char obj[SQL_MAX_OBJECTS][64];
};

static void keep(struct kept *k, const struct sql_analysis *r)
{
	k->r = *r;
	snprintf(k->norm, sizeof(k->norm), "%s", r->normalized);
	k->r.normalized = k->norm;
	for (size_t i = 0; i < r->nobjects; i++) {
		snprintf(k->obj[i], sizeof(k->obj[i]), "%s", r->objects[i]);
		k->r.objects[i] = k->obj[i];
	}
}

static void test_cache_hit(void **state)
{
	const char *sql = "SELECT name FROM users u JOIN s.orders o ON o.uid = u.id "
			  "WHERE u.id = 42 AND o.total > 10.5";
	uint64_t h0, m0, h1, m1, h2, m2;
	void *a = *state;
	struct kept first;
	struct sql_analysis r;

	sql_analyzer_stats(a, &h0, &m0);
	r = an(a, sql, false);
	keep(&first, &r);
	sql_analyzer_stats(a, &h1, &m1);
	assert_int_equal(h1, h0);
	assert_int_equal(m1, m0 + 1);

	r = an(a, sql, false);
	sql_analyzer_stats(a, &h2, &m2);
	assert_int_equal(h2, h1 + 1);
	assert_int_equal(m2, m1);
	assert_same_analysis(&first.r, &r, sql);
	assert_string_equal(r.normalized,
			    "SELECT name FROM users u JOIN s.orders o ON o.uid = u.id "
			    "WHERE u.id = $1 AND o.total > $2");

	/* other values, same shape: a hit, and the new values do not appear */
	r = an(a,
	       "SELECT name FROM users u JOIN s.orders o ON o.uid = u.id "
	       "WHERE u.id = 31337 AND o.total > 99.5",
	       false);
	sql_analyzer_stats(a, &h1, &m1);
	assert_int_equal(h1, h2 + 1);
	assert_same_analysis(&first.r, &r, sql);
	assert_null(strstr(r.normalized, "31337"));

	/* a cut statement is never cached: analysed again each time */
	an(a, "SELECT name FROM users WHERE id = 4", true);
	an(a, "SELECT name FROM users WHERE id = 4", true);
	sql_analyzer_stats(a, &h2, &m2);
	assert_int_equal(h2, h1);
	assert_int_equal(m2, m1 + 2);
}

/*
 * Texts that differ only in literal values share a cache slot. A hit must
 * give exactly what a fresh analysis of that text gives, also where the
 * literal's bytes decide whether the text parses at all.
 */
static void test_cache_never_wrong(void **state)
{
	static const char *const groups[][4] = {
		{ "SELECT 1.5", "SELECT 1.2.3", "SELECT 1..2", "SELECT 7" },
		{ "SELECT 'x'", "SELECT E'\\xff'", "SELECT E'\\u00zz'", "SELECT U&'\\zzzz'" },
		{ "SELECT U&'d\\0061t'", "SELECT U&'\\zzzz'", "SELECT U&'abc'",
		  "SELECT U&'\\+01F600'" },
		{ "SELECT * FROM t WHERE a = 'x'", "SELECT * FROM t WHERE a = 'x\xc3'",
		  "SELECT * FROM t WHERE a = 'caf\xc3\xa9'", "SELECT * FROM t WHERE a = E'\\x41'" },
		{ "SELEC 'a', 1", "SELEC '$7', 1", "SELEC 'b', 2", "SELEC '$$', 3" },
		{ "SELECT 1abc", "SELECT 2abc", "SELECT 1e5", "SELECT 1e" },
		{ "SELECT 'a\\', 1", "SELECT 'b', 1", "SELECT E'a\\'', 1", "SELECT E'a''', 1" },
	};
	struct kept cold[4];

	for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
		for (int i = 0; i < 4; i++) {
			struct sql_analyzer *fresh = sql_analyzer_new(16);
			struct sql_analysis r;

			assert_non_null(fresh);
			r = an(fresh, groups[g][i], false);
			keep(&cold[i], &r);
			sql_analyzer_free(fresh);
		}
		/* every order of two: the first fills the cache, the second may hit */
		for (int i = 0; i < 4; i++) {
			for (int j = 0; j < 4; j++) {
				struct sql_analyzer *warm = sql_analyzer_new(16);
				struct sql_analysis r;

				assert_non_null(warm);
				an(warm, groups[g][i], false);
				r = an(warm, groups[g][j], false);
				assert_same_analysis(&cold[j].r, &r, groups[g][j]);
				sql_analyzer_free(warm);
			}
		}
	}
}

/* A one-slot cache: shapes evict each other, results stay right. */
static void test_cache_collisions(void **state)
{
	struct sql_analyzer *a = sql_analyzer_new(1);
	uint64_t hits, misses;

	assert_non_null(a);
	for (int i = 0; i < 3; i++) {
		struct sql_analysis r = an(a, "SELECT * FROM a WHERE x = 1", false);

		assert_string_equal(r.normalized, "SELECT * FROM a WHERE x = $1");
		assert_string_equal(r.objects[0], "a");
		r = an(a, "DELETE FROM b", false);
		assert_string_equal(r.normalized, "DELETE FROM b");
		assert_string_equal(r.verb, "DELETE");
		assert_true(r.without_where);
		assert_string_equal(r.objects[0], "b");
	}
	sql_analyzer_stats(a, &hits, &misses);
	assert_int_equal(hits, 0);
	assert_int_equal(misses, 6);
	sql_analyzer_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_normalize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_comments_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_literal_survives, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_literal_in_any_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verbs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_objects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cte_objects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_without_where, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fingerprint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_hit, setup, teardown),
		cmocka_unit_test(test_cache_never_wrong),
		cmocka_unit_test(test_cache_collisions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
