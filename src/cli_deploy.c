/* cli_deploy.c - `deploy`, `verify` and `rollback`: the rollout commands. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certfleet/cli.h"
#include "certfleet/report.h"
#include "certfleet/util.h"

#define PEM_MAX (1024 * 1024)

/* Read --cert/--key/--chain (or a certbot lineage) and check them before
 * anything is stored: a wrong file must not become the current cert. */
static int
load_input_bundle(const struct cf_playbook *pb, const char *cert,
                  const char *key, const char *chain, struct cf_bundle *b,
                  struct cf_certinfo *ci, cf_err_t *err)
{
	char *c = NULL, *k = NULL, *ch = NULL;
	size_t klen = 0;
	int rc = -1;

	if (cf_read_file(cert, PEM_MAX, &c, NULL, err) < 0 ||
	    cf_read_file(key, PEM_MAX, &k, &klen, err) < 0 ||
	    (chain != NULL && cf_read_file(chain, PEM_MAX, &ch, NULL, err) < 0))
		goto out;
	struct cf_bundle_labels labels = {cert, chain, key};

	if (crypto_bundle_from_pem_labeled(c, ch, k, &labels, pb->cert.domains,
	                                   pb->cert.n_domains, cf_wall_now(), b,
	                                   ci, err) < 0)
		goto out;
	rc = 0;
out:
	free(c);
	free(ch);
	cf_free_secret(k, klen);
	if (rc < 0 && err->code != CF_ERR_NOMEM)
		err->code = CF_ERR_DATA;
	return rc;
}

enum mode { MODE_DEPLOY, MODE_VERIFY, MODE_ROLLBACK };

