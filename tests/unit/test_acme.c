/* test_acme.c - the pure parts of the ACME client: ARI (RFC 9773), problem
 * documents, directory / order / authorization objects, and the JWS layer
 * checked against OpenSSL directly.  Fixtures in tests/unit/fixtures/acme
 * are the RFCs' own examples where there is one, else what Pebble sends.
 * The protocol flow itself is proven against a real Pebble (tests/e2e). */
#include <libgen.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "certfleet/acme.h"
#include "certfleet/b64.h"
#include "certfleet/crypto.h"
#include "certfleet/jws.h"
#include "certfleet/util.h"

#define assert_ok(call)                                                        \
	do {                                                                   \
		if ((call) != 0)                                               \
			fail_msg("%s: %s", #call, err.msg);                    \
	} while (0)

static char srcdir[4096] = ".";

/* Whole fixture file, NUL-terminated; caller frees. */
static char *
fixture(const char *name, size_t *len)
{
	char path[4200];
	cf_err_t err = {0};
	char *data = NULL;
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/tests/unit/fixtures/acme/%s", srcdir,
	         name);
	if (cf_read_file(path, 1 << 20, &data, &n, &err) < 0)
		fail_msg("fixture %s: %s", name, err.msg);
	if (len)
		*len = n;
	return data;
}

/* ---- ARI certificate id --------------------------------------------- */

/* RFC 9773 section 4.1: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:
 * 2C:DE:01:C8:D4 and serial 0x87654321, whose DER content is 00 87 65 43
 * 21 (the leading zero keeps it positive), give this id. */
