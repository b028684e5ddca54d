/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Result masking of MySQL/MariaDB text result sets: the server -> client
 * stream of a masked connection, read by the verdict of mask.bpf.h, with
 * the shared pieces (take, col_named, field_start, check_chunk,
 * mask_write, mask_record). Included by mask.bpf.h. BPF-only header.
 *
 * Packets, as the server sends them:
 *
 *   +---------+-----+----------------------------------+
 *   | len u24 | seq | payload (len bytes)              |
 *   |  (LE)   | u8  | len == 0xffffff: goes on in the  |
 *   +---------+-----+ next packet, after its header    |
 *                   +----------------------------------+
 *
 * A response to a command:
 *   OK 0x00 | ERR 0xff | LOCAL INFILE 0xfb | result set(s):
 *   column count (lenenc)
 *   ColumnDefinition41 x count: lenenc strings catalog, schema, table,
 *     org_table, name, org_name, [MariaDB extended metadata], then 13 fixed
 *     bytes: 0x0c, charset u16, length u32, type u8, flags u16, decimals
 *     u8, filler u16 -- the type is the 7th byte from the packet's end
 *   [EOF 0xfe, payload 5 bytes; absent with CLIENT_DEPRECATE_EOF]
 *   rows: count lenenc strings (0xfb NULL) each (text protocol)
 *   end: EOF 0xfe (5 bytes) or OK with a 0xfe header (deprecate EOF; a
 *     row cannot start with 0xfe unless it fills a 0xffffff packet), or
 *     ERR 0xff; status flag SERVER_MORE_RESULTS_EXISTS: another result
 *
 * The header of a continuation packet is skipped wherever it falls, in a
 * value or in a length word: never masked, never hashed.
 *
 * Which command a response answers cannot be told from the server's bytes
 * alone (a binary row, 0x00 + NULL bitmap, reads as a text row whose first
 * value is empty). The sk_msg program of the same socket follows the
 * client's packets (mask_my_track) and queues, per command that gets a
 * response, its kind (and an EXECUTE's or FETCH's statement id) in
 * `mask_my_cmds`; the verdict takes one per response.
 *
 * Binary rows (COM_STMT_EXECUTE, COM_STMT_FETCH) are read by their column
 * types: length-encoded values (strings, decimals) are masked as text
 * values are; a binary number or date of a column a rule names is zeroed
 * (no style fits it). MariaDB sends an EXECUTE's column definitions only
 * with the PREPARE when the client caches metadata, and a FETCH never: the
 * PREPARE answer's columns are kept per statement (`mask_my_stmts`). A
 * binary result whose columns are not known, or of more than DBW_MASK_COLS
 * columns, is unmaskable when a rule could apply (block: the connection is
 * reset at its first row; allow: passed, counted, alerted).
 */
#ifndef DBW_MASK_MYSQL_BPF_H
#define DBW_MASK_MYSQL_BPF_H

/* Parser states of st->state (MS_HDR, MS_OFF, MS_LOST are shared). */
enum {
	MY_FIRST = 32, /* a packet's first payload byte: what it is */
	MY_SKIP, /* the rest of a packet not read */
	MY_COUNT, /* a result's column count */
	MY_MDF, /* MariaDB: the "metadata follows" byte after the count */
	MY_CD_LEN, /* ColumnDefinition: a string's length */
	MY_CD_STR, /* ColumnDefinition: a string's bytes (the name is hashed) */
	MY_CD_TAIL, /* ColumnDefinition: up to its type byte */
	MY_ROW_FL, /* text row: a value's length */
	MY_ROW_FD, /* text row: a value's bytes */
	MY_OK, /* the head of an OK/EOF packet */
	MY_BIN_NB, /* binary row: its 0x00 header and NULL bitmap */
	MY_BIN_COL, /* binary row: the next column's value, by its type */
};

/* st->my.phase */
enum { MY_PH_GREET = 0, MY_PH_AUTH, MY_PH_CMD };

/* st->my.ctx: what the next packet of a response is. */
enum {
	MC_START = 0, /* a response's (or a further result's) first packet */
	MC_COLS, /* a column definition */
	MC_COLS_END, /* the EOF after them, or (deprecate EOF) a row or the end */
	MC_ROWS, /* a row or the result's end */
	MC_PREP_OK, /* MY_OK: the COM_STMT_PREPARE answer's head */
	MC_PREP, /* its parameter and column definitions (and EOFs) */
	MC_PREP_END, /* its last EOF, or the next response */
	MC_FIELDS, /* COM_FIELD_LIST: definitions up to EOF or ERR */
	MC_PREP_COLS, /* its result's column definitions (after the parameters' EOF) */
	MC_COLS_EOF, /* MY_OK: the EOF after a result's definitions (a cursor opened?) */
};

/* st->my.binary: the rows of this result are binary, and what is done with them. */
enum { MYB_TEXT = 0, MYB_UNDECIDED, MYB_PARSE, MYB_SKIP, MYB_UNMASKABLE };

/* A value of a named column that is a binary number or time: zeroed. */
#define FM_ZERO 3

