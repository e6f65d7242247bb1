#!/bin/bash
# check: the Nagios plugin.  One line on stdout, nothing on stderr, exit
# 0 OK / 1 WARNING / 2 CRITICAL / 3 UNKNOWN from a live TLS probe of every
# node plus the store's quarantines and renewal state.  Read-only: works
# while another run holds the lock and changes nothing in the store.
. "$(dirname "$0")/../lib/common.sh"
t_start

"$CERTFLEET" -p /nonexistent check >/dev/null 2>"$T_TMP/probe.err"
grep -q "unknown command 'check'" "$T_TMP/probe.err" &&
    t_skip "this binary has no check command yet (main.c dispatch)"

N=3
tb_up $N
tb_make_cert new 90 || t_fatal "tb_make_cert new"
tb_make_cert new2 90 || t_fatal "tb_make_cert new2"
tb_make_cert expired -3 || t_fatal "tb_make_cert expired"
PB=$TB/pb.json
# acme: a CA that refuses connections, so `renew --force` fails for real
tb_playbook "$PB" acme.directory=https://127.0.0.1:1/directory
NEW=$TB/certs/new
NEW2=$TB/certs/new2
# the lines are checked as a whole: ONE line, "CERTFLEET STATE - ..."
check_line() {
	assert_eq "$(wc -l <"$T_OUT")" 1 "check printed one line"
	assert_eq "$(wc -c <"$T_ERR")" 0 "check printed nothing on stderr"
	t_log "    > $(cat "$T_OUT")"
}

t_step "no certificate in the store yet: UNKNOWN (3)"
cf_run 3 -p "$PB" check
check_line
assert_file_match "$T_OUT" '^CERTFLEET UNKNOWN - ' "UNKNOWN line"
assert_eq "$(ls "$TB/state" 2>/dev/null | wc -l)" 0 "check created nothing in the state dir"

t_step "converged fleet: OK (0), defaults warn/crit = lifetime/4, /6"
cf_run 0 -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
t_state_snap before
cf_run 0 -p "$PB" check
check_line
assert_file_match "$T_OUT" '^CERTFLEET OK - web: soonest expiry (89\.[0-9]|90\.0) days \(n[123]\), 3/3 nodes serve current, 0 quarantined, renewal ok \| ' \
    "OK line: expiry, nodes, quarantines, renewal"
assert_file_match "$T_OUT" '\| soonest_days=(89\.[0-9]|90\.0);22\.5:;15\.0: nodes=3 serving_current=3 quarantined=0 pinned=0 unreachable=0 renewal_failures=0$' \
    "perfdata with Nagios ranges (alert below 22.5 / 15 days)"
assert_state_unchanged before "check wrote nothing to the store"

t_step "check works while another run holds the lock (no lock taken)"
# the subshell becomes the sleep, holding the lock on fd 9: killing it
# releases the lock
(exec 9<"$TB/state/lock" && flock 9 && exec sleep 30) &
HOLDER=$!
t_wait_locked "$TB/state/lock"
cf_run 0 -p "$PB" check
cf_run 75 -p "$PB" deploy
kill "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null

t_step "--warn/--crit above the days left: CRITICAL (2); only --warn: WARNING (1)"
cf_run 2 -p "$PB" check --warn 100 --crit 95
check_line
assert_file_match "$T_OUT" '^CERTFLEET CRITICAL - web: soonest expiry' "CRITICAL line"
assert_file_match "$T_OUT" 'soonest_days=[0-9.]+;100\.0:;95\.0: ' "thresholds in perfdata"
cf_run 1 -p "$PB" check --warn 100
assert_file_match "$T_OUT" '^CERTFLEET WARNING - ' "WARNING line"

t_step "one node blackholed and quarantined: WARNING (1), named, bounded by --timeout"
tb_blackhole 3
cf_run 2 -p "$PB" deploy --cert "$NEW2/fullchain.pem" --key "$NEW2/privkey.pem"
cf_run 1 -p "$PB" check --timeout 1
check_line
assert_file_match "$T_OUT" '^CERTFLEET WARNING - web: soonest expiry [0-9.]+ days \(n[12]\), 2/3 nodes serve current \(n3: timeout\), 1 quarantined \(n3: timeout\), renewal ok \| ' \
    "WARNING line names n3 and why"
