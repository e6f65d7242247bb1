/* test_fleetstate.c - every transition of a node's record
 * (src/fleetstate.c): failed, quarantined, released, pinned, observed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "certfleet/fleetstate.h"
#include "certfleet/util.h"

#define CUR "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define OLD "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static struct cf_node n1 = {"n1", "10.0.0.1", 22, "root"};

static struct cf_node_result
result(cf_outcome_t outcome, const char *serves, bool touched, cf_code_t code,
       const char *msg)
{
	struct cf_node_result r;

	memset(&r, 0, sizeof(r));
	r.node = &n1;
	r.outcome = outcome;
	r.touched = touched;
	if (serves != NULL) {
		strcpy(r.after_sha256, serves);
		r.after_not_after = 5000;
	}
	if (code != CF_OK)
		cf_err_set(&r.err, code, "%s", msg);
	return r;
}

/* fleet_record one result on ns; returns the change */
static fleet_change_t
record(struct cf_node_states *ns, struct cf_node_result r, const char *cur,
       int64_t now, struct fleet_note *note)
{
	assert_int_equal(fleet_record(ns, &r, cur, now, note), 0);
	return note->change;
}

static void
test_observe(void **state)
{
	struct cf_node_state st;

	(void)state;
	memset(&st, 0, sizeof(st));
	fleet_observe(&st, CUR, 5000, 100);
	assert_string_equal(st.serving_sha256, CUR);
	assert_int_equal(st.serving_not_after, 5000);
	assert_int_equal(st.last_seen, 100);
	/* not seen (unreachable): what it served last time stays */
	fleet_observe(&st, "", 0, 200);
	fleet_observe(&st, NULL, 0, 200);
	assert_string_equal(st.serving_sha256, CUR);
	assert_int_equal(st.last_seen, 100);
}

/* Skipped, stopped and dry-run nodes: no record is even created. */
static void
test_untouched(void **state)
{
	struct cf_node_states ns = {0};
	struct fleet_note note;
	cf_outcome_t o[] = {CF_OUT_SKIPPED, CF_OUT_STOPPED, CF_OUT_DRYRUN};

	(void)state;
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(record(&ns,
		                        result(o[i], CUR, false, CF_OK, NULL),
		                        CUR, 100, &note),
		                 FLEET_UNTOUCHED);
	assert_int_equal(ns.n, 0);
}

/* First failure alerts; the same cause again counts without alerting; a
 * new cause alerts again.  "since" is the first failure's time. */
static void
test_failed_and_again(void **state)
{
	struct cf_node_states ns = {0};
	struct fleet_note note;
	const struct cf_node_state *st;

	(void)state;
	assert_int_equal(record(&ns,
	                        result(CF_OUT_FAILED, NULL, false,
	                               CF_ERR_TIMEOUT, "no answer"),
	                        CUR, 100, &note),
	                 FLEET_QUARANTINED);
	assert_int_equal(note.attempts, 1);
	st = fleet_find(&ns, "n1");
	assert_non_null(st);
	assert_true(st->quarantined);
	assert_false(st->manual);
	assert_true(fleet_is_suspect(st));
	assert_string_equal(st->reason, "timeout");
	assert_string_equal(st->detail, "no answer");
	assert_int_equal(st->quarantined_since, 100);
	/* unreachable: nothing observed */
	assert_string_equal(st->serving_sha256, "");

	assert_int_equal(record(&ns,
	                        result(CF_OUT_FAILED, NULL, false,
	                               CF_ERR_TIMEOUT, "still nothing"),
	                        CUR, 200, &note),
	                 FLEET_FAILED_AGAIN);
	assert_int_equal(note.attempts, 2);
	assert_int_equal(st->quarantined_since, 100);
	assert_string_equal(st->detail, "still nothing");

	assert_int_equal(record(&ns,
	                        result(CF_OUT_FAILED, OLD, true, CF_ERR_CHECK,
	                               "nginx -t"),
	                        CUR, 300, &note),
	                 FLEET_QUARANTINED);
	assert_int_equal(note.attempts, 3);
	assert_string_equal(st->reason, "check-failed");
	assert_string_equal(st->serving_sha256, OLD);
	assert_int_equal(st->last_seen, 300);
	store_nodes_free(&ns);
}

/* A read-only probe (verify, or an unchanged-node check) that finds a
 * quarantined node not serving the current certificate must not replace
 * the real cause (host key, disk...) with "verify"; what it serves is
 * still noted. */
