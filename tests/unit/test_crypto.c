/* test_crypto.c - keys, CSRs, certificate parsing and bundle checks.
 * Certificates are minted inside the test with OpenSSL so every edge
 * (expired, wildcard, CN-only, wrong key) is exact and needs no files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certfleet/crypto.h"
#include "certfleet/util.h"

#define DAY 86400

/* Success expected; on failure show the module's message. */
#define assert_ok(call)                                                        \
	do {                                                                   \
		if ((call) != 0)                                               \
			fail_msg("%s: %s", #call, err.msg);                    \
	} while (0)

/* ---- fixtures made with the openssl CLI; expected values copied from
 * `openssl x509 -noout -text` / `-subject -nameopt RFC2253` ---- */
static const char FIXTURE_LEAF[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIB9zCCAZ6gAwIBAgIVAIoBAgMEBQYHCAkKCwwNDg8QERITMAoGCCqGSM49BAMC\n"
    "MEUxCzAJBgNVBAYTAkRFMRcwFQYDVQQKDA5DZXJ0ZmxlZXQgVGVzdDEdMBsGA1UE\n"
    "AwwUQ2VydGZsZWV0IEZpeHR1cmUgQ0EwIBcNMjYxMTI1MDY1NzA4WhgPMjEyNjEx\n"
    "MDEwNjU3MDhaMDIxFjAUBgNVBAoMDUV4YW1wbGUsIEluYy4xGDAWBgNVBAMMD3d3\n"
    "dy5leGFtcGxlLmNvbTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABG7WTL3XK7JY\n"
    "Blzo2brjUNAVuE9X057MMpn6Wezv3K/E5K7S5zOah8KFMQbSY5RbujMppTh8bmYn\n"
    "jCqTZx38QTOjfDB6MC0GA1UdEQQmMCSCD3d3dy5leGFtcGxlLmNvbYILZXhhbXBs\n"
    "ZS5jb22HBMAAAgEwHwYDVR0jBBgwFoAU2lT6RvZCvvexKzwqFfTPRJlXEr8wCQYD\n"
    "VR0TBAIwADAdBgNVHQ4EFgQUkOyY9jy51AgvIgT6+H3+8WPCWoMwCgYIKoZIzj0E\n"
    "AwIDRwAwRAIgUAnymWW65+T2o0rc/1BCHgwykTA/2jYePXLj52gzYV4CIGA5ogpJ\n"
    "np5mMVHrYhRv9rulxYHQGvpQ4QlxUTR1CSoY\n"
    "-----END CERTIFICATE-----\n";
static const char FIXTURE_CA[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBzTCCAXSgAwIBAgIBATAKBggqhkjOPQQDAjBFMQswCQYDVQQGEwJERTEXMBUG\n"
    "A1UECgwOQ2VydGZsZWV0IFRlc3QxHTAbBgNVBAMMFENlcnRmbGVldCBGaXh0dXJl\n"
    "IENBMCAXDTI2MTEyNTA2NTcwOFoYDzIxMjYxMTAxMDY1NzA4WjBFMQswCQYDVQQG\n"
    "EwJERTEXMBUGA1UECgwOQ2VydGZsZWV0IFRlc3QxHTAbBgNVBAMMFENlcnRmbGVl\n"
    "dCBGaXh0dXJlIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEADDhwojCcVJg\n"
    "jBAx+alenARsc4eo3cDP2qbz7k8ebksfX8zLqQSmjjZ3wgJ8AG8Tp9C4VWI1DOBZ\n"
    "054nwhj9DKNTMFEwHQYDVR0OBBYEFNpU+kb2Qr73sSs8KhX0z0SZVxK/MB8GA1Ud\n"
    "IwQYMBaAFNpU+kb2Qr73sSs8KhX0z0SZVxK/MA8GA1UdEwEB/wQFMAMBAf8wCgYI\n"
    "KoZIzj0EAwIDRwAwRAIgcbVE5NlyVCrsIB9xvOtESW26SQYvA/0d9tNvpzj8E9MC\n"
    "IBwy+1rB1meZfyvuwCDS0iaNo+v5VpDz0vlJGL/CpiEY\n"
    "-----END CERTIFICATE-----\n";

/* ---- shared keys and CA, made once per run (RSA keygen is slow) ---- */
static EVP_PKEY *k_ec, *k_ec2, *k_rsa, *k_ca;
static X509 *ca;
static int64_t now;

static EVP_PKEY *
ec_key(void)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	assert_non_null(k);
	return k;
}

/* A certificate for key, signed by issuer (self-signed if NULL).  sans is
 * a comma list for the SAN extension ("DNS:a,DNS:b") or NULL for none. */
static X509 *
mint(EVP_PKEY *key, const char *cn, const char *sans, int64_t nb, int64_t na,
     EVP_PKEY *ikey, X509 *issuer, int is_ca, long serial)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	X509_NAME *nm;
	X509 *x = X509_new();

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
	assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb));
	assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na));
	assert_int_equal(X509_set_pubkey(x, key), 1);
	nm = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC,
	                           (const unsigned char *)"certfleet test", -1,
	                           -1, 0);
	if (cn != NULL)
		X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
		                           (const unsigned char *)cn, -1, -1,
		                           0);
	X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer)
	                                       : nm);
	X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
	                          is_ca ? "critical,CA:TRUE" : "CA:FALSE");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	ext =
	    X509V3_EXT_conf_nid(NULL, &v3, NID_subject_key_identifier, "hash");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	if (issuer != NULL) {
		ext =
		    X509V3_EXT_conf_nid(NULL, &v3, NID_authority_key_identifier,
		                        "keyid:always");
		assert_non_null(ext);
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	if (sans != NULL) {
		ext =
		    X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, sans);
		assert_non_null(ext);
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	assert_true(X509_sign(x, ikey != NULL ? ikey : key, EVP_sha256()) > 0);
	return x;
}

