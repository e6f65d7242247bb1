/* b64.h - base64 (RFC 4648 section 4: OpenSSH keys, known_hosts,
 * fingerprints) and base64url (section 5: ACME, JWS), one coder for both
 * alphabets.  Our own rather than OpenSSL's EVP_EncodeBlock/DecodeBlock:
 * those know one alphabet, always pad, skip whitespace and count the
 * padding as decoded bytes; every caller here wants the opposite. */
#ifndef CERTFLEET_B64_H
#define CERTFLEET_B64_H

#include <stdbool.h>
#include <stddef.h>

enum cf_b64_alphabet {
	CF_B64_STD, /* A-Z a-z 0-9 + / */
	CF_B64_URL  /* A-Z a-z 0-9 - _ */
};

/* Bytes b64_encode writes for n input bytes, NUL included. */
#define B64_ENCODED_SIZE(n) (4 * (((n) + 2) / 3) + 1)

/* Encode n bytes into out (B64_ENCODED_SIZE(n) bytes), NUL-terminated,
 * with or without '=' padding. */
void b64_encode(enum cf_b64_alphabet a, const void *p, size_t n, bool pad,
                char *out);
/* Unpadded base64url of n bytes (RFC 7515 section 2); caller frees,
 * NULL on ENOMEM. */
char *b64url_encode(const void *p, size_t n);
/* Decode n characters (need not be NUL-terminated).  Padding is optional
 * but, when present, must complete the last quantum; no whitespace; the
 * unused bits of the last character must be zero (one encoding per byte
 * string, as OpenSSH's b64_pton and RFC 7515 require).  *out: caller
 * frees.  -1 on bad input or ENOMEM. */
int b64_decode(enum cf_b64_alphabet a, const char *s, size_t n,
               unsigned char **out, size_t *len);

#endif
