/* challenge_dns.c - dns-01 through a hook executable.
 *
 * The hook is execve'd directly (no sh -c): domain and value become
 * argv and env entries, so nothing the CA or the playbook supplies can be
 * parsed as shell.  proc_run starts it with default signal dispositions in
 * its own process group, so a timeout kills it and whatever it started
 * (nsupdate, curl). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "certfleet/challenge.h"
#include "certfleet/proc.h"
#include "certfleet/util.h"

#define HOOK_DEFAULT_TIMEOUT_MS 60000
#define HOOK_OUTPUT_MAX 4096 /* kept for the error message */
#define HOOK_MSG_MAX 240
#define HOOK_DEL_GRACE_MS 5000

extern char **environ;

static const char *const hook_env_names[] = {
    "CERTFLEET_ACTION=",
    "CERTFLEET_DOMAIN=",
    "CERTFLEET_FQDN=",
    "CERTFLEET_VALUE=",
};

/* environ minus any inherited CERTFLEET_{ACTION,..} plus ours. */
static char **
hook_envp(const char *action, const char *domain, const char *fqdn,
          const char *value)
{
	size_t n = 0, k = 0;
	char **envp;

	while (environ && environ[n])
		n++;
	envp = calloc(n + 5, sizeof(char *));
	if (!envp)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		bool ours = false;

		for (size_t j = 0; j < 4; j++)
			if (strncmp(environ[i], hook_env_names[j],
			            strlen(hook_env_names[j])) == 0)
				ours = true;
		if (!ours)
			envp[k++] = environ[i]; /* borrowed */
	}
	{
		const char *vals[4] = {action, domain, fqdn, value};

		for (size_t j = 0; j < 4; j++) {
			size_t a = strlen(hook_env_names[j]),
			       b = strlen(vals[j]);

			envp[k + j] = malloc(a + b + 1);
			if (!envp[k + j]) {
				for (size_t m = 0; m < j; m++)
					free(envp[k + m]);
				free(envp);
				return NULL;
			}
			memcpy(envp[k + j], hook_env_names[j], a);
			memcpy(envp[k + j] + a, vals[j], b + 1);
		}
	}
	return envp;
}

static void
hook_envp_free(char **envp)
{
	size_t n = 0;

	if (!envp)
		return;
	while (envp[n])
		n++;
	/* the last four are ours; the rest belong to environ */
	for (size_t i = n >= 4 ? n - 4 : 0; i < n; i++)
		free(envp[i]);
	free(envp);
}

/* First line(s) of the hook's output, joined and sanitised for a one-line
 * message. */
static void
output_summary(const cf_buf_t *out, char *buf, size_t len)
{
	size_t k = 0;
	const char *p = out->data ? out->data : "";

	while (*p == '\n' || *p == '\r' || *p == ' ')
		p++;
	for (; *p && k + 1 < len; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '\n' || c == '\r') {
			/* join lines with " | " while there is room */
			while (p[1] == '\n' || p[1] == '\r')
				p++;
			if (!p[1] || k + 4 >= len)
				break;
			memcpy(buf + k, " | ", 3);
			k += 3;
			continue;
		}
		buf[k++] = (char)c;
	}
	buf[k] = '\0';
	/* the one rule for text from outside (err.c) */
	cf_sanitize(buf, buf, len);
	if (k == 0)
		snprintf(buf, len, "(no output)");
}

