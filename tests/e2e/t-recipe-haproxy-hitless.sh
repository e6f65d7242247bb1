#!/bin/bash
# playbooks/haproxy-hitless.json, as shipped, on real haproxy 2.6 in
# master-worker mode on two nodes whose runtime API listens on their
# loopback only (stats socket ipv4@127.0.0.1:9999 level admin; no socat on
# the nodes: certfleet reaches it through its SSH session, direct-tcpip).
#  1. deploy: both nodes serve the new certificate with no reload (same
#     master, same worker pids), a TLS connection opened before the deploy
#     still answers on the same connection after it, the file on disk has
#     the new bytes, and a restart of haproxy serves the same certificate.
#  2. node 2's API unreachable (its loopback port rejected): the push
#     fails before any commit -> reload-failed, file restored, still the
#     old certificate, quarantined; node 1 takes the new one.
#  3. node 2's TLS port rejected from outside after the push: verify
#     fails after the commit -> the restored file is pushed back through
#     the API, so haproxy (same pids) serves the previous certificate.
#  4. HAProxy refusing the push (a file its config does not load): its
#     answer quoted, reload-failed, no transaction left open.
#  5. `certfleet rollback` in this mode: through the API, no reload.
# Before all that, bad deploy.haproxy_api values: exit 78.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/services.sh"
t_start

RECIPE=$T_ROOT/playbooks/haproxy-hitless.json
# shellcheck disable=SC2034 # read by tb_up and tb_make_cert
TB_DOMAINS=$(svc_recipe_get "$RECIPE" 'd["certificate"]["domains"]')
TB_SNI=$(svc_recipe_get "$RECIPE" 'd["verify"]["server_name"]')
API=$(svc_recipe_get "$RECIPE" 'd["deploy"]["haproxy_api"]["port"]')
F=$(svc_recipe_get "$RECIPE" 'd["deploy"]["haproxy_api"]["cert"]')
tb_up 2
svc_haproxy_start 1 old "$API" || t_fatal "haproxy did not start on n1"
svc_haproxy_start 2 old "$API" || t_fatal "haproxy did not start on n2"
for c in new newer newest; do tb_make_cert "$c" 90 || t_fatal "tb_make_cert $c"; done
PB=$TB/pb.json
svc_recipe_playbook "$RECIPE" "$PB" || t_fatal "cannot adapt $RECIPE"
sha() { tb_cert_sha256 "$TB/certs/$1/cert.pem"; }
serial() { openssl x509 -in "$TB/certs/$1/cert.pem" -noout -serial | cut -d= -f2; }

# node I's combined file holds certificate C (full chain, key)
assert_haproxy_file() {
	cat "$TB/certs/$2/fullchain.pem" "$TB/certs/$2/privkey.pem" >"$T_TMP/combined.pem"
	assert_bytes "$1" "$F" "$T_TMP/combined.pem"
	assert_mode "$1" "$F" 0600
}
# the serial haproxy holds in memory for F, from its own API
api_serial() { svc_haproxy_api "$1" "$API" "show ssl cert $F" | sed -n 's/^Serial: //p'; }
# master and workers of node I, one line
pids() { printf '%s:' "$(svc_haproxy_pid "$1")"; svc_haproxy_workers "$1" | sort | tr '\n' ' '; }

# A long-lived client: TLS to node I, one request, then it waits for
# $T_TMP/go.I and sends a second request on the same connection.  Prints
# the leaf's sha256 it got in its handshake and both answers.
long_client() {
	"$TB_PY" - "$(tb_ip "$1")" "$TB_SNI" "$T_TMP/go.$1" <<'PY'
import hashlib, os, socket, ssl, sys, time
host, sni, go = sys.argv[1:4]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection((host, 443), timeout=10),
                    server_hostname=sni)
print("leaf", hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest(), flush=True)
def ask():
    s.sendall(b"GET / HTTP/1.1\r\nHost: " + sni.encode() + b"\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            return "closed"
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    n = int([l.split(b":")[1] for l in head.split(b"\r\n")
             if l.lower().startswith(b"content-length:")][0])
    while len(body) < n:
        d = s.recv(4096)
        if not d:
            return "closed"
        body += d
    return head.split(b"\r\n")[0].decode() + " " + body.decode()
print("first", ask(), flush=True)
end = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < end:
    time.sleep(0.05)
print("second", ask(), flush=True)
PY
}
client_said() { grep -c "^$2" "$T_TMP/client.$1" 2>/dev/null; }

