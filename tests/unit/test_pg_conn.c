// SPDX-License-Identifier: GPL-2.0-only
/*
 * PostgreSQL stitcher (pg_conn.c): conversations built message by message
 * as libpq and the server would send them, fed whole, split at every byte
 * boundary and one byte at a time; every callback is recorded and compared
 * field by field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dbwarden_abi.h"
#include "pg_conn.h"

#define CLIENT_PID 4242
#define SERVER_PID 99

/* ---- wire: messages byte by byte ------------------------------------------- */

struct wire {
	uint8_t *p;
	size_t n, cap;
	size_t len_at; /* where the open message's length word goes */
};

static void put(struct wire *w, const void *d, size_t n)
{
	if (w->n + n > w->cap) {
		w->cap = (w->n + n) * 2 + 64;
		w->p = realloc(w->p, w->cap);
		assert_non_null(w->p);
	}
	memcpy(w->p + w->n, d, n);
	w->n += n;
}

static void put8(struct wire *w, uint8_t v)
{
	put(w, &v, 1);
}

static void put16(struct wire *w, uint16_t v)
{
	const uint8_t d[2] = { v >> 8, v };

	put(w, d, 2);
}

static void put32(struct wire *w, uint32_t v)
{
	const uint8_t d[4] = { v >> 24, v >> 16, v >> 8, v };

	put(w, d, 4);
}

/* A C string with its NUL, as the protocol's String type. */
static void putz(struct wire *w, const char *s)
{
	put(w, s, strlen(s) + 1);
}

static void patch32(struct wire *w, size_t at, uint32_t v)
{
	w->p[at] = v >> 24;
	w->p[at + 1] = v >> 16;
	w->p[at + 2] = v >> 8;
	w->p[at + 3] = v;
}

/* Open a typed message; end() writes its length (which counts itself). */
static void begin(struct wire *w, char type)
{
	put8(w, type);
	w->len_at = w->n;
	put32(w, 0);
}

static void end(struct wire *w)
{
	patch32(w, w->len_at, w->n - w->len_at);
}

static void empty(struct wire *w, char type)
{
	begin(w, type);
	end(w);
}

/* ---- client messages ------------------------------------------------------- */

static void c_startup(struct wire *w, const char *user, const char *db, const char *app)
{
	size_t at = w->n;

	put32(w, 0);
	put32(w, 196608); /* protocol 3.0 */
	putz(w, "user");
	putz(w, user);
	putz(w, "database");
	putz(w, db);
	if (app) {
		putz(w, "application_name");
		putz(w, app);
	}
	putz(w, "client_encoding");
	putz(w, "UTF8");
	put8(w, 0);
	patch32(w, at, w->n - at);
}

static void c_ssl_request(struct wire *w)
{
	put32(w, 8);
	put32(w, 80877103);
}

static void c_gssenc_request(struct wire *w)
{
	put32(w, 8);
	put32(w, 80877104);
}

static void c_query(struct wire *w, const char *sql)
{
	begin(w, 'Q');
	putz(w, sql);
	end(w);
}

static void c_parse(struct wire *w, const char *name, const char *sql, int ntypes,
		    const uint32_t *types)
{
	begin(w, 'P');
	putz(w, name);
	putz(w, sql);
	put16(w, ntypes);
	for (int i = 0; i < ntypes; i++)
		put32(w, types[i]);
	end(w);
}

/* Bind with nparams text values that no event may ever show. */
static void c_bind(struct wire *w, const char *portal, const char *stmt, int nparams)
{
	begin(w, 'B');
	putz(w, portal);
	putz(w, stmt);
	put16(w, 1); /* one format code for all parameters: text */
	put16(w, 0);
	put16(w, nparams);
	for (int i = 0; i < nparams; i++) {
		put32(w, 10);
		put(w, "lit_val_42", 10);
	}
	put16(w, 0); /* result formats: all text */
	end(w);
}

static void c_describe(struct wire *w, char kind, const char *name)
{
	begin(w, 'D');
	put8(w, kind);
	putz(w, name);
	end(w);
}

static void c_execute(struct wire *w, const char *portal, uint32_t maxrows)
{
	begin(w, 'E');
	putz(w, portal);
	put32(w, maxrows);
	end(w);
}

static void c_sync(struct wire *w)
{
	empty(w, 'S');
}

static void c_close(struct wire *w, char kind, const char *name)
{
	begin(w, 'C');
	put8(w, kind);
	putz(w, name);
	end(w);
}

static void c_copy_data(struct wire *w, const char *row)
{
	begin(w, 'd');
	put(w, row, strlen(row));
	end(w);
}

static void c_copy_done(struct wire *w)
{
	empty(w, 'c');
}

static void c_terminate(struct wire *w)
{
	empty(w, 'X');
}

/* Parse (unnamed), Bind, Execute: one statement of a libpq pipeline. */
static void c_pipelined(struct wire *w, const char *sql, int nparams)
{
	c_parse(w, "", sql, 0, NULL);
	c_bind(w, "", "", nparams);
	c_execute(w, "", 0);
}

/* ---- server messages ------------------------------------------------------- */

static void s_auth_ok(struct wire *w)
{
	begin(w, 'R');
	put32(w, 0);
	end(w);
}

static void s_param_status(struct wire *w, const char *name, const char *value)
{
	begin(w, 'S');
	putz(w, name);
	putz(w, value);
	end(w);
}

static void s_backend_key(struct wire *w)
{
	begin(w, 'K');
	put32(w, 31337);
	put32(w, 0xdeadbeef);
	end(w);
}

static void s_ready(struct wire *w, char status)
{
	begin(w, 'Z');
	put8(w, status);
	end(w);
}

/* What a server sends after a StartupMessage that needs no password. */
static void s_hello(struct wire *w)
{
	s_auth_ok(w);
	s_param_status(w, "server_version", "16.4");
	s_param_status(w, "client_encoding", "UTF8");
	s_backend_key(w);
	s_ready(w, 'I');
}

static void s_row_desc(struct wire *w, int ncols)
{
	begin(w, 'T');
	put16(w, ncols);
	for (int i = 0; i < ncols; i++) {
		char name[8];

		snprintf(name, sizeof(name), "c%d", i);
		putz(w, name);
		put32(w, 16384); /* table OID */
		put16(w, i + 1); /* column number */
		put32(w, 23); /* int4 */
		put16(w, 4);
		put32(w, -1);
		put16(w, 0);
	}
	end(w);
}

static void s_data_row(struct wire *w, const char *value)
{
	begin(w, 'D');
	put16(w, 1);
	put32(w, strlen(value));
	put(w, value, strlen(value));
	end(w);
}

static void s_complete(struct wire *w, const char *tag)
{
	begin(w, 'C');
	putz(w, tag);
	end(w);
}

static void s_error(struct wire *w, const char *sqlstate)
{
	begin(w, 'E');
	put8(w, 'S');
	putz(w, "ERROR");
	put8(w, 'V');
	putz(w, "ERROR");
	put8(w, 'C');
	putz(w, sqlstate);
	put8(w, 'M');
	putz(w, "it went wrong near lit_val_42");
	put8(w, 0);
	end(w);
}

static void s_notice(struct wire *w)
{
	begin(w, 'N');
	put8(w, 'S');
	putz(w, "NOTICE");
	put8(w, 'C');
	putz(w, "00000");
	put8(w, 'M');
	putz(w, "just so you know");
	put8(w, 0);
	end(w);
}

/* CopyInResponse / CopyOutResponse: text format, ncols text columns. */
static void s_copy_response(struct wire *w, char type, int ncols)
{
	begin(w, type);
	put8(w, 0);
	put16(w, ncols);
	for (int i = 0; i < ncols; i++)
		put16(w, 0);
	end(w);
}

static void s_copy_data(struct wire *w, const char *row)
{
	begin(w, 'd');
	put(w, row, strlen(row));
	end(w);
}

/* The answer to one pipelined statement returning one row. */
static void s_pipelined_row(struct wire *w, const char *value)
{
	empty(w, '1');
	empty(w, '2');
	s_data_row(w, value);
	s_complete(w, "SELECT 1");
}

/* ---- recorder: every callback, copied out ---------------------------------- */

struct ev {
	char *text;
	size_t text_len;
	bool truncated;
	uint64_t full_len;
	int status;
	char tag[64];
	bool has_rows;
	uint64_t rows;
	char sqlstate[6];
	int mode;
	char *prepared; /* NULL when the stitcher gave NULL */
	uint32_t nparams;
	uint32_t ntypes;
	uint32_t types[DBW_MAX_PARAM_TYPES];
	bool is_copy;
	uint64_t start_ns, end_ns;
	uint32_t pid;
	uint64_t req_off;
};

