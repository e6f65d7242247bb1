/* proc.h - run one local program: the only place certfleet forks.
 *
 * DNS hooks and notify commands go through proc_run, so every child starts
 * the same way: execve'd directly (no shell), every signal at its default
 * disposition (certfleet ignores SIGPIPE; a child inheriting that would
 * spin or print EPIPE errors where `yes | head -1` should just end), an
 * empty signal mask, its own process group, and a deadline after which
 * the whole group is killed (the hook and whatever it started). */
#ifndef CERTFLEET_PROC_H
#define CERTFLEET_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certfleet/err.h"
#include "certfleet/util.h"

struct cf_proc_spec {
	const char *path;  /* executed as is (no PATH search, no sh) */
	char *const *argv; /* argv[0] included; borrowed */
	char *const *envp; /* borrowed */
	const void *input; /* stdin bytes (NULL: /dev/null); must fit a
			      * pipe (64 KiB): written before the child
			      * starts, so it can neither block nor
			      * SIGPIPE us */
	size_t input_len;
	bool capture; /* stdout+stderr into out (up to out_max);
			 * false: the child's stdout and stderr are
			 * our stderr (our stdout may carry --json) */
	size_t out_max;
	int64_t timeout_ms;    /* > 0 */
	int64_t term_grace_ms; /* 0: SIGKILL the group at the deadline;
				  * else SIGTERM, then SIGKILL after this */
};

struct cf_proc_result {
	int exec_errno; /* != 0: execve failed (nothing ran) */
	bool timed_out; /* killed at the deadline (whole group) */
	int status;     /* waitpid status, when neither of those */
	cf_buf_t out;   /* captured output; caller frees */
};

/* Run spec to completion.  Returns -1 (err set) only when the child could
 * not be started (pipe, fork, input too large); otherwise 0 with res
 * filled: a failed execve, a timeout and a non-zero exit are results.
 * Returns once the program exited: its output pipe is read until then,
 * not until EOF, so a daemon it left holding the pipe cannot eat the
 * deadline.  Thread-safe (only async-signal-safe calls in the child). */
int proc_run(const struct cf_proc_spec *spec, struct cf_proc_result *res,
             cf_err_t *err);

void proc_result_free(struct cf_proc_result *res);

#endif
