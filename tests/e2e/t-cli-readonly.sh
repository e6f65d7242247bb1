#!/bin/bash
# Read-only commands are read-only.  With a state directory that does not
# exist, status, verify, check, quarantine list and deploy --dry-run
# create nothing (and no metrics file without --metrics).  verify and
# check need no SSH identity: a missing, 0644 or 0640 identity does not
# stop them, and verify writes nothing to an existing store either.  A
# command that does need the identity names a 0640 one group-readable.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 2
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
NEW_SHA=$(tb_cert_sha256 "$NEW/fullchain.pem")
PB=$TB/pb.json
tb_playbook "$PB"
NOSTATE=$T_TMP/nostate/deeper
M=$T_TMP/m.prom
# ro CODE ARGS...: certfleet on the missing state dir, from $T_TMP/run
# (a metrics file with a relative name would land there)
mkdir -p "$T_TMP/run"
ro() {
	local want=$1
	shift
	cd "$T_TMP/run" || t_fatal "cd"
	assert_exit "$want" "$CERTFLEET" --state-dir "$NOSTATE" "$@"
	cd - >/dev/null || t_fatal "cd -"
}
nothing_created() {
	[ -e "$T_TMP/nostate" ] && t_notok "$1: created $(find "$T_TMP/nostate" | head -3 | tr '\n' ' ')" \
	    || t_ok "$1: no state directory created"
	assert_eq "$(ls -A "$T_TMP/run" | wc -l)" 0 "$1: nothing written in the working directory"
	[ -e "$M" ] && t_notok "$1: a metrics file appeared without --metrics" || t_ok "$1: no metrics file"
}

t_step "a state directory that does not exist: nothing is created"
ro 0 -p "$PB" status
assert_file_match "$T_OUT" 'none in the store yet' "status: no certificate yet"
nothing_created status
ro 0 -p "$PB" status --json
assert_json "$T_OUT" 'd["certificate"]' null "status --json: certificate null"
nothing_created "status --json"
ro 1 -p "$PB" verify
assert_file_match "$T_ERR" 'no certificate yet' "verify: says there is no certificate"
nothing_created verify
ro 3 -p "$PB" check
nothing_created check
ro 0 -p "$PB" quarantine list
nothing_created "quarantine list"
ro 0 -p "$PB" quarantine add n1 --reason test --dry-run
nothing_created "quarantine add --dry-run"
ro 0 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem" --dry-run
assert_nodes "$T_OUT" outcome dry-run n1 n2
nothing_created "deploy --dry-run"
ro 0 -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem" --dry-run --metrics "$M"
nothing_created "deploy --dry-run --metrics (dry runs write no metrics)"
ro 1 -p "$PB" verify --metrics "$M"
assert_exit 0 test -e "$M"
t_log "(verify --metrics wrote the metrics file, as documented: only because it was asked)"
rm -f "$M"
[ -e "$T_TMP/nostate" ] && t_notok "verify --metrics created the state dir" || t_ok "verify --metrics: no state dir"
ro 0 -p "$PB" status --metrics "$M"
assert_exit 0 test -e "$M"
rm -f "$M"
[ -e "$T_TMP/nostate" ] && t_notok "status --metrics created the state dir" || t_ok "status --metrics: no state dir"

t_step "a real store; then the identity goes bad"
cf_run 0 -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
t_state_snap ok
LOCK_BEFORE=$(sha256sum <"$TB/state/lock")
cf_run 0 -p "$PB" status --metrics "$T_TMP/status.prom"
assert_eq "$(sha256sum <"$TB/state/lock")" "$LOCK_BEFORE" "status --metrics: the lock file not rewritten"
assert_file_match "$T_TMP/status.prom" '^certfleet_run_exit_code\{certificate="web",command="status"\} 0' \
    "status --metrics wrote the metrics file"
assert_state_unchanged ok "status --metrics: the state dir unchanged"
chmod 0644 "$TB/id_ed25519"
cf_run 0 -p "$PB" verify
assert_file_match "$T_ERR" 'verify: 2 of 2 nodes serve the current certificate' "verify: works with a 0644 identity"
cf_run 0 -p "$PB" check
assert_file_match "$T_OUT" '^CERTFLEET OK ' "check: works with a 0644 identity"
chmod 0640 "$TB/id_ed25519"
cf_run 78 -p "$PB" deploy --force --only n1
assert_file_match "$T_ERR" "id_ed25519 is mode 0640 \\(group-readable\\)" "deploy: a 0640 identity is named group-readable"
assert_eq "$(grep -c 'others' "$T_ERR")" 0 "deploy: not called accessible by others"
cf_run 78 -p "$PB" deploy --force --only n1 --dry-run
assert_file_match "$T_ERR" "group-readable" "deploy --dry-run: the same"
mv "$TB/id_ed25519" "$TB/id_ed25519.away"
cf_run 0 -p "$PB" verify
cf_run 0 --json -p "$PB" check
assert_json "$T_OUT" 'd["state"]' OK "check: works without an identity file"
mv "$TB/id_ed25519.away" "$TB/id_ed25519"
chmod 0600 "$TB/id_ed25519"

t_step "verify writes nothing, even when a node fails"
tb_blackhole 2
cf_run 2 -p "$PB" verify
assert_file_match "$T_ERR" 'verify: 1 of 2 nodes serve the current certificate, 1 does not' "verify summary"
tb_unblackhole 2
assert_state_unchanged ok "verify (and check, and failing deploys): state directory unchanged"
t_status
assert_nodes "$T_STATUS" quarantined false n1 n2
assert_served 1 "$NEW_SHA"

t_done