struct rec {
	struct ev *ev;
	size_t n, cap;
	int sessions;
	char user[64], db[64], app[64];
	int encrypted;
	int unparsed;
	char reason[64];
	int lost;
};

static void rec_statement(void *ctx, const struct dbw_stmt *s)
{
	struct rec *r = ctx;
	struct ev *e;

	assert_non_null(s->text);
	assert_int_equal(s->text[s->text_len], 0);
	assert_true(s->nparam_types <= DBW_MAX_PARAM_TYPES);
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->ev = realloc(r->ev, r->cap * sizeof(*r->ev));
		assert_non_null(r->ev);
	}
	e = &r->ev[r->n++];
	memset(e, 0, sizeof(*e));
	e->text = malloc(s->text_len + 1);
	assert_non_null(e->text);
	memcpy(e->text, s->text, s->text_len + 1);
	e->text_len = s->text_len;
	e->truncated = s->truncated;
	e->full_len = s->text_full_len;
	e->status = s->status;
	snprintf(e->tag, sizeof(e->tag), "%s", s->tag);
	e->has_rows = s->has_rows;
	e->rows = s->rows;
	snprintf(e->sqlstate, sizeof(e->sqlstate), "%s", s->sqlstate);
	e->mode = s->mode;
	e->prepared = s->prepared_name ? strdup(s->prepared_name) : NULL;
	e->nparams = s->nparams;
	e->ntypes = s->nparam_types;
	memcpy(e->types, s->param_types, sizeof(e->types));
	e->is_copy = s->is_copy;
	e->start_ns = s->start_ns;
	e->end_ns = s->end_ns;
	e->pid = s->pid;
	e->req_off = s->req_off;
}

static void rec_session(void *ctx, const char *user, const char *db, const char *app)
{
	struct rec *r = ctx;

	assert_non_null(user);
	assert_non_null(db);
	assert_non_null(app);
	r->sessions++;
	snprintf(r->user, sizeof(r->user), "%s", user);
	snprintf(r->db, sizeof(r->db), "%s", db);
	snprintf(r->app, sizeof(r->app), "%s", app);
}

static void rec_encrypted(void *ctx)
{
	((struct rec *)ctx)->encrypted++;
}

static void rec_unparsed(void *ctx, const char *reason)
{
	struct rec *r = ctx;

	r->unparsed++;
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
}

static void rec_lost(void *ctx, uint64_t ts)
{
	((struct rec *)ctx)->lost++;
}

static const struct dbw_stitch_ops rec_ops = {
	.statement = rec_statement,
	.session = rec_session,
	.encrypted = rec_encrypted,
	.unparsed = rec_unparsed,
	.lost = rec_lost,
};

static void rec_free(struct rec *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->ev[i].text);
		free(r->ev[i].prepared);
	}
	free(r->ev);
	free(r);
}

static void assert_same(const struct rec *a, const struct rec *b)
{
	assert_int_equal(a->n, b->n);
	assert_int_equal(a->sessions, b->sessions);
	assert_string_equal(a->user, b->user);
	assert_string_equal(a->db, b->db);
	assert_string_equal(a->app, b->app);
	assert_int_equal(a->encrypted, b->encrypted);
	assert_int_equal(a->unparsed, b->unparsed);
	for (size_t i = 0; i < a->n; i++) {
		const struct ev *x = &a->ev[i], *y = &b->ev[i];

		assert_int_equal(x->text_len, y->text_len);
		assert_memory_equal(x->text, y->text, x->text_len);
		assert_int_equal(x->truncated, y->truncated);
		assert_int_equal(x->full_len, y->full_len);
		assert_int_equal(x->status, y->status);
		assert_string_equal(x->tag, y->tag);
		assert_int_equal(x->has_rows, y->has_rows);
		assert_int_equal(x->rows, y->rows);
		assert_string_equal(x->sqlstate, y->sqlstate);
		assert_int_equal(x->mode, y->mode);
		assert_int_equal(!x->prepared, !y->prepared);
		if (x->prepared)
			assert_string_equal(x->prepared, y->prepared);
		assert_int_equal(x->nparams, y->nparams);
		assert_int_equal(x->ntypes, y->ntypes);
		assert_memory_equal(x->types, y->types, sizeof(x->types));
		assert_int_equal(x->is_copy, y->is_copy);
		assert_int_equal(x->start_ns, y->start_ns);
		assert_int_equal(x->end_ns, y->end_ns);
		assert_int_equal(x->pid, y->pid);
		assert_int_equal(x->req_off, y->req_off);
	}
}

/* ---- conversations ---------------------------------------------------------- */

#define MAX_SEGS 64

/* The two streams of one connection, as segments in the order they were sent. */
struct conv {
	size_t n;
	struct {
		int dir;
		struct wire w;
	} seg[MAX_SEGS];
};

static struct wire *seg(struct conv *c, int dir)
{
	assert_true(c->n < MAX_SEGS);
	c->seg[c->n].dir = dir;
	return &c->seg[c->n++].w;
}

static struct wire *client(struct conv *c)
{
	return seg(c, DBW_DIR_TO_SERVER);
}

static struct wire *server(struct conv *c)
{
	return seg(c, DBW_DIR_TO_CLIENT);
}

static void conv_free(struct conv *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->seg[i].w.p);
}

/* Capture time of segment i: each segment its own, so end_ns says which answered. */
static uint64_t seg_ts(size_t i)
{
	return 1000 * (i + 1);
}

static uint32_t dir_pid(int dir)
{
	return dir == DBW_DIR_TO_SERVER ? CLIENT_PID : SERVER_PID;
}

/* Deterministic chunk sizes for the random splits. */
static uint32_t xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

enum split {
	WHOLE, /* each segment in one feed */
	CUT_AT, /* the whole conversation cut once, at global byte offset arg */
	PIECES, /* every segment in pieces of arg bytes */
	RANDOM, /* random pieces of 1..64 bytes, seeded with arg */
};

static void feed_conv(struct pg_conn *pc, const struct conv *c, enum split how, size_t arg,
		      size_t *peak)
{
	uint32_t rnd = arg + 1;
	size_t g = 0;

	for (size_t i = 0; i < c->n; i++) {
		const uint8_t *p = c->seg[i].w.p;
		size_t left = c->seg[i].w.n;

		while (left) {
			size_t k = left;

			if (how == CUT_AT && arg > g && arg < g + left)
				k = arg - g;
			else if (how == PIECES)
				k = arg < left ? arg : left;
			else if (how == RANDOM)
				k = 1 + xorshift(&rnd) % 64;
			if (k > left)
				k = left;
			pg_conn_feed(pc, c->seg[i].dir, p, k, seg_ts(i), dir_pid(c->seg[i].dir));
			if (peak && pg_conn_mem(pc) > *peak)
				*peak = pg_conn_mem(pc);
			p += k;
			g += k;
			left -= k;
		}
	}
}

/* Feed a conversation into a new stitcher, close it; the callbacks it made. */
static struct rec *run(const struct conv *c, enum split how, size_t arg)
{
	struct rec *r = calloc(1, sizeof(*r));
	struct pg_conn *pc = pg_conn_new(&rec_ops, r);

	assert_non_null(r);
	assert_non_null(pc);
	feed_conv(pc, c, how, arg, NULL);
	pg_conn_close(pc, 999999);
	pg_conn_free(pc);
	return r;
}

/* Client stream offset where segment i starts. */
static uint64_t client_off(const struct conv *c, size_t i)
{
	uint64_t off = 0;

	for (size_t j = 0; j < i; j++)
		if (c->seg[j].dir == DBW_DIR_TO_SERVER)
			off += c->seg[j].w.n;
	return off;
}

/* A connection through the startup exchange: user "app", database "shop". */
static void hello(struct conv *c)
{
	c_startup(client(c), "app", "shop", "orders-svc");
	s_hello(server(c));
}

/* ---- simple protocol --------------------------------------------------------- */

