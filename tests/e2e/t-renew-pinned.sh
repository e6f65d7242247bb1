#!/bin/bash
# http-01 challenge files go to every reachable node, pinned (`quarantine
# add`) ones included: a token file is harmless and the CA may be routed
# to any of them (real Pebble; the name resolves to one chosen node).
#  (a) a.node.test resolves to n3, which is pinned: the CA validates on
#      n3; n1, n2 get the certificate; n3 stays pinned, keeps its old
#      certificate, and no challenge file is left on it.
#  (b) n1 and n2 blackholed, n3 (pinned) the only reachable node: the
#      name still validates and the certificate is stored; n3 stays pinned
#      (manual), n1/n2 are quarantined as timeout.
#  (c) a.node.test resolves to n2, whose sshd is down: validation fails
#      and the error names the node that could not take the file and why
#      (refused); renewal.json and status carry the same message.
#  (d) renew --json when a canary stops the rollout: "renewal" says
#      issued and the top level says stopped, distinct from a CA failure.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
t_start
acme_start

CT=3
tb_up 3
acme_up || t_fatal "pebble did not start"
PB=$TB/pb.json
acme_playbook "$PB" http-01 a.node.test -- verify.server_name=a.node.test \
    connect_timeout=$CT
TB_SNI=a.node.test
R=$TB/state/web/renewal.json
OLD_SHA=$(tb_cert_sha256 "$TB/certs/old/fullchain.pem")
# The name resolves to node I only (challtestsrv's add-a appends).
point_at() {
	curl -fsS --max-time 5 -X POST -d '{"host":"a.node.test"}' \
	    "$CHALLTESTSRV_URL/clear-a" >/dev/null &&
	    pebble_add_a a.node.test "$(tb_ip "$1")" &&
	    [ "$(dig +short +time=2 +tries=1 -p "$CHALLTESTSRV_DNS_PORT" @127.0.0.1 A a.node.test)" = "$(tb_ip "$1")" ]
}

# ---------------------------------------------------------------------------
t_step "(a) the name resolves to n3, pinned: validates there; n3 stays pinned"
point_at 3 || t_fatal "point_at 3"
cf_run 0 -p "$PB" quarantine add n3 --reason "kept on the old certificate"
t_snap 3 a
cf_run 0 --json -p "$PB" renew
J=$T_OUT
assert_json "$J" 'd["renewal"]["action"]' issued
V1=$(acme_current_version)
[ -n "$V1" ] || t_fatal "no version stored"
SHA1=$(tb_cert_sha256 "$TB/state/web/versions/$V1/fullchain.pem")
for i in 1 2; do
	assert_node "$J" "n$i" outcome deployed
	assert_served "$i" "$SHA1" "n$i serves the new certificate"
done
assert_node "$J" n3 outcome skipped "n3 (pinned): skipped by the rollout"
assert_served 3 "$OLD_SHA" "n3 still serves its old certificate"
assert_bytes 3 /srv/tls/fullchain.pem "$TB/certs/old/fullchain.pem"
assert_eq "$(acme_challenge_files 3)" "" "n3: challenge file removed afterwards"
t_status
assert_node "$T_STATUS" n3 quarantined true "n3 still quarantined"
assert_node "$T_STATUS" n3 manual true "n3 still pinned (manual)"
assert_node "$T_STATUS" n3 reason manual
assert_node "$T_STATUS" n3 detail "kept on the old certificate"

# ---------------------------------------------------------------------------
t_step "(b) n1, n2 blackholed; pinned n3 the only reachable node: still validates"
{ tb_blackhole 1 && tb_blackhole 2; } || t_fatal "tb_blackhole"
N=$(grep -c 'POST /order-plz' "$PEBBLE_DIR/pebble.log")
cf_run 1 --json -p "$PB" renew --force
J=$T_OUT
assert_json "$J" 'd["renewal"]["action"]' issued "renewal issued through the pinned node"
V2=$(acme_current_version)
assert_ne "$V2" "$V1" "a new version stored"
assert_eq "$(grep -c 'POST /order-plz' "$PEBBLE_DIR/pebble.log")" "$((N + 1))" "one order"
assert_le "$T_SECS" $((2 * CT + 8)) "dead nodes cost connect timeouts, not more"
assert_node "$J" n3 outcome skipped "n3 stays out of the rollout"
for i in 1 2; do
	assert_node "$J" "n$i" outcome failed
	assert_node "$J" "n$i" reason timeout
done
assert_served 3 "$OLD_SHA" "n3 still serves its old certificate"
assert_eq "$(acme_challenge_files 3)" "" "n3: challenge file removed afterwards"
t_status
assert_node "$T_STATUS" n3 manual true "n3 still pinned (manual) after its http-01 step"
assert_node "$T_STATUS" n3 reason manual
for i in 1 2; do assert_node "$T_STATUS" "n$i" reason timeout; done
tb_unblackhole 1 && tb_unblackhole 2

# ---------------------------------------------------------------------------
t_step "(c) the name resolves to n2, whose sshd is down: the error names n2"
point_at 2 || t_fatal "point_at 2"
tb_stop_sshd 2 || t_fatal "tb_stop_sshd"
cf_run 1 --json -p "$PB" renew --force
J=$T_OUT
assert_json "$J" 'd["renewal"]["action"]' failed
E=$(json_get "$J" 'd["renewal"]["error"]')
t_log "    error: $E"
assert_match "$E" 'a\.node\.test' "the error names the domain"
assert_match "$E" 'urn:ietf:params:acme:error:[A-Za-z]+' "the error names the ACME problem"
assert_match "$E" '\(challenge file not on n2: refused\)$' "the error names n2 and why"
assert_file_match "$T_ERR" 'renew FAILED.*challenge file not on n2: refused' "stderr: same"
assert_match "$(json_get "$R" 'd.get("last_error")')" 'challenge file not on n2: refused' \
    "renewal.json: last_error names n2"
t_status
assert_match "$(json_get "$T_STATUS" 'd["renewal"]["last_error"]')" 'challenge file not on n2: refused' \
    "status: last_error names n2"
assert_json "$T_STATUS" 'd["renewal"]["consecutive_failures"]' 1
assert_eq "$(acme_current_version)" "$V2" "store: current version unchanged"
tb_start_sshd 2 || t_fatal "tb_start_sshd"

# ---------------------------------------------------------------------------
t_step "(d) a canary stop: renewal issued, rollout stopped (not a CA failure)"
cf_run 0 -p "$PB" quarantine release n3
for i in 1 2 3; do tb_break_check "$i"; done
point_at 1 || t_fatal "point_at 1"
cf_run 1 --json -p "$PB" renew --force
J=$T_OUT
assert_json "$J" 'd["renewal"]["action"]' issued "renewal: issued"
assert_json "$J" 'd["renewal"]["error"]' null
assert_json "$J" 'd["stopped"]' true "rollout: stopped"
assert_ne "$(json_get "$J" 'd["stop_reason"]')" null "stop_reason given"
V3=$(acme_current_version)
assert_ne "$V3" "$V2" "the new certificate is stored"
assert_json "$J" 'd["renewal"]["version"]' "$V3"
assert_json "$R" 'd["consecutive_failures"]' 0 "renewal.json: the renewal succeeded"
for i in 1 2 3; do tb_fix_check "$i"; done

t_done
