/* report.c - human lines, the TTY progress line and the --json documents.
 * Nothing here ever sees key material: it gets results and certinfo only. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "certfleet/keyclean.h"
#include "certfleet/playbook.h"
#include "certfleet/report.h"
#include "certfleet/util.h"

const char *
report_outcome_name(cf_outcome_t o)
{
	switch (o) {
	case CF_OUT_UNCHANGED: return "unchanged";
	case CF_OUT_DEPLOYED: return "deployed";
	case CF_OUT_FAILED: return "failed";
	case CF_OUT_SKIPPED: return "skipped";
	case CF_OUT_STOPPED: return "stopped";
	case CF_OUT_DRYRUN: return "dry-run";
	case CF_OUT_VERIFIED: return "verified";
	}
	return "unknown";
}

void
report_progress(void *arg, const struct cf_node_result *r, size_t done,
                size_t total)
{
	const struct cf_report_ctx *c = arg;
	double secs = (double)r->duration_ms / 1000.0;

	if (c->tty)
		fputs("\r\033[K", stderr);
	if (r->outcome == CF_OUT_FAILED) {
		fprintf(stderr, "certfleet: %-16s %-15s FAILED%s %s: %s%s\n",
		        r->node->name, r->node->host,
		        r->canary ? " (canary)" : "",
		        cf_err_reason(r->err.code), r->err.msg,
		        r->rolled_back ? " (rolled back)" : "");
	} else if (!c->quiet) {
		const char *what = report_outcome_name(r->outcome);

		if (r->outcome == CF_OUT_UNCHANGED)
			what = "unchanged (already serves it)";
		else if (r->outcome == CF_OUT_DRYRUN)
			what = "would deploy (dry run: reachable, "
			       "host key, login and preflight ok)";
		else if (r->outcome == CF_OUT_STOPPED)
			what = "not touched (rollout stopped)";
		fprintf(stderr,
		        "certfleet: %-16s %-15s %s%s in %.2fs%s%s%s%s"
		        "%s%s\n",
		        r->node->name, r->node->host, what,
		        r->canary ? " (canary)" : "", secs,
		        r->fixed[0] ? "; fixed: " : "", r->fixed,
		        r->drift[0] ? "; WARNING: drift not fixed: " : "",
		        r->drift, r->note[0] ? ": note: " : "", r->note);
	}
	if (c->tty)
		fprintf(stderr, "certfleet: %s %zu/%zu nodes done", c->verb,
		        done, total);
	if (c->tty && done == total)
		fputs("\r\033[K", stderr);
	fflush(stderr);
}

void
report_summary(FILE *f, const char *verb, const struct cf_rollout_result *res,
               int exit_code)
{
	unsigned looked = (unsigned)res->n - res->n_skipped;

	if (res->stopped)
		fprintf(f, "certfleet: %s\n", res->stop_reason);
	else if (res->n_canary_failed > 0)
		/* the operator must see why a failed canary did not stop
		 * the rollout */
		fprintf(f,
		        "certfleet: failed %s %s: other nodes serve the same "
		        "certificate with the same recipe, so the fault is on "
		        "%s (quarantined); the rollout went on\n",
		        res->n_canary_failed == 1 ? "canary" : "canaries",
		        res->canary_failed,
		        res->n_canary_failed == 1 ? "that node"
		                                  : "those nodes");
	if (strcmp(verb, "verify") == 0) {
		/* verify changes nothing: say what nodes serve */
		fprintf(f,
		        "certfleet: verify: %u of %u node%s serve%s the "
		        "current "
		        "certificate",
		        res->n_unchanged, looked, cf_plural(looked),
		        looked == 1 ? "s" : "");
		if (res->n_failed > 0)
			fprintf(f, ", %u do%s not", res->n_failed,
			        res->n_failed == 1 ? "es" : "");
		if (res->n_skipped > 0)
			fprintf(f, ", %u skipped", res->n_skipped);
		fprintf(f, " in %.2fs (exit %d)\n",
		        (double)res->duration_ms / 1000.0, exit_code);
		fflush(f);
		return;
	}
	fprintf(f, "certfleet: %s: ", verb);
	if (res->n_dryrun > 0)
		fprintf(f, "%u would deploy (dry run), ", res->n_dryrun);
	fprintf(f,
	        "%u deployed, %u unchanged, %u failed %s, %u skipped, "
	        "%u stopped in %.2fs (exit %d)\n",
	        res->n_deployed, res->n_unchanged, res->n_failed,
	        res->dry_run ? "(preflight)" : "(quarantined)", res->n_skipped,
	        res->n_stopped, (double)res->duration_ms / 1000.0, exit_code);
	fflush(f);
}

