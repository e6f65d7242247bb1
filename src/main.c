/* main.c - global options and dispatch.  The only file with process-wide
 * setup (libssh2/libcurl init, SIGPIPE, no core dumps). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <libssh2.h>

#include "certfleet/cli.h"
#include "certfleet/http.h"

#ifndef CERTFLEET_VERSION
#define CERTFLEET_VERSION "0.1.0"
#endif

static const char usage_text[] =
    "usage: certfleet [global options] -p PLAYBOOK COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  deploy [--cert F --key F [--chain F] | --lineage DIR] [--only N,..]\n"
    "         [--exclude N,..] [--force] [--dry-run]\n"
    "                      push the certificate to every node, verify, quarantine failures\n"
    "  verify              check over TLS that every node serves the current certificate\n"
    "  status [--json]     current certificate and what each node serves\n"
    "  quarantine list | add NODE --reason TEXT | release NODE\n"
    "  rollback --only N,.. [--dry-run]\n"
    "                      put the previous certificate back on nodes (and pin them)\n"
    "  renew [--force] [--dry-run] [--no-deploy]\n"
    "                      obtain a new certificate from the ACME CA when due, then deploy\n"
    "  revoke [--reason CODE] [--dry-run]\n"
    "                      revoke the current certificate at the CA\n"
    "  check [--warn DAYS] [--crit DAYS] [--timeout SECONDS]\n"
    "                      Nagios/Icinga plugin: live probe, soonest expiry, quarantines\n"
    "  validate            check the playbook, touch nothing\n"
    "\n"
    "global options:\n"
    "  -p, --playbook FILE   playbook (JSON)\n"
    "  --state-dir DIR       state directory (default $CERTFLEET_STATE_DIR or\n"
    "                        /var/lib/certfleet)\n"
    "  --json                machine-readable report on stdout\n"
    "  --metrics FILE        write Prometheus textfile metrics (atomically)\n"
    "  --wait[=SECONDS]      wait for another run's lock instead of exiting 75\n"
    "  -q, --quiet           only failures and the summary\n"
    "  -h, --help, --version\n"
    "\n"
    "exit codes: 0 all nodes serve the current certificate, 2 partial (some\n"
    "quarantined), 1 failed, 64 usage, 65 bad certificate/key input, 75 locked,\n"
    "78 playbook error\n";

struct command {
	const char *name;
	int (*fn)(struct cf_cli *, int, char **);
};

static const struct command commands[] = {
    {"deploy", cli_deploy},         {"verify", cli_verify},
    {"status", cli_status},         {"quarantine", cli_quarantine},
    {"validate", cli_validate},     {"rollback", cli_rollback},
    {"renew", cli_renew},           {"revoke", cli_revoke},
    {"check", cli_check},
};

/* The process holds private keys (the certificate's, the SSH identity,
 * the ACME account's): a crash must not write them into a core file, and
 * no same-user process may ptrace them out or read /proc/PID/mem. */
static void
no_core_dumps(void)
{
	struct rlimit none = {0, 0};

	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	(void)setrlimit(RLIMIT_CORE, &none);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"playbook", required_argument, NULL, 'p'},
	    {"state-dir", required_argument, NULL, 'S'},
	    {"metrics", required_argument, NULL, 'M'},
	    {"json", no_argument, NULL, 'j'},
	    {"wait", optional_argument, NULL, 'w'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0}};
	struct cf_cli cli;
	cf_err_t err = {0};
	const char *env;
	size_t i;
	int c, ex;

	no_core_dumps();
	memset(&cli, 0, sizeof(cli));
	env = getenv("CERTFLEET_STATE_DIR");
	cli.state_dir = env != NULL && *env ? env : "/var/lib/certfleet";
	env = getenv("CERTFLEET_PLAYBOOK");
	if (env != NULL && *env)
		cli.playbook = env;
	cli.tty = isatty(STDERR_FILENO);

	while ((c = getopt_long(argc, argv, "+p:qhj", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': cli.playbook = optarg; break;
		case 'S': cli.state_dir = optarg; break;
		case 'M': cli.metrics = optarg; break;
		case 'j': cli.json = true; break;
		case 'q': cli.quiet = true; break;
		case 'w':
			if (optarg == NULL) {
				cli.wait_s = -1;
			} else {
				char *end;
				long v = strtol(optarg, &end, 10);

				if (*end != '\0' || v < 0 || v > 86400)
					return cli_usage("--wait takes seconds "
					                 "(0..86400)");
				cli.wait_s = (int)v;
			}
			break;
		case 'h': fputs(usage_text, stdout); return 0;
		case 'V': printf("certfleet %s\n", CERTFLEET_VERSION); return 0;
		default: return CF_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return cli_usage("no command given");

	/* A peer closing a socket must be an error return, not a kill. */
	signal(SIGPIPE, SIG_IGN);
	if (libssh2_init(0) != 0) {
		fputs("certfleet: libssh2_init failed\n", stderr);
		return 1;
	}
	if (http_global_init(&err) < 0) {
		libssh2_exit();
		return cli_fail(&err);
	}
	ex = -1;
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[optind], commands[i].name) == 0) {
			ex = commands[i].fn(&cli, argc - optind, argv + optind);
			break;
		}
	}
	if (ex < 0)
		ex = cli_usage("unknown command '%s'", argv[optind]);
	http_global_cleanup();
	libssh2_exit();
	return ex;
}
