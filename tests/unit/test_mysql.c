// SPDX-License-Identifier: GPL-2.0-only
/*
 * MySQL / MariaDB: the wire decoders (mysql_proto.c), the statement
 * splitter and normalizer (mysql_sql.c) and the stitcher (mysql_conn.c)
 * against byte-exact fixtures, several of them as MariaDB 10.11 and
 * libmariadb sent them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "analyze.h"
#include "dbwarden_abi.h"
#include "mysql_conn.h"
#include "mysql_proto.h"
#include "mysql_sql.h"

#define FIX(s) ((const uint8_t *)(s)), (sizeof(s) - 1)

static void test_hdr_and_lenenc(void **state)
{
	struct mysql_hdr h;
	const uint8_t *p;
	uint64_t v;
	bool null;
	static const uint8_t l3[] = "\xfd\x01\x02\x03";
	static const uint8_t l8[] = "\xfe\x01\x00\x00\x00\x00\x00\x00\x01";

	assert_int_equal(mysql_parse_hdr(FIX("\x1e\x00\x00"), &h), DBW_PARSE_NEED_MORE);
	assert_int_equal(mysql_parse_hdr(FIX("\x1e\x00\x01\x07"), &h), DBW_PARSE_OK);
	assert_int_equal(h.len, 0x1001e);
	assert_int_equal(h.seq, 7);
	p = l3;
	assert_int_equal(mysql_lenenc(&p, l3 + 4, &v, NULL), DBW_PARSE_OK);
	assert_int_equal(v, 0x030201);
	assert_ptr_equal(p, l3 + 4);
	p = l8;
	assert_int_equal(mysql_lenenc(&p, l8 + 9, &v, NULL), DBW_PARSE_OK);
	assert_true(v == 0x0100000000000001ULL);
	p = l8;
	assert_int_equal(mysql_lenenc(&p, l8 + 5, &v, NULL), DBW_PARSE_INVALID);
	p = (const uint8_t *)"\xfb";
	assert_int_equal(mysql_lenenc(&p, p + 1, &v, &null), DBW_PARSE_INVALID);
	assert_true(null);
}

static void test_ok_err_eof(void **state)
{
	struct mysql_ok ok;
	struct mysql_err e;
	/* as MariaDB sent them */
	static const uint8_t okp[] = "\x00\x01\x00\x02\x00\x00\x00";
	static const uint8_t errp[] = "\xff\x7a\x04#42S02Table 'shop.x' doesn't exist";

	assert_int_equal(mysql_parse_ok(FIX(okp), &ok), DBW_PARSE_OK);
	assert_int_equal(ok.affected_rows, 1);
	assert_int_equal(ok.status, 2);
	assert_int_equal(mysql_parse_err(FIX(errp), &e), DBW_PARSE_OK);
	assert_int_equal(e.code, 1146);
	assert_string_equal(e.sqlstate, "42S02");
	assert_int_equal(mysql_parse_err(FIX("\xff\x10\x04Too many connections"), &e),
			 DBW_PARSE_OK);
	assert_string_equal(e.sqlstate, "HY000");
	assert_true(mysql_is_eof(FIX("\xfe\x00\x00\x02\x00")));
	assert_int_equal(mysql_eof_status(FIX("\xfe\x00\x00\x0a\x00")), 0x0a);
	assert_false(mysql_is_eof(FIX("\xfe\x00\x00\x02\x00\x00\x00\x00\x00")));
}

