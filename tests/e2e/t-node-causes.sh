#!/bin/bash
# Nodes prepared as README's "Preparing a node" says (its shell block run on
# the node, paths swapped for the test bed's), and what a node's own cause
# looks like when something is wrong on it:
#   n1  root login, healthy
#   n2  the README login "certfleet", existing files still root's
#       (fullchain root 0644, key root:certfleet 0640: the chown skipped);
#       fs.protected_hardlinks=1 refuses the backup link -> a copy is kept;
#       a verify failure and a check failure both put the old files back
#   n3  as n2 but the key is root 0600: the login can neither link nor read
#       it -> `write`, message names protected_hardlinks and the chown;
#       nothing swapped, so not "rolled back"
#   n4  root login, /srv/tls full                -> No space left on device
#   n5  root login, /srv/tls read-only           -> Read-only file system
#   n6  README login but /srv/tls left root's    -> Permission denied + hint
# n4..n6 fail before any swap: rolled_back false, bytes unchanged, no temp
# files.  Fixed as the messages say, the next run converges everywhere.
. "$(dirname "$0")/../lib/common.sh"
t_start

# protected_hardlinks is a kernel-wide setting: make it 1 for this test
PH=$(sysctl -n fs.protected_hardlinks)
if [ "$PH" != 1 ]; then
	sysctl -qw fs.protected_hardlinks=1 || t_fatal "cannot set fs.protected_hardlinks"
	trap 'sysctl -qw fs.protected_hardlinks='"$PH"'; t_cleanup' EXIT
fi
command -v sudo >/dev/null || t_skip "sudo is not installed (tests/lib/deps.sh installs it)"

tb_up 6
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
OLD=$TB/certs/old
OLD_SHA=$(tb_cert_sha256 "$OLD/fullchain.pem")
NEW_SHA=$(tb_cert_sha256 "$NEW/fullchain.pem")
CHECK='nginx -t -q -c /srv/nginx.conf'
RELOAD='nginx -s reload -c /srv/nginx.conf'

. "$T_ROOT/tests/lib/readme.sh"

t_step "prepare n2, n3, n6 as README says"
for i in 2 3 6; do tb_own_users "$i" || t_fatal "n$i: tb_own_users"; done
readme_prep 2 '^find /srv/tls'
readme_prep 3 '^find /srv/tls'
readme_prep 6 '^(find|install -d -o certfleet -g root -m 0750) /srv/tls'
tb_exec 2 chown root:certfleet /srv/tls/privkey.pem && tb_exec 2 chmod 0640 /srv/tls/privkey.pem ||
    t_fatal "n2: key root:certfleet 0640"
assert_eq "$(tb_exec 2 stat -c '%U:%G %a' /srv/tls /srv/tls/fullchain.pem /srv/tls/privkey.pem | tr '\n' ' ')" \
    "certfleet:root 750 root:root 644 root:certfleet 640 " "n2: dir certfleet's, files root's"
assert_eq "$(tb_exec 3 stat -c '%U:%G %a' /srv/tls/privkey.pem)" "root:root 600" "n3: key root's, 0600"
assert_eq "$(tb_exec 6 stat -c '%U %a' /srv/tls)" "root 755" "n6: /srv/tls still root's"
assert_eq "$(tb_exec 2 stat -c '%U %a' /home/certfleet/.ssh)" "certfleet 700" "n2: ~certfleet/.ssh 0700"
assert_eq "$(tb_ssh_as 2 certfleet id -un)" certfleet "n2: README's key line lets the coordinator in as certfleet"
assert_eq "$(tb_ssh_as 2 certfleet sudo -n $CHECK && echo ok)" ok "n2: sudo -n check runs without a password"

PB=$TB/pb.json
tb_playbook "$PB" canary=0 deploy.check="sudo -n $CHECK" deploy.reload="sudo -n $RELOAD"
# n2, n3, n6 log in as certfleet; root (n1, n4, n5) runs sudo -n too
"$TB_PY" - "$PB" <<'EOF'
import json, sys
pb = json.load(open(sys.argv[1]))
for n in pb["nodes"]:
    if n["name"] in ("n2", "n3", "n6"):
        n["user"] = "certfleet"
json.dump(pb, open(sys.argv[1], "w"), indent=2)
EOF

