// SPDX-License-Identifier: GPL-2.0-only
/* The policy: YAML in, validated rules, verdicts, and the kernel's share. */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <libpq-fe.h>
#include <yaml.h>

#include "conn.h"
#include "detect.h"
#include "policy.h"
#include "redis_proto.h"

/* A list of strings from a scalar or a sequence of scalars. */
struct strs {
	char **v;
	size_t n;
};

struct kv {
	char *k, *v;
};

struct kvs {
	struct kv *v;
	size_t n;
};

struct actor_sel {
	struct strs uid, user, comm, exe, cgroup;
	/* the workload: container, pod (names and labels from the Kubernetes API) */
	struct strs container_id, container, pod_namespace, pod_name, service_account;
	struct kvs labels;
};

/* One `match` or `unless` block. Empty lists mean "any". */
struct cond {
	bool present;
	struct strs target_names;
	struct kvs target_labels;
	struct strs database, db_user, objects;
	uint32_t verbs; /* 1 << enum dbw_verb; 0: any (unless rverbs) */
	uint32_t rverbs; /* 1 << enum dbw_redis_verb: Redis commands named */
	int without_where; /* -1 any, 0, 1 */
	struct actor_sel actor;
};

struct rule {
	char *name;
	struct cond match, unless;
	enum dbw_action action;
	char *message;
	int line;
	int kernel; /* kernel rule index, -1 when userspace only */
	const char *why_not; /* why not in the kernel */
};

struct target {
	char *name;
	char *host; /* "" for any address */
	uint16_t port;
	uint8_t proto; /* enum dbw_proto; 0: any */
	struct kvs labels;
	/* PostgreSQL: a libpq conninfo to read table names in the catalog; NULL: none */
	char *catalog;
	unsigned catalog_refresh_s;
};

/* masking.results: one rule of dynamic result masking. */
struct mask_rule {
	char *name;
	struct cond match; /* connection-level selectors only */
	struct strs columns; /* result column names ("users.ssn": its name part is matched) */
	struct strs keys; /* Redis keys whose replies are masked whole: exact, or "prefix*" */
	uint8_t detectors; /* enum dbw_mask_det */
	uint8_t style; /* enum dbw_mask_style */
	bool allow_unmaskable; /* on_unmaskable: allow */
	uint8_t placement; /* enum mask_place: where the kernel masks */
	int line;
};

/* masking.results[].placement */
enum mask_place {
	PLACE_CLIENT = 1, /* the client socket's ingress (every protocol; the default) */
	PLACE_SERVER = 2, /* a local PostgreSQL server's egress, for clients anywhere */
};

struct policy {
	char *path;
	/* masking: what leaves the host, and what matched clients see */
	enum policy_text_mode text_mode;
	uint32_t det_builtin;
	struct det_custom det_custom[DET_MAX_CUSTOM];
	size_t ndet_custom;
	struct mask_rule mask_rules[DBW_MASK_RULES];
	size_t nmask_rules;
	enum dbw_action def_action;
	int def_unparsed; /* -1 unset, 0 allow, 1 block */
	bool mismatch_reset;
	char *webhook;
	unsigned approval_ttl_s;
	struct target targets[POLICY_MAX_TARGETS];
	size_t ntargets;
	struct rule *rules;
	size_t nrules;
	int kernel_rules[DBW_GUARD_RULES];
	/* enum dbw_verb_space of each kernel rule: a rule naming SQL verbs and
	 * Redis commands takes one kernel rule per space */
	uint8_t kernel_space[DBW_GUARD_RULES];
	unsigned nkernel;
};

/* ---- names ------------------------------------------------------------------ */

static const char *const verb_names[DBW_VERB__MAX] = {
	[DBW_VERB_OTHER] = "OTHER",
	[DBW_VERB_SELECT] = "SELECT",
	[DBW_VERB_INSERT] = "INSERT",
	[DBW_VERB_UPDATE] = "UPDATE",
	[DBW_VERB_DELETE] = "DELETE",
	[DBW_VERB_MERGE] = "MERGE",
	[DBW_VERB_TRUNCATE] = "TRUNCATE",
	[DBW_VERB_DROP] = "DROP",
	[DBW_VERB_ALTER] = "ALTER",
	[DBW_VERB_CREATE] = "CREATE",
	[DBW_VERB_GRANT] = "GRANT",
	[DBW_VERB_REVOKE] = "REVOKE",
	[DBW_VERB_COPY] = "COPY",
	[DBW_VERB_BEGIN] = "BEGIN",
	[DBW_VERB_COMMIT] = "COMMIT",
	[DBW_VERB_ROLLBACK] = "ROLLBACK",
	[DBW_VERB_SET] = "SET",
	[DBW_VERB_SHOW] = "SHOW",
	[DBW_VERB_EXPLAIN] = "EXPLAIN",
	[DBW_VERB_CALL] = "CALL",
	[DBW_VERB_DO] = "DO",
	[DBW_VERB_PREPARE] = "PREPARE",
	[DBW_VERB_EXECUTE] = "EXECUTE",
	[DBW_VERB_VACUUM] = "VACUUM",
	[DBW_VERB_ANALYZE] = "ANALYZE",
	[DBW_VERB_LOCK] = "LOCK",
	[DBW_VERB_DEALLOCATE] = "DEALLOCATE",
	[DBW_VERB_REINDEX] = "REINDEX",
	[DBW_VERB_COMMENT] = "COMMENT",
	[DBW_VERB_REFRESH] = "REFRESH",
	[DBW_VERB_VALUES] = "VALUES",
};

int policy_verb(const char *name)
{
	/* the analyser's spellings of the same classes */
	if (!strcasecmp(name, "START") || !strcasecmp(name, "START TRANSACTION"))
		return DBW_VERB_BEGIN;
	if (!strcasecmp(name, "END"))
		return DBW_VERB_COMMIT;
	if (!strcasecmp(name, "ABORT"))
		return DBW_VERB_ROLLBACK;
	for (int i = 1; i < DBW_VERB__MAX; i++)
		if (verb_names[i] && !strcasecmp(name, verb_names[i]))
			return i;
	return -1;
}

const char *policy_action_name(enum dbw_action a)
{
	switch (a) {
	case DBW_ACT_ALLOW:
		return "allow";
	case DBW_ACT_ALERT:
		return "alert";
	case DBW_ACT_APPROVAL:
		return "require_approval";
	case DBW_ACT_BLOCK:
		return "block";
	}
	return "?";
}

int policy_action(const char *s)
{
	for (int a = DBW_ACT_ALLOW; s && a <= DBW_ACT_BLOCK; a++)
		if (!strcmp(s, policy_action_name(a)))
			return a;
	return -1;
}

/* ---- YAML walking, with every error collected --------------------------------- */

struct ld {
	yaml_document_t doc;
	const char *path;
	char *err;
	size_t errlen, used;
	int nerr;
};

static void __attribute__((format(printf, 3, 4)))
perr(struct ld *l, yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	int k;

	l->nerr++;
	if (l->used + 1 >= l->errlen)
		return;
	k = snprintf(l->err + l->used, l->errlen - l->used, "%s:%zu:%zu: ", l->path,
		     n ? n->start_mark.line + 1 : 1, n ? n->start_mark.column + 1 : 1);
	if (k > 0)
		l->used += (size_t)k < l->errlen - l->used ? (size_t)k : l->errlen - l->used - 1;
	va_start(ap, fmt);
	k = vsnprintf(l->err + l->used, l->errlen - l->used, fmt, ap);
	va_end(ap);
	if (k > 0)
		l->used += (size_t)k < l->errlen - l->used ? (size_t)k : l->errlen - l->used - 1;
	if (l->used + 1 < l->errlen) {
		l->err[l->used++] = '\n';
		l->err[l->used] = 0;
	}
}

static yaml_node_t *node(struct ld *l, int id)
{
	return yaml_document_get_node(&l->doc, id);
}

static const char *scalar(yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* Check that every key of mapping n is in the NULL-terminated list `keys`. */
static bool known_keys(struct ld *l, yaml_node_t *n, const char *what, const char *const *keys)
{
	bool ok = true;

	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(l, p->key);
		const char *ks = scalar(k);
		size_t i;

		for (i = 0; ks && keys[i]; i++)
			if (!strcmp(ks, keys[i]))
				break;
		if (!ks || !keys[i]) {
			char list[256] = "";

			for (size_t j = 0; keys[j]; j++)
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
					 j ? ", " : "", keys[j]);
			perr(l, k, "unknown key '%s' in %s (expected: %s)", ks ? ks : "?", what,
			     list);
			ok = false;
		}
	}
	return ok;
}

static yaml_node_t *get(struct ld *l, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		const char *ks = scalar(node(l, p->key));

		if (ks && !strcmp(ks, key))
			return node(l, p->value);
	}
	return NULL;
}

static bool want_map(struct ld *l, yaml_node_t *n, const char *what)
{
	if (n->type == YAML_MAPPING_NODE)
		return true;
	perr(l, n, "%s must be a mapping", what);
	return false;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (!d)
		abort(); /* a policy is small: out of memory here is not recoverable */
	return d;
}

/* A string, or a list of strings. */
static void get_strs(struct ld *l, yaml_node_t *n, const char *what, struct strs *out)
{
	if (!n)
		return;
	if (n->type == YAML_SCALAR_NODE) {
		out->v = calloc(1, sizeof(char *));
		out->v[out->n++] = xstrdup(scalar(n));
		return;
	}
	if (n->type != YAML_SEQUENCE_NODE) {
		perr(l, n, "%s must be a string or a list of strings", what);
		return;
	}
	out->v = calloc(n->data.sequence.items.top - n->data.sequence.items.start + 1,
			sizeof(char *));
	for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
	     i++) {
		yaml_node_t *e = node(l, *i);

		if (!scalar(e))
			perr(l, e, "%s: each item must be a string", what);
		else
			out->v[out->n++] = xstrdup(scalar(e));
	}
}

