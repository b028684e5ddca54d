/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The guard: in-kernel enforcement of the policy's blocking rules on the
 * client -> server stream of a PostgreSQL connection. BPF-only header.
 *
 * For every send it walks the PostgreSQL messages (a message may span sends:
 * the stream position is kept in sk_storage), lexes each Query and Parse
 * text (lexer.bpf.h), evaluates the connection's rules and, for a
 * statement to block, rewrites the message's text into the rule's
 * replacement: a DO block that makes the server raise SQLSTATE 42501 with
 * the rule's message. The server never runs the statement, answers the
 * client in its own protocol, aborts an open transaction and skips the
 * rest of an extended-protocol batch up to Sync exactly as for any error.
 *
 * Costs nothing when no policy is loaded. Fails closed: what it cannot read
 * follows defaults.unparsed; a rewrite that fails drops the send and asks
 * userspace to reset the connection.
 *
 * Three passes per send, because the capture must see the original bytes:
 *   guard_plan()   read and decide (no change to the message or the state)
 *   capture_msg()  copy the original bytes to the ring buffer
 *   guard_apply()  rewrite the blocked messages, last first, emit verdicts
 */
#ifndef DBW_GUARD_BPF_H
#define DBW_GUARD_BPF_H

#include "maps.bpf.h"
#include "lexer.bpf.h"
#include "resp.bpf.h"
#include "tls.bpf.h"

#define PG_SSL_REQUEST	  80877103u
#define PG_GSSENC_REQUEST 80877104u
#define PG_CANCEL_REQUEST 80877102u
#define PG_MAX_STARTUP	  10000u

/* Messages walked per send, and blocked messages rewritten per send. */
#define GUARD_MAX_MSGS 4096
#define GUARD_MAX_HITS 8
/* Longest Query/Parse held back (corked) until its last byte is sent. */
#define GUARD_MAX_CORK (DBW_LEX_MAX + 1024)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dbw_guard_cfg);
} guard_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DBW_GUARD_RULES);
	__type(key, __u32);
	__type(value, struct dbw_guard_rule);
} guard_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DBW_GUARD_TEXT_SLOTS *DBW_GUARD_PROTOS);
	__type(key, __u32);
	__type(value, struct dbw_guard_text);
} guard_text SEC(".maps");

/* Approved {statement shape, actor} -> expiry (CLOCK_MONOTONIC ns), set by `dbwarden approve`. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct dbw_approval_key);
	__type(value, __u64);
} approvals SEC(".maps");

struct guard_hit {
	__u32 off; /* message start in this send */
	__u32 text_off; /* start of the statement text */
	__u32 text_len; /* its bytes, NUL included */
	__u32 verbs;
	__u32 lex_flags;
	__u64 shape;
	__u64 cgroup_id; /* the actor, for the approval id */
	__u32 uid;
	__u8 type;
	__u8 action;
	__u8 slot; /* rule index or DBW_GUARD_UNPARSED */
	__u8 flags;
};

/* The walk of one send; per CPU because sk_msg runs with the socket locked. */
struct guard_plan {
	__u64 base; /* stream offset of byte 0 of this send */
	__u64 rules;
	struct dbw_approval_key actor; /* who sends: the approvals key, shape set per statement */
	__u32 size;
	__u32 off; /* next message start */
	__u32 left; /* bytes of a message continuing past this send */
	__u32 cork; /* > 0: hold the send until it has this many bytes */
	__u32 nhits;
	__u8 phase;
	__u8 early;
	__u8 unparsed_block;
	__u8 lost; /* the stream cannot be followed past this send */
	__u8 refuse; /* a statement must be blocked but cannot be rewritten */
	__u8 tls; /* judging a TLS write's plaintext at ubuf: no cork, no rewrite */
	__u8 opaque; /* TLS through a library not probed: the guard cannot read it */
	__u8 proto; /* enum dbw_proto of the connection */
	__u8 down; /* no daemon, --fail-mode closed: every statement is refused */
	__u8 pad1[3];
	__u32 relems; /* Redis: elements of the current command still to walk */
	__u32 rw_tail; /* bytes after the last text rewritten: the client's own */
	__u32 split; /* > 0: the plan covers bytes [0, split); the kernel runs again on the rest */
	__u32 pad3;
	__u64 ubuf; /* TLS: the plaintext in the sending task's memory */
	struct guard_hit hits[GUARD_MAX_HITS];
	struct dbw_lex_result lex;
	/* Redis replies masked by key: the send's commands (struct mask_resp_cmds) */
	struct resp_keys keys;
	__u64 kconn;
	__u32 khead; /* commands counted before this send */
	__u32 kcount; /* commands of this send that get a reply */
	__u32 ktail; /* replies the verdict has paired: the ring's room */
	__u32 klost_at;
	__u8 kon; /* the connection's commands are counted */
	__u8 klost, khit_lost, kmulti, kmhit;
	__u8 pad4[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_plan);
} guard_scratch SEC(".maps");

static __always_inline struct guard_plan *plan_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&guard_scratch, &zero);
}

/*
 * No reply from command `at` on can be paired with its command, nor told
 * not to name a masked key (the commands are not seen, or not answered).
 * Pairing lost at an earlier command stays lost from there: what was only
 * unpaired becomes blind, since a later command's keys go unseen.
 */
static __always_inline void rkey_blind_from(struct mask_resp_cmds *c, __u32 at)
{
	if (!c->lost || (__s32)(c->lost_at - at) > 0)
		c->lost_at = at;
	*(volatile __u8 *)&c->lost = RK_BLIND;
}

/*
 * A masked Redis connection's commands go unseen from here (the guard is
 * off, or lost this stream).
 */
static __always_inline void rkey_blind(struct dbw_sk_state *st)
{
	struct mask_resp_cmds *c;

	if (st->proto != DBW_PROTO_REDIS || !st->mask_rules)
		return;
	c = bpf_map_lookup_elem(&mask_resp_cmds, &st->conn_id);
	if (c && c->lost != RK_BLIND)
		rkey_blind_from(c, c->head);
}

