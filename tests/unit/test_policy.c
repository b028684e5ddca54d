// SPDX-License-Identifier: GPL-2.0-only
/*
 * The policy: byte-exact YAML fixtures, every error class with its
 * line:col, first-match evaluation, unless, selectors, defaults, and the
 * kernel's share.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "catalog.h"
#include "detect.h"
#include "policy.h"

static char path[64];

/* Write yaml to a temporary file and load it; err receives the errors. */
static struct policy *load(const char *yaml, char *err, size_t errlen)
{
	int fd;

	snprintf(path, sizeof(path), "/tmp/dbw-policy-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
	close(fd);
	struct policy *p = policy_load(path, err, errlen);
	unlink(path);
	return p;
}

static const char GOOD[] =
	"version: 1\n"
	"defaults: {action: allow, unparsed: block}\n"
	"on_mismatch: reset\n"
	"targets:\n"
	"  - {name: prod, protocol: postgres, address: 10.0.0.5:5432, labels: {env: prod}}\n"
	"  - {name: dev, address: 5433, labels: {env: dev}}\n"
	"rules:\n"
	"  - name: dba-anything\n"
	"    match: {actor: {user: [dba]}}\n"
	"    action: allow\n"
	"  - name: no-ddl-in-prod\n"
	"    match: {target: {env: prod}, verb: [DROP, TRUNCATE]}\n"
	"    unless: {actor: {uid: [0]}}\n"
	"    action: block\n"
	"    message: destructive DDL in prod\n"
	"  - name: wipe\n"
	"    match: {verb: [delete, UPDATE], without_where: true}\n"
	"    action: require_approval\n"
	"  - name: pii\n"
	"    match: {objects: [users], database: [shop]}\n"
	"    action: alert\n";

static struct policy_conn conn(const char *server, uint16_t port, uint32_t uid, const char *user)
{
	struct policy_conn c = { .uid = uid,
				 .user = user,
				 .comm = "psql",
				 .exe = "/usr/bin/psql",
				 .cgroup = "/user.slice",
				 .server = server,
				 .server_port = port,
				 .database = "shop",
				 .db_user = "app" };

