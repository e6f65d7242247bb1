/* challenge.h - ready-made answerers for acme.h's challenge callbacks.
 *
 * dns-01 through an external hook program, run as
 *     HOOK add _acme-challenge.<domain>. VALUE
 *     HOOK del _acme-challenge.<domain>. VALUE
 * with CERTFLEET_ACTION, CERTFLEET_DOMAIN, CERTFLEET_FQDN and
 * CERTFLEET_VALUE added to the environment.  No shell is involved: the
 * values travel as argv/env entries, never as a command string.  Exit 0
 * means done; anything else fails the order with the hook's output. */
#ifndef CERTFLEET_CHALLENGE_H
#define CERTFLEET_CHALLENGE_H

#include <stdint.h>

#include "certfleet/acme.h"
#include "certfleet/err.h"

struct cf_dns_hook {
	const char *hook;   /* path of the executable */
	int64_t timeout_ms; /* per invocation, then killed; 0 = 60 s */
	int64_t settle_ms;  /* wait after all adds (DNS propagation); 0 */
	int64_t deadline;   /* absolute cf_now_ms(), normally the issuance's
			       deadline: "add" runs end there; "del" runs get
			       at least 5 s more (best effort); 0 = none */
};

/* ops for acme_issue; `h` is borrowed and must outlive the call. */
void
challenge_dns_ops(struct cf_dns_hook *h, struct cf_acme_challenge_ops *ops);

/* One hook run ("add" or "del") for one challenge; what the ops do for
 * each name.  CF_ERR_HOOK on failure:
 *   "dns hook HOOK add _acme-challenge.x.: exit 1: <first output line>" */
int challenge_dns_run(const struct cf_dns_hook *h, const char *action,
                      const struct cf_acme_chall *c, cf_err_t *err);

#endif
