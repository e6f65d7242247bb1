/* test_store.c - the state directory: modes, run lock across processes,
 * certificate versions, JSON state files, and a full filesystem. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "certfleet/store.h"
#include "certfleet/util.h"

struct fixture {
	char base[64]; /* mkdtemp dir, removed in teardown */
	char state[256];
	char mnt[128]; /* tmpfs mount point, "" if none */
};

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->base, sizeof(f->base), "/tmp/test_store.XXXXXX");
	if (mkdtemp(f->base) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->state, sizeof(f->state), "%s/state", f->base);
	*state = f;
	return 0;
}

/* Runs even when a test fails: a tmpfs must never outlive the test. */
static int
teardown(void **state)
{
	struct fixture *f = *state;

	if (f->mnt[0] != '\0' && umount2(f->mnt, MNT_DETACH) < 0)
		fprintf(stderr, "umount %s: %s\n", f->mnt, strerror(errno));
	nftw(f->base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static char *
slurp(const char *path, size_t *len)
{
	char *data = NULL;
	cf_err_t err;

	if (cf_read_file(path, 1 << 20, &data, len, &err) < 0)
		return NULL;
	return data;
}

/* entries of a directory other than . and .. */
static int
count_entries(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static unsigned
mode_of(const char *path)
{
	struct stat sb;

	assert_int_equal(stat(path, &sb), 0);
	return (unsigned)(sb.st_mode & 07777);
}

static void
write_text(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

/* A self-signed leaf + key made by the openssl tool, as a bundle. */
static void
make_bundle(const char *dir, const char *cn, struct cf_bundle *b)
{
	char cmd[1024], cpath[256], kpath[256];
	size_t len;

	snprintf(cpath, sizeof(cpath), "%s/%s.crt", dir, cn);
	snprintf(kpath, sizeof(kpath), "%s/%s.key", dir, cn);
	snprintf(cmd, sizeof(cmd),
	         "openssl req -x509 -newkey ec -pkeyopt "
	         "ec_paramgen_curve:P-256 "
	         "-nodes -keyout %s -out %s -subj /CN=%s -days 30 "
	         "-addext subjectAltName=DNS:%s 2>/dev/null",
	         kpath, cpath, cn, cn);
	assert_int_equal(system(cmd), 0);
	memset(b, 0, sizeof(*b));
	b->cert = slurp(cpath, &len);
	b->fullchain = slurp(cpath, &len);
	b->privkey = slurp(kpath, &len);
	b->chain = strdup("");
	assert_non_null(b->cert);
	assert_non_null(b->fullchain);
	assert_non_null(b->privkey);
	assert_non_null(b->chain);
}

static cf_store_t *
open_ok(struct fixture *f)
{
	cf_store_t *st = NULL;
	cf_err_t err = {0};

	if (store_open(f->state, "web", &st, &err) < 0)
		fail_msg("store_open: %s", err.msg);
	return st;
}

/* ---- open -------------------------------------------------------------- */

static void
test_open_creates_private_dirs(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX];
	cf_store_t *st;

	snprintf(f->state, sizeof(f->state), "%s/a/b/state", f->base);
	st = open_ok(f);
	assert_int_equal(mode_of(f->state), 0700);
	snprintf(path, sizeof(path), "%s/a/b", f->base);
	assert_int_equal(mode_of(path), 0755);
	snprintf(path, sizeof(path), "%s/web", f->state);
	assert_string_equal(store_dir(st), path);
	assert_string_equal(store_root(st), f->state);
	assert_int_equal(mode_of(path), 0700);
	snprintf(path, sizeof(path), "%s/web/versions", f->state);
	assert_int_equal(mode_of(path), 0700);
	store_close(st);
	/* reopening an existing private dir is fine */
	st = open_ok(f);
	store_close(st);
}

static void
test_open_refuses_loose_dir(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = NULL;
	cf_err_t err = {0};
	char path[PATH_MAX];

	assert_int_equal(mkdir(f->state, 0755), 0);
	assert_int_equal(chmod(f->state, 0755), 0);
	assert_int_equal(store_open(f->state, "web", &st, &err), -1);
	assert_null(st);
	assert_int_equal(err.code, CF_ERR_IO);
	assert_non_null(strstr(err.msg, f->state));
	assert_non_null(strstr(err.msg, "mode 0755"));
	assert_non_null(strstr(err.msg, "chmod 700"));
	/* not "fixed" behind the operator's back, nothing created inside */
	assert_int_equal(mode_of(f->state), 0755);
	snprintf(path, sizeof(path), "%s/web", f->state);
	assert_int_equal(access(path, F_OK), -1);
}

static void
test_open_refuses_reserved_names(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = NULL;
	cf_err_t err = {0};

	assert_int_equal(store_open(f->state, "accounts", &st, &err), -1);
	assert_int_equal(err.code, CF_ERR_CONFIG);
	assert_int_equal(store_open(f->state, "..", &st, &err), -1);
	assert_int_equal(store_open(f->state, "a/b", &st, &err), -1);
	assert_null(st);
}

/* ---- lock -------------------------------------------------------------- */

/* Fork a child that opens its own store, takes the lock and reports on
 * `ready`; it then holds the lock until `release` is closed (or forever if
 * hold_forever).  Returns the child's pid. */
static pid_t
spawn_holder(struct fixture *f, int *release_w, bool hold_forever)
{
	int ready[2], release[2];
	char c;
	pid_t pid;

	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(release), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		cf_store_t *st = NULL;
		cf_err_t err;

		close(ready[0]);
		close(release[1]);
		if (store_open(f->state, "web", &st, &err) < 0 ||
		    store_lock(st, "deploy", 0, &err) < 0)
			_exit(1);
		if (write(ready[1], "x", 1) != 1)
			_exit(2);
		if (hold_forever)
			for (;;)
				pause();
		while (read(release[0], &c, 1) > 0)
			;
		store_close(st);
		_exit(0);
	}
	close(ready[1]);
	close(release[0]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	*release_w = release[1];
	return pid;
}

static void
test_lock_conflict_names_holder(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = open_ok(f);
	cf_err_t err = {0};
	char want[64];
	int release, status;
	int64_t t0;
	pid_t pid, closer;

	pid = spawn_holder(f, &release, false);
	assert_int_equal(store_lock(st, "status", 0, &err), -1);
	assert_int_equal(err.code, CF_ERR_LOCKED);
	snprintf(want, sizeof(want), "locked by pid %ld on ", (long)pid);
	assert_non_null(strstr(err.msg, want));
	assert_non_null(strstr(err.msg, f->state));
	assert_non_null(strstr(err.msg, "(deploy)"));

	t0 = cf_now_ms();
	assert_int_equal(store_lock(st, "status", 1, &err), -1);
	assert_int_equal(err.code, CF_ERR_LOCKED);
	assert_non_null(strstr(err.msg, "still locked after 1 s"));
	assert_true(cf_now_ms() - t0 >= 900);

	/* the holder exits 300 ms into our wait: we get the lock */
	closer = fork();
	assert_true(closer >= 0);
	if (closer == 0) {
		struct timespec ts = {0, 300 * 1000000L};

		nanosleep(&ts, NULL);
		close(release);
		_exit(0);
	}
	close(release); /* the closer holds the last write end */
	t0 = cf_now_ms();
	if (store_lock(st, "deploy", 5, &err) < 0)
		fail_msg("lock with wait: %s", err.msg);
	assert_true(cf_now_ms() - t0 >= 250);
	assert_true(cf_now_ms() - t0 < 3000);
	waitpid(closer, NULL, 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* taking it again from the same store is a no-op */
	assert_int_equal(store_lock(st, "deploy", 0, &err), 0);
	store_close(st);
}

static void
test_lock_blocking_wait(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = open_ok(f);
	cf_err_t err = {0};
	int release;
	pid_t pid, closer;

	pid = spawn_holder(f, &release, false);
	closer = fork();
	assert_true(closer >= 0);
	if (closer == 0) {
		struct timespec ts = {0, 200 * 1000000L};

		nanosleep(&ts, NULL);
		close(release);
		_exit(0);
	}
	close(release); /* the closer child holds the last write end */
	assert_int_equal(store_lock(st, "deploy", -1, &err), 0);
	waitpid(closer, NULL, 0);
	waitpid(pid, NULL, 0);
	store_close(st);
}

static void
test_lock_free_after_holder_killed(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = open_ok(f);
	cf_err_t err = {0};
	char path[PATH_MAX], want[64], *line;
	int release, status;
	size_t len;
	pid_t pid;

	/* what cf_write_atomic leaves when killed mid-write */
	snprintf(path, sizeof(path), "%s/web/nodes.json.tmp.AbC123", f->state);
	write_text(path, "{\"version\":1,");

	pid = spawn_holder(f, &release, true);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	close(release);
	assert_int_equal(store_lock(st, "renew", 0, &err), 0);
	snprintf(path, sizeof(path), "%s/web/nodes.json.tmp.AbC123", f->state);
	assert_int_equal(access(path, F_OK), -1);
	/* the dead holder's line is replaced by ours */
	snprintf(path, sizeof(path), "%s/lock", f->state);
	assert_int_equal(mode_of(path), 0600);
	line = slurp(path, &len);
	assert_non_null(line);
	snprintf(want, sizeof(want), "pid=%ld host=", (long)getpid());
	assert_true(strncmp(line, want, strlen(want)) == 0);
	assert_non_null(strstr(line, " cmd=renew\n"));
	free(line);
	store_close(st);

	/* store_close released it */
	st = open_ok(f);
	assert_int_equal(store_lock(st, "renew", 0, &err), 0);
	store_close(st);
}

/* ---- versions ---------------------------------------------------------- */

static void
test_bundle_round_trip(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = open_ok(f);
	struct cf_bundle a, got = {0};
	struct cf_certinfo info = {0};
	char path[PATH_MAX], *id = NULL, *id2 = NULL, *ver = NULL;
	cf_err_t err = {0};
	bool found = true;

	assert_int_equal(store_get_current(st, &got, &info, &ver, &found, &err),
	                 0);
	assert_false(found);
	assert_int_equal(store_get_previous(st, &got, &info, &ver, &found,
	                                    &err),
	                 0);
	assert_false(found);

	make_bundle(f->base, "a.test", &a);
	if (store_put_bundle(st, &a, &id, &err) < 0)
		fail_msg("put: %s", err.msg);
	assert_int_equal(strlen(id), 25);
	assert_int_equal(id[8], 'T');
	assert_int_equal(id[15], 'Z');
	assert_int_equal(id[16], '-');

	snprintf(path, sizeof(path), "%s/web/versions/%s/privkey.pem", f->state,
	         id);
	assert_int_equal(mode_of(path), 0600);
	snprintf(path, sizeof(path), "%s/web/versions/%s/cert.pem", f->state,
	         id);
	assert_int_equal(mode_of(path), 0644);
	snprintf(path, sizeof(path), "%s/web/versions/%s/chain.pem", f->state,
	         id);
	assert_int_equal(mode_of(path), 0644);
	snprintf(path, sizeof(path), "%s/web/versions/%s/fullchain.pem",
	         f->state, id);
	assert_int_equal(mode_of(path), 0644);

	found = false;
	if (store_get_current(st, &got, &info, &ver, &found, &err) < 0)
		fail_msg("get: %s", err.msg);
	assert_true(found);
	assert_string_equal(ver, id);
	assert_string_equal(got.cert, a.cert);
	assert_string_equal(got.chain, "");
	assert_string_equal(got.fullchain, a.fullchain);
	assert_string_equal(got.privkey, a.privkey);
	assert_int_equal(strncmp(info.sha256_hex, id + 17, 8), 0);
	assert_true(info.not_after > info.not_before);

	/* storing it again is a no-op: same id, no second directory */
	assert_int_equal(store_put_bundle(st, &a, &id2, &err), 0);
	assert_string_equal(id2, id);
	snprintf(path, sizeof(path), "%s/web/versions", f->state);
	assert_int_equal(count_entries(path), 1);

	/* no version before the first one */
	assert_int_equal(store_get_previous(st, NULL, NULL, NULL, &found, &err),
	                 0);
	assert_false(found);

	free(ver);
	free(id2);
	crypto_bundle_free(&got);
	crypto_certinfo_free(&info);
	crypto_bundle_free(&a);
	free(id);
	store_close(st);
}

static void
test_previous_and_reuse(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = open_ok(f);
	struct cf_bundle a, b, got = {0};
	struct cf_certinfo info = {0};
	char *ida = NULL, *idb = NULL, *idc = NULL, *ver = NULL;
	cf_err_t err = {0};
	bool found = false;

	make_bundle(f->base, "a.test", &a);
	make_bundle(f->base, "b.test", &b);
	assert_int_equal(store_put_bundle(st, &a, &ida, &err), 0);
	/* within the same second: ids still order by creation */
	assert_int_equal(store_put_bundle(st, &b, &idb, &err), 0);
	assert_true(strcmp(ida, idb) < 0);

	if (store_get_previous(st, &got, &info, &ver, &found, &err) < 0)
		fail_msg("previous: %s", err.msg);
	assert_true(found);
	assert_string_equal(ver, ida);
	assert_string_equal(got.cert, a.cert);
	assert_string_equal(got.privkey, a.privkey);
	crypto_bundle_free(&got);
	crypto_certinfo_free(&info);
	free(ver);
	ver = NULL;

	/* rolling back to a stored leaf reuses its version directory */
	assert_int_equal(store_put_bundle(st, &a, &idc, &err), 0);
	assert_string_equal(idc, ida);
	assert_int_equal(store_get_current(st, NULL, NULL, &ver, &found, &err),
	                 0);
	assert_true(found);
	assert_string_equal(ver, ida);

	free(ver);
	free(ida);
	free(idb);
	free(idc);
	crypto_bundle_free(&a);
	crypto_bundle_free(&b);
	store_close(st);
}

static bool
has_key(struct fixture *f, const char *id)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/web/versions/%s/privkey.pem", f->state,
	         id);
	return access(path, F_OK) == 0;
}

static bool
has_cert(struct fixture *f, const char *id)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/web/versions/%s/cert.pem", f->state,
	         id);
	return access(path, F_OK) == 0;
}

