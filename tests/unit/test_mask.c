// SPDX-License-Identifier: GPL-2.0-only
/*
 * The kernel's result masking (bpf/mask.bpf.h), run in the kernel with
 * BPF_PROG_TEST_RUN (tests/bpf/mask_test.bpf.c) over PostgreSQL server
 * streams built here byte by byte: what comes out is compared in full with
 * the stream the masking promises. Each stream is also cut into skbs at
 * every offset: the parser's state crosses skbs, so the bytes out must not
 * depend on where the cuts fall (except the documented case of a value a
 * detector follows across a cut, tested on its own).
 *
 * A test run's input is at least ETH_HLEN (14) bytes, so two cuts are at
 * least 14 bytes apart; the cut positions themselves cover every offset,
 * so every header, length word, name and value is cut at every byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "dbwarden_abi.h"

#define MIN_SKB	   14
#define MAX_STREAM 8192

struct mask_setup_args {
	__u64 key;
	__u32 cand;
	__u32 proto;
};

struct fx {
	struct bpf_object *obj;
	int run_fd, setup_fd, cfg_fd, cols_fd, cnt_fd, rcmds_fd, ncpu;
	__u64 col_keys[16];
	int ncols;
	__u32 gen;
	__u32 cand;
	__u32 key_rules; /* rules with Redis keys */
	__u32 proto; /* the next connection's (0: PostgreSQL) */
};

/* ---- streams ------------------------------------------------------------------------ */

struct stream {
	uint8_t b[MAX_STREAM];
	size_t n;
};

struct col {
	const char *name;
	uint32_t type_oid;
};

static void put(struct stream *s, const void *p, size_t n)
{
	assert_true(s->n + n <= sizeof(s->b));
	memcpy(s->b + s->n, p, n);
	s->n += n;
}

static void put_be32(struct stream *s, uint32_t v)
{
	uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };

	put(s, b, 4);
}

static void put_be16(struct stream *s, uint16_t v)
{
	uint8_t b[2] = { v >> 8, v };

	put(s, b, 2);
}

/* Start a message of type t; its length is patched by msg_end. */
static size_t msg_start(struct stream *s, char t)
{
	size_t at = s->n + 1;

	put(s, &t, 1);
	put_be32(s, 0);
	return at;
}

static void msg_end(struct stream *s, size_t at)
{
	uint32_t len = s->n - at;
	uint8_t b[4] = { len >> 24, len >> 16, len >> 8, len };

	memcpy(s->b + at, b, 4);
}

static void row_desc(struct stream *s, const struct col *c, int n)
{
	size_t at = msg_start(s, 'T');

	put_be16(s, n);
	for (int i = 0; i < n; i++) {
		put(s, c[i].name, strlen(c[i].name) + 1);
		put_be32(s, 16384); /* table oid */
		put_be16(s, i + 1); /* column number */
		put_be32(s, c[i].type_oid);
		put_be16(s, 0xffff); /* type size */
		put_be32(s, 0xffffffff); /* type modifier */
		put_be16(s, 0); /* text format */
	}
	msg_end(s, at);
}

/* A DataRow; NULL is SQL NULL. */
static void data_row(struct stream *s, const char *const *v, int n)
{
	size_t at = msg_start(s, 'D');

	put_be16(s, n);
	for (int i = 0; i < n; i++) {
		if (!v[i]) {
			put_be32(s, 0xffffffff);
			continue;
		}
		put_be32(s, strlen(v[i]));
		put(s, v[i], strlen(v[i]));
	}
	msg_end(s, at);
}

static void done(struct stream *s, const char *tag)
{
	size_t at = msg_start(s, 'C');

	put(s, tag, strlen(tag) + 1);
	msg_end(s, at);
	at = msg_start(s, 'Z');
	put(s, "I", 1);
	msg_end(s, at);
}

/* ---- masks as the policy promises them ------------------------------------------------ */

static char out_buf[64][256];
static int out_next;

static const char *styled(const char *v, int style)
{
	char *o = out_buf[out_next++ % 64];
	size_t n = strlen(v);

	for (size_t i = 0; i < n; i++)
		o[i] = style == DBW_MASK_TOKEN				   ? 'X' :
		       style == DBW_MASK_KEEP_LAST4 && n > 4 && i >= n - 4 ? v[i] :
									     '*';
	o[n] = 0;
	return o;
}

