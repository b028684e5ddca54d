/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The guard's reader of Redis commands (RESP arrays of bulk strings, and
 * inline command lines) in the client -> server stream. BPF-only header.
 *
 * A command is classified from its first RESP_WINDOW bytes, copied into
 * the lexer's buffer: the command name (and a container's subcommand,
 * "CONFIG SET") looked up in the redis_verbs map that userspace fills from
 * its command table, and the first DBW_LEX_OBJECTS arguments hashed as
 * objects (folded to lower case, as the policy's objects are: KEYS'
 * pattern, the keys of GET/SET/DEL, but also values: a rule naming objects
 * may hold for a value that spells one, never the other way round).
 *
 * Framing across sends: a command whose end is not in the send is followed
 * element by element; the elements still to come of the current command
 * are kept per connection in resp_walk, the bytes left of the current
 * bulk in dbw_sk_state.msg_left as for PostgreSQL.
 *
 * On a connection whose replies a rule masks by key (struct dbw_mask_key),
 * the same read also hashes every argument as sent and looks it up among
 * the rules' keys and prefixes; rkey_decide() then says, from the
 * command's key positions (mask_rkey_spec), whether the command names a
 * masked key. What cannot be read (arguments past the window, quoted
 * inline words) counts as naming one: more is masked, never less.
 */
#ifndef DBW_RESP_BPF_H
#define DBW_RESP_BPF_H

#include "maps.bpf.h"
#include "lexer.bpf.h"

/* Bytes of a command read to classify it. */
#define RESP_WINDOW 1024
/* Longest header line: "*4294967295\r\n", "$536870912\r\n". */
#define RESP_LINE_MAX 24

/* Upper-case command name (and "NAME SUB") hash -> verb bits (enum dbw_redis_verb). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u32);
} redis_verbs SEC(".maps");

/* struct dbw_mask_key -> the rules naming that key or prefix. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct dbw_mask_key);
	__type(value, __u32);
} mask_keys SEC(".maps");

/* The guard's command name hash -> its key positions (struct dbw_rkey_spec). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 512);
	__type(key, __u64);
	__type(value, struct dbw_rkey_spec);
} mask_rkey_spec SEC(".maps");

enum { R_COUNT, R_HDR, R_DATA, R_CRLF, R_INLINE, R_DONE, R_BAD };

/* Key matching of one command (rkey_decide): in, what to look for; out, what was found. */
struct resp_keys {
	__u64 plens; /* in: dbw_mask_cfg.key_plens; 0: keys not looked up */
	__u32 any; /* in: the rules a command naming keys unread may name */
	__u32 rules; /* out: the rules whose keys the command names (0: none) */
	__u8 flags; /* out: enum dbw_rkey_flags of the command */
	__u8 pad[7];
};

/* Reading state of one command in the lexer buffer (bpf_loop context). */
struct resp_read {
	__u32 len; /* bytes in the buffer */
	__u32 state;
	__u64 num; /* the count or length being read */
	__u32 nelems; /* the command's elements ("*N") */
	__u32 elem; /* the element being read */
	__u64 left; /* payload bytes of it still to come */
	__u64 up, low; /* its hashes: upper case (verb words), lower case (objects) */
	__u64 name, sub; /* the name's and "NAME SUB"'s upper-case hashes */
	__u32 end; /* bytes of the whole command, once its last element is read */
	__u32 hdr_end; /* bytes of the "*N\r\n" line */
	__u8 inword; /* inline: inside a word */
	__u8 kquote; /* inline: a quoted word (its key cannot be told) */
	__u8 pad[2];
	/* masked keys: the argument's hash as sent and its length so far;
	 * prefix lengths to look up (0: keys not looked up) */
	__u64 kh, plens;
	__u32 kn;
	__u32 kmatch; /* arguments naming a masked key: bit = index (31: any later one) */
	__u32 krules; /* the rules whose keys they name */
	__u32 kany; /* the rules in force that have keys */
	struct dbw_lex_result res;
};

static __always_inline __u8 upper(__u8 c)
{
	return c >= 'a' && c <= 'z' ? c - 32 : c;
}

/* The argument being read is n bytes of a masked key (or of a prefix) when mask_keys says so. */
static __always_inline void rkey_lookup(struct resp_read *r, __u32 n)
{
	struct dbw_mask_key k = { .hash = r->kh, .len = n, .pad = 0 };
	__u32 *rules = bpf_map_lookup_elem(&mask_keys, &k);

	/* a key of a rule not in force on this connection is no key here */
	if (!rules || !(*rules & r->kany))
		return;
	r->kmatch |= 1u << (r->elem < 31 ? r->elem : 31);
	r->krules |= *rules & r->kany;
}

/* One byte of an argument, as sent: hashed, and its prefix looked up where a rule has one. */
static __always_inline void rkey_byte(struct resp_read *r, __u8 c)
{
	if (!r->plens || !r->elem)
		return;
	r->kh = fnv(r->kh, c);
	r->kn++;
	if (r->kn <= DBW_MASK_KEY_PREFIX_MAX && ((r->plens >> r->kn) & 1))
		rkey_lookup(r, r->kn);
}

