// SPDX-License-Identifier: GPL-2.0-only
/*
 * The daemon's side of the guardrails: load (and reload) the policy,
 * install its kernel share, give each connection its rules, and decide
 * every statement event: what the kernel did, checked against the exact
 * parse.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <openssl/evp.h>

#include "analyze.h"
#include "capture.h"
#include "catalog.h"
#include "conn.h"
#include "detect.h"
#include "event.h"
#include "guard.h"
#include "identity.h"
#include "k8s.h"
#include "policy.h"
#include "stmt.h"
#include "workload.h"
#include "log.h"

/* A statement held for approval, by id (dbw_approval_id of shape and actor). */
struct approval {
	uint64_t id;
	struct dbw_approval_key key;
	char rule[64], statement[256], actor[128];
	uint64_t seen, until_ns; /* until_ns: granted until (CLOCK_MONOTONIC), 0: pending */
	char approver[64];
};

#define GUARD_APPROVALS 1024

struct guard {
	struct capture *cap;
	struct emitter *em;
	char *path;
	struct policy *pol;
	uint64_t mismatches, unparsed_blocks;
	struct approval approvals[GUARD_APPROVALS]; /* the oldest is reused when full */
	unsigned napprovals, next;
	int api_fd;
	char *api_path;
	char version[17]; /* of the policy in force: SHA-256 of its file, 16 hex digits */
	int64_t loaded_unix;
	struct wl_classes *classes; /* NULL until guard_set_identity (and in replay) */
	struct conn_masking mask; /* the policy's audit-side masking */
	struct catalog *cat; /* table-qualified masking columns, read in targets' catalogs */
};

/* The detectors of p's masking section, compiled. 0, or -1 with err. */
static int masking_of(const struct policy *p, struct conn_masking *m, char *err, size_t errlen)
{
	const struct det_custom *custom;
	size_t ncustom;
	uint32_t builtin = policy_detectors(p, &custom, &ncustom);
	int bad;

	m->text_mode = policy_text_mode(p);
	m->det = detect_new(builtin, custom, ncustom, err, errlen, &bad);
	return m->det ? 0 : -1;
}

