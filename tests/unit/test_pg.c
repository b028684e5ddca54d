// SPDX-License-Identifier: GPL-2.0-only
/*
 * PostgreSQL wire parser and stitcher: byte-exact fixtures, a recorded
 * conversation fed split at every byte boundary, bounded memory on giant
 * and garbage input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "dbwarden_abi.h"
#include "pg_conn.h"
#include "pg_proto.h"
#include "pgwire.h"

/* ---- pg_proto ------------------------------------------------------------- */

static void test_hdr_regular(void **state)
{
	const uint8_t q[] = { 'Q', 0, 0, 0, 13 };
	struct pg_hdr h;

	for (size_t n = 1; n < sizeof(q); n++)
		assert_int_equal(pg_parse_hdr(q, n, false, true, &h), DBW_PARSE_NEED_MORE);
	assert_int_equal(pg_parse_hdr(q, 5, false, true, &h), DBW_PARSE_OK);
	assert_int_equal(h.type, 'Q');
	assert_int_equal(h.hdr_len, 5);
	assert_int_equal(h.body_len, 9);
	/* 'Q' is not something a server sends; 'Z' is not a client message */
	assert_int_equal(pg_parse_hdr(q, 5, false, false, &h), DBW_PARSE_INVALID);
	assert_int_equal(pg_parse_hdr((const uint8_t *)"Z\0\0\0\5I", 5, false, true, &h),
			 DBW_PARSE_INVALID);
	/* a length below 4 or above 1 GiB is not PostgreSQL */
	assert_int_equal(pg_parse_hdr((const uint8_t *)"Q\0\0\0\3", 5, false, true, &h),
			 DBW_PARSE_INVALID);
	assert_int_equal(pg_parse_hdr((const uint8_t *)"Q\x7f\0\0\0", 5, false, true, &h),
			 DBW_PARSE_INVALID);
	/* garbage fails on its first byte, without waiting for more */
	assert_int_equal(pg_parse_hdr((const uint8_t *)"h", 1, false, true, &h), DBW_PARSE_INVALID);
}

static void test_hdr_startup(void **state)
{
	struct buf b = {};
	struct pg_hdr h;

	startup(&b, "app", "shop", "psql");
	for (size_t n = 0; n < 4; n++)
		assert_int_equal(pg_parse_hdr(b.p, n, true, true, &h), DBW_PARSE_NEED_MORE);
	assert_int_equal(pg_parse_hdr(b.p, b.n, true, true, &h), DBW_PARSE_OK);
	assert_int_equal(h.type, 0);
	assert_int_equal(h.hdr_len, 4);
	assert_int_equal(h.body_len, b.n - 4);
	assert_int_equal(pg_parse_hdr((const uint8_t *)"\0\0\0\7", 4, true, true, &h),
			 DBW_PARSE_INVALID);
	assert_int_equal(pg_parse_hdr((const uint8_t *)"GET ", 4, true, true, &h),
			 DBW_PARSE_INVALID);
	free(b.p);
}

static void test_startup_body(void **state)
{
	struct buf b = {};
	struct pg_startup s;

	startup(&b, "app", "shop", "orders");
	assert_int_equal(pg_parse_startup(b.p + 4, b.n - 4, &s), DBW_PARSE_OK);
	assert_int_equal(s.code, PG_PROTO_V3);
	assert_string_equal(s.user, "app");
	assert_string_equal(s.database, "shop");
	assert_string_equal(s.application_name, "orders");
	/* cut inside a parameter: malformed */
	assert_int_equal(pg_parse_startup(b.p + 4, 12, &s), DBW_PARSE_INVALID);
	b.n = 0;
	ssl_request(&b);
	assert_int_equal(pg_parse_startup(b.p + 4, 4, &s), DBW_PARSE_OK);
	assert_int_equal(s.code, PG_SSL_REQUEST);
	assert_null(s.user);
	free(b.p);
}

