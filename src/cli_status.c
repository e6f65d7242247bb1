/* cli_status.c - `status`, `quarantine` and `validate`: the commands that
 * read or edit state without touching nodes. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/acme.h"
#include "certfleet/cli.h"
#include "certfleet/fleetstate.h"
#include "certfleet/renewal.h"
#include "certfleet/report.h"
#include "certfleet/util.h"

/* Renewal as the store knows it: due or not by the same rule `renew`
 * applies (renewal.h; the ARI time `renew` last picked, no CA asked) and
 * the last attempts.  An unreadable renewal.json is shown, not fatal. */
static void
status_renewal(struct cf_session *s, const struct cf_certinfo *ci,
               struct cf_renewal_state *rs, struct cf_renewal_due *due,
               struct cf_renewal_view *rv, cf_err_t *rerr)
{
	char *ari_id = NULL;

	memset(rv, 0, sizeof(*rv));
	rv->acme = s->pb->acme.directory != NULL;
	/* no store at all (never run): nothing attempted yet */
	if (s->st == NULL)
		rv->rs = NULL;
	else if (store_load_renewal(s->st, rs, rerr) < 0)
		rv->state_error = rerr->msg;
	else
		rv->rs = rs;
	if (ci != NULL && ci->aki != NULL && ci->serial != NULL)
		ari_id = acme_ari_cert_id(ci->aki, ci->aki_len, ci->serial,
		                          ci->serial_len);
	renewal_due(s->pb->cert.domains, s->pb->cert.n_domains,
	            s->pb->acme.renew_before_days, ci, rv->rs, ari_id,
	            cf_wall_now(), due);
	free(ari_id);
	rv->due = due->due;
	rv->next_due = due->next_due;
	rv->basis = due->basis;
	rv->why = due->why;
}

int
cli_status(struct cf_cli *cli, int argc, char **argv)
{
	struct cf_renewal_state rs;
	struct cf_renewal_due due;
	struct cf_renewal_view rv;
	cf_err_t rerr = {0};
	struct cf_session s;
	struct cf_bundle b;
	struct cf_certinfo ci;
	cf_err_t err = {0};
	char *version = NULL;
	bool found = false;
	int ex, i;

	struct cli_cmd cmd = {"status",
	                      "usage: certfleet [global options] -p "
	                      "PLAYBOOK status\n",
	                      false, false, NULL};

	optind = 0; /* full reinit of GNU getopt */
	if ((i = cli_getopt(cli, &cmd, argc, argv, &ex)) != -1)
		return ex;
	if (optind < argc)
		return cli_usage("status: unexpected argument '%s'",
		                 argv[optind]);
	memset(&b, 0, sizeof(b));
	memset(&ci, 0, sizeof(ci));
	memset(&rs, 0, sizeof(rs));
	/* read-only: no lock, every state file is replaced atomically */
	ex = session_open(cli, "status", CF_SESS_NODES, &s);
	if (ex != 0)
		return ex;
	if (store_get_current_cert(s.st, &ci, &version, &found, &err) < 0) {
		ex = cli_fail(&err);
		goto out;
	}
	status_renewal(&s, found ? &ci : NULL, &rs, &due, &rv, &rerr);
	report_status(stdout, cli->json, s.pb, version, found ? &ci : NULL,
	              &s.ns, &rv);
	ex = 0;
	/* read-only: session_finish only for --metrics, which writes that
	 * file under the run lock and nothing in the state dir */
	if (cli->metrics != NULL)
		session_finish(&s, "status", ex, found ? &ci : NULL);
out:
	crypto_bundle_free(&b);
	crypto_certinfo_free(&ci);
	store_renewal_free(&rs);
	free(version);
	session_close(&s);
	return ex;
}

/* `quarantine list`: every quarantined node, why and since when. */
static int
quarantine_list(struct cf_cli *cli)
{
	const struct cf_node_state *st;
	struct cf_session s;
	size_t i;
	int ex;

	ex = session_open(cli, "quarantine list", CF_SESS_NODES, &s);
	if (ex != 0)
		return ex;
	if (cli->json) {
		report_quarantine_json(stdout, s.pb, &s.ns);
		session_close(&s);
		return 0;
	}
	for (i = 0; i < s.ns.n; i++) {
		char since[32];

		st = &s.ns.v[i];
		if (!st->quarantined)
			continue;
		cf_fmt_time(st->quarantined_since, since, sizeof(since));
		printf("%-16s %-16s since %s, %u attempt%s%s: %s\n", st->name,
		       st->reason ? st->reason : "?", since, st->attempts,
		       cf_plural(st->attempts), st->manual ? " (manual)" : "",
		       st->detail ? st->detail : "");
	}
	session_close(&s);
	return 0;
}

/* After `quarantine add/release` saved: the metrics file is rewritten
 * whole, and without the current certificate its expiry series (and
 * alerts on them) would vanish. */
static void
quarantine_finish(struct cf_session *s, int ex)
{
	struct cf_certinfo ci;
	char *version = NULL;
	bool found = false;

	memset(&ci, 0, sizeof(ci));
	if (store_get_current_cert(s->st, &ci, &version, &found, NULL) < 0)
		found = false;
	session_finish(s, "quarantine", ex, found ? &ci : NULL);
	crypto_certinfo_free(&ci);
	free(version);
}

