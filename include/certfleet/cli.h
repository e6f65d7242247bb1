/* cli.h - the commands.  main.c parses global options into struct cf_cli
 * and dispatches; each cli_* function implements one command and returns
 * the process exit code (documented in README "Exit codes").  Related
 * commands share a file (cli_deploy.c: deploy, verify, rollback;
 * cli_status.c: status, quarantine, validate; cli_renew.c: renew,
 * revoke); cli_common.c holds what they share. */
#ifndef CERTFLEET_CLI_H
#define CERTFLEET_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <sysexits.h>

#include "certfleet/err.h"
#include "certfleet/notify.h"
#include "certfleet/playbook.h"
#include "certfleet/report.h"
#include "certfleet/rollout.h"
#include "certfleet/ssh.h"
#include "certfleet/store.h"

#define CF_EXIT_OK 0
#define CF_EXIT_FAILED 1
#define CF_EXIT_PARTIAL 2
#define CF_EXIT_USAGE EX_USAGE     /* 64 */
#define CF_EXIT_DATA EX_DATAERR    /* 65 */
#define CF_EXIT_LOCKED EX_TEMPFAIL /* 75 */
#define CF_EXIT_CONFIG EX_CONFIG   /* 78 */

#ifndef CERTFLEET_VERSION
#define CERTFLEET_VERSION "0.1.0"
#endif

struct cf_cli {
	const char *playbook;  /* -p; NULL for commands that need none */
	const char *state_dir; /* --state-dir / $CERTFLEET_STATE_DIR */
	const char *metrics;   /* --metrics FILE or NULL */
	bool json;             /* --json: machine report on stdout */
	bool quiet;            /* -q: only errors and the summary */
	bool tty;              /* stderr is a terminal: live progress */
	int wait_s;            /* --wait: 0 fail at once, <0 forever */
};

/* Everything a command works with, opened in one place. */
struct cf_session {
	struct cf_cli *cli;
	struct cf_playbook *pb;
	cf_store_t *st;
	cf_ssh_ctx_t *ssh;
	struct cf_node_states ns;
	bool locked;
	bool observed;       /* ns holds what this run saw (verify) */
	int64_t started_ms;  /* for certfleet_run_duration_seconds */
	struct cf_event *ev; /* events to notify at session_finish */
	size_t n_ev;
	char **owned; /* strings the events point to */
	size_t n_owned;
};

enum { CF_SESS_LOCK = 1, CF_SESS_SSH = 2, CF_SESS_NODES = 4 };

/* Load the playbook, open the store (and lock, load node states, build the
 * SSH context as flags ask).  On failure prints the error and returns the
 * exit code (> 0); 0 on success. */
int session_open(struct cf_cli *cli, const char *what, int flags,
                 struct cf_session *s);
void session_close(struct cf_session *s);

/* Print "certfleet: MSG" on stderr and return the exit code for err. */
int cli_fail(const cf_err_t *err);
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Remember the run's first error for the --json error document (main.c;
 * cli_fail and cli_usage call it). */
void cli_note_error(const char *code, const char *msg);

/* Global options, accepted before the command and after it (`certfleet
 * deploy --json`, `certfleet status -p x.json`): main.c and cli_getopt
 * parse them with the same table and cli_global_option. */
enum {
	CLI_OPT_STATE_DIR = 0x100,
	CLI_OPT_METRICS,
	CLI_OPT_JSON,
	CLI_OPT_WAIT,
	CLI_OPT_VERSION,
	CLI_OPT_EXIT, /* cli_getopt: stop, the exit code is in *ex */
};
#define CLI_GLOBAL_SHORTOPTS "p:qh"
#define CLI_GLOBAL_LONGOPTS                                                    \
	{"playbook", required_argument, NULL, 'p'},                            \
	    {"state-dir", required_argument, NULL, CLI_OPT_STATE_DIR},         \
	    {"metrics", required_argument, NULL, CLI_OPT_METRICS},             \
	    {"json", no_argument, NULL, CLI_OPT_JSON},                         \
	    {"wait", optional_argument, NULL, CLI_OPT_WAIT},                   \
	    {"quiet", no_argument, NULL, 'q'},                                 \
	    {"help", no_argument, NULL, 'h'},                                  \
	{                                                                      \
		"version", no_argument, NULL, CLI_OPT_VERSION                  \
	}
/* Apply global option c (from getopt_long over CLI_GLOBAL_LONGOPTS):
 * 0, or -1 with the usage error printed and *ex set.  Also turns getopt's
 * '?' into a message naming the option. */
int
cli_global_option(struct cf_cli *cli, int c, int argc, char **argv, int *ex);

/* One command's options for cli_getopt.  Option values must not be 'p',
 * 'q', 'h' or >= 0x100 (the global ones). */