static void test_bodies(void **state)
{
	const uint32_t types[2] = { 23, 25 };
	struct pg_parse_msg pm;
	struct pg_bind_msg bm;
	struct buf b = {};
	const char *s;
	char code[6], kind;
	uint32_t maxrows;

	parse(&b, "ins", "INSERT INTO t VALUES ($1, $2)", 2, types);
	assert_int_equal(pg_parse_parse(b.p + 5, b.n - 5, &pm), DBW_PARSE_OK);
	assert_string_equal(pm.name, "ins");
	assert_string_equal(pm.query, "INSERT INTO t VALUES ($1, $2)");
	assert_int_equal(pm.ntypes, 2);
	assert_int_equal(pm.types_avail, 2);
	assert_memory_equal(pm.types, "\0\0\0\x17\0\0\0\x19", 8);
	/* the body cut inside the query text: the text present is reported */
	assert_int_equal(pg_parse_parse(b.p + 5, 10, &pm), DBW_PARSE_OK);
	assert_int_equal(pm.query_len, 6);
	assert_memory_equal(pm.query, "INSERT", 6);
	assert_int_equal(pm.ntypes, 0);
	/* no NUL ends the name: not a Parse */
	assert_int_equal(pg_parse_parse((const uint8_t *)"abc", 3, &pm), DBW_PARSE_INVALID);

	b.n = 0;
	bind(&b, "p1", "ins", 2);
	assert_int_equal(pg_parse_bind(b.p + 5, b.n - 5, &bm), DBW_PARSE_OK);
	assert_string_equal(bm.portal, "p1");
	assert_string_equal(bm.stmt, "ins");
	assert_int_equal(bm.nparams, 2);
	assert_int_equal(pg_parse_bind(b.p + 5, 3, &bm), DBW_PARSE_INVALID);

	b.n = 0;
	execute(&b, "p1");
	assert_int_equal(pg_parse_execute(b.p + 5, b.n - 5, &s, &maxrows), DBW_PARSE_OK);
	assert_string_equal(s, "p1");
	assert_int_equal(maxrows, 0);

	b.n = 0;
	describe(&b, 'S', "ins");
	assert_int_equal(pg_parse_target(b.p + 5, b.n - 5, &kind, &s), DBW_PARSE_OK);
	assert_int_equal(kind, 'S');
	assert_string_equal(s, "ins");
	assert_int_equal(pg_parse_target((const uint8_t *)"X", 1, &kind, &s), DBW_PARSE_INVALID);

	b.n = 0;
	complete(&b, "INSERT 0 1");
	assert_int_equal(pg_parse_tag(b.p + 5, b.n - 5, &s), DBW_PARSE_OK);
	assert_string_equal(s, "INSERT 0 1");
	assert_int_equal(pg_parse_tag(b.p + 5, 3, &s), DBW_PARSE_INVALID);

	b.n = 0;
	error_resp(&b, "42P01");
	assert_int_equal(pg_parse_error(b.p + 5, b.n - 5, code), DBW_PARSE_OK);
	assert_string_equal(code, "42P01");
	free(b.p);
}

static void test_tag_rows(void **state)
{
	static const struct {
		const char *tag;
		bool has;
		uint64_t rows;
	} cases[] = {
		{ "SELECT 5", true, 5 },       { "INSERT 0 1", true, 1 },
		{ "UPDATE 3", true, 3 },       { "DELETE 0", true, 0 },
		{ "COPY 10000", true, 10000 }, { "MERGE 2", true, 2 },
		{ "FETCH 7", true, 7 },	       { "MOVE 4", true, 4 },
		{ "CREATE TABLE", false, 0 },  { "BEGIN", false, 0 },
		{ "SELECT", false, 0 },
	};
	uint64_t rows;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rows = 12345;
		assert_int_equal(pg_tag_rows(cases[i].tag, &rows), cases[i].has);
		if (cases[i].has)
			assert_int_equal(rows, cases[i].rows);
	}
}

/* ---- pg_conn: conversations ------------------------------------------------ */

/* A conversation: the two streams of one connection, in the order sent. */
struct conv {
	int n;
	struct {
		int dir;
		struct buf b;
	} seg[64];
};

static struct buf *to_server(struct conv *c)
{
	c->seg[c->n].dir = DBW_DIR_TO_SERVER;
	return &c->seg[c->n++].b;
}

static struct buf *to_client(struct conv *c)
{
	c->seg[c->n].dir = DBW_DIR_TO_CLIENT;
	return &c->seg[c->n++].b;
}

