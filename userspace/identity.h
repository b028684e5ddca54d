/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Actor enrichment: user names, executables, cgroup paths. Every lookup is
 * cached and bounded; a failed lookup yields "" or NULL, never blocks capture.
 */
#ifndef DBW_IDENTITY_H
#define DBW_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

struct identity;

/* cgroup2_mount: the cgroup v2 mount point (for cgroup id -> path). */
struct identity *identity_new(const char *cgroup2_mount);
void identity_free(struct identity *id);

/* The user name of uid, or "" when unknown. Valid until identity_free. */
const char *identity_user(struct identity *id, uint32_t uid);

/* The cgroup path (relative to the cgroup2 root, "/" for the root), or "". */
const char *identity_cgroup(struct identity *id, uint64_t cgroup_id);

/* readlink of /proc/pid/exe into buf; "" when the process is gone. */
void identity_exe(uint32_t pid, char *buf, size_t len);

#endif /* DBW_IDENTITY_H */
