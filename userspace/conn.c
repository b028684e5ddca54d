// SPDX-License-Identifier: GPL-2.0-only
/* Connection table and the glue from records to audit events. */
#include <arpa/inet.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dbwarden_abi.h"
#include "analyze.h"
#include "conn.h"
#include "event.h"
#include "identity.h"
#include "pg_conn.h"
#include "stmt.h"

struct conn {
	uint64_t id;
	struct conn *hnext;	       /* hash chain */
	struct conn *lprev, *lnext;    /* activity list, most recent first */
	struct conn_table *t;
	struct dbw_identity who;
	uint8_t proto;
	bool tls;
	bool unparsed;
	bool partial; /* CONN_OPEN was lost: no tuple, identity from the sender */
	char client[64], server[64];
	char db_user[64], database[64], app[64];
	uint64_t expect[2]; /* next stream offset per direction */
	uint64_t statements;
	json_t *j_conn;	 /* cached "connection" object */
	json_t *j_actor; /* cached "actor" object */
	struct pg_conn *pg;
};

struct conn_table {
	struct emitter *em;
	struct identity *id;
	struct sql_analyzer *an;
	struct conn **buckets;
	size_t nbuckets; /* power of two */
	size_t max_conns;
	struct conn *lru_head, *lru_tail;
	struct conn_stats st;
};

static const char *proto_name(uint8_t p)
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

/* The "connection" object of every event of c, rebuilt when the session is known. */
static void conn_rebuild_json(struct conn *c)
{
	char id[24];

	json_decref(c->j_conn);
	snprintf(id, sizeof(id), "%llu", (unsigned long long)c->id);
	c->j_conn = json_pack("{s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:o}", "id", id, "protocol",
			      proto_name(c->proto), "tls", c->tls, "client",
			      json_str_or_null(c->client), "server", json_str_or_null(c->server),
			      "db_user", json_str_or_null(c->db_user), "database",
			      json_str_or_null(c->database), "application_name",
			      json_str_or_null(c->app));
}

static void conn_build_actor(struct conn *c)
{
	struct identity *id = c->t->id;
	char exe[PATH_MAX];

	identity_exe(c->who.pid, exe, sizeof(exe));
	c->j_actor = json_pack("{s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:n, s:n}", "pid",
			       (json_int_t)c->who.pid, "tid", (json_int_t)c->who.tid, "uid",
			       (json_int_t)c->who.uid, "gid", (json_int_t)c->who.gid, "user",
			       json_str_or_null(identity_user(id, c->who.uid)), "comm",
			       json_str_safe(c->who.comm, strnlen(c->who.comm, sizeof(c->who.comm))),
			       "exe", json_str_or_null(exe), "cgroup",
			       json_str_or_null(identity_cgroup(id, c->who.cgroup_id)),
			       "container_id", "pod");
}

/* Start an event about c: envelope + connection + actor. */
static json_t *conn_event(struct conn *c, const char *type, uint64_t ts)
{
	json_t *ev = event_new(c->t->em, type, ts);

	if (ev) {
		json_object_set(ev, "connection", c->j_conn);
		json_object_set(ev, "actor", c->j_actor);
	}
	return ev;
}

static void alert(struct conn_table *t, struct conn *c, const char *kind, const char *detail)
{
	json_t *ev = c ? conn_event(c, "alert", 0) : event_new(t->em, "alert", 0);

	if (ev)
		json_object_set_new(ev, "alert", json_pack("{s:s, s:s}", "kind", kind, "detail", detail));
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

/* Stitcher callback: one statement crossed the connection. */
static void on_statement(void *ctx, const struct dbw_stmt *s)
{
	struct conn *c = ctx;
	struct conn_table *t = c->t;
	struct sql_analysis a;
	json_t *ev, *objs, *types;

	sql_analyze(t->an, s->text, s->text_len, s->truncated, &a);
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
			json_pack("{s:o, s:s, s:s, s:o, s:s, s:o, s:{s:I, s:o}, s:b, s:b, s:I}", "text",
				  json_str_or_null(a.normalized), "fingerprint", a.fingerprint,
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
			json_pack("{s:s, s:o, s:o, s:o, s:o}", "status", status_name(s->status), "tag",
				  json_str_or_null(s->tag), "rows",
				  s->has_rows ? json_integer((json_int_t)s->rows) : json_null(),
				  "sqlstate", json_str_or_null(s->sqlstate), "duration_us",
				  s->end_ns && s->end_ns >= s->start_ns ?
					  json_integer((json_int_t)((s->end_ns - s->start_ns) / 1000)) :
					  json_null()));
		json_object_set_new(ev, "decision",
				    json_pack("{s:s, s:n, s:n}", "action", "allow", "rule",
					      "approval_id"));
	} else {
		json_decref(objs);
		json_decref(types);
	}
	event_emit(t->em, ev);
	c->statements++;
	t->st.statements++;
}

