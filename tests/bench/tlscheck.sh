#!/bin/sh
# tlscheck.sh FINGERPRINT SNI IPFILE - the TLS check the baseline tools
# lack: from the coordinator, for every address in IPFILE (one a line) at
# once, `openssl s_client` until the node serves the leaf whose SHA-256
# fingerprint (as `openssl x509 -fingerprint -sha256` prints it) is
# FINGERPRINT, or 10 s pass (an nginx reload is asynchronous: the old
# workers serve until the new ones are up).  Exit 0 if every node does;
# prints the addresses that do not.
set -u
fp=$1 sni=$2 list=$3
n=$(grep -c . "$list")
[ "$n" -gt 0 ] || exit 0
# shellcheck disable=SC2016
# xargs appends the address: $1 fingerprint, $2 SNI, $3 address.
xargs -P "$n" -n 1 sh -c '
	end=$(($(date +%s) + 10))
	while :; do
		got=$(timeout 5 openssl s_client -connect "$3:443" -servername "$2" \
		    </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null)
		[ "${got#*=}" = "$1" ] && exit 0
		[ "$(date +%s)" -ge "$end" ] && { echo "tlscheck: $3 does not serve the new certificate"; exit 1; }
		sleep 0.1
	done' tlscheck "$fp" "$sni" <"$list" 2>/dev/null