/*
 * The plan's view of a masked Redis connection's commands, and what its
 * rules' keys need the walk to look for. Counting is on whenever the
 * record exists: a policy that brings keys later finds the count right.
 */
static __always_inline void rkey_begin(struct guard_plan *p, struct dbw_sk_state *st)
{
	struct mask_resp_cmds *c;
	struct dbw_mask_conn *mc;
	struct dbw_mask_cfg *cfg;
	__u32 zero = 0, rules;

	p->kon = 0;
	p->keys.plens = 0;
	p->keys.any = 0;
	if (st->proto != DBW_PROTO_REDIS || !st->mask_rules)
		return;
	c = bpf_map_lookup_elem(&mask_resp_cmds, &st->conn_id);
	if (!c)
		return;
	p->kon = 1;
	p->kconn = st->conn_id;
	p->kcount = 0;
	p->khead = c->head;
	p->ktail = *(volatile __u32 *)&c->tail;
	p->klost = c->lost;
	p->klost_at = c->lost_at;
	p->khit_lost = c->hit_lost;
	p->kmulti = c->multi;
	p->kmhit = c->multi_hit;
	cfg = bpf_map_lookup_elem(&mask_cfg, &zero);
	if (!cfg || !cfg->key_rules)
		return;
	/* the rules userspace settled, else every candidate: more masked, never less */
	mc = bpf_map_lookup_elem(&mask_conn, &st->conn_id);
	rules = st->mask_rules & (mc ? mc->rules : ~0u);
	p->keys.any = rules & cfg->key_rules;
	if (p->keys.any)
		p->keys.plens = cfg->key_plens;
}

/*
 * A command of the walk that gets a reply was classified (p->keys): count
 * it, and note whether it names a masked key (bit n of the record, written
 * ahead of its head: the verdict reads only below the head, which
 * rkey_commit() moves once the send is decided, so a walk run again after
 * a cork writes the same bits again). A transaction's EXEC names the keys
 * its queued commands name.
 */
static __always_inline void rkey_note(struct guard_plan *p)
{
	struct resp_keys *k = &p->keys;
	struct mask_resp_cmds *c;
	__u64 bit, *word;
	__u32 n;
	int hit;

	if (!p->kon)
		return;
	hit = (k->rules & k->any) != 0;
	if (k->flags & DBW_RKEY_MULTI) {
		p->kmulti = 1;
		p->kmhit = 0;
	} else if (p->kmulti && hit) {
		p->kmhit = 1;
	}
	if (k->flags & (DBW_RKEY_EXEC | DBW_RKEY_DISCARD)) {
		hit = (k->flags & DBW_RKEY_EXEC) && p->kmulti && p->kmhit;
		p->kmulti = 0;
		p->kmhit = 0;
	}
	n = p->khead + p->kcount++;
	if (p->klost) {
		if (hit)
			p->khit_lost = 1;
		return;
	}
	if (k->flags & DBW_RKEY_UNPAIRED) {
		p->klost = RK_UNPAIRED;
		p->klost_at = n;
		return;
	}
	c = bpf_map_lookup_elem(&mask_resp_cmds, &p->kconn);
	if (!c || n - p->ktail >= RK_RING) {
		/* a pipeline deeper than the ring: its replies cannot be paired */
		p->klost = RK_BLIND;
		p->klost_at = n;
		return;
	}
	bit = 1ULL << (n & 63);
	word = &c->bits[(n / 64) & (RK_RING / 64 - 1)];
	if (hit)
		*word |= bit;
	else
		*word &= ~bit;
}

/*
 * The send is dropped after all (refused, a rewrite failed; userspace
 * resets the connection): its commands, counted, get no reply, so no
 * reply from the first of them on can be paired.
 */
static __always_inline void rkey_drop(struct guard_plan *p)
{
	struct mask_resp_cmds *c;

	if (!p->kon)
		return;
	c = bpf_map_lookup_elem(&mask_resp_cmds, &p->kconn);
	if (c)
		rkey_blind_from(c, p->khead);
}

/* The send is decided: its commands counted for the verdict, the head last. */
static __always_inline void rkey_commit(struct guard_plan *p)
{
	struct mask_resp_cmds *c;

	if (!p->kon)
		return;
	c = bpf_map_lookup_elem(&mask_resp_cmds, &p->kconn);
	if (!c)
		return;
	c->multi = p->kmulti;
	c->multi_hit = p->kmhit;
	c->hit_lost = p->khit_lost;
	c->lost_at = p->klost_at;
	*(volatile __u32 *)&c->head = p->khead + p->kcount;
	*(volatile __u8 *)&c->lost = p->klost;
	if (p->lost)
		/* the walk stops following the stream here */
		rkey_blind_from(c, p->khead + p->kcount);
}

/* Copy n (constant, <= 8) bytes at off of the message into dst. 0 or -1. */
static __always_inline int msg_peek(struct sk_msg_md *msg, __u32 off, __u8 *dst, __u32 n)
{
	__u8 *data, *end;

	if (bpf_msg_pull_data(msg, off, off + n, 0))
		return -1;
	data = msg->data;
	end = msg->data_end;
	if (data + n > end)
		return -1;
	for (__u32 i = 0; i < n; i++)
		dst[i] = data[i];
	return 0;
}

/*
 * Copy n (constant, <= 8) bytes at off of what the plan walks: the message,
 * or a TLS write's plaintext in the sender's memory. 0 or -1.
 */
static __always_inline int src_peek(struct sk_msg_md *msg, struct guard_plan *p, __u32 off,
				    __u8 *dst, __u32 n)
{
	if (p->tls)
		return bpf_probe_read_user(dst, n, (void *)(p->ubuf + off)) ? -1 : 0;
	return msg_peek(msg, off, dst, n);
}

static __always_inline __u32 be32(const __u8 *b)
{
	return (__u32)b[0] << 24 | (__u32)b[1] << 16 | (__u32)b[2] << 8 | b[3];
}

/*
 * Does rule r hold for what the lexer read? A statement naming more
 * relations than the lexer keeps may name a rule's object: it holds then.
 */
