# testbed.sh - a fleet of real nodes on this machine, for end-to-end tests.
#
# Source it from bash (it uses local, arrays and $(( ))), as root:
#
#     . tests/lib/testbed.sh
#     tb_up 5                    # 5 nodes, each its own network namespace
#     tb_make_cert new 90        # $TB/certs/new/{cert,chain,fullchain,privkey}.pem
#     tb_playbook "$TB/pb.json"  # a certfleet playbook for these nodes
#     ...
#     tb_down                    # (tests call it from an EXIT trap)
#
# Each node I (1..N) is a network namespace cft<RUN>n<I> with one veth on the
# bridge cft<RUN>br, address tb_ip I, and its own sshd (:22) and nginx
# (:443, :80).  All nodes use the same paths: a per-node "holder" process
# lives in a private mount namespace in which the node's directory
# $TB/nodes/nI is bind-mounted on /srv, and nginx, sshd and everything sshd
# runs (certfleet's remote commands, SFTP) are its children, so /srv is that
# node's directory for all of them.  Root's home there is the node's own
# empty /srv/home: the coordinator's ~/.bashrc (which bash runs for every
# SSH command) has no business on a node, and here it took a second.  The holder outlives sshd, so faults can
# stop, replace and restart sshd inside the same namespaces (tb_exec).
#
# The node's files (what a playbook targets):
#     /srv/tls/fullchain.pem  0644     /srv/tls/privkey.pem  0600
#     /srv/www/               webroot (http-01)
#     /srv/nginx.conf         check: nginx -t -q -c /srv/nginx.conf
#     /srv/extra.conf         included by nginx.conf; empty unless tb_break_check
#     /srv/reload.sh          nginx -s reload -c /srv/nginx.conf (tb_ignore_reload)
#     /srv/logs/              sshd.log error.log *.pid
#     /srv/home/              bind-mounted on /root (root's home on the node)
#
# Coordinator side (root namespace): $TB/id_ed25519 (client key, trusted by
# every node as root) and $TB/known_hosts (every node's host key under its IP).
#
# A run id (RUN, the sourcing shell's pid) is in every name, so runs never
# collide; tb_reap_stale removes what killed runs left behind.

TB_PY=${TB_PY:-/usr/bin/python3}
[ -x "$TB_PY" ] || TB_PY=python3
TB_NET_PREFIX=10.213          # runs get a /22 each inside 10.213.0.0/16
TB_LOCK=/run/cftb.lock
TB_DOMAINS=${TB_DOMAINS:-"node.test www.node.test"}
TB_SNI=${TB_SNI:-node.test}

TB=""
TB_N=0
TB_RUN=""
TB_SLOT=""

tb_log() { printf 'testbed: %s\n' "$*" >&2; }
tb_die() { printf 'testbed: FATAL: %s\n' "$*" >&2; exit 1; }

# --- names and addresses -------------------------------------------------

tb_ns() { printf 'cft%sn%s' "$TB_RUN" "$1"; }
tb_veth() { printf 'cft%sv%s' "$TB_RUN" "$1"; }
tb_bridge() { printf 'cft%sbr' "$TB_RUN"; }
tb_name() { printf 'n%s' "$1"; }
tb_dir() { printf '%s/nodes/n%s' "$TB" "$1"; }
# Node I is host number 10+I of the run's /22 (up to 1013 nodes).
tb_ip() { _tb_node "$1"; printf '%s' "$_ip"; }
tb_bridge_ip() { printf '%s.%s.1' "$TB_NET_PREFIX" $((TB_SLOT * 4)); }
# The same names, into variables: a $(...) costs a fork, and forks are what
# makes bringing up many nodes slow.
_tb_node() {
	local off=$((10 + $1))
	_ns=cft${TB_RUN}n$1
	_veth=cft${TB_RUN}v$1
	_name=n$1
	_dir=$TB/nodes/n$1
	_ip=$TB_NET_PREFIX.$((TB_SLOT * 4 + off / 256)).$((off % 256))
}
tb_holder_pid() { cat "$(tb_dir "$1")/logs/holder.pid" 2>/dev/null; }
tb_sshd_pid() { cat "$(tb_dir "$1")/logs/sshd.pid" 2>/dev/null; }

# Run a command inside node I: its network and mount namespaces, so /srv
# is the node's directory and 127.0.0.1/its IP are the node's.
tb_exec() {
	local i=$1 pid
	shift
	read -r pid 2>/dev/null <"$TB/nodes/n$i/logs/holder.pid"
	[ -n "$pid" ] || { tb_log "node $i: no holder"; return 1; }
	nsenter -t "$pid" -n -m -- "$@"
}