assert_file_match "$T_OUT" ' quarantined=1 pinned=0 unreachable=1 ' "perfdata counts it"
# the playbook's connect_timeout is 5 s: finishing well under it proves
# --timeout bounds the probe (1 s, plus process start-up on a busy machine)
assert_le "$T_SECS" 4.5 "--timeout 1 bounds the probe of a blackholed node"

t_step "node released: OK again"
tb_unblackhole 3
cf_run 0 -p "$PB" deploy
cf_run 0 -p "$PB" check
assert_file_match "$T_OUT" '3/3 nodes serve current, 0 quarantined' "all current"

t_step "a pinned node (quarantine add) is listed but does not raise the state"
cf_run 0 -p "$PB" quarantine add n2 --reason "disk replacement"
cf_run 0 -p "$PB" check
check_line
assert_file_match "$T_OUT" '^CERTFLEET OK - .*, 0 quarantined, 1 pinned \(n2\), renewal ok' "pinned n2 listed"
cf_run 0 -p "$PB" quarantine release n2

t_step "a node serving an expired certificate: CRITICAL (2)"
D1=$(tb_dir 1)
cp "$D1/tls/fullchain.pem" "$T_TMP/n1.fullchain" && cp "$D1/tls/privkey.pem" "$T_TMP/n1.privkey"
cp "$TB/certs/expired/fullchain.pem" "$D1/tls/fullchain.pem"
cp "$TB/certs/expired/privkey.pem" "$D1/tls/privkey.pem"
tb_exec 1 nginx -s reload -c /srv/nginx.conf
t_wait_serves 1 "$(tb_cert_sha256 "$TB/certs/expired/fullchain.pem")" 10 "n1 serves the expired certificate (after its reload)"
cf_run 2 -p "$PB" check
check_line
assert_file_match "$T_OUT" '^CERTFLEET CRITICAL - web: EXPIRED [23]\.[0-9] days ago \(n1\), 2/3 nodes serve current \(n1: serves another certificate\)' \
    "CRITICAL names the node serving an expired certificate"
cp "$T_TMP/n1.fullchain" "$D1/tls/fullchain.pem" && cp "$T_TMP/n1.privkey" "$D1/tls/privkey.pem"
tb_exec 1 nginx -s reload -c /srv/nginx.conf
t_wait_serves 1 "$(tb_cert_sha256 "$T_TMP/n1.fullchain")" 10 "n1 serves its certificate again (after its reload)"
cf_run 0 -p "$PB" check

t_step "renewal failing: WARNING after 1 failure, CRITICAL after 3 in a row"
cf_run 1 -p "$PB" renew --force
cf_run 1 -p "$PB" check
assert_file_match "$T_OUT" ', renewal FAILED 1 time in a row \| .* renewal_failures=1$' "1 failure: WARNING"
cf_run 1 -p "$PB" renew --force
cf_run 1 -p "$PB" renew --force
cf_run 2 -p "$PB" check
assert_file_match "$T_OUT" '^CERTFLEET CRITICAL - .*renewal FAILED 3 times in a row' "3 failures: CRITICAL"

t_step "UNKNOWN (3): bad playbook, missing store, bad arguments"
printf '{"certificate": ' >"$T_TMP/bad.json"
cf_run 3 -p "$T_TMP/bad.json" check
check_line
assert_file_match "$T_OUT" '^CERTFLEET UNKNOWN - .*bad\.json' "names the playbook"
assert_exit 3 "$CERTFLEET" --state-dir "$T_TMP/nostate" -p "$PB" check
assert_file_match "$T_OUT" '^CERTFLEET UNKNOWN - web: no state in .*nostate/web \(never deployed' "missing store"
[ -e "$T_TMP/nostate" ] && t_notok "check created a missing state dir" || t_ok "check created no state dir"
cf_run 3 -p "$PB" check --warn soon
assert_file_match "$T_OUT" '^CERTFLEET UNKNOWN - usage: --warn takes days' "bad --warn"
cf_run 3 -p "$PB" check --bogus
assert_file_match "$T_OUT" '^CERTFLEET UNKNOWN - usage: ' "unknown option"
cf_run 3 -p "$PB" check extra
t_done
