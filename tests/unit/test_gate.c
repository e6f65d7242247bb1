/* test_gate.c - the canary gate's decisions (src/gate.c): who is the
 * canary, who waits, when the rollout stops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "certfleet/gate.h"

/* decide, and expect an answer */
static enum gate
decided(struct gate_state *g, size_t pos)
{
	enum gate how = (enum gate) - 1;

	assert_true(gate_node_decide(g, pos, &how));
	return how;
}

static void
must_wait(struct gate_state *g, size_t pos)
{
	enum gate how;

	assert_false(gate_node_decide(g, pos, &how));
}

/* One canary: it goes first, the others wait for it, then go. */
static void
test_first_arrival_is_canary(void **state)
{
	struct gate_state g;

	(void)state;
	assert_int_equal(gate_init(&g, 3, 3, 1, 1, 0), 0);
	gate_node_arrived(&g, 1);
	must_wait(&g, 1); /* position 0 is first in queue order */
	gate_node_arrived(&g, 0);
	assert_int_equal(decided(&g, 0), GATE_CANARY);
	must_wait(&g, 1);
	gate_node_left(&g, GATE_CANARY, false, CF_OK, "n0");
	assert_int_equal(decided(&g, 1), GATE_GO);
	gate_node_arrived(&g, 2);
	assert_int_equal(decided(&g, 2), GATE_GO);
	assert_false(g.stopped);
	gate_free(&g);
}

/* No canary (rollback, dry run, rollout.canary 0): everyone goes. */
static void
test_no_canary(void **state)
{
	struct gate_state g;

	(void)state;
	assert_int_equal(gate_init(&g, 2, 2, 0, 1, 0), 0);
	gate_node_arrived(&g, 1);
	assert_int_equal(decided(&g, 1), GATE_GO);
	gate_free(&g);
}

/* An unreachable node never reaches the gate: it is no canary, the
 * role passes to the next node, and its failure counts nowhere. */
static void
test_unreachable_canary_does_not_count(void **state)
{
	struct gate_state g;

	(void)state;
	assert_int_equal(gate_init(&g, 3, 3, 1, 1, 0), 0);
	gate_node_arrived(&g, 1);
	must_wait(&g, 1);
	gate_node_skipped(&g, 0, false); /* n0: timeout before the gate */
	assert_int_equal(decided(&g, 1), GATE_CANARY);
	assert_int_equal(g.canary_failed, 0);
	/* a canary that fails for a host reason (disk full) says nothing
	 * about the certificate: the next node becomes the canary */
	gate_node_left(&g, GATE_CANARY, true, CF_ERR_WRITE, "n1");
	assert_int_equal(g.canary_failed, 0);
	assert_false(g.stopped);
	gate_node_arrived(&g, 2);
	assert_int_equal(decided(&g, 2), GATE_CANARY);
	gate_node_left(&g, GATE_CANARY, false, CF_OK, "n2");
	gate_run_end(&g, false, false);
	assert_false(g.stopped);
	gate_free(&g);
}

/* canary_failures 2: the first failed canary is replaced, the second
 * stops the run, and both are named. */
static void
test_budget_exhausted(void **state)
{
	struct gate_state g;

	(void)state;
	assert_int_equal(gate_init(&g, 4, 4, 1, 2, 0), 0);
	gate_node_arrived(&g, 0);
	gate_node_arrived(&g, 1);
	gate_node_arrived(&g, 2);
	assert_int_equal(decided(&g, 0), GATE_CANARY);
	must_wait(&g, 1);
	gate_node_left(&g, GATE_CANARY, true, CF_ERR_RELOAD, "n0");
	assert_false(g.stopped);
	assert_int_equal(decided(&g, 1), GATE_CANARY);
	must_wait(&g, 2);
	gate_node_left(&g, GATE_CANARY, true, CF_ERR_VERIFY, "n1");
	assert_true(g.stopped);
	assert_int_equal(g.canary_failed, 2);
	assert_string_equal(g.canary_failed_names, "n0, n1");
	/* the first failure's code names the cause */
	assert_string_equal(g.stop_reason,
	                    "canaries n0, n1 failed (reload-failed): rollout "
	                    "stopped, untouched nodes keep their certificate");
	assert_int_equal(decided(&g, 2), GATE_STOPPED);
	gate_node_arrived(&g, 3);
	assert_int_equal(decided(&g, 3), GATE_STOPPED);
	gate_free(&g);
}

/* A failed canary whose successor passes failed for a reason of its
 * own: the rollout goes on. */
