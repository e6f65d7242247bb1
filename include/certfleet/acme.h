/* acme.h - an RFC 8555 client (with RFC 9773 ARI) over http.h + crypto.
 * Knows nothing of SSH, nodes or the store layout: challenges are answered
 * through the caller's callbacks, keys and certificates go in and out as
 * PEM text. */
#ifndef CERTFLEET_ACME_H
#define CERTFLEET_ACME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certfleet/err.h"
#include "certfleet/playbook.h"

/* One pending challenge, as handed to the provisioning callbacks. */
struct cf_acme_chall {
	const char *type;     /* "http-01" or "dns-01" */
	const char *domain;   /* identifier value (wildcard stripped for dns) */
	const char *token;    /* http-01: file name under
	                         /.well-known/acme-challenge/ */
	const char *value;    /* http-01: key authorization (file content);
	                         dns-01: TXT value for _acme-challenge.<domain> */
};

struct cf_acme_challenge_ops {
	void *arg;
	/* Make all n challenges answerable; -1 with err aborts the order. */
	int (*provision)(void *arg, const struct cf_acme_chall *c, size_t n,
	                 cf_err_t *err);
	/* Remove them again (always called after provision, best effort). */
	void (*cleanup)(void *arg, const struct cf_acme_chall *c, size_t n);
};

struct cf_acme_params {
	const char *directory_url;   /* https only */
	const char *ca_bundle;       /* NULL = system store */
	const char *account_key_path;/* PEM; created 0600 (P-256) if absent */
	char *const *contact;        /* may be NULL */
	size_t n_contact;
	const char *eab_kid;         /* NULL = no EAB */
	const char *eab_hmac_key;    /* base64url */
	char *const *domains;
	size_t n_domains;
	const char *challenge_type;  /* "http-01" or "dns-01" */
	cf_key_type_t key_type;
	const char *reuse_key_pem;   /* non-NULL: CSR from this key */
	const char *preferred_chain; /* issuer CN of the top of the chain */
	const char *profile;         /* only sent if the CA lists it */
	const char *replaces;        /* ARI cert id of the cert being replaced */
	int64_t deadline;            /* absolute cf_now_ms(): whole issuance */
};

struct cf_acme_result {
	char *fullchain_pem;         /* leaf + chain as served by the CA */
	char *privkey_pem;           /* secret: cf_free_secret */
};
void acme_result_free(struct cf_acme_result *r);

/* Full issuance: account (created or found), order, authorizations,
 * challenges via ops, finalize, poll, download (preferred chain).
 * Errors: CF_ERR_ACME with a one-line message that includes the problem
 * document ("urn:ietf:params:acme:error:...: detail [sub: ...]") and the
 * domain concerned; CF_ERR_TIMEOUT past the deadline; CF_ERR_HOOK from ops. */
int acme_issue(const struct cf_acme_params *p,
               const struct cf_acme_challenge_ops *ops,
               struct cf_acme_result *out, cf_err_t *err);

/* Revoke cert_pem (leaf first) with the account key; reason per RFC 5280
 * (0 unspecified, 1 keyCompromise, 4 superseded, 5 cessationOfOperation). */
int acme_revoke(const struct cf_acme_params *p, const char *cert_pem,
                int reason, cf_err_t *err);

/* ---- ARI (RFC 9773) ---- */

/* Certificate ID: base64url(AKI keyIdentifier) "." base64url(serial).
 * Caller frees. */
char *acme_ari_cert_id(const unsigned char *aki, size_t aki_len,
                       const unsigned char *serial, size_t serial_len);

struct cf_ari {
	int64_t start, end;          /* suggestedWindow, epoch seconds */
	char *explanation_url;       /* may be NULL */
	long retry_after;            /* seconds, -1 if absent */
};
void acme_ari_free(struct cf_ari *a);

/* Parse a renewalInfo response body; CF_ERR_ACME on garbage (missing or
 * unparseable window, end before start). Pure, for unit tests. */
int acme_ari_parse(const char *body, size_t len, struct cf_ari *out,
                   cf_err_t *err);

/* Pick a uniformly random time in [start, end) using `rnd` in [0,1). */
int64_t acme_ari_pick(const struct cf_ari *a, double rnd);

/* GET directory.renewalInfo/CERTID. Returns 0 with *supported=false if the
 * directory has no renewalInfo. */
int acme_ari_fetch(const struct cf_acme_params *p, const char *cert_id,
                   struct cf_ari *out, bool *supported, cf_err_t *err);

#endif
