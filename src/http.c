/* http.c - one libcurl request in, one result struct out.
 *
 * Policy lives here so callers cannot forget it: https only (redirects
 * too) unless a webhook opts in, peer and host always verified, bodies
 * capped, every request bounded by the caller's absolute deadline. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "certfleet/http.h"
#include "certfleet/util.h"

#define HTTP_DEFAULT_MAX_BODY (1024 * 1024)
#define HTTP_MAX_LINKS 32
#define HTTP_USER_AGENT "certfleet (libcurl/" LIBCURL_VERSION ")"

struct cf_http_session {
	CURL *h;
	/* "-host:port" undoing the last request's CURLOPT_RESOLVE entry:
	 * libcurl keeps such entries in the handle's DNS cache across
	 * curl_easy_reset(), so a self-check's pinned address would otherwise
	 * leak into the next request for the same name. */
	char *resolve_undo;
};

/* Per-request collection state for the callbacks. */
struct http_xfer {
	cf_buf_t body;
	size_t max_body;
	bool too_big;
	char *location;
	char *replay_nonce;
	char *content_type;
	long retry_after;
	char *links[HTTP_MAX_LINKS + 1];
	size_t n_links;
};

static void
xfer_reset_headers(struct http_xfer *x)
{
	free(x->location);
	free(x->replay_nonce);
	free(x->content_type);
	x->location = x->replay_nonce = x->content_type = NULL;
	x->retry_after = -1;
	for (size_t i = 0; i < x->n_links; i++) {
		free(x->links[i]);
		x->links[i] = NULL;
	}
	x->n_links = 0;
}

static size_t
http_write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct http_xfer *x = arg;
	size_t n = size * nmemb;

	if (x->body.len + n > x->max_body) {
		x->too_big = true;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	if (cf_buf_append(&x->body, p, n) < 0)
		return 0;
	return n;
}

static char *
dup_trimmed(const char *p, size_t n)
{
	char *s;

	while (n > 0 && isspace((unsigned char)*p)) {
		p++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)p[n - 1]))
		n--;
	s = malloc(n + 1);
	if (!s)
		return NULL;
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/* Retry-After is delta-seconds or an HTTP-date (RFC 9110 section 10.2.3). */
static long
parse_retry_after(const char *v)
{
	char *end;
	long secs;
	time_t when;

	if (isdigit((unsigned char)v[0])) {
		secs = strtol(v, &end, 10);
		if (*end != '\0' || secs < 0)
			return -1;
		return secs;
	}
	when = curl_getdate(v, NULL);
	if (when < 0)
		return -1;
	secs = (long)(when - time(NULL));
	return secs < 0 ? 0 : secs;
}

/* One Link header value may hold several comma-separated link-values
 * (RFC 8288): <uri>; rel="a b"; other=x, <uri2>; rel=up.  Each becomes
 * "uri;rel" (rel may be empty). */
static void
parse_link_header(struct http_xfer *x, const char *v)
{
	const char *p = v;

	while (*p && x->n_links < HTTP_MAX_LINKS) {
		const char *uri, *uri_end, *rel = "", *rel_end;
		char *item;
		size_t rel_len;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p != '<')
			return;
		uri = p + 1;
		uri_end = strchr(uri, '>');
		if (!uri_end)
			return;
		p = uri_end + 1;
		rel_end = rel;
		/* parameters up to the next top-level comma */
		while (*p && *p != ',') {
			const char *name, *val, *val_end;
			size_t name_len;

			while (*p == ';' || *p == ' ' || *p == '\t')
				p++;
			name = p;
			while (*p && *p != '=' && *p != ';' && *p != ',')
				p++;
			name_len = (size_t)(p - name);
			while (name_len > 0 &&
			       isspace((unsigned char)name[name_len - 1]))
				name_len--;
			if (*p != '=')
				continue;
			p++;
			while (*p == ' ' || *p == '\t')
				p++;
			if (*p == '"') {
				val = ++p;
				while (*p && *p != '"')
					p++;
				val_end = p;
				if (*p == '"')
					p++;
			} else {
				val = p;
				while (*p && *p != ';' && *p != ',')
					p++;
				val_end = p;
				while (val_end > val &&
				       isspace((unsigned char)val_end[-1]))
					val_end--;
			}
			if (name_len == 3 && strncasecmp(name, "rel", 3) == 0) {
				rel = val;
				rel_end = val_end;
			}
		}
		rel_len = (size_t)(rel_end - rel);
		item = malloc((size_t)(uri_end - uri) + 1 + rel_len + 1);
		if (!item)
			return;
		memcpy(item, uri, (size_t)(uri_end - uri));
		item[uri_end - uri] = ';';
		memcpy(item + (uri_end - uri) + 1, rel, rel_len);
		item[(uri_end - uri) + 1 + rel_len] = '\0';
		x->links[x->n_links++] = item;
	}
}

