// SPDX-License-Identifier: GPL-2.0-only
/* Connection table and the glue from records to audit events. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "dbwarden_abi.h"
#include "analyze.h"
#include "conn.h"
#include "detect.h"
#include "event.h"
#include "identity.h"
#include "mysql_conn.h"
#include "mysql_sql.h"
#include "pg_conn.h"
#include "pg_proto.h"
#include "policy.h"
#include "redis_conn.h"
#include "sockdiag.h"
#include "stmt.h"
#include "log.h"

/* What the kernel's result masking did (struct dbw_rec_mask). */
struct conn_mask_counts {
	uint64_t rows, masked, unmasked, overmasked;
};

/*
 * Result masking counts of replies not reported yet, by the server stream
 * offset just past each (Redis: a pipeline's replies are all counted
 * before the first is read).
 */
#define CONN_MASK_PENDING_MAX 8192 /* a pipeline twice the kernel's depth (RK_RING) */
/* ... and all connections' queues together (40 bytes an entry: 40 MiB) */
#define CONN_MASK_PENDING_ALL (1u << 20)
struct conn_mask_pending {
	uint64_t off;
	struct conn_mask_counts m;
};

/* Kernel verdicts kept per connection until their statement is reported. */
#define CONN_VERDICTS 8

struct conn {
	uint64_t id;
	struct conn *hnext; /* hash chain */
	struct conn *lprev, *lnext; /* activity list, most recent first */
	struct conn_table *t;
	struct dbw_identity who;
	uint8_t proto;
	bool tls;
	bool tls_plain; /* its stream is the TLS library's plaintext (DBW_DATA_F_TLS) */
	bool reset; /* this agent reset it (the connection_reset alert says why) */
	bool reset_asked; /* the guard asked for a reset: once is enough */
	bool unparsed;
	bool partial; /* CONN_OPEN was lost: no tuple, identity from the sender */
	bool resumed; /* first seen mid-stream: an earlier daemon read its start */
	char client[64], server[64];
	char db_user[64], database[64], app[64];
	char exe[256], cgroup[256];
	struct workload wl; /* container and pod, from the cgroup and the API */
	struct sockdiag_tuple tuple; /* for a reset; family 0 when unknown */
	struct conn_verdict verdicts[CONN_VERDICTS];
	unsigned nverdicts;
	uint64_t expect[2]; /* next stream offset per direction */
	uint64_t statements;
	json_t *j_conn; /* cached "connection" object */
	json_t *j_actor; /* cached "actor" object */
	char *tail; /* both, serialised: the end of each of its events */
	const struct stitcher_class *sc; /* its protocol's stitcher, NULL: not parsed */
	void *stitcher;
	/* result masking (MASK records): counts for the next statement, and totals */
	bool masked; /* a masking rule applies: the kernel masks its results */
	bool mask_off; /* ... but cannot: encrypted (on_unmaskable: allow) */
	struct conn_mask_counts mask_next, mask_total;
	/* Redis: by reply, oldest (at mask_qh) first; grown as a pipeline needs */
	struct conn_mask_pending *mask_q;
	unsigned mask_qh, mask_qn, mask_qcap;
};

struct conn_table {
	struct emitter *em;
	struct identity *id;
	struct sql_analyzer *an;
	struct mysql_analyzer *my; /* MySQL text: libpg_query does not read it */
	struct conn **buckets;
	size_t nbuckets; /* power of two */
	size_t max_conns;
	struct conn *lru_head, *lru_tail;
	struct conn_stats st;
	size_t mask_q_entries; /* the Redis reply count queues' capacity, all connections */
	struct conn_guard_ops guard;
	bool resuming; /* the programs were adopted: connections go on mid-stream */
	struct sockdiag_sock *snap; /* sockets by cookie, for resume_lookup */
	int nsnap;
	uint64_t snap_ms;
	struct conn_masking mask_default; /* without a policy */
	/* the watched ports' protocols: a connection learnt from its data alone */
	uint16_t ports[CONN_MAX_PORTS];
	uint8_t port_proto[CONN_MAX_PORTS];
	int nports;
};

/*
 * One protocol's stitcher behind one face: the table feeds bytes and gaps,
 * the stitcher calls back struct dbw_stitch_ops.
 */
struct stitcher_class {
	void *(*create)(const struct dbw_stitch_ops *ops, void *ctx);
	void (*destroy)(void *s);
	void (*feed)(void *s, int dir, const uint8_t *buf, size_t len, uint64_t ts, uint32_t pid);
	void (*gap)(void *s, int dir, uint64_t len, uint64_t ts);
	void (*close)(void *s, uint64_t ts);
	/* read from the middle after a restart (see pg_conn_resume) */
	void (*resume)(void *s);
	void (*resume_at)(void *s, int dir, uint64_t off);
	size_t (*pending)(const void *s); /* requests awaiting their answer */
};

/* Typed wrappers of a stitcher named P (P_conn_new, P_conn_feed, ...). */
#define STITCHER(P)                                                                              \
	static void *P##_create(const struct dbw_stitch_ops *ops, void *ctx)                     \
	{                                                                                        \
		return P##_conn_new(ops, ctx);                                                   \
	}                                                                                        \
	static void P##_destroy(void *s)                                                         \
	{                                                                                        \
		P##_conn_free(s);                                                                \
	}                                                                                        \
	static void P##_feed(void *s, int dir, const uint8_t *b, size_t n, uint64_t ts,          \
			     uint32_t pid)                                                       \
	{                                                                                        \
		P##_conn_feed(s, dir, b, n, ts, pid);                                            \
	}                                                                                        \
	static void P##_gap(void *s, int dir, uint64_t n, uint64_t ts)                           \
	{                                                                                        \
		P##_conn_gap(s, dir, n, ts);                                                     \
	}                                                                                        \
	static void P##_close(void *s, uint64_t ts)                                              \
	{                                                                                        \
		P##_conn_close(s, ts);                                                           \
	}                                                                                        \
	static void P##_resume(void *s)                                                          \
	{                                                                                        \
		P##_conn_resume(s);                                                              \
	}                                                                                        \
	static void P##_resume_at(void *s, int dir, uint64_t off)                                \
	{                                                                                        \
		P##_conn_resume_at(s, dir, off);                                                 \
	}                                                                                        \
	static size_t P##_pending(const void *s)                                                 \
	{                                                                                        \
		return P##_conn_pending(s);                                                      \
	}                                                                                        \
	static const struct stitcher_class P##_class = { P##_create,	P##_destroy, P##_feed,   \
							 P##_gap,	P##_close,   P##_resume, \
							 P##_resume_at, P##_pending }

STITCHER(pg);
STITCHER(mysql);
STITCHER(redis);

/* The stitcher of a protocol, NULL when it is not parsed. */
static const struct stitcher_class *stitcher_of(uint8_t proto)
{
	switch (proto) {
	case DBW_PROTO_POSTGRES:
		return &pg_class;
	case DBW_PROTO_MYSQL:
		return &mysql_class;
	case DBW_PROTO_REDIS:
		return &redis_class;
	}
	return NULL;
}

const char *dbw_proto_name(uint8_t p)
{
	switch (p) {
	case DBW_PROTO_POSTGRES:
		return "postgres";
	case DBW_PROTO_MYSQL:
		return "mysql";
	case DBW_PROTO_REDIS:
		return "redis";
	}
	return "unknown";
}

