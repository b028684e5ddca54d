// SPDX-License-Identifier: GPL-2.0-only
/*
 * The Kafka output.
 *
 * Every event is appended to the spool first. When the spool has nothing
 * else unread and no delivery has failed, the event is also produced at
 * once from memory (the common case); otherwise the spool's reader feeds
 * the producer, oldest first, keeping at most `window` messages in
 * librdkafka's queue. A delivery report acknowledges the event in the
 * spool, which deletes what is delivered. A failed delivery stops the
 * feeding; once librdkafka's queue is empty the reader goes back to the
 * first unacknowledged event and sends again from there, so order holds.
 * When the spool is full, events are dropped (counted, contiguous in seq)
 * until it has room again, and then one `loss` event reports them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "kafka.h"
#include "spool.h"
#include "statefile.h"
#include "log.h"

/* statement -> delivery latency: log-linear, 16 buckets per power of two of µs */
#define HIST_SUB     16
#define HIST_BUCKETS (40 * HIST_SUB)
/* event times of recent seqs, for the latency of their delivery report */
#define TS_RING (1u << 16)
/* how long close() keeps delivering before it leaves the rest in the spool */
#define CLOSE_FLUSH_MS 5000

struct kafka_sink {
	struct sink sink;
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	struct kafka_opts o;
	char spool_dir[4096];
	char key[128];
	size_t keylen;
	struct spool *sp;
	struct statefile *lossf; /* a loss no event could report before exit */
	int window; /* messages in librdkafka's queue at most, when feeding */
	bool failed; /* a delivery failed: rewind once the queue is empty */
	bool fatal; /* librdkafka raised a fatal error: new producer */
	bool dropping; /* the spool was full: dropping until the loss is reported */
	uint64_t drop_first, drop_last, drop_count;
	uint64_t produced, delivered, dr_errors, dropped, replayed, rewinds;
	uint64_t first_produce_ns, last_delivery_ns; /* the sustained rate */
	rd_kafka_resp_err_t last_err;
	uint64_t last_err_ms;
	struct {
		uint64_t seq, ts;
	} ring[TS_RING];
	uint64_t hist[HIST_BUCKETS], samples;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static unsigned hist_bucket(uint64_t us)
{
	unsigned p, b;

	if (us < HIST_SUB)
		return us;
	p = 63 - __builtin_clzll(us); /* >= 4 */
	b = (p - 3) * HIST_SUB + ((us >> (p - 4)) & (HIST_SUB - 1));
	return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

/* The largest value of bucket b (a percentile is reported on the safe side). */
static uint64_t hist_upper(unsigned b)
{
	unsigned p = b / HIST_SUB + 3, sub = b % HIST_SUB;

	if (b < HIST_SUB)
		return b;
	return ((uint64_t)(HIST_SUB + sub + 1) << (p - 4)) - 1;
}

static uint64_t hist_pct(const struct kafka_sink *k, double pct)
{
	uint64_t want = (uint64_t)(k->samples * pct / 100.0), seen = 0;

	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		seen += k->hist[b];
		if (seen > want)
			return hist_upper(b);
	}
	return 0;
}

/* One line per error kind, and again at most every 10 s: an outage must not flood stderr. */
static void log_err(struct kafka_sink *k, rd_kafka_resp_err_t err, const char *what,
		    const char *reason)
{
	uint64_t now = mono_ns() / 1000000;

	if (err == k->last_err && now - k->last_err_ms < 10000)
		return;
	k->last_err = err;
	k->last_err_ms = now;
	log_warn("kafka: %s: %s", what, reason ? reason : rd_kafka_err2str(err));
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct kafka_sink *k = opaque;
	uint64_t seq = (uintptr_t)m->_private;
	unsigned slot = seq % TS_RING;

	if (m->err) {
		k->dr_errors++;
		k->failed = true;
		log_err(k, m->err, "delivery failed (kept in the spool, sent again)", NULL);
		return;
	}
	k->delivered++;
	k->last_delivery_ns = mono_ns();
	/*
	 * After a failure, later successes are not acknowledged: the rewind sends
	 * them again (at worst a byte-identical duplicate, never a gap).
	 */
	if (!k->failed)
		spool_ack(k->sp, seq);
	if (k->ring[slot].seq == seq && k->ring[slot].ts) {
		uint64_t now = k->last_delivery_ns, ts = k->ring[slot].ts;

		k->hist[hist_bucket(now > ts ? (now - ts) / 1000 : 0)]++;
		k->samples++;
	}
	if (k->last_err) {
		log_info("kafka: delivering again");
		k->last_err = 0;
	}
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct kafka_sink *k = opaque;

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		char why[512];

		rd_kafka_fatal_error(rk, why, sizeof(why));
		log_error("kafka: fatal: %s: starting a new producer", why);
		k->fatal = true;
		return;
	}
	log_err(k, err,
		err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ?
			"all brokers down, events wait in the spool" :
			"error",
		reason);
}