/* The policy in force changed: remember which file content and when. */
static void note_loaded(struct guard *g)
{
	unsigned char md[EVP_MAX_MD_SIZE], buf[65536];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	FILE *f = fopen(g->path, "re");
	unsigned mdlen = 0;
	size_t n;

	g->loaded_unix = time(NULL);
	snprintf(g->version, sizeof(g->version), "unknown");
	if (ctx && f && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			EVP_DigestUpdate(ctx, buf, n);
		if (EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen >= 8)
			for (int i = 0; i < 8; i++)
				snprintf(g->version + 2 * i, 3, "%02x", md[i]);
	}
	if (f)
		fclose(f);
	EVP_MD_CTX_free(ctx);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct approval *approval_find(struct guard *g, uint64_t id)
{
	for (unsigned i = 0; i < g->napprovals; i++)
		if (g->approvals[i].id == id)
			return &g->approvals[i];
	return NULL;
}

/* The columns and uids masking rules name, for the kernel: one entry per name or uid. */
struct mask_cols {
	uint64_t hash[1024];
	uint32_t rules[1024];
	unsigned n;
	uint32_t uids[1024], uid_rules[1024];
	unsigned nuids;
	uint64_t users[1024]; /* the server side's db users */
	uint32_t user_rules[1024];
	unsigned nusers;
	struct dbw_mask_key keys[POLICY_MASK_KEYS_MAX]; /* Redis keys and prefixes */
	uint32_t key_rules[POLICY_MASK_KEYS_MAX];
	unsigned nkeys;
	uint64_t key_plens;
};

static void add_mask_uid(void *ctx, uint32_t uid, uint32_t rules)
{
	struct mask_cols *mc = ctx;
	unsigned i;

	for (i = 0; i < mc->nuids && mc->uids[i] != uid; i++)
		;
	if (i == mc->nuids) {
		if (mc->nuids == sizeof(mc->uids) / sizeof(mc->uids[0]))
			return;
		mc->uids[mc->nuids] = uid;
		mc->uid_rules[mc->nuids++] = 0;
	}
	mc->uid_rules[i] |= rules;
}

/* keys[i] -> vals[i] |= rules, for the n of them (at most 1024). */
static void add_hash_rules(uint64_t *keys, uint32_t *vals, unsigned *n, uint64_t h, uint32_t rules)
{
	unsigned i;

	for (i = 0; i < *n && keys[i] != h; i++)
		;
	if (i == *n) {
		if (*n == 1024)
			return; /* the policy loader bounds rules and names well below */
		keys[*n] = h;
		vals[(*n)++] = 0;
	}
	vals[i] |= rules;
}

static void add_mask_key(struct mask_cols *mc, uint64_t h, uint32_t rules)
{
	add_hash_rules(mc->hash, mc->rules, &mc->n, h, rules);
}

/* A db user a server-side rule names (ParameterStatus session_authorization). */
static void add_mask_user(void *ctx, const char *name, uint32_t rules)
{
	struct mask_cols *mc = ctx;

	add_hash_rules(mc->users, mc->user_rules, &mc->nusers, dbw_name_hash(name, strlen(name)),
		       rules);
}

/* A column name a rule lists, qualified or not: its exact key (PostgreSQL's RowDescription). */
static void add_mask_col(void *ctx, const char *name, uint32_t rules)
{
	add_mask_key(ctx, dbw_name_hash(name, strlen(name)), rules);
}

/*
 * A column a rule lists, as MySQL's ColumnDefinition is looked up (see
 * dbw_name_key_any): bare, its case-folded key; qualified, its origin's
 * key and its column name's "any table" key.
 */
static void add_mask_mysql_col(void *ctx, const char *schema, const char *table, const char *column,
			       uint32_t rule)
{
	uint64_t ci = dbw_name_hash_ci(column, strlen(column));
	char full[200];

	if (!table) {
		add_mask_key(ctx, ci, rule);
		return;
	}
	add_mask_key(ctx, dbw_name_key_any(ci), rule);
	snprintf(full, sizeof(full), "%s%s%s.%s", schema ? schema : "", schema ? "." : "", table,
		 column);
	add_mask_key(ctx, dbw_name_hash_q(full, strlen(full)), rule);
}

/*
 * A Redis key a rule lists (struct dbw_mask_key): the hash of its n bytes
 * as the kernel hashes an argument, under its length, or under the
 * prefix's length, which key_plens then says to look up.
 */
static void add_mask_redis_key(void *ctx, const char *k, size_t n, bool prefix, uint32_t rule)
{
	struct mask_cols *mc = ctx;
	struct dbw_mask_key key = { .hash = dbw_name_hash(k, n),
				    .len = prefix ? n : n | DBW_MASK_KEY_EXACT };
	unsigned i;

	for (i = 0; i < mc->nkeys && memcmp(&mc->keys[i], &key, sizeof(key)); i++)
		;
	if (i == mc->nkeys) {
		if (mc->nkeys == POLICY_MASK_KEYS_MAX)
			return; /* the policy loader refuses more */
		mc->keys[mc->nkeys] = key;
		mc->key_rules[mc->nkeys++] = 0;
	}
	mc->key_rules[i] |= rule;
	if (prefix)
		mc->key_plens |= 1ULL << n;
}

/* Install p's kernel share. 0 or -errno. */
static int install(struct guard *g, const struct policy *p, const uint16_t *ports, int nports)
{
	static struct dbw_guard_rule rules[DBW_GUARD_RULES];
	static struct dbw_guard_text texts[DBW_GUARD_RULES];
	static struct dbw_guard_text more[(DBW_GUARD_PROTOS - 1) * DBW_GUARD_TEXT_SLOTS];
	static struct dbw_mask_rule mrules[DBW_MASK_RULES];
	static struct mask_cols mcols;
	uint64_t port_rules[CAPTURE_MAX_PORTS] = {};
	uint32_t port_mask[CAPTURE_MAX_PORTS] = {};
	struct capture_guard cg = { .rules = rules,
				    .texts = texts,
				    .proto_texts = more,
				    .port_rules = port_rules,
				    .port_mask_rules = port_mask };
	struct capture_mask cm = { .rules = mrules,
				   .col_hash = mcols.hash,
				   .col_rules = mcols.rules,
				   .uids = mcols.uids,
				   .uid_rules = mcols.uid_rules,
				   .user_hash = mcols.users,
				   .user_rules = mcols.user_rules,
				   .keys = mcols.keys,
				   .key_rule_sets = mcols.key_rules };
	int e;

	cg.nrules = policy_kernel(p, rules, texts, &cg.unparsed_text, &cg.cfg);
	policy_down_text(DBW_PROTO_POSTGRES, &cg.down_text);
	for (int pr = DBW_PROTO_MYSQL; pr <= DBW_PROTO_REDIS; pr++) {
		struct dbw_guard_text *set = &more[(pr - DBW_PROTO_MYSQL) * DBW_GUARD_TEXT_SLOTS];

		policy_kernel_texts(p, pr, set, &set[DBW_GUARD_UNPARSED]);
		policy_down_text(pr, &set[DBW_GUARD_DOWN]);
	}
	mcols.n = mcols.nuids = mcols.nusers = mcols.nkeys = 0;
	mcols.key_plens = 0;
	/* mask_rel's entries carry rule numbers: gone before the new rules are in */
	catalog_policy(g->cat, p);
	cm.nrules = policy_mask_kernel(p, mrules, add_mask_col, &mcols);
	policy_mask_columns(p, add_mask_mysql_col, &mcols);
	cm.uid_free = policy_mask_uids(p, add_mask_uid, &mcols);
	cm.ncols = mcols.n;
	cm.nuids = mcols.nuids;
	cm.srv_rules = policy_mask_server(p, add_mask_user, &mcols, &cm.srv_user_free);
	cm.nusers = mcols.nusers;
	cm.key_rules = policy_mask_keys(p, add_mask_redis_key, &mcols);
	cm.nkeys = mcols.nkeys;
	cm.key_plens = mcols.key_plens;
	for (int i = 0; i < nports && i < CAPTURE_MAX_PORTS; i++) {
		port_rules[i] = policy_port_rules(p, ports[i]);
		port_mask[i] = policy_mask_port_rules(p, ports[i]);
	}
	/* the masking rules before the ports that start using them */
	e = capture_mask_load(g->cap, &cm);
	if (!e)
		e = capture_guard_load(g->cap, &cg);
	if (!e && g->classes)
		wl_classes_policy(g->classes, p);
	return e;
}

struct guard *guard_new(struct capture *cap, struct emitter *em, const char *path,
			const uint16_t *ports, int nports, char *err, size_t errlen)
{
	struct guard *g = calloc(1, sizeof(*g));
	int e;

	if (!g) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	g->cap = cap;
	g->em = em;
	g->api_fd = -1;
	g->cat = catalog_new(cap ? capture_mask_rel_fd(cap) : -1);
	g->path = strdup(path);
	g->pol = policy_load(path, err, errlen);
	if (!g->cat)
		snprintf(err, errlen, "out of memory");
	if (!g->pol || !g->path || !g->cat || masking_of(g->pol, &g->mask, err, errlen)) {
		guard_free(g);
		return NULL;
	}
	/* no capture: replay, the userspace half alone */
	e = cap ? install(g, g->pol, ports, nports) : 0;
	if (e) {
		snprintf(err, errlen, "cannot install the policy in the kernel: %s", strerror(-e));
		guard_free(g);
		return NULL;
	}
	note_loaded(g);
	return g;
}

void guard_free(struct guard *g)
{
	if (!g)
		return;
	catalog_free(g->cat);
	policy_free(g->pol);
	detect_free(g->mask.det);
	wl_classes_free(g->classes);
	if (g->api_fd >= 0) {
		close(g->api_fd);
		if (g->api_path)
			unlink(g->api_path);
	}
	free(g->api_path);
	free(g->path);
	free(g);
}

static void alert(struct guard *g, const char *kind, const char *detail)
{
	json_t *ev = event_new(g->em, "alert", 0);

	event_set_alert(ev, kind, detail, NULL);
	event_emit(g->em, ev);
}

int guard_reload(struct guard *g, const uint16_t *ports, int nports, struct conn_table *t)
{
	char err[4096], msg[4200];
	struct policy *p = policy_load(g->path, err, sizeof(err));
	struct conn_masking mask = {};
	int e;

	if (p && masking_of(p, &mask, err, sizeof(err))) {
		policy_free(p);
		p = NULL;
	}
	if (!p) {
		/* the policy in force stays in force */
		err[strcspn(err, "\0")] = 0;
		if (strlen(err) && err[strlen(err) - 1] == '\n')
			err[strlen(err) - 1] = 0;
		snprintf(msg, sizeof(msg), "reload refused, the previous policy stays:\n%s", err);
		alert(g, "policy_rejected", msg);
		return -1;
	}
	e = install(g, p, ports, nports);
	if (e) {
		snprintf(msg, sizeof(msg), "cannot install %s in the kernel: %s", g->path,
			 strerror(-e));
		alert(g, "policy_rejected", msg);
		policy_free(p);
		detect_free(mask.det);
		/* what is in the maps now is part new, part old: put the old one back */
		install(g, g->pol, ports, nports);
		return -1;
	}
	policy_free(g->pol);
	g->pol = p;
	detect_free(g->mask.det);
	g->mask = mask;
	note_loaded(g);
	conns_guard_refresh(t);
	snprintf(msg, sizeof(msg), "%s: %zu rules", g->path, policy_nrules(p));
	alert(g, "policy_loaded", msg);
	return 0;
}

/*
 * POST body to an http:// URL from a child process: the daemon never
 * waits on a chat tool, and a dead one costs it nothing.
 */
static void webhook_post(const char *url, const char *body)
{
	char host[256], port[8] = "80", req[4096];
	const char *h = url + 7, *path = strchr(h, '/'), *colon;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	size_t hl = path ? (size_t)(path - h) : strlen(h);
	int fd, n;

	if (!path)
		path = "/";
	colon = memchr(h, ':', hl);
	if (colon) {
		snprintf(port, sizeof(port), "%.*s", (int)(hl - (colon - h) - 1), colon + 1);
		hl = colon - h;
	}
	snprintf(host, sizeof(host), "%.*s", (int)hl, h);
	if (fork() != 0)
		return; /* the parent, or no child: a missed notification, never a stall */
	alarm(10);
	n = snprintf(req, sizeof(req),
		     "POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\n\r\n%s",
		     path, host, strlen(body), body);
	if (getaddrinfo(host, port, &hints, &ai) == 0) {
		fd = socket(ai->ai_family, SOCK_STREAM, 0);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    write(fd, req, n) == n)
			(void)read(fd, req, sizeof(req)); /* the answer is not needed */
	}
	_exit(0);
}

