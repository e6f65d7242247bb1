/* ssh.c - one libssh2 session to one node (see ssh.h).
 *
 * Every session runs libssh2 in non-blocking mode: each call is retried on
 * LIBSSH2_ERROR_EAGAIN after poll()ing the socket for the directions
 * libssh2_session_block_directions() names, until the session's deadline.
 * Blocking libssh2 has no deadline of its own, so a host that accepts TCP
 * and never speaks, or an sshd stopped mid-transfer, would hold a worker
 * forever.
 *
 * A non-blocking libssh2 call that returned EAGAIN must be called again,
 * with the same arguments, before any other call on the session: its state
 * machine (and any half-sent packet) lives in the session.  So a call
 * abandoned at a deadline leaves the session "broken": later calls fail at
 * once and ssh_close only tears the socket down. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libssh2.h>
#include <libssh2_sftp.h>

#include "certfleet/b64.h"
#include "certfleet/net.h"
#include "certfleet/ssh.h"
#include "certfleet/util.h"
#include "knownhosts.h"
#include "sshkey.h"

#define IDENTITY_MAX (64 * 1024)
#define KNOWN_HOSTS_MAX (16 * 1024 * 1024)
#define OUTPUT_MAX (64 * 1024)
#define CLOSE_GRACE_MS 1000
#define HOST_MAX 256

/* Measured with callgrind on Debian 12 (libssh2 1.10 against OpenSSH 9.2,
 * connect + auth + upload + exec + close): curve25519 and nistp256 cost
 * the coordinator about the same (~13M instructions per connection, 6%
 * apart), diffie-hellman-group14 four times the whole connection.  So
 * curve25519 first; the DH groups only serve old servers. */
static const char KEX_PREF[] =
    "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,"
    "ecdh-sha2-nistp384,diffie-hellman-group14-sha256,"
    "diffie-hellman-group16-sha512,diffie-hellman-group-exchange-sha256";
/* libssh2 1.10 has neither chacha20-poly1305 nor AES-GCM nor the -etm
 * MACs.  At certificate sizes the cipher and MAC do not show in the
 * profile (aes128/aes256, sha2-256/512 within noise); no SHA-1 MACs. */
static const char CIPHER_PREF[] = "aes128-ctr,aes256-ctr,aes192-ctr";
static const char MAC_PREF[] = "hmac-sha2-256,hmac-sha2-512";
/* Used when known_hosts has nothing for the host: the handshake still runs
 * so the error can show the fingerprint the operator has to check. */
static const char HOSTKEY_DEFAULT[] =
    "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,"
    "ecdsa-sha2-nistp521,ssh-rsa";
/* Host key types libssh2 1.10 can verify.  Note "ssh-rsa" means RSA with
 * SHA-1 there (no rsa-sha2-256/512), which OpenSSH >= 8.8 no longer offers
 * by default. */
static const char *const HOSTKEY_SUPPORTED[] = {
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "ssh-dss",
};

struct cf_ssh_ctx {
	char *key; /* identity file text: secret */
	size_t key_len;
	char *identity_path;
	char *known_hosts_path;
	cf_knownhosts_t *kh;
	/* The public key as "TYPE BASE64" when the private key file holds it
	 * in clear (OpenSSH format); NULL lets libssh2 derive it. */
	char *pub;
	size_t pub_len;
	/* The key decoded once (ed25519, ecdsa), or NULL: libssh2 parses
	 * the text on every login. */
	cf_sshkey_t *sk;
	/* libssh2 1.10 signs with RSA only as SHA-1 "ssh-rsa", which
	 * OpenSSH >= 8.8 refuses by default: worth saying when refused. */
	bool key_is_rsa;
};

struct cf_ssh {
	LIBSSH2_SESSION *session;
	LIBSSH2_SFTP *sftp; /* opened on first use, kept for the session */
	int fd;
	int64_t deadline;
	/* A call was abandoned mid-way (deadline, transport error): nothing
	 * more may be sent on this session. */
	bool broken;
	/* The host failed the host key check: nothing at all is sent. */
	bool untrusted;
	char host[HOST_MAX];
	unsigned port;
	char fingerprint[KNOWNHOSTS_FP_LEN];
};

static const char *
ssh_errmsg(LIBSSH2_SESSION *session)
{
	char *msg = NULL;

	libssh2_session_last_error(session, &msg, NULL, 0);
	return msg != NULL && *msg != '\0' ? msg : "unknown libssh2 error";
}

static double
secs_since(int64_t t0)
{
	return (double)(cf_now_ms() - t0) / 1000.0;
}

/* After EAGAIN: wait until the socket is ready the way libssh2 needs it.
 * 0 = call again; -1 = deadline passed or poll failed (err set, session
 * broken, since the interrupted call can never be resumed now). */
