/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the running agent says about itself: Prometheus metrics and the
 * /status JSON (served by metrics.c), and `dbwarden status`'s rendering of
 * that JSON for a person.
 */
#ifndef DBW_STATUS_H
#define DBW_STATUS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct agent_opts;
struct capture;
struct conn_table;
struct emitter;
struct guard;
struct tls;

/* Everything the agent's loop owns, read-only here. */
struct agent_view {
	const struct agent_opts *o;
	const char *cgroup;
	struct capture *cap;
	struct conn_table *conns;
	struct emitter *em;
	struct guard *guard; /* NULL without --policy */
	struct tls *tls; /* NULL with --no-tls */
	int64_t started_unix;
};

/* metrics_src callbacks; ctx is a struct agent_view. */
void status_prometheus(void *ctx, FILE *out);
void status_json(void *ctx, FILE *out);

/* `dbwarden status`: the /status JSON for a person. 0, or -1 if it is not that JSON. */
int status_render(const char *json, FILE *out);

#endif /* DBW_STATUS_H */