static void test_login(void **state)
{
	struct mysql_login l;
	/* HandshakeResponse41: caps (PROTOCOL_41 | SECURE | CONNECT_WITH_DB | PLUGIN_AUTH),
	 * max packet, charset, 23 zero bytes, user, auth (len 2), db, plugin */
	static const uint8_t resp[] = "\x08\x82\x08\x00"
				      "\x00\x00\x00\x01"
				      "\x21"
				      "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
				      "app\0"
				      "\x02\xaa\xbb"
				      "shop\0"
				      "mysql_native_password\0";
	static const uint8_t ssl[] = "\x08\x8a\x08\x00"
				     "\x00\x00\x00\x01"
				     "\x21"
				     "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

	assert_int_equal(mysql_parse_login(FIX(resp), &l), DBW_PARSE_OK);
	assert_string_equal(l.user, "app");
	assert_string_equal(l.database, "shop");
	assert_string_equal(l.plugin, "mysql_native_password");
	assert_false(l.ssl_request);
	assert_int_equal(mysql_parse_login(FIX(ssl), &l), DBW_PARSE_OK);
	assert_true(l.ssl_request);
	assert_int_equal(mysql_parse_login(resp, 40, &l), DBW_PARSE_INVALID);
}

static void test_split(void **state)
{
	static const char t[] = "SELECT 1; SELECT ';' ; /* ; */ SELECT `a;b` # ;\n;; -- x;\n";
	struct mysql_span sp[4];
	size_t n = mysql_split(t, sizeof(t) - 1, sp, 4);

	assert_int_equal(n, 3);
	assert_int_equal(sp[0].off, 0);
	assert_int_equal(sp[0].len, 8);
	assert_memory_equal(t + sp[1].off, "SELECT ';' ", 11);
	assert_memory_equal(t + sp[2].off, "SELECT `a;b`", 12);
}

static void analyze(const char *sql, const char *norm, const char *verb)
{
	struct mysql_analyzer *a = mysql_analyzer_new();
	struct sql_analysis out;

	assert_non_null(a);
	assert_int_equal(mysql_analyze(a, sql, strlen(sql), false, &out), 0);
	if (strcmp(out.normalized, norm))
		fail_msg("%s\n  normalized to %s\n  expected     %s", sql, out.normalized, norm);
	assert_string_equal(out.verb, verb);
	assert_int_equal(strlen(out.fingerprint), 16);
	mysql_analyzer_free(a);
}

static void test_normalize(void **state)
{
	analyze("SELECT * FROM t WHERE a = 'x' AND b = \"y\\\"z\" AND c = 42",
		"SELECT * FROM t WHERE a = ? AND b = ? AND c = ?", "SELECT");
	analyze("select /* c */ count(*) from `db`.`t` # tail", "select count(*) from `db`.`t`",
		"SELECT");
	analyze("/*!40101 SET NAMES utf8mb4 */", "SET NAMES utf8mb4", "SET");
	analyze("INSERT INTO t VALUES (1, 'it''s', x'41', _utf8mb4'z', 0x1f, -1.5e3)",
		"INSERT INTO t VALUES (?, ?, ?, ?, ?, - ?)", "INSERT");
	analyze("DELETE FROM t -- lit\n WHERE id=7", "DELETE FROM t WHERE id = ?", "DELETE");
	analyze("UPDATE t SET v = @x WHERE id > ?", "UPDATE t SET v = @x WHERE id > ?", "UPDATE");
	analyze("SELECT 'unterminated", "SELECT ?", "SELECT");
}

static void test_objects_and_flags(void **state)
{
	struct mysql_analyzer *a = mysql_analyzer_new();
	struct sql_analysis out;
	static const char q1[] =
		"SELECT * FROM shop.orders o, items JOIN `users` u ON o.uid = u.id "
		"WHERE 1";
	static const char q2[] = "DELETE FROM logs";
	static const char q3[] = "DROP TABLE IF EXISTS a, b";
	static const char q4[] = "with x as (select 1) delete from t where id in (select * from x)";

	mysql_analyze(a, q1, sizeof(q1) - 1, false, &out);
	assert_int_equal(out.nobjects, 3);
	assert_string_equal(out.objects[0], "shop.orders");
	assert_string_equal(out.objects[1], "items");
	assert_string_equal(out.objects[2], "users");
	mysql_analyze(a, q2, sizeof(q2) - 1, false, &out);
	assert_true(out.without_where);
	assert_true(out.verbs & (1u << DBW_VERB_DELETE));
	mysql_analyze(a, q3, sizeof(q3) - 1, false, &out);
	assert_int_equal(out.nobjects, 2);
	assert_true(out.verbs & (1u << DBW_VERB_DROP));
	mysql_analyze(a, q4, sizeof(q4) - 1, false, &out);
	assert_string_equal(out.verb, "DELETE");
	assert_false(out.without_where);
	mysql_analyze(a, q4, 20, true, &out);
	assert_false(out.parsed);
	mysql_analyzer_free(a);
}

