/* test_playbook.c - playbook parsing, validation and the position locator.
 *
 * Every rejection is checked by its whole message, so the line number and
 * key path an operator sees are part of the contract under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>
#include <libgen.h>

#include "../../src/jsonpos.h"
#include "certfleet/playbook.h"
#include "certfleet/util.h"

/* Where tests/ and playbooks/ are: the current directory when run from the
 * top of the tree (make), else two levels above the binary (build/tests). */
static char srcdir[4096] = ".";

static void
src_path(const char *rel, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", srcdir, rel);
}

/* ---- jsonpos ---------------------------------------------------------- */

static const char pos_doc[] = "{\n"                                      /* 1 */
                              "  \"a\": \"tricky } ] { [ \\\" \\\\\",\n" /* 2 */
                              "  \"b\": {\n"                             /* 3 */
                              "    \"c\": [10, {\"d\": true},\n"         /* 4 */
                              "          \"x\\n\", [1,\n"                /* 5 */
                              "  2]],\n"                                 /* 6 */
                              "    \"\\u0070ort\": 22,\n"                /* 7 */
                              "    \"\\ud83d\\ude00\": null\n"           /* 8 */
                              "  },\n"                                   /* 9 */
                              "  \"e\":\n" /* 10 */
                              "    {}\n"   /* 11 */
                              "}\n";

static unsigned
line_of(const struct jsonpos_elem *p, size_t n, bool *found)
{
	return jsonpos_line(pos_doc, sizeof(pos_doc) - 1, p, n, found);
}

static void
test_jsonpos_found(void **state)
{
	(void)state;
	bool found;
	struct jsonpos_elem a[] = {{"a", 0}};
	struct jsonpos_elem b[] = {{"b", 0}};
	struct jsonpos_elem c1d[] = {{"b", 0}, {"c", 0}, {NULL, 1}, {"d", 0}};
	struct jsonpos_elem c2[] = {{"b", 0}, {"c", 0}, {NULL, 2}};
	struct jsonpos_elem c31[] = {{"b", 0}, {"c", 0}, {NULL, 3}, {NULL, 1}};
	struct jsonpos_elem port[] = {{"b", 0}, {"port", 0}};
	struct jsonpos_elem emoji[] = {{"b", 0}, {"\xf0\x9f\x98\x80", 0}};
	struct jsonpos_elem e[] = {{"e", 0}};

	assert_int_equal(line_of(NULL, 0, &found), 1);
	assert_true(found);
	assert_int_equal(line_of(a, 1, &found), 2);
	assert_true(found);
	assert_int_equal(line_of(b, 1, &found), 3);
	assert_int_equal(line_of(c1d, 4, &found), 4);
	assert_true(found);
	assert_int_equal(line_of(c2, 3, &found), 5);
	assert_int_equal(line_of(c31, 4, &found), 6);
	assert_true(found);
	/* keys written with escapes still match */
	assert_int_equal(line_of(port, 2, &found), 7);
	assert_true(found);
	assert_int_equal(line_of(emoji, 2, &found), 8);
	assert_true(found);
	/* the line of the key, not of its value */
	assert_int_equal(line_of(e, 1, &found), 10);
	assert_true(found);
}

static void
test_jsonpos_missing(void **state)
{
	(void)state;
	bool found;
	struct jsonpos_elem top[] = {{"zz", 0}};
	struct jsonpos_elem inb[] = {{"b", 0}, {"zz", 0}};
	struct jsonpos_elem ine[] = {{"e", 0}, {"zz", 0}};
	struct jsonpos_elem idx[] = {{"b", 0}, {"c", 0}, {NULL, 9}};
	struct jsonpos_elem notobj[] = {{"b", 0}, {"port", 0}, {"x", 0}};
	struct jsonpos_elem notarr[] = {{"a", 0}, {NULL, 0}};
	struct jsonpos_elem escaped[] = {{"\\u0070ort", 0}};

	assert_int_equal(line_of(top, 1, &found), 1);
	assert_false(found);
	assert_int_equal(line_of(inb, 2, &found), 3);
	assert_false(found);
	/* the brace of the enclosing object, even on the line after its key */
	assert_int_equal(line_of(ine, 2, &found), 11);
	assert_false(found);
	assert_int_equal(line_of(idx, 3, &found), 4);
	assert_false(found);
	/* the value that is not the container the path expects */
	assert_int_equal(line_of(notobj, 3, &found), 7);
	assert_false(found);
	assert_int_equal(line_of(notarr, 2, &found), 2);
	assert_false(found);
	/* matching is on decoded keys, not on their spelling */
	line_of(escaped, 1, &found);
	assert_false(found);
	/* NULL found pointer is allowed */
	assert_int_equal(line_of(inb, 2, NULL), 3);
}

static void
test_jsonpos_malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "",
	    "{",
	    "{\"a",
	    "{\"a\":",
	    "{\"a\": [1, ",
	    "\"\\",
	    "{\"a\":\"\\u12",
	    "[[[[",
	    "]]]]}}}",
	    "{\"a\" 1}",
	    "{\"a\":1 \"b\":2}",
	    ":::",
	    "{:}",
	};
	struct jsonpos_elem p[] = {{"a", 0}, {NULL, 3}, {"b", 0}};
	char buf[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned line =
		    jsonpos_line(bad[i], strlen(bad[i]), p, 3, NULL);

		assert_true(line >= 1);
		for (size_t off = 0; off <= strlen(bad[i]); off++)
			jsonpos_key_path_at(bad[i], strlen(bad[i]), off, buf,
			                    sizeof(buf));
	}
}

static void
test_jsonpos_depth(void **state)
{
	(void)state;
	unsigned line = 0;
	const char *ok = "{\"a\": [[{\"b\": \"[[[[[[[[[[\"}]]]}";
	const char *deep = "{\n\"a\": [\n[\n{\"b\": 1}]]}";

	assert_false(jsonpos_too_deep(ok, strlen(ok), 4, &line));
	assert_true(jsonpos_too_deep(ok, strlen(ok), 3, &line));
	assert_int_equal(line, 1);
	assert_false(jsonpos_too_deep(deep, strlen(deep), 4, &line));
	assert_true(jsonpos_too_deep(deep, strlen(deep), 3, &line));
	assert_int_equal(line, 4);
	/* escaped quote does not end the string */
	assert_false(jsonpos_too_deep("[\"\\\"[[[\"]", 9, 1, &line));
}

static void
test_jsonpos_key_path_at(void **state)
{
	(void)state;
	const char *t = "{\"ssh\": {\"port\": 1, \"port\": 2}, \"nodes\": "
	                "[{}, {\"n\\u0061me\": 1, \"name\": 2}]}";
	char buf[64];
	size_t off;

	off = (size_t)(strstr(t, "\"port\": 2") - t) + 6;
	assert_true(jsonpos_key_path_at(t, strlen(t), off, buf, sizeof(buf)));
	assert_string_equal(buf, "ssh.port");
	off = (size_t)(strstr(t, "\"name\": 2") - t) + 6;
	assert_true(jsonpos_key_path_at(t, strlen(t), off, buf, sizeof(buf)));
	assert_string_equal(buf, "nodes[1].name");
	off = (size_t)(strstr(t, "\"n\\u0061me\"") - t) + 11;
	assert_true(jsonpos_key_path_at(t, strlen(t), off, buf, sizeof(buf)));
	assert_string_equal(buf, "nodes[1].name");
	assert_false(jsonpos_key_path_at(t, strlen(t), 3, buf, sizeof(buf)));
	assert_false(jsonpos_key_path_at(t, strlen(t), 9999, buf, sizeof(buf)));
}