# ssh to node I as the coordinator would (for checks by hand in tests).
tb_ssh() {
	local i=$1
	shift
	ssh -q -i "$TB/id_ed25519" -o UserKnownHostsFile="$TB/known_hosts" \
	    -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 \
	    -o GlobalKnownHostsFile=/dev/null "root@$(tb_ip "$i")" "$@"
}

# --- certificates --------------------------------------------------------

# A root CA and an intermediate in $TB/ca; leaves are signed by the
# intermediate, so fullchain = leaf + intermediate like a public CA's.
tb_ca_init() {
	local d=$TB/ca
	[ -f "$d/int.pem" ] && return 0
	mkdir -p "$d" || return 1
	(
		set -e
		cd "$d"
		openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		    -nodes -keyout root.key -out root.pem -days 3650 \
		    -subj "/CN=certfleet test root CA" \
		    -addext "basicConstraints=critical,CA:TRUE" \
		    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		    -nodes -keyout int.key -out int.csr \
		    -subj "/CN=certfleet test intermediate CA" 2>/dev/null
		printf '%s\n' "basicConstraints=critical,CA:TRUE,pathlen:0" \
		    "keyUsage=critical,keyCertSign,cRLSign" \
		    "subjectKeyIdentifier=hash" \
		    "authorityKeyIdentifier=keyid" >int.ext
		openssl x509 -req -in int.csr -CA root.pem -CAkey root.key \
		    -set_serial "0x$(openssl rand -hex 12)" -days 3650 \
		    -extfile int.ext -out int.pem 2>/dev/null
		rm -f int.csr int.ext
	) || { tb_log "cannot create the test CA in $d"; return 1; }
}

