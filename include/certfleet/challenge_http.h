/* challenge_http.h - http-01 answered by the fleet itself: acme.h's
 * challenge callbacks put the files under deploy.webroot on every node
 * over SSH (rollout_each), check each from here over plain HTTP as the
 * CA will, and remove them again.  The results per node (prov) then tell
 * `renew` which nodes could not be reached, so its rollout does not dial
 * them a second time. */
#ifndef CERTFLEET_CHALLENGE_HTTP_H
#define CERTFLEET_CHALLENGE_HTTP_H

#include "certfleet/acme.h"
#include "certfleet/err.h"
#include "certfleet/playbook.h"
#include "certfleet/rollout.h"
#include "certfleet/ssh.h"

struct cf_http01 {
	const struct cf_playbook *pb;  /* borrowed */
	const cf_ssh_ctx_t *ssh;       /* borrowed */
	char **skip;                   /* nodes not to use (borrowed); NULL */
	const struct cf_acme_chall *c; /* during provision/cleanup */
	size_t n;
	struct cf_rollout_result prov; /* which nodes got the files: outcome
					  DEPLOYED, or FAILED with the cause */
};

/* ops for acme_issue; `h` (pb, ssh and skip set, the rest zero) is
 * borrowed and must outlive the call.  Free h->prov with
 * challenge_http_free. */
void challenge_http_ops(struct cf_http01 *h, struct cf_acme_challenge_ops *ops);
void challenge_http_free(struct cf_http01 *h);

/* A name failed validation while some nodes lacked the challenge file:
 * append "(challenge file not on n2: timeout, ...)" to err's message. */
void challenge_http_name_missing(const struct cf_rollout_result *prov,
                                 cf_err_t *err);

/* skips plus the nodes whose http-01 step failed to connect; NULL when
 * there are none.  The vector borrows its strings; free() it alone. */
char **
challenge_http_unreachable(const struct cf_rollout_result *prov, char **skips);

/* The rollout skipped the unreachable nodes (o->skip from
 * challenge_http_unreachable): turn those results into failures with the
 * http-01 step's cause, counted in res (and told on stderr).  Pinned
 * nodes and nodes --only/--exclude leave out stay skipped. */
void challenge_http_carry_failures(const struct cf_rollout_result *prov,
                                   const struct cf_rollout_opts *o,
                                   char *const *pinned,
                                   struct cf_rollout_result *res);

#endif
