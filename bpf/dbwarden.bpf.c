// SPDX-License-Identifier: GPL-2.0-only
/*
 * dbwarden kernel programs. Thin entry points; the logic lives in
 * conn.bpf.h (connection tracking), capture.bpf.h (byte capture),
 * mask.bpf.h (result masking),
 * guard.bpf.h (policy enforcement, over the lexer in lexer.bpf.h) and
 * tls.bpf.h (plaintext of TLS connections at the TLS library).
 *
 * One object for all hooks because they share the socket state, the
 * sockhash and the ring buffer; later hook families (TLS uprobes) can reuse
 * these maps by fd.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "dbwarden_abi.h"
#include "maps.bpf.h"
#include "conn.bpf.h"
#include "capture.bpf.h"
#include "guard.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("cgroup/connect4")
int dbw_connect4(struct bpf_sock_addr *ctx)
{
	return conn_on_connect(ctx);
}

SEC("cgroup/connect6")
int dbw_connect6(struct bpf_sock_addr *ctx)
{
	return conn_on_connect(ctx);
}

SEC("sockops")
int dbw_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		conn_on_established(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		/* a server beside the agent: its egress, for clients elsewhere */
		mask_srv_join(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == BPF_TCP_CLOSE)
			conn_on_close(skops);
		break;
	}
	return 1;
}

/*
 * Client -> server bytes of every socket in `socks`: the guard decides,
 * the capture copies the bytes as the client sent them, then the guard
 * rewrites what it blocks. What passes goes out by a redirect to the same
 * socket (msg_pass), so that the kernel runs this program on every send;
 * a send again of bytes already seen is told by the socket's write_seq
 * (msg_again) and not taken twice.
 */
SEC("sk_msg")
int dbw_msg(struct sk_msg_md *msg)
{
	struct guard_plan *plan;
	struct dbw_sk_state *st;
	struct bpf_sock *sk = msg->sk;
	__u32 size = msg->size, again, end, own, ws = 0;
	int cork, verdict, lost, held, seq;

	cnt_add(DBW_CNT_MSG_CALLS, 1);
	if (!sk)
		goto nostate;
	st = bpf_sk_storage_get(&sk_state, sk, 0, 0);
	if (!st)
		goto nostate;
	conn_reannounce(msg, st);
	verdict = tls_on_send(msg, st);
	if (verdict >= 0) /* a TLS socket: judged on its plaintext, never captured as bytes */
		return verdict == SK_PASS ? msg_pass(msg, st) : verdict;
	/* set by a run that split this send, the kernel runs on its rest with it */
	bpf_msg_apply_bytes(msg, 0);
	held = st->corked; /* this run is on bytes held back since an earlier run */
	st->corked = 0;
	cork = 0;
	lost = 0;
	again = 0;
	seq = !sk_write_seq(sk, &ws); /* unchanged until this run returns */
	if (seq)
		again = msg_again(msg, st, ws, &lost);
	if (lost)
		plan = guard_plan_unseen(st, size);
	else
		plan = guard_plan(msg, st, again, &cork);
	if (cork) {
		st->corked = 1;
		return SK_PASS; /* held by the kernel; this program runs again on all of it */
	}
	end = plan && plan->split ? plan->split : size;
	capture_msg(msg, st, again, end);
	/* a masked MySQL connection: which command waits for what */
	mask_my_track(msg, st->proto, st->conn_id, again, end);
	verdict = plan ? guard_apply(msg, st, plan) : SK_PASS;
	if (verdict != SK_PASS)
		return verdict;
	/* the bytes of [0, end) past the last rewritten text are the client's own */
	own = plan ? plan->rw_tail - (size - end) : end;
	end += msg->size - size; /* every rewrite is before end */
	if (seq)
		msg_pushed(st, ws, end, own, held);
	if (end == msg->size)
		return msg_pass(msg, st);
	/*
	 * The rest: the kernel runs this program on it again. Held bytes
	 * split so go by a plain pass: a redirect of held bytes frees what
	 * it does not send (tcp_bpf_send_verdict), a pass keeps it.
	 */
	bpf_msg_apply_bytes(msg, end);
	return held ? SK_PASS : msg_pass(msg, st);
nostate:
	cnt_add(DBW_CNT_NO_STATE, 1);
	return SK_PASS;
}

