/* metrics.c - the --metrics file: Prometheus text exposition format for
 * node_exporter's textfile collector (docs/metrics.md).
 *
 * One file per certificate.  Everything but the per-command run series
 * (certfleet_run_*{command}, certfleet_last_run_timestamp_seconds) is
 * rewritten from the state of this run; the run series of the other
 * commands are carried over from the file already there.  Two reasons:
 * node_exporter refuses a scrape in which two .prom files hold the same
 * series (so a `renew` timer and a certbot hook's `deploy` must share one
 * file per certificate), and a hand-run `deploy` must not erase the record
 * of the timer's last `renew` (CertfleetNoRecentRun would fire).
 * The commands that write it (deploy, verify, rollback, renew; not dry
 * runs) hold the store lock, so two read-modify-writes cannot interleave. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/fleetstate.h"
#include "certfleet/metrics.h"
#include "certfleet/util.h"

#define METRICS_READ_MAX (1024 * 1024)
#define METRICS_KEEP_MAX 64 /* carried-over samples per run family */
#define METRICS_VAL_MAX 40

/* The families that carry a {command} label, in output order. */
enum { RUN_DURATION, RUN_EXIT, RUN_LAST, RUN__N };
static const char *const run_names[RUN__N] = {
    "certfleet_run_duration_seconds",
    "certfleet_run_exit_code",
    "certfleet_last_run_timestamp_seconds",
};
static const char *const run_help[RUN__N] = {
    "Wall time of the last run of each command.",
    "Exit code of the last run of each command (0 ok, 2 partial, 1 failed).",
    "When the last run of each command ended (epoch seconds).",
};

struct run_sample {
	char command[33];
	char value[METRICS_VAL_MAX];
};

struct run_series {
	struct run_sample v[METRICS_KEEP_MAX + 1];
	size_t n;
};

/* Label values: backslash, double quote and newline escaped (text
 * exposition format 0.0.4). */
static int
put_label_value(cf_buf_t *b, const char *s)
{
	for (; *s; s++) {
		const char *e = *s == '\\'   ? "\\\\"
		                : *s == '"'  ? "\\\""
		                : *s == '\n' ? "\\n"
		                             : NULL;

		if (e != NULL ? cf_buf_append(b, e, 2) < 0
		              : cf_buf_append(b, s, 1) < 0)
			return -1;
	}
	return 0;
}

/* name{certificate="C"[,k1="v1"[,k2="v2"]]} value\n */
static int
put_sample(cf_buf_t *b, const char *name, const char *cert, const char *k1,
           const char *v1, const char *k2, const char *v2, const char *value)
{
	if (cf_buf_printf(b, "%s{certificate=\"", name) < 0 ||
	    put_label_value(b, cert) < 0)
		return -1;
	if (k1 != NULL && (cf_buf_printf(b, "\",%s=\"", k1) < 0 ||
	                   put_label_value(b, v1 != NULL ? v1 : "") < 0))
		return -1;
	if (k2 != NULL && (cf_buf_printf(b, "\",%s=\"", k2) < 0 ||
	                   put_label_value(b, v2 != NULL ? v2 : "") < 0))
		return -1;
	return cf_buf_printf(b, "\"} %s\n", value);
}

static int
put_family(cf_buf_t *b, const char *name, const char *help)
{
	return cf_buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help,
	                     name);
}

static void
fmt_int(char *buf, size_t len, int64_t v)
{
	snprintf(buf, len, "%" PRId64, v);
}

/* One family with one sample: the common case. */
static int
put_one(cf_buf_t *b, const char *name, const char *help, const char *cert,
        int64_t v)
{
	char val[METRICS_VAL_MAX];

	fmt_int(val, sizeof(val), v);
	return put_family(b, name, help) < 0 ||
	               put_sample(b, name, cert, NULL, NULL, NULL, NULL, val) <
	                   0
	           ? -1
	           : 0;
}

static bool
serves_current(const struct cf_node_state *st, const struct cf_certinfo *ci)
{
	return st != NULL && ci != NULL && st->serving_sha256[0] != '\0' &&
	       strcmp(st->serving_sha256, ci->sha256_hex) == 0;
}

