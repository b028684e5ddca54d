// SPDX-License-Identifier: GPL-2.0-only
/* Actor enrichment with small direct-mapped caches. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "identity.h"

#define ID_CACHE 1024 /* entries per cache; direct-mapped, a collision replaces */

struct user_slot {
	uint32_t uid;
	int valid;
	char name[64];
};

struct cg_slot {
	uint64_t id;
	char path[PATH_MAX];
};

struct identity {
	char mount[PATH_MAX];
	size_t mount_len;
	int mount_fd;
	struct user_slot users[ID_CACHE];
	struct cg_slot cgroups[ID_CACHE];
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
	if (id->mount_fd >= 0)
		close(id->mount_fd);
	free(id);
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

const char *identity_cgroup(struct identity *id, uint64_t cgid)
{
	struct cg_slot *s = &id->cgroups[cgid % ID_CACHE];

	if (s->id == cgid && s->path[0])
		return s->path;
	s->id = cgid;
	if (cgroup_resolve(id, cgid, s->path, sizeof(s->path)))
		s->path[0] = 0; /* gone already, or not a v2 cgroup: retried next time */
	return s->path;
}

void identity_exe(uint32_t pid, char *buf, size_t len)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/%u/exe", pid);
	n = readlink(link, buf, len - 1);
	buf[n > 0 ? n : 0] = 0;
}
