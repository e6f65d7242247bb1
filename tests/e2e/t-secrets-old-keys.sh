#!/bin/bash
# Old keys do not pile up in the store: after five deploys of five
# different certificates only the newest three versions (store.keep_versions,
# default 3) hold a privkey.pem; the older ones keep their certificates.
# rollback still puts the previous version, key included, on a node.  A
# playbook with store.keep_versions=2 trims to two on the next deploy.
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
# the second base64 line of a PEM key is key material alone
for c in c1 c2 c3; do
	eval "K_$c=\$(sed -n 3p "$TB/certs/$c/privkey.pem")"
done
assert_ne "$K_c1" "" "c1's key has a second base64 line"
assert_eq "$(grep -rlF -e "$K_c1" -e "$K_c2" "$TB/state" | wc -l)" 0 \
    "the old keys (c1, c2) are nowhere in the state directory"
assert_eq "$(grep -rlF -e "$K_c3" "$TB/state" | wc -l)" 1 \
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

t_done
