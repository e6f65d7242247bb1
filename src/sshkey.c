/* sshkey.c - the SSH identity decoded once, signing for every login.
 *
 * OpenSSH's key container (PROTOCOL.key) is read here because OpenSSL
 * has no decoder for it; PEM and PKCS#8 go through OpenSSL.  Only what
 * libssh2 1.10 can authenticate with against a current OpenSSH is taken:
 * ed25519 and ecdsa.  Every buffer that held private bytes is wiped. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "certfleet/b64.h"
#include "sshkey.h"

struct cf_sshkey {
	EVP_PKEY *pkey;
	const EVP_MD *md; /* NULL for ed25519 (no prehash) */
	unsigned char *blob;
	size_t blob_len;
};

struct curve {
	const char *ssh;  /* "nistp256" */
	const char *ossl; /* OpenSSL group name */
	const char *md;
};

static const struct curve curves[] = {
    {"nistp256", "prime256v1", "SHA256"},
    {"nistp384", "secp384r1", "SHA384"},
    {"nistp521", "secp521r1", "SHA512"},
};

static const struct curve *
curve_by_ssh(const unsigned char *name, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
		if (strlen(curves[i].ssh) == len &&
		    memcmp(curves[i].ssh, name, len) == 0)
			return &curves[i];
	return NULL;
}

static const struct curve *
curve_by_ossl(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
		if (strcmp(curves[i].ossl, name) == 0)
			return &curves[i];
	return NULL;
}

/* ---- SSH wire format ---- */

static int
get_u32(const unsigned char *p, size_t len, size_t *off, uint32_t *v)
{
	if (len - *off < 4)
		return -1;
	*v = (uint32_t)p[*off] << 24 | (uint32_t)p[*off + 1] << 16 |
	     (uint32_t)p[*off + 2] << 8 | p[*off + 3];
	*off += 4;
	return 0;
}

static int
get_str(const unsigned char *p, size_t len, size_t *off,
        const unsigned char **s, size_t *slen)
{
	uint32_t l;

	if (get_u32(p, len, off, &l) < 0 || l > len - *off)
		return -1;
	*s = p + *off;
	*slen = l;
	*off += l;
	return 0;
}

static unsigned char *
put_str(unsigned char *p, const void *s, size_t len)
{
	p[0] = (unsigned char)(len >> 24);
	p[1] = (unsigned char)(len >> 16);
	p[2] = (unsigned char)(len >> 8);
	p[3] = (unsigned char)len;
	memcpy(p + 4, s, len);
	return p + 4 + len;
}

/* mpint of a big-endian unsigned magnitude: leading zeros dropped, a
 * zero byte added when the top bit is set. */
static unsigned char *
put_mpint(unsigned char *p, const unsigned char *m, size_t len)
{
	size_t pad;

	while (len > 0 && m[0] == 0) {
		m++;
		len--;
	}
	pad = len > 0 && (m[0] & 0x80) ? 1 : 0;
	p[0] = (unsigned char)((len + pad) >> 24);
	p[1] = (unsigned char)((len + pad) >> 16);
	p[2] = (unsigned char)((len + pad) >> 8);
	p[3] = (unsigned char)(len + pad);
	p += 4;
	if (pad)
		*p++ = 0;
	memcpy(p, m, len);
	return p + len;
}

/* ---- building keys ---- */

static int
set_blob_ed25519(cf_sshkey_t *k, const unsigned char *pub)
{
	static const char type[] = "ssh-ed25519";

	k->blob_len = 4 + sizeof(type) - 1 + 4 + 32;
	k->blob = malloc(k->blob_len);
	if (k->blob == NULL)
		return -1;
	put_str(put_str(k->blob, type, sizeof(type) - 1), pub, 32);
	return 0;
}

static int
set_blob_ecdsa(cf_sshkey_t *k, const struct curve *c, const unsigned char *q,
               size_t qlen)
{
	char type[32];
	size_t tl, cl = strlen(c->ssh);
	unsigned char *p;

	tl = (size_t)snprintf(type, sizeof(type), "ecdsa-sha2-%s", c->ssh);
	k->blob_len = 4 + tl + 4 + cl + 4 + qlen;
	k->blob = malloc(k->blob_len);
	if (k->blob == NULL)
		return -1;
	p = put_str(k->blob, type, tl);
	p = put_str(p, c->ssh, cl);
	put_str(p, q, qlen);
	k->md = EVP_get_digestbyname(c->md);
	return k->md != NULL ? 0 : -1;
}

