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
#include "certfleet/challenge_http.h"
#include "certfleet/cli.h"
#include "certfleet/http.h"
#include "certfleet/keyclean.h"
#include "certfleet/renewal.h"
#include "certfleet/report.h"
#include "certfleet/util.h"

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
	fprintf(stderr,
	        "certfleet: renew: current version %s was revoked "
	        "(keyCompromise): replacing it\n",
	        id);
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
		fprintf(stderr,
		        "certfleet: ARI unavailable (%s); using the "
		        "lifetime rule\n",
		        err.msg);
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
	    now + (ari.retry_after <= 0          ? 6 * 3600
	           : ari.retry_after < 60        ? 60
	           : ari.retry_after > 7 * 86400 ? 7 * 86400
	                                         : (int64_t)ari.retry_after);
	rs->ari_explanation =
	    ari.explanation_url ? strdup(ari.explanation_url) : NULL;
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

/* One `renew` run: what its steps share. */
struct renew {
	struct cf_session s;
	bool force, dry, no_deploy;
	struct cf_rollout_opts o;    /* only/exclude owned */
	bool nodes_ok;               /* nodes.json loaded */
	cf_err_t nodes_err, ssh_err; /* why not / why no SSH context */
	struct cf_bundle cur;        /* the current certificate */
	struct cf_certinfo ci;
	bool found; /* the store has one */
	char *version, *ari_id, *acct;
	struct cf_renewal_state rs;
	struct cf_acme_params p;
	struct cf_acme_result ar;
	struct cf_http01 h;          /* http-01 step and its results */
	struct cf_renewal_report rr; /* for --json */
	bool ca_failed;
	char why[CF_ERR_MSG_MAX], rerr[CF_ERR_MSG_MAX];
	char deploy_err[CF_ERR_MSG_MAX + 64];
};

/* The certificate is due: obtain and store it.  0 stored, -1 with err
 * when the store cannot keep one (nothing ordered, nothing counted), 1
 * when the CA part failed (counted in rs). */
