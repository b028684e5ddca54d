// SPDX-License-Identifier: GPL-2.0-only
/* RESP2/RESP3 streaming scanner and the Redis command table. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dbwarden_abi.h"
#include "redis_proto.h"

enum { S_LINE = 0, S_BULK = 1, S_INLINE = 2 };

void redis_scan_init(struct redis_scan *s, bool request)
{
	free(s->inl);
	memset(s, 0, sizeof(*s));
	s->request = request;
}

void redis_scan_reset(struct redis_scan *s)
{
	free(s->inl);
	s->inl = NULL;
}

/* A new command or reply begins. */
static void unit_begin(struct redis_scan *s)
{
	s->cmd.argc = 0;
	s->cmd.nargs = 0;
	s->cmd.inline_cmd = false;
	memset(&s->reply.top, 0, sizeof(s->reply.top));
	s->reply.push = false;
	s->reply.null = false;
	s->reply.count = -1;
	s->reply.status[0] = 0;
	s->reply.nelems = 0;
	s->unit_bytes = 0;
}

/* Strict decimal (optional '-') of a line's payload. 0 or -1. */
static int line_int(const char *p, int64_t *out)
{
	bool neg = *p == '-';
	int64_t v = 0;

	if (neg)
		p++;
	if (!*p)
		return -1;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (*p - '0');
	}
	*out = neg ? -v : v;
	return 0;
}

/* The first word of an error line, as its code: "ERR", "WRONGTYPE". */
static void err_code(const char *line, char *code)
{
	size_t n = 0;

	while (line[n] && line[n] != ' ' && n < REDIS_CODE_LEN - 1) {
		char ch = line[n];

		code[n] = isalnum((unsigned char)ch) || ch == '_' || ch == '-' ? ch : '?';
		n++;
	}
	code[n] = 0;
}

/*
 * A value ended (type t; an error when err, code from line). Count it in
 * the enclosing aggregates. Returns 1 when the top-level unit is complete.
 */
static int value_done(struct redis_scan *s, char t, bool err, const char *line)
{
	struct redis_elem e = { .type = t, .error = err };

	if (err)
		err_code(line, e.code);
	if (s->depth == 0) {
		if (!s->request)
			s->reply.top = e;
		return 1;
	}
	for (;;) {
		struct redis_frame *f = &s->frames[s->depth - 1];

		if (s->depth == 1 && !f->attr && !s->request && s->reply.nelems < REDIS_EXEC_ELEMS)
			s->reply.elems[s->reply.nelems++] = e;
		if (--f->left > 0)
			return 0;
		/* the aggregate itself ends: one value of its parent */
		s->depth--;
		if (f->attr) {
			/* an attribute annotates the next value: not one itself */
			return 0;
		}
		e = (struct redis_elem){ .type = f->type };
		if (s->depth == 0) {
			if (!s->request)
				s->reply.top = e;
			return 1;
		}
	}
}

/* Split an inline command line into arguments (quotes as redis-cli writes them). */
static void inline_args(struct redis_scan *s)
{
	const char *p = s->inl, *end = s->inl + s->inl_len;
	struct redis_cmd *c = &s->cmd;

	c->inline_cmd = true;
	while (p < end) {
		struct redis_arg *a;
		char q = 0;

		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p >= end)
			break;
		a = c->nargs < REDIS_MAX_ARGS ? &c->args[c->nargs++] : NULL;
		c->argc++;
		if (a) {
			a->len = 0;
			a->kept = 0;
		}
		if (*p == '"' || *p == '\'')
			q = *p++;
		while (p < end) {
			char ch = *p;

			if (q && ch == q) {
				p++;
				break;
			}
			if (!q && (ch == ' ' || ch == '\t'))
				break;
			if (q == '"' && ch == '\\' && p + 1 < end)
				ch = *++p;
			p++;
			if (a) {
				if (a->kept < REDIS_ARG_KEEP)
					a->data[a->kept++] = ch;
				a->len++;
			}
		}
		if (a)
			a->data[a->kept] = 0;
	}
}

/*
 * A whole line (s->line, CR stripped) was read. Returns 1 when the unit is
 * complete, 0 to go on, -1 when the stream is not RESP.
 */