static char *
bio_take(BIO *b)
{
	BUF_MEM *bm;
	char *s;

	BIO_get_mem_ptr(b, &bm);
	s = strndup(bm->data, bm->length);
	assert_non_null(s);
	BIO_free(b);
	return s;
}

static char *
cert_pem(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());

	assert_int_equal(PEM_write_bio_X509(b, x), 1);
	return bio_take(b);
}

/* form: 0 PKCS#8, 1 traditional ("BEGIN RSA/EC PRIVATE KEY"). */
static char *
key_pem(EVP_PKEY *k, int form)
{
	BIO *b = BIO_new(BIO_s_mem());

	if (form == 0)
		assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0,
		                                          NULL, NULL),
		                 1);
	else
		assert_int_equal(PEM_write_bio_PrivateKey_traditional(b, k,
		                                                      NULL,
		                                                      NULL, 0,
		                                                      NULL,
		                                                      NULL),
		                 1);
	return bio_take(b);
}

static char *
cat3(const char *a, const char *b, const char *c)
{
	size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
	char *s = malloc(la + lb + lc + 1);

	assert_non_null(s);
	memcpy(s, a, la);
	memcpy(s + la, b, lb);
	memcpy(s + la + lb, c, lc + 1);
	return s;
}

static int
group_setup(void **state)
{
	(void)state;
	now = (int64_t)time(NULL);
	k_ec = ec_key();
	k_ec2 = ec_key();
	k_ca = ec_key();
	k_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (k_rsa == NULL)
		return -1;
	ca = mint(k_ca, "Test Issuing CA", NULL, now - DAY, now + 365 * DAY,
	          NULL, NULL, 1, 7);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(k_ec);
	EVP_PKEY_free(k_ec2);
	EVP_PKEY_free(k_ca);
	EVP_PKEY_free(k_rsa);
	X509_free(ca);
	return 0;
}

/* A leaf for k_ec signed by the test CA, valid now. */
static X509 *
leaf(const char *cn, const char *sans)
{
	return mint(k_ec, cn, sans, now - DAY, now + 90 * DAY, k_ca, ca, 0, 42);
}

