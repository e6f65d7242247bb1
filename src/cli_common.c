/* cli_common.c - what every command shares: opening the playbook, store,
 * lock and SSH context; folding rollout results into node state. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/cli.h"
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

void
session_close(struct cf_session *s)
{
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
		if (r->outcome == CF_OUT_FAILED) {
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
