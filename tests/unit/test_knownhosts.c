/* test_knownhosts.c - known_hosts parsing and matching without a server.
 * Keys and hashed lines were made with ssh-keygen (OpenSSH 9.2):
 * ssh-keygen -t ed25519 / -t ecdsa, ssh-keygen -H, ssh-keygen -lf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "certfleet/b64.h"
#include "../../src/knownhosts.h"

#define ED_B64                                                                 \
	"AAAAC3NzaC1lZDI1NTE5AAAAIPsUXlkBiyh2SncIRhp5Yf9moQeR9ZlHTW1HuyodosKH"
#define ED_FP "SHA256:Sv5Z2UlFx76B/xBlH3uLopalhSKFIMeSvyFqitsne5w"
#define EC_B64                                                                 \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBB/"              \
	"GLZMfC8PbrUrfa6"                                                      \
	"+X22g7lWignN7p+0EDpCLJO6khbjIT4IlR2Jv17IrtwquS1bia+keIBjebXU/"        \
	"BwJurbmI="
#define EC_FP "SHA256:CEeWoVZzQ6cuDX+iiV/K+Sn8rck350YS7CF0F/e9ctI"
#define OTHER_B64                                                              \
	"AAAAC3NzaC1lZDI1NTE5AAAAIL/REUwJZ21rp5uhUi8kTgwRCHUZP7ha7xuLBalDAzTz"

/* ssh-keygen -H of "web1.example.com <ed>" and
 * "[web1.example.com]:2222 <ec>". */
#define HASHED_ED_LINE                                                         \
	"|1|PlTWaU/L6nqzmp9R6OSjPCsCAxA=|QcCsCckWGW4eX1hnhPGv8DMsXyk= "        \
	"ssh-ed25519 " ED_B64
#define HASHED_EC_LINE                                                         \
	"|1|HEZrPWJI3DCpyFBQU0LzJXNjFkw=|PVspof9nuCxGfDnxNWV/4gz0hrM= "        \
	"ecdsa-sha2-nistp256 " EC_B64

struct blob {
	unsigned char *p;
	size_t n;
};

static struct blob
blob_of(const char *b64)
{
	struct blob b = {NULL, 0};

	assert_int_equal(b64_decode(CF_B64_STD, b64, strlen(b64), &b.p, &b.n),
	                 0);
	return b;
}

static cf_knownhosts_t *
parse(const char *text)
{
	cf_knownhosts_t *kh = NULL;
	cf_err_t err = {0};

	assert_int_equal(knownhosts_parse(text, strlen(text), &kh, &err), 0);
	assert_non_null(kh);
	return kh;
}

/* Result of checking key b64 for host:port, and the key types known. */
static cf_knownhosts_result_t
check(const cf_knownhosts_t *kh, const char *host, unsigned port,
      const char *b64, char *types, size_t tlen)
{
	cf_knownhosts_hits_t *h = NULL;
	cf_err_t err = {0};
	cf_knownhosts_result_t r;
	struct blob b = blob_of(b64);

	assert_int_equal(knownhosts_lookup(kh, host, port, &h, &err), 0);
	r = knownhosts_hits_check(h, b.p, b.n);
	if (types != NULL) {
		strncpy(types, knownhosts_hits_key_types(h), tlen - 1);
		types[tlen - 1] = '\0';
	}
	knownhosts_hits_free(h);
	free(b.p);
	return r;
}

