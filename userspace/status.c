// SPDX-License-Identifier: GPL-2.0-only
/*
 * The agent's health in two shapes. Metrics follow Prometheus' naming
 * (dbwarden_*_total for counters); the kernel's loss and helper-failure
 * counters are exported by name, one series each, so a dashboard sees a
 * new failure kind without a new release. No payload, literal or statement
 * text is ever part of either.
 */
#include <jansson.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "capture.h"
#include "conn.h"
#include "event.h"
#include "guard.h"
#include "policy.h"
#include "status.h"
#include "tls.h"

#define MAX_PROGS 32

static void counter(FILE *out, const char *name, const char *help, uint64_t v)
{
	fprintf(out, "# HELP dbwarden_%s %s\n# TYPE dbwarden_%s counter\ndbwarden_%s %llu\n", name,
		help, name, name, (unsigned long long)v);
}

static void gauge(FILE *out, const char *name, const char *help, double v)
{
	fprintf(out, "# HELP dbwarden_%s %s\n# TYPE dbwarden_%s gauge\ndbwarden_%s %.17g\n", name,
		help, name, name, v);
}

void status_prometheus(void *ctx, FILE *out)
{
	struct agent_view *v = ctx;
	struct capture_prog_stat progs[MAX_PROGS];
	uint64_t cnt[DBW_CNT__MAX];
	struct conn_stats st;
	int n;

	conns_stats(v->conns, &st);
	gauge(out, "up", "1 while the agent runs", 1);
	gauge(out, "start_time_seconds", "when the agent started (unix time)", v->started_unix);
	counter(out, "events_total", "audit events written", emitter_seq(v->em));
	counter(out, "event_write_errors_total", "audit events that could not be written",
		emitter_errors(v->em));
	fputs("# HELP dbwarden_statements_total statement events by protocol and decision\n"
	      "# TYPE dbwarden_statements_total counter\n",
	      out);
	for (int pr = DBW_PROTO_POSTGRES; pr <= DBW_PROTO_REDIS; pr++)
		for (int a = DBW_ACT_ALLOW; a <= DBW_ACT_BLOCK; a++)
			fprintf(out,
				"dbwarden_statements_total{protocol=\"%s\",decision=\"%s\"} "
				"%llu\n",
				dbw_proto_name(pr), policy_action_name(a),
				(unsigned long long)st.by_proto[pr][a]);
	gauge(out, "connections_open", "watched connections in the table", st.open);
	counter(out, "connections_total", "watched connections seen", st.opened);
	counter(out, "connections_unparsed_total", "connections whose stream could not be parsed",
		st.unparsed);
	counter(out, "connections_evicted_total", "table entries evicted (--max-conns)",
		st.evicted);
	counter(out, "stream_gaps_total", "gaps in captured streams", st.gaps);
	counter(out, "stream_gap_bytes_total", "bytes missing in those gaps", st.gap_bytes);
	counter(out, "bad_records_total", "malformed ring buffer records", st.bad_records);
	counter(out, "guard_verdicts_total", "kernel guard verdict records", st.verdicts);
	counter(out, "connection_resets_total", "connections reset by the agent", st.resets);
	counter(out, "guard_mismatches_total", "kernel blocks the exact parse did not confirm",
		st.mismatches);
	counter(out, "mask_counts_merged_total",
		"masked Redis replies whose counts went to a later command's event (a pipeline "
		"deeper than 8192, or 2^20 on all connections)",
		st.mask_pending_merged);
	counter(out, "statements_lost_in_handover_total",
		"statements answered after a restart whose request the previous daemon had read",
		st.lost_statements);
	gauge(out, "pinned", "1 when the programs are pinned and outlive the agent",
	      capture_pin_dir(v->cap) != NULL);
	if (v->guard) {
		struct guard_info gi;

		guard_info(v->guard, &gi);
		gauge(out, "policy_rules", "rules of the policy in force", gi.rules);
		gauge(out, "policy_loaded_time_seconds", "when the policy in force was loaded",
		      gi.loaded_unix);
		gauge(out, "approvals_pending", "require_approval blocks waiting for an approver",
		      gi.approvals_pending);
		gauge(out, "approvals_granted", "approvals in force", gi.approvals_granted);
		gauge(out, "mask_catalog_databases",
		      "databases whose catalog names masked tables' columns", gi.catalog.dbs);
		gauge(out, "mask_catalog_columns", "table columns the kernel masks by table",
		      gi.catalog.entries);
		counter(out, "mask_catalog_reads_total", "catalog reads that succeeded",
			gi.catalog.lookups);
		counter(out, "mask_catalog_failures_total",
			"catalog reads that failed (those columns go by name)",
			gi.catalog.failures);
		counter(out, "mask_catalog_dropped_total",
			"columns or databases beyond the limits (they go by name)",
			gi.catalog.dropped);
	}
	if (v->tls) {
		struct tls_stats ts;

		tls_stats(v->tls, &ts);
		gauge(out, "tls_libraries", "TLS library files probed now", ts.libraries);
		counter(out, "tls_library_failures_total", "TLS libraries that could not be probed",
			ts.failed);
	}
	if (!capture_counters(v->cap, cnt)) {
		fputs("# HELP dbwarden_kernel_total the kernel programs' counters, losses and "
		      "helper failures included\n# TYPE dbwarden_kernel_total counter\n",
		      out);
		for (int i = 0; i < DBW_CNT__MAX; i++)
			if (capture_counter_name(i))
				fprintf(out, "dbwarden_kernel_total{counter=\"%s\"} %llu\n",
					capture_counter_name(i), (unsigned long long)cnt[i]);
	}
	n = capture_prog_stats(v->cap, progs, MAX_PROGS);
	fputs("# HELP dbwarden_bpf_run_seconds_total run time per BPF program "
	      "(kernel.bpf_stats_enabled=1)\n# TYPE dbwarden_bpf_run_seconds_total counter\n",
	      out);
	for (int i = 0; i < n; i++)
		fprintf(out, "dbwarden_bpf_run_seconds_total{program=\"%s\"} %.9f\n", progs[i].name,
			progs[i].run_time_ns / 1e9);
	fputs("# HELP dbwarden_bpf_runs_total runs per BPF program\n"
	      "# TYPE dbwarden_bpf_runs_total counter\n",
	      out);
	for (int i = 0; i < n; i++)
		fprintf(out, "dbwarden_bpf_runs_total{program=\"%s\"} %llu\n", progs[i].name,
			(unsigned long long)progs[i].run_cnt);
}

