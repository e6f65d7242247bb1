/* rollout.c - the per-node pipeline, the worker pool, the canary gate.
 *
 * Invariants this file keeps:
 *  - a node never waits for another node, except at the canary gate;
 *  - nothing is written to a node before its host key and our login are
 *    proven, and before the canary gate lets it through;
 *  - files go live by rename(2) of a complete temp file, never by rewriting
 *    a file in place, so nginx & co. never read a partial or missing file;
 *  - a node that fails after its files were swapped gets its previous files
 *    back (and a reload), so it keeps serving its previous certificate.
 *
 * libssh2 1.10 cannot overwrite with SFTP rename on OpenSSH (no
 * posix-rename), so the swap is done by a small POSIX sh script sent on the
 * exec channel's stdin: `mv -f` is rename(2) within a directory. Every value
 * in that script is single-quoted; the playbook validated paths to a
 * shell-inert charset anyway. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "certfleet/gate.h"
#include "certfleet/haproxy.h"
#include "certfleet/rollout.h"
#include "certfleet/tlsprobe.h"
#include "certfleet/util.h"
#include "scripts.h"

/* Stage script exit codes (also in the script text below). */
#define STAGE_OK 0
#define STAGE_UNSAFE 10
#define STAGE_WRITE 11
#define STAGE_CHECK 12
#define STAGE_RELOAD 13
#define STAGE_NO_MARKER (-2) /* status 0 without "certfleet-ok" */

struct payload {
	const char *data;
	size_t len;
};

struct run {
	const struct cf_playbook *pb;
	const cf_ssh_ctx_t *ssh;
	const struct cf_bundle *bundle;
	const struct cf_certinfo *info;
	const struct cf_rollout_opts *opts;
	struct cf_rollout_result *res;

	struct payload *payloads; /* one per deploy.files entry */
	char *combined;           /* fullchain+key, secret */
	size_t combined_len;
	char **tmp_paths;   /* per file: DIR/.certfleet.BASE.TOKEN.tmp */
	char *stage_script; /* identical for every node; secret */
	size_t stage_script_cap;
	char *rollback_script;
	char *preflight_script; /* dry run: what would fail; no secrets */
	char *audit_script;     /* unchanged nodes: modes/owners; no secrets */

	size_t *queue; /* indices of nodes to process */
	size_t n_queue;

	/* fields below are guarded by mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t next;
	size_t done;
	struct gate_state gate; /* the canary gate's decisions (gate.h) */

	bool trace;
	struct tlsprobe_ctx *tls; /* shared by every probe of the run */
	const char **names;       /* every SNI verify asks for; [0] is
				     verify.server_name */
	size_t n_names;
	struct tlsprobe_cert *want_chain; /* the bundle's intermediates */
	size_t n_want_chain;

	/* rollout_each */
	cf_node_fn each_fn;
	void *each_arg;
};

/* ---- remote scripts ---- */

static int
dirname_of(const char *path, cf_buf_t *out)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL || slash == path)
		return cf_buf_append(out, "/", 1);
	return cf_buf_append(out, path, (size_t)(slash - path));
}

static int
add_var(cf_buf_t *b, const char *name, size_t i, const char *value)
{
	if (cf_buf_printf(b, "%s%zu=", name, i) < 0 ||
	    cf_buf_shquote(b, value) < 0 || cf_buf_append(b, "\n", 1) < 0)
		return -1;
	return 0;
}

/* Length of s single-quoted by cf_buf_shquote. */
static size_t
shquote_len(const char *s, size_t len)
{
	size_t n = 2, i;

	for (i = 0; i < len; i++)
		n += s[i] == '\'' ? 4 : 1;
	return n;
}

/* The webroot a renew writes http-01 files to, "" when it writes none. */
static const char *
http01_webroot(const struct cf_playbook *pb)
{
	if (pb->acme.directory == NULL || pb->deploy.webroot == NULL ||
	    (pb->acme.challenge != NULL &&
	     strcmp(pb->acme.challenge, "http-01") != 0))
		return "";
	return pb->deploy.webroot;
}

/* The scripts build_scripts assembles, while it does. */
struct scripts {
	cf_buf_t stage, rollback, preflight, audit;
};

/* File i's values, in front of each script that needs them: -1 when out
 * of memory. */
static int
add_file_vars(struct run *r, size_t i, const char *token, struct scripts *sc)
{
	const struct cf_file_spec *f = &r->pb->deploy.files[i];
	const char *base = strrchr(f->path, '/') + 1;
	const char *owner = f->owner ? f->owner : "";
	const char *group = f->group ? f->group : "";
	cf_buf_t dir = {0};
	char mode[8], umask_s[8], hex[65];
	unsigned char md[32];
	int rc = -1;

	if (dirname_of(f->path, &dir) < 0)
		goto out;
	if (asprintf(&r->tmp_paths[i], "%s/.certfleet.%s.%s.tmp",
	             strcmp(dir.data, "/") == 0 ? "" : dir.data, base,
	             token) < 0) {
		r->tmp_paths[i] = NULL;
		goto out;
	}
	snprintf(mode, sizeof(mode), "%04o", f->mode);
	/* open(2) creates with 0666 & ~umask: exact for any mode within
	 * 0666; other bits need a chmod (X) */
	snprintf(umask_s, sizeof(umask_s), "%04o", ~f->mode & 0777);
	SHA256((const unsigned char *)r->payloads[i].data, r->payloads[i].len,
	       md);
	cf_hex(md, sizeof(md), hex);
	if (add_var(&sc->stage, "T", i, f->path) < 0 ||
	    add_var(&sc->stage, "D", i, dir.data) < 0 ||
	    add_var(&sc->stage, "B", i, base) < 0 ||
	    add_var(&sc->stage, "N", i, r->tmp_paths[i]) < 0 ||
	    add_var(&sc->stage, "M", i, mode) < 0 ||
	    add_var(&sc->stage, "U", i, umask_s) < 0 ||
	    add_var(&sc->stage, "X", i, (f->mode & ~0666u) ? "1" : "") < 0 ||
	    add_var(&sc->stage, "H", i, hex) < 0 ||
	    add_var(&sc->stage, "O", i, owner) < 0 ||
	    add_var(&sc->stage, "G", i, group) < 0 ||
	    add_var(&sc->stage, "SD", i, f->shared_dir ? "1" : "") < 0 ||
	    add_var(&sc->rollback, "T", i, f->path) < 0 ||
	    add_var(&sc->rollback, "D", i, dir.data) < 0 ||
	    add_var(&sc->rollback, "B", i, base) < 0 ||
	    add_var(&sc->preflight, "SD", i, f->shared_dir ? "1" : "") < 0 ||
	    add_var(&sc->preflight, "T", i, f->path) < 0 ||
	    add_var(&sc->preflight, "D", i, dir.data) < 0 ||
	    cf_buf_printf(&sc->preflight, "SZ%zu=%zu\nOG%zu=%s\n", i,
	                  r->payloads[i].len, i,
	                  f->owner || f->group ? "1" : "") < 0 ||
	    add_var(&sc->audit, "T", i, f->path) < 0 ||
	    add_var(&sc->audit, "M", i, mode) < 0 ||
	    add_var(&sc->audit, "H", i, hex) < 0 ||
	    add_var(&sc->audit, "O", i, owner) < 0 ||
	    add_var(&sc->audit, "G", i, group) < 0)
		goto out;
	rc = 0;
out:
	cf_buf_free(&dir);
	return rc;
}

