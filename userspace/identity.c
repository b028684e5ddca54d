// SPDX-License-Identifier: GPL-2.0-only
/* Actor enrichment with small direct-mapped caches; workloads from cgroups and the API. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "event.h"
#include "identity.h"
#include "k8s.h"
#include "log.h"

#define ID_CACHE 1024 /* entries per cache; direct-mapped, a collision replaces */

struct user_slot {
	uint32_t uid;
	int valid;
	char name[64];
};

struct cg_slot {
	uint64_t id;
	char path[PATH_MAX];
	struct cgroup_workload wl; /* the path, parsed */
};

struct identity {
	char mount[PATH_MAX];
	size_t mount_len;
	int mount_fd;
	struct user_slot users[ID_CACHE];
	struct cg_slot cgroups[ID_CACHE];
	/* the Kubernetes API, when one is configured */
	struct k8s *k8s;
	struct emitter *em;
	enum k8s_state last_state;
	uint64_t last_gen;
	uint64_t degraded; /* workloads of a pod seen without its metadata */
};

struct identity *identity_new(const char *cgroup2_mount)
{
	struct identity *id = calloc(1, sizeof(*id));

	if (!id)
		return NULL;
	snprintf(id->mount, sizeof(id->mount), "%s", cgroup2_mount ? cgroup2_mount : "");
	id->mount_len = strlen(id->mount);
	id->mount_fd = cgroup2_mount ? open(cgroup2_mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	return id;
}

void identity_free(struct identity *id)
{
	if (!id)
		return;
	k8s_stop(id->k8s);
	if (id->mount_fd >= 0)
		close(id->mount_fd);
	free(id);
}

const char *identity_mount(const struct identity *id)
{
	return id->mount;
}

const char *identity_user(struct identity *id, uint32_t uid)
{
	struct user_slot *s = &id->users[uid % ID_CACHE];
	struct passwd pw, *res = NULL;
	char buf[1024];

	if (s->valid && s->uid == uid)
		return s->name;
	s->uid = uid;
	s->valid = 1;
	s->name[0] = 0;
	if (!getpwuid_r(uid, &pw, buf, sizeof(buf), &res) && res)
		snprintf(s->name, sizeof(s->name), "%s", res->pw_name);
	return s->name;
}

/*
 * A cgroup v2 id is the kernfs inode of its directory, and kernfs hands out
 * file handles made of that id: open_by_handle_at() turns the id back into
 * the directory, and /proc/self/fd names its path. No tree walk needed.
 */
static int cgroup_resolve(struct identity *id, uint64_t cgid, char *out, size_t len)
{
	struct {
		struct file_handle fh;
		uint64_t cgid;
	} h = { .fh = { .handle_bytes = sizeof(uint64_t),
			.handle_type = 0xfe /* FILEID_KERNFS */ } };
	char link[64], path[PATH_MAX];
	ssize_t n;
	int fd;

	if (id->mount_fd < 0)
		return -1;
	h.cgid = cgid;
	fd = open_by_handle_at(id->mount_fd, &h.fh, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	path[n] = 0;
	if (!strncmp(path, id->mount, id->mount_len) &&
	    (path[id->mount_len] == '/' || path[id->mount_len] == 0))
		snprintf(out, len, "%s", path[id->mount_len] ? path + id->mount_len : "/");
	else
		snprintf(out, len, "%s", path);
	return 0;
}

/*
 * The cache slot of cgid, resolved. A cgroup made after the agent started
 * resolves on first sight; one already gone resolves to "" and is tried
 * again next time (ids are never reused within a boot).
 */
static const struct cg_slot *cg_lookup(struct identity *id, uint64_t cgid)
{
	struct cg_slot *s = &id->cgroups[cgid % ID_CACHE];

	if (s->id == cgid && s->path[0])
		return s;
	s->id = cgid;
	if (cgroup_resolve(id, cgid, s->path, sizeof(s->path)))
		s->path[0] = 0;
	cgroup_parse(s->path, &s->wl);
	return s;
}

const char *identity_cgroup(struct identity *id, uint64_t cgid)
{
	return cg_lookup(id, cgid)->path;
}

void identity_exe(uint32_t pid, char *buf, size_t len)
{
	/* DBW_PROC_ROOT: the host's /proc mounted elsewhere (a container's /host/proc) */
	static const char *proc;
	char link[PATH_MAX];
	ssize_t n;

	if (!proc)
		proc = getenv("DBW_PROC_ROOT") && *getenv("DBW_PROC_ROOT") ?
			       getenv("DBW_PROC_ROOT") :
			       "/proc";
	snprintf(link, sizeof(link), "%s/%u/exe", proc, pid);
	n = readlink(link, buf, len - 1);
	buf[n > 0 ? n : 0] = 0;
}

/* ---- workloads -------------------------------------------------------------------- */

/* w->cg is set: add the pod's metadata if the API has told us about it. */
static void workload_fill(struct identity *id, struct workload *w)
{
	w->pod = NULL;
	w->container = NULL;
	if (!w->cg.pod_uid[0] || !id->k8s)
		return;
	w->pod = k8s_get(id->k8s, w->cg.pod_uid);
	w->container = k8s_pod_container(w->pod, w->cg.container_id);
}

void identity_workload(struct identity *id, uint64_t cgroup_id, struct workload *out)
{
	out->cg = cg_lookup(id, cgroup_id)->wl;
	workload_fill(id, out);
	if (out->cg.pod_uid[0] && !out->pod)
		id->degraded++;
}

void identity_workload_of(struct identity *id, const char *cgroup_path, struct workload *out)
{
	cgroup_parse(cgroup_path, &out->cg);
	workload_fill(id, out);
}

bool identity_workload_update(struct identity *id, struct workload *w)
{
	struct workload nw = { .cg = w->cg };

	workload_fill(id, &nw);
	if (!nw.pod || nw.pod == w->pod) {
		workload_release(&nw);
		return false;
	}
	workload_release(w);
	*w = nw;
	return true;
}

void workload_release(struct workload *w)
{
	k8s_pod_put(w->pod);
	w->pod = NULL;
	w->container = NULL;
}

json_t *workload_pod_json(const struct workload *w)
{
	const struct k8s_pod *p = w->pod;
	json_t *labels;

	if (!w->cg.pod_uid[0])
		return json_null();
	if (!p)
		/* a pod by its cgroup, its metadata unknown: the uid says which */
		return json_pack("{s:n, s:n, s:s, s:n, s:n, s:n}", "namespace", "name", "uid",
				 w->cg.pod_uid, "service_account", "labels", "container");
	labels = json_object();
	for (size_t i = 0; labels && i < p->nlabels; i++)
		json_object_set_new(labels, p->labels[2 * i],
				    json_str_or_null(p->labels[2 * i + 1]));
	return json_pack("{s:o, s:o, s:s, s:o, s:o, s:o}", "namespace", json_str_or_null(p->ns),
			 "name", json_str_or_null(p->name), "uid", p->uid, "service_account",
			 json_str_or_null(p->service_account), "labels",
			 labels ? labels : json_null(), "container",
			 json_str_or_null(w->container));
}

int identity_k8s_start(struct identity *id, const struct k8s_opts *o, struct emitter *em, char *err,
		       size_t errlen)
{
	struct k8s_opts ko = *o;
	char api[300], node[256];

	if (!k8s_config(&ko, api, sizeof(api), node, sizeof(node)))
		return 0;
	id->em = em;
	id->k8s = k8s_start(&ko, err, errlen);
	if (!id->k8s)
		return -1;
	log_info("kubernetes: pods of node %s from %s (CA %s)", ko.node, ko.api,
		 ko.ca_file ? ko.ca_file : "system store");
	return 0;
}

static void alert(struct identity *id, const char *kind, const char *detail)
{
	json_t *ev = event_new(id->em, "alert", 0);

	event_set_alert(ev, kind, detail, NULL);
	event_emit(id->em, ev);
}

bool identity_poll(struct identity *id)
{
	enum k8s_state st;
	struct k8s_stats ks;
	char err[256], msg[512];
	uint64_t gen;

	if (!id->k8s)
		return false;
	st = k8s_state(id->k8s, err, sizeof(err));
	if (st != id->last_state) {
		k8s_get_stats(id->k8s, &ks);
		if (st == K8S_DOWN) {
			snprintf(msg, sizeof(msg),
				 "Kubernetes API unreachable (%s); events carry the cgroup and "
				 "container identity, pod fields fill in when it answers",
				 err);
			alert(id, "identity_degraded", msg);
		} else if (st == K8S_UP) {
			snprintf(msg, sizeof(msg),
				 "Kubernetes API %s answers: %llu pods on this node; "
				 "identity_degraded=%llu",
				 k8s_api(id->k8s), (unsigned long long)ks.pods,
				 (unsigned long long)id->degraded);
			if (id->last_state == K8S_DOWN)
				alert(id, "identity_restored", msg);
			else
				log_info("%s", msg);
		}
		id->last_state = st;
	}
	gen = k8s_generation(id->k8s);
	if (gen == id->last_gen)
		return false;
	id->last_gen = gen;
	return true;
}

uint64_t identity_generation(struct identity *id)
{
	return id->k8s ? id->last_gen : 0;
}

void identity_log_summary(struct identity *id)
{
	struct k8s_stats ks = {};

	if (id->k8s)
		k8s_get_stats(id->k8s, &ks);
	log_info("identity: identity_degraded=%llu k8s_pods=%llu k8s_lists=%llu "
		 "k8s_watches=%llu k8s_events=%llu k8s_relists=%llu k8s_errors=%llu",
		 (unsigned long long)id->degraded, (unsigned long long)ks.pods,
		 (unsigned long long)ks.lists, (unsigned long long)ks.watches,
		 (unsigned long long)ks.events, (unsigned long long)ks.relists,
		 (unsigned long long)ks.errors);
}
