#!/bin/bash
# Verify proves what clients see, on real nginx nodes:
#   n2 serves the leaf without its intermediate (ssl_certificate points at
#      the leaf-only file)                         -> verify-chain
#   n3 has a second server block for www.node.test still on last year's
#      files                                        -> verify-name
#   n4 sends a stale extra certificate after the intermediate -> verify-chain
# each rolled back and quarantined with a message naming node:port, SNI and
# what is wrong, while n1 and n5 are deployed.  Then a misconfiguration
# made by hand on the live fleet (n5 switched to the leaf-only file) is
# caught by `verify` and by `check` (CRITICAL naming n5:443 and the SNI),
# and a chain from a CA that verify.ca_bundle does not trust -> verify-trust.
# --metrics carries each endpoint x SNI result (certfleet_node_endpoint_ok),
# stored by deploy: 0 with the reason where it failed, 1 where it passed,
# absent where a rolled-back node's passing pair was undone; n5 fixed:
# verify's file says 1, and the next deploy stores it.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 5
tb_make_cert new 90 || t_fatal "tb_make_cert"
mkdir -p "$TB/otherca"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$TB/otherca/root.key" -out "$TB/otherca/root.pem" -days 30 \
    -subj "/CN=some other root" 2>/dev/null || t_fatal "other CA"
NEW=$TB/certs/new
OLD=$TB/certs/old
OLD_SHA=$(tb_cert_sha256 "$OLD/cert.pem")
NEW_SHA=$(tb_cert_sha256 "$NEW/cert.pem")
PB=$TB/pb.json

# node I's main server block takes its certificate from FILE
use_cert_file() {
	sed -i "s|ssl_certificate /srv/tls/[a-z.]*;|ssl_certificate $2;|" "$(tb_dir "$1")/nginx.conf"
}
reload_nginx() { tb_exec "$1" nginx -s reload -c /srv/nginx.conf; }

t_step "set up: n2 leaf-only, n3 www. on last year's files, n4 a stale extra"
for i in 2 5; do cp "$OLD/cert.pem" "$(tb_dir "$i")/tls/cert.pem"; done
use_cert_file 2 /srv/tls/cert.pem
mkdir -p "$(tb_dir 3)/lastyear"
cp "$OLD/fullchain.pem" "$OLD/privkey.pem" "$(tb_dir 3)/lastyear/"
# the main block stays the default server (extra.conf is included first)
sed -i "s|listen $(tb_ip 3):443 ssl;|listen $(tb_ip 3):443 ssl default_server;|" "$(tb_dir 3)/nginx.conf"
cat >"$(tb_dir 3)/extra.conf" <<EOF
server {
    listen $(tb_ip 3):443 ssl;
    server_name www.node.test;
    ssl_certificate /srv/lastyear/fullchain.pem;
    ssl_certificate_key /srv/lastyear/privkey.pem;
}
EOF
# n4's check and reload build the served file from the deployed one plus
# a stale intermediate (a leftover of a hand-made hook)
cp "$TB/otherca/root.pem" "$(tb_dir 4)/stale.pem"
for i in 1 2 3 4 5; do
	printf '#!/bin/sh\nexec nginx -t -q -c /srv/nginx.conf\n' >"$(tb_dir "$i")/check.sh"
done
build='cat /srv/tls/fullchain.pem /srv/stale.pem >/srv/tls/served.pem'
printf '#!/bin/sh\n%s && exec nginx -t -q -c /srv/nginx.conf\n' "$build" >"$(tb_dir 4)/check.sh"
printf '#!/bin/sh\n%s && exec nginx -s reload -c /srv/nginx.conf\n' "$build" >"$(tb_dir 4)/reload.sh"
tb_exec 4 sh -c "$build" || t_fatal "n4 served.pem"
use_cert_file 4 /srv/tls/served.pem
for i in 2 3 4; do reload_nginx "$i" || t_fatal "n$i reload"; done
# the leaf-only file is deployed too (content "cert"), as a recipe for a
# daemon that takes leaf and chain separately would; every node reloads
# through /srv/check.sh and /srv/reload.sh (n4's build its served file)
tb_playbook "$PB" canary=0 verify_timeout=4 deploy.reload=/srv/reload.sh \
    "deploy.check=sh /srv/check.sh" \
    'deploy.files=[{"path":"/srv/tls/fullchain.pem","content":"fullchain"},
                   {"path":"/srv/tls/cert.pem","content":"cert"},
                   {"path":"/srv/tls/privkey.pem","content":"privkey","mode":"0600"}]'
