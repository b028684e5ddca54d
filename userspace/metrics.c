// SPDX-License-Identifier: GPL-2.0-only
/*
 * A minimal HTTP/1.0 responder for the operations endpoint, polled from
 * the agent's loop (which wakes every few milliseconds anyway): no thread,
 * no shared state with the pipeline. Each connection gets one response and
 * is closed. A client that sends nothing is dropped after a short wait, so
 * a stuck scraper costs the loop at most that.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "metrics.h"

#define REQ_WAIT_MS  50
#define MAX_PER_POLL 8

struct metrics {
	int fd;
};

/* Split "host:port" / "[v6]:port" / ":port" into getaddrinfo's arguments. */
static int split_addr(const char *addr, char *host, size_t hlen, const char **port)
{
	const char *colon = strrchr(addr, ':');
	size_t n;

	if (!colon || !colon[1])
		return -1;
	*port = colon + 1;
	n = colon - addr;
	if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
		addr++;
		n -= 2;
	}
	if (n >= hlen)
		return -1;
	memcpy(host, addr, n);
	host[n] = 0;
	return 0;
}

static struct addrinfo *resolve(const char *addr, bool passive, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = passive ? AI_PASSIVE : 0 };
	struct addrinfo *ai = NULL;
	const char *port;
	char host[256];
	int e;

	if (split_addr(addr, host, sizeof(host), &port)) {
		snprintf(err, errlen, "%s: expected HOST:PORT", addr);
		return NULL;
	}
	e = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (e) {
		snprintf(err, errlen, "%s: %s", addr, gai_strerror(e));
		return NULL;
	}
	return ai;
}

struct metrics *metrics_open(const char *addr, char *err, size_t errlen)
{
	struct addrinfo *ai = resolve(addr, true, err, errlen);
	struct metrics *m;
	int one = 1, fd;

	if (!ai)
		return NULL;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 16)) {
		snprintf(err, errlen, "--metrics %s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return NULL;
	}
	freeaddrinfo(ai);
	m = calloc(1, sizeof(*m));
	if (!m) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->fd = fd;
	return m;
}

void metrics_close(struct metrics *m)
{
	if (!m)
		return;
	close(m->fd);
	free(m);
}

static void respond(int fd, int code, const char *type, const char *body, size_t len)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 code,
			 code == 200 ? "OK" :
			 code == 503 ? "Service Unavailable" :
				       "Not Found",
			 type, len);

	/* best effort: a scraper that went away is its own problem */
	if (write(fd, hdr, n) == n && len)
		(void)!write(fd, body, len);
}

/* One request on fd: read its first line, answer, done. */
static void serve(int fd, const struct metrics_src *src)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char req[1024], path[256] = "", *body = NULL;
	size_t blen = 0;
	ssize_t n;
	FILE *out;

	if (poll(&pfd, 1, REQ_WAIT_MS) <= 0)
		return;
	n = read(fd, req, sizeof(req) - 1);
	if (n <= 0)
		return;
	req[n] = 0;
	if (sscanf(req, "GET %255s", path) != 1) {
		respond(fd, 404, "text/plain", "GET only\n", 9);
		return;
	}
	if (!strcmp(path, "/healthz")) {
		respond(fd, 200, "text/plain", "ok\n", 3);
		return;
	}
	if (!strcmp(path, "/readyz")) {
		if (src->ready)
			respond(fd, 200, "text/plain", "ready\n", 6);
		else
			respond(fd, 503, "text/plain", "starting\n", 9);
		return;
	}
	if (strcmp(path, "/metrics") && strcmp(path, "/status")) {
		respond(fd, 404, "text/plain", "not found\n", 10);
		return;
	}
	out = open_memstream(&body, &blen);
	if (!out)
		return;
	if (!strcmp(path, "/metrics"))
		src->prometheus(src->ctx, out);
	else
		src->status(src->ctx, out);
	fclose(out);
	respond(fd, 200,
		!strcmp(path, "/metrics") ? "text/plain; version=0.0.4" : "application/json", body,
		blen);
	free(body);
}

void metrics_poll(struct metrics *m, const struct metrics_src *src)
{
	if (!m)
		return;
	for (int i = 0; i < MAX_PER_POLL; i++) {
		int fd = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			return;
		serve(fd, src);
		close(fd);
	}
}

char *metrics_get(const char *addr, const char *path, char *err, size_t errlen)
{
	struct addrinfo *ai = resolve(addr, false, err, errlen);
	char *resp = NULL, *body;
	size_t len = 0, cap = 0;
	int fd;

	if (!ai)
		return NULL;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen)) {
		snprintf(err, errlen,
			 "cannot reach the agent at %s: %s (is it running with --metrics?)", addr,
			 strerror(errno));
		goto fail;
	}
	dprintf(fd, "GET %s HTTP/1.0\r\nHost: dbwarden\r\n\r\n", path);
	for (;;) {
		ssize_t n;

		if (len + 4096 + 1 > cap) {
			char *nr = realloc(resp, cap = cap ? cap * 2 : 65536);

			if (!nr)
				goto fail;
			resp = nr;
		}
		n = read(fd, resp + len, cap - len - 1);
		if (n <= 0)
			break;
		len += n;
	}
	if (!resp)
		goto fail;
	resp[len] = 0;
	body = strstr(resp, "\r\n\r\n");
	if (strncmp(resp, "HTTP/1.0 200", 12) || !body) {
		snprintf(err, errlen, "the agent at %s answered: %.60s", addr, resp);
		goto fail;
	}
	memmove(resp, body + 4, strlen(body + 4) + 1);
	close(fd);
	freeaddrinfo(ai);
	return resp;
fail:
	free(resp);
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return NULL;
}
