// SPDX-License-Identifier: GPL-2.0-only
/* The event hash chain: SHA-256 through OpenSSL, hex both ways. */
#include <string.h>
#include <openssl/evp.h>

#include "chain.h"

void chain_hash(const void *data, size_t len, uint8_t out[CHAIN_HASH_LEN])
{
	unsigned int n = CHAIN_HASH_LEN;

	/* EVP_Digest only fails on allocation: a zero hash then breaks the chain visibly */
	if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL))
		memset(out, 0, CHAIN_HASH_LEN);
}

void chain_hex(const uint8_t h[CHAIN_HASH_LEN], char out[CHAIN_HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < CHAIN_HASH_LEN; i++) {
		out[2 * i] = digits[h[i] >> 4];
		out[2 * i + 1] = digits[h[i] & 15];
	}
	out[CHAIN_HEX_LEN] = 0;
}

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int chain_unhex(const char *hex, uint8_t out[CHAIN_HASH_LEN])
{
	if (!hex || strlen(hex) != CHAIN_HEX_LEN)
		return -1;
	for (int i = 0; i < CHAIN_HASH_LEN; i++) {
		int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = hi << 4 | lo;
	}
	return 0;
}