t_step "break n4 (disk full) and n5 (read-only)"
tb_disk_full 4 || t_fatal "tb_disk_full"
tb_exec 5 sh -c 'mount --bind /srv/tls /srv/tls && mount -o remount,bind,ro /srv/tls' ||
    t_fatal "n5: cannot mount /srv/tls read-only"
for i in 2 3 4 5 6; do t_snap "$i" before; done

t_step "n2: a verify failure puts the copies back (reload made a no-op)"
# its own state dir: these runs must not leave n2 quarantined for the main one
mkdir -m 700 "$TB/state.n2"
tb_ignore_reload 2
tb_playbook "$PB.n2" canary=0 nodes=2 deploy.check="sudo -n $CHECK" \
    deploy.reload="sudo -n /srv/reload.sh" verify_timeout=2
"$TB_PY" -c 'import json,sys; pb=json.load(open(sys.argv[1])); pb["nodes"][0]["user"]="certfleet"; json.dump(pb, open(sys.argv[1],"w"))' "$PB.n2"
printf 'certfleet ALL=(root) NOPASSWD: /srv/reload.sh\n' >"$T_TMP/reload.sudo"
tb_exec 2 sh -c "cat >/etc/sudoers.d/certfleet-reload && chmod 0440 /etc/sudoers.d/certfleet-reload" <"$T_TMP/reload.sudo"
cf_run 1 --json --state-dir "$TB/state.n2" -p "$PB.n2" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
assert_node "$T_OUT" n2 reason verify-failed
assert_node "$T_OUT" n2 rolled_back true
assert_bytes 2 /srv/tls/fullchain.pem "$OLD/fullchain.pem"
assert_bytes 2 /srv/tls/privkey.pem "$OLD/privkey.pem"
assert_mode 2 /srv/tls/privkey.pem 0640
assert_served 2 "$OLD_SHA" "n2 serves the old certificate after the rollback"
assert_no_leftovers 2
tb_fix_reload 2
tb_exec 2 rm /etc/sudoers.d/certfleet-reload
# the rollback put back copies owned by certfleet; make them root's again
tb_exec 2 chown root:root /srv/tls/fullchain.pem && tb_exec 2 chown root:certfleet /srv/tls/privkey.pem
tb_exec 2 rm -f /srv/tls/.fullchain.pem.certfleet-prev /srv/tls/.privkey.pem.certfleet-prev

t_step "n2: a check failure puts the copies back"
tb_break_check 2
cf_run 1 --json --state-dir "$TB/state.n2" -p "$PB.n2" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
assert_node "$T_OUT" n2 reason check-failed
assert_node "$T_OUT" n2 rolled_back true
assert_match "$(node_get "$T_OUT" n2 error)" "previous files restored" "n2: says the files were restored"
assert_bytes 2 /srv/tls/fullchain.pem "$OLD/fullchain.pem"
assert_bytes 2 /srv/tls/privkey.pem "$OLD/privkey.pem"
assert_served 2 "$OLD_SHA" "n2 serves the old certificate"
assert_no_leftovers 2
tb_fix_check 2
tb_exec 2 chown root:root /srv/tls/fullchain.pem && tb_exec 2 chown root:certfleet /srv/tls/privkey.pem
tb_exec 2 rm -f /srv/tls/.fullchain.pem.certfleet-prev /srv/tls/.privkey.pem.certfleet-prev
t_snap 2 before

t_step "deploy: n1 and n2 deployed, n3..n6 fail with their node's cause"
cf_run 2 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
ERR=$(cat "$T_ERR")
assert_nodes "$J" outcome deployed n1 n2
assert_node_has 1 "$NEW"
# n2 as assert_node_has, but its key backup is the previous key's copy:
# mode 0640 as that key was (group: the login's private group)
assert_served 2 "$NEW_SHA" "n2 serves new"
assert_bytes 2 /srv/tls/fullchain.pem "$NEW/fullchain.pem"
assert_bytes 2 /srv/tls/privkey.pem "$NEW/privkey.pem"
assert_mode 2 /srv/tls/fullchain.pem 0644
assert_mode 2 /srv/tls/privkey.pem 0600
assert_no_leftovers 2
assert_eq "$(tb_file_owner 2 /srv/tls/privkey.pem)" "certfleet:certfleet" "n2: the new key is the login's"
t_log "n2 backups: $(tb_backups 2 | tr '\n' ' ')"
assert_bytes 2 /srv/tls/.fullchain.pem.certfleet-prev "$OLD/fullchain.pem"
assert_bytes 2 /srv/tls/.privkey.pem.certfleet-prev "$OLD/privkey.pem"
assert_eq "$(tb_exec 2 stat -c %a /srv/tls/.fullchain.pem.certfleet-prev /srv/tls/.privkey.pem.certfleet-prev | tr '\n' ' ')" \
    "644 640 " "n2: the copies keep the previous modes"
