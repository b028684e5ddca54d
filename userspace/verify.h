/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * `dbwarden verify`: prove a stream of audit events complete, per agent:
 * every agent.seq from 1 on, in order, each once (or again with the same
 * bytes: delivery is at least once), every agent.prev the SHA-256 of the
 * event before it (chain.h), no `loss` event.
 */
#ifndef DBW_VERIFY_H
#define DBW_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct verifier;

struct verify_counts {
	uint64_t agents, events, bad_lines;
	uint64_t gaps, missing; /* seq ranges never seen, and how many seqs in them */
	uint64_t duplicates; /* a seq seen again with other bytes, or too late to compare */
	uint64_t redelivered; /* a recent seq seen again, the same bytes: not a problem */
	uint64_t reordered; /* a seq seen after a later one (it filled a gap) */
	uint64_t chain_breaks; /* agent.prev is not the hash of the event before */
	uint64_t unchained; /* events without agent.prev */
	uint64_t losses, lost; /* loss events, and the events they count */
	uint64_t resets; /* seq went back at a new instance: the agent lost its state */
	uint64_t restarts; /* a new instance going on from the last seq: fine */
};

struct verifier *verifier_new(void);
void verifier_free(struct verifier *v);

/* One event: its exact bytes (a JSON Lines line without '\n', a Kafka message value). */
void verifier_feed(struct verifier *v, const char *line, size_t len);

/* Totals over every agent (gaps as they stand now). */
void verifier_counts(const struct verifier *v, struct verify_counts *c);

/* Per agent: a summary line and each problem; then a total. Returns the problems. */
uint64_t verifier_report(struct verifier *v, FILE *out);

/* The command: exit 0 when the stream is complete, 1 on any problem, 2 on usage. */
int verify_main(int argc, char **argv);

#endif /* DBW_VERIFY_H */
