// SPDX-License-Identifier: GPL-2.0-only
/*
 * Redis: the RESP scanner (redis_proto.c) and the stitcher (redis_conn.c)
 * against byte-exact fixtures, fed whole and one byte at a time.
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
#include "redis_conn.h"
#include "redis_proto.h"

#define FIX(s) ((const uint8_t *)(s)), (sizeof(s) - 1)

static struct redis_scan scan;

/* Scan one whole unit from buf; asserts it ends exactly at len. */
static void scan_one(bool request, const uint8_t *buf, size_t len)
{
	size_t used = 0;

	redis_scan_init(&scan, request);
	assert_int_equal(redis_scan(&scan, buf, len, &used), DBW_PARSE_OK);
	assert_int_equal(used, len);
}

/* The same, one byte per call: NEED_MORE until the last one. */
static void scan_bytewise(bool request, const uint8_t *buf, size_t len)
{
	redis_scan_init(&scan, request);
	for (size_t i = 0; i < len; i++) {
		size_t used = 0;
		enum dbw_parse r = redis_scan(&scan, buf + i, 1, &used);

		assert_int_equal(used, 1);
		assert_int_equal(r, i + 1 == len ? DBW_PARSE_OK : DBW_PARSE_NEED_MORE);
	}
}

static void test_command_array(void **state)
{
	static const uint8_t set[] = "*3\r\n$3\r\nSET\r\n$6\r\nuser:1\r\n$5\r\nalice\r\n";
	char text[128];
	struct redis_stmt rs;

	for (int pass = 0; pass < 2; pass++) {
		if (pass)
			scan_bytewise(true, FIX(set));
		else
			scan_one(true, FIX(set));
		assert_int_equal(scan.cmd.argc, 3);
		assert_int_equal(scan.cmd.nargs, 3);
		assert_string_equal(scan.cmd.args[0].data, "SET");
		assert_string_equal(scan.cmd.args[2].data, "alice");
		redis_cmd_stmt(&scan.cmd, text, sizeof(text), &rs);
		assert_string_equal(text, "SET user:1 ?");
		assert_string_equal(rs.verb, "SET");
		assert_int_equal(rs.nobjects, 1);
		assert_string_equal(rs.objects[0], "user:1");
		assert_false(rs.cut);
	}
	redis_scan_reset(&scan);
}

static void test_inline_command(void **state)
{
	char text[128];
	struct redis_stmt rs;

	scan_one(true, FIX("set k1 \"a b \\\" c\"\r\n"));
	assert_true(scan.cmd.inline_cmd);
	assert_int_equal(scan.cmd.argc, 3);
	assert_string_equal(scan.cmd.args[2].data, "a b \" c");
	redis_cmd_stmt(&scan.cmd, text, sizeof(text), &rs);
	assert_string_equal(text, "SET k1 ?");
	redis_scan_reset(&scan);
}

static void test_pipeline_two_commands(void **state)
{
	static const uint8_t two[] = "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
	size_t used = 0, off;

	redis_scan_init(&scan, true);
	assert_int_equal(redis_scan(&scan, FIX(two), &used), DBW_PARSE_OK);
	assert_int_equal(used, 14);
	assert_string_equal(scan.cmd.args[0].data, "PING");
	off = used;
	assert_int_equal(redis_scan(&scan, two + off, sizeof(two) - 1 - off, &used), DBW_PARSE_OK);
	assert_int_equal(off + used, sizeof(two) - 1);
	assert_string_equal(scan.cmd.args[0].data, "GET");
	redis_scan_reset(&scan);
}