int dbw_proto_parse(const char *name)
{
	if (!strcmp(name, "postgres") || !strcmp(name, "postgresql"))
		return DBW_PROTO_POSTGRES;
	if (!strcmp(name, "mysql") || !strcmp(name, "mariadb"))
		return DBW_PROTO_MYSQL;
	if (!strcmp(name, "redis"))
		return DBW_PROTO_REDIS;
	return -1;
}

static size_t bucket_of(const struct conn_table *t, uint64_t id)
{
	id ^= id >> 33;
	id *= 0xff51afd7ed558ccdULL;
	id ^= id >> 33;
	return id & (t->nbuckets - 1);
}

static struct conn *conn_find(struct conn_table *t, uint64_t id)
{
	for (struct conn *c = t->buckets[bucket_of(t, id)]; c; c = c->hnext)
		if (c->id == id)
			return c;
	return NULL;
}

static void lru_unlink(struct conn_table *t, struct conn *c)
{
	if (c->lprev)
		c->lprev->lnext = c->lnext;
	else
		t->lru_head = c->lnext;
	if (c->lnext)
		c->lnext->lprev = c->lprev;
	else
		t->lru_tail = c->lprev;
	c->lprev = c->lnext = NULL;
}

static void lru_push(struct conn_table *t, struct conn *c)
{
	c->lnext = t->lru_head;
	c->lprev = NULL;
	if (t->lru_head)
		t->lru_head->lprev = c;
	t->lru_head = c;
	if (!t->lru_tail)
		t->lru_tail = c;
}

static void lru_touch(struct conn_table *t, struct conn *c)
{
	if (t->lru_head == c)
		return;
	lru_unlink(t, c);
	lru_push(t, c);
}

static void format_addr(char *buf, size_t len, uint16_t family, const uint8_t *addr, uint16_t port)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (family == AF_INET6 && !memcmp(addr, v4mapped, 12)) {
		/* an IPv6 socket talking IPv4: show the IPv4 address */
		family = AF_INET;
		addr += 12;
	}
	if (family == AF_INET) {
		inet_ntop(AF_INET, addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, port);
	} else {
		inet_ntop(AF_INET6, addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, port);
	}
}

static void conn_tail(struct conn *c);

/* The "connection" object of every event of c, rebuilt when the session is known. */
static void conn_rebuild_json(struct conn *c)
{
	char id[24];

	json_decref(c->j_conn);
	snprintf(id, sizeof(id), "%llu", (unsigned long long)c->id);
	c->j_conn = json_pack("{s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:o}", "id", id, "protocol",
			      dbw_proto_name(c->proto), "tls", c->tls, "client",
			      json_str_or_null(c->client), "server", json_str_or_null(c->server),
			      "db_user", json_str_or_null(c->db_user), "database",
			      json_str_or_null(c->database), "application_name",
			      json_str_or_null(c->app));
	conn_tail(c);
}

/* The "actor" object of every event of c, from what is known of it now. */
static void conn_actor_json(struct conn *c)
{
	struct identity *id = c->t->id;

	json_decref(c->j_actor);
	c->j_actor = json_pack(
		"{s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "pid", (json_int_t)c->who.pid,
		"tid", (json_int_t)c->who.tid, "uid", (json_int_t)c->who.uid, "gid",
		(json_int_t)c->who.gid, "user", json_str_or_null(identity_user(id, c->who.uid)),
		"comm", json_str_safe(c->who.comm, strnlen(c->who.comm, sizeof(c->who.comm))),
		"exe", json_str_or_null(c->exe), "cgroup", json_str_or_null(c->cgroup),
		"container_id", json_str_or_null(c->wl.cg.container_id), "pod",
		workload_pod_json(&c->wl));
	conn_tail(c);
}

static void conn_build_actor(struct conn *c)
{
	struct identity *id = c->t->id;
	const char *cg = identity_cgroup(id, c->who.cgroup_id);

	identity_exe(c->who.pid, c->exe, sizeof(c->exe));
	snprintf(c->cgroup, sizeof(c->cgroup), "%s", cg ? cg : "");
	workload_release(&c->wl);
	identity_workload(id, c->who.cgroup_id, &c->wl);
	conn_actor_json(c);
}

/* The policy side's view of c, valid until c changes. */
static void conn_info_of(const struct conn *c, struct conn_info *ci)
{
	const char *user = identity_user(c->t->id, c->who.uid);

	ci->id = c->id;
	ci->who = &c->who;
	ci->user = user ? user : "";
	ci->exe = c->exe;
	ci->cgroup = c->cgroup;
	ci->wl = &c->wl;
	ci->client = c->client;
	ci->server = c->server;
	ci->server_port = c->tuple.server_port;
	ci->proto = c->proto;
	ci->db_user = c->db_user;
	ci->database = c->database;
	ci->application_name = c->app;
}

static void guard_changed(struct conn *c)
{
	struct conn_info ci;

	if (!c->t->guard.conn_changed)
		return;
	conn_info_of(c, &ci);
	c->t->guard.conn_changed(c->t->guard.ctx, &ci);
}