assert_eq "$(tb_file_owner 2 /srv/tls/.privkey.pem.certfleet-prev)" "certfleet:certfleet" \
    "n2: the key's copy: the login's, its group the previous one's"

declare -A CAUSE=(
	[3]='cannot keep previous version of /srv/tls/privkey.pem: hard link refused \(Operation not permitted: fs.protected_hardlinks=1 lets a login hard-link only files it owns\) and cannot copy it \(Permission denied\): make the login user certfleet its owner once \(chown certfleet /srv/tls/privkey.pem; see README: Preparing a node\)'
	[4]='cannot write /srv/tls/[a-z]+\.pem: No space left on device \(the file system of /srv/tls is full\)'
	[5]='cannot write /srv/tls/fullchain\.pem: Read-only file system \(/srv/tls is on a read-only file system\)'
	[6]='cannot write /srv/tls/fullchain\.pem: Permission denied \(the login user certfleet needs write access to /srv/tls; see README: Preparing a node\)'
)
for i in 3 4 5 6; do
	t_step "n$i: its own cause, nothing swapped"
	assert_node "$J" "n$i" outcome failed
	assert_node "$J" "n$i" reason write
	assert_match "$(node_get "$J" "n$i" error)" "^${CAUSE[$i]}$" "n$i: error names the cause"
	assert_node "$J" "n$i" rolled_back false
	assert_node "$J" "n$i" touched false
	line=$(printf '%s\n' "$ERR" | grep -E "certfleet: n$i +[0-9.]+ +FAILED")
	assert_eq "$(printf '%s\n' "$line" | grep -c 'rolled back')" 0 "n$i: the report does not say rolled back"
	assert_served "$i" "$OLD_SHA" "n$i still serves the old certificate"
	assert_bytes "$i" /srv/tls/fullchain.pem "$OLD/fullchain.pem"
	assert_bytes "$i" /srv/tls/privkey.pem "$OLD/privkey.pem"
	assert_no_leftovers "$i"
done
# n3: the fullchain's previous version was copied before the key's failed;
# nothing else changed
assert_eq "$(tb_exec 3 stat -c '%U:%G %a' /srv/tls/fullchain.pem /srv/tls/privkey.pem | tr '\n' ' ')" \
    "root:root 644 root:root 600 " "n3: targets still root's, same modes"
for i in 5 6; do assert_unchanged "$i" before "n$i: nothing under /srv changed"; done
# n4: the temp file was created (a full disk still has inodes) and removed:
# only the directory's times moved
grep -v '^\./tls directory ' "$T_TMP/snap.n4.before" >"$T_TMP/snap.n4.before.f"
assert_eq "$(tb_snapshot 4 | grep -v '^\./tls directory ')" "$(cat "$T_TMP/snap.n4.before.f")" \
    "n4: every file under /srv unchanged"

t_step "the operator does what the messages say: the next run converges"
tb_exec 3 chown certfleet /srv/tls/privkey.pem        # the README's find/chown step
tb_disk_unfull 4
tb_exec 5 umount /srv/tls
tb_exec 6 sh -c 'install -d -o certfleet -g root -m 0750 /srv/tls &&
	find /srv/tls -maxdepth 1 -type f -exec chown certfleet {} +'
cf_run 0 --json -p "$PB" deploy
for i in 1 3 4 5 6; do assert_node_has "$i" "$NEW"; done
assert_served 2 "$NEW_SHA" "n2 still serves new"
assert_eq "$(tb_exec 3 stat -c %a /srv/tls/.privkey.pem.certfleet-prev)" 600 "n3: key backup 0600"

t_done
