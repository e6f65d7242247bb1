/* util.c - time, buffers, files, quoting, secrets. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "certfleet/util.h"

int64_t
cf_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
cf_wall_now(void)
{
	return (int64_t)time(NULL);
}

int64_t
cf_ms_left(int64_t deadline)
{
	int64_t left;

	if (deadline == 0)
		return INT64_MAX;
	left = deadline - cf_now_ms();
	return left < 0 ? 0 : left;
}

void
cf_fmt_time(int64_t epoch, char *buf, size_t len)
{
	struct tm tm;
	time_t t = (time_t)epoch;

	if (epoch <= 0 || gmtime_r(&t, &tm) == NULL) {
		snprintf(buf, len, "-");
		return;
	}
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

json_t *
cf_json_str_or_null(const char *s)
{
	return s != NULL && *s != '\0' ? json_string(s) : json_null();
}

json_t *
cf_json_time_or_null(int64_t t)
{
	char buf[32];

	if (t <= 0)
		return json_null();
	cf_fmt_time(t, buf, sizeof(buf));
	return json_string(buf);
}

static int
buf_reserve(cf_buf_t *b, size_t extra)
{
	size_t need, ncap;
	char *p;

	if (extra > SIZE_MAX / 2 - b->len)
		return -1;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap *= 2;
	p = realloc(b->data, ncap);
	if (p == NULL)
		return -1;
	b->data = p;
	b->cap = ncap;
	return 0;
}

int
cf_buf_reserve(cf_buf_t *b, size_t extra)
{
	return buf_reserve(b, extra);
}

int
cf_buf_append(cf_buf_t *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return -1;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int
cf_buf_printf(cf_buf_t *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int
cf_buf_shquote(cf_buf_t *b, const char *s)
{
	if (cf_buf_append(b, "'", 1) < 0)
		return -1;
	for (; *s; s++) {
		if (*s == '\'') {
			if (cf_buf_append(b, "'\\''", 4) < 0)
				return -1;
		} else if (cf_buf_append(b, s, 1) < 0) {
			return -1;
		}
	}
	return cf_buf_append(b, "'", 1);
}

void
cf_buf_free(cf_buf_t *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
cf_buf_free_secret(cf_buf_t *b)
{
	if (b->data != NULL)
		OPENSSL_cleanse(b->data, b->cap);
	cf_buf_free(b);
}

void
cf_free_secret(void *p, size_t len)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, len);
	free(p);
}

int
cf_read_file(const char *path, size_t max, char **out, size_t *len,
             cf_err_t *err)
{
	cf_buf_t b = {0};
	char chunk[8192];
	ssize_t n;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cf_err_set(err,
		                  errno == ENOENT ? CF_ERR_DATA : CF_ERR_IO,
		                  "%s: %s", path, strerror(errno));
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cf_err_set(err, CF_ERR_IO, "%s: read: %s", path,
			           strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (b.len + (size_t)n > max) {
			cf_err_set(err, CF_ERR_DATA,
			           "%s: larger than %zu bytes", path, max);
			goto out;
		}
		if (cf_buf_append(&b, chunk, (size_t)n) < 0) {
			cf_err_set(err, CF_ERR_NOMEM, "%s: out of memory",
			           path);
			goto out;
		}
	}
	if (b.data == NULL && cf_buf_append(&b, "", 0) < 0) {
		cf_err_set(err, CF_ERR_NOMEM, "%s: out of memory", path);
		goto out;
	}
	*out = b.data;
	if (len != NULL)
		*len = b.len;
	b.data = NULL;
	rc = 0;
out:
	OPENSSL_cleanse(chunk, sizeof(chunk));
	cf_buf_free_secret(&b);
	close(fd);
	return rc;
}

static int
fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	int fd, rc;

	if (strlen(path) >= sizeof(dir))
		return -1;
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

int
cf_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                cf_err_t *err)
{
	char tmp[PATH_MAX];
	const char *p = data;
	size_t off = 0;
	ssize_t n;
	int fd = -1, rc = -1;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >=
	    (int)sizeof(tmp))
		return cf_err_set(err, CF_ERR_IO, "%s: path too long", path);
	/* mkostemp creates 0600; the final mode is applied with fchmod before
	 * any byte is written, so a key file is never readable by others. */
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return cf_err_set(err, CF_ERR_IO,
		                  "%s: cannot create temp file: %s", path,
		                  strerror(errno));
	if (fchmod(fd, mode) < 0) {
		cf_err_set(err, CF_ERR_IO, "%s: chmod: %s", tmp,
		           strerror(errno));
		goto out;
	}
	while (off < len) {
		n = write(fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cf_err_set(err, CF_ERR_IO, "%s: write: %s", path,
			           strerror(errno));
			goto out;
		}
		off += (size_t)n;
	}
	if (fsync(fd) < 0) {
		cf_err_set(err, CF_ERR_IO, "%s: fsync: %s", path,
		           strerror(errno));
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		cf_err_set(err, CF_ERR_IO, "%s: close: %s", path,
		           strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		cf_err_set(err, CF_ERR_IO, "%s: rename: %s", path,
		           strerror(errno));
		goto out;
	}
	tmp[0] = '\0';
	if (fsync_dir_of(path) < 0) {
		cf_err_set(err, CF_ERR_IO, "%s: fsync directory: %s", path,
		           strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (tmp[0] != '\0')
		unlink(tmp);
	return rc;
}

int
cf_mkdirs(const char *path, unsigned mode, cf_err_t *err)
{
	char buf[PATH_MAX];
	char *p;

	if (strlen(path) >= sizeof(buf))
		return cf_err_set(err, CF_ERR_IO, "%s: path too long", path);
	strcpy(buf, path);
	for (p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, c == '\0' ? mode : 0755) < 0 && errno != EEXIST)
			return cf_err_set(err, CF_ERR_IO, "mkdir %s: %s", buf,
			                  strerror(errno));
		*p = c;
		if (c == '\0')
			break;
	}
	return 0;
}

void
cf_hex(const unsigned char *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

char **
cf_strv_split(const char *s, char sep)
{
	size_t n = 1, i = 0;
	const char *p, *start;
	char **v;

	for (p = s; *p; p++)
		if (*p == sep)
			n++;
	v = calloc(n + 1, sizeof(*v));
	if (v == NULL)
		return NULL;
	for (start = p = s;; p++) {
		if (*p != sep && *p != '\0')
			continue;
		if (p > start) {
			v[i] = strndup(start, (size_t)(p - start));
			if (v[i] == NULL) {
				cf_strv_free(v);
				return NULL;
			}
			i++;
		}
		if (*p == '\0')
			break;
		start = p + 1;
	}
	return v;
}

void
cf_strv_free(char **v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

bool
cf_strv_has(char *const *v, const char *s)
{
	size_t i;

	if (v == NULL)
		return false;
	for (i = 0; v[i] != NULL; i++)
		if (strcmp(v[i], s) == 0)
			return true;
	return false;
}

void
cf_strjoin(char *dst, size_t cap, const char *sep, const char *item)
{
	size_t used = strlen(dst);

	if (used + 1 < cap)
		snprintf(dst + used, cap - used, "%s%s", used ? sep : "", item);
}
