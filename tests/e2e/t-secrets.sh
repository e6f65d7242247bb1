#!/bin/bash
# The private key never leaks.  Through deploys (also one with a failing
# node, a forced one, a dry run and a rollback), status, verify and
# quarantine list (with --json and --metrics), the key's PEM body, any of
# its base64 lines and its private scalar (hex, base64url) appear in none
# of: stdout, stderr, --json, the metrics file, the state directory (except
# versions/*/privkey.pem), files certfleet may have left in /tmp, the nodes'
# logs and files outside /srv/tls, and the argv or environment of any
# process on the machine (nodes included) while the commands run: sampled
# every few ms by a poller, and by the node-side check command dumping
# every process at the moment the new files are in place.  Key files are
# 0600 everywhere (store, nodes, backups, temp uploads when seen), the
# state directory 0700.
. "$(dirname "$0")/../lib/common.sh"
t_start
# background helpers of this test die with it, whatever happens
BG=""
# shellcheck disable=SC2154,SC2086
trap 'rc=$?; [ -n "$BG" ] && kill $BG 2>/dev/null; (exit $rc); t_cleanup' EXIT

tb_up 3
tb_make_cert new 90 || t_fatal "tb_make_cert"
tb_make_cert newer 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
NEWER=$TB/certs/newer
PB=$TB/pb.json
M=$T_TMP/metrics.prom
CAP=$T_TMP/cap
mkdir -p "$CAP"
touch "$T_TMP/marker"

# The check dumps argv and environment of every process into the node's
# /srv/logs (the stage shell and its sshd are alive at that moment).
for i in 1 2 3; do
	cat >"$(tb_dir "$i")/argv-dump.sh" <<'EOF'
for p in /proc/[0-9]*; do
	tr '\0' ' ' <"$p/cmdline" 2>/dev/null; echo
	tr '\0' '\n' <"$p/environ" 2>/dev/null
done >>/srv/logs/argv.$$ 2>/dev/null
exit 0
EOF
done
tb_playbook "$PB" deploy.check="sh /srv/argv-dump.sh && nginx -t -q -c /srv/nginx.conf"

# The poller: argv + environment of every process, and the mode of any
# temp key upload, every ~3 ms until told to stop.
cat >"$T_TMP/poll.py" <<'EOF'
import glob, os, sys, time
out, stop, tb = sys.argv[1], sys.argv[2], sys.argv[3]
seen = set()
modes = {}
n = 0
with open(out + ".argv", "wb") as f:
    while not os.path.exists(stop):
        n += 1
        for p in os.listdir("/proc"):
            if not p.isdigit() or p == str(os.getpid()):
                continue
            for what in ("cmdline", "environ"):
                try:
                    with open("/proc/%s/%s" % (p, what), "rb") as g:
                        b = g.read()
                except OSError:
                    continue
                if b and b not in seen:
                    seen.add(b)
                    f.write(b.replace(b"\0", b"\n") + b"\n")
        for k in glob.glob(tb + "/nodes/n*/tls/.certfleet.*privkey*.tmp"):
            try:
                modes.setdefault(k, "%o" % (os.stat(k).st_mode & 0o7777))
            except OSError:
                pass
        time.sleep(0.003)
with open(out + ".modes", "w") as f:
    for k, v in sorted(modes.items()):
        f.write("%s %s\n" % (k, v))
with open(out + ".rounds", "w") as f:
    f.write("%d\n" % n)
EOF
"$TB_PY" "$T_TMP/poll.py" "$CAP/poll" "$T_TMP/poll.stop" "$TB" &
POLLER=$!
BG="$BG $POLLER"

# run NAME WANT ARGS...: certfleet with --metrics; outputs kept in $CAP
run() {
	local name=$1 want=$2
	shift 2
	assert_exit "$want" "$CERTFLEET" --state-dir "$TB/state" --metrics "$M" "$@"
	cp "$T_OUT" "$CAP/$name.out"
	cp "$T_ERR" "$CAP/$name.err"
	[ -f "$M" ] && cp "$M" "$CAP/$name.metrics"
	return 0
}

t_step "the commands"
run deploy 0 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
run status 0 --json -p "$PB" status
run verify 0 --json -p "$PB" verify
run status-text 0 -p "$PB" status
tb_break_check 3
run deploy-newer 2 --json -p "$PB" deploy --cert "$NEWER/fullchain.pem" --key "$NEWER/privkey.pem"
tb_fix_check 3
run qlist 0 -p "$PB" quarantine list
run dry 0 --json -p "$PB" deploy --dry-run --force
run force 0 --json -p "$PB" deploy --force
run rollback 0 --json -p "$PB" rollback --only n1
run key-as-cert 65 --json -p "$PB" deploy --cert "$NEW/privkey.pem" --key "$NEW/privkey.pem"
run key-mismatch 65 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEWER/privkey.pem"
touch "$T_TMP/poll.stop"
wait "$POLLER"
t_log "poller: $(cat "$CAP/poll.rounds") rounds, $(wc -l <"$CAP/poll.argv") distinct lines"
assert_le 50 "$(cat "$CAP/poll.rounds")" "the poller sampled often"
if [ -s "$CAP/poll.argv" ] && grep -q 'sh -s' "$CAP/poll.argv"; then
	t_ok "the poller saw the remote stage shell ('sh -s')"
else
	t_log "(the poller never caught 'sh -s'; the check-time dumps still cover it)"
