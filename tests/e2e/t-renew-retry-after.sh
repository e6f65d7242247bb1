#!/bin/bash
# A CA that answers every request with 429 and a hostile Retry-After
# (a small HTTPS server standing in for the CA; Pebble cannot be made to
# send these).  certfleet must neither overflow into a busy loop against
# the CA nor sleep past acme.timeout:
#  - 10^23 seconds (overflows a long) and an HTTP-date in 2415: one
#    request, then exit 1 at once saying the CA asks for more than the
#    deadline allows;
#  - "-5" (invalid: ignored): exponential backoff from 1 s, a handful of
#    requests, done within acme.timeout;
#  - "0": at least 1 s between requests, at most 5 requests.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 1
CA=$T_TMP/fakeca
mkdir -p "$CA"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$CA/key.pem" -out "$CA/cert.pem" -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 || t_fatal "openssl"
cat >"$CA/ca.py" <<'EOF'
import http.server, ssl, sys, os
mode_file, log_file, cert, key = sys.argv[1:5]
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        with open(log_file, "a") as f:
            f.write("%s %s\n" % (self.command, self.path))
        ra = open(mode_file).read().strip()
        body = b'{"type":"urn:ietf:params:acme:error:rateLimited","detail":"slow down"}'
        self.send_response(429)
        self.send_header("Retry-After", ra)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_HEAD = answer
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
echo 0 >"$CA/mode"
: >"$CA/log"
python3 "$CA/ca.py" "$CA/mode" "$CA/log" "$CA/cert.pem" "$CA/key.pem" >"$CA/port" 2>"$CA/err" &
CAPID=$!
ca_cleanup() {
	local rc=$?
	kill "$CAPID" 2>/dev/null
	(exit $rc)
	t_cleanup
}
trap ca_cleanup EXIT
for _ in $(seq 50); do [ -s "$CA/port" ] && break; sleep 0.1; done
PORT=$(cat "$CA/port")
[ -n "$PORT" ] || t_fatal "fake CA did not start: $(cat "$CA/err")"
PB=$TB/pb.json
TB_DOMAINS=a.node.test tb_playbook "$PB" acme.directory="https://127.0.0.1:$PORT/dir" \
    acme.ca_bundle="$CA/cert.pem" acme.challenge=dns-01 \
    acme.dns_hook=/bin/true acme.timeout=6

try() {
	echo "$1" >"$CA/mode"
	: >"$CA/log"
	cf_run 1 -p "$PB" renew --no-deploy
	REQS=$(grep -c . "$CA/log")
	t_log "    Retry-After: $1 -> $REQS requests in ${T_SECS}s"
}

t_step "Retry-After: 10^23 s (overflows a long): one request, fails at once"
try 100000000000000000000000
assert_eq "$REQS" 1 "one request"
assert_le "$T_SECS" 2 "fails at once"
assert_file_match "$T_ERR" 'renew FAILED.*the CA asks to retry after more than 86400 s, past the deadline \(acme\.timeout\)' \
    "says why"
assert_file_match "$T_ERR" 'rateLimited' "names the CA's problem"

t_step "Retry-After: an HTTP-date in 2415: one request, fails at once"
try "Wed, 21 Oct 2415 07:28:00 GMT"
assert_eq "$REQS" 1 "one request"
assert_le "$T_SECS" 2 "fails at once"

t_step "Retry-After: -5 (invalid, ignored): backoff, within acme.timeout"
try -5
assert_le "$REQS" 4 "a handful of requests (1 s, 2 s, 4 s apart)"
assert_le 2 "$REQS" "retried at least once"
assert_le "$T_SECS" 8 "within acme.timeout (6 s) + 2"

t_step "Retry-After: 0: never sooner than 1 s, at most 5 requests"
try 0
assert_le "$REQS" 5 "at most 5 requests"
assert_le 4 "$T_SECS" "at least 1 s between them"
assert_le "$T_SECS" 8 "within acme.timeout (6 s) + 2"

R=$TB/state/web/renewal.json
assert_json "$R" 'd["consecutive_failures"]' 4 "every attempt counted"
t_done
