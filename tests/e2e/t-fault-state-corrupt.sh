#!/bin/bash
# A corrupted state file is reported, never "repaired" or trusted: every
# command that needs it exits non-zero (no crash) with one line naming the
# file, the file keeps its bytes and mtime, and no node is touched.  That
# holds for nodes.json, the current pointer and the files of the current
# version (a key that no longer matches its certificate, a garbled
# fullchain: refused before anything is sent, not left to `nginx -t`).
# Restored, everything works again.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 2
tb_make_cert new 90 || t_fatal "tb_make_cert"
tb_make_cert newer 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
NEWER=$TB/certs/newer
PB=$TB/pb.json
tb_playbook "$PB"
W=$TB/state/web
cf_run 0 -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
# a quarantine record, so nodes.json has some substance
cf_run 0 -p "$PB" quarantine add n2 --reason "kept out for the test"
cf_run 0 -p "$PB" quarantine release n2
cp -a "$W" "$T_TMP/web.good"
VER=$(cat "$W/current")

# Commands that read nodes.json (all of them), and those that need the
# current certificate's files (a new --cert may replace a broken pointer).
NODES_CMDS=("deploy" "deploy --cert $NEWER/fullchain.pem --key $NEWER/privkey.pem"
	"status" "verify" "quarantine list" "quarantine add n1 --reason x" "rollback --only n1")
CURRENT_CMDS=("deploy" "deploy --force" "status" "verify")
BUNDLE_CMDS=("deploy --force")

# corrupt NAME FILE CMDS...: replace FILE (relative to $W) with
# $T_TMP/bad.NAME, run each command against it, then restore the store.
corrupt() {
	local name=$1 rel=$2 f=$W/$2 cmd before after rc i
	shift 2
	t_step "$name ($rel)"
	for i in 1 2; do t_snap "$i" start; done
	rm -rf "$f"
	cp -a "$T_TMP/bad.$name" "$f"
	before=$(find "$f" -exec stat -c '%n %s %Y %a' {} + | sort; find "$f" -type f -exec sha256sum {} + | sort)
	for cmd in "$@"; do
		T_OUT=$T_TMP/out.c
		T_ERR=$T_TMP/err.c
		# shellcheck disable=SC2086
		cf -p "$PB" $cmd >"$T_OUT" 2>"$T_ERR"
		rc=$?
		sed 's/^/    | /' "$T_ERR"
		if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ]; then
			t_ok "$name: '${cmd%% --cert*}' refused (exit $rc)"
		else
			t_notok "$name: '${cmd%% --cert*}' refused without crashing" "exit $rc"
		fi
		assert_match "$(tail -n 1 "$T_ERR")" "$rel" "$name: '${cmd%% --cert*}': the message names $rel"
		assert_le "$(grep -vc '^certfleet: \(deploy\|verify\|rollback\) web' "$T_ERR")" 1 \
		    "$name: '${cmd%% --cert*}': one line of error"
	done
	after=$(find "$f" -exec stat -c '%n %s %Y %a' {} + | sort; find "$f" -type f -exec sha256sum {} + | sort)
	assert_eq "$after" "$before" "$name: $rel untouched"
	[ "$rel" = current ] || assert_eq "$(cat "$W/current")" "$VER" "$name: current unchanged"
	for i in 1 2; do assert_unchanged "$i" start "$name: n$i untouched"; done
	rm -rf "$W"
	cp -a "$T_TMP/web.good" "$W"
}

head -c $(($(wc -c <"$W/nodes.json") / 2)) "$W/nodes.json" >"$T_TMP/bad.truncated"
head -c 700 /dev/urandom >"$T_TMP/bad.binary"
: >"$T_TMP/bad.empty"
echo '[]' >"$T_TMP/bad.array"
echo '{"nodes": {}}' >"$T_TMP/bad.no-version"
echo '{"version": 1, "nodes": 5}' >"$T_TMP/bad.nodes-number"
echo '{"version": 1, "nodes": {"n1": {"quarantined": "yes", "attempts": -3}}}' >"$T_TMP/bad.wrong-types"
echo '{"version": 1, "nodes": {"n1": {"serving_sha256": "not hex", "last_seen": "yesterday"}}}' >"$T_TMP/bad.bad-values"
echo '{"version": 1, "version": 1, "nodes": {}}' >"$T_TMP/bad.duplicate-key"
echo '{"version": 99, "nodes": {}}' >"$T_TMP/bad.future-format"
"$TB_PY" -c 'print("{\"version\": 1, \"nodes\": {\"n1\": " + "[" * 5000 + "]" * 5000 + "}}")' >"$T_TMP/bad.deep"
{ printf '{"version": 1, "nodes": {"n1": {"detail": "'; head -c $((3 * 1024 * 1024)) /dev/zero | tr '\0' a; } >"$T_TMP/bad.huge-unterminated"
mkdir "$T_TMP/bad.directory"

for c in truncated binary empty array no-version nodes-number wrong-types bad-values \
    duplicate-key future-format deep huge-unterminated directory; do
	corrupt "$c" nodes.json "${NODES_CMDS[@]}"
done

t_step "the current pointer and the version files"
echo 20991231T000000Z-deadbeef >"$T_TMP/bad.missing-version"
echo '../../../etc' >"$T_TMP/bad.traversal"
head -c 64 /dev/urandom >"$T_TMP/bad.garbage-current"
for c in missing-version traversal garbage-current; do
	corrupt "$c" current "${CURRENT_CMDS[@]}"
done
cp "$W/versions/$VER/privkey.pem" "$T_TMP/bad.other-key"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T_TMP/bad.other-key" 2>/dev/null
chmod 600 "$T_TMP/bad.other-key"
corrupt other-key "versions/$VER/privkey.pem" "${BUNDLE_CMDS[@]}"
printf 'not a certificate\n' >"$T_TMP/bad.cert-garbage"
corrupt cert-garbage "versions/$VER/fullchain.pem" "${BUNDLE_CMDS[@]}"

t_step "restored: everything works"
cf_run 0 -p "$PB" status
cf_run 0 -p "$PB" verify
cf_run 0 -p "$PB" deploy --cert "$NEWER/fullchain.pem" --key "$NEWER/privkey.pem"
for i in 1 2; do assert_node_has "$i" "$NEWER"; done

t_done