/* Run crypto_bundle_from_pem expecting failure; return the message. */
static void
expect_fail(const char *cert, const char *chain, const char *key,
            char *const *domains, size_t n, int64_t at, const char *needle)
{
	struct cf_bundle b;
	struct cf_certinfo ci;
	cf_err_t err = {0};

	memset(&b, 0x5a, sizeof(b));
	memset(&ci, 0x5a, sizeof(ci));
	assert_int_equal(crypto_bundle_from_pem(cert, chain, key, domains, n,
	                                        at, &b, &ci, &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_DATA);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
	/* Outputs untouched on failure. */
	assert_ptr_equal(b.cert, (void *)0x5a5a5a5a5a5a5a5aULL);
	assert_ptr_equal(ci.subject, (void *)0x5a5a5a5a5a5a5a5aULL);
}

/* ------------------------------------------------------------------ */

static void
test_key_generate_all(void **state)
{
	static const struct {
		cf_key_type_t t;
		const char *alg;
		int bits;
		const char *group;
	} cases[] = {
	    {CF_KEY_EC_P256, "EC", 256, "prime256v1"},
	    {CF_KEY_EC_P384, "EC", 384, "secp384r1"},
	    {CF_KEY_RSA_2048, "RSA", 2048, NULL},
	    {CF_KEY_RSA_3072, "RSA", 3072, NULL},
	    {CF_KEY_RSA_4096, "RSA", 4096, NULL},
	};
	cf_err_t err = {0};
	char group[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *pem = NULL;
		EVP_PKEY *k;
		BIO *b;

		assert_ok(crypto_key_generate(cases[i].t, &pem, &err));
		assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----\n"));
		b = BIO_new_mem_buf(pem, -1);
		k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
		assert_non_null(k);
		assert_true(EVP_PKEY_is_a(k, cases[i].alg));
		assert_int_equal(EVP_PKEY_get_bits(k), cases[i].bits);
		if (cases[i].group != NULL) {
			assert_int_equal(EVP_PKEY_get_utf8_string_param(k,
			                                                "group",
			                                                group,
			                                                sizeof(
			                                                    group),
			                                                NULL),
			                 1);
			assert_string_equal(group, cases[i].group);
		}
		EVP_PKEY_free(k);
		BIO_free(b);
		cf_free_secret(pem, strlen(pem));
	}
	{
		char *none = NULL;

		assert_int_equal(crypto_key_generate((cf_key_type_t)99, &none,
		                                     &err),
		                 -1);
		assert_null(none);
	}
}

static void
test_bundle_ok_fullchain(void **state)
{
	char *domains[] = {"www.example.com", "EXAMPLE.com"};
	X509 *x =
	    leaf("www.example.com", "DNS:www.example.com,DNS:example.com");
	char *lp = cert_pem(x), *cp = cert_pem(ca), *kp = key_pem(k_ec, 0);
	char *full = cat3(lp, cp, "");
	struct cf_bundle b;
	struct cf_certinfo ci;
	unsigned char *der = NULL, sha[32];
	int der_len;
	cf_err_t err = {0};

	(void)state;
	assert_ok(crypto_bundle_from_pem(full, NULL, kp, domains, 2, now, &b,
	                                 &ci, &err));
	assert_string_equal(b.cert, lp);
	assert_string_equal(b.chain, cp);
	assert_string_equal(b.fullchain, full);
	assert_string_equal(b.privkey, kp);

	der_len = i2d_X509(x, &der);
	crypto_sha256(der, (size_t)der_len, sha);
	assert_memory_equal(ci.sha256, sha, 32);
	assert_int_equal(strlen(ci.sha256_hex), 64);
	assert_int_equal(ci.n_names, 2);
	assert_string_equal(ci.names[0], "www.example.com");
	assert_string_equal(ci.names[1], "example.com");
	assert_string_equal(ci.issuer_cn, "Test Issuing CA");
	assert_string_equal(ci.subject, "CN=www.example.com,O=certfleet test");
	assert_string_equal(ci.serial_hex, "2a");
	assert_int_equal(ci.serial_len, 1);
	assert_int_equal(ci.serial[0], 42);
	assert_int_equal(ci.not_before, now - DAY);
	assert_int_equal(ci.not_after, now + 90 * DAY);
	assert_non_null(ci.aki);
	assert_int_equal(ci.aki_len, 20);

	crypto_certinfo_free(&ci);
	assert_null(ci.names);
	assert_int_equal(ci.n_names, 0);
	crypto_bundle_free(&b);
	assert_null(b.privkey);
	OPENSSL_free(der);
	free(lp);
	free(cp);
	free(full);
	free(kp);
	X509_free(x);
}

/* Separate chain input, leaf repeated in it, RSA key in traditional
 * form: output is the canonical PKCS#8 of the same key. */
static void
test_bundle_chain_and_rsa_traditional(void **state)
{
	char *domains[] = {"rsa.example.com"};
	X509 *x = mint(k_rsa, "rsa.example.com", "DNS:rsa.example.com",
	               now - DAY, now + DAY, k_ca, ca, 0, 1000);
	X509 *inter = mint(k_ec2, "Intermediate", NULL, now - DAY, now + DAY,
	                   k_ca, ca, 1, 5);
	char *lp = cert_pem(x), *cp = cert_pem(ca), *ip = cert_pem(inter);
	char *trad = key_pem(k_rsa, 1), *p8 = key_pem(k_rsa, 0);
	char *chain = cat3(lp, ip, cp); /* leaf again: dropped */
	char *want_chain = cat3(ip, cp, "");
	struct cf_bundle b;
	cf_err_t err = {0};

	(void)state;
	assert_non_null(strstr(trad, "BEGIN RSA PRIVATE KEY"));
	assert_ok(crypto_bundle_from_pem(lp, chain, trad, domains, 1, now, &b,
	                                 NULL, &err));
	assert_string_equal(b.cert, lp);
	assert_string_equal(b.chain, want_chain);
	assert_string_equal(b.privkey, p8);
	crypto_bundle_free(&b);

	/* Empty chain input is fine: chain comes out "". */
	assert_ok(crypto_bundle_from_pem(lp, "\n", p8, domains, 1, now, &b,
	                                 NULL, &err));
	assert_string_equal(b.chain, "");
	assert_string_equal(b.fullchain, lp);
	crypto_bundle_free(&b);
	expect_fail(lp, "garbage\n", p8, domains, 1, now,
	            "chain: no PEM certificate found");

	free(lp);
	free(cp);
	free(ip);
	free(trad);
	free(p8);
	free(chain);
	free(want_chain);
	X509_free(x);
	X509_free(inter);
}

static void
test_bundle_ec_traditional_and_combined(void **state)
{
	X509 *x = leaf("a.example.com", "DNS:a.example.com");
	char *lp = cert_pem(x), *trad = key_pem(k_ec, 1),
	     *p8 = key_pem(k_ec, 0);
	char *combined = cat3(lp, "some text\n", trad);
	struct cf_bundle b;
	cf_err_t err = {0};

	(void)state;
	assert_non_null(strstr(trad, "BEGIN EC PRIVATE KEY"));
	/* Key input may carry the certificate too (HAProxy combined file). */
	assert_ok(crypto_bundle_from_pem(lp, NULL, combined, NULL, 0, now, &b,
	                                 NULL, &err));
	assert_string_equal(b.privkey, p8);
	crypto_bundle_free(&b);
	/* ...but a certificate input must hold certificates only. */
	expect_fail(combined, NULL, trad, NULL, 0, now,
	            "block 2 is a EC PRIVATE KEY, expected a CERTIFICATE");
	free(lp);
	free(trad);
	free(p8);
	free(combined);
	X509_free(x);
}

static void
test_bundle_key_mismatch(void **state)
{
	X509 *x = leaf("a.example.com", "DNS:a.example.com");
	char *lp = cert_pem(x), *other = key_pem(k_ec2, 0),
	     *rsa = key_pem(k_rsa, 0);

	(void)state;
	expect_fail(lp, NULL, other, NULL, 0, now,
	            "private key does not match the certificate");
	expect_fail(lp, NULL, rsa, NULL, 0, now,
	            "private key does not match the certificate");
	free(lp);
	free(other);
	free(rsa);
	X509_free(x);
}

static void
test_bundle_dates(void **state)
{
	X509 *old = mint(k_ec, "a.example.com", "DNS:a.example.com",
	                 1735689600 - 90 * DAY, 1735689600, k_ca, ca, 0, 3);
	X509 *future = mint(k_ec, "a.example.com", "DNS:a.example.com",
	                    now + 10 * DAY, now + 100 * DAY, k_ca, ca, 0, 4);
	char *op = cert_pem(old), *fp = cert_pem(future),
	     *kp = key_pem(k_ec, 0);
	struct cf_bundle b;
	cf_err_t err = {0};

	(void)state;
	expect_fail(op, NULL, kp, NULL, 0, now,
	            "certificate expired on 2025-01-01T00:00:00Z");
	expect_fail(fp, NULL, kp, NULL, 0, now,
	            "certificate is not valid before");
	/* `now` is the caller's clock: the same certificate at a time inside
	 * its window is fine. */
	assert_ok(crypto_bundle_from_pem(op, NULL, kp, NULL, 0,
	                                 1735689600 - DAY, &b, NULL, &err));
	crypto_bundle_free(&b);
	free(op);
	free(fp);
	free(kp);
	X509_free(old);
	X509_free(future);
}

static void
test_bundle_names_and_wildcards(void **state)
{
	static const struct {
		const char *domain;
		int covered;
	} cases[] = {
	    {"a.example.com", 1},   {"A.Example.COM", 1},
	    {"example.com", 1}, /* listed literally */
	    {"www.example.com", 1}, {"a.b.example.com", 0},
	    {"example.org", 0},     {"aexample.com", 0},
	    {"*.example.com", 1}, /* the wildcard itself */
	    {".example.com", 0},    {"a.example.com.evil", 0},
	};
	X509 *w = leaf("*.example.com", "DNS:*.example.com,DNS:example.com");
	X509 *cn_only = leaf("cn.example.com", NULL);
	X509 *tld = leaf("x", "DNS:*.com,DNS:f*.example.net");
	char *wp = cert_pem(w), *cp = cert_pem(cn_only), *tp = cert_pem(tld);
	char *kp = key_pem(k_ec, 0);
	struct cf_bundle b;
	struct cf_certinfo ci;
	cf_err_t err = {0};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *d[] = {(char *)cases[i].domain};
		int rc = crypto_bundle_from_pem(wp, NULL, kp, d, 1, now, &b,
		                                NULL, &err);
		if (rc != (cases[i].covered ? 0 : -1))
			fail_msg("%s: rc %d (%s)", cases[i].domain, rc,
			         err.msg);
		if (rc == 0)
			crypto_bundle_free(&b);
	}
	{
		char *d[] = {"a.example.com", "www.example.org"};
		expect_fail(wp, NULL, kp, d, 2, now,
		            "certificate does not cover www.example.org "
		            "(names: "
		            "*.example.com, example.com)");
	}
	/* No SAN extension: the CN counts. */
	{
		char *d[] = {"cn.example.com"};
		assert_ok(crypto_bundle_from_pem(cp, NULL, kp, d, 1, now, &b,
		                                 &ci, &err));
		assert_int_equal(ci.n_names, 1);
		assert_string_equal(ci.names[0], "cn.example.com");
		crypto_certinfo_free(&ci);
		crypto_bundle_free(&b);
	}
	/* SANs present: the CN does not count; "*.com" and partial labels
	 * are never wildcards. */
	{
		char *d1[] = {"x"}, *d2[] = {"example.com"},
		     *d3[] = {"foo.example.net"};
		expect_fail(tp, NULL, kp, d1, 1, now, "does not cover x");
		expect_fail(tp, NULL, kp, d2, 1, now,
		            "does not cover example.com");
		expect_fail(tp, NULL, kp, d3, 1, now,
		            "does not cover foo.example.net");
	}
	free(wp);
	free(cp);
	free(tp);
	free(kp);
	X509_free(w);
	X509_free(cn_only);
	X509_free(tld);
}

