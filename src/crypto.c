/* crypto.c - certificates, keys and CSRs on OpenSSL 3.0 (no deprecated
 * APIs).  Everything that leaves this file is PEM text, DER bytes or the
 * plain structs of crypto.h, so its callers need no OpenSSL types. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certfleet/crypto.h"
#include "certfleet/util.h"

/* Message prefixes when the caller names no files.  Callers usually
 * prefix the certificate file themselves ("cert.pem: certificate expired
 * on ..."), so certificate messages get none; chain and key messages say
 * which input they concern. */
#define PREFIX_CHAIN "chain: "
#define PREFIX_KEY "private key: "

/* "label: " or the default into buf. */
static const char *
prefix_of(const char *label, const char *dflt, char *buf, size_t len)
{
	if (label == NULL)
		return dflt;
	snprintf(buf, len, "%s: ", label);
	return buf;
}

/* RFC 5280 caps serials at 20 octets; leave room for non-conforming CAs
 * but keep serial_hex[80] large enough. */
#define SERIAL_MAX_BYTES 39

/* The reason of the newest queued OpenSSL error, then clear the (per
 * thread) queue so a later failure does not report a stale cause. */
static const char *
ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	const char *r;

	if (e == 0) {
		snprintf(buf, len, "unknown OpenSSL error");
	} else if ((r = ERR_reason_error_string(e)) != NULL) {
		snprintf(buf, len, "%s", r);
	} else {
		ERR_error_string_n(e, buf, len);
	}
	ERR_clear_error();
	return buf;
}

/* Copy a memory BIO's contents into a fresh NUL-terminated string. */
static char *
bio_strdup(BIO *bio)
{
	BUF_MEM *bm = NULL;
	char *s;

	if (BIO_get_mem_ptr(bio, &bm) <= 0 || bm == NULL)
		return NULL;
	s = malloc(bm->length + 1);
	if (s == NULL)
		return NULL;
	if (bm->length > 0)
		memcpy(s, bm->data, bm->length);
	s[bm->length] = '\0';
	return s;
}

/* ---------------------------------------------------------------- */
/* hashing                                                          */

void
crypto_sha256(const void *p, size_t n, unsigned char out[32])
{
	unsigned int olen = 32;

	/* Cannot fail for SHA-256 short of memory exhaustion in the
	 * provider; a zero digest then never matches anything real. */
	if (EVP_Digest(p, n, out, &olen, EVP_sha256(), NULL) != 1)
		memset(out, 0, 32);
}

/* ---------------------------------------------------------------- */
/* certificate info                                                 */

void
crypto_certinfo_free(struct cf_certinfo *ci)
{
	size_t i;

	if (ci == NULL)
		return;
	free(ci->subject);
	free(ci->issuer);
	free(ci->issuer_cn);
	for (i = 0; i < ci->n_names; i++)
		free(ci->names[i]);
	free(ci->names);
	free(ci->aki);
	free(ci->serial);
	memset(ci, 0, sizeof(*ci));
}

int
crypto_asn1_time_epoch(const struct asn1_string_st *t, int64_t *out)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return -1;
	*out = (int64_t)timegm(&tm);
	return 0;
}

/* One-line RFC 2253 rendering of a name; NULL on allocation failure. */
static char *
name_oneline(const X509_NAME *nm)
{
	BIO *bio;
	char *s = NULL;

	bio = BIO_new(BIO_s_mem());
	if (bio == NULL)
		return NULL;
	if (X509_NAME_print_ex(bio, nm, 0, XN_FLAG_RFC2253) >= 0)
		s = bio_strdup(bio);
	BIO_free(bio);
	return s;
}

/* The last (most specific) CN of a name as UTF-8, or *out = NULL if the
 * name has none.  -1 only on malformed strings or memory. */
static int
name_cn(const X509_NAME *nm, char **out)
{
	const X509_NAME_ENTRY *e;
	unsigned char *u = NULL;
	int idx = -1, i, n;
	char *s;

	while ((i = X509_NAME_get_index_by_NID(nm, NID_commonName, idx)) >= 0)
		idx = i;
	*out = NULL;
	if (idx < 0)
		return 0;
	e = X509_NAME_get_entry(nm, idx);
	n = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(e));
	if (n < 0)
		return -1;
	/* An embedded NUL would let "a.com\0.evil" pose as "a.com". */
	if (memchr(u, '\0', (size_t)n) != NULL) {
		OPENSSL_free(u);
		return 0;
	}
	s = strndup((const char *)u, (size_t)n);
	OPENSSL_free(u);
	if (s == NULL)
		return -1;
	*out = s;
	return 0;
}

