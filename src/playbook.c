/* playbook.c - load and validate a playbook (format in docs/playbook.md).
 *
 * Everything a playbook says ends up on a remote machine: paths become SFTP
 * targets, names become file names in the state directory, hosts reach
 * getaddrinfo and SSH, commands run under the node's shell.  So validation
 * is strict and whitelist-based, and it happens here, once, before any
 * network traffic: later modules may assume every string is well-formed.
 *
 * Error messages follow "FILE:LINE: KEY.PATH: problem".  jansson keeps no
 * positions for values, so lines come from jsonpos.c re-scanning the text
 * along the same key path the validator is looking at. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "certfleet/playbook.h"
#include "jsonpos.h"

/* A fleet of tens of thousands of nodes fits in well under 1 MiB; a larger
 * file is a mistake (wrong path, generated garbage), not a playbook. */
#define PB_MAX_BYTES (1024 * 1024)
/* A valid playbook nests 4 deep (deploy.files[i].mode); 32 leaves room for
 * x- extensions while keeping hostile input far from jansson's own limit. */
#define PB_MAX_DEPTH 32
#define PB_MAX_PATH 4096
#define PB_MAX_NAME 64
#define PB_MAX_USER 32
#define PB_MAX_HOST 253
#define PB_MAX_DOMAINS 100
#define PB_MAX_ENDPOINTS 32
#define PB_MAX_COMMAND 4096
#define PB_MAX_URL 2048
#define PB_MAX_TEXT 256
#define PB_MAX_TIMEOUT 3600
#define PB_MAX_DAYS 3650.0
/* Key paths are at most 4 deep (deploy.files[0].mode). */
#define CF_NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define PATH_DEPTH 8

struct pctx {
	const char *name; /* file name for messages */
	const char *text; /* raw JSON, for line numbers */
	size_t len;
	struct jsonpos_elem path[PATH_DEPTH];
	size_t depth;
	cf_err_t *err;
};

/* A string validator: may rewrite s in place (lower-casing), explains a
 * rejection in why. */
typedef bool (*check_fn)(char *s, char *why, size_t whylen);

static const char *const content_names[] = {
    [CF_CONTENT_CERT] = "cert",           [CF_CONTENT_CHAIN] = "chain",
    [CF_CONTENT_FULLCHAIN] = "fullchain", [CF_CONTENT_PRIVKEY] = "privkey",
    [CF_CONTENT_COMBINED] = "combined",   NULL,
};

static const char *const key_type_names[] = {
    [CF_KEY_EC_P256] = "ec-p256",   [CF_KEY_EC_P384] = "ec-p384",
    [CF_KEY_RSA_2048] = "rsa-2048", [CF_KEY_RSA_3072] = "rsa-3072",
    [CF_KEY_RSA_4096] = "rsa-4096", NULL,
};

static const char *const challenge_names[] = {"http-01", "dns-01", NULL};

static const char *const top_keys[] = {
    "description", "certificate", "acme",  "ssh",   "deploy", "verify",
    "rollout",     "notify",      "store", "nodes", NULL,
};
static const char *const cert_keys[] = {"name", "domains", "key_type", NULL};
static const char *const acme_keys[] = {
    "directory",       "contact",
    "challenge",       "dns_hook",
    "ca_bundle",       "renew_before_days",
    "preferred_chain", "profile",
    "reuse_key",       "eab",
    "timeout",         NULL,
};
static const char *const eab_keys[] = {"kid", "hmac_key", "hmac_key_file",
                                       NULL};
static const char *const ssh_keys[] = {
    "user",    "port", "identity", "known_hosts", "connect_timeout",
    "timeout", NULL,
};
static const char *const deploy_keys[] = {
    "files", "check", "reload", "webroot", "keep_previous", "haproxy_api", NULL,
};
static const char *const haproxy_api_keys[] = {"port", "cert", NULL};
static const char *const file_keys[] = {
    "path", "content", "mode", "owner", "group", "shared_dir", NULL,
};
static const char *const verify_keys[] = {
    "port", "endpoints", "server_name", "names", "ca_bundle", "timeout", NULL,
};
static const char *const endpoint_keys[] = {"port", "starttls", NULL};
static const char *const rollout_keys[] = {
    "concurrency", "canary", "canary_failures", "max_failures", NULL,
};
static const char *const store_keys[] = {"keep_versions", NULL};
static const char *const notify_keys[] = {
    "webhooks",
    "command",
    "warn_days",
    NULL,
};
static const char *const node_keys[] = {"name", "host", "port", "user", NULL};

/* ---- messages ------------------------------------------------------- */

static int
bad(struct pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fail with "FILE:LINE: KEY.PATH: problem" for the current key path. */
static int
bad(struct pctx *c, const char *fmt, ...)
{
	char what[CF_ERR_MSG_MAX], where[256];
	size_t depth = c->depth < PATH_DEPTH ? c->depth : PATH_DEPTH;
	unsigned line;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	line = jsonpos_line(c->text, c->len, c->path, depth, NULL);
	jsonpos_format_path(c->path, depth, where, sizeof(where));
	if (depth == 0)
		cf_err_set(c->err, CF_ERR_CONFIG, "%s:%u: %s", c->name, line,
		           what);
	else
		cf_err_set(c->err, CF_ERR_CONFIG, "%s:%u: %s: %s", c->name,
		           line, where, what);
	return -1;
}

static int
nomem(struct pctx *c)
{
	return cf_err_set(c->err, CF_ERR_NOMEM, "%s: out of memory", c->name);
}

static void
push_key(struct pctx *c, const char *key)
{
	if (c->depth < PATH_DEPTH) {
		c->path[c->depth].key = key;
		c->path[c->depth].index = 0;
	}
	c->depth++;
}

static void
push_index(struct pctx *c, size_t index)
{
	if (c->depth < PATH_DEPTH) {
		c->path[c->depth].key = NULL;
		c->path[c->depth].index = index;
	}
	c->depth++;
}

static void
pop(struct pctx *c)
{
	c->depth--;
}

static const char *
type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "real";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	case JSON_NULL: return "null";
	}
	return "unknown";
}

static int
wrong_type(struct pctx *c, const json_t *v, const char *want)
{
	return bad(c, "expected %s, got %s", want, type_name(v));
}

/* Optimal string alignment distance (a transposition counts as one edit:
 * "conenct" is one typo away).  Long inputs are never typos of our keys. */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t d[65][65];

	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t v = d[i - 1][j] + 1;

			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
			    a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

/* The one candidate within two edits, closer than any other; NULL when
 * there is none or the choice would be a guess. */
static const char *
suggest(const char *word, const char *const *known)
{
	const char *best = NULL;
	size_t best_d = SIZE_MAX;
	bool tie = false;

	for (size_t i = 0; known[i] != NULL; i++) {
		size_t d = edit_distance(word, known[i]);

		if (d > 2 || d >= strlen(known[i]))
			continue;
		if (d < best_d) {
			best = known[i];
			best_d = d;
			tie = false;
		} else if (d == best_d) {
			tie = true;
		}
	}
	return tie ? NULL : best;
}

static bool
in_list(const char *s, const char *const *list)
{
	for (size_t i = 0; list[i] != NULL; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static void
join_list(const char *const *list, char *buf, size_t buflen)
{
	size_t pos = 0;

	buf[0] = '\0';
	for (size_t i = 0; list[i] != NULL && pos < buflen; i++)
		pos += (size_t)snprintf(buf + pos, buflen - pos, "%s%s",
		                        i > 0 ? ", " : "", list[i]);
}

/* Unknown keys are errors, not warnings: a typo such as "connct_timeout"
 * would otherwise silently run with the default.  "x-" keys are the
 * sanctioned way to carry extra data, so they are skipped everywhere. */
static int
check_keys(struct pctx *c, json_t *obj, const char *const *known)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v)
	{
		const char *hint;

		(void)v;
		if (strncmp(key, "x-", 2) == 0 || in_list(key, known))
			continue;
		push_key(c, key);
		hint = suggest(key, known);
		if (hint != NULL)
			return bad(c, "unknown key, did you mean %s?", hint);
		return bad(c, "unknown key");
	}
	return 0;
}

