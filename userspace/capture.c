// SPDX-License-Identifier: GPL-2.0-only
/*
 * Loader for bpf/dbwarden.bpf.c, libbpf-bootstrap style: open, set what must
 * be set before load, load, attach, with one err and goto cleanup.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/magic.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <openssl/sha.h>

#include "capture.h"
#include "redis_proto.h"
#include "dbwarden.skel.h"
#include "statefile.h"
#include "log.h"

/*
 * The ring buffer, read directly (as libbpf does) so that the consumer
 * position moves only when capture_commit() says the events made from the
 * records are out of the process: a daemon killed in between leaves them in
 * the ring for its successor instead of losing them.
 */
struct ring {
	int epfd;
	int map_fd;
	size_t mask; /* data size - 1 */
	unsigned long *consumer; /* the consumer page (shared, writable) */
	const unsigned long *producer; /* the producer page, then the data twice */
	const uint8_t *data;
	unsigned long cons; /* read up to here; published by capture_commit */
	size_t page;
};

struct capture {
	struct dbwarden_bpf *skel;
	struct ring *rb;
	int cgroup_fd;
	int socks_fd;
	int msg_attached;
	int socks_mask_fd;
	int mask_msg_attached, mask_skb_attached, srv_msg_attached;
	int (*on_record)(void *ctx, const void *data, size_t size);
	void *ctx;
	struct capture_port ports[CAPTURE_MAX_PORTS];
	int nports;
	/* pinning: "" when nothing is pinned */
	char pin_dir[PATH_MAX - 64];
	int pin_lock; /* flock on pin_dir: one daemon per pin directory */
	bool adopted; /* the pinned programs of an earlier run of this build */
	struct dbw_agent_meta meta; /* what this daemon tells the kernel */
	struct dbw_agent_meta prev; /* adopted: what its predecessor last told it */
};

static const char *const counter_names[DBW_CNT__MAX] = {
	[DBW_CNT_CONN_WATCHED] = "conn_watched",
	[DBW_CNT_CONN_OPEN] = "conn_open",
	[DBW_CNT_CONN_CLOSE] = "conn_close",
	[DBW_CNT_STORAGE_FAIL] = "storage_fail",
	[DBW_CNT_SOCKHASH_FAIL] = "sockhash_fail",
	[DBW_CNT_RB_FULL_OPEN] = "ringbuf_full_open",
	[DBW_CNT_RB_FULL_DATA] = "ringbuf_full_data",
	[DBW_CNT_RB_FULL_CLOSE] = "ringbuf_full_close",
	[DBW_CNT_RB_LOST_BYTES] = "ringbuf_lost_bytes",
	[DBW_CNT_PULL_FAIL] = "msg_pull_fail",
	[DBW_CNT_LOAD_FAIL] = "load_bytes_fail",
	[DBW_CNT_TRUNC_SENDS] = "oversize_sends",
	[DBW_CNT_TRUNC_BYTES] = "oversize_bytes",
	[DBW_CNT_MSG_CALLS] = "msg_calls",
	[DBW_CNT_RECV_CALLS] = "recv_calls",
	[DBW_CNT_NO_STATE] = "no_state",
	[DBW_CNT_DATA_RECORDS] = "data_records",
	[DBW_CNT_DATA_BYTES] = "data_bytes",
	[DBW_CNT_RECV_NO_BUF] = "recv_no_buffer",
	[DBW_CNT_GUARD_CHECKED] = "guard_checked",
	[DBW_CNT_GUARD_BLOCKED] = "guard_blocked",
	[DBW_CNT_GUARD_UNPARSED] = "guard_unparsed",
	[DBW_CNT_GUARD_CORKED] = "guard_corked",
	[DBW_CNT_GUARD_EARLY] = "guard_early",
	[DBW_CNT_GUARD_LOST] = "guard_lost",
	[DBW_CNT_GUARD_FAILED] = "guard_failed",
	[DBW_CNT_TLS_WRITES] = "tls_writes",
	[DBW_CNT_TLS_READS] = "tls_reads",
	[DBW_CNT_TLS_BOUND] = "tls_bound",
	[DBW_CNT_TLS_ARGS_FULL] = "tls_calls_full",
	[DBW_CNT_TLS_BLOCKED] = "tls_blocked",
	[DBW_CNT_TLS_SESS_FULL] = "tls_sessions_full",
	[DBW_CNT_EXEC_LOST] = "exec_lost",
	[DBW_CNT_DOWN_BLOCKED] = "down_blocked",
	[DBW_CNT_DOWN_TLS_WRITES] = "down_tls_writes",
	[DBW_CNT_MASK_CONNS] = "mask_conns",
	[DBW_CNT_MASK_SKBS] = "mask_skbs",
	[DBW_CNT_MASK_FIELDS] = "mask_fields",
	[DBW_CNT_MASK_UNMASKED] = "mask_unmasked",
	[DBW_CNT_MASK_DESYNC] = "mask_desync",
	[DBW_CNT_MASK_TLS] = "mask_tls",
	[DBW_CNT_MASK_JOIN_FAIL] = "mask_join_fail",
	[DBW_CNT_MASK_RB_FULL] = "ringbuf_full_mask",
	[DBW_CNT_MASK_OVERMASKED] = "mask_overmasked",
	[DBW_CNT_MASK_SRV_CONNS] = "mask_server_conns",
	[DBW_CNT_MASK_SRV_SENDS] = "mask_server_sends",
	[DBW_CNT_MASK_SRV_RESENDS] = "mask_server_resends",
	[DBW_CNT_UNSEEN_BYTES] = "unseen_bytes",
	[DBW_CNT_RESENDS] = "msg_resends",
	[DBW_CNT_PASS_PLAIN] = "msg_pass_plain",
};