/* ---- carrying over the other commands' run series ---- */

/* Parse `"value"` at *pp (after the opening quote) into out, undoing the
 * exposition format's escapes.  Advances *pp past the closing quote. */
static bool
parse_quoted(const char **pp, char *out, size_t outlen)
{
	const char *p = *pp;
	size_t n = 0;

	for (;;) {
		char c = *p++;

		if (c == '\0' || c == '\n')
			return false;
		if (c == '"')
			break;
		if (c == '\\') {
			c = *p++;
			if (c == 'n')
				c = '\n';
			else if (c != '\\' && c != '"')
				return false;
		}
		if (n + 1 >= outlen)
			return false;
		out[n++] = c;
	}
	out[n] = '\0';
	*pp = p;
	return true;
}

static bool
is_command_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || *s == '-' || *s == '_'))
			return false;
	return true;
}

/* A number as Prometheus writes it: what strtod takes, whole token. */
static bool
is_value(const char *s)
{
	char *end;

	if (*s == '\0')
		return false;
	errno = 0;
	(void)strtod(s, &end);
	return *end == '\0' && errno == 0;
}

/* One line of an old file: keep it if it is a run sample of this
 * certificate for another command, in exactly the shape we write.
 * Anything else (other families, other certificates, foreign lines) is
 * dropped: this file is certfleet's. */
static void
keep_line(const char *line, size_t len, const char *cert, const char *cmd,
          struct run_series *keep)
{
	char buf[512], lcert[128], lcmd[sizeof(keep->v[0].command)];
	const char *p;
	size_t k, nl;
	int f;

	if (len == 0 || len >= sizeof(buf) || line[0] == '#')
		return;
	memcpy(buf, line, len);
	buf[len] = '\0';
	for (f = 0; f < RUN__N; f++) {
		nl = strlen(run_names[f]);
		if (strncmp(buf, run_names[f], nl) == 0 &&
		    strncmp(buf + nl, "{certificate=\"", 14) == 0)
			break;
	}
	if (f == RUN__N)
		return;
	p = buf + nl + 14;
	if (!parse_quoted(&p, lcert, sizeof(lcert)) ||
	    strncmp(p, ",command=\"", 10) != 0)
		return;
	p += 10;
	if (!parse_quoted(&p, lcmd, sizeof(lcmd)) || strncmp(p, "} ", 2) != 0)
		return;
	p += 2;
	if (strcmp(lcert, cert) != 0 || strcmp(lcmd, cmd) == 0 ||
	    !is_command_token(lcmd) || strlen(p) >= METRICS_VAL_MAX ||
	    !is_value(p))
		return;
	for (k = 0; k < keep[f].n; k++)
		if (strcmp(keep[f].v[k].command, lcmd) == 0)
			return; /* first one wins; we never write duplicates */
	if (keep[f].n >= METRICS_KEEP_MAX)
		return;
	snprintf(keep[f].v[keep[f].n].command, sizeof(keep[f].v[0].command),
	         "%s", lcmd);
	snprintf(keep[f].v[keep[f].n].value, METRICS_VAL_MAX, "%s", p);
	keep[f].n++;
}

/* A missing or unreadable old file is not an error: there is simply
 * nothing to carry over. */
static void
load_kept(const char *path, const char *cert, const char *cmd,
          struct run_series *keep)
{
	char *data = NULL, *p, *nl;
	size_t len = 0;

	if (cf_read_file(path, METRICS_READ_MAX, &data, &len, NULL) < 0)
		return;
	for (p = data; p < data + len; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(data + len - p));
		if (nl == NULL)
			break; /* we always end lines; a partial one is junk */
		keep_line(p, (size_t)(nl - p), cert, cmd, keep);
	}
	free(data);
}

static int
cmp_sample(const void *a, const void *b)
{
	return strcmp(((const struct run_sample *)a)->command,
	              ((const struct run_sample *)b)->command);
}

/* ---- the document ---- */

