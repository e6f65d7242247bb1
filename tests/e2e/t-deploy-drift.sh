#!/bin/bash
# What the playbook says must hold on a node, not only the bytes: a node
# that already serves the current certificate still gets one SSH session
# with the audit script.
#   n1  root login: the key left 0644 and the fullchain chowned to nobody
#       -> deploy (same certificate) fixes both and says so (human line,
#       --json "fixed"); the files are not rewritten (same inodes), nginx
#       is not reloaded (same master, same workers).  Then the fullchain's
#       bytes changed on disk while nginx still serves the current one ->
#       the normal stage path puts the right bytes back.
#   n2  login "certfleet" (not root) owning the key: mode drift is fixed,
#       the owner cannot be (chown needs root) -> a warning on the node's
#       line, recorded in its state; `verify` and `check` (no SSH) report it
#       as a WARNING; once fixed (root login) the next deploy clears it.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 2
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
NEW_SHA=$(tb_cert_sha256 "$NEW/fullchain.pem")
PB=$TB/pb.json
FILES='[
  {"path": "/srv/tls/fullchain.pem", "content": "fullchain", "mode": "0644", "owner": "root", "group": "root"},
  {"path": "/srv/tls/privkey.pem", "content": "privkey", "mode": "0600", "owner": "root", "group": "root"}]'
tb_playbook "$PB" canary=0 deploy.files="$FILES"

t_step "first deploy: both nodes get the new certificate"
cf_run 0 -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
for i in 1 2; do assert_node_has "$i" "$NEW"; done

# nginx's master and its workers: a reload replaces the workers
nginx_procs() {
	local m
	m=$(cat "$(tb_dir "$1")/logs/nginx.pid")
	printf '%s:' "$m"
	pgrep -P "$m" | sort | tr '\n' ' '
}
inodes() { tb_exec "$1" stat -c '%i %n' /srv/tls/fullchain.pem /srv/tls/privkey.pem; }

t_step "n1: key left 0644, fullchain chowned to nobody; deploy again (same certificate)"
tb_exec 1 chmod 0644 /srv/tls/privkey.pem
tb_exec 1 chown nobody /srv/tls/fullchain.pem
INO1=$(inodes 1)
PROCS1=$(nginx_procs 1)
assert_match "$PROCS1" '^[0-9]+:[0-9]' "n1: nginx master and workers found"
cf_run 0 --json -p "$PB" deploy
J=$T_OUT
assert_nodes "$J" outcome unchanged n1 n2
assert_json "$J" '" | ".join([n["fixed"] for n in d["nodes"] if n["name"] == "n1"][0])' \
    '/srv/tls/fullchain.pem owner nobody→root | /srv/tls/privkey.pem mode 0644→0600'
assert_json "$J" '[n["fixed"] for n in d["nodes"] if n["name"] == "n2"][0]' '[]'
assert_json "$J" '[n["drift"] for n in d["nodes"] if n["name"] == "n1"][0]' '[]'
assert_match "$(grep ' n1 ' "$T_ERR")" \
    'unchanged \(already serves it\) in [0-9.]+s; fixed: /srv/tls/fullchain.pem owner nobody→root; /srv/tls/privkey.pem mode 0644→0600$' \
    "n1's line says what was fixed"
assert_eq "$(tb_exec 1 stat -c '%a %U:%G' /srv/tls/privkey.pem /srv/tls/fullchain.pem)" \
    "$(printf '600 root:root\n644 root:root')" "n1: modes and owners back"
assert_eq "$(inodes 1)" "$INO1" "n1: files not rewritten (same inodes)"
assert_eq "$(nginx_procs 1)" "$PROCS1" "n1: nginx not reloaded (same master and workers)"
assert_served 1 "$NEW_SHA"
assert_no_leftovers 1

t_step "n1 again, nothing drifted: nothing fixed, nothing rewritten"
cf_run 0 --json -p "$PB" deploy
assert_json "$T_OUT" '[n["fixed"] for n in d["nodes"] if n["name"] == "n1"][0]' '[]'
assert_eq "$(inodes 1)" "$INO1" "n1: same inodes"
assert_eq "$(nginx_procs 1)" "$PROCS1" "n1: no reload"

