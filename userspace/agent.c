// SPDX-License-Identifier: GPL-2.0-only
/*
 * The daemon's main loop: load, attach, turn ring buffer records into
 * events, turn counter increases into loss events, and on SIGINT/SIGTERM
 * drain, detach and exit 0.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#include "agent.h"
#include "analyze.h"
#include "conn.h"
#include "event.h"
#include "guard.h"
#include "identity.h"
#include "sys.h"
#include "metrics.h"
#include "status.h"
#include "tls.h"
#include "log.h"

/*
 * How long a record may wait in the ring buffer before the daemon drains
 * it: the kernel wakes the daemon only for large batches (see maps.bpf.h).
 */
#define DBW_DRAIN_MS 10
/* Heartbeat period: far below DBW_AGENT_STALE_NS, so a busy loop never looks dead. */
#define DBW_HEARTBEAT_MS 250
/* A pinned daemon's stop: how long it waits for answers to statements it saw sent. */
#define DBW_HANDOVER_MS 500

static volatile sig_atomic_t stop_requested, reload_requested;

static void on_signal(int sig)
{
	stop_requested = sig;
}

static void on_hup(int sig)
{
	reload_requested = 1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Kernel counters whose increase means something was not captured. */
static const struct {
	int idx;
	const char *reason;
} loss_counters[] = {
	{ DBW_CNT_RB_FULL_OPEN, "ringbuf_full" },
	{ DBW_CNT_RB_FULL_DATA, "ringbuf_full" },
	{ DBW_CNT_RB_FULL_CLOSE, "ringbuf_full" },
	{ DBW_CNT_PULL_FAIL, "msg_pull_failed" },
	{ DBW_CNT_LOAD_FAIL, "copy_failed" },
	{ DBW_CNT_STORAGE_FAIL, "connection_not_watched" },
	{ DBW_CNT_SOCKHASH_FAIL, "connection_not_watched" },
	{ DBW_CNT_DOWN_TLS_WRITES, "agent_down_tls" },
};

/*
 * Compare the kernel counters with the last reading and emit one `loss`
 * event per counter that grew (count = the increase), and a log line.
 */
static void check_counters(struct capture *cap, struct emitter *em, uint64_t *last)
{
	uint64_t now[DBW_CNT__MAX];

	if (capture_counters(cap, now))
		return;
	for (size_t i = 0; i < sizeof(loss_counters) / sizeof(loss_counters[0]); i++) {
		int k = loss_counters[i].idx;
		json_t *ev;

		if (now[k] <= last[k])
			continue;
		log_warn("loss: %s +%llu", capture_counter_name(k),
			 (unsigned long long)(now[k] - last[k]));
		ev = event_new(em, "loss", 0);
		if (ev)
			json_object_set_new(ev, "loss",
					    json_pack("{s:s, s:s, s:I}", "reason",
						      loss_counters[i].reason, "counter",
						      capture_counter_name(k), "count",
						      (json_int_t)(now[k] - last[k])));
		event_emit(em, ev);
	}
	memcpy(last, now, sizeof(now));
}

/*
 * Stopping: the masking verdict leaves every socket with the programs, so
 * a masked connection would go on unmasked (and the bytes queued for its
 * client would be purged). Reset those whose rules say on_unmaskable:
 * block; the others go on, as their rules allow.
 */
static void reset_masked(struct capture *cap, struct conn_table *conns, struct guard *g)
{
	static uint64_t ids[65536];
	static uint32_t rules[65536];
	int n = capture_mask_conns(cap, ids, rules, 65536);

	uint32_t srv;

	for (int i = 0; i < n; i++)
		if (rules[i] && !guard_mask_allows_unmaskable(g, rules[i]))
			conns_reset(conns, ids[i],
				    "agent stopping: its results could no longer be masked");
	/* a local server's: their db users are the kernel's, any block rule counts */
	n = capture_mask_srv_conns(cap, ids, 65536, &srv);
	if (n > 0 && !guard_mask_allows_unmaskable(g, srv))
		conns_reset_server(conns, ids, n);
}

static void print_summary(struct capture *cap, struct conn_table *conns, struct emitter *em,
			  const struct guard *g, const struct tls *tls)
{
	uint64_t cnt[DBW_CNT__MAX], missed = 0;
	struct conn_stats st;
	char line[4096] = "";
	size_t n = 0;

	if (!log_enabled(DBW_LOG_INFO))
		return;

	conns_stats(conns, &st);
	log_info("events %llu (write errors %llu), connections %llu, statements %llu, "
		 "unparsed %llu, gaps %llu (%llu bytes), bad records %llu, evicted %llu",
		 (unsigned long long)emitter_seq(em), (unsigned long long)emitter_errors(em),
		 (unsigned long long)st.opened, (unsigned long long)st.statements,
		 (unsigned long long)st.unparsed, (unsigned long long)st.gaps,
		 (unsigned long long)st.gap_bytes, (unsigned long long)st.bad_records,
		 (unsigned long long)st.evicted);
	if (g) {
		guard_stats(g, &missed);
		/* the two ways the kernel lexer and the exact parse can differ */
		log_info("guard: verdicts %llu, resets %llu, kernel blocks not confirmed "
			 "%llu, statements the kernel missed %llu",
			 (unsigned long long)st.verdicts, (unsigned long long)st.resets,
			 (unsigned long long)st.mismatches, (unsigned long long)missed);
		guard_log_classes(g);
	}
	if (tls) {
		struct tls_stats ts;

		tls_stats(tls, &ts);
		log_info("tls: libraries probed %llu (in total %llu, detached %llu, "
			 "failed %llu), process scans %llu, exec rescans dropped %llu",
			 (unsigned long long)ts.libraries, (unsigned long long)ts.attached,
			 (unsigned long long)ts.detached, (unsigned long long)ts.failed,
			 (unsigned long long)ts.scans, (unsigned long long)ts.pending_full);
	}
	if (!cap || capture_counters(cap, cnt))
		return;
	for (int i = 0; i < DBW_CNT__MAX; i++)
		if (capture_counter_name(i) && n < sizeof(line))
			n += snprintf(line + n, sizeof(line) - n, " %s=%llu",
				      capture_counter_name(i), (unsigned long long)cnt[i]);
	log_info("kernel counters:%s", line);
}

struct record_ctx {
	struct conn_table *conns;
	FILE *record; /* --record: raw records, each prefixed by its u32 size */
	uint64_t record_errors;
	/* the guard, installed between load and attach */
	const struct agent_opts *o;
	struct emitter *em;
	struct guard *guard;
	struct tls *tls;
	struct identity *id;
	uint16_t ports[CAPTURE_MAX_PORTS];
};

/* capture_opts.on_loaded: put the policy in before any connection is watched. */
static int install_policy(void *ctx, struct capture *cap, char *err, size_t errlen)
{
	struct record_ctx *rc = ctx;
	struct conn_guard_ops ops = {};

	if (rc->o->tls) {
		/* TLS libraries probed before any connection is watched, like the policy */
		rc->tls = tls_new(cap);
		if (!rc->tls) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	if (!rc->o->policy)
		return 0;
	rc->guard = guard_new(cap, rc->em, rc->o->policy, rc->ports, rc->o->nports, err, errlen);
	if (!rc->guard)
		return -1;
	if (guard_api_open(rc->guard, rc->o->api ? rc->o->api : DBW_API_DEFAULT, err, errlen))
		return -1;
	guard_ops(rc->guard, &ops);
	conns_set_guard(rc->conns, &ops);
	guard_set_identity(rc->guard, rc->id);
	return 0;
}

static int record_cb(void *ctx, const void *data, size_t size)
{
	struct record_ctx *rc = ctx;
	const struct dbw_rec_hdr *h = data;

	if (rc->record) {
		uint32_t n = size;

		if (fwrite(&n, sizeof(n), 1, rc->record) != 1 ||
		    fwrite(data, size, 1, rc->record) != 1)
			rc->record_errors++;
	}
	if (rc->tls && size >= sizeof(struct dbw_rec_exec) && h->type == DBW_REC_EXEC)
		tls_on_exec(rc->tls, ((const struct dbw_rec_exec *)data)->pid);
	else if (rc->tls && size >= sizeof(struct dbw_rec_conn_open) &&
		 h->type == DBW_REC_CONN_OPEN)
		tls_on_connect(rc->tls, ((const struct dbw_rec_conn_open *)data)->who.pid);
	return conns_record(rc->conns, data, size);
}

/*
 * Feed a recording made with --record through the whole userspace pipeline
 * (reassembly, parse, stitch, analysis, serialisation) repeat times, and
 * report the rate. No kernel involved: this measures userspace alone.
 */
int agent_replay(const char *path, unsigned repeat, const struct output_opts *out,
		 const char *policy)
{
	char err[4096];
	struct guard *g = NULL;
	struct conn_guard_ops ops = {};
	struct emitter *em = emitter_open(out, err, sizeof(err));
	struct identity *id = identity_new(NULL);
	struct sql_analyzer *an = sql_analyzer_new(0);
	struct conn_table *conns = NULL;
	struct conn_stats st;
	struct timespec t0, t1;
	uint64_t records = 0;
	size_t len = 0, cap = 0;
	uint8_t *buf = NULL;
	double secs;
	int rc = 1;
	FILE *f;

	if (!em) {
		log_error("%s", err);
		goto out;
	}
	conns = id && an ? conns_new(em, id, an, 0) : NULL;
	if (conns && policy) {
		/* the userspace half of the guard: every statement evaluated */
		g = guard_new(NULL, em, policy, NULL, 0, err, sizeof(err));
		if (!g) {
			log_error("%s", err);
			goto out;
		}
		guard_ops(g, &ops);
		conns_set_guard(conns, &ops);
	}
	f = fopen(path, "r");
	if (!conns || !f) {
		log_error("replay: cannot open %s", path);
		if (f)
			fclose(f);
		goto out;
	}
	/* load the recording once, then time only the pipeline */
	for (;;) {
		uint32_t n;

		if (fread(&n, sizeof(n), 1, f) != 1)
			break;
		if (len + sizeof(n) + n > cap) {
			size_t ncap = cap ? cap * 2 : 1 << 20;
			uint8_t *nb;

			while (ncap < len + sizeof(n) + n)
				ncap *= 2;
			nb = realloc(buf, ncap);
			if (!nb)
				break;
			buf = nb;
			cap = ncap;
		}
		memcpy(buf + len, &n, sizeof(n));
		if (fread(buf + len + sizeof(n), n, 1, f) != 1)
			break;
		len += sizeof(n) + n;
	}
	fclose(f);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned r = 0; r < repeat; r++) {
		for (size_t off = 0; off + sizeof(uint32_t) <= len;) {
			uint32_t n;

			memcpy(&n, buf + off, sizeof(n));
			conns_record(conns, buf + off + sizeof(n), n);
			off += sizeof(n) + n;
			records++;
		}
	}
	conns_flush_all(conns);
	emitter_flush(em);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	conns_stats(conns, &st);
	fprintf(stderr, "replay: records %llu statements %llu seconds %.3f stmts_per_s %.0f\n",
		(unsigned long long)records, (unsigned long long)st.statements, secs,
		secs > 0 ? st.statements / secs : 0.0);
	rc = 0;
out:
	free(buf);
	conns_free(conns);
	guard_free(g);
	sql_analyzer_free(an);
	identity_free(id);
	emitter_free(em);
	return rc;
}

int agent_run(const struct agent_opts *o)
{
	char err[4096], mount[PATH_MAX], cgroup[PATH_MAX], outputs[1024];
	char watching[CAPTURE_MAX_PORTS * 6 + 1] = "";
	struct capture_opts co = { 0 };
	struct emitter *em = NULL;
	struct identity *id = NULL;
	struct sql_analyzer *an = NULL;
	struct conn_table *conns = NULL;
	struct capture *cap = NULL;
	struct record_ctx rctx = { 0 };
	struct agent_view view = { .o = o, .started_unix = time(NULL) };
	struct metrics_src msrc = { .ctx = &view,
				    .prometheus = status_prometheus,
				    .status = status_json };
	struct metrics *metrics = NULL;
	uint64_t last[DBW_CNT__MAX] = { 0 }, last_check, last_beat = 0;
	struct sigaction sa = { .sa_handler = on_signal };
	struct stat sb;
	int rc = 1, e;

	if (sys_check_privileges(err, sizeof(err))) {
		log_error("%s", err);
		return 1;
	}
	e = sys_mount_bpffs();
	if (e)
		log_warn("cannot mount bpffs at /sys/fs/bpf: %s", strerror(-e));
	if (sys_cgroup2_mount(mount, sizeof(mount))) {
		log_error("no cgroup v2 hierarchy is mounted");
		return 1;
	}
	if (!o->cgroup)
		snprintf(cgroup, sizeof(cgroup), "%s", mount);
	else if (!strncmp(o->cgroup, mount, strlen(mount)))
		snprintf(cgroup, sizeof(cgroup), "%s", o->cgroup);
	else
		/* a path inside the hierarchy, as /proc/PID/cgroup shows it */
		snprintf(cgroup, sizeof(cgroup), "%s/%s", mount,
			 o->cgroup[0] == '/' ? o->cgroup + 1 : o->cgroup);
	if (stat(cgroup, &sb) || !S_ISDIR(sb.st_mode)) {
		log_error("--cgroup: %s is not a cgroup v2 directory", cgroup);
		return 1;
	}

	em = emitter_open(&o->out, err, sizeof(err));
	if (!em) {
		log_error("%s", err);
		return 1;
	}
	if (o->metrics) {
		/* before the programs: the liveness probe answers while they load */
		metrics = metrics_open(o->metrics, err, sizeof(err));
		if (!metrics) {
			log_error("%s", err);
			emitter_free(em);
			return 1;
		}
	}
	id = identity_new(mount);
	an = sql_analyzer_new(0);
	conns = id && an ? conns_new(em, id, an, o->max_conns) : NULL;
	if (!conns) {
		log_error("out of memory");
		goto out;
	}
	{
		uint8_t protos[CAPTURE_MAX_PORTS];

		_Static_assert(CONN_MAX_PORTS >= CAPTURE_MAX_PORTS, "every watched port");
		for (int i = 0; i < o->nports; i++) {
			protos[i] = o->ports[i].proto;
			rctx.ports[i] = o->ports[i].port;
		}
		conns_set_ports(conns, rctx.ports, protos, o->nports);
	}
	if (identity_k8s_start(id, &o->k8s, em, err, sizeof(err))) {
		log_error("%s", err);
		goto out;
	}

	co.cgroup = cgroup;
	memcpy(co.ports, o->ports, sizeof(co.ports));
	co.nports = o->nports;
	co.ringbuf_bytes = o->ringbuf_bytes;
	co.tls = o->tls;
	co.pin_dir = o->pin_dir;
	co.fail_closed = o->fail_closed;
	rctx.conns = conns;
	if (o->record) {
		rctx.record = fopen(o->record, "we");
		if (!rctx.record) {
			log_error("--record %s: %s", o->record, strerror(errno));
			goto out;
		}
	}
	co.on_record = record_cb;
	co.on_loaded = install_policy;
	co.ctx = &rctx;
	rctx.o = o;
	rctx.em = em;
	rctx.id = id;

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGCHLD, SIG_IGN); /* webhook posts run in children nobody waits for */
	signal(SIGPIPE, SIG_IGN);

	cap = capture_start(&co, err, sizeof(err));
	if (!cap) {
		/* a policy's errors: one line each, each prefixed */
		log_error("%s", err);
		goto out;
	}
	if (capture_adopted(cap, last)) {
		/* counters from where the predecessor reported them; streams mid-way */
		conns_set_resuming(conns);
		log_info("adopted the programs pinned in %s: they kept enforcing; "
			 "draining what they buffered",
			 capture_pin_dir(cap));
	}
	/* the detectors compiled now, not under the first statement */
	conns_masking_ready(conns);
	view.cgroup = cgroup;
	view.cap = cap;
	view.conns = conns;
	view.em = em;
	view.guard = rctx.guard;
	view.tls = rctx.tls;
	msrc.ready = true;
	for (int i = 0, n = 0; i < o->nports; i++)
		n += snprintf(watching + n, sizeof(watching) - n, " %u", o->ports[i].port);
	output_describe(&o->out, outputs, sizeof(outputs));
	log_info("ready: watching%s under %s, output %s", watching, cgroup, outputs);

	last_check = now_ms();
	while (!stop_requested) {
		e = capture_poll(cap, DBW_DRAIN_MS);
		if (e < 0 && e != -EINTR) {
			log_error("ring buffer poll failed: %s", strerror(-e));
			goto out;
		}
		if (rctx.guard)
			guard_api_poll(rctx.guard);
		if (metrics)
			metrics_poll(metrics, &msrc);
		if (identity_poll(id))
			conns_identity_refresh(conns);
		if (rctx.guard)
			guard_tick(rctx.guard);
		if (reload_requested) {
			reload_requested = 0;
			if (rctx.guard)
				guard_reload(rctx.guard, rctx.ports, o->nports, conns);
			else
				log_warn("SIGHUP: no --policy to read again");
		}
		emitter_flush(em);
		/* out of the process: a successor need not read those records again */
		capture_commit(cap);
		tls_tick(rctx.tls);
		if (now_ms() - last_beat >= DBW_HEARTBEAT_MS) {
			capture_heartbeat(cap, last);
			last_beat = now_ms();
		}
		if (now_ms() - last_check >= 1000) {
			check_counters(cap, em, last);
			last_check = now_ms();
		}
	}
	log_debug("signal %d, draining", (int)stop_requested);
	/* no new connections; deliver every record already in the ring */
	capture_stop_new(cap);
	if (capture_pin_dir(cap)) {
		/* the kernel goes on: wait a little for the answers still due, the rest is
		 * the successor's (it counts statements whose request it never saw) */
		uint64_t until = now_ms() + DBW_HANDOVER_MS;

		while (capture_poll(cap, DBW_DRAIN_MS) >= 0 && conns_pending(conns) &&
		       now_ms() < until)
			emitter_flush(em);
	} else {
		while (capture_poll(cap, 0) > 0)
			;
	}
	check_counters(cap, em, last);
	if (!capture_pin_dir(cap)) {
		conns_flush_all(conns);
		/* the masking programs go with this process: their connections cannot stay */
		if (rctx.guard)
			reset_masked(cap, conns, rctx.guard);
	}
	capture_heartbeat(cap, last); /* all reported: a successor starts from here */
	emitter_flush(em);
	capture_commit(cap);
	if (capture_pin_dir(cap))
		log_info("the programs stay pinned in %s and keep enforcing the last "
			 "policy; `dbwarden stop --unpin` removes them",
			 capture_pin_dir(cap));
	rc = 0;
out:
	if (conns) {
		print_summary(cap, conns, em, rctx.guard, rctx.tls);
		identity_log_summary(id);
	}
	metrics_close(metrics);
	tls_free(rctx.tls);
	capture_close(cap);
	if (rctx.record) {
		if (fclose(rctx.record) || rctx.record_errors)
			log_error("--record: write errors");
	}
	conns_free(conns);
	guard_free(rctx.guard);
	sql_analyzer_free(an);
	identity_free(id);
	emitter_free(em);
	return rc;
}