/* Kinds of commands, as queued in mask_my_cmds (4 bits). */
enum {
	MK_TEXT = 0, /* COM_QUERY and the rest: OK, ERR, EOF or text result sets */
	MK_EXEC = 1, /* COM_STMT_EXECUTE: binary result sets */
	MK_PREP = 2, /* COM_STMT_PREPARE: OK + definitions */
	MK_FETCH = 3, /* COM_STMT_FETCH: binary rows, no definitions */
	MK_FIELDS = 4, /* COM_FIELD_LIST: definitions, EOF */
	MK_RAW = 5, /* COM_STATISTICS: one packet of text */
	MK_AUTH = 6, /* COM_CHANGE_USER: authentication again */
	MK_OTHER = 7, /* replication streams and the like: cannot be followed */
	MK_NONE = 15, /* no response (COM_QUIT, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA) */
};

#define MY_SERVER_MORE_RESULTS	0x0008
#define MY_SERVER_CURSOR_EXISTS 0x0040
#define MY_CLIENT_COMPRESS	0x20
#define MY_CLIENT_SSL		0x800
#define MY_LOST_BINARY		DBW_MASK_LOST_MYSQL_BINARY /* w->lost: a binary result set */
#define MY_TRACK_STEPS		64

const volatile __u8 my_zeros[MASK_BUF] = {};

/*
 * A prepared statement's result columns, from its COM_STMT_PREPARE answer:
 * MariaDB sends them only there when the client caches metadata, and a
 * COM_STMT_FETCH never has them. Keyed by connection and statement id; LRU:
 * an entry evicted makes that statement's binary results unmaskable.
 */
struct my_stmt_key {
	__u64 conn;
	__u32 stmt;
	__u32 pad;
};

struct my_stmt_meta {
	__u64 cols, style_lo, style_hi, nontext;
	__u32 nfields;
	__u8 hi_match;
	__u8 pad[3];
	__u8 types[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct my_stmt_key);
	__type(value, struct my_stmt_meta);
} mask_my_stmts SEC(".maps");

/* ---- the client's commands (sk_msg) --------------------------------------------- */

static __always_inline __u8 my_cmd_kind(__u8 cmd)
{
	switch (cmd) {
	case 0x01: /* COM_QUIT */
	case 0x18: /* COM_STMT_SEND_LONG_DATA */
	case 0x19: /* COM_STMT_CLOSE */
		return MK_NONE;
	case 0x17: /* COM_STMT_EXECUTE */
	case 0xfa: /* MariaDB COM_STMT_BULK_EXECUTE */
		return MK_EXEC;
	case 0x16:
		return MK_PREP;
	case 0x1c:
		return MK_FETCH;
	case 0x04:
		return MK_FIELDS;
	case 0x09:
		return MK_RAW;
	case 0x11:
		return MK_AUTH;
	case 0x12: /* COM_BINLOG_DUMP */
	case 0x14: /* COM_TABLE_DUMP */
	case 0x15: /* COM_CONNECT_OUT */
	case 0x1e: /* COM_BINLOG_DUMP_GTID */
		return MK_OTHER;
	default:
		return MK_TEXT;
	}
}

/* One byte of the send at off. 0 or -1. */
static __always_inline int my_msg_byte(struct sk_msg_md *msg, __u32 off, __u8 *b)
{
	__u8 *data, *end;

	if (bpf_msg_pull_data(msg, off, off + 1, 0))
		return -1;
	data = msg->data;
	end = msg->data_end;
	if (data + 1 > end)
		return -1;
	*b = data[0];
	return 0;
}

/*
 * A packet header is complete in c->hacc, at o in the send: the
 * HandshakeResponse's capabilities (TLS: nothing more to follow;
 * compression: cannot be followed), or a command (seq 0, not the
 * continuation of a 0xffffff packet) whose command byte is awaited
 * (c->hhave stays 4). Returns the bytes of the packet still to skip.
 */
static __always_inline __u32 my_track_hdr(struct sk_msg_md *msg, struct mask_my_cmds *c, __u32 o)
{
	__u32 len = c->hacc[0] | c->hacc[1] << 8 | c->hacc[2] << 16;
	__u8 seq = c->hacc[3], big = c->big, b = 0;

	c->big = len == 0xffffff;
	if (!c->seen_hs && seq == 1 && len >= 4) {
		/* the client's first packet: its capability flags (u32 LE) */
		c->seen_hs = 1;
		if (!my_msg_byte(msg, o + 1, &b)) {
			if (b & (MY_CLIENT_SSL >> 8))
				c->off = 1; /* TLS follows: the verdict sees the server's */
		} else {
			c->lost = 1;
		}
		if (!my_msg_byte(msg, o, &b)) {
			if (b & MY_CLIENT_COMPRESS)
				c->lost = 1; /* compressed packets: not followed */
		} else {
			c->lost = 1;
		}
	}
	c->hhave = 0;
	if (big || seq != 0 || len == 0)
		return len;
	c->hhave = 4;
	c->plen = len;
	return 0;
}

/* Queue one command's kind for the verdict: the kind first, then the count. */
static __always_inline void my_push(struct mask_my_cmds *c, __u8 kind)
{
	__u32 h = c->head, sh = (h & 15) * 4;
	__u64 k = (c->kinds & ~(15ULL << sh)) | ((__u64)kind << sh);

	*(volatile __u64 *)&c->kinds = k;
	*(volatile __u32 *)&c->head = h + 1;
}