static int
renew_obtain(struct renew *r, cf_err_t *err)
{
	struct cf_session *s = &r->s;
	struct cf_acme_challenge_ops ops;
	struct cf_dns_hook dh;
	struct cf_bundle nb;
	struct cf_certinfo nci;
	char *new_version = NULL;
	int64_t t0 = cf_now_ms();
	bool http01 = strcmp(s->pb->acme.challenge, "dns-01") != 0;

	memset(&nb, 0, sizeof(nb));
	memset(&nci, 0, sizeof(nci));
	memset(&ops, 0, sizeof(ops));
	/* Prove the store can keep what we order: a timer that orders twice a
	 * day and then cannot store spends Let's Encrypt's 5 duplicate
	 * certificates a week in 3 days. */
	if (store_check_writable(s->st, err) < 0) {
		cf_err_prefix(err,
		              "renew: not ordering a certificate the store "
		              "could not keep: ");
		return -1;
	}
	fprintf(stderr,
	        "certfleet: renew: ordering a certificate for %zu names "
	        "from %s: %s\n",
	        s->pb->cert.n_domains, s->pb->acme.directory, r->why);
	if (s->pb->acme.reuse_key && r->found)
		r->p.reuse_key_pem = r->cur.privkey;
	if (r->found && r->ari_id != NULL && r->rs.ari_cert_id != NULL)
		r->p.replaces = r->ari_id;
	r->rs.last_attempt = cf_wall_now();
	if (http01 && s->ssh == NULL) {
		/* http-01 places files on the nodes over SSH; no order at the
		 * CA that could not be validated */
		cf_err_set(err, CF_ERR_CONFIG,
		           "http-01 needs SSH to the nodes: "
		           "%s",
		           r->ssh_err.msg);
		goto failed;
	}
	if (!http01) {
		memset(&dh, 0, sizeof(dh));
		dh.hook = s->pb->acme.dns_hook;
		dh.deadline = r->p.deadline;
		challenge_dns_ops(&dh, &ops);
	} else {
		r->h.pb = s->pb;
		r->h.ssh = s->ssh;
		/* every node, pinned and quarantined ones too: a token file is
		 * harmless and the CA may be routed to any of them */
		r->h.skip = NULL;
		challenge_http_ops(&r->h, &ops);
	}
	if (acme_issue(&r->p, &ops, &r->ar, err) < 0) {
		if (http01)
			challenge_http_name_missing(&r->h.prov, err);
		goto failed;
	}
	if (crypto_bundle_from_pem(r->ar.fullchain_pem, NULL, r->ar.privkey_pem,
	                           s->pb->cert.domains, s->pb->cert.n_domains,
	                           cf_wall_now(), &nb, &nci, err) < 0 ||
	    store_put_bundle(s->st, &nb, &new_version, err) < 0)
		goto failed;
	free(r->version);
	r->version = new_version;
	r->rs.last_success = cf_wall_now();
	r->rs.consecutive_failures = 0;
	free(r->rs.last_error);
	r->rs.last_error = NULL;
	fprintf(stderr,
	        "certfleet: renew: stored version %s (sha256 %.16s…, "
	        "expires in %.1f days) in %.2fs\n",
	        r->version, nci.sha256_hex,
	        (double)(nci.not_after - cf_wall_now()) / 86400.0,
	        (double)(cf_now_ms() - t0) / 1000.0);
	crypto_bundle_free(&r->cur);
	crypto_certinfo_free(&r->ci);
	r->cur = nb;
	r->ci = nci;
	r->found = true;
	return 0;
failed:
	crypto_bundle_free(&nb);
	crypto_certinfo_free(&nci);
	r->rs.consecutive_failures++;
	free(r->rs.last_error);
	r->rs.last_error = strdup(err->msg);
	fprintf(stderr, "certfleet: renew FAILED (%u in a row): %s\n",
	        r->rs.consecutive_failures, err->msg);
	session_event(s, CF_EV_RENEWAL_FAILED, NULL, NULL, NULL, err->msg,
	              r->rs.consecutive_failures, 0);
	return 1;
}

/* A stand-in for the dry run of a first renewal: sized like an ECDSA
 * leaf with one intermediate, with a digest no node serves, so every node
 * goes through preflight.  Never leaves the process. */
static int
renew_standin_bundle(struct cf_bundle *b, struct cf_certinfo *ci, cf_err_t *err)
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

/* renew's options: 0, or -1 with the exit code in *ex (help printed: 0;
 * a usage error printed). */
static int
renew_parse(struct cf_cli *cli, int argc, char **argv, struct renew *r, int *ex)
{
	static const struct option longopts[] =
	    {{"force", no_argument, NULL, 'f'},
	     {"dry-run", no_argument, NULL, 'n'},
	     {"no-deploy", no_argument, NULL, 'D'},
	     {"only", required_argument, NULL, 'o'},
	     {"exclude", required_argument, NULL, 'x'},
	     {NULL, 0, NULL, 0}};
	struct cli_cmd cmd =
	    {"renew",
	     "usage: certfleet [global options] -p "
	     "PLAYBOOK renew [--force] [--dry-run] [--no-deploy]\n"
	     "       [--only N,..] [--exclude N,..]\n",
	     false, false, longopts};
	int c;

	optind = 0; /* full reinit of GNU getopt */
	while ((c = cli_getopt(cli, &cmd, argc, argv, ex)) != -1) {
		switch (c) {
		case 'f': r->force = true; break;
		case 'n': r->dry = true; break;
		case 'D': r->no_deploy = true; break;
		case 'o':
			cf_strv_free(r->o.only);
			r->o.only = cf_strv_split(optarg, ',');
			break;
		case 'x':
			cf_strv_free(r->o.exclude);
			r->o.exclude = cf_strv_split(optarg, ',');
			break;
		default: return -1; /* help, or usage error: *ex is set */
		}
	}
	if (optind < argc) {
		*ex =
		    cli_usage("renew: unexpected argument '%s'", argv[optind]);
		return -1;
	}
	return 0;
}

