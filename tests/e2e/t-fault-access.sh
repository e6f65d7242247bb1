#!/bin/bash
# Nodes certfleet reaches but must not (or cannot) write to:
#   n2  our key was removed from authorized_keys        -> auth
#   n3  /srv/tls is mounted read-only                   -> write
#   n4  /srv/tls/privkey.pem is a symlink to a real key -> unsafe-path
#   n5  /srv/tls/fullchain.pem is a dangling symlink    -> unsafe-path
#   n6  /srv/tls/privkey.pem is a directory             -> unsafe-path
#   n7  /srv/tls does not exist                         -> write
# Each keeps every byte it had (a symlink is never followed, its target is
# never written or created), is quarantined with its reason and leaves no
# temp file; the healthy n1 is deployed although the canary may be one of
# the broken nodes (host faults say nothing about the certificate).  Fixed,
# the next run converges everywhere.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 7
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
OLD=$TB/certs/old
OLD_SHA=$(tb_cert_sha256 "$OLD/fullchain.pem")
PB=$TB/pb.json
tb_playbook "$PB" canary=1
declare -A REASON=([2]=auth [3]=write [4]=unsafe-path [5]=unsafe-path [6]=unsafe-path [7]=write)

t_step "break n2..n7"
: >"$(tb_dir 2)/authorized_keys"
tb_exec 3 sh -c 'mount --bind /srv/tls /srv/tls && mount -o remount,bind,ro /srv/tls' ||
    t_fatal "n3: cannot mount /srv/tls read-only"
tb_exec 3 sh -c ': >/srv/tls/.probe' 2>/dev/null && t_fatal "n3: /srv/tls still writable"
tb_exec 4 sh -c 'mkdir /srv/elsewhere && mv /srv/tls/privkey.pem /srv/elsewhere/key.pem &&
	ln -s /srv/elsewhere/key.pem /srv/tls/privkey.pem' || t_fatal "n4 setup"
tb_exec 5 sh -c 'mkdir /srv/elsewhere && mv /srv/tls/fullchain.pem /srv/elsewhere/kept.pem &&
	ln -s /srv/elsewhere/planted.pem /srv/tls/fullchain.pem' || t_fatal "n5 setup"
tb_exec 6 sh -c 'mv /srv/tls/privkey.pem /srv/privkey.pem.aside && mkdir -m 700 /srv/tls/privkey.pem &&
	echo inside >/srv/tls/privkey.pem/file' || t_fatal "n6 setup"
tb_exec 7 sh -c 'mv /srv/tls /srv/tls.aside' || t_fatal "n7 setup"
# nginx keeps serving the old certificate from memory on all of them
for i in 2 3 4 5 6 7; do t_snap "$i" before; done
tb_exec 4 stat -c '%N %s %a' /srv/tls/privkey.pem /srv/elsewhere/key.pem >"$T_TMP/n4.before"

cf_run 2 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
assert_node "$J" n1 outcome deployed
assert_node_has 1 "$NEW"
assert_json "$J" 'd["stopped"]' false "the rollout was not stopped"
for i in 2 3 4 5 6 7; do
	t_step "n$i: ${REASON[$i]}"
	assert_node "$J" "n$i" outcome failed
	assert_node "$J" "n$i" reason "${REASON[$i]}"
	assert_node "$J" "n$i" quarantined true
	t_log "n$i error: $(node_get "$J" "n$i" error)"
	assert_served "$i" "$OLD_SHA" "n$i still serves the old certificate"
done

t_step "n2 (auth) and n3 (read-only): nothing under /srv changed at all"
assert_unchanged 2 before "n2: nothing written"
assert_no_login 2
assert_unchanged 3 before "n3: nothing written"
assert_node_files 3 "$OLD"

t_step "n4: the symlink and the key it points to are untouched"
tb_exec 4 stat -c '%N %s %a' /srv/tls/privkey.pem /srv/elsewhere/key.pem >"$T_TMP/n4.after"
assert_eq "$(cat "$T_TMP/n4.after")" "$(cat "$T_TMP/n4.before")" "n4: same symlink, same target"
assert_bytes 4 /srv/elsewhere/key.pem "$OLD/privkey.pem"
assert_bytes 4 /srv/tls/fullchain.pem "$OLD/fullchain.pem"
assert_eq "$(tb_exec 4 ls -A /srv/elsewhere)" "key.pem" "n4: nothing new in /srv/elsewhere"
assert_eq "$(tb_leftovers 4)" "" "n4: no temp files left"

t_step "n5: the dangling symlink was not followed"
assert_eq "$(tb_exec 5 readlink /srv/tls/fullchain.pem)" /srv/elsewhere/planted.pem "n5: symlink unchanged"
assert_eq "$(tb_exec 5 ls -A /srv/elsewhere)" "kept.pem" "n5: planted.pem was never created"
assert_bytes 5 /srv/tls/privkey.pem "$OLD/privkey.pem"
assert_eq "$(tb_leftovers 5)" "" "n5: no temp files left"

t_step "n6: the directory is untouched"
assert_eq "$(tb_exec 6 sh -c 'ls -A /srv/tls/privkey.pem; cat /srv/tls/privkey.pem/file')" \
    "file
inside" "n6: the directory still holds just its file"
assert_bytes 6 /srv/tls/fullchain.pem "$OLD/fullchain.pem"
assert_eq "$(tb_leftovers 6)" "" "n6: no temp files left"

t_step "n7: the missing directory was not created"
assert_eq "$(tb_exec 7 sh -c 'test -e /srv/tls && echo exists')" "" "n7: /srv/tls still absent"

t_step "status: quarantined with their reasons"
t_status
for i in 2 3 4 5 6 7; do
	assert_node "$T_STATUS" "n$i" quarantined true
	assert_node "$T_STATUS" "n$i" reason "${REASON[$i]}"
done

t_step "the operator fixes the nodes: the next run converges"
cp "$TB/id_ed25519.pub" "$(tb_dir 2)/authorized_keys"
tb_exec 3 umount /srv/tls
tb_exec 4 sh -c 'rm /srv/tls/privkey.pem && mv /srv/elsewhere/key.pem /srv/tls/privkey.pem'
tb_exec 5 sh -c 'rm /srv/tls/fullchain.pem && mv /srv/elsewhere/kept.pem /srv/tls/fullchain.pem'
tb_exec 6 sh -c 'rm -r /srv/tls/privkey.pem && mv /srv/privkey.pem.aside /srv/tls/privkey.pem'
tb_exec 7 sh -c 'mv /srv/tls.aside /srv/tls'
cf_run 0 --json -p "$PB" deploy
for i in 1 2 3 4 5 6 7; do assert_node_has "$i" "$NEW"; done
t_status
for i in 2 3 4 5 6 7; do assert_node "$T_STATUS" "n$i" quarantined false; done

t_done
