/* test_renewal.c - the one "is it due / when" rule renew, status and
 * check share (src/renewal.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "certfleet/renewal.h"

#define DAY 86400

static char *names_ab[] = {"a.example", "b.example"};

static void
cert(struct cf_certinfo *ci, int64_t nb, int64_t na)
{
	memset(ci, 0, sizeof(*ci));
	ci->not_before = nb;
	ci->not_after = na;
	ci->names = names_ab;
	ci->n_names = 2;
}

static void
test_before(void **state)
{
	struct cf_certinfo ci;

	(void)state;
	cert(&ci, 0, 90 * DAY);
	assert_int_equal(renewal_before(0, &ci), 30 * DAY);
	assert_int_equal(renewal_before(10, &ci), 10 * DAY);
	cert(&ci, 0, 6 * DAY);
	assert_int_equal(renewal_before(0, &ci), 2 * DAY);
}

static void
test_lifetime(void **state)
{
	struct cf_certinfo ci;
	struct cf_renewal_due d;
	char *want[] = {"a.example"};

	(void)state;
	cert(&ci, 0, 90 * DAY);
	renewal_due(want, 1, 0, &ci, NULL, NULL, 10 * DAY, &d);
	assert_false(d.due);
	assert_int_equal(d.next_due, 60 * DAY);
	assert_string_equal(d.basis, "lifetime");
	assert_non_null(strstr(d.why, "not due before 1970-03-02"));
	renewal_due(want, 1, 0, &ci, NULL, NULL, 60 * DAY, &d);
	assert_true(d.due);
	assert_int_equal(d.next_due, 60 * DAY);
	assert_non_null(strstr(d.why, "less than 30.0 days left"));
	/* renew_before_days beyond the lifetime: due at once */
	renewal_due(want, 1, 100, &ci, NULL, NULL, 1, &d);
	assert_true(d.due);
}

static void
test_no_cert_and_domains(void **state)
{
	struct cf_certinfo ci;
	struct cf_renewal_due d;
	char *want[] = {"a.example", "C.example"};
	char *want_case[] = {"A.EXAMPLE"};

	(void)state;
	renewal_due(want, 2, 0, NULL, NULL, NULL, 0, &d);
	assert_true(d.due);
	assert_int_equal(d.next_due, 0);
	assert_string_equal(d.basis, "no-certificate");
	cert(&ci, 0, 90 * DAY);
	renewal_due(want, 2, 0, &ci, NULL, NULL, 0, &d);
	assert_true(d.due);
	assert_string_equal(d.basis, "domains-changed");
	renewal_due(want_case, 1, 0, &ci, NULL, NULL, 0, &d);
	assert_false(d.due); /* DNS names compare case-insensitively */
}

static void
test_ari(void **state)
{
	struct cf_certinfo ci;
	struct cf_renewal_state rs;
	struct cf_renewal_due d;
	char *want[] = {"a.example"};

	(void)state;
	cert(&ci, 0, 90 * DAY);
	memset(&rs, 0, sizeof(rs));
	rs.ari_cert_id = "AAA.BBB";
	rs.ari_window_start = 19 * DAY;
	rs.ari_chosen = 20 * DAY;
	/* earlier than the lifetime rule: next due is the ARI time */
	renewal_due(want, 1, 0, &ci, &rs, "AAA.BBB", 10 * DAY, &d);
	assert_false(d.due);
	assert_int_equal(d.next_due, 20 * DAY);
	assert_string_equal(d.basis, "ari");
	assert_non_null(strstr(d.why, "(ARI)"));
	renewal_due(want, 1, 0, &ci, &rs, "AAA.BBB", 20 * DAY, &d);
	assert_true(d.due);
	assert_non_null(strstr(d.why, "renewal window (ARI)"));
	/* an answer about another certificate is ignored */
	renewal_due(want, 1, 0, &ci, &rs, "CCC.DDD", 20 * DAY, &d);
	assert_false(d.due);
	assert_string_equal(d.basis, "lifetime");
	/* a window later than the lifetime rule does not delay renewal */
	rs.ari_chosen = 80 * DAY;
	renewal_due(want, 1, 0, &ci, &rs, "AAA.BBB", 61 * DAY, &d);
	assert_true(d.due);
	assert_string_equal(d.basis, "lifetime");
}

