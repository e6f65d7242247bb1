#!/bin/bash
# A node that says it reloaded but keeps serving the old certificate (its
# reload is a no-op) fails verification: its files are rolled back to the
# old bytes, it keeps serving the old certificate, it is quarantined as
# verify-failed; the other nodes are deployed.  Fixed, it converges.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 3
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
OLD=$TB/certs/old
OLD_SHA=$(tb_cert_sha256 "$OLD/fullchain.pem")
PB=$TB/pb.json
# every node reloads through /srv/reload.sh; canary 0 so that the broken
# node cannot be the canary (a canary verify failure stops the rollout:
# t-deploy-canary covers that).
tb_playbook "$PB" deploy.reload=/srv/reload.sh verify_timeout=3 canary=0

t_step "n2's reload does nothing"
tb_ignore_reload 2

cf_run 2 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
assert_nodes "$J" outcome deployed n1 n3
assert_node "$J" n2 outcome failed
assert_node "$J" n2 reason verify-failed
assert_node "$J" n2 rolled_back true
assert_node "$J" n2 quarantined true
assert_node_has 1 "$NEW"
assert_node_has 3 "$NEW"
t_step "n2: old bytes back, old certificate served"
assert_node_has 2 "$OLD"
t_status
assert_node "$T_STATUS" n2 quarantined true
assert_node "$T_STATUS" n2 reason verify-failed
assert_node "$T_STATUS" n2 serving_sha256 "$OLD_SHA"

t_step "fix n2's reload: the next run deploys it"
tb_fix_reload 2
cf_run 0 --json -p "$PB" deploy
assert_node "$T_OUT" n2 outcome deployed
assert_node_has 2 "$NEW"
t_status
assert_node "$T_STATUS" n2 quarantined false

t_done