static void get_kvs(struct ld *l, yaml_node_t *n, const char *what, struct kvs *out)
{
	if (!n)
		return;
	if (!want_map(l, n, what))
		return;
	out->v = calloc(n->data.mapping.pairs.top - n->data.mapping.pairs.start + 1,
			sizeof(*out->v));
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(l, p->key), *v = node(l, p->value);

		if (!scalar(k) || !scalar(v)) {
			perr(l, k, "%s: keys and values must be strings", what);
			continue;
		}
		out->v[out->n].k = xstrdup(scalar(k));
		out->v[out->n++].v = xstrdup(scalar(v));
	}
}

static void free_strs(struct strs *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

static void free_kvs(struct kvs *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].k);
		free(s->v[i].v);
	}
	free(s->v);
}

static void free_cond(struct cond *c)
{
	struct actor_sel *a = &c->actor;

	free_strs(&c->target_names);
	free_kvs(&c->target_labels);
	free_strs(&c->database);
	free_strs(&c->db_user);
	free_strs(&c->objects);
	free_strs(&a->uid);
	free_strs(&a->user);
	free_strs(&a->comm);
	free_strs(&a->exe);
	free_strs(&a->cgroup);
	free_strs(&a->container_id);
	free_strs(&a->container);
	free_strs(&a->pod_namespace);
	free_strs(&a->pod_name);
	free_strs(&a->service_account);
	free_kvs(&a->labels);
}

/* ---- workload selectors: Kubernetes names, checked where they are written ------ */

static bool name_chars(const char *s, const char *extra, size_t max, bool glob)
{
	size_t n = strlen(s);

	if (!n || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || strchr(extra, ch))
			continue;
		if (glob && (ch == '*' || ch == '?'))
			continue;
		return false;
	}
	/* a name starts and ends with a letter or digit (a glob may stand there) */
	return !strchr(extra, s[0]) && !strchr(extra, s[n - 1]);
}

/* DNS-1123 label (namespace, container name): a-z 0-9 '-', at most 63. */
static bool dns_label(const char *s)
{
	return name_chars(s, "-", 63, true);
}

/* DNS-1123 subdomain (pod, service account): a-z 0-9 '-' '.', at most 253. */
static bool dns_subdomain(const char *s)
{
	return name_chars(s, "-.", 253, true);
}

static bool hex_id(const char *s)
{
	size_t n = strspn(s, "0123456789abcdef");

	return !s[n] && n >= 12 && n <= 64;
}

/* A label name or value: A-Z a-z 0-9 '-' '_' '.', alphanumeric at both ends, at most 63. */
static bool label_part(const char *s, size_t n, bool may_be_empty)
{
	if (!n)
		return may_be_empty;
	if (n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("-_.", s[i]))
			return false;
	return true;
}

/* A label key: [prefix/]name, the prefix a DNS subdomain. */
static bool label_key(const char *s)
{
	const char *slash = strchr(s, '/');
	char prefix[254];

	if (!slash)
		return label_part(s, strlen(s), false);
	if ((size_t)(slash - s) >= sizeof(prefix))
		return false;
	snprintf(prefix, sizeof(prefix), "%.*s", (int)(slash - s), s);
	return name_chars(prefix, "-.", 253, false) &&
	       label_part(slash + 1, strlen(slash + 1), false);
}

/* Report every item of a string-or-list node that ok() refuses, at the item. */
static void check_items(struct ld *l, yaml_node_t *n, const char *what, bool (*ok)(const char *),
			const char *expect)
{
	yaml_node_item_t *i;

	if (!n)
		return;
	if (n->type == YAML_SCALAR_NODE) {
		if (!ok(scalar(n)))
			perr(l, n, "%s: '%s' is not %s", what, scalar(n), expect);
		return;
	}
	if (n->type != YAML_SEQUENCE_NODE)
		return; /* get_strs has said so */
	for (i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
		yaml_node_t *e = node(l, *i);

		if (scalar(e) && !ok(scalar(e)))
			perr(l, e, "%s: '%s' is not %s", what, scalar(e), expect);
	}
}

static void check_labels(struct ld *l, yaml_node_t *n)
{
	if (!n || n->type != YAML_MAPPING_NODE)
		return;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(l, p->key), *v = node(l, p->value);

		if (scalar(k) && !label_key(scalar(k)))
			perr(l, k,
			     "actor.labels: '%s' is not a label key ([prefix/]name: letters, "
			     "digits, '-', '_', '.', at most 63)",
			     scalar(k));
		if (scalar(v) && !label_part(scalar(v), strlen(scalar(v)), true))
			perr(l, v,
			     "actor.labels: '%s' is not a label value (letters, digits, '-', '_', "
			     "'.', at most 63)",
			     scalar(v));
	}
}

static void parse_actor(struct ld *l, yaml_node_t *n, struct actor_sel *a)
{
	static const char *const keys[] = {
		"uid",		"user",	     "comm",	      "exe",	  "cgroup",
		"container_id", "container", "pod_namespace", "pod_name", "service_account",
		"labels",	NULL
	};
	static const char dns_label_is[] =
		"a Kubernetes name (a-z, 0-9 and '-', at most 63; '*' and '?' match any)";
	static const char dns_sub_is[] =
		"a Kubernetes name (a-z, 0-9, '-' and '.', at most 253; '*' and '?' match any)";

	if (!want_map(l, n, "actor"))
		return;
	known_keys(l, n, "actor", keys);
	get_strs(l, get(l, n, "uid"), "actor.uid", &a->uid);
	for (size_t i = 0; i < a->uid.n; i++) {
		char *end;

		errno = 0;
		strtoul(a->uid.v[i], &end, 10);
		if (errno || *end || !*a->uid.v[i])
			perr(l, get(l, n, "uid"), "actor.uid: '%s' is not a number", a->uid.v[i]);
	}
	get_strs(l, get(l, n, "user"), "actor.user", &a->user);
	get_strs(l, get(l, n, "comm"), "actor.comm", &a->comm);
	get_strs(l, get(l, n, "exe"), "actor.exe", &a->exe);
	get_strs(l, get(l, n, "cgroup"), "actor.cgroup", &a->cgroup);
	get_strs(l, get(l, n, "container_id"), "actor.container_id", &a->container_id);
	check_items(l, get(l, n, "container_id"), "actor.container_id", hex_id,
		    "a container id (12 to 64 lower-case hex digits)");
	get_strs(l, get(l, n, "container"), "actor.container", &a->container);
	check_items(l, get(l, n, "container"), "actor.container", dns_label, dns_label_is);
	get_strs(l, get(l, n, "pod_namespace"), "actor.pod_namespace", &a->pod_namespace);
	check_items(l, get(l, n, "pod_namespace"), "actor.pod_namespace", dns_label, dns_label_is);
	get_strs(l, get(l, n, "pod_name"), "actor.pod_name", &a->pod_name);
	check_items(l, get(l, n, "pod_name"), "actor.pod_name", dns_subdomain, dns_sub_is);
	get_strs(l, get(l, n, "service_account"), "actor.service_account", &a->service_account);
	check_items(l, get(l, n, "service_account"), "actor.service_account", dns_subdomain,
		    dns_sub_is);
	get_kvs(l, get(l, n, "labels"), "actor.labels", &a->labels);
	check_labels(l, get(l, n, "labels"));
}

static void parse_cond(struct ld *l, yaml_node_t *n, const char *what, struct cond *c)
{
	static const char *const keys[] = { "target",  "database",	"db_user", "verb",
					    "objects", "without_where", "actor",   NULL };
	yaml_node_t *v;

	c->without_where = -1;
	if (!n)
		return;
	c->present = true;
	if (!want_map(l, n, what))
		return;
	known_keys(l, n, what, keys);
	v = get(l, n, "target");
	if (v && v->type == YAML_MAPPING_NODE)
		get_kvs(l, v, "target", &c->target_labels);
	else
		get_strs(l, v, "target", &c->target_names);
	get_strs(l, get(l, n, "database"), "database", &c->database);
	get_strs(l, get(l, n, "db_user"), "db_user", &c->db_user);
	get_strs(l, get(l, n, "objects"), "objects", &c->objects);
	v = get(l, n, "verb");
	if (v) {
		struct strs verbs = {};

		get_strs(l, v, "verb", &verbs);
		for (size_t i = 0; i < verbs.n; i++) {
			int k = policy_verb(verbs.v[i]);
			/* a Redis command: SET is both, and means both */
			int rk = redis_verb_class(verbs.v[i]);

			if (k <= 0 && rk <= 0)
				perr(l, v,
				     "unknown verb '%s' (expected SQL verbs such as SELECT, "
				     "INSERT, UPDATE, DELETE, DROP, TRUNCATE, ALTER, or Redis "
				     "commands such as FLUSHALL, FLUSHDB, KEYS, DEBUG, CONFIG SET)",
				     verbs.v[i]);
			if (k > 0)
				c->verbs |= 1u << k;
			if (rk > 0)
				c->rverbs |= 1u << rk;
		}
		free_strs(&verbs);
	}
	v = get(l, n, "without_where");
	if (v) {
		const char *s = scalar(v);

		if (s && !strcmp(s, "true"))
			c->without_where = 1;
		else if (s && !strcmp(s, "false"))
			c->without_where = 0;
		else
			perr(l, v, "without_where must be true or false");
	}
	v = get(l, n, "actor");
	if (v)
		parse_actor(l, v, &c->actor);
}