/* A require_approval block: remember it (same id for the same actor and statement). */
static struct approval *approval_note(struct guard *g, const struct conn_info *ci,
				      const struct conn_verdict *kv, const char *rule,
				      const struct sql_analysis *a)
{
	struct dbw_approval_key key = { .shape = kv->shape,
					.cgroup_id = ci->who->cgroup_id,
					.uid = ci->who->uid };
	uint64_t id = dbw_approval_id(key.shape, key.uid, key.cgroup_id);
	struct approval *ap = approval_find(g, id);
	char body[1024];
	json_t *j;

	if (ap)
		return ap;
	if (g->napprovals < GUARD_APPROVALS)
		ap = &g->approvals[g->napprovals++];
	else
		ap = &g->approvals[g->next++ % GUARD_APPROVALS];
	memset(ap, 0, sizeof(*ap));
	ap->id = id;
	ap->key = key;
	ap->seen = mono_ns();
	snprintf(ap->rule, sizeof(ap->rule), "%s", rule);
	{
		/* it leaves the host (webhook, approvals list): through the detectors too */
		const char *t = a->normalized ? a->normalized : "";
		size_t n;
		unsigned found;
		char *m = detect_mask(g->mask.det, t, strlen(t), &n, &found);

		snprintf(ap->statement, sizeof(ap->statement), "%s", m ? m : "<unscanned>");
		free(m);
	}
	snprintf(ap->actor, sizeof(ap->actor), "uid=%u user=%s comm=%s pid=%u%s%s%s%s",
		 ci->who->uid, ci->user, ci->who->comm, ci->who->pid,
		 ci->wl && ci->wl->pod ? " pod=" : "", ci->wl && ci->wl->pod ? ci->wl->pod->ns : "",
		 ci->wl && ci->wl->pod ? "/" : "", ci->wl && ci->wl->pod ? ci->wl->pod->name : "");
	if (policy_webhook(g->pol)) {
		j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "event", "approval_pending", "id",
			      "", "rule", ap->rule, "statement", ap->statement, "actor", ap->actor,
			      "approve", "");
		if (j) {
			char ids[24], cmd[64];
			char *dump;

			snprintf(ids, sizeof(ids), "%012llx", (unsigned long long)id);
			snprintf(cmd, sizeof(cmd), "dbwarden approve %s", ids);
			json_object_set_new(j, "id", json_string(ids));
			json_object_set_new(j, "approve", json_string(cmd));
			dump = json_dumps(j, JSON_COMPACT);
			if (dump) {
				snprintf(body, sizeof(body), "%s", dump);
				webhook_post(policy_webhook(g->pol), body);
			}
			free(dump);
			json_decref(j);
		}
	}
	return ap;
}

