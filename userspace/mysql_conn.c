// SPDX-License-Identifier: GPL-2.0-only
/* MySQL / MariaDB connection stitcher: packets reassembled, commands paired with answers. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dbwarden_abi.h"
#include "mysql_conn.h"
#include "mysql_proto.h"
#include "mysql_sql.h"

/* Bytes of a server packet kept: enough for OK, ERR (code, SQLSTATE), EOF, counts. */
#define SERVER_KEEP 64

enum phase { PH_GREETING, PH_LOGIN, PH_AUTH, PH_COMMAND };

/* Where the answer to the command at the head of the queue is. */
enum rstate {
	R_FIRST, /* OK, ERR, LOCAL INFILE or a result set's column count */
	R_COLDEFS, /* column definitions */
	R_COLEOF, /* the EOF after them (without CLIENT_DEPRECATE_EOF) */
	R_ROWS, /* rows, up to EOF/OK */
	R_PREP_DEFS, /* COM_STMT_PREPARE: parameter and column definitions */
};

/* A statement text shared by the prepared-statement table and pending commands. */
struct mtext {
	unsigned ref;
	size_t len;
	uint64_t full_len;
	bool truncated;
	uint64_t req_off; /* client stream offset of the command that carried it */
	char data[]; /* len bytes + NUL */
};

struct mpend {
	uint8_t com;
	struct mtext *text; /* COM_QUERY, COM_STMT_PREPARE, COM_STMT_EXECUTE */
	struct mysql_span spans[MYSQL_MAX_STMTS];
	size_t nstmts, cur; /* statements of the text; the one being answered */
	uint32_t stmt_id, nparams;
	bool execute;
	uint64_t start_ns, req_off;
	uint32_t pid;
	enum rstate rs;
	uint64_t left; /* column definitions (and EOFs) still to come */
	uint64_t rows;
	char db[64]; /* COM_INIT_DB / USE: the database it switches to */
};

struct prep {
	uint32_t id;
	struct mtext *text;
	uint32_t nparams;
};

struct mstream {
	uint8_t hdr[4];
	uint32_t hlen;
	bool in_body;
	uint32_t len; /* payload bytes of the current packet */
	uint32_t have; /* of them seen */
	uint8_t seq; /* the current packet's */
	uint8_t seq0; /* the logical payload's first packet's */
	bool cont; /* this packet continues a payload of 0xffffff bytes */
	bool truncated; /* stored payload is a prefix (capture gap or cap) */
	uint8_t *buf;
	uint32_t kept, cap;
	uint64_t full; /* bytes of the logical payload (continuations included) */
	uint64_t pos; /* stream bytes consumed */
	uint64_t pkt_off; /* stream offset of the logical payload's first header */
	uint64_t ts;
};

struct mysql_conn {
	const struct dbw_stitch_ops *ops;
	void *ctx;
	struct mstream s[2];
	enum phase phase;
	bool dead;
	uint32_t server_caps, caps;
	bool multi; /* multi-statements on */
	char user[64], db[64];
	struct mpend *q;
	size_t qhead, qlen, qcap;
	struct prep *preps;
	size_t nprep, prep_cap;
	uint32_t pid;
	bool resumed; /* read from the middle: an answer may precede any command seen */
};

static void unparsed(struct mysql_conn *c, const char *reason)
{
	if (c->dead)
		return;
	c->dead = true;
	if (c->ops->unparsed)
		c->ops->unparsed(c->ctx, reason);
}

static struct mtext *text_new(const uint8_t *s, size_t len, uint64_t full, bool truncated)
{
	struct mtext *t = malloc(sizeof(*t) + len + 1);

	if (!t)
		return NULL;
	t->ref = 1;
	t->len = len;
	t->full_len = full;
	t->truncated = truncated;
	memcpy(t->data, s, len);
	t->data[len] = 0;
	return t;
}

static struct mtext *text_get(struct mtext *t)
{
	if (t)
		t->ref++;
	return t;
}

static void text_put(struct mtext *t)
{
	if (t && !--t->ref)
		free(t);
}

struct mysql_conn *mysql_conn_new(const struct dbw_stitch_ops *ops, void *ctx)
{
	struct mysql_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->ops = ops;
	c->ctx = ctx;
	return c;
}