static int
put_nodes(cf_buf_t *b, const struct cf_metrics_input *in, const char *cert)
{
	const struct cf_playbook *pb = in->pb;
	char val[METRICS_VAL_MAX];
	size_t i;
	const char *nm;

	nm = "certfleet_node_serving_not_after_seconds";
	if (put_family(b, nm,
	               "Expiry (epoch seconds) of the certificate the "
	               "node was last seen serving; absent when never seen.") <
	    0)
		return -1;
	for (i = 0; i < pb->n_nodes; i++) {
		const struct cf_node_state *st =
		    store_node_find(in->nodes, pb->nodes[i].name);

		if (st == NULL || st->serving_not_after <= 0)
			continue;
		fmt_int(val, sizeof(val), st->serving_not_after);
		if (put_sample(b, nm, cert, "node", pb->nodes[i].name, NULL,
		               NULL, val) < 0)
			return -1;
	}
	nm = "certfleet_node_serving_current";
	if (put_family(b, nm,
	               "1 if the node was last seen serving the current "
	               "stored certificate, else 0.") < 0)
		return -1;
	for (i = 0; i < pb->n_nodes; i++) {
		const struct cf_node_state *st =
		    store_node_find(in->nodes, pb->nodes[i].name);

		if (put_sample(b, nm, cert, "node", pb->nodes[i].name, NULL,
		               NULL,
		               serves_current(st, in->current) ? "1" : "0") < 0)
			return -1;
	}
	nm = "certfleet_node_quarantined";
	if (put_family(b, nm,
	               "1 with the quarantine reason while the node is "
	               "quarantined; 0 with an empty reason otherwise.") < 0)
		return -1;
	for (i = 0; i < pb->n_nodes; i++) {
		const struct cf_node_state *st =
		    store_node_find(in->nodes, pb->nodes[i].name);
		bool q = st != NULL && st->quarantined;

		if (put_sample(b, nm, cert, "node", pb->nodes[i].name, "reason",
		               q ? (st->reason != NULL ? st->reason : "unknown")
		                 : "",
		               q ? "1" : "0") < 0)
			return -1;
	}
	nm = "certfleet_node_quarantine_attempts";
	if (put_family(b, nm,
	               "Consecutive failed attempts on the node (0 when "
	               "not quarantined).") < 0)
		return -1;
	for (i = 0; i < pb->n_nodes; i++) {
		const struct cf_node_state *st =
		    store_node_find(in->nodes, pb->nodes[i].name);

		fmt_int(val, sizeof(val),
		        st != NULL && st->quarantined ? st->attempts : 0);
		if (put_sample(b, nm, cert, "node", pb->nodes[i].name, NULL,
		               NULL, val) < 0)
			return -1;
	}
	return 0;
}

/* name{certificate="C",node=..,port=..,starttls=..,sni=..[,reason=..]} */
static int
put_endpoint_sample(cf_buf_t *b, const char *name, const char *cert,
                    const char *node, const char *sni,
                    const struct cf_endpoint_state *e, bool with_reason,
                    const char *value)
{
	const char *keys[] = {"node", "port", "starttls", "sni", "reason"};
	char port[8];
	const char *vals[5];
	size_t k, nk = with_reason ? 5 : 4;

	snprintf(port, sizeof(port), "%u", e->port);
	vals[0] = node;
	vals[1] = port;
	vals[2] = starttls_proto_name(e->starttls);
	vals[3] = sni;
	vals[4] = e->ok || e->reason == NULL ? "" : e->reason;
	if (cf_buf_printf(b, "%s{certificate=\"", name) < 0 ||
	    put_label_value(b, cert) < 0)
		return -1;
	for (k = 0; k < nk; k++)
		if (cf_buf_printf(b, "\",%s=\"", keys[k]) < 0 ||
		    put_label_value(b, vals[k]) < 0)
			return -1;
	return cf_buf_printf(b, "\"} %s\n", value);
}

/* One family (ok, or the check time) for one node's pairs the playbook
 * has now, endpoint-major as verify checks them. */
