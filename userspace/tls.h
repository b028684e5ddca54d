/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * TLS library discovery: find every TLS library in use on the host and in
 * containers, pick its probe sites, attach the TLS programs once per
 * library file, detach when its last user is gone.
 */
#ifndef DBW_TLS_H
#define DBW_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct capture;
struct tls;

/* One probe to attach: program (write/read, entry/return), file offset, cookie. */
struct tls_site {
	size_t off;
	int probe; /* enum dbw_tls_probe */
	bool ret;
	uint64_t cookie; /* enum dbw_tls_cookie */
};

#define TLS_MAX_SITES 10

/* Where a library gets probed, and how the sites were chosen. */
struct tls_sites {
	struct tls_site s[TLS_MAX_SITES];
	int n;
	/* "internal": OpenSSL's ssl_write_internal/ssl_read_internal reached
	 * from SSL_write_ex/SSL_read_ex, entry emulated by the kernel;
	 * "exported": the exported functions themselves (single-stepped) */
	const char *how;
	char detail[160];
};

/*
 * Read the ELF file open at fd: does it export OpenSSL's SSL_write/SSL_read
 * family, and where should the probes go? Returns 1 (sites filled), 0 (not
 * a TLS library), or -1 (unreadable ELF; why says so).
 */
int tls_find_sites(int fd, struct tls_sites *out, char *why, size_t whylen);

struct tls_stats {
	uint64_t libraries; /* library files probed now */
	uint64_t attached; /* ... in total */
	uint64_t detached; /* ... detached after their last user went */
	uint64_t failed; /* libraries that could not be probed */
	uint64_t scans; /* process maps read */
	uint64_t pending_full; /* exec rescans dropped (the periodic sweep covers them) */
};

/* Start the discovery; scans every process now. NULL on out of memory. */
struct tls *tls_new(struct capture *cap);
void tls_free(struct tls *t);

/* A process exec'd (DBW_REC_EXEC): look at it now and a few times as it loads libraries. */
void tls_on_exec(struct tls *t, uint32_t pid);

/* A process opened a watched connection: make sure its libraries are probed. */
void tls_on_connect(struct tls *t, uint32_t pid);

/* Due rescans and the periodic sweep. Returns ms until the next due work. */
int tls_tick(struct tls *t);

void tls_stats(const struct tls *t, struct tls_stats *out);

#endif /* DBW_TLS_H */