static int
ssh_wait(cf_ssh_t *s, int64_t deadline, int64_t t0, const char *what,
         cf_err_t *err)
{
	int dirs, rc;
	short ev = 0;

	dirs = libssh2_session_block_directions(s->session);
	if (dirs & LIBSSH2_SESSION_BLOCK_INBOUND)
		ev |= POLLIN;
	if (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		ev |= POLLOUT;
	if (ev == 0)
		ev = POLLIN;
	rc = net_wait(s->fd, ev, deadline);
	if (rc > 0)
		return 0;
	s->broken = true;
	if (rc == 0)
		return cf_err_set(err, CF_ERR_TIMEOUT,
		                  "%s timed out after %.1fs", what,
		                  secs_since(t0));
	return cf_err_set(err, CF_ERR_SSH, "%s: poll: %s", what,
	                  strerror(errno));
}

/* A transport-level failure: the session cannot be trusted to be in step
 * with the server any more. */
static int
ssh_fail(cf_ssh_t *s, int rc, const char *what, cf_err_t *err)
{
	s->broken = true;
	if (rc == LIBSSH2_ERROR_SOCKET_DISCONNECT ||
	    rc == LIBSSH2_ERROR_SOCKET_RECV)
		return cf_err_set(err, CF_ERR_SSH,
		                  "%s failed: connection closed by %s:%u (%s)",
		                  what, s->host, s->port,
		                  ssh_errmsg(s->session));
	return cf_err_set(err, CF_ERR_SSH, "%s failed: %s (libssh2 %d)", what,
	                  ssh_errmsg(s->session), rc);
}

static int
ssh_usable(const cf_ssh_t *s, cf_err_t *err)
{
	if (s == NULL || s->session == NULL)
		return cf_err_set(err, CF_ERR_INTERNAL, "ssh: no session");
	if (s->broken || s->untrusted)
		return cf_err_set(err, CF_ERR_SSH,
		                  "ssh session to %s:%u unusable after an "
		                  "earlier "
		                  "failure",
		                  s->host, s->port);
	return 0;
}

/* ---- identity and known_hosts ------------------------------------- */

/* Big-endian uint32 + that many bytes at *off (RFC 4251 "string"). */
static int
get_string(const unsigned char *p, size_t len, size_t *off,
           const unsigned char **s, size_t *slen)
{
	uint32_t l;

	if (len - *off < 4)
		return -1;
	l = (uint32_t)p[*off] << 24 | (uint32_t)p[*off + 1] << 16 |
	    (uint32_t)p[*off + 2] << 8 | p[*off + 3];
	*off += 4;
	if (l > len - *off)
		return -1;
	*s = p + *off;
	*slen = l;
	*off += l;
	return 0;
}

struct identity_info {
	char cipher[64]; /* "none" unless passphrase-protected */
	char type[64];   /* key type of the first key */
	char *pub;       /* "TYPE BASE64", as in a .pub file */
	size_t pub_len;
};

/* The public header of an OpenSSH private key container (PROTOCOL.key):
 * cipher name, key type and public key, without touching the private
 * part.  Knowing the public key spares libssh2 from deriving it, which in
 * 1.10 costs a failing PEM_read_bio_PrivateKey (OpenSSL 3 decoder setup,
 * ~1 ms) on every connection. */
static int
openssh_key_info(const char *text, size_t len, struct identity_info *ii)
{
	static const char magic[] = "openssh-key-v1";
	const unsigned char *f[5], *t;
	unsigned char *bin = NULL;
	size_t fl[5], blen = 0, off, tl, i, pl;
	int rc = -1;

	if (sshkey_openssh_container(text, len, &bin, &blen) < 0)
		goto out;
	if (blen < sizeof(magic) || memcmp(bin, magic, sizeof(magic)) != 0)
		goto out;
	off = sizeof(magic);
	/* ciphername, kdfname, kdfoptions, uint32 nkeys, first public key */
	for (i = 0; i < 5; i++) {
		if (i == 3) {
			if (blen - off < 4)
				goto out;
			off += 4;
			continue;
		}
		if (get_string(bin, blen, &off, &f[i], &fl[i]) < 0)
			goto out;
	}
	off = 0;
	if (fl[0] >= sizeof(ii->cipher) ||
	    get_string(f[4], fl[4], &off, &t, &tl) < 0 ||
	    tl >= sizeof(ii->type))
		goto out;
	memcpy(ii->cipher, f[0], fl[0]);
	ii->cipher[fl[0]] = '\0';
	memcpy(ii->type, t, tl);
	ii->type[tl] = '\0';
	pl = tl + 1 + 4 * ((fl[4] + 2) / 3) + 1;
	ii->pub = malloc(pl);
	if (ii->pub == NULL)
		goto out;
	memcpy(ii->pub, t, tl);
	ii->pub[tl] = ' ';
	b64_encode(CF_B64_STD, f[4], fl[4], true, ii->pub + tl + 1);
	ii->pub_len = strlen(ii->pub);
	rc = 0;
out:
	if (bin != NULL)
		cf_free_secret(bin, blen);
	return rc;
}

/* Refuse keys libssh2 1.10 cannot use, with the reason, at load time
 * rather than as an authentication failure on every node. */
static int
identity_check_format(const char *path, const char *key, size_t len,
                      struct identity_info *ii, cf_err_t *err)
{
	if (strstr(key, "-----BEGIN OPENSSH PRIVATE KEY-----") != NULL) {
		if (openssh_key_info(key, len, ii) < 0)
			return cf_err_set(err, CF_ERR_CONFIG,
			                  "identity %s: malformed OpenSSH "
			                  "private key",
			                  path);
		if (strcmp(ii->cipher, "none") != 0)
			return cf_err_set(err, CF_ERR_CONFIG,
			                  "identity %s is "
			                  "passphrase-protected; "
			                  "certfleet needs an unencrypted key",
			                  path);
		if (strcmp(ii->type, "ssh-ed25519") != 0 &&
		    strncmp(ii->type, "ecdsa-sha2-nistp", 16) != 0 &&
		    strcmp(ii->type, "ssh-rsa") != 0)
			return cf_err_set(err, CF_ERR_CONFIG,
			                  "identity %s: key type %s is not "
			                  "supported "
			                  "(use ed25519 or ecdsa)",
			                  path, ii->type);
		return 0;
	}
	if (strstr(key, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL ||
	    strstr(key, "Proc-Type: 4,ENCRYPTED") != NULL)
		return cf_err_set(err, CF_ERR_CONFIG,
		                  "identity %s is passphrase-protected; "
		                  "certfleet "
		                  "needs an unencrypted key",
		                  path);
	if (strstr(key, "-----BEGIN RSA PRIVATE KEY-----") != NULL)
		snprintf(ii->type, sizeof(ii->type), "ssh-rsa");
	if (strstr(key, "-----BEGIN EC PRIVATE KEY-----") != NULL ||
	    strstr(key, "-----BEGIN RSA PRIVATE KEY-----") != NULL ||
	    strstr(key, "-----BEGIN PRIVATE KEY-----") != NULL)
		return 0;
	return cf_err_set(err, CF_ERR_CONFIG,
	                  "identity %s is not a private key in a format "
	                  "libssh2 reads (OpenSSH or PEM)",
	                  path);
}

/* Read the key from the same descriptor whose mode we checked, into one
 * buffer of the final size (no realloc leaving copies behind). */
static int
identity_load(const char *path, char **out, size_t *out_len,
              struct identity_info *ii, cf_err_t *err)
{
	struct stat st;
	char *buf = NULL;
	size_t size = 0, got = 0;
	ssize_t n;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return cf_err_set(err, CF_ERR_CONFIG, "identity %s: %s", path,
		                  strerror(errno));
	if (fstat(fd, &st) < 0) {
		cf_err_set(err, CF_ERR_IO, "identity %s: %s", path,
		           strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		cf_err_set(err, CF_ERR_CONFIG,
		           "identity %s is not a regular file", path);
		goto out;
	}
	/* As ssh(1) does: a key others can read is no longer a secret, and
	 * silently using it would hide that. */
	if ((st.st_mode & 077) != 0) {
		/* name who can get at it: 0640 is a group, not the world */
		const char *who =
		    (st.st_mode & 070) && (st.st_mode & 007)
		        ? ((st.st_mode & 044)
		               ? "group- and world-readable"
		               : "accessible by its group and others")
		    : (st.st_mode & 070)
		        ? ((st.st_mode & 040) ? "group-readable"
		                              : "accessible by its group")
		        : ((st.st_mode & 004) ? "world-readable"
		                              : "accessible by others");

		cf_err_set(err, CF_ERR_CONFIG,
		           "UNPROTECTED PRIVATE KEY FILE: %s is mode %04o "
		           "(%s); "
		           "a private key must be readable by its owner only "
		           "(chmod 600 %s)",
		           path, (unsigned)(st.st_mode & 07777), who, path);
		goto out;
	}
	if (st.st_size <= 0 || st.st_size > IDENTITY_MAX) {
		cf_err_set(err, CF_ERR_CONFIG, "identity %s: bad size %lld",
		           path, (long long)st.st_size);
		goto out;
	}
	size = (size_t)st.st_size;
	buf = malloc(size + 1);
	if (buf == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "identity %s: out of memory",
		           path);
		goto out;
	}
	while (got < size) {
		n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			cf_err_set(err, CF_ERR_IO, "identity %s: read: %s",
			           path,
			           n < 0 ? strerror(errno) : "file shrank");
			goto out;
		}
		got += (size_t)n;
	}
	buf[size] = '\0';
	if (strlen(buf) != size) {
		cf_err_set(err, CF_ERR_CONFIG,
		           "identity %s: not a text key file", path);
		goto out;
	}
	if (identity_check_format(path, buf, size, ii, err) < 0)
		goto out;
	*out = buf;
	*out_len = size;
	buf = NULL;
	rc = 0;
out:
	if (buf != NULL)
		cf_free_secret(buf, size + 1);
	close(fd);
	return rc;
}

static int
known_hosts_load(const char *path, cf_knownhosts_t **out, cf_err_t *err)
{
	struct stat st;
	char *text = NULL;
	size_t len = 0;
	int rc = -1;

	/* Missing file = nothing known: every host is refused as unknown,
	 * with the fingerprint to check and add. */
	if (stat(path, &st) < 0 && errno == ENOENT) {
		rc = knownhosts_parse("", 0, out, err);
		goto out;
	}
	if (cf_read_file(path, KNOWN_HOSTS_MAX, &text, &len, err) < 0) {
		cf_err_prefix(err, "known_hosts: ");
		goto out;
	}
	rc = knownhosts_parse(text, len, out, err);
out:
	free(text);
	return rc;
}

int
ssh_check_files(const char *identity_path, const char *known_hosts_path,
                cf_err_t *err)
{
	struct identity_info ii;
	struct stat st;
	char *key = NULL;
	size_t key_len = 0;
	int fd, rc = -1;

	memset(&ii, 0, sizeof(ii));
	if (identity_load(identity_path, &key, &key_len, &ii, err) < 0)
		goto out;
	/* ssh_ctx_new takes a missing known_hosts as empty (every host is
	 * then refused with its fingerprint); before a run it is a mistake */
	fd = open(known_hosts_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		cf_err_set(err, CF_ERR_CONFIG, "known_hosts %s: %s%s",
		           known_hosts_path, strerror(errno),
		           errno == ENOENT ? " (add every node's host key: "
		                             "ssh-keyscan -t ed25519 HOST >> "
		                             "FILE, then check "
		                             "the fingerprints)"
		                           : "");
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		cf_err_set(err, CF_ERR_CONFIG,
		           "known_hosts %s is not a regular "
		           "file",
		           known_hosts_path);
		close(fd);
		goto out;
	}
	close(fd);
	/* whoever may write it may vouch for any host key */
	if ((st.st_mode & 022) != 0) {
		cf_err_set(err, CF_ERR_CONFIG,
		           "known_hosts %s is mode %04o "
		           "(%s-writable): anyone who can write it can vouch "
		           "for "
		           "a host key (chmod 644 %s)",
		           known_hosts_path, (unsigned)(st.st_mode & 07777),
		           (st.st_mode & 002) ? "world" : "group",
		           known_hosts_path);
		goto out;
	}
	rc = 0;
out:
	if (key != NULL)
		cf_free_secret(key, key_len + 1);
	free(ii.pub);
	return rc;
}

int
ssh_ctx_new(const char *identity_path, const char *known_hosts_path,
            cf_ssh_ctx_t **out, cf_err_t *err)
{
	struct identity_info ii;
	cf_ssh_ctx_t *ctx;
	int rc = -1;

	memset(&ii, 0, sizeof(ii));
	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return cf_err_set(err, CF_ERR_NOMEM, "ssh: out of memory");
	/* Counted by libssh2: paired with libssh2_exit in ssh_ctx_free.
	 * Done here, before any worker exists, because libssh2_session_init
	 * would otherwise initialise lazily and racily from the workers. */
	if (libssh2_init(0) != 0) {
		free(ctx);
		return cf_err_set(err, CF_ERR_INTERNAL, "libssh2_init failed");
	}
	ctx->identity_path = strdup(identity_path);
	ctx->known_hosts_path = strdup(known_hosts_path);
	if (ctx->identity_path == NULL || ctx->known_hosts_path == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "ssh: out of memory");
		goto out;
	}
	if (identity_load(identity_path, &ctx->key, &ctx->key_len, &ii, err) <
	    0)
		goto out;
	ctx->pub = ii.pub;
	ctx->pub_len = ii.pub_len;
	ii.pub = NULL;
	ctx->key_is_rsa = strcmp(ii.type, "ssh-rsa") == 0;
	ctx->sk = sshkey_load(ctx->key, ctx->key_len);
	if (known_hosts_load(known_hosts_path, &ctx->kh, err) < 0)
		goto out;
	*out = ctx;
	ctx = NULL;
	rc = 0;
out:
	free(ii.pub);
	ssh_ctx_free(ctx);
	return rc;
}

