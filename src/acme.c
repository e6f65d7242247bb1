/* acme.c - RFC 8555 issuance and revocation, RFC 9773 renewal info.
 *
 * The flow reads top-down: acme_issue -> account_ensure -> order_new ->
 * authorize -> order_finalize -> cert_download.  Everything that talks to
 * the CA goes through acme_post (signed, nonce handling, badNonce and
 * 429/5xx retries) or acme_get (unauthenticated), both on one reused
 * HTTP session and both bounded by the caller's deadline.  Nothing here
 * knows how challenges are answered (ops callbacks) or where files go. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "certfleet/acme.h"
#include "certfleet/b64.h"
#include "certfleet/crypto.h"
#include "certfleet/http.h"
#include "certfleet/jws.h"
#include "certfleet/util.h"

#define ACME_ERR_PREFIX "urn:ietf:params:acme:error:"
#define ACME_JOSE "application/jose+json"
#define ACME_PEM_CHAIN "application/pem-certificate-chain"
/* Pebble rejects 5% of nonces by default; 20 tries keep even a 50%
 * rejection rate below one failed issuance in ~10^5 (still bounded by
 * the issuance deadline). */
#define ACME_BADNONCE_TRIES 20
#define ACME_RETRY_TRIES 5 /* 429 / 5xx */
#define ACME_BACKOFF_MAX_MS 30000
/* Polls without Retry-After: the first after 100 ms (Pebble and a busy
 * Boulder both finish most work in well under a second), then doubling
 * to 2 s, so a slow CA costs a handful of requests, not hundreds. */
#define ACME_POLL_FIRST_MS 100
#define ACME_POLL_MAX_MS 2000
/* A Retry-After beyond this is treated as this (it then fails the
 * issuance at once: no acme.timeout is that long).  Clamping before the
 * seconds become milliseconds keeps a hostile 2^63 from overflowing into
 * a negative wait, i.e. a busy loop against the CA. */
#define ACME_RETRY_AFTER_MAX_S (24 * 3600)
/* A 429/5xx is never retried sooner than this, even with Retry-After: 0 */
#define ACME_BACKOFF_MIN_MS 1000
#define ACME_DEFAULT_BUDGET_MS (10 * 60 * 1000)
#define ACME_KEY_MAX (64 * 1024)

/* One run against one CA: the HTTP session, the directory, the nonce we
 * hold and the account.  Lives on the caller's stack; no globals. */
struct acme {
	const struct cf_acme_params *p;
	int64_t deadline;
	int64_t started;
	cf_http_session_t *http;
	struct cf_acme_dir dir;
	/* Every response carries a fresh Replay-Nonce and requests are
	 * sequential, so a pool of one is all a single run can use. */
	char *nonce;
	cf_jws_key_t *key;
	char *kid;
	/* short type of the problem that failed the last acme_post ("" if
	 * none), for callers that treat some refusals as answers */
	char last_problem[64];
};

/* ---------------------------------------------------------------- JSON */

static const char *
jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static int
dup_jstr(const json_t *o, const char *key, char **out)
{
	const char *v = jstr(o, key);

	*out = NULL;
	if (!v)
		return 0;
	*out = strdup(v);
	return *out ? 0 : -1;
}

/* Text from the CA, capped at about max bytes and sanitised by the one
 * rule for text from outside (err.c): it goes into error messages, state
 * files and terminals. */
static void
buf_append_max(cf_buf_t *b, const char *s, size_t max)
{
	char in[512], out[512];
	size_t n = strlen(s);

	if (max > sizeof(in) - 1)
		max = sizeof(in) - 1;
	snprintf(in, sizeof(in), "%.*s", (int)(n < max ? n : max), s);
	cf_sanitize(in, out, sizeof(out));
	cf_buf_append(b, out, strlen(out));
	if (n > max)
		cf_buf_append(b, "...", 3);
}

static void
problem_append(cf_buf_t *b, const json_t *prob)
{
	const char *type = jstr(prob, "type"), *detail = jstr(prob, "detail");
	const json_t *subs = json_object_get(prob, "subproblems");

	buf_append_max(b, type ? type : "(no type)", 200);
	if (detail) {
		cf_buf_append(b, ": ", 2);
		buf_append_max(b, detail, 300);
	}
	if (json_is_array(subs) && json_array_size(subs) > 0) {
		size_t i;
		json_t *sp;

		cf_buf_append(b, " [sub: ", 7);
		json_array_foreach(subs, i, sp)
		{
			const json_t *id = json_object_get(sp, "identifier");
			const char *st = jstr(sp, "type"),
			           *sd = jstr(sp, "detail");

			if (i > 0)
				cf_buf_append(b, "; ", 2);
			/* the urn prefix again per subproblem would eat the
			 * message budget that the identifiers need */
			if (st && strncmp(st, ACME_ERR_PREFIX,
			                  strlen(ACME_ERR_PREFIX)) == 0)
				st += strlen(ACME_ERR_PREFIX);
			buf_append_max(b, st ? st : "(no type)", 200);
			if (jstr(id, "value")) {
				cf_buf_append(b, " (", 2);
				buf_append_max(b,
				               jstr(id, "type")
				                   ? jstr(id, "type")
				                   : "?",
				               20);
				cf_buf_append(b, ":", 1);
				buf_append_max(b, jstr(id, "value"), 255);
				cf_buf_append(b, ")", 1);
			}
			if (sd) {
				cf_buf_append(b, ": ", 2);
				buf_append_max(b, sd, 200);
			}
		}
		cf_buf_append(b, "]", 1);
	}
}

static char *
problem_line_json(const json_t *prob)
{
	cf_buf_t b = {0};

	if (!json_is_object(prob) ||
	    (!jstr(prob, "type") && !jstr(prob, "detail")))
		return NULL;
	problem_append(&b, prob);
	return b.data;
}

char *
acme_problem_line(const char *body, size_t len)
{
	json_t *j;
	char *s;

	if (!body || len == 0)
		return NULL;
	j = json_loadb(body, len, 0, NULL);
	s = problem_line_json(j);
	json_decref(j);
	return s;
}

/* "urn:ietf:params:acme:error:badNonce" -> "badNonce" into buf; "" when
 * the body is no ACME problem document. */
static void
problem_short_type(const char *body, size_t len, char *buf, size_t size)
{
	json_t *j;
	const char *t;

	buf[0] = '\0';
	if (!body || len == 0)
		return;
	j = json_loadb(body, len, 0, NULL);
	t = jstr(j, "type");
	if (t && strncmp(t, ACME_ERR_PREFIX, strlen(ACME_ERR_PREFIX)) == 0)
		snprintf(buf, size, "%s", t + strlen(ACME_ERR_PREFIX));
	json_decref(j);
}

static json_t *
json_parse_obj(const char *body, size_t len, const char *what, cf_err_t *err)
{
	json_error_t je;
	json_t *j = json_loadb(body ? body : "", len, 0, &je);

	if (!json_is_object(j)) {
		json_decref(j);
		cf_err_set(err, CF_ERR_ACME, "%s: CA sent no JSON object (%s)",
		           what, j ? "not an object" : je.text);
		return NULL;
	}
	return j;
}

