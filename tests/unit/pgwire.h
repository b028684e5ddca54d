/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Building PostgreSQL v3 messages byte by byte for the unit tests, and a
 * stitcher callback recorder. Header-only: each test binary is one file.
 */
#ifndef DBW_TEST_PGWIRE_H
#define DBW_TEST_PGWIRE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stmt.h"

/* A growing byte buffer. */
struct buf {
	uint8_t *p;
	size_t n, cap;
};

static inline void put(struct buf *b, const void *d, size_t n)
{
	if (!n)
		return; /* memcpy from NULL, even of 0 bytes, is undefined */
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}

static inline void put8(struct buf *b, uint8_t v)
{
	put(b, &v, 1);
}

static inline void put16(struct buf *b, uint16_t v)
{
	uint8_t d[2] = { v >> 8, v };

	put(b, d, 2);
}

static inline void put32(struct buf *b, uint32_t v)
{
	uint8_t d[4] = { v >> 24, v >> 16, v >> 8, v };

	put(b, d, 4);
}

static inline void putz(struct buf *b, const char *s)
{
	put(b, s, strlen(s) + 1);
}

/* A typed message: type, length, then body (given as a buffer). */
static inline void msg(struct buf *b, char type, const struct buf *body)
{
	put8(b, type);
	put32(b, body->n + 4);
	put(b, body->p, body->n);
}

static inline void msgz(struct buf *b, char type, const char *s)
{
	struct buf body = {};

	if (s)
		putz(&body, s);
	msg(b, type, &body);
	free(body.p);
}

static inline void startup(struct buf *b, const char *user, const char *db, const char *app)
{
	struct buf body = {};

	put32(&body, 196608);
	putz(&body, "user");
	putz(&body, user);
	putz(&body, "database");
	putz(&body, db);
	if (app) {
		putz(&body, "application_name");
		putz(&body, app);
	}
	put8(&body, 0);
	put32(b, body.n + 4);
	put(b, body.p, body.n);
	free(body.p);
}

static inline void ssl_request(struct buf *b)
{
	put32(b, 8);
	put32(b, 80877103);
}

static inline void parse(struct buf *b, const char *name, const char *q, int ntypes,
			 const uint32_t *types)
{
	struct buf body = {};

	putz(&body, name);
	putz(&body, q);
	put16(&body, ntypes);
	for (int i = 0; i < ntypes; i++)
		put32(&body, types[i]);
	msg(b, 'P', &body);
	free(body.p);
}

static inline void bind(struct buf *b, const char *portal, const char *stmt, int nparams)
{
	struct buf body = {};

	putz(&body, portal);
	putz(&body, stmt);
	put16(&body, 0); /* formats */
	put16(&body, nparams);
	for (int i = 0; i < nparams; i++) {
		put32(&body, 4);
		put(&body, "lit!", 4);
	}
	put16(&body, 0); /* result formats */
	msg(b, 'B', &body);
	free(body.p);
}

static inline void execute(struct buf *b, const char *portal)
{
	struct buf body = {};

	putz(&body, portal);
	put32(&body, 0);
	msg(b, 'E', &body);
	free(body.p);
}

static inline void describe(struct buf *b, char kind, const char *name)
{
	struct buf body = {};

	put8(&body, kind);
	putz(&body, name);
	msg(b, 'D', &body);
	free(body.p);
}

static inline void sync_msg(struct buf *b)
{
	msgz(b, 'S', NULL);
}

static inline void ready(struct buf *b, char status)
{
	put8(b, 'Z');
	put32(b, 5);
	put8(b, status);
}

/* Server: AuthenticationOk, a ParameterStatus, BackendKeyData, ReadyForQuery. */
static inline void server_hello(struct buf *b)
{
	struct buf body = {};

	put32(&body, 0);
	msg(b, 'R', &body);
	body.n = 0;
	putz(&body, "server_version");
	putz(&body, "15.0");
	msg(b, 'S', &body);
	body.n = 0;
	put32(&body, 4242);
	put32(&body, 99);
	msg(b, 'K', &body);
	free(body.p);
	ready(b, 'I');
}

