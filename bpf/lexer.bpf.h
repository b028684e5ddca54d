/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A bounded SQL lexer for the guard: what statements a PostgreSQL Query or
 * Parse text holds, read in the kernel before the server sees it. BPF-only
 * header.
 *
 * It is not a parser. It reads tokens the way PostgreSQL's scanner does
 * (whitespace, -- and nested / * * / comments, case-folded keywords,
 * "quoted" identifiers, '...' and E'...' strings, $tag$...$tag$ quotes,
 * numbers and $n parameters) and looks for statement verbs only where a
 * statement can start: the beginning of the text and after each ';', the
 * first word inside '(' (a data-modifying CTE, COPY (...)), after EXPLAIN
 * and its options, after PREPARE ... AS, and the main verb after a WITH
 * list. So "SELECT 'DROP TABLE t'", a column named "drop" or "FOR UPDATE"
 * are not verbs, and "/ * x * /DROP/ * y * /TABLE t" is.
 *
 * Results (struct dbw_lex_result): every verb seen, WITHOUT_WHERE for an
 * UPDATE/DELETE whose own level (parentheses) has no WHERE, DYNAMIC for
 * DO / EXECUTE / CALL (SQL that only the server will see), and the
 * relations named after FROM/JOIN/INTO/UPDATE/TABLE/TRUNCATE as name
 * hashes (dbw_name_hash: unquoted parts folded to lower case, "schema.table"
 * with its dot). What it cannot read to the end within its bounds is
 * flagged INCOMPLETE or UNTERMINATED: the policy's defaults.unparsed
 * decides then, never a guess.
 *
 * MySQL / MariaDB (sql_lex_mode, mysql set): '...' and "..." are strings
 * with backslash escapes, `...` a quoted identifier, # starts a line
 * comment and -- only before a space or control byte, block comments do
 * not nest, / *! ... * / and / *M! ... * / are code (their delimiters are
 * skipped), and there are no dollar quotes.
 *
 * Known gaps (documented in the README): standard_conforming_strings=off
 * (a backslash escaping a quote in '...') is not modelled; CTE names read in
 * FROM are reported as objects.
 */
#ifndef DBW_LEXER_BPF_H
#define DBW_LEXER_BPF_H

#include "maps.bpf.h"

/* The text to lex, copied here by the caller (per CPU: sk_msg holds the socket lock). */
struct lex_text {
	__u8 b[DBW_LEX_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lex_text);
} lex_buf SEC(".maps");

static __always_inline __u8 *lex_text(void)
{
	__u32 zero = 0;
	struct lex_text *t = bpf_map_lookup_elem(&lex_buf, &zero);

	return t ? t->b : NULL;
}

enum lex_mode {
	M_NORMAL,
	M_WORD, /* unquoted identifier or keyword */
	M_QWORD, /* "quoted identifier" */
	M_STR, /* '...' */
	M_ESTR, /* E'...' (backslash escapes) */
	M_DTAG, /* reading $tag$ that opens a dollar quote */
	M_DOLLAR, /* inside a dollar quote */
	M_DCLOSE, /* reading a candidate closing $tag$ */
	M_LINE, /* -- comment */
	M_BLOCK, /* / * comment * /, nested */
	M_NUM, /* number or $n */
	M_SKIP, /* the second byte of a two-byte token; then mode = resume */
	M_DASH2, /* MySQL: the second '-' of "--": a comment only before a space */
	M_SLASH, /* MySQL: the '*' of a comment opener: "!" makes it code */
	M_EXECV, /* MySQL: the version number after / *! (its contents are code) */
};

/* Keyword classes: verbs carry their enum dbw_verb in the low byte. */
#define K_NONE	 0
#define K_VERB	 0x100
#define K_TABLE	 0x200
#define K_WITH	 0x300
#define K_SKIP	 0x400 /* noise before an object name: ONLY, IF EXISTS, LATERAL */
#define K_AS	 0x500
#define K_WHERE	 0x600
#define K_FROM	 0x700
#define K_JOIN	 0x800
#define K_INTO	 0x900
#define K_OPT	 0xa00 /* EXPLAIN option words */
#define K_CLAUSE 0xb00 /* ends an object list */