static json_t *
cert_json(const char *version, const struct cf_certinfo *ci)
{
	json_t *o, *names;
	size_t i;

	if (ci == NULL)
		return json_null();
	names = json_array();
	for (i = 0; i < ci->n_names; i++)
		json_array_append_new(names, json_string(ci->names[i]));
	o = json_pack("{s:o,s:s,s:o,s:o,s:I,s:o,s:o}", "version",
	              cf_json_str_or_null(version), "sha256", ci->sha256_hex,
	              "not_before", cf_json_time_or_null(ci->not_before),
	              "not_after", cf_json_time_or_null(ci->not_after),
	              "not_after_epoch", (json_int_t)ci->not_after, "names",
	              names, "issuer", cf_json_str_or_null(ci->issuer));
	return o;
}

static json_t *
node_state_fields(json_t *o, const struct cf_node_state *st)
{
	if (st == NULL) {
		/* never seen: same fields as a known node (docs/json.md) */
		json_object_set_new(o, "quarantined", json_false());
		json_object_set_new(o, "reason", json_null());
		json_object_set_new(o, "detail", json_null());
		json_object_set_new(o, "manual", json_false());
		json_object_set_new(o, "attempts", json_integer(0));
		json_object_set_new(o, "quarantined_since", json_null());
		json_object_set_new(o, "last_success", json_null());
		json_object_set_new(o, "last_change", json_null());
		json_object_set_new(o, "last_seen", json_null());
		return o;
	}
	json_object_set_new(o, "quarantined", json_boolean(st->quarantined));
	json_object_set_new(o, "reason",
	                    st->quarantined ? cf_json_str_or_null(st->reason)
	                                    : json_null());
	json_object_set_new(o, "detail",
	                    st->quarantined ? cf_json_str_or_null(st->detail)
	                                    : json_null());
	json_object_set_new(o, "manual", json_boolean(st->manual));
	json_object_set_new(o, "attempts", json_integer(st->attempts));
	json_object_set_new(o, "quarantined_since",
	                    cf_json_time_or_null(
	                        st->quarantined ? st->quarantined_since : 0));
	json_object_set_new(o, "last_success",
	                    cf_json_time_or_null(st->last_success));
	json_object_set_new(o, "last_change",
	                    cf_json_time_or_null(st->last_change));
	json_object_set_new(o, "last_seen",
	                    cf_json_time_or_null(st->last_seen));
	return o;
}

void
report_json_dump(FILE *f, json_t *root)
{
	json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', f);
	fflush(f);
	json_decref(root);
}

static json_t *
run_doc(const char *command, int exit_code, const char *version,
        const struct cf_certinfo *ci, const struct cf_rollout_result *res,
        const struct cf_node_states *ns);

void
report_run_json(FILE *f, const char *command, int exit_code,
                const char *version, const struct cf_certinfo *ci,
                const struct cf_rollout_result *res,
                const struct cf_node_states *ns)
{
	report_json_dump(f, run_doc(command, exit_code, version, ci, res, ns));
}

static json_t *
epoch_or_null(int64_t t)
{
	return t > 0 ? json_integer((json_int_t)t) : json_null();
}

