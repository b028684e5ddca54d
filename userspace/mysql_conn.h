/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * MySQL / MariaDB connection stitcher: the two byte streams of one
 * connection in, dbw_stmt records out (through struct dbw_stitch_ops).
 *
 * The connection phase gives the session (user, database) and says whether
 * the rest can be read at all: an SSLRequest means TLS (ops->encrypted),
 * the compressed protocol means unparsed. In the command phase the server
 * answers commands in order, so a FIFO of pending commands pairs them:
 * COM_QUERY gives one statement per statement of its text (a
 * multi-statement text when the client enabled them: one result each, the
 * ones after an error skipped), COM_STMT_PREPARE remembers the text by
 * statement id (an event only when it fails), COM_STMT_EXECUTE gives a
 * statement with that text and its parameter count (values are never
 * kept), COM_INIT_DB a USE. OK gives affected rows, ERR errno and SQLSTATE,
 * result sets their row count.
 *
 * Pure: no I/O, no clock. Memory is bounded: a client packet keeps at most
 * DBW_MAX_MSG bytes (the statement is then flagged truncated), a server
 * packet its first bytes only, at most MYSQL_MAX_PENDING commands wait and
 * MYSQL_MAX_PREPARED statements are remembered.
 */
#ifndef DBW_MYSQL_CONN_H
#define DBW_MYSQL_CONN_H

#include "stmt.h"

#define MYSQL_MAX_PENDING  1024
#define MYSQL_MAX_PREPARED 1024
#define MYSQL_MAX_STMTS	   256 /* statements of one multi-statement text reported apart */

struct mysql_conn;

struct mysql_conn *mysql_conn_new(const struct dbw_stitch_ops *ops, void *ctx);
void mysql_conn_free(struct mysql_conn *c);

/* As pg_conn_feed: bytes of direction dir in stream order. */
void mysql_conn_feed(struct mysql_conn *c, int dir, const uint8_t *buf, size_t len, uint64_t ts_ns,
		     uint32_t pid);

/*
 * len bytes of direction dir were not captured: inside a packet whose
 * length is known they are skipped (its statement flagged truncated),
 * anywhere else the stream is lost.
 */
void mysql_conn_gap(struct mysql_conn *c, int dir, uint64_t len, uint64_t ts_ns);

/* The connection closed: commands still waiting are reported UNKNOWN. */
void mysql_conn_close(struct mysql_conn *c, uint64_t ts_ns);

/* Requests still waiting for their answer. */
size_t mysql_conn_pending(const struct mysql_conn *c);

/*
 * Read from the middle after a restart (the daemon adopted pinned programs):
 * no handshake, and this direction's reading begins at stream offset off;
 * the server's stream at 0 is its start (the handshake is ahead after all).
 */
void mysql_conn_resume(struct mysql_conn *c);
void mysql_conn_resume_at(struct mysql_conn *c, int dir, uint64_t off);

#endif /* DBW_MYSQL_CONN_H */
