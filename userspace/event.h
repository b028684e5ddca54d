/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Audit events (schema dbwarden.audit/v1) and where they go.
 *
 * Every event is created by event_new, which assigns the next agent.seq, and
 * must be handed to event_emit: the daemon is single-threaded, so seq is
 * gap-free by construction. The JSON bytes written here are the bytes every
 * sink gets.
 */
#ifndef DBW_EVENT_H
#define DBW_EVENT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

#define DBW_SCHEMA "dbwarden.audit/v1"

struct emitter;

/*
 * spec: "stdout" or "file:PATH" (appended to). Returns NULL with a one-line
 * reason in err.
 */
struct emitter *emitter_new(const char *spec, char *err, size_t errlen);
void emitter_free(struct emitter *em);

/* A new event of type with the common fields; ts_mono_ns: CLOCK_MONOTONIC. */
json_t *event_new(struct emitter *em, const char *type, uint64_t ts_mono_ns);

/* Serialise and write ev (the reference is consumed). Returns 0 or -1. */
int event_emit(struct emitter *em, json_t *ev);

/*
 * The same, with tail (",\"key\":value..." already serialised) added as the
 * last members: the constant parts of an event (a connection, its actor)
 * are serialised once, not once per statement.
 */
int event_emit_parts(struct emitter *em, json_t *ev, const char *tail);

/* Push buffered lines out (after each batch of records). */
void emitter_flush(struct emitter *em);

/* Events written, and write errors, so far. */
uint64_t emitter_seq(const struct emitter *em);
uint64_t emitter_errors(const struct emitter *em);

/* A JSON string of s[0..len); invalid UTF-8 bytes become '?' (never dropped). */
json_t *json_str_safe(const char *s, size_t len);
/* The same for a C string, and null for NULL or "". */
json_t *json_str_or_null(const char *s);

#endif /* DBW_EVENT_H */