static void
test_plain(void **state)
{
	cf_knownhosts_t *kh;
	char types[128];

	(void)state;
	kh = parse("web1.example.com,10.0.0.1 ssh-ed25519 " ED_B64
	           " a comment\n");
	assert_int_equal(check(kh, "web1.example.com", 22, ED_B64, types,
	                       sizeof(types)),
	                 KNOWNHOSTS_MATCH);
	assert_string_equal(types, "ssh-ed25519");
	assert_int_equal(check(kh, "10.0.0.1", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_MATCH);
	/* host names compare case-insensitively, as in OpenSSH */
	assert_int_equal(check(kh, "WEB1.Example.COM", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_MATCH);
	/* same type, other key: changed; other type: unknown */
	assert_int_equal(check(kh, "web1.example.com", 22, OTHER_B64, NULL, 0),
	                 KNOWNHOSTS_MISMATCH);
	assert_int_equal(check(kh, "web1.example.com", 22, EC_B64, NULL, 0),
	                 KNOWNHOSTS_NOTFOUND);
	assert_int_equal(check(kh, "web2.example.com", 22, ED_B64, types,
	                       sizeof(types)),
	                 KNOWNHOSTS_NOTFOUND);
	assert_string_equal(types, "");
	/* a plain entry covers port 22 only: no fallback for other ports */
	assert_int_equal(check(kh, "web1.example.com", 2222, ED_B64, types,
	                       sizeof(types)),
	                 KNOWNHOSTS_NOTFOUND);
	assert_string_equal(types, "");
	knownhosts_free(kh);
}

static void
test_hashed(void **state)
{
	cf_knownhosts_t *kh;
	char types[128];

	(void)state;
	kh = parse(HASHED_ED_LINE "\n" HASHED_EC_LINE "\n");
	assert_int_equal(check(kh, "web1.example.com", 22, ED_B64, types,
	                       sizeof(types)),
	                 KNOWNHOSTS_MATCH);
	assert_string_equal(types, "ssh-ed25519");
	assert_int_equal(check(kh, "web1.example.com", 2222, EC_B64, types,
	                       sizeof(types)),
	                 KNOWNHOSTS_MATCH);
	assert_string_equal(types, "ecdsa-sha2-nistp256");
	assert_int_equal(check(kh, "web1.example.com", 2222, ED_B64, NULL, 0),
	                 KNOWNHOSTS_NOTFOUND);
	assert_int_equal(check(kh, "web1.example.com", 22, OTHER_B64, NULL, 0),
	                 KNOWNHOSTS_MISMATCH);
	assert_int_equal(check(kh, "web1.example.org", 22, ED_B64, types,
	                       sizeof(types)),
	                 KNOWNHOSTS_NOTFOUND);
	assert_string_equal(types, "");
	knownhosts_free(kh);
}

static void
test_host_port(void **state)
{
	cf_knownhosts_t *kh;

	(void)state;
	kh = parse("[db.example.com]:2222 ssh-ed25519 " ED_B64 "\n"
	           "[2001:db8::1]:2200 ssh-ed25519 " ED_B64 "\n"
	           "2001:db8::2 ssh-ed25519 " ED_B64 "\n");
	assert_int_equal(check(kh, "db.example.com", 2222, ED_B64, NULL, 0),
	                 KNOWNHOSTS_MATCH);
	assert_int_equal(check(kh, "db.example.com", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_NOTFOUND);
	assert_int_equal(check(kh, "db.example.com", 2223, ED_B64, NULL, 0),
	                 KNOWNHOSTS_NOTFOUND);
	assert_int_equal(check(kh, "2001:db8::1", 2200, ED_B64, NULL, 0),
	                 KNOWNHOSTS_MATCH);
	assert_int_equal(check(kh, "2001:db8::2", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_MATCH);
	knownhosts_free(kh);
}

static void
test_comments_blank_and_junk(void **state)
{
	cf_knownhosts_t *kh;

	(void)state;
	kh = parse("# a comment\n"
	           "\n"
	           "   \t  \n"
	           "   # indented comment\n"
	           "web1 ssh-ed25519 " ED_B64 "\r\n" /* CRLF */
	           "web2 ssh-ed25519\n"              /* no key */
	           "web3 ssh-ed25519 !!!notbase64!!!\n"
	           "web4 ssh-rsa " ED_B64 "\n" /* type lies */
	           "web5 1024 35 1234567\n"    /* SSH1 */
	           "|1|c2FsdA==|aGFzaA== ssh-ed25519 " ED_B64
	           "\n" /* short salt */
	           "@unknown-marker web6 ssh-ed25519 " ED_B64 "\n"
	           "\tweb7   ssh-ed25519\t" ED_B64); /* no final EOL */
	assert_int_equal(check(kh, "web1", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_MATCH);
	assert_int_equal(check(kh, "web4", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_NOTFOUND);
	assert_int_equal(check(kh, "web6", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_NOTFOUND);
	assert_int_equal(check(kh, "web7", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_MATCH);
	knownhosts_free(kh);
}

static void
test_cert_authority_skipped(void **state)
{
	cf_knownhosts_t *kh;
	char types[128];

	(void)state;
	kh = parse("@cert-authority *.example.com ssh-ed25519 " ED_B64 "\n");
	/* the CA key itself is not accepted as a host key */
	assert_int_equal(check(kh, "web1.example.com", 22, ED_B64, types,
	                       sizeof(types)),
	                 KNOWNHOSTS_NOTFOUND);
	assert_string_equal(types, "");
	knownhosts_free(kh);
}

static void
test_revoked(void **state)
{
	cf_knownhosts_t *kh;

	(void)state;
	kh = parse("web1 ssh-ed25519 " ED_B64 "\n"
	           "web1 ecdsa-sha2-nistp256 " EC_B64 "\n"
	           "@revoked * ssh-ed25519 " ED_B64 "\n");
	/* revoked wins over a matching entry, and for any host */
	assert_int_equal(check(kh, "web1", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_REVOKED);
	assert_int_equal(check(kh, "elsewhere", 2222, ED_B64, NULL, 0),
	                 KNOWNHOSTS_REVOKED);
	assert_int_equal(check(kh, "web1", 22, EC_B64, NULL, 0),
	                 KNOWNHOSTS_MATCH);
	assert_int_equal(check(kh, "web1", 22, OTHER_B64, NULL, 0),
	                 KNOWNHOSTS_MISMATCH);
	knownhosts_free(kh);
	/* host patterns on the @revoked line do not narrow it */
	kh = parse("web1 ssh-ed25519 " ED_B64 "\n"
	           "@revoked otherhost ssh-ed25519 " ED_B64 "\n");
	assert_int_equal(check(kh, "web1", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_REVOKED);
	knownhosts_free(kh);
}

static void
test_type_order(void **state)
{
	cf_knownhosts_t *kh;
	char types[128];

	(void)state;
	/* file order ecdsa, ed25519: OpenSSH preference puts ed25519 first */
	kh = parse("web1 ecdsa-sha2-nistp256 " EC_B64 "\n"
	           "web1 ssh-ed25519 " OTHER_B64 "\n"
	           "web1 ssh-ed25519 " ED_B64 "\n");
	assert_int_equal(check(kh, "web1", 22, ED_B64, types, sizeof(types)),
	                 KNOWNHOSTS_MATCH);
	assert_string_equal(types, "ssh-ed25519,ecdsa-sha2-nistp256");
	/* two keys of one type: either matches (key rotation) */
	assert_int_equal(check(kh, "web1", 22, OTHER_B64, NULL, 0),
	                 KNOWNHOSTS_MATCH);
	knownhosts_free(kh);
}

static void
test_patterns(void **state)
{
	cf_knownhosts_t *kh;

	(void)state;
	kh = parse("*.example.com,!bad.example.com ssh-ed25519 " ED_B64 "\n"
	           "db?.example.net ssh-ed25519 " ED_B64 "\n"
	           "[10.1.*]:2222 ssh-ed25519 " ED_B64 "\n");
	assert_int_equal(check(kh, "web1.example.com", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_MATCH);
	assert_int_equal(check(kh, "bad.example.com", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_NOTFOUND);
	assert_int_equal(check(kh, "example.com", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_NOTFOUND);
	assert_int_equal(check(kh, "db1.example.net", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_MATCH);
	assert_int_equal(check(kh, "db10.example.net", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_NOTFOUND);
	assert_int_equal(check(kh, "10.1.2.3", 2222, ED_B64, NULL, 0),
	                 KNOWNHOSTS_MATCH);
	assert_int_equal(check(kh, "10.1.2.3", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_NOTFOUND);
	knownhosts_free(kh);
}

static void
test_not_nul_terminated_and_empty(void **state)
{
	static const char text[] = "web1 ssh-ed25519 " ED_B64 "XXXX";
	cf_knownhosts_t *kh = NULL;
	cf_err_t err = {0};

	(void)state;
	/* the length excludes the trailing XXXX, which would spoil the key */
	assert_int_equal(knownhosts_parse(text, strlen(text) - 4, &kh, &err),
	                 0);
	assert_int_equal(check(kh, "web1", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_MATCH);
	knownhosts_free(kh);
	assert_int_equal(knownhosts_parse("", 0, &kh, &err), 0);
	assert_int_equal(check(kh, "web1", 22, ED_B64, NULL, 0),
	                 KNOWNHOSTS_NOTFOUND);
	knownhosts_free(kh);
}

static void
test_fingerprint(void **state)
{
	char fp[KNOWNHOSTS_FP_LEN];
	struct blob b;

	(void)state;
	b = blob_of(ED_B64);
	knownhosts_fingerprint(b.p, b.n, fp);
	assert_string_equal(fp, ED_FP);
	free(b.p);
	b = blob_of(EC_B64);
	knownhosts_fingerprint(b.p, b.n, fp);
	assert_string_equal(fp, EC_FP);
	free(b.p);
}

static void
test_offered_blob_malformed(void **state)
{
	cf_knownhosts_t *kh;
	cf_knownhosts_hits_t *h = NULL;
	cf_err_t err = {0};
	static const unsigned char junk[] = {0, 0, 0, 200, 's', 's', 'h'};

	(void)state;
	kh = parse("web1 ssh-ed25519 " ED_B64 "\n");
	assert_int_equal(knownhosts_lookup(kh, "web1", 22, &h, &err), 0);
	assert_int_equal(knownhosts_hits_check(h, junk, sizeof(junk)),
	                 KNOWNHOSTS_NOTFOUND);
	assert_int_equal(knownhosts_hits_check(h, junk, 0),
	                 KNOWNHOSTS_NOTFOUND);
	knownhosts_hits_free(h);
	knownhosts_free(kh);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain),
	    cmocka_unit_test(test_hashed),
	    cmocka_unit_test(test_host_port),
	    cmocka_unit_test(test_comments_blank_and_junk),
	    cmocka_unit_test(test_cert_authority_skipped),
	    cmocka_unit_test(test_revoked),
	    cmocka_unit_test(test_type_order),
	    cmocka_unit_test(test_patterns),
	    cmocka_unit_test(test_not_nul_terminated_and_empty),
	    cmocka_unit_test(test_fingerprint),
	    cmocka_unit_test(test_offered_blob_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
