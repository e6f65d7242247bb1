/* err.c - the one error type. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "certfleet/err.h"

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
