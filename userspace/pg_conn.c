// SPDX-License-Identifier: GPL-2.0-only
/*
 * PostgreSQL connection stitcher: per-direction reassembly with hard caps,
 * then requests matched to responses in protocol order.
 *
 * The server answers strictly in the order it received requests, so one
 * FIFO of pending requests is enough: each backend message completes (or
 * advances) the request at its head. A simple Query becomes one entry per
 * statement plus an end marker matched by ReadyForQuery; the extended
 * protocol gets one entry per Parse/Bind/Describe/Execute/Close/Sync.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pg_query.h>

#include "dbwarden_abi.h"
#include "pg_conn.h"
#include "pg_proto.h"

#define PG_MAX_PREPARED 1024 /* named statements remembered per connection */
#define PG_MAX_PORTALS	64

/* A statement text shared by the prepared-statement table and pending Executes. */
struct pg_text {
	unsigned ref;
	size_t len;
	uint64_t full_len;
	bool truncated;
	uint32_t ntypes;
	uint32_t types[DBW_MAX_PARAM_TYPES];
	uint64_t req_off; /* client stream offset of the Query/Parse carrying it */
	char data[]; /* len bytes + NUL */
};

enum pend_kind {
	PK_STMT, /* one statement of a simple Query: CommandComplete/Error */
	PK_QEND, /* end of a simple Query or FunctionCall: ReadyForQuery */
	PK_PARSE, /* ParseComplete */
	PK_BIND, /* BindComplete */
	PK_DESCRIBE, /* RowDescription / NoData */
	PK_EXECUTE, /* CommandComplete / PortalSuspended / EmptyQuery / Error */
	PK_CLOSE, /* CloseComplete */
	PK_SYNC, /* ReadyForQuery */
	PK_FUNC, /* FunctionCallResponse */
};

struct pend {
	enum pend_kind kind;
	struct pg_text *text; /* STMT, PARSE, BIND, EXECUTE; may be NULL */
	char *name; /* EXECUTE: the prepared statement's name */
	uint32_t nparams;
	uint32_t pid;
	uint64_t start_ns;
	uint64_t rows; /* DataRows seen */
	bool copy;
};

struct prep {
	char *name;
	struct pg_text *text;
	uint64_t seq; /* insertion order, for eviction */
};

struct portal {
	char *name;
	struct pg_text *text;
	char *stmt;
	uint32_t nparams;
};

struct pg_stream {
	uint8_t hdr[5];
	uint32_t hlen;
	bool in_body;
	struct pg_hdr h;
	uint32_t have; /* body bytes seen */
	bool store; /* this message's body is needed */
	bool truncated; /* stored body is a prefix */
	uint8_t *buf;
	uint32_t kept;
	uint32_t cap;
	uint64_t pos; /* stream bytes consumed (gaps included) */
	uint64_t msg_off; /* stream offset of the current message's first byte */
};

struct pg_conn {
	const struct dbw_stitch_ops *ops;
	void *ctx;
	struct pg_stream s[2];
	bool startup; /* client in the startup phase */
	bool ssl_reply; /* the server's next byte answers SSLRequest/GSSENCRequest */
	bool dead; /* encrypted or unparsed: nothing more is parsed */
	bool q_error; /* an error ended the current simple Query */
	bool resumed; /* read from the middle: answers may precede any request seen */
	struct pend *q;
	size_t qhead, qlen, qcap;
	struct prep *preps; /* grown on demand: most connections prepare nothing */
	size_t nprep, prep_cap;
	uint64_t prep_seq;
	struct portal *portals;
	size_t nportal, portal_cap;
	size_t text_bytes; /* bytes held in pg_text objects */
	uint64_t req_off; /* stream offset of the client message being dispatched */
};

/* ---- texts ---------------------------------------------------------------- */