/* "HOST:PORT", "[V6]:PORT" or "PORT". */
static bool parse_address(const char *s, char **host, uint16_t *port)
{
	const char *colon = strrchr(s, ':');
	unsigned long p;
	char *end;

	if (!colon) {
		colon = s - 1; /* a port alone */
	} else if (*s == '[') {
		if (colon[-1] != ']')
			return false;
	} else if (strchr(s, ':') != colon) {
		return false; /* a bare IPv6 address needs brackets */
	}
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno || *end || !colon[1] || p == 0 || p > 65535)
		return false;
	*port = p;
	*host = strndup(s, colon >= s ? (size_t)(colon - s) : 0);
	return *host != NULL;
}

/* A duration such as 90s, 15m or 2h, in seconds; 0 when it is none. */
static unsigned long duration_s(const char *s)
{
	char *end;
	unsigned long n = s ? strtoul(s, &end, 10) : 0;
	unsigned mul = !s ? 0 : *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600 : 0;

	return n && mul && !end[1] ? n * mul : 0;
}

/*
 * A target's `catalog`: a libpq connection string ("host=... user=...",
 * or a postgresql:// URI), or {dsn: ..., refresh: 60s}. Checked by libpq's
 * own parser; the database is each connection's, whatever dsn says.
 */
static void parse_catalog(struct ld *l, yaml_node_t *v, struct target *tg)
{
	static const char *const keys[] = { "dsn", "refresh", NULL };
	yaml_node_t *d = v, *r = NULL;
	PQconninfoOption *opts;
	char *err = NULL;

	tg->catalog_refresh_s = POLICY_CATALOG_REFRESH_S;
	if (v->type == YAML_MAPPING_NODE) {
		known_keys(l, v, "catalog", keys);
		d = get(l, v, "dsn");
		r = get(l, v, "refresh");
	}
	if (!d || !scalar(d) || !*scalar(d)) {
		perr(l, v, "target '%s': catalog needs a libpq connection string (dsn)", tg->name);
		return;
	}
	if (tg->proto != DBW_PROTO_POSTGRES)
		perr(l, v,
		     "target '%s': a catalog is PostgreSQL's (give the target protocol: postgres)",
		     tg->name);
	opts = PQconninfoParse(scalar(d), &err);
	if (!opts)
		perr(l, d, "target '%s': catalog: %s", tg->name,
		     err ? strtok(err, "\n") : "out of memory");
	PQconninfoFree(opts);
	PQfreemem(err);
	if (r) {
		unsigned long secs = duration_s(scalar(r));

		if (!secs || secs > 86400)
			perr(l, r,
			     "catalog refresh must be a duration such as 30s or 5m (at most 24h)");
		else
			tg->catalog_refresh_s = secs;
	}
	tg->catalog = xstrdup(scalar(d));
}

static void parse_targets(struct ld *l, yaml_node_t *n, struct policy *p)
{
	static const char *const keys[] = {
		"name", "protocol", "address", "labels", "catalog", NULL
	};

	if (n->type != YAML_SEQUENCE_NODE) {
		perr(l, n, "targets must be a list");
		return;
	}
	for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
	     i++) {
		yaml_node_t *t = node(l, *i), *v;
		struct target *tg;

		if (!want_map(l, t, "a target"))
			continue;
		if (p->ntargets == POLICY_MAX_TARGETS) {
			perr(l, t, "more than %d targets", POLICY_MAX_TARGETS);
			return;
		}
		known_keys(l, t, "target", keys);
		tg = &p->targets[p->ntargets++];
		tg->name = xstrdup(scalar(get(l, t, "name")));
		if (!*tg->name)
			perr(l, t, "a target needs a name");
		v = get(l, t, "protocol");
		if (v) {
			int pr = scalar(v) ? dbw_proto_parse(scalar(v)) : -1;

			if (pr <= 0)
				perr(l, v,
				     "unknown protocol '%s' (supported: postgres, mysql, mariadb, "
				     "redis)",
				     scalar(v) ? scalar(v) : "?");
			else
				tg->proto = pr;
		}
		v = get(l, t, "address");
		if (!v || !scalar(v))
			perr(l, t, "target '%s' needs an address (HOST:PORT)", tg->name);
		else if (!parse_address(scalar(v), &tg->host, &tg->port))
			perr(l, v, "bad address '%s' (expected HOST:PORT, [IPV6]:PORT or PORT)",
			     scalar(v));
		if (!tg->host)
			tg->host = xstrdup("");
		get_kvs(l, get(l, t, "labels"), "labels", &tg->labels);
		v = get(l, t, "catalog");
		if (v)
			parse_catalog(l, v, tg);
	}
}

/* Statement-level conditions the kernel lexer can evaluate, and an unless it can apply. */
static const char *kernel_unfit(const struct rule *r)
{
	const struct cond *u = &r->unless;

	if (u->verbs || u->rverbs || u->objects.n || u->without_where >= 0)
		return "its unless depends on the statement";
	if (r->match.verbs & (1u << DBW_VERB_OTHER))
		return "OTHER is not a kernel verb class";
	if (r->match.objects.n * 2 > DBW_LEX_OBJECTS)
		return "more objects than the kernel compares";
	if (r->match.without_where == 0)
		return "without_where: false needs the exact parse";
	return NULL;
}

static void parse_rules(struct ld *l, yaml_node_t *n, struct policy *p)
{
	static const char *const keys[] = { "name", "match", "unless", "action", "message", NULL };
	size_t cap;

	if (n->type != YAML_SEQUENCE_NODE) {
		perr(l, n, "rules must be a list");
		return;
	}
	cap = n->data.sequence.items.top - n->data.sequence.items.start;
	if (cap > POLICY_MAX_RULES) {
		perr(l, n, "%zu rules: at most %d", cap, POLICY_MAX_RULES);
		return;
	}
	p->rules = calloc(cap + 1, sizeof(*p->rules));
	for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
	     i++) {
		yaml_node_t *rn = node(l, *i), *v;
		struct rule *r;

		if (!want_map(l, rn, "a rule"))
			continue;
		r = &p->rules[p->nrules++];
		r->line = rn->start_mark.line + 1;
		r->kernel = -1;
		known_keys(l, rn, "rule", keys);
		r->name = xstrdup(scalar(get(l, rn, "name")));
		if (!*r->name)
			perr(l, rn, "a rule needs a name");
		for (size_t j = 0; j + 1 < p->nrules; j++)
			if (*r->name && !strcmp(p->rules[j].name, r->name))
				perr(l, get(l, rn, "name"),
				     "duplicate rule name '%s' (first at line %d)", r->name,
				     p->rules[j].line);
		v = get(l, rn, "action");
		if (!v) {
			perr(l, rn,
			     "rule '%s' needs an action (block, require_approval, alert, allow)",
			     r->name);
		} else if (!scalar(v) || policy_action(scalar(v)) < 0) {
			perr(l, v,
			     "unknown action '%s' (expected block, require_approval, alert, allow)",
			     scalar(v) ? scalar(v) : "?");
		} else {
			r->action = policy_action(scalar(v));
		}
		r->message = xstrdup(scalar(get(l, rn, "message")));
		parse_cond(l, get(l, rn, "match"), "match", &r->match);
		parse_cond(l, get(l, rn, "unless"), "unless", &r->unless);
		for (size_t t = 0; t < r->match.target_names.n; t++) {
			size_t k;

			for (k = 0; k < p->ntargets; k++)
				if (!strcmp(p->targets[k].name, r->match.target_names.v[t]))
					break;
			if (k == p->ntargets)
				perr(l, get(l, get(l, rn, "match"), "target"),
				     "unknown target '%s'", r->match.target_names.v[t]);
		}
	}
}

/* A list of detector names into a built-in mask; custom names are allowed where custom. */
static uint32_t parse_detector_names(struct ld *l, yaml_node_t *n, const char *what,
				     const struct policy *p, bool kernel)
{
	struct strs names = {};
	uint32_t mask = 0;

	get_strs(l, n, what, &names);
	for (size_t i = 0; i < names.n; i++) {
		int b = detect_builtin(names.v[i]);
		bool custom = false;

		for (size_t k = 0; !kernel && k < p->ndet_custom; k++)
			custom |= !strcmp(p->det_custom[k].name, names.v[i]);
		if (kernel) {
			if (b == DET_EMAIL)
				mask |= DBW_MDET_EMAIL;
			else if (b == DET_CREDIT_CARD)
				mask |= DBW_MDET_CARD;
			else
				perr(l, n,
				     "%s: '%s' is not a kernel value detector (expected email, "
				     "credit_card)",
				     what, names.v[i]);
		} else if (b >= 0) {
			mask |= 1u << b;
		} else if (!custom) {
			perr(l, n,
			     "%s: unknown detector '%s' (expected email, credit_card, ssn, phone, "
			     "iban, aws_key, jwt, private_key, password, or a custom one)",
			     what, names.v[i]);
		}
	}
	free_strs(&names);
	return mask;
}

static bool has_workload_selectors(const struct cond *k);

/*
 * A rule's placement: [client] (default), [server] or both. The server
 * side sees neither the client's process nor the database it names (only
 * what the server sends): a rule placed there selects by target and
 * db_user alone.
 */
