// SPDX-License-Identifier: GPL-2.0-only
/*
 * SQL analysis with libpg_query: normalization (no literal ever survives,
 * also in truncated or broken text), verb, objects, WHERE-less writes,
 * fingerprints and the result cache.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "analyze.h"

static int setup(void **state)
{
	*state = sql_analyzer_new(64);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	sql_analyzer_free(*state);
	return 0;
}

static struct sql_analysis an(void **state, const char *sql, bool truncated)
{
	struct sql_analysis a;

	assert_int_equal(sql_analyze(*state, sql, strlen(sql), truncated, &a), 0);
	assert_non_null(a.normalized);
	return a;
}

static void test_normalize(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "SELECT 'lit_a', 42, 4.5e3", "SELECT $1, $2, $3" },
		{ "SELECT * FROM t WHERE id IN (1, 2, 3) AND n = 'x'",
		  "SELECT * FROM t WHERE id IN ($1, $2, $3) AND n = $4" },
		{ "INSERT INTO t VALUES (1, 'lit_b'), (2, E'lit_\\'c')",
		  "INSERT INTO t VALUES ($1, $2), ($3, $4)" },
		{ "SELECT 1 -- lit_comment\n", "SELECT $1" },
		{ "SELECT /* lit_c2 */ 1;", "SELECT  $1" },
		{ "SELECT $1, 'lit_d'", "SELECT $1, $2" },
		{ "SELECT $$lit_dollar$$", "SELECT $1" },
		{ "SELECT 1;;  ", "SELECT $1" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sql_analysis a = an(state, cases[i].in, false);

		assert_string_equal(a.normalized, cases[i].out);
		assert_true(a.parsed);
	}
}

/* Whatever the input, no literal value comes out. */
static void test_no_literal_survives(void **state)
{
	static const char *const cases[] = {
		"SELECT 'lit_secret1' FROM t",
		"SELECT 'lit_secret1", /* unterminated quote */
		"SELEC lit_x 'lit_secret1' 31337", /* not SQL */
		"UPDATE t SET a = 'lit_secret1' WHERE b = 31337 AND c = $$lit_secret1",
		"INSERT INTO t VALUES (E'\\x', 'lit_secret1', 31337",
		"/* lit_secret1 */ SELECT 31337",
		"\x01\x02 'lit_secret1' \xff\xfe 31337",
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int trunc = 0; trunc < 2; trunc++) {
			struct sql_analysis a = an(state, cases[i], trunc);

			assert_null(strstr(a.normalized, "lit_secret1"));
			assert_null(strstr(a.normalized, "31337"));
			if (trunc)
				assert_false(a.parsed);
		}
	}
}

static void test_verbs(void **state)
{
	static const struct {
		const char *sql, *verb;
	} cases[] = {
		{ "SELECT 1", "SELECT" },
		{ "insert into t values (1)", "INSERT" },
		{ "UPDATE t SET a = 1 WHERE b = 2", "UPDATE" },
		{ "DELETE FROM t WHERE a = 1", "DELETE" },
		{ "DROP TABLE t", "DROP" },
		{ "CREATE TABLE t (a int)", "CREATE" },
		{ "COPY t FROM STDIN", "COPY" },
		{ "BEGIN", "BEGIN" },
		{ "COMMIT", "COMMIT" },
		{ "TRUNCATE t", "TRUNCATE" },
		{ "WITH x AS (SELECT 1) SELECT * FROM x", "SELECT" },
		{ "ALTER TABLE t ADD COLUMN b int", "ALTER" },
		{ "GRANT SELECT ON t TO u", "GRANT" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sql_analysis a = an(state, cases[i].sql, false);

		assert_string_equal(a.verb, cases[i].verb);
	}
	/* a cut statement still has the verb it starts with, whatever comment hides it */
	assert_string_equal(an(state, "/* x */ DROP TABLE t /* and 1 MB more", true).verb, "DROP");
	assert_string_equal(an(state, "SELECT length('aaaa", true).verb, "SELECT");
	assert_string_equal(an(state, "hello world", false).verb, "UNKNOWN");
}

static void test_objects(void **state)
{
	struct sql_analysis a;

	a = an(state, "SELECT * FROM a JOIN s.b ON a.id = b.id WHERE a.x IN (SELECT y FROM c)",
	       false);
	assert_int_equal(a.nobjects, 3);
	assert_string_equal(a.objects[0], "a");
	assert_string_equal(a.objects[1], "s.b");
	assert_string_equal(a.objects[2], "c");
	a = an(state, "DROP TABLE a, public.b", false);
	assert_int_equal(a.nobjects, 2);
	assert_string_equal(a.objects[0], "a");
	assert_string_equal(a.objects[1], "public.b");
	/* a CTE's name is not a relation */
	a = an(state, "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", false);
	assert_int_equal(a.nobjects, 1);
	assert_string_equal(a.objects[0], "t");
	/* the same relation twice is one object */
	a = an(state, "SELECT * FROM t t1, t t2", false);
	assert_int_equal(a.nobjects, 1);
}

static void test_without_where(void **state)
{
	assert_true(an(state, "DELETE FROM t", false).without_where);
	assert_true(an(state, "UPDATE t SET a = 1", false).without_where);
	assert_false(an(state, "DELETE FROM t WHERE a = 1", false).without_where);
	assert_false(an(state, "UPDATE t SET a = 1 WHERE b = 2", false).without_where);
	assert_false(an(state, "SELECT * FROM t", false).without_where);
	assert_true(an(state, "WITH d AS (DELETE FROM t RETURNING *) SELECT 1 FROM d", false)
			    .without_where);
}

static void test_fingerprint_and_cache(void **state)
{
	struct sql_analysis a, b, c;
	char fa[17], fb[17];
	uint64_t hits0, misses0, hits1, misses1;

	a = an(state, "SELECT * FROM t WHERE id = 1", false);
	assert_int_equal(strlen(a.fingerprint), 16);
	strcpy(fa, a.fingerprint);
	b = an(state, "SELECT * FROM t WHERE id = 99", false);
	assert_string_equal(fa, b.fingerprint);
	strcpy(fb, b.fingerprint);
	c = an(state, "SELECT * FROM u WHERE id = 1", false);
	assert_string_not_equal(fb, c.fingerprint);

	sql_analyzer_stats(*state, &hits0, &misses0);
	a = an(state, "SELECT * FROM t WHERE id = 7", false);
	sql_analyzer_stats(*state, &hits1, &misses1);
	assert_int_equal(hits1, hits0 + 1);
	assert_int_equal(misses1, misses0);
	assert_string_equal(a.normalized, "SELECT * FROM t WHERE id = $1");
	assert_string_equal(a.fingerprint, fa);
	/* a cached shape must not leak the literal of the text that filled it */
	a = an(state, "SELECT * FROM t WHERE id = 31337", false);
	assert_null(strstr(a.normalized, "31337"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_normalize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_literal_survives, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verbs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_objects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_without_where, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fingerprint_and_cache, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
