#!/bin/bash
# playbooks/apache.json, as shipped (files, check, reload), on real
# apache2 + mod_ssl on two nodes (tests/lib/services.sh): deploy puts the
# leaf, chain and key where the recipe says with its modes and owner, the
# reload is graceful (same parent pid, "graceful restart" in the log), and
# apache serves the new certificate.  Then node 2's config is broken by
# hand: the recipe's check (apachectl configtest) fails there, its files
# are restored and it is quarantined, while node 1 takes the next one.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/services.sh"
t_start

RECIPE=$T_ROOT/playbooks/apache.json
TB_DOMAINS=$(svc_recipe_get "$RECIPE" 'd["certificate"]["domains"]')
TB_SNI=${TB_DOMAINS%% *}
export TB_CERT_KEY=rsa # the recipe's key_type
tb_up 2
svc_apache_start 1 || t_fatal "apache2 did not start on n1"
svc_apache_start 2 || t_fatal "apache2 did not start on n2"
tb_make_cert new 90 || t_fatal "tb_make_cert"
tb_make_cert newer 90 || t_fatal "tb_make_cert"
tb_make_cert newest 90 || t_fatal "tb_make_cert"
PB=$TB/pb.json
svc_recipe_playbook "$RECIPE" "$PB" || t_fatal "cannot adapt $RECIPE"

# The recipe's files on node I hold certificate directory C.
assert_apache_files() {
	local i=$1 c=$2
	assert_bytes "$i" /etc/apache2/tls/cert.pem "$c/cert.pem"
	assert_bytes "$i" /etc/apache2/tls/chain.pem "$c/chain.pem"
	assert_bytes "$i" /etc/apache2/tls/privkey.pem "$c/privkey.pem"
	assert_mode "$i" /etc/apache2/tls/cert.pem 0644
	assert_mode "$i" /etc/apache2/tls/chain.pem 0644
	assert_mode "$i" /etc/apache2/tls/privkey.pem 0640
	assert_eq "$(tb_file_owner "$i" /etc/apache2/tls/privkey.pem)" root:ssl-cert \
	    "n$i: privkey.pem is root:ssl-cert"
}
graceful_count() { grep -c 'SIGUSR1 received.  Doing graceful restart' \
    "$(tb_dir "$1")/logs/apache2/error.log"; }

P1=$(svc_apache_pid 1)
P2=$(svc_apache_pid 2)
[ -n "$P1" ] && [ -n "$P2" ] || t_fatal "no apache pid files"

t_step "deploy with the shipped recipe"
cf_run 0 --json -p "$PB" deploy --cert "$TB/certs/new/fullchain.pem" \
    --key "$TB/certs/new/privkey.pem"
assert_nodes "$T_OUT" outcome deployed n1 n2
for i in 1 2; do
	assert_served "$i" "$(tb_cert_sha256 "$TB/certs/new/cert.pem")" "n$i: apache serves new"
	assert_apache_files "$i" "$TB/certs/new"
	assert_eq "$(graceful_count "$i")" 1 "n$i: apache did one graceful restart"
done
assert_eq "$(svc_apache_pid 1)" "$P1" "n1: same apache parent (graceful, not restarted)"
assert_eq "$(svc_apache_pid 2)" "$P2" "n2: same apache parent (graceful, not restarted)"
# the chain the recipe deploys is served after the leaf
chain=$(timeout 5 openssl s_client -connect "$(tb_ip 1):443" -servername "$TB_SNI" \
    -showcerts </dev/null 2>/dev/null | grep -c 'BEGIN CERTIFICATE')
assert_eq "$chain" 2 "n1 sends leaf + intermediate"

t_step "n2's apache config broken by hand: configtest fails there only"
svc_break 2 apache2
cf_run 2 --json -p "$PB" deploy --cert "$TB/certs/newer/fullchain.pem" \
    --key "$TB/certs/newer/privkey.pem"
J=$T_OUT
assert_node "$J" n1 outcome deployed
assert_node "$J" n2 outcome failed
assert_node "$J" n2 reason check-failed
assert_node "$J" n2 quarantined true
assert_match "$(node_get "$J" n2 error)" "CertfleetTestBrokenDirective" \
    "n2's error quotes apache's complaint"
assert_served 1 "$(tb_cert_sha256 "$TB/certs/newer/cert.pem")" "n1: apache serves newer"
assert_apache_files 1 "$TB/certs/newer"
assert_served 2 "$(tb_cert_sha256 "$TB/certs/new/cert.pem")" "n2: apache still serves new"
assert_apache_files 2 "$TB/certs/new"
assert_eq "$(graceful_count 2)" 1 "n2: not reloaded again"
assert_eq "$(svc_apache_pid 2)" "$P2" "n2: apache still running"
t_status
assert_node "$T_STATUS" n2 quarantined true

t_step "n1's vhost loses SSLCertificateChainFile (leaf only): verify-chain, rolled back"
sed -i '/SSLCertificateChainFile/d' "$(tb_dir 1)/apache2/sites-enabled/certfleet-test.conf"
# exit 1: the only node is the canary, and a canary failing verify stops
# the rollout
cf_run 1 --json -p "$PB" deploy --only n1 --cert "$TB/certs/newest/fullchain.pem" \
    --key "$TB/certs/newest/privkey.pem"
J=$T_OUT
assert_node "$J" n1 outcome failed
assert_node "$J" n1 reason verify-chain
assert_node "$J" n1 error "n1:443 (SNI $TB_SNI) sends the leaf without intermediate 'certfleet test intermediate CA'"
assert_node "$J" n1 rolled_back true
assert_node "$J" n1 quarantined true
assert_apache_files 1 "$TB/certs/newer"
t_wait_serves 1 "$(tb_cert_sha256 "$TB/certs/newer/cert.pem")" 10 "n1: apache serves newer again"

t_done