static __always_inline int rule_holds(const struct dbw_guard_rule *r,
				      const struct dbw_lex_result *lx, __u8 space)
{
	/* verbs of the other protocol's set: the rule means other statements */
	if (r->space && r->space != space)
		return 0;
	if (r->verbs && !(r->verbs & lx->verbs))
		return 0;
	if (r->without_where && !(lx->flags & DBW_LEX_F_WITHOUT_WHERE))
		return 0;
	if (!r->nobjects || (lx->flags & DBW_LEX_F_OBJECTS_FULL))
		return 1;
	for (int i = 0; i < DBW_LEX_OBJECTS; i++) {
		if (i >= r->nobjects)
			break;
		for (int j = 0; j < DBW_LEX_OBJECTS; j++) {
			if (j >= lx->nobjects)
				break;
			if (r->objects[i] == lx->objects[j])
				return 1;
		}
	}
	return 0;
}

/*
 * The first rule of the set (file order) that holds for p->lex, whatever
 * its action: an allow rule before a block rule shadows it, as in
 * userspace. Returns its index, or -1. Global: verified once.
 */
__noinline int guard_eval(__u64 rules)
{
	struct guard_plan *p = plan_get();
	__u8 space;

	if (!p)
		return -1;
	space = p->proto == DBW_PROTO_REDIS ? DBW_SPACE_REDIS : DBW_SPACE_SQL;
	for (__u32 i = 0; i < DBW_GUARD_RULES; i++) {
		struct dbw_guard_rule *r;

		if (!(rules & (1ULL << i)))
			continue;
		r = bpf_map_lookup_elem(&guard_rules, &i);
		if (r && rule_holds(r, &p->lex, space))
			return i;
	}
	return -1;
}

/* bpf_loop callback: stop at the first NUL of the lexer buffer. */
static long find_nul(__u32 i, void *ctx)
{
	__u32 *len = ctx;
	__u8 *buf = lex_text();

	if (!buf || i >= DBW_LEX_MAX)
		return 1;
	if (!buf[i]) {
		*len = i;
		return 1;
	}
	return 0;
}

__noinline int guard_verdict(__u32 off, __u32 text_off, __u32 text_len, __u8 type);

/*
 * Classify the Query/Parse message whose first total bytes are at off in
 * this send (partial: the message goes on past the send) and record a hit
 * when the guard must act. Global: verified once. Returns 0, or -1 when
 * the plan is unavailable.
 */
__noinline int guard_check(struct sk_msg_md *msg, __u32 off, __u32 total, __u8 type, int partial)
{
	struct guard_plan *p = plan_get();
	__u32 text_off = off + 5, text_len, n, qlen;
	__u8 *buf = lex_text();
	__u8 *data, *end;

	if (!p || !buf || !msg)
		return -1;
	if (type == 'P') {
		/* skip the statement name (NUL-terminated, at most 64 bytes) */
		__u32 avail = total - 5 < 64 ? total - 5 : 64, k;

		if (!avail)
			goto unreadable;
		if (p->tls) {
			/* the lexer buffer holds the name for the scan below */
			if (avail > 64 ||
			    bpf_probe_read_user(buf, avail, (void *)(p->ubuf + text_off)))
				goto unreadable;
			data = buf;
			end = buf + avail;
		} else {
			if (bpf_msg_pull_data(msg, text_off, text_off + avail, 0))
				goto unreadable;
			data = msg->data;
			end = msg->data_end;
		}
		for (k = 0; k < 64; k++) {
			if (k >= avail || data + k + 1 > end)
				goto unreadable;
			if (!data[k])
				break;
		}
		if (k >= 64)
			goto unreadable;
		text_off += k + 1;
	}
	if (text_off >= off + total)
		goto unreadable;
	text_len = off + total - text_off;
	n = text_len > DBW_LEX_MAX ? DBW_LEX_MAX : text_len;
	if (p->tls) {
		n &= DBW_LEX_MAX * 2 - 1;
		if (n > DBW_LEX_MAX || bpf_probe_read_user(buf, n, (void *)(p->ubuf + text_off)))
			goto unreadable;
	} else {
		if (bpf_msg_pull_data(msg, text_off, text_off + n, 0))
			goto unreadable;
		data = msg->data;
		end = msg->data_end;
		n &= DBW_LEX_MAX * 2 - 1;
		if (n > DBW_LEX_MAX || data + n > end)
			goto unreadable;
		if (bpf_probe_read_kernel(buf, n, data))
			goto unreadable;
	}
	if (type == 'Q' && !partial && n == text_len) {
		qlen = n - 1; /* a Query ends with its NUL */
	} else if (type == 'M' || type == 'm') {
		qlen = n; /* a MySQL command's text has no NUL: the packet ends it */
	} else {
		/* a Parse's text is followed by its parameter types */
		qlen = n;
		bpf_loop(n, find_nul, &qlen, 0);
		if (qlen < n)
			text_len = qlen + 1;
	}
	sql_lex_mode(qlen, type == 'M' || type == 'm', &p->lex);
	if (partial || (qlen == n && n < text_len))
		p->lex.flags |= DBW_LEX_F_INCOMPLETE;
	guard_verdict(off, text_off, text_len, type);
	return 0;
unreadable:
	p->lost = 1;
	return 0;
}

/*
 * Evaluate the rules on what the lexer read (p->lex) for the statement
 * whose message starts at off, its text at text_off for text_len bytes,
 * and record a hit when the guard must act. Global: verified once.
 * Returns 1 when the hit blocks (a rewrite is due), else 0.
 */
