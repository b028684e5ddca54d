// SPDX-License-Identifier: GPL-2.0-only
/*
 * PostgreSQL v3 framing and body decoders (pg_proto.c) against byte-exact
 * fixtures written out by hand from the protocol documentation.
 *
 * Every call on a cut fixture gets a heap copy of exactly the bytes it may
 * read, so that valgrind (or ASan) reports a decoder that looks past len.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pg_proto.h"

/* A fixture written as a string literal: its bytes without the literal's NUL. */
#define FIX(s) ((const uint8_t *)(s)), (sizeof(s) - 1)

/* An exact-size heap copy of buf[0..n); freed by the caller. */
static uint8_t *exact(const uint8_t *buf, size_t n)
{
	uint8_t *p = malloc(n ? n : 1);

	assert_non_null(p);
	memcpy(p, buf, n);
	return p;
}

/* A fixture's exact-size copy and its length. */
struct fx {
	uint8_t *p;
	size_t n;
};

static struct fx fx(const uint8_t *buf, size_t n)
{
	return (struct fx){ exact(buf, n), n };
}

static enum dbw_parse hdr(const uint8_t *buf, size_t n, bool startup, bool frontend,
			  struct pg_hdr *h)
{
	uint8_t *p = exact(buf, n);
	enum dbw_parse r = pg_parse_hdr(p, n, startup, frontend, h);

	free(p);
	return r;
}

/* ---- pg_parse_hdr ---------------------------------------------------------- */

/* SSLRequest and a StartupMessage: 4-byte length, no type byte. */
static void test_hdr_startup(void **state)
{
	static const uint8_t ssl[] = "\x00\x00\x00\x08\x04\xd2\x16\x2f";
	static const uint8_t v3[] = "\x00\x00\x00\x17\x00\x03\x00\x00"
				    "user\0app\0\0\0\0\0\0\0";
	struct pg_hdr h;

	for (size_t n = 0; n < 4; n++)
		assert_int_equal(hdr(ssl, n, true, true, &h), DBW_PARSE_NEED_MORE);
	memset(&h, 0xaa, sizeof(h));
	assert_int_equal(hdr(ssl, 8, true, true, &h), DBW_PARSE_OK);
	assert_int_equal(h.type, 0);
	assert_int_equal(h.hdr_len, 4);
	assert_int_equal(h.body_len, 4);
	/* the header alone is enough: the body is not looked at */
	assert_int_equal(hdr(ssl, 4, true, true, &h), DBW_PARSE_OK);
	assert_int_equal(hdr(v3, 4, true, true, &h), DBW_PARSE_OK);
	assert_int_equal(h.body_len, 0x17 - 4);

	/* the smallest startup is length + code (8), the largest PostgreSQL takes 10000 */
	assert_int_equal(hdr(FIX("\x00\x00\x00\x08"), true, true, &h), DBW_PARSE_OK);
	assert_int_equal(h.body_len, 4);
	assert_int_equal(hdr(FIX("\x00\x00\x27\x10"), true, true, &h), DBW_PARSE_OK);
	assert_int_equal(h.body_len, 9996);
	assert_int_equal(hdr(FIX("\x00\x00\x00\x07"), true, true, &h), DBW_PARSE_INVALID);
	assert_int_equal(hdr(FIX("\x00\x00\x00\x00"), true, true, &h), DBW_PARSE_INVALID);
	assert_int_equal(hdr(FIX("\x00\x00\x27\x11"), true, true, &h), DBW_PARSE_INVALID);
	/* a text protocol spoken to the PostgreSQL port: huge "lengths" */
	assert_int_equal(hdr(FIX("GET / HTTP/1.1\r\n"), true, true, &h), DBW_PARSE_INVALID);
	assert_int_equal(hdr(FIX("hello\r\n"), true, true, &h), DBW_PARSE_INVALID);
	/* a regular message where a startup one is expected */
	assert_int_equal(hdr(FIX("Q\x00\x00\x00\x0dSELECT 1\0"), true, true, &h),
			 DBW_PARSE_INVALID);
}

