/* starttls_probe.c - the STARTTLS client of t-starttls-real, built from
 * certfleet's own modules: net_connect, starttls_begin, then a TLS
 * handshake on the same socket; prints the SHA-256 (hex) of the leaf the
 * server sent.  Not part of certfleet's CLI: the next step of issue #12
 * wires starttls_begin into tlsprobe; until then this is how the module
 * meets real postfix and dovecot.
 *
 *     starttls_probe HOST PORT smtp|imap|pop3|none SNI [TIMEOUT_MS]
 *
 * Exit 0 with the hash on stdout, or 1 with "starttls_probe: <reason>" on
 * stderr (the cf_err_t message, as certfleet would report it). */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "certfleet/net.h"
#include "certfleet/starttls.h"
#include "certfleet/util.h"

static int
handshake(int fd, const char *sni, int64_t deadline, char *hex, size_t hexlen,
          cf_err_t *err)
{
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	X509 *peer = NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0, i;
	int rc = -1, r, e, w;

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1) {
		cf_err_set(err, CF_ERR_INTERNAL, "TLS setup failed");
		goto out;
	}
	SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	if (sni[0] != '\0')
		SSL_set_tlsext_host_name(ssl, sni);
	for (;;) {
		r = SSL_connect(ssl);
		if (r == 1)
			break;
		e = SSL_get_error(ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			char why[256] = "connection closed";
			unsigned long oe = ERR_get_error();

			if (oe != 0)
				ERR_error_string_n(oe, why, sizeof(why));
			cf_err_set(err, CF_ERR_TLS, "TLS handshake failed: %s", why);
			goto out;
		}
		w = net_wait(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
		             deadline);
		if (w <= 0) {
			cf_err_set(err, CF_ERR_TIMEOUT, "TLS handshake timed out");
			goto out;
		}
	}
	peer = SSL_get1_peer_certificate(ssl);
	if (peer == NULL || X509_digest(peer, EVP_sha256(), md, &mdlen) != 1) {
		cf_err_set(err, CF_ERR_TLS, "no certificate");
		goto out;
	}
	for (i = 0; i < mdlen && 2 * i + 2 < hexlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	rc = 0;
out:
	X509_free(peer);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return rc;
}

int
main(int argc, char **argv)
{
	starttls_proto_t proto = STARTTLS_NONE;
	cf_err_t err = {0};
	char hex[2 * EVP_MAX_MD_SIZE + 1] = "";
	int64_t deadline;
	long port, ms = 10000;
	int fd = -1;

	if (argc < 5 || argc > 6) {
		fprintf(stderr, "usage: starttls_probe HOST PORT smtp|imap|pop3|none "
		                "SNI [TIMEOUT_MS]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	port = strtol(argv[2], NULL, 10);
	if (argc == 6)
		ms = strtol(argv[5], NULL, 10);
	if (strcmp(argv[3], "none") != 0 &&
	    starttls_proto_parse(argv[3], &proto) < 0) {
		fprintf(stderr, "starttls_probe: unknown protocol %s\n", argv[3]);
		return 2;
	}
	deadline = cf_now_ms() + ms;
	if (net_connect(argv[1], (unsigned)port, deadline, &fd, &err) < 0 ||
	    (proto != STARTTLS_NONE &&
	     starttls_begin(fd, proto, "probe.certfleet.test", deadline, &err) < 0) ||
	    handshake(fd, argv[4], deadline, hex, sizeof(hex), &err) < 0) {
		fprintf(stderr, "starttls_probe: %s\n", err.msg);
		if (fd >= 0)
			close(fd);
		return 1;
	}
	close(fd);
	printf("%s\n", hex);
	return 0;
}
