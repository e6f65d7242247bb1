/* err.h - the one error type of certfleet.
 *
 * Every fallible function returns 0 on success or -1 on failure and, on
 * failure, fills the caller's cf_err_t with a code and a human message that
 * names the thing that failed (node, file, key).  The first cause wins: a
 * caller that adds context prefixes the message, it never replaces it. */
#ifndef CERTFLEET_ERR_H
#define CERTFLEET_ERR_H

#include <stddef.h>

typedef enum {
	CF_OK = 0,
	CF_ERR_USAGE,  /* bad command line                      (exit 64) */
	CF_ERR_DATA,   /* unusable certificate/key input        (exit 65) */
	CF_ERR_CONFIG, /* playbook error                        (exit 78) */
	CF_ERR_LOCKED, /* another run holds the state lock      (exit 75) */
	CF_ERR_IO,     /* local filesystem / OS error */
	CF_ERR_STATE,  /* state file corrupt or unreadable */
	CF_ERR_NOMEM,
	CF_ERR_INTERNAL,
	/* node-level causes; each maps to a quarantine reason (cf_err_reason) */
	CF_ERR_TIMEOUT,     /* "timeout": no answer before a deadline */
	CF_ERR_REFUSED,     /* "refused": TCP connection refused */
	CF_ERR_UNREACHABLE, /* "unreachable": no route, name does not resolve */
	CF_ERR_SSH,         /* "ssh": SSH protocol failure */
	CF_ERR_HOSTKEY_UNKNOWN, /* "hostkey-unknown" */
	CF_ERR_HOSTKEY_CHANGED, /* "hostkey-changed": possible interception */
	CF_ERR_AUTH,            /* "auth": authentication refused */
	CF_ERR_WRITE,           /* "write": could not write files on the node */
	CF_ERR_UNSAFE_PATH, /* "unsafe-path": symlink or non-file at a target */
	CF_ERR_CHECK,       /* "check-failed" */
	CF_ERR_RELOAD,      /* "reload-failed" */
	CF_ERR_VERIFY,      /* "verify-failed": node does not serve the cert */
	CF_ERR_VERIFY_CHAIN, /* "verify-chain": leaf right, chain sent wrong */
	CF_ERR_VERIFY_TRUST, /* "verify-trust": chain validates to no anchor */
	CF_ERR_VERIFY_NAME,  /* "verify-name": another SNI name is not
	                           served the cert */
	CF_ERR_VERIFY_ENDPOINT, /* "verify-endpoint": another endpoint (port)
	                           does not serve the cert */
	CF_ERR_TLS,             /* "tls": TLS handshake to the node failed */
	CF_ERR_ACME,            /* CA said no / CA unusable */
	CF_ERR_HOOK,            /* an external hook failed */
	CF_ERR__COUNT
} cf_code_t;

#define CF_ERR_MSG_MAX 512

typedef struct cf_err {
	cf_code_t code;
	char msg[CF_ERR_MSG_MAX];
} cf_err_t;

/* Fill err (if non-NULL) and return -1, so callers can write
 * `return cf_err_set(err, CF_ERR_IO, "%s: %s", path, strerror(errno));` */
int cf_err_set(cf_err_t *err, cf_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an already-set message with context ("node web1: " + msg). */
int cf_err_prefix(cf_err_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The one rule for untrusted text shown to people or machines: copy in
 * (NULL reads as "") into out as one line of valid UTF-8 (tab, CR, LF
 * become ' '; other controls, C1 controls and invalid bytes '?'), cut at
 * a character boundary to fit outlen.  out may be in.  Returns the length
 * written.  cf_err_set and cf_err_prefix apply it to every message. */
size_t cf_sanitize(const char *in, char *out, size_t outlen);

/* Short stable token for a node-level code, used as the quarantine reason
 * and in --json ("timeout", "hostkey-changed", ...).  "error" otherwise. */
const char *cf_err_reason(cf_code_t code);

/* One of the verify codes: the node answers, but not with what a client
 * needs (quarantine reasons verify-failed, -chain, -trust, -name,
 * -endpoint). */
int cf_err_is_verify(cf_code_t code);

/* Process exit code for a run-level error (64, 65, 75, 78, else 1). */
int cf_err_exit_code(cf_code_t code);

#endif