t_wait_serves 2 "$OLD_SHA" 10 "n2 serves the old leaf (alone)"

t_step "deploy: n1, n5 deployed; n2, n3, n4 rolled back and quarantined"
M=$T_TMP/web.prom
cf_run 2 --json --metrics "$M" -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
assert_nodes "$J" outcome deployed n1 n5
assert_node "$J" n2 reason verify-chain
assert_node "$J" n2 error "n2:443 (SNI node.test) sends the leaf without intermediate 'certfleet test intermediate CA'"
assert_node "$J" n3 reason verify-name
assert_match "$(node_get "$J" n3 error)" "^n3:443 \\(SNI www\\.node\\.test\\) serves ${OLD_SHA:0:16}… \\(expires [^)]*\\), not the new certificate ${NEW_SHA:0:16}…$" \
    "n3's error names the SNI and the old certificate"
assert_node "$J" n4 reason verify-chain
assert_node "$J" n4 error "n4:443 (SNI node.test) sends a stale extra certificate 'some other root'"
for i in 2 3 4; do
	assert_node "$J" "n$i" outcome failed
	assert_node "$J" "n$i" rolled_back true
	assert_node "$J" "n$i" quarantined true
	assert_served "$i" "$OLD_SHA" "n$i serves the old certificate again"
done
assert_served 1 "$NEW_SHA"
assert_served 5 "$NEW_SHA"
t_status
assert_node "$T_STATUS" n2 reason verify-chain
assert_node "$T_STATUS" n3 reason verify-name

t_step "--metrics: each endpoint and SNI name, as the deploy checked them"
promtool_ok() { command -v promtool >/dev/null || return 0; assert_exit 0 promtool check metrics <"$1"; }
promtool_ok "$M"
# ep_ok NODE SNI: the sample's "reason value", "" when there is none
ep_ok() {
	sed -n "s/^certfleet_node_endpoint_ok{certificate=\"web\",node=\"$1\",port=\"443\",starttls=\"none\",sni=\"$2\",reason=\"\([a-z-]*\)\"} \([01]\)\$/\1 \2/p" "$3"
}
for i in 1 5; do
	assert_eq "$(ep_ok "n$i" node.test "$M")" " 1" "n$i:443 node.test ok"
	assert_eq "$(ep_ok "n$i" www.node.test "$M")" " 1" "n$i:443 www.node.test ok"
done
assert_eq "$(ep_ok n3 www.node.test "$M")" "verify-name 0" "n3:443 www.node.test: 0, verify-name"
assert_eq "$(ep_ok n3 node.test "$M")" "" "n3:443 node.test: passed, then undone by the rollback: absent"
assert_eq "$(ep_ok n2 node.test "$M")" "verify-chain 0" "n2:443 node.test: 0, verify-chain"
assert_eq "$(ep_ok n4 node.test "$M")" "verify-chain 0" "n4:443 node.test: 0, verify-chain"
assert_eq "$(grep -c '^certfleet_node_endpoint_ok{' "$M")" 7 "7 pairs known (n1, n5: 2; n2, n3, n4: 1)"
assert_json "$TB/state/web/nodes.json" \
    '[(e["port"], e["starttls"], e["sni"], e["ok"], e["reason"]) for e in d["nodes"]["n3"]["endpoints"]]' \
    '[[443, "none", "www.node.test", false, "verify-name"]]'

t_step "a misconfiguration by hand on the live fleet: n5 switched to the leaf-only file"
use_cert_file 5 /srv/tls/cert.pem
reload_nginx 5 || t_fatal "n5 reload"
P2=$TB/pb-live.json
tb_playbook "$P2" nodes=1,5
verify_fails() { ! cf -p "$P2" verify >/dev/null 2>&1; }
t_wait_for 10 verify_fails || t_notok "verify never saw n5's change"
cf_run 2 --json -p "$P2" verify
assert_node "$T_OUT" n1 outcome verified
assert_node "$T_OUT" n5 outcome failed
assert_node "$T_OUT" n5 reason verify-chain
assert_node "$T_OUT" n5 error "n5:443 (SNI node.test) sends the leaf without intermediate 'certfleet test intermediate CA'"
# --json carries every endpoint and SNI verify looked at
ep() { json_get "$T_OUT" "[(e['port'], e['starttls'], e['sni'], e['ok'], e['reason']) for n in d['nodes'] if n['name'] == '$1' for e in n['endpoints']]"; }
assert_eq "$(ep n1)" "[[443, \"none\", \"node.test\", true, null], [443, \"none\", \"www.node.test\", true, null]]" \
    "n1: both names verified on 443"
