// SPDX-License-Identifier: GPL-2.0-only
/*
 * Table-qualified masking columns: the catalog reader (see catalog.h).
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dbwarden_abi.h"
#include "catalog.h"
#include "log.h"
#include "policy.h"

struct cat_col {
	char schema[64], table[64], column[64]; /* "" when the name does not give it */
	uint32_t rule;
};

/* One mask_rel entry. */
struct rel_ent {
	struct dbw_mask_relkey k;
	uint32_t rules;
};

struct cat_db {
	uint32_t dbk;
	char target[64], db[64];
	char *conninfo;
	unsigned refresh_s;
	uint64_t due_ns; /* when to read it next */
	int busy; /* the thread reads it now */
	int again; /* DDL ran while it did: read it again at once */
	int failing; /* the last read failed (logged once per change) */
	struct rel_ent *ents; /* what is in mask_rel for it, sorted by key */
	size_t nents;
};

struct catalog {
	int fd;
	pthread_t th;
	int started, stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned gen; /* the policy's: a read started under another is not written */
	int loaded; /* a policy was given (the first one empties a pinned map) */
	struct cat_col *cols;
	size_t ncols;
	struct cat_db dbs[CATALOG_MAX_DBS];
	size_t ndbs;
	size_t nentries; /* in mask_rel, every database's */
	struct catalog_stats st;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint32_t catalog_dbk(const char *target, const char *database)
{
	uint64_t h = DBW_FNV_OFFSET;
	uint32_t k;