void
report_renew_json(FILE *f, int exit_code, const char *version,
                  const struct cf_certinfo *ci,
                  const struct cf_rollout_result *res,
                  const struct cf_node_states *ns,
                  const struct cf_renewal_report *rr)
{
	json_t *root = run_doc("renew", exit_code, version, ci, res, ns);

	json_object_set_new(root, "renewal",
	                    json_pack("{s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:i}",
	                              "action", rr->action, "reason",
	                              cf_json_str_or_null(rr->reason), "error",
	                              cf_json_str_or_null(rr->error), "order",
	                              cf_json_str_or_null(rr->order), "version",
	                              cf_json_str_or_null(rr->version),
	                              "next_due",
	                              cf_json_time_or_null(rr->next_due),
	                              "next_due_epoch",
	                              epoch_or_null(rr->next_due),
	                              "consecutive_failures",
	                              (int)rr->consecutive_failures));
	json_object_set_new(root, "deploy_error",
	                    cf_json_str_or_null(rr->deploy_error));
	report_json_dump(f, root);
}

/* "a; b" -> ["a", "b"] */
static json_t *
split_list(const char *s)
{
	json_t *a = json_array();
	const char *p = s, *e;

	while (a != NULL && p != NULL && *p) {
		e = strstr(p, "; ");
		json_array_append_new(a, json_stringn(p, e ? (size_t)(e - p)
		                                           : strlen(p)));
		p = e ? e + 2 : NULL;
	}
	return a;
}

/* verify's per-endpoint, per-SNI results (docs/json.md). */
static json_t *
endpoint_checks(const struct cf_node_result *r)
{
	json_t *a = json_array();

	for (size_t i = 0; i < r->n_checks; i++) {
		const struct cf_endpoint_check *c = &r->checks[i];

		json_array_append_new(a,
		                      json_pack("{s:i,s:s,s:s,s:b,s:o,s:o}",
		                                "port", (int)c->port,
		                                "starttls",
		                                starttls_proto_name(c->starttls),
		                                "sni", c->sni, "ok", c->ok,
		                                "reason",
		                                c->ok
		                                    ? json_null()
		                                    : json_string(cf_err_reason(
		                                          c->err.code)),
		                                "error",
		                                c->ok
		                                    ? json_null()
		                                    : json_string(c->err.msg)));
	}
	return a;
}

static json_t *
run_doc(const char *command, int exit_code, const char *version,
        const struct cf_certinfo *ci, const struct cf_rollout_result *res,
        const struct cf_node_states *ns)
{
	json_t *root, *nodes;
	size_t i;

	nodes = json_array();
	for (i = 0; res != NULL && i < res->n; i++) {
		const struct cf_node_result *r = &res->nodes[i];
		bool failed = r->outcome == CF_OUT_FAILED;
		json_t *o =
		    json_pack("{s:s,s:s,s:s,s:o,s:o,s:b,s:b,s:b,s:o,s:o,s:I}",
		              "name", r->node->name, "host", r->node->host,
		              "outcome", report_outcome_name(r->outcome),
		              "reason",
		              failed ? json_string(cf_err_reason(r->err.code))
		                     : json_null(),
		              "error",
		              failed ? json_string(r->err.msg) : json_null(),
		              "canary", r->canary, "rolled_back",
		              r->rolled_back, "touched", r->touched,
		              "served_before",
		              cf_json_str_or_null(r->before_sha256),
		              "serving_sha256",
		              cf_json_str_or_null(r->after_sha256),
		              "duration_ms", (json_int_t)r->duration_ms);
		const struct cf_node_state *st =
		    store_node_find(ns, r->node->name);

		if (r->note[0])
			json_object_set_new(o, "note", json_string(r->note));
		json_object_set_new(o, "fixed", split_list(r->fixed));
		/* this run's unfixed drift; verify (no SSH) reports the last
		 * deploy's, with when it saw it */
		if (st != NULL && st->drift != NULL) {
			json_object_set_new(o, "drift", split_list(st->drift));
			json_object_set_new(o, "drift_seen",
			                    json_integer(st->drift_seen));
		} else {
			json_object_set_new(o, "drift", split_list(r->drift));
		}
		if (r->n_checks > 0)
			json_object_set_new(o, "endpoints", endpoint_checks(r));
		/* verify is read-only and a dry run records nothing: their
		 * failures quarantine no one */
		json_object_set_new(o, "quarantined",
		                    json_boolean(
		                        (failed && !res->dry_run &&
		                         strcmp(command, "verify") != 0) ||
		                        (st != NULL && st->quarantined)));
		json_object_set_new(o, "serving_current",
		                    json_boolean(ci != NULL &&
		                                 strcmp(r->after_sha256,
		                                        ci->sha256_hex) == 0));
		json_array_append_new(nodes, o);
	}
	root = json_pack("{s:i,s:s,s:i,s:o}", "format", 1, "command", command,
	                 "exit_code", exit_code, "certificate",
	                 cert_json(version, ci));
	if (res != NULL) {
		json_object_set_new(root, "stopped",
		                    json_boolean(res->stopped));
		json_object_set_new(root, "stop_reason",
		                    res->stopped ? json_string(res->stop_reason)
		                                 : json_null());
		json_object_set_new(root, "canaries_failed",
		                    json_integer(res->n_canary_failed));
		json_object_set_new(root, "summary",
		                    json_pack("{s:i,s:i,s:i,s:i,s:i,s:i}",
		                              "deployed", res->n_deployed,
		                              "unchanged", res->n_unchanged,
		                              "failed", res->n_failed,
		                              "skipped", res->n_skipped,
		                              "stopped", res->n_stopped,
		                              "dry_run", res->n_dryrun));
		json_object_set_new(root, "duration_ms",
		                    json_integer(res->duration_ms));
	}
	json_object_set_new(root, "nodes", nodes);
	return root;
}

