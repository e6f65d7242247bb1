#!/bin/bash
# `deploy --dry-run` and `renew --dry-run` check each node without changing
# it (preflight), and `validate` checks the local SSH files:
#   n1  healthy (root)
#   n2  /srv/tls missing
#   n3  /srv/tls read-only
#   n4  login "certfleet" that may not write /srv/tls, whose check is
#       `sudo -n ...` with no sudoers rule (sudo would ask for a password)
#   n5  login "certfleet" that owns /srv/tls, files root's: the key (0600)
#       cannot be kept -> reported; the fullchain will be kept as a copy
# Every problem is reported with its cause; nothing on any node changes
# (bytes, modes, times, no temp files), the state dir is not written, no
# node is quarantined.  validate: a missing identity, a 0640 identity
# ("group-readable"), a missing or group-writable known_hosts: exit 78
# naming the file.
. "$(dirname "$0")/../lib/common.sh"
t_start
command -v sudo >/dev/null || t_skip "sudo is not installed (tests/lib/deps.sh installs it)"

tb_up 5
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
PB=$TB/pb.json
CHECK='nginx -t -q -c /srv/nginx.conf'
RELOAD='nginx -s reload -c /srv/nginx.conf'
tb_playbook "$PB" canary=0 deploy.check="sudo -n $CHECK" deploy.reload="sudo -n $RELOAD"

t_step "set up the faults"
tb_exec 2 mv /srv/tls /srv/tls.aside || t_fatal "n2"
tb_exec 3 sh -c 'mount --bind /srv/tls /srv/tls && mount -o remount,bind,ro /srv/tls' || t_fatal "n3"
for i in 4 5; do
	tb_own_users "$i" || t_fatal "n$i: tb_own_users"
	tb_exec "$i" sh -e -c "useradd --system --create-home --shell /bin/sh certfleet
		usermod -p '*' certfleet
		install -d -o certfleet -m 0700 ~certfleet/.ssh
		cp /srv/authorized_keys ~certfleet/.ssh/authorized_keys" || t_fatal "n$i: login"
done
tb_exec 5 chown certfleet /srv/tls || t_fatal "n5: chown"
"$TB_PY" - "$PB" <<'EOF'
import json, sys
pb = json.load(open(sys.argv[1]))
for n in pb["nodes"]:
    if n["name"] in ("n4", "n5"):
        n["user"] = "certfleet"
json.dump(pb, open(sys.argv[1], "w"), indent=2)
EOF
# n5's check must not be what fails there: a sudoers rule for it
printf 'certfleet ALL=(root) NOPASSWD: /usr/sbin/%s, /usr/sbin/%s\n' "$CHECK" "$RELOAD" >"$T_TMP/sudo"
tb_exec 5 sh -c 'cat >/etc/sudoers.d/certfleet && chmod 0440 /etc/sudoers.d/certfleet' <"$T_TMP/sudo"
for i in 1 2 3 4 5; do t_snap "$i" before; done
rm -rf "$TB/state"

t_step "deploy --dry-run: each node's problems, nothing changed"
# exit 2: partial, n1 would deploy, the others would fail
cf_run 2 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem" --dry-run
J=$T_OUT
assert_node "$J" n1 outcome dry-run
assert_nodes "$J" outcome failed n2 n3 n4 n5
assert_nodes "$J" quarantined false n1 n2 n3 n4 n5
assert_nodes "$J" touched false n1 n2 n3 n4 n5
assert_node "$J" n2 error "preflight: directory /srv/tls does not exist"
assert_node "$J" n2 reason write
assert_node "$J" n3 error "preflight: /srv/tls is on a read-only file system"
assert_match "$(node_get "$J" n4 error)" \
    '^preflight: /srv/tls is not writable by certfleet: Permission denied \(the login user certfleet needs write access to /srv/tls; see README: Preparing a node\); check `sudo -n nginx -t -q -c /srv/nginx.conf` would not run unattended \(sudo -n -l: a password is required\): certfleet needs a NOPASSWD sudoers rule for it, see README: Preparing a node; reload `sudo -n nginx -s reload -c /srv/nginx.conf` would not run unattended' \
    "n4: the directory, then check and reload"
assert_node "$J" n4 reason write
assert_match "$(node_get "$J" n5 error)" \
    '^preflight: cannot keep previous version of /srv/tls/privkey.pem: it is not certfleet.s, fs.protected_hardlinks=1 refuses a hard link and certfleet cannot read it to copy it: make certfleet its owner once \(chown certfleet /srv/tls/privkey.pem' \
    "n5: the key that cannot be kept, and the fix"
assert_match "$(node_get "$J" n5 note)" \
    '/srv/tls/fullchain.pem is not certfleet.s and fs.protected_hardlinks=1 refuses a hard link: its previous version will be kept as a copy' \
    "n5: the fullchain will be kept as a copy"
assert_match "$(cat "$T_ERR")" 'failed \(preflight\)' "summary: failures are preflight's, not quarantines"
for i in 1 2 3 4 5; do
	assert_unchanged "$i" before "n$i: dry run changed nothing under /srv"
