/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * MySQL / MariaDB client/server protocol: packet framing and the decoders
 * the stitcher needs. Pure functions over byte buffers, no state, no I/O.
 *
 * Every packet, both directions:
 *
 *   +----------------------+-----+---------------------------+
 *   | payload length LE24  | seq |  payload (length bytes)   |
 *   +----------------------+-----+---------------------------+
 *            3 B             1 B
 *
 * A payload of 0xffffff bytes continues in the next packet (seq + 1); the
 * last one is shorter (maybe empty). seq restarts at 0 with every command.
 *
 * Connection phase: the server's greeting (protocol 10), the client's
 * HandshakeResponse41 (or a 32-byte SSLRequest with CLIENT_SSL, then TLS),
 * auth switch / more data exchanges, then the server's OK or ERR.
 * Command phase: the client's command packet (seq 0, first byte COM_*),
 * the server's answer: OK (0x00), ERR (0xff), EOF (0xfe, < 9 bytes), a
 * LOCAL INFILE request (0xfb) or a result set (a column count, column
 * definitions, [EOF], rows, EOF or OK).
 */
#ifndef DBW_MYSQL_PROTO_H
#define DBW_MYSQL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stmt.h"

#define MYSQL_MAX_PAYLOAD 0xffffffu

/* Capability flags (the ones the parser looks at). */
#define MYSQL_CLIENT_CONNECT_WITH_DB	0x00000008u
#define MYSQL_CLIENT_COMPRESS		0x00000020u
#define MYSQL_CLIENT_PROTOCOL_41	0x00000200u
#define MYSQL_CLIENT_SSL		0x00000800u
#define MYSQL_CLIENT_SECURE_CONNECTION	0x00008000u
#define MYSQL_CLIENT_MULTI_STATEMENTS	0x00010000u
#define MYSQL_CLIENT_PLUGIN_AUTH	0x00080000u
#define MYSQL_CLIENT_CONNECT_ATTRS	0x00100000u
#define MYSQL_CLIENT_PLUGIN_AUTH_LENENC 0x00200000u
#define MYSQL_CLIENT_DEPRECATE_EOF	0x01000000u
#define MYSQL_CLIENT_ZSTD_COMPRESSION	0x04000000u

/* Server status flags. */
#define MYSQL_SERVER_MORE_RESULTS_EXISTS 0x0008u

enum mysql_com {
	MYSQL_COM_SLEEP = 0x00,
	MYSQL_COM_QUIT = 0x01,
	MYSQL_COM_INIT_DB = 0x02,
	MYSQL_COM_QUERY = 0x03,
	MYSQL_COM_FIELD_LIST = 0x04,
	MYSQL_COM_STATISTICS = 0x09,
	MYSQL_COM_PING = 0x0e,
	MYSQL_COM_CHANGE_USER = 0x11,
	MYSQL_COM_STMT_PREPARE = 0x16,
	MYSQL_COM_STMT_EXECUTE = 0x17,
	MYSQL_COM_STMT_SEND_LONG_DATA = 0x18,
	MYSQL_COM_STMT_CLOSE = 0x19,
	MYSQL_COM_STMT_RESET = 0x1a,
	MYSQL_COM_SET_OPTION = 0x1b,
	MYSQL_COM_STMT_FETCH = 0x1c,
	MYSQL_COM_RESET_CONNECTION = 0x1f,
	MYSQL_COM_STMT_BULK_EXECUTE = 0xfa, /* MariaDB */
};

struct mysql_hdr {
	uint32_t len; /* payload bytes */
	uint8_t seq;
};

/* Frame the 4-byte header at buf: OK, or NEED_MORE under 4 bytes. */
enum dbw_parse mysql_parse_hdr(const uint8_t *buf, size_t len, struct mysql_hdr *h);

/*
 * A length-encoded integer at *p (before end): OK advancing *p, INVALID
 * when it does not fit or is the NULL marker 0xfb (*is_null then set, *p
 * advanced, when is_null is given).
 */
enum dbw_parse mysql_lenenc(const uint8_t **p, const uint8_t *end, uint64_t *out, bool *is_null);

struct mysql_greeting {
	uint8_t protocol; /* 10 */
	char version[64];
	uint32_t conn_id;
	uint32_t caps;
};

/* The server's greeting payload. OK or INVALID. */
enum dbw_parse mysql_parse_greeting(const uint8_t *p, size_t len, struct mysql_greeting *out);

struct mysql_login {
	uint32_t caps;
	bool ssl_request; /* only the first 32 bytes: TLS follows */
	char user[64];
	char database[64];
	char plugin[64];
};

/* The client's HandshakeResponse41 (or SSLRequest) payload. OK or INVALID. */
enum dbw_parse mysql_parse_login(const uint8_t *p, size_t len, struct mysql_login *out);

struct mysql_ok {
	uint64_t affected_rows;
	uint64_t last_insert_id;
	uint16_t status;
	uint16_t warnings;
};

/* An OK (0x00) or EOF-as-OK (0xfe) payload. OK or INVALID. */
enum dbw_parse mysql_parse_ok(const uint8_t *p, size_t len, struct mysql_ok *out);

/* Is this server payload an EOF packet (0xfe, shorter than 9 bytes)? */
bool mysql_is_eof(const uint8_t *p, size_t len);

/* EOF payload: its status flags (0 if absent). */
uint16_t mysql_eof_status(const uint8_t *p, size_t len);

struct mysql_err {
	uint16_t code;
	char sqlstate[6]; /* "HY000" when the packet has none */
};

/* An ERR (0xff) payload. OK or INVALID. */
enum dbw_parse mysql_parse_err(const uint8_t *p, size_t len, struct mysql_err *out);

struct mysql_prepare_ok {
	uint32_t stmt_id;
	uint16_t ncols, nparams;
};

/* COM_STMT_PREPARE's OK payload (0x00, 12 bytes). OK or INVALID. */
enum dbw_parse mysql_parse_prepare_ok(const uint8_t *p, size_t len, struct mysql_prepare_ok *out);

/* The name of a command byte ("COM_QUERY"), "COM_UNKNOWN" otherwise. */
const char *mysql_com_name(uint8_t com);

#endif /* DBW_MYSQL_PROTO_H */
