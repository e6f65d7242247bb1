/* keyclean.c - remove a compromised key's backups from the fleet (see
 * keyclean.h).  One SSH session per node through rollout_each: the same
 * workers, deadlines and strict host key checking as a deploy.
 *
 * The node script is src/sh/keyclean.sh: it compares hashes on the node
 * and only ever unlinks a backup (why, there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/keyclean.h"
#include "certfleet/rollout.h"
#include "scripts.h"

int
keyclean_script(const struct cf_playbook *pb, const char *key_sha256,
                const char *combined_sha256, cf_buf_t *out)
{
	size_t i;

	if (cf_buf_append(out, cf_sh_keyclean, strlen(cf_sh_keyclean)) < 0 ||
	    cf_buf_append(out, "main() {\n", 9) < 0)
		return -1;
	for (i = 0; i < pb->deploy.n_files; i++) {
		const struct cf_file_spec *f = &pb->deploy.files[i];
		const char *want = f->content == CF_CONTENT_COMBINED
		                       ? combined_sha256
		                       : key_sha256;
		char *bak;
		int ok;

		if (!rollout_is_key_file(f) || want == NULL || *want == '\0')
			continue;
		if ((bak = rollout_backup_path(f->path)) == NULL)
			return -1;
		ok = cf_buf_printf(out, "one %zu ", i) == 0 &&
		     cf_buf_shquote(out, bak) == 0 &&
		     cf_buf_append(out, " ", 1) == 0 &&
		     cf_buf_shquote(out, f->path) == 0 &&
		     cf_buf_append(out, " ", 1) == 0 &&
		     cf_buf_shquote(out, want) == 0 &&
		     cf_buf_append(out, "\n", 1) == 0;
		free(bak);
		if (!ok)
			return -1;
	}
	/* whole before it runs: a script cut short does nothing */
	return cf_buf_printf(out, "echo certfleet-ok\n}\nmain\n");
}

struct kc_run {
	const struct cf_playbook *pb;
	const char *script;
	struct cf_keyclean_result *res;
};

/* Fold one "certfleet-backup I STATUS [MSG]" line into kn; -1 with err set
 * for a backup that could not be checked or removed. */
static int
backup_line(const struct cf_playbook *pb, struct cf_keyclean_node *kn,
            const char *line, size_t len, cf_err_t *err)
{
	char buf[CF_ERR_MSG_MAX], *st, *bak;
	unsigned long i;
	int rc = 0;

	snprintf(buf, sizeof(buf), "%.*s", (int)len, line);
	i = strtoul(buf + strlen("certfleet-backup "), &st, 10);
	if (i >= pb->deploy.n_files || *st != ' ')
		return 0;
	st++;
	if ((bak = rollout_backup_path(pb->deploy.files[i].path)) == NULL)
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	if (strcmp(st, "removed") == 0) {
		kn->removed++;
		cf_strjoin(kn->removed_files, sizeof(kn->removed_files), ", ",
		           bak);
	} else if (strcmp(st, "other") == 0) {
		kn->kept_other++;
	} else if (strcmp(st, "none") == 0) {
		;
	} else if (strcmp(st, "symlink") == 0 || strcmp(st, "notfile") == 0) {
		rc = cf_err_set(err, CF_ERR_UNSAFE_PATH,
		                "%s is %s: not followed, "
		                "not removed; look at it by hand",
		                bak,
		                strcmp(st, "symlink") == 0
		                    ? "a symlink"
		                    : "not a regular file");
	} else if (strcmp(st, "unreadable") == 0) {
		rc =
		    cf_err_set(err, CF_ERR_WRITE,
		               "cannot read %s to compare it "
		               "with the compromised key (the login needs read "
		               "access)",
		               bak);
	} else {
		rc = cf_err_set(err, CF_ERR_WRITE, "cannot remove %s: %s", bak,
		                strncmp(st, "error ", 6) == 0 ? st + 6 : st);
	}
	free(bak);
	return rc;
}

