#!/bin/sh
# deps.sh - install the Debian packages certfleet's build and test suite need.
#
# Idempotent and quick when everything is present: one dpkg-query, no network.
# `apt-get update` runs only when something is missing, so a fresh machine
# gets current lists while a prepared one never touches the network.
set -eu

PKGS="build-essential clang pkg-config sudo libssh2-1-dev libssl-dev
libcurl4-openssl-dev libjansson-dev libcmocka-dev openssh-server
openssh-client nginx-light pebble certbot iproute2 iptables openssl curl
procps psmisc util-linux python3 dnsutils faketime valgrind libjose-dev libclang-rt-14-dev
prometheus systemd man-db shellcheck busybox"

# One dpkg-query for all of them.  "ii " = installed; dpkg -s alone also
# succeeds for removed packages whose config files remain ("rc").
# shellcheck disable=SC2086
installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $PKGS 2>/dev/null |
	awk '$1 == "ii" { print $2 }' | sed 's/:.*//')
missing=""
for p in $PKGS; do
	echo "$installed" | grep -qx "$p" || missing="$missing $p"
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing packages:$missing" >&2
	echo "deps.sh: run as root (or: apt-get install$missing)" >&2
	exit 1
fi

echo "deps.sh: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
