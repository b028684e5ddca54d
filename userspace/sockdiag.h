/* SPDX-License-Identifier: GPL-2.0-only */
/* Resetting a TCP connection by 4-tuple and cookie (sock_diag SOCK_DESTROY). */
#ifndef DBW_SOCKDIAG_H
#define DBW_SOCKDIAG_H

#include <stdint.h>

struct sockdiag_tuple {
	uint16_t family; /* AF_INET or AF_INET6 */
	uint16_t client_port, server_port; /* host order */
	uint8_t client_addr[16], server_addr[16]; /* network order, IPv4 in the first 4 */
	uint64_t cookie;
};

/* Destroy the client's socket of that connection. 0 or -errno. */
int sockdiag_destroy(const struct sockdiag_tuple *t);

struct sockdiag_sock {
	struct sockdiag_tuple t; /* seen from this host's side: client = local */
	uint32_t uid; /* the socket's owner */
};

/*
 * Every TCP socket of this network namespace (both families), for finding
 * connections by cookie. Returns the count with *out malloc'ed (free it),
 * or -errno.
 */
int sockdiag_dump(struct sockdiag_sock **out);

/*
 * Reset every TCP socket whose cookie is in ids[0..n), in whichever network
 * namespace it lives (a database in a pod has its own): each namespace a
 * process of this host is in is entered by a short-lived thread. Returns
 * how many were reset, or -errno.
 */
int sockdiag_destroy_cookies(const uint64_t *ids, int n);

#endif /* DBW_SOCKDIAG_H */
