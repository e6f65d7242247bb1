/* tlsprobe.c - fetch the certificates a node serves.
 *
 * The question asked is "which exact certificates does this node hand out
 * for this name right now, and would a client trust them", so the
 * handshake itself never fails on the chain (the caller compares the
 * leaf's SHA-256 and the chain with what it deployed, and the trust check
 * runs afterwards on the chain the handshake decoded, so every failure
 * can be named), never resumes a session (a resumed session would show
 * the certificate of an earlier handshake) and is bounded by the caller's
 * deadline at every step. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "certfleet/net.h"
#include "certfleet/crypto.h"
#include "certfleet/tlsprobe.h"
#include "certfleet/util.h"

struct tlsprobe_ctx {
	SSL_CTX *ssl;
	X509_STORE *trust; /* read-only after tlsprobe_ctx_new */
	char *ca_bundle;   /* for messages; NULL = system store */
};

static int
chain_ignored(X509_STORE_CTX *x, void *arg)
{
	(void)x;
	(void)arg;
	return 1;
}

int
tlsprobe_ctx_new(const char *ca_bundle, struct tlsprobe_ctx **out,
                 cf_err_t *err)
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
		cf_err_set(err, CF_ERR_INTERNAL,
		           "cannot create TLS context: %s", why);
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
	/* Loading the system store reads and parses ~150 roots: once per
	 * run, not per probe. */
	if ((c->trust = X509_STORE_new()) == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (ca_bundle != NULL) {
		if ((c->ca_bundle = strdup(ca_bundle)) == NULL) {
			cf_err_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
		if (X509_STORE_load_file(c->trust, ca_bundle) != 1) {
			ERR_error_string_n(ERR_get_error(), why, sizeof(why));
			cf_err_set(err, CF_ERR_CONFIG,
			           "verify.ca_bundle %s: no usable PEM "
			           "certificates: %s",
			           ca_bundle, why);
			goto out;
		}
	} else if (X509_STORE_set_default_paths(c->trust) != 1) {
		ERR_error_string_n(ERR_get_error(), why, sizeof(why));
		cf_err_set(err, CF_ERR_INTERNAL,
		           "cannot load the system trust store: %s", why);
		goto out;
	}
	/* what a TLS client checks: a server certificate, valid now */
	X509_STORE_set_purpose(c->trust, X509_PURPOSE_SSL_SERVER);
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
	X509_STORE_free(ctx->trust);
	free(ctx->ca_bundle);
	free(ctx);
}

/* SNI carries host names only (RFC 6066 3: "Literal IPv4 and IPv6
 * addresses are not permitted"). */
static int
is_ip_literal(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 ||
	       inet_pton(AF_INET6, s, buf) == 1;
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
	} else if (sslerr == SSL_ERROR_SYSCALL ||
	           sslerr == SSL_ERROR_ZERO_RETURN) {
		snprintf(buf, len, "connection closed by peer");
	} else {
		snprintf(buf, len, "SSL error %d", sslerr);
	}
	ERR_clear_error();
}

void
tlsprobe_result_free(struct tlsprobe_result *r)
{
	if (r == NULL)
		return;
	free(r->chain);
	r->chain = NULL;
	r->n_chain = 0;
}

static void
cert_name(X509 *x, bool issuer, char *buf, size_t len)
{
	X509_NAME *n =
	    issuer ? X509_get_issuer_name(x) : X509_get_subject_name(x);
	int i = X509_NAME_get_index_by_NID(n, NID_commonName, -1);
	ASN1_STRING *d;
	unsigned char *u = NULL;
	int ulen;

	buf[0] = '\0';
	if (i >= 0 &&
	    (d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i))) != NULL &&
	    (ulen = ASN1_STRING_to_UTF8(&u, d)) >= 0) {
		snprintf(buf, len, "%.*s", ulen, (const char *)u);
		OPENSSL_free(u);
		cf_sanitize(buf, buf, len);
		return;
	}
	X509_NAME_oneline(n, buf, (int)len);
	cf_sanitize(buf, buf, len);
}

static int
cert_id(X509 *x, struct tlsprobe_cert *out)
{
	unsigned char *der = NULL;
	int len = i2d_X509(x, &der);

	if (len <= 0)
		return -1;
	crypto_sha256(der, (size_t)len, out->sha256);
	OPENSSL_free(der);
	cert_name(x, false, out->name, sizeof(out->name));
	return 0;
}

/* Validate the served chain as a client would: leaf plus what the server
 * sent as untrusted intermediates, against the run's store, now. */
static void
check_trust(const struct tlsprobe_ctx *ctx, X509 *leaf, STACK_OF(X509) * sent,
            struct tlsprobe_result *res)
{
	X509_STORE_CTX *x = X509_STORE_CTX_new();
	STACK_OF(X509) * built;
	X509 *top;
	char anchor[128], where[160];
	int e;