static struct pg_text *text_new(struct pg_conn *c, const char *s, size_t len, uint64_t full_len,
				bool truncated)
{
	struct pg_text *t = malloc(sizeof(*t) + len + 1);

	if (!t)
		return NULL;
	t->ref = 1;
	t->len = len;
	t->full_len = full_len;
	t->truncated = truncated;
	t->ntypes = 0;
	t->req_off = c->req_off;
	memcpy(t->data, s, len);
	t->data[len] = 0;
	c->text_bytes += sizeof(*t) + len + 1;
	return t;
}

static struct pg_text *text_get(struct pg_text *t)
{
	if (t)
		t->ref++;
	return t;
}

static void text_put(struct pg_conn *c, struct pg_text *t)
{
	if (t && !--t->ref) {
		c->text_bytes -= sizeof(*t) + t->len + 1;
		free(t);
	}
}

/* ---- prepared statements and portals -------------------------------------- */

static struct prep *prep_find(struct pg_conn *c, const char *name)
{
	for (size_t i = 0; i < c->nprep; i++)
		if (!strcmp(c->preps[i].name, name))
			return &c->preps[i];
	return NULL;
}

static void prep_drop(struct pg_conn *c, struct prep *p)
{
	free(p->name);
	text_put(c, p->text);
	*p = c->preps[--c->nprep];
}

/* Remember name -> text (replacing); past the cap the oldest entry goes. */
static void prep_set(struct pg_conn *c, const char *name, struct pg_text *t)
{
	struct prep *p = prep_find(c, name);

	if (p) {
		text_put(c, p->text);
		p->text = text_get(t);
		p->seq = ++c->prep_seq;
		return;
	}
	if (c->nprep == PG_MAX_PREPARED) {
		struct prep *old = &c->preps[0];

		for (size_t i = 1; i < c->nprep; i++)
			if (c->preps[i].seq < old->seq)
				old = &c->preps[i];
		prep_drop(c, old);
	}
	if (c->nprep == c->prep_cap) {
		size_t ncap = c->prep_cap ? c->prep_cap * 2 : 4;
		struct prep *np = realloc(c->preps, ncap * sizeof(*np));

		if (!np)
			return;
		c->preps = np;
		c->prep_cap = ncap;
	}
	p = &c->preps[c->nprep];
	p->name = strdup(name);
	if (!p->name)
		return;
	p->text = text_get(t);
	p->seq = ++c->prep_seq;
	c->nprep++;
}

static struct portal *portal_find(struct pg_conn *c, const char *name)
{
	for (size_t i = 0; i < c->nportal; i++)
		if (!strcmp(c->portals[i].name, name))
			return &c->portals[i];
	return NULL;
}

static void portal_drop(struct pg_conn *c, struct portal *p)
{
	free(p->name);
	free(p->stmt);
	text_put(c, p->text);
	*p = c->portals[--c->nportal];
}

static void portal_set(struct pg_conn *c, const char *name, const char *stmt, struct pg_text *t,
		       uint32_t nparams)
{
	struct portal *p = portal_find(c, name);

	if (p)
		portal_drop(c, p);
	if (c->nportal == PG_MAX_PORTALS)
		portal_drop(c, &c->portals[0]);
	if (c->nportal == c->portal_cap) {
		size_t ncap = c->portal_cap ? c->portal_cap * 2 : 2;
		struct portal *np = realloc(c->portals, ncap * sizeof(*np));

		if (!np)
			return;
		c->portals = np;
		c->portal_cap = ncap;
	}
	p = &c->portals[c->nportal];
	p->name = strdup(name);
	p->stmt = strdup(stmt);
	if (!p->name || !p->stmt) {
		free(p->name);
		free(p->stmt);
		return;
	}
	p->text = text_get(t);
	p->nparams = nparams;
	c->nportal++;
}

/* ---- pending requests ----------------------------------------------------- */

static struct pend *q_at(struct pg_conn *c, size_t i)
{
	return &c->q[(c->qhead + i) % c->qcap];
}

static struct pend *q_head(struct pg_conn *c)
{
	return c->qlen ? q_at(c, 0) : NULL;
}

static void unparsed(struct pg_conn *c, const char *reason);

