// SPDX-License-Identifier: GPL-2.0-only
/*
 * Sensitive-value detectors (Hyperscan): the checksums (Luhn, IBAN, SSN
 * ranges), and each detector with positive and negative byte-exact
 * fixtures: what the masked text must be, to the byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "detect.h"

static int setup(void **state)
{
	char err[256];
	int bad;
	struct det_custom custom[] = { { "employee_id", "EMP-[0-9]{6}" } };

	*state = detect_new(DET_ALL_BUILTIN, custom, 1, err, sizeof(err), &bad);
	if (!*state)
		fprintf(stderr, "detect_new: %s\n", err);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	detect_free(*state);
	return 0;
}

/* Mask `in` and compare with `want`, byte for byte. */
static void expect(void **state, const char *in, const char *want)
{
	size_t n;
	unsigned found;
	char *out = detect_mask(*state, in, strlen(in), &n, &found);

	assert_non_null(out);
	if (strcmp(out, want))
		fprintf(stderr, "in:   %s\nout:  %s\nwant: %s\n", in, out, want);
	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
	free(out);
}

static void test_luhn(void **state)
{
	assert_true(detect_luhn("4111111111111111", 16));
	assert_true(detect_luhn("4111 1111 1111 1111", 19));
	assert_true(detect_luhn("5555-5555-5555-4444", 19));
	assert_true(detect_luhn("378282246310005", 15)); /* Amex */
	assert_false(detect_luhn("4111111111111112", 16));
	assert_false(detect_luhn("1234567812345678", 16));
	assert_false(detect_luhn("000000000000", 12)); /* too short */
	assert_false(detect_luhn("00000000000000000000", 20)); /* too long */
}

static void test_iban(void **state)
{
	assert_true(detect_iban("DE89370400440532013000", 22));
	assert_true(detect_iban("GB82 WEST 1234 5698 7654 32", 27));
	assert_true(detect_iban("FR1420041010050500013M02606", 27));
	assert_false(detect_iban("DE89370400440532013001", 22));
	assert_false(detect_iban("GB82WEST1234569876543", 21)); /* a digit missing */
	assert_false(detect_iban("DE89", 4));
	assert_false(detect_iban("de89370400440532013000", 22)); /* lower case */
}

static void test_ssn_ranges(void **state)
{
	assert_true(detect_ssn("123-45-6789", 11));
	assert_false(detect_ssn("000-45-6789", 11));
	assert_false(detect_ssn("666-45-6789", 11));
	assert_false(detect_ssn("912-45-6789", 11));
	assert_false(detect_ssn("123-00-6789", 11));
	assert_false(detect_ssn("123-45-0000", 11));
	assert_false(detect_ssn("123456789", 9));
}

static void test_email(void **state)
{
	expect(state, "SELECT * FROM users WHERE email = 'alice.o+x@example.co.uk'",
	       "SELECT * FROM users WHERE email = '<email>'");
	expect(state, "a@b.io and bob_1@mail-host.example.com;", "<email> and <email>;");
	expect(state, "no at sign: alice.example.com", "no at sign: alice.example.com");
	expect(state, "user@localhost has no dot", "user@localhost has no dot");
	expect(state, "@example.com", "@example.com");
}

static void test_credit_card(void **state)
{
	expect(state, "card 4111111111111111 ok", "card <credit_card> ok");
	expect(state, "'4111 1111 1111 1111'", "'<credit_card>'");
	expect(state, "5555-5555-5555-4444,378282246310005", "<credit_card>,<credit_card>");
	/* Luhn fails: an order number of the same shape stays */
	expect(state, "order 4111111111111112", "order 4111111111111112");
	/* a longer digit run is not a card */
	expect(state, "41111111111111110000000", "41111111111111110000000");
	expect(state, "id 12345", "id 12345");
}

static void test_ssn(void **state)
{
	expect(state, "ssn='123-45-6789'", "ssn='<ssn>'");
	expect(state, "666-45-6789 000-12-3456", "666-45-6789 000-12-3456");
	expect(state, "date 2024-01-1234", "date 2024-01-1234");
}

static void test_phone(void **state)
{
	expect(state, "call +14155550100 now", "call <phone> now");
	expect(state, "+44 20 7946 0958", "<phone>");
	expect(state, "x = 1 + 2", "x = 1 + 2");
	expect(state, "+123", "+123");
}