static void
test_ari_cert_id_rfc(void **state)
{
	static const unsigned char aki[] = {0x69, 0x88, 0x5B, 0x6B, 0x87,
	                                    0x46, 0x40, 0x41, 0xE1, 0xB3,
	                                    0x7B, 0x84, 0x7B, 0xA0, 0xAE,
	                                    0x2C, 0xDE, 0x01, 0xC8, 0xD4};
	static const unsigned char serial[] = {0x00, 0x87, 0x65, 0x43, 0x21};
	char *id;

	(void)state;
	id = acme_ari_cert_id(aki, sizeof(aki), serial, sizeof(serial));
	assert_non_null(id);
	assert_string_equal(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
	free(id);

	assert_null(acme_ari_cert_id(NULL, 0, serial, sizeof(serial)));
	assert_null(acme_ari_cert_id(aki, sizeof(aki), serial, 0));
}

/* The same through certificate parsing: RFC 9773 Appendix A's example
 * certificate (validity in the year 1, as printed in the RFC). */
static void
test_ari_cert_id_from_cert(void **state)
{
	struct cf_certinfo ci = {0};
	cf_err_t err = {0};
	size_t len;
	char *pem = fixture("rfc9773-cert.pem", &len), *id;

	(void)state;
	assert_ok(crypto_certinfo_pem(pem, len, &ci, &err));
	id = acme_ari_cert_id(ci.aki, ci.aki_len, ci.serial, ci.serial_len);
	assert_non_null(id);
	assert_string_equal(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
	free(id);
	crypto_certinfo_free(&ci);
	free(pem);
}

/* ---- ARI renewalInfo ------------------------------------------------- */

/* 2025-01-02T04:00:00Z and a day later, as `date -u -d ... +%s` says. */
#define RFC_START 1735790400
#define RFC_END 1735876800

static void
test_ari_parse_rfc(void **state)
{
	struct cf_ari a;
	cf_err_t err = {0};
	size_t len;
	char *body = fixture("ari-rfc9773.json", &len);

	(void)state;
	assert_ok(acme_ari_parse(body, len, &a, &err));
	assert_int_equal(a.start, RFC_START);
	assert_int_equal(a.end, RFC_END);
	assert_string_equal(a.explanation_url,
	                    "https://acme.example.com/docs/ari");
	assert_int_equal(a.retry_after, -1);
	acme_ari_free(&a);
	acme_ari_free(&a); /* idempotent */
	free(body);
}

/* Offsets, fractions and a lower-case 't' are RFC 3339 too. */
static void
test_ari_parse_offsets(void **state)
{
	struct cf_ari a;
	cf_err_t err = {0};
	size_t len;
	char *body = fixture("ari-offsets.json", &len);

	(void)state;
	assert_ok(acme_ari_parse(body, len, &a, &err));
	assert_int_equal(a.start, RFC_START);
	assert_int_equal(a.end, RFC_END);
	assert_null(a.explanation_url);
	acme_ari_free(&a);
	free(body);
}

static void
test_ari_parse_garbage(void **state)
{
	static const char *const files[] = {"ari-end-before-start.json",
	                                    "ari-bad-date.json",
	                                    "ari-no-zone.json",
	                                    "ari-no-window.json",
	                                    "problem-subproblems.json"};
	static const char *const inline_bodies[] = {
	    "",
	    "null",
	    "[]",
	    "{",
	    "\"window\"",
	    "<html>busy</html>",
	    "{\"suggestedWindow\":{\"start\":1,\"end\":2}}",
	    "{\"suggestedWindow\":\"tomorrow\"}",
	    "{\"suggestedWindow\":{\"start\":\"2025-01-02T04:00:00Z\"}}",
	    "{\"suggestedWindow\":{\"start\":\"2025-01-02T04:00:00Z\","
	    "\"end\":\"2025-01-02T04:00:00Z\"}}",
	    "{\"suggestedWindow\":{\"start\":\"2025-01-02T04:00:00Zjunk\","
	    "\"end\":\"2025-01-03T04:00:00Z\"}}",
	    "{\"suggestedWindow\":{\"start\":\"2025-01-02T25:00:00Z\","
	    "\"end\":\"2025-01-03T04:00:00Z\"}}",
	    "{\"suggestedWindow\":{\"start\":\"2025-01-02T04:00:00.Z\","
	    "\"end\":\"2025-01-03T04:00:00Z\"}}",
	    "{\"suggestedWindow\":{\"start\":\"2025-1-2T04:00:00Z\","
	    "\"end\":\"2025-01-03T04:00:00Z\"}}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct cf_ari a = {0};
		cf_err_t err = {0};
		size_t len;
		char *body = fixture(files[i], &len);

		if (acme_ari_parse(body, len, &a, &err) == 0)
			fail_msg("%s parsed", files[i]);
		assert_int_equal(err.code, CF_ERR_ACME);
		assert_non_null(strstr(err.msg, "renewalInfo"));
		free(body);
	}
	for (size_t i = 0; i < sizeof(inline_bodies) / sizeof(inline_bodies[0]);
	     i++) {
		struct cf_ari a = {0};
		cf_err_t err = {0};

		if (acme_ari_parse(inline_bodies[i], strlen(inline_bodies[i]),
		                   &a, &err) == 0)
			fail_msg("parsed: %s", inline_bodies[i]);
		assert_int_equal(err.code, CF_ERR_ACME);
	}
}

static void
test_ari_pick(void **state)
{
	struct cf_ari a = {.start = RFC_START, .end = RFC_END};
	struct cf_ari empty = {.start = 100, .end = 100};

	(void)state;
	assert_int_equal(acme_ari_pick(&a, 0.0), RFC_START);
	assert_int_equal(acme_ari_pick(&a, 0.5), RFC_START + 43200);
	/* [start, end): never the end itself, whatever rnd rounding does */
	assert_true(acme_ari_pick(&a, 0.9999999999) < RFC_END);
	assert_int_equal(acme_ari_pick(&a, 1.0), RFC_END - 1);
	assert_int_equal(acme_ari_pick(&a, -1.0), RFC_START);
	assert_int_equal(acme_ari_pick(&empty, 0.7), 100);
	for (int i = 0; i < 1000; i++) {
		int64_t t = acme_ari_pick(&a, (double)i / 1000.0);

		assert_true(t >= RFC_START && t < RFC_END);
	}
}

/* ---- problem documents ----------------------------------------------- */

static void
test_problem_subproblems(void **state)
{
	size_t len;
	char *body = fixture("problem-subproblems.json", &len);
	char *line = acme_problem_line(body, len);

	(void)state;
	assert_non_null(line);
	assert_string_equal(
	    line,
	    "urn:ietf:params:acme:error:malformed: Some of the identifiers "
	    "requested were rejected [sub: malformed (dns:_example.org): "
	    "Invalid underscore in DNS name \"_example.org\"; "
	    "rejectedIdentifier (dns:example.net): This CA will not issue for "
	    "\"example.net\"]");
	free(line);
	free(body);
}

static void
test_problem_simple(void **state)
{
	size_t len;
	char *body = fixture("problem-badnonce-pebble.json", &len);
	char *line = acme_problem_line(body, len);
	static const char only_detail[] = "{\"detail\":\"try later\"}";

	(void)state;
	assert_non_null(line);
	assert_true(strncmp(line,
	                    "urn:ietf:params:acme:error:badNonce: JWS has "
	                    "an invalid anti-replay nonce",
	                    69) == 0);
	free(line);
	free(body);

	line = acme_problem_line(only_detail, strlen(only_detail));
	assert_string_equal(line, "(no type): try later");
	free(line);
}

/* A hostile CA cannot put newlines or escapes into our one-line errors. */
static void
test_problem_control_chars(void **state)
{
	static const char body[] =
	    "{\"type\":\"urn:ietf:params:acme:error:serverInternal\","
	    "\"detail\":\"line1\\nline2\\u001b[31mred\\r\"}";
	char *line = acme_problem_line(body, strlen(body));

	(void)state;
	assert_non_null(line);
	assert_null(strchr(line, '\n'));
	assert_null(strchr(line, '\r'));
	assert_null(strchr(line, '\033'));
	/* the one rule (err.c cf_sanitize): CR/LF/tab a space, ESC a '?' */
	assert_string_equal(line, "urn:ietf:params:acme:error:serverInternal: "
	                          "line1 line2?[31mred ");
	free(line);
}

static void
test_problem_not_a_problem(void **state)
{
	static const char *const bodies[] = {"",
	                                     "[]",
	                                     "{}",
	                                     "null",
	                                     "<html>",
	                                     "{\"status\":500}",
	                                     "{\"type\":7}"};

	(void)state;
	assert_null(acme_problem_line(NULL, 0));
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		assert_null(acme_problem_line(bodies[i], strlen(bodies[i])));
}

/* ---- directory ------------------------------------------------------- */

static void
test_dir_rfc8555(void **state)
{
	struct cf_acme_dir d;
	cf_err_t err = {0};
	size_t len;
	char *body = fixture("dir-rfc8555.json", &len);

	(void)state;
	assert_ok(acme_dir_parse(body, len, &d, &err));
	assert_string_equal(d.new_nonce, "https://example.com/acme/new-nonce");
	assert_string_equal(d.new_account,
	                    "https://example.com/acme/new-account");
	assert_string_equal(d.new_order, "https://example.com/acme/new-order");
	assert_string_equal(d.revoke_cert,
	                    "https://example.com/acme/revoke-cert");
	assert_string_equal(d.terms_of_service,
	                    "https://example.com/acme/terms/2017-5-30");
	assert_null(d.renewal_info);
	assert_non_null(d.profiles);
	assert_null(d.profiles[0]);
	assert_false(d.eab_required);
	acme_dir_free(&d);
	free(body);
}

static void
test_dir_pebble(void **state)
{
	struct cf_acme_dir d;
	cf_err_t err = {0};
	size_t len;
	char *body = fixture("dir-pebble-2.4.json", &len);

	(void)state;
	assert_ok(acme_dir_parse(body, len, &d, &err));
	assert_string_equal(d.new_nonce, "https://127.0.0.1:14000/nonce-plz");
	assert_true(d.eab_required);
	assert_null(d.renewal_info); /* Pebble 2.4 has no ARI */
	acme_dir_free(&d);
	free(body);
}

static void
test_dir_ari_profiles(void **state)
{
	struct cf_acme_dir d;
	cf_err_t err = {0};
	size_t len;
	char *body = fixture("dir-ari-profiles.json", &len);

	(void)state;
	assert_ok(acme_dir_parse(body, len, &d, &err));
	assert_string_equal(d.renewal_info,
	                    "https://acme.example.com/acme/renewal-info");
	assert_true(cf_strv_has(d.profiles, "classic"));
	assert_true(cf_strv_has(d.profiles, "shortlived"));
	assert_true(cf_strv_has(d.profiles, "tlsserver"));
	assert_false(cf_strv_has(d.profiles, "default"));
	acme_dir_free(&d);
	free(body);
}

static void
test_dir_bad(void **state)
{
	struct cf_acme_dir d = {0};
	cf_err_t err = {0};
	size_t len;
	char *body = fixture("dir-no-neworder.json", &len);

	(void)state;
	assert_int_equal(acme_dir_parse(body, len, &d, &err), -1);
	assert_int_equal(err.code, CF_ERR_ACME);
	assert_non_null(strstr(err.msg, "newOrder"));
	free(body);

	assert_int_equal(acme_dir_parse("<html>", 6, &d, &err), -1);
	assert_int_equal(err.code, CF_ERR_ACME);
	assert_non_null(strstr(err.msg, "directory"));
	assert_int_equal(acme_dir_parse("[1]", 3, &d, &err), -1);
}

/* ---- orders ---------------------------------------------------------- */

static void
test_order_valid(void **state)
{
	struct cf_acme_order o;
	cf_err_t err = {0};
	size_t len;
	char *body = fixture("order-valid-rfc8555.json", &len);

	(void)state;
	assert_ok(acme_order_parse(body, len, &o, &err));
	assert_string_equal(o.status, "valid");
	assert_string_equal(o.authorizations[0],
	                    "https://example.com/acme/authz/PAniVnsZcis");
	assert_string_equal(o.authorizations[1],
	                    "https://example.com/acme/authz/r4HqLzrSrpI");
	assert_null(o.authorizations[2]);
	assert_string_equal(o.finalize, "https://example.com/acme/order/"
	                                "TOlocE8rfgo/finalize");
	assert_string_equal(o.certificate,
	                    "https://example.com/acme/cert/mAt3xBGaobw");
	assert_null(o.error);
	acme_order_free(&o);
	free(body);
}

static void
test_order_invalid(void **state)
{
	struct cf_acme_order o;
	cf_err_t err = {0};
	size_t len;
	char *body = fixture("order-invalid.json", &len);

	(void)state;
	assert_ok(acme_order_parse(body, len, &o, &err));
	assert_string_equal(o.status, "invalid");
	assert_null(o.certificate);
	assert_string_equal(o.error,
	                    "urn:ietf:params:acme:error:unauthorized: "
	                    "Correct value not found for DNS challenge "
	                    "(line two)");
	acme_order_free(&o);
	free(body);
}

static void
test_order_bad(void **state)
{
	struct cf_acme_order o = {0};
	cf_err_t err = {0};
	size_t len;
	char *body = fixture("order-no-finalize.json", &len);
	static const char bad_authz[] =
	    "{\"status\":\"pending\",\"finalize\":\"https://x/f\","
	    "\"authorizations\":[\"https://x/a\", 42]}";

	(void)state;
	assert_int_equal(acme_order_parse(body, len, &o, &err), -1);
	assert_int_equal(err.code, CF_ERR_ACME);
	assert_non_null(strstr(err.msg, "finalize"));
	free(body);
	assert_int_equal(acme_order_parse(bad_authz, strlen(bad_authz), &o,
	                                  &err),
	                 -1);
	assert_non_null(strstr(err.msg, "authorizations[1]"));
	assert_int_equal(acme_order_parse("", 0, &o, &err), -1);
}

/* ---- authorizations -------------------------------------------------- */

static void
test_authz_pending(void **state)
{
	struct cf_acme_authz a;
	cf_err_t err = {0};
	size_t len;
	char *body = fixture("authz-pending.json", &len);

	(void)state;
	assert_ok(acme_authz_parse(body, len, &a, &err));
	assert_string_equal(a.status, "pending");
	assert_string_equal(a.domain, "a.example.test");
	assert_false(a.wildcard);
	/* the typeless-url-less "future-01" entry is skipped, not fatal */
	assert_int_equal(a.n_challs, 3);
	assert_string_equal(a.challs[0].type, "http-01");
	assert_string_equal(a.challs[0].token, "DGyRejmCefe7v4NfDGDKfA");
	assert_string_equal(a.challs[1].type, "dns-01");
	assert_string_equal(a.challs[1].url,
	                    "https://127.0.0.1:14000/chalZ/d1");
	assert_string_equal(a.challs[1].status, "pending");
	assert_null(a.challs[1].error);
	acme_authz_free(&a);
	free(body);
}

static void
test_authz_wildcard(void **state)
{
	struct cf_acme_authz a;
	cf_err_t err = {0};
	size_t len;
	char *body = fixture("authz-wildcard.json", &len);

	(void)state;
	assert_ok(acme_authz_parse(body, len, &a, &err));
	assert_true(a.wildcard);
	assert_string_equal(a.domain, "example.test");
	assert_int_equal(a.n_challs, 1);
	acme_authz_free(&a);
	free(body);
}

static void
test_authz_invalid(void **state)
{
	struct cf_acme_authz a;
	cf_err_t err = {0};
	size_t len;
	char *body = fixture("authz-invalid.json", &len);

	(void)state;
	assert_ok(acme_authz_parse(body, len, &a, &err));
	assert_string_equal(a.status, "invalid");
	assert_string_equal(a.domain, "bad1.example.test");
	assert_string_equal(a.challs[0].error,
	                    "urn:ietf:params:acme:error:unauthorized: Correct "
	                    "value not found for DNS challenge");
	acme_authz_free(&a);
	free(body);

	body = fixture("authz-no-identifier.json", &len);
	assert_int_equal(acme_authz_parse(body, len, &a, &err), -1);
	assert_int_equal(err.code, CF_ERR_ACME);
	assert_non_null(strstr(err.msg, "identifier"));
	free(body);
}

/* ---- JWS, checked with OpenSSL itself -------------------------------- */

/* RFC 7638 thumbprint of fixtures/acme/account-p256.pem, computed outside
 * certfleet: sha256 of {"crv":"P-256","kty":"EC","x":...,"y":...}. */
#define ACCOUNT_THUMBPRINT "yJueKOTQNemTJv2SY20xh7hnH-1eNUtUIGqvpnXtWFg"
#define ACCOUNT_X "EwzYJWNl0UpOTHh4LQ9M3fT79Q3H7amJIYy_yZeRDgY"

static cf_jws_key_t *
account_key(char **pem_out)
{
	cf_jws_key_t *k = NULL;
	cf_err_t err = {0};
	size_t len;
	char *pem = fixture("account-p256.pem", &len);

	assert_ok(jws_key_load(pem, len, "account-p256.pem", &k, &err));
	if (pem_out)
		*pem_out = pem;
	else
		free(pem);
	return k;
}

static json_t *
b64url_json(const char *s)
{
	unsigned char *raw = NULL;
	size_t n = 0;
	json_t *j;

	assert_int_equal(b64_decode(CF_B64_URL, s, strlen(s), &raw, &n), 0);
	j = json_loadb((const char *)raw, n, 0, NULL);
	free(raw);
	return j;
}

/* ES256 per RFC 7518 section 3.4: 64 bytes R||S, not DER. */
static bool
es256_verifies(const char *pem, const char *signing_input, const char *sig64)
{
	unsigned char *raw = NULL, *der = NULL;
	size_t n = 0;
	int der_len;
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	ECDSA_SIG *sig = ECDSA_SIG_new();
	bool ok = false;

	assert_int_equal(b64_decode(CF_B64_URL, sig64, strlen(sig64), &raw, &n),
	                 0);
	if (n == 64 &&
	    ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL),
	                   BN_bin2bn(raw + 32, 32, NULL)) == 1 &&
	    (der_len = i2d_ECDSA_SIG(sig, &der)) > 0 &&
	    EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1)
		ok = EVP_DigestVerify(md, der, (size_t)der_len,
		                      (const unsigned char *)signing_input,
		                      strlen(signing_input)) == 1;
	OPENSSL_free(der);
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	free(raw);
	return ok;
}

