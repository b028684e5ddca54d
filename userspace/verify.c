// SPDX-License-Identifier: GPL-2.0-only
/*
 * `dbwarden verify`. Events are checked one at a time in stream order
 * (file order, or partition order: one agent's events share a partition),
 * keeping per agent only the last seq, its hash, the gaps still open and a
 * ring of the recent events' hashes, so a stream of any length verifies in
 * bounded memory.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "chain.h"
#include "kafka.h"
#include "verify.h"
#include "log.h"

/* detail lines kept per agent: past that, only counted */
#define DETAIL_MAX 200
/*
 * Recent events whose bytes a seq seen again is compared with, per agent.
 * Delivery is at least once: a producer that retries a batch whose outcome
 * it did not learn sends the same bytes again, soon after the first copy.
 * 16 bytes each: 256 KiB per agent.
 */
#define RECENT_MAX  16384
#define RECENT_HASH 8

struct recent {
	uint64_t seq;
	uint8_t hash[RECENT_HASH]; /* the first bytes of the event's SHA-256 */
};

struct range {
	uint64_t lo, hi;
};

struct vagent {
	char *id;
	char instance[64];
	uint64_t first_seq, last_seq;
	uint8_t last_hash[CHAIN_HASH_LEN];
	bool started;
	uint64_t instances;
	struct range *gaps;
	size_t ngaps, gcap;
	struct recent *recent; /* RECENT_MAX, by seq % RECENT_MAX */
	struct verify_counts c;
	char *details;
	size_t dlen;
	FILE *df;
	unsigned ndetails;
};

struct verifier {
	struct vagent **agents; /* each apart: its memstream points into it */
	size_t nagents;
	uint64_t lines, bad_lines;
};

struct verifier *verifier_new(void)
{
	return calloc(1, sizeof(struct verifier));
}

void verifier_free(struct verifier *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->nagents; i++) {
		if (v->agents[i]->df)
			fclose(v->agents[i]->df);
		free(v->agents[i]->details);
		free(v->agents[i]->gaps);
		free(v->agents[i]->recent);
		free(v->agents[i]->id);
		free(v->agents[i]);
	}
	free(v->agents);
	free(v);
}

