// SPDX-License-Identifier: GPL-2.0-only
/*
 * TLS library discovery and probe placement.
 *
 * Every executable mapping of every process is a candidate: a file named
 * libssl* (the host's and each container's own copy, reached through
 * /proc/PID/map_files, so other mount namespaces need no configuration), or
 * the process's main executable (a statically linked program exporting the
 * SSL functions). Each distinct file (device, inode) is inspected once and,
 * when it is a TLS library, probed once: a uprobe lives on the inode, in
 * every process that maps it, now or later. Processes are looked at on
 * start (all of /proc), on each exec (several times, as the loader and
 * dlopen() map libraries), when they open a watched connection, and in a
 * periodic sweep that also detaches libraries nobody maps any more.
 *
 * Probe sites. On this kernel a uprobe whose first instruction must be
 * single-stepped costs ~10 us per hit; instructions the kernel emulates
 * (push, call, jmp, jcc, nop) cost a fraction of that. OpenSSL's
 * SSL_write/SSL_read start with `sub $n,%rsp` (stepped), but each is a
 * thin wrapper over ssl_write_internal/ssl_read_internal (not exported),
 * which start with `push`. So the sites are found by disassembly
 * (Capstone): the first direct call of SSL_write_ex, checked to be the
 * first direct call of SSL_write too, whose target's first instruction
 * (after an endbr64) is emulated. Those internal functions take (ssl, buf,
 * num, &count) and return 1 with the count stored, as SSL_write_ex does.
 * When the shape is not recognised (another OpenSSL, another
 * architecture), the exported functions are probed instead: correct,
 * slower.
 */
#include <capstone/capstone.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/sysmacros.h>
#include <bpf/libbpf.h>

#include "capture.h"
#include "dbwarden_abi.h"
#include "tls.h"
#include "log.h"

#define TLS_MAX_LIBS	 256
#define TLS_SEEN_SLOTS	 4096 /* files found not to be TLS libraries; direct-mapped */
#define TLS_MAX_PENDING	 1024
#define TLS_SWEEP_MS	 10000 /* default; DBWARDEN_TLS_SWEEP_MS overrides */
#define TLS_RECENT_SLOTS 1024 /* pids scanned lately (connect-time rescans) */

/* After an exec, look again this long after it: the loader, then dlopen(). */
static const int rescan_ms[] = { 10, 100, 1000, 3000 };
#define NRESCAN ((int)(sizeof(rescan_ms) / sizeof(rescan_ms[0])))

struct tls_lib {
	uint64_t dev, ino;
	char path[PATH_MAX]; /* as its first user maps it */
	struct bpf_link *links[TLS_MAX_SITES];
	int nlinks;
	bool used; /* seen mapped during the current sweep */
};

struct file_key {
	uint64_t dev, ino;
};

struct pending {
	uint32_t pid;
	int step; /* index into rescan_ms of the next look */
	uint64_t due_ms;
};

