/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The Kafka output's disk spool: every event bound for Kafka is appended
 * here first, and leaves only when the broker has acknowledged it.
 *
 * A directory of segment files named by their first seq
 * (00000000000000001234.seg), each a run of records:
 *
 *    0       4       8              16      20      24
 *   +-------+-------+--------------+-------+-------+----------------+
 *   | magic |  len  |     seq      |  crc  |  pad  | len bytes ...  |
 *   +-------+-------+--------------+-------+-------+----------------+
 *   little-endian; crc = crc32 of seq (8 bytes) then the payload
 *
 * plus a record file `cursor` (statefile.h) with the highest acknowledged
 * seq. Records go in seq order (gaps allowed: events the spool had no room
 * for). A reader walks them to feed the producer; acknowledgements move the
 * cursor, and a segment whose records are all acknowledged is deleted, so
 * with a healthy broker the spool holds little more than what is in flight.
 * At open, a torn last record (the agent or the host died mid-write) is cut
 * off and counted.
 *
 * Appends are buffered in memory (the reader reads them from there) and
 * written out by spool_sync; the byte bound covers both.
 */
#ifndef DBW_SPOOL_H
#define DBW_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPOOL_REC_MAX (16u << 20)

struct spool;

/*
 * Open (creating) the spool in dir, bounded to max_bytes on disk. Records
 * not yet acknowledged from an earlier run are there to be read again.
 * Returns NULL with a one-line reason in err.
 */
struct spool *spool_open(const char *dir, uint64_t max_bytes, char *err, size_t errlen);

/* Write out, store the cursor, fdatasync, free. */
void spool_close(struct spool *sp);

/*
 * Append one record (seq greater than every earlier one). Returns 0,
 * -ENOSPC when it would take the spool over its bound (nothing is written),
 * -EINVAL for a bad seq or size, or another -errno (segment not creatable).
 */
int spool_append(struct spool *sp, uint64_t seq, const void *data, uint32_t len);

/*
 * The next unread, unacknowledged record: 1 with *seq, *data, *len (valid
 * until the next call on sp), 0 when there is none, -errno on a read error.
 * Does not move past it: spool_consume does.
 */
int spool_peek(struct spool *sp, uint64_t *seq, const void **data, uint32_t *len);
void spool_consume(struct spool *sp);

/*
 * The last appended record was sent from memory: mark it read. Only when it
 * is the only unread record (spool_unread() == 1).
 */
void spool_skip_last(struct spool *sp);

/* Records up to seq are delivered: move the cursor, delete finished segments. */
void spool_ack(struct spool *sp, uint64_t seq);

/* Read again from the first unacknowledged record (deliveries failed). */
void spool_rewind(struct spool *sp);

/* Write buffered records out and store the cursor if it moved; sync: fdatasync. */
int spool_sync(struct spool *sp, bool sync);

struct spool_stats {
	uint64_t bytes; /* on disk and buffered, against max_bytes */
	uint64_t max_bytes;
	uint64_t pending; /* records not yet acknowledged */
	uint64_t unread; /* of those, records the reader has not reached */
	uint64_t acked; /* the cursor: highest acknowledged seq */
	uint64_t last_seq; /* of the last record held */
	uint64_t segments;
	uint64_t torn; /* records cut off at open (torn tail) */
	uint64_t write_errors;
};
void spool_stats(const struct spool *sp, struct spool_stats *st);

/* Would a record of len bytes fit now? */
bool spool_has_room(const struct spool *sp, uint32_t len);

static inline uint64_t spool_unread(const struct spool *sp)
{
	struct spool_stats st;

	spool_stats(sp, &st);
	return st.unread;
}

#endif /* DBW_SPOOL_H */
