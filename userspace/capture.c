// SPDX-License-Identifier: GPL-2.0-only
/*
 * Loader for bpf/dbwarden.bpf.c, libbpf-bootstrap style: open, set what must
 * be set before load, load, attach, with one err and goto cleanup.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "capture.h"
#include "dbwarden.skel.h"

struct capture {
	struct dbwarden_bpf *skel;
	struct ring_buffer *rb;
	int cgroup_fd;
	int socks_fd;
	int msg_attached;
	int socks_mask_fd;
	int mask_msg_attached, mask_skb_attached;
	int (*on_record)(void *ctx, const void *data, size_t size);
	void *ctx;
	struct capture_port ports[CAPTURE_MAX_PORTS];
	int nports;
};

static const char *const counter_names[DBW_CNT__MAX] = {
	[DBW_CNT_CONN_WATCHED] = "conn_watched",
	[DBW_CNT_CONN_OPEN] = "conn_open",
	[DBW_CNT_CONN_CLOSE] = "conn_close",
	[DBW_CNT_STORAGE_FAIL] = "storage_fail",
	[DBW_CNT_SOCKHASH_FAIL] = "sockhash_fail",
	[DBW_CNT_RB_FULL_OPEN] = "ringbuf_full_open",
	[DBW_CNT_RB_FULL_DATA] = "ringbuf_full_data",
	[DBW_CNT_RB_FULL_CLOSE] = "ringbuf_full_close",
	[DBW_CNT_RB_LOST_BYTES] = "ringbuf_lost_bytes",
	[DBW_CNT_PULL_FAIL] = "msg_pull_fail",
	[DBW_CNT_LOAD_FAIL] = "load_bytes_fail",
	[DBW_CNT_TRUNC_SENDS] = "oversize_sends",
	[DBW_CNT_TRUNC_BYTES] = "oversize_bytes",
	[DBW_CNT_MSG_CALLS] = "msg_calls",
	[DBW_CNT_RECV_CALLS] = "recv_calls",
	[DBW_CNT_NO_STATE] = "no_state",
	[DBW_CNT_DATA_RECORDS] = "data_records",
	[DBW_CNT_DATA_BYTES] = "data_bytes",
	[DBW_CNT_RECV_NO_BUF] = "recv_no_buffer",
	[DBW_CNT_GUARD_CHECKED] = "guard_checked",
	[DBW_CNT_GUARD_BLOCKED] = "guard_blocked",
	[DBW_CNT_GUARD_UNPARSED] = "guard_unparsed",
	[DBW_CNT_GUARD_CORKED] = "guard_corked",
	[DBW_CNT_GUARD_EARLY] = "guard_early",
	[DBW_CNT_GUARD_LOST] = "guard_lost",
	[DBW_CNT_GUARD_FAILED] = "guard_failed",
	[DBW_CNT_TLS_WRITES] = "tls_writes",
	[DBW_CNT_TLS_READS] = "tls_reads",
	[DBW_CNT_TLS_BOUND] = "tls_bound",
	[DBW_CNT_TLS_ARGS_FULL] = "tls_calls_full",
	[DBW_CNT_TLS_BLOCKED] = "tls_blocked",
	[DBW_CNT_TLS_SESS_FULL] = "tls_sessions_full",
	[DBW_CNT_EXEC_LOST] = "exec_lost",
	[DBW_CNT_MASK_CONNS] = "mask_conns",
	[DBW_CNT_MASK_SKBS] = "mask_skbs",
	[DBW_CNT_MASK_FIELDS] = "mask_fields",
	[DBW_CNT_MASK_UNMASKED] = "mask_unmasked",
	[DBW_CNT_MASK_DESYNC] = "mask_desync",
	[DBW_CNT_MASK_TLS] = "mask_tls",
	[DBW_CNT_MASK_JOIN_FAIL] = "mask_join_fail",
	[DBW_CNT_MASK_RB_FULL] = "ringbuf_full_mask",
	[DBW_CNT_MASK_OVERMASKED] = "mask_overmasked",
};

const char *capture_counter_name(int idx)
{
	if (idx < 0 || idx >= DBW_CNT__MAX)
		return NULL;
	return counter_names[idx];
}

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list args)
{
	/* the verifier log is long; show it only with LIBBPF_DEBUG set */
	if (!getenv("LIBBPF_DEBUG") && (level == LIBBPF_DEBUG || strstr(fmt, "PROG LOAD LOG")))
		return 0;
	return vfprintf(stderr, fmt, args);
}