void
acme_dir_free(struct cf_acme_dir *d)
{
	if (!d)
		return;
	free(d->new_nonce);
	free(d->new_account);
	free(d->new_order);
	free(d->revoke_cert);
	free(d->renewal_info);
	free(d->terms_of_service);
	cf_strv_free(d->profiles);
	memset(d, 0, sizeof(*d));
}

int
acme_dir_parse(const char *body, size_t len, struct cf_acme_dir *out,
               cf_err_t *err)
{
	struct cf_acme_dir d = {0};
	json_t *j, *meta, *profiles, *v;
	const char *name;
	size_t n = 0;
	int rc = -1;

	j = json_parse_obj(body, len, "directory", err);
	if (!j)
		return -1;
	if (dup_jstr(j, "newNonce", &d.new_nonce) < 0 ||
	    dup_jstr(j, "newAccount", &d.new_account) < 0 ||
	    dup_jstr(j, "newOrder", &d.new_order) < 0 ||
	    dup_jstr(j, "revokeCert", &d.revoke_cert) < 0 ||
	    dup_jstr(j, "renewalInfo", &d.renewal_info) < 0) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!d.new_nonce || !d.new_account || !d.new_order) {
		cf_err_set(err, CF_ERR_ACME, "directory lacks %s",
		           !d.new_nonce     ? "newNonce"
		           : !d.new_account ? "newAccount"
		                            : "newOrder");
		goto out;
	}
	meta = json_object_get(j, "meta");
	if (dup_jstr(meta, "termsOfService", &d.terms_of_service) < 0) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	d.eab_required =
	    json_is_true(json_object_get(meta, "externalAccountRequired"));
	profiles = json_object_get(meta, "profiles");
	d.profiles =
	    calloc(json_is_object(profiles) ? json_object_size(profiles) + 1
	                                    : 1,
	           sizeof(char *));
	if (!d.profiles) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (json_is_object(profiles)) {
		json_object_foreach(profiles, name, v)
		{
			d.profiles[n] = strdup(name);
			if (!d.profiles[n++]) {
				cf_err_set(err, CF_ERR_NOMEM, "out of memory");
				goto out;
			}
		}
	}
	*out = d;
	memset(&d, 0, sizeof(d));
	rc = 0;
out:
	acme_dir_free(&d);
	json_decref(j);
	return rc;
}

void
acme_order_free(struct cf_acme_order *o)
{
	if (!o)
		return;
	free(o->status);
	cf_strv_free(o->authorizations);
	free(o->finalize);
	free(o->certificate);
	free(o->error);
	memset(o, 0, sizeof(*o));
}

int
acme_order_parse(const char *body, size_t len, struct cf_acme_order *out,
                 cf_err_t *err)
{
	struct cf_acme_order o = {0};
	json_t *j, *authz, *v;
	size_t i;
	int rc = -1;

	j = json_parse_obj(body, len, "order", err);
	if (!j)
		return -1;
	authz = json_object_get(j, "authorizations");
	if (dup_jstr(j, "status", &o.status) < 0 ||
	    dup_jstr(j, "finalize", &o.finalize) < 0 ||
	    dup_jstr(j, "certificate", &o.certificate) < 0 ||
	    !(o.authorizations =
	          calloc(json_array_size(authz) + 1, sizeof(char *)))) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!o.status || !o.finalize || !json_is_array(authz)) {
		cf_err_set(err, CF_ERR_ACME, "order lacks %s",
		           !o.status     ? "status"
		           : !o.finalize ? "finalize"
		                         : "authorizations");
		goto out;
	}
	json_array_foreach(authz, i, v)
	{
		if (!json_is_string(v)) {
			cf_err_set(err, CF_ERR_ACME,
			           "order: authorizations[%zu] is "
			           "not a URL",
			           i);
			goto out;
		}
		o.authorizations[i] = strdup(json_string_value(v));
		if (!o.authorizations[i]) {
			cf_err_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	o.error = problem_line_json(json_object_get(j, "error"));
	*out = o;
	memset(&o, 0, sizeof(o));
	rc = 0;
out:
	acme_order_free(&o);
	json_decref(j);
	return rc;
}

void
acme_authz_free(struct cf_acme_authz *a)
{
	if (!a)
		return;
	free(a->status);
	free(a->domain);
	for (size_t i = 0; i < a->n_challs; i++) {
		free(a->challs[i].type);
		free(a->challs[i].url);
		free(a->challs[i].token);
		free(a->challs[i].status);
		free(a->challs[i].error);
	}
	free(a->challs);
	memset(a, 0, sizeof(*a));
}

int
acme_authz_parse(const char *body, size_t len, struct cf_acme_authz *out,
                 cf_err_t *err)
{
	struct cf_acme_authz a = {0};
	json_t *j, *challs, *c;
	size_t i;
	int rc = -1;

	j = json_parse_obj(body, len, "authorization", err);
	if (!j)
		return -1;
	challs = json_object_get(j, "challenges");
	if (dup_jstr(j, "status", &a.status) < 0 ||
	    dup_jstr(json_object_get(j, "identifier"), "value", &a.domain) <
	        0) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!a.status || !a.domain || !json_is_array(challs)) {
		cf_err_set(err, CF_ERR_ACME, "authorization lacks %s",
		           !a.status   ? "status"
		           : !a.domain ? "identifier"
		                       : "challenges");
		goto out;
	}
	a.wildcard = json_is_true(json_object_get(j, "wildcard"));
	a.challs = calloc(json_array_size(challs) + 1, sizeof(*a.challs));
	if (!a.challs) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	json_array_foreach(challs, i, c)
	{
		struct cf_acme_authz_chall *ch = &a.challs[a.n_challs];

		if (!jstr(c, "type") || !jstr(c, "url"))
			continue; /* unusable entry; other challenges may do */
		a.n_challs++;
		if (dup_jstr(c, "type", &ch->type) < 0 ||
		    dup_jstr(c, "url", &ch->url) < 0 ||
		    dup_jstr(c, "token", &ch->token) < 0 ||
		    dup_jstr(c, "status", &ch->status) < 0) {
			cf_err_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
		ch->error = problem_line_json(json_object_get(c, "error"));
	}
	*out = a;
	memset(&a, 0, sizeof(a));
	rc = 0;
out:
	acme_authz_free(&a);
	json_decref(j);
	return rc;
}

/* ---------------------------------------------------------------- time */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool
take_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/* RFC 3339 date-time -> epoch seconds (fractions dropped). */
static int
parse_rfc3339(const char *s, int64_t *out)
{
	const char *p = s;
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;

	if (!take_digits(&p, 4, &y) || *p++ != '-' ||
	    !take_digits(&p, 2, &mo) || *p++ != '-' ||
	    !take_digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' ') ||
	    !(p++, take_digits(&p, 2, &h)) || *p++ != ':' ||
	    !take_digits(&p, 2, &mi) || *p++ != ':' ||
	    !take_digits(&p, 2, &sec))
		return -1;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -1;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '+' ? 1 : -1;
		if (!take_digits(&p, 2, &oh) || *p++ != ':' ||
		    !take_digits(&p, 2, &om))
			return -1;
	} else {
		return -1;
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || sec > 60 || oh > 23 || om > 59)
		return -1;
	*out = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 +
	       h * 3600 + mi * 60 + (sec == 60 ? 59 : sec) -
	       sign * (oh * 3600 + om * 60);
	return 0;
}

