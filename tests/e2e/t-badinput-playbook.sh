#!/bin/bash
# Hostile and broken playbooks never reach a node or the store.  Each one:
# exit 78, exactly one line on stderr naming the file (and line and field
# where there is one), no crash; afterwards the state directory and every
# node are byte-for-byte as before and no injected command ran anywhere
# (the payloads touch /tmp/pwned.RUN, which the nodes share with us).
. "$(dirname "$0")/../lib/common.sh"
t_start

tb_up 2
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
PB=$TB/pb.json
tb_playbook "$PB"
PWN=/tmp/pwned.$$
rm -f "$PWN" /tmp/pwned

# A first good deploy, so that the state directory has something to lose.
cf_run 0 -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
for i in 1 2; do t_snap "$i" start; done
t_state_snap start
find "$TB/state" ! -name lock -printf '%p %M %s %T@\n' | sort >"$T_TMP/state.ls.start"

D=$T_TMP/pb
mkdir -p "$D"

# mk NAME PYTHON: a copy of the good playbook changed by PYTHON (pb is the
# document; PWN the injection marker), written as $D/NAME.json.
mk() {
	PWN=$PWN "$TB_PY" - "$PB" "$D/$1.json" "$2" <<'EOF'
import json, os, sys
pb = json.load(open(sys.argv[1]))
PWN = os.environ["PWN"]
exec(sys.argv[3])
with open(sys.argv[2], "w") as f:
    if isinstance(pb, str):
        f.write(pb)
    else:
        json.dump(pb, f, indent=2)
        f.write("\n")
EOF
}
# raw NAME: stdin is the file's text, verbatim.
raw() { cat >"$D/$1.json"; }

# expect NAME REGEX: validate and deploy refuse $D/NAME.json with exit 78
# and one stderr line matching "NAME.json:" then REGEX (the other
# commands share the same loading code: see "every command" below).
expect() {
	local f=$D/$1.json re=$2 cmd
	t_step "$1"
	for cmd in validate deploy; do
		if [ $cmd = deploy ]; then
			cf_run 78 -p "$f" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
		else
			cf_run 78 -p "$f" $cmd
		fi
		assert_eq "$(wc -l <"$T_ERR")" 1 "$1 ($cmd): exactly one line on stderr"
		assert_match "$(head -c 600 "$T_ERR")" "^certfleet: .*$1\.json(:[0-9]+)*: .*$re" \
		    "$1 ($cmd): message names $1.json and /$re/"
		assert_eq "$(wc -c <"$T_OUT")" 0 "$1 ($cmd): nothing on stdout"
	done
}

t_step "writing the bad playbooks"
# typos and unknown keys: file:line: key path, with a hint
mk typo-top 'pb["nodess"] = pb.pop("nodes")'
mk typo-node 'pb["nodes"][1]["hots"] = pb["nodes"][1].pop("host")'
mk typo-file 'pb["deploy"]["files"][0]["contnet"] = "cert"'
mk typo-rollout 'pb["rollout"]["max_failure"] = 3'
# duplicate keys (JSON allows them; silently taking the last is a trap)
raw dup-key <<EOF
{
  "certificate": {"name": "web", "domains": ["node.test"]},
  "ssh": {"user": "root", "user": "nobody",
          "identity": "$TB/id_ed25519", "known_hosts": "$TB/known_hosts"},
  "deploy": {"files": [{"path": "/srv/tls/fullchain.pem", "content": "fullchain"}]},
  "nodes": [{"name": "n1", "host": "$(tb_ip 1)"}]
}
EOF
raw dup-node-name <<EOF
{
  "certificate": {"name": "web", "domains": ["node.test"]},
  "ssh": {"identity": "$TB/id_ed25519", "known_hosts": "$TB/known_hosts"},
  "deploy": {"files": [{"path": "/srv/tls/fullchain.pem", "content": "fullchain"}]},
  "nodes": [{"name": "n1", "host": "$(tb_ip 1)"}, {"name": "n1", "host": "$(tb_ip 2)"}]
}
EOF
# wrong types
mk type-timeout-string 'pb["ssh"]["connect_timeout"] = "5"'
mk type-timeout-float 'pb["ssh"]["timeout"] = 2.5'
mk type-nodes-object 'pb["nodes"] = {"n1": "10.0.0.1"}'
mk type-domains-string 'pb["certificate"]["domains"] = "node.test"'
mk type-mode-number 'pb["deploy"]["files"][1]["mode"] = 600'
mk type-canary-bool 'pb["rollout"]["canary"] = True'
mk type-host-null 'pb["nodes"][0]["host"] = None'
mk type-root-array 'pb = [pb]'
# not JSON at all / broken JSON
raw syntax-trailing-comma <<EOF
{"certificate": {"name": "web", "domains": ["node.test"],},
 "nodes": []}
