/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Detectors of sensitive values in text that leaves the host: statement
 * text in `masked` mode, server error messages and details.
 *
 * Every detector is a Hyperscan expression; all of a set are compiled once
 * into one database and found in one pass. Hyperscan reports every match
 * end with its leftmost start; the spans are then checked where a pattern
 * alone is too loose (Luhn for card numbers, the ISO 13616 checksum for
 * IBANs, the SSA's invalid ranges for SSNs), cut down to the value where
 * the pattern includes a key (`password=...`, `aws_secret_access_key=...`),
 * and merged. A masked text has each span replaced by `<name>`.
 */
#ifndef DBW_DETECT_H
#define DBW_DETECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Built-in detectors: bit numbers of a detector mask. Append only. */
enum det_builtin {
	DET_EMAIL = 0,
	DET_CREDIT_CARD = 1,
	DET_SSN = 2,
	DET_PHONE = 3,
	DET_IBAN = 4,
	DET_AWS_KEY = 5, /* access key ids and secret access keys */
	DET_JWT = 6,
	DET_PRIVATE_KEY = 7,
	DET_PASSWORD = 8, /* password=, secret=, token= ... and SQL's PASSWORD '...' */
	DET__BUILTIN = 9,
};

#define DET_ALL_BUILTIN ((1u << DET__BUILTIN) - 1)
#define DET_MAX_CUSTOM	32

/* A detector the policy defines: a name (used as <name>) and an expression. */
struct det_custom {
	const char *name;
	const char *regex;
};

struct detector_set;

/* Name of a built-in detector ("email"), or NULL. */
const char *detect_builtin_name(int id);
/* Bit number of a built-in detector name, or -1. */
int detect_builtin(const char *name);

/*
 * Compile the built-ins in mask `builtin` and the custom ones into one
 * database. NULL on failure, with the reason in err and, when a custom
 * expression is at fault, its index in *bad (else -1).
 */
struct detector_set *detect_new(uint32_t builtin, const struct det_custom *custom, size_t ncustom,
				char *err, size_t errlen, int *bad);
void detect_free(struct detector_set *d);

/*
 * Check one expression as detect_new would compile it. 0, or -1 with
 * Hyperscan's reason in err.
 */
int detect_check_regex(const char *regex, char *err, size_t errlen);

struct det_span {
	size_t from, to; /* [from, to) */
	int id; /* built-in bit, or DET__BUILTIN + custom index */
};

/*
 * Find the sensitive spans of s[0..len): sorted, merged, checked. Writes at
 * most cap spans; returns how many there are (may exceed cap), or -1 when
 * the scan failed (the caller must then treat all of s as sensitive).
 */
long detect_scan(struct detector_set *d, const char *s, size_t len, struct det_span *out,
		 size_t cap);

/* The label of span id: "email", or a custom detector's name. */
const char *detect_label(const struct detector_set *d, int id);

/*
 * s[0..len) with every span replaced by "<label>", NUL-terminated, in a
 * malloc'd buffer (*outlen without the NUL). *found gets the number of
 * spans. When the scan fails the whole text becomes "<unscanned>". NULL
 * only when out of memory.
 */
char *detect_mask(struct detector_set *d, const char *s, size_t len, size_t *outlen,
		  unsigned *found);

/* Luhn checksum over the digits of s[0..len) (other bytes skipped); needs 13-19 digits. */
bool detect_luhn(const char *s, size_t len);
/* ISO 13616 IBAN check (mod 97 == 1) over s[0..len), spaces skipped. */
bool detect_iban(const char *s, size_t len);
/* A US SSN "AAA-GG-SSSS" outside the ranges never issued (000, 666, 9xx, 00, 0000). */
bool detect_ssn(const char *s, size_t len);

#endif /* DBW_DETECT_H */