/* ---------------------------------------------------------------- ARI */

char *
acme_ari_cert_id(const unsigned char *aki, size_t aki_len,
                 const unsigned char *serial, size_t serial_len)
{
	char *a = NULL, *s = NULL, *id = NULL;

	if (!aki || aki_len == 0 || !serial || serial_len == 0)
		return NULL;
	a = b64url_encode(aki, aki_len);
	s = b64url_encode(serial, serial_len);
	if (a && s && asprintf(&id, "%s.%s", a, s) < 0)
		id = NULL;
	free(a);
	free(s);
	return id;
}

void
acme_ari_free(struct cf_ari *a)
{
	if (!a)
		return;
	free(a->explanation_url);
	a->explanation_url = NULL;
}

int
acme_ari_parse(const char *body, size_t len, struct cf_ari *out, cf_err_t *err)
{
	json_t *j, *win;
	const char *st, *en;
	struct cf_ari a = {.retry_after = -1};
	int rc = -1;

	j = json_parse_obj(body, len, "renewalInfo", err);
	if (!j)
		return -1;
	win = json_object_get(j, "suggestedWindow");
	st = jstr(win, "start");
	en = jstr(win, "end");
	if (!st || !en) {
		cf_err_set(err, CF_ERR_ACME,
		           "renewalInfo: no suggestedWindow "
		           "start/end");
		goto out;
	}
	if (parse_rfc3339(st, &a.start) < 0 || parse_rfc3339(en, &a.end) < 0) {
		cf_err_set(err, CF_ERR_ACME,
		           "renewalInfo: suggestedWindow has an "
		           "unparseable time");
		goto out;
	}
	if (a.end <= a.start) {
		cf_err_set(err, CF_ERR_ACME,
		           "renewalInfo: suggestedWindow end is "
		           "not after start");
		goto out;
	}
	if (dup_jstr(j, "explanationURL", &a.explanation_url) < 0) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	*out = a;
	rc = 0;
out:
	json_decref(j);
	return rc;
}

int64_t
acme_ari_pick(const struct cf_ari *a, double rnd)
{
	int64_t span = a->end - a->start, off;

	if (span <= 0 || !(rnd > 0.0))
		return a->start;
	off = (int64_t)(rnd * (double)span);
	if (off >= span)
		off = span - 1;
	return a->start + off;
}

/* ------------------------------------------------------------ transport */

int64_t
acme_wait_ms(long retry_after_s, int64_t fallback_ms, int64_t floor_ms)
{
	int64_t ms;

	if (retry_after_s < 0)
		ms = fallback_ms;
	else if (retry_after_s > ACME_RETRY_AFTER_MAX_S)
		ms = (int64_t)ACME_RETRY_AFTER_MAX_S * 1000;
	else
		ms = (int64_t)retry_after_s * 1000;
	if (ms > (int64_t)ACME_RETRY_AFTER_MAX_S * 1000)
		ms = (int64_t)ACME_RETRY_AFTER_MAX_S * 1000;
	if (ms < floor_ms)
		ms = floor_ms;
	return ms < 0 ? 0 : ms;
}

/* Sleep ms, unless that would cross the deadline: then -1 at once (the
 * caller names what it was waiting for).  A wait the CA asked for is
 * never cut short: coming back early only earns another 429. */
static int
acme_sleep(struct acme *a, int64_t ms)
{
	struct timespec ts;

	if (ms < 0)
		ms = 0;
	if (ms >= cf_ms_left(a->deadline))
		return -1;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return 0;
}

static int64_t
elapsed_s(const struct acme *a)
{
	return (cf_now_ms() - a->started + 500) / 1000;
}

static void
stash_nonce(struct acme *a, struct cf_http_resp *r)
{
	if (r->replay_nonce) {
		free(a->nonce);
		a->nonce = r->replay_nonce;
		r->replay_nonce = NULL;
	}
}

/* "WHAT: HTTP 403: urn:...: detail" for a refused request. */
static int
fail_status(const char *what, const struct cf_http_resp *r, cf_err_t *err)
{
	char *line = acme_problem_line(r->body, r->body_len);
	cf_buf_t b = {0};
	int rc;

	if (!line && r->body_len > 0)
		buf_append_max(&b, r->body, 200);
	rc = cf_err_set(err, CF_ERR_ACME, "%s: HTTP %ld: %s", what, r->status,
	                line     ? line
	                : b.data ? b.data
	                         : "(empty body)");
	free(line);
	cf_buf_free(&b);
	return rc;
}

static bool
status_retryable(long status)
{
	return status == 429 || (status >= 500 && status <= 599);
}

/* Wait before retry number `attempt` (0-based) of a 429/5xx: Retry-After
 * if given, else exponential from 1 s.  -1 when it would pass the
 * deadline, with err saying so. */
static int
backoff(struct acme *a, const char *what, const struct cf_http_resp *r,
        int attempt, cf_err_t *err)
{
	int64_t exp =
	    attempt < 5 ? (int64_t)1000 << attempt : ACME_BACKOFF_MAX_MS;
	int64_t ms =
	    acme_wait_ms(r->retry_after,
	                 exp > ACME_BACKOFF_MAX_MS ? ACME_BACKOFF_MAX_MS : exp,
	                 ACME_BACKOFF_MIN_MS);

	if (acme_sleep(a, ms) < 0) {
		fail_status(what, r, err);
		if (r->retry_after >= 0)
			cf_err_prefix(err,
			              "the CA asks to retry after %s%" PRId64
			              " s, past the deadline (acme.timeout): ",
			              r->retry_after > ACME_RETRY_AFTER_MAX_S
			                  ? "more than "
			                  : "",
			              ms / 1000);
		else
			cf_err_prefix(err,
			              "gave up retrying within the deadline "
			              "(acme.timeout): ");
		return -1;
	}
	return 0;
}

static void
req_init(struct acme *a, struct cf_http_req *q, const char *method,
         const char *url)
{
	memset(q, 0, sizeof(*q));
	q->method = method;
	q->url = url;
	q->ca_bundle = a->p->ca_bundle;
	q->deadline = a->deadline;
}

/* Unauthenticated GET (directory, renewalInfo), retried on 429/5xx.
 * Any response that arrives is returned; the caller judges the status. */
static int
acme_get(struct acme *a, const char *what, const char *url,
         struct cf_http_resp *out, cf_err_t *err)
{
	struct cf_http_req q;
	struct cf_http_resp r = {0};

	req_init(a, &q, "GET", url);
	for (int attempt = 0;; attempt++) {
		if (http_session_request(a->http, &q, &r, err) < 0)
			return cf_err_prefix(err, "%s: ", what);
		stash_nonce(a, &r);
		if (!status_retryable(r.status) ||
		    attempt + 1 >= ACME_RETRY_TRIES)
			break;
		if (backoff(a, what, &r, attempt, err) < 0) {
			http_resp_free(&r);
			return -1;
		}
		http_resp_free(&r);
	}
	*out = r;
	return 0;
}

