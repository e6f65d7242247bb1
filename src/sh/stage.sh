#!/bin/sh
# stage.sh - runs on a node, sent on the stdin of `sh -s`: refuse unsafe
# targets, write the new files, back up, swap, check, reload, and restore
# on any failure.  Prints "certfleet-prev I" for every file that got a
# backup this run (the rollback script restores just those), and
# "certfleet-ok" last: rollout.c counts nothing a success without it.
#
# Every process started on a node costs it a fork and an exec (5-10 ms of
# CPU each on a small VM), so the script does with shell builtins what it
# can: the files' bytes travel inside the script and are written by the
# printf builtin (never in an argv), into O_EXCL temp files (set -C), with
# the mode from the umask; one sha256sum finds the files that already hold
# the new bytes (those are neither rewritten nor backed up, so a re-run
# cannot replace the previous version's backup with a copy of the new
# files); one sync makes the new bytes durable before any rename; one
# timeout-bounded sh runs check and reload.  Per changed file that leaves
# ln (backup) and mv (the atomic swap); one stat checks every target
# directory (dirsafe, put in front of this script).
#
# No step may follow a link someone planted: a service account that can
# write in a target directory ("shared_dir": true; any other such directory
# is refused by dirsafe) could swap any name we use for a symlink between
# two of our commands and make root write or chown what it points to.  So:
# every temp name has the run's random token; temps are created with O_EXCL
# (set -C) and nothing is ever written to an existing name; chmod and chown
# reach the temp through /proc/self/fd/3 (the inode we created, whatever
# its name has become); copies go to such an fd, never to a name; ln -T and
# mv -T never descend into a directory a link points to; right before each
# rename the source is checked to be a regular file and no link, and after
# the swap a target that is a link anyway is a failure with restore.
#
# Everything runs from main(), called on the script's last line: sh runs
# commands as it reads them, and a script cut short by a dropped connection
# must do nothing at all rather than half its steps.
#
# rollout.c (build_scripts) puts the values in front, each single-quoted:
#   N            the number of files; for file I (0..N-1):
#   TI DI BI     target path, its directory, its base name
#   NI           the temp file the new bytes go to
#   MI UI XI     mode (octal), the umask that creates it, "1" when the mode
#                has bits outside 0666 and needs a chmod
#   HI           sha256 of the new bytes;  OI GI  owner, group or ""
#   SDI          "1" when the file's directory is shared ("shared_dir")
#   TOK          this run's random token (in every temp name)
#   CHECK RELOAD the playbook's commands;  LIMIT  seconds for both
# and after this text the contents CI, then the line `main`.
#
# Lines that hold only a comment, and blank lines, are left out when the
# script is embedded (src/sh/embed.sh), so comments cost nothing on the wire.
#
# get() assigns through eval, which shellcheck cannot follow:
# shellcheck disable=SC2154
# -ef (same file) is in dash, bash, busybox sh and every sh we meet, though
# not in POSIX:
# shellcheck disable=SC3013

nl='
'
get() { eval "$1=\${$2$3}"; }
run() { if command -v timeout >/dev/null 2>&1; then timeout -k 2 "$LIMIT" sh -c "$@"; else sh -c "$@"; fi; }
# check, then a marker, then reload: one process for both
# (its $1 and $2 are sh -c's arguments, expanded there)
# shellcheck disable=SC2016
CR='if [ -n "$1" ]; then (eval "$1") || exit $?; fi; echo certfleet-checked; if [ -n "$2" ]; then (eval "$2") || exit $?; fi'
# the cause from a failed command's stderr: its last line after the last ": ",
# i.e. strerror's text ("Permission denied")
cause() { why=${1%"$nl"}; why=${why##*"$nl"}; why=${why##*: }; [ -n "$why" ] || why="failed"; }
# what the operator can do about a cause, for directory $1
hint() { case $why in
  *'ermission denied'*|*'ot permitted'*) hint=" (the login user $(id -un 2>/dev/null) needs write access to $1; see README: Preparing a node)" ;;
  *'ead-only file system'*) hint=" ($1 is on a read-only file system)" ;;
  *'o space left'*|*'uota exceeded'*) hint=" (the file system of $1 is full)" ;;
  *) hint= ;; esac; }