const char *capture_counter_name(int idx)
{
	if (idx < 0 || idx >= DBW_CNT__MAX)
		return NULL;
	return counter_names[idx];
}

/* libbpf's own messages, in the agent's log: its warnings as warnings, the rest as debug. */
static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list args)
{
	/* the verifier log is long; show it only with LIBBPF_DEBUG set */
	if (getenv("LIBBPF_DEBUG")) {
		vfprintf(stderr, fmt, args);
		return 0;
	}
	if (level == LIBBPF_DEBUG || strstr(fmt, "PROG LOAD LOG"))
		return 0;
	log_vwrite(level == LIBBPF_WARN ? DBW_LOG_WARN : DBW_LOG_DEBUG, fmt, args);
	return 0;
}

static void ring_free(struct ring *r)
{
	if (!r)
		return;
	if (r->consumer)
		munmap(r->consumer, r->page);
	if (r->producer)
		munmap((void *)r->producer, r->page + 2 * (r->mask + 1));
	if (r->epfd >= 0)
		close(r->epfd);
	free(r);
}

/* Map the ring buffer map at fd of size bytes. NULL with errno set. */
static struct ring *ring_open(int fd, size_t size)
{
	struct ring *r = calloc(1, sizeof(*r));
	struct epoll_event ev = { .events = EPOLLIN };
	void *p;

	if (!r)
		return NULL;
	r->epfd = -1;
	r->map_fd = fd;
	r->page = sysconf(_SC_PAGESIZE);
	r->mask = size - 1;
	p = mmap(NULL, r->page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		goto fail;
	r->consumer = p;
	/* the data is mapped twice in a row: a record that wraps reads straight */
	p = mmap(NULL, r->page + 2 * size, PROT_READ, MAP_SHARED, fd, r->page);
	if (p == MAP_FAILED)
		goto fail;
	r->producer = p;
	r->data = (const uint8_t *)p + r->page;
	r->cons = __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE);
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (r->epfd < 0 || epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev))
		goto fail;
	return r;
fail:
	ring_free(r);
	return NULL;
}

/*
 * Hand every record the producer had committed when this call began to
 * the callback (a bounded batch: the caller commits between batches).
 * Returns the number of records, or -errno from the callback.
 */
static int ring_read(struct capture *c, struct ring *r)
{
	unsigned long prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
	int n = 0;

	while (r->cons < prod) {
		const uint32_t *hdr = (const uint32_t *)(r->data + (r->cons & r->mask));
		uint32_t word = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);
		uint32_t len = word & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);

		if (word & BPF_RINGBUF_BUSY_BIT)
			break; /* reserved, not yet submitted: records after it wait too */
		if (!(word & BPF_RINGBUF_DISCARD_BIT)) {
			int e = c->on_record(c->ctx, (const uint8_t *)hdr + BPF_RINGBUF_HDR_SZ,
					     len);

			if (e < 0)
				return e;
			n++;
		}
		r->cons += (len + BPF_RINGBUF_HDR_SZ + 7) & ~7UL;
	}
	return n;
}

/* The pinned object called name in c's pin directory. */
static void pin_path(const struct capture *c, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", c->pin_dir, name);
}

/* This build's BPF object digest: a restart adopts only pins of its own build. */
static void build_digest(uint8_t out[16])
{
	uint8_t h[SHA256_DIGEST_LENGTH];
	size_t sz;
	const void *elf = dbwarden_bpf__elf_bytes(&sz);

	SHA256(elf, sz, h);
	memcpy(out, h, 16);
}

/* The meta entry pinned in dir, if any. 0, or -1. */
static int read_meta(const char *dir, struct dbw_agent_meta *m)
{
	char path[PATH_MAX];
	__u32 zero = 0;
	int fd, e;

	snprintf(path, sizeof(path), "%s/agent_meta", dir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return -1;
	e = bpf_map_lookup_elem(fd, &zero, m);
	close(fd);
	return e ? -1 : 0;
}

/*
 * Remove every object pinned in dir (links detach, maps go once no program
 * holds them) and dir itself when rmdir_too. Returns the number removed.
 */
static int unpin_all(const char *dir, bool rmdir_too)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return 0;
	/* links first: their programs let go of the maps */
	for (int pass = 0; pass < 2; pass++) {
		rewinddir(d);
		while ((de = readdir(d))) {
			char path[PATH_MAX];

			if (de->d_name[0] == '.' || (!pass && strncmp(de->d_name, "link_", 5)))
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			if (!unlink(path))
				n++;
		}
	}
	closedir(d);
	if (rmdir_too)
		rmdir(dir);
	return n;
}

/*
 * Take pin_dir: create it on bpffs, lock it (one daemon per directory),
 * and decide whether to adopt what is pinned there (the same build) or
 * to clear it (another build: its maps may not fit ours). 0 or -1.
 */
