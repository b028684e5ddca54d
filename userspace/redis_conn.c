// SPDX-License-Identifier: GPL-2.0-only
/* Redis connection stitcher: commands paired with replies in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dbwarden_abi.h"
#include "analyze.h"
#include "redis_conn.h"
#include "redis_proto.h"

#define REDIS_TEXT_MAX 2048

/* A command waiting for its reply (or, queued in MULTI, for EXEC's). */
struct rpend {
	char *text; /* normalized text, then each object NUL-terminated */
	const char *objects[SQL_MAX_OBJECTS];
	size_t nobjects;
	char verb[48];
	char fingerprint[17];
	uint32_t verbs; /* 1 << enum dbw_redis_verb */
	bool cut;
	uint64_t full_len;
	uint64_t start_ns;
	uint64_t req_off;
	uint32_t pid;
	/* AUTH / HELLO AUTH: the user it logs in as; SELECT: the database */
	char user[64], db[24];
	uint64_t replies; /* (UN)SUBSCRIBE: one reply per channel named */
};

struct redis_conn {
	const struct dbw_stitch_ops *ops;
	void *ctx;
	struct redis_scan s[2];
	uint64_t pos[2]; /* stream bytes consumed */
	uint64_t unit_off[2]; /* stream offset where the current unit began */
	uint64_t unit_ns[2];
	uint32_t unit_pid;
	bool in_unit[2];
	bool dead;
	struct rpend *q; /* FIFO ring of commands awaiting replies */
	size_t qhead, qlen, qcap;
	struct rpend *queued; /* MULTI: commands answered +QUEUED, in order */
	size_t nqueued, queued_cap;
	char user[64], db[24];
	uint64_t swallow; /* replies still due to a (UN)SUBSCRIBE already reported */
	bool resumed; /* read from the middle: replies may precede any command seen */
	uint64_t reply_end; /* server stream offset just past the reply being reported */
};

static void unparsed(struct redis_conn *c, const char *reason)
{
	if (c->dead)
		return;
	c->dead = true;
	if (c->ops->unparsed)
		c->ops->unparsed(c->ctx, reason);
}

struct redis_conn *redis_conn_new(const struct dbw_stitch_ops *ops, void *ctx)
{
	struct redis_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->ops = ops;
	c->ctx = ctx;
	redis_scan_init(&c->s[DBW_DIR_TO_SERVER], true);
	redis_scan_init(&c->s[DBW_DIR_TO_CLIENT], false);
	return c;
}

static void pend_free(struct rpend *p)
{
	free(p->text);
	p->text = NULL;
}

void redis_conn_free(struct redis_conn *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->qlen; i++)
		pend_free(&c->q[(c->qhead + i) % c->qcap]);
	for (size_t i = 0; i < c->nqueued; i++)
		pend_free(&c->queued[i]);
	redis_scan_reset(&c->s[0]);
	redis_scan_reset(&c->s[1]);
	free(c->q);
	free(c->queued);
	free(c);
}

/* Report p with its outcome; p's memory is released. */
static void report(struct redis_conn *c, struct rpend *p, enum dbw_stmt_status status,
		   const char *tag, const struct redis_reply *r, uint64_t end_ns)
{
	struct sql_analysis a = {
		.normalized = p->text ? p->text : "",
		.verb = p->verb,
		.verbs = p->verbs,
		.nobjects = p->nobjects,
		.parsed = !p->cut,
	};
	struct dbw_stmt st = {
		.text = a.normalized,
		.text_len = strlen(a.normalized),
		.truncated = p->cut,
		.text_full_len = p->full_len,
		.status = status,
		.start_ns = p->start_ns,
		.end_ns = end_ns,
		.pid = p->pid,
		.req_off = p->req_off,
		.resp_end = r ? c->reply_end : 0,
		.analysis = &a,
	};

	memcpy(a.fingerprint, p->fingerprint, sizeof(a.fingerprint));
	for (size_t i = 0; i < p->nobjects; i++)
		a.objects[i] = p->objects[i];
	snprintf(st.tag, sizeof(st.tag), "%s", tag ? tag : "");
	if (r && !r->null && r->count >= 0 && r->top.type != '>') {
		st.has_rows = true;
		st.rows = r->count;
	}
	c->ops->statement(c->ctx, &st);
	pend_free(p);
}

/* The tag of a reply: its status word, an error's code, or its type. */
static const char *reply_tag(const struct redis_elem *e, const char *status)
{
	if (e->error)
		return e->code;
	if (status && *status)
		return status;
	switch (e->type) {
	case ':':
		return "integer";
	case '$':
	case '=':
		return "bulk";
	case '*':
		return "array";
	case '~':
		return "set";
	case '%':
		return "map";
	case '_':
		return "null";
	case ',':
		return "double";
	case '#':
		return "boolean";
	case '(':
		return "bignum";
	case '+':
		return "status";
	}
	return "";
}

