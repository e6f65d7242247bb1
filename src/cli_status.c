/* cli_status.c - `status`, `quarantine` and `validate`: the commands that
 * read or edit state without touching nodes. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/cli.h"
#include "certfleet/report.h"
#include "certfleet/util.h"

int
cli_status(struct cf_cli *cli, int argc, char **argv)
{
	struct cf_session s;
	struct cf_bundle b;
	struct cf_certinfo ci;
	cf_err_t err = {0};
	char *version = NULL;
	bool found = false;
	int ex, i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			cli->json = true;
		else
			return cli_usage("status: unexpected argument '%s'",
			                 argv[i]);
	}
	memset(&b, 0, sizeof(b));
	memset(&ci, 0, sizeof(ci));
	/* read-only: no lock, every state file is replaced atomically */
	ex = session_open(cli, "status", CF_SESS_NODES, &s);
	if (ex != 0)
		return ex;
	if (store_get_current_cert(s.st, &ci, &version, &found, &err) < 0) {
		ex = cli_fail(&err);
		goto out;
	}
	report_status(stdout, cli->json, s.pb, version, found ? &ci : NULL,
	              &s.ns);
	ex = 0;
	session_finish(&s, "status", ex, found ? &ci : NULL);
out:
	crypto_bundle_free(&b);
	crypto_certinfo_free(&ci);
	free(version);
	session_close(&s);
	return ex;
}

int
cli_quarantine(struct cf_cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"reason", required_argument, NULL, 'r'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0}};
	const char *sub, *node = NULL, *reason = NULL;
	struct cf_session s;
	struct cf_node_state *st;
	struct cf_bundle b;
	struct cf_certinfo ci;
	cf_err_t err = {0};
	char *version = NULL;
	bool dry = false, found = false;
	int c, ex;
	size_t i;

	if (argc < 2)
		return cli_usage("quarantine list | add NODE --reason TEXT | "
		                 "release NODE");
	sub = argv[1];
	argc--;
	argv++;
	/* optind = 0 fully reinitializes GNU getopt (main already used it);
	 * no '+': options may follow the node name */
	optind = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'r')
			reason = optarg;
		else if (c == 'n')
			dry = true;
		else
			return CF_EXIT_USAGE;
	}
	if (optind < argc)
		node = argv[optind++];
	if (optind < argc)
		return cli_usage("quarantine: unexpected argument '%s'",
		                 argv[optind]);
	if (strcmp(sub, "list") == 0) {
		ex = session_open(cli, "quarantine list", CF_SESS_NODES, &s);
		if (ex != 0)
			return ex;
		for (i = 0; i < s.ns.n; i++) {
			char since[32];

			st = &s.ns.v[i];
			if (!st->quarantined)
				continue;
			cf_fmt_time(st->quarantined_since, since, sizeof(since));
			printf("%-16s %-16s since %s, %u attempts%s: %s\n",
			       st->name, st->reason ? st->reason : "?", since,
			       st->attempts, st->manual ? " (manual)" : "",
			       st->detail ? st->detail : "");
		}
		session_close(&s);
		return 0;
	}
	if (strcmp(sub, "add") != 0 && strcmp(sub, "release") != 0)
		return cli_usage("quarantine: unknown subcommand '%s'", sub);
	if (node == NULL)
		return cli_usage("quarantine %s needs a NODE", sub);
	if (strcmp(sub, "add") == 0 && reason == NULL)
		return cli_usage("quarantine add needs --reason TEXT");
	for (const char *p = reason; p && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return cli_usage("--reason must be one line of text");
	ex = session_open(cli, "quarantine", CF_SESS_NODES |
	                  (dry ? 0 : CF_SESS_LOCK), &s);
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
	if (strcmp(sub, "add") == 0) {
		if (!st->quarantined)
			st->quarantined_since = cf_wall_now();
		st->quarantined = st->manual = true;
		free(st->reason);
		free(st->detail);
		st->reason = strdup("manual");
		st->detail = strdup(reason);
	} else {
		if (!st->quarantined)
			fprintf(stderr, "certfleet: %s was not quarantined\n",
			        node);
		st->quarantined = st->manual = false;
		st->attempts = 0;
		st->quarantined_since = 0;
		free(st->reason);
		free(st->detail);
		st->reason = st->detail = NULL;
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
	fprintf(stderr, "certfleet: %s %s\n",
	        strcmp(sub, "add") == 0 ? "quarantined" : "released", node);
	ex = 0;
	/* the metrics file is rewritten whole: without the current
	 * certificate its expiry series (and alerts on them) would vanish */
	memset(&b, 0, sizeof(b));
	memset(&ci, 0, sizeof(ci));
	if (store_get_current_cert(s.st, &ci, &version, &found, NULL) < 0)
		found = false;
	session_finish(&s, "quarantine", ex, found ? &ci : NULL);
	crypto_bundle_free(&b);
	crypto_certinfo_free(&ci);
	free(version);
out:
	session_close(&s);
	return ex;
}

int
cli_validate(struct cf_cli *cli, int argc, char **argv)
{
	struct cf_playbook *pb = NULL;
	cf_err_t err = {0};

	if (argc > 1)
		return cli_usage("validate: unexpected argument '%s'", argv[1]);
	if (cli->playbook == NULL)
		return cli_usage("validate needs a playbook: -p FILE");
	if (playbook_load(cli->playbook, &pb, &err) < 0)
		return cli_fail(&err);
	if (playbook_load_secrets(pb, &err) < 0) {
		playbook_free(pb);
		return cli_fail(&err);
	}
	if (!cli->quiet)
		printf("%s: ok: certificate %s (%zu domains), %zu files, "
		       "%zu nodes\n", cli->playbook, pb->cert.name,
		       pb->cert.n_domains, pb->deploy.n_files, pb->n_nodes);
	playbook_free(pb);
	return 0;
}
