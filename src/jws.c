/* jws.c - ACME's JWS on latchset jose (libjose).
 *
 * libjose does the JOSE parts we would otherwise hand-roll and get subtly
 * wrong: JWK export from an EVP_PKEY, RFC 7638 thumbprints, ES256/ES384 as
 * raw R||S (not DER), RS256, HS256 for EAB, flattened serialization.
 * What we add: key-type policy, secret hygiene for the JWK's private
 * members (jansson frees strings without wiping), and errors routed into
 * cf_err_t instead of libjose's default stderr printer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <jose/b64.h>
#include <jose/jose.h>
#include <jose/openssl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "certfleet/jws.h"

struct cf_jws_key {
	jose_cfg_t *cfg;
	json_t *jwk; /* private JWK: secret members wiped on free */
	json_t *pub; /* public members only, shares json strings with jwk */
	const char *alg;
	char last_err[256]; /* filled by libjose's error callback */
};

static void
jws_cfg_err(void *misc, const char *file, int line, uint64_t code,
            const char *fmt, va_list ap)
{
	struct cf_jws_key *k = misc;

	(void)file;
	(void)line;
	(void)code;
	vsnprintf(k->last_err, sizeof(k->last_err), fmt, ap);
}

/* Overwrite a JSON string in place before jansson frees it: the JWK's "d"
 * (and RSA's p, q, dp, dq, qi) and EAB's "k" are key material. */
static void
json_wipe_string(json_t *s)
{
	if (json_is_string(s))
		OPENSSL_cleanse((char *)json_string_value(s),
		                json_string_length(s));
}

static void
jwk_wipe(json_t *jwk)
{
	static const char *const secret[] = {"d",  "p",  "q", "dp",
	                                     "dq", "qi", "k"};

	if (!jwk)
		return;
	for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
		json_wipe_string(json_object_get(jwk, secret[i]));
}

static int
jws_fail(struct cf_jws_key *k, cf_err_t *err, cf_code_t code, const char *what)
{
	if (k && k->last_err[0])
		return cf_err_set(err, code, "%s: %s", what, k->last_err);
	return cf_err_set(err, code, "%s failed", what);
}

void
jws_key_free(cf_jws_key_t *k)
{
	if (!k)
		return;
	json_decref(k->pub);
	jwk_wipe(k->jwk);
	json_decref(k->jwk);
	jose_cfg_decref(k->cfg);
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

int
jws_key_load(const char *pem, size_t len, const char *what, cf_jws_key_t **out,
             cf_err_t *err)
{
	struct cf_jws_key *k = NULL;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	int rc = -1;

	k = calloc(1, sizeof(*k));
	if (!k) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	k->cfg = jose_cfg();
	if (!k->cfg) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	jose_cfg_set_err_func(k->cfg, jws_cfg_err, k);

	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio || !(pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL))) {
		cf_err_set(err, CF_ERR_DATA, "%s: not a PEM private key", what);
		goto out;
	}

	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_EC: {
		char grp[64] = "";
		size_t glen = 0;

		if (!EVP_PKEY_get_group_name(pkey, grp, sizeof(grp), &glen)) {
			cf_err_set(err, CF_ERR_DATA,
			           "%s: EC key without a named curve", what);
			goto out;
		}
		if (strcmp(grp, "prime256v1") == 0 ||
		    strcmp(grp, "P-256") == 0) {
			k->alg = "ES256";
		} else if (strcmp(grp, "secp384r1") == 0 ||
		           strcmp(grp, "P-384") == 0) {
			k->alg = "ES384";
		} else {
			cf_err_set(err, CF_ERR_DATA,
			           "%s: EC curve %s not supported for ACME "
			           "accounts "
			           "(use P-256 or P-384)",
			           what, grp);
			goto out;
		}
		break;
	}
	case EVP_PKEY_RSA:
		if (EVP_PKEY_get_bits(pkey) < 2048) {
			cf_err_set(err, CF_ERR_DATA,
			           "%s: RSA key of %d bits is too "
			           "small (need >= 2048)",
			           what, EVP_PKEY_get_bits(pkey));
			goto out;
		}
		k->alg = "RS256";
		break;
	default:
		cf_err_set(err, CF_ERR_DATA,
		           "%s: key type not supported for ACME "
		           "accounts (use EC P-256, P-384 or RSA)",
		           what);
		goto out;
	}

	k->jwk = jose_openssl_jwk_from_EVP_PKEY(k->cfg, pkey);
	if (!k->jwk) {
		jws_fail(k, err, CF_ERR_DATA, what);
		goto out;
	}
	/* Public JWK built from the public members only, so no copy of the
	 * private scalar exists outside k->jwk. */
	if (k->alg[0] == 'E')
		k->pub = json_pack("{s:O,s:O,s:O,s:O}", "crv",
		                   json_object_get(k->jwk, "crv"), "kty",
		                   json_object_get(k->jwk, "kty"), "x",
		                   json_object_get(k->jwk, "x"), "y",
		                   json_object_get(k->jwk, "y"));
	else
		k->pub = json_pack("{s:O,s:O,s:O}", "e",
		                   json_object_get(k->jwk, "e"), "kty",
		                   json_object_get(k->jwk, "kty"), "n",
		                   json_object_get(k->jwk, "n"));
	if (!k->pub) {
		cf_err_set(err, CF_ERR_DATA, "%s: incomplete public key", what);
		goto out;
	}

	*out = k;
	k = NULL;
	rc = 0;