static struct pend *q_push(struct pg_conn *c, enum pend_kind kind, uint64_t ts, uint32_t pid)
{
	struct pend *p;

	if (c->qlen == c->qcap) {
		size_t ncap = c->qcap ? c->qcap * 2 : 16;
		struct pend *nq;

		if (ncap > PG_MAX_PENDING || !(nq = malloc(ncap * sizeof(*nq)))) {
			unparsed(c, "too_many_pending");
			return NULL;
		}
		for (size_t i = 0; i < c->qlen; i++)
			nq[i] = *q_at(c, i);
		free(c->q);
		c->q = nq;
		c->qcap = ncap;
		c->qhead = 0;
	}
	p = q_at(c, c->qlen++);
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->start_ns = ts;
	p->pid = pid;
	return p;
}

static void q_pop(struct pg_conn *c)
{
	struct pend *p = q_head(c);

	text_put(c, p->text);
	free(p->name);
	c->qhead = (c->qhead + 1) % c->qcap;
	c->qlen--;
}

/* ---- statements out ------------------------------------------------------- */

static void emit(struct pg_conn *c, struct pend *p, enum dbw_stmt_status status, const char *tag,
		 const struct pg_error *err, uint64_t end_ns)
{
	static const char empty[] = "";
	struct dbw_stmt st;
	uint64_t rows;

	memset(&st, 0, sizeof(st));
	if (p->text) {
		st.text = p->text->data;
		st.text_len = p->text->len;
		st.truncated = p->text->truncated;
		st.text_full_len = p->text->full_len;
		st.nparam_types = p->text->ntypes;
		memcpy(st.param_types, p->text->types, sizeof(uint32_t) * p->text->ntypes);
		st.req_off = p->text->req_off;
	} else {
		st.text = empty;
	}
	if (p->kind == PK_STMT) {
		st.mode = DBW_MODE_SIMPLE;
	} else {
		st.mode = DBW_MODE_EXTENDED;
		st.prepared_name = p->name ? p->name : empty;
		st.nparams = p->nparams;
	}
	st.is_copy = p->copy;
	st.status = status;
	if (tag) {
		snprintf(st.tag, sizeof(st.tag), "%s", tag);
		if (pg_tag_rows(tag, &rows)) {
			st.has_rows = true;
			st.rows = rows;
		}
	}
	if (!st.has_rows && p->rows) {
		st.has_rows = true;
		st.rows = p->rows;
	}
	if (err) {
		snprintf(st.sqlstate, sizeof(st.sqlstate), "%s", err->code);
		st.error_message = err->message;
		st.error_detail = err->detail;
	}
	st.start_ns = p->start_ns;
	st.end_ns = end_ns;
	st.pid = p->pid;
	c->ops->statement(c->ctx, &st);
}

static bool emits(const struct pend *p)
{
	return p->kind == PK_STMT || p->kind == PK_EXECUTE;
}

/* ---- frontend messages ---------------------------------------------------- */

/* Is s[0..len) only whitespace, semicolons and comments (no statement)? */
static bool blank_sql(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		if (strchr(" \t\r\n\f\v;", s[i])) {
			i++;
		} else if (s[i] == '-' && i + 1 < len && s[i + 1] == '-') {
			while (i < len && s[i] != '\n')
				i++;
		} else if (s[i] == '/' && i + 1 < len && s[i + 1] == '*') {
			const char *e = memmem(s + i + 2, len - i - 2, "*/", 2);

			if (!e)
				return true;
			i = e - s + 2;
		} else {
			return false;
		}
	}
	return true;
}

static void push_stmt(struct pg_conn *c, const char *s, size_t len, uint64_t full_len,
		      bool truncated, uint64_t ts, uint32_t pid)
{
	struct pend *p;

	/* the scanner's statement starts right after the previous ';' */
	while (len && strchr(" \t\r\n\f\v", *s)) {
		s++;
		len--;
		full_len--;
	}
	if (blank_sql(s, len) && !truncated)
		return;
	p = q_push(c, PK_STMT, ts, pid);
	if (p)
		p->text = text_new(c, s, len, full_len, truncated);
}