static int pin_prepare(struct capture *c, char *err, size_t errlen)
{
	struct statfs sfs;
	int e = state_mkdirs(c->pin_dir);

	if (e || statfs(c->pin_dir, &sfs) || sfs.f_type != BPF_FS_MAGIC) {
		snprintf(err, errlen, "--pin-dir %s: %s", c->pin_dir,
			 e ? strerror(-e) :
			     "not a directory on bpffs (mount -t bpf bpf /sys/fs/bpf)");
		return -1;
	}
	c->pin_lock = open(c->pin_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->pin_lock < 0 || flock(c->pin_lock, LOCK_EX | LOCK_NB)) {
		struct dbw_agent_meta m = {};

		read_meta(c->pin_dir, &m);
		snprintf(err, errlen,
			 "another dbwarden agent (pid %u) is running with --pin-dir %s; stop it "
			 "first (dbwarden stop), or give this one its own --pin-dir",
			 m.pid, c->pin_dir);
		if (c->pin_lock >= 0)
			close(c->pin_lock);
		c->pin_lock = -1;
		c->pin_dir[0] = 0; /* not ours: leave it alone */
		return -1;
	}
	if (read_meta(c->pin_dir, &c->prev))
		return 0; /* nothing pinned yet */
	if (c->prev.abi == DBW_ABI_VERSION && !memcmp(c->prev.build, c->meta.build, 16)) {
		c->adopted = true;
		/* connections its predecessors saw are announced again to this one */
		c->meta.gen = c->prev.gen + 1 ? c->prev.gen + 1 : 1;
		return 0;
	}
	log_warn("%s holds the programs of another dbwarden build: replacing them "
		 "(connections they watched are not watched any more)",
		 c->pin_dir);
	unpin_all(c->pin_dir, false);
	memset(&c->prev, 0, sizeof(c->prev));
	return 0;
}

/* Open the object and load it, every map pinned in c->pin_dir if set. 0 or -errno. */
static int load(struct capture *c, const struct capture_opts *o)
{
	struct bpf_map *m;

	c->skel = dbwarden_bpf__open();
	if (!c->skel)
		return -errno;
	if (o->ringbuf_bytes)
		bpf_map__set_max_entries(c->skel->maps.events, o->ringbuf_bytes);
	/* libbpf 1.1 reads SEC("sk_skb") as a type without an attach type */
	bpf_program__set_expected_attach_type(c->skel->progs.dbw_mask, BPF_SK_SKB_VERDICT);
	if (c->pin_dir[0]) {
		bpf_object__for_each_map(m, c->skel->obj)
		{
			char path[PATH_MAX];

			if (bpf_map__is_internal(m))
				continue;
			/* reused when pinned and compatible, else created and pinned */
			pin_path(c, bpf_map__name(m), path, sizeof(path));
			if (bpf_map__set_pin_path(m, path))
				return -errno;
		}
	}
	return dbwarden_bpf__load(c->skel);
}

/* Empty the map at fd: what an earlier run wrote for a policy it had. */
static void map_clear(int fd, size_t key_size)
{
	uint8_t key[64], next[64];

	if (key_size > sizeof(key))
		return;
	while (!bpf_map_get_next_key(fd, NULL, next)) {
		memcpy(key, next, key_size);
		if (bpf_map_delete_elem(fd, key))
			break;
	}
}

/*
 * The link pinned as name: kept when adopted and still wanted (and, for a
 * cgroup hook, on the same cgroup), else the old one is unpinned and
 * attach() makes a new one, pinned when pinning. NULL with errno on error.
 */
static struct bpf_link *link_keep_or_attach(struct capture *c, const char *name, bool want,
					    struct bpf_link *(*attach)(struct capture *c,
								       struct bpf_program *p),
					    struct bpf_program *prog, __u64 cgroup_id)
{
	char path[PATH_MAX];
	struct bpf_link *l;

	pin_path(c, name, path, sizeof(path));
	if (c->pin_dir[0] && c->adopted) {
		l = bpf_link__open(path);
		if (l) {
			struct bpf_link_info info = {};
			__u32 len = sizeof(info);

			if (want &&
			    (!cgroup_id || (!bpf_obj_get_info_by_fd(bpf_link__fd(l), &info, &len) &&
					    info.cgroup.cgroup_id == cgroup_id)))
				return l;
			bpf_link__unpin(l);
			bpf_link__destroy(l);
		}
	}
	if (!want)
		return NULL;
	l = attach(c, prog);
	if (l && c->pin_dir[0] && bpf_link__pin(l, path)) {
		int e = errno;

		bpf_link__destroy(l);
		errno = e;
		return NULL;
	}
	return l;
}

static struct bpf_link *attach_plain(struct capture *c, struct bpf_program *p)
{
	return bpf_program__attach(p);
}

static struct bpf_link *attach_cgroup(struct capture *c, struct bpf_program *p)
{
	return bpf_program__attach_cgroup(p, c->cgroup_fd);
}