static int
names_push(struct cf_certinfo *ci, const char *p, size_t n)
{
	char **v;

	v = realloc(ci->names, (ci->n_names + 1) * sizeof(*v));
	if (v == NULL)
		return -1;
	ci->names = v;
	v[ci->n_names] = strndup(p, n);
	if (v[ci->n_names] == NULL)
		return -1;
	ci->n_names++;
	return 0;
}

/* DNS names of the subjectAltName; the subject CN only when the
 * certificate has no SAN extension at all (RFC 6125 6.4.4). */
static int
collect_names(X509 *x, struct cf_certinfo *ci, cf_err_t *err)
{
	GENERAL_NAMES *gens;
	const GENERAL_NAME *g;
	const unsigned char *d;
	char *cn = NULL;
	int crit = -1, i, n, rc = -1;

	gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	if (gens == NULL && crit == -1) {
		if (name_cn(X509_get_subject_name(x), &cn) < 0) {
			cf_err_set(err, CF_ERR_DATA,
			           "certificate subject CN is malformed");
			goto out;
		}
		if (cn != NULL && names_push(ci, cn, strlen(cn)) < 0)
			goto nomem;
		rc = 0;
		goto out;
	}
	if (gens == NULL) {
		cf_err_set(err, CF_ERR_DATA, "certificate subjectAltName %s",
		           crit == -2 ? "appears more than once"
		                      : "is malformed");
		goto out;
	}
	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		g = sk_GENERAL_NAME_value(gens, i);
		if (g->type != GEN_DNS)
			continue;
		d = ASN1_STRING_get0_data(g->d.dNSName);
		n = ASN1_STRING_length(g->d.dNSName);
		/* Skip names with NUL: they can never equal a real domain. */
		if (n <= 0 || memchr(d, '\0', (size_t)n) != NULL)
			continue;
		if (names_push(ci, (const char *)d, (size_t)n) < 0)
			goto nomem;
	}
	rc = 0;
	goto out;
nomem:
	cf_err_set(err, CF_ERR_NOMEM,
	           "out of memory reading certificate names");
out:
	GENERAL_NAMES_free(gens);
	free(cn);
	return rc;
}

/* The serial as ARI wants it (RFC 9773 4.1: the DER content octets of
 * the INTEGER, leading zero included) and as hex for humans (the
 * magnitude, as `openssl x509 -text` prints it). */
static int
collect_serial(X509 *x, struct cf_certinfo *ci, cf_err_t *err)
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	unsigned char *der = NULL;
	const unsigned char *p;
	long clen = 0;
	int der_len, tag, xclass, r, n, rc = -1;

	n = ASN1_STRING_length(sn);
	if (n > SERIAL_MAX_BYTES) {
		cf_err_set(err, CF_ERR_DATA,
		           "certificate serial number is too long (%d bytes)",
		           n);
		goto out;
	}
	if (n == 0)
		snprintf(ci->serial_hex, sizeof(ci->serial_hex), "00");
	else
		cf_hex(ASN1_STRING_get0_data(sn), (size_t)n, ci->serial_hex);

	der_len = i2d_ASN1_INTEGER(sn, &der);
	if (der_len <= 0) {
		cf_err_set(err, CF_ERR_DATA,
		           "certificate serial cannot be encoded");
		goto out;
	}
	p = der;
	r = ASN1_get_object(&p, &clen, &tag, &xclass, der_len);
	if ((r & 0x80) != 0 || tag != V_ASN1_INTEGER || clen <= 0 ||
	    p + clen != der + der_len) {
		cf_err_set(err, CF_ERR_DATA, "certificate serial is malformed");
		goto out;
	}
	ci->serial = malloc((size_t)clen);
	if (ci->serial == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	memcpy(ci->serial, p, (size_t)clen);
	ci->serial_len = (size_t)clen;
	rc = 0;
out:
	OPENSSL_free(der);
	return rc;
}

