#!/bin/bash
# A bad recipe or a bad certificate fails on every node; the canary gate
# must see it on two distinct canaries (rollout.canary_failures, default 2)
# and stop: exit 1, both canaries have their old files back and serve the
# old certificate, every other node is untouched and not quarantined.
#   1. bad recipe: the playbook writes the chain where the full chain
#      belongs, so `nginx -t` fails everywhere (check-failed);
#   2. bad certificate as far as clients can tell: every node's reload is a
#      no-op, so verification fails everywhere (verify-failed);
#   3. canary_failures 1: the first failed canary stops the rollout.
. "$(dirname "$0")/../lib/common.sh"
t_start

N=5
tb_up $N
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
OLD=$TB/certs/old
OLD_SHA=$(tb_cert_sha256 "$OLD/fullchain.pem")
PB=$TB/pb.json

# check_stopped JSON REASON CANARIES...: the canaries failed with REASON
# and serve the old certificate; every other node was not touched.
check_stopped() {
	local j=$1 reason=$2 i c
	shift 2
	assert_json "$j" 'sum(1 for n in d["nodes"] if n["canary"])' $# "exactly $# canaries"
	assert_json "$j" 'd["stopped"]' true
	assert_json "$j" 'd["canaries_failed"]' $#
	assert_json "$j" 'd["summary"]["deployed"]' 0
	assert_json "$j" 'd["summary"]["failed"]' $#
	assert_json "$j" 'd["summary"]["stopped"]' $((N - $#))
	for c in "$@"; do
		assert_node "$j" "n$c" canary true
		assert_node "$j" "n$c" outcome failed
		assert_node "$j" "n$c" reason "$reason"
		assert_node "$j" "n$c" rolled_back true
		assert_node_has "$c" "$OLD"
		assert_match "$(json_get "$j" 'd["stop_reason"]')" "n$c" \
		    "the stop reason names canary n$c"
	done
	for i in $(seq 1 $N); do
		case " $* " in *" $i "*) continue ;; esac
		assert_node "$j" "n$i" outcome stopped
		assert_unchanged "$i" before "n$i: nothing written"
		assert_served "$i" "$OLD_SHA" "n$i still serves the old certificate"
	done
	t_status
	for i in $(seq 1 $N); do
		case " $* " in *" $i "*) want=true ;; *) want=false ;; esac
		assert_node "$T_STATUS" "n$i" quarantined $want
	done
}

for i in $(seq 1 $N); do t_snap "$i" before; done

t_step "1. bad recipe: check fails on every node -> stops after 2 canaries"
tb_playbook "$PB" 'deploy.files=[
  {"path": "/srv/tls/fullchain.pem", "content": "chain", "mode": "0644"},
  {"path": "/srv/tls/privkey.pem", "content": "privkey", "mode": "0600"}]'
cf_run 1 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
check_stopped "$T_OUT" check-failed 1 2
assert_file_match "$T_ERR" 'canaries n1, n2 failed \(check-failed\): rollout stopped' \
    "the summary says two canaries failed the same way"
# lines in the order things happened: the canaries failed, then the rest
# was stopped
L_CAN=$(grep -n 'n2 .*FAILED (canary)' "$T_ERR" | cut -d: -f1)
L_STOP=$(grep -n 'not touched (rollout stopped)' "$T_ERR" | head -1 | cut -d: -f1)
assert_le "${L_CAN:-999}" "${L_STOP:-0}" "the second canary's failure is told before the nodes it stopped"

t_step "the next run (recipe still bad) picks fresh canaries, stops again"
cf_run 1 --json -p "$PB" deploy
J=$T_OUT
assert_nodes "$J" canary true n3 n4
assert_nodes "$J" outcome failed n3 n4
assert_nodes "$J" outcome stopped n1 n2 n5
assert_unchanged 5 before "n5: nothing written"

t_step "2. verify fails everywhere (reload does nothing) -> stops after 2 canaries"
rm -rf "$TB/state"
tb_playbook "$PB" deploy.reload=/srv/reload.sh verify_timeout=2
for i in $(seq 1 $N); do tb_ignore_reload "$i"; t_snap "$i" before; done
cf_run 1 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
check_stopped "$T_OUT" verify-failed 1 2

t_step "3. rollout.canary_failures 1: the first failed canary stops it"
rm -rf "$TB/state"
tb_playbook "$PB" deploy.reload=/srv/reload.sh verify_timeout=2 canary_failures=1
for i in $(seq 1 $N); do t_snap "$i" before; done
cf_run 1 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
check_stopped "$T_OUT" verify-failed 1

t_done
