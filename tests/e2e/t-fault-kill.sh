#!/bin/bash
# SIGKILL the coordinator in the middle of a rollout (three times: the
# moment the new version is in the store, before any node has it; the
# moment a temp file appears on a node; at 1.2 s), then run
# again: exit 0, every node serves the new certificate with exactly its
# bytes and modes, no temp file is left on any node (the stage script
# removes those of dead runs, including one planted by hand), the lock of
# the killed run is free and the store reads back fine after every kill.
. "$(dirname "$0")/../lib/common.sh"
t_start

N=10
tb_up $N
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
NEW_SHA=$(tb_cert_sha256 "$NEW/fullchain.pem")
PB=$TB/pb.json
# two at a time: the rollout lasts long enough to be interrupted
tb_playbook "$PB" concurrency=2 canary=1
# a temp file a run killed long ago left behind (n10 is reached last)
tb_exec 10 sh -c 'umask 077; echo stale >/srv/tls/.certfleet.privkey.pem.0123456789ab.tmp'

# store_ok: status reads the store; current version is complete
store_ok() {
	local v d f
	cf_run 0 -p "$PB" status
	t_status
	assert_json "$T_STATUS" 'd["certificate"]["sha256"]' "$NEW_SHA" "$1: status shows the new certificate"
	v=$(cat "$TB/state/web/current" 2>/dev/null)
	d=$TB/state/web/versions/$v
	for f in cert.pem chain.pem fullchain.pem privkey.pem; do
		if [ -n "$v" ] && [ -f "$d/$f" ]; then
			t_ok "$1: current version has $f"
		else
			t_notok "$1: current version '$v' has $f"
		fi
	done
	if "$TB_PY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$TB/state/web/nodes.json" 2>/dev/null ||
	    [ ! -e "$TB/state/web/nodes.json" ]; then
		t_ok "$1: nodes.json absent or valid JSON"
	else
		t_notok "$1: nodes.json is valid JSON"
	fi
	# nothing half-written in the store
	assert_eq "$(find "$TB/state" -name '*.tmp*' -o -name '.*tmp*' | head -5)" "" \
	    "$1: no temp files in the state directory"
}

# kill_at SECONDS|stored|upload: start a deploy, SIGKILL it after SECONDS,
# the moment the store's current version is complete (a kill between the
# store and the nodes, whatever the binary's speed: ASan's is slower), or
# the moment a new temp file appears on any node (a kill mid-write)
kill_at() {
	local pid i
	"$CERTFLEET" --state-dir "$TB/state" -p "$PB" deploy --cert "$NEW/fullchain.pem" \
	    --key "$NEW/privkey.pem" >"$T_TMP/killed.out" 2>"$T_TMP/killed.err" &
	pid=$!
	if [ "$1" = stored ]; then
		"$TB_PY" - "$pid" "$TB/state/web" <<'EOF'
import os, signal, sys, time
pid, d = int(sys.argv[1]), sys.argv[2]
end = time.monotonic() + 20
while time.monotonic() < end:
    try:
        v = open(d + "/current").read().strip()
        if v and os.path.exists(d + "/versions/" + v + "/privkey.pem"):
            os.kill(pid, signal.SIGKILL)
            print("killed once the store held version " + v)
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.0005)
sys.exit(1)
EOF
	elif [ "$1" = upload ]; then
		"$TB_PY" - "$pid" "$TB"/nodes/n*/tls <<'EOF'
import glob, os, signal, sys, time
pid, dirs = int(sys.argv[1]), sys.argv[2:]
end = time.monotonic() + 20
while time.monotonic() < end:
    for d in dirs:
        for f in glob.glob(d + "/.certfleet.*.tmp"):
            if "0123456789ab" not in f:
                os.kill(pid, signal.SIGKILL)
                print("killed on seeing " + f)
                sys.exit(0)
    time.sleep(0.0005)
sys.exit(1)
EOF
	else
		sleep "$1"
		kill -KILL "$pid"
	fi
	wait "$pid" 2>/dev/null
	assert_eq "$?" 137 "the run was killed (not already finished) at $1"
	sed 's/^/    | /' "$T_TMP/killed.err"
	for i in $(seq 1 $N); do
		l=$(tb_leftovers "$i" | tr '\n' ' ')
		[ -n "$l" ] && t_log "n$i right after the kill: $l"
	done
	return 0
}

t_step "kill 1: the moment the new version is in the store"
kill_at stored
store_ok "after kill 1"

t_step "kill 2: the moment the next rollout creates a temp file on a node"
kill_at upload
store_ok "after kill 2"

t_step "kill 3: 1.2 s into the next rollout"
kill_at 1.2
store_ok "after kill 3"

t_step "run to the end: exit 0, converged, clean"
cf_run 0 --json -p "$PB" deploy
for i in $(seq 1 $N); do assert_node_has "$i" "$NEW"; done
store_ok "after the full run"
for i in $(seq 1 $N); do
	assert_node "$T_STATUS" "n$i" serving_current true
	assert_node "$T_STATUS" "n$i" quarantined false
done

t_done