static void
days_left(int64_t not_after, char *buf, size_t len)
{
	if (not_after <= 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.1f",
		         (double)(not_after - cf_wall_now()) / 86400.0);
}

static json_t *
renewal_json(const struct cf_renewal_view *rv)
{
	const struct cf_renewal_state *rs = rv->rs;

	if (!rv->acme)
		return json_null();
	return json_pack("{s:b,s:o,s:o,s:o,s:o,s:o,s:o,s:i,s:o,s:o}", "due",
	                 rv->due, "basis", cf_json_str_or_null(rv->basis),
	                 "reason", cf_json_str_or_null(rv->why), "next_due",
	                 cf_json_time_or_null(rv->next_due), "next_due_epoch",
	                 epoch_or_null(rv->next_due), "last_attempt",
	                 cf_json_time_or_null(rs ? rs->last_attempt : 0),
	                 "last_success",
	                 cf_json_time_or_null(rs ? rs->last_success : 0),
	                 "consecutive_failures",
	                 (int)(rs ? rs->consecutive_failures : 0), "last_error",
	                 cf_json_str_or_null(rs ? rs->last_error : NULL),
	                 "state_error", cf_json_str_or_null(rv->state_error));
}

/* "renewal: ..." under the certificate line of `status` */
static void
renewal_line(FILE *f, const struct cf_renewal_view *rv)
{
	const struct cf_renewal_state *rs = rv->rs;
	char t[32];

	if (!rv->acme) {
		fprintf(f, "renewal: not by certfleet (no acme.directory)\n");
		return;
	}
	if (rv->state_error != NULL) {
		fprintf(f, "renewal: state unreadable: %s\n", rv->state_error);
		return;
	}
	if (rv->due)
		fprintf(f, "renewal: DUE now: %s", rv->why ? rv->why : "");
	else
		fprintf(f, "renewal: %s", rv->why ? rv->why : "");
	if (rs != NULL && rs->last_success > 0) {
		cf_fmt_time(rs->last_success, t, sizeof(t));
		fprintf(f, "; last success %s", t);
	}
	if (rs != NULL && rs->consecutive_failures > 0) {
		cf_fmt_time(rs->last_attempt, t, sizeof(t));
		fprintf(f, "; FAILED %u time%s in a row (last %s): %s",
		        rs->consecutive_failures,
		        rs->consecutive_failures == 1 ? "" : "s", t,
		        rs->last_error ? rs->last_error : "?");
	}
	fputc('\n', f);
}