/* An element (or an inline word) ends: it is the name, the subcommand or an object. */
static __always_inline void resp_elem_done(struct resp_read *r)
{
	struct dbw_lex_result *res = &r->res;

	if (r->elem && r->plens)
		rkey_lookup(r, r->kn | DBW_MASK_KEY_EXACT);
	if (r->elem == 0) {
		r->name = r->up;
	} else {
		if (r->elem == 1)
			r->sub = r->up;
		if (res->nobjects < DBW_LEX_OBJECTS)
			res->objects[res->nobjects++ & (DBW_LEX_OBJECTS - 1)] = r->low;
		else
			res->flags |= DBW_LEX_F_OBJECTS_FULL;
	}
	r->elem++;
}

static __always_inline void resp_elem_begin(struct resp_read *r)
{
	r->up = DBW_FNV_OFFSET;
	r->low = DBW_FNV_OFFSET;
	r->kh = DBW_FNV_OFFSET;
	r->kn = 0;
	if (r->elem == 1) {
		/* "NAME SUB": the subcommand hashed on from the name and a space */
		r->up = fnv(r->name, ' ');
	}
	if (r->elem && (r->plens & 1))
		rkey_lookup(r, 0); /* `*`: every key */
}

/*
 * Byte c at offset i of a command. Global, so that the verifier checks it
 * once with the reading state unknown instead of walking every state the
 * loop can reach. Returns 0 to go on, 1 to stop.
 */
__noinline int resp_byte(struct resp_read *r, __u8 c, __u32 i)
{
	if (!r)
		return 1;
	switch (r->state) {
	case R_COUNT:
	case R_HDR:
		if (i == 0 || (r->state == R_HDR && r->num == (__u64)-1)) {
			/* the type byte */
			if (c != (r->state == R_COUNT ? '*' : '$'))
				goto bad;
			r->num = 0;
			return 0;
		}
		if (c >= '0' && c <= '9') {
			if (r->num > (1ULL << 40))
				goto bad;
			r->num = r->num * 10 + (c - '0');
			return 0;
		}
		if (c == '\r')
			return 0;
		if (c != '\n')
			goto bad;
		if (r->state == R_COUNT) {
			r->nelems = r->num;
			r->hdr_end = i + 1;
			if (!r->nelems) {
				r->end = i + 1;
				r->state = R_DONE;
				return 1;
			}
			r->state = R_HDR;
			r->num = (__u64)-1;
			return 0;
		}
		r->left = r->num;
		resp_elem_begin(r);
		r->state = r->left ? R_DATA : R_CRLF;
		r->num = 0;
		return 0;
	case R_DATA:
		r->up = fnv(r->up, upper(c));
		r->low = fnv(r->low, lower(c));
		rkey_byte(r, c);
		if (--r->left)
			return 0;
		r->state = R_CRLF;
		r->num = 0;
		return 0;
	case R_CRLF:
		if (++r->num < 2)
			return 0;
		resp_elem_done(r);
		if (r->elem >= r->nelems) {
			r->end = i + 1;
			r->state = R_DONE;
			return 1;
		}
		r->state = R_HDR;
		r->num = (__u64)-1;
		return 0;
	case R_INLINE:
		if (c == '\n') {
			if (r->inword)
				resp_elem_done(r);
			r->end = i + 1;
			r->state = R_DONE;
			return 1;
		}
		if (c == ' ' || c == '\t' || c == '\r') {
			if (r->inword)
				resp_elem_done(r);
			r->inword = 0;
			return 0;
		}
		if (!r->inword) {
			resp_elem_begin(r);
			r->inword = 1;
		}
		if (c == '"' || c == '\'') {
			/* quoting: the words cannot be told apart here */
			r->res.flags |= DBW_LEX_F_OBJECTS_FULL;
			r->kquote = 1;
		}
		r->up = fnv(r->up, upper(c));
		r->low = fnv(r->low, lower(c));
		rkey_byte(r, c);
		return 0;
	}
	return 1;
bad:
	r->state = R_BAD;
	return 1;
}

/* bpf_loop step over byte i of the lexer buffer. 0: go on, 1: stop. */
static long resp_step(__u32 i, void *ctx)
{
	struct resp_read *r = ctx;
	__u8 *b = lex_text();

	if (!r || !b || i >= r->len || i >= RESP_WINDOW)
		return 1;
	/* a callback must return 0 or 1, as the verifier sees it */
	return resp_byte(r, b[i & (DBW_LEX_MAX - 1)], i) ? 1 : 0;
}

/* The verb bits of a command name hash; *sub set when it is a container. */
static __always_inline __u32 resp_verb_bits(__u64 h, int *sub)
{
	__u32 *v = bpf_map_lookup_elem(&redis_verbs, &h);

	if (!v)
		return 0;
	if (sub)
		*sub = !!(*v & DBW_RVERB_F_SUBCMD);
	return *v & ~DBW_RVERB_F_SUBCMD;
}

