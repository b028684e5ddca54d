/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The Kafka output: an idempotent librdkafka producer fed from the disk
 * spool (spool.h), so that what the broker cannot take now (down, queue
 * full, delivery failed) waits on disk, in order, and is sent when it can
 * be, also after a restart.
 */
#ifndef DBW_KAFKA_H
#define DBW_KAFKA_H

#include <stddef.h>
#include <librdkafka/rdkafka.h>

#include "output.h"

/*
 * A librdkafka configuration: defaults ("key=value", NULL-terminated, may be
 * NULL), then bootstrap.servers, then o's file, then o's --kafka-config
 * pairs, so that the user has the last word. NULL with a reason in err.
 */
rd_kafka_conf_t *kafka_conf_new(const struct kafka_opts *o, const char *const *defaults, char *err,
				size_t errlen);

/*
 * The Kafka sink: producer to o->topic, spool in state_dir/spool. key: the
 * message key of every event (the agent id: one agent's events land in one
 * partition, in order). NULL with a one-line reason in err.
 */
struct sink *kafka_sink_new(const struct kafka_opts *o, const char *state_dir, const char *key,
			    char *err, size_t errlen);

#endif /* DBW_KAFKA_H */
