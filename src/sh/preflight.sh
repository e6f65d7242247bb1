#!/bin/sh
# preflight.sh - the dry run's check on a node: what the stage script (and
# a renew's http-01 step) would need, checked without writing anything, so
# that a node whose first real run would fail says why beforehand.  One
# "certfleet: ..." line per problem, "certfleet-note: ..." for what works
# differently than one would guess; exits with the stage code of the first
# problem.  check and reload themselves never run: `sudo -n -l CMD` asks
# sudo whether CMD would run without a password.
#
# rollout.c (build_scripts) puts the values in front, each single-quoted:
#   N            the number of files; for file I (0..N-1):
#   TI DI        target path, its directory
#   SZI          size of the new bytes;  OGI  "1" when owner/group are set
#   SDI          "1" when the file's directory is shared ("shared_dir")
#   CHECK RELOAD the playbook's commands;  WEBROOT  http-01 webroot or ""
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
cause() { why=${1%"$nl"}; why=${why##*"$nl"}; why=${why##*: }; }
rc=0; bad=
prob() { if [ "$rc" -eq 0 ]; then rc=$1; fi; shift; echo "certfleet: $*"; }
me=$(id -un 2>/dev/null || id -u)
ph=0; if [ -r /proc/sys/fs/protected_hardlinks ]; then read -r ph </proc/sys/fs/protected_hardlinks; fi
# why directory $1 is not writable
unwritable() {
  case ",$(findmnt -n -o OPTIONS -T "$1" 2>/dev/null)," in
  *,ro,*) prob 11 "$1 is on a read-only file system" ;;
  *) prob 11 "$1 is not writable by $me: Permission denied (the login user $me needs write access to $1; see README: Preparing a node)" ;;
  esac
}
sudo_ok() {
  what=$1; code=$2; cmd=$3
  # split into words, unglobbed, like the shell that will run it
  set -f
  # shellcheck disable=SC2086
  set -- $cmd
  set +f
  # a command the login's PATH does not have fails every real run
  case ${1:-} in ''|*=*|'('*|'{'*|'!') return 0 ;; sudo) ;; *) command -v "$1" >/dev/null 2>&1 || prob "$code" "$what \`$cmd\`: $1: not found in $me's PATH"; return 0 ;; esac
  shift
  while [ "$#" -gt 0 ]; do case $1 in -u|-g|-C|-h|-p|-r|-t|-U|-D) shift; [ "$#" -gt 0 ] && shift ;; --) shift; break ;; -*) shift ;; *) break ;; esac; done
  # the command sudo runs ends at the first shell operator
  k=0; for w in "$@"; do case $w in '&&'|'||'|'|'|';'|'&'|*';') break ;; esac; k=$((k+1)); done
  m=$#; j=0; while [ $j -lt $m ]; do if [ $j -lt $k ]; then set -- "$@" "$1"; fi; shift; j=$((j+1)); done
  [ "$#" -gt 0 ] || return 0
  if ! out=$(sudo -n -l "$@" </dev/null 2>&1); then
    cause "$out"; [ -n "$why" ] || why="not allowed by sudoers"
    prob "$code" "$what \`$cmd\` would not run unattended (sudo -n -l: $why): $me needs a NOPASSWD sudoers rule for it, see README: Preparing a node"
  fi
}
main() {
# what the stage script's first step refuses (dirsafe, put in front)
if ! dirsafe; then prob 10 "$unsafe"; fi
i=0; while [ "$i" -lt "$N" ]; do
  get t T "$i"; get d D "$i"; get sz SZ "$i"; get og OG "$i"
  # one report per directory; a file in one we cannot write has nothing more
  # to say
  case "$nl$bad$nl" in *"$nl$d$nl"*) i=$((i+1)); continue ;; esac
  if ! [ -d "$d" ]; then prob 11 "directory $d does not exist"; bad="$bad$nl$d"; i=$((i+1)); continue
  elif ! [ -w "$d" ] || ! [ -x "$d" ]; then unwritable "$d"; bad="$bad$nl$d"; i=$((i+1)); continue
  else
    avail=$(df -Pk -- "$d" 2>/dev/null | { read -r _; read -r _ _ _ a _; echo "${a:-}"; })
    need=$((sz / 1024 + 4))
    case $avail in ''|*[!0-9]*) ;; *) if [ "$avail" -lt "$need" ]; then prob 11 "$d has $avail KiB free, the new $t needs about $need KiB: No space left on device"; fi ;; esac
  fi
  if [ -L "$t" ]; then prob 10 "$t is a symbolic link: refusing to replace it"
  elif [ -e "$t" ] && ! [ -f "$t" ]; then prob 10 "$t exists and is not a regular file"
  elif [ -f "$t" ] && ! [ -O "$t" ] && [ "$ph" = 1 ] && ! { [ -r "$t" ] && [ -w "$t" ]; }; then
    # what the stage script's backup step will meet
    if [ -r "$t" ]; then echo "certfleet-note: $t is not $me's and fs.protected_hardlinks=1 refuses a hard link: its previous version will be kept as a copy"
    else prob 11 "cannot keep previous version of $t: it is not $me's, fs.protected_hardlinks=1 refuses a hard link and $me cannot read it to copy it: make $me its owner once (chown $me $t; see README: Preparing a node)"; fi
  fi
  if [ -n "$og" ] && [ "$(id -u)" != 0 ]; then prob 11 "owner/group for $t need a login that may chown (root); $me may not"; fi
  i=$((i+1)); done
if [ -n "$WEBROOT" ]; then
  w="$WEBROOT/.well-known/acme-challenge"
  while ! [ -e "$w" ] && [ "$w" != "$WEBROOT" ]; do w=${w%/*}; done
  if ! [ -d "$w" ]; then prob 11 "http-01 webroot $WEBROOT does not exist"
  elif ! [ -w "$w" ] || ! [ -x "$w" ]; then unwritable "$w"; fi
fi
sudo_ok check 12 "$CHECK"
sudo_ok reload 13 "$RELOAD"
echo certfleet-preflight-done
exit "$rc"
}
main