/*
 * A simple Query: one pending entry per statement (the server answers each
 * with its own CommandComplete), then the end marker for ReadyForQuery.
 * Splitting uses PostgreSQL's own scanner; a single statement (the common
 * case: no ';' before trailing blanks) skips it.
 *
 * A Query cut by the capture limit ends mid-statement, where the scanner
 * reports less than there is: nothing past an unterminated literal (so
 * only the part before it is split), and no last statement inside an open
 * parenthesis. Whatever follows the last statement it reports is then one
 * more statement, the cut one: merged into the previous one, it would hide
 * behind that statement's verb and take its answer.
 */
static void on_query(struct pg_conn *c, const uint8_t *body, uint32_t kept, uint32_t full,
		     bool truncated, uint64_t ts, uint32_t pid)
{
	const char *q = (const char *)body;
	size_t len = strnlen(q, kept), scanned = len, end = 0;
	const char *semi = memchr(q, ';', len);
	PgQuerySplitResult r;
	char *z;

	/* full counts the body: the text and its NUL */
	if (!truncated && len < kept)
		full = len;
	else if (truncated && full)
		full--;
	if (!semi || blank_sql(semi, len - (semi - q))) {
		push_stmt(c, q, len, full, truncated, ts, pid);
		q_push(c, PK_QEND, ts, pid);
		return;
	}
	z = strndup(q, len);
	if (!z)
		return;
	r = pg_query_split_with_scanner(z);
	if (r.error && truncated && r.error->cursorpos > 1) {
		/* cursorpos counts characters: never past the failing byte */
		scanned =
			(size_t)r.error->cursorpos - 1 < len ? (size_t)r.error->cursorpos - 1 : len;
		pg_query_free_split_result(r);
		z[scanned] = 0;
		r = pg_query_split_with_scanner(z);
	}
	if (r.error || r.n_stmts <= 0) {
		push_stmt(c, q, len, full, truncated, ts, pid);
		end = len;
	}
	for (int i = 0; !r.error && i < r.n_stmts; i++) {
		size_t off = r.stmts[i]->stmt_location, n = r.stmts[i]->stmt_len;

		if (off > scanned)
			break;
		if (!n || off + n > scanned)
			n = scanned - off; /* the scanner gives 0 for "to the end" */
		/* the last one takes the terminator and blanks, or runs on past a cut */
		if (i == r.n_stmts - 1 && blank_sql(q + off + n, scanned - off - n))
			n = len - off;
		push_stmt(c, q + off, n, off + n == len && truncated ? full - off : n,
			  off + n == len && truncated, ts, pid);
		end = off + n;
	}
	while (end < len && strchr(" \t\r\n\f\v;", q[end]))
		end++;
	if (end < len)
		push_stmt(c, q + end, len - end, truncated ? full - end : len - end, truncated, ts,
			  pid);
	pg_query_free_split_result(r);
	free(z);
	q_push(c, PK_QEND, ts, pid);
}

static void on_parse(struct pg_conn *c, const uint8_t *body, uint32_t kept, uint32_t full,
		     bool truncated, uint64_t ts, uint32_t pid)
{
	struct pg_parse_msg m;
	struct pg_text *t;
	struct pend *p;

	if (pg_parse_parse(body, kept, &m) != DBW_PARSE_OK) {
		unparsed(c, "invalid_parse_message");
		return;
	}
	t = text_new(c, m.query, strnlen(m.query, m.query_len), 0, truncated);
	if (!t)
		return;
	/* cut: the text ran on to its NUL and the 2-byte type count at least */
	t->full_len = truncated && full >= strlen(m.name) + 4 ? full - strlen(m.name) - 4 : t->len;
	for (uint16_t i = 0; i < m.types_avail && i < DBW_MAX_PARAM_TYPES; i++) {
		const uint8_t *o = m.types + 4 * i;

		t->types[t->ntypes++] = (uint32_t)o[0] << 24 | o[1] << 16 | o[2] << 8 | o[3];
	}
	prep_set(c, m.name, t);
	p = q_push(c, PK_PARSE, ts, pid);
	if (p) {
		p->text = text_get(t);
		p->name = strdup(m.name);
	}
	text_put(c, t);
}