#define STARS(v) styled(v, DBW_MASK_STARS)
#define LAST4(v) styled(v, DBW_MASK_KEEP_LAST4)
#define TOKEN(v) styled(v, DBW_MASK_TOKEN)

/* ---- the kernel side ------------------------------------------------------------------ */

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->obj = bpf_object__open_file(DBW_TEST_BPF_DIR "/mask_test.bpf.o", NULL);
	if (!f->obj || bpf_object__load(f->obj)) {
		fprintf(stderr, "cannot load mask_test.bpf.o (needs root and BPF)\n");
		bpf_object__close(f->obj);
		free(f);
		return -1;
	}
	f->run_fd = bpf_program__fd(bpf_object__find_program_by_name(f->obj, "mask_run"));
	f->setup_fd = bpf_program__fd(bpf_object__find_program_by_name(f->obj, "mask_setup"));
	f->cfg_fd = bpf_map__fd(bpf_object__find_map_by_name(f->obj, "mask_cfg"));
	f->cols_fd = bpf_map__fd(bpf_object__find_map_by_name(f->obj, "mask_cols"));
	f->cnt_fd = bpf_map__fd(bpf_object__find_map_by_name(f->obj, "counters"));
	f->rcmds_fd = bpf_map__fd(bpf_object__find_map_by_name(f->obj, "mask_resp_cmds"));
	f->ncpu = libbpf_num_possible_cpus();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (!f)
		return 0; /* setup failed, and said why */
	bpf_object__close(f->obj);
	free(f);
	return 0;
}

/*
 * The policy's kernel share: rule k has style[k], detectors dets[k],
 * on_unmaskable allow[k], and names the columns in cols[k] (NULL-ended).
 */
static void rules(struct fx *f, int n, const uint8_t *style, const uint8_t *dets,
		  const uint8_t *allow, const char *const *const *cols)
{
	struct dbw_mask_cfg cfg = {
		.nrules = n, .uid_free = ~0u, .gen = ++f->gen, .key_rules = f->key_rules
	};
	__u32 zero = 0;

	for (int i = 0; i < f->ncols; i++)
		bpf_map_delete_elem(f->cols_fd, &f->col_keys[i]);
	f->ncols = 0;
	for (int k = 0; k < n; k++) {
		cfg.rules[k] = (struct dbw_mask_rule){ .style = style[k],
						       .detectors = dets[k],
						       .allow_unmaskable = allow[k],
						       .columns = cols[k] && cols[k][0] };
		for (int i = 0; cols[k] && cols[k][i]; i++) {
			__u64 h = dbw_name_hash(cols[k][i], strlen(cols[k][i]));
			__u32 bits = 0;

			bpf_map_lookup_elem(f->cols_fd, &h, &bits);
			bits |= 1u << k;
			assert_int_equal(bpf_map_update_elem(f->cols_fd, &h, &bits, BPF_ANY), 0);
			f->col_keys[f->ncols++] = h;
		}
	}
	assert_int_equal(bpf_map_update_elem(f->cfg_fd, &zero, &cfg, BPF_ANY), 0);
	f->cand = (1u << n) - 1;
}

/* A new connection: fresh parser state. */
static void fresh(struct fx *f)
{
	struct mask_setup_args a = { .key = 0,
				     .cand = f->cand,
				     .proto = f->proto ? f->proto : DBW_PROTO_POSTGRES };
	LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = &a, .ctx_size_in = sizeof(a));

	assert_int_equal(bpf_prog_test_run_opts(f->setup_fd, &o), 0);
	assert_int_equal(o.retval, 0);
}

static uint64_t counter(struct fx *f, __u32 idx)
{
	__u64 v[f->ncpu], sum = 0;

	assert_int_equal(bpf_map_lookup_elem(f->cnt_fd, &idx, v), 0);
	for (int i = 0; i < f->ncpu; i++)
		sum += v[i];
	return sum;
}

/* One skb through the verdict: its bytes into out; 1 when it was dropped. */
static int run_skb(struct fx *f, const uint8_t *in, size_t n, uint8_t *out)
{
	uint8_t tmp[MAX_STREAM + 256];
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in, .data_size_in = n, .data_out = tmp,
		    .data_size_out = sizeof(tmp));

	assert_true(n >= MIN_SKB);
	assert_int_equal(bpf_prog_test_run_opts(f->run_fd, &o), 0);
	assert_int_equal(o.data_size_out, n);
	memcpy(out, tmp, n);
	return o.retval == 2;
}

