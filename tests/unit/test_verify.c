// SPDX-License-Identifier: GPL-2.0-only
/*
 * The hash chain and `dbwarden verify`'s checks, on exact event fixtures:
 * SHA-256 test vectors, a clean stream, a restart, and each way a stream can
 * be wrong (gap, duplicate, edit, reordering, reset, loss, missing chain,
 * garbage), counted exactly and named in the report.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "chain.h"
#include "verify.h"

#define ZERO "0000000000000000000000000000000000000000000000000000000000000000"

/* One agent's stream as the emitter writes it: each line chained to the one before. */
struct stream {
	char lines[32][512];
	int n;
	char prev[CHAIN_HEX_LEN + 1];
};

/* Append event seq of type at instance, chained; extra: more members or "". */
static const char *add(struct stream *s, const char *agent, const char *instance, unsigned seq,
		       const char *type, const char *extra)
{
	uint8_t h[CHAIN_HASH_LEN];
	char *l = s->lines[s->n++];

	if (!s->prev[0])
		strcpy(s->prev, ZERO);
	snprintf(l, 512,
		 "{\"schema\":\"dbwarden.audit/v1\",\"type\":\"%s\",\"agent\":{\"id\":\"%s\","
		 "\"node\":\"n1\",\"instance\":\"%s\",\"seq\":%u,\"prev\":\"%s\"},"
		 "\"time\":\"2026-11-25T00:00:00.000000Z\"%s}",
		 type, agent, instance, seq, s->prev, extra);
	chain_hash(l, strlen(l), h);
	chain_hex(h, s->prev);
	return l;
}

static void feed(struct verifier *v, const char *line)
{
	verifier_feed(v, line, strlen(line));
}

/* Feed lines in the order of idx (-1 ends it); return the counts and the report. */
static void run(struct stream *s, const int *idx, struct verify_counts *c, char *report, size_t len)
{
	struct verifier *v = verifier_new();
	FILE *f = fmemopen(report, len, "w");

	for (int i = 0; idx[i] >= 0; i++)
		feed(v, s->lines[idx[i]]);
	verifier_counts(v, c);
	verifier_report(v, f);
	fclose(f);
	verifier_free(v);
}

static struct stream *five(void)
{
	static struct stream s;

	memset(&s, 0, sizeof(s));
	for (unsigned i = 1; i <= 5; i++)
		add(&s, "agent-a", "i1", i, "statement", "");
	return &s;
}

