#!/bin/bash
# Certificate and key input that is unusable in any way (beyond the basic
# cases of t-deploy-badinput): exit 65, one line on stderr naming the file
# at fault, nothing stored, no node touched, no key material echoed.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 2
tb_make_cert new 90 || t_fatal "tb_make_cert"
tb_make_cert other 90 || t_fatal "tb_make_cert"
tb_make_cert expired -3 || t_fatal "tb_make_cert (expired)"
C=$TB/certs
NEW=$C/new
PB=$TB/pb.json
tb_playbook "$PB"
B=$T_TMP/bad
mkdir -p "$B"

t_step "making the bad inputs"
# a certificate valid only from tomorrow
(
	set -e
	cd "$B"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out future.key 2>/dev/null
	openssl req -new -key future.key -subj /CN=node.test -out future.csr
	printf 'subjectAltName=DNS:node.test,DNS:www.node.test\n' >future.ext
	faketime -f +2d openssl x509 -req -in future.csr -CA "$TB/ca/int.pem" \
	    -CAkey "$TB/ca/int.key" -set_serial 0x1234 -days 30 \
	    -extfile future.ext -out future.pem 2>/dev/null
	cat future.pem "$TB/ca/int.pem" >future-full.pem
) || t_fatal "cannot make the not-yet-valid certificate"
: >"$B/empty.pem"
openssl x509 -in "$NEW/cert.pem" -outform DER -out "$B/cert.der"
openssl pkey -in "$NEW/privkey.pem" -outform DER -out "$B/key.der"
openssl pkey -in "$NEW/privkey.pem" -aes256 -passout pass:secret -out "$B/key-encrypted.pem"
chmod 600 "$B/key-encrypted.pem"
# half a certificate: the PEM armour closes, the DER inside is cut
awk 'NR == 1 || NR % 2 == 0 || /END/' "$NEW/cert.pem" >"$B/cert-truncated.pem"
# the base64 with one character changed (signature still parses? no: DER)
sed '3s/./#/5' "$NEW/cert.pem" >"$B/cert-badchar.pem"
# NUL bytes in the middle of the PEM text
{ head -c 200 "$NEW/fullchain.pem"; printf '\0\0\0'; tail -c +201 "$NEW/fullchain.pem"; } >"$B/cert-nul.pem"
# 2 MiB of PEM-looking text after a valid chain
{ cat "$NEW/fullchain.pem"; head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' 'A'; } >"$B/cert-2mib.pem"
# the certificate followed by a private key block (a combined file)
cat "$NEW/fullchain.pem" "$NEW/privkey.pem" >"$B/cert-with-key.pem"
# a chain file that is garbage
head -c 300 /dev/urandom | base64 >"$B/chain-garbage.pem"
printf -- '-----BEGIN CERTIFICATE-----\nnot base64 at all !!!\n-----END CERTIFICATE-----\n' >"$B/cert-armour-only.pem"
# a CA certificate as the leaf (names do not cover node.test)
cp "$TB/ca/int.pem" "$B/ca-as-leaf.pem"

for i in 1 2; do t_snap "$i" start; done
t_state_snap start
KEYB64=$(grep -v -- '-----' "$NEW/privkey.pem" | head -1)

# bad WHAT FILE-AT-FAULT ARGS...: exit 65, one stderr line naming the file
bad() {
	local what=$1 fault=$2
	shift 2
	t_step "$what"
	cf_run 65 -p "$PB" deploy "$@" </dev/null
	assert_eq "$(wc -l <"$T_ERR")" 1 "$what: one line on stderr"
	assert_match "$(head -c 600 "$T_ERR")" "^certfleet: .*${fault##*/}" \
	    "$what: the message names ${fault##*/}"
	if grep -qF -- "$KEYB64" "$T_OUT" "$T_ERR"; then
		t_notok "$what: key material in the output"
	else
		t_ok "$what: no key material in the output"
	fi
	cf_run 65 --json -p "$PB" deploy "$@" </dev/null
	assert_json "$T_OUT" 'd["exit_code"]' 65 "$what: --json says exit_code 65"
}

bad "empty certificate file" "$B/empty.pem" --cert "$B/empty.pem" --key "$NEW/privkey.pem"
bad "empty key file" "$B/empty.pem" --cert "$NEW/fullchain.pem" --key "$B/empty.pem"
bad "DER certificate" "$B/cert.der" --cert "$B/cert.der" --key "$NEW/privkey.pem"
bad "DER key" "$B/key.der" --cert "$NEW/fullchain.pem" --key "$B/key.der"
bad "encrypted key (never prompts)" "$B/key-encrypted.pem" --cert "$NEW/fullchain.pem" --key "$B/key-encrypted.pem"
bad "truncated certificate" "$B/cert-truncated.pem" --cert "$B/cert-truncated.pem" --key "$NEW/privkey.pem"
bad "corrupted base64" "$B/cert-badchar.pem" --cert "$B/cert-badchar.pem" --key "$NEW/privkey.pem"
bad "NUL bytes in the certificate" "$B/cert-nul.pem" --cert "$B/cert-nul.pem" --key "$NEW/privkey.pem"
bad "2 MiB certificate file" "$B/cert-2mib.pem" --cert "$B/cert-2mib.pem" --key "$NEW/privkey.pem"
bad "private key inside the certificate file" "$B/cert-with-key.pem" --cert "$B/cert-with-key.pem" --key "$NEW/privkey.pem"
bad "certificate given as the key" "$NEW/cert.pem" --cert "$NEW/fullchain.pem" --key "$NEW/cert.pem"
bad "key given as the certificate" "$NEW/privkey.pem" --cert "$NEW/privkey.pem" --key "$NEW/privkey.pem"
bad "garbage chain" "$B/chain-garbage.pem" --cert "$NEW/cert.pem" --chain "$B/chain-garbage.pem" --key "$NEW/privkey.pem"
bad "PEM armour around garbage" "$B/cert-armour-only.pem" --cert "$B/cert-armour-only.pem" --key "$NEW/privkey.pem"
bad "not yet valid" "$B/future-full.pem" --cert "$B/future-full.pem" --key "$B/future.key"
bad "expired" "$C/expired/fullchain.pem" --cert "$C/expired/fullchain.pem" --key "$C/expired/privkey.pem"
bad "key of another certificate" "$C/other/privkey.pem" --cert "$NEW/fullchain.pem" --key "$C/other/privkey.pem"
bad "CA certificate as the leaf" "$B/ca-as-leaf.pem" --cert "$B/ca-as-leaf.pem" --key "$TB/ca/int.key"
bad "a directory as the certificate" "$B" --cert "$B" --key "$NEW/privkey.pem"
bad "/dev/zero as the certificate" /dev/zero --cert /dev/zero --key "$NEW/privkey.pem"
bad "missing key file" "$B/nope.pem" --cert "$NEW/fullchain.pem" --key "$B/nope.pem"

t_step "--lineage with a broken lineage"
mkdir -p "$B/lineage"
cp "$NEW/cert.pem" "$NEW/chain.pem" "$B/lineage/"
cp "$C/other/privkey.pem" "$B/lineage/privkey.pem"
bad "lineage with a foreign key" "$B/lineage" --lineage "$B/lineage"

t_step "nothing stored, no node touched"
for i in 1 2; do assert_unchanged "$i" start "n$i: nothing under /srv changed"; done
assert_state_unchanged start "state directory unchanged"
for i in 1 2; do
	assert_eq "$(grep -c 'Accepted publickey' "$(tb_dir "$i")/logs/sshd.log")" 0 \
	    "n$i: no SSH login at all"
done
cf_run 1 -p "$PB" deploy
assert_match "$(cat "$T_ERR")" "no certificate" "the store still has no certificate"

t_step "and the good input still works afterwards"
cf_run 0 -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"

t_done