void
report_status(FILE *f, bool json, const struct cf_playbook *pb,
              const char *version, const struct cf_certinfo *ci,
              const struct cf_node_states *ns, const struct cf_renewal_view *rv)
{
	size_t i;
	char t1[32], t2[32], d[16];

	if (json) {
		json_t *root, *nodes = json_array();

		for (i = 0; i < pb->n_nodes; i++) {
			const struct cf_node *n = &pb->nodes[i];
			const struct cf_node_state *st =
			    store_node_find(ns, n->name);
			json_t *o = json_pack("{s:s,s:s,s:i}", "name", n->name,
			                      "host", n->host, "port", n->port);

			json_object_set_new(o, "serving_sha256",
			                    cf_json_str_or_null(
			                        st ? st->serving_sha256
			                           : NULL));
			json_object_set_new(o, "serving_current",
			                    json_boolean(
			                        st != NULL && ci != NULL &&
			                        strcmp(st->serving_sha256,
			                               ci->sha256_hex) == 0));
			json_object_set_new(o, "serving_not_after",
			                    cf_json_time_or_null(
			                        st ? st->serving_not_after
			                           : 0));
			node_state_fields(o, st);
			json_array_append_new(nodes, o);
		}
		root = json_pack("{s:i,s:s,s:o,s:o}", "format", 1, "name",
		                 pb->cert.name, "certificate",
		                 cert_json(version, ci), "nodes", nodes);
		if (rv != NULL)
			json_object_set_new(root, "renewal", renewal_json(rv));
		report_json_dump(f, root);
		return;
	}
	if (ci == NULL) {
		fprintf(f, "certificate %s: none in the store yet\n",
		        pb->cert.name);
	} else {
		cf_fmt_time(ci->not_after, t1, sizeof(t1));
		days_left(ci->not_after, d, sizeof(d));
		fprintf(f,
		        "certificate %s: version %s, sha256 %.16s…, expires "
		        "%s (%s days)\n",
		        pb->cert.name, version ? version : "-", ci->sha256_hex,
		        t1, d);
	}
	if (rv != NULL)
		renewal_line(f, rv);
	fprintf(f, "%-16s %-15s %-9s %-7s %-20s %-20s %s\n", "NODE", "HOST",
	        "SERVES", "DAYS", "LAST SUCCESS", "SEEN", "QUARANTINE");
	for (i = 0; i < pb->n_nodes; i++) {
		const struct cf_node *n = &pb->nodes[i];
		const struct cf_node_state *st = store_node_find(ns, n->name);
		const char *serves = "unknown";

		if (st != NULL && st->serving_sha256[0] != '\0')
			serves = ci != NULL && strcmp(st->serving_sha256,
			                              ci->sha256_hex) == 0
			             ? "current"
			             : "OTHER";
		cf_fmt_time(st ? st->last_success : 0, t1, sizeof(t1));
		cf_fmt_time(st ? st->last_seen : 0, t2, sizeof(t2));
		days_left(st ? st->serving_not_after : 0, d, sizeof(d));
		fprintf(f, "%-16s %-15s %-9s %-7s %-20s %-20s ", n->name,
		        n->host, serves, d, t1, t2);
		if (st != NULL && st->quarantined)
			fprintf(f, "%s (%u attempt%s): %s\n",
			        st->reason ? st->reason : "?", st->attempts,
			        cf_plural(st->attempts),
			        st->detail ? st->detail : "");
		else
			fprintf(f, "-\n");
	}
}

