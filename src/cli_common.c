/* cli_common.c - what every command shares: opening the playbook, store,
 * lock and SSH context; folding rollout results into node state. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/cli.h"
#include "certfleet/metrics.h"
#include "certfleet/util.h"

int
cli_fail(const cf_err_t *err)
{
	fprintf(stderr, "certfleet: %s\n", err->msg);
	return cf_err_exit_code(err->code);
}

int
cli_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("certfleet: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see certfleet --help)\n", stderr);
	return CF_EXIT_USAGE;
}

int
session_open(struct cf_cli *cli, const char *what, int flags,
             struct cf_session *s)
{
	cf_err_t err = {0};

	memset(s, 0, sizeof(*s));
	s->cli = cli;
	s->started_ms = cf_now_ms();
	if (cli->playbook == NULL)
		return cli_usage("%s needs a playbook: -p FILE", what);
	if (playbook_load(cli->playbook, &s->pb, &err) < 0)
		goto fail;
	if (store_open(cli->state_dir, s->pb->cert.name, &s->st, &err) < 0)
		goto fail;
	if ((flags & CF_SESS_LOCK) &&
	    store_lock(s->st, what, cli->wait_s, &err) < 0)
		goto fail;
	s->locked = (flags & CF_SESS_LOCK) != 0;
	if ((flags & CF_SESS_NODES) && store_load_nodes(s->st, &s->ns, &err) < 0)
		goto fail;
	if ((flags & CF_SESS_SSH) &&
	    ssh_ctx_new(s->pb->ssh.identity, s->pb->ssh.known_hosts, &s->ssh,
	                &err) < 0)
		goto fail;
	return 0;
fail:
	session_close(s);
	return cli_fail(&err);
}

static const char *
own(struct cf_session *s, const char *str)
{
	char **v, *d;

	if (str == NULL)
		return NULL;
	d = strdup(str);
	v = realloc(s->owned, (s->n_owned + 1) * sizeof(*v));
	if (d == NULL || v == NULL) {
		free(d);
		if (v != NULL)
			s->owned = v;
		return NULL;
	}
	s->owned = v;
	s->owned[s->n_owned++] = d;
	return d;
}

void
session_event(struct cf_session *s, cf_event_kind_t kind, const char *node,
              const char *host, const char *reason, const char *detail,
              unsigned count, int64_t not_after)
{
	struct cf_event *v = realloc(s->ev, (s->n_ev + 1) * sizeof(*v));

	if (v == NULL)
		return;
	s->ev = v;
	memset(&v[s->n_ev], 0, sizeof(v[0]));
	v[s->n_ev].kind = kind;
	v[s->n_ev].node = own(s, node);
	v[s->n_ev].host = own(s, host);
	v[s->n_ev].reason = own(s, reason);
	v[s->n_ev].detail = own(s, detail);
	v[s->n_ev].count = count;
	v[s->n_ev].not_after = not_after;
	s->n_ev++;
}

void
session_finish(struct cf_session *s, const char *command, int exit_code,
               const struct cf_certinfo *current)
{
	struct cf_metrics_input mi;
	struct cf_renewal_state rs;
	struct cf_bundle b;
	struct cf_certinfo ci;
	cf_err_t err = {0};
	char *version = NULL;
	bool found = false, metrics = s->cli->metrics != NULL;
	int64_t now = cf_wall_now(), warn, last_ok = 0;
	size_t i;

	if (s->pb == NULL)
		return;
	memset(&b, 0, sizeof(b));
	memset(&ci, 0, sizeof(ci));
	/* The metrics file is written under the run lock, from the state as
	 * it is then: a command that read the state without the lock
	 * (status, a dry-run quarantine) could otherwise replace the file a
	 * run wrote moments ago with numbers from before that run.  While a
	 * run holds the lock it writes the file itself; we leave it alone. */
	if (s->cli->metrics != NULL && !s->locked) {
		if (store_lock(s->st, command, 0, &err) < 0) {
			fprintf(stderr, "certfleet: metrics: %s not written: %s\n",
			        s->cli->metrics, err.msg);
			metrics = false;
		} else {
			s->locked = true;
			store_nodes_free(&s->ns);
			if (store_load_nodes(s->st, &s->ns, &err) < 0) {
				fprintf(stderr, "certfleet: metrics: %s not "
				        "written: %s\n", s->cli->metrics, err.msg);
				metrics = false;
			} else if (store_get_current(s->st, &b, &ci, &version,
			                             &found, NULL) == 0) {
				current = found ? &ci : NULL;
			}
		}
	}
	memset(&rs, 0, sizeof(rs));
	(void)store_load_renewal(s->st, &rs, NULL);
	/* Early warning on what nodes actually serve, not on what the store
	 * holds: the incident's certificate was renewed in the store and
	 * still expired on the servers. */
	warn = s->pb->notify.warn_days > 0
	           ? (int64_t)(s->pb->notify.warn_days * 86400.0)
	           : current != NULL ? (current->not_after - current->not_before) / 6
	                             : 14 * 86400;
	for (i = 0; i < s->ns.n; i++) {
		const struct cf_node_state *st = &s->ns.v[i];
		const struct cf_node *n = playbook_node(s->pb, st->name);

		if (st->last_success > last_ok)
			last_ok = st->last_success;
		/* read-only commands report, they do not page anyone */
		if (strcmp(command, "status") == 0 ||
		    strcmp(command, "quarantine") == 0)
			continue;
		if (n == NULL || st->serving_not_after <= 0 ||
		    (st->quarantined && st->manual))
			continue;
		if (st->serving_not_after - now < warn)
			session_event(s, CF_EV_EXPIRY_WARNING, n->name, n->host,
			              NULL, NULL, 0, st->serving_not_after);
	}
	if (s->n_ev > 0)
		(void)notify_send(s->pb, s->ev, s->n_ev);
	if (metrics) {
		memset(&mi, 0, sizeof(mi));
		mi.pb = s->pb;
		mi.current = current;
		mi.nodes = &s->ns;
		mi.renewal = &rs;
		mi.command = command;
		mi.exit_code = exit_code;
		mi.duration_ms = cf_now_ms() - s->started_ms;
		mi.last_deploy_success = last_ok;
		if (metrics_write(s->cli->metrics, &mi, &err) < 0)
			fprintf(stderr, "certfleet: metrics: %s\n", err.msg);
	}
	store_renewal_free(&rs);
	crypto_bundle_free(&b);
	crypto_certinfo_free(&ci);
	free(version);
}

