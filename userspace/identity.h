/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Actor enrichment: user names, executables, cgroup paths, and the
 * workload behind a cgroup (container, Kubernetes pod). Every lookup is
 * cached and bounded; a failed lookup yields "" or NULL, never blocks
 * capture: pod metadata comes from a client thread (k8s.c) through a
 * table read under a short lock.
 */
#ifndef DBW_IDENTITY_H
#define DBW_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

#include "cgroup_id.h"

struct identity;
struct emitter;
struct k8s_opts;
struct k8s_pod;

/* cgroup2_mount: the cgroup v2 mount point (for cgroup id -> path). */
struct identity *identity_new(const char *cgroup2_mount);
void identity_free(struct identity *id);

/* The cgroup v2 mount point given to identity_new ("" if none). */
const char *identity_mount(const struct identity *id);

/* The user name of uid, or "" when unknown. Valid until identity_free. */
const char *identity_user(struct identity *id, uint32_t uid);

/* The cgroup path (relative to the cgroup2 root, "/" for the root), or "". */
const char *identity_cgroup(struct identity *id, uint64_t cgroup_id);

/* readlink of /proc/pid/exe into buf; "" when the process is gone. */
void identity_exe(uint32_t pid, char *buf, size_t len);

/* ---- workloads -------------------------------------------------------------------- */

/* Who runs a process beyond its pid: from its cgroup, then from the API. */
struct workload {
	struct cgroup_workload cg; /* pod uid and container id, "" when none */
	struct k8s_pod *pod; /* a reference; NULL: not a pod, or its metadata is unknown */
	const char *container; /* the container's name (in pod), or NULL */
};

/*
 * The workload of the processes of cgroup_id, for a new connection. A pod
 * whose metadata is not known (the API unreachable, or the pod newer than
 * the last event) counts as identity_degraded. Release with workload_release.
 */
void identity_workload(struct identity *id, uint64_t cgroup_id, struct workload *out);

/* The same from a cgroup path, not counted (the kernel's class map, tests). */
void identity_workload_of(struct identity *id, const char *cgroup_path, struct workload *out);

/*
 * Look w's pod up again. Returns true when there is newer metadata (w then
 * holds it); a pod deleted meanwhile keeps what w knew.
 */
bool identity_workload_update(struct identity *id, struct workload *w);

void workload_release(struct workload *w);

/* The event's actor.pod: null for a host process, else the pod's fields. */
json_t *workload_pod_json(const struct workload *w);

/*
 * Follow the Kubernetes API given in o, or the cluster's when the agent
 * runs in a pod (k8s_config): pod metadata for every workload; alerts about
 * its reachability go to em. Without either, workloads are what their
 * cgroups say. 0, or -1 with err.
 */
int identity_k8s_start(struct identity *id, const struct k8s_opts *o, struct emitter *em, char *err,
		       size_t errlen);

/*
 * From the daemon's loop. Returns true when pod metadata changed since the
 * last call (live connections should look theirs up again). Emits
 * identity_degraded / identity_restored alerts when the API goes away or
 * answers again.
 */
bool identity_poll(struct identity *id);

/* The pod table's generation: grows on every change (0 without an API). */
uint64_t identity_generation(struct identity *id);

/* One line of counters for the exit summary. */
void identity_log_summary(struct identity *id);

#endif /* DBW_IDENTITY_H */
