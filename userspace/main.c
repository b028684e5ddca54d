// SPDX-License-Identifier: GPL-2.0-only
/*
 * dbwarden command line. `dbwarden run` is the daemon; the other commands
 * arrive with their features.
 */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "agent.h"
#include "conn.h"
#include "mysql_sql.h"
#include "redis_proto.h"
#include "analyze.h"
#include "metrics.h"
#include "policy.h"
#include "status.h"
#include "sys.h"
#include "verify.h"
#include "log.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dbwarden <command> [options]\n"
		"\n"
		"commands:\n"
		"  run        start the agent: capture database statements, write audit events\n"
		"  policy     check a policy file, or test a statement against it\n"
		"  approve    let a statement held by a require_approval rule through\n"
		"  approvals  list the statements held for approval\n"
		"  status     what a running agent watches, its policy, connections, counters\n"
		"  stop       stop the agent; --unpin also removes its pinned programs\n"
		"  replay     feed a --record file through the userspace pipeline (benchmark)\n"
		"  verify     prove an event stream complete: gaps, duplicates, hash chain, losses\n"
		"  version    print the version\n"
		"\n"
		"dbwarden run [--port N[=PROTO] ...] [--cgroup PATH] [--output stdout|file:PATH|kafka ...]\n"
		"             [--kafka-brokers H:P,... --kafka-topic NAME] [--kafka-config K=V ...]\n"
		"             [--kafka-config-file FILE] [--spool-max SIZE] [--state-dir DIR]\n"
		"             [--policy FILE] [--ringbuf-mb N] [--max-conns N] [--record PATH]\n"
		"             [--metrics ADDR:PORT] [--no-tls] [--pin-dir DIR | --no-pin]\n"
		"             [--fail-mode open|closed] [-v]\n"
		"             [--k8s-api URL --k8s-ca FILE --k8s-token-file FILE] [--node-name N]\n"
		"  --port N=PROTO      watch TCP connections to server port N speaking PROTO\n"
		"                      (postgres, mysql or mariadb, redis; N alone: postgres;\n"
		"                      repeatable; default 5432=postgres 3306=mysql 6379=redis)\n"
		"  --cgroup PATH       only connections opened by processes under this cgroup v2\n"
		"                      directory (default: the whole host)\n" OUTPUT_USAGE
		"  --policy FILE       enforce this policy (YAML); SIGHUP reads it again\n"
		"  --api PATH          the approvals socket (default " DBW_API_DEFAULT ")\n"
		"  --ringbuf-mb N      kernel ring buffer size in MiB, a power of two (default 16)\n"
		"  --max-conns N       connections tracked at once (default 65536)\n"
		"  --record PATH       also write every raw kernel record to PATH (for replay)\n"
		"  --no-tls            do not probe TLS libraries (TLS connections stay opaque)\n"
		"  --metrics ADDR:PORT serve /metrics (Prometheus), /healthz, /readyz, /status\n"
		"  --pin-dir DIR       pin programs and maps on bpffs here (default " DBW_PIN_DIR
		")\n"
		"                      so that they keep enforcing and buffering when the agent\n"
		"                      stops or dies; the next agent adopts them\n"
		"  --no-pin            pin nothing: everything detaches when the agent exits\n"
		"  --fail-mode MODE    while no agent runs: open (default) keeps the last policy's\n"
		"                      blocks; closed also refuses every other statement to\n"
		"                      connections the policy has rules for\n"
		"  --k8s-api URL       the Kubernetes API (https://) for pod names, namespaces,\n"
		"                      service accounts and labels (default in a pod: the\n"
		"                      cluster's, with its service account)\n"
		"  --k8s-ca FILE       CA bundle the API's certificate must chain to\n"
		"  --k8s-token-file F  bearer token, read again for every request\n"
		"  --node-name NAME    this node (default $NODE_NAME, else the host name)\n"
		"  --log-level LEVEL   error, warning, info (default) or debug: what the agent\n"
		"                      says on stderr (never statements or values)\n"
		"  -v                  the same as --log-level debug\n"
		"\n"
		"dbwarden policy check FILE\n"
		"dbwarden policy test FILE --sql SQL [--actor k=v ...] [--target HOST:PORT]\n"
		"                     [--database D] [--db-user U]\n"
		"dbwarden approve ID [--ttl 15m] [--socket PATH]\n"
		"dbwarden approvals [--socket PATH]\n"
		"dbwarden status [--metrics ADDR:PORT] [--json]   (default 127.0.0.1:" DBW_METRICS_PORT
		")\n"
		"dbwarden stop [--unpin] [--pin-dir DIR]\n"
		"dbwarden replay PATH [--repeat N] [--output SPEC ...] [--kafka-* ...] [--policy FILE]\n"
		"dbwarden verify FILE|- | --kafka-brokers H:P,... --kafka-topic NAME [--kafka-config K=V ...]\n");
}

