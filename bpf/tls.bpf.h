/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * TLS: plaintext of encrypted connections, taken at the TLS library.
 * BPF-only header.
 *
 * Probes sit on the library's write and read functions (userspace picks
 * the sites, see userspace/tls.c): at entry the arguments are saved per
 * thread, at return the bytes the call really moved are copied into DATA
 * records flagged DBW_DATA_F_TLS. A call that fails moves nothing; a retried
 * write (WANT_WRITE) is reported once, by the call that succeeds.
 *
 * Which connection a session (the library's SSL *) belongs to is learnt
 * from the kernel, not from the library's private structures: the first
 * write of a session sends its ciphertext on the session's socket from the
 * same thread, inside the call, so the sk_msg program of that send finds
 * the thread's pending write and binds the session to its socket
 * (tls_bind). No offsets into library structures, nothing to go stale.
 *
 * The guard judges a TLS write in that same sk_msg run, over the plaintext
 * still in the caller's buffer (the sending task's memory): see
 * tls_guard() in guard.bpf.h.
 *
 * The handshake function is probed too, for one question: is a TLS
 * connection's first ciphertext sent from inside a probed library? If not
 * (a library dbwarden does not probe), the guard cannot read that
 * connection, and defaults.unparsed decides its fate.
 */
#ifndef DBW_TLS_BPF_H
#define DBW_TLS_BPF_H

#include "maps.bpf.h"
#include "capture.bpf.h"
#include <bpf/bpf_tracing.h>

/* One TLS call between its entry and its return, per thread. */
struct tls_call {
	__u64 ssl;
	__u64 buf;
	__u64 cntp; /* where an _ex-style function stores the count */
	__u64 conn_id; /* 0 until bound */
	__u32 len;
	__u8 dir; /* enum dbw_dir, or DBW_TLS_PROBE_HANDSHAKE */
	__u8 ex; /* enum dbw_tls_cookie */
	__u8 judged; /* the guard saw this write's plaintext */
	__u8 captured; /* already emitted (a blocked write): not at return */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct tls_call);
} tls_calls SEC(".maps");

/* Is the current thread inside a probed TLS library call (write, read, handshake)? */
static __always_inline int tls_in_library(void)
{
	__u64 id = bpf_get_current_pid_tgid();

	return bpf_map_lookup_elem(&tls_calls, &id) != NULL;
}

struct tls_sess_key {
	__u64 ssl;
	__u32 tgid;
	__u32 pad;
};

/* A session bound to a watched connection, with its plaintext offsets. */
struct tls_sess {
	__u64 conn_id;
	__u64 off[2]; /* plaintext bytes per direction, enum dbw_dir */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tls_sess_key);
	__type(value, struct tls_sess);
} tls_sessions SEC(".maps");

/*
 * Processes that connected to a watched port (set at connect()). A TLS
 * write of any other process (the database server's own, say) is left
 * alone after one lookup.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} tls_procs SEC(".maps");

static __always_inline void tls_mark_proc(__u32 tgid)
{
	__u8 one = 1;

	bpf_map_update_elem(&tls_procs, &tgid, &one, BPF_ANY);
}

static __always_inline struct tls_sess *tls_sess_of(__u32 tgid, __u64 ssl)
{
	struct tls_sess_key k = { .ssl = ssl, .tgid = tgid };

	return bpf_map_lookup_elem(&tls_sessions, &k);
}

/*
 * Entry of a write, read or handshake function: remember the call. A write
 * or handshake of a session not bound yet is remembered when its process
 * has watched connections (its send binds it); a read only for a bound
 * session.
 */
static __always_inline void tls_enter(struct pt_regs *ctx, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid(), ssl = PT_REGS_PARM1(ctx);
	struct tls_sess *s = tls_sess_of(id >> 32, ssl);
	__u32 tgid = id >> 32;
	struct tls_call c = {
		.ssl = ssl,
		.buf = PT_REGS_PARM2(ctx),
		.len = (__u32)PT_REGS_PARM3(ctx),
		.dir = dir,
		.ex = bpf_get_attach_cookie(ctx) == DBW_TLS_RET_EX,
	};

	if (!s && (dir == DBW_DIR_TO_CLIENT || !bpf_map_lookup_elem(&tls_procs, &tgid)))
		return;
	if (dir == DBW_TLS_PROBE_HANDSHAKE)
		c.len = 0;
	else if ((int)c.len <= 0)
		return;
	if (c.ex)
		c.cntp = PT_REGS_PARM4(ctx);
	if (s)
		c.conn_id = s->conn_id;
	if (dir == DBW_TLS_PROBE_HANDSHAKE) {
		/* a handshake run from inside a write or read must not hide that call */
		bpf_map_update_elem(&tls_calls, &id, &c, BPF_NOEXIST);
		return;
	}
	if (bpf_map_update_elem(&tls_calls, &id, &c, BPF_ANY))
		cnt_add(DBW_CNT_TLS_ARGS_FULL, 1);
}