/* librdkafka's own log: only what is critical, or everything under `debug`. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	const struct kafka_sink *k = rd_kafka_opaque(rk);
	bool debug = false;

	for (int i = 0; k && i < k->o.nconf; i++)
		debug |= !strncmp(k->o.conf[i], "debug=", 6);
	if (level <= LOG_CRIT)
		log_error("kafka: %s: %s", fac, buf);
	else if (debug)
		log_info("kafka: %s: %s", fac, buf);
}

static int conf_set(rd_kafka_conf_t *conf, const char *kv, char *err, size_t errlen)
{
	char key[256], e[512];
	const char *eq = strchr(kv, '=');

	if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(key)) {
		snprintf(err, errlen, "kafka config '%s': expected KEY=VALUE", kv);
		return -1;
	}
	memcpy(key, kv, eq - kv);
	key[eq - kv] = 0;
	if (rd_kafka_conf_set(conf, key, eq + 1, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "kafka config %s: %s", key, e);
		return -1;
	}
	return 0;
}

static int conf_file(rd_kafka_conf_t *conf, const char *path, char *err, size_t errlen)
{
	char line[4096], sub[512];
	int lineno = 0, rc = 0;
	FILE *f = fopen(path, "re");

	if (!f) {
		snprintf(err, errlen, "--kafka-config-file %s: %s", path, strerror(errno));
		return -1;
	}
	while (!rc && fgets(line, sizeof(line), f)) {
		char *s = line, *end;

		lineno++;
		s += strspn(s, " \t");
		end = s + strcspn(s, "\r\n");
		while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		*end = 0;
		if (!*s || *s == '#')
			continue;
		if (conf_set(conf, s, sub, sizeof(sub))) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, sub);
			rc = -1;
		}
	}
	fclose(f);
	return rc;
}

rd_kafka_conf_t *kafka_conf_new(const struct kafka_opts *o, const char *const *defaults, char *err,
				size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char e[512];

	for (int i = 0; defaults && defaults[i]; i++)
		if (conf_set(conf, defaults[i], err, errlen))
			goto fail;
	if (rd_kafka_conf_set(conf, "bootstrap.servers", o->brokers, e, sizeof(e))) {
		snprintf(err, errlen, "--kafka-brokers %s: %s", o->brokers, e);
		goto fail;
	}
	if (o->conf_file && conf_file(conf, o->conf_file, err, errlen))
		goto fail;
	for (int i = 0; i < o->nconf; i++)
		if (conf_set(conf, o->conf[i], err, errlen))
			goto fail;
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* Producer defaults: see README, Kafka. */
static const char *const producer_defaults[] = {
	"enable.idempotence=true", /* no duplicate, no reordering on retries */
	"acks=all",
	"compression.type=lz4",
	"linger.ms=5", /* batches without making a statement wait long */
	"queue.buffering.max.messages=100000",
	NULL,
};

static int producer_start(struct kafka_sink *k, char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = kafka_conf_new(&k->o, producer_defaults, err, errlen);
	char e[512];

	if (!conf)
		return -1;
	rd_kafka_conf_set_opaque(conf, k);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_log_cb(conf, on_log);
	k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (!k->rk) {
		rd_kafka_conf_destroy(conf);
		snprintf(err, errlen, "kafka: %s", e);
		return -1;
	}
	k->rkt = rd_kafka_topic_new(k->rk, k->o.topic, NULL);
	if (!k->rkt) {
		snprintf(err, errlen, "kafka: topic %s: %s", k->o.topic,
			 rd_kafka_err2str(rd_kafka_last_error()));
		rd_kafka_destroy(k->rk);
		k->rk = NULL;
		return -1;
	}
	k->fatal = false;
	return 0;
}