/* Strict unsigned parse of the whole string into [min, max]. */
static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	*out = strtoul(s, &end, 10);
	if (errno || *end || *out < min || *out > max)
		return -1;
	return 0;
}

/* "N" or "N=PROTO" into ports[]. Returns 0, or -1 after printing why. */
static int parse_port(const char *arg, struct agent_opts *o)
{
	char buf[64], *eq;
	unsigned long port;
	uint8_t proto = DBW_PROTO_POSTGRES;

	snprintf(buf, sizeof(buf), "%s", arg);
	eq = strchr(buf, '=');
	if (eq) {
		*eq = 0;
		int pr = dbw_proto_parse(eq + 1);

		if (pr <= 0) {
			log_error("--port %s: unknown protocol '%s' (supported: postgres, "
				  "mysql, mariadb, redis)",
				  arg, eq + 1);
			return -1;
		}
		proto = pr;
	}
	if (parse_uint(buf, 1, 65535, &port)) {
		log_error("--port %s: expected PORT[=PROTO] with PORT in 1..65535", arg);
		return -1;
	}
	for (int i = 0; i < o->nports; i++) {
		if (o->ports[i].port == port) {
			o->ports[i].proto = proto;
			return 0;
		}
	}
	if (o->nports >= CAPTURE_MAX_PORTS) {
		log_error("at most %d --port options", CAPTURE_MAX_PORTS);
		return -1;
	}
	o->ports[o->nports].port = port;
	o->ports[o->nports].proto = proto;
	o->nports++;
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "cgroup", required_argument, NULL, 'c' },
		OUTPUT_LONGOPTS,
		{ "ringbuf-mb", required_argument, NULL, 'r' },
		{ "max-conns", required_argument, NULL, 'm' },
		{ "record", required_argument, NULL, 'R' },
		{ "policy", required_argument, NULL, 'P' },
		{ "api", required_argument, NULL, 'A' },
		{ "no-tls", no_argument, NULL, 'S' },
		{ "metrics", required_argument, NULL, 'M' },
		{ "k8s-api", required_argument, NULL, 'K' },
		{ "k8s-ca", required_argument, NULL, 'C' },
		{ "k8s-token-file", required_argument, NULL, 'T' },
		{ "node-name", required_argument, NULL, 'N' },
		{ "pin-dir", required_argument, NULL, 'D' },
		{ "no-pin", no_argument, NULL, 'U' },
		{ "fail-mode", required_argument, NULL, 'F' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct agent_opts o = { .ringbuf_bytes = 16 << 20, .tls = true, .pin_dir = DBW_PIN_DIR };
	unsigned long v;
	int opt, e;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (parse_port(optarg, &o))
				return 2;
			break;
		case 'c':
			o.cgroup = optarg;
			break;
		case 'r':
			if (parse_uint(optarg, 1, 1024, &v) || (v & (v - 1))) {
				log_error("--ringbuf-mb %s: expected a power of two in 1..1024",
					  optarg);
				return 2;
			}
			o.ringbuf_bytes = (size_t)v << 20;
			break;
		case 'm':
			if (parse_uint(optarg, 16, 1 << 22, &v)) {
				log_error("--max-conns %s: expected 16..4194304", optarg);
				return 2;
			}
			o.max_conns = v;
			break;
		case 'R':
			o.record = optarg;
			break;
		case 'P':
			o.policy = optarg;
			break;
		case 'A':
			o.api = optarg;
			break;
		case 'S':
			o.tls = false;
			break;
		case 'M':
			o.metrics = optarg;
			break;
		case 'K':
			if (strncmp(optarg, "https://", 8) || !optarg[8]) {
				log_error("--k8s-api %s: expected an https:// URL", optarg);
				return 2;
			}
			o.k8s.api = optarg;
			break;
		case 'C':
			o.k8s.ca_file = optarg;
			break;
		case 'T':
			o.k8s.token_file = optarg;
			break;
		case 'N':
			o.k8s.node = optarg;
			break;
		case 'D':
			if (optarg[0] != '/') {
				log_error("--pin-dir %s: expected an absolute path", optarg);
				return 2;
			}
			o.pin_dir = optarg;
			break;
		case 'U':
			o.pin_dir = NULL;
			break;
		case 'F':
			if (strcmp(optarg, "open") && strcmp(optarg, "closed")) {
				log_error("--fail-mode %s: expected open or closed", optarg);
				return 2;
			}
			o.fail_closed = !strcmp(optarg, "closed");
			break;
		case 'L':
			if (log_level_parse(optarg) < 0) {
				log_error("--log-level %s: expected error, warning, info or debug",
					  optarg);
				return 2;
			}
			log_set_level(log_level_parse(optarg));
			break;
		case 'v':
			log_set_level(DBW_LOG_DEBUG);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			e = output_opt(&o.out, opt, optarg);
			if (e > 0)
				break;
			if (!e)
				usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		log_error("run: unexpected argument '%s'", argv[optind]);
		return 2;
	}
	if (output_check(&o.out, STATE_DIR_DEFAULT))
		return 2;
	if (!o.nports) {
		parse_port("5432=postgres", &o);
		parse_port("3306=mysql", &o);
		parse_port("6379=redis", &o);
	}
	return agent_run(&o);
}

