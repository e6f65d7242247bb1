#!/bin/bash
# The incident certfleet exists for, replayed: 10 nodes, one unreachable,
# the certificate near renewal.  The timer's run (`renew --metrics ...`, as
# hooks/systemd/certfleet-renew@.service runs it) renews at the CA anyway,
# 9 nodes serve the new certificate, the dead node is quarantined and that
# shows in `status`, in the metrics file and in a webhook on the FIRST
# failed attempt (not weeks later).  The node comes back and the next timer
# run converges it without a human: exit 0, released, a release event.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
t_start

RX=$T_TMP/rx
WPID=""
rx_stop() { [ -n "$WPID" ] && kill "$WPID" 2>/dev/null && wait "$WPID" 2>/dev/null; WPID=""; }
incident_cleanup() { local rc=$?; rx_stop; (exit $rc); acme_cleanup; }
trap incident_cleanup EXIT
"$TB_PY" "$T_ROOT/tests/lib/webhook_receiver.py" --out "$RX" \
    --port-file "$T_TMP/rx.port" 2>"$T_TMP/rx.log" &
WPID=$!
for _ in $(seq 50); do [ -s "$T_TMP/rx.port" ] && break; sleep 0.1; done
PORT=$(cat "$T_TMP/rx.port" 2>/dev/null) || t_fatal "webhook receiver did not start"
URL=http://127.0.0.1:$PORT/hook
ev_count() { grep -c "\"event\":\"$1\"" "$RX" 2>/dev/null || true; }

tb_up 10
acme_up || t_fatal "pebble did not start"
for i in $(seq 1 10); do pebble_add_a "n$i.node.test" "$(tb_ip "$i")"; done
pebble_add_a node.test "$(tb_ip 1)" || t_fatal "pebble_add_a"
PB=$TB/pb.json
METRICS=$T_TMP/certfleet-web.prom
TB_SNI=node.test
mkpb() { # mkpb RENEW_BEFORE_DAYS
	acme_playbook "$PB" http-01 node.test -- verify.server_name=node.test \
	    connect_timeout=3 "notify.webhooks=[\"$URL\"]" \
	    acme.renew_before_days="$1"
}

t_step "before: a certificate from the CA on all 10 nodes"
mkpb 30
cf_run 0 -p "$PB" renew
OLD=$(cf -p "$PB" status --json | "$TB_PY" -c 'import json,sys; print(json.load(sys.stdin)["certificate"]["sha256"])')
for i in $(seq 1 10); do assert_served "$i" "$OLD" "n$i serves the first certificate"; done

t_step "the incident: n7 unreachable, certificate near renewal"
tb_blackhole 7
# Pebble issues 5-year certificates: "near renewal" = inside renew_before
mkpb 3000
: >"$RX"
cf_run 2 --metrics "$METRICS" --wait=900 -p "$PB" renew
RUN_SECS=$T_SECS
NEW=$(cf -p "$PB" status --json | "$TB_PY" -c 'import json,sys; print(json.load(sys.stdin)["certificate"]["sha256"])')
assert_ne "$NEW" "$OLD" "renewed at the CA although a node is down"
for i in 1 2 3 4 5 6 8 9 10; do assert_served "$i" "$NEW" "n$i serves the renewed certificate"; done
assert_served_local 7 "$OLD" "n7 still serves its previous (valid) certificate (asked from inside)"
assert_le "${RUN_SECS%.*}" 20 "the whole run is bounded (the dead node costs one connect_timeout)"

t_step "the failure is visible at once: status, metrics, webhook"
t_status
assert_node "$T_STATUS" n7 quarantined true
assert_node "$T_STATUS" n7 reason timeout
assert_node "$T_STATUS" n1 quarantined false
assert_file_match "$METRICS" '^certfleet_node_quarantined\{.*node="n7".*reason="timeout".*\} 1$' "metrics: n7 quarantined (timeout)"
assert_file_match "$METRICS" '^certfleet_nodes_serving_current\{.*\} 9$' "metrics: 9 nodes serve current"
if command -v promtool >/dev/null; then
	assert_exit 0 sh -c "promtool check metrics <'$METRICS'"
fi
assert_eq "$(ev_count node_quarantined)" 1 "webhook: node_quarantined on the first failed attempt"
assert_file_match "$RX" '"node":"n7"' "webhook names n7"

t_step "n7 returns: the next timer run converges it without a human"
tb_unblackhole 7
mkpb 30
cf_run 0 --metrics "$METRICS" -p "$PB" renew
assert_match "$(cat "$T_ERR")" "not due" "nothing ordered: the certificate is current"
for i in $(seq 1 10); do assert_served "$i" "$NEW" "n$i serves the renewed certificate"; done
t_status
assert_node "$T_STATUS" n7 quarantined false
assert_file_match "$METRICS" '^certfleet_nodes_serving_current\{.*\} 10$' "metrics: 10 nodes serve current"
assert_eq "$(ev_count node_released)" 1 "webhook: node_released"
assert_eq "$(tb_leftovers 7)" "" "n7: no leftover files"

t_done
