// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer: the MySQL stitcher fed a conversation in arbitrary pieces
 * (the format in stitch_fuzz.h). Every statement reported is read whole,
 * and analysed with the MySQL normalizer.
 */
#include <stdint.h>
#include <string.h>

#include "analyze.h"
#include "mysql_conn.h"
#include "mysql_sql.h"
#include "stitch_fuzz.h"

static struct mysql_analyzer *an;

static void on_statement(void *ctx, const struct dbw_stmt *s)
{
	struct sql_analysis a;

	mysql_analyze(an, s->text, s->text_len, s->truncated, &a);
	sink += strlen(a.normalized) + a.nobjects + strlen(a.verb);
	for (size_t i = 0; i < a.nobjects; i++)
		sink += strlen(a.objects[i]);
	read_stmt(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mysql_conn *c = mysql_conn_new(&ops, NULL);
	uint64_t ts = 1;

	if (!an)
		an = mysql_analyzer_new();
	if (!c)
		return 0;
	STITCH_FUZZ_FEED(mysql, c, data, size, ts);
	mysql_conn_close(c, ts);
	mysql_conn_free(c);
	return 0;
}
