/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * dbwarden kernel <-> userspace ABI.
 *
 * This is the only header both sides include. Fixed-width types only, explicit
 * padding, explicit and append-only enum values, and _Static_asserts on every
 * size, so that a drift between the BPF objects and the daemon fails to compile
 * instead of corrupting records at run time. Bump DBW_ABI_VERSION on any change
 * that is not a pure append.
 */
#ifndef DBWARDEN_ABI_H
#define DBWARDEN_ABI_H

#ifdef __BPF__
/* vmlinux.h provides __u8 ... __u64 */
#else
#include <linux/types.h>
#endif

#define DBW_ABI_VERSION 5

/*
 * Bytes of one send / one receive copied into a single DATA record, and
 * how many such chunks one send or receive may produce. Anything beyond
 * DBW_CHUNK * DBW_MAX_CHUNKS in one verdict call is not copied: the DATA
 * record stream then carries a gap (stream_off jumps), and the
 * DBW_CNT_TRUNC_* counters say so. Userspace caps each protocol message at
 * DBW_MAX_MSG bytes and flags the statement truncated.
 */
#define DBW_CHUNK      16384
#define DBW_MAX_CHUNKS 16
#define DBW_MAX_MSG    65536

/* Ring buffer record types. Append only. */
enum dbw_rec_type {
	DBW_REC_CONN_OPEN = 1, /* a watched TCP connection is established */
	DBW_REC_DATA = 2, /* bytes of one direction of a connection */
	DBW_REC_CONN_CLOSE = 3, /* the connection reached TCP_CLOSE */
	DBW_REC_VERDICT = 4, /* the guard did not simply allow a statement */
	DBW_REC_EXEC = 5, /* a process exec'd: look for TLS libraries in it */
	DBW_REC_MASK = 6, /* result masking on a connection: what it did, what it could not */
	DBW_REC_MASK_REPLIES = 7, /* the counts of Redis replies, several in one record */
};

/* Direction of a DATA record, seen from the client. */
enum dbw_dir {
	DBW_DIR_TO_SERVER = 0, /* client -> server, captured by sk_msg */
	DBW_DIR_TO_CLIENT = 1, /* server -> client, captured at sock_recvmsg */
};

/* Application protocol of a watched port. Append only. */
enum dbw_proto {
	DBW_PROTO_NONE = 0,
	DBW_PROTO_POSTGRES = 1,
	DBW_PROTO_MYSQL = 2,
	DBW_PROTO_REDIS = 3,
};

/* DATA record flags. */
enum dbw_data_flags {
	/* bytes of this send before this chunk (its tail) were not captured */
	DBW_DATA_F_TRUNCATED = 1 << 0,
	/*
	 * plaintext of a TLS connection, taken at the TLS library's read and
	 * write functions: stream_off counts plaintext bytes, and the
	 * connection's non-TLS records (ciphertext) are no longer parsed
	 */
	DBW_DATA_F_TLS = 1 << 1,
};

/*
 * Counters, one slot each in the per-CPU array map `counters`. Every helper
 * failure, full map and truncation in the kernel lands here; the daemon sums
 * the CPUs, logs changes and turns losses into `loss` events. Append only.
 */