EOF
printf '\x00\x01\xff\xfe{' >"$D/syntax-binary.json"
: >"$D/syntax-empty.json"
# raw newline inside a JSON string (invalid JSON) and an escaped one
mk syntax-raw-newline 'pb = json.dumps(pb, indent=2).replace("\"n1\"", "\"n\n1\"", 1)'
# size and depth
mk big-2mib 'pb["x-pad"] = "a" * (2 * 1024 * 1024)'
mk deep-100 'v = "x"
for _ in range(100): v = [v]
pb["certificate"]["name"] = v'
mk deep-100-ext 'v = {}
for _ in range(100): v = {"x-a": v}
pb["x-deep"] = v'
# out of range numbers
mk range-timeout-zero 'pb["ssh"]["connect_timeout"] = 0'
mk range-timeout-negative 'pb["ssh"]["timeout"] = -1'
mk range-timeout-huge 'pb["ssh"]["timeout"] = 10**20'
mk range-port 'pb["nodes"][0]["port"] = 70000'
mk range-verify-port 'pb["verify"]["port"] = 0'
# verify.endpoints / verify.names (the port shorthand removed first)
mk verify-starttls-unknown 'pb["verify"].pop("port"); pb["verify"]["endpoints"] = [{"port": 443}, {"port": 25, "starttls": "lmtp"}]'
mk verify-endpoint-range 'pb["verify"].pop("port"); pb["verify"]["endpoints"] = [{"port": 70000}]'
mk verify-endpoint-dup 'pb["verify"].pop("port"); pb["verify"]["endpoints"] = [{"port": 443}, {"port": 993}, {"port": 443, "starttls": "imap"}]'
mk verify-endpoints-empty 'pb["verify"].pop("port"); pb["verify"]["endpoints"] = []'
mk verify-endpoints-and-port 'pb["verify"]["endpoints"] = [{"port": 993}]'
mk verify-endpoint-noport 'pb["verify"].pop("port"); pb["verify"]["endpoints"] = [{"starttls": "smtp"}]'
mk verify-names-uncovered 'pb["verify"]["names"] = ["www.node.test", "mail.other.test"]'
mk verify-names-wildcard-deep 'pb["certificate"]["domains"].append("*.app.node.test"); pb["verify"]["names"] = ["a.b.app.node.test"]'
mk range-concurrency 'pb["rollout"]["concurrency"] = 0'
mk range-concurrency-big 'pb["rollout"]["concurrency"] = 100000'
mk range-canary-failures 'pb["rollout"]["canary_failures"] = 0'
mk range-mode 'pb["deploy"]["files"][1]["mode"] = "0999"'
mk range-mode-setuid 'pb["deploy"]["files"][1]["mode"] = "4755"'
raw range-float-overflow <<EOF
{"certificate": {"name": "web", "domains": ["node.test"]},
 "ssh": {"identity": "$TB/id_ed25519", "known_hosts": "$TB/known_hosts", "timeout": 1e999},
 "deploy": {"files": [{"path": "/srv/tls/fullchain.pem", "content": "fullchain"}]},
 "nodes": [{"name": "n1", "host": "$(tb_ip 1)"}]}
