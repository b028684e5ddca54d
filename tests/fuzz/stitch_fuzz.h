/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the stitcher fuzz targets (fuzz_pg_stream, fuzz_mysql_stream,
 * fuzz_redis_stream) share: the callbacks besides the statement's, which
 * read what they are given so that ASan sees a stale or short pointer, and
 * the input format. Each piece is [control][bytes]: control bit 7 picks the
 * direction, bit 6 makes it a gap of the piece's length instead of bytes,
 * bits 0-5 the length (1-64).
 */
#ifndef DBW_STITCH_FUZZ_H
#define DBW_STITCH_FUZZ_H

#include <stdint.h>
#include <string.h>

#include "stmt.h"

static volatile size_t sink;

/* Each target's: the statement read whole (and analysed, as its protocol is). */
static void on_statement(void *ctx, const struct dbw_stmt *s);

/* The fields of a statement every protocol fills. */
static void read_stmt(const struct dbw_stmt *s)
{
	sink += s->text ? strnlen(s->text, s->text_len + 1) : 0;
	sink += strnlen(s->tag, sizeof(s->tag));
	sink += s->prepared_name ? strlen(s->prepared_name) : 0;
}

static void on_session(void *ctx, const char *user, const char *db, const char *app)
{
	sink += (user ? strlen(user) : 0) + (db ? strlen(db) : 0) + (app ? strlen(app) : 0);
}

static void on_other(void *ctx)
{
}

static void on_unparsed(void *ctx, const char *reason)
{
	sink += strlen(reason);
}

static const struct dbw_stitch_ops ops = {
	.statement = on_statement,
	.session = on_session,
	.encrypted = on_other,
	.unparsed = on_unparsed,
};

/* Feed stitcher c of protocol P (P_conn_feed, P_conn_gap) the pieces of data; *ts advances. */
#define STITCH_FUZZ_FEED(P, c, data, size, ts)                      \
	do {                                                        \
		while (size) {                                      \
			uint8_t ctl = (data)[0];                    \
			size_t n = (ctl & 63) + 1;                  \
			int dir = ctl >> 7;                         \
                                                                    \
			(data)++;                                   \
			(size)--;                                   \
			if (ctl & 64) {                             \
				P##_conn_gap(c, dir, n, (ts)++);    \
				continue;                           \
			}                                           \
			if (n > (size))                             \
				n = (size);                         \
			P##_conn_feed(c, dir, data, n, (ts)++, 42); \
			(data) += n;                                \
			(size) -= n;                                \
		}                                                   \
	} while (0)

#endif /* DBW_STITCH_FUZZ_H */
