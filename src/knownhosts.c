/* knownhosts.c - OpenSSH known_hosts parsing and matching (see
 * knownhosts.h for the semantics).  Our own parser rather than libssh2's
 * knownhost API because libssh2 1.10 rejects @revoked/@cert-authority
 * lines, ignores patterns, and falls back from "[host]:port" to "host",
 * which would accept a key recorded for a different service on the host.
 *
 * OpenSSL is used directly (not through crypto.h) only for SHA-1 (hashed
 * host names) and SHA-256 (fingerprints), so this file can be fuzzed on its
 * own. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "certfleet/b64.h"
#include "knownhosts.h"

#define SHA1_LEN 20
#define HMAC_BLOCK 64
/* Longer names or patterns cannot be host names (DNS: 253) and are
 * skipped rather than matched, which keeps matching allocation-free. */
#define NAME_MAX_LEN 300

struct kh_entry {
	char *hosts; /* host field as written, NULL when hashed */
	unsigned char salt[SHA1_LEN];
	unsigned char hash[SHA1_LEN];
	bool hashed;
	char *type;          /* key type name, from the blob itself */
	unsigned char *blob; /* SSH wire-format public key */
	size_t blob_len;
};

struct cf_knownhosts {
	struct kh_entry *entries;
	size_t n, cap;
	struct kh_entry *revoked;
	size_t n_revoked, cap_revoked;
	/* Fetched once: OpenSSL 3 implicit fetches (EVP_sha1()) take a global
	 * lock on every digest init, and workers look hosts up in parallel. */
	EVP_MD *sha1;
};

struct cf_knownhosts_hits {
	const cf_knownhosts_t *kh;
	const struct kh_entry **e;
	size_t n;
	char *types;
};

/* OpenSSH 9.2's default HostKeyAlgorithms order, certificates left out
 * (@cert-authority is not supported); "ssh-rsa" stands for the key type,
 * which OpenSSH offers as rsa-sha2-512/256. */
static const char *const type_order[] = {
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa",
    "ssh-dss",
};

void
knownhosts_fingerprint(const unsigned char *blob, size_t len,
                       char out[KNOWNHOSTS_FP_LEN])
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	if (EVP_Digest(blob, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen != sizeof(md)) {
		snprintf(out, KNOWNHOSTS_FP_LEN, "SHA256:?");
		return;
	}
	memcpy(out, "SHA256:", 7);
	/* Unpadded, as OpenSSH prints fingerprints. */
	b64_encode(CF_B64_STD, md, sizeof(md), false, out + 7);
}

/* The key type name a public key blob starts with (RFC 4253 6.6), copied
 * into buf; -1 if the blob is malformed. */
static int
blob_type(const unsigned char *blob, size_t len, char *buf, size_t buflen)
{
	uint32_t n;

	if (len < 4)
		return -1;
	n = (uint32_t)blob[0] << 24 | (uint32_t)blob[1] << 16 |
	    (uint32_t)blob[2] << 8 | blob[3];
	if (n == 0 || n > len - 4 || n >= buflen)
		return -1;
	memcpy(buf, blob + 4, n);
	buf[n] = '\0';
	if (strlen(buf) != n)
		return -1;
	return 0;
}

static void
entry_clear(struct kh_entry *e)
{
	free(e->hosts);
	free(e->type);
	free(e->blob);
	memset(e, 0, sizeof(*e));
}

/* Next whitespace-delimited word of [*p, end); NULL at the end. */
static const char *
next_word(const char **p, const char *end, size_t *wlen)
{
	const char *s = *p, *w;

	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	if (s == end)
		return NULL;
	w = s;
	while (s < end && *s != ' ' && *s != '\t')
		s++;
	*wlen = (size_t)(s - w);
	*p = s;
	return w;
}

/* "|1|salt|hash" into e; -1 if malformed. */
static int
parse_hashed(const char *w, size_t n, struct kh_entry *e)
{
	const char *salt = w + 3, *bar, *end = w + n;
	unsigned char *b = NULL;
	size_t blen = 0;
	int rc = -1;

	bar = memchr(salt, '|', (size_t)(end - salt));
	if (bar == NULL)
		goto out;
	if (b64_decode(CF_B64_STD, salt, (size_t)(bar - salt), &b, &blen) < 0)
		goto out;
	if (blen != SHA1_LEN)
		goto out;
	memcpy(e->salt, b, SHA1_LEN);
	free(b);
	b = NULL;
	if (b64_decode(CF_B64_STD, bar + 1, (size_t)(end - bar - 1), &b,
	               &blen) < 0)
		goto out;
	if (blen != SHA1_LEN)
		goto out;
	memcpy(e->hash, b, SHA1_LEN);
	e->hashed = true;
	rc = 0;
out:
	free(b);
	return rc;
}

