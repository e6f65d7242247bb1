/* test_b64.c - the one base64 coder (src/b64.c): base64url for ACME and
 * JWS, standard base64 for OpenSSH keys and known_hosts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "certfleet/b64.h"

static int
dec(enum cf_b64_alphabet a, const char *s, unsigned char **p, size_t *n)
{
	return b64_decode(a, s, strlen(s), p, n);
}

static void
test_b64url(void **state)
{
	/* RFC 4648 section 10 vectors, url alphabet, no padding. */
	static const struct {
		const char *in, *out;
	} v[] = {
	    {"", ""},
	    {"f", "Zg"},
	    {"fo", "Zm8"},
	    {"foo", "Zm9v"},
	    {"foob", "Zm9vYg"},
	    {"fooba", "Zm9vYmE"},
	    {"foobar", "Zm9vYmFy"},
	};
	static const unsigned char hi[] = {0xfb, 0xff, 0xbf, 0xfe};
	unsigned char all[256], *d = NULL;
	size_t i, n, dlen;
	char *s;

	(void)state;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		s = b64url_encode(v[i].in, strlen(v[i].in));
		assert_string_equal(s, v[i].out);
		assert_int_equal(dec(CF_B64_URL, s, &d, &dlen), 0);
		assert_int_equal(dlen, strlen(v[i].in));
		assert_memory_equal(d, v[i].in, dlen);
		free(d);
		free(s);
	}
	s = b64url_encode(hi, sizeof(hi));
	assert_string_equal(s, "-_-__g"); /* '+' '/' become '-' '_' */
	free(s);
	for (i = 0; i < sizeof(all); i++)
		all[i] = (unsigned char)(255 - i);
	for (n = 0; n <= sizeof(all); n += 17) {
		s = b64url_encode(all, n);
		assert_null(strchr(s, '='));
		assert_int_equal(dec(CF_B64_URL, s, &d, &dlen), 0);
		assert_int_equal(dlen, n);
		assert_memory_equal(d, all, n);
		free(d);
		free(s);
	}
	/* Padding optional on input. */
	assert_int_equal(dec(CF_B64_URL, "Zm8=", &d, &dlen), 0);
	assert_int_equal(dlen, 2);
	free(d);
	assert_int_equal(dec(CF_B64_URL, "Zg==", &d, &dlen), 0);
	assert_int_equal(dlen, 1);
	free(d);
	/* Standard alphabet, bad lengths, stray padding, non-zero tail bits. */
	assert_int_equal(dec(CF_B64_URL, "+/8", &d, &dlen), -1);
	assert_int_equal(dec(CF_B64_URL, "Z", &d, &dlen), -1);
	assert_int_equal(dec(CF_B64_URL, "Zg=", &d, &dlen), -1);
	assert_int_equal(dec(CF_B64_URL, "Z=g", &d, &dlen), -1);
	assert_int_equal(dec(CF_B64_URL, "Zh", &d, &dlen), -1);
	assert_int_equal(dec(CF_B64_URL, "Zm9v YmFy", &d, &dlen), -1);
}

static void
test_base64_std(void **state)
{
	static const unsigned char hi[] = {0xfb, 0xff, 0xbf, 0xfe};
	unsigned char *p = NULL;
	size_t n = 0;
	char enc[B64_ENCODED_SIZE(sizeof(hi))];

	(void)state;
	assert_int_equal(dec(CF_B64_STD, "Zm9vYg==", &p, &n), 0);
	assert_int_equal(n, 4);
	assert_memory_equal(p, "foob", 4);
	free(p);
	assert_int_equal(dec(CF_B64_STD, "Zm9vYg", &p, &n), 0);
	assert_int_equal(n, 4);
	free(p);
	assert_int_equal(dec(CF_B64_STD, "", &p, &n), 0);
	assert_int_equal(n, 0);
	free(p);
	/* the length counts, not a NUL */
	assert_int_equal(b64_decode(CF_B64_STD, "Zm9vYg==junk", 8, &p, &n), 0);
	assert_int_equal(n, 4);
	free(p);
	assert_int_equal(dec(CF_B64_STD, "Zm9v!g==", &p, &n), -1);
	assert_int_equal(dec(CF_B64_STD, "Zm9vY", &p, &n), -1);
	assert_int_equal(dec(CF_B64_STD, "Zm9vYg=", &p, &n), -1);
	assert_int_equal(dec(CF_B64_STD, "Zm9vY===", &p, &n), -1);
	assert_int_equal(dec(CF_B64_STD, "Zm9vYh==", &p, &n),
	                 -1);                                    /* tail bits */
	assert_int_equal(dec(CF_B64_STD, "-_-__g", &p, &n), -1); /* url */
	b64_encode(CF_B64_STD, "foob", 4, true, enc);
	assert_string_equal(enc, "Zm9vYg==");
	b64_encode(CF_B64_STD, "foob", 4, false, enc);
	assert_string_equal(enc, "Zm9vYg");
	b64_encode(CF_B64_STD, hi, sizeof(hi), true, enc);
	assert_string_equal(enc, "+/+//g==");
	assert_int_equal(dec(CF_B64_STD, enc, &p, &n), 0);
	assert_int_equal(n, sizeof(hi));
	assert_memory_equal(p, hi, n);
	free(p);
}

int
main(void)
{
	static const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_b64url),
	    cmocka_unit_test(test_base64_std),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