static int ring_cb(void *ctx, void *data, size_t size)
{
	struct capture *c = ctx;

	return c->on_record(c->ctx, data, size);
}

struct capture *capture_start(const struct capture_opts *o, char *err, size_t errlen)
{
	struct capture *c = calloc(1, sizeof(*c));
	struct dbwarden_bpf *skel;
	int e, ports_fd;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->cgroup_fd = -1;
	c->on_record = o->on_record;
	c->ctx = o->ctx;
	libbpf_set_print(libbpf_log);

	skel = c->skel = dbwarden_bpf__open();
	if (!skel) {
		snprintf(err, errlen, "cannot open BPF object: %s", strerror(errno));
		goto fail;
	}
	if (o->ringbuf_bytes)
		bpf_map__set_max_entries(skel->maps.events, o->ringbuf_bytes);
	/* libbpf 1.1 reads SEC("sk_skb") as a type without an attach type */
	bpf_program__set_expected_attach_type(skel->progs.dbw_mask, BPF_SK_SKB_VERDICT);

	e = dbwarden_bpf__load(skel);
	if (e) {
		snprintf(err, errlen,
			 "cannot load BPF programs: %s (LIBBPF_DEBUG=1 shows the verifier log)",
			 strerror(-e));
		goto fail;
	}

	ports_fd = bpf_map__fd(skel->maps.ports);
	memcpy(c->ports, o->ports, sizeof(c->ports));
	c->nports = o->nports;
	for (int i = 0; i < o->nports; i++) {
		struct dbw_port_cfg cfg = { .proto = o->ports[i].proto };
		__u16 port = o->ports[i].port;

		if (bpf_map_update_elem(ports_fd, &port, &cfg, BPF_ANY)) {
			snprintf(err, errlen, "cannot configure port %u: %s", port,
				 strerror(errno));
			goto fail;
		}
	}

	if (o->on_loaded && o->on_loaded(o->ctx, c, err, errlen))
		goto fail;

	c->rb = ring_buffer__new(bpf_map__fd(skel->maps.events), ring_cb, c, NULL);
	if (!c->rb) {
		snprintf(err, errlen, "cannot open the ring buffer: %s", strerror(errno));
		goto fail;
	}

	/* Programs on the sockhash first: a socket gets the programs present when it joins. */
	c->socks_fd = bpf_map__fd(skel->maps.socks);
	if (bpf_prog_attach(bpf_program__fd(skel->progs.dbw_msg), c->socks_fd, BPF_SK_MSG_VERDICT,
			    0)) {
		snprintf(err, errlen, "cannot attach sk_msg verdict: %s", strerror(errno));
		goto fail;
	}
	c->msg_attached = 1;
	/* sockets a masking rule may select: the same sk_msg, and the masking verdict */
	c->socks_mask_fd = bpf_map__fd(skel->maps.socks_mask);
	if (bpf_prog_attach(bpf_program__fd(skel->progs.dbw_msg), c->socks_mask_fd,
			    BPF_SK_MSG_VERDICT, 0)) {
		snprintf(err, errlen, "cannot attach sk_msg verdict: %s", strerror(errno));
		goto fail;
	}
	c->mask_msg_attached = 1;
	if (bpf_prog_attach(bpf_program__fd(skel->progs.dbw_mask), c->socks_mask_fd,
			    BPF_SK_SKB_VERDICT, 0)) {
		snprintf(err, errlen, "cannot attach the masking sk_skb verdict: %s",
			 strerror(errno));
		goto fail;
	}
	c->mask_skb_attached = 1;
	skel->links.dbw_recv = bpf_program__attach(skel->progs.dbw_recv);
	if (!skel->links.dbw_recv) {
		snprintf(err, errlen, "cannot attach the sock_recv_length tracepoint: %s",
			 strerror(errno));
		goto fail;
	}

