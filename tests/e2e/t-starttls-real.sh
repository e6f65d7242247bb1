#!/bin/bash
# certfleet's own STARTTLS dialogue (src/starttls.c, through the test
# client build/tests/starttls_probe) against the real daemons: postfix on
# 25 and 587 (smtp), dovecot on 143 (imap) and 110 (pop3), then a TLS
# handshake on the same connection; the leaf it sees is the one the
# node's config points to, before and after a reload to a new one.  A
# port that does not speak the protocol fails within the deadline, naming
# what it sent (sanitised).
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/services.sh"
t_start

PROBE=$BUILD/tests/starttls_probe
[ -x "$PROBE" ] || t_fatal "no $PROBE (make unit)"

tb_up 1
svc_mail_start 1 || t_fatal "postfix/dovecot did not start on n1"
tb_make_cert new 90 || t_fatal "tb_make_cert"
OLD_SHA=$(tb_cert_sha256 "$TB/certs/old/cert.pem")
NEW_SHA=$(tb_cert_sha256 "$TB/certs/new/cert.pem")
IP=$(tb_ip 1)

# probe PORT PROTO -> prints the hash (stdout) or the error (stderr)
probe() { "$PROBE" "$IP" "$1" "$2" "$TB_SNI" "${3:-10000}"; }

check_all() {
	local want=$1 what=$2 p
	for p in "25 smtp" "587 smtp" "143 imap" "110 pop3" "465 none" "993 none"; do
		set -- $p
		assert_eq "$(probe "$1" "$2" 2>&1)" "$want" "$what: $2 on port $1"
	done
}

t_step "every mail port serves the configured (old) certificate"
check_all "$OLD_SHA" "old certificate"

t_step "new files, postfix reload + doveadm reload: the probe sees the new one"
svc_put_cert 1 new /etc/postfix/tls/fullchain.pem fullchain 0644
svc_put_cert 1 new /etc/postfix/tls/privkey.pem privkey 0600
svc_put_cert 1 new /etc/dovecot/tls/fullchain.pem fullchain 0644
svc_put_cert 1 new /etc/dovecot/tls/privkey.pem privkey 0600
tb_exec 1 sh -c 'postfix reload && doveadm reload' >/dev/null 2>&1 ||
    t_notok "postfix reload / doveadm reload failed"
# reloads are asynchronous: wait (bounded) until the slowest port moved
for p in "25 smtp" "587 smtp" "143 imap" "110 pop3"; do
	set -- $p
	t_wait_for 15 sh -c '[ "$("$0" "$1" "$2" "$3" "$4" 2>/dev/null)" = "$5" ]' \
	    "$PROBE" "$IP" "$1" "$2" "$TB_SNI" "$NEW_SHA" ||
	    t_notok "port $1 did not serve the new certificate within 15 s"
done
check_all "$NEW_SHA" "new certificate"

t_step "a port that does not speak the protocol fails within the deadline"
t0=$SECONDS
out=$(probe 465 smtp 1500 2>&1)
assert_match "$out" "smtp STARTTLS: no answer within 1\\.[0-9]s waiting for the greeting" \
    "STARTTLS smtp to implicit-TLS 465 times out naming the greeting"
assert_le $((SECONDS - t0)) 4 "and within the deadline (1.5 s)"
out=$(probe 25 imap 2>&1)
assert_match "$out" 'imap STARTTLS: expected an "\* OK" greeting, server sent: "220 mail\.node\.test ESMTP"' \
    "imap to postfix quotes postfix's greeting"
out=$(probe 143 pop3 2>&1)
assert_match "$out" 'pop3 STARTTLS: expected a "\+OK" greeting, server sent: "\* OK \[CAPABILITY ' \
    "pop3 to dovecot's imap quotes its greeting"

t_step "a server speaking garbage: quoted, sanitised"
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
out=$(probe 2525 smtp 2>&1)
assert_match "$out" 'smtp STARTTLS: expected a 220 reply to the greeting, server sent: "\?\]0;owned\?HELLO \?\? there"' \
    "garbage quoted with control and invalid bytes as ?"
if printf '%s' "$out" | LC_ALL=C grep -q "$(printf '[\033\007\377]')"; then
	t_notok "raw control bytes reached the message"
else
	t_ok "no raw control bytes in the message"
fi

t_done