int
challenge_dns_run(const struct cf_dns_hook *h, const char *action,
                  const struct cf_acme_chall *c, cf_err_t *err)
{
	int64_t timeout =
	    h->timeout_ms > 0 ? h->timeout_ms : HOOK_DEFAULT_TIMEOUT_MS;
	char *fqdn = NULL, **envp = NULL, summary[HOOK_MSG_MAX];
	char *argv[5];
	int rc = -1;
	struct cf_proc_spec spec = {0};
	struct cf_proc_result res = {0};

	if (!h->hook || !*h->hook)
		return cf_err_set(err, CF_ERR_CONFIG, "dns-01 without a hook");
	/* The domain comes from the CA's authorization object: only hostname
	 * characters reach the hook, whatever the CA sent. */
	if (!c->domain || !*c->domain || c->domain[0] == '.' ||
	    strspn(c->domain,
	           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	           "0123456789.-_") != strlen(c->domain) ||
	    !c->value ||
	    strspn(c->value,
	           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
	           "KLMNOPQRSTUVWXYZ0123456789-_") != strlen(c->value))
		return cf_err_set(err, CF_ERR_ACME,
		                  "dns-01 for \"%.80s\": domain or "
		                  "value has characters a DNS name or "
		                  "base64url "
		                  "cannot have",
		                  c->domain ? c->domain : "");
	if (asprintf(&fqdn, "_acme-challenge.%s.", c->domain) < 0) {
		fqdn = NULL;
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	envp = hook_envp(action, c->domain, fqdn, c->value);
	if (!envp) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	argv[0] = (char *)h->hook;
	argv[1] = (char *)action;
	argv[2] = fqdn;
	argv[3] = (char *)c->value;
	argv[4] = NULL;

	if (h->deadline) {
		int64_t left = cf_ms_left(h->deadline);

		/* removing a record is worth a few seconds past the deadline;
		 * adding one the CA will never look at is not */
		if (strcmp(action, "del") == 0 && left < HOOK_DEL_GRACE_MS)
			left = HOOK_DEL_GRACE_MS;
		if (left < timeout)
			timeout = left;
	}
	if (timeout <= 0) {
		cf_err_set(err, CF_ERR_TIMEOUT,
		           "dns hook %s %s %s: deadline passed "
		           "before it could run",
		           h->hook, action, fqdn);
		goto out;
	}
	spec.path = h->hook;
	spec.argv = argv;
	spec.envp = envp;
	spec.capture = true;
	spec.out_max = HOOK_OUTPUT_MAX;
	spec.timeout_ms = timeout;
	if (proc_run(&spec, &res, err) < 0) {
		cf_err_prefix(err, "dns hook %s %s %s: ", h->hook, action,
		              fqdn);
		goto out;
	}
	output_summary(&res.out, summary, sizeof(summary));
	if (res.exec_errno != 0) {
		cf_err_set(err, CF_ERR_HOOK,
		           "dns hook %s %s %s: cannot execute "
		           "it: %s",
		           h->hook, action, fqdn, strerror(res.exec_errno));
		goto out;
	}
	if (res.timed_out) {
		cf_err_set(err, CF_ERR_HOOK,
		           "dns hook %s %s %s: killed after %" PRId64
		           ".%01" PRId64 " s without finishing: %s",
		           h->hook, action, fqdn, timeout / 1000,
		           timeout % 1000 / 100, summary);
		goto out;
	}
	if (WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0) {
		rc = 0;
		goto out;
	}
	if (WIFEXITED(res.status))
		cf_err_set(err, CF_ERR_HOOK, "dns hook %s %s %s: exit %d: %s",
		           h->hook, action, fqdn, WEXITSTATUS(res.status),
		           summary);
	else
		cf_err_set(err, CF_ERR_HOOK,
		           "dns hook %s %s %s: killed by signal "
		           "%d: %s",
		           h->hook, action, fqdn,
		           WIFSIGNALED(res.status) ? WTERMSIG(res.status) : 0,
		           summary);
out:
	proc_result_free(&res);
	hook_envp_free(envp);
	free(fqdn);
	return rc;
}

static int
dns_provision(void *arg, const struct cf_acme_chall *c, size_t n, cf_err_t *err)
{
	const struct cf_dns_hook *h = arg;

	for (size_t i = 0; i < n; i++)
		if (challenge_dns_run(h, "add", &c[i], err) < 0)
			return -1;
	if (h->settle_ms > 0) {
		struct timespec ts = {h->settle_ms / 1000,
		                      (h->settle_ms % 1000) * 1000000L};

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	return 0;
}

static void
dns_cleanup(void *arg, const struct cf_acme_chall *c, size_t n)
{
	const struct cf_dns_hook *h = arg;

	/* Best effort: a stale TXT record is harmless, a failed order is not
	 * made worse by it. */
	for (size_t i = 0; i < n; i++) {
		cf_err_t e = {0};

		(void)challenge_dns_run(h, "del", &c[i], &e);
	}
}

void
challenge_dns_ops(struct cf_dns_hook *h, struct cf_acme_challenge_ops *ops)
{
	ops->arg = h;
	ops->provision = dns_provision;
	ops->cleanup = dns_cleanup;
}
