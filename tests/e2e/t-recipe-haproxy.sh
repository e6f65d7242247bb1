#!/bin/bash
# playbooks/haproxy.json, as shipped (one combined PEM, haproxy -c, reload
# by SIGUSR2 to the master), on real haproxy 2.6 in master-worker mode on
# two nodes (tests/lib/services.sh): deploy writes the combined file 0600
# root:root, the master keeps its pid and gets a new worker, and haproxy
# serves the new certificate with its chain.  Then node 2's config is
# broken by hand: the recipe's check fails there, its file is restored,
# nothing is reloaded and it is quarantined; node 1 takes the next one.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/services.sh"
t_start

RECIPE=$T_ROOT/playbooks/haproxy.json
# shellcheck disable=SC2034 # read by tb_up and tb_make_cert
TB_DOMAINS=$(svc_recipe_get "$RECIPE" 'd["certificate"]["domains"]')
TB_SNI=$(svc_recipe_get "$RECIPE" 'd["verify"]["server_name"]')
tb_up 2
svc_haproxy_start 1 || t_fatal "haproxy did not start on n1"
svc_haproxy_start 2 || t_fatal "haproxy did not start on n2"
tb_make_cert new 90 || t_fatal "tb_make_cert"
tb_make_cert newer 90 || t_fatal "tb_make_cert"
PB=$TB/pb.json
svc_recipe_playbook "$RECIPE" "$PB" || t_fatal "cannot adapt $RECIPE"
F=/etc/haproxy/certs/example.com.pem

# node I's combined file holds certificate directory C (full chain, key)
assert_haproxy_file() {
	local i=$1 c=$2
	cat "$c/fullchain.pem" "$c/privkey.pem" >"$T_TMP/combined.pem"
	assert_bytes "$i" "$F" "$T_TMP/combined.pem"
	assert_mode "$i" "$F" 0600
	assert_eq "$(tb_file_owner "$i" "$F")" root:root "n$i: $F is root:root"
}
# the workers of node I's master, one line
workers() { svc_haproxy_workers "$1" | sort | tr '\n' ' '; }
# node I has exactly one worker and it is not OLD (the reload replaced it;
# the old one may linger while it drains, hence the wait)
new_worker_only() { local w; w=$(workers "$1"); [ -n "$w" ] && [ "$w" != "$2" ] &&
    [ "$(printf '%s' "$w" | wc -w)" -eq 1 ]; }

M1=$(svc_haproxy_pid 1)
M2=$(svc_haproxy_pid 2)
W1=$(workers 1)
W2=$(workers 2)
[ -n "$M1" ] && [ -n "$M2" ] && [ -n "$W1" ] && [ -n "$W2" ] ||
    t_fatal "no haproxy master/worker pids"

t_step "deploy with the shipped recipe"
cf_run 0 --json -p "$PB" deploy --cert "$TB/certs/new/fullchain.pem" \
    --key "$TB/certs/new/privkey.pem"
assert_nodes "$T_OUT" outcome deployed n1 n2
for i in 1 2; do
	assert_served "$i" "$(tb_cert_sha256 "$TB/certs/new/cert.pem")" "n$i: haproxy serves new"
	assert_haproxy_file "$i" "$TB/certs/new"
done
assert_eq "$(svc_haproxy_pid 1)" "$M1" "n1: same haproxy master (reloaded, not restarted)"
assert_eq "$(svc_haproxy_pid 2)" "$M2" "n2: same haproxy master (reloaded, not restarted)"
for i in 1 2; do
	eval "w=\$W$i"
	if t_wait_for 10 new_worker_only "$i" "$w"; then
		t_ok "n$i: the master runs a new worker"
	else
		t_notok "n$i: the master runs a new worker" \
		    "workers before '$w', now '$(workers "$i")'"
	fi
done
chain=$(timeout 5 openssl s_client -connect "$(tb_ip 1):443" -servername "$TB_SNI" \
    -showcerts </dev/null 2>/dev/null | grep -c 'BEGIN CERTIFICATE')
assert_eq "$chain" 2 "n1 sends leaf + intermediate"

t_step "n2's haproxy.cfg broken by hand: haproxy -c fails there only"
W2=$(workers 2)
svc_break 2 haproxy
# exit 2 (partial), not 1: the recipe's rollout.max_failures is 1, and the
# one failure spends it, but no node was left to start, so nothing stopped
cf_run 2 --json -p "$PB" deploy --cert "$TB/certs/newer/fullchain.pem" \
    --key "$TB/certs/newer/privkey.pem"
J=$T_OUT
assert_node "$J" n1 outcome deployed
assert_node "$J" n2 outcome failed
assert_node "$J" n2 reason check-failed
assert_node "$J" n2 quarantined true
assert_json "$J" 'd["stopped"]' false "a spent budget with no node left is no stop"
assert_match "$(node_get "$J" n2 error)" "certfleet-test-broken-keyword" \
    "n2's error quotes haproxy's complaint"
assert_served 1 "$(tb_cert_sha256 "$TB/certs/newer/cert.pem")" "n1: haproxy serves newer"
assert_haproxy_file 1 "$TB/certs/newer"
assert_served 2 "$(tb_cert_sha256 "$TB/certs/new/cert.pem")" "n2: haproxy still serves new"
assert_haproxy_file 2 "$TB/certs/new"
assert_eq "$(svc_haproxy_pid 2)" "$M2" "n2: haproxy master still running"
assert_eq "$(workers 2)" "$W2" "n2: not reloaded (same worker)"
t_status
assert_node "$T_STATUS" n2 quarantined true

t_step "n1's bind switched by hand to a leaf-only PEM: verify and check catch it"
{ openssl x509 -in "$TB/certs/newer/cert.pem"; cat "$TB/certs/newer/privkey.pem"; } \
    >"$(tb_dir 1)/haproxy/certs/leafonly.pem"
sed -i 's|crt /etc/haproxy/certs/example.com.pem|crt /etc/haproxy/certs/leafonly.pem|' \
    "$(tb_dir 1)/haproxy/haproxy.cfg"
W1=$(workers 1)
tb_exec 1 sh -c 'kill -USR2 "$(cat '"$SVC_HAPROXY_PIDFILE"')"' || t_fatal "n1 reload"
t_wait_for 10 new_worker_only 1 "$W1" || t_notok "n1: no new worker"
cf_run 2 --json -p "$PB" verify --only n1
assert_node "$T_OUT" n1 reason verify-chain
assert_node "$T_OUT" n1 error "n1:443 (SNI $TB_SNI) sends the leaf without intermediate 'certfleet test intermediate CA'"
cf_run 2 -p "$PB" check
assert_file_match "$T_OUT" "^CERTFLEET CRITICAL .*misconfigured \\(n1:443 \\(SNI $TB_SNI\\) sends the leaf without intermediate" \
    "check: CRITICAL naming n1:443"

t_done
