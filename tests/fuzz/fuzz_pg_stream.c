// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer: the PostgreSQL stitcher fed a conversation in arbitrary
 * pieces (the format in stitch_fuzz.h). Every statement reported is read
 * whole, so that ASan sees a stale or short pointer in it.
 */
#include <stdint.h>
#include <string.h>

#include "pg_conn.h"
#include "stitch_fuzz.h"

static void on_statement(void *ctx, const struct dbw_stmt *s)
{
	read_stmt(s);
	for (uint32_t i = 0; i < s->nparam_types && i < DBW_MAX_PARAM_TYPES; i++)
		sink += s->param_types[i];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_conn *c = pg_conn_new(&ops, NULL);
	uint64_t ts = 1;

	if (!c)
		return 0;
	STITCH_FUZZ_FEED(pg, c, data, size, ts);
	/* memory stays bounded whatever came in */
	if (pg_conn_mem(c) > (4u << 20))
		__builtin_trap();
	pg_conn_close(c, ts);
	pg_conn_free(c);
	return 0;
}