static void
test_jws_thumbprint(void **state)
{
	cf_err_t err = {0};
	cf_jws_key_t *k = account_key(NULL);
	char *t = jws_thumbprint(k, &err);

	(void)state;
	assert_non_null(t);
	assert_string_equal(t, ACCOUNT_THUMBPRINT);
	free(t);
	jws_key_free(k);
}

static void
test_jws_sign_jwk(void **state)
{
	cf_err_t err = {0};
	char *pem = NULL, *out = NULL, *input = NULL;
	cf_jws_key_t *k = account_key(&pem);
	json_t *jws, *hdr, *payload;

	(void)state;
	assert_ok(jws_sign(k, NULL, "nonce-1", "https://ca.test/new-acct",
	                   "{\"termsOfServiceAgreed\":true}", &out, &err));
	jws = json_loads(out, 0, NULL);
	assert_non_null(jws);
	/* flattened serialization: exactly these three members */
	assert_int_equal(json_object_size(jws), 3);
	hdr = b64url_json(json_string_value(json_object_get(jws, "protected")));
	assert_string_equal(json_string_value(json_object_get(hdr, "alg")),
	                    "ES256");
	assert_string_equal(json_string_value(json_object_get(hdr, "nonce")),
	                    "nonce-1");
	assert_string_equal(json_string_value(json_object_get(hdr, "url")),
	                    "https://ca.test/new-acct");
	assert_null(json_object_get(hdr, "kid"));
	/* the embedded JWK is public: no "d" may leak into a request */
	assert_string_equal(json_string_value(
	                        json_object_get(json_object_get(hdr, "jwk"),
	                                        "x")),
	                    ACCOUNT_X);
	assert_null(json_object_get(json_object_get(hdr, "jwk"), "d"));
	payload =
	    b64url_json(json_string_value(json_object_get(jws, "payload")));
	assert_true(
	    json_is_true(json_object_get(payload, "termsOfServiceAgreed")));
	assert_true(
	    asprintf(&input, "%s.%s",
	             json_string_value(json_object_get(jws, "protected")),
	             json_string_value(json_object_get(jws, "payload"))) > 0);
	assert_true(es256_verifies(pem, input,
	                           json_string_value(
	                               json_object_get(jws, "signature"))));
	free(input);
	json_decref(payload);
	json_decref(hdr);
	json_decref(jws);
	free(out);
	free(pem);
	jws_key_free(k);
}

