#!/bin/sh
# run.sh - build every libFuzzer target and run each for a while.
#
#   sh tests/fuzz/run.sh [SECONDS] [TARGET...]      (make fuzz FUZZ_TIME=N)
#
# Builds tests/fuzz/fuzz_*.c with clang -fsanitize=fuzzer,address,undefined
# into build-fuzz/ (each linked with every src/*.c but main.c, compiled
# once with the same sanitizers), then runs each target (or only the named
# ones: playbook, acme, pem, knownhosts) for SECONDS (default 60) on a
# copy of its seed corpus tests/fuzz/corpus/NAME/.  Before fuzzing, every
# saved reproducer tests/fuzz/regress/NAME-* is replayed: a fixed bug must
# stay fixed.  A crash (or leak, or sanitizer report) is kept in
# tests/fuzz/crashes/NAME/ and makes the script exit 1; its log is in
# build-fuzz/logs/NAME.log.  New corpus entries found during the run stay
# in build-fuzz/corpus/NAME/ (not in the tree: the seeds stay small).
#
# Env: CC (default clang), FUZZ_JOBS (parallel jobs per target, default 1),
# FUZZ_ARGS (extra libFuzzer flags).
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${1:-60}
[ $# -gt 0 ] && shift
CC=${CC:-clang}
case $CC in cc | gcc | */gcc) CC=clang ;; esac
OUT=$ROOT/build-fuzz
FZ=$ROOT/tests/fuzz
PKGS="libssh2 openssl libcurl jansson jose"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
CFLAGS="-std=gnu11 -O1 -g -D_GNU_SOURCE -pthread -Iinclude $SAN $(pkg-config --cflags $PKGS)"
LIBS="$(pkg-config --libs $PKGS) -pthread"

case $SECS in '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 64 ;; esac
command -v "$CC" >/dev/null 2>&1 || { echo "fuzz: no $CC (apt-get install clang)" >&2; exit 1; }

cd "$ROOT" || exit 1
mkdir -p "$OUT/obj" "$OUT/logs" "$OUT/corpus" || exit 1

# 1. the library objects (rebuilt when a source or header is newer)
objs=""
for src in src/*.c; do
	[ "$src" = src/main.c ] && continue
	o=$OUT/obj/$(basename "$src" .c).o
	objs="$objs $o"
	# shellcheck disable=SC3013
	if [ ! -f "$o" ] || [ "$src" -nt "$o" ] ||
	    [ -n "$(find include/certfleet src -newer "$o" -name '*.h' 2>/dev/null)" ]; then
		echo "  CC      $src"
		# shellcheck disable=SC2086
		$CC $CFLAGS -fsanitize=fuzzer-no-link -c -o "$o" "$src" ||
		    { echo "fuzz: cannot compile $src" >&2; exit 1; }
	fi
done
# the node scripts, embedded as C strings by the Makefile's own rule
make -s BUILD="$OUT" "$OUT/gen/scripts.c" ||
    { echo "fuzz: cannot generate the embedded scripts" >&2; exit 1; }
o=$OUT/obj/scripts.o
objs="$objs $o"
# shellcheck disable=SC2086
$CC $CFLAGS -Isrc -fsanitize=fuzzer-no-link -c -o "$o" "$OUT/gen/scripts.c" ||
    { echo "fuzz: cannot compile the embedded scripts" >&2; exit 1; }

# 2. the targets
targets=""
for t in "$FZ"/fuzz_*.c; do
	name=$(basename "$t" .c)
	name=${name#fuzz_}
	if [ $# -gt 0 ]; then
		case " $* " in *" $name "*) ;; *) continue ;; esac
	fi
	bin=$OUT/fuzz_$name
	echo "  CCLD    $bin"
	# shellcheck disable=SC2086
	$CC $CFLAGS -fsanitize=fuzzer -o "$bin" "$t" $objs $LIBS ||
	    { echo "fuzz: cannot build $t" >&2; exit 1; }
	targets="$targets $name"
done
[ -n "$targets" ] || { echo "fuzz: no targets selected" >&2; exit 64; }

# 3. replay the saved reproducers, then fuzz
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=""
for name in $targets; do
	bin=$OUT/fuzz_$name
	log=$OUT/logs/$name.log
	: >"$log"
	for r in "$FZ"/regress/"$name"-*; do
		[ -f "$r" ] || continue
		if ! "$bin" "$r" >>"$log" 2>&1; then
			echo "FAIL fuzz/$name: regression $(basename "$r") crashes again (see $log)"
			failed="$failed $name"
			continue 2
		fi
	done
	corpus=$OUT/corpus/$name
	# artifacts land in build-fuzz/ first; only real ones reach the tree
	crashes=$OUT/crashes/$name
	rm -rf "$crashes"
	mkdir -p "$corpus" "$crashes"
	cp -n "$FZ/corpus/$name/"* "$corpus/" 2>/dev/null
	jobs=""
	# -jobs writes fuzz-N.log into the current directory: run from logs/
	[ "${FUZZ_JOBS:-1}" -gt 1 ] &&
	    jobs="-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS"
	t0=$(date +%s)
	# shellcheck disable=SC2086
	(cd "$OUT/logs" && exec "$bin" -max_total_time="$SECS" -timeout=10 \
	    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
	    -artifact_prefix="$crashes/" $jobs ${FUZZ_ARGS:-} \
	    "$corpus") >>"$log" 2>&1
	rc=$?
	[ -n "$jobs" ] && cat "$OUT/logs"/fuzz-*.log >>"$log" 2>/dev/null &&
	    rm -f "$OUT/logs"/fuzz-*.log
	execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" |
	    tail -1 | grep -o '[0-9]*$')
	if [ $rc -ne 0 ] || [ -n "$(ls -A "$crashes")" ]; then
		mkdir -p "$FZ/crashes/$name"
		cp "$crashes"/* "$FZ/crashes/$name/" 2>/dev/null
		echo "FAIL fuzz/$name ($(($(date +%s) - t0))s, exit $rc): see $log and tests/fuzz/crashes/$name/"
		grep -m3 -E 'ERROR: |runtime error|SUMMARY' "$log" | sed 's/^/    /'
		failed="$failed $name"
	else
		echo "PASS fuzz/$name ($(($(date +%s) - t0))s, ${execs:-?} runs, corpus $(ls "$corpus" | wc -l))"
	fi
done
[ -z "$failed" ] || { echo "fuzz: failed:$failed"; exit 1; }
exit 0
