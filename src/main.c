/* main.c - global options and dispatch.  The only file with process-wide
 * setup (libssh2/libcurl init, SIGPIPE, no core dumps) and the only one
 * with global mutable state: the first error of the run, for the --json
 * error document. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>
#include <libssh2.h>

#include "certfleet/cli.h"
#include "certfleet/http.h"
#include "certfleet/report.h"

static const char usage_text[] =
    "usage: certfleet [global options] -p PLAYBOOK COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  deploy [--cert F --key F [--chain F] | --lineage DIR] [--only N,..]\n"
    "         [--exclude N,..] [--force] [--dry-run]\n"
    "                      push the certificate to every node, verify, "
    "quarantine failures\n"
    "  verify [--only N,..] [--exclude N,..]\n"
    "                      check over TLS that every node serves the current\n"
    "                      certificate, its exact chain, trusted, on every\n"
    "                      verify endpoint and name (read-only)\n"
    "  status              current certificate and what each node serves\n"
    "  quarantine list | add NODE --reason TEXT | release NODE [--dry-run]\n"
    "  rollback --only N,.. [--dry-run]\n"
    "                      put the previous certificate back on nodes (and pin "
    "them)\n"
    "  renew [--force] [--dry-run] [--no-deploy] [--only N,..] [--exclude "
    "N,..]\n"
    "                      obtain a new certificate from the ACME CA when due, "
    "then deploy\n"
    "  revoke [--version ID] [--reason CODE] [--dry-run]\n"
    "                      revoke a certificate at the CA (default: the\n"
    "                      current one); keyCompromise also wipes its key\n"
    "                      from the store and its backups from the nodes\n"
    "  check [--warn DAYS] [--crit DAYS] [--timeout SECONDS]\n"
    "                      Nagios/Icinga plugin: live probe, soonest expiry, "
    "quarantines\n"
    "  validate            check the playbook, touch nothing\n"
    "\n"
    "global options (before or after the command):\n"
    "  -p, --playbook FILE   playbook (JSON)\n"
    "  --state-dir DIR       state directory (default $CERTFLEET_STATE_DIR or\n"
    "                        /var/lib/certfleet)\n"
    "  --json                machine-readable report on stdout\n"
    "  --metrics FILE        write Prometheus textfile metrics (atomically)\n"
    "  --wait[=SECONDS]      wait for another run's lock instead of exiting "
    "75\n"
    "  -q, --quiet           only failures and the summary\n"
    "  -h, --help, --version\n"
    "\n"
    "exit codes: 0 all nodes serve the current certificate, 2 partial (some\n"
    "quarantined), 1 failed, 64 usage, 65 bad certificate/key input, 75 "
    "locked,\n"
    "78 playbook error\n";

struct command {
	const char *name;
	int (*fn)(struct cf_cli *, int, char **);
};

static const struct command commands[] = {
    {"deploy", cli_deploy},     {"verify", cli_verify},
    {"status", cli_status},     {"quarantine", cli_quarantine},
    {"validate", cli_validate}, {"rollback", cli_rollback},
    {"renew", cli_renew},       {"revoke", cli_revoke},
    {"check", cli_check},
};

/* The first error reported through cli_fail/cli_usage: with --json it
 * becomes the "error" member of what stdout gets. */
static struct {
	bool set;
	char code[32];
	char msg[CF_ERR_MSG_MAX];
} first_error;

void
cli_note_error(const char *code, const char *msg)
{
	if (first_error.set)
		return;
	first_error.set = true;
	snprintf(first_error.code, sizeof(first_error.code), "%s", code);
	snprintf(first_error.msg, sizeof(first_error.msg), "%s", msg);
}

/* --json: exactly one document on stdout, whatever happened.  What the
 * command printed is passed through; a failure adds "error" to it, and a
 * command that printed nothing (a usage error, a playbook error, a
 * command without a report of its own) gets the minimal document. */