static void conv_free(struct conv *c)
{
	for (int i = 0; i < c->n; i++)
		free(c->seg[i].b.p);
}

/*
 * Feed every segment, each cut into pieces of at most `piece` bytes
 * (0: whole), or cut once at `cut` bytes into the segment (when piece < 0).
 */
static void feed(struct pg_conn *pc, const struct conv *c, long piece, size_t cut)
{
	for (int i = 0; i < c->n; i++) {
		const uint8_t *p = c->seg[i].b.p;
		size_t n = c->seg[i].b.n;

		if (piece < 0) {
			size_t k = cut < n ? cut : n;

			pg_conn_feed(pc, c->seg[i].dir, p, k, 1, 7);
			pg_conn_feed(pc, c->seg[i].dir, p + k, n - k, 1, 7);
			continue;
		}
		while (n) {
			size_t k = piece && (size_t)piece < n ? (size_t)piece : n;

			pg_conn_feed(pc, c->seg[i].dir, p, k, 1, 7);
			p += k;
			n -= k;
		}
	}
}

static struct recorder *run(const struct conv *c, long piece, size_t cut)
{
	struct recorder *r = calloc(1, sizeof(*r));
	struct pg_conn *pc = pg_conn_new(&rec_ops, r);

	assert_non_null(pc);
	feed(pc, c, piece, cut);
	pg_conn_close(pc, 2);
	pg_conn_free(pc);
	return r;
}

static void assert_same(const struct recorder *a, const struct recorder *b)
{
	assert_int_equal(a->n, b->n);
	assert_int_equal(a->unparsed, b->unparsed);
	assert_int_equal(a->sessions, b->sessions);
	for (int i = 0; i < a->n; i++) {
		const struct rec_stmt *x = &a->st[i], *y = &b->st[i];

		assert_string_equal(x->text, y->text);
		assert_int_equal(x->status, y->status);
		assert_string_equal(x->tag, y->tag);
		assert_int_equal(x->rows, y->rows);
		assert_string_equal(x->sqlstate, y->sqlstate);
		assert_string_equal(x->prepared, y->prepared);
		assert_int_equal(x->nparams, y->nparams);
		assert_int_equal(x->req_off, y->req_off);
	}
}

/*
 * A whole session the way psql and libpq conduct one: SSLRequest refused,
 * startup, a multi-statement Query with an error, the extended protocol
 * with a named statement executed twice, a pipelined unnamed statement,
 * COPY FROM STDIN, Terminate.
 */
static void recorded_session(struct conv *c)
{
	const uint32_t types[1] = { 23 };
	struct buf *b;

	ssl_request(to_server(c));
	put8(to_client(c), 'N');
	startup(to_server(c), "app", "shop", "psql");
	server_hello(to_client(c));

	msgz(to_server(c), 'Q', "SELECT 1; SELECT 1/0; SELECT 'lit_never'");
	b = to_client(c);
	row_desc(b);
	data_row(b, "1");
	complete(b, "SELECT 1");
	error_resp(b, "22012");
	ready(b, 'I');

	b = to_server(c);
	parse(b, "s1", "SELECT $1::int", 1, types);
	bind(b, "", "s1", 1);
	describe(b, 'P', "");
	execute(b, "");
	bind(b, "", "s1", 1);
	execute(b, "");
	sync_msg(b);
	b = to_client(c);
	empty_msg(b, '1');
	empty_msg(b, '2');
	row_desc(b);
	data_row(b, "1");
	complete(b, "SELECT 1");
	empty_msg(b, '2');
	data_row(b, "2");
	complete(b, "SELECT 1");
	ready(b, 'I');

	b = to_server(c);
	parse(b, "", "UPDATE t SET v = $1 WHERE id = 3", 0, NULL);
	bind(b, "", "", 1);
	execute(b, "");
	sync_msg(b);
	b = to_client(c);
	empty_msg(b, '1');
	empty_msg(b, '2');
	complete(b, "UPDATE 3");
	ready(b, 'I');

	msgz(to_server(c), 'Q', "COPY t FROM STDIN");
	b = to_client(c);
	put8(b, 'G');
	put32(b, 7);
	put8(b, 0);
	put16(b, 0);
	b = to_server(c);
	msgz(b, 'd', "1\tlit_row\n");
	msgz(b, 'd', "2\tlit_row\n");
	empty_msg(b, 'c');
	b = to_client(c);
	complete(b, "COPY 2");
	ready(b, 'I');
	empty_msg(to_server(c), 'X');
}