static size_t
http_header_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct http_xfer *x = arg;
	size_t n = size * nmemb;
	const char *colon;
	char *val;
	size_t name_len;

	/* A new status line starts a new response (redirect, 100-continue):
	 * only the final response's headers count. */
	if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		xfer_reset_headers(x);
		return n;
	}
	colon = memchr(p, ':', n);
	if (!colon)
		return n;
	name_len = (size_t)(colon - p);
	val = dup_trimmed(colon + 1, n - name_len - 1);
	if (!val)
		return 0;

#define HDR_IS(s)                                                              \
	(name_len == sizeof(s) - 1 && strncasecmp(p, s, name_len) == 0)
	if (HDR_IS("Location")) {
		free(x->location);
		x->location = val;
	} else if (HDR_IS("Replay-Nonce")) {
		free(x->replay_nonce);
		x->replay_nonce = val;
	} else if (HDR_IS("Content-Type")) {
		free(x->content_type);
		x->content_type = val;
	} else if (HDR_IS("Retry-After")) {
		x->retry_after = parse_retry_after(val);
		free(val);
	} else if (HDR_IS("Link")) {
		parse_link_header(x, val);
		free(val);
	} else {
		free(val);
	}
#undef HDR_IS
	return n;
}

void
http_resp_free(struct cf_http_resp *r)
{
	if (!r)
		return;
	free(r->body);
	free(r->location);
	free(r->replay_nonce);
	free(r->content_type);
	cf_strv_free(r->links);
	memset(r, 0, sizeof(*r));
	r->retry_after = -1;
}

int
http_global_init(cf_err_t *err)
{
	CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);

	if (rc != CURLE_OK)
		return cf_err_set(err, CF_ERR_INTERNAL, "libcurl init: %s",
		                  curl_easy_strerror(rc));
	return 0;
}

void
http_global_cleanup(void)
{
	curl_global_cleanup();
}

int
http_session_new(cf_http_session_t **out, cf_err_t *err)
{
	cf_http_session_t *s = calloc(1, sizeof(*s));

	if (!s)
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	s->h = curl_easy_init();
	if (!s->h) {
		free(s);
		return cf_err_set(err, CF_ERR_INTERNAL,
		                  "curl_easy_init failed");
	}
	*out = s;
	return 0;
}

void
http_session_free(cf_http_session_t *s)
{
	if (!s)
		return;
	curl_easy_cleanup(s->h);
	free(s->resolve_undo);
	free(s);
}

/* Append prefix+value to a curl_slist; -1 on ENOMEM. */
static int
slist_add(struct curl_slist **l, const char *prefix, const char *value)
{
	struct curl_slist *n;
	char *item;

	if (asprintf(&item, "%s%s", prefix, value) < 0)
		return -1;
	n = curl_slist_append(*l, item);
	free(item);
	if (!n)
		return -1;
	*l = n;
	return 0;
}

static bool
url_is_https(const char *url)
{
	return strncasecmp(url, "https://", 8) == 0;
}

static bool
url_is_http(const char *url)
{
	return strncasecmp(url, "http://", 7) == 0;
}

/* host and port of url for CURLOPT_RESOLVE ("host:port"); caller frees. */
static char *
url_host_port(const char *url)
{
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL, *hp = NULL;
	cf_buf_t b = {0};

	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
	        CURLUE_OK)
		goto out;
	if (cf_buf_printf(&b, "%s:%s", host, port) < 0)
		goto out;
	hp = b.data;
	b.data = NULL;
out:
	cf_buf_free(&b);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return hp;
}

/* Relative Link targets are resolved against the URL that answered. */
static char *
url_resolve(const char *base, const char *ref)
{
	CURLU *u = curl_url();
	char *abs = NULL, *s = NULL;

	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, ref, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &abs, 0) == CURLUE_OK)
		s = strdup(abs);
	curl_free(abs);
	curl_url_cleanup(u);
	return s;
}

