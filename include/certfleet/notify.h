/* notify.h - tell a human: webhooks (JSON POST) and/or a command.
 * A failing notifier is reported on stderr and never fails the run. */
#ifndef CERTFLEET_NOTIFY_H
#define CERTFLEET_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include "certfleet/playbook.h"

typedef enum {
	CF_EV_RENEWAL_FAILED,   /* count = consecutive failures */
	CF_EV_NODE_QUARANTINED, /* node, reason, text */
	CF_EV_NODE_RELEASED,    /* node */
	CF_EV_EXPIRY_WARNING, /* node (or NULL for the stored cert), not_after */
	CF_EV_CANARY_STOPPED, /* text = stop reason */
	CF_EV_NODE_DRIFT,     /* node, text = what deploy fixed / could not */
} cf_event_kind_t;

struct cf_event {
	cf_event_kind_t kind;
	const char *node;   /* may be NULL */
	const char *host;   /* may be NULL */
	const char *reason; /* quarantine reason token, may be NULL */
	const char *detail; /* human detail, may be NULL */
	unsigned count;
	int64_t not_after;
};

const char *notify_kind_name(cf_event_kind_t k); /* "renewal_failed", ... */

/* The human one-line "text" of an event for certificate `cert` at wall
 * time `now` (for "expires in N days"), e.g.
 * "certfleet web: node web3 (10.0.0.3) quarantined: timeout: ... (attempt 1)".
 * Always one line of valid UTF-8 (control characters become spaces);
 * truncated to len. */
void notify_format_text(const char *cert, const struct cf_event *ev,
                        int64_t now, char *buf, size_t len);

/* Send every event to every notifier in pb->notify (one POST per event and
 * webhook: {"event","certificate","node","host","reason","detail",
 * "count","not_after","text"} with a human one-line "text"; the command
 * gets the same JSON on stdin and CERTFLEET_EVENT/CERTFLEET_TEXT in env).
 * Bounded time (10 s per webhook incl. 3 tries with backoff), TLS
 * verified.  Returns the number of deliveries that failed (reported on
 * stderr); never fails the run. */
int
notify_send(const struct cf_playbook *pb, const struct cf_event *ev, size_t n);

#endif