/*
 * Server -> client bytes of a connection a masking rule selects, before
 * the client can read them: DataRow values masked in place (mask.bpf.h).
 * libbpf 1.1 does not know SEC("sk_skb/verdict"): the loader sets the
 * attach type (BPF_SK_SKB_VERDICT).
 */
SEC("sk_skb")
int dbw_mask(struct __sk_buff *skb)
{
	return mask_skb(skb);
}

/*
 * Server -> client bytes as a local PostgreSQL server sends them, on
 * connections a server-side masking rule may select: masked before they
 * leave (mask.bpf.h), for clients on nodes without an agent.
 */
SEC("sk_msg")
int dbw_srv_msg(struct sk_msg_md *msg)
{
	return mask_srv_msg(msg);
}

/*
 * Server -> client bytes, as the application reads them: sock_recvmsg()
 * fires this after every successful receive on any socket, whatever the
 * syscall. Watching the read side from here leaves the receive path of the
 * socket untouched (an sk_skb verdict would queue every skb through the BPF
 * ingress queue, costing throughput, and the kernel purges that queue when
 * a socket leaves the sockhash: bytes lost for a client when the agent
 * stops). A socket not watched costs one probe read and one hash lookup.
 */
SEC("raw_tracepoint/sock_recv_length")
int dbw_recv(struct bpf_raw_tracepoint_args *ctx)
{
	struct sock *sk = (struct sock *)ctx->args[0];
	int ret = (int)ctx->args[1];
	int flags = (int)ctx->args[2];
	struct dbw_rx_state *rx;
	__u64 key;

	/* MSG_PEEK (2) returns bytes that a later receive returns again */
	if (ret <= 0 || (flags & 2) || !sk)
		return 0;
	key = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (!key)
		return 0;
	rx = bpf_map_lookup_elem(&rx_state, &key);
	if (!rx || rx->tls)
		return 0;
	cnt_add(DBW_CNT_RECV_CALLS, 1);
	capture_recv(key, rx, ret);
	return 0;
}

/*
 * TLS library probes (userspace/tls.c picks the sites and sets the cookie,
 * enum dbw_tls_cookie): arguments at entry, bytes at return.
 */
SEC("uprobe")
int BPF_KPROBE(dbw_tls_write)
{
	tls_enter(ctx, DBW_DIR_TO_SERVER);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(dbw_tls_write_ret)
{
	tls_return(ctx, DBW_DIR_TO_SERVER);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(dbw_tls_read)
{
	tls_enter(ctx, DBW_DIR_TO_CLIENT);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(dbw_tls_read_ret)
{
	tls_return(ctx, DBW_DIR_TO_CLIENT);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(dbw_tls_handshake)
{
	tls_enter(ctx, DBW_TLS_PROBE_HANDSHAKE);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(dbw_tls_handshake_ret)
{
	tls_return(ctx, DBW_TLS_PROBE_HANDSHAKE);
	return 0;
}

/* A new program image: userspace looks for TLS libraries in it. */
SEC("raw_tracepoint/sched_process_exec")
int dbw_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct dbw_rec_exec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (!r) {
		cnt_add(DBW_CNT_EXEC_LOST, 1);
		return 0;
	}
	rec_hdr_init(&r->hdr, DBW_REC_EXEC, sizeof(*r), 0);
	r->pid = bpf_get_current_pid_tgid() >> 32;
	r->pad = 0;
	/* the libraries must be probed before the process gets to use them */
	bpf_ringbuf_submit(r, BPF_RB_FORCE_WAKEUP);
	return 0;
}