/* ---- string rules --------------------------------------------------- */

static bool
has_ctl_or_space(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return true;
	return false;
}

static bool
has_ctl(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return true;
	return false;
}

static bool
is_alnum(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9');
}

/* Explain the first byte of s outside `allowed` (alnum plus the listed
 * punctuation).  False when every byte is allowed. */
static bool
bad_char(const char *s, const char *allowed, const char *rule, char *why,
         size_t whylen)
{
	for (const char *p = s; *p; p++) {
		if (is_alnum(*p) || strchr(allowed, *p) != NULL)
			continue;
		if ((unsigned char)*p >= 0x80)
			snprintf(why, whylen,
			         "contains non-ASCII characters; %s", rule);
		else
			snprintf(why, whylen, "contains '%c'; %s", *p, rule);
		return true;
	}
	return false;
}

static bool
check_len(const char *s, size_t max, char *why, size_t whylen)
{
	size_t n = strlen(s);

	if (n == 0) {
		snprintf(why, whylen, "must not be empty");
		return false;
	}
	if (n > max) {
		snprintf(why, whylen, "longer than %zu characters", max);
		return false;
	}
	return true;
}

/* One word: not empty, at most max bytes, no whitespace or control
 * characters. */
static bool
check_word(const char *s, size_t max, char *why, size_t whylen)
{
	if (!check_len(s, max, why, whylen))
		return false;
	if (has_ctl_or_space(s)) {
		snprintf(why, whylen,
		         "contains whitespace or control characters");
		return false;
	}
	return true;
}

/* A leading '-' would read as an option to ssh, chown or a hook. */
static bool
check_no_dash(const char *s, char *why, size_t whylen)
{
	if (s[0] == '-') {
		snprintf(why, whylen, "must not start with '-'");
		return false;
	}
	return true;
}

/* Store names become directory names and node names appear in file names
 * and logs: a small safe alphabet, and no leading '-' (option injection)
 * or '.' (hidden files, "." and ".."). */
static bool
check_name_len(char *s, size_t max, char *why, size_t whylen)
{
	if (!check_word(s, max, why, whylen))
		return false;
	if (s[0] == '-' || s[0] == '.') {
		snprintf(why, whylen, "must not start with '%c'", s[0]);
		return false;
	}
	return !bad_char(s, "._-", "names use only A-Z a-z 0-9 . _ -", why,
	                 whylen);
}

static bool
check_name(char *s, char *why, size_t whylen)
{
	return check_name_len(s, PB_MAX_NAME, why, whylen);
}

/* The certificate name is a directory under the state directory, next to
 * entries the store keeps for itself (store.c refuses them too; saying so
 * here gives the operator a line number). */
static bool
check_cert_name(char *s, char *why, size_t whylen)
{
	if (!check_name(s, why, whylen))
		return false;
	if (strcmp(s, "lock") == 0 || strcmp(s, "accounts") == 0) {
		snprintf(why, whylen,
		         "\"%s\" is reserved by the state directory", s);
		return false;
	}
	return true;
}

/* Profile names are CA-defined tokens ("tlsserver", "shortlived"). */
static bool
check_token(char *s, char *why, size_t whylen)
{
	return check_name_len(s, PB_MAX_NAME, why, whylen);
}

/* User and group names reach the remote shell and chown: the POSIX
 * portable set, no leading '-'. */
static bool
check_user(char *s, char *why, size_t whylen)
{
	if (!check_word(s, PB_MAX_USER, why, whylen) ||
	    !check_no_dash(s, why, whylen))
		return false;
	return !bad_char(s, "._-",
	                 "user and group names use only "
	                 "A-Z a-z 0-9 . _ -",
	                 why, whylen);
}

/* Paths are written over SFTP and may appear in remote commands: absolute,
 * canonical (no "." / ".." / "//", so the path we check is the path we
 * write), a charset without shell metacharacters or spaces, and no
 * component that a command could take for an option. */