/*
 * Copy n plaintext bytes at user address buf into DATA records of the
 * session's stream dir, as the send/receive capture does (head chunks and
 * the tail of an oversize call; the offset advances by n whatever was
 * copied, so userspace sees any loss as a gap).
 */
__noinline int tls_emit(__u64 conn_id, struct tls_sess *s, __u64 buf, __u32 n, __u32 dir)
{
	struct dbw_chunk ck = {
		.conn_id = conn_id,
		.pid = bpf_get_current_pid_tgid() >> 32,
	};
	__u64 base;

	if (!s || dir > DBW_DIR_TO_CLIENT)
		return -1;
	ck.dir = dir;
	base = __sync_fetch_and_add(&s->off[dir & 1], n);
	count_oversize(n);
	for (int i = 0; i < DBW_MAX_CHUNKS; i++) {
		if (!chunk_at(&ck, i, n, base))
			break;
		ck.flags |= DBW_DATA_F_TLS;
		ck.uaddr = buf + ck.start;
		emit_user_chunk(&ck);
	}
	return 0;
}

/* Return of a write, read or handshake function: emit what it moved. */
static __always_inline void tls_return(struct pt_regs *ctx, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *c = bpf_map_lookup_elem(&tls_calls, &id);
	long ret = (int)PT_REGS_RC(ctx);
	struct tls_sess *s;
	__u64 n = 0;

	if (!c || c->dir != dir)
		return; /* not this call's: an outer call's entry stays for its own return */
	if (dir == DBW_TLS_PROBE_HANDSHAKE || c->captured || ret <= 0)
		goto out;
	if (!c->ex)
		n = ret;
	else if (bpf_probe_read_user(&n, sizeof(n), (void *)c->cntp))
		goto out;
	if (!n || n > c->len)
		goto out;
	s = tls_sess_of(id >> 32, c->ssl);
	if (!s)
		goto out; /* a session of a watched process, not on a watched socket */
	cnt_add(dir == DBW_DIR_TO_SERVER ? DBW_CNT_TLS_WRITES : DBW_CNT_TLS_READS, 1);
	tls_emit(s->conn_id, s, c->buf, n, dir);
out:
	bpf_map_delete_elem(&tls_calls, &id);
}

/*
 * sk_msg side: the pending TLS write of the sending thread, bound to this
 * socket. Returns the call when this send carries a write the guard has
 * not judged yet, NULL otherwise. The first write of a session binds it:
 * the session gets this connection's id, the socket stops being captured
 * as bytes (ciphertext) and the guard restarts on the plaintext stream.
 */
static __always_inline struct tls_call *tls_bind(struct dbw_sk_state *st)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *c = bpf_map_lookup_elem(&tls_calls, &id);
	struct tls_sess_key k;
	struct tls_sess *s;

	if (!c || c->dir != DBW_DIR_TO_SERVER || c->judged)
		return NULL;
	c->judged = 1;
	if (c->conn_id == st->conn_id && st->tls)
		return c;
	k.ssl = c->ssl;
	k.tgid = id >> 32;
	k.pad = 0;
	s = bpf_map_lookup_elem(&tls_sessions, &k);
	if (!s || s->conn_id != st->conn_id) {
		struct tls_sess fresh = { .conn_id = st->conn_id };
		struct dbw_rx_state *rx;

		if (bpf_map_update_elem(&tls_sessions, &k, &fresh, BPF_ANY)) {
			cnt_add(DBW_CNT_TLS_SESS_FULL, 1);
			return NULL;
		}
		cnt_add(DBW_CNT_TLS_BOUND, 1);
		st->tls = DBW_TLS_BOUND;
		st->tls_ssl = c->ssl;
		/* the plaintext stream starts with the startup message */
		st->phase = DBW_PG_STARTUP;
		st->msg_left = 0;
		rx = bpf_map_lookup_elem(&rx_state, &st->conn_id);
		if (rx)
			rx->tls = 1;
	}
	c->conn_id = st->conn_id;
	return c;
}

/* Close of a bound socket: forget its session (the SSL * may be reused). */
static __always_inline void tls_on_close(struct dbw_sk_state *st)
{
	struct tls_sess_key k = { .ssl = st->tls_ssl, .tgid = st->who.pid };

	if (st->tls)
		bpf_map_delete_elem(&tls_sessions, &k);
}

#endif /* DBW_TLS_BPF_H */
