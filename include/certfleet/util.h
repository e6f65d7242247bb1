/* util.h - small helpers shared by every module: time, buffers, files,
 * shell quoting, secrets. No module state lives here. */
#ifndef CERTFLEET_UTIL_H
#define CERTFLEET_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "certfleet/err.h"

/* Monotonic clock in milliseconds; deadlines everywhere are absolute
 * values of this clock (int64_t, 0 = none). */
int64_t cf_now_ms(void);
/* Wall clock, seconds since the epoch. */
int64_t cf_wall_now(void);
/* Milliseconds left until deadline (>= 0); INT64_MAX when deadline is 0. */
int64_t cf_ms_left(int64_t deadline);
/* ISO 8601 UTC ("2026-11-25T06:43:59Z") into buf (>= 21 bytes). */
void cf_fmt_time(int64_t epoch, char *buf, size_t len);

/* JSON for optional values, one rule for every document and state file:
 * a string, null when s is NULL or "" (nothing to say); an ISO 8601 time,
 * null when t <= 0 (unknown).  json_string refuses invalid UTF-8 (NULL,
 * which makes json_pack fail): untrusted text goes through cf_sanitize
 * first. */
json_t *cf_json_str_or_null(const char *s);
json_t *cf_json_time_or_null(int64_t t);

/* Growable byte buffer, always NUL-terminated (data[len] == 0). */
typedef struct cf_buf {
	char *data;
	size_t len;
	size_t cap;
} cf_buf_t;
int cf_buf_append(cf_buf_t *b, const void *p, size_t n);
/* Make room for extra more bytes now, so appends up to that size never
 * move the data (no stale copy of a secret left in freed memory). */
int cf_buf_reserve(cf_buf_t *b, size_t extra);
int cf_buf_printf(cf_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Append s single-quoted for POSIX sh: 'it'\''s'. Safe for any byte string
 * without NUL. */
int cf_buf_shquote(cf_buf_t *b, const char *s);
void cf_buf_free(cf_buf_t *b);
/* Like cf_buf_free but wipes the bytes first (key material). */
void cf_buf_free_secret(cf_buf_t *b);

/* Read a whole file (cap: max bytes, else CF_ERR_DATA "too large").
 * *out is NUL-terminated, caller frees (cf_free_secret for keys). */
int cf_read_file(const char *path, size_t max, char **out, size_t *len,
                 cf_err_t *err);
/* Wipe and free. */
void cf_free_secret(void *p, size_t len);

/* Write a file atomically: temp file in the same directory created with
 * `mode` from the first byte, full write, fsync, rename over path, fsync
 * the directory. Never leaves a partial file at path. */
int cf_write_atomic(const char *path, const void *data, size_t len,
                    unsigned mode, cf_err_t *err);
/* mkdir -p with mode for each created component. */
int cf_mkdirs(const char *path, unsigned mode, cf_err_t *err);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void cf_hex(const unsigned char *p, size_t n, char *out);

/* Split "a,b,c" into a NULL-terminated vector (caller frees with
 * cf_strv_free). Empty items are dropped. */
char **cf_strv_split(const char *s, char sep);
void cf_strv_free(char **v);
bool cf_strv_has(char *const *v, const char *s);
/* Appends item to the string in dst (cap bytes), after sep unless dst is
 * empty; what does not fit is left out. */
void cf_strjoin(char *dst, size_t cap, const char *sep, const char *item);

/* "s" unless n is 1: "1 node", "2 nodes", "0 attempts". */
static inline const char *
cf_plural(unsigned long n)
{
	return n == 1 ? "" : "s";
}

#endif