	return c;
}

static struct policy_verdict eval(struct policy *p, const struct policy_conn *c, const char *verb,
				  const char *obj, bool ww, bool parsed)
{
	const char *objs[1] = { obj };
	struct policy_stmt s = { .verb = verb,
				 .objects = objs,
				 .nobjects = obj ? 1 : 0,
				 .without_where = ww,
				 .parsed = parsed };
	struct policy_verdict v;

	policy_eval(p, c, &s, &v);
	return v;
}

static void test_evaluation(void **state)
{
	char err[1024];
	struct policy *p = load(GOOD, err, sizeof(err));
	struct policy_conn prod = conn("10.0.0.5:5432", 5432, 1000, "app");
	struct policy_conn prod_root = conn("10.0.0.5:5432", 5432, 0, "root");
	struct policy_conn prod_dba = conn("10.0.0.5:5432", 5432, 1001, "dba");
	struct policy_conn dev = conn("127.0.0.1:5433", 5433, 1000, "app");
	struct policy_verdict v;

	assert_non_null(p);
	v = eval(p, &prod, "DROP", "t", false, true);
	assert_int_equal(v.action, DBW_ACT_BLOCK);
	assert_string_equal(v.name, "no-ddl-in-prod");
	assert_string_equal(v.message, "destructive DDL in prod");
	/* unless: root may */
	assert_int_equal(eval(p, &prod_root, "DROP", "t", false, true).action, DBW_ACT_ALLOW);
	/* first match: the dba rule comes first */
	v = eval(p, &prod_dba, "DROP", "t", false, true);
	assert_int_equal(v.action, DBW_ACT_ALLOW);
	assert_string_equal(v.name, "dba-anything");
	/* target labels: dev is not prod */
	assert_int_equal(eval(p, &dev, "DROP", "t", false, true).action, DBW_ACT_ALLOW);
	/* verbs are case-insensitive; without_where must hold */
	assert_int_equal(eval(p, &dev, "DELETE", "t", true, true).action, DBW_ACT_APPROVAL);
	assert_int_equal(eval(p, &dev, "DELETE", "t", false, true).action, DBW_ACT_ALLOW);
	/* objects: "users" names public.users too; database must match */
	v = eval(p, &dev, "SELECT", "public.users", false, true);
	assert_int_equal(v.action, DBW_ACT_ALERT);
	assert_string_equal(v.name, "pii");
	dev.database = "other";
	assert_int_equal(eval(p, &dev, "SELECT", "public.users", false, true).action,
			 DBW_ACT_ALLOW);
	/* unreadable statement on a connection with blocking rules: defaults.unparsed */
	v = eval(p, &prod, "UNKNOWN", NULL, false, false);
	assert_int_equal(v.action, DBW_ACT_BLOCK);
	assert_true(v.unparsed);
	assert_null(v.name);
	assert_true(policy_on_mismatch_reset(p));
	policy_free(p);
}

static void test_kernel_share(void **state)
{
	char err[1024];
	struct policy *p = load(GOOD, err, sizeof(err));
	struct policy_conn prod = conn("10.0.0.5:5432", 5432, 1000, "app");
	struct policy_conn prod_root = conn("10.0.0.5:5432", 5432, 0, "root");
	struct policy_conn dev = conn("127.0.0.1:5433", 5433, 1000, "app");
	static struct dbw_guard_rule rules[DBW_GUARD_RULES];
	static struct dbw_guard_text texts[DBW_GUARD_RULES];
	struct dbw_guard_text unparsed;
	struct dbw_guard_cfg cfg;
	unsigned n;

	assert_non_null(p);
	n = policy_kernel(p, rules, texts, &unparsed, &cfg);
	assert_int_equal(n, 4);
	assert_true(cfg.enabled);
	assert_true(cfg.unparsed_block);
	assert_int_equal(rules[1].verbs, (1u << DBW_VERB_DROP) | (1u << DBW_VERB_TRUNCATE));
	assert_int_equal(rules[1].action, DBW_ACT_BLOCK);
	assert_int_equal(rules[2].without_where, 1);
	/* "users" and "public.users", as the kernel hashes them */
	assert_int_equal(rules[3].nobjects, 2);
	assert_true(rules[3].objects[0] == dbw_name_hash("users", 5));
	assert_true(rules[3].objects[1] == dbw_name_hash("public.users", 12));
	/* the replacement: a fixed-size statement the server raises 42501 from */
	assert_int_equal(texts[1].text[DBW_GUARD_TEXT - 1], 0);
	assert_int_equal(strlen((char *)texts[1].text), DBW_GUARD_TEXT - 1);
	assert_non_null(
		strstr((char *)texts[1].text,
		       "'blocked by dbwarden rule no-ddl-in-prod: destructive DDL in prod'"));
	assert_non_null(strstr((char *)texts[1].text, "ERRCODE = '42501'"));
	/* per connection: the selectors, settled once (rule 0 is for user dba only) */
	assert_int_equal(policy_conn_rules(p, &prod), 0xe);
	assert_int_equal(policy_conn_rules(p, &prod_root), 0xc); /* unless uid 0 */
	assert_int_equal(policy_conn_rules(p, &dev), 0xc); /* not prod */
	/* before that, the port's: prod's rules may apply on 5432, not on 5433 */
	assert_true(policy_port_rules(p, 5432) & (1u << 1));
	assert_false(policy_port_rules(p, 5433) & (1u << 1));
	assert_int_equal(policy_kernel_rule(p, 1), 1);
	assert_int_equal(policy_kernel_rule(p, 9), -1);
	policy_free(p);
}

static const char PROTOS[] =
	"version: 1\n"
	"targets:\n"
	"  - {name: cache, protocol: redis, address: 10.0.0.9:6379, labels: {env: prod}}\n"
	"  - {name: shop, protocol: mariadb, address: 10.0.0.8:3306}\n"
	"rules:\n"
	"  - name: no-flush\n"
	"    match: {target: {env: prod}, verb: [FLUSHALL, \"config set\"]}\n"
	"    action: block\n"
	"    message: \"it's \\\\ gone\"\n"
	"  - name: no-set-anywhere\n"
	"    match: {verb: [SET, DROP]}\n"
	"    action: block\n"
	"  - name: keys-star\n"
	"    match: {verb: [KEYS], objects: [\"*\"]}\n"
	"    action: require_approval\n";

/* Redis commands and SQL verbs in one policy; protocol targets; texts per protocol. */
static void test_protocols(void **state)
{
	char err[1024];
	struct policy *p = load(PROTOS, err, sizeof(err));
	struct policy_conn cache = conn("10.0.0.9:6379", 6379, 1000, "app");
	struct policy_conn shop = conn("10.0.0.8:3306", 3306, 1000, "app");
	static struct dbw_guard_rule rules[DBW_GUARD_RULES];
	static struct dbw_guard_text texts[DBW_GUARD_RULES];
	struct dbw_guard_text unparsed;
	struct dbw_guard_cfg cfg;
	const char *star[] = { "*" };
	struct policy_stmt st = { .verb = "FLUSHALL",
				  .verbs = 1u << DBW_RVERB_FLUSHALL,
				  .parsed = true,
				  .space = DBW_SPACE_REDIS };
	struct policy_verdict v;
	const char *t;

	if (!p)
		fail_msg("%s", err);
	cache.proto = DBW_PROTO_REDIS;
	shop.proto = DBW_PROTO_MYSQL;
	policy_eval(p, &cache, &st, &v);
	assert_int_equal(v.action, DBW_ACT_BLOCK);
	assert_string_equal(v.name, "no-flush");
	/* the same command elsewhere: not the target */
	policy_eval(p, &shop, &st, &v);
	assert_int_equal(v.action, DBW_ACT_ALLOW);
	/* a target of another protocol does not match a connection of this one */
	cache.proto = DBW_PROTO_MYSQL;
	policy_eval(p, &cache, &st, &v);
	assert_int_equal(v.action, DBW_ACT_ALLOW);
	cache.proto = DBW_PROTO_REDIS;
	/* CONFIG SET by its own name */
	st.verb = "CONFIG SET";
	st.verbs = 1u << DBW_RVERB_CONFIG | 1u << DBW_RVERB_CONFIG_SET;
	policy_eval(p, &cache, &st, &v);
	assert_int_equal(v.action, DBW_ACT_BLOCK);
	st.verb = "CONFIG GET";
	st.verbs = 1u << DBW_RVERB_CONFIG;
	policy_eval(p, &cache, &st, &v);
	assert_int_equal(v.action, DBW_ACT_ALLOW);
	/* SET is a Redis command and a SQL verb: both */
	st.verb = "SET";
	st.verbs = 1u << DBW_RVERB_SET;
	policy_eval(p, &cache, &st, &v);
	assert_string_equal(v.name, "no-set-anywhere");
	/* DROP is SQL only: a Redis command named so is another thing */
	st.verb = "DROP";
	st.verbs = 1u;
	policy_eval(p, &cache, &st, &v);
	assert_int_equal(v.action, DBW_ACT_ALLOW);
	st.space = DBW_SPACE_SQL;
	st.verbs = 1u << DBW_VERB_DROP;
	policy_eval(p, &shop, &st, &v);
	assert_string_equal(v.name, "no-set-anywhere");
	/* KEYS *, not KEYS user:* */
	st.space = DBW_SPACE_REDIS;
	st.verb = "KEYS";
	st.verbs = 1u << DBW_RVERB_KEYS;
	st.objects = star;
	st.nobjects = 1;
	policy_eval(p, &cache, &st, &v);
	assert_int_equal(v.action, DBW_ACT_APPROVAL);
	star[0] = "user:*";
	policy_eval(p, &cache, &st, &v);
	assert_int_equal(v.action, DBW_ACT_ALLOW);

	/* the kernel: one rule per verb space */
	assert_int_equal(policy_kernel(p, rules, texts, &unparsed, &cfg), 4);
	assert_int_equal(rules[0].space, DBW_SPACE_REDIS);
	assert_int_equal(rules[0].verbs, 1u << DBW_RVERB_FLUSHALL | 1u << DBW_RVERB_CONFIG_SET);
	assert_int_equal(rules[1].space, DBW_SPACE_SQL);
	assert_int_equal(rules[1].verbs, 1u << DBW_VERB_SET | 1u << DBW_VERB_DROP);
	assert_int_equal(rules[2].space, DBW_SPACE_REDIS);
	assert_int_equal(rules[2].verbs, 1u << DBW_RVERB_SET);
	assert_int_equal(policy_kernel_rule(p, 1), 1);
	assert_int_equal(policy_kernel_rule(p, 2), 1);
	assert_int_equal(policy_kernel_rule(p, 3), 2);

	/* MySQL: a SIGNAL the server raises 1142 from, space padded, no quote or backslash
	 * of the message left to end the string early */
	policy_kernel_texts(p, DBW_PROTO_MYSQL, texts, &unparsed);
	t = (const char *)texts[0].text;
	assert_memory_equal(t, "SIGNAL   SQLSTATE '42000' SET MYSQL_ERRNO = 1142, MESSAGE_TEXT = '",
			    66);
	assert_memory_equal(t + 66, "blocked by dbwarden rule no-flush: it\"s / gone' ", 48);
	assert_int_equal(memchr(t, 0, DBW_GUARD_TEXT), NULL);
	assert_int_equal(t[DBW_GUARD_TEXT - 1], ' ');
	/* require_approval: room for the id where the kernel writes it */
	assert_memory_equal(texts[3].text + DBW_APPROVAL_ID_OFF - 12, "approval id ", 12);
	assert_int_equal(texts[3].id_off, 1);
	/* Redis: one whole EVAL command, exactly DBW_GUARD_TEXT bytes of RESP */
	policy_kernel_texts(p, DBW_PROTO_REDIS, texts, &unparsed);
	t = (const char *)texts[0].text;
	assert_memory_equal(t, "*3\r\n$4\r\nEVAL\r\n$355\r\n", 20);
	assert_memory_equal(t + 20 + 355, "\r\n$1\r\n0\r\n", 9);
	assert_non_null(memmem(t, DBW_GUARD_TEXT,
			       "return redis.error_reply('ERR blocked by dbwarden "
			       "rule no-flush: it\"s / gone')",
			       76));
	assert_memory_equal(texts[3].text + DBW_APPROVAL_ID_OFF - 12, "approval id ", 12);
	policy_free(p);
}

/* Every error is reported, each with its line and column. */
static void test_errors(void **state)
{
	static const struct {
		const char *yaml, *want;
	} cases[] = {
		{ "rules: []\n", ":1:1: version is missing" },
		{ "version: 2\n", ":1:10: unsupported version '2'" },
		{ "version: 1\nrules:\n  - name: x\n    action: explode\n",
		  ":4:13: unknown action 'explode'" },
		{ "version: 1\nrules:\n  - name: x\n    match: {verb: [DROPP]}\n    action: block\n",
		  ":4:19: unknown verb 'DROPP'" },
		{ "version: 1\nrules:\n  - name: x\n    match: {colour: red}\n    action: allow\n",
		  ":4:13: unknown key 'colour' in match" },
		{ "version: 1\nrules:\n  - name: x\n    action: allow\n  - name: x\n    action: allow\n",
		  ":5:11: duplicate rule name 'x' (first at line 3)" },
		{ "version: 1\nrules:\n  - action: allow\n", ":3:5: a rule needs a name" },
		{ "version: 1\nrules:\n  - name: x\n", ":3:5: rule 'x' needs an action" },
		{ "version: 1\ntargets:\n  - {name: a, address: 'nohost:99999'}\n",
		  ":3:24: bad address 'nohost:99999'" },
		{ "version: 1\nrules:\n  - name: x\n    match: {target: nope}\n    action: block\n",
		  ":4:21: unknown target 'nope'" },
		{ "version: 1\nrules:\n  - name: x\n    match: {actor: {uid: [abc]}}\n    action: block\n",
		  "actor.uid: 'abc' is not a number" },
		{ "version: 1\nrules: [\n", ": YAML:" },
		{ "version: 1\ndefaults: {unparsed: maybe}\n", ":2:22: defaults.unparsed must be" },
		/* workload selectors: Kubernetes names, pointed at where they are written */
		{ "version: 1\nrules:\n  - name: x\n    match: {actor: {pod_namespace: [ai, Bad_NS]}}\n"
		  "    action: block\n",
		  ":4:41: actor.pod_namespace: 'Bad_NS' is not a Kubernetes name" },
		{ "version: 1\nrules:\n  - name: x\n    match:\n      actor:\n"
		  "        service_account: -dba\n    action: block\n",
		  ":6:26: actor.service_account: '-dba' is not a Kubernetes name" },
		{ "version: 1\nrules:\n  - name: x\n    match: {actor: {container_id: [abc]}}\n"
		  "    action: block\n",
		  ":4:36: actor.container_id: 'abc' is not a container id" },
		{ "version: 1\nrules:\n  - name: x\n    match: {actor: {labels: {app: 'a b'}}}\n"
		  "    action: block\n",
		  ":4:35: actor.labels: 'a b' is not a label value" },
		{ "version: 1\nrules:\n  - name: x\n    match: {actor: {labels: {-app: a}}}\n"
		  "    action: block\n",
		  ":4:30: actor.labels: '-app' is not a label key" },
		{ "version: 1\nrules:\n  - name: x\n    match: {actor: {labels: [app]}}\n"
		  "    action: block\n",
		  ":4:29: actor.labels must be a mapping" },
		{ "version: 1\nrules:\n  - name: x\n    match: {actor: {namespace: ai}}\n"
		  "    action: block\n",
		  ":4:21: unknown key 'namespace' in actor (expected: uid, user, comm, exe, cgroup, "
		  "container_id, container, pod_namespace, pod_name, service_account, labels)" },
	};
	char err[2048];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy *p = load(cases[i].yaml, err, sizeof(err));

		if (p || !strstr(err, cases[i].want))
			fail_msg("case %zu: want '%s', got '%s'", i, cases[i].want, err);
		/* every line names the file */
		assert_true(!strncmp(err, "/tmp/dbw-policy-", 16));
	}
	/* several errors at once */
	assert_null(load("version: 1\nrules:\n  - name: x\n    action: nope\n  - name: y\n"
			 "    action: worse\n",
			 err, sizeof(err)));
	assert_non_null(strstr(err, ":4:13: unknown action 'nope'"));
	assert_non_null(strstr(err, ":6:13: unknown action 'worse'"));
}