enum dbw_counter {
	DBW_CNT_CONN_WATCHED = 0, /* connect() to a watched port seen */
	DBW_CNT_CONN_OPEN = 1, /* established and inserted into the sockhash */
	DBW_CNT_CONN_CLOSE = 2, /* close seen for a watched connection */
	DBW_CNT_STORAGE_FAIL = 3, /* bpf_sk_storage_get(F_CREATE) failed: not watched */
	DBW_CNT_SOCKHASH_FAIL = 4, /* bpf_sock_hash_update failed: not watched */
	DBW_CNT_RB_FULL_OPEN = 5, /* CONN_OPEN record lost: ring buffer full */
	DBW_CNT_RB_FULL_DATA = 6, /* DATA record lost: ring buffer full */
	DBW_CNT_RB_FULL_CLOSE = 7, /* CONN_CLOSE record lost: ring buffer full */
	DBW_CNT_RB_LOST_BYTES = 8, /* payload bytes in DATA records lost that way */
	DBW_CNT_PULL_FAIL = 9, /* bpf_msg_pull_data failed (bytes skipped, counted) */
	DBW_CNT_LOAD_FAIL = 10, /* copying the bytes (probe_read) failed */
	DBW_CNT_TRUNC_SENDS = 11, /* sends/receives larger than DBW_CHUNK * DBW_MAX_CHUNKS */
	DBW_CNT_TRUNC_BYTES = 12, /* bytes not copied because of that */
	DBW_CNT_MSG_CALLS = 13, /* sk_msg verdict runs */
	DBW_CNT_RECV_CALLS = 14, /* receives on watched sockets */
	DBW_CNT_NO_STATE = 15, /* sk_msg on a socket without our state */
	DBW_CNT_DATA_RECORDS = 16, /* DATA records submitted */
	DBW_CNT_DATA_BYTES = 17, /* payload bytes submitted */
	DBW_CNT_RECV_NO_BUF = 18, /* receive not through read/recvfrom/readv/recvmsg: gap */
	DBW_CNT_GUARD_CHECKED = 19, /* Query/Parse messages the guard classified */
	DBW_CNT_GUARD_BLOCKED = 20, /* ... rewritten into the rule's error (block, approval) */
	DBW_CNT_GUARD_UNPARSED = 21, /* ... the lexer could not read fully: defaults.unparsed */
	DBW_CNT_GUARD_CORKED = 22, /* a Query/Parse spanning sends, held until complete */
	DBW_CNT_GUARD_EARLY = 23, /* checked before userspace set the connection's rules */
	DBW_CNT_GUARD_LOST = 24, /* framing lost (split header, too many messages) */
	DBW_CNT_GUARD_FAILED = 25, /* a rewrite failed: the send was dropped, conn reset */
	DBW_CNT_TLS_WRITES = 26, /* TLS writes of watched processes seen at the library */
	DBW_CNT_TLS_READS = 27, /* TLS reads of bound TLS sessions */
	DBW_CNT_TLS_BOUND = 28, /* TLS sessions tied to a watched connection */
	DBW_CNT_TLS_ARGS_FULL = 29, /* in-flight TLS call table full: that call not captured */
	DBW_CNT_TLS_BLOCKED = 30, /* TLS writes dropped by the guard (connection reset) */
	DBW_CNT_TLS_SESS_FULL = 31, /* TLS session table update failed: session not captured */
	DBW_CNT_EXEC_LOST = 32, /* EXEC record lost: ring buffer full (periodic rescan covers it) */
	/* while no daemon ran (struct dbw_agent_meta): */
	DBW_CNT_DOWN_BLOCKED = 33, /* statements and connects refused by --fail-mode closed */
	DBW_CNT_DOWN_TLS_WRITES = 34, /* TLS writes not seen in plaintext (no library probes) */
	DBW_CNT_MASK_CONNS = 35, /* connections that joined the masked sockhash */
	DBW_CNT_MASK_SKBS = 36, /* sk_skb verdict runs on masked connections */
	DBW_CNT_MASK_FIELDS = 37, /* result fields masked */
	DBW_CNT_MASK_UNMASKED = 38, /* fields a rule names that passed unmasked (allow) */
	DBW_CNT_MASK_DESYNC = 39, /* framing lost on a masked connection */
	DBW_CNT_MASK_TLS = 40, /* masked connections that asked for encryption */
	DBW_CNT_MASK_JOIN_FAIL = 41, /* a matched connection could not join the masked sockhash */
	DBW_CNT_MASK_RB_FULL = 42, /* MASK record lost: ring buffer full */
	DBW_CNT_MASK_OVERMASKED = 43, /* value-checked fields cut by an skb, masked, no match */
	DBW_CNT_MASK_SRV_CONNS = 44, /* accepted connections masked at the server's egress */
	DBW_CNT_MASK_SRV_SENDS = 45, /* sk_msg runs on them */
	DBW_CNT_MASK_SRV_RESENDS = 46, /* their sends that ended short, masked again when resent */
	DBW_CNT_UNSEEN_BYTES = 47, /* client bytes the kernel sent without dbw_msg: a gap */
	DBW_CNT_RESENDS = 48, /* client sends starting with bytes a short push left (seen) */
	DBW_CNT_PASS_PLAIN = 49, /* passes not by a redirect (the socket left its sockhash) */
	DBW_CNT__MAX = 52,
};

/*
 * Every ring buffer record starts with this header.
 *
 *  0               2               4                               8
 *  +-------+-------+-------+-------+-------+-------+-------+-------+
 *  |    version    |     type      |           size                |
 *  +---------------+---------------+-------------------------------+
 *  |                conn_id (socket cookie)                        |
 *  +---------------------------------------------------------------+
 *  |                ts_ns (CLOCK_MONOTONIC)                        |
 *  +---------------------------------------------------------------+
 *
 * size is the whole record, header included.
 */
struct dbw_rec_hdr {
	__u16 version;
	__u16 type;
	__u32 size;
	__u64 conn_id;
	__u64 ts_ns;
};
_Static_assert(sizeof(struct dbw_rec_hdr) == 24, "dbw_rec_hdr layout");

/* Who opened the connection: taken in cgroup/connect4/6, the caller's context. */
struct dbw_identity {
	__u32 pid; /* tgid */
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;
	char comm[16];
};
_Static_assert(sizeof(struct dbw_identity) == 40, "dbw_identity layout");

struct dbw_rec_conn_open {
	struct dbw_rec_hdr hdr;
	struct dbw_identity who;
	__u16 family; /* AF_INET or AF_INET6 */
	__u8 proto; /* enum dbw_proto */
	__u8 flags; /* enum dbw_open_flags */
	__u16 client_port; /* host byte order */
	__u16 server_port; /* host byte order */
	__u8 client_addr[16]; /* network order; IPv4 in the first 4 bytes */
	__u8 server_addr[16];
};
_Static_assert(sizeof(struct dbw_rec_conn_open) == 24 + 40 + 8 + 32, "conn_open layout");

enum dbw_open_flags {
	/* not new: a connection an earlier daemon saw open, announced again to
	 * the daemon that adopted the pinned programs (its stream goes on) */
	DBW_OPEN_F_RESUMED = 1 << 0,
};

/*
 * One chunk of one direction of a connection.
 *
 * stream_off is the offset of data[0] in this direction's byte stream since
 * the connection was established; a record whose stream_off is past the end
 * of the previous one means bytes were not captured (ring buffer full,
 * oversize send): the reader treats it as a gap. len bytes of data follow;
 * the record may be larger than needed (records come in size classes).
 */
struct dbw_rec_data {
	struct dbw_rec_hdr hdr;
	__u64 stream_off;
	__u32 len;
	__u32 pid; /* sender's tgid for TO_SERVER, 0 for TO_CLIENT */
	__u8 dir; /* enum dbw_dir */
	__u8 flags; /* enum dbw_data_flags */
	__u16 pad0;
	__u32 pad1;
	__u8 data[];
};
_Static_assert(sizeof(struct dbw_rec_data) == 24 + 24, "dbw_rec_data layout");

