/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * SQL analysis with libpg_query (PostgreSQL's own parser): normalized text,
 * fingerprint, verb, objects touched.
 *
 * The normalized text is what leaves the host: every literal is replaced by
 * $n as pg_stat_statements does, also when the statement does not parse
 * (truncated, garbage): then the scanner, and failing that a cut, keeps
 * literal bytes out.
 */
#ifndef DBW_ANALYZE_H
#define DBW_ANALYZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SQL_MAX_OBJECTS 32

struct sql_analysis {
	const char *normalized; /* NUL-terminated, never NULL, never contains a literal */
	char fingerprint[17]; /* 16 lowercase hex digits; "" when it cannot be computed */
	const char *verb; /* "SELECT", "INSERT", "DROP", ... ; "UNKNOWN" if unparsed */
	/* 1 << enum dbw_verb of the statement and of every statement nested in
	 * it (data-modifying CTEs, EXPLAIN's statement, subqueries) */
	uint32_t verbs;
	const char *objects[SQL_MAX_OBJECTS]; /* relations as written (schema.table), deduped */
	size_t nobjects;
	bool parsed; /* the full parser accepted the text */
	bool without_where; /* an UPDATE or DELETE without a WHERE clause */
};

struct sql_analyzer;

/* cache_entries bounds the result cache (0 = a sane default). */
struct sql_analyzer *sql_analyzer_new(size_t cache_entries);
void sql_analyzer_free(struct sql_analyzer *a);

/*
 * Analyse text[0..len) (need not be NUL-terminated; one statement).
 * truncated says the text was cut by capture limits: it is then never
 * reported as parsed. Fills *out; its pointers stay valid until the next
 * call on the same analyzer. Returns 0, or -1 on allocation failure (out
 * then holds a safe placeholder: normalized "<unavailable>").
 */
int sql_analyze(struct sql_analyzer *a, const char *text, size_t len, bool truncated,
		struct sql_analysis *out);

/* Cache statistics for the status command and the benchmark. */
void sql_analyzer_stats(const struct sql_analyzer *a, uint64_t *hits, uint64_t *misses);

#endif /* DBW_ANALYZE_H */
