#!/bin/bash
# One node with a broken local config must never block the fleet (the
# incident this project exists to end).  n1, first in the playbook and so
# the first canary, has a typo in its own nginx config:
#   1. its check fails; a second canary (n2) passes with the same
#      certificate and recipe, so n1's failure is its own: n1 quarantined
#      with its cause, every other node serves the new certificate, exit 2;
#   2. a newer certificate: n1 (quarantined) is not picked as canary again,
#      every other node gets it, exit 2;
#   3. the same run again: only n1 is tried (no canary: the others already
#      serve the certificate), exit 2; the others get one SSH login for the
#      audit of modes and owners (nothing drifted: no file rewritten or
#      even touched, no reload);
#   4. one node selected (--only n1): nothing can confirm, so its failed
#      canary stops the rollout, exit 1, as with a one-node fleet;
#   5. n1 fixed: the next run deploys it and releases it.
. "$(dirname "$0")/../lib/common.sh"
t_start

N=4
tb_up $N
tb_make_cert new 90 || t_fatal "tb_make_cert"
tb_make_cert newer 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
NEWER=$TB/certs/newer
OLD=$TB/certs/old
OLD_SHA=$(tb_cert_sha256 "$OLD/fullchain.pem")
PB=$TB/pb.json
tb_playbook "$PB"
tb_break_check 1

# logins N: accepted SSH logins on node N so far
logins() { grep -c 'Accepted publickey' "$(tb_dir "$1")/logs/sshd.log" 2>/dev/null; }
# workers N: nginx's master and worker pids (a reload replaces the workers)
workers() { local m; m=$(cat "$(tb_dir "$1")/logs/nginx.pid"); echo "$m: $(pgrep -P "$m" | sort | tr '\n' ' ')"; }

t_step "1. n1's own config is broken: it fails as canary, n2 confirms the certificate"
cf_run 2 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
assert_json "$J" 'd["stopped"]' false
assert_json "$J" 'd["canaries_failed"]' 1
assert_nodes "$J" canary true n1 n2
assert_nodes "$J" canary false n3 n4
assert_node "$J" n1 outcome failed
assert_node "$J" n1 reason check-failed
assert_node "$J" n1 quarantined true
assert_nodes "$J" outcome deployed n2 n3 n4
for i in 2 3 4; do assert_node_has "$i" "$NEW"; done
t_step "n1 keeps serving its previous certificate, its previous files back"
assert_node_has 1 "$OLD"
assert_file_match "$T_ERR" 'n1 .*FAILED \(canary\) check-failed' "n1's line says it was the canary"
assert_file_match "$T_ERR" 'failed canary n1: other nodes serve the same certificate' \
    "the summary says why the rollout went on"
t_status
assert_node "$T_STATUS" n1 quarantined true
assert_node "$T_STATUS" n1 reason check-failed
assert_match "$(node_get "$T_STATUS" n1 detail)" "certfleet_test_broken_directive" \
    "n1's quarantine names nginx's own complaint"

t_step "2. a newer certificate: n1 is not the canary again"
cf_run 2 --json -p "$PB" deploy --cert "$NEWER/fullchain.pem" --key "$NEWER/privkey.pem"
J=$T_OUT
assert_node "$J" n2 canary true
assert_nodes "$J" canary false n1 n3 n4
assert_json "$J" 'd["canaries_failed"]' 0
assert_nodes "$J" outcome deployed n2 n3 n4
assert_node "$J" n1 outcome failed
assert_node "$J" n1 reason check-failed
for i in 2 3 4; do assert_node_has "$i" "$NEWER"; done
assert_served 1 "$OLD_SHA" "n1 still serves the old certificate"

t_step "3. the same run again: only n1 is tried, exit 2"
for i in 2 3 4; do
	eval "before$i=$(logins $i)"
	eval "workers$i='$(workers $i)'"
	t_snap "$i" run3
done
cf_run 2 --json -p "$PB" deploy
J=$T_OUT
assert_nodes "$J" outcome unchanged n2 n3 n4
assert_node "$J" n1 outcome failed
assert_node "$J" n1 canary false "n1 is not a canary: the others serve the certificate"
assert_json "$J" 'd["stopped"]' false
# already current: one login for the audit (mode/owner), nothing else
for i in 2 3 4; do
	eval "b=\$before$i"
	assert_eq "$(logins $i)" "$((b + 1))" "n$i: one SSH login (the audit)"
	assert_unchanged "$i" run3 "n$i: no file rewritten (names, modes, sizes, mtimes, ctimes, bytes)"
	eval "w=\$workers$i"
	assert_eq "$(workers $i)" "$w" "n$i: not reloaded (same nginx master and workers)"
	assert_node "$J" "n$i" touched false
done
assert_served 1 "$OLD_SHA" "n1 still serves the old certificate"

t_step "4. only n1 selected: nothing can confirm its failure, exit 1"
cf_run 1 --json -p "$PB" deploy --only n1
J=$T_OUT
assert_json "$J" 'd["stopped"]' true
assert_match "$(json_get "$J" 'd["stop_reason"]')" "canary n1 failed \(check-failed\), and no other node could confirm it" \
    "the stop reason says no node could confirm"
assert_served 1 "$OLD_SHA" "n1 still serves the old certificate"

t_step "5. n1 fixed: deployed and released"
tb_fix_check 1
cf_run 0 --json -p "$PB" deploy
assert_node "$T_OUT" n1 outcome deployed
assert_node_has 1 "$NEWER"
t_status
assert_node "$T_STATUS" n1 quarantined false

t_done
