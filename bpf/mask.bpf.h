/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Result masking: PostgreSQL DataRow values rewritten in place, same
 * length, on the client socket's ingress (an sk_skb verdict), before the
 * client can read them; MySQL/MariaDB rows by mask_mysql.bpf.h with the
 * same pieces. BPF-only header.
 *
 * Only connections that a masking rule may select pay for it: their
 * candidate rules are taken at connect() (the port's rules masked by the
 * cgroup's workload class, see the ABI header), and at ESTABLISHED such a
 * socket joins `socks_mask` instead of `socks`. A socket takes the
 * programs of the sockhash it joins: `socks_mask` has the same sk_msg
 * program as `socks`, plus this verdict. So the others keep the plain
 * receive path.
 *
 * The verdict runs a streaming parser of the server's messages over each
 * skb; its state is carried across skbs in `mask_state` (keyed by conn id)
 * so that a header, a length word, a column name or a value may be cut
 * anywhere. RowDescription gives each column's name, hashed and looked up
 * in `mask_cols`; a DataRow field is masked when a rule in force names its
 * column, or when a rule's value detector recognises the whole field (an
 * email, a card number that passes Luhn): a renamed column (`max(email)`)
 * is caught that way. The detectors are small automata fed byte by byte,
 * so a value cut by an skb boundary is followed across it; its first part
 * has passed by then, so it is masked while the value can still match, and
 * counted (`overmasked`) when it turns out not to.
 *
 * What cannot be masked follows the rules' on_unmaskable: an encrypted
 * connection (the server's "yes" to SSLRequest/GSSENCRequest is replaced
 * by an ErrorResponse the client reports: block; or passed with a record:
 * allow), rows without a RowDescription and columns past DBW_MASK_COLS
 * (masked whole: block; passed and counted: allow), lost framing (dropped
 * and the connection reset by userspace: block; passed: allow). Every
 * case is counted and reported in a MASK record: nothing passes silently.
 *
 * Loop shape (notes/result-masking-feasibility.md): bpf_loop over a global
 * step function, which is verified once; the working state lives in a
 * per-CPU scratch slot, as the guard's does. Each step consumes at least
 * one byte or ends the skb.
 */
#ifndef DBW_MASK_BPF_H
#define DBW_MASK_BPF_H

#include <bpf/bpf_endian.h>
#include "maps.bpf.h"

/* Sockets of connections a masking rule may select: sk_msg + this verdict. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} socks_mask SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dbw_mask_cfg);
} mask_cfg SEC(".maps");

/* dbw_name_hash(column name) -> rules that mask that column. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} mask_cols SEC(".maps");

/* uid -> the rules whose uid selector names it (struct dbw_mask_cfg). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} mask_uid SEC(".maps");

/* What userspace settled for a connection: its rules (a subset of its candidates), its db. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct dbw_mask_conn);
} mask_conn SEC(".maps");

/* (db, table OID, column number) -> the rules that mask it (see struct dbw_mask_relkey). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct dbw_mask_relkey);
	__type(value, __u32);
} mask_rel SEC(".maps");

/* Parser states. */
enum {
	MS_HDR = 0, /* a message header (type + length) */
	MS_SKIP, /* the rest of a message not read */
	MS_D_NF, /* DataRow: field count */
	MS_D_FL, /* DataRow: a field's length */
	MS_D_FD, /* DataRow: a field's bytes */
	MS_T_NF, /* RowDescription: field count */
	MS_T_NAME, /* RowDescription: a column name, up to its NUL */
	MS_T_META, /* RowDescription: the 18 bytes after a name */
	MS_COPY, /* CopyData of a COPY TO STDOUT */
	MS_OFF, /* nothing (more) to mask: encrypted and allowed, or no rule in force */
	MS_LOST, /* framing lost */
};

/* What is done with the bytes of the current field. */
enum {
	FM_PASS = 0,
	FM_STYLE = 1, /* masked in fstyle */
	FM_CHECK = 2, /* the value detectors decide */
};

/* Email automaton states. */
enum { EM_LOCAL0 = 0, EM_LOCAL, EM_AT, EM_DOM, EM_DOT };

/* Value automata of one field: kept across skbs. */
struct mask_vdet {
	__u32 alive; /* enum dbw_mask_det still possible */
	__u32 digits, luhn0, luhn1, tld;
	__u8 email, dot, last, prefix_masked;
};

/* The MySQL/MariaDB parser's own state (mask_mysql.bpf.h). */
struct mask_my {
	__u64 lval; /* a length-encoded integer being read */
	/* ColumnDefinition: "org_table.org_name", "schema.org_table.org_name" hashed */
	__u64 qhash, shash;
	__u32 hits; /* ColumnDefinition: the rules its name and its origin name */
	__u32 plen; /* the current packet's payload length */
	__u32 pkt_rem; /* its payload bytes not read yet */
	__u32 defs; /* COM_STMT_PREPARE answer: definitions left to skip */
	__u32 tail; /* commands answered (mask_my_cmds.head counts those sent) */
	__u32 bin_unm; /* binary result: fields per row a rule covers (~0: not decided) */
	__u32 stmt; /* the statement id the response's command named */
	__u32 last_stmt; /* the last one prepared (an EXECUTE may name it as ~0) */
	__u32 pcols; /* COM_STMT_PREPARE answer: its result's columns */
	__u8 more; /* the packet is 0xffffff long: the payload goes on in the next */
	__u8 phase; /* greeting, authentication, commands */
	__u8 ctx; /* what the next packet of a response is */
	__u8 kind; /* the command this response answers */
	__u8 cont; /* a result follows in the same response (MORE_RESULTS) */
	__u8 lneed, lhave; /* length-encoded integer: bytes after its prefix, read */
	__u8 cstr; /* column definition: strings read */
	__u8 okn; /* OK/EOF bytes gathered */
	__u8 prep; /* the column definitions read are a prepared statement's */
	__u8 binary; /* the rows are binary (prepared statements) */
	__u8 pad;
	__u8 okb[32]; /* the head of an OK/EOF packet; a binary row's NULL bitmap */
	__u8 types[64]; /* the result's column types (binary rows) */
};

/*
 * The MySQL client's commands, as the sk_msg program sees them leave, in
 * order (mask_mysql.bpf.h): what kind of response each one gets. Written
 * only by sk_msg; the verdict reads it (a response comes after its
 * command, so the command is always there first).
 */
struct mask_my_cmds {
	__u64 kinds; /* 4 bits per outstanding command, slot = its number & 15 */
	__u32 head; /* commands sent that get a response */
	__u32 left; /* bytes of the current client packet still to skip */
	__u32 plen; /* a command packet's length, while its command byte is awaited */
	__u8 hacc[4]; /* a packet header cut by a send */
	__u8 hhave; /* header bytes gathered; 4: the command byte is awaited */
	__u8 lost; /* the client stream could not be followed */
	__u8 off; /* TLS: nothing to follow */
	__u8 big; /* the last packet was 0xffffff long: the next one continues it */
	__u8 seen_hs; /* the HandshakeResponse was read */
	__u8 pad[7];
	__u32 stmt[16]; /* the statement id an EXECUTE or FETCH names, slot as kinds */
};

/*
 * A Redis client's commands, as the guard's walk of its sends sees them
 * (rkey_note, rkey_commit in guard.bpf.h), for the verdict to pair each
 * reply with its command (mask_resp.bpf.h): bit n of `bits` says whether
 * command n names a key a rule masks. Commands are counted from the
 * first, whether or not a rule has keys, so that a policy that brings
 * keys later finds the count right. Written by sk_msg but `tail`, which
 * the verdict advances (the walk stops writing bits that far ahead).
 */
#define RK_RING 4096 /* commands a pipeline may have sent ahead of their replies */

enum {
	RK_PAIRED = 0,
	RK_UNPAIRED = 1, /* SUBSCRIBE, MONITOR, CLIENT REPLY: replies no longer pair */
	RK_BLIND = 2, /* client bytes the walk did not follow (or a pipeline too deep) */
};

struct mask_resp_cmds {
	__u32 head; /* commands sent that get a reply */
	__u32 tail; /* replies the verdict has paired */
	__u8 lost; /* RK_* */
	__u8 hit_lost; /* unpaired, a command named a masked key */
	__u8 multi; /* inside MULTI */
	__u8 multi_hit; /* a command queued in it names a masked key */
	__u32 lost_at; /* the first command whose reply cannot be paired */
	__u64 bits[RK_RING / 64];
};