	for (const char *s = target; *s; s++)
		h = (h ^ (uint8_t)*s) * DBW_FNV_PRIME;
	h = (h ^ 0) * DBW_FNV_PRIME; /* the separator: ("ab", "c") is not ("a", "bc") */
	for (const char *s = database; *s; s++)
		h = (h ^ (uint8_t)*s) * DBW_FNV_PRIME;
	k = (uint32_t)(h ^ (h >> 32));
	return k ? k : 1;
}

static int ent_cmp(const void *a, const void *b)
{
	const struct rel_ent *x = a, *y = b;

	if (x->k.dbk != y->k.dbk)
		return x->k.dbk < y->k.dbk ? -1 : 1;
	if (x->k.reloid != y->k.reloid)
		return x->k.reloid < y->k.reloid ? -1 : 1;
	return x->k.attnum < y->k.attnum ? -1 : x->k.attnum > y->k.attnum;
}

/*
 * Every column of an ordinary or partitioned table whose name is in $1,
 * once per table it belongs to: itself and each ancestor (a partition's
 * or an inheritance child's parents), with that table's schema and name.
 */
static const char CATALOG_SQL[] =
	"WITH RECURSIVE col AS ("
	" SELECT a.attrelid AS relid, a.attnum, a.attname"
	" FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class t ON t.oid = a.attrelid"
	" WHERE t.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped"
	" AND a.attname = ANY ($1::name[])),"
	" anc(relid, up) AS ("
	" SELECT DISTINCT relid, relid FROM col"
	" UNION SELECT anc.relid, i.inhparent FROM anc"
	" JOIN pg_catalog.pg_inherits i ON i.inhrelid = anc.up)"
	" SELECT col.relid, col.attnum, col.attname, n.nspname, c.relname"
	" FROM col JOIN anc ON anc.relid = col.relid"
	" JOIN pg_catalog.pg_class c ON c.oid = anc.up"
	" JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	" ORDER BY 1, 2";

/* The rules of cols that name column attname of table nsp.rel. */
static uint32_t rules_of(const struct cat_col *cols, size_t ncols, const char *attname,
			 const char *nsp, const char *rel)
{
	uint32_t r = 0;

	for (size_t i = 0; i < ncols; i++) {
		const struct cat_col *c = &cols[i];

		if (strcmp(c->column, attname))
			continue;
		if (*c->table && strcmp(c->table, rel))
			continue;
		if (*c->schema && strcmp(c->schema, nsp))
			continue;
		r |= c->rule;
	}
	return r;
}

/* The distinct column names of cols as a PostgreSQL array literal; NULL: out of memory. */
static char *names_array(const struct cat_col *cols, size_t ncols)
{
	size_t cap = 3 + ncols * (2 * 63 + 3), n = 0;
	char *a = malloc(cap);

	if (!a)
		return NULL;
	a[n++] = '{';
	for (size_t i = 0; i < ncols; i++) {
		size_t j;

		for (j = 0; j < i && strcmp(cols[j].column, cols[i].column); j++)
			;
		if (j < i)
			continue;
		if (n > 1)
			a[n++] = ',';
		a[n++] = '"';
		for (const char *s = cols[i].column; *s; s++) {
			if (*s == '"' || *s == '\\')
				a[n++] = '\\';
			a[n++] = *s;
		}
		a[n++] = '"';
	}
	a[n++] = '}';
	a[n] = 0;
	return a;
}

/*
 * Read database db's catalog over conninfo: *out (sorted by key, malloc'd)
 * gets one entry per listed column of a table, with the rules that mask
 * it there. 0, or -1 with err.
 */
static int read_catalog(const char *conninfo, const char *db, uint32_t dbk,
			const struct cat_col *cols, size_t ncols, struct rel_ent **out,
			size_t *nout, char *err, size_t errlen)
{
	/* the policy's conninfo overrides these defaults; the database is the connection's */
	const char *kw[] = { "connect_timeout", "application_name", "dbname", "dbname", NULL };
	const char *val[] = { "5", "dbwarden-catalog", conninfo, db, NULL };
	PGconn *pc = PQconnectdbParams(kw, val, 1);
	PGresult *res = NULL;
	struct rel_ent *e = NULL;
	char *names = NULL;
	const char *param[1];
	size_t n = 0;
	int rows, rc = -1;

	*out = NULL;
	*nout = 0;
	if (!pc || PQstatus(pc) != CONNECTION_OK) {
		snprintf(err, errlen, "%s", pc ? PQerrorMessage(pc) : "out of memory");
		goto done;
	}
	PQclear(PQexec(pc, "SET statement_timeout = '10s'"));
	names = names_array(cols, ncols);
	if (!names) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	param[0] = names;
	res = PQexecParams(pc, CATALOG_SQL, 1, NULL, param, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s", PQresultErrorMessage(res));
		goto done;
	}
	rows = PQntuples(res);
	e = calloc(rows ? rows : 1, sizeof(*e));
	if (!e) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	for (int i = 0; i < rows; i++) {
		uint32_t relid = (uint32_t)strtoul(PQgetvalue(res, i, 0), NULL, 10);
		uint16_t attnum = (uint16_t)atoi(PQgetvalue(res, i, 1));
		uint32_t r = rules_of(cols, ncols, PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
				      PQgetvalue(res, i, 4));

		/* ordered by (relid, attnum): a column's rows (one per ancestor) are adjacent */
		if (!n || e[n - 1].k.reloid != relid || e[n - 1].k.attnum != attnum)
			e[n++] = (struct rel_ent){
				.k = { .dbk = dbk, .reloid = relid, .attnum = attnum }
			};
		e[n - 1].rules |= r;
	}
	qsort(e, n, sizeof(*e), ent_cmp);
	*out = e;
	*nout = n;
	e = NULL;
	rc = 0;
done:
	if (rc)
		err[strcspn(err, "\n")] = 0;
	free(e);
	free(names);
	PQclear(res);
	PQfinish(pc);
	return rc;
}

/*
 * Database d's entries become ents (sorted): the new ones written first,
 * then the old ones they do not hold deleted, so that no column is
 * without its entry in between. Beyond CATALOG_MAX_ENTRIES the rest is
 * not written (those columns go by name) and counted. Under c->mu.
 */
static void apply(struct catalog *c, struct cat_db *d, struct rel_ent *ents, size_t n)
{
	size_t room = CATALOG_MAX_ENTRIES - (c->nentries - d->nents), i = 0, j = 0;

	if (n > room) {
		c->st.dropped += n - room;
		n = room;
	}
	for (size_t k = 0; k < n; k++)
		if (bpf_map_update_elem(c->fd, &ents[k].k, &ents[k].rules, BPF_ANY))
			c->st.dropped++;
	while (i < d->nents) {
		int cmp = j < n ? ent_cmp(&d->ents[i], &ents[j]) : -1;

		if (cmp < 0)
			bpf_map_delete_elem(c->fd, &d->ents[i++].k);
		else if (cmp > 0)
			j++;
		else
			i++, j++;
	}
	c->nentries = c->nentries - d->nents + n;
	free(d->ents);
	d->ents = ents;
	d->nents = n;
	c->st.entries = c->nentries;
}

static struct cat_db *find_db(struct catalog *c, const char *target, const char *database)
{
	for (size_t i = 0; i < c->ndbs; i++)
		if (!strcmp(c->dbs[i].target, target) && !strcmp(c->dbs[i].db, database))
			return &c->dbs[i];
	return NULL;
}

static struct cat_db *find_dbk(struct catalog *c, uint32_t dbk)
{
	for (size_t i = 0; i < c->ndbs; i++)
		if (c->dbs[i].dbk == dbk)
			return &c->dbs[i];
	return NULL;
}

/* The database due first, if one is due now; under c->mu. */
static struct cat_db *next_due(struct catalog *c, uint64_t now)
{
	for (size_t i = 0; i < c->ndbs; i++)
		if (!c->dbs[i].busy && c->dbs[i].due_ns <= now)
			return &c->dbs[i];
	return NULL;
}

/*
 * The thread: reads each database when it is due, outside the lock (a
 * connect may take seconds), and writes what it read under it, unless
 * the policy changed meanwhile.
 */
static void *run(void *arg)
{
	struct catalog *c = arg;

	pthread_mutex_lock(&c->mu);
	while (!c->stop) {
		struct cat_db *d = next_due(c, now_ns());
		struct cat_col *cols;
		struct rel_ent *ents;
		char conninfo_err[512], target[64], db[64], *conninfo;
		size_t ncols, n;
		unsigned gen = c->gen;
		uint32_t dbk;
		int rc;

		if (!d) {
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
			continue;
		}
		d->busy = 1;
		dbk = d->dbk;
		snprintf(target, sizeof(target), "%s", d->target);
		snprintf(db, sizeof(db), "%s", d->db);
		conninfo = strdup(d->conninfo);
		ncols = c->ncols;
		cols = ncols ? malloc(ncols * sizeof(*cols)) : NULL;
		if (cols)
			memcpy(cols, c->cols, ncols * sizeof(*cols));
		pthread_mutex_unlock(&c->mu);

		if (!conninfo || (ncols && !cols)) {
			snprintf(conninfo_err, sizeof(conninfo_err), "out of memory");
			rc = -1;
			ents = NULL;
			n = 0;
		} else {
			rc = read_catalog(conninfo, db, dbk, cols, ncols, &ents, &n, conninfo_err,
					  sizeof(conninfo_err));
		}
		free(conninfo);
		free(cols);

		pthread_mutex_lock(&c->mu);
		d = find_dbk(c, dbk);
		if (!d || gen != c->gen) {
			free(ents); /* forgotten meanwhile: a new policy */
			continue;
		}
		d->busy = 0;
		if (rc && d->again) {
			free(ents);
			d->again = 0;
			d->due_ns = 0;
			continue;
		}
		if (rc) {
			c->st.failures++;
			if (!d->failing)
				log_warn(
					"catalog of %s, database %s: %s; its masked columns go by name "
					"alone (every table's) until it can be read",
					target, db, conninfo_err);
			d->failing = 1;
			d->due_ns = now_ns() + (uint64_t)CATALOG_RETRY_S * 1000000000;
			continue;
		}
		if (d->failing)
			log_info("catalog of %s, database %s: read again", target, db);
		d->failing = 0;
		c->st.lookups++;
		apply(c, d, ents, n);
		log_debug("catalog of %s, database %s: %zu columns", target, db, n);
		d->due_ns = d->again ? 0 : now_ns() + (uint64_t)d->refresh_s * 1000000000;
		d->again = 0;
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

struct catalog *catalog_new(int rel_fd)
{
	struct catalog *c = calloc(1, sizeof(*c));
	pthread_condattr_t ca;

	if (!c)
		return NULL;
	c->fd = rel_fd;
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	return c;
}

/* Forget every database and its entries; under c->mu. */
static void forget_all(struct catalog *c)
{
	for (size_t i = 0; i < c->ndbs; i++) {
		struct cat_db *d = &c->dbs[i];

		for (size_t k = 0; c->fd >= 0 && k < d->nents; k++)
			bpf_map_delete_elem(c->fd, &d->ents[k].k);
		free(d->ents);
		free(d->conninfo);
	}
	c->ndbs = 0;
	c->nentries = 0;
	c->st.entries = 0;
	c->st.dbs = 0;
}

void catalog_free(struct catalog *c)
{
	if (!c)
		return;
	if (c->started) {
		pthread_mutex_lock(&c->mu);
		c->stop = 1;
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->th, NULL);
	}
	/* mask_rel goes with the programs, or stays pinned for the next agent: untouched */
	for (size_t i = 0; i < c->ndbs; i++) {
		free(c->dbs[i].ents);
		free(c->dbs[i].conninfo);
	}
	free(c->cols);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

struct colset {
	struct cat_col *v;
	size_t n;
	int failed;
};

static void add_col(void *ctx, const char *schema, const char *table, const char *column,
		    uint32_t rule)
{
	struct colset *set = ctx;
	struct cat_col *n = realloc(set->v, (set->n + 1) * sizeof(*n));

	if (!n) {
		set->failed = 1;
		return;
	}
	set->v = n;
	n = &set->v[set->n++];
	memset(n, 0, sizeof(*n));
	snprintf(n->schema, sizeof(n->schema), "%s", schema ? schema : "");
	snprintf(n->table, sizeof(n->table), "%s", table ? table : "");
	snprintf(n->column, sizeof(n->column), "%s", column);
	n->rule = rule;
}

void catalog_policy(struct catalog *c, const struct policy *p)
{
	struct colset set = {};
	struct dbw_mask_relkey k;

	policy_mask_columns(p, add_col, &set);
	pthread_mutex_lock(&c->mu);
	/*
	 * The same columns under the same rule numbers: every entry stays
	 * right (a reload that edits other things leaves no moment where
	 * renamed columns go by name alone).
	 */
	if (c->loaded && !set.failed && set.n == c->ncols &&
	    (!set.n || !memcmp(set.v, c->cols, set.n * sizeof(*set.v)))) {
		pthread_mutex_unlock(&c->mu);
		free(set.v);
		return;
	}
	c->gen++;
	forget_all(c);
	/* and whatever an earlier agent left in a pinned map: its rules' numbers */
	while (c->fd >= 0 && !bpf_map_get_next_key(c->fd, NULL, &k))
		if (bpf_map_delete_elem(c->fd, &k))
			break;
	free(c->cols);
	/* out of memory: no column is looked up (names decide: more masked) */
	c->cols = set.failed ? NULL : set.v;
	c->ncols = set.failed ? 0 : set.n;
	if (set.failed)
		free(set.v);
	c->loaded = 1;
	pthread_mutex_unlock(&c->mu);
}

uint32_t catalog_conn(struct catalog *c, const char *target, const char *conninfo,
		      unsigned refresh_s, const char *database)
{
	struct cat_db *d;
	uint32_t dbk;

	if (c->fd < 0 || !*database)
		return 0;
	pthread_mutex_lock(&c->mu);
	if (!c->ncols) {
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	d = find_db(c, target, database);
	if (d) {
		/* a reload may have changed how the catalog is reached */
		if (strcmp(d->conninfo, conninfo)) {
			char *s = strdup(conninfo);

			if (s) {
				free(d->conninfo);
				d->conninfo = s;
				d->due_ns = 0;
			}
		}
		d->refresh_s = refresh_s;
		dbk = d->dbk;
		pthread_mutex_unlock(&c->mu);
		return dbk;
	}
	dbk = catalog_dbk(target, database);
	if (c->ndbs == CATALOG_MAX_DBS || find_dbk(c, dbk) || strlen(target) > 63 ||
	    strlen(database) > 63) {
		c->st.dropped++;
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	d = &c->dbs[c->ndbs];
	memset(d, 0, sizeof(*d));
	d->conninfo = strdup(conninfo);
	if (!d->conninfo) {
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	c->ndbs++;
	c->st.dbs = c->ndbs;
	d->dbk = dbk;
	snprintf(d->target, sizeof(d->target), "%s", target);
	snprintf(d->db, sizeof(d->db), "%s", database);
	d->refresh_s = refresh_s;
	d->due_ns = 0;
	if (!c->started && !pthread_create(&c->th, NULL, run, c))
		c->started = 1;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return dbk;
}

void catalog_changed(struct catalog *c, const char *target, const char *database)
{
	struct cat_db *d;

	pthread_mutex_lock(&c->mu);
	d = find_db(c, target, database);
	if (d) {
		size_t n = 0;

		/*
		 * Until it is read again, a table the DDL renamed to a listed
		 * name must not keep its "not listed" entry: those go now (their
		 * columns go by name meanwhile: more masked).
		 */
		for (size_t i = 0; i < d->nents; i++) {
			if (d->ents[i].rules || bpf_map_delete_elem(c->fd, &d->ents[i].k))
				d->ents[n++] = d->ents[i];
		}
		c->nentries -= d->nents - n;
		c->st.entries = c->nentries;
		d->nents = n;
		d->due_ns = 0;
		d->again = d->busy;
		pthread_cond_signal(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
}

void catalog_stats(struct catalog *c, struct catalog_stats *out)
{
	pthread_mutex_lock(&c->mu);
	*out = c->st;
	pthread_mutex_unlock(&c->mu);
}
