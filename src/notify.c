/* notify.c - tell a human: a JSON POST to each webhook and/or a command
 * with the same JSON on its stdin.
 *
 * Notifying is best effort by design: a dead chat server must never turn
 * a good deploy into a failed one, nor hold it for long.  Every delivery
 * is bounded (10 s per webhook and event, tries included; 10 s per
 * command run), and a notifier that failed outright is not tried again
 * for the remaining events of the same run, so a run with many events and
 * a dead webhook still costs one deadline, not one per event.
 *
 * Webhook URLs often carry a secret token in the path (Slack, Mattermost,
 * Teams): they are never printed whole, only scheme://host/… */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "certfleet/http.h"
#include "certfleet/notify.h"
#include "certfleet/proc.h"
#include "certfleet/util.h"

#define NOTIFY_WEBHOOK_MS 10000 /* per webhook and event, tries included */
#define NOTIFY_TRIES 3
#define NOTIFY_CMD_MS 10000 /* per command run */
#define NOTIFY_KILL_GRACE_MS 1000
#define NOTIFY_RESP_MAX (64 * 1024)
#define NOTIFY_FIELD_MAX 1024 /* one sanitized field */

extern char **environ;

const char *
notify_kind_name(cf_event_kind_t k)
{
	switch (k) {
	case CF_EV_RENEWAL_FAILED: return "renewal_failed";
	case CF_EV_NODE_QUARANTINED: return "node_quarantined";
	case CF_EV_NODE_RELEASED: return "node_released";
	case CF_EV_EXPIRY_WARNING: return "expiry_warning";
	case CF_EV_CANARY_STOPPED: return "canary_stopped";
	case CF_EV_NODE_DRIFT: return "node_drift";
	}
	return "unknown";
}

static const char *
ordinal_suffix(unsigned n)
{
	if (n % 100 >= 11 && n % 100 <= 13)
		return "th";
	switch (n % 10) {
	case 1: return "st";
	case 2: return "nd";
	case 3: return "rd";
	default: return "th";
	}
}

static void
fmt_date(int64_t epoch, char *buf, size_t len)
{
	struct tm tm;
	time_t t = (time_t)epoch;

	if (epoch <= 0 || gmtime_r(&t, &tm) == NULL)
		snprintf(buf, len, "unknown date");
	else
		strftime(buf, len, "%Y-%m-%d", &tm);
}

void
notify_format_text(const char *cert, const struct cf_event *ev, int64_t now,
                   char *buf, size_t len)
{
	char node[NOTIFY_FIELD_MAX], host[NOTIFY_FIELD_MAX];
	char who[2 * NOTIFY_FIELD_MAX + 8];
	char reason[NOTIFY_FIELD_MAX], detail[NOTIFY_FIELD_MAX], date[32];
	char c[NOTIFY_FIELD_MAX], attempt[48] = "";
	double days;

	cf_sanitize(cert, c, sizeof(c));
	cf_sanitize(ev->node, node, sizeof(node));
	cf_sanitize(ev->host, host, sizeof(host));
	cf_sanitize(ev->reason != NULL ? ev->reason : "error", reason,
	            sizeof(reason));
	cf_sanitize(ev->detail, detail, sizeof(detail));
	if (host[0] != '\0' && strcmp(host, node) != 0)
		snprintf(who, sizeof(who), "%s (%s)", node, host);
	else
		snprintf(who, sizeof(who), "%s", node);

	switch (ev->kind) {
	case CF_EV_RENEWAL_FAILED:
		if (ev->count >= 2)
			snprintf(buf, len,
			         "certfleet %s: renewal FAILED "
			         "(%u%s in a row): %s",
			         c, ev->count, ordinal_suffix(ev->count),
			         detail[0] ? detail : "unknown error");
		else
			snprintf(buf, len, "certfleet %s: renewal FAILED: %s",
			         c, detail[0] ? detail : "unknown error");
		break;
	case CF_EV_NODE_QUARANTINED:
		if (ev->count > 0)
			snprintf(attempt, sizeof(attempt), " (attempt %u)",
			         ev->count);
		snprintf(buf, len,
		         "certfleet %s: node %s quarantined: %s%s%s%s", c, who,
		         reason, detail[0] ? ": " : "", detail, attempt);
		break;
	case CF_EV_NODE_RELEASED:
		snprintf(buf, len,
		         "certfleet %s: node %s released from "
		         "quarantine%s%s%s: serves the current certificate",
		         c, who, ev->reason ? " (was " : "",
		         ev->reason ? reason : "", ev->reason ? ")" : "");
		break;
	case CF_EV_EXPIRY_WARNING:
		fmt_date(ev->not_after, date, sizeof(date));
		days = (double)(ev->not_after - now) / 86400.0;
		if (ev->node != NULL && days >= 0)
			snprintf(buf, len,
			         "certfleet %s: node %s serves a "
			         "certificate expiring in %.1f days (%s)",
			         c, node, days, date);
		else if (ev->node != NULL)
			snprintf(buf, len,
			         "certfleet %s: node %s serves a "
			         "certificate that EXPIRED %.1f days ago (%s)",
			         c, node, -days, date);
		else if (days >= 0)
			snprintf(buf, len,
			         "certfleet %s: the stored "
			         "certificate expires in %.1f days (%s)",
			         c, days, date);
		else
			snprintf(buf, len,
			         "certfleet %s: the stored "
			         "certificate EXPIRED %.1f days ago (%s)",
			         c, -days, date);
		break;
	case CF_EV_CANARY_STOPPED:
		snprintf(buf, len,
		         "certfleet %s: rollout STOPPED, untouched "
		         "nodes keep their certificate: %s",
		         c, detail[0] ? detail : "no reason given");
		break;
	case CF_EV_NODE_DRIFT:
		snprintf(buf, len,
		         "certfleet %s: node %s: files drifted from "
		         "the playbook: %s",
		         c, who, detail);
		break;
	default:
		snprintf(buf, len, "certfleet %s: %s", c,
		         notify_kind_name(ev->kind));
		break;
	}
	/* snprintf may have cut a multi-byte character in half */
	cf_sanitize(buf, buf, len);
}

