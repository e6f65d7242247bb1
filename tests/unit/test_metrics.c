/* test_metrics.c - the operations layer's pure parts: the --metrics
 * textfile (format, values, escaping, carrying other commands' run series
 * over, atomic 0644 write; `promtool check metrics` when installed) and
 * notifications (the human text line, the command notifier's stdin, env,
 * exit status and time limit).  Webhooks are covered end to end by
 * tests/e2e/t-ops-webhook.sh against a real HTTP receiver. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc_alive.h"

#include "certfleet/metrics.h"
#include "certfleet/notify.h"
#include "certfleet/util.h"

struct fixture {
	char dir[64];
	char prom[128];
};

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_metrics.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->prom, sizeof(f->prom), "%s/certfleet-web.prom", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static char *
slurp(const char *path)
{
	char *s = NULL;
	size_t len;

	if (cf_read_file(path, 1 << 20, &s, &len, NULL) < 0)
		return NULL;
	return s;
}

static bool
has_line(const char *doc, const char *line)
{
	size_t n = strlen(line);
	const char *p = doc;

	while ((p = strstr(p, line)) != NULL) {
		if ((p == doc || p[-1] == '\n') && p[n] == '\n')
			return true;
		p += n;
	}
	return false;
}

static unsigned
count_str(const char *doc, const char *s)
{
	unsigned n = 0;

	for (const char *p = doc; (p = strstr(p, s)) != NULL; p++)
		n++;
	return n;
}

#define assert_line(doc, l)                                                    \
	do {                                                                   \
		if (!has_line((doc), (l)))                                     \
			fail_msg("no line '%s' in:\n%s", (l), (doc));          \
	} while (0)
#define assert_no_line(doc, l)                                                 \
	do {                                                                   \
		if (has_line((doc), (l)))                                      \
			fail_msg("unexpected line '%s' in:\n%s", (l), (doc));  \
	} while (0)

/* Every sample line is "name{labels} value": no timestamps, no blank or
 * stray lines; every family has HELP and TYPE gauge. */
static void
assert_exposition(const char *doc)
{
	regex_t sample, help, type;
	char line[1024];
	const char *p = doc, *nl;

	assert_int_equal(
	    regcomp(&sample,
	            "^certfleet_[a-z_]+\\{certificate=\"([^\"\\\\]|"
	            "\\\\.)*\"(,[a-z]+=\"([^\"\\\\]|\\\\.)*\")*\\} "
	            "-?[0-9]+(\\.[0-9]+)?$",
	            REG_EXTENDED | REG_NOSUB),
	    0);
	assert_int_equal(regcomp(&help, "^# HELP certfleet_[a-z_]+ [^\\\\]+$",
	                         REG_EXTENDED | REG_NOSUB),
	                 0);
	assert_int_equal(regcomp(&type, "^# TYPE certfleet_[a-z_]+ gauge$",
	                         REG_EXTENDED | REG_NOSUB),
	                 0);
	assert_true(strlen(doc) > 0 && doc[strlen(doc) - 1] == '\n');
	while ((nl = strchr(p, '\n')) != NULL) {
		size_t n = (size_t)(nl - p);

		assert_true(n < sizeof(line));
		memcpy(line, p, n);
		line[n] = '\0';
		if (regexec(&sample, line, 0, NULL, 0) != 0 &&
		    regexec(&help, line, 0, NULL, 0) != 0 &&
		    regexec(&type, line, 0, NULL, 0) != 0)
			fail_msg("not exposition format: '%s'", line);
		p = nl + 1;
	}
	regfree(&sample);
	regfree(&help);
	regfree(&type);
}

/* promtool is the reference parser and linter; run it when installed
 * (deps.sh installs it for `make test`). */
static void
assert_promtool_ok(const char *path)
{
	char cmd[512];
	int st;

	if (access("/usr/bin/promtool", X_OK) != 0) {
		fprintf(stderr, "(promtool not installed: lint skipped)\n");
		return;
	}
	snprintf(cmd, sizeof(cmd),
	         "/usr/bin/promtool check metrics < '%s' >/dev/null 2>&1",
	         path);
	st = system(cmd);
	if (st != 0) {
		snprintf(cmd, sizeof(cmd),
		         "/usr/bin/promtool check metrics < '%s' >&2", path);
		(void)system(cmd);
		fail_msg("promtool check metrics failed on %s", path);
	}
}

/* A playbook by hand: names here need not pass playbook validation,
 * which lets the test feed label values that must be escaped. */