static void test_simple_query(void **state)
{
	struct conv c = {};
	struct wire *w;
	struct rec *r;
	const struct ev *e;

	hello(&c);
	c_query(client(&c), "SELECT id, total FROM orders WHERE id < 4");
	w = server(&c);
	s_row_desc(w, 2);
	s_data_row(w, "1");
	s_data_row(w, "2");
	s_data_row(w, "3");
	s_complete(w, "SELECT 3");
	s_ready(w, 'I');
	c_query(client(&c), "INSERT INTO orders VALUES (4, 10)");
	w = server(&c);
	s_complete(w, "INSERT 0 1");
	s_ready(w, 'I');
	c_query(client(&c), "CREATE TABLE audit (a int)");
	w = server(&c);
	s_notice(w);
	s_complete(w, "CREATE TABLE");
	s_ready(w, 'I');
	w = client(&c);
	c_terminate(w);

	r = run(&c, WHOLE, 0);
	assert_int_equal(r->unparsed, 0);
	assert_int_equal(r->encrypted, 0);
	assert_int_equal(r->sessions, 1);
	assert_string_equal(r->user, "app");
	assert_string_equal(r->db, "shop");
	assert_string_equal(r->app, "orders-svc");
	assert_int_equal(r->n, 3);

	e = &r->ev[0];
	assert_string_equal(e->text, "SELECT id, total FROM orders WHERE id < 4");
	assert_int_equal(e->text_len, strlen(e->text));
	assert_int_equal(e->full_len, e->text_len);
	assert_false(e->truncated);
	assert_int_equal(e->status, DBW_STMT_OK);
	assert_string_equal(e->tag, "SELECT 3");
	assert_true(e->has_rows);
	assert_int_equal(e->rows, 3);
	assert_string_equal(e->sqlstate, "");
	assert_int_equal(e->mode, DBW_MODE_SIMPLE);
	assert_null(e->prepared);
	assert_int_equal(e->nparams, 0);
	assert_false(e->is_copy);
	assert_int_equal(e->start_ns, seg_ts(2));
	assert_int_equal(e->end_ns, seg_ts(3));
	assert_int_equal(e->pid, CLIENT_PID);
	assert_int_equal(e->req_off, client_off(&c, 2));

	e = &r->ev[1];
	assert_string_equal(e->text, "INSERT INTO orders VALUES (4, 10)");
	assert_string_equal(e->tag, "INSERT 0 1");
	assert_true(e->has_rows);
	assert_int_equal(e->rows, 1);
	assert_int_equal(e->req_off, client_off(&c, 4));
	assert_int_equal(e->start_ns, seg_ts(4));
	assert_int_equal(e->end_ns, seg_ts(5));

	e = &r->ev[2];
	assert_string_equal(e->text, "CREATE TABLE audit (a int)");
	assert_int_equal(e->status, DBW_STMT_OK);
	assert_string_equal(e->tag, "CREATE TABLE");
	assert_false(e->has_rows);
	rec_free(r);
	conv_free(&c);
}

/* One Query, three statements, the second fails: the third never ran. */
static void test_multi_statement_error(void **state)
{
	struct conv c = {};
	struct wire *w;
	struct rec *r;

	hello(&c);
	c_query(client(&c), "SELECT 1; SELECT 1/0;\n  SELECT 'lit_never_run'");
	w = server(&c);
	s_row_desc(w, 1);
	s_data_row(w, "1");
	s_complete(w, "SELECT 1");
	s_error(w, "22012");
	w = server(&c);
	s_ready(w, 'I');
	/* the error is the batch's, not the connection's */
	c_query(client(&c), "SELECT 2");
	w = server(&c);
	s_complete(w, "SELECT 1");
	s_ready(w, 'I');

	r = run(&c, WHOLE, 0);
	assert_int_equal(r->unparsed, 0);
	assert_int_equal(r->n, 4);
	assert_string_equal(r->ev[0].text, "SELECT 1");
	assert_int_equal(r->ev[0].status, DBW_STMT_OK);
	assert_string_equal(r->ev[0].tag, "SELECT 1");
	assert_int_equal(r->ev[0].rows, 1);
	assert_string_equal(r->ev[0].sqlstate, "");

	assert_string_equal(r->ev[1].text, "SELECT 1/0");
	assert_int_equal(r->ev[1].status, DBW_STMT_ERROR);
	assert_string_equal(r->ev[1].sqlstate, "22012");
	assert_string_equal(r->ev[1].tag, "");
	assert_false(r->ev[1].has_rows);
	assert_int_equal(r->ev[1].end_ns, seg_ts(3));

	assert_string_equal(r->ev[2].text, "SELECT 'lit_never_run'");
	assert_int_equal(r->ev[2].status, DBW_STMT_SKIPPED);
	assert_string_equal(r->ev[2].sqlstate, "");
	assert_int_equal(r->ev[2].end_ns, seg_ts(4)); /* closed by ReadyForQuery */

	/* the three came in one message */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r->ev[i].req_off, client_off(&c, 2));
		assert_int_equal(r->ev[i].start_ns, seg_ts(2));
		assert_int_equal(r->ev[i].mode, DBW_MODE_SIMPLE);
		assert_false(r->ev[i].truncated);
		assert_int_equal(r->ev[i].full_len, strlen(r->ev[i].text));
	}
	assert_string_equal(r->ev[3].text, "SELECT 2");
	assert_int_equal(r->ev[3].status, DBW_STMT_OK);
	rec_free(r);
	conv_free(&c);
}

/* Empty and comment-only queries are no statements (the server says EmptyQuery). */
static void test_empty_query(void **state)
{
	struct conv c = {};
	struct wire *w;
	struct rec *r;

	hello(&c);
	for (int i = 0; i < 3; i++) {
		c_query(client(&c), (const char *[]){ "", " ; ", "-- nothing\n" }[i]);
		w = server(&c);
		empty(w, 'I');
		s_ready(w, 'I');
	}
	c_query(client(&c), "SELECT 1");
	w = server(&c);
	s_complete(w, "SELECT 1");
	s_ready(w, 'I');
	r = run(&c, WHOLE, 0);
	assert_int_equal(r->unparsed, 0);
	assert_int_equal(r->n, 1);
	assert_string_equal(r->ev[0].text, "SELECT 1");
	assert_int_equal(r->ev[0].status, DBW_STMT_OK);
	rec_free(r);
	conv_free(&c);
}

/* ---- extended protocol -------------------------------------------------------- */

/* PQprepare once, PQexecPrepared three times: three events naming "s1". */
static void test_named_statement_three_times(void **state)
{
	const uint32_t types[1] = { 23 };
	struct conv c = {};
	struct wire *w;
	struct rec *r;
	size_t parse_seg;

	hello(&c);
	parse_seg = c.n;
	w = client(&c);
	c_parse(w, "s1", "SELECT name FROM users WHERE id = $1", 1, types);
	c_sync(w);
	w = server(&c);
	empty(w, '1');
	s_ready(w, 'I');
	for (int i = 0; i < 3; i++) {
		w = client(&c);
		c_bind(w, "", "s1", 1);
		c_describe(w, 'P', "");
		c_execute(w, "", 0);
		c_sync(w);
		w = server(&c);
		empty(w, '2');
		s_row_desc(w, 1);
		s_data_row(w, "lit_val_42");
		s_complete(w, "SELECT 1");
		s_ready(w, 'I');
	}
	/* Close the statement: no event of its own */
	w = client(&c);
	c_close(w, 'S', "s1");
	c_sync(w);
	w = server(&c);
	empty(w, '3');
	s_ready(w, 'I');

	r = run(&c, WHOLE, 0);
	assert_int_equal(r->unparsed, 0);
	assert_int_equal(r->n, 3);
	for (int i = 0; i < 3; i++) {
		const struct ev *e = &r->ev[i];

		assert_string_equal(e->text, "SELECT name FROM users WHERE id = $1");
		assert_int_equal(e->full_len, strlen(e->text));
		assert_int_equal(e->mode, DBW_MODE_EXTENDED);
		assert_non_null(e->prepared);
		assert_string_equal(e->prepared, "s1");
		assert_int_equal(e->nparams, 1);
		assert_int_equal(e->ntypes, 1);
		assert_int_equal(e->types[0], 23);
		assert_int_equal(e->status, DBW_STMT_OK);
		assert_string_equal(e->tag, "SELECT 1");
		assert_int_equal(e->rows, 1);
		assert_null(strstr(e->text, "lit_val"));
		/* each Execute is its own request; the text came with the one Parse */
		assert_int_equal(e->start_ns, seg_ts(parse_seg + 2 + 2 * i));
		assert_int_equal(e->end_ns, seg_ts(parse_seg + 3 + 2 * i));
		assert_int_equal(e->req_off, client_off(&c, parse_seg));
	}
	rec_free(r);
	conv_free(&c);
}