assert_eq "$(ep n5)" "[[443, \"none\", \"node.test\", false, \"verify-chain\"], [443, \"none\", \"www.node.test\", false, \"verify-chain\"]]" \
    "n5: both names fail verify-chain on 443"
cf_run 2 -p "$P2" check
assert_file_match "$T_OUT" "^CERTFLEET CRITICAL - web: .*1 misconfigured \\(n5:443 \\(SNI node\\.test\\) sends the leaf without intermediate 'certfleet test intermediate CA'\\)" \
    "check: CRITICAL naming n5:443 and the SNI"

t_step "deploy of the same certificate: n5's live misconfiguration fails there too"
snap5=$(tb_exec 5 stat -c '%i %Y %n' /srv/tls/fullchain.pem /srv/tls/privkey.pem /srv/tls/cert.pem 2>/dev/null)
cf_run 2 --json -p "$P2" deploy
assert_node "$T_OUT" n1 outcome unchanged
assert_node "$T_OUT" n5 outcome failed
assert_node "$T_OUT" n5 reason verify-chain
assert_node "$T_OUT" n5 touched false "n5: nothing written (its files are right)"
assert_node "$T_OUT" n5 rolled_back false "n5: nothing to roll back"
assert_node "$T_OUT" n5 quarantined true
assert_eq "$(tb_exec 5 stat -c '%i %Y %n' /srv/tls/fullchain.pem /srv/tls/privkey.pem /srv/tls/cert.pem 2>/dev/null)" \
    "$snap5" "n5: files untouched"

t_step "n5 fixed: verify's metrics say 1; status shows the stored 0 until a deploy stores 1"
M2=$T_TMP/live.prom
cf_run 0 --metrics "$M2" -p "$P2" status
assert_eq "$(ep_ok n5 node.test "$M2")" "verify-chain 0" "n5: the deploy stored 0, verify-chain"
use_cert_file 5 /srv/tls/fullchain.pem
reload_nginx 5 || t_fatal "n5 reload"
verify_ok() { cf -p "$P2" verify >/dev/null 2>&1; }
t_wait_for 10 verify_ok || t_notok "verify never saw n5 fixed"
cf_run 0 --metrics "$M2" -p "$P2" verify
promtool_ok "$M2"
assert_eq "$(ep_ok n5 node.test "$M2")" " 1" "verify: n5:443 node.test 1"
assert_eq "$(ep_ok n5 www.node.test "$M2")" " 1" "verify: n5:443 www.node.test 1"
assert_json "$TB/state/web/nodes.json" '[e["ok"] for e in d["nodes"]["n5"]["endpoints"]]' '[false, false]' \
    "verify stored nothing"
cf_run 0 --metrics "$M2" -p "$P2" status
assert_eq "$(ep_ok n5 node.test "$M2")" "verify-chain 0" "status: the stored result again (documented)"
cf_run 0 -p "$P2" deploy
cf_run 0 --metrics "$M2" -p "$P2" status
assert_eq "$(ep_ok n5 node.test "$M2")" " 1" "after the deploy: n5:443 node.test 1"
assert_eq "$(ep_ok n5 www.node.test "$M2")" " 1" "after the deploy: n5:443 www.node.test 1"
assert_eq "$(grep -c '^certfleet_node_endpoint_ok{.*} 0$' "$M2")" 0 "no pair of n1, n5 fails"

t_step "a chain verify.ca_bundle does not trust -> verify-trust"
P3=$TB/pb-trust.json
tb_playbook "$P3" nodes=1 verify.ca_bundle="$TB/otherca/root.pem"
cf_run 2 --json -p "$P3" verify
assert_node "$T_OUT" n1 reason verify-trust
assert_node "$T_OUT" n1 error "n1:443 (SNI node.test): chain ends at 'certfleet test root CA', which is not a trusted root (verify.ca_bundle $TB/otherca/root.pem)"

t_done
