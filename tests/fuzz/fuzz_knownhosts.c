/* fuzz_knownhosts.c - libFuzzer target: parse arbitrary known_hosts text,
 * look up a few names and check a key against them; also the base64 codec
 * the parser uses (what encode writes, decode must read back). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/b64.h"
#include "../../src/knownhosts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const hosts[] = { "web1.example.com", "10.0.0.1",
	                                     "::1", "a" };
	static const unsigned char key[] = {
		0, 0, 0, 11, 's', 's', 'h', '-', 'e', 'd', '2', '5', '5', '1',
		'9', 0, 0, 0, 32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
		15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
		31, 32,
	};
	cf_knownhosts_t *kh = NULL;
	cf_knownhosts_hits_t *h = NULL;
	cf_err_t err;
	size_t i;

	if (knownhosts_parse((const char *)data, size, &kh, &err) < 0)
		return 0;
	for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		if (knownhosts_lookup(kh, hosts[i], i % 2 ? 22 : 2222, &h,
		                      &err) < 0)
			continue;
		(void)knownhosts_hits_key_types(h);
		(void)knownhosts_hits_check(h, key, sizeof(key));
		(void)knownhosts_hits_check(h, data, size < 64 ? size : 64);
		knownhosts_hits_free(h);
	}
	knownhosts_free(kh);

	{
		char fp[KNOWNHOSTS_FP_LEN];
		unsigned char *dec = NULL;
		size_t dlen = 0;

		knownhosts_fingerprint(data, size, fp);
		if (memchr(fp, '\0', sizeof(fp)) == NULL)
			abort();
		if (b64_decode(CF_B64_STD, (const char *)data, size, &dec,
		                          &dlen) == 0) {
			char *enc = malloc(4 * ((dlen + 2) / 3) + 1);

			if (enc != NULL) {
				unsigned char *dec2 = NULL;
				size_t dlen2 = 0;

				/* what we encode, we must decode to the same bytes */
				b64_encode(CF_B64_STD, dec, dlen, dlen % 2 == 0, enc);
				if (b64_decode(CF_B64_STD, enc, strlen(enc), &dec2,
				                          &dlen2) < 0 ||
				    dlen2 != dlen || memcmp(dec, dec2, dlen) != 0)
					abort();
				free(dec2);
				free(enc);
			}
			free(dec);
		}
	}
	return 0;
}
