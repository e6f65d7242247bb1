/* jws.h - JSON Web Signatures as ACME uses them (RFC 8555 section 6.2).
 *
 * The only place that touches the JOSE library (latchset jose on OpenSSL):
 * acme.c sees an opaque key and JSON text.  Output is the flattened JSON
 * serialization {"protected":..,"payload":..,"signature":..}. */
#ifndef CERTFLEET_JWS_H
#define CERTFLEET_JWS_H

#include <stddef.h>

#include "certfleet/err.h"

typedef struct cf_jws_key cf_jws_key_t;

/* Load an account key from PEM text (PKCS#8 or traditional; P-256, P-384
 * or RSA >= 2048).  `what` names the key in errors (its path).
 * CF_ERR_DATA if the PEM does not parse or the key type is unsupported. */
int jws_key_load(const char *pem, size_t len, const char *what,
                 cf_jws_key_t **out, cf_err_t *err);
/* Wipes the private parts; NULL is fine. */
void jws_key_free(cf_jws_key_t *k);

/* RFC 7638 SHA-256 thumbprint, base64url; caller frees. NULL on ENOMEM. */
char *jws_thumbprint(const cf_jws_key_t *k, cf_err_t *err);

/* Sign payload (JSON text; NULL = "" for POST-as-GET) for url.
 * kid NULL: embed the public JWK (newAccount, revocation by account key
 * lookup); else "kid" = account URL.  nonce is required.
 * *out: JSON text, caller frees. */
int jws_sign(const cf_jws_key_t *k, const char *kid, const char *nonce,
             const char *url, const char *payload, char **out, cf_err_t *err);

/* External Account Binding (RFC 8555 section 7.3.4): an HS256 JWS over the
 * account's public JWK with {"alg":"HS256","kid":eab_kid,"url":url}.
 * hmac_key_b64url as the CA gave it.  *out: JSON text, caller frees.
 * CF_ERR_CONFIG if the HMAC key is not base64url or shorter than 32 bytes
 * (RFC 7518 section 3.2). */
int jws_eab(const cf_jws_key_t *account, const char *eab_kid,
            const char *hmac_key_b64url, const char *url, char **out,
            cf_err_t *err);

#endif