struct dbw_rec_conn_close {
	struct dbw_rec_hdr hdr;
	__u64 bytes[2]; /* stream length per direction at close, enum dbw_dir */
};
_Static_assert(sizeof(struct dbw_rec_conn_close) == 24 + 16, "conn_close layout");

/*
 * The kernel's SQL lexer (bpf/sql_lex.bpf.h) reads at most DBW_LEX_MAX
 * bytes of one Query/Parse text; past that the verdict falls to the
 * policy's `defaults.unparsed`.
 */
#define DBW_LEX_MAX	16384
#define DBW_LEX_OBJECTS 8

/*
 * Statement classes the kernel lexer tells apart: bit numbers of the
 * __u32 verb set in struct dbw_lex_result. Append only.
 */
enum dbw_verb {
	DBW_VERB_OTHER = 0, /* a statement the lexer does not classify */
	DBW_VERB_SELECT = 1,
	DBW_VERB_INSERT = 2,
	DBW_VERB_UPDATE = 3,
	DBW_VERB_DELETE = 4,
	DBW_VERB_MERGE = 5,
	DBW_VERB_TRUNCATE = 6,
	DBW_VERB_DROP = 7,
	DBW_VERB_ALTER = 8,
	DBW_VERB_CREATE = 9,
	DBW_VERB_GRANT = 10,
	DBW_VERB_REVOKE = 11,
	DBW_VERB_COPY = 12,
	DBW_VERB_BEGIN = 13, /* BEGIN, START TRANSACTION */
	DBW_VERB_COMMIT = 14, /* COMMIT, END */
	DBW_VERB_ROLLBACK = 15, /* ROLLBACK, ABORT */
	DBW_VERB_SET = 16,
	DBW_VERB_SHOW = 17,
	DBW_VERB_EXPLAIN = 18,
	DBW_VERB_CALL = 19,
	DBW_VERB_DO = 20,
	DBW_VERB_PREPARE = 21,
	DBW_VERB_EXECUTE = 22,
	DBW_VERB_VACUUM = 23,
	DBW_VERB_ANALYZE = 24,
	DBW_VERB_LOCK = 25,
	DBW_VERB_DEALLOCATE = 26,
	DBW_VERB_REINDEX = 27,
	DBW_VERB_COMMENT = 28,
	DBW_VERB_REFRESH = 29,
	DBW_VERB_VALUES = 30,
	DBW_VERB__MAX = 31,
};

/*
 * Redis command classes the kernel guard tells apart, for rules of the
 * Redis verb space (struct dbw_guard_rule.space): bit numbers of the same
 * __u32 verb set. A container's subcommand has its own class ("CONFIG SET")
 * and sets its container's bit too. The kernel maps a command name to its
 * bits through the redis_verbs map (key: dbw_name_hash of the upper-case
 * name, "CONFIG SET" with one space; value: __u32 bits, DBW_RVERB_F_SUBCMD
 * when the command is a container). Append only.
 */
enum dbw_redis_verb {
	DBW_RVERB_OTHER = 0,
	DBW_RVERB_FLUSHALL = 1,
	DBW_RVERB_FLUSHDB = 2,
	DBW_RVERB_KEYS = 3,
	DBW_RVERB_DEBUG = 4,
	DBW_RVERB_CONFIG = 5,
	DBW_RVERB_CONFIG_SET = 6,
	DBW_RVERB_SHUTDOWN = 7,
	DBW_RVERB_SCRIPT = 8,
	DBW_RVERB_EVAL = 9, /* EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, FCALL, FCALL_RO */
	DBW_RVERB_DEL = 10, /* DEL, UNLINK */
	DBW_RVERB_SET = 11,
	DBW_RVERB_GET = 12,
	DBW_RVERB_MIGRATE = 13,
	DBW_RVERB_MODULE = 14,
	DBW_RVERB_ACL = 15,
	DBW_RVERB_CLIENT = 16,
	DBW_RVERB_CLIENT_KILL = 17,
	DBW_RVERB_SAVE = 18, /* SAVE, BGSAVE, BGREWRITEAOF */
	DBW_RVERB_REPLICAOF = 19, /* REPLICAOF, SLAVEOF */
	DBW_RVERB_CLUSTER = 20,
	DBW_RVERB_SWAPDB = 21,
	DBW_RVERB_MONITOR = 22,
	DBW_RVERB_FUNCTION = 23,
	DBW_RVERB_RESTORE = 24,
	DBW_RVERB_RENAME = 25, /* RENAME, RENAMENX */
	DBW_RVERB_EXPIRE = 26, /* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, PERSIST */
	DBW_RVERB_SCAN = 27, /* SCAN, HSCAN, SSCAN, ZSCAN */
	DBW_RVERB_HSET = 28, /* HSET, HMSET, HSETNX */
	DBW_RVERB_HGETALL = 29,
	DBW_RVERB_CONFIG_REWRITE = 30,
	DBW_RVERB__MAX = 31,
};

#define DBW_RVERB_F_SUBCMD (1u << 31) /* redis_verbs value: a container command */

/* Which verb set a guard rule's verbs name (struct dbw_guard_rule.space). */
enum dbw_verb_space {
	DBW_SPACE_ANY = 0, /* verbs == 0: every statement of every protocol */
	DBW_SPACE_SQL = 1, /* enum dbw_verb: PostgreSQL and MySQL statements */
	DBW_SPACE_REDIS = 2, /* enum dbw_redis_verb: Redis commands */
};

