// SPDX-License-Identifier: GPL-2.0-only
/* PostgreSQL v3 wire protocol: framing and body decoders (pure). */
#include <string.h>
#include <stdlib.h>

#include "pg_proto.h"

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

bool pg_frontend_type(uint8_t t)
{
	/* Bind Close CopyData CopyDone CopyFail Describe Execute Flush FunctionCall
	 * Parse PasswordMessage/SASL Query Sync Terminate */
	return t && strchr("BCdcfDEHFPpQSX", t);
}

bool pg_backend_type(uint8_t t)
{
	/* Auth BackendKeyData ParseComplete BindComplete CloseComplete CommandComplete
	 * CopyData CopyDone CopyIn CopyOut CopyBoth DataRow EmptyQuery Error
	 * FunctionCallResponse NegotiateProtocolVersion NoData Notice Notification
	 * ParameterDescription ParameterStatus PortalSuspended ReadyForQuery RowDescription */
	return t && strchr("RK123CdcGHWDIEVvnNAtSsZT", t);
}

enum dbw_parse pg_parse_hdr(const uint8_t *buf, size_t len, bool startup, bool frontend,
			    struct pg_hdr *h)
{
	uint32_t n;

	if (startup) {
		if (len < 4)
			return DBW_PARSE_NEED_MORE;
		n = be32(buf);
		if (n < 8 || n > PG_MAX_STARTUP_LEN)
			return DBW_PARSE_INVALID;
		h->type = 0;
		h->hdr_len = 4;
		h->body_len = n - 4;
		return DBW_PARSE_OK;
	}
	/* reject a bad type byte before waiting for the length: garbage fails fast */
	if (len >= 1 && !(frontend ? pg_frontend_type(buf[0]) : pg_backend_type(buf[0])))
		return DBW_PARSE_INVALID;
	if (len < 5)
		return DBW_PARSE_NEED_MORE;
	n = be32(buf + 1);
	if (n < 4 || n > PG_MAX_MSG_LEN)
		return DBW_PARSE_INVALID;
	h->type = buf[0];
	h->hdr_len = 5;
	h->body_len = n - 4;
	return DBW_PARSE_OK;
}

/* The NUL-terminated string at *p within end; advances *p past it. NULL when unterminated. */
static const char *cstr(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *s = *p;
	const uint8_t *z = memchr(s, 0, end - s);

	if (!z)
		return NULL;
	*p = z + 1;
	return (const char *)s;
}

enum dbw_parse pg_parse_startup(const uint8_t *body, size_t len, struct pg_startup *out)
{
	const uint8_t *p = body + 4, *end = body + len;

	memset(out, 0, sizeof(*out));
	if (len < 4)
		return DBW_PARSE_INVALID;
	out->code = be32(body);
	/*
	 * Every 3.x startup has the 3.0 layout: PostgreSQL 18 clients may ask
	 * for 3.2, and their user and database must not go missing.
	 */
	if (out->code >> 16 != 3)
		/* SSL/GSS/Cancel requests carry no strings; other versions we don't read */
		return out->code == PG_SSL_REQUEST || out->code == PG_GSSENC_REQUEST ||
				       out->code == PG_CANCEL_REQUEST ?
			       DBW_PARSE_OK :
			       DBW_PARSE_INVALID;
	while (p < end && *p) {
		const char *k = cstr(&p, end), *v;

		if (!k || p >= end)
			return DBW_PARSE_INVALID;
		v = cstr(&p, end);
		if (!v)
			return DBW_PARSE_INVALID;
		if (!strcmp(k, "user"))
			out->user = v;
		else if (!strcmp(k, "database"))
			out->database = v;
		else if (!strcmp(k, "application_name"))
			out->application_name = v;
	}
	return DBW_PARSE_OK;
}

enum dbw_parse pg_parse_parse(const uint8_t *body, size_t len, struct pg_parse_msg *out)
{
	const uint8_t *p = body, *end = body + len;
	const uint8_t *z;

	memset(out, 0, sizeof(*out));
	out->name = cstr(&p, end);
	if (!out->name)
		return DBW_PARSE_INVALID;
	z = memchr(p, 0, end - p);
	if (!z) {
		/* the body was cut by the capture limit: the query runs to the end */
		out->query = (const char *)p;
		out->query_len = end - p;
		return DBW_PARSE_OK;
	}
	out->query = (const char *)p;
	out->query_len = z - p;
	p = z + 1;
	if (end - p >= 2) {
		out->ntypes = be16(p);
		p += 2;
		out->types = p;
		out->types_avail = (end - p) / 4 < out->ntypes ? (end - p) / 4 : out->ntypes;
	}
	return DBW_PARSE_OK;
}

