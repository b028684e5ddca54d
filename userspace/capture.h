/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Loader for the kernel side: open -> configure -> load -> attach, the ring
 * buffer, the counters, and a clean detach.
 */
#ifndef DBW_CAPTURE_H
#define DBW_CAPTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "dbwarden_abi.h"

#define CAPTURE_MAX_PORTS 64

struct capture_port {
	uint16_t port;
	uint8_t proto; /* enum dbw_proto */
};

struct capture;

struct capture_opts {
	const char *cgroup; /* cgroup v2 directory to watch (absolute) */
	struct capture_port ports[CAPTURE_MAX_PORTS];
	int nports;
	size_t ringbuf_bytes; /* power of two */
	bool tls; /* report execs (DBW_REC_EXEC) for the TLS library discovery */
	/*
	 * bpffs directory for the maps and links, so that the kernel goes on
	 * enforcing and buffering when the daemon is gone; NULL: nothing
	 * pinned, everything detaches with the process.
	 */
	const char *pin_dir;
	bool fail_closed; /* no daemon: refuse statements to connections with rules */
	/* called for every ring buffer record; returns 0 */
	int (*on_record)(void *ctx, const void *data, size_t size);
	void *ctx;
	/*
	 * Called once the programs are loaded, before they are attached (the
	 * policy goes in here, so that no connection is watched unguarded).
	 * Non-zero aborts the start; the callback has written err.
	 */
	int (*on_loaded)(void *ctx, struct capture *c, char *err, size_t errlen);
};

struct capture;

/*
 * Load and attach everything. Returns a handle, or NULL with a one-line
 * reason in err (nothing stays attached then).
 */
struct capture *capture_start(const struct capture_opts *o, char *err, size_t errlen);

/*
 * Wait up to timeout_ms for records and deliver them (at most those present
 * when the call began). Returns records or -errno. Records delivered stay
 * in the ring buffer, for a successor if this daemon dies, until
 * capture_commit().
 */
int capture_poll(struct capture *c, int timeout_ms);

/* The events made from every record delivered so far are out: free their space. */
void capture_commit(struct capture *c);

/* Sum the per-CPU counters into out[DBW_CNT__MAX]. Returns 0 or -errno. */
int capture_counters(struct capture *c, uint64_t *out);

/* Stop watching new connections (detach the cgroup hooks); records keep flowing. */
void capture_stop_new(struct capture *c);

/*
 * Deliver what is left in the ring buffer, free. Unpinned: detach
 * everything. Pinned: the programs stay, and tell the kernel no daemon is
 * attached any more (struct dbw_agent_meta).
 */
void capture_close(struct capture *c);

/*
 * Tell the programs the daemon is alive, and store what it has reported of
 * each counter (reported[DBW_CNT__MAX]), for a successor. Cheap; call
 * often (the kernel calls a daemon silent for DBW_AGENT_STALE_NS gone).
 */
void capture_heartbeat(struct capture *c, const uint64_t *reported);

/*
 * Adopted from an earlier run (pinned, same build): fills reported with
 * the counters as that run last reported them and returns true.
 */
bool capture_adopted(const struct capture *c, uint64_t *reported);

/* The pin directory, or NULL when nothing is pinned. */
const char *capture_pin_dir(const struct capture *c);

/*
 * `dbwarden stop`: signal the daemon that pinned dir to stop (SIGTERM) and
 * wait for it; with unpin, then remove every pinned object (programs
 * detach). Prints what it did. Returns 0, 1 when there was nothing to do,
 * or -1 with a reason on stderr.
 */
int capture_stop_pinned(const char *dir, bool unpin);

/*
 * The guard's compiled policy (see struct dbw_guard_rule in the ABI):
 * rules[i] and texts[i] for i < nrules, the unparsed block's text, and per
 * watched port (capture_opts order) the rules a new connection starts with.
 */
struct capture_guard {
	struct dbw_guard_cfg cfg;
	const struct dbw_guard_rule *rules;
	const struct dbw_guard_text *texts;
	unsigned nrules;
	struct dbw_guard_text unparsed_text;
	struct dbw_guard_text down_text; /* --fail-mode closed, no daemon */
	/* MySQL's then Redis' texts, DBW_GUARD_TEXT_SLOTS each (the rules',
	 * then the unparsed block's, then --fail-mode closed's); NULL:
	 * PostgreSQL's serve all */
	const struct dbw_guard_text *proto_texts;
	const uint64_t *port_rules; /* NULL: none */
	const uint32_t *port_mask_rules; /* result-masking rules per port; NULL: none */
};

