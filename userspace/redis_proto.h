/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Redis serialization protocol (RESP2 and RESP3): a streaming scanner for
 * commands (client -> server) and replies (server -> client), and the
 * command table that says which arguments are keys. Pure: no I/O, no
 * globals but constant tables; the daemon, the unit tests and the fuzzers
 * share it.
 *
 * A command is an array of bulk strings, or an inline line:
 *
 *   *3\r\n $3\r\n SET\r\n $6\r\n user:1\r\n $5\r\n alice\r\n
 *   +--+     +--+ +---+   +--+  +------+    +--+  +-----+
 *   argc     len  arg 0   len   arg 1       len   arg 2
 *
 *   SET user:1 alice\r\n                    (inline: split on spaces, quotes)
 *
 * A reply is one value: a line typed by its first byte (+ simple string,
 * - error, : integer, _ null, , double, # boolean, ( big number), a bulk
 * ($ string, ! blob error, = verbatim: a length line, the bytes, CRLF) or an
 * aggregate (* array, ~ set, % map, > push, | attribute: a count line,
 * then that many values, twice as many for maps and attributes). A push is
 * out of band (it answers no command); an attribute precedes the value it
 * annotates and is not a reply by itself.
 *
 * Memory is bounded whatever the peer sends: bulk payloads are skipped as
 * they stream past, keeping at most REDIS_ARG_KEEP bytes of each of the
 * first REDIS_MAX_ARGS arguments of a command; lines keep their first
 * REDIS_LINE_KEEP bytes, inline commands their first REDIS_INLINE_MAX.
 */
#ifndef DBW_REDIS_PROTO_H
#define DBW_REDIS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stmt.h"

#define REDIS_MAX_ARGS	 64
#define REDIS_ARG_KEEP	 256
#define REDIS_LINE_KEEP	 256
#define REDIS_INLINE_MAX (64 * 1024)
#define REDIS_MAX_DEPTH	 32
#define REDIS_MAX_BULK	 (512LL * 1024 * 1024) /* Redis' own proto-max-bulk-len */
#define REDIS_MAX_ELEMS	 (1LL << 32)
#define REDIS_EXEC_ELEMS 256 /* top-level elements of a reply described */
#define REDIS_CODE_LEN	 24

struct redis_arg {
	uint64_t len; /* bytes the argument has */
	uint32_t kept; /* bytes of it in data */
	char data[REDIS_ARG_KEEP + 1]; /* NUL-terminated */
};

/* One command as the client sent it (the first REDIS_MAX_ARGS arguments). */
struct redis_cmd {
	uint64_t argc; /* arguments sent */
	uint32_t nargs; /* of them kept in args[] */
	bool inline_cmd; /* an inline command line, not a RESP array */
	struct redis_arg args[REDIS_MAX_ARGS];
};

/* What a reply element says about the outcome of a command. */
struct redis_elem {
	char type; /* its first byte */
	bool error; /* - or ! */
	char code[REDIS_CODE_LEN]; /* an error's first word ("ERR", "WRONGTYPE") */
};

struct redis_reply {
	struct redis_elem top; /* the reply itself */
	bool push; /* out of band (RESP3 >): answers no command */
	bool null; /* $-1, *-1 or _ */
	int64_t count; /* elements of an aggregate (pairs for a map), else -1 */
	char status[REDIS_CODE_LEN]; /* a short simple string ("OK", "QUEUED"), else "" */
	uint32_t nelems; /* elements described in elems[] (an array reply's first ones) */
	struct redis_elem elems[REDIS_EXEC_ELEMS];
};

struct redis_frame {
	int64_t left; /* values still to come in this aggregate */
	bool attr; /* an attribute: it does not count as a value of its parent */
	char type; /* its first byte */
};

/* Scanner state of one direction; zero it (redis_scan_init) to start. */
struct redis_scan {
	bool request; /* client -> server: commands; else replies */
	int state; /* internal: line, bulk, inline */
	char line[REDIS_LINE_KEEP + 1];
	uint32_t line_len; /* bytes kept */
	uint64_t line_full; /* bytes of the line seen */
	int64_t bulk_left; /* payload + CRLF bytes of the current bulk still to come */
	char bulk_type;
	struct redis_arg *bulk_arg; /* where the bulk's first bytes go, or NULL */
	char *inl; /* an inline command line being read (heap, REDIS_INLINE_MAX) */
	uint32_t inl_len;
	int depth;
	struct redis_frame frames[REDIS_MAX_DEPTH];
	uint64_t unit_bytes; /* bytes of the current command or reply so far */
	struct redis_cmd cmd; /* the command being read */
	struct redis_reply reply; /* the reply being read */
};

void redis_scan_init(struct redis_scan *s, bool request);
/* Release what the scanner holds (an inline line). */
void redis_scan_reset(struct redis_scan *s);

/*
 * Scan buf[0..len). OK: a whole command (s->cmd) or reply (s->reply) ends
 * at buf + *consumed; call again with the rest. NEED_MORE: every byte was
 * taken into the scanner's state (*consumed = len), the unit goes on in
 * the next bytes: unlike the stateless parsers, partial progress is kept
 * so that a 512 MiB value never has to be buffered. INVALID: not RESP
 * (the stream cannot be followed any more); *consumed is undefined.
 */
enum dbw_parse redis_scan(struct redis_scan *s, const uint8_t *buf, size_t len, size_t *consumed);

/*
 * n bytes of the stream were not captured. Inside a bulk payload (a long
 * value) they are skipped as if seen and true is returned; anywhere else
 * the stream cannot be followed: false.
 */
bool redis_scan_skip(struct redis_scan *s, uint64_t n);

/* ---- commands ------------------------------------------------------------- */

/*
 * A command's verb (upper case, "CONFIG SET" for a container's
 * subcommand) and which arguments are keys. keys[i] is set for each kept
 * argument i that names a key (or a channel, or KEYS' pattern). Returns the
 * number of words of the verb (1 or 2).
 */
int redis_cmd_shape(const struct redis_cmd *c, char *verb, size_t verblen, bool *keys);

/*
 * The statement of a command: its text with every value as ? (keys and the
 * verb stay: "SET user:1 ?"), its verb, its fingerprint (16 hex digits of a
 * hash of the verb and the keys with digit runs folded) and its objects
 * (pointers into c). text holds at most textlen bytes, cut at a word.
 */
struct redis_stmt {
	char verb[48];
	char fingerprint[17];
	const char *objects[32];
	size_t nobjects;
	bool cut; /* arguments or text were left out */
};

void redis_cmd_stmt(const struct redis_cmd *c, char *text, size_t textlen, struct redis_stmt *out);

/*
 * Redis verb classes the kernel guard tells apart (enum dbw_redis_verb),
 * by command name: "CONFIG SET" for a subcommand. The kernel learns them
 * through the redis_verbs map. Returns the class, or 0 (OTHER).
 */
int redis_verb_class(const char *verb);

/*
 * Entry i of the verb class table: a command name ("FLUSHALL", "UNLINK",
 * "CONFIG SET") and its class in *cls; NULL past the table.
 */
const char *redis_verb_entry(size_t i, int *cls);

/*
 * Entry i of the key positions result masking by key goes by (the
 * kernel's mask_rkey_spec, struct dbw_rkey_spec): the command name
 * ("OBJECT ENCODING" for a subcommand), NULL past the table. A command
 * not in it: every argument may be a key.
 */
struct dbw_rkey_spec;
const char *redis_mask_spec_entry(size_t i, struct dbw_rkey_spec *out);

/* Unit tests: the key table is in the order bsearch needs. */
bool redis_cmd_table_sorted(void);

/* Entry i of the containers' table (CONFIG, CLIENT, ...), NULL past it. */
const char *redis_container(size_t i);

/* Is cmd a container whose first argument is a subcommand (CONFIG, CLIENT, ...)? */
bool redis_has_subcommand(const char *cmd);

#endif /* DBW_REDIS_PROTO_H */
