// SPDX-License-Identifier: GPL-2.0-only
/*
 * The Kafka spool and the state records, on a real temporary directory:
 * order, acknowledgement and segment deletion, rewind, the exact byte bound,
 * reopen after a clean stop, a torn or corrupt tail, and the two-slot
 * records that must survive a torn write.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "spool.h"
#include "statefile.h"

#define HDR 24 /* a record's header on disk (spool.h) */

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/dbw-spool-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static int count_segments(void)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += strstr(de->d_name, ".seg") != NULL;
	closedir(d);
	return n;
}

/* The payload of record seq: "event <seq>" padded with 'x' to len bytes. */
static const char *payload(uint64_t seq, uint32_t len)
{
	static char buf[4096];
	int n = snprintf(buf, sizeof(buf), "event %llu", (unsigned long long)seq);

	memset(buf + n, 'x', len > (uint32_t)n ? len - n : 0);
	return buf;
}

static struct spool *open_spool(uint64_t max)
{
	char err[256];
	struct spool *sp = spool_open(dir, max, err, sizeof(err));

	if (!sp)
		fail_msg("spool_open: %s", err);
	return sp;
}

static void append(struct spool *sp, uint64_t seq, uint32_t len)
{
	assert_int_equal(spool_append(sp, seq, payload(seq, len), len), 0);
}

/* The next record must be seq with its exact payload; consume it. */
static void expect_next(struct spool *sp, uint64_t seq, uint32_t len)
{
	const void *data;
	uint64_t s;
	uint32_t n;

	assert_int_equal(spool_peek(sp, &s, &data, &n), 1);
	assert_int_equal(s, seq);
	assert_int_equal(n, len);
	assert_memory_equal(data, payload(seq, len), len);
	spool_consume(sp);
}

static void expect_end(struct spool *sp)
{
	const void *data;
	uint64_t s;
	uint32_t n;

	assert_int_equal(spool_peek(sp, &s, &data, &n), 0);
}

static void test_order_ack_and_delete(void **state)
{
	struct spool *sp = open_spool(1 << 20);
	struct spool_stats st;

	append(sp, 1, 100);
	append(sp, 2, 200);
	append(sp, 5, 50); /* a gap in seq is allowed (dropped events) */
	assert_int_equal(spool_append(sp, 5, "x", 1), -EINVAL);
	assert_int_equal(spool_append(sp, 4, "x", 1), -EINVAL);
	spool_stats(sp, &st);
	assert_int_equal(st.pending, 3);
	assert_int_equal(st.unread, 3);
	assert_int_equal(st.bytes, 3 * HDR + 350);
	/* read before and after the buffer is written out: the same bytes */
	expect_next(sp, 1, 100);
	assert_int_equal(spool_sync(sp, false), 0);
	expect_next(sp, 2, 200);
	expect_next(sp, 5, 50);
	expect_end(sp);
	assert_int_equal(spool_unread(sp), 0);
	assert_int_equal(count_segments(), 1);
	spool_ack(sp, 1);
	spool_ack(sp, 2);
	assert_int_equal(count_segments(), 1);
	spool_ack(sp, 5);
	/* everything delivered: nothing left on disk */
	assert_int_equal(count_segments(), 0);
	spool_stats(sp, &st);
	assert_int_equal(st.bytes, 0);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.acked, 5);
	/* and appends go on in a new segment */
	append(sp, 6, 10);
	expect_next(sp, 6, 10);
	assert_int_equal(count_segments(), 1);
	spool_close(sp);
}

static void test_rewind_resends_from_first_unacked(void **state)
{
	struct spool *sp = open_spool(1 << 20);

	for (uint64_t s = 1; s <= 5; s++)
		append(sp, s, 64);
	for (uint64_t s = 1; s <= 5; s++)
		expect_next(sp, s, 64);
	spool_ack(sp, 1);
	spool_ack(sp, 2);
	/* 3 failed: everything from 3 on is read again, in order */
	spool_rewind(sp);
	assert_int_equal(spool_unread(sp), 3);
	expect_next(sp, 3, 64);
	expect_next(sp, 4, 64);
	expect_next(sp, 5, 64);
	expect_end(sp);
	spool_close(sp);
}

