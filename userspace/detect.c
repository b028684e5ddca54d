// SPDX-License-Identifier: GPL-2.0-only
/* Sensitive-value detectors: one Hyperscan database, checked spans, masked text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hs/hs.h>

#include "detect.h"

/* What part of a match is the sensitive value. */
enum det_value {
	V_WHOLE = 0, /* the match itself */
	V_ASSIGNED, /* what follows the first '=' or ':' (spaces and a quote skipped) */
	V_QUOTED, /* what stands between the first quote and the last byte */
	V_LAST40, /* the last 40 bytes (an AWS secret key after its name) */
};

/* A span that only counts when a check on its bytes holds. */
enum det_check {
	C_NONE = 0,
	C_LUHN,
	C_IBAN,
	C_SSN,
};

struct det_pattern {
	int id; /* enum det_builtin */
	const char *expr;
	unsigned flags;
	enum det_value value;
	enum det_check check;
};

/*
 * The built-in expressions. A detector may have several. Where a check
 * decides, the expression only finds candidates: bounded by \b so that a
 * candidate starts and ends where a run of digits does.
 */
static const struct det_pattern builtins[] = {
	{ DET_EMAIL, "[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}", 0,
	  V_WHOLE, C_NONE },
	{ DET_CREDIT_CARD, "\\b[0-9]([ -]?[0-9]){12,18}\\b", 0, V_WHOLE, C_LUHN },
	{ DET_SSN, "\\b[0-9]{3}-[0-9]{2}-[0-9]{4}\\b", 0, V_WHOLE, C_SSN },
	{ DET_PHONE, "\\+[1-9]([ .-]?[0-9]){7,14}\\b", 0, V_WHOLE, C_NONE },
	{ DET_IBAN, "\\b[A-Z]{2}[0-9]{2}( ?[A-Z0-9]){11,30}\\b", 0, V_WHOLE, C_IBAN },
	{ DET_AWS_KEY, "\\b(AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\\b", 0, V_WHOLE, C_NONE },
	{ DET_AWS_KEY,
	  "aws[A-Za-z0-9_ .-]{0,24}(secret|key)[A-Za-z0-9_ .-]{0,24}['\"]?\\s*[=:]\\s*['\"]?"
	  "[A-Za-z0-9/+]{40}",
	  HS_FLAG_CASELESS, V_LAST40, C_NONE },
	{ DET_JWT, "\\beyJ[A-Za-z0-9_-]{4,}\\.[A-Za-z0-9_-]{4,}\\.[A-Za-z0-9_-]{8,}", 0, V_WHOLE,
	  C_NONE },
	{ DET_PRIVATE_KEY,
	  "-----BEGIN[A-Z ]*PRIVATE KEY-----[A-Za-z0-9+/=\\s\\\\]*(-----END[A-Z ]*PRIVATE "
	  "KEY-----)?",
	  0, V_WHOLE, C_NONE },
	{ DET_PASSWORD,
	  "\\b(password|passwd|pwd|secret|client_secret|api[_-]?key|access[_-]?token|auth[_-]?"
	  "token|token)['\"]?\\s*[=:]\\s*['\"]?[^\\s'\"&;,)]+",
	  HS_FLAG_CASELESS, V_ASSIGNED, C_NONE },
	/* SQL: CREATE/ALTER ROLE ... PASSWORD 'secret' */
	{ DET_PASSWORD, "\\bpassword\\s+E?'[^']+'", HS_FLAG_CASELESS, V_QUOTED, C_NONE },
};

#define NBUILTIN_PATTERNS (sizeof(builtins) / sizeof(builtins[0]))

static const char *const builtin_names[DET__BUILTIN] = {
	[DET_EMAIL] = "email",	     [DET_CREDIT_CARD] = "credit_card",
	[DET_SSN] = "ssn",	     [DET_PHONE] = "phone",
	[DET_IBAN] = "iban",	     [DET_AWS_KEY] = "aws_key",
	[DET_JWT] = "jwt",	     [DET_PRIVATE_KEY] = "private_key",
	[DET_PASSWORD] = "password",
};