	res->trusted = 0;
	if (x == NULL || X509_STORE_CTX_init(x, ctx->trust, leaf, sent) != 1) {
		snprintf(res->untrusted_why, sizeof(res->untrusted_why),
		         "cannot check trust (out of memory)");
		goto out;
	}
	if (X509_verify_cert(x) == 1) {
		res->trusted = 1;
		goto out;
	}
	e = X509_STORE_CTX_get_error(x);
	if (ctx->ca_bundle != NULL)
		snprintf(where, sizeof(where), "verify.ca_bundle %s",
		         ctx->ca_bundle);
	else
		snprintf(where, sizeof(where),
		         "the system trust store; a "
		         "private CA needs verify.ca_bundle");
	built = X509_STORE_CTX_get0_chain(x);
	top = built != NULL && sk_X509_num(built) > 0
	          ? sk_X509_value(built, sk_X509_num(built) - 1)
	          : leaf;
	switch (e) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
		cert_name(top, true, anchor, sizeof(anchor));
		snprintf(res->untrusted_why, sizeof(res->untrusted_why),
		         "chain ends at '%s', which is not a trusted root (%s)",
		         anchor, where);
		break;
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
		cert_name(top, false, anchor, sizeof(anchor));
		snprintf(res->untrusted_why, sizeof(res->untrusted_why),
		         "chain ends at '%s', which is not a trusted root (%s)",
		         anchor, where);
		break;
	default: {
		X509 *bad = X509_STORE_CTX_get_current_cert(x);

		cert_name(bad != NULL ? bad : leaf, false, anchor,
		          sizeof(anchor));
		snprintf(res->untrusted_why, sizeof(res->untrusted_why),
		         "chain does not validate at '%s': %s", anchor,
		         X509_verify_cert_error_string(e));
	}
	}
out:
	X509_STORE_CTX_free(x);
}

/* SSL_connect on the non-blocking socket (net_connect), waiting for the
 * network with the deadline whenever it needs it.  0, or -1 with err. */
static int
handshake(SSL *ssl, int fd, const char *host, unsigned port, int64_t deadline,
          cf_err_t *err)
{
	int64_t t0 = cf_now_ms();
	char why[256];
	int r, e, w, saved_errno;

	for (;;) {
		errno = 0;
		r = SSL_connect(ssl);
		if (r == 1)
			return 0;
		saved_errno = errno;
		e = SSL_get_error(ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			break;
		w = net_wait(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
		             deadline);
		if (w > 0)
			continue;
		if (w == 0)
			return cf_err_set(err, CF_ERR_TIMEOUT,
			                  "TLS handshake with %s:%u timed out "
			                  "after %lld ms",
			                  host, port,
			                  (long long)(cf_now_ms() - t0));
		return cf_err_set(err, CF_ERR_TLS,
		                  "TLS handshake with %s:%u: "
		                  "poll: %s",
		                  host, port, strerror(errno));
	}
	handshake_reason(e, saved_errno, why, sizeof(why));
	return cf_err_set(err, CF_ERR_TLS,
	                  "TLS handshake with %s:%u failed: %s", host, port,
	                  why);
}

/* What the handshake on ssl showed: the chain as sent (the leaf first:
 * on the client side the peer chain includes it, in the server's order,
 * exactly what a client receives), the leaf's notAfter from the
 * certificate the handshake already decoded (decoding the DER again costs
 * as much as the handshake's own key decoding), trust.  0, or -1 with
 * err. */
static int
served_chain(struct tlsprobe_ctx *ctx, SSL *ssl, const char *host,
             unsigned port, struct tlsprobe_result *res, cf_err_t *err)
{
	X509 *peer = SSL_get1_peer_certificate(ssl);
	STACK_OF(X509) *sent = SSL_get_peer_cert_chain(ssl);
	int i, n = sent != NULL ? sk_X509_num(sent) : 0, rc = -1;

	if (peer == NULL) {
		cf_err_set(err, CF_ERR_TLS,
		           "TLS server %s:%u sent no "
		           "certificate",
		           host, port);
		goto out;
	}
	if (n < 1 || X509_cmp(sk_X509_value(sent, 0), peer) != 0) {
		cf_err_set(err, CF_ERR_TLS,
		           "TLS server %s:%u sent no usable "
		           "certificate chain",
		           host, port);
		goto out;
	}
	if ((res->chain = calloc((size_t)n, sizeof(*res->chain))) == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++)
		if (cert_id(sk_X509_value(sent, i), &res->chain[i]) < 0) {
			cf_err_set(err, CF_ERR_TLS,
			           "certificate %d served by "
			           "%s:%u cannot be encoded",
			           i, host, port);
			goto out;
		}
	res->n_chain = (size_t)n;
	cf_hex(res->chain[0].sha256, 32, res->sha256_hex);
	if (crypto_asn1_time_epoch(X509_get0_notAfter(peer), &res->not_after) <
	    0) {
		cf_err_set(err, CF_ERR_TLS,
		           "certificate served by %s:%u has no "
		           "valid notAfter",
		           host, port);
		goto out;
	}
	check_trust(ctx, peer, sent, res);
	rc = 0;
out:
	X509_free(peer);
	return rc;
}

int
tlsprobe_fetch_ctx(struct tlsprobe_ctx *ctx, const char *host, unsigned port,
                   starttls_proto_t proto, const char *server_name,
                   int64_t deadline, struct tlsprobe_result *out, cf_err_t *err)
{
	struct tlsprobe_result res;
	SSL *ssl = NULL;
	char why[256];
	int fd = -1, rc = -1;

	memset(&res, 0, sizeof(res));
	/* The error queue is per thread; start clean so a failure reports
	 * this probe's cause, not a leftover. */
	ERR_clear_error();
	if (net_connect(host, port, deadline, &fd, err) < 0)
		goto out;
	/* the plaintext dialogue stops right before the server's first TLS
	 * byte: the handshake continues on the same connection */
	if (proto != STARTTLS_NONE &&
	    starttls_begin(fd, proto, NULL, deadline, err) < 0) {
		cf_err_prefix(err, "%s:%u: ", host, port);
		goto out;
	}
	ssl = SSL_new(ctx->ssl);
	if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
		handshake_reason(SSL_ERROR_SSL, 0, why, sizeof(why));
		cf_err_set(err, CF_ERR_INTERNAL, "TLS setup for %s:%u: %s",
		           host, port, why);
		goto out;
	}
	if (server_name != NULL && server_name[0] != '\0' &&
	    !is_ip_literal(server_name) &&
	    SSL_set_tlsext_host_name(ssl, server_name) != 1) {
		handshake_reason(SSL_ERROR_SSL, 0, why, sizeof(why));
		cf_err_set(err, CF_ERR_TLS,
		           "TLS to %s:%u: bad server name %s: %s", host, port,
		           server_name, why);
		goto out;
	}
	if (handshake(ssl, fd, host, port, deadline, err) < 0 ||
	    served_chain(ctx, ssl, host, port, &res, err) < 0)
		goto out;
	/* One non-blocking close_notify, no waiting for the peer's: the
	 * answer is in hand and a slow peer must not cost a worker. */
	(void)SSL_shutdown(ssl);
	*out = res;
	memset(&res, 0, sizeof(res));
	rc = 0;
out:
	tlsprobe_result_free(&res);
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	ERR_clear_error();
	return rc;
}

