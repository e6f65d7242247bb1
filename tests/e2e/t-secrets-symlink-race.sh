#!/bin/bash
# The stage script never follows a link planted by a service account.
#   n1  healthy (root's /srv/tls)
#   n2  /srv/tls owned by the service user `nobody` (as haproxy owns
#       /etc/haproxy/certs): nobody can swap any file in it for a link
#   n3  /srv (a parent of /srv/tls) group-writable
# (a) Without "shared_dir": n2 and n3 are refused (unsafe-path) with the
#     directory, its owner and mode named, nothing under their /srv
#     changes, they keep serving the old certificate; n1 deploys.  The dry
#     run says the same beforehand.
# (b) With "shared_dir": true (n3's parent fixed): a racer running as
#     nobody inside n2's mount namespace swaps every .certfleet* temp it
#     sees in /srv/tls for a symlink to a root-owned victim (/srv/victim,
#     0600) or to the live key, while several deploys of new certificates
#     run; the key is to be the service's (owner nobody:nogroup), so a
#     chown through a link would hand the victim to nobody.  The victim's bytes, owner and mode never change; each run
#     either deploys n2 correctly or fails it cleanly with n2 still serving
#     a certificate whose files are in place (no link at any target).  The
#     racer must have swapped at least once.  Without the racer the next
#     deploy puts the newest certificate on n2.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 3
PB=$TB/pb.json
OLD=$TB/certs/old
OLD_SHA=$(tb_cert_sha256 "$OLD/fullchain.pem")
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
NEW_SHA=$(tb_cert_sha256 "$NEW/fullchain.pem")

t_step "set up: n2's /srv/tls is nobody's, n3's /srv group-writable, a victim file"
tb_exec 2 chown nobody /srv/tls || t_fatal "n2: chown"
tb_exec 3 chmod 0775 /srv || t_fatal "n3: chmod"
for i in 1 2 3; do
	tb_exec "$i" sh -c 'umask 077 && printf "victim %s\n" "$1" >/srv/victim' x "n$i" || t_fatal "victim"
done
victim() { tb_exec 2 stat -c '%U:%G %a %s' /srv/victim; tb_exec 2 sha256sum /srv/victim; }
VICTIM=$(victim)
assert_match "$VICTIM" '^root:root 600 ' "n2: victim is root's, 0600"
tb_playbook "$PB" canary=0
for i in 2 3; do t_snap "$i" before; done

t_step "(a) dry run: the unsafe directories are named beforehand"
cf_run 2 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem" --dry-run
assert_node "$T_OUT" n1 outcome dry-run
assert_match "$(node_get "$T_OUT" n2 error)" \
    '^preflight: directory /srv/tls is owned by nobody \(mode 0755\), not by root or the login user: another account could swap files there for links; refusing .*"shared_dir": true' \
    "n2: dry run names /srv/tls, its owner and mode"
assert_match "$(node_get "$T_OUT" n3 error)" \
    '^preflight: directory /srv is group- or other-writable \(owner root, mode 0775\)' \
    "n3: dry run names the group-writable parent /srv"

t_step "(a) deploy: n2 and n3 refused, nothing changed there, n1 deploys"
cf_run 2 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
assert_node "$J" n1 outcome deployed
assert_nodes "$J" outcome failed n2 n3
assert_nodes "$J" reason unsafe-path n2 n3
assert_nodes "$J" touched false n2 n3
assert_match "$(node_get "$J" n2 error)" \
    '^directory /srv/tls is owned by nobody \(mode 0755\), not by root or the login user' "n2: reason names /srv/tls, owner, mode"
assert_match "$(node_get "$J" n3 error)" \
    '^directory /srv is group- or other-writable \(owner root, mode 0775\)' "n3: reason names /srv"
assert_node_has 1 "$NEW"
for i in 2 3; do
	assert_unchanged "$i" before "n$i: nothing under /srv changed"
	assert_served "$i" "$OLD_SHA" "n$i keeps serving the old certificate"
done

t_step "(b) shared_dir: a racer swaps temps for links while deploys run"
tb_exec 3 chmod 0755 /srv
tb_playbook "$PB" canary=0 deploy.files='[
  {"path": "/srv/tls/fullchain.pem", "content": "fullchain", "mode": "0644", "shared_dir": true},
  {"path": "/srv/tls/privkey.pem", "content": "privkey", "mode": "0600", "owner": "nobody", "group": "nogroup", "shared_dir": true}]'
# nobody, in n2's namespaces: every .certfleet* name in /srv/tls that is not
# a link yet is replaced (rename over it) by a symlink to the victim or to
# the live key; one line per swap
RACER='
import os, sys
d = "/srv/tls"; to = ["/srv/victim", "/srv/tls/privkey.pem"]; k = 0
print("ready", flush=True)
while True:
    try:
        names = os.listdir(d)
    except OSError:
        continue
    for nm in names:
        p = d + "/" + nm
        if not nm.startswith(".certfleet") or os.path.islink(p):
            continue
        try:
            os.symlink(to[k % 2], d + "/zz-racer")
            k += 1
            os.rename(d + "/zz-racer", p)
            print("swap", nm, flush=True)
        except OSError:
            try:
                os.unlink(d + "/zz-racer")
            except OSError:
                pass
