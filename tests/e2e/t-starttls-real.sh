#!/bin/bash
# certfleet's own verify speaks STARTTLS (src/starttls.c through
# tlsprobe) to the real daemons: postfix on 25 and 587 (smtp), dovecot on
# 143 (imap) and 110 (pop3), implicit TLS on 465 and 993, all listed in
# verify.endpoints.  `verify` passes on what is served, a deploy is
# verified on every endpoint (and an independent client, openssl s_client,
# agrees).  An endpoint that does not speak the protocol it is declared
# with, or a server speaking garbage, fails as verify-endpoint within the
# deadline, quoting what the server sent (sanitised).
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/services.sh"
t_start

tb_up 1
svc_mail_start 1 || t_fatal "postfix/dovecot did not start on n1"
tb_make_cert new 90 || t_fatal "tb_make_cert"
OLD_SHA=$(tb_cert_sha256 "$TB/certs/old/cert.pem")
NEW_SHA=$(tb_cert_sha256 "$TB/certs/new/cert.pem")
IP=$(tb_ip 1)
EPS='[{"port":25,"starttls":"smtp"},{"port":587,"starttls":"smtp"},{"port":465},
      {"port":143,"starttls":"imap"},{"port":110,"starttls":"pop3"},{"port":993}]'
FILES='[{"path":"/etc/postfix/tls/fullchain.pem","content":"fullchain"},
        {"path":"/etc/postfix/tls/privkey.pem","content":"privkey","mode":"0600"},
        {"path":"/etc/dovecot/tls/fullchain.pem","content":"fullchain"},
        {"path":"/etc/dovecot/tls/privkey.pem","content":"privkey","mode":"0600"}]'
# mail_pb FILE ENDPOINTS [KEY=VALUE...]
mail_pb() {
	local f=$1 e=$2
	shift 2
	tb_playbook "$f" verify.port=@delete verify.endpoints="$e" \
	    deploy.files="$FILES" "deploy.check=postfix check && doveconf -n >/dev/null" \
	    "deploy.reload=postfix reload && doveadm reload" verify_timeout=15 "$@"
}
PB=$TB/pb.json
mail_pb "$PB" "$EPS"

t_step "the store holds the certificate every port serves: verify passes on all six"
# n1 already serves it on 25 (the first endpoint): unchanged, nothing written
cf_run 0 -p "$PB" deploy --cert "$TB/certs/old/fullchain.pem" --key "$TB/certs/old/privkey.pem"
cf_run 0 --json -p "$PB" verify
assert_node "$T_OUT" n1 outcome verified

t_step "deploy: every endpoint verified by certfleet, s_client agrees"
cf_run 0 --json -p "$PB" deploy --cert "$TB/certs/new/fullchain.pem" --key "$TB/certs/new/privkey.pem"
assert_node "$T_OUT" n1 outcome deployed
for p in "25 smtp" "587 smtp" "465 -" "143 imap" "110 pop3" "993 -"; do
	set -- $p
	assert_eq "$(svc_served_sha256 1 "$1" "$2")" "$NEW_SHA" "s_client: $1 ($2) serves the new certificate"
done
cf_run 0 --json -p "$PB" verify
assert_node "$T_OUT" n1 outcome verified

t_step "a port that does not speak the declared protocol: verify-endpoint within the deadline"
P2=$TB/pb-wrong.json
mail_pb "$P2" '[{"port":993},{"port":465,"starttls":"smtp"}]' connect_timeout=2
t0=$SECONDS
cf_run 2 --json -p "$P2" verify
assert_le $((SECONDS - t0)) 5 "within the deadline (2 s per handshake)"
assert_node "$T_OUT" n1 reason verify-endpoint
assert_match "$(node_get "$T_OUT" n1 error)" "^n1:465 \\(smtp STARTTLS, SNI node\\.test\\): $IP:465: smtp STARTTLS: no answer within [12]\\.[0-9]s waiting for the greeting" \
    "smtp STARTTLS to implicit-TLS 465 times out naming the greeting"
mail_pb "$P2" '[{"port":993},{"port":25,"starttls":"imap"}]'
cf_run 2 --json -p "$P2" verify
assert_match "$(node_get "$T_OUT" n1 error)" 'n1:25 \(imap STARTTLS, SNI node\.test\): .*imap STARTTLS: expected an "\* OK" greeting, server sent: "220 mail\.node\.test ESMTP"' \
    "imap to postfix quotes postfix's greeting"

t_step "a server speaking garbage: verify-endpoint, quoted, sanitised, within verify.timeout"
# shellcheck disable=SC2016
tb_exec 1 "$TB_PY" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 2525)); s.listen(4)
while True:
    c, _ = s.accept()
    c.sendall(b"\x1b]0;owned\x07HELLO \xff\xfe there\r\n")
    c.close()
' "$IP" </dev/null >/dev/null 2>&1 &
svc_wait_ports 1 2525 || t_fatal "garbage server did not start"
mail_pb "$P2" '[{"port":993},{"port":2525,"starttls":"smtp"}]' verify_timeout=3 canary=0
t0=$SECONDS
# exit 1: no node took the certificate (the only one failed)
cf_run 1 --json -p "$P2" deploy --force
assert_le $((SECONDS - t0)) 12 "within verify.timeout (3 s) plus the rollback"
J=$T_OUT
assert_node "$J" n1 reason verify-endpoint
assert_node "$J" n1 rolled_back true
assert_match "$(node_get "$J" n1 error)" '^n1:2525 \(smtp STARTTLS, SNI node\.test\): .*smtp STARTTLS: expected a 220 reply to the greeting, server sent: "\?\]0;owned\?HELLO \?\? there"' \
    "garbage quoted with control and invalid bytes as ?"
if LC_ALL=C grep -q "$(printf '[\033\007\377]')" "$J" "$T_ERR"; then
	t_notok "raw control bytes reached the report"
else
	t_ok "no raw control bytes in the report"
fi
for p in "25 smtp" "993 -"; do
	set -- $p
	svc_wait_serves 1 "$NEW_SHA" 15 "$1" "$2" && t_ok "rolled back: $1 serves the previous (new) certificate" ||
	    t_notok "rolled back: $1 serves the previous (new) certificate"
done
[ "$OLD_SHA" != "$NEW_SHA" ] || t_notok "certificates differ"

t_done
