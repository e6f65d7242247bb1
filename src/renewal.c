/* renewal.c - when a certificate is due (see renewal.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "certfleet/renewal.h"
#include "certfleet/util.h"

int64_t
renewal_before(double renew_before_days, const struct cf_certinfo *ci)
{
	if (renew_before_days > 0)
		return (int64_t)(renew_before_days * 86400.0);
	return (ci->not_after - ci->not_before) / 3;
}

void
renewal_check_thresholds(double renew_before_days, const struct cf_certinfo *ci,
                         double *warn_days, double *crit_days)
{
	int64_t window = renewal_before(renew_before_days, ci);

	/* A window as long as the lifetime makes renew due on every run;
	 * thresholds scaled from it would alert on every fresh certificate,
	 * so scale from the automatic window (a third) instead. */
	if (window >= ci->not_after - ci->not_before)
		window = renewal_before(0, ci);
	*warn_days = (double)window / 86400.0 * 0.75;
	*crit_days = (double)window / 86400.0 * 0.5;
}

static bool
names_cover(char *const *domains, size_t n, const struct cf_certinfo *ci)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		bool hit = false;

		for (j = 0; j < ci->n_names && !hit; j++)
			hit = strcasecmp(domains[i], ci->names[j]) == 0;
		if (!hit)
			return false;
	}
	return true;
}

void
renewal_due(char *const *domains, size_t n_domains, double renew_before_days,
            const struct cf_certinfo *ci, const struct cf_renewal_state *rs,
            const char *ari_id, int64_t now, struct cf_renewal_due *out)
{
	int64_t before, lifetime_due;
	char t[32];

	memset(out, 0, sizeof(*out));
	if (ci == NULL) {
		out->due = true;
		out->basis = "no-certificate";
		snprintf(out->why, sizeof(out->why),
		         "no certificate in the store yet");
		return;
	}
	if (!names_cover(domains, n_domains, ci)) {
		out->due = true;
		out->basis = "domains-changed";
		snprintf(out->why, sizeof(out->why),
		         "the playbook's domains changed");
		return;
	}
	before = renewal_before(renew_before_days, ci);
	lifetime_due = ci->not_after - before;
	out->next_due = lifetime_due;
	out->basis = "lifetime";
	/* ARI (RFC 9773): the CA may ask for an earlier renewal (e.g. before
	 * a mass revocation); only an answer about this very certificate */
	if (rs != NULL && ari_id != NULL && rs->ari_cert_id != NULL &&
	    rs->ari_chosen > 0 && strcmp(rs->ari_cert_id, ari_id) == 0 &&
	    rs->ari_chosen < lifetime_due) {
		out->next_due = rs->ari_chosen;
		out->basis = "ari";
	}
	out->due = now >= out->next_due;
	if (out->due && strcmp(out->basis, "lifetime") == 0) {
		cf_fmt_time(ci->not_after, t, sizeof(t));
		snprintf(out->why, sizeof(out->why),
		         "expires %s, less than %.1f days left", t,
		         (double)before / 86400.0);
	} else if (out->due) {
		cf_fmt_time(rs->ari_window_start, t, sizeof(t));
		snprintf(out->why, sizeof(out->why),
		         "the CA's renewal window (ARI) opened %s%s%s", t,
		         rs->ari_explanation ? ": see " : "",
		         rs->ari_explanation ? rs->ari_explanation : "");
	} else {
		cf_fmt_time(out->next_due, t, sizeof(t));
		snprintf(out->why, sizeof(out->why), "not due before %s%s", t,
		         strcmp(out->basis, "ari") == 0 ? " (ARI)" : "");
	}
}