struct pbfix {
	struct cf_playbook pb;
	struct cf_node nodes[3];
};

static void
pbfix_init(struct pbfix *p, const char *cert, const char *n1, const char *n2,
           const char *n3)
{
	memset(p, 0, sizeof(*p));
	p->pb.cert.name = (char *)cert;
	p->nodes[0].name = (char *)n1;
	p->nodes[1].name = (char *)n2;
	p->nodes[2].name = (char *)n3;
	p->nodes[0].host = (char *)"10.0.0.1";
	p->nodes[1].host = (char *)"10.0.0.2";
	p->nodes[2].host = (char *)"10.0.0.3";
	p->pb.nodes = p->nodes;
	p->pb.n_nodes = 3;
}

#define CUR_SHA                                                                \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define OLD_SHA                                                                \
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static void
test_metrics_values(void **state)
{
	struct fixture *f = *state;
	struct pbfix p;
	struct cf_certinfo ci;
	struct cf_node_state nsv[3];
	struct cf_node_states ns = {nsv, 3};
	struct cf_renewal_state rs;
	struct cf_metrics_input in;
	cf_err_t err = {0};
	struct stat sb;
	char *doc, line[256];
	int64_t t0 = cf_wall_now();
	DIR *d;
	struct dirent *de;
	unsigned files = 0;

	pbfix_init(&p, "web", "web1", "web2", "web3");
	memset(&ci, 0, sizeof(ci));
	memcpy(ci.sha256_hex, CUR_SHA, 65);
	ci.not_before = 1764000000;
	ci.not_after = 1764000000 + 90 * 86400;
	memset(nsv, 0, sizeof(nsv));
	/* web1 serves current; web2 quarantined serving an old one; web3
	 * only in the state file under another name: never seen */
	nsv[0].name = (char *)"web1";
	memcpy(nsv[0].serving_sha256, CUR_SHA, 65);
	nsv[0].serving_not_after = ci.not_after;
	nsv[1].name = (char *)"web2";
	memcpy(nsv[1].serving_sha256, OLD_SHA, 65);
	nsv[1].serving_not_after = 1765000000;
	nsv[1].quarantined = true;
	nsv[1].reason = (char *)"timeout";
	nsv[1].attempts = 3;
	nsv[2].name = (char *)"gone";
	nsv[2].quarantined = true;
	nsv[2].reason = (char *)"manual";
	memset(&rs, 0, sizeof(rs));
	rs.last_attempt = 1766000000;
	rs.last_success = 1765500000;
	rs.consecutive_failures = 2;
	memset(&in, 0, sizeof(in));
	in.pb = &p.pb;
	in.current = &ci;
	in.nodes = &ns;
	in.renewal = &rs;
	in.command = "deploy";
	in.exit_code = 2;
	in.duration_ms = 1234;
	in.last_deploy_success = 1765900000;

	assert_int_equal(metrics_write(f->prom, &in, &err), 0);
	assert_int_equal(stat(f->prom, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0644);
	doc = slurp(f->prom);
	assert_non_null(doc);
	assert_exposition(doc);
	assert_line(doc, "certfleet_certificate_not_after_seconds{certificate="
	                 "\"web\"} 1771776000");
	assert_line(doc, "certfleet_certificate_not_before_seconds{certificate="
	                 "\"web\"} 1764000000");
	assert_line(doc, "certfleet_node_serving_not_after_seconds{certificate="
	                 "\"web\",node=\"web1\"} 1771776000");
	assert_line(doc, "certfleet_node_serving_not_after_seconds{certificate="
	                 "\"web\",node=\"web2\"} 1765000000");
	assert_int_equal(count_str(doc,
	                           "certfleet_node_serving_not_after_seconds{"
	                           "certificate=\"web\",node=\"web3\"}"),
	                 0);
	assert_line(doc, "certfleet_node_serving_current{certificate=\"web\","
	                 "node=\"web1\"} 1");
	assert_line(doc, "certfleet_node_serving_current{certificate=\"web\","
	                 "node=\"web2\"} 0");
	assert_line(doc, "certfleet_node_serving_current{certificate=\"web\","
	                 "node=\"web3\"} 0");
	assert_line(doc, "certfleet_node_quarantined{certificate=\"web\",node="
	                 "\"web1\",reason=\"\"} 0");
	assert_line(doc, "certfleet_node_quarantined{certificate=\"web\",node="
	                 "\"web2\",reason=\"timeout\"} 1");
	assert_line(doc, "certfleet_node_quarantined{certificate=\"web\",node="
	                 "\"web3\",reason=\"\"} 0");
	assert_line(doc, "certfleet_node_quarantine_attempts{certificate="
	                 "\"web\",node=\"web2\"} 3");
	assert_line(doc, "certfleet_node_quarantine_attempts{certificate="
	                 "\"web\",node=\"web1\"} 0");
	/* a state entry for a node no longer in the playbook is not a node */
	assert_int_equal(count_str(doc, "\"gone\""), 0);
	assert_line(doc, "certfleet_nodes{certificate=\"web\"} 3");
	assert_line(doc,
	            "certfleet_nodes_serving_current{certificate=\"web\"} 1");
	assert_line(doc, "certfleet_nodes_quarantined{certificate=\"web\"} 1");
	assert_line(doc, "certfleet_renewal_last_success_timestamp_seconds{"
	                 "certificate=\"web\"} 1765500000");
	assert_line(doc, "certfleet_renewal_last_attempt_timestamp_seconds{"
	                 "certificate=\"web\"} 1766000000");
	assert_line(doc, "certfleet_renewal_consecutive_failures{certificate="
	                 "\"web\"} 2");
	assert_line(doc, "certfleet_deploy_last_success_timestamp_seconds{"
	                 "certificate=\"web\"} 1765900000");
	assert_line(doc, "certfleet_run_duration_seconds{certificate=\"web\","
	                 "command=\"deploy\"} 1.234");
	assert_line(doc, "certfleet_run_exit_code{certificate=\"web\",command="
	                 "\"deploy\"} 2");
	/* the run timestamp is now (no sample timestamps anywhere) */
	{
		const char *k = "certfleet_last_run_timestamp_seconds{"
		                "certificate=\"web\",command=\"deploy\"} ";
		const char *q = strstr(doc, k);
		long long ts;

		assert_non_null(q);
		ts = strtoll(q + strlen(k), NULL, 10);
		assert_true(ts >= t0 && ts <= cf_wall_now());
	}
	/* each family announced once */
	assert_int_equal(count_str(doc,
	                           "# TYPE certfleet_node_quarantined gauge"),
	                 1);
	snprintf(line, sizeof(line), "# HELP certfleet_nodes ");
	assert_int_equal(count_str(doc, line), 1);
	assert_promtool_ok(f->prom);
	free(doc);
	/* atomic: nothing but the file itself in the directory */
	d = opendir(f->dir);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			files++;
	closedir(d);
	assert_int_equal(files, 1);
}

static void
test_metrics_escaping(void **state)
{
	struct fixture *f = *state;
	struct pbfix p;
	struct cf_node_state nsv[1];
	struct cf_node_states ns = {nsv, 1};
	struct cf_metrics_input in;
	cf_err_t err = {0};
	char *doc;

	pbfix_init(&p, "we\"b", "a\"b", "c\\d", "e\nf");
	memset(nsv, 0, sizeof(nsv));
	nsv[0].name = (char *)"c\\d";
	nsv[0].quarantined = true;
	nsv[0].reason = (char *)"x\"y";
	memset(&in, 0, sizeof(in));
	in.pb = &p.pb;
	in.nodes = &ns;
	in.command = "verify";
	assert_int_equal(metrics_write(f->prom, &in, &err), 0);
	doc = slurp(f->prom);
	assert_non_null(doc);
	assert_exposition(doc);
	assert_line(doc, "certfleet_node_serving_current{certificate="
	                 "\"we\\\"b\",node=\"a\\\"b\"} 0");
	assert_line(doc, "certfleet_node_quarantined{certificate=\"we\\\"b\","
	                 "node=\"c\\\\d\",reason=\"x\\\"y\"} 1");
	assert_line(doc, "certfleet_node_serving_current{certificate="
	                 "\"we\\\"b\",node=\"e\\nf\"} 0");
	assert_promtool_ok(f->prom);
	free(doc);
}

/* Per endpoint x SNI name: the last result of each pair the playbook has
 * (ok 1, or 0 with the reason), and when it was checked; a pair never
 * checked, or one the playbook no longer has, is absent. */
static void
test_metrics_endpoints(void **state)
{
	struct fixture *f = *state;
	struct pbfix p;
	struct cf_endpoint eps[2] = {{443, STARTTLS_NONE},
	                             {587, STARTTLS_SMTP}};
	char *domains[] = {(char *)"a.test", (char *)"www.a.test",
	                   (char *)"*.a.test"};
	struct cf_endpoint_state e1[4];
	struct cf_node_state nsv[2];
	struct cf_node_states ns = {nsv, 2};
	struct cf_metrics_input in;
	cf_err_t err = {0};
	char *doc;

	pbfix_init(&p, "web", "web1", "web2", "web\"3");
	p.pb.cert.domains = domains;
	p.pb.cert.n_domains = 3;
	p.pb.verify.server_name = (char *)"a.test";
	p.pb.verify.endpoints = eps;
	p.pb.verify.n_endpoints = 2;
	memset(e1, 0, sizeof(e1));
	e1[0] =
	    (struct cf_endpoint_state){443,  STARTTLS_NONE, (char *)"a.test",
	                               true, NULL,          1000};
	e1[1] = (struct cf_endpoint_state){443,
	                                   STARTTLS_NONE,
	                                   (char *)"WWW.a.test",
	                                   false,
	                                   (char *)"verify-name",
	                                   1001};
	e1[2] =
	    (struct cf_endpoint_state){587,  STARTTLS_SMTP, (char *)"a.test",
	                               true, NULL,          1002};
	/* no longer in the playbook: 8443 */
	e1[3] =
	    (struct cf_endpoint_state){8443,  STARTTLS_NONE, (char *)"a.test",
	                               false, (char *)"tls", 1003};
	memset(nsv, 0, sizeof(nsv));
	nsv[0].name = (char *)"web1";
	nsv[0].endpoints = e1;
	nsv[0].n_endpoints = 4;
	nsv[1].name = (char *)"web\"3";
	nsv[1].endpoints = e1 + 1; /* one pair, failing */
	nsv[1].n_endpoints = 1;
	memset(&in, 0, sizeof(in));
	in.pb = &p.pb;
	in.nodes = &ns;
	in.command = "verify";
	assert_int_equal(metrics_write(f->prom, &in, &err), 0);
	doc = slurp(f->prom);
	assert_non_null(doc);
	assert_exposition(doc);
	assert_line(doc, "# TYPE certfleet_node_endpoint_ok gauge");
	assert_line(doc, "certfleet_node_endpoint_ok{certificate=\"web\",node="
	                 "\"web1\",port=\"443\",starttls=\"none\",sni=\""
	                 "a.test\",reason=\"\"} 1");
	/* the playbook's spelling of the name */
	assert_line(doc, "certfleet_node_endpoint_ok{certificate=\"web\",node="
	                 "\"web1\",port=\"443\",starttls=\"none\",sni=\""
	                 "www.a.test\",reason=\"verify-name\"} 0");
	assert_line(doc, "certfleet_node_endpoint_ok{certificate=\"web\",node="
	                 "\"web1\",port=\"587\",starttls=\"smtp\",sni=\""
	                 "a.test\",reason=\"\"} 1");
	assert_line(doc, "certfleet_node_endpoint_ok{certificate=\"web\",node="
	                 "\"web\\\"3\",port=\"443\",starttls=\"none\",sni="
	                 "\"www.a.test\",reason=\"verify-name\"} 0");
	assert_line(doc, "certfleet_node_endpoint_checked_timestamp_seconds{"
	                 "certificate=\"web\",node=\"web1\",port=\"443\","
	                 "starttls=\"none\",sni=\"www.a.test\"} 1001");
	assert_line(doc, "certfleet_node_endpoint_checked_timestamp_seconds{"
	                 "certificate=\"web\",node=\"web1\",port=\"587\","
	                 "starttls=\"smtp\",sni=\"a.test\"} 1002");
	/* 3 pairs of web1, 1 of web"3; web2 never checked; no wildcard */
	assert_int_equal(count_str(doc, "certfleet_node_endpoint_ok{"), 4);
	assert_int_equal(count_str(doc, "certfleet_node_endpoint_checked_"
	                                "timestamp_seconds{"),
	                 4);
	assert_int_equal(count_str(doc, "8443"), 0);
	assert_int_equal(count_str(doc, "node=\"web2\",port"), 0);
	assert_int_equal(count_str(doc, "*.a.test"), 0);
	assert_promtool_ok(f->prom);
	free(doc);
}

/* No certificate, no node state, no renewal state: what is unknown is
 * absent (never a 0 timestamp), counts are 0. */
static void
test_metrics_empty(void **state)
{
	struct fixture *f = *state;
	struct pbfix p;
	struct cf_metrics_input in;
	cf_err_t err = {0};
	char *doc;

	pbfix_init(&p, "web", "web1", "web2", "web3");
	memset(&in, 0, sizeof(in));
	in.pb = &p.pb;
	in.command = "deploy";
	in.exit_code = 1;
	assert_int_equal(metrics_write(f->prom, &in, &err), 0);
	doc = slurp(f->prom);
	assert_non_null(doc);
	assert_exposition(doc);
	assert_int_equal(count_str(doc,
	                           "certfleet_certificate_not_after_seconds"),
	                 0);
	assert_int_equal(count_str(doc,
	                           "timestamp_seconds{certificate=\"web\"}"),
	                 0);
	assert_int_equal(count_str(doc, "certfleet_renewal_"), 0);
	assert_line(doc, "certfleet_node_serving_current{certificate=\"web\","
	                 "node=\"web2\"} 0");
	assert_line(doc, "certfleet_node_quarantined{certificate=\"web\",node="
	                 "\"web2\",reason=\"\"} 0");
	assert_line(doc,
	            "certfleet_nodes_serving_current{certificate=\"web\"} 0");
	assert_line(doc, "certfleet_run_exit_code{certificate=\"web\",command="
	                 "\"deploy\"} 1");
	assert_promtool_ok(f->prom);
	free(doc);
}

/* renew, then deploy into the same file: both commands' run series are
 * there; renew again replaces only its own.  Lines that are not ours
 * (another certificate, junk) do not survive. */
static void
test_metrics_keeps_other_commands(void **state)
{
	struct fixture *f = *state;
	struct pbfix p;
	struct cf_metrics_input in;
	cf_err_t err = {0};
	char *doc;
	FILE *fp;

	pbfix_init(&p, "web", "web1", "web2", "web3");
	fp = fopen(f->prom, "w");
	assert_non_null(fp);
	fputs("# HELP foo junk\n"
	      "foo_bar 1\n"
	      "certfleet_run_exit_code{certificate=\"other\",command=\"renew\"}"
	      " 7\n"
	      "certfleet_run_exit_code{certificate=\"web\",command=\"x y\"} 7\n"
	      "certfleet_run_exit_code{certificate=\"web\",command="
	      "\"rollback\"} 0 1700000000\n"
	      "certfleet_run_exit_code{certificate=\"web\",command=\"status\"} "
	      "nope\n"
	      "certfleet_run_exit_code{certificate=\"web\",command=\"verify\"} "
	      "2\n"
	      "certfleet_run_exit_code{certificate=\"web\",command=\"half\"} 3",
	      fp);
	fclose(fp);
	memset(&in, 0, sizeof(in));
	in.pb = &p.pb;
	in.command = "renew";
	in.exit_code = 1;
	in.duration_ms = 500;
	assert_int_equal(metrics_write(f->prom, &in, &err), 0);
	in.command = "deploy";
	in.exit_code = 0;
	in.duration_ms = 2000;
	assert_int_equal(metrics_write(f->prom, &in, &err), 0);
	doc = slurp(f->prom);
	assert_non_null(doc);
	assert_line(doc, "certfleet_run_exit_code{certificate=\"web\",command="
	                 "\"renew\"} 1");
	assert_line(doc, "certfleet_run_exit_code{certificate=\"web\",command="
	                 "\"deploy\"} 0");
	assert_line(doc, "certfleet_run_duration_seconds{certificate=\"web\","
	                 "command=\"renew\"} 0.500");
	assert_line(doc, "certfleet_run_duration_seconds{certificate=\"web\","
	                 "command=\"deploy\"} 2.000");
	/* a well-formed sample of ours from an older run survives */
	assert_line(doc, "certfleet_run_exit_code{certificate=\"web\",command="
	                 "\"verify\"} 2");
	assert_int_equal(count_str(doc, "foo"), 0);
	assert_int_equal(count_str(doc, "\"other\""), 0);
	assert_int_equal(count_str(doc, "x y"), 0);
	assert_int_equal(count_str(doc, "rollback"), 0);
	assert_int_equal(count_str(doc, "status"), 0);
	assert_int_equal(count_str(doc, "half"), 0);
	assert_int_equal(count_str(doc,
	                           "certfleet_last_run_timestamp_seconds{"),
	                 2);
	free(doc);

	in.command = "renew";
	in.exit_code = 0;
	assert_int_equal(metrics_write(f->prom, &in, &err), 0);
	doc = slurp(f->prom);
	assert_non_null(doc);
	assert_exposition(doc);
	assert_line(doc, "certfleet_run_exit_code{certificate=\"web\",command="
	                 "\"renew\"} 0");
	assert_int_equal(count_str(doc, "certfleet_run_exit_code{"), 3);
	/* sorted by command: stable output */
	assert_true(strstr(doc, "command=\"deploy\"} 0") <
	            strstr(doc, "command=\"renew\"} 0"));
	assert_promtool_ok(f->prom);
	free(doc);
}

static void
test_metrics_write_error(void **state)
{
	struct fixture *f = *state;
	struct pbfix p;
	struct cf_metrics_input in;
	cf_err_t err = {0};
	char path[256];

	pbfix_init(&p, "web", "web1", "web2", "web3");
	memset(&in, 0, sizeof(in));
	in.pb = &p.pb;
	in.command = "deploy";
	snprintf(path, sizeof(path), "%s/no/such/dir/c.prom", f->dir);
	assert_int_equal(metrics_write(path, &in, &err), -1);
	assert_int_equal(err.code, CF_ERR_IO);
	assert_non_null(strstr(err.msg, path));
}

/* ---- notify ---- */

static void
test_notify_text(void **state)
{
	struct cf_event ev;
	char buf[1024];
	int64_t now = 1764547200 - (int64_t)(5.2 * 86400); /* 2025-12-01 */

	(void)state;
	memset(&ev, 0, sizeof(ev));
	ev.kind = CF_EV_NODE_QUARANTINED;
	ev.node = "web3";
	ev.host = "10.0.0.3";
	ev.reason = "timeout";
	ev.detail = "connect to 10.0.0.3:22 timed out after 10.0s";
	ev.count = 1;
	notify_format_text("web", &ev, now, buf, sizeof(buf));
	assert_string_equal(buf, "certfleet web: node web3 (10.0.0.3) "
	                         "quarantined: timeout: connect to "
	                         "10.0.0.3:22 timed out after 10.0s "
	                         "(attempt 1)");

	memset(&ev, 0, sizeof(ev));
	ev.kind = CF_EV_RENEWAL_FAILED;
	ev.detail = "urn:ietf:params:acme:error:rateLimited: too many";
	ev.count = 3;
	notify_format_text("web", &ev, now, buf, sizeof(buf));
	assert_string_equal(buf, "certfleet web: renewal FAILED (3rd in a "
	                         "row): urn:ietf:params:acme:error:"
	                         "rateLimited: too many");
	ev.count = 1;
	notify_format_text("web", &ev, now, buf, sizeof(buf));
	assert_string_equal(buf, "certfleet web: renewal FAILED: urn:ietf:"
	                         "params:acme:error:rateLimited: too many");
	ev.count = 12;
	notify_format_text("web", &ev, now, buf, sizeof(buf));
	assert_non_null(strstr(buf, "(12th in a row)"));
	ev.count = 22;
	notify_format_text("web", &ev, now, buf, sizeof(buf));
	assert_non_null(strstr(buf, "(22nd in a row)"));

	memset(&ev, 0, sizeof(ev));
	ev.kind = CF_EV_EXPIRY_WARNING;
	ev.node = "web2";
	ev.host = "10.0.0.2";
	ev.not_after = 1764547200;
	notify_format_text("web", &ev, now, buf, sizeof(buf));
	assert_string_equal(buf, "certfleet web: node web2 serves a "
	                         "certificate expiring in 5.2 days "
	                         "(2025-12-01)");
	notify_format_text("web", &ev, 1764547200 + 86400, buf, sizeof(buf));
	assert_string_equal(buf, "certfleet web: node web2 serves a "
	                         "certificate that EXPIRED 1.0 days ago "
	                         "(2025-12-01)");
	ev.node = NULL;
	notify_format_text("web", &ev, now, buf, sizeof(buf));
	assert_string_equal(buf, "certfleet web: the stored certificate "
	                         "expires in 5.2 days (2025-12-01)");

	memset(&ev, 0, sizeof(ev));
	ev.kind = CF_EV_NODE_RELEASED;
	ev.node = "web3";
	ev.host = "10.0.0.3";
	ev.reason = "timeout";
	notify_format_text("web", &ev, now, buf, sizeof(buf));
	assert_string_equal(buf, "certfleet web: node web3 (10.0.0.3) released "
	                         "from quarantine (was timeout): serves the "
	                         "current certificate");

	memset(&ev, 0, sizeof(ev));
	ev.kind = CF_EV_CANARY_STOPPED;
	ev.detail = "canary web1 failed: check-failed";
	notify_format_text("web", &ev, now, buf, sizeof(buf));
	assert_string_equal(buf, "certfleet web: rollout STOPPED, untouched "
	                         "nodes keep their certificate: canary web1 "
	                         "failed: check-failed");
}

/* A check command's multi-line output and invalid UTF-8 end up one line
 * of valid UTF-8; a short buffer cuts cleanly. */
static void
test_notify_text_sanitized(void **state)
{
	struct cf_event ev;
	char buf[1024], small[40];

	(void)state;
	memset(&ev, 0, sizeof(ev));
	ev.kind = CF_EV_NODE_QUARANTINED;
	ev.node = "web8";
	ev.reason = "check-failed";
	ev.detail = "nginx: [emerg] bad\nnginx: test \xff failed\t\xc3\xa9";
	notify_format_text("web", &ev, 0, buf, sizeof(buf));
	assert_null(strchr(buf, '\n'));
	assert_null(strchr(buf, '\t'));
	assert_null(strchr(buf, '\xff'));
	assert_non_null(strstr(buf, "bad nginx: test ? failed \xc3\xa9"));
	assert_string_equal(notify_kind_name(CF_EV_NODE_QUARANTINED),
	                    "node_quarantined");
	/* cut inside the two-byte é: no half character left */
	ev.detail = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9\xc3\xa9";
	ev.node = "n";
	ev.reason = "x";
	notify_format_text("w", &ev, 0, small, sizeof(small));
	for (size_t i = 0; small[i]; i++)
		if ((unsigned char)small[i] == 0xc3)
			assert_int_equal((unsigned char)small[i + 1], 0xa9);
}

static const char notify_pb_fmt[] =
    "{\"certificate\": {\"name\": \"web\", \"domains\": [\"example.com\"]},"
    " \"ssh\": {\"identity\": \"/nonexistent/id\"},"
    " \"deploy\": {\"files\": [{\"path\": \"/srv/tls/c.pem\","
    "   \"content\": \"fullchain\"}]},"
    " \"notify\": {\"command\": \"%s\"},"
    " \"nodes\": [{\"name\": \"web3\", \"host\": \"10.0.0.3\"}]}";

static struct cf_playbook *
notify_playbook(const char *cmd)
{
	struct cf_playbook *pb = NULL;
	cf_err_t err = {0};
	char buf[2048];

	snprintf(buf, sizeof(buf), notify_pb_fmt, cmd);
	if (playbook_load_buf("notify-test.json", buf, strlen(buf), &pb, &err) <
	    0)
		fail_msg("playbook: %s", err.msg);
	return pb;
}

static void
write_script(const char *path, const char *body)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fprintf(fp, "#!/bin/sh\n%s", body);
	fclose(fp);
	assert_int_equal(chmod(path, 0755), 0);
}