enum dbw_lex_flags {
	DBW_LEX_F_WITHOUT_WHERE = 1 << 0, /* an UPDATE or DELETE (also inside a CTE) lacks WHERE */
	DBW_LEX_F_INCOMPLETE = 1 << 1, /* text or token budget exceeded: classification partial */
	DBW_LEX_F_UNTERMINATED = 1 << 2, /* a quote, dollar quote or comment does not end */
	DBW_LEX_F_OBJECTS_FULL = 1 << 3, /* more than DBW_LEX_OBJECTS relations named */
	DBW_LEX_F_DYNAMIC = 1 << 4, /* DO / EXECUTE / CALL: SQL built at run time */
};

/*
 * Relation names cross the boundary as FNV-1a 64 hashes of the name as
 * PostgreSQL resolves it: unquoted parts folded to lower case, quoted ones
 * as written, "schema.table" with its dot. Both sides hash with this.
 */
#define DBW_FNV_OFFSET 0xcbf29ce484222325ULL
#define DBW_FNV_PRIME  0x100000001b3ULL

static inline __u64 dbw_name_hash(const char *s, unsigned long n)
{
	__u64 h = DBW_FNV_OFFSET;

	for (unsigned long i = 0; i < n; i++)
		h = (h ^ (__u8)s[i]) * DBW_FNV_PRIME;
	return h;
}

/*
 * What the kernel lexer read from one Query/Parse text: every statement's
 * verb (a multi-statement Query and data-modifying CTEs add theirs), flags,
 * and the relations named after FROM/JOIN/INTO/UPDATE/TABLE/TRUNCATE/...
 * as FNV-1a 64 hashes of the name as PostgreSQL resolves it (folded to
 * lower case unless double-quoted; "schema.table" hashed with its dot).
 */
struct dbw_lex_result {
	__u32 verbs; /* 1 << enum dbw_verb, for each statement */
	__u32 flags; /* enum dbw_lex_flags */
	__u32 nstmts;
	__u32 nobjects;
	__u64 objects[DBW_LEX_OBJECTS];
	/* the statement's shape: its tokens with every literal as one mark,
	 * case-folded words, no comments or spacing (approvals key on it) */
	__u64 shape;
};
_Static_assert(sizeof(struct dbw_lex_result) == 16 + 8 * DBW_LEX_OBJECTS + 8,
	       "dbw_lex_result layout");

/* Value of the watched-ports map (key: __u16 server port, host order). */
struct dbw_port_cfg {
	__u8 proto; /* enum dbw_proto */
	__u8 pad[7];
	/* guard rules that may apply to a connection to this port, until
	 * userspace has computed the connection's own set (dbw_sk_state.rules) */
	__u64 rules;
	__u32 mask_rules; /* result-masking rules that may apply to this port */
	__u32 pad1;
};
_Static_assert(sizeof(struct dbw_port_cfg) == 24, "dbw_port_cfg layout");

/* Where the guard is in a connection's client -> server message stream. */
enum dbw_pg_phase {
	DBW_PG_STARTUP = 0, /* startup-phase messages (no type byte) */
	DBW_PG_NORMAL = 1, /* typed messages */
	DBW_PG_OFF = 2, /* encrypted, or framing lost: the guard cannot read it */
	DBW_MY_TLS_NEXT = 3, /* MySQL: SSLRequest sent, a TLS ClientHello comes next */
};

/* Per-socket state kept in sk_storage from connect() to close. */
struct dbw_sk_state {
	__u64 conn_id;
	__u64 off[2]; /* bytes seen per direction, enum dbw_dir */
	struct dbw_identity who;
	__u8 proto;
	__u8 established;
	__u8 phase; /* enum dbw_pg_phase */
	__u8 tls; /* enum dbw_tls_state */
	__u32 msg_left; /* bytes of the current client message still to come */
	__u64 rules; /* guard rules the port allows (before conn_rules is set) */
	__u64 tls_ssl; /* the TLS library's session object (SSL *) bound to this socket */
	__u32 gen; /* the daemon generation (dbw_agent_meta.gen) it was announced to */
	__u32 mask_rules; /* result-masking rules that may apply (taken at connect) */
	__u32 seq_next; /* the socket's write_seq once the last send has gone out */
	__u32 seq_own; /* from here on, that send's bytes are the client's (not rewritten) */
	__u8 seq_ok; /* seq_next and seq_own are known */
	__u8 corked; /* the last run held its send back: the next runs on the held bytes */
	__u8 seq_cork; /* the last pass was of held bytes: what a cut loses is not resent */
	__u8 pad[5];
};
_Static_assert(sizeof(struct dbw_sk_state) == 8 + 16 + 40 + 8 + 8 + 8 + 8 + 16,
	       "dbw_sk_state layout");

/* TLS state of a socket (dbw_sk_state.tls). */
enum dbw_tls_state {
	DBW_TLS_NONE = 0, /* plaintext, or TLS not (yet) seen at a probed library */
	DBW_TLS_BOUND = 1, /* a TLS session writes through it: its plaintext is captured */
	DBW_TLS_DROP = 2, /* the guard blocked a TLS write: every send is dropped until reset */
};

/*
 * The bpf_cookie of a TLS probe: how the probed function reports the bytes
 * it moved. OpenSSL's SSL_write/SSL_read return the count; SSL_write_ex,
 * SSL_read_ex and the internal functions they call return 1 and store the
 * count through their fourth argument.
 */
enum dbw_tls_cookie {
	DBW_TLS_RET_COUNT = 0,
	DBW_TLS_RET_EX = 1,
};