/* Serialise c's "connection" and "actor" once, for all its events. */
static void conn_tail(struct conn *c)
{
	char *jc = c->j_conn ? json_dumps(c->j_conn, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	char *ja = c->j_actor ? json_dumps(c->j_actor, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;

	free(c->tail);
	c->tail = NULL;
	if (jc && ja && asprintf(&c->tail, ",\"connection\":%s,\"actor\":%s", jc, ja) < 0)
		c->tail = NULL;
	free(jc);
	free(ja);
}

/* Start an event about c: the envelope; conn_emit adds connection + actor. */
static json_t *conn_event(struct conn *c, const char *type, uint64_t ts)
{
	return event_new(c->t->em, type, ts);
}

static void conn_emit(struct conn *c, json_t *ev)
{
	if (ev && !c->tail) {
		/* no memory for the cached form: the slow way */
		json_object_set(ev, "connection", c->j_conn);
		json_object_set(ev, "actor", c->j_actor);
	}
	event_emit_parts(c->t->em, ev, c->tail);
}

/*
 * An alert about a connection userspace does not follow: `conn` (taken)
 * is the event's connection object, `where` says it in the log.
 */
static void alert_at(struct conn_table *t, json_t *conn, const char *kind, const char *detail,
		     const char *where)
{
	json_t *ev = event_new(t->em, "alert", 0);

	if (ev)
		json_object_set(ev, "connection", conn);
	event_set_alert(ev, kind, detail, where);
	event_emit(t->em, ev);
}

static void alert(struct conn_table *t, struct conn *c, const char *kind, const char *detail)
{
	json_t *ev = c ? conn_event(c, "alert", 0) : event_new(t->em, "alert", 0);
	char where[64];

	if (c)
		snprintf(where, sizeof(where), "connection %llu", (unsigned long long)c->id);
	event_set_alert(ev, kind, detail, c ? where : NULL);
	if (c)
		conn_emit(c, ev);
	else
		event_emit(t->em, ev);
}

static const char *status_name(enum dbw_stmt_status s)
{
	switch (s) {
	case DBW_STMT_OK:
		return "ok";
	case DBW_STMT_ERROR:
		return "error";
	case DBW_STMT_SKIPPED:
		return "skipped";
	case DBW_STMT_UNKNOWN:
		break;
	}
	return "unknown";
}

/*
 * A kernel verdict leaves the table: a block that no statement of its
 * message confirmed on the exact parse is a false positive of the lexer.
 */
static void verdict_retire(struct conn *c, const struct conn_verdict *v)
{
	char detail[160];

	if (v->action < DBW_ACT_APPROVAL || v->confirmed || (v->flags & DBW_VERDICT_F_UNPARSED) ||
	    !c->t->guard.decide)
		return;
	c->t->st.mismatches++;
	snprintf(detail, sizeof(detail),
		 "the kernel blocked (rule slot %u) a message the exact parse allows", v->rule);
	alert(c->t, c, "guard_mismatch", detail);
}

/*
 * The kernel's verdict on the message at stream offset off, if it gave
 * one. Verdicts of earlier messages are retired: statements are reported
 * in stream order.
 */
static struct conn_verdict *verdict_for(struct conn *c, uint64_t off)
{
	unsigned i = 0, keep = 0;
	struct conn_verdict *hit = NULL;

	for (; i < c->nverdicts; i++) {
		if (c->verdicts[i].stream_off < off) {
			verdict_retire(c, &c->verdicts[i]);
			continue;
		}
		c->verdicts[keep++] = c->verdicts[i];
	}
	c->nverdicts = keep;
	for (i = 0; i < c->nverdicts; i++)
		if (c->verdicts[i].stream_off == off)
			hit = &c->verdicts[i];
	return hit;
}

static void conn_reset(struct conn *c, const char *why)
{
	char detail[160];
	int e = c->tuple.family ? sockdiag_destroy(&c->tuple) : -ENOENT;

	snprintf(detail, sizeof(detail), "%s; reset %s", why, e ? strerror(-e) : "done");
	c->t->st.resets++;
	c->reset = true;
	alert(c->t, c, "connection_reset", detail);
}

/*
 * The statement's "decision" object: the policy side's, or allow. What it
 * asks besides (an alert, a reset) is left in out for after the event.
 */
static json_t *decide(struct conn *c, const struct dbw_stmt *s, const struct sql_analysis *a,
		      struct conn_decision *out)
{
	struct conn_table *t = c->t;
	struct conn_verdict *kv = verdict_for(c, s->req_off);
	struct conn_info ci;
	json_t *d = NULL;

	if (t->guard.decide) {
		conn_info_of(c, &ci);
		d = t->guard.decide(t->guard.ctx, &ci, s, a, kv, out);
		if (kv && out->confirms)
			kv->confirmed = true;
	}
	if (kv && (kv->flags & DBW_VERDICT_F_TLS) && kv->action >= DBW_ACT_APPROVAL)
		out->not_sent = true;
	return d ? d : json_pack("{s:s, s:n, s:n}", "action", "allow", "rule", "approval_id");
}

/*
 * The masking in force: the policy's, or the defaults (every built-in
 * detector, compiled on first use: a table that never needs them, as with
 * a policy, never pays for the compile).
 */
static const struct conn_masking *masking_of(struct conn_table *t)
{
	const struct conn_masking *m = t->guard.masking ? t->guard.masking(t->guard.ctx) : NULL;
	char err[256];
	int bad;

	if (m)
		return m;
	if (!t->mask_default.det) {
		t->mask_default.det = detect_new(DET_ALL_BUILTIN, NULL, 0, err, sizeof(err), &bad);
		if (!t->mask_default.det)
			log_error("detectors: %s (text is withheld)", err);
	}
	return &t->mask_default;
}

/*
 * s through detectors d as a JSON string. Fails closed: without detectors
 * (they did not compile) or memory, nothing of s is exported.
 */
static json_t *masked_json(struct detector_set *d, const char *s, size_t len, unsigned *found)
{
	size_t n;
	unsigned k = 0;
	char *m = d ? detect_mask(d, s, len, &n, &k) : NULL;
	json_t *j;

	if (found)
		*found += k;
	if (!m)
		return json_string("<unscanned>");
	j = json_str_safe(m, n);
	free(m);
	return j;
}

void conns_masking_ready(struct conn_table *t)
{
	masking_of(t);
}

json_t *conns_mask_json(struct conn_table *t, const char *s, size_t len, unsigned *found)
{
	const struct conn_masking *m = masking_of(t);

	if (m->text_mode == POLICY_TEXT_RAW)
		return json_str_safe(s, len);
	return masked_json(m->det, s, len, found);
}

/*
 * The statement's text as the masking mode wants it: normalized (and
 * then through the detectors too: a quoted identifier or a cut statement
 * can still carry a value), masked, or raw.
 */
static json_t *statement_text(struct conn_table *t, const struct dbw_stmt *s,
			      const struct sql_analysis *a)
{
	const struct conn_masking *m = masking_of(t);

	switch (m->text_mode) {
	case POLICY_TEXT_RAW:
		return json_str_safe(s->text, s->text_len);
	case POLICY_TEXT_MASKED:
		return masked_json(m->det, s->text, s->text_len, NULL);
	default:
		return a->normalized ?
			       masked_json(m->det, a->normalized, strlen(a->normalized), NULL) :
			       json_null();
	}
}

/*
 * The error message or detail of a failed statement, null when none.
 * PostgreSQL quotes values in them: normalized mode replaces what it
 * quotes (as it replaces literals), then every mode but raw applies the
 * detectors.
 */
static json_t *error_text(struct conn_table *t, const char *s)
{
	char *scrubbed;
	json_t *j;

	if (!s || !*s)
		return json_null();
	if (masking_of(t)->text_mode != POLICY_TEXT_NORMALIZED)
		return conns_mask_json(t, s, strlen(s), NULL);
	scrubbed = pg_error_scrub(s);
	if (!scrubbed)
		return json_string("<unscanned>");
	j = conns_mask_json(t, scrubbed, strlen(scrubbed), NULL);
	free(scrubbed);
	return j;
}

static void mask_add_counts(struct conn_mask_counts *m, const struct conn_mask_counts *a)
{
	m->rows += a->rows;
	m->masked += a->masked;
	m->unmasked += a->unmasked;
	m->overmasked += a->overmasked;
}

static json_t *mask_counts_json(const struct conn_mask_counts *m)
{
	return json_pack("{s:I, s:I, s:I, s:I}", "rows", (json_int_t)m->rows, "fields_masked",
			 (json_int_t)m->masked, "fields_unmasked", (json_int_t)m->unmasked,
			 "overmasked", (json_int_t)m->overmasked);
}

/* c's queue of reply counts is empty: a grown one goes (a pipeline's peak is not kept). */
static void mask_pending_drained(struct conn_table *t, struct conn *c)
{
	c->mask_qh = c->mask_qn = 0;
	if (c->mask_qcap <= 16)
		return;
	t->mask_q_entries -= c->mask_qcap;
	free(c->mask_q);
	c->mask_q = NULL;
	c->mask_qcap = 0;
}

/*
 * A statement's "masking" object on a connection whose results a rule
 * masks: what the kernel did to the results since the last statement,
 * or, on an encrypted connection let through, that its rows passed as
 * they were.
 */
static json_t *mask_json(struct conn *c, const struct dbw_stmt *s)
{
	json_t *j;

	if (c->mask_off)
		return json_pack("{s:b, s:s, s:I}", "applied", 0, "reason", "encrypted",
				 "rows_unmasked", (json_int_t)(s->has_rows ? s->rows : 0));
	if (c->proto == DBW_PROTO_REDIS) {
		/* the counts of the replies up to this statement's own (none: queued) */
		struct conn_mask_counts m = {};
		unsigned k = c->mask_qh;

		while (s->resp_end && k < c->mask_qn && c->mask_q[k].off <= s->resp_end)
			mask_add_counts(&m, &c->mask_q[k++].m);
		c->mask_qh = k;
		if (c->mask_qh == c->mask_qn)
			mask_pending_drained(c->t, c);
		j = mask_counts_json(&m);
		json_object_set_new(j, "applied", json_true());
		return j;
	}
	j = mask_counts_json(&c->mask_next);
	json_object_set_new(j, "applied", json_true());
	memset(&c->mask_next, 0, sizeof(c->mask_next));
	return j;
}

/* Stitcher callback: one statement crossed the connection. */
static void on_statement(void *ctx, const struct dbw_stmt *s)
{
	struct conn *c = ctx;
	struct conn_table *t = c->t;
	struct conn_decision out = {};
	struct sql_analysis a;
	json_t *ev, *objs, *types, *dec;

	if (s->analysis)
		a = *s->analysis;
	else if (c->proto == DBW_PROTO_MYSQL)
		mysql_analyze(t->my, s->text, s->text_len, s->truncated, &a);
	else
		sql_analyze(t->an, s->text, s->text_len, s->truncated, &a);
	dec = decide(c, s, &a, &out);
	{
		int act = policy_action(json_string_value(json_object_get(dec, "action")));

		t->st.by_action[act < 0 ? DBW_ACT_ALLOW : act]++;
		t->st.by_proto[c->proto & 3][act < 0 ? DBW_ACT_ALLOW : act]++;
	}
	objs = json_array();
	for (size_t i = 0; i < a.nobjects; i++)
		json_array_append_new(objs, json_str_or_null(a.objects[i]));
	types = json_array();
	for (uint32_t i = 0; i < s->nparam_types && i < DBW_MAX_PARAM_TYPES; i++)
		json_array_append_new(types, json_integer(s->param_types[i]));

	ev = conn_event(c, "statement", s->start_ns);
	if (ev) {
		json_object_set_new(
			ev, "statement",
			json_pack("{s:o, s:s, s:s, s:o, s:s, s:o, s:{s:I, s:o}, s:b, s:b, s:I}",
				  "text", statement_text(t, s, &a), "fingerprint", a.fingerprint,
				  "verb", a.verb ? a.verb : "UNKNOWN", "objects", objs, "mode",
				  s->mode == DBW_MODE_EXTENDED ? "extended" : "simple", "prepared",
				  s->prepared_name ? json_str_safe(s->prepared_name,
								   strlen(s->prepared_name)) :
						     json_null(),
				  "params", "count", (json_int_t)s->nparams, "types", types, "copy",
				  s->is_copy, "truncated", s->truncated, "bytes",
				  (json_int_t)s->text_full_len));
		json_object_set_new(
			ev, "outcome",
			json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o}", "status",
				  out.not_sent && s->status == DBW_STMT_UNKNOWN ?
					  "blocked" :
					  status_name(s->status),
				  "tag", json_str_or_null(s->tag), "rows",
				  s->has_rows ? json_integer((json_int_t)s->rows) : json_null(),
				  "sqlstate", json_str_or_null(s->sqlstate), "message",
				  error_text(t, s->error_message), "detail",
				  error_text(t, s->error_detail), "duration_us",
				  s->end_ns && s->end_ns >= s->start_ns ?
					  json_integer(
						  (json_int_t)((s->end_ns - s->start_ns) / 1000)) :
					  json_null()));
		json_object_set_new(ev, "decision", dec);
		if (c->masked)
			json_object_set_new(ev, "masking", mask_json(c, s));
	} else {
		json_decref(objs);
		json_decref(types);
		json_decref(dec);
	}
	conn_emit(c, ev);
	c->statements++;
	t->st.statements++;
	if (out.alert_kind)
		alert(t, c, out.alert_kind, out.alert);
	if (out.reset)
		conn_reset(c, "policy on_mismatch: reset");
}