static void
test_notify_command(void **state)
{
	struct fixture *f = *state;
	struct cf_playbook *pb;
	struct cf_event ev[2];
	char script[128], body[1024], path[160], *s;

	snprintf(script, sizeof(script), "%s/notify.sh", f->dir);
	snprintf(body, sizeof(body),
	         "cat > %s/stdin.$1\n"
	         "env | grep '^CERTFLEET_' | sort > %s/env.$1\n"
	         "echo to-stdout\n",
	         f->dir, f->dir);
	write_script(script, body);
	pb = notify_playbook(script);
	memset(ev, 0, sizeof(ev));
	ev[0].kind = CF_EV_NODE_QUARANTINED;
	ev[0].node = "web3";
	ev[0].host = "10.0.0.3";
	ev[0].reason = "timeout";
	ev[0].detail = "connect timed out";
	ev[0].count = 2;
	ev[1].kind = CF_EV_RENEWAL_FAILED;
	ev[1].detail = "CA said \"no\"";
	ev[1].count = 1;
	/* a stale value in our own environment must not reach the command */
	setenv("CERTFLEET_NODE", "stale", 1);
	assert_int_equal(notify_send(pb, ev, 2), 0);
	unsetenv("CERTFLEET_NODE");

	snprintf(path, sizeof(path), "%s/stdin.node_quarantined", f->dir);
	s = slurp(path);
	assert_non_null(s);
	assert_non_null(strstr(s, "\"event\":\"node_quarantined\""));
	assert_non_null(strstr(s, "\"certificate\":\"web\""));
	assert_non_null(strstr(s, "\"node\":\"web3\""));
	assert_non_null(strstr(s, "\"reason\":\"timeout\""));
	assert_non_null(strstr(s, "\"count\":2"));
	assert_non_null(strstr(s, "\"text\":\"certfleet web: node web3 "
	                          "(10.0.0.3) quarantined: timeout: connect "
	                          "timed out (attempt 2)\""));
	free(s);
	snprintf(path, sizeof(path), "%s/env.node_quarantined", f->dir);
	s = slurp(path);
	assert_non_null(s);
	assert_non_null(strstr(s, "CERTFLEET_EVENT=node_quarantined\n"));
	assert_non_null(strstr(s, "CERTFLEET_NODE=web3\n"));
	assert_non_null(strstr(s, "CERTFLEET_CERTIFICATE=web\n"));
	assert_non_null(strstr(s, "CERTFLEET_TEXT=certfleet web: node web3 "));
	free(s);
	snprintf(path, sizeof(path), "%s/env.renewal_failed", f->dir);
	s = slurp(path);
	assert_non_null(s);
	assert_null(strstr(s, "CERTFLEET_NODE="));
	assert_non_null(strstr(s, "CERTFLEET_EVENT=renewal_failed\n"));
	free(s);
	snprintf(path, sizeof(path), "%s/stdin.renewal_failed", f->dir);
	s = slurp(path);
	assert_non_null(s);
	assert_non_null(strstr(s, "\"node\":null"));
	assert_non_null(strstr(s, "\"detail\":\"CA said \\\"no\\\"\""));
	free(s);
	playbook_free(pb);
}