static void test_session_events(void **state)
{
	struct conv c = {};
	struct recorder *r;

	recorded_session(&c);
	r = run(&c, 0, 0);
	assert_int_equal(r->unparsed, 0);
	assert_int_equal(r->encrypted, 0);
	assert_int_equal(r->sessions, 1);
	assert_string_equal(r->user, "app");
	assert_string_equal(r->db, "shop");
	assert_string_equal(r->app, "psql");
	assert_int_equal(r->n, 7);

	assert_string_equal(r->st[0].text, "SELECT 1");
	assert_int_equal(r->st[0].status, DBW_STMT_OK);
	assert_string_equal(r->st[0].tag, "SELECT 1");
	assert_int_equal(r->st[0].mode, DBW_MODE_SIMPLE);
	assert_false(r->st[0].has_prepared);
	assert_string_equal(r->st[1].text, "SELECT 1/0");
	assert_int_equal(r->st[1].status, DBW_STMT_ERROR);
	assert_string_equal(r->st[1].sqlstate, "22012");
	assert_string_equal(r->st[2].text, "SELECT 'lit_never'");
	assert_int_equal(r->st[2].status, DBW_STMT_SKIPPED);
	/* all three came in the Query at offset 8 (after SSLRequest) + startup */
	assert_int_equal(r->st[0].req_off, r->st[2].req_off);

	for (int i = 3; i <= 4; i++) {
		assert_string_equal(r->st[i].text, "SELECT $1::int");
		assert_int_equal(r->st[i].mode, DBW_MODE_EXTENDED);
		assert_string_equal(r->st[i].prepared, "s1");
		assert_int_equal(r->st[i].nparams, 1);
		assert_int_equal(r->st[i].ntypes, 1);
		assert_int_equal(r->st[i].types[0], 23);
		assert_int_equal(r->st[i].status, DBW_STMT_OK);
		assert_true(r->st[i].has_rows);
		assert_int_equal(r->st[i].rows, 1);
	}
	/* both Executes point back to the one Parse that carried the text */
	assert_int_equal(r->st[3].req_off, r->st[4].req_off);
	assert_true(r->st[3].req_off > r->st[0].req_off);

	assert_string_equal(r->st[5].text, "UPDATE t SET v = $1 WHERE id = 3");
	assert_true(r->st[5].has_prepared);
	assert_string_equal(r->st[5].prepared, "");
	assert_string_equal(r->st[5].tag, "UPDATE 3");
	assert_int_equal(r->st[5].rows, 3);

	assert_string_equal(r->st[6].text, "COPY t FROM STDIN");
	assert_true(r->st[6].is_copy);
	assert_int_equal(r->st[6].rows, 2);
	free(r);
	conv_free(&c);
}

/* Framing must not depend on how the bytes were cut into records. */
static void test_session_split_everywhere(void **state)
{
	struct conv c = {};
	struct recorder *whole, *r;
	size_t longest = 0;

	recorded_session(&c);
	whole = run(&c, 0, 0);
	r = run(&c, 1, 0);
	assert_same(whole, r);
	free(r);
	for (int i = 0; i < c.n; i++)
		longest = c.seg[i].b.n > longest ? c.seg[i].b.n : longest;
	for (size_t cut = 0; cut <= longest; cut++) {
		r = run(&c, -1, cut);
		assert_same(whole, r);
		free(r);
	}
	for (long piece = 2; piece < 40; piece++) {
		r = run(&c, piece, 0);
		assert_same(whole, r);
		free(r);
	}
	free(whole);
	conv_free(&c);
}

