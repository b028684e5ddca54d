// SPDX-License-Identifier: GPL-2.0-only
/* MySQL / MariaDB statement splitting, normalization and classification. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dbwarden_abi.h"
#include "mysql_sql.h"
#include "policy.h"

enum tok_kind {
	T_END,
	T_WORD, /* keyword or identifier */
	T_QIDENT, /* `identifier` */
	T_LITERAL, /* string, number, X'..', _utf8'..' */
	T_PARAM, /* ? */
	T_VAR, /* @x, @@x */
	T_PUNCT,
	T_SEMI,
};

struct tok {
	enum tok_kind kind;
	const char *p; /* its bytes in the text (a QIDENT: inside the backticks) */
	size_t n;
	bool spaced; /* whitespace or a comment before it */
};

struct lexer {
	const char *s;
	size_t n, i;
	int exec; /* inside / *! ... * /: its contents are code */
	bool unterminated; /* a quote or comment does not end */
};

static bool word_byte(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

/* Skip whitespace and comments (not an executable comment's contents). */
static void skip_space(struct lexer *l)
{
	while (l->i < l->n) {
		const char *s = l->s;
		size_t i = l->i;
		unsigned char c = s[i];

		if (isspace(c)) {
			l->i++;
		} else if (c == '#' || (c == '-' && i + 1 < l->n && s[i + 1] == '-' &&
					(i + 2 >= l->n || isspace((unsigned char)s[i + 2]) ||
					 (unsigned char)s[i + 2] < 0x20))) {
			while (l->i < l->n && s[l->i] != '\n')
				l->i++;
		} else if (c == '/' && i + 1 < l->n && s[i + 1] == '*') {
			if (i + 2 < l->n && (s[i + 2] == '!' || (s[i + 2] == 'M' && i + 3 < l->n &&
								 s[i + 3] == '!'))) {
				/* executable comment: the version number, then code */
				l->i = i + (s[i + 2] == '!' ? 3 : 4);
				while (l->i < l->n && isdigit((unsigned char)s[l->i]))
					l->i++;
				l->exec++;
				continue;
			}
			{
				const char *e = NULL;

				for (size_t k = i + 2; k + 1 < l->n; k++)
					if (s[k] == '*' && s[k + 1] == '/') {
						e = s + k;
						break;
					}
				if (!e) {
					l->unterminated = true;
					l->i = l->n;
					return;
				}
				l->i = e - s + 2;
			}
		} else if (l->exec && c == '*' && i + 1 < l->n && s[i + 1] == '/') {
			l->exec--;
			l->i += 2;
		} else {
			return;
		}
	}
}

/* Past a quoted run opened at l->s[l->i] (' " or `). */
static void skip_quoted(struct lexer *l, char q)
{
	l->i++;
	while (l->i < l->n) {
		char c = l->s[l->i];

		if (c == '\\' && q != '`') {
			l->i += 2;
			continue;
		}
		if (c == q) {
			if (l->i + 1 < l->n && l->s[l->i + 1] == q) {
				l->i += 2;
				continue;
			}
			l->i++;
			return;
		}
		l->i++;
	}
	l->i = l->n;
	l->unterminated = true;
}

static struct tok next_tok(struct lexer *l)
{
	struct tok t = { T_END, NULL, 0, false };
	size_t start, before = l->i;
	unsigned char c;

	skip_space(l);
	t.spaced = l->i > before;
	if (l->i >= l->n)
		return t;
	start = l->i;
	c = l->s[start];
	t.p = l->s + start;
	if (c == '\'' || c == '"') {
		skip_quoted(l, c);
		t.kind = T_LITERAL;
	} else if (c == '`') {
		skip_quoted(l, '`');
		t.kind = T_QIDENT;
		t.p = l->s + start + 1;
		t.n = l->i - start >= 2 ? l->i - start - 2 : 0;
		return t;
	} else if (isdigit(c) ||
		   (c == '.' && start + 1 < l->n && isdigit((unsigned char)l->s[start + 1]))) {
		/* 12, 1.5e-3, 0x1f, 0b01, and 1abc is an identifier in MySQL: keep it simple */
		l->i++;
		while (l->i < l->n) {
			unsigned char d = l->s[l->i];

			if (isalnum(d) || d == '.' || d == '_' ||
			    ((d == '+' || d == '-') &&
			     (l->s[l->i - 1] == 'e' || l->s[l->i - 1] == 'E') &&
			     !(l->s[start] == '0' && start + 1 < l->n &&
			       (l->s[start + 1] == 'x' || l->s[start + 1] == 'X'))))
				l->i++;
			else
				break;
		}
		t.kind = T_LITERAL;
	} else if (word_byte(c)) {
		while (l->i < l->n && word_byte(l->s[l->i]))
			l->i++;
		t.kind = T_WORD;
		/* X'..', B'..', N'..', _utf8mb4'..': one literal */
		if (l->i < l->n && (l->s[l->i] == '\'' || (c == '_' && l->s[l->i] == '"'))) {
			size_t wl = l->i - start;

			if (c == '_' || (wl == 1 && strchr("xXbBnN", c))) {
				skip_quoted(l, l->s[l->i]);
				t.kind = T_LITERAL;
			}
		}
	} else if (c == '?') {
		l->i++;
		t.kind = T_PARAM;
	} else if (c == '@') {
		l->i++;
		if (l->i < l->n && l->s[l->i] == '@')
			l->i++;
		if (l->i < l->n && (l->s[l->i] == '`' || l->s[l->i] == '\'' || l->s[l->i] == '"'))
			skip_quoted(l, l->s[l->i]);
		else
			while (l->i < l->n && (word_byte(l->s[l->i]) || l->s[l->i] == '.'))
				l->i++;
		t.kind = T_VAR;
	} else if (c == ';') {
		l->i++;
		t.kind = T_SEMI;
	} else {
		static const char *const ops[] = { "<=>", "->>", "<=", ">=", "<>", "!=",
						   ":=",  "||",	 "&&", "<<", ">>", "->" };

		t.kind = T_PUNCT;
		l->i++;
		for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
			size_t on = strlen(ops[k]);

			if (l->n - start >= on && !memcmp(l->s + start, ops[k], on)) {
				l->i = start + on;
				break;
			}
		}
	}
	t.n = l->i - start;
	return t;
}