/* The playbook's commands and the time they get: -1 when out of memory. */
static int
add_command_vars(const struct cf_playbook *pb, struct scripts *sc)
{
	const char *check = pb->deploy.check ? pb->deploy.check : "";
	const char *reload = pb->deploy.reload ? pb->deploy.reload : "";
	/* check and reload together get half the node's deadline: one that
	 * hangs is killed on the node and the old files come back even after
	 * we have given up on the session */
	unsigned limit = pb->ssh.timeout / 2 > 0 ? pb->ssh.timeout / 2 : 1;

	if (cf_buf_append(&sc->stage, "CHECK=", 6) < 0 ||
	    cf_buf_shquote(&sc->stage, check) < 0 ||
	    cf_buf_append(&sc->stage, "\nRELOAD=", 8) < 0 ||
	    cf_buf_shquote(&sc->stage, reload) < 0 ||
	    cf_buf_printf(&sc->stage, "\nLIMIT=%u\n", limit) < 0 ||
	    cf_buf_append(&sc->rollback, "RELOAD=", 7) < 0 ||
	    cf_buf_shquote(&sc->rollback, reload) < 0 ||
	    cf_buf_printf(&sc->rollback, "\nN=%zu\nLIMIT=%u\n",
	                  pb->deploy.n_files, limit) < 0 ||
	    cf_buf_printf(&sc->preflight, "N=%zu\nCHECK=", pb->deploy.n_files) <
	        0 ||
	    cf_buf_shquote(&sc->preflight, check) < 0 ||
	    cf_buf_append(&sc->preflight, "\nRELOAD=", 8) < 0 ||
	    cf_buf_shquote(&sc->preflight, reload) < 0 ||
	    cf_buf_append(&sc->preflight, "\nWEBROOT=", 9) < 0 ||
	    cf_buf_shquote(&sc->preflight, http01_webroot(pb)) < 0 ||
	    cf_buf_append(&sc->preflight, "\n", 1) < 0 ||
	    cf_buf_printf(&sc->audit, "N=%zu\n", pb->deploy.n_files) < 0)
		return -1;
	return 0;
}

/* The files' contents, the stage script's last values, then the call of
 * main: into a buffer sized for them up front, since a realloc would
 * leave a copy of the key behind in freed memory.  -1 when out of
 * memory. */
static int
add_contents(const struct run *r, cf_buf_t *s)
{
	static const char tail[] = "main\n";
	size_t i, n = r->pb->deploy.n_files, secret = 0;

	for (i = 0; i < n; i++)
		secret +=
		    24 + shquote_len(r->payloads[i].data, r->payloads[i].len);
	if (cf_buf_reserve(s, secret + sizeof(tail)) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		char *before = s->data;

		if (cf_buf_printf(s, "C%zu=", i) < 0 ||
		    cf_buf_shquote(s, r->payloads[i].data) < 0 ||
		    cf_buf_append(s, "\n", 1) < 0 || s->data != before)
			return -1;
	}
	return cf_buf_append(s, tail, sizeof(tail) - 1);
}

/* The node scripts of this run: their values in front (each
 * single-quoted), then the script text (src/sh/NAME.sh, embedded); the
 * stage script carries the files' contents and is secret. */
static int
build_scripts(struct run *r, const char *token, cf_err_t *err)
{
	struct scripts sc = {0};
	size_t i, n = r->pb->deploy.n_files;
	int rc = -1;

	r->tmp_paths = calloc(n, sizeof(char *));
	if (r->tmp_paths == NULL ||
	    cf_buf_printf(&sc.stage, "set -u\numask 077\nN=%zu\nTOK=%s\n", n,
	                  token) < 0 ||
	    cf_buf_printf(&sc.rollback, "TOK=%s\n", token) < 0)
		goto nomem;
	for (i = 0; i < n; i++)
		if (add_file_vars(r, i, token, &sc) < 0)
			goto nomem;
	if (add_command_vars(r->pb, &sc) < 0 ||
	    cf_buf_append(&sc.stage, cf_sh_dirsafe, strlen(cf_sh_dirsafe)) <
	        0 ||
	    cf_buf_append(&sc.stage, cf_sh_stage, strlen(cf_sh_stage)) < 0 ||
	    add_contents(r, &sc.stage) < 0 ||
	    cf_buf_append(&sc.rollback, cf_sh_rollback,
	                  strlen(cf_sh_rollback)) < 0 ||
	    cf_buf_append(&sc.preflight, cf_sh_dirsafe, strlen(cf_sh_dirsafe)) <
	        0 ||
	    cf_buf_append(&sc.preflight, cf_sh_preflight,
	                  strlen(cf_sh_preflight)) < 0 ||
	    cf_buf_append(&sc.audit, cf_sh_audit, strlen(cf_sh_audit)) < 0)
		goto nomem;
	r->stage_script = sc.stage.data;
	r->stage_script_cap = sc.stage.cap;
	sc.stage.data = NULL;
	r->rollback_script = sc.rollback.data;
	sc.rollback.data = NULL;
	r->preflight_script = sc.preflight.data;
	sc.preflight.data = NULL;
	r->audit_script = sc.audit.data;
	sc.audit.data = NULL;
	rc = 0;
	goto out;
nomem:
	cf_err_set(err, CF_ERR_NOMEM, "out of memory building node scripts");
out:
	cf_buf_free_secret(&sc.stage);
	cf_buf_free(&sc.rollback);
	cf_buf_free(&sc.preflight);
	cf_buf_free(&sc.audit);
	return rc;
}

static int
build_payloads(struct run *r, cf_err_t *err)
{
	const struct cf_bundle *b = r->bundle;
	size_t i, n = r->pb->deploy.n_files;

	r->payloads = calloc(n, sizeof(*r->payloads));
	if (r->payloads == NULL)
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		const char *p = NULL;

		switch (r->pb->deploy.files[i].content) {
		case CF_CONTENT_CERT: p = b->cert; break;
		case CF_CONTENT_CHAIN: p = b->chain; break;
		case CF_CONTENT_FULLCHAIN: p = b->fullchain; break;
		case CF_CONTENT_PRIVKEY: p = b->privkey; break;
		case CF_CONTENT_COMBINED:
			if (r->combined == NULL) {
				size_t fl = strlen(b->fullchain),
				       kl = strlen(b->privkey);

				r->combined = malloc(fl + kl + 1);
				if (r->combined == NULL)
					return cf_err_set(err, CF_ERR_NOMEM,
					                  "out of memory");
				memcpy(r->combined, b->fullchain, fl);
				memcpy(r->combined + fl, b->privkey, kl + 1);
				r->combined_len = fl + kl;
			}
			p = r->combined;
			break;
		}
		if (p == NULL)
			p = "";
		r->payloads[i].data = p;
		r->payloads[i].len = strlen(p);
	}
	return 0;
}

