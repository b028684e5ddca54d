// SPDX-License-Identifier: GPL-2.0-only
/*
 * Workload classes: every cgroup classified by the policy, for the kernel
 * guard. One walk of the cgroup tree when a policy with workload selectors
 * comes into force; after that inotify says which cgroups come and go
 * (mkdir and rmdir on cgroupfs go through the VFS, which reports them to
 * the parent directory's watch; the directory's own DELETE_SELF never
 * comes). A walk of a node's 2,000 cgroups costs about 80 ms of syscalls
 * (kernfs lists every interface file of every directory): too much to
 * repeat every second on the daemon's thread. Without inotify (no watch
 * left, or the queue overflowed) the walk comes back, once a second.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "capture.h"
#include "identity.h"
#include "k8s.h"
#include "policy.h"
#include "workload.h"
#include "log.h"

#define WL_WALK_MS   1000 /* without inotify: look for new and gone cgroups this often */
#define WL_PODS_MS   250 /* reclassify pods at most this often while their metadata churns */
#define WL_MAX_DEPTH 32 /* cgroup.max.depth is unlimited; kubelet's paths are 4 deep */
#define WL_MAX	     65535 /* the map's size, less the DBW_WORKLOAD_ANY entry */
#define WL_WATCH     (IN_CREATE | IN_DELETE | IN_ONLYDIR | IN_DONT_FOLLOW)

/* One cgroup the map knows. */
struct wl_cg {
	uint64_t cgid;
	uint64_t rules;
	uint32_t mask_rules;
	uint64_t epoch; /* the last walk that saw it */
	int wd; /* its inotify watch, or -1 */
	bool in_pod; /* its class depends on pod metadata */
	char path[]; /* relative to the cgroup v2 root */
};

/* u64 -> pointer, open addressing with backward-shift deletion; key 0 is never used. */
struct u64map {
	uint64_t *k;
	void **v;
	size_t cap, n; /* cap: a power of two, or 0 */
};

struct wl_classes {
	struct identity *id;
	struct capture *cap;
	char mount[PATH_MAX];
	const struct policy *pol;
	bool per_cgroup; /* the policy has workload selectors */
	struct u64map by_cgid, by_wd, by_path; /* the same wl_cg, three ways */
	int ino; /* inotify fd, -1 when none */
	bool polling; /* no inotify (or no watch left): walk every WL_WALK_MS */
	bool rescan; /* events were lost (queue overflow): walk once */
	bool pods_dirty; /* pod metadata changed since the last classification */
	uint64_t pods_gen, epoch, last_walk_ms, last_pods_ms;
	/* counters, for the exit summary */
	uint64_t walks, events, updates, failures, full, walk_us_max, walk_us_total;
};

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- the maps ------------------------------------------------------------------------ */

static size_t home(const struct u64map *m, uint64_t key)
{
	return (key * 0x9e3779b97f4a7c15ULL >> 20) & (m->cap - 1);
}

static size_t find(const struct u64map *m, uint64_t key)
{
	size_t i = home(m, key);

	while (m->k[i] && m->k[i] != key)
		i = (i + 1) & (m->cap - 1);
	return i;
}

static void *map_get(const struct u64map *m, uint64_t key)
{
	size_t i = m->cap ? find(m, key) : 0;

	return m->cap && m->k[i] ? m->v[i] : NULL;
}

static bool map_put(struct u64map *m, uint64_t key, void *v)
{
	size_t i;

	if ((m->n + 1) * 2 > m->cap) {
		struct u64map nm = { .cap = m->cap ? m->cap * 2 : 256 };

		nm.k = calloc(nm.cap, sizeof(*nm.k));
		nm.v = calloc(nm.cap, sizeof(*nm.v));
		if (!nm.k || !nm.v) {
			free(nm.k);
			free(nm.v);
			return false;
		}
		for (size_t j = 0; j < m->cap; j++)
			if (m->k[j]) {
				size_t s = find(&nm, m->k[j]);

				nm.k[s] = m->k[j];
				nm.v[s] = m->v[j];
			}
		nm.n = m->n;
		free(m->k);
		free(m->v);
		*m = nm;
	}
	i = find(m, key);
	if (!m->k[i])
		m->n++;
	m->k[i] = key;
	m->v[i] = v;
	return true;
}

static void map_del(struct u64map *m, uint64_t key)
{
	size_t i = m->cap ? find(m, key) : 0, j;

	if (!m->cap || !m->k[i])
		return;
	m->k[i] = 0;
	m->n--;
	/* pull back every entry of the run that the hole now separates from its home */
	for (j = (i + 1) & (m->cap - 1); m->k[j]; j = (j + 1) & (m->cap - 1)) {
		size_t h = home(m, m->k[j]);

		if (i <= j ? (h <= i || h > j) : (h <= i && h > j)) {
			m->k[i] = m->k[j];
			m->v[i] = m->v[j];
			m->k[j] = 0;
			i = j;
		}
	}
}

