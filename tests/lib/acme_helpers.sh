# acme_helpers.sh - Pebble for the renew/revoke end-to-end tests (bash).
#
#     . "$(dirname "$0")/../lib/common.sh"
#     . "$T_ROOT/tests/lib/acme_helpers.sh"
#     t_start
#     acme_start                 # trap: Pebble goes down with the test bed
#     tb_up 3
#     acme_up                    # Pebble + challtestsrv on free ports
#     acme_playbook "$PB" http-01 a.node.test b.node.test -- verify.server_name=a.node.test
#
# Pebble listens on loopback; http-01 validation connects to port 80 of the
# address a name resolves to in pebble-challtestsrv (pebble_add_a), i.e. a
# test node's nginx.  Ports are picked free per run, so two test runs (or
# another engineer's Pebble on 14000) never collide.

. "$T_ROOT/tests/lib/pebble.sh"

ACME_WORK=""

# A TCP port nobody listens on in this namespace (from START upwards, never
# one handed out before in this run).
ACME_PORTS_TAKEN=" "
acme_free_port() {
	local p=$1 used
	used=$(ss -Htan 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' |
	    sort -un | tr '\n' ' ')
	used=" $used "
	while [[ $used == *" $p "* || $ACME_PORTS_TAKEN == *" $p "* ]]; do
		p=$((p + 1))
	done
	ACME_PORTS_TAKEN="$ACME_PORTS_TAKEN$p "
	printf '%s\n' "$p"
}

# Chain t_cleanup: Pebble down first (it is not in the test bed's
# namespaces), then the usual teardown.
acme_cleanup() {
	local rc=$?
	[ -n "$PEBBLE_PID$CHALLTESTSRV_PID" ] && pebble_down
	# keep t_cleanup's view of the exit status
	(exit $rc)
	t_cleanup
}
acme_start() {
	trap acme_cleanup EXIT
}

# acme_up [NAME=VALUE...]: Pebble with env NAME=VALUE (PEBBLE_WFE_NONCEREJECT,
# ...).  Defaults: no nonce rejections (a test that wants them says so) and
# no authorization reuse, so every order really runs its challenges (with
# Pebble's default 50% reuse a --force order may need none, and a test of a
# failing challenge would pass or fail by chance).
acme_up() {
	local base=$((20000 + ($$ % 400) * 16))
	ACME_WORK=$T_TMP
	[ -n "${PEBBLE_PORT:-}" ] || PEBBLE_PORT=$(acme_free_port $base)
	[ -n "${PEBBLE_MGMT_PORT:-}" ] || PEBBLE_MGMT_PORT=$(acme_free_port $((base + 1)))
	[ -n "${CHALLTESTSRV_DNS_PORT:-}" ] ||
	    CHALLTESTSRV_DNS_PORT=$(acme_free_port $((base + 2)))
	[ -n "${CHALLTESTSRV_MGMT_PORT:-}" ] ||
	    CHALLTESTSRV_MGMT_PORT=$(acme_free_port $((base + 3)))
	PEBBLE_TLS_PORT=${PEBBLE_TLS_PORT:-5001}
	PEBBLE_HTTP_PORT=80
	export PEBBLE_PORT PEBBLE_MGMT_PORT CHALLTESTSRV_DNS_PORT \
	    CHALLTESTSRV_MGMT_PORT PEBBLE_TLS_PORT PEBBLE_HTTP_PORT
	# Names not added with pebble_add_a resolve to an address no node has.
	PEBBLE_DEFAULT_IP=${PEBBLE_DEFAULT_IP:-127.0.0.2}
	# later assignments win in env(1): the caller's override the defaults
	pebble_up "$ACME_WORK" PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 "$@" ||
	    return 1
	pebble_root_pem 0 >"$T_TMP/pebble-root.pem" || return 1
	[ -s "$T_TMP/pebble-root.pem" ]
}

# Restart Pebble (same ports) with other env, e.g. PEBBLE_WFE_NONCEREJECT=50.
# A new Pebble has a new root and forgets accounts and A records.
acme_restart() {
	pebble_down
	acme_up "$@"
}