static void test_skip_last_sent_from_memory(void **state)
{
	struct spool *sp = open_spool(1 << 20);

	append(sp, 1, 32);
	assert_int_equal(spool_unread(sp), 1);
	spool_skip_last(sp);
	assert_int_equal(spool_unread(sp), 0);
	expect_end(sp);
	append(sp, 2, 32);
	append(sp, 3, 32);
	/* two unread: not the fast path, nothing skipped */
	spool_skip_last(sp);
	assert_int_equal(spool_unread(sp), 2);
	expect_next(sp, 2, 32);
	expect_next(sp, 3, 32);
	spool_close(sp);
}

static void test_full_at_the_exact_bound(void **state)
{
	/* 4096 bytes: 33 records of 24 + 100 bytes take 4092, a 34th would not fit */
	struct spool *sp = open_spool(4096);
	struct spool_stats st;
	uint64_t s;

	for (s = 1; s <= 33; s++)
		append(sp, s, 100);
	assert_false(spool_has_room(sp, 100));
	assert_int_equal(spool_append(sp, 34, payload(34, 100), 100), -ENOSPC);
	spool_stats(sp, &st);
	assert_int_equal(st.bytes, 4092);
	assert_int_equal(st.pending, 33);
	/* delivered, the space comes back */
	for (s = 1; s <= 33; s++) {
		expect_next(sp, s, 100);
		spool_ack(sp, s);
	}
	assert_int_equal(spool_append(sp, 35, payload(35, 100), 100), 0);
	spool_close(sp);
}

static void test_segments_deleted_as_acknowledged(void **state)
{
	/* 64 KiB: 8 KiB segments of 66 records of 24 + 100 bytes */
	struct spool *sp = open_spool(64 << 10);
	int before;

	for (uint64_t s = 1; s <= 400; s++)
		append(sp, s, 100);
	before = count_segments();
	assert_int_equal(before, 7); /* 400 / 66, rounded up */
	for (uint64_t s = 1; s <= 200; s++) {
		expect_next(sp, s, 100);
		spool_ack(sp, s);
	}
	/* segments 1-3 end at seq 66, 132, 198: gone; the fourth holds 199.. */
	assert_int_equal(count_segments(), 4);
	spool_close(sp);
}

static void test_reopen_resumes_after_the_cursor(void **state)
{
	struct spool *sp = open_spool(1 << 20);
	struct spool_stats st;

	for (uint64_t s = 1; s <= 5; s++)
		append(sp, s, 80);
	expect_next(sp, 1, 80);
	expect_next(sp, 2, 80);
	spool_ack(sp, 1);
	spool_ack(sp, 2);
	spool_close(sp);

	sp = open_spool(1 << 20);
	spool_stats(sp, &st);
	assert_int_equal(st.acked, 2);
	assert_int_equal(st.pending, 3);
	assert_int_equal(st.unread, 3);
	assert_int_equal(st.last_seq, 5);
	assert_int_equal(st.torn, 0);
	expect_next(sp, 3, 80);
	expect_next(sp, 4, 80);
	expect_next(sp, 5, 80);
	expect_end(sp);
	/* new records go after the old ones */
	assert_int_equal(spool_append(sp, 5, "x", 1), -EINVAL);
	append(sp, 6, 80);
	expect_next(sp, 6, 80);
	spool_close(sp);
}

/* The one segment file's path. */
static void segment_path(char *path, size_t len)
{
	struct dirent *de;
	DIR *d = opendir(dir);

	assert_non_null(d);
	path[0] = 0;
	while ((de = readdir(d)))
		if (strstr(de->d_name, ".seg"))
			snprintf(path, len, "%s/%s", dir, de->d_name);
	closedir(d);
	assert_true(path[0]);
}