static EVP_PKEY *
ecdsa_from_parts(const struct curve *c, const unsigned char *q, size_t qlen,
                 const unsigned char *d, size_t dlen)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *bn = BN_secure_new();

	if (bld == NULL || bn == NULL || BN_bin2bn(d, (int)dlen, bn) == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
	                                     c->ossl, 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, q,
	                                      qlen) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn))
		goto out;
	params = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params) <= 0)
		pkey = NULL;
out:
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	BN_clear_free(bn);
	return pkey;
}

/* The private section of an unencrypted "openssh-key-v1" container. */
static int
load_openssh(cf_sshkey_t *k, const unsigned char *bin, size_t blen)
{
	static const char magic[] = "openssh-key-v1";
	const unsigned char *cipher, *kdf, *kdfopt, *pub, *priv, *type, *a, *b;
	size_t cl, kl, kol, pl, prl, tl, al, bl, off = sizeof(magic), poff = 0;
	uint32_t nkeys, c1, c2;

	if (blen < sizeof(magic) || memcmp(bin, magic, sizeof(magic)) != 0 ||
	    get_str(bin, blen, &off, &cipher, &cl) < 0 ||
	    get_str(bin, blen, &off, &kdf, &kl) < 0 ||
	    get_str(bin, blen, &off, &kdfopt, &kol) < 0 ||
	    get_u32(bin, blen, &off, &nkeys) < 0 || nkeys != 1 ||
	    get_str(bin, blen, &off, &pub, &pl) < 0 ||
	    get_str(bin, blen, &off, &priv, &prl) < 0)
		return -1;
	if (cl != 4 || memcmp(cipher, "none", 4) != 0)
		return -1;
	if (get_u32(priv, prl, &poff, &c1) < 0 ||
	    get_u32(priv, prl, &poff, &c2) < 0 || c1 != c2 ||
	    get_str(priv, prl, &poff, &type, &tl) < 0 ||
	    get_str(priv, prl, &poff, &a, &al) < 0 ||
	    get_str(priv, prl, &poff, &b, &bl) < 0)
		return -1;
	if (tl == 11 && memcmp(type, "ssh-ed25519", 11) == 0) {
		/* a: public key, b: seed || public key */
		if (al != 32 || bl != 64 || memcmp(a, b + 32, 32) != 0)
			return -1;
		k->pkey =
		    EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, b, 32);
		if (k->pkey == NULL)
			return -1;
		return set_blob_ed25519(k, a);
	}
	if (tl > 11 && memcmp(type, "ecdsa-sha2-", 11) == 0) {
		/* a: curve name, b: public point, then mpint d */
		const struct curve *c = curve_by_ssh(a, al);
		const unsigned char *d;
		size_t dl;

		if (c == NULL || tl - 11 != al ||
		    memcmp(type + 11, a, al) != 0 ||
		    get_str(priv, prl, &poff, &d, &dl) < 0)
			return -1;
		k->pkey = ecdsa_from_parts(c, b, bl, d, dl);
		if (k->pkey == NULL)
			return -1;
		return set_blob_ecdsa(k, c, b, bl);
	}
	return -1;
}

static int
load_pem(cf_sshkey_t *k, const char *text, size_t len)
{
	BIO *bio = BIO_new_mem_buf(text, (int)len);
	unsigned char q[133], pub[32];
	size_t ql = sizeof(q), publ = sizeof(pub);
	char group[64];
	const struct curve *c;
	int rc = -1;

	if (bio == NULL)
		return -1;
	/* an empty passphrase: an encrypted key fails instead of prompting */
	k->pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
	BIO_free(bio);
	if (k->pkey == NULL)
		goto out;
	if (EVP_PKEY_is_a(k->pkey, "ED25519")) {
		if (EVP_PKEY_get_raw_public_key(k->pkey, pub, &publ) != 1 ||
		    publ != 32)
			goto out;
		rc = set_blob_ed25519(k, pub);
	} else if (EVP_PKEY_is_a(k->pkey, "EC")) {
		if (EVP_PKEY_get_utf8_string_param(k->pkey,
		                                   OSSL_PKEY_PARAM_GROUP_NAME,
		                                   group, sizeof(group),
		                                   NULL) != 1 ||
		    (c = curve_by_ossl(group)) == NULL ||
		    EVP_PKEY_get_octet_string_param(
		        k->pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, q,
		        sizeof(q), &ql) != 1)
			goto out;
		rc = set_blob_ecdsa(k, c, q, ql);
	}
out:
	return rc;
}

