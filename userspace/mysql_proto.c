// SPDX-License-Identifier: GPL-2.0-only
/* MySQL / MariaDB wire protocol decoders. */
#include <stdio.h>
#include <string.h>

#include "mysql_proto.h"

enum dbw_parse mysql_parse_hdr(const uint8_t *buf, size_t len, struct mysql_hdr *h)
{
	if (len < 4)
		return DBW_PARSE_NEED_MORE;
	h->len = buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16;
	h->seq = buf[3];
	return DBW_PARSE_OK;
}

static uint64_t le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

enum dbw_parse mysql_lenenc(const uint8_t **pp, const uint8_t *end, uint64_t *out, bool *is_null)
{
	const uint8_t *p = *pp;
	int n;

	if (is_null)
		*is_null = false;
	if (p >= end)
		return DBW_PARSE_INVALID;
	if (*p < 0xfb) {
		*out = *p;
		*pp = p + 1;
		return DBW_PARSE_OK;
	}
	if (*p == 0xfb) {
		*pp = p + 1;
		if (is_null)
			*is_null = true;
		return DBW_PARSE_INVALID;
	}
	n = *p == 0xfc ? 2 : *p == 0xfd ? 3 : *p == 0xfe ? 8 : -1;
	if (n < 0 || end - p < 1 + n)
		return DBW_PARSE_INVALID;
	*out = le(p + 1, n);
	*pp = p + 1 + n;
	return DBW_PARSE_OK;
}

/* A NUL-terminated string at *p into dst (cut to dstlen). false without its NUL. */
static bool cstr(const uint8_t **pp, const uint8_t *end, char *dst, size_t dstlen)
{
	const uint8_t *p = *pp, *nul = memchr(p, 0, end - p);

	if (!nul)
		return false;
	if (dst)
		snprintf(dst, dstlen, "%.*s", (int)(nul - p), (const char *)p);
	*pp = nul + 1;
	return true;
}

enum dbw_parse mysql_parse_greeting(const uint8_t *p, size_t len, struct mysql_greeting *out)
{
	const uint8_t *end = p + len;

	memset(out, 0, sizeof(*out));
	if (len < 1 || p[0] != 10)
		return DBW_PARSE_INVALID;
	out->protocol = *p++;
	if (!cstr(&p, end, out->version, sizeof(out->version)))
		return DBW_PARSE_INVALID;
	/* conn id 4, auth data 8, filler 1, caps low 2 */
	if (end - p < 15)
		return DBW_PARSE_INVALID;
	out->conn_id = le(p, 4);
	out->caps = le(p + 13, 2);
	p += 15;
	/* charset 1, status 2, caps high 2 */
	if (end - p >= 5)
		out->caps |= (uint32_t)le(p + 3, 2) << 16;
	return DBW_PARSE_OK;
}

enum dbw_parse mysql_parse_login(const uint8_t *p, size_t len, struct mysql_login *out)
{
	const uint8_t *end = p + len;
	uint64_t n;

	memset(out, 0, sizeof(*out));
	if (len < 32)
		return DBW_PARSE_INVALID;
	out->caps = le(p, 4);
	if (!(out->caps & MYSQL_CLIENT_PROTOCOL_41))
		return DBW_PARSE_INVALID; /* HandshakeResponse320: no server of ours speaks it */
	if (len == 32) {
		/* caps, max packet, charset, 23 zero bytes (MariaDB's extended caps in the last 4) */
		out->ssl_request = !!(out->caps & MYSQL_CLIENT_SSL);
		return out->ssl_request ? DBW_PARSE_OK : DBW_PARSE_INVALID;
	}
	p += 32;
	if (!cstr(&p, end, out->user, sizeof(out->user)))
		return DBW_PARSE_INVALID;
	/* auth response: lenenc, or 1-byte length, or NUL-terminated */
	if (out->caps & MYSQL_CLIENT_PLUGIN_AUTH_LENENC) {
		if (mysql_lenenc(&p, end, &n, NULL) != DBW_PARSE_OK || (uint64_t)(end - p) < n)
			return DBW_PARSE_INVALID;
		p += n;
	} else if (out->caps & MYSQL_CLIENT_SECURE_CONNECTION) {
		if (p >= end || end - p - 1 < *p)
			return DBW_PARSE_INVALID;
		p += 1 + *p;
	} else if (!cstr(&p, end, NULL, 0)) {
		return DBW_PARSE_INVALID;
	}
	if ((out->caps & MYSQL_CLIENT_CONNECT_WITH_DB) && p < end &&
	    !cstr(&p, end, out->database, sizeof(out->database)))
		return DBW_PARSE_INVALID;
	if ((out->caps & MYSQL_CLIENT_PLUGIN_AUTH) && p < end)
		cstr(&p, end, out->plugin, sizeof(out->plugin));
	return DBW_PARSE_OK;
}