static void on_bind(struct pg_conn *c, const uint8_t *body, uint32_t kept, uint64_t ts,
		    uint32_t pid)
{
	struct pg_bind_msg m;
	struct prep *pr;
	struct pend *p;

	if (pg_parse_bind(body, kept, &m) != DBW_PARSE_OK) {
		unparsed(c, "invalid_bind_message");
		return;
	}
	pr = prep_find(c, m.stmt);
	portal_set(c, m.portal, m.stmt, pr ? pr->text : NULL, m.nparams);
	p = q_push(c, PK_BIND, ts, pid);
	if (p) {
		p->text = text_get(pr ? pr->text : NULL);
		p->name = strdup(m.stmt);
		p->nparams = m.nparams;
	}
}

static void on_execute(struct pg_conn *c, const uint8_t *body, uint32_t kept, uint64_t ts,
		       uint32_t pid)
{
	struct portal *po;
	const char *portal;
	uint32_t maxrows;
	struct pend *p;

	if (pg_parse_execute(body, kept, &portal, &maxrows) != DBW_PARSE_OK) {
		unparsed(c, "invalid_execute_message");
		return;
	}
	po = portal_find(c, portal);
	p = q_push(c, PK_EXECUTE, ts, pid);
	if (!p)
		return;
	if (po) {
		p->text = text_get(po->text);
		p->name = strdup(po->stmt);
		p->nparams = po->nparams;
	}
}

static void on_close_msg(struct pg_conn *c, const uint8_t *body, uint32_t kept, uint64_t ts,
			 uint32_t pid)
{
	const char *name;
	char kind;

	if (pg_parse_target(body, kept, &kind, &name) != DBW_PARSE_OK) {
		unparsed(c, "invalid_close_message");
		return;
	}
	if (kind == 'S') {
		struct prep *p = prep_find(c, name);

		if (p)
			prep_drop(c, p);
	} else {
		struct portal *p = portal_find(c, name);

		if (p)
			portal_drop(c, p);
	}
	q_push(c, PK_CLOSE, ts, pid);
}

static void on_startup(struct pg_conn *c, const uint8_t *body, uint32_t kept)
{
	struct pg_startup s;

	if (pg_parse_startup(body, kept, &s) != DBW_PARSE_OK) {
		unparsed(c, "invalid_startup");
		return;
	}
	switch (s.code) {
	case PG_SSL_REQUEST:
	case PG_GSSENC_REQUEST:
		c->ssl_reply = true;
		break;
	case PG_CANCEL_REQUEST:
		/* a separate connection that only cancels another one's query */
		c->startup = false;
		break;
	default:
		c->startup = false;
		if (c->ops->session)
			c->ops->session(c->ctx, s.user ? s.user : "", s.database ? s.database : "",
					s.application_name ? s.application_name : "");
	}
}

/* A message's kept body; an empty one may have no buffer behind it. */
static const uint8_t *body_of(const struct pg_stream *s)
{
	return s->buf ? s->buf : (const uint8_t *)"";
}

static void frontend_msg(struct pg_conn *c, struct pg_stream *s, uint64_t ts, uint32_t pid)
{
	const uint8_t *body = body_of(s);
	uint32_t full = s->h.body_len;

	if (!s->h.type) {
		on_startup(c, body, s->kept);
		return;
	}
	c->resumed = false; /* answers from now on are to requests seen here */
	switch (s->h.type) {
	case 'Q':
		on_query(c, body, s->kept, full, s->truncated, ts, pid);
		break;
	case 'P':
		on_parse(c, body, s->kept, full, s->truncated, ts, pid);
		break;
	case 'B':
		on_bind(c, body, s->kept, ts, pid);
		break;
	case 'D':
		q_push(c, PK_DESCRIBE, ts, pid);
		break;
	case 'E':
		on_execute(c, body, s->kept, ts, pid);
		break;
	case 'C':
		on_close_msg(c, body, s->kept, ts, pid);
		break;
	case 'S':
		q_push(c, PK_SYNC, ts, pid);
		break;
	case 'F':
		if (q_push(c, PK_FUNC, ts, pid))
			q_push(c, PK_QEND, ts, pid);
		break;
	default:
		/* Flush, CopyData/Done/Fail, password, Terminate: nothing to answer */
		break;
	}
}