EOF
# hostile names and paths
mk name-space 'pb["nodes"][0]["name"] = "web 1"'
mk name-newline 'pb["nodes"][0]["name"] = "web\n1"'
mk name-leading-dash 'pb["nodes"][0]["name"] = "-oProxyCommand=touch " + PWN'
mk name-semicolon 'pb["nodes"][0]["name"] = ";rm -rf /"'
mk name-subst 'pb["nodes"][0]["name"] = "$(touch " + PWN + ")"'
mk certname-dotdot 'pb["certificate"]["name"] = "../../etc"'
mk certname-slash 'pb["certificate"]["name"] = "web/x"'
mk host-subst 'pb["nodes"][0]["host"] = "$(touch " + PWN + ")"'
mk host-leading-dash 'pb["nodes"][0]["host"] = "-oProxyCommand=touch " + PWN'
mk host-newline 'pb["nodes"][0]["host"] = "10.0.0.1\nx"'
mk user-leading-dash 'pb["nodes"][0]["user"] = "-oProxyCommand=touch"'
mk user-subst 'pb["ssh"]["user"] = "$(touch " + PWN + ")"'
mk path-dotdot 'pb["deploy"]["files"][0]["path"] = "/srv/tls/../../etc/passwd"'
mk path-relative 'pb["deploy"]["files"][0]["path"] = "srv/tls/fullchain.pem"'
mk path-space 'pb["deploy"]["files"][0]["path"] = "/srv/tls/full chain.pem"'
mk path-newline 'pb["deploy"]["files"][0]["path"] = "/srv/tls/a\n/etc/passwd"'
mk path-semicolon 'pb["deploy"]["files"][0]["path"] = "/srv/tls/x;rm -rf /"'
mk path-subst 'pb["deploy"]["files"][0]["path"] = "/srv/tls/$(touch " + PWN + ")"'
mk path-backtick 'pb["deploy"]["files"][0]["path"] = "/srv/tls/`touch " + PWN + "`"'
mk path-quote 'pb["deploy"]["files"][0]["path"] = "/srv/tls/a'"'"'b"'
mk path-leading-dash 'pb["deploy"]["files"][0]["path"] = "/srv/tls/-rf"'
mk path-dir 'pb["deploy"]["files"][0]["path"] = "/srv/tls/"'
mk path-dup 'pb["deploy"]["files"][1]["path"] = pb["deploy"]["files"][0]["path"]'
mk owner-subst 'pb["deploy"]["files"][1]["owner"] = "root;touch " + PWN'
mk group-leading-dash 'pb["deploy"]["files"][1]["group"] = "-R"'
mk webroot-dotdot 'pb["deploy"]["webroot"] = "/srv/www/../../etc"'
mk identity-relative 'pb["ssh"]["identity"] = "id_ed25519"'
mk knownhosts-newline 'pb["ssh"]["known_hosts"] = "/tmp/kh\n"'
mk domain-subst 'pb["certificate"]["domains"] = ["$(touch " + PWN + ").node.test"]'
mk sni-space 'pb["verify"]["server_name"] = "node.test -x"'
# the same payloads without spaces: the charset itself must refuse them
mk name-semicolon2 'pb["nodes"][0]["name"] = ";reboot"'
mk name-subst2 'pb["nodes"][0]["name"] = "$(id>" + PWN + ")"'
mk name-utf8 'pb["nodes"][0]["name"] = "w\u00e9b1"'
mk host-subst2 'pb["nodes"][0]["host"] = "$(id>" + PWN + ")"'
mk host-dash2 'pb["nodes"][0]["host"] = "-oProxyCommand=id>" + PWN'
mk user-subst2 'pb["ssh"]["user"] = "`id>" + PWN + "`"'
mk path-subst2 'pb["deploy"]["files"][0]["path"] = "/srv/tls/$(id>" + PWN + ")"'
mk path-semicolon2 'pb["deploy"]["files"][0]["path"] = "/srv/tls/x;id>" + PWN'
mk path-pipe 'pb["deploy"]["files"][0]["path"] = "/srv/tls/x|id"'
mk path-amp 'pb["deploy"]["files"][0]["path"] = "/srv/tls/x&id"'
mk path-glob 'pb["deploy"]["files"][0]["path"] = "/srv/tls/*.pem"'
mk path-dollar 'pb["deploy"]["files"][0]["path"] = "/srv/tls/${HOME}"'
mk path-tilde 'pb["deploy"]["files"][0]["path"] = "~/tls/fullchain.pem"'
mk owner-subst2 'pb["deploy"]["files"][1]["owner"] = "root;id>" + PWN'
mk nul-in-string 'pb = json.dumps(pb, indent=2).replace("\"/srv/tls/fullchain.pem\"", "\"/srv/tls/full\\u0000chain.pem\"", 1)'