/* PQexecParams: unnamed statement and portal. */
static void test_unnamed_statement(void **state)
{
	struct conv c = {};
	struct wire *w;
	struct rec *r;

	hello(&c);
	w = client(&c);
	c_parse(w, "", "UPDATE accounts SET balance = $1 WHERE id = $2", 0, NULL);
	c_bind(w, "", "", 2);
	c_describe(w, 'P', "");
	c_execute(w, "", 0);
	c_sync(w);
	w = server(&c);
	empty(w, '1');
	empty(w, '2');
	empty(w, 'n');
	s_complete(w, "UPDATE 1");
	s_ready(w, 'I');

	/* Execute of a portal closed before: no text to tell, still extended */
	w = client(&c);
	c_parse(w, "", "SELECT 1", 0, NULL);
	c_bind(w, "p1", "", 0);
	c_close(w, 'P', "p1");
	c_execute(w, "p1", 0);
	c_sync(w);
	w = server(&c);
	empty(w, '1');
	empty(w, '2');
	empty(w, '3');
	s_error(w, "34000");
	s_ready(w, 'I');

	r = run(&c, WHOLE, 0);
	assert_int_equal(r->n, 2);
	assert_string_equal(r->ev[1].text, "");
	assert_int_equal(r->ev[1].mode, DBW_MODE_EXTENDED);
	assert_non_null(r->ev[1].prepared);
	assert_string_equal(r->ev[1].prepared, "");
	assert_int_equal(r->ev[1].status, DBW_STMT_ERROR);
	assert_string_equal(r->ev[1].sqlstate, "34000");
	assert_string_equal(r->ev[0].text, "UPDATE accounts SET balance = $1 WHERE id = $2");
	assert_int_equal(r->ev[0].mode, DBW_MODE_EXTENDED);
	assert_non_null(r->ev[0].prepared); /* "" is the unnamed statement, not NULL */
	assert_string_equal(r->ev[0].prepared, "");
	assert_int_equal(r->ev[0].nparams, 2);
	assert_int_equal(r->ev[0].ntypes, 0);
	assert_int_equal(r->ev[0].status, DBW_STMT_OK);
	assert_string_equal(r->ev[0].tag, "UPDATE 1");
	assert_int_equal(r->ev[0].rows, 1);
	rec_free(r);
	conv_free(&c);
}

/* Many messages per feed, in both directions; errors end their Sync's batch only. */
static void test_pipelining(void **state)
{
	static const char *const sql[5] = {
		"SELECT $1::int + 0", "SELECT $1::int + 1", "SELECT $1::int + 2",
		"SELECT $1::int + 3", "SELECT $1::int + 4",
	};
	struct conv c = {};
	struct wire *w;
	struct rec *r;

	hello(&c);
	/* five statements, one Sync, all answered */
	w = client(&c);
	for (int i = 0; i < 5; i++)
		c_pipelined(w, sql[i], 1);
	c_sync(w);
	w = server(&c);
	for (int i = 0; i < 5; i++)
		s_pipelined_row(w, "7");
	s_ready(w, 'I');
	/* five statements, one Sync, the third fails: the rest are skipped */
	w = client(&c);
	for (int i = 0; i < 5; i++)
		c_pipelined(w, sql[i], 1);
	c_sync(w);
	w = server(&c);
	s_pipelined_row(w, "7");
	s_pipelined_row(w, "7");
	empty(w, '1');
	empty(w, '2');
	s_error(w, "22003");
	s_ready(w, 'E');
	/* libpq pipeline mode: a Sync after each; a failure stays in its own batch */
	w = client(&c);
	for (int i = 0; i < 3; i++) {
		c_pipelined(w, sql[i], 1);
		c_sync(w);
	}
	w = server(&c);
	s_pipelined_row(w, "7");
	s_ready(w, 'I');
	s_error(w, "42P01"); /* Parse of the second fails */
	s_ready(w, 'I');
	s_pipelined_row(w, "7");
	s_ready(w, 'I');
	/* simple Queries back to back */
	w = client(&c);
	c_query(w, "SELECT 10");
	c_query(w, "SELECT 11");
	w = server(&c);
	s_complete(w, "SELECT 1");
	s_ready(w, 'I');
	s_complete(w, "SELECT 1");
	s_ready(w, 'I');
	/* Execute with a row limit: PortalSuspended, then the rest */
	w = client(&c);
	c_parse(w, "", "SELECT * FROM generate_series(1, 3)", 0, NULL);
	c_bind(w, "cur", "", 0);
	c_execute(w, "cur", 2);
	c_execute(w, "cur", 2);
	c_sync(w);
	w = server(&c);
	empty(w, '1');
	empty(w, '2');
	s_data_row(w, "1");
	s_data_row(w, "2");
	empty(w, 's');
	s_data_row(w, "3");
	s_complete(w, "SELECT 1");
	s_ready(w, 'I');

	r = run(&c, WHOLE, 0);
	assert_int_equal(r->unparsed, 0);
	assert_int_equal(r->n, 5 + 5 + 3 + 2 + 2);
	for (int i = 0; i < 5; i++) {
		assert_string_equal(r->ev[i].text, sql[i]);
		assert_int_equal(r->ev[i].status, DBW_STMT_OK);
		assert_int_equal(r->ev[i].rows, 1);
		assert_string_equal(r->ev[i].prepared, "");
		assert_int_equal(r->ev[i].nparams, 1);
		assert_int_equal(r->ev[i].end_ns, seg_ts(3));
	}
	for (int i = 0; i < 5; i++) {
		static const int want[5] = { DBW_STMT_OK, DBW_STMT_OK, DBW_STMT_ERROR,
					     DBW_STMT_SKIPPED, DBW_STMT_SKIPPED };

		assert_string_equal(r->ev[5 + i].text, sql[i]);
		assert_int_equal(r->ev[5 + i].status, want[i]);
		assert_string_equal(r->ev[5 + i].sqlstate, i == 2 ? "22003" : "");
	}
	assert_int_equal(r->ev[10].status, DBW_STMT_OK);
	assert_string_equal(r->ev[11].text, sql[1]);
	assert_int_equal(r->ev[11].status, DBW_STMT_ERROR);
	assert_string_equal(r->ev[11].sqlstate, "42P01");
	assert_string_equal(r->ev[12].text, sql[2]);
	assert_int_equal(r->ev[12].status, DBW_STMT_OK);
	assert_string_equal(r->ev[13].text, "SELECT 10");
	assert_string_equal(r->ev[14].text, "SELECT 11");
	assert_int_equal(r->ev[14].status, DBW_STMT_OK);
	/* PortalSuspended: the rows counted, no tag; then the tag's count */
	assert_string_equal(r->ev[15].text, "SELECT * FROM generate_series(1, 3)");
	assert_int_equal(r->ev[15].status, DBW_STMT_OK);
	assert_string_equal(r->ev[15].tag, "");
	assert_true(r->ev[15].has_rows);
	assert_int_equal(r->ev[15].rows, 2);
	assert_string_equal(r->ev[16].tag, "SELECT 1");
	assert_int_equal(r->ev[16].rows, 1);
	rec_free(r);
	conv_free(&c);
}

/* ---- COPY ---------------------------------------------------------------------- */

static void test_copy(void **state)
{
	struct conv c = {};
	struct wire *w;
	struct rec *r;

	hello(&c);
	c_query(client(&c), "COPY items (id, name) FROM STDIN");
	s_copy_response(server(&c), 'G', 2);
	w = client(&c);
	c_copy_data(w, "1\tlit_row_a\n");
	c_copy_data(w, "2\tlit_row_b\n");
	c_copy_data(w, "3\tlit_row_c\n");
	c_copy_done(w);
	w = server(&c);
	s_complete(w, "COPY 3");
	s_ready(w, 'I');
	c_query(client(&c), "COPY items TO STDOUT");
	w = server(&c);
	s_copy_response(w, 'H', 2);
	s_copy_data(w, "1\tlit_row_a\n");
	s_copy_data(w, "2\tlit_row_b\n");
	empty(w, 'c');
	s_complete(w, "COPY 2");
	s_ready(w, 'I');
	c_query(client(&c), "SELECT 1");
	w = server(&c);
	s_complete(w, "SELECT 1");
	s_ready(w, 'I');

	r = run(&c, WHOLE, 0);
	assert_int_equal(r->unparsed, 0);
	assert_int_equal(r->n, 3);
	assert_string_equal(r->ev[0].text, "COPY items (id, name) FROM STDIN");
	assert_true(r->ev[0].is_copy);
	assert_int_equal(r->ev[0].status, DBW_STMT_OK);
	assert_string_equal(r->ev[0].tag, "COPY 3");
	assert_true(r->ev[0].has_rows);
	assert_int_equal(r->ev[0].rows, 3);
	assert_int_equal(r->ev[0].end_ns, seg_ts(5));
	assert_string_equal(r->ev[1].text, "COPY items TO STDOUT");
	assert_true(r->ev[1].is_copy);
	assert_int_equal(r->ev[1].rows, 2);
	assert_false(r->ev[2].is_copy);
	rec_free(r);
	conv_free(&c);
}

