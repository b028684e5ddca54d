/* SPDX-License-Identifier: GPL-2.0-only */
/* The daemon's side of the guardrails: policy in force, kernel share, decisions. */
#ifndef DBW_GUARD_H
#define DBW_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "catalog.h"

struct capture;
struct emitter;
struct conn_table;
struct conn_guard_ops;
struct guard;

/*
 * Load the policy at path and install it in the kernel for the watched
 * ports. NULL with every problem in err (FILE:line:col lines) on failure.
 */
struct guard *guard_new(struct capture *cap, struct emitter *em, const char *path,
			const uint16_t *ports, int nports, char *err, size_t errlen);
void guard_free(struct guard *g);

/*
 * SIGHUP: read the file again. A bad policy is refused (an alert event,
 * the errors on stderr) and the one in force stays. 0 or -1.
 */
int guard_reload(struct guard *g, const uint16_t *ports, int nports, struct conn_table *t);

/* The local API socket (approvals), root only. 0, or -1 with err. */
int guard_api_open(struct guard *g, const char *path, char *err, size_t errlen);

/* Serve what the API socket has waiting; never blocks for long. */
void guard_api_poll(struct guard *g);

/*
 * Workloads: the policy's workload selectors compiled per cgroup for the
 * kernel (workload.c), kept current by guard_tick from the daemon's loop.
 */
struct identity;
void guard_set_identity(struct guard *g, struct identity *id);
void guard_tick(struct guard *g);
void guard_log_classes(const struct guard *g);

/* The callbacks the connection table calls. */
void guard_ops(struct guard *g, struct conn_guard_ops *ops);

void guard_stats(const struct guard *g, uint64_t *mismatches);

/* Every masking rule in `rules` says on_unmaskable: allow. */
bool guard_mask_allows_unmaskable(const struct guard *g, uint32_t rules);

/* The policy in force and the approvals, for `status` and the metrics. */
struct guard_info {
	const char *path;
	const char *version; /* first 16 hex digits of the file's SHA-256 */
	int64_t loaded_unix;
	size_t rules;
	uint64_t mismatches;
	unsigned approvals_pending, approvals_granted;
	struct catalog_stats catalog; /* table-qualified masking columns */
};

void guard_info(const struct guard *g, struct guard_info *out);

#endif /* DBW_GUARD_H */