static int
put_node_endpoints(cf_buf_t *b, const struct cf_playbook *pb, const char *cert,
                   const char *const *names, size_t n_names,
                   const struct cf_node *node, const struct cf_node_state *st,
                   bool ok_family)
{
	const char *nm =
	    ok_family ? "certfleet_node_endpoint_ok"
	              : "certfleet_node_endpoint_checked_timestamp_seconds";
	char val[METRICS_VAL_MAX];

	for (size_t ei = 0; ei < pb->verify.n_endpoints; ei++)
		for (size_t ni = 0; ni < n_names; ni++) {
			const struct cf_endpoint *ep =
			    &pb->verify.endpoints[ei];
			const struct cf_endpoint_state *e;

			if (names[ni] == NULL ||
			    (e = fleet_endpoint_find(st, ep->port, ep->starttls,
			                             names[ni])) == NULL)
				continue;
			fmt_int(val, sizeof(val), ok_family ? e->ok : e->seen);
			/* the playbook's spelling of the name */
			if (put_endpoint_sample(b, nm, cert, node->name,
			                        names[ni], e, ok_family,
			                        val) < 0)
				return -1;
		}
	return 0;
}

/* The last verify result of each endpoint under each SNI name, for the
 * pairs the playbook has now; a pair never checked is absent, not 0:
 * nothing is known of it. */
static int
put_endpoints(cf_buf_t *b, const struct cf_metrics_input *in, const char *cert)
{
	const struct cf_playbook *pb = in->pb;
	static const struct {
		const char *name, *help;
	} fam[] = {
	    {"certfleet_node_endpoint_ok",
	     "1 if the endpoint served the current certificate under the SNI "
	     "name, with the exact chain, trusted, when last checked; 0 with "
	     "the failure reason otherwise."},
	    {"certfleet_node_endpoint_checked_timestamp_seconds",
	     "When the endpoint was last checked under the SNI name (epoch "
	     "seconds)."},
	};
	const char **names = NULL;
	size_t n_names = 0, i, f;
	int rc = -1;

	if (playbook_verify_names(pb, &names, &n_names, NULL) < 0)
		return -1;
	/* two families, each with one series per node, endpoint and name */
	for (f = 0; f < 2; f++) {
		if (put_family(b, fam[f].name, fam[f].help) < 0)
			goto out;
		for (i = 0; i < pb->n_nodes; i++)
			if (put_node_endpoints(b, pb, cert, names, n_names,
			                       &pb->nodes[i],
			                       store_node_find(in->nodes,
			                                       pb->nodes[i]
			                                           .name),
			                       f == 0) < 0)
				goto out;
	}
	rc = 0;
out:
	free(names);
	return rc;
}

static int
put_counts(cf_buf_t *b, const struct cf_metrics_input *in, const char *cert)
{
	const struct cf_playbook *pb = in->pb;
	int64_t cur = 0, quar = 0;
	size_t i;

	for (i = 0; i < pb->n_nodes; i++) {
		const struct cf_node_state *st =
		    store_node_find(in->nodes, pb->nodes[i].name);

		cur += serves_current(st, in->current);
		quar += st != NULL && st->quarantined;
	}
	if (put_one(b, "certfleet_nodes", "Nodes in the playbook.", cert,
	            (int64_t)pb->n_nodes) < 0 ||
	    put_one(b, "certfleet_nodes_serving_current",
	            "Nodes last seen serving the current stored certificate.",
	            cert, cur) < 0 ||
	    put_one(b, "certfleet_nodes_quarantined",
	            "Nodes quarantined (automatic and manual).", cert,
	            quar) < 0)
		return -1;
	return 0;
}

