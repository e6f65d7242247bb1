/* store.h - the coordinator's state directory.
 *
 *   STATE/                         0700
 *     lock                         flock()ed by a run; holds "pid host cmd"
 *     CERTNAME/                    one per playbook certificate.name
 *       current                    version id of the current certificate
 *       versions/ID/               ID = 20261125T064359Z-<sha256[0:8]>
 *         cert.pem chain.pem fullchain.pem   0644
 *         privkey.pem                        0600; only in the newest
 *                                            keep_versions versions (and
 *                                            current and the one before
 *                                            it); older ones are wiped
 *         revoked.json                       revoked for keyCompromise:
 *                                            key hashes, nodes still to
 *                                            clean (privkey.pem wiped)
 *       nodes.json                 per-node state (below)
 *       renewal.json               ACME renewal state
 *     accounts/HASH/account.key    0600, HASH = sha256(directory URL)[0:16]
 *
 * Every file is written with cf_write_atomic; a reader never sees a partial
 * file.  A corrupt file is reported as CF_ERR_STATE naming it, never
 * silently replaced. */
#ifndef CERTFLEET_STORE_H
#define CERTFLEET_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certfleet/crypto.h"
#include "certfleet/err.h"
#include "certfleet/starttls.h"

typedef struct cf_store cf_store_t;

/* Open (creating 0700 if needed) the state dir for certificate `name`. */
int store_open(const char *state_dir, const char *cert_name, cf_store_t **out,
               cf_err_t *err);
/* The same without creating or writing anything, for read-only commands
 * (status, verify, check, dry runs): a missing state dir reads as an
 * empty store, and every store_save_* / store_put_* fails with
 * CF_ERR_INTERNAL.  store_lock on it keeps runs out (for writing the
 * metrics file) without creating or writing the lock file. */
int store_open_ro(const char *state_dir, const char *cert_name,
                  cf_store_t **out, cf_err_t *err);
void store_close(cf_store_t *st);
const char *store_dir(const cf_store_t *st);  /* STATE/CERTNAME, borrowed */
const char *store_root(const cf_store_t *st); /* STATE, borrowed */

/* Take the run lock. wait_s < 0: wait forever; 0: fail at once with
 * CF_ERR_LOCKED naming the holder ("pid 123 on host, since ..., running
 * 'deploy'"); > 0: wait up to that many seconds.  A lock left by a killed
 * run is free (flock dies with its holder). Released by store_close. */
int store_lock(cf_store_t *st, const char *what, int wait_s, cf_err_t *err);
/* Who holds the lock now, as in store_lock's message ("pid 123 on host
 * since ... (deploy)"), or "another run". */
void store_lock_holder(const cf_store_t *st, char *out, size_t outlen);

/* How many of the newest versions keep their private key (default 3,
 * at least 2: rollback deploys the previous one).  Playbook
 * store.keep_versions. */
void store_set_keep_versions(cf_store_t *st, unsigned n);

/* Certificate versions.  Store b as a new version (or reuse the version
 * holding its leaf) and make it current; then wipe (overwrite, unlink)
 * privkey.pem of versions older than the newest keep_versions, never of
 * the current version or the one before it. */
int store_put_bundle(cf_store_t *st, const struct cf_bundle *b,
                     char **version_out, cf_err_t *err); /* and make current */
/* Prove a new version could be stored now: a real test write (a temp
 * directory in versions/ holding a bundle-sized file, fsynced, and a small
 * file next to `current`), removed again.  CF_ERR_IO naming the directory
 * and the cause (full, read-only...).  `renew` calls it before ordering:
 * a certificate the store cannot keep would only spend the CA's rate
 * limits. */
int store_check_writable(cf_store_t *st, cf_err_t *err);
/* Current bundle: returns 0 with *found=false if the store has none.
 * b == NULL: the certificate's info only, the key is not read. */
int
store_get_current(cf_store_t *st, struct cf_bundle *b, struct cf_certinfo *info,
                  char **version, bool *found, cf_err_t *err);
/* The current certificate's info alone (b == NULL above means the same):
 * reads cert.pem, never privkey.pem, so status, verify and check work for
 * a user who cannot read keys. */
int store_get_current_cert(cf_store_t *st, struct cf_certinfo *info,
                           char **version, bool *found, cf_err_t *err);
/* The intermediates (chain.pem, may be "") of stored version id, the
 * chain verify expects nodes to send; no key is read.  Caller frees. */
int store_get_version_chain(cf_store_t *st, const char *id, char **chain,
                            cf_err_t *err);
/* Version before the current one (for rollback), same contract. */
int store_get_previous(cf_store_t *st, struct cf_bundle *b,
                       struct cf_certinfo *info, char **version, bool *found,
                       cf_err_t *err);

/* Revocation for keyCompromise (`revoke`).  The certificate stays as
 * history; its key goes from the store, and the node backups holding it
 * are found by hash (the key itself never leaves the coordinator).
 * versions/ID/revoked.json keeps the hashes, so nodes that were down can
 * be cleaned later without the key, and the nodes still to clean. */
