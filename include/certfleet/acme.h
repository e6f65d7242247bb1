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
	const char *type;   /* "http-01" or "dns-01" */
	const char *domain; /* identifier value (wildcard stripped for dns) */
	const char *token;  /* http-01: file name under
			       /.well-known/acme-challenge/ */
	const char *value;  /* http-01: key authorization (file content);
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
	const char *directory_url;    /* https only */
	const char *ca_bundle;        /* NULL = system store */
	const char *account_key_path; /* PEM; created 0600 (P-256) if absent */
	char *const *contact;         /* may be NULL */
	size_t n_contact;
	const char *eab_kid;      /* NULL = no EAB */
	const char *eab_hmac_key; /* base64url */
	char *const *domains;
	size_t n_domains;
	const char *challenge_type; /* "http-01" or "dns-01" */
	cf_key_type_t key_type;
	const char *reuse_key_pem;   /* non-NULL: CSR from this key */
	const char *preferred_chain; /* issuer CN of the top of the chain */
	const char *profile;         /* only sent if the CA lists it */
	const char *replaces; /* ARI cert id of the cert being replaced */
	int64_t deadline;     /* absolute cf_now_ms(): whole issuance */
};

struct cf_acme_result {
	char *fullchain_pem; /* leaf + chain as served by the CA */
	char *privkey_pem;   /* secret: cf_free_secret */
	char *order_url;     /* set once the CA created the order,
				also when the issuance then fails */
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
	int64_t start, end;    /* suggestedWindow, epoch seconds */
	char *explanation_url; /* may be NULL */
	long retry_after;      /* seconds, -1 if absent */
};
void acme_ari_free(struct cf_ari *a);

/* Parse a renewalInfo response body; CF_ERR_ACME on garbage (missing or
 * unparseable window, end before start). Pure, for unit tests. */
int
acme_ari_parse(const char *body, size_t len, struct cf_ari *out, cf_err_t *err);

/* Pick a uniformly random time in [start, end) using `rnd` in [0,1). */
int64_t acme_ari_pick(const struct cf_ari *a, double rnd);

/* GET directory.renewalInfo/CERTID. Returns 0 with *supported=false if the
 * directory has no renewalInfo. */
int acme_ari_fetch(const struct cf_acme_params *p, const char *cert_id,
                   struct cf_ari *out, bool *supported, cf_err_t *err);

/* How long to wait before asking again: Retry-After (seconds, -1 when
 * absent) clamped to [floor_ms, one day], else fallback_ms (not below
 * floor_ms).  Never negative, never overflows.  Pure, for unit tests. */
int64_t acme_wait_ms(long retry_after_s, int64_t fallback_ms, int64_t floor_ms);

/* ---- protocol object parsers (pure; exposed for unit tests) ---- */

/* One line from an RFC 7807 problem document (RFC 8555 section 6.7):
 * "TYPE: detail [sub: SHORTTYPE (dns:VALUE): detail; ...]" (SHORTTYPE
 * without "urn:ietf:params:acme:error:"), control characters replaced by
 * spaces.  NULL if body is not a problem document.  Caller
 * frees. */
char *acme_problem_line(const char *body, size_t len);

/* The directory (RFC 8555 section 7.1.1). */
struct cf_acme_dir {
	char *new_nonce, *new_account, *new_order, *revoke_cert;
	char *renewal_info;     /* NULL: no ARI */
	char *terms_of_service; /* meta.termsOfService or NULL */
	char **profiles;        /* meta.profiles names, NULL-terminated */
	bool eab_required;      /* meta.externalAccountRequired */
};
/* CF_ERR_ACME if not JSON or a required URL is missing. */
int acme_dir_parse(const char *body, size_t len, struct cf_acme_dir *out,
                   cf_err_t *err);
void acme_dir_free(struct cf_acme_dir *d);

/* An order (RFC 8555 section 7.1.3). */
struct cf_acme_order {
	char *status;          /* pending ready processing valid invalid */
	char **authorizations; /* NULL-terminated */
	char *finalize;
	char *certificate; /* NULL until valid */
	char *error;       /* problem line or NULL */
};
int acme_order_parse(const char *body, size_t len, struct cf_acme_order *out,
                     cf_err_t *err);
void acme_order_free(struct cf_acme_order *o);

/* An authorization with its challenges (RFC 8555 section 7.1.4). */
struct cf_acme_authz_chall {
	char *type, *url, *token, *status;
	char *error; /* problem line or NULL */
};
struct cf_acme_authz {
	char *status;
	char *domain; /* identifier value ("*." already stripped) */
	bool wildcard;
	struct cf_acme_authz_chall *challs;
	size_t n_challs;
};
int acme_authz_parse(const char *body, size_t len, struct cf_acme_authz *out,
                     cf_err_t *err);
void acme_authz_free(struct cf_acme_authz *a);

#endif
