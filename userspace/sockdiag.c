// SPDX-License-Identifier: GPL-2.0-only
/*
 * Reset one TCP connection from outside its process: sock_diag's
 * SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY). The socket is named by its
 * 4-tuple and its cookie, so a reused 4-tuple is never hit by mistake. The
 * application sees ECONNABORTED on its next call: a client is never left
 * waiting on a connection the guard could not answer in-protocol.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
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