/* The ports map holds the configured ports and nothing else. 0 or -1. */
static int set_ports(struct capture *c, char *err, size_t errlen)
{
	int fd = bpf_map__fd(c->skel->maps.ports);
	__u16 key, next;
	bool have = bpf_map_get_next_key(fd, NULL, &next) == 0;

	/* an adopted map may hold ports an earlier run watched */
	while (have) {
		bool keep = false;

		key = next;
		have = bpf_map_get_next_key(fd, &key, &next) == 0;
		for (int i = 0; i < c->nports; i++)
			keep |= c->ports[i].port == key;
		if (!keep)
			bpf_map_delete_elem(fd, &key);
	}
	for (int i = 0; i < c->nports; i++) {
		struct dbw_port_cfg cfg = { .proto = c->ports[i].proto }, old;
		__u16 port = c->ports[i].port;

		/* adopted: the last policy's rules stay in force until this run's is loaded */
		if (!bpf_map_lookup_elem(fd, &port, &old) && old.proto == cfg.proto)
			cfg.rules = old.rules;
		if (bpf_map_update_elem(fd, &port, &cfg, BPF_ANY)) {
			snprintf(err, errlen, "cannot configure port %u: %s", port,
				 strerror(errno));
			return -1;
		}
	}
	return 0;
}

struct capture *capture_start(const struct capture_opts *o, char *err, size_t errlen)
{
	struct capture *c = calloc(1, sizeof(*c));
	struct dbwarden_bpf *skel;
	struct stat cg;
	int e;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->cgroup_fd = -1;
	c->pin_lock = -1;
	c->on_record = o->on_record;
	c->ctx = o->ctx;
	memcpy(c->ports, o->ports, sizeof(c->ports));
	c->nports = o->nports;
	c->meta.pid = getpid();
	c->meta.abi = DBW_ABI_VERSION;
	c->meta.fail_closed = o->fail_closed;
	c->meta.gen = 1;
	build_digest(c->meta.build);
	libbpf_set_print(libbpf_log);

	if (o->pin_dir) {
		snprintf(c->pin_dir, sizeof(c->pin_dir), "%s", o->pin_dir);
		if (pin_prepare(c, err, errlen))
			goto fail;
	}
	e = load(c, o);
	if (e && c->adopted) {
		/* pinned maps that do not fit (another --ringbuf-mb): start afresh */
		log_warn("cannot reuse the maps pinned in %s (%s): replacing them", c->pin_dir,
			 strerror(-e));
		dbwarden_bpf__destroy(c->skel);
		unpin_all(c->pin_dir, false);
		c->adopted = false;
		memset(&c->prev, 0, sizeof(c->prev));
		e = load(c, o);
	}
	if (e) {
		snprintf(err, errlen,
			 "cannot load BPF programs: %s (LIBBPF_DEBUG=1 shows the verifier log)",
			 strerror(-e));
		goto fail;
	}
	skel = c->skel;
	/* alive before anything is attached: --fail-mode closed must not see a gap */
	capture_heartbeat(c, (const uint64_t *)c->prev.reported);
	if (set_ports(c, err, errlen))
		goto fail;
	if (c->adopted) {
		/* rules an earlier policy computed: this run's policy writes its own */
		map_clear(bpf_map__fd(skel->maps.conn_rules), sizeof(__u64));
		map_clear(bpf_map__fd(skel->maps.workload_class), sizeof(__u64));
	}

	if (o->on_loaded && o->on_loaded(o->ctx, c, err, errlen))
		goto fail;

	c->rb = ring_open(bpf_map__fd(skel->maps.events), bpf_map__max_entries(skel->maps.events));
	if (!c->rb) {
		snprintf(err, errlen, "cannot open the ring buffer: %s", strerror(errno));
		goto fail;
	}

	/*
	 * Programs on the sockhash first: a socket gets the programs present
	 * when it joins. An adopted sockhash has its program already (the map
	 * holds it; sockets in it keep the one they joined with).
	 */
	c->socks_fd = bpf_map__fd(skel->maps.socks);
	c->socks_mask_fd = bpf_map__fd(skel->maps.socks_mask);
	if (!c->adopted) {
		if (bpf_prog_attach(bpf_program__fd(skel->progs.dbw_msg), c->socks_fd,
				    BPF_SK_MSG_VERDICT, 0)) {
			snprintf(err, errlen, "cannot attach sk_msg verdict: %s", strerror(errno));
			goto fail;
		}
		c->msg_attached = 1;
		/* sockets a masking rule may select: the same sk_msg, and the masking verdict */
		if (bpf_prog_attach(bpf_program__fd(skel->progs.dbw_msg), c->socks_mask_fd,
				    BPF_SK_MSG_VERDICT, 0)) {
			snprintf(err, errlen, "cannot attach sk_msg verdict: %s", strerror(errno));
			goto fail;
		}
		c->mask_msg_attached = 1;
		if (bpf_prog_attach(bpf_program__fd(skel->progs.dbw_mask), c->socks_mask_fd,
				    BPF_SK_SKB_VERDICT, 0)) {
			snprintf(err, errlen, "cannot attach the masking sk_skb verdict: %s",
				 strerror(errno));
			goto fail;
		}
		c->mask_skb_attached = 1;
		/* accepted connections of a local server: the server-side masking */
		if (bpf_prog_attach(bpf_program__fd(skel->progs.dbw_srv_msg),
				    bpf_map__fd(skel->maps.socks_srv), BPF_SK_MSG_VERDICT, 0)) {
			snprintf(err, errlen, "cannot attach the server-side masking sk_msg: %s",
				 strerror(errno));
			goto fail;
		}
		c->srv_msg_attached = 1;
	}
	skel->links.dbw_recv =
		link_keep_or_attach(c, "link_recv", true, attach_plain, skel->progs.dbw_recv, 0);
	if (!skel->links.dbw_recv) {
		snprintf(err, errlen, "cannot attach the sock_recv_length tracepoint: %s",
			 strerror(errno));
		goto fail;
	}
	/* execs first: a process started from now on is looked at for TLS libraries */
	skel->links.dbw_exec =
		link_keep_or_attach(c, "link_exec", o->tls, attach_plain, skel->progs.dbw_exec, 0);
	if (o->tls && !skel->links.dbw_exec) {
		snprintf(err, errlen, "cannot attach the sched_process_exec tracepoint: %s",
			 strerror(errno));
		goto fail;
	}