static int
certinfo_from_x509(X509 *x, struct cf_certinfo *out, cf_err_t *err)
{
	struct cf_certinfo ci;
	const ASN1_OCTET_STRING *aki;
	unsigned char *der = NULL;
	int der_len, rc = -1;

	memset(&ci, 0, sizeof(ci));
	der_len = i2d_X509(x, &der);
	if (der_len <= 0) {
		cf_err_set(err, CF_ERR_DATA, "certificate cannot be encoded");
		goto out;
	}
	crypto_sha256(der, (size_t)der_len, ci.sha256);
	cf_hex(ci.sha256, sizeof(ci.sha256), ci.sha256_hex);

	if (crypto_asn1_time_epoch(X509_get0_notBefore(x), &ci.not_before) <
	        0 ||
	    crypto_asn1_time_epoch(X509_get0_notAfter(x), &ci.not_after) < 0) {
		cf_err_set(err, CF_ERR_DATA,
		           "certificate validity dates are malformed");
		goto out;
	}
	ci.subject = name_oneline(X509_get_subject_name(x));
	ci.issuer = name_oneline(X509_get_issuer_name(x));
	if (ci.subject == NULL || ci.issuer == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (name_cn(X509_get_issuer_name(x), &ci.issuer_cn) < 0) {
		cf_err_set(err, CF_ERR_DATA,
		           "certificate issuer CN is malformed");
		goto out;
	}
	if (collect_serial(x, &ci, err) < 0)
		goto out;
	aki = X509_get0_authority_key_id(x);
	if (aki != NULL && ASN1_STRING_length(aki) > 0) {
		ci.aki_len = (size_t)ASN1_STRING_length(aki);
		ci.aki = malloc(ci.aki_len);
		if (ci.aki == NULL) {
			cf_err_set(err, CF_ERR_NOMEM, "out of memory");
			goto out;
		}
		memcpy(ci.aki, ASN1_STRING_get0_data(aki), ci.aki_len);
	}
	if (collect_names(x, &ci, err) < 0)
		goto out;

	*out = ci;
	memset(&ci, 0, sizeof(ci));
	rc = 0;
out:
	OPENSSL_free(der);
	crypto_certinfo_free(&ci);
	ERR_clear_error();
	return rc;
}

int
crypto_certinfo_pem(const char *pem, size_t len, struct cf_certinfo *out,
                    cf_err_t *err)
{
	BIO *bio = NULL;
	X509 *x = NULL;
	char why[256];
	int rc = -1;

	if (len > INT32_MAX) {
		cf_err_set(err, CF_ERR_DATA, "certificate PEM too large");
		goto out;
	}
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (x == NULL) {
		cf_err_set(err, CF_ERR_DATA, "no PEM certificate found (%s)",
		           ossl_reason(why, sizeof(why)));
		goto out;
	}
	rc = certinfo_from_x509(x, out, err);
out:
	X509_free(x);
	BIO_free(bio);
	return rc;
}

/* ---------------------------------------------------------------- */
/* keys                                                             */

/* Never prompt on the terminal for a passphrase (OpenSSL's default
 * callback would, and a worker thread would hang on it); note that one
 * was wanted so the error can say so. */
static int
no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	*(int *)u = 1;
	return -1;
}

/* Parse the first private key of a PEM text (PKCS#8 or traditional RSA /
 * EC, other PEM blocks skipped). */
