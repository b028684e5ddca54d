/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Message capture: copy the bytes of watched connections into DATA records.
 * BPF-only header.
 *
 * Records are reserved in the ring buffer directly, in four size classes
 * (bpf_ringbuf_reserve needs a constant size): a 60-byte query costs a
 * 176-byte record, not a 16 KiB one, and no per-CPU scratch buffer is needed
 * (a scratch slot can be clobbered when a softirq program or a preempting
 * task runs on the same CPU mid-copy).
 */
#ifndef DBW_CAPTURE_BPF_H
#define DBW_CAPTURE_BPF_H

#include "maps.bpf.h"
#include <bpf/bpf_core_read.h>

/*
 * One chunk to emit. Passed by pointer to the global emit functions below,
 * which are verified once each rather than once per loop iteration and size
 * class at every call site (inlined, the 16-chunk loop times four size
 * classes exceeded the verifier's one million instructions).
 */
struct dbw_chunk {
	__u64 conn_id;
	__u64 stream_off;
	__u32 start; /* offset of the chunk in the send / skb */
	__u32 n; /* bytes, 1..DBW_CHUNK */
	__u32 pid;
	__u8 dir;
	__u8 flags;
	__u8 wake; /* wake the daemon now (a guarded connection's startup) */
	__u8 pad;
	__u64 uaddr; /* user buffer of this chunk (receive side) */
};

/*
 * Reserve a record of class CAP bytes, copy into it with COPY (an expression
 * using `rec` and `len`), and submit it. Expands to a block that returns from
 * the enclosing function. The copy size is bounded again right before the
 * helper call so that the verifier sees 1 <= len <= CAP whatever clang did
 * to the branch above.
 */
#define DBW_EMIT_CLASS(CAP, COPY)                                                            \
	if (ck->n <= (CAP)) {                                                                \
		struct dbw_rec_data *rec;                                                    \
		__u32 len = ck->n;                                                           \
		rec = bpf_ringbuf_reserve(&events, sizeof(*rec) + (CAP), 0);                 \
		if (!rec)                                                                    \
			goto full;                                                           \
		barrier_var(len);                                                            \
		if (len > (CAP))                                                             \
			len = (CAP);                                                         \
		if (len < 1) /* the copy helpers refuse zero-sized reads */                  \
			len = 1;                                                             \
		if (COPY) {                                                                  \
			bpf_ringbuf_discard(rec, 0);                                         \
			cnt_add(DBW_CNT_LOAD_FAIL, 1);                                       \
			return -1;                                                           \
		}                                                                            \
		rec_hdr_init(&rec->hdr, DBW_REC_DATA, sizeof(*rec) + (CAP), ck->conn_id);    \
		rec->stream_off = ck->stream_off;                                            \
		rec->len = len;                                                              \
		rec->pid = ck->pid;                                                          \
		rec->dir = ck->dir;                                                          \
		rec->flags = ck->flags;                                                      \
		rec->pad0 = 0;                                                               \
		rec->pad1 = 0;                                                               \
		bpf_ringbuf_submit(rec, ck->wake ? BPF_RB_FORCE_WAKEUP : rb_submit_flags()); \
		cnt_add(DBW_CNT_DATA_RECORDS, 1);                                            \
		cnt_add(DBW_CNT_DATA_BYTES, len);                                            \
		return 0;                                                                    \
	}

/* All size classes, smallest first; a failed reservation is counted as loss. */
#define DBW_EMIT_ALL(COPY)                     \
	DBW_EMIT_CLASS(128, COPY)              \
	DBW_EMIT_CLASS(512, COPY)              \
	DBW_EMIT_CLASS(2048, COPY)             \
	DBW_EMIT_CLASS(DBW_CHUNK, COPY)        \
	return -1;                             \
full:                                          \
	cnt_add(DBW_CNT_RB_FULL_DATA, 1);      \
	cnt_add(DBW_CNT_RB_LOST_BYTES, ck->n); \
	return -1;

/*
 * Emit n bytes at user address uaddr (what a recv just wrote) as one DATA
 * record. Returns 0, or -1 when the record could not be written (counted;
 * userspace sees a gap).
 */
__noinline int emit_user_chunk(struct dbw_chunk *ck)
{
	if (!ck || !ck->n)
		return 0;
	DBW_EMIT_ALL(bpf_probe_read_user(rec->data, len, (const void *)ck->uaddr))
}

/*
 * Emit bytes [start, start + n) of the message as one DATA record: pull them
 * into one linear buffer, then copy. Returns 0 or -1 (counted).
 */