/* The Redis key masking's state of a connection's replies (mask_resp.bpf.h). */
struct mask_rk {
	__u32 tail; /* replies paired with their commands */
	__u32 rules; /* rules in force that have keys */
	__u8 on; /* the current reply answers a command naming a masked key */
	__u8 style; /* the first of those rules' style */
	__u8 pad[2];
};

/* Per connection, across skbs. */
struct mask_st {
	__u64 off; /* stream offset of the next byte */
	__u64 cols; /* columns masked by name (bit = column) */
	__u64 style_lo, style_hi; /* their style: two bits per column */
	__u64 nontext; /* columns of a type that is not text: no email detector */
	__u64 nhash; /* RowDescription: the name's hash so far; then its table OID and number */
	__u32 cand; /* candidate rules (connect) */
	__u32 rules; /* rules in force */
	__u32 gen; /* dbw_mask_cfg.gen they were read from */
	__u32 dbk; /* the database's key in mask_rel (struct dbw_mask_conn); 0: none */
	__u32 dets; /* their value detectors */
	__u32 msg_rem, field_rem, field_len, nfields, fidx;
	__u32 rows, masked, unmasked, overmasked; /* since the last record */
	struct mask_vdet v;
	__u8 state, have, fmode, fstyle;
	__u8 started; /* the server's first typed message was seen */
	__u8 allow; /* every rule in force: on_unmaskable allow */
	__u8 dstyle; /* style of values the detectors catch */
	__u8 has_cols; /* a rule in force names columns */
	__u8 desc; /* a RowDescription describes the rows now */
	__u8 hi_match; /* a column past DBW_MASK_COLS is named by a rule */
	__u8 inited;
	__u8 proto; /* enum dbw_proto: which parser reads the stream */
	__u8 acc[8]; /* a header or length word cut by an skb */
	__u8 side; /* enum dbw_mask_side */
	__u8 user_seen; /* server side: session_authorization was read */
	__u8 pad2[2];
	union {
		struct mask_my my; /* DBW_PROTO_MYSQL */
		struct mask_rk rk; /* DBW_PROTO_REDIS */
	};
};

/* A server-side connection's peer, for its records (struct dbw_rec_mask). */
struct mask_peer {
	__u8 addr[16], local[16]; /* network order */
	__u16 port, local_port, family, pad; /* ports in host order */
};

/*
 * What a server-side run wrote, by stream position (the socket's
 * write_seq). A send the kernel cuts short (the socket buffer filled
 * while it pushed the bytes) is freed unsent and the server sends those
 * bytes again, as it wrote them: unmasked. The next run finds them by
 * write_seq and masks them again from here. Entries are merged where
 * contiguous; a run ends early (bpf_msg_apply_bytes) rather than write
 * what it could not record.
 */
#define MASK_REC_MAX 512

enum { WREC_STARS = 0, WREC_TOKEN = 1, WREC_COPY = 2 };

struct mask_wrec {
	__u32 seq; /* write_seq of the first byte written */
	__u32 len;
	__u8 kind; /* WREC_* */
	__u8 phase; /* WREC_TOKEN: the mask_token byte the first one took */
	__u8 pad[2];
};

/* The server side's per-socket state (sk_storage: it goes with the socket). */
struct mask_srv_st {
	struct mask_st st;
	struct mask_peer peer;
	__u64 id; /* the socket's cookie: sk_msg may not ask for it */
	__u32 seq_next; /* write_seq just past the bytes decided so far */
	__u32 span; /* rec covers the span bytes before seq_next */
	__u32 nrec;
	__u8 seq_ok; /* seq_next is known */
	__u8 pad[3];
	struct mask_wrec rec[MASK_REC_MAX];
};

#define MASK_BUF 256

/* The working copy of one skb's run. */
struct mask_work {
	struct mask_st st;
	__u32 pos, len;
	__u8 stop;
	__u8 tls; /* the server said yes to encryption at pos */
	__u8 lost;
	__u8 split; /* sk_msg: stopped at pos, the record full; the rest runs again */
	__u8 pad2[4];
	__u64 key; /* the connection's id, for its records */
	struct mask_peer peer; /* the server side's client */
	__u32 ws, we; /* sk_msg: the bytes [ws, we) are pulled and readable */
	__u32 seq; /* sk_msg: write_seq of the send's first byte */
	__u32 nrec; /* sk_msg: entries of rec */
	struct dbw_rec_mask_replies rep; /* Redis: the counts of replies not sent yet (rep.n) */
	__u8 buf[MASK_BUF];
	struct mask_wrec rec[MASK_REC_MAX]; /* sk_msg: this run's writes */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mask_work);
} mask_scratch SEC(".maps");

/* A zeroed mask_st to create entries from. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mask_st);
} mask_zero SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct mask_st);
} mask_state SEC(".maps");

/*
 * The server side: accepted connections a rule may select, with the
 * egress program (dbw_srv_msg); their state; db user -> rules.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} socks_srv SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mask_srv_st);
} mask_srv SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} mask_srv_user SEC(".maps");

/* conn id -> struct mask_resp_cmds, for masked Redis connections. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct mask_resp_cmds);
} mask_resp_cmds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mask_resp_cmds);
} mask_resp_zero SEC(".maps");

/* conn id -> struct mask_my_cmds, for masked MySQL connections (sk_msg writes). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct mask_my_cmds);
} mask_my_cmds SEC(".maps");

const volatile __u8 mask_stars[MASK_BUF] = { [0 ... MASK_BUF - 1] = '*' };
/*
 * The token style: a fixed word, repeated, aligned on the field's start
 * (a write reads from [foff & 7], up to MASK_BUF bytes on). Every byte
 * set: a string literal shorter than the array left its last bytes NUL,
 * which a long value masked by name or key then read.
 */
const volatile __u8 mask_token[MASK_BUF + 8] = { [0 ... MASK_BUF + 7] = 'X' };

/*
 * What replaces the server's "S" (or "G") to SSLRequest (GSSENCRequest) on
 * a connection that must not be encrypted: an ErrorResponse. libpq reads
 * an 'E' there as the server's error, reports it and closes.
 */
#define MASK_TLS_ERR_LEN 108
const volatile __u8 mask_tls_err[MASK_TLS_ERR_LEN] =
	"E\0\0\0\x6b"
	"SFATAL\0"
	"C28000\0"
	"Mdbwarden: results are masked for this client; an encrypted connection cannot "
	"be masked\0"
	"\0";

static __always_inline struct mask_work *mask_work_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&mask_scratch, &zero);
}

/* ---- connection setup ---------------------------------------------------------- */

/*
 * connect(): the masking rules that may apply to this socket (0: none):
 * its port's, for its cgroup's workload class, for its uid.
 */
static __always_inline __u32 mask_candidates(struct dbw_port_cfg *port, __u64 cgid, __u32 uid)
{
	struct dbw_workload_class *wc;
	__u64 any = DBW_WORKLOAD_ANY;
	struct dbw_mask_cfg *cfg;
	__u32 zero = 0, r, *u;

	if (!port->mask_rules)
		return 0;
	wc = bpf_map_lookup_elem(&workload_class, &cgid);
	if (!wc)
		wc = bpf_map_lookup_elem(&workload_class, &any);
	r = port->mask_rules & (wc ? wc->mask_rules : ~0u);
	cfg = bpf_map_lookup_elem(&mask_cfg, &zero);
	if (!r || !cfg)
		return r;
	u = bpf_map_lookup_elem(&mask_uid, &uid);
	return r & (cfg->uid_free | (u ? *u : 0));
}

/* A connection's parser state, fresh: its candidate rules, its protocol. NULL: map full. */
static __always_inline struct mask_st *mask_state_new(__u64 *key, __u32 cand, __u8 proto)
{
	__u32 zero = 0;
	struct mask_st *z = bpf_map_lookup_elem(&mask_zero, &zero), *m;

	if (!z || bpf_map_update_elem(&mask_state, key, z, BPF_ANY))
		return NULL;
	m = bpf_map_lookup_elem(&mask_state, key);
	if (m) {
		m->cand = cand;
		m->proto = proto;
	}
	return m;
}

/* A Redis connection's command record, empty (its commands are counted from the first). */
static __always_inline long mask_resp_cmds_new(__u64 *key)
{
	__u32 zero = 0;
	/* from a zeroed map slot: more than the stack should hold */
	struct mask_resp_cmds *z = bpf_map_lookup_elem(&mask_resp_zero, &zero);

	return z ? bpf_map_update_elem(&mask_resp_cmds, key, z, BPF_ANY) : -1;
}