/* Which TLS program a probe runs: the first two are the data's enum dbw_dir. */
enum dbw_tls_probe {
	DBW_TLS_PROBE_WRITE = DBW_DIR_TO_SERVER,
	DBW_TLS_PROBE_READ = DBW_DIR_TO_CLIENT,
	DBW_TLS_PROBE_HANDSHAKE = 2,
};

/* An exec, so that userspace looks for TLS libraries in the new image. */
struct dbw_rec_exec {
	struct dbw_rec_hdr hdr; /* conn_id 0 */
	__u32 pid;
	__u32 pad;
};
_Static_assert(sizeof(struct dbw_rec_exec) == 24 + 8, "exec layout");

/*
 * Guard: in-kernel enforcement. Userspace compiles the policy's
 * kernel-enforceable rules (at most DBW_GUARD_RULES, in file order) into an
 * array of dbw_guard_rule and, per rule, the statement that replaces a
 * blocked one: the server itself then raises the error (SQLSTATE 42501,
 * the rule's message), so transaction and pipeline semantics stay the
 * server's. Every replacement is exactly DBW_GUARD_TEXT bytes (space
 * padded, NUL last) so the kernel copies a constant size.
 */
#define DBW_GUARD_RULES	   64
#define DBW_GUARD_TEXT	   384
#define DBW_GUARD_UNPARSED DBW_GUARD_RULES /* text slot of the defaults.unparsed block */
#define DBW_GUARD_DOWN	   (DBW_GUARD_RULES + 1) /* text slot of --fail-mode closed */
/*
 * The guard_text map holds one set of DBW_GUARD_TEXT_SLOTS texts per
 * protocol, in enum dbw_proto order from PostgreSQL: key = slot +
 * (proto - DBW_PROTO_POSTGRES) * DBW_GUARD_TEXT_SLOTS. A PostgreSQL text
 * is a DO block, a MySQL one a SIGNAL statement, a Redis one a whole EVAL
 * command (RESP) whose script returns the rule's error.
 */
#define DBW_GUARD_TEXT_SLOTS (DBW_GUARD_RULES + 2)
#define DBW_GUARD_PROTOS     3
#define DBW_GUARD_NO_RULE    0xff

enum dbw_action {
	DBW_ACT_ALLOW = 0,
	DBW_ACT_ALERT = 1,
	DBW_ACT_APPROVAL = 2, /* require_approval: blocked until approved */
	DBW_ACT_BLOCK = 3,
};

struct dbw_guard_rule {
	__u32 verbs; /* 1 << enum dbw_verb; 0: any verb */
	__u8 action; /* enum dbw_action */
	__u8 without_where; /* 1: only statements flagged DBW_LEX_F_WITHOUT_WHERE */
	__u8 nobjects; /* 0: any; else one of objects[] must be named */
	__u8 space; /* enum dbw_verb_space of verbs: the rule holds for no other protocol */
	__u64 objects[DBW_LEX_OBJECTS]; /* name hashes, as struct dbw_lex_result */
};
_Static_assert(sizeof(struct dbw_guard_rule) == 8 + 8 * DBW_LEX_OBJECTS, "guard_rule layout");

struct dbw_guard_text {
	__u8 text[DBW_GUARD_TEXT];
	/* require_approval: non-zero when the kernel writes the approval id
	 * (DBW_APPROVAL_ID_LEN hex digits at DBW_APPROVAL_ID_OFF) */
	__u16 id_off;
	__u8 pad[6];
};
_Static_assert(sizeof(struct dbw_guard_text) == DBW_GUARD_TEXT + 8, "guard_text layout");

/*
 * Approvals. A require_approval block names an id derived from the
 * statement's shape and the actor (uid, cgroup): the same actor retrying
 * the same statement gets the same id. `dbwarden approve ID` puts
 * {shape, actor} in the approvals map with an expiry (CLOCK_MONOTONIC);
 * until then the guard lets that actor's statement of that shape pass.
 */
#define DBW_APPROVAL_ID_LEN 12
/* where the id stands in a replacement text: the message's first words are
 * "approval id <id>" (after the DO ... MESSAGE = ' prefix of 66 bytes) */
#define DBW_APPROVAL_ID_OFF (66 + 12)

struct dbw_approval_key {
	__u64 shape;
	__u64 cgroup_id;
	__u32 uid;
	__u32 pad;
};
_Static_assert(sizeof(struct dbw_approval_key) == 24, "approval_key layout");

static inline __u64 dbw_approval_id(__u64 shape, __u32 uid, __u64 cgroup_id)
{
	__u64 h = (shape ^ (cgroup_id * DBW_FNV_PRIME)) * DBW_FNV_PRIME;

	h = (h ^ uid) * DBW_FNV_PRIME;
	return (h ^ (h >> 29)) & ((1ULL << (4 * DBW_APPROVAL_ID_LEN)) - 1);
}

struct dbw_guard_cfg {
	__u8 enabled; /* the walk runs: a policy with kernel rules (or masking keys) is loaded */
	__u8 unparsed_block; /* defaults.unparsed == block (for conns with rules) */
	/* only Redis streams are walked: the policy's kernel share is masking keys alone */
	__u8 redis_only;
	__u8 pad[5];
};
_Static_assert(sizeof(struct dbw_guard_cfg) == 8, "guard_cfg layout");

