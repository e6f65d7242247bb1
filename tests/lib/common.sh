# common.sh - what every end-to-end test sources (bash).
#
#     . "$(dirname "$0")/../lib/common.sh"
#     t_start                   # root check, traps (tb_down on any exit)
#     tb_up 5
#     cf_run 0 --json -p "$PB" deploy --cert ... --key ...
#     assert_json "$T_OUT" 'd["summary"]["deployed"]' 5
#     t_done
#
# Assertions are soft: a failed one prints "NOT OK - ..." and the test goes
# on, so one run shows every broken property; the test exits 1 at the end
# (T_FAILFAST=1 stops at the first).  `t_fatal` stops at once.  TB_KEEP=1
# leaves the test bed up after the test for debugging (tests/README.md).

T_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=testbed.sh
. "$T_ROOT/tests/lib/testbed.sh"

BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$T_ROOT/$BUILD ;; esac
CERTFLEET=${CERTFLEET:-$BUILD/certfleet}
T_NAME=$(basename "$0" .sh)
T_FAILS=0
T_CHECKS=0
T_FAILED=""
T_OUT=""        # stdout of the last cf_run / assert_exit
T_ERR=""        # its stderr
T_RC=0          # its exit code
T_SECS=0        # its wall time in seconds (decimal)

t_log() { printf '%s\n' "$*"; }
t_step() { printf '\n== %s\n' "$*"; }

t_fatal() {
	printf 'FATAL - %s\n' "$*"
	T_CHECKS=$((T_CHECKS + 1))
	T_FAILS=$((T_FAILS + 1))
	T_FAILED="$T_FAILED
  $*"
	exit 1
}

t_skip() {
	printf 'SKIP - %s\n' "$*"
	exit 77
}

t_cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$TB" ] && [ "${TB_KEEP:-0}" = 1 ]; then
		printf '\nTB_KEEP=1: test bed left up in %s (namespaces cft%sn*).\n' "$TB" "$TB_RUN"
		printf 'Look around with: ip netns exec cft%sn1 ...  /  nsenter -t $(cat %s/nodes/n1/logs/holder.pid) -n -m sh\n' "$TB_RUN" "$TB"
		printf 'The next test run removes it (tb_reap_stale).\n'
	else
		tb_down
	fi
	[ -n "${T_TMP:-}" ] && [ "${TB_KEEP:-0}" != 1 ] && rm -rf "$T_TMP"
	if [ "$T_FAILS" -gt 0 ]; then
		printf '\n%s: %d of %d checks failed:%s\n' "$T_NAME" "$T_FAILS" "$T_CHECKS" "$T_FAILED"
		[ "$rc" -eq 0 ] && rc=1
	elif [ "$rc" -eq 0 ]; then
		printf '\n%s: all %d checks passed\n' "$T_NAME" "$T_CHECKS"
	fi
	exit "$rc"
}

# Start a test: it needs root (namespaces) and the binary.
t_start() {
	[ "$(id -u)" -eq 0 ] || t_skip "$T_NAME needs root (network namespaces)"
	trap t_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	T_TMP=$(mktemp -d /tmp/cft-test.XXXX)
	[ -x "$CERTFLEET" ] || t_fatal "no binary at $CERTFLEET (make first)"
}

t_done() { exit 0; }

# --- assertions ----------------------------------------------------------

t_ok() {
	T_CHECKS=$((T_CHECKS + 1))
	printf 'ok - %s\n' "$*"
}