static int
map_curl_error(CURLcode rc, const struct cf_http_req *req, const char *errbuf,
               cf_err_t *err)
{
	const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
	cf_code_t code;

	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT: code = CF_ERR_TIMEOUT; break;
	case CURLE_COULDNT_CONNECT: code = CF_ERR_REFUSED; break;
	case CURLE_COULDNT_RESOLVE_HOST: code = CF_ERR_UNREACHABLE; break;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS: code = CF_ERR_TLS; break;
	case CURLE_UNSUPPORTED_PROTOCOL:
		/* the URL itself was checked, so this was a redirect */
		return cf_err_set(err, CF_ERR_CONFIG,
		                  "%s %s: redirected to a "
		                  "non-https URL (refused)",
		                  req->method, req->url);
	case CURLE_TOO_MANY_REDIRECTS: code = CF_ERR_CONFIG; break;
	default: code = CF_ERR_IO; break;
	}
	return cf_err_set(err, code, "%s %s: %s", req->method, req->url, why);
}

/* A request certfleet may send: complete, https (or http when allowed),
 * deadline not passed.  Returns the milliseconds left, or -1 with err. */
static int64_t
req_check(const struct cf_http_req *req, cf_err_t *err)
{
	int64_t left;

	if (!req->url || !req->method || req->deadline == 0)
		return cf_err_set(err, CF_ERR_INTERNAL,
		                  "http request without "
		                  "url, method or deadline");
	if (!url_is_https(req->url) &&
	    !(req->allow_http && url_is_http(req->url)))
		return cf_err_set(err, CF_ERR_CONFIG,
		                  "%s: only https:// URLs "
		                  "are allowed",
		                  req->url);
	left = cf_ms_left(req->deadline);
	if (left <= 0)
		return cf_err_set(err, CF_ERR_TIMEOUT, "%s %s: deadline passed",
		                  req->method, req->url);
	return left;
}

/* Every option of the reused handle for this request (after a reset: no
 * option of an earlier request survives), headers and resolve apart. */
static void
req_setopts(CURL *h, const struct cf_http_req *req, struct http_xfer *x,
            char *errbuf, int64_t left)
{
	const char *protos = req->allow_http ? "http,https" : "https";

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, req->url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)left);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, protos);
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, protos);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (req->ca_bundle)
		curl_easy_setopt(h, CURLOPT_CAINFO, req->ca_bundle);
	curl_easy_setopt(h, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, http_header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);

	if (strcmp(req->method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(req->method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS,
		                 req->body ? req->body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
		                 (curl_off_t)(req->body ? req->body_len : 0));
	} else if (strcmp(req->method, "GET") == 0) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	}
	/* Redirects only for reads: a redirected JWS POST would carry the
	 * wrong "url" and be refused anyway. */
	if (strcmp(req->method, "GET") == 0 ||
	    strcmp(req->method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
	}
}

/* The request headers into *hdrs (caller frees, on failure too). */
static int
req_headers(const struct cf_http_req *req, struct curl_slist **hdrs,
            cf_err_t *err)
{
	/* Expect: 100-continue would stall larger POSTs for up to a second. */
	if (slist_add(hdrs, "Expect:", "") < 0 ||
	    (req->content_type &&
	     slist_add(hdrs, "Content-Type: ", req->content_type) < 0) ||
	    (req->accept && slist_add(hdrs, "Accept: ", req->accept) < 0) ||
	    (req->host_header &&
	     slist_add(hdrs, "Host: ", req->host_header) < 0))
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	return 0;
}

/* The CURLOPT_RESOLVE entries into *resolve (caller frees, on failure
 * too): undo the previous request's pinning (curl's DNS cache would keep
 * it), then pin this one's host to req->resolve_to. */
static int
req_resolve(cf_http_session_t *s, const struct cf_http_req *req,
            struct curl_slist **resolve, cf_err_t *err)
{
	cf_buf_t line = {0};
	char *host_port = NULL;
	int rc = -1;

