#!/bin/bash
# A bad recipe (the playbook writes the chain where the full chain belongs,
# so `nginx -t` fails everywhere) is caught by the canary: exit 1, only the
# canary was touched and it got its old files back, every other node is
# untouched.
. "$(dirname "$0")/../lib/common.sh"
t_start

N=5
tb_up $N
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
OLD=$TB/certs/old
OLD_SHA=$(tb_cert_sha256 "$OLD/fullchain.pem")
PB=$TB/pb.json
tb_playbook "$PB" canary=1 'deploy.files=[
  {"path": "/srv/tls/fullchain.pem", "content": "chain", "mode": "0644"},
  {"path": "/srv/tls/privkey.pem", "content": "privkey", "mode": "0600"}]'

for i in $(seq 1 $N); do t_snap "$i" before; done
cf_run 1 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
assert_json "$J" 'sum(1 for n in d["nodes"] if n["canary"])' 1 "exactly one canary"
CAN=$(json_get "$J" '[n["name"] for n in d["nodes"] if n["canary"]][0]')
CAN=${CAN#n}
t_log "canary: n$CAN"
assert_node "$J" "n$CAN" outcome failed
assert_node "$J" "n$CAN" reason check-failed
assert_json "$J" 'd["summary"]["deployed"]' 0
assert_json "$J" 'd["summary"]["stopped"]' $((N - 1))

t_step "the canary has its old files back and serves the old certificate"
case $CAN in [1-9]*) assert_node_has "$CAN" "$OLD" ;; *) t_notok "no canary node reported" ;; esac

t_step "every other node: stopped, untouched"
for i in $(seq 1 $N); do
	[ "$i" = "$CAN" ] && continue
	assert_node "$J" "n$i" outcome stopped
	assert_unchanged "$i" before "n$i: nothing written"
	assert_served "$i" "$OLD_SHA" "n$i still serves the old certificate"
done
t_status
for i in $(seq 1 $N); do
	[ "$i" = "$CAN" ] && continue
	assert_node "$T_STATUS" "n$i" quarantined false
done

t_done