static void parse_placement(struct ld *l, yaml_node_t *v, struct mask_rule *r)
{
	const struct cond *m = &r->match;
	const struct actor_sel *a = &m->actor;
	struct strs places = {};

	r->placement = PLACE_CLIENT;
	if (!v)
		return;
	get_strs(l, v, "placement", &places);
	r->placement = 0;
	for (size_t i = 0; i < places.n; i++) {
		if (!strcmp(places.v[i], "client"))
			r->placement |= PLACE_CLIENT;
		else if (!strcmp(places.v[i], "server"))
			r->placement |= PLACE_SERVER;
		else
			perr(l, v, "masking rule '%s': placement '%s' is not client or server",
			     r->name, places.v[i]);
	}
	if (!places.n)
		perr(l, v, "masking rule '%s': placement names no side (client, server)", r->name);
	free_strs(&places);
	if ((r->placement & PLACE_SERVER) && (m->database.n || a->uid.n || a->user.n || a->comm.n ||
					      a->exe.n || has_workload_selectors(m)))
		perr(l, v,
		     "masking rule '%s': placement server selects by target and db_user only "
		     "(a server does not know the client's process or the database it asked for)",
		     r->name);
}

/* A rule's column: "column", "table.column" or "schema.table.column". */
struct colname {
	char schema[64], table[64], column[64]; /* "" when not given */
};

/* Split s into *c; false when it is not one of the three forms. */
static bool split_column(const char *s, struct colname *c)
{
	char *part[3] = { c->column, c->table, c->schema };
	const char *end = s + strlen(s);
	int n = 0;

	memset(c, 0, sizeof(*c));
	while (n < 3) {
		const char *dot = end;
		size_t len;

		while (dot > s && dot[-1] != '.')
			dot--;
		len = (size_t)(end - dot);
		if (!len || len > 63)
			return false;
		memcpy(part[n++], dot, len);
		if (dot == s)
			return true;
		end = dot - 1;
	}
	return false;
}

/*
 * A rule's Redis keys: each an exact key, or a prefix and one final `*`
 * (`user:*`, at most DBW_MASK_KEY_PREFIX_MAX bytes before it), or `*`
 * alone. Keys are matched byte for byte: other glob characters are
 * refused rather than taken literally.
 */
static void parse_mask_keys(struct ld *l, yaml_node_t *v, struct mask_rule *r)
{
	get_strs(l, v, "keys", &r->keys);
	if (v && !r->keys.n)
		perr(l, v, "masking rule '%s': keys names no key", r->name);
	for (size_t i = 0; i < r->keys.n; i++) {
		const char *k = r->keys.v[i];
		size_t n = strlen(k);
		const char *star = strchr(k, '*');

		if (!n)
			perr(l, v, "masking rule '%s': keys: an empty key", r->name);
		else if ((star && star != k + n - 1) || strpbrk(k, "?[\\"))
			perr(l, v,
			     "masking rule '%s': keys: '%s' is not an exact key or a prefix ending "
			     "in * (user:*): only a final * is a pattern",
			     r->name, k);
		else if (star && n - 1 > DBW_MASK_KEY_PREFIX_MAX)
			perr(l, v,
			     "masking rule '%s': keys: the prefix of '%s' is longer than %d bytes",
			     r->name, k, DBW_MASK_KEY_PREFIX_MAX);
	}
}

static void parse_mask_rule(struct ld *l, yaml_node_t *rn, struct policy *p)
{
	static const char *const keys[] = { "name",	 "match",     "columns",
					    "detectors", "style",     "on_unmaskable",
					    "keys",	 "placement", NULL };
	static const char *const styles[] = { [DBW_MASK_STARS] = "stars",
					      [DBW_MASK_KEEP_LAST4] = "keep_last4",
					      [DBW_MASK_TOKEN] = "token" };
	struct mask_rule *r;
	yaml_node_t *v;

	if (!want_map(l, rn, "a masking rule"))
		return;
	if (p->nmask_rules == DBW_MASK_RULES) {
		perr(l, rn, "more than %d masking.results rules", DBW_MASK_RULES);
		return;
	}
	r = &p->mask_rules[p->nmask_rules++];
	r->line = rn->start_mark.line + 1;
	known_keys(l, rn, "masking rule", keys);
	r->name = xstrdup(scalar(get(l, rn, "name")));
	if (!*r->name)
		perr(l, rn, "a masking rule needs a name");
	v = get(l, rn, "match");
	parse_cond(l, v, "match", &r->match);
	if (r->match.verbs || r->match.objects.n || r->match.without_where >= 0)
		perr(l, v,
		     "masking rule '%s': match selects connections (target, database, db_user, "
		     "actor), not statements",
		     r->name);
	for (size_t t = 0; t < r->match.target_names.n; t++) {
		size_t k;

		for (k = 0; k < p->ntargets; k++)
			if (!strcmp(p->targets[k].name, r->match.target_names.v[t]))
				break;
		if (k == p->ntargets)
			perr(l, get(l, v, "target"), "unknown target '%s'",
			     r->match.target_names.v[t]);
	}
	parse_mask_keys(l, get(l, rn, "keys"), r);
	get_strs(l, get(l, rn, "columns"), "columns", &r->columns);
	for (size_t i = 0; i < r->columns.n; i++) {
		struct colname c;

		if (!split_column(r->columns.v[i], &c))
			perr(l, get(l, rn, "columns"),
			     "columns: '%s' is not a column name (column, table.column or "
			     "schema.table.column, each at most 63 bytes)",
			     r->columns.v[i]);
	}
	r->detectors = parse_detector_names(l, get(l, rn, "detectors"), "detectors", p, true);
	if (!r->columns.n && !r->detectors && !r->keys.n)
		perr(l, rn, "masking rule '%s' names no columns, no detectors and no keys",
		     r->name);
	v = get(l, rn, "style");
	r->style = DBW_MASK_STARS;
	if (v) {
		size_t k;

		for (k = 0; k < sizeof(styles) / sizeof(styles[0]); k++)
			if (scalar(v) && !strcmp(scalar(v), styles[k]))
				break;
		if (k == sizeof(styles) / sizeof(styles[0]))
			perr(l, v, "style must be stars, keep_last4 or token");
		else
			r->style = k;
	}
	v = get(l, rn, "on_unmaskable");
	if (v && scalar(v) && !strcmp(scalar(v), "allow"))
		r->allow_unmaskable = true;
	else if (v && (!scalar(v) || strcmp(scalar(v), "block")))
		perr(l, v, "on_unmaskable must be block or allow");
	parse_placement(l, get(l, rn, "placement"), r);
	if (r->keys.n && !(r->placement & PLACE_CLIENT))
		perr(l, get(l, rn, "placement"),
		     "masking rule '%s': keys need the client side (placement: client): a "
		     "server's replies do not say which key they answer",
		     r->name);
}

/* masking: statement_text, detectors, custom detectors and results rules. */
static void parse_masking(struct ld *l, yaml_node_t *n, struct policy *p)
{
	static const char *const keys[] = { "statement_text", "detectors", "custom", "results",
					    NULL };
	static const char *const ckeys[] = { "name", "regex", NULL };
	yaml_node_t *v;

	if (!want_map(l, n, "masking"))
		return;
	known_keys(l, n, "masking", keys);
	v = get(l, n, "statement_text");
	if (v) {
		const char *m = scalar(v) ? scalar(v) : "";

		if (!strcmp(m, "normalized"))
			p->text_mode = POLICY_TEXT_NORMALIZED;
		else if (!strcmp(m, "masked"))
			p->text_mode = POLICY_TEXT_MASKED;
		else if (!strcmp(m, "raw"))
			p->text_mode = POLICY_TEXT_RAW;
		else
			perr(l, v, "statement_text must be normalized, masked or raw");
	}
	v = get(l, n, "custom");
	if (v && v->type != YAML_SEQUENCE_NODE) {
		perr(l, v, "masking.custom must be a list of {name, regex}");
	} else if (v) {
		for (yaml_node_item_t *i = v->data.sequence.items.start;
		     i < v->data.sequence.items.top; i++) {
			yaml_node_t *c = node(l, *i), *re;
			const char *name;
			char err[256];

			if (!want_map(l, c, "a custom detector"))
				continue;
			known_keys(l, c, "custom detector", ckeys);
			if (p->ndet_custom == DET_MAX_CUSTOM) {
				perr(l, c, "more than %d custom detectors", DET_MAX_CUSTOM);
				break;
			}
			name = scalar(get(l, c, "name"));
			re = get(l, c, "regex");
			if (!name || !name_chars(name, "_-", 32, false))
				perr(l, c, "a custom detector needs a name (a-z, 0-9, '_', '-')");
			else if (detect_builtin(name) >= 0)
				perr(l, c, "custom detector '%s' has a built-in detector's name",
				     name);
			if (!scalar(re))
				perr(l, c, "a custom detector needs a regex");
			else if (detect_check_regex(scalar(re), err, sizeof(err)))
				perr(l, re, "regex does not compile: %s", err);
			p->det_custom[p->ndet_custom].name = xstrdup(name);
			p->det_custom[p->ndet_custom].regex = xstrdup(scalar(re));
			p->ndet_custom++;
		}
	}
	v = get(l, n, "detectors");
	if (v)
		p->det_builtin = parse_detector_names(l, v, "masking.detectors", p, false);
	v = get(l, n, "results");
	if (v && v->type != YAML_SEQUENCE_NODE)
		perr(l, v, "masking.results must be a list");
	else if (v)
		for (yaml_node_item_t *i = v->data.sequence.items.start;
		     i < v->data.sequence.items.top; i++)
			parse_mask_rule(l, node(l, *i), p);
	if (v) {
		size_t nkeys = 0;

		for (size_t k = 0; k < p->nmask_rules; k++)
			nkeys += p->mask_rules[k].keys.n;
		if (nkeys > POLICY_MASK_KEYS_MAX)
			perr(l, v, "masking.results name %zu Redis keys; at most %d", nkeys,
			     POLICY_MASK_KEYS_MAX);
	}
}

