/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The hash chain of one agent's events.
 *
 * Every event carries, in agent.prev, the lowercase hex SHA-256 of the bytes
 * of the event this agent emitted before it: the whole JSON object exactly as
 * written (a JSON Lines line without its '\n', a Kafka message's value). The
 * first event of a new state directory has 64 zeros. Because those bytes
 * hold their own agent.prev, each event vouches for the whole stream before
 * it: removing, inserting or editing an event anywhere breaks the link to
 * the next one.
 */
#ifndef DBW_CHAIN_H
#define DBW_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#define CHAIN_HASH_LEN 32
#define CHAIN_HEX_LEN  64

/* SHA-256 of data[0..len) (OpenSSL EVP). */
void chain_hash(const void *data, size_t len, uint8_t out[CHAIN_HASH_LEN]);

/* h as 64 lowercase hex digits and a NUL. */
void chain_hex(const uint8_t h[CHAIN_HASH_LEN], char out[CHAIN_HEX_LEN + 1]);

/* 64 hex digits back into bytes. Returns 0, or -1 if hex is not exactly that. */
int chain_unhex(const char *hex, uint8_t out[CHAIN_HASH_LEN]);

#endif /* DBW_CHAIN_H */