/* Drop what librdkafka holds (it is all in the spool) and the producer. */
static void producer_stop(struct kafka_sink *k)
{
	if (!k->rk)
		return;
	rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_poll(k->rk, 0); /* purged messages report as failed deliveries */
	rd_kafka_topic_destroy(k->rkt);
	rd_kafka_destroy(k->rk);
	k->rk = NULL;
	k->rkt = NULL;
}

/* Hand one event to librdkafka (copied). 0, or -1 (queue full or refused: try later). */
static int produce(struct kafka_sink *k, uint64_t seq, const void *data, size_t len)
{
	rd_kafka_resp_err_t e;

	e = rd_kafka_producev(k->rk, RD_KAFKA_V_RKT(k->rkt), RD_KAFKA_V_KEY(k->key, k->keylen),
			      RD_KAFKA_V_VALUE((void *)data, len),
			      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
			      RD_KAFKA_V_OPAQUE((void *)(uintptr_t)seq), RD_KAFKA_V_END);
	if (e) {
		if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			log_err(k, e, "produce", NULL);
		return -1;
	}
	if (!k->produced++)
		k->first_produce_ns = mono_ns();
	return 0;
}

/* Feed the producer from the spool, oldest first, up to the window. */
static void feed(struct kafka_sink *k)
{
	const void *data;
	uint64_t seq;
	uint32_t len;
	int r;

	while (!k->failed && rd_kafka_outq_len(k->rk) < k->window) {
		r = spool_peek(k->sp, &seq, &data, &len);
		if (r < 0)
			log_err(k, RD_KAFKA_RESP_ERR__FS, "spool", strerror(-r));
		if (r <= 0 || produce(k, seq, data, len))
			return;
		spool_consume(k->sp);
		k->replayed++;
	}
}

static uint64_t kafka_write(struct sink *s, const struct sink_batch *b)
{
	struct kafka_sink *k = (struct kafka_sink *)s;

	for (size_t i = 0; i < b->n; i++) {
		const struct sink_rec *r = &b->recs[i];
		const char *data = b->buf + r->off;
		int e = k->dropping ? -ENOSPC : spool_append(k->sp, r->seq, data, r->len);

		if (e) {
			/* dropped: contiguous from the first until the loss is reported */
			if (!k->dropping) {
				k->dropping = true;
				k->drop_first = r->seq;
				k->drop_count = 0;
				if (e != -ENOSPC)
					log_err(k, RD_KAFKA_RESP_ERR__FS, "spool", strerror(-e));
			}
			k->drop_last = r->seq;
			k->drop_count++;
			k->dropped++;
			continue;
		}
		k->ring[r->seq % TS_RING].seq = r->seq;
		k->ring[r->seq % TS_RING].ts = r->ts_ns;
		/* nothing older waits: straight to the producer, the spool copy is for failures */
		if (k->rk && !k->failed && spool_unread(k->sp) == 1 &&
		    !produce(k, r->seq, data, r->len))
			spool_skip_last(k->sp);
	}
	if (k->rk)
		rd_kafka_poll(k->rk, 0);
	return 0;
}

/* Serve reports, recover from failures, feed the producer, write the spool out. */
static void pump(struct kafka_sink *k)
{
	char err[512];

	if (k->rk)
		rd_kafka_poll(k->rk, 0);
	if (k->fatal || !k->rk) {
		/* everything not acknowledged is in the spool: a new producer sends it again */
		producer_stop(k);
		if (producer_start(k, err, sizeof(err))) {
			log_err(k, RD_KAFKA_RESP_ERR__FATAL, "new producer", err);
			return;
		}
		k->failed = true;
	}
	if (k->failed && rd_kafka_outq_len(k->rk) == 0) {
		/* every report is in: send again from the first event not acknowledged */
		spool_rewind(k->sp);
		k->failed = false;
		k->rewinds++;
	}
	feed(k);
	spool_sync(k->sp, false);
}

static int kafka_poll(struct sink *s, struct sink_loss *loss)
{
	struct kafka_sink *k = (struct kafka_sink *)s;
	struct spool_stats st;

	pump(k);
	spool_stats(k->sp, &st);
	/* report when a good part is free again, not at every event that fits */
	if (k->dropping && spool_has_room(k->sp, st.max_bytes / 8)) {
		loss->reason = "spool_full";
		loss->counter = "kafka_spool_full";
		loss->count = k->drop_count;
		loss->first_seq = k->drop_first;
		loss->last_seq = k->drop_last;
		k->dropping = false;
		return 1;
	}
	return 0;
}