void
ssh_ctx_free(cf_ssh_ctx_t *ctx)
{
	if (ctx == NULL)
		return;
	if (ctx->key != NULL)
		cf_free_secret(ctx->key, ctx->key_len + 1);
	knownhosts_free(ctx->kh);
	sshkey_free(ctx->sk);
	free(ctx->pub);
	free(ctx->identity_path);
	free(ctx->known_hosts_path);
	free(ctx);
	libssh2_exit();
}

/* ---- connect ------------------------------------------------------- */

/* The libssh2 host key preference: the known types libssh2 can verify, in
 * known_hosts preference order; the defaults if known_hosts has none. */
static void
hostkey_pref(const char *known, char *buf, size_t len)
{
	const char *p = known, *comma;
	size_t tl, used = 0, i;

	buf[0] = '\0';
	while (*p != '\0') {
		comma = strchr(p, ',');
		tl = comma != NULL ? (size_t)(comma - p) : strlen(p);
		for (i = 0; i < sizeof(HOSTKEY_SUPPORTED) /
		                    sizeof(HOSTKEY_SUPPORTED[0]);
		     i++) {
			if (strlen(HOSTKEY_SUPPORTED[i]) == tl &&
			    memcmp(HOSTKEY_SUPPORTED[i], p, tl) == 0 &&
			    used + tl + 2 < len) {
				if (used > 0)
					buf[used++] = ',';
				memcpy(buf + used, p, tl);
				used += tl;
				buf[used] = '\0';
			}
		}
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	if (used == 0)
		snprintf(buf, len, "%s", HOSTKEY_DEFAULT);
}

static int
set_methods(cf_ssh_t *s, const char *hostkeys, cf_err_t *err)
{
	static const struct {
		int type;
		const char *pref;
	} m[] = {
	    {LIBSSH2_METHOD_KEX, KEX_PREF},
	    {LIBSSH2_METHOD_CRYPT_CS, CIPHER_PREF},
	    {LIBSSH2_METHOD_CRYPT_SC, CIPHER_PREF},
	    {LIBSSH2_METHOD_MAC_CS, MAC_PREF},
	    {LIBSSH2_METHOD_MAC_SC, MAC_PREF},
	};
	size_t i;

	for (i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		if (libssh2_session_method_pref(s->session, m[i].type,
		                                m[i].pref) < 0)
			return cf_err_set(err, CF_ERR_INTERNAL,
			                  "ssh: method preference \"%s\": %s",
			                  m[i].pref, ssh_errmsg(s->session));
	if (libssh2_session_method_pref(s->session, LIBSSH2_METHOD_HOSTKEY,
	                                hostkeys) < 0)
		return cf_err_set(err, CF_ERR_INTERNAL,
		                  "ssh: host key preference \"%s\": %s",
		                  hostkeys, ssh_errmsg(s->session));
	return 0;
}

/* Compare the offered key with known_hosts.  On any failure the session
 * is marked untrusted so that ssh_close sends nothing. */
static int
check_hostkey(cf_ssh_t *s, const cf_ssh_ctx_t *ctx,
              const cf_knownhosts_hits_t *hits, cf_err_t *err)
{
	const char *blob;
	char name[HOST_MAX + 16];
	size_t len = 0;
	int type = 0;

	if (s->port == 22)
		snprintf(name, sizeof(name), "%s", s->host);
	else
		snprintf(name, sizeof(name), "[%s]:%u", s->host, s->port);
	blob = libssh2_session_hostkey(s->session, &len, &type);
	if (blob == NULL || len == 0) {
		s->untrusted = true;
		return cf_err_set(err, CF_ERR_SSH, "%s sent no host key", name);
	}
	knownhosts_fingerprint((const unsigned char *)blob, len,
	                       s->fingerprint);
	switch (knownhosts_hits_check(hits, (const unsigned char *)blob, len)) {
	case KNOWNHOSTS_MATCH: return 0;
	case KNOWNHOSTS_NOTFOUND:
		s->untrusted = true;
		return cf_err_set(err, CF_ERR_HOSTKEY_UNKNOWN,
		                  "host key for %s not in %s (%s)", name,
		                  ctx->known_hosts_path, s->fingerprint);
	case KNOWNHOSTS_MISMATCH:
		s->untrusted = true;
		return cf_err_set(err, CF_ERR_HOSTKEY_CHANGED,
		                  "HOST KEY FOR %s HAS CHANGED (offered %s): "
		                  "possible interception, nothing sent",
		                  name, s->fingerprint);
	case KNOWNHOSTS_REVOKED:
	default:
		s->untrusted = true;
		return cf_err_set(err, CF_ERR_HOSTKEY_CHANGED,
		                  "host key for %s is REVOKED in %s (offered "
		                  "%s): "
		                  "possible interception, nothing sent",
		                  name, ctx->known_hosts_path, s->fingerprint);
	}
}

static int
sign_cb(LIBSSH2_SESSION *session, unsigned char **sig, size_t *sig_len,
        const unsigned char *data, size_t data_len, void **abstract)
{
	(void)session;
	return sshkey_sign(*abstract, sig, sig_len, data, data_len);
}

static int
authenticate(cf_ssh_t *s, const cf_ssh_ctx_t *ctx, const char *user,
             int64_t deadline, cf_err_t *err)
{
	char what[HOST_MAX + 96];
	int64_t t0 = cf_now_ms();
	void *abstract = ctx->sk;
	const unsigned char *blob;
	size_t blob_len;
	int rc;

	snprintf(what, sizeof(what), "authentication as %s@%s", user, s->host);
	if (ctx->sk != NULL) {
		blob = sshkey_blob(ctx->sk, &blob_len);
		while ((rc = libssh2_userauth_publickey(s->session, user, blob,
		                                        blob_len, sign_cb,
		                                        &abstract)) ==
		       LIBSSH2_ERROR_EAGAIN)
			if (ssh_wait(s, deadline, t0, what, err) < 0)
				return -1;
	} else {
		/* Without a public key libssh2 derives it from the private
		 * key. */
		while ((rc = libssh2_userauth_publickey_frommemory(s->session,
		                                                   user,
		                                                   strlen(user),
		                                                   ctx->pub,
		                                                   ctx->pub_len,
		                                                   ctx->key,
		                                                   ctx->key_len,
		                                                   NULL)) ==
		       LIBSSH2_ERROR_EAGAIN)
			if (ssh_wait(s, deadline, t0, what, err) < 0)
				return -1;
	}
	switch (rc) {
	case 0: return 0;
	case LIBSSH2_ERROR_AUTHENTICATION_FAILED:
	case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
		if (ctx->key_is_rsa)
			return cf_err_set(
			    err, CF_ERR_AUTH,
			    "%s refused (publickey); note libssh2 1.10 "
			    "signs RSA keys only with SHA-1 (ssh-rsa), "
			    "which OpenSSH 8.8+ refuses by default: use "
			    "an ed25519 or ecdsa key",
			    what);
		return cf_err_set(err, CF_ERR_AUTH, "%s refused (publickey)",
		                  what);
	case LIBSSH2_ERROR_FILE:
	case LIBSSH2_ERROR_METHOD_NOT_SUPPORTED:
		s->broken = true;
		return cf_err_set(err, CF_ERR_CONFIG,
		                  "identity %s unusable: %s",
		                  ctx->identity_path, ssh_errmsg(s->session));
	default: return ssh_fail(s, rc, what, err);
	}
}

int
ssh_connect(const cf_ssh_ctx_t *ctx, const char *host, unsigned port,
            const char *user, int64_t connect_deadline, int64_t op_deadline,
            cf_ssh_t **out, cf_err_t *err)
{
	cf_knownhosts_hits_t *hits = NULL;
	cf_ssh_t *s;
	char what[HOST_MAX + 64], hostkeys[256];
	int64_t t0 = cf_now_ms();
	int rc = -1, r;

	if (port == 0 || port > 65535 || strlen(host) >= HOST_MAX)
		return cf_err_set(err, CF_ERR_CONFIG, "bad ssh target %.64s:%u",
		                  host, port);
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return cf_err_set(err, CF_ERR_NOMEM, "ssh: out of memory");
	s->fd = -1;
	snprintf(s->host, sizeof(s->host), "%s", host);
	s->port = port;
	s->deadline = op_deadline;
	snprintf(what, sizeof(what), "ssh handshake with %s:%u", host, port);

	/* Before connecting: OpenSSH restricts the host key algorithms to the
	 * types it knows for the host, so a host known by its ecdsa key is
	 * not reported as changed because it prefers ed25519. */
	if (knownhosts_lookup(ctx->kh, host, port, &hits, err) < 0)
		goto out;
	hostkey_pref(knownhosts_hits_key_types(hits), hostkeys,
	             sizeof(hostkeys));

	if (net_connect(host, port, connect_deadline, &s->fd, err) < 0)
		goto out;
	s->session = libssh2_session_init_ex(NULL, NULL, NULL, s);
	if (s->session == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "ssh: cannot create session");
		goto out;
	}
	libssh2_session_set_blocking(s->session, 0);
	if (set_methods(s, hostkeys, err) < 0)
		goto out;
	while ((r = libssh2_session_handshake(s->session, s->fd)) ==
	       LIBSSH2_ERROR_EAGAIN)
		if (ssh_wait(s, connect_deadline, t0, what, err) < 0)
			goto out;
	if (r == LIBSSH2_ERROR_KEX_FAILURE &&
	    strstr(hostkeys, "ed25519") == NULL &&
	    strstr(hostkeys, "ecdsa") == NULL) {
		s->broken = true;
		/* Usually an RSA-only entry: libssh2 1.10 verifies RSA host
		 * keys only as SHA-1 "ssh-rsa", which OpenSSH 8.8+ no longer
		 * offers. */
		cf_err_set(
		    err, CF_ERR_SSH,
		    "%s failed: no algorithm in common (%s); known_hosts "
		    "holds %s for it, of which libssh2 1.10 can use %s (RSA "
		    "only as SHA-1 ssh-rsa): add the host's ed25519 or "
		    "ecdsa key",
		    what, ssh_errmsg(s->session),
		    knownhosts_hits_key_types(hits), hostkeys);
		goto out;
	}
	if (r < 0) {
		ssh_fail(s, r, what, err);
		goto out;
	}
	if (check_hostkey(s, ctx, hits, err) < 0)
		goto out;
	if (authenticate(s, ctx, user, op_deadline, err) < 0)
		goto out;
	*out = s;
	s = NULL;
	rc = 0;
out:
	knownhosts_hits_free(hits);
	ssh_close(s);
	return rc;
}

void
ssh_set_deadline(cf_ssh_t *s, int64_t deadline)
{
	s->deadline = deadline;
}

/* ---- close ----------------------------------------------------------- */

/* During teardown: wait for the socket, but past the grace deadline shut
 * the socket down so libssh2's pending sends and reads fail at once
 * instead of returning EAGAIN.  false = give up (leak rather than hang). */
static bool
close_wait(cf_ssh_t *s, int64_t deadline, int *spins)
{
	int dirs;
	short ev = 0;

	if (!s->broken) {
		dirs = libssh2_session_block_directions(s->session);
		if (dirs & LIBSSH2_SESSION_BLOCK_INBOUND)
			ev |= POLLIN;
		if (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND)
			ev |= POLLOUT;
		if (net_wait(s->fd, ev ? ev : POLLIN, deadline) > 0)
			return true;
		s->broken = true;
	}
	/* shutdown, not close: the descriptor number stays ours, so libssh2
	 * cannot write into a socket another thread has just opened. */
	(void)shutdown(s->fd, SHUT_RDWR);
	return ++*spins < 100;
}

void
ssh_close(cf_ssh_t *s)
{
	int64_t deadline = cf_now_ms() + CLOSE_GRACE_MS;
	int spins = 0;

	if (s == NULL)
		return;
	if (s->session != NULL) {
		/* After a host key failure nothing may reach the host; after an
		 * abandoned call nothing can be sent in step. */
		if (s->broken || s->untrusted) {
			(void)shutdown(s->fd, SHUT_RDWR);
			s->broken = true;
		}
		while (s->sftp != NULL &&
		       libssh2_sftp_shutdown(s->sftp) == LIBSSH2_ERROR_EAGAIN)
			if (!close_wait(s, deadline, &spins))
				break;
		s->sftp = NULL;
		if (!s->broken)
			while (libssh2_session_disconnect(s->session,
			                                  "certfleet done") ==
			       LIBSSH2_ERROR_EAGAIN)
				if (!close_wait(s, deadline, &spins))
					break;
		while (libssh2_session_free(s->session) == LIBSSH2_ERROR_EAGAIN)
			if (!close_wait(s, deadline, &spins))
				break;
	}
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

/* ---- SFTP ------------------------------------------------------------ */

static const char *
sftp_status_str(unsigned long st)
{
	switch (st) {
	case LIBSSH2_FX_EOF: return "end of file";
	case LIBSSH2_FX_NO_SUCH_FILE: return "no such file or directory";
	case LIBSSH2_FX_PERMISSION_DENIED: return "permission denied";
	case LIBSSH2_FX_FAILURE: return "failure";
	case LIBSSH2_FX_BAD_MESSAGE: return "bad message (invalid name?)";
	case LIBSSH2_FX_NO_CONNECTION:
	case LIBSSH2_FX_CONNECTION_LOST: return "connection lost";
	case LIBSSH2_FX_OP_UNSUPPORTED:
		return "operation not supported by the server";
	case LIBSSH2_FX_INVALID_HANDLE: return "invalid handle";
	case LIBSSH2_FX_NO_SUCH_PATH: return "no such path";
	case LIBSSH2_FX_FILE_ALREADY_EXISTS: return "file already exists";
	case LIBSSH2_FX_WRITE_PROTECT: return "read-only file system";
	case LIBSSH2_FX_NO_MEDIA: return "no media";
	case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM:
		return "no space left on device";
	case LIBSSH2_FX_QUOTA_EXCEEDED: return "quota exceeded";
	case LIBSSH2_FX_NOT_A_DIRECTORY: return "not a directory";
	case LIBSSH2_FX_INVALID_FILENAME: return "invalid file name";
	case LIBSSH2_FX_LINK_LOOP: return "too many symbolic links";
	default: return "unknown SFTP status";
	}
}

/* The SFTP status of a failed call, or -1 if the failure was not an SFTP
 * status (then the transport is at fault and the session is broken). */
static long
sftp_status(cf_ssh_t *s, int rc)
{
	if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL && s->sftp != NULL)
		return (long)libssh2_sftp_last_error(s->sftp);
	return -1;
}

/* Fill err for a failed SFTP call on path ("write of PATH ..."); returns
 * -1.  writing: a bare SSH_FX_FAILURE most likely means a full disk. */
static int
sftp_error(cf_ssh_t *s, int rc, const char *op, const char *path, bool writing,
           cf_err_t *err)
{
	long st = sftp_status(s, rc);

	if (st < 0) {
		char what[CF_ERR_MSG_MAX / 2];

		snprintf(what, sizeof(what), "%s %s", op, path);
		return ssh_fail(s, rc, what, err);
	}
	/* OpenSSH's sftp-server speaks protocol v3, which has no ENOSPC
	 * code: a full disk arrives as plain SSH_FX_FAILURE. */
	if (st == (long)LIBSSH2_FX_FAILURE && writing)
		return cf_err_set(err, CF_ERR_WRITE,
		                  "%s %s failed (disk full?)", op, path);
	return cf_err_set(err, CF_ERR_WRITE, "%s %s: %s", op, path,
	                  sftp_status_str((unsigned long)st));
}

static int
sftp_ensure(cf_ssh_t *s, int64_t t0, const char *what, cf_err_t *err)
{
	int r;

	while (s->sftp == NULL) {
		s->sftp = libssh2_sftp_init(s->session);
		if (s->sftp != NULL)
			break;
		r = libssh2_session_last_errno(s->session);
		if (r != LIBSSH2_ERROR_EAGAIN) {
			s->broken = true;
			return cf_err_set(err, CF_ERR_SSH,
			                  "%s: cannot start SFTP on %s:%u: %s",
			                  what, s->host, s->port,
			                  ssh_errmsg(s->session));
		}
		if (ssh_wait(s, s->deadline, t0, what, err) < 0)
			return -1;
	}
	return 0;
}

/* Why an exclusive create failed with a bare SSH_FX_FAILURE: OpenSSH maps
 * EEXIST to it, so look at what is there (without following it). */
static int
explain_create_failure(cf_ssh_t *s, const char *path, int64_t t0,
                       const char *what, cf_err_t *err)
{
	LIBSSH2_SFTP_ATTRIBUTES a;
	int r;

	memset(&a, 0, sizeof(a));
	while ((r = libssh2_sftp_stat_ex(s->sftp, path, strlen(path),
	                                 LIBSSH2_SFTP_LSTAT, &a)) ==
	       LIBSSH2_ERROR_EAGAIN)
		if (ssh_wait(s, s->deadline, t0, what, err) < 0)
			return -1;
	if (r < 0) {
		if (sftp_status(s, r) < 0)
			return ssh_fail(s, r, what, err);
		return cf_err_set(err, CF_ERR_WRITE,
		                  "cannot create %s: failure (file system full "
		                  "or "
		                  "read-only?)",
		                  path);
	}
	if ((a.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) &&
	    LIBSSH2_SFTP_S_ISLNK(a.permissions))
		return cf_err_set(err, CF_ERR_WRITE,
		                  "cannot create %s: a symlink is there (not "
		                  "followed)",
		                  path);
	if ((a.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) &&
	    !LIBSSH2_SFTP_S_ISREG(a.permissions))
		return cf_err_set(err, CF_ERR_WRITE,
		                  "cannot create %s: something other than a "
		                  "file "
		                  "is there",
		                  path);
	return cf_err_set(err, CF_ERR_WRITE, "cannot create %s: file exists",
	                  path);
}

/* Best effort after a failed upload: the session must still be in step,
 * and cleanup errors are not the operator's first cause. */
static void
sftp_unlink_quiet(cf_ssh_t *s, const char *path, int64_t t0)
{
	cf_err_t ignored;
	int r;

	while ((r = libssh2_sftp_unlink_ex(s->sftp, path, strlen(path))) ==
	       LIBSSH2_ERROR_EAGAIN)
		if (ssh_wait(s, s->deadline, t0, "cleanup", &ignored) < 0)
			return;
	if (r < 0 && sftp_status(s, r) < 0)
		s->broken = true;
}

int
ssh_upload(cf_ssh_t *s, const char *remote_path, const void *data, size_t len,
           unsigned mode, cf_err_t *err)
{
	LIBSSH2_SFTP_HANDLE *fh = NULL;
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	char what[CF_ERR_MSG_MAX / 2];
	const char *p = data;
	size_t off = 0;
	ssize_t n;
	int64_t t0 = cf_now_ms();
	long st;
	int r, rc = -1;
	bool created = false;

	if (ssh_usable(s, err) < 0)
		return -1;
	snprintf(what, sizeof(what), "upload of %s", remote_path);
	if (sftp_ensure(s, t0, what, err) < 0)
		goto out;
	/* O_EXCL: an existing file or symlink is an error, never followed;
	 * the mode applies from the first byte (minus the server's umask,
	 * which can only remove bits; fsetstat below restores them). */
	while (
	    (fh =
	         libssh2_sftp_open_ex(s->sftp, remote_path, strlen(remote_path),
	                              LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT |
	                                  LIBSSH2_FXF_EXCL,
	                              (long)(mode & 0777),
	                              LIBSSH2_SFTP_OPENFILE)) == NULL) {
		r = libssh2_session_last_errno(s->session);
		if (r != LIBSSH2_ERROR_EAGAIN) {
			st = sftp_status(s, r);
			if (st == (long)LIBSSH2_FX_FAILURE)
				explain_create_failure(s, remote_path, t0, what,
				                       err);
			else if (st == (long)LIBSSH2_FX_NO_SUCH_FILE)
				cf_err_set(err, CF_ERR_WRITE,
				           "cannot create %s: directory does "
				           "not exist",
				           remote_path);
			else
				sftp_error(s, r, "cannot create", remote_path,
				           false, err);
			goto out;
		}
		if (ssh_wait(s, s->deadline, t0, what, err) < 0)
			goto out;
	}
	created = true;
	while (off < len) {
		n = libssh2_sftp_write(fh, p + off, len - off);
		if (n == LIBSSH2_ERROR_EAGAIN) {
			if (ssh_wait(s, s->deadline, t0, what, err) < 0)
				goto out;
			continue;
		}
		if (n < 0) {
			sftp_error(s, (int)n, "write of", remote_path, true,
			           err);
			goto out;
		}
		off += (size_t)n;
	}
	memset(&attrs, 0, sizeof(attrs));
	attrs.flags = LIBSSH2_SFTP_ATTR_PERMISSIONS;
	attrs.permissions = mode & 07777;
	while ((r = libssh2_sftp_fsetstat(fh, &attrs)) == LIBSSH2_ERROR_EAGAIN)
		if (ssh_wait(s, s->deadline, t0, what, err) < 0)
			goto out;
	if (r < 0) {
		sftp_error(s, r, "chmod of", remote_path, true, err);
		goto out;
	}
	/* Delayed allocation can report a full disk only here. A server
	 * without fsync@openssh.com gets no fsync rather than no upload. */
	while ((r = libssh2_sftp_fsync(fh)) == LIBSSH2_ERROR_EAGAIN)
		if (ssh_wait(s, s->deadline, t0, what, err) < 0)
			goto out;
	if (r < 0 && sftp_status(s, r) != (long)LIBSSH2_FX_OP_UNSUPPORTED) {
		sftp_error(s, r, "fsync of", remote_path, true, err);
		goto out;
	}
	while ((r = libssh2_sftp_close_handle(fh)) == LIBSSH2_ERROR_EAGAIN)
		if (ssh_wait(s, s->deadline, t0, what, err) < 0)
			goto out;
	fh = NULL;
	if (r < 0) {
		sftp_error(s, r, "close of", remote_path, true, err);
		goto out;
	}
	rc = 0;
out:
	if (fh != NULL && !s->broken)
		while (libssh2_sftp_close_handle(fh) == LIBSSH2_ERROR_EAGAIN) {
			cf_err_t ignored;

			if (ssh_wait(s, s->deadline, t0, what, &ignored) < 0)
				break;
		}
	if (rc < 0 && created && !s->broken)
		sftp_unlink_quiet(s, remote_path, t0);
	return rc;
}

int
ssh_remove(cf_ssh_t *s, const char *remote_path, cf_err_t *err)
{
	char what[CF_ERR_MSG_MAX / 2];
	int64_t t0 = cf_now_ms();
	int r;

	if (ssh_usable(s, err) < 0)
		return -1;
	snprintf(what, sizeof(what), "removal of %s", remote_path);
	if (sftp_ensure(s, t0, what, err) < 0)
		return -1;
	while ((r = libssh2_sftp_unlink_ex(s->sftp, remote_path,
	                                   strlen(remote_path))) ==
	       LIBSSH2_ERROR_EAGAIN)
		if (ssh_wait(s, s->deadline, t0, what, err) < 0)
			return -1;
	if (r < 0 && sftp_status(s, r) == (long)LIBSSH2_FX_NO_SUCH_FILE)
		return 0;
	if (r < 0)
		return sftp_error(s, r, "cannot remove", remote_path, false,
		                  err);
	return 0;
}

/* ---- exec ------------------------------------------------------------ */

/* RFC 4254 6.10 signal names (without "SIG") to Linux numbers. */
static int
signal_number(const char *name)
{
	static const struct {
		const char *name;
		int num;
	} sigs[] = {
	    {"ABRT", 6},  {"ALRM", 14}, {"FPE", 8},   {"HUP", 1},  {"ILL", 4},
	    {"INT", 2},   {"KILL", 9},  {"PIPE", 13}, {"QUIT", 3}, {"SEGV", 11},
	    {"TERM", 15}, {"USR1", 10}, {"USR2", 12}, {"BUS", 7},  {"SYS", 31},
	    {"TRAP", 5},  {"XCPU", 24}, {"XFSZ", 25},
	};
	size_t i;

	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (strcmp(sigs[i].name, name) == 0)
			return sigs[i].num;
	return 127; /* unknown name: still reported as killed (255) */
}

/* One remote command in progress: its session, what messages call it,
 * when it started (for "timed out after"). */
struct exec_ctx {
	cf_ssh_t *s;
	const char *what;
	int64_t t0;
};

static int
exec_wait(const struct exec_ctx *x, cf_err_t *err)
{
	return ssh_wait(x->s, x->s->deadline, x->t0, x->what, err);
}

/* Open a channel, merge its stderr into stdout, start the command. */
static int
exec_start(const struct exec_ctx *x, const char *command, LIBSSH2_CHANNEL **out,
           cf_err_t *err)
{
	cf_ssh_t *s = x->s;
	LIBSSH2_CHANNEL *ch;
	int r;

	while ((ch = libssh2_channel_open_session(s->session)) == NULL) {
		r = libssh2_session_last_errno(s->session);
		if (r != LIBSSH2_ERROR_EAGAIN)
			return ssh_fail(s, r, x->what, err);
		if (exec_wait(x, err) < 0)
			return -1;
	}
	*out = ch; /* freed by the caller from here on */
	/* stderr into the same stream, in arrival order, so the operator sees
	 * nginx -t's complaint where it happened. */
	while ((r = libssh2_channel_handle_extended_data2(
	            ch, LIBSSH2_CHANNEL_EXTENDED_DATA_MERGE)) ==
	       LIBSSH2_ERROR_EAGAIN)
		if (exec_wait(x, err) < 0)
			return -1;
	while ((r = libssh2_channel_exec(ch, command)) == LIBSSH2_ERROR_EAGAIN)
		if (exec_wait(x, err) < 0)
			return -1;
	if (r == LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED)
		return cf_err_set(err, CF_ERR_SSH,
		                  "%s: %s:%u refused to run it", x->what,
		                  s->host, s->port);
	if (r < 0)
		return ssh_fail(s, r, x->what, err);
	return 0;
}

/* All of stdin, then EOF.  All of it first, then read: libssh2 refuses a
 * new packet while another call's packet is half-sent
 * (LIBSSH2_ERROR_BAD_USE), and output waits in libssh2's buffers
 * meanwhile.  The cost: a command that exits without reading more stdin
 * than the server's channel window (2 MiB for OpenSSH) holds ends at the
 * deadline. */
/* All of in[0..len) on the channel.  1 = the peer closed the channel
 * before taking it all (not a transport failure: for a command, its exit
 * status tells the story). */
static int
chan_write_all(const struct exec_ctx *x, LIBSSH2_CHANNEL *ch, const char *in,
               size_t len, cf_err_t *err)
{
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		n = libssh2_channel_write(ch, in + off, len - off);
		if (n == LIBSSH2_ERROR_EAGAIN) {
			if (exec_wait(x, err) < 0)
				return -1;
			continue;
		}
		if (n == LIBSSH2_ERROR_CHANNEL_CLOSED ||
		    n == LIBSSH2_ERROR_CHANNEL_EOF_SENT)
			return 1;
		if (n < 0)
			return ssh_fail(x->s, (int)n, x->what, err);
		off += (size_t)n;
	}
	return 0;
}