/* The stream cut at cuts[0..ncuts) (ascending), through a fresh connection. */
static int feed(struct fx *f, const struct stream *s, const size_t *cuts, int ncuts, uint8_t *out)
{
	size_t from = 0;
	int dropped = 0;

	fresh(f);
	for (int i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : s->n;

		dropped |= run_skb(f, s->b + from, to - from, out + from) << i;
		from = to;
	}
	return dropped;
}

static void assert_stream(const uint8_t *got, const struct stream *want, const char *what)
{
	for (size_t i = 0; i < want->n; i++)
		if (got[i] != want->b[i])
			fail_msg("%s: byte %zu is %#x, want %#x", what, i, got[i], want->b[i]);
}

/* ---- the cases -------------------------------------------------------------------------- */

static const struct col people[] = {
	{ "id", 23 }, { "email", 25 }, { "card", 1043 }, { "phone", 25 }, { "note", 25 },
};

/* Rows of people, masked in the styles given (NULL: as they are). */
static void people_rows(struct stream *s, int masked)
{
	const char *rows[][5] = {
		{ "1", "ann@example.com", "4111 1111 1111 1111", "+4915112345678", "(vip)" },
		{ "22", "b.o.b@mail.example.org", "5500-0000-0000-0004", NULL, "" },
		{ "333", "c@d.io", "378282246310005", "+15550100", "(none)" },
	};

	row_desc(s, people, 5);
	for (int r = 0; r < 3; r++) {
		const char *v[5];

		memcpy(v, rows[r], sizeof(v));
		if (masked) {
			v[1] = STARS(v[1]);
			v[2] = LAST4(v[2]);
			v[3] = v[3] ? TOKEN(v[3]) : NULL;
		}
		data_row(s, v, 5);
	}
	done(s, "SELECT 3");
}

static const uint8_t st3[] = { DBW_MASK_STARS, DBW_MASK_KEEP_LAST4, DBW_MASK_TOKEN };
static const uint8_t no3[3];
static const char *const c_email[] = { "email", NULL }, *const c_card[] = { "card", NULL },
			 *const c_phone[] = { "phone", NULL };
static const char *const *const by_name[] = { c_email, c_card, c_phone };

/* Columns named by rules, each rule's style; every other byte as the server sent it. */
static void test_columns_by_name_in_each_style(void **state)
{
	struct fx *f = *state;
	struct stream in = {}, want = {};
	uint8_t out[MAX_STREAM];
	uint64_t before;

	rules(f, 3, st3, no3, no3, by_name);
	people_rows(&in, 0);
	people_rows(&want, 1);
	before = counter(f, DBW_CNT_MASK_FIELDS);
	assert_int_equal(feed(f, &in, NULL, 0, out), 0);
	assert_stream(out, &want, "whole");
	assert_int_equal(counter(f, DBW_CNT_MASK_FIELDS) - before, 8); /* 3 + 3 + 2 (a NULL) */
}

/* Every cut, then a grid of double cuts: the same bytes out. */
static void test_any_cut_gives_the_same_bytes(void **state)
{
	struct fx *f = *state;
	struct stream in = {}, want = {};
	uint8_t out[MAX_STREAM];

	rules(f, 3, st3, no3, no3, by_name);
	people_rows(&in, 0);
	people_rows(&want, 1);
	for (size_t c = MIN_SKB; c + MIN_SKB <= in.n; c++) {
		char what[64];

		snprintf(what, sizeof(what), "cut at %zu", c);
		assert_int_equal(feed(f, &in, &c, 1, out), 0);
		assert_stream(out, &want, what);
	}
	for (size_t a = MIN_SKB; a + 2 * MIN_SKB <= in.n; a += 5)
		for (size_t b = a + MIN_SKB; b + MIN_SKB <= in.n; b += 7) {
			size_t cuts[2] = { a, b };
			char what[64];

			snprintf(what, sizeof(what), "cuts at %zu and %zu", a, b);
			assert_int_equal(feed(f, &in, cuts, 2, out), 0);
			assert_stream(out, &want, what);
		}
}

/*
 * Value detectors, no column names: whole-field emails (text columns only)
 * and Luhn-valid card numbers, whatever the column is called.
 */
