#!/bin/bash
# renew against a real Pebble when things go wrong:
#  (a) one of 3 nodes blackholed (http-01): the certificate is still
#      issued and reaches the healthy nodes; the dead node is quarantined
#      as `timeout`; exit 2; the dead node costs connect timeouts, not more.
#  (b) Pebble rejects half the nonces: renew --force still succeeds.
#  (c) Pebble down: exit 1 naming the CA, nodes serving the current
#      certificate untouched, the failure counted (1, then 2), and a node
#      that lacks the current stored certificate still gets it.
#  (d) an invalid challenge (dns-01 hook publishing a wrong value): exit 1,
#      the error names the domain and the ACME problem type, nodes untouched.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
t_start
acme_start

T0=$(date +%s.%N)
CT=3
tb_up 3
acme_up || t_fatal "pebble did not start"
add_names() {
	pebble_add_a a.node.test "$(tb_ip 1)" &&
	    pebble_add_a b.node.test "$(tb_ip 2)"
}
add_names || t_fatal "pebble_add_a"
PB=$TB/pb.json
acme_playbook "$PB" http-01 a.node.test b.node.test -- \
    verify.server_name=a.node.test connect_timeout=$CT
TB_SNI=a.node.test
R=$TB/state/web/renewal.json
OLD_SHA=$(tb_cert_sha256 "$TB/certs/old/fullchain.pem")

# ---------------------------------------------------------------------------
t_step "(a) n3 blackholed: certificate issued, n1+n2 get it, n3 quarantined, exit 2"
tb_blackhole 3 || t_fatal "tb_blackhole"
t_snap 3 before
cf_run 2 --json -p "$PB" renew
J=$T_OUT
assert_json "$J" 'd["exit_code"]' 2
assert_le "$T_SECS" $((CT + 5)) "whole run within connect_timeout + 5 s"
t_log "issuance: $(grep -o 'stored version.* in [0-9.]*s$' "$T_ERR" | grep -o 'in [0-9.]*s$') (whole renew run ${T_SECS}s)"
assert_file_match "$T_ERR" 'stored version' "certificate stored despite the dead node"
V1=$(acme_current_version)
[ -n "$V1" ] || t_fatal "no current version in the store after (a)"
C1=$TB/state/web/versions/$V1
SHA1=$(tb_cert_sha256 "$C1/fullchain.pem")
for i in 1 2; do
	assert_node "$J" "n$i" outcome deployed
	assert_served "$i" "$SHA1" "n$i serves the new certificate"
	assert_bytes "$i" /srv/tls/privkey.pem "$C1/privkey.pem"
	assert_mode "$i" /srv/tls/privkey.pem 0600
	assert_eq "$(acme_challenge_files "$i")" "" "n$i: no challenge file left"
done
assert_node "$J" n3 outcome failed
assert_node "$J" n3 reason timeout
assert_node "$J" n3 quarantined true
assert_unchanged 3 before "n3 (blackholed): nothing under /srv changed"
assert_served_local 3 "$OLD_SHA" "n3 still serves the old certificate (asked from inside)"
t_status
assert_node "$T_STATUS" n3 quarantined true
assert_node "$T_STATUS" n3 reason timeout
assert_node "$T_STATUS" n3 attempts 1 "n3: one failed attempt recorded for one run"
assert_json "$R" 'd.get("consecutive_failures", 0)' 0 "renewal.json: no failure counted (the CA part succeeded)"
tb_unblackhole 3

# ---------------------------------------------------------------------------
t_step "(b) PEBBLE_WFE_NONCEREJECT=50: renew --force still succeeds (n1,n2 only)"
acme_restart PEBBLE_WFE_NONCEREJECT=50 || t_fatal "pebble did not restart"
add_names || t_fatal "pebble_add_a"
cf_run 0 --json -p "$PB" renew --force --only n1,n2
t_log "issuance: $(grep -o 'stored version.* in [0-9.]*s$' "$T_ERR" | grep -o 'in [0-9.]*s$') (whole renew run ${T_SECS}s)"
# Pebble does not log the rejections themselves; its banner says they are on
# (~18 POSTs per issuance at 50%: about 9 rejected nonces per run).
assert_file_match "$PEBBLE_DIR/pebble.log" 'reject 50% of good nonces' \
    "Pebble runs with 50% of nonces rejected"
