#!/bin/bash
# Nodes that stop answering in the middle of a session are cut off at
# ssh.timeout (reason timeout) and never hold up the rest of the fleet:
#   n2  the session freezes with half the stage script (and of the files'
#       bytes in it) delivered to the node's shell;
#   n3  every sshd process of the node (and whatever they run) is SIGSTOPped
#       the moment sshd logs our login;
#   n4  the listening sshd is SIGSTOPped before the run: TCP completes from
#       the backlog, the SSH banner never comes (cut at connect_timeout);
#   n5  its check command never returns: the stage script kills it after
#       half of ssh.timeout and restores the previous files itself, so the
#       node is check-failed with its old files, never left mid-swap.
# n2 and n4 keep their old files and certificate; n3 and n5 are never left
# with mixed files and n5 keeps serving the old certificate.  Once resumed, the next run converges everywhere and leaves
# no temp files behind (the stage script removes those of dead runs).
. "$(dirname "$0")/../lib/common.sh"
t_start
# background helpers of this test die with it, whatever happens
BG=""
# shellcheck disable=SC2154,SC2086
trap 'rc=$?; [ -n "$BG" ] && kill $BG 2>/dev/null; (exit $rc); t_cleanup' EXIT

CT=3                 # ssh.connect_timeout
TO=4                 # ssh.timeout
tb_up 5
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
OLD=$TB/certs/old
OLD_SHA=$(tb_cert_sha256 "$OLD/fullchain.pem")
PB=$TB/pb.json
tb_playbook "$PB" connect_timeout=$CT timeout=$TO canary=0 deploy.check="sh /srv/check.sh"
for i in 1 2 3 4 5; do
	printf 'exec nginx -t -q -c /srv/nginx.conf\n' >"$(tb_dir "$i")/check.sh"
done

t_step "n2: a session that freezes with half the stage script delivered"
D2=$(tb_dir 2)
cat >"$D2/stall-sh.py" <<'EOF'
# In place of the command (sh -s): take the whole script from the channel,
# hand the first half of it to a real sh, then SIGSTOP ourselves, keeping
# that sh waiting for the rest.  Resumed, close its stdin: a shell left
# with a partial script at end of file.
import os, signal, subprocess, sys
sh = subprocess.Popen(["sh", "-s"], stdin=subprocess.PIPE)
data = b""
while True:
    c = os.read(0, 65536)
    if not c:
        break
    data += c