cleanup_tmp() { i=0; while [ "$i" -lt "$N" ]; do eval "z=\${Z$i:-}"; if [ -n "$z" ]; then get n N "$i"; rm -f -- "$n"; fi; i=$((i+1)); done; }
# $1 -> $2 (a new temp name in the same directory): a hard link (same bytes,
# mode, owner; ln -T never follows $2), or, when fs.protected_hardlinks
# refuses to link a file the login does not own, a copy: $2 created with
# O_EXCL (umask 077), cp -p writing its bytes and mode through the fd
keep() { lerr=$(ln -T -- "$1" "$2" 2>&1) && return 0; cerr=$(copyx "$1" "$2") && return 0; return 1; }
copyx() { ( exec 2>&1; set -C; umask 077; exec 3>"$2" && cp -p -- "$1" /proc/self/fd/3 ) || { rm -f -- "$2"; return 1; }; }
# $1 is a regular file we may rename, not a link planted in its place
plain() { [ -f "$1" ] && ! [ -L "$1" ]; }
restore() {
  i=0; while [ "$i" -lt "$N" ]; do
    get t T "$i"; get d D "$i"; get b B "$i"; eval "p=\${P$i:-}"; eval "w=\${W$i:-}"
    if [ -n "$w" ]; then
      eval "e=\${E$i:-}"; restored=1
      k="$d/.certfleet.$b.$TOK.rb.tmp"
      if [ -n "$p" ]; then keep "$d/.$b.certfleet-prev" "$k" && plain "$k" && mv -fT -- "$k" "$t";
      elif [ -z "$e" ]; then rm -f -- "$t"; fi
    fi
    i=$((i+1)); done
  if [ -n "${restored:-}" ]; then echo certfleet-restored; fi
}
fail() { code=$1; shift; umask 077; set +C; echo "certfleet: $*" >&2; cleanup_tmp; exit "$code"; }
# the write of $1 (temp of $3, in dir $2) failed with stderr $4: dash's printf
# says only "I/O error", so a bounded write of zeros to the same (doomed) temp
# file names the errno
wfail() {
  cause "$4"
  case $why in *'I/O error'*) [ -n "$sd" ] || e2=$( { head -c "${#c}" /dev/zero >>"$1"; } 2>&1 ) || cause "$e2" ;; esac
  c=; hint "$2"; fail 11 "cannot write $3: $why$hint"
}
main() {
# an external printf would carry a key in its argv
case $(command -V printf 2>/dev/null) in *builtin*) ;; *) fail 11 "printf is not a builtin of this node's sh: refusing to pass key bytes in an argv" ;; esac
# 0. no directory another account can write to, unless shared_dir says so
if ! dirsafe; then fail 10 "$unsafe"; fi
# 1. targets must be regular files (or absent); a symlink planted at a target
# is refused, never followed or replaced.
set --
i=0; while [ "$i" -lt "$N" ]; do
  get t T "$i"; get d D "$i"; get b B "$i"
  [ -d "$d" ] || fail 11 "directory $d does not exist"
  if [ -L "$t" ]; then fail 10 "$t is a symbolic link: refusing to replace it"; fi
  if [ -e "$t" ] && [ ! -f "$t" ]; then fail 10 "$t exists and is not a regular file"; fi
  # stale temp files of killed runs
  for x in "$d/.certfleet.$b."*.tmp; do if [ -e "$x" ] || [ -L "$x" ]; then rm -f -- "$x"; fi; done
  if [ -f "$t" ]; then eval "E$i=1"; set -- "$@" "$t"; fi
  i=$((i+1)); done
# 2. which targets already hold the new bytes
sums=
if [ "$#" -gt 0 ]; then sums=$(sha256sum -- "$@" 2>/dev/null) || sums=; fi
# 3. write the changed files: O_EXCL temp files, exact mode; the subshell
# keeps the write's error text for the message
set --
i=0; while [ "$i" -lt "$N" ]; do
  get t T "$i"; get n N "$i"; get h H "$i"
  case "$nl$sums$nl" in *"$nl$h  $t$nl"*) eval "S$i=1"; i=$((i+1)); continue ;; esac
  get d D "$i"; get u U "$i"; get x X "$i"; get m M "$i"; get o O "$i"; get g G "$i"; get c C "$i"; eval "sd=\${SD$i:-}"
  # fd 3 is the temp as created (O_EXCL); mode and owner go through it.
  # Without /proc only a directory no one else can write (dirsafe) lets
  # them go by name (chown -h).  A failed redirection exits with 2 in dash.
  set -C; umask "$u"
  err=$( exec 2>&1; exec 3>"$n" || exit 1; printf '%s' "$c" >&3 || exit 1
    [ -n "$x$o$g" ] || exit 0
    if [ -e /proc/self/fd/3 ]; then f=/proc/self/fd/3; elif [ -n "$sd" ]; then exit 7; else f=$n; fi
    if [ -n "$x" ]; then chmod "$m" "$f" || exit 5; fi
    if [ -z "$o$g" ]; then exit 0; elif [ "$f" = "$n" ]; then chown -h -- "$o${g:+:$g}" "$f" || exit 6; else chown -- "$o${g:+:$g}" "$f" || exit 6; fi ); st=$?
  umask 077; set +C; eval "Z$i=1"; set -- "$@" "$n"
  case $st in
  0) c= ;;
  5) cause "$err"; fail 11 "chmod $m $t failed: $why" ;;
  6) cause "$err"; fail 11 "chown $o${g:+:$g} $t failed: $why (owner and group need a login that may chown, i.e. root)" ;;
  7) fail 10 "cannot set mode/owner of $t link-safely in shared directory $d: /proc is not mounted" ;;
  *) wfail "$n" "$d" "$t" "$err" ;;
  esac
  i=$((i+1)); done
