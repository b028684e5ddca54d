/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Protocol-neutral records that the per-protocol stitchers hand to the daemon.
 *
 * A stitcher (pg_conn, mysql_conn, redis_conn) turns the two
 * byte streams of one connection into dbw_stmt records, one per statement
 * that crossed the connection, and reports session facts (user, database)
 * and the moment a stream can no longer be parsed.
 */
#ifndef DBW_STMT_H
#define DBW_STMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Tri-state result of every pure parser in userspace. */
enum dbw_parse {
	DBW_PARSE_OK = 0, /* a unit was parsed; *consumed bytes used */
	DBW_PARSE_NEED_MORE = 1, /* nothing consumed; call again with more bytes */
	DBW_PARSE_INVALID = 2, /* not this protocol / corrupt: stop parsing the stream */
};

enum dbw_stmt_status {
	DBW_STMT_OK = 0, /* the server completed it */
	DBW_STMT_ERROR = 1, /* the server answered with an error */
	DBW_STMT_SKIPPED = 2, /* not executed: an earlier error in the same batch */
	DBW_STMT_UNKNOWN = 3, /* no answer seen (connection closed, stream lost) */
};

enum dbw_stmt_mode {
	DBW_MODE_SIMPLE = 0, /* PostgreSQL simple Query */
	DBW_MODE_EXTENDED = 1, /* PostgreSQL Parse/Bind/Execute */
};

#define DBW_MAX_PARAM_TYPES 64

struct sql_analysis;

struct dbw_stmt {
	/*
	 * Raw statement text as the client sent it, NUL-terminated, at most
	 * DBW_MAX_MSG bytes. Only the analyser sees it: it never leaves the
	 * host unnormalized.
	 */
	const char *text;
	size_t text_len;
	bool truncated; /* the message was larger than captured */
	uint64_t text_full_len; /* bytes the client sent for this statement */
	enum dbw_stmt_mode mode;
	const char *prepared_name; /* extended: statement name ("" = unnamed); else NULL */
	uint32_t nparams; /* bind parameters (values are never kept) */
	uint32_t nparam_types;
	uint32_t param_types[DBW_MAX_PARAM_TYPES]; /* type OIDs, 0 = unspecified */
	bool is_copy;

	enum dbw_stmt_status status;
	char tag[64]; /* CommandComplete tag, "" if none */
	bool has_rows;
	uint64_t rows; /* from the tag, or DataRows counted */
	char sqlstate[6]; /* "" unless status == ERROR */
	/*
	 * The server's error message and detail (status ERROR), NULL when
	 * none. They can quote values: only the detectors' output leaves.
	 */
	const char *error_message, *error_detail;
	uint64_t start_ns; /* capture time of the request */
	uint64_t end_ns; /* capture time of the completion; 0 if none */
	uint32_t pid; /* sender tgid of the request, 0 if unknown */
	uint64_t req_off; /* client stream offset of the message carrying the text */
	/*
	 * Server stream offset just past the statement's own reply, 0 when it
	 * has none (Redis: a command queued in MULTI is answered by EXEC's).
	 * Result masking counts are matched to replies by it (Redis).
	 */
	uint64_t resp_end;
	/*
	 * The statement's analysis when the stitcher made it (Redis: a command
	 * is structured already, its text is normalized when it is built);
	 * NULL: the daemon analyses text with the protocol's SQL analyser.
	 */
	const struct sql_analysis *analysis;
};

/* What a stitcher reports; ctx is the daemon's per-connection context. */
struct dbw_stitch_ops {
	void (*statement)(void *ctx, const struct dbw_stmt *st);
	/* the session's startup parameters are known (PostgreSQL: StartupMessage) */
	void (*session)(void *ctx, const char *user, const char *database,
			const char *application_name);
	/* the connection switched to TLS/GSS encryption: plaintext parsing stops */
	void (*encrypted)(void *ctx);
	/* parsing stopped for good on this connection; reason is a short token */
	void (*unparsed)(void *ctx, const char *reason);
	/* a statement was answered whose request an earlier daemon read (resumed) */
	void (*lost)(void *ctx, uint64_t ts_ns);
};

#endif /* DBW_STMT_H */