void mysql_conn_free(struct mysql_conn *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->qlen; i++)
		text_put(c->q[(c->qhead + i) % c->qcap].text);
	for (size_t i = 0; i < c->nprep; i++)
		text_put(c->preps[i].text);
	free(c->q);
	free(c->preps);
	free(c->s[0].buf);
	free(c->s[1].buf);
	free(c);
}

/* ---- prepared statements ------------------------------------------------------ */

static struct prep *prep_find(struct mysql_conn *c, uint32_t id)
{
	for (size_t i = 0; i < c->nprep; i++)
		if (c->preps[i].id == id)
			return &c->preps[i];
	return NULL;
}

static void prep_drop(struct mysql_conn *c, uint32_t id)
{
	struct prep *p = prep_find(c, id);

	if (p) {
		text_put(p->text);
		*p = c->preps[--c->nprep];
	}
}

static void prep_add(struct mysql_conn *c, uint32_t id, struct mtext *t, uint32_t nparams)
{
	struct prep *p;

	prep_drop(c, id);
	if (c->nprep == MYSQL_MAX_PREPARED)
		prep_drop(c, c->preps[0].id); /* bounded: the oldest goes */
	if (c->nprep == c->prep_cap) {
		size_t ncap = c->prep_cap ? c->prep_cap * 2 : 4;
		struct prep *np = realloc(c->preps, ncap * sizeof(*np));

		if (!np)
			return;
		c->preps = np;
		c->prep_cap = ncap;
	}
	p = &c->preps[c->nprep++];
	p->id = id;
	p->text = text_get(t);
	p->nparams = nparams;
}

/* ---- statements ------------------------------------------------------------- */

/* Report statement i of p with its outcome. */
static void report(struct mysql_conn *c, struct mpend *p, size_t i, enum dbw_stmt_status status,
		   const char *tag, bool has_rows, uint64_t rows, const char *sqlstate,
		   uint64_t end_ns)
{
	struct dbw_stmt st = {
		.status = status,
		.has_rows = has_rows,
		.rows = rows,
		.start_ns = p->start_ns,
		.end_ns = end_ns,
		.pid = p->pid,
		.req_off = p->req_off,
		.mode = p->execute ? DBW_MODE_EXTENDED : DBW_MODE_SIMPLE,
		.nparams = p->nparams,
	};
	char idbuf[16], use[96];

	if (p->com == MYSQL_COM_INIT_DB) {
		snprintf(use, sizeof(use), "USE `%s`", p->db);
		st.text = use;
		st.text_len = strlen(use);
		st.text_full_len = st.text_len;
	} else if (p->text) {
		size_t off = i < p->nstmts ? p->spans[i].off : 0;
		size_t len = i < p->nstmts ? p->spans[i].len : p->text->len;

		st.text = p->text->data + off;
		st.text_len = len;
		st.truncated = p->text->truncated && i + 1 >= p->nstmts;
		st.text_full_len = p->nstmts > 1 ? len : p->text->full_len;
	} else {
		st.text = "";
	}
	if (p->execute) {
		snprintf(idbuf, sizeof(idbuf), "%u", p->stmt_id);
		st.prepared_name = idbuf;
	}
	snprintf(st.tag, sizeof(st.tag), "%s", tag ? tag : "");
	if (sqlstate)
		snprintf(st.sqlstate, sizeof(st.sqlstate), "%s", sqlstate);
	c->ops->statement(c->ctx, &st);
}

static bool reports(const struct mpend *p)
{
	return p->com == MYSQL_COM_QUERY || p->com == MYSQL_COM_STMT_EXECUTE ||
	       p->com == MYSQL_COM_INIT_DB;
}

static void pend_pop(struct mysql_conn *c)
{
	struct mpend *p = &c->q[c->qhead];

	text_put(p->text);
	p->text = NULL;
	c->qhead = (c->qhead + 1) % c->qcap;
	c->qlen--;
}

/* A USE statement's database name ("USE `shop`", "use shop"), or "". */
static void use_target(const char *s, size_t n, char *db, size_t cap)
{
	size_t i = 0, k = 0;

	db[0] = 0;
	while (i < n && isspace((unsigned char)s[i]))
		i++;
	if (n - i < 4 || strncasecmp(s + i, "use", 3) || !isspace((unsigned char)s[i + 3]))
		return;
	i += 3;
	while (i < n && isspace((unsigned char)s[i]))
		i++;
	if (i < n && s[i] == '`')
		i++;
	while (i < n && k + 1 < cap && (isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '$'))
		db[k++] = s[i++];
	db[k] = 0;
}