static int line_done(struct redis_scan *s)
{
	char t = s->line[0];
	const char *rest = s->line + 1;
	int64_t n;

	if (s->line_full > REDIS_LINE_KEEP && strchr("*$!=%~>|:", t))
		return -1; /* a length or count that long is not one */
	switch (t) {
	case '*':
	case '~':
	case '%':
	case '>':
	case '|':
		if (line_int(rest, &n) || n < -1 || n > REDIS_MAX_ELEMS)
			return -1;
		if (s->request && (t != '*' || s->depth > 0))
			return -1; /* a command is one flat array of bulk strings */
		if (s->depth == 0 && !s->request) {
			s->reply.push = t == '>';
			if (t != '|') {
				s->reply.count = n;
				s->reply.null = n < 0;
			}
		}
		if (s->request && s->depth == 0)
			s->cmd.argc = n > 0 ? (uint64_t)n : 0;
		if (t == '%' || t == '|')
			n *= 2;
		if (n <= 0)
			return value_done(s, t, false, "");
		if (s->depth == REDIS_MAX_DEPTH)
			return -1;
		s->frames[s->depth].left = n;
		s->frames[s->depth].attr = t == '|';
		s->frames[s->depth].type = t;
		s->depth++;
		return 0;
	case '$':
	case '!':
	case '=':
		if (line_int(rest, &n) || n < -1 || n > REDIS_MAX_BULK)
			return -1;
		if (s->request && (t != '$' || s->depth != 1))
			return -1;
		if (n < 0) {
			if (s->depth == 0)
				s->reply.null = true;
			return value_done(s, t, false, "");
		}
		s->bulk_type = t;
		s->bulk_left = n + 2;
		s->bulk_arg = NULL;
		if (s->request) {
			struct redis_cmd *c = &s->cmd;

			if (c->nargs < REDIS_MAX_ARGS) {
				s->bulk_arg = &c->args[c->nargs++];
				s->bulk_arg->len = n;
				s->bulk_arg->kept = 0;
				s->bulk_arg->data[0] = 0;
			}
		} else if (t == '!') {
			/* a blob error: its code is the first word of the payload */
			s->line_len = 0;
		}
		s->state = S_BULK;
		return 0;
	case '+':
	case '-':
	case ':':
	case '_':
	case ',':
	case '#':
	case '(':
		if (s->request)
			return -1;
		if (s->depth == 0) {
			if (t == '_')
				s->reply.null = true;
			if (t == '+' && s->line_full <= 16) {
				size_t i;

				for (i = 0; rest[i]; i++)
					if (!isalnum((unsigned char)rest[i]) && rest[i] != '_')
						break;
				if (!rest[i])
					snprintf(s->reply.status, sizeof(s->reply.status), "%s",
						 rest);
			}
		}
		return value_done(s, t, t == '-', rest);
	}
	return -1;
}

enum dbw_parse redis_scan(struct redis_scan *s, const uint8_t *buf, size_t len, size_t *consumed)
{
	size_t i = 0;

