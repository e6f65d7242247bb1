#!/bin/bash
# playbooks/postfix-dovecot.json, as shipped (four files, postfix check &&
# doveconf -n, postfix reload && doveadm reload, verify.endpoints 25/587
# smtp STARTTLS, 143 imap, 110 pop3, 465, 993, 995), on real
# postfix 3.7 and dovecot 2.3 on two nodes (tests/lib/services.sh): after
# deploy every mail port serves the new certificate -- STARTTLS on 25, 587
# (smtp), 143 (imap), 110 (pop3), implicit TLS on 465, 993, 995 -- the
# files have the recipe's modes, and both masters kept their pids.  Then
# node 2's dovecot config is broken by hand: the recipe's check fails
# there, its files are restored, it is quarantined; node 1 takes the next.
# Last, node 1's dovecot is pointed by hand at a leaf-only file: certfleet
# verify (speaking STARTTLS itself) names n1:143 and the missing
# intermediate.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/services.sh"
t_start

RECIPE=$T_ROOT/playbooks/postfix-dovecot.json
# shellcheck disable=SC2034 # read by tb_up and tb_make_cert
TB_DOMAINS=$(svc_recipe_get "$RECIPE" 'd["certificate"]["domains"]')
TB_SNI=$(svc_recipe_get "$RECIPE" 'd["verify"]["server_name"]')
PORTS="25:smtp 587:smtp 465:- 143:imap 110:pop3 993:- 995:-"
tb_up 2
# postfix start takes seconds (post-install): both nodes at once
svc_mail_start 1 & s1=$!
svc_mail_start 2 & s2=$!
wait $s1 || t_fatal "postfix/dovecot did not start on n1"
wait $s2 || t_fatal "postfix/dovecot did not start on n2"
tb_make_cert new 90 || t_fatal "tb_make_cert"
tb_make_cert newer 90 || t_fatal "tb_make_cert"
PB=$TB/pb.json
svc_recipe_playbook "$RECIPE" "$PB" || t_fatal "cannot adapt $RECIPE"

assert_mail_files() {
	local i=$1 c=$2 d
	for d in postfix dovecot; do
		assert_bytes "$i" /etc/$d/tls/fullchain.pem "$c/fullchain.pem"
		assert_bytes "$i" /etc/$d/tls/privkey.pem "$c/privkey.pem"
		assert_mode "$i" /etc/$d/tls/fullchain.pem 0644
		assert_mode "$i" /etc/$d/tls/privkey.pem 0600
	done
}
# every port of node I serves certificate directory C (reloads are
# asynchronous for ports certfleet's verify does not look at: poll)
assert_mail_serves() {
	local i=$1 c=$2 sha pp port st
	sha=$(tb_cert_sha256 "$c/cert.pem")
	for pp in $PORTS; do
		port=${pp%:*}
		st=${pp#*:}
		if svc_wait_serves "$i" "$sha" 15 "$port" "$st"; then
			t_ok "n$i:$port ($st) serves ${c##*/}"
		else
			t_notok "n$i:$port ($st) serves ${c##*/}" \
			    "got: '$(svc_served_sha256 "$i" "$port" "$st")'"
		fi
	done
}

P1=$(svc_postfix_pid 1) D1=$(svc_dovecot_pid 1)
P2=$(svc_postfix_pid 2) D2=$(svc_dovecot_pid 2)
[ -n "$P1" ] && [ -n "$D1" ] && [ -n "$P2" ] && [ -n "$D2" ] ||
    t_fatal "no postfix/dovecot master pids"
assert_mail_serves 1 "$TB/certs/old"

t_step "deploy with the shipped recipe"
cf_run 0 --json -p "$PB" deploy --cert "$TB/certs/new/fullchain.pem" \
    --key "$TB/certs/new/privkey.pem"
assert_nodes "$T_OUT" outcome deployed n1 n2
for i in 1 2; do
	assert_mail_serves "$i" "$TB/certs/new"
	assert_mail_files "$i" "$TB/certs/new"
done
assert_eq "$(svc_postfix_pid 1) $(svc_dovecot_pid 1)" "$P1 $D1" "n1: same postfix and dovecot masters"
assert_eq "$(svc_postfix_pid 2) $(svc_dovecot_pid 2)" "$P2 $D2" "n2: same postfix and dovecot masters"
assert_file_match "$(tb_dir 1)/logs/postfix.log" 'reload -- version' "n1: postfix reloaded"
assert_file_match "$(tb_dir 1)/logs/dovecot.log" 'SIGHUP received - reloading configuration' "n1: dovecot reloaded"
cf_run 0 --json -p "$PB" verify
assert_nodes "$T_OUT" outcome verified n1 n2

t_step "n2's dovecot config broken by hand: doveconf -n fails there only"
svc_break 2 dovecot
# exit 2 (partial), not 1: the recipe's rollout.max_failures is 1, and the
# one failure spends it, but no node was left to start, so nothing stopped
cf_run 2 --json -p "$PB" deploy --cert "$TB/certs/newer/fullchain.pem" \
    --key "$TB/certs/newer/privkey.pem"
J=$T_OUT
assert_node "$J" n1 outcome deployed
assert_node "$J" n2 outcome failed
assert_node "$J" n2 reason check-failed
assert_node "$J" n2 quarantined true
assert_match "$(node_get "$J" n2 error)" "certfleet_test_broken_setting" \
    "n2's error quotes doveconf's complaint"
assert_mail_serves 1 "$TB/certs/newer"
assert_mail_files 1 "$TB/certs/newer"
assert_mail_serves 2 "$TB/certs/new"
assert_mail_files 2 "$TB/certs/new"
assert_eq "$(svc_postfix_pid 2) $(svc_dovecot_pid 2)" "$P2 $D2" "n2: masters still running"
t_status
assert_node "$T_STATUS" n2 quarantined true

t_step "n1's dovecot switched by hand to a leaf-only file: verify names n1:143"
openssl x509 -in "$TB/certs/newer/cert.pem" >"$(tb_dir 1)/dovecot/tls/leaf.pem"
echo 'ssl_cert = </etc/dovecot/tls/leaf.pem' >"$(tb_dir 1)/dovecot/local.conf"
tb_exec 1 doveadm reload || t_fatal "n1: doveadm reload"
SNI1=$(svc_recipe_get "$RECIPE" 'd["verify"]["server_name"]')
leaf_only() { [ "$(timeout 5 openssl s_client -connect "$(tb_ip 1):993" -servername "$SNI1" -showcerts </dev/null 2>/dev/null |
    grep -c 'BEGIN CERTIFICATE')" = 1 ]; }
t_wait_for 15 leaf_only || t_notok "n1: dovecot did not switch to the leaf-only file"
cf_run 2 --json -p "$PB" verify --only n1
assert_node "$T_OUT" n1 reason verify-chain
assert_node "$T_OUT" n1 error "n1:143 (imap STARTTLS, SNI $SNI1) sends the leaf without intermediate 'certfleet test intermediate CA'"

t_done
