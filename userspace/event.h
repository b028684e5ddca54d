/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Audit events (schema dbwarden.audit/v1) and where they go.
 *
 * Every event is created by event_new, which assigns the next agent.seq, and
 * must be handed to event_emit: the daemon is single-threaded, so seq is
 * gap-free by construction. event_emit adds agent.prev, the hash of the
 * previous event's bytes (chain.h). The JSON bytes written here are the
 * bytes every sink gets.
 */
#ifndef DBW_EVENT_H
#define DBW_EVENT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

#include "output.h"

#define DBW_SCHEMA "dbwarden.audit/v1"

struct emitter;

/*
 * Every output of o gets every event. With o->state_dir, agent.seq and the
 * hash chain (chain.h) go on from where the last run stopped (and the
 * directory is locked); a run that did not stop cleanly is reported by an
 * `alert` event. Returns NULL with a one-line reason in err.
 */
struct emitter *emitter_open(const struct output_opts *o, char *err, size_t errlen);

/* One output, nothing persisted: spec "stdout" or "file:PATH" (appended to). */
struct emitter *emitter_new(const char *spec, char *err, size_t errlen);

/* Flush, close every output (Kafka delivers what it can), store the state. */
void emitter_free(struct emitter *em);

/* A new event of type with the common fields; ts_mono_ns: CLOCK_MONOTONIC. */
json_t *event_new(struct emitter *em, const char *type, uint64_t ts_mono_ns);

/*
 * Make ev (may be NULL: out of memory) an alert of this kind, and say it in
 * the agent's log (log.h): a warning, or info for the kinds that report the
 * agent's ordinary work (policy_loaded, identity_restored,
 * approval_granted). `where` (may be NULL) says what it is about, e.g. a
 * connection. The log holds at most one line per kind per 10 s with a count
 * of those held back; the events themselves are never held back.
 */
void event_set_alert(json_t *ev, const char *kind, const char *detail, const char *where);

/* Serialise and write ev (the reference is consumed). Returns 0 or -1. */
int event_emit(struct emitter *em, json_t *ev);

/*
 * The same, with tail (",\"key\":value..." already serialised) added as the
 * last members: the constant parts of an event (a connection, its actor)
 * are serialised once, not once per statement.
 */
int event_emit_parts(struct emitter *em, json_t *ev, const char *tail);

/*
 * Hand the batch to every output (after each batch of records; also when
 * it grows past 1 MiB) and let them do their regular work: Kafka serves
 * its delivery reports and feeds the producer from its spool, and a loss
 * an output reports becomes a `loss` event here.
 */
void emitter_flush(struct emitter *em);

/* Events of this run, write errors, and events an output dropped (spool full). */
uint64_t emitter_seq(const struct emitter *em);
uint64_t emitter_errors(const struct emitter *em);
uint64_t emitter_losses(const struct emitter *em);

/* A JSON string of s[0..len); invalid UTF-8 bytes become '?' (never dropped). */
json_t *json_str_safe(const char *s, size_t len);
/* The same for a C string, and null for NULL or "". */
json_t *json_str_or_null(const char *s);

#endif /* DBW_EVENT_H */