/* More than the kernel's 64 rules: the rest are checked in userspace only. */
static void test_many_rules(void **state)
{
	char *yaml = malloc(64 * 1024), err[256];
	size_t o = sprintf(yaml, "version: 1\nrules:\n");
	static struct dbw_guard_rule rules[DBW_GUARD_RULES];
	static struct dbw_guard_text texts[DBW_GUARD_RULES];
	struct dbw_guard_text unparsed;
	struct dbw_guard_cfg cfg;
	struct policy *p;

	for (int i = 0; i < 70; i++)
		o += sprintf(yaml + o,
			     "  - name: r%d\n    match: {verb: DROP, objects: [t%d]}\n"
			     "    action: block\n",
			     i, i);
	p = load(yaml, err, sizeof(err));
	assert_non_null(p);
	assert_int_equal(policy_nrules(p), 70);
	assert_int_equal(policy_kernel(p, rules, texts, &unparsed, &cfg), DBW_GUARD_RULES);
	assert_string_equal(policy_rule_name(p, 69), "r69");
	policy_free(p);
	free(yaml);
}

static const char PODS[] =
	"version: 1\n"
	"rules:\n"
	"  - name: dba-anything\n"
	"    match: {actor: {service_account: [dba]}}\n"
	"    action: allow\n"
	"  - name: agents-no-ddl\n"
	"    match: {verb: [DROP], actor: {pod_namespace: ai, labels: {app: agent}}}\n"
	"    unless: {actor: {container: [migrate]}}\n"
	"    action: block\n"
	"  - name: one-container\n"
	"    match: {verb: [TRUNCATE], actor: {container_id: [3b7f0d9a2c4e], pod_name: 'shop-*'}}\n"
	"    action: block\n"
	"  - name: host-services\n"
	"    match: {verb: [VACUUM], actor: {cgroup: [/system.slice]}}\n"
	"    action: block\n";