struct tls {
	struct capture *cap;
	struct tls_lib *libs[TLS_MAX_LIBS];
	int nlibs;
	struct file_key seen[TLS_SEEN_SLOTS];
	struct pending pend[TLS_MAX_PENDING];
	int npend;
	struct {
		uint32_t pid;
		uint64_t at_ms;
	} recent[TLS_RECENT_SLOTS];
	uint64_t next_sweep_ms;
	unsigned sweep_ms;
	struct tls_stats st;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- ELF and disassembly: where to probe ---- */

enum { SYM_WRITE, SYM_WRITE_EX, SYM_READ, SYM_READ_EX, SYM_WRITE_EX2, SYM_HANDSHAKE, NSYMS };
static const char *const sym_names[NSYMS] = { "SSL_write",   "SSL_write_ex",  "SSL_read",
					      "SSL_read_ex", "SSL_write_ex2", "SSL_do_handshake" };

struct elf_info {
	uint64_t addr[NSYMS]; /* virtual address, 0: absent */
	GElf_Phdr load[16];
	int nload;
	int machine;
};

/* File offset of virtual address va, or -1 when no loadable segment holds it. */
static long va_to_off(const struct elf_info *ei, uint64_t va)
{
	for (int i = 0; i < ei->nload; i++) {
		const GElf_Phdr *p = &ei->load[i];

		if (va >= p->p_vaddr && va < p->p_vaddr + p->p_filesz)
			return (long)(va - p->p_vaddr + p->p_offset);
	}
	return -1;
}

/* Defined functions named in sym_names, from .dynsym and .symtab. */
static int elf_read_info(int fd, struct elf_info *ei, char *why, size_t whylen)
{
	Elf_Scn *scn = NULL;
	size_t nph;
	Elf *e;

	memset(ei, 0, sizeof(*ei));
	elf_version(EV_CURRENT);
	e = elf_begin(fd, ELF_C_READ, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF || elf_getphdrnum(e, &nph)) {
		snprintf(why, whylen, "not an ELF file");
		if (e)
			elf_end(e);
		return -1;
	}
	{
		GElf_Ehdr eh;

		if (gelf_getehdr(e, &eh))
			ei->machine = eh.e_machine;
	}
	for (size_t i = 0; i < nph && ei->nload < 16; i++) {
		GElf_Phdr ph;

		if (gelf_getphdr(e, i, &ph) && ph.p_type == PT_LOAD)
			ei->load[ei->nload++] = ph;
	}
	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		Elf_Data *d;

		if (!gelf_getshdr(scn, &sh) ||
		    (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB))
			continue;
		d = elf_getdata(scn, NULL);
		for (size_t k = 0; d && sh.sh_entsize && k < sh.sh_size / sh.sh_entsize; k++) {
			GElf_Sym sym;
			const char *name;

			if (!gelf_getsym(d, k, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
			    sym.st_shndx == SHN_UNDEF || !sym.st_value)
				continue;
			name = elf_strptr(e, sh.sh_link, sym.st_name);
			for (int s = 0; name && s < NSYMS; s++)
				if (!ei->addr[s] && !strcmp(name, sym_names[s]))
					ei->addr[s] = sym.st_value;
		}
	}
	elf_end(e);
	return 0;
}

/* The target of the first direct call among the first instructions at va, or 0. */
static uint64_t first_call(csh cs, int fd, const struct elf_info *ei, uint64_t va)
{
	uint8_t code[96];
	long off = va_to_off(ei, va);
	uint64_t target = 0;
	cs_insn *insn;
	size_t n;

	if (off < 0 || pread(fd, code, sizeof(code), off) != (ssize_t)sizeof(code))
		return 0;
	n = cs_disasm(cs, code, sizeof(code), va, 24, &insn);
	for (size_t i = 0; i < n; i++) {
		const cs_x86 *x = &insn[i].detail->x86;

		if (insn[i].id == X86_INS_RET || insn[i].id == X86_INS_JMP)
			break; /* the wrapper ended before calling anything */
		if (insn[i].id == X86_INS_CALL && x->op_count == 1 &&
		    x->operands[0].type == X86_OP_IMM) {
			target = x->operands[0].imm;
			break;
		}
	}
	cs_free(insn, n);
	return target;
}

/*
 * Offset from va of the first instruction a uprobe can sit on without
 * single-stepping (an endbr64 is skipped: the stack is untouched, so a
 * return probe there still finds the return address), or -1.
 */
static int emulated_entry(csh cs, int fd, const struct elf_info *ei, uint64_t va)
{
	uint8_t code[32];
	long off = va_to_off(ei, va);
	int skip = 0, ok = -1;
	cs_insn *insn;
	size_t n;

	if (off < 0 || pread(fd, code, sizeof(code), off) != (ssize_t)sizeof(code))
		return -1;
	n = cs_disasm(cs, code, sizeof(code), va, 2, &insn);
	for (size_t i = 0; i < n; i++) {
		unsigned id = insn[i].id;

		if (id == X86_INS_ENDBR64 && i == 0) {
			skip = insn[i].size;
			continue;
		}
		if (id == X86_INS_PUSH || id == X86_INS_NOP || id == X86_INS_CALL ||
		    id == X86_INS_JMP || cs_insn_group(cs, &insn[i], CS_GRP_JUMP))
			ok = skip;
		break;
	}
	cs_free(insn, n);
	return ok;
}

/* An entry and a return probe of one program at off. */
static void add_sites(struct tls_sites *out, long off, int probe, uint64_t cookie)
{
	if (out->n + 2 > TLS_MAX_SITES)
		return;
	out->s[out->n++] = (struct tls_site){ off, probe, false, cookie };
	out->s[out->n++] = (struct tls_site){ off, probe, true, cookie };
}

/* OpenSSL 1.1.1/3.0-3.2 shape: SSL_write{,_ex} -> ssl_write_internal(s, buf, num, &n). */
static int internal_sites(int fd, const struct elf_info *ei, struct tls_sites *out)
{
	uint64_t w, w2, r, r2;
	int wskip, rskip;
	long woff, roff;
	csh cs;

	if (ei->machine != EM_X86_64 || ei->addr[SYM_WRITE_EX2] || !ei->addr[SYM_WRITE] ||
	    !ei->addr[SYM_WRITE_EX] || !ei->addr[SYM_READ] || !ei->addr[SYM_READ_EX])
		return 0;
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK)
		return 0;
	cs_option(cs, CS_OPT_DETAIL, CS_OPT_ON);
	w = first_call(cs, fd, ei, ei->addr[SYM_WRITE_EX]);
	w2 = first_call(cs, fd, ei, ei->addr[SYM_WRITE]);
	r = first_call(cs, fd, ei, ei->addr[SYM_READ_EX]);
	r2 = first_call(cs, fd, ei, ei->addr[SYM_READ]);
	wskip = w && w == w2 ? emulated_entry(cs, fd, ei, w) : -1;
	rskip = r && r == r2 ? emulated_entry(cs, fd, ei, r) : -1;
	cs_close(&cs);
	if (wskip < 0 || rskip < 0)
		return 0;
	woff = va_to_off(ei, w + wskip);
	roff = va_to_off(ei, r + rskip);
	if (woff < 0 || roff < 0)
		return 0;
	add_sites(out, woff, DBW_TLS_PROBE_WRITE, DBW_TLS_RET_EX);
	add_sites(out, roff, DBW_TLS_PROBE_READ, DBW_TLS_RET_EX);
	out->how = "internal";
	snprintf(
		out->detail, sizeof(out->detail),
		"write at 0x%lx (called from SSL_write/SSL_write_ex), read at 0x%lx, emulated entry",
		woff, roff);
	return 1;
}