/* Session, node states, SSH, the current certificate and the renewal
 * state.  0; -1 with err; or the exit code (> 0) of an error already
 * printed. */
static int
renew_open(struct cf_cli *cli, struct renew *r, cf_err_t *err)
{
	struct cf_session *s = &r->s;
	int ex;

	/* Obtaining a certificate must not depend on the fleet: node state
	 * and the SSH identity are the deploy's (and http-01's) business, so
	 * a corrupt nodes.json or an unreadable identity cannot stop the
	 * renewal, only the deploy that follows it. */
	ex = session_open(cli, "renew", r->dry ? 0 : CF_SESS_LOCK, s);
	if (ex != 0)
		return ex;
	r->nodes_ok = store_load_nodes(s->st, &s->ns, &r->nodes_err) == 0;
	if (ssh_ctx_new(s->pb->ssh.identity, s->pb->ssh.known_hosts, &s->ssh,
	                &r->ssh_err) < 0)
		s->ssh = NULL;
	if ((ex = session_check_names(s, r->o.only, "--only")) != 0 ||
	    (ex = session_check_names(s, r->o.exclude, "--exclude")) != 0)
		return ex;
	if (s->pb->acme.directory == NULL)
		return cf_err_set(err, CF_ERR_CONFIG,
		                  "%s: acme.directory: renew "
		                  "needs an ACME directory URL",
		                  s->pb->path);
	if (playbook_load_secrets(s->pb, err) < 0 ||
	    renew_load_current(s, &r->cur, &r->ci, &r->version, &r->found,
	                       &r->force, err) < 0 ||
	    store_load_renewal(s->st, &r->rs, err) < 0)
		return -1;
	r->acct = store_account_key_path(s->st, s->pb->acme.directory);
	if (r->acct == NULL)
		return cf_err_set(err, CF_ERR_IO,
		                  "cannot create the account key "
		                  "directory under %s",
		                  store_root(s->st));
	acme_params(s, r->acct, &r->p);
	if (r->found && r->ci.aki != NULL && r->ci.serial != NULL)
		r->ari_id = acme_ari_cert_id(r->ci.aki, r->ci.aki_len,
		                             r->ci.serial, r->ci.serial_len);
	return 0;
}

/* Due?  Then order (not in a dry run), and keep renewal.json.  Fills
 * r->rr; 0, or -1 with err. */
static int
renew_certificate(struct renew *r, cf_err_t *err)
{
	struct cf_renewal_due d;
	int got;

	decide(&r->s, r->found ? &r->ci : NULL, &r->rs, r->ari_id, &d);
	/* --force: no ARI round trip, the answer would change nothing (the
	 * cert ID is still sent as `replaces`) */
	if (!r->force && !d.due && r->ari_id != NULL) {
		ari_refresh(&r->p, r->ari_id, &r->rs);
		decide(&r->s, &r->ci, &r->rs, r->ari_id, &d);
	}
	snprintf(r->why, sizeof(r->why), "%s",
	         r->force ? "forced (--force)" : d.why);
	r->rr.reason = r->why;
	r->rr.next_due = d.next_due;
	if (!r->force && !d.due) {
		r->rr.action = "not-due";
		fprintf(stderr, "certfleet: renew: not due (%s)\n", r->why);
		if (!r->dry && store_save_renewal(r->s.st, &r->rs, err) < 0)
			return -1;
	} else if (r->dry) {
		r->rr.action = "dry-run";
		fprintf(stderr,
		        "certfleet: renew: due: %s (dry run: not "
		        "ordering)\n",
		        r->why);
	} else {
		got = renew_obtain(r, err);
		if (got < 0) {
			r->rr.action = "failed";
			r->rr.error = err->msg;
			r->rr.consecutive_failures = r->rs.consecutive_failures;
			return -1;
		}
		r->rr.order = r->ar.order_url;
		if (got == 0) {
			r->rr.action = "issued";
			r->rr.version = r->version;
			decide(&r->s, &r->ci, &r->rs, NULL, &d);
			r->rr.next_due = d.next_due;
		} else {
			r->ca_failed = true;
			r->rr.action = "failed";
			snprintf(r->rerr, sizeof(r->rerr), "%s", err->msg);
			r->rr.error = r->rerr;
		}
		if (store_save_renewal(r->s.st, &r->rs, err) < 0)
			return -1;
	}
	r->rr.consecutive_failures = r->rs.consecutive_failures;
	return 0;
}

