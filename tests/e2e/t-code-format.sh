#!/bin/bash
# The C sources are formatted with the checked-in .clang-format: `make
# format` on a clean tree changes nothing.  Checked on a copy, so a
# failure shows the diff and leaves the tree alone; and the check must be
# able to fail: a copy with one line mis-indented is caught.
. "$(dirname "$0")/../lib/common.sh"
t_start

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$T_TMP/tree"
(cd "$ROOT" && cp --parents .clang-format src/*.c src/*.h include/certfleet/*.h \
    tests/unit/*.c "$T_TMP/tree/") || t_fatal "copy of the sources"
n=$(cd "$T_TMP/tree" && ls src/*.c src/*.h include/certfleet/*.h tests/unit/*.c | wc -l)
assert_le 40 "$n" "copied the sources"
cp -r "$T_TMP/tree" "$T_TMP/orig"
(cd "$T_TMP/tree" && clang-format -i src/*.c src/*.h include/certfleet/*.h tests/unit/*.c) ||
    t_fatal "clang-format failed"
if out=$(diff -r "$T_TMP/orig" "$T_TMP/tree"); then t_ok "make format changes nothing"
else t_notok "make format would change: $(printf '%s' "$out" | head -40)"; fi

# the same check catches a mis-formatted line
sed -i '0,/^\t/s//    /' "$T_TMP/tree/src/util.c"
cp "$T_TMP/tree/src/util.c" "$T_TMP/util.c.bad"
clang-format -i "$T_TMP/tree/src/util.c"
if cmp -s "$T_TMP/tree/src/util.c" "$T_TMP/util.c.bad"; then t_notok "a mis-indented line goes unnoticed"
else t_ok "a mis-indented line is caught"; fi
t_done
