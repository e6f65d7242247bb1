/* http.h - a small libcurl wrapper: one request, a result struct.
 * Only https unless allow_http (webhooks may opt in); TLS always verified
 * (system store or ca_bundle); body capped; total time bounded. */
#ifndef CERTFLEET_HTTP_H
#define CERTFLEET_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certfleet/err.h"

struct cf_http_req {
	const char *method; /* "GET", "HEAD", "POST" */
	const char *url;
	const char *content_type; /* for POST */
	const void *body;
	size_t body_len;
	const char *ca_bundle;   /* NULL = system store */
	int64_t deadline;        /* absolute cf_now_ms(); required */
	size_t max_body;         /* 0 = 1 MiB */
	bool allow_http;         /* permit plain http:// (never for ACME) */
	const char *host_header; /* override Host: (self-checks); NULL = none */
	const char *resolve_to;  /* connect to this IP instead of DNS; NULL */
	const char *accept;      /* Accept: header; NULL = none */
};

struct cf_http_resp {
	long status;
	char *body; /* NUL-terminated */
	size_t body_len;
	char *location;     /* Location header or NULL */
	char *replay_nonce; /* Replay-Nonce header or NULL */
	char *content_type;
	long retry_after; /* seconds from Retry-After, -1 if absent */
	char **links;     /* "url;rel" of each Link header, NULL-term */
};
void http_resp_free(struct cf_http_resp *r);

/* Global libcurl init; call once from main before threads. */
int http_global_init(cf_err_t *err);
void http_global_cleanup(void);

/* 0 for any HTTP response, whatever its status (check out->status); -1
 * only when none arrived: CF_ERR_TIMEOUT, CF_ERR_REFUSED,
 * CF_ERR_UNREACHABLE, CF_ERR_TLS, CF_ERR_CONFIG (scheme not allowed),
 * CF_ERR_DATA (body over max_body). */
int http_request(const struct cf_http_req *req, struct cf_http_resp *out,
                 cf_err_t *err);

/* Optional connection reuse: a session keeps one libcurl handle, so
 * consecutive requests to the same server reuse its TCP+TLS connection
 * (an ACME issuance is ~15 requests to one host; a fresh handshake each
 * time is most of its cost).  One session per thread; requests are
 * independent otherwise (options are reset each time, a resolve_to entry
 * does not leak into the next request). */
typedef struct cf_http_session cf_http_session_t;
int http_session_new(cf_http_session_t **out, cf_err_t *err);
void http_session_free(cf_http_session_t *s); /* NULL is fine */
int http_session_request(cf_http_session_t *s, const struct cf_http_req *req,
                         struct cf_http_resp *out, cf_err_t *err);

/* Links with rel="alternate" (or any rel when rel NULL): returns a
 * NULL-terminated vector of URLs (caller frees with cf_strv_free). */
char **http_links(const struct cf_http_resp *r, const char *rel);

#endif