static void map_free(struct u64map *m)
{
	free(m->k);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

/* Paths are found by their FNV-1a hash (never 0: the low bit is set). */
static uint64_t path_key(const char *path)
{
	return dbw_name_hash(path, strlen(path)) | 1;
}

/* ---- classes ----------------------------------------------------------------------- */

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

/* Compute cg's class and write it to the kernel when it changed (or is new). */
static void classify(struct wl_classes *w, struct wl_cg *cg, bool is_new)
{
	struct policy_conn pc = { .cgroup = cg->path };
	struct workload wl;
	uint64_t rules;
	uint32_t mask;

	identity_workload_of(w->id, cg->path, &wl);
	workload_policy_conn(&wl, &pc);
	rules = policy_workload_rules(w->pol, &pc);
	mask = policy_mask_workload_rules(w->pol, &pc);
	cg->in_pod = pc.in_pod;
	workload_release(&wl);
	if (!is_new && rules == cg->rules && mask == cg->mask_rules)
		return;
	if (capture_workload_set(w->cap, cg->cgid, rules, mask)) {
		/* the kernel keeps using the ANY class for it (stricter); next time again */
		w->failures++;
		cg->rules = ~rules;
		return;
	}
	cg->rules = rules;
	cg->mask_rules = mask;
	w->updates++;
}

static void forget(struct wl_classes *w, struct wl_cg *cg)
{
	capture_workload_del(w->cap, cg->cgid);
	map_del(&w->by_cgid, cg->cgid);
	map_del(&w->by_path, path_key(cg->path));
	if (cg->wd >= 0) {
		map_del(&w->by_wd, (uint64_t)cg->wd + 1);
		inotify_rm_watch(w->ino, cg->wd); /* may be gone with the directory already */
	}
	free(cg);
}

/*
 * A cgroup met on a walk or announced by inotify: watched first (so that
 * no child made meanwhile is missed: it is either in the listing that
 * follows or in an event), classified if new.
 */
static void found(struct wl_classes *w, uint64_t cgid, const char *path)
{
	struct wl_cg *cg = map_get(&w->by_cgid, cgid);
	size_t n = strlen(path);

	if (cg) {
		cg->epoch = w->epoch;
		return;
	}
	if (w->by_cgid.n >= WL_MAX) {
		w->full++;
		return;
	}
	cg = calloc(1, sizeof(*cg) + n + 1);
	if (!cg) {
		w->failures++;
		return;
	}
	cg->cgid = cgid;
	cg->epoch = w->epoch;
	memcpy(cg->path, path, n + 1);
	cg->wd = -1;
	if (w->ino >= 0 && !w->polling) {
		char abs[PATH_MAX];

		snprintf(abs, sizeof(abs), "%s%s", w->mount, n > 1 ? path : "");
		cg->wd = inotify_add_watch(w->ino, abs, WL_WATCH);
		if (cg->wd < 0 && errno != ENOENT)
			w->polling = true; /* out of watches: walks it is */
	}
	if (!map_put(&w->by_cgid, cgid, cg) || !map_put(&w->by_path, path_key(path), cg) ||
	    (cg->wd >= 0 && !map_put(&w->by_wd, (uint64_t)cg->wd + 1, cg))) {
		w->failures++;
		forget(w, cg);
		return;
	}
	classify(w, cg, true);
}

/* Every cgroup under the directory dfd (path: its cgroup path). Closes dfd. */
static void walk(struct wl_classes *w, int dfd, char *path, size_t plen, int depth)
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
		found(w, st.st_ino, path);
		if (depth < WL_MAX_DEPTH)
			walk(w, fd, path, strlen(path), depth + 1);
		else
			close(fd);
		path[plen] = 0;
	}
	closedir(d);
}

/* Walk the subtree at path (relative to the mount), itself included. */
static void walk_from(struct wl_classes *w, const char *rel)
{
	char path[PATH_MAX], abs[PATH_MAX];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s", rel);
	snprintf(abs, sizeof(abs), "%s%s", w->mount, strcmp(rel, "/") ? rel : "");
	fd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fstat(fd, &st)) {
		close(fd);
		return;
	}
	found(w, st.st_ino, path);
	walk(w, fd, path, strlen(path), 0);
}

/* The whole hierarchy; what a walk no longer sees is gone. */
static void walk_all(struct wl_classes *w)
{
	uint64_t t0 = now_us(), dt;

	w->epoch++;
	walk_from(w, "/");
	for (size_t i = 0; i < w->by_cgid.cap; i++) {
		struct wl_cg *cg = w->by_cgid.k[i] ? w->by_cgid.v[i] : NULL;

		if (cg && cg->epoch != w->epoch) {
			forget(w, cg);
			i--; /* the backward shift may have moved another entry here */
		}
	}
	w->walks++;
	w->last_walk_ms = now_us() / 1000;
	dt = now_us() - t0;
	w->walk_us_total += dt;
	if (dt > w->walk_us_max)
		w->walk_us_max = dt;
}

