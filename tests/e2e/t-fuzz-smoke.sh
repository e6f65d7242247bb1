#!/bin/bash
# Every libFuzzer target builds, replays its saved reproducers
# (tests/fuzz/regress/) and survives 10 s of fuzzing from its seed corpus.
# The real fuzzing is `make fuzz FUZZ_TIME=N` (tests/fuzz/run.sh).
. "$(dirname "$0")/../lib/common.sh"
t_start

command -v clang >/dev/null 2>&1 || t_skip "no clang (libFuzzer): apt-get install clang"
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
    >"$T_TMP/probe.c"
clang -fsanitize=fuzzer -o "$T_TMP/probe" "$T_TMP/probe.c" 2>/dev/null ||
    t_skip "clang cannot link -fsanitize=fuzzer (libclang-rt-14-dev missing?)"

t_step "tests/fuzz/run.sh 10"
assert_exit 0 sh "$T_ROOT/tests/fuzz/run.sh" 10
cat "$T_OUT"
for t in "$T_ROOT"/tests/fuzz/fuzz_*.c; do
	name=$(basename "$t" .c)
	name=${name#fuzz_}
	assert_file_match "$T_OUT" "^PASS fuzz/$name " "fuzz target $name passed"
done

t_done
