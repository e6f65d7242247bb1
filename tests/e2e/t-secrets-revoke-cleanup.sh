#!/bin/bash
# revoke --reason keyCompromise against a real Pebble and 3 real nodes.
# Two renewals (A, then B) leave every node serving B with key A kept as
# its backup (.privkey.pem.certfleet-prev; the playbook also deploys a
# "combined" file, whose backup holds fullchain A + key A).  With n3's sshd
# down, revoking A for keyCompromise:
#  - revokes A at the CA (reason 1);
#  - wipes key A from the store (no byte of it left under the state dir;
#    A's certificate stays, marked by revoked.json);
#  - removes the backups holding key A on n1 and n2, and keeps a backup
#    holding another key (planted on n2) and the certificates' backups;
#    never touches a live file;
#  - names n3 (refused), exits 2, and --json has the per-node results and
#    no key material.
# Then, n3 back, the same revoke re-run with a playbook whose CA cannot be
# reached cleans n3 (the CA is not asked again).  Revoking the current
# version B for keyCompromise leaves every live key file alone and says the
# fleet serves a revoked certificate; `deploy` refuses the wiped version;
# `renew` replaces it; re-running B's revoke removes the backups of key B
# that the renewal's deploy kept, but never through a symlink planted at a
# backup's name (that node is named unsafe-path, exit 2).
. "$(dirname "$0")/../lib/common.sh"
. "$T_ROOT/tests/lib/acme_helpers.sh"
t_start
acme_start

tb_up 3
acme_up || t_fatal "pebble did not start"
pebble_add_a a.node.test "$(tb_ip 1)" || t_fatal "pebble_add_a"
PB=$TB/pb.json
FILES='[{"path": "/srv/tls/fullchain.pem", "content": "fullchain", "mode": "0644"},
 {"path": "/srv/tls/privkey.pem", "content": "privkey", "mode": "0600"},
 {"path": "/srv/tls/combined.pem", "content": "combined", "mode": "0600"}]'
acme_playbook "$PB" http-01 a.node.test -- verify.server_name=a.node.test \
    "deploy.files=$FILES"
TB_SNI=a.node.test
VD=$TB/state/web/versions
PKB=/srv/tls/.privkey.pem.certfleet-prev
CMB=/srv/tls/.combined.pem.certfleet-prev

pebble_status_of() {
	local serial
	serial=$(acme_serial "$1" | tr 'A-F' 'a-f' | sed 's/^0*//')
	pebble_cert_status "$serial" >"$T_TMP/cert-status.json" 2>/dev/null ||
	    { echo ""; return; }
	json_get "$T_TMP/cert-status.json" 'd.get("Status", "")'
}
sha_of() { sha256sum <"$1" | cut -d' ' -f1; }
# node_has I PATH -> "yes" / "no" (no symlink is ever planted at PATH here)
node_has() { tb_exec "$1" test -e "$2" && echo yes || echo no; }

t_step "renew twice: nodes serve B and keep key A as their backup"
cf_run 0 -p "$PB" renew
A=$(acme_current_version)
cf_run 0 -p "$PB" renew --force
B=$(acme_current_version)
[ -n "$A" ] && [ -n "$B" ] && [ "$A" != "$B" ] || t_fatal "two versions expected: '$A' '$B'"
KEYA=$(sha_of "$VD/$A/privkey.pem")
KEYB=$(sha_of "$VD/$B/privkey.pem")
cat "$VD/$A/fullchain.pem" "$VD/$A/privkey.pem" | sha256sum | cut -d' ' -f1 >"$T_TMP/combA"
# a line of pure key material (kept in files, never in argv)
sed -n 3p "$VD/$A/privkey.pem" >"$T_TMP/needle.A"
sed -n 3p "$VD/$B/privkey.pem" >"$T_TMP/needle.B"
[ -s "$T_TMP/needle.A" ] && [ -s "$T_TMP/needle.B" ] || t_fatal "no needle"
for i in 1 2 3; do
	assert_served "$i" "$(tb_cert_sha256 "$VD/$B/cert.pem")" "n$i serves B"
	assert_eq "$(tb_file_sha256 "$i" $PKB)" "$KEYA" "n$i: key backup holds key A"
	assert_eq "$(tb_file_sha256 "$i" $CMB)" "$(cat "$T_TMP/combA")" "n$i: combined backup holds A"
done

t_step "plant a backup of another key on n2; n3's sshd down"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T_TMP/other.pem" 2>/dev/null
cat "$VD/$A/fullchain.pem" "$T_TMP/other.pem" >"$T_TMP/other-combined.pem"
tb_exec 2 sh -c "cat >$CMB" <"$T_TMP/other-combined.pem"
OTHER=$(sha_of "$T_TMP/other-combined.pem")
assert_eq "$(tb_file_sha256 2 $CMB)" "$OTHER" "n2: planted backup in place"
tb_stop_sshd 3
for i in 1 2 3; do
	tb_file_sha256 "$i" /srv/tls/privkey.pem >"$T_TMP/live.n$i"
	tb_file_sha256 "$i" /srv/tls/.fullchain.pem.certfleet-prev >"$T_TMP/fcbak.n$i"