#define CID "3b7f0d9a2c4e6f8a1b3d5e7f9a0c2e4f6a8b0d2f4a6c8e0a2b4d6f8a0c2e4f6a"

static const char *const agent_labels[] = { "app", "agent", "team", "data" };

/* A pod's connection as the daemon sees it. */
static struct policy_conn pod(const char *ns, const char *name, const char *sa,
			      const char *container, bool known)
{
	struct policy_conn c = conn("127.0.0.1:5432", 5432, 1000, "app");

	c.cgroup = "/kubepods.slice/kubepods-pod0.slice/cri-containerd-" CID ".scope";
	c.container_id = CID;
	c.in_pod = true;
	c.pod_known = known;
	if (known) {
		c.pod_namespace = ns;
		c.pod_name = name;
		c.service_account = sa;
		c.container = container;
		c.labels = agent_labels;
		c.nlabels = 2;
	}
	return c;
}

static void test_workload_selectors(void **state)
{
	char err[1024];
	struct policy *p = load(PODS, err, sizeof(err));
	struct policy_conn agent = pod("ai", "agent-7f9c", "sql-agent", "agent", true);
	struct policy_conn migrate = pod("ai", "agent-7f9c", "sql-agent", "migrate", true);
	struct policy_conn shop = pod("shop", "shop-0", "web", "web", true);
	struct policy_conn dba = pod("ops", "dba-1", "dba", "psql", true);
	struct policy_conn unknown = pod(NULL, NULL, NULL, NULL, false);
	struct policy_conn host = conn("127.0.0.1:5432", 5432, 0, "root");
	struct policy_verdict v;

	assert_non_null(p);
	assert_true(policy_has_workload_selectors(p));
	v = eval(p, &agent, "DROP", "t", false, true);
	assert_int_equal(v.action, DBW_ACT_BLOCK);
	assert_string_equal(v.name, "agents-no-ddl");
	/* unless: the migrate container may */
	assert_int_equal(eval(p, &migrate, "DROP", "t", false, true).action, DBW_ACT_ALLOW);
	/* labels must all hold: a pod of ai without app=agent may */
	agent.nlabels = 1;
	agent.labels = agent_labels + 2;
	assert_int_equal(eval(p, &agent, "DROP", "t", false, true).action, DBW_ACT_ALLOW);
	agent.labels = agent_labels;
	agent.nlabels = 2;
	assert_int_equal(eval(p, &shop, "DROP", "t", false, true).action, DBW_ACT_ALLOW);
	v = eval(p, &dba, "DROP", "t", false, true);
	assert_int_equal(v.action, DBW_ACT_ALLOW);
	assert_string_equal(v.name, "dba-anything");
	/* a container by a prefix of its id, with a pod name glob */
	assert_int_equal(eval(p, &shop, "TRUNCATE", "t", false, true).action, DBW_ACT_BLOCK);
	assert_int_equal(eval(p, &agent, "TRUNCATE", "t", false, true).action, DBW_ACT_ALLOW);
	/* a host process is no pod: pod selectors never hold, cgroup ones do */
	assert_int_equal(eval(p, &host, "DROP", "t", false, true).action, DBW_ACT_ALLOW);
	host.cgroup = "/system.slice/backup.service";
	assert_int_equal(eval(p, &host, "VACUUM", NULL, false, true).action, DBW_ACT_BLOCK);
	/*
	 * A pod whose metadata is unknown (the API away): the blocking rule may
	 * hold, so it does; the allow rule may too, so it does not; the unless
	 * may, so it exempts nothing. Stricter, never looser.
	 */
	v = eval(p, &unknown, "DROP", "t", false, true);
	assert_int_equal(v.action, DBW_ACT_BLOCK);
	assert_string_equal(v.name, "agents-no-ddl");
	assert_int_equal(eval(p, &unknown, "SELECT", "t", false, true).action, DBW_ACT_ALLOW);
	policy_free(p);
}