size_t mysql_split(const char *text, size_t len, struct mysql_span *spans, size_t max)
{
	struct lexer l = { .s = text, .n = len };
	size_t count = 0, start = 0;
	bool any = false;

	for (;;) {
		struct tok t = next_tok(&l);

		if (t.kind == T_END || t.kind == T_SEMI) {
			size_t end = t.kind == T_SEMI ? (size_t)(t.p - text) : len;

			if (any) {
				if (count < max) {
					spans[count].off = start;
					spans[count].len = end - start;
				} else if (max) {
					/* past the room: the last span takes the rest */
					spans[max - 1].len = end - spans[max - 1].off;
				}
				count++;
			}
			if (t.kind == T_END)
				break;
			start = l.i;
			any = false;
			continue;
		}
		if (!any) {
			/* the statement starts at its first token, comments before it kept out */
			start = t.p - text;
			if (t.kind == T_QIDENT)
				start--;
		}
		any = true;
	}
	return count;
}

/* ---- analysis ------------------------------------------------------------------ */

#define MY_MAX_NORM (DBW_MAX_MSG + 64)

struct mysql_analyzer {
	char *norm; /* MY_MAX_NORM bytes */
	char objs[SQL_MAX_OBJECTS][128];
	char verb[32];
};

struct mysql_analyzer *mysql_analyzer_new(void)
{
	struct mysql_analyzer *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->norm = malloc(MY_MAX_NORM);
	if (!a->norm) {
		free(a);
		return NULL;
	}
	return a;
}

void mysql_analyzer_free(struct mysql_analyzer *a)
{
	if (!a)
		return;
	free(a->norm);
	free(a);
}

static bool is_word(const struct tok *t, const char *w)
{
	return t->kind == T_WORD && strlen(w) == t->n && !strncasecmp(t->p, w, t->n);
}

static bool punct(const struct tok *t, char c)
{
	return t->kind == T_PUNCT && t->n == 1 && t->p[0] == c;
}

/* Words after which a name is not an alias but the next clause. */
static bool clause_word(const struct tok *t)
{
	static const char *const w[] = {
		"WHERE",	 "JOIN",      "LEFT",	   "RIGHT",	"INNER",
		"OUTER",	 "CROSS",     "ON",	   "USING",	"GROUP",
		"ORDER",	 "LIMIT",     "SET",	   "VALUES",	"VALUE",
		"SELECT",	 "HAVING",    "UNION",	   "FOR",	"LOCK",
		"STRAIGHT_JOIN", "NATURAL",   "PARTITION", "USE",	"FORCE",
		"IGNORE",	 "WINDOW",    "INTO",	   "RETURNING", "FULL",
		"EXCEPT",	 "INTERSECT", "AS",	   "LIKE",	"ADD",
		"DROP",		 "MODIFY",    "CHANGE",	   "RENAME",	"ENGINE",
		"DEFAULT",	 "CHARACTER", "COLLATE",   "COMMENT",	"TO",
	};

	if (t->kind != T_WORD)
		return false;
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		if (is_word(t, w[i]))
			return true;
	return false;
}