/*
 * ESTABLISHED: a socket with candidate rules gets its masking state and
 * joins socks_mask. 0, or an error (the caller counts it: not watched).
 */
static __always_inline long mask_join(struct bpf_sock_ops *skops, struct dbw_sk_state *st,
				      __u64 *key)
{
	if (!mask_state_new(key, st->mask_rules, st->proto))
		goto fail;
	if (st->proto == DBW_PROTO_MYSQL) {
		/* its commands are followed from the first (mask_my_track) */
		struct mask_my_cmds c = {};

		if (bpf_map_update_elem(&mask_my_cmds, key, &c, BPF_ANY)) {
			bpf_map_delete_elem(&mask_state, key);
			goto fail;
		}
	}
	if (st->proto == DBW_PROTO_REDIS && mask_resp_cmds_new(key)) {
		bpf_map_delete_elem(&mask_state, key);
		goto fail;
	}
	if (bpf_sock_hash_update(skops, &socks_mask, key, BPF_NOEXIST)) {
		bpf_map_delete_elem(&mask_state, key);
		goto fail;
	}
	cnt_add(DBW_CNT_MASK_CONNS, 1);
	return 0;
fail:
	cnt_add(DBW_CNT_MASK_JOIN_FAIL, 1);
	return -1;
}

/* Closed: its state goes (userspace writes mask_conn for every connection). */
static __always_inline void mask_on_close(__u64 key)
{
	bpf_map_delete_elem(&mask_state, &key);
	bpf_map_delete_elem(&mask_conn, &key);
	bpf_map_delete_elem(&mask_my_cmds, &key);
	bpf_map_delete_elem(&mask_resp_cmds, &key);
}

/* A selected connection that could not join socks_mask: userspace resets it. */
static __always_inline void mask_join_failed(__u64 conn_id)
{
	struct dbw_rec_mask *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (!r) {
		cnt_add(DBW_CNT_MASK_RB_FULL, 1);
		return;
	}
	__builtin_memset(r, 0, sizeof(*r));
	rec_hdr_init(&r->hdr, DBW_REC_MASK, sizeof(*r), conn_id);
	r->kind = DBW_MASK_REC_JOIN_FAIL;
	r->blocked = 1;
	bpf_ringbuf_submit(r, BPF_RB_FORCE_WAKEUP);
}

/* ---- records ------------------------------------------------------------------- */

static __always_inline void mask_rec_peer(struct dbw_rec_mask *r, const struct mask_peer *p)
{
	__builtin_memcpy(r->peer_addr, p->addr, 16);
	__builtin_memcpy(r->local_addr, p->local, 16);
	r->peer_port = p->port;
	r->local_port = p->local_port;
	r->family = p->family;
	r->pad = 0;
}

/* What st did since its last record, for the connection the current run is on. */
static __always_inline void mask_record(struct mask_st *st, __u8 kind, __u8 blocked, __u8 type)
{
	struct mask_work *w = mask_work_get();
	struct dbw_rec_mask *r;

	if (!w)
		return;
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		cnt_add(DBW_CNT_MASK_RB_FULL, 1);
		return;
	}
	rec_hdr_init(&r->hdr, DBW_REC_MASK, sizeof(*r), w->key);
	r->stream_off = st->off;
	r->rules = st->rules;
	r->kind = kind;
	r->blocked = blocked;
	r->msg_type = type;
	r->side = st->side;
	mask_rec_peer(r, &w->peer);
	r->rows = st->rows;
	r->masked = st->masked;
	r->unmasked = st->unmasked;
	r->overmasked = st->overmasked;
	st->rows = st->masked = st->unmasked = st->overmasked = 0;
	/* an encrypted or lost connection may need a reset: wake the daemon */
	bpf_ringbuf_submit(r,
			   kind == DBW_MASK_REC_RESULT ? rb_submit_flags() : BPF_RB_FORCE_WAKEUP);
}

/*
 * The Redis replies' counts gathered by this run (rmask_elem_done), in one
 * record as long as its entries: one reply an skb (no pipeline) costs
 * what a MASK record would.
 */
static __always_inline void mask_replies_flush(struct mask_work *w)
{
	struct dbw_rec_mask_replies *r = &w->rep;
	__u32 n = r->n, size;

	if (!n)
		return;
	if (n > DBW_MASK_REPLIES)
		n = DBW_MASK_REPLIES;
	size = offsetof(struct dbw_rec_mask_replies, e) + n * sizeof(r->e[0]);
	rec_hdr_init(&r->hdr, DBW_REC_MASK_REPLIES, size, w->key);
	r->rules = w->st.rules;
	if (bpf_ringbuf_output(&events, r, size, rb_submit_flags()))
		cnt_add(DBW_CNT_MASK_RB_FULL, 1);
	r->n = 0;
}

/* ---- value automata ------------------------------------------------------------ */

static __always_inline int m_digit(__u8 c)
{
	return c >= '0' && c <= '9';
}

