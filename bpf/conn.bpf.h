/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Connection tracking: which TCP connections are watched, who opened them,
 * and their open/close records. BPF-only header.
 *
 * Identity is taken in cgroup/connect4/6, which runs in the connecting task
 * (sockops ESTABLISHED runs in softirq for active opens: the "current" task
 * there is whoever the interrupt landed on). The socket joins the sockhash at
 * ESTABLISHED, the first moment it can.
 */
#ifndef DBW_CONN_BPF_H
#define DBW_CONN_BPF_H

#include "maps.bpf.h"
#include "mask.bpf.h"
#include "tls.bpf.h"

/*
 * connect() from the task: if the destination port is watched, create the
 * socket's state with the caller's identity. Returns the hook's verdict:
 * refused (0: the caller gets EPERM) only under --fail-mode closed while no
 * daemon runs, to a port the policy has rules for (nothing could audit the
 * connection's statements, and a TLS write cannot be refused in-protocol).
 */
static __always_inline int conn_on_connect(struct bpf_sock_addr *ctx)
{
	struct dbw_port_cfg *cfg;
	struct dbw_sk_state *st;
	struct bpf_sock *sk;
	__u16 port;
	__u64 id;
	int down;

	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;
	port = bpf_ntohs((__u16)ctx->user_port);
	cfg = bpf_map_lookup_elem(&ports, &port);
	if (!cfg)
		return 1;
	if (cfg->rules && agent_fail_closed(&down)) {
		cnt_add(DBW_CNT_DOWN_BLOCKED, 1);
		return 0;
	}
	cnt_add(DBW_CNT_CONN_WATCHED, 1);
	sk = ctx->sk;
	if (!sk)
		return 1;
	st = bpf_sk_storage_get(&sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		cnt_add(DBW_CNT_STORAGE_FAIL, 1);
		return 1;
	}
	id = bpf_get_current_pid_tgid();
	st->conn_id = bpf_get_socket_cookie(ctx);
	st->off[DBW_DIR_TO_SERVER] = 0;
	st->off[DBW_DIR_TO_CLIENT] = 0;
	st->who.pid = id >> 32;
	st->who.tid = (__u32)id;
	id = bpf_get_current_uid_gid();
	st->who.uid = (__u32)id;
	st->who.gid = id >> 32;
	st->who.cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(st->who.comm, sizeof(st->who.comm));
	st->proto = cfg->proto;
	st->established = 0;
	st->phase = DBW_PG_STARTUP;
	st->msg_left = 0;
	st->rules = cfg->rules;
	st->tls = DBW_TLS_NONE;
	st->tls_ssl = 0;
	st->mask_rules = mask_candidates(cfg, st->who.cgroup_id, st->who.uid);
	/* its TLS writes, if any, bind their session to a watched socket */
	tls_mark_proc(st->who.pid);
	return 1;
}

/* Our state of a sockops socket, or NULL when it is not a watched connection. */
static __always_inline struct dbw_sk_state *skops_state(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;

	return sk ? bpf_sk_storage_get(&sk_state, sk, 0, 0) : NULL;
}

/*
 * Active open completed (softirq): put the socket in the sockhash so that
 * sk_msg/sk_skb see its bytes, ask for state callbacks (to see the close),
 * and emit CONN_OPEN with the 4-tuple. A socket without our state (not a
 * watched connect) is left alone.
 */
/*
 * CONN_OPEN for st, its addresses read from ctx (a bpf_sock_ops or an
 * sk_msg_md: the same field names). A macro because the two context types
 * differ; the record is what userspace learns the connection's actor and
 * tuple from.
 */
#define conn_announce(st, ctx, fl)                                                               \
	({                                                                                       \
		struct dbw_rec_conn_open *rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);   \
		if (!rec) {                                                                      \
			/* userspace learns the connection from its first DATA record */         \
			cnt_add(DBW_CNT_RB_FULL_OPEN, 1);                                        \
		} else {                                                                         \
			rec_hdr_init(&rec->hdr, DBW_REC_CONN_OPEN, sizeof(*rec), (st)->conn_id); \
			rec->who = (st)->who;                                                    \
			rec->family = (ctx)->family;                                             \
			rec->proto = (st)->proto;                                                \
			rec->flags = (fl);                                                       \
			rec->client_port = (__u16)(ctx)->local_port;                             \
			rec->server_port = (__u16)bpf_ntohl((ctx)->remote_port);                 \
			__builtin_memset(rec->client_addr, 0, 16);                               \
			__builtin_memset(rec->server_addr, 0, 16);                               \
			if ((ctx)->family == AF_INET) {                                          \
				__u32 l = (ctx)->local_ip4, r = (ctx)->remote_ip4;               \
				__builtin_memcpy(rec->client_addr, &l, 4);                       \
				__builtin_memcpy(rec->server_addr, &r, 4);                       \
			} else {                                                                 \
				__u32 l[4], r[4];                                                \
				l[0] = (ctx)->local_ip6[0];                                      \
				l[1] = (ctx)->local_ip6[1];                                      \
				l[2] = (ctx)->local_ip6[2];                                      \
				l[3] = (ctx)->local_ip6[3];                                      \
				r[0] = (ctx)->remote_ip6[0];                                     \
				r[1] = (ctx)->remote_ip6[1];                                     \
				r[2] = (ctx)->remote_ip6[2];                                     \
				r[3] = (ctx)->remote_ip6[3];                                     \
				__builtin_memcpy(rec->client_addr, l, 16);                       \
				__builtin_memcpy(rec->server_addr, r, 16);                       \
			}                                                                        \
			bpf_ringbuf_submit(rec, BPF_RB_FORCE_WAKEUP);                            \
		}                                                                                \
	})

