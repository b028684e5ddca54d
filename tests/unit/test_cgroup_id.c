// SPDX-License-Identifier: GPL-2.0-only
/*
 * cgroup v2 path -> container id and pod uid: byte-exact paths of every
 * layout the kubelet (systemd and cgroupfs drivers) and the runtimes
 * write, the look-alikes that must not pass (a delegated subtree naming
 * itself after a pod), and every prefix of every fixture.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cgroup_id.h"

#define UID	"8f1c2b9e-1d2a-4c3b-9e8f-0a1b2c3d4e5f"
#define UID_	"8f1c2b9e_1d2a_4c3b_9e8f_0a1b2c3d4e5f" /* as the systemd driver writes it */
#define STATIC	"6a4f0e3d2c1b0a9f8e7d6c5b4a39281f" /* a static pod: its manifest's hash */
#define CID	"3b7f0d9a2c4e6f8a1b3d5e7f9a0c2e4f6a8b0d2f4a6c8e0a2b4d6f8a0c2e4f6a"
#define CID_LEN 64

static const struct {
	const char *path;
	const char *pod_uid, *container_id;
	uint8_t runtime, qos;
} good[] = {
	/* kubelet, systemd driver */
	{ "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID_
	  ".slice/cri-containerd-" CID ".scope",
	  UID, CID, CGROUP_RT_CONTAINERD, CGROUP_QOS_BURSTABLE },
	{ "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UID_
	  ".slice/crio-" CID ".scope",
	  UID, CID, CGROUP_RT_CRIO, CGROUP_QOS_BESTEFFORT },
	{ "/kubepods.slice/kubepods-pod" UID_ ".slice/docker-" CID ".scope", UID, CID,
	  CGROUP_RT_DOCKER, CGROUP_QOS_GUARANTEED },
	/* the pod's own slice: a process of the pod outside its containers */
	{ "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID_ ".slice", UID, "",
	  CGROUP_RT_NONE, CGROUP_QOS_BURSTABLE },
	/* a cgroup a container made inside its own: still that container */
	{ "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID_
	  ".slice/cri-containerd-" CID ".scope/worker",
	  UID, CID, CGROUP_RT_CONTAINERD, CGROUP_QOS_BURSTABLE },
	/* CRI-O's conmon: the runtime's helper, in the pod, not in the container */
	{ "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UID_
	  ".slice/crio-conmon-" CID ".scope",
	  UID, "", CGROUP_RT_NONE, CGROUP_QOS_BESTEFFORT },
	/* kubelet, cgroupfs driver */
	{ "/kubepods/burstable/pod" UID "/" CID, UID, CID, CGROUP_RT_NONE, CGROUP_QOS_BURSTABLE },
	{ "/kubepods/pod" UID "/" CID, UID, CID, CGROUP_RT_NONE, CGROUP_QOS_GUARANTEED },
	{ "/kubepods/besteffort/pod" UID "/crio-" CID, UID, CID, CGROUP_RT_CRIO,
	  CGROUP_QOS_BESTEFFORT },
	{ "/kubepods/burstable/pod" STATIC "/" CID, STATIC, CID, CGROUP_RT_NONE,
	  CGROUP_QOS_BURSTABLE },
	{ "/kubepods/burstable/pod" UID, UID, "", CGROUP_RT_NONE, CGROUP_QOS_BURSTABLE },
	/* the same, as a sloppy writer might: doubled and trailing slashes */
	{ "//kubepods//burstable/pod" UID "/" CID "/", UID, CID, CGROUP_RT_NONE,
	  CGROUP_QOS_BURSTABLE },
	/* runtimes alone */
	{ "/system.slice/docker-" CID ".scope", "", CID, CGROUP_RT_DOCKER, CGROUP_QOS_NONE },
	{ "/docker/" CID, "", CID, CGROUP_RT_DOCKER, CGROUP_QOS_NONE },
	{ "/machine.slice/libpod-" CID ".scope", "", CID, CGROUP_RT_PODMAN, CGROUP_QOS_NONE },
};

static const char *const bad[] = {
	"",
	"/",
	"/init.scope",
	"/user.slice/user-1000.slice/session-3.scope",
	"/system.slice/docker.service",
	"/system.slice/containerd.service",
	"/kubepods.slice",
	"/kubepods.slice/kubepods-burstable.slice",
	"/kubepods",
	"/kubepods/burstable",
	/* a delegated subtree borrowing a pod's name: not from the root, not a pod */
	"/user.slice/user-1000.slice/user@1000.service/kubepods.slice/kubepods-pod" UID_
	".slice/cri-containerd-" CID ".scope",
	"/user.slice/user-1000.slice/user@1000.service/app.slice/docker-" CID ".scope",
	"/user.slice/kubepods/burstable/pod" UID "/" CID,
	/* the systemd driver never writes '-' in the uid (it separates slices) */
	"/kubepods.slice/kubepods-pod" UID ".slice/cri-containerd-" CID ".scope",
	/* a pod slice outside its QoS slice */
	"/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod" UID_ ".slice",
	"/kubepods.slice/kubepods-burstable-pod" UID_ ".slice",
	/* not hex, too short, too long */
	"/kubepods.slice/kubepods-podXYZ.slice",
	"/kubepods/burstable/pod" UID "x",
	"/kubepods/burstable/pod8f1c2b9e-1d2a",
	"/kubepods/burstable/pod" UID "0123/" CID,
	"/kubepods/burstable/notapod/" CID,
	/* a runtime scope directly under the root */
	"/docker-" CID ".scope",
	"/docker/" CID "0",
};