static void test_keys_of_commands(void **state)
{
	static const uint8_t mset[] = "*5\r\n$4\r\nmset\r\n$2\r\nk1\r\n$2\r\nv1\r\n$2\r\nk2\r\n"
				      "$2\r\nv2\r\n";
	static const uint8_t eval[] = "*5\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n1\r\n"
				      "$3\r\nkey\r\n$3\r\narg\r\n";
	static const uint8_t cfg[] = "*4\r\n$6\r\nCONFIG\r\n$3\r\nset\r\n$9\r\nmaxmemory\r\n"
				     "$2\r\n1g\r\n";
	char text[128];
	struct redis_stmt rs;

	assert_true(redis_cmd_table_sorted());
	scan_one(true, FIX(mset));
	redis_cmd_stmt(&scan.cmd, text, sizeof(text), &rs);
	assert_string_equal(text, "MSET k1 ? k2 ?");
	assert_int_equal(rs.nobjects, 2);
	scan_one(true, FIX(eval));
	redis_cmd_stmt(&scan.cmd, text, sizeof(text), &rs);
	assert_string_equal(text, "EVAL ? ? key ?");
	scan_one(true, FIX(cfg));
	redis_cmd_stmt(&scan.cmd, text, sizeof(text), &rs);
	assert_string_equal(rs.verb, "CONFIG SET");
	assert_string_equal(text, "CONFIG SET ? ?");
	assert_int_equal(redis_verb_class("CONFIG SET"), DBW_RVERB_CONFIG_SET);
	assert_int_equal(redis_verb_class("flushall"), DBW_RVERB_FLUSHALL);
	assert_int_equal(redis_verb_class("PING"), DBW_RVERB_OTHER);
}

static void test_fingerprint_folds_digits(void **state)
{
	struct redis_stmt a, b;
	char text[128];

	scan_one(true, FIX("*3\r\n$3\r\nSET\r\n$6\r\nuser:1\r\n$1\r\nx\r\n"));
	redis_cmd_stmt(&scan.cmd, text, sizeof(text), &a);
	scan_one(true, FIX("*3\r\n$3\r\nSET\r\n$8\r\nuser:123\r\n$3\r\nyyy\r\n"));
	redis_cmd_stmt(&scan.cmd, text, sizeof(text), &b);
	assert_string_equal(a.fingerprint, b.fingerprint);
	assert_int_equal(strlen(a.fingerprint), 16);
}

static void test_replies(void **state)
{
	scan_one(false, FIX("+OK\r\n"));
	assert_string_equal(scan.reply.status, "OK");
	assert_false(scan.reply.top.error);
	scan_one(false, FIX("-WRONGTYPE Operation against a key\r\n"));
	assert_true(scan.reply.top.error);
	assert_string_equal(scan.reply.top.code, "WRONGTYPE");
	scan_one(false, FIX("$-1\r\n"));
	assert_true(scan.reply.null);
	scan_one(false, FIX("*2\r\n$1\r\na\r\n*1\r\n:5\r\n"));
	assert_int_equal(scan.reply.count, 2);
	assert_int_equal(scan.reply.top.type, '*');
	assert_int_equal(scan.reply.nelems, 2);
	/* EXEC: one element an error */
	scan_bytewise(false, FIX("*3\r\n+OK\r\n-ERR not an integer\r\n$1\r\nv\r\n"));
	assert_int_equal(scan.reply.nelems, 3);
	assert_true(scan.reply.elems[1].error);
	assert_string_equal(scan.reply.elems[1].code, "ERR");
	/* RESP3: a map, an attribute before a value, a push, a blob error */
	scan_one(false, FIX("%1\r\n+f\r\n$1\r\nv\r\n"));
	assert_int_equal(scan.reply.count, 1);
	assert_int_equal(scan.reply.top.type, '%');
	scan_one(false, FIX("|1\r\n+ttl\r\n:3\r\n:42\r\n"));
	assert_int_equal(scan.reply.top.type, ':');
	scan_one(false, FIX(">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"));
	assert_true(scan.reply.push);
	scan_one(false, FIX("!9\r\nSYNTAX xy\r\n"));
	assert_true(scan.reply.top.error);
	assert_string_equal(scan.reply.top.code, "SYNTAX");
	scan_one(false, FIX("_\r\n"));
	assert_true(scan.reply.null);
}

static void test_invalid(void **state)
{
	size_t used;

	redis_scan_init(&scan, false);
	assert_int_equal(redis_scan(&scan, FIX("?what\r\n"), &used), DBW_PARSE_INVALID);
	redis_scan_init(&scan, false);
	assert_int_equal(redis_scan(&scan, FIX("*x\r\n"), &used), DBW_PARSE_INVALID);
	redis_scan_init(&scan, true);
	assert_int_equal(redis_scan(&scan, FIX("*1\r\n:1\r\n"), &used), DBW_PARSE_INVALID);
	redis_scan_init(&scan, false);
	assert_int_equal(redis_scan(&scan, FIX("$99999999999\r\n"), &used), DBW_PARSE_INVALID);
}

