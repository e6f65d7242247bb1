#!/bin/bash
# hooks/systemd: the renew timer, its service and the OnFailure alert unit.
# No systemd runs in this container, so: `systemd-analyze verify` on the
# instances (copies whose binary path points at the built certfleet, and
# whose man pages are found through MANPATH, as verify checks both), the
# hardening and timer settings, `systemd-analyze security --offline`, and
# then each unit's ExecStart= command lines run for real (paths mapped
# into the test bed) against test-bed nodes and Pebble: the renew line
# renews, deploys and writes its metrics; the alert lines print status and
# call the optional alert script with the instance name.
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
t_start
acme_start
command -v systemd-analyze >/dev/null || t_skip "systemd-analyze not installed (Debian package systemd)"
SRC=$T_ROOT/hooks/systemd
BIN=$(readlink -f "$CERTFLEET")
U=$T_TMP/units
mkdir -p "$U" "$T_TMP/man/man1" "$T_TMP/man/man5"
for f in "$SRC"/*; do
	sed "s|/usr/local/bin/certfleet|$BIN|g" "$f" >"$U/${f##*/}"
done
cp "$T_ROOT/docs/certfleet.1" "$T_TMP/man/man1/" 2>/dev/null
cp "$T_ROOT/docs/certfleet-playbook.5" "$T_TMP/man/man5/" 2>/dev/null
SVC=$SRC/certfleet-renew@.service
TIMER=$SRC/certfleet-renew@.timer
ALERT=$SRC/certfleet-alert@.service

t_step "systemd-analyze verify: the three instances, no complaint at all"
export MANPATH=$T_TMP/man
assert_exit 0 systemd-analyze verify "$U/certfleet-renew@web.service" \
    "$U/certfleet-renew@web.timer" "$U/certfleet-alert@web.service"
assert_eq "$(cat "$T_OUT" "$T_ERR")" "" "verify printed nothing (warnings count too)"
# the same check does catch mistakes: a copy with a bad value
mkdir -p "$T_TMP/bad"
sed 's/^ProtectSystem=strict/ProtectSystem=bogus/' "$U/certfleet-renew@.service" \
    >"$T_TMP/bad/certfleet-renew@.service"
systemd-analyze verify "$T_TMP/bad/certfleet-renew@web.service" >"$T_TMP/bad.out" 2>&1
assert_file_match "$T_TMP/bad.out" 'protect system value' "(control: verify reports a bad value)"
# the documented opt-out for partial runs is a valid drop-in
mkdir -p "$U/certfleet-renew@web.service.d"
printf '[Service]\nSuccessExitStatus=2\n' >"$U/certfleet-renew@web.service.d/partial.conf"
assert_exit 0 systemd-analyze verify "$U/certfleet-renew@web.service"
assert_eq "$(cat "$T_OUT" "$T_ERR")" "" "the SuccessExitStatus=2 drop-in verifies"
rm -r "$U/certfleet-renew@web.service.d"

t_step "the service: oneshot renew, OnFailure alert, metrics per certificate, hardened"
line() { assert_file_match "$1" "^$2\$" "${1##*/}: $2"; }
line "$SVC" 'Type=oneshot'
line "$SVC" 'OnFailure=certfleet-alert@%i\.service'
line "$SVC" 'ExecStart=/usr/local/bin/certfleet --state-dir /var/lib/certfleet --wait=900 --metrics /var/lib/prometheus/node-exporter/certfleet-%i\.prom -p /etc/certfleet/playbooks/%i\.json renew'
for kv in NoNewPrivileges=yes ProtectSystem=strict StateDirectory=certfleet \
    PrivateTmp=yes ProtectHome=yes 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
    CapabilityBoundingSet= PrivateDevices=yes ProtectKernelTunables=yes \
    ProtectKernelModules=yes ProtectKernelLogs=yes ProtectControlGroups=yes \
    RestrictNamespaces=yes LockPersonality=yes MemoryDenyWriteExecute=yes \
    SystemCallArchitectures=native UMask=0077; do
	line "$SVC" "$kv"
done
line "$SVC" 'ReadWritePaths=/var/lib/certfleet -/var/lib/prometheus/node-exporter'
if grep -q '^SuccessExitStatus' "$SVC"; then
	t_notok "exit 2 (partial) fails the unit by default"
else
	t_ok "exit 2 (partial) fails the unit by default"
fi
assert_file_match "$SVC" '^#   SuccessExitStatus=2$' "the opt-out is documented in the unit"
systemd-analyze security --offline=yes "$U/certfleet-renew@web.service" >"$T_TMP/sec.out" 2>&1
EXPO=$(sed -n 's/.*Overall exposure level for certfleet-renew@web.service: \([0-9.]*\).*/\1/p' "$T_TMP/sec.out")
t_log "    systemd-analyze security: exposure $EXPO"
assert_le "${EXPO:-99}" 2.5 "systemd-analyze security --offline exposure"

