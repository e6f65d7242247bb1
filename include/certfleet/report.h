/* report.h - what the operator and machines read: one line per node and a
 * summary on stderr, a live progress line on a TTY, and the stable --json
 * documents on stdout (format documented in docs/json.md). */
#ifndef CERTFLEET_REPORT_H
#define CERTFLEET_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "certfleet/crypto.h"
#include "certfleet/rollout.h"
#include "certfleet/store.h"

struct cf_report_ctx {
	bool tty;         /* redraw a progress line */
	bool quiet;       /* only failures */
	const char *verb; /* "deploy", "verify", ... */
};

/* cf_progress_fn for rollout: prints each node's outcome as it happens. */
void report_progress(void *arg, const struct cf_node_result *r, size_t done,
                     size_t total);

const char *report_outcome_name(cf_outcome_t o);

/* Print a JSON document (indented, keys in insertion order, newline) and
 * release it: the one way every --json document is written. */
typedef struct json_t json_t;
void report_json_dump(FILE *f, json_t *root);

/* Summary line(s) on stderr. */
void report_summary(FILE *f, const char *verb,
                    const struct cf_rollout_result *res, int exit_code);

/* The run report: {"command","exit_code","certificate",...,"nodes":[...]} */
void report_run_json(FILE *f, const char *command, int exit_code,
                     const char *version, const struct cf_certinfo *ci,
                     const struct cf_rollout_result *res,
                     const struct cf_node_states *ns);

/* What `renew`'s renewal step did: the "renewal" object of its run
 * report (docs/json.md).  Strings borrowed. */
struct cf_renewal_report {
	const char *action;  /* "issued", "not-due", "failed", "dry-run" */
	const char *reason;  /* why it was (not) due */
	const char *error;   /* "failed": the first cause */
	const char *order;   /* the CA's order URL, if one was created */
	const char *version; /* "issued": the stored version */
	int64_t next_due;    /* when the current certificate is due */
	unsigned consecutive_failures;
	const char *deploy_error; /* the deploy could not run at all: why */
};
void report_renew_json(FILE *f, int exit_code, const char *version,
                       const struct cf_certinfo *ci,
                       const struct cf_rollout_result *res,
                       const struct cf_node_states *ns,
                       const struct cf_renewal_report *rr);

/* Renewal as `status` shows it (borrowed). */
struct cf_renewal_view {
	bool acme; /* the playbook has acme.directory */
	bool due;
	int64_t next_due;  /* 0: now, no date (no certificate...) */
	const char *basis; /* renewal.h's cf_renewal_due.basis */
	const char *why;
	const struct cf_renewal_state *rs; /* NULL if unreadable */
	const char *state_error;           /* renewal.json unreadable: why */
};

/* `status`: table on f, or JSON. ci/version may be NULL (no certificate);
 * rv NULL leaves renewal out. */
struct cf_playbook;
void report_status(FILE *f, bool json, const struct cf_playbook *pb,
                   const char *version, const struct cf_certinfo *ci,
                   const struct cf_node_states *ns,
                   const struct cf_renewal_view *rv);

/* `quarantine list --json`: the quarantined nodes. */
void report_quarantine_json(FILE *f, const struct cf_playbook *pb,
                            const struct cf_node_states *ns);
/* `validate --json`: what the playbook describes. */
void report_validate_json(FILE *f, const struct cf_playbook *pb);

/* What `revoke` did (docs/json.md "Revoke document").  Borrowed. */
struct cf_keyclean_result;
struct cf_revoke_report {
	const char *version;          /* the revoked version */
	const struct cf_certinfo *ci; /* its certificate (NULL unknown) */
	const char *reason;           /* "keyCompromise", ... */
	int reason_code;              /* RFC 5280 */
	const char *ca;               /* "revoked", "already-revoked",
					 "dry-run", NULL: not revoked */
	bool current;                 /* it is the current version */
	int64_t revoked_at;           /* keyCompromise record, 0 none */
	char *const *store_wiped;     /* versions whose key was wiped */
	const struct cf_keyclean_result *kc; /* NULL: nodes not looked at */
	char *const *pending;                /* nodes still to clean */
};
void
report_revoke_json(FILE *f, int exit_code, const struct cf_revoke_report *r);

#endif