static void
test_notify_command_fails(void **state)
{
	struct fixture *f = *state;
	struct cf_playbook *pb;
	struct cf_event ev;
	char script[128];

	snprintf(script, sizeof(script), "%s/fail.sh", f->dir);
	write_script(script, "cat >/dev/null; exit 3\n");
	pb = notify_playbook(script);
	memset(&ev, 0, sizeof(ev));
	ev.kind = CF_EV_CANARY_STOPPED;
	ev.detail = "stop";
	assert_int_equal(notify_send(pb, &ev, 1), 1);
	playbook_free(pb);
	/* a command that is not there */
	snprintf(script, sizeof(script), "%s/missing.sh", f->dir);
	pb = notify_playbook(script);
	assert_int_equal(notify_send(pb, &ev, 1), 1);
	playbook_free(pb);
}

/* A hanging command is killed after 10 s with everything it started
 * (its process group), and not run again for the run's next events. */
static void
test_notify_command_timeout(void **state)
{
	struct fixture *f = *state;
	struct cf_playbook *pb;
	struct cf_event ev[2];
	char script[128], body[512], path[160], *s;
	int64_t t0;
	long bg;

	snprintf(script, sizeof(script), "%s/hang.sh", f->dir);
	snprintf(body, sizeof(body),
	         "sleep 300 &\necho $! > %s/bg.pid\necho x >> %s/runs\n"
	         "sleep 300\n",
	         f->dir, f->dir);
	write_script(script, body);
	pb = notify_playbook(script);
	memset(ev, 0, sizeof(ev));
	ev[0].kind = ev[1].kind = CF_EV_EXPIRY_WARNING;
	ev[0].node = "web3";
	ev[0].not_after = ev[1].not_after = cf_wall_now() + 86400;
	t0 = cf_now_ms();
	assert_int_equal(notify_send(pb, ev, 2), 2);
	assert_true(cf_now_ms() - t0 >= 10000);
	assert_true(cf_now_ms() - t0 < 14000);
	snprintf(path, sizeof(path), "%s/runs", f->dir);
	s = slurp(path);
	assert_non_null(s);
	assert_string_equal(s, "x\n");
	free(s);
	snprintf(path, sizeof(path), "%s/bg.pid", f->dir);
	s = slurp(path);
	assert_non_null(s);
	bg = strtol(s, NULL, 10);
	free(s);
	assert_true(bg > 1);
	/* the background sleep went with its group (allow the reaper a
	 * moment: it was our grandchild, init reaps it) */
	for (int i = 0; i < 100 && alive(bg); i++)
		usleep(10000);
	assert_false(alive(bg));
	playbook_free(pb);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	    T(test_metrics_values),
	    T(test_metrics_escaping),
	    T(test_metrics_endpoints),
	    T(test_metrics_empty),
	    T(test_metrics_keeps_other_commands),
	    T(test_metrics_write_error),
	    T(test_notify_text),
	    T(test_notify_text_sanitized),
	    T(test_notify_command),
	    T(test_notify_command_fails),
	    T(test_notify_command_timeout),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