V2=$(acme_current_version)
assert_ne "$V2" "$V1" "a new version stored"
C2=$TB/state/web/versions/$V2
SHA2=$(tb_cert_sha256 "$C2/fullchain.pem")
if acme_chain_verifies "$C2/fullchain.pem" "$T_TMP/pebble-root.pem"; then
	t_ok "new certificate verifies against the restarted Pebble's root"
else
	t_notok "new certificate verifies against the restarted Pebble's root"
fi
for i in 1 2; do assert_served "$i" "$SHA2" "n$i serves the new certificate"; done
assert_served 3 "$OLD_SHA" "n3 (not selected) still serves the old certificate"

# ---------------------------------------------------------------------------
t_step "(c) Pebble down: exit 1 naming the CA, failure counted, n3 converges"
CAHOST=127.0.0.1:$PEBBLE_PORT
pebble_down
for i in 1 2; do t_snap "$i" c; done
cf_run 1 --json -p "$PB" renew --force
assert_file_match "$T_ERR" "renew FAILED.*$CAHOST" "error names the CA ($CAHOST)"
assert_json "$T_OUT" 'd["exit_code"]' 1
assert_json "$R" 'd["consecutive_failures"]' 1 "renewal.json: consecutive_failures 1"
assert_ne "$(json_get "$R" 'd.get("last_error")')" null "renewal.json: last_error recorded"
assert_eq "$(acme_current_version)" "$V2" "store: current version unchanged"
for i in 1 2; do
	assert_unchanged "$i" c "n$i (already current): nothing under /srv changed"
	assert_served "$i" "$SHA2" "n$i still serves the current certificate"
done
assert_node "$T_OUT" n3 outcome deployed
acme_assert_node 3 "$C2"
t_status
assert_node "$T_STATUS" n3 quarantined false "n3 released from quarantine"
assert_node "$T_STATUS" n3 serving_current true

t_snap 3 c
cf_run 1 -p "$PB" renew --force
assert_file_match "$T_ERR" "$CAHOST" "error names the CA again"
assert_json "$R" 'd["consecutive_failures"]' 2 "renewal.json: consecutive_failures 2"
for i in 1 2 3; do assert_unchanged "$i" c "n$i: nothing under /srv changed"; done

# ---------------------------------------------------------------------------
t_step "(d) invalid challenge: dns-01 hook publishes a wrong value"
acme_up || t_fatal "pebble did not come back"
# A wrapper around the real hook that publishes a wrong (well-formed) value.
WRONG=$T_TMP/dns-wrong-hook
cat >"$WRONG" <<EOF
#!/bin/sh
if [ "\$1" = add ]; then
	exec "$T_ROOT/hooks/dns-pebble-challtestsrv" add "\$2" wrongvalue0123456789abcdefghijklmnopqrstuv
fi
exec "$T_ROOT/hooks/dns-pebble-challtestsrv" "\$@"
EOF
chmod 755 "$WRONG"
PBD=$TB/pb-dns.json
acme_playbook "$PBD" dns-01 a.node.test b.node.test -- \
    acme.dns_hook="$WRONG" verify.server_name=a.node.test connect_timeout=$CT
for i in 1 2 3; do t_snap "$i" d; done
cf_run 1 -p "$PBD" renew --force
assert_file_match "$T_ERR" 'renew FAILED.*[ab]\.node\.test' "error names the domain"
assert_file_match "$T_ERR" 'renew FAILED.*urn:ietf:params:acme:error:[A-Za-z]+' \
    "error names the ACME problem type"
grep 'renew FAILED' "$T_ERR" | head -1 | sed 's/^/    error: /'
assert_json "$R" 'd["consecutive_failures"]' 3 "renewal.json: consecutive_failures 3"
assert_eq "$(acme_current_version)" "$V2" "store: current version unchanged"
for i in 1 2 3; do
	assert_unchanged "$i" d "n$i: nothing under /srv changed"
	assert_served "$i" "$SHA2" "n$i still serves the current certificate"
done

t_log "test wall time $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
t_done
