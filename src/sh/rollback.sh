#!/bin/sh
# rollback.sh - after a failed verify: put back the previous version of the
# files whose indices are the arguments (the stage script reported them as
# backed up), reload, and print "certfleet-rolled-back" last.
#
# rollout.c (build_scripts) puts the values in front, each single-quoted:
#   N            the number of files; for file I: TI DI BI  target path,
#                its directory, its base name
#   RELOAD       the playbook's reload command;  LIMIT  seconds for it
#   TOK          this run's random token (in every temp name)
#
# As in the stage script, no step follows a link planted in a shared
# directory: a fresh temp name (ln -T fails on an existing name, the copy
# is created with O_EXCL and written through its fd), a check that it is
# still a regular file right before mv -T renames it over the target.
#
# Lines that hold only a comment, and blank lines, are left out when the
# script is embedded (src/sh/embed.sh), so comments cost nothing on the wire.
#
# get() assigns through eval, which shellcheck cannot follow:
# shellcheck disable=SC2154
# -ef (same file) is in dash, bash, busybox sh and every sh we meet, though
# not in POSIX:
# shellcheck disable=SC3013

get() { eval "$1=\${$2$3}"; }
run() { if command -v timeout >/dev/null 2>&1; then timeout -k 2 "$LIMIT" sh -c "$1"; else sh -c "$1"; fi; }
main() {
rc=0
for i in "$@"; do
  get t T "$i"; get d D "$i"; get b B "$i"
  [ "$t" -ef "$d/.$b.certfleet-prev" ] && continue
  # a copy when fs.protected_hardlinks refuses the link (a backup that is
  # still another user's file)
  k="$d/.certfleet.$b.$TOK.rb.tmp"
  if { ln -T -- "$d/.$b.certfleet-prev" "$k" 2>/dev/null || ( set -C; umask 077; exec 3>"$k" && cp -p -- "$d/.$b.certfleet-prev" /proc/self/fd/3 ); } &&
    [ -f "$k" ] && ! [ -L "$k" ] && mv -fT -- "$k" "$t"; then :; else rm -f -- "$k"; rc=11; fi
done
if [ -n "$RELOAD" ]; then run "$RELOAD" </dev/null 2>&1 || rc=13; fi
if [ "$rc" -eq 0 ]; then echo certfleet-rolled-back; fi
exit "$rc"
}
main "$@"
