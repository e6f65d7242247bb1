/* crypto.h - certificates, keys and CSRs as PEM text, DER bytes and the
 * plain structs below, so callers need no OpenSSL types.  OpenSSL types
 * stay inside the modules that work on them: crypto, tlsprobe
 * (handshakes), jws (signatures), sshkey (OpenSSH keys) and knownhosts
 * (digests); elsewhere OpenSSL is used only for RAND_bytes and
 * OPENSSL_cleanse. */
#ifndef CERTFLEET_CRYPTO_H
#define CERTFLEET_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certfleet/err.h"
#include "certfleet/playbook.h"

struct cf_certinfo {
	unsigned char sha256[32]; /* of the leaf's DER: the identity we compare */
	char sha256_hex[65];
	int64_t not_before; /* epoch seconds */
	int64_t not_after;
	char *subject;       /* one-line RFC 2253 */
	char *issuer;        /* one-line RFC 2253 */
	char *issuer_cn;     /* CN of the issuer or NULL */
	char serial_hex[80]; /* lower-case hex, no separators */
	char **names;        /* DNS SANs (and CN if no SANs) */
	size_t n_names;
	unsigned char *aki; /* authority key identifier or NULL */
	size_t aki_len;
	unsigned char *serial; /* serial DER content bytes (for ARI) */
	size_t serial_len;
};
void crypto_certinfo_free(struct cf_certinfo *ci); /* frees members */

/* Parse the first certificate of a PEM text. */
int crypto_certinfo_pem(const char *pem, size_t len, struct cf_certinfo *out,
                        cf_err_t *err);

/* A certificate bundle as certfleet stores and deploys it: normalized PEM
 * texts, each ending in a newline.  key is secret: crypto_bundle_free wipes. */
struct cf_bundle {
	char *cert;      /* leaf only */
	char *chain;     /* intermediates, may be "" */
	char *fullchain; /* cert + chain */
	char *privkey;   /* PEM private key, normalized to unencrypted PKCS#8
			    ("BEGIN PRIVATE KEY") whatever form was given */
};
void crypto_bundle_free(struct cf_bundle *b);

/* Build a bundle from PEM inputs.  cert_pem may hold the leaf followed by
 * the chain (fullchain); chain_pem (may be NULL) adds intermediates.
 * Checks, failing with CF_ERR_DATA and a message naming the input (see
 * crypto_bundle_from_pem_labeled to name files): every block is PEM and parses; the key matches the leaf;
 * the leaf is not expired at `now` (epoch) and not yet-invalid; if
 * n_domains > 0, the leaf's names cover every domain (wildcards per
 * RFC 6125: "*.example.com" covers "a.example.com" only). */
int crypto_bundle_from_pem(const char *cert_pem, const char *chain_pem,
                           const char *key_pem, char *const *domains,
                           size_t n_domains, int64_t now, struct cf_bundle *out,
                           struct cf_certinfo *info, cf_err_t *err);

/* Names of the inputs for error messages (typically the file names);
 * any member may be NULL.  Without labels, certificate messages carry no
 * prefix (callers prefix the file: "cert.pem: certificate expired on
 * 2026-01-01T00:00:00Z"), chain ones "chain: ", key ones "private key: ".
 * With labels: "/etc/c.pem: no PEM certificate found", "/etc/k.pem:
 * private key does not match the certificate in /etc/c.pem (CN=...)". */
struct cf_bundle_labels {
	const char *cert;
	const char *chain;
	const char *key;
};
/* crypto_bundle_from_pem with labelled messages.  Also: chain
 * certificates identical to the leaf or to each other are dropped; a
 * non-certificate PEM block (key, CSR) in cert_pem/chain_pem is an error;
 * encrypted keys are refused (never prompts).  info may be NULL. */
int crypto_bundle_from_pem_labeled(const char *cert_pem, const char *chain_pem,
                                   const char *key_pem,
                                   const struct cf_bundle_labels *labels,
                                   char *const *domains, size_t n_domains,
                                   int64_t now, struct cf_bundle *out,
                                   struct cf_certinfo *info, cf_err_t *err);

/* Fresh private key of the given type as PKCS#8 PEM (caller frees with
 * cf_free_secret(p, strlen(p))). */
int crypto_key_generate(cf_key_type_t type, char **pem_out, cf_err_t *err);
/* CSR (DER) for domains signed by key_pem; CN = domains[0], all in SAN. */
int crypto_csr_der(const char *key_pem, char *const *domains, size_t n,
                   unsigned char **der, size_t *der_len, cf_err_t *err);

/* SHA-256 of bytes. */
void crypto_sha256(const void *p, size_t n, unsigned char out[32]);

/* An OpenSSL ASN1_TIME as seconds since the epoch: 0, or -1 if absent or
 * malformed. */
struct asn1_string_st;
int crypto_asn1_time_epoch(const struct asn1_string_st *t, int64_t *out);

#endif