t_step "bad deploy.haproxy_api: validate exits 78 naming file, line and key"
# bad NAME PYTHON REGEX: the adapted recipe changed by PYTHON (on pb)
bad() {
	"$TB_PY" - "$PB" "$T_TMP/$1.json" "$2" <<'PY'
import json, sys
pb = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(pb, open(sys.argv[2], "w"), indent=2)
PY
	cf_run 78 -p "$T_TMP/$1.json" validate
	assert_match "$(cat "$T_ERR")" "^certfleet: .*/$1\.json:[0-9]+: $3" "$1: the message"
	assert_eq "$(wc -l <"$T_ERR")" 1 "$1: one line on stderr"
}
bad api-not-a-file 'pb["deploy"]["haproxy_api"]["cert"] = "/etc/haproxy/certs/other.pem"' \
    'deploy\.haproxy_api\.cert: /etc/haproxy/certs/other\.pem is not one of the deploy\.files paths'
bad api-not-combined 'pb["deploy"]["files"][0]["content"] = "fullchain"' \
    'deploy\.haproxy_api\.cert: deploy\.files\[0\] \(/etc/haproxy/certs/example\.com\.pem\) has content "fullchain".*must be "combined"'
bad api-and-reload 'pb["deploy"]["reload"] = "kill -USR2 $(cat /run/haproxy.pid)"' \
    'deploy\.haproxy_api: deploy\.reload is not run in this mode'
bad api-port-range 'pb["deploy"]["haproxy_api"]["port"] = 70000' \
    'deploy\.haproxy_api\.port: must be between 1 and 65535'
bad api-no-port 'del pb["deploy"]["haproxy_api"]["port"]' \
    'deploy\.haproxy_api\.port: missing required key'
bad api-typo 'pb["deploy"]["haproxy_api"]["crt"] = pb["deploy"]["haproxy_api"].pop("cert")' \
    'deploy\.haproxy_api\.crt: unknown key, did you mean cert\?'

P1=$(pids 1)
P2=$(pids 2)
[[ $P1 =~ ^[0-9]+:[0-9]+ ]] && [[ $P2 =~ ^[0-9]+:[0-9]+ ]] ||
    t_fatal "no haproxy master/worker pids: '$P1' '$P2'"

t_step "deploy through the runtime API, a client connected throughout"
for i in 1 2; do
	long_client "$i" >"$T_TMP/client.$i" 2>&1 &
	eval "C$i=\$!"
done
for i in 1 2; do
	t_wait_for 10 client_said "$i" first ||
	    t_fatal "n$i: the long-lived client did not connect: $(cat "$T_TMP/client.$i")"
done
cf_run 0 --json -p "$PB" deploy --cert "$TB/certs/new/fullchain.pem" \
    --key "$TB/certs/new/privkey.pem"
assert_nodes "$T_OUT" outcome deployed n1 n2
for i in 1 2; do
	assert_served "$i" "$(sha new)" "n$i: new connections get the new certificate"
	assert_haproxy_file "$i" new
	v=P$i
	assert_eq "$(pids "$i")" "${!v}" \
	    "n$i: same haproxy master and workers (not reloaded, not restarted)"
	assert_eq "$(api_serial "$i")" "$(serial new)" "n$i: haproxy holds the new serial"
	: >"$T_TMP/go.$i"
done
for i in 1 2; do
	eval "c=\$C$i"
	t_wait_for 15 sh -c "! kill -0 $c 2>/dev/null" || kill "$c" 2>/dev/null
	wait "$c"
	out=$(cat "$T_TMP/client.$i")
	assert_match "$out" "leaf $(sha old)" "n$i: the long-lived connection was made on the old certificate"
	assert_match "$out" "second HTTP/1.1 200 OK n$i" \
	    "n$i: it still answers on the same connection after the deploy"
done
if grep -rq 'PRIVATE KEY' "$T_OUT" "$T_ERR" "$TB/nodes/n1/logs" "$TB/nodes/n2/logs"; then
	t_notok "no private key in certfleet's output or the nodes' logs"
else
	t_ok "no private key in certfleet's output or the nodes' logs"
fi

t_step "a restart reads the file: serves the same certificate"
svc_haproxy_stop 1 || t_fatal "n1: haproxy does not stop"
svc_haproxy_run 1 || t_fatal "n1: haproxy does not start again"
assert_ne "$(svc_haproxy_pid 1)" "${P1%%:*}" "n1: a new haproxy master"
t_wait_serves 1 "$(sha new)" 10 "n1 serves the new certificate after a restart"
P1=$(pids 1)

t_step "n2's API unreachable: push fails before commit, n2 restored and quarantined"
tb_exec 2 iptables -I INPUT -i lo -p tcp --dport "$API" -j REJECT --reject-with tcp-reset ||
    t_fatal "iptables on n2"