/* No rollout after all (--no-deploy, nothing to deploy, or what the
 * deploy needs is broken): the run's end with exit code ex, reporting
 * certificate ci (may be NULL); res is the empty rollout. */
static int
renew_end_without_rollout(struct renew *r, const struct cf_rollout_result *res,
                          int ex, const struct cf_certinfo *ci)
{
	if (r->nodes_ok)
		session_record_http01(&r->s, &r->h.prov, res);
	if (!r->dry)
		session_finish(&r->s, "renew", ex, ci);
	if (r->s.cli->json)
		report_renew_json(stdout, ex, r->version, ci, NULL, NULL,
		                  &r->rr);
	return ex;
}

/* Roll the stored certificate out to every node that lacks it: 0 with
 * the exit code in *ex, or -1 with err when the rollout could not run. */
static int
renew_deploy(struct renew *r, int *ex, struct cf_rollout_result *res,
             cf_err_t *err)
{
	struct session_run run;

	/* The first dry run has no certificate yet, and its preflight is
	 * what a new operator needs most: check the nodes against a stand-in
	 * of a typical certificate's size (never sent, never stored). */
	if (r->dry && !r->found && !r->no_deploy &&
	    renew_standin_bundle(&r->cur, &r->ci, err) < 0)
		return -1;
	/* a current version revoked for keyCompromise has no key left: only
	 * a new certificate can go out (renew_load_current) */
	if (r->no_deploy || (!r->found && !r->dry) ||
	    (r->found && r->cur.privkey == NULL)) {
		*ex =
		    renew_end_without_rollout(r, res,
		                              r->ca_failed || !r->found ||
		                                      (r->cur.privkey == NULL &&
		                                       !r->dry)
		                                  ? CF_EXIT_FAILED
		                                  : CF_EXIT_OK,
		                              r->found ? &r->ci : NULL);
		return 0;
	}
	if (!r->nodes_ok || r->s.ssh == NULL) {
		/* the certificate is stored; the deploy needs what is broken.
		 * Without nodes.json we do not know which nodes are pinned: no
		 * node is touched.  The next run converges once it is fixed. */
		snprintf(r->deploy_err, sizeof(r->deploy_err),
		         "deploy not run: %s",
		         !r->nodes_ok ? r->nodes_err.msg : r->ssh_err.msg);
		fprintf(stderr, "certfleet: %s\n", r->deploy_err);
		r->rr.deploy_error = r->deploy_err;
		*ex = renew_end_without_rollout(r, res, CF_EXIT_FAILED, &r->ci);
		return 0;
	}
	/* converge: every node that does not serve the current cert gets it */
	memset(&run, 0, sizeof(run));
	run.verb = "renew";
	run.bundle = &r->cur;
	run.ci = &r->ci;
	run.report_ci = r->found ? &r->ci : NULL;
	run.version = r->version;
	r->o.dry_run = r->dry;
	run.o = &r->o;
	run.ca_failed = r->ca_failed;
	run.http01 = &r->h.prov;
	run.rr = &r->rr;
	return session_rollout(&r->s, &run, res, ex, err);
}

