/* keyclean.h - remove a compromised key's backups from the fleet
 * (`revoke --reason keyCompromise`).
 *
 * A deploy keeps each replaced file as DIR/.BASENAME.certfleet-prev
 * (rollout_backup_path).  For every key file of the playbook ("privkey",
 * "combined"), keyclean removes that backup on every node it can reach if,
 * and only if, the backup's bytes hash to the compromised key's SHA-256 (a
 * "combined" file: to fullchain + key).  The key never leaves the
 * coordinator; the node gets hashes.  A backup holding another key is left
 * alone, a symlink or non-file is never followed nor removed.  A live key
 * file is never touched (the node would stop serving): a node whose live
 * file still holds the key is reported, it needs a new certificate. */
#ifndef CERTFLEET_KEYCLEAN_H
#define CERTFLEET_KEYCLEAN_H

#include <stdbool.h>
#include <stdint.h>

#include "certfleet/err.h"
#include "certfleet/playbook.h"
#include "certfleet/ssh.h"
#include "certfleet/util.h"

struct cf_keyclean_node {
	const struct cf_node *node; /* borrowed from the playbook */
	bool attempted;             /* false: not selected */
	bool ok;                    /* every key backup checked (removed,
				       another key, or none) */
	cf_err_t err;               /* !ok && attempted: why (reason token:
				       cf_err_reason(err.code)) */
	unsigned removed;           /* backups holding the key, removed */
	unsigned kept_other;        /* backups holding another key, kept */
	bool live_compromised;      /* a live key file holds the key */
	char removed_files[CF_ERR_MSG_MAX / 2]; /* ", "-joined paths */
	char live_files[CF_ERR_MSG_MAX / 2];    /* ", "-joined paths */
	int64_t duration_ms;
};

struct cf_keyclean_result {
	struct cf_keyclean_node *nodes; /* one per playbook node, in order */
	size_t n;
	unsigned n_cleaned; /* ok, removed >= 1 */
	unsigned n_clean;   /* ok, nothing to remove */
	unsigned n_failed;  /* attempted, not ok */
	unsigned n_live;    /* live_compromised */
	bool no_key_files;  /* the playbook deploys no key file:
			       no node was contacted */
};
void keyclean_result_free(struct cf_keyclean_result *r);

/* Clean the nodes named in `only` (NULL: every node, quarantined and
 * pinned ones included: cleanup matters exactly there), in parallel with
 * the playbook's SSH deadlines (rollout_each).  key_sha256: hex of the
 * key's PEM bytes; combined_sha256: of fullchain + key ("" if unknown).
 * Per-node failures are results; -1 only if nothing could run. */
int
keyclean_run(const struct cf_playbook *pb, const cf_ssh_ctx_t *ssh, char **only,
             const char *key_sha256, const char *combined_sha256,
             struct cf_keyclean_result *out, cf_err_t *err);

/* The POSIX sh script keyclean sends on stdin (no secret in it: paths and
 * hashes, single-quoted).  Appended to *out.  Exposed for tests. */
int keyclean_script(const struct cf_playbook *pb, const char *key_sha256,
                    const char *combined_sha256, cf_buf_t *out);

#endif
