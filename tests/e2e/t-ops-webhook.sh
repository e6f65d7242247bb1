#!/bin/bash
# notify.webhooks against a real HTTP endpoint (tests/lib/webhook_receiver.py
# on 127.0.0.1): a deploy with one blackholed node POSTs one
# node_quarantined event (application/json, "text" naming the node and
# why); the next run with the same cause does not repeat it; release and
# expiry warnings arrive too; a receiver answering 500 is tried 3 times
# and changes nothing in certfleet's exit code; the webhook URL's path (a
# secret in Slack-style URLs) is never printed.
. "$(dirname "$0")/../lib/common.sh"
t_start

RX=$T_TMP/rx
WPID=""
rx_stop() { [ -n "$WPID" ] && kill "$WPID" 2>/dev/null && wait "$WPID" 2>/dev/null; WPID=""; }
trap 'rx_stop; t_cleanup' EXIT
"$TB_PY" "$T_ROOT/tests/lib/webhook_receiver.py" --out "$RX" \
    --port-file "$T_TMP/rx.port" 2>"$T_TMP/rx.log" &
WPID=$!
for _ in $(seq 50); do [ -s "$T_TMP/rx.port" ] && break; sleep 0.1; done
PORT=$(cat "$T_TMP/rx.port" 2>/dev/null) || t_fatal "webhook receiver did not start"
SECRET=T0KEN-s3cr3t
URL=http://127.0.0.1:$PORT/hooks/$SECRET
# events: every line of $RX is one JSON document
ev_count() { grep -c "\"event\":\"$1\"" "$RX" 2>/dev/null || true; }
ev_field() { # ev_field N FIELD: FIELD of the N-th (1-based) line
	"$TB_PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[int(sys.argv[2])-1])[sys.argv[3]])' "$RX" "$1" "$2"
}

N=3
tb_up $N
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
PB=$TB/pb.json
tb_playbook "$PB" "notify.webhooks=[\"$URL\"]"
IP2=$(tb_ip 2)

t_step "deploy, n2 blackholed: exit 2, one node_quarantined event"
tb_blackhole 2
cf_run 2 -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
assert_eq "$(wc -l <"$RX" 2>/dev/null)" 1 "one POST"
assert_eq "$(ev_count node_quarantined)" 1 "it is a node_quarantined event"
assert_eq "$(ev_field 1 node)" n2 "event.node"
assert_eq "$(ev_field 1 host)" "$IP2" "event.host"
assert_eq "$(ev_field 1 reason)" timeout "event.reason"
assert_eq "$(ev_field 1 certificate)" web "event.certificate"
assert_eq "$(ev_field 1 count)" 1 "event.count (attempt)"
assert_eq "$(ev_field 1 format)" 1 "event.format"
TEXT=$(ev_field 1 text)
t_log "    text: $TEXT"
assert_match "$TEXT" "^certfleet web: node n2 \\($IP2\\) quarantined: timeout: .+ \\(attempt 1\\)\$" \
    "text: one human line naming node, address, reason"
assert_file_match "$RX.requests" "^POST /hooks/$SECRET application/json 200\$" "POST, Content-Type application/json"
assert_eq "$(grep -c 'PRIVATE KEY' "$RX")" 0 "no key material in any event"

t_step "same cause again: no repeated alert"
cf_run 2 -p "$PB" deploy
assert_eq "$(ev_count node_quarantined)" 1 "still one node_quarantined event"

t_step "receiver answers 500: 3 tries, exit code unchanged, URL path not printed"
echo 500 >"$RX.status"
tb_unblackhole 2
cf_run 0 -p "$PB" deploy
assert_eq "$(ev_count node_released)" 3 "node_released POSTed 3 times (retries on 5xx)"
assert_eq "$(grep -c ' 500$' "$RX.requests")" 3 "three 500 answers"
assert_file_match "$T_ERR" "notify: webhook http://127\\.0\\.0\\.1:$PORT/…: node_released event not delivered: HTTP 500 after 3 tries" \
    "the failure is reported on stderr"
if grep -q "$SECRET" "$T_ERR" "$T_OUT"; then
	t_notok "the webhook URL's secret path is never printed" "$(grep "$SECRET" "$T_ERR")"
else
	t_ok "the webhook URL's secret path is never printed"
fi
REL=$(grep -m1 '"event":"node_released"' "$RX")
assert_match "$REL" '"text":"certfleet web: node n2 \([0-9.]+\) released from quarantine \(was timeout\): serves the current certificate"' \
    "node_released text"
rm -f "$RX.status"

t_step "expiry warnings (notify.warn_days 100 > 90 days left): one per node"
tb_playbook "$PB" "notify.webhooks=[\"$URL\"]" notify.warn_days=100
: >"$RX"
cf_run 0 -p "$PB" deploy
assert_eq "$(ev_count expiry_warning)" 3 "three expiry_warning events"
assert_eq "$(wc -l <"$RX")" 3 "and nothing else"
W=$(grep -m1 '"node":"n1"' "$RX")
assert_match "$W" '"text":"certfleet web: node n1 serves a certificate expiring in (89\.[0-9]|90\.0) days \([0-9]{4}-[0-9]{2}-[0-9]{2}\)"' \
    "expiry text: days and date"
assert_match "$W" '"not_after":"[0-9T:-]+Z","not_after_epoch":[0-9]+' "not_after as ISO time and epoch"

t_step "a dead webhook (nothing listening): bounded, exit code unchanged"
rx_stop
cf_run 0 -p "$PB" deploy
assert_le "$T_SECS" 6 "three refused tries cost little (0.5 s + 1 s backoff)"
assert_file_match "$T_ERR" "webhook http://127\\.0\\.0\\.1:$PORT/…: expiry_warning event not delivered: .*(refused|connect).*not trying it again this run" \
    "reported once, then the webhook is given up for the run"
assert_eq "$(grep -c 'not delivered' "$T_ERR")" 1 "one message for three events"
t_done