# tb_make_cert NAME DAYS [DOMAIN...]
#   -> $TB/certs/NAME/{cert,chain,fullchain,privkey}.pem, signed by the
#   test intermediate.  DAYS > 0: valid from now for DAYS days.  DAYS <= 0:
#   already expired, its notAfter -DAYS days (at least 1 h) in the past.
#   Domains default to $TB_DOMAINS.  TB_CERT_KEY=rsa gives an RSA-2048 key.
tb_make_cert() {
	local name=$1 days=$2 d=$TB/certs/$1 san="" dom ft=""
	shift 2
	[ $# -gt 0 ] || set -- $TB_DOMAINS
	tb_ca_init || return 1
	for dom in "$@"; do san="${san:+$san,}DNS:$dom"; done
	if [ "$days" -le 0 ]; then
		ft="faketime -f -$((1 - days))d"
		days=1
	fi
	mkdir -p "$d" || return 1
	(
		set -e
		cd "$d"
		if [ "${TB_CERT_KEY:-ec}" = rsa ]; then
			openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
			    -out privkey.pem 2>/dev/null
		else
			openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
			    -out privkey.pem 2>/dev/null
		fi
		chmod 600 privkey.pem
		openssl req -new -key privkey.pem -subj "/CN=$1" -out leaf.csr
		printf '%s\n' "basicConstraints=critical,CA:FALSE" \
		    "keyUsage=critical,digitalSignature,keyEncipherment" \
		    "extendedKeyUsage=serverAuth" "subjectAltName=$san" \
		    "authorityKeyIdentifier=keyid" >leaf.ext
		$ft openssl x509 -req -in leaf.csr -CA "$TB/ca/int.pem" \
		    -CAkey "$TB/ca/int.key" -set_serial "0x$(openssl rand -hex 12)" \
		    -days "$days" -extfile leaf.ext -out cert.pem 2>/dev/null
		cp "$TB/ca/int.pem" chain.pem
		cat cert.pem chain.pem >fullchain.pem
		rm -f leaf.csr leaf.ext
	) || { tb_log "cannot make certificate $name"; return 1; }
}

# sha256 (hex) of the DER of the first certificate in a PEM file: what
# tb_served_sha256 and certfleet's serving_sha256 compare against.
tb_cert_sha256() {
	openssl x509 -in "$1" -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1
}

# --- bring-up ------------------------------------------------------------

# Pick a free /22 for this run (under a lock, so parallel runs differ) and
# create the bridge with it.
tb_net_init() {
	local start s b
	start=$((TB_RUN % 64))
	exec 9>"$TB_LOCK"
	flock 9
	for k in $(seq 0 63); do
		s=$(((start + k) % 64))
		b="$TB_NET_PREFIX.$((s * 4)).1/"
		if ! ip -4 -o addr show | grep -q " $b"; then
			TB_SLOT=$s
			break
		fi
	done
	if [ -z "$TB_SLOT" ]; then
		flock -u 9
		exec 9>&-
		tb_log "no free /22 left in $TB_NET_PREFIX.0.0/16"
		return 1
	fi
	b=$(tb_bridge)
	ip link add "$b" type bridge &&
	    ip addr add "$(tb_bridge_ip)/22" dev "$b" &&
	    ip link set "$b" up
	local rc=$?
	flock -u 9
	exec 9>&-
	return $rc
}

# Every node's files, its host key and the coordinator's known_hosts, in
# one python process (forks are what makes a bring-up slow here; python3's
# cryptography module is there because certbot needs it).
tb_write_nodes() {
	local i list=""
	for i in $(seq 1 "$TB_N"); do
		_tb_node "$i"
		list="$list $_name=$_ip"
	done
	"$TB_PY" - "$TB" $list <<'EOF'
import os, sys
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

tb = sys.argv[1]
nodes = [a.split("=", 1) for a in sys.argv[2:]]

def put(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.chmod(path, mode)

def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()

client_pub = read(tb + "/id_ed25519.pub")
old_full = read(tb + "/certs/old/fullchain.pem", "rb")
old_key = read(tb + "/certs/old/privkey.pem", "rb")
known = []
for name, ip in nodes:
    d = "%s/nodes/%s" % (tb, name)
    for sub in ("tls", "www/.well-known/acme-challenge", "logs"):
        os.makedirs(d + "/" + sub, exist_ok=True)
    os.makedirs(d + "/home", mode=0o700, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    put(d + "/ssh_host_ed25519_key",
        key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH,
                          ser.NoEncryption()), 0o600)
    pub = key.public_key().public_bytes(ser.Encoding.OpenSSH,
                                        ser.PublicFormat.OpenSSH).decode()
    put(d + "/ssh_host_ed25519_key.pub", pub + " " + name + "\n")
    known.append("%s %s\n" % (ip, pub))
    put(d + "/authorized_keys", client_pub)
    put(d + "/tls/fullchain.pem", old_full, 0o644)
    put(d + "/tls/privkey.pem", old_key, 0o600)
    put(d + "/extra.conf", "")
    put(d + "/reload.sh", "#!/bin/sh\nexec nginx -s reload -c /srv/nginx.conf\n", 0o755)
    put(d + "/sshd_config", """\
ListenAddress %(ip)s
Port 22
HostKey /srv/ssh_host_ed25519_key
PidFile /srv/logs/sshd.pid
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile /srv/authorized_keys
StrictModes no
Subsystem sftp internal-sftp
MaxStartups 200
MaxSessions 20
LoginGraceTime 30
UseDNS no
PrintMotd no
LogLevel INFO
""" % {"ip": ip})
    put(d + "/nginx.conf", """\
user root;
worker_processes 1;
pid /srv/logs/nginx.pid;
error_log /srv/logs/error.log;
events { worker_connections 256; }
http {
    access_log off;
    default_type text/plain;
    include /srv/extra.conf;
    server {
        listen %(ip)s:443 ssl;
        server_name _;
        ssl_certificate /srv/tls/fullchain.pem;
        ssl_certificate_key /srv/tls/privkey.pem;
        location / { return 200 "%(name)s\\n"; }
    }
    server {
        listen %(ip)s:80;
        server_name _;
        root /srv/www;
    }
}
""" % {"ip": ip, "name": name})
put(tb + "/known_hosts", "".join(known))
EOF
}

# Network plumbing for all nodes in one `ip -batch`, then one holder per
# node.  The holder (inside the node's network namespace, in a new private
# mount and UTS namespace) sets the address, bind-mounts the node dir on
# /srv, writes its pid, starts nginx and sshd (both daemonize, writing
# /srv/logs/*.pid) and then only keeps the namespaces alive.
tb_start_nodes() {
	local i br
	br=$(tb_bridge)
	for i in $(seq 1 "$TB_N"); do
		_tb_node "$i"
		printf 'netns add %s\n' "$_ns"
		printf 'link add %s type veth peer name eth0 netns %s\n' "$_veth" "$_ns"
		printf 'link set %s master %s up\n' "$_veth" "$br"
	done | ip -batch - || return 1
	for i in $(seq 1 "$TB_N"); do
		tb_start_holder "$i"
	done
}

tb_start_holder() {
	_tb_node "$1"
	# shellcheck disable=SC2016
	# nsenter rather than `ip netns exec`: the same network namespace
	# without ip's extra mount namespace and /sys remount.
	nsenter --net="/run/netns/$_ns" unshare -m --propagation private sh -c '
		ip -batch - <<EOF || exit 1
addr add $2/22 dev eth0
link set eth0 up
link set lo up
EOF
		mount --bind "$1" /srv || exit 1
		mount --bind /srv/home /root || exit 1
		echo $$ >/srv/logs/holder.pid
		nginx -c /srv/nginx.conf -e /srv/logs/error.log
		/usr/sbin/sshd -f /srv/sshd_config -E /srv/logs/sshd.log
		exec sleep infinity' holder "$_dir" "$_ip" \
	    </dev/null >>"$_dir/logs/holder.log" 2>&1 &
	# not a job of ours: no "Killed" notice when tb_down ends it
	disown $!
}

# Wait until every node answers TCP on 22 and 443 (one poller for all).
tb_wait_ready() {
	local i addrs=""
	for i in $(seq 1 "$TB_N"); do
		_tb_node "$i"
		addrs="$addrs $_ip:22 $_ip:443"
	done
	# shellcheck disable=SC2086
	"$TB_PY" - "${1:-15}" $addrs <<'EOF'
import select, socket, sys, time
# All connects of a round at once (non-blocking): an address that does not
# answer ARP yet must not hold up the others.
deadline = time.monotonic() + float(sys.argv[1])
todo = set(sys.argv[2:])
while todo and time.monotonic() < deadline:
    socks = {}
    for a in todo:
        h, p = a.rsplit(":", 1)
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((h, int(p)))
        socks[s] = a
    end = time.monotonic() + 0.3
    pending = set(socks)
    while pending and time.monotonic() < end:
        _, w, _ = select.select([], list(pending), [], max(0, end - time.monotonic()))
        for s in w:
            pending.discard(s)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                todo.discard(socks[s])
    for s in socks:
        s.close()
    if todo:
        time.sleep(0.05)
if todo:
    print("not answering: " + " ".join(sorted(todo)), file=sys.stderr)
    sys.exit(1)
EOF
}

tb_up() {
	local n=${1:?usage: tb_up N} i
	[ "$(id -u)" -eq 0 ] || tb_die "the test bed needs root"
	[ -z "$TB" ] || tb_die "tb_up: a test bed is already up ($TB)"
	[ "$n" -ge 1 ] && [ "$n" -le 1000 ] || tb_die "tb_up: 1..1000 nodes"
	tb_reap_stale
	TB_RUN=$$
	TB_N=$n
	TB=$(mktemp -d /tmp/cftb.XXXX) || tb_die "mktemp"
	chmod 755 "$TB"
	echo "$TB_RUN" >"$TB/owner"
	mkdir -p /run/sshd "$TB/nodes" && mkdir -m 700 "$TB/state"
	ssh-keygen -q -t ed25519 -N '' -C certfleet-test -f "$TB/id_ed25519" ||
	    tb_die "ssh-keygen"
	tb_make_cert old 90 || tb_die "cannot make the initial certificate"
	tb_net_init || tb_die "cannot create the bridge"
	# For a human debugging a run: its subnet slot and size.
	echo "$TB_SLOT $TB_N" >"$TB/net"
	tb_write_nodes || tb_die "cannot write the node files"
	tb_start_nodes || tb_die "cannot start the nodes"
	# 15 s, or more for beds so big that starting them takes longer
	local wait_s=$((TB_N / 10 > 15 ? TB_N / 10 : 15))
	tb_wait_ready "$wait_s" || {
		for i in $(seq 1 "$TB_N"); do
			tail -n 3 "$(tb_dir "$i")/logs/"*.log 2>/dev/null
		done | head -40 >&2
		tb_die "nodes did not come up within $wait_s s"
	}
}

# --- teardown ------------------------------------------------------------

# Pids of every process in the network namespaces named in "$@" (one
# pass over /proc instead of one `ip netns pids` per namespace).
tb_ns_pids() {
	"$TB_PY" - "$@" <<'EOF'
import os, sys
want = set()
for ns in sys.argv[1:]:
    try:
        st = os.stat("/run/netns/" + ns)
        want.add((st.st_dev, st.st_ino))
    except OSError:
        pass
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            st = os.stat("/proc/%s/ns/net" % p)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in want:
            print(p)
EOF
}

# Kill every process of the namespaces named in "$@", then delete them.
tb_kill_namespaces() {
	local pids p t=0
	[ $# -gt 0 ] || return 0
	pids=$(tb_ns_pids "$@")
	if [ -n "$pids" ]; then
		# shellcheck disable=SC2086
		kill -CONT $pids 2>/dev/null
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null
		for p in $pids; do
			while kill -0 "$p" 2>/dev/null && [ $t -lt 50 ]; do
				sleep 0.1
				t=$((t + 1))
			done
		done
	fi
	printf 'netns del %s\n' "$@" | ip -force -batch - 2>/dev/null
	return 0
}

tb_down() {
	[ -n "$TB" ] || return 0
	local i nss="" m
	for i in $(seq 1 "$TB_N"); do nss="$nss cft${TB_RUN}n$i"; done
	# shellcheck disable=SC2086
	tb_kill_namespaces $nss
	# The veths die with their namespaces; the bridge is ours to delete.
	[ -n "$TB_SLOT" ] && ip link del "$(tb_bridge)" 2>/dev/null
	# Nothing is mounted under $TB in this namespace by the bed itself, but
	# a test (or a debugging human) may have; never rm -rf through a mount.
	awk -v p="$TB/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts |
	    sort -r | while read -r m; do umount -l "$m"; done
	rm -rf "$TB"
	TB=""
	TB_N=0
	TB_SLOT=""
}

# Remove what runs that died without tb_down left: namespaces, bridges,
# veths and work dirs whose run id (a pid) is no longer alive.
tb_reap_stale() {
	local ns pid dead="" l d
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' |
	    grep -E '^cft[0-9]+n[0-9]+$'); do
		pid=${ns#cft}
		pid=${pid%%n*}
		kill -0 "$pid" 2>/dev/null || dead="$dead $ns"
	done
	# shellcheck disable=SC2086
	[ -n "$dead" ] && tb_kill_namespaces $dead
	for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' |
	    sed 's/@.*//' | grep -E '^cft[0-9]+(br|v[0-9]+)$'); do
		pid=${l#cft}
		pid=${pid%%[bv]*}
		kill -0 "$pid" 2>/dev/null || ip link del "$l" 2>/dev/null
	done
	for d in /tmp/cftb.*; do
		[ -f "$d/owner" ] || continue
		pid=$(cat "$d/owner")
		kill -0 "$pid" 2>/dev/null && continue
		grep -q " $d/" /proc/self/mounts && continue
		rm -rf "$d"
	done
	return 0
}

# --- playbook ------------------------------------------------------------

# $TB/verify-ca.pem: the trust anchors verify checks served chains against
# (verify.ca_bundle of every bed playbook): the bed's root, plus the
# running Pebble's root (a new one on every Pebble start: pebble_up calls
# this again).
tb_verify_ca() {
	[ -n "$TB" ] || return 0
	tb_ca_init || return 1
	cat "$TB/ca/root.pem" ${PEBBLE_ROOT_PEM:+"$PEBBLE_ROOT_PEM"} \
	    >"$TB/verify-ca.pem.tmp" && mv "$TB/verify-ca.pem.tmp" "$TB/verify-ca.pem"
}

# tb_playbook FILE [KEY=VALUE...]
#   Writes a playbook for the bed's nodes.  KEY is a dotted path into the
#   JSON (ssh.connect_timeout=3, rollout.canary=0, deploy.reload=/srv/reload.sh);
#   VALUE is parsed as JSON when it is valid JSON, else taken as a string;
#   "@delete" removes the key.  Shorthands: connect_timeout, timeout, canary,
#   concurrency, max_failures, verify_timeout, nodes=1,3,5 (a subset).
#   The same shorthands can come from the environment as TB_CONNECT_TIMEOUT,
#   TB_TIMEOUT, TB_CANARY, TB_CONCURRENCY (arguments win).
tb_playbook() {
	local file=${1:?usage: tb_playbook FILE [KEY=VALUE...]} i nodes=""
	shift
	tb_verify_ca || return 1
	for i in $(seq 1 "$TB_N"); do
		_tb_node "$i"
		nodes="$nodes $_name=$_ip"
	done
	TB_PB_NODES=$nodes TB_PB_DOMAINS=$TB_DOMAINS TB_PB_SNI=$TB_SNI \
	TB_PB_DIR=$TB "$TB_PY" - "$file" "$@" <<'EOF'
import json, os, sys
env = os.environ
nodes = [n.split("=", 1) for n in env["TB_PB_NODES"].split()]
tb = env["TB_PB_DIR"]
pb = {
    "certificate": {"name": "web", "domains": env["TB_PB_DOMAINS"].split()},
    "ssh": {
        "user": "root",
        "identity": tb + "/id_ed25519",
        "known_hosts": tb + "/known_hosts",
        "connect_timeout": int(env.get("TB_CONNECT_TIMEOUT", "5")),
        "timeout": int(env.get("TB_TIMEOUT", "30")),
    },
    "deploy": {
        "files": [
            {"path": "/srv/tls/fullchain.pem", "content": "fullchain", "mode": "0644"},
            {"path": "/srv/tls/privkey.pem", "content": "privkey", "mode": "0600"},
        ],
        "check": "nginx -t -q -c /srv/nginx.conf",
        "reload": "nginx -s reload -c /srv/nginx.conf",
        "webroot": "/srv/www",
    },
    "verify": {"server_name": env["TB_PB_SNI"], "port": 443, "timeout": 10,
               "ca_bundle": tb + "/verify-ca.pem"},
    "rollout": {
        "concurrency": int(env.get("TB_CONCURRENCY", "32")),
        "canary": int(env.get("TB_CANARY", "1")),
    },
    "nodes": [{"name": n, "host": h} for n, h in nodes],
}
short = {
    "connect_timeout": "ssh.connect_timeout", "timeout": "ssh.timeout",
    "canary": "rollout.canary", "concurrency": "rollout.concurrency",
    "canary_failures": "rollout.canary_failures",
    "max_failures": "rollout.max_failures",
    "verify_timeout": "verify.timeout",
}
for arg in sys.argv[2:]:
    key, _, val = arg.partition("=")
    if key == "nodes":
        want = ["n" + x for x in val.split(",")]
        pb["nodes"] = [n for n in pb["nodes"] if n["name"] in want]
        continue
    key = short.get(key, key)
    parts = key.split(".")
    obj = pb
    for p in parts[:-1]:
        obj = obj.setdefault(p, {})
    if val == "@delete":
        obj.pop(parts[-1], None)
        continue
    try:
        obj[parts[-1]] = json.loads(val)
    except ValueError:
        obj[parts[-1]] = val
with open(sys.argv[1], "w") as f:
    json.dump(pb, f, indent=2)
    f.write("\n")
EOF
}

# --- faults --------------------------------------------------------------

# Silently drop everything addressed to node I from outside: connects hang
# until the client's own deadline (nf_tables iptables works in a netns).
# Loopback stays open so a test can still look at the node from inside.
tb_blackhole() {
	ip netns exec "$(tb_ns "$1")" iptables -A INPUT -i lo -j ACCEPT &&
	    ip netns exec "$(tb_ns "$1")" iptables -A INPUT -j DROP
}
tb_unblackhole() { ip netns exec "$(tb_ns "$1")" iptables -F INPUT; }

tb_start_sshd() {
	tb_exec "$1" /usr/sbin/sshd -f /srv/sshd_config -E /srv/logs/sshd.log
	tb_wait_port "$1" 22
}

# Stop the listening sshd (connections get RST: "refused").  Sessions
# already open keep their own processes.
tb_stop_sshd() {
	local pid t=0
	pid=$(tb_sshd_pid "$1")
	[ -n "$pid" ] || return 0
	kill -CONT "$pid" 2>/dev/null
	kill "$pid" 2>/dev/null
	while kill -0 "$pid" 2>/dev/null && [ $t -lt 50 ]; do
		sleep 0.1
		t=$((t + 1))
	done
	rm -f "$(tb_dir "$1")/logs/sshd.pid"
}

# Wait (up to 5 s) until node I accepts TCP on PORT.
tb_wait_port() {
	"$TB_PY" - "$(tb_ip "$1")" "$2" <<'EOF'
import socket, sys, time
end = time.monotonic() + 5
while True:
    s = socket.socket(); s.settimeout(0.5)
    try:
        s.connect((sys.argv[1], int(sys.argv[2]))); sys.exit(0)
    except OSError:
        if time.monotonic() > end:
            print("testbed: %s:%s not answering" % tuple(sys.argv[1:]), file=sys.stderr)
            sys.exit(1)
        time.sleep(0.05)
    finally:
        s.close()
EOF
}

# Replace sshd by a listener that accepts TCP and never says a word: the
# client connects, then waits for an SSH banner that never comes.
tb_silent_ssh() {
	local i=$1 d
	d=$(tb_dir "$i")
	tb_stop_sshd "$i"
	# shellcheck disable=SC2016
	tb_exec "$i" "$TB_PY" -c '
import os, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 22)); s.listen(256)
open("/srv/logs/silent.pid", "w").write(str(os.getpid()))
held = []
while True:
    c, _ = s.accept()
    held.append(c)
' "$(tb_ip "$i")" </dev/null >>"$d/logs/silent.log" 2>&1 &
	tb_wait_port "$i" 22
}
tb_unsilent_ssh() {
	local pid d
	d=$(tb_dir "$1")
	pid=$(cat "$d/logs/silent.pid" 2>/dev/null)
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	rm -f "$d/logs/silent.pid"
	local t=0
	while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ $t -lt 50 ]; do
		sleep 0.1
		t=$((t + 1))
	done
	tb_start_sshd "$1"
}