/*
 * sk_msg, plaintext sends of a masked MySQL connection: walk the client's
 * packets in bytes [start, size) of the send (before start: bytes sent
 * again, walked already; past size: left to a later run) from where the
 * last send left off, and queue each command's kind (what its response
 * looks like) for the verdict. A header or command byte
 * cut by a send is completed by the next. Whatever cannot be followed
 * sets c->lost: the verdict then reports its framing lost. Verified once, as
 * a global function: inlined with a variable start, the sk_msg program
 * passed the verifier's million instructions. Returns 0.
 */
__noinline int mask_my_track(struct sk_msg_md *msg, __u32 proto, __u64 conn_id, __u32 start,
			     __u32 size)
{
	struct mask_my_cmds *c;
	__u32 o, skip;

	if (!msg || proto != DBW_PROTO_MYSQL || start >= size)
		return 0;
	c = bpf_map_lookup_elem(&mask_my_cmds, &conn_id);
	if (!c || c->off || c->lost)
		return 0;
	skip = c->left < size - start ? c->left : size - start;
	c->left -= skip;
	o = start + skip;
	for (int i = 0; i < MY_TRACK_STEPS; i++) {
		__u8 b = 0, id[4] = {};
		__u32 sid;

		if (o >= size)
			return 0;
		if (c->hhave == 4) {
			/* the command byte of a packet of c->plen bytes */
			if (my_msg_byte(msg, o, &b))
				goto lost;
			c->hhave = 0;
			b = my_cmd_kind(b);
			/* an EXECUTE's or FETCH's statement id, after the command byte
			 * (cut by a send: 0, which names no statement); 0 for the others */
			sid = 0;
			if ((b == MK_EXEC || b == MK_FETCH) && o + 5 <= size && c->plen >= 5 &&
			    !my_msg_byte(msg, o + 1, &id[0]) && !my_msg_byte(msg, o + 2, &id[1]) &&
			    !my_msg_byte(msg, o + 3, &id[2]) && !my_msg_byte(msg, o + 4, &id[3]))
				sid = id[0] | id[1] << 8 | id[2] << 16 | (__u32)id[3] << 24;
			c->stmt[c->head & 15] = sid;
			if (b != MK_NONE)
				my_push(c, b);
			skip = c->plen;
		} else if (c->hhave == 0 && o + 4 <= size) {
			if (my_msg_byte(msg, o, &c->hacc[0]) ||
			    my_msg_byte(msg, o + 1, &c->hacc[1]) ||
			    my_msg_byte(msg, o + 2, &c->hacc[2]) ||
			    my_msg_byte(msg, o + 3, &c->hacc[3]))
				goto lost;
			o += 4;
			skip = my_track_hdr(msg, c, o);
		} else {
			if (my_msg_byte(msg, o, &b))
				goto lost;
			c->hacc[c->hhave & 3] = b;
			c->hhave++;
			o++;
			if (c->hhave < 4)
				continue;
			skip = my_track_hdr(msg, c, o);
		}
		if (o + skip > size) {
			c->left = o + skip - size;
			return 0;
		}
		o += skip;
		if (c->off)
			return 0;
	}
	if (o < size)
		goto lost; /* more packets in one send than followed */
	return 0;
lost:
	c->lost = 1;
	return 0;
}

/* ---- the server's responses (sk_skb verdict) ------------------------------------ */

/*
 * The step cannot go on: the skb ended (1), or the packet ended where a
 * value or length word needs more (framing lost: 1 with w->lost), or a
 * continuation packet's header comes next (0).
 */
static __always_inline int my_more(struct mask_work *w)
{
	if (w->pos >= w->len)
		return 1;
	if (!w->st.my.pkt_rem && !w->st.my.more) {
		w->lost = 1;
		return 1;
	}
	return 0;
}

/*
 * A length-encoded integer at w->pos, within the current packet's
 * payload, gathered across skbs and packets into my->lval. Returns 1 (a
 * value), 2 (NULL, 0xfb), 0 (the skb or the packet ended first: call
 * again after my_more) or -1 (0xff: not a length).
 */
static __always_inline int my_lenenc(struct __sk_buff *skb, struct mask_work *w)
{
	struct mask_my *my = &w->st.my;
	__u8 c = 0;

	for (int i = 0; i < 9; i++) {
		if (w->pos >= w->len || !my->pkt_rem)
			return 0;
		if (bpf_skb_load_bytes(skb, w->pos, &c, 1))
			return 0;
		w->pos++;
		my->pkt_rem--;
		if (!my->lhave) {
			if (c < 0xfb) {
				my->lval = c;
				return 1;
			}
			if (c == 0xfb)
				return 2;
			if (c == 0xff)
				return -1;
			my->lneed = c == 0xfc ? 2 : c == 0xfd ? 3 : 8;
			my->lval = 0;
			my->lhave = 1;
			continue;
		}
		my->lval |= (__u64)c << ((8 * (my->lhave - 1)) & 63);
		if (my->lhave++ >= my->lneed) {
			my->lhave = 0;
			return 1;
		}
	}
	return 0;
}