t_step "n1: fullchain bytes changed on disk (nginx still serves the right one): staged"
tb_exec 1 sh -c 'echo >>/srv/tls/fullchain.pem'
cf_run 0 --json -p "$PB" deploy
assert_node "$T_OUT" n1 outcome deployed
assert_node "$T_OUT" n2 outcome unchanged
assert_node_has 1 "$NEW"

t_step "n2: a login that is not root; key 0644 and the login's own"
tb_own_users 2 || t_fatal "n2: tb_own_users"
tb_exec 2 sh -e -c "useradd --system --create-home --shell /bin/sh certfleet
	usermod -p '*' certfleet
	install -d -o certfleet -m 0700 ~certfleet/.ssh
	cp /srv/authorized_keys ~certfleet/.ssh/authorized_keys" || t_fatal "n2: login"
tb_exec 2 chown certfleet /srv/tls/privkey.pem
tb_exec 2 chmod 0644 /srv/tls/privkey.pem
"$TB_PY" - "$PB" <<'EOF'
import json, sys
pb = json.load(open(sys.argv[1]))
for n in pb["nodes"]:
    if n["name"] == "n2":
        n["user"] = "certfleet"
json.dump(pb, open(sys.argv[1], "w"), indent=2)
EOF
INO2=$(inodes 2)
cf_run 0 --json -p "$PB" deploy
J=$T_OUT
assert_node "$J" n2 outcome unchanged
assert_json "$J" '" | ".join([n["fixed"] for n in d["nodes"] if n["name"] == "n2"][0])' '/srv/tls/privkey.pem mode 0644→0600'
assert_json "$J" '[n["drift"] for n in d["nodes"] if n["name"] == "n2"][0]' \
    '["/srv/tls/privkey.pem owner certfleet, not root (cannot fix: chown needs a root login)"]'
assert_match "$(grep ' n2 ' "$T_ERR")" \
    'fixed: /srv/tls/privkey.pem mode 0644→0600; WARNING: drift not fixed: /srv/tls/privkey.pem owner certfleet, not root' \
    "n2's line: the fix and the warning"
assert_eq "$(tb_exec 2 stat -c '%a %U' /srv/tls/privkey.pem)" "600 certfleet" "n2: mode fixed, owner left"
assert_eq "$(inodes 2)" "$INO2" "n2: key not rewritten"
assert_json "$TB/state/web/nodes.json" 'd["nodes"]["n2"]["drift"]' \
    '/srv/tls/privkey.pem owner certfleet, not root (cannot fix: chown needs a root login)'
assert_json "$TB/state/web/nodes.json" 'd["nodes"]["n1"]["drift"]' null

t_step "verify and check (no SSH) report the recorded drift as a WARNING"
cf_run 0 --json -p "$PB" verify
assert_match "$(cat "$T_ERR")" \
    'WARNING: n2: files drift from the playbook, not fixed by the deploy of [0-9-]+.*: /srv/tls/privkey.pem owner certfleet, not root' \
    "verify warns about n2's drift"
assert_json "$T_OUT" '[n["drift"] for n in d["nodes"] if n["name"] == "n2"][0]' \
    '["/srv/tls/privkey.pem owner certfleet, not root (cannot fix: chown needs a root login)"]'
assert_json "$T_OUT" '[n["drift_seen"] > 0 for n in d["nodes"] if n["name"] == "n2"][0]' true
cf_run 1 -p "$PB" check
assert_match "$(cat "$T_OUT")" \
    '^CERTFLEET WARNING - web: .*2/2 nodes serve current \(n2: files drift from the playbook, not fixed by the last deploy\)' \
    "check: WARNING naming n2's drift"

t_step "fixed (root login again, key root's): the next deploy clears it, check is OK"
tb_exec 2 chown root /srv/tls/privkey.pem
tb_playbook "$PB" canary=0 deploy.files="$FILES"
cf_run 0 --json -p "$PB" deploy
assert_json "$T_OUT" '[n["drift"] for n in d["nodes"] if n["name"] == "n2"][0]' '[]'
assert_json "$TB/state/web/nodes.json" 'd["nodes"]["n2"]["drift"]' null
cf_run 0 -p "$PB" check
assert_match "$(cat "$T_OUT")" '^CERTFLEET OK' "check: OK"
t_done
