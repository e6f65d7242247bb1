/* test_proc.c - proc_run, the one runner of DNS hooks and notify
 * commands: what a program it starts inherits (signal dispositions, mask,
 * process group), its input and output, and its deadline, which kills the
 * whole process group. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc_alive.h"

#include "certfleet/proc.h"
#include "certfleet/util.h"

extern char **environ;

/* sh -c SCRIPT under proc_run, output captured */
static void
run_sh(const char *script, int64_t timeout_ms, struct cf_proc_result *res)
{
	char *argv[] = {"sh", "-c", (char *)script, NULL};
	struct cf_proc_spec spec = {
	    .path = "/bin/sh",
	    .argv = argv,
	    .envp = environ,
	    .capture = true,
	    .out_max = 4096,
	    .timeout_ms = timeout_ms,
	};
	cf_err_t err = {0};

	assert_int_equal(proc_run(&spec, res, &err), 0);
}

static bool
exited_0(const struct cf_proc_result *res)
{
	return res->exec_errno == 0 && !res->timed_out &&
	       WIFEXITED(res->status) && WEXITSTATUS(res->status) == 0;
}

static void
ignore_raw(int sig)
{
	struct {
		void (*handler)(int);
		unsigned long flags;
		void (*restorer)(void);
		unsigned long mask;
	} k;

	memset(&k, 0, sizeof(k));
	k.handler = SIG_IGN;
	assert_int_equal(syscall(SYS_rt_sigaction, sig, &k, NULL,
	                         sizeof(k.mask)),
	                 0);
}

/* certfleet ignores SIGPIPE and may block signals in threads: a program
 * it starts must see neither.  With SIGPIPE ignored `yes | head -1`
 * makes yes complain "Broken pipe" (or spin, in a program that ignores
 * write errors). */
static void
test_signals_default(void **state)
{
	struct cf_proc_result res;
	sigset_t usr1, old;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGUSR2, SIG_IGN);
	/* glibc's own real-time signals, which its sigaction refuses to
	 * change: a job runner that starts certfleet may leave them ignored */
	ignore_raw(32);
	ignore_raw(33);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &old);
	run_sh("grep -E '^Sig(Ign|Blk):' /proc/self/status; yes | head -n 1",
	       5000, &res);
	sigprocmask(SIG_SETMASK, &old, NULL);
	assert_true(exited_0(&res));
	assert_non_null(res.out.data);
	assert_non_null(strstr(res.out.data, "SigIgn:\t0000000000000000\n"));
	assert_non_null(strstr(res.out.data, "SigBlk:\t0000000000000000\n"));
	assert_non_null(strstr(res.out.data, "\ny\n"));
	assert_null(strstr(res.out.data, "Broken pipe"));
	proc_result_free(&res);
}

/* its own process group: the group id is its pid */
static void
test_own_group(void **state)
{
	struct cf_proc_result res;

	(void)state;
	run_sh("set -- $(cat /proc/$$/stat); [ \"$5\" = \"$$\" ] && echo "
	       "own-group",
	       5000, &res);
	assert_true(exited_0(&res));
	assert_string_equal(res.out.data, "own-group\n");
	proc_result_free(&res);
}

/* A program past its deadline is killed with everything it started. */
static void
test_deadline_kills_group(void **state)
{
	struct cf_proc_result res;
	int64_t t0 = cf_now_ms();
	long bg;

	(void)state;
	run_sh("sleep 300 & echo $!; sleep 300", 500, &res);
	assert_true(res.timed_out);
	assert_true(cf_now_ms() - t0 < 3000);
	assert_non_null(res.out.data);
	bg = strtol(res.out.data, NULL, 10);
	assert_true(bg > 1);
	/* it was our grandchild: allow its reaper a moment */
	for (int i = 0; i < 200 && alive(bg); i++)
		usleep(10000);
	assert_false(alive(bg));
	proc_result_free(&res);
}

/* Same with SIGTERM first: a group member ignoring SIGTERM still dies. */
static void
test_deadline_term_then_kill(void **state)
{
	char *argv[] = {"sh", "-c",
	                "(trap '' TERM; exec sleep 300) & echo $!; sleep 300",
	                NULL};
	struct cf_proc_spec spec = {
	    .path = "/bin/sh",
	    .argv = argv,
	    .envp = environ,
	    .capture = true,
	    .out_max = 4096,
	    .timeout_ms = 300,
	    .term_grace_ms = 300,
	};
	struct cf_proc_result res;
	cf_err_t err = {0};
	long bg;

	(void)state;
	assert_int_equal(proc_run(&spec, &res, &err), 0);
	assert_true(res.timed_out);
	bg = strtol(res.out.data ? res.out.data : "0", NULL, 10);
	assert_true(bg > 1);
	for (int i = 0; i < 200 && alive(bg); i++)
		usleep(10000);
	assert_false(alive(bg));
	proc_result_free(&res);
}

/* It returns when the program exits, not when the pipe closes: a daemon
 * it leaves behind holding stdout does not eat the deadline. */
static void
test_returns_at_exit(void **state)
{
	struct cf_proc_result res;
	int64_t t0 = cf_now_ms();

	(void)state;
	run_sh("sleep 3 & echo started", 10000, &res);
	assert_true(exited_0(&res));
	assert_true(cf_now_ms() - t0 < 2000);
	assert_string_equal(res.out.data, "started\n");
	proc_result_free(&res);
}

static void
test_input_and_status(void **state)
{
	char *argv[] = {"sh", "-c", "cat; exit 7", NULL};
	struct cf_proc_spec spec = {
	    .path = "/bin/sh",
	    .argv = argv,
	    .envp = environ,
	    .input = "hello\n",
	    .input_len = 6,
	    .capture = true,
	    .out_max = 3,
	    .timeout_ms = 5000,
	};
	struct cf_proc_result res;
	cf_err_t err = {0};

	(void)state;
	assert_int_equal(proc_run(&spec, &res, &err), 0);
	assert_false(res.timed_out);
	assert_true(WIFEXITED(res.status));
	assert_int_equal(WEXITSTATUS(res.status), 7);
	assert_string_equal(res.out.data, "hel"); /* capped at out_max */
	proc_result_free(&res);
}

static void
test_exec_fails(void **state)
{
	char *argv[] = {"/nonexistent/hook", NULL};
	struct cf_proc_spec spec = {
	    .path = "/nonexistent/hook",
	    .argv = argv,
	    .envp = environ,
	    .capture = true,
	    .out_max = 100,
	    .timeout_ms = 5000,
	};
	struct cf_proc_result res;
	cf_err_t err = {0};

	(void)state;
	assert_int_equal(proc_run(&spec, &res, &err), 0);
	assert_int_equal(res.exec_errno, ENOENT);
	proc_result_free(&res);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_signals_default),
	    cmocka_unit_test(test_own_group),
	    cmocka_unit_test(test_deadline_kills_group),
	    cmocka_unit_test(test_deadline_term_then_kill),
	    cmocka_unit_test(test_returns_at_exit),
	    cmocka_unit_test(test_input_and_status),
	    cmocka_unit_test(test_exec_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