static void test_layouts(void **state)
{
	struct cgroup_workload w;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (cgroup_parse(good[i].path, &w) != 1)
			fail_msg("not recognised: %s", good[i].path);
		if (strcmp(w.pod_uid, good[i].pod_uid) ||
		    strcmp(w.container_id, good[i].container_id) || w.runtime != good[i].runtime ||
		    w.qos != good[i].qos)
			fail_msg("%s: pod '%s' container '%s' runtime %u qos %u", good[i].path,
				 w.pod_uid, w.container_id, w.runtime, w.qos);
	}
}

static void test_not_workloads(void **state)
{
	struct cgroup_workload w;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&w, 0x5a, sizeof(w));
		if (cgroup_parse(bad[i], &w) != 0)
			fail_msg("taken for a workload: %s (pod '%s' container '%s')", bad[i],
				 w.pod_uid, w.container_id);
		assert_string_equal(w.pod_uid, "");
		assert_string_equal(w.container_id, "");
		assert_int_equal(w.runtime, CGROUP_RT_NONE);
	}
	assert_int_equal(cgroup_parse(NULL, &w), 0);
}

/* Look-alike ids: upper case, 63 and 65 digits: the pod stays, the container goes. */
static void test_container_ids(void **state)
{
	static const char *const ids[] = {
		"3B7F0D9A2C4E6F8A1B3D5E7F9A0C2E4F6A8B0D2F4A6C8E0A2B4D6F8A0C2E4F6A",
		"3b7f0d9a2c4e6f8a1b3d5e7f9a0c2e4f6a8b0d2f4a6c8e0a2b4d6f8a0c2e4f6",
		"3b7f0d9a2c4e6f8a1b3d5e7f9a0c2e4f6a8b0d2f4a6c8e0a2b4d6f8a0c2e4f6a0",
		"",
	};
	struct cgroup_workload w;
	char path[512];

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		snprintf(path, sizeof(path),
			 "/kubepods.slice/kubepods-pod" UID_ ".slice/cri-containerd-%s.scope",
			 ids[i]);
		assert_int_equal(cgroup_parse(path, &w), 1);
		assert_string_equal(w.pod_uid, UID);
		assert_string_equal(w.container_id, "");
		snprintf(path, sizeof(path), "/kubepods/pod" UID "/%s", ids[i]);
		assert_int_equal(cgroup_parse(path, &w), 1);
		assert_string_equal(w.container_id, "");
	}
	assert_int_equal(strlen(CID), CID_LEN);
	assert_string_equal(cgroup_runtime_name(CGROUP_RT_CRIO), "cri-o");
	assert_string_equal(cgroup_runtime_name(CGROUP_RT_NONE), "");
}

/*
 * Every prefix of every fixture: no crash, and a cut component is never
 * read as a shorter id (a container id is all 64 digits or nothing).
 */
static void test_every_prefix(void **state)
{
	struct cgroup_workload w;
	char buf[512];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		size_t n = strlen(good[i].path);

		for (size_t k = 0; k <= n; k++) {
			memcpy(buf, good[i].path, k);
			buf[k] = 0;
			cgroup_parse(buf, &w);
			assert_true(!*w.container_id || strlen(w.container_id) == CID_LEN);
			assert_true(!*w.pod_uid || strlen(w.pod_uid) >= 32);
		}
	}
}

/* Random bytes from the alphabet of the layouts: parse never reads past its input. */
static void test_random(void **state)
{
	static const char alpha[] = "/-_.abcdef0123456789kubepodslicescopecri-containerdcrio";
	struct cgroup_workload w;
	char buf[300];
	unsigned seed = 42;

	for (int round = 0; round < 20000; round++) {
		size_t n = rand_r(&seed) % (sizeof(buf) - 1);

		for (size_t i = 0; i < n; i++)
			buf[i] = alpha[rand_r(&seed) % (sizeof(alpha) - 1)];
		buf[n] = 0;
		cgroup_parse(buf, &w);
		assert_true(strlen(w.container_id) == 0 || strlen(w.container_id) == CID_LEN);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layouts),	      cmocka_unit_test(test_not_workloads),
		cmocka_unit_test(test_container_ids), cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