static int
acme_new_nonce(struct acme *a, cf_err_t *err)
{
	struct cf_http_req q;
	struct cf_http_resp r = {0};
	int rc = -1;

	req_init(a, &q, "HEAD", a->dir.new_nonce);
	for (int attempt = 0;; attempt++) {
		if (http_session_request(a->http, &q, &r, err) < 0) {
			cf_err_prefix(err, "newNonce: ");
			goto out;
		}
		if (!status_retryable(r.status) ||
		    attempt + 1 >= ACME_RETRY_TRIES)
			break;
		if (backoff(a, "newNonce", &r, attempt, err) < 0)
			goto out;
		http_resp_free(&r);
	}
	if (!r.replay_nonce) {
		cf_err_set(err, CF_ERR_ACME,
		           "newNonce: HTTP %ld without "
		           "Replay-Nonce",
		           r.status);
		goto out;
	}
	stash_nonce(a, &r);
	rc = 0;
out:
	http_resp_free(&r);
	return rc;
}

/* A signed POST (payload NULL = POST-as-GET).  kid when we have an account,
 * else the embedded JWK.  badNonce is retried with the nonce the error
 * carried; 429/5xx with backoff.  2xx lands in *out; anything else is a
 * CF_ERR_ACME naming `what` and the problem document. */
static int
acme_post(struct acme *a, const char *what, const char *url,
          const char *payload, const char *accept, struct cf_http_resp *out,
          cf_err_t *err)
{
	struct cf_http_req q;
	struct cf_http_resp r = {0};
	char *jws = NULL;
	int bad_nonces = 0, retries = 0, rc = -1;

	a->last_problem[0] = '\0';
	for (;;) {
		if (!a->nonce && acme_new_nonce(a, err) < 0)
			goto out;
		free(jws);
		jws = NULL;
		if (jws_sign(a->key, a->kid, a->nonce, url, payload, &jws,
		             err) < 0)
			goto out;
		free(a->nonce); /* spent, whatever the answer */
		a->nonce = NULL;

		req_init(a, &q, "POST", url);
		q.content_type = ACME_JOSE;
		q.body = jws;
		q.body_len = strlen(jws);
		q.accept = accept;
		http_resp_free(&r);
		if (http_session_request(a->http, &q, &r, err) < 0) {
			cf_err_prefix(err, "%s: ", what);
			goto out;
		}
		stash_nonce(a, &r);
		if (r.status >= 200 && r.status <= 299)
			break;
		problem_short_type(r.body, r.body_len, a->last_problem,
		                   sizeof(a->last_problem));
		if (strcmp(a->last_problem, "badNonce") == 0 &&
		    ++bad_nonces < ACME_BADNONCE_TRIES)
			continue;
		if (status_retryable(r.status) &&
		    ++retries < ACME_RETRY_TRIES) {
			if (backoff(a, what, &r, retries - 1, err) < 0)
				goto out;
			continue;
		}
		fail_status(what, &r, err);
		goto out;
	}
	a->last_problem[0] = '\0';
	*out = r;
	memset(&r, 0, sizeof(r));
	rc = 0;
out:
	http_resp_free(&r);
	free(jws);
	return rc;
}

/* ------------------------------------------------------------- account */

static int
acme_open(struct acme *a, const struct cf_acme_params *p, cf_err_t *err)
{
	struct cf_http_resp r = {0};
	int rc = -1;

	memset(a, 0, sizeof(*a));
	a->p = p;
	a->started = cf_now_ms();
	a->deadline =
	    p->deadline ? p->deadline : a->started + ACME_DEFAULT_BUDGET_MS;
	if (!p->directory_url || strncmp(p->directory_url, "https://", 8) != 0)
		return cf_err_set(err, CF_ERR_CONFIG,
		                  "ACME directory %s: must be "
		                  "an https:// URL",
		                  p->directory_url ? p->directory_url
		                                   : "(none)");
	if (http_session_new(&a->http, err) < 0)
		return -1;
	if (acme_get(a, "ACME directory", p->directory_url, &r, err) < 0)
		goto out;
	if (r.status != 200) {
		fail_status("ACME directory", &r, err);
		cf_err_prefix(err, "%s: ", p->directory_url);
		goto out;
	}
	if (acme_dir_parse(r.body, r.body_len, &a->dir, err) < 0) {
		cf_err_prefix(err, "%s: ", p->directory_url);
		goto out;
	}
	rc = 0;
out:
	http_resp_free(&r);
	return rc;
}

static void
acme_close(struct acme *a)
{
	http_session_free(a->http);
	acme_dir_free(&a->dir);
	free(a->nonce);
	jws_key_free(a->key);
	free(a->kid);
	memset(a, 0, sizeof(*a));
}

/* Load the account key, creating a P-256 one (0600, atomically) if the
 * file does not exist.  *created tells whether an account can exist. */
static int
account_key_load(struct acme *a, bool create, bool *created, cf_err_t *err)
{
	const char *path = a->p->account_key_path;
	char *pem = NULL, *dir = NULL, *slash;
	size_t len = 0;
	struct stat st;
	int rc = -1;

	*created = false;
	if (!path)
		return cf_err_set(err, CF_ERR_CONFIG,
		                  "no ACME account key path");
	if (stat(path, &st) < 0 && errno == ENOENT) {
		if (!create)
			return cf_err_set(err, CF_ERR_CONFIG,
			                  "%s: no ACME account key "
			                  "(nothing was issued with it)",
			                  path);
		if (crypto_key_generate(CF_KEY_EC_P256, &pem, err) < 0)
			goto out;
		len = strlen(pem);
		dir = strdup(path);
		if (!dir) {
			cf_err_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
		slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = '\0';
			if (cf_mkdirs(dir, 0700, err) < 0)
				goto out;
		}
		if (cf_write_atomic(path, pem, len, 0600, err) < 0)
			goto out;
		*created = true;
	} else if (cf_read_file(path, ACME_KEY_MAX, &pem, &len, err) < 0) {
		goto out;
	}
	if (jws_key_load(pem, len, path, &a->key, err) < 0)
		goto out;
	rc = 0;
out:
	if (pem)
		cf_free_secret(pem, len);
	free(dir);
	return rc;
}

