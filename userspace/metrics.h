/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The operations endpoint (`run --metrics ADDR:PORT`): Prometheus text at
 * /metrics, /healthz and /readyz for the DaemonSet probes, and /status (the
 * JSON that `dbwarden status` prints). Served from the agent's own loop:
 * one short request per connection, never a payload or a literal.
 */
#ifndef DBW_METRICS_H
#define DBW_METRICS_H

#include <stdbool.h>
#include <stdio.h>

struct metrics;

/* What the endpoint serves, written on demand into out. */
struct metrics_src {
	void *ctx;
	void (*prometheus)(void *ctx, FILE *out);
	void (*status)(void *ctx, FILE *out); /* one JSON object */
	bool ready; /* programs attached, policy installed */
};

/* Listen on addr ("127.0.0.1:9465", "[::1]:9465", ":9465"). NULL with err. */
struct metrics *metrics_open(const char *addr, char *err, size_t errlen);
void metrics_close(struct metrics *m);

/* Answer what is waiting; never blocks the loop for long. */
void metrics_poll(struct metrics *m, const struct metrics_src *src);

/*
 * The client side for `dbwarden status`: GET path from addr into a
 * malloc'd, NUL-terminated body. NULL with err.
 */
char *metrics_get(const char *addr, const char *path, char *err, size_t errlen);

#endif /* DBW_METRICS_H */
