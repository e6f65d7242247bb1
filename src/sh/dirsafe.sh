#!/bin/sh
# dirsafe.sh - a function, not a script: rollout.c puts it in front of the
# stage and preflight scripts (after their values).  Like OpenSSH's
# StrictModes (secure_path): a file goes only into a directory that no one
# but root and the login user can change, checked on the directory and each
# of its parents up to /, after resolving links (cd -P).  In any other
# directory a service account could swap a file for a link between two of
# our steps.  A file whose playbook entry says "shared_dir": true (SDI "1")
# is exempt for its own directory (the stage script then uses only
# link-safe steps there), not for its parents.
#
# dirsafe: returns 1 with $unsafe set to the reason for the first
# offending directory; 0 when all are safe.  One stat for all directories;
# `id -u` only when one is owned by someone other than root.
#
# get() and the values come from the script it is put in front of:
# shellcheck disable=SC2154

dirsafe() {
  set --; seen=
  i=0; while [ "$i" -lt "$N" ]; do
    get d D "$i"; eval "sd=\${SD$i:-}"
    # a directory that does not exist is the caller's own error message
    if cd -P -- "$d" 2>/dev/null; then
      p=$PWD; if [ -n "$sd" ]; then p=${p%/*}; fi
      while [ -n "$p" ]; do
        case "$nl$seen$nl" in *"$nl$p$nl"*) ;; *) seen="$seen$nl$p"; set -- "$@" "$p" ;; esac
        p=${p%/*}; done
    fi
    i=$((i+1)); done
  cd / || return 0
  set -- "$@" /
  st=$(stat -c '%a %u %U %n' -- "$@" 2>/dev/null)
  unsafe=
  while read -r a u un p; do
    [ -n "$p" ] || continue
    m=$a; if [ "${#m}" -lt 4 ]; then m="0$m"; fi
    if [ "$u" != 0 ]; then
      if [ -z "${myuid:-}" ]; then myuid=$(id -u); fi
      if [ "$u" != "$myuid" ]; then unsafe="directory $p is owned by $un (mode $m), not by root or the login user"; break; fi
    fi
    if [ $((0$a & 022)) -ne 0 ]; then unsafe="directory $p is group- or other-writable (owner $un, mode $m)"; break; fi
  done <<EOT
$st
EOT
  [ -z "$unsafe" ] && return 0
  unsafe="$unsafe: another account could swap files there for links; refusing (make it root's and not group/other-writable, or set \"shared_dir\": true on the file in deploy.files to deploy there link-safely)"
  return 1
}