static bool exported_only(void)
{
	const char *e = getenv("DBWARDEN_TLS_PROBE");

	return e && !strcmp(e, "exported");
}

int tls_find_sites(int fd, struct tls_sites *out, char *why, size_t whylen)
{
	static const struct {
		int sym, probe;
		uint64_t cookie;
	} exported[] = {
		{ SYM_WRITE, DBW_TLS_PROBE_WRITE, DBW_TLS_RET_COUNT },
		{ SYM_WRITE_EX, DBW_TLS_PROBE_WRITE, DBW_TLS_RET_EX },
		{ SYM_READ, DBW_TLS_PROBE_READ, DBW_TLS_RET_COUNT },
		{ SYM_READ_EX, DBW_TLS_PROBE_READ, DBW_TLS_RET_EX },
	};
	struct elf_info ei;
	long hs;

	memset(out, 0, sizeof(*out));
	if (elf_read_info(fd, &ei, why, whylen))
		return -1;
	if (!ei.addr[SYM_WRITE] || !ei.addr[SYM_READ])
		return 0;
	/* DBWARDEN_TLS_PROBE=exported: the fallback sites, to test and measure them */
	if (exported_only() || !internal_sites(fd, &ei, out)) {
		for (size_t i = 0; i < sizeof(exported) / sizeof(exported[0]); i++) {
			long off = ei.addr[exported[i].sym] ?
					   va_to_off(&ei, ei.addr[exported[i].sym]) :
					   -1;

			if (off >= 0)
				add_sites(out, off, exported[i].probe, exported[i].cookie);
		}
		out->how = "exported";
		snprintf(out->detail, sizeof(out->detail),
			 "SSL_write/SSL_read%s at their entry (single-stepped: slower)",
			 ei.addr[SYM_WRITE_EX] ? " and their _ex forms" : "");
	}
	/* once per connection: which sends are the library's own handshake */
	hs = ei.addr[SYM_HANDSHAKE] ? va_to_off(&ei, ei.addr[SYM_HANDSHAKE]) : -1;
	if (hs >= 0)
		add_sites(out, hs, DBW_TLS_PROBE_HANDSHAKE, 0);
	return 1;
}