static void on_session(void *ctx, const char *user, const char *database, const char *app)
{
	struct conn *c = ctx;

	snprintf(c->db_user, sizeof(c->db_user), "%s", user ? user : "");
	snprintf(c->database, sizeof(c->database), "%s", database ? database : "");
	snprintf(c->app, sizeof(c->app), "%s", app ? app : "");
	conn_rebuild_json(c);
	guard_changed(c);
}

static void on_encrypted(void *ctx)
{
	struct conn *c = ctx;

	c->tls = true;
	conn_rebuild_json(c);
}

static void on_unparsed(void *ctx, const char *reason)
{
	struct conn *c = ctx;

	if (c->unparsed)
		return;
	c->unparsed = true;
	c->t->st.unparsed++;
	alert(c->t, c, "connection_unparsed", reason);
}

/* Stitcher callback: a statement answered whose request an earlier daemon read. */
static void on_lost(void *ctx, uint64_t ts)
{
	struct conn *c = ctx;
	json_t *ev = conn_event(c, "loss", ts);

	c->t->st.lost_statements++;
	if (ev)
		json_object_set_new(ev, "loss",
				    json_pack("{s:s, s:s, s:i}", "reason", "agent_restart",
					      "counter", "statements_in_handover", "count", 1));
	conn_emit(c, ev);
}

static const struct dbw_stitch_ops stitch_ops = {
	.statement = on_statement,
	.session = on_session,
	.encrypted = on_encrypted,
	.unparsed = on_unparsed,
	.lost = on_lost,
};

static void conn_destroy(struct conn_table *t, struct conn *c)
{
	struct conn **pp = &t->buckets[bucket_of(t, c->id)];

	while (*pp && *pp != c)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = c->hnext;
	lru_unlink(t, c);
	if (c->sc)
		c->sc->destroy(c->stitcher);
	json_decref(c->j_conn);
	json_decref(c->j_actor);
	workload_release(&c->wl);
	free(c->tail);
	t->mask_q_entries -= c->mask_qcap;
	free(c->mask_q);
	free(c);
	t->st.open--;
}

/*
 * The connection ends: flush its stitcher (pending requests become UNKNOWN
 * statements), emit connection_close with its totals, free it.
 */
static void conn_finish(struct conn_table *t, struct conn *c, uint64_t ts, const uint64_t *bytes)
{
	json_t *ev;

	if (c->stitcher)
		c->sc->close(c->stitcher, ts);
	/* (one this agent reset during its handshake had nothing to read) */
	if (c->tls && !c->tls_plain && !c->reset)
		on_unparsed(c, "encrypted: no plaintext seen (TLS library not probed)");
	for (unsigned i = 0; i < c->nverdicts; i++)
		verdict_retire(c, &c->verdicts[i]);
	c->nverdicts = 0;
	ev = conn_event(c, "connection_close", ts);
	if (ev) {
		json_t *st = json_pack("{s:I, s:I, s:I}", "statements", (json_int_t)c->statements,
				       "bytes_to_server", (json_int_t)bytes[DBW_DIR_TO_SERVER],
				       "bytes_to_client", (json_int_t)bytes[DBW_DIR_TO_CLIENT]);

		if (c->masked)
			json_object_set_new(st, "masking", mask_counts_json(&c->mask_total));
		json_object_set_new(ev, "stats", st);
	}
	conn_emit(c, ev);
	log_debug("connection %llu closed: %llu statements", (unsigned long long)c->id,
		  (unsigned long long)c->statements);
	conn_destroy(t, c);
}