# SIGSTOP the listening sshd: the kernel still completes TCP handshakes
# (backlog), nobody answers.
tb_sigstop_sshd() { kill -STOP "$(tb_sshd_pid "$1")"; }
tb_sigcont_sshd() { kill -CONT "$(tb_sshd_pid "$1")"; }

# Give node I a new host key (sshd restarted): known_hosts no longer matches.
tb_change_hostkey() {
	local d
	d=$(tb_dir "$1")
	tb_stop_sshd "$1"
	rm -f "$d/ssh_host_ed25519_key" "$d/ssh_host_ed25519_key.pub"
	ssh-keygen -q -t ed25519 -N '' -C "$(tb_name "$1")-new" \
	    -f "$d/ssh_host_ed25519_key" || return 1
	tb_start_sshd "$1"
}

# Remove node I from known_hosts (its key becomes unknown).
tb_forget_hostkey() {
	local ip tmp
	ip=$(tb_ip "$1")
	tmp=$TB/known_hosts.tmp
	awk -v h="$ip" '$1 != h' "$TB/known_hosts" >"$tmp" && mv "$tmp" "$TB/known_hosts"
}

# (Re)trust node I's current host key: the operator's fix for both above.
tb_trust_hostkey() {
	tb_forget_hostkey "$1"
	printf '%s %s\n' "$(tb_ip "$1")" \
	    "$(cut -d' ' -f1,2 "$(tb_dir "$1")/ssh_host_ed25519_key.pub")" \
	    >>"$TB/known_hosts"
}