static void conn_of(const struct conn_info *ci, struct policy_conn *pc)
{
	pc->uid = ci->who->uid;
	pc->user = ci->user;
	pc->comm = ci->who->comm;
	pc->exe = ci->exe;
	pc->cgroup = ci->cgroup;
	pc->server = ci->server;
	pc->server_port = ci->server_port;
	pc->proto = ci->proto;
	/* PostgreSQL's default database is the user's name */
	pc->database = ci->proto == DBW_PROTO_POSTGRES && ci->database && !*ci->database ?
			       ci->db_user :
			       ci->database;
	pc->db_user = ci->db_user;
	if (ci->wl)
		workload_policy_conn(ci->wl, pc);
}

/*
 * A masked PostgreSQL connection's database key in mask_rel, when its
 * target has a catalog to read table names in; 0: its columns go by name.
 */
static uint32_t conn_dbk(struct guard *g, const struct policy_conn *pc)
{
	const char *target, *conninfo;
	unsigned refresh_s;

	if (pc->proto != DBW_PROTO_POSTGRES || !pc->database || !*pc->database)
		return 0;
	conninfo = policy_catalog(g->pol, pc, &target, &refresh_s);
	return conninfo ? catalog_conn(g->cat, target, conninfo, refresh_s, pc->database) : 0;
}

