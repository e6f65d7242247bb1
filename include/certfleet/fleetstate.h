/* fleetstate.h - every change to a node's record (struct cf_node_state,
 * kept by store.h) and the rules behind it, in one place.
 *
 * A node's record moves between these states:
 *   (clean) --failed--> quarantined (automatic: a "suspect", retried last)
 *   quarantined --serves the current certificate, verified--> released
 *   any --pinned (quarantine add, rollback)--> quarantined manually
 *   quarantined --quarantine release--> clean
 * A pinned node is skipped by rollouts unless the operator names it
 * (--only); a run that then succeeds on it releases the pin like any
 * quarantine, and one that fails turns it into an automatic quarantine.
 *
 * Pure functions on the in-memory record and a time `now`: no I/O.  The
 * callers (cli_*.c) load and save the records, print and notify. */
#ifndef CERTFLEET_FLEETSTATE_H
#define CERTFLEET_FLEETSTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "certfleet/rollout.h"
#include "certfleet/store.h"

typedef enum {
	FLEET_UNTOUCHED =
	    0,              /* skipped, stopped or dry run: record left alone */
	FLEET_OBSERVED,     /* only what it serves noted (not failed, not
	                        serving the current certificate) */
	FLEET_CAUSE_KEPT,   /* a read-only probe failed on a node quarantined
	                        for a real cause: that cause stays */
	FLEET_QUARANTINED,  /* failed: first time, or a new cause (alert) */
	FLEET_FAILED_AGAIN, /* failed again for the same cause (no alert) */
	FLEET_SUCCEEDED,    /* serves the current certificate, verified */
	FLEET_RELEASED,     /* ...and that lifted its quarantine */
} fleet_change_t;

/* What fleet_record did, for the caller's notifications and lines. */
struct fleet_note {
	fleet_change_t change;
	char *was_reason;  /* FLEET_RELEASED: the reason it had (may be NULL;
			      caller frees) */
	unsigned attempts; /* QUARANTINED/FAILED_AGAIN: failed attempts with
			      this one; RELEASED: before the release */
};

/* What a node was seen serving ("" = not seen: no change). */
void fleet_observe(struct cf_node_state *st, const char *sha256_hex,
                   int64_t not_after, int64_t now);

/* What a rollout saw node r serve (and its endpoints), noted in its
 * record (created if needed) and nothing else: verify, which stores
 * nothing.  -1 when out of
 * memory. */
int fleet_observe_result(struct cf_node_states *ns,
                         const struct cf_node_result *r, int64_t now);

/* What verify saw on each endpoint under each SNI name of node r
 * (r->checks), kept per pair with its time for --metrics.  The rule:
 *   - a pair the result checked gets that result and `now`;
 *   - a pair it did not check keeps its last result and time (a deploy
 *     stops at the first failing pair; an unreachable node has none);
 *   - a node rolled back after the check: its passing pairs served the
 *     new files only until the rollback put the old ones back, so they
 *     keep their earlier record (about those very files); the failing
 *     pair is recorded;
 *   - a result in which every pair passed checked them all (verify stops
 *     only at a failure): it replaces the list, so pairs the playbook no
 *     longer has go.
 * fleet_record and fleet_observe_result call it.  -1 when out of memory
 * (each pair is either updated or left as it was, never half-written). */
int fleet_observe_endpoints(struct cf_node_state *st,
                            const struct cf_node_result *r, int64_t now);

/* The record of one endpoint under one SNI name (compared
 * case-insensitively) on a node, or NULL (borrowed). */
const struct cf_endpoint_state *
fleet_endpoint_find(const struct cf_node_state *st, unsigned port,
                    starttls_proto_t starttls, const char *sni);

/* What the last audit found on a node and could not fix (NULL or "" for
 * nothing): kept with the time it was seen, for verify and check.  0, or
 * -1 when out of memory. */
int fleet_set_drift(struct cf_node_state *st, const char *drift, int64_t now);

/* Fold one rollout result into its node's record (created if needed).
 * current_sha: the digest of the certificate the run deployed, or NULL
 * (results that can only fail a node: http-01 failures).  Sets *note
 * (note->was_reason is the caller's).  -1 when out of memory. */
int fleet_record(struct cf_node_states *ns, const struct cf_node_result *r,
                 const char *current_sha, int64_t now, struct fleet_note *note);

/* A failure with cause `reason` (token) and `detail`: quarantine, count
 * the attempt.  True when the operator should hear of it: the first
 * failure, or a new cause (not every retry of the same one). */
bool fleet_failed(struct cf_node_state *st, const char *reason,
                  const char *detail, int64_t now);

/* Verified serving the current certificate: success time, and the
 * quarantine (automatic or manual) lifted.  True when it was quarantined;
 * then *was_reason gets its reason (caller frees; NULL if none). */
bool fleet_succeeded(struct cf_node_state *st, int64_t now, char **was_reason);

/* The operator pins the node: quarantined manually with `detail`, kept
 * out of rollouts until released.  A node already quarantined keeps its
 * "since". */
void fleet_pin(struct cf_node_state *st, const char *detail, int64_t now);

/* `quarantine release`: back to clean, attempts forgotten; the success
 * time is not touched (nothing was verified).  False when it was not
 * quarantined (nothing changed). */
bool fleet_release(struct cf_node_state *st);

/* Pinned: manual quarantine, skipped unless named. */
bool fleet_is_pinned(const struct cf_node_state *st);
/* Suspect: quarantined by a failed run (not a pin): tried last, never a
 * canary while another node is left. */
bool fleet_is_suspect(const struct cf_node_state *st);

/* The record of `name`, or NULL (borrowed). */
const struct cf_node_state *
fleet_find(const struct cf_node_states *ns, const char *name);

/* Names of pinned nodes (skipped by rollouts) unless named in `only`, and
 * names of suspects.  NULL-terminated; caller frees with cf_strv_free;
 * NULL when out of memory. */
char **fleet_pinned_names(const struct cf_node_states *ns, char *const *only);
char **fleet_suspect_names(const struct cf_node_states *ns);

#endif