	if (o->tls) {
		/* execs first: a process started from now on is looked at for TLS libraries */
		skel->links.dbw_exec = bpf_program__attach(skel->progs.dbw_exec);
		if (!skel->links.dbw_exec) {
			snprintf(err, errlen, "cannot attach the sched_process_exec tracepoint: %s",
				 strerror(errno));
			goto fail;
		}
	}

	c->cgroup_fd = open(o->cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->cgroup_fd < 0) {
		snprintf(err, errlen, "cannot open cgroup %s: %s", o->cgroup, strerror(errno));
		goto fail;
	}
	/* links: the kernel detaches them when this process exits, whatever happens */
	skel->links.dbw_sockops = bpf_program__attach_cgroup(skel->progs.dbw_sockops, c->cgroup_fd);
	skel->links.dbw_connect4 =
		bpf_program__attach_cgroup(skel->progs.dbw_connect4, c->cgroup_fd);
	skel->links.dbw_connect6 =
		bpf_program__attach_cgroup(skel->progs.dbw_connect6, c->cgroup_fd);
	if (!skel->links.dbw_sockops || !skel->links.dbw_connect4 || !skel->links.dbw_connect6) {
		snprintf(err, errlen, "cannot attach to cgroup %s: %s", o->cgroup, strerror(errno));
		goto fail;
	}
	return c;
fail:
	capture_close(c);
	return NULL;
}

int capture_poll(struct capture *c, int timeout_ms)
{
	int n = ring_buffer__poll(c->rb, timeout_ms);

	/* records are mostly submitted without a wakeup: always drain */
	if (n >= 0) {
		int m = ring_buffer__consume(c->rb);

		n = m < 0 ? m : n + m;
	}
	return n;
}

int capture_counters(struct capture *c, uint64_t *out)
{
	int ncpu = libbpf_num_possible_cpus();
	int fd = bpf_map__fd(c->skel->maps.counters);
	uint64_t *vals;

	if (ncpu <= 0)
		return -EINVAL;
	vals = calloc(ncpu, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	for (__u32 i = 0; i < DBW_CNT__MAX; i++) {
		out[i] = 0;
		if (bpf_map_lookup_elem(fd, &i, vals))
			continue;
		for (int cpu = 0; cpu < ncpu; cpu++)
			out[i] += vals[cpu];
	}
	free(vals);
	return 0;
}

int capture_guard_load(struct capture *c, const struct capture_guard *g)
{
	struct dbwarden_bpf *skel = c->skel;
	int rules_fd = bpf_map__fd(skel->maps.guard_rules);
	int text_fd = bpf_map__fd(skel->maps.guard_text);
	int ports_fd = bpf_map__fd(skel->maps.ports);
	__u32 zero = 0;

	if (g->nrules > DBW_GUARD_RULES)
		return -E2BIG;
	/* rules and texts before the switch: a send sees old or new, whole */
	for (__u32 i = 0; i < DBW_GUARD_RULES; i++) {
		struct dbw_guard_rule none = {};

		if (bpf_map_update_elem(rules_fd, &i, i < g->nrules ? &g->rules[i] : &none,
					BPF_ANY))
			return -errno;
	}
	for (__u32 i = 0; i <= DBW_GUARD_RULES; i++) {
		const struct dbw_guard_text *t = i == DBW_GUARD_UNPARSED ? &g->unparsed_text :
						 i < g->nrules		 ? &g->texts[i] :
									   &g->unparsed_text;

		if (bpf_map_update_elem(text_fd, &i, t, BPF_ANY))
			return -errno;
	}
	for (int i = 0; i < c->nports; i++) {
		struct dbw_port_cfg cfg = {
			.proto = c->ports[i].proto,
			.rules = g->port_rules ? g->port_rules[i] : 0,
			.mask_rules = g->port_mask_rules ? g->port_mask_rules[i] : 0,
		};

		if (bpf_map_update_elem(ports_fd, &c->ports[i].port, &cfg, BPF_ANY))
			return -errno;
	}
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.guard_cfg), &zero, &g->cfg, BPF_ANY))
		return -errno;
	return 0;
}

