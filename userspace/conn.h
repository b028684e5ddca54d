/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The connection table: ring buffer records in, audit events out.
 *
 * Each watched connection gets an entry on CONN_OPEN (or on its first DATA
 * record when the open record was lost), its two byte streams are checked
 * for gaps by stream offset and fed to the protocol stitcher, and every
 * statement the stitcher reports is analysed and emitted.
 */
#ifndef DBW_CONN_H
#define DBW_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "dbwarden_abi.h"

struct emitter;
struct identity;
struct detector_set;
struct sql_analyzer;
struct conn_table;

struct conn_stats {
	uint64_t open; /* connections in the table now */
	uint64_t opened; /* connections seen in total */
	uint64_t statements; /* statement events emitted */
	uint64_t unparsed; /* connections that became unparsed */
	uint64_t gaps; /* stream gaps seen */
	uint64_t gap_bytes;
	uint64_t bad_records; /* malformed ring buffer records (version, size) */
	uint64_t evicted; /* entries dropped because the table was full */
	uint64_t verdicts; /* guard verdict records */
	uint64_t resets; /* connections reset (guard failure, on_mismatch) */
	uint64_t mismatches; /* kernel blocks the exact parse did not confirm */
	uint64_t mask_records; /* result masking reports */
	/* Redis replies' counts given to a later reply's command: a pipeline deeper than
	 * the daemon keeps them apart (the connection's totals stay right) */
	uint64_t mask_pending_merged;
	uint64_t by_action[4]; /* statement events per decision, enum dbw_action */
	uint64_t by_proto[4][4]; /* ... per protocol (enum dbw_proto) and decision */
	uint64_t lost_statements; /* answered, request read by an earlier daemon */
};

/* "postgres", "mysql", "redis" for an enum dbw_proto; "unknown" else. */
const char *dbw_proto_name(uint8_t proto);
/* enum dbw_proto of a name (postgres[ql], mysql, mariadb, redis), or -1. */
int dbw_proto_parse(const char *name);

/* max_conns bounds the table; the least recently active entry is evicted past it. */
struct conn_table *conns_new(struct emitter *em, struct identity *id, struct sql_analyzer *an,
			     size_t max_conns);
void conns_free(struct conn_table *t);

/* Handle one ring buffer record. Always returns 0 (bad records are counted). */
int conns_record(struct conn_table *t, const void *data, size_t size);

/* Agent shutdown: report every statement still waiting for its answer. */
void conns_flush_all(struct conn_table *t);

#define CONN_MAX_PORTS 64 /* CAPTURE_MAX_PORTS: agent.c checks */

/* The programs were adopted from an earlier daemon: connections seen mid-stream are expected. */
void conns_set_resuming(struct conn_table *t);

/*
 * The watched ports: ports[i] is parsed as protos[i] (enum dbw_proto), for
 * a connection learnt from its data (its CONN_OPEN lost, or read by an
 * earlier daemon).
 */
void conns_set_ports(struct conn_table *t, const uint16_t *ports, const uint8_t *protos,
		     int nports);

/* Statements seen sent whose answer has not come yet, over every connection. */
size_t conns_pending(const struct conn_table *t);

void conns_stats(const struct conn_table *t, struct conn_stats *out);

/* Reset connection id (sock_diag), with an alert event saying why. 0, or -ENOENT. */
int conns_reset(struct conn_table *t, uint64_t id, const char *why);

/*
 * Reset the n server-side masked connections ids (socket cookies) when the
 * agent stops without pinning: one alert says how many.
 */
void conns_reset_server(struct conn_table *t, const uint64_t *ids, int n);

struct workload;

/* What the policy side sees of a connection ("" where not known yet). */
struct conn_info {
	uint64_t id;
	const struct dbw_identity *who;
	const char *user, *exe, *cgroup;
	const struct workload *wl; /* container and pod */
	const char *client, *server;
	uint16_t server_port;
	uint8_t proto; /* enum dbw_proto */
	const char *db_user, *database, *application_name;
};

/* The kernel guard's verdict about one Query/Parse message. */
struct conn_verdict {
	uint64_t stream_off;
	uint8_t action; /* enum dbw_action */
	uint8_t rule; /* index, DBW_GUARD_NO_RULE for the defaults */
	uint8_t flags; /* enum dbw_verdict_flags */
	uint32_t verbs, lex_flags;
	bool confirmed; /* a statement of the message is blocked by the exact parse too */
	uint64_t shape; /* the statement shape the lexer read (approvals) */
};

struct sql_analysis;
struct dbw_stmt;

/* What a decision asks of the table besides the event. */
struct conn_decision {
	const char *alert_kind; /* NULL: no alert */
	char alert[256];
	bool reset; /* reset the connection (policy on_mismatch: reset) */
	bool confirms; /* the exact parse blocks this statement too */
	bool not_sent; /* the kernel dropped it whole (TLS block): it never reached the server */
};

/*
 * The policy side of the table (the guard, userspace/guard.c). All
 * callbacks are optional.
 */
struct conn_guard_ops {
	void *ctx;
	/* a connection's identity or session is (newly) known: set its rules */
	void (*conn_changed)(void *ctx, const struct conn_info *ci);
	/*
	 * The "decision" object of a statement event. kv is the kernel's
	 * verdict on the message that carried it, or NULL (the kernel let it
	 * through). May ask for an alert event and a reset through out.
	 */
	json_t *(*decide)(void *ctx, const struct conn_info *ci, const struct dbw_stmt *s,
			  const struct sql_analysis *a, const struct conn_verdict *kv,
			  struct conn_decision *out);
	/* the audit-side masking in force (the policy's `masking`); NULL: the defaults */
	const struct conn_masking *(*masking)(void *ctx);
};

void conns_set_guard(struct conn_table *t, const struct conn_guard_ops *ops);

/*
 * Audit-side masking: what a statement event's text is (enum
 * policy_text_mode) and the detectors every string that leaves the host
 * goes through. Without a policy: normalized text, every built-in detector.
 */
struct conn_masking {
	int text_mode; /* enum policy_text_mode */
	struct detector_set *det;
};

/*
 * s[0..len) as it may leave the host: a JSON string with every detector's
 * span replaced by "<name>" (as is only in raw mode). Every protocol's
 * stitcher glue calls this for values it exports (error messages, bind or
 * command arguments); *found (may be NULL) gets the spans replaced.
 */
json_t *conns_mask_json(struct conn_table *t, const char *s, size_t len, unsigned *found);

/*
 * Compile the default detectors now if no policy brings its own (they are
 * otherwise compiled on first use): the daemon does it before it reports
 * ready, so that no statement waits for it.
 */
void conns_masking_ready(struct conn_table *t);

/* Call ops->conn_changed for every live connection (after a policy reload). */
void conns_guard_refresh(struct conn_table *t);

/*
 * Pod metadata changed (identity_poll): connections of pods look theirs up
 * again; those with newer metadata get a new actor and their rules anew.
 */
void conns_identity_refresh(struct conn_table *t);

#endif /* DBW_CONN_H */