static __always_inline int m_alnum(__u8 c)
{
	return m_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Start the automata for a field of flen bytes: only shapes that fit its length. */
static __always_inline void v_start(struct mask_vdet *v, __u32 dets, __u32 flen)
{
	__u32 alive = 0;

	if ((dets & DBW_MDET_EMAIL) && flen >= 6)
		alive |= DBW_MDET_EMAIL;
	if ((dets & DBW_MDET_CARD) && flen >= 13 && flen <= 19 + 18)
		alive |= DBW_MDET_CARD;
	v->alive = alive;
	v->digits = v->luhn0 = v->luhn1 = v->tld = 0;
	v->email = EM_LOCAL0;
	v->dot = 0;
	v->last = 0;
	v->prefix_masked = 0;
}

/* Feed one byte to the automata still alive. */
static __always_inline void v_byte(struct mask_vdet *v, __u8 c)
{
	__u32 alive = v->alive;

	if (alive & DBW_MDET_EMAIL) {
		__u8 e = v->email;
		int local = m_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';

		if (e <= EM_LOCAL) {
			if (c == '@' && e == EM_LOCAL)
				e = EM_AT;
			else if (local)
				e = EM_LOCAL;
			else
				alive &= ~DBW_MDET_EMAIL;
		} else if (c == '.' && e == EM_DOM) {
			e = EM_DOT;
			v->dot = 1;
			v->tld = 0;
		} else if (m_alnum(c) || (c == '-' && e == EM_DOM)) {
			e = EM_DOM;
			/* the top-level domain is letters only */
			v->tld = (c >= '0' && c <= '9') || c == '-' ? 0x80000000 : v->tld + 1;
		} else {
			alive &= ~DBW_MDET_EMAIL;
		}
		v->email = e;
	}
	if (alive & DBW_MDET_CARD) {
		if (m_digit(c)) {
			__u32 d = c - '0', dd = d * 2 > 9 ? d * 2 - 9 : d * 2;

			/* Luhn from the left: both parities, the digit count picks one */
			if (v->digits & 1) {
				v->luhn0 += d;
				v->luhn1 += dd;
			} else {
				v->luhn0 += dd;
				v->luhn1 += d;
			}
			if (++v->digits > 19)
				alive &= ~DBW_MDET_CARD;
		} else if (!((c == ' ' || c == '-') && m_digit(v->last))) {
			alive &= ~DBW_MDET_CARD; /* one separator between digits */
		}
	}
	v->last = c;
	v->alive = alive;
}

/* At the field's end: does a detector recognise the whole value? */
static __always_inline int v_match(struct mask_vdet *v)
{
	if ((v->alive & DBW_MDET_EMAIL) && v->email == EM_DOM && v->dot && v->tld >= 2 &&
	    v->tld < 64)
		return 1;
	if ((v->alive & DBW_MDET_CARD) && v->digits >= 13 && m_digit(v->last)) {
		/* an even count doubles the digits at even positions from the left */
		__u32 sum = v->digits & 1 ? v->luhn1 : v->luhn0;

		return sum % 10 == 0;
	}
	return 0;
}

/* bpf_loop callback: byte i of the work buffer into the automata. */
static long v_step(__u32 i, void *ctx)
{
	struct mask_work *w = mask_work_get();

	if (!w || i >= MASK_BUF)
		return 1;
	v_byte(&w->st.v, w->buf[i & (MASK_BUF - 1)]);
	return w->st.v.alive ? 0 : 1;
}

/* bpf_loop callback: mask byte i of a CopyData chunk, keeping the row's separators. */
static long copy_step(__u32 i, void *ctx)
{
	struct mask_work *w = mask_work_get();
	__u8 c;

	if (!w || i >= MASK_BUF)
		return 1;
	c = w->buf[i & (MASK_BUF - 1)];
	if (c != '\t' && c != '\n')
		w->buf[i & (MASK_BUF - 1)] = '*';
	return 0;
}

/* ---- the parser ------------------------------------------------------------------ */

static __always_inline __u32 m_be32(const __u8 *a)
{
	return ((__u32)a[0] << 24) | ((__u32)a[1] << 16) | ((__u32)a[2] << 8) | a[3];
}

/*
 * Byte access for the parsers, on an skb (the client's ingress, an sk_skb
 * verdict) or on a sendmsg (the server's egress, sk_msg). `msg` is a
 * constant at every call site: each compiled variant keeps the helpers of
 * its own program type only (the verifier refuses the others').
 *
 * sk_msg bytes are read and written where bpf_msg_pull_data made them
 * linear: windows of MSG_WIN bytes, pulled again when an access leaves the
 * current one (notes/result-masking-feasibility.md, placement A).
 */
#define MSG_WIN 16384

/* Make [pos, pos + n) of msg readable and writable. 0, or -1. */
static __always_inline int msg_window(struct sk_msg_md *msg, struct mask_work *w, __u32 pos,
				      __u32 n)
{
	__u32 end = pos + MSG_WIN;

	if (pos >= w->ws && pos + n <= w->we)
		return 0;
	if (end > w->len)
		end = w->len;
	if (pos + n > end || bpf_msg_pull_data(msg, pos, end, 0))
		return -1;
	w->ws = pos;
	w->we = end;
	return 0;
}

/* n (<= MASK_BUF) bytes at pos into buf. 0, or an error. */
static __always_inline long m_load(void *ctx, const int msg, struct mask_work *w, __u32 pos,
				   void *buf, __u32 n)
{
	struct sk_msg_md *m = ctx;
	__u8 *d;

	if (!msg)
		return bpf_skb_load_bytes(ctx, pos, buf, n);
	if (n > MASK_BUF || msg_window(m, w, pos, n))
		return -1;
	d = (__u8 *)(long)m->data + ((pos - w->ws) & (MSG_WIN - 1));
	if ((void *)(d + n) > (void *)(long)m->data_end)
		return -1;
	return bpf_probe_read_kernel(buf, n, d);
}

/* n (<= MASK_BUF) bytes of src over the stream at pos. */
static __always_inline void m_store(void *ctx, const int msg, struct mask_work *w, __u32 pos,
				    const volatile __u8 *src, __u32 n)
{
	struct sk_msg_md *m = ctx;
	__u8 *d, *end;

	if (!msg) {
		bpf_skb_store_bytes(ctx, pos, (void *)src, n, 0);
		return;
	}
	if (n > MASK_BUF || msg_window(m, w, pos, n))
		return;
	d = (__u8 *)(long)m->data + ((pos - w->ws) & (MSG_WIN - 1));
	end = (__u8 *)(long)m->data_end;
	for (__u32 i = 0; i < MASK_BUF; i++) {
		if (i >= n || d + i + 1 > end)
			break;
		d[i] = src[i];
	}
}

/*
 * Note that a server-side run wrote n bytes at pos (struct mask_wrec).
 * The steps stop before the record is full (mask_msg_step), so that a
 * write is never left out; should one be, the run is lost.
 */
static __always_inline void rec_add(struct mask_work *w, __u32 pos, __u32 n, __u8 kind, __u8 phase)
{
	__u32 seq = w->seq + pos, i = w->nrec;
	struct mask_wrec *r;

	if (i > 0 && i <= MASK_REC_MAX) {
		r = &w->rec[(i - 1) & (MASK_REC_MAX - 1)];
		if (r->kind == kind && r->seq + r->len == seq &&
		    (kind != WREC_TOKEN || ((r->phase + r->len) & 7) == phase)) {
			r->len += n;
			return;
		}
	}
	if (i >= MASK_REC_MAX) {
		w->lost = 1;
		return;
	}
	r = &w->rec[i];
	r->seq = seq;
	r->len = n;
	r->kind = kind;
	r->phase = phase;
	w->nrec = i + 1;
}

/*
 * Gather `need` (2, 4 or 5) bytes at w->pos into st->acc, across skbs.
 * 1 when they are all there (st->have reset), 0 when the skb ended first.
 */
static __always_inline int io_take(void *ctx, const int msg, struct mask_work *w, __u32 need)
{
	struct mask_st *st = &w->st;
	__u8 b[8] = {};

	if (st->have == 0 && w->pos + need <= w->len) {
		if (m_load(ctx, msg, w, w->pos, b, need == 5 ? 5 : need == 4 ? 4 : 2))
			return 0;
		st->acc[0] = b[0];
		st->acc[1] = b[1];
		st->acc[2] = b[2];
		st->acc[3] = b[3];
		st->acc[4] = b[4];
		w->pos += need;
		return 1;
	}
	for (int i = 0; i < 5; i++) {
		if (st->have >= need || w->pos >= w->len)
			break;
		if (m_load(ctx, msg, w, w->pos, b, 1))
			return 0;
		st->acc[st->have & 7] = b[0];
		st->have++;
		w->pos++;
	}
	if (st->have < need)
		return 0;
	st->have = 0;
	return 1;
}

static __always_inline int take(struct __sk_buff *skb, struct mask_work *w, __u32 need)
{
	return io_take(skb, 0, w, need);
}

/* Overwrite n bytes at pos, field offset foff, in style s (field of flen bytes). */
static __always_inline void io_write(void *ctx, const int msg, struct mask_work *w, __u32 pos,
				     __u32 n, __u32 foff, __u32 flen, __u8 s)
{
	__u32 m = n;

	if (s == DBW_MASK_KEEP_LAST4 && flen > 4) {
		__u32 lim = flen - 4;

		m = foff < lim ? lim - foff : 0;
		if (m > n)
			m = n;
	}
	if (m == 0 || m > MASK_BUF)
		return;
	if (s == DBW_MASK_TOKEN)
		m_store(ctx, msg, w, pos, &mask_token[foff & 7], m);
	else
		m_store(ctx, msg, w, pos, mask_stars, m);
	if (msg)
		rec_add(w, pos, m, s == DBW_MASK_TOKEN ? WREC_TOKEN : WREC_STARS, foff & 7);
}

static __always_inline void mask_write(struct __sk_buff *skb, __u32 pos, __u32 n, __u32 foff,
				       __u32 flen, __u8 s)
{
	io_write(skb, 0, NULL, pos, n, foff, flen, s);
}

/* The style of column i, or -1 when no rule names it. */
static __always_inline int col_style(struct mask_st *st, __u32 i)
{
	if (i >= DBW_MASK_COLS || !(st->cols & (1ULL << i)))
		return -1;
	return ((st->style_lo >> i) & 1) | (((st->style_hi >> i) & 1) << 1);
}

/*
 * Result column st->fidx is masked by the rules `hit` (in force): in the
 * style of the first of them (file order). Shared by every protocol's
 * description of a result's columns.
 */
static __always_inline void col_masked(struct mask_st *st, __u32 hit)
{
	__u32 i = st->fidx, zero = 0;
	struct dbw_mask_cfg *cfg;
	__u8 s = DBW_MASK_STARS;

	if (!hit)
		return;
	cfg = bpf_map_lookup_elem(&mask_cfg, &zero);
	for (__u32 j = 0; cfg && j < DBW_MASK_RULES; j++)
		if (hit & (1u << j)) {
			s = cfg->rules[j].style;
			break;
		}
	if (i < DBW_MASK_COLS) {
		st->cols |= 1ULL << i;
		st->style_lo |= (__u64)(s & 1) << i;
		st->style_hi |= (__u64)((s >> 1) & 1) << i;
	} else {
		st->hi_match = 1;
	}
}

/* Result column st->fidx is named h (dbw_name_hash): masked when a rule in force names it. */
static __always_inline void col_named(struct mask_st *st, __u64 h)
{
	__u32 *rules = bpf_map_lookup_elem(&mask_cols, &h);

	if (rules)
		col_masked(st, *rules & st->rules);
}

/*
 * Result column st->fidx, named before, is column attnum of table reloid
 * (PostgreSQL's RowDescription). When the catalog of the connection's
 * database told userspace what that column is (mask_rel), its entry
 * decides instead of the name: a renamed column of a listed table is
 * masked, a same-named column of another table is not. (A column past
 * DBW_MASK_COLS keeps what its name said: hi_match is not undone.)
 */
static __always_inline void col_rel(struct mask_st *st, __u32 reloid, __u16 attnum)
{
	struct dbw_mask_relkey k = { .dbk = st->dbk, .reloid = reloid, .attnum = attnum };
	__u32 *rules, i = st->fidx;

	if (!st->dbk || !reloid)
		return;
	rules = bpf_map_lookup_elem(&mask_rel, &k);
	if (!rules)
		return;
	if (i < DBW_MASK_COLS) {
		st->cols &= ~(1ULL << i);
		st->style_lo &= ~(1ULL << i);
		st->style_hi &= ~(1ULL << i);
	}
	col_masked(st, *rules & st->rules);
}

/* A message ended: where the parser goes next. */
static __always_inline void msg_done(struct mask_st *st)
{
	st->state = st->msg_rem ? MS_SKIP : MS_HDR;
}

/* A DataRow field ended. */
static __always_inline void field_done(struct mask_st *st)
{
	st->fidx++;
	if (st->fidx >= st->nfields)
		msg_done(st);
	else
		st->state = MS_D_FL;
}

/* A field's mode, from its column and the rules in force; flen > 0. */
static __always_inline void field_start(struct mask_st *st, __u32 flen)
{
	int s = col_style(st, st->fidx);

	st->field_len = st->field_rem = flen;
	st->fmode = FM_PASS;
	if (s >= 0) {
		st->fmode = FM_STYLE;
		st->fstyle = s;
		st->masked++;
		cnt_add(DBW_CNT_MASK_FIELDS, 1);
		return;
	}
	if (st->has_cols && (!st->desc || (st->fidx >= DBW_MASK_COLS && st->hi_match))) {
		/* no name to go by: on_unmaskable decides */
		if (!st->allow) {
			st->fmode = FM_STYLE;
			st->fstyle = DBW_MASK_STARS;
			st->masked++;
			cnt_add(DBW_CNT_MASK_FIELDS, 1);
			return;
		}
		st->unmasked++;
		cnt_add(DBW_CNT_MASK_UNMASKED, 1);
	}
	if (st->dets && flen <= DBW_MASK_VALUE) {
		__u32 dets = st->dets;

		/* an email is text; a card number may be stored as a number */
		if (st->desc && st->fidx < DBW_MASK_COLS && (st->nontext & (1ULL << st->fidx)))
			dets &= ~DBW_MDET_EMAIL;
		st->fmode = FM_CHECK;
		v_start(&st->v, dets, flen);
		if (!st->v.alive)
			st->fmode = FM_PASS;
	}
}

/*
 * The bytes of a value-checked field at w->pos, n of them (<= MASK_BUF).
 * A field wholly in this skb is decided, then masked; the part before an
 * skb boundary is masked while the value may still match.
 */
static __always_inline void io_check_chunk(void *ctx, const int msg, struct mask_work *w, __u32 n)
{
	struct mask_st *st = &w->st;
	__u32 foff = st->field_len - st->field_rem;
	int last = n == st->field_rem;

	if (n == 0 || n > MASK_BUF || m_load(ctx, msg, w, w->pos, w->buf, n)) {
		st->v.alive = 0;
		return;
	}
	bpf_loop(n, v_step, NULL, 0);
	if (!last) {
		/* the rest comes in a later skb: mask this part if it may still match */
		if (st->v.alive && (foff == 0 || st->v.prefix_masked)) {
			io_write(ctx, msg, w, w->pos, n, foff, st->field_len, st->dstyle);
			st->v.prefix_masked = 1;
		}
		return;
	}
	if (v_match(&st->v)) {
		if (foff == 0 || st->v.prefix_masked) {
			io_write(ctx, msg, w, w->pos, n, foff, st->field_len, st->dstyle);
			st->masked++;
			cnt_add(DBW_CNT_MASK_FIELDS, 1);
		}
	} else if (st->v.prefix_masked) {
		st->overmasked++;
		cnt_add(DBW_CNT_MASK_OVERMASKED, 1);
	}
}

static __always_inline void check_chunk(struct __sk_buff *skb, struct mask_work *w, __u32 n)
{
	io_check_chunk(skb, 0, w, n);
}

#include "mask_mysql.bpf.h"
#include "mask_resp.bpf.h"

/*
 * Server side: a ParameterStatus ('S') of msg_rem bytes at w->pos. The
 * server reports `session_authorization`, the user the client logged in
 * as, before the first query: the rules that name another db user leave.
 * A message not wholly in this send keeps every candidate (stricter).
 */
const volatile char mask_user_param[] = "session_authorization";

static __always_inline void srv_param(void *ctx, struct mask_work *w)
{
	struct mask_st *st = &w->st;
	__u32 n = st->msg_rem, zero = 0, *named, rules;
	struct dbw_mask_cfg *cfg;
	__u64 h = DBW_FNV_OFFSET;
	int k;

	if (st->user_seen || n < sizeof(mask_user_param) + 1 || n > 128 || w->pos + n > w->len ||
	    m_load(ctx, 1, w, w->pos, w->buf, n & 127))
		return;
	for (k = 0; k < (int)sizeof(mask_user_param); k++)
		if (w->buf[k] != (__u8)mask_user_param[k])
			return;
	for (; k < 128; k++) {
		__u8 c = w->buf[k];

		if (!c)
			break;
		h = fnv(h, c);
	}
	st->user_seen = 1;
	cfg = bpf_map_lookup_elem(&mask_cfg, &zero);
	named = bpf_map_lookup_elem(&mask_srv_user, &h);
	rules = st->cand & ((cfg ? cfg->srv_user_free : 0) | (named ? *named : 0));
	/* the rules in force are settled again before the next run */
	st->cand = rules;
}

/*
 * One step of the PostgreSQL parser at w->pos, over an skb (msg 0) or a
 * sendmsg (msg 1). Returns 1 to stop (bytes done, or nothing more to do),
 * 0 to go on.
 */
static __always_inline int pg_step(void *ctx, const int msg)
{
	struct mask_work *w = mask_work_get();
	struct mask_st *st;
	__u8 b[12] = {};
	__u32 n;

	if (!w || !ctx)
		return 1;
	st = &w->st;
	if (w->pos >= w->len)
		return 1;
	switch (st->state) {
	case MS_HDR: {
		__u32 mlen;
		__u8 type;

		if (!st->started && st->have == 0) {
			/* the lone byte answering SSLRequest / GSSENCRequest */
			if (m_load(ctx, msg, w, w->pos, b, 1))
				return 1;
			if (b[0] == 'N') {
				w->pos++;
				return 0;
			}
			/* 0x16: a TLS handshake record (PostgreSQL 17's direct SSL) */
			if (b[0] == 'S' || b[0] == 'G' || b[0] == 0x16) {
				w->tls = 1;
				st->state = MS_OFF;
				return 1;
			}
		}
		if (!io_take(ctx, msg, w, 5))
			return 1;
		type = st->acc[0];
		mlen = m_be32(&st->acc[1]);
		if (mlen < 4) {
			w->lost = 1;
			return 1;
		}
		st->started = 1;
		st->msg_rem = mlen - 4;
		if (type == 'T') {
			st->state = MS_T_NF;
		} else if (type == 'D') {
			st->rows++;
			st->state = MS_D_NF;
		} else if (type == 'd' && st->msg_rem) {
			/*
			 * COPY TO STDOUT: text rows with no column names and
			 * values the detectors cannot frame. on_unmaskable:
			 * block masks every byte but the separators; allow
			 * passes the row, counted.
			 */
			st->rows++;
			if (st->allow) {
				st->unmasked++;
				cnt_add(DBW_CNT_MASK_UNMASKED, 1);
				st->state = MS_SKIP;
			} else {
				st->masked++;
				st->state = MS_COPY;
			}
		} else {
			if (type == 'C' || type == 'E' || type == 's' || type == 'I') {
				/* a result ended: report it (after its rows were seen) */
				if (st->masked || st->unmasked || st->overmasked)
					mask_record(st, DBW_MASK_REC_RESULT, 0, type);
				st->rows = 0;
			} else if (type == 'Z') {
				/* the next rows need their own description */
				st->desc = 0;
			} else if (msg && type == 'S') {
				srv_param(ctx, w);
			}
			msg_done(st);
		}
		return 0;
	}
	case MS_SKIP:
		n = w->len - w->pos;
		if (n > st->msg_rem)
			n = st->msg_rem;
		w->pos += n;
		st->msg_rem -= n;
		if (!st->msg_rem)
			st->state = MS_HDR;
		return 0;
	case MS_COPY:
		n = w->len - w->pos;
		if (n > st->msg_rem)
			n = st->msg_rem;
		if (n > MASK_BUF)
			n = MASK_BUF;
		if (n == 0 || m_load(ctx, msg, w, w->pos, w->buf, n))
			return 1;
		bpf_loop(n, copy_step, NULL, 0);
		m_store(ctx, msg, w, w->pos, w->buf, n);
		if (msg)
			rec_add(w, w->pos, n, WREC_COPY, 0);
		w->pos += n;
		st->msg_rem -= n;
		if (!st->msg_rem)
			st->state = MS_HDR;
		return 0;
	case MS_T_NF:
		if (!io_take(ctx, msg, w, 2))
			return 1;
		if (st->msg_rem < 2)
			goto lost;
		st->msg_rem -= 2;
		st->nfields = ((__u32)st->acc[0] << 8) | st->acc[1];
		st->fidx = 0;
		st->cols = st->style_lo = st->style_hi = st->nontext = 0;
		st->hi_match = 0;
		st->desc = 1;
		st->nhash = DBW_FNV_OFFSET;
		st->state = st->nfields ? MS_T_NAME : MS_HDR;
		if (!st->nfields)
			msg_done(st);
		return 0;
	case MS_T_NAME: {
		__u32 k;
		__u64 h = st->nhash;
		int nul = -1;

		n = w->len - w->pos;
		if (n > st->msg_rem)
			n = st->msg_rem;
		if (n > 64)
			n = 64;
		if (n == 0)
			goto lost;
		if (m_load(ctx, msg, w, w->pos, w->buf, n & 127))
			return 1;
		for (k = 0; k < 64; k++) {
			__u8 c;

			if (k >= n)
				break;
			c = w->buf[k];
			if (!c) {
				nul = k;
				break;
			}
			h = fnv(h, c);
		}
		st->nhash = h;
		if (nul < 0) {
			w->pos += n;
			st->msg_rem -= n;
			return 0;
		}
		w->pos += nul + 1;
		st->msg_rem -= nul + 1;
		col_named(st, h);
		st->field_rem = 18;
		st->nhash = 0;
		st->state = MS_T_META;
		return 0;
	}
	case MS_T_META:
		/* table oid (4), column number (2), then the type oid; a type cut by an skb: text */
		if (st->msg_rem < st->field_rem)
			goto lost;
		if (st->field_rem == 18 && w->pos + 10 <= w->len &&
		    !m_load(ctx, msg, w, w->pos, b, 10)) {
			__u32 oid = m_be32(b + 6);

			col_rel(st, m_be32(b), ((__u16)b[4] << 8) | b[5]);
			/* text, varchar, bpchar, name, unknown, json, jsonb, char */
			if (oid != 25 && oid != 1043 && oid != 1042 && oid != 19 && oid != 705 &&
			    oid != 114 && oid != 3802 && oid != 18 && st->fidx < DBW_MASK_COLS)
				st->nontext |= 1ULL << st->fidx;
			st->field_rem = 12; /* the 6 bytes read; the rest is skipped below */
			w->pos += 6;
			st->msg_rem -= 6;
		} else if (st->field_rem > 12 && st->dbk) {
			/* the table oid and column number cut by an skb: gathered a byte at a time */
			if (m_load(ctx, msg, w, w->pos, b, 1))
				return 1;
			st->nhash = (st->nhash << 8) | b[0];
			w->pos++;
			st->msg_rem--;
			if (--st->field_rem == 12)
				col_rel(st, (__u32)(st->nhash >> 16), (__u16)st->nhash);
			return 0;
		}
		n = w->len - w->pos;
		if (n > st->field_rem)
			n = st->field_rem;
		if (n > st->msg_rem)
			goto lost;
		w->pos += n;
		st->msg_rem -= n;
		st->field_rem -= n;
		if (st->field_rem)
			return 0;
		st->fidx++;
		st->nhash = DBW_FNV_OFFSET;
		if (st->fidx >= st->nfields)
			msg_done(st);
		else
			st->state = MS_T_NAME;
		return 0;
	case MS_D_NF:
		if (!io_take(ctx, msg, w, 2))
			return 1;
		if (st->msg_rem < 2)
			goto lost;
		st->msg_rem -= 2;
		st->nfields = ((__u32)st->acc[0] << 8) | st->acc[1];
		st->fidx = 0;
		if (st->nfields)
			st->state = MS_D_FL;
		else
			msg_done(st);
		return 0;
	case MS_D_FL: {
		__s32 flen;

		if (!io_take(ctx, msg, w, 4))
			return 1;
		if (st->msg_rem < 4)
			goto lost;
		st->msg_rem -= 4;
		flen = (__s32)m_be32(st->acc);
		if (flen <= 0) {
			/* NULL (-1) or empty */
			field_done(st);
			return 0;
		}
		if ((__u32)flen > st->msg_rem)
			goto lost;
		field_start(st, flen);
		st->state = MS_D_FD;
		return 0;
	}
	case MS_D_FD:
		n = w->len - w->pos;
		if (n > st->field_rem)
			n = st->field_rem;
		if (n > MASK_BUF)
			n = MASK_BUF;
		if (st->fmode == FM_STYLE)
			io_write(ctx, msg, w, w->pos, n, st->field_len - st->field_rem,
				 st->field_len, st->fstyle);
		else if (st->fmode == FM_CHECK)
			io_check_chunk(ctx, msg, w, n);
		w->pos += n;
		st->field_rem -= n;
		st->msg_rem -= n;
		if (!st->field_rem)
			field_done(st);
		return 0;
	default:
		return 1;
	}
lost:
	w->lost = 1;
	return 1;
}

__noinline int mask_step_pg(struct __sk_buff *skb)
{
	return pg_step(skb, 0);
}

__noinline int mask_step_pg_msg(struct sk_msg_md *msg)
{
	return pg_step(msg, 1);
}

struct mask_loop {
	struct __sk_buff *skb;
};

/* bpf_loop callback: one step of the connection's protocol parser. */
static long mask_loop_step(__u32 i, void *ctx)
{
	struct mask_loop *l = ctx;
	struct mask_work *w = mask_work_get();

	if (!w)
		return 1;
	if (w->st.proto == DBW_PROTO_MYSQL)
		return mask_step_mysql(l->skb) ? 1 : 0;
	if (w->st.proto == DBW_PROTO_REDIS)
		return mask_step_resp(l->skb) ? 1 : 0;
	return mask_step_pg(l->skb) ? 1 : 0;
}

/* The rules in force changed: what the parser needs of them. */
static __always_inline void rules_settle(struct mask_st *st, __u32 rules)
{
	__u32 zero = 0;
	struct dbw_mask_cfg *cfg = bpf_map_lookup_elem(&mask_cfg, &zero);

	st->rules = rules;
	st->gen = cfg ? cfg->gen : 0;
	st->dets = 0;
	st->allow = 1;
	st->has_cols = 0;
	st->dstyle = DBW_MASK_STARS;
	if (st->proto == DBW_PROTO_REDIS) {
		/* the reply count (rk.tail) goes on */
		st->rk.rules = cfg ? rules & cfg->key_rules : 0;
		st->rk.style = DBW_MASK_STARS;
	}
	for (__u32 k = 0; cfg && k < DBW_MASK_RULES; k++) {
		struct dbw_mask_rule *r = &cfg->rules[k];

		if (!(rules & (1u << k)))
			continue;
		if (r->detectors && !st->dets)
			st->dstyle = r->style;
		/* a reply masked by key: the style of the first rule with keys */
		if (st->proto == DBW_PROTO_REDIS && (st->rk.rules & ((2u << k) - 1)) == (1u << k))
			st->rk.style = r->style;
		st->dets |= r->detectors;
		st->allow &= r->allow_unmaskable ? 1 : 0;
		st->has_cols |= r->columns ? 1 : 0;
	}
	st->inited = 1;
}

/* Rewrite the server's 1-byte "yes" to encryption into an ErrorResponse. */
static __always_inline int refuse_tls(struct __sk_buff *skb, __u32 pos)
{
	if (pos != 0 || skb->len != 1)
		return -1;
	if (bpf_skb_change_tail(skb, MASK_TLS_ERR_LEN, 0))
		return -1;
	return bpf_skb_store_bytes(skb, 0, (void *)mask_tls_err, MASK_TLS_ERR_LEN, 0);
}

/*
 * Before a run over len bytes of connection key: the rules in force
 * settled, the state copied to the scratch slot. The scratch, or NULL when
 * nothing is to be parsed (*verdict then says what becomes of the bytes).
 */
static __always_inline struct mask_work *mask_begin(struct mask_st *st, __u32 rules, __u64 key,
						    __u32 len, int *verdict)
{
	struct dbw_mask_cfg *cfg;
	struct mask_work *w;
	__u32 zero = 0;

	*verdict = SK_PASS;
	if (st->state == MS_OFF)
		return NULL;
	if (st->state == MS_LOST) {
		if (!st->allow)
			*verdict = SK_DROP; /* the connection is being reset */
		return NULL;
	}
	cfg = bpf_map_lookup_elem(&mask_cfg, &zero);
	if (!st->inited || rules != st->rules || (cfg && cfg->gen != st->gen))
		rules_settle(st, rules);
	if (!rules) {
		/* no rule applies after all (the process, the db user): never again */
		st->state = MS_OFF;
		return NULL;
	}
	w = mask_work_get();
	if (!w)
		return NULL;
	__builtin_memcpy(&w->st, st, sizeof(*st));
	w->key = key;
	w->pos = 0;
	w->len = len;
	w->ws = w->we = 0;
	w->tls = w->lost = w->split = 0;
	w->nrec = 0;
	w->rep.n = 0;
	return w;
}

/*
 * After a run: the state saved, what could not be masked reported and,
 * under on_unmaskable: block, refused. `refused` says whether the caller
 * answered a "yes" to encryption in-protocol (else the bytes are dropped
 * and the connection reset).
 */
static __always_inline int mask_end(struct mask_st *st, struct mask_work *w, int refused)
{
	int verdict = SK_PASS;

	if (w->pos < w->len && !w->tls && !w->lost && !w->split)
		w->lost = 1; /* more steps than the loop runs */
	mask_replies_flush(w);
	__builtin_memcpy(st, &w->st, sizeof(*st));
	if (w->tls) {
		/* 'S': refused in-protocol; 0: dropped, the connection is reset */
		__u8 how = 'S';

		cnt_add(DBW_CNT_MASK_TLS, 1);
		if (!st->allow && !refused) {
			/* Redis has no in-protocol refusal: its ServerHello is dropped */
			verdict = SK_DROP;
			how = 0;
		}
		/* dropped: so are the server's later bytes, until the reset */
		st->state = verdict == SK_DROP ? MS_LOST : MS_OFF;
		mask_record(st, DBW_MASK_REC_TLS, !st->allow, how);
	} else if (w->lost) {
		cnt_add(DBW_CNT_MASK_DESYNC, 1);
		st->state = MS_LOST;
		if (!st->allow)
			verdict = SK_DROP;
		/* w->lost > 1: a protocol's reason (MySQL: a binary result set) */
		mask_record(st, DBW_MASK_REC_LOST, !st->allow, w->lost > 1 ? w->lost : 0);
	}
	return verdict;
}

/*
 * The verdict's body: one skb of the server -> client stream of masked
 * connection key. Always passes the bytes, masked, except what
 * on_unmaskable: block refuses. (The key is a parameter for the test,
 * whose runs each get a socket of their own.)
 */
static __always_inline int mask_verdict(struct __sk_buff *skb, __u64 key)
{
	struct mask_st *st = bpf_map_lookup_elem(&mask_state, &key);
	struct mask_loop l = { .skb = skb };
	struct mask_work *w;
	struct dbw_mask_conn *settled;
	__u32 rules, len = skb->len;
	int verdict, refused = 0;

	cnt_add(DBW_CNT_MASK_SKBS, 1);
	if (!st)
		return SK_PASS;
	settled = bpf_map_lookup_elem(&mask_conn, &key);
	rules = settled ? settled->rules & st->cand : st->cand;
	st->dbk = settled ? settled->dbk : 0;
	w = mask_begin(st, rules, key, len, &verdict);
	if (!w)
		goto out;
	__builtin_memset(&w->peer, 0, sizeof(w->peer));
	bpf_loop(1 << 18, mask_loop_step, &l, 0);
	if (w->tls && !w->st.allow && w->st.proto == DBW_PROTO_POSTGRES)
		refused = !refuse_tls(skb, w->pos);
	verdict = mask_end(st, w, refused);
out:
	st->off += len;
	return verdict;
}

/* ---- the server side ------------------------------------------------------------- */

/* 1 when every rule in `rules` says on_unmaskable: allow. */
static __always_inline int rules_allow(struct dbw_mask_cfg *cfg, __u32 rules)
{
	for (__u32 k = 0; k < DBW_MASK_RULES; k++)
		if ((rules & (1u << k)) && !cfg->rules[k].allow_unmaskable)
			return 0;
	return 1;
}

/*
 * The 4-tuple of a sockops socket, seen from the server. Each field is
 * read into a register at once: clang would otherwise keep a pointer into
 * the context and read through it later, which the verifier refuses.
 */
static __always_inline void srv_peer(struct bpf_sock_ops *skops, struct mask_peer *p)
{
	__u32 r[4], l[4], fam = skops->family;

	p->family = fam;
	p->local_port = (__u16)skops->local_port;
	p->port = (__u16)bpf_ntohl(skops->remote_port);
	if (fam == AF_INET) {
		r[0] = skops->remote_ip4;
		l[0] = skops->local_ip4;
		asm volatile("" : "+r"(r[0]), "+r"(l[0]));
		__builtin_memcpy(p->addr, r, 4);
		__builtin_memcpy(p->local, l, 4);
		return;
	}
	r[0] = skops->remote_ip6[0];
	r[1] = skops->remote_ip6[1];
	r[2] = skops->remote_ip6[2];
	r[3] = skops->remote_ip6[3];
	l[0] = skops->local_ip6[0];
	l[1] = skops->local_ip6[1];
	l[2] = skops->local_ip6[2];
	l[3] = skops->local_ip6[3];
	asm volatile("" : "+r"(r[0]), "+r"(r[1]), "+r"(r[2]), "+r"(r[3]));
	asm volatile("" : "+r"(l[0]), "+r"(l[1]), "+r"(l[2]), "+r"(l[3]));
	__builtin_memcpy(p->addr, r, 16);
	__builtin_memcpy(p->local, l, 16);
}

/*
 * An accepted connection (sockops PASSIVE_ESTABLISHED) on a watched port
 * that server-side rules may select joins socks_srv, whose sk_msg program
 * masks what the server sends. Only PostgreSQL: its server names the db
 * user on its egress (ParameterStatus session_authorization), so the
 * kernel settles the rules alone; the others' users are only in what the
 * client sends. The socket's state lives in sk_storage, so it goes with
 * the socket. One that cannot join is reported (userspace resets it
 * under on_unmaskable: block).
 */
static __always_inline void mask_srv_join(struct bpf_sock_ops *skops)
{
	__u16 port = (__u16)skops->local_port;
	struct dbw_port_cfg *pc = bpf_map_lookup_elem(&ports, &port);
	struct bpf_sock *sk = skops->sk;
	struct mask_peer peer = {};
	struct dbw_rec_mask *r;
	struct mask_srv_st *s;
	struct dbw_mask_cfg *cfg;
	__u32 zero = 0, cand;
	__u64 key;

	if (!pc || pc->proto != DBW_PROTO_POSTGRES || !sk)
		return;
	cfg = bpf_map_lookup_elem(&mask_cfg, &zero);
	if (!cfg)
		return;
	cand = pc->mask_rules & cfg->srv_rules;
	if (!cand)
		return;
	key = bpf_get_socket_cookie(skops);
	srv_peer(skops, &peer);
	s = bpf_sk_storage_get(&mask_srv, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s)
		goto fail;
	s->id = key;
	s->st.cand = cand;
	s->st.proto = DBW_PROTO_POSTGRES;
	s->st.side = DBW_MASK_SIDE_SERVER;
	s->peer = peer;
	if (bpf_sock_hash_update(skops, &socks_srv, &key, BPF_NOEXIST)) {
		bpf_sk_storage_delete(&mask_srv, sk);
		goto fail;
	}
	cnt_add(DBW_CNT_MASK_SRV_CONNS, 1);
	return;
fail:
	cnt_add(DBW_CNT_MASK_JOIN_FAIL, 1);
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		cnt_add(DBW_CNT_MASK_RB_FULL, 1);
		return;
	}
	__builtin_memset(r, 0, sizeof(*r));
	rec_hdr_init(&r->hdr, DBW_REC_MASK, sizeof(*r), key);
	r->kind = DBW_MASK_REC_JOIN_FAIL;
	r->side = DBW_MASK_SIDE_SERVER;
	r->rules = cand;
	r->blocked = !rules_allow(cfg, cand);
	mask_rec_peer(r, &peer);
	bpf_ringbuf_submit(r, BPF_RB_FORCE_WAKEUP);
}

