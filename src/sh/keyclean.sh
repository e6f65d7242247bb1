#!/bin/sh
# keyclean.sh - after `revoke --reason keyCompromise`: remove the backups
# of a key file that hold the compromised key, on one node.  keyclean.c
# appends `main() { one I BACKUP LIVE SHA256 ... echo certfleet-ok; }` and
# the call of main, each value single-quoted.  `one` prints, for key
# file I:
#   certfleet-live I            the live file holds the key (left alone)
#   certfleet-backup I STATUS   removed | other | none | symlink |
#                               notfile | unreadable | error MESSAGE
# and the last line is certfleet-ok: libssh2 reports exit status 0 when no
# exit-status message came back, and a forced command exits 0 without
# running us, so only the marker proves the checks ran.
#
# Hashes are compared on the node: sending the key, or copying each
# backup back to compare, would move the compromised key around once
# more.  A backup is only ever unlinked (rm of a name never follows a
# link), never overwritten: it may be a hard link of the live file.
#
# Lines that hold only a comment, and blank lines, are left out when the
# script is embedded (src/sh/embed.sh).
set -u
umask 077
hsum() {
  if command -v sha256sum >/dev/null 2>&1; then s=$(sha256sum <"$1" 2>/dev/null) || return 1
  else s=$(openssl dgst -sha256 -r <"$1" 2>/dev/null) || return 1; fi
  s=${s%% *}; [ ${#s} -eq 64 ] || return 1; printf '%s\n' "$s"
}
one() {
  i=$1 b=$2 t=$3 want=$4
  # never read through a link: a service account may own the directory
  if ! [ -L "$t" ] && [ -f "$t" ] && got=$(hsum "$t") && [ "$got" = "$want" ]; then echo "certfleet-live $i"; fi
  if [ -L "$b" ]; then echo "certfleet-backup $i symlink"; return 0; fi
  if ! [ -e "$b" ]; then echo "certfleet-backup $i none"; return 0; fi
  if ! [ -f "$b" ]; then echo "certfleet-backup $i notfile"; return 0; fi
  if ! got=$(hsum "$b"); then echo "certfleet-backup $i unreadable"; return 0; fi
  if [ "$got" != "$want" ]; then echo "certfleet-backup $i other"; return 0; fi
  # re-checked right before the unlink: a link swapped in since the hash
  # is not what we compared
  if [ -L "$b" ] || ! [ -f "$b" ]; then echo "certfleet-backup $i symlink"; return 0; fi
  if e=$(rm -f -- "$b" 2>&1) && ! [ -e "$b" ] && ! [ -L "$b" ]; then echo "certfleet-backup $i removed"
  else echo "certfleet-backup $i error $(printf '%s' "${e:-still there}" | tr '\n' ' ')"; fi
}