static void test_sha256_vectors_and_hex(void **state)
{
	uint8_t h[CHAIN_HASH_LEN], back[CHAIN_HASH_LEN];
	char hex[CHAIN_HEX_LEN + 1];

	chain_hash("abc", 3, h);
	chain_hex(h, hex);
	assert_string_equal(hex,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	chain_hash("", 0, h);
	chain_hex(h, hex);
	assert_string_equal(hex,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_int_equal(chain_unhex(hex, back), 0);
	assert_memory_equal(back, h, CHAIN_HASH_LEN);
	assert_int_equal(
		chain_unhex("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
			    back),
		-1);
	assert_int_equal(chain_unhex("e3b0", back), -1);
	assert_int_equal(chain_unhex(NULL, back), -1);
}

static void test_clean_stream_is_complete(void **state)
{
	struct stream *s = five();
	int idx[] = { 0, 1, 2, 3, 4, -1 };
	struct verify_counts c;
	char rep[4096];

	run(s, idx, &c, rep, sizeof(rep));
	assert_int_equal(c.agents, 1);
	assert_int_equal(c.events, 5);
	assert_int_equal(c.gaps + c.duplicates + c.chain_breaks + c.losses + c.resets, 0);
	assert_non_null(strstr(rep, "agent agent-a: 5 events, seq 1..5, 1 instance: complete, "
				    "chain valid\n"));
	assert_non_null(strstr(rep, "verify: 5 events from 1 agent: complete\n"));
}

static void test_gap(void **state)
{
	struct stream *s = five();
	int idx[] = { 0, 1, 3, 4, -1 };
	struct verify_counts c;
	char rep[4096];

	run(s, idx, &c, rep, sizeof(rep));
	assert_int_equal(c.gaps, 1);
	assert_int_equal(c.missing, 1);
	/* the link over a gap cannot be checked, so it is not a second problem */
	assert_int_equal(c.chain_breaks, 0);
	assert_non_null(strstr(rep, "  gap: seq 3..3 (1 missing)\n"));
	assert_non_null(strstr(rep, "PROBLEMS FOUND"));
}

static void test_stream_that_does_not_start_at_one(void **state)
{
	struct stream *s = five();
	int idx[] = { 2, 3, 4, -1 };
	struct verify_counts c;
	char rep[4096];

	run(s, idx, &c, rep, sizeof(rep));
	assert_int_equal(c.gaps, 1);
	assert_int_equal(c.missing, 2);
	assert_non_null(strstr(rep, "  gap: seq 1..2 (2 missing)\n"));
}

/* At least once: the same bytes again are a re-delivery, counted but not a problem. */
static void test_identical_redelivery_is_not_a_problem(void **state)
{
	struct stream *s = five();
	int idx[] = { 0, 1, 2, 1, 2, 3, 4, -1 };
	struct verify_counts c;
	char rep[4096];

	run(s, idx, &c, rep, sizeof(rep));
	assert_int_equal(c.redelivered, 2);
	assert_int_equal(c.duplicates + c.chain_breaks + c.gaps + c.reordered, 0);
	assert_non_null(strstr(rep, "1 instance: complete, chain valid, 2 identical "
				    "re-deliveries (at least once: drop them by agent.id and "
				    "agent.seq)\n"));
	assert_non_null(strstr(rep, "verify: 7 events from 1 agent: complete\n"));
}

static void test_duplicate_with_other_bytes(void **state)
{
	struct stream *s = five();
	int idx[] = { 0, 1, 2, 5, 3, 4, -1 };
	struct verify_counts c;
	char rep[4096], *t;

	/* seq 3 again, one character of it changed: a forgery, not a re-delivery */
	memcpy(s->lines[5], s->lines[2], sizeof(s->lines[5]));
	t = strstr(s->lines[5], "\"n1\"");
	t[2] = '2';
	run(s, idx, &c, rep, sizeof(rep));
	assert_int_equal(c.duplicates, 1);
	assert_int_equal(c.redelivered, 0);
	assert_int_equal(c.chain_breaks, 0); /* seq 4 still links to the first seq 3 */
	assert_int_equal(c.gaps, 0);
	assert_non_null(strstr(rep, "  duplicate: seq 3 again with other bytes (one of the two "
				    "was edited, or two agents share an id)\n"));
	assert_non_null(strstr(rep, "PROBLEMS FOUND"));
}

static void test_edited_event_breaks_the_next_link(void **state)
{
	struct stream *s = five();
	int idx[] = { 0, 1, 2, 3, 4, -1 };
	struct verify_counts c;
	char rep[4096], *t;

	/* one character of seq 3's bytes: its seq and JSON stay valid */
	t = strstr(s->lines[2], "\"n1\"");
	t[2] = '2';
	run(s, idx, &c, rep, sizeof(rep));
	assert_int_equal(c.chain_breaks, 1);
	assert_int_equal(c.gaps + c.duplicates, 0);
	assert_non_null(strstr(rep, "  chain break: seq 4: agent.prev is not the hash of seq 3"));
}

static void test_edited_prev_is_caught_too(void **state)
{
	struct stream *s = five();
	int idx[] = { 0, 1, 2, 3, 4, -1 };
	struct verify_counts c;
	char rep[4096], *t;

	t = strstr(s->lines[0], ZERO);
	t[63] = '1';
	run(s, idx, &c, rep, sizeof(rep));
	/* seq 1 no longer starts at zero, and seq 2 no longer links to it */
	assert_int_equal(c.chain_breaks, 2);
	assert_non_null(strstr(rep, "  chain break: seq 1 does not start the chain"));
}

/* Two runs of agent-a, two events each; reset: the second starts a new state. */
static void two_runs(bool reset, struct verify_counts *c, char *rep, size_t len)
{
	static struct stream s;
	int idx[] = { 0, 1, 2, 3, -1 };

	memset(&s, 0, sizeof(s));
	add(&s, "agent-a", "i1", 1, "statement", "");
	add(&s, "agent-a", "i1", 2, "statement", "");
	if (reset)
		s.prev[0] = 0; /* the chain starts again */
	add(&s, "agent-a", "i2", reset ? 1 : 3, "statement", "");
	add(&s, "agent-a", "i2", reset ? 2 : 4, "statement", "");
	run(&s, idx, c, rep, len);
}

static void test_restart_goes_on_and_is_not_a_problem(void **state)
{
	struct verify_counts c;
	char rep[4096];

	two_runs(false, &c, rep, sizeof(rep));
	assert_int_equal(c.restarts, 1);
	assert_non_null(strstr(rep, "seq 1..4, 2 instances: complete, chain valid"));
}

static void test_reset_when_the_state_was_lost(void **state)
{
	struct verify_counts c;
	char rep[4096];

	two_runs(true, &c, rep, sizeof(rep));
	assert_int_equal(c.resets, 1);
	assert_int_equal(c.duplicates, 0);
	assert_non_null(strstr(rep, "  reset: seq went back from 2 to 1 at instance i2"));
}

static void test_reordered_event_fills_its_gap(void **state)
{
	struct stream *s = five();
	int idx[] = { 0, 1, 3, 2, 4, -1 };
	struct verify_counts c;
	char rep[4096];

	run(s, idx, &c, rep, sizeof(rep));
	assert_int_equal(c.gaps, 0);
	assert_int_equal(c.reordered, 1);
	assert_int_equal(c.chain_breaks, 0); /* seq 5 links to seq 4, the newest */
	assert_non_null(strstr(rep, "  out of order: seq 3 after seq 4\n"));
}

static void test_loss_event_is_reported(void **state)
{
	static struct stream s;
	int idx[] = { 0, 1, 2, 2, -1 }; /* the loss event delivered twice counts once */
	struct verify_counts c;
	char rep[4096];

	memset(&s, 0, sizeof(s));
	add(&s, "agent-a", "i1", 1, "statement", "");
	add(&s, "agent-a", "i1", 5, "statement", ""); /* 2..4 dropped, 5's prev names 4 */
	add(&s, "agent-a", "i1", 6, "loss",
	    ",\"loss\":{\"reason\":\"spool_full\",\"counter\":\"kafka_spool_full\",\"count\":3,"
	    "\"output\":\"kafka\",\"first_seq\":2,\"last_seq\":4}");
	run(&s, idx, &c, rep, sizeof(rep));
	assert_int_equal(c.losses, 1);
	assert_int_equal(c.lost, 3);
	assert_int_equal(c.missing, 3);
	assert_int_equal(c.redelivered, 1);
	assert_non_null(strstr(rep, "  loss: seq 6: 3 events lost (spool_full, seq 2..4)\n"));
	assert_non_null(strstr(rep, "  gap: seq 2..4 (3 missing)\n"));
}

static void test_agents_apart_garbage_and_unchained(void **state)
{
	static struct stream a, b;
	struct verifier *v = verifier_new();
	struct verify_counts c;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	/* two agents interleaved: each chain is checked on its own */
	feed(v, add(&a, "agent-a", "i1", 1, "statement", ""));
	feed(v, add(&b, "agent-b", "j1", 1, "connection_open", ""));
	feed(v, add(&a, "agent-a", "i1", 2, "statement", ""));
	feed(v, add(&b, "agent-b", "j1", 2, "statement", ""));
	verifier_counts(v, &c);
	assert_int_equal(c.agents, 2);
	assert_int_equal(c.events, 4);
	assert_int_equal(c.chain_breaks + c.gaps, 0);
	feed(v, "not json at all");
	feed(v, "{\"schema\":\"other/v1\",\"agent\":{\"id\":\"x\",\"seq\":1}}");
	feed(v, "{\"schema\":\"dbwarden.audit/v1\",\"type\":\"statement\",\"agent\":{\"id\":"
		"\"agent-a\",\"instance\":\"i1\",\"seq\":3}}");
	verifier_counts(v, &c);
	assert_int_equal(c.bad_lines, 2);
	assert_int_equal(c.unchained, 1);
	verifier_free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_vectors_and_hex),
		cmocka_unit_test(test_clean_stream_is_complete),
		cmocka_unit_test(test_gap),
		cmocka_unit_test(test_stream_that_does_not_start_at_one),
		cmocka_unit_test(test_identical_redelivery_is_not_a_problem),
		cmocka_unit_test(test_duplicate_with_other_bytes),
		cmocka_unit_test(test_edited_event_breaks_the_next_link),
		cmocka_unit_test(test_edited_prev_is_caught_too),
		cmocka_unit_test(test_restart_goes_on_and_is_not_a_problem),
		cmocka_unit_test(test_reset_when_the_state_was_lost),
		cmocka_unit_test(test_reordered_event_fills_its_gap),
		cmocka_unit_test(test_loss_event_is_reported),
		cmocka_unit_test(test_agents_apart_garbage_and_unchained),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