__noinline int guard_verdict(__u32 off, __u32 text_off, __u32 text_len, __u8 type)
{
	struct guard_plan *p = plan_get();
	struct guard_hit *h;
	int rule, approved;

	if (!p)
		return 0;
	cnt_add(DBW_CNT_GUARD_CHECKED, 1);

	rule = guard_eval(p->rules);
	approved = 0;
	if (rule >= 0) {
		struct dbw_guard_rule *r = bpf_map_lookup_elem(&guard_rules, &rule);

		if (!r || r->action < DBW_ACT_APPROVAL)
			rule = -1; /* allowed (alerts are userspace's) */
		else if (r->action == DBW_ACT_APPROVAL &&
			 !(p->lex.flags & (DBW_LEX_F_INCOMPLETE | DBW_LEX_F_UNTERMINATED))) {
			__u64 *until;

			p->actor.shape = p->lex.shape;
			until = bpf_map_lookup_elem(&approvals, &p->actor);
			approved = until && *until > bpf_ktime_get_ns();
		}
	}
	if (p->down && (rule < 0 || approved)) {
		/* neither audited nor approvable now: refused (rules that block still name themselves) */
		rule = DBW_GUARD_DOWN;
		approved = 0;
	}
	if (rule < 0 && !(p->lex.flags & (DBW_LEX_F_INCOMPLETE | DBW_LEX_F_UNTERMINATED)))
		return 0;
	if (p->nhits >= GUARD_MAX_HITS) {
		/* more verdicts in one send than we keep: refuse it if this one blocks */
		if ((rule >= 0 && !approved) || p->unparsed_block)
			p->refuse = 1;
		return 1;
	}
	h = &p->hits[p->nhits & (GUARD_MAX_HITS - 1)];
	h->off = off;
	h->text_off = text_off;
	h->text_len = text_len;
	h->type = type;
	h->verbs = p->lex.verbs;
	h->lex_flags = p->lex.flags;
	h->shape = p->lex.shape;
	h->uid = p->actor.uid;
	h->cgroup_id = p->actor.cgroup_id;
	h->flags = p->early ? DBW_VERDICT_F_EARLY : 0;
	if (rule == DBW_GUARD_DOWN) {
		cnt_add(DBW_CNT_DOWN_BLOCKED, 1);
		h->slot = DBW_GUARD_DOWN;
		h->action = DBW_ACT_BLOCK;
		h->flags |= DBW_VERDICT_F_AGENT_DOWN;
	} else if (rule >= 0) {
		struct dbw_guard_rule *r = bpf_map_lookup_elem(&guard_rules, &rule);

		h->slot = rule;
		h->action = r ? r->action : DBW_ACT_BLOCK;
		if (approved) {
			/* passes; the verdict still tells userspace which approval it used */
			h->action = DBW_ACT_ALLOW;
			h->flags |= DBW_VERDICT_F_APPROVED;
		}
	} else {
		/* unreadable for the lexer: defaults.unparsed decides */
		cnt_add(DBW_CNT_GUARD_UNPARSED, 1);
		h->flags |= DBW_VERDICT_F_UNPARSED;
		h->slot = DBW_GUARD_UNPARSED;
		h->action = p->unparsed_block ? DBW_ACT_BLOCK : DBW_ACT_ALLOW;
	}
	p->nhits++;
	return h->action >= DBW_ACT_APPROVAL;
}

enum { STEP_DONE = 0, STEP_MORE = 1, STEP_CORK = 2 };

/*
 * Copy n (<= RESP_WINDOW) bytes at off of what the plan walks into the
 * lexer buffer. 0 or -1.
 */
static __always_inline int src_copy(struct sk_msg_md *msg, struct guard_plan *p, __u32 off, __u32 n)
{
	__u8 *buf = lex_text();
	__u8 *data, *end;

	if (!buf || n > RESP_WINDOW)
		return -1;
	n &= 2 * RESP_WINDOW - 1;
	if (n > RESP_WINDOW || !n)
		return -1;
	if (p->tls)
		return bpf_probe_read_user(buf, n, (void *)(p->ubuf + off)) ? -1 : 0;
	if (bpf_msg_pull_data(msg, off, off + n, 0))
		return -1;
	data = msg->data;
	end = msg->data_end;
	if (data + n > end)
		return -1;
	return bpf_probe_read_kernel(buf, n, data) ? -1 : 0;
}

#define MYSQL_COM_QUERY	       0x03
#define MYSQL_COM_STMT_PREPARE 0x16
#define MYSQL_CLIENT_COMPRESS  0x20
#define MYSQL_CLIENT_SSL       0x800

/*
 * One packet of the walk of a MySQL client stream at p->off: the
 * HandshakeResponse (an SSLRequest hands the connection to TLS, the
 * compressed protocol cannot be read), then commands: COM_QUERY and
 * COM_STMT_PREPARE texts are lexed with MySQL's rules and judged; every
 * other packet is skipped by its length. Global: the walk loop stays
 * small. Returns as guard_step.
 */