static int
rollout_command(struct cf_cli *cli, int argc, char **argv, enum mode mode)
{
	static const struct option deploy_opts[] = {
	    {"cert", required_argument, NULL, 'c'},
	    {"key", required_argument, NULL, 'k'},
	    {"chain", required_argument, NULL, 'C'},
	    {"lineage", required_argument, NULL, 'L'},
	    {"only", required_argument, NULL, 'o'},
	    {"exclude", required_argument, NULL, 'x'},
	    {"force", no_argument, NULL, 'f'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0}};
	static const struct option verify_opts[] = {
	    {"only", required_argument, NULL, 'o'},
	    {"exclude", required_argument, NULL, 'x'},
	    {NULL, 0, NULL, 0}};
	static const struct option rollback_opts[] = {
	    {"only", required_argument, NULL, 'o'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0}};
	const char *verb = mode == MODE_DEPLOY   ? "deploy"
	                   : mode == MODE_VERIFY ? "verify"
	                                         : "rollback";
	const char *cert = NULL, *key = NULL, *chain = NULL, *lineage = NULL;
	char *lin_cert = NULL, *lin_key = NULL, *lin_chain = NULL;
	struct cf_rollout_opts o;
	struct cf_session s;
	struct cf_bundle b;
	struct cf_certinfo ci;
	struct cf_rollout_result res;
	struct cf_report_ctx rc_ctx;
	cf_err_t err = {0};
	char *version = NULL, **skips = NULL, **suspects = NULL;
	bool found = false, have_bundle = false;
	int c, ex = CF_EXIT_FAILED, flags;

	memset(&o, 0, sizeof(o));
	memset(&b, 0, sizeof(b));
	memset(&ci, 0, sizeof(ci));
	memset(&res, 0, sizeof(res));
	static const char *const usage[] = {
	    "usage: certfleet [global options] -p PLAYBOOK deploy [--cert F "
	    "--key F [--chain F] | --lineage DIR]\n"
	    "       [--only N,..] [--exclude N,..] [--force] [--dry-run]\n",
	    "usage: certfleet [global options] -p PLAYBOOK verify [--only N,..] "
	    "[--exclude N,..]\n",
	    "usage: certfleet [global options] -p PLAYBOOK rollback --only N,.. "
	    "[--dry-run]\n"};
	/* each command is offered only the options it takes */
	const struct option *lo = mode == MODE_DEPLOY   ? deploy_opts
	                          : mode == MODE_VERIFY ? verify_opts
	                                                : rollback_opts;
	struct cli_cmd cmd = {verb, usage[mode], false, false, lo};

	optind = 0; /* full reinit of GNU getopt */
	while ((c = cli_getopt(cli, &cmd, argc, argv, &ex)) != -1) {
		switch (c) {
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 'C': chain = optarg; break;
		case 'L': lineage = optarg; break;
		case 'o':
			cf_strv_free(o.only);
			o.only = cf_strv_split(optarg, ',');
			break;
		case 'x':
			cf_strv_free(o.exclude);
			o.exclude = cf_strv_split(optarg, ',');
			break;
		case 'f': o.force = true; break;
		case 'n': o.dry_run = true; break;
		default: /* CLI_OPT_EXIT: help printed, or a usage error */
			goto out_nosess;
		}
	}
	if (optind < argc) {
		ex = cli_usage("%s: unexpected argument '%s'", verb, argv[optind]);
		goto out_nosess;
	}
	if (mode != MODE_DEPLOY && (cert || key || chain || lineage)) {
		ex = cli_usage("%s takes no certificate files", verb);
		goto out_nosess;
	}
	if (mode == MODE_ROLLBACK && o.only == NULL) {
		ex = cli_usage("rollback needs --only NODE[,NODE...]");
		goto out_nosess;
	}
	if (lineage != NULL) {
		if (cert || key || chain) {
			ex = cli_usage("--lineage replaces --cert/--key/--chain");
			goto out_nosess;
		}
		/* certbot's live dir: cert.pem + chain.pem + privkey.pem */
		if (asprintf(&lin_cert, "%s/cert.pem", lineage) < 0 ||
		    asprintf(&lin_key, "%s/privkey.pem", lineage) < 0 ||
		    asprintf(&lin_chain, "%s/chain.pem", lineage) < 0) {
			ex = CF_EXIT_FAILED;
			goto out_nosess;
		}
		cert = lin_cert;
		key = lin_key;
		chain = lin_chain;
	}
	if ((cert == NULL) != (key == NULL) || (chain != NULL && cert == NULL)) {
		ex = cli_usage("--cert and --key go together (--chain needs both)");
		goto out_nosess;
	}

	/* verify only probes over TLS: no SSH identity, no lock, and
	 * (like a dry run) nothing written to the state directory */
	flags = CF_SESS_NODES;
	if (mode != MODE_VERIFY)
		flags |= CF_SESS_SSH;
	if (!o.dry_run && mode != MODE_VERIFY)
		flags |= CF_SESS_LOCK;
	ex = session_open(cli, verb, flags, &s);
	if (ex != 0)
		goto out_nosess;
	if ((ex = session_check_names(&s, o.only, "--only")) != 0 ||
	    (ex = session_check_names(&s, o.exclude, "--exclude")) != 0)
		goto out;

	if (cert != NULL) {
		if (load_input_bundle(s.pb, cert, key, chain, &b, &ci, &err) < 0)
			goto fail;
		have_bundle = true;
		if (!o.dry_run &&
		    store_put_bundle(s.st, &b, &version, &err) < 0)
			goto fail;
	} else if (mode == MODE_ROLLBACK) {
		if (store_get_previous(s.st, &b, &ci, &version, &found, &err) < 0)
			goto fail;
		if (!found) {
			cf_err_set(&err, CF_ERR_STATE, "rollback: the store has no "
			           "version before the current one");
			goto fail;
		}
		have_bundle = true;
		o.force = true;
		o.no_canary = true;
	} else {
		/* verify reads the certificate only: no key in memory */
		if (store_get_current(s.st, mode == MODE_VERIFY ? NULL : &b,
		                      &ci, &version, &found, &err) < 0)
			goto fail;
		if (!found) {
			cf_err_set(&err, CF_ERR_STATE,
			           "the store %s has no certificate yet: run "
			           "`deploy --cert F --key F` or `renew` first",
			           store_dir(s.st));
			goto fail;
		}
		have_bundle = true;
	}
	if (mode == MODE_VERIFY)
		o.verify_only = true;
	skips = session_manual_skips(&s, o.only);
	o.skip = skips;
	o.suspect = suspects = session_suspects(&s);
	memset(&rc_ctx, 0, sizeof(rc_ctx));
	rc_ctx.tty = cli->tty && !cli->json;
	rc_ctx.quiet = cli->quiet;
	rc_ctx.verb = verb;
	o.progress = report_progress;
	o.progress_arg = &rc_ctx;
	if (!cli->quiet) {
		size_t n_sel = session_count_selected(&s, &o);

		fprintf(stderr, "certfleet: %s%s %s (%.16s…) %s %zu node%s\n",
		        verb, o.dry_run ? " (dry run)" : "", s.pb->cert.name,
		        ci.sha256_hex, mode == MODE_VERIFY ? "on" : "to", n_sel,
		        cf_plural(n_sel));
	}
	if (rollout_run(s.pb, s.ssh, &b, &ci, &o, &res, &err) < 0)
		goto fail;
	ex = rollout_exit_code(&res);
	if (mode == MODE_VERIFY && res.n_failed > 0)
		ex = CF_EXIT_PARTIAL;
	if (mode == MODE_VERIFY) {
		/* read-only: what nodes serve feeds --metrics and expiry
		 * warnings of this run, and is not stored */
		session_observe(&s, &res);
		/* verify has no SSH: file drift is what the last deploy saw */
		for (size_t i = 0; i < res.n && !cli->quiet; i++) {
			const struct cf_node_state *st =
			    store_node(&s.ns, res.nodes[i].node->name);
			char when[32];

			if (st == NULL || st->drift == NULL ||
			    res.nodes[i].outcome == CF_OUT_SKIPPED)
				continue;
			cf_fmt_time(st->drift_seen, when, sizeof(when));
			fprintf(stderr, "certfleet: WARNING: %s: files drift from "
			        "the playbook, not fixed by the deploy of %s: %s\n",
			        res.nodes[i].node->name, when, st->drift);
		}
	} else if (!o.dry_run) {
		if (session_record(&s, &res, &ci, &err) < 0) {
			ex = cli_fail(&err);
		} else if (mode == MODE_ROLLBACK) {
			/* pin rolled-back nodes so the next timer run does
			 * not put the current certificate straight back */
			for (size_t i = 0; i < res.n; i++) {
				struct cf_node_state *st;

				if (res.nodes[i].outcome != CF_OUT_DEPLOYED &&
				    res.nodes[i].outcome != CF_OUT_UNCHANGED)
					continue;
				st = store_node(&s.ns, res.nodes[i].node->name);
				if (st == NULL)
					continue;
				st->quarantined = st->manual = true;
				st->quarantined_since = cf_wall_now();
				free(st->reason);
				free(st->detail);
				st->reason = strdup("manual");
				st->detail = strdup("rolled back by operator; "
				                    "`quarantine release` to resume");
			}
			if (store_save_nodes(s.st, &s.ns, &err) < 0)
				ex = cli_fail(&err);
		}
	}
	report_summary(stderr, verb, &res, ex);
	if (res.stopped)
		session_event(&s, CF_EV_CANARY_STOPPED, NULL, NULL, NULL,
		              res.stop_reason, 0, 0);
	if (!o.dry_run)
		session_finish(&s, verb, ex, &ci);
	if (cli->json)
		report_run_json(stdout, verb, ex, version, &ci, &res, &s.ns);
	goto out;
fail:
	ex = cli_fail(&err);
	if (!o.dry_run)
		session_finish(&s, verb, ex, have_bundle ? &ci : NULL);
	if (cli->json)
		report_run_json(stdout, verb, ex, version,
		                have_bundle ? &ci : NULL, NULL, NULL);
out:
	session_close(&s);
out_nosess:
	rollout_result_free(&res);
	crypto_bundle_free(&b);
	crypto_certinfo_free(&ci);
	free(version);
	cf_strv_free(skips);
	cf_strv_free(suspects);
	cf_strv_free(o.only);
	cf_strv_free(o.exclude);
	free(lin_cert);
	free(lin_key);
	free(lin_chain);
	return ex;
}

int
cli_deploy(struct cf_cli *cli, int argc, char **argv)
{
	return rollout_command(cli, argc, argv, MODE_DEPLOY);
}

int
cli_verify(struct cf_cli *cli, int argc, char **argv)
{
	return rollout_command(cli, argc, argv, MODE_VERIFY);
}

int
cli_rollback(struct cf_cli *cli, int argc, char **argv)
{
	return rollout_command(cli, argc, argv, MODE_ROLLBACK);
}
