# services.sh - the real Debian daemons of the shipped recipes (apache2 with
# mod_ssl, haproxy 2.6, postfix + dovecot), one private instance per test
# node.  Source it after testbed.sh, from bash, as root (tests/lib/deps.sh
# installs the packages; their postinst starts nothing, see deps.sh).
#
#     tb_up 2
#     svc_apache_start 1          # apache on node 1, :443 (nginx stopped)
#     svc_haproxy_start 2         # haproxy on node 2, :443
#     svc_mail_start 1            # postfix 25/587/465 + dovecot 143/110/993/995
#
# Private per node, so nodes never share a daemon's state with each other or
# with the machine:
#   * /etc/<service> is the node's own /srv/<service> (a bind mount in the
#     node's mount namespace): the recipes' paths (/etc/apache2/tls/...)
#     work unchanged, and `apachectl configtest`, `haproxy -c`, `postfix
#     check`, `doveconf -n` read that node's config.  It starts as a copy
#     of the package's defaults with the test's config written over it.
#   * /run is a tmpfs of the node's own (pid files, apache's run and lock
#     dirs, dovecot's base_dir, /run/haproxy.pid), made once per node.
#   * spool, queue, data and state dirs are under /srv/var/<service>, logs
#     under /srv/logs; no systemd anywhere.
# Every daemon is started inside the node's network and mount namespaces
# (tb_exec), so tb_down's kill of everything in those namespaces stops it
# too, on success or failure alike.

SVC_APACHE_PIDFILE=/run/apache2/apache2.pid
SVC_HAPROXY_PIDFILE=/run/haproxy.pid

# The node's own /run and its /etc/<service> directories (once per node).
svc_prepare() {
	local i=$1 d s
	d=$(tb_dir "$i")
	[ -f "$d/logs/svc-prepared" ] && return 0
	mkdir -p "$d/var" "$d/logs/apache2" || return 1
	for s in apache2 haproxy postfix dovecot; do
		# the package's defaults, then the test's files over them
		[ -d "/etc/$s" ] || { tb_log "/etc/$s missing: run tests/lib/deps.sh"; return 1; }
		cp -a "/etc/$s" "$d/$s" || return 1
		mkdir -p "$d/$s/tls"
	done
	# shellcheck disable=SC2016
	tb_exec "$i" sh -c '
		set -e
		mount -t tmpfs -o mode=0755,size=16m cftb-run /run
		mkdir -p /run/sshd /run/lock
		chmod 1777 /run/lock
		for s in apache2 haproxy postfix dovecot; do
			mount --bind "/srv/$s" "/etc/$s"
		done' || { tb_log "node $i: cannot make its private /run and /etc"; return 1; }
	: >"$d/logs/svc-prepared"
}

# svc_put_cert I NAME PATH CONTENT MODE [OWNER:GROUP]
#   Put a part of $TB/certs/NAME at PATH (as node I sees it); CONTENT is
#   cert, chain, fullchain, privkey or combined (fullchain then key), as
#   in a playbook's deploy.files.
svc_put_cert() {
	local i=$1 c=$TB/certs/$2 path=$3 content=$4 mode=$5 own=${6:-root:root}
	case $content in
	combined) cat "$c/fullchain.pem" "$c/privkey.pem" ;;
	*) cat "$c/$content.pem" ;;
	esac | tb_exec "$i" sh -c 'umask 077; cat >"$1" && chmod "$2" "$1" &&
	    chown "$3" "$1"' put "$path" "$mode" "$own"
}

# Stop node I's nginx (it holds IP:443), for a daemon that takes 443.
svc_stop_nginx() {
	local i=$1 pid t=0
	pid=$(cat "$(tb_dir "$i")/logs/nginx.pid" 2>/dev/null)
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null
	while kill -0 "$pid" 2>/dev/null && [ $t -lt 100 ]; do
		sleep 0.05
		t=$((t + 1))
	done
	! kill -0 "$pid" 2>/dev/null
}

