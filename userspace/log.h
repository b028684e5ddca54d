/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The agent's own log, on stderr: one line per thing worth a person's
 * attention, each with a level. The audit stream is elsewhere (event.h);
 * this is for whoever runs the agent.
 *
 * A line reads `dbwarden: LEVEL: text`, except at info, which reads
 * `dbwarden: text`: the agent's ordinary narrative (ready, policy loaded,
 * summaries) stays as short as it always was. What a line may hold: names,
 * counts, paths, addresses, reasons. Never a statement, a value or a
 * payload: those reach the audit stream only, masked.
 *
 * `--log-level` (error, warning, info: the default, debug) sets the
 * threshold; `-v` is debug. A line is written with one write(2), so the
 * lines of the Kafka and Kubernetes threads never interleave with the main
 * loop's. A message of several lines gets the prefix on each.
 */
#ifndef DBW_LOG_H
#define DBW_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum dbw_log_level {
	DBW_LOG_ERROR = 0, /* the agent cannot do what it was asked: it stops, or refuses */
	DBW_LOG_WARN = 1, /* something was lost, refused or degraded: look at it */
	DBW_LOG_INFO = 2, /* what the agent did: started, loaded, adopted, stopped */
	DBW_LOG_DEBUG = 3, /* what it looked at to do so */
};

void log_set_level(enum dbw_log_level level);

/* "error", "warning" (or "warn"), "info", "debug": the level, or -1. */
int log_level_parse(const char *name);

bool log_enabled(enum dbw_log_level level);

void log_write(enum dbw_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

void log_vwrite(enum dbw_log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

#define log_error(...) log_write(DBW_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_write(DBW_LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_write(DBW_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_write(DBW_LOG_DEBUG, __VA_ARGS__)

/*
 * At most one line per interval for something that may repeat (an outage,
 * an alert kind): true when this one is to be written. *suppressed is how
 * many were held back since the last line written (for the reader).
 */
struct log_limit {
	uint64_t last_ms;
	uint64_t held;
};

bool log_limit_pass(struct log_limit *lim, uint64_t now_ms, uint64_t interval_ms,
		    uint64_t *suppressed);

#endif /* DBW_LOG_H */