/* ---- commands (client -> server) ---------------------------------------------- */

static struct mpend *pend_push(struct mysql_conn *c, uint8_t com, uint64_t ts, uint64_t off)
{
	struct mpend *p;

	if (c->qlen == MYSQL_MAX_PENDING) {
		unparsed(c, "too_many_pending");
		return NULL;
	}
	if (c->qlen == c->qcap) {
		size_t ncap = c->qcap ? c->qcap * 2 : 4;
		struct mpend *nq = malloc(ncap * sizeof(*nq));

		if (!nq) {
			unparsed(c, "out_of_memory");
			return NULL;
		}
		for (size_t i = 0; i < c->qlen; i++)
			nq[i] = c->q[(c->qhead + i) % c->qcap];
		free(c->q);
		c->q = nq;
		c->qcap = ncap;
		c->qhead = 0;
	}
	p = &c->q[(c->qhead + c->qlen) % c->qcap];
	memset(p, 0, offsetof(struct mpend, spans));
	p->nstmts = p->cur = 0;
	p->stmt_id = p->nparams = 0;
	p->execute = false;
	p->rs = R_FIRST;
	p->left = p->rows = 0;
	p->db[0] = 0;
	p->com = com;
	p->start_ns = ts;
	p->req_off = off;
	p->pid = c->pid;
	c->qlen++;
	return p;
}

static void on_command(struct mysql_conn *c, struct mstream *s)
{
	const uint8_t *b = s->buf;
	uint32_t n = s->kept;
	struct mpend *p;
	uint8_t com;

	if (s->cont || !n)
		return;
	c->resumed = false; /* answers from now on are to commands seen here */
	if (s->seq0 != 0)
		return; /* LOCAL INFILE data, or another packet of a command */
	com = b[0];
	switch (com) {
	case MYSQL_COM_QUIT:
	case MYSQL_COM_STMT_SEND_LONG_DATA:
		return; /* no answer */
	case MYSQL_COM_STMT_CLOSE:
		if (n >= 5)
			prep_drop(c, b[1] | b[2] << 8 | b[3] << 16 | (uint32_t)b[4] << 24);
		return;
	case MYSQL_COM_SET_OPTION:
		if (n >= 3)
			c->multi = (b[1] | b[2] << 8) == 0;
		break;
	case MYSQL_COM_CHANGE_USER:
		if (n > 1)
			snprintf(c->user, sizeof(c->user), "%.*s",
				 (int)strnlen((const char *)b + 1, n - 1), b + 1);
		c->phase = PH_AUTH;
		return;
	}
	p = pend_push(c, com, s->ts, s->pkt_off);
	if (!p)
		return;
	switch (com) {
	case MYSQL_COM_QUERY:
	case MYSQL_COM_STMT_PREPARE:
		p->text = text_new(b + 1, n - 1, s->full - 1, s->truncated);
		if (!p->text)
			break;
		p->text->req_off = p->req_off;
		if (com == MYSQL_COM_QUERY && c->multi) {
			p->nstmts =
				mysql_split(p->text->data, p->text->len, p->spans, MYSQL_MAX_STMTS);
			if (p->nstmts > MYSQL_MAX_STMTS)
				p->nstmts = MYSQL_MAX_STMTS;
		}
		if (!p->nstmts) {
			p->nstmts = 1;
			p->spans[0].off = 0;
			p->spans[0].len = p->text->len;
		}
		break;
	case MYSQL_COM_STMT_EXECUTE:
	case MYSQL_COM_STMT_BULK_EXECUTE:
		p->com = MYSQL_COM_STMT_EXECUTE;
		p->execute = true;
		if (n >= 5) {
			struct prep *pr;

			p->stmt_id = b[1] | b[2] << 8 | b[3] << 16 | (uint32_t)b[4] << 24;
			pr = prep_find(c, p->stmt_id);
			if (pr) {
				p->text = text_get(pr->text);
				p->nparams = pr->nparams;
				/* the kernel judged the text at its prepare: its verdict is there */
				p->req_off = pr->text->req_off;
			}
		}
		if (p->text) {
			p->nstmts = 1;
			p->spans[0].off = 0;
			p->spans[0].len = p->text->len;
		}
		break;
	case MYSQL_COM_INIT_DB:
		snprintf(p->db, sizeof(p->db), "%.*s", (int)strnlen((const char *)b + 1, n - 1),
			 b + 1);
		break;
	}
}

