#!/bin/bash
# rollout.max_failures counts only failures that say something about the
# certificate or the recipe (check, reload, verify), never unreachable or
# unusable hosts.  One node at a time (concurrency 1: playbook order), so
# which nodes run before the budget is spent is known:
#   run 1 (budget 2): n2 blackholed, n3 sshd stopped, n4 auth refused, n5
#         verify fails -> 1 recipe failure, 3 host failures: not stopped,
#         n6..n8 deployed, exit 2;
#   run 2 (budget 2, a newer cert): the nodes run 1 quarantined (n2..n5)
#         go last; n6, n7 verify fail -> after n7 the budget is spent:
#         stopped, n8 and the quarantined nodes untouched, exit 1.
. "$(dirname "$0")/../lib/common.sh"
t_start

CT=2
tb_up 8
tb_make_cert new 90 || t_fatal "tb_make_cert"
tb_make_cert newer 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
NEWER=$TB/certs/newer
OLD=$TB/certs/old
NEW_SHA=$(tb_cert_sha256 "$NEW/fullchain.pem")
PB=$TB/pb.json
tb_playbook "$PB" canary=1 max_failures=2 concurrency=1 connect_timeout=$CT \
    verify_timeout=2 deploy.reload=/srv/reload.sh

t_step "run 1: three unreachable/unusable nodes and one verify failure"
tb_blackhole 2
tb_stop_sshd 3
: >"$(tb_dir 4)/authorized_keys"
tb_ignore_reload 5
cf_run 2 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
assert_json "$J" 'd["stopped"]' false "not stopped: only one failure counts"
assert_node "$J" n1 canary true
assert_node "$J" n2 reason timeout
assert_node "$J" n3 reason refused
assert_node "$J" n4 reason auth
assert_node "$J" n5 reason verify-failed
assert_node "$J" n5 rolled_back true
assert_nodes "$J" outcome deployed n1 n6 n7 n8
for i in 1 6 7 8; do assert_node_has "$i" "$NEW"; done
assert_node_has 5 "$OLD"

t_step "run 2: a newer certificate, n6 and n7 fail verification"
tb_ignore_reload 6
tb_ignore_reload 7
for i in 2 3 4 5 8; do t_snap "$i" before; done
cf_run 1 --json -p "$PB" deploy --cert "$NEWER/fullchain.pem" --key "$NEWER/privkey.pem"
J=$T_OUT
assert_json "$J" 'd["stopped"]' true "stopped after the budget"
assert_match "$(json_get "$J" 'd["stop_reason"]')" "max_failures" "stop reason names rollout.max_failures"
assert_node "$J" n1 outcome deployed
assert_node_has 1 "$NEWER"
for i in 6 7; do
	assert_node "$J" "n$i" outcome failed
	assert_node "$J" "n$i" reason verify-failed
	assert_node_has "$i" "$NEW"
done
t_step "n8 and the nodes run 1 quarantined (tried last) are untouched"
for i in 8 5; do assert_node "$J" "n$i" outcome stopped; done
# still unreachable or refusing: they fail before the gate, as in run 1
for i in 2 3 4; do assert_node "$J" "n$i" outcome failed; done
for i in 8 2 3 4 5; do
	assert_unchanged "$i" before "n$i: untouched after the stop"
done
assert_served 8 "$NEW_SHA" "n8 still serves the certificate of run 1"
assert_node_has 5 "$OLD"
t_status
assert_node "$T_STATUS" n8 quarantined false
for i in 5 6 7; do assert_node "$T_STATUS" "n$i" reason verify-failed; done
assert_node "$T_STATUS" n2 reason timeout
assert_node "$T_STATUS" n4 reason auth

t_done
