#!/bin/sh
# demo.sh - `make demo`: certfleet on a small real fleet, start to finish.
#
# Brings up 4 nodes (network namespaces, each with its own sshd and nginx),
# cuts one off the network, makes a certificate with a test CA, deploys it
# (per-node lines, the cut-off node quarantined), shows `certfleet status`,
# then tears everything down.  Needs root.  BUILD=dir picks the binary.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u

T_ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$T_ROOT/tests/lib/testbed.sh"
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$T_ROOT/$BUILD ;; esac
CERTFLEET=$BUILD/certfleet

[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces)" >&2; exit 1; }
[ -x "$CERTFLEET" ] || { echo "demo: no $CERTFLEET (run make)" >&2; exit 1; }
trap tb_down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -t 1 ]; then B=$(printf '\033[1m') N=$(printf '\033[0m'); else B="" N=""; fi
say() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
show() { printf '$ %s\n' "$*"; "$@"; }

say "Bringing up 4 nodes (each: own network namespace, sshd on :22, nginx on :443)"
tb_up 4
for i in 1 2 3 4; do
	printf '  n%s  %-15s serves %.16s…  (old certificate)\n' "$i" "$(tb_ip "$i")" \
	    "$(tb_served_sha256 "$i")"
done

say "Cutting n3 off the network (every packet to it is dropped)"
tb_blackhole 3

say "A new certificate for node.test, www.node.test from the test CA"
tb_make_cert new 90 || exit 1
NEW=$TB/certs/new
openssl x509 -in "$NEW/cert.pem" -noout -subject -issuer -enddate | sed 's/^/  /'
printf '  sha256 %s\n' "$(tb_cert_sha256 "$NEW/fullchain.pem")"

PB=$TB/demo.json
tb_playbook "$PB" connect_timeout=3
say "The playbook ($PB)"
sed 's/^/  /' "$PB"

CF="$CERTFLEET --state-dir $TB/state -p $PB"
say "Deploy: upload, nginx -t, reload, verify over TLS, per node in parallel"
show $CF deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
echo "(exit $? - 2 means partial: some nodes quarantined)"

say "Status: what every node serves, and the quarantine"
show $CF status

say "Checked from outside certfleet (openssl s_client against each node)"
for i in 1 2 3 4; do
	s=$(tb_served_sha256 "$i")
	if [ -n "$s" ]; then
		printf '  n%s serves %.16s…\n' "$i" "$s"
	else
		printf '  n%s does not answer (still cut off; its files were never touched)\n' "$i"
	fi
done

say "Tearing down"