/* DDL ran on a connection: the catalog of its database, if read, is read again. */
static void conn_ddl(struct guard *g, const struct policy_conn *pc, const struct sql_analysis *a)
{
	const uint32_t ddl = 1u << DBW_VERB_CREATE | 1u << DBW_VERB_ALTER | 1u << DBW_VERB_DROP;
	const char *target;
	unsigned refresh_s;

	if (pc->proto == DBW_PROTO_POSTGRES && (a->verbs & ddl) && pc->database &&
	    policy_catalog(g->pol, pc, &target, &refresh_s))
		catalog_changed(g->cat, target, pc->database);
}

/* conn_guard_ops.conn_changed: the connection's kernel rules, from all we know. */
static void on_conn_changed(void *ctx, const struct conn_info *ci)
{
	struct guard *g = ctx;
	struct policy_conn pc;

	conn_of(ci, &pc);
	if (g->cap) {
		capture_conn_rules(g->cap, ci->id, policy_conn_rules(g->pol, &pc));
		if (policy_nmask_rules(g->pol)) {
			uint32_t rules = policy_mask_conn_rules(g->pol, &pc);

			capture_mask_conn(g->cap, ci->id, rules, rules ? conn_dbk(g, &pc) : 0);
		}
	}
}

/*
 * Does a statement with this verb run code the guard never reads: SQL
 * built on the server (DO, EXECUTE, CALL; MySQL's PREPARE ... FROM a
 * string), or a Redis script (which may call any command)?
 */