/* Only the newest keep_versions versions keep their key; the current one
 * and the one before it (rollback's) always do; certificates stay. */
static void
test_keep_versions(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = open_ok(f);
	struct cf_bundle b[5], got = {0};
	char *id[5] = {NULL}, *again = NULL, *ver = NULL;
	static const char *const cn[5] = {"k1.test", "k2.test", "k3.test",
	                                  "k4.test", "k5.test"};
	cf_err_t err = {0};
	bool found = false;
	int i;

	for (i = 0; i < 5; i++) {
		make_bundle(f->base, cn[i], &b[i]);
		if (store_put_bundle(st, &b[i], &id[i], &err) < 0)
			fail_msg("put %d: %s", i, err.msg);
	}
	/* default 3: the two oldest lost their keys, kept their certs */
	assert_false(has_key(f, id[0]));
	assert_false(has_key(f, id[1]));
	for (i = 2; i < 5; i++)
		assert_true(has_key(f, id[i]));
	for (i = 0; i < 5; i++)
		assert_true(has_cert(f, id[i]));
	/* rollback's version is whole */
	if (store_get_previous(st, &got, NULL, &ver, &found, &err) < 0)
		fail_msg("previous: %s", err.msg);
	assert_string_equal(ver, id[3]);
	assert_string_equal(got.privkey, b[3].privkey);
	crypto_bundle_free(&got);
	free(ver);
	ver = NULL;
	/* a keyless version is not reused: storing that leaf again makes a
	 * new, whole version */
	assert_int_equal(store_put_bundle(st, &b[0], &again, &err), 0);
	assert_true(strcmp(again, id[4]) > 0);
	assert_true(has_key(f, again));
	assert_false(has_key(f, id[2])); /* now 4th newest */
	free(again);
	again = NULL;

	/* current pointing at an older version: it and its predecessor keep
	 * their keys even outside the newest keep_versions */
	store_set_keep_versions(st, 2);
	assert_int_equal(store_put_bundle(st, &b[3], &again, &err), 0);
	assert_string_equal(again, id[3]); /* reused, now current */
	assert_true(has_key(f, id[3]));
	assert_false(has_key(f, id[2]));
	free(again);
	again = NULL;
	/* keep_versions below 2 means 2 */
	store_set_keep_versions(st, 0);
	assert_int_equal(store_put_bundle(st, &b[4], &again, &err), 0);
	assert_string_equal(again, id[4]);
	assert_true(has_key(f, id[4]));
	assert_true(has_key(f, id[3]));
	free(again);

	for (i = 0; i < 5; i++) {
		free(id[i]);
		crypto_bundle_free(&b[i]);
	}
	store_close(st);
}

