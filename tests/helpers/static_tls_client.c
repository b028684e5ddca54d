// SPDX-License-Identifier: GPL-2.0-only
/*
 * A PostgreSQL client with OpenSSL linked in statically (the Makefile
 * builds it with libssl.a/libcrypto.a): no libssl.so in its maps, only the
 * SSL functions in its own executable. The test checks that the agent finds
 * and probes them. Speaks just enough of the protocol: SSLRequest, TLS,
 * StartupMessage (trust auth), one simple Query per argument, Terminate.
 *
 *   static_tls_client HOST PORT USER SQL...
 *
 * Prints one line per Query: "ok TAG" or "error MESSAGE".
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static int read_full(SSL *s, uint8_t *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		int r = SSL_read(s, buf + got, n - got);

		if (r <= 0)
			return -1;
		got += r;
	}
	return 0;
}

/* Read backend messages up to ReadyForQuery; report CommandComplete / ErrorResponse. */
static int until_ready(SSL *s, int report)
{
	static uint8_t body[1 << 16];
	uint8_t hdr[5];

	for (;;) {
		uint32_t len;

		if (read_full(s, hdr, 5))
			return -1;
		len = (uint32_t)hdr[1] << 24 | hdr[2] << 16 | hdr[3] << 8 | hdr[4];
		if (len < 4 || len - 4 > sizeof(body) || read_full(s, body, len - 4))
			return -1;
		if (hdr[0] == 'Z')
			return 0;
		if (!report)
			continue;
		if (hdr[0] == 'C')
			printf("ok %s\n", (char *)body);
		if (hdr[0] == 'E') {
			/* fields: type byte + NUL-terminated string; 'M' is the message */
			for (uint32_t i = 0; i < len - 4 && body[i];) {
				const char *f = (const char *)body + i + 1;

				if (body[i] == 'M')
					printf("error %s\n", f);
				i += 2 + strlen(f);
			}
		}
	}
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	uint8_t req[8], startup[256], answer;
	size_t n = 8;
	SSL_CTX *ctx;
	SSL *s;
	int fd;

	if (argc < 5 || getaddrinfo(argv[1], argv[2], &hints, &ai)) {
		fprintf(stderr, "usage: static_tls_client HOST PORT USER SQL...\n");
		return 2;
	}
	if (getenv("STATIC_TLS_GO_FILE")) {
		/* the test says when: after the agent has probed this process's image */
		for (int i = 0; i < 600 && access(getenv("STATIC_TLS_GO_FILE"), F_OK); i++)
			usleep(50 * 1000);
	}
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen)) {
		perror("connect");
		return 1;
	}
	put32(req, 8);
	put32(req + 4, 80877103); /* SSLRequest */
	if (write(fd, req, 8) != 8 || read(fd, &answer, 1) != 1 || answer != 'S') {
		fprintf(stderr, "server refused TLS\n");
		return 1;
	}
	ctx = SSL_CTX_new(TLS_client_method());
	s = SSL_new(ctx);
	SSL_set_fd(s, fd);
	if (SSL_connect(s) != 1) {
		fprintf(stderr, "TLS handshake failed\n");
		return 1;
	}
	put32(startup + 4, 196608);
	n += snprintf((char *)startup + n, sizeof(startup) - n - 1, "user%c%s%c", 0, argv[3], 0);
	startup[n++] = 0;
	put32(startup, n);
	if (SSL_write(s, startup, n) != (int)n || until_ready(s, 0))
		return 1;
	for (int i = 4; i < argc; i++) {
		size_t qlen = strlen(argv[i]) + 1;
		uint8_t *q = malloc(5 + qlen);

		q[0] = 'Q';
		put32(q + 1, 4 + qlen);
		memcpy(q + 5, argv[i], qlen);
		if (SSL_write(s, q, 5 + qlen) != (int)(5 + qlen) || until_ready(s, 1))
			return 1;
		free(q);
	}
	SSL_write(s, "X\0\0\0\4", 5);
	SSL_shutdown(s);
	SSL_free(s);
	SSL_CTX_free(ctx);
	close(fd);
	freeaddrinfo(ai);
	return 0;
}
