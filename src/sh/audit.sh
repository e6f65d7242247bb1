#!/bin/sh
# audit.sh - on a node that already serves the current certificate: do its
# files still hold what the playbook says, mode and owner included (a key
# left 0644 by an older tool)?  Bytes that differ from the store's print
# "certfleet-stale" (rollout.c then runs the stage script on the same
# session); a mode, owner or group that differs is fixed and reported as
# "certfleet-fixed I WHAT OLD NEW", or "certfleet-unfixed I WHAT OLD NEW"
# when it cannot be (a login that is not root cannot chown).  Last line:
# "certfleet-audited".
#
# Cheap on purpose (it runs on every unchanged node of every run): one
# sha256sum and one stat for all files; a process per file only for a file
# that drifted.  A fix never follows a link: the file is opened on fd 3 and
# checked to be that same regular file (not a link) by name, then chmod and
# chown go through /proc/self/fd/3; without /proc, by name after the same
# checks, chown -h.
#
# rollout.c (build_scripts) puts the values in front, each single-quoted:
#   N  the number of files; for file I: TI target path, MI mode (octal),
#   HI sha256 of the bytes, OI GI owner and group or ""
#
# get() assigns through eval, which shellcheck cannot follow:
# shellcheck disable=SC2154
# -ef (same file) is in dash, bash, busybox sh and every sh we meet, though
# not in POSIX:
# shellcheck disable=SC3013

nl='
'
get() { eval "$1=\${$2$3}"; }
# fix file $i ($t): chmod to $wm (or ""), then chown to $wo (owner[:group]
# or ""); exits 0 all fixed, 2 the chown failed (the mode is fixed), else
# nothing fixed
fix() (
  exec 3<"$t" || exit 1
  if [ -e /proc/self/fd/3 ]; then f=/proc/self/fd/3; else f=$t; fi
  { [ -f "$t" ] && ! [ -L "$t" ] && [ "$t" -ef "$f" ]; } || exit 1
  if [ -n "$wm" ]; then chmod "$wm" "$f" 2>/dev/null || exit 3; fi
  if [ -n "$wo" ]; then
    if [ "$f" = "$t" ]; then chown -h -- "$wo" "$f" 2>/dev/null || exit 2; else chown -- "$wo" "$f" 2>/dev/null || exit 2; fi
  fi
)
main() {
set --
i=0; while [ "$i" -lt "$N" ]; do
  get t T "$i"; get h H "$i"
  if [ -L "$t" ] || ! [ -f "$t" ]; then echo certfleet-stale; echo certfleet-audited; exit 0; fi
  set -- "$@" "$t"; i=$((i+1)); done
sums=$(sha256sum -- "$@" 2>/dev/null)
i=0; while [ "$i" -lt "$N" ]; do
  get t T "$i"; get h H "$i"
  case "$nl$sums$nl" in *"$nl$h  $t$nl"*) ;; *) echo certfleet-stale; echo certfleet-audited; exit 0 ;; esac
  i=$((i+1)); done
st=$(stat -c '%a %u %U %g %G' -- "$@" 2>/dev/null)
i=0
while read -r a u un g gn; do
  [ "$i" -lt "$N" ] || break
  get t T "$i"; get m M "$i"; get o O "$i"; get gw G "$i"
  wm=; wo=; out=
  if [ $((0$a)) -ne $((m)) ]; then wm=$m; out="$out${nl}mode 0$a $m"; fi
  if [ -n "$o" ] && [ "$o" != "$un" ] && [ "$o" != "$u" ]; then wo=$o; out="$out${nl}owner $un $o"; fi
  if [ -n "$gw" ] && [ "$gw" != "$gn" ] && [ "$gw" != "$g" ]; then wo="$wo:$gw"; out="$out${nl}group $gn $gw"; fi
  if [ -n "$out" ]; then
    fix; r=$?
    printf '%s\n' "$out" | while read -r what old new; do
      [ -n "$what" ] || continue
      case $r$what in 0*|2mode) echo "certfleet-fixed $i $what $old $new" ;; *) echo "certfleet-unfixed $i $what $old $new" ;; esac
    done
  fi
  i=$((i+1))
done <<EOT
$st
EOT
echo certfleet-audited
}
main