	while (i < len) {
		if (s->state == S_BULK) {
			size_t n = len - i;

			if ((int64_t)n > s->bulk_left)
				n = s->bulk_left;
			if (s->bulk_arg) {
				struct redis_arg *a = s->bulk_arg;
				uint64_t want = a->len < REDIS_ARG_KEEP ? a->len : REDIS_ARG_KEEP;

				if (a->kept < want) {
					size_t k = want - a->kept < n ? want - a->kept : n;

					memcpy(a->data + a->kept, buf + i, k);
					a->kept += k;
					a->data[a->kept] = 0;
				}
			} else if (s->bulk_type == '!' && s->depth == 0) {
				size_t k = REDIS_LINE_KEEP - s->line_len < n ?
						   REDIS_LINE_KEEP - s->line_len :
						   n;

				memcpy(s->line + s->line_len, buf + i, k);
				s->line_len += k;
				s->line[s->line_len] = 0;
			}
			i += n;
			s->unit_bytes += n;
			s->bulk_left -= n;
			if (s->bulk_left)
				break;
			s->state = S_LINE;
			s->line_len = 0;
			s->line_full = 0;
			if (value_done(s, s->bulk_type, s->bulk_type == '!', s->line)) {
				*consumed = i;
				return DBW_PARSE_OK;
			}
			continue;
		}
		if (s->state == S_INLINE) {
			const uint8_t *nl = memchr(buf + i, '\n', len - i);
			size_t n = nl ? (size_t)(nl - (buf + i)) : len - i;

			if (s->inl_len + n > REDIS_INLINE_MAX)
				return DBW_PARSE_INVALID; /* Redis refuses such a line too */
			memcpy(s->inl + s->inl_len, buf + i, n);
			s->inl_len += n;
			i += n;
			s->unit_bytes += n;
			if (!nl)
				break;
			i++;
			s->unit_bytes++;
			if (s->inl_len && s->inl[s->inl_len - 1] == '\r')
				s->inl_len--;
			s->state = S_LINE;
			inline_args(s);
			free(s->inl);
			s->inl = NULL;
			if (!s->cmd.argc) {
				/* an empty line: Redis ignores it */
				unit_begin(s);
				continue;
			}
			*consumed = i;
			return DBW_PARSE_OK;
		}
		/* S_LINE */
		if (!s->line_full && s->depth == 0) {
			unit_begin(s);
			if (s->request && buf[i] != '*') {
				/* an inline command */
				s->inl = malloc(REDIS_INLINE_MAX);
				if (!s->inl)
					return DBW_PARSE_INVALID;
				s->inl_len = 0;
				s->state = S_INLINE;
				continue;
			}
		}
		{
			const uint8_t *nl = memchr(buf + i, '\n', len - i);
			size_t n = nl ? (size_t)(nl - (buf + i)) : len - i;
			size_t k = REDIS_LINE_KEEP - s->line_len < n ?
					   REDIS_LINE_KEEP - s->line_len :
					   n;
			int r;

			memcpy(s->line + s->line_len, buf + i, k);
			s->line_len += k;
			s->line[s->line_len] = 0;
			s->line_full += n;
			i += n;
			s->unit_bytes += n;
			if (s->line_full > REDIS_INLINE_MAX)
				return DBW_PARSE_INVALID;
			if (!nl)
				break;
			i++;
			s->unit_bytes++;
			if (s->line_len && s->line[s->line_len - 1] == '\r')
				s->line[--s->line_len] = 0;
			if (!s->line_full || (s->line_full == 1 && !s->line_len)) {
				/* an empty line between values: not RESP */
				return DBW_PARSE_INVALID;
			}
			r = line_done(s);
			if (s->state == S_LINE) {
				s->line_len = 0;
				s->line_full = 0;
			}
			if (r < 0)
				return DBW_PARSE_INVALID;
			if (r) {
				*consumed = i;
				return DBW_PARSE_OK;
			}
		}
	}
	*consumed = len;
	return DBW_PARSE_NEED_MORE;
}

bool redis_scan_skip(struct redis_scan *s, uint64_t n)
{
	if (s->state != S_BULK || (int64_t)n > s->bulk_left - 2)
		return false;
	/* an argument keeps its first bytes only, so none after the gap: if
	 * they were not all there it shows as cut (kept < len) */
	s->bulk_arg = NULL;
	s->bulk_left -= n;
	s->unit_bytes += n;
	return true;
}

/* ---- the command table ----------------------------------------------------- */

/* Key positions as COMMAND INFO gives them: first, last (negative: from the end), step. */
struct cmd_spec {
	const char *name;
	int8_t first, last, step;
	uint8_t flags;
};

enum { F_SUB = 1, F_NUMKEYS2 = 2 /* EVAL: arg 2 is the number of keys that follow */ };

