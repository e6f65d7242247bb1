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

/* What the command line asked for. */
struct rollout_args {
	enum mode mode;
	const char *verb;
	const char *cert, *key, *chain;
	char *lin_cert, *lin_key, *lin_chain; /* --lineage's files, owned */
	struct cf_rollout_opts o;             /* only/exclude owned */
};

static void
rollout_args_free(struct rollout_args *a)
{
	cf_strv_free(a->o.only);
	cf_strv_free(a->o.exclude);
	free(a->lin_cert);
	free(a->lin_key);
	free(a->lin_chain);
}

/* --lineage DIR: certbot's live dir, cert.pem + chain.pem + privkey.pem.
 * 0, or the exit code. */
static int
lineage_files(struct rollout_args *a, const char *lineage)
{
	if (a->cert || a->key || a->chain)
		return cli_usage("--lineage replaces --cert/--key/--chain");
	if (asprintf(&a->lin_cert, "%s/cert.pem", lineage) < 0 ||
	    asprintf(&a->lin_key, "%s/privkey.pem", lineage) < 0 ||
	    asprintf(&a->lin_chain, "%s/chain.pem", lineage) < 0)
		return CF_EXIT_FAILED;
	a->cert = a->lin_cert;
	a->key = a->lin_key;
	a->chain = a->lin_chain;
	return 0;
}

/* The certificate files the options name: 0, or the exit code. */
static int
rollout_check_files(struct rollout_args *a, const char *lineage)
{
	int ex;

	if (a->mode != MODE_DEPLOY &&
	    (a->cert || a->key || a->chain || lineage))
		return cli_usage("%s takes no certificate files", a->verb);
	if (a->mode == MODE_ROLLBACK && a->o.only == NULL)
		return cli_usage("rollback needs --only NODE[,NODE...]");
	if (lineage != NULL && (ex = lineage_files(a, lineage)) != 0)
		return ex;
	if ((a->cert == NULL) != (a->key == NULL) ||
	    (a->chain != NULL && a->cert == NULL))
		return cli_usage("--cert and --key go together (--chain needs "
		                 "both)");
	return 0;
}

/* Options of deploy, verify or rollback into *a: 0, or -1 with the exit
 * code in *ex (help printed: 0; a usage error printed). */
static int
rollout_parse(struct cf_cli *cli, int argc, char **argv, struct rollout_args *a,
              int *ex)
{
	static const struct option deploy_opts[] =
	    {{"cert", required_argument, NULL, 'c'},
	     {"key", required_argument, NULL, 'k'},
	     {"chain", required_argument, NULL, 'C'},
	     {"lineage", required_argument, NULL, 'L'},
	     {"only", required_argument, NULL, 'o'},
	     {"exclude", required_argument, NULL, 'x'},
	     {"force", no_argument, NULL, 'f'},
	     {"dry-run", no_argument, NULL, 'n'},
	     {NULL, 0, NULL, 0}};
	static const struct option verify_opts[] =
	    {{"only", required_argument, NULL, 'o'},
	     {"exclude", required_argument, NULL, 'x'},
	     {NULL, 0, NULL, 0}};
	static const struct option rollback_opts[] =
	    {{"only", required_argument, NULL, 'o'},
	     {"dry-run", no_argument, NULL, 'n'},
	     {NULL, 0, NULL, 0}};
	static const char *const usage[] =
	    {"usage: certfleet [global options] -p PLAYBOOK deploy [--cert F "
	     "--key F [--chain F] | --lineage DIR]\n"
	     "       [--only N,..] [--exclude N,..] [--force] [--dry-run]\n",
	     "usage: certfleet [global options] -p PLAYBOOK verify [--only "
	     "N,..] "
	     "[--exclude N,..]\n",
	     "usage: certfleet [global options] -p PLAYBOOK rollback --only "
	     "N,.. "
	     "[--dry-run]\n"};
	/* each command is offered only the options it takes */
	const struct option *lo = a->mode == MODE_DEPLOY   ? deploy_opts
	                          : a->mode == MODE_VERIFY ? verify_opts
	                                                   : rollback_opts;
	struct cli_cmd cmd = {a->verb, usage[a->mode], false, false, lo};
	const char *lineage = NULL;
	int c;

	optind = 0; /* full reinit of GNU getopt */
	while ((c = cli_getopt(cli, &cmd, argc, argv, ex)) != -1) {
		switch (c) {
		case 'c': a->cert = optarg; break;
		case 'k': a->key = optarg; break;
		case 'C': a->chain = optarg; break;
		case 'L': lineage = optarg; break;
		case 'o':
			cf_strv_free(a->o.only);
			a->o.only = cf_strv_split(optarg, ',');
			break;
		case 'x':
			cf_strv_free(a->o.exclude);
			a->o.exclude = cf_strv_split(optarg, ',');
			break;
		case 'f': a->o.force = true; break;
		case 'n': a->o.dry_run = true; break;
		default: /* CLI_OPT_EXIT: help printed, or a usage error */
			return -1;
		}
	}
	if (optind < argc) {
		*ex = cli_usage("%s: unexpected argument '%s'", a->verb,
		                argv[optind]);
		return -1;
	}
	*ex = rollout_check_files(a, lineage);
	return *ex != 0 ? -1 : 0;
}

