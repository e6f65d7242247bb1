#!/bin/bash
# The node scripts (src/sh/NAME.sh) pass shellcheck as POSIX sh, and parse
# (sh -n) under dash and busybox sh, the shells nodes have; test_scripts
# checks the same for the embedded text with values in front.  The check
# must be able to fail: a script with a known defect is refused too.
. "$(dirname "$0")/../lib/common.sh"
t_start

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
n=0
for f in "$ROOT"/src/sh/*.sh; do
	n=$((n + 1))
	name=${f##*/}
	if out=$(shellcheck -s sh "$f" 2>&1); then t_ok "shellcheck $name"
	else t_notok "shellcheck $name: $out"; fi
	for sh in dash "busybox sh"; do
		if out=$($sh -n "$f" 2>&1); then t_ok "$sh -n $name"
		else t_notok "$sh -n $name: $out"; fi
	done
done
assert_le 4 "$n" "found the scripts"

# the same checks refuse a broken script
printf 'x=$1\nif [ $x = 1 ]; then echo\n' >"$T_TMP/bad.sh"
if shellcheck -s sh "$T_TMP/bad.sh" >/dev/null 2>&1; then t_notok "shellcheck accepts a bad script"
else t_ok "shellcheck refuses a bad script"; fi
for sh in dash "busybox sh"; do
	if $sh -n "$T_TMP/bad.sh" >/dev/null 2>&1; then t_notok "$sh -n accepts a bad script"
	else t_ok "$sh -n refuses a bad script"; fi
done
t_done