static int
account_payload(struct acme *a, bool only_existing, char **out, cf_err_t *err)
{
	const struct cf_acme_params *p = a->p;
	json_t *j = json_object(), *contact = NULL, *eab = NULL;
	char *eab_text = NULL;
	int rc = -1;

	if (!j)
		goto nomem;
	if (only_existing) {
		if (json_object_set_new(j, "onlyReturnExisting", json_true()) <
		    0)
			goto nomem;
	} else {
		if (json_object_set_new(j, "termsOfServiceAgreed",
		                        json_true()) < 0)
			goto nomem;
		if (p->n_contact > 0) {
			contact = json_array();
			if (!contact ||
			    json_object_set_new(j, "contact", contact) < 0)
				goto nomem;
			for (size_t i = 0; i < p->n_contact; i++) {
				char *c = NULL;

				/* Bare addresses are a common playbook shorthand. */
				if (strchr(p->contact[i], ':'))
					c = strdup(p->contact[i]);
				else if (asprintf(&c, "mailto:%s",
				                  p->contact[i]) < 0)
					c = NULL;
				if (!c ||
				    json_array_append_new(contact,
				                          json_string(c)) < 0) {
					free(c);
					goto nomem;
				}
				free(c);
			}
		}
		if (p->eab_kid) {
			if (!p->eab_hmac_key) {
				cf_err_set(err, CF_ERR_CONFIG,
				           "EAB kid %s without an HMAC "
				           "key",
				           p->eab_kid);
				goto out;
			}
			if (jws_eab(a->key, p->eab_kid, p->eab_hmac_key,
			            a->dir.new_account, &eab_text, err) < 0)
				goto out;
			eab = json_loads(eab_text, 0, NULL);
			if (!eab ||
			    json_object_set_new(j, "externalAccountBinding",
			                        eab) < 0)
				goto nomem;
		} else if (a->dir.eab_required) {
			cf_err_set(err, CF_ERR_CONFIG,
			           "%s requires External Account "
			           "Binding: set eab_kid and eab_hmac_key",
			           p->directory_url);
			goto out;
		}
	}
	*out = json_dumps(j, JSON_COMPACT);
	if (!*out)
		goto nomem;
	rc = 0;
	goto out;
nomem:
	cf_err_set(err, CF_ERR_NOMEM, "out of memory");
out:
	free(eab_text);
	json_decref(j);
	return rc;
}

/* Find the account of our key, or create it.  kid = its URL. */
static int
account_ensure(struct acme *a, bool key_is_new, bool create, cf_err_t *err)
{
	struct cf_http_resp r = {0};
	char *payload = NULL;
	json_t *j = NULL;
	const char *status;
	int rc = -1;

	if (!key_is_new) {
		struct cf_acme_params const *p = a->p;
		cf_err_t lookup_err = {0};

		if (account_payload(a, true, &payload, err) < 0)
			goto out;
		if (acme_post(a, "account lookup", a->dir.new_account, payload,
		              NULL, &r, &lookup_err) == 0)
			goto found;
		if (strcmp(a->last_problem, "accountDoesNotExist") != 0 ||
		    !create) {
			*err = lookup_err;
			if (!create && a->last_problem[0])
				cf_err_prefix(err, "%s: ", p->account_key_path);
			goto out;
		}
		free(payload);
		payload = NULL;
	}
	if (account_payload(a, false, &payload, err) < 0 ||
	    acme_post(a, "newAccount", a->dir.new_account, payload, NULL, &r,
	              err) < 0)
		goto out;
found:
	if (!r.location) {
		cf_err_set(err, CF_ERR_ACME,
		           "newAccount: HTTP %ld without "
		           "Location",
		           r.status);
		goto out;
	}
	j = json_loadb(r.body ? r.body : "", r.body_len, 0, NULL);
	status = jstr(j, "status");
	if (status && strcmp(status, "valid") != 0) {
		cf_err_set(err, CF_ERR_ACME, "ACME account %s is %s",
		           r.location, status);
		goto out;
	}
	a->kid = r.location;
	r.location = NULL;
	rc = 0;
out:
	json_decref(j);
	free(payload);
	http_resp_free(&r);
	return rc;
}

/* --------------------------------------------------------------- order */

static void
domains_join(const struct cf_acme_params *p, cf_buf_t *b)
{
	for (size_t i = 0; i < p->n_domains; i++)
		cf_buf_printf(b, "%s%s", i ? ", " : "", p->domains[i]);
}

static int
order_payload(struct acme *a, bool with_replaces, char **out, cf_err_t *err)
{
	const struct cf_acme_params *p = a->p;
	json_t *j = json_object(), *ids = json_array();
	int rc = -1;

	if (!j || !ids || json_object_set(j, "identifiers", ids) < 0)
		goto nomem;
	for (size_t i = 0; i < p->n_domains; i++) {
		unsigned char addr[16];
		/* RFC 8738: IP addresses are "ip" identifiers. */
		bool ip = inet_pton(AF_INET, p->domains[i], addr) == 1 ||
		          inet_pton(AF_INET6, p->domains[i], addr) == 1;

		if (json_array_append_new(ids,
		                          json_pack("{s:s,s:s}", "type",
		                                    ip ? "ip" : "dns", "value",
		                                    p->domains[i])) < 0)
			goto nomem;
	}
	if (with_replaces &&
	    json_object_set_new(j, "replaces", json_string(p->replaces)) < 0)
		goto nomem;
	if (p->profile) {
		if (!cf_strv_has(a->dir.profiles, p->profile)) {
			cf_buf_t offers = {0};

			for (size_t i = 0;
			     a->dir.profiles && a->dir.profiles[i]; i++)
				cf_buf_printf(&offers, "%s%s", i ? ", " : "",
				              a->dir.profiles[i]);
			cf_err_set(err, CF_ERR_ACME,
			           "CA does not offer profile %s "
			           "(offers: %s)",
			           p->profile,
			           offers.data ? offers.data : "none");
			cf_buf_free(&offers);
			goto out;
		}
		if (json_object_set_new(j, "profile", json_string(p->profile)) <
		    0)
			goto nomem;
	}
	*out = json_dumps(j, JSON_COMPACT);
	if (!*out)
		goto nomem;
	rc = 0;
	goto out;
nomem:
	cf_err_set(err, CF_ERR_NOMEM, "out of memory");
out:
	json_decref(ids);
	json_decref(j);
	return rc;
}

static int
order_new(struct acme *a, char **order_url, struct cf_acme_order *order,
          cf_err_t *err)
{
	const struct cf_acme_params *p = a->p;
	struct cf_http_resp r = {0};
	/* "replaces" only means something to a CA that speaks ARI. */
	bool replaces = p->replaces && a->dir.renewal_info;
	char *payload = NULL;
	cf_buf_t what = {0};
	int rc = -1;

	cf_buf_printf(&what, "newOrder for ");
	domains_join(p, &what);
	for (;;) {
		if (order_payload(a, replaces, &payload, err) < 0)
			goto out;
		if (acme_post(a, what.data, a->dir.new_order, payload, NULL, &r,
		              err) == 0)
			break;
		/* RFC 9773 section 5: a CA may refuse "replaces" (already
		 * replaced, unknown); the renewal itself must still happen. */
		if (!replaces ||
		    strcmp(a->last_problem, "alreadyReplaced") != 0)
			goto out;
		replaces = false;
		free(payload);
		payload = NULL;
	}
	if (!r.location) {
		cf_err_set(err, CF_ERR_ACME, "%s: HTTP %ld without Location",
		           what.data, r.status);
		goto out;
	}
	if (acme_order_parse(r.body, r.body_len, order, err) < 0) {
		cf_err_prefix(err, "%s: ", what.data);
		goto out;
	}
	*order_url = r.location;
	r.location = NULL;
	rc = 0;
out:
	cf_buf_free(&what);
	free(payload);
	http_resp_free(&r);
	return rc;
}

/* ------------------------------------------------------- authorizations */

struct pending {
	char *authz_url;
	struct cf_acme_authz az;
	const struct cf_acme_authz_chall *ch; /* into az.challs */
	char *keyauth;
	char *value;
	bool done;
};

static void
pending_free(struct pending *pd, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(pd[i].authz_url);
		acme_authz_free(&pd[i].az);
		free(pd[i].keyauth);
		free(pd[i].value);
	}
	free(pd);
}