void
report_quarantine_json(FILE *f, const struct cf_playbook *pb,
                       const struct cf_node_states *ns)
{
	json_t *nodes = json_array();
	size_t i;

	for (i = 0; i < ns->n; i++) {
		const struct cf_node_state *st = &ns->v[i];
		const struct cf_node *n = playbook_node(pb, st->name);
		json_t *o;

		if (!st->quarantined)
			continue;
		o = json_pack("{s:s,s:o}", "name", st->name, "host",
		              n != NULL ? json_string(n->host) : json_null());
		node_state_fields(o, st);
		json_array_append_new(nodes, o);
	}
	report_json_dump(f, json_pack("{s:i,s:s,s:i,s:s,s:o}", "format", 1,
	                              "command", "quarantine", "exit_code", 0,
	                              "name", pb->cert.name, "nodes", nodes));
}

void
report_validate_json(FILE *f, const struct cf_playbook *pb)
{
	json_t *names = json_array(), *nodes = json_array();
	size_t i;

	for (i = 0; i < pb->cert.n_domains; i++)
		json_array_append_new(names, json_string(pb->cert.domains[i]));
	for (i = 0; i < pb->n_nodes; i++)
		json_array_append_new(nodes,
		                      json_pack("{s:s,s:s,s:i}", "name",
		                                pb->nodes[i].name, "host",
		                                pb->nodes[i].host, "port",
		                                pb->nodes[i].port));
	report_json_dump(f,
	                 json_pack("{s:i,s:s,s:i,s:s,s:s,s:o,s:i,s:o}",
	                           "format", 1, "command", "validate",
	                           "exit_code", 0, "playbook", pb->path, "name",
	                           pb->cert.name, "domains", names, "files",
	                           (int)pb->deploy.n_files, "nodes", nodes));
}

static json_t *
strv_json(char *const *v)
{
	json_t *a = json_array();

	for (; v != NULL && *v != NULL; v++)
		json_array_append_new(a, json_string(*v));
	return a;
}

void
report_revoke_json(FILE *f, int exit_code, const struct cf_revoke_report *r)
{
	json_t *root, *nodes = json_array();
	size_t i;

	for (i = 0; r->kc != NULL && i < r->kc->n; i++) {
		const struct cf_keyclean_node *kn = &r->kc->nodes[i];
		const char *st = !kn->attempted ? "skipped"
		                 : !kn->ok      ? "failed"
		                 : kn->removed  ? "removed"
		                                : "clean";
		json_t *removed = json_array();
		char *list = strdup(kn->removed_files), *save = NULL, *p;

		for (p = list ? strtok_r(list, ",", &save) : NULL; p != NULL;
		     p = strtok_r(NULL, ",", &save))
			json_array_append_new(removed,
			                      json_string(p + strspn(p, " ")));
		free(list);
		json_array_append_new(
		    nodes,
		    json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:i,s:b,s:I}", "name",
		              kn->node->name, "host", kn->node->host, "cleanup",
		              st, "reason",
		              kn->attempted && !kn->ok
		                  ? json_string(cf_err_reason(kn->err.code))
		                  : json_null(),
		              "error",
		              kn->attempted && !kn->ok
		                  ? json_string(kn->err.msg)
		                  : json_null(),
		              "removed", removed, "kept_other_key",
		              (int)kn->kept_other, "serves_compromised_key",
		              kn->live_compromised, "duration_ms",
		              (json_int_t)kn->duration_ms));
	}
	root = json_pack("{s:i,s:s,s:i,s:o}", "format", 1, "command", "revoke",
	                 "exit_code", exit_code, "certificate",
	                 cert_json(r->version, r->ci));
	json_object_set_new(root, "revocation",
	                    json_pack("{s:o,s:s,s:i,s:o,s:b,s:o,s:o,s:o}",
	                              "version",
	                              cf_json_str_or_null(r->version), "reason",
	                              r->reason, "reason_code", r->reason_code,
	                              "ca", cf_json_str_or_null(r->ca),
	                              "current", r->current, "revoked_at",
	                              cf_json_time_or_null(r->revoked_at),
	                              "store_keys_wiped",
	                              strv_json(r->store_wiped),
	                              "cleanup_pending",
	                              strv_json(r->pending)));
	json_object_set_new(root, "nodes", nodes);
	report_json_dump(f, root);
}
