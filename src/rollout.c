/* rollout.c - the per-node pipeline, the worker pool, the canary gate.
 *
 * Invariants this file keeps:
 *  - a node never waits for another node, except at the canary gate;
 *  - nothing is written to a node before its host key and our login are
 *    proven, and before the canary gate lets it through;
 *  - files go live by rename(2) of a complete temp file, never by rewriting
 *    a file in place, so nginx & co. never read a partial or missing file;
 *  - a node that fails after its files were swapped gets its previous files
 *    back (and a reload), so it keeps serving its previous certificate.
 *
 * libssh2 1.10 cannot overwrite with SFTP rename on OpenSSH (no
 * posix-rename), so the swap is done by a small POSIX sh script sent on the
 * exec channel's stdin: `mv -f` is rename(2) within a directory. Every value
 * in that script is single-quoted; the playbook validated paths to a
 * shell-inert charset anyway. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "certfleet/gate.h"
#include "certfleet/rollout.h"
#include "certfleet/tlsprobe.h"
#include "certfleet/util.h"

/* Stage script exit codes (also in the script text below). */
#define STAGE_OK 0
#define STAGE_UNSAFE 10
#define STAGE_WRITE 11
#define STAGE_CHECK 12
#define STAGE_RELOAD 13
#define STAGE_NO_MARKER (-2) /* status 0 without "certfleet-ok" */

struct payload {
	const char *data;
	size_t len;
};

struct run {
	const struct cf_playbook *pb;
	const cf_ssh_ctx_t *ssh;
	const struct cf_bundle *bundle;
	const struct cf_certinfo *info;
	const struct cf_rollout_opts *opts;
	struct cf_rollout_result *res;

	struct payload *payloads;   /* one per deploy.files entry */
	char *combined;             /* fullchain+key, secret */
	size_t combined_len;
	char **tmp_paths;           /* per file: DIR/.certfleet.BASE.TOKEN.tmp */
	char *stage_script;         /* identical for every node; secret */
	size_t stage_script_cap;
	char *rollback_script;
	char *preflight_script;     /* dry run: what would fail; no secrets */

	size_t *queue;              /* indices of nodes to process */
	size_t n_queue;

	/* fields below are guarded by mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t next;
	size_t done;
	struct gate_state gate;     /* the canary gate's decisions (gate.h) */

	bool trace;
	struct tlsprobe_ctx *tls;   /* shared by every probe of the run */
	const char **names;         /* every SNI verify asks for; [0] is
	                               verify.server_name */
	size_t n_names;
	struct tlsprobe_cert *want_chain; /* the bundle's intermediates */
	size_t n_want_chain;

	/* rollout_each */
	cf_node_fn each_fn;
	void *each_arg;
};

/* ---- remote scripts ---- */

static int
dirname_of(const char *path, cf_buf_t *out)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL || slash == path)
		return cf_buf_append(out, "/", 1);
	return cf_buf_append(out, path, (size_t)(slash - path));
}

static int
add_var(cf_buf_t *b, const char *name, size_t i, const char *value)
{
	if (cf_buf_printf(b, "%s%zu=", name, i) < 0 ||
	    cf_buf_shquote(b, value) < 0 || cf_buf_append(b, "\n", 1) < 0)
		return -1;
	return 0;
}

/* Length of s single-quoted by cf_buf_shquote. */
static size_t
shquote_len(const char *s, size_t len)
{
	size_t n = 2, i;

	for (i = 0; i < len; i++)
		n += s[i] == '\'' ? 4 : 1;
	return n;
}

/* The webroot a renew writes http-01 files to, "" when it writes none. */
static const char *
http01_webroot(const struct cf_playbook *pb)
{
	if (pb->acme.directory == NULL || pb->deploy.webroot == NULL ||
	    (pb->acme.challenge != NULL &&
	     strcmp(pb->acme.challenge, "http-01") != 0))
		return "";
	return pb->deploy.webroot;
}

/* The dry run's preflight: what the stage script (and a renew's http-01
 * step) would need, checked without writing anything, so that a node whose
 * first real run would fail says why beforehand.  One "certfleet: ..." line
 * per problem, "certfleet-note: ..." for what works differently than one
 * would guess; exits with the stage code of the first problem.  check and
 * reload themselves never run: `sudo -n -l CMD` asks sudo whether CMD
 * would run without a password. */
static const char preflight_body[] =
    "nl='\n'\n"
    "get() { eval \"$1=\\${$2$3}\"; }\n"
    "cause() { why=${1%\"$nl\"}; why=${why##*\"$nl\"}; why=${why##*: }; }\n"
    "rc=0; bad=\n"
    "prob() { if [ $rc -eq 0 ]; then rc=$1; fi; shift; echo \"certfleet: $*\"; }\n"
    "me=$(id -un 2>/dev/null || id -u)\n"
    "ph=0; if [ -r /proc/sys/fs/protected_hardlinks ]; then read -r ph </proc/sys/fs/protected_hardlinks; fi\n"
    /* why directory $1 is not writable */
    "unwritable() {\n"
    "  case \",$(findmnt -n -o OPTIONS -T \"$1\" 2>/dev/null),\" in\n"
    "  *,ro,*) prob 11 \"$1 is on a read-only file system\" ;;\n"
    "  *) prob 11 \"$1 is not writable by $me: Permission denied (the login user $me needs write access to $1; see README: Preparing a node)\" ;;\n"
    "  esac\n"
    "}\n"
    "sudo_ok() {\n"
    "  what=$1; code=$2; cmd=$3\n"
    "  set -f; set -- $cmd; set +f\n"
    /* a command the login's PATH does not have fails every real run */
    "  case ${1:-} in ''|*=*|'('*|'{'*|'!') return 0 ;; sudo) ;; *) command -v \"$1\" >/dev/null 2>&1 || prob $code \"$what \\`$cmd\\`: $1: not found in $me's PATH\"; return 0 ;; esac\n"
    "  shift\n"
    "  while [ $# -gt 0 ]; do case $1 in -u|-g|-C|-h|-p|-r|-t|-U|-D) shift; [ $# -gt 0 ] && shift ;; --) shift; break ;; -*) shift ;; *) break ;; esac; done\n"
    /* the command sudo runs ends at the first shell operator */
    "  k=0; for w in \"$@\"; do case $w in '&&'|'||'|'|'|';'|'&'|*';') break ;; esac; k=$((k+1)); done\n"
    "  m=$#; j=0; while [ $j -lt $m ]; do if [ $j -lt $k ]; then set -- \"$@\" \"$1\"; fi; shift; j=$((j+1)); done\n"
    "  [ $# -gt 0 ] || return 0\n"
    "  if ! out=$(sudo -n -l \"$@\" </dev/null 2>&1); then\n"
    "    cause \"$out\"; [ -n \"$why\" ] || why=\"not allowed by sudoers\"\n"
    "    prob $code \"$what \\`$cmd\\` would not run unattended (sudo -n -l: $why): $me needs a NOPASSWD sudoers rule for it, see README: Preparing a node\"\n"
    "  fi\n"
    "}\n"
    "main() {\n"
    "i=0; while [ $i -lt $N ]; do\n"
    "  get t T $i; get d D $i; get sz SZ $i; get og OG $i\n"
    /* one report per directory; a file in one we cannot write has
     * nothing more to say */
    "  case \"$nl$bad$nl\" in *\"$nl$d$nl\"*) i=$((i+1)); continue ;; esac\n"
    "  if ! [ -d \"$d\" ]; then prob 11 \"directory $d does not exist\"; bad=\"$bad$nl$d\"; i=$((i+1)); continue\n"
    "  elif ! [ -w \"$d\" ] || ! [ -x \"$d\" ]; then unwritable \"$d\"; bad=\"$bad$nl$d\"; i=$((i+1)); continue\n"
    "  else\n"
    "    avail=$(df -Pk -- \"$d\" 2>/dev/null | { read -r _; read -r _ _ _ a _; echo \"${a:-}\"; })\n"
    "    need=$((sz / 1024 + 4))\n"
    "    case $avail in ''|*[!0-9]*) ;; *) if [ \"$avail\" -lt \"$need\" ]; then prob 11 \"$d has $avail KiB free, the new $t needs about $need KiB: No space left on device\"; fi ;; esac\n"
    "  fi\n"
    "  if [ -L \"$t\" ]; then prob 10 \"$t is a symbolic link: refusing to replace it\"\n"
    "  elif [ -e \"$t\" ] && ! [ -f \"$t\" ]; then prob 10 \"$t exists and is not a regular file\"\n"
    "  elif [ -f \"$t\" ] && ! [ -O \"$t\" ] && [ \"$ph\" = 1 ] && ! { [ -r \"$t\" ] && [ -w \"$t\" ]; }; then\n"
    /* what the stage script's backup step will meet */
    "    if [ -r \"$t\" ]; then echo \"certfleet-note: $t is not $me's and fs.protected_hardlinks=1 refuses a hard link: its previous version will be kept as a copy\"\n"
    "    else prob 11 \"cannot keep previous version of $t: it is not $me's, fs.protected_hardlinks=1 refuses a hard link and $me cannot read it to copy it: make $me its owner once (chown $me $t; see README: Preparing a node)\"; fi\n"
    "  fi\n"
    "  if [ -n \"$og\" ] && [ \"$(id -u)\" != 0 ]; then prob 11 \"owner/group for $t need a login that may chown (root); $me may not\"; fi\n"
    "  i=$((i+1)); done\n"
    "if [ -n \"$WEBROOT\" ]; then\n"
    "  w=\"$WEBROOT/.well-known/acme-challenge\"\n"
    "  while ! [ -e \"$w\" ] && [ \"$w\" != \"$WEBROOT\" ]; do w=${w%/*}; done\n"
    "  if ! [ -d \"$w\" ]; then prob 11 \"http-01 webroot $WEBROOT does not exist\"\n"
    "  elif ! [ -w \"$w\" ] || ! [ -x \"$w\" ]; then unwritable \"$w\"; fi\n"
    "fi\n"
    "sudo_ok check 12 \"$CHECK\"\n"
    "sudo_ok reload 13 \"$RELOAD\"\n"
    "echo certfleet-preflight-done\n"
    "exit $rc\n"
    "}\n"
    "main\n";