/* Query 'Q': type byte, then a length that counts itself but not the type. */
static void test_hdr_regular_frontend(void **state)
{
	static const uint8_t q[] = "Q\x00\x00\x00\x0dSELECT 1\0";
	struct pg_hdr h;

	for (size_t n = 0; n < 5; n++)
		assert_int_equal(hdr(q, n, false, true, &h), DBW_PARSE_NEED_MORE);
	for (size_t n = 5; n <= sizeof(q) - 1; n++) {
		memset(&h, 0, sizeof(h));
		assert_int_equal(hdr(q, n, false, true, &h), DBW_PARSE_OK);
		assert_int_equal(h.type, 'Q');
		assert_int_equal(h.hdr_len, 5);
		assert_int_equal(h.body_len, 9);
	}
	/* Sync: an empty body */
	assert_int_equal(hdr(FIX("S\x00\x00\x00\x04"), false, true, &h), DBW_PARSE_OK);
	assert_int_equal(h.type, 'S');
	assert_int_equal(h.body_len, 0);
	/* a length below 4 cannot even count itself */
	for (uint8_t l = 0; l < 4; l++) {
		const uint8_t m[5] = { 'Q', 0, 0, 0, l };

		assert_int_equal(hdr(m, 5, false, true, &h), DBW_PARSE_INVALID);
	}
	/* 1 GiB is PostgreSQL's own limit; one byte more is not PostgreSQL */
	assert_int_equal(hdr(FIX("Q\x40\x00\x00\x00"), false, true, &h), DBW_PARSE_OK);
	assert_int_equal(h.body_len, (1u << 30) - 4);
	assert_int_equal(hdr(FIX("Q\x40\x00\x00\x01"), false, true, &h), DBW_PARSE_INVALID);
	assert_int_equal(hdr(FIX("Q\xff\xff\xff\xff"), false, true, &h), DBW_PARSE_INVALID);
	/* a server-only type from the client; garbage fails on its first byte */
	assert_int_equal(hdr(FIX("Z\x00\x00\x00\x05I"), false, true, &h), DBW_PARSE_INVALID);
	assert_int_equal(hdr(FIX("T"), false, true, &h), DBW_PARSE_INVALID);
	assert_int_equal(hdr(FIX("h"), false, true, &h), DBW_PARSE_INVALID);
	assert_int_equal(hdr(FIX("\0"), false, true, &h), DBW_PARSE_INVALID);
	assert_int_equal(hdr(FIX("\xff\x00\x00\x00\x04"), false, true, &h), DBW_PARSE_INVALID);
}

/* The server side: ReadyForQuery, CommandComplete, ErrorResponse, ... */
static void test_hdr_regular_backend(void **state)
{
	static const uint8_t z[] = "Z\x00\x00\x00\x05I";
	struct pg_hdr h;

	for (size_t n = 0; n < 5; n++)
		assert_int_equal(hdr(z, n, false, false, &h), DBW_PARSE_NEED_MORE);
	assert_int_equal(hdr(z, 6, false, false, &h), DBW_PARSE_OK);
	assert_int_equal(h.type, 'Z');
	assert_int_equal(h.hdr_len, 5);
	assert_int_equal(h.body_len, 1);
	assert_int_equal(hdr(FIX("1\x00\x00\x00\x04"), false, false, &h), DBW_PARSE_OK);
	assert_int_equal(h.type, '1');
	assert_int_equal(h.body_len, 0);
	assert_int_equal(hdr(FIX("C\x00\x00\x00\x0dSELECT 5\0"), false, false, &h), DBW_PARSE_OK);
	assert_int_equal(h.body_len, 9);
	/* client-only types from the server */
	assert_int_equal(hdr(FIX("Q\x00\x00\x00\x04"), false, false, &h), DBW_PARSE_INVALID);
	assert_int_equal(hdr(FIX("P"), false, false, &h), DBW_PARSE_INVALID);
	assert_int_equal(hdr(FIX("X\x00\x00\x00\x04"), false, false, &h), DBW_PARSE_INVALID);
	assert_int_equal(hdr(FIX("Z\x00\x00\x00\x03"), false, false, &h), DBW_PARSE_INVALID);
	/* "HTTP/1.1 400": 'H' is CopyOutResponse, but "TTP/" is no length */
	assert_int_equal(hdr(FIX("HTTP/1.1 400"), false, false, &h), DBW_PARSE_INVALID);
}

