/* metrics.h - Prometheus textfile-collector output (--metrics FILE).
 * Written atomically, no timestamps, names per Prometheus conventions
 * (documented in docs/metrics.md). */
#ifndef CERTFLEET_METRICS_H
#define CERTFLEET_METRICS_H

#include <stdint.h>

#include "certfleet/crypto.h"
#include "certfleet/err.h"
#include "certfleet/playbook.h"
#include "certfleet/store.h"

struct cf_metrics_input {
	const struct cf_playbook *pb;
	const struct cf_certinfo *current;      /* NULL: no certificate yet */
	const struct cf_node_states *nodes;     /* may be NULL */
	const struct cf_renewal_state *renewal; /* may be NULL */
	const char *command;                    /* "deploy", "renew", ... */
	int exit_code;
	int64_t duration_ms;
	int64_t last_deploy_success; /* epoch, 0 unknown */
};

int metrics_write(const char *path, const struct cf_metrics_input *in,
                  cf_err_t *err);

#endif