/* A command was read: queue it for its reply. */
static void on_command(struct redis_conn *c, const struct redis_cmd *cmd, uint64_t off, uint64_t ts,
		       uint32_t pid, uint64_t bytes)
{
	struct redis_stmt rs;
	char text[REDIS_TEXT_MAX];
	struct rpend *p;
	size_t tl, need;
	char *w;
	int cls;

	if (c->qlen == REDIS_MAX_PENDING) {
		unparsed(c, "too_many_pending");
		return;
	}
	if (c->qlen == c->qcap) {
		size_t ncap = c->qcap ? c->qcap * 2 : 16;
		struct rpend *nq = malloc(ncap * sizeof(*nq));

		if (!nq) {
			unparsed(c, "out_of_memory");
			return;
		}
		for (size_t i = 0; i < c->qlen; i++)
			nq[i] = c->q[(c->qhead + i) % c->qcap];
		free(c->q);
		c->q = nq;
		c->qcap = ncap;
		c->qhead = 0;
	}
	redis_cmd_stmt(cmd, text, sizeof(text), &rs);
	p = &c->q[(c->qhead + c->qlen) % c->qcap];
	memset(p, 0, sizeof(*p));
	tl = strlen(text);
	need = tl + 1;
	for (size_t i = 0; i < rs.nobjects && i < SQL_MAX_OBJECTS; i++)
		need += strlen(rs.objects[i]) + 1;
	p->text = malloc(need);
	if (!p->text) {
		unparsed(c, "out_of_memory");
		return;
	}
	memcpy(p->text, text, tl + 1);
	w = p->text + tl + 1;
	for (size_t i = 0; i < rs.nobjects && i < SQL_MAX_OBJECTS; i++) {
		size_t n = strlen(rs.objects[i]) + 1;

		memcpy(w, rs.objects[i], n);
		p->objects[p->nobjects++] = w;
		w += n;
	}
	snprintf(p->verb, sizeof(p->verb), "%s", rs.verb);
	memcpy(p->fingerprint, rs.fingerprint, sizeof(p->fingerprint));
	cls = redis_verb_class(rs.verb);
	p->verbs = 1u << cls;
	if (strchr(rs.verb, ' ')) {
		/* a subcommand counts as its container too: CONFIG SET is a CONFIG */
		char top[48];

		snprintf(top, sizeof(top), "%.*s", (int)strcspn(rs.verb, " "), rs.verb);
		cls = redis_verb_class(top);
		if (cls)
			p->verbs |= 1u << cls;
	}
	p->cut = rs.cut;
	p->full_len = bytes;
	p->start_ns = ts;
	p->req_off = off;
	p->pid = pid;
	if (!strcmp(rs.verb, "AUTH") && cmd->nargs >= 2) {
		const struct redis_arg *u = cmd->nargs >= 3 ? &cmd->args[1] : NULL;

		snprintf(p->user, sizeof(p->user), "%s", u ? u->data : "default");
	} else if (!strcmp(rs.verb, "HELLO")) {
		for (uint32_t i = 2; i + 2 < cmd->nargs; i++)
			if (!strcasecmp(cmd->args[i].data, "AUTH"))
				snprintf(p->user, sizeof(p->user), "%s", cmd->args[i + 1].data);
	} else if (strstr(rs.verb, "SUBSCRIBE") && cmd->argc > 2) {
		p->replies = cmd->argc - 1;
	} else if (!strcmp(rs.verb, "SELECT") && cmd->nargs == 2) {
		snprintf(p->db, sizeof(p->db), "%s", cmd->args[1].data);
	}
	c->qlen++;
}

static void queued_push(struct redis_conn *c, struct rpend *p)
{
	if (c->nqueued == c->queued_cap) {
		size_t ncap = c->queued_cap ? c->queued_cap * 2 : 8;
		struct rpend *nq;

		if (ncap > REDIS_MAX_PENDING || !(nq = realloc(c->queued, ncap * sizeof(*nq)))) {
			/* reported now, as queued: EXEC's outcome cannot be kept for it */
			report(c, p, DBW_STMT_OK, "QUEUED", NULL, 0);
			return;
		}
		c->queued = nq;
		c->queued_cap = ncap;
	}
	c->queued[c->nqueued++] = *p;
}

/* EXEC or DISCARD answered: the queued commands get their outcomes. */
static void queued_settle(struct redis_conn *c, const struct redis_reply *r, uint64_t ts)
{
	bool ran = r && !r->top.error && !r->null && r->top.type == '*';

	for (size_t i = 0; i < c->nqueued; i++) {
		struct rpend *p = &c->queued[i];

		if (ran && i < r->nelems)
			report(c, p, r->elems[i].error ? DBW_STMT_ERROR : DBW_STMT_OK,
			       reply_tag(&r->elems[i], NULL), NULL, ts);
		else if (ran)
			report(c, p, DBW_STMT_OK, "", NULL, ts); /* past what the reply kept */
		else
			report(c, p, DBW_STMT_SKIPPED, "", NULL, ts);
	}
	c->nqueued = 0;
}

static void session(struct redis_conn *c)
{
	if (c->ops->session)
		c->ops->session(c->ctx, c->user, c->db, "");
}

