#!/bin/bash
# The documentation and the binary list the same options.  For every
# command: the options of its certfleet(1) SYNOPSIS entry, of its line in
# `certfleet --help`, of `certfleet COMMAND --help`, and of README's
# synopsis for it (where README has one with options) are the same set;
# every option described under the command's own section of certfleet(1)
# is in that set; the global options of certfleet(1) and of `--help` are
# the same; and the binary accepts every documented option, each global
# one also after the command.  No nodes needed.
. "$(dirname "$0")/../lib/common.sh"
t_start

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MAN=$ROOT/docs/certfleet.1
README=$ROOT/README.md
COMMANDS="deploy verify status quarantine rollback renew revoke check validate"

for c in $COMMANDS; do "$CERTFLEET" "$c" --help >"$T_TMP/help.$c" 2>&1; done
"$CERTFLEET" --help >"$T_TMP/help" 2>&1

# One line per command and source: "SOURCE CMD opt[=] opt[=] ..." (a
# trailing "=" marks an option that takes a value, known from the man
# page's italic argument after it).
python3 - "$MAN" "$README" "$T_TMP" "$COMMANDS" >"$T_TMP/options" <<'EOF'
import re, sys
man, readme, tmp, commands = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()
src = open(man).read()
def unroff(s):
    s = s.replace("\\-", "-").replace("\\fI", "").replace("\\fR", "").replace("\\fB", "")
    return re.sub(r"(?m)^\.(B|I|BR|RB|IR|RI|BI|IB)\b ?", "", s)
def opts(text):
    return sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-z])\b", text)))
out = []
# man SYNOPSIS: entries separated by .br; values: an option followed by an
# .I/.IR line takes one
syn = src[src.index(".SH SYNOPSIS"):src.index(".SH DESCRIPTION")]
syn = syn[syn.index(".PP"):].split(".br")
takes = set()
for entry in syn:
    lines = entry.strip().splitlines()
    words = unroff("\n".join(lines)).split()
    cmd = next((w for w in words if w in commands), None)
    if cmd is None:
        continue
    for i, l in enumerate(lines):
        for o in re.findall(r"\\-\\-[a-z\\-]+", l):
            o = o.replace("\\-", "-")
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            rest = l.split(o.replace("-", "\\-"), 1)[1].strip() if o.replace("-", "\\-") in l else ""
            if nxt.startswith(".I") or re.match(r'^"? *[A-Z]', rest.strip('"').strip()):
                takes.add(o)
    out.append(("man-synopsis", cmd, opts(unroff(entry))))
# man: options described under each command's .SS section (.TP items)
for cmd in commands:
    m = re.search(r"\n\.SS %s\n(.*?)(?=\n\.SS |\n\.SH )" % cmd, src, re.S)
    if not m:
        continue
    tp = re.findall(r"\.TP\n([^\n]*)", m.group(1))
    out.append(("man-section", cmd, opts(unroff("\n".join(tp)))))
# man GLOBAL OPTIONS
g = src[src.index(".SH GLOBAL OPTIONS"):src.index(".SH COMMANDS")]
gl = re.findall(r"\.TP\n([^\n]*)", g)
for l in gl:
    for o in re.findall(r"(?:\\-){1,2}[a-z][a-z\\-]*", l):
        o = o.replace("\\-", "-")
        if re.search(r'" ?\\fI|" [A-Z]', l) and "[" not in l.split(o.replace("-", "\\-"))[-1][:3]:
            takes.add(o)
out.append(("man-global", "-", opts(unroff("\n".join(gl)))))
# certfleet --help: the commands section, a command's line and its
# continuation lines; the global options section
h = open(tmp + "/help").read()
cmds, glob = h.split("\nglobal options", 1)
cur, acc = None, {}
for line in cmds.splitlines():
    m = re.match(r"^  ([a-z]+)\b", line)
    if m and m.group(1) in commands:
        cur = m.group(1)
        acc[cur] = line
    elif cur and line.startswith("      "):
        acc[cur] += " " + line