__noinline int mysql_guard_step(struct sk_msg_md *msg)
{
	struct guard_plan *p = plan_get();
	__u32 o, len, total;
	__u8 hdr[8];
	__u8 type;

	if (!p || !msg)
		return STEP_DONE;
	o = p->off;
	if (o >= p->size)
		return STEP_DONE;
	if (p->phase == DBW_MY_TLS_NEXT) {
		/* the ClientHello: as for PostgreSQL, readable only through a probed library */
		p->phase = DBW_PG_OFF;
		p->off = p->size;
		if (tls_in_library())
			return STEP_DONE;
		p->opaque = 1;
		goto lost;
	}
	if (o + 8 > p->size) {
		/* a header, a command byte: all a packet needs to be judged (a
		 * COM_QUIT or COM_PING is 5 bytes: past the end then, it is done) */
		if (o + 5 <= p->size) {
			if (src_peek(msg, p, o, hdr, 5))
				goto lost;
			len = hdr[0] | hdr[1] << 8 | hdr[2] << 16;
			if (o + 4 + len <= p->size) {
				p->off = o + 4 + len;
				return STEP_MORE;
			}
		}
		p->cork = o + 8;
		if (p->tls)
			goto lost;
		return STEP_CORK;
	}
	if (src_peek(msg, p, o, hdr, 8))
		goto lost;
	len = hdr[0] | hdr[1] << 8 | hdr[2] << 16;
	total = len + 4;
	if (p->phase == DBW_PG_STARTUP) {
		/* seq 1; seq 2 in a TLS library's plaintext, after the SSLRequest */
		if ((hdr[3] == 1 || hdr[3] == 2) && len >= 4) {
			__u32 caps = hdr[4] | hdr[5] << 8 | hdr[6] << 16 | (__u32)hdr[7] << 24;

			if (hdr[3] == 1 && len == 32 && (caps & MYSQL_CLIENT_SSL))
				p->phase = DBW_MY_TLS_NEXT;
			else if (caps & MYSQL_CLIENT_COMPRESS)
				goto lost; /* compressed packets: nothing to read */
			else
				p->phase = DBW_PG_NORMAL;
		}
	} else if (hdr[3] == 0 && len >= 1 &&
		   (hdr[4] == MYSQL_COM_QUERY || hdr[4] == MYSQL_COM_STMT_PREPARE)) {
		type = hdr[4] == MYSQL_COM_QUERY ? 'M' : 'm';
		if (len == 1)
			goto next; /* an empty text: the server answers an error */
		if (o + total > p->size) {
			if (total <= GUARD_MAX_CORK && !p->tls) {
				p->cork = o + total;
				return STEP_CORK;
			}
			/* too long to hold back: judge what is here */
			__u32 n = p->nhits;

			guard_check(msg, o, p->size - o, type, 1);
			if (p->nhits > n &&
			    p->hits[n & (GUARD_MAX_HITS - 1)].action >= DBW_ACT_APPROVAL)
				p->refuse = 1; /* part of a packet cannot be rewritten */
		} else {
			guard_check(msg, o, total, type, 0);
		}
	}
next:
	if (o + total > p->size) {
		p->left = o + total - p->size;
		p->off = p->size;
		return STEP_DONE;
	}
	p->off = o + total;
	return STEP_MORE;
lost:
	p->lost = 1;
	return STEP_DONE;
}

/*
 * One step of the walk of a Redis stream at p->off: the header of the
 * next element of a command that spans sends, or a whole command (read,
 * classified, judged). Global: the walk loop stays small. Returns as
 * guard_step.
 */
__noinline int resp_guard_step(struct sk_msg_md *msg)
{
	struct guard_plan *p = plan_get();
	__u32 o, n, hdr = 0, nel = 0, k, total;
	__u8 *b = lex_text();
	__u64 len = 0;
	int r;

	if (!p || !msg || !b)
		return STEP_DONE;
	o = p->off;
	if (o >= p->size)
		return STEP_DONE;
	n = p->size - o;
	if (p->relems) {
		/* "$<len>\r\n", then len bytes and CRLF */
		if (n > RESP_LINE_MAX)
			n = RESP_LINE_MAX;
		if (src_copy(msg, p, o, n) || b[0] != '$')
			goto lost;
		for (k = 1; k < RESP_LINE_MAX; k++) {
			__u8 c;

			if (k >= n)
				goto more; /* the line goes on in the next send */
			c = b[k];
			if (c == '\n')
				break;
			if (c == '\r')
				continue;
			if (c < '0' || c > '9' || len > (1u << 30))
				goto lost;
			len = len * 10 + (c - '0');
		}
		if (k >= RESP_LINE_MAX)
			goto lost;
		total = k + 1 + len + 2;
		p->relems--;
		if (o + total > p->size) {
			p->left = o + total - p->size;
			p->off = p->size;
			return STEP_DONE;
		}
		p->off = o + total;
		return STEP_MORE;
	}
	if (n > RESP_WINDOW)
		n = RESP_WINDOW;
	if (src_copy(msg, p, o, n))
		goto lost;
	r = resp_classify(n, &p->lex, &hdr, &nel, &p->keys);
	if (r < 0)
		goto lost;
	if (r > 0) {
		/* the whole command is here: judged, and rewritten if blocked */
		guard_verdict(o, o, r, 'R');
		/* an empty one ("*0", a blank line) gets no reply */
		if (nel)
			rkey_note(p);
		p->off = o + r;
		return STEP_MORE;
	}
	if (!hdr) {
		/* an inline line not ended: it must end (Redis reads lines whole) */
		if (n < RESP_WINDOW)
			goto more;
		goto lost;
	}
	if ((p->lex.flags & DBW_LEX_F_INCOMPLETE) && n < RESP_WINDOW)
		goto more; /* not even the name and subcommand: they are coming */
	if (guard_verdict(o, o, 0, 'R')) {
		/* to block, but not whole here: hold it back if it may fit */
		if (n < RESP_WINDOW && !p->tls) {
			p->nhits--;
			goto more;
		}
		p->refuse = 1; /* too long to rewrite: the send is refused */
	}
	rkey_note(p);
	/* walk its elements from the first on */
	p->relems = nel;
	p->off = o + hdr;
	return STEP_MORE;
more:
	if (p->tls)
		goto lost; /* a TLS write cannot be held back */
	p->cork = p->size + 1;
	return STEP_CORK;
lost:
	p->lost = 1;
	return STEP_DONE;
}

/*
 * One message of the walk at p->off. Global: the walk loop stays small.
 * Returns STEP_MORE, STEP_DONE (end of the send, or the stream cannot be
 * followed: p->lost), or STEP_CORK (p->cork bytes needed).
 */