enum dbw_parse mysql_parse_ok(const uint8_t *p, size_t len, struct mysql_ok *out)
{
	const uint8_t *end = p + len;

	memset(out, 0, sizeof(*out));
	if (len < 1 || (p[0] != 0x00 && p[0] != 0xfe))
		return DBW_PARSE_INVALID;
	p++;
	if (mysql_lenenc(&p, end, &out->affected_rows, NULL) != DBW_PARSE_OK ||
	    mysql_lenenc(&p, end, &out->last_insert_id, NULL) != DBW_PARSE_OK)
		return DBW_PARSE_INVALID;
	if (end - p >= 2) {
		out->status = le(p, 2);
		p += 2;
	}
	if (end - p >= 2)
		out->warnings = le(p, 2);
	return DBW_PARSE_OK;
}

bool mysql_is_eof(const uint8_t *p, size_t len)
{
	return len >= 1 && len < 9 && p[0] == 0xfe;
}

uint16_t mysql_eof_status(const uint8_t *p, size_t len)
{
	return len >= 5 ? le(p + 3, 2) : 0;
}

enum dbw_parse mysql_parse_err(const uint8_t *p, size_t len, struct mysql_err *out)
{
	memset(out, 0, sizeof(*out));
	if (len < 3 || p[0] != 0xff)
		return DBW_PARSE_INVALID;
	out->code = le(p + 1, 2);
	if (len >= 9 && p[3] == '#')
		memcpy(out->sqlstate, p + 4, 5);
	else
		memcpy(out->sqlstate, "HY000", 5);
	for (int i = 0; i < 5; i++)
		if (out->sqlstate[i] < '0' || out->sqlstate[i] > 'Z')
			out->sqlstate[i] = '?';
	out->sqlstate[5] = 0;
	return DBW_PARSE_OK;
}

enum dbw_parse mysql_parse_prepare_ok(const uint8_t *p, size_t len, struct mysql_prepare_ok *out)
{
	memset(out, 0, sizeof(*out));
	if (len < 9 || p[0] != 0x00)
		return DBW_PARSE_INVALID;
	out->stmt_id = le(p + 1, 4);
	out->ncols = le(p + 5, 2);
	out->nparams = le(p + 7, 2);
	return DBW_PARSE_OK;
}

const char *mysql_com_name(uint8_t com)
{
	switch (com) {
	case MYSQL_COM_QUIT:
		return "COM_QUIT";
	case MYSQL_COM_INIT_DB:
		return "COM_INIT_DB";
	case MYSQL_COM_QUERY:
		return "COM_QUERY";
	case MYSQL_COM_FIELD_LIST:
		return "COM_FIELD_LIST";
	case MYSQL_COM_STATISTICS:
		return "COM_STATISTICS";
	case MYSQL_COM_PING:
		return "COM_PING";
	case MYSQL_COM_CHANGE_USER:
		return "COM_CHANGE_USER";
	case MYSQL_COM_STMT_PREPARE:
		return "COM_STMT_PREPARE";
	case MYSQL_COM_STMT_EXECUTE:
		return "COM_STMT_EXECUTE";
	case MYSQL_COM_STMT_SEND_LONG_DATA:
		return "COM_STMT_SEND_LONG_DATA";
	case MYSQL_COM_STMT_CLOSE:
		return "COM_STMT_CLOSE";
	case MYSQL_COM_STMT_RESET:
		return "COM_STMT_RESET";
	case MYSQL_COM_SET_OPTION:
		return "COM_SET_OPTION";
	case MYSQL_COM_STMT_FETCH:
		return "COM_STMT_FETCH";
	case MYSQL_COM_RESET_CONNECTION:
		return "COM_RESET_CONNECTION";
	case MYSQL_COM_STMT_BULK_EXECUTE:
		return "COM_STMT_BULK_EXECUTE";
	}
	return "COM_UNKNOWN";
}