static int
load_private_key(const char *pem, const char *pfx, EVP_PKEY **out,
                 cf_err_t *err)
{
	BIO *bio = NULL;
	EVP_PKEY *pkey = NULL;
	int wanted_pass = 0, rc = -1;
	char why[256];

	if (strstr(pem, "-----BEGIN ") == NULL) {
		cf_err_set(err, CF_ERR_DATA, "%snot PEM (no private key block)",
		           pfx);
		goto out;
	}
	bio = BIO_new_mem_buf(pem, -1);
	if (bio == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	ERR_clear_error();
	pkey =
	    PEM_read_bio_PrivateKey(bio, NULL, no_passphrase_cb, &wanted_pass);
	if (pkey == NULL) {
		if (wanted_pass || strstr(pem, "ENCRYPTED") != NULL) {
			ERR_clear_error();
			cf_err_set(err, CF_ERR_DATA,
			           "%sencrypted private key "
			           "(passphrase-protected "
			           "keys are not supported)",
			           pfx);
		} else {
			cf_err_set(err, CF_ERR_DATA,
			           "%sno usable PEM private key found (%s)",
			           pfx, ossl_reason(why, sizeof(why)));
		}
		goto out;
	}
	*out = pkey;
	pkey = NULL;
	rc = 0;
out:
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	return rc;
}

/* PKCS#8 PEM of a key in a fresh malloc'd string (secret: the caller
 * wipes).  The BIO is secure memory, wiped by OpenSSL on free. */
static int
key_to_pkcs8(EVP_PKEY *pkey, char **out, cf_err_t *err)
{
	BIO *bio;
	char *s = NULL;
	char why[256];
	int rc = -1;

	bio = BIO_new(BIO_s_secmem());
	if (bio == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) !=
	    1) {
		cf_err_set(err, CF_ERR_INTERNAL,
		           "cannot encode private key: %s",
		           ossl_reason(why, sizeof(why)));
		goto out;
	}
	s = bio_strdup(bio);
	if (s == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	*out = s;
	rc = 0;
out:
	BIO_free(bio);
	return rc;
}

int
crypto_key_generate(cf_key_type_t type, char **pem_out, cf_err_t *err)
{
	EVP_PKEY *pkey = NULL;
	char why[256];
	int rc = -1;

	ERR_clear_error();
	switch (type) {
	case CF_KEY_EC_P256:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		break;
	case CF_KEY_EC_P384:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
		break;
	case CF_KEY_RSA_2048:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		break;
	case CF_KEY_RSA_3072:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
		break;
	case CF_KEY_RSA_4096:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)4096);
		break;
	default:
		cf_err_set(err, CF_ERR_INTERNAL, "unknown key type %d",
		           (int)type);
		goto out;
	}
	if (pkey == NULL) {
		cf_err_set(err, CF_ERR_INTERNAL, "key generation failed: %s",
		           ossl_reason(why, sizeof(why)));
		goto out;
	}
	rc = key_to_pkcs8(pkey, pem_out, err);
out:
	EVP_PKEY_free(pkey);
	return rc;
}

/* ---------------------------------------------------------------- */
/* CSR                                                              */

int
crypto_csr_der(const char *key_pem, char *const *domains, size_t n,
               unsigned char **der, size_t *der_len, cf_err_t *err)
{
	EVP_PKEY *pkey = NULL;
	X509_REQ *req = NULL;
	X509_NAME *subj = NULL;
	GENERAL_NAMES *gens = NULL;
	GENERAL_NAME *g = NULL;
	ASN1_IA5STRING *ia5 = NULL;
	X509_EXTENSION *ext = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	const EVP_MD *md;
	unsigned char *buf = NULL, *copy;
	char why[256];
	int len, rc = -1;
	size_t i;

	ERR_clear_error();
	if (n == 0) {
		cf_err_set(err, CF_ERR_DATA, "a CSR needs at least one domain");
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (domains[i] == NULL || domains[i][0] == '\0') {
			cf_err_set(err, CF_ERR_DATA, "CSR domain %zu is empty",
			           i);
			goto out;
		}
	}
	if (load_private_key(key_pem, "CSR key: ", &pkey, err) < 0)
		goto out;

	req = X509_REQ_new();
	subj = X509_NAME_new();
	gens = sk_GENERAL_NAME_new_null();
	exts = sk_X509_EXTENSION_new_null();
	if (req == NULL || subj == NULL || gens == NULL || exts == NULL)
		goto ossl_fail;
	if (X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1)
		goto ossl_fail;
	/* ub-common-name is 64 (RFC 5280); longer names go in the SAN only
	 * and the subject stays empty, which CAs accept (RFC 8555 7.4). */
	if (strlen(domains[0]) <= 64 &&
	    X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_UTF8,
	                               (const unsigned char *)domains[0], -1,
	                               -1, 0) != 1)
		goto ossl_fail;
	if (X509_REQ_set_subject_name(req, subj) != 1)
		goto ossl_fail;
	if (X509_REQ_set_pubkey(req, pkey) != 1)
		goto ossl_fail;

	for (i = 0; i < n; i++) {
		g = GENERAL_NAME_new();
		ia5 = ASN1_IA5STRING_new();
		if (g == NULL || ia5 == NULL ||
		    ASN1_STRING_set(ia5, domains[i], -1) != 1)
			goto ossl_fail;
		GENERAL_NAME_set0_value(g, GEN_DNS, ia5);
		ia5 = NULL;
		if (sk_GENERAL_NAME_push(gens, g) <= 0)
			goto ossl_fail;
		g = NULL;
	}
	ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
	if (ext == NULL || sk_X509_EXTENSION_push(exts, ext) <= 0)
		goto ossl_fail;
	ext = NULL;
	if (X509_REQ_add_extensions(req, exts) != 1)
		goto ossl_fail;

	/* EdDSA signs the message itself and takes no digest. */
	md = (EVP_PKEY_is_a(pkey, "ED25519") || EVP_PKEY_is_a(pkey, "ED448"))
	         ? NULL
	         : EVP_sha256();
	if (X509_REQ_sign(req, pkey, md) <= 0)
		goto ossl_fail;
	len = i2d_X509_REQ(req, &buf);
	if (len <= 0)
		goto ossl_fail;
	copy = malloc((size_t)len);
	if (copy == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	memcpy(copy, buf, (size_t)len);
	*der = copy;
	*der_len = (size_t)len;
	rc = 0;
	goto out;
ossl_fail:
	cf_err_set(err, CF_ERR_INTERNAL, "cannot build CSR for %s: %s",
	           domains[0], ossl_reason(why, sizeof(why)));
out:
	OPENSSL_free(buf);
	X509_EXTENSION_free(ext);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(g);
	GENERAL_NAMES_free(gens);
	X509_NAME_free(subj);
	X509_REQ_free(req);
	EVP_PKEY_free(pkey);
	return rc;
}

