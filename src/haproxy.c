/* haproxy.c - HAProxy's runtime API over a direct-tcpip channel (see
 * haproxy.h).  Answers checked, from HAProxy 2.6.12:
 *   set:    "Transaction created for certificate FILE!"
 *   commit: "Committing FILE." then "Success!"
 *   show:   "Filename: FILE", "Serial: 4A3F..." (upper-case hex of the
 *           serial's bytes), ...
 *   errors: e.g. "Can't replace a certificate which is not referenced by
 *           the configuration!", "unable to load certificate from file
 *           ..." then "Can't update FILE!", "No ongoing transaction!",
 *           "Permission denied" (a socket below level admin). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/crypto.h"
#include "certfleet/haproxy.h"
#include "certfleet/util.h"

#define API_HOST "127.0.0.1"
#define PEM_MAX (256 * 1024)

/* One command, one connection: HAProxy answers and closes.  *answer is
 * what it said (caller frees). */
static int
api_call(cf_ssh_t *s, unsigned port, const char *cmd, size_t len, char **answer,
         cf_err_t *err)
{
	cf_ssh_tcpip_t *c = NULL;
	int rc = -1;

	if (ssh_tcpip_open(s, API_HOST, port, &c, err) < 0) {
		/* the node refused the channel: the API is not there (or
		 * forwarding is off), a failure of this mode's "reload" */
		if (err->code == CF_ERR_REFUSED)
			err->code = CF_ERR_RELOAD;
		cf_err_prefix(err, "haproxy runtime API: ");
		return -1;
	}
	if (ssh_tcpip_send(c, cmd, len, err) < 0 ||
	    ssh_tcpip_recv(c, NULL, answer, err) < 0) {
		cf_err_prefix(err, "haproxy runtime API: ");
		goto out;
	}
	rc = 0;
out:
	ssh_tcpip_close(c);
	return rc;
}

/* HAProxy's answer on one line for a message (cf_err_set sanitizes). */
static void
one_line(const char *answer, char *buf, size_t len)
{
	size_t o = 0;

	for (const char *p = answer; *p != '\0' && o + 1 < len; p++) {
		if (*p == '\n') {
			if (o > 0 && buf[o - 1] != ' ')
				buf[o++] = ' ';
			continue;
		}
		buf[o++] = *p;
	}
	while (o > 0 && buf[o - 1] == ' ')
		o--;
	buf[o] = '\0';
	if (o == 0)
		snprintf(buf, len, "(no answer)");
}

static int
api_refused(const char *cmd, const char *path, const char *answer,
            cf_err_t *err)
{
	char said[300];

	one_line(answer, said, sizeof(said));
	return cf_err_set(err, CF_ERR_RELOAD,
	                  "haproxy runtime API refused `%s ssl cert %s`: %s",
	                  cmd, path, said);
}

/* Best effort after a failure: drop our transaction, if any. */
static void
api_abort(cf_ssh_t *s, unsigned port, const char *path)
{
	cf_buf_t cmd = {0};
	char *answer = NULL;
	cf_err_t ignored = {0};

	if (cf_buf_printf(&cmd, "abort ssl cert %s\n", path) == 0)
		(void)api_call(s, port, cmd.data, cmd.len, &answer, &ignored);
	free(answer);
	cf_buf_free(&cmd);
}

/* "set ssl cert PATH <<", the PEM with no empty line (an empty line ends
 * HAProxy's payload), then the empty line.  One buffer sized up front and
 * wiped by the caller: it holds the key. */
static int
build_set(const char *path, const char *pem, size_t pem_len, cf_buf_t *b,
          cf_err_t *err)
{
	size_t i;

	if (cf_buf_reserve(b, pem_len + strlen(path) + 32) < 0 ||
	    cf_buf_printf(b, "set ssl cert %s <<\n", path) < 0)
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	for (i = 0; i < pem_len; i++) {
		char ch = pem[i];

		if (ch == '\r' || (ch == '\n' && b->data[b->len - 1] == '\n'))
			continue;
		b->data[b->len++] = ch;
	}
	if (b->data[b->len - 1] != '\n')
		b->data[b->len++] = '\n';
	b->data[b->len++] = '\n';
	b->data[b->len] = '\0';
	return 0;
}