i=0; while [ "$i" -lt "$N" ]; do unset "C$i"; i=$((i+1)); done
# the new bytes on disk before any rename makes them the file
if [ "$#" -gt 0 ]; then sync -- "$@" 2>/dev/null || sync; fi
# 4. keep the previous version (hard link, or a copy when the link is
# refused); -ef: after a rollback target and backup are one inode. Nothing has
# been swapped yet: a failure here leaves every target as it was.
i=0; while [ "$i" -lt "$N" ]; do
  get t T "$i"; get d D "$i"; get b B "$i"; eval "e=\${E$i:-}"; eval "sm=\${S$i:-}"
  if [ -n "$e" ] && [ -z "$sm" ]; then
    if ! [ "$t" -ef "$d/.$b.certfleet-prev" ]; then
      if ! lerr=$(ln -fT -- "$t" "$d/.$b.certfleet-prev" 2>&1); then
        k="$d/.certfleet.$b.$TOK.prev.tmp"
        if ! cerr=$(copyx "$t" "$k"); then
          cause "$lerr"; lwhy=$why; cause "$cerr"
          ph=0; if [ -r /proc/sys/fs/protected_hardlinks ]; then read -r ph </proc/sys/fs/protected_hardlinks; fi
          case $lwhy in *'ot permitted'*) if [ "$ph" = 1 ]; then lwhy="$lwhy: fs.protected_hardlinks=1 lets a login hard-link only files it owns"; fi ;; esac
          me=$(id -un 2>/dev/null)
          fail 11 "cannot keep previous version of $t: hard link refused ($lwhy) and cannot copy it ($why): make the login user $me its owner once (chown $me $t; see README: Preparing a node)"
        fi
        plain "$k" || { rm -f -- "$k"; fail 10 "cannot keep previous version of $t: its copy $k was replaced by something else (a link?) in $d"; }
        err=$(mv -fT -- "$k" "$d/.$b.certfleet-prev" 2>&1) || { rm -f -- "$k"; cause "$err"; hint "$d"; fail 11 "cannot keep previous version of $t: $why$hint"; }
      fi
    fi
    eval "P$i=1"; echo "certfleet-prev $i"
  fi
  i=$((i+1)); done
# 5. swap: rename(2) over the target, atomic for every reader
i=0; while [ "$i" -lt "$N" ]; do
  eval "sm=\${S$i:-}"
  if [ -z "$sm" ]; then
    get t T "$i"; get n N "$i"; get d D "$i"
    plain "$n" || { restore; fail 10 "$n is no longer the file written (replaced by a link?) in $d: not renamed into place"; }
    if ! err=$(mv -fT -- "$n" "$t" 2>&1); then cause "$err"; hint "$d"; restore; fail 11 "cannot move new file into place at $t: $why$hint"; fi
    eval "W$i=1"; eval "Z$i="
  fi
  i=$((i+1)); done
# a link renamed into place in the window after that check
i=0; while [ "$i" -lt "$N" ]; do
  eval "w=\${W$i:-}"; get t T "$i"
  if [ -n "$w" ] && ! plain "$t"; then restore; fail 10 "$t is not the file written after the swap (a link was put in its place)"; fi
  i=$((i+1)); done
# 6. check before the new files go live, then reload
if [ -n "$CHECK$RELOAD" ]; then
  out=$(run "$CR" sh "$CHECK" "$RELOAD" 2>&1 </dev/null); st=$?
  if [ "$st" -ne 0 ]; then
    if [ "$st" -eq 124 ] || [ "$st" -eq 137 ]; then out="$out did not finish within ${LIMIT}s (killed)"; fi
    case $out in
    *certfleet-checked*) restore; if [ -n "$RELOAD" ]; then run "$RELOAD" </dev/null >/dev/null 2>&1; fi
      printf '%s\n' "$out" >&2; fail 13 "reload failed: $RELOAD" ;;
    *) restore; printf '%s\n' "$out" >&2; fail 12 "check failed: $CHECK" ;;
    esac
  fi
fi
echo certfleet-ok
}
