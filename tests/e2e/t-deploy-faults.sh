#!/bin/bash
# deploy to a fleet where one node of each kind is broken: the healthy
# nodes get the certificate, every broken node keeps its old files and keeps
# serving the old certificate, is quarantined with the right reason, and the
# whole run costs no more than one connect timeout (nodes never wait for
# each other).  Exit 2 (partial).
. "$(dirname "$0")/../lib/common.sh"
t_start

CT=3                              # ssh.connect_timeout
tb_up $FLEET_N
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
OLD=$TB/certs/old
NEW_SHA=$(tb_cert_sha256 "$NEW/fullchain.pem")
OLD_SHA=$(tb_cert_sha256 "$OLD/fullchain.pem")
PB=$TB/pb.json
# canary 0: this test measures the fault handling alone (t-deploy-converge
# runs the same fleet with a canary).
tb_playbook "$PB" connect_timeout=$CT canary=0

t_step "break n3..n9"
fleet_break || t_fatal "could not set up the faults"
for i in $FLEET_BAD; do t_snap "$i" before; done

t_step "deploy: exit 2, done within connect_timeout + 3 s"
cf_run 2 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
assert_le "$T_SECS" $((CT + 3)) "whole run within connect_timeout + 3 s"
assert_json "$J" 'd["exit_code"]' 2
assert_json "$J" 'd["summary"]["deployed"]' 3
assert_json "$J" 'd["summary"]["failed"]' 7

t_step "healthy nodes serve the new certificate"
for i in $FLEET_GOOD; do
	assert_node "$J" "n$i" outcome deployed
	assert_node_has "$i" "$NEW"
done

t_step "each broken node: failed with its reason, old files intact"
for i in $FLEET_BAD; do
	assert_node "$J" "n$i" outcome failed
	assert_node "$J" "n$i" reason "${FLEET_REASON[$i]}"
	assert_node "$J" "n$i" quarantined true
	assert_ne "$(node_get "$J" "n$i" error)" null "n$i: error message given"
	assert_node_files "$i" "$OLD"
	if [ "$i" = 3 ]; then
		assert_served_local "$i" "$OLD_SHA"
	else
		assert_served "$i" "$OLD_SHA" "n$i still serves the old certificate"
	fi
done

t_step "unverified host keys: no login, nothing written at all"
for i in 6 7; do
	assert_no_login "$i"
	assert_unchanged "$i" before "n$i: nothing under /srv was written"
done
# Nodes certfleet could not reach are untouched too.
for i in 3 4 5; do assert_unchanged "$i" before "n$i (unreachable): nothing written"; done

t_step "the store: broken nodes quarantined with their reasons"
t_status
assert_json "$T_STATUS" 'd["certificate"]["sha256"]' "$NEW_SHA"
for i in $FLEET_GOOD; do
	assert_node "$T_STATUS" "n$i" quarantined false
	assert_node "$T_STATUS" "n$i" serving_current true
done
for i in $FLEET_BAD; do
	assert_node "$T_STATUS" "n$i" quarantined true
	assert_node "$T_STATUS" "n$i" reason "${FLEET_REASON[$i]}"
	assert_node "$T_STATUS" "n$i" serving_current false
	assert_node "$T_STATUS" "n$i" attempts 1
done
cf_run 0 -p "$PB" quarantine list
for i in $FLEET_BAD; do
	assert_file_match "$T_OUT" "n$i\b" "quarantine list shows n$i"
done

t_step "verify (read-only) agrees: exit 2"
cf_run 2 -p "$PB" verify

t_done
