/* tlsprobe.h - what a node actually serves: one fresh TLS handshake with
 * SNI (after a STARTTLS dialogue on a mail port), bounded by a deadline,
 * reporting the leaf, the whole chain as sent and whether that chain
 * validates to a trust anchor.  The handshake itself never fails on the
 * chain: the caller compares the exact leaf and chain and reports what is
 * wrong in words.  The node's own address is dialled, never DNS for
 * server_name.
 *
 * The process must ignore SIGPIPE (main does): OpenSSL writes to the
 * socket with write(2), and a peer that resets mid-handshake would
 * otherwise kill the process. */
#ifndef CERTFLEET_TLSPROBE_H
#define CERTFLEET_TLSPROBE_H

#include <stddef.h>
#include <stdint.h>

#include "certfleet/err.h"
#include "certfleet/starttls.h"

/* A certificate as sent: its identity and a name to show people. */
struct tlsprobe_cert {
	unsigned char sha256[32]; /* of the DER */
	char name[128];           /* subject CN, else the one-line subject */
};

/* What one handshake showed.  chain[0] is the leaf; the rest is what the
 * server sent after it, in its order. */
struct tlsprobe_result {
	char sha256_hex[65]; /* of the leaf's DER */
	int64_t not_after;   /* the leaf's notAfter (epoch seconds) */
	struct tlsprobe_cert *chain;
	size_t n_chain;
	int trusted;             /* 1: the served chain validates now to an
				    anchor of the ctx's store */
	char untrusted_why[448]; /* when !trusted, in words */
};
void tlsprobe_result_free(struct tlsprobe_result *r); /* members only */

/* A client context, shared by every probe of a run: building one costs
 * about as much CPU as a sixth of a probe (SSL_CTX_new + free), measured
 * with callgrind against a local nginx.  After tlsprobe_ctx_new returns,
 * tlsprobe_fetch_ctx may be called on the same ctx from any number of
 * threads at once; the ctx is never modified.  Sessions are never cached
 * or resumed, so every probe is a full handshake that shows the
 * certificate served now. */
struct tlsprobe_ctx;
/* ca_bundle: PEM file of trust anchors, or NULL for the system store
 * (OpenSSL's default paths).  The X509_STORE is built here, once, and
 * only read by the probes (OpenSSL locks its lookups). */
int tlsprobe_ctx_new(const char *ca_bundle, struct tlsprobe_ctx **out,
                     cf_err_t *err);
void tlsprobe_ctx_free(struct tlsprobe_ctx *ctx);

/* Connect to host:port, speak proto's STARTTLS dialogue first (none for
 * STARTTLS_NONE), then handshake sending SNI server_name (none if NULL,
 * empty or an IP literal); on success *out (caller frees with
 * tlsprobe_result_free) describes the served leaf and chain, read from
 * what the handshake decoded (no second decoding), and whether it is
 * trusted.  Errors: CF_ERR_TIMEOUT, CF_ERR_REFUSED, CF_ERR_UNREACHABLE,
 * CF_ERR_TLS (STARTTLS refused, handshake failed or no certificate).
 * deadline is absolute cf_now_ms(). */
int tlsprobe_fetch_ctx(struct tlsprobe_ctx *ctx, const char *host,
                       unsigned port, starttls_proto_t proto,
                       const char *server_name, int64_t deadline,
                       struct tlsprobe_result *out, cf_err_t *err);

/* Every certificate of a PEM text, in order (caller frees *out).  The
 * expected intermediates, to compare with a served chain. */
int tlsprobe_pem_certs(const char *pem, struct tlsprobe_cert **out, size_t *n,
                       cf_err_t *err);

/* Compare the certificates a server sent after the leaf (served[1..])
 * with the expected intermediates, in order.  0 when identical; else -1
 * and why (e.g. "sends the leaf without intermediate 'X'", "sends a stale
 * extra certificate 'Y'", "sends intermediates in the wrong order"). */
int tlsprobe_chain_diff(const struct tlsprobe_cert *served, size_t n_served,
                        const struct tlsprobe_cert *want, size_t n_want,
                        char *why, size_t whylen);

#endif