/* The CA's window already behind us (the run after an outage, or a CA
 * asking for an immediate renewal): due at once, on ARI's account. */
static void
test_ari_window_in_the_past(void **state)
{
	struct cf_certinfo ci;
	struct cf_renewal_state rs;
	struct cf_renewal_due d;
	char *want[] = {"a.example"};

	(void)state;
	cert(&ci, 10 * DAY, 100 * DAY);
	memset(&rs, 0, sizeof(rs));
	rs.ari_cert_id = "AAA.BBB";
	rs.ari_window_start = 2 * DAY; /* before the cert was even issued */
	rs.ari_chosen = 3 * DAY;
	rs.ari_explanation = "https://ca.test/incident";
	renewal_due(want, 1, 0, &ci, &rs, "AAA.BBB", 20 * DAY, &d);
	assert_true(d.due);
	assert_int_equal(d.next_due, 3 * DAY);
	assert_string_equal(d.basis, "ari");
	assert_non_null(strstr(d.why, "renewal window (ARI) opened "
	                              "1970-01-03"));
	assert_non_null(strstr(d.why, ": see https://ca.test/incident"));
	/* no time picked (ari_chosen 0): the lifetime rule alone */
	rs.ari_chosen = 0;
	renewal_due(want, 1, 0, &ci, &rs, "AAA.BBB", 20 * DAY, &d);
	assert_false(d.due);
	assert_string_equal(d.basis, "lifetime");
	/* no ARI id for the certificate: the stored answer is not used */
	rs.ari_chosen = 3 * DAY;
	renewal_due(want, 1, 0, &ci, &rs, NULL, 20 * DAY, &d);
	assert_false(d.due);
	assert_string_equal(d.basis, "lifetime");
}

/* Due exactly at the boundary, not a second before. */
static void
test_boundary(void **state)
{
	struct cf_certinfo ci;
	struct cf_renewal_due d;
	char *want[] = {"b.example"};

	(void)state;
	cert(&ci, 0, 90 * DAY);
	renewal_due(want, 1, 0, &ci, NULL, NULL, 60 * DAY - 1, &d);
	assert_false(d.due);
	renewal_due(want, 1, 0, &ci, NULL, NULL, 60 * DAY, &d);
	assert_true(d.due);
	/* already expired: due, on the lifetime rule */
	renewal_due(want, 1, 0, &ci, NULL, NULL, 100 * DAY, &d);
	assert_true(d.due);
	assert_string_equal(d.basis, "lifetime");
}

/* check's thresholds: a quarter and half into the renewal window; a
 * window of the whole lifetime or more counts as automatic (a third),
 * while renew itself stays due at once (test_lifetime). */
static void
test_check_thresholds(void **state)
{
	struct cf_certinfo ci;
	double warn, crit;

	(void)state;
	cert(&ci, 0, 90 * DAY);
	renewal_check_thresholds(0, &ci, &warn, &crit);
	assert_true(warn == 22.5 && crit == 15);
	renewal_check_thresholds(20, &ci, &warn, &crit);
	assert_true(warn == 15 && crit == 10);
	renewal_check_thresholds(89.5, &ci, &warn, &crit);
	assert_true(warn > 67 && crit > 44);
	renewal_check_thresholds(90, &ci, &warn, &crit);
	assert_true(warn == 22.5 && crit == 15);
	renewal_check_thresholds(3649, &ci, &warn, &crit);
	assert_true(warn == 22.5 && crit == 15);
	cert(&ci, 0, 6 * DAY);
	renewal_check_thresholds(0, &ci, &warn, &crit);
	assert_true(warn == 1.5 && crit == 1);
	renewal_check_thresholds(30, &ci, &warn, &crit);
	assert_true(warn == 1.5 && crit == 1);
}

int
main(void)
{
	static const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_before),
	    cmocka_unit_test(test_lifetime),
	    cmocka_unit_test(test_no_cert_and_domains),
	    cmocka_unit_test(test_ari),
	    cmocka_unit_test(test_ari_window_in_the_past),
	    cmocka_unit_test(test_boundary),
	    cmocka_unit_test(test_check_thresholds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
