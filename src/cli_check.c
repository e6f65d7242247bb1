/* cli_check.c - `check`: a Nagios / Icinga / Sensu plugin.
 *
 * One line on stdout, "CERTFLEET STATE - summary | perfdata", and the
 * plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.  It looks at
 * what every node serves right now (a live TLS probe), not at what the
 * store says it was seen serving: the incident certfleet exists for was a
 * certificate renewed on paper and expiring on a server.
 *
 * Read-only: no lock (a check must work while a deploy runs), no SSH
 * identity (a TLS probe only), no state created or written, no
 * notifications, no metrics, nothing on stderr.  --json: one document. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "certfleet/cli.h"
#include "certfleet/report.h"
#include "certfleet/renewal.h"
#include "certfleet/util.h"

#define CHECK_OK 0
#define CHECK_WARNING 1
#define CHECK_CRITICAL 2
#define CHECK_UNKNOWN 3
#define CHECK_NAMES_MAX 3 /* nodes named per problem in the line */
#define CHECK_RENEWAL_CRIT 3

static const char *const check_state_name[] = {"OK", "WARNING", "CRITICAL",
                                               "UNKNOWN"};

/* UNKNOWN: the plugin line, or with --json the error document main.c
 * prints (exit_code 3, "error": {"code": "unknown", ...}). */
static int
check_unknown(const struct cf_cli *cli, const char *msg)
{
	cli_note_error("unknown", msg);
	if (!cli->json)
		printf("CERTFLEET UNKNOWN - %s\n", msg);
	return CHECK_UNKNOWN;
}

static int
parse_num(const struct cf_cli *cli, const char *opt, const char *s, double lo,
          double hi, const char *unit, double *out)
{
	char msg[300];
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < lo ||
	    v > hi) {
		snprintf(msg, sizeof(msg),
		         "usage: %s takes %s (%g..%g), not "
		         "'%.100s'",
		         opt, unit, lo, hi, s);
		check_unknown(cli, msg);
		return -1;
	}
	*out = v;
	return 0;
}

/* ", name: what" appended to a problem list, at most CHECK_NAMES_MAX. */
static void
list_add(cf_buf_t *b, unsigned *n, const char *name, const char *what)
{
	if (*n < CHECK_NAMES_MAX)
		(void)cf_buf_printf(b, "%s%s%s%s", *n ? ", " : "", name,
		                    what ? ": " : "", what ? what : "");
	else if (*n == CHECK_NAMES_MAX)
		(void)cf_buf_printf(b, ", ...");
	(*n)++;
}

static int
raise_state(int cur, int s)
{
	return s > cur ? s : cur;
}

struct check_opts {
	double warn, crit; /* days; < 0: scaled from the renewal window */
	double timeout;    /* seconds; 0: the playbook's connect_timeout */
};

/* Options and the playbook's presence.  0 to go on; -1 with *ex the exit
 * code (help printed: 0; a usage problem, already said: UNKNOWN). */
static int
check_options(struct cf_cli *cli, int argc, char **argv, struct check_opts *opt,
              int *ex)
{
	static const struct option longopts[] =
	    {{"warn", required_argument, NULL, 'w'},
	     {"crit", required_argument, NULL, 'c'},
	     {"timeout", required_argument, NULL, 't'},
	     {NULL, 0, NULL, 0}};
	const struct cli_cmd cmd = {
	    "check",
	    "usage: certfleet [global options] -p PLAYBOOK check [--warn DAYS] "
	    "[--crit DAYS]\n"
	    "       [--timeout SECONDS]\n"
	    "Nagios plugin: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (see "
	    "certfleet(1)).\n",
	    false, true, longopts};
	int c;

	opt->warn = opt->crit = -1;
	opt->timeout = 0;
	*ex = CHECK_UNKNOWN;
	optind = 0; /* full reinit of GNU getopt */
	while ((c = cli_getopt(cli, &cmd, argc, argv, ex)) != -1) {
		switch (c) {
		case 'w':
			if (parse_num(cli, "--warn", optarg, 0, 36500, "days",
			              &opt->warn) < 0)
				return -1;
			break;
		case 'c':
			if (parse_num(cli, "--crit", optarg, 0, 36500, "days",
			              &opt->crit) < 0)
				return -1;
			break;
		case 't':
			if (parse_num(cli, "--timeout", optarg, 1, 3600,
			              "seconds", &opt->timeout) < 0)
				return -1;
			break;
		default: /* help printed (0), or a usage error (3) */ return -1;
		}
	}
	if (optind < argc) {
		char msg[300];

		snprintf(msg, sizeof(msg),
		         "usage: unexpected argument "
		         "'%.100s'",
		         argv[optind]);
		check_unknown(cli, msg);
		return -1;
	}
	if (cli->playbook == NULL) {
		*ex =
		    check_unknown(cli, "no playbook: certfleet -p FILE check");
		return -1;
	}
	return 0;
}

