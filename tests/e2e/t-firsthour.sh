#!/bin/bash
# A new operator's first hour, following only the README: three nodes whose
# certificate files are root's from a manual setup are prepared with
# README's "Preparing a node" block as it stands (a non-root login
# "certfleet", `sudo -n` check and reload), the playbook says what the
# README says, and then:
#   validate -> 0; renew --dry-run -> 0, every node passes preflight, the
#   state dir is not created and nothing on the nodes changes; renew -> 0,
#   a certificate from the CA (Pebble, http-01) on every node, the files
#   the login's with their modes, the previous versions kept; status says
#   renewal is not due and shows no failure.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
. "$T_ROOT/tests/lib/readme.sh"
t_start
acme_start
command -v sudo >/dev/null || t_skip "sudo is not installed (tests/lib/deps.sh installs it)"

N=3
tb_up $N
acme_up || t_fatal "pebble did not start"
for i in $(seq 1 $N); do
	pebble_add_a "w$i.node.test" "$(tb_ip "$i")" || t_fatal "pebble_add_a"
done
ROOT=$T_TMP/pebble-root.pem
CHECK='nginx -t -q -c /srv/nginx.conf'
RELOAD='nginx -s reload -c /srv/nginx.conf'

t_step "the manual setup: certificate files root's, as most fleets have them"
for i in $(seq 1 $N); do
	tb_own_users "$i" || t_fatal "n$i: tb_own_users"
	assert_eq "$(tb_exec "$i" stat -c '%U %a' /srv/tls/fullchain.pem /srv/tls/privkey.pem | tr '\n' ' ')" \
	    "root 644 root 600 " "n$i: files root's before preparation"
done

t_step "prepare every node with README's block, unchanged"
for i in $(seq 1 $N); do readme_prep "$i"; done

PB=$TB/pb.json
acme_playbook "$PB" http-01 w1.node.test w2.node.test w3.node.test -- \
    verify.server_name=w1.node.test ssh.user=certfleet \
    deploy.check="sudo -n $CHECK" deploy.reload="sudo -n $RELOAD"
TB_SNI=w1.node.test
for i in $(seq 1 $N); do t_snap "$i" before; done

t_step "validate"
cf_run 0 -p "$PB" validate

t_step "renew --dry-run: every node passes preflight, nothing is written"
cf_run 0 --json -p "$PB" renew --dry-run
assert_nodes "$T_OUT" outcome dry-run n1 n2 n3
assert_json "$T_OUT" 'd["renewal"]["action"]' dry-run
assert_eq "$(ls -A "$TB/state" 2>/dev/null | wc -l)" 0 "no state written"
for i in $(seq 1 $N); do assert_unchanged "$i" before "n$i: nothing changed"; done

t_step "renew: the first certificate reaches every node"
cf_run 0 --json -p "$PB" renew
J=$T_OUT
assert_json "$J" 'd["renewal"]["action"]' issued
assert_nodes "$J" outcome deployed n1 n2 n3
V=$TB/state/web/versions/$(acme_current_version)
assert_match "$(acme_issuer_cn "$V/cert.pem")" '^Pebble Intermediate CA' "issued by the CA"
ACME_ROOT=$ROOT
for i in $(seq 1 $N); do
	acme_assert_node "$i" "$V"
	assert_eq "$(tb_exec "$i" stat -c '%U %a' /srv/tls/fullchain.pem /srv/tls/privkey.pem | tr '\n' ' ')" \
	    "certfleet 644 certfleet 600 " "n$i: the new files are the login's, modes as the playbook says"
	assert_bytes "$i" /srv/tls/.privkey.pem.certfleet-prev "$TB/certs/old/privkey.pem"
done

t_step "status: renewal not due, no failure, no quarantine"
t_status
assert_json "$T_STATUS" 'd["renewal"]["due"]' false
assert_json "$T_STATUS" 'd["renewal"]["consecutive_failures"]' 0
assert_json "$T_STATUS" 'sum(1 for n in d["nodes"] if n["quarantined"])' 0

t_done