static void test_ssl_accepted_is_encrypted(void **state)
{
	struct conv c = {};
	struct recorder *r;

	ssl_request(to_server(&c));
	put8(to_client(&c), 'S');
	put(to_server(&c), "\x16\x03\x01\x02\x00", 5); /* a ClientHello */
	r = run(&c, 0, 0);
	assert_int_equal(r->encrypted, 1);
	assert_int_equal(r->unparsed, 0);
	assert_int_equal(r->n, 0);
	free(r);
	conv_free(&c);
}

/* A stitcher past the startup exchange, recording into a new *r. */
static struct pg_conn *session(struct recorder **r)
{
	struct pg_conn *pc;
	struct buf b = {};

	*r = calloc(1, sizeof(**r));
	pc = pg_conn_new(&rec_ops, *r);
	assert_non_null(pc);
	startup(&b, "u", "d", NULL);
	pg_conn_feed(pc, DBW_DIR_TO_SERVER, b.p, b.n, 1, 1);
	b.n = 0;
	server_hello(&b);
	pg_conn_feed(pc, DBW_DIR_TO_CLIENT, b.p, b.n, 1, 1);
	free(b.p);
	return pc;
}

/* A 1 MiB statement: one event, truncated, its real size; memory stays bounded. */
static void test_giant_statement_bounded(void **state)
{
	size_t big = 1 << 20, chunk = 16384, peak = 0;
	struct recorder *r;
	struct pg_conn *pc = session(&r);
	struct buf b = {};
	char *text = malloc(big + 1);

	memset(text, 'x', big);
	memcpy(text, "SELECT '", 8);
	text[big - 1] = '\'';
	text[big] = 0;
	msgz(&b, 'Q', text);
	for (size_t off = 0; off < b.n; off += chunk) {
		size_t n = b.n - off < chunk ? b.n - off : chunk;
		size_t m;

		pg_conn_feed(pc, DBW_DIR_TO_SERVER, b.p + off, n, 1, 1);
		m = pg_conn_mem(pc);
		peak = m > peak ? m : peak;
	}
	b.n = 0;
	row_desc(&b);
	data_row(&b, "1048576");
	complete(&b, "SELECT 1");
	ready(&b, 'I');
	pg_conn_feed(pc, DBW_DIR_TO_CLIENT, b.p, b.n, 2, 1);
	assert_int_equal(r->n, 1);
	assert_true(r->st[0].truncated);
	assert_int_equal(r->st[0].full_len, big); /* the text, not its NUL */
	assert_int_equal(r->st[0].status, DBW_STMT_OK);
	assert_true(peak < 200 * 1024);
	assert_true(pg_conn_mem(pc) < 200 * 1024);
	pg_conn_free(pc);
	free(text);
	free(b.p);
	free(r);
}

/* Bytes not captured inside a message truncate it; elsewhere the stream is lost. */
static void test_gaps(void **state)
{
	struct recorder *r;
	struct pg_conn *pc = session(&r);
	struct buf b = {};

	msgz(&b, 'Q', "SELECT 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'");
	pg_conn_feed(pc, DBW_DIR_TO_SERVER, b.p, 20, 1, 1);
	pg_conn_gap(pc, DBW_DIR_TO_SERVER, 10, 1);
	pg_conn_feed(pc, DBW_DIR_TO_SERVER, b.p + 30, b.n - 30, 1, 1);
	b.n = 0;
	complete(&b, "SELECT 1");
	ready(&b, 'I');
	pg_conn_feed(pc, DBW_DIR_TO_CLIENT, b.p, b.n, 1, 1);
	assert_int_equal(r->n, 1);
	assert_true(r->st[0].truncated);
	assert_int_equal(r->st[0].status, DBW_STMT_OK);
	assert_int_equal(r->unparsed, 0);
	/* between messages: where the next one starts is unknown */
	pg_conn_gap(pc, DBW_DIR_TO_SERVER, 5, 1);
	assert_int_equal(r->unparsed, 1);
	assert_string_equal(r->reason, "gap");
	b.n = 0;
	msgz(&b, 'Q', "SELECT 2");
	pg_conn_feed(pc, DBW_DIR_TO_SERVER, b.p, b.n, 1, 1);
	assert_int_equal(r->n, 1);
	pg_conn_free(pc);
	free(b.p);
	free(r);
}

