#!/bin/bash
# certfleet under valgrind memcheck: a deploy to 3 nodes (with a canary),
# the read-only commands, then the error paths: a node whose check fails,
# one refusing connections, a verify failure with rollback, quarantine and
# rollback commands, a bad playbook, a key that does not match, a held
# lock, a corrupt nodes.json.  Every run: the
# expected exit code, no memcheck error, no definite or indirect leak.
# Suppressions (library-internal noise only) are in tests/valgrind.supp.
. "$(dirname "$0")/../lib/common.sh"
t_start
# background helpers of this test die with it, whatever happens
BG=""
# shellcheck disable=SC2154,SC2086
trap 'rc=$?; [ -n "$BG" ] && kill $BG 2>/dev/null; (exit $rc); t_cleanup' EXIT

command -v valgrind >/dev/null 2>&1 || t_skip "valgrind is not installed (apt-get install valgrind)"
if nm "$CERTFLEET" 2>/dev/null | grep -q '__asan_init\|__tsan_init'; then
	t_skip "$CERTFLEET is built with a sanitizer; valgrind needs a plain build"
fi
SUPP=$T_ROOT/tests/valgrind.supp
[ -f "$SUPP" ] || t_fatal "no $SUPP"

tb_up 3
tb_make_cert new 90 || t_fatal "tb_make_cert"
tb_make_cert newer 90 || t_fatal "tb_make_cert"
tb_make_cert other 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
NEWER=$TB/certs/newer
PB=$TB/pb.json
PB0=$TB/pb0.json
# valgrind makes TLS and SSH slow: generous deadlines.  PB has a canary,
# PB0 none (so that a failing node is not the canary that stops the run).
tb_playbook "$PB" connect_timeout=10 timeout=60 verify_timeout=4 canary=1 \
    deploy.reload=/srv/reload.sh
tb_playbook "$PB0" connect_timeout=10 timeout=60 verify_timeout=4 canary=0 \
    deploy.reload=/srv/reload.sh

t_step "deploy to 3 nodes"
vg 0 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
for i in 1 2 3; do assert_node_has "$i" "$NEW"; done

t_step "read-only commands"
vg 0 --json -p "$PB" status
vg 0 --json -p "$PB" verify

t_step "failing nodes: check fails (n2), connection refused (n3)"
tb_break_check 2
tb_stop_sshd 3
vg 2 --json -p "$PB0" deploy --cert "$NEWER/fullchain.pem" --key "$NEWER/privkey.pem"
assert_node "$T_OUT" n2 reason check-failed
assert_node "$T_OUT" n3 reason refused
tb_fix_check 2
tb_start_sshd 3

t_step "verify failure with rollback (n3), quarantine commands"
tb_ignore_reload 3
vg 2 --json -p "$PB0" deploy
assert_node "$T_OUT" n3 reason verify-failed
tb_fix_reload 3
vg 0 -p "$PB" quarantine add n3 --reason "valgrind test"
vg 0 --json -p "$PB" rollback --only n1
assert_node_has 1 "$NEW"

t_step "unusable input and a held lock"
tb_playbook "$TB/bad.json" ssh.conenct_timeout=3
vg 78 -p "$TB/bad.json" deploy
vg 65 -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$TB/certs/other/privkey.pem"
(
	flock -x 9
	echo "pid=1 host=test since=now cmd=hold" >&9
	sleep 30
) 9>>"$TB/state/lock" &
HOLD=$!
BG="$BG $HOLD"
t_wait_locked "$TB/state/lock"
vg 75 -p "$PB" deploy
kill "$HOLD" 2>/dev/null
wait "$HOLD" 2>/dev/null

t_step "corrupt state"
cp "$TB/state/web/nodes.json" "$T_TMP/nodes.json.good"
printf '{"version": 1, "nodes": {"n1": ' >"$TB/state/web/nodes.json"
vg 1 -p "$PB" deploy
cp "$T_TMP/nodes.json.good" "$TB/state/web/nodes.json"

t_done
