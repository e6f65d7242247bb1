/* proc.c - run one local program (DNS hooks, notify commands).
 *
 * fork + execve rather than posix_spawn: glibc's posix_spawn leaves its
 * two internal signals (32, 33) ignored in the program it starts, and
 * "every signal at its default" is the point of this module. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "certfleet/proc.h"

#define PROC_TICK_MS 10

static void
tick(void)
{
	struct timespec ts = {0, PROC_TICK_MS * 1000000L};

	nanosleep(&ts, NULL);
}

/* Append what the pipe has now (non-blocking); sets *eof at end of file. */
static void
drain(int fd, cf_buf_t *out, size_t max, bool *eof)
{
	char buf[4096];
	ssize_t r;

	for (;;) {
		r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			*eof = true;
		if (r <= 0)
			return;
		/* past max keep reading and dropping: a full pipe would
		 * block the program */
		if (out->len < max)
			(void)cf_buf_append(out, buf,
			                    (size_t)r < max - out->len
			                        ? (size_t)r
			                        : max - out->len);
	}
}

/* The kernel's struct sigaction (x86_64, arm64 and the generic ABI: the
 * restorer slot is there whenever SA_RESTORER exists), for the signals
 * glibc's wrapper will not touch. */
struct kernel_sigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	unsigned long mask;
};

static void
reset_signal_raw(int sig)
{
	struct kernel_sigaction k;

	memset(&k, 0, sizeof(k));
	k.handler = SIG_DFL;
	(void)syscall(SYS_rt_sigaction, sig, &k, NULL, sizeof(k.mask));
}

/* The child's stdin: a pipe already holding spec->input (in[0]), or
 * /dev/null (*devnull). */
static int
open_stdin(const struct cf_proc_spec *spec, int in[2], int *devnull,
           cf_err_t *err)
{
	ssize_t w;

	if (spec->input == NULL) {
		*devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (*devnull < 0)
			return cf_err_set(err, CF_ERR_IO, "/dev/null: %s",
			                  strerror(errno));
		return 0;
	}
	if (pipe2(in, O_CLOEXEC) < 0)
		return cf_err_set(err, CF_ERR_IO, "%s: pipe: %s", spec->path,
		                  strerror(errno));
	(void)fcntl(in[1], F_SETFL, O_NONBLOCK);
	w = write(in[1], spec->input, spec->input_len);
	close(in[1]);
	in[1] = -1;
	if (w < 0 || (size_t)w != spec->input_len)
		return cf_err_set(err, CF_ERR_IO,
		                  "%s: input of %zu bytes does "
		                  "not fit a pipe",
		                  spec->path, spec->input_len);
	return 0;
}

/* The child after fork: its own process group, default signal dispositions
 * and an empty mask, stdin from fd0, stdout and stderr to out_fd (or
 * stdout to our stderr when out_fd < 0), then execve; a failed execve's
 * errno goes to errp_fd.  We may have threads: async-signal-safe calls
 * only. */
static void __attribute__((noreturn))
child_exec(const struct cf_proc_spec *spec, int fd0, int out_fd, int errp_fd)
{
	struct sigaction dfl;
	sigset_t none;
	int e;

	setpgid(0, 0);
	/* execve keeps SIG_IGN: our ignored SIGPIPE would be the program's.
	 * glibc's sigaction refuses the real-time signals it keeps for
	 * itself, yet whoever started us may have left them ignored (seen
	 * under a job runner): the kernel call resets those too.  The child
	 * has one thread, no glibc state to protect. */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP &&
		    sigaction(sig, &dfl, NULL) < 0)
			reset_signal_raw(sig);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (dup2(fd0, STDIN_FILENO) < 0 ||
	    dup2(out_fd >= 0 ? out_fd : STDERR_FILENO, STDOUT_FILENO) < 0 ||
	    (out_fd >= 0 && dup2(out_fd, STDERR_FILENO) < 0))
		_exit(126);
	execve(spec->path, spec->argv, spec->envp);
	e = errno;
	(void)!write(errp_fd, &e, sizeof(e));
	_exit(127);
}

/* The errno of a failed execve, reported on errp_fd; 0 when the program
 * runs (the pipe closed on exec). */
