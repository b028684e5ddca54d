/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Redis connection stitcher: the two byte streams of one connection in,
 * one dbw_stmt per command out (through struct dbw_stitch_ops).
 *
 * Redis answers commands in the order it received them, pipelined or not,
 * so one FIFO of pending commands pairs them with their replies (pushes,
 * RESP3's out-of-band values, answer none). Inside MULTI a command's reply
 * is +QUEUED: its real outcome is the matching element of EXEC's array,
 * and it is reported then (skipped when EXEC aborts or DISCARD drops it).
 *
 * Each statement carries its own analysis (dbw_stmt.analysis): the
 * command's verb, its keys as objects and its text with every value as ?
 * ("SET user:1 ?"). Values never leave the stitcher; AUTH's arguments are
 * values too. Pure: no I/O, no clock; memory bounded per connection.
 */
#ifndef DBW_REDIS_CONN_H
#define DBW_REDIS_CONN_H

#include "stmt.h"

#define REDIS_MAX_PENDING 4096

struct redis_conn;

struct redis_conn *redis_conn_new(const struct dbw_stitch_ops *ops, void *ctx);
void redis_conn_free(struct redis_conn *c);

/* As pg_conn_feed: bytes of direction dir in stream order. */
void redis_conn_feed(struct redis_conn *c, int dir, const uint8_t *buf, size_t len, uint64_t ts_ns,
		     uint32_t pid);

/* len bytes of direction dir were not captured: the stream is lost. */
void redis_conn_gap(struct redis_conn *c, int dir, uint64_t len, uint64_t ts_ns);

/* The connection closed: commands still waiting are reported UNKNOWN. */
void redis_conn_close(struct redis_conn *c, uint64_t ts_ns);

/* Requests still waiting for their answer. */
size_t redis_conn_pending(const struct redis_conn *c);

/*
 * Read from the middle after a restart (the daemon adopted pinned programs):
 * no handshake, and this direction's reading begins at stream offset off.
 */
void redis_conn_resume(struct redis_conn *c);
void redis_conn_resume_at(struct redis_conn *c, int dir, uint64_t off);

#endif /* DBW_REDIS_CONN_H */