	c->cgroup_fd = open(o->cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->cgroup_fd < 0 || fstat(c->cgroup_fd, &cg)) {
		snprintf(err, errlen, "cannot open cgroup %s: %s", o->cgroup, strerror(errno));
		goto fail;
	}
	/* unpinned, the kernel detaches these links when this process exits, whatever happens */
	skel->links.dbw_sockops = link_keep_or_attach(c, "link_sockops", true, attach_cgroup,
						      skel->progs.dbw_sockops, cg.st_ino);
	skel->links.dbw_connect4 = link_keep_or_attach(c, "link_connect4", true, attach_cgroup,
						       skel->progs.dbw_connect4, cg.st_ino);
	skel->links.dbw_connect6 = link_keep_or_attach(c, "link_connect6", true, attach_cgroup,
						       skel->progs.dbw_connect6, cg.st_ino);
	if (!skel->links.dbw_sockops || !skel->links.dbw_connect4 || !skel->links.dbw_connect6) {
		snprintf(err, errlen, "cannot attach to cgroup %s: %s", o->cgroup, strerror(errno));
		goto fail;
	}
	return c;
fail:
	if (c->pin_dir[0] && !c->adopted) {
		/* a first start that failed leaves nothing behind */
		char dir[sizeof(c->pin_dir)];

		snprintf(dir, sizeof(dir), "%s", c->pin_dir);
		c->pin_dir[0] = 0;
		capture_close(c);
		unpin_all(dir, true);
		return NULL;
	}
	capture_close(c);
	return NULL;
}

