/* challenge_http.c - http-01 on every reachable node, over SSH.
 *
 * The challenge files go to deploy.webroot on every node (pinned and
 * quarantined ones too: a token file is harmless and the CA may be routed
 * to any of them), each checked from here over plain HTTP with the
 * domain as Host, as the CA will fetch it.  The order goes on when at
 * least one node serves them; which nodes could not is kept for the
 * messages and for the rollout that follows (challenge_http.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/challenge_http.h"
#include "certfleet/http.h"
#include "certfleet/util.h"

static int
chall_path(const struct cf_playbook *pb, const struct cf_acme_chall *c,
           cf_buf_t *b)
{
	b->len = 0;
	return cf_buf_printf(b, "%s/.well-known/acme-challenge/%s",
	                     pb->deploy.webroot, c->token);
}

static bool
token_ok(const char *t)
{
	/* RFC 8555 8.3: base64url; anything else could escape the dir */
	if (*t == '\0')
		return false;
	for (; *t; t++)
		if (!((*t >= 'A' && *t <= 'Z') || (*t >= 'a' && *t <= 'z') ||
		      (*t >= '0' && *t <= '9') || *t == '-' || *t == '_'))
			return false;
	return true;
}

/* Self-check: fetch the file over plain HTTP from this node with the
 * domain as Host, as the CA will. */
static int
selfcheck(const struct cf_node *node, const struct cf_acme_chall *c,
          cf_err_t *err)
{
	struct cf_http_req q;
	struct cf_http_resp r;
	cf_buf_t url = {0};
	size_t len;
	int rc = -1;

	memset(&q, 0, sizeof(q));
	memset(&r, 0, sizeof(r));
	if (strchr(node->host, ':') != NULL)
		cf_buf_printf(&url, "http://[%s]/.well-known/acme-challenge/%s",
		              node->host, c->token);
	else
		cf_buf_printf(&url, "http://%s/.well-known/acme-challenge/%s",
		              node->host, c->token);
	q.method = "GET";
	q.url = url.data;
	q.allow_http = true;
	q.host_header = c->domain;
	q.deadline = cf_now_ms() + 5000;
	q.max_body = 4096;
	if (http_request(&q, &r, err) < 0)
		goto out;
	len = r.body_len;
	while (len > 0 && (r.body[len - 1] == '\n' || r.body[len - 1] == '\r'))
		len--;
	if (r.status != 200 || len != strlen(c->value) ||
	    memcmp(r.body, c->value, len) != 0) {
		cf_err_set(err, CF_ERR_CHECK,
		           "http-01 self-check for %s failed: %s answered HTTP "
		           "%ld with %s content",
		           c->domain, url.data, r.status,
		           r.status == 200 ? "wrong" : "no");
		goto out;
	}
	rc = 0;
out:
	http_resp_free(&r);
	cf_buf_free(&url);
	return rc;
}

static int
http01_put(void *arg, const struct cf_node *node, cf_ssh_t *s, cf_err_t *err)
{
	struct cf_http01 *h = arg;
	const struct cf_playbook *pb = h->pb;
	cf_buf_t cmd = {0}, path = {0};
	int status = -1, rc = -1;
	size_t i;

	if (cf_buf_append(&cmd, "mkdir -p -- ", 12) < 0 ||
	    cf_buf_shquote(&cmd, pb->deploy.webroot) < 0 ||
	    cf_buf_append(&cmd, "/.well-known/acme-challenge", 27) < 0)
		goto nomem;
	if (ssh_exec(s, cmd.data, NULL, 0, &status, NULL, err) < 0)
		goto out;
	if (status != 0) {
		cf_err_set(err, CF_ERR_WRITE,
		           "cannot create %s/.well-known/"
		           "acme-challenge on %s",
		           pb->deploy.webroot, node->name);
		goto out;
	}
	for (i = 0; i < h->n; i++) {
		if (chall_path(pb, &h->c[i], &path) < 0)
			goto nomem;
		(void)ssh_remove(s, path.data, NULL);
		if (ssh_upload(s, path.data, h->c[i].value,
		               strlen(h->c[i].value), 0644, err) < 0)
			goto out;
	}
	for (i = 0; i < h->n; i++)
		if (selfcheck(node, &h->c[i], err) < 0)
			goto out;
	rc = 0;
	goto out;
nomem:
	cf_err_set(err, CF_ERR_NOMEM, "out of memory");
out:
	cf_buf_free(&cmd);
	cf_buf_free(&path);
	return rc;
}