# Make /srv/tls on node I a full 64 KiB tmpfs holding copies of the current
# files: reading works, writing anything new fails with ENOSPC.  The mount
# is made inside the node's mount namespace (a mount made here on
# $TB/nodes/nI/tls would not propagate into it: it was made private).
# The filler file is named .tb-fill; tb_leftovers ignores it.
tb_disk_full() {
	# shellcheck disable=SC2016
	tb_exec "$1" sh -c '
		set -e
		mkdir -p /run/cftb-save.$$
		cp -a /srv/tls/. /run/cftb-save.$$/
		mount -t tmpfs -o size=64k,mode=0755 cftb-full /srv/tls
		cp -a /run/cftb-save.$$/. /srv/tls/
		rm -rf /run/cftb-save.$$
		dd if=/dev/zero of=/srv/tls/.tb-fill bs=4096 2>/dev/null || true
		full=1
		(printf x >/srv/tls/.tb-probe) 2>/dev/null && full=0
		rm -f /srv/tls/.tb-probe
		[ $full = 1 ] || { echo "testbed: /srv/tls is not full" >&2; exit 1; }'
}
# Unmount it: the directory underneath still has the files from before.
tb_disk_unfull() { tb_exec "$1" umount /srv/tls; }

# Make `nginx -t` fail on node I only: its nginx.conf includes
# /srv/extra.conf, where we put a directive nginx does not know.  The
# running nginx is unaffected (it only reads the file on reload), exactly
# like a node whose config someone broke by hand: a safe deploy must notice
# at the check and must not reload it.
tb_break_check() { echo 'certfleet_test_broken_directive on;' >"$(tb_dir "$1")/extra.conf"; }
tb_fix_check() { : >"$(tb_dir "$1")/extra.conf"; }

