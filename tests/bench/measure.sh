#!/bin/sh
# measure.sh OUT CMD [ARGS...] - run CMD once and write one line to OUT:
#     wall_s cpu_s user_s sys_s maxrss_kib rc
# wall_s: monotonic-ish wall time (date +%s%N around the run).
# cpu_s: user+sys of every process CMD ever started, from a cpuacct cgroup
#   made for this run (counts what GNU time cannot: daemons that outlive
#   their parent, such as Ansible's ssh ControlPersist masters); falls back
#   to GNU time's user+sys where cgroup v1 cpuacct is not writable.
# user_s sys_s maxrss_kib: GNU time (/usr/bin/time), i.e. the waited-for
#   process tree; maxrss is the largest single process of it.
# Processes left in the cgroup after CMD exits are ours (started by CMD):
# they are killed by pid before the CPU is read.
set -u
out=$1
shift
cgroot=/sys/fs/cgroup/cpuacct
cg=$cgroot/cfbench.$$
tf=$(mktemp /tmp/cfbench-time.XXXXXX)
if ! mkdir "$cg" 2>/dev/null; then
	cg=""
fi
t0=$(date +%s%N)
# shellcheck disable=SC2016
sh -c '[ -n "$1" ] && echo $$ >"$1/cgroup.procs"; shift; tf=$1; shift
	exec /usr/bin/time -o "$tf" -f "%U %S %M" "$@"' measure "$cg" "$tf" "$@"
rc=$?
t1=$(date +%s%N)
cpu=""
if [ -n "$cg" ]; then
	i=0
	# (cgroup files have size 0: test the content, not -s)
	while [ -n "$(cat "$cg/cgroup.procs")" ] && [ $i -lt 50 ]; do
		# shellcheck disable=SC2046
		kill $(cat "$cg/cgroup.procs") 2>/dev/null
		sleep 0.1
		i=$((i + 1))
	done
	cpu=$(awk '{ printf "%.3f", $1 / 1e9 }' "$cg/cpuacct.usage")
	rmdir "$cg" 2>/dev/null
fi
# GNU time prints "Command exited with non-zero status N" first on failure.
tail -n 1 "$tf" | awk -v w0="$t0" -v w1="$t1" -v cpu="$cpu" -v rc="$rc" '{
	if (cpu == "") cpu = sprintf("%.3f", $1 + $2)
	printf "%.3f %s %s %s %s %s\n", (w1 - w0) / 1e9, cpu, $1, $2, $3, rc
}' >"$out"
rm -f "$tf"
exit "$rc"