static int
exec_errno(int errp_fd)
{
	ssize_t w;
	int e = 0;

	while ((w = read(errp_fd, &e, sizeof(e))) < 0 && errno == EINTR)
		;
	return w == (ssize_t)sizeof(e) ? e : 0;
}

/* Read the output (out_fd, or -1) and wait for pid until it exits or its
 * deadline: then SIGTERM to its group, SIGKILL after term_grace_ms. */
static void
wait_child(const struct cf_proc_spec *spec, pid_t pid, int out_fd,
           struct cf_proc_result *res)
{
	int64_t deadline = cf_now_ms() + spec->timeout_ms, kill_at = 0;
	bool eof = false;

	for (;;) {
		siginfo_t si;

		if (out_fd >= 0 && !eof) {
			struct pollfd pp = {.fd = out_fd, .events = POLLIN};

			if (poll(&pp, 1, PROC_TICK_MS) > 0)
				drain(out_fd, &res->out, spec->out_max, &eof);
		} else {
			tick();
		}
		/* WNOWAIT: the exited program stays a zombie, so its pid (the
		 * group's id) cannot be reused before we are done killing
		 * what it left in the group */
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) <
		        0 &&
		    errno != EINTR) {
			kill(-pid, SIGKILL);
			break;
		}
		if (si.si_pid == pid)
			break;
		if (kill_at == 0 && cf_ms_left(deadline) == 0) {
			res->timed_out = true;
			if (spec->term_grace_ms > 0) {
				kill(-pid, SIGTERM);
				kill_at = cf_now_ms() + spec->term_grace_ms;
			} else {
				kill(-pid, SIGKILL);
				kill_at = INT64_MAX;
			}
		} else if (kill_at != 0 && kill_at != INT64_MAX &&
		           cf_ms_left(kill_at) == 0) {
			kill(-pid, SIGKILL);
			kill_at = INT64_MAX;
		}
	}
	/* a program killed at its deadline takes its whole group along,
	 * whatever ignored the SIGTERM */
	if (res->timed_out)
		kill(-pid, SIGKILL);
	if (out_fd >= 0 && !eof)
		drain(out_fd, &res->out, spec->out_max, &eof);
	while (waitpid(pid, &res->status, 0) < 0 && errno == EINTR)
		;
}

int
proc_run(const struct cf_proc_spec *spec, struct cf_proc_result *res,
         cf_err_t *err)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
	int devnull = -1, rc = -1;
	pid_t pid = -1;

	memset(res, 0, sizeof(*res));
	if (open_stdin(spec, in, &devnull, err) < 0)
		goto out;
	if (spec->capture && pipe2(out, O_CLOEXEC) < 0) {
		cf_err_set(err, CF_ERR_IO, "%s: pipe: %s", spec->path,
		           strerror(errno));
		goto out;
	}
	/* the child reports a failed execve here; a successful one closes
	 * it (O_CLOEXEC): "cannot execute: ENOENT" is told apart from a
	 * program that itself exits 127 */
	if (pipe2(errp, O_CLOEXEC) < 0) {
		cf_err_set(err, CF_ERR_IO, "%s: pipe: %s", spec->path,
		           strerror(errno));
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		cf_err_set(err, CF_ERR_IO, "%s: fork: %s", spec->path,
		           strerror(errno));
		goto out;
	}
	if (pid == 0)
		child_exec(spec, in[0] >= 0 ? in[0] : devnull,
		           spec->capture ? out[1] : -1, errp[1]);
	(void)setpgid(pid, pid); /* either side may win the race */
	close(errp[1]);
	errp[1] = -1;
	res->exec_errno = exec_errno(errp[0]);
	if (res->exec_errno != 0) {
		while (waitpid(pid, &res->status, 0) < 0 && errno == EINTR)
			;
		rc = 0;
		goto out;
	}
	if (out[1] >= 0) {
		close(out[1]);
		out[1] = -1;
		(void)fcntl(out[0], F_SETFL, O_NONBLOCK);
	}
	wait_child(spec, pid, out[0], res);
	rc = 0;
out:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
		if (errp[i] >= 0)
			close(errp[i]);
	}
	if (devnull >= 0)
		close(devnull);
	if (rc < 0)
		cf_buf_free(&res->out);
	return rc;
}

void
proc_result_free(struct cf_proc_result *res)
{
	if (res != NULL)
		cf_buf_free(&res->out);
}