static void test_long_value_skip(void **state)
{
	size_t used;

	redis_scan_init(&scan, true);
	assert_int_equal(
		redis_scan(&scan, FIX("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\nabc"), &used),
		DBW_PARSE_NEED_MORE);
	assert_true(redis_scan_skip(&scan, 990));
	assert_false(redis_scan_skip(&scan, 100));
	assert_int_equal(redis_scan(&scan, FIX("1234567\r\n"), &used), DBW_PARSE_OK);
	assert_string_equal(scan.cmd.args[1].data, "k");
}

/* ---- the stitcher ----------------------------------------------------------- */

struct seen {
	char text[8][64];
	char verb[8][32];
	int status[8];
	char tag[8][32];
	int n;
	char user[64], db[32];
	int unparsed, encrypted;
};

static void on_stmt(void *ctx, const struct dbw_stmt *st)
{
	struct seen *s = ctx;

	assert_non_null(st->analysis);
	if (s->n < 8) {
		snprintf(s->text[s->n], 64, "%s", st->analysis->normalized);
		snprintf(s->verb[s->n], 32, "%s", st->analysis->verb);
		snprintf(s->tag[s->n], 32, "%s", st->tag);
		s->status[s->n] = st->status;
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

/* rediss://: a ClientHello first, then ciphertext both ways; no command, no garbage */
static void test_stitch_tls_hello(void **state)
{
	static const uint8_t hello[] = {
		0x16, 0x03, 0x01, 0x00, 0x05, 'G', 'E', 'T', ' ', 'k', '\n'
	};
	static const uint8_t server[] = { 0x16, 0x03, 0x03, 0x00, 0x02, '+', '\n' };
	struct seen s = {};
	struct redis_conn *c = redis_conn_new(&ops, &s);

	redis_conn_feed(c, DBW_DIR_TO_SERVER, hello, sizeof(hello), 1, 7);
	redis_conn_feed(c, DBW_DIR_TO_CLIENT, server, sizeof(server), 2, 0);
	redis_conn_feed(c, DBW_DIR_TO_SERVER, FIX("GET k\r\n"), 3, 7);
	redis_conn_close(c, 4);
	assert_int_equal(s.encrypted, 1);
	assert_int_equal(s.n, 0);
	assert_int_equal(s.unparsed, 0);
	redis_conn_free(c);
}

static void test_stitch_multi_exec(void **state)
{
	static const uint8_t req[] =
		"*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
		"*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n*1\r\n$4\r\nEXEC\r\n"
		"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n";
	static const uint8_t rep[] = "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n-ERR not int\r\n"
				     "+OK\r\n";
	struct seen s = {};
	struct redis_conn *c = redis_conn_new(&ops, &s);

	redis_conn_feed(c, DBW_DIR_TO_SERVER, FIX(req), 1, 7);
	for (size_t i = 0; i < sizeof(rep) - 1; i++)
		redis_conn_feed(c, DBW_DIR_TO_CLIENT, rep + i, 1, 2, 0);
	assert_int_equal(s.n, 5);
	assert_string_equal(s.verb[0], "MULTI");
	assert_string_equal(s.text[1], "SET k ?");
	assert_int_equal(s.status[1], DBW_STMT_OK);
	assert_string_equal(s.text[2], "INCR k");
	assert_int_equal(s.status[2], DBW_STMT_ERROR);
	assert_string_equal(s.tag[2], "ERR");
	assert_string_equal(s.verb[3], "EXEC");
	assert_string_equal(s.text[4], "SELECT ?");
	assert_string_equal(s.db, "2");
	redis_conn_close(c, 3);
	assert_int_equal(s.unparsed, 0);
	redis_conn_free(c);
}

/* SUBSCRIBE a b: two replies, one statement; the PING after it gets its own */
static void test_stitch_subscribe(void **state)
{
	static const uint8_t req[] = "*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n"
				     "*1\r\n$4\r\nPING\r\n";
	static const uint8_t rep[] = "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
				     "*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
				     "*2\r\n$4\r\npong\r\n$0\r\n\r\n";
	struct seen s = {};
	struct redis_conn *c = redis_conn_new(&ops, &s);

	redis_conn_feed(c, DBW_DIR_TO_SERVER, FIX(req), 1, 7);
	redis_conn_feed(c, DBW_DIR_TO_CLIENT, FIX(rep), 2, 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.text[0], "SUBSCRIBE a b");
	assert_string_equal(s.text[1], "PING");
	redis_conn_free(c);
}

static void test_stitch_close_and_garbage(void **state)
{
	struct seen s = {};
	struct redis_conn *c = redis_conn_new(&ops, &s);

	redis_conn_feed(c, DBW_DIR_TO_SERVER, FIX("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), 1, 7);
	redis_conn_close(c, 3);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.status[0], DBW_STMT_UNKNOWN);
	redis_conn_feed(c, DBW_DIR_TO_CLIENT, FIX("\x16\x03\x01garbage\r\n"), 1, 0);
	assert_int_equal(s.unparsed, 1);
	redis_conn_free(c);
}

/* The key positions the kernel masks replies by: the table's last word on a name, if any. */
static int mask_spec(const char *name, struct dbw_rkey_spec *out)
{
	struct dbw_rkey_spec sp;
	const char *n;
	int found = 0;

	for (size_t i = 0; (n = redis_mask_spec_entry(i, &sp)); i++)
		if (!strcmp(n, name)) {
			/* a name listed twice must say the same both times */
			if (found)
				assert_memory_equal(out, &sp, sizeof(sp));
			*out = sp;
			found = 1;
		}
	return found;
}

static void test_mask_key_specs(void **state)
{
	struct dbw_rkey_spec sp;

	assert_true(mask_spec("GET", &sp));
	assert_int_equal(sp.first, 1);
	assert_int_equal(sp.last, 1);
	assert_int_equal(sp.flags, 0);
	assert_true(mask_spec("MSET", &sp));
	assert_int_equal(sp.last, -1);
	assert_int_equal(sp.step, 2);
	/* EVAL script numkeys key... arg...: every argument from the third */
	assert_true(mask_spec("EVAL", &sp));
	assert_int_equal(sp.first, 3);
	assert_int_equal(sp.last, -1);
	/* KEYS' pattern and PUBLISH's channel are no keys */
	assert_true(mask_spec("KEYS", &sp));
	assert_int_equal(sp.flags, DBW_RKEY_NONE);
	assert_true(mask_spec("PUBLISH", &sp));
	assert_int_equal(sp.flags, DBW_RKEY_NONE);
	assert_true(mask_spec("SUBSCRIBE", &sp));
	assert_int_equal(sp.flags, DBW_RKEY_UNPAIRED);
	assert_true(mask_spec("CLIENT REPLY", &sp));
	assert_int_equal(sp.flags, DBW_RKEY_UNPAIRED);
	assert_true(mask_spec("CLIENT", &sp));
	assert_int_equal(sp.flags, DBW_RKEY_NONE);
	assert_true(mask_spec("OBJECT ENCODING", &sp));
	assert_int_equal(sp.first, 2);
	assert_int_equal(sp.last, 2);
	assert_true(mask_spec("EXEC", &sp));
	assert_int_equal(sp.flags, DBW_RKEY_EXEC);
	/* not in the table: the kernel takes every argument for a key */
	assert_false(mask_spec("JSON.GET", &sp));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command_array),
		cmocka_unit_test(test_inline_command),
		cmocka_unit_test(test_pipeline_two_commands),
		cmocka_unit_test(test_keys_of_commands),
		cmocka_unit_test(test_mask_key_specs),
		cmocka_unit_test(test_fingerprint_folds_digits),
		cmocka_unit_test(test_replies),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_long_value_skip),
		cmocka_unit_test(test_stitch_multi_exec),
		cmocka_unit_test(test_stitch_tls_hello),
		cmocka_unit_test(test_stitch_subscribe),
		cmocka_unit_test(test_stitch_close_and_garbage),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);

	redis_scan_reset(&scan);
	return r;
}
