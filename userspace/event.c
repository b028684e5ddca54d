// SPDX-License-Identifier: GPL-2.0-only
/*
 * Audit event envelope, serialisation, the hash chain, the persisted seq,
 * and the stdout / file sinks.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include "chain.h"
#include "event.h"
#include "kafka.h"
#include "statefile.h"
#include "log.h"

struct emitter {
	struct sink *sinks[OUTPUT_MAX];
	int nsinks;
	uint64_t seq, first_seq, stored_seq;
	uint64_t errors, losses;
	int64_t mono_to_real_ns; /* realtime - monotonic, taken at start */
	char agent_id[80];
	char node[256];
	char instance[33];
	/* the hash chain: SHA-256 of the last event's bytes (chain.h) */
	char prev_hex[CHAIN_HEX_LEN + 1];
	/* the state directory: its lock and agent.state (seq, prev, instance, clean) */
	int lock_fd;
	struct statefile *state;
	/*
	 * The batch: events serialised straight into one buffer (jansson's own
	 * FILE output is a fwrite per token), handed to every sink at a flush.
	 */
	char *batch;
	size_t blen, bcap;
	struct sink_rec *recs;
	size_t nrecs, rcap;
	bool oom;
	/* event times by seq, from event_new to event_emit (sinks measure latency) */
	struct {
		uint64_t seq, ts;
	} ts_ring[256];
};

/* A batch larger than this is handed to the sinks at once. */
#define BATCH_FLUSH (1u << 20)

/* json_dump_callback sink: append to the batch. */
static int batch_append(const char *buf, size_t n, void *data)
{
	struct emitter *em = data;

	if (em->blen + n + 1 > em->bcap) {
		size_t ncap = em->bcap ? em->bcap * 2 : 4096;
		char *nl;

		while (ncap < em->blen + n + 1)
			ncap *= 2;
		nl = realloc(em->batch, ncap);
		if (!nl) {
			em->oom = true;
			return -1;
		}
		em->batch = nl;
		em->bcap = ncap;
	}
	memcpy(em->batch + em->blen, buf, n);
	em->blen += n;
	return 0;
}

static void read_first_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");

	buf[0] = 0;
	if (!f)
		return;
	if (fgets(buf, len, f))
		buf[strcspn(buf, "\r\n")] = 0;
	fclose(f);
}

/* JSON Lines on stdout or in a file: the batch as it is, then fflush. */
struct jsonl_sink {
	struct sink sink;
	FILE *out;
	bool own;
};

static uint64_t jsonl_write(struct sink *s, const struct sink_batch *b)
{
	struct jsonl_sink *j = (struct jsonl_sink *)s;

	if (fwrite_unlocked(b->buf, 1, b->len, j->out) != b->len || fflush(j->out))
		return b->n;
	return 0;
}

static void jsonl_close(struct sink *s)
{
	struct jsonl_sink *j = (struct jsonl_sink *)s;

	if (j->own)
		fclose(j->out);
	else
		fflush(j->out);
	free(j);
}

/*
 * A run killed in the middle of a write leaves its last event cut short:
 * appending after it would glue the next event to the torn one. Cut the
 * file back to its last whole line (that event is missing, and the
 * unclean_restart alert says events may be).
 */
static void drop_torn_line(int fd, const char *path)
{
	char buf[4096];
	off_t end = lseek(fd, 0, SEEK_END), pos = end;

	while (pos > 0) {
		size_t n = pos < (off_t)sizeof(buf) ? (size_t)pos : sizeof(buf);
		ssize_t got = pread(fd, buf, n, pos - n);

		if (got != (ssize_t)n)
			return;
		for (size_t i = n; i-- > 0;) {
			if (buf[i] != '\n')
				continue;
			pos -= n - i - 1;
			goto found;
		}
		pos -= n;
	}
found:
	if (pos < end && !ftruncate(fd, pos))
		log_warn("%s: removed a torn last line (%lld bytes) left by a run "
			 "that died while writing it",
			 path, (long long)(end - pos));
}

static struct sink *jsonl_sink_new(const char *spec, char *err, size_t errlen)
{
	struct jsonl_sink *j = calloc(1, sizeof(*j));

	if (!j) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	j->sink.name = spec;
	j->sink.write = jsonl_write;
	j->sink.close = jsonl_close;
	if (!strcmp(spec, "stdout")) {
		j->out = stdout;
	} else {
		j->out = fopen(spec + 5, "ae");
		if (!j->out) {
			snprintf(err, errlen, "cannot open output %s: %s", spec + 5,
				 strerror(errno));
			free(j);
			return NULL;
		}
		j->own = true;
		drop_torn_line(fileno(j->out), spec + 5);
	}
	/* whole batches are written at once */
	setvbuf(j->out, NULL, _IOFBF, 1 << 20);
	return &j->sink;
}

