/* renewal.h - when is a certificate due for renewal.  One rule, used by
 * `renew` (to decide), `status` (to show when) and `check` (to scale its
 * thresholds), so the three can never disagree.  Pure: no network, no
 * store I/O; the ARI answer `renew` fetched lives in cf_renewal_state. */
#ifndef CERTFLEET_RENEWAL_H
#define CERTFLEET_RENEWAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certfleet/crypto.h"
#include "certfleet/store.h"

/* Seconds before not_after at which renewal is due:
 * acme.renew_before_days when > 0, else a third of the lifetime. */
int64_t renewal_before(double renew_before_days, const struct cf_certinfo *ci);

/* `check`'s default thresholds in days before expiry: WARNING a quarter
 * into the renewal window (renewal is overdue), CRITICAL halfway through
 * it: lifetime/4 and lifetime/6 with the automatic window (22.5 and 15
 * days for 90-day certificates, 1.5 and 1 for 6-day ones).  A
 * renew_before_days of the whole lifetime or more counts as automatic. */
void
renewal_check_thresholds(double renew_before_days, const struct cf_certinfo *ci,
                         double *warn_days, double *crit_days);

struct cf_renewal_due {
	bool due;
	/* when it is (or became) due, epoch seconds; 0 = now, with no date
	 * to give (no certificate yet, the domains changed) */
	int64_t next_due;
	const char *basis; /* "no-certificate", "domains-changed",
			      "lifetime" or "ari" (static) */
	char why[512];     /* one human line: why due, or "not due before" */
};

/* The decision for certificate ci (NULL: none in the store) against the
 * playbook's domains: due when none, when the domains are not all
 * covered, when less than renewal_before() remains, or when the ARI time
 * picked in rs (only if rs->ari_cert_id is ci's ARI id) has come.
 * ari_id: ci's ARI certificate id or NULL. */
void
renewal_due(char *const *domains, size_t n_domains, double renew_before_days,
            const struct cf_certinfo *ci, const struct cf_renewal_state *rs,
            const char *ari_id, int64_t now, struct cf_renewal_due *out);

#endif
