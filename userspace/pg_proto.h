/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * PostgreSQL v3 wire protocol: framing and body decoders. Pure functions
 * over byte buffers, no state, no I/O: the same code serves the daemon, the
 * unit tests and the fuzzers.
 *
 * Regular message (both directions, after the startup phase):
 *
 *   +------+----------------+------------------------+
 *   | type |  length (BE32) |  body (length - 4)     |
 *   +------+----------------+------------------------+
 *     1 B        4 B          length counts itself, not the type byte
 *
 * Startup-phase message (client, first message and after an SSL refusal):
 *
 *   +----------------+----------------+--------------------+
 *   |  length (BE32) |  code (BE32)   |  rest              |
 *   +----------------+----------------+--------------------+
 *   code: 196608 (3.0) StartupMessage, 80877103 SSLRequest,
 *         80877104 GSSENCRequest, 80877102 CancelRequest
 */
#ifndef DBW_PG_PROTO_H
#define DBW_PG_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stmt.h"

#define PG_PROTO_V3	  196608u
#define PG_SSL_REQUEST	  80877103u
#define PG_GSSENC_REQUEST 80877104u
#define PG_CANCEL_REQUEST 80877102u

/* Sanity limits: past them a stream is not PostgreSQL (or is corrupt). */
#define PG_MAX_STARTUP_LEN 10000u
#define PG_MAX_MSG_LEN	   (1u << 30)

struct pg_hdr {
	uint8_t type; /* 0 for a startup-phase message */
	uint32_t hdr_len; /* bytes of header: 5, or 4 in the startup phase */
	uint32_t body_len; /* bytes after the header */
};

/*
 * Frame the header at buf. startup: the client's startup phase (no type
 * byte). frontend: client -> server. OK fills *h; NEED_MORE when fewer than
 * hdr_len bytes are there; INVALID for an unknown type or impossible length.
 * Consumes nothing: the caller advances by h->hdr_len.
 */
enum dbw_parse pg_parse_hdr(const uint8_t *buf, size_t len, bool startup, bool frontend,
			    struct pg_hdr *h);

/* Whether type is a message type the client (frontend) or server may send. */
bool pg_frontend_type(uint8_t type);
bool pg_backend_type(uint8_t type);

struct pg_startup {
	uint32_t code; /* PG_PROTO_V3, PG_SSL_REQUEST, ... */
	const char *user, *database, *application_name; /* into body; NULL if absent */
};

/* Decode a startup-phase body (after the length word). OK or INVALID. */
enum dbw_parse pg_parse_startup(const uint8_t *body, size_t len, struct pg_startup *out);

struct pg_parse_msg {
	const char *name; /* prepared statement name, "" = unnamed */
	const char *query; /* into body; NUL-terminated unless the body was cut */
	size_t query_len; /* bytes of the text present, its NUL not counted */
	uint16_t ntypes;
	const uint8_t *types; /* ntypes big-endian int32 OIDs (bounded by the body) */
	uint16_t types_avail; /* how many of them the body holds */
};

/* Parse ('P') body. INVALID when malformed; a cut query gives query_len = bytes present. */
enum dbw_parse pg_parse_parse(const uint8_t *body, size_t len, struct pg_parse_msg *out);

struct pg_bind_msg {
	const char *portal;
	const char *stmt;
	uint16_t nparams;
};

/* Bind ('B') body: portal, statement and the parameter count; values are skipped. */
enum dbw_parse pg_parse_bind(const uint8_t *body, size_t len, struct pg_bind_msg *out);

/* Execute ('E') body: portal name and row limit. */
enum dbw_parse pg_parse_execute(const uint8_t *body, size_t len, const char **portal,
				uint32_t *maxrows);

/* Close ('C') / Describe ('D') body: 'S' or 'P' and a name. */
enum dbw_parse pg_parse_target(const uint8_t *body, size_t len, char *kind, const char **name);

/* CommandComplete body: the tag (NUL-terminated within the body). */
enum dbw_parse pg_parse_tag(const uint8_t *body, size_t len, const char **tag);

/* ErrorResponse / NoticeResponse body: the SQLSTATE field ('C'), copied into code[6]. */
enum dbw_parse pg_parse_error(const uint8_t *body, size_t len, char code[6]);

/*
 * The fields of an ErrorResponse the audit reports: SQLSTATE, message ('M')
 * and detail ('D'), NUL-terminated within the body ("" when absent). The
 * message and detail can quote the user's values: they leave the host
 * only through the detectors (README "Masking").
 */
struct pg_error {
	char code[6];
	const char *message, *detail;
};
enum dbw_parse pg_parse_error_fields(const uint8_t *body, size_t len, struct pg_error *out);

/*
 * An error message or detail with the values PostgreSQL quotes in it
 * replaced, as normalized statement text has its literals replaced: what
 * stands between double quotes ("abc" -> "?"), and a parenthesised list
 * after '=' or "contains " (Key (email)=(?) already exists, Failing row
 * contains (?)). Returns a malloc'd NUL-terminated string, NULL when out
 * of memory.
 */
char *pg_error_scrub(const char *s);

/*
 * The row count a CommandComplete tag carries ("SELECT 5", "INSERT 0 1",
 * "UPDATE 3", "COPY 10000", ...). Returns true and sets *rows when it has one.
 */
bool pg_tag_rows(const char *tag, uint64_t *rows);

#endif /* DBW_PG_PROTO_H */
