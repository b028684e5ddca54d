// SPDX-License-Identifier: GPL-2.0-only
/*
 * Reset one TCP connection from outside its process: sock_diag's
 * SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY). The socket is named by its
 * 4-tuple and its cookie, so a reused 4-tuple is never hit by mistake. The
 * application sees ECONNABORTED on its next call: a client is never left
 * waiting on a connection the guard could not answer in-protocol.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#include "sockdiag.h"

int sockdiag_destroy(const struct sockdiag_tuple *t)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg = {};
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	char buf[512];
	struct nlmsghdr *h;
	ssize_t n;
	int fd, err = 0;

	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DESTROY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	msg.req.sdiag_family = t->family;
	msg.req.sdiag_protocol = IPPROTO_TCP;
	msg.req.idiag_states = ~0u;
	msg.req.id.idiag_sport = htons(t->client_port);
	msg.req.id.idiag_dport = htons(t->server_port);
	memcpy(msg.req.id.idiag_src, t->client_addr, 16);
	memcpy(msg.req.id.idiag_dst, t->server_addr, 16);
	msg.req.id.idiag_cookie[0] = (uint32_t)t->cookie;
	msg.req.id.idiag_cookie[1] = (uint32_t)(t->cookie >> 32);

	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -errno;
	if (sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		goto out;
	}
	n = recv(fd, buf, sizeof(buf), 0);
	if (n < 0) {
		err = -errno;
		goto out;
	}
	h = (struct nlmsghdr *)buf;
	if (NLMSG_OK(h, (size_t)n) && h->nlmsg_type == NLMSG_ERROR)
		err = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
out:
	close(fd);
	return err;
}

/* One family's sockets appended to *v (n used, *cap allocated). Returns the new n or -errno. */
static int dump_family(int fd, int family, struct sockdiag_sock **v, int n, int *cap)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg = {};
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	static char buf[32768];

	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	msg.req.sdiag_family = family;
	msg.req.sdiag_protocol = IPPROTO_TCP;
	msg.req.idiag_states = ~0u;
	if (sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	for (;;) {
		ssize_t len = recv(fd, buf, sizeof(buf), 0);

		if (len < 0)
			return -errno;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)len);
		     h = NLMSG_NEXT(h, len)) {
			const struct inet_diag_msg *d = NLMSG_DATA(h);
			struct sockdiag_sock *s;

			if (h->nlmsg_type == NLMSG_DONE)
				return n;
			if (h->nlmsg_type == NLMSG_ERROR)
				return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
			if (n == *cap) {
				int ncap = *cap ? *cap * 2 : 256;
				struct sockdiag_sock *nv = realloc(*v, ncap * sizeof(*nv));

				if (!nv)
					return -ENOMEM;
				*v = nv;
				*cap = ncap;
			}
			s = &(*v)[n++];
			s->t.family = d->idiag_family;
			s->t.client_port = ntohs(d->id.idiag_sport);
			s->t.server_port = ntohs(d->id.idiag_dport);
			memcpy(s->t.client_addr, d->id.idiag_src, 16);
			memcpy(s->t.server_addr, d->id.idiag_dst, 16);
			s->t.cookie = d->id.idiag_cookie[0] | (uint64_t)d->id.idiag_cookie[1] << 32;
			s->uid = d->idiag_uid;
		}
	}
}

int sockdiag_dump(struct sockdiag_sock **out)
{
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	int n = 0, cap = 0;

	*out = NULL;
	if (fd < 0)
		return -errno;
	n = dump_family(fd, AF_INET, out, n, &cap);
	if (n >= 0)
		n = dump_family(fd, AF_INET6, out, n, &cap);
	close(fd);
	if (n < 0) {
		free(*out);
		*out = NULL;
	}
	return n;
}

struct cookie_job {
	uint64_t *ids; /* sorted */
	int n;
	int reset;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Reset the sockets of the job in the current thread's network namespace. */
static void destroy_here(struct cookie_job *j)
{
	struct sockdiag_sock *v;
	int n = sockdiag_dump(&v);

	for (int i = 0; i < n; i++)
		if (bsearch(&v[i].t.cookie, j->ids, j->n, sizeof(*j->ids), cmp_u64) &&
		    !sockdiag_destroy(&v[i].t))
			j->reset++;
	free(v);
}

/*
 * The thread's body: every network namespace a process is in, once each
 * (setns moves only this thread, which ends after).
 */
static void *destroy_everywhere(void *arg)
{
	struct cookie_job *j = arg;
	static ino_t seen[4096];
	unsigned nseen = 0;
	struct dirent *e;
	DIR *d = opendir("/proc");

	if (!d) {
		destroy_here(j);
		return NULL;
	}
	while ((e = readdir(d)) && nseen < sizeof(seen) / sizeof(seen[0])) {
		char path[64];
		struct stat st;
		unsigned i;
		int fd;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		snprintf(path, sizeof(path), "/proc/%s/ns/net", e->d_name);
		if (stat(path, &st))
			continue;
		for (i = 0; i < nseen && seen[i] != st.st_ino; i++)
			;
		if (i < nseen)
			continue;
		seen[nseen++] = st.st_ino;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (!setns(fd, CLONE_NEWNET))
			destroy_here(j);
		close(fd);
	}
	closedir(d);
	return NULL;
}

int sockdiag_destroy_cookies(const uint64_t *ids, int n)
{
	struct cookie_job j = { .n = n };
	pthread_t th;
	int e;

	if (n <= 0)
		return 0;
	j.ids = malloc(n * sizeof(*ids));
	if (!j.ids)
		return -ENOMEM;
	memcpy(j.ids, ids, n * sizeof(*ids));
	qsort(j.ids, n, sizeof(*ids), cmp_u64);
	e = pthread_create(&th, NULL, destroy_everywhere, &j);
	if (!e)
		pthread_join(th, NULL);
	free(j.ids);
	return e ? -e : j.reset;
}