# svc_wait_ports I PORT... : every PORT of node I accepts TCP (10 s).
svc_wait_ports() {
	local i=$1
	shift
	"$TB_PY" - "$(tb_ip "$i")" "$@" <<'EOF'
import socket, sys, time
end = time.monotonic() + 10
host, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
while ports:
    s = socket.socket(); s.settimeout(0.5)
    try:
        s.connect((host, ports[0])); ports.pop(0)
    except OSError:
        if time.monotonic() > end:
            print("services: %s:%d not answering" % (host, ports[0]), file=sys.stderr)
            sys.exit(1)
        time.sleep(0.05)
    finally:
        s.close()
EOF
}

# --- apache2 (mod_ssl) ---------------------------------------------------

# svc_apache_start I [CERTNAME]
#   apache2 on node I, IP:443, serving /etc/apache2/tls/{cert,chain,privkey}.pem
#   (as playbooks/apache.json deploys them; initially $TB/certs/CERTNAME,
#   default old).  nginx is stopped first (443).  Graceful reload:
#   apachectl graceful (the parent, SVC_APACHE_PIDFILE, stays).
svc_apache_start() {
	local i=$1 cert=${2:-old} d ip
	d=$(tb_dir "$i")
	ip=$(tb_ip "$i")
	svc_prepare "$i" || return 1
	# The node's envvars: Debian's, with the logs in the node's /srv
	# (run and lock dirs are under the node's private /run already).
	printf '%s\n' 'export APACHE_LOG_DIR=/srv/logs/apache2' >>"$d/apache2/envvars"
	printf 'Listen %s:443\n' "$ip" >"$d/apache2/ports.conf"
	rm -f "$d/apache2/sites-enabled/"*
	for m in ssl.load ssl.conf socache_shmcb.load; do
		ln -sf "../mods-available/$m" "$d/apache2/mods-enabled/$m"
	done
	cat >"$d/apache2/sites-enabled/certfleet-test.conf" <<EOF
ServerName $TB_SNI
<VirtualHost $ip:443>
    ServerName $TB_SNI
    DocumentRoot /srv/www
    SSLEngine on
    SSLCertificateFile /etc/apache2/tls/cert.pem
    SSLCertificateChainFile /etc/apache2/tls/chain.pem
    SSLCertificateKeyFile /etc/apache2/tls/privkey.pem
</VirtualHost>
EOF
	# A small event MPM: the nodes share two cores.
	cat >"$d/apache2/conf-enabled/certfleet-test-small.conf" <<'EOF'
<IfModule mpm_event_module>
    StartServers 1
    MinSpareThreads 5
    MaxSpareThreads 10
    ThreadsPerChild 5
    ServerLimit 4
    MaxRequestWorkers 20
</IfModule>
EOF
	svc_put_cert "$i" "$cert" /etc/apache2/tls/cert.pem cert 0644 &&
	    svc_put_cert "$i" "$cert" /etc/apache2/tls/chain.pem chain 0644 &&
	    svc_put_cert "$i" "$cert" /etc/apache2/tls/privkey.pem privkey 0640 root:ssl-cert ||
	    return 1
	svc_stop_nginx "$i" || { tb_log "node $i: nginx does not stop"; return 1; }
	# apache2 itself rather than `apachectl start`, which on a host booted
	# with systemd would start the machine's apache2.service instead.
	# shellcheck disable=SC2016
	tb_exec "$i" sh -c '. /etc/apache2/envvars &&
	    mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" "$APACHE_LOG_DIR" &&
	    exec apache2 -k start' </dev/null >>"$d/logs/apache2.start.log" 2>&1 || {
		tail -n 5 "$d/logs/apache2.start.log" "$d/logs/apache2/error.log" >&2
		return 1
	}
	svc_wait_ports "$i" 443
}

# The apache parent's pid on node I (empty if none).
svc_apache_pid() { tb_exec "$1" cat "$SVC_APACHE_PIDFILE" 2>/dev/null; }

# --- haproxy 2.6 ---------------------------------------------------------

