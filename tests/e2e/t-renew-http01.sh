#!/bin/bash
# renew with http-01 against a real Pebble, across 3 nodes where the names
# resolve to different nodes (a.node.test -> n1, b.node.test -> n2): every
# node must hold the token, since the CA may ask any of them.  The new
# certificate reaches every node, verifies against Pebble's root, no token
# is left behind, the key is 0600 everywhere.  A second `renew` orders
# nothing (not due); `renew --force` orders a new one and keeps the old
# version in the store.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
t_start
acme_start

T0=$(date +%s.%N)
tb_up 3
acme_up || t_fatal "pebble did not start"
pebble_add_a a.node.test "$(tb_ip 1)" || t_fatal "pebble_add_a a"
pebble_add_a b.node.test "$(tb_ip 2)" || t_fatal "pebble_add_a b"
ROOT=$T_TMP/pebble-root.pem
PB=$TB/pb.json
acme_playbook "$PB" http-01 a.node.test b.node.test -- \
    verify.server_name=a.node.test
SNI=a.node.test
TB_SNI=$SNI
OLD_SHA=$(tb_cert_sha256 "$TB/certs/old/fullchain.pem")

t_step "renew: no certificate yet -> order, store, deploy everywhere"
cf_run 0 --json -p "$PB" renew
J=$T_OUT
E=$T_ERR
ISSUE1=$T_SECS
assert_json "$J" 'd["exit_code"]' 0
assert_file_match "$E" 'ordering a certificate for 2 names' "stderr says it orders"
assert_file_match "$E" 'stored version' "stderr says it stored a version"
t_log "issuance: $(grep -o 'in [0-9.]*s$' "$E" | head -1) (whole renew run ${T_SECS}s)"

t_status
CUR_SHA=$(flat_get "$T_STATUS" certificate.sha256)
V1=$(acme_current_version)
assert_ne "$CUR_SHA" "<missing>" "status shows a current certificate"
assert_ne "$CUR_SHA" "$OLD_SHA" "the current certificate is a new one"
assert_eq "$(acme_versions)" 1 "one version in the store"
CUR_DIR=$TB/state/web/versions/$V1
assert_eq "$(tb_cert_sha256 "$CUR_DIR/fullchain.pem")" "$CUR_SHA" \
    "store's current version directory holds that certificate"

t_step "the stored certificate: Pebble's, both names, chain to Pebble's root"
assert_match "$(acme_issuer_cn "$CUR_DIR/cert.pem")" '^Pebble Intermediate CA' \
    "issuer is Pebble's intermediate"
assert_eq "$(acme_sans "$CUR_DIR/cert.pem")" "a.node.test b.node.test" \
    "certificate covers a.node.test and b.node.test"
if acme_chain_verifies "$CUR_DIR/fullchain.pem" "$ROOT"; then
	t_ok "stored fullchain verifies against Pebble's root"
else
	t_notok "stored fullchain verifies against Pebble's root"
fi
assert_eq "$(stat -c %a "$CUR_DIR/privkey.pem")" 600 "store: privkey.pem is 0600"

t_step "every node serves it, chain verifies, key 0600, no token left"
ACME_ROOT=$ROOT
for i in 1 2 3; do
	acme_assert_node "$i" "$CUR_DIR"
	assert_node "$J" "n$i" outcome deployed
done
acme_served_chain 3 b.node.test "$T_TMP/served.b.pem"
assert_eq "$(acme_sans "$T_TMP/served.b.pem")" "a.node.test b.node.test" \
    "n3: for SNI b.node.test it serves a leaf covering both names"

t_step "renewal state: success recorded"
R=$TB/state/web/renewal.json
assert_json "$R" 'd.get("consecutive_failures", 0)' 0
assert_ne "$(json_get "$R" 'd.get("last_success", 0)')" 0 "renewal.json: last_success set"
assert_json "$R" 'd.get("last_error")' null "renewal.json: no last_error"
t_status
for i in 1 2 3; do
	assert_node "$T_STATUS" "n$i" serving_current true
	assert_node "$T_STATUS" "n$i" quarantined false
done

t_step "renew again: not due, no new order, nothing redeployed"
N_ORDERS=$(grep -c 'POST /order-plz' "$PEBBLE_DIR/pebble.log")
assert_ne "$N_ORDERS" 0 "Pebble logged the first order (log format as expected)"
cf_run 0 --json -p "$PB" renew
assert_file_match "$T_ERR" 'not due' "stderr says not due"
if grep -q 'ordering a certificate' "$T_ERR"; then
	t_notok "no order placed when not due"
else
	t_ok "no order placed when not due"
fi
assert_eq "$(grep -c 'POST /order-plz' "$PEBBLE_DIR/pebble.log")" "$N_ORDERS" \
    "Pebble saw no new order"
assert_eq "$(acme_current_version)" "$V1" "store: current version unchanged"
assert_eq "$(acme_versions)" 1 "store: still one version"
for i in 1 2 3; do
	assert_served "$i" "$CUR_SHA" "n$i still serves the same certificate"
	assert_ne "$(node_get "$T_OUT" "n$i" outcome)" deployed "n$i: not redeployed"
done

t_step "renew --force: a new version, served everywhere, previous kept"
cf_run 0 --json -p "$PB" renew --force
J=$T_OUT
ISSUE2=$T_SECS
assert_file_match "$T_ERR" 'ordering a certificate.*forced' "stderr says forced"
t_log "issuance: $(grep -o 'in [0-9.]*s$' "$T_ERR" | head -1) (whole renew run ${T_SECS}s)"
V2=$(acme_current_version)
assert_ne "$V2" "$V1" "store: a new current version"
assert_eq "$(acme_versions)" 2 "store: two versions (previous kept)"
assert_eq "$([ -f "$TB/state/web/versions/$V1/fullchain.pem" ] && echo yes)" yes \
    "store: previous version's files still there"
NEW_SHA=$(tb_cert_sha256 "$TB/state/web/versions/$V2/fullchain.pem")
assert_ne "$NEW_SHA" "$CUR_SHA" "the forced certificate is a different one"
t_status
assert_json "$T_STATUS" 'd["certificate"]["sha256"]' "$NEW_SHA"
assert_eq "$(stat -c %a "$TB/state/web/versions/$V2/privkey.pem")" 600 \
    "store: new privkey.pem is 0600"
for i in 1 2 3; do acme_assert_node "$i" "$TB/state/web/versions/$V2"; done

t_log "timing: first renew ${ISSUE1}s, forced renew ${ISSUE2}s, test so far $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
t_done
