// SPDX-License-Identifier: GPL-2.0-only
/*
 * The daemon's side of the guardrails: load (and reload) the policy,
 * install its kernel share, give each connection its rules, and decide
 * every statement event: what the kernel did, checked against the exact
 * parse.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "capture.h"
#include "conn.h"
#include "event.h"
#include "guard.h"
#include "policy.h"
#include "stmt.h"

struct guard {
	struct capture *cap;
	struct emitter *em;
	char *path;
	struct policy *pol;
	uint64_t mismatches, unparsed_blocks;
};

/* Install p's kernel share. 0 or -errno. */
static int install(struct guard *g, const struct policy *p, const uint16_t *ports, int nports)
{
	static struct dbw_guard_rule rules[DBW_GUARD_RULES];
	static struct dbw_guard_text texts[DBW_GUARD_RULES];
	uint64_t port_rules[CAPTURE_MAX_PORTS] = {};
	struct capture_guard cg = { .rules = rules, .texts = texts, .port_rules = port_rules };

	cg.nrules = policy_kernel(p, rules, texts, &cg.unparsed_text, &cg.cfg);
	for (int i = 0; i < nports && i < CAPTURE_MAX_PORTS; i++)
		port_rules[i] = policy_port_rules(p, ports[i]);
	return capture_guard_load(g->cap, &cg);
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
	g->path = strdup(path);
	g->pol = policy_load(path, err, errlen);
	if (!g->pol || !g->path) {
		guard_free(g);
		return NULL;
	}
	e = install(g, g->pol, ports, nports);
	if (e) {
		snprintf(err, errlen, "cannot install the policy in the kernel: %s", strerror(-e));
		guard_free(g);
		return NULL;
	}
	return g;
}

void guard_free(struct guard *g)
{
	if (!g)
		return;
	policy_free(g->pol);
	free(g->path);
	free(g);
}

static void alert(struct guard *g, const char *kind, const char *detail)
{
	json_t *ev = event_new(g->em, "alert", 0);

	if (ev)
		json_object_set_new(ev, "alert",
				    json_pack("{s:s, s:s}", "kind", kind, "detail", detail));
	event_emit(g->em, ev);
}

int guard_reload(struct guard *g, const uint16_t *ports, int nports, struct conn_table *t)
{
	char err[4096], msg[4200];
	struct policy *p = policy_load(g->path, err, sizeof(err));
	int e;

	if (!p) {
		/* the policy in force stays in force */
		err[strcspn(err, "\0")] = 0;
		if (strlen(err) && err[strlen(err) - 1] == '\n')
			err[strlen(err) - 1] = 0;
		fprintf(stderr, "dbwarden: policy reload refused, the previous policy stays:\n%s\n",
			err);
		alert(g, "policy_rejected", err);
		return -1;
	}
	e = install(g, p, ports, nports);
	if (e) {
		snprintf(msg, sizeof(msg), "cannot install %s in the kernel: %s", g->path,
			 strerror(-e));
		alert(g, "policy_rejected", msg);
		policy_free(p);
		/* what is in the maps now is part new, part old: put the old one back */
		install(g, g->pol, ports, nports);
		return -1;
	}
	policy_free(g->pol);
	g->pol = p;
	conns_guard_refresh(t);
	snprintf(msg, sizeof(msg), "%s: %zu rules", g->path, policy_nrules(p));
	fprintf(stderr, "dbwarden: policy loaded: %s\n", msg);
	alert(g, "policy_loaded", msg);
	return 0;
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
	pc->database = ci->database;
	pc->db_user = ci->db_user;
}

/* conn_guard_ops.conn_changed: the connection's kernel rules, from all we know. */
static void on_conn_changed(void *ctx, const struct conn_info *ci)
{
	struct guard *g = ctx;
	struct policy_conn pc;

	conn_of(ci, &pc);
	capture_conn_rules(g->cap, ci->id, policy_conn_rules(g->pol, &pc));
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
	};
	struct policy_verdict v;
	enum dbw_action action = DBW_ACT_ALLOW;
	const char *rule = NULL;
	bool kernel_blocked = kv && kv->action >= DBW_ACT_APPROVAL;

	conn_of(ci, &pc);
	policy_eval(g->pol, &pc, &ps, &v);
	if (kernel_blocked) {
		int r = kv->rule == DBW_GUARD_NO_RULE ? -1 : policy_kernel_rule(g->pol, kv->rule);

		action = kv->action;
		rule = r >= 0 ? policy_rule_name(g->pol, r) : "defaults.unparsed";
		/* one statement of a blocked message may be innocent: the table
		 * checks that some statement of it confirms the block */
		out->confirms = v.action >= DBW_ACT_APPROVAL;
	} else if (v.action >= DBW_ACT_APPROVAL) {
		/* the kernel let through what the policy blocks: it reached the server */
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
	if (!out->alert_kind && policy_conn_rules(g->pol, &pc) &&
	    (!strcmp(a->verb, "DO") || !strcmp(a->verb, "EXECUTE") || !strcmp(a->verb, "CALL"))) {
		/* SQL built at run time on the server: neither side can read it */
		snprintf(out->alert, sizeof(out->alert), "%s runs SQL the guard cannot see",
			 a->verb);
		out->alert_kind = "dynamic_sql";
	}
	return json_pack("{s:s, s:o, s:n, s:s}", "action", policy_action_name(action), "rule",
			 rule ? json_string(rule) : json_null(), "approval_id", "enforced_by",
			 kernel_blocked ? "kernel" : "none");
}

void guard_ops(struct guard *g, struct conn_guard_ops *ops)
{
	ops->ctx = g;
	ops->conn_changed = on_conn_changed;
	ops->decide = on_decide;
}

void guard_stats(const struct guard *g, uint64_t *mismatches)
{
	*mismatches = g->mismatches;
}
