/* cli_renew.c - `renew` and `revoke`.
 *
 * Renewal never depends on the fleet: the certificate is obtained and
 * stored first, whatever the nodes look like, then rolled out wherever it
 * can go.  A CA failure still converges the nodes that lack the current
 * stored certificate, and is counted so the next alert says "3rd failure
 * in a row", not just "failed". */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "certfleet/acme.h"
#include "certfleet/challenge.h"
#include "certfleet/cli.h"
#include "certfleet/http.h"
#include "certfleet/keyclean.h"
#include "certfleet/renewal.h"
#include "certfleet/report.h"
#include "certfleet/util.h"

/* ---- http-01 on every reachable node ---- */

struct http01 {
	struct cf_session *s;
	const struct cf_acme_chall *c;
	size_t n;
	char **skip;
	struct cf_rollout_result prov; /* which nodes got the files */
};

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
		           "%ld with %s content", c->domain, url.data, r.status,
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
	struct http01 *h = arg;
	const struct cf_playbook *pb = h->s->pb;
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
		cf_err_set(err, CF_ERR_WRITE, "cannot create %s/.well-known/"
		           "acme-challenge on %s", pb->deploy.webroot, node->name);
		goto out;
	}
	for (i = 0; i < h->n; i++) {
		if (chall_path(pb, &h->c[i], &path) < 0)
			goto nomem;
		(void)ssh_remove(s, path.data, NULL);
		if (ssh_upload(s, path.data, h->c[i].value, strlen(h->c[i].value),
		               0644, err) < 0)
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
	struct http01 *h = arg;
	cf_buf_t path = {0};
	size_t i;

	(void)node;
	(void)err;
	for (i = 0; i < h->n; i++)
		if (chall_path(h->s->pb, &h->c[i], &path) == 0)
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
	struct http01 *h = arg;
	struct cf_rollout_opts o;
	const struct cf_node_result *first = NULL;
	cf_buf_t list = {0};
	size_t i, ok = 0, failed = 0;
	int rc;

	for (i = 0; i < n; i++)
		if (!token_ok(c[i].token))
			return cf_err_set(err, CF_ERR_ACME, "CA sent an unsafe "
			                  "http-01 token for %s", c[i].domain);
	h->c = c;
	h->n = n;
	memset(&o, 0, sizeof(o));
	o.skip = h->skip;
	if (rollout_each(h->s->pb, h->s->ssh, &o, http01_put, h, &h->prov,
	                 err) < 0)
		return -1;
	for (i = 0; i < h->prov.n; i++) {
		const struct cf_node_result *r = &h->prov.nodes[i];

		if (r->outcome == CF_OUT_DEPLOYED) {
			ok++;
		} else if (r->outcome == CF_OUT_FAILED) {
			if (failed++ == 0)
				first = r;
			fprintf(stderr, "certfleet: %-16s %-15s http-01 FAILED "
			        "%s: %s\n", r->node->name, r->node->host,
			        cf_err_reason(r->err.code), r->err.msg);
		}
	}
	/* failed nodes are quarantined by http01_record at the end of the
	 * run, once: the rollout usually meets them again */
	if (ok > 0 || n == 0)
		return 0;
	/* the message outlives this terminal (renewal.json, notifications):
	 * it must carry a cause, not "see above" */
	if (first == NULL)
		return cf_err_set(err, CF_ERR_HOOK, "http-01 for %s: no node "
		                  "could serve the challenge files (every node "
		                  "skipped)", c[0].domain);
	http01_missing(&h->prov, &list);
	rc = cf_err_set(err, CF_ERR_HOOK, "http-01 for %s: no node could "
	                "serve the challenge files (%s; %s: %s)", c[0].domain,
	                list.data ? list.data : "?", first->node->name,
	                first->err.msg);
	cf_buf_free(&list);
	return rc;
}

/* A name failed validation while some nodes lacked the challenge file:
 * the CA may have been routed to one of them, so say which (and why). */
static void
http01_name_missing(const struct cf_rollout_result *prov, cf_err_t *err)
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
	struct http01 *h = arg;
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
	(void)rollout_each(h->s->pb, h->s->ssh, &o, http01_del, h, &res, NULL);
out:
	rollout_result_free(&res);
	free(only);
}

/* Quarantine the nodes that failed the http-01 step and that the rollout
 * (res, may be empty) did not record itself: --only/--exclude, --no-deploy,
 * no certificate, a rollout that could not run.  Recording them in both
 * would count one run as two failed attempts. */