done

t_step "revoke A --reason keyCompromise: n1, n2 cleaned, n3 named, exit 2"
HAVE_STATUS=1
[ -n "$(pebble_status_of "$VD/$A/cert.pem")" ] || HAVE_STATUS=0
cf_run 2 --json -p "$PB" revoke --version "$A" --reason keyCompromise
cp "$T_OUT" "$T_TMP/revoke1.json"
cp "$T_ERR" "$T_TMP/revoke1.err"
[ $HAVE_STATUS = 1 ] && {
	assert_eq "$(pebble_status_of "$VD/$A/cert.pem")" Revoked "Pebble: A revoked"
	assert_eq "$(json_get "$T_TMP/cert-status.json" 'd.get("Reason")')" 1 "Pebble: reason 1 (keyCompromise)"
}
for i in 1 2; do
	assert_eq "$(node_has "$i" $PKB)" no "n$i: backup of key A removed"
	assert_eq "$(tb_file_sha256 "$i" /srv/tls/privkey.pem)" "$(cat "$T_TMP/live.n$i")" "n$i: live key untouched"
	assert_eq "$(tb_file_sha256 "$i" /srv/tls/.fullchain.pem.certfleet-prev)" "$(cat "$T_TMP/fcbak.n$i")" \
	    "n$i: the certificate's backup is kept"
	assert_served "$i" "$(tb_cert_sha256 "$VD/$B/cert.pem")" "n$i still serves B"
done
assert_eq "$(node_has 1 $CMB)" no "n1: combined backup (fullchain A + key A) removed"
assert_eq "$(tb_file_sha256 2 $CMB)" "$OTHER" "n2: the backup holding another key is untouched"
assert_eq "$(tb_file_sha256 3 $PKB)" "$KEYA" "n3 (down): its backup is still there"
assert_file_match "$T_ERR" 'n3 .*NOT CLEANED refused' "stderr names n3 and why"
assert_file_match "$T_ERR" 'removed on 2 nodes, 0 had none, 1 not cleaned: n3 \(refused\)' "summary line"
assert_file_match "$T_ERR" "the current certificate $B is not affected" "A was not current"
assert_json "$T_OUT" 'd["revocation"]["ca"]' revoked
assert_json "$T_OUT" 'd["revocation"]["reason"]' keyCompromise
assert_json "$T_OUT" 'd["revocation"]["current"]' false
assert_json "$T_OUT" 'd["revocation"]["cleanup_pending"] + []' '["n3"]'
assert_json "$T_OUT" 'd["certificate"]["version"]' "$A"
assert_json "$T_OUT" '[n["cleanup"] for n in d["nodes"]]' '["removed", "removed", "failed"]'
assert_json "$T_OUT" 'd["nodes"][2]["reason"]' refused
assert_json "$T_OUT" 'd["nodes"][1]["kept_other_key"]' 1
assert_json "$T_OUT" 'd["nodes"][0]["removed"]' "[\"$PKB\", \"$CMB\"]"
assert_json "$T_OUT" 'd["nodes"][1]["removed"]' "[\"$PKB\"]"
assert_json "$T_OUT" 'd["nodes"][0]["serves_compromised_key"]' false
assert_eq "$(cat "$T_OUT" "$T_ERR" | grep -cF -f "$T_TMP/needle.A" -f "$T_TMP/needle.B")" 0 \
    "no key material in --json or stderr"
assert_eq "$(cat "$T_OUT" "$T_ERR" | grep -c 'PRIVATE KEY')" 0 "no PEM key in --json or stderr"

t_step "the store: key A nowhere, A's certificate kept and marked"
NFILES=$(find "$TB/state" -type f | wc -l)
[ "$NFILES" -gt 5 ] && t_ok "the grep looks at $NFILES files" || t_notok "too few files under the state dir: $NFILES"
assert_eq "$(grep -rlF -f "$T_TMP/needle.A" "$TB/state" | wc -l)" 0 "key A is nowhere under the state dir"
assert_eq "$(grep -rlF -f "$T_TMP/needle.B" "$TB/state" | wc -l)" 1 "key B is there once (the grep finds keys)"
assert_eq "$(ls "$VD/$A" | tr '\n' ' ')" "cert.pem chain.pem fullchain.pem revoked.json " \
    "A: certificates and the revocation record, no key"
assert_json "$VD/$A/revoked.json" 'd["cleanup_pending"] + []' '["n3"]'
assert_json "$VD/$A/revoked.json" 'd["key_sha256"]' "$KEYA"

t_step "n3 back: re-running the revoke cleans it, without asking the CA"
# the same playbook with a CA nobody answers for: a second revocation
# would fail
DEADCA=$TB/pb-deadca.json
acme_playbook "$DEADCA" http-01 a.node.test -- verify.server_name=a.node.test \
    "deploy.files=$FILES" acme.directory=https://127.0.0.1:9/dir
