#!/bin/bash
# Renewal state where operators look, and a renewal that neither burns the
# CA's rate limits nor depends on the fleet (real Pebble, real nodes):
#  (a) renew --json after an issuance: "renewal" says issued, the order
#      URL, the stored version, when it is next due; status (human and
#      --json) shows not due, the same next due, no failures.
#  (b) renew again: "not-due" with the reason, no order at Pebble.
#  (c) a playbook whose renew_before_days exceeds the lifetime: status
#      says due now.
#  (d) state directory read-only (whole store; versions/ only) and full:
#      exit 1 with the reason and no order at Pebble (its log counted),
#      the store untouched.
#  (e) SSH identity unreadable (dns-01): the certificate is still obtained
#      and stored, the deploy fails (exit 1, deploy_error), no node is
#      touched; fixed, the next run converges.
#  (f) nodes.json corrupt (dns-01 and http-01): same, nodes.json is left
#      byte for byte; fixed, the next run converges.
#  (g) CA down: renew --json says "failed" with the CA's error; status
#      shows the last error and the consecutive failures.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
t_start
acme_start

HOOK=$T_ROOT/hooks/dns-pebble-challtestsrv
tb_up 2
acme_up || t_fatal "pebble did not start"
pebble_add_a a.node.test "$(tb_ip 1)" || t_fatal "pebble_add_a"
PB=$TB/pb.json
acme_playbook "$PB" dns-01 a.node.test -- acme.dns_hook="$HOOK" \
    verify.server_name=a.node.test connect_timeout=3
PBH=$TB/pb-http.json
acme_playbook "$PBH" http-01 a.node.test -- verify.server_name=a.node.test \
    connect_timeout=3
TB_SNI=a.node.test
R=$TB/state/web/renewal.json
NJ=$TB/state/web/nodes.json
orders() { grep -c 'POST /order-plz' "$PEBBLE_DIR/pebble.log"; }
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

# ---------------------------------------------------------------------------
t_step "(a) renew --json: issued, order URL, version, next due; status agrees"
cf_run 0 --json -p "$PB" renew
J=$T_OUT
V1=$(acme_current_version)
[ -n "$V1" ] || t_fatal "no version stored"
assert_json "$J" 'd["renewal"]["action"]' issued
assert_json "$J" 'd["renewal"]["version"]' "$V1" "renewal.version is the stored version"
assert_match "$(json_get "$J" 'd["renewal"]["order"]')" "^https://127\.0\.0\.1:$PEBBLE_PORT/" \
    "renewal.order is Pebble's order URL"
assert_json "$J" 'd["renewal"]["reason"]' "no certificate in the store yet"
assert_json "$J" 'd["renewal"]["error"]' null
assert_json "$J" 'd["renewal"]["consecutive_failures"]' 0
assert_json "$J" 'd["deploy_error"]' null
# next due: a third of the lifetime before expiry (no renew_before_days)
NB=$(date -u -d "$(openssl x509 -in "$TB/state/web/versions/$V1/cert.pem" -noout -startdate | cut -d= -f2)" +%s)
NA=$(date -u -d "$(openssl x509 -in "$TB/state/web/versions/$V1/cert.pem" -noout -enddate | cut -d= -f2)" +%s)
WANT_DUE=$((NA - (NA - NB) / 3))
assert_json "$J" 'd["renewal"]["next_due_epoch"]' "$WANT_DUE" "next due = not_after - lifetime/3"
assert_json "$J" 'd["renewal"]["next_due"]' "$(iso "$WANT_DUE")"
for i in 1 2; do assert_node "$J" "n$i" outcome deployed; done
t_status
assert_json "$T_STATUS" 'd["renewal"]["due"]' false "status: not due"
assert_json "$T_STATUS" 'd["renewal"]["basis"]' lifetime
assert_json "$T_STATUS" 'd["renewal"]["next_due_epoch"]' "$WANT_DUE" "status: same next due as renew"
assert_json "$T_STATUS" 'd["renewal"]["consecutive_failures"]' 0
assert_json "$T_STATUS" 'd["renewal"]["last_error"]' null
assert_ne "$(json_get "$T_STATUS" 'd["renewal"]["last_success"]')" null "status: last_success set"
cf -p "$PB" status >"$T_TMP/status.txt" 2>&1
assert_file_match "$T_TMP/status.txt" "^renewal: not due before $(iso "$WANT_DUE"); last success " \
    "human status: renewal line with next due and last success"

# ---------------------------------------------------------------------------
t_step "(b) renew again: not-due, no order"
N=$(orders)
assert_ne "$N" 0 "Pebble logs orders as POST /order-plz"
cf_run 0 --json -p "$PB" renew
assert_json "$T_OUT" 'd["renewal"]["action"]' not-due
assert_json "$T_OUT" 'd["renewal"]["reason"]' "not due before $(iso "$WANT_DUE")"
assert_json "$T_OUT" 'd["renewal"]["order"]' null
assert_json "$T_OUT" 'd["renewal"]["version"]' null
assert_json "$T_OUT" 'd["renewal"]["next_due_epoch"]' "$WANT_DUE"
assert_eq "$(orders)" "$N" "no order at Pebble"

