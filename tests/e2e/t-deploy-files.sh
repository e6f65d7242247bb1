#!/bin/bash
# How files land on a node: bytes, mode and owner of every content type;
# files that already hold the new bytes are neither rewritten nor backed
# up (a re-run must not replace the previous version's backup with a copy
# of the new files); the previous version is kept, 0600 for keys; a script
# cut short by a dropped connection does nothing at all.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 2
tb_make_cert new 90 || t_fatal "tb_make_cert"
tb_make_cert newer 90 || t_fatal "tb_make_cert"
OLD=$TB/certs/old
NEW=$TB/certs/new
NEWER=$TB/certs/newer
PB=$TB/pb.json
# Every content type, and modes/owners the umask alone cannot give.
tb_playbook "$PB" 'deploy.files=[
 {"path": "/srv/tls/fullchain.pem", "content": "fullchain", "mode": "0644"},
 {"path": "/srv/tls/privkey.pem", "content": "privkey", "mode": "0600"},
 {"path": "/srv/sub/cert.pem", "content": "cert", "mode": "0444"},
 {"path": "/srv/sub/chain.pem", "content": "chain", "mode": "0755"},
 {"path": "/srv/sub/combined.pem", "content": "combined", "mode": "0640",
  "owner": "root", "group": "nogroup"}]'
for i in 1 2; do tb_exec "$i" mkdir -p /srv/sub || t_fatal "mkdir"; done

# split_pem CERTDIR: its leaf (cert.pem) and the rest (chain.pem).
split_pem() {
	awk -v d="$1" 'BEGIN { f = d "/cert.pem" } { print > f }
	    /^-----END CERTIFICATE-----/ { f = d "/chain.pem" }' "$1/fullchain.pem"
	cat "$1/fullchain.pem" "$1/privkey.pem" >"$1/combined.pem"
}
split_pem "$NEW"
split_pem "$NEWER"

t_step "deploy: every file with its bytes, mode and owner"
cf_run 0 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
for i in 1 2; do
	assert_node_has "$i" "$NEW"
	assert_bytes "$i" /srv/sub/cert.pem "$NEW/cert.pem"
	assert_bytes "$i" /srv/sub/chain.pem "$NEW/chain.pem"
	assert_bytes "$i" /srv/sub/combined.pem "$NEW/combined.pem"
	assert_mode "$i" /srv/sub/cert.pem 0444
	assert_mode "$i" /srv/sub/chain.pem 0755
	assert_mode "$i" /srv/sub/combined.pem 0640
	assert_eq "$(tb_file_owner "$i" /srv/sub/combined.pem)" root:nogroup \
	    "n$i: combined.pem owned by root:nogroup"
	assert_eq "$(tb_exec "$i" ls -A /srv/sub | grep -c '^\.certfleet\.')" 0 \
	    "n$i: no temp files left in sub/"
done

t_step "the previous version is kept, keys 0600"
assert_bytes 1 /srv/tls/.fullchain.pem.certfleet-prev "$OLD/fullchain.pem"
assert_bytes 1 /srv/tls/.privkey.pem.certfleet-prev "$OLD/privkey.pem"
assert_mode 1 /srv/tls/.privkey.pem.certfleet-prev 0600

t_step "files already on disk but not loaded: reloaded, not rewritten, backups kept"
# Someone wrote NEWER's bytes over n1's files and forgot the reload: n1
# serves NEW, its disk holds NEWER.  Deploying NEWER must reload it
# without rewriting the files, and keep the backups (OLD's files, the
# last version certfleet replaced) rather than turn them into copies of
# NEWER.
for f in fullchain.pem privkey.pem; do
	cat "$NEWER/$f" >"$(tb_dir 1)/tls/$f" || t_fatal "copy $f"
done
for f in cert.pem chain.pem combined.pem; do
	cat "$NEWER/$f" >"$(tb_dir 1)/sub/$f" || t_fatal "copy $f"