/* `quarantine add NODE --reason TEXT` (pin) or `release NODE`. */
static int
quarantine_edit(struct cf_cli *cli, const char *sub, const char *node,
                const char *reason, bool dry)
{
	bool add = strcmp(sub, "add") == 0;
	struct cf_session s;
	struct cf_node_state *st;
	cf_err_t err = {0};
	int ex;

	ex = session_open(cli, "quarantine",
	                  CF_SESS_NODES | (dry ? 0 : CF_SESS_LOCK), &s);
	if (ex != 0)
		return ex;
	if (playbook_node(s.pb, node) == NULL) {
		cf_err_set(&err, CF_ERR_USAGE, "no node '%s' in %s", node,
		           s.pb->path);
		ex = cli_fail(&err);
		goto out;
	}
	st = store_node(&s.ns, node);
	if (st == NULL) {
		cf_err_set(&err, CF_ERR_NOMEM, "out of memory");
		ex = cli_fail(&err);
		goto out;
	}
	if (add) {
		fleet_pin(st, reason, cf_wall_now());
	} else if (!fleet_release(st)) {
		/* nothing to release: say so once, change nothing */
		fprintf(stderr,
		        "certfleet: %s is not quarantined; nothing to "
		        "release\n",
		        node);
		ex = 0;
		goto out;
	}
	if (dry) {
		fprintf(stderr, "certfleet: dry run: would %s %s\n", sub, node);
		ex = 0;
		goto out;
	}
	if (store_save_nodes(s.st, &s.ns, &err) < 0) {
		ex = cli_fail(&err);
		goto out;
	}
	fprintf(stderr, "certfleet: %s %s\n", add ? "quarantined" : "released",
	        node);
	ex = 0;
	quarantine_finish(&s, ex);
out:
	session_close(&s);
	return ex;
}

int
cli_quarantine(struct cf_cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {{"reason", required_argument,
	                                          NULL, 'r'},
	                                         {"dry-run", no_argument, NULL,
	                                          'n'},
	                                         {NULL, 0, NULL, 0}};
	const char *sub, *node = NULL, *reason = NULL;
	bool dry = false;
	int c, ex;

	/* no '+' (permute): options may follow the subcommand and node */
	struct cli_cmd cmd =
	    {"quarantine",
	     "usage: certfleet [global options] "
	     "-p PLAYBOOK quarantine list | add NODE --reason TEXT |\n"
	     "       release NODE [--dry-run]\n",
	     true, false, longopts};

	/* optind = 0 fully reinitializes GNU getopt (main already used it) */
	optind = 0;
	while ((c = cli_getopt(cli, &cmd, argc, argv, &ex)) != -1) {
		if (c == 'r')
			reason = optarg;
		else if (c == 'n')
			dry = true;
		else
			return ex; /* help, or usage error */
	}
	if (optind >= argc)
		return cli_usage("quarantine list | add NODE --reason TEXT | "
		                 "release NODE");
	sub = argv[optind++];
	if (optind < argc)
		node = argv[optind++];
	if (optind < argc)
		return cli_usage("quarantine: unexpected argument '%s'",
		                 argv[optind]);
	if (strcmp(sub, "list") == 0)
		return quarantine_list(cli);
	if (strcmp(sub, "add") != 0 && strcmp(sub, "release") != 0)
		return cli_usage("quarantine: unknown subcommand '%s'", sub);
	if (node == NULL)
		return cli_usage("quarantine %s needs a NODE", sub);
	if (strcmp(sub, "add") == 0 && reason == NULL)
		return cli_usage("quarantine add needs --reason TEXT");
	for (const char *p = reason; p && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return cli_usage("--reason must be one line of text");
	return quarantine_edit(cli, sub, node, reason, dry);
}

int
cli_validate(struct cf_cli *cli, int argc, char **argv)
{
	struct cf_playbook *pb = NULL;
	cf_err_t err = {0};

	struct cli_cmd cmd = {"validate",
	                      "usage: certfleet [global options] "
	                      "-p PLAYBOOK validate\n",
	                      false, false, NULL};
	int c, ex;

	optind = 0; /* full reinit of GNU getopt */
	if ((c = cli_getopt(cli, &cmd, argc, argv, &ex)) != -1)
		return ex;
	if (optind < argc)
		return cli_usage("validate: unexpected argument '%s'",
		                 argv[optind]);
	if (cli->playbook == NULL)
		return cli_usage("validate needs a playbook: -p FILE");
	if (playbook_load(cli->playbook, &pb, &err) < 0)
		return cli_fail(&err);
	if (playbook_load_secrets(pb, &err) < 0) {
		playbook_free(pb);
		return cli_fail(&err);
	}
	/* a wrong directory would otherwise pass here and fail every node */
	if (ssh_check_files(pb->ssh.identity, pb->ssh.known_hosts, &err) < 0) {
		playbook_free(pb);
		return cli_fail(&err);
	}
	if (cli->json)
		report_validate_json(stdout, pb);
	else if (!cli->quiet)
		printf("%s: ok: certificate %s (%zu domain%s), %zu file%s, "
		       "%zu node%s\n",
		       cli->playbook, pb->cert.name, pb->cert.n_domains,
		       cf_plural(pb->cert.n_domains), pb->deploy.n_files,
		       cf_plural(pb->deploy.n_files), pb->n_nodes,
		       cf_plural(pb->n_nodes));
	playbook_free(pb);
	return 0;
}