/*
 * Workload classes. A rule that selects workloads (pod namespace, service
 * account, labels, container, cgroup) is settled per cgroup by userspace,
 * ahead of any connection: the `workload_class` map holds, per cgroup id,
 * the kernel rules that apply to processes of that cgroup. A connection
 * whose own rules (conn_rules) userspace has not written yet runs with its
 * port's rules masked by its cgroup's class, so the kernel decides its
 * first statements alone. Key DBW_WORKLOAD_ANY holds the class of a cgroup
 * not classified yet (every workload selector unknown: the stricter set).
 */
#define DBW_WORKLOAD_ANY 0ULL

struct dbw_workload_class {
	__u64 rules; /* bit k: kernel rule k (struct dbw_guard_rule) may apply */
	__u32 mask_rules; /* bit k: result-masking rule k may apply */
	__u32 pad;
};
_Static_assert(sizeof(struct dbw_workload_class) == 16, "workload_class layout");

enum dbw_verdict_flags {
	DBW_VERDICT_F_UNPARSED = 1 << 0, /* the lexer could not read the statement fully */
	DBW_VERDICT_F_EARLY = 1 << 1, /* the connection's own rules were not set yet */
	DBW_VERDICT_F_FAILED = 1 << 2, /* the rewrite failed: send dropped, reset it */
	DBW_VERDICT_F_APPROVED = 1 << 3, /* require_approval, and approved: passed */
	/* a TLS connection: a block cannot be rewritten (ciphertext), so the
	 * write was dropped whole and the connection must be reset */
	DBW_VERDICT_F_TLS = 1 << 4,
	/* no daemon was running and --fail-mode is closed: refused */
	DBW_VERDICT_F_AGENT_DOWN = 1 << 5,
};

/* The guard's decision about one Query/Parse message, when not a plain allow. */
struct dbw_rec_verdict {
	struct dbw_rec_hdr hdr;
	__u64 stream_off; /* client -> server offset of the message's type byte */
	__u32 verbs; /* what the lexer read */
	__u32 lex_flags;
	__u8 action; /* enum dbw_action */
	__u8 rule; /* rule index, DBW_GUARD_NO_RULE for the defaults */
	__u8 msg_type; /* 'Q' or 'P' */
	__u8 flags; /* enum dbw_verdict_flags */
	__u32 pad;
	__u64 shape; /* dbw_lex_result.shape */
};
_Static_assert(sizeof(struct dbw_rec_verdict) == 24 + 8 + 8 + 8 + 8, "verdict layout");

/*
 * The running daemon, for the programs that outlive it (pinned under
 * bpffs). The daemon rewrites this entry several times a second; the
 * kernel reads only heartbeat_ns and fail_closed: a heartbeat older than
 * DBW_AGENT_STALE_NS (or 0: a clean stop) means no daemon is attached,
 * and then statements to connections with rules are refused if
 * fail_closed. A restarted daemon reads reported[] to report only the
 * counter increases its predecessor had not reported.
 */
#define DBW_AGENT_STALE_NS (5ULL * 1000 * 1000 * 1000)

struct dbw_agent_meta {
	__u64 heartbeat_ns; /* bpf_ktime_get_ns() clock (CLOCK_MONOTONIC); 0: stopped */
	__u32 pid;
	/* one more per daemon that adopts the programs: a connection announced
	 * to an older generation is announced again (DBW_OPEN_F_RESUMED) */
	__u32 gen;
	__u16 abi; /* DBW_ABI_VERSION */
	__u8 fail_closed;
	__u8 pad[5];
	__u8 build[16]; /* digest of the BPF object: a restart adopts only its own build */
	__u64 reported[DBW_CNT__MAX]; /* counters as the daemon last reported them */
};
_Static_assert(sizeof(struct dbw_agent_meta) == 40 + 8 * DBW_CNT__MAX, "agent_meta layout");

/*
 * Result masking: PostgreSQL DataRow and MySQL text row values rewritten in the kernel, same
 * length, on the client socket's ingress (an sk_skb verdict), for
 * connections whose actor and target a `masking.results` rule selects.
 *
 * Which connections: at connect() the socket's candidate rules are its
 * port's (dbw_port_cfg.mask_rules) masked by its cgroup's workload class
 * (dbw_workload_class.mask_rules; selectors the class cannot settle count
 * as holding: stricter) and by its uid (`mask_uid`, struct dbw_mask_cfg).
 * A socket with candidates joins `socks_mask`
 * instead of `socks` at ESTABLISHED: only those sockets carry the verdict.
 * Userspace then narrows the rules with everything it knows (process,
 * database, ...) in `mask_conn`, keyed by conn id.
 *
 * What: `mask_cols` maps the FNV-1a hash (dbw_name_hash) of a result
 * column's name, as RowDescription carries it (MySQL: dbw_name_hash_ci of
 * the ColumnDefinition's name), to the rules that mask it;
 * a rule's value detectors (struct dbw_mask_rule) look at every field (the
 * email detector at text columns only). What the verdict did comes back in
 * MASK records (struct dbw_rec_mask).
 */
#define DBW_MASK_RULES 32
#define DBW_MASK_COLS  64 /* result columns whose names the kernel tracks per result */
#define DBW_MASK_VALUE 254 /* longest field the kernel value detectors consider */

/*
 * MySQL and MariaDB compare column names without regard to case: their
 * names are looked up in `mask_cols` under a second key, FNV-1a 64 of the
 * name folded to ASCII lower case and started from the hash of one 0x01
 * byte, so that it never meets a PostgreSQL name's exact key. Userspace
 * inserts both keys for every name a rule lists.
 */
#define DBW_FNV_OFFSET_CI ((DBW_FNV_OFFSET ^ 1) * DBW_FNV_PRIME)