void
session_close(struct cf_session *s)
{
	size_t i;

	for (i = 0; i < s->n_owned; i++)
		free(s->owned[i]);
	free(s->owned);
	free(s->ev);
	ssh_ctx_free(s->ssh);
	store_nodes_free(&s->ns);
	store_close(s->st);
	playbook_free(s->pb);
	memset(s, 0, sizeof(*s));
}

int
session_record(struct cf_session *s, const struct cf_rollout_result *res,
               const struct cf_certinfo *current, cf_err_t *err)
{
	int64_t now = cf_wall_now();
	size_t i;

	for (i = 0; i < res->n; i++) {
		const struct cf_node_result *r = &res->nodes[i];
		struct cf_node_state *st;

		if (r->outcome == CF_OUT_SKIPPED || r->outcome == CF_OUT_STOPPED ||
		    r->outcome == CF_OUT_DRYRUN)
			continue;
		st = store_node(&s->ns, r->node->name);
		if (st == NULL)
			return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		if (r->after_sha256[0] != '\0') {
			memcpy(st->serving_sha256, r->after_sha256, 65);
			st->serving_not_after = r->after_not_after;
			st->last_seen = now;
		}
		if (r->touched && r->outcome == CF_OUT_DEPLOYED)
			st->last_change = now;
		if (r->outcome == CF_OUT_FAILED && st->quarantined &&
		    !r->touched && r->err.code == CF_ERR_VERIFY) {
			/* a read-only probe of a node quarantined for a real
			 * cause (host key, disk...) must not hide that cause */
			continue;
		}
		if (r->outcome == CF_OUT_FAILED) {
			/* alert on the first failed attempt, and again when the
			 * cause changes; not on every retry of the same cause */
			if (!st->quarantined || st->reason == NULL ||
			    strcmp(st->reason, cf_err_reason(r->err.code)) != 0)
				session_event(s, CF_EV_NODE_QUARANTINED,
				              r->node->name, r->node->host,
				              cf_err_reason(r->err.code), r->err.msg,
				              st->attempts + 1, 0);
			if (!st->quarantined)
				st->quarantined_since = now;
			st->quarantined = true;
			st->manual = false;
			st->attempts++;
			free(st->reason);
			free(st->detail);
			st->reason = strdup(cf_err_reason(r->err.code));
			st->detail = strdup(r->err.msg);
			continue;
		}
		/* serving the current certificate, verified: release */
		if (current != NULL &&
		    strcmp(r->after_sha256, current->sha256_hex) == 0) {
			if (st->quarantined)
				session_event(s, CF_EV_NODE_RELEASED, r->node->name,
				              r->node->host, st->reason, NULL,
				              st->attempts, 0);
			st->last_success = now;
			st->quarantined = false;
			st->manual = false;
			st->attempts = 0;
			free(st->reason);
			free(st->detail);
			st->reason = st->detail = NULL;
			st->quarantined_since = 0;
		}
	}
	return store_save_nodes(s->st, &s->ns, err);
}

char **
session_manual_skips(const struct cf_session *s, char *const *only)
{
	size_t i, n = 0;
	char **v = calloc(s->ns.n + 1, sizeof(char *));

	if (v == NULL)
		return NULL;
	for (i = 0; i < s->ns.n; i++) {
		const struct cf_node_state *st = &s->ns.v[i];

		/* naming a node explicitly overrides its manual quarantine */
		if (st->quarantined && st->manual && !cf_strv_has(only, st->name))
			v[n++] = strdup(st->name);
	}
	return v;
}

int
rollout_exit_code(const struct cf_rollout_result *res)
{
	if (res->stopped)
		return CF_EXIT_FAILED;
	if (res->n_failed == 0)
		return CF_EXIT_OK;
	if (res->n_deployed + res->n_unchanged == 0)
		return CF_EXIT_FAILED;
	return CF_EXIT_PARTIAL;
}

int
session_check_names(const struct cf_session *s, char *const *v,
                    const char *opt)
{
	size_t i;

	for (i = 0; v != NULL && v[i] != NULL; i++)
		if (playbook_node(s->pb, v[i]) == NULL)
			return cli_usage("%s: no node '%s' in %s", opt, v[i],
			                 s->pb->path);
	return 0;
}