# svc_haproxy_start I [CERTNAME] [APIPORT]
#   haproxy in master-worker mode on node I, IP:443, serving the combined
#   PEM /etc/haproxy/certs/example.com.pem (playbooks/haproxy.json).  Started
#   as Debian's haproxy.service does (-W, -p /run/haproxy.pid), so the
#   recipe's reload (SIGUSR2 to that pid: the master reloads its workers,
#   keeping its own pid) is the same here as on a host.  nginx is stopped.
#   With APIPORT, the runtime API listens on the node's loopback,
#   `stats socket ipv4@127.0.0.1:APIPORT level admin`
#   (playbooks/haproxy-hitless.json).
svc_haproxy_start() {
	local i=$1 cert=${2:-old} api=${3:-} d ip
	d=$(tb_dir "$i")
	ip=$(tb_ip "$i")
	svc_prepare "$i" || return 1
	mkdir -p "$d/haproxy/certs"
	cat >"$d/haproxy/haproxy.cfg" <<EOF
global
    maxconn 256${api:+
    stats socket ipv4@127.0.0.1:$api level admin}
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend https
    bind $ip:443 ssl crt /etc/haproxy/certs/example.com.pem
    http-request return status 200 content-type text/plain string "n$i"
EOF
	svc_put_cert "$i" "$cert" /etc/haproxy/certs/example.com.pem combined 0600 ||
	    return 1
	svc_stop_nginx "$i" || { tb_log "node $i: nginx does not stop"; return 1; }
	svc_haproxy_run "$i"
}

# (Re)start node I's haproxy on the config and files it has now.
svc_haproxy_run() {
	local i=$1 d
	d=$(tb_dir "$i")
	tb_exec "$i" haproxy -W -D -f /etc/haproxy/haproxy.cfg -p "$SVC_HAPROXY_PIDFILE" \
	    </dev/null >>"$d/logs/haproxy.log" 2>&1 || {
		tail -n 5 "$d/logs/haproxy.log" >&2
		return 1
	}
	svc_wait_ports "$i" 443
}

# Stop node I's haproxy (master and workers), bounded; status.
svc_haproxy_stop() {
	local m t=0
	m=$(svc_haproxy_pid "$1")
	[ -n "$m" ] || return 0
	kill "$m" 2>/dev/null
	while kill -0 "$m" 2>/dev/null && [ $t -lt 100 ]; do
		sleep 0.05
		t=$((t + 1))
	done
	! kill -0 "$m" 2>/dev/null
}

# svc_haproxy_api I PORT COMMAND: HAProxy's answer to one runtime API
# command, asked from inside node I (its loopback).
svc_haproxy_api() {
	tb_exec "$1" "$TB_PY" - "$2" "$3" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.argv[2].encode() + b"\n")
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
sys.stdout.write(out.decode(errors="replace"))
PY
}

# The haproxy master's pid on node I, and its workers' pids (one a line).
svc_haproxy_pid() { tb_exec "$1" cat "$SVC_HAPROXY_PIDFILE" 2>/dev/null; }
svc_haproxy_workers() {
	local m
	m=$(svc_haproxy_pid "$1")
	[ -n "$m" ] && pgrep -P "$m" -x haproxy
}

# --- postfix + dovecot ---------------------------------------------------