static void parse_top(struct ld *l, yaml_node_t *root, struct policy *p)
{
	static const char *const keys[] = { "version",	   "defaults",	"targets", "rules",
					    "on_mismatch", "approvals", "masking", NULL };
	static const char *const dkeys[] = { "action", "unparsed", NULL };
	static const char *const akeys[] = { "webhook", "ttl", NULL };
	yaml_node_t *v;

	if (!root || !want_map(l, root, "the policy"))
		return;
	known_keys(l, root, "the policy", keys);
	v = get(l, root, "version");
	if (!v)
		perr(l, root, "version is missing (version: 1)");
	else if (!scalar(v) || strcmp(scalar(v), "1"))
		perr(l, v, "unsupported version '%s' (this agent reads version 1)",
		     scalar(v) ? scalar(v) : "?");
	v = get(l, root, "defaults");
	if (v && want_map(l, v, "defaults")) {
		yaml_node_t *a = get(l, v, "action"), *u = get(l, v, "unparsed");

		known_keys(l, v, "defaults", dkeys);
		if (a && (!scalar(a) || policy_action(scalar(a)) < 0))
			perr(l, a, "unknown action '%s'", scalar(a) ? scalar(a) : "?");
		else if (a)
			p->def_action = policy_action(scalar(a));
		if (u && scalar(u) && !strcmp(scalar(u), "block"))
			p->def_unparsed = 1;
		else if (u && scalar(u) && !strcmp(scalar(u), "allow"))
			p->def_unparsed = 0;
		else if (u)
			perr(l, u, "defaults.unparsed must be block or allow");
	}
	v = get(l, root, "on_mismatch");
	if (v) {
		if (scalar(v) && !strcmp(scalar(v), "reset"))
			p->mismatch_reset = true;
		else if (!scalar(v) || strcmp(scalar(v), "alert"))
			perr(l, v, "on_mismatch must be alert or reset");
	}
	v = get(l, root, "approvals");
	if (v && want_map(l, v, "approvals")) {
		yaml_node_t *t = get(l, v, "ttl");

		known_keys(l, v, "approvals", akeys);
		p->webhook = get(l, v, "webhook") ? xstrdup(scalar(get(l, v, "webhook"))) : NULL;
		if (p->webhook && strncmp(p->webhook, "http://", 7))
			perr(l, get(l, v, "webhook"),
			     "webhook must be an http:// URL (a local relay for https)");
		if (t) {
			p->approval_ttl_s = duration_s(scalar(t));
			if (!p->approval_ttl_s)
				perr(l, t, "ttl must be a duration such as 90s, 15m or 2h");
		}
	}
	v = get(l, root, "targets");
	if (v)
		parse_targets(l, v, p);
	v = get(l, root, "rules");
	if (v)
		parse_rules(l, v, p);
	v = get(l, root, "masking");
	if (v)
		parse_masking(l, v, p);
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nrules; i++) {
		free(p->rules[i].name);
		free(p->rules[i].message);
		free_cond(&p->rules[i].match);
		free_cond(&p->rules[i].unless);
	}
	free(p->rules);
	for (size_t i = 0; i < p->ntargets; i++) {
		free(p->targets[i].name);
		free(p->targets[i].host);
		free(p->targets[i].catalog);
		free_kvs(&p->targets[i].labels);
	}
	for (size_t i = 0; i < p->ndet_custom; i++) {
		free((char *)p->det_custom[i].name);
		free((char *)p->det_custom[i].regex);
	}
	for (size_t i = 0; i < p->nmask_rules; i++) {
		free(p->mask_rules[i].name);
		free_cond(&p->mask_rules[i].match);
		free_strs(&p->mask_rules[i].columns);
		free_strs(&p->mask_rules[i].keys);
	}
	free(p->webhook);
	free(p->path);
	free(p);
}

struct policy *policy_load(const char *path, char *err, size_t errlen)
{
	struct ld l = { .path = path, .err = err, .errlen = errlen };
	struct policy *p = calloc(1, sizeof(*p));
	yaml_parser_t parser;
	struct stat stb;
	FILE *f;

	if (errlen)
		err[0] = 0;
	if (!p)
		return NULL;
	p->path = xstrdup(path);
	p->def_unparsed = -1;
	p->det_builtin = DET_ALL_BUILTIN;
	f = fopen(path, "r");
	if (!f) {
		perr(&l, NULL, "cannot open: %s", strerror(errno));
		goto fail;
	}
	if (fstat(fileno(f), &stb) || stb.st_size > POLICY_MAX_BYTES) {
		perr(&l, NULL, "larger than %d bytes", POLICY_MAX_BYTES);
		fclose(f);
		goto fail;
	}
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &l.doc)) {
		yaml_node_t at = { .start_mark = parser.problem_mark };

		perr(&l, &at, "YAML: %s", parser.problem ? parser.problem : "syntax error");
		yaml_parser_delete(&parser);
		fclose(f);
		goto fail;
	}
	yaml_parser_delete(&parser);
	fclose(f);
	parse_top(&l, yaml_document_get_root_node(&l.doc), p);
	yaml_document_delete(&l.doc);
	if (l.nerr)
		goto fail;
	/* the kernel's share: the first rules it can evaluate, in file order */
	for (size_t i = 0; i < p->nrules; i++) {
		struct rule *r = &p->rules[i];

		r->why_not = kernel_unfit(r);
		/* SQL verbs and Redis commands are two kernel rules, one per space */
		if (!r->why_not &&
		    p->nkernel + (r->match.verbs && r->match.rverbs) >= DBW_GUARD_RULES)
			r->why_not = "beyond the kernel's 64 rules";
		if (!r->why_not) {
			r->kernel = p->nkernel;
			if (r->match.verbs || !r->match.rverbs) {
				p->kernel_space[p->nkernel] =
					r->match.verbs ? DBW_SPACE_SQL : DBW_SPACE_ANY;
				p->kernel_rules[p->nkernel++] = i;
			}
			if (r->match.rverbs) {
				p->kernel_space[p->nkernel] = DBW_SPACE_REDIS;
				p->kernel_rules[p->nkernel++] = i;
			}
		}
	}
	return p;
fail:
	policy_free(p);
	return NULL;
}

/* ---- evaluation ---------------------------------------------------------------- */

static bool in_list(const struct strs *s, const char *v, bool glob)
{
	if (!s->n)
		return true;
	for (size_t i = 0; i < s->n; i++)
		if (glob ? !fnmatch(s->v[i], v ? v : "", 0) : !strcmp(s->v[i], v ? v : ""))
			return true;
	return false;
}

/* A cgroup selector is a path prefix: "/kubepods" holds "/kubepods/pod1/c". */
static bool cgroup_in(const struct strs *s, const char *cg)
{
	if (!s->n)
		return true;
	for (size_t i = 0; i < s->n; i++) {
		size_t n = strlen(s->v[i]);

		if (cg && !strncmp(cg, s->v[i], n) &&
		    (!cg[n] || cg[n] == '/' || s->v[i][n - 1] == '/'))
			return true;
	}
	return false;
}

static const struct target *target_of(const struct policy *p, const struct policy_conn *c)
{
	for (size_t i = 0; i < p->ntargets; i++) {
		const struct target *t = &p->targets[i];
		char want[128];

		if (t->port != c->server_port)
			continue;
		if (t->proto && c->proto && t->proto != c->proto)
			continue;
		if (!*t->host)
			return t;
		snprintf(want, sizeof(want), "%s:%u", t->host, t->port);
		if (c->server && !strcmp(c->server, want))
			return t;
	}
	return NULL;
}

static bool target_holds(const struct policy *p, const struct cond *k, const struct policy_conn *c)
{
	const struct target *t;

	if (!k->target_names.n && !k->target_labels.n)
		return true;
	t = target_of(p, c);
	if (!t)
		return false;
	if (k->target_names.n && !in_list(&k->target_names, t->name, false))
		return false;
	for (size_t i = 0; i < k->target_labels.n; i++) {
		size_t j;

		for (j = 0; j < t->labels.n; j++)
			if (!strcmp(t->labels.v[j].k, k->target_labels.v[i].k) &&
			    !strcmp(t->labels.v[j].v, k->target_labels.v[i].v))
				break;
		if (j == t->labels.n)
			return false;
	}
	return true;
}

/*
 * Three-valued answers: a selector on something not known yet may hold.
 * See policy.h: such an answer resolves to the stricter outcome.
 */
enum tri { T_NO = 0, T_YES = 1, T_MAYBE = 2 };

/* What a caller does not know of a connection, besides an empty database or db_user. */
enum unknown {
	UNK_PROCESS = 1 << 0, /* uid, user, comm, exe: only the cgroup is known */
	UNK_TARGET = 1 << 1, /* the server: only the cgroup is known */
	UNK_WORKLOAD = 1 << 2, /* the cgroup itself: not classified yet */
};

static enum tri tri_and(enum tri a, enum tri b)
{
	if (a == T_NO || b == T_NO)
		return T_NO;
	return a == T_MAYBE || b == T_MAYBE ? T_MAYBE : T_YES;
}

/* A selector's answer: YES when absent, MAYBE when its field is not known. */
static enum tri sel(bool present, bool unknown, bool holds)
{
	if (!present)
		return T_YES;
	if (unknown)
		return T_MAYBE;
	return holds ? T_YES : T_NO;
}

/* Every label the selector names, with its value, is on the pod. */
static bool labels_hold(const struct kvs *want, const struct policy_conn *c)
{
	for (size_t i = 0; i < want->n; i++) {
		size_t j;

		for (j = 0; j < c->nlabels; j++)
			if (!strcmp(c->labels[2 * j], want->v[i].k) &&
			    !strcmp(c->labels[2 * j + 1], want->v[i].v))
				break;
		if (j == c->nlabels)
			return false;
	}
	return true;
}

