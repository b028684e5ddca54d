/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The policy: a YAML file (see README "Guardrails") parsed with libyaml,
 * validated with FILE:line:col errors, evaluated for statements, and
 * compiled for the kernel guard.
 *
 * Evaluation: the first rule in file order whose `match` holds and whose
 * `unless` does not decides; no rule: defaults.action. A statement the
 * analyser could not read (truncated, not SQL) on a connection that has
 * blocking rules follows defaults.unparsed.
 *
 * Connection-level selectors (target, database, db_user, actor) are
 * evaluated once per connection by policy_conn_rules(); statement-level
 * ones (verb, objects, without_where) per statement, in the kernel for the
 * first DBW_GUARD_RULES rules and again here on the exact parse.
 *
 * What is not known yet (the session before its startup message, a pod's
 * metadata while the API is away, a process when only its cgroup is) may
 * hold or not: such a selector resolves to the stricter answer. A rule that
 * may apply applies when it blocks, and does not when it allows; an
 * `unless` that may hold exempts nothing from a blocking rule.
 */
#ifndef DBW_POLICY_H
#define DBW_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dbwarden_abi.h"

#define POLICY_MAX_BYTES   (1 << 20)
#define POLICY_MAX_RULES   256
#define POLICY_MAX_TARGETS 64

struct policy;

/* What is known of a connection ("" or 0 where not known yet). */
struct policy_conn {
	uint32_t uid;
	const char *user, *comm, *exe, *cgroup;
	const char *server; /* "10.0.0.5:5432", "[::1]:5432" */
	uint16_t server_port;
	uint8_t proto; /* enum dbw_proto; 0: not known (any target's protocol) */
	const char *database, *db_user;
	/* the workload: NULL or "" for a host process */
	const char *container_id;
	bool in_pod; /* the cgroup names a pod ... */
	bool pod_known; /* ... and the Kubernetes API has told us about it */
	const char *pod_namespace, *pod_name, *service_account, *container;
	const char *const *labels; /* key, value, key, value, ... */
	size_t nlabels; /* pairs */
};

/* What the exact analysis says of a statement. */
struct policy_stmt {
	const char *verb; /* "SELECT", "DROP", ... "UNKNOWN"; Redis: "FLUSHALL", "CONFIG SET" */
	uint32_t verbs; /* sql_analysis.verbs: nested statements count too */
	uint8_t space; /* enum dbw_verb_space of verb and verbs: SQL (0 too) or Redis */
	const char *const *objects;
	size_t nobjects;
	bool without_where;
	bool parsed; /* false: truncated or not SQL */
};

struct policy_verdict {
	enum dbw_action action;
	int rule; /* index in file order, -1 for the defaults */
	const char *name; /* the rule's name, NULL for the defaults */
	const char *message; /* the rule's message, "" if none */
	bool unparsed; /* decided by defaults.unparsed */
};

/*
 * Load and validate path. On error returns NULL and writes every problem
 * as "FILE:line:col: what is wrong\n" into err (truncated to errlen).
 */
struct policy *policy_load(const char *path, char *err, size_t errlen);
void policy_free(struct policy *p);

/* The compiled rules, readable (`dbwarden policy check`). */
void policy_print(const struct policy *p, FILE *f);

size_t policy_nrules(const struct policy *p);
const char *policy_rule_name(const struct policy *p, int rule);
bool policy_on_mismatch_reset(const struct policy *p);
/* approvals.ttl in seconds (default 15 minutes), approvals.webhook or NULL */
unsigned policy_approval_ttl(const struct policy *p);
const char *policy_webhook(const struct policy *p);

/* Rule index (file order) of kernel rule k, or -1. */
int policy_kernel_rule(const struct policy *p, unsigned k);

/* Evaluate a statement on a connection (the daemon and `policy test`). */
void policy_eval(const struct policy *p, const struct policy_conn *c, const struct policy_stmt *s,
		 struct policy_verdict *out);

/* Kernel rules (bit k = kernel rule k) that apply to connection c. */
uint64_t policy_conn_rules(const struct policy *p, const struct policy_conn *c);

/* Kernel rules that may apply to a connection to server port `port`. */
uint64_t policy_port_rules(const struct policy *p, uint16_t port);

/*
 * The workload class of a cgroup: the kernel rules that apply to the
 * processes of a cgroup whose workload is c (cgroup, container_id and the
 * pod fields set; the process, server and session unknown). The kernel
 * intersects it with the port's rules for a connection whose own rules
 * userspace has not computed yet. c NULL: a cgroup not classified yet.
 */
uint64_t policy_workload_rules(const struct policy *p, const struct policy_conn *c);

/* Does the policy look at workloads (cgroup, container or pod selectors)? */
bool policy_has_workload_selectors(const struct policy *p);

/*
 * The kernel's share: up to DBW_GUARD_RULES rules and their replacement
 * statements, the unparsed block's text and the guard config.
 * Returns the number of kernel rules.
 */
