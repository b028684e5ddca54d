/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Where audit events go: the --output family of options, and the sink
 * interface every output implements (JSON Lines on stdout or in a file,
 * Kafka). The emitter (event.h) serialises each event once, chains it, and
 * hands every sink the same bytes in batches.
 */
#ifndef DBW_OUTPUT_H
#define DBW_OUTPUT_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OUTPUT_MAX	  8
#define KAFKA_CONF_MAX	  64
#define STATE_DIR_DEFAULT "/var/lib/dbwarden"
#define SPOOL_MAX_DEFAULT (1ull << 30)

struct kafka_opts {
	const char *brokers; /* bootstrap.servers */
	const char *topic;
	const char *conf_file; /* key=value lines, applied before conf[] */
	const char *conf[KAFKA_CONF_MAX]; /* "key=value": any librdkafka property */
	int nconf;
	uint64_t spool_max; /* bytes */
};

struct output_opts {
	const char *outputs[OUTPUT_MAX]; /* "stdout" | "file:PATH" | "kafka" */
	int noutputs;
	const char *state_dir; /* NULL: nothing persisted (replay) */
	struct kafka_opts kafka;
};

/* getopt codes of the options below (above every character) */
enum {
	OPT_OUTPUT = 'o',
	OPT_STATE_DIR = 0x200,
	OPT_KAFKA_BROKERS,
	OPT_KAFKA_TOPIC,
	OPT_KAFKA_CONFIG,
	OPT_KAFKA_CONFIG_FILE,
	OPT_SPOOL_MAX,
};

/* one option a line */
/* clang-format off */
#define OUTPUT_LONGOPTS                                                        \
	{ "output", required_argument, NULL, OPT_OUTPUT },                     \
	{ "state-dir", required_argument, NULL, OPT_STATE_DIR },               \
	{ "kafka-brokers", required_argument, NULL, OPT_KAFKA_BROKERS },       \
	{ "kafka-topic", required_argument, NULL, OPT_KAFKA_TOPIC },           \
	{ "kafka-config", required_argument, NULL, OPT_KAFKA_CONFIG },         \
	{ "kafka-config-file", required_argument, NULL, OPT_KAFKA_CONFIG_FILE }, \
	{ "spool-max", required_argument, NULL, OPT_SPOOL_MAX }
/* clang-format on */

#define OUTPUT_USAGE                                                                                \
	"  --output SPEC       stdout (default), file:PATH (JSON Lines, appended) or kafka;\n"      \
	"                      repeatable: every output gets the same events\n"                     \
	"  --kafka-brokers H:P,...  --kafka-topic NAME   the Kafka output's cluster, topic\n"       \
	"  --kafka-config K=V  any librdkafka property (repeatable; after the file)\n"              \
	"  --kafka-config-file FILE  librdkafka properties, one K=V a line\n"                       \
	"  --spool-max SIZE    the Kafka spool's bound on disk (default 1G; K, M, G)\n"             \
	"  --state-dir DIR     agent.seq, the hash chain and the spool (default " STATE_DIR_DEFAULT \
	")\n"

/*
 * One option of the family above into o. Returns 1 when it was one (and
 * valid), 0 when opt is not one of them, -1 after printing why it is wrong.
 */
int output_opt(struct output_opts *o, int opt, const char *arg);

/*
 * After parsing: default output, default state dir (NULL: none), and the
 * options that only go together. Returns 0, or -1 after printing why.
 */
int output_check(struct output_opts *o, const char *default_state_dir);

/* "stdout, kafka:topic@brokers": for the ready line. */
void output_describe(const struct output_opts *o, char *buf, size_t len);

/* ---- sinks ---- */

/* One event of a batch: buf[off, off + len) without the '\n' that follows it. */
struct sink_rec {
	uint64_t seq;
	uint64_t ts_ns; /* the event's time (CLOCK_MONOTONIC), 0 if unknown */
	size_t off;
	uint32_t len;
};

/* Events in emission order: buf holds them as JSON Lines. */
struct sink_batch {
	const char *buf;
	size_t len;
	const struct sink_rec *recs;
	size_t n;
};

/* Events a sink had to let go; the emitter turns this into a `loss` event. */
struct sink_loss {
	const char *reason, *counter;
	uint64_t count, first_seq, last_seq;
};

struct sink {
	const char *name;
	/* take a batch; returns the number of events it failed to take */
	uint64_t (*write)(struct sink *s, const struct sink_batch *b);
	/* regular work (every loop of the daemon); 1 with *loss to report */
	int (*poll)(struct sink *s, struct sink_loss *loss);
	/* deliver what can be delivered, report, free */
	void (*close)(struct sink *s);
	/* the highest seq it holds from an earlier run (0: none) */
	uint64_t last_seq;
};

#endif /* DBW_OUTPUT_H */