static bool
check_path(char *s, char *why, size_t whylen)
{
	const char *p;

	if (!check_word(s, PB_MAX_PATH, why, whylen))
		return false;
	if (s[0] != '/') {
		snprintf(why, whylen,
		         "must be an absolute path (start with '/')");
		return false;
	}
	if (bad_char(s, "._/+@:,=-",
	             "paths use only A-Z a-z 0-9 and . _ / + @ : , = -", why,
	             whylen))
		return false;
	if (strstr(s, "//") != NULL) {
		snprintf(why, whylen, "contains '//'");
		return false;
	}
	if (s[strlen(s) - 1] == '/') {
		snprintf(why, whylen, "must not end with '/'");
		return false;
	}
	for (p = s + 1; *p != '\0';) {
		size_t n = strcspn(p, "/");

		if ((n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.')) {
			snprintf(why, whylen, "contains a '%.*s' component",
			         (int)n, p);
			return false;
		}
		if (p[0] == '-') {
			snprintf(why, whylen,
			         "has a component starting with '-'");
			return false;
		}
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

/* Shell commands by design (run by the node's shell), so any printable
 * text is fine; control characters are not: a newline would smuggle a
 * second command past anyone reviewing the playbook. */
static bool
check_command(char *s, char *why, size_t whylen)
{
	if (!check_len(s, PB_MAX_COMMAND, why, whylen))
		return false;
	if (has_ctl(s)) {
		snprintf(why, whylen,
		         "contains control characters (newline, tab, ...)");
		return false;
	}
	if (strspn(s, " ") == strlen(s)) {
		snprintf(why, whylen, "must not be blank");
		return false;
	}
	return true;
}

static bool
check_text(char *s, char *why, size_t whylen)
{
	if (!check_len(s, PB_MAX_TEXT, why, whylen))
		return false;
	if (has_ctl(s)) {
		snprintf(why, whylen, "contains control characters");
		return false;
	}
	return true;
}

/* Labels of letters, digits and '-' (not at either end), 1..63 each, no
 * empty label.  lower: fold to lower case (certificate names) or accept
 * both (host names). */
static bool
check_labels(char *s, bool lower, const char *rule, char *why, size_t whylen)
{
	char *label = s;

	if (bad_char(s, ".-", rule, why, whylen))
		return false;
	for (;;) {
		size_t n = strcspn(label, ".");

		if (n == 0) {
			snprintf(why, whylen, "has an empty label");
			return false;
		}
		if (n > 63) {
			snprintf(why, whylen,
			         "has a label longer than 63 characters");
			return false;
		}
		if (label[0] == '-' || label[n - 1] == '-') {
			snprintf(why, whylen,
			         "has a label starting or ending with '-'");
			return false;
		}
		if (lower)
			for (size_t i = 0; i < n; i++)
				if (label[i] >= 'A' && label[i] <= 'Z')
					label[i] = (char)(label[i] - 'A' + 'a');
		if (label[n] == '\0')
			return true;
		label += n + 1;
	}
}

static bool
looks_like_ipv4(const char *s)
{
	return strspn(s, "0123456789.") == strlen(s);
}

static bool
check_dns_common(char *s, bool wildcard_ok, char *why, size_t whylen)
{
	char *rest = s;
	struct in_addr a4;

	if (!check_word(s, PB_MAX_HOST, why, whylen))
		return false;
	if (wildcard_ok && strncmp(s, "*.", 2) == 0)
		rest = s + 2;
	if (strchr(rest, '*') != NULL) {
		snprintf(why, whylen,
		         wildcard_ok ? "a wildcard must be the whole first "
		                       "label (*.example.com)"
		                     : "must not be a wildcard");
		return false;
	}
	if (*rest == '\0') {
		snprintf(why, whylen, "has an empty label");
		return false;
	}
	if (inet_pton(AF_INET, rest, &a4) == 1 || strchr(rest, ':') != NULL) {
		snprintf(why, whylen, "is an IP address, expected a DNS name");
		return false;
	}
	return check_labels(rest, true,
	                    "DNS names use only a-z 0-9 . - (IDNs in xn-- "
	                    "form)",
	                    why, whylen);
}

static bool
check_domain(char *s, char *why, size_t whylen)
{
	return check_dns_common(s, true, why, whylen);
}

static bool
check_server_name(char *s, char *why, size_t whylen)
{
	return check_dns_common(s, false, why, whylen);
}

/* Hosts go to getaddrinfo and appear in messages and known_hosts lookups.
 * Whitespace, control characters or a leading '-' are never part of a real
 * host and are what command or log injection looks like. */
static bool
check_host(char *s, char *why, size_t whylen)
{
	if (!check_word(s, PB_MAX_HOST, why, whylen) ||
	    !check_no_dash(s, why, whylen))
		return false;
	if (s[0] == '[') {
		snprintf(why, whylen, "write IPv6 addresses without brackets");
		return false;
	}
	if (strchr(s, ':') != NULL) {
		char addr[INET6_ADDRSTRLEN + 1];
		char *zone = strchr(s, '%');
		size_t alen = zone != NULL ? (size_t)(zone - s) : strlen(s);
		struct in6_addr a6;

		if (alen >= sizeof(addr)) {
			snprintf(why, whylen, "is not a valid IPv6 address");
			return false;
		}
		memcpy(addr, s, alen);
		addr[alen] = '\0';
		if (inet_pton(AF_INET6, addr, &a6) != 1) {
			snprintf(why, whylen, "is not a valid IPv6 address");
			return false;
		}
		/* fe80::1%eth0: the zone is an interface name */
		if (zone != NULL &&
		    (zone[1] == '\0' || strlen(zone + 1) > 15 ||
		     bad_char(zone + 1, "._-", "", why, whylen))) {
			snprintf(why, whylen,
			         "has an invalid IPv6 zone (interface name)");
			return false;
		}
		return true;
	}
	if (looks_like_ipv4(s)) {
		struct in_addr a4;

		if (inet_pton(AF_INET, s, &a4) != 1) {
			snprintf(why, whylen, "is not a valid IPv4 address");
			return false;
		}
		return true;
	}
	return check_labels(s, false, "host names use only A-Z a-z 0-9 . -",
	                    why, whylen);
}

static bool
check_url_scheme(char *s, const char *const *schemes, const char *what,
                 char *why, size_t whylen)
{
	if (!check_word(s, PB_MAX_URL, why, whylen))
		return false;
	for (size_t i = 0; schemes[i] != NULL; i++) {
		size_t n = strlen(schemes[i]);

		if (strncmp(s, schemes[i], n) != 0)
			continue;
		if (s[n] == '\0' || s[n] == '/') {
			snprintf(why, whylen, "has no host after %s",
			         schemes[i]);
			return false;
		}
		return true;
	}
	snprintf(why, whylen, "must start with %s", what);
	return false;
}

/* The directory URL carries the account key's signed requests: TLS only. */
static bool
check_directory(char *s, char *why, size_t whylen)
{
	static const char *const https[] = {"https://", NULL};

	return check_url_scheme(s, https, "https://", why, whylen);
}

static bool
check_webhook(char *s, char *why, size_t whylen)
{
	static const char *const web[] = {"https://", "http://", NULL};

	return check_url_scheme(s, web, "https:// or http://", why, whylen);
}

static bool
check_contact(char *s, char *why, size_t whylen)
{
	if (!check_word(s, 7 + 320, why, whylen))
		return false;
	if (strncmp(s, "mailto:", 7) != 0 || strchr(s + 7, '@') == NULL ||
	    s[7] == '@' || s[strlen(s) - 1] == '@') {
		snprintf(why, whylen,
		         "must be a mailto: URI (mailto:ops@example.com)");
		return false;
	}
	return true;
}

static bool
check_kid(char *s, char *why, size_t whylen)
{
	if (!check_word(s, 512, why, whylen))
		return false;
	return true;
}

/* A secret: the reasons never quote it. */
static bool
check_hmac_key(char *s, char *why, size_t whylen)
{
	size_t n = strlen(s), body = strcspn(s, "=");

	if (!check_len(s, 1024, why, whylen))
		return false;
	if (body == 0 || strspn(s + body, "=") != n - body || n - body > 2) {
		snprintf(why, whylen, "must be base64url (A-Z a-z 0-9 - _)");
		return false;
	}
	for (size_t i = 0; i < body; i++) {
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_') {
			snprintf(why, whylen,
			         "must be base64url (A-Z a-z 0-9 - _)");
			return false;
		}
	}
	return true;
}

/* ---- typed getters ---------------------------------------------------
 * Each looks `key` up in obj with the key on the path (so a message points
 * at it), stores into *out only when the key is present and valid, and
 * leaves *out (the default) alone when it is absent and optional. */

static int
missing(struct pctx *c)
{
	return bad(c, "missing required key");
}

static int
get_string(struct pctx *c, json_t *obj, const char *key, bool required,
           check_fn check, char **out)
{
	char why[256];
	json_t *v;
	char *s;

	push_key(c, key);
	v = json_object_get(obj, key);
	if (v == NULL) {
		if (required)
			return missing(c);
		pop(c);
		return 0;
	}
	if (!json_is_string(v))
		return wrong_type(c, v, "a string");
	if ((s = strdup(json_string_value(v))) == NULL)
		return nomem(c);
	if (!check(s, why, sizeof(why))) {
		/* a rejected value may be a secret (acme.eab.hmac_key) */
		explicit_bzero(s, strlen(s));
		free(s);
		return bad(c, "%s", why);
	}
	free(*out);
	*out = s;
	pop(c);
	return 0;
}

/* One of a fixed set of words; *out is its index. */
static int
get_enum(struct pctx *c, json_t *obj, const char *key, const char *what,
         const char *const *names, unsigned *out)
{
	char list[256];
	const char *s, *hint;
	json_t *v;

	push_key(c, key);
	v = json_object_get(obj, key);
	if (v == NULL) {
		pop(c);
		return 0;
	}
	if (!json_is_string(v))
		return wrong_type(c, v, "a string");
	s = json_string_value(v);
	for (unsigned i = 0; names[i] != NULL; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = i;
			pop(c);
			return 0;
		}
	}
	if ((hint = suggest(s, names)) != NULL)
		return bad(c, "unknown %s \"%.40s\", did you mean %s?", what, s,
		           hint);
	join_list(names, list, sizeof(list));
	return bad(c, "unknown %s \"%.40s\" (expected one of %s)", what, s,
	           list);
}

static int
get_uint(struct pctx *c, json_t *obj, const char *key, long long lo,
         long long hi, unsigned *out)
{
	json_int_t n;
	json_t *v;

	push_key(c, key);
	v = json_object_get(obj, key);
	if (v == NULL) {
		pop(c);
		return 0;
	}
	if (!json_is_integer(v))
		return wrong_type(c, v, "an integer");
	n = json_integer_value(v);
	if (n < lo || n > hi)
		return bad(c, "must be between %lld and %lld, got %lld", lo, hi,
		           (long long)n);
	*out = (unsigned)n;
	pop(c);
	return 0;
}

static int
get_days(struct pctx *c, json_t *obj, const char *key, bool zero_ok,
         double *out)
{
	json_t *v;
	double d;

	push_key(c, key);
	v = json_object_get(obj, key);
	if (v == NULL) {
		pop(c);
		return 0;
	}
	if (!json_is_number(v))
		return wrong_type(c, v, "a number");
	d = json_number_value(v);
	if (d < 0 || (d == 0 && !zero_ok) || !(d < PB_MAX_DAYS))
		return bad(c, "must be %s 0 and less than %g, got %g",
		           zero_ok ? "at least" : "more than", PB_MAX_DAYS, d);
	*out = d;
	pop(c);
	return 0;
}

static int
get_bool(struct pctx *c, json_t *obj, const char *key, bool *out)
{
	json_t *v;

	push_key(c, key);
	v = json_object_get(obj, key);
	if (v == NULL) {
		pop(c);
		return 0;
	}
	if (!json_is_boolean(v))
		return wrong_type(c, v, "a boolean");
	*out = json_is_true(v);
	pop(c);
	return 0;
}

/* Enter a section: on success the key stays on the path until the caller
 * pops it; *out is NULL when an optional section is absent. */
static int
enter_object(struct pctx *c, json_t *obj, const char *key, bool required,
             const char *const *known, json_t **out)
{
	json_t *v;

	push_key(c, key);
	v = json_object_get(obj, key);
	if (v == NULL) {
		if (required)
			return missing(c);
		*out = NULL;
		return 0;
	}
	if (!json_is_object(v))
		return wrong_type(c, v, "an object");
	if (check_keys(c, v, known) < 0)
		return -1;
	*out = v;
	return 0;
}

/* Same for arrays, with bounds on the number of elements; the key stays
 * on the path.  *out is NULL when an optional array is absent. */
static int
enter_array(struct pctx *c, json_t *obj, const char *key, bool required,
            size_t min, size_t max, const char *what, json_t **out)
{
	json_t *v;
	size_t n;

	push_key(c, key);
	v = json_object_get(obj, key);
	if (v == NULL) {
		if (required)
			return missing(c);
		*out = NULL;
		return 0;
	}
	if (!json_is_array(v))
		return wrong_type(c, v, "an array");
	n = json_array_size(v);
	if (n < min)
		return bad(c, "must list at least %zu %s", min, what);
	if (n > max)
		return bad(c, "lists %zu %s, at most %zu are allowed", n, what,
		           max);
	*out = v;
	return 0;
}

/* An array of validated strings as a NULL-terminated vector. */
static int
get_string_array(struct pctx *c, json_t *obj, const char *key, bool required,
                 size_t min, size_t max, const char *what, check_fn check,
                 char ***out, size_t *n_out)
{
	char **v = NULL, why[256];
	json_t *arr;
	size_t n;
	int rc = -1;

	if (enter_array(c, obj, key, required, min, max, what, &arr) < 0)
		return -1;
	if (arr == NULL) {
		pop(c);
		return 0;
	}
	n = json_array_size(arr);
	if ((v = calloc(n + 1, sizeof(*v))) == NULL) {
		nomem(c);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(arr, i);

		push_index(c, i);
		if (!json_is_string(e)) {
			wrong_type(c, e, "a string");
			goto out;
		}
		if ((v[i] = strdup(json_string_value(e))) == NULL) {
			nomem(c);
			goto out;
		}
		if (!check(v[i], why, sizeof(why))) {
			bad(c, "%s", why);
			goto out;
		}
		pop(c);
	}
	pop(c);
	*out = v;
	*n_out = n;
	v = NULL;
	rc = 0;
out:
	if (v != NULL) {
		for (size_t i = 0; v[i] != NULL; i++)
			free(v[i]);
		free(v);
	}
	return rc;
}

struct dupent {
	const char *s;
	size_t i;
};

static int
dupent_cmp(const void *a, const void *b)
{
	const struct dupent *x = a, *y = b;
	int r = strcmp(x->s, y->s);

	if (r != 0)
		return r;
	return (x->i > y->i) - (x->i < y->i);
}

/* Find a repeated string among v[0..n): sorting keeps this fast for fleets
 * of thousands.  Reports the repeat that comes first in the file and the
 * earlier occurrence it repeats.  1 = found, 0 = none, -1 = no memory. */
static int
find_dup(const char *const *v, size_t n, size_t *first, size_t *again)
{
	struct dupent *e;
	size_t best = SIZE_MAX, orig = 0;

	if (n < 2)
		return 0;
	if ((e = calloc(n, sizeof(*e))) == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		e[i].s = v[i];
		e[i].i = i;
	}
	qsort(e, n, sizeof(*e), dupent_cmp);
	for (size_t i = 1, g = 0; i < n; i++) {
		if (strcmp(e[i].s, e[g].s) != 0) {
			g = i;
			continue;
		}
		if (e[i].i < best) {
			best = e[i].i;
			orig = e[g].i;
		}
	}
	free(e);
	if (best == SIZE_MAX)
		return 0;
	*first = orig;
	*again = best;
	return 1;
}

/* ---- sections ------------------------------------------------------- */

static int
parse_certificate(struct pctx *c, json_t *root, struct cf_playbook *pb)
{
	unsigned kt = CF_KEY_EC_P256;
	size_t first, again;
	json_t *o;
	int r;

	if (enter_object(c, root, "certificate", true, cert_keys, &o) < 0)
		return -1;
	if (get_string(c, o, "name", true, check_cert_name, &pb->cert.name) < 0)
		return -1;
	if (get_string_array(c, o, "domains", true, 1, PB_MAX_DOMAINS,
	                     "domains", check_domain, &pb->cert.domains,
	                     &pb->cert.n_domains) < 0)
		return -1;
	r = find_dup((const char *const *)pb->cert.domains, pb->cert.n_domains,
	             &first, &again);
	if (r < 0)
		return nomem(c);
	if (r > 0) {
		push_key(c, "domains");
		push_index(c, again);
		return bad(c, "duplicate of certificate.domains[%zu]", first);
	}
	if (get_enum(c, o, "key_type", "key type", key_type_names, &kt) < 0)
		return -1;
	pb->cert.key_type = (cf_key_type_t)kt;
	pop(c);
	return 0;
}

/* The HMAC key binds a new ACME account to a CA customer: whoever reads
 * it can open accounts in the operator's name.  Inline (hmac_key) or in a
 * file of its own (hmac_key_file, read only when talking to the CA, see
 * playbook_load_secrets); never both, so there is one truth. */
static int
parse_eab(struct pctx *c, json_t *acme, struct cf_playbook *pb)
{
	bool inline_key, key_file;
	json_t *o, *v;

	if (enter_object(c, acme, "eab", false, eab_keys, &o) < 0)
		return -1;
	if (o != NULL) {
		inline_key = json_object_get(o, "hmac_key") != NULL;
		key_file = json_object_get(o, "hmac_key_file") != NULL;
		if (get_string(c, o, "kid", true, check_kid,
		               &pb->acme.eab_kid) < 0)
			return -1;
		if (inline_key && key_file) {
			push_key(c, "hmac_key_file");
			return bad(c, "give acme.eab.hmac_key or "
			              "acme.eab.hmac_key_file, not both");
		}
		if (!inline_key && !key_file) {
			push_key(c, "hmac_key");
			return bad(c, "missing required key (or give "
			              "acme.eab.hmac_key_file)");
		}
		if (get_string(c, o, "hmac_key", false, check_hmac_key,
		               &pb->acme.eab_hmac_key) < 0 ||
		    get_string(c, o, "hmac_key_file", false, check_path,
		               &pb->acme.eab_hmac_key_file) < 0)
			return -1;
		/* The copy we keep is wiped in playbook_free; wipe jansson's
		 * too (its buffer is plain heap memory we may overwrite) so
		 * the key does not linger after json_decref. */
		v = json_object_get(o, "hmac_key");
		if (v != NULL && json_is_string(v))
			explicit_bzero((char *)json_string_value(v),
			               json_string_length(v));
	}
	pop(c);
	return 0;
}

static int
parse_acme(struct pctx *c, json_t *root, struct cf_playbook *pb)
{
	unsigned ch = 0;
	json_t *o;

	if (enter_object(c, root, "acme", false, acme_keys, &o) < 0)
		return -1;
	if (o != NULL) {
		if (get_string(c, o, "directory", false, check_directory,
		               &pb->acme.directory) < 0 ||
		    get_string_array(c, o, "contact", false, 0, 16, "contacts",
		                     check_contact, &pb->acme.contact,
		                     &pb->acme.n_contact) < 0 ||
		    get_enum(c, o, "challenge", "challenge", challenge_names,
		             &ch) < 0 ||
		    get_string(c, o, "dns_hook", false, check_path,
		               &pb->acme.dns_hook) < 0 ||
		    get_string(c, o, "ca_bundle", false, check_path,
		               &pb->acme.ca_bundle) < 0 ||
		    get_days(c, o, "renew_before_days", false,
		             &pb->acme.renew_before_days) < 0 ||
		    get_string(c, o, "preferred_chain", false, check_text,
		               &pb->acme.preferred_chain) < 0 ||
		    get_string(c, o, "profile", false, check_token,
		               &pb->acme.profile) < 0 ||
		    get_bool(c, o, "reuse_key", &pb->acme.reuse_key) < 0 ||
		    parse_eab(c, o, pb) < 0 ||
		    get_uint(c, o, "timeout", 1, PB_MAX_TIMEOUT,
		             &pb->acme.timeout) < 0)
			return -1;
	}
	if ((pb->acme.challenge = strdup(challenge_names[ch])) == NULL)
		return nomem(c);
	pop(c);
	return 0;
}

static int
parse_ssh(struct pctx *c, json_t *root, struct cf_playbook *pb)
{
	json_t *o;

	if (enter_object(c, root, "ssh", true, ssh_keys, &o) < 0)
		return -1;
	if (get_string(c, o, "user", false, check_user, &pb->ssh.user) < 0 ||
	    get_uint(c, o, "port", 1, 65535, &pb->ssh.port) < 0 ||
	    get_string(c, o, "identity", true, check_path, &pb->ssh.identity) <
	        0 ||
	    get_string(c, o, "known_hosts", false, check_path,
	               &pb->ssh.known_hosts) < 0 ||
	    get_uint(c, o, "connect_timeout", 1, PB_MAX_TIMEOUT,
	             &pb->ssh.connect_timeout) < 0 ||
	    get_uint(c, o, "timeout", 1, PB_MAX_TIMEOUT, &pb->ssh.timeout) < 0)
		return -1;
	if (pb->ssh.user == NULL && (pb->ssh.user = strdup("root")) == NULL)
		return nomem(c);
	if (pb->ssh.known_hosts == NULL &&
	    (pb->ssh.known_hosts = strdup("/etc/ssh/ssh_known_hosts")) == NULL)
		return nomem(c);
	pop(c);
	return 0;
}

/* "0640" or "640": octal, and never setuid/setgid/sticky, which no
 * certificate file has a reason to carry.  JSON integers are refused on
 * purpose: 640 in JSON is decimal 640 = 01200. */
static int
parse_mode(struct pctx *c, json_t *file, struct cf_file_spec *f)
{
	bool key = f->content == CF_CONTENT_PRIVKEY ||
	           f->content == CF_CONTENT_COMBINED;
	unsigned mode = 0;
	const char *s;
	size_t n;
	json_t *v;

	f->mode = key ? 0600 : 0644;
	push_key(c, "mode");
	v = json_object_get(file, "mode");
	if (v == NULL) {
		pop(c);
		return 0;
	}
	if (!json_is_string(v))
		return bad(c,
		           "expected a string of octal digits such as "
		           "\"0640\", got %s",
		           type_name(v));
	s = json_string_value(v);
	n = strlen(s);
	if (n == 0 || n > 4 || strspn(s, "01234567") != n)
		return bad(c, "\"%.16s\" is not an octal mode such as \"0640\"",
		           s);
	for (size_t i = 0; i < n; i++)
		mode = mode * 8 + (unsigned)(s[i] - '0');
	if (mode > 0777)
		return bad(c,
		           "%04o: setuid, setgid and sticky bits are not "
		           "allowed",
		           mode);
	/* Group read stays allowed: 0640 with an ssl-cert group is the
	 * usual way to share a key with a non-root daemon. */
	if (key && (mode & 0007) != 0)
		return bad(c,
		           "%04o gives other users access to a private key; "
		           "use 0600 or 0640",
		           mode);
	f->mode = mode;
	pop(c);
	return 0;
}

static int
parse_file(struct pctx *c, json_t *file, struct cf_file_spec *f)
{
	unsigned content = 0;

	if (!json_is_object(file))
		return wrong_type(c, file, "an object");
	if (check_keys(c, file, file_keys) < 0)
		return -1;
	if (get_string(c, file, "path", true, check_path, &f->path) < 0)
		return -1;
	push_key(c, "content");
	if (json_object_get(file, "content") == NULL)
		return missing(c);
	pop(c);
	if (get_enum(c, file, "content", "content", content_names, &content) <
	    0)
		return -1;
	f->content = (cf_content_t)content;
	if (parse_mode(c, file, f) < 0 ||
	    get_string(c, file, "owner", false, check_user, &f->owner) < 0 ||
	    get_string(c, file, "group", false, check_user, &f->group) < 0 ||
	    get_bool(c, file, "shared_dir", &f->shared_dir) < 0)
		return -1;
	return 0;
}

/* deploy.haproxy_api: the file HAProxy's runtime API replaces must be one
 * certfleet deploys, as one combined PEM (the API takes leaf, chain and
 * key in one payload), and no reload may run besides (the point of the
 * mode is that the process is never reloaded). */
static int
parse_haproxy_api(struct pctx *c, json_t *o, struct cf_playbook *pb)
{
	json_t *h;
	size_t i;

	if (enter_object(c, o, "haproxy_api", false, haproxy_api_keys, &h) < 0)
		return -1;
	if (h == NULL) {
		pop(c);
		return 0;
	}
	push_key(c, "port");
	if (json_object_get(h, "port") == NULL)
		return missing(c);
	pop(c);
	if (get_uint(c, h, "port", 1, 65535, &pb->deploy.haproxy_api.port) <
	        0 ||
	    get_string(c, h, "cert", true, check_path,
	               &pb->deploy.haproxy_api.cert) < 0)
		return -1;
	push_key(c, "cert");
	for (i = 0; i < pb->deploy.n_files; i++)
		if (strcmp(pb->deploy.files[i].path,
		           pb->deploy.haproxy_api.cert) == 0)
			break;
	if (i == pb->deploy.n_files)
		return bad(c,
		           "%s is not one of the deploy.files paths: the "
		           "runtime API replaces a certificate certfleet "
		           "deploys",
		           pb->deploy.haproxy_api.cert);
	if (pb->deploy.files[i].content != CF_CONTENT_COMBINED)
		return bad(c,
		           "deploy.files[%zu] (%s) has content \"%s\": the "
		           "runtime API takes certificate, chain and key in "
		           "one payload, so its content must be \"combined\"",
		           i, pb->deploy.haproxy_api.cert,
		           content_names[pb->deploy.files[i].content]);
	pop(c);
	if (pb->deploy.reload != NULL)
		return bad(c, "deploy.reload is not run in this mode (the "
		              "certificate goes live through the runtime API, "
		              "without a reload): remove one of the two");
	pb->deploy.haproxy_api.file = i;
	pop(c);
	return 0;
}

static int
parse_deploy(struct pctx *c, json_t *root, struct cf_playbook *pb)
{
	const char **paths = NULL;
	size_t n, first, again;
	json_t *o, *arr;
	int r, rc = -1;

	if (enter_object(c, root, "deploy", true, deploy_keys, &o) < 0)
		return -1;
	if (enter_array(c, o, "files", true, 1, SIZE_MAX, "files", &arr) < 0)
		return -1;
	n = json_array_size(arr);
	if ((pb->deploy.files = calloc(n, sizeof(*pb->deploy.files))) == NULL)
		return nomem(c);
	for (size_t i = 0; i < n; i++) {
		push_index(c, i);
		pb->deploy.n_files = i + 1;
		if (parse_file(c, json_array_get(arr, i),
		               &pb->deploy.files[i]) < 0)
			return -1;
		pop(c);
	}
	if ((paths = calloc(n, sizeof(*paths))) == NULL)
		return nomem(c);
	for (size_t i = 0; i < n; i++)
		paths[i] = pb->deploy.files[i].path;
	r = find_dup(paths, n, &first, &again);
	if (r < 0) {
		nomem(c);
		goto out;
	}
	if (r > 0) {
		push_index(c, again);
		push_key(c, "path");
		bad(c, "same path as deploy.files[%zu]", first);
		goto out;
	}
	pop(c); /* files */
	if (get_string(c, o, "check", false, check_command, &pb->deploy.check) <
	        0 ||
	    get_string(c, o, "reload", false, check_command,
	               &pb->deploy.reload) < 0 ||
	    get_string(c, o, "webroot", false, check_path,
	               &pb->deploy.webroot) < 0 ||
	    get_bool(c, o, "keep_previous", &pb->deploy.keep_previous) < 0 ||
	    parse_haproxy_api(c, o, pb) < 0)
		goto out;
	pop(c);
	rc = 0;
out:
	free(paths);
	return rc;
}

static int
parse_endpoint(struct pctx *c, json_t *e, struct cf_endpoint *ep)
{
	json_t *v;

	if (!json_is_object(e))
		return wrong_type(c, e, "an object");
	if (check_keys(c, e, endpoint_keys) < 0)
		return -1;
	if (json_object_get(e, "port") == NULL) {
		push_key(c, "port");
		return missing(c);
	}
	if (get_uint(c, e, "port", 1, 65535, &ep->port) < 0)
		return -1;
	ep->starttls = STARTTLS_NONE;
	if ((v = json_object_get(e, "starttls")) != NULL) {
		push_key(c, "starttls");
		if (!json_is_string(v))
			return wrong_type(c, v, "a string");
		if (starttls_proto_parse(json_string_value(v), &ep->starttls) <
		    0)
			return bad(c,
			           "unknown STARTTLS protocol \"%.32s\" "
			           "(known: smtp, imap, pop3)",
			           json_string_value(v));
		pop(c);
	}
	return 0;
}

/* verify.endpoints, or the one endpoint verify.port names.  Two entries
 * on one port would be one server checked twice, or a typo hiding the
 * port that was meant. */
static int
parse_endpoints(struct pctx *c, json_t *o, struct cf_playbook *pb)
{
	json_t *arr = NULL;
	size_t n;

	if (o != NULL && json_object_get(o, "endpoints") != NULL &&
	    json_object_get(o, "port") != NULL) {
		push_key(c, "endpoints");
		return bad(c, "give verify.endpoints or verify.port, not both");
	}
	if (o != NULL && enter_array(c, o, "endpoints", false, 1,
	                             PB_MAX_ENDPOINTS, "endpoints", &arr) < 0)
		return -1;
	if (arr == NULL) {
		if (o != NULL)
			pop(c);
		if ((pb->verify.endpoints =
		         calloc(1, sizeof(struct cf_endpoint))) == NULL)
			return nomem(c);
		pb->verify.n_endpoints = 1;
		pb->verify.endpoints[0].port = pb->verify.port;
		return 0;
	}
	n = json_array_size(arr);
	if ((pb->verify.endpoints = calloc(n, sizeof(struct cf_endpoint))) ==
	    NULL)
		return nomem(c);
	pb->verify.n_endpoints = n;
	for (size_t i = 0; i < n; i++) {
		push_index(c, i);
		if (parse_endpoint(c, json_array_get(arr, i),
		                   &pb->verify.endpoints[i]) < 0)
			return -1;
		for (size_t j = 0; j < i; j++) {
			if (pb->verify.endpoints[j].port !=
			    pb->verify.endpoints[i].port)
				continue;
			push_key(c, "port");
			return bad(c,
			           "duplicate endpoint: port %u is also "
			           "verify.endpoints[%zu]",
			           pb->verify.endpoints[i].port, j);
		}
		pop(c);
	}
	pb->verify.port = pb->verify.endpoints[0].port;
	pop(c);
	return 0;
}

static int
parse_verify(struct pctx *c, json_t *root, struct cf_playbook *pb)
{
	size_t first, again;
	json_t *o;
	int r;

	if (enter_object(c, root, "verify", false, verify_keys, &o) < 0)
		return -1;
	if (o != NULL &&
	    (get_uint(c, o, "port", 1, 65535, &pb->verify.port) < 0 ||
	     get_string(c, o, "server_name", false, check_server_name,
	                &pb->verify.server_name) < 0 ||
	     get_string_array(c, o, "names", false, 1, PB_MAX_DOMAINS, "names",
	                      check_server_name, &pb->verify.names,
	                      &pb->verify.n_names) < 0 ||
	     get_string(c, o, "ca_bundle", false, check_path,
	                &pb->verify.ca_bundle) < 0 ||
	     get_uint(c, o, "timeout", 1, PB_MAX_TIMEOUT, &pb->verify.timeout) <
	         0))
		return -1;
	if (parse_endpoints(c, o, pb) < 0)
		return -1;
	r = find_dup((const char *const *)pb->verify.names, pb->verify.n_names,
	             &first, &again);
	if (r < 0)
		return nomem(c);
	if (r > 0) {
		push_key(c, "names");
		push_index(c, again);
		return bad(c, "duplicate of verify.names[%zu]", first);
	}
	pop(c);
	return 0;
}

static int
parse_rollout(struct pctx *c, json_t *root, struct cf_playbook *pb)
{
	json_t *o;

	if (enter_object(c, root, "rollout", false, rollout_keys, &o) < 0)
		return -1;
	if (o != NULL &&
	    (get_uint(c, o, "concurrency", 1, 1024, &pb->rollout.concurrency) <
	         0 ||
	     get_uint(c, o, "canary", 0, 1000, &pb->rollout.canary) < 0 ||
	     get_uint(c, o, "canary_failures", 1, 1000,
	              &pb->rollout.canary_failures) < 0 ||
	     get_uint(c, o, "max_failures", 0, 1000000,
	              &pb->rollout.max_failures) < 0))
		return -1;
	pop(c);
	return 0;
}

static int
parse_store(struct pctx *c, json_t *root, struct cf_playbook *pb)
{
	json_t *o;

	if (enter_object(c, root, "store", false, store_keys, &o) < 0)
		return -1;
	/* at least 2: the current version and the one rollback deploys */
	if (o != NULL && get_uint(c, o, "keep_versions", 2, 1000,
	                          &pb->store.keep_versions) < 0)
		return -1;
	pop(c);
	return 0;
}

static int
parse_notify(struct pctx *c, json_t *root, struct cf_playbook *pb)
{
	json_t *o;

	if (enter_object(c, root, "notify", false, notify_keys, &o) < 0)
		return -1;
	if (o != NULL &&
	    (get_string_array(c, o, "webhooks", false, 0, 64, "webhooks",
	                      check_webhook, &pb->notify.webhooks,
	                      &pb->notify.n_webhooks) < 0 ||
	     get_string(c, o, "command", false, check_path,
	                &pb->notify.command) < 0 ||
	     get_days(c, o, "warn_days", true, &pb->notify.warn_days) < 0))
		return -1;
	pop(c);
	return 0;
}

static int
parse_node(struct pctx *c, json_t *node, const struct cf_playbook *pb,
           struct cf_node *nd)
{
	if (!json_is_object(node))
		return wrong_type(c, node, "an object");
	nd->port = pb->ssh.port;
	if (check_keys(c, node, node_keys) < 0 ||
	    get_string(c, node, "name", true, check_name, &nd->name) < 0 ||
	    get_string(c, node, "host", true, check_host, &nd->host) < 0 ||
	    get_uint(c, node, "port", 1, 65535, &nd->port) < 0 ||
	    get_string(c, node, "user", false, check_user, &nd->user) < 0)
		return -1;
	if (nd->user == NULL && (nd->user = strdup(pb->ssh.user)) == NULL)
		return nomem(c);
	return 0;
}

static int
parse_nodes(struct pctx *c, json_t *root, struct cf_playbook *pb)
{
	const char **names = NULL;
	size_t n, first, again;
	json_t *arr;
	int r, rc = -1;

	if (enter_array(c, root, "nodes", true, 1, SIZE_MAX, "nodes", &arr) < 0)
		return -1;
	n = json_array_size(arr);
	if ((pb->nodes = calloc(n, sizeof(*pb->nodes))) == NULL)
		return nomem(c);
	for (size_t i = 0; i < n; i++) {
		push_index(c, i);
		pb->n_nodes = i + 1;
		if (parse_node(c, json_array_get(arr, i), pb, &pb->nodes[i]) <
		    0)
			return -1;
		pop(c);
	}
	if ((names = calloc(n, sizeof(*names))) == NULL)
		return nomem(c);
	for (size_t i = 0; i < n; i++)
		names[i] = pb->nodes[i].name;
	r = find_dup(names, n, &first, &again);
	if (r < 0) {
		nomem(c);
		goto out;
	}
	if (r > 0) {
		push_index(c, again);
		push_key(c, "name");
		bad(c, "duplicate node name (also nodes[%zu])", first);
		goto out;
	}
	pop(c);
	rc = 0;
out:
	free(names);
	return rc;
}

/* RFC 6125 6.4.3 as browsers apply it: "*.example.com" covers exactly one
 * more label, "a.example.com", never "example.com" or "a.b.example.com". */
static bool
name_covered(const struct cf_playbook *pb, const char *name)
{
	const char *dot = strchr(name, '.');

	for (size_t i = 0; i < pb->cert.n_domains; i++) {
		const char *d = pb->cert.domains[i];

		if (strcasecmp(d, name) == 0)
			return true;
		if (d[0] == '*' && d[1] == '.' && dot != NULL && dot != name &&
		    strcasecmp(d + 1, dot) == 0)
			return true;
	}
	return false;
}

/* Rules that span sections, checked once each part is valid on its own. */
static int
check_cross(struct pctx *c, struct cf_playbook *pb)
{
	bool http01 = strcmp(pb->acme.challenge, "http-01") == 0;
	const char *sni = NULL;

	if (!http01 && pb->acme.dns_hook == NULL) {
		push_key(c, "acme");
		push_key(c, "dns_hook");
		return bad(c, "required when acme.challenge is \"dns-01\"");
	}
	if (http01 && pb->acme.directory != NULL) {
		/* The CA fetches http-01 tokens from whichever node the name
		 * resolves to, so every node must serve them. */
		if (pb->deploy.webroot == NULL) {
			push_key(c, "deploy");
			push_key(c, "webroot");
			return bad(c, "required when acme.directory is set and "
			              "acme.challenge is \"http-01\"");
		}
		/* RFC 8555 section 7.1.3: wildcards only via dns-01. */
		for (size_t i = 0; i < pb->cert.n_domains; i++) {
			if (pb->cert.domains[i][0] != '*')
				continue;
			push_key(c, "certificate");
			push_key(c, "domains");
			push_index(c, i);
			return bad(c, "a wildcard name needs acme.challenge "
			              "\"dns-01\"");
		}
	}
	for (size_t i = 0; i < pb->verify.n_names; i++) {
		if (name_covered(pb, pb->verify.names[i]))
			continue;
		push_key(c, "verify");
		push_key(c, "names");
		push_index(c, i);
		return bad(c,
		           "\"%s\" is not covered by certificate.domains: "
		           "the certificate would never be served for it",
		           pb->verify.names[i]);
	}
	if (pb->verify.server_name == NULL) {
		/* SNI must be a name a vhost answers to; "*.example.com"
		 * is not one. */
		for (size_t i = 0; i < pb->cert.n_domains && sni == NULL; i++)
			if (pb->cert.domains[i][0] != '*')
				sni = pb->cert.domains[i];
		if (sni == NULL) {
			push_key(c, "verify");
			push_key(c, "server_name");
			return bad(c, "required when every certificate domain "
			              "is a wildcard");
		}
		if ((pb->verify.server_name = strdup(sni)) == NULL)
			return nomem(c);
	}
	return 0;
}

static bool
is_blank(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' &&
		    text[i] != '\n')
			return false;
	return true;
}