'
read -r HOLDER <"$(tb_dir 2)/logs/holder.pid"
nsenter -t "$HOLDER" -n -m -- setpriv --reuid=nobody --regid=nogroup --clear-groups \
    "$TB_PY" -c "$RACER" >"$T_TMP/race.log" 2>&1 &
RACER_PID=$!
trap 't_rc=$?; kill "$RACER_PID" 2>/dev/null; (exit $t_rc); t_cleanup' EXIT
t_wait_for 10 grep -q '^ready' "$T_TMP/race.log" || t_fatal "the racer did not start: $(cat "$T_TMP/race.log")"

serving=$OLD_SHA   # (a) left n2 on the old one
runs=0 ok=0 failed=0
for c in r1 r2 r3 r4 r5 r6 r7 r8; do
	tb_make_cert "$c" 90 || t_fatal "tb_make_cert $c"
	C=$TB/certs/$c
	C_SHA=$(tb_cert_sha256 "$C/fullchain.pem")
	cf --json -p "$PB" deploy --cert "$C/fullchain.pem" --key "$C/privkey.pem" >"$T_TMP/run.$c" 2>"$T_TMP/err.$c"
	rc=$?
	runs=$((runs + 1))
	out=$(node_get "$T_TMP/run.$c" n2 outcome)
	assert_eq "$(victim)" "$VICTIM" "$c: victim's owner, mode and bytes unchanged"
	assert_eq "$(tb_exec 2 sh -c 'for f in /srv/tls/fullchain.pem /srv/tls/privkey.pem; do [ -f "$f" ] && ! [ -L "$f" ] && echo ok; done')" \
	    "$(printf 'ok\nok')" "$c: both targets on n2 are regular files, not links"
	if [ "$out" = deployed ]; then
		ok=$((ok + 1))
		assert_eq "$rc" 0 "$c: deployed everywhere (exit 0)"
		assert_served 2 "$C_SHA" "$c: n2 serves $c"
		assert_bytes 2 /srv/tls/fullchain.pem "$C/fullchain.pem"
		assert_bytes 2 /srv/tls/privkey.pem "$C/privkey.pem"
		assert_mode 2 /srv/tls/privkey.pem 0600
		assert_mode 2 /srv/tls/fullchain.pem 0644
		assert_eq "$(tb_exec 2 stat -c %U:%G /srv/tls/privkey.pem)" nobody:nogroup "$c: n2's key is nobody:nogroup"
		serving=$C_SHA
	else
		failed=$((failed + 1))
		t_log "$c: n2 $out: $(node_get "$T_TMP/run.$c" n2 error)"
		assert_eq "$out" failed "$c: n2 either deployed or failed"
		assert_eq "$rc" 2 "$c: exit 2 (n2 failed, n1 deployed)"
		assert_served 2 "$serving" "$c: n2 still serves the certificate it had"
		# the files in place are the ones it serves
		assert_eq "$(tb_exec 2 openssl x509 -in /srv/tls/fullchain.pem -outform DER | sha256sum | cut -d' ' -f1)" \
		    "$serving" "$c: n2's fullchain is the one it serves"
		assert_eq "$(tb_exec 2 openssl pkey -in /srv/tls/privkey.pem -pubout)" \
		    "$(tb_exec 2 openssl x509 -in /srv/tls/fullchain.pem -noout -pubkey)" "$c: n2's key matches its certificate"
	fi
	assert_node_has 1 "$C"
done
kill "$RACER_PID" 2>/dev/null
wait "$RACER_PID" 2>/dev/null
swaps=$(grep -c '^swap ' "$T_TMP/race.log")
t_log "racer: $swaps swaps over $runs runs ($ok deployed, $failed failed cleanly); $(sort "$T_TMP/race.log" | cut -d' ' -f2 | sed 's/\.[0-9a-f]\{12\}\./.TOKEN./' | sort | uniq -c | tr '\n' ';')"
assert_le 1 "$swaps" "the racer swapped temps for links ($swaps times)"
assert_eq "$(victim)" "$VICTIM" "victim unchanged at the end"

t_step "racer gone: the next deploy puts the newest certificate on n2"
cf_run 0 --json -p "$PB" deploy --cert "$C/fullchain.pem" --key "$C/privkey.pem"
assert_nodes "$T_OUT" outcome deployed n2
assert_served 2 "$C_SHA" "n2 serves the newest certificate"
assert_bytes 2 /srv/tls/privkey.pem "$C/privkey.pem"
assert_mode 2 /srv/tls/privkey.pem 0600
assert_eq "$(tb_exec 2 stat -c %U:%G /srv/tls/privkey.pem)" nobody:nogroup "n2's key is nobody:nogroup"
assert_eq "$(victim)" "$VICTIM" "victim unchanged"
t_done
