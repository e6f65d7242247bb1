#!/bin/bash
# --only / --exclude deploy to just the named nodes and leave the others
# alone; --dry-run changes nothing on any node and nothing in the store.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 4
tb_make_cert new 90 || t_fatal "tb_make_cert"
tb_make_cert new2 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
NEW2=$TB/certs/new2
OLD=$TB/certs/old
OLD_SHA=$(tb_cert_sha256 "$OLD/fullchain.pem")
NEW_SHA=$(tb_cert_sha256 "$NEW/fullchain.pem")
PB=$TB/pb.json
tb_playbook "$PB"

t_step "--only n1,n3: just those two"
t_snap 2 only
t_snap 4 only
cf_run 0 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem" --only n1,n3
J=$T_OUT
assert_json "$J" 'd["summary"]["deployed"]' 2
assert_nodes "$J" outcome deployed n1 n3
assert_nodes "$J" outcome skipped n2 n4
assert_node_has 1 "$NEW"
assert_node_has 3 "$NEW"
for i in 2 4; do
	assert_served "$i" "$OLD_SHA" "n$i (not selected) still serves the old certificate"
	assert_unchanged "$i" only "n$i (not selected): nothing written"
done
t_status
assert_nodes "$T_STATUS" serving_current true n1 n3
assert_nodes "$T_STATUS" quarantined false n1 n2 n3 n4

t_step "--exclude n2: n4 deployed, n1 and n3 unchanged, n2 left alone"
cf_run 0 --json -p "$PB" deploy --exclude n2
J=$T_OUT
assert_node "$J" n4 outcome deployed
assert_nodes "$J" outcome unchanged n1 n3
assert_node "$J" n2 outcome skipped
assert_node_has 4 "$NEW"
assert_served 2 "$OLD_SHA" "n2 (excluded) still serves the old certificate"
assert_unchanged 2 only "n2 (excluded): nothing written"

t_step "--dry-run with a new certificate: nothing changes anywhere"
for i in 1 2 3 4; do t_snap "$i" dry; done
t_state_snap dry
cf_run 0 --json -p "$PB" deploy --cert "$NEW2/fullchain.pem" --key "$NEW2/privkey.pem" --dry-run
J=$T_OUT
assert_nodes "$J" outcome dry-run n1 n2 n3 n4
assert_json "$J" 'd["summary"]["deployed"]' 0
for i in 1 2 3 4; do assert_unchanged "$i" dry "n$i: dry run wrote nothing"; done
assert_served 1 "$NEW_SHA" "n1 still serves new (not new2)"
assert_served 2 "$OLD_SHA" "n2 still serves old"
assert_state_unchanged dry "dry run: state directory unchanged (node state, versions)"
t_status
assert_json "$T_STATUS" 'd["certificate"]["sha256"]' "$NEW_SHA" "current certificate is still new, not new2"

t_step "--dry-run --force --only n1: only n1 reported, nothing changes"
cf_run 0 --json -p "$PB" deploy --dry-run --force --only n1
J=$T_OUT
assert_node "$J" n1 outcome dry-run
assert_nodes "$J" outcome skipped n2 n3 n4
assert_unchanged 1 dry "n1: dry run --force wrote nothing"
assert_state_unchanged dry "dry run --force: state directory unchanged"

t_done
