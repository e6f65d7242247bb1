#!/bin/bash
# What a node says is untrusted input too.  Nodes whose check or reload
# fails with hostile or merely unusual output:
#   n2  terminal escape sequences and control characters (title, clear
#       screen, colours, CR, BEL)
#   n3  600 bytes of perfectly valid UTF-8 ("é" x 300): any byte-wise
#       truncation of the message splits a character
#   n4  invalid UTF-8 (Latin-1 bytes, an overlong NUL)
#   n5  a reload that writes 5 MB and fails
# Each is failed with its reason, rolled back and quarantined; the healthy
# n1 is deployed; exit 2.  The operator's terminal gets no control
# characters (stderr, status, quarantine list), --json stays valid JSON
# listing every node with a bounded, control-free error, nodes.json is
# saved with every quarantine, and the flood costs no more than a bounded
# message and the normal deadline.
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 5
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
OLD=$TB/certs/old
OLD_SHA=$(tb_cert_sha256 "$OLD/fullchain.pem")
PB=$TB/pb.json
tb_playbook "$PB" canary=0 timeout=20 deploy.check="sh /srv/check.sh" \
    deploy.reload=/srv/reload.sh
for i in 1 2 3 4 5; do
	printf '#!/bin/sh\nexec nginx -t -q -c /srv/nginx.conf\n' >"$(tb_dir "$i")/check.sh"
done
cat >"$(tb_dir 2)/check.sh" <<'EOF'
printf '\033]0;PWNED-TITLE\007\033[2J\033[31mred\r\nline2\tTAB\001\002\033[0m\033P+q\033\\\n'
exit 1
EOF
cat >"$(tb_dir 3)/check.sh" <<'EOF'
i=0; while [ $i -lt 300 ]; do printf '\303\251'; i=$((i+1)); done; echo
exit 1
EOF
cat >"$(tb_dir 4)/check.sh" <<'EOF'
printf 'latin-1: \351t\351 \377\376, overlong NUL: \300\200, lone continuation: \200\n'
exit 1
EOF
cat >"$(tb_dir 5)/reload.sh" <<'EOF'
#!/bin/sh
head -c 5000000 /dev/zero | tr '\0' x
exit 1
EOF
declare -A REASON=([2]=check-failed [3]=check-failed [4]=check-failed [5]=reload-failed)

cf_run 2 --json -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
J=$T_OUT
E=$T_ERR
assert_le "$T_SECS" 20 "the run is bounded (ssh.timeout 20 s)"

# clean FILE WHAT: valid UTF-8, no control characters but newline and tab
clean() {
	local why
	why=$("$TB_PY" - "$1" <<'EOF'
import sys
b = open(sys.argv[1], "rb").read()
try:
    s = b.decode("utf-8")
except UnicodeDecodeError as e:
    print("not valid UTF-8: %s" % e)
    sys.exit()
bad = sorted({"%02x" % ord(c) for c in s if (ord(c) < 0x20 and c not in "\n\t") or 0x7f <= ord(c) < 0xa0})
if bad:
    print("control characters: " + " ".join(bad))
EOF
)
	if [ -z "$why" ]; then
		t_ok "$2: valid UTF-8, no control characters"
	else
		t_notok "$2: valid UTF-8, no control characters" "$why"
	fi
}

t_step "outcomes"
assert_node "$J" n1 outcome deployed
assert_node_has 1 "$NEW"
for i in 2 3 4 5; do
	assert_node "$J" "n$i" outcome failed
	assert_node "$J" "n$i" reason "${REASON[$i]}"
	assert_node "$J" "n$i" rolled_back true
	assert_node_files "$i" "$OLD"
	assert_served "$i" "$OLD_SHA" "n$i still serves the old certificate"
done

t_step "--json: valid, every node listed, errors bounded and control-free"
assert_json "$J" 'len(d["nodes"])' 5 "--json lists all 5 nodes"
assert_json "$J" 'sorted(n["name"] for n in d["nodes"] if n["outcome"] == "failed")' \
    '["n2", "n3", "n4", "n5"]' "--json lists the 4 failed nodes"
assert_json "$J" 'max(len(n["error"] or "") for n in d["nodes"]) <= 1024' true "every error <= 1024 characters"
assert_json "$J" '[n["name"] for n in d["nodes"] if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in (n["error"] or ""))]' \
    '[]' "no control character in any error"

t_step "the operator's terminal"
clean "$E" "deploy's stderr"
assert_le "$(wc -c <"$E")" 8192 "deploy's stderr is bounded"
cf_run 0 -p "$PB" status
clean "$T_OUT" "status"
cf_run 0 -p "$PB" quarantine list
clean "$T_OUT" "quarantine list"

t_step "nodes.json saved: every failure quarantined"
t_status
for i in 2 3 4 5; do
	assert_node "$T_STATUS" "n$i" quarantined true
	assert_node "$T_STATUS" "n$i" reason "${REASON[$i]}"
done
assert_node "$T_STATUS" n1 serving_current true
assert_le "$(wc -c <"$TB/state/web/nodes.json")" 32768 "nodes.json stays small"

t_done