/* The message types of each direction, as the protocol documentation lists them. */
static void test_message_types(void **state)
{
	/* Bind Close CopyData CopyDone CopyFail Describe Execute Flush FunctionCall
	 * Parse Password/SASL Query Sync Terminate */
	static const char fe[] = "BCdcfDEHFPpQSX";
	/* ParseComplete BindComplete CloseComplete NotificationResponse CopyDone
	 * CommandComplete CopyData DataRow ErrorResponse CopyInResponse CopyOutResponse
	 * EmptyQueryResponse BackendKeyData NoData NoticeResponse Authentication
	 * PortalSuspended ParameterStatus ParameterDescription RowDescription
	 * NegotiateProtocolVersion FunctionCallResponse CopyBothResponse ReadyForQuery */
	static const char be[] = "123AcCdDEGHIKnNRsStTvVWZ";
	struct pg_hdr h;

	for (int t = 0; t < 256; t++) {
		bool in_fe = t && strchr(fe, t), in_be = t && strchr(be, t);
		const uint8_t m[5] = { (uint8_t)t, 0, 0, 0, 4 };

		assert_int_equal(pg_frontend_type(t), in_fe);
		assert_int_equal(pg_backend_type(t), in_be);
		assert_int_equal(hdr(m, 5, false, true, &h),
				 in_fe ? DBW_PARSE_OK : DBW_PARSE_INVALID);
		assert_int_equal(hdr(m, 5, false, false, &h),
				 in_be ? DBW_PARSE_OK : DBW_PARSE_INVALID);
		/* a bad type byte is rejected without waiting for the length */
		if (!in_fe)
			assert_int_equal(hdr(m, 1, false, true, &h), DBW_PARSE_INVALID);
		if (!in_be)
			assert_int_equal(hdr(m, 1, false, false, &h), DBW_PARSE_INVALID);
	}
}

/* ---- pg_parse_startup ------------------------------------------------------ */

/* The body after the length word of a psql-like StartupMessage. */
static const uint8_t startup_body[] = "\x00\x03\x00\x00"
				      "user\0alice\0"
				      "database\0shop\0"
				      "client_encoding\0UTF8\0"
				      "application_name\0psql\0"
				      "\0";

static enum dbw_parse startup(const uint8_t *body, size_t n, struct pg_startup *s)
{
	uint8_t *p = exact(body, n);
	enum dbw_parse r = pg_parse_startup(p, n, s);

	/* the strings point into the body: check them before it goes */
	if (r == DBW_PARSE_OK) {
		assert_true(!s->user || ((const uint8_t *)s->user >= p &&
					 (const uint8_t *)s->user + strlen(s->user) < p + n));
		assert_true(!s->database ||
			    ((const uint8_t *)s->database >= p &&
			     (const uint8_t *)s->database + strlen(s->database) < p + n));
	}
	free(p);
	return r;
}

static void test_startup_params(void **state)
{
	struct pg_startup s;
	uint8_t *p = exact(startup_body, sizeof(startup_body) - 1);
	struct fx f;

	assert_int_equal(pg_parse_startup(p, sizeof(startup_body) - 1, &s), DBW_PARSE_OK);
	assert_int_equal(s.code, PG_PROTO_V3);
	assert_string_equal(s.user, "alice");
	assert_string_equal(s.database, "shop");
	assert_string_equal(s.application_name, "psql");
	free(p);

	/* no application_name, no database: NULL, not "" */
	f = fx(FIX("\x00\x03\x00\x00user\0bob\0\0"));
	assert_int_equal(pg_parse_startup(f.p, f.n, &s), DBW_PARSE_OK);
	assert_string_equal(s.user, "bob");
	assert_null(s.database);
	assert_null(s.application_name);
	free(f.p);

	/* an empty value is a value */
	f = fx(FIX("\x00\x03\x00\x00user\0\0database\0d\0\0"));
	assert_int_equal(pg_parse_startup(f.p, f.n, &s), DBW_PARSE_OK);
	assert_string_equal(s.user, "");
	assert_string_equal(s.database, "d");
	free(f.p);

	/* no parameters at all */
	assert_int_equal(startup(FIX("\x00\x03\x00\x00\0"), &s), DBW_PARSE_OK);
	assert_null(s.user);

	/* protocol 3.2 (PostgreSQL 18) keeps the 3.0 layout: its user is read too */
	f = fx(FIX("\x00\x03\x00\x02user\0carol\0database\0db\0\0"));
	assert_int_equal(pg_parse_startup(f.p, f.n, &s), DBW_PARSE_OK);
	assert_int_equal(s.code, 0x00030002);
	assert_string_equal(s.user, "carol");
	assert_string_equal(s.database, "db");
	free(f.p);
}