static void
test_failed_verify_keeps_cause(void **state)
{
	struct cf_node_states ns = {0};
	struct fleet_note note;
	const struct cf_node_state *st;

	(void)state;
	record(&ns,
	       result(CF_OUT_FAILED, NULL, false, CF_ERR_HOSTKEY_CHANGED,
	              "host key changed"),
	       CUR, 100, &note);
	st = fleet_find(&ns, "n1");
	assert_int_equal(record(&ns,
	                        result(CF_OUT_FAILED, OLD, false, CF_ERR_VERIFY,
	                               "serves old"),
	                        CUR, 200, &note),
	                 FLEET_CAUSE_KEPT);
	assert_string_equal(st->reason, "hostkey-changed");
	assert_int_equal(st->attempts, 1);
	assert_string_equal(st->serving_sha256, OLD);
	/* a verify failure after certfleet changed files is a real one */
	assert_int_equal(record(&ns,
	                        result(CF_OUT_FAILED, OLD, true, CF_ERR_VERIFY,
	                               "serves old"),
	                        CUR, 300, &note),
	                 FLEET_QUARANTINED);
	assert_string_equal(st->reason, "verify-failed");
	assert_int_equal(st->attempts, 2);
	store_nodes_free(&ns);
}

/* On a clean node a failed verify quarantines like any failure. */
static void
test_failed_verify_clean_node(void **state)
{
	struct cf_node_states ns = {0};
	struct fleet_note note;

	(void)state;
	assert_int_equal(record(&ns,
	                        result(CF_OUT_FAILED, OLD, false, CF_ERR_VERIFY,
	                               "serves old"),
	                        CUR, 100, &note),
	                 FLEET_QUARANTINED);
	assert_string_equal(fleet_find(&ns, "n1")->reason, "verify-failed");
	store_nodes_free(&ns);
}

/* Verified serving the current certificate: success, and the quarantine
 * lifted, told with the reason it had. */
static void
test_success_releases(void **state)
{
	struct cf_node_states ns = {0};
	struct fleet_note note;
	const struct cf_node_state *st;

	(void)state;
	assert_int_equal(record(&ns,
	                        result(CF_OUT_DEPLOYED, CUR, true, CF_OK, NULL),
	                        CUR, 100, &note),
	                 FLEET_SUCCEEDED);
	st = fleet_find(&ns, "n1");
	assert_int_equal(st->last_success, 100);
	assert_int_equal(st->last_change, 100);
	assert_null(note.was_reason);

	record(&ns, result(CF_OUT_FAILED, NULL, false, CF_ERR_REFUSED, "rst"),
	       CUR, 200, &note);
	record(&ns, result(CF_OUT_FAILED, NULL, false, CF_ERR_REFUSED, "rst"),
	       CUR, 300, &note);
	/* unchanged (already serving it): released too, no file change */
	assert_int_equal(record(&ns,
	                        result(CF_OUT_UNCHANGED, CUR, false, CF_OK,
	                               NULL),
	                        CUR, 400, &note),
	                 FLEET_RELEASED);
	assert_string_equal(note.was_reason, "refused");
	assert_int_equal(note.attempts, 2);
	free(note.was_reason);
	assert_false(st->quarantined);
	assert_int_equal(st->attempts, 0);
	assert_int_equal(st->quarantined_since, 0);
	assert_null(st->reason);
	assert_null(st->detail);
	assert_int_equal(st->last_success, 400);
	assert_int_equal(st->last_change, 100);
	store_nodes_free(&ns);
}

/* Not a success: serving something else, or no current certificate to
 * compare with (http-01 failures only). */
static void
test_success_needs_current(void **state)
{
	struct cf_node_states ns = {0};
	struct fleet_note note;
	const struct cf_node_state *st;

	(void)state;
	record(&ns, result(CF_OUT_FAILED, NULL, false, CF_ERR_AUTH, "denied"),
	       CUR, 100, &note);
	st = fleet_find(&ns, "n1");
	assert_int_equal(record(&ns,
	                        result(CF_OUT_UNCHANGED, OLD, false, CF_OK,
	                               NULL),
	                        CUR, 200, &note),
	                 FLEET_OBSERVED);
	assert_int_equal(record(&ns,
	                        result(CF_OUT_DEPLOYED, CUR, true, CF_OK, NULL),
	                        NULL, 300, &note),
	                 FLEET_OBSERVED);
	assert_true(st->quarantined);
	assert_int_equal(st->last_success, 0);
	assert_int_equal(st->last_change, 300);
	assert_string_equal(st->serving_sha256, CUR);
	store_nodes_free(&ns);
}