/* Noise between an object keyword and the name. */
static bool noise_word(const struct tok *t)
{
	static const char *const w[] = { "IF",	    "NOT",	    "EXISTS",	     "IGNORE",
					 "ONLY",    "LOW_PRIORITY", "QUICK",	     "TEMPORARY",
					 "LATERAL", "DELAYED",	    "HIGH_PRIORITY", "TABLE" };

	if (t->kind != T_WORD)
		return false;
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		if (is_word(t, w[i]))
			return true;
	return false;
}

struct walk {
	struct lexer l;
	struct tok t; /* current token */
	char *out;
	size_t pos, cap;
	bool cut; /* normalized text did not fit */
	uint64_t fp;
	enum tok_kind prev;
	char prevc;
};

static void emit(struct walk *w, const char *s, size_t n, bool space)
{
	if (w->cut)
		return; /* once a token did not fit, none after it is written */
	if (w->pos + n + 2 >= w->cap) {
		w->cut = true;
		return;
	}
	if (space && w->pos)
		w->out[w->pos++] = ' ';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];

		w->out[w->pos++] = c < 0x20 ? ' ' : c;
	}
	w->out[w->pos] = 0;
}

static uint64_t fnv_bytes(uint64_t h, const char *s, size_t n, bool fold)
{
	h = (h ^ ' ') * DBW_FNV_PRIME;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)(fold ? tolower((unsigned char)s[i]) : s[i])) * DBW_FNV_PRIME;
	return h;
}

/* Append the current token to the normalized text and the fingerprint. */
static void norm_tok(struct walk *w)
{
	const struct tok *t = &w->t;
	bool space = true;
	char c = t->kind == T_PUNCT ? t->p[0] : 0;

	if ((t->kind == T_PUNCT && t->n == 1 && (c == ',' || c == ')' || c == '.')) ||
	    w->prevc == '(' || w->prevc == '.')
		space = false;
	/* count(*) stays a call, VALUES (...) keeps its space: as written */
	if (t->kind == T_PUNCT && c == '(' && !t->spaced && w->prev != T_PUNCT)
		space = false;
	switch (t->kind) {
	case T_LITERAL:
		emit(w, "?", 1, space);
		w->fp = fnv_bytes(w->fp, "?", 1, false);
		break;
	case T_QIDENT:
		emit(w, "`", 1, space);
		emit(w, t->p, t->n, false);
		emit(w, "`", 1, false);
		w->fp = fnv_bytes(w->fp, t->p, t->n, true);
		break;
	case T_VAR:
		/* a user variable's name is not a value; a quoted one stays quoted */
		emit(w, t->p, t->n, space);
		w->fp = fnv_bytes(w->fp, t->p, t->n, true);
		break;
	default:
		emit(w, t->p, t->n, space);
		w->fp = fnv_bytes(w->fp, t->p, t->n, true);
	}
	w->prevc = t->kind == T_PUNCT && t->n == 1 ? c : 0;
	w->prev = t->kind;
}

static void advance(struct walk *w)
{
	w->t = next_tok(&w->l);
	if (w->t.kind != T_END)
		norm_tok(w);
}

/* A name (`db`.`t`, db.t, t) at the current token into dst. false if none. */
static bool read_name(struct walk *w, char *dst, size_t cap)
{
	size_t n = 0;

	for (;;) {
		if (w->t.kind != T_WORD && w->t.kind != T_QIDENT)
			return n > 0;
		if (w->t.kind == T_WORD && clause_word(&w->t) && !n)
			return false;
		n += snprintf(dst + n, n < cap ? cap - n : 0, "%.*s", (int)w->t.n, w->t.p);
		if (n >= cap)
			n = cap - 1;
		advance(w);
		if (!punct(&w->t, '.'))
			return true;
		n += snprintf(dst + n, n < cap ? cap - n : 0, ".");
		if (n >= cap)
			n = cap - 1;
		advance(w);
	}
}

static void add_object(struct mysql_analyzer *a, struct sql_analysis *out, const char *name)
{
	for (size_t i = 0; i < out->nobjects; i++)
		if (!strcmp(out->objects[i], name))
			return;
	if (out->nobjects < SQL_MAX_OBJECTS) {
		snprintf(a->objs[out->nobjects], sizeof(a->objs[0]), "%s", name);
		out->objects[out->nobjects] = a->objs[out->nobjects];
		out->nobjects++;
	}
}

static uint32_t verb_bit(const char *verb)
{
	int v;

	if (!strcasecmp(verb, "REPLACE"))
		return 1u << DBW_VERB_INSERT;
	if (!strcasecmp(verb, "RENAME"))
		return 1u << DBW_VERB_ALTER;
	if (!strcasecmp(verb, "DESCRIBE") || !strcasecmp(verb, "DESC"))
		return 1u << DBW_VERB_EXPLAIN;
	if (!strcasecmp(verb, "XA"))
		return 0;
	v = policy_verb(verb);
	return v > 0 ? 1u << v : 0;
}

