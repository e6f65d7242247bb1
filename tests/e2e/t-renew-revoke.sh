#!/bin/bash
# revoke against a real Pebble: renew (http-01, 2 nodes), then `revoke
# --reason superseded` -> exit 0 and Pebble's management API reports the
# certificate revoked with reason 4.  --dry-run revokes nothing; a bad
# reason is a usage error; revoking twice is not an error (the CA's
# alreadyRevoked is what was asked for); the CA down is exit 1 naming it;
# revoking never touches a node.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
t_start
acme_start

T0=$(date +%s.%N)
tb_up 2
acme_up || t_fatal "pebble did not start"
pebble_add_a a.node.test "$(tb_ip 1)" || t_fatal "pebble_add_a"
pebble_add_a b.node.test "$(tb_ip 2)" || t_fatal "pebble_add_a"
PB=$TB/pb.json
acme_playbook "$PB" http-01 a.node.test b.node.test -- verify.server_name=a.node.test
TB_SNI=a.node.test

# Pebble's view of a certificate: "Valid", "Revoked" or "" (unknown).
# Its serial as Pebble keys it: lower-case hex without leading zeros.
pebble_status_of() {
	local serial
	serial=$(acme_serial "$1" | tr 'A-F' 'a-f' | sed 's/^0*//')
	pebble_cert_status "$serial" >"$T_TMP/cert-status.json" 2>/dev/null ||
	    { echo ""; return; }
	json_get "$T_TMP/cert-status.json" 'd.get("Status", "")'
}

t_step "renew"
cf_run 0 -p "$PB" renew
t_log "issuance: $(grep -o 'stored version.* in [0-9.]*s$' "$T_ERR" | grep -o 'in [0-9.]*s$') (whole renew run ${T_SECS}s)"
V=$(acme_current_version)
[ -n "$V" ] || t_fatal "no current version after renew"
CERT=$TB/state/web/versions/$V/cert.pem
SHA=$(tb_cert_sha256 "$CERT")
for i in 1 2; do assert_served "$i" "$SHA" "n$i serves the new certificate"; done

HAVE_STATUS=1
ST=$(pebble_status_of "$CERT")
if [ -z "$ST" ]; then
	HAVE_STATUS=0
	t_log "Pebble's /cert-status-by-serial/ is not available: revocation is checked through the CA's answer only"
else
	assert_eq "$ST" Valid "Pebble: certificate is valid before revoke"
fi

t_step "revoke --dry-run and a bad reason change nothing"
for i in 1 2; do t_snap "$i" before; done
t_state_snap before
cf_run 0 -p "$PB" revoke --reason superseded --dry-run
assert_file_match "$T_ERR" "would revoke $V" "dry run names the version"
[ $HAVE_STATUS = 1 ] && assert_eq "$(pebble_status_of "$CERT")" Valid \
    "Pebble: still valid after the dry run"
cf_run 64 -p "$PB" revoke --reason bogus
assert_file_match "$T_ERR" 'superseded' "usage error lists the reasons"

t_step "revoke --reason superseded"
cf_run 0 -p "$PB" revoke --reason superseded
assert_file_match "$T_ERR" "revoked $V" "stderr names the revoked version"
if [ $HAVE_STATUS = 1 ]; then
	assert_eq "$(pebble_status_of "$CERT")" Revoked "Pebble: certificate revoked"
	assert_eq "$(json_get "$T_TMP/cert-status.json" 'd.get("Reason")')" 4 \
	    "Pebble: revocation reason 4 (superseded)"
fi
for i in 1 2; do
	assert_unchanged "$i" before "n$i: revoke touched nothing on the node"
	assert_served "$i" "$SHA" "n$i still serves the certificate (revoke does not deploy)"
done
assert_state_unchanged before "state: revoke changed no file (only the CA knows)"

t_step "revoke again: idempotent (the CA's alreadyRevoked is what was asked for)"
cf_run 0 -p "$PB" revoke --reason superseded
[ $HAVE_STATUS = 1 ] && assert_eq "$(pebble_status_of "$CERT")" Revoked \
    "Pebble: still revoked"

t_step "revoke with the CA down: exit 1 naming the CA"
CAHOST=127.0.0.1:$PEBBLE_PORT
pebble_down
cf_run 1 -p "$PB" revoke --reason superseded
assert_file_match "$T_ERR" "$CAHOST" "error names the CA ($CAHOST)"

t_log "test wall time $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
t_done
