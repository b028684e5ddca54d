// SPDX-License-Identifier: GPL-2.0-only
/* The agent's own log on stderr (see log.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"

static int threshold = DBW_LOG_INFO;

void log_set_level(enum dbw_log_level level)
{
	__atomic_store_n(&threshold, (int)level, __ATOMIC_RELAXED);
}

int log_level_parse(const char *name)
{
	static const struct {
		const char *name;
		enum dbw_log_level level;
	} names[] = {
		{ "error", DBW_LOG_ERROR }, { "warning", DBW_LOG_WARN }, { "warn", DBW_LOG_WARN },
		{ "info", DBW_LOG_INFO },   { "debug", DBW_LOG_DEBUG },
	};

	for (size_t i = 0; name && i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcasecmp(name, names[i].name))
			return names[i].level;
	return -1;
}

bool log_enabled(enum dbw_log_level level)
{
	return (int)level <= __atomic_load_n(&threshold, __ATOMIC_RELAXED);
}

/*
 * Format, then prefix every line of the message and write the whole with
 * one write(2). A message longer than the buffer is cut, and says so.
 */
void log_vwrite(enum dbw_log_level level, const char *fmt, va_list ap)
{
	static const char *const prefix[] = {
		[DBW_LOG_ERROR] = "dbwarden: error: ",
		[DBW_LOG_WARN] = "dbwarden: warning: ",
		[DBW_LOG_INFO] = "dbwarden: ",
		[DBW_LOG_DEBUG] = "dbwarden: debug: ",
	};
	char msg[4096], out[8192];
	const char *p = msg;
	size_t n = 0;
	int len;

	if (!log_enabled(level))
		return;
	len = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (len < 0)
		return;
	if ((size_t)len >= sizeof(msg))
		memcpy(msg + sizeof(msg) - 8, " [cut]\n", 8);
	while (*p && n < sizeof(out) - 1) {
		size_t line = strcspn(p, "\n");
		int w = snprintf(out + n, sizeof(out) - n, "%s%.*s\n", prefix[level], (int)line, p);

		if (w < 0 || (size_t)w >= sizeof(out) - n) {
			n = sizeof(out) - 1;
			out[n - 1] = '\n';
			break;
		}
		n += w;
		p += line;
		if (*p == '\n')
			p++;
	}
	if (n && write(STDERR_FILENO, out, n) < 0) {
		/* nowhere left to say it */
	}
}

void log_write(enum dbw_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, fmt, ap);
	va_end(ap);
}

bool log_limit_pass(struct log_limit *lim, uint64_t now_ms, uint64_t interval_ms,
		    uint64_t *suppressed)
{
	if (lim->last_ms && now_ms - lim->last_ms < interval_ms) {
		lim->held++;
		return false;
	}
	*suppressed = lim->held;
	lim->held = 0;
	lim->last_ms = now_ms ? now_ms : 1;
	return true;
}
