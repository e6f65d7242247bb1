#!/bin/bash
# deploy to a healthy fleet: every node gets the certificate (exit 0); a
# second run finds nothing to do; --force deploys again.
. "$(dirname "$0")/../lib/common.sh"
t_start

N=5
tb_up $N
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
OLD=$TB/certs/old
NEW_SHA=$(tb_cert_sha256 "$NEW/fullchain.pem")
PB=$TB/pb.json
tb_playbook "$PB"
NODES="n1 n2 n3 n4 n5"

t_step "every node serves the old certificate to begin with"
for i in $(seq 1 $N); do assert_node_has "$i" "$OLD"; done

t_step "first deploy: all $N nodes deployed, exit 0"
cf_run 0 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
assert_json "$J" 'd["command"]' deploy
assert_json "$J" 'd["exit_code"]' 0
assert_json "$J" 'd["summary"]["deployed"]' $N
assert_json "$J" 'd["summary"]["failed"]' 0
assert_json "$J" 'len(d["nodes"])' $N
assert_nodes "$J" outcome deployed $NODES
assert_nodes "$J" reason null $NODES
assert_nodes "$J" quarantined false $NODES
assert_nodes "$J" rolled_back false $NODES
assert_json "$J" 'sum(1 for n in d["nodes"] if n["canary"])' 1 "exactly one canary (playbook canary=1)"
for i in $(seq 1 $N); do assert_node_has "$i" "$NEW"; done
assert_match "$(cat "$T_ERR")" "n1" "human report names the nodes on stderr"

t_step "the store knows the certificate and what every node serves"
t_status
assert_json "$T_STATUS" 'd["certificate"]["sha256"]' "$NEW_SHA"
assert_nodes "$T_STATUS" serving_sha256 "$NEW_SHA" $NODES
assert_nodes "$T_STATUS" serving_current true $NODES
assert_nodes "$T_STATUS" quarantined false $NODES
cf_run 0 -p "$PB" verify

t_step "second run (current certificate from the store): all unchanged"
for i in $(seq 1 $N); do t_snap "$i" before2; done
cf_run 0 --json -p "$PB" deploy
J=$T_OUT
assert_json "$J" 'd["summary"]["unchanged"]' $N
assert_json "$J" 'd["summary"]["deployed"]' 0
assert_nodes "$J" outcome unchanged $NODES
for i in $(seq 1 $N); do
	assert_unchanged "$i" before2 "n$i: no file touched by a no-op run"
done

t_step "same --cert again: still unchanged"
cf_run 0 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
assert_json "$T_OUT" 'd["summary"]["unchanged"]' $N

t_step "--force deploys to every node again"
cf_run 0 --json -p "$PB" deploy --force
J=$T_OUT
assert_json "$J" 'd["summary"]["deployed"]' $N
assert_nodes "$J" outcome deployed $NODES
for i in $(seq 1 $N); do assert_node_has "$i" "$NEW"; done

t_done