static void on_session(void *ctx, const char *user, const char *database, const char *app)
{
	struct conn *c = ctx;

	snprintf(c->db_user, sizeof(c->db_user), "%s", user ? user : "");
	snprintf(c->database, sizeof(c->database), "%s", database ? database : "");
	snprintf(c->app, sizeof(c->app), "%s", app ? app : "");
	conn_rebuild_json(c);
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

static const struct dbw_stitch_ops stitch_ops = {
	.statement = on_statement,
	.session = on_session,
	.encrypted = on_encrypted,
	.unparsed = on_unparsed,
};

static void conn_destroy(struct conn_table *t, struct conn *c)
{
	struct conn **pp = &t->buckets[bucket_of(t, c->id)];

	while (*pp && *pp != c)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = c->hnext;
	lru_unlink(t, c);
	pg_conn_free(c->pg);
	json_decref(c->j_conn);
	json_decref(c->j_actor);
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

	if (c->pg)
		pg_conn_close(c->pg, ts);
	ev = conn_event(c, "connection_close", ts);
	if (ev)
		json_object_set_new(ev, "stats",
				    json_pack("{s:I, s:I, s:I}", "statements",
					      (json_int_t)c->statements, "bytes_to_server",
					      (json_int_t)bytes[DBW_DIR_TO_SERVER], "bytes_to_client",
					      (json_int_t)bytes[DBW_DIR_TO_CLIENT]));
	event_emit(t->em, ev);
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
	if (proto == DBW_PROTO_POSTGRES)
		c->pg = pg_conn_new(&stitch_ops, c);
	b = bucket_of(t, id);
	c->hnext = t->buckets[b];
	t->buckets[b] = c;
	lru_push(t, c);
	t->st.open++;
	t->st.opened++;
	return c;
}

static void on_open(struct conn_table *t, const struct dbw_rec_conn_open *r)
{
	struct conn *c = conn_find(t, r->hdr.conn_id);
	json_t *ev;

	if (c) {
		/* a cookie is never reused within a boot: a stale entry, replace it */
		uint64_t bytes[2] = { c->expect[0], c->expect[1] };

		conn_finish(t, c, r->hdr.ts_ns, bytes);
	}
	c = conn_create(t, r->hdr.conn_id, &r->who, r->proto);
	if (!c)
		return;
	format_addr(c->client, sizeof(c->client), r->family, r->client_addr, r->client_port);
	format_addr(c->server, sizeof(c->server), r->family, r->server_addr, r->server_port);
	conn_rebuild_json(c);
	conn_build_actor(c);
	ev = conn_event(c, "connection_open", r->hdr.ts_ns);
	event_emit(t->em, ev);
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
	/* the port map says which protocol; without it, PostgreSQL is the only one parsed */
	c = conn_create(t, r->hdr.conn_id, &who, DBW_PROTO_POSTGRES);
	if (!c)
		return NULL;
	c->partial = true;
	conn_rebuild_json(c);
	conn_build_actor(c);
	alert(t, c, "connection_partial", "connection_open record lost; identity incomplete");
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
	if (!c)
		c = conn_adopt(t, r);
	if (!c)
		return;
	lru_touch(t, c);
	if (off > c->expect[dir]) {
		uint64_t gap = off - c->expect[dir];

		t->st.gaps++;
		t->st.gap_bytes += gap;
		if (c->pg)
			pg_conn_gap(c->pg, dir, gap, r->hdr.ts_ns);
	} else if (off < c->expect[dir]) {
		uint64_t dup = c->expect[dir] - off;

		if (dup >= len)
			return;
		p += dup;
		len -= dup;
		off += dup;
	}
	c->expect[dir] = off + len;
	if (c->pg)
		pg_conn_feed(c->pg, dir, p, len, r->hdr.ts_ns, r->pid);
	else if (!c->unparsed)
		on_unparsed(c, "protocol_not_supported");
}

static void on_close(struct conn_table *t, const struct dbw_rec_conn_close *r)
{
	struct conn *c = conn_find(t, r->hdr.conn_id);

	if (!c)
		return;
	for (int dir = 0; dir < 2; dir++) {
		if (r->bytes[dir] > c->expect[dir]) {
			uint64_t gap = r->bytes[dir] - c->expect[dir];

			t->st.gaps++;
			t->st.gap_bytes += gap;
			if (c->pg)
				pg_conn_gap(c->pg, dir, gap, r->hdr.ts_ns);
		}
	}
	{
		uint64_t bytes[2] = { r->bytes[0], r->bytes[1] };

		conn_finish(t, c, r->hdr.ts_ns, bytes);
	}
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
	if (!t->buckets) {
		free(t);
		return NULL;
	}
	return t;
}

void conns_flush_all(struct conn_table *t)
{
	/* pending requests of live connections become UNKNOWN statements; the
	 * connections themselves stay open, so no connection_close is invented */
	for (struct conn *c = t->lru_head; c; c = c->lnext)
		if (c->pg)
			pg_conn_close(c->pg, 0);
}

void conns_free(struct conn_table *t)
{
	if (!t)
		return;
	while (t->lru_head)
		conn_destroy(t, t->lru_head);
	free(t->buckets);
	free(t);
}

void conns_stats(const struct conn_table *t, struct conn_stats *out)
{
	*out = t->st;
}