int
tlsprobe_pem_certs(const char *pem, struct tlsprobe_cert **out, size_t *n,
                   cf_err_t *err)
{
	struct tlsprobe_cert *v = NULL, *nv;
	size_t k = 0;
	BIO *b = NULL;
	X509 *x = NULL;
	int rc = -1;

	if (pem == NULL || pem[0] == '\0') {
		*out = NULL;
		*n = 0;
		return 0;
	}
	if ((b = BIO_new_mem_buf(pem, -1)) == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if ((nv = realloc(v, (k + 1) * sizeof(*v))) == NULL) {
			cf_err_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
		v = nv;
		if (cert_id(x, &v[k]) < 0) {
			cf_err_set(err, CF_ERR_DATA,
			           "chain certificate %zu "
			           "cannot be encoded",
			           k);
			goto out;
		}
		k++;
		X509_free(x);
		x = NULL;
	}
	*out = v;
	*n = k;
	v = NULL;
	rc = 0;
out:
	ERR_clear_error();
	X509_free(x);
	BIO_free(b);
	free(v);
	return rc;
}

static bool
cert_in(const struct tlsprobe_cert *c, const struct tlsprobe_cert *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(c->sha256, v[i].sha256, 32) == 0)
			return true;
	return false;
}

int
tlsprobe_chain_diff(const struct tlsprobe_cert *served, size_t n_served,
                    const struct tlsprobe_cert *want, size_t n_want, char *why,
                    size_t whylen)
{
	const struct tlsprobe_cert *extra = n_served > 1 ? served + 1 : NULL;
	size_t n_extra = n_served > 1 ? n_served - 1 : 0;

	/* the missing intermediate first: it is the outage (clients cannot
	 * build a path); a stale extra is only waste or a wrong path */
	for (size_t i = 0; i < n_want; i++) {
		if (cert_in(&want[i], extra, n_extra))
			continue;
		if (n_extra == 0)
			snprintf(why, whylen,
			         "sends the leaf without "
			         "intermediate '%s'",
			         want[i].name);
		else
			snprintf(why, whylen, "does not send intermediate '%s'",
			         want[i].name);
		return -1;
	}
	for (size_t i = 0; i < n_extra; i++) {
		if (cert_in(&extra[i], want, n_want))
			continue;
		snprintf(why, whylen, "sends a stale extra certificate '%s'",
		         extra[i].name);
		return -1;
	}
	if (n_extra != n_want) {
		snprintf(why, whylen, "sends an intermediate more than once");
		return -1;
	}
	for (size_t i = 0; i < n_want; i++)
		if (memcmp(extra[i].sha256, want[i].sha256, 32) != 0) {
			snprintf(why, whylen,
			         "sends intermediates in the wrong order");
			return -1;
		}
	return 0;
}