static void
test_leftover_tmp_removed(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = open_ok(f);
	struct cf_bundle a;
	char tmp[512], file[PATH_MAX], *id = NULL;
	cf_err_t err = {0};

	/* what a run killed between mkdtemp and rename leaves */
	snprintf(tmp, sizeof(tmp),
	         "%s/web/versions/20260101T000000Z-deadbeef.tmpAbCdEf",
	         f->state);
	assert_int_equal(mkdir(tmp, 0700), 0);
	snprintf(file, sizeof(file), "%s/privkey.pem", tmp);
	write_text(file, "half a key");

	make_bundle(f->base, "a.test", &a);
	assert_int_equal(store_put_bundle(st, &a, &id, &err), 0);
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(errno, ENOENT);
	free(id);
	crypto_bundle_free(&a);
	store_close(st);
}

static void
test_current_broken(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = open_ok(f);
	struct cf_bundle a, got = {0};
	char path[PATH_MAX], cur[PATH_MAX], *id = NULL, *ver = NULL;
	cf_err_t err = {0};
	bool found = false;

	snprintf(cur, sizeof(cur), "%s/web/current", f->state);
	write_text(cur, "garbage\n");
	assert_int_equal(store_get_current(st, &got, NULL, &ver, &found, &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_STATE);
	assert_non_null(strstr(err.msg, cur));
	assert_null(ver);

	/* names a version that is not there */
	write_text(cur, "20260101T000000Z-deadbeef\n");
	assert_int_equal(store_get_current(st, &got, NULL, &ver, &found, &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_STATE);
	assert_non_null(strstr(err.msg, "20260101T000000Z-deadbeef"));

	/* a version with its cert missing: the message names the file */
	unlink(cur);
	make_bundle(f->base, "a.test", &a);
	assert_int_equal(store_put_bundle(st, &a, &id, &err), 0);
	snprintf(path, sizeof(path), "%s/web/versions/%s/cert.pem", f->state,
	         id);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(store_get_current(st, &got, NULL, &ver, &found, &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_STATE);
	assert_non_null(strstr(err.msg, path));

	/* a corrupt cert */
	write_text(path, "-----BEGIN CERTIFICATE-----\nAAAA\n"
	                 "-----END CERTIFICATE-----\n");
	assert_int_equal(store_get_current(st, &got, NULL, &ver, &found, &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_STATE);
	assert_non_null(strstr(err.msg, "cert.pem"));
	assert_null(got.cert);
	assert_null(got.privkey);

	free(id);
	crypto_bundle_free(&a);
	store_close(st);
}

/* A run killed at any instant of store_put_bundle leaves no current, the
 * old one or the new one: each whole. */
static void
test_killed_put(void **state)
{
	struct fixture *f = *state;
	struct cf_bundle a, b;
	char name[16];
	int round;

	make_bundle(f->base, "a.test", &a);
	make_bundle(f->base, "b.test", &b);
	srand((unsigned)getpid());
	for (round = 0; round < 20; round++) {
		snprintf(name, sizeof(name), "r%d", round);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			cf_store_t *cst = NULL;
			cf_err_t cerr;
			char *id;

			if (store_open(f->state, name, &cst, &cerr) < 0 ||
			    store_lock(cst, "deploy", -1, &cerr) < 0)
				_exit(1);
			/* a fresh store per round: both puts write a version */
			if (store_put_bundle(cst, &a, &id, &cerr) < 0 ||
			    store_put_bundle(cst, &b, &id, &cerr) < 0)
				_exit(1);
			_exit(0);
		}
		struct timespec ts = {0, (long)(rand() % 25) * 1000000L};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);

		cf_store_t *st = NULL;
		struct cf_bundle got = {0};
		struct cf_certinfo info = {0};
		cf_err_t err = {0};
		bool found = false;

		if (store_open(f->state, name, &st, &err) < 0 ||
		    store_lock(st, "check", 0, &err) < 0 ||
		    store_get_current(st, &got, &info, NULL, &found, &err) < 0)
			fail_msg("round %d: %s", round, err.msg);
		if (found)
			assert_true(strcmp(got.cert, a.cert) == 0 ||
			            strcmp(got.cert, b.cert) == 0);
		/* and the next put works and sweeps any half version */
		char *id = NULL;
		if (store_put_bundle(st, &b, &id, &err) < 0)
			fail_msg("round %d: put after kill: %s", round,
			         err.msg);
		char vdir[512];
		snprintf(vdir, sizeof(vdir), "%s/versions", store_dir(st));
		assert_true(count_entries(vdir) <= 2);
		free(id);
		crypto_bundle_free(&got);
		crypto_certinfo_free(&info);
		store_close(st);
	}
	crypto_bundle_free(&a);
	crypto_bundle_free(&b);
}

/* ---- JSON state -------------------------------------------------------- */

static void
test_nodes_round_trip(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = open_ok(f);
	struct cf_node_states ns = {0}, back = {0};
	struct cf_node_state *n;
	char path[PATH_MAX];
	cf_err_t err = {0};

	assert_int_equal(store_load_nodes(st, &ns, &err), 0);
	assert_int_equal(ns.n, 0);

	n = store_node(&ns, "web1");
	assert_non_null(n);
	snprintf(n->serving_sha256, sizeof(n->serving_sha256), "%064d", 7);
	n->serving_not_after = 1800000000;
	n->last_seen = 1700000001;
	n->last_success = 1700000002;
	n->last_change = 1700000003;
	n->quarantined = true;
	n->reason = strdup("timeout");
	n->detail = strdup("no answer \"quoted\" after 10 s");
	n->quarantined_since = 1700000004;
	n->attempts = 3;
	n->manual = false;
	n->endpoints = calloc(2, sizeof(*n->endpoints));
	assert_non_null(n->endpoints);
	n->n_endpoints = 2;
	n->endpoints[0].port = 443;
	n->endpoints[0].sni = strdup("www.example.test");
	n->endpoints[0].reason = strdup("verify-name");
	n->endpoints[0].seen = 1700000005;
	n->endpoints[1].port = 587;
	n->endpoints[1].starttls = STARTTLS_SMTP;
	n->endpoints[1].sni = strdup("example.test");
	n->endpoints[1].ok = true;
	n->endpoints[1].seen = 1700000006;
	n = store_node(&ns, "web2");
	assert_non_null(n);
	n->manual = true;
	assert_ptr_equal(store_node(&ns, "web1"), &ns.v[0]);
	assert_int_equal(ns.n, 2);

	if (store_save_nodes(st, &ns, &err) < 0)
		fail_msg("save: %s", err.msg);
	snprintf(path, sizeof(path), "%s/web/nodes.json", f->state);
	assert_int_equal(mode_of(path), 0600);
	if (store_load_nodes(st, &back, &err) < 0)
		fail_msg("load: %s", err.msg);
	assert_int_equal(back.n, 2);
	n = store_node(&back, "web1");
	assert_string_equal(n->serving_sha256, ns.v[0].serving_sha256);
	assert_int_equal(n->serving_not_after, 1800000000);
	assert_int_equal(n->last_seen, 1700000001);
	assert_int_equal(n->last_success, 1700000002);
	assert_int_equal(n->last_change, 1700000003);
	assert_true(n->quarantined);
	assert_string_equal(n->reason, "timeout");
	assert_string_equal(n->detail, "no answer \"quoted\" after 10 s");
	assert_int_equal(n->quarantined_since, 1700000004);
	assert_int_equal(n->attempts, 3);
	assert_false(n->manual);
	assert_int_equal(n->n_endpoints, 2);
	assert_int_equal(n->endpoints[0].port, 443);
	assert_int_equal(n->endpoints[0].starttls, STARTTLS_NONE);
	assert_string_equal(n->endpoints[0].sni, "www.example.test");
	assert_false(n->endpoints[0].ok);
	assert_string_equal(n->endpoints[0].reason, "verify-name");
	assert_int_equal(n->endpoints[0].seen, 1700000005);
	assert_int_equal(n->endpoints[1].port, 587);
	assert_int_equal(n->endpoints[1].starttls, STARTTLS_SMTP);
	assert_string_equal(n->endpoints[1].sni, "example.test");
	assert_true(n->endpoints[1].ok);
	assert_null(n->endpoints[1].reason);
	assert_int_equal(n->endpoints[1].seen, 1700000006);
	n = store_node(&back, "web2");
	assert_true(n->manual);
	assert_int_equal(n->n_endpoints, 0);
	assert_false(n->quarantined);
	assert_null(n->reason);
	assert_string_equal(n->serving_sha256, "");
	assert_int_equal(back.n, 2);

	store_nodes_free(&ns);
	store_nodes_free(&back);
	store_close(st);
}

static void
expect_corrupt_nodes(struct fixture *f, cf_store_t *st, const char *text,
                     const char *want)
{
	struct cf_node_states ns = {0};
	char path[PATH_MAX], *after;
	cf_err_t err = {0};
	size_t len;

	snprintf(path, sizeof(path), "%s/web/nodes.json", f->state);
	write_text(path, text);
	assert_int_equal(store_load_nodes(st, &ns, &err), -1);
	assert_int_equal(err.code, CF_ERR_STATE);
	assert_non_null(strstr(err.msg, path));
	assert_non_null(strstr(err.msg, "corrupt state file"));
	assert_non_null(strstr(err.msg, "move it aside"));
	if (strstr(err.msg, want) == NULL)
		fail_msg("'%s' not in '%s'", want, err.msg);
	assert_null(ns.v);
	after = slurp(path, &len);
	assert_non_null(after);
	assert_string_equal(after, text);
	free(after);
}

static void
test_nodes_corrupt(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = open_ok(f);

	expect_corrupt_nodes(f, st,
	                     "{\"version\":1,\n\"nodes\":{\"a\":", "line ");
	expect_corrupt_nodes(f, st, "", "line ");
	expect_corrupt_nodes(f, st, "[1,2]", "not a JSON object");
	expect_corrupt_nodes(f, st, "{\"version\":1,\"nodes\":[]}", "nodes");
	expect_corrupt_nodes(f, st,
	                     "{\"version\":1,\"nodes\":{\"a\":{\"attempts\":"
	                     "\"x\"}}}",
	                     "attempts");
	expect_corrupt_nodes(f, st,
	                     "{\"version\":1,\"nodes\":{\"a\":{\"attempts\":-1}"
	                     "}}",
	                     "attempts");
	expect_corrupt_nodes(f, st,
	                     "{\"version\":1,\"nodes\":{\"a\":{\"quarantined\":"
	                     "1}}}",
	                     "quarantined");
	expect_corrupt_nodes(f, st,
	                     "{\"version\":1,\"nodes\":{\"a\":{\"reason\":5}}}",
	                     "reason");
	expect_corrupt_nodes(f, st, "{\"version\":1,\"nodes\":{\"a\":7}}",
	                     "not an object");
	expect_corrupt_nodes(f, st, "{\"nodes\":{}}", "version");
	expect_corrupt_nodes(f, st,
	                     "{\"version\":1,\"nodes\":{\"a\":{\"endpoints\""
	                     ":{}}}}",
	                     "endpoints: expected an array");
	expect_corrupt_nodes(f, st,
	                     "{\"version\":1,\"nodes\":{\"a\":{\"endpoints\""
	                     ":[{\"port\":443,\"sni\":\"a.test\"},7]}}}",
	                     "endpoints[1]: not an object");
	expect_corrupt_nodes(f, st,
	                     "{\"version\":1,\"nodes\":{\"a\":{\"endpoints\""
	                     ":[{\"port\":70000,\"sni\":\"a.test\"}]}}}",
	                     "endpoints[0]: port");
	expect_corrupt_nodes(f, st,
	                     "{\"version\":1,\"nodes\":{\"a\":{\"endpoints\""
	                     ":[{\"port\":443}]}}}",
	                     "endpoints[0]: sni");
	expect_corrupt_nodes(f, st,
	                     "{\"version\":1,\"nodes\":{\"a\":{\"endpoints\""
	                     ":[{\"port\":25,\"sni\":\"a\",\"starttls\":"
	                     "\"xmpp\"}]}}}",
	                     "endpoints[0]: starttls");
	expect_corrupt_nodes(f, st,
	                     "{\"version\":1,\"nodes\":{\"a\":{\"endpoints\""
	                     ":[{\"port\":25,\"sni\":\"a\",\"ok\":1}]}}}",
	                     "endpoints[0]: ok");

	/* saving never happens implicitly: the file stays as it was even
	 * after a failed load (checked in expect_corrupt_nodes) */
	store_close(st);
}

/* nodes.json from before per-endpoint results (no "endpoints", or null)
 * loads with none; an entry's optional fields read as their zero value:
 * starttls none, not ok, no reason, seen 0. */
static void
test_nodes_endpoints_tolerant(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = open_ok(f);
	struct cf_node_states ns = {0};
	char path[PATH_MAX];
	cf_err_t err = {0};

	snprintf(path, sizeof(path), "%s/web/nodes.json", f->state);
	write_text(path, "{\"version\":1,\"nodes\":{\"a\":{\"attempts\":1},"
	                 "\"b\":{\"endpoints\":null},\"c\":{\"endpoints\":"
	                 "[{\"port\":443,\"sni\":\"c.test\",\"reason\":null}]"
	                 "}}}");
	if (store_load_nodes(st, &ns, &err) < 0)
		fail_msg("load: %s", err.msg);
	assert_int_equal(store_node(&ns, "a")->n_endpoints, 0);
	assert_int_equal(store_node(&ns, "b")->n_endpoints, 0);
	assert_int_equal(store_node(&ns, "c")->n_endpoints, 1);
	assert_int_equal(ns.v[2].endpoints[0].port, 443);
	assert_int_equal(ns.v[2].endpoints[0].starttls, STARTTLS_NONE);
	assert_false(ns.v[2].endpoints[0].ok);
	assert_null(ns.v[2].endpoints[0].reason);
	assert_int_equal(ns.v[2].endpoints[0].seen, 0);
	store_nodes_free(&ns);
	store_close(st);
}

static void
test_renewal_round_trip(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = open_ok(f);
	struct cf_renewal_state r = {0}, back;
	char path[PATH_MAX];
	cf_err_t err = {0};

	memset(&back, 0xff, sizeof(back));
	assert_int_equal(store_load_renewal(st, &back, &err), 0);
	assert_int_equal(back.last_attempt, 0);
	assert_null(back.last_error);

	r.last_attempt = 1700000000;
	r.last_success = 1690000000;
	r.consecutive_failures = 2;
	r.last_error = strdup("CA said: rateLimited");
	r.ari_retry_after = 1700003600;
	r.ari_window_start = 1710000000;
	r.ari_window_end = 1710086400;
	r.ari_chosen = 1710040000;
	r.ari_cert_id = strdup("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
	r.ari_explanation = NULL;
	if (store_save_renewal(st, &r, &err) < 0)
		fail_msg("save: %s", err.msg);
	snprintf(path, sizeof(path), "%s/web/renewal.json", f->state);
	assert_int_equal(mode_of(path), 0600);
	if (store_load_renewal(st, &back, &err) < 0)
		fail_msg("load: %s", err.msg);
	assert_int_equal(back.last_attempt, r.last_attempt);
	assert_int_equal(back.last_success, r.last_success);
	assert_int_equal(back.consecutive_failures, 2);
	assert_string_equal(back.last_error, r.last_error);
	assert_int_equal(back.ari_retry_after, r.ari_retry_after);
	assert_int_equal(back.ari_window_start, r.ari_window_start);
	assert_int_equal(back.ari_window_end, r.ari_window_end);
	assert_int_equal(back.ari_chosen, r.ari_chosen);
	assert_string_equal(back.ari_cert_id, r.ari_cert_id);
	assert_null(back.ari_explanation);
	store_renewal_free(&back);

	write_text(path, "{\"version\":1,\"last_error\":[]}");
	assert_int_equal(store_load_renewal(st, &back, &err), -1);
	assert_int_equal(err.code, CF_ERR_STATE);
	assert_non_null(strstr(err.msg, path));
	assert_non_null(strstr(err.msg, "last_error"));

	store_renewal_free(&r);
	store_close(st);
}

static void
test_account_key_path(void **state)
{
	struct fixture *f = *state;
	cf_store_t *st = open_ok(f);
	char *p1, *p2, *p3, dir[PATH_MAX];

	p1 = store_account_key_path(st, "https://acme.example/dir");
	p2 = store_account_key_path(st, "https://acme.example/dir");
	p3 = store_account_key_path(st, "https://staging.example/dir");
	assert_non_null(p1);
	assert_non_null(p3);
	assert_string_equal(p1, p2);
	assert_string_not_equal(p1, p3);
	snprintf(dir, sizeof(dir), "%s/accounts/", f->state);
	assert_int_equal(strncmp(p1, dir, strlen(dir)), 0);
	assert_string_equal(p1 + strlen(dir) + 16, "/account.key");
	assert_int_equal(mode_of(dir), 0700);
	snprintf(dir, sizeof(dir), "%.*s", (int)(strlen(p1) - 12), p1);
	assert_int_equal(mode_of(dir), 0700);
	free(p1);
	free(p2);
	free(p3);
	store_close(st);
}

/* ---- disk full --------------------------------------------------------- */

static void
test_disk_full(void **state)
{
	struct fixture *f = *state;
	struct cf_node_states ns = {0}, back = {0};
	struct cf_bundle a, b, got = {0};
	char *ida = NULL, *idb = NULL, *ver = NULL, cmd[PATH_MAX + 64];
	char path[PATH_MAX], *before, *after;
	cf_err_t err = {0};
	bool found = false;
	size_t len;

	make_bundle(f->base, "a.test", &a);
	make_bundle(f->base, "b.test", &b);
	snprintf(f->mnt, sizeof(f->mnt), "%s/mnt", f->base);
	assert_int_equal(mkdir(f->mnt, 0700), 0);
	if (mount("tmpfs", f->mnt, "tmpfs", 0, "size=256k,mode=0700") < 0) {
		f->mnt[0] = '\0';
		crypto_bundle_free(&a);
		crypto_bundle_free(&b);
		skip(); /* not root / no mount namespace rights */
	}
	snprintf(f->state, sizeof(f->state), "%s/state", f->mnt);
	cf_store_t *st = open_ok(f);
	assert_int_equal(store_lock(st, "deploy", 0, &err), 0);
	assert_int_equal(store_put_bundle(st, &a, &ida, &err), 0);
	assert_non_null(store_node(&ns, "web1"));
	ns.v[0].attempts = 1;
	assert_int_equal(store_save_nodes(st, &ns, &err), 0);
	snprintf(path, sizeof(path), "%s/web/nodes.json", f->state);
	before = slurp(path, &len);
	assert_non_null(before);

	snprintf(cmd, sizeof(cmd),
	         "dd if=/dev/zero of=%s/fill bs=4k 2>/dev/null", f->mnt);
	assert_int_not_equal(system(cmd), 0); /* stops at ENOSPC */

	/* renew asks first, and so never orders what it cannot keep */
	assert_int_equal(store_check_writable(st, &err), -1);
	assert_int_equal(err.code, CF_ERR_IO);
	if (strstr(err.msg, "No space left on device") == NULL ||
	    strstr(err.msg, "/web/versions") == NULL)
		fail_msg("unclear: %s", err.msg);

	assert_int_equal(store_put_bundle(st, &b, &idb, &err), -1);
	assert_int_equal(err.code, CF_ERR_IO);
	if (strstr(err.msg, "No space left on device") == NULL)
		fail_msg("unclear: %s", err.msg);
	assert_null(idb);

	ns.v[0].attempts = 2;
	assert_int_equal(store_save_nodes(st, &ns, &err), -1);
	assert_int_equal(err.code, CF_ERR_IO);
	assert_non_null(strstr(err.msg, "nodes.json"));

	/* the previous state is whole */
	if (store_get_current(st, &got, NULL, &ver, &found, &err) < 0)
		fail_msg("get: %s", err.msg);
	assert_true(found);
	assert_string_equal(ver, ida);
	assert_string_equal(got.cert, a.cert);
	assert_string_equal(got.privkey, a.privkey);
	after = slurp(path, &len);
	assert_non_null(after);
	assert_string_equal(after, before);
	assert_int_equal(store_load_nodes(st, &back, &err), 0);
	assert_int_equal(back.v[0].attempts, 1);

	/* nothing half-written left behind: the next put (after space is
	 * freed) works and there is exactly the one old version */
	snprintf(cmd, sizeof(cmd), "%s/fill", f->mnt);
	assert_int_equal(unlink(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s/web/versions", f->state);
	assert_int_equal(count_entries(cmd), 1);
	assert_int_equal(store_check_writable(st, &err), 0);
	assert_int_equal(count_entries(cmd), 1); /* the probe left nothing */
	assert_int_equal(store_put_bundle(st, &b, &idb, &err), 0);

	free(before);
	free(after);
	free(ver);
	free(ida);
	free(idb);
	store_nodes_free(&ns);
	store_nodes_free(&back);
	crypto_bundle_free(&got);
	crypto_bundle_free(&a);
	crypto_bundle_free(&b);
	store_close(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	    T(test_open_creates_private_dirs),
	    T(test_open_refuses_loose_dir),
	    T(test_open_refuses_reserved_names),
	    T(test_lock_conflict_names_holder),
	    T(test_lock_blocking_wait),
	    T(test_lock_free_after_holder_killed),
	    T(test_bundle_round_trip),
	    T(test_previous_and_reuse),
	    T(test_keep_versions),
	    T(test_leftover_tmp_removed),
	    T(test_current_broken),
	    T(test_killed_put),
	    T(test_nodes_round_trip),
	    T(test_nodes_corrupt),
	    T(test_nodes_endpoints_tolerant),
	    T(test_renewal_round_trip),
	    T(test_account_key_path),
	    T(test_disk_full),
#undef T
	};

	umask(022);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