static struct conn *conn_create(struct conn_table *t, uint64_t id, const struct dbw_identity *who,
				uint8_t proto)
{
	struct conn *c;
	size_t b;

	if (t->st.open >= t->max_conns && t->lru_tail) {
		/* bounded memory: the least recently active one goes, counted and said */
		struct conn *old = t->lru_tail;
		uint64_t bytes[2] = { old->expect[0], old->expect[1] };

		t->st.evicted++;
		alert(t, old, "connection_evicted", "connection table full");
		conn_finish(t, old, 0, bytes);
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->id = id;
	c->t = t;
	c->who = *who;
	c->proto = proto;
	c->sc = stitcher_of(proto);
	if (c->sc)
		c->stitcher = c->sc->create(&stitch_ops, c);
	b = bucket_of(t, id);
	c->hnext = t->buckets[b];
	t->buckets[b] = c;
	lru_push(t, c);
	t->st.open++;
	t->st.opened++;
	return c;
}

/* Addresses and the reset tuple. */
static void conn_set_tuple(struct conn *c, const struct sockdiag_tuple *tp)
{
	c->tuple = *tp;
	format_addr(c->client, sizeof(c->client), tp->family, tp->client_addr, tp->client_port);
	format_addr(c->server, sizeof(c->server), tp->family, tp->server_addr, tp->server_port);
	conn_rebuild_json(c);
}

/* The tuple of a CONN_OPEN record. */
static struct sockdiag_tuple open_tuple(const struct dbw_rec_conn_open *r)
{
	struct sockdiag_tuple tp = { .family = r->family,
				     .client_port = r->client_port,
				     .server_port = r->server_port,
				     .cookie = r->hdr.conn_id };

	memcpy(tp.client_addr, r->client_addr, 16);
	memcpy(tp.server_addr, r->server_addr, 16);
	return tp;
}

static void on_open(struct conn_table *t, const struct dbw_rec_conn_open *r)
{
	struct conn *c = conn_find(t, r->hdr.conn_id);
	bool resumed = r->flags & DBW_OPEN_F_RESUMED;
	struct sockdiag_tuple tp = open_tuple(r);
	json_t *ev;

	if (resumed && c && !c->partial)
		return; /* known already */
	if (resumed && c) {
		/* learnt from its data: now the actor and the tuple */
		c->who = r->who;
		c->partial = false;
		conn_set_tuple(c, &tp);
		conn_build_actor(c);
		guard_changed(c);
		return;
	}
	if (c) {
		/* a cookie is never reused within a boot: a stale entry, replace it */
		uint64_t bytes[2] = { c->expect[0], c->expect[1] };

		conn_finish(t, c, r->hdr.ts_ns, bytes);
	}
	c = conn_create(t, r->hdr.conn_id, &r->who, r->proto);
	if (!c)
		return;
	conn_set_tuple(c, &tp);
	conn_build_actor(c);
	if (resumed) {
		/* its connection_open came from an earlier daemon; its stream goes on */
		c->resumed = true;
		if (c->sc)
			c->sc->resume(c->stitcher);
	} else {
		ev = conn_event(c, "connection_open", r->hdr.ts_ns);
		conn_emit(c, ev);
	}
	log_debug("connection %llu %s: pid %u (%.16s) uid %u to port %u", (unsigned long long)c->id,
		  resumed ? "resumed" : "opened", r->who.pid, r->who.comm, r->who.uid,
		  tp.server_port);
	guard_changed(c);
}

/* Why the kernel dropped a send, for the connection_reset alert. */
static const char *verdict_reset_reason(uint8_t flags)
{
	if ((flags & DBW_VERDICT_F_FAILED) && (flags & DBW_VERDICT_F_TLS))
		return "encrypted through a TLS library dbwarden does not probe, and "
		       "defaults.unparsed is block";
	if (flags & DBW_VERDICT_F_FAILED)
		return "the guard could not rewrite a blocked message";
	return "a TLS write was blocked (ciphertext cannot be rewritten)";
}

/* The guard acted on a message (or could not): remember it for its statement. */
static void on_verdict(struct conn_table *t, const struct dbw_rec_verdict *r)
{
	struct conn *c = conn_find(t, r->hdr.conn_id);
	struct conn_verdict *v;

	t->st.verdicts++;
	if (!c)
		return;
	if (r->flags & (DBW_VERDICT_F_FAILED | DBW_VERDICT_F_TLS) && !c->reset_asked) {
		/* the kernel dropped a send it could not answer: never leave the client hanging */
		c->reset_asked = true;
		conn_reset(c, verdict_reset_reason(r->flags));
	}
	if (r->flags & DBW_VERDICT_F_FAILED)
		return;
	if (c->nverdicts == CONN_VERDICTS) {
		verdict_retire(c, &c->verdicts[0]);
		memmove(c->verdicts, c->verdicts + 1, sizeof(c->verdicts[0]) * (CONN_VERDICTS - 1));
		c->nverdicts--;
	}
	v = &c->verdicts[c->nverdicts++];
	v->stream_off = r->stream_off;
	v->action = r->action;
	v->rule = r->rule;
	v->flags = r->flags;
	v->verbs = r->verbs;
	v->lex_flags = r->lex_flags;
	v->confirmed = false;
	v->shape = r->shape;
}

/*
 * The connection's first plaintext record from its TLS library: parsing
 * restarts on that stream (it begins with the startup message; the bytes
 * seen so far were SSLRequest, its answer and the handshake).
 */
static void conn_start_tls(struct conn *c)
{
	c->tls_plain = true;
	c->tls = true;
	c->expect[0] = c->expect[1] = 0;
	if (c->sc) {
		c->sc->destroy(c->stitcher);
		c->stitcher = c->sc->create(&stitch_ops, c);
	}
	conn_rebuild_json(c);
}

/* uid and gid (real) of pid, from /proc. 0 or -1. */
static int proc_ids(uint32_t pid, uint32_t *uid, uint32_t *gid)
{
	char path[64], line[256];
	int found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%u/status", pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		found += sscanf(line, "Uid: %u", uid) == 1;
		found += sscanf(line, "Gid: %u", gid) == 1;
	}
	fclose(f);
	return found == 2 ? 0 : -1;
}

/* The cgroup v2 id (its directory's inode) of pid. 0 when unknown. */
static uint64_t proc_cgroup_id(const struct identity *id, uint32_t pid)
{
	char path[PATH_MAX], line[PATH_MAX - 64];
	uint64_t cgid = 0;
	struct stat sb;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%u/cgroup", pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3))
			continue;
		line[strcspn(line, "\n")] = 0;
		snprintf(path, sizeof(path), "%s%s", identity_mount(id), line + 3);
		if (!stat(path, &sb))
			cgid = sb.st_ino;
	}
	fclose(f);
	return cgid;
}

/*
 * A connection an earlier daemon saw open (the programs were adopted):
 * find its socket by cookie (sock_diag, one dump shared by the lookups of
 * a moment) for the tuple and owner, and its sender's ids in /proc. 0, or
 * -1 when the socket is gone.
 */