enum dbw_parse pg_parse_bind(const uint8_t *body, size_t len, struct pg_bind_msg *out)
{
	const uint8_t *p = body, *end = body + len;
	uint16_t nfmt;

	memset(out, 0, sizeof(*out));
	out->portal = cstr(&p, end);
	out->stmt = out->portal ? cstr(&p, end) : NULL;
	if (!out->stmt || end - p < 2)
		return DBW_PARSE_INVALID;
	nfmt = be16(p);
	p += 2;
	if ((size_t)(end - p) < (size_t)nfmt * 2 + 2)
		return DBW_PARSE_INVALID;
	p += (size_t)nfmt * 2;
	out->nparams = be16(p);
	return DBW_PARSE_OK;
}

enum dbw_parse pg_parse_execute(const uint8_t *body, size_t len, const char **portal,
				uint32_t *maxrows)
{
	const uint8_t *p = body, *end = body + len;

	*portal = cstr(&p, end);
	if (!*portal || end - p < 4)
		return DBW_PARSE_INVALID;
	*maxrows = be32(p);
	return DBW_PARSE_OK;
}

enum dbw_parse pg_parse_target(const uint8_t *body, size_t len, char *kind, const char **name)
{
	const uint8_t *p = body + 1, *end = body + len;

	if (len < 2 || (body[0] != 'S' && body[0] != 'P'))
		return DBW_PARSE_INVALID;
	*kind = body[0];
	*name = cstr(&p, end);
	return *name ? DBW_PARSE_OK : DBW_PARSE_INVALID;
}

enum dbw_parse pg_parse_tag(const uint8_t *body, size_t len, const char **tag)
{
	const uint8_t *p = body;

	*tag = cstr(&p, body + len);
	return *tag ? DBW_PARSE_OK : DBW_PARSE_INVALID;
}

enum dbw_parse pg_parse_error_fields(const uint8_t *body, size_t len, struct pg_error *out)
{
	const uint8_t *p = body, *end = body + len;

	out->code[0] = 0;
	out->message = out->detail = "";
	while (p < end && *p) {
		uint8_t field = *p++;
		const char *v = cstr(&p, end);

		if (!v)
			return DBW_PARSE_INVALID;
		if (field == 'C' && strlen(v) == 5)
			memcpy(out->code, v, 6);
		else if (field == 'M')
			out->message = v;
		else if (field == 'D')
			out->detail = v;
	}
	return DBW_PARSE_OK;
}

char *pg_error_scrub(const char *s)
{
	size_t n = strlen(s), o = 0;
	char *out = malloc(n + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < n;) {
		char close = 0;

		if (s[i] == '"')
			close = '"';
		else if (s[i] == '(' && ((i > 0 && s[i - 1] == '=') ||
					 (i >= 9 && !strncmp(s + i - 9, "contains ", 9))))
			close = ')';
		out[o++] = s[i++];
		if (!close)
			continue;
		/* the value up to its closing mark (nested parentheses counted) */
		for (int depth = 0; i < n; i++) {
			if (close == ')' && s[i] == '(')
				depth++;
			else if (s[i] == close && depth-- == 0)
				break;
		}
		out[o++] = '?';
		if (i < n)
			out[o++] = s[i++];
	}
	out[o] = 0;
	return out;
}

enum dbw_parse pg_parse_error(const uint8_t *body, size_t len, char code[6])
{
	struct pg_error e;
	enum dbw_parse r = pg_parse_error_fields(body, len, &e);

	memcpy(code, e.code, 6);
	return r;
}

bool pg_tag_rows(const char *tag, uint64_t *rows)
{
	static const char *const counted[] = { "SELECT ", "INSERT ", "UPDATE ", "DELETE ",
					       "MERGE ",  "FETCH ",  "MOVE ",	"COPY " };
	const char *sp;
	char *end;

	for (size_t i = 0; i < sizeof(counted) / sizeof(counted[0]); i++) {
		if (strncmp(tag, counted[i], strlen(counted[i])))
			continue;
		sp = strrchr(tag, ' ');
		if (!sp || !sp[1])
			return false;
		*rows = strtoull(sp + 1, &end, 10);
		return *end == 0;
	}
	return false;
}