/* A container id selector is the id or a prefix of it (docker's 12 digits). */
static bool container_id_in(const struct strs *s, const char *id)
{
	for (size_t i = 0; i < s->n; i++)
		if (id && *id && !strncmp(id, s->v[i], strlen(s->v[i])))
			return true;
	return !s->n;
}

/*
 * The connection-level part of a condition: target, session and actor.
 * A host process has no pod: a pod selector does not hold for it. A pod
 * whose metadata is not known (in_pod && !pod_known) may match any pod
 * selector; so may anything in `unk`, and a database or db_user still "".
 */
static enum tri conn_tri(const struct policy *p, const struct cond *k, const struct policy_conn *c,
			 unsigned unk)
{
	const struct actor_sel *a = &k->actor;
	bool proc = unk & UNK_PROCESS, wl = unk & UNK_WORKLOAD;
	bool pod_unk = wl || (c->in_pod && !c->pod_known), pod = c->in_pod && c->pod_known;
	enum tri t = T_YES;
	char uid[16];

	snprintf(uid, sizeof(uid), "%u", c->uid);
	t = tri_and(t, sel(k->target_names.n || k->target_labels.n, unk & UNK_TARGET,
			   target_holds(p, k, c)));
	t = tri_and(t,
		    sel(k->database.n, !*c->database, in_list(&k->database, c->database, false)));
	t = tri_and(t, sel(k->db_user.n, !*c->db_user, in_list(&k->db_user, c->db_user, false)));
	t = tri_and(t, sel(a->uid.n, proc, in_list(&a->uid, uid, false)));
	t = tri_and(t, sel(a->user.n, proc, in_list(&a->user, c->user, false)));
	t = tri_and(t, sel(a->comm.n, proc, in_list(&a->comm, c->comm, true)));
	t = tri_and(t, sel(a->exe.n, proc, in_list(&a->exe, c->exe, true)));
	t = tri_and(t, sel(a->cgroup.n, wl, cgroup_in(&a->cgroup, c->cgroup)));
	t = tri_and(t,
		    sel(a->container_id.n, wl, container_id_in(&a->container_id, c->container_id)));
	t = tri_and(t, sel(a->pod_namespace.n, pod_unk,
			   pod && in_list(&a->pod_namespace, c->pod_namespace, true)));
	t = tri_and(t,
		    sel(a->pod_name.n, pod_unk, pod && in_list(&a->pod_name, c->pod_name, true)));
	t = tri_and(t, sel(a->service_account.n, pod_unk,
			   pod && in_list(&a->service_account, c->service_account, true)));
	/* the container's name comes with the pod's metadata */
	t = tri_and(
		t, sel(a->container.n, pod_unk, pod && in_list(&a->container, c->container, true)));
	t = tri_and(t, sel(a->labels.n, pod_unk, pod && labels_hold(&a->labels, c)));
	return t;
}

static bool has_workload_selectors(const struct cond *k)
{
	const struct actor_sel *a = &k->actor;

	return a->cgroup.n || a->container_id.n || a->container.n || a->pod_namespace.n ||
	       a->pod_name.n || a->service_account.n || a->labels.n;
}

static bool has_conn_selectors(const struct cond *k)
{
	const struct actor_sel *a = &k->actor;

	return k->target_names.n || k->target_labels.n || k->database.n || k->db_user.n ||
	       a->uid.n || a->user.n || a->comm.n || a->exe.n || has_workload_selectors(k);
}

/* "users" names "public.users" too; comparison as PostgreSQL folds unquoted names. */
static bool object_named(const char *want, const char *obj)
{
	size_t n = strlen(obj), w = strlen(want);

	if (!strcasecmp(want, obj))
		return true;
	return !strchr(want, '.') && n > w && obj[n - w - 1] == '.' &&
	       !strcasecmp(obj + n - w, want);
}

static bool stmt_holds(const struct cond *k, const struct policy_stmt *s)
{
	if (k->verbs || k->rverbs) {
		bool redis = s->space == DBW_SPACE_REDIS;
		int v = redis ? redis_verb_class(s->verb ? s->verb : "") :
				policy_verb(s->verb ? s->verb : "");
		uint32_t all = s->verbs | (v > 0 ? 1u << v : 0);

		/* WITH d AS (DELETE ...) SELECT is a DELETE too */
		if (!((redis ? k->rverbs : k->verbs) & all))
			return false;
	}
	if (k->without_where >= 0 && k->without_where != s->without_where)
		return false;
	if (k->objects.n) {
		for (size_t i = 0; i < k->objects.n; i++)
			for (size_t j = 0; j < s->nobjects; j++)
				if (object_named(k->objects.v[i], s->objects[j]))
					return true;
		return false;
	}
	return true;
}

static bool blocking(enum dbw_action a)
{
	return a == DBW_ACT_BLOCK || a == DBW_ACT_APPROVAL;
}

/* A rule's match that may hold: it applies if that is the stricter answer. */
static bool match_applies(const struct rule *r, enum tri t)
{
	return t == T_YES || (t == T_MAYBE && blocking(r->action));
}

/* A rule's unless that may hold: it exempts only if that is the stricter answer. */
static bool unless_exempts(const struct rule *r, enum tri t)
{
	return t == T_YES || (t == T_MAYBE && !blocking(r->action));
}

void policy_eval(const struct policy *p, const struct policy_conn *c, const struct policy_stmt *s,
		 struct policy_verdict *out)
{
	bool may_block = blocking(p->def_action);

	for (size_t i = 0; i < p->nrules; i++) {
		const struct rule *r = &p->rules[i];

		if (!match_applies(r, conn_tri(p, &r->match, c, 0)))
			continue;
		may_block |= blocking(r->action);
		if (!stmt_holds(&r->match, s))
			continue;
		if (r->unless.present &&
		    unless_exempts(r, tri_and(conn_tri(p, &r->unless, c, 0),
					      stmt_holds(&r->unless, s) ? T_YES : T_NO)))
			continue;
		out->action = r->action;
		out->rule = i;
		out->name = r->name;
		out->message = r->message;
		out->unparsed = false;
		return;
	}
	out->rule = -1;
	out->name = NULL;
	out->message = "";
	out->unparsed = false;
	out->action = p->def_action;
	if (!s->parsed && may_block && p->def_unparsed != 0) {
		out->action = DBW_ACT_BLOCK;
		out->unparsed = true;
	}
}

/*
 * The kernel rules that apply to c with `unk` unknown. A kernel rule's
 * unless never looks at the statement (kernel_unfit): it is settled here.
 */
static uint64_t kernel_mask(const struct policy *p, const struct policy_conn *c, unsigned unk)
{
	uint64_t mask = 0;

	for (unsigned k = 0; k < p->nkernel; k++) {
		const struct rule *r = &p->rules[p->kernel_rules[k]];

		if (!match_applies(r, conn_tri(p, &r->match, c, unk)))
			continue;
		if (r->unless.present && has_conn_selectors(&r->unless) &&
		    unless_exempts(r, conn_tri(p, &r->unless, c, unk)))
			continue;
		mask |= 1ULL << k;
	}
	return mask;
}

uint64_t policy_conn_rules(const struct policy *p, const struct policy_conn *c)
{
	return kernel_mask(p, c, 0);
}

/*
 * The workload's side of c (cgroup, container, pod) as a connection whose
 * process, server and session are unknown; *unk says which fields are.
 * c NULL: no workload known either.
 */
static struct policy_conn workload_view(const struct policy_conn *c, unsigned *unk)
{
	struct policy_conn w = { .user = "",
				 .comm = "",
				 .exe = "",
				 .cgroup = "",
				 .server = "",
				 .database = "",
				 .db_user = "" };

	*unk = UNK_PROCESS | UNK_TARGET | (c ? 0 : UNK_WORKLOAD);
	if (c) {
		w.cgroup = c->cgroup ? c->cgroup : "";
		w.container_id = c->container_id;
		w.in_pod = c->in_pod;
		w.pod_known = c->pod_known;
		w.pod_namespace = c->pod_namespace;
		w.pod_name = c->pod_name;
		w.service_account = c->service_account;
		w.container = c->container;
		w.labels = c->labels;
		w.nlabels = c->nlabels;
	}
	return w;
}

uint64_t policy_workload_rules(const struct policy *p, const struct policy_conn *c)
{
	unsigned unk;
	struct policy_conn w = workload_view(c, &unk);

	return kernel_mask(p, &w, unk);
}

bool policy_has_workload_selectors(const struct policy *p)
{
	for (size_t i = 0; i < p->nrules; i++)
		if (has_workload_selectors(&p->rules[i].match) ||
		    has_workload_selectors(&p->rules[i].unless))
			return true;
	for (size_t i = 0; i < p->nmask_rules; i++)
		if (has_workload_selectors(&p->mask_rules[i].match))
			return true;
	return false;
}

uint64_t policy_port_rules(const struct policy *p, uint16_t port)
{
	uint64_t mask = 0;

	for (unsigned k = 0; k < p->nkernel; k++) {
		const struct cond *m = &p->rules[p->kernel_rules[k]].match;
		bool maybe = !m->target_names.n && !m->target_labels.n;

		for (size_t t = 0; !maybe && t < p->ntargets; t++) {
			struct policy_conn c = { .server_port = port };

			/* any target on this port that the rule could mean */
			if (p->targets[t].port == port) {
				char addr[128];

				snprintf(addr, sizeof(addr), "%s:%u", p->targets[t].host, port);
				c.server = addr;
				maybe = target_holds(p, m, &c);
			}
		}
		if (maybe)
			mask |= 1ULL << k;
	}
	return mask;
}