static int cmd_replay(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "repeat", required_argument, NULL, 'n' },
		OUTPUT_LONGOPTS,
		{ "policy", required_argument, NULL, 'P' },
		{ 0 },
	};
	struct output_opts out = { 0 };
	const char *policy = NULL;
	unsigned long repeat = 1;
	int opt, e;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			if (parse_uint(optarg, 1, 1000000, &repeat)) {
				log_error("--repeat %s: expected 1..1000000", optarg);
				return 2;
			}
			break;
		case 'P':
			policy = optarg;
			break;
		default:
			e = output_opt(&out, opt, optarg);
			if (e > 0)
				break;
			if (!e)
				usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		log_error("replay: expected one recording file");
		return 2;
	}
	/* nothing persisted unless asked: a replay is a measurement */
	if (output_check(&out, NULL))
		return 2;
	return agent_replay(argv[optind], repeat, &out, policy);
}

/* `dbwarden policy check FILE`: the compiled rules, or every error with line:col. */
static int cmd_policy_check(const char *path)
{
	char err[8192];
	struct policy *p = policy_load(path, err, sizeof(err));

	if (!p) {
		fputs(err, stderr);
		return 1;
	}
	policy_print(p, stdout);
	policy_free(p);
	return 0;
}

/*
 * --actor k=v about the workload: 1 when kv is one (set in c), 0 when not,
 * -1 when it is malformed. Naming a pod field makes c a pod whose metadata
 * is known.
 */
static int set_workload(struct policy_conn *c, const char *kv)
{
	static const char *labels[64];
	static const struct {
		const char *key;
		size_t off;
	} fields[] = {
		{ "pod_namespace=", offsetof(struct policy_conn, pod_namespace) },
		{ "pod_name=", offsetof(struct policy_conn, pod_name) },
		{ "service_account=", offsetof(struct policy_conn, service_account) },
		{ "container=", offsetof(struct policy_conn, container) },
	};
	const char *eq = strchr(kv, '=');

	if (!strncmp(kv, "container_id=", 13)) {
		c->container_id = eq + 1;
		return 1;
	}
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (!strncmp(kv, fields[i].key, strlen(fields[i].key))) {
			*(const char **)((char *)c + fields[i].off) = eq + 1;
			c->in_pod = c->pod_known = true;
			return 1;
		}
	}
	if (strncmp(kv, "label:", 6))
		return 0;
	if (eq == kv + 6 || c->nlabels == sizeof(labels) / sizeof(labels[0]) / 2)
		return -1;
	labels[2 * c->nlabels] = strndup(kv + 6, eq - kv - 6);
	labels[2 * c->nlabels + 1] = eq + 1;
	c->nlabels++;
	c->labels = labels;
	c->in_pod = c->pod_known = true;
	return 1;
}