static int
kc_node(void *arg, const struct cf_node *node, cf_ssh_t *s, cf_err_t *err)
{
	struct kc_run *r = arg;
	struct cf_keyclean_node *kn = &r->res->nodes[node - r->pb->nodes];
	char *out = NULL;
	const char *p, *nl;
	int status = -1, rc = -1;
	cf_err_t first = {0};

	if (ssh_exec(s, "sh -s", r->script, strlen(r->script), &status, &out,
	             err) < 0)
		goto out;
	if (status != 0 || !rollout_has_marker(out, "certfleet-ok")) {
		cf_err_set(err, CF_ERR_WRITE,
		           "cleanup script %s (status %d, "
		           "no certfleet-ok): nothing can be said of its key "
		           "backups",
		           status == 0 ? "did not complete" : "failed", status);
		goto out;
	}
	for (p = out; p != NULL && *p; p = nl ? nl + 1 : NULL) {
		size_t len;

		nl = strchr(p, '\n');
		len = nl ? (size_t)(nl - p) : strlen(p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (strncmp(p, "certfleet-backup ", 17) == 0) {
			cf_err_t e = {0};

			if (backup_line(r->pb, kn, p, len, &e) < 0 &&
			    first.code == CF_OK)
				first = e;
		} else if (strncmp(p, "certfleet-live ", 15) == 0) {
			unsigned long i = strtoul(p + 15, NULL, 10);

			kn->live_compromised = true;
			if (i < r->pb->deploy.n_files)
				cf_strjoin(kn->live_files,
				           sizeof(kn->live_files), ", ",
				           r->pb->deploy.files[i].path);
		}
	}
	if (first.code != CF_OK) {
		*err = first;
		goto out;
	}
	rc = 0;
out:
	free(out);
	return rc;
}

void
keyclean_result_free(struct cf_keyclean_result *r)
{
	if (r == NULL)
		return;
	free(r->nodes);
	memset(r, 0, sizeof(*r));
}

int
keyclean_run(const struct cf_playbook *pb, const cf_ssh_ctx_t *ssh, char **only,
             const char *key_sha256, const char *combined_sha256,
             struct cf_keyclean_result *out, cf_err_t *err)
{
	struct cf_keyclean_result res;
	struct cf_rollout_result rr;
	struct cf_rollout_opts o;
	struct kc_run r;
	cf_buf_t script = {0};
	size_t i, nkey = 0;
	int rc = -1;

	memset(&res, 0, sizeof(res));
	memset(&rr, 0, sizeof(rr));
	memset(&o, 0, sizeof(o));
	res.nodes = calloc(pb->n_nodes ? pb->n_nodes : 1, sizeof(*res.nodes));
	if (res.nodes == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	res.n = pb->n_nodes;
	for (i = 0; i < pb->n_nodes; i++)
		res.nodes[i].node = &pb->nodes[i];
	for (i = 0; i < pb->deploy.n_files; i++)
		nkey += rollout_is_key_file(&pb->deploy.files[i]);
	if (nkey == 0) {
		res.no_key_files = true;
		goto done;
	}
	if (keyclean_script(pb, key_sha256, combined_sha256, &script) < 0) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	r.pb = pb;
	r.script = script.data;
	r.res = &res;
	o.only = only; /* no skip list: pinned and quarantined nodes too */
	if (rollout_each(pb, ssh, &o, kc_node, &r, &rr, err) < 0)
		goto out;
	for (i = 0; i < rr.n && i < res.n; i++) {
		const struct cf_node_result *nr = &rr.nodes[i];
		struct cf_keyclean_node *kn = &res.nodes[i];

		if (nr->outcome == CF_OUT_SKIPPED)
			continue;
		kn->attempted = true;
		kn->duration_ms = nr->duration_ms;
		if (nr->outcome == CF_OUT_DEPLOYED) {
			kn->ok = true;
			if (kn->removed > 0)
				res.n_cleaned++;
			else
				res.n_clean++;
		} else {
			kn->err = nr->err;
			res.n_failed++;
		}
		if (kn->live_compromised)
			res.n_live++;
	}
done:
	*out = res;
	memset(&res, 0, sizeof(res));
	rc = 0;
out:
	rollout_result_free(&rr);
	keyclean_result_free(&res);
	cf_buf_free(&script);
	return rc;
}