# exit 2: n1 deployed, n2 failed; the recipe's max_failures (1) is spent by
# the last node, which stops nothing
cf_run 2 --json -p "$PB" deploy --cert "$TB/certs/newer/fullchain.pem" \
    --key "$TB/certs/newer/privkey.pem"
J=$T_OUT
assert_node "$J" n1 outcome deployed
assert_node "$J" n2 outcome failed
assert_node "$J" n2 reason reload-failed
assert_node "$J" n2 quarantined true
assert_node "$J" n2 rolled_back true
assert_match "$(node_get "$J" n2 error)" "haproxy runtime API: cannot reach 127.0.0.1:$API" \
    "n2's error names the API it could not reach"
assert_served 1 "$(sha newer)" "n1 serves newer"
assert_haproxy_file 1 newer
assert_eq "$(pids 1)" "$P1" "n1: same haproxy processes"
assert_served 2 "$(sha new)" "n2 still serves new"
assert_haproxy_file 2 new
assert_eq "$(pids 2)" "$P2" "n2: same haproxy processes"
tb_exec 2 iptables -D INPUT -i lo -p tcp --dport "$API" -j REJECT --reject-with tcp-reset
assert_eq "$(api_serial 2)" "$(serial new)" "n2: no transaction was committed"
assert_eq "$(svc_haproxy_api 2 "$API" "abort ssl cert $F")" "No ongoing transaction!" \
    "n2: no transaction left open"
cf_run 0 -p "$PB" quarantine release n2

t_step "n2 fails verify after the commit: the restored file is pushed back"
# new connections to n2's 443 from outside are refused; its API works
tb_exec 2 iptables -I INPUT -p tcp --dport 443 ! -i lo -j REJECT --reject-with tcp-reset ||
    t_fatal "iptables on n2"
cf_run 1 --json -p "$PB" deploy --cert "$TB/certs/newest/fullchain.pem" \
    --key "$TB/certs/newest/privkey.pem" --only n2
J=$T_OUT
assert_node "$J" n2 outcome failed
assert_node "$J" n2 reason verify-failed
assert_node "$J" n2 rolled_back true
assert_haproxy_file 2 new
assert_eq "$(api_serial 2)" "$(serial new)" "n2: haproxy holds the previous serial again"
assert_eq "$(pids 2)" "$P2" "n2: same haproxy processes"
tb_exec 2 iptables -D INPUT -p tcp --dport 443 ! -i lo -j REJECT --reject-with tcp-reset
assert_served 2 "$(sha new)" "n2 serves the previous certificate"

t_step "HAProxy refuses the push (a file its config does not load): its answer is quoted"
cf_run 0 -p "$PB" quarantine release n2
"$TB_PY" - "$PB" "$T_TMP/other.json" <<'PY'
import json, sys
pb = json.load(open(sys.argv[1]))
pb["deploy"]["files"][0]["path"] = "/etc/haproxy/certs/other.pem"
pb["deploy"]["haproxy_api"]["cert"] = "/etc/haproxy/certs/other.pem"
json.dump(pb, open(sys.argv[2], "w"), indent=2)
PY
cf_run 1 --json -p "$T_TMP/other.json" deploy --cert "$TB/certs/newest/fullchain.pem" \
    --key "$TB/certs/newest/privkey.pem" --only n2
J=$T_OUT
assert_node "$J" n2 outcome failed
assert_node "$J" n2 reason reload-failed
assert_eq "$(node_get "$J" n2 error)" "haproxy runtime API refused \`set ssl cert /etc/haproxy/certs/other.pem\`: Can't replace a certificate which is not referenced by the configuration! Can't update /etc/haproxy/certs/other.pem!" \
    "n2's error quotes HAProxy's answer"
assert_eq "$(svc_haproxy_api 2 "$API" "abort ssl cert /etc/haproxy/certs/other.pem")" \
    "No ongoing transaction!" "n2: no transaction left open"
assert_served 2 "$(sha new)" "n2 still serves new"
assert_eq "$(pids 2)" "$P2" "n2: same haproxy processes"

t_step "certfleet rollback on n1 goes through the runtime API too"
cf_run 0 --json -p "$PB" deploy --cert "$TB/certs/newest/fullchain.pem" \
    --key "$TB/certs/newest/privkey.pem" --only n1
assert_served 1 "$(sha newest)" "n1 serves newest"
cf_run 0 --json -p "$PB" rollback --only n1
assert_node "$T_OUT" n1 outcome deployed
assert_served 1 "$(sha newer)" "n1 serves the previous version (newer) again"
assert_haproxy_file 1 newer
assert_eq "$(api_serial 1)" "$(serial newer)" "n1: haproxy holds the previous serial"
assert_eq "$(pids 1)" "$P1" "n1: same haproxy processes"

t_done