/* The bundle to roll out: the files given (stored first, unless a dry
 * run), the previous version (rollback) or the current one.  0, or -1
 * with err; *have once ci holds the certificate (then reported even when
 * storing it failed). */
static int
rollout_bundle(struct cf_session *s, struct rollout_args *a,
               struct cf_bundle *b, struct cf_certinfo *ci, char **version,
               bool *have, cf_err_t *err)
{
	bool found = false;

	if (a->cert != NULL) {
		if (load_input_bundle(s->pb, a->cert, a->key, a->chain, b, ci,
		                      err) < 0)
			return -1;
		*have = true;
		if (!a->o.dry_run &&
		    store_put_bundle(s->st, b, version, err) < 0)
			return -1;
		return 0;
	}
	if (a->mode == MODE_ROLLBACK) {
		if (store_get_previous(s->st, b, ci, version, &found, err) < 0)
			return -1;
		if (!found)
			return cf_err_set(err, CF_ERR_STATE,
			                  "rollback: the store "
			                  "has no version before the current "
			                  "one");
		*have = true;
		a->o.force = true;
		a->o.no_canary = true;
		return 0;
	}
	/* verify reads the certificate only: no key in memory */
	if (store_get_current(s->st, a->mode == MODE_VERIFY ? NULL : b, ci,
	                      version, &found, err) < 0)
		return -1;
	if (!found)
		return cf_err_set(err, CF_ERR_STATE,
		                  "the store %s has no "
		                  "certificate yet: run `deploy --cert F --key "
		                  "F` "
		                  "or `renew` first",
		                  store_dir(s->st));
	*have = true;
	/* verify compares the served chain with the stored one */
	if (a->mode == MODE_VERIFY &&
	    store_get_version_chain(s->st, *version, &b->chain, err) < 0)
		return -1;
	return 0;
}

static int
rollout_command(struct cf_cli *cli, int argc, char **argv, enum mode mode)
{
	struct rollout_args a;
	struct session_run run;
	struct cf_session s;
	struct cf_bundle b;
	struct cf_certinfo ci;
	struct cf_rollout_result res;
	cf_err_t err = {0};
	char *version = NULL;
	bool have_bundle = false;
	int ex, flags;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&ci, 0, sizeof(ci));
	memset(&res, 0, sizeof(res));
	a.mode = mode;
	a.verb = mode == MODE_DEPLOY   ? "deploy"
	         : mode == MODE_VERIFY ? "verify"
	                               : "rollback";
	if (rollout_parse(cli, argc, argv, &a, &ex) < 0)
		goto out_nosess;

	/* verify only probes over TLS: no SSH identity, no lock, and
	 * (like a dry run) nothing written to the state directory */
	flags = CF_SESS_NODES;
	if (mode != MODE_VERIFY)
		flags |= CF_SESS_SSH;
	if (!a.o.dry_run && mode != MODE_VERIFY)
		flags |= CF_SESS_LOCK;
	ex = session_open(cli, a.verb, flags, &s);
	if (ex != 0)
		goto out_nosess;
	if ((ex = session_check_names(&s, a.o.only, "--only")) != 0 ||
	    (ex = session_check_names(&s, a.o.exclude, "--exclude")) != 0)
		goto out;
	if (rollout_bundle(&s, &a, &b, &ci, &version, &have_bundle, &err) < 0)
		goto fail;
	if (mode == MODE_VERIFY)
		a.o.verify_only = true;
	memset(&run, 0, sizeof(run));
	run.verb = a.verb;
	run.bundle = &b;
	run.ci = run.report_ci = &ci;
	run.version = version;
	run.o = &a.o;
	run.announce = true;
	run.pin = mode == MODE_ROLLBACK;
	if (session_rollout(&s, &run, &res, &ex, &err) < 0)
		goto fail;
	goto out;
fail:
	ex = cli_fail(&err);
	if (!a.o.dry_run)
		session_finish(&s, a.verb, ex, have_bundle ? &ci : NULL);
	if (cli->json)
		report_run_json(stdout, a.verb, ex, version,
		                have_bundle ? &ci : NULL, NULL, NULL);
out:
	session_close(&s);
out_nosess:
	rollout_result_free(&res);
	crypto_bundle_free(&b);
	crypto_certinfo_free(&ci);
	free(version);
	rollout_args_free(&a);
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