int
cli_renew(struct cf_cli *cli, int argc, char **argv)
{
	struct renew r;
	struct cf_rollout_result res;
	cf_err_t err = {0};
	int ex, rc;

	memset(&r, 0, sizeof(r));
	memset(&res, 0, sizeof(res));
	if (renew_parse(cli, argc, argv, &r, &ex) < 0)
		goto out_nosess;
	rc = renew_open(cli, &r, &err);
	if (rc > 0) {
		ex = rc;
		goto out;
	}
	if (rc < 0 || renew_certificate(&r, &err) < 0 ||
	    renew_deploy(&r, &ex, &res, &err) < 0)
		goto fail;
	goto out;
fail:
	ex = cli_fail(&err);
	if (r.nodes_ok)
		session_record_http01(&r.s, &r.h.prov, &res);
	if (!r.dry && r.s.pb != NULL)
		session_finish(&r.s, "renew", ex, r.found ? &r.ci : NULL);
	if (cli->json && r.rr.action != NULL)
		report_renew_json(stdout, ex, r.version, r.found ? &r.ci : NULL,
		                  NULL, NULL, &r.rr);
out:
	session_close(&r.s);
out_nosess:
	rollout_result_free(&res);
	challenge_http_free(&r.h);
	acme_result_free(&r.ar);
	crypto_bundle_free(&r.cur);
	crypto_certinfo_free(&r.ci);
	store_renewal_free(&r.rs);
	free(r.version);
	free(r.ari_id);
	free(r.acct);
	cf_strv_free(r.o.only);
	cf_strv_free(r.o.exclude);
	return ex;
}

/* ---- revoke ---- */