/* A reply was read: it answers the command at the head of the FIFO. */
static void on_reply(struct redis_conn *c, const struct redis_reply *r, uint64_t ts)
{
	struct rpend p;

	if (r->push)
		return; /* out of band: pub/sub messages, invalidations */
	if (c->swallow && !r->top.error) {
		c->swallow--; /* SUBSCRIBE a b: the reply for b */
		return;
	}
	if (!c->qlen) {
		/* a subscriber's message (RESP2) or a reply to nothing seen: after a
		 * restart, to a command the previous daemon read */
		if (c->resumed && c->ops->lost)
			c->ops->lost(c->ctx, ts);
		return;
	}
	p = c->q[c->qhead];
	c->qhead = (c->qhead + 1) % c->qcap;
	c->qlen--;
	if (!r->top.error) {
		bool changed = false;

		if (p.user[0]) {
			snprintf(c->user, sizeof(c->user), "%s", p.user);
			changed = true;
		}
		if (p.db[0]) {
			snprintf(c->db, sizeof(c->db), "%s", p.db);
			changed = true;
		}
		if (changed)
			session(c);
	}
	if (p.replies > 1 && !r->top.error)
		c->swallow += p.replies - 1;
	if (!strcmp(r->status, "QUEUED")) {
		queued_push(c, &p);
		return;
	}
	if (!strcmp(p.verb, "EXEC") || !strcmp(p.verb, "DISCARD"))
		queued_settle(c, !strcmp(p.verb, "EXEC") ? r : NULL, ts);
	report(c, &p, r->top.error ? DBW_STMT_ERROR : DBW_STMT_OK, reply_tag(&r->top, r->status), r,
	       ts);
}

void redis_conn_feed(struct redis_conn *c, int dir, const uint8_t *buf, size_t len, uint64_t ts_ns,
		     uint32_t pid)
{
	struct redis_scan *s;

	if (c->dead || (dir != DBW_DIR_TO_SERVER && dir != DBW_DIR_TO_CLIENT))
		return;
	if (dir == DBW_DIR_TO_SERVER && !c->pos[dir] && !c->in_unit[dir] && !c->resumed && len &&
	    buf[0] == 0x16) {
		/*
		 * A TLS handshake record (ClientHello): RESP has no upgrade of
		 * its own, TLS starts at the first byte. No command begins with
		 * 0x16, and inline commands would take the ciphertext as text.
		 * Its plaintext comes from the TLS library, to a new stitcher.
		 */
		c->dead = true;
		if (c->ops->encrypted)
			c->ops->encrypted(c->ctx);
		return;
	}
	s = &c->s[dir];
	while (len) {
		size_t used = 0;
		enum dbw_parse r;

		if (!c->in_unit[dir]) {
			c->unit_off[dir] = c->pos[dir];
			c->unit_ns[dir] = ts_ns;
			if (dir == DBW_DIR_TO_SERVER)
				c->unit_pid = pid;
			c->in_unit[dir] = true;
		}
		r = redis_scan(s, buf, len, &used);
		if (r == DBW_PARSE_INVALID) {
			unparsed(c, dir == DBW_DIR_TO_SERVER ? "invalid_command" : "invalid_reply");
			return;
		}
		c->pos[dir] += used;
		buf += used;
		len -= used;
		if (r == DBW_PARSE_NEED_MORE)
			break;
		c->in_unit[dir] = false;
		if (dir == DBW_DIR_TO_SERVER) {
			c->resumed = false; /* replies from now on are to commands seen here */
			on_command(c, &s->cmd, c->unit_off[dir], c->unit_ns[dir], c->unit_pid,
				   s->unit_bytes);
		} else {
			c->reply_end = c->pos[dir];
			on_reply(c, &s->reply, ts_ns);
		}
		if (c->dead)
			return;
	}
}

void redis_conn_gap(struct redis_conn *c, int dir, uint64_t len, uint64_t ts_ns)
{
	if (c->dead || (dir != DBW_DIR_TO_SERVER && dir != DBW_DIR_TO_CLIENT))
		return;
	/* inside a long value (a send past the kernel's copy limit): skip it */
	if (c->in_unit[dir] && redis_scan_skip(&c->s[dir], len)) {
		c->pos[dir] += len;
		return;
	}
	unparsed(c, "gap");
}

size_t redis_conn_pending(const struct redis_conn *c)
{
	return c->qlen;
}

void redis_conn_resume(struct redis_conn *c)
{
	/* RESP has no handshake: commands and replies frame themselves */
	c->resumed = true;
}

void redis_conn_resume_at(struct redis_conn *c, int dir, uint64_t off)
{
	int d = dir ? 1 : 0;

	if (!c->pos[d] && !c->in_unit[d])
		c->pos[d] = c->unit_off[d] = off;
}

void redis_conn_close(struct redis_conn *c, uint64_t ts_ns)
{
	for (size_t i = 0; i < c->nqueued; i++)
		report(c, &c->queued[i], DBW_STMT_UNKNOWN, "", NULL, 0);
	c->nqueued = 0;
	while (c->qlen) {
		struct rpend p = c->q[c->qhead];

		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
		report(c, &p, DBW_STMT_UNKNOWN, "", NULL, 0);
	}
}
