#!/bin/bash
# A node whose host name cannot be resolved in time: its DNS server never
# answers (a blackholed address; resolv.conf in a private mount namespace
# for certfleet only, with long resolver timeouts).  Resolution is bounded
# by ssh.connect_timeout like the connect itself: the node fails with
# "timeout" naming the lookup, the run is not held by the resolver, and the
# node given by address is deployed.
. "$(dirname "$0")/../lib/common.sh"
t_start

CT=2
tb_up 3
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
OLD_SHA=$(tb_cert_sha256 "$TB/certs/old/fullchain.pem")
# n3 is the DNS server that never answers: UDP to it is dropped
tb_blackhole 3
printf 'nameserver %s\noptions timeout:15 attempts:2\n' "$(tb_ip 3)" >"$T_TMP/resolv.conf"
NAME=n1.certfleet-hang.test
PB=$TB/pb.json
tb_playbook "$PB" connect_timeout=$CT canary=0 nodes=1,2
"$TB_PY" - "$PB" "$NAME" <<'EOF' || t_fatal "playbook edit"
import json, sys
pb = json.load(open(sys.argv[1]))
pb["nodes"][0]["host"] = sys.argv[2]
json.dump(pb, open(sys.argv[1], "w"), indent=2)
EOF

# CMD... with /etc/resolv.conf replaced, in a mount namespace of its own
with_hang_dns() {
	# shellcheck disable=SC2016
	unshare -m --propagation private sh -c \
	    'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' \
	    sh "$T_TMP/resolv.conf" "$@"
}

t_step "control: in that namespace the lookup hangs"
with_hang_dns timeout 3 getent ahosts "$NAME" >/dev/null 2>&1
assert_eq "$?" 124 "getent ahosts $NAME was still waiting after 3 s"

t_step "deploy: n1 (by name) times out within connect_timeout, n2 deployed"
assert_exit 2 with_hang_dns "$CERTFLEET" --state-dir "$TB/state" --json -p "$PB" \
    deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
assert_node "$J" n1 outcome failed
assert_node "$J" n1 reason timeout
assert_match "$(node_get "$J" n1 error)" "resolving $NAME timed out" "n1: the error names the lookup"
assert_le "$(node_get "$J" n1 duration_ms)" $(((CT + 1) * 1000)) "n1 given up within connect_timeout (+1 s)"
assert_le "$T_SECS" $((CT + 8)) "the whole run is not held by the resolver"
assert_node "$J" n2 outcome deployed
assert_node_has 2 "$NEW"
assert_served 1 "$OLD_SHA" "n1 still serves the old certificate"

t_step "check (TLS probes only) is bounded the same way"
assert_exit 1 with_hang_dns "$CERTFLEET" --state-dir "$TB/state" -p "$PB" check --timeout 1
assert_match "$(cat "$T_OUT")" "n1: timeout" "check names n1's timeout"
assert_le "$T_SECS" 5 "check --timeout 1 is not held by the resolver"
t_done