struct cf_revocation {
	int64_t revoked_at;       /* 0: no record (not revoked for
				     keyCompromise by certfleet) */
	int reason;               /* RFC 5280 CRLReason code */
	char key_sha256[65];      /* of privkey.pem's bytes; "" unknown */
	char combined_sha256[65]; /* of fullchain.pem + privkey.pem, what a
				     "combined" file holds; "" unknown */
	char **pending;           /* NULL-terminated node names whose
				     backups could not be checked; NULL */
};
/* Id in `current` (*id NULL when there is none).  Caller frees. */
int store_current_id(cf_store_t *st, char **id, cf_err_t *err);
/* versions/ID's certificate info, and cert.pem's text (caller frees;
 * cert_pem may be NULL); never reads the key.  CF_ERR_STATE naming the id
 * when there is no such version. */
int
store_get_version_cert(cf_store_t *st, const char *id, struct cf_certinfo *info,
                       char **cert_pem, cf_err_t *err);
/* SHA-256 (hex) of versions/ID/privkey.pem and of fullchain.pem +
 * privkey.pem; *present false (hashes untouched) when the key is gone. */
int
store_version_key_hashes(cf_store_t *st, const char *id, char key_hex[65],
                         char combined_hex[65], bool *present, cf_err_t *err);
/* Wipe (overwrite, unlink, fsync the directory) privkey.pem in every
 * version whose key has this SHA-256 (with acme.reuse_key several do).
 * *wiped: the version ids wiped, NULL-terminated (cf_strv_free). */
int store_wipe_key(cf_store_t *st, const char *key_sha256, char ***wiped,
                   cf_err_t *err);
/* versions/ID/revoked.json; a missing file reads as revoked_at 0. */
int store_load_revocation(cf_store_t *st, const char *id,
                          struct cf_revocation *out, cf_err_t *err);
int store_save_revocation(cf_store_t *st, const char *id,
                          const struct cf_revocation *r, cf_err_t *err);
void store_revocation_free(struct cf_revocation *r);

/* The last verify result of one endpoint under one SNI name on a node
 * (fleetstate.c says when it is replaced and when it is kept). */
struct cf_endpoint_state {
	unsigned port;
	starttls_proto_t starttls;
	char *sni;
	bool ok;      /* the current leaf, exact chain, trusted */
	char *reason; /* !ok: quarantine reason token ("verify-name"...);
			 NULL when ok */
	int64_t seen; /* when it was checked */
};

/* Per-node state. */
struct cf_node_state {
	char *name;
	/* what the node was last seen serving */
	char serving_sha256[65];   /* "" = unknown */
	int64_t serving_not_after; /* 0 = unknown */
	int64_t last_seen;         /* when that was observed */
	int64_t last_success;      /* last time it verified serving current */
	int64_t last_change;       /* last time certfleet changed its files */
	/* quarantine */
	bool quarantined;
	char *reason; /* token: "timeout", "manual", ... */
	char *detail; /* human message */
	int64_t quarantined_since;
	unsigned attempts; /* consecutive failed attempts */
	bool manual;       /* added by `quarantine add`: not retried */
	/* files whose mode/owner differ from the playbook and that the last
	 * deploy could not fix ("; "-joined), NULL = none; verify and check
	 * (no SSH) report it */
	char *drift;
	int64_t drift_seen; /* when that deploy saw it */
	/* per endpoint x SNI name: the last result of each pair checked,
	 * for --metrics; none when never checked */
	struct cf_endpoint_state *endpoints;
	size_t n_endpoints;
};

struct cf_node_states {
	struct cf_node_state *v;
	size_t n;
};

int store_load_nodes(cf_store_t *st, struct cf_node_states *out, cf_err_t *err);
int store_save_nodes(cf_store_t *st, const struct cf_node_states *ns,
                     cf_err_t *err);
/* The state for `name`, NULL if none (or ns is NULL); borrowed from ns. */
const struct cf_node_state *
store_node_find(const struct cf_node_states *ns, const char *name);
/* Find or add (zeroed) the state for `name`; pointer valid until the next
 * call that adds. */
struct cf_node_state *store_node(struct cf_node_states *ns, const char *name);
void store_nodes_free(struct cf_node_states *ns);

/* ACME renewal bookkeeping. */
struct cf_renewal_state {
	int64_t last_attempt;
	int64_t last_success;
	unsigned consecutive_failures;
	char *last_error;        /* NULL if last attempt succeeded */
	int64_t ari_retry_after; /* epoch: do not ask ARI before */
	int64_t ari_window_start, ari_window_end;
	int64_t ari_chosen;    /* the random time picked in the window */
	char *ari_cert_id;     /* the cert the window is for */
	char *ari_explanation; /* explanationURL */
};
int
store_load_renewal(cf_store_t *st, struct cf_renewal_state *out, cf_err_t *err);
int store_save_renewal(cf_store_t *st, const struct cf_renewal_state *r,
                       cf_err_t *err);
void store_renewal_free(struct cf_renewal_state *r);

/* Account key for an ACME directory: path of STATE/accounts/HASH/account.key
 * (dir created 0700).  Caller frees. */
char *store_account_key_path(cf_store_t *st, const char *directory_url);

#endif