void capture_heartbeat(struct capture *c, const uint64_t *reported)
{
	struct timespec ts;
	__u32 zero = 0;

	if (!c->skel)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	c->meta.heartbeat_ns = (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	if (reported)
		memcpy(c->meta.reported, reported, sizeof(c->meta.reported));
	bpf_map_update_elem(bpf_map__fd(c->skel->maps.agent_meta), &zero, &c->meta, BPF_ANY);
}

bool capture_adopted(const struct capture *c, uint64_t *reported)
{
	if (c->adopted)
		memcpy(reported, c->prev.reported, sizeof(c->prev.reported));
	return c->adopted;
}

const char *capture_pin_dir(const struct capture *c)
{
	return c->pin_dir[0] ? c->pin_dir : NULL;
}

int capture_poll(struct capture *c, int timeout_ms)
{
	struct epoll_event ev;
	unsigned long prod = __atomic_load_n(c->rb->producer, __ATOMIC_ACQUIRE);

	/* records are mostly submitted without a wakeup: wait only when there are none */
	if (c->rb->cons == prod && epoll_wait(c->rb->epfd, &ev, 1, timeout_ms) < 0)
		return errno == EINTR ? 0 : -errno;
	return ring_read(c, c->rb);
}

void capture_commit(struct capture *c)
{
	if (c && c->rb)
		__atomic_store_n(c->rb->consumer, c->rb->cons, __ATOMIC_RELEASE);
}

int capture_counters(struct capture *c, uint64_t *out)
{
	int ncpu = libbpf_num_possible_cpus();
	int fd = bpf_map__fd(c->skel->maps.counters);
	uint64_t *vals;

	if (ncpu <= 0)
		return -EINVAL;
	vals = calloc(ncpu, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	for (__u32 i = 0; i < DBW_CNT__MAX; i++) {
		out[i] = 0;
		if (bpf_map_lookup_elem(fd, &i, vals))
			continue;
		for (int cpu = 0; cpu < ncpu; cpu++)
			out[i] += vals[cpu];
	}
	free(vals);
	return 0;
}

/*
 * Whether the kernel's masking verdict can read this protocol's replies
 * (bpf/mask*.bpf.h). A port of another protocol gets no masking rules, so
 * its sockets never carry the verdict.
 */
static bool mask_parses(uint8_t proto)
{
	switch (proto) {
	case DBW_PROTO_POSTGRES:
	case DBW_PROTO_REDIS:
	case DBW_PROTO_MYSQL:
		return true;
	default:
		return false;
	}
}

/* The Redis command names the guard classifies, for the kernel (resp.bpf.h). 0 or -1. */
static int redis_verbs_load(int fd)
{
	const char *name;
	int cls;

	for (size_t i = 0; (name = redis_verb_entry(i, &cls)); i++) {
		__u64 key = dbw_name_hash(name, strlen(name));
		__u32 bits = 1u << cls;

		if (strchr(name, ' ')) {
			/* a subcommand is its container's too: CONFIG SET is a CONFIG */
			size_t n = strcspn(name, " ");
			char top[32];

			snprintf(top, sizeof(top), "%.*s", (int)n, name);
			cls = redis_verb_class(top);
			if (cls)
				bits |= 1u << cls;
		}
		if (bpf_map_update_elem(fd, &key, &bits, BPF_ANY))
			return -1;
	}
	/* the containers: their first argument is part of the verb */
	for (size_t i = 0; (name = redis_container(i)); i++) {
		__u64 key = dbw_name_hash(name, strlen(name));
		__u32 bits = 0;

		cls = redis_verb_class(name);
		if (cls)
			bits = 1u << cls;
		bits |= DBW_RVERB_F_SUBCMD;
		if (bpf_map_update_elem(fd, &key, &bits, BPF_ANY))
			return -1;
	}
	return 0;
}

/* Which arguments of a command are keys, for result masking by key (resp.bpf.h). 0 or -1. */
static int redis_key_specs_load(int fd)
{
	struct dbw_rkey_spec spec;
	const char *name;

	for (size_t i = 0; (name = redis_mask_spec_entry(i, &spec)); i++) {
		__u64 key = dbw_name_hash(name, strlen(name));

		if (bpf_map_update_elem(fd, &key, &spec, BPF_ANY))
			return -1;
	}
	return 0;
}

int capture_guard_load(struct capture *c, const struct capture_guard *g)
{
	struct dbwarden_bpf *skel = c->skel;
	int rules_fd = bpf_map__fd(skel->maps.guard_rules);
	int text_fd = bpf_map__fd(skel->maps.guard_text);
	int ports_fd = bpf_map__fd(skel->maps.ports);
	__u32 zero = 0;

	if (g->nrules > DBW_GUARD_RULES)
		return -E2BIG;
	/* rules and texts before the switch: a send sees old or new, whole */
	for (__u32 i = 0; i < DBW_GUARD_RULES; i++) {
		struct dbw_guard_rule none = {};

		if (bpf_map_update_elem(rules_fd, &i, i < g->nrules ? &g->rules[i] : &none,
					BPF_ANY))
			return -errno;
	}
	for (__u32 i = 0; i < DBW_GUARD_TEXT_SLOTS; i++) {
		const struct dbw_guard_text *t = i == DBW_GUARD_DOWN ? &g->down_text :
						 i < g->nrules	     ? &g->texts[i] :
								       &g->unparsed_text;

		if (bpf_map_update_elem(text_fd, &i, t, BPF_ANY))
			return -errno;
		/* the other protocols' texts follow PostgreSQL's */
		for (__u32 pr = 1; pr < DBW_GUARD_PROTOS; pr++) {
			__u32 key = i + pr * DBW_GUARD_TEXT_SLOTS;
			const struct dbw_guard_text *o =
				g->proto_texts ?
					&g->proto_texts[(pr - 1) * DBW_GUARD_TEXT_SLOTS + i] :
					t;

			if (bpf_map_update_elem(text_fd, &key, o, BPF_ANY))
				return -errno;
		}
	}
	if (redis_verbs_load(bpf_map__fd(skel->maps.redis_verbs)) ||
	    redis_key_specs_load(bpf_map__fd(skel->maps.mask_rkey_spec)))
		return -errno;
	for (int i = 0; i < c->nports; i++) {
		struct dbw_port_cfg cfg = {
			.proto = c->ports[i].proto,
			.rules = g->port_rules ? g->port_rules[i] : 0,
			.mask_rules = g->port_mask_rules && mask_parses(c->ports[i].proto) ?
					      g->port_mask_rules[i] :
					      0,
		};

		if (bpf_map_update_elem(ports_fd, &c->ports[i].port, &cfg, BPF_ANY))
			return -errno;
	}
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.guard_cfg), &zero, &g->cfg, BPF_ANY))
		return -errno;
	return 0;
}

/* Make hash map fd hold exactly keys[i] -> vals[i] (u64 or u32 keys, u32 values). */
static int map_sync(int fd, const void *keys, size_t ksize, const uint32_t *vals, unsigned n)
{
	unsigned char key[16] = {}, next[16] = {};

	if (ksize > sizeof(key))
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (bpf_map_update_elem(fd, (const char *)keys + i * ksize, &vals[i], BPF_ANY))
			return -errno;
	for (int more = !bpf_map_get_next_key(fd, NULL, key); more; memcpy(key, next, ksize)) {
		unsigned i;

		more = !bpf_map_get_next_key(fd, key, next);
		for (i = 0; i < n && memcmp((const char *)keys + i * ksize, key, ksize); i++)
			;
		if (i == n)
			bpf_map_delete_elem(fd, key);
	}
	return 0;
}

