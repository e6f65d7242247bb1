#!/bin/bash
# status, verify and check never read a private key: a monitoring user
# who owns a copy of the state directory but cannot read any privkey.pem
# in it (0600, root's) gets the same answers as root.  deploy, which does
# need the key, fails for that user naming the key file (so the key files
# really are out of reach).  The monitoring user has its own SSH identity
# copy, so the test holds whether or not verify/check open SSH at all.
. "$(dirname "$0")/../lib/common.sh"
t_start

MON_USER=nobody
id "$MON_USER" >/dev/null 2>&1 || t_skip "no user $MON_USER"
tb_up 2
tb_make_cert new 90 || t_fatal "tb_make_cert new"
tb_make_cert new2 90 || t_fatal "tb_make_cert new2"
PB=$TB/pb.json
tb_playbook "$PB"
cf_run 0 -p "$PB" deploy --cert "$TB/certs/new/fullchain.pem" --key "$TB/certs/new/privkey.pem"
cf_run 0 -p "$PB" deploy --cert "$TB/certs/new2/fullchain.pem" --key "$TB/certs/new2/privkey.pem"
NEW2_SHA=$(tb_cert_sha256 "$TB/certs/new2/fullchain.pem")

t_step "the monitoring user's view: state dir its own, key files root's 0600"
# under the test's temp dir (removed with it); the user may pass through
MON=$T_TMP/mon
mkdir -p "$MON"
chmod 0711 "$T_TMP"
chmod 0755 "$MON"
cp -a "$TB/state" "$MON/state"
cp "$TB/id_ed25519" "$MON/id"
cp "$TB/known_hosts" "$MON/known_hosts"
"$TB_PY" - "$PB" "$MON/pb.json" "$MON" <<'EOF'
import json, sys
pb = json.load(open(sys.argv[1]))
pb["ssh"]["identity"] = sys.argv[3] + "/id"
pb["ssh"]["known_hosts"] = sys.argv[3] + "/known_hosts"
json.dump(pb, open(sys.argv[2], "w"), indent=2)
EOF
chmod 0644 "$MON/pb.json" "$MON/known_hosts"
chown -R "$MON_USER" "$MON/state" "$MON/id"
chmod 0600 "$MON/id"
KEYS=$(find "$MON/state" -name privkey.pem)
assert_eq "$(printf '%s\n' "$KEYS" | grep -c .)" 2 "two stored versions, two key files"
for k in $KEYS; do
	chown root:root "$k"
	chmod 0600 "$k"
done
for k in $KEYS; do
	if runuser -u "$MON_USER" -- test -r "$k"; then
		t_notok "$MON_USER cannot read $k"
	else
		t_ok "$MON_USER cannot read $k"
	fi
done
mon() { runuser -u "$MON_USER" -- "$CERTFLEET" --state-dir "$MON/state" -p "$MON/pb.json" "$@"; }

t_step "status, verify, check work without the keys"
assert_exit 0 mon --json status
assert_json "$T_OUT" 'd["certificate"]["sha256"]' "$NEW2_SHA"
assert_exit 0 mon --json verify
assert_nodes "$T_OUT" outcome verified n1 n2
assert_exit 0 mon check
assert_file_match "$T_OUT" '^CERTFLEET OK - ' "check: OK"
assert_exit 0 mon quarantine list
for f in "$T_TMP"/err.*; do
	if grep -q 'privkey\|Permission denied' "$f"; then
		t_notok "no key file error in $(basename "$f")" "$(cat "$f")"
	fi
done

t_step "deploy (which needs the key) fails for that user, naming the key file"
mon deploy --dry-run >"$T_TMP/dep.out" 2>"$T_TMP/dep.err"
assert_ne "$?" 0 "deploy as $MON_USER fails"
assert_file_match "$T_TMP/dep.err" 'privkey.pem' "its error names the key file"

t_done