static int
parse_document(struct pctx *c, struct cf_playbook **out)
{
	struct cf_playbook *pb = NULL;
	json_t *root = NULL, *desc;
	json_error_t jerr;
	unsigned line;
	int rc = -1;

	if (c->len > PB_MAX_BYTES)
		return cf_err_set(c->err, CF_ERR_CONFIG,
		                  "%s:1: larger than 1 MiB (%d bytes), too big "
		                  "for a playbook",
		                  c->name, PB_MAX_BYTES);
	if (is_blank(c->text, c->len))
		return cf_err_set(c->err, CF_ERR_CONFIG,
		                  "%s:1: empty file, expected a JSON object",
		                  c->name);
	/* Checked before jansson, whose own limit (2048) is far higher and
	 * whose message ("maximum parsing depth reached") names no cause. */
	if (jsonpos_too_deep(c->text, c->len, PB_MAX_DEPTH, &line))
		return cf_err_set(c->err, CF_ERR_CONFIG,
		                  "%s:%u: nested deeper than %d levels (a "
		                  "playbook needs 4)",
		                  c->name, line, PB_MAX_DEPTH);
	root = json_loadb(c->text, c->len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		char where[256];

		if (json_error_code(&jerr) == json_error_duplicate_key &&
		    jerr.position >= 0 &&
		    jsonpos_key_path_at(c->text, c->len, (size_t)jerr.position,
		                        where, sizeof(where)))
			cf_err_set(c->err, CF_ERR_CONFIG,
			           "%s:%d:%d: %s: duplicate key", c->name,
			           jerr.line, jerr.column, where);
		else
			cf_err_set(c->err, CF_ERR_CONFIG,
			           "%s:%d:%d: invalid JSON: %s%s", c->name,
			           jerr.line > 0 ? jerr.line : 1,
			           jerr.column > 0 ? jerr.column : 1, jerr.text,
			           jerr.position > 0
			               ? jsonpos_syntax_hint(c->text, c->len,
			                                     (size_t)
			                                         jerr.position)
			               : "");
		goto out;
	}
	if (!json_is_object(root)) {
		bad(c, "expected a JSON object at the top level, got %s",
		    type_name(root));
		goto out;
	}
	if (check_keys(c, root, top_keys) < 0)
		goto out;
	push_key(c, "description");
	desc = json_object_get(root, "description");
	if (desc != NULL && !json_is_string(desc)) {
		wrong_type(c, desc, "a string");
		goto out;
	}
	pop(c);

	if ((pb = calloc(1, sizeof(*pb))) == NULL) {
		nomem(c);
		goto out;
	}
	pb->ssh.port = 22;
	pb->ssh.connect_timeout = 10;
	pb->ssh.timeout = 60;
	pb->verify.port = 443;
	pb->verify.timeout = 10;
	pb->rollout.concurrency = 32;
	pb->rollout.canary = 1;
	pb->rollout.canary_failures = 2;
	pb->acme.timeout = 300;
	pb->store.keep_versions = 3;
	pb->deploy.keep_previous = true;
	if ((pb->path = strdup(c->name)) == NULL) {
		nomem(c);
		goto out;
	}
	if (parse_certificate(c, root, pb) < 0 || parse_acme(c, root, pb) < 0 ||
	    parse_ssh(c, root, pb) < 0 || parse_deploy(c, root, pb) < 0 ||
	    parse_verify(c, root, pb) < 0 || parse_rollout(c, root, pb) < 0 ||
	    parse_notify(c, root, pb) < 0 || parse_store(c, root, pb) < 0 ||
	    parse_nodes(c, root, pb) < 0)
		goto out;
	c->depth = 0;
	if (check_cross(c, pb) < 0)
		goto out;
	*out = pb;
	pb = NULL;
	rc = 0;
out:
	playbook_free(pb);
	json_decref(root);
	return rc;
}

