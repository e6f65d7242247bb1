#!/bin/bash
# Two runs on one state directory.  While a deploy holds the lock (it
# waits on a blackholed node): a second deploy and a quarantine change
# exit 75 at once naming the holder's pid; --wait=1 says what it waits
# for and gives up after about a second (75); status and verify
# (read-only, no lock) work; --wait=10 waits for the holder to finish and
# then succeeds.
. "$(dirname "$0")/../lib/common.sh"
t_start
# background helpers of this test die with it, whatever happens
BG=""
# shellcheck disable=SC2154,SC2086
trap 'rc=$?; [ -n "$BG" ] && kill $BG 2>/dev/null; (exit $rc); t_cleanup' EXIT

CT=5
tb_up 3
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
PB=$TB/pb.json
tb_playbook "$PB" connect_timeout=$CT canary=0
tb_blackhole 3

t_step "run A: a deploy that holds the lock for about ${CT}s"
"$CERTFLEET" --state-dir "$TB/state" -p "$PB" deploy --cert "$NEW/fullchain.pem" \
    --key "$NEW/privkey.pem" >"$T_TMP/a.out" 2>"$T_TMP/a.err" &
A=$!
BG="$BG $A"
t0=$(date +%s.%N)
for _ in $(seq 1 100); do
	grep -q "^pid=$A " "$TB/state/lock" 2>/dev/null && break
	sleep 0.02
done
assert_match "$(cat "$TB/state/lock" 2>/dev/null)" "^pid=$A " "the lock file names run A's pid"

t_step "while A runs"
kill -0 "$A" 2>/dev/null || t_fatal "run A ended before the checks could start"
cf_run 75 -p "$PB" deploy
assert_le "$T_SECS" 1 "deploy gives up at once"
assert_match "$(cat "$T_ERR")" "locked by .*\b$A\b" "the message names the holder pid $A"
assert_eq "$(wc -l <"$T_ERR")" 1 "one line on stderr"
cf -p "$PB" verify --exclude n3 >"$T_TMP/v.out" 2>"$T_TMP/v.err"
rc=$?
assert_match "$rc" '^(0|2)$' "verify (read-only, takes no lock) runs while A holds it (exit $rc)"
assert_eq "$(grep -c 'lock' "$T_TMP/v.err")" 0 "verify says nothing about a lock"
cf_run 75 -p "$PB" quarantine add n2 --reason test
cf_run 0 -p "$PB" status
assert_le "$T_SECS" 2 "status does not wait for the lock"
cf_run 75 --wait=1 -p "$PB" deploy
assert_le "$T_SECS" 2.5 "--wait=1 gives up after about a second"
assert_le 0.9 "$T_SECS" "--wait=1 did wait"
assert_match "$(cat "$T_ERR")" "\b$A\b" "--wait=1: names the holder"
assert_eq "$(head -n1 "$T_ERR")" \
    "$(printf 'certfleet: waiting up to 1 s for the lock on %s held by pid %s on %s since ' "$TB/state" "$A" "$(hostname)")$(sed -n 's/.* since=\([^ ]*\) .*/\1/p' "$TB/state/lock") (deploy)…" \
    "--wait=1: first says what it waits for, before waiting"
kill -0 "$A" 2>/dev/null || t_notok "run A was still running during all of the above"

t_step "--wait=10: waits for A, then succeeds"
cf_run 0 --wait=10 -p "$PB" deploy --only n1,n2
t1=$(date +%s.%N)
kill -0 "$A" 2>/dev/null && t_notok "run A still running when the waiting run finished"
wait "$A"
assert_eq "$?" 2 "run A finished with exit 2 (n3 unreachable)"
assert_le "$CT" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
    "the waiting run finished after A's connect timeout"
for i in 1 2; do assert_node_has "$i" "$NEW"; done

t_step "the lock is free again"
cf_run 0 -p "$PB" deploy --only n1
assert_le "$T_SECS" 3 "no waiting"

t_done