struct mask_msg_loop {
	struct sk_msg_md *msg;
};

/* bpf_loop callback: one parser step over a send, while the record has room for its write. */
static long mask_msg_step(__u32 i, void *ctx)
{
	struct mask_msg_loop *l = ctx;
	struct mask_work *w = mask_work_get();

	if (!w)
		return 1;
	if (w->nrec >= MASK_REC_MAX) {
		w->split = 1;
		return 1;
	}
	return mask_step_pg_msg(l->msg) ? 1 : 0;
}

/*
 * Rewrite the server's 1-byte "yes" to encryption into an ErrorResponse,
 * on its way out. 0, or -1 (the caller drops it).
 */
static __always_inline int refuse_tls_msg(struct sk_msg_md *msg, __u32 pos)
{
	__u8 *d, *end;

	if (pos != 0 || msg->size != 1)
		return -1;
	if (bpf_msg_push_data(msg, 1, MASK_TLS_ERR_LEN - 1, 0) ||
	    bpf_msg_pull_data(msg, 0, MASK_TLS_ERR_LEN, 0))
		return -1;
	d = (__u8 *)(long)msg->data;
	end = (__u8 *)(long)msg->data_end;
	if (d + MASK_TLS_ERR_LEN > end)
		return -1;
	for (int i = 0; i < MASK_TLS_ERR_LEN; i++)
		d[i] = mask_tls_err[i];
	return 0;
}