/*
 * MySQL's ColumnDefinition also names a column's origin table and column
 * (and its schema): a rule's `table.column` and `schema.table.column` are
 * entered under FNV-1a 64 of the name folded to lower case, started from
 * the hash of one 0x02 byte (dbw_name_hash_q), and its bare column name,
 * which masks a column so called in any table, under dbw_name_key_any of
 * its case-folded key: looked up by the name a result gives, not by its
 * origin. A bare rule name is entered under its case-folded key, looked
 * up by both.
 */
#define DBW_FNV_OFFSET_Q ((DBW_FNV_OFFSET ^ 2) * DBW_FNV_PRIME)

static inline __u64 dbw_name_key_any(__u64 ci)
{
	return (ci ^ 0xff) * DBW_FNV_PRIME;
}

static inline __u8 dbw_ascii_lower(__u8 c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static inline __u64 dbw_name_hash_ci(const char *s, unsigned long n)
{
	__u64 h = DBW_FNV_OFFSET_CI;

	for (unsigned long i = 0; i < n; i++)
		h = (h ^ dbw_ascii_lower((__u8)s[i])) * DBW_FNV_PRIME;
	return h;
}

static inline __u64 dbw_name_hash_q(const char *s, unsigned long n)
{
	__u64 h = DBW_FNV_OFFSET_Q;

	for (unsigned long i = 0; i < n; i++)
		h = (h ^ dbw_ascii_lower((__u8)s[i])) * DBW_FNV_PRIME;
	return h;
}

enum dbw_mask_style {
	DBW_MASK_STARS = 0, /* every byte '*' */
	DBW_MASK_KEEP_LAST4 = 1, /* '*' but the last 4 bytes */
	DBW_MASK_TOKEN = 2, /* every byte 'x': a fixed token of the value's length */
};

/* Value detectors cheap enough for the kernel: the whole field must be one. */
enum dbw_mask_det {
	DBW_MDET_EMAIL = 1 << 0,
	DBW_MDET_CARD = 1 << 1, /* 13-19 digits, single spaces or dashes between, Luhn */
};

struct dbw_mask_rule {
	__u8 style; /* enum dbw_mask_style */
	__u8 detectors; /* enum dbw_mask_det */
	__u8 allow_unmaskable; /* on_unmaskable: allow (else block) */
	__u8 columns; /* the rule names columns: rows need a RowDescription */
	__u8 pad[4];
};
_Static_assert(sizeof(struct dbw_mask_rule) == 8, "mask_rule layout");

/*
 * The one value of the mask_cfg array: every rule, read with one lookup.
 * A rule with a uid selector applies at connect() only to the uids
 * `mask_uid` maps to it (uid -> rules); uid_free holds the others.
 */
struct dbw_mask_cfg {
	__u32 nrules; /* 0: no result masking */
	__u32 uid_free; /* client-side rules without a uid selector */
	struct dbw_mask_rule rules[DBW_MASK_RULES];
	__u32 gen; /* changes with every policy load: connections re-read the rules */
	__u32 pad;
	/*
	 * The server side (DBW_MASK_SIDE_SERVER): the rules the kernel can
	 * settle there alone (target by port, db_user by exact name); of
	 * those, the ones without a db_user selector. `mask_srv_user` maps
	 * dbw_name_hash(db user) to the others that name it.
	 */
	__u32 srv_rules;
	__u32 srv_user_free;
	/* Redis keys (struct dbw_mask_key): prefix lengths in use, the rules with keys */
	__u64 key_plens; /* bit n: a prefix n bytes long (bit 0: `*`, every key) */
	__u32 key_rules;
	__u32 pad2;
};
_Static_assert(sizeof(struct dbw_mask_cfg) == 8 + 8 * DBW_MASK_RULES + 32, "mask_cfg layout");

/*
 * Redis replies masked whole by key (a rule's `keys`). The guard's walk of
 * the client's commands (resp.bpf.h) hashes each argument, FNV-1a 64 from
 * DBW_FNV_OFFSET over its bytes as sent (keys are case-sensitive), and
 * looks it up in `mask_keys`: (hash, length | DBW_MASK_KEY_EXACT) for an
 * exact key; (hash of its first n bytes, n) for a prefix `user:*` of n
 * bytes, looked up only at the lengths dbw_mask_cfg.key_plens names; `*`
 * is the prefix of length 0. The value: the rules naming it. Which
 * arguments are keys, `mask_rkey_spec` says per command (key: the guard's
 * name hash, dbw_name_hash of the upper-case name, "OBJECT ENCODING" with
 * one space); a command it does not know: every argument.
 */
struct dbw_mask_key {
	__u64 hash;
	__u32 len; /* bytes hashed; | DBW_MASK_KEY_EXACT for a whole key */
	__u32 pad;
};
_Static_assert(sizeof(struct dbw_mask_key) == 16, "mask_key layout");

#define DBW_MASK_KEY_EXACT	(1u << 31)
#define DBW_MASK_KEY_PREFIX_MAX 63

struct dbw_rkey_spec {
	__s8 first; /* the first key argument (the name is 0) */
	__s8 last; /* the last; < 0: counted from the end, -1 the last argument */
	__u8 step;
	__u8 flags; /* enum dbw_rkey_flags */
};
_Static_assert(sizeof(struct dbw_rkey_spec) == 4, "rkey_spec layout");

enum dbw_rkey_flags {
	DBW_RKEY_NONE = 1, /* names no key (KEYS, SCAN: patterns; PING, INFO, ...) */
	/* its replies (or later ones) no longer pair one to one with commands:
	 * SUBSCRIBE and the like, MONITOR, CLIENT REPLY */
	DBW_RKEY_UNPAIRED = 2,
	DBW_RKEY_MULTI = 4,
	DBW_RKEY_EXEC = 8, /* its reply holds the queued commands' */
	DBW_RKEY_DISCARD = 16,
};

/*
 * Table-qualified columns (`users.ssn`). RowDescription names a column's
 * table by OID and the column by its number, not by name. Userspace looks
 * the names the rules list up in the database's own catalog (a target's
 * `catalog` connection) and writes `mask_rel`: (database key, table OID,
 * column number) -> the rules that mask that column; 0 for a column that
 * only a qualified name of another table names. A result column found
 * there is decided by its entry, whatever it is called (`ssn AS x` is still
 * users.ssn); any other (a view's, an expression's, a database not looked
 * up yet) goes by its name in `mask_cols`, where a qualified name is
 * entered bare: more is masked, never less. A connection's database key
 * comes with its rules in `mask_conn` (0: no catalog, names decide).
 */
struct dbw_mask_relkey {
	__u32 dbk; /* dbw_name_hash of "target\0database", folded to 32 bits, never 0 */
	__u32 reloid;
	__u16 attnum;
	__u16 pad;
};
_Static_assert(sizeof(struct dbw_mask_relkey) == 12, "mask_relkey layout");

/* The value of `mask_conn`: what userspace settled for a connection. */
struct dbw_mask_conn {
	__u32 rules; /* a subset of the connection's candidate rules */
	__u32 dbk; /* its database's key in mask_rel; 0: none */
};
_Static_assert(sizeof(struct dbw_mask_conn) == 8, "mask_conn layout");

/* What a MASK record reports. */
enum dbw_mask_kind {
	DBW_MASK_REC_RESULT = 1, /* a result ended ('C', 'E', 's'): its counts */
	DBW_MASK_REC_TLS = 2, /* the server agreed to encrypt a masked connection */
	DBW_MASK_REC_LOST = 3, /* framing lost: nothing more can be masked */
	DBW_MASK_REC_JOIN_FAIL = 4, /* a selected connection could not join socks_mask */
};

/*
 * DBW_MASK_REC_LOST: why, in msg_type (0: the stream did not parse).
 * UNSEEN: the server side's socket sent bytes the program never saw.
 */
enum dbw_mask_lost {
	DBW_MASK_LOST_UNSEEN = 2,
	DBW_MASK_LOST_MYSQL_BINARY = 0x17,
	/* Redis: a reply that may answer a command naming a masked key cannot
	 * be paired with its command (after SUBSCRIBE, MONITOR, CLIENT REPLY,
	 * or client bytes the guard's walk did not follow) */
	DBW_MASK_LOST_REDIS_KEYS = 0x18,
};

struct dbw_rec_mask {
	struct dbw_rec_hdr hdr;
	__u64 stream_off; /* server -> client offset just past the message that ended it */
	__u32 rules; /* the connection's rules in force */
	__u8 kind; /* enum dbw_mask_kind */
	__u8 blocked; /* on_unmaskable: block applied */
	__u8 msg_type; /* the message that ended the result */
	__u8 side; /* enum dbw_mask_side */
	__u32 rows; /* DataRows */
	__u32 masked; /* fields masked */
	__u32 unmasked; /* fields a rule names that passed unmasked */
	__u32 overmasked; /* value-checked fields masked in part that turned out not to match */
	/* DBW_MASK_SIDE_SERVER: the connection, unknown to userspace otherwise */
	__u8 peer_addr[16]; /* the client's address, network order (IPv4: first 4 bytes) */
	__u8 local_addr[16]; /* the server's */
	__u16 peer_port, local_port; /* host byte order */
	__u16 family; /* AF_INET, AF_INET6 */
	__u16 pad;
};
_Static_assert(sizeof(struct dbw_rec_mask) == 24 + 8 + 8 + 16 + 40, "rec_mask layout");

/*
 * Redis replies end one after another, a pipeline's many to an skb: their
 * counts (as a DBW_MASK_REC_RESULT record's, client side) go out together,
 * up to DBW_MASK_REPLIES of them per record, in stream order, at the end
 * of the verdict's run and before any other MASK record of it. The record
 * is as long as its n entries (hdr.size).
 */
#define DBW_MASK_REPLIES 16

struct dbw_mask_reply {
	__u64 stream_off; /* server -> client offset just past the reply */
	__u32 rows, masked, unmasked, overmasked;
	__u8 msg_type; /* the reply's type byte */
	__u8 pad[7];
};
_Static_assert(sizeof(struct dbw_mask_reply) == 32, "mask_reply layout");

struct dbw_rec_mask_replies {
	struct dbw_rec_hdr hdr;
	__u32 rules; /* the connection's rules in force */
	__u32 n; /* entries of e in use */
	struct dbw_mask_reply e[DBW_MASK_REPLIES];
};
_Static_assert(sizeof(struct dbw_rec_mask_replies) == 24 + 8 + 32 * DBW_MASK_REPLIES,
	       "rec_mask_replies layout");

/*
 * Where the masking ran. The client side is the connecting socket's
 * ingress (an sk_skb verdict, every protocol); the server side the
 * accepting socket's egress (an sk_msg program, PostgreSQL), for clients
 * on nodes without an agent: its connections are not otherwise known to
 * userspace, so their records carry the peer.
 */
enum dbw_mask_side {
	DBW_MASK_SIDE_CLIENT = 0,
	DBW_MASK_SIDE_SERVER = 1,
};

#endif /* DBWARDEN_ABI_H */