static void test_startup_requests(void **state)
{
	struct pg_startup s;

	memset(&s, 0xaa, sizeof(s));
	assert_int_equal(startup(FIX("\x04\xd2\x16\x2f"), &s), DBW_PARSE_OK);
	assert_int_equal(s.code, PG_SSL_REQUEST);
	assert_null(s.user);
	assert_null(s.database);
	assert_null(s.application_name);

	memset(&s, 0xaa, sizeof(s));
	assert_int_equal(startup(FIX("\x04\xd2\x16\x30"), &s), DBW_PARSE_OK);
	assert_int_equal(s.code, PG_GSSENC_REQUEST);
	assert_null(s.user);

	/* CancelRequest: code, backend pid, secret key */
	assert_int_equal(startup(FIX("\x04\xd2\x16\x2e\x00\x00\x10\x92\xde\xad\xbe\xef"), &s),
			 DBW_PARSE_OK);
	assert_int_equal(s.code, PG_CANCEL_REQUEST);
	assert_null(s.user);
}

static void test_startup_malformed(void **state)
{
	const size_t n = sizeof(startup_body) - 1;
	struct pg_startup s;

	/* shorter than the code */
	for (size_t len = 0; len < 4; len++)
		assert_int_equal(startup(startup_body, len, &s), DBW_PARSE_INVALID);
	/* protocol 2.0, 4.0 and nonsense codes are not read */
	assert_int_equal(startup(FIX("\x00\x02\x00\x00user\0x\0\0"), &s), DBW_PARSE_INVALID);
	assert_int_equal(startup(FIX("\x00\x04\x00\x00user\0x\0\0"), &s), DBW_PARSE_INVALID);
	assert_int_equal(startup(FIX("\x12\x34\x56\x78"), &s), DBW_PARSE_INVALID);

	/*
	 * Cut at every length: whole key/value pairs parse, a cut inside a key
	 * or a value (or between a key and its value) does not.
	 */
	for (size_t len = 4; len <= n; len++) {
		size_t nul = 0;
		bool pair_done;

		for (size_t i = 4; i < len; i++)
			nul += startup_body[i] == 0;
		/* after 2k NULs and nothing more, k pairs are complete */
		pair_done = len == 4 || (startup_body[len - 1] == 0 && nul % 2 == 0) || len == n;
		assert_int_equal(startup(startup_body, len, &s),
				 pair_done ? DBW_PARSE_OK : DBW_PARSE_INVALID);
	}
	/* a key with no value at all */
	assert_int_equal(startup(FIX("\x00\x03\x00\x00user\0"), &s), DBW_PARSE_INVALID);
	assert_int_equal(startup(FIX("\x00\x03\x00\x00user"), &s), DBW_PARSE_INVALID);
}

/* ---- extended-protocol bodies ---------------------------------------------- */

/* Parse: name "s1", query, 2 parameter types int4 (23) and text (25). */
static const uint8_t parse_body[] = "s1\0"
				    "SELECT * FROM t WHERE a = $1 AND b = $2\0"
				    "\x00\x02"
				    "\x00\x00\x00\x17"
				    "\x00\x00\x00\x19";

static void test_parse_valid(void **state)
{
	const size_t n = sizeof(parse_body) - 1;
	uint8_t *p = exact(parse_body, n);
	struct pg_parse_msg m;
	struct fx f;

	assert_int_equal(pg_parse_parse(p, n, &m), DBW_PARSE_OK);
	assert_string_equal(m.name, "s1");
	assert_string_equal(m.query, "SELECT * FROM t WHERE a = $1 AND b = $2");
	assert_int_equal(m.query_len, strlen("SELECT * FROM t WHERE a = $1 AND b = $2"));
	assert_int_equal(m.ntypes, 2);
	assert_int_equal(m.types_avail, 2);
	assert_memory_equal(m.types, "\x00\x00\x00\x17\x00\x00\x00\x19", 8);
	free(p);

	/* unnamed statement, no types (libpq's PQexecParams without types) */
	f = fx(FIX("\0SELECT 1\0\x00\x00"));
	assert_int_equal(pg_parse_parse(f.p, f.n, &m), DBW_PARSE_OK);
	assert_string_equal(m.name, "");
	assert_string_equal(m.query, "SELECT 1");
	assert_int_equal(m.ntypes, 0);
	assert_int_equal(m.types_avail, 0);
	free(f.p);
}

