// SPDX-License-Identifier: GPL-2.0-only
/*
 * Detector throughput on one core: every built-in detector in one
 * Hyperscan database over realistic text (SQL statements with a few
 * values of each kind, PostgreSQL error details, log-like lines), masked
 * with detect_mask as the audit path does. Prints MB/s and statements/s.
 *
 *   .output/bench_detect [SECONDS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "detect.h"

static const char *const corpus[] = {
	"SELECT id, name, email FROM customers WHERE email = 'jane.doe@example.com' AND status = "
	"'active' ORDER BY created_at DESC LIMIT 50",
	"INSERT INTO payments (customer_id, card_number, amount, currency) VALUES (48213, "
	"'4111 1111 1111 1111', 129.90, 'EUR')",
	"UPDATE users SET phone = '+1 415 555 0142', updated_at = now() WHERE id = 77123",
	"SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id "
	"WHERE o.created_at > now() - interval '7 days' AND o.total > 100",
	"INSERT INTO transfers (iban, amount, reference) VALUES ('DE89370400440532013000', 2500, "
	"'invoice 2026-11-0042')",
	"Key (email)=(john.smith@corp.example.org) already exists.",
	"UPDATE api_clients SET secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' WHERE id = 3",
	"SELECT count(*), max(created_at) FROM events WHERE kind IN ('login', 'logout', "
	"'password_reset') AND user_id = 90210",
	"INSERT INTO people (ssn, first_name, last_name) VALUES ('123-45-6789', 'Mary', 'Major')",
	"SELECT * FROM sessions WHERE token = "
	"'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlX2xpdA'",
	"DELETE FROM carts WHERE updated_at < now() - interval '30 days' RETURNING id, "
	"customer_id",
	"WITH recent AS (SELECT customer_id, sum(total) AS s FROM orders GROUP BY customer_id) "
	"SELECT c.email, r.s FROM recent r JOIN customers c USING (customer_id) WHERE r.s > 1000",
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 3.0, t0, t;
	size_t n = sizeof(corpus) / sizeof(corpus[0]), bytes = 0, texts = 0, spans = 0;
	struct detector_set *d;
	char err[256], big[65536];
	size_t biglen = 0;
	int bad;

	d = detect_new(DET_ALL_BUILTIN, NULL, 0, err, sizeof(err), &bad);
	if (!d) {
		fprintf(stderr, "detect_new: %s\n", err);
		return 1;
	}
	/* one statement at a time (the audit path) */
	t0 = now_s();
	do {
		for (int k = 0; k < 1000; k++) {
			const char *s = corpus[texts % n];
			size_t len = strlen(s), olen;
			unsigned found;
			char *m = detect_mask(d, s, len, &olen, &found);

			free(m);
			bytes += len;
			spans += found;
			texts++;
		}
		t = now_s() - t0;
	} while (t < secs);
	printf("detect_mask per statement: %.1f MB/s, %.0f statements/s, %.2f spans/statement "
	       "(%zu-statement corpus, mean %zu B)\n",
	       bytes / t / 1e6, texts / t, (double)spans / texts, n, bytes / texts);

	/* large texts: the scan alone */
	while (biglen + 400 < sizeof(big))
		for (size_t i = 0; i < n && biglen + 400 < sizeof(big); i++)
			biglen += snprintf(big + biglen, sizeof(big) - biglen, "%s;\n", corpus[i]);
	bytes = texts = 0;
	t0 = now_s();
	do {
		struct det_span sp[64];

		for (int k = 0; k < 20; k++) {
			detect_scan(d, big, biglen, sp, 64);
			bytes += biglen;
			texts++;
		}
		t = now_s() - t0;
	} while (t < secs);
	printf("detect_scan over %zu KiB texts: %.1f MB/s\n", biglen >> 10, bytes / t / 1e6);
	detect_free(d);
	return 0;
}