/* The store, read-only and without the lock (a check must work while a
 * deploy runs): node states, renewal state and the current certificate.
 * What it fills the caller frees, on failure too. */
static int
check_open_store(const struct cf_cli *cli, const struct cf_playbook *pb,
                 cf_store_t **st, struct cf_node_states *ns,
                 struct cf_renewal_state *rs, struct cf_certinfo *ci,
                 char **version, cf_err_t *err)
{
	char *dir = NULL;
	bool found = false;
	struct stat sb;
	int rc = -1;

	/* a read-only store reads a missing one as empty ("no certificate");
	 * for a mistyped --state-dir saying so is more useful */
	if (asprintf(&dir, "%s/%s", cli->state_dir, pb->cert.name) < 0) {
		dir = NULL;
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		cf_err_set(err, CF_ERR_STATE,
		           "%s: no state in %s (never "
		           "deployed, or wrong --state-dir?)",
		           pb->cert.name, dir);
		goto out;
	}
	if (store_open_ro(cli->state_dir, pb->cert.name, st, err) < 0 ||
	    store_load_nodes(*st, ns, err) < 0 ||
	    store_load_renewal(*st, rs, err) < 0 ||
	    store_get_current_cert(*st, ci, version, &found, err) < 0)
		goto out;
	if (!found) {
		cf_err_set(err, CF_ERR_STATE,
		           "%s: no certificate in the store "
		           "yet",
		           pb->cert.name);
		goto out;
	}
	rc = 0;
out:
	free(dir);
	return rc;
}

/* What the probe of every node found, against the store's node states. */
struct check_tally {
	cf_buf_t stale, quar, pinned; /* name lists for the line */
	cf_buf_t bad;                 /* verify's own messages: node,
					 endpoint, SNI and what is wrong */
	unsigned n_stale, n_quar, n_pinned, n_unreach, n_current, n_bad;
	int64_t soonest;         /* soonest expiry served, 0: none */
	const char *soonest_who; /* borrowed: a node name or "store" */
};

static void
check_tally_nodes(const struct cf_rollout_result *res,
                  const struct cf_node_states *ns, struct check_tally *t)
{
	size_t i;

	for (i = 0; i < res->n; i++) {
		const struct cf_node_result *r = &res->nodes[i];
		const struct cf_node_state *s =
		    store_node_find(ns, r->node->name);
		bool pin = s != NULL && s->quarantined && s->manual;

		if (r->after_sha256[0] != '\0' && r->after_not_after > 0 &&
		    (t->soonest == 0 || r->after_not_after < t->soonest)) {
			t->soonest = r->after_not_after;
			t->soonest_who = r->node->name;
		}
		if (r->outcome == CF_OUT_VERIFIED)
			t->n_current++;
		if (pin) {
			list_add(&t->pinned, &t->n_pinned, r->node->name, NULL);
		} else if (r->outcome != CF_OUT_VERIFIED &&
		           cf_err_is_verify(r->err.code) &&
		           r->err.code != CF_ERR_VERIFY) {
			/* answers, but clients on some endpoint or name get a
			 * wrong chain, an untrusted one or another
			 * certificate: an outage now, not a lag */
			list_add(&t->bad, &t->n_bad, r->err.msg, NULL);
		} else if (r->outcome != CF_OUT_VERIFIED) {
			bool reached = r->after_sha256[0] != '\0';

			t->n_unreach += !reached;
			list_add(&t->stale, &t->n_stale, r->node->name,
			         reached ? "serves another certificate"
			                 : cf_err_reason(r->err.code));
		}
		if (s != NULL && s->quarantined && !s->manual)
			list_add(&t->quar, &t->n_quar, r->node->name,
			         s->reason ? s->reason : "?");
		/* no SSH here: file drift is what the last deploy saw and
		 * could not fix (a WARNING, listed with the stale nodes) */
		if (s != NULL && s->drift != NULL)
			list_add(&t->stale, &t->n_stale, r->node->name,
			         "files drift from the playbook, not fixed by "
			         "the last deploy");
	}
}