/*
 * Store seq, the chain's last hash and whether this is a clean stop in
 * agent.state. Called before a batch leaves the process, so that the
 * stored seq is never below an event anyone received; force: also when
 * seq did not move (start, stop).
 */
static void checkpoint(struct emitter *em, bool clean, bool force)
{
	char text[STATEFILE_TEXT_MAX + 1];

	if (!em->state || (em->seq == em->stored_seq && !force))
		return;
	snprintf(text, sizeof(text), "seq=%llu prev=%s instance=%s clean=%d",
		 (unsigned long long)em->seq, em->prev_hex, em->instance, clean);
	if (statefile_store(em->state, text, clean))
		em->errors++;
	else
		em->stored_seq = em->seq;
}

/*
 * Take the state directory: seq and the chain go on from where the last
 * run stopped. Returns 1 if that run did not stop cleanly, 0, or -1 with
 * a reason in err.
 */
static int state_open(struct emitter *em, const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX], text[STATEFILE_TEXT_MAX + 1], prev[CHAIN_HEX_LEN + 1];
	uint8_t h[CHAIN_HASH_LEN];
	uint64_t seq, clean = 1;

	em->lock_fd = state_dir_lock(dir, err, errlen);
	if (em->lock_fd < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/agent.state", dir);
	em->state = statefile_open(path, err, errlen);
	if (!em->state)
		return -1;
	if (statefile_load(em->state, text, sizeof(text)))
		return 0; /* a new agent: seq 1, a chain from zero */
	if (kv_u64(text, "seq", &seq) || kv_str(text, "prev", prev, sizeof(prev)) ||
	    chain_unhex(prev, h)) {
		snprintf(err, errlen, "%s: unreadable state '%s'", path, text);
		return -1;
	}
	kv_u64(text, "clean", &clean);
	em->seq = em->stored_seq = seq;
	memcpy(em->prev_hex, prev, sizeof(prev));
	return !clean;
}

/* One `loss` event for what a sink had to drop, and the log line. */
static void emit_loss(struct emitter *em, const struct sink *s, const struct sink_loss *l)
{
	json_t *ev = event_new(em, "loss", 0);

	log_warn("loss: %s +%llu (seq %llu..%llu, output %s)", l->counter,
		 (unsigned long long)l->count, (unsigned long long)l->first_seq,
		 (unsigned long long)l->last_seq, s->name);
	em->losses += l->count;
	if (ev)
		json_object_set_new(ev, "loss",
				    json_pack("{s:s, s:s, s:I, s:s, s:I, s:I}", "reason", l->reason,
					      "counter", l->counter, "count", (json_int_t)l->count,
					      "output", s->name, "first_seq",
					      (json_int_t)l->first_seq, "last_seq",
					      (json_int_t)l->last_seq));
	event_emit(em, ev);
}

struct emitter *emitter_open(const struct output_opts *o, char *err, size_t errlen)
{
	struct emitter *em = calloc(1, sizeof(*em));
	struct timespec rt, mt;
	unsigned char rnd[16];
	int unclean = 0;

	if (!em) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	em->lock_fd = -1;
	memset(em->prev_hex, '0', CHAIN_HEX_LEN);
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mt);
	em->mono_to_real_ns =
		(int64_t)(rt.tv_sec - mt.tv_sec) * 1000000000 + (rt.tv_nsec - mt.tv_nsec);

	read_first_line("/etc/machine-id", em->agent_id, sizeof(em->agent_id));
	/* in a pod the host name is the pod's: the node's name comes from the downward API */
	if (getenv("NODE_NAME") && *getenv("NODE_NAME"))
		snprintf(em->node, sizeof(em->node), "%s", getenv("NODE_NAME"));
	else if (gethostname(em->node, sizeof(em->node)))
		snprintf(em->node, sizeof(em->node), "unknown");
	if (!em->agent_id[0])
		snprintf(em->agent_id, sizeof(em->agent_id), "%s", em->node);
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		memset(rnd, 0, sizeof(rnd));
	for (int i = 0; i < 16; i++)
		sprintf(em->instance + 2 * i, "%02x", rnd[i]);

	if (o->state_dir) {
		unclean = state_open(em, o->state_dir, err, errlen);
		if (unclean < 0)
			goto fail;
	}
	for (int i = 0; i < o->noutputs; i++) {
		struct sink *s =
			!strcmp(o->outputs[i], "kafka") ?
				kafka_sink_new(&o->kafka, o->state_dir, em->agent_id, err, errlen) :
				jsonl_sink_new(o->outputs[i], err, errlen);

		if (!s)
			goto fail;
		em->sinks[em->nsinks++] = s;
		if (s->last_seq > em->seq) {
			/* the state was lost but the spool was not: no seq twice; the chain restarts */
			em->seq = s->last_seq;
			memset(em->prev_hex, '0', CHAIN_HEX_LEN);
		}
	}
	em->first_seq = em->seq;
	checkpoint(em, false, true); /* marks the run as not (yet) stopped cleanly */
	if (unclean) {
		json_t *ev = event_new(em, "alert", 0);

		event_set_alert(ev, "unclean_restart",
				"the previous run did not stop cleanly: events it had not written "
				"out before it died are missing",
				NULL);
		if (ev)
			json_object_set_new(json_object_get(ev, "alert"), "last_seq",
					    json_integer(em->first_seq));
		event_emit(em, ev);
	}
	/* a loss an earlier run could not report yet */
	emitter_flush(em);
	return em;