# svc_mail_start I [CERTNAME]
#   postfix (25, 587 STARTTLS; 465 implicit TLS) and dovecot (143, 110
#   STARTTLS; 993, 995 implicit TLS) on node I, each reading its own copy
#   of the certificate, /etc/postfix/tls/ and /etc/dovecot/tls/
#   {fullchain,privkey}.pem (playbooks/postfix-dovecot.json).  Reloads:
#   `postfix reload`, `doveadm reload`.  nginx keeps 443.
svc_mail_start() {
	local i=$1 cert=${2:-old} d
	d=$(tb_dir "$i")
	svc_prepare "$i" || return 1
	mkdir -p "$d/var/postfix/spool" "$d/var/postfix/lib" "$d/var/dovecot" \
	    "$d/var/mail" || return 1
	cat >"$d/postfix/main.cf" <<EOF
compatibility_level = 3.6
myhostname = mail.$TB_SNI
mydestination =
inet_interfaces = all
inet_protocols = ipv4
queue_directory = /srv/var/postfix/spool
data_directory = /srv/var/postfix/lib
maillog_file = /srv/logs/postfix.log
maillog_file_prefixes = /srv/logs
alias_maps =
alias_database =
local_recipient_maps =
smtpd_banner = \$myhostname ESMTP
smtpd_tls_chain_files = /etc/postfix/tls/privkey.pem, /etc/postfix/tls/fullchain.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 0
EOF
	# Debian's master.cf without chroot (a chroot would need copies of
	# /etc files in the queue dir, which Debian's init script makes), plus
	# submission (587) and submissions (465, implicit TLS).
	cat >"$d/postfix/master.cf" <<'EOF'
smtp       inet  n - n - - smtpd
submission inet  n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
submissions inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
pickup     unix  n - n 60 1 pickup
cleanup    unix  n - n - 0 cleanup
qmgr       unix  n - n 300 1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n - - trivial-rewrite
bounce     unix  - - n - 0 bounce
defer      unix  - - n - 0 bounce
trace      unix  - - n - 0 bounce
verify     unix  - - n - 1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n - - proxymap
proxywrite unix  - - n - 1 proxymap
smtp       unix  - - n - - smtp
relay      unix  - - n - - smtp
showq      unix  n - n - - showq
error      unix  - - n - - error
retry      unix  - - n - - error
discard    unix  - - n - - discard
local      unix  - n n - - local
virtual    unix  - n n - - virtual
lmtp       unix  - - n - - lmtp
anvil      unix  - - n - 1 anvil
scache     unix  - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
EOF
	rm -rf "$d/dovecot/conf.d" "$d/dovecot/private"
	: >"$d/dovecot/users"
	: >"$d/dovecot/local.conf"
	cat >"$d/dovecot/dovecot.conf" <<'EOF'
protocols = imap pop3
listen = *
base_dir = /run/dovecot
state_dir = /srv/var/dovecot
log_path = /srv/logs/dovecot.log
ssl = yes
ssl_cert = </etc/dovecot/tls/fullchain.pem
ssl_key = </etc/dovecot/tls/privkey.pem
mail_location = maildir:/srv/var/mail/%u
passdb {
  driver = passwd-file
  args = /etc/dovecot/users
}
userdb {
  driver = passwd-file
  args = /etc/dovecot/users
}
service imap-login {
  inet_listener imap {
    port = 143
  }
  inet_listener imaps {
    port = 993
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 110
  }
  inet_listener pop3s {
    port = 995
    ssl = yes
  }
}
!include_try /etc/dovecot/local.conf
EOF
	svc_put_cert "$i" "$cert" /etc/postfix/tls/fullchain.pem fullchain 0644 &&
	    svc_put_cert "$i" "$cert" /etc/postfix/tls/privkey.pem privkey 0600 &&
	    svc_put_cert "$i" "$cert" /etc/dovecot/tls/fullchain.pem fullchain 0644 &&
	    svc_put_cert "$i" "$cert" /etc/dovecot/tls/privkey.pem privkey 0600 ||
	    return 1
	chown postfix:postfix "$d/var/postfix/lib" || return 1
	# `postfix start` (postfix's own daemonizing start, not the machine's
	# service) creates the queue's subdirectories with their owners.
	tb_exec "$i" sh -c 'postfix start && dovecot' \
	    </dev/null >>"$d/logs/mail.start.log" 2>&1 || {
		tail -n 5 "$d/logs/mail.start.log" "$d/logs/postfix.log" \
		    "$d/logs/dovecot.log" >&2
		return 1
	}
	svc_wait_ports "$i" 25 587 465 143 110 993 995
}

svc_postfix_pid() { tb_exec "$1" sh -c 'read -r p </srv/var/postfix/spool/pid/master.pid && echo $p'; }
svc_dovecot_pid() { tb_exec "$1" cat /run/dovecot/master.pid 2>/dev/null; }

