#!/bin/bash
# Unusable input never reaches a node or the store: a key that does not
# match, an expired certificate, one for other names, a file that is not
# PEM -> exit 65; a bad command line -> 64; a playbook with an unknown key
# -> exit 78 naming file:line: key.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 3
tb_make_cert new 90 || t_fatal "tb_make_cert"
tb_make_cert other 90 || t_fatal "tb_make_cert"
tb_make_cert expired -5 || t_fatal "tb_make_cert (expired)"
tb_make_cert wrongname 90 other.test www.other.test || t_fatal "tb_make_cert"
C=$TB/certs
OLD_SHA=$(tb_cert_sha256 "$C/old/fullchain.pem")
PB=$TB/pb.json
tb_playbook "$PB"
head -c 600 /dev/urandom | base64 >"$TB/garbage.pem"

for i in 1 2 3; do t_snap "$i" start; done
t_state_snap start

# bad_input WHAT CERT KEY
bad_input() {
	t_step "$1: exit 65, nothing changed"
	cf_run 65 --json -p "$PB" deploy --cert "$2" --key "$3"
	assert_match "$(cat "$T_ERR")" "." "an error message on stderr"
	for i in 1 2 3; do assert_unchanged "$i" start "n$i: untouched"; done
	assert_state_unchanged start "state directory unchanged"
}

bad_input "key does not match the certificate" "$C/new/fullchain.pem" "$C/other/privkey.pem"
bad_input "expired certificate" "$C/expired/fullchain.pem" "$C/expired/privkey.pem"
bad_input "certificate for other names" "$C/wrongname/fullchain.pem" "$C/wrongname/privkey.pem"
bad_input "certificate is not PEM" "$TB/garbage.pem" "$C/new/privkey.pem"
bad_input "key is not PEM" "$C/new/fullchain.pem" "$TB/garbage.pem"
bad_input "certificate file missing" "$TB/no-such-file.pem" "$C/new/privkey.pem"
for i in 1 2 3; do assert_served "$i" "$OLD_SHA" "n$i still serves the old certificate"; done

t_step "bad command lines: exit 64"
cf_run 64 -p "$PB" deploy --cert "$C/new/fullchain.pem"
cf_run 64 -p "$PB" deploy --no-such-option
cf_run 64 -p "$PB" no-such-command
assert_state_unchanged start "state directory unchanged"

t_step "playbook with an unknown key: exit 78, FILE:LINE: KEY in the message"
BAD=$TB/bad.json
tb_playbook "$BAD" ssh.conenct_timeout=3
line=$(grep -n '"conenct_timeout"' "$BAD" | cut -d: -f1)
cf_run 78 -p "$BAD" deploy --cert "$C/new/fullchain.pem" --key "$C/new/privkey.pem"
assert_file_match "$T_ERR" "bad\.json:$line: ssh\.conenct_timeout" \
    "stderr names bad.json:$line: ssh.conenct_timeout"
cf_run 78 -p "$BAD" validate
for i in 1 2 3; do assert_unchanged "$i" start "n$i: untouched"; done

t_done
