#!/bin/bash
# certfleet renew under valgrind memcheck against a real Pebble: the whole
# ACME path (account, order, http-01 on every node over SSH, finalize,
# download, store) and the rollout after it, then a not-due run, a run with
# nodes.json corrupt, status, a failing validation, a read-only versions/
# and a run with the CA down.  Every run: the expected exit code, no memcheck error,
# no definite or indirect leak (suppressions: tests/valgrind.supp).
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
t_start
acme_start

command -v valgrind >/dev/null 2>&1 || t_skip "valgrind is not installed (apt-get install valgrind)"
if nm "$CERTFLEET" 2>/dev/null | grep -q '__asan_init\|__tsan_init'; then
	t_skip "$CERTFLEET is built with a sanitizer; valgrind needs a plain build"
fi
SUPP=$T_ROOT/tests/valgrind.supp

tb_up 2
acme_up || t_fatal "pebble did not start"
pebble_add_a a.node.test "$(tb_ip 1)" || t_fatal "pebble_add_a"
PB=$TB/pb.json
TB_SNI=a.node.test
acme_playbook "$PB" http-01 a.node.test -- verify.server_name=a.node.test \
    connect_timeout=10 timeout=60 acme.timeout=120

t_step "renew: order, http-01 on both nodes, store, deploy"
vg 0 -p "$PB" renew
SHA=$(cf -p "$PB" status --json | "$TB_PY" -c 'import json,sys; print(json.load(sys.stdin)["certificate"]["sha256"])')
for i in 1 2; do assert_served "$i" "$SHA" "n$i serves the issued certificate"; done

t_step "renew again: not due, nothing ordered"
vg 0 -p "$PB" renew

t_step "renew --json --force with nodes.json corrupt: issued, deploy not run"
cp "$TB/state/web/nodes.json" "$T_TMP/nodes.good"
echo '{"version": 1, "nodes": [' >"$TB/state/web/nodes.json"
vg 1 --json -p "$PB" renew --force
cp "$T_TMP/nodes.good" "$TB/state/web/nodes.json"

t_step "status --json and human: renewal fields"
vg 0 --json -p "$PB" status
vg 0 -p "$PB" status

t_step "the name resolves to no node with the file: validation fails naming nodes"
tb_stop_sshd 2 || t_fatal "tb_stop_sshd"
curl -fsS -X POST -d '{"host":"a.node.test"}' "$CHALLTESTSRV_URL/clear-a" >/dev/null
pebble_add_a a.node.test "$(tb_ip 2)" || t_fatal "pebble_add_a"
vg 1 --json -p "$PB" renew --force
tb_start_sshd 2 || t_fatal "tb_start_sshd"

t_step "versions/ read-only: nothing ordered"
{ mount --bind "$TB/state/web/versions" "$TB/state/web/versions" &&
    mount -o remount,bind,ro "$TB/state/web/versions"; } || t_fatal "ro bind"
vg 1 --json -p "$PB" renew --force
umount "$TB/state/web/versions"

t_step "CA down: renew --force fails cleanly"
pebble_down
vg 1 -p "$PB" renew --force

t_done