struct revoke_ctx {
	struct cf_session *s;
	const char *id;           /* the revoked version */
	struct cf_revocation rev; /* its keyCompromise record */
	char **wiped;             /* versions whose key was wiped now */
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
		if (rc->kc_ran &&
		    (rc->kc.no_key_files ||
		     (rc->kc.nodes[i].attempted && rc->kc.nodes[i].ok &&
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
			fprintf(stderr,
			        "certfleet: %-16s %-15s NOT CLEANED %s: "
			        "%s\n",
			        n->name, n->host, cf_err_reason(kn->err.code),
			        kn->err.msg);
			(void)cf_buf_printf(&failed, "%s%s (%s)",
			                    failed.len ? ", " : "", n->name,
			                    cf_err_reason(kn->err.code));
		} else if (kn->removed > 0) {
			fprintf(stderr, "certfleet: %-16s %-15s removed %s\n",
			        n->name, n->host, kn->removed_files);
		} else {
			fprintf(stderr,
			        "certfleet: %-16s %-15s clean: no backup "
			        "of the key%s\n",
			        n->name, n->host,
			        kn->kept_other ? " (a backup of another key is "
			                         "kept)"
			                       : "");
		}
		if (kn->live_compromised)
			fprintf(stderr,
			        "certfleet: %-16s %-15s still serves the "
			        "compromised key (%s): deploy a new "
			        "certificate, then re-run this revoke to "
			        "remove "
			        "the backup that deploy keeps of it\n",
			        n->name, n->host, kn->live_files);
	}
	ex = kc->n_failed > 0 ? CF_EXIT_PARTIAL : CF_EXIT_OK;
	fprintf(stderr,
	        "certfleet: revoke: key backups removed on %u nodes, "
	        "%u had none, %u not cleaned%s%s%s (exit %d)\n",
	        kc->n_cleaned, kc->n_clean, kc->n_failed,
	        failed.len ? ": " : "", failed.len ? failed.data : "",
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
		if (store_wipe_key(s->st, rc->rev.key_sha256, &rc->wiped, err) <
		    0)
			goto fail;
		for (char **w = rc->wiped; w != NULL && *w != NULL; w++)
			fprintf(stderr,
			        "certfleet: revoke: key of version %s "
			        "wiped from the store\n",
			        *w);
	}
	if (rc->rev.key_sha256[0] == '\0') {
		fprintf(stderr,
		        "certfleet: revoke: the store no longer held "
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

static const struct {
	const char *name;
	int code;
} revoke_reasons[] = {{"unspecified", 0},
                      {"keyCompromise", 1},
                      {"superseded", 4},
                      {"cessationOfOperation", 5}};

/* --reason's code, by name or number; -1 when it is neither. */
static int
revoke_reason(const char *arg)
{
	char *end;
	long v;
	size_t i;

	for (i = 0; i < sizeof(revoke_reasons) / sizeof(revoke_reasons[0]); i++)
		if (strcmp(arg, revoke_reasons[i].name) == 0)
			return revoke_reasons[i].code;
	v = strtol(arg, &end, 10);
	if (*end != '\0' || (v != 0 && v != 1 && v != 4 && v != 5))
		return -1;
	return (int)v;
}

/* revoke's options: -1 to go on, or the exit code to return (help, usage
 * error). */
static int
revoke_parse(struct cf_cli *cli, int argc, char **argv, bool *dry, char **want,
             int *reason)
{
	static const struct option longopts[] =
	    {{"reason", required_argument, NULL, 'r'},
	     {"version", required_argument, NULL, 'V'},
	     {"dry-run", no_argument, NULL, 'n'},
	     {NULL, 0, NULL, 0}};
	struct cli_cmd cmd =
	    {"revoke",
	     "usage: certfleet [global options] -p "
	     "PLAYBOOK revoke [--version ID] [--reason CODE] [--dry-run]\n",
	     false, false, longopts};
	int c, ex;

	optind = 0; /* full reinit of GNU getopt */
	while ((c = cli_getopt(cli, &cmd, argc, argv, &ex)) != -1) {
		if (c == 'n') {
			*dry = true;
		} else if (c == 'V') {
			free(*want);
			*want = strdup(optarg);
		} else if (c == 'r') {
			*reason = revoke_reason(optarg);
			if (*reason < 0)
				return cli_usage(
				    "--reason: unspecified, "
				    "keyCompromise, superseded, "
				    "cessationOfOperation (or 0,1,4,5)");
		} else {
			return ex; /* help, or usage error */
		}
	}
	if (optind < argc)
		return cli_usage("revoke: unexpected argument '%s'",
		                 argv[optind]);
	return -1;
}

/* The version to revoke (--version, else the current one), its
 * certificate, and for keyCompromise the hashes of its key: from the key
 * while the store has it, else from the record an earlier revoke left.
 * 0, or -1 with err. */
static int
revoke_select(struct revoke_ctx *rc, const char *want, char **cur,
              struct cf_certinfo *ci, char **cert, struct cf_revoke_report *rr,
              cf_err_t *err)
{
	struct cf_session *s = rc->s;
	bool key_present = false;

	if (store_current_id(s->st, cur, err) < 0)
		return -1;
	rc->id = want != NULL ? want : *cur;
	if (rc->id == NULL)
		return cf_err_set(err, CF_ERR_STATE,
		                  "no current certificate to revoke");
	rr->version = rc->id;
	rr->current = *cur != NULL && strcmp(rc->id, *cur) == 0;
	if (store_get_version_cert(s->st, rc->id, ci, cert, err) < 0)
		return -1;
	rr->ci = ci;
	if (rr->reason_code != 1)
		return 0;
	if (store_load_revocation(s->st, rc->id, &rc->rev, err) < 0 ||
	    store_version_key_hashes(s->st, rc->id, rc->rev.key_sha256,
	                             rc->rev.combined_sha256, &key_present,
	                             err) < 0)
		return -1;
	rr->revoked_at = rc->rev.revoked_at;
	return 0;
}

/* Ask the CA, unless an earlier keyCompromise revoke of this version
 * already did (a re-run to clean nodes that were down: the CA said yes
 * already, and it may be down now).  0, or -1 with err. */
static int
revoke_at_ca(struct revoke_ctx *rc, const struct cf_acme_params *p,
             const char *cert, const char *cur, const struct cf_certinfo *ci,
             struct cf_revoke_report *rr, cf_err_t *err)
{
	char when[32];

	if (rr->reason_code == 1 && rc->rev.revoked_at != 0) {
		cf_fmt_time(rc->rev.revoked_at, when, sizeof(when));
		fprintf(stderr,
		        "certfleet: %s was revoked (keyCompromise) on "
		        "%s: not asking the CA again, cleaning up\n",
		        rc->id, when);
		rr->ca = "already-revoked";
		return 0;
	}
	if (acme_revoke(p, cert, rr->reason_code, err) < 0)
		return -1;
	rr->ca = "revoked";
	if (rr->current)
		fprintf(stderr,
		        "certfleet: revoked %s (sha256 %.16s…); run "
		        "`renew --force` to replace it\n",
		        rc->id, ci->sha256_hex);
	else
		fprintf(stderr,
		        "certfleet: revoked %s (sha256 %.16s…); the "
		        "current certificate %s is not affected\n",
		        rc->id, ci->sha256_hex, cur ? cur : "(none)");
	return 0;
}

int
cli_revoke(struct cf_cli *cli, int argc, char **argv)
{
	struct cf_session s;
	struct cf_certinfo ci;
	struct cf_acme_params p;
	struct cf_revoke_report rr;
	struct revoke_ctx rc;
	cf_err_t err = {0};
	char *cur = NULL, *acct = NULL, *cert = NULL, *want = NULL;
	bool dry = false;
	int ex, reason = 0;
	size_t i;

	memset(&ci, 0, sizeof(ci));
	memset(&rr, 0, sizeof(rr));
	memset(&rc, 0, sizeof(rc));
	memset(&s, 0, sizeof(s));
	ex = revoke_parse(cli, argc, argv, &dry, &want, &reason);
	if (ex >= 0) {
		free(want);
		return ex;
	}
	ex = session_open(cli, "revoke", dry ? 0 : CF_SESS_LOCK, &s);
	if (ex != 0) {
		free(want);
		return ex;
	}
	rc.s = &s;
	rr.reason_code = reason;
	for (i = 0; i < sizeof(revoke_reasons) / sizeof(revoke_reasons[0]); i++)
		if (revoke_reasons[i].code == reason)
			rr.reason = revoke_reasons[i].name;
	if (s.pb->acme.directory == NULL) {
		cf_err_set(&err, CF_ERR_CONFIG,
		           "%s: acme.directory: revoke needs "
		           "an ACME directory URL",
		           s.pb->path);
		goto fail;
	}
	if (revoke_select(&rc, want, &cur, &ci, &cert, &rr, &err) < 0)
		goto fail;
	acct = store_account_key_path(s.st, s.pb->acme.directory);
	if (acct == NULL) {
		cf_err_set(&err, CF_ERR_IO,
		           "cannot create the account key dir");
		goto fail;
	}
	acme_params(&s, acct, &p);
	if (dry) {
		fprintf(stderr,
		        "certfleet: dry run: would revoke %s (sha256 "
		        "%.16s…) reason %d\n",
		        rc.id, ci.sha256_hex, reason);
		if (reason == 1)
			fprintf(stderr,
			        "certfleet: dry run: would wipe its key "
			        "from the store and remove the backups holding "
			        "it from %zu nodes\n",
			        s.pb->n_nodes);
		rr.ca = "dry-run";
		ex = 0;
		goto out;
	}
	if (revoke_at_ca(&rc, &p, cert, cur, &ci, &rr, &err) < 0)
		goto fail;
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
			fprintf(stderr,
			        "certfleet: the fleet still serves the "
			        "revoked certificate %s: run `renew --force` "
			        "to "
			        "replace it\n",
			        rc.id);
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
