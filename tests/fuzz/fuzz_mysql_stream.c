// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer: the MySQL stitcher fed a conversation in arbitrary
 * pieces, as fuzz_pg_stream: each piece is [control][bytes], control bit 7
 * the direction, bit 6 a gap of the piece's length instead of bytes, bits
 * 0-5 the length (1-64). Every statement reported is read whole, and
 * analysed with the MySQL normalizer.
 */
#include <stdint.h>
#include <string.h>

#include "analyze.h"
#include "mysql_sql.h"
#include "mysql_conn.h"
#include "stmt.h"

static volatile size_t sink;
static struct mysql_analyzer *an;

static void on_statement(void *ctx, const struct dbw_stmt *s)
{
	struct sql_analysis a;

	mysql_analyze(an, s->text, s->text_len, s->truncated, &a);
	sink += strlen(a.normalized) + a.nobjects + strlen(a.verb);
	for (size_t i = 0; i < a.nobjects; i++)
		sink += strlen(a.objects[i]);

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mysql_conn *c = mysql_conn_new(&ops, NULL);
	uint64_t ts = 1;

	if (!an)
		an = mysql_analyzer_new();
	if (!c)
		return 0;
	while (size) {
		uint8_t ctl = data[0];
		size_t n = (ctl & 63) + 1;
		int dir = ctl >> 7;

		data++;
		size--;
		if (ctl & 64) {
			mysql_conn_gap(c, dir, n, ts++);
			continue;
		}
		if (n > size)
			n = size;
		mysql_conn_feed(c, dir, data, n, ts++, 42);
		data += n;
		size -= n;
	}
	mysql_conn_close(c, ts);
	mysql_conn_free(c);
	return 0;
}
