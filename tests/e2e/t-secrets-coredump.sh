#!/bin/bash
# No core dumps: a running certfleet is not dumpable (so not ptrace-able
# by its own user, no /proc/PID/mem for it) and its RLIMIT_CORE is 0,
# soft and hard; the systemd units say LimitCORE=0.  Looked at from
# outside, on a certfleet that waits (--wait) for a lock someone holds.
# It runs as an unprivileged user: for such a process the kernel makes
# /proc/PID/* root's when it is not dumpable (a plain process of that
# user owns them: checked too, as the control).
. "$(dirname "$0")/../lib/common.sh"
t_start
BG=""
# shellcheck disable=SC2154,SC2086
trap 'rc=$?; [ -n "$BG" ] && kill $BG 2>/dev/null; (exit $rc); t_cleanup' EXIT

S=$(mktemp -d /tmp/cft-core.XXXX)
trap 'rc=$?; [ -n "$BG" ] && kill $BG 2>/dev/null; rm -rf "$S"; (exit $rc); t_cleanup' EXIT
chmod 755 "$S"
cp "$CERTFLEET" "$S/certfleet"
cp "$T_ROOT/playbooks/nginx.json" "$S/pb.json"
mkdir -m 700 "$S/state"
touch "$S/state/lock"
chown -R 65534:65534 "$S"
# (not a function: $! of a backgrounded function is a subshell's pid)
NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups"
NODE=$("$TB_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["nodes"][0]["name"])' "$S/pb.json")

t_step "control: a plain process of that user owns its /proc files"
$NOBODY sleep 30 &
CTL=$!
BG="$BG $CTL"
# until it is sleep: setpriv itself, between setuid and exec, is not
# dumpable either
SLEEP=$(readlink -f "$(command -v sleep)")
t_wait_for 5 eval '[ "$(readlink "/proc/$CTL/exe")" = "$SLEEP" ]' ||
    t_fatal "the control process did not start"
assert_eq "$(stat -c %U "/proc/$CTL/status")" nobody "/proc/PID/status of a dumpable process is its user's"
kill "$CTL"

t_step "certfleet waiting for the lock"
(exec 9<"$S/state/lock" && flock 9 && exec sleep 60) &
HOLDER=$!
BG="$BG $HOLDER"
t_wait_locked "$S/state/lock"
$NOBODY "$S/certfleet" --state-dir "$S/state" --wait=30 -p "$S/pb.json" \
    quarantine add "$NODE" --reason test >"$T_TMP/cf.out" 2>&1 &
PID=$!
BG="$BG $PID"
# it is certfleet (setpriv exec'd it) and it is in its lock wait: it has
# the lock file open
is_waiting() {
	[ "$(readlink "/proc/$PID/exe")" = "$S/certfleet" ] &&
	    grep -q "^Uid:.*65534" "/proc/$PID/status" &&
	    find "/proc/$PID/fd" -lname "$S/state/lock" 2>/dev/null | grep -q .
}
t_wait_for 10 is_waiting || t_fatal "certfleet is not waiting for the lock: $(cat "$T_TMP/cf.out")"
assert_eq "$(stat -c %U "/proc/$PID/status")" root "certfleet is not dumpable (its /proc files are root's)"
assert_match "$(grep '^Max core file size' "/proc/$PID/limits")" \
    '^Max core file size +0 +0 +bytes' "RLIMIT_CORE is 0, soft and hard"
kill "$HOLDER"
wait "$PID"
assert_eq "$?" 0 "once the lock is free it runs (exit 0): $(head -c 200 "$T_TMP/cf.out")"

t_step "the systemd units"
for u in certfleet-renew@.service certfleet-alert@.service; do
	assert_file_match "$T_ROOT/hooks/systemd/$u" '^LimitCORE=0$' "$u: LimitCORE=0"
done
t_done
