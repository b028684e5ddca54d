/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kernel's view of who is who: every cgroup of the host classified by
 * the policy's workload selectors (cgroup, container, pod namespace, pod
 * name, service account, labels) into the `workload_class` map, so that the
 * kernel guard decides a connection's first statements before userspace
 * has seen the connection (see struct dbw_workload_class).
 *
 * Kept current from the daemon's loop: one walk of the cgroup v2 tree,
 * then inotify reports the cgroups made since (a pod's containers start)
 * and those removed; a new policy or new pod metadata recomputes the
 * classes. A policy without workload selectors needs one class for all:
 * no walk, no watch.
 */
#ifndef DBW_WORKLOAD_H
#define DBW_WORKLOAD_H

#include <stdint.h>
#include <stdio.h>

struct capture;
struct identity;
struct policy;
struct policy_conn;
struct workload;

struct wl_classes;

struct wl_classes *wl_classes_new(struct identity *id, struct capture *cap, const char *mount);
void wl_classes_free(struct wl_classes *w);

/* p is in force now (a load or a reload): every class is computed anew. */
void wl_classes_policy(struct wl_classes *w, const struct policy *p);

/* From the daemon's loop; cheap when there is nothing to do. */
void wl_classes_tick(struct wl_classes *w);

void wl_classes_log_summary(const struct wl_classes *w);

/* The policy's view of a workload: pc's workload fields (valid while w is). */
void workload_policy_conn(const struct workload *w, struct policy_conn *pc);

#endif /* DBW_WORKLOAD_H */
