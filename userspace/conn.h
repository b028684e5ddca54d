/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The connection table: ring buffer records in, audit events out.
 *
 * Each watched connection gets an entry on CONN_OPEN (or on its first DATA
 * record when the open record was lost), its two byte streams are checked
 * for gaps by stream offset and fed to the protocol stitcher, and every
 * statement the stitcher reports is analysed and emitted.
 */
#ifndef DBW_CONN_H
#define DBW_CONN_H

#include <stddef.h>
#include <stdint.h>

struct emitter;
struct identity;
struct sql_analyzer;
struct conn_table;

struct conn_stats {
	uint64_t open;	     /* connections in the table now */
	uint64_t opened;     /* connections seen in total */
	uint64_t statements; /* statement events emitted */
	uint64_t unparsed;   /* connections that became unparsed */
	uint64_t gaps;	     /* stream gaps seen */
	uint64_t gap_bytes;
	uint64_t bad_records; /* malformed ring buffer records (version, size) */
	uint64_t evicted;     /* entries dropped because the table was full */
};

/* max_conns bounds the table; the least recently active entry is evicted past it. */
struct conn_table *conns_new(struct emitter *em, struct identity *id, struct sql_analyzer *an,
			     size_t max_conns);
void conns_free(struct conn_table *t);

/* Handle one ring buffer record. Always returns 0 (bad records are counted). */
int conns_record(struct conn_table *t, const void *data, size_t size);

/* Agent shutdown: report every statement still waiting for its answer. */
void conns_flush_all(struct conn_table *t);

void conns_stats(const struct conn_table *t, struct conn_stats *out);

#endif /* DBW_CONN_H */