static bool dynamic(uint8_t proto, const char *verb)
{
	static const char *const sql[] = { "DO", "EXECUTE", "CALL", NULL };
	static const char *const my[] = { "EXECUTE", "CALL", "PREPARE", NULL };
	static const char *const rd[] = { "EVAL",  "EVALSHA",  "EVAL_RO", "EVALSHA_RO",
					  "FCALL", "FCALL_RO", NULL };
	const char *const *set = proto == DBW_PROTO_REDIS ? rd :
				 proto == DBW_PROTO_MYSQL ? my :
							    sql;

	for (; *set; set++)
		if (!strcmp(verb, *set))
			return true;
	return false;
}

/*
 * conn_guard_ops.decide: the event's decision is what happened (the
 * kernel's verdict, or allow); the exact parse is evaluated too, and a
 * difference is an alert (and a reset if the policy says so).
 */
static json_t *on_decide(void *ctx, const struct conn_info *ci, const struct dbw_stmt *s,
			 const struct sql_analysis *a, const struct conn_verdict *kv,
			 struct conn_decision *out)
{
	struct guard *g = ctx;
	struct policy_conn pc;
	struct policy_stmt ps = {
		.verb = a->verb,
		.verbs = a->verbs,
		.objects = a->objects,
		.nobjects = a->nobjects,
		.without_where = a->without_where,
		.parsed = a->parsed,
		.space = ci->proto == DBW_PROTO_REDIS ? DBW_SPACE_REDIS : DBW_SPACE_SQL,
	};
	struct policy_verdict v;
	enum dbw_action action = DBW_ACT_ALLOW;
	const char *rule = NULL, *approver = NULL, *reason = NULL;
	bool kernel_blocked = kv && kv->action >= DBW_ACT_APPROVAL;
	struct approval *ap = NULL;
	char approval_id[24] = "";
	json_t *d;

