#!/bin/bash
# The fault fleet converges: quarantined nodes are retried by later runs
# (still failing while broken), and once fixed the next run deploys to
# them, releases them from quarantine and exits 0.
# canary 0: the canary is whichever node is ready first, and a canary that
# fails its check stops the rollout by design (t-deploy-canary); with a
# node whose nginx config is broken in the fleet that would make this
# test's outcome depend on timing.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up $FLEET_N
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
NEW_SHA=$(tb_cert_sha256 "$NEW/fullchain.pem")
PB=$TB/pb.json
tb_playbook "$PB" connect_timeout=3 canary=0
ALL=$(for i in $(seq 1 $FLEET_N); do printf 'n%s ' "$i"; done)

t_step "first run on the broken fleet: exit 2"
fleet_break || t_fatal "could not set up the faults"
cf_run 2 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
assert_json "$T_OUT" 'd["summary"]["deployed"]' 3
assert_json "$T_OUT" 'd["summary"]["failed"]' 7

t_step "second run, still broken: quarantined nodes are retried, healthy ones unchanged"
cf_run 2 --json -p "$PB" deploy
J=$T_OUT
for i in $FLEET_GOOD; do assert_node "$J" "n$i" outcome unchanged; done
for i in $FLEET_BAD; do
	assert_node "$J" "n$i" outcome failed "n$i: retried (and failed again)"
	assert_node "$J" "n$i" reason "${FLEET_REASON[$i]}"
done
t_status
for i in $FLEET_BAD; do assert_node "$T_STATUS" "n$i" attempts 2; done

t_step "fix every node, run again: exit 0, everything converged"
fleet_fix || t_fatal "could not undo the faults"
cf_run 0 --json -p "$PB" deploy
J=$T_OUT
assert_json "$J" 'd["summary"]["deployed"]' 7
assert_json "$J" 'd["summary"]["unchanged"]' 3
assert_json "$J" 'd["summary"]["failed"]' 0
for i in $FLEET_BAD; do assert_node "$J" "n$i" outcome deployed; done
for i in $(seq 1 $FLEET_N); do assert_node_has "$i" "$NEW"; done

t_step "quarantine released for every node"
t_status
assert_nodes "$T_STATUS" quarantined false $ALL
assert_nodes "$T_STATUS" serving_current true $ALL
assert_nodes "$T_STATUS" serving_sha256 "$NEW_SHA" $ALL
assert_nodes "$T_STATUS" reason null $ALL
cf_run 0 -p "$PB" verify

t_step "manual quarantine: the node is skipped until released"
cf_run 0 -p "$PB" quarantine add n2 --reason "disk replacement"
t_status
assert_node "$T_STATUS" n2 quarantined true
t_snap 2 manual
cf_run 0 --json -p "$PB" deploy --force
assert_node "$T_OUT" n2 outcome skipped
assert_unchanged 2 manual "n2 (manually quarantined): untouched by deploy --force"
cf_run 0 -p "$PB" quarantine release n2
t_status
assert_node "$T_STATUS" n2 quarantined false

t_done