static const struct cmd_spec cmds[] = {
	{ "APPEND", 1, 1, 1 },
	{ "BITCOUNT", 1, 1, 1 },
	{ "BLMOVE", 1, 2, 1 },
	{ "BLPOP", 1, -2, 1 },
	{ "BRPOP", 1, -2, 1 },
	{ "BRPOPLPUSH", 1, 2, 1 },
	{ "BZPOPMAX", 1, -2, 1 },
	{ "BZPOPMIN", 1, -2, 1 },
	{ "COPY", 1, 2, 1 },
	{ "DECR", 1, 1, 1 },
	{ "DECRBY", 1, 1, 1 },
	{ "DEL", 1, -1, 1 },
	{ "DUMP", 1, 1, 1 },
	{ "EVAL", 0, 0, 0, F_NUMKEYS2 },
	/* strcasecmp order: '_' sorts before letters */
	{ "EVAL_RO", 0, 0, 0, F_NUMKEYS2 },
	{ "EVALSHA", 0, 0, 0, F_NUMKEYS2 },
	{ "EVALSHA_RO", 0, 0, 0, F_NUMKEYS2 },
	{ "EXISTS", 1, -1, 1 },
	{ "EXPIRE", 1, 1, 1 },
	{ "EXPIREAT", 1, 1, 1 },
	{ "FCALL", 0, 0, 0, F_NUMKEYS2 },
	{ "FCALL_RO", 0, 0, 0, F_NUMKEYS2 },
	{ "GET", 1, 1, 1 },
	{ "GETDEL", 1, 1, 1 },
	{ "GETEX", 1, 1, 1 },
	{ "GETRANGE", 1, 1, 1 },
	{ "GETSET", 1, 1, 1 },
	{ "HDEL", 1, 1, 1 },
	{ "HEXISTS", 1, 1, 1 },
	{ "HGET", 1, 1, 1 },
	{ "HGETALL", 1, 1, 1 },
	{ "HINCRBY", 1, 1, 1 },
	{ "HKEYS", 1, 1, 1 },
	{ "HLEN", 1, 1, 1 },
	{ "HMGET", 1, 1, 1 },
	{ "HMSET", 1, 1, 1 },
	{ "HSCAN", 1, 1, 1 },
	{ "HSET", 1, 1, 1 },
	{ "HSETNX", 1, 1, 1 },
	{ "HVALS", 1, 1, 1 },
	{ "INCR", 1, 1, 1 },
	{ "INCRBY", 1, 1, 1 },
	{ "INCRBYFLOAT", 1, 1, 1 },
	{ "KEYS", 1, 1, 1 },
	{ "LINDEX", 1, 1, 1 },
	{ "LINSERT", 1, 1, 1 },
	{ "LLEN", 1, 1, 1 },
	{ "LMOVE", 1, 2, 1 },
	{ "LPOP", 1, 1, 1 },
	{ "LPUSH", 1, 1, 1 },
	{ "LPUSHX", 1, 1, 1 },
	{ "LRANGE", 1, 1, 1 },
	{ "LREM", 1, 1, 1 },
	{ "LSET", 1, 1, 1 },
	{ "LTRIM", 1, 1, 1 },
	{ "MGET", 1, -1, 1 },
	{ "MSET", 1, -1, 2 },
	{ "MSETNX", 1, -1, 2 },
	{ "PERSIST", 1, 1, 1 },
	{ "PEXPIRE", 1, 1, 1 },
	{ "PEXPIREAT", 1, 1, 1 },
	{ "PFADD", 1, 1, 1 },
	{ "PFCOUNT", 1, -1, 1 },
	{ "PSETEX", 1, 1, 1 },
	{ "PTTL", 1, 1, 1 },
	{ "PUBLISH", 1, 1, 1 },
	{ "RENAME", 1, 2, 1 },
	{ "RENAMENX", 1, 2, 1 },
	{ "RESTORE", 1, 1, 1 },
	{ "RPOP", 1, 1, 1 },
	{ "RPOPLPUSH", 1, 2, 1 },
	{ "RPUSH", 1, 1, 1 },
	{ "RPUSHX", 1, 1, 1 },
	{ "SADD", 1, 1, 1 },
	{ "SCARD", 1, 1, 1 },
	{ "SDIFF", 1, -1, 1 },
	{ "SDIFFSTORE", 1, -1, 1 },
	{ "SET", 1, 1, 1 },
	{ "SETEX", 1, 1, 1 },
	{ "SETNX", 1, 1, 1 },
	{ "SETRANGE", 1, 1, 1 },
	{ "SINTER", 1, -1, 1 },
	{ "SINTERSTORE", 1, -1, 1 },
	{ "SISMEMBER", 1, 1, 1 },
	{ "SMEMBERS", 1, 1, 1 },
	{ "SMOVE", 1, 2, 1 },
	{ "SORT", 1, 1, 1 },
	{ "SPOP", 1, 1, 1 },
	{ "SRANDMEMBER", 1, 1, 1 },
	{ "SREM", 1, 1, 1 },
	{ "SSCAN", 1, 1, 1 },
	{ "SSUBSCRIBE", 1, -1, 1 },
	{ "STRLEN", 1, 1, 1 },
	{ "SUBSCRIBE", 1, -1, 1 },
	{ "SUNION", 1, -1, 1 },
	{ "SUNIONSTORE", 1, -1, 1 },
	{ "TOUCH", 1, -1, 1 },
	{ "TTL", 1, 1, 1 },
	{ "TYPE", 1, 1, 1 },
	{ "UNLINK", 1, -1, 1 },
	{ "UNSUBSCRIBE", 1, -1, 1 },
	{ "WATCH", 1, -1, 1 },
	{ "XADD", 1, 1, 1 },
	{ "XLEN", 1, 1, 1 },
	{ "XRANGE", 1, 1, 1 },
	{ "XREVRANGE", 1, 1, 1 },
	{ "ZADD", 1, 1, 1 },
	{ "ZCARD", 1, 1, 1 },
	{ "ZCOUNT", 1, 1, 1 },
	{ "ZINCRBY", 1, 1, 1 },
	{ "ZRANGE", 1, 1, 1 },
	{ "ZRANGEBYSCORE", 1, 1, 1 },
	{ "ZRANK", 1, 1, 1 },
	{ "ZREM", 1, 1, 1 },
	{ "ZREVRANGE", 1, 1, 1 },
	{ "ZSCAN", 1, 1, 1 },
	{ "ZSCORE", 1, 1, 1 },
};