/* Make hash map fd hold exactly keys[i] -> vals[i] (u64 or u32 keys, u32 values). */
static int map_sync(int fd, const void *keys, size_t ksize, const uint32_t *vals, unsigned n)
{
	__u64 key = 0, next = 0;

	for (unsigned i = 0; i < n; i++)
		if (bpf_map_update_elem(fd, (const char *)keys + i * ksize, &vals[i], BPF_ANY))
			return -errno;
	for (int more = !bpf_map_get_next_key(fd, NULL, &key); more; key = next) {
		unsigned i;

		more = !bpf_map_get_next_key(fd, &key, &next);
		for (i = 0; i < n && memcmp((const char *)keys + i * ksize, &key, ksize); i++)
			;
		if (i == n)
			bpf_map_delete_elem(fd, &key);
	}
	return 0;
}

int capture_mask_load(struct capture *c, const struct capture_mask *m)
{
	struct dbwarden_bpf *skel = c->skel;
	static __u32 gen;
	struct dbw_mask_cfg cfg = { .nrules = m->nrules, .uid_free = m->uid_free, .gen = ++gen };
	__u32 zero = 0;
	int e;

	if (m->nrules > DBW_MASK_RULES)
		return -E2BIG;
	memcpy(cfg.rules, m->rules, m->nrules * sizeof(*m->rules));
	/* the new sets in, then what they lack out */
	e = map_sync(bpf_map__fd(skel->maps.mask_cols), m->col_hash, sizeof(__u64), m->col_rules,
		     m->ncols);
	if (!e)
		e = map_sync(bpf_map__fd(skel->maps.mask_uid), m->uids, sizeof(__u32), m->uid_rules,
			     m->nuids);
	if (e)
		return e;
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.mask_cfg), &zero, &cfg, BPF_ANY))
		return -errno;
	return 0;
}

int capture_mask_conns(struct capture *c, uint64_t *ids, uint32_t *rules, int max)
{
	int state_fd = bpf_map__fd(c->skel->maps.mask_state);
	int conn_fd = bpf_map__fd(c->skel->maps.mask_conn);
	__u64 key, prev;
	int n = 0;

	while (n < max && !bpf_map_get_next_key(state_fd, n ? &prev : NULL, &key)) {
		__u32 r;

		ids[n] = key;
		rules[n] = bpf_map_lookup_elem(conn_fd, &key, &r) ? ~0u : r;
		n++;
		prev = key;
	}
	return n;
}

int capture_mask_conn(struct capture *c, uint64_t conn_id, uint32_t rules)
{
	__u64 key = conn_id;
	__u32 val = rules;

	return bpf_map_update_elem(bpf_map__fd(c->skel->maps.mask_conn), &key, &val, BPF_ANY) ?
		       -errno :
		       0;
}

int capture_approve(struct capture *c, const struct dbw_approval_key *k, uint64_t until_mono_ns)
{
	__u64 v = until_mono_ns;

	return bpf_map_update_elem(bpf_map__fd(c->skel->maps.approvals), k, &v, BPF_ANY) ? -errno :
											   0;
}