/* Parse cut at every length by the capture limit. */
static void test_parse_cut(void **state)
{
	const size_t n = sizeof(parse_body) - 1, qstart = 3;
	const size_t qlen = strlen((const char *)parse_body + qstart);
	struct pg_parse_msg m;

	for (size_t len = 0; len < n; len++) {
		uint8_t *p = exact(parse_body, len);
		enum dbw_parse r = pg_parse_parse(p, len, &m);

		if (len < qstart) {
			/* the name is not complete: nothing to go by */
			assert_int_equal(r, DBW_PARSE_INVALID);
		} else if (len <= qstart + qlen) {
			/* cut inside the query: the text present, no types */
			assert_int_equal(r, DBW_PARSE_OK);
			assert_string_equal(m.name, "s1");
			assert_int_equal(m.query_len, len - qstart);
			assert_memory_equal(m.query, parse_body + qstart, len - qstart);
			assert_int_equal(m.ntypes, 0);
			assert_int_equal(m.types_avail, 0);
		} else {
			size_t after = len - (qstart + qlen + 1);

			/* the query is whole; types only as far as they were kept */
			assert_int_equal(r, DBW_PARSE_OK);
			assert_int_equal(m.query_len, qlen);
			assert_int_equal(m.ntypes, after >= 2 ? 2 : 0);
			assert_int_equal(m.types_avail, after >= 2 ? (after - 2) / 4 : 0);
		}
		free(p);
	}
}

static void test_parse_malformed(void **state)
{
	struct pg_parse_msg m;
	uint8_t *p;

	assert_int_equal(pg_parse_parse((const uint8_t *)"", 0, &m), DBW_PARSE_INVALID);
	p = exact(FIX("no_nul_anywhere"));
	assert_int_equal(pg_parse_parse(p, 15, &m), DBW_PARSE_INVALID);
	free(p);
	/* more types announced than present: only those present are handed out */
	p = exact(FIX("\0SELECT $1\0\x00\x05\x00\x00\x00\x17"));
	assert_int_equal(pg_parse_parse(p, 17, &m), DBW_PARSE_OK);
	assert_int_equal(m.ntypes, 5);
	assert_int_equal(m.types_avail, 1);
	free(p);
}

/* Bind: portal "p1", statement "s1", 1 format (text), 2 values, 1 result format. */
static const uint8_t bind_body[] = "p1\0s1\0"
				   "\x00\x01\x00\x00"
				   "\x00\x02"
				   "\x00\x00\x00\x03"
				   "lit"
				   "\xff\xff\xff\xff"
				   "\x00\x01\x00\x00";

static void test_bind(void **state)
{
	const size_t n = sizeof(bind_body) - 1;
	const size_t counted = 6 + 4 + 2; /* names, formats, the value count */
	struct pg_bind_msg m;
	uint8_t *p = exact(bind_body, n);

	assert_int_equal(pg_parse_bind(p, n, &m), DBW_PARSE_OK);
	assert_string_equal(m.portal, "p1");
	assert_string_equal(m.stmt, "s1");
	assert_int_equal(m.nparams, 2);
	free(p);

	/* unnamed portal and statement, no formats, no values */
	p = exact(FIX("\0\0\x00\x00\x00\x00\x00\x00"));
	assert_int_equal(pg_parse_bind(p, 8, &m), DBW_PARSE_OK);
	assert_string_equal(m.portal, "");
	assert_string_equal(m.stmt, "");
	assert_int_equal(m.nparams, 0);
	free(p);

	/* cut: invalid until the value count is there; the values are never read */
	for (size_t len = 0; len < n; len++) {
		p = exact(bind_body, len);
		assert_int_equal(pg_parse_bind(p, len, &m),
				 len < counted ? DBW_PARSE_INVALID : DBW_PARSE_OK);
		if (len >= counted)
			assert_int_equal(m.nparams, 2);
		free(p);
	}
	/* a format count that runs past the body */
	p = exact(FIX("\0\0\xff\xff\x00\x00"));
	assert_int_equal(pg_parse_bind(p, 6, &m), DBW_PARSE_INVALID);
	free(p);
}