/*
 * The statement that replaces a blocked one, in the connection's protocol:
 * the server raises the error itself, in order with the rest of the
 * client's pipeline. require_approval texts start their message with
 * "approval id " and room for the id, which the kernel writes at
 * DBW_APPROVAL_ID_OFF: each protocol's prefix is 66 bytes long for that.
 *
 *   PostgreSQL  DO $dbw$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = '...'; END$dbw$
 *   MySQL       SIGNAL SQLSTATE '42000' SET MYSQL_ERRNO = 1142, MESSAGE_TEXT = '...'
 *   Redis       *3 $4 EVAL $355 <return redis.error_reply('ERR ...')> $1 0   (RESP)
 *
 * Every text is exactly DBW_GUARD_TEXT bytes, space padded: PostgreSQL's
 * ends with the NUL its message carries; the others carry none.
 */
static void replacement(struct dbw_guard_text *t, uint8_t proto, const char *name, const char *msg,
			bool approval)
{
	static const char pg_prefix[] =
		"DO $dbw$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = '";
	static const char my_prefix[] =
		"SIGNAL   SQLSTATE '42000' SET MYSQL_ERRNO = 1142, MESSAGE_TEXT = '";
	static const char rd_head[] = "*3\r\n$4\r\nEVAL\r\n$355\r\n";
	static const char rd_prefix[] = "                return redis.error_reply('ERR ";
	static const char rd_tail[] = "\r\n$1\r\n0\r\n";
	char text[200], quoted[280];
	size_t q = 0, cap = sizeof(quoted);
	int n;

	_Static_assert(sizeof(pg_prefix) - 1 + 12 == DBW_APPROVAL_ID_OFF, "approval id offset");
	_Static_assert(sizeof(my_prefix) - 1 + 12 == DBW_APPROVAL_ID_OFF, "approval id offset");
	_Static_assert(sizeof(rd_head) - 1 + sizeof(rd_prefix) - 1 + 12 == DBW_APPROVAL_ID_OFF,
		       "approval id offset");
	_Static_assert(sizeof(rd_head) - 1 + 355 + sizeof(rd_tail) - 1 == DBW_GUARD_TEXT,
		       "redis replacement size");
	snprintf(text, sizeof(text), "%sblocked by dbwarden rule %s%s%s",
		 approval ? "approval id ############: " : "", name, *msg ? ": " : "", msg);
	if (proto == DBW_PROTO_MYSQL)
		cap = 128 + 1; /* MESSAGE_TEXT holds 128 characters */
	for (size_t i = 0; text[i] && q + 3 < cap; i++) {
		unsigned char ch = text[i];

		if (ch < 0x20 || ch == 0x7f)
			ch = ' ';
		if (proto == DBW_PROTO_POSTGRES) {
			/* a quote is doubled; a '$' could end the dollar quote early */
			if (ch == '\'')
				quoted[q++] = '\'';
			if (ch == '$')
				ch = 'S';
		} else if (ch == '\'' || ch == '\\') {
			/* whatever the SQL mode or Lua: no quote, no escape */
			ch = ch == '\'' ? '"' : '/';
		}
		quoted[q++] = ch;
	}
	quoted[q] = 0;
	memset(t, 0, sizeof(*t));
	switch (proto) {
	case DBW_PROTO_MYSQL:
		n = snprintf((char *)t->text, sizeof(t->text), "%s%s'", my_prefix, quoted);
		memset(t->text + n, ' ', sizeof(t->text) - n);
		break;
	case DBW_PROTO_REDIS:
		n = snprintf((char *)t->text, sizeof(t->text), "%s%s%s')", rd_head, rd_prefix,
			     quoted);
		memset(t->text + n, ' ', sizeof(t->text) - n);
		memcpy(t->text + sizeof(t->text) - (sizeof(rd_tail) - 1), rd_tail,
		       sizeof(rd_tail) - 1);
		break;
	default:
		n = snprintf((char *)t->text, sizeof(t->text), "%s%s'; END$dbw$", pg_prefix,
			     quoted);
		/* 66 + 280 + 12 < DBW_GUARD_TEXT: the statement is never cut */
		memset(t->text + n, ' ', sizeof(t->text) - 1 - n);
		t->text[sizeof(t->text) - 1] = 0;
	}
	t->id_off = approval;
}

void policy_kernel_texts(const struct policy *p, uint8_t proto, struct dbw_guard_text *texts,
			 struct dbw_guard_text *unparsed)
{
	for (unsigned k = 0; k < p->nkernel; k++) {
		const struct rule *r = &p->rules[p->kernel_rules[k]];

		replacement(&texts[k], proto, r->name, r->message, r->action == DBW_ACT_APPROVAL);
	}
	replacement(unparsed, proto, "defaults.unparsed", "statement could not be read in full",
		    false);
}

unsigned policy_kernel(const struct policy *p, struct dbw_guard_rule *rules,
		       struct dbw_guard_text *texts, struct dbw_guard_text *unparsed,
		       struct dbw_guard_cfg *cfg)
{
	bool any_block = blocking(p->def_action);

	for (unsigned k = 0; k < p->nkernel; k++) {
		const struct rule *r = &p->rules[p->kernel_rules[k]];
		struct dbw_guard_rule *g = &rules[k];

		memset(g, 0, sizeof(*g));
		g->space = p->kernel_space[k];
		g->verbs = g->space == DBW_SPACE_REDIS ? r->match.rverbs : r->match.verbs;
		g->action = r->action;
		g->without_where = r->match.without_where == 1;
		/* without_where: false is "a WHERE is present": userspace settles it */
		for (size_t i = 0; i < r->match.objects.n; i++) {
			char low[256];
			size_t n = strlen(r->match.objects.v[i]);

			for (size_t j = 0; j <= n && j < sizeof(low); j++)
				low[j] = tolower((unsigned char)r->match.objects.v[i][j]);
			low[sizeof(low) - 1] = 0;
			g->objects[g->nobjects++] = dbw_name_hash(low, strlen(low));
			if (!strchr(low, '.')) {
				/* "users" also as the lexer reads "public.users" */
				char q[264];

				snprintf(q, sizeof(q), "public.%s", low);
				g->objects[g->nobjects++] = dbw_name_hash(q, strlen(q));
			}
		}
		any_block |= blocking(r->action);
	}
	policy_kernel_texts(p, DBW_PROTO_POSTGRES, texts, unparsed);
	memset(cfg, 0, sizeof(*cfg));
	cfg->enabled = p->nkernel > 0 || p->def_unparsed == 1;
	/* masking by Redis key needs the walk of Redis commands (only) */
	if (!cfg->enabled && policy_mask_keys(p, NULL, NULL))
		cfg->enabled = cfg->redis_only = 1;
	cfg->unparsed_block = p->def_unparsed == 1 || (p->def_unparsed < 0 && any_block);
	return p->nkernel;
}

void policy_down_text(uint8_t proto, struct dbw_guard_text *t)
{
	replacement(t, proto, "fail-mode closed", "no dbwarden agent is running to audit it",
		    false);
}

/* ---- accessors and printing ----------------------------------------------------- */

size_t policy_nrules(const struct policy *p)
{
	return p->nrules;
}

const char *policy_rule_name(const struct policy *p, int rule)
{
	return rule >= 0 && (size_t)rule < p->nrules ? p->rules[rule].name : NULL;
}

bool policy_on_mismatch_reset(const struct policy *p)
{
	return p->mismatch_reset;
}

unsigned policy_approval_ttl(const struct policy *p)
{
	return p->approval_ttl_s ? p->approval_ttl_s : 15 * 60;
}

const char *policy_webhook(const struct policy *p)
{
	return p->webhook;
}

int policy_kernel_rule(const struct policy *p, unsigned k)
{
	return k < p->nkernel ? p->kernel_rules[k] : -1;
}

static void print_strs(FILE *f, const char *what, const struct strs *s)
{
	if (!s->n)
		return;
	fprintf(f, " %s=", what);
	for (size_t i = 0; i < s->n; i++)
		fprintf(f, "%s%s", i ? "," : "", s->v[i]);
}

static void print_cond(FILE *f, const char *what, const struct cond *k)
{
	const struct actor_sel *a = &k->actor;

	fprintf(f, "  %s:", what);
	if (k->verbs) {
		fprintf(f, " verbs=");
		for (int v = 0, first = 1; v < DBW_VERB__MAX; v++)
			if (k->verbs & (1u << v)) {
				fprintf(f, "%s%s", first ? "" : ",", verb_names[v]);
				first = 0;
			}
	}
	if (k->rverbs) {
		const char *name;
		int cls, first = 1;

		fprintf(f, " redis_commands=");
		for (size_t i = 0; (name = redis_verb_entry(i, &cls)); i++)
			if (k->rverbs & (1u << cls)) {
				fprintf(f, "%s%s", first ? "" : ",", name);
				first = 0;
			}
	}
	if (k->without_where >= 0)
		fprintf(f, " without_where=%s", k->without_where ? "true" : "false");
	print_strs(f, "objects", &k->objects);
	print_strs(f, "target", &k->target_names);
	for (size_t i = 0; i < k->target_labels.n; i++)
		fprintf(f, " target.%s=%s", k->target_labels.v[i].k, k->target_labels.v[i].v);
	print_strs(f, "database", &k->database);
	print_strs(f, "db_user", &k->db_user);
	print_strs(f, "uid", &a->uid);
	print_strs(f, "user", &a->user);
	print_strs(f, "comm", &a->comm);
	print_strs(f, "exe", &a->exe);
	print_strs(f, "cgroup", &a->cgroup);
	print_strs(f, "container_id", &a->container_id);
	print_strs(f, "container", &a->container);
	print_strs(f, "pod_namespace", &a->pod_namespace);
	print_strs(f, "pod_name", &a->pod_name);
	print_strs(f, "service_account", &a->service_account);
	for (size_t i = 0; i < a->labels.n; i++)
		fprintf(f, " label.%s=%s", a->labels.v[i].k, a->labels.v[i].v);
	fprintf(f, "\n");
}