#define LEX_MAX_DEPTH 15

struct lex_state {
	__u32 len;
	__u8 mode;
	__u8 depth;
	__u8 verb_pos; /* the next word may be a statement verb */
	__u8 stmt_verb; /* enum dbw_verb of the current statement's first word, 0 none */
	__u8 in_with; /* the statement began with WITH */
	__u8 expect_obj; /* the next name is a relation */
	__u8 obj_pending; /* a name was read; a '.' may continue it */
	__u8 list; /* a ',' at list_depth expects another relation */
	__u8 list_depth;
	__u8 word_len;
	__u8 was_e; /* the word just ended was a lone E, right before this byte */
	__u8 explain; /* inside EXPLAIN, before its statement */
	__u8 prepare_as; /* PREPARE ... : AS introduces the statement */
	__u8 stmt_open; /* a statement has started since the last ';' */
	__u8 obj_dot; /* a '.' follows a relation name: the next word goes on with it */
	__u8 resume; /* mode after M_SKIP */
	__u8 mysql; /* MySQL / MariaDB rules (below) instead of PostgreSQL's */
	__u8 quote; /* the byte that closes the current quoted run */
	__u8 exec; /* MySQL: executable comments open (their closing * / is skipped) */
	__u8 pad0;
	__u16 block_depth;
	__u16 ww; /* per depth: an UPDATE/DELETE waiting for its WHERE */
	__u64 word; /* first 8 letters, lower case */
	__u64 h; /* name hash of the word being read */
	__u64 obj_h; /* name hash of the (qualified) relation being read */
	__u64 tag_h; /* dollar-quote tag */
	__u64 cand_h;
	__u32 tag_len, cand_len;
	struct dbw_lex_result res; /* in the state: global functions get no pointers in it */
};