/* A raw match, before checks. */
struct raw {
	unsigned pat; /* index into d->pats */
	size_t from, to;
};

/* Raw matches kept per scan; a text that produces more is masked whole. */
#define DET_MAX_RAW (1u << 20)

struct detector_set {
	hs_database_t *db;
	hs_scratch_t *scratch;
	struct det_pattern *pats;
	unsigned npats;
	char *custom_names[DET_MAX_CUSTOM];
	size_t ncustom;
	/* scan state */
	struct raw *raw;
	size_t nraw, rawcap;
	long *last; /* per pattern: its latest raw match, -1 if none */
	bool overflow;
};

const char *detect_builtin_name(int id)
{
	return id >= 0 && id < DET__BUILTIN ? builtin_names[id] : NULL;
}

int detect_builtin(const char *name)
{
	for (int i = 0; i < DET__BUILTIN; i++)
		if (!strcmp(name, builtin_names[i]))
			return i;
	return -1;
}

const char *detect_label(const struct detector_set *d, int id)
{
	if (id >= 0 && id < DET__BUILTIN)
		return builtin_names[id];
	id -= DET__BUILTIN;
	return id >= 0 && (size_t)id < d->ncustom ? d->custom_names[id] : "sensitive";
}

/* The flags every expression is compiled with: spans need their start. */
#define DET_FLAGS HS_FLAG_SOM_LEFTMOST

int detect_check_regex(const char *regex, char *err, size_t errlen)
{
	hs_compile_error_t *ce = NULL;
	hs_database_t *db = NULL;

	if (hs_compile(regex, DET_FLAGS, HS_MODE_BLOCK, NULL, &db, &ce) != HS_SUCCESS) {
		snprintf(err, errlen, "%s", ce && ce->message ? ce->message : "does not compile");
		hs_free_compile_error(ce);
		return -1;
	}
	hs_free_database(db);
	return 0;
}

void detect_free(struct detector_set *d)
{
	if (!d)
		return;
	hs_free_scratch(d->scratch);
	hs_free_database(d->db);
	for (size_t i = 0; i < d->ncustom; i++)
		free(d->custom_names[i]);
	free(d->pats);
	free(d->raw);
	free(d->last);
	free(d);
}

struct detector_set *detect_new(uint32_t builtin, const struct det_custom *custom, size_t ncustom,
				char *err, size_t errlen, int *bad)
{
	struct detector_set *d = calloc(1, sizeof(*d));
	const char **exprs = NULL;
	unsigned *flags = NULL, *ids = NULL, n = 0;
	hs_compile_error_t *ce = NULL;

	*bad = -1;
	if (ncustom > DET_MAX_CUSTOM) {
		snprintf(err, errlen, "more than %d custom detectors", DET_MAX_CUSTOM);
		free(d);
		return NULL;
	}
	if (!d)
		goto oom;
	d->pats = calloc(NBUILTIN_PATTERNS + ncustom + 1, sizeof(*d->pats));
	exprs = calloc(NBUILTIN_PATTERNS + ncustom + 1, sizeof(*exprs));
	flags = calloc(NBUILTIN_PATTERNS + ncustom + 1, sizeof(*flags));
	ids = calloc(NBUILTIN_PATTERNS + ncustom + 1, sizeof(*ids));
	if (!d->pats || !exprs || !flags || !ids)
		goto oom;
	for (size_t i = 0; i < NBUILTIN_PATTERNS; i++) {
		if (!(builtin & (1u << builtins[i].id)))
			continue;
		d->pats[n] = builtins[i];
		n++;
	}
	for (size_t i = 0; i < ncustom; i++) {
		d->custom_names[i] = strdup(custom[i].name);
		if (!d->custom_names[i])
			goto oom;
		d->ncustom++;
		d->pats[n] =
			(struct det_pattern){ .id = DET__BUILTIN + i, .expr = custom[i].regex };
		n++;
	}
	d->npats = n;
	for (unsigned i = 0; i < n; i++) {
		exprs[i] = d->pats[i].expr;
		/* a value at a fixed distance from the end needs no start (and
		 * the AWS secret's expression is too large for one) */
		flags[i] = d->pats[i].flags | (d->pats[i].value == V_LAST40 ? 0 : DET_FLAGS);
		ids[i] = i;
	}
	d->last = calloc(n + 1, sizeof(*d->last));
	if (!d->last)
		goto oom;
	if (n && hs_compile_multi(exprs, flags, ids, n, HS_MODE_BLOCK, NULL, &d->db, &ce) !=
			 HS_SUCCESS) {
		if (ce && ce->expression >= 0 && (unsigned)ce->expression < n &&
		    d->pats[ce->expression].id >= DET__BUILTIN)
			*bad = d->pats[ce->expression].id - DET__BUILTIN;
		snprintf(err, errlen, "%s", ce && ce->message ? ce->message : "does not compile");
		hs_free_compile_error(ce);
		goto fail;
	}
	if (d->db && hs_alloc_scratch(d->db, &d->scratch) != HS_SUCCESS)
		goto oom;
	free(exprs);
	free(flags);
	free(ids);
	return d;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	free(exprs);
	free(flags);
	free(ids);
	detect_free(d);
	return NULL;
}