static void
test_successor_clears(void **state)
{
	struct gate_state g;

	(void)state;
	assert_int_equal(gate_init(&g, 3, 3, 1, 2, 0), 0);
	gate_node_arrived(&g, 0);
	assert_int_equal(decided(&g, 0), GATE_CANARY);
	gate_node_left(&g, GATE_CANARY, true, CF_ERR_CHECK, "n0");
	gate_node_arrived(&g, 1);
	assert_int_equal(decided(&g, 1), GATE_CANARY);
	gate_node_left(&g, GATE_CANARY, false, CF_OK, "n1");
	gate_node_arrived(&g, 2);
	assert_int_equal(decided(&g, 2), GATE_GO);
	gate_run_end(&g, false, false);
	assert_false(g.stopped);
	assert_int_equal(g.canary_failed, 1);
	gate_free(&g);
}

/* A canary that was chosen and then finds the run stopped does not go. */
static void
test_canary_after_stop(void **state)
{
	struct gate_state g;

	(void)state;
	assert_int_equal(gate_init(&g, 3, 3, 2, 1, 0), 0);
	gate_node_arrived(&g, 0);
	gate_node_arrived(&g, 1);
	/* two canaries at once; the first fails before the second asks */
	gate_node_left(&g, decided(&g, 0), true, CF_ERR_VERIFY, "n0");
	assert_true(g.stopped);
	assert_int_equal(decided(&g, 1), GATE_STOPPED);
	assert_int_equal(g.canary_active, 0);
	gate_free(&g);
}

/* Suspects (quarantined by an earlier run) are queued last: never the
 * canary while a fresh node is left. */
static void
test_suspects_last(void **state)
{
	struct gate_state g;

	(void)state;
	/* queue: n0 fresh, then suspect s1 */
	assert_int_equal(gate_init(&g, 2, 1, 1, 1, 0), 0);
	gate_node_arrived(&g, 1); /* the suspect arrives first */
	must_wait(&g, 1);
	gate_node_arrived(&g, 0);
	assert_int_equal(decided(&g, 0), GATE_CANARY);
	must_wait(&g, 1);
	gate_node_left(&g, GATE_CANARY, false, CF_OK, "n0");
	assert_int_equal(decided(&g, 1), GATE_GO);
	gate_free(&g);
}

/* Only suspects left and another node already serves the certificate:
 * it is proven, the suspects go without a canary, and one failing again
 * is its own fault. */
static void
test_suspects_proven(void **state)
{
	struct gate_state g;

	(void)state;
	assert_int_equal(gate_init(&g, 3, 1, 1, 1, 0), 0);
	gate_node_skipped(&g, 0, true); /* n0 already serves it */
	gate_node_arrived(&g, 1);
	assert_int_equal(decided(&g, 1), GATE_GO);
	assert_true(g.proven);
	gate_node_left(&g, GATE_GO, true, CF_ERR_CHECK, "s1");
	assert_false(g.stopped);
	gate_node_arrived(&g, 2);
	assert_int_equal(decided(&g, 2), GATE_GO);
	gate_run_end(&g, true, false);
	assert_false(g.stopped);
	gate_free(&g);
}

/* Only suspects and nothing serves the certificate: a suspect must be
 * the canary, and its failure (unconfirmed) stops the run. */
static void
test_suspect_canary_when_unproven(void **state)
{
	struct gate_state g;

	(void)state;
	assert_int_equal(gate_init(&g, 2, 0, 1, 2, 0), 0);
	gate_node_arrived(&g, 0);
	gate_node_arrived(&g, 1);
	assert_int_equal(decided(&g, 0), GATE_CANARY);
	must_wait(&g, 1);
	gate_node_left(&g, GATE_CANARY, true, CF_ERR_CHECK, "s0");
	assert_false(g.stopped); /* budget 2: s1 confirms or clears */
	assert_int_equal(decided(&g, 1), GATE_CANARY);
	gate_node_left(&g, GATE_CANARY, true, CF_ERR_CHECK, "s1");
	assert_true(g.stopped);
	gate_free(&g);
}

/* The exhaust rule: canaries failed, none passed, and no node serves the
 * certificate (a one-node fleet, the rest unreachable): stop, even under
 * the budget. */
static void
test_exhaust_nothing_confirms(void **state)
{
	struct gate_state g;

	(void)state;
	assert_int_equal(gate_init(&g, 2, 2, 1, 2, 0), 0);
	gate_node_arrived(&g, 0);
	assert_int_equal(decided(&g, 0), GATE_CANARY);
	gate_node_left(&g, GATE_CANARY, true, CF_ERR_VERIFY, "n0");
	gate_node_skipped(&g, 1, false); /* n1 unreachable */
	assert_false(g.stopped);
	gate_run_end(&g, false, false);
	assert_true(g.stopped);
	assert_string_equal(g.stop_reason,
	                    "canary n0 failed (verify-failed), and no other "
	                    "node could confirm it: rollout stopped, untouched "
	                    "nodes keep their certificate");
	gate_free(&g);
}