__noinline int emit_msg_chunk(struct sk_msg_md *msg, struct dbw_chunk *ck)
{
	void *data, *data_end;

	if (!ck || !ck->n)
		return 0;
	if (bpf_msg_pull_data(msg, ck->start, ck->start + ck->n, 0)) {
		cnt_add(DBW_CNT_PULL_FAIL, 1);
		return -1;
	}
	/* after the pull, data points at byte `start` of the message */
	data = (void *)(long)msg->data;
	data_end = (void *)(long)msg->data_end;
	if (data + ck->n > data_end) {
		cnt_add(DBW_CNT_PULL_FAIL, 1);
		return -1;
	}
	DBW_EMIT_ALL(bpf_probe_read_kernel(rec->data, len, data))
}

/* Count what did not fit into DBW_MAX_CHUNKS chunks of one send or skb. */
static __always_inline void count_oversize(__u32 size)
{
	if (size > DBW_CHUNK * DBW_MAX_CHUNKS) {
		cnt_add(DBW_CNT_TRUNC_SENDS, 1);
		cnt_add(DBW_CNT_TRUNC_BYTES, size - DBW_CHUNK * DBW_MAX_CHUNKS);
	}
}

/*
 * Fill ck for chunk i of a send of size bytes; 0 when there is no such
 * chunk. A send larger than DBW_MAX_CHUNKS chunks keeps its head and, as the
 * last chunk, its tail: the end of a send is where the next message starts,
 * so userspace sees the gap (and can answer the request) at once instead of
 * when the connection closes.
 */
static __always_inline int chunk_at(struct dbw_chunk *ck, int i, __u32 size, __u64 base)
{
	__u32 start = i * DBW_CHUNK;

	if (start >= size)
		return 0;
	ck->flags = 0;
	if (i == DBW_MAX_CHUNKS - 1 && size > DBW_CHUNK * DBW_MAX_CHUNKS) {
		start = size - DBW_CHUNK;
		ck->flags = DBW_DATA_F_TRUNCATED;
	}
	ck->start = start;
	ck->n = size - start > DBW_CHUNK ? DBW_CHUNK : size - start;
	ck->stream_off = base + start;
	return 1;
}

/*
 * How this send stands against the bytes dbw_msg saw before, from the
 * socket's write_seq now (ws) against where the last run left it. A push
 * can end short (a non-blocking client, a full send buffer): the kernel
 * frees what is left and the client sends it again, at the head of a
 * later send.
 * Returns how many bytes at the head of this send are such a resend (seen
 * and judged already: not captured twice, not walked twice). *lost is set
 * when the stream cannot be followed: bytes went out that no run saw (a
 * pass the kernel kept for a later send, when a redirect failed), which
 * become a gap in the capture (the stream offset moves past them, counted),
 * or a cut the client's resend cannot be mapped onto (see below).
 */
static __always_inline __u32 msg_again(struct sk_msg_md *msg, struct dbw_sk_state *st, __u32 ws,
				       int *lost)
{
	__u32 size = msg->size;
	__s32 d;

	*lost = 0;
	if (!st->seq_ok)
		return 0;
	d = (__s32)(ws - st->seq_next);
	if (!d)
		return 0;
	if (d > 0) {
		*lost = 1;
		st->seq_next = ws;
		st->off[DBW_DIR_TO_SERVER] += d;
		cnt_add(DBW_CNT_UNSEEN_BYTES, d);
		return 0;
	}
	cnt_add(DBW_CNT_RESENDS, 1);
	if ((__s32)(ws - st->seq_own) < 0 || st->seq_cork) {
		/*
		 * Cut inside what the guard rewrote (the client's bytes differ),
		 * or in bytes held back from earlier sends (the kernel frees them,
		 * and the client, told they went, does not send them again): the
		 * send is taken whole from here, as new bytes.
		 */
		*lost = 1;
		st->seq_next = ws;
		return 0;
	}
	return (__u32)-d < size ? (__u32)-d : size;
}

/*
 * Where write_seq (ws now) will stand once the pass of this run has gone
 * out: past its `pushed` bytes (a resend's included; never behind what an
 * earlier send left to come). own: the bytes at their end the guard did not
 * rewrite; a cut among them maps onto the client's resend byte for byte
 * (the kernel tells the client how many of its bytes were not sent).
 * held: the bytes were held back over earlier sends (corked).
 */
static __always_inline void msg_pushed(struct dbw_sk_state *st, __u32 ws, __u32 pushed, __u32 own,
				       int held)
{
	__u32 end = ws + pushed;

	if (!st->seq_ok || (__s32)(end - st->seq_next) > 0)
		st->seq_next = end;
	st->seq_own = end - own;
	st->seq_cork = held;
	st->seq_ok = 1;
}

/*
 * Client -> server: copy bytes [again, end) of one sendmsg verdict (before:
 * a resend, captured already; past end: the rest of a send this run split,
 * captured by the run on it). The stream offset advances by all of them
 * whatever was copied, so that anything not copied shows up in userspace as
 * a gap of the right length.
 */