/* Containers: the first argument is a subcommand, part of the verb. */
static const char *const containers[] = {
	"ACL",	  "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG",   "FUNCTION", "LATENCY",
	"MEMORY", "MODULE", "OBJECT",  "PUBSUB",  "SCRIPT", "SLOWLOG", "XGROUP",   "XINFO",
};

/* Subcommands that name a key as their second argument: OBJECT ENCODING k, ... */
static const char *const sub_key2[] = {
	"OBJECT ENCODING", "OBJECT FREQ",    "OBJECT IDLETIME", "OBJECT REFCOUNT",
	"MEMORY USAGE",	   "XINFO STREAM",   "XINFO GROUPS",	"XINFO CONSUMERS",
	"XGROUP CREATE",   "XGROUP DESTROY", "DEBUG OBJECT",
};

static int spec_cmp(const void *a, const void *b)
{
	return strcasecmp(a, ((const struct cmd_spec *)b)->name);
}

const char *redis_container(size_t i)
{
	return i < sizeof(containers) / sizeof(containers[0]) ? containers[i] : NULL;
}

bool redis_has_subcommand(const char *cmd)
{
	for (size_t i = 0; i < sizeof(containers) / sizeof(containers[0]); i++)
		if (!strcasecmp(cmd, containers[i]))
			return true;
	return false;
}

/* An argument's bytes as a word of the verb: upper case, printable. */
static void verb_word(char *dst, size_t n, const struct redis_arg *a)
{
	size_t i;

	for (i = 0; i + 1 < n && i < a->kept; i++) {
		unsigned char ch = a->data[i];

		dst[i] = isgraph(ch) ? toupper(ch) : '?';
	}
	dst[i] = 0;
}

int redis_cmd_shape(const struct redis_cmd *c, char *verb, size_t verblen, bool *keys)
{
	const struct cmd_spec *sp;
	char name[24], sub[24];
	int words = 1;
	int64_t n = c->nargs;

	memset(keys, 0, sizeof(bool) * REDIS_MAX_ARGS);
	if (!c->nargs) {
		snprintf(verb, verblen, "UNKNOWN");
		return 1;
	}
	verb_word(name, sizeof(name), &c->args[0]);
	if (c->args[0].len >= sizeof(name))
		snprintf(name, sizeof(name), "UNKNOWN");
	if (redis_has_subcommand(name) && c->nargs > 1) {
		verb_word(sub, sizeof(sub), &c->args[1]);
		snprintf(verb, verblen, "%s %s", name, sub);
		words = 2;
		for (size_t i = 0; i < sizeof(sub_key2) / sizeof(sub_key2[0]); i++)
			if (!strcmp(verb, sub_key2[i]) && c->nargs > 2)
				keys[2] = true;
		return words;
	}
	snprintf(verb, verblen, "%s", name);
	sp = bsearch(name, cmds, sizeof(cmds) / sizeof(cmds[0]), sizeof(cmds[0]), spec_cmp);
	if (!sp)
		return words;
	if (sp->flags & F_NUMKEYS2) {
		int64_t nk;

		if (c->nargs > 2 && c->args[2].kept == c->args[2].len &&
		    !line_int(c->args[2].data, &nk) && nk > 0)
			for (int64_t i = 3; i < 3 + nk && i < n; i++)
				keys[i] = true;
		return words;
	}
	{
		/* last counts from the end of the arguments sent, not the ones kept */
		int64_t argc = (int64_t)c->argc, last = sp->last >= 0 ? sp->last : argc + sp->last;

		for (int64_t i = sp->first; i <= last && i < n; i += sp->step)
			if (i > 0)
				keys[i] = true;
	}
	return words;
}