int
sshkey_openssh_container(const char *text, size_t len, unsigned char **bin,
                         size_t *bin_len)
{
	static const char begin[] = "-----BEGIN OPENSSH PRIVATE KEY-----";
	const char *p, *end = text + len;
	char *b64;
	size_t n = 0;
	int rc;

	p = strstr(text, begin);
	if (p == NULL)
		return -1;
	p += sizeof(begin) - 1;
	b64 = malloc((size_t)(end - p) + 1);
	if (b64 == NULL)
		return -1;
	for (; p < end && *p != '-'; p++)
		if (*p != '\n' && *p != '\r' && *p != ' ' && *p != '\t')
			b64[n++] = *p;
	rc = b64_decode(CF_B64_STD, b64, n, bin, bin_len);
	OPENSSL_cleanse(b64, n);
	free(b64);
	return rc < 0 ? -1 : 0;
}

cf_sshkey_t *
sshkey_load(const char *text, size_t len)
{
	cf_sshkey_t *k = calloc(1, sizeof(*k));
	unsigned char *bin = NULL;
	size_t blen = 0;
	int rc = -1;

	if (k == NULL)
		return NULL;
	if (strstr(text, "-----BEGIN OPENSSH PRIVATE KEY-----") == NULL)
		rc = load_pem(k, text, len);
	else if (sshkey_openssh_container(text, len, &bin, &blen) == 0)
		rc = load_openssh(k, bin, blen);
	if (bin != NULL) {
		OPENSSL_cleanse(bin, blen);
		free(bin);
	}
	if (rc < 0) {
		sshkey_free(k);
		return NULL;
	}
	return k;
}

void
sshkey_free(cf_sshkey_t *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k->blob);
	free(k);
}

const unsigned char *
sshkey_blob(const cf_sshkey_t *k, size_t *len)
{
	*len = k->blob_len;
	return k->blob;
}

int
sshkey_sign(const cf_sshkey_t *k, unsigned char **sig, size_t *sig_len,
            const unsigned char *data, size_t data_len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char der[160], *out = NULL;
	const unsigned char *dp = der;
	size_t dl = sizeof(der);
	ECDSA_SIG *es = NULL;
	const BIGNUM *r, *s;
	unsigned char rb[66], sb[66];
	int rl, sl, rc = -1;

	if (md == NULL ||
	    EVP_DigestSignInit(md, NULL, k->md, NULL, k->pkey) != 1 ||
	    EVP_DigestSign(md, der, &dl, data, data_len) != 1)
		goto out;
	if (k->md == NULL) {
		/* ed25519: the raw 64-byte signature */
		out = malloc(dl);
		if (out == NULL)
			goto out;
		memcpy(out, der, dl);
		*sig = out;
		*sig_len = dl;
		rc = 0;
		goto out;
	}
	/* ecdsa: DER (r, s) to mpint r, mpint s (RFC 5656 section 3.1.2) */
	es = d2i_ECDSA_SIG(NULL, &dp, (long)dl);
	if (es == NULL)
		goto out;
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_num_bytes(r) > (int)sizeof(rb) ||
	    BN_num_bytes(s) > (int)sizeof(sb))
		goto out;
	rl = BN_bn2bin(r, rb);
	sl = BN_bn2bin(s, sb);
	if (rl <= 0 || sl <= 0 || rl > 66 || sl > 66)
		goto out;
	out = malloc(4 + 1 + (size_t)rl + 4 + 1 + (size_t)sl);
	if (out == NULL)
		goto out;
	*sig_len =
	    (size_t)(put_mpint(put_mpint(out, rb, (size_t)rl), sb, (size_t)sl) -
	             out);
	*sig = out;
	rc = 0;
out:
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	return rc;
}