/*
 * Hyperscan's match callback. Matches come in order of their end; an
 * unchecked pattern's matches that share a start are one growing span
 * (`[^\s]+` reports every end), so they are kept as one.
 */
static int on_match(unsigned int pat, unsigned long long from, unsigned long long to,
		    unsigned int flags, void *ctx)
{
	struct detector_set *d = ctx;
	long li = d->last[pat];

	if (li >= 0 && d->pats[pat].check == C_NONE && d->pats[pat].value != V_LAST40 &&
	    d->raw[li].from == from) {
		d->raw[li].to = to;
		return 0;
	}
	if (d->nraw == d->rawcap) {
		size_t ncap = d->rawcap ? d->rawcap * 2 : 64;
		struct raw *nr;

		if (ncap > DET_MAX_RAW || !(nr = realloc(d->raw, ncap * sizeof(*nr)))) {
			d->overflow = true;
			return 1; /* stop: the caller masks the whole text */
		}
		d->raw = nr;
		d->rawcap = ncap;
	}
	d->raw[d->nraw] = (struct raw){ .pat = pat, .from = from, .to = to };
	d->last[pat] = d->nraw++;
	return 0;
}

bool detect_luhn(const char *s, size_t len)
{
	unsigned sum = 0, n = 0;

	for (size_t i = len; i-- > 0;) {
		unsigned v;

		if (s[i] < '0' || s[i] > '9')
			continue;
		v = s[i] - '0';
		if (n++ & 1) {
			v *= 2;
			if (v > 9)
				v -= 9;
		}
		sum += v;
	}
	return n >= 13 && n <= 19 && sum % 10 == 0;
}

bool detect_iban(const char *s, size_t len)
{
	char c[40];
	unsigned rem = 0;
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == ' ')
			continue;
		if (n == sizeof(c))
			return false;
		c[n++] = s[i];
	}
	if (n < 15 || n > 34)
		return false;
	/* the first four characters go to the end; letters count as 10..35 */
	for (size_t k = 0; k < n; k++) {
		char ch = c[(k + 4) % n];

		if (ch >= '0' && ch <= '9')
			rem = (rem * 10 + (ch - '0')) % 97;
		else if (ch >= 'A' && ch <= 'Z')
			rem = (rem * 100 + (ch - 'A' + 10)) % 97;
		else
			return false;
	}
	return rem == 1;
}

bool detect_ssn(const char *s, size_t len)
{
	unsigned area, group, serial;

	if (len != 11 || s[3] != '-' || s[6] != '-')
		return false;
	if (sscanf(s, "%3u-%2u-%4u", &area, &group, &serial) != 3)
		return false;
	return area && area != 666 && area < 900 && group && serial;
}

