// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer: the Redis stitcher fed a conversation in arbitrary pieces
 * (the format in stitch_fuzz.h). Every statement reported is read whole,
 * its analysis too.
 */
#include <stdint.h>
#include <string.h>

#include "analyze.h"
#include "redis_conn.h"
#include "stitch_fuzz.h"

static void on_statement(void *ctx, const struct dbw_stmt *s)
{
	const struct sql_analysis *a = s->analysis;

	sink += strlen(a->normalized) + strlen(a->verb) + strlen(a->fingerprint);
	for (size_t i = 0; i < a->nobjects; i++)
		sink += strlen(a->objects[i]);
	read_stmt(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct redis_conn *c = redis_conn_new(&ops, NULL);
	uint64_t ts = 1;

	if (!c)
		return 0;
	STITCH_FUZZ_FEED(redis, c, data, size, ts);
	redis_conn_close(c, ts);
	redis_conn_free(c);
	return 0;
}
