/* err.c - the one error type. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "certfleet/err.h"

/* Length of the UTF-8 character at p that may reach a terminal: 1 for
 * ASCII, 2..4 for a valid sequence, 0 for an invalid, overlong, surrogate
 * or cut one, and for the C1 controls U+0080..U+009F (which some terminals
 * honour as CSI). */
static size_t
utf8_len(const unsigned char *p)
{
	size_t n, i;
	unsigned cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (cp >= 0xd800 && cp <= 0xdfff) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0x80 && cp <= 0x9f))
		return 0;
	return n;
}

/* Text from untrusted places (a node's `nginx -t` output, a CA's problem
 * detail, playbook values quoted back) goes to terminals, state files,
 * JSON, chat lines and environment variables.  Keep it one line of valid
 * UTF-8: tab, CR and LF become spaces, other control characters and every
 * byte of an invalid or cut sequence '?', so a node cannot drive the
 * operator's terminal and a cut through a multi-byte character cannot
 * make JSON refuse it. */
size_t
cf_sanitize(const char *in, char *out, size_t outlen)
{
	const unsigned char *p = (const unsigned char *)(in != NULL ? in : "");
	size_t o = 0, n;

	if (outlen == 0)
		return 0;
	while (*p != '\0' && o + 1 < outlen) {
		n = utf8_len(p);
		if (n == 0) {
			out[o++] = '?';
			p++;
		} else if (n == 1) {
			out[o++] = *p == '\t' || *p == '\n' || *p == '\r' ? ' '
			           : *p < 0x20 || *p == 0x7f              ? '?'
			                                     : (char)*p;
			p++;
		} else {
			if (o + n >= outlen)
				break;
			memmove(out + o, p, n); /* in place is allowed */
			o += n;
			p += n;
		}
	}
	out[o] = '\0';
	return o;
}

int
cf_err_set(cf_err_t *err, cf_code_t code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	cf_sanitize(err->msg, err->msg, sizeof(err->msg));
	return -1;
}

int
cf_err_prefix(cf_err_t *err, const char *fmt, ...)
{
	char prefix[CF_ERR_MSG_MAX], old[CF_ERR_MSG_MAX];
	va_list ap;

	if (err == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* Prefixes are short; on overflow the tail of the cause is cut. */
	size_t pl = strnlen(prefix, sizeof(err->msg) - 1);
	memcpy(err->msg, prefix, pl);
	size_t ol = strnlen(old, sizeof(err->msg) - 1 - pl);
	memcpy(err->msg + pl, old, ol);
	err->msg[pl + ol] = '\0';
	cf_sanitize(err->msg, err->msg, sizeof(err->msg));
	return -1;
}

const char *
cf_err_reason(cf_code_t code)
{
	switch (code) {
	case CF_ERR_TIMEOUT: return "timeout";
	case CF_ERR_REFUSED: return "refused";
	case CF_ERR_UNREACHABLE: return "unreachable";
	case CF_ERR_SSH: return "ssh";
	case CF_ERR_HOSTKEY_UNKNOWN: return "hostkey-unknown";
	case CF_ERR_HOSTKEY_CHANGED: return "hostkey-changed";
	case CF_ERR_AUTH: return "auth";
	case CF_ERR_WRITE: return "write";
	case CF_ERR_UNSAFE_PATH: return "unsafe-path";
	case CF_ERR_CHECK: return "check-failed";
	case CF_ERR_RELOAD: return "reload-failed";
	case CF_ERR_VERIFY: return "verify-failed";
	case CF_ERR_VERIFY_CHAIN: return "verify-chain";
	case CF_ERR_VERIFY_TRUST: return "verify-trust";
	case CF_ERR_VERIFY_NAME: return "verify-name";
	case CF_ERR_VERIFY_ENDPOINT: return "verify-endpoint";
	case CF_ERR_TLS: return "tls";
	case CF_ERR_ACME: return "acme";
	case CF_ERR_HOOK: return "hook";
	default: return "error";
	}
}

int
cf_err_is_verify(cf_code_t code)
{
	return code == CF_ERR_VERIFY || code == CF_ERR_VERIFY_CHAIN ||
	       code == CF_ERR_VERIFY_TRUST || code == CF_ERR_VERIFY_NAME ||
	       code == CF_ERR_VERIFY_ENDPOINT;
}

int
cf_err_exit_code(cf_code_t code)
{
	switch (code) {
	case CF_ERR_USAGE: return EX_USAGE;
	case CF_ERR_DATA: return EX_DATAERR;
	case CF_ERR_LOCKED: return EX_TEMPFAIL;
	case CF_ERR_CONFIG: return EX_CONFIG;
	default: return 1;
	}
}