done
assert_eq "$(tb_exec 2 sh -c 'test -e /srv/tls && echo exists')" "" "n2: /srv/tls not created"
assert_eq "$(find "$TB/state" -type f ! -name lock 2>/dev/null)" "" "no state file written"

t_step "renew --dry-run runs the same preflight"
tb_playbook "$PB.acme" canary=0 deploy.check="sudo -n $CHECK" deploy.reload="sudo -n $RELOAD" nodes=1,4 \
    acme.directory=https://127.0.0.1:1/dir acme.challenge=http-01
"$TB_PY" -c 'import json,sys; pb=json.load(open(sys.argv[1]))
for n in pb["nodes"]:
    if n["name"] == "n4": n["user"] = "certfleet"
json.dump(pb, open(sys.argv[1],"w"))' "$PB.acme"
# a current certificate in the store to converge to (its own state dir)
mkdir -m 700 "$TB/state.acme"
assert_exit 0 "$CERTFLEET" --state-dir "$TB/state.acme" -p "$PB.acme" deploy \
    --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem" --only n1
t_state=$(cd "$TB/state.acme" && find . -type f ! -name lock -print0 | sort -z | xargs -0 sha256sum)
t_snap 4 renew
assert_exit 2 "$CERTFLEET" --json --state-dir "$TB/state.acme" -p "$PB.acme" renew --dry-run --force
J=$T_OUT
t_log "$(head -c 1500 "$J")"
assert_node "$J" n1 outcome unchanged
assert_match "$(node_get "$J" n4 error)" '^preflight: /srv/tls is not writable by certfleet' "renew: n4 reported"
assert_match "$(node_get "$J" n4 error)" '/srv/www/.well-known/acme-challenge is not writable by certfleet' "renew: n4's webroot reported"
assert_unchanged 4 renew "n4: renew --dry-run changed nothing"
assert_eq "$(cd "$TB/state.acme" && find . -type f ! -name lock -print0 | sort -z | xargs -0 sha256sum)" \
    "$t_state" "renew --dry-run: state unchanged"

t_step "fixed: the dry run is clean and still changes nothing"
tb_exec 2 mv /srv/tls.aside /srv/tls
tb_exec 3 umount /srv/tls
tb_exec 4 sh -c 'chown certfleet /srv/tls /srv/tls/*.pem' && tb_exec 4 sh -c 'cat >/etc/sudoers.d/certfleet && chmod 0440 /etc/sudoers.d/certfleet' <"$T_TMP/sudo"
tb_exec 5 chown certfleet /srv/tls/privkey.pem
for i in 1 2 3 4 5; do t_snap "$i" fixed; done
cf_run 0 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem" --dry-run
assert_node "$T_OUT" n1 outcome unchanged "n1 already serves it (renew step)"
assert_nodes "$T_OUT" outcome dry-run n2 n3 n4 n5
for i in 1 2 3 4 5; do assert_unchanged "$i" fixed "n$i: nothing changed"; done
cf_run 0 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
for i in 1 2 3 4 5; do assert_node_has "$i" "$NEW"; done

t_step "validate: identity and known_hosts"
ID=$T_TMP/id
cp "$TB/id_ed25519" "$ID" && chmod 600 "$ID"
cp "$TB/known_hosts" "$T_TMP/kh" && chmod 644 "$T_TMP/kh"
vpb() { tb_playbook "$T_TMP/v.json" ssh.identity="$1" ssh.known_hosts="$2"; }
vpb "$ID" "$T_TMP/kh"
cf_run 0 -p "$T_TMP/v.json" validate
vpb "$T_TMP/nope/id_ed25519" "$T_TMP/kh"
cf_run 78 -p "$T_TMP/v.json" validate
assert_eq "$(cat "$T_ERR")" "certfleet: identity $T_TMP/nope/id_ed25519: No such file or directory" "missing identity named"
chmod 0640 "$ID"
vpb "$ID" "$T_TMP/kh"
cf_run 78 -p "$T_TMP/v.json" validate
assert_match "$(cat "$T_ERR")" "^certfleet: UNPROTECTED PRIVATE KEY FILE: $T_TMP/id is mode 0640 \(group-readable\)" "0640 identity: group-readable"
chmod 0604 "$ID"
cf_run 78 -p "$T_TMP/v.json" validate
assert_match "$(cat "$T_ERR")" "$T_TMP/id is mode 0604 \(world-readable\)" "0604 identity: world-readable"
chmod 0600 "$ID"
vpb "$ID" "$T_TMP/nope/known_hosts"
cf_run 78 -p "$T_TMP/v.json" validate
assert_match "$(cat "$T_ERR")" "^certfleet: known_hosts $T_TMP/nope/known_hosts: No such file or directory" "missing known_hosts named"
chmod 0664 "$T_TMP/kh"
vpb "$ID" "$T_TMP/kh"
cf_run 78 -p "$T_TMP/v.json" validate
assert_match "$(cat "$T_ERR")" "^certfleet: known_hosts $T_TMP/kh is mode 0664 \(group-writable\)" "group-writable known_hosts named"
assert_eq "$(wc -l <"$T_ERR")" 1 "one line on stderr"

t_done