static int
authz_fetch(struct acme *a, const char *url, struct cf_acme_authz *az,
            long *retry_after, cf_err_t *err)
{
	struct cf_http_resp r = {0};
	int rc = -1;

	if (acme_post(a, url, url, NULL, NULL, &r, err) < 0) {
		cf_err_prefix(err, "authorization ");
		goto out;
	}
	if (acme_authz_parse(r.body, r.body_len, az, err) < 0) {
		cf_err_prefix(err, "%s: ", url);
		goto out;
	}
	if (retry_after)
		*retry_after = r.retry_after;
	rc = 0;
out:
	http_resp_free(&r);
	return rc;
}

/* "authorization for DOMAIN failed: <the challenge's problem>" */
static int
authz_failed(const struct cf_acme_authz *az, const char *type, cf_err_t *err)
{
	const char *why = NULL;

	for (size_t i = 0; i < az->n_challs && !why; i++)
		if (az->challs[i].error &&
		    (!type || strcmp(az->challs[i].type, type) == 0))
			why = az->challs[i].error;
	for (size_t i = 0; i < az->n_challs && !why; i++)
		why = az->challs[i].error;
	return cf_err_set(err, CF_ERR_ACME, "authorization for %s%s failed: %s",
	                  az->wildcard ? "*." : "", az->domain,
	                  why ? why : az->status);
}

static int
key_authorization(struct acme *a, const char *type, const char *token,
                  char **keyauth, char **value, cf_err_t *err)
{
	unsigned char h[32];
	char *thumb;

	/* RFC 8555 section 8.1: token "." base64url(JWK thumbprint) */
	thumb = jws_thumbprint(a->key, err);
	if (!thumb)
		return -1;
	if (asprintf(keyauth, "%s.%s", token, thumb) < 0) {
		free(thumb);
		*keyauth = NULL;
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	}
	free(thumb);
	if (strcmp(type, "dns-01") == 0) {
		/* section 8.4: the TXT record holds base64url(SHA-256(keyauth)) */
		crypto_sha256(*keyauth, strlen(*keyauth), h);
		*value = b64url_encode(h, sizeof(h));
	} else {
		*value = strdup(*keyauth);
	}
	if (!*value)
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	return 0;
}

/* Poll every not-yet-done authorization until all are valid; the first
 * invalid one fails the order with its domain named. */
static int
authz_poll(struct acme *a, struct pending *pd, size_t n, cf_err_t *err)
{
	int64_t interval = ACME_POLL_FIRST_MS;
	size_t left = 0;

	for (size_t i = 0; i < n; i++)
		if (!pd[i].done)
			left++;
	for (;;) {
		long ra = -1;

		for (size_t i = 0; i < n; i++) {
			struct cf_acme_authz az = {0};
			long this_ra = -1;

			if (pd[i].done)
				continue;
			if (authz_fetch(a, pd[i].authz_url, &az, &this_ra,
			                err) < 0)
				return cf_err_prefix(err,
				                     "%s: ", pd[i].az.domain);
			if (this_ra > ra)
				ra = this_ra;
			if (strcmp(az.status, "valid") == 0) {
				pd[i].done = true;
				left--;
			} else if (strcmp(az.status, "pending") != 0 &&
			           strcmp(az.status, "processing") != 0) {
				authz_failed(&az, a->p->challenge_type, err);
				acme_authz_free(&az);
				return -1;
			}
			acme_authz_free(&az);
		}
		if (left == 0)
			return 0;
		if (acme_sleep(a, acme_wait_ms(ra, interval,
		                               ACME_POLL_FIRST_MS)) < 0) {
			size_t i = 0;

			while (i + 1 < n && pd[i].done)
				i++;
			return cf_err_set(err, CF_ERR_TIMEOUT,
			                  "authorization for %s "
			                  "still pending after %" PRId64 " s",
			                  pd[i].az.domain, elapsed_s(a));
		}
		interval *= 2;
		if (interval > ACME_POLL_MAX_MS)
			interval = ACME_POLL_MAX_MS;
	}
}

static int
authorize(struct acme *a, const struct cf_acme_order *order,
          const struct cf_acme_challenge_ops *ops, cf_err_t *err)
{
	const char *type =
	    a->p->challenge_type ? a->p->challenge_type : "http-01";
	struct pending *pd = NULL;
	struct cf_acme_chall *cc = NULL;
	struct cf_http_resp r = {0};
	size_t n = 0, n_authz = 0, n_cc = 0;
	bool provisioned = false;
	int rc = -1;

	if (!ops || !ops->provision || !ops->cleanup) {
		cf_err_set(err, CF_ERR_INTERNAL,
		           "ACME order needs challenge "
		           "callbacks");
		goto out;
	}
	while (order->authorizations[n_authz])
		n_authz++;
	pd = calloc(n_authz + 1, sizeof(*pd));
	cc = calloc(n_authz + 1, sizeof(*cc));
	if (!pd || !cc) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_authz; i++) {
		struct pending *q = &pd[n];
		const char *url = order->authorizations[i];

		if (authz_fetch(a, url, &q->az, NULL, err) < 0)
			goto out;
		q->authz_url = strdup(url);
		n++; /* owned by pd from here, freed with it */
		if (!q->authz_url) {
			cf_err_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
		if (strcmp(q->az.status, "valid") == 0) {
			/* reused authorization: nothing to prove */
			q->done = true;
			continue;
		}
		if (strcmp(q->az.status, "pending") != 0) {
			authz_failed(&q->az, type, err);
			goto out;
		}
		for (size_t k = 0; k < q->az.n_challs && !q->ch; k++)
			if (strcmp(q->az.challs[k].type, type) == 0)
				q->ch = &q->az.challs[k];
		if (!q->ch || !q->ch->token) {
			cf_buf_t offers = {0};

			for (size_t k = 0; k < q->az.n_challs; k++)
				cf_buf_printf(&offers, "%s%s", k ? ", " : "",
				              q->az.challs[k].type);
			cf_err_set(err, CF_ERR_ACME,
			           "authorization for %s: CA offers "
			           "no %s challenge (offers: %s)",
			           q->az.domain, type,
			           offers.data ? offers.data : "none");
			cf_buf_free(&offers);
			goto out;
		}
		if (key_authorization(a, type, q->ch->token, &q->keyauth,
		                      &q->value, err) < 0)
			goto out;
	}

	/* One provision call for all names: a deployment to many nodes (or one
	 * DNS update batch) per order, not per name. */
	for (size_t i = 0; i < n; i++) {
		if (pd[i].done)
			continue;
		cc[n_cc].type = type;
		cc[n_cc].domain = pd[i].az.domain;
		cc[n_cc].token = pd[i].ch->token;
		cc[n_cc].value = pd[i].value;
		n_cc++;
	}
	if (n_cc == 0) {
		rc = 0;
		goto out;
	}
	provisioned = true;
	if (ops->provision(ops->arg, cc, n_cc, err) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		cf_buf_t what = {0};
		int prc;

		if (pd[i].done || strcmp(pd[i].ch->status, "pending") != 0)
			continue;
		cf_buf_printf(&what, "challenge for %s", pd[i].az.domain);
		prc = acme_post(a, what.data ? what.data : "challenge",
		                pd[i].ch->url, "{}", NULL, &r, err);
		cf_buf_free(&what);
		http_resp_free(&r);
		if (prc < 0)
			goto out;
	}
	if (authz_poll(a, pd, n, err) < 0)
		goto out;
	rc = 0;
out:
	/* cc points into pd: clean up before pd goes */
	if (provisioned)
		ops->cleanup(ops->arg, cc, n_cc);
	http_resp_free(&r);
	free(cc);
	pending_free(pd, n);
	return rc;
}