/* ---- answers (server -> client) ------------------------------------------------- */

static bool deprecate_eof(const struct mysql_conn *c)
{
	return c->caps & c->server_caps & MYSQL_CLIENT_DEPRECATE_EOF;
}

static void session(struct mysql_conn *c)
{
	if (c->ops->session)
		c->ops->session(c->ctx, c->user, c->db, "");
}

/* The head command's statement p->cur ended ok (more: another result follows). */
static void stmt_ok(struct mysql_conn *c, struct mpend *p, const char *tag, uint64_t rows,
		    bool more, uint64_t ts)
{
	if (reports(p)) {
		report(c, p, p->cur, DBW_STMT_OK, tag, true, rows, NULL, ts);
		if (p->db[0] || p->text) {
			char db[64] = "";

			if (p->com == MYSQL_COM_INIT_DB)
				snprintf(db, sizeof(db), "%s", p->db);
			else if (p->text && p->cur < p->nstmts)
				use_target(p->text->data + p->spans[p->cur].off,
					   p->spans[p->cur].len, db, sizeof(db));
			if (db[0]) {
				snprintf(c->db, sizeof(c->db), "%s", db);
				session(c);
			}
		}
	}
	p->rs = R_FIRST;
	p->rows = 0;
	if (more && p->cur + 1 < p->nstmts) {
		p->cur++;
		return;
	}
	if (more) {
		/* more results than statements (a CALL): they belong to the last one */
		return;
	}
	pend_pop(c);
}

static void stmt_err(struct mysql_conn *c, struct mpend *p, const uint8_t *b, size_t n, uint64_t ts)
{
	struct mysql_err e;
	char tag[32];

	if (mysql_parse_err(b, n, &e) != DBW_PARSE_OK) {
		memset(&e, 0, sizeof(e));
		snprintf(e.sqlstate, sizeof(e.sqlstate), "HY000");
	}
	snprintf(tag, sizeof(tag), "ERR %u", e.code);
	if (reports(p) || p->com == MYSQL_COM_STMT_PREPARE) {
		report(c, p, p->cur, DBW_STMT_ERROR, tag, false, 0, e.sqlstate, ts);
		/* the server stops a multi-statement text at its first error */
		for (size_t i = p->cur + 1; i < p->nstmts && p->com == MYSQL_COM_QUERY; i++)
			report(c, p, i, DBW_STMT_SKIPPED, "", false, 0, NULL, ts);
	}
	pend_pop(c);
}

static void on_answer(struct mysql_conn *c, struct mstream *s)
{
	const uint8_t *b = s->buf;
	uint32_t n = s->kept;
	uint64_t full = s->full;
	struct mpend *p;
	struct mysql_ok ok;

	if (s->cont)
		return; /* the rest of a long row */
	if (!c->qlen) {
		/* an answer to nothing we saw: after a restart, to the command the
		 * previous daemon read (one at most: the protocol does not pipeline) */
		if (c->resumed && c->ops->lost)
			c->ops->lost(c->ctx, 0);
		c->resumed = false;
		return;
	}
	p = &c->q[c->qhead];
	if (!n) {
		if (p->rs == R_ROWS)
			p->rows++;
		return;
	}
	switch (p->rs) {
	case R_FIRST:
		if (b[0] == 0xff) {
			stmt_err(c, p, b, n, s->ts);
			return;
		}
		if (b[0] == 0x00 && p->com == MYSQL_COM_STMT_PREPARE) {
			struct mysql_prepare_ok po;

			if (mysql_parse_prepare_ok(b, n, &po) != DBW_PARSE_OK) {
				unparsed(c, "invalid_prepare_ok");
				return;
			}
			if (p->text)
				prep_add(c, po.stmt_id, p->text, po.nparams);
			p->left = po.nparams + po.ncols;
			if (!deprecate_eof(c))
				p->left += (po.nparams > 0) + (po.ncols > 0);
			if (!p->left) {
				pend_pop(c);
				return;
			}
			p->rs = R_PREP_DEFS;
			return;
		}
		if (b[0] == 0x00 || mysql_is_eof(b, full)) {
			if (mysql_parse_ok(b, n, &ok) != DBW_PARSE_OK)
				memset(&ok, 0, sizeof(ok));
			stmt_ok(c, p, "OK", ok.affected_rows,
				ok.status & MYSQL_SERVER_MORE_RESULTS_EXISTS, s->ts);
			return;
		}
		if (b[0] == 0xfb)
			return; /* LOCAL INFILE: the client sends the file, then OK/ERR */
		{
			const uint8_t *q = b;
			uint64_t ncols;

			if (mysql_lenenc(&q, b + n, &ncols, NULL) != DBW_PARSE_OK || !ncols) {
				unparsed(c, "invalid_result_set");
				return;
			}
			p->left = ncols;
			p->rows = 0;
			p->rs = R_COLDEFS;
			/*
			 * MariaDB's metadata cache (MARIADB_CLIENT_CACHE_METADATA): a
			 * byte after the count says whether the column definitions
			 * follow; 0: they do not, the client has them already.
			 */
			if (q < b + n && !*q)
				p->rs = deprecate_eof(c) ? R_ROWS : R_COLEOF;
		}
		return;
	case R_PREP_DEFS:
		if (!--p->left)
			pend_pop(c);
		return;
	case R_COLDEFS:
		if (--p->left)
			return;
		p->rs = deprecate_eof(c) ? R_ROWS : R_COLEOF;
		return;
	case R_COLEOF:
		p->rs = R_ROWS;
		return;
	case R_ROWS:
		if (b[0] == 0xfe && full < MYSQL_MAX_PAYLOAD && (deprecate_eof(c) || full < 9)) {
			uint16_t status = 0;

			if (full < 9 && !deprecate_eof(c))
				status = mysql_eof_status(b, n);
			else if (mysql_parse_ok(b, n, &ok) == DBW_PARSE_OK)
				status = ok.status;
			stmt_ok(c, p, "ROWS", p->rows, status & MYSQL_SERVER_MORE_RESULTS_EXISTS,
				s->ts);
			return;
		}
		if (b[0] == 0xff) {
			stmt_err(c, p, b, n, s->ts);
			return;
		}
		p->rows++;
		return;
	}
}

