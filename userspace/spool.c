// SPDX-License-Identifier: GPL-2.0-only
/* The Kafka output's disk spool (see spool.h for the format). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "spool.h"
#include "statefile.h"

#define SPOOL_MAGIC 0x53574244u /* "DBWS" */
#define SEG_MIN	    (4u << 10)
#define SEG_MAX	    (16u << 20)
#define WBUF_MAX    (1u << 20)

struct rec_hdr {
	uint32_t magic;
	uint32_t len;
	uint64_t seq;
	uint32_t crc;
	uint32_t pad;
};
_Static_assert(sizeof(struct rec_hdr) == 24, "spool record header is 24 bytes on disk");

struct seg {
	uint64_t first_seq, last_seq;
	uint64_t size; /* bytes, including the write buffer for the last segment */
	int fd;
};

struct spool {
	char dir[PATH_MAX - 32];
	uint64_t max_bytes, seg_max, bytes;
	struct seg *segs;
	size_t nsegs, cap;
	bool writing; /* the last segment takes appends (false: start a new one) */
	/* appended but not yet written out: the tail of the last segment */
	uint8_t *wbuf;
	size_t wlen, wcap;
	/* the reader: segment index and offset in it */
	size_t rseg;
	uint64_t roff;
	uint8_t *rbuf;
	size_t rcap;
	struct rec_hdr peeked;
	bool have_peek;
	uint64_t last_seq; /* of the last record appended or found */
	uint64_t acked, stored_acked;
	uint64_t pending, unread, torn, write_errors;
	struct statefile *cursor;
};

static uint32_t rec_crc(uint64_t seq, const void *data, uint32_t len)
{
	uLong c = crc32(0, (const Bytef *)&seq, sizeof(seq));

	return crc32(c, data, len);
}

static void seg_path(const struct spool *sp, uint64_t first, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%020" PRIu64 ".seg", sp->dir, first);
}

static int seg_cmp(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;

	return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

static int segs_push(struct spool *sp, const struct seg *s)
{
	if (sp->nsegs == sp->cap) {
		size_t ncap = sp->cap ? sp->cap * 2 : 16;
		struct seg *n = realloc(sp->segs, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		sp->segs = n;
		sp->cap = ncap;
	}
	sp->segs[sp->nsegs++] = *s;
	return 0;
}

/*
 * Walk the records of a segment from an earlier run: count those past the
 * cursor, find its last seq, and cut it at the first record that is not
 * whole (torn write) or out of order. Returns 0 or -errno.
 */
static int seg_scan(struct spool *sp, struct seg *s)
{
	uint64_t off = 0, prev = 0;
	struct rec_hdr h;
	uint8_t *buf = NULL;
	size_t cap = 0;
	off_t end = lseek(s->fd, 0, SEEK_END);

	if (end < 0)
		return -errno;
	while (off + sizeof(h) <= (uint64_t)end) {
		if (pread(s->fd, &h, sizeof(h), off) != sizeof(h) || h.magic != SPOOL_MAGIC ||
		    h.len > SPOOL_REC_MAX || off + sizeof(h) + h.len > (uint64_t)end ||
		    h.seq <= prev || (off == 0 && h.seq != s->first_seq))
			break;
		if (h.len > cap) {
			uint8_t *n = realloc(buf, h.len);

			if (!n)
				break;
			buf = n;
			cap = h.len;
		}
		if (pread(s->fd, buf, h.len, off + sizeof(h)) != h.len ||
		    rec_crc(h.seq, buf, h.len) != h.crc)
			break;
		prev = h.seq;
		if (h.seq > sp->acked)
			sp->pending++;
		off += sizeof(h) + h.len;
	}
	free(buf);
	if (off < (uint64_t)end) {
		/* one torn record at most, unless the file was damaged: count what is cut */
		sp->torn++;
		if (ftruncate(s->fd, off))
			return -errno;
	}
	s->size = off;
	s->last_seq = prev;
	return 0;
}

static void seg_delete(struct spool *sp, size_t i)
{
	char path[PATH_MAX];

	seg_path(sp, sp->segs[i].first_seq, path, sizeof(path));
	close(sp->segs[i].fd);
	unlink(path);
	sp->bytes -= sp->segs[i].size;
	if (i == sp->nsegs - 1) {
		sp->writing = false;
		sp->wlen = 0;
	}
	memmove(sp->segs + i, sp->segs + i + 1, (sp->nsegs - i - 1) * sizeof(*sp->segs));
	sp->nsegs--;
	if (sp->rseg > i) {
		sp->rseg--;
	} else if (sp->rseg == i) {
		sp->roff = 0;
		sp->have_peek = false;
	}
}

/* Delete leading segments whose every record is acknowledged. */
static void segs_trim(struct spool *sp)
{
	while (sp->nsegs && sp->segs[0].last_seq <= sp->acked)
		seg_delete(sp, 0);
}

static int spool_load(struct spool *sp)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(sp->dir);
	int e = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		struct seg s = { .fd = -1 };
		char *end;

		if (!strstr(de->d_name, ".seg") || strlen(de->d_name) != 24)
			continue;
		s.first_seq = strtoull(de->d_name, &end, 10);
		if (strcmp(end, ".seg"))
			continue;
		seg_path(sp, s.first_seq, path, sizeof(path));
		s.fd = open(path, O_RDWR | O_CLOEXEC);
		if (s.fd < 0 || segs_push(sp, &s)) {
			e = s.fd < 0 ? -errno : -ENOMEM;
			if (s.fd >= 0)
				close(s.fd);
			break;
		}
	}
	closedir(d);
	if (e)
		return e;
	if (sp->nsegs) /* an empty spool has no array: qsort wants one */
		qsort(sp->segs, sp->nsegs, sizeof(*sp->segs), seg_cmp);
	for (size_t i = 0; i < sp->nsegs; i++) {
		e = seg_scan(sp, &sp->segs[i]);
		if (e)
			return e;
		sp->bytes += sp->segs[i].size;
		if (sp->segs[i].last_seq > sp->last_seq)
			sp->last_seq = sp->segs[i].last_seq;
	}
	/* empty segments (cut to nothing) go too: last_seq 0 <= acked */
	segs_trim(sp);
	for (size_t i = 0; i < sp->nsegs;) {
		if (!sp->segs[i].size)
			seg_delete(sp, i);
		else
			i++;
	}
	sp->unread = sp->pending;
	return 0;
}

