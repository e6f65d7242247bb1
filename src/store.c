/* store.c - the coordinator's state directory (layout in store.h).
 *
 * Crash safety rests on two renames: a version directory is assembled under
 * a temporary name and renamed into place complete, and `current` is
 * replaced atomically only after that.  A run killed at any instant leaves
 * either the old `current` or the new one, each naming a whole version. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "certfleet/store.h"
#include "certfleet/util.h"

#define STATE_FORMAT_VERSION 1
#define VERSION_ID_LEN 25     /* 20261125T064359Z-0123abcd */
#define MAX_PEM (1024 * 1024) /* a chain is a few KiB; cap hostile input */
#define MAX_STATE_JSON (64 * 1024 * 1024)
#define LOCK_POLL_MS 100
/* store_check_writable's test write: more than a version's four PEM files
 * (a 4096-bit RSA key and a long chain are ~12 KiB) */
#define STORE_PROBE_BYTES (32 * 1024)
#define KEEP_VERSIONS_DEFAULT 3

struct cf_store {
	char *root;     /* STATE */
	char *dir;      /* STATE/CERTNAME */
	char *versions; /* STATE/CERTNAME/versions */
	int lock_fd;    /* -1 until store_lock succeeds */
	bool readonly;  /* store_open_ro: never creates or writes anything */
	unsigned keep_versions; /* newest versions that keep their key */
};

static const char *const bundle_files[] = {
    "cert.pem",
    "chain.pem",
    "fullchain.pem",
    "privkey.pem",
};

static char *
path_join(const char *a, const char *b)
{
	char *p;

	if (asprintf(&p, "%s/%s", a, b) < 0)
		return NULL;
	return p;
}

static int
nomem(cf_err_t *err)
{
	return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
}

/* A read-only command reaching a write is a bug; fail it loudly rather
 * than change state behind "read-only" in the documentation. */
static int
check_writable(const cf_store_t *st, const char *what, cf_err_t *err)
{
	if (!st->readonly)
		return 0;
	return cf_err_set(err, CF_ERR_INTERNAL,
	                  "%s: store %s was opened "
	                  "read-only",
	                  what, st->dir);
}

/* Like mkdir, but an existing directory is fine.  Never chmods an existing
 * one: its mode is the operator's. */
