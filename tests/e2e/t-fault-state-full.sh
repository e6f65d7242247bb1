#!/bin/bash
# The state directory's file system is full (a small tmpfs): storing a new
# certificate fails with a clear error naming what could not be written,
# and the store stays exactly as it was (current version, its files,
# nodes.json; no temp files, no half-written version) with nothing sent to
# any node; with only a few pages free (0..4) it is the same or, at most, a
# complete unused version appears.  A converge run that cannot save
# nodes.json says so and leaves it intact.  With space again, all works.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 2
tb_make_cert new 90 || t_fatal "tb_make_cert"
tb_make_cert newer 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
NEWER=$TB/certs/newer
NEW_SHA=$(tb_cert_sha256 "$NEW/fullchain.pem")
PB=$TB/pb.json
tb_playbook "$PB"
S=$TB/fullstate
mkdir -p "$S"
mount -t tmpfs -o size=256k,mode=0700 cftb-state "$S" || t_fatal "cannot mount a tmpfs"
# (tb_down unmounts anything under $TB)
cs() { "$CERTFLEET" --state-dir "$S" "$@"; }
cs_run() {
	local want=$1
	shift
	assert_exit "$want" cs "$@"
}

# snapshot of the store (every file but the lock and the filler; the
# mtime of directories may change: a temp entry came and went)
state_snap() {
	(cd "$S" && find . -mindepth 1 -type d -print0 | sort -z | xargs -0 stat -c '%n %F %a' &&
	    find . -type f ! -name lock ! -name .fill -print0 | sort -z |
	    xargs -0 stat -c '%n %F %a %s %Y' &&
	    find . -type f ! -name lock ! -name .fill -print0 | sort -z | xargs -0 sha256sum)
}
fill() {
	dd if=/dev/zero of="$S/.fill" bs=4096 2>/dev/null
	[ "$1" -gt 0 ] && truncate -s "-$(($1 * 4096))" "$S/.fill"
	sync
}
# every version directory holds its four files; no temp files anywhere
store_sane() {
	local d f bad=""
	for d in "$S"/web/versions/*/; do
		[ -d "$d" ] || continue
		for f in cert.pem chain.pem fullchain.pem privkey.pem; do
			[ -f "$d$f" ] || bad="$bad ${d#"$S"/}$f"
		done
	done
	assert_eq "$bad" "" "$1: every version directory is complete"
	assert_eq "$(cd "$S" && find . -name '*tmp*' | head -5)" "" "$1: no temp files in the store"
	cs_run 0 --json -p "$PB" status
	assert_json "$T_OUT" 'd["certificate"]["sha256"]' "$NEW_SHA" "$1: status: still the first certificate"
}

t_step "a first deploy fills the store"
cs_run 0 -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
state_snap >"$T_TMP/state.0"
for i in 1 2; do t_snap "$i" start; done

t_step "file system full: a new certificate is refused, the store intact"
fill 0
(: >"$S/.probe") 2>/dev/null && [ -s "$S/.probe" ] && t_fatal "tmpfs not full"
rm -f "$S/.probe"
cs_run 1 -p "$PB" deploy --cert "$NEWER/fullchain.pem" --key "$NEWER/privkey.pem"
assert_match "$(cat "$T_ERR")" "No space left on device" "the message gives the cause"
assert_match "$(cat "$T_ERR")" "$S" "the message names the path in the state directory"
assert_eq "$(grep -c . "$T_ERR")" 1 "one line on stderr"
state_snap >"$T_TMP/state.1"
if cmp -s "$T_TMP/state.0" "$T_TMP/state.1"; then
	t_ok "store byte-for-byte unchanged"
else
	t_notok "store byte-for-byte unchanged" "$(diff "$T_TMP/state.0" "$T_TMP/state.1" | head)"
fi
store_sane "full"
for i in 1 2; do assert_unchanged "$i" start "n$i: nothing sent"; done

t_step "a few pages free: refused or complete, never half-written"
for k in 1 2 3 4; do
	rm -f "$S/.fill"
	fill "$k"
	cs_run 1 -p "$PB" deploy --cert "$NEWER/fullchain.pem" --key "$NEWER/privkey.pem"
	assert_match "$(cat "$T_ERR")" "No space left on device" "$k pages free: the cause is given"
	assert_eq "$(cat "$S/web/current")" "$(sed -n 's/^.*\(versions\/[^ ]*\)\/cert.pem .*/\1/p' \
	    "$T_TMP/state.0" | head -1 | cut -d/ -f2)" "$k pages free: current unchanged"
	store_sane "$k pages free"
	for i in 1 2; do assert_unchanged "$i" start "n$i: nothing sent"; done
done

t_step "converge on a full disk: nodes.json cannot be saved, and says so"
rm -f "$S/.fill"
fill 0
cp "$S/web/nodes.json" "$T_TMP/nodes.before"
cs_run 1 -p "$PB" deploy
assert_match "$(cat "$T_ERR")" "nodes\.json.*No space|No space.*nodes\.json" "the message names nodes.json"
if cmp -s "$T_TMP/nodes.before" "$S/web/nodes.json"; then
	t_ok "nodes.json intact"
else
	t_notok "nodes.json intact" "$(head -c 300 "$S/web/nodes.json")"
fi
store_sane "converge on a full disk"

t_step "space again: everything works"
rm -f "$S/.fill"
cs_run 0 -p "$PB" deploy --cert "$NEWER/fullchain.pem" --key "$NEWER/privkey.pem"
for i in 1 2; do assert_node_has "$i" "$NEWER"; done
cs_run 0 -p "$PB" verify
assert_eq "$(stat -c %a "$S")" 700 "state dir 0700"

t_done