static int resume_lookup(struct conn_table *t, struct conn *c)
{
	struct timespec now;
	uint64_t ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (uint64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < t->nsnap; i++) {
			if (t->snap[i].t.cookie != c->id)
				continue;
			conn_set_tuple(c, &t->snap[i].t);
			c->who.uid = t->snap[i].uid;
			if (c->who.pid)
				proc_ids(c->who.pid, &c->who.uid, &c->who.gid);
			c->who.cgroup_id = c->who.pid ? proc_cgroup_id(t->id, c->who.pid) : 0;
			return 0;
		}
		if (pass || (t->snap && ms - t->snap_ms < 100))
			break;
		free(t->snap);
		t->nsnap = sockdiag_dump(&t->snap);
		if (t->nsnap < 0)
			t->nsnap = 0;
		t->snap_ms = ms;
	}
	return -1;
}

/* The protocol of a watched server port, or 0. */
static uint8_t port_proto(const struct conn_table *t, uint16_t port)
{
	for (int i = 0; i < t->nports; i++)
		if (t->ports[i] == port)
			return t->port_proto[i];
	return 0;
}

/* Parse c as proto from now on (its stitcher replaced: nothing was fed yet). */
static void conn_set_proto(struct conn *c, uint8_t proto)
{
	if (!proto || proto == c->proto)
		return;
	if (c->sc)
		c->sc->destroy(c->stitcher);
	c->stitcher = NULL;
	c->proto = proto;
	c->sc = stitcher_of(proto);
	if (c->sc)
		c->stitcher = c->sc->create(&stitch_ops, c);
	conn_rebuild_json(c);
}

/* A DATA record for a connection whose CONN_OPEN was lost (ring buffer full). */
static struct conn *conn_adopt(struct conn_table *t, const struct dbw_rec_data *r)
{
	struct dbw_identity who = { .pid = r->pid };
	struct conn *c;
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%u/comm", r->pid);
	f = r->pid ? fopen(path, "r") : NULL;
	if (f) {
		if (fgets(who.comm, sizeof(who.comm), f))
			who.comm[strcspn(who.comm, "\n")] = 0;
		fclose(f);
	}
	/* PostgreSQL until its socket names its server port (resume_lookup) */
	c = conn_create(t, r->hdr.conn_id, &who, DBW_PROTO_POSTGRES);
	if (!c)
		return NULL;
	c->partial = true;
	conn_rebuild_json(c);
	if (!resume_lookup(t, c)) {
		/* the socket is still there: its tuple, owner and protocol */
		conn_set_proto(c, port_proto(t, c->tuple.server_port));
		c->partial = false;
		if (t->resuming) {
			/*
			 * After a restart: an earlier daemon read its start, or a part
			 * of it. Even a first record at offset 0 (a reply) does not say
			 * the other direction starts there: each direction resumes at
			 * its own first offset (the stitchers take 0 as the start).
			 */
			c->resumed = true;
			if (c->sc)
				c->sc->resume(c->stitcher);
		}
	}
	conn_build_actor(c);
	/* after a restart the earlier daemon reported the open; else its record was lost */
	if (!t->resuming)
		alert(t, c, "connection_partial",
		      c->partial ?
			      "connection_open record lost; identity incomplete" :
			      "connection_open record lost; identity from the socket and /proc");
	return c;
}

/* Gap or overlap check by stream offset, then hand the bytes to the stitcher. */
static void on_data(struct conn_table *t, const struct dbw_rec_data *r, size_t size)
{
	struct conn *c = conn_find(t, r->hdr.conn_id);
	const uint8_t *p = r->data;
	uint64_t off = r->stream_off;
	size_t len = r->len;
	int dir = r->dir;

	if (dir != DBW_DIR_TO_SERVER && dir != DBW_DIR_TO_CLIENT) {
		t->st.bad_records++;
		return;
	}
	if (!c && (r->flags & DBW_DATA_F_TLS)) {
		/* a session outliving its connection's table entry: no actor to give it */
		t->st.bad_records++;
		return;
	}
	if (!c)
		c = conn_adopt(t, r);
	if (!c)
		return;
	if (t->resuming && c->partial && !c->expect[0] && !c->expect[1] && off && c->sc &&
	    !c->resumed) {
		/* mid-stream: the programs outlived a daemon that read the start */
		c->resumed = true;
		c->sc->resume(c->stitcher);
	}
	if (c->resumed && !c->expect[dir]) {
		/* where this daemon's reading begins: no gap, and offsets as the kernel's */
		c->expect[dir] = off;
		if (c->sc)
			c->sc->resume_at(c->stitcher, dir, off);
	}
	lru_touch(t, c);
	if (!(r->flags & DBW_DATA_F_TLS) != !c->tls_plain) {
		if (c->tls_plain)
			return; /* ciphertext of a connection read at its TLS library */
		conn_start_tls(c);
	}
	if (off > c->expect[dir]) {
		uint64_t gap = off - c->expect[dir];

		t->st.gaps++;
		t->st.gap_bytes += gap;
		if (c->stitcher)
			c->sc->gap(c->stitcher, dir, gap, r->hdr.ts_ns);
	} else if (off < c->expect[dir]) {
		uint64_t dup = c->expect[dir] - off;

		if (dup >= len)
			return;
		p += dup;
		len -= dup;
		off += dup;
	}
	c->expect[dir] = off + len;
	if (c->stitcher)
		c->sc->feed(c->stitcher, dir, p, len, r->hdr.ts_ns, r->pid);
	else if (!c->unparsed)
		on_unparsed(c, "protocol_not_supported");
}

static void on_close(struct conn_table *t, const struct dbw_rec_conn_close *r)
{
	struct conn *c = conn_find(t, r->hdr.conn_id);

	if (!c)
		return;
	if (c->tls_plain) {
		/* the totals count ciphertext; the plaintext streams were checked as they came */
		conn_finish(t, c, r->hdr.ts_ns, c->expect);
		return;
	}
	for (int dir = 0; dir < 2; dir++) {
		if (r->bytes[dir] > c->expect[dir]) {
			uint64_t gap = r->bytes[dir] - c->expect[dir];

			t->st.gaps++;
			t->st.gap_bytes += gap;
			if (c->stitcher)
				c->sc->gap(c->stitcher, dir, gap, r->hdr.ts_ns);
		}
	}
	{
		uint64_t bytes[2] = { r->bytes[0], r->bytes[1] };

		conn_finish(t, c, r->hdr.ts_ns, bytes);
	}
}

static void mask_add(struct conn_mask_counts *m, const struct dbw_rec_mask *r)
{
	m->rows += r->rows;
	m->masked += r->masked;
	m->unmasked += r->unmasked;
	m->overmasked += r->overmasked;
}

/*
 * The kernel's result masking reports: a result's counts (fields passed
 * unmasked are an alert each time: never silent), an encrypted connection
 * (refused, or let through unmasked), framing lost (reset when blocked).
 */
/*
 * A MASK record of the server side (mask.bpf.h): a local server's
 * connection, which userspace does not follow otherwise. Whatever could
 * not be masked is an alert naming the client; a blocked one is reset.
 */
