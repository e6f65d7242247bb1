#!/bin/bash
# Old keys do not pile up in the store: after five deploys of five
# different certificates only the newest three versions (store.keep_versions,
# default 3) hold a privkey.pem; the older ones keep their certificates.
# rollback still puts the previous version, key included, on a node.  A
# playbook with store.keep_versions=2 trims to two on the next deploy.
# deploy.keep_previous=false: once a node verifies on the new certificate,
# its backup of the old key (.privkey.pem.certfleet-prev) is gone (the
# certificate's backup stays); a node failing verification is still
# restored from that backup first.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 2
PB=$TB/pb.json
tb_playbook "$PB"
VD=$TB/state/web/versions
for c in c1 c2 c3 c4 c5; do
	tb_make_cert "$c" 90 || t_fatal "tb_make_cert $c"
done

t_step "five deploys, five versions"
for c in c1 c2 c3 c4 c5; do
	cf_run 0 -p "$PB" deploy --cert "$TB/certs/$c/fullchain.pem" --key "$TB/certs/$c/privkey.pem"
done
# ids sort by creation time
mapfile -t V < <(ls "$VD" | sort)
assert_eq "${#V[@]}" 5 "five versions stored"
for i in 0 1; do
	assert_eq "$(ls "$VD/${V[$i]}")" "$(printf 'cert.pem\nchain.pem\nfullchain.pem')" \
	    "version $((i + 1)) (old): certificates kept, key gone"
done
for i in 2 3 4; do
	assert_eq "$(stat -c %a "$VD/${V[$i]}/privkey.pem" 2>/dev/null)" 600 \
	    "version $((i + 1)): key kept, 0600"
done
for i in 0 1 2 3 4; do
	c=c$((i + 1))
	assert_eq "$(tb_cert_sha256 "$VD/${V[$i]}/cert.pem")" "$(tb_cert_sha256 "$TB/certs/$c/fullchain.pem")" \
	    "version $((i + 1)) holds $c"
done
# the second base64 line of a PEM key is key material alone (kept in
# files: never in a process's argv)
for c in c1 c2 c3; do
	sed -n 3p "$TB/certs/$c/privkey.pem" >"$T_TMP/needle.$c"
done
cat "$T_TMP/needle.c1" "$T_TMP/needle.c2" >"$T_TMP/needles.old"
assert_eq "$(wc -l <"$T_TMP/needles.old")" 2 "two needles"
assert_eq "$(grep -rlF -f "$T_TMP/needles.old" "$TB/state" | wc -l)" 0 \
    "the old keys (c1, c2) are nowhere in the state directory"
assert_eq "$(grep -rlF -f "$T_TMP/needle.c3" "$TB/state" | wc -l)" 1 \
    "c3's key is there once (the grep finds keys)"

t_step "status shows the current one; rollback puts c4 (key and all) on n1"
t_status
assert_json "$T_STATUS" 'd["certificate"]["sha256"]' "$(tb_cert_sha256 "$TB/certs/c5/fullchain.pem")"
cf_run 0 -p "$PB" rollback --only n1
assert_node_has 1 "$TB/certs/c4"
assert_node_has 2 "$TB/certs/c5"

t_step "store.keep_versions=2: the next deploy trims to two"
tb_make_cert c6 90 || t_fatal "tb_make_cert c6"
tb_playbook "$PB" store.keep_versions=2
cf_run 0 -p "$PB" deploy --cert "$TB/certs/c6/fullchain.pem" --key "$TB/certs/c6/privkey.pem"
assert_eq "$(ls "$VD"/*/privkey.pem | wc -l)" 2 "two keys left"
assert_eq "$(ls "$VD" | wc -l)" 6 "six versions, certificates all kept"
assert_eq "$(ls "$VD"/*/privkey.pem | sed 's,.*/versions/,,; s,/.*,,' | tr '\n' ' ')" \
    "${V[4]} $(ls "$VD" | sort | tail -1) " "the keys left are c5's and c6's"
tb_playbook "$PB" store.keep_versions=1
cf_run 78 -p "$PB" validate
assert_match "$(cat "$T_ERR")" 'store.keep_versions: must be between 2 and 1000, got 1' "keep_versions 1 refused"

t_step "default deploy.keep_previous: the node keeps its old key as a backup"
tb_playbook "$PB"
cf_run 0 -p "$PB" quarantine release n1
cf_run 0 -p "$PB" deploy
assert_node_has 1 "$TB/certs/c6"
for i in 1 2; do
	assert_eq "$(tb_backups "$i" | cut -d' ' -f1 | tr '\n' ' ')" \
	    ".fullchain.pem.certfleet-prev .privkey.pem.certfleet-prev " "n$i: both backups"
done

t_step "deploy.keep_previous=false: verified nodes drop the key backup"
tb_make_cert c7 90 || t_fatal "tb_make_cert c7"
tb_playbook "$PB" deploy.keep_previous=false deploy.reload=/srv/reload.sh \
    verify_timeout=3 canary=0
tb_ignore_reload 2
cf_run 2 --json -p "$PB" deploy --cert "$TB/certs/c7/fullchain.pem" --key "$TB/certs/c7/privkey.pem"
assert_node "$T_OUT" n1 outcome deployed
assert_node_has 1 "$TB/certs/c7"
assert_eq "$(tb_backups 1 | cut -d' ' -f1 | tr '\n' ' ')" ".fullchain.pem.certfleet-prev " \
    "n1 (verified): the key backup is gone, the certificate's stays"
assert_bytes 1 /srv/tls/.fullchain.pem.certfleet-prev "$TB/certs/c6/fullchain.pem"
t_step "a node failing verification is restored from its backup, key included"
assert_node "$T_OUT" n2 reason verify-failed
assert_node "$T_OUT" n2 rolled_back true
assert_node_has 2 "$TB/certs/c6"
tb_fix_reload 2
cf_run 0 -p "$PB" deploy
assert_node_has 2 "$TB/certs/c7"
assert_eq "$(tb_backups 2 | cut -d' ' -f1 | tr '\n' ' ')" ".fullchain.pem.certfleet-prev " \
    "n2 (verified on the retry): the key backup is gone"

t_done