static inline void complete(struct buf *b, const char *tag)
{
	msgz(b, 'C', tag);
}

static inline void error_resp(struct buf *b, const char *sqlstate)
{
	struct buf body = {};

	put8(&body, 'S');
	putz(&body, "ERROR");
	put8(&body, 'C');
	putz(&body, sqlstate);
	put8(&body, 'M');
	putz(&body, "boom lit_secret");
	put8(&body, 0);
	msg(b, 'E', &body);
	free(body.p);
}

static inline void row_desc(struct buf *b)
{
	struct buf body = {};

	put16(&body, 1);
	putz(&body, "x");
	put32(&body, 0);
	put16(&body, 0);
	put32(&body, 23);
	put16(&body, 4);
	put32(&body, -1);
	put16(&body, 0);
	msg(b, 'T', &body);
	free(body.p);
}

static inline void data_row(struct buf *b, const char *v)
{
	struct buf body = {};

	put16(&body, 1);
	put32(&body, strlen(v));
	put(&body, v, strlen(v));
	msg(b, 'D', &body);
	free(body.p);
}

static inline void empty_msg(struct buf *b, char type)
{
	put8(b, type);
	put32(b, 4);
}

/* What the stitcher reported, copied out of its callbacks. */
#define REC_MAX 256
struct rec_stmt {
	char text[256];
	bool truncated;
	uint64_t full_len;
	int status;
	char tag[64];
	bool has_rows;
	uint64_t rows;
	char sqlstate[6];
	int mode;
	char prepared[64];
	bool has_prepared;
	uint32_t nparams, ntypes;
	uint32_t types[4];
	bool is_copy;
	uint64_t req_off;
};

struct recorder {
	struct rec_stmt st[REC_MAX];
	int n;
	int sessions, encrypted, unparsed;
	char user[64], db[64], app[64];
	char reason[64];
};

static void rec_statement(void *ctx, const struct dbw_stmt *s)
{
	struct recorder *r = ctx;
	struct rec_stmt *o;

	if (r->n >= REC_MAX)
		return;
	o = &r->st[r->n++];
	memset(o, 0, sizeof(*o));
	snprintf(o->text, sizeof(o->text), "%.*s", (int)s->text_len, s->text);
	o->truncated = s->truncated;
	o->full_len = s->text_full_len;
	o->status = s->status;
	snprintf(o->tag, sizeof(o->tag), "%s", s->tag);
	o->has_rows = s->has_rows;
	o->rows = s->rows;
	snprintf(o->sqlstate, sizeof(o->sqlstate), "%s", s->sqlstate);
	o->mode = s->mode;
	o->has_prepared = s->prepared_name != NULL;
	if (s->prepared_name)
		snprintf(o->prepared, sizeof(o->prepared), "%s", s->prepared_name);
	o->nparams = s->nparams;
	o->ntypes = s->nparam_types;
	for (uint32_t i = 0; i < s->nparam_types && i < 4; i++)
		o->types[i] = s->param_types[i];
	o->is_copy = s->is_copy;
	o->req_off = s->req_off;
}

static void rec_session(void *ctx, const char *user, const char *db, const char *app)
{
	struct recorder *r = ctx;

	r->sessions++;
	snprintf(r->user, sizeof(r->user), "%s", user ? user : "");
	snprintf(r->db, sizeof(r->db), "%s", db ? db : "");
	snprintf(r->app, sizeof(r->app), "%s", app ? app : "");
}

static void rec_encrypted(void *ctx)
{
	((struct recorder *)ctx)->encrypted++;
}

static void rec_unparsed(void *ctx, const char *reason)
{
	struct recorder *r = ctx;

	r->unparsed++;
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
}

static const struct dbw_stitch_ops rec_ops = {
	.statement = rec_statement,
	.session = rec_session,
	.encrypted = rec_encrypted,
	.unparsed = rec_unparsed,
};

#endif /* DBW_TEST_PGWIRE_H */
