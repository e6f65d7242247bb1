#!/bin/bash
# The EAB HMAC key binds ACME accounts to the operator: a playbook holding
# acme.eab.hmac_key that group or others can read is refused (exit 78,
# naming the file and its mode, as ssh(1) refuses a loose identity), and
# acme.eab.hmac_key_file must be a file only its owner can read (a loose,
# missing or non-regular one: exit 78 naming it).  With the key in a 0600
# file, renew against a Pebble that requires EAB creates the account and
# deploys; the key never appears in output or state.  status reads no key
# file at all (it is not needed to look at the fleet).
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
t_start
acme_start

# base64url, 32 random bytes: what a CA hands out as the EAB HMAC key
HMAC=$(openssl rand 32 | base64 | tr '+/' '-_' | tr -d '=\n')
KID=kid-$$

tb_up 2
# pebble.sh writes these into Pebble's config (Pebble 2.4:
# externalAccountBindingRequired, externalAccountMACKeys)
PEBBLE_EAB_REQUIRED=true PEBBLE_EAB_KEYS="{\"$KID\": \"$HMAC\"}" acme_up ||
	t_fatal "pebble did not start"
grep -q '"externalAccountBindingRequired": true' "$PEBBLE_DIR/pebble.json" ||
	t_fatal "Pebble is not configured to require EAB"
pebble_add_a a.node.test "$(tb_ip 1)" || t_fatal "pebble_add_a"
pebble_add_a b.node.test "$(tb_ip 2)" || t_fatal "pebble_add_a"

D=$T_TMP/pb
mkdir -p "$D"
KEYF=$T_TMP/eab.key

t_step "acme.eab.hmac_key inline in a playbook others can read: exit 78"
acme_playbook "$D/inline.json" http-01 a.node.test b.node.test -- \
    verify.server_name=a.node.test acme.eab.kid="$KID" acme.eab.hmac_key="$HMAC"
for m in 0644 0640 0604; do
	chmod "$m" "$D/inline.json"
	for cmd in validate status renew; do
		cf_run 78 -p "$D/inline.json" $cmd
		assert_eq "$(cat "$T_ERR")" "certfleet: $D/inline.json: mode $m: the playbook holds acme.eab.hmac_key and is readable by group or others; chmod 600 it or use acme.eab.hmac_key_file" \
		    "inline key, mode $m, $cmd: names file and mode"
	done
done
chmod 0600 "$D/inline.json"
cf_run 0 -p "$D/inline.json" validate

t_step "acme.eab.hmac_key_file: loose, missing, a directory: exit 78"
acme_playbook "$D/file.json" http-01 a.node.test b.node.test -- \
    verify.server_name=a.node.test acme.eab.kid="$KID" acme.eab.hmac_key_file="$KEYF"
chmod 0644 "$D/file.json" # holds no secret itself
cf_run 78 -p "$D/file.json" validate
assert_eq "$(cat "$T_ERR")" "certfleet: $D/file.json: acme.eab.hmac_key_file $KEYF: No such file or directory" \
    "missing key file: named"
printf '%s\n' "$HMAC" >"$KEYF"
for m in 0640 0644 0604; do
	chmod "$m" "$KEYF"
	for cmd in validate renew; do
		cf_run 78 -p "$D/file.json" $cmd
		assert_eq "$(cat "$T_ERR")" "certfleet: $D/file.json: acme.eab.hmac_key_file $KEYF: mode $m: the EAB HMAC key is readable by group or others; chmod 600 it" \
		    "key file mode $m, $cmd: names file and mode"
	done
done
acme_playbook "$D/dir.json" http-01 a.node.test b.node.test -- \
    verify.server_name=a.node.test acme.eab.kid="$KID" acme.eab.hmac_key_file="$T_TMP"
cf_run 78 -p "$D/dir.json" validate
assert_match "$(cat "$T_ERR")" "hmac_key_file $T_TMP: not a regular file" "a directory is refused"
acme_playbook "$D/both.json" http-01 a.node.test -- \
    acme.eab.kid="$KID" acme.eab.hmac_key="$HMAC" acme.eab.hmac_key_file="$KEYF"
chmod 0600 "$D/both.json"
cf_run 78 -p "$D/both.json" validate
assert_match "$(cat "$T_ERR")" "acme.eab.hmac_key_file: give acme.eab.hmac_key or acme.eab.hmac_key_file, not both" \
    "hmac_key and hmac_key_file together are refused"
assert_eq "$(ls "$TB/state/web/versions" 2>/dev/null | wc -l)" 0 "no version stored by the refused runs"
assert_eq "$(ls "$TB/state/accounts" 2>/dev/null | wc -l)" 0 "no ACME account created by the refused runs"

t_step "status does not read the key file: a loose one does not stop it"
chmod 0644 "$KEYF"
cf_run 0 -p "$D/file.json" status

t_step "key file 0600: validate ok, renew creates the EAB account and deploys"
chmod 0600 "$KEYF"
cf_run 0 -p "$D/file.json" validate
cf_run 0 --json -p "$D/file.json" renew
assert_json "$T_OUT" 'd["exit_code"]' 0
V=$(acme_current_version)
assert_ne "$V" "" "a version is stored"
TB_SNI=a.node.test
for i in 1 2; do
	assert_eq "$(tb_served_sha256 "$i" a.node.test)" \
	    "$(tb_cert_sha256 "$TB/state/web/versions/$V/fullchain.pem")" \
	    "n$i serves the new certificate"
done
printf '%s\n' "$HMAC" >"$T_TMP/needle"
assert_eq "$(grep -rlF -f "$T_TMP/needle" "$TB/state" "$T_TMP"/out.* "$T_TMP"/err.* 2>/dev/null | wc -l)" 0 \
    "the HMAC key is in no state file and no output"

t_step "without EAB the same Pebble refuses a new account (the binding mattered)"
acme_playbook "$D/noeab.json" http-01 a.node.test b.node.test -- \
    verify.server_name=a.node.test
rm -rf "$TB/state/accounts"
cf_run 1 -p "$D/noeab.json" renew --force
assert_match "$(cat "$T_ERR")" "[Ee]xternal" "the CA's refusal names external account binding"

t_done