/* ---------------------------------------------------------------- */
/* bundles                                                          */

void
crypto_bundle_free(struct cf_bundle *b)
{
	if (b == NULL)
		return;
	free(b->cert);
	free(b->chain);
	free(b->fullchain);
	if (b->privkey != NULL)
		cf_free_secret(b->privkey, strlen(b->privkey));
	memset(b, 0, sizeof(*b));
}

struct x509_list {
	X509 **v;
	size_t n;
};

static void
x509_list_free(struct x509_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		X509_free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static bool
x509_list_has(const struct x509_list *l, X509 *x)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (X509_cmp(l->v[i], x) == 0)
			return true;
	return false;
}

static bool
only_space(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
			return false;
	return true;
}

/* Append every PEM block of `text` to l, each of which must be a
 * certificate: a key or CSR pasted into a certificate file would
 * otherwise end up in a world-readable fullchain.  Text outside blocks
 * (openssl's "subject=" lines, comments) is ignored.  A certificate
 * already in l (the leaf repeated in chain.pem) is dropped. */
static int
collect_certs(const char *text, const char *pfx, struct x509_list *l,
              cf_err_t *err)
{
	BIO *bio = NULL;
	X509 *x = NULL;
	X509 **v;
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	const unsigned char *p;
	long dlen = 0;
	unsigned long e;
	char why[256];
	int block, rc = -1;

	bio = BIO_new_mem_buf(text, -1);
	if (bio == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (block = 1;; block++) {
		ERR_clear_error();
		if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
			e = ERR_peek_last_error();
			if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
			    ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
				ERR_clear_error();
				break;
			}
			cf_err_set(err, CF_ERR_DATA,
			           "%snot PEM: block %d is "
			           "malformed (%s)",
			           pfx, block, ossl_reason(why, sizeof(why)));
			goto out;
		}
		if (strcmp(name, PEM_STRING_X509) != 0 &&
		    strcmp(name, PEM_STRING_X509_OLD) != 0) {
			cf_err_set(err, CF_ERR_DATA,
			           "%sblock %d is a %.40s, "
			           "expected a CERTIFICATE",
			           pfx, block, name);
			goto out;
		}
		if (header[0] != '\0') {
			cf_err_set(err, CF_ERR_DATA,
			           "%scertificate block %d has "
			           "PEM headers",
			           pfx, block);
			goto out;
		}
		p = data;
		x = d2i_X509(NULL, &p, dlen);
		if (x == NULL || p != data + dlen) {
			cf_err_set(err, CF_ERR_DATA,
			           "%scertificate block %d does "
			           "not parse (%s)",
			           pfx, block,
			           x == NULL ? ossl_reason(why, sizeof(why))
			                     : "trailing bytes");
			goto out;
		}
		if (x509_list_has(l, x)) {
			X509_free(x);
		} else {
			v = realloc(l->v, (l->n + 1) * sizeof(*v));
			if (v == NULL) {
				cf_err_set(err, CF_ERR_NOMEM, "out of memory");
				goto out;
			}
			l->v = v;
			l->v[l->n++] = x;
		}
		x = NULL;
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_clear_free(data, (size_t)dlen);
		name = header = NULL;
		data = NULL;
	}
	rc = 0;