static void detail(struct vagent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void detail(struct vagent *a, const char *fmt, ...)
{
	va_list ap;

	if (a->ndetails++ >= DETAIL_MAX || !a->df)
		return;
	va_start(ap, fmt);
	fputs("  ", a->df);
	vfprintf(a->df, fmt, ap);
	fputc('\n', a->df);
	va_end(ap);
}

static struct vagent *agent_of(struct verifier *v, const char *id)
{
	struct vagent *a, **all;

	for (size_t i = 0; i < v->nagents; i++)
		if (!strcmp(v->agents[i]->id, id))
			return v->agents[i];
	all = realloc(v->agents, (v->nagents + 1) * sizeof(*all));
	if (!all)
		return NULL;
	v->agents = all;
	a = calloc(1, sizeof(*a));
	if (!a || !(a->id = strdup(id)) || !(a->recent = calloc(RECENT_MAX, sizeof(*a->recent)))) {
		if (a)
			free(a->id);
		free(a);
		return NULL;
	}
	/* open_memstream keeps &a->details: a must never move */
	a->df = open_memstream(&a->details, &a->dlen);
	v->agents[v->nagents++] = a;
	return a;
}

static void gap_add(struct vagent *a, uint64_t lo, uint64_t hi)
{
	if (a->ngaps == a->gcap) {
		size_t ncap = a->gcap ? a->gcap * 2 : 8;
		struct range *n = realloc(a->gaps, ncap * sizeof(*n));

		if (!n)
			return;
		a->gaps = n;
		a->gcap = ncap;
	}
	a->gaps[a->ngaps++] = (struct range){ lo, hi };
}

/* A late seq inside an open gap closes that part of it. Returns true if it was one. */
static bool gap_fill(struct vagent *a, uint64_t seq)
{
	for (size_t i = 0; i < a->ngaps; i++) {
		struct range *g = &a->gaps[i];

		if (seq < g->lo || seq > g->hi)
			continue;
		if (g->lo == g->hi) {
			a->gaps[i] = a->gaps[--a->ngaps];
		} else if (seq == g->lo) {
			g->lo++;
		} else if (seq == g->hi) {
			g->hi--;
		} else {
			uint64_t hi = g->hi;

			g->hi = seq - 1;
			gap_add(a, seq + 1, hi);
		}
		return true;
	}
	return false;
}

/* The fields verify reads, NULL/0 where absent. */
struct vevent {
	const char *id, *instance, *prev, *type, *reason;
	uint64_t seq, count, first, last;
};

static int parse(json_t *j, struct vevent *e)
{
	json_t *agent = json_object_get(j, "agent"), *loss = json_object_get(j, "loss");
	json_t *seq = json_object_get(agent, "seq");

	memset(e, 0, sizeof(*e));
	if (!json_is_object(j) ||
	    strcmp(json_string_value(json_object_get(j, "schema")) ?: "", "dbwarden.audit/v1") ||
	    !json_is_integer(seq) || json_integer_value(seq) < 1)
		return -1;
	e->id = json_string_value(json_object_get(agent, "id")) ?: "";
	e->instance = json_string_value(json_object_get(agent, "instance")) ?: "";
	e->prev = json_string_value(json_object_get(agent, "prev"));
	e->type = json_string_value(json_object_get(j, "type")) ?: "";
	e->seq = json_integer_value(seq);
	e->reason = json_string_value(json_object_get(loss, "reason")) ?: "?";
	e->count = json_integer_value(json_object_get(loss, "count"));
	e->first = json_integer_value(json_object_get(loss, "first_seq"));
	e->last = json_integer_value(json_object_get(loss, "last_seq"));
	return 0;
}

/* Does e's agent.prev name the hash we hold for the seq before it? */
static void check_link(struct vagent *a, const struct vevent *e, const uint8_t *want)
{
	uint8_t got[CHAIN_HASH_LEN];

	if (!e->prev) {
		a->c.unchained++;
		detail(a, "no chain: seq %" PRIu64 " has no agent.prev", e->seq);
		return;
	}
	if (chain_unhex(e->prev, got) || memcmp(got, want, CHAIN_HASH_LEN)) {
		a->c.chain_breaks++;
		if (e->seq == 1)
			detail(a, "chain break: seq 1 does not start the chain (prev is not zero)");
		else
			detail(a,
			       "chain break: seq %" PRIu64
			       ": agent.prev is not the hash of seq %" PRIu64
			       " (one of the two was edited, or an event was put in between)",
			       e->seq, e->seq - 1);
	}
}

/* Keep the hash of seq's bytes for a later copy to be compared with. */
static void remember(struct vagent *a, uint64_t seq, const uint8_t *h)
{
	struct recent *r = &a->recent[seq % RECENT_MAX];

	r->seq = seq;
	memcpy(r->hash, h, RECENT_HASH);
}

/*
 * A seq seen again at the same instance. The same bytes as the recent event
 * of that seq: a re-delivery (delivery is at least once), not a problem.
 * Other bytes, or too far back to compare: a duplicate, which is.
 */
static void seen_again(struct vagent *a, uint64_t seq, const uint8_t *h)
{
	const struct recent *r = &a->recent[seq % RECENT_MAX];

	if (r->seq == seq && !memcmp(r->hash, h, RECENT_HASH)) {
		a->c.redelivered++;
		return;
	}
	a->c.duplicates++;
	if (r->seq == seq)
		detail(a,
		       "duplicate: seq %" PRIu64 " again with other bytes (one of the two "
		       "was edited, or two agents share an id)",
		       seq);
	else
		detail(a,
		       "duplicate: seq %" PRIu64 " (too far back to compare with the first copy)",
		       seq);
}

void verifier_feed(struct verifier *v, const char *line, size_t len)
{
	static const uint8_t zero[CHAIN_HASH_LEN];
	json_t *j = json_loadb(line, len, 0, NULL);
	uint8_t h[CHAIN_HASH_LEN];
	struct vagent *a;
	struct vevent e;

	v->lines++;
	if (!j || parse(j, &e) || !(a = agent_of(v, e.id))) {
		v->bad_lines++;
		json_decref(j);
		return;
	}
	a->c.events++;
	chain_hash(line, len, h);
	if (!a->started) {
		a->started = true;
		a->first_seq = e.seq;
		a->instances = 1;
		if (e.seq > 1)
			gap_add(a, 1, e.seq - 1);
		else
			check_link(a, &e, zero);
	} else if (e.seq == a->last_seq + 1) {
		check_link(a, &e, a->last_hash);
	} else if (e.seq > a->last_seq + 1) {
		gap_add(a, a->last_seq + 1, e.seq - 1);
	} else if (gap_fill(a, e.seq)) {
		a->c.reordered++;
		detail(a, "out of order: seq %" PRIu64 " after seq %" PRIu64, e.seq, a->last_seq);
		goto seen; /* the newest event stays the one to link to */
	} else if (strcmp(e.instance, a->instance)) {
		a->c.resets++;
		detail(a,
		       "reset: seq went back from %" PRIu64 " to %" PRIu64
		       " at instance %s (the agent lost its state)",
		       a->last_seq, e.seq, e.instance);
	} else {
		seen_again(a, e.seq, h);
		goto out; /* a loss it reports is counted once */
	}
	if (strcmp(e.instance, a->instance)) {
		if (a->last_seq)
			a->instances++;
		snprintf(a->instance, sizeof(a->instance), "%s", e.instance);
	}
	a->last_seq = e.seq;
	memcpy(a->last_hash, h, CHAIN_HASH_LEN);
seen:
	remember(a, e.seq, h);
	if (!strcmp(e.type, "loss")) {
		a->c.losses++;
		a->c.lost += e.count;
		detail(a,
		       "loss: seq %" PRIu64 ": %" PRIu64 " events lost (%s, seq %" PRIu64
		       "..%" PRIu64 ")",
		       e.seq, e.count, e.reason, e.first, e.last);
	}
out:
	json_decref(j);
}

static void agent_counts(const struct vagent *a, struct verify_counts *c)
{
	*c = a->c;
	c->gaps = a->ngaps;
	c->missing = 0;
	for (size_t i = 0; i < a->ngaps; i++)
		c->missing += a->gaps[i].hi - a->gaps[i].lo + 1;
	c->restarts = a->instances ? a->instances - 1 : 0;
}

static uint64_t problems(const struct verify_counts *c)
{
	return c->bad_lines + c->gaps + c->duplicates + c->reordered + c->chain_breaks +
	       c->unchained + c->losses + c->resets;
}

void verifier_counts(const struct verifier *v, struct verify_counts *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < v->nagents; i++) {
		struct verify_counts a;

		agent_counts(v->agents[i], &a);
		c->events += a.events;
		c->gaps += a.gaps;
		c->missing += a.missing;
		c->duplicates += a.duplicates;
		c->redelivered += a.redelivered;
		c->reordered += a.reordered;
		c->chain_breaks += a.chain_breaks;
		c->unchained += a.unchained;
		c->losses += a.losses;
		c->lost += a.lost;
		c->resets += a.resets;
		c->restarts += a.restarts;
	}
	c->agents = v->nagents;
	c->bad_lines = v->bad_lines;
}