# ---------------------------------------------------------------------------
t_step "(c) renew_before_days beyond the lifetime: status says due now"
PBDUE=$TB/pb-due.json
acme_playbook "$PBDUE" dns-01 a.node.test -- acme.dns_hook="$HOOK" \
    verify.server_name=a.node.test acme.renew_before_days=3649
cf --json -p "$PBDUE" status >"$T_TMP/sdue.json" 2>/dev/null
assert_json "$T_TMP/sdue.json" 'd["renewal"]["due"]' true "status: due"
assert_match "$(json_get "$T_TMP/sdue.json" 'd["renewal"]["reason"]')" '^expires .*, less than 3649\.0 days left$' \
    "status: why it is due"
cf -p "$PBDUE" status >"$T_TMP/sdue.txt" 2>&1
assert_file_match "$T_TMP/sdue.txt" '^renewal: DUE now: expires ' "human status: DUE now"
cf_run 0 --json -p "$PBDUE" renew --dry-run
assert_json "$T_OUT" 'd["renewal"]["action"]' dry-run
assert_eq "$(orders)" "$N" "dry run: no order"

# ---------------------------------------------------------------------------
t_step "(d) state directory read-only or full: exit 1, reason, no order"
# the store on a small tmpfs of its own, with the current state copied in
cp -a "$TB/state" "$TB/state.real"
mount -t tmpfs -o size=512k,mode=0700 cftb-rstate "$TB/state" || t_fatal "tmpfs"
cp -a "$TB/state.real/." "$TB/state/"
store_snap() {
	(cd "$TB/state" && find . -type f ! -name lock ! -name .fill -print0 |
	    sort -z | xargs -0 sha256sum)
}
store_snap >"$T_TMP/store.0"
for i in 1 2; do t_snap "$i" d; done

mount -o remount,ro "$TB/state" || t_fatal "remount ro"
cf_run 1 --json -p "$PB" renew --force
assert_file_match "$T_ERR" 'Read-only file system' "whole store read-only: the cause"
assert_eq "$(orders)" "$N" "whole store read-only: no order at Pebble"
mount -o remount,rw "$TB/state" || t_fatal "remount rw"

{ mount --bind "$TB/state/web/versions" "$TB/state/web/versions" &&
    mount -o remount,bind,ro "$TB/state/web/versions"; } || t_fatal "ro bind"
cf_run 1 --json -p "$PB" renew --force
assert_file_match "$T_ERR" "not ordering a certificate the store could not keep: cannot create a directory in $TB/state/web/versions: Read-only file system" \
    "versions/ read-only: one line naming the directory and the cause"
assert_json "$T_OUT" 'd["exit_code"]' 1
assert_json "$T_OUT" 'd["renewal"]["action"]' failed
assert_match "$(json_get "$T_OUT" 'd["renewal"]["error"]')" 'Read-only file system' "renewal.error gives the cause"
assert_json "$T_OUT" 'd["renewal"]["order"]' null "no order URL"
assert_eq "$(orders)" "$N" "versions/ read-only: no order at Pebble"
umount "$TB/state/web/versions" || t_fatal "umount"

dd if=/dev/zero of="$TB/state/.fill" bs=4096 2>/dev/null
sync
cf_run 1 --json -p "$PB" renew --force
assert_file_match "$T_ERR" "not ordering.*$TB/state/web/versions: No space left on device" \
    "full: names the directory and the cause"
assert_json "$T_OUT" 'd["renewal"]["action"]' failed
assert_eq "$(orders)" "$N" "full: no order at Pebble"
rm -f "$TB/state/.fill"
store_snap >"$T_TMP/store.1"
if cmp -s "$T_TMP/store.0" "$T_TMP/store.1"; then
	t_ok "store unchanged (no probe or temp file left, renewal.json as before)"
else
	t_notok "store unchanged" "$(diff "$T_TMP/store.0" "$T_TMP/store.1" | head)"
fi
assert_eq "$(cd "$TB/state" && find . -name '*tmp*' | head -3)" "" "no temp files left"
for i in 1 2; do assert_unchanged "$i" d "n$i: nothing sent"; done
# with space again the same command orders (the probe was the only stop)
cf_run 0 --json -p "$PB" renew --force
assert_json "$T_OUT" 'd["renewal"]["action"]' issued "space again: issued"
assert_eq "$(orders)" "$((N + 1))" "space again: one order"
V2=$(acme_current_version)
# the tmpfs store goes away with its new version: on with the real one
umount "$TB/state" || t_fatal "umount state"
assert_eq "$(acme_current_version)" "$V1" "back on the real store"
N=$(orders)