static void
test_bundle_garbage(void **state)
{
	X509 *x = leaf("a.example.com", "DNS:a.example.com");
	char *lp = cert_pem(x), *kp = key_pem(k_ec, 0), *bad, *csr_like;
	size_t n;

	(void)state;
	expect_fail("", NULL, kp, NULL, 0, now, "no PEM certificate found");
	expect_fail("hello world\n", NULL, kp, NULL, 0, now,
	            "no PEM certificate found");
	expect_fail("\x30\x82\x01\x00\x01\x02", NULL, kp, NULL, 0, now,
	            "no PEM certificate found");
	/* Truncated block. */
	bad = strdup(lp);
	bad[strlen(bad) / 2] = '\0';
	expect_fail(bad, NULL, kp, NULL, 0, now, "not PEM");
	free(bad);
	/* Corrupt base64 inside a well-formed block. */
	bad = strdup(lp);
	n = strlen("-----BEGIN CERTIFICATE-----\n");
	memcpy(bad + n + 10, "!!!!", 4);
	expect_fail(bad, NULL, kp, NULL, 0, now, "not PEM");
	free(bad);
	/* RFC 1421 headers: an encrypted block has no place in a cert file. */
	n = strlen("-----BEGIN CERTIFICATE-----\n");
	bad = malloc(strlen(lp) + 128);
	memcpy(bad, lp, n);
	strcpy(bad + n,
	       "Proc-Type: 4,ENCRYPTED\n"
	       "DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n");
	strcat(bad, lp + n);
	expect_fail(bad, NULL, kp, NULL, 0, now,
	            "certificate block 1 has PEM headers");
	free(bad);
	/* Valid base64 that is not a certificate. */
	expect_fail("-----BEGIN CERTIFICATE-----\nAAAA\n-----END "
	            "CERTIFICATE-----\n",
	            NULL, kp, NULL, 0, now,
	            "certificate block 1 does not parse");
	csr_like = cat3(lp,
	                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
	                "-----END CERTIFICATE REQUEST-----\n",
	                "");
	expect_fail(csr_like, NULL, kp, NULL, 0, now,
	            "block 2 is a CERTIFICATE REQUEST");
	free(csr_like);
	/* Key side. */
	expect_fail(lp, NULL, "", NULL, 0, now, "private key: not PEM");
	expect_fail(lp, NULL, "not a key", NULL, 0, now, "not PEM");
	expect_fail(lp, NULL, lp, NULL, 0, now, "no usable PEM private key");
	{
		BIO *b = BIO_new(BIO_s_mem());
		char *enc;

		assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, k_ec,
		                                               EVP_aes_128_cbc(),
		                                               "pw", 2, NULL,
		                                               NULL),
		                 1);
		enc = bio_take(b);
		expect_fail(lp, NULL, enc, NULL, 0, now,
		            "private key: encrypted private key");
		free(enc);
	}
	free(lp);
	free(kp);
	X509_free(x);
}