/* ---- startup, SSL, GSS ---------------------------------------------------------- */

static void test_ssl_refused_then_startup(void **state)
{
	struct conv c = {};
	struct wire *w;
	struct rec *r;

	c_ssl_request(client(&c));
	put8(server(&c), 'N');
	c_gssenc_request(client(&c)); /* a client may try GSS too, refused as well */
	put8(server(&c), 'N');
	c_startup(client(&c), "alice", "shop", "psql");
	s_hello(server(&c));
	c_query(client(&c), "SELECT 1");
	w = server(&c);
	s_complete(w, "SELECT 1");
	s_ready(w, 'I');

	r = run(&c, WHOLE, 0);
	assert_int_equal(r->encrypted, 0);
	assert_int_equal(r->unparsed, 0);
	assert_int_equal(r->sessions, 1);
	assert_string_equal(r->user, "alice");
	assert_string_equal(r->db, "shop");
	assert_string_equal(r->app, "psql");
	assert_int_equal(r->n, 1);
	assert_int_equal(r->ev[0].status, DBW_STMT_OK);
	assert_int_equal(r->ev[0].req_off, 8 + 8 + c.seg[4].w.n);
	rec_free(r);
	conv_free(&c);
}

/* No application_name: the session callback gets "", not NULL. */
static void test_startup_without_app(void **state)
{
	struct conv c = {};
	struct rec *r;

	c_startup(client(&c), "bob", "postgres", NULL);
	s_hello(server(&c));
	r = run(&c, WHOLE, 0);
	assert_int_equal(r->sessions, 1);
	assert_string_equal(r->user, "bob");
	assert_string_equal(r->db, "postgres");
	assert_string_equal(r->app, "");
	assert_int_equal(r->n, 0);
	rec_free(r);
	conv_free(&c);
}

static void test_ssl_accepted_is_encrypted(void **state)
{
	static const uint8_t client_hello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
	static const uint8_t server_hello[] = "\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03";

	for (int gss = 0; gss < 2; gss++) {
		struct conv c = {};
		struct rec *r;

		if (gss)
			c_gssenc_request(client(&c));
		else
			c_ssl_request(client(&c));
		put8(server(&c), gss ? 'G' : 'S');
		put(client(&c), client_hello, sizeof(client_hello) - 1);
		put(server(&c), server_hello, sizeof(server_hello) - 1);
		/* even bytes that look like a query are ciphertext now */
		c_query(client(&c), "SELECT 'lit_not_plaintext'");
		r = run(&c, WHOLE, 0);
		assert_int_equal(r->encrypted, 1);
		assert_int_equal(r->unparsed, 0);
		assert_int_equal(r->sessions, 0);
		assert_int_equal(r->n, 0);
		rec_free(r);
		conv_free(&c);
	}
}

/* A server that answers SSLRequest with anything but 'S', 'G' or 'N'. */
static void test_ssl_bad_answer(void **state)
{
	struct conv c = {};
	struct rec *r;

	c_ssl_request(client(&c));
	s_error(server(&c), "08P01");
	r = run(&c, WHOLE, 0);
	assert_int_equal(r->encrypted, 0);
	assert_int_equal(r->unparsed, 1);
	assert_string_equal(r->reason, "invalid_ssl_reply");
	rec_free(r);
	conv_free(&c);
}

/* ---- framing independence -------------------------------------------------------- */

/*
 * A whole session as psql and libpq conduct one: SSL refused, startup, a
 * query with rows, a failing multi-statement Query, a prepared statement
 * run twice, a failing pipeline, COPY in both directions, Terminate.
 */
static void recorded_conversation(struct conv *c)
{
	const uint32_t types[2] = { 23, 25 };
	struct wire *w;

	c_ssl_request(client(c));
	put8(server(c), 'N');
	c_startup(client(c), "app", "shop", "psql");
	s_hello(server(c));

	c_query(client(c), "SELECT * FROM orders WHERE customer = 'lit_c1' LIMIT 2");
	w = server(c);
	s_row_desc(w, 3);
	s_data_row(w, "row one");
	s_data_row(w, "row two");
	s_complete(w, "SELECT 2");
	s_ready(w, 'I');

	c_query(client(c), "BEGIN; INSERT INTO t VALUES (1); SELECT 1/0; COMMIT");
	w = server(c);
	s_complete(w, "BEGIN");
	s_complete(w, "INSERT 0 1");
	s_error(w, "22012");
	s_ready(w, 'E');
	c_query(client(c), "ROLLBACK");
	w = server(c);
	s_complete(w, "ROLLBACK");
	s_ready(w, 'I');

	w = client(c);
	c_parse(w, "ins", "INSERT INTO t (a, b) VALUES ($1, $2)", 2, types);
	c_describe(w, 'S', "ins");
	c_sync(w);
	w = server(c);
	empty(w, '1');
	begin(w, 't'); /* ParameterDescription */
	put16(w, 2);
	put32(w, 23);
	put32(w, 25);
	end(w);
	empty(w, 'n');
	s_ready(w, 'I');
	for (int i = 0; i < 2; i++) {
		w = client(c);
		c_bind(w, "", "ins", 2);
		c_execute(w, "", 0);
		c_sync(w);
		w = server(c);
		empty(w, '2');
		s_complete(w, "INSERT 0 1");
		s_ready(w, 'I');
	}

	w = client(c);
	c_pipelined(w, "SELECT $1::int", 1);
	c_pipelined(w, "SELECT nosuchcol FROM t WHERE a = $1", 1);
	c_pipelined(w, "SELECT $1::text", 1);
	c_sync(w);
	w = server(c);
	s_pipelined_row(w, "5");
	s_error(w, "42703");
	s_notice(w);
	s_ready(w, 'I');

	c_query(client(c), "COPY t FROM STDIN");
	s_copy_response(server(c), 'G', 2);
	w = client(c);
	c_copy_data(w, "1\tlit_copy_1\n");
	c_copy_data(w, "2\tlit_copy_2\n");
	c_copy_done(w);
	w = server(c);
	s_complete(w, "COPY 2");
	s_ready(w, 'I');
	c_query(client(c), "COPY (SELECT 1) TO STDOUT");
	w = server(c);
	s_copy_response(w, 'H', 1);
	s_copy_data(w, "1\n");
	empty(w, 'c');
	s_complete(w, "COPY 1");
	s_ready(w, 'I');

	/* asked, never answered: UNKNOWN at close */
	c_query(client(c), "SELECT pg_sleep(60)");
	s_param_status(server(c), "application_name", "psql2");
	c_terminate(client(c));
}

static void test_recorded_conversation(void **state)
{
	static const struct {
		const char *text;
		int status;
		const char *prepared;
	} want[] = {
		{ "SELECT * FROM orders WHERE customer = 'lit_c1' LIMIT 2", DBW_STMT_OK, NULL },
		{ "BEGIN", DBW_STMT_OK, NULL },
		{ "INSERT INTO t VALUES (1)", DBW_STMT_OK, NULL },
		{ "SELECT 1/0", DBW_STMT_ERROR, NULL },
		{ "COMMIT", DBW_STMT_SKIPPED, NULL },
		{ "ROLLBACK", DBW_STMT_OK, NULL },
		{ "INSERT INTO t (a, b) VALUES ($1, $2)", DBW_STMT_OK, "ins" },
		{ "INSERT INTO t (a, b) VALUES ($1, $2)", DBW_STMT_OK, "ins" },
		{ "SELECT $1::int", DBW_STMT_OK, "" },
		{ "SELECT nosuchcol FROM t WHERE a = $1", DBW_STMT_ERROR, "" },
		{ "SELECT $1::text", DBW_STMT_SKIPPED, "" },
		{ "COPY t FROM STDIN", DBW_STMT_OK, NULL },
		{ "COPY (SELECT 1) TO STDOUT", DBW_STMT_OK, NULL },
		{ "SELECT pg_sleep(60)", DBW_STMT_UNKNOWN, NULL },
	};
	struct conv c = {};
	struct rec *r;

	recorded_conversation(&c);
	r = run(&c, WHOLE, 0);
	assert_int_equal(r->unparsed, 0);
	assert_int_equal(r->sessions, 1);
	assert_int_equal(r->n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < r->n; i++) {
		assert_string_equal(r->ev[i].text, want[i].text);
		assert_int_equal(r->ev[i].status, want[i].status);
		assert_int_equal(!r->ev[i].prepared, !want[i].prepared);
		if (want[i].prepared)
			assert_string_equal(r->ev[i].prepared, want[i].prepared);
	}
	assert_string_equal(r->ev[2].tag, "INSERT 0 1");
	assert_string_equal(r->ev[3].sqlstate, "22012");
	assert_int_equal(r->ev[6].ntypes, 2);
	assert_int_equal(r->ev[6].types[1], 25);
	assert_int_equal(r->ev[6].nparams, 2);
	assert_string_equal(r->ev[9].sqlstate, "42703");
	assert_true(r->ev[11].is_copy);
	assert_int_equal(r->ev[11].rows, 2);
	assert_true(r->ev[12].is_copy);
	assert_int_equal(r->ev[12].rows, 1);
	assert_int_equal(r->ev[13].end_ns, 0);
	rec_free(r);
	conv_free(&c);
}