static void test_workload_classes(void **state)
{
	char err[1024];
	struct policy *p = load(PODS, err, sizeof(err)), *good;
	struct policy_conn agent = pod("ai", "agent-7f9c", "sql-agent", "agent", true);
	struct policy_conn dba = pod("ops", "dba-1", "dba", "psql", true);
	struct policy_conn shop = pod("shop", "shop-0", "web", "web", true);
	struct policy_conn unknown = pod(NULL, NULL, NULL, NULL, false);
	struct policy_conn host = conn("127.0.0.1:5432", 5432, 0, "root");

	assert_non_null(p);
	/* per connection, everything known */
	assert_int_equal(policy_conn_rules(p, &agent), 1u << 1);
	assert_int_equal(policy_conn_rules(p, &dba), 1u << 0);
	assert_int_equal(policy_conn_rules(p, &shop), 1u << 2);
	assert_int_equal(policy_conn_rules(p, &unknown), (1u << 1) | (1u << 2));
	/* per cgroup: the same, from the workload alone */
	assert_int_equal(policy_workload_rules(p, &agent), 1u << 1);
	assert_int_equal(policy_workload_rules(p, &dba), 1u << 0);
	assert_int_equal(policy_workload_rules(p, &unknown), (1u << 1) | (1u << 2));
	assert_int_equal(policy_workload_rules(p, &host), 0);
	host.cgroup = "/system.slice/backup.service";
	assert_int_equal(policy_workload_rules(p, &host), 1u << 3);
	/* a cgroup not classified yet: every blocking rule, no allowing one */
	assert_int_equal(policy_workload_rules(p, NULL), (1u << 1) | (1u << 2) | (1u << 3));
	policy_free(p);
	/*
	 * Without workload selectors every cgroup has the same class. Rules on
	 * the process (user dba) or the session (database shop) may hold for any
	 * cgroup: the allow and alert ones drop out, the blocking ones stay.
	 */
	good = load(GOOD, err, sizeof(err));
	assert_false(policy_has_workload_selectors(good));
	assert_int_equal(policy_workload_rules(good, NULL), 0x6);
	assert_int_equal(policy_workload_rules(good, &agent), 0x6);
	policy_free(good);
}