/* The replacement text of statements refused by --fail-mode closed. */
void policy_down_text(uint8_t proto, struct dbw_guard_text *t);

unsigned policy_kernel(const struct policy *p, struct dbw_guard_rule *rules,
		       struct dbw_guard_text *texts, struct dbw_guard_text *unparsed,
		       struct dbw_guard_cfg *cfg);

/*
 * The replacement texts of the kernel rules (DBW_GUARD_RULES of them) and
 * of the unparsed block in protocol proto (policy_kernel gives
 * PostgreSQL's).
 */
void policy_kernel_texts(const struct policy *p, uint8_t proto, struct dbw_guard_text *texts,
			 struct dbw_guard_text *unparsed);

/* enum dbw_verb of a verb name ("DROP"), or -1. */
int policy_verb(const char *name);
const char *policy_action_name(enum dbw_action a);
/* enum dbw_action of a name ("block"), or -1. */
int policy_action(const char *name);

/*
 * Masking (README "Masking"). statement_text: what the event's statement
 * text is; detectors: the built-in set (enum det_builtin bits) and the
 * custom ones (valid while p is) applied to every string that leaves the
 * host.
 */
enum policy_text_mode {
	POLICY_TEXT_NORMALIZED = 0, /* literals become $n (libpg_query) */
	POLICY_TEXT_MASKED = 1, /* as sent, every detector's span replaced by <name> */
	POLICY_TEXT_RAW = 2, /* as sent: an explicit opt-in */
};

struct det_custom;
enum policy_text_mode policy_text_mode(const struct policy *p);
uint32_t policy_detectors(const struct policy *p, const struct det_custom **custom, size_t *n);

/*
 * masking.results: at most DBW_MASK_RULES rules, bit k = rule k in file
 * order. A selector not known yet may hold: the rule applies (stricter).
 */
size_t policy_nmask_rules(const struct policy *p);
const char *policy_mask_rule_name(const struct policy *p, unsigned k);
uint32_t policy_mask_conn_rules(const struct policy *p, const struct policy_conn *c);
/* As policy_workload_rules, for masking rules (c NULL: a cgroup not classified yet). */
uint32_t policy_mask_workload_rules(const struct policy *p, const struct policy_conn *c);
uint32_t policy_mask_port_rules(const struct policy *p, uint16_t port);
/* Every rule in `rules` says on_unmaskable: allow. */
bool policy_mask_allows_unmaskable(const struct policy *p, uint32_t rules);
/*
 * The kernel's share: rules[k] for each rule, and column(ctx, name, bit)
 * for each column a rule names. Returns the number of rules.
 */
size_t policy_mask_kernel(const struct policy *p, struct dbw_mask_rule *rules,
			  void (*column)(void *ctx, const char *name, uint32_t rules), void *ctx);
/*
 * Each column a masking rule lists, split: col(ctx, schema, table,
 * column, bit), schema and table NULL when the name does not give them.
 */
void policy_mask_columns(const struct policy *p,
			 void (*col)(void *ctx, const char *schema, const char *table,
				     const char *column, uint32_t rule),
			 void *ctx);
/*
 * Each Redis key a masking rule lists: key(ctx, k, n, prefix, bit), the
 * first n bytes of k a whole key, or a prefix (`user:*`: "user:", 5) when
 * prefix is set (`*`: n is 0). key may be NULL. Returns the rules that
 * list keys. At most POLICY_MASK_KEYS_MAX keys in all.
 */
#define POLICY_MASK_KEYS_MAX 1024
uint32_t policy_mask_keys(const struct policy *p,
			  void (*key)(void *ctx, const char *k, size_t n, bool prefix,
				      uint32_t rule),
			  void *ctx);
/*
 * The catalog of c's target (README "Table-qualified columns"): its libpq
 * connection string (valid while p is), its name in *target and the
 * refresh period; NULL when the target has none.
 */
const char *policy_catalog(const struct policy *p, const struct policy_conn *c, const char **target,
			   unsigned *refresh_s);
/* How often a catalog is read again by default (a target's catalog.refresh). */
#define POLICY_CATALOG_REFRESH_S 60

/*
 * The kernel's uid filter: the rules without a uid selector (returned),
 * and uid(ctx, uid, bit) for each uid a rule's selector names.
 */
uint32_t policy_mask_uids(const struct policy *p,
			  void (*uid)(void *ctx, uint32_t uid, uint32_t rules), void *ctx);

/*
 * The server side's rules (returned): those the kernel settles alone at a
 * local server's egress, whose selectors are the target and db_user only
 * (the client's process and database are unknown there). *user_free gets
 * those without a db_user selector; user(ctx, name, bit) is called for
 * each db user the others name.
 */
uint32_t policy_mask_server(const struct policy *p,
			    void (*user)(void *ctx, const char *name, uint32_t rules), void *ctx,
			    uint32_t *user_free);

#endif /* DBW_POLICY_H */