/* A result (or a whole response) ended: report what was masked in it. */
static __always_inline void my_result_end(struct __sk_buff *skb, struct mask_st *st, __u8 type)
{
	if (st->masked || st->unmasked || st->overmasked)
		mask_record(st, DBW_MASK_REC_RESULT, 0, type);
	st->rows = 0;
	st->desc = 0;
}

/* Length of the length-encoded integer starting with c. */
static __always_inline __u32 my_lenenc_size(__u8 c)
{
	return c < 0xfb ? 1 : c == 0xfc ? 3 : c == 0xfd ? 4 : c == 0xfe ? 9 : 1;
}

/*
 * The head of an OK or EOF packet is in my->okb: its status flags. An EOF
 * is 5 bytes (0xfe, warnings, status); an OK (0x00, or 0xfe closing a
 * result under CLIENT_DEPRECATE_EOF) has two length-encoded integers
 * before them.
 */
static __always_inline __u32 my_status(struct mask_my *my)
{
	__u32 i;

	if (my->plen == 5 && my->okb[0] == 0xfe)
		return my->okb[3] | my->okb[4] << 8;
	i = 1 + my_lenenc_size(my->okb[1]);
	if (i > 10)
		return 0;
	i += my_lenenc_size(my->okb[i & 15]);
	if (i + 2 > my->okn || i > 19)
		return 0;
	return my->okb[i & 31] | my->okb[(i + 1) & 31] << 8;
}

/*
 * The queued kind of the command this new response, first byte first,
 * answers; -1: not followed (the client stream was lost, or no command
 * waits for it: only an ERR may come unasked, as the server closes).
 */
static __always_inline int my_pop(struct __sk_buff *skb, struct mask_my *my, __u8 first)
{
	__u64 key = bpf_get_socket_cookie(skb), kinds;
	struct mask_my_cmds *c = bpf_map_lookup_elem(&mask_my_cmds, &key);
	__u32 head;

	if (!c)
		return -1;
	head = *(volatile __u32 *)&c->head;
	kinds = *(volatile __u64 *)&c->kinds;
	if (c->lost || head - my->tail > 16)
		return -1;
	if (head == my->tail)
		return first == 0xff ? MK_TEXT : -1;
	my->stmt = c->stmt[my->tail & 15];
	return (kinds >> ((my->tail++ & 15) * 4)) & 15;
}

/* The prepared statement's columns, as its COM_STMT_PREPARE answer gave them. */
static __always_inline void my_stmt_save(struct __sk_buff *skb, struct mask_st *st)
{
	struct my_stmt_key k = { .conn = bpf_get_socket_cookie(skb), .stmt = st->my.last_stmt };
	struct my_stmt_meta m = {};

	m.cols = st->cols;
	m.style_lo = st->style_lo;
	m.style_hi = st->style_hi;
	m.nontext = st->nontext;
	m.nfields = st->nfields;
	m.hi_match = st->hi_match;
	__builtin_memcpy(m.types, st->my.types, sizeof(m.types));
	bpf_map_update_elem(&mask_my_stmts, &k, &m, BPF_ANY);
}

/*
 * A binary result without its column definitions: take its statement's.
 * 1 when known (and, given a column count, of that many columns), else 0.
 */
static __always_inline int my_stmt_load(struct __sk_buff *skb, struct mask_st *st)
{
	struct my_stmt_key k = { .conn = bpf_get_socket_cookie(skb),
				 .stmt = st->my.stmt == ~0u ? st->my.last_stmt : st->my.stmt };
	struct my_stmt_meta *m = bpf_map_lookup_elem(&mask_my_stmts, &k);

	if (!m || (st->nfields && m->nfields != st->nfields))
		return 0;
	st->cols = m->cols;
	st->style_lo = m->style_lo;
	st->style_hi = m->style_hi;
	st->nontext = m->nontext;
	st->nfields = m->nfields;
	st->hi_match = m->hi_match;
	__builtin_memcpy(st->my.types, m->types, sizeof(m->types));
	st->desc = 1;
	return 1;
}

/*
 * The first row of a binary result set: parse its rows (a rule names a
 * column, or detectors run), skip them (nothing to mask), or unmaskable
 * (no column definitions to go by, or more columns than the kernel keeps
 * types of); then my->bin_unm is the fields counted per row.
 */
static __always_inline __u8 my_binary_plan(struct mask_st *st)
{
	int rules = st->has_cols || st->dets;
	__u32 named = 0;

	if (!rules)
		return MYB_SKIP;
	if (st->desc && !st->hi_match && st->nfields <= DBW_MASK_COLS)
		return st->cols || st->dets ? MYB_PARSE : MYB_SKIP;
	for (int i = 0; i < DBW_MASK_COLS; i++)
		named += (st->cols >> i) & 1;
	st->my.bin_unm = named ? named : 1;
	return MYB_UNMASKABLE;
}