static const char MASKING[] = "version: 1\n"
			      "targets:\n"
			      "  - {name: prod, address: 10.0.0.5:5432, labels: {env: prod}}\n"
			      "masking:\n"
			      "  statement_text: masked\n"
			      "  detectors: [email, credit_card, employee_id]\n"
			      "  custom:\n"
			      "    - {name: employee_id, regex: 'EMP-[0-9]{6}'}\n"
			      "  results:\n"
			      "    - name: agents\n"
			      "      match: {target: {env: prod}, actor: {cgroup: /ai}}\n"
			      "      columns: [email, users.ssn]\n"
			      "      detectors: [email, credit_card]\n"
			      "      style: keep_last4\n"
			      "      on_unmaskable: allow\n"
			      "    - name: uid-1000\n"
			      "      match: {actor: {uid: 1000}}\n"
			      "      columns: phone\n";

struct cols {
	char names[8][64];
	uint32_t rules[8];
	int n;
};

static void on_column(void *ctx, const char *name, uint32_t rules)
{
	struct cols *c = ctx;

	snprintf(c->names[c->n], 64, "%s", name);
	c->rules[c->n++] = rules;
}

static void on_uid(void *ctx, uint32_t uid, uint32_t rules)
{
	char name[16];

	snprintf(name, sizeof(name), "%u", uid);
	on_column(ctx, name, rules);
}

static void test_masking(void **state)
{
	char err[4096];
	struct policy *p = load(MASKING, err, sizeof(err));
	const struct det_custom *custom;
	struct dbw_mask_rule rules[DBW_MASK_RULES];
	struct cols cols = {};
	size_t n;

	if (!p)
		fprintf(stderr, "%s", err);
	assert_non_null(p);
	assert_int_equal(policy_text_mode(p), POLICY_TEXT_MASKED);
	assert_int_equal(policy_detectors(p, &custom, &n), (1u << 0) | (1u << 1));
	assert_int_equal(n, 1);
	assert_int_equal(policy_nmask_rules(p), 2);
	assert_string_equal(policy_mask_rule_name(p, 1), "uid-1000");
	assert_int_equal(policy_mask_kernel(p, rules, on_column, &cols), 2);
	assert_int_equal(rules[0].style, DBW_MASK_KEEP_LAST4);
	assert_int_equal(rules[0].detectors, DBW_MDET_EMAIL | DBW_MDET_CARD);
	assert_int_equal(rules[0].allow_unmaskable, 1);
	assert_int_equal(rules[1].style, DBW_MASK_STARS);
	assert_int_equal(rules[1].allow_unmaskable, 0);
	assert_int_equal(cols.n, 3);
	assert_string_equal(cols.names[1], "ssn"); /* the table is not in RowDescription */
	assert_int_equal(cols.rules[2], 2);
	/* ports: the prod rule on 5432 only; the uid rule anywhere */
	assert_int_equal(policy_mask_port_rules(p, 5432), 3);
	assert_int_equal(policy_mask_port_rules(p, 5433), 2);
	{
		struct policy_conn c = conn("10.0.0.5:5432", 5432, 1000, "app");
		struct policy_conn ai = { .cgroup = "/ai/agent-1" };

		assert_int_equal(policy_mask_conn_rules(p, &c), 2); /* not under /ai */
		c.cgroup = "/ai/agent-1";
		c.uid = 0;
		assert_int_equal(policy_mask_conn_rules(p, &c), 1);
		/* a cgroup's class: the process is not known, the uid rule may apply */
		assert_int_equal(policy_mask_workload_rules(p, &ai), 3);
		ai.cgroup = "/user.slice";
		assert_int_equal(policy_mask_workload_rules(p, &ai), 2);
		assert_int_equal(policy_mask_workload_rules(p, NULL), 3);
	}
	{
		struct cols uids = {};

		/* the uid rule is the only one with a uid selector */
		assert_int_equal(policy_mask_uids(p, on_uid, &uids), 1);
		assert_int_equal(uids.n, 1);
		assert_string_equal(uids.names[0], "1000");
		assert_int_equal(uids.rules[0], 2);
	}
	assert_true(policy_has_workload_selectors(p));
	assert_true(policy_mask_allows_unmaskable(p, 1));
	assert_false(policy_mask_allows_unmaskable(p, 3));
	policy_free(p);
}