/* Labels name the files in messages. */
static void
test_bundle_labels(void **state)
{
	struct cf_bundle_labels l = {"/etc/cf/cert.pem", "/etc/cf/chain.pem",
	                             "/etc/cf/key.pem"};
	X509 *x = leaf("a.example.com", "DNS:a.example.com");
	char *lp = cert_pem(x), *kp = key_pem(k_ec2, 0);
	struct cf_bundle b;
	cf_err_t err = {0};

	(void)state;
	assert_int_equal(crypto_bundle_from_pem_labeled("x", NULL, kp, &l, NULL,
	                                                0, now, &b, NULL, &err),
	                 -1);
	assert_string_equal(err.msg,
	                    "/etc/cf/cert.pem: no PEM certificate found");
	/* Unlabelled: no prefix, so a caller's "FILE: " prefix reads well. */
	assert_int_equal(crypto_bundle_from_pem("x", NULL, kp, NULL, 0, now, &b,
	                                        NULL, &err),
	                 -1);
	assert_string_equal(err.msg, "no PEM certificate found");
	assert_int_equal(crypto_bundle_from_pem(lp, NULL, kp, NULL, 0, now, &b,
	                                        NULL, &err),
	                 -1);
	assert_string_equal(err.msg,
	                    "private key does not match the certificate "
	                    "(CN=a.example.com,O=certfleet test)");
	assert_int_equal(crypto_bundle_from_pem_labeled(lp, NULL, kp, &l, NULL,
	                                                0, now, &b, NULL, &err),
	                 -1);
	assert_non_null(strstr(err.msg,
	                       "/etc/cf/key.pem: private key does not "
	                       "match the certificate in /etc/cf/cert.pem"));
	free(lp);
	free(kp);
	X509_free(x);
}

