// SPDX-License-Identifier: GPL-2.0-only
/* cgroup v2 path -> container id and pod uid (see cgroup_id.h for the layouts). */
#include <stdbool.h>
#include <string.h>

#include "cgroup_id.h"

#define MAX_COMPONENTS 8 /* deeper than a container's cgroup is inside it */

struct comp {
	const char *s;
	size_t n;
};

/* Split path at '/' into at most max components; empty ones are skipped. */
static int split(const char *path, struct comp *c, int max)
{
	int n = 0;

	while (*path && n < max) {
		size_t len;

		while (*path == '/')
			path++;
		len = strcspn(path, "/");
		if (len)
			c[n++] = (struct comp){ path, len };
		path += len;
	}
	return n;
}

static bool is(const struct comp *c, const char *s)
{
	return c->n == strlen(s) && !memcmp(c->s, s, c->n);
}

/* s[0..n) ends with suffix: its length without it, or -1. */
static long strip_suffix(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);

	return n >= k && !memcmp(s + n - k, suffix, k) ? (long)(n - k) : -1;
}

static bool is_hex64(const char *s, size_t n)
{
	if (n != CGROUP_CONTAINER_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/*
 * A pod uid as a cgroup writes it: lower-case hex and sep ('_' for the
 * systemd driver, '-' for cgroupfs), 32 (a static pod's hash) to 36 (a
 * UUID) bytes. Copied to out with '-'. false if it is not one.
 */
static bool take_uid(const char *s, size_t n, char sep, char *out)
{
	if (n < 32 || n > CGROUP_POD_UID_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (ch == sep)
			ch = '-';
		else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
			return false;
		out[i] = ch;
	}
	out[n] = 0;
	return true;
}

/*
 * A container's own cgroup: "<runtime>-<id>.scope" (systemd driver) or
 * "<id>" / "crio-<id>" (cgroupfs driver). conmon's scope
 * ("crio-conmon-<id>.scope") is the runtime's helper, not the container.
 */
static bool take_container(const struct comp *c, struct cgroup_workload *out)
{
	static const struct {
		const char *prefix;
		uint8_t rt;
	} scopes[] = {
		{ "cri-containerd-", CGROUP_RT_CONTAINERD },
		{ "crio-", CGROUP_RT_CRIO },
		{ "docker-", CGROUP_RT_DOCKER },
		{ "libpod-", CGROUP_RT_PODMAN },
	};
	long n = strip_suffix(c->s, c->n, ".scope");
	const char *s = c->s;

	if (n < 0) {
		/* cgroupfs: the bare id, or CRI-O's crio-<id> */
		n = c->n;
		if (n > 5 && !memcmp(s, "crio-", 5)) {
			s += 5;
			n -= 5;
			out->runtime = CGROUP_RT_CRIO;
		}
		if (!is_hex64(s, n)) {
			out->runtime = CGROUP_RT_NONE;
			return false;
		}
		memcpy(out->container_id, s, n);
		out->container_id[n] = 0;
		return true;
	}
	for (size_t i = 0; i < sizeof(scopes) / sizeof(scopes[0]); i++) {
		size_t k = strlen(scopes[i].prefix);

		if ((size_t)n > k && !memcmp(s, scopes[i].prefix, k) && is_hex64(s + k, n - k)) {
			memcpy(out->container_id, s + k, n - k);
			out->container_id[n - k] = 0;
			out->runtime = scopes[i].rt;
			return true;
		}
	}
	return false;
}

/* /kubepods.slice/[kubepods-<qos>.slice/]kubepods[-<qos>]-pod<uid>.slice[/<scope>] */
static int parse_systemd_pod(const struct comp *c, int n, struct cgroup_workload *out)
{
	char stem[32] = "kubepods";
	uint8_t qos = CGROUP_QOS_GUARANTEED;
	int i = 1;
	long k;

	if (i < n && is(&c[i], "kubepods-burstable.slice")) {
		qos = CGROUP_QOS_BURSTABLE;
		strcpy(stem, "kubepods-burstable");
		i++;
	} else if (i < n && is(&c[i], "kubepods-besteffort.slice")) {
		qos = CGROUP_QOS_BESTEFFORT;
		strcpy(stem, "kubepods-besteffort");
		i++;
	}
	strcat(stem, "-pod");
	if (i >= n || c[i].n <= strlen(stem) || memcmp(c[i].s, stem, strlen(stem)))
		return 0;
	k = strip_suffix(c[i].s, c[i].n, ".slice");
	if (k < 0 || !take_uid(c[i].s + strlen(stem), k - strlen(stem), '_', out->pod_uid))
		return 0;
	out->qos = qos;
	if (++i < n)
		take_container(&c[i], out);
	return 1;
}

/* /kubepods/[burstable|besteffort/]pod<uid>[/<id>] */
static int parse_cgroupfs_pod(const struct comp *c, int n, struct cgroup_workload *out)
{
	uint8_t qos = CGROUP_QOS_GUARANTEED;
	int i = 1;

	if (i < n && is(&c[i], "burstable")) {
		qos = CGROUP_QOS_BURSTABLE;
		i++;
	} else if (i < n && is(&c[i], "besteffort")) {
		qos = CGROUP_QOS_BESTEFFORT;
		i++;
	}
	if (i >= n || c[i].n <= 3 || memcmp(c[i].s, "pod", 3) ||
	    !take_uid(c[i].s + 3, c[i].n - 3, '-', out->pod_uid))
		return 0;
	out->qos = qos;
	if (++i < n)
		take_container(&c[i], out);
	return 1;
}

int cgroup_parse(const char *path, struct cgroup_workload *out)
{
	struct comp c[MAX_COMPONENTS];
	int n = split(path ? path : "", c, MAX_COMPONENTS), r = 0;

	memset(out, 0, sizeof(*out));
	if (n == 0)
		return 0;
	if (is(&c[0], "kubepods.slice"))
		r = parse_systemd_pod(c, n, out);
	else if (is(&c[0], "kubepods"))
		r = parse_cgroupfs_pod(c, n, out);
	else if (n >= 2 && (is(&c[0], "system.slice") || is(&c[0], "machine.slice")))
		/* a runtime's scope under systemd: docker-<id>.scope, libpod-<id>.scope */
		r = c[1].n > 6 && strip_suffix(c[1].s, c[1].n, ".scope") > 0 &&
		    take_container(&c[1], out);
	else if (n >= 2 && is(&c[0], "docker"))
		r = take_container(&c[1], out) && out->runtime == CGROUP_RT_NONE;
	if (!r)
		memset(out, 0, sizeof(*out));
	else if (is(&c[0], "docker"))
		out->runtime = CGROUP_RT_DOCKER;
	return r;
}

const char *cgroup_runtime_name(uint8_t rt)
{
	switch (rt) {
	case CGROUP_RT_CONTAINERD:
		return "containerd";
	case CGROUP_RT_CRIO:
		return "cri-o";
	case CGROUP_RT_DOCKER:
		return "docker";
	case CGROUP_RT_PODMAN:
		return "podman";
	}
	return "";
}