expect typo-top 'nodess.*unknown key.*nodes'
expect verify-starttls-unknown 'verify\.endpoints\[1\]\.starttls: unknown STARTTLS protocol "lmtp" \(known: smtp, imap, pop3\)'
expect verify-endpoint-range 'verify\.endpoints\[0\]\.port: must be between 1 and 65535, got 70000'
expect verify-endpoint-dup 'verify\.endpoints\[2\]\.port: duplicate endpoint: port 443 is also verify\.endpoints\[0\]'
expect verify-endpoints-empty 'verify\.endpoints: must list at least 1 endpoints'
expect verify-endpoints-and-port 'verify\.endpoints: give verify\.endpoints or verify\.port, not both'
expect verify-endpoint-noport 'verify\.endpoints\[0\]\.port: '
expect verify-names-uncovered 'verify\.names\[1\]: "mail\.other\.test" is not covered by certificate\.domains'
expect verify-names-wildcard-deep 'verify\.names\[0\]: "a\.b\.app\.node\.test" is not covered by certificate\.domains'
expect typo-node 'nodes\[1\]\.hots.*unknown key'
expect typo-file 'deploy\.files\[0\]\.contnet.*unknown key'
expect typo-rollout 'rollout\.max_failure.*unknown key.*max_failures'
expect dup-key 'ssh\.user.*duplicate'
expect dup-node-name 'nodes\[1\]\.name.*(duplicate|unique|twice|already)'
expect type-timeout-string 'ssh\.connect_timeout'
expect type-timeout-float 'ssh\.timeout'
expect type-nodes-object 'nodes'
expect type-domains-string 'certificate\.domains'
expect type-mode-number 'deploy\.files\[1\]\.mode'
expect type-canary-bool 'rollout\.canary'
expect type-host-null 'nodes\[0\]\.host'
expect type-root-array '.'
expect syntax-trailing-comma '.'
expect syntax-binary '.'
expect syntax-empty '.'
expect syntax-raw-newline '.'
expect big-2mib '(large|big|MiB|bytes|size)'
expect deep-100 '(certificate\.name|deep|nest)'
expect deep-100-ext '(deep|nest)'
expect range-timeout-zero 'ssh\.connect_timeout'
expect range-timeout-negative 'ssh\.timeout'
# jansson refuses 10^20 itself ("too big integer", with line:column)
expect range-timeout-huge '(ssh\.timeout|too big)'
expect range-port 'nodes\[0\]\.port'
expect range-verify-port 'verify\.port'
expect range-concurrency 'rollout\.concurrency'
expect range-concurrency-big 'rollout\.concurrency'
expect range-canary-failures 'rollout\.canary_failures'
expect range-mode 'deploy\.files\[1\]\.mode'
expect range-mode-setuid 'deploy\.files\[1\]\.mode'
expect range-float-overflow '.'
expect name-space 'nodes\[0\]\.name'
expect name-newline 'nodes\[0\]\.name'
expect name-leading-dash 'nodes\[0\]\.name'
expect name-semicolon 'nodes\[0\]\.name'
expect name-subst 'nodes\[0\]\.name'
expect certname-dotdot 'certificate\.name'
expect certname-slash 'certificate\.name'
expect host-subst 'nodes\[0\]\.host'
expect host-leading-dash 'nodes\[0\]\.host'
expect host-newline 'nodes\[0\]\.host'
expect user-leading-dash 'nodes\[0\]\.user'
expect user-subst 'ssh\.user'
expect path-dotdot 'deploy\.files\[0\]\.path'
expect path-relative 'deploy\.files\[0\]\.path'
expect path-space 'deploy\.files\[0\]\.path'
expect path-newline 'deploy\.files\[0\]\.path'
expect path-semicolon 'deploy\.files\[0\]\.path'
expect path-subst 'deploy\.files\[0\]\.path'
expect path-backtick 'deploy\.files\[0\]\.path'
expect path-quote 'deploy\.files\[0\]\.path'
expect path-leading-dash 'deploy\.files\[0\]\.path'
expect path-dir 'deploy\.files\[0\]\.path'
expect path-dup 'deploy\.files\[1\]\.path'
expect owner-subst 'deploy\.files\[1\]\.owner'
expect group-leading-dash 'deploy\.files\[1\]\.group'
expect webroot-dotdot 'deploy\.webroot'
expect identity-relative 'ssh\.identity'
expect knownhosts-newline 'ssh\.known_hosts'
expect domain-subst 'certificate\.domains\[0\]'
expect sni-space 'verify\.server_name'
expect nul-in-string '.'
expect name-semicolon2 'nodes\[0\]\.name'
expect name-subst2 'nodes\[0\]\.name'
expect name-utf8 'nodes\[0\]\.name'
expect host-subst2 'nodes\[0\]\.host'
expect host-dash2 'nodes\[0\]\.host'
expect user-subst2 'ssh\.user'
expect path-subst2 'deploy\.files\[0\]\.path'
expect path-semicolon2 'deploy\.files\[0\]\.path'
expect path-pipe 'deploy\.files\[0\]\.path'
expect path-amp 'deploy\.files\[0\]\.path'
expect path-glob 'deploy\.files\[0\]\.path'
expect path-dollar 'deploy\.files\[0\]\.path'
expect path-tilde 'deploy\.files\[0\]\.path'
expect owner-subst2 'deploy\.files\[1\]\.owner'