static void test_value_detectors(void **state)
{
	struct fx *f = *state;
	static const struct col cols[] = { { "max", 25 }, { "contact", 1043 }, { "n", 1700 } };
	static const uint8_t st[] = { DBW_MASK_STARS }, det[] = { DBW_MDET_EMAIL | DBW_MDET_CARD };
	static const char *const *const none[] = { NULL };
	const char *in_rows[][3] = {
		{ "ann@example.com", "4111111111111111", "4111111111111111" },
		{ "not an email", "4111111111111112", "ann@example.com" },
		{ "a@b.c", "4111-1111-1111-1111", "12" },
		{ "x@example.c0m", "4111--1111-1111-1111", "(4111111111111111)" },
	};
	/* the masked ones; the others stay (a bad Luhn, a digit in the TLD, ...) */
	const int masked[4][3] = { { 1, 1, 1 }, { 0, 0, 0 }, { 0, 1, 0 }, { 0, 0, 0 } };
	struct stream in = {}, want = {};
	uint8_t out[MAX_STREAM];

	rules(f, 1, st, det, no3, none);
	row_desc(&in, cols, 3);
	row_desc(&want, cols, 3);
	for (int r = 0; r < 4; r++) {
		const char *v[3];

		data_row(&in, in_rows[r], 3);
		for (int i = 0; i < 3; i++)
			v[i] = masked[r][i] ? STARS(in_rows[r][i]) : in_rows[r][i];
		data_row(&want, v, 3);
	}
	done(&in, "SELECT 4");
	done(&want, "SELECT 4");
	assert_int_equal(feed(f, &in, NULL, 0, out), 0);
	assert_stream(out, &want, "whole");
	/* an email in a numeric column is not an email: row 1 column n stays */
}

/*
 * A value the detectors follow across a cut: its first part has passed by
 * the time its end is seen, so it is masked while it may still match. A
 * value that then does not match is counted (overmasked); one that does is
 * masked whole, as without the cut.
 */
static void test_value_cut_by_an_skb(void **state)
{
	struct fx *f = *state;
	static const struct col cols[] = { { "a", 25 } };
	static const uint8_t st[] = { DBW_MASK_STARS }, det[] = { DBW_MDET_EMAIL };
	static const char *const *const none[] = { NULL };
	const char *plain[] = { "someone.at.example" }, *email[] = { "someone@example.org" };
	struct stream in = {}, want = {};
	uint8_t out[MAX_STREAM];
	size_t at, cut;
	uint64_t before;

	rules(f, 1, st, det, no3, none);
	row_desc(&in, cols, 1);
	at = in.n + 11; /* the value's first byte */
	data_row(&in, plain, 1);
	done(&in, "SELECT 1");
	cut = at + 7;
	before = counter(f, DBW_CNT_MASK_OVERMASKED);
	assert_int_equal(feed(f, &in, &cut, 1, out), 0);
	assert_memory_equal(out + at, "*******", 7); /* "someone" went out masked */
	assert_memory_equal(out + cut, plain[0] + 7, strlen(plain[0]) - 7);
	assert_int_equal(counter(f, DBW_CNT_MASK_OVERMASKED) - before, 1);
	/* not cut: nothing to guess, nothing masked */
	assert_int_equal(feed(f, &in, NULL, 0, out), 0);
	assert_stream(out, &in, "uncut plain value");

	in.n = want.n = 0;
	row_desc(&in, cols, 1);
	data_row(&in, email, 1);
	done(&in, "SELECT 1");
	row_desc(&want, cols, 1);
	email[0] = STARS(email[0]);
	data_row(&want, email, 1);
	done(&want, "SELECT 1");
	for (cut = MIN_SKB; cut + MIN_SKB <= in.n; cut++) {
		assert_int_equal(feed(f, &in, &cut, 1, out), 0);
		assert_stream(out, &want, "cut email");
	}
}

/*
 * Rows no RowDescription describes (the description came before the last
 * ReadyForQuery) under a rule that names columns: on_unmaskable block
 * masks every field; allow passes them and counts them.
 */