# ---------------------------------------------------------------------------
t_step "(e) SSH identity unreadable (dns-01): certificate obtained and stored, deploy fails"
mv "$TB/id_ed25519" "$TB/id_ed25519.away"
for i in 1 2; do t_snap "$i" e; done
cf_run 1 --json -p "$PB" renew --force
assert_json "$T_OUT" 'd["renewal"]["action"]' issued
V2=$(acme_current_version)
assert_ne "$V2" "$V1" "a new version stored"
assert_json "$T_OUT" 'd["renewal"]["version"]' "$V2"
assert_match "$(json_get "$T_OUT" 'd["deploy_error"]')" "^deploy not run: identity $TB/id_ed25519: " \
    "deploy_error names the identity"
assert_file_match "$T_ERR" "deploy not run: identity $TB/id_ed25519" "stderr names the identity"
assert_eq "$(orders)" "$((N + 1))" "one order"
for i in 1 2; do assert_unchanged "$i" e "n$i: untouched"; done
assert_json "$R" 'd["consecutive_failures"]' 0 "renewal.json: the renewal succeeded"
mv "$TB/id_ed25519.away" "$TB/id_ed25519"
cf_run 0 --json -p "$PB" renew
assert_json "$T_OUT" 'd["renewal"]["action"]' not-due
SHA2=$(tb_cert_sha256 "$TB/state/web/versions/$V2/fullchain.pem")
for i in 1 2; do assert_served "$i" "$SHA2" "identity back: n$i converges to the new version"; done
N=$(orders)

# ---------------------------------------------------------------------------
t_step "(f) nodes.json corrupt: certificate obtained and stored (dns-01, http-01), deploy fails"
cp "$NJ" "$T_TMP/nodes.good"
printf '{"version": 1, "nodes": {"n1": [' >"$NJ"
NJSUM=$(sha256sum <"$NJ")
cf_run 1 --json -p "$PB" renew --force
V3=$(acme_current_version)
assert_ne "$V3" "$V2" "dns-01: a new version stored"
assert_json "$T_OUT" 'd["renewal"]["action"]' issued
assert_match "$(json_get "$T_OUT" 'd["deploy_error"]')" "^deploy not run: .*nodes\.json" \
    "deploy_error names nodes.json"
cf_run 1 --json -p "$PBH" renew --force
V4=$(acme_current_version)
assert_ne "$V4" "$V3" "http-01: a new version stored (challenge files still placed)"
assert_json "$T_OUT" 'd["renewal"]["action"]' issued
assert_file_match "$T_ERR" "deploy not run: .*$NJ" "stderr names nodes.json"
assert_eq "$(orders)" "$((N + 2))" "two orders"
assert_eq "$(sha256sum <"$NJ")" "$NJSUM" "nodes.json left byte for byte"
for i in 1 2; do
	# (the challenge directory's mtime changed: files came and went)
	assert_served "$i" "$SHA2" "n$i still serves the previous version"
	assert_bytes "$i" /srv/tls/fullchain.pem "$TB/state/web/versions/$V2/fullchain.pem"
	assert_bytes "$i" /srv/tls/privkey.pem "$TB/state/web/versions/$V2/privkey.pem"
	assert_eq "$(acme_challenge_files "$i")" "" "n$i: no challenge file left"
done
cp "$T_TMP/nodes.good" "$NJ"
cf_run 0 -p "$PBH" renew
SHA4=$(tb_cert_sha256 "$TB/state/web/versions/$V4/fullchain.pem")
for i in 1 2; do assert_served "$i" "$SHA4" "nodes.json back: n$i converges"; done

# ---------------------------------------------------------------------------
t_step "(g) CA down: renew --json says failed; status shows the error and the count"
CAHOST=127.0.0.1:$PEBBLE_PORT
pebble_down
cf_run 1 --json -p "$PB" renew --force
assert_json "$T_OUT" 'd["renewal"]["action"]' failed
assert_match "$(json_get "$T_OUT" 'd["renewal"]["error"]')" "$CAHOST" "renewal.error names the CA"
assert_json "$T_OUT" 'd["renewal"]["order"]' null
assert_json "$T_OUT" 'd["renewal"]["consecutive_failures"]' 1
assert_json "$T_OUT" 'd["stopped"]' false "not a canary stop"
cf_run 1 -p "$PB" renew --force
t_status
assert_json "$T_STATUS" 'd["renewal"]["consecutive_failures"]' 2 "status: 2 failures"
assert_match "$(json_get "$T_STATUS" 'd["renewal"]["last_error"]')" "$CAHOST" "status: last error names the CA"
assert_json "$T_STATUS" 'd["renewal"]["due"]' false "status: current cert not due"
assert_ne "$(json_get "$T_STATUS" 'd["renewal"]["last_attempt"]')" null "status: last attempt"
cf -p "$PB" status >"$T_TMP/status2.txt" 2>&1
assert_file_match "$T_TMP/status2.txt" "^renewal: not due before .*; FAILED 2 times in a row \(last .*\): .*$CAHOST" \
    "human status: failures and last error"

t_done
