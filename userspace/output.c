// SPDX-License-Identifier: GPL-2.0-only
/* The --output family of options. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"

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
			fprintf(stderr,
				"dbwarden: --output %s: expected stdout or file:PATH (JSON Lines), "
				"or kafka\n",
				arg);
			return -1;
		}
		for (int i = 0; i < o->noutputs; i++) {
			if (!strcmp(o->outputs[i], arg)) {
				fprintf(stderr, "dbwarden: --output %s given twice\n", arg);
				return -1;
			}
		}
		if (o->noutputs >= OUTPUT_MAX) {
			fprintf(stderr, "dbwarden: at most %d --output options\n", OUTPUT_MAX);
			return -1;
		}
		o->outputs[o->noutputs++] = arg;
		return 1;
	case OPT_STATE_DIR:
		if (arg[0] != '/') {
			fprintf(stderr, "dbwarden: --state-dir %s: expected an absolute path\n",
				arg);
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
			fprintf(stderr, "dbwarden: --kafka-config %s: expected KEY=VALUE\n", arg);
			return -1;
		}
		if (o->kafka.nconf >= KAFKA_CONF_MAX) {
			fprintf(stderr, "dbwarden: at most %d --kafka-config options\n",
				KAFKA_CONF_MAX);
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
			fprintf(stderr,
				"dbwarden: --spool-max %s: expected a size of at least 16K "
				"(K, M, G)\n",
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
		fprintf(stderr, "dbwarden: --kafka-* options need --output kafka\n");
		return -1;
	}
	if (kafka && (!o->kafka.brokers || !o->kafka.topic)) {
		fprintf(stderr,
			"dbwarden: --output kafka needs --kafka-brokers and --kafka-topic\n");
		return -1;
	}
	if (kafka && !o->state_dir) {
		fprintf(stderr, "dbwarden: --output kafka needs --state-dir (for its spool)\n");
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