out:
	X509_free(x);
	OPENSSL_free(name);
	OPENSSL_free(header);
	/* The block might have been a private key. */
	OPENSSL_clear_free(data, dlen > 0 ? (size_t)dlen : 0);
	BIO_free(bio);
	return rc;
}

/* Canonical PEM of certificates [from, to) of l. */
static char *
certs_pem(const struct x509_list *l, size_t from, size_t to)
{
	BIO *bio;
	char *s = NULL;
	size_t i;

	bio = BIO_new(BIO_s_mem());
	if (bio == NULL)
		return NULL;
	for (i = from; i < to; i++)
		if (PEM_write_bio_X509(bio, l->v[i]) != 1)
			goto out;
	s = bio_strdup(bio);
out:
	BIO_free(bio);
	return s;
}

/* RFC 6125 6.4.3, the strict reading browsers use: a '*' is honoured
 * only as the whole leftmost label and matches exactly one non-empty
 * label, so "*.example.com" covers "a.example.com" but neither
 * "example.com" nor "a.b.example.com".  DNS names compare
 * case-insensitively. */
static bool
name_covers(const char *pattern, const char *domain)
{
	const char *dot;

	if (strcasecmp(pattern, domain) == 0)
		return true;
	if (pattern[0] != '*' || pattern[1] != '.')
		return false;
	/* A wildcard directly under a TLD ("*.com") never counts. */
	if (strchr(pattern + 2, '.') == NULL)
		return false;
	dot = strchr(domain, '.');
	if (dot == NULL || dot == domain)
		return false;
	return strcasecmp(pattern + 1, dot) == 0;
}

static int
check_coverage(const struct cf_certinfo *ci, char *const *domains,
               size_t n_domains, const char *pfx, cf_err_t *err)
{
	char names[256];
	size_t i, j, off;
	bool ok;

	for (i = 0; i < n_domains; i++) {
		ok = false;
		for (j = 0; j < ci->n_names && !ok; j++)
			ok = name_covers(ci->names[j], domains[i]);
		if (ok)
			continue;
		names[0] = '\0';
		off = 0;
		for (j = 0; j < ci->n_names && off < sizeof(names); j++)
			off +=
			    (size_t)snprintf(names + off, sizeof(names) - off,
			                     "%s%s", j > 0 ? ", " : "",
			                     ci->names[j]);
		if (off >= sizeof(names))
			memcpy(names + sizeof(names) - 4, "...", 4);
		return cf_err_set(err, CF_ERR_DATA,
		                  "%scertificate does not cover %s (names: %s)",
		                  pfx, domains[i],
		                  ci->n_names > 0 ? names : "none");
	}
	return 0;
}

int
crypto_bundle_from_pem(const char *cert_pem, const char *chain_pem,
                       const char *key_pem, char *const *domains,
                       size_t n_domains, int64_t now, struct cf_bundle *out,
                       struct cf_certinfo *info, cf_err_t *err)
{
	struct cf_bundle_labels labels = {NULL, NULL, NULL};

	return crypto_bundle_from_pem_labeled(cert_pem, chain_pem, key_pem,
	                                      &labels, domains, n_domains, now,
	                                      out, info, err);
}