t_step "every command refuses a bad playbook"
for b in typo-top dup-key type-nodes-object big-2mib deep-100 name-subst path-dotdot; do
	for cmd in verify status "quarantine list" "quarantine add n1 --reason x" \
	    "rollback --only n1" "deploy --dry-run" renew revoke; do
		# shellcheck disable=SC2086
		cf_run 78 -p "$D/$b.json" $cmd
		assert_match "$(head -c 600 "$T_ERR")" "^certfleet: .*$b\.json" "$b ($cmd): names the file"
	done
done

t_step "the messages never carry raw control characters"
bad=$(cat "$T_TMP"/err.* | LC_ALL=C grep -c '[[:cntrl:]]' || true)
assert_eq "$bad" 0 "no stderr line holds a control character"

t_step "SSH identity readable by others: exit 78 naming the file"
cp "$TB/id_ed25519" "$T_TMP/id_open"
for m in 0644 0640 0604 0660; do
	chmod "$m" "$T_TMP/id_open"
	mk identity-open "pb[\"ssh\"][\"identity\"] = \"$T_TMP/id_open\""
	cf_run 78 -p "$D/identity-open.json" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
	assert_match "$(cat "$T_ERR")" "id_open" "mode $m: message names the identity file"
	assert_eq "$(wc -l <"$T_ERR")" 1 "mode $m: one line on stderr"
done
chmod 0600 "$T_TMP/id_open"
cf_run 0 -p "$D/identity-open.json" validate

t_step "nothing changed anywhere, no command was injected"
for i in 1 2; do assert_unchanged "$i" start "n$i: nothing under /srv changed"; done
assert_state_unchanged start "state directory: same files, same bytes"
find "$TB/state" ! -name lock -printf '%p %M %s %T@\n' | sort >"$T_TMP/state.ls.now"
if cmp -s "$T_TMP/state.ls.start" "$T_TMP/state.ls.now"; then
	t_ok "state directory: same names, modes and mtimes"
else
	t_notok "state directory: same names, modes and mtimes" \
	    "$(diff "$T_TMP/state.ls.start" "$T_TMP/state.ls.now" | head)"
fi
assert_eq "$(ls /tmp/pwned* 2>/dev/null)" "" "no /tmp/pwned* on the coordinator"
for i in 1 2; do
	assert_eq "$(tb_exec "$i" sh -c 'ls /tmp/pwned* /srv/pwned* /root/pwned* 2>/dev/null')" "" \
	    "n$i: no pwned marker"
	assert_eq "$(grep -c 'Accepted publickey' "$(tb_dir "$i")/logs/sshd.log")" 1 \
	    "n$i: only the first good deploy logged in"
done
assert_served 1 "$(tb_cert_sha256 "$NEW/fullchain.pem")" "n1 still serves what the good deploy put there"

t_done