static int
http01_del(void *arg, const struct cf_node *node, cf_ssh_t *s, cf_err_t *err)
{
	struct cf_http01 *h = arg;
	cf_buf_t path = {0};
	size_t i;

	(void)node;
	(void)err;
	for (i = 0; i < h->n; i++)
		if (chall_path(h->pb, &h->c[i], &path) == 0)
			(void)ssh_remove(s, path.data, NULL);
	cf_buf_free(&path);
	return 0;
}

/* "n2: timeout, n3: write": the nodes that could not take the challenge
 * files, with the reason token (b empty when every node took them). */
static void
http01_missing(const struct cf_rollout_result *prov, cf_buf_t *b)
{
	size_t i, k = 0;

	for (i = 0; i < prov->n; i++) {
		const struct cf_node_result *r = &prov->nodes[i];

		if (r->outcome != CF_OUT_FAILED)
			continue;
		(void)cf_buf_printf(b, "%s%s: %s", k++ ? ", " : "",
		                    r->node->name, cf_err_reason(r->err.code));
	}
}

static int
http01_provision(void *arg, const struct cf_acme_chall *c, size_t n,
                 cf_err_t *err)
{
	struct cf_http01 *h = arg;
	struct cf_rollout_opts o;
	const struct cf_node_result *first = NULL;
	cf_buf_t list = {0};
	size_t i, ok = 0, failed = 0;
	int rc;

	for (i = 0; i < n; i++)
		if (!token_ok(c[i].token))
			return cf_err_set(err, CF_ERR_ACME,
			                  "CA sent an unsafe "
			                  "http-01 token for %s",
			                  c[i].domain);
	h->c = c;
	h->n = n;
	memset(&o, 0, sizeof(o));
	o.skip = h->skip;
	if (rollout_each(h->pb, h->ssh, &o, http01_put, h, &h->prov, err) < 0)
		return -1;
	for (i = 0; i < h->prov.n; i++) {
		const struct cf_node_result *r = &h->prov.nodes[i];

		if (r->outcome == CF_OUT_DEPLOYED) {
			ok++;
		} else if (r->outcome == CF_OUT_FAILED) {
			if (failed++ == 0)
				first = r;
			fprintf(stderr,
			        "certfleet: %-16s %-15s http-01 FAILED "
			        "%s: %s\n",
			        r->node->name, r->node->host,
			        cf_err_reason(r->err.code), r->err.msg);
		}
	}
	/* failed nodes are quarantined by the command at the end of the
	 * run (session_record_http01), once: the rollout usually meets them
	 * again */
	if (ok > 0 || n == 0)
		return 0;
	/* the message outlives this terminal (renewal.json, notifications):
	 * it must carry a cause, not "see above" */
	if (first == NULL)
		return cf_err_set(err, CF_ERR_HOOK,
		                  "http-01 for %s: no node "
		                  "could serve the challenge files (every node "
		                  "skipped)",
		                  c[0].domain);
	http01_missing(&h->prov, &list);
	rc = cf_err_set(err, CF_ERR_HOOK,
	                "http-01 for %s: no node could "
	                "serve the challenge files (%s; %s: %s)",
	                c[0].domain, list.data ? list.data : "?",
	                first->node->name, first->err.msg);
	cf_buf_free(&list);
	return rc;
}

/* A name failed validation while some nodes lacked the challenge file:
 * the CA may have been routed to one of them, so say which (and why). */
void
challenge_http_name_missing(const struct cf_rollout_result *prov, cf_err_t *err)
{
	cf_buf_t list = {0};
	char msg[CF_ERR_MSG_MAX];

	if (err->code == CF_ERR_HOOK) /* http01_provision's own, has them */
		return;
	http01_missing(prov, &list);
	if (list.data != NULL) {
		/* the node list must survive: cut the CA's detail instead */
		int room = (int)sizeof(msg) - (int)list.len - 32;

		snprintf(msg, sizeof(msg), "%s", err->msg);
		if (room < 64)
			room = 64;
		if ((int)strlen(msg) > room)
			snprintf(msg + room - 3, sizeof(msg) - (size_t)room + 3,
			         "...");
		cf_err_set(err, err->code, "%s (challenge file not on %s)", msg,
		           list.data);
	}
	cf_buf_free(&list);
}