/* Every class again (a new policy), or only those that depend on pods. */
static void reclassify(struct wl_classes *w, bool pods_only)
{
	for (size_t i = 0; i < w->by_cgid.cap; i++) {
		struct wl_cg *cg = w->by_cgid.k[i] ? w->by_cgid.v[i] : NULL;

		if (cg && (!pods_only || cg->in_pod))
			classify(w, cg, false);
	}
}

static void forget_all(struct wl_classes *w)
{
	for (size_t i = 0; i < w->by_cgid.cap; i++)
		if (w->by_cgid.k[i]) {
			forget(w, w->by_cgid.v[i]);
			i--;
		}
	if (w->ino >= 0)
		close(w->ino);
	w->ino = -1;
	map_free(&w->by_cgid);
	map_free(&w->by_wd);
	map_free(&w->by_path);
}

/* What inotify has to say: cgroups made (walked: children may already exist) and removed. */
static void read_events(struct wl_classes *w)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	while ((n = read(w->ino, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)p;
			struct wl_cg *parent = map_get(&w->by_wd, (uint64_t)e->wd + 1), *cg;
			char path[PATH_MAX];

			p += sizeof(*e) + e->len;
			w->events++;
			if (e->mask & IN_Q_OVERFLOW) {
				w->rescan = true; /* events were lost: one walk puts it right */
				continue;
			}
			if (!parent || !e->len || !(e->mask & IN_ISDIR))
				continue;
			snprintf(path, sizeof(path), "%s/%s",
				 strcmp(parent->path, "/") ? parent->path : "", e->name);
			if (e->mask & IN_CREATE) {
				w->epoch++;
				walk_from(w, path);
			} else if (e->mask & IN_DELETE) {
				cg = map_get(&w->by_path, path_key(path));
				if (cg && !strcmp(cg->path, path))
					forget(w, cg);
			}
		}
	}
}

struct wl_classes *wl_classes_new(struct identity *id, struct capture *cap, const char *mount)
{
	struct wl_classes *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->id = id;
	w->cap = cap;
	w->ino = -1;
	snprintf(w->mount, sizeof(w->mount), "%s", mount ? mount : "");
	return w;
}

void wl_classes_free(struct wl_classes *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->by_cgid.cap; i++)
		if (w->by_cgid.k[i])
			free(w->by_cgid.v[i]);
	map_free(&w->by_cgid);
	map_free(&w->by_wd);
	map_free(&w->by_path);
	if (w->ino >= 0)
		close(w->ino);
	free(w);
}

void wl_classes_policy(struct wl_classes *w, const struct policy *p)
{
	w->pol = p;
	w->per_cgroup = policy_has_workload_selectors(p) && *w->mount;
	if (capture_workload_set(w->cap, DBW_WORKLOAD_ANY, policy_workload_rules(p, NULL),
				 policy_mask_workload_rules(p, NULL)))
		w->failures++;
	if (!w->per_cgroup) {
		forget_all(w);
		return;
	}
	if (w->by_cgid.n) {
		/* the cgroups are known: only their classes change */
		reclassify(w, false);
		return;
	}
	w->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	w->polling = w->ino < 0;
	walk_all(w);
}

void wl_classes_tick(struct wl_classes *w)
{
	uint64_t gen, now;

	if (!w->pol || !w->per_cgroup)
		return;
	if (w->ino >= 0)
		read_events(w);
	now = now_us() / 1000;
	gen = identity_generation(w->id);
	if (gen != w->pods_gen) {
		w->pods_gen = gen;
		w->pods_dirty = true;
	}
	if (w->pods_dirty && now - w->last_pods_ms >= WL_PODS_MS) {
		/* pods came, went or changed: the classes of pods' cgroups again */
		w->pods_dirty = false;
		w->last_pods_ms = now;
		reclassify(w, true);
	}
	if (w->rescan || (w->polling && now - w->last_walk_ms >= WL_WALK_MS)) {
		w->rescan = false;
		walk_all(w);
	}
}

void wl_classes_log_summary(const struct wl_classes *w)
{
	if (!w)
		return;
	log_info("workload classes: per_cgroup=%d cgroups=%zu inotify=%d walks=%llu "
		 "events=%llu updates=%llu failures=%llu full=%llu walk_us_max=%llu "
		 "walk_us_avg=%llu",
		 w->per_cgroup, w->by_cgid.n, w->ino >= 0 && !w->polling,
		 (unsigned long long)w->walks, (unsigned long long)w->events,
		 (unsigned long long)w->updates, (unsigned long long)w->failures,
		 (unsigned long long)w->full, (unsigned long long)w->walk_us_max,
		 (unsigned long long)(w->walks ? w->walk_us_total / w->walks : 0));
}