static void on_mask_server(struct conn_table *t, const struct dbw_rec_mask *r)
{
	int fam = r->family == AF_INET6 ? AF_INET6 : AF_INET, v6 = fam == AF_INET6;
	char peer[INET6_ADDRSTRLEN], local[INET6_ADDRSTRLEN], detail[256];
	char client[INET6_ADDRSTRLEN + 16], server[INET6_ADDRSTRLEN + 16], id[24];
	char where[2 * INET6_ADDRSTRLEN + 64];
	const char *what = NULL;
	json_t *conn;
	int e;

	inet_ntop(fam, r->peer_addr, peer, sizeof(peer));
	inet_ntop(fam, r->local_addr, local, sizeof(local));
	snprintf(client, sizeof(client), v6 ? "[%s]:%u" : "%s:%u", peer, r->peer_port);
	snprintf(server, sizeof(server), v6 ? "[%s]:%u" : "%s:%u", local, r->local_port);
	snprintf(where, sizeof(where), "server side, client %s to %s", client, server);
	snprintf(id, sizeof(id), "%llu", (unsigned long long)r->hdr.conn_id);
	conn = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", id, "protocol", "postgres", "side",
			 "server", "client", client, "server", server);
	switch (r->kind) {
	case DBW_MASK_REC_RESULT:
		if (r->unmasked) {
			snprintf(detail, sizeof(detail),
				 "%u values a masking rule covers passed unmasked (on_unmaskable: "
				 "allow): rows without a RowDescription, columns past the 64th, or "
				 "COPY rows",
				 r->unmasked);
			alert_at(t, conn, "mask_unmasked", detail, where);
		}
		break;
	case DBW_MASK_REC_TLS:
		what = !r->blocked ? "encrypted connection let through: its results pass unmasked "
				     "(on_unmaskable: allow)" :
		       r->msg_type == 'S' ?
				     "encrypted connection refused: its results would be "
				     "masked (on_unmaskable: block); the client got an error" :
				     "encrypted connection refused: its results would be "
				     "masked (on_unmaskable: block)";
		break;
	case DBW_MASK_REC_JOIN_FAIL:
		what = "a masking rule may select this connection but it could not carry the "
		       "masking program (map full)";
		break;
	case DBW_MASK_REC_LOST:
		if (r->msg_type == DBW_MASK_LOST_UNSEEN)
			what = r->blocked ? "the server sent bytes the masking program did not "
					    "see (on_unmaskable: block)" :
					    "the server sent bytes the masking program did not "
					    "see: later results pass unmasked (on_unmaskable: "
					    "allow)";
		else
			what = r->blocked ? "result framing lost (on_unmaskable: block)" :
					    "result framing lost: later results pass unmasked "
					    "(on_unmaskable: allow)";
		break;
	}
	if (what)
		alert_at(t, conn, "mask_unmaskable", what, where);
	/* refused in-protocol, the server closes it itself */
	if (what && r->blocked && !(r->kind == DBW_MASK_REC_TLS && r->msg_type == 'S')) {
		/* in the server's network namespace, which may not be the agent's */
		uint64_t id = r->hdr.conn_id;

		e = sockdiag_destroy_cookies(&id, 1);
		t->st.resets++;
		snprintf(detail, sizeof(detail), "its results cannot be masked; reset %s",
			 e < 0 ? strerror(-e) :
			 e     ? "done" :
				 "not found (closed)");
		alert_at(t, conn, "connection_reset", detail, where);
	}
	json_decref(conn);
}

/*
 * A Redis reply's place in c's queue of counts not reported yet: at its
 * end, the queue moved down or grown as needed. Past
 * CONN_MASK_PENDING_MAX (all queues: CONN_MASK_PENDING_ALL; or out of
 * memory) the newest takes them: the
 * connection's totals stay right, a command's own may not, and it is
 * counted (mask_pending_merged).
 */
static struct conn_mask_pending *mask_pending_new(struct conn_table *t, struct conn *c)
{
	struct conn_mask_pending *q;

	if (c->mask_qn == c->mask_qcap && c->mask_qh) {
		memmove(c->mask_q, c->mask_q + c->mask_qh,
			(c->mask_qn - c->mask_qh) * sizeof(c->mask_q[0]));
		c->mask_qn -= c->mask_qh;
		c->mask_qh = 0;
	}
	if (c->mask_qn == c->mask_qcap && c->mask_qcap < CONN_MASK_PENDING_MAX) {
		unsigned cap = c->mask_qcap ? c->mask_qcap * 2 : 16;

		q = t->mask_q_entries + cap - c->mask_qcap <= CONN_MASK_PENDING_ALL ?
			    realloc(c->mask_q, cap * sizeof(*q)) :
			    NULL;
		if (q) {
			t->mask_q_entries += cap - c->mask_qcap;
			c->mask_q = q;
			c->mask_qcap = cap;
		}
	}
	if (c->mask_qn == c->mask_qcap) {
		t->st.mask_pending_merged++;
		return c->mask_qn ? &c->mask_q[c->mask_qn - 1] : NULL;
	}
	q = &c->mask_q[c->mask_qn++];
	memset(q, 0, sizeof(*q));
	return q;
}

static void on_mask(struct conn_table *t, const struct dbw_rec_mask *r)
{
	struct conn *c = conn_find(t, r->hdr.conn_id);
	char detail[256];

	t->st.mask_records++;
	if (r->side == DBW_MASK_SIDE_SERVER) {
		on_mask_server(t, r);
		return;
	}
	if (!c)
		return;
	c->masked = true;
	switch (r->kind) {
	case DBW_MASK_REC_RESULT:
		mask_add(&c->mask_total, r);
		if (c->proto == DBW_PROTO_REDIS) {
			struct conn_mask_pending *q = mask_pending_new(t, c);

			if (q) {
				q->off = r->stream_off;
				mask_add(&q->m, r);
			}
		} else {
			mask_add(&c->mask_next, r);
		}
		if (r->unmasked) {
			snprintf(
				detail, sizeof(detail),
				"%u values a masking rule covers passed unmasked (on_unmaskable: "
				"allow)%s",
				r->unmasked,
				c->proto == DBW_PROTO_POSTGRES ?
					": rows without a RowDescription, columns past the 64th, or "
					"COPY rows" :
				c->proto == DBW_PROTO_MYSQL ?
					": binary result set rows (prepared statements), no column "
					"definitions, or columns past the 64th" :
					"");
			alert(t, c, "mask_unmasked", detail);
		}
		break;
	case DBW_MASK_REC_TLS:
		if (!r->blocked)
			c->mask_off = true;
		if (r->blocked && r->msg_type != 'S') {
			/* no in-protocol refusal (Redis): the server's handshake was dropped */
			alert(t, c, "mask_unmaskable",
			      "encrypted connection refused: its results would be masked "
			      "(on_unmaskable: block) and an encrypted stream cannot be; the "
			      "server's TLS handshake was dropped and the connection reset");
			conn_reset(c, "an encrypted connection cannot be masked");
			break;
		}
		alert(t, c, "mask_unmaskable",
		      r->blocked ? "encrypted connection refused: its results would be masked "
				   "(on_unmaskable: block); the client got an error" :
				   "encrypted connection let through: its results pass unmasked "
				   "(on_unmaskable: allow)");
		break;
	case DBW_MASK_REC_JOIN_FAIL:
		alert(t, c, "mask_unmaskable",
		      "a masking rule selects this connection but it could not carry the masking "
		      "program (map full)");
		conn_reset(c, "its results cannot be masked");
		break;
	case DBW_MASK_REC_LOST:
		if (c->proto == DBW_PROTO_MYSQL && r->msg_type == DBW_MASK_LOST_MYSQL_BINARY)
			/* mask_mysql.bpf.h: a binary result set with values a rule covers */
			alert(t, c, "mask_unmaskable",
			      "binary result set (prepared statement) with values a masking rule "
			      "covers: connection reset (on_unmaskable: block)");
		else if (c->proto == DBW_PROTO_REDIS && r->msg_type == DBW_MASK_LOST_REDIS_KEYS)
			/* mask_resp.bpf.h: after SUBSCRIBE, MONITOR, CLIENT REPLY, an unfollowed send */
			alert(t, c, "mask_unmaskable",
			      r->blocked ?
				      "replies can no longer be paired with their commands and "
				      "one may name a key a masking rule masks: connection "
				      "reset (on_unmaskable: block)" :
				      "replies can no longer be paired with their commands and "
				      "one may name a key a masking rule masks: later results "
				      "pass unmasked (on_unmaskable: allow)");
		else
			alert(t, c, "mask_unmaskable",
			      r->blocked ? "result framing lost: connection reset (on_unmaskable: "
					   "block)" :
					   "result framing lost: later results pass unmasked "
					   "(on_unmaskable: allow)");
		if (r->blocked)
			conn_reset(c, "result masking lost its framing");
		else
			c->mask_off = true;
		break;
	}
}

