// SPDX-License-Identifier: GPL-2.0-only
/*
 * dbwarden command line. `dbwarden run` is the daemon; the other commands
 * arrive with their features.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

#define DBW_VERSION "0.1.0"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dbwarden <command> [options]\n"
		"\n"
		"commands:\n"
		"  run        start the agent: capture database statements, write audit events\n"
		"  replay     feed a --record file through the userspace pipeline (benchmark)\n"
		"  version    print the version\n"
		"\n"
		"dbwarden run [--port N[=PROTO] ...] [--cgroup PATH] [--output stdout|file:PATH]\n"
		"             [--ringbuf-mb N] [--max-conns N] [--record PATH] [-v]\n"
		"  --port N=postgres   watch TCP connections to server port N (repeatable;\n"
		"                      default 5432=postgres)\n"
		"  --cgroup PATH       only connections opened by processes under this cgroup v2\n"
		"                      directory (default: the whole host)\n"
		"  --output SPEC       stdout (default) or file:PATH (JSON Lines, appended)\n"
		"  --ringbuf-mb N      kernel ring buffer size in MiB, a power of two (default 16)\n"
		"  --max-conns N       connections tracked at once (default 65536)\n"
		"  --record PATH       also write every raw kernel record to PATH (for replay)\n"
		"  -v                  verbose logs on stderr\n"
		"\n"
		"dbwarden replay PATH [--repeat N] [--output SPEC]\n");
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
		if (!strcmp(eq + 1, "postgres") || !strcmp(eq + 1, "postgresql")) {
			proto = DBW_PROTO_POSTGRES;
		} else {
			fprintf(stderr,
				"dbwarden: --port %s: unknown protocol '%s' (supported: postgres)\n",
				arg, eq + 1);
			return -1;
		}
	}
	if (parse_uint(buf, 1, 65535, &port)) {
		fprintf(stderr,
			"dbwarden: --port %s: expected PORT[=postgres] with PORT in 1..65535\n",
			arg);
		return -1;
	}
	for (int i = 0; i < o->nports; i++) {
		if (o->ports[i].port == port) {
			o->ports[i].proto = proto;
			return 0;
		}
	}
	if (o->nports >= CAPTURE_MAX_PORTS) {
		fprintf(stderr, "dbwarden: at most %d --port options\n", CAPTURE_MAX_PORTS);
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
		{ "output", required_argument, NULL, 'o' },
		{ "ringbuf-mb", required_argument, NULL, 'r' },
		{ "max-conns", required_argument, NULL, 'm' },
		{ "record", required_argument, NULL, 'R' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct agent_opts o = { .output = "stdout", .ringbuf_bytes = 16 << 20 };
	unsigned long v;
	int opt;

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
		case 'o':
			if (strcmp(optarg, "stdout") &&
			    (strncmp(optarg, "file:", 5) || !optarg[5])) {
				fprintf(stderr,
					"dbwarden: --output %s: expected stdout or file:PATH\n",
					optarg);
				return 2;
			}
			o.output = optarg;
			break;
		case 'r':
			if (parse_uint(optarg, 1, 1024, &v) || (v & (v - 1))) {
				fprintf(stderr,
					"dbwarden: --ringbuf-mb %s: expected a power of two in 1..1024\n",
					optarg);
				return 2;
			}
			o.ringbuf_bytes = (size_t)v << 20;
			break;
		case 'm':
			if (parse_uint(optarg, 16, 1 << 22, &v)) {
				fprintf(stderr, "dbwarden: --max-conns %s: expected 16..4194304\n",
					optarg);
				return 2;
			}
			o.max_conns = v;
			break;
		case 'R':
			o.record = optarg;
			break;
		case 'v':
			o.verbose++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "dbwarden: run: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!o.nports)
		parse_port("5432=postgres", &o);
	return agent_run(&o);
}

static int cmd_replay(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "repeat", required_argument, NULL, 'n' },
		{ "output", required_argument, NULL, 'o' },
		{ 0 },
	};
	const char *output = "stdout";
	unsigned long repeat = 1;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			if (parse_uint(optarg, 1, 1000000, &repeat)) {
				fprintf(stderr, "dbwarden: --repeat %s: expected 1..1000000\n",
					optarg);
				return 2;
			}
			break;
		case 'o':
			output = optarg;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "dbwarden: replay: expected one recording file\n");
		return 2;
	}
	return agent_replay(argv[optind], repeat, output);
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
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("dbwarden %s (ABI %d)\n", DBW_VERSION, DBW_ABI_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "dbwarden: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