/* The stage script: refuse unsafe targets, write the new files, back up,
 * swap, check, reload, and restore on any failure.  Prints
 * "certfleet-prev I" for every file that got a backup this run (the
 * rollback script restores just those).
 *
 * Every process started on a node costs it a fork and an exec (5-10 ms of
 * CPU each on a small VM), so the script does with shell builtins what it
 * can: the files' bytes travel inside the script and are written by the
 * printf builtin (never in an argv), into O_EXCL temp files (set -C), with
 * the mode from the umask; one sha256sum finds the files that already hold
 * the new bytes (those are neither rewritten nor backed up, so a re-run
 * cannot replace the previous version's backup with a copy of the new
 * files); one sync makes the new bytes durable before any rename; one
 * timeout-bounded sh runs check and reload.  Per changed file that leaves
 * ln (backup) and mv (the atomic swap).
 *
 * Everything runs from main(), called on the script's last line: sh runs
 * commands as it reads them, and a script cut short by a dropped
 * connection must do nothing at all rather than half its steps. */
static int
build_scripts(struct run *r, const char *token, cf_err_t *err)
{
	const struct cf_playbook *pb = r->pb;
	cf_buf_t s = {0}, rb = {0}, pf = {0}, dir = {0};
	size_t i, n = pb->deploy.n_files, secret = 0;
	char mode[8], umask_s[8], hex[65];
	unsigned char md[32];
	int rc = -1;

	r->tmp_paths = calloc(n, sizeof(char *));
	if (r->tmp_paths == NULL)
		goto nomem;
	if (cf_buf_printf(&s, "set -u\numask 077\nN=%zu\n", n) < 0)
		goto nomem;
	for (i = 0; i < n; i++) {
		const struct cf_file_spec *f = &pb->deploy.files[i];
		const char *base = strrchr(f->path, '/') + 1;

		dir.len = 0;
		if (dirname_of(f->path, &dir) < 0)
			goto nomem;
		if (asprintf(&r->tmp_paths[i], "%s/.certfleet.%s.%s.tmp",
		             strcmp(dir.data, "/") == 0 ? "" : dir.data, base,
		             token) < 0) {
			r->tmp_paths[i] = NULL;
			goto nomem;
		}
		snprintf(mode, sizeof(mode), "%04o", f->mode);
		/* open(2) creates with 0666 & ~umask: exact for any mode
		 * within 0666; other bits need a chmod (X) */
		snprintf(umask_s, sizeof(umask_s), "%04o", ~f->mode & 0777);
		SHA256((const unsigned char *)r->payloads[i].data,
		       r->payloads[i].len, md);
		cf_hex(md, sizeof(md), hex);
		if (add_var(&s, "T", i, f->path) < 0 ||
		    add_var(&s, "D", i, dir.data) < 0 ||
		    add_var(&s, "B", i, base) < 0 ||
		    add_var(&s, "N", i, r->tmp_paths[i]) < 0 ||
		    add_var(&s, "M", i, mode) < 0 ||
		    add_var(&s, "U", i, umask_s) < 0 ||
		    add_var(&s, "X", i, (f->mode & ~0666u) ? "1" : "") < 0 ||
		    add_var(&s, "H", i, hex) < 0 ||
		    add_var(&s, "O", i, f->owner ? f->owner : "") < 0 ||
		    add_var(&s, "G", i, f->group ? f->group : "") < 0 ||
		    add_var(&rb, "T", i, f->path) < 0 ||
		    add_var(&rb, "D", i, dir.data) < 0 ||
		    add_var(&rb, "B", i, base) < 0 ||
		    add_var(&pf, "T", i, f->path) < 0 ||
		    add_var(&pf, "D", i, dir.data) < 0 ||
		    cf_buf_printf(&pf, "SZ%zu=%zu\nOG%zu=%s\n", i,
		                  r->payloads[i].len, i,
		                  f->owner || f->group ? "1" : "") < 0)
			goto nomem;
		secret += 24 + shquote_len(r->payloads[i].data,
		                           r->payloads[i].len);
	}
	if (cf_buf_append(&s, "CHECK=", 6) < 0 ||
	    cf_buf_shquote(&s, pb->deploy.check ? pb->deploy.check : "") < 0 ||
	    cf_buf_append(&s, "\nRELOAD=", 8) < 0 ||
	    cf_buf_shquote(&s, pb->deploy.reload ? pb->deploy.reload : "") < 0 ||
	    cf_buf_append(&rb, "RELOAD=", 7) < 0 ||
	    cf_buf_shquote(&rb, pb->deploy.reload ? pb->deploy.reload : "") < 0 ||
	    cf_buf_printf(&rb, "\nN=%zu\n", n) < 0 ||
	    cf_buf_printf(&pf, "N=%zu\nCHECK=", n) < 0 ||
	    cf_buf_shquote(&pf, pb->deploy.check ? pb->deploy.check : "") < 0 ||
	    cf_buf_append(&pf, "\nRELOAD=", 8) < 0 ||
	    cf_buf_shquote(&pf, pb->deploy.reload ? pb->deploy.reload : "") < 0 ||
	    cf_buf_append(&pf, "\nWEBROOT=", 9) < 0 ||
	    cf_buf_shquote(&pf, http01_webroot(pb)) < 0 ||
	    cf_buf_append(&pf, "\n", 1) < 0)
		goto nomem;
	/* check and reload together get half the node's deadline: one that
	 * hangs is killed on the node and the old files come back even after
	 * we have given up on the session */
	if (cf_buf_printf(&s, "\nLIMIT=%u\n",
	                  pb->ssh.timeout / 2 > 0 ? pb->ssh.timeout / 2 : 1) < 0 ||
	    cf_buf_printf(&rb, "LIMIT=%u\n",
	                  pb->ssh.timeout / 2 > 0 ? pb->ssh.timeout / 2 : 1) < 0)
		goto nomem;

	/* eval "x=\$T$i" reads variable T<i>; the values themselves are never
	 * evaluated (they are expanded inside double quotes). */
	static const char stage_body[] =
	    "\n"
	    "nl='\n'\n"
	    "get() { eval \"$1=\\${$2$3}\"; }\n"
	    "run() { if command -v timeout >/dev/null 2>&1; then timeout -k 2 \"$LIMIT\" sh -c \"$@\"; else sh -c \"$@\"; fi; }\n"
	    /* check, then a marker, then reload: one process for both */
	    "CR='if [ -n \"$1\" ]; then (eval \"$1\") || exit $?; fi; echo certfleet-checked; if [ -n \"$2\" ]; then (eval \"$2\") || exit $?; fi'\n"
	    /* the cause from a failed command's stderr: its last line after the
	     * last ": ", i.e. strerror's text ("Permission denied") */
	    "cause() { why=${1%\"$nl\"}; why=${why##*\"$nl\"}; why=${why##*: }; [ -n \"$why\" ] || why=\"failed\"; }\n"
	    /* what the operator can do about a cause, for directory $1 */
	    "hint() { case $why in\n"
	    "  *'ermission denied'*|*'ot permitted'*) hint=\" (the login user $(id -un 2>/dev/null) needs write access to $1; see README: Preparing a node)\" ;;\n"
	    "  *'ead-only file system'*) hint=\" ($1 is on a read-only file system)\" ;;\n"
	    "  *'o space left'*|*'uota exceeded'*) hint=\" (the file system of $1 is full)\" ;;\n"
	    "  *) hint= ;; esac; }\n"
	    "cleanup_tmp() { i=0; while [ $i -lt $N ]; do eval \"z=\\${Z$i:-}\"; if [ -n \"$z\" ]; then get n N $i; rm -f -- \"$n\"; fi; i=$((i+1)); done; }\n"
	    /* $1 -> $2 (a temp name in the same directory): a hard link (same
	     * bytes, mode, owner), or, when fs.protected_hardlinks refuses to
	     * link a file the login does not own, a copy of its bytes and mode
	     * created exclusively (umask 077 until cp -p sets the mode) */
	    "keep() { rm -f -- \"$2\"; lerr=$(ln -- \"$1\" \"$2\" 2>&1) && return 0; rm -f -- \"$2\"; cerr=$(cp -p -- \"$1\" \"$2\" 2>&1) && return 0; rm -f -- \"$2\"; return 1; }\n"
	    "restore() {\n"
	    "  i=0; while [ $i -lt $N ]; do\n"
	    "    get t T $i; get d D $i; get b B $i; eval \"p=\\${P$i:-}\"; eval \"w=\\${W$i:-}\"\n"
	    "    if [ -n \"$w\" ]; then\n"
	    "      eval \"e=\\${E$i:-}\"; restored=1\n"
	    "      if [ -n \"$p\" ]; then keep \"$d/.$b.certfleet-prev\" \"$d/.certfleet.$b.rb.tmp\" && mv -f -- \"$d/.certfleet.$b.rb.tmp\" \"$t\";\n"
	    "      elif [ -z \"$e\" ]; then rm -f -- \"$t\"; fi\n"
	    "    fi\n"
	    "    i=$((i+1)); done\n"
	    "  if [ -n \"${restored:-}\" ]; then echo certfleet-restored; fi\n"
	    "}\n"
	    "fail() { code=$1; shift; umask 077; set +C; echo \"certfleet: $*\" >&2; cleanup_tmp; exit $code; }\n"
	    /* the write of $1 (temp of $3, in dir $2) failed with stderr $4:
	     * dash's printf says only "I/O error", so a bounded write of zeros
	     * to the same (doomed) temp file names the errno */
	    "wfail() {\n"
	    "  cause \"$4\"\n"
	    "  case $why in *'I/O error'*) e2=$( { head -c \"${#c}\" /dev/zero >>\"$1\"; } 2>&1 ) || cause \"$e2\" ;; esac\n"
	    "  c=; hint \"$2\"; fail 11 \"cannot write $3: $why$hint\"\n"
	    "}\n"
	    "main() {\n"
	    /* an external printf would carry a key in its argv */
	    "case $(command -V printf 2>/dev/null) in *builtin*) ;; *) fail 11 \"printf is not a builtin of this node's sh: refusing to pass key bytes in an argv\" ;; esac\n"
	    /* 1. targets must be regular files (or absent); a symlink planted at a
	     *    target is refused, never followed or replaced. */
	    "set --\n"
	    "i=0; while [ $i -lt $N ]; do\n"
	    "  get t T $i; get d D $i; get b B $i\n"
	    "  [ -d \"$d\" ] || fail 11 \"directory $d does not exist\"\n"
	    "  if [ -L \"$t\" ]; then fail 10 \"$t is a symbolic link: refusing to replace it\"; fi\n"
	    "  if [ -e \"$t\" ] && [ ! -f \"$t\" ]; then fail 10 \"$t exists and is not a regular file\"; fi\n"
	    /* stale temp files of killed runs */
	    "  for x in \"$d/.certfleet.$b.\"*.tmp; do if [ -e \"$x\" ] || [ -L \"$x\" ]; then rm -f -- \"$x\"; fi; done\n"
	    "  if [ -f \"$t\" ]; then eval \"E$i=1\"; set -- \"$@\" \"$t\"; fi\n"
	    "  i=$((i+1)); done\n"
	    /* 2. which targets already hold the new bytes */
	    "sums=\n"
	    "if [ $# -gt 0 ]; then sums=$(sha256sum -- \"$@\" 2>/dev/null) || sums=; fi\n"
	    /* 3. write the changed files: O_EXCL temp files, exact mode; the
	     *    subshell keeps the write's error text for the message */
	    "set --\n"
	    "i=0; while [ $i -lt $N ]; do\n"
	    "  get t T $i; get n N $i; get h H $i\n"
	    "  case \"$nl$sums$nl\" in *\"$nl$h  $t$nl\"*) eval \"S$i=1\"; i=$((i+1)); continue ;; esac\n"
	    "  get d D $i; get u U $i; get x X $i; get m M $i; get o O $i; get g G $i; get c C $i\n"
	    "  set -C; umask \"$u\"\n"
	    "  if ! err=$( { printf '%s' \"$c\" >\"$n\"; } 2>&1 ); then eval \"Z$i=1\"; wfail \"$n\" \"$d\" \"$t\" \"$err\"; fi\n"
	    "  c=; umask 077; set +C; eval \"Z$i=1\"; set -- \"$@\" \"$n\"\n"
	    "  if [ -n \"$x\" ]; then err=$(chmod \"$m\" \"$n\" 2>&1) || { cause \"$err\"; fail 11 \"chmod $m $t failed: $why\"; }; fi\n"
	    "  if [ -n \"$o$g\" ]; then err=$(chown -- \"$o${g:+:$g}\" \"$n\" 2>&1) || { cause \"$err\"; fail 11 \"chown $o${g:+:$g} $t failed: $why (owner and group need a login that may chown, i.e. root)\"; }; fi\n"
	    "  i=$((i+1)); done\n"
	    "i=0; while [ $i -lt $N ]; do unset \"C$i\"; i=$((i+1)); done\n"
	    /* the new bytes on disk before any rename makes them the file */
	    "if [ $# -gt 0 ]; then sync -- \"$@\" 2>/dev/null || sync; fi\n"
	    /* 4. keep the previous version (hard link, or a copy when the link
	     *    is refused); -ef: after a rollback target and backup are one
	     *    inode.  Nothing has been swapped yet: a failure here leaves
	     *    every target as it was. */
	    "i=0; while [ $i -lt $N ]; do\n"
	    "  get t T $i; get d D $i; get b B $i; eval \"e=\\${E$i:-}\"; eval \"sm=\\${S$i:-}\"\n"
	    "  if [ -n \"$e\" ] && [ -z \"$sm\" ]; then\n"
	    "    if ! [ \"$t\" -ef \"$d/.$b.certfleet-prev\" ]; then\n"
	    "      if ! lerr=$(ln -f -- \"$t\" \"$d/.$b.certfleet-prev\" 2>&1); then\n"
	    "        k=\"$d/.certfleet.$b.prev.tmp\"\n"
	    "        if ! { rm -f -- \"$k\"; cerr=$(cp -p -- \"$t\" \"$k\" 2>&1); }; then\n"
	    "          rm -f -- \"$k\"; cause \"$lerr\"; lwhy=$why; cause \"$cerr\"\n"
	    "          ph=0; if [ -r /proc/sys/fs/protected_hardlinks ]; then read -r ph </proc/sys/fs/protected_hardlinks; fi\n"
	    "          case $lwhy in *'ot permitted'*) if [ \"$ph\" = 1 ]; then lwhy=\"$lwhy: fs.protected_hardlinks=1 lets a login hard-link only files it owns\"; fi ;; esac\n"
	    "          me=$(id -un 2>/dev/null)\n"
	    "          fail 11 \"cannot keep previous version of $t: hard link refused ($lwhy) and cannot copy it ($why): make the login user $me its owner once (chown $me $t; see README: Preparing a node)\"\n"
	    "        fi\n"
	    "        err=$(mv -f -- \"$k\" \"$d/.$b.certfleet-prev\" 2>&1) || { rm -f -- \"$k\"; cause \"$err\"; hint \"$d\"; fail 11 \"cannot keep previous version of $t: $why$hint\"; }\n"
	    "      fi\n"
	    "    fi\n"
	    "    eval \"P$i=1\"; echo \"certfleet-prev $i\"\n"
	    "  fi\n"
	    "  i=$((i+1)); done\n"
	    /* 5. swap: rename(2) over the target, atomic for every reader */
	    "i=0; while [ $i -lt $N ]; do\n"
	    "  eval \"sm=\\${S$i:-}\"\n"
	    "  if [ -z \"$sm\" ]; then\n"
	    "    get t T $i; get n N $i; get d D $i\n"
	    "    if ! err=$(mv -f -- \"$n\" \"$t\" 2>&1); then cause \"$err\"; hint \"$d\"; restore; fail 11 \"cannot move new file into place at $t: $why$hint\"; fi\n"
	    "    eval \"W$i=1\"; eval \"Z$i=\"\n"
	    "  fi\n"
	    "  i=$((i+1)); done\n"
	    /* 6. check before the new files go live, then reload */
	    "if [ -n \"$CHECK$RELOAD\" ]; then\n"
	    "  out=$(run \"$CR\" sh \"$CHECK\" \"$RELOAD\" 2>&1 </dev/null); st=$?\n"
	    "  if [ $st -ne 0 ]; then\n"
	    "    if [ $st -eq 124 ] || [ $st -eq 137 ]; then out=\"$out did not finish within ${LIMIT}s (killed)\"; fi\n"
	    "    case $out in\n"
	    "    *certfleet-checked*) restore; if [ -n \"$RELOAD\" ]; then run \"$RELOAD\" </dev/null >/dev/null 2>&1; fi\n"
	    "      printf '%s\\n' \"$out\" >&2; fail 13 \"reload failed: $RELOAD\" ;;\n"
	    "    *) restore; printf '%s\\n' \"$out\" >&2; fail 12 \"check failed: $CHECK\" ;;\n"
	    "    esac\n"
	    "  fi\n"
	    "fi\n"
	    "echo certfleet-ok\n"
	    "}\n";
	static const char stage_tail[] = "main\n";

	if (cf_buf_append(&s, stage_body, sizeof(stage_body) - 1) < 0)
		goto nomem;
	/* The contents go last, into a buffer sized for them up front: a
	 * realloc would leave a copy of the key behind in freed memory. */
	if (cf_buf_reserve(&s, secret + sizeof(stage_tail)) < 0)
		goto nomem;
	for (i = 0; i < n; i++) {
		char *before = s.data;

		if (cf_buf_printf(&s, "C%zu=", i) < 0 ||
		    cf_buf_shquote(&s, r->payloads[i].data) < 0 ||
		    cf_buf_append(&s, "\n", 1) < 0 || s.data != before)
			goto nomem;
	}
	if (cf_buf_append(&s, stage_tail, sizeof(stage_tail) - 1) < 0)
		goto nomem;

	/* Rollback after a failed verify: positional args are the indices the
	 * stage script reported as backed up. */
	static const char rb_body[] =
	    "get() { eval \"$1=\\${$2$3}\"; }\n"
	    "run() { if command -v timeout >/dev/null 2>&1; then timeout -k 2 \"$LIMIT\" sh -c \"$1\"; else sh -c \"$1\"; fi; }\n"
	    "main() {\n"
	    "rc=0\n"
	    "for i in \"$@\"; do\n"
	    "  get t T $i; get d D $i; get b B $i\n"
	    "  [ \"$t\" -ef \"$d/.$b.certfleet-prev\" ] && continue\n"
	    /* a copy when fs.protected_hardlinks refuses the link (a backup
	     * that is still another user's file) */
	    "  k=\"$d/.certfleet.$b.rb.tmp\"; rm -f -- \"$k\"\n"
	    "  { ln -- \"$d/.$b.certfleet-prev\" \"$k\" 2>/dev/null || { rm -f -- \"$k\"; cp -p -- \"$d/.$b.certfleet-prev\" \"$k\"; }; } && mv -f -- \"$k\" \"$t\" || { rm -f -- \"$k\"; rc=11; }\n"
	    "done\n"
	    "if [ -n \"$RELOAD\" ]; then run \"$RELOAD\" </dev/null 2>&1 || rc=13; fi\n"
	    "if [ $rc -eq 0 ]; then echo certfleet-rolled-back; fi\n"
	    "exit $rc\n"
	    "}\n"
	    "main \"$@\"\n";
	if (cf_buf_append(&rb, rb_body, sizeof(rb_body) - 1) < 0)
		goto nomem;

	r->stage_script = s.data;
	r->stage_script_cap = s.cap;
	s.data = NULL;
	r->rollback_script = rb.data;
	rb.data = NULL;
	if (cf_buf_append(&pf, preflight_body, sizeof(preflight_body) - 1) < 0)
		goto nomem;
	r->preflight_script = pf.data;
	pf.data = NULL;
	rc = 0;
	goto out;
nomem:
	cf_err_set(err, CF_ERR_NOMEM, "out of memory building node scripts");
out:
	cf_buf_free_secret(&s);
	cf_buf_free(&rb);
	cf_buf_free(&pf);
	cf_buf_free(&dir);
	return rc;
}

