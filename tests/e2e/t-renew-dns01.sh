#!/bin/bash
# renew with dns-01 against a real Pebble through the shipped hook
# (hooks/dns-pebble-challtestsrv), for a wildcard and its base name, which
# share one _acme-challenge TXT name.  The certificate reaches every node,
# verifies against Pebble's root, the TXT records are gone afterwards and
# no node's webroot was used.  A second `renew` orders nothing; `renew
# --force` orders a new one and keeps the old version.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
t_start
acme_start

T0=$(date +%s.%N)
HOOK=$T_ROOT/hooks/dns-pebble-challtestsrv
[ -x "$HOOK" ] || t_fatal "no executable hook at $HOOK"
tb_up 3
acme_up || t_fatal "pebble did not start"
ROOT=$T_TMP/pebble-root.pem
PB=$TB/pb.json
# The shipped hook, behind a wrapper that records the signal state the
# hook starts with: certfleet ignores SIGPIPE, its hooks must not.
WRAP=$T_TMP/hook-wrapper
printf '#!/bin/sh\ngrep -E "^Sig(Ign|Blk):" /proc/self/status >>"%s"\nexec "%s" "$@"\n' \
    "$T_TMP/hook.sig" "$HOOK" >"$WRAP"
chmod 755 "$WRAP"
acme_playbook "$PB" dns-01 '*.node.test' node.test -- \
    acme.dns_hook="$WRAP" verify.server_name=node.test
TB_SNI=node.test
OLD_SHA=$(tb_cert_sha256 "$TB/certs/old/fullchain.pem")

# What challtestsrv answers for the challenge name, via Pebble's own DNS.
txt_records() {
	dig +short +time=2 +tries=1 -p "$CHALLTESTSRV_DNS_PORT" @127.0.0.1 \
	    TXT _acme-challenge.node.test 2>/dev/null
}

t_step "renew: dns-01 for *.node.test and node.test"
cf_run 0 --json -p "$PB" renew
J=$T_OUT
ISSUE1=$T_SECS
assert_json "$J" 'd["exit_code"]' 0
assert_file_match "$T_ERR" 'ordering a certificate for 2 names' "stderr says it orders"
t_log "issuance: $(grep -o 'in [0-9.]*s$' "$T_ERR" | head -1) (whole renew run ${T_SECS}s)"
V1=$(acme_current_version)
CUR_DIR=$TB/state/web/versions/$V1
t_status
CUR_SHA=$(flat_get "$T_STATUS" certificate.sha256)
assert_eq "$(tb_cert_sha256 "$CUR_DIR/fullchain.pem")" "$CUR_SHA" \
    "status --json sha256 is the store's current version"
assert_ne "$CUR_SHA" "$OLD_SHA" "a new certificate"
assert_eq "$(acme_versions)" 1 "one version in the store"

t_step "the certificate: Pebble's, wildcard + base name, chain to the root"
assert_match "$(acme_issuer_cn "$CUR_DIR/cert.pem")" '^Pebble Intermediate CA' \
    "issuer is Pebble's intermediate"
assert_eq "$(acme_sans "$CUR_DIR/cert.pem")" "*.node.test node.test" \
    "certificate covers *.node.test and node.test"
if acme_chain_verifies "$CUR_DIR/fullchain.pem" "$ROOT"; then
	t_ok "stored fullchain verifies against Pebble's root"
else
	t_notok "stored fullchain verifies against Pebble's root"
fi
assert_eq "$(stat -c %a "$CUR_DIR/privkey.pem")" 600 "store: privkey.pem is 0600"
assert_eq "$(txt_records)" "" "no _acme-challenge TXT record left behind"

t_step "the hook ran with every signal at its default, none blocked"
assert_ne "$(grep -c . "$T_TMP/hook.sig" 2>/dev/null)" 0 "the hook wrapper recorded its signal state"
assert_eq "$(sort -u "$T_TMP/hook.sig" 2>/dev/null | tr '\t' ' ' | tr '\n' ';')" \
    "SigBlk: 0000000000000000;SigIgn: 0000000000000000;" "no signal ignored or blocked in the hook (SIGPIPE included)"

t_step "every node serves it (SNI node.test and a name under the wildcard)"
ACME_ROOT=$ROOT
for i in 1 2 3; do
	acme_assert_node "$i" "$CUR_DIR"
	assert_node "$J" "n$i" outcome deployed
done
assert_eq "$(tb_served_sha256 2 www.node.test)" "$CUR_SHA" \
    "n2: SNI www.node.test (under the wildcard) gets it too"
R=$TB/state/web/renewal.json
assert_json "$R" 'd.get("consecutive_failures", 0)' 0
assert_ne "$(json_get "$R" 'd.get("last_success", 0)')" 0 "renewal.json: last_success set"

t_step "renew again: not due, no order"
N_ORDERS=$(grep -c 'POST /order-plz' "$PEBBLE_DIR/pebble.log")
assert_ne "$N_ORDERS" 0 "Pebble logged the first order (log format as expected)"
cf_run 0 -p "$PB" renew
assert_file_match "$T_ERR" 'not due' "stderr says not due"
assert_eq "$(grep -c 'POST /order-plz' "$PEBBLE_DIR/pebble.log")" "$N_ORDERS" \
    "Pebble saw no new order"
assert_eq "$(acme_current_version)" "$V1" "store: current version unchanged"
for i in 1 2 3; do assert_served "$i" "$CUR_SHA" "n$i still serves it"; done

t_step "renew --force: new version everywhere, previous kept"
cf_run 0 --json -p "$PB" renew --force
ISSUE2=$T_SECS
t_log "issuance: $(grep -o 'in [0-9.]*s$' "$T_ERR" | head -1) (whole renew run ${T_SECS}s)"
V2=$(acme_current_version)
assert_ne "$V2" "$V1" "store: a new current version"
assert_eq "$(acme_versions)" 2 "store: two versions (previous kept)"
NEW_SHA=$(tb_cert_sha256 "$TB/state/web/versions/$V2/fullchain.pem")
assert_ne "$NEW_SHA" "$CUR_SHA" "a different certificate"
for i in 1 2 3; do acme_assert_node "$i" "$TB/state/web/versions/$V2"; done
assert_eq "$(txt_records)" "" "no TXT record left behind"

t_log "timing: first renew ${ISSUE1}s, forced renew ${ISSUE2}s, test $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
t_done