static void test_torn_tail_is_cut_at_open(void **state)
{
	struct spool *sp = open_spool(1 << 20);
	struct spool_stats st;
	char path[256];
	int fd;

	for (uint64_t s = 1; s <= 3; s++)
		append(sp, s, 100);
	spool_close(sp);
	/* the host died in the middle of writing the third record */
	segment_path(path, sizeof(path));
	assert_int_equal(truncate(path, 3 * (HDR + 100) - 10), 0);

	sp = open_spool(1 << 20);
	spool_stats(sp, &st);
	assert_int_equal(st.torn, 1);
	assert_int_equal(st.pending, 2);
	assert_int_equal(st.bytes, 2 * (HDR + 100));
	expect_next(sp, 1, 100);
	expect_next(sp, 2, 100);
	expect_end(sp);
	spool_close(sp);

	/* a flipped payload byte: the crc cuts from that record on */
	segment_path(path, sizeof(path));
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "Y", 1, HDR + 100 + HDR + 50), 1); /* in record 2 */
	close(fd);
	sp = open_spool(1 << 20);
	spool_stats(sp, &st);
	assert_int_equal(st.torn, 1);
	assert_int_equal(st.pending, 1);
	expect_next(sp, 1, 100);
	expect_end(sp);
	spool_close(sp);
}

static void test_statefile_survives_a_torn_slot(void **state)
{
	char path[128], text[STATEFILE_TEXT_MAX + 1], word[80];
	struct statefile *sf;
	uint64_t v;
	int fd;

	snprintf(path, sizeof(path), "%s/rec", dir);
	sf = statefile_open(path, text, sizeof(text));
	assert_non_null(sf);
	assert_int_equal(statefile_load(sf, text, sizeof(text)), -1);
	assert_int_equal(statefile_store(sf, "seq=41 prev=aa instance=one", false), 0);
	assert_int_equal(statefile_store(sf, "seq=42 prev=bb instance=two", true), 0);
	assert_int_equal(statefile_store(sf, "bad\ntext", false), -EINVAL);
	statefile_close(sf);

	sf = statefile_open(path, text, sizeof(text));
	assert_int_equal(statefile_load(sf, text, sizeof(text)), 0);
	assert_string_equal(text, "seq=42 prev=bb instance=two");
	assert_int_equal(kv_u64(text, "seq", &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(kv_str(text, "instance", word, sizeof(word)), 0);
	assert_string_equal(word, "two");
	assert_int_equal(kv_u64(text, "instance", &v), -1);
	assert_int_equal(kv_u64(text, "eq", &v), -1); /* not a key: part of "seq" */
	statefile_close(sf);

	/* the newer slot (gen 2: the first 256 bytes) torn: the older one stands */
	fd = open(path, O_RDWR);
	assert_int_equal(pwrite(fd, "gen=2 seq=99", 12, 0), 12);
	close(fd);
	sf = statefile_open(path, text, sizeof(text));
	assert_int_equal(statefile_load(sf, text, sizeof(text)), 0);
	assert_string_equal(text, "seq=41 prev=aa instance=one");
	/* the next store goes over the torn slot, not the good one */
	assert_int_equal(statefile_store(sf, "seq=43", false), 0);
	assert_int_equal(statefile_load(sf, text, sizeof(text)), 0);
	assert_string_equal(text, "seq=43");
	statefile_close(sf);
}

static void test_state_dir_lock_is_exclusive(void **state)
{
	char err[256], sub[128];
	int fd, fd2;

	snprintf(sub, sizeof(sub), "%s/a/b", dir);
	fd = state_dir_lock(sub, err, sizeof(err));
	assert_true(fd >= 0);
	/* flock is per open file: a second open in this process conflicts too */
	fd2 = state_dir_lock(sub, err, sizeof(err));
	assert_int_equal(fd2, -1);
	assert_non_null(strstr(err, "in use by another dbwarden (pid "));
	close(fd);
	fd2 = state_dir_lock(sub, err, sizeof(err));
	assert_true(fd2 >= 0);
	close(fd2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_order_ack_and_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rewind_resends_from_first_unacked, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_skip_last_sent_from_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_at_the_exact_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segments_deleted_as_acknowledged, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reopen_resumes_after_the_cursor, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail_is_cut_at_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_statefile_survives_a_torn_slot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_state_dir_lock_is_exclusive, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