fail:
	emitter_free(em);
	return NULL;
}

struct emitter *emitter_new(const char *spec, char *err, size_t errlen)
{
	struct output_opts o = { .outputs = { spec }, .noutputs = 1 };

	if (strcmp(spec, "stdout") && (strncmp(spec, "file:", 5) || !spec[5])) {
		snprintf(err, errlen, "unknown output '%s' (expected stdout or file:PATH)", spec);
		return NULL;
	}
	return emitter_open(&o, err, errlen);
}

void emitter_free(struct emitter *em)
{
	if (!em)
		return;
	emitter_flush(em);
	for (int i = 0; i < em->nsinks; i++)
		em->sinks[i]->close(em->sinks[i]);
	if (em->nsinks)
		checkpoint(em, true, true);
	statefile_close(em->state);
	if (em->lock_fd >= 0)
		close(em->lock_fd);
	free(em->batch);
	free(em->recs);
	free(em);
}

static void format_time(const struct emitter *em, uint64_t mono_ns, char *buf, size_t len)
{
	/* unsigned: a record's timestamp is the kernel's word, not trusted arithmetic */
	int64_t real = (int64_t)(mono_ns + (uint64_t)em->mono_to_real_ns);
	time_t sec;
	struct tm tm;

	if (real < 0)
		real = 0;
	sec = real / 1000000000;

	gmtime_r(&sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(real % 1000000000) / 1000);
}

void event_set_alert(json_t *ev, const char *kind, const char *detail, const char *where)
{
	static const char *const routine[] = { "policy_loaded", "identity_restored",
					       "approval_granted" };
	static struct {
		const char *kind;
		struct log_limit lim;
	} seen[32];
	enum dbw_log_level level = DBW_LOG_WARN;
	struct timespec now;
	uint64_t held = 0;
	size_t i;

	if (ev)
		json_object_set_new(ev, "alert",
				    json_pack("{s:s, s:s}", "kind", kind, "detail", detail));
	for (i = 0; i < sizeof(routine) / sizeof(routine[0]); i++)
		if (!strcmp(kind, routine[i]))
			level = DBW_LOG_INFO;
	if (!log_enabled(level))
		return;
	/* kinds are a small fixed set of literals; past 32, no limit */
	for (i = 0; i < sizeof(seen) / sizeof(seen[0]); i++)
		if (!seen[i].kind || !strcmp(seen[i].kind, kind))
			break;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (i < sizeof(seen) / sizeof(seen[0])) {
		seen[i].kind = kind;
		if (!log_limit_pass(&seen[i].lim, now.tv_sec * 1000ULL + now.tv_nsec / 1000000,
				    10000, &held))
			return;
	}
	if (held)
		log_write(level, "alert %s%s%s: %s (and %llu more in the last 10 s)", kind,
			  where ? " " : "", where ? where : "", detail, (unsigned long long)held);
	else
		log_write(level, "alert %s%s%s: %s", kind, where ? " " : "", where ? where : "",
			  detail);
}

json_t *event_new(struct emitter *em, const char *type, uint64_t ts_mono_ns)
{
	char when[40];

	if (!ts_mono_ns) {
		struct timespec mt;

		clock_gettime(CLOCK_MONOTONIC, &mt);
		ts_mono_ns = (uint64_t)mt.tv_sec * 1000000000 + mt.tv_nsec;
	}
	format_time(em, ts_mono_ns, when, sizeof(when));
	em->seq++;
	em->ts_ring[em->seq % 256].seq = em->seq;
	em->ts_ring[em->seq % 256].ts = ts_mono_ns;
	return json_pack("{s:s, s:s, s:{s:o, s:o, s:s, s:I}, s:s}", "schema", DBW_SCHEMA, "type",
			 type, "agent", "id", json_str_or_null(em->agent_id), "node",
			 json_str_or_null(em->node), "instance", em->instance, "seq",
			 (json_int_t)em->seq, "time", when);
}