/* ------------------------------------------------------------ finalize */

static int
order_fetch(struct acme *a, const char *url, struct cf_acme_order *o,
            long *retry_after, cf_err_t *err)
{
	struct cf_http_resp r = {0};
	int rc = -1;

	if (acme_post(a, "order", url, NULL, NULL, &r, err) < 0)
		goto out;
	if (acme_order_parse(r.body, r.body_len, o, err) < 0)
		goto out;
	*retry_after = r.retry_after;
	rc = 0;
out:
	http_resp_free(&r);
	return rc;
}

static int
order_failed(const struct acme *a, const struct cf_acme_order *o, cf_err_t *err)
{
	cf_buf_t names = {0};
	int rc;

	domains_join(a->p, &names);
	rc = cf_err_set(err, CF_ERR_ACME, "order for %s is %s: %s",
	                names.data ? names.data : "?", o->status,
	                o->error ? o->error : "no error given");
	cf_buf_free(&names);
	return rc;
}

static bool
order_in_flight(const struct cf_acme_order *o, bool finalized)
{
	/* Before finalize an order waits in "pending" for its authorizations
	 * to settle; after it, in "processing" (or still "ready" at CAs that
	 * answer finalize before switching). */
	if (finalized)
		return strcmp(o->status, "processing") == 0 ||
		       strcmp(o->status, "ready") == 0;
	return strcmp(o->status, "pending") == 0;
}

/* Poll the order until it leaves its in-flight state.  ra: the
 * Retry-After of the response that produced *o. */
static int
order_wait(struct acme *a, const char *url, struct cf_acme_order *o,
           bool finalized, long ra, cf_err_t *err)
{
	int64_t interval = ACME_POLL_FIRST_MS;

	while (order_in_flight(o, finalized)) {
		int64_t ms = acme_wait_ms(ra, interval, ACME_POLL_FIRST_MS);

		if (acme_sleep(a, ms) < 0)
			return cf_err_set(err, CF_ERR_TIMEOUT,
			                  "order stuck in %s for "
			                  "%" PRId64 " s",
			                  o->status, elapsed_s(a));
		acme_order_free(o);
		if (order_fetch(a, url, o, &ra, err) < 0)
			return -1;
		interval *= 2;
		if (interval > ACME_POLL_MAX_MS)
			interval = ACME_POLL_MAX_MS;
	}
	return 0;
}