/* Bytes of a binary value of type t with a fixed size; 0: length-prefixed. */
static __always_inline __u32 my_fixed_size(__u8 t)
{
	switch (t) {
	case 1: /* TINY */
		return 1;
	case 2: /* SHORT */
	case 13: /* YEAR */
		return 2;
	case 3: /* LONG */
	case 9: /* INT24 */
	case 4: /* FLOAT */
		return 4;
	case 8: /* LONGLONG */
	case 5: /* DOUBLE */
		return 8;
	default:
		return 0;
	}
}

/* DATE, TIMESTAMP, TIME, DATETIME: a length byte, then binary fields. */
static __always_inline int my_temporal(__u8 t)
{
	return t == 10 || t == 7 || t == 11 || t == 12;
}

/*
 * COM_STMT_PREPARE answer: after its parameters (my->defs left), its
 * result's columns (my->pcols), read as a result's are, kept per statement.
 */
static __always_inline void my_prep_next(struct mask_st *st)
{
	struct mask_my *my = &st->my;

	if (my->defs) {
		my->ctx = MC_PREP;
		return;
	}
	if (!my->pcols) {
		my->ctx = MC_PREP_END;
		return;
	}
	st->nfields = my->pcols;
	st->fidx = 0;
	st->cols = st->style_lo = st->style_hi = st->nontext = 0;
	st->hi_match = 0;
	st->desc = 0;
	my->prep = 1;
	my->ctx = MC_PREP_COLS;
}

/*
 * A ColumnDefinition's name (c 4) or origin name (c 5) was read. MySQL
 * says where a column comes from: `org_table` and `org_name`, whatever the
 * query calls it. A column is masked, decided once both are read, by the
 * rules that list its name bare (`ssn`: by its name or its origin's, so
 * `ssn AS x` too), its origin (`users.ssn`, `shop.users.ssn`), or its name
 * as the column of a qualified one (`users.ssn` masks a column called ssn
 * in any table: a view's columns name the view as their origin, so the
 * name alone decides there; more masked, never less).
 */
static __always_inline void my_cd_named(struct mask_st *st, __u8 c)
{
	struct mask_my *my = &st->my;
	__u64 h = st->nhash;
	__u32 *r = bpf_map_lookup_elem(&mask_cols, &h);

	if (r)
		my->hits |= *r & st->rules;
	if (c == 4) {
		h = dbw_name_key_any(st->nhash);
		r = bpf_map_lookup_elem(&mask_cols, &h);
		if (r)
			my->hits |= *r & st->rules;
		return;
	}
	h = my->qhash;
	r = bpf_map_lookup_elem(&mask_cols, &h);
	if (r)
		my->hits |= *r & st->rules;
	h = my->shash;
	r = bpf_map_lookup_elem(&mask_cols, &h);
	if (r)
		my->hits |= *r & st->rules;
	col_masked(st, my->hits);
}

/*
 * A packet's first payload byte c at w->pos, not consumed: what the packet
 * is, given the phase and where the response is. Returns as the step.
 */
static __always_inline int my_packet(struct __sk_buff *skb, struct mask_work *w, __u8 c)
{
	struct mask_st *st = &w->st;
	struct mask_my *my = &st->my;
	int k;

	st->state = MY_SKIP;
	if (my->phase == MY_PH_GREET) {
		my->phase = MY_PH_AUTH;
		return 0;
	}
	if (my->phase == MY_PH_AUTH) {
		/* auth switch 0xfe, more data 0x01, ... until OK (or ERR) */
		if (c == 0x00) {
			my->phase = MY_PH_CMD;
			my->ctx = MC_START;
			my->cont = 0;
		}
		return 0;
	}
	switch (my->ctx) {
	case MC_START:
		if (!my->cont) {
			k = my_pop(skb, my, c);
			if (k < 0 || k == MK_OTHER)
				goto lost;
			my->kind = k;
			if (k == MK_RAW)
				return 0;
			if (k == MK_AUTH) {
				my->phase = MY_PH_AUTH;
				st->state = MY_FIRST; /* read again as an auth packet */
				return 0;
			}
			if (k == MK_FIELDS) {
				my->ctx = MC_FIELDS;
				st->state = MY_FIRST;
				return 0;
			}
			if (k == MK_FETCH) {
				/* binary rows of an open cursor: its statement's definitions */
				st->nfields = 0;
				st->cols = st->nontext = 0;
				st->desc = 0;
				st->hi_match = 0;
				my_stmt_load(skb, st);
				my->binary = MYB_UNDECIDED;
				my->ctx = MC_ROWS;
				st->state = MY_FIRST;
				return 0;
			}
			if (k == MK_PREP && c == 0x00) {
				my->ctx = MC_PREP_OK;
				my->okn = 0;
				st->state = MY_OK;
				return 0;
			}
		}
		my->cont = 0;
		if (c == 0x00 || c == 0xfe) {
			/* OK (or an EOF): another result may follow */
			my->okn = 0;
			st->state = MY_OK;
		} else if (c == 0xff) {
			my_result_end(skb, st, c);
		} else if (c == 0xfb) {
			my->cont = 1; /* LOCAL INFILE: the client sends, then an OK or ERR */
		} else {
			st->state = MY_COUNT;
		}
		return 0;
	case MC_COLS:
		my->cstr = 0;
		st->state = MY_CD_LEN;
		return 0;
	case MC_COLS_END:
		/* an EOF is 5 bytes; the OK ending a result (deprecate EOF) 7 or more */
		my->ctx = MC_ROWS;
		if (c == 0xfe && my->plen == 5) {
			/* the EOF after the definitions: its status says if a cursor opened */
			my->ctx = MC_COLS_EOF;
			my->okn = 0;
			st->state = MY_OK;
			return 0;
		}
		st->state = MY_FIRST; /* deprecate EOF: a row or the end */
		return 0;
	case MC_ROWS:
		if (c == 0xff) {
			my->ctx = MC_START;
			my_result_end(skb, st, c);
			return 0;
		}
		if (c == 0xfe && my->plen < 0xffffff) {
			my->okn = 0;
			st->state = MY_OK;
			return 0;
		}
		st->rows++;
		if (my->binary) {
			if (my->binary == MYB_UNDECIDED)
				my->binary = my_binary_plan(st);
			if (my->binary == MYB_SKIP)
				return 0;
			if (my->binary == MYB_UNMASKABLE) {
				if (!st->allow) {
					w->lost = MY_LOST_BINARY;
					return 1;
				}
				st->unmasked += my->bin_unm;
				cnt_add(DBW_CNT_MASK_UNMASKED, my->bin_unm);
				return 0;
			}
			my->okn = 0;
			st->state = MY_BIN_NB;
			return 0;
		}
		st->fidx = 0;
		st->state = MY_ROW_FL;
		return 0;
	case MC_PREP:
		/* parameter definitions: skipped */
		if (c == 0xfe && my->plen == 5)
			return 0;
		if (my->defs && !--my->defs)
			my_prep_next(st);
		return 0;
	case MC_PREP_COLS:
		if (c == 0xfe && my->plen == 5)
			return 0; /* the parameters' EOF */
		my->cstr = 0;
		st->state = MY_CD_LEN;
		return 0;
	case MC_PREP_END:
		my->ctx = MC_START;
		my->cont = 0;
		if (c == 0xfe && my->plen == 5)
			return 0;
		st->state = MY_FIRST; /* deprecate EOF: the next response */
		return 0;
	case MC_FIELDS:
		if (c == 0xff || (c == 0xfe && my->plen == 5))
			my->ctx = MC_START;
		return 0;
	}
lost:
	w->lost = 1;
	return 1;
}

