/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the agent keeps across restarts, under its state directory
 * (--state-dir, default /var/lib/dbwarden): a lock that one agent holds,
 * and small records ("key=value key=value") that must never be half
 * written.
 *
 * A record file has two 256-byte slots written in turn, each
 *
 *   gen=<n> <text> crc=<crc32 of everything before " crc=">\n  (NUL padded)
 *
 * A write that tears (power loss, a full disk) spoils one slot; the other
 * still holds the previous record, and the reader takes the valid slot with
 * the higher gen. One pwrite per store, an fdatasync only when asked: cheap
 * enough to store after every batch of events.
 */
#ifndef DBW_STATEFILE_H
#define DBW_STATEFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATEFILE_TEXT_MAX 200

/*
 * Create dir (and its parents, 0700) if missing and take its lock (the file
 * dir/lock, flock). Returns the lock's fd (keep it open while running), or -1
 * with a one-line reason in err: not creatable, or held by another agent.
 */
int state_dir_lock(const char *dir, char *err, size_t errlen);

/* mkdir -p with mode 0700. Returns 0 or -errno. */
int state_mkdirs(const char *dir);

struct statefile;

/* Open (creating) the record file at path. NULL with a reason in err. */
struct statefile *statefile_open(const char *path, char *err, size_t errlen);
void statefile_close(struct statefile *sf);

/* The newest valid record's text. Returns 0, or -1 if no slot is valid. */
int statefile_load(struct statefile *sf, char *text, size_t len);

/* Store text (at most STATEFILE_TEXT_MAX bytes, no '\n'); sync: fdatasync. 0 or -errno. */
int statefile_store(struct statefile *sf, const char *text, bool sync);

/* key=<u64> / key=<word> out of a record's text. 0, or -1 if absent or malformed. */
int kv_u64(const char *text, const char *key, uint64_t *out);
int kv_str(const char *text, const char *key, char *out, size_t len);

#endif /* DBW_STATEFILE_H */