void status_json(void *ctx, FILE *out)
{
	struct agent_view *v = ctx;
	struct capture_prog_stat progs[MAX_PROGS];
	json_t *j, *ports, *counters, *jp, *pol = json_null(), *tls = json_null();
	uint64_t cnt[DBW_CNT__MAX];
	struct conn_stats st;
	int n;

	conns_stats(v->conns, &st);
	ports = json_array();
	for (int i = 0; i < v->o->nports; i++)
		json_array_append_new(ports,
				      json_pack("{s:i, s:s}", "port", v->o->ports[i].port,
						"protocol", dbw_proto_name(v->o->ports[i].proto)));
	counters = json_object();
	if (!capture_counters(v->cap, cnt))
		for (int i = 0; i < DBW_CNT__MAX; i++)
			if (capture_counter_name(i))
				json_object_set_new(counters, capture_counter_name(i),
						    json_integer((json_int_t)cnt[i]));
	jp = json_array();
	n = capture_prog_stats(v->cap, progs, MAX_PROGS);
	for (int i = 0; i < n; i++)
		json_array_append_new(
			jp, json_pack("{s:s, s:i}", "name", progs[i].name, "id", (int)progs[i].id));
	if (v->guard) {
		struct guard_info gi;

		guard_info(v->guard, &gi);
		pol = json_pack(
			"{s:s, s:s, s:I, s:I, s:i, s:i, s:{s:I, s:I, s:I, s:I, s:I}}", "path",
			gi.path, "version", gi.version, "loaded_unix", (json_int_t)gi.loaded_unix,
			"rules", (json_int_t)gi.rules, "approvals_pending", gi.approvals_pending,
			"approvals_granted", gi.approvals_granted, "catalog", "databases",
			(json_int_t)gi.catalog.dbs, "columns", (json_int_t)gi.catalog.entries,
			"reads", (json_int_t)gi.catalog.lookups, "failures",
			(json_int_t)gi.catalog.failures, "dropped", (json_int_t)gi.catalog.dropped);
	}
	if (v->tls) {
		struct tls_stats ts;

		tls_stats(v->tls, &ts);
		tls = json_pack("{s:I, s:I, s:I}", "libraries", (json_int_t)ts.libraries,
				"detached", (json_int_t)ts.detached, "failed",
				(json_int_t)ts.failed);
	}
	j = json_pack("{s:s, s:I, s:s, s:o, s:o, s:{s:I, s:I, s:I, s:I}, s:I, s:o, s:o, s:o}",
		      "version", DBW_VERSION, "started_unix", (json_int_t)v->started_unix, "cgroup",
		      v->cgroup, "ports", ports, "programs", jp, "connections", "open",
		      (json_int_t)st.open, "total", (json_int_t)st.opened, "unparsed",
		      (json_int_t)st.unparsed, "evicted", (json_int_t)st.evicted, "events",
		      (json_int_t)emitter_seq(v->em), "policy", pol, "tls", tls, "counters",
		      counters);
	if (j) {
		uint64_t prev[DBW_CNT__MAX];
		const char *dir = capture_pin_dir(v->cap);

		/* what survives this daemon: see --pin-dir and --fail-mode */
		json_object_set_new(j, "pinning",
				    json_pack("{s:o, s:b, s:s, s:I}", "dir", json_str_or_null(dir),
					      "adopted", capture_adopted(v->cap, prev), "fail_mode",
					      v->o->fail_closed ? "closed" : "open",
					      "lost_in_handover", (json_int_t)st.lost_statements));
		json_dumpf(j, out, JSON_COMPACT);
	}
	json_decref(j);
}