static void
http01_cleanup(void *arg, const struct cf_acme_chall *c, size_t n)
{
	struct cf_http01 *h = arg;
	struct cf_rollout_opts o;
	struct cf_rollout_result res;
	char **only = NULL;
	size_t i, k = 0;

	(void)c;
	(void)n;
	memset(&o, 0, sizeof(o));
	memset(&res, 0, sizeof(res));
	only = calloc(h->prov.n + 1, sizeof(char *));
	if (only == NULL)
		goto out;
	for (i = 0; i < h->prov.n; i++)
		if (h->prov.nodes[i].touched ||
		    h->prov.nodes[i].outcome == CF_OUT_DEPLOYED ||
		    h->prov.nodes[i].outcome == CF_OUT_FAILED)
			only[k++] = (char *)h->prov.nodes[i].node->name;
	if (k == 0)
		goto out;
	/* only where we got in: do not wait on blackholed nodes twice */
	for (i = 0, k = 0; i < h->prov.n; i++) {
		cf_code_t code = h->prov.nodes[i].err.code;

		if (h->prov.nodes[i].outcome == CF_OUT_DEPLOYED ||
		    (h->prov.nodes[i].outcome == CF_OUT_FAILED &&
		     (code == CF_ERR_WRITE || code == CF_ERR_CHECK)))
			only[k++] = (char *)h->prov.nodes[i].node->name;
	}
	only[k] = NULL;
	if (k == 0)
		goto out;
	o.only = only;
	(void)rollout_each(h->pb, h->ssh, &o, http01_del, h, &res, NULL);
out:
	rollout_result_free(&res);
	free(only);
}

static bool
unreachable_code(cf_code_t c)
{
	return c == CF_ERR_TIMEOUT || c == CF_ERR_REFUSED ||
	       c == CF_ERR_UNREACHABLE || c == CF_ERR_HOSTKEY_UNKNOWN ||
	       c == CF_ERR_HOSTKEY_CHANGED || c == CF_ERR_AUTH ||
	       c == CF_ERR_SSH;
}

/* skips plus the nodes whose http-01 step failed to connect; NULL when
 * there are none.  The vector borrows its strings; free() it alone. */
char **
challenge_http_unreachable(const struct cf_rollout_result *prov, char **skips)
{
	size_t i, n = 0, k = 0;
	char **v;

	for (i = 0; i < prov->n; i++)
		if (prov->nodes[i].outcome == CF_OUT_FAILED &&
		    unreachable_code(prov->nodes[i].err.code))
			n++;
	if (n == 0)
		return NULL;
	for (i = 0; skips != NULL && skips[i] != NULL; i++)
		n++;
	v = calloc(n + 1, sizeof(*v));
	if (v == NULL)
		return NULL;
	for (i = 0; skips != NULL && skips[i] != NULL; i++)
		v[k++] = skips[i];
	for (i = 0; i < prov->n; i++)
		if (prov->nodes[i].outcome == CF_OUT_FAILED &&
		    unreachable_code(prov->nodes[i].err.code))
			v[k++] = (char *)prov->nodes[i].node->name;
	return v;
}

/* The nodes skipped for that reason failed in this run: report them so,
 * with the http-01 step's cause, and count them in the exit code. */
void
challenge_http_carry_failures(const struct cf_rollout_result *prov,
                              const struct cf_rollout_opts *o,
                              char *const *pinned,
                              struct cf_rollout_result *res)
{
	size_t i, j;

	for (i = 0; i < prov->n; i++) {
		const struct cf_node_result *p = &prov->nodes[i];

		if (p->outcome != CF_OUT_FAILED ||
		    !unreachable_code(p->err.code))
			continue;
		for (j = 0; j < res->n; j++) {
			struct cf_node_result *r = &res->nodes[j];

			/* a pinned node stays skipped: the operator took it
			 * out of rollouts; it only got a token file */
			if (r->node != p->node ||
			    r->outcome != CF_OUT_SKIPPED ||
			    cf_strv_has(pinned, r->node->name) ||
			    (o->only != NULL &&
			     !cf_strv_has(o->only, r->node->name)) ||
			    cf_strv_has(o->exclude, r->node->name))
				continue;
			r->outcome = CF_OUT_FAILED;
			r->err = p->err;
			r->duration_ms = p->duration_ms;
			res->n_skipped--;
			res->n_failed++;
			fprintf(stderr,
			        "certfleet: %-16s %-15s FAILED %s: %s\n",
			        r->node->name, r->node->host,
			        cf_err_reason(r->err.code), r->err.msg);
		}
	}
}

void
challenge_http_ops(struct cf_http01 *h, struct cf_acme_challenge_ops *ops)
{
	ops->arg = h;
	ops->provision = http01_provision;
	ops->cleanup = http01_cleanup;
}

void
challenge_http_free(struct cf_http01 *h)
{
	rollout_result_free(&h->prov);
}