/* Pinning: manual, reason "manual", since kept when already
 * quarantined; skipped by rollouts unless named. */
static void
test_pin(void **state)
{
	struct cf_node_states ns = {0};
	struct cf_node_state *st;
	char **v;
	char *only[] = {"n1", NULL};

	(void)state;
	st = store_node(&ns, "n1");
	fleet_pin(st, "maintenance", 100);
	assert_true(fleet_is_pinned(st));
	assert_false(fleet_is_suspect(st));
	assert_string_equal(st->reason, "manual");
	assert_string_equal(st->detail, "maintenance");
	assert_int_equal(st->quarantined_since, 100);
	fleet_pin(st, "still", 200);
	assert_int_equal(st->quarantined_since, 100);
	assert_string_equal(st->detail, "still");

	v = fleet_pinned_names(&ns, NULL);
	assert_non_null(v);
	assert_string_equal(v[0], "n1");
	assert_null(v[1]);
	cf_strv_free(v);
	v = fleet_pinned_names(&ns, only); /* --only n1 overrides the pin */
	assert_null(v[0]);
	cf_strv_free(v);
	v = fleet_suspect_names(&ns);
	assert_null(v[0]);
	cf_strv_free(v);

	/* an automatic quarantine pinned keeps its since and attempts */
	st = store_node(&ns, "n2");
	fleet_failed(st, "timeout", "x", 50);
	fleet_pin(st, "rolled back", 300);
	assert_int_equal(st->quarantined_since, 50);
	assert_int_equal(st->attempts, 1);
	assert_true(fleet_is_pinned(st));
	store_nodes_free(&ns);
}

/* A pinned node the operator named (--only): a success releases the pin
 * like any quarantine; a failure makes it an automatic quarantine (a
 * suspect, retried by the next runs). */
static void
test_pinned_node_named(void **state)
{
	struct cf_node_states ns = {0};
	struct fleet_note note;
	struct cf_node_state *st;

	(void)state;
	st = store_node(&ns, "n1");
	fleet_pin(st, "maintenance", 100);
	assert_int_equal(record(&ns,
	                        result(CF_OUT_DEPLOYED, CUR, true, CF_OK, NULL),
	                        CUR, 200, &note),
	                 FLEET_RELEASED);
	assert_string_equal(note.was_reason, "manual");
	free(note.was_reason);
	assert_false(st->quarantined);
	assert_false(st->manual);

	fleet_pin(st, "maintenance", 300);
	assert_int_equal(record(&ns,
	                        result(CF_OUT_FAILED, NULL, false,
	                               CF_ERR_TIMEOUT, "t"),
	                        CUR, 400, &note),
	                 FLEET_QUARANTINED);
	assert_false(st->manual);
	assert_true(fleet_is_suspect(st));
	assert_int_equal(st->quarantined_since, 300);
	store_nodes_free(&ns);
}

/* `quarantine release`: back to clean; nothing verified, so no success
 * time; a clean node is left alone. */
static void
test_release(void **state)
{
	struct cf_node_states ns = {0};
	struct cf_node_state *st;

	(void)state;
	st = store_node(&ns, "n1");
	assert_false(fleet_release(st));
	fleet_failed(st, "timeout", "x", 100);
	fleet_failed(st, "timeout", "x", 200);
	assert_true(fleet_release(st));
	assert_false(st->quarantined);
	assert_false(st->manual);
	assert_int_equal(st->attempts, 0);
	assert_int_equal(st->quarantined_since, 0);
	assert_null(st->reason);
	assert_null(st->detail);
	assert_int_equal(st->last_success, 0);
	fleet_pin(st, "p", 300);
	assert_true(fleet_release(st));
	assert_false(fleet_is_pinned(st));
	store_nodes_free(&ns);
}

/* verify stores nothing: only what it saw is noted, records created for
 * nodes seen, none for nodes not seen. */
static void
test_observe_result(void **state)
{
	struct cf_node_states ns = {0};
	struct cf_node_result r =
	    result(CF_OUT_FAILED, NULL, false, CF_ERR_TIMEOUT, "t");

	(void)state;
	assert_int_equal(fleet_observe_result(&ns, &r, 100), 0);
	assert_int_equal(ns.n, 0);
	r = result(CF_OUT_FAILED, OLD, false, CF_ERR_VERIFY, "old");
	assert_int_equal(fleet_observe_result(&ns, &r, 100), 0);
	assert_int_equal(ns.n, 1);
	assert_string_equal(ns.v[0].serving_sha256, OLD);
	assert_false(ns.v[0].quarantined);
	assert_null(fleet_find(&ns, "n9"));
	store_nodes_free(&ns);
}

