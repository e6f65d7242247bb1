/* tlsprobe.c - fetch the leaf certificate a node serves.
 *
 * The question asked is "which exact certificate does this node hand out
 * for this name right now", so the handshake verifies nothing (the caller
 * compares the leaf's SHA-256 with what it deployed), never resumes a
 * session (a resumed session would show the certificate of an earlier
 * handshake) and is bounded by the caller's deadline at every step. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "certfleet/net.h"
#include "certfleet/crypto.h"
#include "certfleet/tlsprobe.h"
#include "certfleet/util.h"

struct tlsprobe_ctx {
	SSL_CTX *ssl;
};

static int
chain_ignored(X509_STORE_CTX *x, void *arg)
{
	(void)x;
	(void)arg;
	return 1;
}

int
tlsprobe_ctx_new(struct tlsprobe_ctx **out, cf_err_t *err)
{
	struct tlsprobe_ctx *c = NULL;
	char why[256];
	int rc = -1;

	ERR_clear_error();
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	c->ssl = SSL_CTX_new(TLS_client_method());
	if (c->ssl == NULL ||
	    SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION) != 1) {
		ERR_error_string_n(ERR_get_error(), why, sizeof(why));
		cf_err_set(err, CF_ERR_INTERNAL, "cannot create TLS context: %s",
		           why);
		goto out;
	}
	/* We compare the exact leaf ourselves; chain validation would only
	 * turn "serves the wrong certificate" into a vaguer error. */
	SSL_CTX_set_verify(c->ssl, SSL_VERIFY_NONE, NULL);
	/* ...and OpenSSL builds and checks the chain even under
	 * SSL_VERIFY_NONE, only to ignore the result: skip that work. */
	SSL_CTX_set_cert_verify_callback(c->ssl, chain_ignored, NULL);
	/* Observing is all we do and nothing secret is sent, so do not let
	 * the system security level refuse a weak but deployed key. */
	SSL_CTX_set_security_level(c->ssl, 0);
	SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(c->ssl, SSL_OP_NO_TICKET);
	*out = c;
	c = NULL;
	rc = 0;
out:
	tlsprobe_ctx_free(c);
	ERR_clear_error();
	return rc;
}

void
tlsprobe_ctx_free(struct tlsprobe_ctx *ctx)
{
	if (ctx == NULL)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}

/* SNI carries host names only (RFC 6066 3: "Literal IPv4 and IPv6
 * addresses are not permitted"). */
static int
is_ip_literal(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Why the handshake failed, in words: the OpenSSL reason if there is
 * one, else the socket's story. */
static void
handshake_reason(int sslerr, int saved_errno, char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	const char *r;

	if (e != 0) {
		r = ERR_reason_error_string(e);
		if (r != NULL)
			snprintf(buf, len, "%s", r);
		else
			ERR_error_string_n(e, buf, len);
	} else if (sslerr == SSL_ERROR_SYSCALL && saved_errno != 0) {
		snprintf(buf, len, "%s", strerror(saved_errno));
	} else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN) {
		snprintf(buf, len, "connection closed by peer");
	} else {
		snprintf(buf, len, "SSL error %d", sslerr);
	}
	ERR_clear_error();
}

int
tlsprobe_fetch_ctx(struct tlsprobe_ctx *ctx, const char *host, unsigned port,
                   const char *server_name, int64_t deadline,
                   unsigned char **der, size_t *der_len, int64_t *not_after,
                   cf_err_t *err)
{
	int64_t t0 = cf_now_ms();
	SSL *ssl = NULL;
	X509 *peer = NULL;
	unsigned char *buf = NULL, *p;
	char why[256];
	int fd = -1, rc = -1, r, e, w, saved_errno, len;
	short ev;

	/* The error queue is per thread; start clean so a failure reports
	 * this probe's cause, not a leftover. */
	ERR_clear_error();
	if (net_connect(host, port, deadline, &fd, err) < 0)
		goto out;
	ssl = SSL_new(ctx->ssl);
	if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
		handshake_reason(SSL_ERROR_SSL, 0, why, sizeof(why));
		cf_err_set(err, CF_ERR_INTERNAL, "TLS setup for %s:%u: %s", host,
		           port, why);
		goto out;
	}
	if (server_name != NULL && server_name[0] != '\0' &&
	    !is_ip_literal(server_name) &&
	    SSL_set_tlsext_host_name(ssl, server_name) != 1) {
		handshake_reason(SSL_ERROR_SSL, 0, why, sizeof(why));
		cf_err_set(err, CF_ERR_TLS, "TLS to %s:%u: bad server name %s: %s",
		           host, port, server_name, why);
		goto out;
	}

	/* The socket is non-blocking (net_connect), so SSL_connect returns
	 * whenever it needs the network and we wait with the deadline. */
	for (;;) {
		errno = 0;
		r = SSL_connect(ssl);
		if (r == 1)
			break;
		saved_errno = errno;
		e = SSL_get_error(ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
			w = net_wait(fd, ev, deadline);
			if (w > 0)
				continue;
			if (w == 0) {
				cf_err_set(err, CF_ERR_TIMEOUT,
				           "TLS handshake with %s:%u timed out after "
				           "%lld ms", host, port,
				           (long long)(cf_now_ms() - t0));
			} else {
				cf_err_set(err, CF_ERR_TLS,
				           "TLS handshake with %s:%u: poll: %s", host,
				           port, strerror(errno));
			}
			goto out;
		}
		handshake_reason(e, saved_errno, why, sizeof(why));
		cf_err_set(err, CF_ERR_TLS, "TLS handshake with %s:%u failed: %s",
		           host, port, why);
		goto out;
	}

	peer = SSL_get1_peer_certificate(ssl);
	if (peer == NULL) {
		cf_err_set(err, CF_ERR_TLS, "TLS server %s:%u sent no certificate",
		           host, port);
		goto out;
	}
	len = i2d_X509(peer, NULL);
	if (len <= 0) {
		cf_err_set(err, CF_ERR_TLS,
		           "certificate served by %s:%u cannot be encoded", host,
		           port);
		goto out;
	}
	buf = malloc((size_t)len);
	if (buf == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	p = buf;
	if (i2d_X509(peer, &p) != len) {
		cf_err_set(err, CF_ERR_TLS,
		           "certificate served by %s:%u cannot be encoded", host,
		           port);
		goto out;
	}
	/* from the certificate the handshake already decoded: decoding the
	 * DER again costs as much as the handshake's own key decoding */
	if (not_after != NULL &&
	    crypto_asn1_time_epoch(X509_get0_notAfter(peer), not_after) < 0) {
		cf_err_set(err, CF_ERR_TLS,
		           "certificate served by %s:%u has no valid notAfter",
		           host, port);
		goto out;
	}
	/* One non-blocking close_notify, no waiting for the peer's: the
	 * answer is in hand and a slow peer must not cost a worker. */
	(void)SSL_shutdown(ssl);
	*der = buf;
	*der_len = (size_t)len;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	X509_free(peer);
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	ERR_clear_error();
	return rc;
}
