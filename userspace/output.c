// SPDX-License-Identifier: GPL-2.0-only
/* The --output family of options. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"
#include "log.h"

/* "64K", "10M", "1G" or bytes. Returns 0, or -1 if not a size. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (*end) {
	case 'k':
	case 'K':
		v <<= 10, end++;
		break;
	case 'm':
	case 'M':
		v <<= 20, end++;
		break;
	case 'g':
	case 'G':
		v <<= 30, end++;
		break;
	}
	if (*end)
		return -1;
	*out = v;
	return 0;
}

int output_opt(struct output_opts *o, int opt, const char *arg)
{
	switch (opt) {
	case OPT_OUTPUT:
		if (strcmp(arg, "stdout") && strcmp(arg, "kafka") &&
		    (strncmp(arg, "file:", 5) || !arg[5])) {
			log_error("--output %s: expected stdout or file:PATH (JSON Lines), "
				  "or kafka",
				  arg);
			return -1;
		}
		for (int i = 0; i < o->noutputs; i++) {
			if (!strcmp(o->outputs[i], arg)) {
				log_error("--output %s given twice", arg);
				return -1;
			}
		}
		if (o->noutputs >= OUTPUT_MAX) {
			log_error("at most %d --output options", OUTPUT_MAX);
			return -1;
		}
		o->outputs[o->noutputs++] = arg;
		return 1;
	case OPT_STATE_DIR:
		if (arg[0] != '/') {
			log_error("--state-dir %s: expected an absolute path", arg);
			return -1;
		}
		o->state_dir = arg;
		return 1;
	case OPT_KAFKA_BROKERS:
		o->kafka.brokers = arg;
		return 1;
	case OPT_KAFKA_TOPIC:
		o->kafka.topic = arg;
		return 1;
	case OPT_KAFKA_CONFIG:
		if (!strchr(arg, '=') || arg[0] == '=') {
			log_error("--kafka-config %s: expected KEY=VALUE", arg);
			return -1;
		}
		if (o->kafka.nconf >= KAFKA_CONF_MAX) {
			log_error("at most %d --kafka-config options", KAFKA_CONF_MAX);
			return -1;
		}
		o->kafka.conf[o->kafka.nconf++] = arg;
		return 1;
	case OPT_KAFKA_CONFIG_FILE:
		o->kafka.conf_file = arg;
		return 1;
	case OPT_SPOOL_MAX:
		/* room for a few whole events at least */
		if (parse_size(arg, &o->kafka.spool_max) || o->kafka.spool_max < (16 << 10)) {
			log_error("--spool-max %s: expected a size of at least 16K "
				  "(K, M, G)",
				  arg);
			return -1;
		}
		return 1;
	}
	return 0;
}

int output_check(struct output_opts *o, const char *default_state_dir)
{
	bool kafka = false;

	if (!o->noutputs)
		o->outputs[o->noutputs++] = "stdout";
	for (int i = 0; i < o->noutputs; i++)
		kafka |= !strcmp(o->outputs[i], "kafka");
	if (!o->state_dir)
		o->state_dir = default_state_dir;
	if (!o->kafka.spool_max)
		o->kafka.spool_max = SPOOL_MAX_DEFAULT;
	if (!kafka &&
	    (o->kafka.brokers || o->kafka.topic || o->kafka.nconf || o->kafka.conf_file)) {
		log_error("--kafka-* options need --output kafka");
		return -1;
	}
	if (kafka && (!o->kafka.brokers || !o->kafka.topic)) {
		log_error("--output kafka needs --kafka-brokers and --kafka-topic");
		return -1;
	}
	if (kafka && !o->state_dir) {
		log_error("--output kafka needs --state-dir (for its spool)");
		return -1;
	}
	return 0;
}

void output_describe(const struct output_opts *o, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = 0;
	for (int i = 0; i < o->noutputs && n < len; i++) {
		if (!strcmp(o->outputs[i], "kafka"))
			n += snprintf(buf + n, len - n, "%skafka:%s@%s", i ? ", " : "",
				      o->kafka.topic, o->kafka.brokers);
		else
			n += snprintf(buf + n, len - n, "%s%s", i ? ", " : "", o->outputs[i]);
	}
}
