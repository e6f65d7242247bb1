#!/bin/bash
# hooks/certbot-deploy-hook with a real certbot against Pebble: certbot
# obtains the certificate (http-01, standalone on the coordinator's
# 127.0.0.1:80), runs the hook, and every test-bed node ends up serving
# certbot's certificate.  `certbot renew --force-renewal` runs the hook
# again (certbot saved it in the lineage's renewal config) and the nodes
# serve the new one.  A renewal while a node is blackholed: the hook exits
# 2, the store already has the certificate, and the next `certfleet
# deploy` (the timer's run) converges that node.  Plus the hook's own
# error paths.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
t_start
acme_start
command -v certbot >/dev/null || t_skip "certbot not installed"
HOOK=$T_ROOT/hooks/certbot-deploy-hook

t_step "the hook's own errors (no certbot needed)"
assert_exit 64 env -u RENEWED_LINEAGE sh "$HOOK"
assert_file_match "$T_ERR" 'RENEWED_LINEAGE is not set' "no lineage: says so, exit 64"
mkdir -p "$T_TMP/live/nosuch.test"
assert_exit 78 env RENEWED_LINEAGE="$T_TMP/live/nosuch.test" CERTFLEET_PLAYBOOK= sh "$HOOK"
assert_file_match "$T_ERR" '/etc/certfleet/playbooks/nosuch\.test\.json is not readable' \
    "default playbook path from the lineage name"

N=3
tb_up $N
# certbot's standalone server answers http-01 on 127.0.0.1:80, where
# Pebble looks when every name resolves to 127.0.0.1
PEBBLE_DEFAULT_IP=127.0.0.1
acme_up || t_fatal "pebble did not start"
if ss -Htln 'sport = :80' | grep -q .; then
	t_skip "port 80 is in use on this machine (certbot --standalone needs it)"
fi
PB=$TB/pb.json
tb_playbook "$PB"      # domains node.test www.node.test, SNI node.test
LE=$T_TMP/le
mkdir -p "$LE"
export REQUESTS_CA_BUNDLE=$PEBBLE_CA_BUNDLE
export CERTFLEET_PLAYBOOK=$PB CERTFLEET_STATE_DIR=$TB/state CERTFLEET_BIN=$CERTFLEET
export CERTFLEET_METRICS=$T_TMP/certfleet-web.prom
certbot_run() {
	certbot --non-interactive --config-dir "$LE/config" --work-dir "$LE/work" \
	    --logs-dir "$LE/logs" --server "$PEBBLE_DIRECTORY" "$@"
}
# renew sleeps up to 8 minutes when not on a TTY, unless told not to
certbot_renew() {
	certbot_run renew --no-random-sleep-on-renew --force-renewal
}
LIVE=$LE/config/live/node.test
served_all() { # served_all SHA WHAT
	for i in $(seq 1 $N); do assert_served "$i" "$1" "n$i serves $2"; done
}

t_step "certbot certonly --standalone --deploy-hook: every node serves certbot's certificate"
assert_exit 0 certbot_run certonly --standalone --http-01-address 127.0.0.1 \
    --http-01-port 80 --agree-tos --register-unsafely-without-email \
    -d node.test -d www.node.test --deploy-hook "$HOOK"
[ "$T_RC" -eq 0 ] || tail -n 30 "$LE/logs/letsencrypt.log"
assert_file_match "$T_ERR" 'certfleet-deploy-hook: done: every node serves the new certificate' \
    "the hook ran and reported success through certbot"
[ -f "$LIVE/cert.pem" ] || t_fatal "certbot made no lineage at $LIVE"
SHA1=$(tb_cert_sha256 "$LIVE/cert.pem")
served_all "$SHA1" "certbot's first certificate"
t_status
assert_json "$T_STATUS" 'd["certificate"]["sha256"]' "$SHA1" "it is certfleet's current certificate"
assert_file_match "$T_TMP/certfleet-web.prom" '^certfleet_run_exit_code\{certificate="web",command="deploy"\} 0$' \
    "CERTFLEET_METRICS reached certfleet"
for i in $(seq 1 $N); do
	assert_mode "$i" /srv/tls/privkey.pem 0600
	assert_bytes "$i" /srv/tls/privkey.pem "$LIVE/privkey.pem"
done

t_step "certbot renew --force-renewal: the saved hook deploys the new certificate"
assert_exit 0 certbot_renew
SHA2=$(tb_cert_sha256 "$LIVE/cert.pem")
assert_ne "$SHA2" "$SHA1" "certbot made a new certificate"
served_all "$SHA2" "the renewed certificate"

t_step "renewal with n2 blackholed: hook exits 2, the next certfleet run converges n2"
tb_blackhole 2
certbot_renew >"$T_TMP/renew3.out" 2>"$T_TMP/renew3.err"
sed 's/^/    | /' "$T_TMP/renew3.err"
SHA3=$(tb_cert_sha256 "$LIVE/cert.pem")
assert_ne "$SHA3" "$SHA2" "certbot made a third certificate"
assert_file_match "$T_TMP/renew3.err" 'partial \(exit 2\)' "the hook reported the partial deploy"
assert_served 1 "$SHA3" "n1 serves it"
assert_served 3 "$SHA3" "n3 serves it"
t_status
assert_json "$T_STATUS" 'd["certificate"]["sha256"]' "$SHA3" "the store has it even so"
assert_node "$T_STATUS" n2 reason timeout "n2 quarantined (timeout)"
tb_unblackhole 2
cf_run 0 -p "$PB" deploy
served_all "$SHA3" "the third certificate after the next run"
t_done
