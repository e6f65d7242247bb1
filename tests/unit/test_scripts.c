/* test_scripts.c - the node scripts (src/sh/NAME.sh, embedded) and the
 * quoting that carries values into them: every value the C side puts in
 * front of a script (cf_buf_shquote, read back with the scripts' get())
 * must reach the script byte for byte under every sh a node may have, and
 * each script, with values and contents in front, must parse there. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "certfleet/util.h"
#include "../../src/scripts.h"

/* The shells nodes run the scripts with: Debian's sh, busybox's ash. */
static const char *const shells[] = {"dash", "busybox sh"};

/* Values a playbook or a certificate can carry that a shell would act on
 * if the quoting let it. */
static const char *const nasty[] = {
    "plain",
    "",
    "it's",
    "''",
    "'\\''",
    "$(touch /tmp/certfleet-pwned)",
    "`touch /tmp/certfleet-pwned`",
    "${HOME}$HOME$1$@$*$#$?",
    "a\"b\\c\\\\d",
    "line1\nline2\n",
    "\n",
    "-n",
    "--",
    "*",
    "/srv/tls/* ?[a]",
    "tab\there; echo x && echo y | cat > /dev/null",
    "\xc3\xa9t\xc3\xa9 \xe2\x9c\x93",
    "%s%n%%",
    "\\n\\t\\0",
    ("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIP\n"
     "-----END PRIVATE KEY-----\n"),
};

#define N_NASTY (sizeof(nasty) / sizeof(nasty[0]))

/* Runs SCRIPT with SHELL from a file; returns its stdout (malloc'd) and
 * sets *status to the exit status. */
static char *
run_shell(const char *shell, const char *script, size_t len, int *status)
{
	char path[] = "/tmp/certfleet-test-scripts.XXXXXX";
	char cmd[128], *out = NULL;
	size_t cap = 0, n = 0, r;
	FILE *p;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, script, len), (ssize_t)len);
	close(fd);
	snprintf(cmd, sizeof(cmd), "%s %s 2>&1", shell, path);
	p = popen(cmd, "r");
	assert_non_null(p);
	do {
		if (n + 4096 > cap) {
			cap = cap * 2 + 4096;
			out = realloc(out, cap + 1);
			assert_non_null(out);
		}
		r = fread(out + n, 1, 4096, p);
		n += r;
	} while (r > 0);
	out[n] = '\0';
	*status = pclose(p);
	unlink(path);
	return out;
}

/* get() as every script defines it: the scripts read T<i> and friends
 * through it, never by evaluating the value itself. */
static const char get_fn[] = "get() { eval \"$1=\\${$2$3}\"; }\n";

static void
test_values_round_trip(void **state)
{
	size_t s, i;

	(void)state;
	for (s = 0; s < sizeof(shells) / sizeof(shells[0]); s++) {
		cf_buf_t b = {0};
		int status;
		char *out;

		assert_int_equal(cf_buf_append(&b, "set -u\n", 7), 0);
		for (i = 0; i < N_NASTY; i++) {
			assert_int_equal(cf_buf_printf(&b, "T%zu=", i), 0);
			assert_int_equal(cf_buf_shquote(&b, nasty[i]), 0);
			assert_int_equal(cf_buf_append(&b, "\n", 1), 0);
		}
		assert_int_equal(cf_buf_append(&b, get_fn, strlen(get_fn)), 0);
		/* each value framed, so an empty or newline-ended one shows */
		assert_int_equal(cf_buf_printf(&b,
		                               "i=0; while [ \"$i\" -lt %zu ]; "
		                               "do get v T \"$i\"; "
		                               "printf '<%%s>' \"$v\"; "
		                               "i=$((i+1)); done\n",
		                               N_NASTY),
		                 0);
		out = run_shell(shells[s], b.data, b.len, &status);
		{
			cf_buf_t want = {0};

			for (i = 0; i < N_NASTY; i++)
				assert_int_equal(cf_buf_printf(&want, "<%s>",
				                               nasty[i]),
				                 0);
			if (strcmp(out, want.data) != 0)
				fail_msg("%s: got\n%s\nwant\n%s", shells[s],
				         out, want.data);
			cf_buf_free(&want);
		}
		assert_int_equal(status, 0);
		assert_true(access("/tmp/certfleet-pwned", F_OK) != 0);
		free(out);
		cf_buf_free(&b);
	}
}

/* Each script with a full set of values in front (the nasty ones as paths,
 * commands and contents) parses under every shell: sh -n reads it all
 * without running anything. */