tb_start_sshd 3 || t_fatal "sshd n3"
cf_run 0 --json -p "$DEADCA" revoke --version "$A" --reason keyCompromise
assert_file_match "$T_ERR" "$A was revoked \(keyCompromise\) on .*not asking the CA again" "A: no second revocation"
assert_eq "$(node_has 3 $PKB)" no "n3: backup of key A removed"
assert_eq "$(node_has 3 $CMB)" no "n3: combined backup of A removed"
assert_eq "$(tb_file_sha256 2 $CMB)" "$OTHER" "n2: the backup holding another key is still untouched"
assert_json "$T_OUT" 'd["revocation"]["ca"]' already-revoked
assert_json "$T_OUT" '[n["cleanup"] for n in d["nodes"]]' '["clean", "clean", "removed"]'
assert_json "$T_OUT" 'd["revocation"]["cleanup_pending"] + []' '[]'
assert_json "$VD/$A/revoked.json" 'd["cleanup_pending"] + []' '[]'

t_step "revoke the current version B for keyCompromise: live keys untouched"
for i in 1 2 3; do t_snap "$i" beforeB; done
cf_run 0 --json -p "$PB" revoke --reason keyCompromise
[ $HAVE_STATUS = 1 ] && assert_eq "$(pebble_status_of "$VD/$B/cert.pem")" Revoked "Pebble: B revoked"
for i in 1 2 3; do
	assert_unchanged "$i" beforeB "n$i: nothing on the node changed (no backup held key B)"
	assert_served "$i" "$(tb_cert_sha256 "$VD/$B/cert.pem")" "n$i still serves B"
	assert_file_match "$T_ERR" "n$i .*still serves the compromised key \(/srv/tls/privkey.pem, /srv/tls/combined.pem\)" \
	    "n$i reported as serving the compromised key"
done
assert_file_match "$T_ERR" "revoked $B .*run \`renew --force\` to replace it" "the CA line says what to do"
assert_file_match "$T_ERR" "the fleet still serves the revoked certificate $B: run \`renew --force\`" \
    "stderr says the fleet serves a revoked certificate"
assert_json "$T_OUT" 'd["revocation"]["current"]' true
assert_json "$T_OUT" '[n["serves_compromised_key"] for n in d["nodes"]]' '[true, true, true]'
assert_json "$T_OUT" '[n["cleanup"] for n in d["nodes"]]' '["clean", "clean", "clean"]'
assert_json "$T_OUT" 'd["revocation"]["cleanup_pending"] + []' '["n1", "n2", "n3"]'
assert_eq "$(ls "$VD"/*/privkey.pem 2>/dev/null | wc -l)" 0 "no key left in the store"

t_step "deploy refuses the wiped version; renew replaces it"
cf_run 1 -p "$PB" deploy --force
assert_file_match "$T_ERR" "version $B was revoked \(keyCompromise\) and its key wiped" "deploy names the revoked version"
cf_run 0 -p "$PB" renew
assert_file_match "$T_ERR" "current version $B was revoked \(keyCompromise\): replacing it" "renew says why it orders"
C=$(acme_current_version)
assert_ne "$C" "$B" "a new version"
for i in 1 2 3; do
	assert_served "$i" "$(tb_cert_sha256 "$VD/$C/cert.pem")" "n$i serves the replacement"
	assert_eq "$(tb_file_sha256 "$i" $PKB)" "$KEYB" "n$i: the deploy kept key B as its backup"
done

t_step "re-running B's revoke removes those backups (no CA asked), never through a symlink"
# n2's combined backup becomes a link to a copy elsewhere: not followed,
# not removed, the node named unsafe-path
tb_exec 2 sh -c "cp $CMB /srv/elsewhere.pem && ln -sfn /srv/elsewhere.pem $CMB"
ELSE=$(tb_file_sha256 2 /srv/elsewhere.pem)
cf_run 2 --json -p "$DEADCA" revoke --version "$B" --reason keyCompromise
assert_json "$T_OUT" 'd["nodes"][1]["reason"]' unsafe-path
assert_file_match "$T_ERR" "n2 .*NOT CLEANED unsafe-path: $CMB is a symlink" "n2 named: a symlink"
assert_eq "$(tb_exec 2 readlink $CMB)" /srv/elsewhere.pem "n2: the symlink is left"
assert_eq "$(tb_file_sha256 2 /srv/elsewhere.pem)" "$ELSE" "n2: its target is untouched"
assert_json "$T_OUT" 'd["revocation"]["cleanup_pending"] + []' '["n2"]'
tb_exec 2 rm -f $CMB /srv/elsewhere.pem
cf_run 0 --json -p "$DEADCA" revoke --version "$B" --reason keyCompromise
for i in 1 2 3; do
	assert_eq "$(node_has "$i" $PKB)" no "n$i: backup of key B removed"
	assert_eq "$(tb_file_sha256 "$i" /srv/tls/privkey.pem)" "$(sha_of "$VD/$C/privkey.pem")" "n$i: live key (C) untouched"
	assert_served "$i" "$(tb_cert_sha256 "$VD/$C/cert.pem")" "n$i still serves the replacement"
done
assert_json "$T_OUT" 'd["revocation"]["cleanup_pending"] + []' '[]'
assert_json "$VD/$B/revoked.json" 'd["cleanup_pending"] + []' '[]'

t_done