	if (s->resolve_undo) {
		if (slist_add(resolve, s->resolve_undo, "") < 0) {
			cf_err_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
		free(s->resolve_undo);
		s->resolve_undo = NULL;
	}
	if (req->resolve_to) {
		host_port = url_host_port(req->url);
		if (!host_port) {
			cf_err_set(err, CF_ERR_CONFIG, "%s: cannot parse URL",
			           req->url);
			goto out;
		}
		/* IPv6 literals go in brackets in a CURLOPT_RESOLVE entry. */
		if (cf_buf_printf(&line,
		                  strchr(req->resolve_to, ':') ? "%s:[%s]"
		                                               : "%s:%s",
		                  host_port, req->resolve_to) < 0 ||
		    slist_add(resolve, line.data, "") < 0 ||
		    asprintf(&s->resolve_undo, "-%s", host_port) < 0) {
			s->resolve_undo = NULL;
			cf_err_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	rc = 0;
out:
	cf_buf_free(&line);
	free(host_port);
	return rc;
}

/* The Link headers, relative ones made absolute against the effective
 * URL, moved out of x into *out (NULL-terminated, caller frees). */
static int
resp_links(struct http_xfer *x, const char *effective, char ***out,
           cf_err_t *err)
{
	char **links = calloc(x->n_links + 1, sizeof(*links));
	cf_buf_t line = {0};

	if (!links)
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < x->n_links; i++) {
		if (!strstr(x->links[i], "://") && effective) {
			char *semi = strrchr(x->links[i], ';');
			char *abs;

			*semi = '\0';
			abs = url_resolve(effective, x->links[i]);
			*semi = ';';
			if (abs &&
			    cf_buf_printf(&line, "%s%s", abs, semi) == 0) {
				free(x->links[i]);
				x->links[i] = line.data;
				line = (cf_buf_t){0};
			}
			cf_buf_free(&line);
			free(abs);
		}
		links[i] = x->links[i];
		x->links[i] = NULL;
	}
	x->n_links = 0;
	*out = links;
	return 0;
}

int
http_session_request(cf_http_session_t *s, const struct cf_http_req *req,
                     struct cf_http_resp *out, cf_err_t *err)
{
	struct http_xfer x = {.retry_after = -1};
	struct curl_slist *hdrs = NULL, *resolve = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	char *effective = NULL, **links = NULL;
	int64_t left;
	CURLcode rc;
	CURL *h = s->h;
	long status = 0;
	int ret = -1;

	left = req_check(req, err);
	if (left < 0)
		goto out;
	x.max_body = req->max_body ? req->max_body : HTTP_DEFAULT_MAX_BODY;
	req_setopts(h, req, &x, errbuf, left);
	if (req_headers(req, &hdrs, err) < 0)
		goto out;
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	if (req_resolve(s, req, &resolve, err) < 0)
		goto out;
	if (resolve)
		curl_easy_setopt(h, CURLOPT_RESOLVE, resolve);

	rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		if (x.too_big)
			cf_err_set(err, CF_ERR_DATA,
			           "%s %s: response body larger than "
			           "%zu bytes",
			           req->method, req->url, x.max_body);
		else
			map_curl_error(rc, req, errbuf, err);
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &effective);
	if (cf_buf_append(&x.body, "", 0) < 0) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (resp_links(&x, effective, &links, err) < 0)
		goto out;

	memset(out, 0, sizeof(*out));
	out->status = status;
	out->body = x.body.data;
	out->body_len = x.body.len;
	x.body.data = NULL;
	out->location = x.location;
	out->replay_nonce = x.replay_nonce;
	out->content_type = x.content_type;
	x.location = x.replay_nonce = x.content_type = NULL;
	out->retry_after = x.retry_after;
	out->links = links;
	links = NULL;
	ret = 0;
out:
	cf_strv_free(links);
	xfer_reset_headers(&x);
	cf_buf_free(&x.body);
	curl_slist_free_all(hdrs);
	curl_slist_free_all(resolve);
	/* the slists must outlive perform only; drop the handle's pointers */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_RESOLVE, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	return ret;
}

int
http_request(const struct cf_http_req *req, struct cf_http_resp *out,
             cf_err_t *err)
{
	cf_http_session_t *s = NULL;
	int rc;

	if (http_session_new(&s, err) < 0)
		return -1;
	rc = http_session_request(s, req, out, err);
	http_session_free(s);
	return rc;
}

/* rel matches if it is one of the space-separated relation types. */
static bool
rel_matches(const char *rels, const char *rel)
{
	size_t n = strlen(rel);
	const char *p = rels;

	while (*p) {
		size_t len;

		while (*p == ' ')
			p++;
		len = strcspn(p, " ");
		if (len == n && strncasecmp(p, rel, n) == 0)
			return true;
		p += len;
	}
	return false;
}

char **
http_links(const struct cf_http_resp *r, const char *rel)
{
	char **v;
	size_t n = 0, k = 0;

	for (size_t i = 0; r->links && r->links[i]; i++)
		n++;
	v = calloc(n + 1, sizeof(*v));
	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const char *semi = strrchr(r->links[i], ';');

		if (!semi || (rel && !rel_matches(semi + 1, rel)))
			continue;
		v[k] = strndup(r->links[i], (size_t)(semi - r->links[i]));
		if (!v[k]) {
			cf_strv_free(v);
			return NULL;
		}
		k++;
	}
	return v;
}