/* CRLF line ends, text between blocks, odd line lengths: the output is
 * the canonical encoding of the same certificates. */
static void
test_bundle_normalization(void **state)
{
	X509 *x = leaf("a.example.com", "DNS:a.example.com");
	char *lp = cert_pem(x), *cp = cert_pem(ca), *kp = key_pem(k_ec, 0);
	char *want_full = cat3(lp, cp, "");
	cf_buf_t in = {0}, key = {0};
	struct cf_bundle b;
	cf_err_t err = {0};
	const char *s;

	(void)state;
	assert_int_equal(cf_buf_printf(&in, "subject=CN = a.example.com\r\n"
	                                    "issuer=CN = Test Issuing CA\r\n"),
	                 0);
	for (s = lp; *s != '\0'; s++) {
		if (*s == '\n')
			cf_buf_append(&in, "\r\n", 2);
		else
			cf_buf_append(&in, s, 1);
	}
	cf_buf_printf(&in, "\r\n# intermediate follows\r\n\r\n");
	/* Re-wrap the CA block at 76 columns. */
	{
		unsigned char *der = NULL;
		int n = i2d_X509(ca, &der), i, elen;
		char *enc = malloc((size_t)n * 2 + 4);

		elen = EVP_EncodeBlock((unsigned char *)enc, der, n);
		cf_buf_printf(&in, "-----BEGIN CERTIFICATE-----\n");
		for (i = 0; i < elen; i += 76)
			cf_buf_printf(&in, "%.76s\n", enc + i);
		cf_buf_printf(&in, "-----END CERTIFICATE-----\ntrailer text");
		free(enc);
		OPENSSL_free(der);
	}
	for (s = kp; *s != '\0'; s++) {
		if (*s == '\n')
			cf_buf_append(&key, "\r\n", 2);
		else
			cf_buf_append(&key, s, 1);
	}
	assert_ok(crypto_bundle_from_pem(in.data, NULL, key.data, NULL, 0, now,
	                                 &b, NULL, &err));
	assert_string_equal(b.cert, lp);
	assert_string_equal(b.chain, cp);
	assert_string_equal(b.fullchain, want_full);
	assert_string_equal(b.privkey, kp);
	crypto_bundle_free(&b);
	cf_buf_free(&in);
	cf_buf_free_secret(&key);
	free(lp);
	free(cp);
	free(kp);
	free(want_full);
	X509_free(x);
}