static void test_rows_without_description(void **state)
{
	struct fx *f = *state;
	static const uint8_t st[] = { DBW_MASK_STARS }, allow[] = { 1 };
	static const char *const *const email_only[] = { c_email };
	const char *v[] = { "7", "ann@example.com" },
		   *m[] = { STARS("7"), STARS("ann@example.com") };
	struct stream in = {}, want = {};
	uint8_t out[MAX_STREAM];
	uint64_t before;

	rules(f, 1, st, no3, no3, email_only);
	done(&in, "SELECT 0");
	data_row(&in, v, 2);
	done(&in, "SELECT 1");
	done(&want, "SELECT 0");
	data_row(&want, m, 2);
	done(&want, "SELECT 1");
	assert_int_equal(feed(f, &in, NULL, 0, out), 0);
	assert_stream(out, &want, "block");

	rules(f, 1, st, no3, allow, email_only);
	before = counter(f, DBW_CNT_MASK_UNMASKED);
	assert_int_equal(feed(f, &in, NULL, 0, out), 0);
	assert_stream(out, &in, "allow");
	assert_int_equal(counter(f, DBW_CNT_MASK_UNMASKED) - before, 2);
}

/*
 * Framing lost (a field longer than its message): block drops that skb and
 * every later one (userspace resets the connection); allow passes them.
 */
static void test_lost_framing(void **state)
{
	struct fx *f = *state;
	static const char *const *const email_only[] = { c_email };
	static const uint8_t st[] = { DBW_MASK_STARS }, allow[] = { 1 };
	struct stream in = {};
	uint8_t out[MAX_STREAM];
	size_t at, cut;
	uint64_t before = counter(f, DBW_CNT_MASK_DESYNC);

	rules(f, 1, st, no3, no3, email_only);
	row_desc(&in, people, 2);
	at = msg_start(&in, 'D');
	put_be16(&in, 1);
	put_be32(&in, 1000); /* the message holds 3 bytes of it */
	put(&in, "abc", 3);
	msg_end(&in, at);
	cut = in.n;
	done(&in, "SELECT 1");
	while (in.n - cut < MIN_SKB)
		done(&in, "SELECT 1");
	assert_int_equal(feed(f, &in, &cut, 1, out), 3); /* both skbs dropped */
	assert_int_equal(counter(f, DBW_CNT_MASK_DESYNC) - before, 1);

	rules(f, 1, st, no3, allow, email_only);
	assert_int_equal(feed(f, &in, &cut, 1, out), 0);
	assert_stream(out, &in, "allow");
}

/*
 * A column masked by name in the token style, its value longer than one
 * write (MASK_BUF): every byte 'X', wherever the skbs cut it (the token's
 * source once ran out of 'X's at 258 bytes).
 */
static void test_long_value_in_token_style(void **state)
{
	struct fx *f = *state;
	static const uint8_t tok[] = { DBW_MASK_TOKEN };
	static const char *const *const email_only[] = { c_email };
	static char longv[700], xs[700];
	struct stream in = {}, want = {};
	uint8_t out[MAX_STREAM];
	const char *v[2] = { "1", longv }, *w[2] = { "1", xs };
	size_t cuts[] = { 20, 301, 563, 700 };

	memset(longv, 'v', sizeof(longv) - 1);
	memset(xs, 'X', sizeof(xs) - 1);
	rules(f, 1, tok, no3, no3, email_only);
	row_desc(&in, people, 2);
	row_desc(&want, people, 2);
	data_row(&in, v, 2);
	data_row(&want, w, 2);
	done(&in, "SELECT 1");
	done(&want, "SELECT 1");
	assert_int_equal(feed(f, &in, NULL, 0, out), 0);
	assert_stream(out, &want, "whole");
	assert_int_equal(feed(f, &in, cuts, 4, out), 0);
	assert_stream(out, &want, "cuts");
	for (size_t cut = MIN_SKB; cut + MIN_SKB <= in.n; cut++) {
		assert_int_equal(feed(f, &in, &cut, 1, out), 0);
		assert_stream(out, &want, "cut");
	}
}

/*
 * A Redis client's commands as the guard's walk counts them (struct
 * mask_resp_cmds in bpf/mask.bpf.h; kernel-internal, restated here and
 * checked against the map's value size).
 */
struct resp_cmds {
	__u32 head, tail;
	__u8 lost, hit_lost, multi, multi_hit;
	__u32 lost_at;
	__u64 bits[64];
};

enum { RK_UNPAIRED = 1, RK_BLIND = 2 };