static void test_execute(void **state)
{
	static const uint8_t body[] = "p1\0\x00\x00\x00\x64";
	const char *portal = NULL;
	uint32_t maxrows = 7;
	uint8_t *p = exact(body, 7);

	assert_int_equal(pg_parse_execute(p, 7, &portal, &maxrows), DBW_PARSE_OK);
	assert_string_equal(portal, "p1");
	assert_int_equal(maxrows, 100);
	free(p);
	p = exact(FIX("\0\x00\x00\x00\x00"));
	assert_int_equal(pg_parse_execute(p, 5, &portal, &maxrows), DBW_PARSE_OK);
	assert_string_equal(portal, "");
	assert_int_equal(maxrows, 0);
	free(p);
	for (size_t len = 0; len < 7; len++) {
		p = exact(body, len);
		assert_int_equal(pg_parse_execute(p, len, &portal, &maxrows), DBW_PARSE_INVALID);
		free(p);
	}
	p = exact(FIX("p1p1p1p1"));
	assert_int_equal(pg_parse_execute(p, 8, &portal, &maxrows), DBW_PARSE_INVALID);
	free(p);
}

/* Describe / Close target: 'S'tatement or 'P'ortal, then a name. */
static void test_target(void **state)
{
	const char *name = NULL;
	char kind = 0;
	uint8_t *p;

	p = exact(FIX("Ss1\0"));
	assert_int_equal(pg_parse_target(p, 4, &kind, &name), DBW_PARSE_OK);
	assert_int_equal(kind, 'S');
	assert_string_equal(name, "s1");
	free(p);
	p = exact(FIX("P\0"));
	assert_int_equal(pg_parse_target(p, 2, &kind, &name), DBW_PARSE_OK);
	assert_int_equal(kind, 'P');
	assert_string_equal(name, "");
	free(p);
	/* cut, unterminated, unknown kind, empty */
	p = exact(FIX("Ss1\0"));
	for (size_t len = 0; len < 4; len++)
		assert_int_equal(pg_parse_target(p, len, &kind, &name), DBW_PARSE_INVALID);
	free(p);
	p = exact(FIX("Xs1\0"));
	assert_int_equal(pg_parse_target(p, 4, &kind, &name), DBW_PARSE_INVALID);
	free(p);
}

/* ---- backend bodies --------------------------------------------------------- */

static void test_tag(void **state)
{
	static const uint8_t body[] = "INSERT 0 1\0";
	const char *tag = NULL;
	uint8_t *p = exact(body, 11);

	assert_int_equal(pg_parse_tag(p, 11, &tag), DBW_PARSE_OK);
	assert_string_equal(tag, "INSERT 0 1");
	free(p);
	for (size_t len = 0; len < 11; len++) {
		p = exact(body, len);
		assert_int_equal(pg_parse_tag(p, len, &tag), DBW_PARSE_INVALID);
		free(p);
	}
}

/* ErrorResponse: severity, SQLSTATE, message, detail; only the SQLSTATE is kept. */
static const uint8_t error_body[] = "SERROR\0"
				    "VERROR\0"
				    "C23505\0"
				    "Mduplicate key value violates unique constraint\0"
				    "DKey (email)=(lit_secret@example.com) already exists.\0"
				    "\0";

static void test_error(void **state)
{
	const size_t n = sizeof(error_body) - 1;
	const size_t c_end = 7 + 7 + 7; /* through the C field's NUL */
	char code[6];
	uint8_t *p;

	p = exact(error_body, n);
	memset(code, 'x', sizeof(code));
	assert_int_equal(pg_parse_error(p, n, code), DBW_PARSE_OK);
	assert_string_equal(code, "23505");
	free(p);

	for (size_t len = 0; len < n; len++) {
		enum dbw_parse r;

		p = exact(error_body, len);
		memset(code, 'x', sizeof(code));
		r = pg_parse_error(p, len, code);
		if (len >= c_end) {
			/* the code came before the cut: kept, whatever follows */
			assert_string_equal(code, "23505");
		} else {
			assert_string_equal(code, "");
		}
		/* whole fields parse; a field cut inside its value does not */
		if (len == 0 || len == 7 || len == 14 || len == c_end)
			assert_int_equal(r, DBW_PARSE_OK);
		else if (len < c_end)
			assert_int_equal(r, DBW_PARSE_INVALID);
		free(p);
	}

	/* no C field; a C field that is not five characters */
	p = exact(FIX("SFATAL\0Mbye\0\0"));
	assert_int_equal(pg_parse_error(p, 13, code), DBW_PARSE_OK);
	assert_string_equal(code, "");
	free(p);
	p = exact(FIX("C123\0\0"));
	assert_int_equal(pg_parse_error(p, 6, code), DBW_PARSE_OK);
	assert_string_equal(code, "");
	free(p);
	p = exact(FIX("C1234567\0\0"));
	assert_int_equal(pg_parse_error(p, 10, code), DBW_PARSE_OK);
	assert_string_equal(code, "");
	free(p);
}