# /srv/reload.sh on node I becomes a no-op: a playbook using
# deploy.reload=/srv/reload.sh "reloads" and the node keeps serving the old
# certificate (verify must catch it).
tb_ignore_reload() { printf '#!/bin/sh\nexit 0\n' >"$(tb_dir "$1")/reload.sh"; }
tb_fix_reload() {
	printf '#!/bin/sh\nexec nginx -s reload -c /srv/nginx.conf\n' >"$(tb_dir "$1")/reload.sh"
}

# --- users on a node -----------------------------------------------------

# Give node I its own users: a copy of the machine's /etc (passwd, group,
# shadow, sudoers) and an empty /home, bind-mounted in the node's mount
# namespace, so `useradd`, `install -o USER` and /etc/sudoers.d there change
# that node only (by default nodes share the machine's /etc).  sshd is
# restarted reading ~/.ssh/authorized_keys as well as /srv/authorized_keys,
# with StrictModes on, as a stock sshd does: a login set up as README's
# "Preparing a node" says must work here exactly as it says.
# The copies live in $TB/priv/nI (outside /srv: tb_snapshot ignores them).
tb_own_users() {
	local i=$1 d
	d=$TB/priv/n$i
	mkdir -p "$d/home" && cp -a /etc "$d/etc" || return 1
	# shellcheck disable=SC2016
	tb_exec "$i" sh -c 'mount --bind "$1/etc" /etc && mount --bind "$1/home" /home' \
	    own-users "$d" || return 1
	sed -i -e 's|^AuthorizedKeysFile .*|AuthorizedKeysFile /srv/authorized_keys .ssh/authorized_keys|' \
	    -e 's|^StrictModes .*|StrictModes yes|' "$(tb_dir "$i")/sshd_config"
	tb_stop_sshd "$i"
	tb_start_sshd "$i"
}

