/* gate.c - the canary gate's decisions (gate.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/gate.h"

enum cand { CAND_PENDING = 0, CAND_ARRIVED, CAND_CANARY, CAND_OUT };

int
gate_init(struct gate_state *g, size_t n_queue, size_t n_fresh,
          unsigned canary_target, unsigned canary_failures,
          unsigned max_failures)
{
	memset(g, 0, sizeof(*g));
	g->cand = calloc(n_queue ? n_queue : 1, 1);
	if (g->cand == NULL)
		return -1;
	g->n_queue = n_queue;
	g->n_fresh = n_fresh;
	g->canary_target =
	    canary_target > n_queue ? (unsigned)n_queue : canary_target;
	g->canary_failures = canary_failures;
	g->max_failures = max_failures;
	return 0;
}

void
gate_free(struct gate_state *g)
{
	free(g->cand);
	g->cand = NULL;
}

static void
gate_advance(struct gate_state *g)
{
	while (g->canary_ok + g->canary_active < g->canary_target &&
	       g->cursor < g->n_queue) {
		/* Only nodes an earlier run quarantined are left.  If other
		 * nodes already serve the certificate, it is proven: the
		 * suspects go without a canary (one of them failing again is
		 * its own fault, not a reason to stop).  If none does, a
		 * suspect must be the canary: a bad certificate still stops. */
		if (g->cursor >= g->n_fresh && g->n_serving > 0) {
			g->proven = true;
			break;
		}
		if (g->cand[g->cursor] == CAND_ARRIVED) {
			g->cand[g->cursor] = CAND_CANARY;
			g->canary_active++;
		} else if (g->cand[g->cursor] != CAND_OUT) {
			break;
		}
		g->cursor++;
	}
}

void
gate_node_skipped(struct gate_state *g, size_t pos, bool serving)
{
	g->cand[pos] = CAND_OUT;
	if (serving)
		g->n_serving++;
	gate_advance(g);
}

void
gate_node_arrived(struct gate_state *g, size_t pos)
{
	g->cand[pos] = CAND_ARRIVED;
	gate_advance(g);
}

bool
gate_node_decide(struct gate_state *g, size_t pos, enum gate *out)
{
	enum gate how;

	if (g->cand[pos] == CAND_CANARY) {
		how = g->stopped ? GATE_STOPPED : GATE_CANARY;
		if (g->stopped)
			g->canary_active--;
	} else if (g->stopped) {
		how = GATE_STOPPED;
	} else if (g->canary_ok >= g->canary_target || g->proven) {
		how = GATE_GO;
	} else {
		return false;
	}
	if (how != GATE_CANARY)
		g->cand[pos] = CAND_OUT;
	*out = how;
	return true;
}

static bool
is_recipe_failure(cf_code_t c)
{
	/* check/reload/verify failing says the certificate or the recipe is
	 * bad, not the host; unreachable or full hosts say nothing about it. */
	return c == CF_ERR_CHECK || c == CF_ERR_RELOAD || cf_err_is_verify(c);
}

/* The stop reason names every failed canary: the operator's first
 * question is whether they failed the same way. */
static void
stop_for_canaries(struct gate_state *g, const char *why)
{
	g->stopped = true;
	snprintf(g->stop_reason, sizeof(g->stop_reason),
	         "%s %s failed (%s)%s: rollout stopped, untouched nodes keep "
	         "their certificate",
	         g->canary_failed == 1 ? "canary" : "canaries",
	         g->canary_failed_names, cf_err_reason(g->canary_failed_code),
	         why);
}

/* A canary failed at check, reload or verify. */
static void
canary_failed(struct gate_state *g, cf_code_t code, const char *name)
{
	size_t used = strlen(g->canary_failed_names);

	if (g->canary_failed++ == 0)
		g->canary_failed_code = code;
	snprintf(g->canary_failed_names + used,
	         sizeof(g->canary_failed_names) - used, "%s%s",
	         used > 0 ? ", " : "", name);
	if (g->stopped)
		return;
	if (g->canary_failed >= g->canary_failures)
		stop_for_canaries(g, "");
}

void
gate_node_left(struct gate_state *g, enum gate how, bool failed, cf_code_t code,
               const char *name)
{
	bool recipe = failed && is_recipe_failure(code);

	if (how == GATE_CANARY) {
		g->canary_active--;
		if (!failed)
			g->canary_ok++;
		else if (recipe)
			canary_failed(g, code, name);
		/* any other failure (host gone mid-run, disk full) says
		 * nothing about the certificate: the next node takes the
		 * role, as gate_advance below arranges */
	}
	if (recipe) {
		g->recipe_failures++;
		if (g->max_failures > 0 &&
		    g->recipe_failures >= g->max_failures && !g->stopped) {
			g->stopped = g->budget_stop = true;
			snprintf(g->stop_reason, sizeof(g->stop_reason),
			         "%u %s failed check/reload/verify "
			         "(rollout.max_failures): rollout stopped",
			         g->recipe_failures,
			         g->recipe_failures == 1 ? "node" : "nodes");
		}
	}
	gate_advance(g);
}

void
gate_run_end(struct gate_state *g, bool serving, bool held)
{
	if (g->stopped && g->budget_stop && !held) {
		g->stopped = g->budget_stop = false;
		g->stop_reason[0] = '\0';
	}
	/* nothing proves the failures were the nodes' own (a one-node
	 * fleet, the rest unreachable) */
	if (!g->stopped && g->canary_failed > 0 && g->canary_ok == 0 &&
	    !serving)
		stop_for_canaries(g, ", and no other node could confirm it");
}