static int
exec_send_stdin(const struct exec_ctx *x, LIBSSH2_CHANNEL *ch, const char *in,
                size_t len, cf_err_t *err)
{
	int r;

	if (chan_write_all(x, ch, in, len, err) < 0)
		return -1;
	while ((r = libssh2_channel_send_eof(ch)) == LIBSSH2_ERROR_EAGAIN)
		if (exec_wait(x, err) < 0)
			return -1;
	/* The command may have exited without reading its stdin: the server
	 * then rejects our EOF on a closed channel, which is no failure. */
	if (r < 0 && r != LIBSSH2_ERROR_CHANNEL_CLOSED &&
	    r != LIBSSH2_ERROR_CHANNEL_EOF_SENT)
		return ssh_fail(x->s, r, x->what, err);
	return 0;
}

/* Read to EOF, or (until non-NULL, ob non-NULL) until what was read ends
 * with `until`, keeping up to OUTPUT_MAX bytes in ob (none when ob is
 * NULL). */
static int
chan_read(const struct exec_ctx *x, LIBSSH2_CHANNEL *ch, cf_buf_t *ob,
          const char *until, cf_err_t *err)
{
	char buf[16384];
	ssize_t n;

	for (;;) {
		n = libssh2_channel_read(ch, buf, sizeof(buf));
		if (n == LIBSSH2_ERROR_EAGAIN) {
			if (until != NULL && ob != NULL &&
			    ob->len >= strlen(until) &&
			    strcmp(ob->data + ob->len - strlen(until), until) ==
			        0)
				return 0;
			if (exec_wait(x, err) < 0)
				return -1;
			continue;
		}
		if (n < 0)
			return ssh_fail(x->s, (int)n, x->what, err);
		if (n == 0) {
			if (libssh2_channel_eof(ch))
				return 0;
			if (until != NULL && ob != NULL &&
			    ob->len >= strlen(until) &&
			    strcmp(ob->data + ob->len - strlen(until), until) ==
			        0)
				return 0;
			if (cf_ms_left(x->s->deadline) == 0) {
				x->s->broken = true;
				return cf_err_set(err, CF_ERR_TIMEOUT,
				                  "%s timed out after %.1fs",
				                  x->what, secs_since(x->t0));
			}
			continue;
		}
		/* Past the cap keep reading and dropping, so the command is
		 * never blocked on a full window. */
		if (ob != NULL && ob->len < OUTPUT_MAX &&
		    cf_buf_append(ob, buf,
		                  (size_t)n < OUTPUT_MAX - ob->len
		                      ? (size_t)n
		                      : OUTPUT_MAX - ob->len) < 0)
			return cf_err_set(err, CF_ERR_NOMEM,
			                  "%s: out of memory", x->what);
	}
}