uint64_t verifier_report(struct verifier *v, FILE *out)
{
	struct verify_counts t;
	uint64_t n;

	for (size_t i = 0; i < v->nagents; i++) {
		struct vagent *a = v->agents[i];
		struct verify_counts c;

		agent_counts(a, &c);
		fprintf(out,
			"agent %s: %" PRIu64 " events, seq %" PRIu64 "..%" PRIu64 ", %" PRIu64
			" instance%s: ",
			a->id, c.events, a->first_seq, a->last_seq, a->instances,
			a->instances == 1 ? "" : "s");
		if (!problems(&c)) {
			fprintf(out, "complete, chain valid");
			if (c.redelivered)
				fprintf(out,
					", %" PRIu64 " identical re-deliveries (at least once: "
					"drop them by agent.id and agent.seq)",
					c.redelivered);
			fputc('\n', out);
			continue;
		}
		fprintf(out,
			"%" PRIu64 " gaps (%" PRIu64 " missing), %" PRIu64 " duplicates, %" PRIu64
			" chain breaks, %" PRIu64 " loss events (%" PRIu64 " lost), %" PRIu64
			" out of order, %" PRIu64 " resets, %" PRIu64 " unchained, %" PRIu64
			" identical re-deliveries\n",
			c.gaps, c.missing, c.duplicates, c.chain_breaks, c.losses, c.lost,
			c.reordered, c.resets, c.unchained, c.redelivered);
		for (size_t g = 0; g < a->ngaps && g < DETAIL_MAX; g++)
			fprintf(out, "  gap: seq %" PRIu64 "..%" PRIu64 " (%" PRIu64 " missing)\n",
				a->gaps[g].lo, a->gaps[g].hi, a->gaps[g].hi - a->gaps[g].lo + 1);
		if (a->df && !fflush(a->df))
			fwrite(a->details, 1, a->dlen, out);
		if (a->ndetails > DETAIL_MAX)
			fprintf(out, "  ... %u more\n", a->ndetails - DETAIL_MAX);
	}
	verifier_counts(v, &t);
	n = problems(&t);
	if (t.bad_lines)
		fprintf(out, "%" PRIu64 " lines are not dbwarden.audit/v1 events\n", t.bad_lines);
	if (!t.events) {
		fprintf(out, "verify: no events\n");
		return n + 1;
	}
	fprintf(out, "verify: %" PRIu64 " events from %" PRIu64 " agent%s: %s\n", t.events,
		t.agents, t.agents == 1 ? "" : "s", n ? "PROBLEMS FOUND" : "complete");
	return n;
}