static int
build_payloads(struct run *r, cf_err_t *err)
{
	const struct cf_bundle *b = r->bundle;
	size_t i, n = r->pb->deploy.n_files;

	r->payloads = calloc(n, sizeof(*r->payloads));
	if (r->payloads == NULL)
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		const char *p = NULL;

		switch (r->pb->deploy.files[i].content) {
		case CF_CONTENT_CERT:      p = b->cert; break;
		case CF_CONTENT_CHAIN:     p = b->chain; break;
		case CF_CONTENT_FULLCHAIN: p = b->fullchain; break;
		case CF_CONTENT_PRIVKEY:   p = b->privkey; break;
		case CF_CONTENT_COMBINED:
			if (r->combined == NULL) {
				size_t fl = strlen(b->fullchain), kl = strlen(b->privkey);

				r->combined = malloc(fl + kl + 1);
				if (r->combined == NULL)
					return cf_err_set(err, CF_ERR_NOMEM,
					                  "out of memory");
				memcpy(r->combined, b->fullchain, fl);
				memcpy(r->combined + fl, b->privkey, kl + 1);
				r->combined_len = fl + kl;
			}
			p = r->combined;
			break;
		}
		if (p == NULL)
			p = "";
		r->payloads[i].data = p;
		r->payloads[i].len = strlen(p);
	}
	return 0;
}