struct cli_cmd {
	const char *name;  /* "deploy", for messages */
	const char *usage; /* printed on stdout by -h / --help */
	bool permute;      /* options may follow operands (quarantine NODE) */
	bool plugin;       /* check: usage errors as a plugin line, exit 3 */
	const struct option *longopts; /* the command's own, or NULL */
};
/* getopt_long over the command's options and the global ones, which it
 * applies itself.  The caller sets optind = 0 before the first call.
 * Returns the command's option value, -1 at the end of options, or
 * CLI_OPT_EXIT with *ex set (help printed: 0; usage error printed: 64). */
int cli_getopt(struct cf_cli *cli, const struct cli_cmd *cmd, int argc,
               char **argv, int *ex);

/* Fold a rollout's results into the per-node state (fleetstate.h:
 * quarantine on failure, release on success), notify, and save it. */
int session_record(struct cf_session *s, const struct cf_rollout_result *res,
                   const struct cf_certinfo *current, cf_err_t *err);
/* Record the nodes that failed renew's http-01 step (prov) and that the
 * rollout (res, may be empty) did not record itself: --only/--exclude,
 * --no-deploy, no certificate, a rollout that could not run.  Recording
 * them in both would count one run as two failed attempts; pinned nodes
 * stay pinned.  Errors are printed. */
void session_record_http01(struct cf_session *s,
                           const struct cf_rollout_result *prov,
                           const struct cf_rollout_result *res);
/* Only what a rollout saw nodes serve, in memory (verify: read-only). */
void session_observe(struct cf_session *s, const struct cf_rollout_result *res);
/* How many playbook nodes a rollout with o will look at (--only,
 * --exclude and manual pins applied). */
size_t session_count_selected(const struct cf_session *s,
                              const struct cf_rollout_opts *o);
/* Queue a notification (strings are copied). */
void session_event(struct cf_session *s, cf_event_kind_t kind, const char *node,
                   const char *host, const char *reason, const char *detail,
                   unsigned count, int64_t not_after);
/* End of a command: expiry warnings for what nodes serve, notifications,
 * and the --metrics file, always under the run lock: a session that does
 * not hold it takes it without waiting (and writes from the state as it
 * is then) or, while a run holds it, leaves the file to that run and says
 * so on stderr.  Never changes the exit code. */
void session_finish(struct cf_session *s, const char *command, int exit_code,
                    const struct cf_certinfo *current);

/* One rollout command (deploy, verify, rollback, renew) from the rollout
 * on: what differs between them is here, the rest is session_rollout. */
struct session_run {
	const char *verb;                    /* "deploy", ... "renew" */
	const struct cf_bundle *bundle;      /* to deploy (verify: no key) */
	const struct cf_certinfo *ci;        /* its leaf */
	const struct cf_certinfo *report_ci; /* what the JSON names (renew's
						dry-run stand-in: NULL) */
	const char *version;                 /* store version, for the JSON */
	struct cf_rollout_opts *o;           /* selection and mode; skip,
						suspect and progress are set
						(and cleared) by session_rollout */
	bool announce;  /* first "certfleet: deploy NAME (sha…) to N nodes" */
	bool pin;       /* rollback: pin the nodes that now serve ci */
	bool ca_failed; /* renew: the CA failed: exit 1 whatever the nodes */
	const struct cf_rollout_result *http01; /* renew: the http-01 step's
						   results, or NULL */
	const struct cf_renewal_report *rr; /* renew's JSON document, or NULL
					       for the run report */
};
/* Pinned nodes skipped, suspects last; rollout; then the exit code (into
 * *ex), node states recorded (verify: only observed; dry run: nothing),
 * the summary line, notifications, metrics and --json.  -1 with err only
 * when the rollout could not run at all: nothing was reported then. */
int session_rollout(struct cf_session *s, const struct session_run *run,
                    struct cf_rollout_result *res, int *ex, cf_err_t *err);
/* Every name in v must be a node of the playbook: 0, or prints the error
 * and returns 64 (a typo in --only must not silently select nothing). */
int session_check_names(const struct cf_session *s, char *const *v,
                        const char *opt);
/* 0 all selected nodes serve current, 2 some failed, 1 stopped/none. */
int rollout_exit_code(const struct cf_rollout_result *res);

int cli_deploy(struct cf_cli *cli, int argc, char **argv);
int cli_verify(struct cf_cli *cli, int argc, char **argv);
int cli_status(struct cf_cli *cli, int argc, char **argv);
int cli_quarantine(struct cf_cli *cli, int argc, char **argv);
int cli_validate(struct cf_cli *cli, int argc, char **argv);
int cli_rollback(struct cf_cli *cli, int argc, char **argv);
int cli_renew(struct cf_cli *cli, int argc, char **argv);
int cli_revoke(struct cf_cli *cli, int argc, char **argv);
int cli_check(struct cf_cli *cli, int argc, char **argv);

#endif