static void
test_jsonpos_format(void **state)
{
	(void)state;
	struct jsonpos_elem p[] = {{"deploy", 0},
	                           {"files", 0},
	                           {NULL, 12},
	                           {"mode", 0}};
	char buf[64], small[10];

	jsonpos_format_path(p, 4, buf, sizeof(buf));
	assert_string_equal(buf, "deploy.files[12].mode");
	jsonpos_format_path(p, 4, small, sizeof(small));
	assert_string_equal(small, "deploy...");
	jsonpos_format_path(p, 0, buf, sizeof(buf));
	assert_string_equal(buf, "");
}

/* ---- valid playbooks -------------------------------------------------- */

static const char full_pb[] =
    "{\n"
    "  \"description\": \"everything set\",\n"
    "  \"x-owner\": {\"team\": \"ops\"},\n"
    "  \"certificate\": {\"name\": \"web\", \"domains\": [\"Example.COM\", "
    "\"www.example.com\"], \"key_type\": \"rsa-3072\", \"x-note\": 1},\n"
    "  \"acme\": {\"directory\": \"https://acme.example.com/dir\",\n"
    "           \"contact\": [\"mailto:ops@example.com\", "
    "\"mailto:pki@example.com\"],\n"
    "           \"challenge\": \"http-01\", \"dns_hook\": "
    "\"/usr/local/bin/hook\",\n"
    "           \"ca_bundle\": \"/etc/ssl/ca.pem\", \"renew_before_days\": "
    "30,\n"
    "           \"preferred_chain\": \"ISRG Root X1\", \"profile\": "
    "\"tlsserver\",\n"
    "           \"reuse_key\": true, \"eab\": {\"kid\": \"kid-1\", "
    "\"hmac_key\": \"c2VjcmV0LWtleQ\"}, \"timeout\": 120},\n"
    "  \"ssh\": {\"user\": \"deploy\", \"port\": 2222, \"identity\": "
    "\"/root/.ssh/id_ed25519\",\n"
    "          \"known_hosts\": \"/etc/certfleet/known_hosts\", "
    "\"connect_timeout\": 5, \"timeout\": 30},\n"
    "  \"deploy\": {\"files\": [\n"
    "      {\"path\": \"/etc/nginx/tls/fullchain.pem\", \"content\": "
    "\"fullchain\", \"mode\": \"0644\", \"owner\": \"root\", \"group\": "
    "\"root\"},\n"
    "      {\"path\": \"/etc/nginx/tls/privkey.pem\", \"content\": "
    "\"privkey\", "
    "\"mode\": \"640\", \"group\": \"ssl-cert\"},\n"
    "      {\"path\": \"/etc/nginx/tls/cert.pem\", \"content\": \"cert\"},\n"
    "      {\"path\": \"/etc/nginx/tls/chain.pem\", \"content\": \"chain\"},\n"
    "      {\"path\": \"/etc/haproxy/site.pem\", \"content\": \"combined\"}],\n"
    "    \"check\": \"nginx -t\", \"reload\": \"systemctl reload nginx\", "
    "\"webroot\": \"/var/www/acme\"},\n"
    "  \"verify\": {\"port\": 8443, \"server_name\": \"WWW.example.com\", "
    "\"timeout\": 20},\n"
    "  \"rollout\": {\"concurrency\": 8, \"canary\": 2, \"canary_failures\": "
    "3, "
    "\"max_failures\": 3},\n"
    "  \"notify\": {\"webhooks\": [\"https://hooks.example.com/x\", "
    "\"http://127.0.0.1:9000/y\"],\n"
    "             \"command\": \"/usr/local/bin/notify\", \"warn_days\": "
    "14.5},\n"
    "  \"nodes\": [\n"
    "    {\"name\": \"web1\", \"host\": \"10.0.0.1\", \"port\": 22, "
    "\"user\": \"root\"},\n"
    "    {\"name\": \"web2\", \"host\": \"web2.example.com\", \"x-rack\": "
    "\"b\"},\n"
    "    {\"name\": \"web_3.v6\", \"host\": \"2001:db8::3\"},\n"
    "    {\"name\": \"ll\", \"host\": \"fe80::1%eth0\"}\n"
    "  ]\n"
    "}\n";