# ssh to node I as USER (tests' own checks, e.g. what that login may do).
tb_ssh_as() {
	local i=$1 u=$2
	shift 2
	ssh -q -i "$TB/id_ed25519" -o UserKnownHostsFile="$TB/known_hosts" \
	    -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 \
	    -o GlobalKnownHostsFile=/dev/null "$u@$(tb_ip "$i")" "$@"
}

# --- inspection (from outside certfleet) ---------------------------------

# sha256 of the DER leaf node I serves for SNI $TB_SNI; empty if none.
tb_served_sha256() {
	local der
	der=$(timeout 5 openssl s_client -connect "$(tb_ip "$1"):443" \
	    -servername "${2:-$TB_SNI}" </dev/null 2>/dev/null |
	    openssl x509 -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1)
	# sha256 of nothing: no certificate came back.
	[ "$der" = e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 ] && der=""
	printf '%s\n' "$der"
}

# File facts as node I sees them (its mount namespace: tmpfs faults count).
tb_file_mode() { tb_exec "$1" stat -c %a "$2"; }
tb_file_sha256() { tb_exec "$1" sha256sum "$2" | cut -d' ' -f1; }
tb_file_owner() { tb_exec "$1" stat -c %U:%G "$2"; }

# Anything in /srv/tls besides the deployed files, the disk-full filler
# and certfleet's deliberate previous-version backups (.NAME.certfleet-prev,
# hard links kept for rollback; see tb_backups): temp files a run left
# behind.  One name a line.
tb_leftovers() {
	tb_exec "$1" ls -A /srv/tls |
	    grep -vxE 'fullchain\.pem|privkey\.pem|\.tb-fill|\.(fullchain|privkey)\.pem\.certfleet-prev' ||
	    true
}
# certfleet's backups on node I: "name mode" lines.
tb_backups() {
	# shellcheck disable=SC2016
	tb_exec "$1" sh -c 'cd /srv/tls && for f in .*.certfleet-prev; do
		[ -e "$f" ] && stat -c "%n %a" "$f"; done; true'
}

# A fingerprint of everything under node I's /srv except logs: name, type,
# mode, size, mtime, ctime, content hash.  Equal before and after = nothing
# was written.
tb_snapshot() {
	# shellcheck disable=SC2016
	tb_exec "$1" sh -c 'cd /srv && find . -path ./logs -prune -o -print0 |
		sort -z | xargs -0 stat -c "%n %F %a %s %Y %Z" &&
		find . -path ./logs -prune -o -type f -print0 | sort -z |
		xargs -0 sha256sum'
}