/* Read the output to EOF, keeping up to OUTPUT_MAX bytes in ob (none when
 * ob is NULL). */
static int
exec_read_output(const struct exec_ctx *x, LIBSSH2_CHANNEL *ch, cf_buf_t *ob,
                 cf_err_t *err)
{
	return chan_read(x, ch, ob, NULL, err);
}

/* Close the channel and wait for the server's close. */
static int
chan_close(const struct exec_ctx *x, LIBSSH2_CHANNEL *ch, cf_err_t *err)
{
	int r;

	while ((r = libssh2_channel_close(ch)) == LIBSSH2_ERROR_EAGAIN)
		if (exec_wait(x, err) < 0)
			return -1;
	while ((r = libssh2_channel_wait_closed(ch)) == LIBSSH2_ERROR_EAGAIN)
		if (exec_wait(x, err) < 0)
			return -1;
	if (r < 0)
		return ssh_fail(x->s, r, x->what, err);
	return 0;
}

/* Close the channel and wait for the server's close; the exit status,
 * 128 + the signal's number when a signal ended the command. */
static int
exec_close(const struct exec_ctx *x, LIBSSH2_CHANNEL *ch, int *status,
           cf_err_t *err)
{
	char *sig = NULL;
	size_t siglen = 0;

	if (chan_close(x, ch, err) < 0)
		return -1;
	*status = libssh2_channel_get_exit_status(ch);
	if (libssh2_channel_get_exit_signal(ch, &sig, &siglen, NULL, NULL, NULL,
	                                    NULL) == 0 &&
	    sig != NULL)
		*status = 128 + signal_number(sig);
	if (sig != NULL)
		libssh2_free(x->s->session, sig);
	return 0;
}

