#!/bin/bash
# http-01 with unreachable nodes, the bookkeeping side: a node that cannot
# take the challenge file is quarantined once per run (not once by the
# challenge step and again by the rollout), also when nothing is deployed
# (--no-deploy); when no node can take the file the CA is not asked, the
# run fails (exit 1) and the recorded error (renewal.json, notifications)
# names the domain and the cause rather than "see above".
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
t_start
acme_start

T0=$(date +%s.%N)
CT=2
tb_up 2
acme_up || t_fatal "pebble did not start"
pebble_add_a a.node.test "$(tb_ip 1)" || t_fatal "pebble_add_a"
PB=$TB/pb.json
acme_playbook "$PB" http-01 a.node.test -- verify.server_name=a.node.test \
    connect_timeout=$CT
TB_SNI=a.node.test
R=$TB/state/web/renewal.json
OLD_SHA=$(tb_cert_sha256 "$TB/certs/old/fullchain.pem")

t_step "n2 blackholed, renew --no-deploy: stored, n2 quarantined once"
tb_blackhole 2 || t_fatal "tb_blackhole"
cf_run 0 -p "$PB" renew --no-deploy
assert_file_match "$T_ERR" 'stored version' "certificate stored"
assert_le "$T_SECS" $((CT + 5)) "run within connect_timeout + 5 s"
V1=$(acme_current_version)
assert_ne "$V1" "" "store has a current version"
assert_served 1 "$OLD_SHA" "n1 untouched (--no-deploy)"
assert_eq "$(acme_challenge_files 1)" "" "n1: challenge file removed"
t_status
assert_node "$T_STATUS" n2 quarantined true "n2 quarantined by the http-01 step"
assert_node "$T_STATUS" n2 reason timeout
assert_node "$T_STATUS" n2 attempts 1
assert_node "$T_STATUS" n1 quarantined false

t_step "both blackholed, renew --force: CA not asked, exit 1, cause recorded"
tb_blackhole 1 || t_fatal "tb_blackhole"
N_ORDERS=$(grep -c 'POST /order-plz' "$PEBBLE_DIR/pebble.log")
N_CHALL=$(grep -c 'POST /chalZ/' "$PEBBLE_DIR/pebble.log")
assert_ne "$N_CHALL" 0 "Pebble logged the first run's challenges (log format as expected)"
cf_run 1 -p "$PB" renew --force
assert_le "$T_SECS" $((2 * CT + 5)) "run within 2 connect timeouts + 5 s"
assert_file_match "$T_ERR" 'renew FAILED.*a\.node\.test.*timed out' \
    "error names the domain and the cause"
assert_eq "$(grep -c 'POST /chalZ/' "$PEBBLE_DIR/pebble.log")" "$N_CHALL" \
    "no challenge was submitted to the CA"
assert_ne "$(grep -c 'POST /order-plz' "$PEBBLE_DIR/pebble.log")" "$N_ORDERS" \
    "(an order was placed)"
assert_json "$R" 'd["consecutive_failures"]' 1
assert_match "$(json_get "$R" 'd.get("last_error")')" 'a\.node\.test.*timed out' \
    "renewal.json: last_error names the domain and the cause"
if json_get "$R" 'd.get("last_error")' | grep -q 'see above'; then
	t_notok "renewal.json: last_error does not say 'see above'"
else
	t_ok "renewal.json: last_error does not say 'see above'"
fi
assert_eq "$(acme_current_version)" "$V1" "store: current version unchanged"
t_status
assert_node "$T_STATUS" n1 attempts 1 "n1: one attempt for one run"
assert_node "$T_STATUS" n2 attempts 2 "n2: two attempts for two runs"
for i in 1 2; do assert_node "$T_STATUS" "n$i" reason timeout; done

t_log "test wall time $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
t_done
