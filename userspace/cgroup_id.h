/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Workload identity from a cgroup v2 path: which container a process runs
 * in, and which Kubernetes pod that container belongs to. Pure: no I/O.
 *
 * The layouts read (paths relative to the cgroup v2 root):
 *
 *   kubelet, systemd driver (the pod uid's '-' written as '_'):
 *     /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope
 *     /kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/crio-<id>.scope
 *     /kubepods.slice/kubepods-pod<uid>.slice/docker-<id>.scope            (guaranteed QoS)
 *   kubelet, cgroupfs driver:
 *     /kubepods/burstable/pod<uid>/<id>
 *     /kubepods/pod<uid>/crio-<id>
 *   a container runtime alone:
 *     /system.slice/docker-<id>.scope, /docker/<id>, /machine.slice/libpod-<id>.scope
 *
 * A layout is recognised only from the root of the hierarchy: only root
 * (the kubelet, the runtime) can create cgroups there, while anyone with a
 * delegated subtree (a systemd user session) could name a cgroup
 * ".../kubepods-pod<uid>.slice/..." to borrow a pod's identity.
 */
#ifndef DBW_CGROUP_ID_H
#define DBW_CGROUP_ID_H

#include <stdint.h>

#define CGROUP_POD_UID_LEN	36 /* a UUID; a static pod's is a 32-digit hash */
#define CGROUP_CONTAINER_ID_LEN 64

enum cgroup_runtime {
	CGROUP_RT_NONE = 0,
	CGROUP_RT_CONTAINERD = 1,
	CGROUP_RT_CRIO = 2,
	CGROUP_RT_DOCKER = 3,
	CGROUP_RT_PODMAN = 4,
};

enum cgroup_qos {
	CGROUP_QOS_NONE = 0, /* not a pod */
	CGROUP_QOS_GUARANTEED = 1,
	CGROUP_QOS_BURSTABLE = 2,
	CGROUP_QOS_BESTEFFORT = 3,
};

struct cgroup_workload {
	char pod_uid[CGROUP_POD_UID_LEN + 1]; /* "" when not in a pod; with '-' */
	char container_id[CGROUP_CONTAINER_ID_LEN + 1]; /* "" when not in a container */
	uint8_t runtime; /* enum cgroup_runtime */
	uint8_t qos; /* enum cgroup_qos */
};

/*
 * Read path (as /proc/PID/cgroup shows it: "/", "/kubepods/...") into out.
 * Returns 1 when the path names a pod or a container, 0 for anything else
 * (a host process; out is zeroed). Never fails on malformed input: a
 * component that does not fit the layout ends the match where it is, so a
 * pod slice with a stray cgroup under it is the pod without a container.
 */
int cgroup_parse(const char *path, struct cgroup_workload *out);

const char *cgroup_runtime_name(uint8_t rt);

#endif /* DBW_CGROUP_ID_H */