fi
for i in 1 2 3; do
	cat "$(tb_dir "$i")"/logs/argv.* >"$CAP/n$i.argv-dump" 2>/dev/null
done
assert_match "$(cat "$CAP"/n*.argv-dump)" "sh -s" "the check-time dumps include the stage shell"

t_step "secrets to look for"
# NAME FILE: every base64 line of the PEM, and the private scalar as hex
# and base64url (a JWK's "d")
: >"$T_TMP/needles"
for k in "$NEW/privkey.pem" "$NEWER/privkey.pem"; do
	grep -v -- '-----' "$k" | awk 'length($0) >= 16' >>"$T_TMP/needles"
	hex=$(openssl pkey -in "$k" -text -noout | awk '/^priv:/{p=1; next} /^pub:/{p=0} p' |
	    tr -d ' :\n')
	[ ${#hex} -ge 60 ] || t_fatal "cannot extract the private scalar of $k"
	echo "$hex" >>"$T_TMP/needles"
	# upper-case hex too, and base64/base64url of the raw bytes
	"$TB_PY" - "$hex" >>"$T_TMP/needles" <<'EOF'
import base64, sys
h = sys.argv[1]
b = bytes.fromhex(h)
print(h.upper())
print(base64.b64encode(b).decode())
print(base64.urlsafe_b64encode(b).decode().rstrip("="))
EOF
done
t_log "$(wc -l <"$T_TMP/needles") needles"
# positive controls: the search finds the key where it must be
assert_eq "$(grep -c -F -f "$T_TMP/needles" "$NEW/privkey.pem")" \
    "$(grep -vc -- '-----' "$NEW/privkey.pem")" "control: every line of the input key is a needle"
for f in "$TB"/state/web/versions/*/privkey.pem; do
	if grep -q -F -f "$T_TMP/needles" "$f"; then
		t_ok "control: the stored ${f#"$TB"/state/web/} is found by the search"
	else
		t_notok "control: the stored ${f#"$TB"/state/web/} is found by the search"
	fi
done

# no_secret WHAT FILE...: none of the needles in any FILE
no_secret() {
	local what=$1 hits f
	local -a files=()
	shift
	# an unmatched glob stays a literal name: grep would fail on it quietly
	for f in "$@"; do [ -f "$f" ] && files+=("$f"); done
	set -- "${files[@]}"
	# zero files searched would pass whatever leaked: every call here
	# has files to look at, or the test itself is broken
	if [ $# -eq 0 ]; then
		t_notok "$what: no files to look at (the search would prove nothing)"
		return 1
	fi
	hits=$(grep -a -l -F -f "$T_TMP/needles" -- "$@" 2>/dev/null | head -5)
	if [ -z "$hits" ]; then
		t_ok "$what: no key material ($# files)"
	else
		t_notok "$what: key material found in:" "$hits"
	fi
}

t_step "outputs"
no_secret "stdout and --json" "$CAP"/*.out
no_secret "stderr" "$CAP"/*.err
# every command ran with --metrics: a missing file is a failure, not a pass
mapfile -t mf < <(ls "$CAP"/*.metrics 2>/dev/null)
no_secret "metrics file" "${mf[@]}"

t_step "process argv and environment"
no_secret "argv/environ sampled on the machine" "$CAP/poll.argv"
no_secret "argv/environ dumped on the nodes at check time" "$CAP"/n*.argv-dump

t_step "the state directory"
mapfile -t sf < <(find "$TB/state" -type f ! -path '*/versions/*/privkey.pem')
no_secret "state files other than versions/*/privkey.pem" "${sf[@]}"
assert_eq "$(stat -c %a "$TB/state")" 700 "state dir is 0700"
for f in "$TB"/state/web/versions/*/privkey.pem; do
	assert_eq "$(stat -c %a "$f")" 600 "${f#"$TB"/} is 0600"
done
bad=$(find "$TB/state" -type d ! -perm 700 -printf '%p %m\n')
assert_eq "$bad" "" "every directory in the store is 0700"
bad=$(find "$TB/state" -type f -perm /077 -name '*key*' -printf '%p %m\n')
assert_eq "$bad" "" "no key file in the store is open to group/others"

t_step "temp files and logs"
mapfile -t tf < <(find /tmp /var/tmp /dev/shm -xdev -type f -newer "$T_TMP/marker" -size -2M \
    ! -path "$TB/certs/*" ! -path "$TB/nodes/*/tls/*" ! -path "$T_TMP/*" ! -path "$TB/ca/*" \
    ! -path "$TB/state/*/versions/*/privkey.pem" 2>/dev/null)
no_secret "files written under /tmp, /var/tmp, /dev/shm during the run" "${tf[@]}"
for i in 1 2 3; do
	mapfile -t nf < <(find "$(tb_dir "$i")" -type f ! -path '*/tls/*' ! -name 'argv.*')
	no_secret "n$i: logs and every file outside /srv/tls" "${nf[@]}"
	assert_mode "$i" /srv/tls/privkey.pem 0600
	assert_backups_safe "$i"
done
if [ -s "$CAP/poll.modes" ]; then
	bad=$(awk '$2 != "600"' "$CAP/poll.modes")
	assert_eq "$bad" "" "temp key uploads seen were 0600 ($(wc -l <"$CAP/poll.modes") seen)"
else
	t_log "(no temp key upload was caught in flight)"
fi

t_done