static void resp_cmds(struct fx *f, const struct resp_cmds *c)
{
	__u64 key = 0;

	assert_int_equal(
		bpf_map__value_size(bpf_object__find_map_by_name(f->obj, "mask_resp_cmds")),
		sizeof(*c));
	assert_int_equal(bpf_map_update_elem(f->rcmds_fd, &key, c, BPF_ANY), 0);
}

static void puts_(struct stream *s, const char *str)
{
	put(s, str, strlen(str));
}

/*
 * Replies masked whole by key: commands 0, 2 and 4 name a masked key
 * (the bits the walk wrote), so their replies' bulk and verbatim strings
 * are masked at any depth, whatever their length, a simple string kept;
 * a push between replies pairs with no command. Cut at every byte: the
 * same bytes out. Then pairing lost after command 2 (a SUBSCRIBE) with a
 * later command naming a key: replies 0 and 1 still pair, reply 2 is
 * dropped under block, passed under allow.
 */
static void test_redis_replies_by_key(void **state)
{
	struct fx *f = *state;
	static const uint8_t st1[] = { DBW_MASK_STARS }, allow[] = { 1 };
	static const char *const *const none[] = { NULL };
	static const char *long_v = "a value longer than the detectors' limit, masked whole all "
				    "the same: 0123456789012345678901234567890123456789012345678"
				    "9012345678901234567890123456789012345678901234567890123456"
				    "789012345678901234567890123456789012345678901234567890";
	struct resp_cmds c = { .head = 5, .bits = { 0x15 } };
	struct stream in = {}, want = {};
	uint8_t out[MAX_STREAM];
	char line[400];

	f->key_rules = 1;
	f->proto = DBW_PROTO_REDIS;
	rules(f, 1, st1, no3, no3, none);
	resp_cmds(f, &c);
	/* 0: GET user:1 */
	puts_(&in, "$5\r\nhello\r\n");
	puts_(&want, "$5\r\n*****\r\n");
	/* 1: GET product:1 */
	puts_(&in, "$5\r\nhello\r\n");
	puts_(&want, "$5\r\nhello\r\n");
	/* 2: MGET user:1 nothing, and a long value */
	snprintf(line, sizeof(line), "*3\r\n$3\r\nabc\r\n$-1\r\n$%zu\r\n%s\r\n", strlen(long_v),
		 long_v);
	puts_(&in, line);
	snprintf(line, sizeof(line), "*3\r\n$3\r\n***\r\n$-1\r\n$%zu\r\n%s\r\n", strlen(long_v),
		 STARS(long_v));
	puts_(&want, line);
	/* a push: no command's */
	puts_(&in, ">2\r\n$7\r\nmessage\r\n$2\r\nhi\r\n");
	puts_(&want, ">2\r\n$7\r\nmessage\r\n$2\r\nhi\r\n");
	/* 3: SET product:1 x */
	puts_(&in, "+OK\r\n");
	puts_(&want, "+OK\r\n");
	/* 4: EXEC of a transaction that read user:2: a status and a verbatim string */
	puts_(&in, "*3\r\n+OK\r\n=9\r\ntxt:hello\r\n%1\r\n$1\r\nk\r\n:5\r\n");
	puts_(&want, "*3\r\n+OK\r\n=9\r\ntxt:*****\r\n%1\r\n$1\r\n*\r\n:5\r\n");
	assert_int_equal(feed(f, &in, NULL, 0, out), 0);
	assert_stream(out, &want, "whole");
	for (size_t cut = MIN_SKB; cut + MIN_SKB <= in.n; cut++) {
		assert_int_equal(feed(f, &in, &cut, 1, out), 0);
		assert_stream(out, &want, "cut");
	}

	/* no rule with keys in force: the same replies pass as they are */
	f->key_rules = 0;
	rules(f, 1, st1, no3, no3, none);
	assert_int_equal(feed(f, &in, NULL, 0, out), 0);
	assert_stream(out, &in, "no keys");

	/* pairing lost at command 2, and a later command named a key */
	f->key_rules = 1;
	rules(f, 1, st1, no3, no3, none);
	c.lost = RK_UNPAIRED;
	c.lost_at = 2;
	c.hit_lost = 1;
	resp_cmds(f, &c);
	assert_int_equal(feed(f, &in, NULL, 0, out), 1);
	rules(f, 1, st1, no3, allow, none);
	assert_int_equal(feed(f, &in, NULL, 0, out), 0);
	/* replies 0 and 1 as before; the rest passes unmasked */
	assert_memory_equal(out, want.b, 22);
	assert_memory_equal(out + 22, in.b + 22, in.n - 22);
	/* lost, but no later command named a key: nothing to refuse */
	c.hit_lost = 0;
	resp_cmds(f, &c);
	rules(f, 1, st1, no3, no3, none);
	assert_int_equal(feed(f, &in, NULL, 0, out), 0);
	assert_memory_equal(out, want.b, 22);
	assert_memory_equal(out + 22, in.b + 22, in.n - 22);
	/* commands unseen: any reply may answer one */
	c.lost = RK_BLIND;
	c.lost_at = 0;
	resp_cmds(f, &c);
	assert_int_equal(feed(f, &in, NULL, 0, out), 1);
	f->key_rules = 0;
	f->proto = 0;
}