/* hex without leading zeros, upper case */
static void
norm_serial(const char *in, char *out, size_t len)
{
	size_t o = 0;

	while (*in == '0')
		in++;
	for (; isxdigit((unsigned char)*in) && o + 1 < len; in++)
		out[o++] = (char)toupper((unsigned char)*in);
	out[o] = '\0';
}

static int
api_confirm(cf_ssh_t *s, unsigned port, const char *path,
            const char *serial_hex, cf_err_t *err)
{
	cf_buf_t cmd = {0};
	char *answer = NULL, *p, want[80], got[80];
	int rc = -1;

	if (cf_buf_printf(&cmd, "show ssl cert %s\n", path) < 0) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (api_call(s, port, cmd.data, cmd.len, &answer, err) < 0)
		goto out;
	p = strstr(answer, "\nSerial: ");
	if (strncmp(answer, "Filename: ", 10) != 0 || p == NULL) {
		api_refused("show", path, answer, err);
		goto out;
	}
	norm_serial(p + 9, got, sizeof(got));
	norm_serial(serial_hex, want, sizeof(want));
	if (strcmp(got, want) != 0) {
		cf_err_set(err, CF_ERR_RELOAD,
		           "haproxy runtime API: after the commit %s has "
		           "serial "
		           "%s, not the new certificate's %s",
		           path, got, want);
		goto out;
	}
	rc = 0;
out:
	free(answer);
	cf_buf_free(&cmd);
	return rc;
}

int
haproxy_cert_update(cf_ssh_t *s, unsigned port, const char *path,
                    const char *pem, size_t pem_len, const char *serial_hex,
                    bool *committed, cf_err_t *err)
{
	cf_buf_t set = {0}, cmd = {0};
	char *answer = NULL;
	bool sent = false;
	int rc = -1;

	if (build_set(path, pem, pem_len, &set, err) < 0)
		goto out;
	sent = true;
	if (api_call(s, port, set.data, set.len, &answer, err) < 0)
		goto out;
	if (strncmp(answer, "Transaction created", 19) != 0) {
		api_refused("set", path, answer, err);
		goto out;
	}
	free(answer);
	answer = NULL;
	if (cf_buf_printf(&cmd, "commit ssl cert %s\n", path) < 0) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	*committed = true;
	if (api_call(s, port, cmd.data, cmd.len, &answer, err) < 0)
		goto out;
	if (strstr(answer, "\nSuccess!") == NULL) {
		api_refused("commit", path, answer, err);
		goto out;
	}
	sent = false; /* committed: no transaction left to abort */
	if (serial_hex != NULL &&
	    api_confirm(s, port, path, serial_hex, err) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0 && sent)
		api_abort(s, port, path);
	cf_buf_free_secret(&set);
	cf_buf_free(&cmd);
	free(answer);
	return rc;
}

int
haproxy_cert_reload_file(cf_ssh_t *s, unsigned port, const char *path,
                         cf_err_t *err)
{
	struct cf_certinfo ci = {0};
	char *pem = NULL;
	size_t len = 0;
	bool committed = false;
	int rc = -1;

	if (ssh_download(s, path, PEM_MAX, &pem, &len, err) < 0)
		goto out;
	/* the serial to confirm: the file's first certificate, its leaf */
	if (crypto_certinfo_pem(pem, len, &ci, err) < 0) {
		cf_err_prefix(err, "%s on the node: ", path);
		goto out;
	}
	rc = haproxy_cert_update(s, port, path, pem, len, ci.serial_hex,
	                         &committed, err);
out:
	crypto_certinfo_free(&ci);
	if (pem != NULL)
		cf_free_secret(pem, len + 1);
	return rc;
}
