/* err.c - the one error type. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "certfleet/err.h"

/* Messages carry text from untrusted places (a node's `nginx -t` output,
 * a CA's problem detail) to terminals, state files and JSON.  Keep them
 * one line of valid UTF-8: control characters and invalid or truncated
 * sequences become '?', so a node cannot drive the operator's terminal
 * and a cut through a multi-byte character cannot make JSON refuse it. */
static void
sanitize(char *m)
{
	unsigned char *p = (unsigned char *)m;

	while (*p) {
		unsigned char c = *p;
		size_t len, i;
		unsigned cp;

		if (c < 0x20 || c == 0x7f) {
			*p++ = c == '\t' || c == '\n' || c == '\r' ? ' ' : '?';
			continue;
		}
		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			*p++ = '?';
			continue;
		}
		for (i = 1; i < len; i++) {
			if ((p[i] & 0xc0) != 0x80)
				break;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if (i < len || (len == 3 && cp < 0x800) ||
		    (len == 3 && cp >= 0xd800 && cp <= 0xdfff) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0x80 && cp <= 0x9f)) {
			/* invalid, overlong, surrogate, C1 control, or cut */
			*p++ = '?';
			continue;
		}
		p += len;
	}
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
	sanitize(err->msg);
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
	sanitize(err->msg);
	return -1;
}

const char *
cf_err_reason(cf_code_t code)
{
	switch (code) {
	case CF_ERR_TIMEOUT:         return "timeout";
	case CF_ERR_REFUSED:         return "refused";
	case CF_ERR_UNREACHABLE:     return "unreachable";
	case CF_ERR_SSH:             return "ssh";
	case CF_ERR_HOSTKEY_UNKNOWN: return "hostkey-unknown";
	case CF_ERR_HOSTKEY_CHANGED: return "hostkey-changed";
	case CF_ERR_AUTH:            return "auth";
	case CF_ERR_WRITE:           return "write";
	case CF_ERR_UNSAFE_PATH:     return "unsafe-path";
	case CF_ERR_CHECK:           return "check-failed";
	case CF_ERR_RELOAD:          return "reload-failed";
	case CF_ERR_VERIFY:          return "verify-failed";
	case CF_ERR_TLS:             return "tls";
	case CF_ERR_ACME:            return "acme";
	case CF_ERR_HOOK:            return "hook";
	default:                     return "error";
	}
}

int
cf_err_exit_code(cf_code_t code)
{
	switch (code) {
	case CF_ERR_USAGE:  return 64;
	case CF_ERR_DATA:   return 65;
	case CF_ERR_LOCKED: return 75;
	case CF_ERR_CONFIG: return 78;
	default:            return 1;
	}
}