sh.stdin.write(data[:len(data) // 2])
sh.stdin.flush()
with open("/srv/logs/stall.pids", "w") as f:
    f.write("%d %d\n" % (os.getpid(), sh.pid))
os.kill(os.getpid(), signal.SIGSTOP)
sh.stdin.close()
sys.exit(sh.wait())
EOF
cp "$D2/sshd_config" "$D2/sshd_config.orig"
echo "ForceCommand $TB_PY /srv/stall-sh.py" >>"$D2/sshd_config"
tb_stop_sshd 2
tb_start_sshd 2 || t_fatal "n2: sshd did not restart"

t_step "n3: SIGSTOP every sshd process of the node right after our login"
# Every process in n3's network namespace except nginx and the holder
# (sleep): sshd (listener, monitor, session), sftp, the stage shell.
cat >"$T_TMP/freeze.py" <<'EOF'
import os, signal, sys, time
log, ns, out, limit = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
want = os.stat(ns)
start = os.path.getsize(log)
end = time.monotonic() + limit
def node_pids():
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            st = os.stat("/proc/%s/ns/net" % p)
            comm = open("/proc/%s/comm" % p).read().strip()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino) and \
                comm not in ("nginx", "sleep"):
            yield int(p), comm
while time.monotonic() < end:
    with open(log, "rb") as f:
        f.seek(start)
        if b"Accepted publickey" in f.read():
            break
    time.sleep(0.001)
else:
    sys.exit(1)
stopped = {}
for _ in range(20):   # children forked while we stop their parents
    for p, comm in node_pids():
        if p not in stopped:
            try:
                os.kill(p, signal.SIGSTOP)
                stopped[p] = comm
            except OSError:
                pass
    time.sleep(0.005)
with open(out, "w") as f:
    f.write("".join("%d %s\n" % kv for kv in stopped.items()))
EOF
"$TB_PY" "$T_TMP/freeze.py" "$(tb_dir 3)/logs/sshd.log" "/run/netns/$(tb_ns 3)" \
    "$T_TMP/n3.stopped" 20 &
FREEZER=$!
BG="$BG $FREEZER"

t_step "n4: listening sshd SIGSTOPped"
tb_sigstop_sshd 4

t_step "n5: a check that hangs"
printf 'exec sleep 3600\n' >"$(tb_dir 5)/check.sh"

for i in 2 4; do t_snap "$i" before; done

t_step "deploy: n1 deployed, n2..n4 timeout, whole run bounded"
cf_run 2 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
wait "$FREEZER"
assert_eq "$?" 0 "the freezer saw n3's login and stopped its processes"
t_log "n3 stopped: $(tr '\n' ' ' <"$T_TMP/n3.stopped" 2>/dev/null)"
assert_le "$T_SECS" $((CT + TO + 3)) "whole run within connect_timeout + timeout + 3 s"
assert_node "$J" n1 outcome deployed
assert_node_has 1 "$NEW"
for i in 2 3 4; do
	assert_node "$J" "n$i" outcome failed
	assert_node "$J" "n$i" reason timeout
	assert_node "$J" "n$i" quarantined true
	assert_match "$(node_get "$J" "n$i" error)" "timed out" "n$i: the error says what timed out"
done
# A hung check is killed on the node itself (the stage script runs it under
# timeout(1) with half of ssh.timeout), which restores the previous files:
# that is a failed check, not a lost connection.
assert_node "$J" n5 outcome failed
assert_node "$J" n5 reason check-failed
assert_node "$J" n5 quarantined true
assert_node "$J" n5 rolled_back true
assert_match "$(node_get "$J" n5 error)" "did not finish within" "n5: the error says the check was killed"
assert_le "$(node_get "$J" n2 duration_ms)" $(((TO + 2) * 1000)) "n2 cut off within ssh.timeout (+2 s)"
assert_le "$(node_get "$J" n3 duration_ms)" $(((TO + 2) * 1000)) "n3 cut off within ssh.timeout (+2 s)"
assert_le "$(node_get "$J" n4 duration_ms)" $(((CT + 1) * 1000)) "n4 cut off within connect_timeout (+1 s)"
assert_le "$(node_get "$J" n5 duration_ms)" $(((TO + 2) * 1000)) "n5 cut off within ssh.timeout (+2 s)"

t_step "n2: stalled mid-script, its live files untouched"
if [ -s "$D2/logs/stall.pids" ]; then
	t_ok "n2's session froze with half a script delivered"
else
	t_notok "n2's session froze with half a script delivered (no script came?)"
fi
t_log "n2 /srv/tls now: $(tb_exec 2 ls -A /srv/tls | tr '\n' ' ')"
assert_bytes 2 /srv/tls/fullchain.pem "$OLD/fullchain.pem"
assert_bytes 2 /srv/tls/privkey.pem "$OLD/privkey.pem"
assert_mode 2 /srv/tls/privkey.pem 0600
assert_served 2 "$OLD_SHA" "n2 still serves the old certificate"
assert_eq "$(tb_leftovers 2)" "" "n2: half a script wrote nothing, not even a temp file"

# same_pair I: node I holds the old pair or the new pair, nothing mixed
same_pair() {
	local fc pk
	fc=$(tb_file_sha256 "$1" /srv/tls/fullchain.pem)
	pk=$(tb_file_sha256 "$1" /srv/tls/privkey.pem)
	case "$fc $pk" in
	"$OLD_PAIR") t_ok "n$1 has the old pair" ;;
	"$NEW_PAIR") t_ok "n$1 has the new pair" ;;
	*) t_notok "n$1 has a consistent pair of files" "fullchain $fc" "privkey   $pk" ;;
	esac
}
OLD_PAIR="$(sha256sum <"$OLD/fullchain.pem" | cut -d' ' -f1) $(sha256sum <"$OLD/privkey.pem" | cut -d' ' -f1)"
NEW_PAIR="$(sha256sum <"$NEW/fullchain.pem" | cut -d' ' -f1) $(sha256sum <"$NEW/privkey.pem" | cut -d' ' -f1)"

t_step "n3: frozen after login: old or new, never mixed"
same_pair 3

t_step "n5: hung check: never mixed, still serving the old certificate"
same_pair 5
assert_node_has 5 "$OLD"
t_log "n5 /srv/tls now: $(tb_exec 5 ls -A /srv/tls | tr '\n' ' ')"
assert_served 5 "$OLD_SHA" "n5 still serves the old certificate (never reloaded)"

t_step "n4: never logged in, nothing written"
assert_no_login 4
assert_unchanged 4 before "n4: nothing under /srv changed"
assert_served 4 "$OLD_SHA" "n4 still serves the old certificate"

t_step "status agrees"
t_status
for i in 2 3 4; do
	assert_node "$T_STATUS" "n$i" quarantined true
	assert_node "$T_STATUS" "n$i" reason timeout
done
assert_node "$T_STATUS" n5 quarantined true
assert_node "$T_STATUS" n5 reason check-failed

t_step "resume everything: the next run converges and cleans up"
while read -r pid _; do kill -CONT "$pid" 2>/dev/null; done <"$T_TMP/n3.stopped"
tb_sigcont_sshd 4
read -r p1 p2 <"$D2/logs/stall.pids" 2>/dev/null
[ -n "${p1:-}" ] && kill -CONT "$p1" "$p2" 2>/dev/null
cp "$D2/sshd_config.orig" "$D2/sshd_config"
tb_stop_sshd 2
tb_start_sshd 2 || t_fatal "n2: sshd did not restart"
printf 'exec nginx -t -q -c /srv/nginx.conf\n' >"$(tb_dir 5)/check.sh"
# the resumed sessions find their client gone and end; a deploy racing a
# resumed half-script would test the race, not convergence
gone() { for p in "$@"; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
L3=$(tb_sshd_pid 3)
# shellcheck disable=SC2046
t_wait_for 10 gone $(awk -v l="$L3" '$1 != l { print $1 }' "$T_TMP/n3.stopped") ${p1:-} ${p2:-} ||
    t_log "(resumed session processes still alive after 10 s)"
cf_run 0 --json -p "$PB" deploy
for i in 1 2 3 4 5; do assert_node_has "$i" "$NEW"; done
t_status
for i in 1 2 3 4 5; do
	assert_node "$T_STATUS" "n$i" quarantined false
	assert_node "$T_STATUS" "n$i" serving_current true
done

t_done
