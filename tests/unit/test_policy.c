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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_evaluation),
		cmocka_unit_test(test_kernel_share),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_many_rules),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