int mysql_analyze(struct mysql_analyzer *a, const char *text, size_t len, bool truncated,
		  struct sql_analysis *out)
{
	struct walk w = { .l = { .s = text, .n = len }, .fp = DBW_FNV_OFFSET };
	int depth = 0;
	bool first = true, where = false, want_verb = false, top_verb = false;
	char name[128];

	memset(out, 0, sizeof(*out));
	if (!a) {
		out->normalized = "<unavailable>";
		out->verb = "UNKNOWN";
		return -1;
	}
	w.out = a->norm;
	w.cap = MY_MAX_NORM;
	a->norm[0] = 0;
	snprintf(a->verb, sizeof(a->verb), "UNKNOWN");
	advance(&w);
	while (w.t.kind != T_END) {
		struct tok t = w.t;
		bool objkw = false, list = false, was_first = first;

		if (punct(&t, '(')) {
			depth++;
			want_verb = true; /* a subquery's verb */
			advance(&w);
			continue;
		}
		if (punct(&t, ')')) {
			if (depth)
				depth--;
			advance(&w);
			continue;
		}
		if (t.kind == T_WORD && (first || want_verb || top_verb)) {
			char v[32];
			uint32_t bit;

			snprintf(v, sizeof(v), "%.*s", (int)t.n, t.p);
			for (char *p = v; *p; p++)
				*p = toupper((unsigned char)*p);
			bit = verb_bit(v);
			if (first) {
				snprintf(a->verb, sizeof(a->verb), "%s", v);
				top_verb = !strcmp(v, "EXPLAIN") || !strcmp(v, "DESCRIBE") ||
					   !strcmp(v, "DESC") || !strcmp(v, "WITH");
				out->verbs |= bit;
			} else if (want_verb || top_verb) {
				if (!strcmp(v, "SELECT") || !strcmp(v, "INSERT") ||
				    !strcmp(v, "UPDATE") || !strcmp(v, "DELETE") ||
				    !strcmp(v, "REPLACE")) {
					out->verbs |= bit;
					if (top_verb && depth == 0 && !strcmp(a->verb, "WITH"))
						snprintf(a->verb, sizeof(a->verb), "%s", v);
					if (top_verb && depth == 0)
						top_verb = false;
				} else if (top_verb && depth == 0 && strcmp(a->verb, "WITH")) {
					top_verb = false; /* EXPLAIN FORMAT=..., DESCRIBE t */
				}
			}
		}
		if (t.kind == T_WORD || t.kind == T_QIDENT)
			want_verb = false;
		first = false;
		if (t.kind == T_WORD) {
			if (depth == 0 && is_word(&t, "WHERE"))
				where = true;
			objkw = is_word(&t, "FROM") || is_word(&t, "JOIN") || is_word(&t, "INTO") ||
				is_word(&t, "TABLE") || is_word(&t, "TABLES") ||
				is_word(&t, "STRAIGHT_JOIN") ||
				(is_word(&t, "UPDATE") && w.prev != T_WORD) ||
				is_word(&t, "TRUNCATE") ||
				(was_first && (is_word(&t, "DESCRIBE") || is_word(&t, "DESC")));
			list = is_word(&t, "FROM") || is_word(&t, "TABLE") ||
			       is_word(&t, "TABLES") || is_word(&t, "UPDATE");
		}
		advance(&w);
		if (!objkw)
			continue;
		while (noise_word(&w.t))
			advance(&w);
		for (;;) {
			if (!read_name(&w, name, sizeof(name)))
				break;
			add_object(a, out, name);
			if (!list)
				break;
			/* an alias, then maybe another name: FROM a x, b AS y */
			if (is_word(&w.t, "AS"))
				advance(&w);
			if ((w.t.kind == T_WORD && !clause_word(&w.t)) || w.t.kind == T_QIDENT)
				advance(&w);
			if (!punct(&w.t, ','))
				break;
			advance(&w);
		}
	}
	out->normalized = a->norm;
	out->verb = a->verb;
	out->without_where = (!strcmp(a->verb, "UPDATE") || !strcmp(a->verb, "DELETE")) && !where;
	out->parsed = !truncated && !w.l.unterminated && !w.cut && a->norm[0];
	if (w.cut) {
		/* cut at a token: no literal is ever half-written */
		size_t n = strlen(a->norm);

		if (n + 4 < MY_MAX_NORM)
			memcpy(a->norm + n, " ...", 5);
	}
	if (a->norm[0])
		snprintf(out->fingerprint, sizeof(out->fingerprint), "%016llx",
			 (unsigned long long)w.fp);
	return 0;
}
