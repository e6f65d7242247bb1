/* gate.h - the canary gate's decisions, for rollout.c (and its tests).
 *
 * Canaries are the first `canary` nodes *in queue order* that reach the
 * gate: playbook order, nodes an earlier run quarantined (suspects) last,
 * so the same fleet always gets the same canaries and a node with a
 * broken local config is never picked again while another node is left.
 * A node that drops out before the gate (unreachable, already current)
 * passes the role to the next one, and so does a canary that fails: its
 * successor confirms or clears the failure.
 *
 * Pure state and decisions, no locking and no I/O: rollout.c calls every
 * function here with its mutex held, and wakes its waiters afterwards. */
#ifndef CERTFLEET_GATE_H
#define CERTFLEET_GATE_H

#include <stdbool.h>
#include <stddef.h>

#include "certfleet/err.h"
#include "certfleet/rollout.h"

enum gate { GATE_GO, GATE_CANARY, GATE_STOPPED };

struct gate_state {
	unsigned canary_target;   /* canaries to pass before the rest */
	unsigned canary_failures; /* rollout.canary_failures: stop at */
	unsigned max_failures;    /* rollout.max_failures, 0 = none */
	unsigned canary_ok, canary_active;
	unsigned canary_failed; /* canaries failed at check/reload/verify */
	char canary_failed_names[sizeof(
	    ((struct cf_rollout_result *)0)->canary_failed)];
	cf_code_t canary_failed_code; /* the first one's */
	unsigned char *cand;          /* enum cand per queue position */
	size_t n_queue;
	size_t cursor;      /* first position not yet decided */
	size_t n_fresh;     /* queue positions before the suspects */
	unsigned n_serving; /* nodes found serving the certificate */
	bool proven;        /* suspects need no canary: gate.c */
	unsigned recipe_failures;
	bool stopped;
	bool budget_stop; /* stopped by rollout.max_failures */
	char stop_reason[CF_ERR_MSG_MAX];
};

/* A queue of n_queue nodes, the first n_fresh of them not suspects;
 * canary_target is capped at n_queue.  -1 when out of memory. */
int gate_init(struct gate_state *g, size_t n_queue, size_t n_fresh,
              unsigned canary_target, unsigned canary_failures,
              unsigned max_failures);
void gate_free(struct gate_state *g);

/* The node at queue position pos ended before the gate (unreachable,
 * already serving the certificate: `serving`). */
void gate_node_skipped(struct gate_state *g, size_t pos, bool serving);

/* The node at pos reached the gate. */
void gate_node_arrived(struct gate_state *g, size_t pos);

/* May the node at pos (arrived) go on?  False: wait until another node
 * changes the gate, then ask again.  True with *out: GATE_CANARY (go, as
 * a canary), GATE_GO (go), GATE_STOPPED (the rollout stopped: do not
 * write). */
bool gate_node_decide(struct gate_state *g, size_t pos, enum gate *out);

/* The node that went through as `how` ended: failed or not, with the
 * cause's code, named `name`. */
void gate_node_left(struct gate_state *g, enum gate how, bool failed,
                    cf_code_t code, const char *name);

/* Every node ended.  A max_failures budget spent when no node was left
 * to start (`held`: the gate stopped none) stopped nothing: the run is
 * partial, not stopped.  Canaries failed and no node could say whether
 * the certificate and recipe work elsewhere (`serving`: a node serves
 * it): stop, as a lone failed canary always did. */
void gate_run_end(struct gate_state *g, bool serving, bool held);

#endif