static void
json_finish(FILE *out, const char *buf, size_t len, const char *command, int ex)
{
	json_t *root = NULL;

	if (len > 0) {
		root = json_loadb(buf, len, 0, NULL);
		if (root == NULL || !json_is_object(root)) {
			/* not ours to rewrite: pass it through untouched */
			json_decref(root);
			fwrite(buf, 1, len, out);
			return;
		}
	} else {
		root = json_pack("{s:i,s:o,s:i}", "format", 1, "command",
		                 command ? json_string(command) : json_null(),
		                 "exit_code", ex);
	}
	if (root == NULL)
		return;
	if (ex != 0 && first_error.set &&
	    json_object_get(root, "error") == NULL)
		json_object_set_new(root, "error",
		                    json_pack("{s:s,s:s}", "code",
		                              first_error.code, "message",
		                              first_error.msg));
	report_json_dump(out, root);
}

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
	static const struct option longopts[] = {CLI_GLOBAL_LONGOPTS,
	                                         {NULL, 0, NULL, 0}};
	struct cf_cli cli;
	cf_err_t err = {0};
	const char *env, *command = NULL;
	FILE *real_stdout = stdout, *mem = NULL;
	char *buf = NULL;
	size_t i, len = 0;
	int c, ex = -1;
	bool initialized = false;

	no_core_dumps();
	memset(&cli, 0, sizeof(cli));
	env = getenv("CERTFLEET_STATE_DIR");
	cli.state_dir = env != NULL && *env ? env : "/var/lib/certfleet";
	env = getenv("CERTFLEET_PLAYBOOK");
	if (env != NULL && *env)
		cli.playbook = env;
	cli.tty = isatty(STDERR_FILENO);

	/* --json anywhere decides the shape of every answer, usage errors
	 * included, so look for it before anything can fail */
	for (i = 1; i < (size_t)argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--json") == 0)
			cli.json = true;

	opterr = 0; /* our own messages, also in the --json error document */
	while (ex < 0 && (c = getopt_long(argc, argv, "+" CLI_GLOBAL_SHORTOPTS,
	                                  longopts, NULL)) != -1) {
		switch (c) {
		case 'h': fputs(usage_text, stdout); return 0;
		case CLI_OPT_VERSION:
			printf("certfleet %s\n", CERTFLEET_VERSION);
			return 0;
		default:
			if (cli_global_option(&cli, c, argc, argv, &ex) < 0)
				break;
		}
	}
	if (ex < 0 && optind >= argc)
		ex = cli_usage("no command given");
	if (ex < 0) {
		command = argv[optind];
		for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (strcmp(command, commands[i].name) == 0)
				break;
		if (i == sizeof(commands) / sizeof(commands[0])) {
			ex = cli_usage("unknown command '%s'", command);
			command = NULL;
		}
	}
	if (cli.json) {
		/* the command's document is held until we know whether it
		 * needs an "error" member */
		fflush(stdout);
		mem = open_memstream(&buf, &len);
		if (mem != NULL)
			stdout = mem;
	}
	if (ex < 0) {
		/* A peer closing a socket must be an error return, not a kill. */
		signal(SIGPIPE, SIG_IGN);
		if (libssh2_init(0) != 0) {
			cf_err_set(&err, CF_ERR_INTERNAL,
			           "libssh2_init failed");
			ex = cli_fail(&err);
		} else if (http_global_init(&err) < 0) {
			libssh2_exit();
			ex = cli_fail(&err);
		} else {
			initialized = true;
			ex = commands[i].fn(&cli, argc - optind, argv + optind);
		}
	}
	if (mem != NULL) {
		fclose(mem); /* sets buf and len */
		stdout = real_stdout;
		json_finish(stdout, buf, len, command, ex);
		free(buf);
	}
	if (initialized) {
		http_global_cleanup();
		libssh2_exit();
	}
	return ex;
}