static void test_garbage_unparsed_once(void **state)
{
	struct recorder *r = calloc(1, sizeof(*r));
	struct pg_conn *pc = pg_conn_new(&rec_ops, r);
	uint8_t junk[4096];

	pg_conn_feed(pc, DBW_DIR_TO_SERVER, (const uint8_t *)"hello\r\n", 7, 1, 1);
	srand(7);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = rand();
	for (int i = 0; i < 10; i++) {
		pg_conn_feed(pc, DBW_DIR_TO_SERVER, junk, sizeof(junk), 1, 1);
		pg_conn_feed(pc, DBW_DIR_TO_CLIENT, junk, sizeof(junk), 1, 1);
	}
	pg_conn_close(pc, 1);
	assert_int_equal(r->unparsed, 1);
	assert_int_equal(r->n, 0);
	assert_true(pg_conn_mem(pc) < 64 * 1024);
	pg_conn_free(pc);
	free(r);
}

/* Random bytes after a valid startup, in many seeds: no crash, bounded memory. */
static void test_fuzz_after_startup(void **state)
{
	uint8_t junk[512];

	for (unsigned seed = 1; seed <= 300; seed++) {
		struct recorder *r = calloc(1, sizeof(*r));
		struct pg_conn *pc = pg_conn_new(&rec_ops, r);
		struct buf b = {};

		startup(&b, "u", "d", NULL);
		pg_conn_feed(pc, DBW_DIR_TO_SERVER, b.p, b.n, 1, 1);
		srand(seed);
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = rand() % 3 ? rand() : "QPBESDZCT"[rand() % 9];
		pg_conn_feed(pc, seed & 1, junk, sizeof(junk), 1, 1);
		pg_conn_feed(pc, !(seed & 1), junk, sizeof(junk), 1, 1);
		assert_true(pg_conn_mem(pc) < 256 * 1024);
		assert_true(r->unparsed <= 1);
		pg_conn_close(pc, 1);
		pg_conn_free(pc);
		free(b.p);
		free(r);
	}
}

static void test_close_pending_is_unknown(void **state)
{
	struct recorder *r = calloc(1, sizeof(*r));
	struct pg_conn *pc = pg_conn_new(&rec_ops, r);
	struct buf b = {};

	startup(&b, "u", "d", NULL);
	msgz(&b, 'Q', "SELECT pg_sleep(100)");
	pg_conn_feed(pc, DBW_DIR_TO_SERVER, b.p, b.n, 1, 1);
	assert_int_equal(r->n, 0);
	pg_conn_close(pc, 5);
	assert_int_equal(r->n, 1);
	assert_int_equal(r->st[0].status, DBW_STMT_UNKNOWN);
	pg_conn_free(pc);
	free(b.p);
	free(r);
}

/* A Parse the server rejects, with no Execute after it: still one error event. */
static void test_failed_parse_alone(void **state)
{
	struct conv c = {};
	struct recorder *r;
	struct buf *b;

	startup(to_server(&c), "u", "d", NULL);
	server_hello(to_client(&c));
	b = to_server(&c);
	parse(b, "bad", "SELEC broken", 0, NULL);
	sync_msg(b);
	b = to_client(&c);
	error_resp(b, "42601");
	ready(b, 'I');
	r = run(&c, 0, 0);
	assert_int_equal(r->n, 1);
	assert_int_equal(r->st[0].status, DBW_STMT_ERROR);
	assert_string_equal(r->st[0].sqlstate, "42601");
	assert_string_equal(r->st[0].text, "SELEC broken");
	free(r);
	conv_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_regular),
		cmocka_unit_test(test_hdr_startup),
		cmocka_unit_test(test_startup_body),
		cmocka_unit_test(test_bodies),
		cmocka_unit_test(test_tag_rows),
		cmocka_unit_test(test_session_events),
		cmocka_unit_test(test_session_split_everywhere),
		cmocka_unit_test(test_ssl_accepted_is_encrypted),
		cmocka_unit_test(test_giant_statement_bounded),
		cmocka_unit_test(test_gaps),
		cmocka_unit_test(test_garbage_unparsed_once),
		cmocka_unit_test(test_fuzz_after_startup),
		cmocka_unit_test(test_close_pending_is_unknown),
		cmocka_unit_test(test_failed_parse_alone),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