static void
http01_record(struct cf_session *s, const struct cf_rollout_result *prov,
              const struct cf_rollout_result *res)
{
	struct cf_rollout_result left;
	cf_err_t err = {0};
	size_t i, j;
	bool pinned;

	if (prov->n == 0)
		return;
	memset(&left, 0, sizeof(left));
	left.nodes = calloc(prov->n, sizeof(*left.nodes));
	if (left.nodes == NULL) {
		fprintf(stderr, "certfleet: out of memory recording http-01 "
		        "failures\n");
		return;
	}
	for (i = 0; i < prov->n; i++) {
		const struct cf_node_result *p = &prov->nodes[i];
		bool seen = false;

		if (p->outcome != CF_OUT_FAILED)
			continue;
		/* a pinned node stays pinned (manual): recording it would turn
		 * the operator's quarantine into one the next run lifts */
		for (j = 0, pinned = false; j < s->ns.n && !pinned; j++)
			pinned = strcmp(s->ns.v[j].name, p->node->name) == 0 &&
			         s->ns.v[j].quarantined && s->ns.v[j].manual;
		if (pinned)
			continue;
		for (j = 0; j < res->n && !seen; j++)
			seen = res->nodes[j].node == p->node &&
			       (res->nodes[j].outcome == CF_OUT_UNCHANGED ||
			        res->nodes[j].outcome == CF_OUT_DEPLOYED ||
			        res->nodes[j].outcome == CF_OUT_FAILED);
		if (!seen)
			left.nodes[left.n++] = *p; /* shallow: freed below only */
	}
	if (left.n > 0 && session_record(s, &left, NULL, &err) < 0)
		fprintf(stderr, "certfleet: %s\n", err.msg);
	free(left.nodes);
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
static char **
http01_unreachable(const struct cf_rollout_result *prov, char **skips)
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
static void
http01_carry_failures(const struct cf_rollout_result *prov,
                      const struct cf_rollout_opts *o, char *const *pinned,
                      struct cf_rollout_result *res)
{
	size_t i, j;

	for (i = 0; i < prov->n; i++) {
		const struct cf_node_result *p = &prov->nodes[i];

		if (p->outcome != CF_OUT_FAILED || !unreachable_code(p->err.code))
			continue;
		for (j = 0; j < res->n; j++) {
			struct cf_node_result *r = &res->nodes[j];

			/* a pinned node stays skipped: the operator took it
			 * out of rollouts; it only got a token file */
			if (r->node != p->node || r->outcome != CF_OUT_SKIPPED ||
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
			fprintf(stderr, "certfleet: %-16s %-15s FAILED %s: %s\n",
			        r->node->name, r->node->host,
			        cf_err_reason(r->err.code), r->err.msg);
		}
	}
}

/* ---- renewal decision ---- */

static void
acme_params(const struct cf_session *s, const char *account_key,
            struct cf_acme_params *p)
{
	const struct cf_playbook *pb = s->pb;

	memset(p, 0, sizeof(*p));
	p->directory_url = pb->acme.directory;
	p->ca_bundle = pb->acme.ca_bundle;
	p->account_key_path = account_key;
	p->contact = pb->acme.contact;
	p->n_contact = pb->acme.n_contact;
	p->eab_kid = pb->acme.eab_kid;
	p->eab_hmac_key = pb->acme.eab_hmac_key;
	p->domains = pb->cert.domains;
	p->n_domains = pb->cert.n_domains;
	p->challenge_type = pb->acme.challenge;
	p->key_type = pb->cert.key_type;
	p->preferred_chain = pb->acme.preferred_chain;
	p->profile = pb->acme.profile;
	p->deadline = cf_now_ms() + (int64_t)pb->acme.timeout * 1000;
}

/* The current version, key included.  One that `revoke --reason
 * keyCompromise` revoked has no key any more: its certificate alone, and
 * renewal is forced (the fleet serves a revoked certificate); nothing is
 * deployed until a new one is stored (cur->privkey stays NULL). */
static int
renew_load_current(struct cf_session *s, struct cf_bundle *cur,
                   struct cf_certinfo *ci, char **version, bool *found,
                   bool *force, cf_err_t *err)
{
	struct cf_revocation rev;
	char *id = NULL;
	int rc = -1;

	memset(&rev, 0, sizeof(rev));
	if (store_current_id(s->st, &id, err) < 0)
		goto out;
	if (id != NULL && store_load_revocation(s->st, id, &rev, err) < 0)
		goto out;
	if (id == NULL || rev.revoked_at == 0) {
		rc = store_get_current(s->st, cur, ci, version, found, err);
		goto out;
	}
	if (store_get_current_cert(s->st, ci, version, found, err) < 0)
		goto out;
	fprintf(stderr, "certfleet: renew: current version %s was revoked "
	        "(keyCompromise): replacing it\n", id);
	*force = true;
	rc = 0;
out:
	store_revocation_free(&rev);
	free(id);
	return rc;
}

/* The CA's ARI answer for this certificate (RFC 9773), kept in rs: asked
 * again only after its Retry-After.  Its absence or garbage leaves the
 * lifetime rule alone. */
static void
ari_refresh(const struct cf_acme_params *p, const char *ari_id,
            struct cf_renewal_state *rs)
{
	int64_t now = cf_wall_now();
	struct cf_ari ari;
	bool supported = false;
	cf_err_t err = {0};
	unsigned char r[4];
	double rnd = 0.5;

	if (rs->ari_cert_id != NULL && strcmp(rs->ari_cert_id, ari_id) == 0 &&
	    now < rs->ari_retry_after && rs->ari_chosen > 0)
		return;
	memset(&ari, 0, sizeof(ari));
	if (acme_ari_fetch(p, ari_id, &ari, &supported, &err) < 0) {
		fprintf(stderr, "certfleet: ARI unavailable (%s); using the "
		        "lifetime rule\n", err.msg);
		return;
	}
	if (!supported)
		return;
	if (RAND_bytes(r, 4) == 1)
		rnd = (double)((uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 |
		               (uint32_t)r[2] << 8 | r[3]) /
		      4294967296.0;
	free(rs->ari_cert_id);
	free(rs->ari_explanation);
	rs->ari_cert_id = strdup(ari_id);
	rs->ari_window_start = ari.start;
	rs->ari_window_end = ari.end;
	rs->ari_chosen = acme_ari_pick(&ari, rnd);
	/* a CA's Retry-After: at least a minute, at most a week (an absurd
	 * value must neither overflow nor silence ARI) */
	rs->ari_retry_after =
	    now + (ari.retry_after <= 0 ? 6 * 3600
	           : ari.retry_after < 60 ? 60
	           : ari.retry_after > 7 * 86400 ? 7 * 86400
	                                         : (int64_t)ari.retry_after);
	rs->ari_explanation = ari.explanation_url ? strdup(ari.explanation_url)
	                                          : NULL;
	acme_ari_free(&ari);
}

static void
decide(const struct cf_session *s, const struct cf_certinfo *ci,
       const struct cf_renewal_state *rs, const char *ari_id,
       struct cf_renewal_due *d)
{
	renewal_due(s->pb->cert.domains, s->pb->cert.n_domains,
	            s->pb->acme.renew_before_days, ci, rs, ari_id,
	            cf_wall_now(), d);
}

/* The certificate is due: obtain and store it.  Fills rr; 0 stored,
 * -1 with err when the store cannot keep one (nothing ordered, nothing
 * counted), 1 when the CA part failed (counted in rs). */
static int
renew_obtain(struct cf_session *s, struct cf_acme_params *p,
             const char *why, struct cf_bundle *cur, struct cf_certinfo *ci,
             bool *found, char **version, const char *ari_id,
             struct cf_renewal_state *rs, const cf_err_t *ssh_err,
             struct http01 *h, struct cf_acme_result *ar, cf_err_t *err)
{
	struct cf_acme_challenge_ops ops;
	struct cf_dns_hook dh;
	struct cf_bundle nb;
	struct cf_certinfo nci;
	char *new_version = NULL;
	int64_t t0 = cf_now_ms();
	bool http01 = strcmp(s->pb->acme.challenge, "dns-01") != 0;
	int rc = 1;

	memset(&nb, 0, sizeof(nb));
	memset(&nci, 0, sizeof(nci));
	memset(&ops, 0, sizeof(ops));
	/* Prove the store can keep what we order: a timer that orders twice a
	 * day and then cannot store spends Let's Encrypt's 5 duplicate
	 * certificates a week in 3 days. */
	if (store_check_writable(s->st, err) < 0) {
		cf_err_prefix(err, "renew: not ordering a certificate the store "
		              "could not keep: ");
		return -1;
	}
	fprintf(stderr, "certfleet: renew: ordering a certificate for %zu names "
	        "from %s: %s\n", s->pb->cert.n_domains, s->pb->acme.directory,
	        why);
	if (s->pb->acme.reuse_key && *found)
		p->reuse_key_pem = cur->privkey;
	if (*found && ari_id != NULL && rs->ari_cert_id != NULL)
		p->replaces = ari_id;
	rs->last_attempt = cf_wall_now();
	if (http01 && s->ssh == NULL) {
		/* http-01 places files on the nodes over SSH; no order at the
		 * CA that could not be validated */
		cf_err_set(err, CF_ERR_CONFIG, "http-01 needs SSH to the nodes: "
		           "%s", ssh_err->msg);
		goto failed;
	}
	if (!http01) {
		memset(&dh, 0, sizeof(dh));
		dh.hook = s->pb->acme.dns_hook;
		dh.deadline = p->deadline;
		challenge_dns_ops(&dh, &ops);
	} else {
		h->s = s;
		/* every node, pinned and quarantined ones too: a token file is
		 * harmless and the CA may be routed to any of them */
		h->skip = NULL;
		ops.arg = h;
		ops.provision = http01_provision;
		ops.cleanup = http01_cleanup;
	}
	if (acme_issue(p, &ops, ar, err) < 0) {
		if (http01)
			http01_name_missing(&h->prov, err);
		goto failed;
	}
	if (crypto_bundle_from_pem(ar->fullchain_pem, NULL, ar->privkey_pem,
	                           s->pb->cert.domains, s->pb->cert.n_domains,
	                           cf_wall_now(), &nb, &nci, err) < 0 ||
	    store_put_bundle(s->st, &nb, &new_version, err) < 0)
		goto failed;
	free(*version);
	*version = new_version;
	rs->last_success = cf_wall_now();
	rs->consecutive_failures = 0;
	free(rs->last_error);
	rs->last_error = NULL;
	fprintf(stderr, "certfleet: renew: stored version %s (sha256 %.16s…, "
	        "expires in %.1f days) in %.2fs\n", *version, nci.sha256_hex,
	        (double)(nci.not_after - cf_wall_now()) / 86400.0,
	        (double)(cf_now_ms() - t0) / 1000.0);
	crypto_bundle_free(cur);
	crypto_certinfo_free(ci);
	*cur = nb;
	*ci = nci;
	*found = true;
	return 0;
failed:
	crypto_bundle_free(&nb);
	crypto_certinfo_free(&nci);
	rs->consecutive_failures++;
	free(rs->last_error);
	rs->last_error = strdup(err->msg);
	fprintf(stderr, "certfleet: renew FAILED (%u in a row): %s\n",
	        rs->consecutive_failures, err->msg);
	session_event(s, CF_EV_RENEWAL_FAILED, NULL, NULL, NULL, err->msg,
	              rs->consecutive_failures, 0);
	return rc;
}

/* A stand-in for the dry run of a first renewal: sized like an ECDSA
 * leaf with one intermediate, with a digest no node serves, so every node
 * goes through preflight.  Never leaves the process. */
static int
renew_standin_bundle(struct cf_bundle *b, struct cf_certinfo *ci,
                     cf_err_t *err)
{
	static const size_t cert_len = 1400, chain_len = 1600, key_len = 250;
	char *p[4];
	size_t len[4] = {cert_len, chain_len, cert_len + chain_len, key_len};

	for (int i = 0; i < 4; i++) {
		p[i] = malloc(len[i] + 1);
		if (p[i] == NULL) {
			while (i-- > 0)
				free(p[i]);
			return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		}
		memset(p[i], 'x', len[i]);
		p[i][len[i]] = '\0';
	}
	b->cert = p[0];
	b->chain = p[1];
	b->fullchain = p[2];
	b->privkey = p[3];
	memset(ci->sha256_hex, 0, sizeof(ci->sha256_hex));
	return 0;
}

int
cli_renew(struct cf_cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"force", no_argument, NULL, 'f'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {"no-deploy", no_argument, NULL, 'D'},
	    {"only", required_argument, NULL, 'o'},
	    {"exclude", required_argument, NULL, 'x'},
	    {NULL, 0, NULL, 0}};
	struct cf_session s;
	struct cf_bundle cur;
	struct cf_certinfo ci;
	struct cf_renewal_state rs;
	struct cf_renewal_due d;
	struct cf_renewal_report rr;
	struct cf_acme_params p;
	struct cf_acme_result ar;
	struct http01 h;
	struct cf_rollout_opts o;
	struct cf_rollout_result res;
	struct cf_report_ctx rctx;
	cf_err_t err = {0}, nodes_err = {0}, ssh_err = {0};
	char *version = NULL, *ari_id = NULL, *acct = NULL, **skips = NULL;
	char **suspects = NULL;
	char **dead = NULL;
	char why[CF_ERR_MSG_MAX], rerr[CF_ERR_MSG_MAX];
	char deploy_err[CF_ERR_MSG_MAX + 64];
	bool force = false, dry = false, no_deploy = false, found = false;
	bool nodes_ok = false, ca_failed = false, due;
	int c, ex, got;

	memset(&s, 0, sizeof(s));
	memset(&cur, 0, sizeof(cur));
	memset(&ci, 0, sizeof(ci));
	memset(&rs, 0, sizeof(rs));
	memset(&rr, 0, sizeof(rr));
	memset(&ar, 0, sizeof(ar));
	memset(&h, 0, sizeof(h));
	memset(&o, 0, sizeof(o));
	memset(&res, 0, sizeof(res));
	struct cli_cmd cmd = {"renew", "usage: certfleet [global options] -p "
	    "PLAYBOOK renew [--force] [--dry-run] [--no-deploy]\n"
	    "       [--only N,..] [--exclude N,..]\n", false, false, longopts};

	rerr[0] = deploy_err[0] = '\0';
	optind = 0; /* full reinit of GNU getopt */
	while ((c = cli_getopt(cli, &cmd, argc, argv, &ex)) != -1) {
		switch (c) {
		case 'f': force = true; break;
		case 'n': dry = true; break;
		case 'D': no_deploy = true; break;
		case 'o': cf_strv_free(o.only); o.only = cf_strv_split(optarg, ','); break;
		case 'x': cf_strv_free(o.exclude); o.exclude = cf_strv_split(optarg, ','); break;
		default: goto out_nosess; /* help, or usage error: ex is set */
		}
	}
	if (optind < argc) {
		ex = cli_usage("renew: unexpected argument '%s'", argv[optind]);
		goto out_nosess;
	}
	/* Obtaining a certificate must not depend on the fleet: node state
	 * and the SSH identity are the deploy's (and http-01's) business, so
	 * a corrupt nodes.json or an unreadable identity cannot stop the
	 * renewal, only the deploy that follows it. */
	ex = session_open(cli, "renew", dry ? 0 : CF_SESS_LOCK, &s);
	if (ex != 0)
		goto out_nosess;
	nodes_ok = store_load_nodes(s.st, &s.ns, &nodes_err) == 0;
	if (ssh_ctx_new(s.pb->ssh.identity, s.pb->ssh.known_hosts, &s.ssh,
	                &ssh_err) < 0)
		s.ssh = NULL;
	if ((ex = session_check_names(&s, o.only, "--only")) != 0 ||
	    (ex = session_check_names(&s, o.exclude, "--exclude")) != 0)
		goto out;
	if (s.pb->acme.directory == NULL) {
		cf_err_set(&err, CF_ERR_CONFIG, "%s: acme.directory: renew needs "
		           "an ACME directory URL", s.pb->path);
		goto fail;
	}
	if (playbook_load_secrets(s.pb, &err) < 0)
		goto fail;
	if (renew_load_current(&s, &cur, &ci, &version, &found, &force,
	                       &err) < 0 ||
	    store_load_renewal(s.st, &rs, &err) < 0)
		goto fail;
	acct = store_account_key_path(s.st, s.pb->acme.directory);
	if (acct == NULL) {
		cf_err_set(&err, CF_ERR_IO, "cannot create the account key "
		           "directory under %s", store_root(s.st));
		goto fail;
	}
	acme_params(&s, acct, &p);
	if (found && ci.aki != NULL && ci.serial != NULL)
		ari_id = acme_ari_cert_id(ci.aki, ci.aki_len, ci.serial,
		                          ci.serial_len);
	decide(&s, found ? &ci : NULL, &rs, ari_id, &d);
	/* --force: no ARI round trip, the answer would change nothing (the
	 * cert ID is still sent as `replaces`) */
	if (!force && !d.due && ari_id != NULL) {
		ari_refresh(&p, ari_id, &rs);
		decide(&s, &ci, &rs, ari_id, &d);
	}
	due = force || d.due;
	snprintf(why, sizeof(why), "%s", force ? "forced (--force)" : d.why);
	rr.reason = why;
	rr.next_due = d.next_due;

	if (due && dry) {
		rr.action = "dry-run";
		fprintf(stderr, "certfleet: renew: due: %s (dry run: not "
		        "ordering)\n", why);
	} else if (due) {
		got = renew_obtain(&s, &p, why, &cur, &ci, &found, &version,
		                   ari_id, &rs, &ssh_err, &h, &ar, &err);
		if (got < 0) {
			rr.action = "failed";
			rr.error = err.msg;
			rr.consecutive_failures = rs.consecutive_failures;
			goto fail;
		}
		rr.order = ar.order_url;
		if (got == 0) {
			rr.action = "issued";
			rr.version = version;
			decide(&s, &ci, &rs, NULL, &d);
			rr.next_due = d.next_due;
		} else {
			ca_failed = true;
			rr.action = "failed";
			snprintf(rerr, sizeof(rerr), "%s", err.msg);
			rr.error = rerr;
		}
		if (store_save_renewal(s.st, &rs, &err) < 0)
			goto fail;
	} else {
		rr.action = "not-due";
		fprintf(stderr, "certfleet: renew: not due (%s)\n", why);
		if (!dry && store_save_renewal(s.st, &rs, &err) < 0)
			goto fail;
	}
	rr.consecutive_failures = rs.consecutive_failures;

	/* The first dry run has no certificate yet, and its preflight is
	 * what a new operator needs most: check the nodes against a stand-in
	 * of a typical certificate's size (never sent, never stored). */
	if (dry && !found && !no_deploy &&
	    renew_standin_bundle(&cur, &ci, &err) < 0)
		goto fail;
	/* a current version revoked for keyCompromise has no key left: only
	 * a new certificate can go out (renew_load_current) */
	if (no_deploy || (!found && !dry) || (found && cur.privkey == NULL)) {
		ex = ca_failed || !found || (cur.privkey == NULL && !dry)
		         ? CF_EXIT_FAILED
		         : CF_EXIT_OK;
		if (nodes_ok)
			http01_record(&s, &h.prov, &res);
		if (!dry)
			session_finish(&s, "renew", ex, found ? &ci : NULL);
		if (cli->json)
			report_renew_json(stdout, ex, version, found ? &ci : NULL,
			                  NULL, NULL, &rr);
		goto out;
	}
	if (!nodes_ok || s.ssh == NULL) {
		/* the certificate is stored; the deploy needs what is broken.
		 * Without nodes.json we do not know which nodes are pinned: no
		 * node is touched.  The next run converges once it is fixed. */
		snprintf(deploy_err, sizeof(deploy_err), "deploy not run: %s",
		         !nodes_ok ? nodes_err.msg : ssh_err.msg);
		fprintf(stderr, "certfleet: %s\n", deploy_err);
		rr.deploy_error = deploy_err;
		ex = CF_EXIT_FAILED;
		if (nodes_ok)
			http01_record(&s, &h.prov, &res);
		if (!dry)
			session_finish(&s, "renew", ex, &ci);
		if (cli->json)
			report_renew_json(stdout, ex, version, &ci, NULL, NULL,
			                  &rr);
		goto out;
	}
	/* converge: every node that does not serve the current cert gets it.
	 * Nodes the http-01 step could not even reach are not dialled again:
	 * a blackholed node would cost a second connect_timeout. */
	skips = session_manual_skips(&s, o.only);
	dead = http01_unreachable(&h.prov, skips);
	o.skip = dead != NULL ? dead : skips;
	o.suspect = suspects = session_suspects(&s);
	o.dry_run = dry;
	memset(&rctx, 0, sizeof(rctx));
	rctx.tty = cli->tty && !cli->json;
	rctx.quiet = cli->quiet;
	rctx.verb = "renew";
	o.progress = report_progress;
	o.progress_arg = &rctx;
	if (rollout_run(s.pb, s.ssh, &cur, &ci, &o, &res, &err) < 0)
		goto fail;
	http01_carry_failures(&h.prov, &o, skips, &res);
	ex = rollout_exit_code(&res);
	if (ca_failed)
		ex = CF_EXIT_FAILED;
	if (!dry && session_record(&s, &res, &ci, &err) < 0)
		ex = cli_fail(&err);
	http01_record(&s, &h.prov, &res);
	report_summary(stderr, "renew", &res, ex);
	if (res.stopped)
		session_event(&s, CF_EV_CANARY_STOPPED, NULL, NULL, NULL,
		              res.stop_reason, 0, 0);
	if (!dry)
		session_finish(&s, "renew", ex, &ci);
	if (cli->json)
		report_renew_json(stdout, ex, version, found ? &ci : NULL, &res,
		                  &s.ns, &rr);
	goto out;
fail:
	ex = cli_fail(&err);
	if (nodes_ok)
		http01_record(&s, &h.prov, &res);
	if (!dry && s.pb != NULL)
		session_finish(&s, "renew", ex, found ? &ci : NULL);
	if (cli->json && rr.action != NULL)
		report_renew_json(stdout, ex, version, found ? &ci : NULL, NULL,
		                  NULL, &rr);
out:
	session_close(&s);
out_nosess:
	rollout_result_free(&res);
	rollout_result_free(&h.prov);
	free(dead);
	acme_result_free(&ar);
	crypto_bundle_free(&cur);
	crypto_certinfo_free(&ci);
	store_renewal_free(&rs);
	free(version);
	free(ari_id);
	free(acct);
	cf_strv_free(skips);
	cf_strv_free(suspects);
	cf_strv_free(o.only);
	cf_strv_free(o.exclude);
	return ex;
}

/* ---- revoke ---- */

struct revoke_ctx {
	struct cf_session *s;
	const char *id;             /* the revoked version */
	struct cf_revocation rev;   /* its keyCompromise record */
	char **wiped;               /* versions whose key was wiped now */
	struct cf_keyclean_result kc;
	bool kc_ran;
};

/* Nodes whose cleanup could not be done, NULL-terminated (cf_strv_free);
 * every node when the cleanup did not run. */
static char **
revoke_pending(const struct revoke_ctx *rc)
{
	const struct cf_playbook *pb = rc->s->pb;
	char **v = calloc(pb->n_nodes + 1, sizeof(*v));
	size_t i, k = 0;

	if (v == NULL)
		return NULL;
	for (i = 0; i < pb->n_nodes; i++) {
		/* a node serving the key keeps a backup of it once a new
		 * certificate is deployed: it needs another look then */
		if (rc->kc_ran && (rc->kc.no_key_files ||
		                   (rc->kc.nodes[i].attempted &&
		                    rc->kc.nodes[i].ok &&
		                    !rc->kc.nodes[i].live_compromised)))
			continue;
		if ((v[k++] = strdup(pb->nodes[i].name)) == NULL) {
			cf_strv_free(v);
			return NULL;
		}
	}
	return v;
}

/* One line per node on stderr, then the summary.  Returns the exit code:
 * 2 when a node could not be cleaned (README "Exit codes": done where
 * reachable). */
static int
revoke_report_nodes(const struct revoke_ctx *rc)
{
	const struct cf_keyclean_result *kc = &rc->kc;
	cf_buf_t failed = {0};
	size_t i;
	int ex;

	if (kc->no_key_files) {
		fprintf(stderr, "certfleet: revoke: deploy.files has no key "
		        "file: nothing to clean on nodes\n");
		return CF_EXIT_OK;
	}
	for (i = 0; i < kc->n; i++) {
		const struct cf_keyclean_node *kn = &kc->nodes[i];
		const struct cf_node *n = kn->node;

		if (!kn->attempted)
			continue;
		if (!kn->ok) {
			fprintf(stderr, "certfleet: %-16s %-15s NOT CLEANED %s: "
			        "%s\n", n->name, n->host,
			        cf_err_reason(kn->err.code), kn->err.msg);
			(void)cf_buf_printf(&failed, "%s%s (%s)",
			                    failed.len ? ", " : "", n->name,
			                    cf_err_reason(kn->err.code));
		} else if (kn->removed > 0) {
			fprintf(stderr, "certfleet: %-16s %-15s removed %s\n",
			        n->name, n->host, kn->removed_files);
		} else {
			fprintf(stderr, "certfleet: %-16s %-15s clean: no backup "
			        "of the key%s\n", n->name, n->host,
			        kn->kept_other ? " (a backup of another key is "
			                         "kept)" : "");
		}
		if (kn->live_compromised)
			fprintf(stderr, "certfleet: %-16s %-15s still serves the "
			        "compromised key (%s): deploy a new "
			        "certificate, then re-run this revoke to remove "
			        "the backup that deploy keeps of it\n", n->name,
			        n->host, kn->live_files);
	}
	ex = kc->n_failed > 0 ? CF_EXIT_PARTIAL : CF_EXIT_OK;
	fprintf(stderr, "certfleet: revoke: key backups removed on %u nodes, "
	        "%u had none, %u not cleaned%s%s%s (exit %d)\n", kc->n_cleaned,
	        kc->n_clean, kc->n_failed, failed.len ? ": " : "",
	        failed.len ? failed.data : "",
	        failed.len ? "; re-run the same revoke once they are "
	                     "reachable or fixed (the CA is not asked "
	                     "again)"
	                   : "",
	        ex);
	cf_buf_free(&failed);
	return ex;
}

/* keyCompromise, once the CA accepted (or had accepted) the revocation:
 * record the key's hashes, wipe every copy of the key in the store, then
 * remove the nodes' backups of it.  The record comes first: it is what
 * lets a node that is down now be cleaned later, when the key is gone. */
static int
revoke_cleanup(struct revoke_ctx *rc, cf_err_t *err)
{
	struct cf_session *s = rc->s;
	char **pending = NULL;
	cf_err_t e = {0};
	int ex = CF_EXIT_FAILED;

	if (rc->rev.revoked_at == 0)
		rc->rev.revoked_at = cf_wall_now();
	rc->rev.reason = 1;
	cf_strv_free(rc->rev.pending);
	rc->rev.pending = revoke_pending(rc); /* everything, until seen */
	if (rc->rev.pending == NULL ||
	    store_save_revocation(s->st, rc->id, &rc->rev, err) < 0)
		goto fail;
	if (rc->rev.key_sha256[0] != '\0') {
		if (store_wipe_key(s->st, rc->rev.key_sha256, &rc->wiped,
		                   err) < 0)
			goto fail;
		for (char **w = rc->wiped; w != NULL && *w != NULL; w++)
			fprintf(stderr, "certfleet: revoke: key of version %s "
			        "wiped from the store\n", *w);
	}
	if (rc->rev.key_sha256[0] == '\0') {
		fprintf(stderr, "certfleet: revoke: the store no longer held "
		        "the key of %s (older than store.keep_versions): its "
		        "backups on nodes cannot be recognized, none removed\n",
		        rc->id);
		ex = CF_EXIT_OK;
		goto out;
	}
	if (ssh_ctx_new(s->pb->ssh.identity, s->pb->ssh.known_hosts, &s->ssh,
	                &e) < 0) {
		*err = e;
		cf_err_prefix(err, "revoked, key wiped from the store, but no "
		              "node cleaned: ");
		goto fail;
	}
	if (keyclean_run(s->pb, s->ssh, NULL, rc->rev.key_sha256,
	                 rc->rev.combined_sha256, &rc->kc, err) < 0)
		goto fail;
	rc->kc_ran = true;
	ex = revoke_report_nodes(rc);
	pending = revoke_pending(rc);
	if (pending == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto fail;
	}
	cf_strv_free(rc->rev.pending);
	rc->rev.pending = pending;
	if (store_save_revocation(s->st, rc->id, &rc->rev, err) < 0)
		goto fail;
	goto out;
fail:
	ex = -1;
out:
	return ex;
}

int
cli_revoke(struct cf_cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"reason", required_argument, NULL, 'r'},
	    {"version", required_argument, NULL, 'V'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0}};
	static const struct { const char *name; int code; } reasons[] = {
	    {"unspecified", 0}, {"keyCompromise", 1}, {"superseded", 4},
	    {"cessationOfOperation", 5}};
	struct cf_session s;
	struct cf_certinfo ci;
	struct cf_acme_params p;
	struct cf_revoke_report rr;
	struct revoke_ctx rc;
	cf_err_t err = {0};
	char *cur = NULL, *acct = NULL, *cert = NULL, *want = NULL;
	bool dry = false, key_present = false;
	int c, ex, reason = 0;
	size_t i;

	memset(&ci, 0, sizeof(ci));
	memset(&rr, 0, sizeof(rr));
	memset(&rc, 0, sizeof(rc));
	memset(&s, 0, sizeof(s));
	struct cli_cmd cmd = {"revoke", "usage: certfleet [global options] -p "
	    "PLAYBOOK revoke [--version ID] [--reason CODE] [--dry-run]\n",
	    false, false, longopts};

	optind = 0; /* full reinit of GNU getopt */
	while ((c = cli_getopt(cli, &cmd, argc, argv, &ex)) != -1) {
		if (c == 'n') {
			dry = true;
		} else if (c == 'V') {
			free(want);
			want = strdup(optarg);
		} else if (c == 'r') {
			char *end;

			reason = -1;
			for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
				if (strcmp(optarg, reasons[i].name) == 0)
					reason = reasons[i].code;
			if (reason < 0) {
				long v = strtol(optarg, &end, 10);

				if (*end != '\0' || (v != 0 && v != 1 && v != 4 &&
				                     v != 5)) {
					free(want);
					return cli_usage("--reason: unspecified, "
					    "keyCompromise, superseded, "
					    "cessationOfOperation (or 0,1,4,5)");
				}
				reason = (int)v;
			}
		} else {
			free(want);
			return ex; /* help, or usage error */
		}
	}
	if (optind < argc) {
		free(want);
		return cli_usage("revoke: unexpected argument '%s'",
		                 argv[optind]);
	}
	ex = session_open(cli, "revoke", dry ? 0 : CF_SESS_LOCK, &s);
	if (ex != 0) {
		free(want);
		return ex;
	}
	rc.s = &s;
	rr.reason_code = reason;
	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].code == reason)
			rr.reason = reasons[i].name;
	if (s.pb->acme.directory == NULL) {
		cf_err_set(&err, CF_ERR_CONFIG, "%s: acme.directory: revoke needs "
		           "an ACME directory URL", s.pb->path);
		goto fail;
	}
	if (store_current_id(s.st, &cur, &err) < 0)
		goto fail;
	rc.id = want != NULL ? want : cur;
	if (rc.id == NULL) {
		cf_err_set(&err, CF_ERR_STATE, "no current certificate to revoke");
		goto fail;
	}
	rr.version = rc.id;
	rr.current = cur != NULL && strcmp(rc.id, cur) == 0;
	if (store_get_version_cert(s.st, rc.id, &ci, &cert, &err) < 0)
		goto fail;
	rr.ci = &ci;
	if (reason == 1) {
		/* the hashes come from the key while the store has it, else
		 * from the record an earlier revoke left */
		if (store_load_revocation(s.st, rc.id, &rc.rev, &err) < 0 ||
		    store_version_key_hashes(s.st, rc.id, rc.rev.key_sha256,
		                             rc.rev.combined_sha256,
		                             &key_present, &err) < 0)
			goto fail;
		(void)key_present;
		rr.revoked_at = rc.rev.revoked_at;
	}
	acct = store_account_key_path(s.st, s.pb->acme.directory);
	if (acct == NULL) {
		cf_err_set(&err, CF_ERR_IO, "cannot create the account key dir");
		goto fail;
	}
	acme_params(&s, acct, &p);
	if (dry) {
		fprintf(stderr, "certfleet: dry run: would revoke %s (sha256 "
		        "%.16s…) reason %d\n", rc.id, ci.sha256_hex, reason);
		if (reason == 1)
			fprintf(stderr, "certfleet: dry run: would wipe its key "
			        "from the store and remove the backups holding "
			        "it from %zu nodes\n", s.pb->n_nodes);
		rr.ca = "dry-run";
		ex = 0;
		goto out;
	}
	if (reason == 1 && rc.rev.revoked_at != 0) {
		/* a re-run to clean nodes that were down: the CA said yes
		 * already, and it may be down now */
		char when[32];

		cf_fmt_time(rc.rev.revoked_at, when, sizeof(when));
		fprintf(stderr, "certfleet: %s was revoked (keyCompromise) on "
		        "%s: not asking the CA again, cleaning up\n", rc.id,
		        when);
		rr.ca = "already-revoked";
	} else {
		if (acme_revoke(&p, cert, reason, &err) < 0)
			goto fail;
		rr.ca = "revoked";
		if (rr.current)
			fprintf(stderr, "certfleet: revoked %s (sha256 %.16s…); "
			        "run `renew --force` to replace it\n", rc.id,
			        ci.sha256_hex);
		else
			fprintf(stderr, "certfleet: revoked %s (sha256 %.16s…); "
			        "the current certificate %s is not affected\n",
			        rc.id, ci.sha256_hex, cur ? cur : "(none)");
	}
	ex = CF_EXIT_OK;
	if (reason == 1) {
		ex = revoke_cleanup(&rc, &err);
		rr.revoked_at = rc.rev.revoked_at;
		rr.store_wiped = rc.wiped;
		rr.kc = rc.kc_ran ? &rc.kc : NULL;
		rr.pending = rc.rev.pending;
		if (ex < 0)
			goto fail;
		if (rr.current)
			fprintf(stderr, "certfleet: the fleet still serves the "
			        "revoked certificate %s: run `renew --force` to "
			        "replace it\n", rc.id);
	}
	goto out;
fail:
	ex = cli_fail(&err);
out:
	if (cli->json && s.pb != NULL)
		report_revoke_json(stdout, ex, &rr);
	crypto_certinfo_free(&ci);
	store_revocation_free(&rc.rev);
	keyclean_result_free(&rc.kc);
	cf_strv_free(rc.wiped);
	free(cert);
	free(cur);
	free(want);
	free(acct);
	session_close(&s);
	return ex;
}