/* Cut raw match r down to its sensitive value; false when there is none. */
static bool value_of(const struct det_pattern *p, const char *s, struct raw *r)
{
	size_t i = r->from;

	switch (p->value) {
	case V_WHOLE:
		break;
	case V_ASSIGNED:
		while (i < r->to && s[i] != '=' && s[i] != ':')
			i++;
		i++;
		while (i < r->to && (s[i] == ' ' || s[i] == '\t' || s[i] == '\'' || s[i] == '"'))
			i++;
		r->from = i;
		/* a parameter placeholder ($1) is no secret: normalized text keeps it */
		if (i + 1 < r->to && s[i] == '$') {
			size_t k = i + 1;

			while (k < r->to && s[k] >= '0' && s[k] <= '9')
				k++;
			if (k == r->to)
				return false;
		}
		break;
	case V_QUOTED:
		while (i < r->to && s[i] != '\'')
			i++;
		r->from = i + 1;
		r->to--; /* the closing quote */
		break;
	case V_LAST40:
		r->from = r->to - 40;
		break;
	}
	if (r->from >= r->to)
		return false;
	switch (p->check) {
	case C_NONE:
		return true;
	case C_LUHN:
		return detect_luhn(s + r->from, r->to - r->from);
	case C_IBAN:
		return detect_iban(s + r->from, r->to - r->from);
	case C_SSN:
		return detect_ssn(s + r->from, r->to - r->from);
	}
	return false;
}

static int by_start(const void *a, const void *b)
{
	const struct det_span *x = a, *y = b;

	if (x->from != y->from)
		return x->from < y->from ? -1 : 1;
	return x->to < y->to ? 1 : x->to > y->to ? -1 : 0;
}

long detect_scan(struct detector_set *d, const char *s, size_t len, struct det_span *out,
		 size_t cap)
{
	struct det_span *all;
	size_t n = 0, m = 0;

	if (!d->db || !len)
		return 0;
	d->nraw = 0;
	d->overflow = false;
	for (unsigned i = 0; i < d->npats; i++)
		d->last[i] = -1;
	if (hs_scan(d->db, s, len, 0, d->scratch, on_match, d) != HS_SUCCESS && !d->overflow)
		return -1;
	if (d->overflow)
		return -1;
	all = malloc((d->nraw + 1) * sizeof(*all));
	if (!all)
		return -1;
	for (size_t i = 0; i < d->nraw; i++) {
		struct raw r = d->raw[i];
		const struct det_pattern *p = &d->pats[r.pat];

		if (value_of(p, s, &r))
			all[n++] = (struct det_span){ .from = r.from, .to = r.to, .id = p->id };
	}
	qsort(all, n, sizeof(*all), by_start);
	/* merge overlaps: the earliest (then longest) span names the merged one */
	for (size_t i = 0; i < n; i++) {
		if (m && all[i].from < all[m - 1].to) {
			if (all[i].to > all[m - 1].to)
				all[m - 1].to = all[i].to;
			continue;
		}
		all[m++] = all[i];
	}
	memcpy(out, all, (m < cap ? m : cap) * sizeof(*out));
	free(all);
	return m;
}

char *detect_mask(struct detector_set *d, const char *s, size_t len, size_t *outlen,
		  unsigned *found)
{
	struct det_span stack[64], *sp = stack;
	long n = detect_scan(d, s, len, stack, 64);
	size_t cap, o = 0, at = 0;
	char *out;

	if (n > 64) {
		sp = malloc(n * sizeof(*sp));
		if (!sp)
			return NULL;
		n = detect_scan(d, s, len, sp, n);
	}
	if (n < 0) {
		/* a scan that failed cannot vouch for anything in s */
		if (sp != stack)
			free(sp);
		*found = 1;
		*outlen = strlen("<unscanned>");
		return strdup("<unscanned>");
	}
	cap = len + 1;
	for (long i = 0; i < n; i++)
		cap += strlen(detect_label(d, sp[i].id)) + 2;
	out = malloc(cap);
	if (out) {
		for (long i = 0; i < n; i++) {
			memcpy(out + o, s + at, sp[i].from - at);
			o += sp[i].from - at;
			o += sprintf(out + o, "<%s>", detect_label(d, sp[i].id));
			at = sp[i].to;
		}
		memcpy(out + o, s + at, len - at);
		o += len - at;
		out[o] = 0;
		*outlen = o;
		*found = n;
	}
	if (sp != stack)
		free(sp);
	return out;
}
