// SPDX-License-Identifier: GPL-2.0-only
/* Workload classes: every cgroup classified by the policy, for the kernel guard. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "capture.h"
#include "identity.h"
#include "k8s.h"
#include "policy.h"
#include "workload.h"

#define WL_WALK_MS   1000 /* look for new and gone cgroups this often */
#define WL_MAX_DEPTH 32 /* cgroup.max.depth is unlimited; kubelet's paths are 4 deep */
#define WL_MAX	     65535 /* the map's size, less the DBW_WORKLOAD_ANY entry */

/* cgroup id -> class, open addressing; id 0 is never a cgroup (it is ANY's key). */
struct wl_entry {
	uint64_t cgid;
	uint64_t rules;
};

struct wl_tab {
	struct wl_entry *e;
	size_t cap, n; /* cap: a power of two, or 0 */
};

struct wl_classes {
	struct identity *id;
	struct capture *cap;
	char mount[PATH_MAX];
	const struct policy *pol;
	bool per_cgroup; /* the policy has workload selectors */
	bool dirty; /* every class is to be computed anew on the next walk */
	uint64_t pods_gen;
	uint64_t last_walk_ms;
	struct wl_tab known; /* what the map holds */
	/* counters, for the exit summary */
	uint64_t walks, updates, failures, full, walk_us_max;
};

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct wl_entry *tab_slot(const struct wl_tab *t, uint64_t cgid)
{
	size_t i = (cgid * 0x9e3779b97f4a7c15ULL) >> 20;

	for (;; i++) {
		struct wl_entry *e = &t->e[i & (t->cap - 1)];

		if (e->cgid == cgid || !e->cgid)
			return e;
	}
}

static const struct wl_entry *tab_find(const struct wl_tab *t, uint64_t cgid)
{
	const struct wl_entry *e = t->cap ? tab_slot(t, cgid) : NULL;

	return e && e->cgid ? e : NULL;
}

/* Insert or update; false when memory runs out. */
static bool tab_put(struct wl_tab *t, uint64_t cgid, uint64_t rules)
{
	struct wl_entry *e;

	if ((t->n + 1) * 2 > t->cap) {
		struct wl_tab nt = { .cap = t->cap ? t->cap * 2 : 256 };

		nt.e = calloc(nt.cap, sizeof(*nt.e));
		if (!nt.e)
			return false;
		for (size_t i = 0; i < t->cap; i++)
			if (t->e[i].cgid)
				*tab_slot(&nt, t->e[i].cgid) = t->e[i];
		nt.n = t->n;
		free(t->e);
		*t = nt;
	}
	e = tab_slot(t, cgid);
	if (!e->cgid)
		t->n++;
	e->cgid = cgid;
	e->rules = rules;
	return true;
}

void workload_policy_conn(const struct workload *w, struct policy_conn *pc)
{
	const struct k8s_pod *p = w->pod;

	pc->container_id = w->cg.container_id;
	pc->in_pod = w->cg.pod_uid[0] != 0;
	pc->pod_known = p != NULL;
	pc->pod_namespace = p ? p->ns : NULL;
	pc->pod_name = p ? p->name : NULL;
	pc->service_account = p ? p->service_account : NULL;
	pc->container = w->container;
	pc->labels = p ? (const char *const *)p->labels : NULL;
	pc->nlabels = p ? p->nlabels : 0;
}

/* The class of the cgroup at path (relative to the cgroup v2 root). */
static uint64_t classify(struct wl_classes *w, const char *path)
{
	struct policy_conn pc = { .cgroup = path };
	struct workload wl;
	uint64_t rules;

	identity_workload_of(w->id, path, &wl);
	workload_policy_conn(&wl, &pc);
	rules = policy_workload_rules(w->pol, &pc);
	workload_release(&wl);
	return rules;
}

/*
 * One cgroup met on a walk: classified if new (or everything is dirty),
 * written to the map if its class changed, remembered in seen. A cgroup
 * whose class could not be written is left out of seen: the next walk
 * tries again, and meanwhile the kernel uses the ANY class (stricter).
 */
static void visit(struct wl_classes *w, struct wl_tab *seen, uint64_t cgid, const char *path)
{
	const struct wl_entry *old = tab_find(&w->known, cgid);
	uint64_t rules;

	if (seen->n >= WL_MAX) {
		w->full++;
		return;
	}
	if (old && !w->dirty) {
		rules = old->rules;
	} else {
		rules = classify(w, path);
		if (!old || old->rules != rules) {
			if (capture_workload_set(w->cap, cgid, rules)) {
				w->failures++;
				return;
			}
			w->updates++;
		}
	}
	if (!tab_put(seen, cgid, rules))
		w->failures++;
}