out:
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	jws_key_free(k);
	return rc;
}

char *
jws_thumbprint(const cf_jws_key_t *k, cf_err_t *err)
{
	struct cf_jws_key *mk = (struct cf_jws_key *)k;
	json_t *thp = NULL;
	char *s = NULL;

	mk->last_err[0] = '\0';
	thp = jose_jwk_thp(k->cfg, k->pub, "S256");
	if (!thp || !json_is_string(thp)) {
		jws_fail(mk, err, CF_ERR_INTERNAL, "JWK thumbprint");
		goto out;
	}
	s = strdup(json_string_value(thp));
	if (!s)
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
out:
	json_decref(thp);
	return s;
}

/* Sign `payload` (raw bytes, may be empty) under `protected_hdr` (stolen)
 * with jwk; returns compact JSON text of the flattened JWS. */
static int
jws_sign_raw(struct cf_jws_key *k, const json_t *jwk, json_t *protected_hdr,
             const char *payload, size_t payload_len, char **out, cf_err_t *err)
{
	json_t *jws = NULL, *sig = NULL;
	char *text = NULL;
	int rc = -1;

	if (!protected_hdr) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	sig = json_pack("{s:o}", "protected", protected_hdr);
	protected_hdr = NULL;
	/* jose_b64_enc of zero bytes is "", exactly POST-as-GET's payload. */
	jws = json_pack("{s:o}", "payload", jose_b64_enc(payload, payload_len));
	if (!sig || !jws) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	k->last_err[0] = '\0';
	if (!jose_jws_sig(k->cfg, jws, sig, jwk)) {
		jws_fail(k, err, CF_ERR_INTERNAL, "JWS signature");
		goto out;
	}
	text = json_dumps(jws, JSON_COMPACT);
	if (!text) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	*out = text;
	rc = 0;
out:
	json_decref(protected_hdr);
	json_decref(sig);
	json_decref(jws);
	return rc;
}

int
jws_sign(const cf_jws_key_t *k, const char *kid, const char *nonce,
         const char *url, const char *payload, char **out, cf_err_t *err)
{
	struct cf_jws_key *mk = (struct cf_jws_key *)k;
	json_t *hdr;

	if (kid)
		hdr = json_pack("{s:s,s:s,s:s,s:s}", "alg", k->alg, "kid", kid,
		                "nonce", nonce, "url", url);
	else
		hdr = json_pack("{s:s,s:O,s:s,s:s}", "alg", k->alg, "jwk",
		                k->pub, "nonce", nonce, "url", url);
	return jws_sign_raw(mk, k->jwk, hdr, payload ? payload : "",
	                    payload ? strlen(payload) : 0, out, err);
}

int
jws_eab(const cf_jws_key_t *account, const char *eab_kid,
        const char *hmac_key_b64url, const char *url, char **out, cf_err_t *err)
{
	struct cf_jws_key *mk = (struct cf_jws_key *)account;
	json_t *oct = NULL, *hdr = NULL;
	char *pub_text = NULL;
	size_t n, dec_len;
	int rc = -1;

	n = strlen(hmac_key_b64url);
	while (n > 0 && hmac_key_b64url[n - 1] == '=')
		n--;
	if (n == 0 ||
	    strspn(hmac_key_b64url,
	           "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	           "0123456789-_") != n) {
		cf_err_set(err, CF_ERR_CONFIG,
		           "EAB HMAC key for kid %s is not "
		           "base64url",
		           eab_kid);
		goto out;
	}
	dec_len = n * 3 / 4;
	if (dec_len < 32) {
		cf_err_set(err, CF_ERR_CONFIG,
		           "EAB HMAC key for kid %s is %zu "
		           "bytes; HS256 needs at least 32 (RFC 7518 section "
		           "3.2)",
		           eab_kid, dec_len);
		goto out;
	}

	oct = json_pack("{s:s,s:s%}", "kty", "oct", "k", hmac_key_b64url, n);
	pub_text = json_dumps(account->pub, JSON_COMPACT | JSON_SORT_KEYS);
	hdr = json_pack("{s:s,s:s,s:s}", "alg", "HS256", "kid", eab_kid, "url",
	                url);
	if (!oct || !pub_text || !hdr) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = jws_sign_raw(mk, oct, hdr, pub_text, strlen(pub_text), out, err);
	hdr = NULL;
	if (rc < 0)
		cf_err_prefix(err, "EAB kid %s: ", eab_kid);
out:
	json_decref(hdr);
	jwk_wipe(oct);
	json_decref(oct);
	free(pub_text);
	return rc;
}
