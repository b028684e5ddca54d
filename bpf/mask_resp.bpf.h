/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Result masking of Redis replies (RESP2 and RESP3), the server -> client
 * stream of a masked connection. Included by mask.bpf.h, whose verdict
 * runs mask_step_resp() in its bpf_loop. BPF-only header.
 *
 * A flat streaming scan: every element is a type byte and a line up to
 * CRLF; a blob type's line holds a length n (-1: null), and n bytes and a
 * CRLF follow.
 *
 *   +OK\r\n                      simple string: the line is the value
 *   $17\r\nalice@example.com\r\n  bulk string
 *   =21\r\ntxt:alice@example.com\r\n verbatim: a 3-letter format and ':'
 *   *2\r\n $1\r\na\r\n :7\r\n      aggregates (* % ~ > |) announce a count;
 *                                their elements follow as elements
 *
 * The value detectors of the rules in force (field_start, check_chunk:
 * the same automata as PostgreSQL's DataRow fields) run over every bulk
 * and verbatim value (after its "txt:") and every simple-string line; a
 * value they recognise whole is masked in place in the rule's style, same
 * length, so RESP stays valid. Values longer than DBW_MASK_VALUE are not
 * checked, as for PostgreSQL; blob errors (!), errors (-), numbers and
 * the other line types are framed, not checked. Rule columns mean nothing
 * here: a reply has no column names, so has_cols is never in force.
 *
 * No nesting stack is needed to find the end of a top-level reply: the
 * elements still owed (st->nfields) start at 1, an element read takes one
 * off, an aggregate's header adds its count (twice for a map, %, and for
 * an attribute, |, which also does not count as an element: the reply it
 * annotates follows). At 0 the reply has ended: its counts go out in a
 * MASK record, so that userspace attaches them to the command's event.
 *
 * Any of a type byte, a length line, a value, its CRLF may be cut by an
 * skb; the state (below) is carried in struct mask_st. Values stream
 * through in chunks: nothing is buffered, whatever their size. Framing that
 * is not RESP (an unknown type byte, a bad length line, a missing CRLF,
 * RESP3 streamed strings/aggregates, which Redis never sends) is lost
 * framing: w->lost, and on_unmaskable decides. A first server byte of
 * 0x16 is a TLS handshake record: w->tls.
 *
 * What struct mask_st's fields mean here (the PostgreSQL parser's names):
 *   state      RS_* below (RS_TYPE == MS_HDR, the zeroed state)
 *   nfields    elements still owed by the current top-level reply
 *   nhash      the number of a length or count line being read
 *   fidx       bytes of the current line read so far
 *   field_len, field_rem   the value being read (through field_start)
 *   msg_rem    bytes left of a verbatim value's "txt:" prefix
 *   rows       string values seen in the current reply
 *   hi_match   a MASK record was sent on this connection
 *   acc[5]     the top-level reply's type byte ('>': a push, not a reply)
 *   acc[6]     length line flags (RL_*); acc[7] the element's type byte
 *   (acc[0..4] and have are take()'s, for the CRLF after a value)
 */
#ifndef DBW_MASK_RESP_BPF_H
#define DBW_MASK_RESP_BPF_H

/* Parser states, after the PostgreSQL parser's (MS_OFF, MS_LOST are shared). */
enum {
	RS_TYPE = MS_HDR, /* an element's type byte */
	RS_NUM = 32, /* a length or count line, up to its LF */
	RS_SIMPLE, /* a simple string's bytes, up to CR */
	RS_LF, /* the LF after a simple string's CR */
	RS_LINE, /* another line type (- : , # ( _), skipped to LF */
	RS_VPREFIX, /* a verbatim value's "txt:" */
	RS_BLOB, /* a blob's bytes */
	RS_CRLF, /* the CRLF after a blob */
};

/* Length line flags (acc[6]). */
enum {
	RL_NEG = 1, /* a '-' was read */
	RL_DIGIT = 2, /* a digit was read */
	RL_CR = 4, /* the CR was read */
};

/* Longest length or count line: "*4294967295\r\n", "$-1\r\n". */
#define RESP_NUM_LINE 24
/* Largest count or length the scan follows (Redis caps bulks at 512 MB by default). */
#define RESP_NUM_MAX 0xffffffffULL

/* A byte search in the work buffer (bpf_loop context). */
struct rmask_find {
	__u32 at; /* index of the byte found */
	__u8 c, found;
};

/*
 * bpf_loop callback: stop at byte i of the work buffer if it is f->c.
 * A callback, not an open-coded loop: the code after it is verified
 * once, not once per index it can stop at.
 */
static long rmask_find_step(__u32 i, void *ctx)
{
	struct rmask_find *f = ctx;
	struct mask_work *w = mask_work_get();

	if (!w || i >= MASK_BUF)
		return 1;
	if (w->buf[i & (MASK_BUF - 1)] != f->c)
		return 0;
	f->at = i;
	f->found = 1;
	return 1;
}

/* The index of the first byte c in the work buffer's first n (<= MASK_BUF), or n. */
static __always_inline __u32 rmask_find(__u32 n, __u8 c)
{
	struct rmask_find f = { .at = 0, .c = c, .found = 0 };

	bpf_loop(n, rmask_find_step, &f, 0);
	return f.found && f.at < n ? f.at : n;
}

/* Length line parsing (bpf_loop context). */
struct rmask_numctx {
	__u64 num;
	__u32 used; /* bytes consumed */
	__u8 fl; /* RL_* */
	__u8 done; /* the LF was read */
	__u8 bad;
};

/* bpf_loop callback: byte i of a length or count line. */
static long rmask_num_step(__u32 i, void *ctx)
{
	struct rmask_numctx *x = ctx;
	struct mask_work *w = mask_work_get();
	__u8 c;

	if (!w || i >= MASK_BUF)
		return 1;
	c = w->buf[i & (MASK_BUF - 1)];
	x->used = i + 1;
	if (x->fl & RL_CR) {
		if (c != '\n')
			x->bad = 1;
		x->done = 1;
		return 1;
	}
	if (c == '\r') {
		x->fl |= RL_CR;
	} else if (c == '-' && !(x->fl & (RL_NEG | RL_DIGIT))) {
		x->fl |= RL_NEG;
	} else if (m_digit(c) && x->num <= RESP_NUM_MAX) {
		x->num = x->num * 10 + (c - '0');
		x->fl |= RL_DIGIT;
	} else {
		/* '?': a streamed string or aggregate; anything else: not RESP */
		x->bad = 1;
		return 1;
	}
	return 0;
}

/*
 * An element ended (w->pos is just past it): take it off what the
 * top-level reply owes. At the reply's end its counts go out (gathered,
 * struct dbw_rec_mask_replies) with the offset just past it, so that userspace
 * gives them to the command it answers (a pipeline's replies are all
 * counted before the client reads the first). A reply with nothing to
 * report costs no record, but for the connection's first: it tells
 * userspace that every event of the connection is masked.
 */
static __always_inline void rmask_elem_done(struct __sk_buff *skb, struct mask_work *w)
{
	struct mask_st *st = &w->st;
	struct dbw_mask_reply *e;

	st->state = RS_TYPE;
	if (st->nfields)
		st->nfields--;
	if (st->nfields)
		return;
	if (st->masked || st->unmasked || st->overmasked || !st->hi_match) {
		/* a pipeline's replies: one record for many (mask_replies_flush) */
		if (w->rep.n >= DBW_MASK_REPLIES)
			mask_replies_flush(w);
		e = &w->rep.e[w->rep.n & (DBW_MASK_REPLIES - 1)];
		e->stream_off = st->off + w->pos;
		e->rows = st->rows;
		e->masked = st->masked;
		e->unmasked = st->unmasked;
		e->overmasked = st->overmasked;
		e->msg_type = st->acc[5];
		w->rep.n++;
		st->masked = st->unmasked = st->overmasked = 0;
		st->hi_match = 1;
	}
	st->rows = 0;
}

/*
 * A string value of flen bytes begins (flen > 0): in a reply masked by
 * key, masked whole whatever its length; else the detectors decide it.
 * Redis has no column names: a rule's `columns` never apply, so the
 * PostgreSQL "rows without a description" case (has_cols) is kept off.
 */
static __always_inline void rmask_value_start(struct mask_st *st, __u32 flen)
{
	st->rows++;
	st->has_cols = 0;
	st->desc = 0;
	st->fidx = 0;
	if (st->rk.on) {
		st->field_len = st->field_rem = flen;
		st->fmode = FM_STYLE;
		st->fstyle = st->rk.style;
		st->masked++;
		cnt_add(DBW_CNT_MASK_FIELDS, 1);
		return;
	}
	field_start(st, flen);
}

/*
 * A reply (not a push) begins: pair it with the command it answers, in
 * the order the guard's walk counted the client's commands
 * (struct mask_resp_cmds), and mask it whole when that command names a
 * key a rule in force masks. A reply no command waits for (an error as the
 * server closes) pairs with none. Returns 1 when it may answer such a
 * command but cannot be paired (w->lost: on_unmaskable decides), else 0.
 */
static __always_inline int rmask_pair(struct mask_work *w)
{
	struct mask_st *st = &w->st;
	struct mask_resp_cmds *c = bpf_map_lookup_elem(&mask_resp_cmds, &w->key);
	__u32 n, head;
	__u8 lost;

	if (!c)
		goto unpaired;
	lost = *(volatile __u8 *)&c->lost;
	head = *(volatile __u32 *)&c->head;
	if (lost && (__s32)(st->rk.tail - c->lost_at) >= 0) {
		/* the replies of commands sent before pair still */
		if (lost == RK_BLIND || c->hit_lost)
			goto unpaired;
		return 0;
	}
	if (head == st->rk.tail)
		return 0;
	n = st->rk.tail++;
	*(volatile __u32 *)&c->tail = st->rk.tail;
	if ((c->bits[(n / 64) & (RK_RING / 64 - 1)] >> (n & 63)) & 1)
		st->rk.on = st->rk.rules != 0;
	return 0;
unpaired:
	if (!st->rk.rules)
		return 0;
	w->lost = DBW_MASK_LOST_REDIS_KEYS;
	return 1;
}

/*
 * A type byte at w->pos begins an element. Returns 1 to stop (lost, TLS),
 * 0 to go on.
 */
static __always_inline int rmask_type(struct __sk_buff *skb, struct mask_work *w)
{
	struct mask_st *st = &w->st;
	__u8 t;

	if (bpf_skb_load_bytes(skb, w->pos, &t, 1))
		return 1;
	if (!st->started) {
		st->started = 1;
		if (t == 0x16) {
			/* a TLS handshake record (ServerHello): nothing to read */
			w->tls = 1;
			return 1;
		}
	}
	w->pos++;
	st->acc[7] = t;
	st->acc[6] = 0;
	st->fidx = 0;
	st->nhash = 0;
	if (!st->nfields) {
		/* a top-level reply (or push) begins */
		st->nfields = 1;
		st->acc[5] = t;
		st->rk.on = 0; /* a push answers no command */
		if (t != '>' && rmask_pair(w))
			return 1;
	} else if (st->nfields == 1 && st->acc[5] == '|') {
		/* the reply an attribute annotated */
		st->acc[5] = t;
	}
	switch (t) {
	case '$':
	case '=':
	case '!':
	case '*':
	case '%':
	case '~':
	case '>':
	case '|':
		st->state = RS_NUM;
		return 0;
	case '+':
		st->rows++;
		st->field_len = 0;
		st->fmode = FM_PASS;
		st->v.prefix_masked = 0;
		if (st->dets) {
			/* the line's length is not known yet: every shape may still fit */
			st->fmode = FM_CHECK;
			v_start(&st->v, st->dets, 19 + 18);
			if (!st->v.alive)
				st->fmode = FM_PASS;
		}
		st->state = RS_SIMPLE;
		return 0;
	case '-':
	case ':':
	case ',':
	case '#':
	case '(':
	case '_':
		st->state = RS_LINE;
		return 0;
	}
	w->lost = 1;
	return 1;
}

/*
 * The number of a length or count line is complete (its CRLF read): what
 * the element's type makes of it. 1 to stop (lost), 0 to go on.
 */
static __always_inline int rmask_num_done(struct __sk_buff *skb, struct mask_work *w)
{
	struct mask_st *st = &w->st;
	__u64 n = st->nhash;
	__u8 t = st->acc[7];

	if (!(st->acc[6] & RL_DIGIT) || n > RESP_NUM_MAX)
		return 1;
	if (st->acc[6] & RL_NEG) {
		/* only -1, a null (RESP2 null bulk or array) */
		if (n != 1)
			return 1;
		rmask_elem_done(skb, w);
		return 0;
	}
	switch (t) {
	case '$':
	case '=':
	case '!':
		if (!n) {
			st->field_len = st->field_rem = 0;
			st->state = RS_CRLF;
			return 0;
		}
		st->field_len = st->field_rem = n;
		st->fmode = FM_PASS;
		if (t == '=') {
			if (n < 4)
				return 1;
			st->msg_rem = 4;
			st->state = RS_VPREFIX;
			return 0;
		}
		if (t == '$')
			rmask_value_start(st, n);
		st->state = RS_BLOB;
		return 0;
	case '|':
		/* an attribute map: its pairs come first, then the element it annotates */
		if (n > 0x3fffffff || st->nfields + 2 * n > RESP_NUM_MAX)
			return 1;
		st->nfields += 2 * n;
		st->state = RS_TYPE;
		return 0;
	default:
		if (t == '%')
			n *= 2;
		if (n > 0x7fffffff || st->nfields + n > RESP_NUM_MAX)
			return 1;
		st->nfields += n;
		rmask_elem_done(skb, w);
		return 0;
	}
}

/*
 * Bytes of a length or count line at w->pos: up to RESP_NUM_LINE of them
 * in one step. 1 to stop, 0 to go on.
 */
static __always_inline int rmask_num(struct __sk_buff *skb, struct mask_work *w)
{
	struct mask_st *st = &w->st;
	struct rmask_numctx x = { .num = st->nhash, .fl = st->acc[6] };
	__u32 n = w->len - w->pos;

	if (n > RESP_NUM_LINE)
		n = RESP_NUM_LINE;
	if (n == 0 || n > RESP_NUM_LINE || bpf_skb_load_bytes(skb, w->pos, w->buf, n))
		return 1;
	bpf_loop(n, rmask_num_step, &x, 0);
	if (x.bad || x.used > n)
		goto lost;
	w->pos += x.used;
	st->fidx += x.used;
	st->acc[6] = x.fl;
	st->nhash = x.num;
	if (!x.done) {
		if (st->fidx >= RESP_NUM_LINE)
			goto lost;
		return 0;
	}
	if (rmask_num_done(skb, w))
		goto lost;
	return 0;
lost:
	w->lost = 1;
	return 1;
}

/*
 * Bytes of a simple string at w->pos, up to its CR: up to MASK_BUF of them
 * in one step, fed to the detectors while the line is short enough. A
 * line wholly in this skb is decided, then masked; a part before an skb
 * boundary is masked while the value may still match (check_chunk's rule,
 * with the line's length not known yet). 1 to stop, 0 to go on.
 */
static __always_inline int rmask_simple(struct __sk_buff *skb, struct mask_work *w)
{
	struct mask_st *st = &w->st;
	__u32 n = w->len - w->pos, k, foff = st->fidx;
	int cr = 0;

	if (n > MASK_BUF)
		n = MASK_BUF;
	if (n == 0 || n > MASK_BUF || bpf_skb_load_bytes(skb, w->pos, w->buf, n))
		return 1;
	k = rmask_find(n, '\r');
	cr = k < n;
	if (st->fmode == FM_CHECK && foff + k > DBW_MASK_VALUE)
		/* too long to check; a part already masked is counted below */
		st->fmode = FM_PASS;
	if (st->fmode == FM_CHECK && k)
		bpf_loop(k, v_step, NULL, 0);
	if (!cr) {
		/* the rest comes in a later skb: mask this part while it may match */
		if (st->fmode == FM_CHECK && st->v.alive && k &&
		    (foff == 0 || st->v.prefix_masked)) {
			mask_write(skb, w->pos, k, foff, 0xffffffff, st->dstyle);
			st->v.prefix_masked = 1;
		}
		w->pos += k;
		st->fidx += k;
		return 0;
	}
	/* the line ends here: the value is decided */
	if (st->fmode == FM_CHECK && v_match(&st->v)) {
		if (foff == 0 || st->v.prefix_masked) {
			if (k)
				mask_write(skb, w->pos, k, foff, foff + k, st->dstyle);
			st->masked++;
			cnt_add(DBW_CNT_MASK_FIELDS, 1);
		}
	} else if (st->v.prefix_masked) {
		st->overmasked++;
		cnt_add(DBW_CNT_MASK_OVERMASKED, 1);
	}
	st->v.prefix_masked = 0;
	st->fmode = FM_PASS;
	w->pos += k + 1;
	st->state = RS_LF;
	return 0;
}

/*
 * One step of the Redis reply parser at w->pos. Global: verified once.
 * Consumes at least one byte, or returns 1 to stop (skb done, lost, TLS).
 */
__noinline int mask_step_resp(struct __sk_buff *skb)
{
	struct mask_work *w = mask_work_get();
	struct mask_st *st;
	__u8 b[8] = {};
	__u32 n;

	if (!w || !skb)
		return 1;
	st = &w->st;
	if (w->pos >= w->len)
		return 1;
	switch (st->state) {
	case RS_TYPE:
		return rmask_type(skb, w);
	case RS_NUM:
		return rmask_num(skb, w);
	case RS_SIMPLE:
		return rmask_simple(skb, w);
	case RS_LF:
		if (bpf_skb_load_bytes(skb, w->pos, b, 1) || b[0] != '\n')
			goto lost;
		w->pos++;
		rmask_elem_done(skb, w);
		return 0;
	case RS_LINE: {
		__u32 k;
		int lf = 0;

		n = w->len - w->pos;
		if (n > MASK_BUF)
			n = MASK_BUF;
		if (n == 0 || n > MASK_BUF || bpf_skb_load_bytes(skb, w->pos, w->buf, n))
			return 1;
		k = rmask_find(n, '\n');
		if (k < n) {
			lf = 1;
			k++;
		}
		w->pos += k;
		if (lf)
			rmask_elem_done(skb, w);
		return 0;
	}
	case RS_VPREFIX:
		/* "txt:" or "mkd:": the value the detectors see begins after it */
		n = w->len - w->pos;
		if (n > st->msg_rem)
			n = st->msg_rem;
		w->pos += n;
		st->msg_rem -= n;
		st->field_rem -= n;
		if (st->msg_rem)
			return 0;
		if (st->field_rem) {
			rmask_value_start(st, st->field_rem);
			st->state = RS_BLOB;
		} else {
			st->state = RS_CRLF;
		}
		return 0;
	case RS_BLOB:
		n = w->len - w->pos;
		if (n > st->field_rem)
			n = st->field_rem;
		if (st->fmode == FM_PASS) {
			/* not checked (too long, no detector, a blob error): skip it whole */
			w->pos += n;
			st->field_rem -= n;
		} else {
			if (n > MASK_BUF)
				n = MASK_BUF;
			if (st->fmode == FM_STYLE)
				mask_write(skb, w->pos, n, st->field_len - st->field_rem,
					   st->field_len, st->fstyle);
			else
				check_chunk(skb, w, n);
			w->pos += n;
			st->field_rem -= n;
		}
		if (!st->field_rem)
			st->state = RS_CRLF;
		return 0;
	case RS_CRLF:
		if (!take(skb, w, 2))
			return 1;
		if (st->acc[0] != '\r' || st->acc[1] != '\n')
			goto lost;
		rmask_elem_done(skb, w);
		return 0;
	default:
		return 1;
	}
lost:
	w->lost = 1;
	return 1;
}

#endif /* DBW_MASK_RESP_BPF_H */