/* ---- the stitcher ------------------------------------------------------------------ */

struct seen {
	bool truncated[8];
	uint64_t full[8];
	char text[8][96];
	int status[8];
	char tag[8][24];
	char sqlstate[8][6];
	uint64_t rows[8];
	int n, unparsed, encrypted;
	char user[64], db[64];
};

static void on_stmt(void *ctx, const struct dbw_stmt *st)
{
	struct seen *s = ctx;

	if (s->n < 8) {
		snprintf(s->text[s->n], 96, "%.*s", (int)st->text_len, st->text);
		s->status[s->n] = st->status;
		snprintf(s->tag[s->n], 24, "%s", st->tag);
		snprintf(s->sqlstate[s->n], 6, "%s", st->sqlstate);
		s->rows[s->n] = st->rows;
		s->truncated[s->n] = st->truncated;
		s->full[s->n] = st->text_full_len;
	}
	s->n++;
}

static void on_session(void *ctx, const char *user, const char *db, const char *app)
{
	struct seen *s = ctx;

	snprintf(s->user, sizeof(s->user), "%s", user);
	snprintf(s->db, sizeof(s->db), "%s", db);
}

static void on_unparsed(void *ctx, const char *why)
{
	((struct seen *)ctx)->unparsed++;
}

static void on_encrypted(void *ctx)
{
	((struct seen *)ctx)->encrypted++;
}

static const struct dbw_stitch_ops ops = { .statement = on_stmt,
					   .session = on_session,
					   .unparsed = on_unparsed,
					   .encrypted = on_encrypted };

/* A greeting: protocol 10, version, id, salt, caps with MULTI_STATEMENTS, no DEPRECATE_EOF. */
static const uint8_t greeting[] = "\x35\x00\x00\x00"
				  "\x0a"
				  "10.11.0\0"
				  "\x06\x00\x00\x00"
				  "abcdefgh"
				  "\x00"
				  "\xfe\xf7"
				  "\x2d"
				  "\x02\x00"
				  "\xff\x81"
				  "\x15"
				  "\0\0\0\0\0\0\0\0\0\0"
				  "ijklmnopqrst\0";

static const uint8_t login[] = "\x42\x00\x00\x01"
			       "\x08\x82\x09\x00" /* + MULTI_STATEMENTS */
			       "\x00\x00\x00\x01"
			       "\x21"
			       "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
			       "app\0"
			       "\x02\xaa\xbb"
			       "shop\0"
			       "mysql_native_password\0";

static struct mysql_conn *logged_in(struct seen *s)
{
	struct mysql_conn *c = mysql_conn_new(&ops, s);

	mysql_conn_feed(c, DBW_DIR_TO_CLIENT, FIX(greeting), 1, 0);
	mysql_conn_feed(c, DBW_DIR_TO_SERVER, FIX(login), 2, 9);
	mysql_conn_feed(c, DBW_DIR_TO_CLIENT, FIX("\x07\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00"),
			3, 0);
	assert_string_equal(s->user, "app");
	assert_string_equal(s->db, "shop");
	return c;
}

