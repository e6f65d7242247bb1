#!/bin/bash
# certfleet renew under valgrind memcheck against a real Pebble: the whole
# ACME path (account, order, http-01 on every node over SSH, finalize,
# download, store) and the rollout after it, then a not-due run and a run
# with the CA down.  Every run: the expected exit code, no memcheck error,
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

t_step "CA down: renew --force fails cleanly"
pebble_down
vg 1 -p "$PB" renew --force

t_done