struct bpf_link *capture_tls_probe(struct capture *c, const char *path, size_t offset, int probe,
				   bool ret, uint64_t cookie)
{
	struct dbwarden_bpf *skel = c->skel;
	LIBBPF_OPTS(bpf_uprobe_opts, o, .retprobe = ret, .bpf_cookie = cookie);
	struct bpf_program *p;

	if (probe == DBW_TLS_PROBE_WRITE)
		p = ret ? skel->progs.dbw_tls_write_ret : skel->progs.dbw_tls_write;
	else if (probe == DBW_TLS_PROBE_READ)
		p = ret ? skel->progs.dbw_tls_read_ret : skel->progs.dbw_tls_read;
	else
		p = ret ? skel->progs.dbw_tls_handshake_ret : skel->progs.dbw_tls_handshake;
	/* pid -1: every process mapping this file, now and later */
	return bpf_program__attach_uprobe_opts(p, -1, path, offset, &o);
}

int capture_prog_stats(struct capture *c, struct capture_prog_stat *out, int max)
{
	struct bpf_program *p;
	int n = 0;

	bpf_object__for_each_program(p, c->skel->obj)
	{
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		if (n == max)
			break;
		if (bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len))
			continue;
		snprintf(out[n].name, sizeof(out[n].name), "%s", bpf_program__name(p));
		out[n].id = info.id;
		out[n].run_cnt = info.run_cnt;
		out[n].run_time_ns = info.run_time_ns;
		n++;
	}
	return n;
}

int capture_conn_rules(struct capture *c, uint64_t conn_id, uint64_t rules)
{
	__u64 key = conn_id, val = rules;

	return bpf_map_update_elem(bpf_map__fd(c->skel->maps.conn_rules), &key, &val, BPF_ANY) ?
		       -errno :
		       0;
}

int capture_workload_set(struct capture *c, uint64_t cgroup_id, uint64_t rules, uint32_t mask_rules)
{
	struct dbw_workload_class wc = { .rules = rules, .mask_rules = mask_rules };
	__u64 key = cgroup_id;

	return bpf_map_update_elem(bpf_map__fd(c->skel->maps.workload_class), &key, &wc, BPF_ANY) ?
		       -errno :
		       0;
}

int capture_workload_del(struct capture *c, uint64_t cgroup_id)
{
	__u64 key = cgroup_id;

	return bpf_map_delete_elem(bpf_map__fd(c->skel->maps.workload_class), &key) ? -errno : 0;
}

void capture_stop_new(struct capture *c)
{
	struct dbwarden_bpf *skel = c->skel;

	if (!skel)
		return;
	bpf_link__destroy(skel->links.dbw_exec);
	skel->links.dbw_exec = NULL;
	bpf_link__destroy(skel->links.dbw_connect4);
	bpf_link__destroy(skel->links.dbw_connect6);
	bpf_link__destroy(skel->links.dbw_sockops);
	skel->links.dbw_connect4 = skel->links.dbw_connect6 = skel->links.dbw_sockops = NULL;
}

void capture_close(struct capture *c)
{
	if (!c)
		return;
	if (c->skel) {
		capture_stop_new(c);
		if (c->rb)
			ring_buffer__consume(c->rb);
		/*
		 * Detaching the verdict and then freeing the map takes every
		 * socket out of it: they return to the plain TCP paths.
		 */
		if (c->msg_attached)
			bpf_prog_detach2(bpf_program__fd(c->skel->progs.dbw_msg), c->socks_fd,
					 BPF_SK_MSG_VERDICT);
		if (c->mask_msg_attached)
			bpf_prog_detach2(bpf_program__fd(c->skel->progs.dbw_msg), c->socks_mask_fd,
					 BPF_SK_MSG_VERDICT);
		if (c->mask_skb_attached)
			bpf_prog_detach2(bpf_program__fd(c->skel->progs.dbw_mask), c->socks_mask_fd,
					 BPF_SK_SKB_VERDICT);
	}
	ring_buffer__free(c->rb);
	dbwarden_bpf__destroy(c->skel);
	if (c->cgroup_fd >= 0)
		close(c->cgroup_fd);
	free(c);
}