int
playbook_load_buf(const char *name, const char *buf, size_t len,
                  struct cf_playbook **out, cf_err_t *err)
{
	struct pctx c = {.name = name, .text = buf, .len = len, .err = err};

	return parse_document(&c, out);
}

/* A playbook that holds acme.eab.hmac_key is a secret file: refused when
 * group or others may access it, as ssh(1) refuses a loose identity. */
static int
check_secret_holder(int fd, const char *path, cf_err_t *err)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return cf_err_set(err, CF_ERR_CONFIG, "%s: %s", path,
		                  strerror(errno));
	if ((st.st_mode & 077) == 0)
		return 0;
	return cf_err_set(err, CF_ERR_CONFIG,
	                  "%s: mode %04o: the playbook holds acme.eab.hmac_key "
	                  "and is %s by group or others; chmod 600 it or use "
	                  "acme.eab.hmac_key_file",
	                  path, (unsigned)(st.st_mode & 07777),
	                  (st.st_mode & 044) != 0 ? "readable" : "accessible");
}

/* Longest key file we read: a base64url HMAC key of 1024 characters plus
 * a line end (check_hmac_key's limit). */
#define EAB_KEY_FILE_MAX 1100

int
playbook_load_secrets(struct cf_playbook *pb, cf_err_t *err)
{
	const char *kf = pb->acme.eab_hmac_key_file;
	char why[256], *buf = NULL;
	size_t len = 0;
	struct stat st;
	int fd, rc = -1;

	if (kf == NULL || pb->acme.eab_hmac_key != NULL)
		return 0;
	/* O_NONBLOCK: a FIFO at the path must not hang the run; it is
	 * refused below as not a regular file. */
	fd = open(kf, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return cf_err_set(err, CF_ERR_CONFIG,
		                  "%s: acme.eab.hmac_key_file %s: %s", pb->path,
		                  kf, strerror(errno));
	if (fstat(fd, &st) < 0) {
		cf_err_set(err, CF_ERR_CONFIG,
		           "%s: acme.eab.hmac_key_file %s: "
		           "%s",
		           pb->path, kf, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		cf_err_set(err, CF_ERR_CONFIG,
		           "%s: acme.eab.hmac_key_file %s: "
		           "not a regular file",
		           pb->path, kf);
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		cf_err_set(err, CF_ERR_CONFIG,
		           "%s: acme.eab.hmac_key_file %s: "
		           "mode %04o: the EAB HMAC key is %s by group or "
		           "others; chmod 600 it",
		           pb->path, kf, (unsigned)(st.st_mode & 07777),
		           (st.st_mode & 044) != 0 ? "readable" : "accessible");
		goto out;
	}
	if (st.st_size > EAB_KEY_FILE_MAX) {
		cf_err_set(err, CF_ERR_CONFIG,
		           "%s: acme.eab.hmac_key_file %s: "
		           "larger than %d bytes, not an HMAC key",
		           pb->path, kf, EAB_KEY_FILE_MAX);
		goto out;
	}
	if ((buf = malloc(EAB_KEY_FILE_MAX + 2)) == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "%s: out of memory", kf);
		goto out;
	}
	while (len <= EAB_KEY_FILE_MAX) {
		ssize_t n = read(fd, buf + len, EAB_KEY_FILE_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cf_err_set(err, CF_ERR_CONFIG,
			           "%s: acme.eab.hmac_key_file "
			           "%s: %s",
			           pb->path, kf, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	/* "echo KEY > file" leaves a line end */
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
	                   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		buf[--len] = '\0';
	if (!check_hmac_key(buf, why, sizeof(why))) {
		cf_err_set(err, CF_ERR_CONFIG,
		           "%s: acme.eab.hmac_key_file %s: "
		           "%s",
		           pb->path, kf, why);
		goto out;
	}
	pb->acme.eab_hmac_key = buf;
	buf = NULL;
	rc = 0;
out:
	if (buf != NULL) {
		explicit_bzero(buf, EAB_KEY_FILE_MAX + 2);
		free(buf);
	}
	close(fd);
	return rc;
}

int
playbook_load(const char *path, struct cf_playbook **out, cf_err_t *err)
{
	/* One byte over the limit is enough to know it is too big. */
	size_t cap = PB_MAX_BYTES + 1, len = 0;
	char *buf = NULL;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cf_err_set(err, CF_ERR_CONFIG,
		                  "%s: cannot open playbook: %s", path,
		                  strerror(errno));
	if ((buf = malloc(cap)) == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "%s: out of memory", path);
		goto out;
	}
	while (len < cap) {
		ssize_t n = read(fd, buf + len, cap - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cf_err_set(err, CF_ERR_CONFIG,
			           "%s: cannot read playbook: %s", path,
			           strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	rc = playbook_load_buf(path, buf, len, out, err);
	if (rc == 0 && (*out)->acme.eab_hmac_key != NULL &&
	    check_secret_holder(fd, path, err) < 0) {
		playbook_free(*out);
		*out = NULL;
		rc = -1;
	}
out:
	/* The text may hold an EAB HMAC key. */
	if (buf != NULL) {
		explicit_bzero(buf, len);
		free(buf);
	}
	close(fd);
	return rc;
}

static void
strv_free(char **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
playbook_free(struct cf_playbook *pb)
{
	if (pb == NULL)
		return;
	free(pb->path);
	free(pb->cert.name);
	strv_free(pb->cert.domains, pb->cert.n_domains);
	free(pb->ssh.user);
	free(pb->ssh.identity);
	free(pb->ssh.known_hosts);
	for (size_t i = 0; i < pb->deploy.n_files; i++) {
		free(pb->deploy.files[i].path);
		free(pb->deploy.files[i].owner);
		free(pb->deploy.files[i].group);
	}
	free(pb->deploy.files);
	free(pb->deploy.check);
	free(pb->deploy.reload);
	free(pb->deploy.webroot);
	free(pb->deploy.haproxy_api.cert);
	free(pb->verify.server_name);
	free(pb->verify.endpoints);
	strv_free(pb->verify.names, pb->verify.n_names);
	free(pb->verify.ca_bundle);
	free(pb->acme.directory);
	strv_free(pb->acme.contact, pb->acme.n_contact);
	free(pb->acme.challenge);
	free(pb->acme.dns_hook);
	free(pb->acme.ca_bundle);
	free(pb->acme.preferred_chain);
	free(pb->acme.profile);
	free(pb->acme.eab_kid);
	free(pb->acme.eab_hmac_key_file);
	if (pb->acme.eab_hmac_key != NULL) {
		explicit_bzero(pb->acme.eab_hmac_key,
		               strlen(pb->acme.eab_hmac_key));
		free(pb->acme.eab_hmac_key);
	}
	strv_free(pb->notify.webhooks, pb->notify.n_webhooks);
	free(pb->notify.command);
	for (size_t i = 0; i < pb->n_nodes; i++) {
		free(pb->nodes[i].name);
		free(pb->nodes[i].host);
		free(pb->nodes[i].user);
	}
	free(pb->nodes);
	free(pb);
}

int
playbook_verify_names(const struct cf_playbook *pb, const char ***out,
                      size_t *n, cf_err_t *err)
{
	size_t cap = 1 + pb->cert.n_domains + pb->verify.n_names, k = 0;
	const char **v = calloc(cap, sizeof(*v));

	if (v == NULL)
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	v[k++] = pb->verify.server_name;
	for (size_t i = 0; i < cap - 1; i++) {
		const char *s = i < pb->cert.n_domains
		                    ? pb->cert.domains[i]
		                    : pb->verify.names[i - pb->cert.n_domains];
		bool seen = s[0] == '*';

		for (size_t j = 0; j < k && !seen; j++)
			seen = strcasecmp(v[j], s) == 0;
		if (!seen)
			v[k++] = s;
	}
	*out = v;
	*n = k;
	return 0;
}

const struct cf_node *
playbook_node(const struct cf_playbook *pb, const char *name)
{
	if (pb == NULL || name == NULL)
		return NULL;
	for (size_t i = 0; i < pb->n_nodes; i++)
		if (strcmp(pb->nodes[i].name, name) == 0)
			return &pb->nodes[i];
	return NULL;
}