static void
test_certinfo_fixture(void **state)
{
	static const unsigned char aki[20] = {0xDA, 0x54, 0xFA, 0x46, 0xF6,
	                                      0x42, 0xBE, 0xF7, 0xB1, 0x2B,
	                                      0x3C, 0x2A, 0x15, 0xF4, 0xCF,
	                                      0x44, 0x99, 0x57, 0x12, 0xBF};
	static const unsigned char serial[21] = {0x00, 0x8a, 0x01, 0x02, 0x03,
	                                         0x04, 0x05, 0x06, 0x07, 0x08,
	                                         0x09, 0x0a, 0x0b, 0x0c, 0x0d,
	                                         0x0e, 0x0f, 0x10, 0x11, 0x12,
	                                         0x13};
	struct cf_certinfo ci;
	cf_err_t err = {0};

	(void)state;
	assert_ok(
	    crypto_certinfo_pem(FIXTURE_LEAF, strlen(FIXTURE_LEAF), &ci, &err));
	/* openssl x509 -noout -fingerprint -sha256 */
	assert_string_equal(ci.sha256_hex, "882afe44319cbd3eeeffff8139c42e28"
	                                   "958597f3af0e8e73ce2db41b6de4c49f");
	assert_string_equal(ci.serial_hex,
	                    "8a0102030405060708090a0b0c0d0e0f10111213");
	/* RFC 9773: the DER content octets, leading zero included. */
	assert_int_equal(ci.serial_len, sizeof(serial));
	assert_memory_equal(ci.serial, serial, sizeof(serial));
	assert_int_equal(ci.aki_len, sizeof(aki));
	assert_memory_equal(ci.aki, aki, sizeof(aki));
	assert_string_equal(ci.subject, "CN=www.example.com,O=Example\\, Inc.");
	assert_string_equal(ci.issuer,
	                    "CN=Certfleet Fixture CA,O=Certfleet Test,C=DE");
	assert_string_equal(ci.issuer_cn, "Certfleet Fixture CA");
	assert_int_equal(ci.not_before, 1795589828);  /* 2026-11-25 06:57:08Z */
	assert_int_equal(ci.not_after, 4949189828LL); /* 2126-11-01 06:57:08Z */
	/* The IP SAN is not a DNS name. */
	assert_int_equal(ci.n_names, 2);
	assert_string_equal(ci.names[0], "www.example.com");
	assert_string_equal(ci.names[1], "example.com");
	crypto_certinfo_free(&ci);

	/* The self-signed CA: AKI equals its own SKI, issuer CN present. */
	assert_ok(
	    crypto_certinfo_pem(FIXTURE_CA, strlen(FIXTURE_CA), &ci, &err));
	assert_memory_equal(ci.aki, aki, sizeof(aki));
	assert_string_equal(ci.serial_hex, "01");
	assert_int_equal(ci.serial_len, 1);
	assert_int_equal(ci.n_names, 1); /* CN, no SAN extension */
	crypto_certinfo_free(&ci);

	assert_int_equal(crypto_certinfo_pem("nope", 4, &ci, &err), -1);
	assert_int_equal(err.code, CF_ERR_DATA);
}