/* --actor k=v: the actor fields policy test can set. */
static int set_actor(struct policy_conn *c, const char *kv)
{
	const char *eq = strchr(kv, '=');
	unsigned long uid;
	int w;

	if (!eq)
		return -1;
	w = set_workload(c, kv);
	if (w)
		return w < 0 ? -1 : 0;
	if (!strncmp(kv, "uid=", 4) && !parse_uint(eq + 1, 0, 0xffffffffu, &uid))
		c->uid = uid;
	else if (!strncmp(kv, "user=", 5))
		c->user = eq + 1;
	else if (!strncmp(kv, "comm=", 5))
		c->comm = eq + 1;
	else if (!strncmp(kv, "exe=", 4))
		c->exe = eq + 1;
	else if (!strncmp(kv, "cgroup=", 7))
		c->cgroup = eq + 1;
	else
		return -1;
	return 0;
}

/*
 * A Redis command line ("SET k v", as redis-cli takes it) as the daemon
 * analyses it. 0, or -1 when it is not one command. text holds the
 * normalized text; objects point into *scan.
 */
static int redis_line_analysis(const char *line, struct redis_scan *scan, char *text,
			       size_t textlen, struct redis_stmt *rs, struct sql_analysis *a)
{
	size_t used = 0, n = strlen(line);
	char *buf = malloc(n + 2);
	enum dbw_parse r;
	int cls;

	if (!buf)
		return -1;
	memcpy(buf, line, n);
	memcpy(buf + n, "\n", 2);
	redis_scan_init(scan, true);
	r = redis_scan(scan, (const uint8_t *)buf, n + 1, &used);
	free(buf);
	if (r != DBW_PARSE_OK)
		return -1;
	redis_cmd_stmt(&scan->cmd, text, textlen, rs);
	memset(a, 0, sizeof(*a));
	a->normalized = text;
	a->verb = rs->verb;
	memcpy(a->fingerprint, rs->fingerprint, sizeof(a->fingerprint));
	cls = redis_verb_class(rs->verb);
	a->verbs = 1u << cls;
	if (strchr(rs->verb, ' ')) {
		char top[48];

		snprintf(top, sizeof(top), "%.*s", (int)strcspn(rs->verb, " "), rs->verb);
		if ((cls = redis_verb_class(top)))
			a->verbs |= 1u << cls;
	}
	for (size_t i = 0; i < rs->nobjects && i < SQL_MAX_OBJECTS; i++)
		a->objects[a->nobjects++] = rs->objects[i];
	a->parsed = !rs->cut;
	return 0;
}

/*
 * `dbwarden policy test FILE --sql "..." [--protocol P] [--actor k=v ...]
 * [--target HOST:PORT] [--database D] [--db-user U]`: the verdict, from the
 * daemon's own code. --protocol mysql reads --sql as MySQL, redis as a
 * Redis command line.
 */