/* Redis replies' counts, gathered by the verdict: each as its own RESULT record. */
static void on_mask_replies(struct conn_table *t, const struct dbw_rec_mask_replies *r)
{
	for (uint32_t i = 0; i < r->n; i++) {
		struct dbw_rec_mask m = { .hdr = r->hdr,
					  .stream_off = r->e[i].stream_off,
					  .rules = r->rules,
					  .kind = DBW_MASK_REC_RESULT,
					  .msg_type = r->e[i].msg_type,
					  .side = DBW_MASK_SIDE_CLIENT,
					  .rows = r->e[i].rows,
					  .masked = r->e[i].masked,
					  .unmasked = r->e[i].unmasked,
					  .overmasked = r->e[i].overmasked };

		on_mask(t, &m);
	}
}

void conns_reset_server(struct conn_table *t, const uint64_t *ids, int n)
{
	int e = sockdiag_destroy_cookies(ids, n);
	char detail[200];
	json_t *ev;

	if (e > 0)
		t->st.resets += e;
	snprintf(detail, sizeof(detail),
		 "agent stopping: %d server-side masked connections could no longer be masked; "
		 "reset %d%s%s",
		 n, e > 0 ? e : 0, e < 0 ? ": " : "", e < 0 ? strerror(-e) : "");
	ev = event_new(t->em, "alert", 0);
	event_set_alert(ev, "connection_reset", detail, "server side");
	event_emit(t->em, ev);
}

int conns_reset(struct conn_table *t, uint64_t id, const char *why)
{
	struct conn *c = conn_find(t, id);

	if (!c)
		return -ENOENT;
	conn_reset(c, why);
	return 0;
}

int conns_record(struct conn_table *t, const void *data, size_t size)
{
	const struct dbw_rec_hdr *h = data;

	if (size < sizeof(*h) || h->version != DBW_ABI_VERSION || h->size > size) {
		t->st.bad_records++;
		return 0;
	}
	switch (h->type) {
	case DBW_REC_CONN_OPEN:
		if (h->size >= sizeof(struct dbw_rec_conn_open))
			on_open(t, data);
		else
			t->st.bad_records++;
		break;
	case DBW_REC_DATA: {
		const struct dbw_rec_data *r = data;

		if (h->size >= sizeof(*r) && r->len <= h->size - sizeof(*r))
			on_data(t, r, size);
		else
			t->st.bad_records++;
		break;
	}
	case DBW_REC_CONN_CLOSE:
		if (h->size >= sizeof(struct dbw_rec_conn_close))
			on_close(t, data);
		else
			t->st.bad_records++;
		break;
	case DBW_REC_VERDICT:
		if (h->size >= sizeof(struct dbw_rec_verdict))
			on_verdict(t, data);
		else
			t->st.bad_records++;
		break;
	case DBW_REC_EXEC:
		break; /* the TLS library discovery's, not a connection's */
	case DBW_REC_MASK:
		if (h->size >= sizeof(struct dbw_rec_mask))
			on_mask(t, data);
		else
			t->st.bad_records++;
		break;
	case DBW_REC_MASK_REPLIES:
		if (h->size >= offsetof(struct dbw_rec_mask_replies, e) &&
		    ((const struct dbw_rec_mask_replies *)data)->n <= DBW_MASK_REPLIES &&
		    h->size >= offsetof(struct dbw_rec_mask_replies, e) +
				       ((const struct dbw_rec_mask_replies *)data)->n *
					       sizeof(struct dbw_mask_reply))
			on_mask_replies(t, data);
		else
			t->st.bad_records++;
		break;
	default:
		t->st.bad_records++;
	}
	return 0;
}

struct conn_table *conns_new(struct emitter *em, struct identity *id, struct sql_analyzer *an,
			     size_t max_conns)
{
	struct conn_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->em = em;
	t->id = id;
	t->an = an;
	t->max_conns = max_conns ? max_conns : 65536;
	t->nbuckets = 1;
	while (t->nbuckets < t->max_conns)
		t->nbuckets <<= 1;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	t->my = mysql_analyzer_new();
	if (!t->buckets || !t->my) {
		mysql_analyzer_free(t->my);
		free(t->buckets);
		free(t);
		return NULL;
	}
	t->mask_default.text_mode = POLICY_TEXT_NORMALIZED;
	return t;
}

void conns_flush_all(struct conn_table *t)
{
	/* pending requests of live connections become UNKNOWN statements; the
	 * connections themselves stay open, so no connection_close is invented */
	for (struct conn *c = t->lru_head; c; c = c->lnext)
		if (c->stitcher)
			c->sc->close(c->stitcher, 0);
}

void conns_set_resuming(struct conn_table *t)
{
	t->resuming = true;
}

void conns_set_ports(struct conn_table *t, const uint16_t *ports, const uint8_t *protos, int nports)
{
	t->nports = nports < CONN_MAX_PORTS ? nports : CONN_MAX_PORTS;
	memcpy(t->ports, ports, t->nports * sizeof(*ports));
	memcpy(t->port_proto, protos, t->nports * sizeof(*protos));
}

size_t conns_pending(const struct conn_table *t)
{
	size_t n = 0;

	for (const struct conn *c = t->lru_head; c; c = c->lnext)
		if (c->sc)
			n += c->sc->pending(c->stitcher);
	return n;
}

void conns_free(struct conn_table *t)
{
	if (!t)
		return;
	while (t->lru_head)
		conn_destroy(t, t->lru_head);
	free(t->snap);
	mysql_analyzer_free(t->my);
	detect_free(t->mask_default.det);
	free(t->buckets);
	free(t);
}

void conns_set_guard(struct conn_table *t, const struct conn_guard_ops *ops)
{
	if (ops)
		t->guard = *ops;
	else
		memset(&t->guard, 0, sizeof(t->guard));
}

void conns_guard_refresh(struct conn_table *t)
{
	for (struct conn *c = t->lru_head; c; c = c->lnext)
		guard_changed(c);
}

void conns_identity_refresh(struct conn_table *t)
{
	for (struct conn *c = t->lru_head; c; c = c->lnext) {
		if (!c->wl.cg.pod_uid[0] || !identity_workload_update(t->id, &c->wl))
			continue;
		conn_actor_json(c);
		guard_changed(c);
	}
}

void conns_stats(const struct conn_table *t, struct conn_stats *out)
{
	*out = t->st;
}
