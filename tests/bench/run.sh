#!/bin/bash
# run.sh - `make bench`: certfleet side by side with the tools people use
# for the same job, on the same real nodes (tests/lib/testbed.sh: network
# namespaces with their own sshd and nginx), and writes
# tests/bench/results.md.  Needs root.  Not part of `make test`.
#
# Phases (BENCH_PHASES, default all, in this order; deploy=N for one size,
# e.g. BENCH_PHASES="deploy=10 deploy=50 blackhole issue scale deploy=200"):
#   deploy     for N in BENCH_SIZES: copy fullchain.pem + privkey.pem to
#              /srv/tls, nginx -t, reload, TLS check that every node serves
#              the new certificate, with: a sequential scp+ssh loop (seq),
#              parallel-scp + parallel-ssh (pssh), ansible-playbook (ansible)
#              and certfleet deploy.  A new certificate every run, so every
#              run really deploys.  Tools alternate within each round.
#   profile    certfleet's coordinator at BENCH_PROFILE_N nodes under
#              valgrind --tool=callgrind (perf has no hardware counters
#              here) and perf record -e cpu-clock; summaries in
#              tests/bench/profile/.
#   blackhole  20 nodes, 2 of them silently dropping packets; a 5 s
#              connect timeout for every tool.
#   issue      certfleet renew --force --no-deploy vs certbot certonly,
#              same Pebble, same names, same dns-01 hook.
#   scale      certfleet deploy to BENCH_SCALE_N nodes.
#
# Knobs (environment):
#   BENCH_SIZES="10 50 200"   BENCH_TOOLS="seq pssh ansible certfleet"
#   BENCH_RUNS=3              runs per tool up to 50 nodes
#   BENCH_RUNS_BIG=3          runs of pssh/certfleet above 50 nodes
#   BENCH_RUNS_SLOW=1         runs of seq/ansible above 50 nodes
#   BENCH_BH_RUNS=2  BENCH_ISSUE_RUNS=5  BENCH_SCALE_N=500  BENCH_SCALE_RUNS=3
#   BENCH_SCALE_TOOLS=certfleet   (add pssh for a 500-node parallel-ssh run)
#   BENCH_PROFILE_N=50        BENCH_OUT=tests/bench/results.md
#   BENCH_CF_CONCURRENCY=64   certfleet's rollout.concurrency is min(N, this)
#   BENCH_SCALE_CONCURRENCY=32 BENCH_SCALE_CT=30   concurrency (certfleet's
#                             default) and connect timeout of the scale runs
#   BENCH_CONTINUE=1          add to the runs already in tests/bench/raw.tsv
#                             (and raw.meta) instead of starting afresh, e.g.
#                             to re-run one phase after an interruption
#   BENCH_MAX_LOAD=1.5        wait (up to BENCH_LOAD_WAIT=300 s) for the
#                             1-minute load to fall below this before a phase
#   CERTFLEET=build/certfleet
#
# Quick look: BENCH_SIZES=10 BENCH_RUNS=1 BENCH_PHASES="deploy blackhole" sh tests/bench/run.sh

