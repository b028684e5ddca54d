// SPDX-License-Identifier: GPL-2.0-only
/*
 * SQL analysis with libpg_query, behind a cache keyed by statement shape.
 *
 * Normalization: pg_query_normalize (pg_stat_statements' rules), then a pass
 * of PostgreSQL's own scanner over its output that replaces any constant it
 * left (libpg_query leaves some in utility statements, e.g. a password in
 * CREATE ROLE) and drops comments (they can carry anything). A statement
 * that does not parse gets the scanner pass alone; text the scanner cannot
 * read (a cut string literal) is cut there. So the text that leaves the host
 * holds no constant token by construction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include "analyze.h"
#include "policy.h"

#define SQL_DEFAULT_CACHE 4096
#define SQL_MAX_KEY	  8192 /* longer statements are analysed every time */
#define SHAPE_MARK	  '\x01' /* stands for a constant in a shape key */

struct sql_entry {
	char *key; /* NULL: empty slot */
	size_t key_len;
	char *normalized;
	char fingerprint[17];
	const char *verb; /* static string */
	uint32_t verbs; /* as sql_analysis.verbs */
	char *objects[SQL_MAX_OBJECTS];
	size_t nobjects;
	bool parsed;
	bool without_where;
};

struct sql_analyzer {
	struct sql_entry *slots; /* direct-mapped: a collision replaces */
	size_t nslots;
	struct sql_entry scratch; /* result of an uncached analysis */
	char *keybuf;
	uint64_t hits, misses;
};

/* ---- shape key ------------------------------------------------------------- */

static bool ident_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '$' || c >= 0x80;
}

/*
 * The statement with every constant the lexer is sure of replaced by one
 * SHAPE_MARK byte: integers and decimals not glued to an identifier, '...'
 * (with '' escapes), E'...', B'' X'' N''.
 * Identifiers ("..."), comments, parameters ($1) and dollar-quoted text are
 * copied verbatim, as is anything after a construct the lexer cannot close.
 *
 * Why a shared key implies a shared analysis: the normalizer replaces
 * exactly the constant tokens and keeps every other byte, and verb, objects,
 * fingerprint and flags do not depend on constant values. When this lexer is
 * unsure it keeps bytes verbatim, which can only cause a miss, never a
 * wrong hit. Returns the key length, or 0 when the text is too long to cache.
 *
 * Unsure means: a number glued to a '.' or an identifier character (the
 * scanner splits "1.2.3" and "1..2" differently, or rejects "1abc"), and a
 * literal whose bytes alone can make the scanner fail: a byte >= 0x80 (it
 * must be valid UTF-8), a backslash in E'...' (\xff, \u00zz) and U&'...'.
 * Marking those would let "SELECT E'\xff'" share "SELECT 1"'s entry and be
 * reported parsed, which the policy's unparsed default relies on.
 */