/* Install a compiled policy (also a reload). Returns 0 or -errno. */
int capture_guard_load(struct capture *c, const struct capture_guard *g);

/*
 * Result masking (struct dbw_mask_cfg): the rules, the columns they name
 * (dbw_name_hash of the name -> rule bits), the uids their selectors
 * name (uid -> rule bits) and the Redis keys they name (struct
 * dbw_mask_key -> rule bits). Also a reload. 0 or -errno.
 */
struct capture_mask {
	const struct dbw_mask_rule *rules;
	unsigned nrules;
	uint32_t uid_free;
	const uint64_t *col_hash;
	const uint32_t *col_rules;
	unsigned ncols;
	const uint32_t *uids, *uid_rules;
	unsigned nuids;
	/* the server side: its rules, those without db_user, db user hash -> rules */
	uint32_t srv_rules, srv_user_free;
	const uint64_t *user_hash;
	const uint32_t *user_rules;
	unsigned nusers;
	/* Redis keys: exact keys and prefixes -> rules; the prefix lengths, the rules with keys */
	const struct dbw_mask_key *keys;
	const uint32_t *key_rule_sets;
	unsigned nkeys;
	uint64_t key_plens;
	uint32_t key_rules;
};

int capture_mask_load(struct capture *c, const struct capture_mask *m);

/*
 * The connections whose results the kernel masks now: their ids and
 * rules (~0 where userspace has not settled them yet), at most max.
 */
int capture_mask_conns(struct capture *c, uint64_t *ids, uint32_t *rules, int max);

/*
 * The connections a local server's egress masks (server side): their
 * socket cookies, at most max; *rules: every rule that may apply there.
 */
int capture_mask_srv_conns(struct capture *c, uint64_t *ids, int max, uint32_t *rules);

/*
 * The masking rules of one connection, as userspace computed them, and its
 * database's key in mask_rel (0: none, names decide). 0 or -errno.
 */
int capture_mask_conn(struct capture *c, uint64_t conn_id, uint32_t rules, uint32_t dbk);

/* The mask_rel map (struct dbw_mask_relkey -> rules), which the catalog module keeps. */
int capture_mask_rel_fd(struct capture *c);

/* Let that actor's statements of that shape pass require_approval rules until then. */
int capture_approve(struct capture *c, const struct dbw_approval_key *k, uint64_t until_mono_ns);

/* The rules of one connection, as userspace computed them. 0 or -errno. */
int capture_conn_rules(struct capture *c, uint64_t conn_id, uint64_t rules);

struct bpf_link;

/*
 * Attach a TLS probe: the write, read or handshake program (enum
 * dbw_tls_probe), at entry or return, at file offset offset of the ELF
 * file at path, in every process that maps it; cookie is an enum
 * dbw_tls_cookie. Returns the link (bpf_link__destroy detaches) or NULL
 * with errno set.
 */
struct bpf_link *capture_tls_probe(struct capture *c, const char *path, size_t offset, int probe,
				   bool ret, uint64_t cookie);

/* One loaded program: run counts need kernel.bpf_stats_enabled=1. */
struct capture_prog_stat {
	char name[32];
	uint32_t id;
	uint64_t run_cnt, run_time_ns;
};

/* The loaded programs, at most max. Returns how many were filled. */
int capture_prog_stats(struct capture *c, struct capture_prog_stat *out, int max);
/*
 * The workload class of a cgroup (struct dbw_workload_class: guard and
 * masking rules), or of a cgroup
 * not classified yet (DBW_WORKLOAD_ANY); del forgets a cgroup. 0 or -errno.
 */
int capture_workload_set(struct capture *c, uint64_t cgroup_id, uint64_t rules,
			 uint32_t mask_rules);
int capture_workload_del(struct capture *c, uint64_t cgroup_id);

/* Names of the counters, for logs and `status`. */
const char *capture_counter_name(int idx);

#endif /* DBW_CAPTURE_H */
