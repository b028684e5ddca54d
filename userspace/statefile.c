// SPDX-License-Identifier: GPL-2.0-only
/* The state directory's lock and its torn-write-proof records. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <zlib.h>

#include "statefile.h"

#define SLOT 256

struct statefile {
	int fd;
	uint64_t gen;
};

int state_mkdirs(const char *dir)
{
	char path[PATH_MAX];
	size_t n = snprintf(path, sizeof(path), "%s", dir);

	if (!n || n >= sizeof(path))
		return -ENAMETOOLONG;
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(path, 0700) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(path, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

int state_dir_lock(const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX], pid[32];
	int fd, e = state_mkdirs(dir);
	ssize_t n;

	if (e) {
		snprintf(err, errlen, "cannot create state directory %s: %s", dir, strerror(-e));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/lock", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		/* the holder wrote its pid: name it, two agents on one state would fork the chain */
		n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = 0;
		pid[strcspn(pid, "\n")] = 0;
		snprintf(err, errlen, "state directory %s is in use by another dbwarden (pid %s)",
			 dir, pid[0] ? pid : "?");
		close(fd);
		return -1;
	}
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	/* the pid is only for that message: failing to write it changes nothing */
	if (!ftruncate(fd, 0))
		n = pwrite(fd, pid, n, 0);
	return fd;
}

struct statefile *statefile_open(const char *path, char *err, size_t errlen)
{
	struct statefile *sf = calloc(1, sizeof(*sf));
	char text[SLOT];

	if (!sf) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	sf->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (sf->fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		free(sf);
		return NULL;
	}
	statefile_load(sf, text, sizeof(text)); /* sets gen */
	return sf;
}

void statefile_close(struct statefile *sf)
{
	if (!sf)
		return;
	close(sf->fd);
	free(sf);
}

/* The text of one slot if it is whole (crc matches); its gen in *gen. */
static int slot_parse(char *slot, uint64_t *gen, char **text)
{
	char *nl = memchr(slot, '\n', SLOT), *crc;
	unsigned long want;

	if (!nl)
		return -1;
	*nl = 0;
	crc = strstr(slot, " crc=");
	if (!crc || sscanf(crc + 5, "%lx", &want) != 1 ||
	    crc32(0, (const Bytef *)slot, crc - slot) != want)
		return -1;
	*crc = 0;
	if (sscanf(slot, "gen=%" SCNu64, gen) != 1)
		return -1;
	*text = strchr(slot, ' ');
	*text = *text ? *text + 1 : crc;
	return 0;
}

int statefile_load(struct statefile *sf, char *text, size_t len)
{
	char slots[2][SLOT + 1];
	char *best = NULL, *t;
	uint64_t g, bestgen = 0;

	for (int i = 0; i < 2; i++) {
		ssize_t n = pread(sf->fd, slots[i], SLOT, (off_t)i * SLOT);

		if (n != SLOT)
			continue;
		slots[i][SLOT] = 0;
		if (!slot_parse(slots[i], &g, &t) && (!best || g > bestgen)) {
			best = t;
			bestgen = g;
		}
	}
	if (!best)
		return -1;
	sf->gen = bestgen;
	snprintf(text, len, "%s", best);
	return 0;
}

int statefile_store(struct statefile *sf, const char *text, bool sync)
{
	char slot[SLOT] = { 0 };
	uint64_t gen = sf->gen + 1;
	int n;

	if (strlen(text) > STATEFILE_TEXT_MAX || strchr(text, '\n'))
		return -EINVAL;
	n = snprintf(slot, sizeof(slot), "gen=%" PRIu64 " %s", gen, text);
	n += snprintf(slot + n, sizeof(slot) - n, " crc=%08lx\n", crc32(0, (const Bytef *)slot, n));
	if (pwrite(sf->fd, slot, SLOT, (off_t)(gen & 1) * SLOT) != SLOT)
		return errno ? -errno : -EIO;
	if (sync && fdatasync(sf->fd))
		return -errno;
	sf->gen = gen;
	return 0;
}

/* Where " key=" (or "key=" at the start) begins in text, past the '='. */
static const char *kv_find(const char *text, const char *key)
{
	size_t kl = strlen(key);

	for (const char *p = text; (p = strstr(p, key)); p += kl) {
		if ((p == text || p[-1] == ' ') && p[kl] == '=')
			return p + kl + 1;
	}
	return NULL;
}

int kv_u64(const char *text, const char *key, uint64_t *out)
{
	const char *v = kv_find(text, key);
	char *end;

	if (!v || *v < '0' || *v > '9')
		return -1;
	errno = 0;
	*out = strtoull(v, &end, 10);
	return errno || (*end && *end != ' ') ? -1 : 0;
}

int kv_str(const char *text, const char *key, char *out, size_t len)
{
	const char *v = kv_find(text, key);
	size_t n;

	if (!v)
		return -1;
	n = strcspn(v, " ");
	if (n >= len)
		return -1;
	memcpy(out, v, n);
	out[n] = 0;
	return 0;
}