__noinline int guard_step(struct sk_msg_md *msg)
{
	struct guard_plan *p = plan_get();
	__u8 hdr[8];
	__u32 o, len, total;

	if (!p || !msg)
		return STEP_DONE;
	if (p->proto == DBW_PROTO_REDIS)
		return resp_guard_step(msg);
	if (p->proto == DBW_PROTO_MYSQL)
		return mysql_guard_step(msg);
	o = p->off;
	if (o >= p->size)
		return STEP_DONE;
	if (p->phase == DBW_PG_STARTUP) {
		if (o + 8 > p->size) {
			p->cork = o + 8;
			if (p->tls)
				goto lost; /* split across TLS writes: cannot be held */
			return STEP_CORK;
		}
		if (src_peek(msg, p, o, hdr, 8))
			goto lost;
		if (hdr[0] == 0x16) {
			/*
			 * A TLS ClientHello after SSLRequest: the rest is
			 * ciphertext. Sent from inside a probed library, the
			 * plaintext comes from its probes (tls_bind); otherwise
			 * nobody can read this connection.
			 */
			p->phase = DBW_PG_OFF;
			p->off = p->size;
			if (tls_in_library())
				return STEP_DONE;
			p->opaque = 1;
			goto lost;
		}
		len = be32(hdr);
		if (len < 8 || len > PG_MAX_STARTUP)
			goto lost;
		if (be32(hdr + 4) != PG_SSL_REQUEST && be32(hdr + 4) != PG_GSSENC_REQUEST &&
		    be32(hdr + 4) != PG_CANCEL_REQUEST)
			p->phase = DBW_PG_NORMAL;
		total = len;
	} else {
		if (o + 5 > p->size) {
			p->cork = o + 5;
			if (p->tls)
				goto lost; /* split across TLS writes: cannot be held */
			return STEP_CORK;
		}
		if (src_peek(msg, p, o, hdr, 5))
			goto lost;
		len = be32(hdr + 1);
		if (len < 4 || len > (1u << 30))
			goto lost;
		total = len + 1;
		if (hdr[0] == 'Q' || hdr[0] == 'P') {
			if (o + total > p->size) {
				/* a TLS write cannot be held back: its plaintext is the caller's */
				if (total <= GUARD_MAX_CORK && !p->tls) {
					p->cork = o + total;
					return STEP_CORK;
				}
				/* too long to hold back: judge what is here */
				__u32 n = p->nhits;

				total = p->size - o;
				guard_check(msg, o, total, hdr[0], 1);
				if (p->nhits > n &&
				    p->hits[n & (GUARD_MAX_HITS - 1)].action >= DBW_ACT_APPROVAL)
					/* part of a message cannot be rewritten */
					p->refuse = 1;
				p->left = len + 1 - total;
				p->off = p->size;
				return STEP_DONE;
			}
			guard_check(msg, o, total, hdr[0], 0);
		}
	}
	if (o + total > p->size) {
		p->left = o + total - p->size;
		p->off = p->size;
		return STEP_DONE;
	}
	p->off = o + total;
	return STEP_MORE;
lost:
	p->lost = 1;
	return STEP_DONE;
}

/*
 * A fresh plan for a send of size bytes starting at stream offset base of
 * the stream the guard follows, or NULL when the guard has nothing to do
 * on this connection (no policy, not PostgreSQL, stream not followed).
 */
static __always_inline struct guard_plan *guard_begin(struct dbw_sk_state *st, __u64 base,
						      __u32 size)
{
	__u32 zero = 0;
	struct dbw_guard_cfg *cfg = bpf_map_lookup_elem(&guard_cfg, &zero);
	struct guard_plan *p;
	__u64 *rules;
	int down;

	if (!cfg || !cfg->enabled || (cfg->redis_only && st->proto != DBW_PROTO_REDIS)) {
		/* unfollowed bytes: a policy loaded later cannot frame this stream */
		if (st->phase != DBW_PG_OFF)
			st->phase = DBW_PG_OFF;
		goto unfollowed;
	}
	if (st->phase == DBW_PG_OFF || st->proto < DBW_PROTO_POSTGRES ||
	    st->proto > DBW_PROTO_REDIS)
		goto unfollowed;
	p = plan_get();
	if (!p)
		goto unfollowed;
	p->proto = st->proto;
	rkey_begin(p, st);
	p->relems = 0;
	if (st->proto == DBW_PROTO_REDIS) {
		__u32 *w = bpf_map_lookup_elem(&resp_walk, &st->conn_id);

		p->relems = w ? *w : 0;
	}
	p->base = base;
	p->size = size;
	p->tls = 0;
	p->opaque = 0;
	p->ubuf = 0;
	p->phase = st->phase;
	p->nhits = 0;
	p->rw_tail = size;
	p->split = 0;
	p->cork = 0;
	p->lost = 0;
	p->refuse = 0;
	p->unparsed_block = cfg->unparsed_block;
	p->actor.uid = st->who.uid;
	p->actor.cgroup_id = st->who.cgroup_id;
	p->actor.pad = 0;
	rules = bpf_map_lookup_elem(&conn_rules, &st->conn_id);
	/* until userspace has seen the connection: its port's rules, for its workload */
	p->rules = rules ? *rules : st->rules & workload_rules(st->who.cgroup_id);
	p->early = !rules;
	p->down = 0;
	if (!p->rules)
		p->unparsed_block = 0; /* nothing to enforce here: nothing to fail closed for */
	else
		p->down = agent_fail_closed(&down);
	return p;
unfollowed:
	rkey_blind(st);
	return NULL;
}

/*
 * Walk the messages of p's send from the socket's saved position: classify
 * each Query/Parse, collect the ones to act on. Changes neither the message
 * nor the socket state. NULL (and *cork set) when the send must be held.
 */
static __always_inline struct guard_plan *guard_walk(struct sk_msg_md *msg, struct dbw_sk_state *st,
						     struct guard_plan *p, __u32 start, int *cork)
{
	__u32 skip, rest = p->size - start, first;

	skip = st->msg_left < rest ? st->msg_left : rest;
	p->off = start + skip;
	p->left = st->msg_left - skip;
	first = p->off;
	for (int i = 0; i < GUARD_MAX_MSGS; i++) {
		int r = guard_step(msg);

		if (r == STEP_MORE)
			continue;
		if (r == STEP_CORK && p->off > first && p->proto != DBW_PROTO_REDIS) {
			/*
			 * Whole messages before the one to hold back go out now,
			 * and the kernel runs the program again on the rest: a
			 * cork of the whole send would grow with every send of a
			 * pipelining client whose sends end inside a statement.
			 * (PostgreSQL and MySQL stop at the start of the message
			 * they hold back; a Redis walk may be inside a command.)
			 */
			p->split = p->off;
			break;
		}
		if (r == STEP_CORK) {
			if (bpf_msg_cork_bytes(msg, p->cork) == 0) {
				cnt_add(DBW_CNT_GUARD_CORKED, 1);
				*cork = 1;
				return NULL;
			}
			p->lost = 1;
		}
		break;
	}
	if (p->off < p->size && !p->lost && !p->split)
		p->lost = 1; /* more messages in one send than the walk follows */
	return p;
}