static int cmd_policy_test(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "sql", required_argument, NULL, 's' },
		{ "actor", required_argument, NULL, 'a' },
		{ "target", required_argument, NULL, 't' },
		{ "database", required_argument, NULL, 'd' },
		{ "db-user", required_argument, NULL, 'u' },
		{ "protocol", required_argument, NULL, 'p' },
		{ 0 },
	};
	static struct redis_scan scan;
	struct mysql_analyzer *my = NULL;
	struct redis_stmt rs;
	char rtext[2048];
	int proto = DBW_PROTO_POSTGRES, e;
	struct policy_conn c = { .user = "",
				 .comm = "",
				 .exe = "",
				 .cgroup = "",
				 .server = "",
				 .server_port = 5432,
				 .database = "",
				 .db_user = "" };
	struct policy_stmt st = {};
	struct policy_verdict v;
	struct sql_analysis a;
	struct sql_analyzer *an;
	const char *sql = NULL, *colon;
	struct policy *p;
	char err[8192];
	unsigned long port;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			sql = optarg;
			break;
		case 'a':
			if (set_actor(&c, optarg)) {
				log_error("--actor %s: expected uid=, user=, comm=, exe=, "
					  "cgroup=, container_id=, container=, pod_namespace=, "
					  "pod_name=, service_account= or label:KEY=VALUE",
					  optarg);
				return 2;
			}
			break;
		case 't':
			colon = strrchr(optarg, ':');
			if (!colon || parse_uint(colon + 1, 1, 65535, &port)) {
				log_error("--target %s: expected HOST:PORT", optarg);
				return 2;
			}
			c.server = optarg;
			c.server_port = port;
			break;
		case 'd':
			c.database = optarg;
			break;
		case 'u':
			c.db_user = optarg;
			break;
		case 'p':
			proto = dbw_proto_parse(optarg);
			if (proto <= 0) {
				log_error("--protocol %s: expected postgres, mysql, "
					  "mariadb or redis",
					  optarg);
				return 2;
			}
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	c.proto = proto;
	if (optind != argc - 1 || !sql) {
		log_error("policy test FILE --sql SQL [--protocol P] [--actor k=v] "
			  "[--target HOST:PORT] [--database D] [--db-user U]");
		return 2;
	}
	p = policy_load(argv[optind], err, sizeof(err));
	if (!p) {
		fputs(err, stderr);
		return 1;
	}
	an = sql_analyzer_new(16);
	if (proto == DBW_PROTO_REDIS) {
		e = redis_line_analysis(sql, &scan, rtext, sizeof(rtext), &rs, &a);
		if (e) {
			log_error("--sql: not a Redis command line");
			policy_free(p);
			sql_analyzer_free(an);
			return 2;
		}
		st.space = DBW_SPACE_REDIS;
	} else if (proto == DBW_PROTO_MYSQL) {
		my = mysql_analyzer_new();
		e = !my || mysql_analyze(my, sql, strlen(sql), false, &a);
	} else {
		e = !an || sql_analyze(an, sql, strlen(sql), false, &a);
	}
	if (e) {
		log_error("out of memory");
		policy_free(p);
		sql_analyzer_free(an);
		mysql_analyzer_free(my);
		return 1;
	}
	st.verb = a.verb;
	st.verbs = a.verbs;
	st.objects = a.objects;
	st.nobjects = a.nobjects;
	st.without_where = a.without_where;
	st.parsed = a.parsed;
	policy_eval(p, &c, &st, &v);
	printf("verdict: %s rule: %s", policy_action_name(v.action),
	       v.name	  ? v.name :
	       v.unparsed ? "(defaults.unparsed)" :
			    "(default)");
	if (v.message && *v.message)
		printf(" message: %s", v.message);
	printf("\nstatement: %s verb: %s\n", a.normalized, a.verb);
	policy_free(p);
	sql_analyzer_free(an);
	mysql_analyzer_free(my);
	redis_scan_reset(&scan);
	return 0;
}

/* One request to the daemon's API socket; its answer on stdout. 0 when it says ok. */
static int api_call(const char *path, const char *req)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[4096];
	int fd, ok = 0;
	ssize_t n;
	FILE *f;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		log_error("cannot reach the agent at %s: %s", path, strerror(errno));
		return 1;
	}
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		log_error("%s: %s", path, strerror(errno));
		close(fd);
		return 1;
	}
	f = fdopen(fd, "r");
	while (f && fgets(buf, sizeof(buf), f)) {
		n = strlen(buf);
		if (!strncmp(buf, "ok", 2))
			ok = 1;
		if (!strncmp(buf, "error ", 6)) {
			log_error("%s", buf + 6);
			continue;
		}
		fwrite(buf, 1, n, stdout);
	}
	if (f)
		fclose(f);
	return ok ? 0 : 1;
}