/* The same events however the bytes were cut into reads. */
static void test_split_everywhere(void **state)
{
	struct conv c = {};
	struct rec *whole, *r;
	size_t total = 0;

	recorded_conversation(&c);
	for (size_t i = 0; i < c.n; i++)
		total += c.seg[i].w.n;
	whole = run(&c, WHOLE, 0);
	assert_int_equal(whole->n, 14);

	for (size_t k = 1; k < total; k++) {
		r = run(&c, CUT_AT, k);
		assert_same(whole, r);
		rec_free(r);
	}
	r = run(&c, PIECES, 1);
	assert_same(whole, r);
	rec_free(r);
	for (size_t piece = 2; piece <= 16; piece++) {
		r = run(&c, PIECES, piece);
		assert_same(whole, r);
		rec_free(r);
	}
	for (size_t seed = 0; seed < 64; seed++) {
		r = run(&c, RANDOM, seed);
		assert_same(whole, r);
		rec_free(r);
	}
	rec_free(whole);
	conv_free(&c);
}

static struct pg_conn *connected(struct rec **r);

/* ---- size limits ----------------------------------------------------------------- */

#define BIG (1u << 20)

/* SELECT '<x...>': a statement of exactly BIG bytes. */
static char *big_statement(void)
{
	char *s = malloc(BIG + 1);

	assert_non_null(s);
	memset(s, 'x', BIG);
	memcpy(s, "SELECT '", 8);
	s[BIG - 1] = '\'';
	s[BIG] = 0;
	return s;
}

static void feed_chunks(struct pg_conn *pc, int dir, const struct wire *w, size_t chunk,
			size_t *peak)
{
	for (size_t off = 0; off < w->n; off += chunk) {
		size_t n = w->n - off < chunk ? w->n - off : chunk;

		pg_conn_feed(pc, dir, w->p + off, n, 5, CLIENT_PID);
		if (pg_conn_mem(pc) > *peak)
			*peak = pg_conn_mem(pc);
	}
}

/* 1 MiB statements, simple and extended, and a 1 MiB row: memory stays bounded. */
static void test_giant_statement(void **state)
{
	static const size_t chunks[] = { 16384, 4093, 65537, BIG + 64 };
	char *text = big_statement();

	for (size_t ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
		struct rec *r = calloc(1, sizeof(*r));
		struct pg_conn *pc = pg_conn_new(&rec_ops, r);
		struct wire w = {};
		size_t peak = 0;

		c_startup(&w, "u", "d", NULL);
		feed_chunks(pc, DBW_DIR_TO_SERVER, &w, chunks[ci], &peak);
		w.n = 0;
		s_hello(&w);
		feed_chunks(pc, DBW_DIR_TO_CLIENT, &w, chunks[ci], &peak);

		w.n = 0;
		c_query(&w, text);
		feed_chunks(pc, DBW_DIR_TO_SERVER, &w, chunks[ci], &peak);
		w.n = 0;
		s_row_desc(&w, 1);
		s_data_row(&w, text); /* a 1 MiB value back: never buffered */
		s_complete(&w, "SELECT 1");
		s_ready(&w, 'I');
		feed_chunks(pc, DBW_DIR_TO_CLIENT, &w, chunks[ci], &peak);

		w.n = 0;
		c_parse(&w, "big", text, 0, NULL);
		c_bind(&w, "", "big", 0);
		c_execute(&w, "", 0);
		c_sync(&w);
		c_query(&w, "SELECT 'after'"); /* the framing survived */
		feed_chunks(pc, DBW_DIR_TO_SERVER, &w, chunks[ci], &peak);
		w.n = 0;
		s_pipelined_row(&w, "1");
		s_ready(&w, 'I');
		s_complete(&w, "SELECT 1");
		s_ready(&w, 'I');
		feed_chunks(pc, DBW_DIR_TO_CLIENT, &w, chunks[ci], &peak);

		assert_int_equal(r->unparsed, 0);
		assert_int_equal(r->n, 3);
		for (int i = 0; i < 2; i++) {
			assert_true(r->ev[i].truncated);
			assert_int_equal(r->ev[i].full_len, BIG);
			/* the first DBW_MAX_MSG bytes of the body: all text, or "big\0" and text */
			assert_int_equal(r->ev[i].text_len, i ? DBW_MAX_MSG - 4 : DBW_MAX_MSG);
			assert_memory_equal(r->ev[i].text, text, r->ev[i].text_len);
			assert_int_equal(r->ev[i].status, DBW_STMT_OK);
		}
		assert_int_equal(r->ev[0].mode, DBW_MODE_SIMPLE);
		assert_int_equal(r->ev[1].mode, DBW_MODE_EXTENDED);
		assert_string_equal(r->ev[1].prepared, "big");
		assert_string_equal(r->ev[2].text, "SELECT 'after'");
		assert_false(r->ev[2].truncated);
		if (peak >= 200 * 1024)
			fail_msg("chunk %zu: pg_conn_mem peaked at %zu", chunks[ci], peak);
		pg_conn_free(pc);
		free(w.p);
		rec_free(r);
	}
	free(text);
}

/*
 * A giant Query of two statements, cut inside the second: inside an open
 * parenthesis, inside a string literal. The cut one is the last, reported
 * with its own size and its own answer; the first is whole.
 */
static void test_giant_multi_statement(void **state)
{
	static const struct {
		const char *head, *fill, *tail, *first, *tag0, *tag1;
		size_t second_at;
	} cases[] = {
		{ "SELECT 1;  SELECT * FROM t WHERE id IN (1", ", 7", ")", "SELECT 1", "SELECT 1",
		  "SELECT 0", 11 },
		{ "BEGIN; INSERT INTO docs VALUES ('", "x", "')", "BEGIN", "BEGIN", "INSERT 0 1",
		  7 },
		{ "SELECT 1;\nSELECT length('", "y", "')", "SELECT 1", "SELECT 1", "SELECT 1", 10 },
	};
	char *text = malloc(BIG + 1);

	assert_non_null(text);
	for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
		size_t n = strlen(cases[ci].head), fl = strlen(cases[ci].fill), peak = 0;
		size_t tl = strlen(cases[ci].tail);
		struct rec *r;
		struct pg_conn *pc = connected(&r);
		struct wire w = {};

		memcpy(text, cases[ci].head, n);
		while (n + fl + tl <= BIG) {
			memcpy(text + n, cases[ci].fill, fl);
			n += fl;
		}
		while (n + tl < BIG)
			text[n++] = ' ';
		memcpy(text + n, cases[ci].tail, tl);
		text[BIG] = 0;
		assert_int_equal(strlen(text), BIG);

		c_query(&w, text);
		feed_chunks(pc, DBW_DIR_TO_SERVER, &w, 16384, &peak);
		w.n = 0;
		s_complete(&w, cases[ci].tag0);
		s_complete(&w, cases[ci].tag1);
		s_ready(&w, 'I');
		feed_chunks(pc, DBW_DIR_TO_CLIENT, &w, 16384, &peak);
		assert_int_equal(r->n, 2);
		assert_string_equal(r->ev[0].text, cases[ci].first);
		assert_false(r->ev[0].truncated);
		assert_int_equal(r->ev[0].full_len, strlen(cases[ci].first));
		assert_string_equal(r->ev[0].tag, cases[ci].tag0);
		assert_true(r->ev[1].truncated);
		assert_int_equal(r->ev[1].full_len, BIG - cases[ci].second_at);
		assert_int_equal(r->ev[1].text_len, DBW_MAX_MSG - cases[ci].second_at);
		assert_memory_equal(r->ev[1].text, text + cases[ci].second_at, r->ev[1].text_len);
		assert_string_equal(r->ev[1].tag, cases[ci].tag1);
		assert_true(peak < 200 * 1024);
		pg_conn_free(pc);
		free(w.p);
		rec_free(r);
	}

	/* a ';' inside the cut literal splits nothing */
	{
		struct rec *r;
		struct pg_conn *pc = connected(&r);
		struct wire w = {};
		size_t peak = 0;

		memset(text, ';', BIG);
		memcpy(text, "INSERT INTO docs VALUES ('", 26);
		memcpy(text + BIG - 2, "')", 2);
		c_query(&w, text);
		feed_chunks(pc, DBW_DIR_TO_SERVER, &w, 16384, &peak);
		w.n = 0;
		s_complete(&w, "INSERT 0 1");
		s_ready(&w, 'I');
		feed_chunks(pc, DBW_DIR_TO_CLIENT, &w, 16384, &peak);
		assert_int_equal(r->n, 1);
		assert_true(r->ev[0].truncated);
		assert_int_equal(r->ev[0].full_len, BIG);
		assert_int_equal(r->ev[0].text_len, DBW_MAX_MSG);
		assert_string_equal(r->ev[0].tag, "INSERT 0 1");
		pg_conn_free(pc);
		free(w.p);
		rec_free(r);
	}
	free(text);
}