	conn_of(ci, &pc);
	conn_ddl(g, &pc, a);
	policy_eval(g->pol, &pc, &ps, &v);
	if (kernel_blocked && (kv->flags & DBW_VERDICT_F_AGENT_DOWN)) {
		/* refused while no daemon ran (--fail-mode closed): by design, not a rule */
		action = kv->action;
		reason = "fail_closed";
		out->confirms = true;
	} else if (kernel_blocked) {
		int r = kv->rule == DBW_GUARD_NO_RULE ? -1 : policy_kernel_rule(g->pol, kv->rule);

		action = kv->action;
		rule = r >= 0 ? policy_rule_name(g->pol, r) : "defaults.unparsed";
		/* one statement of a blocked message may be innocent: the table
		 * checks that some statement of it confirms the block */
		out->confirms = v.action >= DBW_ACT_APPROVAL;
		if (kv->action == DBW_ACT_APPROVAL)
			ap = approval_note(g, ci, kv, rule, a);
	} else if (kv && (kv->flags & DBW_VERDICT_F_APPROVED)) {
		/* held for approval, approved: it ran */
		struct dbw_approval_key key = { .shape = kv->shape,
						.cgroup_id = ci->who->cgroup_id,
						.uid = ci->who->uid };
		int r = policy_kernel_rule(g->pol, kv->rule);

		ap = approval_find(g, dbw_approval_id(key.shape, key.uid, key.cgroup_id));
		rule = r >= 0 ? policy_rule_name(g->pol, r) : NULL;
		approver = ap ? ap->approver : NULL;
	} else if (v.action >= DBW_ACT_APPROVAL && (!v.unparsed || s->truncated)) {
		/*
		 * The kernel let through what the policy blocks: it reached the
		 * server. (Text the exact parser rejects whole is not that: the
		 * server rejects it too.)
		 */
		g->mismatches++;
		action = DBW_ACT_ALLOW;
		snprintf(out->alert, sizeof(out->alert), "the kernel let through what rule %s %s",
			 v.name ? v.name : "defaults.unparsed",
			 v.action == DBW_ACT_BLOCK ? "blocks" : "holds for approval");
		out->alert_kind = "guard_mismatch";
		out->reset = policy_on_mismatch_reset(g->pol);
	} else if (v.action == DBW_ACT_ALERT) {
		action = DBW_ACT_ALERT;
		rule = v.name;
		snprintf(out->alert, sizeof(out->alert), "rule %s%s%s",
			 v.name ? v.name : "defaults", *v.message ? ": " : "", v.message);
		out->alert_kind = "policy_alert";
	} else {
		rule = v.name;
	}
	if (!out->alert_kind && policy_conn_rules(g->pol, &pc) && dynamic(ci->proto, a->verb)) {
		/* SQL built at run time on the server: neither side can read it */
		snprintf(out->alert, sizeof(out->alert), "%s runs %s the guard cannot see", a->verb,
			 ci->proto == DBW_PROTO_REDIS ? "a script" : "SQL");
		out->alert_kind = "dynamic_sql";
	}
	if (ap)
		snprintf(approval_id, sizeof(approval_id), "%012llx", (unsigned long long)ap->id);
	d = json_pack("{s:s, s:o, s:o, s:s}", "action", policy_action_name(action), "rule",
		      rule ? json_string(rule) : json_null(), "approval_id",
		      ap ? json_string(approval_id) : json_null(), "enforced_by",
		      kernel_blocked ? "kernel" : "none");
	if (d && approver)
		json_object_set_new(d, "approved_by", json_string(approver));
	if (d && reason)
		json_object_set_new(d, "reason", json_string(reason));
	return d;
}

/*
 * The local API: a unix socket only root can use (mode 0600, and the
 * peer's uid checked), one request line per connection:
 *   approvals            the approvals known, one per line
 *   approve ID TTL_S     grant ID for TTL_S seconds (0: the policy's ttl)
 */
int guard_api_open(struct guard *g, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)], *slash;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "--api %s: path too long", path);
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		mkdir(dir, 0700); /* exists already is fine */
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	g->api_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	unlink(path);
	if (g->api_fd < 0 || bind(g->api_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    chmod(path, 0600) || listen(g->api_fd, 16)) {
		snprintf(err, errlen, "--api %s: %s", path, strerror(errno));
		if (g->api_fd >= 0)
			close(g->api_fd);
		g->api_fd = -1;
		return -1;
	}
	g->api_path = strdup(path);
	return 0;
}

static void api_approve(struct guard *g, int fd, const struct ucred *cr, const char *args)
{
	unsigned long long id;
	unsigned long ttl = 0;
	struct approval *ap;
	struct passwd *pw;
	char msg[256];
	int e;

	if (sscanf(args, "%llx %lu", &id, &ttl) < 1) {
		dprintf(fd, "error usage: approve ID [TTL_SECONDS]\n");
		return;
	}
	ap = approval_find(g, id);
	if (!ap) {
		dprintf(fd, "error no approval %012llx is pending\n", id);
		return;
	}
	if (!ttl)
		ttl = policy_approval_ttl(g->pol);
	ap->until_ns = mono_ns() + (uint64_t)ttl * 1000000000;
	e = capture_approve(g->cap, &ap->key, ap->until_ns);
	if (e) {
		ap->until_ns = 0;
		dprintf(fd, "error cannot insert the approval: %s\n", strerror(-e));
		return;
	}
	pw = getpwuid(cr->uid);
	snprintf(ap->approver, sizeof(ap->approver), "%s (pid %d)", pw ? pw->pw_name : "?",
		 (int)cr->pid);
	snprintf(msg, sizeof(msg), "approval %012llx granted by %s for %lus: rule %s, %s, %s", id,
		 ap->approver, ttl, ap->rule, ap->actor, ap->statement);
	alert(g, "approval_granted", msg);
	dprintf(fd, "ok %s\n", msg);
}