/*
 * A database whose catalog was read (mask_rel): column 2 (email, named by
 * the rule) is another table's and stays; column 4 (phone, not named) is
 * the listed table's and is masked. The table oid and column number cut
 * at every byte: the same bytes out.
 */
static void test_table_columns_by_catalog(void **state)
{
	struct fx *f = *state;
	static const uint8_t stars1[] = { DBW_MASK_STARS };
	static const char *const *const email_only[] = { c_email };
	int conn_fd = bpf_map__fd(bpf_object__find_map_by_name(f->obj, "mask_conn"));
	int rel_fd = bpf_map__fd(bpf_object__find_map_by_name(f->obj, "mask_rel"));
	struct dbw_mask_conn mc = { .rules = 1, .dbk = 77 };
	struct dbw_mask_relkey other = { .dbk = 77, .reloid = 16384, .attnum = 2 },
			       listed = { .dbk = 77, .reloid = 16384, .attnum = 4 };
	__u32 none = 0, rule0 = 1;
	__u64 key = 0;
	struct stream in = {}, want = {};
	uint8_t out[MAX_STREAM];
	const char *row[5] = { "1", "ann@example.com", "4111 1111 1111 1111", "+4915112345678",
			       "(vip)" };
	const char *masked[5] = { "1", "ann@example.com", "4111 1111 1111 1111",
				  STARS("+4915112345678"), "(vip)" };

	rules(f, 1, stars1, no3, no3, email_only);
	assert_int_equal(bpf_map_update_elem(conn_fd, &key, &mc, BPF_ANY), 0);
	assert_int_equal(bpf_map_update_elem(rel_fd, &other, &none, BPF_ANY), 0);
	assert_int_equal(bpf_map_update_elem(rel_fd, &listed, &rule0, BPF_ANY), 0);
	row_desc(&in, people, 5);
	data_row(&in, row, 5);
	done(&in, "SELECT 1");
	row_desc(&want, people, 5);
	data_row(&want, masked, 5);
	done(&want, "SELECT 1");
	for (size_t c = MIN_SKB; c + MIN_SKB <= in.n; c++) {
		char what[64];

		snprintf(what, sizeof(what), "cut at %zu", c);
		assert_int_equal(feed(f, &in, &c, 1, out), 0);
		assert_stream(out, &want, what);
	}
	/* without the connection's database key the names decide: email masked, phone not */
	mc.dbk = 0;
	assert_int_equal(bpf_map_update_elem(conn_fd, &key, &mc, BPF_ANY), 0);
	masked[1] = STARS(row[1]);
	masked[3] = row[3];
	memset(&want, 0, sizeof(want));
	row_desc(&want, people, 5);
	data_row(&want, masked, 5);
	done(&want, "SELECT 1");
	assert_int_equal(feed(f, &in, NULL, 0, out), 0);
	assert_stream(out, &want, "no catalog");
	bpf_map_delete_elem(conn_fd, &key);
	bpf_map_delete_elem(rel_fd, &other);
	bpf_map_delete_elem(rel_fd, &listed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_columns_by_name_in_each_style),
		cmocka_unit_test(test_any_cut_gives_the_same_bytes),
		cmocka_unit_test(test_value_detectors),
		cmocka_unit_test(test_value_cut_by_an_skb),
		cmocka_unit_test(test_rows_without_description),
		cmocka_unit_test(test_lost_framing),
		cmocka_unit_test(test_table_columns_by_catalog),
		cmocka_unit_test(test_long_value_in_token_style),
		cmocka_unit_test(test_redis_replies_by_key),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