static void test_stitch_query_result_set(void **state)
{
	struct seen s = {};
	struct mysql_conn *c = logged_in(&s);
	/* SELECT v FROM t: 1 column, its definition, EOF, two rows, EOF */
	static const uint8_t ans[] = "\x01\x00\x00\x01\x01"
				     "\x05\x00\x00\x02\x03"
				     "def"
				     "\x00"
				     "\x05\x00\x00\x03\xfe\x00\x00\x02\x00"
				     "\x02\x00\x00\x04\x01\x61"
				     "\x02\x00\x00\x05\x01\x62"
				     "\x05\x00\x00\x06\xfe\x00\x00\x02\x00";

	mysql_conn_feed(c, DBW_DIR_TO_SERVER, FIX("\x10\x00\x00\x00\x03SELECT v FROM t"), 4, 9);
	for (size_t i = 0; i < sizeof(ans) - 1; i++)
		mysql_conn_feed(c, DBW_DIR_TO_CLIENT, ans + i, 1, 5, 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.text[0], "SELECT v FROM t");
	assert_int_equal(s.status[0], DBW_STMT_OK);
	assert_string_equal(s.tag[0], "ROWS");
	assert_int_equal(s.rows[0], 2);
	assert_int_equal(s.unparsed, 0);
	mysql_conn_free(c);
}

static void test_stitch_multi_statement_error(void **state)
{
	struct seen s = {};
	struct mysql_conn *c = logged_in(&s);
	static const uint8_t q[] = "\x21\x00\x00\x00\x03"
				   "DELETE FROM t; SELEKT 1; SELECT 2";
	/* OK with MORE_RESULTS (0x0a), then ERR 1064 */
	static const uint8_t ans[] = "\x07\x00\x00\x01\x00\x03\x00\x0a\x00\x00\x00"
				     "\x0d\x00\x00\x02\xff\x28\x04#42000syntax";

	mysql_conn_feed(c, DBW_DIR_TO_SERVER, FIX(q), 4, 9);
	mysql_conn_feed(c, DBW_DIR_TO_CLIENT, FIX(ans), 5, 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.text[0], "DELETE FROM t");
	assert_int_equal(s.rows[0], 3);
	assert_string_equal(s.text[1], "SELEKT 1");
	assert_int_equal(s.status[1], DBW_STMT_ERROR);
	assert_string_equal(s.sqlstate[1], "42000");
	assert_string_equal(s.tag[1], "ERR 1064");
	assert_int_equal(s.status[2], DBW_STMT_SKIPPED);
	mysql_conn_free(c);
}

static void test_stitch_prepared_cached_metadata(void **state)
{
	struct seen s = {};
	struct mysql_conn *c = logged_in(&s);
	/* as libmariadb and MariaDB 10.11 exchanged them (metadata cache on) */
	static const uint8_t prep[] = "\x1e\x00\x00\x00\x16SELECT v FROM t1 WHERE id = ?";
	static const uint8_t prep_ok[] = "\x0c\x00\x00\x01\x00\x01\x00\x00\x00\x01\x00\x01\x00\x00"
					 "\x00\x00"
					 "\x05\x00\x00\x02\x03"
					 "def"
					 "\x00"
					 "\x05\x00\x00\x03\xfe\x00\x00\x02\x00"
					 "\x05\x00\x00\x04\x03"
					 "def"
					 "\x00"
					 "\x05\x00\x00\x05\xfe\x00\x00\x02\x00";
	static const uint8_t exec[] = "\x12\x00\x00\x00\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00"
				      "\x00\x01\x03\x00\x03\x00\x00\x00";
	static const uint8_t exec_ans[] = "\x02\x00\x00\x01\x01\x00"
					  "\x05\x00\x00\x02\xfe\x00\x00\x02\x00"
					  "\x04\x00\x00\x03\x00\x00\x01\x63"
					  "\x05\x00\x00\x04\xfe\x00\x00\x02\x00";

	mysql_conn_feed(c, DBW_DIR_TO_SERVER, FIX(prep), 4, 9);
	mysql_conn_feed(c, DBW_DIR_TO_CLIENT, FIX(prep_ok), 5, 0);
	assert_int_equal(s.n, 0); /* a prepare that works is not a statement yet */
	mysql_conn_feed(c, DBW_DIR_TO_SERVER, FIX(exec), 6, 9);
	mysql_conn_feed(c, DBW_DIR_TO_CLIENT, FIX(exec_ans), 7, 0);
	mysql_conn_feed(c, DBW_DIR_TO_SERVER, FIX("\x05\x00\x00\x00\x19\x01\x00\x00\x00"), 8, 9);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.text[0], "SELECT v FROM t1 WHERE id = ?");
	assert_int_equal(s.rows[0], 1);
	assert_int_equal(s.unparsed, 0);
	mysql_conn_free(c);
}