static void api_list(struct guard *g, int fd)
{
	uint64_t now = mono_ns();

	for (unsigned i = 0; i < g->napprovals; i++) {
		struct approval *ap = &g->approvals[i];

		if (ap->until_ns > now)
			dprintf(fd, "%012llx approved %llus left by %s | rule %s | %s | %s\n",
				(unsigned long long)ap->id,
				(unsigned long long)((ap->until_ns - now) / 1000000000),
				ap->approver, ap->rule, ap->actor, ap->statement);
		else
			dprintf(fd, "%012llx %s | rule %s | %s | %s\n", (unsigned long long)ap->id,
				ap->until_ns ? "expired" : "pending", ap->rule, ap->actor,
				ap->statement);
	}
	dprintf(fd, "ok %u\n", g->napprovals);
}

void guard_api_poll(struct guard *g)
{
	for (int k = 0; g->api_fd >= 0 && k < 8; k++) {
		struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
		struct ucred cr;
		socklen_t crl = sizeof(cr);
		char line[256];
		ssize_t n;
		int fd = accept4(g->api_fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			return;
		/* a client that does not send its line within 200 ms is dropped */
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		n = read(fd, line, sizeof(line) - 1);
		line[n > 0 ? n : 0] = 0;
		line[strcspn(line, "\r\n")] = 0;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) || cr.uid != 0)
			dprintf(fd, "error only root may use the dbwarden API\n");
		else if (!strncmp(line, "approve ", 8))
			api_approve(g, fd, &cr, line + 8);
		else if (!strcmp(line, "approvals"))
			api_list(g, fd);
		else
			dprintf(fd, "error unknown request\n");
		close(fd);
	}
}

void guard_set_identity(struct guard *g, struct identity *id)
{
	if (!g->cap || g->classes)
		return;
	g->classes = wl_classes_new(id, g->cap, identity_mount(id));
	if (g->classes)
		wl_classes_policy(g->classes, g->pol);
}

void guard_tick(struct guard *g)
{
	if (g->classes)
		wl_classes_tick(g->classes);
}

void guard_log_classes(const struct guard *g)
{
	wl_classes_log_summary(g->classes);
}

static const struct conn_masking *on_masking(void *ctx)
{
	return &((struct guard *)ctx)->mask;
}

void guard_ops(struct guard *g, struct conn_guard_ops *ops)
{
	ops->ctx = g;
	ops->conn_changed = on_conn_changed;
	ops->decide = on_decide;
	ops->masking = on_masking;
}

bool guard_mask_allows_unmaskable(const struct guard *g, uint32_t rules)
{
	return policy_mask_allows_unmaskable(g->pol, rules);
}

void guard_stats(const struct guard *g, uint64_t *mismatches)
{
	*mismatches = g->mismatches;
}

void guard_info(const struct guard *g, struct guard_info *out)
{
	uint64_t now = mono_ns();

	memset(out, 0, sizeof(*out));
	out->path = g->path;
	out->version = g->version;
	out->loaded_unix = g->loaded_unix;
	out->rules = policy_nrules(g->pol);
	out->mismatches = g->mismatches;
	catalog_stats(g->cat, &out->catalog);
	for (unsigned i = 0; i < g->napprovals; i++) {
		if (!g->approvals[i].until_ns)
			out->approvals_pending++;
		else if (g->approvals[i].until_ns > now)
			out->approvals_granted++;
	}
}