/* The daemon generation now (struct dbw_agent_meta), 0 before any daemon. */
static __always_inline __u32 agent_gen(void)
{
	__u32 zero = 0;
	struct dbw_agent_meta *m = bpf_map_lookup_elem(&agent_meta, &zero);

	return m ? m->gen : 0;
}

/*
 * A send of a connection announced to an earlier daemon: announce it again
 * to this one, so that its statements carry the actor and the tuple.
 */
static __always_inline void conn_reannounce(struct sk_msg_md *msg, struct dbw_sk_state *st)
{
	__u32 gen = agent_gen();

	if (st->gen == gen)
		return;
	st->gen = gen;
	conn_announce(st, msg, DBW_OPEN_F_RESUMED);
}

/*
 * Pass a send by a redirect to its own socket. A plain pass that the
 * kernel cannot push whole stays the socket's verdict, and tcp_bpf pushes
 * the next sends with it without running the program: under a steady
 * backlog, every later send (measured: 9 MB of 150 sends after the first
 * short one). A redirect's verdict is cleared before the push. If the
 * socket is not in its sockhash (it left it), a plain pass.
 */
static __always_inline int msg_pass(struct sk_msg_md *msg, struct dbw_sk_state *st)
{
	__u64 key = st->conn_id;

	if (bpf_msg_redirect_hash(msg, st->mask_rules ? (void *)&socks_mask : (void *)&socks, &key,
				  0) == SK_PASS)
		return SK_PASS;
	cnt_add(DBW_CNT_PASS_PLAIN, 1);
	return SK_PASS;
}

static __always_inline void conn_on_established(struct bpf_sock_ops *skops)
{
	struct dbw_sk_state *st = skops_state(skops);
	struct dbw_rx_state rx = {};
	int join_failed = 0;
	__u64 key;

	if (!st || st->established)
		return;
	key = st->conn_id;
	if (bpf_map_update_elem(&rx_state, &key, &rx, BPF_ANY)) {
		cnt_add(DBW_CNT_SOCKHASH_FAIL, 1);
		return;
	}
	/* a connection a masking rule may select carries the masking verdict */
	if (st->mask_rules && mask_join(skops, st, &key)) {
		st->mask_rules = 0;
		join_failed = 1;
	}
	if (!st->mask_rules && bpf_sock_hash_update(skops, &socks, &key, BPF_NOEXIST)) {
		bpf_map_delete_elem(&rx_state, &key);
		cnt_add(DBW_CNT_SOCKHASH_FAIL, 1);
		return;
	}
	st->established = 1;
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	cnt_add(DBW_CNT_CONN_OPEN, 1);

	st->gen = agent_gen();
	/* a new connection: its rules are computed from this record, right away */
	conn_announce(st, skops, 0);
	if (join_failed)
		mask_join_failed(key);
}

/*
 * Client bytes sent after dbw_msg last ran, none of them seen by it (see
 * msg_again): the close reports them as a gap at the end of the stream.
 * write_seq counts the FIN too, when one was sent. A TLS socket's sends
 * are not followed this way.
 */
static __always_inline __u32 unseen_at_close(struct bpf_sock_ops *skops, struct dbw_sk_state *st)
{
	__u32 ws;
	__s32 d;

	if (!st->seq_ok || st->tls || sk_write_seq(skops->sk, &ws))
		return 0;
	d = (__s32)(ws - st->seq_next);
	if (d <= 1)
		return 0;
	cnt_add(DBW_CNT_UNSEEN_BYTES, d - 1);
	return d - 1;
}

/* The watched connection reached TCP_CLOSE: emit CONN_CLOSE with the totals. */
static __always_inline void conn_on_close(struct bpf_sock_ops *skops)
{
	struct dbw_sk_state *st = skops_state(skops);
	struct dbw_rec_conn_close *rec;
	struct dbw_rx_state *rx;
	__u64 key;

	if (!st || !st->established)
		return;
	st->established = 0;
	key = st->conn_id;
	cnt_add(DBW_CNT_CONN_CLOSE, 1);
	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		cnt_add(DBW_CNT_RB_FULL_CLOSE, 1);
	} else {
		rec_hdr_init(&rec->hdr, DBW_REC_CONN_CLOSE, sizeof(*rec), key);
		rec->bytes[DBW_DIR_TO_SERVER] =
			st->off[DBW_DIR_TO_SERVER] + unseen_at_close(skops, st);
		rx = bpf_map_lookup_elem(&rx_state, &key);
		rec->bytes[DBW_DIR_TO_CLIENT] = rx ? rx->off : 0;
		bpf_ringbuf_submit(rec, rb_submit_flags());
	}
	bpf_map_delete_elem(&rx_state, &key);
	bpf_map_delete_elem(&conn_rules, &key);
	bpf_map_delete_elem(&resp_walk, &key);
	mask_on_close(key);
	tls_on_close(st);
}

#endif /* DBW_CONN_BPF_H */