int capture_mask_load(struct capture *c, const struct capture_mask *m)
{
	struct dbwarden_bpf *skel = c->skel;
	static __u32 gen;
	struct dbw_mask_cfg cfg = { .nrules = m->nrules,
				    .uid_free = m->uid_free,
				    .gen = ++gen,
				    .srv_rules = m->srv_rules,
				    .srv_user_free = m->srv_user_free,
				    .key_plens = m->key_plens,
				    .key_rules = m->key_rules };
	__u32 zero = 0;
	int e;

	if (m->nrules > DBW_MASK_RULES)
		return -E2BIG;
	memcpy(cfg.rules, m->rules, m->nrules * sizeof(*m->rules));
	/* the new sets in, then what they lack out */
	e = map_sync(bpf_map__fd(skel->maps.mask_cols), m->col_hash, sizeof(__u64), m->col_rules,
		     m->ncols);
	if (!e)
		e = map_sync(bpf_map__fd(skel->maps.mask_uid), m->uids, sizeof(__u32), m->uid_rules,
			     m->nuids);
	if (!e)
		e = map_sync(bpf_map__fd(skel->maps.mask_srv_user), m->user_hash, sizeof(__u64),
			     m->user_rules, m->nusers);
	if (!e)
		e = map_sync(bpf_map__fd(skel->maps.mask_keys), m->keys, sizeof(*m->keys),
			     m->key_rule_sets, m->nkeys);
	if (e)
		return e;
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.mask_cfg), &zero, &cfg, BPF_ANY))
		return -errno;
	return 0;
}

int capture_mask_srv_conns(struct capture *c, uint64_t *ids, int max, uint32_t *rules)
{
	int fd = bpf_map__fd(c->skel->maps.socks_srv);
	struct dbw_mask_cfg cfg = {};
	__u32 zero = 0;
	__u64 key, prev;
	int n = 0;

	*rules = bpf_map_lookup_elem(bpf_map__fd(c->skel->maps.mask_cfg), &zero, &cfg) ?
			 0 :
			 cfg.srv_rules;
	while (n < max && !bpf_map_get_next_key(fd, n ? &prev : NULL, &key)) {
		ids[n++] = key;
		prev = key;
	}
	return n;
}

int capture_mask_conns(struct capture *c, uint64_t *ids, uint32_t *rules, int max)
{
	int state_fd = bpf_map__fd(c->skel->maps.mask_state);
	int conn_fd = bpf_map__fd(c->skel->maps.mask_conn);
	__u64 key, prev;
	int n = 0;

	while (n < max && !bpf_map_get_next_key(state_fd, n ? &prev : NULL, &key)) {
		struct dbw_mask_conn r;

		ids[n] = key;
		rules[n] = bpf_map_lookup_elem(conn_fd, &key, &r) ? ~0u : r.rules;
		n++;
		prev = key;
	}
	return n;
}

int capture_mask_conn(struct capture *c, uint64_t conn_id, uint32_t rules, uint32_t dbk)
{
	__u64 key = conn_id;
	struct dbw_mask_conn val = { .rules = rules, .dbk = dbk };

	return bpf_map_update_elem(bpf_map__fd(c->skel->maps.mask_conn), &key, &val, BPF_ANY) ?
		       -errno :
		       0;
}

int capture_mask_rel_fd(struct capture *c)
{
	return bpf_map__fd(c->skel->maps.mask_rel);
}

int capture_approve(struct capture *c, const struct dbw_approval_key *k, uint64_t until_mono_ns)
{
	__u64 v = until_mono_ns;

	return bpf_map_update_elem(bpf_map__fd(c->skel->maps.approvals), k, &v, BPF_ANY) ? -errno :
											   0;
}

struct bpf_link *capture_tls_probe(struct capture *c, const char *path, size_t offset, int probe,
				   bool ret, uint64_t cookie)
{
	struct dbwarden_bpf *skel = c->skel;
	LIBBPF_OPTS(bpf_uprobe_opts, o, .retprobe = ret, .bpf_cookie = cookie);
	struct bpf_program *p;

	if (probe == DBW_TLS_PROBE_WRITE)
		p = ret ? skel->progs.dbw_tls_write_ret : skel->progs.dbw_tls_write;
	else if (probe == DBW_TLS_PROBE_READ)
		p = ret ? skel->progs.dbw_tls_read_ret : skel->progs.dbw_tls_read;
	else
		p = ret ? skel->progs.dbw_tls_handshake_ret : skel->progs.dbw_tls_handshake;
	/* pid -1: every process mapping this file, now and later */
	return bpf_program__attach_uprobe_opts(p, -1, path, offset, &o);
}

int capture_prog_stats(struct capture *c, struct capture_prog_stat *out, int max)
{
	struct bpf_program *p;
	int n = 0;

	bpf_object__for_each_program(p, c->skel->obj)
	{
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		if (n == max)
			break;
		if (bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len))
			continue;
		snprintf(out[n].name, sizeof(out[n].name), "%s", bpf_program__name(p));
		out[n].id = info.id;
		out[n].run_cnt = info.run_cnt;
		out[n].run_time_ns = info.run_time_ns;
		n++;
	}
	return n;
}

int capture_conn_rules(struct capture *c, uint64_t conn_id, uint64_t rules)
{
	__u64 key = conn_id, val = rules;

	return bpf_map_update_elem(bpf_map__fd(c->skel->maps.conn_rules), &key, &val, BPF_ANY) ?
		       -errno :
		       0;
}

int capture_workload_set(struct capture *c, uint64_t cgroup_id, uint64_t rules, uint32_t mask_rules)
{
	struct dbw_workload_class wc = { .rules = rules, .mask_rules = mask_rules };
	__u64 key = cgroup_id;

	return bpf_map_update_elem(bpf_map__fd(c->skel->maps.workload_class), &key, &wc, BPF_ANY) ?
		       -errno :
		       0;
}