/*
 * Write n (<= MASK_BUF) bytes at pos of a send as a recorded entry of
 * `kind` had them, and record them for this run. Its own function: the
 * verifier goes over the byte loops once. 0, or -1.
 */
__noinline int mask_rewrite_msg(struct sk_msg_md *msg, __u32 pos, __u32 n, __u32 kind, __u32 phase)
{
	struct mask_work *w = mask_work_get();

	if (!msg || !w || n == 0 || n > MASK_BUF)
		return -1;
	if (kind == WREC_TOKEN) {
		m_store(msg, 1, w, pos, &mask_token[phase & 7], n);
	} else if (kind == WREC_COPY) {
		if (m_load(msg, 1, w, pos, w->buf, n))
			return -1;
		bpf_loop(n, copy_step, NULL, 0);
		m_store(msg, 1, w, pos, w->buf, n);
	} else {
		m_store(msg, 1, w, pos, mask_stars, n);
	}
	rec_add(w, pos, n, kind, phase & 7);
	return 0;
}

struct mask_replay {
	struct sk_msg_md *msg;
	struct mask_srv_st *s;
	__u32 end; /* mask again [0, end) of the send */
	__u32 i, done; /* the entry, its bytes done */
	__u8 fin; /* every entry that overlaps them is done */
};