static void
test_valid_full(void **state)
{
	(void)state;
	struct cf_playbook *pb = NULL;
	cf_err_t err = {0};

	if (playbook_load_buf("full.json", full_pb, sizeof(full_pb) - 1, &pb,
	                      &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(pb->path, "full.json");
	assert_string_equal(pb->cert.name, "web");
	assert_int_equal(pb->cert.n_domains, 2);
	assert_string_equal(pb->cert.domains[0], "example.com");
	assert_string_equal(pb->cert.domains[1], "www.example.com");
	assert_null(pb->cert.domains[2]);
	assert_int_equal(pb->cert.key_type, CF_KEY_RSA_3072);

	assert_string_equal(pb->acme.directory, "https://acme.example.com/dir");
	assert_int_equal(pb->acme.n_contact, 2);
	assert_string_equal(pb->acme.contact[1], "mailto:pki@example.com");
	assert_null(pb->acme.contact[2]);
	assert_string_equal(pb->acme.challenge, "http-01");
	assert_string_equal(pb->acme.dns_hook, "/usr/local/bin/hook");
	assert_string_equal(pb->acme.ca_bundle, "/etc/ssl/ca.pem");
	assert_true(pb->acme.renew_before_days == 30.0);
	assert_string_equal(pb->acme.preferred_chain, "ISRG Root X1");
	assert_string_equal(pb->acme.profile, "tlsserver");
	assert_true(pb->acme.reuse_key);
	assert_string_equal(pb->acme.eab_kid, "kid-1");
	assert_string_equal(pb->acme.eab_hmac_key, "c2VjcmV0LWtleQ");
	assert_int_equal(pb->acme.timeout, 120);

	assert_string_equal(pb->ssh.user, "deploy");
	assert_int_equal(pb->ssh.port, 2222);
	assert_string_equal(pb->ssh.identity, "/root/.ssh/id_ed25519");
	assert_string_equal(pb->ssh.known_hosts, "/etc/certfleet/known_hosts");
	assert_int_equal(pb->ssh.connect_timeout, 5);
	assert_int_equal(pb->ssh.timeout, 30);

	assert_int_equal(pb->deploy.n_files, 5);
	assert_string_equal(pb->deploy.files[0].path,
	                    "/etc/nginx/tls/fullchain.pem");
	assert_int_equal(pb->deploy.files[0].content, CF_CONTENT_FULLCHAIN);
	assert_int_equal(pb->deploy.files[0].mode, 0644);
	assert_string_equal(pb->deploy.files[0].owner, "root");
	assert_string_equal(pb->deploy.files[0].group, "root");
	assert_int_equal(pb->deploy.files[1].content, CF_CONTENT_PRIVKEY);
	assert_int_equal(pb->deploy.files[1].mode, 0640);
	assert_null(pb->deploy.files[1].owner);
	assert_string_equal(pb->deploy.files[1].group, "ssl-cert");
	assert_int_equal(pb->deploy.files[2].content, CF_CONTENT_CERT);
	assert_int_equal(pb->deploy.files[2].mode, 0644);
	assert_int_equal(pb->deploy.files[3].content, CF_CONTENT_CHAIN);
	assert_int_equal(pb->deploy.files[4].content, CF_CONTENT_COMBINED);
	assert_int_equal(pb->deploy.files[4].mode, 0600);
	assert_string_equal(pb->deploy.check, "nginx -t");
	assert_string_equal(pb->deploy.reload, "systemctl reload nginx");
	assert_string_equal(pb->deploy.webroot, "/var/www/acme");

	assert_int_equal(pb->verify.port, 8443);
	assert_string_equal(pb->verify.server_name, "www.example.com");
	assert_int_equal(pb->verify.timeout, 20);
	assert_int_equal(pb->rollout.concurrency, 8);
	assert_int_equal(pb->rollout.canary, 2);
	assert_int_equal(pb->rollout.canary_failures, 3);
	assert_int_equal(pb->rollout.max_failures, 3);
	assert_int_equal(pb->notify.n_webhooks, 2);
	assert_string_equal(pb->notify.webhooks[1], "http://127.0.0.1:9000/y");
	assert_string_equal(pb->notify.command, "/usr/local/bin/notify");
	assert_true(pb->notify.warn_days == 14.5);

	assert_int_equal(pb->n_nodes, 4);
	assert_string_equal(pb->nodes[0].name, "web1");
	assert_string_equal(pb->nodes[0].host, "10.0.0.1");
	assert_int_equal(pb->nodes[0].port, 22);
	assert_string_equal(pb->nodes[0].user, "root");
	/* node defaults come from the ssh section */
	assert_int_equal(pb->nodes[1].port, 2222);
	assert_string_equal(pb->nodes[1].user, "deploy");
	assert_string_equal(pb->nodes[2].host, "2001:db8::3");
	assert_string_equal(pb->nodes[3].host, "fe80::1%eth0");

	assert_ptr_equal(playbook_node(pb, "web2"), &pb->nodes[1]);
	assert_null(playbook_node(pb, "web9"));
	assert_null(playbook_node(pb, NULL));
	playbook_free(pb);
}

#define HEAD "{\n"
#define CERT                                                                   \
	"  \"certificate\": {\"name\": \"web\", \"domains\": "                 \
	"[\"example.com\"]},\n"
#define SSH "  \"ssh\": {\"identity\": \"/root/.ssh/id_ed25519\"},\n"
#define DEPLOY                                                                 \
	"  \"deploy\": {\"files\": [{\"path\": \"/etc/tls/fullchain.pem\", "   \
	"\"content\": \"fullchain\"}]},\n"
#define NODES "  \"nodes\": [{\"name\": \"web1\", \"host\": \"192.0.2.1\"}]\n"
#define TAIL "}\n"
/* lines: 1 {, 2 certificate, 3 ssh, 4 deploy, 5 nodes, 6 } */
#define MINIMAL HEAD CERT SSH DEPLOY NODES TAIL

/* Three nodes, one per line (lines 6..8 after HEAD CERT SSH DEPLOY). */
#define NODES3(third)                                                          \
	"  \"nodes\": [\n"                                                     \
	"    {\"name\": \"web1\", \"host\": \"192.0.2.1\"},\n"                 \
	"    {\"name\": \"web2\", \"host\": \"192.0.2.2\"},\n"                 \
	"    " third "\n"                                                      \
	"  ]\n"

static void
test_valid_minimal(void **state)
{
	(void)state;
	static const char text[] = MINIMAL;
	struct cf_playbook *pb = NULL;
	cf_err_t err = {0};

	if (playbook_load_buf("min.json", text, sizeof(text) - 1, &pb, &err) <
	    0)
		fail_msg("%s", err.msg);
	assert_int_equal(pb->cert.key_type, CF_KEY_EC_P256);
	assert_int_equal(pb->cert.n_domains, 1);
	assert_null(pb->acme.directory);
	assert_null(pb->acme.contact);
	assert_int_equal(pb->acme.n_contact, 0);
	assert_string_equal(pb->acme.challenge, "http-01");
	assert_null(pb->acme.dns_hook);
	assert_null(pb->acme.ca_bundle);
	assert_true(pb->acme.renew_before_days == 0);
	assert_null(pb->acme.preferred_chain);
	assert_null(pb->acme.profile);
	assert_false(pb->acme.reuse_key);
	assert_null(pb->acme.eab_kid);
	assert_null(pb->acme.eab_hmac_key);
	assert_int_equal(pb->store.keep_versions, 3);
	assert_true(pb->deploy.keep_previous);
	assert_int_equal(pb->acme.timeout, 300);
	assert_string_equal(pb->ssh.user, "root");
	assert_int_equal(pb->ssh.port, 22);
	assert_string_equal(pb->ssh.known_hosts, "/etc/ssh/ssh_known_hosts");
	assert_int_equal(pb->ssh.connect_timeout, 10);
	assert_int_equal(pb->ssh.timeout, 60);
	assert_int_equal(pb->deploy.n_files, 1);
	assert_int_equal(pb->deploy.files[0].mode, 0644);
	assert_null(pb->deploy.files[0].owner);
	assert_null(pb->deploy.files[0].group);
	assert_null(pb->deploy.check);
	assert_null(pb->deploy.reload);
	assert_null(pb->deploy.webroot);
	assert_int_equal(pb->verify.port, 443);
	assert_string_equal(pb->verify.server_name, "example.com");
	assert_int_equal(pb->verify.timeout, 10);
	assert_int_equal(pb->rollout.concurrency, 32);
	assert_int_equal(pb->rollout.canary, 1);
	assert_int_equal(pb->rollout.canary_failures, 2);
	assert_int_equal(pb->rollout.max_failures, 0);
	assert_null(pb->notify.webhooks);
	assert_int_equal(pb->notify.n_webhooks, 0);
	assert_null(pb->notify.command);
	assert_true(pb->notify.warn_days == 0);
	assert_int_equal(pb->n_nodes, 1);
	assert_int_equal(pb->nodes[0].port, 22);
	assert_string_equal(pb->nodes[0].user, "root");
	playbook_free(pb);
}

/* verify.endpoints and verify.names as loaded, and the SNI list verify
 * asks for: server_name first, non-wildcard domains, sample names, no
 * repeats. */
static void
test_verify_endpoints_names(void **state)
{
	(void)state;
	static const char text[] = HEAD
	    "  \"certificate\": {\"name\": \"web\", \"domains\": "
	    "[\"example.com\", \"*.example.com\", \"WWW.example.com\"]},\n" SSH
	        DEPLOY
	    "  \"verify\": {\"endpoints\": [{\"port\": 993}, {\"port\": 25, "
	    "\"starttls\": \"smtp\"}, {\"port\": 143, \"starttls\": \"imap\"}, "
	    "{\"port\": 110, \"starttls\": \"pop3\"}], \"server_name\": "
	    "\"www.example.com\", \"names\": [\"a.example.com\"], "
	    "\"ca_bundle\": \"/etc/ssl/private-ca.pem\"},\n" NODES TAIL;
	static const char shorthand[] =
	    HEAD CERT SSH DEPLOY "  \"verify\": {\"port\": 8443},\n" NODES TAIL;
	struct cf_playbook *pb = NULL;
	const char **names = NULL;
	size_t n = 0;
	cf_err_t err = {0};

	if (playbook_load_buf("v.json", text, sizeof(text) - 1, &pb, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(pb->verify.n_endpoints, 4);
	assert_int_equal(pb->verify.port, 993);
	assert_int_equal(pb->verify.endpoints[0].starttls, STARTTLS_NONE);
	assert_int_equal(pb->verify.endpoints[1].port, 25);
	assert_int_equal(pb->verify.endpoints[1].starttls, STARTTLS_SMTP);
	assert_int_equal(pb->verify.endpoints[2].starttls, STARTTLS_IMAP);
	assert_int_equal(pb->verify.endpoints[3].starttls, STARTTLS_POP3);
	assert_string_equal(pb->verify.ca_bundle, "/etc/ssl/private-ca.pem");
	assert_int_equal(pb->verify.n_names, 1);
	assert_int_equal(playbook_verify_names(pb, &names, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "www.example.com");
	assert_string_equal(names[1], "example.com");
	assert_string_equal(names[2], "a.example.com");
	free(names);
	playbook_free(pb);

	pb = NULL;
	if (playbook_load_buf("s.json", shorthand, sizeof(shorthand) - 1, &pb,
	                      &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(pb->verify.n_endpoints, 1);
	assert_int_equal(pb->verify.endpoints[0].port, 8443);
	assert_int_equal(pb->verify.endpoints[0].starttls, STARTTLS_NONE);
	assert_null(pb->verify.ca_bundle);
	assert_int_equal(playbook_verify_names(pb, &names, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "example.com");
	free(names);
	playbook_free(pb);
}

/* Inputs that must load: edge cases of the rules, not just the happy path. */
static void
test_valid_edges(void **state)
{
	(void)state;
	static const char *const ok[] = {
	    /* wildcard with dns-01; SNI falls back to the first plain name */
	    HEAD "  \"certificate\": {\"name\": \"web\", \"domains\": "
	         "[\"*.example.com\", \"example.com\"]},\n"
	         "  \"acme\": {\"directory\": \"https://ca.example/dir\", "
	         "\"challenge\": \"dns-01\", \"dns_hook\": "
	         "\"/usr/local/bin/h\"},\n" SSH DEPLOY NODES TAIL,
	    /* nesting exactly at the limit inside an extension key */
	    HEAD CERT SSH DEPLOY "  \"x-deep\": "
	                         "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]"
	                         "]]]]]]]]]]]]]]]]],\n" NODES TAIL,
	    /* CRLF line ends, escapes, deploy only (no acme.directory) */
	    "{\r\n  \"certificate\": {\"name\": \"w\\u0065b\", \"domains\": "
	    "[\"example.com\"]},\r\n" SSH DEPLOY NODES "}\r\n",
	    /* limits: ports 1 and 65535, timeouts 1 and 3600, canary 0 */
	    HEAD CERT
	    "  \"ssh\": {\"identity\": \"/k\", \"port\": 65535, "
	    "\"connect_timeout\": 1, \"timeout\": 3600},\n"
	    "  \"rollout\": {\"concurrency\": 1024, \"canary\": 0},\n" DEPLOY
	    "  \"nodes\": [{\"name\": \"a\", \"host\": \"h\", "
	    "\"port\": 1}]\n" TAIL,
	    /* paths with the whole allowed charset */
	    HEAD CERT SSH
	    "  \"deploy\": {\"files\": [{\"path\": "
	    "\"/etc/A-z_0.9/+@:,=/f..pem\", \"content\": \"cert\"}]},\n" NODES
	        TAIL,
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct cf_playbook *pb = NULL;
		cf_err_t err = {0};

		if (playbook_load_buf("ok.json", ok[i], strlen(ok[i]), &pb,
		                      &err) < 0)
			fail_msg("case %zu: %s", i, err.msg);
		playbook_free(pb);
	}
}

/* ---- rejected playbooks ------------------------------------------------ */

struct bad_case {
	const char *name;
	const char *json;
	const char *msg;
};

static const struct bad_case bad_cases[] = {
    {"unknown_key_suggest",
     HEAD CERT
     "  \"ssh\": {\"identity\": \"/k\", \"connct_timeout\": 5},\n" DEPLOY NODES
         TAIL,
     "t.json:3: ssh.connct_timeout: unknown key, did you mean "
     "connect_timeout?"},
    {"unknown_key_plain",
     HEAD CERT SSH DEPLOY "  \"frobnicate\": true,\n" NODES TAIL,
     "t.json:5: frobnicate: unknown key"},
    {"unknown_key_in_file",
     HEAD CERT SSH "  \"deploy\": {\"files\": [\n"
                   "    {\"path\": \"/a\", \"content\": \"cert\"},\n"
                   "    {\"path\": \"/b\", \"content\": \"cert\", \"mdoe\": "
                   "\"0644\"}]},\n" NODES TAIL,
     "t.json:6: deploy.files[1].mdoe: unknown key, did you mean mode?"},
    {"duplicate_key",
     HEAD CERT "  \"ssh\": {\"identity\": \"/k\",\n"
               "          \"port\": 22, \"port\": 2222},\n" DEPLOY NODES TAIL,
     "t.json:4:28: ssh.port: duplicate key"},
    {"wrong_type_port",
     HEAD CERT
     "  \"ssh\": {\"identity\": \"/k\", \"port\": \"22\"},\n" DEPLOY NODES TAIL,
     "t.json:3: ssh.port: expected an integer, got string"},
    {"wrong_type_real",
     HEAD CERT SSH DEPLOY NODES3(
         "{\"name\": \"c\", \"host\": \"h\", \"port\": 22.5}") TAIL,
     "t.json:8: nodes[2].port: expected an integer, got real"},
    {"wrong_type_section", HEAD CERT "  \"ssh\": [\"/k\"],\n" DEPLOY NODES TAIL,
     "t.json:3: ssh: expected an object, got array"},
    {"missing_nodes",
     HEAD CERT SSH "  \"deploy\": {\"files\": [{\"path\": \"/a\", "
                   "\"content\": \"cert\"}]}\n" TAIL,
     "t.json:1: nodes: missing required key"},
    {"missing_identity",
     HEAD CERT
     "  \"verify\": {},\n  \"ssh\":\n    {\"user\": \"root\"},\n" DEPLOY NODES
         TAIL,
     "t.json:5: ssh.identity: missing required key"},
    {"missing_host", HEAD CERT SSH DEPLOY NODES3("{\"name\": \"web3\"}") TAIL,
     "t.json:8: nodes[2].host: missing required key"},
    {"missing_content",
     HEAD CERT SSH
     "  \"deploy\": {\"files\": [{\"path\": \"/a\"}]},\n" NODES TAIL,
     "t.json:4: deploy.files[0].content: missing required key"},
    {"no_domains",
     HEAD
     "  \"certificate\": {\"name\": \"web\", \"domains\": []},\n" SSH DEPLOY
         NODES TAIL,
     "t.json:2: certificate.domains: must list at least 1 domains"},
    {"no_nodes", HEAD CERT SSH DEPLOY "  \"nodes\": []\n" TAIL,
     "t.json:5: nodes: must list at least 1 nodes"},
    {"relative_path",
     HEAD CERT SSH "  \"deploy\": {\"files\": [{\"path\": \"etc/tls/c.pem\", "
                   "\"content\": \"cert\"}]},\n" NODES TAIL,
     "t.json:4: deploy.files[0].path: must be an absolute path (start with "
     "'/')"},
    {"dotdot_path",
     HEAD CERT SSH
     "  \"deploy\": {\"files\": [{\"path\": \"/etc/tls/../shadow\", "
     "\"content\": \"cert\"}]},\n" NODES TAIL,
     "t.json:4: deploy.files[0].path: contains a '..' component"},
    {"dot_path",
     HEAD CERT "  \"ssh\": {\"identity\": \"/root/./id\"},\n" DEPLOY NODES TAIL,
     "t.json:3: ssh.identity: contains a '.' component"},
    {"shell_meta_path",
     HEAD CERT SSH "  \"deploy\": {\"files\": [{\"path\": \"/etc/x;rm\", "
                   "\"content\": \"cert\"}]},\n" NODES TAIL,
     "t.json:4: deploy.files[0].path: contains ';'; paths use only A-Z a-z "
     "0-9 and . _ / + @ : , = -"},
    {"space_path",
     HEAD CERT SSH
     "  \"deploy\": {\"files\": [{\"path\": \"/etc/my cert\", "
     "\"content\": \"cert\"}], \"webroot\": \"/x\"},\n" NODES TAIL,
     "t.json:4: deploy.files[0].path: contains whitespace or control "
     "characters"},
    {"double_slash_path",
     HEAD CERT SSH
     "  \"deploy\": {\"files\": [{\"path\": \"/a\", "
     "\"content\": \"cert\"}], \"webroot\": \"/var//www\"},\n" NODES TAIL,
     "t.json:4: deploy.webroot: contains '//'"},
    {"trailing_slash_path",
     HEAD CERT SSH
     "  \"deploy\": {\"files\": [{\"path\": \"/a\", "
     "\"content\": \"cert\"}], \"webroot\": \"/var/www/\"},\n" NODES TAIL,
     "t.json:4: deploy.webroot: must not end with '/'"},
    {"dash_component_path",
     HEAD CERT "  \"ssh\": {\"identity\": \"/k\", \"known_hosts\": "
               "\"/etc/-rf\"},\n" DEPLOY NODES TAIL,
     "t.json:3: ssh.known_hosts: has a component starting with '-'"},
    {"newline_in_host",
     HEAD CERT SSH DEPLOY NODES3(
         "{\"name\": \"web3\", \"host\": \"192.0.2.3\\n\"}") TAIL,
     "t.json:8: nodes[2].host: contains whitespace or control characters"},
    {"dash_host",
     HEAD CERT SSH DEPLOY NODES3(
         "{\"name\": \"web3\", \"host\": \"-oProxyCommand=x\"}") TAIL,
     "t.json:8: nodes[2].host: must not start with '-'"},
    {"bracket_ipv6_host",
     HEAD CERT SSH DEPLOY NODES3(
         "{\"name\": \"web3\", \"host\": \"[2001:db8::1]\"}") TAIL,
     "t.json:8: nodes[2].host: write IPv6 addresses without brackets"},
    {"bad_ipv4_host",
     HEAD CERT SSH DEPLOY NODES3(
         "{\"name\": \"web3\", \"host\": \"192.0.2.300\"}") TAIL,
     "t.json:8: nodes[2].host: is not a valid IPv4 address"},
    {"underscore_host",
     HEAD CERT SSH DEPLOY NODES3(
         "{\"name\": \"web3\", \"host\": \"web_3.example\"}") TAIL,
     "t.json:8: nodes[2].host: contains '_'; host names use only A-Z a-z 0-9 . "
     "-"},
    {"dash_name",
     HEAD CERT SSH DEPLOY NODES3("{\"name\": \"-web3\", \"host\": \"h\"}") TAIL,
     "t.json:8: nodes[2].name: must not start with '-'"},
    {"space_name",
     HEAD "  \"certificate\": {\"name\": \"my web\", \"domains\": "
          "[\"example.com\"]},\n" SSH DEPLOY NODES TAIL,
     "t.json:2: certificate.name: contains whitespace or control characters"},
    {"slash_name",
     HEAD "  \"certificate\": {\"name\": \"../web\", \"domains\": "
          "[\"example.com\"]},\n" SSH DEPLOY NODES TAIL,
     "t.json:2: certificate.name: must not start with '.'"},
    {"reserved_name",
     HEAD "  \"certificate\": {\"name\": \"accounts\", \"domains\": "
          "[\"example.com\"]},\n" SSH DEPLOY NODES TAIL,
     "t.json:2: certificate.name: \"accounts\" is reserved by the state "
     "directory"},
    {"long_name",
     HEAD
     "  \"certificate\": {\"name\": "
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaa\", \"domains\": [\"example.com\"]},\n" SSH DEPLOY
         NODES TAIL,
     "t.json:2: certificate.name: longer than 64 characters"},
    {"duplicate_node_names",
     HEAD CERT SSH DEPLOY NODES3(
         "{\"name\": \"web1\", \"host\": \"192.0.2.3\"}") TAIL,
     "t.json:8: nodes[2].name: duplicate node name (also nodes[0])"},
    {"duplicate_file_paths",
     HEAD CERT SSH
     "  \"deploy\": {\"files\": [\n"
     "    {\"path\": \"/etc/a.pem\", \"content\": \"cert\"},\n"
     "    {\"path\": \"/etc/b.pem\", \"content\": \"chain\"},\n"
     "    {\"path\": \"/etc/a.pem\", \"content\": \"privkey\"}]},\n" NODES TAIL,
     "t.json:7: deploy.files[2].path: same path as deploy.files[0]"},
    {"bad_mode_digits",
     HEAD CERT SSH "  \"deploy\": {\"files\": [{\"path\": \"/a\", "
                   "\"content\": \"cert\", \"mode\": \"0689\"}]},\n" NODES TAIL,
     "t.json:4: deploy.files[0].mode: \"0689\" is not an octal mode such as "
     "\"0640\""},
    {"bad_mode_integer",
     HEAD CERT SSH "  \"deploy\": {\"files\": [{\"path\": \"/a\", "
                   "\"content\": \"cert\", \"mode\": 644}]},\n" NODES TAIL,
     "t.json:4: deploy.files[0].mode: expected a string of octal digits such "
     "as \"0640\", got integer"},
    {"setuid_mode",
     HEAD CERT SSH "  \"deploy\": {\"files\": [{\"path\": \"/a\", "
                   "\"content\": \"cert\", \"mode\": \"4755\"}]},\n" NODES TAIL,
     "t.json:4: deploy.files[0].mode: 4755: setuid, setgid and sticky bits are "
     "not allowed"},
    {"world_readable_privkey",
     HEAD CERT SSH "  \"deploy\": {\"files\": [\n"
                   "    {\"path\": \"/a\", \"content\": \"cert\"},\n"
                   "    {\"path\": \"/k\", \"content\": \"privkey\",\n"
                   "     \"mode\": \"0644\"}]},\n" NODES TAIL,
     "t.json:7: deploy.files[1].mode: 0644 gives other users access to a "
     "private key; use 0600 or 0640"},
    {"world_readable_combined",
     HEAD CERT SSH
     "  \"deploy\": {\"files\": [{\"path\": \"/a\", "
     "\"content\": \"combined\", \"mode\": \"604\"}]},\n" NODES TAIL,
     "t.json:4: deploy.files[0].mode: 0604 gives other users access to a "
     "private key; use 0600 or 0640"},
    {"port_zero",
     HEAD CERT
     "  \"ssh\": {\"identity\": \"/k\", \"port\": 0},\n" DEPLOY NODES TAIL,
     "t.json:3: ssh.port: must be between 1 and 65535, got 0"},
    {"port_70000",
     HEAD CERT SSH DEPLOY NODES3(
         "{\"name\": \"c\", \"host\": \"h\", \"port\": 70000}") TAIL,
     "t.json:8: nodes[2].port: must be between 1 and 65535, got 70000"},
    {"verify_port_negative",
     HEAD CERT SSH DEPLOY "  \"verify\": {\"port\": -443},\n" NODES TAIL,
     "t.json:5: verify.port: must be between 1 and 65535, got -443"},
    {"timeout_too_long",
     HEAD CERT
     "  \"ssh\": {\"identity\": \"/k\", \"connect_timeout\": 3601},\n" DEPLOY
         NODES TAIL,
     "t.json:3: ssh.connect_timeout: must be between 1 and 3600, got 3601"},
    {"concurrency_too_high",
     HEAD CERT SSH DEPLOY
     "  \"rollout\": {\"concurrency\": 2000},\n" NODES TAIL,
     "t.json:5: rollout.concurrency: must be between 1 and 1024, got 2000"},
    {"renew_zero",
     HEAD CERT
     "  \"acme\": {\"renew_before_days\": 0},\n" SSH DEPLOY NODES TAIL,
     "t.json:3: acme.renew_before_days: must be more than 0 and less than "
     "3650, got 0"},
    {"bad_content",
     HEAD CERT SSH "  \"deploy\": {\"files\": [{\"path\": \"/a\", "
                   "\"content\": \"fulchain\"}]},\n" NODES TAIL,
     "t.json:4: deploy.files[0].content: unknown content \"fulchain\", did you "
     "mean fullchain?"},
    {"bad_content_far",
     HEAD CERT SSH "  \"deploy\": {\"files\": [{\"path\": \"/a\", "
                   "\"content\": \"pem\"}]},\n" NODES TAIL,
     "t.json:4: deploy.files[0].content: unknown content \"pem\" (expected one "
     "of cert, chain, fullchain, privkey, combined)"},
    {"bad_key_type",
     HEAD
     "  \"certificate\": {\"name\": \"web\", \"domains\": [\"example.com\"],\n"
     "                  \"key_type\": \"rsa-1024\"},\n" SSH DEPLOY NODES TAIL,
     "t.json:3: certificate.key_type: unknown key type \"rsa-1024\" (expected "
     "one of ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096)"},
    {"http_directory",
     HEAD CERT
     "  \"acme\": {\"directory\": \"http://ca.example/dir\"},\n" SSH DEPLOY
         NODES TAIL,
     "t.json:3: acme.directory: must start with https://"},
    {"dns01_without_hook",
     HEAD CERT "  \"acme\": {\"directory\": \"https://ca.example/dir\",\n"
               "           \"challenge\": \"dns-01\"},\n" SSH DEPLOY NODES TAIL,
     "t.json:3: acme.dns_hook: required when acme.challenge is \"dns-01\""},
    {"http01_without_webroot",
     HEAD CERT
     "  \"acme\": {\"directory\": \"https://ca.example/dir\"},\n" SSH DEPLOY
         NODES TAIL,
     "t.json:5: deploy.webroot: required when acme.directory is set and "
     "acme.challenge is \"http-01\""},
    {"wildcard_http01",
     HEAD
     "  \"certificate\": {\"name\": \"web\", \"domains\": [\"example.com\",\n"
     "    \"*.example.com\"]},\n"
     "  \"acme\": {\"directory\": \"https://ca.example/dir\"},\n" SSH
     "  \"deploy\": {\"files\": [{\"path\": \"/a\", \"content\": \"cert\"}], "
     "\"webroot\": \"/w\"},\n" NODES TAIL,
     "t.json:3: certificate.domains[1]: a wildcard name needs acme.challenge "
     "\"dns-01\""},
    {"duplicate_domain",
     HEAD
     "  \"certificate\": {\"name\": \"web\", \"domains\": [\"example.com\",\n"
     "    \"www.example.com\",\n    \"WWW.Example.com\"]},\n" SSH DEPLOY NODES
         TAIL,
     "t.json:4: certificate.domains[2]: duplicate of certificate.domains[1]"},
    {"bad_domain",
     HEAD "  \"certificate\": {\"name\": \"web\", \"domains\": "
          "[\"exa_mple.com\"]},\n" SSH DEPLOY NODES TAIL,
     "t.json:2: certificate.domains[0]: contains '_'; DNS names use only a-z "
     "0-9 . - (IDNs in xn-- form)"},
    {"bad_wildcard",
     HEAD "  \"certificate\": {\"name\": \"web\", \"domains\": "
          "[\"www.*.example.com\"]},\n" SSH DEPLOY NODES TAIL,
     "t.json:2: certificate.domains[0]: a wildcard must be the whole first "
     "label (*.example.com)"},
    {"wildcard_server_name",
     HEAD CERT SSH DEPLOY
     "  \"verify\": {\"server_name\": \"*.example.com\"},\n" NODES TAIL,
     "t.json:5: verify.server_name: must not be a wildcard"},
    {"eab_half",
     HEAD CERT
     "  \"acme\": {\"eab\": {\"kid\": \"k\"}},\n" SSH DEPLOY NODES TAIL,
     "t.json:3: acme.eab.hmac_key: missing required key (or give "
     "acme.eab.hmac_key_file)"},
    {"eab_key_and_key_file",
     HEAD CERT
     "  \"acme\": {\"eab\": {\"kid\": \"k\", \"hmac_key\": \"c2Vj\",\n"
     "    \"hmac_key_file\": \"/etc/certfleet/eab.key\"}},\n" SSH DEPLOY NODES
         TAIL,
     "t.json:4: acme.eab.hmac_key_file: give acme.eab.hmac_key or "
     "acme.eab.hmac_key_file, not both"},
    {"eab_key_file_relative",
     HEAD CERT "  \"acme\": {\"eab\": {\"kid\": \"k\", "
               "\"hmac_key_file\": \"eab.key\"}},\n" SSH DEPLOY NODES TAIL,
     "t.json:3: acme.eab.hmac_key_file: must be an absolute path (start "
     "with '/')"},
    {"keep_previous_not_bool",
     HEAD CERT SSH
     "  \"deploy\": {\"files\": [{\"path\": \"/a\", "
     "\"content\": \"cert\"}], \"keep_previous\": \"no\"},\n" NODES TAIL,
     "t.json:4: deploy.keep_previous: expected a boolean, got string"},
    {"store_keep_one",
     HEAD CERT SSH DEPLOY "  \"store\": {\"keep_versions\": 1},\n" NODES TAIL,
     "t.json:5: store.keep_versions: must be between 2 and 1000, got 1"},
    {"store_typo",
     HEAD CERT SSH DEPLOY "  \"store\": {\"keep_version\": 5},\n" NODES TAIL,
     "t.json:5: store.keep_version: unknown key, did you mean keep_versions?"},
    {"eab_bad_key_not_echoed",
     HEAD CERT "  \"acme\": {\"eab\": {\"kid\": \"k\", \"hmac_key\": "
               "\"s3cr3t!!\"}},\n" SSH DEPLOY NODES TAIL,
     "t.json:3: acme.eab.hmac_key: must be base64url (A-Z a-z 0-9 - _)"},
    {"bad_contact",
     HEAD CERT
     "  \"acme\": {\"contact\": [\"ops@example.com\"]},\n" SSH DEPLOY NODES TAIL,
     "t.json:3: acme.contact[0]: must be a mailto: URI "
     "(mailto:ops@example.com)"},
    {"bad_webhook",
     HEAD CERT SSH DEPLOY
     "  \"notify\": {\"webhooks\": [\"https://ok.example/\",\n"
     "    \"ftp://hooks.example.com/x\"]},\n" NODES TAIL,
     "t.json:6: notify.webhooks[1]: must start with https:// or http://"},
    {"newline_in_check",
     HEAD CERT SSH "  \"deploy\": {\"files\": [{\"path\": \"/a\", "
                   "\"content\": \"cert\"}],\n"
                   "    \"check\": \"nginx -t\\nrm -rf /\"},\n" NODES TAIL,
     "t.json:5: deploy.check: contains control characters (newline, tab, ...)"},
    {"empty_reload",
     HEAD CERT SSH "  \"deploy\": {\"files\": [{\"path\": \"/a\", "
                   "\"content\": \"cert\"}], \"reload\": \"\"},\n" NODES TAIL,
     "t.json:4: deploy.reload: must not be empty"},
    {"dash_user",
     HEAD CERT
     "  \"ssh\": {\"identity\": \"/k\", \"user\": \"-oX\"},\n" DEPLOY NODES TAIL,
     "t.json:3: ssh.user: must not start with '-'"},
    {"bad_owner",
     HEAD CERT SSH
     "  \"deploy\": {\"files\": [{\"path\": \"/a\", "
     "\"content\": \"cert\", \"owner\": \"root;id\"}]},\n" NODES TAIL,
     "t.json:4: deploy.files[0].owner: contains ';'; user and group names use "
     "only A-Z a-z 0-9 . _ -"},
    {"file_not_object",
     HEAD CERT SSH "  \"deploy\": {\"files\": [\"/etc/a.pem\"]},\n" NODES TAIL,
     "t.json:4: deploy.files[0]: expected an object, got string"},
    {"description_not_string",
     HEAD "  \"description\": [\"one\", \"two\"],\n" CERT SSH DEPLOY NODES TAIL,
     "t.json:2: description: expected a string, got array"},
    {"escaped_key_located",
     HEAD "  \"x-note\": \"a } { [ \\\" tricky string\",\n" CERT
          "  \"\\u0073sh\": {\"identity\": \"/k\",\n    \"p\\u006frt\": "
          "true},\n" DEPLOY NODES TAIL,
     "t.json:5: ssh.port: expected an integer, got boolean"},
    {"control_chars_not_echoed",
     HEAD CERT SSH DEPLOY "  \"\\u001b[31mred\": 1,\n" NODES TAIL,
     "t.json:5: ?[31mred: unknown key"},
    {"top_level_array", "[\n  {\"certificate\": {}}\n]\n",
     "t.json:1: expected a JSON object at the top level, got array"},
    {"not_json", "hello, world\n",
     "t.json:1:5: invalid JSON: '[' or '{' expected near 'hello'"},
    {"trailing_garbage", MINIMAL "x\n",
     "t.json:7:1: invalid JSON: end of file expected near 'x'"},
    {"empty_file", "", "t.json:1: empty file, expected a JSON object"},
    {"blank_file", " \n\t\r\n", "t.json:1: empty file, expected a JSON object"},
};

static void
run_bad_case(void **state)
{
	const struct bad_case *bc = *state;
	struct cf_playbook *pb = NULL;
	cf_err_t err = {0};

	assert_int_equal(playbook_load_buf("t.json", bc->json, strlen(bc->json),
	                                   &pb, &err),
	                 -1);
	assert_null(pb);
	assert_int_equal(err.code, CF_ERR_CONFIG);
	assert_string_equal(err.msg, bc->msg);
}

static void
test_too_deep(void **state)
{
	(void)state;
	cf_buf_t b = {0};
	struct cf_playbook *pb = NULL;
	cf_err_t err = {0};

	assert_int_equal(cf_buf_printf(&b, "{\n"), 0);
	for (int i = 0; i < 40; i++)
		assert_int_equal(cf_buf_printf(&b, "\"x-deep\": [\n"), 0);
	assert_int_equal(playbook_load_buf("t.json", b.data, b.len, &pb, &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_CONFIG);
	/* the top-level object is depth 1, so depth 33 opens on line 33 */
	assert_string_equal(err.msg, "t.json:33: nested deeper than 32 levels "
	                             "(a playbook needs 4)");
	cf_buf_free(&b);
}

static void
test_huge(void **state)
{
	(void)state;
	size_t len = 1024 * 1024 + 1;
	char *text = malloc(len), tmpl[] = "/tmp/test_playbook.XXXXXX";
	char msg[CF_ERR_MSG_MAX];
	struct cf_playbook *pb = NULL;
	cf_err_t err = {0};
	int fd;

	assert_non_null(text);
	memset(text, ' ', len);
	memcpy(text, MINIMAL, strlen(MINIMAL));
	assert_int_equal(playbook_load_buf("t.json", text, len, &pb, &err), -1);
	assert_int_equal(err.code, CF_ERR_CONFIG);
	assert_string_equal(err.msg, "t.json:1: larger than 1 MiB (1048576 "
	                             "bytes), too big for a playbook");
	/* exactly 1 MiB of valid text is fine */
	assert_int_equal(playbook_load_buf("t.json", text, len - 1, &pb, &err),
	                 0);
	playbook_free(pb);
	pb = NULL;

	/* the same through a real file */
	fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	assert_int_equal(playbook_load(tmpl, &pb, &err), -1);
	snprintf(msg, sizeof(msg),
	         "%s:1: larger than 1 MiB (1048576 bytes), too "
	         "big for a playbook",
	         tmpl);
	assert_string_equal(err.msg, msg);
	assert_int_equal(truncate(tmpl, (off_t)len - 1), 0);
	if (playbook_load(tmpl, &pb, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(pb->path, tmpl);
	playbook_free(pb);
	unlink(tmpl);
	free(text);
}

/* Write text to a new temp file (mkstemp on tmpl) of the given mode. */
static void
write_temp(char *tmpl, const char *text, mode_t mode)
{
	int fd = mkstemp(tmpl);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

#define EAB_INLINE                                                             \
	HEAD CERT                                                              \
	    "  \"acme\": {\"eab\": {\"kid\": \"k\", "                          \
	    "\"hmac_key\": \"c2VjcmV0LWtleQ\"}},\n" SSH DEPLOY NODES TAIL

/* A playbook holding the EAB HMAC key is a secret file: refused when
 * group or others may read it, naming the file and its mode. */
static void
test_eab_inline_mode(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/test_playbook.XXXXXX", msg[CF_ERR_MSG_MAX];
	struct cf_playbook *pb = NULL;
	cf_err_t err = {0};

	write_temp(tmpl, EAB_INLINE, 0644);
	assert_int_equal(playbook_load(tmpl, &pb, &err), -1);
	assert_null(pb);
	assert_int_equal(err.code, CF_ERR_CONFIG);
	snprintf(msg, sizeof(msg),
	         "%s: mode 0644: the playbook holds "
	         "acme.eab.hmac_key and is readable by group or others; chmod "
	         "600 it or use acme.eab.hmac_key_file",
	         tmpl);
	assert_string_equal(err.msg, msg);
	assert_int_equal(chmod(tmpl, 0640), 0);
	assert_int_equal(playbook_load(tmpl, &pb, &err), -1);
	assert_non_null(strstr(err.msg, ": mode 0640: "));
	assert_int_equal(chmod(tmpl, 0600), 0);
	if (playbook_load(tmpl, &pb, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(pb->acme.eab_hmac_key, "c2VjcmV0LWtleQ");
	assert_null(pb->acme.eab_hmac_key_file);
	/* nothing to read: a no-op */
	assert_int_equal(playbook_load_secrets(pb, &err), 0);
	playbook_free(pb);
	unlink(tmpl);
}

static void
test_eab_key_file(void **state)
{
	(void)state;
	char keyf[] = "/tmp/test_eab_key.XXXXXX";
	char pbf[] = "/tmp/test_playbook.XXXXXX";
	char text[2048], msg[CF_ERR_MSG_MAX];
	struct cf_playbook *pb = NULL;
	cf_err_t err = {0};

	write_temp(keyf, "c2VjcmV0LWtleQ\n", 0640);
	snprintf(text, sizeof(text),
	         HEAD CERT
	         "  \"acme\": {\"eab\": "
	         "{\"kid\": \"k\", \"hmac_key_file\": \"%s\"}},\n" SSH DEPLOY
	             NODES TAIL,
	         keyf);
	/* the playbook itself holds no secret: 0644 is fine */
	write_temp(pbf, text, 0644);
	if (playbook_load(pbf, &pb, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(pb->acme.eab_hmac_key_file, keyf);
	/* not read at load: status/verify/check never touch it */
	assert_null(pb->acme.eab_hmac_key);

	/* 0640: refused, naming the file and its mode */
	assert_int_equal(playbook_load_secrets(pb, &err), -1);
	assert_int_equal(err.code, CF_ERR_CONFIG);
	snprintf(msg, sizeof(msg),
	         "%s: acme.eab.hmac_key_file %s: mode 0640: "
	         "the EAB HMAC key is readable by group or others; chmod 600 "
	         "it",
	         pbf, keyf);
	assert_string_equal(err.msg, msg);
	assert_null(pb->acme.eab_hmac_key);

	/* 0600: read, line end trimmed */
	assert_int_equal(chmod(keyf, 0600), 0);
	if (playbook_load_secrets(pb, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(pb->acme.eab_hmac_key, "c2VjcmV0LWtleQ");
	playbook_free(pb);
	pb = NULL;

	/* not base64url: refused, the bytes never echoed */
	unlink(keyf);
	strcpy(keyf, "/tmp/test_eab_key.XXXXXX");
	write_temp(keyf, "s3cr3t!!", 0600);
	snprintf(text, sizeof(text),
	         HEAD CERT
	         "  \"acme\": {\"eab\": "
	         "{\"kid\": \"k\", \"hmac_key_file\": \"%s\"}},\n" SSH DEPLOY
	             NODES TAIL,
	         keyf);
	assert_int_equal(playbook_load_buf("t.json", text, strlen(text), &pb,
	                                   &err),
	                 0);
	assert_int_equal(playbook_load_secrets(pb, &err), -1);
	snprintf(msg, sizeof(msg),
	         "t.json: acme.eab.hmac_key_file %s: must be "
	         "base64url (A-Z a-z 0-9 - _)",
	         keyf);
	assert_string_equal(err.msg, msg);
	assert_null(strstr(err.msg, "s3cr3t"));

	/* missing: refused, naming the file */
	unlink(keyf);
	assert_int_equal(playbook_load_secrets(pb, &err), -1);
	snprintf(msg, sizeof(msg),
	         "t.json: acme.eab.hmac_key_file %s: No such "
	         "file or directory",
	         keyf);
	assert_string_equal(err.msg, msg);

	/* a directory is not a key file */
	playbook_free(pb);
	pb = NULL;
	snprintf(text, sizeof(text),
	         HEAD CERT
	         "  \"acme\": {\"eab\": "
	         "{\"kid\": \"k\", \"hmac_key_file\": \"/tmp\"}},\n" SSH DEPLOY
	             NODES TAIL);
	assert_int_equal(playbook_load_buf("t.json", text, strlen(text), &pb,
	                                   &err),
	                 0);
	assert_int_equal(playbook_load_secrets(pb, &err), -1);
	assert_string_equal(err.msg,
	                    "t.json: acme.eab.hmac_key_file /tmp: not a "
	                    "regular file");
	playbook_free(pb);
	unlink(pbf);
}

static void
test_missing_file(void **state)
{
	(void)state;
	struct cf_playbook *pb = NULL;
	cf_err_t err = {0};

	assert_int_equal(playbook_load("/nonexistent/p.json", &pb, &err), -1);
	assert_null(pb);
	assert_int_equal(err.code, CF_ERR_CONFIG);
	assert_string_equal(err.msg,
	                    "/nonexistent/p.json: cannot open playbook: "
	                    "No such file or directory");
}

/* ---- files on disk ------------------------------------------------------ */

static void
test_fixture_files(void **state)
{
	(void)state;
	char path[4200], msg[4400];
	struct cf_playbook *pb = NULL;
	cf_err_t err = {0};

	src_path("tests/unit/fixtures/playbook/valid-full.json", path,
	         sizeof(path));
	if (playbook_load(path, &pb, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(pb->cert.name, "shop");
	assert_int_equal(pb->n_nodes, 3);
	assert_string_equal(pb->nodes[2].host, "2001:db8::12");
	assert_int_equal(pb->nodes[2].port, 2222);
	assert_string_equal(pb->acme.challenge, "dns-01");
	assert_int_equal(pb->deploy.files[1].mode, 0640);
	playbook_free(pb);
	pb = NULL;

	src_path("tests/unit/fixtures/playbook/bad-host.json", path,
	         sizeof(path));
	assert_int_equal(playbook_load(path, &pb, &err), -1);
	snprintf(msg, sizeof(msg),
	         "%s:15: nodes[2].host: contains whitespace "
	         "or control characters",
	         path);
	assert_string_equal(err.msg, msg);

	src_path("tests/unit/fixtures/playbook/bad-duplicate.json", path,
	         sizeof(path));
	assert_int_equal(playbook_load(path, &pb, &err), -1);
	snprintf(msg, sizeof(msg), "%s:11:12: deploy.reload: duplicate key",
	         path);
	assert_string_equal(err.msg, msg);
}

/* Every shipped example must load and explain itself. */
static void
test_shipped_playbooks(void **state)
{
	(void)state;
	char dir[4200];
	struct dirent *de;
	size_t seen = 0;
	DIR *d;

	src_path("playbooks", dir, sizeof(dir));
	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char path[8400];
		struct cf_playbook *pb = NULL;
		cf_err_t err = {0};
		size_t n = strlen(de->d_name);

		if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (playbook_load(path, &pb, &err) < 0)
			fail_msg("%s", err.msg);
		playbook_free(pb);
		seen++;
	}
	closedir(d);
	assert_true(seen >= 5);
}

static void
find_srcdir(const char *argv0)
{
	const char *env = getenv("CF_SRCDIR");
	char copy[4096];
	struct stat st;

	if (env != NULL) {
		snprintf(srcdir, sizeof(srcdir), "%s", env);
		return;
	}
	if (stat("tests/unit/fixtures/playbook", &st) == 0)
		return;
	snprintf(copy, sizeof(copy), "%s", argv0);
	snprintf(srcdir, sizeof(srcdir), "%s/../..", dirname(copy));
}

int
main(int argc, char **argv)
{
	static const struct CMUnitTest fixed[] = {
	    cmocka_unit_test(test_jsonpos_found),
	    cmocka_unit_test(test_jsonpos_missing),
	    cmocka_unit_test(test_jsonpos_malformed),
	    cmocka_unit_test(test_jsonpos_depth),
	    cmocka_unit_test(test_jsonpos_key_path_at),
	    cmocka_unit_test(test_jsonpos_format),
	    cmocka_unit_test(test_valid_full),
	    cmocka_unit_test(test_valid_minimal),
	    cmocka_unit_test(test_verify_endpoints_names),
	    cmocka_unit_test(test_valid_edges),
	    cmocka_unit_test(test_too_deep),
	    cmocka_unit_test(test_huge),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_eab_inline_mode),
	    cmocka_unit_test(test_eab_key_file),
	    cmocka_unit_test(test_fixture_files),
	    cmocka_unit_test(test_shipped_playbooks),
	};
	size_t n_fixed = sizeof(fixed) / sizeof(fixed[0]);
	size_t n_bad = sizeof(bad_cases) / sizeof(bad_cases[0]);
	struct CMUnitTest *tests;
	int rc;

	(void)argc;
	find_srcdir(argv[0]);
	/* One named test per rejected input, so a failure names the case. */
	tests = calloc(n_fixed + n_bad, sizeof(*tests));
	if (tests == NULL)
		return 1;
	memcpy(tests, fixed, sizeof(fixed));
	for (size_t i = 0; i < n_bad; i++) {
		tests[n_fixed + i].name = bad_cases[i].name;
		tests[n_fixed + i].test_func = run_bad_case;
		tests[n_fixed + i].initial_state = (void *)&bad_cases[i];
	}
	rc = _cmocka_run_group_tests("playbook", tests, n_fixed + n_bad, NULL,
	                             NULL);
	free(tests);
	return rc;
}