static void
test_csr(void **state)
{
	char long_name[96];
	char *domains[] = {"www.example.com", "example.com",
	                   "*.api.example.com"};
	char *kp = key_pem(k_ec, 0), *rsa = key_pem(k_rsa, 1);
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	X509_REQ *req;
	STACK_OF(X509_EXTENSION) * exts;
	GENERAL_NAMES *gens;
	X509_NAME *subj;
	char cn[128];
	cf_err_t err = {0};
	int i;

	(void)state;
	assert_ok(crypto_csr_der(kp, domains, 3, &der, &len, &err));
	p = der;
	req = d2i_X509_REQ(NULL, &p, (long)len);
	assert_non_null(req);
	assert_ptr_equal(p, der + len);
	assert_int_equal(X509_REQ_verify(req, k_ec), 1);
	assert_int_equal(EVP_PKEY_eq(X509_REQ_get0_pubkey(req), k_ec), 1);
	assert_int_equal(X509_REQ_get_signature_nid(req),
	                 NID_ecdsa_with_SHA256);
	subj = X509_REQ_get_subject_name(req);
	assert_true(X509_NAME_get_text_by_NID(subj, NID_commonName, cn,
	                                      sizeof(cn)) > 0);
	assert_string_equal(cn, "www.example.com");
	exts = X509_REQ_get_extensions(req);
	gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
	assert_non_null(gens);
	assert_int_equal(sk_GENERAL_NAME_num(gens), 3);
	for (i = 0; i < 3; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		assert_int_equal(g->type, GEN_DNS);
		assert_int_equal(ASN1_STRING_length(g->d.dNSName),
		                 (int)strlen(domains[i]));
		assert_memory_equal(ASN1_STRING_get0_data(g->d.dNSName),
		                    domains[i], strlen(domains[i]));
	}
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	free(der);

	/* A first name longer than 64 chars is left out of the subject. */
	memset(long_name, 'a', 70);
	strcpy(long_name + 70, ".example.com");
	{
		char *d[] = {long_name};
		assert_ok(crypto_csr_der(rsa, d, 1, &der, &len, &err));
		p = der;
		req = d2i_X509_REQ(NULL, &p, (long)len);
		assert_non_null(req);
		assert_int_equal(X509_REQ_verify(req, k_rsa), 1);
		assert_int_equal(X509_REQ_get_signature_nid(req),
		                 NID_sha256WithRSAEncryption);
		assert_int_equal(X509_NAME_entry_count(
		                     X509_REQ_get_subject_name(req)),
		                 0);
		exts = X509_REQ_get_extensions(req);
		gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
		assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
		GENERAL_NAMES_free(gens);
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
		X509_REQ_free(req);
		free(der);
	}

	assert_int_equal(crypto_csr_der(kp, domains, 0, &der, &len, &err), -1);
	assert_int_equal(crypto_csr_der("junk", domains, 1, &der, &len, &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_DATA);
	free(kp);
	free(rsa);
}

static void
test_sha256(void **state)
{
	unsigned char d[32];
	char hex[65];

	(void)state;
	crypto_sha256("abc", 3, d);
	cf_hex(d, 32, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223"
	                         "b00361a396177a9cb410ff61f20015ad");
	crypto_sha256("", 0, d);
	cf_hex(d, 32, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb924"
	                         "27ae41e4649b934ca495991b7852b855");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key_generate_all),
	    cmocka_unit_test(test_bundle_ok_fullchain),
	    cmocka_unit_test(test_bundle_chain_and_rsa_traditional),
	    cmocka_unit_test(test_bundle_ec_traditional_and_combined),
	    cmocka_unit_test(test_bundle_key_mismatch),
	    cmocka_unit_test(test_bundle_dates),
	    cmocka_unit_test(test_bundle_names_and_wildcards),
	    cmocka_unit_test(test_bundle_garbage),
	    cmocka_unit_test(test_bundle_labels),
	    cmocka_unit_test(test_bundle_normalization),
	    cmocka_unit_test(test_certinfo_fixture),
	    cmocka_unit_test(test_csr),
	    cmocka_unit_test(test_sha256),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