static int
mkdir_private(const char *path, cf_err_t *err)
{
	struct stat sb;

	if (mkdir(path, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return cf_err_set(err, CF_ERR_IO, "mkdir %s: %s", path,
		                  strerror(errno));
	if (stat(path, &sb) < 0)
		return cf_err_set(err, CF_ERR_IO, "%s: %s", path,
		                  strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return cf_err_set(err, CF_ERR_IO,
		                  "%s: exists and is not a directory", path);
	return 0;
}

static int
fsync_path(const char *path, cf_err_t *err)
{
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return cf_err_set(err, CF_ERR_IO, "%s: %s", path,
		                  strerror(errno));
	if (fsync(fd) < 0)
		rc = cf_err_set(err, CF_ERR_IO, "%s: fsync: %s", path,
		                strerror(errno));
	close(fd);
	return rc;
}

/* The state dir holds private keys: a directory others can enter is a
 * leak we refuse to run with rather than "fix" behind the operator's back
 * (someone chose that mode, and other files inside may already be exposed). */
static int
open_root(const char *root, cf_err_t *err)
{
	struct stat sb;

	if (stat(root, &sb) < 0) {
		if (errno != ENOENT)
			return cf_err_set(err, CF_ERR_IO, "state dir %s: %s",
			                  root, strerror(errno));
		if (cf_mkdirs(root, 0700, err) < 0)
			return -1;
		/* ours: the umask must not decide who can read keys */
		if (chmod(root, 0700) < 0)
			return cf_err_set(err, CF_ERR_IO, "chmod %s: %s", root,
			                  strerror(errno));
		return 0;
	}
	if (!S_ISDIR(sb.st_mode))
		return cf_err_set(err, CF_ERR_IO,
		                  "state dir %s: exists and is not a directory",
		                  root);
	if ((sb.st_mode & 077) != 0)
		return cf_err_set(err, CF_ERR_IO,
		                  "state dir %s is mode %04o: must not be "
		                  "accessible "
		                  "by others (chmod 700 %s)",
		                  root, (unsigned)(sb.st_mode & 07777), root);
	return 0;
}

static int
open_store(const char *state_dir, const char *cert_name, bool readonly,
           cf_store_t **out, cf_err_t *err)
{
	struct stat sb;
	cf_store_t *st = NULL;
	size_t len;
	int rc = -1;

	/* The playbook validates the charset; these names would also escape
	 * or collide with STATE/lock and STATE/accounts. */
	if (cert_name[0] == '\0' || strchr(cert_name, '/') != NULL ||
	    strcmp(cert_name, ".") == 0 || strcmp(cert_name, "..") == 0 ||
	    strcmp(cert_name, "lock") == 0 ||
	    strcmp(cert_name, "accounts") == 0)
		return cf_err_set(err, CF_ERR_CONFIG,
		                  "certificate name '%s' cannot be used as a "
		                  "state "
		                  "directory name",
		                  cert_name);
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return nomem(err);
	st->lock_fd = -1;
	st->readonly = readonly;
	st->keep_versions = KEEP_VERSIONS_DEFAULT;
	st->root = strdup(state_dir);
	if (st->root == NULL) {
		nomem(err);
		goto out;
	}
	/* "state/" and "state" are one dir; keep messages and paths tidy */
	len = strlen(st->root);
	while (len > 1 && st->root[len - 1] == '/')
		st->root[--len] = '\0';
	st->dir = path_join(st->root, cert_name);
	st->versions = st->dir ? path_join(st->dir, "versions") : NULL;
	if (st->dir == NULL || st->versions == NULL) {
		nomem(err);
		goto out;
	}
	if (readonly) {
		/* a missing state dir is an empty store: every reader finds
		 * no file and says "none yet" */
		if (stat(st->root, &sb) == 0 && open_root(st->root, err) < 0)
			goto out;
	} else if (open_root(st->root, err) < 0 ||
	           mkdir_private(st->dir, err) < 0 ||
	           mkdir_private(st->versions, err) < 0) {
		goto out;
	}
	*out = st;
	st = NULL;
	rc = 0;
out:
	store_close(st);
	return rc;
}

int
store_open(const char *state_dir, const char *cert_name, cf_store_t **out,
           cf_err_t *err)
{
	return open_store(state_dir, cert_name, false, out, err);
}

int
store_open_ro(const char *state_dir, const char *cert_name, cf_store_t **out,
              cf_err_t *err)
{
	return open_store(state_dir, cert_name, true, out, err);
}

void
store_close(cf_store_t *st)
{
	if (st == NULL)
		return;
	if (st->lock_fd >= 0)
		close(st->lock_fd); /* releases the flock */
	free(st->root);
	free(st->dir);
	free(st->versions);
	free(st);
}

const char *
store_dir(const cf_store_t *st)
{
	return st->dir;
}

const char *
store_root(const cf_store_t *st)
{
	return st->root;
}

/* ---- run lock ---------------------------------------------------------- */

/* Describe the holder from its line "pid=N host=H since=ISO cmd=WHAT". */
static void
describe_holder(int fd, char *out, size_t outlen)
{
	char line[512], pid[32] = "", host[256] = "", since[64] = "";
	const char *cmd = NULL;
	ssize_t n;
	char *nl;

	n = pread(fd, line, sizeof(line) - 1, 0);
	if (n <= 0) {
		/* the holder has not written its line yet (or could not) */
		snprintf(out, outlen, "another run");
		return;
	}
	line[n] = '\0';
	if ((nl = strchr(line, '\n')) != NULL)
		*nl = '\0';
	if (sscanf(line, "pid=%31s host=%255s since=%63s", pid, host, since) !=
	    3) {
		snprintf(out, outlen, "another run");
		return;
	}
	cmd = strstr(line, " cmd=");
	snprintf(out, outlen, "pid %s on %s since %s (%s)", pid, host, since,
	         cmd != NULL ? cmd + 5 : "?");
}

static void
write_holder(int fd, const char *what)
{
	char host[256], since[32], line[600];
	int n;

	if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';
	cf_fmt_time(cf_wall_now(), since, sizeof(since));
	n = snprintf(line, sizeof(line), "pid=%ld host=%s since=%s cmd=%s\n",
	             (long)getpid(), host, since, what ? what : "?");
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	/* The line only tells a waiting operator who holds the lock; the flock
	 * is the lock.  Failing to write it (disk full) must not fail the run. */
	if (ftruncate(fd, 0) == 0 && pwrite(fd, line, (size_t)n, 0) < 0)
		(void)ftruncate(fd, 0);
}

/* cf_write_atomic's temp files ("nodes.json.tmp.XXXXXX") outlive a run
 * killed mid-write.  Only the lock holder writes here, so once we hold it
 * any such file is garbage.  Best effort: they are harmless but clutter. */
static void
remove_stale_temps(cf_store_t *st)
{
	static const char *const names[] = {"current.tmp.", "nodes.json.tmp.",
	                                    "renewal.json.tmp."};
	struct dirent *de;
	DIR *d;
	size_t i;
	int dfd;

	d = opendir(st->dir);
	if (d == NULL)
		return;
	dfd = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			if (strncmp(de->d_name, names[i], strlen(names[i])) ==
			        0 &&
			    strlen(de->d_name) == strlen(names[i]) + 6) {
				(void)unlinkat(dfd, de->d_name, 0);
				break;
			}
		}
	}
	closedir(d);
}

void
store_lock_holder(const cf_store_t *st, char *out, size_t outlen)
{
	char *path = path_join(st->root, "lock");
	int fd =
	    path != NULL ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;

	if (fd < 0) {
		snprintf(out, outlen, "another run");
	} else {
		describe_holder(fd, out, outlen);
		close(fd);
	}
	free(path);
}

int
store_lock(cf_store_t *st, const char *what, int wait_s, cf_err_t *err)
{
	char *path = NULL, holder[700];
	int64_t deadline = 0;
	int fd = -1, rc = -1, r;

	if (st->lock_fd >= 0)
		return 0;
	/* A read-only store may hold the lock to keep runs out while it
	 * writes something outside the state dir (the metrics file), but
	 * changes nothing in it: no lock file created, no holder line.  No
	 * lock file means no run ever used this state dir. */
	if (!st->readonly && check_writable(st, "lock", err) < 0)
		return -1;
	path = path_join(st->root, "lock");
	if (path == NULL)
		return nomem(err);
	fd = st->readonly
	         ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
	         : open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && st->readonly && errno == ENOENT) {
		rc = 0;
		goto out;
	}
	if (fd < 0) {
		cf_err_set(err, CF_ERR_IO, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (wait_s > 0)
		deadline = cf_now_ms() + (int64_t)wait_s * 1000;
	for (;;) {
		r = flock(fd, wait_s < 0 ? LOCK_EX : LOCK_EX | LOCK_NB);
		if (r == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK) {
			cf_err_set(err, CF_ERR_IO, "%s: flock: %s", path,
			           strerror(errno));
			goto out;
		}
		if (wait_s == 0 || cf_ms_left(deadline) == 0) {
			describe_holder(fd, holder, sizeof(holder));
			if (wait_s == 0)
				cf_err_set(err, CF_ERR_LOCKED,
				           "state dir %s is locked by %s",
				           st->root, holder);
			else
				cf_err_set(err, CF_ERR_LOCKED,
				           "state dir %s is locked by %s; "
				           "still locked "
				           "after %d s",
				           st->root, holder, wait_s);
			goto out;
		}
		int64_t ms = cf_ms_left(deadline);
		if (ms > LOCK_POLL_MS)
			ms = LOCK_POLL_MS;
		struct timespec ts = {0, (long)ms * 1000000L};
		nanosleep(&ts, NULL);
	}
	/* a killed holder's line is still there: ours replaces it */
	if (!st->readonly) {
		write_holder(fd, what);
		remove_stale_temps(st);
	}
	st->lock_fd = fd;
	fd = -1;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}

/* ---- certificate versions ---------------------------------------------- */

static bool
is_version_id(const char *s)
{
	static const char shape[] = "DDDDDDDDTDDDDDDZ-";
	size_t i;

	if (strlen(s) != VERSION_ID_LEN)
		return false;
	for (i = 0; i < sizeof(shape) - 1; i++) {
		if (shape[i] == 'D' ? (s[i] < '0' || s[i] > '9')
		                    : s[i] != shape[i])
			return false;
	}
	for (; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* Id named by `current`: *id = NULL if there is none. */
static int
read_current_id(cf_store_t *st, char **id, cf_err_t *err)
{
	char *path = NULL, *data = NULL;
	struct stat sb;
	size_t len;
	int rc = -1;

	path = path_join(st->dir, "current");
	if (path == NULL)
		return nomem(err);
	if (lstat(path, &sb) < 0) {
		if (errno == ENOENT) {
			*id = NULL;
			rc = 0;
		} else {
			cf_err_set(err, CF_ERR_IO, "%s: %s", path,
			           strerror(errno));
		}
		goto out;
	}
	if (cf_read_file(path, 256, &data, &len, err) < 0) {
		if (err != NULL)
			err->code = CF_ERR_STATE;
		goto out;
	}
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == ' ' ||
	                   data[len - 1] == '\r' || data[len - 1] == '\t'))
		data[--len] = '\0';
	if (!is_version_id(data)) {
		cf_err_set(err, CF_ERR_STATE,
		           "%s: corrupt state file (not a version id); write "
		           "the id "
		           "of a directory in %s into it",
		           path, st->versions);
		goto out;
	}
	*id = data;
	data = NULL;
	rc = 0;
out:
	free(data);
	free(path);
	return rc;
}

/* versions/ID/revoked.json exists (revoke --reason keyCompromise). */
static bool
version_key_revoked(cf_store_t *st, const char *id)
{
	char *path = NULL;
	bool yes;

	if (asprintf(&path, "%s/%s/revoked.json", st->versions, id) < 0)
		return false;
	yes = access(path, F_OK) == 0;
	free(path);
	return yes;
}

/* Load versions/ID into b and info (either may be NULL; b == NULL reads
 * cert.pem alone, never the private key). Every failure is
 * CF_ERR_STATE naming the file: the store wrote it, so it is the store's
 * state that is broken, not the operator's input. */
static int
load_version(cf_store_t *st, const char *id, struct cf_bundle *b,
             struct cf_certinfo *info, cf_err_t *err)
{
	char *vdir = NULL, *path = NULL;
	char *data[4] = {NULL, NULL, NULL, NULL};
	size_t lens[4] = {0, 0, 0, 0};
	struct cf_certinfo ci = {0};
	struct stat sb;
	size_t i;
	int rc = -1;

	vdir = path_join(st->versions, id);
	if (vdir == NULL)
		return nomem(err);
	if (stat(vdir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		cf_err_set(err, CF_ERR_STATE,
		           "%s/current names version %s but %s is missing",
		           st->dir, id, vdir);
		goto out;
	}
	/* Without a bundle to fill, only cert.pem is read: status, verify
	 * and check run as a monitoring user who has no access to keys. */
	for (i = 0; i < (b != NULL ? 4u : 1u); i++) {
		free(path);
		path = path_join(vdir, bundle_files[i]);
		if (path == NULL) {
			nomem(err);
			goto out;
		}
		if (i == 3 && access(path, F_OK) < 0 && errno == ENOENT &&
		    version_key_revoked(st, id)) {
			/* revoke --reason keyCompromise wiped it: never deploy
			 * (or roll back to) a compromised key */
			cf_err_set(err, CF_ERR_STATE,
			           "version %s was revoked "
			           "(keyCompromise) and its key wiped: run "
			           "`renew "
			           "--force` (or deploy a new certificate)",
			           id);
			goto out;
		}
		if (cf_read_file(path, MAX_PEM, &data[i], &lens[i], err) < 0) {
			if (err != NULL)
				err->code = CF_ERR_STATE;
			cf_err_prefix(err, "version %s is unusable: ", id);
			goto out;
		}
	}
	if (crypto_certinfo_pem(data[0], lens[0], &ci, err) < 0) {
		if (err != NULL)
			err->code = CF_ERR_STATE;
		cf_err_prefix(err, "%s/cert.pem: ", vdir);
		goto out;
	}
	if (b != NULL) {
		/* What is about to be sent to every node must be what the store
		 * once accepted: the fullchain parses, its leaf is cert.pem's,
		 * the key matches.  A damaged version is refused here, not left
		 * to `nginx -t` on the canary.  (Expiry is not this check's
		 * business: `now` is set inside the validity window.) */
		struct cf_bundle chk = {0};
		struct cf_certinfo cci = {0};
		char *fpath = path_join(vdir, bundle_files[2]);
		char *kpath = path_join(vdir, bundle_files[3]);
		struct cf_bundle_labels labels = {fpath, NULL, kpath};
		int vrc;

		if (fpath == NULL || kpath == NULL) {
			free(fpath);
			free(kpath);
			nomem(err);
			goto out;
		}
		vrc = crypto_bundle_from_pem_labeled(data[2], NULL, data[3],
		                                     &labels, NULL, 0,
		                                     ci.not_before, &chk, &cci,
		                                     err);
		if (vrc == 0 && memcmp(cci.sha256, ci.sha256, 32) != 0) {
			cf_err_set(err, CF_ERR_STATE,
			           "%s: its leaf is not the "
			           "certificate in %s/cert.pem",
			           fpath, vdir);
			vrc = -1;
		}
		crypto_bundle_free(&chk);
		crypto_certinfo_free(&cci);
		free(fpath);
		free(kpath);
		if (vrc < 0) {
			if (err != NULL)
				err->code = CF_ERR_STATE;
			cf_err_prefix(err, "version %s is damaged: ", id);
			goto out;
		}
	}
	if (info != NULL) {
		*info = ci;
		memset(&ci, 0, sizeof(ci));
	}
	if (b != NULL) {
		b->cert = data[0];
		b->chain = data[1];
		b->fullchain = data[2];
		b->privkey = data[3];
		memset(data, 0, sizeof(data));
	}
	rc = 0;
out:
	crypto_certinfo_free(&ci);
	free(data[0]);
	free(data[1]);
	free(data[2]);
	cf_free_secret(data[3], lens[3]);
	free(path);
	free(vdir);
	return rc;
}

/* Leaf SHA-256 of versions/ID, if it is complete and parses. */
static bool
version_has_leaf(cf_store_t *st, const char *id, const unsigned char sha[32])
{
	struct cf_certinfo ci = {0};
	cf_err_t ignored;
	char *vdir, *path;
	bool same = false;
	size_t i;

	vdir = path_join(st->versions, id);
	if (vdir == NULL)
		return false;
	for (i = 0; i < 4; i++) {
		path = path_join(vdir, bundle_files[i]);
		if (path == NULL || access(path, R_OK) < 0) {
			free(path);
			goto out;
		}
		free(path);
	}
	if (load_version(st, id, NULL, &ci, &ignored) < 0)
		goto out;
	same = memcmp(ci.sha256, sha, 32) == 0;
	crypto_certinfo_free(&ci);
out:
	free(vdir);
	return same;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 ? -1 : 0;
}

static int
rm_tree(const char *path, cf_err_t *err)
{
	if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 &&
	    errno != ENOENT)
		return cf_err_set(err, CF_ERR_IO, "cannot remove %s: %s", path,
		                  strerror(errno));
	return 0;
}

/* Scan versions/: remove half-built versions a killed run left behind,
 * note the newest id (latest, "" if none) and, if `want` is set, find a
 * complete version holding that leaf (*found_id). */
static int
scan_versions(cf_store_t *st, const unsigned char *want, const char *want_hex8,
              char **found_id, char latest[VERSION_ID_LEN + 1], cf_err_t *err)
{
	DIR *d = NULL;
	struct dirent *de;
	char *path = NULL, *found = NULL;
	int rc = -1;

	latest[0] = '\0';
	d = opendir(st->versions);
	if (d == NULL)
		return cf_err_set(err, CF_ERR_IO, "%s: %s", st->versions,
		                  strerror(errno));
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (strstr(de->d_name, ".tmp") != NULL) {
			/* only we write here, under the run lock: nobody else is
			 * building this one */
			path = path_join(st->versions, de->d_name);
			if (path == NULL) {
				nomem(err);
				goto out;
			}
			if (rm_tree(path, err) < 0)
				goto out;
			free(path);
			path = NULL;
			continue;
		}
		if (is_version_id(de->d_name) && strcmp(de->d_name, latest) > 0)
			memcpy(latest, de->d_name, VERSION_ID_LEN + 1);
		if (want == NULL || found != NULL ||
		    !is_version_id(de->d_name) ||
		    strcmp(de->d_name + VERSION_ID_LEN - 8, want_hex8) != 0)
			continue;
		if (version_has_leaf(st, de->d_name, want)) {
			found = strdup(de->d_name);
			if (found == NULL) {
				nomem(err);
				goto out;
			}
		}
	}
	if (errno != 0) {
		cf_err_set(err, CF_ERR_IO, "%s: readdir: %s", st->versions,
		           strerror(errno));
		goto out;
	}
	if (found_id != NULL) {
		*found_id = found;
		found = NULL;
	}
	rc = 0;
out:
	free(found);
	free(path);
	closedir(d);
	return rc;
}

/* Write the four files into a temp dir, then rename it into place whole. */
static int
write_version(cf_store_t *st, const char *id, const struct cf_bundle *b,
              cf_err_t *err)
{
	const char *texts[4] = {b->cert, b->chain ? b->chain : "", b->fullchain,
	                        b->privkey};
	/* the key is 0600 from its first byte (cf_write_atomic) */
	static const unsigned modes[4] = {0644, 0644, 0644, 0600};
	char *tmp = NULL, *final = NULL, *path = NULL;
	struct stat sb;
	size_t i;
	int rc = -1;

	final = path_join(st->versions, id);
	if (final == NULL || asprintf(&tmp, "%s.tmpXXXXXX", final) < 0) {
		tmp = NULL;
		nomem(err);
		goto out;
	}
	if (lstat(final, &sb) == 0) {
		/* same second, same 32-bit prefix, different leaf */
		cf_err_set(err, CF_ERR_STATE,
		           "%s: exists and holds a different certificate",
		           final);
		goto out;
	}
	if (mkdtemp(tmp) == NULL) {
		cf_err_set(err, CF_ERR_IO, "cannot create %s: %s", tmp,
		           strerror(errno));
		free(tmp);
		tmp = NULL;
		goto out;
	}
	for (i = 0; i < 4; i++) {
		free(path);
		path = path_join(tmp, bundle_files[i]);
		if (path == NULL) {
			nomem(err);
			goto out;
		}
		if (cf_write_atomic(path, texts[i], strlen(texts[i]), modes[i],
		                    err) < 0)
			goto out;
	}
	if (chmod(tmp, 0700) < 0 || rename(tmp, final) < 0) {
		cf_err_set(err, CF_ERR_IO, "cannot rename %s to %s: %s", tmp,
		           final, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	if (fsync_path(st->versions, err) < 0)
		goto out;
	rc = 0;
out:
	if (tmp != NULL) {
		cf_err_t ignored;

		(void)rm_tree(tmp, &ignored);
	}
	free(path);
	free(tmp);
	free(final);
	return rc;
}

/* Overwrite a key file with zeros, sync, then unlink it.  Best effort
 * against reading it back off the disk (journals and SSD remapping may
 * keep copies); the point is that the state directory, or a backup of
 * it, no longer holds keys nobody will deploy again. */
static int
wipe_file(const char *path, cf_err_t *err)
{
	static const char zeros[4096];
	struct stat sb;
	off_t left;
	int fd, rc = -1;

	fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return cf_err_set(err, CF_ERR_IO, "cannot wipe %s: %s", path,
		                  strerror(errno));
	}
	if (fstat(fd, &sb) < 0) {
		cf_err_set(err, CF_ERR_IO, "%s: %s", path, strerror(errno));
		goto out;
	}
	for (left = S_ISREG(sb.st_mode) ? sb.st_size : 0; left > 0;) {
		size_t n =
		    left < (off_t)sizeof(zeros) ? (size_t)left : sizeof(zeros);
		ssize_t w = write(fd, zeros, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			cf_err_set(err, CF_ERR_IO, "cannot wipe %s: %s", path,
			           strerror(errno));
			goto out;
		}
		left -= w;
	}
	if (fsync(fd) < 0) {
		cf_err_set(err, CF_ERR_IO, "%s: fsync: %s", path,
		           strerror(errno));
		goto out;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		cf_err_set(err, CF_ERR_IO, "cannot remove %s: %s", path,
		           strerror(errno));
		goto out;
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

static int
cmp_id_desc(const void *a, const void *b)
{
	return strcmp(*(char *const *)b, *(char *const *)a);
}

/* Old keys do not pile up: only the newest keep_versions versions keep
 * their privkey.pem; older ones keep their certificates (history) and
 * lose the key (wiped).  The current version and the one before it (what
 * `rollback` deploys, see store_get_previous) always keep theirs, even
 * when `current` names an older version. */
static int
prune_old_keys(cf_store_t *st, const char *cur, cf_err_t *err)
{
	char **ids = NULL, *path = NULL;
	const char *prev = NULL;
	size_t n = 0, cap = 0, i;
	struct dirent *de;
	DIR *d;
	int rc = -1;

	d = opendir(st->versions);
	if (d == NULL)
		return cf_err_set(err, CF_ERR_IO, "%s: %s", st->versions,
		                  strerror(errno));
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (!is_version_id(de->d_name))
			continue;
		if (n == cap) {
			char **v;

			cap = cap ? cap * 2 : 16;
			v = realloc(ids, cap * sizeof(*ids));
			if (v == NULL) {
				nomem(err);
				goto out;
			}
			ids = v;
		}
		if ((ids[n] = strdup(de->d_name)) == NULL) {
			nomem(err);
			goto out;
		}
		n++;
	}
	if (errno != 0) {
		cf_err_set(err, CF_ERR_IO, "%s: readdir: %s", st->versions,
		           strerror(errno));
		goto out;
	}
	if (n <= st->keep_versions) {
		rc = 0;
		goto out;
	}
	qsort(ids, n, sizeof(*ids), cmp_id_desc);
	for (i = 0; i < n && prev == NULL; i++)
		if (strcmp(ids[i], cur) < 0)
			prev = ids[i];
	for (i = st->keep_versions; i < n; i++) {
		if (strcmp(ids[i], cur) == 0 ||
		    (prev != NULL && strcmp(ids[i], prev) == 0))
			continue;
		free(path);
		if (asprintf(&path, "%s/%s/%s", st->versions, ids[i],
		             bundle_files[3]) < 0) {
			path = NULL;
			nomem(err);
			goto out;
		}
		if (access(path, F_OK) < 0)
			continue;
		if (wipe_file(path, err) < 0)
			goto out;
		/* the unlink is durable before we report success */
		*strrchr(path, '/') = '\0';
		if (fsync_path(path, err) < 0)
			goto out;
	}
	rc = 0;
out:
	for (i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	free(path);
	closedir(d);
	return rc;
}

void
store_set_keep_versions(cf_store_t *st, unsigned n)
{
	/* rollback needs the previous version's key */
	st->keep_versions = n < 2 ? 2 : n;
}

static int
write_current(cf_store_t *st, const char *id, cf_err_t *err)
{
	char *path, line[VERSION_ID_LEN + 2];
	int rc;

	path = path_join(st->dir, "current");
	if (path == NULL)
		return nomem(err);
	snprintf(line, sizeof(line), "%s\n", id);
	rc = cf_write_atomic(path, line, strlen(line), 0644, err);
	free(path);
	return rc;
}

int
store_put_bundle(cf_store_t *st, const struct cf_bundle *b, char **version_out,
                 cf_err_t *err)
{
	struct cf_certinfo ci = {0};
	char *cur = NULL, *id = NULL, hex8[9], stamp[32];
	char latest[VERSION_ID_LEN + 1];
	struct tm tm;
	time_t now;
	int rc = -1;

	if (check_writable(st, "store_put_bundle", err) < 0)
		goto out;
	if (b->cert == NULL || b->fullchain == NULL || b->privkey == NULL) {
		cf_err_set(err, CF_ERR_INTERNAL,
		           "store_put_bundle: incomplete bundle");
		goto out;
	}
	if (crypto_certinfo_pem(b->cert, strlen(b->cert), &ci, err) < 0) {
		cf_err_prefix(err, "certificate to store: ");
		goto out;
	}
	memcpy(hex8, ci.sha256_hex, 8);
	hex8[8] = '\0';
	if (read_current_id(st, &cur, err) < 0)
		goto out;
	if (scan_versions(st, ci.sha256, hex8, &id, latest, err) < 0)
		goto out;
	/* Re-storing what is current (a re-run after a partial rollout) must
	 * not mint a version: rollback would then "roll back" to itself. */
	if (id != NULL && cur != NULL && strcmp(id, cur) == 0)
		goto done;
	if (id == NULL) {
		now = (time_t)cf_wall_now();
		/* Rollback picks the newest id older than current, so ids must
		 * grow in creation order even for two versions stored within one
		 * second or after the clock stepped back. */
		memset(&tm, 0, sizeof(tm));
		if (latest[0] != '\0' &&
		    strptime(latest, "%Y%m%dT%H%M%SZ", &tm) != NULL &&
		    timegm(&tm) >= now)
			now = timegm(&tm) + 1;
		if (gmtime_r(&now, &tm) == NULL ||
		    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) ==
		        0) {
			cf_err_set(err, CF_ERR_INTERNAL,
			           "cannot format the time");
			goto out;
		}
		if (asprintf(&id, "%s-%s", stamp, hex8) < 0) {
			id = NULL;
			nomem(err);
			goto out;
		}
		if (write_version(st, id, b, err) < 0) {
			cf_err_prefix(err,
			              "cannot store certificate version %s: ",
			              id);
			goto out;
		}
	}
	if (write_current(st, id, err) < 0)
		goto out;
done:
	if (prune_old_keys(st, id, err) < 0) {
		cf_err_prefix(err,
		              "stored version %s, but removing old keys "
		              "failed: ",
		              id);
		goto out;
	}
	if (version_out != NULL) {
		*version_out = id;
		id = NULL;
	}
	rc = 0;
out:
	crypto_certinfo_free(&ci);
	free(cur);
	free(id);
	return rc;
}

/* One test file of `len` bytes: created, written, fsynced, closed and
 * removed.  A full or read-only filesystem fails at one of these. */
static int
probe_file(const char *dir, char *tmpl, size_t len, cf_err_t *err)
{
	char buf[4096];
	size_t off = 0;
	ssize_t n;
	int fd, rc = -1;

	memset(buf, 'x', sizeof(buf));
	fd = mkostemp(tmpl, O_CLOEXEC);
	if (fd < 0)
		return cf_err_set(err, CF_ERR_IO,
		                  "cannot create a file in %s: %s", dir,
		                  strerror(errno));
	while (off < len) {
		size_t want = len - off < sizeof(buf) ? len - off : sizeof(buf);

		n = write(fd, buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			cf_err_set(err, CF_ERR_IO, "cannot write to %s: %s",
			           dir,
			           n < 0 ? strerror(errno) : "short write");
			goto out;
		}
		off += (size_t)n;
	}
	if (fsync(fd) < 0) {
		cf_err_set(err, CF_ERR_IO, "cannot write to %s: fsync: %s", dir,
		           strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (close(fd) < 0 && rc == 0)
		rc = cf_err_set(err, CF_ERR_IO, "cannot write to %s: close: %s",
		                dir, strerror(errno));
	(void)unlink(tmpl);
	return rc;
}

int
store_check_writable(cf_store_t *st, cf_err_t *err)
{
	char *dir = NULL, *file = NULL;
	int rc = -1;

	/* a version as store_put_bundle writes one: a temp directory in
	 * versions/ (swept as "*.tmp*" by the next scan if we die here) with
	 * a file the size of a bundle in it */
	if (asprintf(&dir, "%s/probe.tmpXXXXXX", st->versions) < 0) {
		dir = NULL;
		nomem(err);
		goto out;
	}
	if (mkdtemp(dir) == NULL) {
		cf_err_set(err, CF_ERR_IO,
		           "cannot create a directory in %s: %s", st->versions,
		           strerror(errno));
		free(dir);
		dir = NULL;
		goto out;
	}
	if (asprintf(&file, "%s/fullchain.pem.XXXXXX", dir) < 0) {
		file = NULL;
		nomem(err);
		goto out;
	}
	if (probe_file(st->versions, file, STORE_PROBE_BYTES, err) < 0)
		goto out;
	free(file);
	/* and current / renewal.json next to it ("current.tmp." temps are
	 * swept by the next lock holder) */
	if (asprintf(&file, "%s/current.tmp.XXXXXX", st->dir) < 0) {
		file = NULL;
		nomem(err);
		goto out;
	}
	if (probe_file(st->dir, file, 64, err) < 0)
		goto out;
	rc = 0;
out:
	if (dir != NULL && rmdir(dir) < 0 && rc == 0)
		rc = cf_err_set(err, CF_ERR_IO, "cannot remove %s: %s", dir,
		                strerror(errno));
	free(dir);
	free(file);
	return rc;
}

static int
get_version(cf_store_t *st, const char *id, struct cf_bundle *b,
            struct cf_certinfo *info, char **version, bool *found,
            cf_err_t *err)
{
	char *v = NULL;

	if (version != NULL && (v = strdup(id)) == NULL)
		return nomem(err);
	if (load_version(st, id, b, info, err) < 0) {
		free(v);
		return -1;
	}
	if (version != NULL)
		*version = v;
	*found = true;
	return 0;
}

int
store_get_current(cf_store_t *st, struct cf_bundle *b, struct cf_certinfo *info,
                  char **version, bool *found, cf_err_t *err)
{
	char *cur = NULL;
	int rc = -1;

	if (read_current_id(st, &cur, err) < 0)
		goto out;
	if (cur == NULL) {
		*found = false;
		rc = 0;
		goto out;
	}
	rc = get_version(st, cur, b, info, version, found, err);
out:
	free(cur);
	return rc;
}

int
store_get_current_cert(cf_store_t *st, struct cf_certinfo *info, char **version,
                       bool *found, cf_err_t *err)
{
	return store_get_current(st, NULL, info, version, found, err);
}

int
store_get_version_chain(cf_store_t *st, const char *id, char **chain,
                        cf_err_t *err)
{
	char *vdir = NULL, *path = NULL, *data = NULL;
	size_t len = 0;
	int rc = -1;

	if ((vdir = path_join(st->versions, id)) == NULL ||
	    (path = path_join(vdir, "chain.pem")) == NULL) {
		nomem(err);
		goto out;
	}
	if (cf_read_file(path, MAX_PEM, &data, &len, err) < 0) {
		if (err != NULL)
			err->code = CF_ERR_STATE;
		cf_err_prefix(err, "version %s is unusable: ", id);
		goto out;
	}
	*chain = data;
	rc = 0;
out:
	free(vdir);
	free(path);
	return rc;
}

int
store_get_previous(cf_store_t *st, struct cf_bundle *b,
                   struct cf_certinfo *info, char **version, bool *found,
                   cf_err_t *err)
{
	char *cur = NULL, best[VERSION_ID_LEN + 1] = "";
	struct dirent *de;
	DIR *d = NULL;
	int rc = -1;

	if (read_current_id(st, &cur, err) < 0)
		goto out;
	if (cur == NULL) {
		*found = false;
		rc = 0;
		goto out;
	}
	d = opendir(st->versions);
	if (d == NULL) {
		cf_err_set(err, CF_ERR_IO, "%s: %s", st->versions,
		           strerror(errno));
		goto out;
	}
	/* ids start with a UTC timestamp: byte order is time order */
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (!is_version_id(de->d_name) || strcmp(de->d_name, cur) >= 0)
			continue;
		if (strcmp(de->d_name, best) > 0)
			memcpy(best, de->d_name, sizeof(best));
	}
	if (errno != 0) {
		cf_err_set(err, CF_ERR_IO, "%s: readdir: %s", st->versions,
		           strerror(errno));
		goto out;
	}
	if (best[0] == '\0') {
		*found = false;
		rc = 0;
		goto out;
	}
	rc = get_version(st, best, b, info, version, found, err);
out:
	if (d != NULL)
		closedir(d);
	free(cur);
	return rc;
}

/* ---- JSON state files -------------------------------------------------- */

static int
corrupt(cf_err_t *err, const char *path, const char *what)
{
	return cf_err_set(err, CF_ERR_STATE,
	                  "%s: corrupt state file (%s); move it aside to start "
	                  "over",
	                  path, what);
}

/* Load a state file: *root = NULL if it does not exist. */
static int
load_json(const char *path, json_t **root, cf_err_t *err)
{
	char *data = NULL, what[300];
	json_error_t je;
	json_t *j, *ver;
	struct stat sb;
	size_t len;
	int rc = -1;

	if (stat(path, &sb) < 0) {
		if (errno != ENOENT)
			return cf_err_set(err, CF_ERR_IO, "%s: %s", path,
			                  strerror(errno));
		*root = NULL;
		return 0;
	}
	if (cf_read_file(path, MAX_STATE_JSON, &data, &len, err) < 0) {
		if (err != NULL)
			err->code = CF_ERR_STATE;
		return -1;
	}
	j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
	if (j == NULL) {
		snprintf(what, sizeof(what), "line %d: %s", je.line, je.text);
		corrupt(err, path, what);
		goto out;
	}
	if (!json_is_object(j)) {
		corrupt(err, path, "not a JSON object");
		goto out;
	}
	ver = json_object_get(j, "version");
	if (!json_is_integer(ver)) {
		corrupt(err, path, "\"version\" is missing or not an integer");
		goto out;
	}
	if (json_integer_value(ver) != STATE_FORMAT_VERSION) {
		cf_err_set(err, CF_ERR_STATE,
		           "%s: state format version %" JSON_INTEGER_FORMAT
		           " is not supported (this certfleet reads version "
		           "%d)",
		           path, json_integer_value(ver), STATE_FORMAT_VERSION);
		goto out;
	}
	*root = j;
	j = NULL;
	rc = 0;
out:
	json_decref(j);
	free(data);
	return rc;
}

static int
save_json(const char *path, json_t *root, cf_err_t *err)
{
	char *text;
	int rc;

	text = json_dumps(root, JSON_INDENT(2));
	if (text == NULL)
		return nomem(err);
	/* json_dumps has no trailing newline; files read better with one */
	size_t len = strlen(text);
	char *withnl = realloc(text, len + 2);
	if (withnl == NULL) {
		free(text);
		return nomem(err);
	}
	withnl[len] = '\n';
	withnl[len + 1] = '\0';
	rc = cf_write_atomic(path, withnl, len + 1, 0600, err);
	free(withnl);
	return rc;
}

/* Typed field readers: a missing or null field is the zero value (files
 * from older runs lack newer fields); a field of the wrong type is
 * corruption.  They return false and fill `why` on a type error. */
static json_t *
get_field(json_t *o, const char *key)
{
	json_t *f = json_object_get(o, key);

	return json_is_null(f) ? NULL : f;
}

static bool
wrong_type(const char *key, const char *expected, char *why, size_t whylen)
{
	snprintf(why, whylen, "%s: expected %s", key, expected);
	return false;
}

static bool
get_i64(json_t *o, const char *key, int64_t *v, char *why, size_t whylen)
{
	json_t *f = get_field(o, key);

	if (f != NULL && !json_is_integer(f))
		return wrong_type(key, "an integer", why, whylen);
	*v = f != NULL ? (int64_t)json_integer_value(f) : 0;
	return true;
}

static bool
get_uint(json_t *o, const char *key, unsigned *v, char *why, size_t whylen)
{
	int64_t i;

	if (!get_i64(o, key, &i, why, whylen))
		return false;
	if (i < 0 || i > (int64_t)UINT_MAX) {
		snprintf(why, whylen, "%s: out of range", key);
		return false;
	}
	*v = (unsigned)i;
	return true;
}

static bool
get_bool(json_t *o, const char *key, bool *v, char *why, size_t whylen)
{
	json_t *f = get_field(o, key);

	if (f != NULL && !json_is_boolean(f))
		return wrong_type(key, "true or false", why, whylen);
	*v = json_is_true(f);
	return true;
}

/* *v = strdup of the string or NULL; *oom set on allocation failure. */
static bool
get_str(json_t *o, const char *key, char **v, bool *oom, char *why,
        size_t whylen)
{
	json_t *f = get_field(o, key);

	*v = NULL;
	if (f == NULL)
		return true;
	if (!json_is_string(f))
		return wrong_type(key, "a string or null", why, whylen);
	*v = strdup(json_string_value(f));
	if (*v == NULL)
		*oom = true;
	return *v != NULL;
}

static void
node_state_free(struct cf_node_state *n)
{
	free(n->name);
	free(n->reason);
	free(n->detail);
	free(n->drift);
	for (size_t i = 0; i < n->n_endpoints; i++) {
		free(n->endpoints[i].sni);
		free(n->endpoints[i].reason);
	}
	free(n->endpoints);
	memset(n, 0, sizeof(*n));
}

/* One "endpoints" entry.  Written whole by store_save_nodes, so a missing
 * port or sni is corruption, not an older format; starttls missing reads
 * as implicit TLS. */
static bool
parse_endpoint(json_t *o, struct cf_endpoint_state *e, bool *oom, char *why,
               size_t whylen)
{
	char *proto = NULL;
	bool ok = false;

	if (!json_is_object(o)) {
		snprintf(why, whylen, "not an object");
		return false;
	}
	if (!get_uint(o, "port", &e->port, why, whylen) ||
	    !get_str(o, "starttls", &proto, oom, why, whylen) ||
	    !get_str(o, "sni", &e->sni, oom, why, whylen) ||
	    !get_bool(o, "ok", &e->ok, why, whylen) ||
	    !get_str(o, "reason", &e->reason, oom, why, whylen) ||
	    !get_i64(o, "seen", &e->seen, why, whylen))
		goto out;
	if (e->port == 0 || e->port > 65535) {
		snprintf(why, whylen, "port: out of range");
		goto out;
	}
	if (e->sni == NULL || e->sni[0] == '\0') {
		snprintf(why, whylen, "sni: missing");
		goto out;
	}
	e->starttls = STARTTLS_NONE;
	if (proto != NULL && strcmp(proto, "none") != 0 &&
	    starttls_proto_parse(proto, &e->starttls) < 0) {
		snprintf(why, whylen, "starttls: unknown protocol");
		goto out;
	}
	ok = true;
out:
	free(proto);
	return ok;
}

static bool
parse_endpoints(json_t *o, struct cf_node_state *n, bool *oom, char *why,
                size_t whylen)
{
	json_t *a = get_field(o, "endpoints"), *val;
	char inner[200];
	size_t i;

	if (a == NULL)
		return true;
	if (!json_is_array(a))
		return wrong_type("endpoints", "an array", why, whylen);
	if (json_array_size(a) == 0)
		return true;
	n->endpoints = calloc(json_array_size(a), sizeof(*n->endpoints));
	if (n->endpoints == NULL) {
		*oom = true;
		return false;
	}
	json_array_foreach(a, i, val)
	{
		/* counted first: node_state_free frees what it holds */
		n->n_endpoints++;
		if (!parse_endpoint(val, &n->endpoints[i], oom, inner,
		                    sizeof(inner))) {
			snprintf(why, whylen, "endpoints[%zu]: %s", i, inner);
			return false;
		}
	}
	return true;
}

static bool
parse_node(const char *name, json_t *o, struct cf_node_state *n, bool *oom,
           char *why, size_t whylen)
{
	char *sha = NULL;
	bool ok = false;

	memset(n, 0, sizeof(*n));
	if (!json_is_object(o)) {
		snprintf(why, whylen, "not an object");
		return false;
	}
	if (!get_str(o, "serving_sha256", &sha, oom, why, whylen) ||
	    !get_i64(o, "serving_not_after", &n->serving_not_after, why,
	             whylen) ||
	    !get_i64(o, "last_seen", &n->last_seen, why, whylen) ||
	    !get_i64(o, "last_success", &n->last_success, why, whylen) ||
	    !get_i64(o, "last_change", &n->last_change, why, whylen) ||
	    !get_bool(o, "quarantined", &n->quarantined, why, whylen) ||
	    !get_str(o, "reason", &n->reason, oom, why, whylen) ||
	    !get_str(o, "detail", &n->detail, oom, why, whylen) ||
	    !get_i64(o, "quarantined_since", &n->quarantined_since, why,
	             whylen) ||
	    !get_uint(o, "attempts", &n->attempts, why, whylen) ||
	    !get_bool(o, "manual", &n->manual, why, whylen) ||
	    !get_str(o, "drift", &n->drift, oom, why, whylen) ||
	    !get_i64(o, "drift_seen", &n->drift_seen, why, whylen) ||
	    !parse_endpoints(o, n, oom, why, whylen))
		goto out;
	if (sha != NULL) {
		if (strlen(sha) >= sizeof(n->serving_sha256)) {
			snprintf(why, whylen, "serving_sha256: too long");
			goto out;
		}
		strcpy(n->serving_sha256, sha);
	}
	n->name = strdup(name);
	if (n->name == NULL) {
		*oom = true;
		goto out;
	}
	ok = true;
out:
	free(sha);
	if (!ok)
		node_state_free(n);
	return ok;
}

static char *
state_path(cf_store_t *st, const char *file, cf_err_t *err)
{
	char *p = path_join(st->dir, file);

	if (p == NULL)
		nomem(err);
	return p;
}

int
store_load_nodes(cf_store_t *st, struct cf_node_states *out, cf_err_t *err)
{
	struct cf_node_states ns = {NULL, 0};
	char *path = NULL, why[300], what[400];
	json_t *root = NULL, *nodes, *val;
	const char *name;
	bool oom = false;
	int rc = -1;

	if ((path = state_path(st, "nodes.json", err)) == NULL)
		goto out;
	if (load_json(path, &root, err) < 0)
		goto out;
	if (root == NULL)
		goto done;
	nodes = json_object_get(root, "nodes");
	if (nodes == NULL || json_is_null(nodes))
		goto done;
	if (!json_is_object(nodes)) {
		corrupt(err, path, "\"nodes\" is not an object");
		goto out;
	}
	ns.v = calloc(json_object_size(nodes) + 1, sizeof(*ns.v));
	if (ns.v == NULL) {
		nomem(err);
		goto out;
	}
	json_object_foreach(nodes, name, val)
	{
		if (!parse_node(name, val, &ns.v[ns.n], &oom, why,
		                sizeof(why))) {
			if (oom) {
				nomem(err);
			} else {
				snprintf(what, sizeof(what), "nodes.\"%s\": %s",
				         name, why);
				corrupt(err, path, what);
			}
			goto out;
		}
		ns.n++;
	}
done:
	*out = ns;
	memset(&ns, 0, sizeof(ns));
	rc = 0;
out:
	store_nodes_free(&ns);
	json_decref(root);
	free(path);
	return rc;
}

static json_t *
endpoints_to_json(const struct cf_node_state *n)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < n->n_endpoints; i++) {
		const struct cf_endpoint_state *e = &n->endpoints[i];

		if (json_array_append_new(
		        a, json_pack("{s:i,s:s,s:s?,s:b,s:s?,s:I}", "port",
		                     (int)e->port, "starttls",
		                     starttls_proto_name(e->starttls), "sni",
		                     e->sni, "ok", e->ok, "reason", e->reason,
		                     "seen", (json_int_t)e->seen)) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *
node_to_json(const struct cf_node_state *n)
{
	json_t *o = json_object();

	if (o == NULL)
		return NULL;

	if (json_object_set_new(o, "serving_sha256",
	                        cf_json_str_or_null(n->serving_sha256[0]
	                                                ? n->serving_sha256
	                                                : NULL)) < 0 ||
	    json_object_set_new(o, "serving_not_after",
	                        json_integer(n->serving_not_after)) < 0 ||
	    json_object_set_new(o, "last_seen", json_integer(n->last_seen)) <
	        0 ||
	    json_object_set_new(o, "last_success",
	                        json_integer(n->last_success)) < 0 ||
	    json_object_set_new(o, "last_change",
	                        json_integer(n->last_change)) < 0 ||
	    json_object_set_new(o, "quarantined",
	                        json_boolean(n->quarantined)) < 0 ||
	    json_object_set_new(o, "reason", cf_json_str_or_null(n->reason)) <
	        0 ||
	    json_object_set_new(o, "detail", cf_json_str_or_null(n->detail)) <
	        0 ||
	    json_object_set_new(o, "quarantined_since",
	                        json_integer(n->quarantined_since)) < 0 ||
	    json_object_set_new(o, "attempts", json_integer(n->attempts)) < 0 ||
	    json_object_set_new(o, "manual", json_boolean(n->manual)) < 0 ||
	    json_object_set_new(o, "drift", cf_json_str_or_null(n->drift)) <
	        0 ||
	    json_object_set_new(o, "drift_seen", json_integer(n->drift_seen)) <
	        0 ||
	    /* no "endpoints" until one was checked: files stay as before */
	    (n->n_endpoints > 0 &&
	     json_object_set_new(o, "endpoints", endpoints_to_json(n)) < 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int
store_save_nodes(cf_store_t *st, const struct cf_node_states *ns, cf_err_t *err)
{
	json_t *root = NULL, *nodes, *o;
	char *path = NULL;
	size_t i;
	int rc = -1;

	if (check_writable(st, "store_save_nodes", err) < 0 ||
	    (path = state_path(st, "nodes.json", err)) == NULL)
		goto out;
	root = json_object();
	/* json_object_set_new takes the value's reference even on failure */
	if (root == NULL ||
	    json_object_set_new(root, "version",
	                        json_integer(STATE_FORMAT_VERSION)) < 0 ||
	    json_object_set_new(root, "nodes", json_object()) < 0) {
		nomem(err);
		goto out;
	}
	nodes = json_object_get(root, "nodes");
	for (i = 0; i < ns->n; i++) {
		if (ns->v[i].name == NULL)
			continue;
		o = node_to_json(&ns->v[i]);
		if (o == NULL ||
		    json_object_set_new(nodes, ns->v[i].name, o) < 0) {
			nomem(err);
			goto out;
		}
	}
	rc = save_json(path, root, err);
out:
	json_decref(root);
	free(path);
	return rc;
}

const struct cf_node_state *
store_node_find(const struct cf_node_states *ns, const char *name)
{
	size_t i;

	for (i = 0; ns != NULL && i < ns->n; i++)
		if (ns->v[i].name != NULL && strcmp(ns->v[i].name, name) == 0)
			return &ns->v[i];
	return NULL;
}

struct cf_node_state *
store_node(struct cf_node_states *ns, const char *name)
{
	const struct cf_node_state *found = store_node_find(ns, name);
	struct cf_node_state *v, *n;

	if (found != NULL)
		return &ns->v[found - ns->v];
	v = realloc(ns->v, (ns->n + 1) * sizeof(*v));
	if (v == NULL)
		return NULL;
	ns->v = v;
	n = &v[ns->n];
	memset(n, 0, sizeof(*n));
	n->name = strdup(name);
	if (n->name == NULL)
		return NULL;
	ns->n++;
	return n;
}

void
store_nodes_free(struct cf_node_states *ns)
{
	size_t i;

	if (ns == NULL)
		return;
	for (i = 0; i < ns->n; i++)
		node_state_free(&ns->v[i]);
	free(ns->v);
	ns->v = NULL;
	ns->n = 0;
}

int
store_load_renewal(cf_store_t *st, struct cf_renewal_state *out, cf_err_t *err)
{
	struct cf_renewal_state r;
	char *path = NULL, why[300];
	json_t *root = NULL;
	bool oom = false;
	int rc = -1;

	memset(&r, 0, sizeof(r));
	if ((path = state_path(st, "renewal.json", err)) == NULL)
		goto out;
	if (load_json(path, &root, err) < 0)
		goto out;
	if (root == NULL)
		goto done;
	if (!get_i64(root, "last_attempt", &r.last_attempt, why, sizeof(why)) ||
	    !get_i64(root, "last_success", &r.last_success, why, sizeof(why)) ||
	    !get_uint(root, "consecutive_failures", &r.consecutive_failures,
	              why, sizeof(why)) ||
	    !get_str(root, "last_error", &r.last_error, &oom, why,
	             sizeof(why)) ||
	    !get_i64(root, "ari_retry_after", &r.ari_retry_after, why,
	             sizeof(why)) ||
	    !get_i64(root, "ari_window_start", &r.ari_window_start, why,
	             sizeof(why)) ||
	    !get_i64(root, "ari_window_end", &r.ari_window_end, why,
	             sizeof(why)) ||
	    !get_i64(root, "ari_chosen", &r.ari_chosen, why, sizeof(why)) ||
	    !get_str(root, "ari_cert_id", &r.ari_cert_id, &oom, why,
	             sizeof(why)) ||
	    !get_str(root, "ari_explanation", &r.ari_explanation, &oom, why,
	             sizeof(why))) {
		if (oom)
			nomem(err);
		else
			corrupt(err, path, why);
		goto out;
	}
done:
	*out = r;
	memset(&r, 0, sizeof(r));
	rc = 0;
out:
	store_renewal_free(&r);
	json_decref(root);
	free(path);
	return rc;
}

int
store_save_renewal(cf_store_t *st, const struct cf_renewal_state *r,
                   cf_err_t *err)
{
	json_t *root = NULL;
	char *path = NULL;
	int rc = -1;

	if (check_writable(st, "store_save_renewal", err) < 0 ||
	    (path = state_path(st, "renewal.json", err)) == NULL)
		goto out;
	root = json_object();
	if (root == NULL ||
	    json_object_set_new(root, "version",
	                        json_integer(STATE_FORMAT_VERSION)) < 0 ||
	    json_object_set_new(root, "last_attempt",
	                        json_integer(r->last_attempt)) < 0 ||
	    json_object_set_new(root, "last_success",
	                        json_integer(r->last_success)) < 0 ||
	    json_object_set_new(root, "consecutive_failures",
	                        json_integer(r->consecutive_failures)) < 0 ||
	    json_object_set_new(root, "last_error",
	                        cf_json_str_or_null(r->last_error)) < 0 ||
	    json_object_set_new(root, "ari_retry_after",
	                        json_integer(r->ari_retry_after)) < 0 ||
	    json_object_set_new(root, "ari_window_start",
	                        json_integer(r->ari_window_start)) < 0 ||
	    json_object_set_new(root, "ari_window_end",
	                        json_integer(r->ari_window_end)) < 0 ||
	    json_object_set_new(root, "ari_chosen",
	                        json_integer(r->ari_chosen)) < 0 ||
	    json_object_set_new(root, "ari_cert_id",
	                        cf_json_str_or_null(r->ari_cert_id)) < 0 ||
	    json_object_set_new(root, "ari_explanation",
	                        cf_json_str_or_null(r->ari_explanation)) < 0) {
		nomem(err);
		goto out;
	}
	rc = save_json(path, root, err);
out:
	json_decref(root);
	free(path);
	return rc;
}

void
store_renewal_free(struct cf_renewal_state *r)
{
	if (r == NULL)
		return;
	free(r->last_error);
	free(r->ari_cert_id);
	free(r->ari_explanation);
	memset(r, 0, sizeof(*r));
}

/* ---- ACME accounts ----------------------------------------------------- */

char *
store_account_key_path(cf_store_t *st, const char *directory_url)
{
	unsigned char sha[32];
	char hex[65], *accounts = NULL, *dir = NULL, *path = NULL;
	cf_err_t ignored;

	/* one account per CA: switching staging <-> production must not reuse
	 * (and so confuse) the other CA's account key */
	crypto_sha256(directory_url, strlen(directory_url), sha);
	cf_hex(sha, 8, hex);
	accounts = path_join(st->root, "accounts");
	dir = accounts != NULL ? path_join(accounts, hex) : NULL;
	/* read-only: the path, for reading an existing key; nothing made */
	if (dir == NULL ||
	    (!st->readonly && (mkdir_private(accounts, &ignored) < 0 ||
	                       mkdir_private(dir, &ignored) < 0)))
		goto out;
	path = path_join(dir, "account.key");
out:
	free(accounts);
	free(dir);
	return path;
}

/* ---- revocation (revoke --reason keyCompromise) ------------------------ */

int
store_current_id(cf_store_t *st, char **id, cf_err_t *err)
{
	return read_current_id(st, id, err);
}

int
store_get_version_cert(cf_store_t *st, const char *id, struct cf_certinfo *info,
                       char **cert_pem, cf_err_t *err)
{
	char *vdir, *path = NULL, *pem = NULL;
	struct stat sb;
	size_t len;
	int rc;

	if (!is_version_id(id))
		return cf_err_set(err, CF_ERR_STATE,
		                  "'%s' is not a version id "
		                  "(YYYYMMDDTHHMMSSZ-xxxxxxxx, see %s)",
		                  id, st->versions);
	vdir = path_join(st->versions, id);
	if (vdir == NULL)
		return nomem(err);
	rc = stat(vdir, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : -1;
	if (rc < 0)
		cf_err_set(err, CF_ERR_STATE, "no version %s in %s", id,
		           st->versions);
	if (rc == 0 && cert_pem != NULL) {
		path = path_join(vdir, bundle_files[0]);
		rc = path == NULL
		         ? nomem(err)
		         : cf_read_file(path, MAX_PEM, &pem, &len, err);
	}
	free(path);
	free(vdir);
	if (rc < 0 || load_version(st, id, NULL, info, err) < 0) {
		free(pem);
		return -1;
	}
	if (cert_pem != NULL)
		*cert_pem = pem;
	return 0;
}

/* sha256 hex of versions/ID/NAME's bytes; *present false if it is gone. */
static int
hash_version_file(cf_store_t *st, const char *id, const char *name,
                  unsigned char sha[32], bool *present, cf_err_t *err)
{
	char *path = NULL, *data = NULL;
	size_t len = 0;
	int rc = -1;

	if (asprintf(&path, "%s/%s/%s", st->versions, id, name) < 0)
		return nomem(err);
	if (access(path, F_OK) < 0 && errno == ENOENT) {
		*present = false;
		rc = 0;
		goto out;
	}
	if (cf_read_file(path, MAX_PEM, &data, &len, err) < 0)
		goto out;
	crypto_sha256(data, len, sha);
	*present = true;
	rc = 0;
out:
	cf_free_secret(data, len);
	free(path);
	return rc;
}

int
store_version_key_hashes(cf_store_t *st, const char *id, char key_hex[65],
                         char combined_hex[65], bool *present, cf_err_t *err)
{
	char *kpath = NULL, *fpath = NULL, *key = NULL, *full = NULL;
	size_t klen = 0, flen = 0;
	unsigned char sha[32];
	char *both = NULL;
	int rc = -1;

	*present = false;
	if (asprintf(&kpath, "%s/%s/%s", st->versions, id, bundle_files[3]) <
	        0 ||
	    asprintf(&fpath, "%s/%s/%s", st->versions, id, bundle_files[2]) <
	        0) {
		nomem(err);
		goto out;
	}
	if (access(kpath, F_OK) < 0 && errno == ENOENT) {
		rc = 0;
		goto out;
	}
	if (cf_read_file(kpath, MAX_PEM, &key, &klen, err) < 0 ||
	    cf_read_file(fpath, MAX_PEM, &full, &flen, err) < 0)
		goto out;
	crypto_sha256(key, klen, sha);
	cf_hex(sha, 32, key_hex);
	/* a "combined" file on a node is fullchain.pem then privkey.pem,
	 * byte for byte (rollout.c build_payloads) */
	both = malloc(flen + klen + 1);
	if (both == NULL) {
		nomem(err);
		goto out;
	}
	memcpy(both, full, flen);
	memcpy(both + flen, key, klen);
	crypto_sha256(both, flen + klen, sha);
	cf_hex(sha, 32, combined_hex);
	*present = true;
	rc = 0;
out:
	cf_free_secret(both, both != NULL ? flen + klen : 0);
	cf_free_secret(key, klen);
	free(full);
	free(kpath);
	free(fpath);
	return rc;
}

int
store_wipe_key(cf_store_t *st, const char *key_sha256, char ***wiped,
               cf_err_t *err)
{
	char **ids = NULL, *path = NULL, hex[65];
	size_t n = 0;
	unsigned char sha[32];
	struct dirent *de;
	bool present = false;
	DIR *d;
	int rc = -1;

	*wiped = NULL;
	if (check_writable(st, "store_wipe_key", err) < 0)
		return -1;
	ids = calloc(1, sizeof(*ids));
	if (ids == NULL)
		return nomem(err);
	d = opendir(st->versions);
	if (d == NULL) {
		free(ids);
		return cf_err_set(err, CF_ERR_IO, "%s: %s", st->versions,
		                  strerror(errno));
	}
	/* every copy: with acme.reuse_key several versions hold one key */
	while ((errno = 0, de = readdir(d)) != NULL) {
		char **v;

		if (!is_version_id(de->d_name))
			continue;
		if (hash_version_file(st, de->d_name, bundle_files[3], sha,
		                      &present, err) < 0)
			goto out;
		if (!present)
			continue;
		cf_hex(sha, 32, hex);
		if (strcmp(hex, key_sha256) != 0)
			continue;
		free(path);
		if (asprintf(&path, "%s/%s/%s", st->versions, de->d_name,
		             bundle_files[3]) < 0) {
			path = NULL;
			nomem(err);
			goto out;
		}
		if (wipe_file(path, err) < 0)
			goto out;
		*strrchr(path, '/') = '\0';
		if (fsync_path(path, err) < 0)
			goto out;
		v = realloc(ids, (n + 2) * sizeof(*ids));
		if (v == NULL) {
			nomem(err);
			goto out;
		}
		ids = v;
		if ((ids[n] = strdup(de->d_name)) == NULL) {
			nomem(err);
			goto out;
		}
		ids[++n] = NULL;
	}
	if (errno != 0) {
		cf_err_set(err, CF_ERR_IO, "%s: readdir: %s", st->versions,
		           strerror(errno));
		goto out;
	}
	*wiped = ids;
	ids = NULL;
	rc = 0;
out:
	cf_strv_free(ids);
	free(path);
	closedir(d);
	return rc;
}

static char *
revocation_path(cf_store_t *st, const char *id, cf_err_t *err)
{
	char *path;

	if (!is_version_id(id)) {
		cf_err_set(err, CF_ERR_INTERNAL, "bad version id");
		return NULL;
	}
	if (asprintf(&path, "%s/%s/revoked.json", st->versions, id) < 0) {
		nomem(err);
		return NULL;
	}
	return path;
}

static bool
is_hex64_or_empty(const char *s)
{
	size_t i;

	if (s == NULL || *s == '\0')
		return true;
	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == 64;
}

int
store_load_revocation(cf_store_t *st, const char *id, struct cf_revocation *out,
                      cf_err_t *err)
{
	struct cf_revocation r;
	char *path = NULL, *key = NULL, *comb = NULL, why[300];
	json_t *root = NULL, *pend;
	int64_t reason = 0;
	bool oom = false;
	int rc = -1;

	memset(&r, 0, sizeof(r));
	if ((path = revocation_path(st, id, err)) == NULL)
		goto out;
	if (load_json(path, &root, err) < 0)
		goto out;
	if (root == NULL)
		goto done;
	if (!get_i64(root, "revoked_at", &r.revoked_at, why, sizeof(why)) ||
	    !get_i64(root, "reason", &reason, why, sizeof(why)) ||
	    !get_str(root, "key_sha256", &key, &oom, why, sizeof(why)) ||
	    !get_str(root, "combined_sha256", &comb, &oom, why, sizeof(why))) {
		if (oom)
			nomem(err);
		else
			corrupt(err, path, why);
		goto out;
	}
	if (!is_hex64_or_empty(key) || !is_hex64_or_empty(comb)) {
		corrupt(err, path, "key_sha256: not a SHA-256");
		goto out;
	}
	r.reason = (int)reason;
	snprintf(r.key_sha256, sizeof(r.key_sha256), "%s", key ? key : "");
	snprintf(r.combined_sha256, sizeof(r.combined_sha256), "%s",
	         comb ? comb : "");
	pend = json_object_get(root, "cleanup_pending");
	if (pend != NULL && !json_is_null(pend)) {
		size_t i, n;

		if (!json_is_array(pend)) {
			corrupt(err, path,
			        "cleanup_pending: expected an array");
			goto out;
		}
		n = json_array_size(pend);
		r.pending = calloc(n + 1, sizeof(*r.pending));
		if (r.pending == NULL) {
			nomem(err);
			goto out;
		}
		for (i = 0; i < n; i++) {
			json_t *e = json_array_get(pend, i);

			if (!json_is_string(e)) {
				corrupt(err, path,
				        "cleanup_pending: expected "
				        "node names");
				goto out;
			}
			if ((r.pending[i] = strdup(json_string_value(e))) ==
			    NULL) {
				nomem(err);
				goto out;
			}
		}
	}
done:
	*out = r;
	memset(&r, 0, sizeof(r));
	rc = 0;
out:
	store_revocation_free(&r);
	json_decref(root);
	free(key);
	free(comb);
	free(path);
	return rc;
}

int
store_save_revocation(cf_store_t *st, const char *id,
                      const struct cf_revocation *r, cf_err_t *err)
{
	json_t *root = NULL, *pend = NULL;
	char *path = NULL;
	size_t i;
	int rc = -1;

	if (check_writable(st, "store_save_revocation", err) < 0 ||
	    (path = revocation_path(st, id, err)) == NULL)
		goto out;
	root = json_object();
	pend = json_array();
	if (root == NULL || pend == NULL)
		goto oom;
	for (i = 0; r->pending != NULL && r->pending[i] != NULL; i++)
		if (json_array_append_new(pend, json_string(r->pending[i])) < 0)
			goto oom;
	if (json_object_set_new(root, "version",
	                        json_integer(STATE_FORMAT_VERSION)) < 0 ||
	    json_object_set_new(root, "revoked_at",
	                        json_integer(r->revoked_at)) < 0 ||
	    json_object_set_new(root, "reason", json_integer(r->reason)) < 0 ||
	    json_object_set_new(root, "key_sha256",
	                        cf_json_str_or_null(
	                            r->key_sha256[0] ? r->key_sha256 : NULL)) <
	        0 ||
	    json_object_set_new(root, "combined_sha256",
	                        cf_json_str_or_null(r->combined_sha256[0]
	                                                ? r->combined_sha256
	                                                : NULL)) < 0)
		goto oom;
	rc = json_object_set(root, "cleanup_pending", pend);
	if (rc < 0)
		goto oom;
	rc = save_json(path, root, err);
	goto out;
oom:
	rc = nomem(err);
out:
	json_decref(pend);
	json_decref(root);
	free(path);
	return rc;
}

void
store_revocation_free(struct cf_revocation *r)
{
	if (r == NULL)
		return;
	cf_strv_free(r->pending);
	memset(r, 0, sizeof(*r));
}
