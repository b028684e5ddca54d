// SPDX-License-Identifier: GPL-2.0-only
/*
 * What a TLS probe costs the process it sits in: a client and a server SSL
 * in one process, joined by memory BIOs (no socket, no network), exchange N
 * small records; prints the time per SSL_write + SSL_read pair. Run with and
 * without the agent (and with DBWARDEN_TLS_PROBE=exported) to compare the
 * probe sites. Used by bench/run.py.
 *
 *   tls_loop N
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* A throwaway key and self-signed certificate for the server side. */
static int make_cert(SSL_CTX *ctx)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *crt = X509_new();
	int ok;

	if (!key || !crt)
		return -1;
	X509_set_version(crt, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(crt), 1);
	X509_gmtime_adj(X509_getm_notBefore(crt), 0);
	X509_gmtime_adj(X509_getm_notAfter(crt), 3600);
	X509_set_pubkey(crt, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(crt), "CN", MBSTRING_ASC,
				   (const unsigned char *)"tls_loop", -1, -1, 0);
	X509_set_issuer_name(crt, X509_get_subject_name(crt));
	ok = X509_sign(crt, key, EVP_sha256()) > 0 && SSL_CTX_use_certificate(ctx, crt) == 1 &&
	     SSL_CTX_use_PrivateKey(ctx, key) == 1;
	X509_free(crt);
	EVP_PKEY_free(key);
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	BIO *c2s = BIO_new(BIO_s_mem()), *s2c = BIO_new(BIO_s_mem());
	char buf[256], msg[64] = "SELECT abalance FROM pgbench_accounts WHERE aid = 1;";
	struct timespec t0, t1;
	SSL *cli, *srv;

	if (n <= 0 || !sctx || !cctx || !c2s || !s2c || make_cert(sctx)) {
		fprintf(stderr, "tls_loop: setup failed\n");
		return 1;
	}
	cli = SSL_new(cctx);
	srv = SSL_new(sctx);
	/* each BIO is shared by the two ends: one reads what the other writes */
	BIO_up_ref(c2s);
	BIO_up_ref(s2c);
	SSL_set_bio(cli, s2c, c2s);
	SSL_set_bio(srv, c2s, s2c);
	SSL_set_connect_state(cli);
	SSL_set_accept_state(srv);
	for (int i = 0; i < 20 && (!SSL_is_init_finished(cli) || !SSL_is_init_finished(srv)); i++) {
		SSL_do_handshake(cli);
		SSL_do_handshake(srv);
	}
	if (!SSL_is_init_finished(cli) || !SSL_is_init_finished(srv)) {
		fprintf(stderr, "tls_loop: handshake failed\n");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++) {
		if (SSL_write(cli, msg, sizeof(msg)) != sizeof(msg) ||
		    SSL_read(srv, buf, sizeof(buf)) != sizeof(msg)) {
			fprintf(stderr, "tls_loop: transfer failed at %ld\n", i);
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("ns_per_pair %.0f\n",
	       ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / (double)n);
	SSL_free(cli);
	SSL_free(srv);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	return 0;
}