/*
 * bpf_loop callback: write up to MASK_BUF bytes of a recorded entry again
 * where it overlaps the send's first `end` bytes (they are bytes a send
 * cut short left unsent), and record them for this run.
 */
static long replay_step(__u32 k, void *ctx)
{
	struct mask_replay *r = ctx;
	struct mask_work *w = mask_work_get();
	struct mask_wrec *e;
	__s32 lo, hi;
	__u32 pos, n;
	__u8 phase;

	if (!w)
		return 1;
	if (r->i >= r->s->nrec || r->i >= MASK_REC_MAX) {
		r->fin = 1;
		return 1;
	}
	e = &r->s->rec[r->i];
	lo = (__s32)(e->seq - w->seq);
	hi = (__s32)(e->seq + e->len - w->seq);
	if (lo >= (__s32)r->end) {
		r->fin = 1; /* sorted: the rest lie beyond */
		return 1;
	}
	if (lo < 0)
		lo = 0;
	if (hi > (__s32)r->end)
		hi = r->end;
	pos = lo + r->done;
	if (hi <= lo || pos >= (__u32)hi) {
		r->i++;
		r->done = 0;
		return 0;
	}
	n = hi - pos;
	if (n > MASK_BUF)
		n = MASK_BUF;
	phase = (e->phase + (w->seq + pos - e->seq)) & 7;
	if (mask_rewrite_msg(r->msg, pos, n, e->kind, phase))
		return 1;
	r->done += n;
	return 0;
}