int event_emit(struct emitter *em, json_t *ev)
{
	return event_emit_parts(em, ev, NULL);
}

/* Room for one more record in the batch's index. */
static int recs_reserve(struct emitter *em)
{
	if (em->nrecs == em->rcap) {
		size_t ncap = em->rcap ? em->rcap * 2 : 256;
		struct sink_rec *n = realloc(em->recs, ncap * sizeof(*n));

		if (!n)
			return -1;
		em->recs = n;
		em->rcap = ncap;
	}
	return 0;
}

int event_emit_parts(struct emitter *em, json_t *ev, const char *tail)
{
	size_t start = em->blen;
	json_t *agent = json_object_get(ev, "agent");
	uint64_t seq = json_integer_value(json_object_get(agent, "seq"));
	uint8_t h[CHAIN_HASH_LEN];
	struct sink_rec *r;

	/* json_pack failed (out of memory): the seq number is spent, say so */
	if (!ev || recs_reserve(em) ||
	    json_object_set_new(agent, "prev", json_stringn_nocheck(em->prev_hex, CHAIN_HEX_LEN)) ||
	    json_dump_callback(ev, batch_append, em, JSON_COMPACT | JSON_ENSURE_ASCII) ||
	    (tail && em->blen > start &&
	     (em->blen--, batch_append(tail, strlen(tail), em) || batch_append("}", 1, em)))) {
		em->blen = start;
		em->errors++;
		json_decref(ev);
		return -1;
	}
	json_decref(ev);
	/* the next event carries the hash of these bytes, exactly as every sink gets them */
	chain_hash(em->batch + start, em->blen - start, h);
	chain_hex(h, em->prev_hex);
	r = &em->recs[em->nrecs++];
	r->seq = seq;
	r->ts_ns = em->ts_ring[seq % 256].seq == seq ? em->ts_ring[seq % 256].ts : 0;
	r->off = start;
	r->len = em->blen - start;
	em->batch[em->blen++] = '\n'; /* batch_append always leaves room for one byte */
	if (em->blen >= BATCH_FLUSH)
		emitter_flush(em);
	return 0;
}

/* Every sink takes the batch; then each does its regular work and may report a loss. */
void emitter_flush(struct emitter *em)
{
	for (int round = 0; round < 2; round++) {
		bool lost = false;

		if (em->nrecs) {
			struct sink_batch b = { em->batch, em->blen, em->recs, em->nrecs };

			checkpoint(em, false, false);
			for (int i = 0; i < em->nsinks; i++)
				em->errors += em->sinks[i]->write(em->sinks[i], &b);
			em->blen = 0;
			em->nrecs = 0;
		}
		for (int i = 0; i < em->nsinks; i++) {
			struct sink_loss l;

			if (em->sinks[i]->poll && em->sinks[i]->poll(em->sinks[i], &l) == 1) {
				emit_loss(em, em->sinks[i], &l);
				lost = true;
			}
		}
		if (!lost)
			break;
	}
}

uint64_t emitter_seq(const struct emitter *em)
{
	return em->seq - em->first_seq;
}

uint64_t emitter_errors(const struct emitter *em)
{
	return em->errors;
}

uint64_t emitter_losses(const struct emitter *em)
{
	return em->losses;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t need;
	uint32_t cp;

	if (s[0] < 0x80)
		return s[0] ? 1 : 0;
	if ((s[0] & 0xe0) == 0xc0)
		need = 2, cp = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		need = 3, cp = s[0] & 0x0f;
	else if ((s[0] & 0xf8) == 0xf0)
		need = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (need > n)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((need == 2 && cp < 0x80) || (need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return need;
}

json_t *json_str_safe(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	json_t *j;
	char *copy;
	size_t i = 0;

	while (i < len) {
		size_t k = utf8_seq(u + i, len - i);

		if (!k)
			break;
		i += k;
	}
	if (i == len)
		return json_stringn_nocheck(s, len);
	/* bytes a client or the kernel handed us need not be UTF-8: replace, never drop */
	copy = malloc(len);
	if (!copy)
		return NULL;
	memcpy(copy, s, len);
	while (i < len) {
		size_t k = utf8_seq(u + i, len - i);

		if (!k)
			copy[i++] = '?';
		else
			i += k;
	}
	j = json_stringn_nocheck(copy, len);
	free(copy);
	return j;
}

json_t *json_str_or_null(const char *s)
{
	return s && *s ? json_str_safe(s, strlen(s)) : json_null();
}