static int
order_finalize(struct acme *a, const char *order_url, struct cf_acme_order *o,
               const char *key_pem, cf_err_t *err)
{
	struct cf_http_resp r = {0};
	unsigned char *csr = NULL;
	size_t csr_len = 0;
	char *csr64 = NULL, *payload = NULL;
	struct cf_acme_order fin = {0};
	int rc = -1;

	/* The order we hold predates the authorizations: look again now,
	 * then wait for "ready" only if the CA is still catching up. */
	if (strcmp(o->status, "pending") == 0) {
		long ra = -1;

		acme_order_free(o);
		if (order_fetch(a, order_url, o, &ra, err) < 0 ||
		    order_wait(a, order_url, o, false, ra, err) < 0)
			goto out;
	}
	if (strcmp(o->status, "ready") == 0) {
		if (crypto_csr_der(key_pem, a->p->domains, a->p->n_domains,
		                   &csr, &csr_len, err) < 0)
			goto out;
		csr64 = b64url_encode(csr, csr_len);
		if (!csr64 ||
		    asprintf(&payload, "{\"csr\":\"%s\"}", csr64) < 0) {
			payload = NULL;
			cf_err_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
		if (acme_post(a, "finalize", o->finalize, payload, NULL, &r,
		              err) < 0)
			goto out;
		if (acme_order_parse(r.body, r.body_len, &fin, err) < 0) {
			cf_err_prefix(err, "finalize: ");
			goto out;
		}
		acme_order_free(o);
		*o = fin;
		memset(&fin, 0, sizeof(fin));
		if (order_wait(a, order_url, o, true, r.retry_after, err) < 0)
			goto out;
	}
	if (strcmp(o->status, "valid") != 0 || !o->certificate) {
		order_failed(a, o, err);
		goto out;
	}
	rc = 0;
out:
	acme_order_free(&fin);
	http_resp_free(&r);
	free(csr);
	free(csr64);
	free(payload);
	return rc;
}

/* ------------------------------------------------------------ download */

/* Issuer CN of the last certificate of a PEM chain, or NULL. */
static char *
chain_top_issuer_cn(const char *pem)
{
	const char *p = pem, *last = NULL;
	struct cf_certinfo ci = {0};
	cf_err_t e = {0};
	char *cn = NULL;

	while ((p = strstr(p, "-----BEGIN CERTIFICATE-----"))) {
		last = p;
		p++;
	}
	if (!last || crypto_certinfo_pem(last, strlen(last), &ci, &e) < 0)
		return NULL;
	if (ci.issuer_cn)
		cn = strdup(ci.issuer_cn);
	crypto_certinfo_free(&ci);
	return cn;
}

static int
cert_fetch(struct acme *a, const char *url, struct cf_http_resp *r,
           cf_err_t *err)
{
	if (acme_post(a, "certificate download", url, NULL, ACME_PEM_CHAIN, r,
	              err) < 0)
		return -1;
	if (!r->body || !strstr(r->body, "-----BEGIN CERTIFICATE-----")) {
		http_resp_free(r);
		return cf_err_set(err, CF_ERR_ACME,
		                  "certificate download %s: not "
		                  "a PEM certificate chain",
		                  url);
	}
	return 0;
}

/* Default chain, or with preferred_chain the first chain (default, then
 * each rel="alternate") whose topmost issuer CN matches; the default if
 * none does, as certbot does. */
static int
cert_download(struct acme *a, const char *url, char **chain_out, cf_err_t *err)
{
	const char *want = a->p->preferred_chain;
	struct cf_http_resp r = {0}, alt = {0};
	char **alts = NULL, *cn = NULL;
	int rc = -1;

	if (cert_fetch(a, url, &r, err) < 0)
		goto out;
	if (want && *want) {
		cn = chain_top_issuer_cn(r.body);
		if (!cn || strcmp(cn, want) != 0) {
			alts = http_links(&r, "alternate");
			for (size_t i = 0; alts && alts[i]; i++) {
				free(cn);
				cn = NULL;
				if (cert_fetch(a, alts[i], &alt, err) < 0)
					goto out;
				cn = chain_top_issuer_cn(alt.body);
				if (cn && strcmp(cn, want) == 0) {
					http_resp_free(&r);
					r = alt;
					memset(&alt, 0, sizeof(alt));
					break;
				}
				http_resp_free(&alt);
			}
		}
	}
	*chain_out = r.body;
	r.body = NULL;
	rc = 0;
out:
	free(cn);
	cf_strv_free(alts);
	http_resp_free(&alt);
	http_resp_free(&r);
	return rc;
}

/* ------------------------------------------------------------- public */

void
acme_result_free(struct cf_acme_result *r)
{
	if (!r)
		return;
	free(r->fullchain_pem);
	free(r->order_url);
	if (r->privkey_pem)
		cf_free_secret(r->privkey_pem, strlen(r->privkey_pem));
	r->fullchain_pem = r->privkey_pem = r->order_url = NULL;
}

int
acme_issue(const struct cf_acme_params *p,
           const struct cf_acme_challenge_ops *ops, struct cf_acme_result *out,
           cf_err_t *err)
{
	struct acme a;
	struct cf_acme_order order = {0};
	struct cf_bundle bundle = {0};
	char *order_url = NULL, *key_pem = NULL, *chain = NULL;
	bool key_is_new = false;
	int rc = -1;
	cf_err_t ignored;

	if (!err) /* callers may not care why; we still need the text */
		err = &ignored;
	memset(&a, 0, sizeof(a));
	if (!p->domains || p->n_domains == 0) {
		cf_err_set(err, CF_ERR_CONFIG, "ACME order without domains");
		return -1;
	}
	if (acme_open(&a, p, err) < 0 ||
	    account_key_load(&a, true, &key_is_new, err) < 0 ||
	    account_ensure(&a, key_is_new, true, err) < 0 ||
	    order_new(&a, &order_url, &order, err) < 0)
		goto out;
	/* the order's URL is the CA's handle on this attempt: the caller
	 * reports it whatever happens next */
	free(out->order_url);
	out->order_url = strdup(order_url);
	if (strcmp(order.status, "invalid") == 0) {
		order_failed(&a, &order, err);
		goto out;
	}
	if (strcmp(order.status, "pending") == 0 &&
	    authorize(&a, &order, ops, err) < 0)
		goto out;

	if (p->reuse_key_pem)
		key_pem = strdup(p->reuse_key_pem);
	else if (crypto_key_generate(p->key_type, &key_pem, err) < 0)
		goto out;
	if (!key_pem) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (order_finalize(&a, order_url, &order, key_pem, err) < 0 ||
	    cert_download(&a, order.certificate, &chain, err) < 0)
		goto out;
	/* Check what the CA sent before anyone deploys it: parses, matches
	 * our key, covers every name. */
	if (crypto_bundle_from_pem(chain, NULL, key_pem, p->domains,
	                           p->n_domains, cf_wall_now(), &bundle, NULL,
	                           err) < 0) {
		cf_err_prefix(err, "CA %s issued an unusable certificate: ",
		              p->directory_url);
		err->code = CF_ERR_ACME;
		goto out;
	}
	out->fullchain_pem = chain;
	out->privkey_pem = key_pem;
	chain = key_pem = NULL;
	rc = 0;
out:
	crypto_bundle_free(&bundle);
	if (key_pem)
		cf_free_secret(key_pem, strlen(key_pem));
	free(chain);
	free(order_url);
	acme_order_free(&order);
	acme_close(&a);
	return rc;
}

/* PEM body of the first certificate -> base64url of its DER, without
 * decoding: the alphabets differ in two characters and padding. */
static char *
pem_first_cert_b64url(const char *pem)
{
	const char *begin = strstr(pem, "-----BEGIN CERTIFICATE-----");
	const char *end;
	cf_buf_t b = {0};

	if (!begin)
		return NULL;
	begin += strlen("-----BEGIN CERTIFICATE-----");
	end = strstr(begin, "-----END CERTIFICATE-----");
	if (!end)
		return NULL;
	for (const char *p = begin; p < end; p++) {
		char c = *p;

		if (c == '+')
			c = '-';
		else if (c == '/')
			c = '_';
		else if (c == '=' || isspace((unsigned char)c))
			continue;
		if (cf_buf_append(&b, &c, 1) < 0) {
			cf_buf_free(&b);
			return NULL;
		}
	}
	return b.data;
}

int
acme_revoke(const struct cf_acme_params *p, const char *cert_pem, int reason,
            cf_err_t *err)
{
	struct acme a;
	struct cf_certinfo ci = {0};
	struct cf_http_resp r = {0};
	char *cert64 = NULL, *payload = NULL;
	bool created = false;
	int rc = -1;
	cf_err_t ignored;

	if (!err) /* callers may not care why; we still need the text */
		err = &ignored;
	memset(&a, 0, sizeof(a));
	if (crypto_certinfo_pem(cert_pem, strlen(cert_pem), &ci, err) < 0)
		return -1;
	cert64 = pem_first_cert_b64url(cert_pem);
	if (!cert64 ||
	    asprintf(&payload, "{\"certificate\":\"%s\",\"reason\":%d}", cert64,
	             reason) < 0) {
		payload = NULL;
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (acme_open(&a, p, err) < 0 ||
	    account_key_load(&a, false, &created, err) < 0 ||
	    account_ensure(&a, false, false, err) < 0)
		goto out;
	if (!a.dir.revoke_cert) {
		cf_err_set(err, CF_ERR_ACME, "%s: directory has no revokeCert",
		           p->directory_url);
		goto out;
	}
	if (acme_post(&a, "revokeCert", a.dir.revoke_cert, payload, NULL, &r,
	              err) < 0) {
		/* revoking twice is what the caller wanted anyway */
		if (strcmp(a.last_problem, "alreadyRevoked") == 0) {
			rc = 0;
			goto out;
		}
		cf_err_prefix(err, "certificate serial %s: ", ci.serial_hex);
		goto out;
	}
	rc = 0;
out:
	http_resp_free(&r);
	crypto_certinfo_free(&ci);
	free(cert64);
	free(payload);
	acme_close(&a);
	return rc;
}

int
acme_ari_fetch(const struct cf_acme_params *p, const char *cert_id,
               struct cf_ari *out, bool *supported, cf_err_t *err)
{
	struct acme a;
	struct cf_http_resp r = {0};
	char *url = NULL;
	size_t n;
	int rc = -1;
	cf_err_t ignored;

	if (!err) /* callers may not care why; we still need the text */
		err = &ignored;
	memset(&a, 0, sizeof(a));
	if (acme_open(&a, p, err) < 0)
		goto out;
	if (!a.dir.renewal_info) {
		*supported = false;
		rc = 0;
		goto out;
	}
	n = strlen(a.dir.renewal_info);
	if (asprintf(&url, "%s%s%s", a.dir.renewal_info,
	             n && a.dir.renewal_info[n - 1] == '/' ? "" : "/",
	             cert_id) < 0) {
		url = NULL;
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (acme_get(&a, "renewalInfo", url, &r, err) < 0)
		goto out;
	if (r.status != 200) {
		fail_status("renewalInfo", &r, err);
		cf_err_prefix(err, "certificate %s: ", cert_id);
		goto out;
	}
	if (acme_ari_parse(r.body, r.body_len, out, err) < 0) {
		cf_err_prefix(err, "certificate %s: ", cert_id);
		goto out;
	}
	out->retry_after = r.retry_after;
	*supported = true;
	rc = 0;
out:
	free(url);
	http_resp_free(&r);
	acme_close(&a);
	return rc;
}