/* Suspects: automatic quarantines only, in record order. */
static void
test_suspects(void **state)
{
	struct cf_node_states ns = {0};
	char **v;

	(void)state;
	fleet_failed(store_node(&ns, "a"), "timeout", "x", 1);
	fleet_pin(store_node(&ns, "b"), "p", 1);
	(void)store_node(&ns, "c");
	fleet_failed(store_node(&ns, "d"), "check-failed", "x", 1);
	v = fleet_suspect_names(&ns);
	assert_string_equal(v[0], "a");
	assert_string_equal(v[1], "d");
	assert_null(v[2]);
	cf_strv_free(v);
	store_nodes_free(&ns);
}

/* Drift an audit could not fix is kept with when it was seen; a later
 * audit that finds none clears it; a run that did not audit (verify, an
 * unreachable node) leaves it as it was. */
static void
test_drift(void **state)
{
	struct cf_node_states ns = {0};
	struct fleet_note note;
	struct cf_node_result r =
	    result(CF_OUT_UNCHANGED, CUR, false, CF_OK, NULL);
	const struct cf_node_state *st;

	(void)state;
	r.audited = true;
	strcpy(r.drift, "/srv/tls/privkey.pem owner nobody (want root)");
	record(&ns, r, CUR, 100, &note);
	st = store_node_find(&ns, "n1");
	assert_non_null(st);
	assert_string_equal(st->drift, r.drift);
	assert_int_equal(st->drift_seen, 100);
	r.audited = false;
	r.drift[0] = '\0';
	record(&ns, r, CUR, 200, &note);
	assert_non_null(st->drift);
	assert_int_equal(st->drift_seen, 100);
	r.audited = true;
	record(&ns, r, CUR, 300, &note);
	assert_null(st->drift);
	assert_int_equal(st->drift_seen, 0);
	store_nodes_free(&ns);
}

/* c := a check of port/proto under sni; ok, or failed with code */
static void
check(struct cf_endpoint_check *c, unsigned port, starttls_proto_t proto,
      const char *sni, cf_code_t code)
{
	memset(c, 0, sizeof(*c));
	c->port = port;
	c->starttls = proto;
	c->sni = sni;
	c->ok = code == CF_OK;
	if (code != CF_OK)
		cf_err_set(&c->err, code, "%s:%u failed", sni, port);
}

static void
assert_pair(const struct cf_node_state *st, unsigned port,
            starttls_proto_t proto, const char *sni, bool ok,
            const char *reason, int64_t seen)
{
	const struct cf_endpoint_state *e =
	    fleet_endpoint_find(st, port, proto, sni);

	if (e == NULL)
		fail_msg("no record of %u/%s/%s", port,
		         starttls_proto_name(proto), sni);
	assert_int_equal(e->ok, ok);
	if (reason == NULL)
		assert_null(e->reason);
	else
		assert_string_equal(e->reason, reason);
	assert_int_equal(e->seen, seen);
}

/* The last result of each endpoint x SNI pair: a pair checked is
 * replaced, a pair not checked keeps its last result and time, the
 * passing pairs of a rolled-back node keep their earlier record, and an
 * all-passing result (every pair checked) replaces the list. */
