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
VGN=0
vg() {
	local want=$1 log
	shift
	VGN=$((VGN + 1))
	log=$T_TMP/vg.$VGN.log
	assert_exit "$want" valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
	    --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
	    --num-callers=40 --suppressions="$SUPP" --log-file="$log" \
	    "$CERTFLEET" --state-dir "$TB/state" "$@"
	if [ -s "$log" ]; then
		t_notok "memcheck clean: $*" "$(grep -v '^==[0-9]*== *$' "$log" | head -60)"
	else
		t_ok "memcheck clean (${T_SECS}s): ${*:1:6}"
	fi
}

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
