/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * PostgreSQL connection stitcher: the two byte streams of one connection in,
 * dbw_stmt records out (through struct dbw_stitch_ops).
 *
 * Pure: no I/O, no clock, no globals. Memory per connection is bounded: each
 * direction buffers at most one protocol message capped at DBW_MAX_MSG bytes
 * (the rest of a larger message is skipped and the statement flagged
 * truncated), and at most PG_MAX_PENDING requests await their answers.
 */
#ifndef DBW_PG_CONN_H
#define DBW_PG_CONN_H

#include "stmt.h"

#define PG_MAX_PENDING 4096

struct pg_conn;

/* A new stitcher; ops/ctx are kept and called back from the calls below. */
struct pg_conn *pg_conn_new(const struct dbw_stitch_ops *ops, void *ctx);
void pg_conn_free(struct pg_conn *c);

/*
 * Feed the next len bytes of direction dir (enum dbw_dir) in stream order.
 * ts_ns is their capture time, pid the sender (0 if unknown). Calls back
 * ops->statement for each statement completed by these bytes. Once the
 * stream is found invalid, ops->unparsed is called once and later bytes are
 * only counted.
 */
void pg_conn_feed(struct pg_conn *c, int dir, const uint8_t *buf, size_t len, uint64_t ts_ns,
		  uint32_t pid);

/*
 * len bytes of direction dir were not captured. Inside a message whose
 * length is known this truncates that message; anywhere else the stream is
 * lost and the connection becomes unparsed.
 */
void pg_conn_gap(struct pg_conn *c, int dir, uint64_t len, uint64_t ts_ns);

/* The connection closed: every request still waiting is reported UNKNOWN. */
void pg_conn_close(struct pg_conn *c, uint64_t ts_ns);

/* Requests still waiting for their answer. */
size_t pg_conn_pending(const struct pg_conn *c);

/*
 * The daemon starts reading this connection in the middle (it adopted the
 * programs of a predecessor that had read the start): no startup phase;
 * until the client's next request, an answer completing a statement whose
 * request was not seen here is reported through ops->lost.
 */
void pg_conn_resume(struct pg_conn *c);

/*
 * A resumed connection's reading of direction dir begins at stream offset
 * off; the client's stream at 0 is its start (the startup message is ahead).
 */
void pg_conn_resume_at(struct pg_conn *c, int dir, uint64_t off);

/* Bytes currently held by this stitcher (for memory accounting). */
size_t pg_conn_mem(const struct pg_conn *c);

#endif /* DBW_PG_CONN_H */