static void
test_endpoints(void **state)
{
	struct cf_node_states ns = {0};
	struct cf_endpoint_check c[4];
	struct fleet_note note;
	struct cf_node_result r =
	    result(CF_OUT_FAILED, CUR, false, CF_ERR_VERIFY_NAME, "www");
	const struct cf_node_state *st;

	(void)state;
	/* verify: every pair looked at; 25 implicit and 25 STARTTLS are
	 * different pairs */
	check(&c[0], 443, STARTTLS_NONE, "a.test", CF_OK);
	check(&c[1], 443, STARTTLS_NONE, "www.a.test", CF_ERR_VERIFY_NAME);
	check(&c[2], 25, STARTTLS_SMTP, "a.test", CF_OK);
	check(&c[3], 25, STARTTLS_NONE, "a.test", CF_ERR_TLS);
	r.checks = c;
	r.n_checks = 4;
	assert_int_equal(fleet_observe_result(&ns, &r, 100), 0);
	st = fleet_find(&ns, "n1");
	assert_non_null(st);
	assert_int_equal(st->n_endpoints, 4);
	assert_pair(st, 443, STARTTLS_NONE, "a.test", true, NULL, 100);
	assert_pair(st, 443, STARTTLS_NONE, "WWW.a.test", false, "verify-name",
	            100);
	assert_pair(st, 25, STARTTLS_SMTP, "a.test", true, NULL, 100);
	assert_pair(st, 25, STARTTLS_NONE, "a.test", false, "tls", 100);
	assert_null(fleet_endpoint_find(st, 25, STARTTLS_IMAP, "a.test"));
	assert_false(st->quarantined); /* observed only */

	/* a deploy stops at the first failing pair: the others keep theirs */
	check(&c[0], 443, STARTTLS_NONE, "a.test", CF_ERR_VERIFY_CHAIN);
	r.n_checks = 1;
	record(&ns, r, CUR, 200, &note);
	st = fleet_find(&ns, "n1");
	assert_int_equal(st->n_endpoints, 4);
	assert_pair(st, 443, STARTTLS_NONE, "a.test", false, "verify-chain",
	            200);
	assert_pair(st, 443, STARTTLS_NONE, "www.a.test", false, "verify-name",
	            100);
	assert_pair(st, 25, STARTTLS_SMTP, "a.test", true, NULL, 100);

	/* rolled back: the pair that passed served files the rollback
	 * undid, it keeps its earlier record; the failing one is recorded */
	check(&c[0], 443, STARTTLS_NONE, "a.test", CF_OK);
	check(&c[1], 443, STARTTLS_NONE, "www.a.test", CF_ERR_VERIFY_TRUST);
	r.n_checks = 2;
	r.touched = true;
	r.rolled_back = true;
	record(&ns, r, CUR, 300, &note);
	st = fleet_find(&ns, "n1");
	assert_pair(st, 443, STARTTLS_NONE, "a.test", false, "verify-chain",
	            200);
	assert_pair(st, 443, STARTTLS_NONE, "www.a.test", false, "verify-trust",
	            300);

	/* unreachable: nothing checked, nothing changes */
	r = result(CF_OUT_FAILED, NULL, false, CF_ERR_TIMEOUT, "t");
	record(&ns, r, CUR, 400, &note);
	st = fleet_find(&ns, "n1");
	assert_int_equal(st->n_endpoints, 4);
	assert_pair(st, 25, STARTTLS_NONE, "a.test", false, "tls", 100);

	/* a pair first seen failing after a partial check is added */
	r = result(CF_OUT_FAILED, CUR, false, CF_ERR_VERIFY_ENDPOINT, "x");
	check(&c[0], 587, STARTTLS_SMTP, "a.test", CF_ERR_VERIFY_ENDPOINT);
	r.checks = c;
	r.n_checks = 1;
	record(&ns, r, CUR, 450, &note);
	st = fleet_find(&ns, "n1");
	assert_int_equal(st->n_endpoints, 5);
	assert_pair(st, 587, STARTTLS_SMTP, "a.test", false, "verify-endpoint",
	            450);

	/* every pair passed (the playbook now has two): the list is
	 * exactly those, the others are gone */
	r = result(CF_OUT_UNCHANGED, CUR, false, CF_OK, NULL);
	check(&c[0], 443, STARTTLS_NONE, "a.test", CF_OK);
	check(&c[1], 443, STARTTLS_NONE, "www.a.test", CF_OK);
	r.checks = c;
	r.n_checks = 2;
	record(&ns, r, CUR, 500, &note);
	st = fleet_find(&ns, "n1");
	assert_int_equal(st->n_endpoints, 2);
	assert_pair(st, 443, STARTTLS_NONE, "a.test", true, NULL, 500);
	assert_pair(st, 443, STARTTLS_NONE, "www.a.test", true, NULL, 500);
	assert_null(fleet_endpoint_find(st, 25, STARTTLS_SMTP, "a.test"));
	free(note.was_reason); /* the release hands it over */
	store_nodes_free(&ns);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_observe),
	    cmocka_unit_test(test_untouched),
	    cmocka_unit_test(test_failed_and_again),
	    cmocka_unit_test(test_failed_verify_keeps_cause),
	    cmocka_unit_test(test_failed_verify_clean_node),
	    cmocka_unit_test(test_success_releases),
	    cmocka_unit_test(test_success_needs_current),
	    cmocka_unit_test(test_pin),
	    cmocka_unit_test(test_pinned_node_named),
	    cmocka_unit_test(test_release),
	    cmocka_unit_test(test_observe_result),
	    cmocka_unit_test(test_suspects),
	    cmocka_unit_test(test_drift),
	    cmocka_unit_test(test_endpoints),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