/* An event field: sanitized (it may come from a node or a CA), null when
 * absent. */
static json_t *
field_json(const char *s)
{
	char clean[NOTIFY_FIELD_MAX];

	cf_sanitize(s, clean, sizeof(clean));
	return cf_json_str_or_null(s != NULL ? clean : NULL);
}

/* The event document (docs/json.md, "notification events").  Caller
 * frees. */
static char *
event_json(const char *cert, const struct cf_event *ev, const char *text,
           int64_t now)
{
	json_t *o;
	char *s;

	o = json_pack("{s:i,s:s,s:o,s:o,s:o,s:o,s:o,s:I,s:o,s:o,s:o,s:o}",
	              "format", 1, "event", notify_kind_name(ev->kind),
	              "certificate", field_json(cert), "node",
	              field_json(ev->node), "host", field_json(ev->host),
	              "reason", field_json(ev->reason), "detail",
	              field_json(ev->detail), "count", (json_int_t)ev->count,
	              "not_after", cf_json_time_or_null(ev->not_after),
	              "not_after_epoch",
	              ev->not_after > 0 ? json_integer(ev->not_after)
	                                : json_null(),
	              "time", cf_json_time_or_null(now), "text",
	              json_string(text));
	if (o == NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

/* ---- webhooks ---- */

/* scheme://host[:port]/… with any user:password@ dropped. */
static void
redact_url(const char *url, char *out, size_t outlen)
{
	const char *p = strstr(url, "://"), *host, *end, *at;

	if (p == NULL) {
		snprintf(out, outlen, "(webhook)");
		return;
	}
	host = p + 3;
	end = host + strcspn(host, "/?#");
	at = memchr(host, '@', (size_t)(end - host));
	if (at != NULL)
		host = at + 1;
	snprintf(out, outlen, "%.*s://%.*s%s", (int)(p - url), url,
	         (int)(end - host), host, *end ? "/…" : "");
}

/* Copy msg with every occurrence of url replaced by its redacted form. */
static void
redact_msg(const char *msg, const char *url, const char *red, char *out,
           size_t outlen)
{
	size_t ul = strlen(url), o = 0;
	const char *p = msg, *hit;

	while (o + 1 < outlen && *p) {
		hit = ul > 0 ? strstr(p, url) : NULL;
		if (hit == NULL) {
			o += (size_t)snprintf(out + o, outlen - o, "%s", p);
			break;
		}
		o += (size_t)snprintf(out + o, outlen - o, "%.*s%s",
		                      (int)(hit - p), p, red);
		p = hit + ul;
	}
	if (o >= outlen)
		o = outlen - 1;
	out[o] = '\0';
}

static void
sleep_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
	                      .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* POST body to url: up to NOTIFY_TRIES tries, 0.5 s then 1 s apart, on
 * network errors, 5xx and 429; all within NOTIFY_WEBHOOK_MS.  Returns 0
 * when a 2xx came back, else -1 with why set. */
static int
post_webhook(const char *url, const char *body, size_t len, char *why,
             size_t whylen)
{
	static const int64_t backoff_ms[NOTIFY_TRIES] = {0, 500, 1000};
	int64_t deadline = cf_now_ms() + NOTIFY_WEBHOOK_MS;
	char red[256], msg[CF_ERR_MSG_MAX];
	int tries;

	redact_url(url, red, sizeof(red));
	snprintf(why, whylen, "not sent");
	for (tries = 0; tries < NOTIFY_TRIES; tries++) {
		struct cf_http_req req;
		struct cf_http_resp resp;
		cf_err_t e = {0};
		bool retry;

		if (tries > 0) {
			/* no point in a try the deadline would cut short */
			if (cf_ms_left(deadline) <= backoff_ms[tries] + 100)
				break;
			sleep_ms(backoff_ms[tries]);
		}
		memset(&req, 0, sizeof(req));
		memset(&resp, 0, sizeof(resp));
		req.method = "POST";
		req.url = url;
		req.content_type = "application/json";
		req.accept = "application/json, */*";
		req.body = body;
		req.body_len = len;
		req.deadline = deadline;
		req.max_body = NOTIFY_RESP_MAX;
		/* plain http only when the operator wrote an http:// URL in
		 * the playbook (an internal relay); https is verified */
		req.allow_http = strncasecmp(url, "http://", 7) == 0;
		if (http_request(&req, &resp, &e) == 0) {
			long st = resp.status;

			http_resp_free(&resp);
			if (st >= 200 && st < 300)
				return 0;
			snprintf(why, whylen, "HTTP %ld after %d %s", st,
			         tries + 1, tries ? "tries" : "try");
			retry = st >= 500 || st == 429;
		} else {
			redact_msg(e.msg, url, red, msg, sizeof(msg));
			snprintf(why, whylen, "%s (after %d %s)", msg,
			         tries + 1, tries ? "tries" : "try");
			/* a refused scheme or an oversized answer will not
			 * change on a retry */
			retry =
			    e.code != CF_ERR_CONFIG && e.code != CF_ERR_DATA &&
			    e.code != CF_ERR_INTERNAL && e.code != CF_ERR_NOMEM;
		}
		if (!retry)
			break;
	}
	return -1;
}

/* ---- the command ---- */

static const char *const env_names[] =
    {"CERTFLEET_EVENT=",       "CERTFLEET_TEXT=",
     "CERTFLEET_CERTIFICATE=", "CERTFLEET_NODE=",
     "CERTFLEET_HOST=",        "CERTFLEET_REASON=",
     "CERTFLEET_COUNT=",       NULL};

static bool
is_our_env(const char *e)
{
	for (size_t i = 0; env_names[i] != NULL; i++)
		if (strncmp(e, env_names[i], strlen(env_names[i])) == 0)
			return true;
	return false;
}

static int
env_add(char **v, size_t *k, const char *name, const char *val)
{
	char *s;

	if (asprintf(&s, "%s%s", name, val) < 0)
		return -1;
	v[(*k)++] = s;
	return 0;
}

/* The environment of the command: ours, minus stale CERTFLEET_* values of
 * the same names (an unset CERTFLEET_NODE must not leak from our own
 * environment).  Caller frees with cf_strv_free. */
static char **
command_env(const char *cert, const struct cf_event *ev, const char *text)
{
	size_t n = 0, i, k = 0;
	char **v, node[NOTIFY_FIELD_MAX], host[NOTIFY_FIELD_MAX],
	    reason[NOTIFY_FIELD_MAX], count[16];
	bool bad = false;

	while (environ != NULL && environ[n] != NULL)
		n++;
	v = calloc(n + 8, sizeof(*v));
	if (v == NULL)
		return NULL;
	for (i = 0; i < n && !bad; i++) {
		if (is_our_env(environ[i]))
			continue;
		if ((v[k] = strdup(environ[i])) == NULL)
			bad = true;
		else
			k++;
	}
	cf_sanitize(ev->node, node, sizeof(node));
	cf_sanitize(ev->host, host, sizeof(host));
	cf_sanitize(ev->reason, reason, sizeof(reason));
	snprintf(count, sizeof(count), "%u", ev->count);
	if (bad ||
	    env_add(v, &k, "CERTFLEET_EVENT=", notify_kind_name(ev->kind)) <
	        0 ||
	    env_add(v, &k, "CERTFLEET_TEXT=", text) < 0 ||
	    env_add(v, &k, "CERTFLEET_CERTIFICATE=", cert) < 0 ||
	    env_add(v, &k, "CERTFLEET_COUNT=", count) < 0 ||
	    (ev->node != NULL && env_add(v, &k, "CERTFLEET_NODE=", node) < 0) ||
	    (ev->host != NULL && env_add(v, &k, "CERTFLEET_HOST=", host) < 0) ||
	    (ev->reason != NULL &&
	     env_add(v, &k, "CERTFLEET_REASON=", reason) < 0)) {
		for (i = 0; i < k; i++)
			free(v[i]);
		free(v);
		return NULL;
	}
	return v;
}

/* Run cmd EVENT with json on stdin and env; its stdout goes to our
 * stderr (our stdout may carry --json).  Killed (its whole process
 * group: SIGTERM, then SIGKILL) after NOTIFY_CMD_MS.  Returns 0 on exit
 * status 0. */
static int
run_command(const char *cmd, const char *event, const char *json, size_t len,
            char **env, char *why, size_t whylen, bool *timed_out)
{
	char *argv[3] = {(char *)cmd, (char *)event, NULL};
	struct cf_proc_spec spec = {
	    .path = cmd,
	    .argv = argv,
	    .envp = env,
	    .input = json,
	    .input_len = len,
	    .capture = false,
	    .timeout_ms = NOTIFY_CMD_MS,
	    .term_grace_ms = NOTIFY_KILL_GRACE_MS,
	};
	struct cf_proc_result res;
	cf_err_t err = {0};
	int rc = -1;

	*timed_out = false;
	if (proc_run(&spec, &res, &err) < 0) {
		snprintf(why, whylen, "%s", err.msg);
		return -1;
	}
	*timed_out = res.timed_out;
	if (res.exec_errno != 0)
		snprintf(why, whylen, "cannot execute: %s",
		         strerror(res.exec_errno));
	else if (res.timed_out)
		snprintf(why, whylen, "killed after %d s",
		         NOTIFY_CMD_MS / 1000);
	else if (WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0)
		rc = 0;
	else if (WIFEXITED(res.status))
		snprintf(why, whylen, "exited %d", WEXITSTATUS(res.status));
	else if (WIFSIGNALED(res.status))
		snprintf(why, whylen, "killed by signal %d",
		         WTERMSIG(res.status));
	proc_result_free(&res);
	return rc;
}

int
notify_send(const struct cf_playbook *pb, const struct cf_event *ev, size_t n)
{
	const char *cert;
	bool *dead = NULL, cmd_dead = false;
	char text[2048], why[CF_ERR_MSG_MAX + 64], red[256];
	int failed = 0;
	size_t i, w;

	if (pb == NULL || n == 0 ||
	    (pb->notify.n_webhooks == 0 && pb->notify.command == NULL))
		return 0;
	cert = pb->cert.name;
	dead = calloc(pb->notify.n_webhooks + 1, sizeof(*dead));
	if (dead == NULL) {
		fprintf(stderr, "certfleet: notify: out of memory\n");
		return (int)n;
	}
	for (i = 0; i < n; i++) {
		int64_t now = cf_wall_now();
		char *json;

		notify_format_text(cert, &ev[i], now, text, sizeof(text));
		json = event_json(cert, &ev[i], text, now);
		if (json == NULL) {
			fprintf(stderr,
			        "certfleet: notify: cannot encode the "
			        "%s event\n",
			        notify_kind_name(ev[i].kind));
			failed++;
			continue;
		}
		for (w = 0; w < pb->notify.n_webhooks; w++) {
			const char *url = pb->notify.webhooks[w];

			if (dead[w]) {
				failed++;
				continue;
			}
			if (post_webhook(url, json, strlen(json), why,
			                 sizeof(why)) == 0)
				continue;
			redact_url(url, red, sizeof(red));
			fprintf(stderr,
			        "certfleet: notify: webhook %s: %s event "
			        "not delivered: %s%s\n",
			        red, notify_kind_name(ev[i].kind), why,
			        i + 1 < n ? "; not trying it again this run"
			                  : "");
			dead[w] = true;
			failed++;
		}
		if (pb->notify.command != NULL && cmd_dead) {
			failed++;
		} else if (pb->notify.command != NULL) {
			char **env = command_env(cert, &ev[i], text);
			bool timed_out = false;

			if (env == NULL) {
				snprintf(why, sizeof(why), "out of memory");
			} else if (run_command(pb->notify.command,
			                       notify_kind_name(ev[i].kind),
			                       json, strlen(json), env, why,
			                       sizeof(why), &timed_out) == 0) {
				cf_strv_free(env);
				free(json);
				continue;
			}
			cf_strv_free(env);
			fprintf(stderr,
			        "certfleet: notify: %s (%s event): %s%s\n",
			        pb->notify.command,
			        notify_kind_name(ev[i].kind), why,
			        timed_out && i + 1 < n
			            ? "; not running it again this run"
			            : "");
			cmd_dead = timed_out;
			failed++;
		}
		free(json);
	}
	free(dead);
	return failed;
}