struct spool *spool_open(const char *dir, uint64_t max_bytes, char *err, size_t errlen)
{
	struct spool *sp = calloc(1, sizeof(*sp));
	char path[PATH_MAX], text[STATEFILE_TEXT_MAX + 1];
	int e;

	if (!sp) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(sp->dir, sizeof(sp->dir), "%s", dir);
	sp->max_bytes = max_bytes;
	/* eight segments to a full spool: acknowledged space comes back in eighths */
	sp->seg_max = max_bytes / 8 < SEG_MIN ? SEG_MIN :
		      max_bytes / 8 > SEG_MAX ? SEG_MAX :
						max_bytes / 8;
	e = state_mkdirs(dir);
	if (e) {
		snprintf(err, errlen, "cannot create spool directory %s: %s", dir, strerror(-e));
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/cursor", dir);
	sp->cursor = statefile_open(path, err, errlen);
	if (!sp->cursor)
		goto fail;
	if (!statefile_load(sp->cursor, text, sizeof(text)))
		kv_u64(text, "acked", &sp->acked);
	sp->stored_acked = sp->acked;
	e = spool_load(sp);
	if (e) {
		snprintf(err, errlen, "cannot read spool %s: %s", dir, strerror(-e));
		goto fail;
	}
	return sp;
fail:
	spool_close(sp);
	return NULL;
}

/* Write the buffered tail of the last segment out. */
static int wbuf_flush(struct spool *sp)
{
	struct seg *s;
	size_t done = 0;

	if (!sp->wlen)
		return 0;
	s = &sp->segs[sp->nsegs - 1];
	while (done < sp->wlen) {
		ssize_t n =
			pwrite(s->fd, sp->wbuf + done, sp->wlen - done, s->size - sp->wlen + done);

		if (n < 0) {
			/* kept in memory (the bound counts it): tried again at the next sync */
			sp->write_errors++;
			memmove(sp->wbuf, sp->wbuf + done, sp->wlen - done);
			sp->wlen -= done;
			return -errno;
		}
		done += n;
	}
	sp->wlen = 0;
	return 0;
}

int spool_sync(struct spool *sp, bool sync)
{
	char text[64];
	int e = wbuf_flush(sp);

	if (!e && sync && sp->writing && fdatasync(sp->segs[sp->nsegs - 1].fd))
		e = -errno;
	if (sp->cursor && (sp->acked != sp->stored_acked || sync)) {
		snprintf(text, sizeof(text), "acked=%" PRIu64, sp->acked);
		if (!statefile_store(sp->cursor, text, sync))
			sp->stored_acked = sp->acked;
	}
	return e;
}

void spool_close(struct spool *sp)
{
	if (!sp)
		return;
	spool_sync(sp, true);
	for (size_t i = 0; i < sp->nsegs; i++)
		close(sp->segs[i].fd);
	statefile_close(sp->cursor);
	free(sp->segs);
	free(sp->wbuf);
	free(sp->rbuf);
	free(sp);
}

bool spool_has_room(const struct spool *sp, uint32_t len)
{
	return sp->bytes + sizeof(struct rec_hdr) + len <= sp->max_bytes;
}

/* Start a new segment whose first record will be seq. */
static int seg_new(struct spool *sp, uint64_t seq)
{
	char path[PATH_MAX];
	struct seg s = { .first_seq = seq };
	int e = wbuf_flush(sp);

	if (e)
		return e;
	seg_path(sp, seq, path, sizeof(path));
	s.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (s.fd < 0)
		return -errno;
	if (segs_push(sp, &s)) {
		close(s.fd);
		unlink(path);
		return -ENOMEM;
	}
	sp->writing = true;
	return 0;
}

int spool_append(struct spool *sp, uint64_t seq, const void *data, uint32_t len)
{
	struct rec_hdr h = { .magic = SPOOL_MAGIC, .len = len, .seq = seq };
	size_t need = sizeof(h) + len;
	struct seg *s;
	int e;

	if (seq <= sp->last_seq || len > SPOOL_REC_MAX)
		return -EINVAL;
	if (!spool_has_room(sp, len))
		return -ENOSPC;
	if (!sp->writing ||
	    (sp->segs[sp->nsegs - 1].size && sp->segs[sp->nsegs - 1].size + need > sp->seg_max)) {
		e = seg_new(sp, seq);
		if (e)
			return e;
	}
	if (sp->wlen + need > sp->wcap) {
		size_t ncap = sp->wcap ? sp->wcap : 64 << 10;
		uint8_t *n;

		while (ncap < sp->wlen + need)
			ncap *= 2;
		n = realloc(sp->wbuf, ncap);
		if (!n)
			return -ENOMEM;
		sp->wbuf = n;
		sp->wcap = ncap;
	}
	h.crc = rec_crc(seq, data, len);
	memcpy(sp->wbuf + sp->wlen, &h, sizeof(h));
	memcpy(sp->wbuf + sp->wlen + sizeof(h), data, len);
	sp->wlen += need;
	s = &sp->segs[sp->nsegs - 1];
	s->size += need;
	s->last_seq = seq;
	sp->bytes += need;
	sp->last_seq = seq;
	sp->pending++;
	sp->unread++;
	if (sp->wlen >= WBUF_MAX)
		wbuf_flush(sp);
	return 0;
}

/* Read len bytes at off of segment i, from the file or from the write buffer. */
static int seg_read(struct spool *sp, size_t i, uint64_t off, void *out, size_t len)
{
	const struct seg *s = &sp->segs[i];
	uint64_t ondisk = s->size - (i == sp->nsegs - 1 && sp->writing ? sp->wlen : 0);

	if (off >= ondisk) {
		/* records are buffered whole: one never straddles disk and memory */
		memcpy(out, sp->wbuf + (off - ondisk), len);
		return 0;
	}
	return pread(s->fd, out, len, off) == (ssize_t)len ? 0 : -EIO;
}

int spool_peek(struct spool *sp, uint64_t *seq, const void **data, uint32_t *len)
{
	struct rec_hdr *h = &sp->peeked;

	for (;;) {
		if (sp->rseg >= sp->nsegs)
			return 0;
		if (sp->roff >= sp->segs[sp->rseg].size) {
			if (sp->rseg + 1 >= sp->nsegs)
				return 0;
			sp->rseg++;
			sp->roff = 0;
			continue;
		}
		if (seg_read(sp, sp->rseg, sp->roff, h, sizeof(*h)) || h->magic != SPOOL_MAGIC)
			return -EIO;
		if (h->seq > sp->acked)
			break;
		/* delivered already (a rewind, or the cursor of an earlier run) */
		sp->roff += sizeof(*h) + h->len;
	}
	if (h->len > sp->rcap) {
		uint8_t *n = realloc(sp->rbuf, h->len);

		if (!n)
			return -ENOMEM;
		sp->rbuf = n;
		sp->rcap = h->len;
	}
	if (seg_read(sp, sp->rseg, sp->roff + sizeof(*h), sp->rbuf, h->len))
		return -EIO;
	sp->have_peek = true;
	*seq = h->seq;
	*data = sp->rbuf;
	*len = h->len;
	return 1;
}

void spool_consume(struct spool *sp)
{
	if (!sp->have_peek)
		return;
	sp->roff += sizeof(sp->peeked) + sp->peeked.len;
	sp->have_peek = false;
	if (sp->unread)
		sp->unread--;
}

void spool_skip_last(struct spool *sp)
{
	if (sp->unread != 1 || !sp->nsegs)
		return;
	sp->rseg = sp->nsegs - 1;
	sp->roff = sp->segs[sp->rseg].size;
	sp->have_peek = false;
	sp->unread = 0;
}

void spool_ack(struct spool *sp, uint64_t seq)
{
	if (seq <= sp->acked)
		return;
	sp->acked = seq;
	if (sp->pending)
		sp->pending--;
	segs_trim(sp);
}

void spool_rewind(struct spool *sp)
{
	sp->rseg = 0;
	sp->roff = 0;
	sp->have_peek = false;
	sp->unread = sp->pending;
}

void spool_stats(const struct spool *sp, struct spool_stats *st)
{
	st->bytes = sp->bytes;
	st->max_bytes = sp->max_bytes;
	st->pending = sp->pending;
	st->unread = sp->unread;
	st->acked = sp->acked;
	st->last_seq = sp->last_seq;
	st->segments = sp->nsegs;
	st->torn = sp->torn;
	st->write_errors = sp->write_errors;
}