/* ...but a node serving the certificate confirms it works elsewhere, and
 * a canary that passed clears it: no stop. */
static void
test_exhaust_confirmed(void **state)
{
	struct gate_state g;

	(void)state;
	assert_int_equal(gate_init(&g, 2, 2, 1, 2, 0), 0);
	gate_node_arrived(&g, 0);
	assert_int_equal(decided(&g, 0), GATE_CANARY);
	gate_node_left(&g, GATE_CANARY, true, CF_ERR_VERIFY, "n0");
	gate_node_skipped(&g, 1, true);
	gate_run_end(&g, true, false);
	assert_false(g.stopped);
	/* no canary failed: nothing to confirm */
	gate_free(&g);
	assert_int_equal(gate_init(&g, 1, 1, 1, 1, 0), 0);
	gate_node_skipped(&g, 0, false);
	gate_run_end(&g, false, false);
	assert_false(g.stopped);
	gate_free(&g);
}

/* rollout.max_failures counts check/reload/verify failures of any node,
 * canary or not; unreachable ones never count. */
static void
test_max_failures(void **state)
{
	struct gate_state g;

	(void)state;
	assert_int_equal(gate_init(&g, 4, 4, 0, 1, 2), 0);
	gate_node_left(&g, GATE_GO, true, CF_ERR_TIMEOUT, "n0");
	gate_node_left(&g, GATE_GO, true, CF_ERR_RELOAD, "n1");
	assert_false(g.stopped);
	gate_node_left(&g, GATE_GO, true, CF_ERR_CHECK, "n2");
	assert_true(g.stopped);
	assert_string_equal(g.stop_reason,
	                    "2 nodes failed check/reload/verify "
	                    "(rollout.max_failures): rollout stopped");
	gate_node_arrived(&g, 3);
	assert_int_equal(decided(&g, 3), GATE_STOPPED);
	gate_free(&g);
}

/* A budget spent by the last nodes, with none left to start, stopped
 * nothing: the run ends partial, not stopped.  Spent while nodes were
 * still waiting, it stays a stop. */
static void
test_max_failures_nothing_left(void **state)
{
	struct gate_state g;

	(void)state;
	assert_int_equal(gate_init(&g, 2, 2, 0, 1, 1), 0);
	gate_node_left(&g, GATE_GO, false, CF_OK, "n0");
	gate_node_left(&g, GATE_GO, true, CF_ERR_CHECK, "n1");
	assert_true(g.stopped);
	gate_run_end(&g, true, false);
	assert_false(g.stopped);
	assert_string_equal(g.stop_reason, "");
	gate_free(&g);

	assert_int_equal(gate_init(&g, 2, 2, 0, 1, 1), 0);
	gate_node_left(&g, GATE_GO, true, CF_ERR_CHECK, "n0");
	gate_run_end(&g, false, true);
	assert_true(g.stopped);
	gate_free(&g);
}

/* canary larger than the queue: capped, so the gate cannot wait for
 * canaries that will never come. */
static void
test_target_capped(void **state)
{
	struct gate_state g;

	(void)state;
	assert_int_equal(gate_init(&g, 2, 2, 5, 1, 0), 0);
	assert_int_equal(g.canary_target, 2);
	gate_node_arrived(&g, 0);
	gate_node_arrived(&g, 1);
	assert_int_equal(decided(&g, 0), GATE_CANARY);
	assert_int_equal(decided(&g, 1), GATE_CANARY);
	gate_free(&g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_arrival_is_canary),
	    cmocka_unit_test(test_no_canary),
	    cmocka_unit_test(test_unreachable_canary_does_not_count),
	    cmocka_unit_test(test_budget_exhausted),
	    cmocka_unit_test(test_successor_clears),
	    cmocka_unit_test(test_canary_after_stop),
	    cmocka_unit_test(test_suspects_last),
	    cmocka_unit_test(test_suspects_proven),
	    cmocka_unit_test(test_suspect_canary_when_unproven),
	    cmocka_unit_test(test_exhaust_nothing_confirms),
	    cmocka_unit_test(test_exhaust_confirmed),
	    cmocka_unit_test(test_max_failures),
	    cmocka_unit_test(test_max_failures_nothing_left),
	    cmocka_unit_test(test_target_capped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