static void test_masking_errors(void **state)
{
	static const struct {
		const char *yaml, *want;
	} bad[] = {
		{ "version: 1\nmasking: {statement_text: plain}\n",
		  ":2:27: statement_text must be normalized, masked or raw" },
		{ "version: 1\nmasking: {detectors: [email, dna]}\n",
		  ":2:22: masking.detectors: unknown detector 'dna'" },
		{ "version: 1\nmasking:\n  custom:\n    - {name: x, regex: 'a(b'}\n",
		  ":4:24: regex does not compile" },
		{ "version: 1\nmasking:\n  custom:\n    - {name: email, regex: 'a'}\n",
		  ":4:7: custom detector 'email' has a built-in detector's name" },
		{ "version: 1\nmasking:\n  results:\n    - {name: r, columns: [x], style: "
		  "blur}\n",
		  ":4:38: style must be stars, keep_last4 or token" },
		{ "version: 1\nmasking:\n  results:\n    - {name: r, detectors: [ssn]}\n",
		  ":4:28: detectors: 'ssn' is not a kernel value detector" },
		{ "version: 1\nmasking:\n  results:\n    - {name: r}\n",
		  ":4:7: masking rule 'r' names no columns, no detectors and no keys" },
		{ "version: 1\nmasking:\n  results:\n    - {name: r, columns: [x], match: {verb: "
		  "SELECT}}\n",
		  "masking rule 'r': match selects connections" },
		{ "version: 1\nmasking:\n  results:\n    - {name: r, columns: [x], on_unmaskable: "
		  "maybe}\n",
		  ":4:46: on_unmaskable must be block or allow" },
		{ "version: 1\nmasking:\n  results:\n    - {name: r, keys: ['a*b']}\n",
		  ":4:23: masking rule 'r': keys: 'a*b' is not an exact key or a prefix ending in *" },
		{ "version: 1\nmasking:\n  results:\n    - {name: r, keys: ['user:?']}\n",
		  "keys: 'user:?' is not an exact key or a prefix ending in *" },
		{ "version: 1\nmasking:\n  results:\n    - {name: r, keys: ['[ab]*']}\n",
		  "keys: '[ab]*' is not an exact key" },
		{ "version: 1\nmasking:\n  results:\n    - {name: r, keys: ['']}\n",
		  "masking rule 'r': keys: an empty key" },
		{ "version: 1\nmasking:\n  results:\n    - {name: r, keys: []}\n",
		  "masking rule 'r': keys names no key" },
		{ "version: 1\nmasking:\n  results:\n    - {name: r, keys: "
		  "['0123456789012345678901234567890123456789012345678901234567890123*']}\n",
		  "the prefix of '0123456789012345678901234567890123456789012345678901234567890123*' "
		  "is longer than 63 bytes" },
		{ "version: 1\nmasking:\n  results:\n    - {name: r, keys: ['user:*'], placement: "
		  "server}\n",
		  "masking rule 'r': keys need the client side (placement: client)" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[4096];
		struct policy *p = load(bad[i].yaml, err, sizeof(err));

		if (p || !strstr(err, bad[i].want))
			fprintf(stderr, "case %zu: want '%s', got '%s'\n", i, bad[i].want, err);
		assert_null(p);
		assert_non_null(strstr(err, bad[i].want));
	}
}

struct rkeys {
	char keys[8][80];
	bool prefix[8];
	uint32_t rules[8];
	int n;
};

static void on_rkey(void *ctx, const char *k, size_t n, bool prefix, uint32_t rule)
{
	struct rkeys *r = ctx;

	snprintf(r->keys[r->n], sizeof(r->keys[0]), "%.*s", (int)n, k);
	r->prefix[r->n] = prefix;
	r->rules[r->n++] = rule;
}

/* Redis keys: exact keys, prefixes and `*`, with their rules; keys alone turn the walk on. */
static void test_masking_keys(void **state)
{
	static const char yaml[] =
		"version: 1\n"
		"masking:\n"
		"  results:\n"
		"    - {name: pii, detectors: [email]}\n"
		"    - {name: users, keys: ['user:*', 'session:abc'], style: token}\n"
		"    - {name: all, keys: ['*'], match: {actor: {uid: [7]}}}\n";
	struct dbw_guard_rule grules[DBW_GUARD_RULES];
	struct dbw_guard_text texts[DBW_GUARD_RULES], unparsed;
	struct dbw_guard_cfg cfg;
	struct rkeys r = {};
	char err[4096];
	struct policy *p = load(yaml, err, sizeof(err));

	assert_non_null(p);
	assert_int_equal(policy_mask_keys(p, on_rkey, &r), 6);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.keys[0], "user:");
	assert_true(r.prefix[0]);
	assert_int_equal(r.rules[0], 2);
	assert_string_equal(r.keys[1], "session:abc");
	assert_false(r.prefix[1]);
	assert_string_equal(r.keys[2], "");
	assert_true(r.prefix[2]);
	assert_int_equal(r.rules[2], 4);
	/* no guard rule, but Redis commands must be walked for the keys (only they) */
	assert_int_equal(policy_kernel(p, grules, texts, &unparsed, &cfg), 0);
	assert_true(cfg.enabled);
	assert_true(cfg.redis_only);
	policy_free(p);
	p = load("version: 1\nrules:\n  - {name: r, match: {verb: [DROP]}, action: block}\n"
		 "masking:\n  results:\n    - {name: k, keys: ['user:*']}\n",
		 err, sizeof(err));
	assert_non_null(p);
	assert_int_equal(policy_kernel(p, grules, texts, &unparsed, &cfg), 1);
	assert_true(cfg.enabled);
	assert_false(cfg.redis_only);
	policy_free(p);
	p = load("version: 1\nmasking:\n  results:\n    - {name: pii, detectors: [email]}\n", err,
		 sizeof(err));
	assert_non_null(p);
	assert_int_equal(policy_mask_keys(p, NULL, NULL), 0);
	assert_int_equal(policy_kernel(p, grules, texts, &unparsed, &cfg), 0);
	assert_false(cfg.enabled);
	policy_free(p);
}

