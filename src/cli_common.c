/* cli_common.c - what every command shares: opening the playbook, store,
 * lock and SSH context; folding rollout results into node state. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/challenge_http.h"
#include "certfleet/cli.h"
#include "certfleet/fleetstate.h"
#include "certfleet/metrics.h"
#include "certfleet/report.h"
#include "certfleet/util.h"

/* main.c keeps the first error for --json; programs linked without it
 * (unit tests) get this no-op. */
__attribute__((weak)) void
cli_note_error(const char *code, const char *msg)
{
	(void)code;
	(void)msg;
}

/* Stable token for the --json error document's "code" (docs/json.md). */
static const char *
err_code_name(cf_code_t code)
{
	switch (code) {
	case CF_ERR_USAGE: return "usage";
	case CF_ERR_DATA: return "data";
	case CF_ERR_CONFIG: return "config";
	case CF_ERR_LOCKED: return "locked";
	case CF_ERR_IO: return "io";
	case CF_ERR_STATE: return "state";
	case CF_ERR_NOMEM: return "nomem";
	case CF_ERR_INTERNAL: return "internal";
	default: return cf_err_reason(code);
	}
}

int
cli_fail(const cf_err_t *err)
{
	fprintf(stderr, "certfleet: %s\n", err->msg);
	cli_note_error(err_code_name(err->code), err->msg);
	return cf_err_exit_code(err->code);
}

int
cli_usage(const char *fmt, ...)
{
	char msg[CF_ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "certfleet: %s (see certfleet --help)\n", msg);
	cli_note_error("usage", msg);
	return CF_EXIT_USAGE;
}

/* getopt_long said '?': name the option and what is wrong with it. */
static void
bad_option(const struct option *lo, const char *shortopts, int argc,
           char **argv, char *msg, size_t len)
{
	const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
	size_t n;

	if (strncmp(arg, "--", 2) == 0) {
		n = strcspn(arg + 2, "=");
		for (; lo != NULL && lo->name != NULL; lo++) {
			if (strlen(lo->name) != n ||
			    strncmp(lo->name, arg + 2, n) != 0)
				continue;
			snprintf(msg, len, "--%s %s", lo->name,
			         lo->has_arg == no_argument ? "takes no value"
			                                    : "needs a value");
			return;
		}
		snprintf(msg, len, "unknown option '%.*s'", (int)n + 2, arg);
	} else if (optopt != 0 && strchr(shortopts, optopt) != NULL) {
		snprintf(msg, len, "-%c needs a value", optopt);
	} else {
		snprintf(msg, len, "unknown option '-%c'",
		         optopt ? optopt : '?');
	}
}

static int
global_option(struct cf_cli *cli, int c, int argc, char **argv, char *msg,
              size_t len)
{
	static const struct option longopts[] = {CLI_GLOBAL_LONGOPTS,
	                                         {NULL, 0, NULL, 0}};
	char *end;
	long v;

	switch (c) {
	case 'p': cli->playbook = optarg; return 0;
	case 'q': cli->quiet = true; return 0;
	case CLI_OPT_STATE_DIR: cli->state_dir = optarg; return 0;
	case CLI_OPT_METRICS: cli->metrics = optarg; return 0;
	case CLI_OPT_JSON: cli->json = true; return 0;
	case CLI_OPT_WAIT:
		if (optarg == NULL) {
			cli->wait_s = -1;
			return 0;
		}
		v = strtol(optarg, &end, 10);
		if (*optarg == '\0' || *end != '\0' || v < 0 || v > 86400) {
			snprintf(msg, len, "--wait takes seconds (0..86400)");
			return -1;
		}
		cli->wait_s = (int)v;
		return 0;
	default:
		bad_option(longopts, CLI_GLOBAL_SHORTOPTS, argc, argv, msg,
		           len);
		return -1;
	}
}