if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CERTFLEET=${CERTFLEET:-$ROOT/build/certfleet}
case $CERTFLEET in /*) ;; *) CERTFLEET=$ROOT/$CERTFLEET ;; esac
BENCH_PHASES=${BENCH_PHASES:-"deploy profile issue scale blackhole"}
BENCH_SIZES=${BENCH_SIZES:-"10 50 200"}
BENCH_TOOLS=${BENCH_TOOLS:-"seq pssh ansible certfleet"}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_RUNS_BIG=${BENCH_RUNS_BIG:-3}
BENCH_RUNS_SLOW=${BENCH_RUNS_SLOW:-1}
BENCH_BH_RUNS=${BENCH_BH_RUNS:-2}
BENCH_BH_N=20
BENCH_BH_NODES="3 15"
BENCH_ISSUE_RUNS=${BENCH_ISSUE_RUNS:-5}
BENCH_SCALE_N=${BENCH_SCALE_N:-500}
BENCH_SCALE_RUNS=${BENCH_SCALE_RUNS:-3}
BENCH_SCALE_TOOLS=${BENCH_SCALE_TOOLS:-certfleet}
BENCH_PROFILE_N=${BENCH_PROFILE_N:-50}
BENCH_CF_CONCURRENCY=${BENCH_CF_CONCURRENCY:-64}
BENCH_SCALE_CONCURRENCY=${BENCH_SCALE_CONCURRENCY:-32}
BENCH_SCALE_CT=${BENCH_SCALE_CT:-30}
BENCH_OUT=${BENCH_OUT:-$HERE/results.md}
BENCH_MAX_LOAD=${BENCH_MAX_LOAD:-1.5}
BENCH_LOAD_WAIT=${BENCH_LOAD_WAIT:-300}
CT=5                    # connect timeout, seconds, for every tool
SNI=node.test

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
[ -x "$CERTFLEET" ] || die "no binary at $CERTFLEET (make first)"

# --- packages --------------------------------------------------------------
bench_deps() {
	local want missing="" p
	want=$(sed 's/#.*//' "$HERE/deps" | tr -s ' \n' '  ')
	for p in $want; do
		dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' ||
		    missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	log "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing >/dev/null ||
	    die "apt-get install$missing failed"
}
bench_deps

# shellcheck source=../lib/testbed.sh
. "$ROOT/tests/lib/testbed.sh"
# shellcheck source=../lib/pebble.sh
. "$ROOT/tests/lib/pebble.sh"
# tb_up waits 15 s for the nodes; a 500-node bed on 2 busy cores needs more.
eval "tb_wait_ready_15() $(declare -f tb_wait_ready | sed 1d)"
tb_wait_ready() { tb_wait_ready_15 "${BENCH_READY_S:-180}"; }

WORK=$(mktemp -d /tmp/cfbench.XXXX)
RAW=$WORK/raw.tsv       # one line per measured run
META=$WORK/meta         # key=value facts for the report
: >"$RAW"
: >"$META"
if [ "${BENCH_CONTINUE:-0}" = 1 ] && [ -s "$HERE/raw.tsv" ]; then
	cp "$HERE/raw.tsv" "$RAW"
	[ -f "$HERE/raw.meta" ] && cp "$HERE/raw.meta" "$META"
fi
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "$PEBBLE_PID$CHALLTESTSRV_PID" ] && pebble_down
	tb_down
	# An interrupted run still reports what it measured.
	[ $rc -ne 0 ] && [ -s "$RAW" ] && write_results
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		log "raw data kept in $WORK"
	else
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