int
ssh_exec(cf_ssh_t *s, const char *command, const void *stdin_data,
         size_t stdin_len, int *exit_status, char **output, cf_err_t *err)
{
	LIBSSH2_CHANNEL *ch = NULL;
	cf_buf_t ob = {0};
	char what[CF_ERR_MSG_MAX / 2];
	struct exec_ctx x = {s, what, cf_now_ms()};
	int r, status = 0, rc = -1;

	if (ssh_usable(s, err) < 0)
		return -1;
	snprintf(what, sizeof(what), "remote command '%.80s%s'", command,
	         strlen(command) > 80 ? "..." : "");
	if (exec_start(&x, command, &ch, err) < 0 ||
	    exec_send_stdin(&x, ch, stdin_data, stdin_len, err) < 0 ||
	    exec_read_output(&x, ch, output != NULL ? &ob : NULL, err) < 0 ||
	    exec_close(&x, ch, &status, err) < 0)
		goto out;
	while ((r = libssh2_channel_free(ch)) == LIBSSH2_ERROR_EAGAIN)
		if (exec_wait(&x, err) < 0)
			goto out;
	ch = NULL;
	if (output != NULL) {
		if (ob.data == NULL && cf_buf_append(&ob, "", 0) < 0) {
			cf_err_set(err, CF_ERR_NOMEM, "%s: out of memory",
			           what);
			goto out;
		}
		*output = ob.data;
		ob.data = NULL;
	}
	*exit_status = status;
	rc = 0;
out:
	/* libssh2_session_free reclaims a channel we could not free here. */
	if (ch != NULL && !s->broken)
		while (libssh2_channel_free(ch) == LIBSSH2_ERROR_EAGAIN) {
			cf_err_t ignored;

			if (exec_wait(&x, &ignored) < 0)
				break;
		}
	cf_buf_free(&ob);
	return rc;
}

