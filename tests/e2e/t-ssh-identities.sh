#!/bin/bash
# Every identity format certfleet takes logs in to a real OpenSSH and
# deploys: ed25519 and ecdsa (P-256, P-384, P-521) in OpenSSH's format,
# ecdsa in PEM and PKCS#8 (decoded once, signed by certfleet); RSA loads
# (libssh2 signs it) but OpenSSH refuses its SHA-1 signatures, and the
# message says why.  A key for another user is refused as such.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 1
PB=$TB/pb.json
K=$T_TMP/keys
mkdir -m 700 "$K"
# name  ssh-keygen arguments
KEYS="ed25519:-t ed25519
ecdsa256:-t ecdsa -b 256
ecdsa384:-t ecdsa -b 384
ecdsa521:-t ecdsa -b 521
ecdsa256pem:-t ecdsa -b 256 -m PEM
ecdsa384pkcs8:-t ecdsa -b 384 -m PKCS8
rsa:-t rsa -b 2048"
while IFS=: read -r name args; do
	# shellcheck disable=SC2086
	ssh-keygen -q $args -N '' -C "$name" -f "$K/$name" || t_fatal "ssh-keygen $name"
	cat "$K/$name.pub" >>"$(tb_dir 1)/authorized_keys"
done <<EOF
$KEYS
EOF
assert_match "$(head -n 1 "$K/ecdsa256pem")" "BEGIN EC PRIVATE KEY" "PEM key is PEM"
assert_match "$(head -n 1 "$K/ecdsa384pkcs8")" "BEGIN PRIVATE KEY" "PKCS#8 key is PKCS#8"

n=0
for name in ed25519 ecdsa256 ecdsa384 ecdsa521 ecdsa256pem ecdsa384pkcs8; do
	t_step "identity $name: logs in and deploys"
	n=$((n + 1))
	tb_make_cert "c$n" 90 || t_fatal "tb_make_cert"
	tb_playbook "$PB" ssh.identity="\"$K/$name\""
	cf_run 0 --json -p "$PB" deploy --cert "$TB/certs/c$n/fullchain.pem" --key "$TB/certs/c$n/privkey.pem"
	assert_node "$T_OUT" n1 outcome deployed
	assert_node_has 1 "$TB/certs/c$n"
	fp=$(ssh-keygen -lf "$K/$name.pub" | awk '{ print $2 }')
	if grep "Accepted publickey" "$(tb_dir 1)/logs/sshd.log" | tail -n 1 | grep -qF "$fp"; then
		t_ok "sshd accepted the $name key itself ($fp)"
	else
		t_notok "sshd accepted the $name key itself ($fp)" \
		    "$(grep "Accepted publickey" "$(tb_dir 1)/logs/sshd.log" | tail -n 1)"
	fi
done

t_step "identity rsa: refused by OpenSSH, and the message says why"
tb_playbook "$PB" ssh.identity="\"$K/rsa\""
# the only node, and so the canary, failed: exit 1
cf_run 1 --json -p "$PB" deploy --force
assert_node "$T_OUT" n1 reason auth
assert_match "$(node_get "$T_OUT" n1 error)" "SHA-1" "error names libssh2's SHA-1 RSA signatures"

t_step "a key the node does not authorize: auth failure, nothing written"
ssh-keygen -q -t ecdsa -b 256 -N '' -f "$K/stranger" || t_fatal "ssh-keygen"
t_snap 1 before
tb_playbook "$PB" ssh.identity="\"$K/stranger\""
cf_run 1 --json -p "$PB" deploy --force
assert_node "$T_OUT" n1 reason auth
assert_unchanged 1 before

t_done
