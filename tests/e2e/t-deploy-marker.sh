#!/bin/bash
# Exit status 0 is not success: the stage script must print its completion
# marker (certfleet-ok) and the rollback script its own
# (certfleet-rolled-back).  n2's sshd runs every command through a forced
# command (sshd ForceCommand, as an authorized_keys command= would) that
# can swallow the script and exit 0 without running it:
#  - stage swallowed: n2 failed ("write", the error names the missing
#    marker), nothing rolled back, still the old certificate; not "deployed"
#    and not a verify failure after a wait for a certificate never sent;
#  - rollback swallowed after a failed verify: not reported rolled back
#    (the node still holds the new files);
#  - with the forced command passing everything through, a real rollback
#    is reported rolled back (control).
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 2
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
OLD=$TB/certs/old
OLD_SHA=$(tb_cert_sha256 "$OLD/fullchain.pem")
PB=$TB/pb.json
tb_playbook "$PB" deploy.reload=/srv/reload.sh verify_timeout=3 canary=0

D2=$(tb_dir 2)
# /srv/mode: swallow (every command), norollback (only the rollback), or
# pass (run the command as sshd would)
cat >"$D2/forced.sh" <<'EOF'
#!/bin/sh
mode=$(cat /srv/mode 2>/dev/null)
case "$mode:$SSH_ORIGINAL_COMMAND" in
swallow:*|"norollback:sh -s --"*) cat >/dev/null; exit 0 ;;
esac
exec sh -c "$SSH_ORIGINAL_COMMAND"
EOF
chmod 755 "$D2/forced.sh"
echo "ForceCommand /srv/forced.sh" >>"$D2/sshd_config"
{ tb_stop_sshd 2 && tb_start_sshd 2; } || t_fatal "restart n2's sshd"

t_step "stage script swallowed, exit 0: failed, not deployed"
echo swallow >"$D2/mode"
t_snap 2 before
cf_run 2 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
assert_node "$J" n1 outcome deployed
assert_node "$J" n2 outcome failed
assert_node "$J" n2 reason write
assert_match "$(node_get "$J" n2 error)" "without its completion marker" "n2: the error names the missing marker"
assert_node "$J" n2 rolled_back false
assert_node "$J" n2 quarantined true
assert_served 2 "$OLD_SHA" "n2 still serves the old certificate"
assert_unchanged 2 before "n2: nothing under /srv changed"

t_step "rollback swallowed, exit 0: not reported rolled back"
echo norollback >"$D2/mode"
tb_ignore_reload 2
cf_run 2 --json -p "$PB" deploy --force
J=$T_OUT
assert_node "$J" n2 outcome failed
assert_node "$J" n2 reason verify-failed
assert_node "$J" n2 rolled_back false
assert_bytes 2 /srv/tls/fullchain.pem "$NEW/fullchain.pem"

t_step "control: a rollback that ran is reported rolled back"
echo pass >"$D2/mode"
# n2 back to the old files (its no-op reload left the old certificate
# served), so this run writes and backs up again
for f in fullchain.pem privkey.pem; do
	cat "$OLD/$f" >"$D2/tls/$f" || t_fatal "restore $f"
done
cf_run 2 --json -p "$PB" deploy --force
J=$T_OUT
assert_node "$J" n2 reason verify-failed
assert_node "$J" n2 rolled_back true
assert_bytes 2 /srv/tls/fullchain.pem "$OLD/fullchain.pem"
assert_served 2 "$OLD_SHA" "n2 serves the old certificate"

t_step "fixed: deploys"
tb_fix_reload 2
cf_run 0 --json -p "$PB" deploy
assert_node "$T_OUT" n2 outcome deployed
assert_node_has 2 "$NEW"
t_done