meta() { printf '%s=%s\n' "$1" "$2" >>"$META"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# Busy jiffies of the whole machine (every process, nodes included).
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# Wait for a quiet-ish machine (other people's tests share it).
wait_quiet() {
	local t=0
	while awk -v l="$(load1)" -v m="$BENCH_MAX_LOAD" 'BEGIN { exit !(l > m) }'; do
		if [ $t -ge "$BENCH_LOAD_WAIT" ]; then
			log "load still $(load1) after ${t}s; going on (noted in results)"
			return 0
		fi
		[ $t -eq 0 ] && log "load $(load1) > $BENCH_MAX_LOAD: waiting for a quieter machine"
		sleep 10
		t=$((t + 10))
	done
}

# --- one bed ---------------------------------------------------------------

# bed_up N: nodes, hosts files, ansible config and certfleet playbook.
bed_up() {
	local n=$1 i
	log "bringing up $n nodes"
	local t0=$SECONDS
	tb_up "$n"
	log "$n nodes up in $((SECONDS - t0)) s"
	: >"$TB/hosts"
	for i in $(seq 1 "$n"); do
		_tb_node "$i"
		echo "$_ip" >>"$TB/hosts"
	done
	{ echo "[nodes]"; cat "$TB/hosts"; } >"$TB/hosts.ini"
	cat >"$TB/ansible.cfg" <<EOF
[defaults]
inventory = $TB/hosts.ini
remote_user = root
private_key_file = $TB/id_ed25519
host_key_checking = True
timeout = $CT
interpreter_python = auto_silent
retry_files_enabled = False
[ssh_connection]
# Ansible's default ssh_args, plus the bed's known_hosts, strictly.
ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=$TB/known_hosts -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes
EOF
	# The parallelism of parallel-ssh -p N and ansible forks N, up to
	# BENCH_CF_CONCURRENCY: on this bed every SSH handshake's server side
	# runs on the coordinator's 2 cores too, so hundreds at once just queue
	# for the CPU and overrun the 5 s connect deadline, which in certfleet
	# covers TCP, the SSH handshake and authentication (measured: 500 at
	# once, 80-90% of the nodes quarantined as timeouts).  Canary and the
	# rest at certfleet's defaults.
	local conc=$n
	[ "$conc" -gt "$BENCH_CF_CONCURRENCY" ] && conc=$BENCH_CF_CONCURRENCY
	tb_playbook "$TB/pb.json" concurrency=$conc connect_timeout=$CT timeout=60
	CERT_SEQ=0
}

# bed_down: tb_down, then wait until the kernel has really let go of this
# run's namespaces and veths: the next bed reuses their names (the run id
# is this shell's pid), and netns teardown finishes asynchronously.
bed_down() {
	local t=0 l i pid
	# nginx masters first: tb_down kills every process of the namespaces
	# in one pass, and a master that outlives its worker by a moment
	# respawns it; the new worker (ppid 1) then holds the namespace, and
	# with it the veth name, alive (seen: one orphan per node).
	for i in $(seq 1 "$TB_N"); do
		read -r pid 2>/dev/null <"$TB/nodes/n$i/logs/nginx.pid" &&
		    kill -KILL "$pid" 2>/dev/null
	done
	tb_down
	while [ $t -lt 20 ]; do
		ip netns list 2>/dev/null | grep -q "^cft${TB_RUN}n" ||
		    ip -o link show 2>/dev/null | grep -q ": cft${TB_RUN}[vb]" ||
		    return 0
		sleep 0.5
		t=$((t + 1))
	done
	# Seen after the blackhole phase: the namespaces are gone by name but
	# the kernel has not yet freed them, so their veths' host ends linger
	# and the next bed's `link add` of the same name fails.  Deleting the
	# host end removes the pair.
	for l in $(ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' |
	    sed 's/@.*//' | grep -E "^cft${TB_RUN}[vb]"); do
		ip link del "$l" 2>/dev/null
	done
	ip -o link show 2>/dev/null | grep -q ": cft${TB_RUN}[vb]" &&
	    log "warning: links of run $TB_RUN still there after tb_down"
	return 0
}

# new_cert: a fresh certificate for the next run -> CERT FP SHA
new_cert() {
	CERT_SEQ=$((CERT_SEQ + 1))
	tb_make_cert "r$CERT_SEQ" 90 || die "tb_make_cert"
	CERT=$TB/certs/r$CERT_SEQ
	FP=$(openssl x509 -in "$CERT/fullchain.pem" -noout -fingerprint -sha256)
	FP=${FP#*=}
	SHA=$(tb_cert_sha256 "$CERT/fullchain.pem")
}

# run_one PHASE N TOOL RUN CHECK_IPS...: one measured job.
run_one() {
	local phase=$1 n=$2 tool=$3 run=$4 m b0 b1 ok l
	shift 4
	new_cert
	sync
	l=$(load1)
	n0=$("$HERE/nodecpu.py" "cft${TB_RUN}n")
	b0=$(machine_busy)
	env BW="$TB" CERT="$CERT" FP="$FP" SNI="$SNI" PAR="$n" CT="$CT" \
	    CERTFLEET="$CERTFLEET" "$HERE/measure.sh" "$TB/m.out" "$HERE/job.sh" "$tool" \
	    >"$TB/job.log" 2>&1
	b1=$(machine_busy)
	n1=$("$HERE/nodecpu.py" "cft${TB_RUN}n")
	m=$(cat "$TB/m.out")
	ok=$("$HERE/served.py" "$SHA" "$SNI" "$@")
	# phase n tool run wall cpu user sys maxrss rc machine_cpu load1 served node_cpu
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$n" "$tool" "$run" \
	    "$(echo "$m" | tr ' ' '\t')" \
	    "$(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.2f", (b - a) / 100 }')" \
	    "$l" "${ok%% *}" "$(awk -v a="$n0" -v b="$n1" 'BEGIN { printf "%.2f", b - a }')" >>"$RAW"
	log "$phase n=$n $tool #$run: wall/cpu/user/sys/rss/rc = $m; serving new cert: $ok"
	if [ "$(echo "$m" | cut -d' ' -f6)" != 0 ] && [ "$phase" != blackhole ]; then
		tail -n 5 "$TB/job.log" >&2
		[ "$tool" = certfleet ] && tail -n 5 "$TB/certfleet.err" >&2
	fi
	sleep 1
}

runs_for() { # runs_for N TOOL
	if [ "$1" -le 50 ]; then
		echo "$BENCH_RUNS"
	else
		case $2 in seq | ansible) echo "$BENCH_RUNS_SLOW" ;; *) echo "$BENCH_RUNS_BIG" ;; esac
	fi
}

# rounds PHASE N TOOLS CHECK_IPS...: round r runs every tool that still
# has runs left, starting one tool later each round.
rounds() {
	local phase=$1 n=$2 tools=($3) r max=0 k t i nt
	shift 3
	nt=${#tools[@]}
	for t in "${tools[@]}"; do
		k=$(runs_for "$n" "$t")
		[ "$phase" = blackhole ] && k=$BENCH_BH_RUNS
		[ "$phase" = scale ] && k=$BENCH_SCALE_RUNS
		[ "$k" -gt $max ] && max=$k
	done
	for r in $(seq 1 $max); do
		for i in $(seq 0 $((nt - 1))); do
			t=${tools[$(((i + r - 1) % nt))]}
			k=$(runs_for "$n" "$t")
			[ "$phase" = blackhole ] && k=$BENCH_BH_RUNS
			[ "$phase" = scale ] && k=$BENCH_SCALE_RUNS
			[ "$r" -le "$k" ] || continue
			run_one "$phase" "$n" "$t" "$r" "$@"
		done
	done
}

# --- phases ----------------------------------------------------------------

# phase_deploy [N...]: the deploy phase for N (default BENCH_SIZES) nodes.
phase_deploy() {
	local n
	for n in ${*:-$BENCH_SIZES}; do
		wait_quiet
		meta "load_deploy_$n" "$(cut -d' ' -f1-3 /proc/loadavg)"
		bed_up "$n"
		meta "mem_used_mib_$n" "$(free -m | awk '/^Mem:/ { print $3 }')"
		# shellcheck disable=SC2046
		rounds deploy "$n" "$BENCH_TOOLS" $(cat "$TB/hosts")
		if [ "$n" = "$BENCH_PROFILE_N" ] && [[ " $BENCH_PHASES " == *" profile "* ]]; then
			phase_profile
		fi
		meta "load_deploy_${n}_end" "$(cut -d' ' -f1-3 /proc/loadavg)"
		bed_down
	done
}

# certfleet's coordinator under callgrind and perf, at BENCH_PROFILE_N nodes
# (called from phase_deploy on that bed).  Callgrind runs the coordinator
# ~50x slower: the playbook's deadlines are widened for that run only.
phase_profile() {
	local pd=$HERE/profile n=$TB_N
	mkdir -p "$pd"
	log "profile: callgrind, $n nodes"
	new_cert
	tb_playbook "$TB/pb-prof.json" concurrency="$n" connect_timeout=120 timeout=300 \
	    verify_timeout=120
	valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
	    --separate-threads=no \
	    "$CERTFLEET" --state-dir "$TB/state" -q -p "$TB/pb-prof.json" deploy \
	    --cert "$CERT/fullchain.pem" --key "$CERT/privkey.pem" \
	    >"$WORK/callgrind.stdout" 2>"$WORK/callgrind.stderr"
	meta profile_callgrind_rc $?
	{
		echo "# callgrind, certfleet deploy to $n nodes (exclusive cost, Ir)"
		callgrind_annotate --inclusive=no "$WORK/callgrind.out" 2>&1 | head -60
		echo
		echo "# callgrind, inclusive"
		callgrind_annotate --inclusive=yes "$WORK/callgrind.out" 2>&1 | head -250
	} >"$pd/callgrind-$n.txt"
	# Who calls what, how often (e.g. probes per node, key parses per node).
	callgrind_annotate --inclusive=yes --tree=caller "$WORK/callgrind.out" 2>&1 |
	    head -3000 >"$pd/callgrind-$n-callers.txt"
	# The whole machine, by program, for certfleet and parallel-ssh: what
	# the nodes' sshd and nginx cost (the floor for every tool on this
	# bed) against what each tool adds.
	for t in certfleet pssh; do
		log "profile: machine CPU by program (perf record -a), $t, $n nodes"
		new_cert
		perf record -q -a -e cpu-clock -F 1000 -o "$WORK/perf-a.data" -- \
		    env BW="$TB" CERT="$CERT" FP="$FP" SNI="$SNI" PAR="$n" CT="$CT" \
		    CERTFLEET="$CERTFLEET" "$HERE/job.sh" "$t" >/dev/null 2>&1
		{
			echo "# $t: CPU ms per node by program, whole machine (perf record -a -e cpu-clock -F 1000), $n nodes"
			perf report -i "$WORK/perf-a.data" --no-children --sort comm \
			    -F sample,comm --stdio 2>/dev/null | grep -v '^#' |
			    awk -v n="$n" 'NF >= 2 && $2 != "swapper" && $1 > 0 {
				printf "%.1f %s\n", $1 / n, $2 }' |
			    sort -rn | awk '$1 >= 0.5'
		} >"$pd/machine-$n-$t.txt"
	done
	log "profile: perf record -e cpu-clock, $n nodes"
	new_cert
	perf record -q -e cpu-clock -F 10000 -g -o "$WORK/perf.data" -- \
	    "$CERTFLEET" --state-dir "$TB/state" -q -p "$TB/pb.json" deploy \
	    --cert "$CERT/fullchain.pem" --key "$CERT/privkey.pem" \
	    >/dev/null 2>"$WORK/perf.stderr"
	meta profile_perf_rc $?
	{
		echo "# perf record -e cpu-clock (no hardware counters here), certfleet deploy to $n nodes"
		echo "# by DSO"
		perf report -i "$WORK/perf.data" --no-children --sort dso -g none --stdio 2>/dev/null |
		    grep -v '^#' | grep -v '^$' | head -20
		echo "# by symbol (self)"
		perf report -i "$WORK/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
		    grep -v '^#' | grep -v '^$' | head -50
		echo "# by symbol (children: inclusive)"
		perf report -i "$WORK/perf.data" --children --sort sym --stdio -g none 2>/dev/null |
		    grep -v '^#' | grep -v '^$' | head -50
	} >"$pd/perf-$n.txt"
}

phase_blackhole() {
	local i healthy=()
	wait_quiet
	meta load_blackhole "$(cut -d' ' -f1-3 /proc/loadavg)"
	bed_up $BENCH_BH_N
	for i in $BENCH_BH_NODES; do tb_blackhole "$i" || die "tb_blackhole $i"; done
	for i in $(seq 1 $BENCH_BH_N); do
		[[ " $BENCH_BH_NODES " == *" $i "* ]] && continue
		healthy+=("$(tb_ip "$i")")
	done
	rounds blackhole $BENCH_BH_N "$BENCH_TOOLS" "${healthy[@]}"
	bed_down
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

phase_issue() {
	local r t m l cb=$WORK/certbot names="bench.test www.bench.test"
	wait_quiet
	meta load_issue "$(cut -d' ' -f1-3 /proc/loadavg)"
	bed_up 1
	PEBBLE_PORT=$(free_port) PEBBLE_MGMT_PORT=$(free_port) \
	    PEBBLE_HTTP_PORT=$(free_port) PEBBLE_TLS_PORT=$(free_port) \
	    CHALLTESTSRV_DNS_PORT=$(free_port) CHALLTESTSRV_MGMT_PORT=$(free_port) \
	    PEBBLE_DEFAULT_IP=127.0.0.2 \
	    pebble_up "$WORK" PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 ||
	    die "pebble did not start"
	TB_DOMAINS=$names tb_playbook "$TB/pb-acme.json" \
	    acme.directory="$PEBBLE_DIRECTORY" acme.ca_bundle="$PEBBLE_CA_BUNDLE" \
	    acme.challenge=dns-01 acme.dns_hook="$ROOT/hooks/dns-pebble-challtestsrv" \
	    acme.timeout=60 certificate.key_type=ec-p256
	mkdir -p "$cb"
	local cf_cmd=("$CERTFLEET" --state-dir "$TB/state-acme" -q -p "$TB/pb-acme.json"
	    renew --force --no-deploy)
	local cb_cmd=(env REQUESTS_CA_BUNDLE="$PEBBLE_CA_BUNDLE" certbot certonly -q
	    --non-interactive --agree-tos --register-unsafely-without-email
	    --server "$PEBBLE_DIRECTORY" --config-dir "$cb/etc" --work-dir "$cb/work"
	    --logs-dir "$cb/logs" --manual --preferred-challenges dns
	    --manual-auth-hook "$HERE/certbot-dns-hook add"
	    --manual-cleanup-hook "$HERE/certbot-dns-hook del"
	    --key-type ecdsa --elliptic-curve secp256r1
	    --cert-name bench --force-renewal -d bench.test -d www.bench.test)
	mkdir -m 700 "$TB/state-acme"
	# Warm-up (not measured): both register their account with this Pebble.
	"${cf_cmd[@]}" >/dev/null 2>"$WORK/cf-warm.err" ||
	    { cat "$WORK/cf-warm.err" >&2; die "certfleet renew (warm-up) failed"; }
	"${cb_cmd[@]}" >/dev/null 2>"$WORK/cb-warm.err" ||
	    { cat "$WORK/cb-warm.err" >&2; die "certbot (warm-up) failed"; }
	for r in $(seq 1 "$BENCH_ISSUE_RUNS"); do
		for t in certfleet certbot; do
			[ $((r % 2)) = 0 ] && t=$([ $t = certfleet ] && echo certbot || echo certfleet)
			l=$(load1)
			if [ $t = certfleet ]; then
				"$HERE/measure.sh" "$WORK/m.out" "${cf_cmd[@]}" >/dev/null 2>"$WORK/issue.err"
			else
				"$HERE/measure.sh" "$WORK/m.out" "${cb_cmd[@]}" >/dev/null 2>"$WORK/issue.err"
			fi
			m=$(cat "$WORK/m.out")
			[ "$(echo "$m" | cut -d' ' -f6)" = 0 ] || tail -n 5 "$WORK/issue.err" >&2
			printf 'issue\t2\t%s\t%s\t%s\t-\t%s\t-\n' "$t" "$r" \
			    "$(echo "$m" | tr ' ' '\t')" "$l" >>"$RAW"
			log "issue $t #$r: wall/cpu/user/sys/rss/rc = $m"
		done
	done
	meta issue_orders "$(grep -c 'POST /order-plz' "$PEBBLE_DIR/pebble.log")"
	pebble_down
	bed_down
}

phase_scale() {
	local n=$BENCH_SCALE_N g1 g2 g3
	wait_quiet
	# The root namespace's neighbour table must hold every node's address
	# (plus other beds'): above gc_thresh2 entries are evicted after 5 s
	# and every connect starts with an ARP broadcast to all 500 ports.
	g1=$(sysctl -n net.ipv4.neigh.default.gc_thresh1)
	g2=$(sysctl -n net.ipv4.neigh.default.gc_thresh2)
	g3=$(sysctl -n net.ipv4.neigh.default.gc_thresh3)
	[ "$g2" -lt 4096 ] && sysctl -q -w net.ipv4.neigh.default.gc_thresh1=2048 \
	    net.ipv4.neigh.default.gc_thresh2=4096 net.ipv4.neigh.default.gc_thresh3=8192
	meta "load_scale" "$(cut -d' ' -f1-3 /proc/loadavg)"
	meta "mem_used_mib_before_scale" "$(free -m | awk '/^Mem:/ { print $3 }')"
	bed_up "$n"
	meta "mem_used_mib_$n" "$(free -m | awk '/^Mem:/ { print $3 }')"
	# 500 nodes' sshd and nginx on 2 cores: connects queue for the CPU, so
	# certfleet's default concurrency and a connect timeout that measures
	# the coordinator, not the bed's CPU queue (see results.md).
	tb_playbook "$TB/pb.json" concurrency="$BENCH_SCALE_CONCURRENCY" \
	    connect_timeout="$BENCH_SCALE_CT" timeout=120
	meta scale_concurrency "$BENCH_SCALE_CONCURRENCY"
	meta scale_connect_timeout "$BENCH_SCALE_CT"
	# shellcheck disable=SC2046
	rounds scale "$n" "$BENCH_SCALE_TOOLS" $(cat "$TB/hosts")
	meta "load_scale_end" "$(cut -d' ' -f1-3 /proc/loadavg)"
	bed_down
	sysctl -q -w net.ipv4.neigh.default.gc_thresh1="$g1" \
	    net.ipv4.neigh.default.gc_thresh2="$g2" net.ipv4.neigh.default.gc_thresh3="$g3"
}

write_results() {
	cp "$RAW" "$HERE/raw.tsv"
	cp "$META" "$HERE/raw.meta"
	python3 "$HERE/report.py" "$RAW" "$META" "$HERE/profile" >"$BENCH_OUT.tmp" &&
	    mv "$BENCH_OUT.tmp" "$BENCH_OUT" || log "report.py failed"
}

# --- machine facts ---------------------------------------------------------
if grep -q '^date=' "$META"; then
	meta continued "$(date -u '+%Y-%m-%d %H:%M UTC') (phases: $BENCH_PHASES)"
else
	meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
fi
meta nproc "$(nproc)"
meta kernel "$(uname -r)"
meta debian "$(cat /etc/debian_version)"
meta cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
meta mem_total_mib "$(free -m | awk '/^Mem:/ { print $2 }')"
meta load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
meta v_certfleet "$("$CERTFLEET" --version 2>&1 | head -1)"
meta v_pssh "parallel-ssh $(parallel-ssh --version 2>&1)"
meta v_ansible "$(ansible --version 2>/dev/null | head -1)"
meta v_openssh "$(ssh -V 2>&1)"
meta v_certbot "$(certbot --version 2>&1)"
meta v_nginx "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
meta v_openssl "$(openssl version)"
meta v_pebble "pebble $(dpkg-query -W -f='${Version}' pebble 2>/dev/null)"
meta v_libssh2 "libssh2 $(dpkg-query -W -f='${Version}' libssh2-1 2>/dev/null)"
meta v_python "$(python3 --version 2>&1)"
meta phases "$BENCH_PHASES"

for p in $BENCH_PHASES; do
	case $p in
	deploy) phase_deploy ;;
	deploy=*) phase_deploy "${p#deploy=}" ;;
	profile)
		[[ " $BENCH_PHASES " == *" deploy "* || " $BENCH_PHASES " == *" deploy=$BENCH_PROFILE_N "* ]] ||
		    log "profile runs inside the deploy phase of $BENCH_PROFILE_N nodes, which is not selected"
		continue ;;
	blackhole) phase_blackhole ;;
	issue) phase_issue ;;
	scale) phase_scale ;;
	*) die "unknown phase $p" ;;
	esac
	# After every phase, so a long run interrupted later still leaves results.
	write_results
done
meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
write_results
log "results written to $BENCH_OUT"
