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

enum { R_COUNT, R_HDR, R_DATA, R_CRLF, R_INLINE, R_DONE, R_BAD };

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
	__u8 pad[3];
	struct dbw_lex_result res;
};

static __always_inline __u8 upper(__u8 c)
{
	return c >= 'a' && c <= 'z' ? c - 32 : c;
}

/* An element (or an inline word) ends: it is the name, the subcommand or an object. */
static __always_inline void resp_elem_done(struct resp_read *r)
{
	struct dbw_lex_result *res = &r->res;

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
	if (r->elem == 1) {
		/* "NAME SUB": the subcommand hashed on from the name and a space */
		r->up = fnv(r->name, ' ');
	}
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
		if (c == '"' || c == '\'')
			/* quoting: the words cannot be told apart here */
			r->res.flags |= DBW_LEX_F_OBJECTS_FULL;
		r->up = fnv(r->up, upper(c));
		r->low = fnv(r->low, lower(c));
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
 * Classify the command whose first n bytes (n <= RESP_WINDOW) are in the
 * lexer buffer into *res. Returns the command's length when it ends within
 * those bytes, 0 when it goes on past them (*hdr then holds the length of
 * its "*N\r\n" line and *nelems its element count; 0 for an inline line
 * that does not end there), or -1 when the bytes are not a command.
 * Global: verified once.
 */
__noinline int resp_classify(__u32 n, struct dbw_lex_result *res, __u32 *hdr, __u32 *nelems)
{
	__u8 *b = lex_text();
	struct resp_read r = {};
	__u32 bits;
	int sub = 0;

	if (!b || !res || !hdr || !nelems || n > RESP_WINDOW || !n)
		return -1;
	r.len = n;
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
	__builtin_memcpy(res, &r.res, sizeof(*res));
	*hdr = r.hdr_end;
	*nelems = r.nelems;
	return r.state == R_DONE ? (int)r.end : 0;
}

#endif /* DBW_RESP_BPF_H */