static const char CATALOG[] = "version: 1\n"
			      "targets:\n"
			      "  - name: prod\n"
			      "    protocol: postgres\n"
			      "    address: 10.0.0.5:5432\n"
			      "    catalog: {dsn: 'host=10.0.0.5 user=reader', refresh: 5m}\n"
			      "  - {name: plain, protocol: postgres, address: 10.0.0.6:5432}\n"
			      "masking:\n"
			      "  results:\n"
			      "    - name: agents\n"
			      "      match: {}\n"
			      "      columns: [email, users.ssn, hr.users.ssn]\n";

struct qcols {
	char names[8][200];
	uint32_t rules[8];
	int n;
};

static void on_qcol(void *ctx, const char *schema, const char *table, const char *column,
		    uint32_t rule)
{
	struct qcols *c = ctx;

	snprintf(c->names[c->n], sizeof(c->names[0]), "%s|%s|%s", schema ? schema : "-",
		 table ? table : "-", column);
	c->rules[c->n++] = rule;
}

/* Table-qualified columns: split for the catalog reader; the catalog of a connection's target. */
static void test_masking_catalog(void **state)
{
	char err[4096];
	struct policy *p = load(CATALOG, err, sizeof(err));
	struct dbw_mask_rule rules[DBW_MASK_RULES];
	struct cols cols = {};
	struct qcols q = {};
	const char *target = NULL;
	unsigned refresh = 0;

	if (!p)
		fprintf(stderr, "%s", err);
	assert_non_null(p);
	policy_mask_columns(p, on_qcol, &q);
	assert_int_equal(q.n, 3);
	assert_string_equal(q.names[0], "-|-|email");
	assert_string_equal(q.names[1], "-|users|ssn");
	assert_string_equal(q.names[2], "hr|users|ssn");
	assert_int_equal(q.rules[2], 1);
	/* the kernel's names: a qualified one bare (the catalog narrows it) */
	policy_mask_kernel(p, rules, on_column, &cols);
	assert_int_equal(cols.n, 3);
	assert_string_equal(cols.names[2], "ssn");
	{
		struct policy_conn c = conn("10.0.0.5:5432", 5432, 1000, "app");

		c.proto = DBW_PROTO_POSTGRES;
		assert_string_equal(policy_catalog(p, &c, &target, &refresh),
				    "host=10.0.0.5 user=reader");
		assert_string_equal(target, "prod");
		assert_int_equal(refresh, 300);
		c.server = "10.0.0.6:5432";
		assert_null(policy_catalog(p, &c, &target, &refresh));
	}
	policy_free(p);
	/* the database key: never 0, and the separator counts */
	assert_int_not_equal(catalog_dbk("prod", "shop"), 0);
	assert_int_equal(catalog_dbk("prod", "shop"), catalog_dbk("prod", "shop"));
	assert_int_not_equal(catalog_dbk("ab", "c"), catalog_dbk("a", "bc"));
	assert_int_not_equal(catalog_dbk("prod", "shop"), catalog_dbk("prod", "shop2"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_evaluation),	 cmocka_unit_test(test_kernel_share),
		cmocka_unit_test(test_protocols),	 cmocka_unit_test(test_errors),
		cmocka_unit_test(test_many_rules),	 cmocka_unit_test(test_workload_selectors),
		cmocka_unit_test(test_workload_classes), cmocka_unit_test(test_masking),
		cmocka_unit_test(test_masking_errors),	 cmocka_unit_test(test_masking_catalog),
		cmocka_unit_test(test_masking_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