/* Visit every cgroup under the directory dfd (path: its cgroup path). Closes dfd. */
static void walk(struct wl_classes *w, struct wl_tab *seen, int dfd, char *path, size_t plen,
		 int depth)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;

	if (!d) {
		close(dfd);
		return;
	}
	while ((de = readdir(d))) {
		struct stat st;
		size_t n = strlen(de->d_name);
		int fd;

		if (de->d_type != DT_DIR || de->d_name[0] == '.' || plen + n + 2 >= PATH_MAX)
			continue;
		fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue; /* gone since readdir */
		if (fstat(fd, &st)) {
			close(fd);
			continue;
		}
		/* the cgroup id the kernel reports is the directory's inode number */
		snprintf(path + plen, PATH_MAX - plen, "%s%s", plen > 1 ? "/" : "", de->d_name);
		visit(w, seen, st.st_ino, path);
		if (depth < WL_MAX_DEPTH)
			walk(w, seen, fd, path, strlen(path), depth + 1);
		else
			close(fd);
		path[plen] = 0;
	}
	closedir(d);
}

/* Walk the whole hierarchy; forget the cgroups that are gone. */
static void walk_all(struct wl_classes *w)
{
	struct wl_tab seen = {};
	char path[PATH_MAX] = "/";
	uint64_t t0 = now_us(), dt;
	struct stat st;
	int fd = open(w->mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st)) {
		if (fd >= 0)
			close(fd);
		return;
	}
	visit(w, &seen, st.st_ino, path);
	walk(w, &seen, fd, path, 1, 0);
	for (size_t i = 0; i < w->known.cap; i++) {
		uint64_t cgid = w->known.e[i].cgid;

		if (cgid && !tab_find(&seen, cgid))
			capture_workload_del(w->cap, cgid);
	}
	free(w->known.e);
	w->known = seen;
	w->dirty = false;
	w->walks++;
	w->last_walk_ms = now_us() / 1000;
	dt = now_us() - t0;
	if (dt > w->walk_us_max)
		w->walk_us_max = dt;
}

/* Forget every per-cgroup class: the map keeps only the ANY class. */
static void forget_all(struct wl_classes *w)
{
	for (size_t i = 0; i < w->known.cap; i++)
		if (w->known.e[i].cgid)
			capture_workload_del(w->cap, w->known.e[i].cgid);
	free(w->known.e);
	memset(&w->known, 0, sizeof(w->known));
}

struct wl_classes *wl_classes_new(struct identity *id, struct capture *cap, const char *mount)
{
	struct wl_classes *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->id = id;
	w->cap = cap;
	snprintf(w->mount, sizeof(w->mount), "%s", mount ? mount : "");
	return w;
}

void wl_classes_free(struct wl_classes *w)
{
	if (!w)
		return;
	free(w->known.e);
	free(w);
}

void wl_classes_policy(struct wl_classes *w, const struct policy *p)
{
	w->pol = p;
	w->per_cgroup = policy_has_workload_selectors(p) && *w->mount;
	if (capture_workload_set(w->cap, DBW_WORKLOAD_ANY, policy_workload_rules(p, NULL)))
		w->failures++;
	if (!w->per_cgroup) {
		forget_all(w);
		return;
	}
	w->dirty = true;
	walk_all(w);
}

void wl_classes_tick(struct wl_classes *w)
{
	uint64_t gen;

	if (!w->pol || !w->per_cgroup)
		return;
	gen = identity_generation(w->id);
	if (gen != w->pods_gen) {
		/* pods came, went or changed labels: every class again */
		w->pods_gen = gen;
		w->dirty = true;
	}
	if (w->dirty || now_us() / 1000 - w->last_walk_ms >= WL_WALK_MS)
		walk_all(w);
}

void wl_classes_print_summary(const struct wl_classes *w, FILE *f)
{
	if (!w)
		return;
	fprintf(f,
		"dbwarden: workload classes: per_cgroup=%d cgroups=%zu walks=%llu updates=%llu "
		"failures=%llu full=%llu walk_us_max=%llu\n",
		w->per_cgroup, w->known.n, (unsigned long long)w->walks,
		(unsigned long long)w->updates, (unsigned long long)w->failures,
		(unsigned long long)w->full, (unsigned long long)w->walk_us_max);
}