int capture_workload_del(struct capture *c, uint64_t cgroup_id)
{
	__u64 key = cgroup_id;

	return bpf_map_delete_elem(bpf_map__fd(c->skel->maps.workload_class), &key) ? -errno : 0;
}

void capture_stop_new(struct capture *c)
{
	struct dbwarden_bpf *skel = c->skel;

	/* pinned, the kernel goes on watching for the next daemon */
	if (!skel || c->pin_dir[0])
		return;
	bpf_link__destroy(skel->links.dbw_exec);
	skel->links.dbw_exec = NULL;
	bpf_link__destroy(skel->links.dbw_connect4);
	bpf_link__destroy(skel->links.dbw_connect6);
	bpf_link__destroy(skel->links.dbw_sockops);
	skel->links.dbw_connect4 = skel->links.dbw_connect6 = skel->links.dbw_sockops = NULL;
}

void capture_close(struct capture *c)
{
	if (!c)
		return;
	if (c->skel && c->pin_dir[0]) {
		struct bpf_link **links[] = { &c->skel->links.dbw_recv, &c->skel->links.dbw_exec,
					      &c->skel->links.dbw_sockops,
					      &c->skel->links.dbw_connect4,
					      &c->skel->links.dbw_connect6 };

		/* the pins hold the links: closing ours leaves them attached */
		for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
			if (*links[i])
				bpf_link__disconnect(*links[i]);
		}
		if (c->rb) {
			/* started: the kernel now knows no daemon is attached */
			c->meta.heartbeat_ns = 0;
			__u32 zero = 0;

			bpf_map_update_elem(bpf_map__fd(c->skel->maps.agent_meta), &zero, &c->meta,
					    BPF_ANY);
		}
	} else if (c->skel) {
		capture_stop_new(c);
		/*
		 * Detaching the verdict and then freeing the map takes every
		 * socket out of it: they return to the plain TCP paths.
		 */
		if (c->msg_attached)
			bpf_prog_detach2(bpf_program__fd(c->skel->progs.dbw_msg), c->socks_fd,
					 BPF_SK_MSG_VERDICT);
		if (c->mask_msg_attached)
			bpf_prog_detach2(bpf_program__fd(c->skel->progs.dbw_msg), c->socks_mask_fd,
					 BPF_SK_MSG_VERDICT);
		if (c->mask_skb_attached)
			bpf_prog_detach2(bpf_program__fd(c->skel->progs.dbw_mask), c->socks_mask_fd,
					 BPF_SK_SKB_VERDICT);
		if (c->srv_msg_attached)
			bpf_prog_detach2(bpf_program__fd(c->skel->progs.dbw_srv_msg),
					 bpf_map__fd(c->skel->maps.socks_srv), BPF_SK_MSG_VERDICT);
	}
	ring_free(c->rb);
	dbwarden_bpf__destroy(c->skel);
	if (c->cgroup_fd >= 0)
		close(c->cgroup_fd);
	if (c->pin_lock >= 0)
		close(c->pin_lock);
	free(c);
}

/* Is pid a running dbwarden (a zombie has exited: its parent just has not reaped it)? */
static bool is_dbwarden(pid_t pid)
{
	char path[64], stat[256] = "", *end;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (!fgets(stat, sizeof(stat), f))
		stat[0] = 0;
	fclose(f);
	/* "pid (comm) S ...": the comm may hold spaces, the state follows the last ')' */
	end = strrchr(stat, ')');
	return end && !strncmp(stat + strcspn(stat, "(") + 1, "dbwarden)", 9) && end[1] == ' ' &&
	       end[2] != 'Z' && end[2] != 'X';
}

int capture_stop_pinned(const char *dir, bool unpin)
{
	struct dbw_agent_meta m = {};
	int lock, n, rc = 1;

	if (read_meta(dir, &m)) {
		if (!unpin || !unpin_all(dir, true)) {
			log_error("stop: nothing pinned in %s", dir);
			return 1;
		}
		printf("removed the pins in %s\n", dir);
		return 0;
	}
	if (m.heartbeat_ns && m.pid && is_dbwarden(m.pid)) {
		if (kill(m.pid, SIGTERM)) {
			log_error("stop: pid %u: %s", m.pid, strerror(errno));
			return -1;
		}
		/* it drains the ring buffer and flushes its outputs first */
		for (int i = 0; i < 300 && is_dbwarden(m.pid); i++)
			usleep(100 * 1000);
		if (is_dbwarden(m.pid)) {
			log_error("stop: pid %u did not exit within 30 s", m.pid);
			return -1;
		}
		printf("stopped dbwarden (pid %u)\n", m.pid);
		rc = 0;
	}
	if (!unpin) {
		if (rc)
			log_error("stop: no agent is running for %s", dir);
		else
			printf("the programs stay pinned in %s, enforcing the last policy "
			       "(--unpin removes them)\n",
			       dir);
		return rc;
	}
	lock = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB)) {
		log_error("stop: an agent still holds %s", dir);
		if (lock >= 0)
			close(lock);
		return -1;
	}
	n = unpin_all(dir, true);
	close(lock);
	printf("removed %d pinned objects in %s: nothing of dbwarden is attached any more\n", n,
	       dir);
	return 0;
}