/* Every line of path ("-": stdin) into v. */
static int read_file(struct verifier *v, const char *path)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "re") : stdin;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (!f) {
		log_error("verify: cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			n--;
		if (n)
			verifier_feed(v, line, n);
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return 0;
}

static const char *const consumer_defaults[] = {
	"group.id=dbwarden-verify", /* never committed: verify reads, it does not consume */
	"enable.auto.commit=false",
	"enable.partition.eof=true",
	NULL,
};

/*
 * Every message of every partition of the topic, from the beginning to the
 * high watermark seen at the start. Returns 0, or -1 after printing why.
 */
static int read_topic(struct verifier *v, const struct kafka_opts *o)
{
	rd_kafka_topic_partition_list_t *parts = NULL;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt = NULL;
	int64_t *high = NULL;
	int left = 0, rc = -1, idle = 0;
	char err[512];
	rd_kafka_conf_t *conf = kafka_conf_new(o, consumer_defaults, err, sizeof(err));
	rd_kafka_t *rk = conf ? rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)) : NULL;
	rd_kafka_resp_err_t e;

	if (!rk) {
		if (conf)
			rd_kafka_conf_destroy(conf);
		log_error("verify: %s", err);
		return -1;
	}
	rkt = rd_kafka_topic_new(rk, o->topic, NULL);
	e = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, 10000) : rd_kafka_last_error();
	if (e || md->topic_cnt != 1 || md->topics[0].err) {
		log_error("verify: topic %s: %s", o->topic,
			  rd_kafka_err2str(e ? e :
					   md->topic_cnt ?
					       md->topics[0].err :
					       RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
		goto out;
	}
	parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
	high = calloc(md->topics[0].partition_cnt, sizeof(*high));
	for (int i = 0; high && i < md->topics[0].partition_cnt; i++) {
		int32_t p = md->topics[0].partitions[i].id;
		int64_t lo, hi;

		e = rd_kafka_query_watermark_offsets(rk, o->topic, p, &lo, &hi, 10000);
		if (e) {
			log_error("verify: %s [%d]: %s", o->topic, p, rd_kafka_err2str(e));
			goto out;
		}
		high[i] = hi;
		if (hi > lo) {
			rd_kafka_topic_partition_list_add(parts, o->topic, p)->offset =
				RD_KAFKA_OFFSET_BEGINNING;
			left++;
		}
	}
	if (!high || (e = rd_kafka_assign(rk, parts))) {
		log_error("verify: assign: %s", rd_kafka_err2str(e));
		goto out;
	}
	while (left > 0) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
		int idx = -1;

		if (!m) {
			if (++idle >= 30) {
				log_error("verify: no message for 30 s, %d partitions "
					  "not read to their end",
					  left);
				goto out;
			}
			continue;
		}
		idle = 0;
		for (int i = 0; i < md->topics[0].partition_cnt; i++)
			if (md->topics[0].partitions[i].id == m->partition)
				idx = i;
		if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			log_error("verify: %s", rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			goto out;
		}
		if (!m->err)
			verifier_feed(v, m->payload, m->len);
		if (idx >= 0 && high[idx] >= 0 &&
		    (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF || m->offset + 1 >= high[idx])) {
			high[idx] = -1; /* read to where it ended when verify started */
			left--;
		}
		rd_kafka_message_destroy(m);
	}
	rc = 0;
out:
	free(high);
	if (parts)
		rd_kafka_topic_partition_list_destroy(parts);
	if (md)
		rd_kafka_metadata_destroy(md);
	if (rkt)
		rd_kafka_topic_destroy(rkt);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return rc;
}

int verify_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "kafka-brokers", required_argument, NULL, OPT_KAFKA_BROKERS },
		{ "kafka-topic", required_argument, NULL, OPT_KAFKA_TOPIC },
		{ "kafka-config", required_argument, NULL, OPT_KAFKA_CONFIG },
		{ "kafka-config-file", required_argument, NULL, OPT_KAFKA_CONFIG_FILE },
		{ 0 },
	};
	struct output_opts o = { 0 };
	struct verifier *v;
	int opt, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		rc = output_opt(&o, opt, optarg);
		if (rc <= 0)
			goto usage;
	}
	if (!((optind == argc - 1 && !o.kafka.brokers && !o.kafka.topic) ||
	      (optind == argc && o.kafka.brokers && o.kafka.topic)))
		goto usage;
	v = verifier_new();
	if (!v) {
		log_error("out of memory");
		return 1;
	}
	rc = optind < argc ? read_file(v, argv[optind]) : read_topic(v, &o.kafka);
	if (!rc)
		rc = verifier_report(v, stdout) ? 1 : 0;
	else
		rc = 1;
	verifier_free(v);
	return rc;
usage:
	log_error("verify FILE|- | verify --kafka-brokers H:P,... --kafka-topic "
		  "NAME [--kafka-config K=V ...] [--kafka-config-file FILE]");
	return 2;
}