static __always_inline void capture_msg(struct sk_msg_md *msg, struct dbw_sk_state *st, __u32 again,
					__u32 end)
{
	__u32 size = end - again;
	__u64 base = st->off[DBW_DIR_TO_SERVER];
	struct dbw_chunk ck = {
		.conn_id = st->conn_id,
		.pid = bpf_get_current_pid_tgid() >> 32,
		.dir = DBW_DIR_TO_SERVER,
		/*
		 * The startup message carries the database and user that a
		 * connection's rules may depend on: have the daemon read it now,
		 * before the first statement, not at its next timed drain.
		 */
		.wake = st->phase == DBW_PG_STARTUP,
	};

	/* sends on one socket are serialised by the socket lock */
	st->off[DBW_DIR_TO_SERVER] = base + size;
	count_oversize(size);
	for (int i = 0; i < DBW_MAX_CHUNKS; i++) {
		if (!chunk_at(&ck, i, size, base))
			break;
		ck.start += again; /* the bytes sent again are captured already */
		emit_msg_chunk(msg, &ck);
	}
}

/*
 * The user buffers a receive syscall filled, read from the caller's saved
 * registers: read/recvfrom have one buffer, readv/recvmsg an iovec array.
 * Returns the number of segments (at most DBW_MAX_IOV) put into iov, or 0
 * when the bytes were not received through such a syscall (io_uring,
 * recvmmsg, a kernel caller): the caller then records a gap.
 */
#define DBW_MAX_IOV 4
#define NR_read	    0
#define NR_readv    19
#define NR_recvfrom 45
#define NR_recvmsg  47

static __always_inline int recv_buffers(struct iovec *iov)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	long nr = BPF_CORE_READ(regs, orig_ax);
	unsigned long arg1 = BPF_CORE_READ(regs, si);
	struct iovec *uiov;
	__u64 cnt;

	switch (nr) {
	case NR_read:
	case NR_recvfrom:
		iov[0].iov_base = (void *)arg1;
		iov[0].iov_len = ~0UL;
		return 1;
	case NR_readv:
		uiov = (struct iovec *)arg1;
		cnt = BPF_CORE_READ(regs, dx);
		break;
	case NR_recvmsg: {
		struct user_msghdr *m = (struct user_msghdr *)arg1;

		if (bpf_probe_read_user(&uiov, sizeof(uiov), &m->msg_iov) ||
		    bpf_probe_read_user(&cnt, sizeof(cnt), &m->msg_iovlen))
			return 0;
		break;
	}
	default:
		return 0;
	}
	if (cnt > DBW_MAX_IOV)
		cnt = DBW_MAX_IOV;
	if (!cnt || bpf_probe_read_user(iov, sizeof(*iov) * DBW_MAX_IOV, uiov))
		return 0;
	return cnt;
}

/*
 * Server -> client: copy the ret bytes a receive just returned to the
 * application. The offset advances by ret whatever was copied: bytes that
 * could not be read (no known buffer, more than DBW_MAX_CHUNKS chunks) are a
 * gap of known size for userspace.
 */
static __always_inline void capture_recv(__u64 conn_id, struct dbw_rx_state *rx, __u32 ret)
{
	struct iovec iov[DBW_MAX_IOV] = {};
	struct dbw_chunk ck = { .conn_id = conn_id, .dir = DBW_DIR_TO_CLIENT };
	__u64 base = __sync_fetch_and_add(&rx->off, ret);
	__u32 done = 0, budget = DBW_MAX_CHUNKS;
	int nseg = recv_buffers(iov);

	if (!nseg) {
		cnt_add(DBW_CNT_RECV_NO_BUF, 1);
		cnt_add(DBW_CNT_TRUNC_BYTES, ret);
		return;
	}
	for (int s = 0; s < DBW_MAX_IOV && s < nseg; s++) {
		__u64 seg = iov[s].iov_len;
		__u32 off = 0;

		if (seg > ret - done)
			seg = ret - done;
		for (int i = 0; i < DBW_MAX_CHUNKS && off < seg && budget; i++, budget--) {
			ck.start = done;
			ck.n = seg - off > DBW_CHUNK ? DBW_CHUNK : seg - off;
			ck.stream_off = base + done;
			ck.uaddr = (__u64)iov[s].iov_base + off;
			ck.flags = 0;
			emit_user_chunk(&ck);
			off += ck.n;
			done += ck.n;
		}
		if (done >= ret || !budget)
			break;
	}
	if (done < ret) {
		cnt_add(DBW_CNT_TRUNC_SENDS, 1);
		cnt_add(DBW_CNT_TRUNC_BYTES, ret - done);
	}
}

#endif /* DBW_CAPTURE_BPF_H */