# --- looking from outside ------------------------------------------------

# svc_served_sha256 I PORT [STARTTLS] [SNI]
#   sha256 of the leaf node I serves on PORT (openssl s_client, with
#   -starttls smtp|imap|pop3 when given; "" or - for implicit TLS).
svc_served_sha256() {
	local i=$1 port=$2 st=${3:-} sni=${4:-$TB_SNI} der
	local args=(-connect "$(tb_ip "$i"):$port" -servername "$sni")
	[ -n "$st" ] && [ "$st" != - ] && args+=(-starttls "$st")
	der=$(timeout 5 openssl s_client "${args[@]}" </dev/null 2>/dev/null |
	    openssl x509 -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1)
	[ "$der" = e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 ] && der=""
	printf '%s\n' "$der"
}

# svc_wait_serves I SHA SECONDS PORT [STARTTLS]: poll, bounded; status.
svc_wait_serves() {
	local i=$1 want=$2 secs=$3 port=$4 st=${5:-} end
	end=$((SECONDS + secs))
	while :; do
		[ "$(svc_served_sha256 "$i" "$port" "$st")" = "$want" ] && return 0
		[ $SECONDS -ge $end ] && return 1
		sleep 0.2
	done
}

# --- faults --------------------------------------------------------------

# svc_break I SERVICE: node I's config for SERVICE gets a directive the
# daemon does not know, so the recipe's check fails; the running daemon is
# unaffected (it reads its config only on reload).  svc_fix undoes it.
svc_break() {
	local d
	d=$(tb_dir "$1")
	case $2 in
	apache2) echo 'CertfleetTestBrokenDirective on' >"$d/apache2/conf-enabled/zz-certfleet-broken.conf" ;;
	haproxy) printf 'global\n    certfleet-test-broken-keyword on\n' >>"$d/haproxy/haproxy.cfg" ;;
	dovecot) echo 'certfleet_test_broken_setting = yes' >"$d/dovecot/local.conf" ;;
	*) tb_log "svc_break: unknown service $2"; return 1 ;;
	esac
}

# --- the shipped recipes, on this bed --------------------------------------

# svc_recipe_get RECIPE EXPR: a value of a shipped playbook (python
# expression on d; lists space-separated).
svc_recipe_get() {
	"$TB_PY" - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2], {"d": d})
print(" ".join(v) if isinstance(v, list) else v)
PY
}

# svc_recipe_playbook RECIPE OUT
#   The shipped playbook RECIPE, changed only where a test bed must differ:
#   its nodes are the bed's, the SSH identity and known_hosts are the
#   bed's, and notify is dropped (its webhook host does not exist here).
#   files, check, reload, verify and rollout stay as shipped.  Prints the
#   keys it changed.
svc_recipe_playbook() {
	local i nodes=""
	tb_verify_ca || return 1
	for i in $(seq 1 "$TB_N"); do
		nodes="$nodes $(tb_name "$i")=$(tb_ip "$i")"
	done
	SVC_NODES=$nodes SVC_TB=$TB "$TB_PY" - "$1" "$2" <<'PY'
import json, os, sys
pb = json.load(open(sys.argv[1]))
tb = os.environ["SVC_TB"]
pb["nodes"] = [{"name": n, "host": h}
               for n, h in (x.split("=", 1) for x in os.environ["SVC_NODES"].split())]
pb["ssh"]["identity"] = tb + "/id_ed25519"
pb["ssh"]["known_hosts"] = tb + "/known_hosts"
# the bed's private CA is no system root (tb_verify_ca)
pb.setdefault("verify", {})["ca_bundle"] = tb + "/verify-ca.pem"
changed = ["nodes", "ssh.identity", "ssh.known_hosts", "verify.ca_bundle"]
if pb.pop("notify", None) is not None:
    changed.append("notify (removed)")
with open(sys.argv[2], "w") as f:
    json.dump(pb, f, indent=2)
print("adapted: " + ", ".join(changed))
PY
}