/* `dbwarden approve ID [--ttl 15m] [--socket PATH]`, `dbwarden approvals [--socket PATH]` */
static int cmd_approvals(int argc, char **argv, bool approve)
{
	static const struct option longopts[] = {
		{ "ttl", required_argument, NULL, 't' },
		{ "socket", required_argument, NULL, 's' },
		{ 0 },
	};
	const char *sock = DBW_API_DEFAULT;
	unsigned long ttl = 0;
	char req[128], *end;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 't':
			ttl = strtoul(optarg, &end, 10);
			ttl *= *end == 'h' ? 3600 : *end == 'm' ? 60 : 1;
			if (!ttl || (*end && strchr("smh", *end) == NULL) || (*end && end[1])) {
				log_error("--ttl %s: expected a duration (90s, 15m, 2h)", optarg);
				return 2;
			}
			break;
		case 's':
			sock = optarg;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (approve) {
		if (optind != argc - 1) {
			log_error("approve ID [--ttl 15m] [--socket PATH]");
			return 2;
		}
		snprintf(req, sizeof(req), "approve %s %lu\n", argv[optind], ttl);
	} else {
		if (optind != argc) {
			log_error("approvals [--socket PATH]");
			return 2;
		}
		snprintf(req, sizeof(req), "approvals\n");
	}
	return api_call(sock, req);
}

/* `dbwarden status`: ask a running agent (its --metrics endpoint) how it is. */
static int cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "metrics", required_argument, NULL, 'M' },
		{ "json", no_argument, NULL, 'j' },
		{ 0 },
	};
	const char *addr = "127.0.0.1:" DBW_METRICS_PORT;
	bool as_json = false;
	char err[512], *body;
	int opt, rc = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'M':
			addr = optarg;
			break;
		case 'j':
			as_json = true;
			break;
		default:
			log_error("status [--metrics ADDR:PORT] [--json]");
			return 2;
		}
	}
	if (optind != argc) {
		log_error("status: unexpected argument '%s'", argv[optind]);
		return 2;
	}
	body = metrics_get(addr, "/status", err, sizeof(err));
	if (!body) {
		log_error("%s", err);
		return 1;
	}
	if (as_json) {
		printf("%s\n", body);
	} else if (status_render(body, stdout)) {
		log_error("%s did not answer with an agent's status", addr);
		rc = 1;
	}
	free(body);
	return rc;
}

static int cmd_stop(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "unpin", no_argument, NULL, 'u' },
		{ "pin-dir", required_argument, NULL, 'D' },
		{ 0 },
	};
	const char *dir = DBW_PIN_DIR;
	bool unpin = false;
	int opt, e;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (opt == 'u') {
			unpin = true;
		} else if (opt == 'D') {
			dir = optarg;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		log_error("stop: unexpected argument '%s'", argv[optind]);
		return 2;
	}
	e = sys_mount_bpffs();
	if (e) {
		log_error("stop: bpffs: %s", strerror(-e));
		return 1;
	}
	e = capture_stop_pinned(dir, unpin);
	return e < 0 ? 1 : e;
}

static int cmd_policy(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "check"))
		return cmd_policy_check(argv[2]);
	if (argc >= 3 && !strcmp(argv[1], "test"))
		return cmd_policy_test(argc - 1, argv + 1);
	log_error("policy check FILE | policy test FILE --sql SQL ...");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "replay"))
		return cmd_replay(argc - 1, argv + 1);
	if (!strcmp(argv[1], "policy"))
		return cmd_policy(argc - 1, argv + 1);
	if (!strcmp(argv[1], "stop"))
		return cmd_stop(argc - 1, argv + 1);
	if (!strcmp(argv[1], "approve"))
		return cmd_approvals(argc - 1, argv + 1, true);
	if (!strcmp(argv[1], "approvals"))
		return cmd_approvals(argc - 1, argv + 1, false);
	if (!strcmp(argv[1], "status"))
		return cmd_status(argc - 1, argv + 1);
	if (!strcmp(argv[1], "verify"))
		return verify_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("dbwarden %s (ABI %d)\n", DBW_VERSION, DBW_ABI_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	log_error("unknown command '%s'", argv[1]);
	usage(stderr);
	return 2;
}
