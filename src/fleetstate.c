/* fleetstate.c - the transitions of a node's record (fleetstate.h).
 *
 * The rules live here and nowhere else: what counts as a failure, when an
 * operator is alerted, what lifts a quarantine, what a pin is.  No I/O:
 * the commands load, save, print and notify. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "certfleet/fleetstate.h"
#include "certfleet/util.h"

static void
set_cause(struct cf_node_state *st, const char *reason, const char *detail)
{
	free(st->reason);
	free(st->detail);
	/* out of memory leaves the cause unknown ("?"), the state true */
	st->reason = reason != NULL ? strdup(reason) : NULL;
	st->detail = detail != NULL ? strdup(detail) : NULL;
}

static void
clear_quarantine(struct cf_node_state *st)
{
	st->quarantined = false;
	st->manual = false;
	st->attempts = 0;
	st->quarantined_since = 0;
	set_cause(st, NULL, NULL);
}

void
fleet_observe(struct cf_node_state *st, const char *sha256_hex,
              int64_t not_after, int64_t now)
{
	size_t n;

	if (sha256_hex == NULL || sha256_hex[0] == '\0')
		return;
	n = strnlen(sha256_hex, sizeof(st->serving_sha256) - 1);
	memcpy(st->serving_sha256, sha256_hex, n);
	st->serving_sha256[n] = '\0';
	st->serving_not_after = not_after;
	st->last_seen = now;
}

static void
endpoints_free(struct cf_endpoint_state *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].sni);
		free(v[i].reason);
	}
	free(v);
}

const struct cf_endpoint_state *
fleet_endpoint_find(const struct cf_node_state *st, unsigned port,
                    starttls_proto_t starttls, const char *sni)
{
	for (size_t i = 0; st != NULL && i < st->n_endpoints; i++) {
		const struct cf_endpoint_state *e = &st->endpoints[i];

		/* DNS names compare case-insensitively */
		if (e->port == port && e->starttls == starttls &&
		    e->sni != NULL && strcasecmp(e->sni, sni) == 0)
			return e;
	}
	return NULL;
}

/* e := c seen at now; e's strings are replaced only when both copies
 * could be made. */
static int
endpoint_set(struct cf_endpoint_state *e, const struct cf_endpoint_check *c,
             int64_t now)
{
	char *sni = strdup(c->sni);
	char *reason = c->ok ? NULL : strdup(cf_err_reason(c->err.code));

	if (sni == NULL || (!c->ok && reason == NULL)) {
		free(sni);
		free(reason);
		return -1;
	}
	free(e->sni);
	free(e->reason);
	e->port = c->port;
	e->starttls = c->starttls;
	e->sni = sni;
	e->ok = c->ok;
	e->reason = reason;
	e->seen = now;
	return 0;
}

int
fleet_observe_endpoints(struct cf_node_state *st,
                        const struct cf_node_result *r, int64_t now)
{
	struct cf_endpoint_state *v, *e;
	bool all_ok = r->n_checks > 0;
	size_t i, n;

	for (i = 0; i < r->n_checks; i++)
		all_ok = all_ok && r->checks[i].ok && !r->rolled_back;
	if (all_ok) {
		v = calloc(r->n_checks, sizeof(*v));
		for (i = 0; v != NULL && i < r->n_checks; i++)
			if (endpoint_set(&v[i], &r->checks[i], now) < 0) {
				endpoints_free(v, i);
				v = NULL;
			}
		if (v == NULL)
			return -1;
		endpoints_free(st->endpoints, st->n_endpoints);
		st->endpoints = v;
		st->n_endpoints = r->n_checks;
		return 0;
	}
	for (i = 0; i < r->n_checks; i++) {
		const struct cf_endpoint_check *c = &r->checks[i];

		if (c->ok && r->rolled_back)
			continue;
		e = (struct cf_endpoint_state *)fleet_endpoint_find(st, c->port,
		                                                    c->starttls,
		                                                    c->sni);
		if (e == NULL) {
			n = st->n_endpoints;
			v = realloc(st->endpoints, (n + 1) * sizeof(*v));
			if (v == NULL)
				return -1;
			st->endpoints = v;
			e = memset(&v[n], 0, sizeof(*v));
			if (endpoint_set(e, c, now) < 0)
				return -1;
			st->n_endpoints++;
			continue;
		}
		if (endpoint_set(e, c, now) < 0)
			return -1;
	}
	return 0;
}

int
fleet_observe_result(struct cf_node_states *ns, const struct cf_node_result *r,
                     int64_t now)
{
	struct cf_node_state *st;

	if (r->after_sha256[0] == '\0' && r->n_checks == 0)
		return 0;
	st = store_node(ns, r->node->name);
	if (st == NULL)
		return -1;
	fleet_observe(st, r->after_sha256, r->after_not_after, now);
	return fleet_observe_endpoints(st, r, now);
}