t_notok() {
	T_CHECKS=$((T_CHECKS + 1))
	T_FAILS=$((T_FAILS + 1))
	T_FAILED="$T_FAILED
  $1"
	printf 'NOT OK - %s\n' "$1"
	shift
	[ $# -gt 0 ] && printf '%s\n' "$@" | sed 's/^/    /'
	[ "${T_FAILFAST:-0}" = 1 ] && exit 1
	return 1
}

# assert_eq ACTUAL EXPECTED WHAT
assert_eq() {
	if [ "$1" = "$2" ]; then
		t_ok "$3"
	else
		t_notok "$3" "expected: '$2'" "got:      '$1'"
	fi
}

assert_ne() {
	if [ "$1" != "$2" ]; then
		t_ok "$3"
	else
		t_notok "$3" "expected anything but: '$2'"
	fi
}

# assert_le A B WHAT  (decimal numbers)
assert_le() {
	if awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; then
		t_ok "$3 ($1 <= $2)"
	else
		t_notok "$3" "expected <= $2, got $1"
	fi
}

# assert_match STRING ERE WHAT
assert_match() {
	if printf '%s' "$1" | grep -Eq -- "$2"; then
		t_ok "$3"
	else
		t_notok "$3" "expected to match /$2/:" "$(printf '%s' "$1" | tail -n 8)"
	fi
}

# assert_file_match FILE ERE WHAT
assert_file_match() {
	if grep -Eq -- "$2" "$1"; then
		t_ok "$3"
	else
		t_notok "$3" "no line of $1 matches /$2/; it ends with:" \
		    "$(tail -n 8 "$1")"
	fi
}

# assert_exit CODE CMD [ARGS...]: run CMD (stdout -> $T_OUT, stderr ->
# $T_ERR, exit code -> $T_RC, seconds -> $T_SECS) and check its exit code.
assert_exit() {
	local want=$1 t0 t1
	shift
	T_OUT=$T_TMP/out.$T_CHECKS
	T_ERR=$T_TMP/err.$T_CHECKS
	t0=$(date +%s.%N)
	"$@" >"$T_OUT" 2>"$T_ERR"
	T_RC=$?
	t1=$(date +%s.%N)
	T_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
	# The human report goes to stderr: keep it in the test log.
	sed 's/^/    | /' "$T_ERR"
	if [ "$T_RC" -eq "$want" ]; then
		t_ok "exit $want: $*"
	else
		t_notok "exit $want expected, got $T_RC: $*" \
		    "stdout: $(head -c 2000 "$T_OUT")"
	fi
}

# --- waiting for something asynchronous ----------------------------------
# A reload, a kill, a process started with & take effect some time later:
# never assert right after them, and never sleep a fixed time first (too
# short on a loaded machine, too long on a quiet one).  Poll, bounded.

# t_wait_for SECONDS CMD [ARGS...]: run CMD every 0.1 s until it succeeds
# (status 0) or SECONDS (may be decimal) have passed (status 1).
t_wait_for() {
	local limit=$1 end now
	shift
	# microseconds, in bash's 64-bit arithmetic (mawk's %d stops at 2^31)
	now=${EPOCHREALTIME/[.,]/}
	end=$((now + $(awk -v l="$limit" 'BEGIN { printf "%.0f", l * 1000000 }')))
	while :; do
		"$@" && return 0
		now=${EPOCHREALTIME/[.,]/}
		[ "$now" -ge "$end" ] && return 1
		sleep 0.1
	done
}

_t_serves() { [ "$(tb_served_sha256 "$1")" = "$2" ]; }

# t_wait_serves I SHA [SECONDS [WHAT]]: assert that node I serves SHA over
# TLS within SECONDS (default 10) -- after anything that reloads a node
# outside certfleet (certfleet's own runs verify before they report).
t_wait_serves() {
	local i=$1 want=$2 limit=${3:-10} what=${4:-"n$1 serves ${2:0:12}"}
	if t_wait_for "$limit" _t_serves "$i" "$want"; then
		t_ok "$what"
	else
		t_notok "$what (waited ${limit}s)" "expected: '$want'" \
		    "got:      '$(tb_served_sha256 "$i")'"
	fi
}

# Someone holds the flock on FILE (flock(1) here cannot take it).
t_lock_held() { ! flock -n -x "$1" true 2>/dev/null; }

# t_wait_locked FILE [SECONDS]: a lock holder started in the background
# has the lock (default 10 s), or the test stops.
t_wait_locked() {
	t_wait_for "${2:-10}" t_lock_held "$1" ||
	    t_fatal "nobody took the lock on $1 within ${2:-10}s"
}

# --- certfleet -----------------------------------------------------------

# certfleet with this test bed's state directory.
cf() { "$CERTFLEET" --state-dir "$TB/state" "$@"; }
# cf_run CODE ARGS...: cf under assert_exit.
cf_run() {
	local want=$1
	shift
	assert_exit "$want" cf "$@"
}

# --- JSON (python3: always there, see deps.sh) ---------------------------

# json_get FILE EXPR: evaluate the python expression EXPR with d = the
# document; print strings raw, None as null, booleans as true/false, the
# rest as JSON.  Prints "<error: ...>" when the document or path is wrong.
json_get() {
	"$TB_PY" - "$1" "$2" <<'EOF'
import json, sys
try:
    with open(sys.argv[1]) as f:
        d = json.load(f)
    v = eval(sys.argv[2], {"d": d})
except Exception as e:
    print("<error: %s: %s>" % (type(e).__name__, e))
    sys.exit(0)
if isinstance(v, str):
    print(v)
elif v is None:
    print("null")
elif isinstance(v, bool):
    print("true" if v else "false")
else:
    print(json.dumps(v, sort_keys=True))
EOF
}

# The document flattened once into FILE.flat, one "path=value" a line
# (nodes are keyed by name: nodes.n3.reason=timeout), so that the many
# per-node assertions cost a grep instead of a python start each.
json_flat() {
	[ -f "$1.flat" ] && [ "$1.flat" -nt "$1" ] && return 0
	"$TB_PY" - "$1" >"$1.flat" <<'EOF'
import json, sys
def out(path, v):
    if isinstance(v, dict):
        for k, x in v.items():
            out(path + [k], x)
    elif isinstance(v, list) and path[-1:] == ["nodes"] and \
            all(isinstance(x, dict) and "name" in x for x in v):
        for x in v:
            out(path + [x["name"]], x)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out(path + [str(i)], x)
    else:
        if isinstance(v, str):
            s = v.replace("\n", "\\n")
        elif v is None:
            s = "null"
        elif isinstance(v, bool):
            s = "true" if v else "false"
        else:
            s = json.dumps(v)
        print(".".join(path) + "=" + s)
try:
    with open(sys.argv[1]) as f:
        out([], json.load(f))
except Exception as e:
    print("<error>=%s: %s" % (type(e).__name__, e))
EOF
}

# flat_get FILE PATH: one value by dotted path; "<missing>" if absent.
flat_get() {
	local line
	json_flat "$1"
	line=$(grep -m1 -- "^${2//./\\.}=" "$1.flat")
	if [ -n "$line" ]; then
		printf '%s\n' "${line#*=}"
	elif grep -q '^<error>=' "$1.flat"; then
		printf '<%s>\n' "$(grep '^<error>=' "$1.flat")"
	else
		printf '<missing>\n'
	fi
}

# node_get FILE NODE FIELD: FIELD of the element of d["nodes"] named NODE.
node_get() { flat_get "$1" "nodes.$2.$3"; }

# assert_json FILE EXPR VALUE [WHAT]: EXPR is a python expression over d;
# plain d["a"]["b"] paths are looked up in the flat cache.
assert_json() {
	local v p
	if [[ $2 =~ ^d(\[\"[A-Za-z0-9_-]+\"\])+$ ]]; then
		p=${2#d\[\"}
		p=${p%\"\]}
		p=${p//\"\]\[\"/.}
		v=$(flat_get "$1" "$p")
	else
		v=$(json_get "$1" "$2")
	fi
	assert_eq "$v" "$3" "${4:-json $2 == $3}"
}
assert_node() { assert_eq "$(node_get "$1" "$2" "$3")" "$4" "${5:-$2: $3 == $4}"; }

# Many node fields at once: assert_nodes FILE FIELD VALUE NODE...
assert_nodes() {
	local f=$1 field=$2 want=$3 n
	shift 3
	for n in "$@"; do assert_node "$f" "$n" "$field" "$want"; done
}

# status --json into $T_TMP/status.json (path in $T_STATUS).
t_status() {
	T_STATUS=$T_TMP/status.$T_CHECKS.json
	cf --json -p "$PB" status >"$T_STATUS" 2>"$T_TMP/status.err" ||
	    t_log "(status exited $?: $(head -c 300 "$T_TMP/status.err"))"
}

# --- node state, seen from outside certfleet -----------------------------

# assert_served I SHA WHAT: what node I serves over TLS right now.
assert_served() {
	assert_eq "$(tb_served_sha256 "$1")" "$2" "${3:-n$1 serves ${2:0:12}}"
}

# Same, asked from inside the node (for a blackholed node).
assert_served_local() {
	local got
	got=$(tb_exec "$1" timeout 5 openssl s_client -connect "$(tb_ip "$1"):443" \
	    -servername "$TB_SNI" </dev/null 2>/dev/null |
	    openssl x509 -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1)
	assert_eq "$got" "$2" "${3:-n$1 serves ${2:0:12} (asked from inside)}"
}

# assert_mode I PATH MODE (octal, leading zeros ignored)
assert_mode() {
	local got want
	got=$(tb_file_mode "$1" "$2")
	want=$(printf '%o' "0$3" 2>/dev/null)
	assert_eq "$got" "$want" "n$1: $2 has mode $3"
}

# assert_bytes I PATH LOCALFILE: node file has exactly LOCALFILE's bytes.
assert_bytes() {
	assert_eq "$(tb_file_sha256 "$1" "$2")" \
	    "$(sha256sum <"$3" | cut -d' ' -f1)" "n$1: $2 == ${3#"$TB"/}"
}

assert_no_leftovers() {
	local l
	l=$(tb_leftovers "$1")
	if [ -z "$l" ]; then
		t_ok "n$1: no leftover files in /srv/tls"
	else
		t_notok "n$1: leftover files in /srv/tls:" "$l"
	fi
}

# A backup of a private key must be as closed as the key itself.
assert_backups_safe() {
	local bad
	bad=$(tb_backups "$1" | awk '$1 ~ /privkey/ && $2 != "600"')
	if [ -z "$bad" ]; then
		t_ok "n$1: key backups (if any) are 0600"
	else
		t_notok "n$1: key backup with a wider mode than 0600:" "$bad"
	fi
}

# assert_node_has I CERTDIR: node I serves CERTDIR's certificate and has
# its files, bytes and modes as the default playbook deploys them.
assert_node_has() {
	local i=$1 c=$2
	assert_served "$i" "$(tb_cert_sha256 "$c/fullchain.pem")" \
	    "n$i serves ${c##*/}"
	assert_bytes "$i" /srv/tls/fullchain.pem "$c/fullchain.pem"
	assert_bytes "$i" /srv/tls/privkey.pem "$c/privkey.pem"
	assert_mode "$i" /srv/tls/fullchain.pem 0644
	assert_mode "$i" /srv/tls/privkey.pem 0600
	assert_no_leftovers "$i"
	assert_backups_safe "$i"
}

# Files and modes only (a node whose TLS we cannot reach from here).
assert_node_files() {
	local i=$1 c=$2
	assert_bytes "$i" /srv/tls/fullchain.pem "$c/fullchain.pem"
	assert_bytes "$i" /srv/tls/privkey.pem "$c/privkey.pem"
	assert_mode "$i" /srv/tls/fullchain.pem 0644
	assert_mode "$i" /srv/tls/privkey.pem 0600
	assert_no_leftovers "$i"
	assert_backups_safe "$i"
}

# t_snap I -> $T_TMP/snap.nI.TAG ; assert_unchanged I TAG WHAT
t_snap() { tb_snapshot "$1" >"$T_TMP/snap.n$1.$2"; }
assert_unchanged() {
	local now=$T_TMP/snap.n$1.now
	tb_snapshot "$1" >"$now"
	if cmp -s "$T_TMP/snap.n$1.$2" "$now"; then
		t_ok "${3:-n$1: nothing under /srv changed}"
	else
		t_notok "${3:-n$1: nothing under /srv changed}" \
		    "$(diff "$T_TMP/snap.n$1.$2" "$now" | head -20)"
	fi
}

# Files certfleet must never touch on a node it could not authenticate:
# sshd logged no accepted login.
assert_no_login() {
	if grep -q 'Accepted publickey' "$(tb_dir "$1")/logs/sshd.log" 2>/dev/null; then
		t_notok "n$1: no SSH login happened" \
		    "$(grep 'Accepted' "$(tb_dir "$1")/logs/sshd.log" | tail -3)"
	else
		t_ok "n$1: no SSH login happened"
	fi
}

# A snapshot of the state directory (every file but the lock).
t_state_snap() {
	(cd "$TB/state" 2>/dev/null && find . -type f ! -name lock -print0 |
	    sort -z | xargs -0 -r sha256sum) >"$T_TMP/state.$1"
}
assert_state_unchanged() {
	local now=$T_TMP/state.now
	(cd "$TB/state" 2>/dev/null && find . -type f ! -name lock -print0 |
	    sort -z | xargs -0 -r sha256sum) >"$now"
	if cmp -s "$T_TMP/state.$1" "$now"; then
		t_ok "${2:-state directory unchanged}"
	else
		t_notok "${2:-state directory unchanged}" \
		    "$(diff "$T_TMP/state.$1" "$now" | head -20)"
	fi
}

# --- the fault fleet (t-deploy-faults, t-deploy-converge) ----------------
# 10 nodes: n1, n2 and n10 healthy (n1 first, so a canary is healthy), and
# one of each node-level fault.  FLEET_REASON[i] is the reason certfleet
# must give for node i.
FLEET_N=10
FLEET_BAD="3 4 5 6 7 8 9"
FLEET_GOOD="1 2 10"
declare -A FLEET_REASON=(
	[3]=timeout          # blackholed: connect hangs
	[4]=refused          # sshd stopped
	[5]=timeout          # TCP accepted, no SSH banner ever
	[6]=hostkey-unknown  # not in known_hosts
	[7]=hostkey-changed  # new host key
	[8]=check-failed     # nginx -t fails
	[9]=write            # /srv/tls full
)
fleet_break() {
	tb_blackhole 3
	tb_stop_sshd 4
	tb_silent_ssh 5
	tb_forget_hostkey 6
	tb_change_hostkey 7
	tb_break_check 8
	tb_disk_full 9
}
fleet_fix() {
	tb_unblackhole 3
	tb_start_sshd 4
	tb_unsilent_ssh 5
	tb_trust_hostkey 6
	tb_trust_hostkey 7
	tb_fix_check 8
	tb_disk_unfull 9
}

# vg CODE ARGS...: certfleet ARGS under valgrind memcheck (definite and
# indirect leaks are errors; suppressions in tests/valgrind.supp): asserts
# the exit code and a clean memcheck log.
VGN=0
vg() {
	local want=$1 log
	shift
	VGN=$((VGN + 1))
	log=$T_TMP/vg.$VGN.log
	assert_exit "$want" valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
	    --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
	    --num-callers=40 --suppressions="$T_ROOT/tests/valgrind.supp" \
	    --log-file="$log" "$CERTFLEET" --state-dir "$TB/state" "$@"
	if [ -s "$log" ]; then
		t_notok "memcheck clean: $*" "$(grep -v '^==[0-9]*== *$' "$log" | head -60)"
	else
		t_ok "memcheck clean (${T_SECS}s): ${*:1:6}"
	fi
}