/* A 16 MiB statement: a packet of 0xffffff bytes, then its continuation (seq 1). */
static void test_stitch_16mib_packet(void **state)
{
	struct seen s = {};
	struct mysql_conn *c = logged_in(&s);
	size_t big = 0xffffff;
	uint8_t *pkt = malloc(4 + big);

	assert_non_null(pkt);
	memcpy(pkt, "\xff\xff\xff\x00\x03SELECT '", 12);
	memset(pkt + 12, 'x', 4 + big - 12);
	/* fed in pieces, with a gap in the middle (a send larger than the kernel copies) */
	mysql_conn_feed(c, DBW_DIR_TO_SERVER, pkt, 100000, 4, 9);
	mysql_conn_gap(c, DBW_DIR_TO_SERVER, 1000000, 4);
	mysql_conn_feed(c, DBW_DIR_TO_SERVER, pkt + 1100000, 4 + big - 1100000, 4, 9);
	mysql_conn_feed(c, DBW_DIR_TO_SERVER, FIX("\x03\x00\x00\x01xx'"), 4, 9);
	free(pkt);
	assert_int_equal(s.n, 0);
	mysql_conn_feed(c, DBW_DIR_TO_CLIENT, FIX("\x07\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00"),
			5, 0);
	assert_int_equal(s.n, 1);
	assert_true(s.truncated[0]);
	assert_int_equal(s.full[0], big - 1 + 3);
	assert_int_equal(s.status[0], DBW_STMT_OK);
	assert_int_equal(s.unparsed, 0);
	mysql_conn_free(c);
}

static void test_stitch_ssl_request(void **state)
{
	struct seen s = {};
	struct mysql_conn *c = mysql_conn_new(&ops, &s);
	static const uint8_t ssl[] = "\x20\x00\x00\x01"
				     "\x08\x8a\x08\x00"
				     "\x00\x00\x00\x01"
				     "\x21"
				     "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

	mysql_conn_feed(c, DBW_DIR_TO_CLIENT, FIX(greeting), 1, 0);
	mysql_conn_feed(c, DBW_DIR_TO_SERVER, FIX(ssl), 2, 9);
	mysql_conn_feed(c, DBW_DIR_TO_SERVER, FIX("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03"), 2,
			9);
	assert_int_equal(s.encrypted, 1);
	assert_int_equal(s.unparsed, 0);
	mysql_conn_free(c);
}

/* Result masking looks MySQL column names up case-folded, under keys of their own. */
static void test_mask_name_keys(void **state)
{
	uint64_t ci = dbw_name_hash_ci("email", 5);

	assert_true(dbw_name_hash_ci("Email", 5) == ci);
	assert_true(dbw_name_hash_ci("EMAIL", 5) == ci);
	assert_true(dbw_name_hash_ci("emails", 6) != ci);
	/* never a PostgreSQL name's exact key */
	assert_true(dbw_name_hash("email", 5) != ci);
	assert_true(dbw_name_hash("\x01" "email", 6) == ci);
	assert_true(dbw_name_hash("Email", 5) != dbw_name_hash("email", 5));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_and_lenenc),
		cmocka_unit_test(test_ok_err_eof),
		cmocka_unit_test(test_login),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_objects_and_flags),
		cmocka_unit_test(test_stitch_query_result_set),
		cmocka_unit_test(test_stitch_multi_statement_error),
		cmocka_unit_test(test_stitch_prepared_cached_metadata),
		cmocka_unit_test(test_stitch_16mib_packet),
		cmocka_unit_test(test_stitch_ssl_request),
		cmocka_unit_test(test_mask_name_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