/* ---- direct-tcpip ------------------------------------------------------ */

struct cf_ssh_tcpip {
	struct exec_ctx x;
	LIBSSH2_CHANNEL *ch;
	char what[HOST_MAX + 64];
};

int
ssh_tcpip_open(cf_ssh_t *s, const char *host, unsigned port,
               cf_ssh_tcpip_t **out, cf_err_t *err)
{
	cf_ssh_tcpip_t *c;
	int r;

	if (ssh_usable(s, err) < 0)
		return -1;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	snprintf(c->what, sizeof(c->what),
	         "%s:%u through the ssh session to %s", host, port, s->host);
	c->x.s = s;
	c->x.what = c->what;
	c->x.t0 = cf_now_ms();
	/* The originator address is informational (RFC 4254 7.2). */
	while ((c->ch =
	            libssh2_channel_direct_tcpip_ex(s->session, host, (int)port,
	                                            "127.0.0.1", 0)) == NULL) {
		r = libssh2_session_last_errno(s->session);
		/* The server said no (connect refused on its side,
		 * AllowTcpForwarding no, permitopen): the session itself is
		 * fine and stays usable, e.g. for a rollback. */
		if (r == LIBSSH2_ERROR_CHANNEL_FAILURE) {
			cf_err_set(err, CF_ERR_REFUSED,
			           "cannot reach %s: %s (is it "
			           "listening there, and does sshd allow TCP "
			           "forwarding?)",
			           c->what, ssh_errmsg(s->session));
			free(c);
			return -1;
		}
		if (r != LIBSSH2_ERROR_EAGAIN) {
			ssh_fail(s, r, c->what, err);
			free(c);
			return -1;
		}
		if (exec_wait(&c->x, err) < 0) {
			free(c);
			return -1;
		}
	}
	*out = c;
	return 0;
}