/* ---- canary gate ---- */

/* The decisions are gate.c's; here they are taken under mu, and every
 * change wakes the nodes waiting at the gate. */

/* A node that ends without reaching the gate is no canary candidate. */
static void
gate_skip(struct run *r, size_t pos, const struct cf_node_result *nr)
{
	pthread_mutex_lock(&r->mu);
	gate_node_skipped(&r->gate, pos, nr->outcome == CF_OUT_UNCHANGED);
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static enum gate
gate_enter(struct run *r, size_t pos)
{
	enum gate g;

	pthread_mutex_lock(&r->mu);
	gate_node_arrived(&r->gate, pos);
	pthread_cond_broadcast(&r->cv);
	while (!gate_node_decide(&r->gate, pos, &g))
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	return g;
}

static void
gate_leave(struct run *r, enum gate g, const struct cf_node_result *nr)
{
	pthread_mutex_lock(&r->mu);
	gate_node_left(&r->gate, g, nr->outcome == CF_OUT_FAILED, nr->err.code,
	               nr->node->name);
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* ---- the pipeline ---- */

/* CERTFLEET_TRACE=1: per-node step timeline on stderr, for profiling a
 * rollout from the outside without a debugger. */
static void
trace(const struct run *r, const struct cf_node *node, int64_t t0,
      const char *step)
{
	if (!r->trace)
		return;
	fprintf(stderr, "trace: %-12s +%5lldms %s\n", node->name,
	        (long long)(cf_now_ms() - t0), step);
}

/* "n3:443 (SNI www.example.test)", "n3:25 (smtp STARTTLS, SNI mail.x)":
 * how every verify message names what it looked at. */
static void
endpoint_label(const struct cf_node *node, const struct cf_endpoint *ep,
               const char *sni, char *buf, size_t len)
{
	if (ep->starttls != STARTTLS_NONE)
		snprintf(buf, len, "%s:%u (%s STARTTLS, SNI %s)", node->name,
		         ep->port, starttls_proto_name(ep->starttls), sni);
	else
		snprintf(buf, len, "%s:%u (SNI %s)", node->name, ep->port, sni);
}

/* One probe of endpoint ep with SNI sni; *res is the caller's to free. */
static int
probe_one(const struct run *r, const struct cf_node *node,
          const struct cf_endpoint *ep, const char *sni, int64_t deadline,
          struct tlsprobe_result *res, cf_err_t *err)
{
	/* The leaf is identified by the SHA-256 of its DER and its expiry
	 * read from what the handshake decoded: never decoded twice (OpenSSL
	 * 3's key decoding is the largest cost in the coordinator's
	 * profile). */
	return tlsprobe_fetch_ctx(r->tls, node->host, ep->port, ep->starttls, sni,
	                          deadline, res, err);
}

/* One probe of the first endpoint under the first name: fills sha (hex)
 * and not_after on success. */
static int
probe(const struct run *r, const struct cf_node *node, int64_t deadline,
      char sha[65], int64_t *not_after, cf_err_t *err)
{
	struct tlsprobe_result res;

	if (probe_one(r, node, &r->pb->verify.endpoints[0], r->names[0],
	              deadline, &res, err) < 0)
		return -1;
	memcpy(sha, res.sha256_hex, 65);
	if (not_after != NULL)
		*not_after = res.not_after;
	tlsprobe_result_free(&res);
	return 0;
}

/* Which reason a pair that does not serve the certificate gets: the first
 * endpoint under the first name is what verify always checked
 * (verify-failed); a further name is verify-name, a further endpoint
 * verify-endpoint. */
static cf_code_t
pair_code(size_t ei, size_t ni)
{
	return ni > 0 ? CF_ERR_VERIFY_NAME
	              : ei > 0 ? CF_ERR_VERIFY_ENDPOINT : CF_ERR_VERIFY;
}

/* Check one endpoint under one name: serves the new leaf (polling until
 * deadline when poll: reloads are asynchronous, old workers may still
 * accept for a moment), with exactly the stored chain, trusted.  The
 * chain and trust checks use what the last handshake decoded.  *cause:
 * the last probe's own error code when no handshake succeeded. */
static int
verify_pair(struct run *r, const struct cf_node *node, size_t ei, size_t ni,
            int64_t deadline, bool poll, struct cf_node_result *nr,
            cf_err_t *err, cf_code_t *cause)
{
	const struct cf_endpoint *ep = &r->pb->verify.endpoints[ei];
	const char *sni = r->names[ni], *want = r->info->sha256_hex;
	/* Each probe is a full TLS handshake (a few ms of coordinator CPU,
	 * the largest per-node cost at fleet scale), and a probe right after
	 * the reload command returns almost always still sees the old
	 * workers: wait a little first, then back off quickly. */
	int64_t pause = 60, t0 = cf_now_ms();
	struct tlsprobe_result res;
	char step[64], label[200], why[256], na[32];
	cf_err_t perr = {0};
	bool have = false, first = ei == 0 && ni == 0;
	unsigned probes = 0;
	int rc = -1;

	memset(&res, 0, sizeof(res));
	endpoint_label(node, ep, sni, label, sizeof(label));
	for (;;) {
		int64_t attempt_deadline;

		if (poll) {
			if (cf_ms_left(deadline) <= pause)
				break;
			usleep((useconds_t)pause * 1000);
			pause = pause * 3 / 2 > 400 ? 400 : pause * 3 / 2;
		}
		attempt_deadline = cf_now_ms() + 3000;
		if (attempt_deadline > deadline || !poll)
			attempt_deadline = deadline;
		probes++;
		tlsprobe_result_free(&res);
		have = probe_one(r, node, ep, sni, attempt_deadline, &res,
		                 &perr) == 0;
		if (have && first) {
			memcpy(nr->after_sha256, res.sha256_hex, 65);
			nr->after_not_after = res.not_after;
		}
		if ((have && strcmp(res.sha256_hex, want) == 0) || !poll)
			break;
	}
	*cause = have ? CF_OK : perr.code;
	if (!have) {
		/* the first endpoint's own failure keeps its cause (timeout,
		 * refused, tls) for `verify`/`check`, as before */
		if (first && !poll)
			*err = perr;
		else if (first)
			cf_err_set(err, CF_ERR_VERIFY, "verify failed: %s",
			           perr.msg);
		else
			cf_err_set(err, pair_code(ei, ni), "%s: %s", label,
			           perr.msg);
		goto out;
	}
	if (strcmp(res.sha256_hex, want) != 0) {
		if (first && poll)
			cf_err_set(err, CF_ERR_VERIFY,
			           "%s:%u still serves %.16s…, not the new "
			           "certificate %.16s… after %us",
			           node->host, ep->port, res.sha256_hex, want,
			           r->pb->verify.timeout);
		else if (first)
			cf_err_set(err, CF_ERR_VERIFY,
			           "serves %.16s… (expires %s), not the current "
			           "certificate %.16s…", res.sha256_hex,
			           (cf_fmt_time(res.not_after, na, sizeof(na)), na),
			           want);
		else
			cf_err_set(err, pair_code(ei, ni),
			           "%s serves %.16s… (expires %s), not the %s "
			           "certificate %.16s…", label, res.sha256_hex,
			           (cf_fmt_time(res.not_after, na, sizeof(na)), na),
			           poll ? "new" : "current", want);
		goto out;
	}
	if (tlsprobe_chain_diff(res.chain, res.n_chain, r->want_chain,
	                        r->n_want_chain, why, sizeof(why)) < 0) {
		cf_err_set(err, CF_ERR_VERIFY_CHAIN, "%s %s", label, why);
		goto out;
	}
	if (!res.trusted) {
		cf_err_set(err, CF_ERR_VERIFY_TRUST, "%s: %s", label,
		           res.untrusted_why);
		goto out;
	}
	snprintf(step, sizeof(step), "verified :%u %.24s by probe %u", ep->port,
	         sni, probes);
	trace(r, node, t0, step);
	rc = 0;
out:
	tlsprobe_result_free(&res);
	return rc;
}

/* Every endpoint under every name, the first failure wins.  poll: after a
 * deploy, wait (until deadline) for each to serve the new leaf; the first
 * pair absorbs the reload's delay, the others are one handshake each. */
static int
verify_all(struct run *r, const struct cf_node *node, int64_t deadline,
           bool poll, struct cf_node_result *nr, cf_err_t *err)
{
	size_t n = r->pb->verify.n_endpoints * r->n_names;
	cf_code_t cause = CF_OK;
	int rc = 0;

	free(nr->checks);
	nr->n_checks = 0;
	if ((nr->checks = calloc(n, sizeof(*nr->checks))) == NULL)
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	for (size_t ei = 0; ei < r->pb->verify.n_endpoints; ei++)
		for (size_t ni = 0; ni < r->n_names; ni++) {
			struct cf_endpoint_check *c = &nr->checks[nr->n_checks++];
			int64_t dl = deadline;

			c->port = r->pb->verify.endpoints[ei].port;
			c->starttls = r->pb->verify.endpoints[ei].starttls;
			c->sni = r->names[ni];
			/* a read-only check gives each handshake the
			 * connect timeout, as the first probe always had */
			if (!poll)
				dl = cf_now_ms() +
				     (int64_t)r->pb->ssh.connect_timeout * 1000;
			c->ok = verify_pair(r, node, ei, ni, dl, poll, nr,
			                    &c->err, &cause) == 0;
			if (c->ok)
				continue;
			/* the first failure is the node's; after a deploy it
			 * ends the check (the node is rolled back), a
			 * read-only check reports every pair */
			if (rc == 0)
				*err = c->err;
			rc = -1;
			/* a node that does not answer in time would cost a
			 * deadline per pair: one is enough to say so */
			if (poll || cause == CF_ERR_TIMEOUT ||
			    cause == CF_ERR_UNREACHABLE)
				return -1;
		}
	return rc;
}

/* Poll until the node serves the new leaf everywhere or the deadline
 * passes. */
static int
verify_loop(struct run *r, const struct cf_node *node, int64_t deadline,
            struct cf_node_result *nr, cf_err_t *err)
{
	return verify_all(r, node, deadline, true, nr, err);
}

static void
last_line(const char *out, char *buf, size_t len)
{
	const char *end, *start;

	buf[0] = '\0';
	if (out == NULL)
		return;
	end = out + strlen(out);
	while (end > out && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	start = end;
	while (start > out && start[-1] != '\n')
		start--;
	snprintf(buf, len, "%.*s", (int)(end - start), start);
}

/* out has `marker` as a whole line.  Exit status 0 alone proves nothing:
 * libssh2 reports 0 when no exit-status message came back, and a forced
 * command (authorized_keys command=, ForceCommand) exits 0 without ever
 * running our script. */
static bool
has_marker(const char *out, const char *marker)
{
	size_t ml = strlen(marker);

	for (const char *p = out; p != NULL && (p = strstr(p, marker)) != NULL;
	     p += ml)
		if ((p == out || p[-1] == '\n') &&
		    (p[ml] == '\n' || p[ml] == '\r' || p[ml] == '\0'))
			return true;
	return false;
}

/* Lines of stage output that are not our markers, joined, for messages. */
static void
summarize_output(const char *out, char *buf, size_t len)
{
	const char *p = out, *nl;
	size_t used = 0;

	buf[0] = '\0';
	if (out == NULL)
		return;
	while (*p && used + 1 < len) {
		nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		if (l > 0 && strncmp(p, "certfleet-", 10) != 0 &&
		    strncmp(p, "certfleet: ", 11) != 0) {
			int w = snprintf(buf + used, len - used, "%s%.*s",
			                 used ? " | " : "", (int)l, p);
			if (w < 0)
				break;
			used += (size_t)w;
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	if (used >= len)
		buf[len - 1] = '\0';
}

static int
stage(struct run *r, cf_ssh_t *s, const struct cf_node *node,
      struct cf_node_result *nr, cf_buf_t *prev_idx, cf_err_t *err)
{
	const struct cf_playbook *pb = r->pb;
	char *out = NULL;
	int status = -1, rc = -1;
	char why[CF_ERR_MSG_MAX], detail[300];
	bool restored;

	/* the script writes the files: from here on the node may have
	 * changed until the script says otherwise */
	nr->touched = true;
	if (ssh_exec(s, "sh -s", r->stage_script, strlen(r->stage_script),
	             &status, &out, err) < 0)
		/* Transport failed mid-script: the script restores on its own
		 * failures, and the next run removes its temp files. */
		goto out;
	/* collect "certfleet-prev I" markers */
	for (const char *p = out; p && (p = strstr(p, "certfleet-prev ")); p++) {
		unsigned long idx = strtoul(p + 15, NULL, 10);
		cf_buf_printf(prev_idx, " %lu", idx);
	}
	last_line(out, why, sizeof(why));
	/* the script's own lines carry our prefix; the report adds it once */
	if (strncmp(why, "certfleet: ", 11) == 0)
		memmove(why, why + 11, strlen(why + 11) + 1);
	summarize_output(out, detail, sizeof(detail));
	restored = out != NULL && strstr(out, "certfleet-restored\n") != NULL;
	if (status == STAGE_OK && !has_marker(out, "certfleet-ok"))
		status = STAGE_NO_MARKER;
	switch (status) {
	case STAGE_OK:
		rc = 0;
		break;
	case STAGE_NO_MARKER:
		cf_err_set(err, CF_ERR_WRITE, "stage script on %s ended with "
		           "status 0 but without its completion marker: the node "
		           "did not run it to the end (a forced command?): %s",
		           node->name, detail[0] ? detail : "(no output)");
		break;
	case STAGE_UNSAFE:
		nr->touched = false;
		cf_err_set(err, CF_ERR_UNSAFE_PATH, "%s", why);
		break;
	case STAGE_WRITE:
		/* a failure before any swap (temp file, backup) changed no
		 * target: the script removed its temp files, restored nothing */
		nr->rolled_back = restored;
		nr->touched = restored;
		cf_err_set(err, CF_ERR_WRITE, "%s", why);
		break;
	case STAGE_CHECK:
		nr->rolled_back = restored;
		cf_err_set(err, CF_ERR_CHECK, "check `%s` failed, %s: %s",
		           pb->deploy.check, restored ? "previous files restored"
		           : "no file had changed", detail);
		break;
	case STAGE_RELOAD:
		nr->rolled_back = restored;
		cf_err_set(err, CF_ERR_RELOAD, "reload `%s` failed, %s: %s",
		           pb->deploy.reload, restored ? "previous files restored"
		           : "no file had changed", detail);
		break;
	default:
		cf_err_set(err, CF_ERR_WRITE, "stage script exited %d on %s: %s",
		           status, node->name, detail[0] ? detail : why);
		break;
	}
out:
	free(out);
	return rc;
}

/* Dry run: what would fail on this node, from the preflight script.
 * Nothing is written (nr->touched stays false); problems become the node's
 * error, all of them, joined; notes (e.g. backups by copy) go to nr->note. */
static int
preflight(struct run *r, cf_ssh_t *s, struct cf_node_result *nr,
          cf_err_t *err)
{
	char *out = NULL;
	int status = -1, rc = -1;
	cf_buf_t probs = {0}, notes = {0};
	const char *p, *nl;
	cf_code_t code;

	if (ssh_exec(s, "sh -s", r->preflight_script,
	             strlen(r->preflight_script), &status, &out, err) < 0)
		goto out;
	for (p = out; p != NULL && *p; p = nl ? nl + 1 : NULL) {
		nl = strchr(p, '\n');
		int l = (int)(nl ? (size_t)(nl - p) : strlen(p));

		if (strncmp(p, "certfleet: ", 11) == 0)
			cf_buf_printf(&probs, "%s%.*s", probs.len ? "; " : "",
			              l - 11, p + 11);
		else if (strncmp(p, "certfleet-note: ", 16) == 0)
			cf_buf_printf(&notes, "%s%.*s", notes.len ? "; " : "",
			              l - 16, p + 16);
	}
	if (notes.len > 0) {
		cf_err_t tmp = {0};

		/* through the sanitizer: this text comes from the node */
		cf_err_set(&tmp, CF_OK, "%s", notes.data);
		memcpy(nr->note, tmp.msg, sizeof(nr->note));
	}
	if (status == 0 && probs.len == 0) {
		rc = 0;
		goto out;
	}
	if (out == NULL || strstr(out, "certfleet-preflight-done") == NULL) {
		char last[300];

		last_line(out, last, sizeof(last));
		cf_err_set(err, CF_ERR_WRITE, "preflight script exited %d: %s",
		           status, last);
		goto out;
	}
	code = status == STAGE_UNSAFE   ? CF_ERR_UNSAFE_PATH
	       : status == STAGE_CHECK  ? CF_ERR_CHECK
	       : status == STAGE_RELOAD ? CF_ERR_RELOAD
	                                : CF_ERR_WRITE;
	cf_err_set(err, code, "preflight: %s",
	           probs.data ? probs.data : "failed");
out:
	cf_buf_free(&probs);
	cf_buf_free(&notes);
	free(out);
	return rc;
}

static void
rollback_node(struct run *r, cf_ssh_t *s, const char *prev_idx,
              struct cf_node_result *nr)
{
	cf_buf_t cmd = {0};
	char *out = NULL;
	int status = -1;
	cf_err_t e = {0};

	if (cf_buf_printf(&cmd, "sh -s --%s", prev_idx) < 0)
		goto out;
	/* deadline: whatever the session has left, but at least a few
	 * seconds so a slow verify cannot leave the node on a bad cert */
	ssh_set_deadline(s, cf_now_ms() + (int64_t)r->pb->ssh.timeout * 1000);
	if (ssh_exec(s, cmd.data, r->rollback_script,
	             strlen(r->rollback_script), &status, &out, &e) == 0 &&
	    status == 0 && has_marker(out, "certfleet-rolled-back"))
		nr->rolled_back = true;
out:
	free(out);
	cf_buf_free(&cmd);
}

bool
rollout_is_key_file(const struct cf_file_spec *f)
{
	return f->content == CF_CONTENT_PRIVKEY ||
	       f->content == CF_CONTENT_COMBINED;
}

char *
rollout_backup_path(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *bak;

	/* the stage script's "$d/.$b.certfleet-prev" (paths are absolute) */
	if (slash == NULL ||
	    asprintf(&bak, "%.*s/.%s.certfleet-prev", (int)(slash - path), path,
	             slash + 1) < 0)
		return NULL;
	return bak;
}

/* deploy.keep_previous false: once the node is verified on the new
 * certificate, the backups of its old key files (.NAME.certfleet-prev, made
 * by the stage script for its own restore) go, so an old key does not
 * outlive its deployment on the node.  A separate small command after
 * verify: never part of the stage script, and a failure here leaves a
 * backup, never a broken node, so it does not fail the node. */
static void
drop_key_backups(struct run *r, cf_ssh_t *s, const struct cf_node *node,
                 int64_t t0)
{
	const struct cf_playbook *pb = r->pb;
	cf_buf_t cmd = {0};
	cf_err_t e = {0};
	int status = -1;
	size_t i, n = 0;

	if (cf_buf_printf(&cmd, "rm -f --") < 0)
		goto out;
	for (i = 0; i < pb->deploy.n_files; i++) {
		const struct cf_file_spec *f = &pb->deploy.files[i];
		char *bak;
		int ok;

		if (!rollout_is_key_file(f))
			continue;
		if ((bak = rollout_backup_path(f->path)) == NULL)
			goto out;
		ok = cf_buf_printf(&cmd, " ") == 0 &&
		     cf_buf_shquote(&cmd, bak) == 0;
		free(bak);
		if (!ok)
			goto out;
		n++;
	}
	if (n == 0)
		goto out;
	ssh_set_deadline(s, cf_now_ms() + (int64_t)pb->ssh.timeout * 1000);
	if (ssh_exec(s, cmd.data, NULL, 0, &status, NULL, &e) < 0 || status != 0)
		trace(r, node, t0, "could not remove key backups");
	else
		trace(r, node, t0, "key backups removed");
out:
	cf_buf_free(&cmd);
}

static const char *
report_outcome_name_local(cf_outcome_t o)
{
	return o == CF_OUT_DEPLOYED ? "done: deployed"
	       : o == CF_OUT_FAILED ? "done: failed" : "done";
}

static void
node_pipeline(struct run *r, size_t pos)
{
	size_t idx = r->queue[pos];
	const struct cf_playbook *pb = r->pb;
	const struct cf_rollout_opts *o = r->opts;
	struct cf_node_result *nr = &r->res->nodes[idx];
	const struct cf_node *node = nr->node;
	int64_t t0 = cf_now_ms();
	int64_t conn_deadline = t0 + (int64_t)pb->ssh.connect_timeout * 1000;
	cf_ssh_t *s = NULL;
	cf_err_t perr = {0};
	cf_buf_t prev_idx = {0};
	enum gate g = GATE_GO;
	bool gated = false;
	char sha[65] = "";
	int64_t nat = 0;

	/* `verify`/`check`: every endpoint under every name, read-only */
	if (o->verify_only) {
		if (verify_all(r, node, conn_deadline, false, nr, &nr->err) == 0)
			nr->outcome = CF_OUT_VERIFIED;
		else
			nr->outcome = CF_OUT_FAILED;
		memcpy(nr->before_sha256, nr->after_sha256, 65);
		goto done;
	}
	/* 1. what does it serve now? skip SSH entirely when it is current */
	if (!o->force || o->verify_only) {
		if (probe(r, node, conn_deadline, sha, &nat, &perr) == 0) {
			memcpy(nr->before_sha256, sha, 65);
			memcpy(nr->after_sha256, sha, 65);
			nr->after_not_after = nat;
			if (strcmp(sha, r->info->sha256_hex) == 0) {
				nr->outcome = o->verify_only ? CF_OUT_VERIFIED
				                             : CF_OUT_UNCHANGED;
				goto done;
			}
			if (o->verify_only) {
				char na[32];

				cf_fmt_time(nat, na, sizeof(na));
				cf_err_set(&nr->err, CF_ERR_VERIFY,
				           "serves %.16s… (expires %s), not the "
				           "current certificate %.16s…", sha, na,
				           r->info->sha256_hex);
				nr->outcome = CF_OUT_FAILED;
				goto done;
			}
		} else if (o->verify_only || perr.code == CF_ERR_TIMEOUT) {
			/* A node whose TLS port does not answer in time can
			 * never be verified; trying SSH too would double the
			 * wait on a blackholed host. */
			nr->err = perr;
			nr->outcome = CF_OUT_FAILED;
			goto done;
		}
	}

	trace(r, node, t0, "probed");
	/* 2. connect, host key, auth */
	if (ssh_connect(r->ssh, node->host, node->port, node->user,
	                conn_deadline,
	                cf_now_ms() + (int64_t)pb->ssh.timeout * 1000, &s,
	                &nr->err) < 0) {
		nr->outcome = CF_OUT_FAILED;
		goto done;
	}
	trace(r, node, t0, "ssh connected+authenticated");
	if (o->dry_run) {
		/* read-only checks of what the real run would need */
		ssh_set_deadline(s, cf_now_ms() + (int64_t)pb->ssh.timeout * 1000);
		nr->outcome = preflight(r, s, nr, &nr->err) == 0 ? CF_OUT_DRYRUN
		                                                : CF_OUT_FAILED;
		goto done;
	}

	/* 3. canary gate: nothing is written before it */
	if (r->each_fn == NULL) {
		g = gate_enter(r, pos);
		gated = true;
		if (g == GATE_STOPPED) {
			nr->outcome = CF_OUT_STOPPED;
			goto done;
		}
		nr->canary = g == GATE_CANARY;
	}
	trace(r, node, t0, "through gate");
	ssh_set_deadline(s, cf_now_ms() + (int64_t)pb->ssh.timeout * 1000);

	if (r->each_fn != NULL) {
		if (r->each_fn(r->each_arg, node, s, &nr->err) < 0)
			nr->outcome = CF_OUT_FAILED;
		else
			nr->outcome = CF_OUT_DEPLOYED;
		goto done;
	}

	/* 4. upload, swap, check, reload (restore on failure) */
	if (stage(r, s, node, nr, &prev_idx, &nr->err) < 0) {
		nr->outcome = CF_OUT_FAILED;
		goto done;
	}

	trace(r, node, t0, "staged (uploaded, swapped, checked, reloaded)");
	/* 5. verify from outside, as a client would */
	{
		int64_t vdl = cf_now_ms() + (int64_t)pb->verify.timeout * 1000;

		if (verify_loop(r, node, vdl, nr, &nr->err) == 0) {
			nr->outcome = CF_OUT_DEPLOYED;
			if (!pb->deploy.keep_previous)
				drop_key_backups(r, s, node, t0);
			goto done;
		}
	}
	rollback_node(r, s, prev_idx.data ? prev_idx.data : "", nr);
	/* record what it serves after the rollback, best effort */
	if (probe(r, node, cf_now_ms() + 2000, sha, &nat, &perr) == 0) {
		memcpy(nr->after_sha256, sha, 65);
		nr->after_not_after = nat;
	}
	nr->outcome = CF_OUT_FAILED;

done:
	trace(r, node, t0, report_outcome_name_local(nr->outcome));
	nr->duration_ms = cf_now_ms() - t0;
	/* Reported before the gate hears of it: a canary's failure must be
	 * told before the lines of the nodes it stopped. */
	pthread_mutex_lock(&r->mu);
	r->done++;
	if (o->progress != NULL)
		o->progress(o->progress_arg, nr, r->done, r->n_queue);
	pthread_mutex_unlock(&r->mu);
	if (gated && g != GATE_STOPPED)
		gate_leave(r, g, nr);
	else if (!gated)
		gate_skip(r, pos, nr);
	ssh_close(s);
	cf_buf_free(&prev_idx);
}

static void *
worker(void *arg)
{
	struct run *r = arg;
	size_t pos;

	for (;;) {
		pthread_mutex_lock(&r->mu);
		if (r->next >= r->n_queue) {
			pthread_mutex_unlock(&r->mu);
			break;
		}
		pos = r->next++;
		pthread_mutex_unlock(&r->mu);

		node_pipeline(r, pos);
	}
	return NULL;
}

void
rollout_result_free(struct cf_rollout_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; r->nodes != NULL && i < r->n; i++)
		free(r->nodes[i].checks);
	free(r->nodes);
	memset(r, 0, sizeof(*r));
}

static bool
selected(const struct cf_rollout_opts *o, const char *name)
{
	if (o->only != NULL && !cf_strv_has(o->only, name))
		return false;
	if (cf_strv_has(o->exclude, name) || cf_strv_has(o->skip, name))
		return false;
	return true;
}

static int
run_all(struct run *r, cf_err_t *err)
{
	const struct cf_playbook *pb = r->pb;
	struct cf_rollout_result *res = r->res;
	pthread_t *th = NULL;
	size_t i, nthreads, started = 0, n_fresh = 0;
	int64_t t0 = cf_now_ms();
	bool serving = false;
	int rc = -1;

	res->nodes = calloc(pb->n_nodes, sizeof(*res->nodes));
	r->queue = calloc(pb->n_nodes, sizeof(*r->queue));
	if (res->nodes == NULL || r->queue == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	res->n = pb->n_nodes;
	/* nodes an earlier run quarantined go last: never the canary while
	 * another node is left, and still retried once the canaries passed */
	for (int pass = 0; pass < 2; pass++) {
		for (i = 0; i < pb->n_nodes; i++) {
			const char *name = pb->nodes[i].name;

			res->nodes[i].node = &pb->nodes[i];
			if (!selected(r->opts, name)) {
				res->nodes[i].outcome = CF_OUT_SKIPPED;
				continue;
			}
			if (cf_strv_has(r->opts->suspect, name) == (pass == 1))
				r->queue[r->n_queue++] = i;
		}
		if (pass == 0)
			n_fresh = r->n_queue;
	}
	if (gate_init(&r->gate, r->n_queue, n_fresh,
	              (r->opts->no_canary || r->opts->dry_run ||
	               r->opts->verify_only || r->each_fn != NULL)
	                  ? 0
	                  : pb->rollout.canary,
	              pb->rollout.canary_failures,
	              pb->rollout.max_failures) < 0) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}

	nthreads = pb->rollout.concurrency;
	if (nthreads > r->n_queue)
		nthreads = r->n_queue;
	th = calloc(nthreads ? nthreads : 1, sizeof(*th));
	if (th == NULL) {
		cf_err_set(err, CF_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < nthreads; i++) {
		pthread_attr_t attr;

		/* workers need little stack; 500 nodes x 8 MiB default
		 * reservations would dominate RSS accounting */
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 256 * 1024);
		if (pthread_create(&th[i], &attr, worker, r) != 0) {
			pthread_attr_destroy(&attr);
			break;
		}
		pthread_attr_destroy(&attr);
		started++;
	}
	if (started == 0 && nthreads > 0) {
		cf_err_set(err, CF_ERR_INTERNAL, "cannot start worker threads");
		goto out;
	}
	for (i = 0; i < started; i++)
		pthread_join(th[i], NULL);

	/* Canaries failed and no node could say whether the certificate and
	 * recipe work elsewhere (a one-node fleet, the rest unreachable):
	 * nothing proves the failures were the nodes' own, so this is the
	 * stop a lone failed canary always was. */
	for (i = 0; i < res->n; i++)
		serving |= res->nodes[i].outcome == CF_OUT_UNCHANGED;
	gate_run_end(&r->gate, serving);
	for (i = 0; i < res->n; i++) {
		switch (res->nodes[i].outcome) {
		case CF_OUT_DEPLOYED: res->n_deployed++; break;
		case CF_OUT_UNCHANGED:
		case CF_OUT_VERIFIED: res->n_unchanged++; break;
		case CF_OUT_FAILED:   res->n_failed++; break;
		case CF_OUT_SKIPPED:  res->n_skipped++; break;
		case CF_OUT_STOPPED:  res->n_stopped++; break;
		case CF_OUT_DRYRUN:   res->n_dryrun++; break;
		}
	}
	res->stopped = r->gate.stopped;
	memcpy(res->stop_reason, r->gate.stop_reason, sizeof(res->stop_reason));
	res->n_canary_failed = r->gate.canary_failed;
	memcpy(res->canary_failed, r->gate.canary_failed_names,
	       sizeof(res->canary_failed));
	res->duration_ms = cf_now_ms() - t0;
	rc = 0;
out:
	free(th);
	free(r->queue);
	gate_free(&r->gate);
	if (rc < 0) {
		free(res->nodes);
		memset(res, 0, sizeof(*res));
	}
	return rc;
}

static void
run_free(struct run *r)
{
	size_t i;

	if (r->tmp_paths != NULL)
		for (i = 0; i < r->pb->deploy.n_files; i++)
			free(r->tmp_paths[i]);
	free(r->tmp_paths);
	free(r->payloads);
	cf_free_secret(r->combined, r->combined_len);
	cf_free_secret(r->stage_script, r->stage_script_cap);
	free(r->rollback_script);
	free(r->preflight_script);
	tlsprobe_ctx_free(r->tls);
	free(r->names);
	free(r->want_chain);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
}

int
rollout_run(const struct cf_playbook *pb, const cf_ssh_ctx_t *ssh,
            const struct cf_bundle *bundle, const struct cf_certinfo *info,
            const struct cf_rollout_opts *opts, struct cf_rollout_result *out,
            cf_err_t *err)
{
	struct run r;
	struct cf_rollout_result res;
	unsigned char rnd[6];
	char token[13];
	int rc = -1;

	memset(&r, 0, sizeof(r));
	memset(&res, 0, sizeof(res));
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	r.pb = pb;
	r.ssh = ssh;
	r.bundle = bundle;
	r.info = info;
	r.opts = opts;
	r.res = &res;
	r.trace = getenv("CERTFLEET_TRACE") != NULL;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		cf_err_set(err, CF_ERR_INTERNAL, "no randomness for temp names");
		goto out;
	}
	cf_hex(rnd, sizeof(rnd), token);
	if (tlsprobe_ctx_new(pb->verify.ca_bundle, &r.tls, err) < 0 ||
	    playbook_verify_names(pb, &r.names, &r.n_names, err) < 0 ||
	    tlsprobe_pem_certs(bundle->chain, &r.want_chain, &r.n_want_chain,
	                       err) < 0)
		goto out;
	/* verify/check only probe: no key-bearing script is ever built
	 * (their bundle holds no key: store_get_current_cert) */
	if (!opts->verify_only &&
	    (build_payloads(&r, err) < 0 || build_scripts(&r, token, err) < 0))
		goto out;
	if (run_all(&r, err) < 0)
		goto out;
	res.dry_run = opts->dry_run;
	*out = res;
	rc = 0;
out:
	run_free(&r);
	return rc;
}

int
rollout_each(const struct cf_playbook *pb, const cf_ssh_ctx_t *ssh,
             const struct cf_rollout_opts *opts, cf_node_fn fn, void *arg,
             struct cf_rollout_result *out, cf_err_t *err)
{
	struct run r;
	struct cf_rollout_result res;
	struct cf_rollout_opts o = *opts;
	int rc;

	memset(&r, 0, sizeof(r));
	memset(&res, 0, sizeof(res));
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	/* no probe: the pipeline goes straight to SSH for callbacks */
	o.force = true;
	o.verify_only = false;
	o.dry_run = false;
	r.pb = pb;
	r.ssh = ssh;
	r.opts = &o;
	r.res = &res;
	r.each_fn = fn;
	r.each_arg = arg;
	rc = run_all(&r, err);
	if (rc == 0)
		*out = res;
	run_free(&r);
	return rc;
}