/* The plugin's state, its line with perfdata on stdout (or the --json
 * document); returns the state, or -1 with err when out of memory. */
static int
check_report(const struct cf_cli *cli, const struct cf_playbook *pb,
             const struct cf_renewal_state *rs, const struct cf_certinfo *ci,
             const struct check_tally *t, double warn, double crit,
             cf_err_t *err)
{
	cf_buf_t line = {0};
	int64_t soonest = t->soonest;
	double soonest_days;
	int state = CHECK_OK;

	/* no node answered: the store's certificate is the best we know */
	if (soonest == 0)
		soonest = ci->not_after;
	soonest_days = (double)(soonest - cf_wall_now()) / 86400.0;
	if (soonest_days > -0.05 && soonest_days < 0.05)
		soonest_days = 0; /* never print "-0.0" */

	if (soonest_days <= 0 || soonest_days < crit || t->n_bad > 0 ||
	    rs->consecutive_failures >= CHECK_RENEWAL_CRIT)
		state = raise_state(state, CHECK_CRITICAL);
	if (soonest_days < warn || t->n_quar > 0 || t->n_stale > 0 ||
	    rs->consecutive_failures > 0)
		state = raise_state(state, CHECK_WARNING);

	cf_buf_printf(&line, "CERTFLEET %s - %s: ", check_state_name[state],
	              pb->cert.name);
	if (soonest_days <= 0)
		cf_buf_printf(&line, "EXPIRED %.1f days ago (%s)",
		              -soonest_days, t->soonest_who);
	else
		cf_buf_printf(&line, "soonest expiry %.1f days (%s)",
		              soonest_days, t->soonest_who);
	cf_buf_printf(&line, ", %u/%zu nodes serve current", t->n_current,
	              pb->n_nodes);
	if (t->n_stale > 0)
		cf_buf_printf(&line, " (%s)",
		              t->stale.data ? t->stale.data : "");
	if (t->n_bad > 0)
		cf_buf_printf(&line, ", %u misconfigured (%s)", t->n_bad,
		              t->bad.data ? t->bad.data : "");
	cf_buf_printf(&line, ", %u quarantined", t->n_quar);
	if (t->n_quar > 0)
		cf_buf_printf(&line, " (%s)", t->quar.data ? t->quar.data : "");
	if (t->n_pinned > 0)
		cf_buf_printf(&line, ", %u pinned (%s)", t->n_pinned,
		              t->pinned.data ? t->pinned.data : "");
	if (pb->acme.directory == NULL && rs->consecutive_failures == 0)
		cf_buf_printf(&line, ", renewal n/a");
	else if (rs->consecutive_failures == 0)
		cf_buf_printf(&line, ", renewal ok");
	else
		cf_buf_printf(&line, ", renewal FAILED %u time%s in a row",
		              rs->consecutive_failures,
		              rs->consecutive_failures == 1 ? "" : "s");
	/* Nagios ranges: "W:" alerts when the value drops below W */
	cf_buf_printf(&line,
	              " | soonest_days=%.1f;%.1f:;%.1f: nodes=%zu "
	              "serving_current=%u quarantined=%u pinned=%u "
	              "unreachable=%u renewal_failures=%u",
	              soonest_days, warn, crit, pb->n_nodes, t->n_current,
	              t->n_quar, t->n_pinned, t->n_unreach,
	              rs->consecutive_failures);
	if (line.data == NULL)
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	if (cli->json)
		report_json_dump(stdout,
		                 json_pack("{s:i,s:s,s:i,s:s,s:s,s:s,s:f,s:s,s:"
		                           "f,s:f,s:i,s:i,s:i,s:i,"
		                           "s:i,s:i}",
		                           "format", 1, "command", "check",
		                           "exit_code", state, "state",
		                           check_state_name[state], "text",
		                           line.data, "name", pb->cert.name,
		                           "soonest_days", soonest_days,
		                           "soonest_node", t->soonest_who,
		                           "warn_days", warn, "crit_days", crit,
		                           "nodes", (int)pb->n_nodes,
		                           "serving_current", (int)t->n_current,
		                           "quarantined", (int)t->n_quar,
		                           "pinned", (int)t->n_pinned,
		                           "unreachable", (int)t->n_unreach,
		                           "renewal_failures",
		                           (int)rs->consecutive_failures));
	else
		printf("%s\n", line.data);
	cf_buf_free(&line);
	return state;
}

