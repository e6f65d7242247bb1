/* knownhosts.h - OpenSSH known_hosts parsing and host key matching, kept
 * apart from the libssh2 session code so it can be unit tested and fuzzed
 * without a server.  Private to the ssh module (ssh.c is its one user).
 *
 * Semantics follow OpenSSH (hostfile.c, match.c):
 *  - the name looked up is "host" for port 22 and "[host]:port" otherwise,
 *    lower-cased; there is no fallback from "[host]:port" to "host";
 *  - host fields are comma-separated patterns with * and ?, a leading '!'
 *    negates (a line whose negated pattern matches never applies), or one
 *    hashed name "|1|base64(salt)|base64(HMAC-SHA1(salt, name))";
 *  - "@cert-authority" lines are skipped (certificate host keys are not
 *    used: libssh2 1.10 cannot verify them);
 *  - "@revoked" keys are refused for EVERY host, whatever the line's host
 *    field says (stricter than OpenSSH, which applies the host patterns:
 *    a revoked key is compromised everywhere);
 *  - malformed lines are skipped, as ssh(1) does, never fatal.
 * A parsed file is immutable and safe to share between threads. */
#ifndef CERTFLEET_KNOWNHOSTS_H
#define CERTFLEET_KNOWNHOSTS_H

#include <stdbool.h>
#include <stddef.h>

#include "certfleet/err.h"

typedef struct cf_knownhosts cf_knownhosts_t;
/* The entries that apply to one host:port, found in one pass. */
typedef struct cf_knownhosts_hits cf_knownhosts_hits_t;

typedef enum {
	KNOWNHOSTS_MATCH = 0, /* an entry for this host has exactly this key */
	KNOWNHOSTS_NOTFOUND,  /* no entry of this key type for this host */
	KNOWNHOSTS_MISMATCH,  /* entries of this type exist, none is this key */
	KNOWNHOSTS_REVOKED    /* the key is listed in an @revoked line */
} cf_knownhosts_result_t;

/* "SHA256:" + 43 base64 characters + NUL, as ssh-keygen -l prints it. */
#define KNOWNHOSTS_FP_LEN 51

/* Parse known_hosts text (need not be NUL-terminated).  Fails only on
 * CF_ERR_NOMEM / CF_ERR_INTERNAL; caller frees with knownhosts_free. */
int knownhosts_parse(const char *text, size_t len, cf_knownhosts_t **out,
                     cf_err_t *err);
void knownhosts_free(cf_knownhosts_t *kh);

/* Entries that apply to host:port.  *out borrows from kh (free hits
 * first); caller frees with knownhosts_hits_free. */
int knownhosts_lookup(const cf_knownhosts_t *kh, const char *host,
                      unsigned port, cf_knownhosts_hits_t **out, cf_err_t *err);
void knownhosts_hits_free(cf_knownhosts_hits_t *h);
/* Key type names known for the host, comma-separated, most preferred
 * first (OpenSSH's default order, unknown types last); "" if none.
 * Borrowed from h. */
const char *knownhosts_hits_key_types(const cf_knownhosts_hits_t *h);
/* Judge the key the host offered (SSH wire-format public key blob). */
cf_knownhosts_result_t
knownhosts_hits_check(const cf_knownhosts_hits_t *h, const unsigned char *blob,
                      size_t len);

/* SHA-256 fingerprint of a public key blob, "SHA256:base64" without
 * padding, into out (KNOWNHOSTS_FP_LEN bytes). */
void knownhosts_fingerprint(const unsigned char *blob, size_t len,
                            char out[KNOWNHOSTS_FP_LEN]);

#endif