t_step "the timer: twice a day, random delay 1h, persistent"
line "$TIMER" 'OnCalendar=\*-\*-\* 00,12:00:00'
line "$TIMER" 'RandomizedDelaySec=1h'
line "$TIMER" 'Persistent=yes'
line "$TIMER" 'WantedBy=timers.target'
CAL=$(sed -n 's/^OnCalendar=//p' "$TIMER")
systemd-analyze calendar --iterations=3 "$CAL" >"$T_TMP/cal.out" 2>&1
mapfile -t NEXT < <(sed -n 's/^ *\(Next elapse\|Iter\. #[0-9]*\): //p' "$T_TMP/cal.out" | head -3)
if [ "${#NEXT[@]}" -ge 2 ]; then
	D=$(( $(date -d "${NEXT[1]}" +%s) - $(date -d "${NEXT[0]}" +%s) ))
	assert_eq "$D" 43200 "consecutive runs 12 h apart"
else
	t_notok "systemd-analyze calendar gave two elapses" "$(cat "$T_TMP/cal.out")"
fi
line "$ALERT" 'ExecStart=-/usr/local/bin/certfleet --state-dir /var/lib/certfleet -p /etc/certfleet/playbooks/%i\.json status'

# ---- the command lines, for real ----------------------------------------
# argv of every ExecStart= of unit $1 for instance $2 into the files
# $T_TMP/exec.$3.1, .2, ... (NUL-separated words: bash variables cannot
# hold NULs), with the installed paths mapped into the test bed; prints
# how many.  systemd's quoting rules are close enough to shlex for these
# lines.
exec_lines() {
	"$TB_PY" - "$1" "$2" "$BIN" "$TB/state" "$T_TMP/textfile" "$T_TMP/playbooks" \
	    "$T_TMP/alert" "$T_TMP/exec.$3" <<'PY'
import shlex, sys
unit, inst, binp, state, textfile, pbdir, alert, out = sys.argv[1:]
n = 0
for l in open(unit):
    if not l.startswith("ExecStart="):
        continue
    v = l[len("ExecStart="):].strip().lstrip("-")
    v = (v.replace("/usr/local/bin/certfleet", binp)
          .replace("/var/lib/certfleet", state)
          .replace("/var/lib/prometheus/node-exporter", textfile)
          .replace("/etc/certfleet/playbooks", pbdir)
          .replace("/etc/certfleet/alert", alert)
          .replace("%i", inst))
    n += 1
    with open("%s.%d" % (out, n), "w") as f:
        f.write("\0".join(shlex.split(v)))
print(n)
PY
}
# exec_argv TAG N: ARGV=( words of that command line )
exec_argv() { mapfile -d '' -t ARGV <"$T_TMP/exec.$1.$2"; }

t_step "certfleet-renew@web.service's ExecStart, run against the test bed and Pebble"
tb_up 2
acme_up || t_fatal "pebble did not start"
pebble_add_a node.test "$(tb_ip 1)" || t_fatal "pebble_add_a"
pebble_add_a www.node.test "$(tb_ip 2)" || t_fatal "pebble_add_a"
mkdir -p "$T_TMP/playbooks" "$T_TMP/textfile"
acme_playbook "$T_TMP/playbooks/web.json" http-01 node.test www.node.test
assert_eq "$(exec_lines "$SVC" web renew)" 1 "one ExecStart"
exec_argv renew 1
t_log "    ${ARGV[*]}"
assert_exit 0 "${ARGV[@]}"
M=$T_TMP/textfile/certfleet-web.prom
assert_file_match "$M" '^certfleet_run_exit_code\{certificate="web",command="renew"\} 0$' "metrics written where node_exporter reads"
assert_file_match "$M" '^certfleet_renewal_consecutive_failures\{certificate="web"\} 0$' "renewal state in the metrics"
CUR=$(cat "$TB/state/web/current" 2>/dev/null)
SHA=$(tb_cert_sha256 "$TB/state/web/versions/$CUR/fullchain.pem")
assert_served 1 "$SHA" "n1 serves the renewed certificate"
assert_served 2 "$SHA" "n2 serves the renewed certificate"

t_step "certfleet-alert@web.service's ExecStart lines: status, then the alert script"
printf '#!/bin/sh\necho "alert for $1 ($MONITOR_UNIT)" >"%s"\n' "$T_TMP/alert.out" >"$T_TMP/alert"
chmod 755 "$T_TMP/alert"
assert_eq "$(exec_lines "$ALERT" web alert)" 2 "two ExecStart lines"
exec_argv alert 1
assert_exit 0 "${ARGV[@]}"
assert_file_match "$T_OUT" '^certificate web: version ' "status output (into the journal)"
exec_argv alert 2
assert_exit 0 env MONITOR_UNIT=certfleet-renew@web.service "${ARGV[@]}"
assert_eq "$(cat "$T_TMP/alert.out" 2>/dev/null)" "alert for web (certfleet-renew@web.service)" \
    "the alert script got the instance name and systemd's MONITOR_* env"
rm "$T_TMP/alert" "$T_TMP/alert.out"
assert_exit 0 "${ARGV[@]}"
assert_eq "$(cat "$T_OUT" "$T_ERR")" "" "without an alert script the line prints nothing"
assert_eq "$(ls "$T_TMP/alert.out" 2>&1 >/dev/null | grep -c 'No such file')" 1 \
    "without an alert script nothing ran"
t_done