/*
 * Plan the guard's work on a plaintext send: walk its messages, classify each
 * Query/Parse, collect the ones to rewrite. Changes neither the message nor
 * the socket state. The first `again` bytes are a resend of bytes walked
 * before (msg_again): the walk starts after them. Returns the plan, or NULL
 * when the guard has nothing to do on this connection (no policy,
 * encrypted, or a corked send: then *cork is set and the caller passes the
 * send on unread, to be run again).
 */
static __always_inline struct guard_plan *guard_plan(struct sk_msg_md *msg, struct dbw_sk_state *st,
						     __u32 again, int *cork)
{
	struct guard_plan *p;

	*cork = 0;
	p = guard_begin(st, st->off[DBW_DIR_TO_SERVER] - again, msg->size);
	return p ? guard_walk(msg, st, p, again, cork) : NULL;
}

/*
 * The plan for a send that follows bytes the guard never saw (msg_again):
 * nothing in it can be framed, so it is lost from its first byte, and
 * refused when the connection has rules and the policy fails closed.
 */
static __always_inline struct guard_plan *guard_plan_unseen(struct dbw_sk_state *st, __u32 size)
{
	struct guard_plan *p = guard_begin(st, st->off[DBW_DIR_TO_SERVER], size);

	if (p) {
		p->off = 0;
		p->left = 0;
		p->lost = 1;
	}
	return p;
}

static __always_inline void emit_verdict(struct dbw_sk_state *st, struct guard_plan *p,
					 struct guard_hit *h)
{
	struct dbw_rec_verdict *v = bpf_ringbuf_reserve(&events, sizeof(*v), 0);

	if (!v) {
		cnt_add(DBW_CNT_RB_FULL_DATA, 1);
		return;
	}
	rec_hdr_init(&v->hdr, DBW_REC_VERDICT, sizeof(*v), st->conn_id);
	v->stream_off = p->base + h->off;
	v->verbs = h->verbs;
	v->lex_flags = h->lex_flags;
	v->action = h->action;
	v->rule = h->slot >= DBW_GUARD_RULES ? DBW_GUARD_NO_RULE : h->slot;
	v->msg_type = h->type;
	v->flags = h->flags;
	v->pad = 0;
	v->shape = h->shape;
	bpf_ringbuf_submit(v, rb_submit_flags());
}

/*
 * Replace the text of hit h with its rule's replacement (DBW_GUARD_TEXT
 * bytes, NUL included) and fix the message length. 0 or -1.
 */
__noinline int guard_rewrite(struct sk_msg_md *msg, struct guard_hit *h, __u32 proto)
{
	__u32 slot, old, len_off, newlen;
	struct dbw_guard_text *t;
	__u8 *data, *end;
	__u8 lenb[4];
	int delta;

	if (!msg || !h || proto < DBW_PROTO_POSTGRES || proto > DBW_PROTO_REDIS)
		return -1;
	/* each protocol has its own replacement texts */
	slot = h->slot + (proto - DBW_PROTO_POSTGRES) * DBW_GUARD_TEXT_SLOTS;
	t = bpf_map_lookup_elem(&guard_text, &slot);
	if (!t)
		return -1;
	old = h->text_len;
	if (old > (1u << 30))
		return -1;
	delta = (int)DBW_GUARD_TEXT - (int)old;
	if (delta > 0 && bpf_msg_push_data(msg, h->text_off, delta, 0))
		return -1;
	if (delta < 0 && bpf_msg_pop_data(msg, h->text_off, -delta, 0))
		return -1;
	if (bpf_msg_pull_data(msg, h->text_off, h->text_off + DBW_GUARD_TEXT, 0))
		return -1;
	data = msg->data;
	end = msg->data_end;
	if (data + DBW_GUARD_TEXT > end)
		return -1;
	__builtin_memcpy(data, t->text, DBW_GUARD_TEXT);
	if (t->id_off) {
		/* the approval id, as userspace derives it from the verdict; at a
		 * fixed place in the text so that the offsets are constants */
		__u64 id = dbw_approval_id(h->shape, h->uid, h->cgroup_id);

		for (int i = DBW_APPROVAL_ID_LEN - 1; i >= 0; i--) {
			__u8 d = id & 15;

			data[DBW_APPROVAL_ID_OFF + i] = d < 10 ? '0' + d : 'a' + d - 10;
			id >>= 4;
		}
	}
	if (proto == DBW_PROTO_REDIS)
		return 0; /* a whole command replaced: no length word */
	if (proto == DBW_PROTO_MYSQL) {
		/* the packet's 3-byte little-endian payload length, at its start */
		if (msg_peek(msg, h->off, lenb, 4))
			return -1;
		newlen = (lenb[0] | lenb[1] << 8 | lenb[2] << 16) + delta;
		if (newlen >= 0xffffff)
			return -1;
		if (bpf_msg_pull_data(msg, h->off, h->off + 3, 0))
			return -1;
		data = msg->data;
		end = msg->data_end;
		if (data + 3 > end)
			return -1;
		data[0] = newlen;
		data[1] = newlen >> 8;
		data[2] = newlen >> 16;
		return 0;
	}
	/* the length word counts itself and everything after the type byte */
	len_off = h->off + 1;
	if (msg_peek(msg, len_off, lenb, 4))
		return -1;
	newlen = be32(lenb) + delta;
	if (bpf_msg_pull_data(msg, len_off, len_off + 4, 0))
		return -1;
	data = msg->data;
	end = msg->data_end;
	if (data + 4 > end)
		return -1;
	data[0] = newlen >> 24;
	data[1] = newlen >> 16;
	data[2] = newlen >> 8;
	data[3] = newlen;
	return 0;
}

/*
 * Commit the walk to the socket state. Returns 1 when the send cannot be
 * followed or rewritten and the policy fails closed: the caller refuses it
 * whole (guard_refuse).
 */