/* ---- connection phase ----------------------------------------------------------- */

static void on_packet(struct mysql_conn *c, int dir, struct mstream *s)
{
	if (dir == DBW_DIR_TO_CLIENT) {
		switch (c->phase) {
		case PH_GREETING: {
			struct mysql_greeting g;

			if (mysql_parse_greeting(s->buf, s->kept, &g) != DBW_PARSE_OK) {
				/* an ERR instead of a greeting (too many connections): no session */
				if (s->kept && s->buf[0] == 0xff)
					return;
				unparsed(c, "invalid_greeting");
				return;
			}
			c->server_caps = g.caps;
			c->phase = PH_LOGIN;
			return;
		}
		case PH_LOGIN:
			return;
		case PH_AUTH:
			if (!s->kept || s->cont)
				return;
			if (s->buf[0] == 0x00) {
				c->phase = PH_COMMAND;
				session(c);
			} else if (s->buf[0] == 0xff) {
				c->phase =
					PH_COMMAND; /* refused: the server closes the connection */
			}
			return; /* auth switch, more data: the exchange goes on */
		case PH_COMMAND:
			on_answer(c, s);
			return;
		}
		return;
	}
	switch (c->phase) {
	case PH_GREETING:
		if (s->seq0 != 2) {
			unparsed(c, "client_spoke_first");
			return;
		}
		/* a TLS library's plaintext: the greeting and SSLRequest were before it */
		c->server_caps = ~0u;
		/* fall through */
	case PH_LOGIN: {
		struct mysql_login l;

		if (mysql_parse_login(s->buf, s->kept, &l) != DBW_PARSE_OK) {
			unparsed(c, "invalid_handshake_response");
			return;
		}
		if (l.ssl_request && c->phase == PH_LOGIN) {
			/* TLS from here on: the plaintext, if any, comes from the TLS probes */
			c->dead = true;
			if (c->ops->encrypted)
				c->ops->encrypted(c->ctx);
			return;
		}
		c->caps = l.caps;
		c->multi = !!(l.caps & c->server_caps & MYSQL_CLIENT_MULTI_STATEMENTS);
		snprintf(c->user, sizeof(c->user), "%s", l.user);
		snprintf(c->db, sizeof(c->db), "%s", l.database);
		if (l.caps & c->server_caps &
		    (MYSQL_CLIENT_COMPRESS | MYSQL_CLIENT_ZSTD_COMPRESSION)) {
			unparsed(c, "compressed_protocol");
			return;
		}
		c->phase = PH_AUTH;
		return;
	}
	case PH_AUTH:
		return; /* auth data */
	case PH_COMMAND:
		on_command(c, s);
		return;
	}
}

