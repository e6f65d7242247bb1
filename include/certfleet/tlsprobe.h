/* tlsprobe.h - what a node actually serves: one fresh TLS handshake with
 * SNI, no chain validation (we compare the exact leaf), bounded by a
 * deadline.  The node's own address is dialled, never DNS for server_name.
 *
 * The process must ignore SIGPIPE (main does): OpenSSL writes to the
 * socket with write(2), and a peer that resets mid-handshake would
 * otherwise kill the process. */
#ifndef CERTFLEET_TLSPROBE_H
#define CERTFLEET_TLSPROBE_H

#include <stddef.h>
#include <stdint.h>

#include "certfleet/err.h"

/* A client context, shared by every probe of a run: building one costs
 * about as much CPU as a sixth of a probe (SSL_CTX_new + free), measured
 * with callgrind against a local nginx.  After tlsprobe_ctx_new returns,
 * tlsprobe_fetch_ctx may be called on the same ctx from any number of
 * threads at once; the ctx is never modified.  Sessions are never cached
 * or resumed, so every probe is a full handshake that shows the
 * certificate served now. */
struct tlsprobe_ctx;
int tlsprobe_ctx_new(struct tlsprobe_ctx **out, cf_err_t *err);
void tlsprobe_ctx_free(struct tlsprobe_ctx *ctx);

/* Handshake to host:port sending SNI server_name (none if NULL, empty or
 * an IP literal); on success *der (caller frees) holds the served leaf
 * certificate and *not_after (not_after may be NULL) its notAfter, read
 * from the certificate the handshake decoded (no second decoding of the
 * DER).  Errors: CF_ERR_TIMEOUT, CF_ERR_REFUSED, CF_ERR_UNREACHABLE,
 * CF_ERR_TLS (handshake failed or no certificate).  deadline is absolute
 * cf_now_ms(). */
int tlsprobe_fetch_ctx(struct tlsprobe_ctx *ctx, const char *host,
                       unsigned port, const char *server_name,
                       int64_t deadline, unsigned char **der,
                       size_t *der_len, int64_t *not_after, cf_err_t *err);

#endif
