// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer: statement analysis (libpg_query's parser and scanner, then our
 * normalisation, verb and object extraction) on arbitrary text, cut or
 * whole (first byte), through the result cache.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"

static struct sql_analyzer *an;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sql_analysis a;

	if (!size)
		return 0;
	if (!an && !(an = sql_analyzer_new(256)))
		abort();
	sql_analyze(an, (const char *)data + 1, size - 1, data[0] & 1, &a);
	/* the contract the event writer relies on */
	if (!a.normalized || !a.verb || a.nobjects > SQL_MAX_OBJECTS)
		__builtin_trap();
	for (size_t i = 0; i < a.nobjects; i++)
		if (!a.objects[i] || !strlen(a.objects[i]))
			__builtin_trap();
	return 0;
}