int
crypto_bundle_from_pem_labeled(const char *cert_pem, const char *chain_pem,
                               const char *key_pem,
                               const struct cf_bundle_labels *labels,
                               char *const *domains, size_t n_domains,
                               int64_t now, struct cf_bundle *out,
                               struct cf_certinfo *info, cf_err_t *err)
{
	char bcert[256], bchain[256], bkey[256];
	const char *pc, *pch, *pk;
	struct x509_list certs = {NULL, 0};
	struct cf_bundle b = {NULL, NULL, NULL, NULL};
	struct cf_certinfo ci;
	EVP_PKEY *pkey = NULL;
	size_t n_leaf_input, clen, chlen;
	char when[32];
	int rc = -1;

	memset(&ci, 0, sizeof(ci));
	pc = prefix_of(labels ? labels->cert : NULL, "", bcert, sizeof(bcert));
	pch = prefix_of(labels ? labels->chain : NULL, PREFIX_CHAIN, bchain,
	                sizeof(bchain));
	pk = prefix_of(labels ? labels->key : NULL, PREFIX_KEY, bkey,
	               sizeof(bkey));

	if (cert_pem == NULL || key_pem == NULL) {
		cf_err_set(err, CF_ERR_INTERNAL,
		           "bundle needs a certificate and a key");
		goto out;
	}
	if (collect_certs(cert_pem, pc, &certs, err) < 0)
		goto out;
	if (certs.n == 0) {
		cf_err_set(err, CF_ERR_DATA, "%sno PEM certificate found", pc);
		goto out;
	}
	n_leaf_input = certs.n;
	if (chain_pem != NULL) {
		if (collect_certs(chain_pem, pch, &certs, err) < 0)
			goto out;
		/* An empty chain file is fine (self-signed or directly
		 * issued); a non-empty one without certificates is a mistake. */
		if (certs.n == n_leaf_input && !only_space(chain_pem) &&
		    strstr(chain_pem, "-----BEGIN") == NULL) {
			cf_err_set(err, CF_ERR_DATA,
			           "%sno PEM certificate found", pch);
			goto out;
		}
	}

	if (certinfo_from_x509(certs.v[0], &ci, err) < 0) {
		cf_err_prefix(err, "%s", pc);
		goto out;
	}

	if (load_private_key(key_pem, pk, &pkey, err) < 0)
		goto out;
	if (EVP_PKEY_eq(pkey, X509_get0_pubkey(certs.v[0])) != 1) {
		ERR_clear_error();
		if (labels != NULL && labels->key != NULL &&
		    labels->cert != NULL)
			cf_err_set(err, CF_ERR_DATA,
			           "%s: private key does not match "
			           "the certificate in %s (%s)",
			           labels->key, labels->cert, ci.subject);
		else
			cf_err_set(err, CF_ERR_DATA,
			           "private key does not match "
			           "the certificate (%s)",
			           ci.subject);
		goto out;
	}

	if (now > ci.not_after) {
		cf_fmt_time(ci.not_after, when, sizeof(when));
		cf_err_set(err, CF_ERR_DATA, "%scertificate expired on %s", pc,
		           when);
		goto out;
	}
	if (now < ci.not_before) {
		cf_fmt_time(ci.not_before, when, sizeof(when));
		cf_err_set(err, CF_ERR_DATA,
		           "%scertificate is not valid before %s", pc, when);
		goto out;
	}
	if (check_coverage(&ci, domains, n_domains, pc, err) < 0)
		goto out;

	b.cert = certs_pem(&certs, 0, 1);
	b.chain = certs_pem(&certs, 1, certs.n);
	if (b.cert == NULL || b.chain == NULL)
		goto nomem;
	clen = strlen(b.cert);
	chlen = strlen(b.chain);
	b.fullchain = malloc(clen + chlen + 1);
	if (b.fullchain == NULL)
		goto nomem;
	memcpy(b.fullchain, b.cert, clen);
	memcpy(b.fullchain + clen, b.chain, chlen + 1);
	if (key_to_pkcs8(pkey, &b.privkey, err) < 0)
		goto out;

	*out = b;
	memset(&b, 0, sizeof(b));
	if (info != NULL) {
		*info = ci;
		memset(&ci, 0, sizeof(ci));
	}
	rc = 0;
	goto out;
nomem:
	cf_err_set(err, CF_ERR_NOMEM,
	           "out of memory building certificate bundle");
out:
	crypto_bundle_free(&b);
	crypto_certinfo_free(&ci);
	EVP_PKEY_free(pkey);
	x509_list_free(&certs);
	ERR_clear_error();
	return rc;
}
