/* fuzz_pem.c - libFuzzer target: certificate/key input (--cert/--key files,
 * a CA's download, a certbot lineage).  The input is split at the first
 * "\n--split--\n" into cert text and key text (no marker: all of it is
 * both); both go through crypto_bundle_from_pem and the first part through
 * crypto_certinfo_pem. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *
dup_n(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s != NULL) {
		memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char mark[] = "\n--split--\n";
	static char *const domains[] = {"node.test", "www.node.test"};
	const uint8_t *m;
	char *cert, *key;
	size_t clen;
	struct cf_bundle b;
	struct cf_certinfo ci;
	cf_err_t err;

	if (size > 64 * 1024)
		return 0;
	m = memmem(data, size, mark, sizeof(mark) - 1);
	clen = m ? (size_t)(m - data) : size;
	cert = dup_n(data, clen);
	key = m ? dup_n(m + sizeof(mark) - 1, size - clen - (sizeof(mark) - 1))
	        : dup_n(data, size);
	if (cert == NULL || key == NULL)
		goto out;

	memset(&ci, 0, sizeof(ci));
	memset(&err, 0, sizeof(err));
	if (crypto_certinfo_pem(cert, clen, &ci, &err) == 0)
		crypto_certinfo_free(&ci);

	/* a fixed "now" (2027-01-15) inside the seed certificates' validity
	 * (tests/fuzz/corpus/pem: 10 years from 2026-11), so runs are
	 * reproducible */
	memset(&b, 0, sizeof(b));
	memset(&ci, 0, sizeof(ci));
	if (crypto_bundle_from_pem(cert, NULL, key, domains, 2, 1800000000,
	                           &b, &ci, &err) == 0) {
		/* contract: normalized texts ending in a newline */
		if (b.fullchain == NULL || b.privkey == NULL ||
		    b.fullchain[0] == '\0' ||
		    b.fullchain[strlen(b.fullchain) - 1] != '\n')
			abort();
		crypto_bundle_free(&b);
		crypto_certinfo_free(&ci);
	}
	/* no domain check, the cert text as its own chain too */
	memset(&b, 0, sizeof(b));
	if (crypto_bundle_from_pem(cert, cert, key, NULL, 0, 1800000000, &b,
	                           NULL, &err) == 0)
		crypto_bundle_free(&b);
out:
	free(cert);
	free(key);
	return 0;
}