/* FNV-1a 64 of one more word into h (a space before it). */
static uint64_t fnv_add(uint64_t h, const char *s, size_t n, bool fold_digits)
{
	bool digits = false;

	h = (h ^ ' ') * DBW_FNV_PRIME;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = s[i];

		if (fold_digits && isdigit(ch)) {
			if (digits)
				continue;
			digits = true;
			ch = '#';
		} else {
			digits = false;
		}
		h = (h ^ ch) * DBW_FNV_PRIME;
	}
	return h;
}

/* Append s (n bytes) to text, printable bytes only. false when it does not fit. */
static bool text_add(char *text, size_t cap, size_t *pos, const char *s, size_t n)
{
	if (*pos + n + 2 > cap)
		return false;
	if (*pos)
		text[(*pos)++] = ' ';
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = s[i];

		text[(*pos)++] = ch >= 0x20 && ch < 0x7f ? ch : '?';
	}
	text[*pos] = 0;
	return true;
}

void redis_cmd_stmt(const struct redis_cmd *c, char *text, size_t textlen, struct redis_stmt *out)
{
	bool keys[REDIS_MAX_ARGS];
	uint64_t h = DBW_FNV_OFFSET;
	size_t pos = 0;
	int words = redis_cmd_shape(c, out->verb, sizeof(out->verb), keys);

	out->nobjects = 0;
	out->cut = c->argc > c->nargs;
	if (textlen)
		text[0] = 0;
	h = fnv_add(h, out->verb, strlen(out->verb), false);
	if (!text_add(text, textlen, &pos, out->verb, strlen(out->verb)))
		out->cut = true;
	for (uint32_t i = words; i < c->nargs; i++) {
		const struct redis_arg *a = &c->args[i];

		if (keys[i]) {
			h = fnv_add(h, a->data, a->kept, true);
			if (a->kept < a->len || !text_add(text, textlen, &pos, a->data, a->kept)) {
				out->cut = true;
				if (!text_add(text, textlen, &pos, "?", 1))
					break;
			}
			if (out->nobjects < sizeof(out->objects) / sizeof(out->objects[0])) {
				bool dup = false;

				for (size_t j = 0; j < out->nobjects; j++)
					dup |= !strcmp(out->objects[j], a->data);
				if (!dup)
					out->objects[out->nobjects++] = a->data;
			}
		} else {
			h = fnv_add(h, "?", 1, false);
			if (!text_add(text, textlen, &pos, "?", 1)) {
				out->cut = true;
				break;
			}
		}
	}
	/* arguments not kept: only their count is shown */
	if (c->argc > c->nargs) {
		char more[40];

		snprintf(more, sizeof(more), "...(%llu more)",
			 (unsigned long long)(c->argc - c->nargs));
		text_add(text, textlen, &pos, more, strlen(more));
	}
	snprintf(out->fingerprint, sizeof(out->fingerprint), "%016llx", (unsigned long long)h);
}

/* ---- verb classes ------------------------------------------------------------- */