static __always_inline int guard_commit(struct dbw_sk_state *st, struct guard_plan *p)
{
	st->phase = p->phase;
	st->msg_left = p->left;
	if (p->proto == DBW_PROTO_REDIS) {
		__u32 w = p->relems;

		if (w)
			bpf_map_update_elem(&resp_walk, &st->conn_id, &w, BPF_ANY);
		else
			bpf_map_delete_elem(&resp_walk, &st->conn_id);
	}
	if (p->early)
		cnt_add(DBW_CNT_GUARD_EARLY, 1);
	if (p->lost) {
		cnt_add(DBW_CNT_GUARD_LOST, 1);
		st->phase = DBW_PG_OFF;
	}
	rkey_commit(p);
	return p->refuse || (p->lost && p->unparsed_block);
}

/* Report a send refused whole; userspace resets the connection on it. */
static __always_inline void guard_refuse(struct dbw_sk_state *st, struct guard_plan *p, __u8 flags)
{
	struct guard_hit h = {
		.off = p->off,
		.type = '?',
		.action = DBW_ACT_BLOCK,
		.slot = DBW_GUARD_UNPARSED,
		.flags = DBW_VERDICT_F_FAILED | DBW_VERDICT_F_UNPARSED | flags,
	};

	emit_verdict(st, p, &h);
	cnt_add(DBW_CNT_GUARD_FAILED, 1);
}

/*
 * After the capture: commit the walk to the socket state, rewrite the
 * blocked messages (last first, so earlier offsets stay valid) and report
 * every verdict that is not a plain allow. Returns the sk_msg verdict.
 */
static __always_inline int guard_apply(struct sk_msg_md *msg, struct dbw_sk_state *st,
				       struct guard_plan *p)
{
	int verdict = SK_PASS;

	if (guard_commit(st, p)) {
		guard_refuse(st, p, p->opaque ? DBW_VERDICT_F_TLS : 0);
		rkey_drop(p);
		return SK_DROP;
	}
	for (int i = GUARD_MAX_HITS - 1; i >= 0; i--) {
		struct guard_hit *h;

		if (i >= p->nhits)
			continue;
		h = &p->hits[i];
		if (h->action >= DBW_ACT_APPROVAL) {
			if (p->rw_tail > p->size - h->text_off - h->text_len)
				p->rw_tail = p->size - h->text_off - h->text_len;
			if (guard_rewrite(msg, h, p->proto)) {
				h->flags |= DBW_VERDICT_F_FAILED;
				cnt_add(DBW_CNT_GUARD_FAILED, 1);
				verdict = SK_DROP;
			} else {
				cnt_add(DBW_CNT_GUARD_BLOCKED, 1);
			}
		}
		emit_verdict(st, p, h);
	}
	if (verdict != SK_PASS)
		rkey_drop(p);
	return verdict;
}

/*
 * The guard on a TLS write (call c of session s, bound to st): walk the
 * plaintext in the caller's buffer as if it were the send. A write with a
 * statement to block cannot be rewritten (what leaves is ciphertext): it is
 * captured now (its call fails, so the return probe will not see it),
 * dropped whole, and the socket refuses every later send until userspace
 * resets it on the verdict. Returns the sk_msg verdict.
 */
static __always_inline int tls_guard(struct sk_msg_md *msg, struct dbw_sk_state *st,
				     struct tls_call *c)
{
	struct tls_sess *s = tls_sess_of(bpf_get_current_pid_tgid() >> 32, c->ssl);
	struct guard_plan *p;
	int cork, block;

	if (!s)
		return SK_PASS;
	p = guard_begin(st, s->off[DBW_DIR_TO_SERVER], c->len);
	if (!p)
		return SK_PASS;
	p->tls = 1;
	p->ubuf = c->buf;
	if (!guard_walk(msg, st, p, 0, &cork))
		return SK_PASS;
	block = guard_commit(st, p);
	for (int i = 0; i < GUARD_MAX_HITS; i++)
		if (i < p->nhits && p->hits[i].action >= DBW_ACT_APPROVAL)
			block = 1;
	if (block) {
		st->tls = DBW_TLS_DROP;
		tls_emit(st->conn_id, s, c->buf, c->len, DBW_DIR_TO_SERVER);
		c->captured = 1;
		cnt_add(DBW_CNT_TLS_BLOCKED, 1);
	}
	if (p->refuse || (p->lost && p->unparsed_block))
		guard_refuse(st, p, DBW_VERDICT_F_TLS);
	for (int i = 0; i < GUARD_MAX_HITS; i++) {
		struct guard_hit *h = &p->hits[i];

		if (i >= p->nhits)
			break;
		if (block)
			h->flags |= DBW_VERDICT_F_TLS;
		emit_verdict(st, p, h);
	}
	return block ? SK_DROP : SK_PASS;
}

/*
 * A send of a bound TLS socket that no library probe saw: part of a write
 * already judged, or, with no daemon running (the probes went with it),
 * plaintext nobody reads: counted then. It passes even under --fail-mode
 * closed: a dropped send leaves the client waiting for an answer (no
 * in-protocol error can be written into ciphertext, and no reset can be
 * sent from here); closed mode refuses new connections instead.
 */
static __always_inline int tls_unseen(struct dbw_sk_state *st)
{
	int down;

	agent_fail_closed(&down);
	if (down)
		cnt_add(DBW_CNT_DOWN_TLS_WRITES, 1);
	return SK_PASS;
}

/*
 * Every send of a socket a TLS session writes through: bind the session on
 * its first write, judge each write once, never capture the ciphertext.
 * Returns -1 when the socket is not TLS (the plaintext path goes on), else
 * the sk_msg verdict.
 */
static __always_inline int tls_on_send(struct sk_msg_md *msg, struct dbw_sk_state *st)
{
	struct tls_call *c;

	if (st->tls == DBW_TLS_DROP)
		return SK_DROP;
	c = tls_bind(st);
	if (!st->tls)
		return -1;
	if (c)
		return tls_guard(msg, st, c);
	return tls_unseen(st);
}

#endif /* DBW_GUARD_BPF_H */