int status_render(const char *text, FILE *out)
{
	json_t *j = json_loads(text, 0, NULL), *v, *p;
	const char *key;
	size_t i;
	time_t t;

	if (!j || !json_is_object(j)) {
		json_decref(j);
		return -1;
	}
	t = json_integer_value(json_object_get(j, "started_unix"));
	fprintf(out, "dbwarden %s, running since %s",
		json_string_value(json_object_get(j, "version")), ctime(&t));
	fprintf(out, "watching under %s, ports:", json_string_value(json_object_get(j, "cgroup")));
	json_array_foreach(json_object_get(j, "ports"), i, v)
		fprintf(out, " %lld/%s", json_integer_value(json_object_get(v, "port")),
			json_string_value(json_object_get(v, "protocol")));
	fputc('\n', out);
	fprintf(out, "programs loaded (%zu):", json_array_size(json_object_get(j, "programs")));
	json_array_foreach(json_object_get(j, "programs"), i, v)
		fprintf(out, " %s", json_string_value(json_object_get(v, "name")));
	fputc('\n', out);
	p = json_object_get(j, "pinning");
	if (json_is_string(json_object_get(p, "dir")))
		fprintf(out,
			"pinned in %s%s: they keep enforcing if the agent stops (fail-mode %s)\n",
			json_string_value(json_object_get(p, "dir")),
			json_is_true(json_object_get(p, "adopted")) ?
				", adopted from an earlier run" :
				"",
			json_string_value(json_object_get(p, "fail_mode")));
	else if (p)
		fputs("not pinned: everything detaches when the agent exits\n", out);
	p = json_object_get(j, "connections");
	fprintf(out,
		"connections: %lld open, %lld seen, %lld unparsed, %lld evicted; events %lld\n",
		json_integer_value(json_object_get(p, "open")),
		json_integer_value(json_object_get(p, "total")),
		json_integer_value(json_object_get(p, "unparsed")),
		json_integer_value(json_object_get(p, "evicted")),
		json_integer_value(json_object_get(j, "events")));
	p = json_object_get(j, "policy");
	if (json_is_object(p)) {
		t = json_integer_value(json_object_get(p, "loaded_unix"));
		fprintf(out,
			"policy: %s, version %s, %lld rules, loaded %s"
			"approvals: %lld pending, %lld granted\n",
			json_string_value(json_object_get(p, "path")),
			json_string_value(json_object_get(p, "version")),
			json_integer_value(json_object_get(p, "rules")), ctime(&t),
			json_integer_value(json_object_get(p, "approvals_pending")),
			json_integer_value(json_object_get(p, "approvals_granted")));
		p = json_object_get(p, "catalog");
		if (json_integer_value(json_object_get(p, "databases")))
			fprintf(out,
				"masking catalog: %lld databases, %lld table columns, %lld reads, "
				"%lld failed\n",
				json_integer_value(json_object_get(p, "databases")),
				json_integer_value(json_object_get(p, "columns")),
				json_integer_value(json_object_get(p, "reads")),
				json_integer_value(json_object_get(p, "failures")));
	} else {
		fputs("policy: none (every statement is allowed)\n", out);
	}
	p = json_object_get(j, "tls");
	if (json_is_object(p))
		fprintf(out, "tls: %lld libraries probed, %lld detached, %lld failed\n",
			json_integer_value(json_object_get(p, "libraries")),
			json_integer_value(json_object_get(p, "detached")),
			json_integer_value(json_object_get(p, "failed")));
	else
		fputs("tls: off (--no-tls)\n", out);
	fputs("kernel counters (non-zero):", out);
	json_object_foreach(json_object_get(j, "counters"), key, v) if (json_integer_value(v))
		fprintf(out, " %s=%lld", key, json_integer_value(v));
	fputc('\n', out);
	json_decref(j);
	return 0;
}