/* ---- canary gate ---- */

/* The decisions are gate.c's; here they are taken under mu, and every
 * change wakes the nodes waiting at the gate. */

/* A node that ends without reaching the gate is no canary candidate. */
static void
gate_skip(struct run *r, size_t pos, const struct cf_node_result *nr)
{
	pthread_mutex_lock(&r->mu);
	gate_node_skipped(&r->gate, pos, nr->outcome == CF_OUT_UNCHANGED);
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static enum gate
gate_enter(struct run *r, size_t pos)
{
	enum gate g;

	pthread_mutex_lock(&r->mu);
	gate_node_arrived(&r->gate, pos);
	pthread_cond_broadcast(&r->cv);
	while (!gate_node_decide(&r->gate, pos, &g))
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	return g;
}

static void
gate_leave(struct run *r, enum gate g, const struct cf_node_result *nr)
{
	pthread_mutex_lock(&r->mu);
	gate_node_left(&r->gate, g, nr->outcome == CF_OUT_FAILED, nr->err.code,
	               nr->node->name);
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* ---- the pipeline ---- */

/* CERTFLEET_TRACE=1: per-node step timeline on stderr, for profiling a
 * rollout from the outside without a debugger. */
static void
trace(const struct run *r, const struct cf_node *node, int64_t t0,
      const char *step)
{
	if (!r->trace)
		return;
	fprintf(stderr, "trace: %-12s +%5lldms %s\n", node->name,
	        (long long)(cf_now_ms() - t0), step);
}

/* "n3:443 (SNI www.example.test)", "n3:25 (smtp STARTTLS, SNI mail.x)":
 * how every verify message names what it looked at. */
static void
endpoint_label(const struct cf_node *node, const struct cf_endpoint *ep,
               const char *sni, char *buf, size_t len)
{
	if (ep->starttls != STARTTLS_NONE)
		snprintf(buf, len, "%s:%u (%s STARTTLS, SNI %s)", node->name,
		         ep->port, starttls_proto_name(ep->starttls), sni);
	else
		snprintf(buf, len, "%s:%u (SNI %s)", node->name, ep->port, sni);
}

/* One probe of endpoint ep with SNI sni; *res is the caller's to free. */
static int
probe_one(const struct run *r, const struct cf_node *node,
          const struct cf_endpoint *ep, const char *sni, int64_t deadline,
          struct tlsprobe_result *res, cf_err_t *err)
{
	/* The leaf is identified by the SHA-256 of its DER and its expiry
	 * read from what the handshake decoded: never decoded twice (OpenSSL
	 * 3's key decoding is the largest cost in the coordinator's
	 * profile). */
	return tlsprobe_fetch_ctx(r->tls, node->host, ep->port, ep->starttls,
	                          sni, deadline, res, err);
}

/* One probe of the first endpoint under the first name: fills sha (hex)
 * and not_after on success. */
static int
probe(const struct run *r, const struct cf_node *node, int64_t deadline,
      char sha[65], int64_t *not_after, cf_err_t *err)
{
	struct tlsprobe_result res;

	if (probe_one(r, node, &r->pb->verify.endpoints[0], r->names[0],
	              deadline, &res, err) < 0)
		return -1;
	memcpy(sha, res.sha256_hex, 65);
	if (not_after != NULL)
		*not_after = res.not_after;
	tlsprobe_result_free(&res);
	return 0;
}

/* Which reason a pair that does not serve the certificate gets: the first
 * endpoint under the first name is what verify always checked
 * (verify-failed); a further name is verify-name, a further endpoint
 * verify-endpoint. */
static cf_code_t
pair_code(size_t ei, size_t ni)
{
	return ni > 0   ? CF_ERR_VERIFY_NAME
	       : ei > 0 ? CF_ERR_VERIFY_ENDPOINT
	                : CF_ERR_VERIFY;
}

/* Check one endpoint under one name: serves the new leaf (polling until
 * deadline when poll: reloads are asynchronous, old workers may still
 * accept for a moment), with exactly the stored chain, trusted.  The
 * chain and trust checks use what the last handshake decoded.  *cause:
 * the last probe's own error code when no handshake succeeded. */
static int
verify_pair(struct run *r, const struct cf_node *node, size_t ei, size_t ni,
            int64_t deadline, bool poll, struct cf_node_result *nr,
            cf_err_t *err, cf_code_t *cause)
{
	const struct cf_endpoint *ep = &r->pb->verify.endpoints[ei];
	const char *sni = r->names[ni], *want = r->info->sha256_hex;
	/* Each probe is a full TLS handshake (a few ms of coordinator CPU,
	 * the largest per-node cost at fleet scale), and a probe right after
	 * the reload command returns almost always still sees the old
	 * workers: wait a little first, then back off quickly. */
	int64_t pause = 60, t0 = cf_now_ms();
	struct tlsprobe_result res;
	char step[64], label[200], why[256], na[32];
	cf_err_t perr = {0};
	bool have = false, first = ei == 0 && ni == 0;
	unsigned probes = 0;
	int rc = -1;

	memset(&res, 0, sizeof(res));
	endpoint_label(node, ep, sni, label, sizeof(label));
	for (;;) {
		int64_t attempt_deadline;

		if (poll) {
			if (cf_ms_left(deadline) <= pause)
				break;
			usleep((useconds_t)pause * 1000);
			pause = pause * 3 / 2 > 400 ? 400 : pause * 3 / 2;
		}
		attempt_deadline = cf_now_ms() + 3000;
		if (attempt_deadline > deadline || !poll)
			attempt_deadline = deadline;
		probes++;
		tlsprobe_result_free(&res);
		have = probe_one(r, node, ep, sni, attempt_deadline, &res,
		                 &perr) == 0;
		if (have && first) {
			memcpy(nr->after_sha256, res.sha256_hex, 65);
			nr->after_not_after = res.not_after;
		}
		if ((have && strcmp(res.sha256_hex, want) == 0) || !poll)
			break;
	}
	*cause = have ? CF_OK : perr.code;
	if (!have) {
		/* the first endpoint's own failure keeps its cause (timeout,
		 * refused, tls) for `verify`/`check`, as before */
		if (first && !poll)
			*err = perr;
		else if (first)
			cf_err_set(err, CF_ERR_VERIFY, "verify failed: %s",
			           perr.msg);
		else
			cf_err_set(err, pair_code(ei, ni), "%s: %s", label,
			           perr.msg);
		goto out;
	}
	if (strcmp(res.sha256_hex, want) != 0) {
		if (first && poll)
			cf_err_set(err, CF_ERR_VERIFY,
			           "%s:%u still serves %.16s…, not the new "
			           "certificate %.16s… after %us",
			           node->host, ep->port, res.sha256_hex, want,
			           r->pb->verify.timeout);
		else if (first)
			cf_err_set(
			    err, CF_ERR_VERIFY,
			    "serves %.16s… (expires %s), not the current "
			    "certificate %.16s…",
			    res.sha256_hex,
			    (cf_fmt_time(res.not_after, na, sizeof(na)), na),
			    want);
		else
			cf_err_set(err, pair_code(ei, ni),
			           "%s serves %.16s… (expires %s), not the %s "
			           "certificate %.16s…",
			           label, res.sha256_hex,
			           (cf_fmt_time(res.not_after, na, sizeof(na)),
			            na),
			           poll ? "new" : "current", want);
		goto out;
	}
	if (tlsprobe_chain_diff(res.chain, res.n_chain, r->want_chain,
	                        r->n_want_chain, why, sizeof(why)) < 0) {
		cf_err_set(err, CF_ERR_VERIFY_CHAIN, "%s %s", label, why);
		goto out;
	}
	if (!res.trusted) {
		cf_err_set(err, CF_ERR_VERIFY_TRUST, "%s: %s", label,
		           res.untrusted_why);
		goto out;
	}
	snprintf(step, sizeof(step), "verified :%u %.24s by probe %u", ep->port,
	         sni, probes);
	trace(r, node, t0, step);
	rc = 0;
out:
	tlsprobe_result_free(&res);
	return rc;
}

/* Every endpoint under every name, the first failure wins.  poll: after a
 * deploy, wait (until deadline) for each to serve the new leaf; the first
 * pair absorbs the reload's delay, the others are one handshake each. */
static int
verify_all(struct run *r, const struct cf_node *node, int64_t deadline,
           bool poll, struct cf_node_result *nr, cf_err_t *err)
{
	size_t n = r->pb->verify.n_endpoints * r->n_names;
	cf_code_t cause = CF_OK;
	int rc = 0;

	free(nr->checks);
	nr->n_checks = 0;
	if ((nr->checks = calloc(n, sizeof(*nr->checks))) == NULL)
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	for (size_t ei = 0; ei < r->pb->verify.n_endpoints; ei++)
		for (size_t ni = 0; ni < r->n_names; ni++) {
			struct cf_endpoint_check *c =
			    &nr->checks[nr->n_checks++];
			int64_t dl = deadline;

			c->port = r->pb->verify.endpoints[ei].port;
			c->starttls = r->pb->verify.endpoints[ei].starttls;
			c->sni = r->names[ni];
			/* a read-only check gives each handshake the
			 * connect timeout, as the first probe always had */
			if (!poll)
				dl = cf_now_ms() +
				     (int64_t)r->pb->ssh.connect_timeout * 1000;
			c->ok = verify_pair(r, node, ei, ni, dl, poll, nr,
			                    &c->err, &cause) == 0;
			if (c->ok)
				continue;
			/* the first failure is the node's; after a deploy it
			 * ends the check (the node is rolled back), a
			 * read-only check reports every pair */
			if (rc == 0)
				*err = c->err;
			rc = -1;
			/* a node that does not answer in time would cost a
			 * deadline per pair: one is enough to say so */
			if (poll || cause == CF_ERR_TIMEOUT ||
			    cause == CF_ERR_UNREACHABLE)
				return -1;
		}
	return rc;
}

/* Poll until the node serves the new leaf everywhere or the deadline
 * passes. */
static int
verify_loop(struct run *r, const struct cf_node *node, int64_t deadline,
            struct cf_node_result *nr, cf_err_t *err)
{
	return verify_all(r, node, deadline, true, nr, err);
}

static void
last_line(const char *out, char *buf, size_t len)
{
	const char *end, *start;

	buf[0] = '\0';
	if (out == NULL)
		return;
	end = out + strlen(out);
	while (end > out && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	start = end;
	while (start > out && start[-1] != '\n')
		start--;
	snprintf(buf, len, "%.*s", (int)(end - start), start);
}

/* out has `marker` as a whole line.  Exit status 0 alone proves nothing:
 * libssh2 reports 0 when no exit-status message came back, and a forced
 * command (authorized_keys command=, ForceCommand) exits 0 without ever
 * running our script. */
bool
rollout_has_marker(const char *out, const char *marker)
{
	size_t ml = strlen(marker);

	for (const char *p = out; p != NULL && (p = strstr(p, marker)) != NULL;
	     p += ml)
		if ((p == out || p[-1] == '\n') &&
		    (p[ml] == '\n' || p[ml] == '\r' || p[ml] == '\0'))
			return true;
	return false;
}

/* Lines of stage output that are not our markers, joined, for messages. */
static void
summarize_output(const char *out, char *buf, size_t len)
{
	const char *p = out, *nl;
	size_t used = 0;

	buf[0] = '\0';
	if (out == NULL)
		return;
	while (*p && used + 1 < len) {
		nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		if (l > 0 && strncmp(p, "certfleet-", 10) != 0 &&
		    strncmp(p, "certfleet: ", 11) != 0) {
			int w = snprintf(buf + used, len - used, "%s%.*s",
			                 used ? " | " : "", (int)l, p);
			if (w < 0)
				break;
			used += (size_t)w;
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	if (used >= len)
		buf[len - 1] = '\0';
}

static int
stage(struct run *r, cf_ssh_t *s, const struct cf_node *node,
      struct cf_node_result *nr, cf_buf_t *prev_idx, cf_err_t *err)
{
	const struct cf_playbook *pb = r->pb;
	char *out = NULL;
	int status = -1, rc = -1;
	char why[CF_ERR_MSG_MAX], detail[300];
	bool restored;

	/* the script writes the files: from here on the node may have
	 * changed until the script says otherwise */
	nr->touched = true;
	if (ssh_exec(s, "sh -s", r->stage_script, strlen(r->stage_script),
	             &status, &out, err) < 0)
		/* Transport failed mid-script: the script restores on its own
		 * failures, and the next run removes its temp files. */
		goto out;
	/* collect "certfleet-prev I" markers */
	for (const char *p = out; p && (p = strstr(p, "certfleet-prev "));
	     p++) {
		unsigned long idx = strtoul(p + 15, NULL, 10);
		cf_buf_printf(prev_idx, " %lu", idx);
	}
	last_line(out, why, sizeof(why));
	/* the script's own lines carry our prefix; the report adds it once */
	if (strncmp(why, "certfleet: ", 11) == 0)
		memmove(why, why + 11, strlen(why + 11) + 1);
	summarize_output(out, detail, sizeof(detail));
	restored = out != NULL && strstr(out, "certfleet-restored\n") != NULL;
	if (status == STAGE_OK && !rollout_has_marker(out, "certfleet-ok"))
		status = STAGE_NO_MARKER;
	switch (status) {
	case STAGE_OK: rc = 0; break;
	case STAGE_NO_MARKER:
		cf_err_set(err, CF_ERR_WRITE,
		           "stage script on %s ended with "
		           "status 0 but without its completion marker: the "
		           "node "
		           "did not run it to the end (a forced command?): %s",
		           node->name, detail[0] ? detail : "(no output)");
		break;
	case STAGE_UNSAFE:
		nr->touched = false;
		cf_err_set(err, CF_ERR_UNSAFE_PATH, "%s", why);
		break;
	case STAGE_WRITE:
		/* a failure before any swap (temp file, backup) changed no
		 * target: the script removed its temp files, restored nothing */
		nr->rolled_back = restored;
		nr->touched = restored;
		cf_err_set(err, CF_ERR_WRITE, "%s", why);
		break;
	case STAGE_CHECK:
		nr->rolled_back = restored;
		cf_err_set(err, CF_ERR_CHECK, "check `%s` failed, %s: %s",
		           pb->deploy.check,
		           restored ? "previous files restored"
		                    : "no file had changed",
		           detail);
		break;
	case STAGE_RELOAD:
		nr->rolled_back = restored;
		cf_err_set(err, CF_ERR_RELOAD, "reload `%s` failed, %s: %s",
		           pb->deploy.reload,
		           restored ? "previous files restored"
		                    : "no file had changed",
		           detail);
		break;
	default:
		cf_err_set(err, CF_ERR_WRITE,
		           "stage script exited %d on %s: %s", status,
		           node->name, detail[0] ? detail : why);
		break;
	}
out:
	free(out);
	return rc;
}

/* Dry run: what would fail on this node, from the preflight script.
 * Nothing is written (nr->touched stays false); problems become the node's
 * error, all of them, joined; notes (e.g. backups by copy) go to nr->note. */
static int
preflight(struct run *r, cf_ssh_t *s, struct cf_node_result *nr, cf_err_t *err)
{
	char *out = NULL;
	int status = -1, rc = -1;
	cf_buf_t probs = {0}, notes = {0};
	const char *p, *nl;
	cf_code_t code;

	if (ssh_exec(s, "sh -s", r->preflight_script,
	             strlen(r->preflight_script), &status, &out, err) < 0)
		goto out;
	for (p = out; p != NULL && *p; p = nl ? nl + 1 : NULL) {
		nl = strchr(p, '\n');
		int l = (int)(nl ? (size_t)(nl - p) : strlen(p));

		if (strncmp(p, "certfleet: ", 11) == 0)
			cf_buf_printf(&probs, "%s%.*s", probs.len ? "; " : "",
			              l - 11, p + 11);
		else if (strncmp(p, "certfleet-note: ", 16) == 0)
			cf_buf_printf(&notes, "%s%.*s", notes.len ? "; " : "",
			              l - 16, p + 16);
	}
	if (notes.len > 0) {
		cf_err_t tmp = {0};

		/* through the sanitizer: this text comes from the node */
		cf_err_set(&tmp, CF_OK, "%s", notes.data);
		memcpy(nr->note, tmp.msg, sizeof(nr->note));
	}
	if (status == 0 && probs.len == 0) {
		rc = 0;
		goto out;
	}
	if (out == NULL || strstr(out, "certfleet-preflight-done") == NULL) {
		char last[300];

		last_line(out, last, sizeof(last));
		cf_err_set(err, CF_ERR_WRITE, "preflight script exited %d: %s",
		           status, last);
		goto out;
	}
	code = status == STAGE_UNSAFE   ? CF_ERR_UNSAFE_PATH
	       : status == STAGE_CHECK  ? CF_ERR_CHECK
	       : status == STAGE_RELOAD ? CF_ERR_RELOAD
	                                : CF_ERR_WRITE;
	cf_err_set(err, code, "preflight: %s",
	           probs.data ? probs.data : "failed");
out:
	cf_buf_free(&probs);
	cf_buf_free(&notes);
	free(out);
	return rc;
}

/* HAProxy hitless mode (deploy.haproxy_api): after the stage script
 * swapped the files and ran the check (its RELOAD is empty in this mode),
 * the new combined PEM goes to HAProxy's runtime API in the reload's
 * place.  A no-op in every other mode. */
static int
api_push(struct run *r, cf_ssh_t *s, bool *committed, cf_err_t *err)
{
	const struct cf_playbook *pb = r->pb;
	size_t f = pb->deploy.haproxy_api.file;

	if (pb->deploy.haproxy_api.port == 0)
		return 0;
	ssh_set_deadline(s, cf_now_ms() + (int64_t)pb->ssh.timeout * 1000);
	return haproxy_cert_update(s, pb->deploy.haproxy_api.port,
	                           pb->deploy.haproxy_api.cert,
	                           r->payloads[f].data, r->payloads[f].len,
	                           r->info->serial_hex, committed, err);
}

/* After the rollback script: when HAProxy took the new certificate
 * through its runtime API (the commit was sent), it serves that from
 * memory until told otherwise, so the previous one is pushed back too.
 * Its bytes are the restored file's, read back over the same session
 * (SFTP, into one wiped buffer): the coordinator need not have them (the
 * node may have served a certificate certfleet never stored), and they
 * never appear in the rollback script's output, an argv or a log.
 * Nothing to do when the file had no backup (it already held the new
 * bytes before this run: disk and memory agree). */
static bool
api_push_back(struct run *r, cf_ssh_t *s, const char *prev_idx,
              struct cf_node_result *nr)
{
	const struct cf_playbook *pb = r->pb;
	cf_err_t e = {0};
	char first[CF_ERR_MSG_MAX];
	bool backed_up = false;

	for (const char *p = prev_idx; *p != '\0';) {
		char *end;
		unsigned long i = strtoul(p, &end, 10);

		if (end == p)
			break;
		backed_up |= i == pb->deploy.haproxy_api.file;
		p = end;
	}
	if (!backed_up)
		return true;
	if (haproxy_cert_reload_file(s, pb->deploy.haproxy_api.port,
	                             pb->deploy.haproxy_api.cert, &e) == 0)
		return true;
	/* the first cause stays first */
	memcpy(first, nr->err.msg, sizeof(first));
	cf_err_set(&nr->err, nr->err.code,
	           "%s; files restored, but the "
	           "previous certificate could not be pushed back: %s",
	           first, e.msg);
	return false;
}

/* A word of the audit script's output (a mode, a user or group name): the
 * node's text reaches a report only when it looks like one. */
static void
audit_word(const char *w, char *buf, size_t cap)
{
	size_t i, n = strlen(w);

	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)w[i]) &&
		    strchr("._-", w[i]) == NULL)
			break;
	if (n == 0 || i < n || n >= cap)
		snprintf(buf, cap, "?");
	else
		memcpy(buf, w, n + 1);
}

/* A node that already serves the current certificate: do its files hold
 * what the playbook says (bytes, mode, owner)?  The audit script fixes a
 * mode or owner that drifted; what it fixed goes to nr->fixed, what it
 * could not to nr->drift.  Returns 1 when some file's bytes differ from
 * the store's (the caller stages, on the same session), 0 when they hold,
 * -1 with err set when the script could not tell. */
static int
audit(struct run *r, cf_ssh_t *s, struct cf_node_result *nr, cf_err_t *err)
{
	const struct cf_playbook *pb = r->pb;
	char *out = NULL;
	int status = -1, rc = -1;
	const char *p, *nl;

	if (ssh_exec(s, "sh -s", r->audit_script, strlen(r->audit_script),
	             &status, &out, err) < 0)
		goto out;
	if (status != 0 || !rollout_has_marker(out, "certfleet-audited")) {
		char last[200];

		last_line(out, last, sizeof(last));
		cf_err_set(err, CF_ERR_WRITE,
		           "audit script exited %d without "
		           "its completion marker: %s",
		           status, last);
		goto out;
	}
	if (rollout_has_marker(out, "certfleet-stale")) {
		rc = 1;
		goto out;
	}
	for (p = out; p != NULL && *p; p = nl ? nl + 1 : NULL) {
		char line[200], what[16], old[40], want[40], item[400];
		char *w, *o, *n, *end;
		bool fixed;
		unsigned long idx;

		nl = strchr(p, '\n');
		snprintf(line, sizeof(line), "%.*s",
		         (int)(nl ? (size_t)(nl - p) : strlen(p)), p);
		if (strncmp(line, "certfleet-fixed ", 16) == 0)
			fixed = true;
		else if (strncmp(line, "certfleet-unfixed ", 18) == 0)
			fixed = false;
		else
			continue;
		w = line + (fixed ? 16 : 18);
		idx = strtoul(w, &end, 10);
		if (end == w || *end != ' ' || idx >= pb->deploy.n_files)
			continue;
		w = end + 1;
		if ((o = strchr(w, ' ')) == NULL)
			continue;
		*o++ = '\0';
		if ((n = strchr(o, ' ')) == NULL)
			continue;
		*n++ = '\0';
		audit_word(w, what, sizeof(what));
		audit_word(o, old, sizeof(old));
		audit_word(n, want, sizeof(want));
		if (fixed) {
			snprintf(item, sizeof(item), "%s %s %s→%s",
			         pb->deploy.files[idx].path, what, old, want);
			cf_strjoin(nr->fixed, sizeof(nr->fixed), "; ", item);
		} else {
			snprintf(item, sizeof(item),
			         "%s %s %s, not %s (cannot "
			         "fix: %s)",
			         pb->deploy.files[idx].path, what, old, want,
			         strcmp(what, "mode") == 0
			             ? "chmod refused"
			             : "chown needs a root login");
			cf_strjoin(nr->drift, sizeof(nr->drift), "; ", item);
		}
	}
	nr->audited = true;
	nr->touched = nr->fixed[0] != '\0';
	rc = 0;
out:
	free(out);
	return rc;
}

static void
rollback_node(struct run *r, cf_ssh_t *s, const char *prev_idx,
              bool api_committed, struct cf_node_result *nr)
{
	cf_buf_t cmd = {0};
	char *out = NULL;
	int status = -1;
	cf_err_t e = {0};

	if (cf_buf_printf(&cmd, "sh -s --%s", prev_idx) < 0)
		goto out;
	/* deadline: whatever the session has left, but at least a few
	 * seconds so a slow verify cannot leave the node on a bad cert */
	ssh_set_deadline(s, cf_now_ms() + (int64_t)r->pb->ssh.timeout * 1000);
	if (ssh_exec(s, cmd.data, r->rollback_script,
	             strlen(r->rollback_script), &status, &out, &e) == 0 &&
	    status == 0 && rollout_has_marker(out, "certfleet-rolled-back"))
		nr->rolled_back =
		    !api_committed || api_push_back(r, s, prev_idx, nr);
out:
	free(out);
	cf_buf_free(&cmd);
}

bool
rollout_is_key_file(const struct cf_file_spec *f)
{
	return f->content == CF_CONTENT_PRIVKEY ||
	       f->content == CF_CONTENT_COMBINED;
}

char *
rollout_backup_path(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *bak;

	/* the stage script's "$d/.$b.certfleet-prev" (paths are absolute) */
	if (slash == NULL || asprintf(&bak, "%.*s/.%s.certfleet-prev",
	                              (int)(slash - path), path, slash + 1) < 0)
		return NULL;
	return bak;
}

/* deploy.keep_previous false: once the node is verified on the new
 * certificate, the backups of its old key files (.NAME.certfleet-prev, made
 * by the stage script for its own restore) go, so an old key does not
 * outlive its deployment on the node.  A separate small command after
 * verify: never part of the stage script, and a failure here leaves a
 * backup, never a broken node, so it does not fail the node. */
static void
drop_key_backups(struct run *r, cf_ssh_t *s, const struct cf_node *node,
                 int64_t t0)
{
	const struct cf_playbook *pb = r->pb;
	cf_buf_t cmd = {0};
	cf_err_t e = {0};
	int status = -1;
	size_t i, n = 0;

	if (cf_buf_printf(&cmd, "rm -f --") < 0)
		goto out;
	for (i = 0; i < pb->deploy.n_files; i++) {
		const struct cf_file_spec *f = &pb->deploy.files[i];
		char *bak;
		int ok;

		if (!rollout_is_key_file(f))
			continue;
		if ((bak = rollout_backup_path(f->path)) == NULL)
			goto out;
		ok = cf_buf_printf(&cmd, " ") == 0 &&
		     cf_buf_shquote(&cmd, bak) == 0;
		free(bak);
		if (!ok)
			goto out;
		n++;
	}
	if (n == 0)
		goto out;
	ssh_set_deadline(s, cf_now_ms() + (int64_t)pb->ssh.timeout * 1000);
	if (ssh_exec(s, cmd.data, NULL, 0, &status, NULL, &e) < 0 ||
	    status != 0)
		trace(r, node, t0, "could not remove key backups");
	else
		trace(r, node, t0, "key backups removed");
out:
	cf_buf_free(&cmd);
}

static const char *
report_outcome_name_local(cf_outcome_t o)
{
	return o == CF_OUT_DEPLOYED ? "done: deployed"
	       : o == CF_OUT_FAILED ? "done: failed"
	                            : "done";
}

/* 1. What does the node serve now?  0: go on over SSH (*current when it
 * already serves the run's certificate: its files are audited, not
 * staged); 1: the node is done, nr->outcome set. */
static int
what_it_serves(struct run *r, const struct cf_node *node, int64_t deadline,
               struct cf_node_result *nr, bool *current)
{
	const struct cf_rollout_opts *o = r->opts;
	cf_err_t perr = {0};
	char sha[65] = "";
	int64_t nat = 0;

	if (o->force)
		return 0;
	if (probe(r, node, deadline, sha, &nat, &perr) == 0) {
		memcpy(nr->before_sha256, sha, 65);
		memcpy(nr->after_sha256, sha, 65);
		nr->after_not_after = nat;
		if (strcmp(sha, r->info->sha256_hex) != 0)
			return 0;
		nr->outcome = CF_OUT_UNCHANGED;
		if (o->dry_run || r->audit_script == NULL)
			return 1;
		*current = true;
		return 0;
	}
	if (perr.code == CF_ERR_TIMEOUT) {
		/* A node whose TLS port does not answer in time can never be
		 * verified; trying SSH too would double the wait on a
		 * blackholed host. */
		nr->err = perr;
		nr->outcome = CF_OUT_FAILED;
		return 1;
	}
	return 0;
}

/* A node that already serves the certificate, its files audited over
 * session s (NULL: no login, noted): what clients see is checked as after
 * a deploy, every endpoint and name.  A failure there is the node's own
 * configuration (nothing was changed: nothing to roll back).  Returns 1
 * when the node is done, 0 when its files on disk are stale and it must
 * be staged after all. */
static int
serving_node(struct run *r, cf_ssh_t *s, const cf_err_t *conn_err,
             struct cf_node_result *nr, int64_t t0)
{
	const struct cf_node *node = nr->node;
	cf_err_t e = {0};
	int a = -1;

	if (s != NULL) {
		ssh_set_deadline(s, cf_now_ms() +
		                        (int64_t)r->pb->ssh.timeout * 1000);
		a = audit(r, s, nr, &e);
		trace(r, node, t0, a == 0 ? "audited" : "audit: stale files");
		if (a > 0)
			return 0; /* served bytes are right, files on disk not */
	} else {
		e = *conn_err;
	}
	if (a < 0)
		snprintf(nr->note, sizeof(nr->note),
		         "files not audited: %.400s", e.msg);
	if (verify_all(r, node,
	               cf_now_ms() + (int64_t)r->pb->verify.timeout * 1000,
	               false, nr, &nr->err) < 0)
		nr->outcome = CF_OUT_FAILED;
	return 1;
}

/* 4-5. Stage (upload, swap, check, reload; restore on failure), push
 * through HAProxy's runtime API when configured, verify from outside as
 * a client would; roll back on failure. */
static void
deploy_node(struct run *r, cf_ssh_t *s, struct cf_node_result *nr, int64_t t0)
{
	const struct cf_playbook *pb = r->pb;
	const struct cf_node *node = nr->node;
	cf_buf_t prev_idx = {0};
	bool api_committed = false;
	cf_err_t perr = {0};
	char sha[65] = "";
	int64_t nat = 0, vdl;

	if (stage(r, s, node, nr, &prev_idx, &nr->err) < 0) {
		nr->outcome = CF_OUT_FAILED;
		goto out;
	}
	trace(r, node, t0, "staged (uploaded, swapped, checked, reloaded)");
	vdl = cf_now_ms() + (int64_t)pb->verify.timeout * 1000;
	if (api_push(r, s, &api_committed, &nr->err) == 0 &&
	    verify_loop(r, node, vdl, nr, &nr->err) == 0) {
		nr->outcome = CF_OUT_DEPLOYED;
		nr->audited = true; /* written with the playbook's mode */
		if (!pb->deploy.keep_previous)
			drop_key_backups(r, s, node, t0);
		goto out;
	}
	rollback_node(r, s, prev_idx.data ? prev_idx.data : "", api_committed,
	              nr);
	/* record what it serves after the rollback, best effort */
	if (probe(r, node, cf_now_ms() + 2000, sha, &nat, &perr) == 0) {
		memcpy(nr->after_sha256, sha, 65);
		nr->after_not_after = nat;
	}
	nr->outcome = CF_OUT_FAILED;
out:
	cf_buf_free(&prev_idx);
}

static void
node_pipeline(struct run *r, size_t pos)
{
	size_t idx = r->queue[pos];
	const struct cf_playbook *pb = r->pb;
	const struct cf_rollout_opts *o = r->opts;
	struct cf_node_result *nr = &r->res->nodes[idx];
	const struct cf_node *node = nr->node;
	int64_t t0 = cf_now_ms();
	int64_t conn_deadline = t0 + (int64_t)pb->ssh.connect_timeout * 1000;
	cf_ssh_t *s = NULL;
	cf_err_t cerr = {0};
	enum gate g = GATE_GO;
	bool gated = false, current = false;

	/* `verify`/`check`: every endpoint under every name, read-only */
	if (o->verify_only) {
		nr->outcome =
		    verify_all(r, node, conn_deadline, false, nr, &nr->err) == 0
		        ? CF_OUT_VERIFIED
		        : CF_OUT_FAILED;
		memcpy(nr->before_sha256, nr->after_sha256, 65);
		goto done;
	}
	if (what_it_serves(r, node, conn_deadline, nr, &current) != 0)
		goto done;
	trace(r, node, t0, "probed");
	/* 2. connect, host key, auth */
	if (ssh_connect(r->ssh, node->host, node->port, node->user,
	                conn_deadline,
	                cf_now_ms() + (int64_t)pb->ssh.timeout * 1000, &s,
	                current ? &cerr : &nr->err) < 0) {
		/* serving the certificate, it has not failed: only unaudited */
		if (current)
			serving_node(r, NULL, &cerr, nr, t0);
		else
			nr->outcome = CF_OUT_FAILED;
		goto done;
	}
	trace(r, node, t0, "ssh connected+authenticated");
	if (current && serving_node(r, s, NULL, nr, t0) != 0)
		goto done;
	if (o->dry_run) {
		/* read-only checks of what the real run would need */
		ssh_set_deadline(s,
		                 cf_now_ms() + (int64_t)pb->ssh.timeout * 1000);
		nr->outcome = preflight(r, s, nr, &nr->err) == 0
		                  ? CF_OUT_DRYRUN
		                  : CF_OUT_FAILED;
		goto done;
	}
	/* 3. canary gate: nothing is written before it */
	if (r->each_fn == NULL) {
		g = gate_enter(r, pos);
		gated = true;
		if (g == GATE_STOPPED) {
			nr->outcome = CF_OUT_STOPPED;
			goto done;
		}
		nr->canary = g == GATE_CANARY;
	}
	trace(r, node, t0, "through gate");
	ssh_set_deadline(s, cf_now_ms() + (int64_t)pb->ssh.timeout * 1000);
	if (r->each_fn != NULL)
		nr->outcome = r->each_fn(r->each_arg, node, s, &nr->err) < 0
		                  ? CF_OUT_FAILED
		                  : CF_OUT_DEPLOYED;
	else
		deploy_node(r, s, nr, t0);
done:
	trace(r, node, t0, report_outcome_name_local(nr->outcome));
	nr->duration_ms = cf_now_ms() - t0;
	/* Reported before the gate hears of it: a canary's failure must be
	 * told before the lines of the nodes it stopped. */
	pthread_mutex_lock(&r->mu);
	r->done++;
	if (o->progress != NULL)
		o->progress(o->progress_arg, nr, r->done, r->n_queue);
	pthread_mutex_unlock(&r->mu);
	if (gated && g != GATE_STOPPED)
		gate_leave(r, g, nr);
	else if (!gated)
		gate_skip(r, pos, nr);
	ssh_close(s);
}

static void *
worker(void *arg)
{
	struct run *r = arg;
	size_t pos;

	for (;;) {
		pthread_mutex_lock(&r->mu);
		if (r->next >= r->n_queue) {
			pthread_mutex_unlock(&r->mu);
			break;
		}
		pos = r->next++;
		pthread_mutex_unlock(&r->mu);

		node_pipeline(r, pos);
	}
	return NULL;
}

void
rollout_result_free(struct cf_rollout_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; r->nodes != NULL && i < r->n; i++)
		free(r->nodes[i].checks);
	free(r->nodes);
	memset(r, 0, sizeof(*r));
}

static bool
selected(const struct cf_rollout_opts *o, const char *name)
{
	if (o->only != NULL && !cf_strv_has(o->only, name))
		return false;
	if (cf_strv_has(o->exclude, name) || cf_strv_has(o->skip, name))
		return false;
	return true;
}

static int
run_all(struct run *r, cf_err_t *err)
{
	const struct cf_playbook *pb = r->pb;
	struct cf_rollout_result *res = r->res;
	pthread_t *th = NULL;
	size_t i, nthreads, started = 0, n_fresh = 0;
	int64_t t0 = cf_now_ms();
	bool serving = false;
	int rc = -1;

	res->nodes = calloc(pb->n_nodes, sizeof(*res->nodes));
	r->queue = calloc(pb->n_nodes, sizeof(*r->queue));
	if (res->nodes == NULL || r->queue == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	res->n = pb->n_nodes;
	/* nodes an earlier run quarantined go last: never the canary while
	 * another node is left, and still retried once the canaries passed */
	for (int pass = 0; pass < 2; pass++) {
		for (i = 0; i < pb->n_nodes; i++) {
			const char *name = pb->nodes[i].name;

			res->nodes[i].node = &pb->nodes[i];
			if (!selected(r->opts, name)) {
				res->nodes[i].outcome = CF_OUT_SKIPPED;
				continue;
			}
			if (cf_strv_has(r->opts->suspect, name) == (pass == 1))
				r->queue[r->n_queue++] = i;
		}
		if (pass == 0)
			n_fresh = r->n_queue;
	}
	if (gate_init(&r->gate, r->n_queue, n_fresh,
	              (r->opts->no_canary || r->opts->dry_run ||
	               r->opts->verify_only || r->each_fn != NULL)
	                  ? 0
	                  : pb->rollout.canary,
	              pb->rollout.canary_failures,
	              pb->rollout.max_failures) < 0) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}

	nthreads = pb->rollout.concurrency;
	if (nthreads > r->n_queue)
		nthreads = r->n_queue;
	th = calloc(nthreads ? nthreads : 1, sizeof(*th));
	if (th == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < nthreads; i++) {
		pthread_attr_t attr;

		/* workers need little stack; 500 nodes x 8 MiB default
		 * reservations would dominate RSS accounting */
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 256 * 1024);
		if (pthread_create(&th[i], &attr, worker, r) != 0) {
			pthread_attr_destroy(&attr);
			break;
		}
		pthread_attr_destroy(&attr);
		started++;
	}
	if (started == 0 && nthreads > 0) {
		cf_err_set(err, CF_ERR_INTERNAL, "cannot start worker threads");
		goto out;
	}
	for (i = 0; i < started; i++)
		pthread_join(th[i], NULL);

	/* Canaries failed and no node could say whether the certificate and
	 * recipe work elsewhere (a one-node fleet, the rest unreachable):
	 * nothing proves the failures were the nodes' own, so this is the
	 * stop a lone failed canary always was. */
	for (i = 0; i < res->n; i++) {
		serving |= res->nodes[i].outcome == CF_OUT_UNCHANGED;
		switch (res->nodes[i].outcome) {
		case CF_OUT_DEPLOYED: res->n_deployed++; break;
		case CF_OUT_UNCHANGED:
		case CF_OUT_VERIFIED: res->n_unchanged++; break;
		case CF_OUT_FAILED: res->n_failed++; break;
		case CF_OUT_SKIPPED: res->n_skipped++; break;
		case CF_OUT_STOPPED: res->n_stopped++; break;
		case CF_OUT_DRYRUN: res->n_dryrun++; break;
		}
	}
	gate_run_end(&r->gate, serving, res->n_stopped > 0);
	res->stopped = r->gate.stopped;
	memcpy(res->stop_reason, r->gate.stop_reason, sizeof(res->stop_reason));
	res->n_canary_failed = r->gate.canary_failed;
	memcpy(res->canary_failed, r->gate.canary_failed_names,
	       sizeof(res->canary_failed));
	res->duration_ms = cf_now_ms() - t0;
	rc = 0;
out:
	free(th);
	free(r->queue);
	gate_free(&r->gate);
	if (rc < 0) {
		free(res->nodes);
		memset(res, 0, sizeof(*res));
	}
	return rc;
}

