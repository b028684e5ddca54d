/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Table-qualified masking columns (README "Table-qualified columns").
 *
 * PostgreSQL's RowDescription names a result column's table by OID and the
 * column by its number, never by name. For each database that masked
 * connections use, this module reads the target's own catalog (over a
 * libpq connection the policy gives: `targets[].catalog`) and writes the
 * kernel's `mask_rel` (struct dbw_mask_relkey): for every column of an
 * ordinary or partitioned table whose name a rule lists, the rules that
 * mask it there. So `users.ssn` masks users' ssn under any alias and not
 * orders' ssn, and a partition or child of users counts as users.
 *
 * Catalog connections are made on a thread of its own (a connect may take
 * seconds); the event loop only calls catalog_conn (a table lookup),
 * catalog_changed and catalog_policy. A database is read again every
 * refresh period, at once after DDL the agent sees run in it, and after a
 * failure every CATALOG_RETRY_S. Until a database is read, and whenever
 * it cannot be, the names decide alone: more is masked, never less.
 */
#ifndef DBW_CATALOG_H
#define DBW_CATALOG_H

#include <stdint.h>

struct catalog;
struct policy;

#define CATALOG_MAX_DBS	    256 /* databases looked up at once (the others: names decide) */
#define CATALOG_MAX_ENTRIES 65536 /* mask_rel's size */
#define CATALOG_RETRY_S	    10

/* rel_fd: the mask_rel map (the catalog module owns its entries); -1: none (no kernel). */
struct catalog *catalog_new(int rel_fd);
void catalog_free(struct catalog *c);

/*
 * The policy in force is about to change to p: its listed columns are
 * copied. When they differ from the last policy's (names or the rules'
 * numbers), every database is forgotten and mask_rel emptied, since its
 * entries carry the old rules' numbers; so is it on the first call (a
 * pinned map may hold an earlier agent's). Call before the new rules
 * reach the kernel; connections then come back through catalog_conn.
 */
void catalog_policy(struct catalog *c, const struct policy *p);

/*
 * A masked connection to `database` of target `target`, whose catalog is
 * reached with `conninfo` (libpq) and read every refresh_s: its database
 * key for mask_rel (never 0), or 0 when there is none to give (no column
 * listed, too many databases, a key taken by another database). The first
 * call for a database has it read.
 */
uint32_t catalog_conn(struct catalog *c, const char *target, const char *conninfo,
		      unsigned refresh_s, const char *database);

/*
 * DDL ran in that database: its columns of tables not listed go by name
 * at once, and its catalog is read again now.
 */
void catalog_changed(struct catalog *c, const char *target, const char *database);

struct catalog_stats {
	uint64_t dbs; /* databases known */
	uint64_t entries; /* mask_rel entries written */
	uint64_t lookups; /* catalog reads that succeeded */
	uint64_t failures; /* that failed (connect, query) */
	uint64_t dropped; /* columns beyond CATALOG_MAX_ENTRIES or databases beyond the max */
};

void catalog_stats(struct catalog *c, struct catalog_stats *out);

/* The 32-bit key of (target, database), never 0 (exposed for tests). */
uint32_t catalog_dbk(const char *target, const char *database);

#endif /* DBW_CATALOG_H */