int
ssh_tcpip_send(cf_ssh_tcpip_t *c, const void *data, size_t len, cf_err_t *err)
{
	int r;

	if (ssh_usable(c->x.s, err) < 0)
		return -1;
	r = chan_write_all(&c->x, c->ch, data, len, err);
	if (r > 0)
		return cf_err_set(err, CF_ERR_SSH, "%s: closed by the peer",
		                  c->what);
	return r;
}

int
ssh_tcpip_recv(cf_ssh_tcpip_t *c, const char *until, char **out, cf_err_t *err)
{
	cf_buf_t ob = {0};

	if (ssh_usable(c->x.s, err) < 0)
		return -1;
	if (chan_read(&c->x, c->ch, &ob, until, err) < 0) {
		cf_buf_free(&ob);
		return -1;
	}
	if (ob.data == NULL && cf_buf_append(&ob, "", 0) < 0)
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	*out = ob.data;
	return 0;
}

void
ssh_tcpip_close(cf_ssh_tcpip_t *c)
{
	cf_err_t ignored;

	if (c == NULL)
		return;
	/* libssh2_session_free reclaims a channel we could not free here. */
	if (!c->x.s->broken && chan_close(&c->x, c->ch, &ignored) == 0)
		while (libssh2_channel_free(c->ch) == LIBSSH2_ERROR_EAGAIN)
			if (exec_wait(&c->x, &ignored) < 0)
				break;
	free(c);
}

/* ---- download -------------------------------------------------------- */

int
ssh_download(cf_ssh_t *s, const char *remote_path, size_t max, char **out,
             size_t *out_len, cf_err_t *err)
{
	LIBSSH2_SFTP_HANDLE *fh = NULL;
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	char what[CF_ERR_MSG_MAX / 2], *buf = NULL;
	size_t size = 0, off = 0;
	ssize_t n;
	int64_t t0 = cf_now_ms();
	int r, rc = -1;

	if (ssh_usable(s, err) < 0)
		return -1;
	snprintf(what, sizeof(what), "download of %s", remote_path);
	if (sftp_ensure(s, t0, what, err) < 0)
		goto out;
	while ((fh = libssh2_sftp_open_ex(s->sftp, remote_path,
	                                  strlen(remote_path), LIBSSH2_FXF_READ,
	                                  0, LIBSSH2_SFTP_OPENFILE)) == NULL) {
		r = libssh2_session_last_errno(s->session);
		if (r != LIBSSH2_ERROR_EAGAIN) {
			sftp_error(s, r, "cannot open", remote_path, false,
			           err);
			goto out;
		}
		if (ssh_wait(s, s->deadline, t0, what, err) < 0)
			goto out;
	}
	while ((r = libssh2_sftp_fstat_ex(fh, &attrs, 0)) ==
	       LIBSSH2_ERROR_EAGAIN)
		if (ssh_wait(s, s->deadline, t0, what, err) < 0)
			goto out;
	if (r < 0) {
		sftp_error(s, r, "stat of", remote_path, false, err);
		goto out;
	}
	if (!(attrs.flags & LIBSSH2_SFTP_ATTR_SIZE) || attrs.filesize > max) {
		cf_err_set(err, CF_ERR_WRITE,
		           "%s: no size, or larger than %zu "
		           "bytes",
		           remote_path, max);
		goto out;
	}
	/* One buffer of the file's size: the bytes may be a key, and a
	 * growing buffer would leave copies behind in freed memory. */
	size = (size_t)attrs.filesize;
	if ((buf = malloc(size + 1)) == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	while (off < size) {
		n = libssh2_sftp_read(fh, buf + off, size - off);
		if (n == LIBSSH2_ERROR_EAGAIN) {
			if (ssh_wait(s, s->deadline, t0, what, err) < 0)
				goto out;
			continue;
		}
		if (n < 0) {
			sftp_error(s, (int)n, "read of", remote_path, false,
			           err);
			goto out;
		}
		if (n == 0)
			break; /* shrank meanwhile: what is there */
		off += (size_t)n;
	}
	buf[off] = '\0';
	*out = buf;
	*out_len = off;
	buf = NULL;
	rc = 0;
out:
	if (fh != NULL && !s->broken)
		while (libssh2_sftp_close_handle(fh) == LIBSSH2_ERROR_EAGAIN) {
			cf_err_t ignored;

			if (ssh_wait(s, s->deadline, t0, what, &ignored) < 0)
				break;
		}
	if (buf != NULL)
		cf_free_secret(buf, size + 1);
	return rc;
}