/* Which frontend bodies the stitcher reads; the rest stream through unstored. */
static bool frontend_stores(uint8_t type)
{
	return !type || strchr("QPBEC", type);
}

/* ---- backend messages ----------------------------------------------------- */

/*
 * ErrorResponse in the extended protocol: the server skips everything up to
 * the next Sync. The failing request is at the head; the first Execute of
 * the batch carries the error (it is the statement that failed), later ones
 * were skipped. A failing Parse/Bind with no Execute after it still yields
 * one error statement, so that a failing statement is never invisible.
 */
static void extended_error(struct pg_conn *c, const struct pg_error *err, uint64_t ts)
{
	struct pend *head = q_head(c);
	bool attributed = false;
	struct pend failed = *head;

	/* keep the failing request's text alive past its pop */
	failed.text = text_get(head->text);
	failed.name = head->name ? strdup(head->name) : NULL;
	while (c->qlen && q_head(c)->kind != PK_SYNC && q_head(c)->kind != PK_QEND) {
		struct pend *p = q_head(c);

		if (p->kind == PK_EXECUTE) {
			emit(c, p, attributed ? DBW_STMT_SKIPPED : DBW_STMT_ERROR, NULL,
			     attributed ? NULL : err, ts);
			attributed = true;
		}
		q_pop(c);
	}
	if (!attributed && (failed.kind == PK_PARSE || failed.kind == PK_BIND)) {
		failed.kind = PK_EXECUTE;
		emit(c, &failed, DBW_STMT_ERROR, NULL, err, ts);
	}
	text_put(c, failed.text);
	free(failed.name);
}

/* ReadyForQuery: close the head batch; whatever is unanswered in it was not run. */
static void ready_for_query(struct pg_conn *c, uint64_t ts)
{
	while (c->qlen) {
		struct pend *p = q_head(c);
		enum pend_kind k = p->kind;

		if (emits(p))
			emit(c, p, c->q_error ? DBW_STMT_SKIPPED : DBW_STMT_UNKNOWN, NULL, NULL,
			     ts);
		q_pop(c);
		if (k == PK_SYNC || k == PK_QEND)
			break;
	}
	c->q_error = false;
}

/* Pop requests whose own answer we never saw, up to one that can take `type`. */
static struct pend *head_for_result(struct pg_conn *c)
{
	struct pend *p;

	while ((p = q_head(c)) && (p->kind == PK_PARSE || p->kind == PK_BIND ||
				   p->kind == PK_DESCRIBE || p->kind == PK_CLOSE))
		q_pop(c);
	return p && emits(p) ? p : NULL;
}

/* An answer with no request waiting: on a resumed connection, a statement lost in the handover. */
static void lost(struct pg_conn *c, uint64_t ts)
{
	if (c->resumed && c->ops->lost)
		c->ops->lost(c->ctx, ts);
}