int
cli_global_option(struct cf_cli *cli, int c, int argc, char **argv, int *ex)
{
	char msg[CF_ERR_MSG_MAX];

	if (global_option(cli, c, argc, argv, msg, sizeof(msg)) == 0)
		return 0;
	*ex = cli_usage("%s", msg);
	return -1;
}

#define CLI_MAX_LONGOPTS 32

int
cli_getopt(struct cf_cli *cli, const struct cli_cmd *cmd, int argc, char **argv,
           int *ex)
{
	static const struct option globals[] = {CLI_GLOBAL_LONGOPTS};
	struct option lo[CLI_MAX_LONGOPTS];
	char msg[CF_ERR_MSG_MAX - 80];
	size_t n = 0, i;
	int c;

	for (i = 0; cmd->longopts != NULL && cmd->longopts[i].name != NULL &&
	            n < CLI_MAX_LONGOPTS - 1;
	     i++)
		lo[n++] = cmd->longopts[i];
	for (i = 0; i < sizeof(globals) / sizeof(globals[0]) &&
	            n < CLI_MAX_LONGOPTS - 1;
	     i++)
		lo[n++] = globals[i];
	memset(&lo[n], 0, sizeof(lo[n]));
	for (;;) {
		opterr = 0; /* our messages: named, and in --json documents */
		c = getopt_long(argc, argv,
		                cmd->permute ? CLI_GLOBAL_SHORTOPTS
		                             : "+" CLI_GLOBAL_SHORTOPTS,
		                lo, NULL);
		switch (c) {
		case 'h':
			fputs(cmd->usage, stdout);
			*ex = 0;
			return CLI_OPT_EXIT;
		case CLI_OPT_VERSION:
			printf("certfleet %s\n", CERTFLEET_VERSION);
			*ex = 0;
			return CLI_OPT_EXIT;
		case 'p':
		case 'q':
		case CLI_OPT_STATE_DIR:
		case CLI_OPT_METRICS:
		case CLI_OPT_JSON:
		case CLI_OPT_WAIT:
			if (global_option(cli, c, argc, argv, msg,
			                  sizeof(msg)) < 0)
				goto usage_error;
			continue;
		case '?':
		case ':':
			bad_option(lo, CLI_GLOBAL_SHORTOPTS, argc, argv, msg,
			           sizeof(msg));
			goto usage_error;
		default: return c;
		}
	}
usage_error:
	if (cmd->plugin) {
		/* a plugin answers on stdout, one line, UNKNOWN */
		if (!cli->json)
			printf("CERTFLEET UNKNOWN - usage: %s: %s\n", cmd->name,
			       msg);
		cli_note_error("usage", msg);
		*ex = 3;
	} else {
		*ex = cli_usage("%s: %s", cmd->name, msg);
	}
	return CLI_OPT_EXIT;
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
	/* Only the lock holder writes: without the lock the store is opened
	 * read-only, so status, verify and dry runs never create or change
	 * the state directory. */
	if ((flags & CF_SESS_LOCK)
	        ? store_open(cli->state_dir, s->pb->cert.name, &s->st, &err) < 0
	        : store_open_ro(cli->state_dir, s->pb->cert.name, &s->st,
	                        &err) < 0)
		goto fail;
	store_set_keep_versions(s->st, s->pb->store.keep_versions);
	if ((flags & CF_SESS_LOCK) && store_lock(s->st, what, 0, &err) < 0) {
		char holder[700];

		if (err.code != CF_ERR_LOCKED || cli->wait_s == 0)
			goto fail;
		/* --wait: say what we wait for, a silent hang looks dead */
		store_lock_holder(s->st, holder, sizeof(holder));
		if (cli->wait_s < 0)
			fprintf(stderr,
			        "certfleet: waiting for the lock on %s "
			        "held by %s…\n",
			        store_root(s->st), holder);
		else
			fprintf(stderr,
			        "certfleet: waiting up to %d s for the "
			        "lock on %s held by %s…\n",
			        cli->wait_s, store_root(s->st), holder);
		memset(&err, 0, sizeof(err));
		if (store_lock(s->st, what, cli->wait_s, &err) < 0)
			goto fail;
	}
	s->locked = (flags & CF_SESS_LOCK) != 0;
	if ((flags & CF_SESS_NODES) &&
	    store_load_nodes(s->st, &s->ns, &err) < 0)
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
			fprintf(stderr,
			        "certfleet: metrics: %s not written: %s\n",
			        s->cli->metrics, err.msg);
			metrics = false;
		} else {
			s->locked = true;
			/* what this run saw is newer than the disk; otherwise
			 * read the state as the last run left it */
			if (!s->observed) {
				store_nodes_free(&s->ns);
				if (store_load_nodes(s->st, &s->ns, &err) < 0)
					metrics = false;
			}
			if (!metrics)
				fprintf(stderr,
				        "certfleet: metrics: %s not "
				        "written: %s\n",
				        s->cli->metrics, err.msg);
			else if (store_get_current_cert(s->st, &ci, &version,
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
	       : current != NULL
	           ? (current->not_after - current->not_before) / 6
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
		    fleet_is_pinned(st))
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

void
session_observe(struct cf_session *s, const struct cf_rollout_result *res)
{
	int64_t now = cf_wall_now();
	size_t i;

	s->observed = true;
	for (i = 0; i < res->n; i++)
		(void)fleet_observe_result(&s->ns, &res->nodes[i], now);
}

size_t
session_count_selected(const struct cf_session *s,
                       const struct cf_rollout_opts *o)
{
	size_t i, n = 0;

	for (i = 0; i < s->pb->n_nodes; i++) {
		const char *name = s->pb->nodes[i].name;

		if (o->only != NULL && !cf_strv_has(o->only, name))
			continue;
		if (cf_strv_has(o->exclude, name) || cf_strv_has(o->skip, name))
			continue;
		n++;
	}
	return n;
}

int
session_record(struct cf_session *s, const struct cf_rollout_result *res,
               const struct cf_certinfo *current, cf_err_t *err)
{
	int64_t now = cf_wall_now();
	struct fleet_note note;
	size_t i;

	for (i = 0; i < res->n; i++) {
		const struct cf_node_result *r = &res->nodes[i];

		if (fleet_record(&s->ns, r,
		                 current ? current->sha256_hex : NULL, now,
		                 &note) < 0)
			return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		if (r->fixed[0] != '\0' || r->drift[0] != '\0') {
			char text[2 * CF_ERR_MSG_MAX + 32];

			snprintf(text, sizeof(text), "%s%s%s%s",
			         r->fixed[0] ? "fixed " : "", r->fixed,
			         r->fixed[0] && r->drift[0] ? "; " : "",
			         r->drift[0] ? "NOT fixed " : "");
			if (r->drift[0])
				strncat(text, r->drift,
				        sizeof(text) - strlen(text) - 1);
			session_event(s, CF_EV_NODE_DRIFT, r->node->name,
			              r->node->host, NULL, text, 0, 0);
		}
		if (note.change == FLEET_QUARANTINED)
			session_event(s, CF_EV_NODE_QUARANTINED, r->node->name,
			              r->node->host, cf_err_reason(r->err.code),
			              r->err.msg, note.attempts, 0);
		if (note.change != FLEET_RELEASED)
			continue;
		session_event(s, CF_EV_NODE_RELEASED, r->node->name,
		              r->node->host, note.was_reason, NULL,
		              note.attempts, 0);
		/* its own line: the run's lines said only "deployed" or
		 * "unchanged" */
		if (!s->cli->quiet)
			fprintf(stderr,
			        "certfleet: %s released from quarantine "
			        "(was: %s, %u attempt%s)\n",
			        r->node->name,
			        note.was_reason ? note.was_reason : "?",
			        note.attempts, cf_plural(note.attempts));
		free(note.was_reason);
	}
	return store_save_nodes(s->st, &s->ns, err);
}

void
session_record_http01(struct cf_session *s,
                      const struct cf_rollout_result *prov,
                      const struct cf_rollout_result *res)
{
	struct cf_rollout_result left;
	const struct cf_node_state *st;
	cf_err_t err = {0};
	size_t i, j;

	if (prov->n == 0)
		return;
	memset(&left, 0, sizeof(left));
	left.nodes = calloc(prov->n, sizeof(*left.nodes));
	if (left.nodes == NULL) {
		fprintf(stderr, "certfleet: out of memory recording http-01 "
		                "failures\n");
		return;
	}
	for (i = 0; i < prov->n; i++) {
		const struct cf_node_result *p = &prov->nodes[i];
		bool seen = false;

		if (p->outcome != CF_OUT_FAILED)
			continue;
		/* a pinned node stays pinned (manual): recording it would turn
		 * the operator's quarantine into one the next run lifts */
		st = fleet_find(&s->ns, p->node->name);
		if (st != NULL && fleet_is_pinned(st))
			continue;
		for (j = 0; j < res->n && !seen; j++)
			seen = res->nodes[j].node == p->node &&
			       (res->nodes[j].outcome == CF_OUT_UNCHANGED ||
			        res->nodes[j].outcome == CF_OUT_DEPLOYED ||
			        res->nodes[j].outcome == CF_OUT_FAILED);
		if (!seen)
			left.nodes[left.n++] =
			    *p; /* shallow: freed below only */
	}
	if (left.n > 0 && session_record(s, &left, NULL, &err) < 0)
		fprintf(stderr, "certfleet: %s\n", err.msg);
	free(left.nodes);
}

/* rollback: the nodes now serving the previous certificate are pinned, so
 * the next timer run does not put the current one straight back. */
static int
pin_rolled_back(struct cf_session *s, const struct cf_rollout_result *res,
                cf_err_t *err)
{
	int64_t now = cf_wall_now();
	struct cf_node_state *st;
	size_t i;

	for (i = 0; i < res->n; i++) {
		if (res->nodes[i].outcome != CF_OUT_DEPLOYED &&
		    res->nodes[i].outcome != CF_OUT_UNCHANGED)
			continue;
		st = store_node(&s->ns, res->nodes[i].node->name);
		if (st != NULL)
			fleet_pin(st,
			          "rolled back by operator; `quarantine "
			          "release` to resume",
			          now);
	}
	return store_save_nodes(s->st, &s->ns, err);
}

/* verify has no SSH: the file drift it reports is what the last deploy
 * saw and could not fix */
static void
drift_warnings(const struct cf_session *s, const struct cf_rollout_result *res)
{
	const struct cf_node_state *st;
	char when[32];
	size_t i;

	for (i = 0; i < res->n && !s->cli->quiet; i++) {
		st = store_node_find(&s->ns, res->nodes[i].node->name);
		if (st == NULL || st->drift == NULL ||
		    res->nodes[i].outcome == CF_OUT_SKIPPED)
			continue;
		cf_fmt_time(st->drift_seen, when, sizeof(when));
		fprintf(stderr,
		        "certfleet: WARNING: %s: files drift from the "
		        "playbook, not fixed by the deploy of %s: %s\n",
		        res->nodes[i].node->name, when, st->drift);
	}
}

/* After the rollout: exit code, node states, summary, notifications,
 * metrics and the JSON report. */
static int
rollout_tail(struct cf_session *s, const struct session_run *run,
             struct cf_rollout_result *res, char *const *pinned)
{
	const struct cf_rollout_opts *o = run->o;
	cf_err_t err = {0};
	int ex;

	if (run->http01 != NULL)
		challenge_http_carry_failures(run->http01, o, pinned, res);
	ex = rollout_exit_code(res);
	if (o->verify_only && res->n_failed > 0)
		ex = CF_EXIT_PARTIAL;
	if (run->ca_failed)
		ex = CF_EXIT_FAILED;
	if (o->verify_only) {
		/* read-only: what nodes serve feeds --metrics and expiry
		 * warnings of this run, and is not stored */
		session_observe(s, res);
		drift_warnings(s, res);
	} else if (!o->dry_run) {
		if (session_record(s, res, run->ci, &err) < 0)
			ex = cli_fail(&err);
		else if (run->pin && pin_rolled_back(s, res, &err) < 0)
			ex = cli_fail(&err);
	}
	if (run->http01 != NULL)
		session_record_http01(s, run->http01, res);
	report_summary(stderr, run->verb, res, ex);
	if (res->stopped)
		session_event(s, CF_EV_CANARY_STOPPED, NULL, NULL, NULL,
		              res->stop_reason, 0, 0);
	if (!o->dry_run)
		session_finish(s, run->verb, ex, run->ci);
	if (s->cli->json && run->rr != NULL)
		report_renew_json(stdout, ex, run->version, run->report_ci, res,
		                  &s->ns, run->rr);
	else if (s->cli->json)
		report_run_json(stdout, run->verb, ex, run->version,
		                run->report_ci, res, &s->ns);
	return ex;
}

int
session_rollout(struct cf_session *s, const struct session_run *run,
                struct cf_rollout_result *res, int *ex, cf_err_t *err)
{
	struct cf_rollout_opts *o = run->o;
	struct cf_report_ctx rctx;
	char **pinned = NULL, **suspects = NULL, **dead = NULL;
	int rc = -1;

	pinned = fleet_pinned_names(&s->ns, o->only);
	/* renew: nodes the http-01 step could not even reach are not
	 * dialled again, a blackholed node would cost a second
	 * connect_timeout */
	if (run->http01 != NULL)
		dead = challenge_http_unreachable(run->http01, pinned);
	o->skip = dead != NULL ? dead : pinned;
	o->suspect = suspects = fleet_suspect_names(&s->ns);
	memset(&rctx, 0, sizeof(rctx));
	rctx.tty = s->cli->tty && !s->cli->json;
	rctx.quiet = s->cli->quiet;
	rctx.verb = run->verb;
	o->progress = report_progress;
	o->progress_arg = &rctx;
	if (run->announce && !s->cli->quiet) {
		size_t n_sel = session_count_selected(s, o);

		fprintf(stderr, "certfleet: %s%s %s (%.16s…) %s %zu node%s\n",
		        run->verb, o->dry_run ? " (dry run)" : "",
		        s->pb->cert.name, run->ci->sha256_hex,
		        o->verify_only ? "on" : "to", n_sel, cf_plural(n_sel));
	}
	if (rollout_run(s->pb, s->ssh, run->bundle, run->ci, o, res, err) < 0)
		goto out;
	*ex = rollout_tail(s, run, res, pinned);
	rc = 0;
out:
	o->skip = o->suspect = NULL;
	o->progress_arg = NULL;
	free(dead);
	cf_strv_free(pinned);
	cf_strv_free(suspects);
	return rc;
}

int
rollout_exit_code(const struct cf_rollout_result *res)
{
	if (res->stopped)
		return CF_EXIT_FAILED;
	if (res->n_failed == 0)
		return CF_EXIT_OK;
	/* a dry run's "would deploy" is that node done, as far as it goes */
	if (res->n_deployed + res->n_unchanged + res->n_dryrun == 0)
		return CF_EXIT_FAILED;
	return CF_EXIT_PARTIAL;
}

int
session_check_names(const struct cf_session *s, char *const *v, const char *opt)
{
	size_t i;

	for (i = 0; v != NULL && v[i] != NULL; i++)
		if (playbook_node(s->pb, v[i]) == NULL)
			return cli_usage("%s: no node '%s' in %s", opt, v[i],
			                 s->pb->path);
	return 0;
}
