/* rollout.h - deploy a bundle to the fleet: the per-node pipeline, the
 * worker pool and the canary gate.  Rollout writes no node state: putting
 * a node into or out of quarantine is the caller's business, a node's
 * result says what happened to it.  It only reads the quarantine it is
 * given: manually quarantined nodes are skipped (opts.skip), nodes an
 * earlier run quarantined go last and are never a canary while another
 * node is left (opts.suspect).
 *
 * Per node, one SSH session does everything:
 *   probe (TLS: already serving? skip unless force) -> connect -> host key
 *   -> auth -> [canary gate] -> upload temp files -> swap + check (+restore)
 *   -> reload -> verify over TLS (-> rollback + reload) -> close.
 * A node never waits for another except at the canary gate.
 *
 * The canary gate tells a bad node from a bad certificate or recipe: a
 * canary that fails check, reload or verify is replaced by another canary
 * on another node, and the rollout stops only when
 * rollout.canary_failures distinct canaries failed that way (or when no
 * node is left to confirm a failure and none serves the certificate).  A
 * canary whose successor passes failed for a reason of its own: it is one
 * failed node, and the rollout goes on.  Unreachable nodes never count. */
#ifndef CERTFLEET_ROLLOUT_H
#define CERTFLEET_ROLLOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certfleet/crypto.h"
#include "certfleet/err.h"
#include "certfleet/playbook.h"
#include "certfleet/ssh.h"

typedef enum {
	CF_OUT_UNCHANGED = 0, /* already served the certificate; left alone */
	CF_OUT_DEPLOYED,      /* files swapped, reloaded, verified */
	CF_OUT_FAILED,        /* failed: quarantine with err.code's reason */
	CF_OUT_SKIPPED,  /* not selected (--only/--exclude/manual quarantine) */
	CF_OUT_STOPPED,  /* not touched: rollout stopped (canary/budget) */
	CF_OUT_DRYRUN,   /* would deploy */
	CF_OUT_VERIFIED, /* verify-only: serves the certificate */
} cf_outcome_t;

/* What verify saw on one endpoint under one SNI name. */
struct cf_endpoint_check {
	unsigned port;
	starttls_proto_t starttls;
	const char *sni; /* borrowed from the playbook */
	bool ok;         /* new leaf, exact chain, trusted */
	cf_err_t err;    /* when !ok: code and message */
};

struct cf_node_result {
	const struct cf_node *node; /* borrowed from the playbook */
	cf_outcome_t outcome;
	cf_err_t err; /* set when outcome == CF_OUT_FAILED */
	bool canary;
	bool rolled_back;        /* files restored after a failure */
	bool touched;            /* certfleet changed files on the node */
	char before_sha256[65];  /* served before ("" unknown) */
	char after_sha256[65];   /* served at the end ("" unknown) */
	int64_t after_not_after; /* not_after of what it serves at the end */
	int64_t duration_ms;
	char note[CF_ERR_MSG_MAX]; /* dry run: e.g. "backup by copy" */
	/* deploy: the node's files were checked against the playbook (the
	 * audit of a node already serving the certificate, or a stage) */
	bool audited;
	char fixed[CF_ERR_MSG_MAX]; /* "; "-joined: "PATH mode 0644→0600" */
	char drift[CF_ERR_MSG_MAX]; /* "; "-joined drift it could not fix */
	struct cf_endpoint_check *checks; /* endpoint x name pairs verify
					     checked, endpoint-major; after a
					     deploy it stops at the first
					     failure, verify/check look at
					     all.  Freed with the result. */
	size_t n_checks;
};

struct cf_rollout_result {
	struct cf_node_result *nodes; /* one per playbook node, playbook order */
	size_t n;
	bool stopped; /* canaries or failure budget stopped it */
	bool dry_run; /* nothing written, nothing quarantined */
	char stop_reason[CF_ERR_MSG_MAX];
	unsigned n_canary_failed; /* canaries failed at check/reload/verify */
	char canary_failed[CF_ERR_MSG_MAX / 2]; /* their names, ", "-joined */
	unsigned n_deployed, n_unchanged, n_failed, n_skipped, n_stopped,
	    n_dryrun;
	int64_t duration_ms;
};
void rollout_result_free(struct cf_rollout_result *r);

typedef void (*cf_progress_fn)(void *arg, const struct cf_node_result *r,
                               size_t done, size_t total);

struct cf_rollout_opts {
	char **only;      /* NULL-terminated node names, NULL = all */
	char **exclude;   /* NULL-terminated node names */
	char **skip;      /* nodes to skip (manually quarantined) */
	char **suspect;   /* nodes an earlier run quarantined: tried last,
			     never a canary while another node is left */
	bool force;       /* deploy even to nodes already serving it */
	bool dry_run;     /* probe only, report what would be done */
	bool verify_only; /* `verify`: probe every node, change nothing */
	bool no_canary;   /* rollback/targeted runs */
	cf_progress_fn progress; /* called from worker threads, serialized */
	void *progress_arg;
};

/* Deploy `bundle` (whose leaf is `info`) per the playbook.  Per-node
 * failures are results, not errors: returns -1 only when the rollout could
 * not run at all. *out is filled on success (caller frees). */
int rollout_run(const struct cf_playbook *pb, const cf_ssh_ctx_t *ssh,
                const struct cf_bundle *bundle, const struct cf_certinfo *info,
                const struct cf_rollout_opts *opts,
                struct cf_rollout_result *out, cf_err_t *err);

/* Run fn on every selected node over its own SSH session, in parallel up
 * to rollout.concurrency, with the playbook's deadlines.  Used for http-01
 * challenge files.  fn returns 0 or -1 with err set. */
typedef int (*cf_node_fn)(void *arg, const struct cf_node *node, cf_ssh_t *s,
                          cf_err_t *err);
int rollout_each(const struct cf_playbook *pb, const cf_ssh_ctx_t *ssh,
                 const struct cf_rollout_opts *opts, cf_node_fn fn, void *arg,
                 struct cf_rollout_result *out, cf_err_t *err);

/* The previous version of a deployed file that the stage script keeps on
 * the node (for its own restore and `rollback`): DIR/.BASENAME.certfleet-prev.
 * Caller frees; NULL when out of memory. */
char *rollout_backup_path(const char *path);
/* out (a node script's output) has marker as a whole line: a script's
 * completion marker is its proof of success, since libssh2 reports exit
 * status 0 when none came back. */
bool rollout_has_marker(const char *out, const char *marker);
/* A deploy.files entry holding a private key ("privkey", "combined"). */
bool rollout_is_key_file(const struct cf_file_spec *f);

#endif