static size_t shape_key(const char *s, size_t len, char *out)
{
	size_t i = 0, o = 0;

	if (len >= SQL_MAX_KEY)
		return 0;
	while (i < len) {
		unsigned char c = s[i];
		bool prev_ident = i > 0 && ident_char((unsigned char)s[i - 1]);

		if (c == '\'' ||
		    ((c == 'E' || c == 'e') && i + 1 < len && s[i + 1] == '\'' && !prev_ident)) {
			bool esc = c != '\'';
			size_t j = i + (esc ? 2 : 1);

			if (c == '\'' && i > 0 && s[i - 1] == '&')
				goto verbatim; /* U&'...': its escapes can fail */
			for (; j < len; j++) {
				if ((unsigned char)s[j] >= 0x80 || (esc && s[j] == '\\'))
					goto verbatim;
				if (s[j] == '\'') {
					if (j + 1 < len && s[j + 1] == '\'')
						j++;
					else
						break;
				}
			}
			if (j >= len)
				goto verbatim;
			out[o++] = SHAPE_MARK;
			i = j + 1;
		} else if ((c >= '0' && c <= '9' && !prev_ident) ||
			   (c == '.' && i + 1 < len && s[i + 1] >= '0' && s[i + 1] <= '9' &&
			    !prev_ident)) {
			size_t start = i;

			while (i < len && s[i] >= '0' && s[i] <= '9')
				i++;
			if (i < len && s[i] == '.' && !(i + 1 < len && s[i + 1] == '.'))
				i++;
			while (i < len && s[i] >= '0' && s[i] <= '9')
				i++;
			if (i + 1 < len && (s[i] == 'e' || s[i] == 'E') &&
			    ((s[i + 1] >= '0' && s[i + 1] <= '9') ||
			     ((s[i + 1] == '+' || s[i + 1] == '-') && i + 2 < len &&
			      s[i + 2] >= '0' && s[i + 2] <= '9'))) {
				i += 2;
				while (i < len && s[i] >= '0' && s[i] <= '9')
					i++;
			}
			if (i < len && (s[i] == '.' || ident_char((unsigned char)s[i]))) {
				i = start;
				goto verbatim;
			}
			out[o++] = SHAPE_MARK;
		} else if (c == '"' || (c == '$' && !prev_ident) ||
			   (c == '-' && i + 1 < len && s[i + 1] == '-') ||
			   (c == '/' && i + 1 < len && s[i + 1] == '*')) {
			/*
			 * Quoted identifiers, parameters, dollar quotes and comments:
			 * copied as they are. A dollar quote or comment could hide a
			 * quote character; past one, nothing more is classified.
			 */
			if (c == '"') {
				const char *e = memchr(s + i + 1, '"', len - i - 1);
				size_t n = e ? (size_t)(e - s) + 1 - i : len - i;

				memcpy(out + o, s + i, n);
				o += n;
				i += n;
				continue;
			}
			if (c == '$' && i + 1 < len && s[i + 1] >= '0' && s[i + 1] <= '9') {
				out[o++] = s[i++];
				while (i < len && s[i] >= '0' && s[i] <= '9')
					out[o++] = s[i++];
				continue;
			}
			goto verbatim;
		} else {
			out[o++] = s[i++];
		}
	}
	return o;
verbatim:
	memcpy(out + o, s + i, len - i);
	return o + len - i;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* ---- scanner pass ---------------------------------------------------------- */

static bool const_token(PgQuery__Token t)
{
	return t == PG_QUERY__TOKEN__SCONST || t == PG_QUERY__TOKEN__USCONST ||
	       t == PG_QUERY__TOKEN__BCONST || t == PG_QUERY__TOKEN__XCONST ||
	       t == PG_QUERY__TOKEN__ICONST || t == PG_QUERY__TOKEN__FCONST;
}

/*
 * Largest $n parameter token of text (so new placeholders continue after
 * it). Tokens, not bytes: a "$5" inside a literal must not change the
 * numbering, or two texts of one shape would normalize differently. Capped
 * so that numbering on from it cannot overflow.
 */
static int max_param(const char *text, const PgQuery__ScanResult *sr)
{
	int max = 0;

	for (size_t i = 0; sr && i < sr->n_tokens; i++) {
		long n;

		if (sr->tokens[i]->token != PG_QUERY__TOKEN__PARAM)
			continue;
		n = strtol(text + sr->tokens[i]->start + 1, NULL, 10);
		if (n > max)
			max = n < 1000000 ? n : 1000000;
	}
	return max;
}

/*
 * Rewrite text through the scanner: constants become $n, comments vanish,
 * everything else is kept byte for byte. Where the scanner fails (an
 * unterminated literal or comment), the rest is replaced by one more $n.
 * Returns a malloc'd string, or NULL on allocation failure.
 */
static char *scan_rewrite(const char *text)
{
	size_t len = strlen(text), o = 0, cut = len;
	char *out = malloc(len * 8 + 32), *prefix = NULL;
	int next = 1;
	PgQueryScanResult r;
	PgQuery__ScanResult *sr = NULL;
	size_t pos = 0;

	if (!out)
		return NULL;
	r = pg_query_scan(text);
	if (r.error) {
		/* scan the part before the failing token; the rest is dropped */
		cut = r.error->cursorpos > 0 ? (size_t)r.error->cursorpos - 1 : 0;
		if (cut > len)
			cut = len;
		pg_query_free_scan_result(r);
		prefix = strndup(text, cut);
		if (!prefix) {
			free(out);
			return NULL;
		}
		r = pg_query_scan(prefix);
		if (r.error) {
			/* cannot even read the prefix: keep nothing of it */
			pg_query_free_scan_result(r);
			free(prefix);
			snprintf(out, 16, "$%d", next);
			return out;
		}
	}
	sr = pg_query__scan_result__unpack(NULL, r.pbuf.len, (const uint8_t *)r.pbuf.data);
	next = max_param(text, sr) + 1;
	for (size_t i = 0; sr && i < sr->n_tokens; i++) {
		PgQuery__ScanToken *t = sr->tokens[i];
		size_t s = t->start, e = t->end, keep = pos;

		if (e > cut || s > e)
			break;
		/*
		 * The bytes between tokens are blanks, except after a token the
		 * scanner reports shorter than it is: U&'...' comes back empty,
		 * U&"..." as its "U". Those bytes are the token's rest: kept
		 * after an identifier, dropped after anything else, so that a
		 * literal cannot slip out through the gap.
		 */
		if (!i || sr->tokens[i - 1]->token != PG_QUERY__TOKEN__UIDENT) {
			keep = s;
			while (keep > pos && strchr(" \t\r\n\f\v", text[keep - 1]))
				keep--;
		}
		memcpy(out + o, text + keep, s - keep);
		o += s - keep;
		if (const_token(t->token))
			o += sprintf(out + o, "$%d", next++);
		else if (t->token != PG_QUERY__TOKEN__SQL_COMMENT &&
			 t->token != PG_QUERY__TOKEN__C_COMMENT) {
			memcpy(out + o, text + s, e - s);
			o += e - s;
		}
		pos = e;
	}
	if (sr && pos < cut) {
		/* trailing blanks (or a comment the scanner folded away) */
		size_t k = pos;

		while (k < cut && strchr(" \t\r\n\f\v;", text[k]))
			k++;
		memcpy(out + o, text + pos, k - pos);
		o += k - pos;
	}
	if (!sr)
		o = 0;
	/* "SELECT 1;" and "SELECT 1" are one statement: drop the terminator */
	while (o && strchr(" \t\r\n\f\v;", out[o - 1]))
		o--;
	if (cut < len)
		o += sprintf(out + o, "%s$%d", o && out[o - 1] != ' ' ? " " : "", next);
	out[o] = 0;
	if (sr)
		pg_query__scan_result__free_unpacked(sr, NULL);
	pg_query_free_scan_result(r);
	free(prefix);
	return out;
}

/* ---- parse tree: verb, objects, flags -------------------------------------- */

static const struct {
	const char *node;
	const char *verb;
} verb_table[] = {
	{ "SelectStmt", "SELECT" },
	{ "InsertStmt", "INSERT" },
	{ "UpdateStmt", "UPDATE" },
	{ "DeleteStmt", "DELETE" },
	{ "MergeStmt", "MERGE" },
	{ "TruncateStmt", "TRUNCATE" },
	{ "CopyStmt", "COPY" },
	{ "ExplainStmt", "EXPLAIN" },
	{ "IndexStmt", "CREATE" },
	{ "ViewStmt", "CREATE" },
	{ "RuleStmt", "CREATE" },
	{ "CompositeTypeStmt", "CREATE" },
	{ "RenameStmt", "ALTER" },
	{ "GrantRoleStmt", "GRANT" },
	{ "VariableShowStmt", "SHOW" },
	{ "CallStmt", "CALL" },
	{ "DoStmt", "DO" },
	{ "PrepareStmt", "PREPARE" },
	{ "ExecuteStmt", "EXECUTE" },
	{ "DeallocateStmt", "DEALLOCATE" },
	{ "ListenStmt", "LISTEN" },
	{ "UnlistenStmt", "UNLISTEN" },
	{ "NotifyStmt", "NOTIFY" },
	{ "LockStmt", "LOCK" },
	{ "DeclareCursorStmt", "DECLARE" },
	{ "ClosePortalStmt", "CLOSE" },
	{ "DiscardStmt", "DISCARD" },
	{ "CheckPointStmt", "CHECKPOINT" },
	{ "ReindexStmt", "REINDEX" },
	{ "ClusterStmt", "CLUSTER" },
	{ "CommentStmt", "COMMENT" },
	{ "RefreshMatViewStmt", "REFRESH" },
	{ "LoadStmt", "LOAD" },
	{ "ReassignOwnedStmt", "REASSIGN" },
	{ "SecLabelStmt", "SECURITY LABEL" },
	{ "ConstraintsSetStmt", "SET" },
};

/* The verb of one top-level statement node (name + body). */
static const char *verb_of(const char *node, json_t *body)
{
	const char *kind;

	for (size_t i = 0; i < sizeof(verb_table) / sizeof(verb_table[0]); i++)
		if (!strcmp(node, verb_table[i].node))
			return verb_table[i].verb;
	kind = json_string_value(json_object_get(body, "kind"));
	if (!strcmp(node, "TransactionStmt")) {
		static const struct {
			const char *kind, *verb;
		} tk[] = {
			{ "TRANS_STMT_BEGIN", "BEGIN" },
			{ "TRANS_STMT_START", "BEGIN" },
			{ "TRANS_STMT_COMMIT", "COMMIT" },
			{ "TRANS_STMT_ROLLBACK", "ROLLBACK" },
			{ "TRANS_STMT_SAVEPOINT", "SAVEPOINT" },
			{ "TRANS_STMT_RELEASE", "RELEASE" },
			{ "TRANS_STMT_ROLLBACK_TO", "ROLLBACK" },
			{ "TRANS_STMT_PREPARE", "PREPARE TRANSACTION" },
			{ "TRANS_STMT_COMMIT_PREPARED", "COMMIT PREPARED" },
			{ "TRANS_STMT_ROLLBACK_PREPARED", "ROLLBACK PREPARED" },
		};

		for (size_t i = 0; kind && i < sizeof(tk) / sizeof(tk[0]); i++)
			if (!strcmp(kind, tk[i].kind))
				return tk[i].verb;
		return "TRANSACTION";
	}
	if (!strcmp(node, "VariableSetStmt"))
		return kind && !strncmp(kind, "VAR_RESET", 9) ? "RESET" : "SET";
	if (!strcmp(node, "GrantStmt"))
		return json_is_true(json_object_get(body, "is_grant")) ? "GRANT" : "REVOKE";
	if (!strcmp(node, "VacuumStmt"))
		return json_is_true(json_object_get(body, "is_vacuumcmd")) ? "VACUUM" : "ANALYZE";
	if (!strcmp(node, "FetchStmt"))
		return json_is_true(json_object_get(body, "ismove")) ? "MOVE" : "FETCH";
	if (!strncmp(node, "Create", 6) || !strncmp(node, "Define", 6))
		return "CREATE";
	if (!strncmp(node, "Alter", 5))
		return "ALTER";
	if (!strncmp(node, "Drop", 4))
		return "DROP";
	return "OTHER";
}

struct walk {
	struct sql_entry *e;
	bool without_where;
	uint32_t verbs; /* statements nested anywhere: CTEs, EXPLAIN, subqueries */
};

/* Statement nodes that can nest in another statement, and their verb class. */
static const struct {
	const char *node;
	int verb;
} nested_verbs[] = {
	{ "SelectStmt", DBW_VERB_SELECT }, { "InsertStmt", DBW_VERB_INSERT },
	{ "UpdateStmt", DBW_VERB_UPDATE }, { "DeleteStmt", DBW_VERB_DELETE },
	{ "MergeStmt", DBW_VERB_MERGE },
};

static void add_object(struct walk *w, const char *schema, const char *rel)
{
	struct sql_entry *e = w->e;
	char name[256];

	if (!rel)
		return;
	snprintf(name, sizeof(name), "%s%s%s", schema ? schema : "", schema ? "." : "", rel);
	for (size_t i = 0; i < e->nobjects; i++)
		if (!strcmp(e->objects[i], name))
			return;
	if (e->nobjects < SQL_MAX_OBJECTS) {
		e->objects[e->nobjects] = strdup(name);
		if (e->objects[e->nobjects])
			e->nobjects++;
	}
}

static const char *cte_name(json_t *cte)
{
	return json_string_value(
		json_object_get(json_object_get(cte, "CommonTableExpr"), "ctename"));
}

/*
 * CTE names are scoped as in PostgreSQL, because a name reported as a CTE
 * is not an object, and a policy rule on a table must not be dodged by
 * naming a CTE after it. A statement sees every CTE of its WITH and of the
 * statements around it; the n-th CTE's own query sees only the ones before
 * it, unless the WITH is RECURSIVE; the target of INSERT, UPDATE, DELETE
 * and MERGE is always a table. A scope is a JSON object of names; when one
 * cannot be built (no memory) names are reported: too many objects is safe.
 */
static json_t *with_scope(json_t *with, json_t *outer)
{
	json_t *scope = json_copy(outer), *cte;
	size_t i;

	json_array_foreach(json_object_get(with, "ctes"), i, cte)
	{
		if (cte_name(cte))
			json_object_set_new(scope, cte_name(cte), json_true());
	}
	return scope;
}

static void walk_tree(struct walk *w, json_t *n, json_t *scope);

static void walk_ctes(struct walk *w, json_t *with, json_t *outer)
{
	bool recursive = json_is_true(json_object_get(with, "recursive"));
	json_t *scope = recursive ? with_scope(with, outer) : json_copy(outer), *cte;
	size_t i;

	json_array_foreach(json_object_get(with, "ctes"), i, cte)
	{
		walk_tree(w, cte, scope);
		if (cte_name(cte))
			json_object_set_new(scope, cte_name(cte), json_true());
	}
	json_decref(scope);
}

static void walk_tree(struct walk *w, json_t *n, json_t *scope)
{
	json_t *v, *with, *inner, *target;
	const char *k, *rel;
	size_t i;

	if (json_is_array(n)) {
		json_array_foreach(n, i, v) walk_tree(w, v, scope);
		return;
	}
	if (!json_is_object(n))
		return;
	/*
	 * A RangeVar: libpg_query's JSON names the node type only where the
	 * field is a generic Node; typed fields (InsertStmt.relation, ...) hold
	 * the bare object. Its relname key identifies it either way.
	 */
	rel = json_string_value(json_object_get(n, "relname"));
	if (rel && (json_object_get(n, "schemaname") || !json_object_get(scope, rel)))
		add_object(w, json_string_value(json_object_get(n, "schemaname")), rel);
	with = json_object_get(n, "withClause");
	inner = json_is_object(with) ? with_scope(with, scope) : json_incref(scope);
	json_object_foreach(n, k, v)
	{
		if (v == with) {
			walk_ctes(w, with, scope);
			continue;
		}
		if ((!strcmp(k, "UpdateStmt") || !strcmp(k, "DeleteStmt")) &&
		    !json_object_get(v, "whereClause")) {
			w->without_where = true;
		}
		for (size_t j = 0; j < sizeof(nested_verbs) / sizeof(nested_verbs[0]); j++) {
			if (strcmp(k, nested_verbs[j].node))
				continue;
			w->verbs |= 1u << nested_verbs[j].verb;
			/* the written table, even where a CTE of the same name is in scope */
			target = json_object_get(v, "relation");
			add_object(w, json_string_value(json_object_get(target, "schemaname")),
				   json_string_value(json_object_get(target, "relname")));
		}
		walk_tree(w, v, inner);
	}
	json_decref(inner);
}

/* "a.b" from a List of String nodes (a qualified name in DropStmt.objects). */
static void add_qualified(struct walk *w, json_t *list)
{
	char name[256] = "";
	size_t i, o = 0;
	json_t *it;

	json_array_foreach(json_object_get(json_object_get(list, "List"), "items"), i, it)
	{
		json_t *str = json_object_get(it, "String");
		const char *v = json_string_value(json_object_get(str, "sval"));

		if (!v)
			v = json_string_value(json_object_get(str, "str"));
		if (!v)
			return;
		o += snprintf(name + o, o < sizeof(name) ? sizeof(name) - o : 0, "%s%s",
			      o ? "." : "", v);
	}
	if (o && o < sizeof(name)) {
		char *dot = strrchr(name, '.');

		if (dot) {
			*dot = 0;
			add_object(w, name, dot + 1);
		} else {
			add_object(w, NULL, name);
		}
	}
}

/* DROP TABLE/VIEW/INDEX/SEQUENCE name the relations as name lists, not RangeVars. */
static void drop_objects(struct walk *w, json_t *drop)
{
	static const char *const rel_types[] = { "OBJECT_TABLE",   "OBJECT_VIEW",
						 "OBJECT_INDEX",   "OBJECT_SEQUENCE",
						 "OBJECT_MATVIEW", "OBJECT_FOREIGN_TABLE" };
	const char *type = json_string_value(json_object_get(drop, "removeType"));
	json_t *it;
	size_t i;

	for (i = 0; type && i < sizeof(rel_types) / sizeof(rel_types[0]); i++)
		if (!strcmp(type, rel_types[i]))
			break;
	if (!type || i == sizeof(rel_types) / sizeof(rel_types[0]))
		return;
	json_array_foreach(json_object_get(drop, "objects"), i, it) add_qualified(w, it);
}

/* Verb, objects and flags of the first statement of text. 0, or -1 if it does not parse. */
static int tree_facts(const char *text, struct sql_entry *e)
{
	PgQueryParseResult r = pg_query_parse(text);
	json_t *root = NULL, *stmt, *node, *scope;
	struct walk w = { .e = e };
	const char *name;
	int rc = -1;

	if (r.error || !r.parse_tree)
		goto out;
	root = json_loads(r.parse_tree, 0, NULL);
	stmt = json_object_get(json_array_get(json_object_get(root, "stmts"), 0), "stmt");
	if (!json_is_object(stmt) || json_object_size(stmt) != 1)
		goto out;
	name = json_object_iter_key(json_object_iter(stmt));
	node = json_object_get(stmt, name);
	e->verb = verb_of(name, node);
	scope = json_object();
	walk_tree(&w, stmt, scope);
	json_decref(scope);
	if (!strcmp(name, "DropStmt"))
		drop_objects(&w, node);
	e->without_where = w.without_where;
	e->verbs = w.verbs;
	rc = 0;
out:
	json_decref(root);
	pg_query_free_parse_result(r);
	return rc;
}

/* ---- entries and the cache ------------------------------------------------- */

static void entry_clear(struct sql_entry *e)
{
	free(e->key);
	free(e->normalized);
	for (size_t i = 0; i < e->nobjects; i++)
		free(e->objects[i]);
	memset(e, 0, sizeof(*e));
}

/*
 * The verb of a statement the parser did not accept (truncated, or not
 * valid SQL): its first word, when that is a statement keyword. Read off
 * the normalized text, where comments are already gone, so that a comment
 * cannot hide the verb. Returns a static string or "UNKNOWN".
 */
static const char *first_word_verb(const char *norm)
{
	static const char *const verbs[] = {
		"SELECT",   "INSERT",  "UPDATE",  "DELETE",  "MERGE",  "TRUNCATE", "DROP",
		"ALTER",    "CREATE",  "GRANT",	  "REVOKE",  "COPY",   "BEGIN",	   "COMMIT",
		"ROLLBACK", "SET",     "SHOW",	  "EXPLAIN", "CALL",   "DO",	   "PREPARE",
		"EXECUTE",  "VACUUM",  "ANALYZE", "LOCK",    "VALUES", "WITH",	   "REINDEX",
		"COMMENT",  "REFRESH", "CLUSTER", "DISCARD", "LISTEN", "NOTIFY",   "DEALLOCATE",
	};
	char word[16];
	size_t n = 0;

	while (*norm && strchr(" \t\r\n\f\v(", *norm))
		norm++;
	while (n < sizeof(word) - 1 &&
	       ((*norm >= 'a' && *norm <= 'z') || (*norm >= 'A' && *norm <= 'Z')))
		word[n++] = *norm++ & ~0x20;
	word[n] = 0;
	for (size_t i = 0; n && i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcmp(word, verbs[i]))
			return verbs[i];
	return "UNKNOWN";
}

/* Full analysis of text into e (e cleared first). Returns 0 or -1 (no memory). */
static int analyse(const char *text, bool truncated, struct sql_entry *e)
{
	PgQueryNormalizeResult nr;
	PgQueryFingerprintResult fr;

	entry_clear(e);
	e->verb = "UNKNOWN";
	if (!truncated && !tree_facts(text, e)) {
		e->parsed = true;
		fr = pg_query_fingerprint(text);
		if (!fr.error && fr.fingerprint_str)
			snprintf(e->fingerprint, sizeof(e->fingerprint), "%s", fr.fingerprint_str);
		pg_query_free_fingerprint_result(fr);
		nr = pg_query_normalize(text);
		if (!nr.error && nr.normalized_query)
			e->normalized = scan_rewrite(nr.normalized_query);
		pg_query_free_normalize_result(nr);
	}
	if (!e->normalized)
		e->normalized = scan_rewrite(text);
	if (e->normalized && !e->parsed)
		e->verb = first_word_verb(e->normalized);
	if (policy_verb(e->verb) > 0)
		e->verbs |= 1u << policy_verb(e->verb);
	return e->normalized ? 0 : -1;
}

static void fill_out(const struct sql_entry *e, struct sql_analysis *out)
{
	out->normalized = e->normalized;
	memcpy(out->fingerprint, e->fingerprint, sizeof(out->fingerprint));
	out->verb = e->verb;
	out->verbs = e->verbs;
	out->nobjects = e->nobjects;
	for (size_t i = 0; i < e->nobjects; i++)
		out->objects[i] = e->objects[i];
	out->parsed = e->parsed;
	out->without_where = e->without_where;
}

struct sql_analyzer *sql_analyzer_new(size_t cache_entries)
{
	struct sql_analyzer *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->nslots = cache_entries ? cache_entries : SQL_DEFAULT_CACHE;
	a->slots = calloc(a->nslots, sizeof(*a->slots));
	a->keybuf = malloc(SQL_MAX_KEY);
	if (!a->slots || !a->keybuf) {
		sql_analyzer_free(a);
		return NULL;
	}
	return a;
}

void sql_analyzer_free(struct sql_analyzer *a)
{
	if (!a)
		return;
	for (size_t i = 0; a->slots && i < a->nslots; i++)
		entry_clear(&a->slots[i]);
	entry_clear(&a->scratch);
	free(a->slots);
	free(a->keybuf);
	free(a);
}

int sql_analyze(struct sql_analyzer *a, const char *text, size_t len, bool truncated,
		struct sql_analysis *out)
{
	static const char unavailable[] = "<unavailable>";
	struct sql_entry *e = &a->scratch;
	size_t klen = 0;
	char *z;
	int rc;

	memset(out, 0, sizeof(*out));
	/* the parser wants a C string: a NUL inside the text ends it there */
	len = strnlen(text, len);
	if (!truncated)
		klen = shape_key(text, len, a->keybuf);
	if (klen) {
		e = &a->slots[hash_bytes(a->keybuf, klen) % a->nslots];
		if (e->key && e->key_len == klen && !memcmp(e->key, a->keybuf, klen)) {
			a->hits++;
			fill_out(e, out);
			return 0;
		}
	}
	a->misses++;
	z = strndup(text, len);
	rc = z ? analyse(z, truncated, e) : -1;
	free(z);
	if (rc) {
		entry_clear(e);
		out->normalized = unavailable;
		out->verb = "UNKNOWN";
		return -1;
	}
	if (klen) {
		e->key = malloc(klen);
		if (e->key) {
			memcpy(e->key, a->keybuf, klen);
			e->key_len = klen;
		}
	}
	fill_out(e, out);
	return 0;
}

void sql_analyzer_stats(const struct sql_analyzer *a, uint64_t *hits, uint64_t *misses)
{
	*hits = a->hits;
	*misses = a->misses;
}