/* ---- reassembly ----------------------------------------------------------------- */

void mysql_conn_feed(struct mysql_conn *c, int dir, const uint8_t *buf, size_t len, uint64_t ts_ns,
		     uint32_t pid)
{
	struct mstream *s;

	if (c->dead || (dir != DBW_DIR_TO_SERVER && dir != DBW_DIR_TO_CLIENT))
		return;
	s = &c->s[dir];
	if (dir == DBW_DIR_TO_SERVER && pid)
		c->pid = pid;
	while (len && !c->dead) {
		if (!s->in_body) {
			size_t k = 4 - s->hlen < len ? 4 - s->hlen : len;
			struct mysql_hdr h;

			if (!s->hlen && !s->cont) {
				s->pkt_off = s->pos;
				s->ts = ts_ns;
			}
			memcpy(s->hdr + s->hlen, buf, k);
			s->hlen += k;
			s->pos += k;
			buf += k;
			len -= k;
			if (s->hlen < 4)
				break;
			mysql_parse_hdr(s->hdr, 4, &h);
			s->hlen = 0;
			s->len = h.len;
			s->seq = h.seq;
			s->have = 0;
			if (!s->cont) {
				uint32_t cap = dir == DBW_DIR_TO_SERVER ? DBW_MAX_MSG : SERVER_KEEP;

				s->seq0 = h.seq;
				s->kept = 0;
				s->full = 0;
				s->truncated = false;
				if (!s->buf) {
					s->buf = malloc(cap);
					if (!s->buf) {
						unparsed(c, "out_of_memory");
						return;
					}
					s->cap = cap;
				}
			}
			s->full += h.len;
			s->in_body = true;
		}
		if (s->in_body) {
			size_t k = s->len - s->have < len ? s->len - s->have : len;
			size_t room = s->cap - s->kept;
			size_t keep = k < room ? k : room;

			memcpy(s->buf + s->kept, buf, keep);
			s->kept += keep;
			if (keep < k && dir == DBW_DIR_TO_SERVER)
				s->truncated = true;
			s->have += k;
			s->pos += k;
			buf += k;
			len -= k;
			if (s->have < s->len)
				break;
			s->in_body = false;
			if (s->len == MYSQL_MAX_PAYLOAD) {
				s->cont = true; /* the payload goes on in the next packet */
				continue;
			}
			s->cont = false;
			on_packet(c, dir, s);
		}
	}
}

void mysql_conn_gap(struct mysql_conn *c, int dir, uint64_t len, uint64_t ts_ns)
{
	struct mstream *s;

	if (c->dead || (dir != DBW_DIR_TO_SERVER && dir != DBW_DIR_TO_CLIENT))
		return;
	s = &c->s[dir];
	if (s->in_body && len <= s->len - s->have) {
		/* inside a packet whose length is known: its tail was not captured */
		s->have += len;
		s->pos += len;
		s->truncated = true;
		if (s->have == s->len) {
			s->in_body = false;
			if (s->len == MYSQL_MAX_PAYLOAD) {
				s->cont = true;
				return;
			}
			s->cont = false;
			on_packet(c, dir, s);
		}
		return;
	}
	unparsed(c, "gap");
}

size_t mysql_conn_pending(const struct mysql_conn *c)
{
	return c->qlen;
}

void mysql_conn_resume(struct mysql_conn *c)
{
	/* the handshake is behind: commands from here (capabilities unknown: the defaults) */
	c->phase = PH_COMMAND;
	c->resumed = true;
}

void mysql_conn_resume_at(struct mysql_conn *c, int dir, uint64_t off)
{
	struct mstream *s = &c->s[dir ? 1 : 0];

	if (!s->pos && !s->hlen && !s->in_body)
		s->pos = s->pkt_off = off;
	/* the server's stream from its first byte: the handshake is ahead */
	if (dir == DBW_DIR_TO_CLIENT && !off)
		c->phase = PH_GREETING;
}

void mysql_conn_close(struct mysql_conn *c, uint64_t ts_ns)
{
	while (c->qlen) {
		struct mpend *p = &c->q[c->qhead];

		if (reports(p))
			for (size_t i = p->cur; i < (p->nstmts ? p->nstmts : 1); i++)
				report(c, p, i, DBW_STMT_UNKNOWN, "", false, 0, NULL, 0);
		pend_pop(c);
	}
}
