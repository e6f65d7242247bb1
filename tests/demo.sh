#!/bin/sh
# demo.sh - `make demo`: certfleet on a small real fleet, start to finish.
#
# The main job end to end: a local ACME CA (Pebble, with pebble-challtestsrv
# as its DNS), 4 nodes (network namespaces, each with its own sshd and
# nginx), one of them cut off the network.  `certfleet renew` obtains a
# certificate over http-01 (the challenge file goes to every reachable
# node), stores it, deploys it (the cut-off node is quarantined, the others
# are not held back), then `certfleet status`; the node comes back and the
# next run converges it without a human.  Tears everything down.  Needs
# root.  BUILD=dir picks the binary.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u

T_ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$T_ROOT/tests/lib/testbed.sh"
. "$T_ROOT/tests/lib/pebble.sh"
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$T_ROOT/$BUILD ;; esac
CERTFLEET=$BUILD/certfleet

[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces)" >&2; exit 1; }
[ -x "$CERTFLEET" ] || { echo "demo: no $CERTFLEET (run make)" >&2; exit 1; }
demo_down() { pebble_down; tb_down; }
trap demo_down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -t 1 ]; then B=$(printf '\033[1m') N=$(printf '\033[0m'); else B="" N=""; fi
say() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
show() { printf '$ %s\n' "$*"; "$@"; }

say "Bringing up 4 nodes (each: own network namespace, sshd on :22, nginx on :443 and :80)"
tb_up 4
for i in 1 2 3 4; do
	printf '  n%s  %-15s serves %.16s…  (old certificate)\n' "$i" "$(tb_ip "$i")" \
	    "$(tb_served_sha256 "$i")"
done

say "Starting a local ACME CA (Pebble) and its DNS"
pebble_up "$TB" PEBBLE_WFE_NONCEREJECT=0 >/dev/null || exit 1
# node.test resolves to n1, www.node.test to n2: the CA may reach any node
pebble_add_a node.test "$(tb_ip 1)" && pebble_add_a www.node.test "$(tb_ip 2)" || exit 1
printf '  directory %s\n  node.test -> n1, www.node.test -> n2\n' "$PEBBLE_DIRECTORY"

say "Cutting n3 off the network (every packet to it is dropped)"
tb_blackhole 3

PB=$TB/demo.json
tb_playbook "$PB" connect_timeout=3 acme.directory="$PEBBLE_DIRECTORY" \
    acme.ca_bundle="$PEBBLE_CA_BUNDLE" acme.challenge=http-01
say "The playbook ($PB)"
sed 's/^/  /' "$PB"

CF="$CERTFLEET --state-dir $TB/state -p $PB"
say "Renew: order from the CA (http-01 on every reachable node), store, deploy, verify"
show $CF renew
echo "(exit $? - 2 means partial: the certificate is issued and served everywhere reachable; n3 is quarantined)"

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

say "n3 comes back; the next timer run converges it (nothing is due at the CA)"
tb_unblackhole 3
show $CF renew
echo "(exit $?)"
show $CF status

say "Tearing down"
