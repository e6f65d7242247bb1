/* test_sshkey.c - the SSH identity decoded once: public blobs equal to
 * what ssh-keygen wrote in the .pub file, signatures that verify, and
 * refusal (NULL, so libssh2's own parsing and messages take over) of
 * everything else.  Throwaway keys made for this test with ssh-keygen
 * (OpenSSH 9.2): -t ed25519; -t ecdsa -b 256; -t ecdsa -b 384 -m PEM;
 * -t ed25519 -N pw (encrypted).  Real logins with every format are in
 * tests/e2e/t-ssh-identities.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "certfleet/b64.h"
#include "../../src/sshkey.h"

static const char ED_KEY[] =
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACAR2MURrlzHK31OGX/r5lTT2fUf/LmzeZ8jbFHzMHi0hAAAAIifowy2n6MM\n"
    "tgAAAAtzc2gtZWQyNTUxOQAAACAR2MURrlzHK31OGX/r5lTT2fUf/LmzeZ8jbFHzMHi0hA\n"
    "AAAEDQFF2+AtZ1k1fNvHPI5WEjtG1DPHgVaHDoHeGOZxFxhxHYxRGuXMcrfU4Zf+vmVNPZ\n"
    "9R/8ubN5nyNsUfMweLSEAAAAAXQBAgME\n"
    "-----END OPENSSH PRIVATE KEY-----\n";

static const char ECP_KEY[] =
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS\n"
    "1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQQKNqEMcRnlcvpIZq+pTwJSIf/mxCzi\n"
    "Uocp9ialRR6gf7kv6evKhvNCBpaZK7HZFQwOA8eTJkemxccjiYDPP85OAAAAoKJvwOWib8\n"
    "DlAAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAo2oQxxGeVy+khm\n"
    "r6lPAlIh/+bELOJShyn2JqVFHqB/uS/p68qG80IGlpkrsdkVDA4Dx5MmR6bFxyOJgM8/zk\n"
    "4AAAAgGBjcZkiPJsYuvlYkrcKQxnkVr1XT61hq+44uSL3G2soAAAABdAECAwQFBgc=\n"
    "-----END OPENSSH PRIVATE KEY-----\n";

static const char ECPEM_KEY[] =
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MIGkAgEBBDAqzJxVUdnbPkgjLAC+8BF88ZYibTw6pTE/Z5tZpIK5G3nYjY8aDqQn\n"
    "hyP2Mg5mmcOgBwYFK4EEACKhZANiAASy9ErzMOcXMAfl/crRkGBsiX2j/AXL7Fn0\n"
    "zg4VTpKuOmufzaWmJv3GpRz7mhTLO2YUjndHrsxAqGcXsrQCrPbPy+2XQLwG3754\n"
    "t18Sx3HOaag62R/JF4np/hcrlbruMnk=\n"
    "-----END EC PRIVATE KEY-----\n";

static const char EDENC_KEY[] =
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABA3ErkPuU\n"
    "svSLHiptiNHoOQAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIA33CQIHZ1lrhFWh\n"
    "eXARTME9ugHFZHViJy8GXjZJkQfNAAAAkMTAme3JbdJTMUV8uay7Pbd1Oc2oKCIcOEtuhn\n"
    "ikT7WOjVOe9KsBlG/DyaGaWPSVQFpr+Cq9CHmW8RT/yZID7XoRTsaVXD3lJACGQPeU5b4o\n"
    "5Fyc00jiXJ6JgJZWVVT7MtSQAqOsWEVKwIlEy1Aft21cfrVoyr/CeKGTftmWY451rK4Z/6\n"
    "LdJBnV59Ih0CjF0Q==\n"
    "-----END OPENSSH PRIVATE KEY-----\n";

#define ED_PUB                                                                 \
	"AAAAC3NzaC1lZDI1NTE5AAAAIBHYxRGuXMcrfU4Zf+vmVNPZ9R/8ubN5nyNsUfMweLSE"

#define ECP_PUB                                                                \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAo2oQxxGeVy+"    \
	"khmr6lPAlIh/+bELOJShyn2JqVFHqB/uS/"                                   \
	"p68qG80IGlpkrsdkVDA4Dx5MmR6bFxyOJgM8/zk4="

#define ECPEM_PUB                                                              \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBLL0SvMw5xcwB+"   \
	"X9ytGQYGyJfaP8BcvsWfTODhVOkq46a5/NpaYm/"                              \
	"calHPuaFMs7ZhSOd0euzECoZxeytAKs9s/"                                   \
	"L7ZdAvAbfvni3XxLHcc5pqDrZH8kXien+FyuVuu4yeQ=="

static uint32_t
be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* A public key from its SSH blob, to verify with. */
static EVP_PKEY *
pub_from_blob(const unsigned char *b, size_t n, const char **md)
{
	uint32_t tl = be32(b), cl, ql;
	const unsigned char *q;
	OSSL_PARAM_BLD *bld;
	OSSL_PARAM *params;
	EVP_PKEY_CTX *ctx;
	EVP_PKEY *pk = NULL;
	char group[16];

	assert_true(n > 4 + tl);
	if (tl == 11 && memcmp(b + 4, "ssh-ed25519", 11) == 0) {
		assert_int_equal(be32(b + 15), 32);
		*md = NULL;
		return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
		                                   b + 19, 32);
	}
	cl = be32(b + 4 + tl);
	q = b + 4 + tl + 4 + cl + 4;
	ql = be32(q - 4);
	assert_int_equal(4 + tl + 4 + cl + 4 + ql, n);
	if (memcmp(b + 4 + tl + 4, "nistp256", 8) == 0) {
		strcpy(group, "prime256v1");
		*md = "SHA256";
	} else {
		strcpy(group, "secp384r1");
		*md = "SHA384";
	}
	bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group,
	                                0);
	OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, q, ql);
	params = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY,
	                                   params),
	                 1);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return pk;
}