static void
run_free(struct run *r)
{
	size_t i;

	if (r->tmp_paths != NULL)
		for (i = 0; i < r->pb->deploy.n_files; i++)
			free(r->tmp_paths[i]);
	free(r->tmp_paths);
	free(r->payloads);
	cf_free_secret(r->combined, r->combined_len);
	cf_free_secret(r->stage_script, r->stage_script_cap);
	free(r->rollback_script);
	free(r->preflight_script);
	free(r->audit_script);
	tlsprobe_ctx_free(r->tls);
	free(r->names);
	free(r->want_chain);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
}

/* What every run starts from; run_free undoes it. */
static void
run_init(struct run *r, const struct cf_playbook *pb, const cf_ssh_ctx_t *ssh,
         const struct cf_rollout_opts *opts, struct cf_rollout_result *res)
{
	memset(r, 0, sizeof(*r));
	memset(res, 0, sizeof(*res));
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->pb = pb;
	r->ssh = ssh;
	r->opts = opts;
	r->res = res;
}

int
rollout_run(const struct cf_playbook *pb, const cf_ssh_ctx_t *ssh,
            const struct cf_bundle *bundle, const struct cf_certinfo *info,
            const struct cf_rollout_opts *opts, struct cf_rollout_result *out,
            cf_err_t *err)
{
	struct run r;
	struct cf_rollout_result res;
	unsigned char rnd[6];
	char token[13];
	int rc = -1;

	run_init(&r, pb, ssh, opts, &res);
	r.bundle = bundle;
	r.info = info;
	r.trace = getenv("CERTFLEET_TRACE") != NULL;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		cf_err_set(err, CF_ERR_INTERNAL,
		           "no randomness for temp names");
		goto out;
	}
	cf_hex(rnd, sizeof(rnd), token);
	if (tlsprobe_ctx_new(pb->verify.ca_bundle, &r.tls, err) < 0 ||
	    playbook_verify_names(pb, &r.names, &r.n_names, err) < 0 ||
	    tlsprobe_pem_certs(bundle->chain, &r.want_chain, &r.n_want_chain,
	                       err) < 0)
		goto out;
	/* verify/check only probe: no key-bearing script is ever built
	 * (their bundle holds no key: store_get_current_cert) */
	if (!opts->verify_only &&
	    (build_payloads(&r, err) < 0 || build_scripts(&r, token, err) < 0))
		goto out;
	if (run_all(&r, err) < 0)
		goto out;
	res.dry_run = opts->dry_run;
	*out = res;
	rc = 0;
out:
	run_free(&r);
	return rc;
}

int
rollout_each(const struct cf_playbook *pb, const cf_ssh_ctx_t *ssh,
             const struct cf_rollout_opts *opts, cf_node_fn fn, void *arg,
             struct cf_rollout_result *out, cf_err_t *err)
{
	struct run r;
	struct cf_rollout_result res;
	struct cf_rollout_opts o = *opts;
	int rc;

	/* no probe: the pipeline goes straight to SSH for callbacks */
	o.force = true;
	o.verify_only = false;
	o.dry_run = false;
	run_init(&r, pb, ssh, &o, &res);
	r.each_fn = fn;
	r.each_arg = arg;
	rc = run_all(&r, err);
	if (rc == 0)
		*out = res;
	run_free(&r);
	return rc;
}