static void backend_msg(struct pg_conn *c, struct pg_stream *s, uint64_t ts)
{
	const uint8_t *body = body_of(s);
	struct pend *p = q_head(c);
	struct pg_error err;
	const char *tag;

	switch (s->h.type) {
	case 'Z':
		ready_for_query(c, ts);
		break;
	case 'C':
		p = head_for_result(c);
		if (!p)
			lost(c, ts);
		if (p && pg_parse_tag(body, s->kept, &tag) == DBW_PARSE_OK) {
			emit(c, p, DBW_STMT_OK, tag, NULL, ts);
			q_pop(c);
		}
		break;
	case 'I':
	case 's':
		p = head_for_result(c);
		if (p) {
			emit(c, p, DBW_STMT_OK, NULL, NULL, ts);
			q_pop(c);
		}
		break;
	case 'D':
		if (p && emits(p))
			p->rows++;
		break;
	case 'G':
	case 'H':
	case 'W':
		p = head_for_result(c);
		if (p)
			p->copy = true;
		break;
	case '1':
		if (p && p->kind == PK_PARSE)
			q_pop(c);
		break;
	case '2':
		if (p && p->kind == PK_BIND)
			q_pop(c);
		break;
	case '3':
		if (p && p->kind == PK_CLOSE)
			q_pop(c);
		break;
	case 'n':
	case 'T':
		if (p && p->kind == PK_DESCRIBE)
			q_pop(c);
		break;
	case 'V':
		if (p && p->kind == PK_FUNC)
			q_pop(c);
		break;
	case 'E':
		if (!p)
			lost(c, ts);
		if (!p || pg_parse_error_fields(body, s->kept, &err) != DBW_PARSE_OK)
			break; /* e.g. a FATAL during authentication: no request waits */
		if (p->kind == PK_STMT) {
			emit(c, p, DBW_STMT_ERROR, NULL, &err, ts);
			q_pop(c);
			c->q_error = true;
		} else if (p->kind == PK_FUNC) {
			q_pop(c);
		} else if (p->kind != PK_SYNC && p->kind != PK_QEND) {
			extended_error(c, &err, ts);
		}
		break;
	default:
		/* Auth, ParameterStatus, BackendKeyData, Notice, Notification, CopyData... */
		break;
	}
}

static bool backend_stores(uint8_t type)
{
	return type == 'C' || type == 'E';
}

/* ---- reassembly ----------------------------------------------------------- */

static void unparsed(struct pg_conn *c, const char *reason)
{
	if (c->dead)
		return;
	c->dead = true;
	if (c->ops->unparsed)
		c->ops->unparsed(c->ctx, reason);
}

static void stream_reset(struct pg_stream *s)
{
	s->hlen = 0;
	s->in_body = false;
	s->have = 0;
	s->kept = 0;
	s->truncated = false;
}

/* Grow the message buffer to hold want bytes (want <= DBW_MAX_MSG). */
static bool stream_reserve(struct pg_stream *s, uint32_t want)
{
	uint32_t ncap;
	uint8_t *nb;

	if (want <= s->cap)
		return true;
	ncap = s->cap ? s->cap : 256;
	while (ncap < want)
		ncap *= 2;
	if (ncap > DBW_MAX_MSG)
		ncap = DBW_MAX_MSG;
	nb = realloc(s->buf, ncap);
	if (!nb)
		return false;
	s->buf = nb;
	s->cap = ncap;
	return true;
}

static void dispatch(struct pg_conn *c, int dir, struct pg_stream *s, uint64_t ts, uint32_t pid)
{
	if (dir == DBW_DIR_TO_SERVER) {
		c->req_off = s->msg_off;
		frontend_msg(c, s, ts, pid);
	} else
		backend_msg(c, s, ts);
	stream_reset(s);
}