/* bpf_loop callback: entry i of this run's record into the socket's. */
static long rec_save_step(__u32 i, void *ctx)
{
	struct mask_srv_st *s = *(struct mask_srv_st **)ctx;
	struct mask_work *w = mask_work_get();

	if (!w || i >= MASK_REC_MAX)
		return 1;
	s->rec[i] = w->rec[i];
	return 0;
}

/*
 * One send of the server to a client of a server-side masked connection
 * (sk_msg: it runs before the kernel pushes the bytes). Masked in place;
 * dropped only where on_unmaskable: block says so (the server's send then
 * fails and it closes the connection).
 *
 * The bytes go out by a redirect to the socket itself, not a plain pass:
 * when the push ends short (a non-blocking server, a slow reader), the
 * kernel frees what is left and the server sends it again. After a pass
 * the kernel would push that next send without running this program; a
 * redirect has it run again. The run tells a send again from a new one by
 * the socket's write_seq, and masks its bytes from the last run's record.
 * A value the detectors check that a send cuts is masked in part while it
 * may still match, as on the client side (counted when it does not).
 */
static __always_inline int mask_srv_msg(struct sk_msg_md *msg)
{
	struct mask_msg_loop l = { .msg = msg };
	struct mask_replay rp = { .msg = msg };
	struct mask_srv_st *s;
	struct mask_work *w;
	__u32 len = msg->size, seq, again = 0, end;
	int verdict, refused = 0;

	if (!msg->sk)
		return SK_PASS;
	s = bpf_sk_storage_get(&mask_srv, msg->sk, 0, 0);
	if (!s)
		return SK_PASS;
	cnt_add(DBW_CNT_MASK_SRV_SENDS, 1);
	/* it stays set in a send the kernel runs this program on again */
	bpf_msg_apply_bytes(msg, 0);
	if (sk_write_seq(msg->sk, &seq))
		return SK_PASS;
	w = mask_begin(&s->st, s->st.cand, s->id, len, &verdict);
	if (!w)
		return verdict;
	__builtin_memcpy(&w->peer, &s->peer, sizeof(w->peer));
	w->seq = seq;
	if (s->seq_ok && s->seq_next != seq) {
		again = s->seq_next - seq;
		if ((__s32)again < 0 || again > s->span) {
			/* bytes left that this program did not see */
			w->lost = DBW_MASK_LOST_UNSEEN;
			again = 0;
		} else {
			cnt_add(DBW_CNT_MASK_SRV_RESENDS, 1);
			rp.s = s;
			rp.end = again < len ? again : len;
			bpf_loop(1 << 16, replay_step, &rp, 0);
			w->pos = rp.end;
			if (!rp.fin)
				w->lost = 1;
		}
	}
	if (!w->lost && w->pos < len)
		bpf_loop(1 << 18, mask_msg_step, &l, 0);
	if (w->split && !w->lost && bpf_msg_apply_bytes(msg, w->pos))
		w->lost = 1;
	if (w->tls && !w->st.allow)
		refused = !refuse_tls_msg(msg, w->pos);
	verdict = mask_end(&s->st, w, refused);
	end = w->split && !w->lost ? w->pos : len;
	s->st.off += end - (again < len ? again : len);
	if (again < len) {
		/* new bytes: this run's record replaces the last */
		s->seq_next = seq + end;
		s->span = end;
		s->nrec = w->nrec;
		bpf_loop(w->nrec, rec_save_step, &s, 0);
	}
	s->seq_ok = 1;
	/* as the client side's msg_pass: a plain pass (the socket left the hash) is counted */
	if (verdict == SK_PASS && bpf_msg_redirect_hash(msg, &socks_srv, &s->id, 0) != SK_PASS)
		cnt_add(DBW_CNT_PASS_PLAIN, 1);
	return verdict;
}

static __always_inline int mask_skb(struct __sk_buff *skb)
{
	return mask_verdict(skb, bpf_get_socket_cookie(skb));
}

#endif /* DBW_MASK_BPF_H */