static int
put_renewal(cf_buf_t *b, const struct cf_metrics_input *in, const char *cert)
{
	const struct cf_renewal_state *r = in->renewal;

	/* timestamps are left out rather than written as 0: `time() - x`
	 * on a 0 would look like a run 56 years overdue */
	if (r == NULL)
		return 0;
	if (r->last_success > 0 &&
	    put_one(b, "certfleet_renewal_last_success_timestamp_seconds",
	            "When the CA last issued a certificate (epoch seconds).",
	            cert, r->last_success) < 0)
		return -1;
	if (r->last_attempt > 0 &&
	    put_one(b, "certfleet_renewal_last_attempt_timestamp_seconds",
	            "When a renewal was last attempted (epoch seconds).", cert,
	            r->last_attempt) < 0)
		return -1;
	return put_one(b, "certfleet_renewal_consecutive_failures",
	               "Renewal attempts that failed in a row since the last "
	               "success.",
	               cert, (int64_t)r->consecutive_failures);
}

static int
put_runs(cf_buf_t *b, const struct cf_metrics_input *in, const char *cert,
         struct run_series *keep)
{
	char own[RUN__N][METRICS_VAL_MAX];
	const char *cmd = in->command != NULL ? in->command : "unknown";
	int f;
	size_t k;

	snprintf(own[RUN_DURATION], METRICS_VAL_MAX, "%.3f",
	         (double)(in->duration_ms > 0 ? in->duration_ms : 0) / 1000.0);
	fmt_int(own[RUN_EXIT], METRICS_VAL_MAX, in->exit_code);
	fmt_int(own[RUN_LAST], METRICS_VAL_MAX, cf_wall_now());
	for (f = 0; f < RUN__N; f++) {
		struct run_series *s = &keep[f];

		snprintf(s->v[s->n].command, sizeof(s->v[0].command), "%s",
		         cmd);
		memcpy(s->v[s->n].value, own[f], METRICS_VAL_MAX);
		s->n++;
		qsort(s->v, s->n, sizeof(s->v[0]), cmp_sample);
		if (put_family(b, run_names[f], run_help[f]) < 0)
			return -1;
		for (k = 0; k < s->n; k++)
			if (put_sample(b, run_names[f], cert, "command",
			               s->v[k].command, NULL, NULL,
			               s->v[k].value) < 0)
				return -1;
	}
	return 0;
}

int
metrics_write(const char *path, const struct cf_metrics_input *in,
              cf_err_t *err)
{
	struct run_series *keep = NULL;
	cf_buf_t b = {0};
	const char *cert;
	int rc = -1;

	if (in == NULL || in->pb == NULL || in->pb->cert.name == NULL)
		return cf_err_set(err, CF_ERR_INTERNAL,
		                  "%s: metrics without a playbook", path);
	cert = in->pb->cert.name;
	keep = calloc(RUN__N, sizeof(*keep));
	if (keep == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "%s: out of memory", path);
		goto out;
	}
	load_kept(path, cert, in->command != NULL ? in->command : "unknown",
	          keep);
	if (in->current != NULL &&
	    (put_one(&b, "certfleet_certificate_not_after_seconds",
	             "Expiry of the current stored certificate (epoch "
	             "seconds).",
	             cert, in->current->not_after) < 0 ||
	     put_one(&b, "certfleet_certificate_not_before_seconds",
	             "Start of validity of the current stored certificate "
	             "(epoch seconds).",
	             cert, in->current->not_before) < 0))
		goto nomem;
	if (put_nodes(&b, in, cert) < 0 || put_endpoints(&b, in, cert) < 0 ||
	    put_counts(&b, in, cert) < 0 || put_renewal(&b, in, cert) < 0)
		goto nomem;
	if (in->last_deploy_success > 0 &&
	    put_one(&b, "certfleet_deploy_last_success_timestamp_seconds",
	            "Last time any node was verified serving the current "
	            "certificate (epoch seconds).",
	            cert, in->last_deploy_success) < 0)
		goto nomem;
	if (put_runs(&b, in, cert, keep) < 0)
		goto nomem;
	/* 0644: node_exporter runs as its own user */
	if (cf_write_atomic(path, b.data, b.len, 0644, err) < 0)
		goto out;
	rc = 0;
	goto out;
nomem:
	cf_err_set(err, CF_ERR_NOMEM, "%s: out of memory", path);
out:
	free(keep);
	cf_buf_free(&b);
	return rc;
}