/* The message and detail, as the masking layer gets them; then scrubbed of quoted values. */
static void test_error_fields(void **state)
{
	const size_t n = sizeof(error_body) - 1;
	struct pg_error e;
	uint8_t *p = exact(error_body, n);
	char *s;

	assert_int_equal(pg_parse_error_fields(p, n, &e), DBW_PARSE_OK);
	assert_string_equal(e.code, "23505");
	assert_string_equal(e.message, "duplicate key value violates unique constraint");
	assert_string_equal(e.detail, "Key (email)=(lit_secret@example.com) already exists.");
	s = pg_error_scrub(e.detail);
	assert_string_equal(s, "Key (email)=(?) already exists.");
	free(s);
	free(p);
	p = exact(FIX("SFATAL\0\0"));
	assert_int_equal(pg_parse_error_fields(p, 8, &e), DBW_PARSE_OK);
	assert_string_equal(e.message, "");
	assert_string_equal(e.detail, "");
	free(p);

	static const char *const scrub[][2] = {
		{ "invalid input syntax for type integer: \"lit_abc\"",
		  "invalid input syntax for type integer: \"?\"" },
		{ "Failing row contains (1, null, lit (x) y).", "Failing row contains (?)." },
		{ "Key (a, b)=(1, (2)) is duplicated.", "Key (a, b)=(?) is duplicated." },
		{ "unterminated \"abc", "unterminated \"?" },
		{ "Key (k)=(unterminated", "Key (k)=(?" },
		{ "no values here (really)", "no values here (really)" },
		{ "", "" },
	};
	for (size_t i = 0; i < sizeof(scrub) / sizeof(scrub[0]); i++) {
		s = pg_error_scrub(scrub[i][0]);
		assert_string_equal(s, scrub[i][1]);
		free(s);
	}
}

static void test_tag_rows(void **state)
{
	static const struct {
		const char *tag;
		bool has;
		uint64_t rows;
	} cases[] = {
		{ "SELECT 5", true, 5 },
		{ "SELECT 0", true, 0 },
		{ "INSERT 0 1", true, 1 },
		{ "INSERT 0 250", true, 250 },
		{ "UPDATE 3", true, 3 },
		{ "DELETE 12", true, 12 },
		{ "MERGE 2", true, 2 },
		{ "FETCH 100", true, 100 },
		{ "MOVE 4", true, 4 },
		{ "COPY 10000", true, 10000 },
		{ "SELECT 18446744073709551615", true, UINT64_MAX },
		{ "CREATE TABLE", false, 0 },
		{ "DROP TABLE", false, 0 },
		{ "BEGIN", false, 0 },
		{ "SET", false, 0 },
		{ "SELECT", false, 0 }, /* no count at all */
		{ "SELECT ", false, 0 },
		{ "SELECT 5x", false, 0 },
		{ "INSERT 0 ", false, 0 },
		{ "", false, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t rows = 424242;
		bool has = pg_tag_rows(cases[i].tag, &rows);

		if (has != cases[i].has)
			fail_msg("pg_tag_rows(\"%s\") = %d", cases[i].tag, has);
		if (has)
			assert_int_equal(rows, cases[i].rows);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_startup),
		cmocka_unit_test(test_hdr_regular_frontend),
		cmocka_unit_test(test_hdr_regular_backend),
		cmocka_unit_test(test_message_types),
		cmocka_unit_test(test_startup_params),
		cmocka_unit_test(test_startup_requests),
		cmocka_unit_test(test_startup_malformed),
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_cut),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_bind),
		cmocka_unit_test(test_execute),
		cmocka_unit_test(test_target),
		cmocka_unit_test(test_tag),
		cmocka_unit_test(test_error),
		cmocka_unit_test(test_error_fields),
		cmocka_unit_test(test_tag_rows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