/* Parse one line into e.  1 = usable entry (*revoked says which list),
 * 0 = nothing to keep (comment, blank, skipped or malformed), -1 = ENOMEM. */
static int
parse_line(const char *p, const char *end, struct kh_entry *e, bool *revoked)
{
	const char *w, *hosts, *type, *key;
	size_t wlen, hlen, tlen, klen;
	char btype[64];
	int rc = 0;

	memset(e, 0, sizeof(*e));
	*revoked = false;
	w = next_word(&p, end, &wlen);
	if (w == NULL || *w == '#')
		return 0;
	if (*w == '@') {
		if (wlen == 8 && memcmp(w, "@revoked", 8) == 0)
			*revoked = true;
		else /* @cert-authority, or a marker we do not know */
			return 0;
		w = next_word(&p, end, &wlen);
		if (w == NULL)
			return 0;
	}
	hosts = w;
	hlen = wlen;
	type = next_word(&p, end, &tlen);
	key = next_word(&p, end, &klen);
	if (type == NULL || key == NULL || tlen >= sizeof(btype))
		return 0;
	if (b64_decode(CF_B64_STD, key, klen, &e->blob, &e->blob_len) < 0)
		goto skip;
	/* The type field must agree with the blob, or a line could claim an
	 * ed25519 key while holding something else. */
	if (blob_type(e->blob, e->blob_len, btype, sizeof(btype)) < 0 ||
	    strlen(btype) != tlen || memcmp(btype, type, tlen) != 0)
		goto skip;
	if (hlen >= 3 && memcmp(hosts, "|1|", 3) == 0) {
		if (parse_hashed(hosts, hlen, e) < 0)
			goto skip;
	} else {
		e->hosts = strndup(hosts, hlen);
		if (e->hosts == NULL)
			goto nomem;
	}
	e->type = strdup(btype);
	if (e->type == NULL)
		goto nomem;
	return 1;
nomem:
	rc = -1;
skip:
	entry_clear(e);
	return rc;
}

static int
push(struct kh_entry **v, size_t *n, size_t *cap, struct kh_entry *e)
{
	struct kh_entry *nv;
	size_t ncap;

	if (*n == *cap) {
		ncap = *cap ? *cap * 2 : 16;
		nv = realloc(*v, ncap * sizeof(**v));
		if (nv == NULL)
			return -1;
		*v = nv;
		*cap = ncap;
	}
	(*v)[(*n)++] = *e;
	return 0;
}

void
knownhosts_free(cf_knownhosts_t *kh)
{
	size_t i;

	if (kh == NULL)
		return;
	for (i = 0; i < kh->n; i++)
		entry_clear(&kh->entries[i]);
	for (i = 0; i < kh->n_revoked; i++)
		entry_clear(&kh->revoked[i]);
	free(kh->entries);
	free(kh->revoked);
	EVP_MD_free(kh->sha1);
	free(kh);
}

int
knownhosts_parse(const char *text, size_t len, cf_knownhosts_t **out,
                 cf_err_t *err)
{
	cf_knownhosts_t *kh;
	struct kh_entry e;
	const char *p = text, *end = text + len, *eol, *lend;
	bool revoked;
	int rc = -1, r;

	kh = calloc(1, sizeof(*kh));
	if (kh == NULL)
		return cf_err_set(err, CF_ERR_NOMEM,
		                  "known_hosts: out of memory");
	kh->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
	if (kh->sha1 == NULL) {
		cf_err_set(err, CF_ERR_INTERNAL,
		           "known_hosts: SHA-1 unavailable in OpenSSL");
		goto out;
	}
	while (p < end) {
		eol = memchr(p, '\n', (size_t)(end - p));
		lend = eol != NULL ? eol : end;
		if (lend > p && lend[-1] == '\r')
			lend--;
		r = parse_line(p, lend, &e, &revoked);
		if (r < 0)
			goto nomem;
		if (r > 0 &&
		    (revoked ? push(&kh->revoked, &kh->n_revoked,
		                    &kh->cap_revoked, &e)
		             : push(&kh->entries, &kh->n, &kh->cap, &e)) < 0) {
			entry_clear(&e);
			goto nomem;
		}
		p = eol != NULL ? eol + 1 : end;
	}
	*out = kh;
	kh = NULL;
	rc = 0;
	goto out;
nomem:
	cf_err_set(err, CF_ERR_NOMEM, "known_hosts: out of memory");
out:
	knownhosts_free(kh);
	return rc;
}