void policy_print(const struct policy *p, FILE *f)
{
	fprintf(f, "policy %s: %zu rules (%u in the kernel), %zu targets\n", p->path, p->nrules,
		p->nkernel, p->ntargets);
	fprintf(f, "defaults: action=%s unparsed=%s on_mismatch=%s\n",
		policy_action_name(p->def_action),
		p->def_unparsed < 0 ? "block where rules block" :
		p->def_unparsed	    ? "block" :
				      "allow",
		p->mismatch_reset ? "reset" : "alert");
	for (size_t i = 0; i < p->ntargets; i++)
		fprintf(f, "target %s: %s port %u%s\n", p->targets[i].name,
			*p->targets[i].host ? p->targets[i].host : "any address",
			p->targets[i].port,
			p->targets[i].catalog ? ", table names read in its catalog" : "");
	for (size_t i = 0; i < p->nrules; i++) {
		const struct rule *r = &p->rules[i];

		fprintf(f, "rule %zu %s (line %d): %s", i + 1, r->name, r->line,
			policy_action_name(r->action));
		if (r->kernel >= 0)
			fprintf(f, ", enforced in the kernel (slot %d)\n", r->kernel);
		else
			fprintf(f, ", checked in userspace only: %s\n", r->why_not);
		print_cond(f, "match", &r->match);
		if (r->unless.present)
			print_cond(f, "unless", &r->unless);
		if (*r->message)
			fprintf(f, "  message: %s\n", r->message);
	}
	fprintf(f, "masking: statement_text=%s detectors=",
		p->text_mode == POLICY_TEXT_RAW	   ? "raw" :
		p->text_mode == POLICY_TEXT_MASKED ? "masked" :
						     "normalized");
	for (int b = 0, first = 1; b < DET__BUILTIN; b++)
		if (p->det_builtin & (1u << b)) {
			fprintf(f, "%s%s", first ? "" : ",", detect_builtin_name(b));
			first = 0;
		}
	for (size_t i = 0; i < p->ndet_custom; i++)
		fprintf(f, ",%s", p->det_custom[i].name);
	fprintf(f, "\n");
	for (size_t k = 0; k < p->nmask_rules; k++) {
		const struct mask_rule *r = &p->mask_rules[k];
		static const char *const styles[] = { "stars", "keep_last4", "token" };

		fprintf(f,
			"masking rule %zu %s (line %d): style=%s on_unmaskable=%s placement=%s%s%s",
			k + 1, r->name, r->line, styles[r->style % 3],
			r->allow_unmaskable ? "allow" : "block",
			r->placement & PLACE_CLIENT ? "client" : "",
			r->placement == (PLACE_CLIENT | PLACE_SERVER) ? "," : "",
			r->placement & PLACE_SERVER ? "server" : "");
		print_strs(f, "columns", &r->columns);
		print_strs(f, "keys", &r->keys);
		if (r->detectors & DBW_MDET_EMAIL)
			fprintf(f, " detector=email");
		if (r->detectors & DBW_MDET_CARD)
			fprintf(f, " detector=credit_card");
		fprintf(f, "\n");
		print_cond(f, "match", &r->match);
	}
}

/* ---- masking ------------------------------------------------------------------------ */

enum policy_text_mode policy_text_mode(const struct policy *p)
{
	return p->text_mode;
}

uint32_t policy_detectors(const struct policy *p, const struct det_custom **custom, size_t *n)
{
	*custom = p->det_custom;
	*n = p->ndet_custom;
	return p->det_builtin;
}

size_t policy_nmask_rules(const struct policy *p)
{
	return p->nmask_rules;
}

const char *policy_mask_rule_name(const struct policy *p, unsigned k)
{
	return k < p->nmask_rules ? p->mask_rules[k].name : "?";
}

/* Masking rules that may apply to c with `unk` unknown: maybe counts as yes (stricter). */
static uint32_t mask_rules_of(const struct policy *p, const struct policy_conn *c, unsigned unk)
{
	uint32_t mask = 0;

	for (size_t k = 0; k < p->nmask_rules; k++)
		if ((p->mask_rules[k].placement & PLACE_CLIENT) &&
		    conn_tri(p, &p->mask_rules[k].match, c, unk) != T_NO)
			mask |= 1u << k;
	return mask;
}

uint32_t policy_mask_conn_rules(const struct policy *p, const struct policy_conn *c)
{
	return mask_rules_of(p, c, 0);
}

uint32_t policy_mask_workload_rules(const struct policy *p, const struct policy_conn *c)
{
	unsigned unk;
	struct policy_conn w = workload_view(c, &unk);

	return mask_rules_of(p, &w, unk);
}

uint32_t policy_mask_port_rules(const struct policy *p, uint16_t port)
{
	uint32_t mask = 0;

	for (size_t k = 0; k < p->nmask_rules; k++) {
		const struct cond *m = &p->mask_rules[k].match;
		bool maybe = !m->target_names.n && !m->target_labels.n;

		for (size_t t = 0; !maybe && t < p->ntargets; t++) {
			struct policy_conn c = { .server_port = port };
			char addr[128];

			if (p->targets[t].port != port)
				continue;
			snprintf(addr, sizeof(addr), "%s:%u", p->targets[t].host, port);
			c.server = addr;
			maybe = target_holds(p, m, &c);
		}
		if (maybe)
			mask |= 1u << k;
	}
	return mask;
}

bool policy_mask_allows_unmaskable(const struct policy *p, uint32_t rules)
{
	for (size_t k = 0; k < p->nmask_rules; k++)
		if ((rules & (1u << k)) && !p->mask_rules[k].allow_unmaskable)
			return false;
	return true;
}

size_t policy_mask_kernel(const struct policy *p, struct dbw_mask_rule *rules,
			  void (*column)(void *ctx, const char *name, uint32_t rules), void *ctx)
{
	for (size_t k = 0; k < p->nmask_rules; k++) {
		const struct mask_rule *r = &p->mask_rules[k];

		rules[k] = (struct dbw_mask_rule){ .style = r->style,
						   .detectors = r->detectors,
						   .allow_unmaskable = r->allow_unmaskable,
						   .columns = r->columns.n > 0 };
		for (size_t i = 0; i < r->columns.n; i++) {
			/* by name, a qualified one bare: the catalog, if any, narrows (mask_rel) */
			const char *dot = strrchr(r->columns.v[i], '.');

			column(ctx, dot ? dot + 1 : r->columns.v[i], 1u << k);
		}
	}
	return p->nmask_rules;
}

uint32_t policy_mask_server(const struct policy *p,
			    void (*user)(void *ctx, const char *name, uint32_t rules), void *ctx,
			    uint32_t *user_free)
{
	uint32_t srv = 0;

	*user_free = 0;
	for (size_t k = 0; k < p->nmask_rules; k++) {
		const struct cond *m = &p->mask_rules[k].match;

		if (!(p->mask_rules[k].placement & PLACE_SERVER))
			continue;
		srv |= 1u << k;
		if (!m->db_user.n)
			*user_free |= 1u << k;
		for (size_t i = 0; i < m->db_user.n; i++)
			user(ctx, m->db_user.v[i], 1u << k);
	}
	return srv;
}

void policy_mask_columns(const struct policy *p,
			 void (*col)(void *ctx, const char *schema, const char *table,
				     const char *column, uint32_t rule),
			 void *ctx)
{
	for (size_t k = 0; k < p->nmask_rules; k++)
		for (size_t i = 0; i < p->mask_rules[k].columns.n; i++) {
			struct colname c;

			if (split_column(p->mask_rules[k].columns.v[i], &c))
				col(ctx, *c.schema ? c.schema : NULL, *c.table ? c.table : NULL,
				    c.column, 1u << k);
		}
}

uint32_t policy_mask_keys(const struct policy *p,
			  void (*key)(void *ctx, const char *k, size_t n, bool prefix,
				      uint32_t rule),
			  void *ctx)
{
	uint32_t rules = 0;

	for (size_t k = 0; k < p->nmask_rules; k++)
		for (size_t i = 0; i < p->mask_rules[k].keys.n; i++) {
			const char *s = p->mask_rules[k].keys.v[i];
			size_t n = strlen(s);
			bool prefix = n && s[n - 1] == '*';

			rules |= 1u << k;
			if (key)
				key(ctx, s, prefix ? n - 1 : n, prefix, 1u << k);
		}
	return rules;
}

const char *policy_catalog(const struct policy *p, const struct policy_conn *c, const char **target,
			   unsigned *refresh_s)
{
	const struct target *t = target_of(p, c);

	if (!t || !t->catalog)
		return NULL;
	*target = t->name;
	*refresh_s = t->catalog_refresh_s;
	return t->catalog;
}

uint32_t policy_mask_uids(const struct policy *p,
			  void (*uid)(void *ctx, uint32_t uid, uint32_t rules), void *ctx)
{
	uint32_t free_rules = 0;

	for (size_t k = 0; k < p->nmask_rules; k++) {
		const struct strs *u = &p->mask_rules[k].match.actor.uid;

		/* a rule placed on the server side only is no client's candidate */
		if (!(p->mask_rules[k].placement & PLACE_CLIENT))
			continue;
		if (!u->n)
			free_rules |= 1u << k;
		for (size_t i = 0; i < u->n; i++)
			uid(ctx, (uint32_t)strtoul(u->v[i], NULL, 10), 1u << k);
	}
	return free_rules;
}