int
cli_check(struct cf_cli *cli, int argc, char **argv)
{
	struct cf_playbook *pb = NULL;
	cf_store_t *st = NULL;
	struct cf_node_states ns = {0};
	struct cf_renewal_state rs;
	struct cf_bundle b;
	struct cf_certinfo ci;
	struct cf_rollout_opts o;
	struct cf_rollout_result res;
	struct check_opts opt;
	struct check_tally t;
	double dflt_warn, dflt_crit;
	cf_err_t err = {0};
	char *version = NULL;
	int ex, state;

	memset(&rs, 0, sizeof(rs));
	memset(&b, 0, sizeof(b));
	memset(&ci, 0, sizeof(ci));
	memset(&o, 0, sizeof(o));
	memset(&res, 0, sizeof(res));
	memset(&t, 0, sizeof(t));
	t.soonest_who = "store";
	if (check_options(cli, argc, argv, &opt, &ex) < 0)
		goto out;
	if (playbook_load(cli->playbook, &pb, &err) < 0 ||
	    check_open_store(cli, pb, &st, &ns, &rs, &ci, &version, &err) < 0)
		goto unknown;
	if (opt.timeout > 0) /* the probe deadline */
		pb->ssh.connect_timeout = (unsigned)opt.timeout;
	/* defaults scale with the renewal window (renewal.h) */
	renewal_check_thresholds(pb->acme.renew_before_days, &ci, &dflt_warn,
	                         &dflt_crit);
	if (opt.warn < 0)
		opt.warn = dflt_warn;
	if (opt.crit < 0)
		opt.crit = dflt_crit;

	/* the served chain is compared with the stored one */
	if (store_get_version_chain(st, version, &b.chain, &err) < 0)
		goto unknown;
	/* every node, pinned ones too: read-only, and a pinned node that
	 * answers still serves clients */
	o.verify_only = true;
	o.progress = NULL;
	/* a TLS probe only: no SSH identity needed (nor loaded) */
	if (rollout_run(pb, NULL, &b, &ci, &o, &res, &err) < 0)
		goto unknown;
	check_tally_nodes(&res, &ns, &t);
	state = check_report(cli, pb, &rs, &ci, &t, opt.warn, opt.crit, &err);
	if (state < 0)
		goto unknown;
	ex = state;
	goto out;
unknown:
	ex = check_unknown(cli, err.msg);
out:
	fflush(stdout);
	rollout_result_free(&res);
	crypto_bundle_free(&b);
	crypto_certinfo_free(&ci);
	store_renewal_free(&rs);
	store_nodes_free(&ns);
	store_close(st);
	playbook_free(pb);
	free(version);
	cf_buf_free(&t.stale);
	cf_buf_free(&t.bad);
	cf_buf_free(&t.quar);
	cf_buf_free(&t.pinned);
	return ex;
}