static const struct {
	const char *name;
	int cls;
} classes[] = {
	{ "FLUSHALL", DBW_RVERB_FLUSHALL },
	{ "FLUSHDB", DBW_RVERB_FLUSHDB },
	{ "KEYS", DBW_RVERB_KEYS },
	{ "DEBUG", DBW_RVERB_DEBUG },
	{ "CONFIG", DBW_RVERB_CONFIG },
	{ "CONFIG SET", DBW_RVERB_CONFIG_SET },
	{ "CONFIG REWRITE", DBW_RVERB_CONFIG_REWRITE },
	{ "SHUTDOWN", DBW_RVERB_SHUTDOWN },
	{ "SCRIPT", DBW_RVERB_SCRIPT },
	{ "EVAL", DBW_RVERB_EVAL },
	{ "EVALSHA", DBW_RVERB_EVAL },
	{ "EVAL_RO", DBW_RVERB_EVAL },
	{ "EVALSHA_RO", DBW_RVERB_EVAL },
	{ "FCALL", DBW_RVERB_EVAL },
	{ "FCALL_RO", DBW_RVERB_EVAL },
	{ "DEL", DBW_RVERB_DEL },
	{ "UNLINK", DBW_RVERB_DEL },
	{ "SET", DBW_RVERB_SET },
	{ "GET", DBW_RVERB_GET },
	{ "MIGRATE", DBW_RVERB_MIGRATE },
	{ "MODULE", DBW_RVERB_MODULE },
	{ "ACL", DBW_RVERB_ACL },
	{ "CLIENT", DBW_RVERB_CLIENT },
	{ "CLIENT KILL", DBW_RVERB_CLIENT_KILL },
	{ "SAVE", DBW_RVERB_SAVE },
	{ "BGSAVE", DBW_RVERB_SAVE },
	{ "BGREWRITEAOF", DBW_RVERB_SAVE },
	{ "REPLICAOF", DBW_RVERB_REPLICAOF },
	{ "SLAVEOF", DBW_RVERB_REPLICAOF },
	{ "CLUSTER", DBW_RVERB_CLUSTER },
	{ "SWAPDB", DBW_RVERB_SWAPDB },
	{ "MONITOR", DBW_RVERB_MONITOR },
	{ "FUNCTION", DBW_RVERB_FUNCTION },
	{ "RESTORE", DBW_RVERB_RESTORE },
	{ "RENAME", DBW_RVERB_RENAME },
	{ "RENAMENX", DBW_RVERB_RENAME },
	{ "EXPIRE", DBW_RVERB_EXPIRE },
	{ "PEXPIRE", DBW_RVERB_EXPIRE },
	{ "EXPIREAT", DBW_RVERB_EXPIRE },
	{ "PEXPIREAT", DBW_RVERB_EXPIRE },
	{ "PERSIST", DBW_RVERB_EXPIRE },
	{ "SCAN", DBW_RVERB_SCAN },
	{ "HSCAN", DBW_RVERB_SCAN },
	{ "SSCAN", DBW_RVERB_SCAN },
	{ "ZSCAN", DBW_RVERB_SCAN },
	{ "HSET", DBW_RVERB_HSET },
	{ "HMSET", DBW_RVERB_HSET },
	{ "HSETNX", DBW_RVERB_HSET },
	{ "HGETALL", DBW_RVERB_HGETALL },
};

int redis_verb_class(const char *verb)
{
	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
		if (!strcasecmp(verb, classes[i].name))
			return classes[i].cls;
	return DBW_RVERB_OTHER;
}

const char *redis_verb_entry(size_t i, int *cls)
{
	if (i >= sizeof(classes) / sizeof(classes[0]))
		return NULL;
	*cls = classes[i].cls;
	return classes[i].name;
}

/* ---- key positions for result masking by key --------------------------------- */

/*
 * Commands whose arguments are no keys for masking, though the table
 * above lists some (KEYS' pattern, channels), and those that change how
 * replies pair with commands.
 */
