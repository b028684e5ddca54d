// SPDX-License-Identifier: GPL-2.0-only
/* Audit event envelope, serialisation, and the stdout / file sinks. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include "event.h"

struct emitter {
	FILE *out;
	bool own;
	uint64_t seq;
	uint64_t errors;
	int64_t mono_to_real_ns; /* realtime - monotonic, taken at start */
	char agent_id[80];
	char node[256];
	char instance[33];
	/* one serialized event: jansson's own FILE output is a fwrite per token */
	char *line;
	size_t len, cap;
	bool oom;
};

/* json_dump_callback sink: append to em->line. */
static int line_append(const char *buf, size_t n, void *data)
{
	struct emitter *em = data;

	if (em->len + n + 1 > em->cap) {
		size_t ncap = em->cap ? em->cap * 2 : 4096;
		char *nl;

		while (ncap < em->len + n + 1)
			ncap *= 2;
		nl = realloc(em->line, ncap);
		if (!nl) {
			em->oom = true;
			return -1;
		}
		em->line = nl;
		em->cap = ncap;
	}
	memcpy(em->line + em->len, buf, n);
	em->len += n;
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

struct emitter *emitter_new(const char *spec, char *err, size_t errlen)
{
	struct emitter *em = calloc(1, sizeof(*em));
	struct timespec rt, mt;
	unsigned char rnd[16];

	if (!em) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (!strcmp(spec, "stdout")) {
		em->out = stdout;
	} else if (!strncmp(spec, "file:", 5) && spec[5]) {
		em->out = fopen(spec + 5, "ae");
		if (!em->out) {
			snprintf(err, errlen, "cannot open output %s: %s", spec + 5,
				 strerror(errno));
			free(em);
			return NULL;
		}
		em->own = true;
	} else {
		snprintf(err, errlen, "unknown output '%s' (expected stdout or file:PATH)", spec);
		free(em);
		return NULL;
	}
	/* events are written in batches and flushed after each one */
	setvbuf(em->out, NULL, _IOFBF, 1 << 20);

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
	return em;
}

void emitter_free(struct emitter *em)
{
	if (!em)
		return;
	emitter_flush(em);
	if (em->own)
		fclose(em->out);
	free(em->line);
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

json_t *event_new(struct emitter *em, const char *type, uint64_t ts_mono_ns)
{
	char when[40];

	if (!ts_mono_ns) {
		struct timespec mt;

		clock_gettime(CLOCK_MONOTONIC, &mt);
		ts_mono_ns = (uint64_t)mt.tv_sec * 1000000000 + mt.tv_nsec;
	}
	format_time(em, ts_mono_ns, when, sizeof(when));
	return json_pack("{s:s, s:s, s:{s:o, s:o, s:s, s:I}, s:s}", "schema", DBW_SCHEMA, "type",
			 type, "agent", "id", json_str_or_null(em->agent_id), "node",
			 json_str_or_null(em->node), "instance", em->instance, "seq",
			 (json_int_t)++em->seq, "time", when);
}

int event_emit(struct emitter *em, json_t *ev)
{
	return event_emit_parts(em, ev, NULL);
}

int event_emit_parts(struct emitter *em, json_t *ev, const char *tail)
{
	int err = 0;

	if (!ev) {
		/* json_pack failed (out of memory): the seq number is spent, say so */
		em->errors++;
		return -1;
	}
	em->len = 0;
	if (json_dump_callback(ev, line_append, em, JSON_COMPACT | JSON_ENSURE_ASCII) ||
	    (tail && em->len &&
	     (em->len--, line_append(tail, strlen(tail), em) || line_append("}", 1, em))) ||
	    line_append("\n", 1, em) || fwrite_unlocked(em->line, 1, em->len, em->out) != em->len) {
		em->errors++;
		err = -1;
	}
	json_decref(ev);
	return err;
}

void emitter_flush(struct emitter *em)
{
	if (fflush(em->out))
		em->errors++;
}

uint64_t emitter_seq(const struct emitter *em)
{
	return em->seq;
}

uint64_t emitter_errors(const struct emitter *em)
{
	return em->errors;
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