for cmd in commands:
    out.append(("help", cmd, opts(acc.get(cmd, ""))))
out.append(("help-global", "-", [o for o in opts(glob.split("exit codes")[0])]))
# certfleet CMD --help
for cmd in commands:
    out.append(("cmd-help", cmd, opts(open("%s/help.%s" % (tmp, cmd)).read())))
# README: `certfleet -p FILE CMD [--opt ...]` synopses (with brackets)
for m in re.finditer(r"`certfleet -p FILE ([a-z]+) (\[[^`]*)`", open(readme).read()):
    if m.group(1) in commands:
        out.append(("readme", m.group(1), opts(m.group(2))))
for s, c, o in out:
    if c != "-":
        o = [x for x in o if x != "-p"]  # every synopsis shows -p PLAYBOOK
    print(s, c, " ".join(x + ("=" if x in takes else "") for x in o))
EOF
cat "$T_TMP/options"

# options SOURCE CMD: the set, without value marks
options() { awk -v s="$1" -v c="$2" '$1 == s && $2 == c { $1 = $2 = ""; print }' "$T_TMP/options" | tr ' ' '\n' | sed 's/=$//' | grep . | sort -u | tr '\n' ' '; }

t_step "every command: man SYNOPSIS == --help line == COMMAND --help (== README synopsis)"
for c in $COMMANDS; do
	want=$(options man-synopsis "$c")
	assert_eq "$(options help "$c")" "$want" "$c: certfleet --help lists the man page's options"
	assert_eq "$(options cmd-help "$c")" "$want" "$c: certfleet $c --help lists the man page's options"
	if grep -q "^readme $c " "$T_TMP/options"; then
		assert_eq "$(options readme "$c")" "$want" "$c: README's synopsis lists the man page's options"
	fi
	for o in $(options man-section "$c"); do
		assert_match " $want" " $o " "$c: $o (described in its man section) is in its synopsis"
	done
done
assert_ne "$(options man-synopsis deploy)" "" "control: the man synopsis parser found deploy's options"
assert_match "$(options man-synopsis renew)" "--only" "control: renew's --only is found"

t_step "global options: man == --help"
assert_eq "$(options help-global -)" "$(options man-global -)" "the same global options"
assert_match "$(options man-global -)" "--state-dir" "control: the global parser found --state-dir"

# value OPT: an argument the option accepts
value() {
	case $1 in
	--reason) echo unspecified ;;
	--warn|--crit|--timeout) echo 5 ;;
	--state-dir) echo "$T_TMP/none" ;;
	*) echo x ;;
	esac
}
takes() { grep -q -- " $1= \| $1=\$" "$T_TMP/options"; }

t_step "the binary accepts every documented option (COMMAND OPTION [VALUE] --help exits 0)"
for c in $COMMANDS; do
	for o in $(options man-synopsis "$c"); do
		if takes "$o"; then set -- "$o" "$(value "$o")"; else set -- "$o"; fi
		assert_exit 0 "$CERTFLEET" "$c" "$@" --help
	done
done

t_step "every global option, after the command too"
for o in $(options man-global -); do
	case $o in --help|-h|--version) continue ;; esac
	if takes "$o"; then set -- "$o" "$(value "$o")"; else set -- "$o"; fi
	assert_exit 0 "$CERTFLEET" "$@" validate --help
	assert_exit 0 "$CERTFLEET" validate "$@" --help
done
assert_exit 64 "$CERTFLEET" validate --no-such-option
assert_file_match "$T_ERR" "unknown option '--no-such-option'" "control: an unknown option is refused, by name"
assert_exit 64 "$CERTFLEET" verify --force
assert_file_match "$T_ERR" "verify: unknown option '--force'" "control: a command refuses another command's option"
[ -e "$T_TMP/none" ] && t_notok "--state-dir with --help created the directory" || t_ok "--help created nothing"

t_done
