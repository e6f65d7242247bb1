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
prometheus systemd man-db shellcheck busybox clang-format
apache2 haproxy postfix dovecot-imapd dovecot-pop3d"

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
# The recipe tests (apache2, haproxy, postfix, dovecot) start their own
# daemon per test node; the machine must not get one of each.  postfix
# would ask which mail setup to write: "No configuration" leaves the
# machine's /etc/postfix without a main.cf (the tests use their own).
echo "postfix postfix/main_mailer_type select No configuration" |
	debconf-set-selections
# A policy-rc.d that says 101 ("action forbidden") keeps every postinst's
# invoke-rc.d/deb-systemd-invoke from starting a service.  Containers
# usually have one; on a host with systemd we put one there for the
# install only, and remove it (only if it is ours) after.
ours=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\n# deps.sh (certfleet tests): no service starts on install\nexit 101\n' \
		>/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	ours=1
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
[ -n "$ours" ] && rm -f /usr/sbin/policy-rc.d
trap - EXIT