/* ---- gaps ------------------------------------------------------------------------ */

/* A stitcher past the startup exchange. */
static struct pg_conn *connected(struct rec **r)
{
	struct wire w = {};
	struct pg_conn *pc;

	*r = calloc(1, sizeof(**r));
	assert_non_null(*r);
	pc = pg_conn_new(&rec_ops, *r);
	assert_non_null(pc);
	c_startup(&w, "u", "d", NULL);
	pg_conn_feed(pc, DBW_DIR_TO_SERVER, w.p, w.n, 1, CLIENT_PID);
	w.n = 0;
	s_hello(&w);
	pg_conn_feed(pc, DBW_DIR_TO_CLIENT, w.p, w.n, 1, SERVER_PID);
	free(w.p);
	return pc;
}

static void answer(struct pg_conn *pc, const char *tag)
{
	struct wire w = {};

	s_complete(&w, tag);
	s_ready(&w, 'I');
	pg_conn_feed(pc, DBW_DIR_TO_CLIENT, w.p, w.n, 3, SERVER_PID);
	free(w.p);
}

/* Bytes lost inside a message of known length: that message is truncated, no more. */
static void test_gap_inside_message(void **state)
{
	const char *sql = "SELECT 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' AS lit";
	struct rec *r;
	struct pg_conn *pc = connected(&r);
	struct wire w = {};

	c_query(&w, sql);
	pg_conn_feed(pc, DBW_DIR_TO_SERVER, w.p, 20, 2, CLIENT_PID);
	pg_conn_gap(pc, DBW_DIR_TO_SERVER, 30, 2);
	assert_int_equal(r->unparsed, 0);
	pg_conn_feed(pc, DBW_DIR_TO_SERVER, w.p + 50, w.n - 50, 2, CLIENT_PID);
	answer(pc, "SELECT 1");
	assert_int_equal(r->unparsed, 0);
	assert_int_equal(r->n, 1);
	assert_true(r->ev[0].truncated);
	/* what came before the gap, and nothing after it */
	assert_int_equal(r->ev[0].text_len, 15);
	assert_memory_equal(r->ev[0].text, sql, 15);
	assert_int_equal(r->ev[0].full_len, strlen(sql));
	assert_int_equal(r->ev[0].status, DBW_STMT_OK);

	/* a gap that ends exactly with the message completes it */
	w.n = 0;
	c_query(&w, sql);
	pg_conn_feed(pc, DBW_DIR_TO_SERVER, w.p, 10, 4, CLIENT_PID);
	pg_conn_gap(pc, DBW_DIR_TO_SERVER, w.n - 10, 4);
	/* and one inside a server message (a DataRow) costs nothing */
	w.n = 0;
	s_data_row(&w, "0123456789");
	pg_conn_feed(pc, DBW_DIR_TO_CLIENT, w.p, 8, 5, SERVER_PID);
	pg_conn_gap(pc, DBW_DIR_TO_CLIENT, 4, 5);
	pg_conn_feed(pc, DBW_DIR_TO_CLIENT, w.p + 12, w.n - 12, 5, SERVER_PID);
	answer(pc, "SELECT 1");
	assert_int_equal(r->unparsed, 0);
	assert_int_equal(r->n, 2);
	assert_true(r->ev[1].truncated);
	assert_int_equal(r->ev[1].text_len, 5);
	assert_int_equal(r->ev[1].rows, 1);
	pg_conn_free(pc);
	free(w.p);
	rec_free(r);
}

/* Lost bytes where no length says how far they reach: the stream is given up, once. */
static void test_gap_between_messages(void **state)
{
	for (int where = 0; where < 3; where++) {
		struct rec *r;
		struct pg_conn *pc = connected(&r);
		struct wire w = {};

		c_query(&w, "SELECT 1");
		if (where == 0) {
			/* between two messages */
			pg_conn_feed(pc, DBW_DIR_TO_SERVER, w.p, w.n, 2, CLIENT_PID);
			answer(pc, "SELECT 1");
			pg_conn_gap(pc, DBW_DIR_TO_SERVER, 10, 3);
		} else if (where == 1) {
			/* inside a header: the length is not known yet */
			pg_conn_feed(pc, DBW_DIR_TO_SERVER, w.p, 3, 2, CLIENT_PID);
			pg_conn_gap(pc, DBW_DIR_TO_SERVER, 2, 3);
		} else {
			/* longer than what is left of the message */
			pg_conn_feed(pc, DBW_DIR_TO_SERVER, w.p, 7, 2, CLIENT_PID);
			pg_conn_gap(pc, DBW_DIR_TO_SERVER, w.n, 3);
		}
		assert_int_equal(r->unparsed, 1);
		assert_string_equal(r->reason, "gap");
		/* nothing more is parsed, nor reported twice */
		w.n = 0;
		c_query(&w, "SELECT 2");
		pg_conn_feed(pc, DBW_DIR_TO_SERVER, w.p, w.n, 4, CLIENT_PID);
		pg_conn_gap(pc, DBW_DIR_TO_SERVER, 10, 4);
		pg_conn_gap(pc, DBW_DIR_TO_CLIENT, 10, 4);
		answer(pc, "SELECT 1");
		assert_int_equal(r->unparsed, 1);
		assert_int_equal(r->n, where == 0 ? 1 : 0);
		pg_conn_free(pc);
		free(w.p);
		rec_free(r);
	}
}

/* ---- garbage ------------------------------------------------------------------------ */

static void test_garbage_client(void **state)
{
	static const char *const texts[] = {
		"hello\r\n", "GET / HTTP/1.1\r\nHost: db\r\n\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc", /* TLS without SSLRequest */
	};
	uint8_t junk[12288];

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct rec *r = calloc(1, sizeof(*r));
		struct pg_conn *pc = pg_conn_new(&rec_ops, r);

		pg_conn_feed(pc, DBW_DIR_TO_SERVER, (const uint8_t *)texts[i], strlen(texts[i]), 1,
			     1);
		assert_int_equal(r->unparsed, 1);
		assert_string_equal(r->reason, "invalid_frontend");
		pg_conn_feed(pc, DBW_DIR_TO_SERVER, (const uint8_t *)texts[i], strlen(texts[i]), 1,
			     1);
		pg_conn_feed(pc, DBW_DIR_TO_CLIENT, (const uint8_t *)"E", 1, 1, 1);
		pg_conn_close(pc, 2);
		assert_int_equal(r->unparsed, 1);
		assert_int_equal(r->n, 0);
		assert_int_equal(r->sessions, 0);
		pg_conn_free(pc);
		rec_free(r);
	}

	/* random bytes: more than any startup length, so each stream must end invalid */
	for (uint32_t seed = 1; seed <= 200; seed++) {
		struct rec *r = calloc(1, sizeof(*r));
		struct pg_conn *pc = pg_conn_new(&rec_ops, r);
		uint32_t s = seed;

		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = xorshift(&s);
		pg_conn_feed(pc, DBW_DIR_TO_SERVER, junk, sizeof(junk), 1, 1);
		pg_conn_feed(pc, DBW_DIR_TO_CLIENT, junk, sizeof(junk), 1, 1);
		pg_conn_close(pc, 2);
		assert_int_equal(r->unparsed, 1);
		assert_int_equal(r->n, 0);
		assert_int_equal(r->sessions, 0);
		assert_true(pg_conn_mem(pc) < 64 * 1024);
		pg_conn_free(pc);
		rec_free(r);
	}
}