done
assert_served 1 "$(tb_cert_sha256 "$NEW/fullchain.pem")" "n1 still serves NEW (not reloaded)"
INO=$(tb_exec 1 stat -c %i /srv/tls/fullchain.pem /srv/tls/privkey.pem)
cf_run 0 --json -p "$PB" deploy --cert "$NEWER/fullchain.pem" --key "$NEWER/privkey.pem"
assert_node "$T_OUT" n1 outcome deployed
assert_node_has 1 "$NEWER"
assert_node_has 2 "$NEWER"
assert_eq "$(tb_exec 1 stat -c %i /srv/tls/fullchain.pem /srv/tls/privkey.pem)" "$INO" \
    "n1: files that held the new bytes were not replaced"
assert_bytes 1 /srv/tls/.fullchain.pem.certfleet-prev "$OLD/fullchain.pem"
assert_bytes 1 /srv/tls/.privkey.pem.certfleet-prev "$OLD/privkey.pem"
assert_bytes 2 /srv/tls/.fullchain.pem.certfleet-prev "$NEW/fullchain.pem"

t_step "a stage script cut short does nothing"
# What a node runs when the connection drops mid-script is a prefix of the
# script.  Capture n2's script (its sshd forces every command into a
# recorder), then run every prefix that ends at a line boundary on n2:
# none may change anything; the whole script must deploy.
tb_make_cert newest 90 || t_fatal "tb_make_cert"
NEWEST=$TB/certs/newest
printf '#!/bin/sh\ncat >/srv/stage.captured\nexit 99\n' >"$(tb_dir 2)/rec.sh"
chmod 755 "$(tb_dir 2)/rec.sh"
cp "$(tb_dir 2)/sshd_config" "$T_TMP/sshd_config.orig"
echo "ForceCommand /srv/rec.sh" >>"$(tb_dir 2)/sshd_config"
{ tb_stop_sshd 2 && tb_start_sshd 2; } || t_fatal "restart n2's sshd"
cf_run 1 --json -p "$PB" deploy --only n2 --cert "$NEWEST/fullchain.pem" --key "$NEWEST/privkey.pem"
cp "$T_TMP/sshd_config.orig" "$(tb_dir 2)/sshd_config"
{ tb_stop_sshd 2 && tb_start_sshd 2; } || t_fatal "restart n2's sshd"
SCRIPT=$(tb_dir 2)/stage.captured
[ -s "$SCRIPT" ] || t_fatal "no stage script captured"
mv "$SCRIPT" "$T_TMP/stage.sh"
chmod 600 "$T_TMP/stage.sh"
assert_eq "$(tail -n 1 "$T_TMP/stage.sh")" main "the script's last line starts it"
t_snap 2 before
# names, inodes, modes, sizes, times: cheap enough to take after every
# prefix.  The loop runs inside the node (one nsenter, not two per
# prefix: it was most of this test's time); the script waits in n2's logs
# directory, which no snapshot looks at, 0600 like any key file.
LINES=$(wc -l <"$T_TMP/stage.sh")
install -m 600 "$T_TMP/stage.sh" "$(tb_dir 2)/logs/stage.sh"
# shellcheck disable=SC2016
bad=$(tb_exec 2 sh -c '
	ls2() { ls -laiR --full-time /srv/tls /srv/sub; }
	ls2 >/srv/logs/ls.before
	k=1
	while [ $k -lt "$1" ]; do
		head -n $k /srv/logs/stage.sh | sh -s >/dev/null 2>&1
		ls2 | cmp -s - /srv/logs/ls.before || { echo "$k"; break; }
		k=$((k + 1))
	done
	echo "ran $((k - 1))" >/srv/logs/prefixes.ran' sh "$LINES")
rm -f "$(tb_dir 2)/logs/stage.sh"
assert_eq "$(cat "$(tb_dir 2)/logs/prefixes.ran")" "ran $((LINES - 1))" "every prefix ran"
assert_eq "$bad" "" "none of the $((LINES - 1)) prefixes of the script changed n2"
assert_unchanged 2 before "n2: nothing under /srv changed (contents too)"
tb_exec 2 sh -s <"$T_TMP/stage.sh" >/dev/null 2>&1
assert_eq $? 0 "the whole script runs to the end"
# nginx -s reload only signals the master: the new workers come later
t_wait_serves 2 "$(tb_cert_sha256 "$NEWEST/fullchain.pem")" 10 "n2 serves newest (after its reload)"
assert_node_has 2 "$NEWEST"

t_done