static __always_inline __u8 lower(__u8 c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static __always_inline int word_start(__u8 c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static __always_inline int word_char(__u8 c)
{
	return word_start(c) || (c >= '0' && c <= '9') || c == '$';
}

static __always_inline int tag_char(__u8 c)
{
	return word_start(c) || (c >= '0' && c <= '9');
}

/*
 * The class of a word from its first 8 letters (lower case, little-endian)
 * and length. Generated from a keyword list. Global: verified once.
 */
__noinline __u32 kw_class(__u64 w, __u32 len)
{
	switch (len) {
	case 2:
		if (w == 0x6f64ULL) /* do */
			return K_VERB | DBW_VERB_DO;
		if (w == 0x7361ULL) /* as */
			return K_AS;
		if (w == 0x6669ULL) /* if */
			return K_SKIP;
		if (w == 0x6e6fULL) /* on */
			return K_CLAUSE;
		break;
	case 3:
		if (w == 0x646e65ULL) /* end */
			return K_VERB | DBW_VERB_COMMIT;
		if (w == 0x746573ULL) /* set */
			return K_VERB | DBW_VERB_SET;
		if (w == 0x726f66ULL) /* for */
			return K_CLAUSE;
		break;
	case 4:
		if (w == 0x706f7264ULL) /* drop */
			return K_VERB | DBW_VERB_DROP;
		if (w == 0x79706f63ULL) /* copy */
			return K_VERB | DBW_VERB_COPY;
		if (w == 0x776f6873ULL) /* show */
			return K_VERB | DBW_VERB_SHOW;
		if (w == 0x6c6c6163ULL) /* call */
			return K_VERB | DBW_VERB_CALL;
		if (w == 0x6b636f6cULL) /* lock */
			return K_VERB | DBW_VERB_LOCK;
		if (w == 0x68746977ULL) /* with */
			return K_WITH;
		if (w == 0x6d6f7266ULL) /* from */
			return K_FROM;
		if (w == 0x6e696f6aULL) /* join */
			return K_JOIN;
		if (w == 0x6f746e69ULL) /* into */
			return K_INTO;
		if (w == 0x796c6e6fULL) /* only */
			return K_SKIP;
		if (w == 0x7466656cULL) /* left */
			return K_CLAUSE;
		if (w == 0x6c6c7566ULL) /* full */
			return K_CLAUSE;
		break;
	case 5:
		if (w == 0x656772656dULL) /* merge */
			return K_VERB | DBW_VERB_MERGE;
		if (w == 0x7265746c61ULL) /* alter */
			return K_VERB | DBW_VERB_ALTER;
		if (w == 0x746e617267ULL) /* grant */
			return K_VERB | DBW_VERB_GRANT;
		if (w == 0x6e69676562ULL) /* begin */
			return K_VERB | DBW_VERB_BEGIN;
		if (w == 0x7472617473ULL) /* start */
			return K_VERB | DBW_VERB_BEGIN;
		if (w == 0x74726f6261ULL) /* abort */
			return K_VERB | DBW_VERB_ROLLBACK;
		if (w == 0x656c626174ULL) /* table */
			return K_TABLE;
		if (w == 0x6572656877ULL) /* where */
			return K_WHERE;
		if (w == 0x676e697375ULL) /* using */
			return K_CLAUSE;
		if (w == 0x70756f7267ULL) /* group */
			return K_CLAUSE;
		if (w == 0x726564726fULL) /* order */
			return K_CLAUSE;
		if (w == 0x74696d696cULL) /* limit */
			return K_CLAUSE;
		if (w == 0x6e6f696e75ULL) /* union */
			return K_CLAUSE;
		if (w == 0x7468676972ULL) /* right */
			return K_CLAUSE;
		if (w == 0x72656e6e69ULL) /* inner */
			return K_CLAUSE;
		if (w == 0x73736f7263ULL) /* cross */
			return K_CLAUSE;
		if (w == 0x726574756fULL) /* outer */
			return K_CLAUSE;
		break;
	case 6:
		if (w == 0x7463656c6573ULL) /* select */
			return K_VERB | DBW_VERB_SELECT;
		if (w == 0x747265736e69ULL) /* insert */
			return K_VERB | DBW_VERB_INSERT;
		if (w == 0x657461647075ULL) /* update */
			return K_VERB | DBW_VERB_UPDATE;
		if (w == 0x6574656c6564ULL) /* delete */
			return K_VERB | DBW_VERB_DELETE;
		if (w == 0x657461657263ULL) /* create */
			return K_VERB | DBW_VERB_CREATE;
		if (w == 0x656b6f766572ULL) /* revoke */
			return K_VERB | DBW_VERB_REVOKE;
		if (w == 0x74696d6d6f63ULL) /* commit */
			return K_VERB | DBW_VERB_COMMIT;
		if (w == 0x6d7575636176ULL) /* vacuum */
			return K_VERB | DBW_VERB_VACUUM;
		if (w == 0x7365756c6176ULL) /* values */
			return K_VERB | DBW_VERB_VALUES;
		if (w == 0x737473697865ULL) /* exists */
			return K_SKIP;
		if (w == 0x676e69766168ULL) /* having */
			return K_CLAUSE;
		if (w == 0x776f646e6977ULL) /* window */
			return K_CLAUSE;
		if (w == 0x74657366666fULL) /* offset */
			return K_CLAUSE;
		if (w == 0x747065637865ULL) /* except */
			return K_CLAUSE;
		break;
	case 7:
		if (w == 0x6e69616c707865ULL) /* explain */
			return K_VERB | DBW_VERB_EXPLAIN;
		if (w == 0x65726170657270ULL) /* prepare */
			return K_VERB | DBW_VERB_PREPARE;
		if (w == 0x65747563657865ULL) /* execute */
			return K_VERB | DBW_VERB_EXECUTE;
		if (w == 0x657a796c616e61ULL) /* analyze */
			return K_VERB | DBW_VERB_ANALYZE;
		if (w == 0x6573796c616e61ULL) /* analyse */
			return K_VERB | DBW_VERB_ANALYZE;
		if (w == 0x7865646e696572ULL) /* reindex */
			return K_VERB | DBW_VERB_REINDEX;
		if (w == 0x746e656d6d6f63ULL) /* comment */
			return K_VERB | DBW_VERB_COMMENT;
		if (w == 0x68736572666572ULL) /* refresh */
			return K_VERB | DBW_VERB_REFRESH;
		if (w == 0x6c61726574616cULL) /* lateral */
			return K_SKIP;
		if (w == 0x65736f62726576ULL) /* verbose */
			return K_OPT;
		if (w == 0x65646163736163ULL) /* cascade */
			return K_CLAUSE;
		if (w == 0x6c61727574616eULL) /* natural */
			return K_CLAUSE;
		if (w == 0x746c7561666564ULL) /* default */
			return K_CLAUSE;
		if (w == 0x74726174736572ULL) /* restart */
			return K_CLAUSE;
		break;
	case 8:
		if (w == 0x657461636e757274ULL) /* truncate */
			return K_VERB | DBW_VERB_TRUNCATE;
		if (w == 0x6b6361626c6c6f72ULL) /* rollback */
			return K_VERB | DBW_VERB_ROLLBACK;
		if (w == 0x7463697274736572ULL) /* restrict */
			return K_CLAUSE;
		if (w == 0x65756e69746e6f63ULL) /* continue */
			return K_CLAUSE;
		if (w == 0x797469746e656469ULL) /* identity */
			return K_CLAUSE;
		break;
	case 9:
		if (w == 0x7669737275636572ULL) /* recursive */
			return K_SKIP;
		if (w == 0x6e696e7275746572ULL) /* returning */
			return K_CLAUSE;
		if (w == 0x6365737265746e69ULL) /* intersect */
			return K_CLAUSE;
		break;
	case 10:
		if (w == 0x61636f6c6c616564ULL) /* deallocate */
			return K_VERB | DBW_VERB_DEALLOCATE;
		if (w == 0x696469727265766fULL) /* overriding */
			return K_CLAUSE;
		break;
	case 11:
		if (w == 0x6d6173656c626174ULL) /* tablesample */
			return K_CLAUSE;
		break;
	}
	return K_NONE;
}

static __always_inline void add_verb(struct lex_state *s, __u32 v)
{
	s->res.verbs |= 1u << (v & 31);
	if ((v == DBW_VERB_UPDATE || v == DBW_VERB_DELETE) && s->depth <= LEX_MAX_DEPTH)
		s->ww |= 1u << s->depth;
	if (v == DBW_VERB_DO || v == DBW_VERB_EXECUTE || v == DBW_VERB_CALL)
		s->res.flags |= DBW_LEX_F_DYNAMIC;
	if (v == DBW_VERB_UPDATE || v == DBW_VERB_TRUNCATE) {
		s->expect_obj = 1;
		s->list = v == DBW_VERB_TRUNCATE;
		s->list_depth = s->depth;
	}
}

static __always_inline void obj_done(struct lex_state *s)
{
	struct dbw_lex_result *o = &s->res;

	if (!s->obj_pending)
		return;
	s->obj_pending = 0;
	s->expect_obj = 0;
	for (__u32 i = 0; i < DBW_LEX_OBJECTS; i++) {
		if (i == o->nobjects) {
			o->objects[i] = s->obj_h;
			o->nobjects++;
			return;
		}
		if (o->objects[i] == s->obj_h)
			return;
	}
	o->flags |= DBW_LEX_F_OBJECTS_FULL;
}

/* A statement starts with this token (after ';' or at the start). */
static __always_inline void stmt_begin(struct lex_state *s)
{
	if (!s->stmt_open) {
		s->stmt_open = 1;
		s->res.nstmts++;
	}
}

/* The statement ends (';' or the end of the text): settle what it left open. */
static __always_inline void stmt_end(struct lex_state *s)
{
	obj_done(s);
	if (s->ww)
		s->res.flags |= DBW_LEX_F_WITHOUT_WHERE;
	s->ww = 0;
	s->depth = 0;
	s->verb_pos = 1;
	s->stmt_verb = 0;
	s->in_with = 0;
	s->expect_obj = 0;
	s->list = 0;
	s->explain = 0;
	s->prepare_as = 0;
	s->stmt_open = 0;
}

/* A word ended (quoted: a "quoted identifier"): keyword logic, or a name. Global. */
__noinline int word_end(struct lex_state *s, int quoted)
{
	__u32 k, cls, v;

	if (!s)
		return 0;
	s->res.shape = fnv(s->res.shape, ' ');
	k = quoted ? K_NONE : kw_class(s->word, s->word_len);
	cls = k & 0xff00;
	v = k & 0xff;
	stmt_begin(s);
	if (s->obj_dot) {
		/* the part after "schema." */
		s->obj_dot = 0;
		s->obj_h = s->h;
		return 0;
	}
	if (s->expect_obj && !s->obj_pending) {
		if (cls == K_SKIP || cls == K_TABLE)
			return 0;
		if (cls != K_CLAUSE && cls != K_WHERE && cls != K_AS && cls != K_FROM &&
		    cls != K_JOIN &&
		    !(cls == K_VERB &&
		      (v == DBW_VERB_SELECT || v == DBW_VERB_VALUES || v == DBW_VERB_SET))) {
			s->obj_h = s->h;
			s->obj_pending = 1;
			s->verb_pos = 0;
			return 0;
		}
		s->expect_obj = 0;
	}
	obj_done(s);
	if (s->explain && (cls == K_OPT || (cls == K_VERB && v == DBW_VERB_ANALYZE))) {
		s->verb_pos = 1; /* EXPLAIN ANALYZE VERBOSE <statement> */
		return 0;
	}
	if (s->verb_pos && cls == K_VERB) {
		s->verb_pos = 0;
		s->explain = 0;
		if (!s->stmt_verb)
			s->stmt_verb = v;
		add_verb(s, v);
		if (v == DBW_VERB_EXPLAIN) {
			s->explain = 1;
			s->verb_pos = 1;
		}
		if (v == DBW_VERB_PREPARE)
			s->prepare_as = 1;
		return 0;
	}
	if (s->verb_pos && cls == K_WITH) {
		s->verb_pos = 0;
		s->in_with = 1;
		if (!s->stmt_verb)
			s->stmt_verb = DBW_VERB_OTHER;
		return 0;
	}
	s->verb_pos = 0;
	/* INSERT INTO t [(...)] SELECT | VALUES: the source is a statement too */
	if (s->stmt_verb == DBW_VERB_INSERT && cls == K_VERB &&
	    (v == DBW_VERB_SELECT || v == DBW_VERB_VALUES))
		add_verb(s, v);
	switch (cls) {
	case K_WHERE:
		if (s->depth <= LEX_MAX_DEPTH)
			s->ww &= ~(1u << s->depth);
		s->list = 0;
		break;
	case K_FROM:
	case K_JOIN:
	case K_INTO:
	case K_TABLE:
		s->expect_obj = 1;
		s->list = cls == K_FROM || cls == K_TABLE;
		s->list_depth = s->depth;
		break;
	case K_AS:
		if (s->prepare_as) {
			s->prepare_as = 0;
			s->verb_pos = 1;
		}
		break;
	case K_CLAUSE:
		s->list = 0;
		break;
	}
	return 0;
}

/* One byte of M_NORMAL (also the byte that ended a word or number). Global. */
__noinline int normal_byte(struct lex_state *s, __u8 c, __u8 next)
{
	if (!s)
		return 0;
	if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')
		return 0;
	if (c == '-' && next == '-') {
		/* MySQL: "1--1" is arithmetic; the next byte decides */
		s->mode = s->mysql ? M_DASH2 : M_LINE;
		return 0;
	}
	if (c == '/' && next == '*') {
		s->block_depth = 1;
		s->mode = M_SKIP;
		s->resume = s->mysql ? M_SLASH : M_BLOCK;
		return 0;
	}
	if (s->mysql) {
		if (c == '#') {
			s->mode = M_LINE;
			return 0;
		}
		if (c == '*' && next == '/' && s->exec) {
			/* the end of an executable comment */
			s->exec--;
			s->mode = M_SKIP;
			s->resume = M_NORMAL;
			return 0;
		}
	}
	if (s->obj_pending && !s->obj_dot && c != '.')
		obj_done(s);
	/* the shape: words as read, every literal as one '?', punctuation as is */
	s->res.shape = fnv(s->res.shape, word_start(c) ? lower(c) :
					 c == '\'' || c == '$' || (c >= '0' && c <= '9') ||
							 (c == '"' && s->mysql) ?
							 '?' :
							 c);
	if (s->mysql && (c == '"' || c == '\'' || c == '`')) {
		/* strings with backslash escapes, or a `quoted` name */
		s->quote = c;
		if (c == '`') {
			s->mode = M_QWORD;
			s->word_len = 0;
			s->h = s->obj_pending ? s->obj_h : DBW_FNV_OFFSET;
			return 0;
		}
		s->mode = M_ESTR;
		stmt_begin(s);
		s->verb_pos = 0;
		return 0;
	}
	if (word_start(c)) {
		s->mode = M_WORD;
		s->word = lower(c);
		s->word_len = 1;
		s->h = fnv(s->obj_pending ? s->obj_h : DBW_FNV_OFFSET, lower(c));
		return 0;
	}
	switch (c) {
	case '"':
		s->quote = '"';
		s->mode = M_QWORD;
		s->word_len = 0;
		s->h = s->obj_pending ? s->obj_h : DBW_FNV_OFFSET;
		return 0;
	case '\'':
		s->quote = '\'';
		s->mode = s->was_e ? M_ESTR : M_STR;
		stmt_begin(s);
		s->verb_pos = 0;
		return 0;
	case '$':
		stmt_begin(s);
		s->verb_pos = 0;
		if (s->mysql)
			return 0; /* no dollar quotes */
		if (next >= '0' && next <= '9') {
			s->mode = M_NUM;
			return 0;
		}
		s->mode = M_DTAG;
		s->tag_h = DBW_FNV_OFFSET;
		s->tag_len = 0;
		return 0;
	case '.':
		if (s->obj_pending) {
			/* schema.table: the name goes on */
			s->obj_h = fnv(s->obj_h, '.');
			s->obj_dot = 1;
			return 0;
		}
		if (next >= '0' && next <= '9')
			s->mode = M_NUM;
		return 0;
	case ';':
		stmt_end(s);
		return 0;
	case '(':
		stmt_begin(s);
		if (s->depth < 255)
			s->depth++;
		if (s->depth <= LEX_MAX_DEPTH)
			s->ww &= ~(1u << s->depth);
		s->expect_obj = 0;
		s->verb_pos = 1; /* (DELETE ...), (SELECT ...), COPY (...) */
		return 0;
	case ')':
		if (s->depth <= LEX_MAX_DEPTH && (s->ww & (1u << s->depth)))
			s->res.flags |= DBW_LEX_F_WITHOUT_WHERE;
		if (s->depth <= LEX_MAX_DEPTH)
			s->ww &= ~(1u << s->depth);
		if (s->depth)
			s->depth--;
		/* after a CTE's body or EXPLAIN's options, the statement follows */
		s->verb_pos = (s->in_with || s->explain) && s->depth == 0;
		return 0;
	case ',':
		if (s->list && s->depth == s->list_depth)
			s->expect_obj = 1;
		s->verb_pos = 0;
		return 0;
	}
	if (c >= '0' && c <= '9') {
		stmt_begin(s);
		s->mode = M_NUM;
		s->verb_pos = 0;
		return 0;
	}
	/* operators and other punctuation */
	stmt_begin(s);
	s->verb_pos = 0;
	return 0;
}

/*
 * bpf_loop step: byte i of the text (a callback must be static; the
 * verifier checks it once, as a subprogram). Returns 0 to go on, 1 to stop.
 */
static long lex_step(__u32 i, void *ctx)
{
	struct lex_state *s = ctx;
	__u8 *b = lex_text();
	__u8 c, next;

	if (!s || !b || i >= s->len || i >= DBW_LEX_MAX)
		return 1;
	c = b[i & (DBW_LEX_MAX - 1)];
	next = i + 1 < s->len && i + 1 < DBW_LEX_MAX ? b[(i + 1) & (DBW_LEX_MAX - 1)] : 0;
	s->was_e = 0;
	switch (s->mode) {
	case M_WORD:
		if (word_char(c)) {
			s->res.shape = fnv(s->res.shape, lower(c));
			if (s->word_len < 8)
				s->word |= (__u64)lower(c) << (8 * s->word_len);
			if (s->word_len < 255)
				s->word_len++;
			s->h = fnv(s->h, lower(c));
			return 0;
		}
		s->mode = M_NORMAL;
		s->was_e = c == '\'' && s->word_len == 1 && s->word == 'e';
		if (!s->was_e)
			word_end(s, 0);
		else
			stmt_begin(s);
		normal_byte(s, c, next);
		return 0;
	case M_QWORD:
		if (c == s->quote && next == s->quote) {
			/* "" is a quote inside the name (`` in MySQL) */
			s->h = fnv(s->h, c);
			s->mode = M_SKIP;
			s->resume = M_QWORD;
		} else if (c == s->quote) {
			s->mode = M_NORMAL;
			word_end(s, 1);
		} else {
			s->h = fnv(s->h, c);
			s->res.shape = fnv(s->res.shape, c);
		}
		return 0;
	case M_STR:
		if (c == '\'' && next == '\'') {
			s->mode = M_SKIP;
			s->resume = M_STR;
		} else if (c == '\'') {
			s->mode = M_NORMAL;
		}
		return 0;
	case M_ESTR:
		if (c == '\\' || (c == s->quote && next == s->quote)) {
			s->mode = M_SKIP;
			s->resume = M_ESTR;
		} else if (c == s->quote) {
			s->mode = M_NORMAL;
		}
		return 0;
	case M_DASH2:
		/* at the second '-': a comment when a space or control byte (or the end) follows */
		if (next <= ' ') {
			s->mode = M_LINE;
			return 0;
		}
		s->mode = M_NORMAL;
		stmt_begin(s);
		s->verb_pos = 0;
		return 0;
	case M_SLASH:
		/* the byte after / *: '!' (or "M!") opens code, anything else a comment */
		if (c == '!' || (c == 'M' && next == '!')) {
			if (s->exec < 255)
				s->exec++;
			s->mode = c == 'M' ? M_SKIP : M_EXECV;
			s->resume = M_EXECV;
			return 0;
		}
		s->mode = M_BLOCK;
		if (c == '*' && next == '/') {
			s->mode = M_SKIP;
			s->resume = M_NORMAL;
		}
		return 0;
	case M_EXECV:
		if (c >= '0' && c <= '9')
			return 0;
		s->mode = M_NORMAL;
		normal_byte(s, c, next);
		return 0;
	case M_SKIP:
		s->mode = s->resume;
		return 0;
	case M_DTAG:
		if (c == '$') {
			s->mode = M_DOLLAR;
			return 0;
		}
		if (tag_char(c) && !(s->tag_len == 0 && c >= '0' && c <= '9')) {
			s->tag_h = fnv(s->tag_h, c);
			s->tag_len++;
			return 0;
		}
		/* not a dollar quote after all */
		s->mode = M_NORMAL;
		normal_byte(s, c, next);
		return 0;
	case M_DOLLAR:
		if (c == '$') {
			s->mode = M_DCLOSE;
			s->cand_h = DBW_FNV_OFFSET;
			s->cand_len = 0;
		}
		return 0;
	case M_DCLOSE:
		if (c == '$') {
			if (s->cand_len == s->tag_len && s->cand_h == s->tag_h) {
				s->mode = M_NORMAL;
				return 0;
			}
			s->cand_h = DBW_FNV_OFFSET; /* this '$' may open the closing tag */
			s->cand_len = 0;
			return 0;
		}
		if (tag_char(c)) {
			s->cand_h = fnv(s->cand_h, c);
			s->cand_len++;
			return 0;
		}
		s->mode = M_DOLLAR;
		return 0;
	case M_LINE:
		if (c == '\n' || c == '\r')
			s->mode = M_NORMAL;
		return 0;
	case M_BLOCK:
		/* PostgreSQL nests block comments, MySQL does not */
		if (c == '*' && next == '/') {
			s->block_depth--;
			if (s->mysql)
				s->block_depth = 0;
			s->mode = M_SKIP;
			s->resume = s->block_depth ? M_BLOCK : M_NORMAL;
		} else if (c == '/' && next == '*' && !s->mysql) {
			s->block_depth++;
			s->mode = M_SKIP;
			s->resume = M_BLOCK;
		}
		return 0;
	case M_NUM:
		if ((c >= '0' && c <= '9') || c == '.' || c == '_' || lower(c) == 'e' ||
		    lower(c) == 'x' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
			return 0;
		if ((c == '+' || c == '-') && i && lower(b[(i - 1) & (DBW_LEX_MAX - 1)]) == 'e')
			return 0;
		s->mode = M_NORMAL;
		normal_byte(s, c, next);
		return 0;
	default:
		s->mode = M_NORMAL;
		normal_byte(s, c, next);
		return 0;
	}
}

/*
 * Lex the first len bytes of lex_text() into out, with MySQL's rules when
 * mysql is set. Returns 0, or -1 when the buffer is unavailable (out then
 * says INCOMPLETE).
 */
__noinline int sql_lex_mode(__u32 len, __u32 mysql, struct dbw_lex_result *out)
{
	struct lex_state s = {};

	if (!out)
		return -1;
	if (!lex_text()) {
		__builtin_memset(out, 0, sizeof(*out));
		out->flags = DBW_LEX_F_INCOMPLETE;
		return -1;
	}
	if (len > DBW_LEX_MAX) {
		s.res.flags |= DBW_LEX_F_INCOMPLETE;
		len = DBW_LEX_MAX;
	}
	s.len = len;
	s.mysql = !!mysql;
	s.verb_pos = 1;
	s.res.shape = DBW_FNV_OFFSET;
	bpf_loop(len, lex_step, &s, 0);
	switch (s.mode) {
	case M_WORD:
		word_end(&s, 0);
		break;
	case M_NORMAL:
	case M_NUM:
	case M_LINE:
	case M_DTAG:
	case M_DASH2:
	case M_EXECV:
		break;
	default:
		s.res.flags |= DBW_LEX_F_UNTERMINATED;
	}
	stmt_end(&s);
	__builtin_memcpy(out, &s.res, sizeof(*out));
	return 0;
}

/* PostgreSQL's rules. */
static __always_inline int sql_lex(__u32 len, struct dbw_lex_result *out)
{
	return sql_lex_mode(len, 0, out);
}

#endif /* DBW_LEXER_BPF_H */