/*
 * Random bytes once the session is up, biased towards real type bytes so
 * that some become plausible headers. A plausible header may wait for a
 * body that never comes, so the stitcher may stay silent; it must never
 * report twice, crash, or grow past its caps.
 */
static void test_garbage_after_startup(void **state)
{
	uint8_t junk[2048];

	for (uint32_t seed = 1; seed <= 300; seed++) {
		struct rec *r;
		struct pg_conn *pc = connected(&r);
		uint32_t s = seed;

		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = xorshift(&s) % 3 ? (uint8_t)(s >> 8) :
						     (uint8_t) "QPBESDZCTdc\0"[(s >> 8) % 12];
		for (size_t off = 0; off < sizeof(junk); off += 97) {
			size_t n = sizeof(junk) - off < 97 ? sizeof(junk) - off : 97;

			pg_conn_feed(pc, seed & 1, junk + off, n, 1, 1);
			pg_conn_feed(pc, !(seed & 1), junk + off, n, 1, 1);
		}
		assert_true(r->unparsed <= 1);
		assert_true(pg_conn_mem(pc) < 200 * 1024);
		pg_conn_close(pc, 2);
		pg_conn_free(pc);
		rec_free(r);
	}
}

/* ---- close --------------------------------------------------------------------------- */

static void test_close_pending_is_unknown(void **state)
{
	struct rec *r;
	struct pg_conn *pc = connected(&r);
	struct wire w = {};

	c_query(&w, "SELECT 1; SELECT pg_sleep(100)");
	c_parse(&w, "slow", "SELECT pg_sleep($1)", 0, NULL);
	c_bind(&w, "", "slow", 1);
	c_execute(&w, "", 0);
	c_sync(&w);
	pg_conn_feed(pc, DBW_DIR_TO_SERVER, w.p, w.n, 7, CLIENT_PID);
	/* only the first statement is answered before the connection goes */
	w.n = 0;
	s_complete(&w, "SELECT 1");
	pg_conn_feed(pc, DBW_DIR_TO_CLIENT, w.p, w.n, 8, SERVER_PID);
	assert_int_equal(r->n, 1);
	assert_int_equal(r->ev[0].status, DBW_STMT_OK);

	pg_conn_close(pc, 9);
	assert_int_equal(r->n, 3);
	assert_string_equal(r->ev[1].text, "SELECT pg_sleep(100)");
	assert_int_equal(r->ev[1].status, DBW_STMT_UNKNOWN);
	assert_int_equal(r->ev[1].end_ns, 0);
	assert_int_equal(r->ev[1].start_ns, 7);
	assert_string_equal(r->ev[1].tag, "");
	assert_string_equal(r->ev[2].text, "SELECT pg_sleep($1)");
	assert_int_equal(r->ev[2].status, DBW_STMT_UNKNOWN);
	assert_string_equal(r->ev[2].prepared, "slow");
	assert_int_equal(r->ev[2].nparams, 1);
	/* closing again reports nothing more */
	pg_conn_close(pc, 10);
	assert_int_equal(r->n, 3);
	assert_int_equal(r->unparsed, 0);
	pg_conn_free(pc);
	free(w.p);
	rec_free(r);
}

/*
 * A daemon that adopted the pinned programs reads a connection from the
 * middle: no startup message; the answers to requests its predecessor read
 * are each one lost statement, and everything after the next request is
 * stitched as usual.
 */
static void test_resume_counts_answers_without_request(void **state)
{
	struct rec *r = calloc(1, sizeof(*r));
	struct pg_conn *pc = pg_conn_new(&rec_ops, r);
	struct wire w = {};

	assert_non_null(r);
	pg_conn_resume(pc);
	/* the tail of a two-statement Query and an error of a third, then idle */
	s_data_row(&w, "1");
	s_complete(&w, "SELECT 1");
	s_complete(&w, "UPDATE 3");
	s_error(&w, "23505");
	s_ready(&w, 'I');
	pg_conn_feed(pc, DBW_DIR_TO_CLIENT, w.p, w.n, 5, SERVER_PID);
	assert_int_equal(r->lost, 3);
	assert_int_equal(r->n, 0);
	assert_int_equal(r->unparsed, 0);
	/* a request seen here: its answer is its own, no loss */
	w.n = 0;
	c_query(&w, "SELECT 2");
	pg_conn_feed(pc, DBW_DIR_TO_SERVER, w.p, w.n, 6, CLIENT_PID);
	assert_int_equal(pg_conn_pending(pc), 2); /* the statement and the Query's end */
	w.n = 0;
	s_complete(&w, "SELECT 1");
	s_ready(&w, 'I');
	pg_conn_feed(pc, DBW_DIR_TO_CLIENT, w.p, w.n, 7, SERVER_PID);
	assert_int_equal(r->n, 1);
	assert_string_equal(r->ev[0].text, "SELECT 2");
	assert_int_equal(r->ev[0].status, DBW_STMT_OK);
	assert_int_equal(pg_conn_pending(pc), 0);
	/* a stray answer later is not a handover loss */
	w.n = 0;
	s_error(&w, "57P01");
	pg_conn_feed(pc, DBW_DIR_TO_CLIENT, w.p, w.n, 8, SERVER_PID);
	assert_int_equal(r->lost, 3);
	pg_conn_free(pc);
	free(w.p);
	rec_free(r);
}

/*
 * After a restart a connection may be met at its very start (the earlier
 * daemon reported its opening and died): resumed, yet the client's stream
 * from offset 0 is its startup message, read as one.
 */
static void test_resume_at_the_start(void **state)
{
	struct rec *r = calloc(1, sizeof(*r));
	struct pg_conn *pc = pg_conn_new(&rec_ops, r);
	struct wire w = {};

	assert_non_null(r);
	pg_conn_resume(pc);
	pg_conn_resume_at(pc, DBW_DIR_TO_SERVER, 0);
	c_startup(&w, "carol", "shop", NULL);
	c_query(&w, "SELECT 3");
	pg_conn_feed(pc, DBW_DIR_TO_SERVER, w.p, w.n, 5, CLIENT_PID);
	w.n = 0;
	s_hello(&w);
	s_complete(&w, "SELECT 1");
	s_ready(&w, 'I');
	pg_conn_resume_at(pc, DBW_DIR_TO_CLIENT, 0);
	pg_conn_feed(pc, DBW_DIR_TO_CLIENT, w.p, w.n, 6, SERVER_PID);
	assert_int_equal(r->unparsed, 0);
	assert_int_equal(r->lost, 0);
	assert_int_equal(r->n, 1);
	assert_string_equal(r->ev[0].text, "SELECT 3");
	assert_string_equal(r->user, "carol");
	pg_conn_free(pc);
	free(w.p);
	rec_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_query),
		cmocka_unit_test(test_multi_statement_error),
		cmocka_unit_test(test_empty_query),
		cmocka_unit_test(test_named_statement_three_times),
		cmocka_unit_test(test_unnamed_statement),
		cmocka_unit_test(test_pipelining),
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_ssl_refused_then_startup),
		cmocka_unit_test(test_startup_without_app),
		cmocka_unit_test(test_ssl_accepted_is_encrypted),
		cmocka_unit_test(test_ssl_bad_answer),
		cmocka_unit_test(test_recorded_conversation),
		cmocka_unit_test(test_split_everywhere),
		cmocka_unit_test(test_giant_statement),
		cmocka_unit_test(test_giant_multi_statement),
		cmocka_unit_test(test_gap_inside_message),
		cmocka_unit_test(test_gap_between_messages),
		cmocka_unit_test(test_garbage_client),
		cmocka_unit_test(test_garbage_after_startup),
		cmocka_unit_test(test_close_pending_is_unknown),
		cmocka_unit_test(test_resume_counts_answers_without_request),
		cmocka_unit_test(test_resume_at_the_start),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