static void kafka_close(struct sink *s)
{
	struct kafka_sink *k = (struct kafka_sink *)s;
	uint64_t deadline = mono_ns() + (uint64_t)CLOSE_FLUSH_MS * 1000000;
	struct spool_stats st;
	char text[160];
	int left = 0;

	if (k->rk) {
		/* deliver what the broker takes within the time, spool included */
		while (mono_ns() < deadline) {
			pump(k);
			if (!spool_unread(k->sp) && !rd_kafka_outq_len(k->rk))
				break;
			rd_kafka_flush(k->rk, 100);
		}
		left = rd_kafka_outq_len(k->rk);
	}
	producer_stop(k);
	spool_stats(k->sp, &st);
	log_info("kafka: produced %" PRIu64 ", delivered %" PRIu64 ", delivery failures %" PRIu64
		 ", replayed from the spool %" PRIu64 ", dropped (spool full) %" PRIu64
		 ", left in the queue %d, "
		 "in the spool for the next start %" PRIu64 " (%" PRIu64 " bytes)",
		 k->produced, k->delivered, k->dr_errors, k->replayed, k->dropped, left, st.pending,
		 st.bytes);
	if (k->samples)
		log_info("kafka: statement to delivery: p50 %" PRIu64 " us, p99 %" PRIu64
			 " us, max %" PRIu64 " us (%" PRIu64 " events)",
			 hist_pct(k, 50), hist_pct(k, 99), hist_pct(k, 100), k->samples);
	if (k->delivered > 1 && k->last_delivery_ns > k->first_produce_ns)
		log_info("kafka: %.0f events/s from the first produce to the last delivery",
			 k->delivered * 1e9 / (k->last_delivery_ns - k->first_produce_ns));
	if (k->dropping) {
		/* no event could say it before exit: the next start will */
		snprintf(text, sizeof(text), "first=%" PRIu64 " last=%" PRIu64 " count=%" PRIu64,
			 k->drop_first, k->drop_last, k->drop_count);
		log_warn("loss: kafka_spool_full +%" PRIu64 " (reported at the next start)",
			 k->drop_count);
	} else {
		snprintf(text, sizeof(text), "count=0");
	}
	if (k->lossf)
		statefile_store(k->lossf, text, true);
	statefile_close(k->lossf);
	spool_close(k->sp);
	free(k);
}

struct sink *kafka_sink_new(const struct kafka_opts *o, const char *state_dir, const char *key,
			    char *err, size_t errlen)
{
	struct kafka_sink *k = calloc(1, sizeof(*k));
	char path[4200], text[STATEFILE_TEXT_MAX + 1];
	struct spool_stats st;

	if (!k) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	k->sink.name = "kafka";
	k->sink.write = kafka_write;
	k->sink.poll = kafka_poll;
	k->sink.close = kafka_close;
	k->o = *o;
	k->window = 50000;
	snprintf(k->key, sizeof(k->key), "%s", key);
	k->keylen = strlen(k->key);
	snprintf(k->spool_dir, sizeof(k->spool_dir), "%s/spool", state_dir);
	k->sp = spool_open(k->spool_dir, o->spool_max, err, errlen);
	if (!k->sp)
		goto fail;
	snprintf(path, sizeof(path), "%s/loss", k->spool_dir);
	k->lossf = statefile_open(path, err, errlen);
	if (!k->lossf)
		goto fail;
	if (!statefile_load(k->lossf, text, sizeof(text)) &&
	    !kv_u64(text, "count", &k->drop_count) && k->drop_count &&
	    !kv_u64(text, "first", &k->drop_first) && !kv_u64(text, "last", &k->drop_last))
		k->dropping = true; /* reported at the first poll, when there is room */
	else
		k->drop_count = 0;
	spool_stats(k->sp, &st);
	k->sink.last_seq = k->dropping && k->drop_last > st.last_seq ? k->drop_last : st.last_seq;
	if (producer_start(k, err, errlen))
		goto fail;
	if (st.pending)
		log_info("kafka: %" PRIu64 " events from an earlier run in the spool: "
			 "sending them first",
			 st.pending);
	return &k->sink;
fail:
	statefile_close(k->lossf);
	spool_close(k->sp);
	free(k);
	return NULL;
}