/*
 * One step of the MySQL/MariaDB parser at w->pos. Global: verified once.
 * Returns 1 to stop (skb done, framing lost, encrypted), 0 to go on; a
 * step that returns 0 consumed a byte or moved to a state that will.
 */
__noinline int mask_step_mysql(struct __sk_buff *skb)
{
	struct mask_work *w = mask_work_get();
	struct mask_st *st;
	struct mask_my *my;
	__u8 b[8] = {};
	__u32 n;
	int r;

	if (!w || !skb)
		return 1;
	st = &w->st;
	my = &st->my;
	if (w->pos >= w->len)
		return 1;
	if (st->state != MS_HDR && !my->pkt_rem && my->more) {
		/* the payload goes on in the next packet: its header is no data */
		if (!take(skb, w, 4))
			return 1;
		my->pkt_rem = st->acc[0] | st->acc[1] << 8 | st->acc[2] << 16;
		my->more = my->pkt_rem == 0xffffff;
		return 0;
	}
	switch (st->state) {
	case MS_HDR:
		if (!take(skb, w, 4))
			return 1;
		if (my->phase == MY_PH_AUTH && st->acc[0] == 0x16 && st->acc[1] == 0x03 &&
		    st->acc[2] <= 0x04) {
			/* a TLS record where an auth packet would be: SSLRequest */
			w->tls = 1;
			st->state = MS_OFF;
			return 1;
		}
		my->plen = my->pkt_rem = st->acc[0] | st->acc[1] << 8 | st->acc[2] << 16;
		my->more = my->pkt_rem == 0xffffff;
		st->started = 1;
		st->state = MY_FIRST;
		return 0;
	case MY_FIRST:
		if (!my->pkt_rem) {
			/* an empty packet: no response starts with one */
			if (my->phase == MY_PH_CMD)
				goto lost;
			st->state = MS_HDR;
			return 0;
		}
		if (bpf_skb_load_bytes(skb, w->pos, b, 1))
			return 1;
		return my_packet(skb, w, b[0]);
	case MY_SKIP:
		if (!my->pkt_rem) {
			st->state = MS_HDR;
			return 0;
		}
		n = w->len - w->pos;
		if (n > my->pkt_rem)
			n = my->pkt_rem;
		w->pos += n;
		my->pkt_rem -= n;
		return 0;
	case MY_COUNT:
		r = my_lenenc(skb, w);
		if (r == 0)
			return my_more(w);
		if (r != 1 || my->lval == 0 || my->lval > 4096)
			goto lost;
		st->nfields = my->lval;
		st->fidx = 0;
		st->cols = st->style_lo = st->style_hi = st->nontext = 0;
		st->hi_match = 0;
		st->desc = 1;
		my->binary = my->kind == MK_EXEC || my->kind == MK_FETCH ? MYB_UNDECIDED : MYB_TEXT;
		my->ctx = MC_COLS;
		st->state = my->pkt_rem ? MY_MDF : MY_SKIP;
		return 0;
	case MY_MDF:
		/* MariaDB's cached metadata (prepared statements): 0 here, no
		 * definitions follow (their EOF does, without deprecate EOF) */
		if (bpf_skb_load_bytes(skb, w->pos, b, 1))
			return 1;
		if (b[0] == 0) {
			st->desc = 0;
			if (my->binary)
				my_stmt_load(skb, st);
			my->ctx = MC_COLS_END;
		}
		st->state = MY_SKIP;
		return 0;
	case MY_CD_LEN:
		r = my_lenenc(skb, w);
		if (r == 0)
			return my_more(w);
		if (r < 0 || my->lval > 0xffff)
			goto lost;
		st->field_rem = r == 2 ? 0 : my->lval;
		st->nhash = DBW_FNV_OFFSET_CI;
		/* catalog, schema, table, org_table, name, org_name: see my_cd_named */
		if (my->cstr == 1) {
			my->shash = DBW_FNV_OFFSET_Q;
			my->hits = 0;
		} else if (my->cstr == 3) {
			my->qhash = DBW_FNV_OFFSET_Q;
			my->shash = fnv(my->shash, '.');
		} else if (my->cstr == 5) {
			my->qhash = fnv(my->qhash, '.');
			my->shash = fnv(my->shash, '.');
		}
		st->state = MY_CD_STR;
		return 0;
	case MY_CD_STR: {
		__u64 h = st->nhash, q = my->qhash, sq = my->shash;
		__u8 c = my->cstr;

		n = w->len - w->pos;
		if (n > my->pkt_rem)
			n = my->pkt_rem;
		if (n > st->field_rem)
			n = st->field_rem;
		if (n > 64)
			n = 64;
		if (st->field_rem && !n)
			return my_more(w);
		if ((c == 1 || c >= 3) && n) {
			/* names (MySQL compares them without case) */
			if (bpf_skb_load_bytes(skb, w->pos, w->buf, n & 127))
				return 1;
			for (__u32 k = 0; k < 64; k++) {
				__u8 b;

				if (k >= n)
					break;
				b = dbw_ascii_lower(w->buf[k]);
				h = fnv(h, b);
				q = fnv(q, b);
				sq = fnv(sq, b);
			}
			st->nhash = h;
			if (c != 4) { /* the alias is no part of the origin */
				my->qhash = q;
				my->shash = sq;
			}
		}
		w->pos += n;
		my->pkt_rem -= n;
		st->field_rem -= n;
		if (st->field_rem)
			return 0;
		my->cstr++;
		if (c == 4 || c == 5)
			my_cd_named(st, c);
		st->state = c == 5 ? MY_CD_TAIL : MY_CD_LEN;
		return 0;
	}
	case MY_CD_TAIL:
		/* org_name, MariaDB's extended metadata, then 13 fixed bytes: the type is
		 * the 7th from the end */
		if (my->more || my->pkt_rem < 6)
			goto lost;
		if (my->pkt_rem > 6) {
			n = w->len - w->pos;
			if (n > my->pkt_rem - 6)
				n = my->pkt_rem - 6;
			w->pos += n;
			my->pkt_rem -= n;
			return 0;
		}
		if (bpf_skb_load_bytes(skb, w->pos, b, 1))
			return 1;
		/* text: VARCHAR, JSON, ENUM, SET, the BLOBs, VAR_STRING, STRING */
		if (b[0] != 15 && b[0] != 245 && b[0] != 247 && b[0] != 248 &&
		    (b[0] < 249 || b[0] > 254) && st->fidx < DBW_MASK_COLS)
			st->nontext |= 1ULL << st->fidx;
		if (st->fidx < DBW_MASK_COLS)
			my->types[st->fidx & 63] = b[0];
		st->fidx++;
		if (st->fidx >= st->nfields) {
			if (my->prep) {
				my->prep = 0;
				my_stmt_save(skb, st);
				my->ctx = MC_PREP_END;
			} else {
				my->ctx = MC_COLS_END;
			}
		}
		st->state = MY_SKIP;
		return 0;
	case MY_ROW_FL:
		r = my_lenenc(skb, w);
		if (r == 0)
			return my_more(w);
		if (r < 0 || my->lval > 0xffffffffULL)
			goto lost;
		if (r == 1 && my->lval) {
			if (!my->more && my->lval > my->pkt_rem)
				goto lost;
			if (my->binary && my_temporal(my->types[st->fidx & 63])) {
				/* a binary date or time: zeroed if a rule names its column */
				st->field_len = st->field_rem = my->lval;
				st->fmode = FM_PASS;
				if (col_style(st, st->fidx) >= 0) {
					st->fmode = FM_ZERO;
					st->masked++;
					cnt_add(DBW_CNT_MASK_FIELDS, 1);
				}
			} else {
				field_start(st, my->lval);
			}
			st->state = MY_ROW_FD;
			return 0;
		}
		goto field_end; /* NULL or empty */
	case MY_ROW_FD:
		n = w->len - w->pos;
		if (n > my->pkt_rem)
			n = my->pkt_rem;
		if (n > st->field_rem)
			n = st->field_rem;
		if (n > MASK_BUF)
			n = MASK_BUF;
		if (!n)
			return my_more(w);
		if (st->fmode == FM_STYLE)
			mask_write(skb, w->pos, n, st->field_len - st->field_rem, st->field_len,
				   st->fstyle);
		else if (st->fmode == FM_CHECK)
			check_chunk(skb, w, n);
		else if (st->fmode == FM_ZERO)
			bpf_skb_store_bytes(skb, w->pos, (void *)my_zeros, n, 0);
		w->pos += n;
		my->pkt_rem -= n;
		st->field_rem -= n;
		if (st->field_rem)
			return 0;
		goto field_end;
	case MY_OK:
		n = w->len - w->pos;
		if (n > my->pkt_rem)
			n = my->pkt_rem;
		if (n > 24 - my->okn)
			n = 24 - my->okn;
		if (n > 8)
			n = 8;
		if (n) {
			if (bpf_skb_load_bytes(skb, w->pos, b, n))
				return 1;
			for (__u32 k = 0; k < 8; k++) {
				if (k >= n)
					break;
				my->okb[(my->okn + k) & 31] = b[k];
			}
			my->okn += n;
			w->pos += n;
			my->pkt_rem -= n;
		}
		if (my->okn < 24 && (my->pkt_rem || my->more))
			return my_more(w);
		st->state = MY_SKIP;
		if (my->ctx == MC_PREP_OK) {
			/* statement id u32, columns u16, parameters u16 */
			my->last_stmt = my->okb[1] | my->okb[2] << 8 | my->okb[3] << 16 |
					(__u32)my->okb[4] << 24;
			my->pcols = my->okb[5] | my->okb[6] << 8;
			my->defs = my->okb[7] | my->okb[8] << 8;
			my->cont = 0;
			my->prep = 0;
			if (my->pcols > 4096)
				goto lost;
			my_prep_next(st);
			if (my->ctx == MC_PREP_END && !my->defs)
				my->ctx = MC_START; /* nothing follows */
			return 0;
		}
		if (my->ctx == MC_COLS_EOF) {
			/* a cursor: no rows now, COM_STMT_FETCH answers bring them */
			my->ctx = (my_status(my) & MY_SERVER_CURSOR_EXISTS) ? MC_START : MC_ROWS;
			my->cont = 0;
			return 0;
		}
		my->ctx = MC_START;
		my->cont = (my_status(my) & MY_SERVER_MORE_RESULTS) ? 1 : 0;
		my_result_end(skb, st, my->okb[0]);
		return 0;
	case MY_BIN_NB: {
		/* 0x00, then the NULL bitmap: (columns + 7 + 2) / 8 bytes, bit = column + 2 */
		__u32 need = 1 + (st->nfields + 9) / 8;
		__u8 nb[16] = {};

		if (need > 16)
			goto lost;
		n = w->len - w->pos;
		if (n > my->pkt_rem)
			n = my->pkt_rem;
		if (n > need - my->okn)
			n = need - my->okn;
		if (n > 16)
			n = 16;
		if (!n)
			return my_more(w);
		if (bpf_skb_load_bytes(skb, w->pos, nb, n))
			return 1;
		for (__u32 k = 0; k < 16; k++) {
			if (k >= n)
				break;
			my->okb[(my->okn + k) & 31] = nb[k];
		}
		my->okn += n;
		w->pos += n;
		my->pkt_rem -= n;
		if (my->okn < need)
			return 0;
		st->fidx = 0;
		st->state = MY_BIN_COL;
		return 0;
	}
	case MY_BIN_COL: {
		__u32 bit = st->fidx + 2, sz;
		__u8 t;

		if (st->fidx >= st->nfields) {
			/* the row's last value: its packet must end here */
			if (my->pkt_rem)
				goto lost;
			st->state = MY_SKIP;
			return 0;
		}
		if (my->okb[(1 + (bit >> 3)) & 31] & (1 << (bit & 7))) {
			st->fidx++; /* NULL */
			return 0;
		}
		t = my->types[st->fidx & 63];
		sz = my_fixed_size(t);
		if (t == 6) {
			st->fidx++; /* the NULL type: no bytes */
			return 0;
		}
		if (!sz) {
			st->state = MY_ROW_FL; /* length-encoded: strings, decimals, times */
			return 0;
		}
		st->field_len = st->field_rem = sz;
		st->fmode = FM_PASS;
		if (col_style(st, st->fidx) >= 0) {
			/* a number in a named column: no style fits a binary number */
			st->fmode = FM_ZERO;
			st->masked++;
			cnt_add(DBW_CNT_MASK_FIELDS, 1);
		}
		st->state = MY_ROW_FD;
		return 0;
	}
	default:
		return 1;
	}
field_end:
	st->fidx++;
	if (my->binary) {
		st->state = MY_BIN_COL;
		return 0;
	}
	if (st->fidx < st->nfields) {
		st->state = MY_ROW_FL;
		return 0;
	}
	/* the row's last value: its packet must end here */
	if (my->pkt_rem)
		goto lost;
	st->state = MY_SKIP;
	return 0;
lost:
	w->lost = 1;
	return 1;
}

#endif /* DBW_MASK_MYSQL_BPF_H */