static void test_iban_text(void **state)
{
	expect(state, "pay to DE89370400440532013000.", "pay to <iban>.");
	expect(state, "GB82 WEST 1234 5698 7654 32", "<iban>");
	expect(state, "DE89370400440532013001", "DE89370400440532013001");
}

static void test_aws(void **state)
{
	expect(state, "key AKIAIOSFODNN7EXAMPLE here", "key <aws_key> here");
	expect(state, "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	       "aws_secret_access_key = <aws_key>");
	expect(state, "AKIA1234", "AKIA1234");
	expect(state, "AKIAIOSFODNN7EXAMPLEX", "AKIAIOSFODNN7EXAMPLEX"); /* 17 after prefix */
}

static void test_jwt(void **state)
{
	expect(state,
	       "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_"
	       "XgL0n3I9PlFUP0THsR8U end",
	       "token <jwt> end");
	expect(state, "eyJ.eyJ.x", "eyJ.eyJ.x");
}

static void test_private_key(void **state)
{
	expect(state,
	       "INSERT INTO k VALUES ('-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAKC==\n"
	       "-----END RSA PRIVATE KEY-----')",
	       "INSERT INTO k VALUES ('<private_key>')");
	/* cut before its end marker: still masked to where the key body stops */
	expect(state, "'-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg", "'<private_key>");
	expect(state, "-----BEGIN PUBLIC KEY-----", "-----BEGIN PUBLIC KEY-----");
}

static void test_password(void **state)
{
	expect(state, "host=db password=hunter2 user=app", "host=db password=<password> user=app");
	expect(state, "{\"api_key\": \"abc123XYZ\"}", "{\"api_key\": \"<password>\"}");
	expect(state, "ALTER ROLE app PASSWORD 's3cr3t!'", "ALTER ROLE app PASSWORD '<password>'");
	expect(state, "SELECT password FROM users", "SELECT password FROM users");
	expect(state, "secret: ", "secret: ");
}

/* Normalized text keeps its placeholders: `password = $1` names no secret. */
static void test_placeholder(void **state)
{
	expect(state, "SELECT * FROM u WHERE password = $1 AND token=$12",
	       "SELECT * FROM u WHERE password = $1 AND token=$12");
	expect(state, "UPDATE u SET password = $1x", "UPDATE u SET password = <password>");
}

static void test_custom(void **state)
{
	expect(state, "emp EMP-123456 and EMP-12", "emp <employee_id> and EMP-12");
}

static void test_overlap_and_empty(void **state)
{
	/* an email inside a password assignment: one span, named by the earliest */
	expect(state, "password=a@b.io", "password=<password>");
	expect(state, "", "");
	expect(state, "plain SELECT 1", "plain SELECT 1");
}

static void test_bad_custom(void **state)
{
	struct det_custom custom[] = { { "ok", "abc" }, { "broken", "a(b" } };
	char err[256];
	int bad;

	assert_null(detect_new(DET_ALL_BUILTIN, custom, 2, err, sizeof(err), &bad));
	assert_int_equal(bad, 1);
	assert_int_not_equal(detect_check_regex("a(b", err, sizeof(err)), 0);
	assert_int_equal(detect_check_regex("[a-z]+", err, sizeof(err)), 0);
}

static void test_subset(void **state)
{
	char err[256];
	int bad;
	struct detector_set *d = detect_new(1u << DET_EMAIL, NULL, 0, err, sizeof(err), &bad);
	size_t n;
	unsigned found;
	char *out;

	assert_non_null(d);
	out = detect_mask(d, "a@b.io 4111111111111111", 23, &n, &found);
	assert_string_equal(out, "<email> 4111111111111111");
	assert_int_equal(found, 1);
	free(out);
	detect_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_luhn),
		cmocka_unit_test(test_iban),
		cmocka_unit_test(test_ssn_ranges),
		cmocka_unit_test(test_email),
		cmocka_unit_test(test_credit_card),
		cmocka_unit_test(test_ssn),
		cmocka_unit_test(test_phone),
		cmocka_unit_test(test_iban_text),
		cmocka_unit_test(test_aws),
		cmocka_unit_test(test_jwt),
		cmocka_unit_test(test_private_key),
		cmocka_unit_test(test_password),
		cmocka_unit_test(test_custom),
		cmocka_unit_test(test_placeholder),
		cmocka_unit_test(test_overlap_and_empty),
		cmocka_unit_test(test_bad_custom),
		cmocka_unit_test(test_subset),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