/* ---- the library registry ---- */

static struct tls_lib *lib_find(struct tls *t, uint64_t dev, uint64_t ino)
{
	for (int i = 0; i < t->nlibs; i++)
		if (t->libs[i]->dev == dev && t->libs[i]->ino == ino)
			return t->libs[i];
	return NULL;
}

static struct file_key *seen_slot(struct tls *t, uint64_t dev, uint64_t ino)
{
	return &t->seen[((ino * 0x9e3779b97f4a7c15ULL) ^ dev) % TLS_SEEN_SLOTS];
}

static bool seen_has(struct tls *t, uint64_t dev, uint64_t ino)
{
	struct file_key *k = seen_slot(t, dev, ino);

	return k->ino == ino && k->dev == dev;
}

static void lib_detach(struct tls_lib *l)
{
	for (int i = 0; i < l->nlinks; i++)
		bpf_link__destroy(l->links[i]);
	l->nlinks = 0;
}

/*
 * Inspect the file of one mapping (open through path) and probe it when it
 * is a TLS library. The file is remembered either way.
 */
static void inspect(struct tls *t, const char *path, const char *shown, uint64_t dev, uint64_t ino)
{
	struct tls_sites sites;
	struct file_key *k;
	struct tls_lib *l;
	char why[128] = "";
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return; /* gone, or not ours to read: the next scan tries again */
	r = tls_find_sites(fd, &sites, why, sizeof(why));
	close(fd);
	if (r <= 0 || t->nlibs == TLS_MAX_LIBS) {
		if (r > 0) {
			t->st.failed++;
			log_warn("tls: %s: not probed: %d libraries already", shown, TLS_MAX_LIBS);
		}
		k = seen_slot(t, dev, ino);
		k->dev = dev;
		k->ino = ino;
		return;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return;
	l->dev = dev;
	l->ino = ino;
	snprintf(l->path, sizeof(l->path), "%s", shown);
	for (int i = 0; i < sites.n; i++) {
		const struct tls_site *s = &sites.s[i];
		struct bpf_link *lk =
			capture_tls_probe(t->cap, path, s->off, s->probe, s->ret, s->cookie);

		if (!lk) {
			snprintf(why, sizeof(why), "attach at 0x%zx: %s", s->off, strerror(errno));
			lib_detach(l);
			free(l);
			t->st.failed++;
			log_warn("tls: %s: not probed: %s", shown, why);
			k = seen_slot(t, dev, ino);
			k->dev = dev;
			k->ino = ino;
			return;
		}
		l->links[l->nlinks++] = lk;
	}
	l->used = true;
	t->libs[t->nlibs++] = l;
	t->st.libraries++;
	t->st.attached++;
	log_info("tls: probing %s (device %u:%u inode %llu): %s", shown, major(dev), minor(dev),
		 (unsigned long long)ino, sites.detail);
}

/*
 * Look at every executable file mapped by pid; mark libraries in use.
 * Returns false when the process is gone.
 */
static bool scan_pid(struct tls *t, uint32_t pid)
{
	char path[PATH_MAX + 64], exe[PATH_MAX] = "", line[PATH_MAX + 256];
	FILE *f;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%u/exe", pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = 0;
	snprintf(path, sizeof(path), "/proc/%u/maps", pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	t->st.scans++;
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end, ino;
		unsigned maj, min;
		char perms[8], *file, *base;
		struct tls_lib *l;
		uint64_t dev;
		int pos = 0;

		if (sscanf(line, "%lx-%lx %7s %*x %x:%x %lu %n", &start, &end, perms, &maj, &min,
			   &ino, &pos) < 6 ||
		    !pos || perms[2] != 'x' || !ino)
			continue;
		file = line + pos;
		file[strcspn(file, "\n")] = 0;
		dev = makedev(maj, min);
		l = lib_find(t, dev, ino);
		if (l) {
			l->used = true;
			continue;
		}
		if (seen_has(t, dev, ino))
			continue;
		base = strrchr(file, '/');
		base = base ? base + 1 : file;
		if (strncmp(base, "libssl", 6) && strcmp(file, exe))
			continue;
		/* the mapping's own file, whatever mount namespace it lives in */
		snprintf(path, sizeof(path), "/proc/%u/map_files/%lx-%lx", pid, start, end);
		inspect(t, path, file, dev, ino);
	}
	fclose(f);
	return true;
}

/* Every process, then detach the libraries none of them maps any more. */
static void sweep(struct tls *t)
{
	struct dirent *de;
	DIR *d = opendir("/proc");

	if (!d)
		return;
	for (int i = 0; i < t->nlibs; i++)
		t->libs[i]->used = false;
	while ((de = readdir(d))) {
		char *end;
		unsigned long pid = strtoul(de->d_name, &end, 10);

		if (*end || !pid)
			continue;
		scan_pid(t, pid);
	}
	closedir(d);
	for (int i = 0; i < t->nlibs;) {
		struct tls_lib *l = t->libs[i];

		if (l->used) {
			i++;
			continue;
		}
		log_info("tls: %s no longer in use: probes removed", l->path);
		lib_detach(l);
		free(l);
		t->libs[i] = t->libs[--t->nlibs];
		t->st.libraries--;
		t->st.detached++;
	}
	t->next_sweep_ms = mono_ms() + t->sweep_ms;
}

struct tls *tls_new(struct capture *cap)
{
	const char *env = getenv("DBWARDEN_TLS_SWEEP_MS");
	unsigned long ms = env ? strtoul(env, NULL, 10) : 0;
	struct tls *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->cap = cap;
	/* how soon a library nobody maps is detached, and a missed one found */
	t->sweep_ms = ms >= 100 && ms <= 3600000 ? ms : TLS_SWEEP_MS;
	sweep(t);
	return t;
}

void tls_free(struct tls *t)
{
	if (!t)
		return;
	for (int i = 0; i < t->nlibs; i++) {
		lib_detach(t->libs[i]);
		free(t->libs[i]);
	}
	free(t);
}

void tls_on_exec(struct tls *t, uint32_t pid)
{
	if (!t)
		return;
	scan_pid(t, pid);
	if (t->npend == TLS_MAX_PENDING) {
		t->st.pending_full++;
		return;
	}
	t->pend[t->npend++] = (struct pending){ pid, 0, mono_ms() + rescan_ms[0] };
}

void tls_on_connect(struct tls *t, uint32_t pid)
{
	uint64_t now = mono_ms();
	unsigned slot = (pid * 2654435761u) % TLS_RECENT_SLOTS;

	if (!t || (t->recent[slot].pid == pid && now - t->recent[slot].at_ms < 1000))
		return;
	t->recent[slot].pid = pid;
	t->recent[slot].at_ms = now;
	scan_pid(t, pid);
}

int tls_tick(struct tls *t)
{
	uint64_t now;
	int next = TLS_SWEEP_MS;

	if (!t)
		return next;
	next = t->sweep_ms;
	now = mono_ms();
	for (int i = 0; i < t->npend;) {
		struct pending *p = &t->pend[i];

		if (p->due_ms > now) {
			if ((int)(p->due_ms - now) < next)
				next = p->due_ms - now;
			i++;
			continue;
		}
		/* a short-lived process (most execs) is dropped at its first miss */
		if (scan_pid(t, p->pid) && ++p->step < NRESCAN) {
			p->due_ms = now + rescan_ms[p->step] - rescan_ms[p->step - 1];
			i++;
			continue;
		}
		*p = t->pend[--t->npend];
	}
	if (now >= t->next_sweep_ms)
		sweep(t);
	return next;
}

void tls_stats(const struct tls *t, struct tls_stats *out)
{
	if (t)
		*out = t->st;
	else
		memset(out, 0, sizeof(*out));
}
