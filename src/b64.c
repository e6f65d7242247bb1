/* b64.c - base64 and base64url (see b64.h). */
#include <stdint.h>
#include <stdlib.h>

#include "certfleet/b64.h"

static const char *const alphabet[] = {
    [CF_B64_STD] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    [CF_B64_URL] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
};

static int
b64_value(enum cf_b64_alphabet a, unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (unsigned char)alphabet[a][62])
		return 62;
	if (c == (unsigned char)alphabet[a][63])
		return 63;
	return -1;
}

void
b64_encode(enum cf_b64_alphabet a, const void *p, size_t n, bool pad, char *out)
{
	const unsigned char *in = p;
	const char *chars = alphabet[a];
	uint32_t acc = 0;
	size_t i, o = 0;
	int bits = 0;

	for (i = 0; i < n; i++) {
		acc = (acc << 8 | in[i]) & 0xffff;
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = chars[(acc >> bits) & 63];
		}
	}
	if (bits > 0)
		out[o++] = chars[(acc << (6 - bits)) & 63];
	while (pad && o % 4 != 0)
		out[o++] = '=';
	out[o] = '\0';
}

char *
b64url_encode(const void *p, size_t n)
{
	char *s = malloc(B64_ENCODED_SIZE(n));

	if (s != NULL)
		b64_encode(CF_B64_URL, p, n, false, s);
	return s;
}

int
b64_decode(enum cf_b64_alphabet a, const char *s, size_t n, unsigned char **out,
           size_t *len)
{
	unsigned char *buf;
	uint32_t acc = 0;
	size_t i, o = 0, pad = 0;
	int bits = 0, v;

	while (pad < 2 && n > 0 && s[n - 1] == '=') {
		n--;
		pad++;
	}
	if (pad > 0 && (n + pad) % 4 != 0)
		return -1;
	if (n % 4 == 1)
		return -1;
	buf = malloc(n / 4 * 3 + 3);
	if (buf == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		v = b64_value(a, (unsigned char)s[i]);
		if (v < 0)
			goto bad;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Leftover bits must be zero, or two encodings would decode to the
	 * same bytes (matters when comparing JWS parts or key blobs). */
	if (acc != 0)
		goto bad;
	*out = buf;
	*len = o;
	return 0;
bad:
	free(buf);
	return -1;
}