/* POST-as-GET (RFC 8555 section 6.3): payload "" and kid, no jwk. */
static void
test_jws_post_as_get(void **state)
{
	cf_err_t err = {0};
	char *pem = NULL, *out = NULL, *input = NULL;
	cf_jws_key_t *k = account_key(&pem);
	json_t *jws, *hdr;

	(void)state;
	assert_ok(jws_sign(k, "https://ca.test/acct/1", "n2",
	                   "https://ca.test/order/9", NULL, &out, &err));
	jws = json_loads(out, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(jws, "payload")),
	                    "");
	hdr = b64url_json(json_string_value(json_object_get(jws, "protected")));
	assert_string_equal(json_string_value(json_object_get(hdr, "kid")),
	                    "https://ca.test/acct/1");
	assert_null(json_object_get(hdr, "jwk"));
	assert_true(
	    asprintf(&input, "%s.",
	             json_string_value(json_object_get(jws, "protected"))) > 0);
	assert_true(es256_verifies(pem, input,
	                           json_string_value(
	                               json_object_get(jws, "signature"))));
	free(input);
	json_decref(hdr);
	json_decref(jws);
	free(out);
	free(pem);
	jws_key_free(k);
}

/* EAB (RFC 8555 section 7.3.4): HS256 over the account's public JWK. */
static void
test_jws_eab(void **state)
{
	/* Pebble's example EAB key (48 bytes) */
	static const char hmac_b64[] =
	    "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
	cf_err_t err = {0};
	cf_jws_key_t *k = account_key(NULL);
	char *out = NULL, *input = NULL, *want = NULL;
	unsigned char *key = NULL, mac[32];
	unsigned int mac_len = 0;
	size_t key_len = 0;
	json_t *jws, *hdr, *payload;

	(void)state;
	assert_ok(jws_eab(k, "kid-1", hmac_b64, "https://ca.test/new-acct",
	                  &out, &err));
	jws = json_loads(out, 0, NULL);
	hdr = b64url_json(json_string_value(json_object_get(jws, "protected")));
	assert_string_equal(json_string_value(json_object_get(hdr, "alg")),
	                    "HS256");
	assert_string_equal(json_string_value(json_object_get(hdr, "kid")),
	                    "kid-1");
	assert_string_equal(json_string_value(json_object_get(hdr, "url")),
	                    "https://ca.test/new-acct");
	assert_null(json_object_get(hdr, "nonce")); /* MUST NOT have one */
	payload =
	    b64url_json(json_string_value(json_object_get(jws, "payload")));
	assert_string_equal(json_string_value(json_object_get(payload, "x")),
	                    ACCOUNT_X);
	assert_null(json_object_get(payload, "d"));

	assert_true(
	    asprintf(&input, "%s.%s",
	             json_string_value(json_object_get(jws, "protected")),
	             json_string_value(json_object_get(jws, "payload"))) > 0);
	assert_int_equal(b64_decode(CF_B64_URL, hmac_b64, strlen(hmac_b64),
	                            &key, &key_len),
	                 0);
	HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)input,
	     strlen(input), mac, &mac_len);
	want = b64url_encode(mac, mac_len);
	assert_string_equal(json_string_value(
	                        json_object_get(jws, "signature")),
	                    want);

	/* too short for HS256, or not base64url: a config error up front */
	assert_int_equal(jws_eab(k, "kid-1", "c2hvcnQ", "https://ca.test/a",
	                         &out, &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_CONFIG);
	assert_non_null(strstr(err.msg, "kid-1"));
	assert_int_equal(jws_eab(k, "kid-1",
	                         "not base64 at all!!!!!!!!!!!!!!!"
	                         "!!!!!!!!!!!!",
	                         "https://ca.test/a", &out, &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_CONFIG);

	free(want);
	free(key);
	free(input);
	json_decref(payload);
	json_decref(hdr);
	json_decref(jws);
	free(out);
	jws_key_free(k);
}

static void
test_jws_key_load_bad(void **state)
{
	cf_jws_key_t *k = NULL;
	cf_err_t err = {0};
	static const char garbage[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n"
	                              "-----END PRIVATE KEY-----\n";
	EVP_PKEY *small = NULL;
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem = NULL;
	long n;

	(void)state;
	assert_int_equal(jws_key_load(garbage, strlen(garbage), "acct.pem", &k,
	                              &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_DATA);
	assert_non_null(strstr(err.msg, "acct.pem"));
	assert_null(k);

	/* RSA below 2048 bits is refused, naming the size */
	small = EVP_RSA_gen(1024);
	assert_non_null(small);
	PEM_write_bio_PrivateKey(bio, small, NULL, NULL, 0, NULL, NULL);
	n = BIO_get_mem_data(bio, &pem);
	assert_int_equal(jws_key_load(pem, (size_t)n, "small.pem", &k, &err),
	                 -1);
	assert_non_null(strstr(err.msg, "1024"));
	EVP_PKEY_free(small);
	BIO_free(bio);
	jws_key_free(NULL);
}

/* Retry-After from a hostile or broken CA: never negative, never an
 * overflowed product, never more than a day (which then fails the
 * issuance against its deadline instead of sleeping). */
static void
test_wait_clamp(void **state)
{
	(void)state;
	/* absent: the caller's fallback, not below the floor */
	assert_int_equal(acme_wait_ms(-1, 400, 100), 400);
	assert_int_equal(acme_wait_ms(-1, 10, 100), 100);
	assert_int_equal(acme_wait_ms(-1000000, 250, 100), 250);
	/* honoured as given */
	assert_int_equal(acme_wait_ms(3, 400, 100), 3000);
	assert_int_equal(acme_wait_ms(0, 400, 1000), 1000);
	/* huge: one day, no overflow into a negative (busy) wait */
	assert_int_equal(acme_wait_ms(86400, 400, 100), 86400000);
	assert_int_equal(acme_wait_ms(86401, 400, 100), 86400000);
	assert_int_equal(acme_wait_ms(LONG_MAX, 400, 100), 86400000);
	assert_int_equal(acme_wait_ms(LONG_MAX / 1000 + 1, 400, 100), 86400000);
	assert_int_equal(acme_wait_ms(LONG_MIN, 400, 100), 400);
	/* a silly fallback is clamped too */
	assert_int_equal(acme_wait_ms(-1, INT64_MAX, 100), 86400000);
	assert_int_equal(acme_wait_ms(-1, -5, 0), 0);
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
	if (stat("tests/unit/fixtures/acme", &st) == 0)
		return;
	snprintf(copy, sizeof(copy), "%s", argv0);
	snprintf(srcdir, sizeof(srcdir), "%s/../..", dirname(copy));
}

int
main(int argc, char **argv)
{
	static const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ari_cert_id_rfc),
	    cmocka_unit_test(test_ari_cert_id_from_cert),
	    cmocka_unit_test(test_ari_parse_rfc),
	    cmocka_unit_test(test_ari_parse_offsets),
	    cmocka_unit_test(test_ari_parse_garbage),
	    cmocka_unit_test(test_ari_pick),
	    cmocka_unit_test(test_problem_subproblems),
	    cmocka_unit_test(test_problem_simple),
	    cmocka_unit_test(test_problem_control_chars),
	    cmocka_unit_test(test_problem_not_a_problem),
	    cmocka_unit_test(test_dir_rfc8555),
	    cmocka_unit_test(test_dir_pebble),
	    cmocka_unit_test(test_dir_ari_profiles),
	    cmocka_unit_test(test_dir_bad),
	    cmocka_unit_test(test_order_valid),
	    cmocka_unit_test(test_order_invalid),
	    cmocka_unit_test(test_order_bad),
	    cmocka_unit_test(test_authz_pending),
	    cmocka_unit_test(test_authz_wildcard),
	    cmocka_unit_test(test_authz_invalid),
	    cmocka_unit_test(test_jws_thumbprint),
	    cmocka_unit_test(test_jws_sign_jwk),
	    cmocka_unit_test(test_jws_post_as_get),
	    cmocka_unit_test(test_jws_eab),
	    cmocka_unit_test(test_jws_key_load_bad),
	    cmocka_unit_test(test_wait_clamp),
	};

	(void)argc;
	find_srcdir(argv[0]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