static void
test_scripts_parse(void **state)
{
	const char *const scripts[] = {cf_sh_preflight, cf_sh_stage,
	                               cf_sh_rollback,  cf_sh_dirsafe,
	                               cf_sh_audit,     cf_sh_keyclean};
	const char *const names[] = {"preflight", "stage", "rollback",
	                             "dirsafe",   "audit", "keyclean"};
	size_t s, k, i;

	(void)state;
	for (s = 0; s < sizeof(shells) / sizeof(shells[0]); s++) {
		for (k = 0; k < sizeof(scripts) / sizeof(scripts[0]); k++) {
			cf_buf_t b = {0};
			char cmd[64];
			int status;
			char *out;

			assert_int_equal(cf_buf_printf(&b, "N=%zu\n", N_NASTY),
			                 0);
			for (i = 0; i < N_NASTY; i++) {
				assert_int_equal(cf_buf_printf(&b, "T%zu=", i),
				                 0);
				assert_int_equal(cf_buf_shquote(&b, nasty[i]),
				                 0);
				assert_int_equal(cf_buf_printf(&b,
				                               "\nC%zu=", i),
				                 0);
				assert_int_equal(cf_buf_shquote(&b, nasty[i]),
				                 0);
				assert_int_equal(cf_buf_append(&b, "\n", 1), 0);
			}
			assert_int_equal(cf_buf_append(&b, "CHECK=", 6), 0);
			assert_int_equal(cf_buf_shquote(&b, nasty[5]), 0);
			assert_int_equal(cf_buf_append(&b, "\n", 1), 0);
			assert_int_equal(cf_buf_append(&b, scripts[k],
			                               strlen(scripts[k])),
			                 0);
			assert_int_equal(cf_buf_append(&b, "main\n", 5), 0);
			snprintf(cmd, sizeof(cmd), "%s -n", shells[s]);
			out = run_shell(cmd, b.data, b.len, &status);
			if (status != 0 || out[0] != '\0')
				fail_msg("%s: %s does not parse: %s", shells[s],
				         names[k], out);
			free(out);
			cf_buf_free(&b);
		}
	}
}

/* The embedded text is the .sh file without comment-only and blank lines:
 * nothing else was dropped (the last line of each is what it should be). */
static void
test_embedded_text(void **state)
{
	(void)state;
	assert_non_null(strstr(cf_sh_stage, "echo certfleet-ok\n"));
	assert_non_null(strstr(cf_sh_rollback, "main \"$@\"\n"));
	assert_non_null(
	    strstr(cf_sh_preflight, "echo certfleet-preflight-done\n"));
	assert_null(strstr(cf_sh_stage, "\n#"));
	assert_null(strstr(cf_sh_stage, "\n\n"));
	assert_null(strstr(cf_sh_rollback, "shellcheck"));
}

/* dirsafe() under every shell: a parent of the target directory that
 * another account could write to is named with its owner and mode; a
 * shared_dir file exempts its own directory, never a parent. */
static void
test_dirsafe(void **state)
{
	char base[] = "/tmp/certfleet-test-dirsafe.XXXXXX", sub[128];
	static const struct {
		unsigned mode;
		const char *sd, *dir;
		const char *want;
	} cases[] = {
	    {0755, "", "sub", "0 "},
	    {0775, "", "sub",
	     "1 directory %s is group- or other-writable (owner "},
	    {0757, "", "sub", "1 directory %s is group- or other-writable"},
	    /* shared_dir: the target directory itself may be writable ... */
	    {0775, "1", "", "0 "},
	    /* ... its parents may not */
	    {0775, "1", "sub", "1 directory %s is group- or other-writable"},
	};
	size_t s, k;

	(void)state;
	assert_non_null(mkdtemp(base));
	snprintf(sub, sizeof(sub), "%s/sub", base);
	assert_int_equal(mkdir(sub, 0755), 0);
	for (s = 0; s < sizeof(shells) / sizeof(shells[0]); s++) {
		for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
			cf_buf_t b = {0};
			char want[200];
			int status;
			char *out;

			assert_int_equal(chmod(base, cases[k].mode), 0);
			assert_int_equal(
			    cf_buf_printf(&b,
			                  "nl='\n'\nget() { eval "
			                  "\"$1=\\${$2$3}\"; }\n"
			                  "N=1\nD0='%s%s%s'\nSD0='%s'\n",
			                  base, cases[k].dir[0] ? "/" : "",
			                  cases[k].dir, cases[k].sd),
			    0);
			assert_int_equal(cf_buf_append(&b, cf_sh_dirsafe,
			                               strlen(cf_sh_dirsafe)),
			                 0);
			assert_int_equal(cf_buf_printf(&b, "dirsafe; echo \"$? "
			                                   "${unsafe:-}\"\n"),
			                 0);
			out = run_shell(shells[s], b.data, b.len, &status);
			snprintf(want, sizeof(want), cases[k].want, base);
			/* a safe case may still meet an unsafe ancestor of
			 * base (/tmp is 1777): then it names that, not base */
			if (strcmp(want, "0 ") == 0 &&
			    strncmp(out, "1 ", 2) == 0 &&
			    strstr(out, base) == NULL)
				strcpy(want, "1 ");
			if (strncmp(out, want, strlen(want)) != 0)
				fail_msg("%s: case %zu: got \"%s\", want "
				         "\"%s...\"",
				         shells[s], k, out, want);
			free(out);
			cf_buf_free(&b);
		}
	}
	assert_int_equal(chmod(base, 0755), 0);
	assert_int_equal(rmdir(sub), 0);
	assert_int_equal(rmdir(base), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_values_round_trip),
	    cmocka_unit_test(test_scripts_parse),
	    cmocka_unit_test(test_dirsafe),
	    cmocka_unit_test(test_embedded_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