/* Glob with * and ?, pattern case-folded (name is already lower case).
 * Iterative with one backtrack point: linear enough that a hostile
 * known_hosts cannot make matching exponential. */
static bool
glob_match(const char *s, size_t sn, const char *p, size_t pn)
{
	size_t si = 0, pi = 0, star = SIZE_MAX, mark = 0;

	while (si < sn) {
		if (pi < pn && (p[pi] == '?' || tolower((unsigned char)p[pi]) ==
		                                    (unsigned char)s[si])) {
			si++;
			pi++;
		} else if (pi < pn && p[pi] == '*') {
			star = pi++;
			mark = si;
		} else if (star != SIZE_MAX) {
			pi = star + 1;
			si = ++mark;
		} else {
			return false;
		}
	}
	while (pi < pn && p[pi] == '*')
		pi++;
	return pi == pn;
}

/* OpenSSH match_hostname(): any positive pattern matches and no negated
 * one does. */
static bool
patterns_match(const char *list, const char *name, size_t nlen)
{
	const char *p = list, *comma;
	size_t plen;
	bool found = false, neg;

	for (;;) {
		comma = strchr(p, ',');
		plen = comma != NULL ? (size_t)(comma - p) : strlen(p);
		neg = plen > 0 && *p == '!';
		if (glob_match(name, nlen, p + neg, plen - neg)) {
			if (neg)
				return false;
			found = true;
		}
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return found;
}

static int
hmac_sha1(EVP_MD_CTX *mc, const EVP_MD *md, const unsigned char *key,
          size_t klen, const char *msg, size_t mlen,
          unsigned char out[SHA1_LEN])
{
	unsigned char pad[HMAC_BLOCK], inner[SHA1_LEN];
	size_t i;

	if (klen > HMAC_BLOCK)
		return -1;
	memset(pad, 0x36, sizeof(pad));
	for (i = 0; i < klen; i++)
		pad[i] ^= key[i];
	if (EVP_DigestInit_ex(mc, md, NULL) != 1 ||
	    EVP_DigestUpdate(mc, pad, sizeof(pad)) != 1 ||
	    EVP_DigestUpdate(mc, msg, mlen) != 1 ||
	    EVP_DigestFinal_ex(mc, inner, NULL) != 1)
		return -1;
	memset(pad, 0x5c, sizeof(pad));
	for (i = 0; i < klen; i++)
		pad[i] ^= key[i];
	if (EVP_DigestInit_ex(mc, md, NULL) != 1 ||
	    EVP_DigestUpdate(mc, pad, sizeof(pad)) != 1 ||
	    EVP_DigestUpdate(mc, inner, sizeof(inner)) != 1 ||
	    EVP_DigestFinal_ex(mc, out, NULL) != 1)
		return -1;
	return 0;
}

void
knownhosts_hits_free(cf_knownhosts_hits_t *h)
{
	if (h == NULL)
		return;
	free(h->e);
	free(h->types);
	free(h);
}

static bool
types_has(const char *list, const char *t)
{
	size_t tl = strlen(t);
	const char *p = list;

	while ((p = strstr(p, t)) != NULL) {
		if ((p == list || p[-1] == ',') &&
		    (p[tl] == ',' || p[tl] == '\0'))
			return true;
		p += tl;
	}
	return false;
}

static int
types_add(char **list, size_t *len, const char *t)
{
	size_t tl = strlen(t);
	char *nl;

	if (types_has(*list, t))
		return 0;
	nl = realloc(*list, *len + tl + 2);
	if (nl == NULL)
		return -1;
	if (*len > 0)
		nl[(*len)++] = ',';
	memcpy(nl + *len, t, tl + 1);
	*len += tl;
	*list = nl;
	return 0;
}

/* Comma list of the hit key types in OpenSSH preference order. */
static int
hits_build_types(cf_knownhosts_hits_t *h)
{
	size_t i, k, len = 0;

	h->types = strdup("");
	if (h->types == NULL)
		return -1;
	for (k = 0; k < sizeof(type_order) / sizeof(type_order[0]); k++)
		for (i = 0; i < h->n; i++)
			if (strcmp(h->e[i]->type, type_order[k]) == 0 &&
			    types_add(&h->types, &len, type_order[k]) < 0)
				return -1;
	for (i = 0; i < h->n; i++)
		if (types_add(&h->types, &len, h->e[i]->type) < 0)
			return -1;
	return 0;
}

int
knownhosts_lookup(const cf_knownhosts_t *kh, const char *host, unsigned port,
                  cf_knownhosts_hits_t **out, cf_err_t *err)
{
	cf_knownhosts_hits_t *h;
	EVP_MD_CTX *mc = NULL;
	unsigned char mac[SHA1_LEN];
	char name[NAME_MAX_LEN + 16];
	size_t i, nlen;
	int n, rc = -1;
	bool hit;

	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return cf_err_set(err, CF_ERR_NOMEM,
		                  "known_hosts: out of memory");
	h->kh = kh;
	/* OpenSSH put_host_port(): non-default ports live under
	 * "[host]:port", and only there. */
	n = port == 22 ? snprintf(name, sizeof(name), "%s", host)
	               : snprintf(name, sizeof(name), "[%s]:%u", host, port);
	if (n < 0 || (size_t)n >= sizeof(name) || strlen(host) > NAME_MAX_LEN) {
		cf_err_set(err, CF_ERR_CONFIG, "host name too long: %.64s...",
		           host);
		goto out;
	}
	nlen = (size_t)n;
	for (i = 0; i < nlen; i++)
		name[i] = (char)tolower((unsigned char)name[i]);
	if (kh->n > 0) {
		h->e = calloc(kh->n, sizeof(*h->e));
		mc = EVP_MD_CTX_new();
		if (h->e == NULL || mc == NULL) {
			cf_err_set(err, CF_ERR_NOMEM,
			           "known_hosts: out of memory");
			goto out;
		}
	}
	for (i = 0; i < kh->n; i++) {
		const struct kh_entry *e = &kh->entries[i];

		if (e->hashed) {
			if (hmac_sha1(mc, kh->sha1, e->salt, sizeof(e->salt),
			              name, nlen, mac) < 0) {
				cf_err_set(err, CF_ERR_INTERNAL,
				           "known_hosts: HMAC-SHA1 failed");
				goto out;
			}
			hit = memcmp(mac, e->hash, SHA1_LEN) == 0;
		} else {
			hit = patterns_match(e->hosts, name, nlen);
		}
		if (hit)
			h->e[h->n++] = e;
	}
	if (hits_build_types(h) < 0) {
		cf_err_set(err, CF_ERR_NOMEM, "known_hosts: out of memory");
		goto out;
	}
	*out = h;
	h = NULL;
	rc = 0;
out:
	EVP_MD_CTX_free(mc);
	knownhosts_hits_free(h);
	return rc;
}

const char *
knownhosts_hits_key_types(const cf_knownhosts_hits_t *h)
{
	return h->types;
}

cf_knownhosts_result_t
knownhosts_hits_check(const cf_knownhosts_hits_t *h, const unsigned char *blob,
                      size_t len)
{
	const cf_knownhosts_t *kh = h->kh;
	char type[64];
	size_t i;
	bool same_type = false;

	for (i = 0; i < kh->n_revoked; i++)
		if (kh->revoked[i].blob_len == len &&
		    memcmp(kh->revoked[i].blob, blob, len) == 0)
			return KNOWNHOSTS_REVOKED;
	if (blob_type(blob, len, type, sizeof(type)) < 0)
		return KNOWNHOSTS_NOTFOUND;
	for (i = 0; i < h->n; i++) {
		if (strcmp(h->e[i]->type, type) != 0)
			continue;
		if (h->e[i]->blob_len == len &&
		    memcmp(h->e[i]->blob, blob, len) == 0)
			return KNOWNHOSTS_MATCH;
		same_type = true;
	}
	return same_type ? KNOWNHOSTS_MISMATCH : KNOWNHOSTS_NOTFOUND;
}