# acme_playbook FILE CHALLENGE DOMAIN... [-- KEY=VALUE...]: a test-bed
# playbook (tb_playbook) with acme.* pointing at this Pebble.
acme_playbook() {
	local file=$1 chall=$2 doms="" extra=()
	shift 2
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		doms="$doms $1"
		shift
	done
	[ "${1:-}" = -- ] && shift
	extra=("$@")
	TB_DOMAINS=${doms# } tb_playbook "$file" \
	    acme.directory="$PEBBLE_DIRECTORY" acme.ca_bundle="$PEBBLE_CA_BUNDLE" \
	    acme.challenge="$chall" acme.timeout=40 "${extra[@]}"
}

# --- looking at certificates ----------------------------------------------

# The chain node I serves for SNI NAME, PEM, into FILE.
acme_served_chain() {
	timeout 5 openssl s_client -connect "$(tb_ip "$1"):443" -servername "$2" \
	    -showcerts </dev/null 2>/dev/null |
	    awk '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/' >"$3"
}

# Issuer CN of the first certificate in a PEM file.
acme_issuer_cn() {
	openssl x509 -in "$1" -noout -issuer -nameopt multiline 2>/dev/null |
	    awk -F' = ' '/commonName/ { print $2; exit }'
}

# SAN DNS names of the first certificate in a PEM file, sorted, one line.
acme_sans() {
	openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null |
	    tr ',' '\n' | sed -n 's/^ *DNS://p' | sort | tr '\n' ' ' | sed 's/ $//'
}

# Serial (hex, as openssl prints it) of the first certificate in a PEM file.
acme_serial() {
	openssl x509 -in "$1" -noout -serial 2>/dev/null | sed 's/^serial=//'
}

# acme_chain_verifies PEM ROOT: leaf (first cert) verifies with the rest of
# PEM as untrusted intermediates and ROOT as the only trust anchor.
acme_chain_verifies() {
	local leaf=$T_TMP/verify.leaf.pem inter=$T_TMP/verify.inter.pem
	awk 'n == 0 { print } /-----END CERTIFICATE-----/ { n = 1 }' "$1" >"$leaf"
	awk 'n == 1 { print } /-----END CERTIFICATE-----/ { n = 1 }' "$1" >"$inter"
	if [ -s "$inter" ]; then
		openssl verify -CAfile "$2" -untrusted "$inter" "$leaf" >/dev/null 2>&1
	else
		openssl verify -CAfile "$2" "$leaf" >/dev/null 2>&1
	fi
}

# Number of version directories in the store for certificate "web".
acme_versions() {
	find "$TB/state/web/versions" -mindepth 1 -maxdepth 1 -type d 2>/dev/null |
	    wc -l
}
acme_current_version() { cat "$TB/state/web/current" 2>/dev/null; }

# Files left in node I's acme-challenge directory (one name a line).
acme_challenge_files() {
	tb_exec "$1" sh -c 'ls -A /srv/www/.well-known/acme-challenge 2>/dev/null; true'
}

# acme_assert_node I VERSIONDIR: in one look at node I (one nsenter, one TLS
# handshake): it serves VERSIONDIR's leaf for SNI $TB_SNI with a chain that
# verifies against $ACME_ROOT (when set), its /srv/tls files are VERSIONDIR's
# bytes with modes 0644/0600, nothing else is left in /srv/tls but
# certfleet's backups, key backups are 0600, and no challenge file is left
# in the webroot.
acme_assert_node() {
	local i=$1 v=$2 want_full want_key want_sha got line
	local full="" key="" fmode="" kmode="" left="" badbak="" chall=""
	want_full=$(sha256sum <"$v/fullchain.pem" | cut -d' ' -f1)
	want_key=$(sha256sum <"$v/privkey.pem" | cut -d' ' -f1)
	want_sha=$(tb_cert_sha256 "$v/fullchain.pem")
	acme_served_chain "$i" "$TB_SNI" "$T_TMP/served.n$i.pem"
	got=$(tb_cert_sha256 "$T_TMP/served.n$i.pem")
	assert_eq "$got" "$want_sha" "n$i serves ${v##*/}"
	if [ -n "${ACME_ROOT:-}" ]; then
		if acme_chain_verifies "$T_TMP/served.n$i.pem" "$ACME_ROOT"; then
			t_ok "n$i: served chain verifies against Pebble's root"
		else
			t_notok "n$i: served chain verifies against Pebble's root"
		fi
	fi
	# shellcheck disable=SC2016
	while IFS= read -r line; do
		case $line in
		full\ *) full=${line#full } ;;
		key\ *) key=${line#key } ;;
		fmode\ *) fmode=${line#fmode } ;;
		kmode\ *) kmode=${line#kmode } ;;
		tls\ *)
			case ${line#tls } in
			fullchain.pem | privkey.pem | .tb-fill | .fullchain.pem.certfleet-prev) ;;
			.privkey.pem.certfleet-prev\ *)
				[ "${line##* }" = 600 ] || badbak="$badbak ${line#tls }" ;;
			*) left="$left ${line#tls }" ;;
			esac ;;
		chall\ *) chall="$chall ${line#chall }" ;;
		esac
	done < <(tb_exec "$i" sh -c '
		cd /srv/tls || exit 1
		echo "full $(sha256sum <fullchain.pem | cut -d" " -f1)"
		echo "key $(sha256sum <privkey.pem | cut -d" " -f1)"
		echo "fmode $(stat -c %a fullchain.pem)"
		echo "kmode $(stat -c %a privkey.pem)"
		for f in * .*; do
			case $f in .|..) continue ;; esac
			[ -e "$f" ] || continue
			case $f in
			.privkey.pem.certfleet-prev) echo "tls $f $(stat -c %a "$f")" ;;
			*) echo "tls $f" ;;
			esac
		done
		ls -A /srv/www/.well-known/acme-challenge 2>/dev/null |
		    sed "s/^/chall /"
		true')
	assert_eq "$full" "$want_full" "n$i: /srv/tls/fullchain.pem == ${v##*/}/fullchain.pem"
	assert_eq "$key" "$want_key" "n$i: /srv/tls/privkey.pem == ${v##*/}/privkey.pem"
	assert_eq "$fmode" 644 "n$i: /srv/tls/fullchain.pem has mode 0644"
	assert_eq "$kmode" 600 "n$i: /srv/tls/privkey.pem has mode 0600"
	assert_eq "$left" "" "n$i: no leftover files in /srv/tls"
	assert_eq "$badbak" "" "n$i: key backups (if any) are 0600"
	assert_eq "$chall" "" "n$i: no challenge file left in /srv/www/.well-known/acme-challenge"
}