/*
 * Does the command read into r name a masked key at a key position?
 * k->rules: the rules whose keys it names (0: none), k->flags: its
 * command's flags. Its key positions come from mask_rkey_spec (a
 * container's by "NAME SUB" first); a command not there: every argument.
 * A key position not read (past the window; inline words quoted, whose
 * bytes are not the key's) may name any masked key: k->any. Arguments
 * from the 31st on are one: a match at any of them is a match. Global:
 * verified once.
 */
__noinline int rkey_decide(struct resp_read *r, struct resp_keys *k, int sub)
{
	struct dbw_rkey_spec all = { .first = 1, .last = -1, .step = 1, .flags = 0 }, *s = NULL;
	int first, last, total, hit = 0;
	__u32 step;

	if (!r || !k)
		return 0;
	k->rules = 0;
	k->flags = 0;
	if (r->elem == 0 && r->state != R_DONE) {
		/* not even the name: anything */
		k->rules = k->plens ? k->any : 0;
		return 0;
	}
	if (sub && r->elem > 1)
		s = bpf_map_lookup_elem(&mask_rkey_spec, &r->sub);
	if (!s)
		s = bpf_map_lookup_elem(&mask_rkey_spec, &r->name);
	if (!s)
		s = &all;
	k->flags = s->flags;
	if (!k->plens || s->flags)
		return 0; /* keyless: the flags say what it does to the pairing */
	if (r->kquote) {
		k->rules = k->any;
		return 0;
	}
	total = r->nelems;
	first = s->first;
	last = s->last < 0 ? total + s->last : s->last;
	step = s->step ? s->step : 1;
	for (int i = 1; i < 32; i++) {
		if (i < first || i > last)
			continue;
		/* the 31st stands for every later one, whatever its step */
		if (i < 31 && (__u32)(i - first) % step)
			continue;
		if ((r->kmatch >> i) & 1) {
			hit = 1;
			continue;
		}
		if (i >= (int)r->elem) {
			/* not read (or not to its end): it may be one */
			k->rules = k->any;
			return 0;
		}
	}
	if (hit)
		k->rules = r->krules;
	return 0;
}

/*
 * Classify the command whose first n bytes (n <= RESP_WINDOW) are in the
 * lexer buffer into *res. Returns the command's length when it ends within
 * those bytes (*nelems: its elements, or an inline line's words), 0 when
 * it goes on past them (*hdr then holds the length of its "*N\r\n" line
 * and *nelems its element count; 0 for an inline line that does not end
 * there), or -1 when the bytes are not a command. With
 * keys->plens set, *keys says whether it names a masked key (rkey_decide).
 * Global: verified once.
 */
__noinline int resp_classify(__u32 n, struct dbw_lex_result *res, __u32 *hdr, __u32 *nelems,
			     struct resp_keys *keys)
{
	__u8 *b = lex_text();
	struct resp_read r = {};
	__u32 bits;
	int sub = 0;

	if (!b || !res || !hdr || !nelems || !keys || n > RESP_WINDOW || !n)
		return -1;
	r.len = n;
	r.plens = keys->plens;
	r.kany = keys->any;
	r.state = b[0] == '*' ? R_COUNT : R_INLINE;
	r.num = 0;
	bpf_loop(RESP_WINDOW, resp_step, &r, 0);
	if (r.state == R_BAD)
		return -1;
	r.res.nstmts = 1;
	if (r.state == R_INLINE && r.inword && r.elem == 0)
		r.name = r.up; /* an inline line cut inside its first word */
	if (r.elem == 0 && r.state != R_INLINE) {
		/* not even the name is here */
		r.res.flags |= DBW_LEX_F_INCOMPLETE;
		r.res.verbs = 1u << DBW_RVERB_OTHER;
	} else {
		bits = resp_verb_bits(r.name, &sub);
		if (sub && r.elem > 1)
			bits |= resp_verb_bits(r.sub, 0);
		else if (sub && r.state != R_DONE)
			r.res.flags |= DBW_LEX_F_INCOMPLETE; /* the subcommand is not here */
		r.res.verbs = bits ? bits : 1u << DBW_RVERB_OTHER;
	}
	if (r.state != R_DONE && r.elem < r.nelems && r.elem < 1 + DBW_LEX_OBJECTS)
		r.res.flags |= DBW_LEX_F_OBJECTS_FULL; /* arguments past the window */
	if (r.state == R_INLINE)
		r.res.flags |= DBW_LEX_F_INCOMPLETE; /* a line that does not end here */
	/* approvals key on the verb and the first argument */
	r.res.shape = (r.name ^ (r.elem > 1 ? r.sub : 0)) * DBW_FNV_PRIME;
	/* an inline line read whole: its words (a RESP command says its count) */
	if (r.state == R_DONE && !r.nelems)
		r.nelems = r.elem;
	rkey_decide(&r, keys, sub);
	__builtin_memcpy(res, &r.res, sizeof(*res));
	*hdr = r.hdr_end;
	*nelems = r.nelems;
	return r.state == R_DONE ? (int)r.end : 0;
}

#endif /* DBW_RESP_BPF_H */