void pg_conn_feed(struct pg_conn *c, int dir, const uint8_t *buf, size_t len, uint64_t ts,
		  uint32_t pid)
{
	struct pg_stream *s = &c->s[dir ? 1 : 0];
	bool fe = dir == DBW_DIR_TO_SERVER;

	while (len && !c->dead) {
		if (!fe && c->ssl_reply) {
			/* the one-byte answer to SSLRequest/GSSENCRequest has no frame */
			c->ssl_reply = false;
			if (*buf == 'S' || *buf == 'G') {
				c->dead = true;
				if (c->ops->encrypted)
					c->ops->encrypted(c->ctx);
				return;
			}
			if (*buf != 'N') {
				unparsed(c, "invalid_ssl_reply");
				return;
			}
			buf++;
			len--;
			s->pos++;
			continue;
		}
		if (!s->in_body) {
			bool startup = fe && c->startup;
			uint32_t need = startup ? 4 : 5, take;

			if (!s->hlen)
				s->msg_off = s->pos;
			take = need - s->hlen < len ? need - s->hlen : len;
			memcpy(s->hdr + s->hlen, buf, take);
			s->hlen += take;
			s->pos += take;
			buf += take;
			len -= take;
			switch (pg_parse_hdr(s->hdr, s->hlen, startup, fe, &s->h)) {
			case DBW_PARSE_NEED_MORE:
				continue;
			case DBW_PARSE_INVALID:
				unparsed(c, fe ? "invalid_frontend" : "invalid_backend");
				return;
			case DBW_PARSE_OK:
				break;
			}
			s->in_body = true;
			s->store = fe ? frontend_stores(s->h.type) : backend_stores(s->h.type);
			if (s->store &&
			    !stream_reserve(s, s->h.body_len < DBW_MAX_MSG ? s->h.body_len :
									     DBW_MAX_MSG))
				s->truncated = true; /* out of memory: keep what fits */
		}
		{
			uint32_t take =
				s->h.body_len - s->have < len ? s->h.body_len - s->have : len;

			if (s->store && !s->truncated) {
				uint32_t room = s->cap - s->kept;
				uint32_t n = take < room ? take : room;

				if (n) /* an empty body may have no buffer at all */
					memcpy(s->buf + s->kept, buf, n);
				s->kept += n;
				if (n < take)
					s->truncated = true;
			}
			s->have += take;
			s->pos += take;
			buf += take;
			len -= take;
		}
		if (s->have == s->h.body_len)
			dispatch(c, dir, s, ts, pid);
	}
}

void pg_conn_gap(struct pg_conn *c, int dir, uint64_t len, uint64_t ts)
{
	struct pg_stream *s = &c->s[dir ? 1 : 0];

	if (c->dead || !len)
		return;
	if (!s->in_body || len > (uint64_t)(s->h.body_len - s->have)) {
		unparsed(c, "gap");
		return;
	}
	/* inside a message of known length: it is truncated, the framing holds */
	s->truncated = true;
	s->have += len;
	s->pos += len;
	if (s->have == s->h.body_len)
		dispatch(c, dir, s, ts, 0);
}

void pg_conn_close(struct pg_conn *c, uint64_t ts)
{
	while (c->qlen) {
		struct pend *p = q_head(c);

		if (emits(p))
			emit(c, p, DBW_STMT_UNKNOWN, NULL, NULL, 0);
		q_pop(c);
	}
	(void)ts;
}

struct pg_conn *pg_conn_new(const struct dbw_stitch_ops *ops, void *ctx)
{
	struct pg_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->ops = ops;
	c->ctx = ctx;
	c->startup = true;
	return c;
}

void pg_conn_free(struct pg_conn *c)
{
	if (!c)
		return;
	while (c->qlen)
		q_pop(c);
	while (c->nprep)
		prep_drop(c, &c->preps[0]);
	while (c->nportal)
		portal_drop(c, &c->portals[0]);
	free(c->q);
	free(c->preps);
	free(c->portals);
	free(c->s[0].buf);
	free(c->s[1].buf);
	free(c);
}

size_t pg_conn_pending(const struct pg_conn *c)
{
	return c->qlen;
}

void pg_conn_resume(struct pg_conn *c)
{
	c->startup = false;
	c->resumed = true;
}

void pg_conn_resume_at(struct pg_conn *c, int dir, uint64_t off)
{
	struct pg_stream *s = &c->s[dir ? 1 : 0];

	if (!s->pos && !s->hlen && !s->in_body)
		s->pos = s->msg_off = off;
	/* the client's stream from its first byte: the startup message is ahead */
	if (dir == DBW_DIR_TO_SERVER && !off)
		c->startup = true;
}

size_t pg_conn_mem(const struct pg_conn *c)
{
	return sizeof(*c) + c->qcap * sizeof(struct pend) + c->prep_cap * sizeof(struct prep) +
	       c->portal_cap * sizeof(struct portal) + c->s[0].cap + c->s[1].cap + c->text_bytes;
}
