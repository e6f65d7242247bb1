#!/bin/bash
# Output that says what happened, options where people type them.
# Global options after the command; --json on every command, with an
# error document for exit 64/65/78; quarantine list and check --json;
# "to 1 node" with --only and "1 attempt" (singular); a node released from
# quarantine gets its own line; releasing a node that is not quarantined
# says so once and writes nothing; a JSON comment or trailing comma in a
# playbook gets a hint.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 3
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
PB=$TB/pb.json
tb_playbook "$PB" connect_timeout=2 canary=0

t_step "global options after the command"
cf_run 0 deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem" --only n1 -p "$PB" --json -q
assert_json "$T_OUT" 'd["command"]' deploy "deploy ... -p PB --json: the run report"
assert_node "$T_OUT" n1 outcome deployed
assert_eq "$(wc -l <"$T_ERR")" 1 "-q after the command: only the summary line"
cf_run 0 status --json -p "$PB"
assert_json "$T_OUT" 'd["name"]' web "status --json -p PB"

t_step "the summary counts the selected nodes; singular when 1"
cf_run 0 -p "$PB" deploy --only n2
assert_file_match "$T_ERR" '^certfleet: deploy web \(.*\) to 1 node$' "--only n2: 'to 1 node'"
cf_run 0 -p "$PB" verify --exclude n3
assert_file_match "$T_ERR" '^certfleet: verify web \(.*\) on 2 nodes$' "--exclude n3: 'on 2 nodes'"
assert_file_match "$T_ERR" 'verify: 2 of 2 nodes serve the current certificate, 1 skipped in' "verify summary counts 2, 1 skipped"

t_step "a quarantined node, then released: its own line, in order"
tb_blackhole 3
cf_run 2 -p "$PB" deploy
cf_run 0 -p "$PB" quarantine list
assert_file_match "$T_OUT" '^n3 +timeout +since .*, 1 attempt: ' "quarantine list: '1 attempt'"
cf_run 0 --json -p "$PB" quarantine list
assert_json "$T_OUT" 'd["command"]' quarantine
assert_json "$T_OUT" '[n["name"] for n in d["nodes"]]' '["n3"]' "quarantine list --json: n3 only"
assert_node "$T_OUT" n3 reason timeout
assert_node "$T_OUT" n3 attempts 1
cf_run 1 --json -p "$PB" check
assert_json "$T_OUT" 'd["state"]' WARNING "check --json: WARNING"
assert_json "$T_OUT" 'd["quarantined"]' 1
assert_json "$T_OUT" 'd["exit_code"]' 1
assert_eq "$(wc -c <"$T_ERR")" 0 "check --json: nothing on stderr"
cf_run 2 -p "$PB" deploy
cf_run 0 -p "$PB" status
assert_file_match "$T_OUT" 'timeout \(2 attempts\)' "status: '2 attempts'"
tb_unblackhole 3
cf_run 0 -p "$PB" deploy
assert_eq "$(grep -c 'released from quarantine' "$T_ERR")" 1 "one release line"
assert_file_match "$T_ERR" '^certfleet: n3 released from quarantine \(was: timeout, 2 attempts\)$' "the release line"
n_node=$(grep -n 'n3  .* deployed' "$T_ERR" | cut -d: -f1)
n_rel=$(grep -n 'released from quarantine' "$T_ERR" | cut -d: -f1)
n_sum=$(grep -n 'certfleet: deploy: ' "$T_ERR" | cut -d: -f1)
assert_le "$n_node" "$n_rel" "the release line comes after n3's deploy line"
assert_le "$n_rel" "$n_sum" "and before the summary"

t_step "quarantine release of a node that is not quarantined"
t_state_snap rel
cf_run 0 -p "$PB" quarantine release n1
assert_eq "$(cat "$T_ERR")" "certfleet: n1 is not quarantined; nothing to release" "said once, nothing else"
assert_state_unchanged rel "nothing written"

t_step "--json error documents: 64, 65, 78"
cf_run 64 -p "$PB" deploy --json --no-such-option
assert_json "$T_OUT" 'd["exit_code"]' 64
assert_json "$T_OUT" 'd["command"]' deploy
assert_json "$T_OUT" 'd["error"]["code"]' usage
assert_json "$T_OUT" 'd["error"]["message"]' "deploy: unknown option '--no-such-option'"
cf_run 64 --json -p "$PB" frobnicate
assert_json "$T_OUT" 'd["command"]' null "unknown command: command null"
assert_json "$T_OUT" 'd["error"]["message"]' "unknown command 'frobnicate'"
cf_run 65 -p "$PB" deploy --json --cert "$NEW/fullchain.pem" --key "$TB/id_ed25519"
assert_json "$T_OUT" 'd["exit_code"]' 65
assert_json "$T_OUT" 'd["error"]["code"]' data "65: the run report carries the error"
assert_json "$T_OUT" 'd["certificate"]' null
printf '{"certificate": {"name": "web", "domains": ["a.test"],}}\n' >"$T_TMP/comma.json"
cf_run 78 --json -p "$T_TMP/comma.json" status
assert_json "$T_OUT" 'd["error"]["code"]' config
assert_match "$(json_get "$T_OUT" 'd["error"]["message"]')" "comma.json:1:.*\\(JSON allows no trailing commas\\)$" "78: message with the hint"
assert_file_match "$T_ERR" '\(JSON allows no trailing commas\)' "the hint on stderr too"
printf '{\n  // the certificate\n  "certificate": {}\n}\n' >"$T_TMP/comment.json"
cf_run 78 -p "$T_TMP/comment.json" validate
assert_file_match "$T_ERR" 'comment.json:2:.*\(JSON allows no comments\)$' "a comment: the hint"
cf_run 0 -p "$PB" validate --json
assert_json "$T_OUT" 'd["nodes"][2]["name"]' n3 "validate --json"
cf_run 0 --json -p "$PB" quarantine add n1 --reason "decommissioning"
assert_json "$T_OUT" 'd["exit_code"]' 0 "quarantine add --json: a document"
cf_run 3 --json -p "$TB/nonexistent.json" check
assert_json "$T_OUT" 'd["exit_code"]' 3 "check UNKNOWN --json: error document"
assert_json "$T_OUT" 'd["error"]["code"]' unknown

t_done
