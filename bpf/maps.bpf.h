/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Maps shared by every dbwarden BPF program. BPF-only header.
 */
#ifndef DBW_MAPS_BPF_H
#define DBW_MAPS_BPF_H

#include "dbwarden_abi.h"

/* Per-socket state from connect() to close: identity, conn id, stream offsets. */
#define AF_INET	    2
#define AF_INET6    10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct dbw_sk_state);
} sk_state SEC(".maps");

/*
 * Established watched connections, keyed by conn id (the socket cookie):
 * being in this map is what makes sk_msg and sk_skb run for a socket, and the
 * key lets a later sk_msg verdict redirect an in-protocol reply to the same
 * socket (sk_msg cannot call bpf_get_socket_cookie; it reads the id from
 * sk_storage).
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} socks SEC(".maps");

/*
 * Receive-side offset per connection, keyed by the socket cookie: the
 * receive hook is a raw tracepoint, which cannot use sk_storage but can read
 * the cookie off the socket.
 */
struct dbw_rx_state {
	__u64 off;
	__u64 tls; /* a TLS session reads through it: the bytes are ciphertext */
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct dbw_rx_state);
} rx_state SEC(".maps");

/*
 * conn_id -> elements of the current Redis command the guard has not
 * walked yet (a command spanning sends; resp.bpf.h). Deleted at close.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u32);
} resp_walk SEC(".maps");

/* Watched server ports (host order) -> protocol. Filled by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, struct dbw_port_cfg);
} ports SEC(".maps");

/*
 * The rules of each connection, computed by userspace from everything it
 * knows (target, database, db_user, the actor's identity), keyed by conn id.
 * Until it is there the port's rule set applies (dbw_sk_state.rules):
 * stricter, never looser. Used by guard.bpf.h, cleared at close.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} conn_rules SEC(".maps");

/*
 * Workload classes (see the ABI header): cgroup id -> the rules that apply
 * to its processes, written by userspace as cgroups and pods come and go;
 * key DBW_WORKLOAD_ANY for a cgroup not classified yet.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct dbw_workload_class);
} workload_class SEC(".maps");

/* The rules a workload class allows for processes of cgroup cgid; all without a policy. */
static __always_inline __u64 workload_rules(__u64 cgid)
{
	struct dbw_workload_class *wc = bpf_map_lookup_elem(&workload_class, &cgid);
	__u64 any = DBW_WORKLOAD_ANY;

	if (!wc)
		wc = bpf_map_lookup_elem(&workload_class, &any);
	return wc ? wc->rules : ~0ULL;
}

/* All records to userspace; size set by the loader before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DBW_CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Count an event; every failure path in the programs goes through here. */
static __always_inline void cnt_add(__u32 idx, __u64 v)
{
	__u64 *p = bpf_map_lookup_elem(&counters, &idx);

	/* a softirq program may interrupt a process-context one on this CPU */
	if (p)
		__sync_fetch_and_add(p, v);
}

/* The daemon's heartbeat and --fail-mode (struct dbw_agent_meta). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dbw_agent_meta);
} agent_meta SEC(".maps");

/*
 * Is no daemon attached (its heartbeat stale or a clean stop), with
 * --fail-mode closed? Then statements to connections with rules are
 * refused: nothing could audit or approve them. *down says whether the
 * daemon is gone at all, whatever the mode.
 */
static __always_inline int agent_fail_closed(int *down)
{
	__u32 zero = 0;
	struct dbw_agent_meta *m = bpf_map_lookup_elem(&agent_meta, &zero);

	*down = m &&
		(!m->heartbeat_ns || bpf_ktime_get_ns() - m->heartbeat_ns > DBW_AGENT_STALE_NS);
	return *down && m->fail_closed;
}

/*
 * Wake the daemon only once a batch has built up. A wakeup per record costs
 * a context switch per statement on the client's CPU (measured: a third of
 * pgbench's select-only TPS on 2 cores); the daemon also drains on a short
 * timer, so a lone record waits at most that long.
 */
#define DBW_WAKEUP_BYTES (256 << 10)

static __always_inline __u64 rb_submit_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= DBW_WAKEUP_BYTES ?
		       BPF_RB_FORCE_WAKEUP :
		       BPF_RB_NO_WAKEUP;
}

static __always_inline void rec_hdr_init(struct dbw_rec_hdr *h, __u16 type, __u32 size,
					 __u64 conn_id)
{
	h->version = DBW_ABI_VERSION;
	h->type = type;
	h->size = size;
	h->conn_id = conn_id;
	h->ts_ns = bpf_ktime_get_ns();
}

/* One FNV-1a step: the hash both sides compute over names and shapes. */
static __always_inline __u64 fnv(__u64 h, __u8 c)
{
	return (h ^ c) * DBW_FNV_PRIME;
}

/*
 * The socket's write_seq: the sequence number just past the last byte a
 * send queued. Whatever path a byte takes into the socket, it moves this;
 * comparing it with where our own programs left it tells bytes they never
 * saw. 0, or -1 when sk is not a TCP socket.
 */
static __always_inline int sk_write_seq(struct bpf_sock *sk, __u32 *seq)
{
	struct tcp_sock *tp = sk ? bpf_skc_to_tcp_sock(sk) : NULL;

	if (!tp)
		return -1;
	*seq = tp->write_seq;
	return 0;
}

#endif /* DBW_MAPS_BPF_H */