static const struct {
	const char *name;
	uint8_t flags; /* enum dbw_rkey_flags */
} mask_flagged[] = {
	{ "KEYS", DBW_RKEY_NONE },
	{ "SCAN", DBW_RKEY_NONE },
	{ "PING", DBW_RKEY_NONE },
	{ "ECHO", DBW_RKEY_NONE },
	{ "INFO", DBW_RKEY_NONE },
	{ "AUTH", DBW_RKEY_NONE },
	{ "HELLO", DBW_RKEY_NONE },
	{ "SELECT", DBW_RKEY_NONE },
	{ "DBSIZE", DBW_RKEY_NONE },
	{ "RANDOMKEY", DBW_RKEY_NONE },
	{ "TIME", DBW_RKEY_NONE },
	{ "LASTSAVE", DBW_RKEY_NONE },
	{ "FLUSHALL", DBW_RKEY_NONE },
	{ "FLUSHDB", DBW_RKEY_NONE },
	{ "SWAPDB", DBW_RKEY_NONE },
	{ "SAVE", DBW_RKEY_NONE },
	{ "BGSAVE", DBW_RKEY_NONE },
	{ "BGREWRITEAOF", DBW_RKEY_NONE },
	{ "QUIT", DBW_RKEY_NONE },
	{ "RESET", DBW_RKEY_NONE },
	{ "WAIT", DBW_RKEY_NONE },
	{ "WAITAOF", DBW_RKEY_NONE },
	{ "ROLE", DBW_RKEY_NONE },
	{ "READONLY", DBW_RKEY_NONE },
	{ "READWRITE", DBW_RKEY_NONE },
	{ "UNWATCH", DBW_RKEY_NONE },
	{ "PUBLISH", DBW_RKEY_NONE },
	{ "SPUBLISH", DBW_RKEY_NONE },
	{ "SHUTDOWN", DBW_RKEY_NONE },
	{ "REPLICAOF", DBW_RKEY_NONE },
	{ "SLAVEOF", DBW_RKEY_NONE },
	{ "MULTI", DBW_RKEY_MULTI },
	{ "EXEC", DBW_RKEY_EXEC },
	{ "DISCARD", DBW_RKEY_DISCARD },
	/* a reply per channel, messages unasked (RESP2), or none at all */
	{ "SUBSCRIBE", DBW_RKEY_UNPAIRED },
	{ "PSUBSCRIBE", DBW_RKEY_UNPAIRED },
	{ "SSUBSCRIBE", DBW_RKEY_UNPAIRED },
	{ "UNSUBSCRIBE", DBW_RKEY_UNPAIRED },
	{ "PUNSUBSCRIBE", DBW_RKEY_UNPAIRED },
	{ "SUNSUBSCRIBE", DBW_RKEY_UNPAIRED },
	{ "MONITOR", DBW_RKEY_UNPAIRED },
	{ "SYNC", DBW_RKEY_UNPAIRED },
	{ "PSYNC", DBW_RKEY_UNPAIRED },
	{ "CLIENT REPLY", DBW_RKEY_UNPAIRED },
};

static int mask_flags_of(const char *name)
{
	for (size_t i = 0; i < sizeof(mask_flagged) / sizeof(mask_flagged[0]); i++)
		if (!strcmp(name, mask_flagged[i].name))
			return mask_flagged[i].flags;
	return -1;
}

const char *redis_mask_spec_entry(size_t i, struct dbw_rkey_spec *out)
{
	const size_t ncmds = sizeof(cmds) / sizeof(cmds[0]),
		     nflag = sizeof(mask_flagged) / sizeof(mask_flagged[0]),
		     nsub = sizeof(sub_key2) / sizeof(sub_key2[0]),
		     ncont = sizeof(containers) / sizeof(containers[0]);
	int fl;

	*out = (struct dbw_rkey_spec){ .first = 1, .last = -1, .step = 1, .flags = 0 };
	if (i < ncmds) {
		const struct cmd_spec *c = &cmds[i];

		fl = mask_flags_of(c->name);
		if (fl >= 0) {
			out->flags = fl;
		} else if (c->flags & F_NUMKEYS2) {
			/* EVAL script numkeys key...: its ARGV too, from the third on */
			out->first = 3;
		} else {
			out->first = c->first;
			out->last = c->last;
			out->step = c->step;
		}
		return c->name;
	}
	i -= ncmds;
	if (i < nflag) {
		out->flags = mask_flagged[i].flags;
		return mask_flagged[i].name;
	}
	i -= nflag;
	if (i < nsub) {
		/* OBJECT ENCODING key: the key after the subcommand */
		out->first = out->last = 2;
		return sub_key2[i];
	}
	i -= nsub;
	if (i < ncont) {
		/* the other subcommands name no key */
		out->flags = DBW_RKEY_NONE;
		return containers[i];
	}
	return NULL;
}

bool redis_cmd_table_sorted(void)
{
	for (size_t i = 1; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcasecmp(cmds[i - 1].name, cmds[i].name) >= 0)
			return false;
	return true;
}