bool
fleet_failed(struct cf_node_state *st, const char *reason, const char *detail,
             int64_t now)
{
	/* alert on the first failed attempt, and again when the cause
	 * changes; not on every retry of the same cause */
	bool alert = !st->quarantined || st->reason == NULL ||
	             strcmp(st->reason, reason) != 0;

	if (!st->quarantined)
		st->quarantined_since = now;
	st->quarantined = true;
	/* a pinned node the operator named (--only) and that failed is an
	 * ordinary failed node now: retried by the next runs */
	st->manual = false;
	st->attempts++;
	set_cause(st, reason, detail);
	return alert;
}

bool
fleet_succeeded(struct cf_node_state *st, int64_t now, char **was_reason)
{
	bool was = st->quarantined;

	if (was_reason != NULL)
		*was_reason = NULL;
	st->last_success = now;
	if (!was) {
		clear_quarantine(st);
		return false;
	}
	if (was_reason != NULL) {
		/* handed over, not freed: the release is told with it */
		*was_reason = st->reason;
		st->reason = NULL;
	}
	clear_quarantine(st);
	return true;
}

int
fleet_set_drift(struct cf_node_state *st, const char *drift, int64_t now)
{
	char *d = NULL;

	if (drift != NULL && drift[0] != '\0' && (d = strdup(drift)) == NULL)
		return -1;
	free(st->drift);
	st->drift = d;
	st->drift_seen = d != NULL ? now : 0;
	return 0;
}

int
fleet_record(struct cf_node_states *ns, const struct cf_node_result *r,
             const char *current_sha, int64_t now, struct fleet_note *note)
{
	struct cf_node_state *st;

	memset(note, 0, sizeof(*note));
	if (r->outcome == CF_OUT_SKIPPED || r->outcome == CF_OUT_STOPPED ||
	    r->outcome == CF_OUT_DRYRUN)
		return 0;
	st = store_node(ns, r->node->name);
	if (st == NULL)
		return -1;
	note->change = FLEET_OBSERVED;
	fleet_observe(st, r->after_sha256, r->after_not_after, now);
	if (r->touched && r->outcome == CF_OUT_DEPLOYED)
		st->last_change = now;
	if (fleet_observe_endpoints(st, r, now) < 0)
		return -1;
	/* drift this deploy could not fix stays on record for verify and
	 * check, which have no SSH to look */
	if (r->audited && fleet_set_drift(st, r->drift, now) < 0)
		return -1;
	if (r->outcome == CF_OUT_FAILED && st->quarantined && !r->touched &&
	    cf_err_is_verify(r->err.code)) {
		/* a read-only probe of a node quarantined for a real cause
		 * (host key, disk...) must not hide that cause */
		note->change = FLEET_CAUSE_KEPT;
		return 0;
	}
	if (r->outcome == CF_OUT_FAILED) {
		note->change = fleet_failed(st, cf_err_reason(r->err.code),
		                            r->err.msg, now)
		                   ? FLEET_QUARANTINED
		                   : FLEET_FAILED_AGAIN;
		note->attempts = st->attempts;
		return 0;
	}
	/* serving the current certificate, verified: release */
	if (current_sha != NULL && strcmp(r->after_sha256, current_sha) == 0) {
		note->attempts = st->attempts;
		note->change = fleet_succeeded(st, now, &note->was_reason)
		                   ? FLEET_RELEASED
		                   : FLEET_SUCCEEDED;
	}
	return 0;
}

void
fleet_pin(struct cf_node_state *st, const char *detail, int64_t now)
{
	if (!st->quarantined)
		st->quarantined_since = now;
	st->quarantined = true;
	st->manual = true;
	set_cause(st, "manual", detail);
}

bool
fleet_release(struct cf_node_state *st)
{
	if (!st->quarantined)
		return false;
	clear_quarantine(st);
	return true;
}

bool
fleet_is_pinned(const struct cf_node_state *st)
{
	return st->quarantined && st->manual;
}

bool
fleet_is_suspect(const struct cf_node_state *st)
{
	return st->quarantined && !st->manual;
}

const struct cf_node_state *
fleet_find(const struct cf_node_states *ns, const char *name)
{
	size_t i;

	for (i = 0; i < ns->n; i++)
		if (ns->v[i].name != NULL && strcmp(ns->v[i].name, name) == 0)
			return &ns->v[i];
	return NULL;
}

char **
fleet_pinned_names(const struct cf_node_states *ns, char *const *only)
{
	size_t i, n = 0;
	char **v = calloc(ns->n + 1, sizeof(char *));

	if (v == NULL)
		return NULL;
	for (i = 0; i < ns->n; i++)
		/* naming a node explicitly overrides its pin */
		if (fleet_is_pinned(&ns->v[i]) &&
		    !cf_strv_has(only, ns->v[i].name) &&
		    (v[n] = strdup(ns->v[i].name)) != NULL)
			n++;
	return v;
}

char **
fleet_suspect_names(const struct cf_node_states *ns)
{
	size_t i, n = 0;
	char **v = calloc(ns->n + 1, sizeof(char *));

	if (v == NULL)
		return NULL;
	for (i = 0; i < ns->n; i++)
		if (fleet_is_suspect(&ns->v[i]) &&
		    (v[n] = strdup(ns->v[i].name)) != NULL)
			n++;
	return v;
}