/* mpint r, mpint s back to DER for OpenSSL to verify */
static size_t
ecdsa_der(const unsigned char *sig, size_t n, unsigned char *der)
{
	uint32_t rl = be32(sig), sl;
	ECDSA_SIG *es = ECDSA_SIG_new();
	unsigned char *p = der;
	int len;

	assert_true(n >= 8 + rl);
	sl = be32(sig + 4 + rl);
	assert_int_equal(n, 8 + rl + sl);
	/* mpints are minimal: a leading zero only before a set top bit */
	if (rl > 0 && sig[4] == 0)
		assert_true(rl > 1 && (sig[5] & 0x80));
	assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig + 4, (int)rl, NULL),
	                                BN_bin2bn(sig + 8 + rl, (int)sl, NULL)),
	                 1);
	len = i2d_ECDSA_SIG(es, &p);
	ECDSA_SIG_free(es);
	assert_true(len > 0);
	return (size_t)len;
}

static void
check_key(const char *text, const char *pub_b64)
{
	cf_sshkey_t *k = sshkey_load(text, strlen(text));
	unsigned char *want = NULL, *sig = NULL, der[200];
	const unsigned char *blob;
	size_t want_len = 0, blob_len, sig_len = 0, dl;
	const char *md = NULL;
	static const unsigned char data[] = "session id and userauth request";
	EVP_MD_CTX *mc;
	EVP_PKEY *pk;
	int i;

	assert_non_null(k);
	assert_int_equal(b64_decode(CF_B64_STD, pub_b64, strlen(pub_b64), &want,
	                            &want_len),
	                 0);
	blob = sshkey_blob(k, &blob_len);
	assert_int_equal(blob_len, want_len);
	assert_memory_equal(blob, want, want_len);
	pk = pub_from_blob(blob, blob_len, &md);
	assert_non_null(pk);
	/* several signatures: ecdsa's r and s vary in length */
	for (i = 0; i < 8; i++) {
		assert_int_equal(sshkey_sign(k, &sig, &sig_len, data,
		                             sizeof(data)),
		                 0);
		mc = EVP_MD_CTX_new();
		assert_int_equal(EVP_DigestVerifyInit(mc, NULL,
		                                      md ? EVP_get_digestbyname(
		                                               md)
		                                         : NULL,
		                                      NULL, pk),
		                 1);
		if (md == NULL) {
			assert_int_equal(sig_len, 64);
			assert_int_equal(EVP_DigestVerify(mc, sig, sig_len,
			                                  data, sizeof(data)),
			                 1);
		} else {
			dl = ecdsa_der(sig, sig_len, der);
			assert_int_equal(EVP_DigestVerify(mc, der, dl, data,
			                                  sizeof(data)),
			                 1);
		}
		EVP_MD_CTX_free(mc);
		free(sig);
	}
	EVP_PKEY_free(pk);
	free(want);
	sshkey_free(k);
}

static void
test_ed25519_openssh(void **state)
{
	(void)state;
	check_key(ED_KEY, ED_PUB);
}

static void
test_ecdsa256_openssh(void **state)
{
	(void)state;
	check_key(ECP_KEY, ECP_PUB);
}

static void
test_ecdsa384_pem(void **state)
{
	(void)state;
	check_key(ECPEM_KEY, ECPEM_PUB);
}

static void
test_refused(void **state)
{
	char buf[sizeof(ED_KEY)];
	size_t n = strlen(ED_KEY);

	(void)state;
	/* encrypted: libssh2 says it is, via the fallback path */
	assert_null(sshkey_load(EDENC_KEY, strlen(EDENC_KEY)));
	assert_null(sshkey_load("", 0));
	assert_null(sshkey_load("garbage", 7));
	assert_null(sshkey_load("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"
	                        "-----END OPENSSH PRIVATE KEY-----\n",
	                        75));
	/* every truncation of a valid key is refused, never read past */
	for (size_t cut = 40; cut + 40 < n; cut += 7) {
		memcpy(buf, ED_KEY, cut);
		strcpy(buf + cut, "\n-----END OPENSSH PRIVATE KEY-----\n");
		assert_null(sshkey_load(buf, strlen(buf)));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ed25519_openssh),
	    cmocka_unit_test(test_ecdsa256_openssh),
	    cmocka_unit_test(test_ecdsa384_pem),
	    cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
