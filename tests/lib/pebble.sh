# pebble.sh - a real ACME CA (Pebble) and its fake DNS for tests.
#
# Source it (POSIX sh or bash):
#
#     . tests/lib/pebble.sh
#     pebble_up "$WORK" PEBBLE_WFE_NONCEREJECT=0   # env for pebble, optional
#     ... $PEBBLE_DIRECTORY, $PEBBLE_CA_BUNDLE, $CHALLTESTSRV_URL ...
#     pebble_root_pem > root.pem    # Pebble's issuing root (new every start)
#     pebble_add_a web.test 10.0.0.5
#     pebble_down                   # (from an EXIT trap)
#
# Pebble 2.4 (Debian) ships no listener certificate and no config, so
# pebble_up makes a throwaway CA and a cert for 127.0.0.1/localhost, writes
# the config, starts pebble-challtestsrv (DNS for every name -> one IP,
# TXT records through its management API) and pebble with -dnsserver
# pointing at it, and waits until the directory answers.
#
# Ports can be moved so two runs coexist:
#   PEBBLE_PORT (14000)  PEBBLE_MGMT_PORT (15000)
#   PEBBLE_HTTP_PORT (80: where http-01 is validated)  PEBBLE_TLS_PORT (5001)
#   CHALLTESTSRV_DNS_PORT (8053)  CHALLTESTSRV_MGMT_PORT (8055)
#   PEBBLE_DEFAULT_IP (127.0.0.1): what every name resolves to.
# PEBBLE_EAB_REQUIRED=true and PEBBLE_EAB_KEYS='{"kid":"b64url key"}'
# turn on External Account Binding.
# Exports: PEBBLE_DIRECTORY, PEBBLE_CA_BUNDLE (listener CA file),
# PEBBLE_MGMT_URL, CHALLTESTSRV_URL (read by hooks/dns-pebble-challtestsrv).

PEBBLE_DIR=""
PEBBLE_PID=""
CHALLTESTSRV_PID=""

pebble_log() { printf 'pebble.sh: %s\n' "$*" >&2; }

# pebble_up WORKDIR [NAME=VALUE...]
pebble_up() {
	_pb_work=${1:?pebble_up WORKDIR [ENV...]}
	shift
	_pb_port=${PEBBLE_PORT:-14000}
	_pb_mgmt=${PEBBLE_MGMT_PORT:-15000}
	_pb_http=${PEBBLE_HTTP_PORT:-80}
	_pb_tls=${PEBBLE_TLS_PORT:-5001}
	_pb_dns=${CHALLTESTSRV_DNS_PORT:-8053}
	_pb_cmgmt=${CHALLTESTSRV_MGMT_PORT:-8055}
	_pb_ip=${PEBBLE_DEFAULT_IP:-127.0.0.1}

	PEBBLE_DIR=$_pb_work/pebble
	rm -rf "$PEBBLE_DIR"
	mkdir -p "$PEBBLE_DIR" || return 1

	# Listener CA and certificate: Go's TLS needs the IP in the SAN.
	(
		cd "$PEBBLE_DIR" || exit 1
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
			-nodes -keyout ca.key -out ca.pem -days 2 \
			-subj "/CN=certfleet test pebble listener CA" \
			-addext basicConstraints=critical,CA:TRUE \
			-addext keyUsage=critical,keyCertSign,cRLSign &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout key.pem -out req.pem -subj "/CN=localhost" &&
		printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
			"extendedKeyUsage=serverAuth" \
			"basicConstraints=critical,CA:FALSE" > ext.cnf &&
		openssl x509 -req -in req.pem -CA ca.pem -CAkey ca.key \
			-CAcreateserial -out cert.pem -days 2 -extfile ext.cnf
	) >"$PEBBLE_DIR/openssl.log" 2>&1 || {
		pebble_log "making the listener certificate failed:"
		cat "$PEBBLE_DIR/openssl.log" >&2
		return 1
	}

	# PEBBLE_EAB_KEYS='{"kid-1":"<base64url HMAC key>"}' enables EAB.
	_pb_eab=""
	[ -n "${PEBBLE_EAB_KEYS:-}" ] &&
		_pb_eab=",
    \"externalAccountMACKeys\": $PEBBLE_EAB_KEYS"
	cat > "$PEBBLE_DIR/pebble.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$_pb_port",
    "managementListenAddress": "127.0.0.1:$_pb_mgmt",
    "certificate": "$PEBBLE_DIR/cert.pem",
    "privateKey": "$PEBBLE_DIR/key.pem",
    "httpPort": $_pb_http,
    "tlsPort": $_pb_tls,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": ${PEBBLE_EAB_REQUIRED:-false}$_pb_eab
  }
}
EOF

	pebble-challtestsrv -defaultIPv4 "$_pb_ip" -defaultIPv6 "" \
		-dns01 "127.0.0.1:$_pb_dns" -http01 "" -https01 "" -tlsalpn01 "" \
		-management "127.0.0.1:$_pb_cmgmt" \
		>"$PEBBLE_DIR/challtestsrv.log" 2>&1 &
	CHALLTESTSRV_PID=$!

	env PEBBLE_VA_NOSLEEP=1 "$@" pebble -config "$PEBBLE_DIR/pebble.json" \
		-dnsserver "127.0.0.1:$_pb_dns" >"$PEBBLE_DIR/pebble.log" 2>&1 &
	PEBBLE_PID=$!

	PEBBLE_DIRECTORY=https://127.0.0.1:$_pb_port/dir
	PEBBLE_CA_BUNDLE=$PEBBLE_DIR/ca.pem
	PEBBLE_MGMT_URL=https://127.0.0.1:$_pb_mgmt
	CHALLTESTSRV_URL=http://127.0.0.1:$_pb_cmgmt
	export PEBBLE_DIRECTORY PEBBLE_CA_BUNDLE PEBBLE_MGMT_URL CHALLTESTSRV_URL

	# Both up within ~10 s or give up with their logs.
	_pb_i=0
	while :; do
		if curl -fsS --max-time 2 --cacert "$PEBBLE_CA_BUNDLE" \
			"$PEBBLE_DIRECTORY" >/dev/null 2>&1 &&
			curl -fsS --max-time 2 -X POST -d '{"host":"probe.invalid."}' \
				"$CHALLTESTSRV_URL/clear-txt" >/dev/null 2>&1; then
			break
		fi
		_pb_i=$((_pb_i + 1))
		if [ $_pb_i -ge 100 ] || ! kill -0 "$PEBBLE_PID" 2>/dev/null ||
			! kill -0 "$CHALLTESTSRV_PID" 2>/dev/null; then
			pebble_log "pebble did not come up; logs:"
			tail -n 20 "$PEBBLE_DIR/pebble.log" "$PEBBLE_DIR/challtestsrv.log" >&2
			pebble_down
			return 1
		fi
		sleep 0.1
	done
	# Pebble's root is new on every start: keep it for verify.ca_bundle
	PEBBLE_ROOT_PEM=$PEBBLE_DIR/root.pem
	export PEBBLE_ROOT_PEM
	if ! pebble_root_pem 0 >"$PEBBLE_ROOT_PEM" || [ ! -s "$PEBBLE_ROOT_PEM" ]; then
		pebble_log "cannot fetch Pebble's root"
		pebble_down
		return 1
	fi
	if command -v tb_verify_ca >/dev/null 2>&1; then
		tb_verify_ca || return 1
	fi
	return 0
}

# Pebble's issuing root (PEM) on stdout; a new one on every start.
# pebble_root_pem [N]: N-th root when PEBBLE_ALTERNATE_ROOTS is set.
pebble_root_pem() {
	curl -fsS --max-time 5 --cacert "$PEBBLE_CA_BUNDLE" \
		"$PEBBLE_MGMT_URL/roots/${1:-0}"
}

# pebble_intermediate_pem [N]
pebble_intermediate_pem() {
	curl -fsS --max-time 5 --cacert "$PEBBLE_CA_BUNDLE" \
		"$PEBBLE_MGMT_URL/intermediates/${1:-0}"
}

# pebble_cert_status SERIAL_HEX: Pebble's JSON ("Status": "Valid"/"Revoked").
pebble_cert_status() {
	curl -fsS --max-time 5 --cacert "$PEBBLE_CA_BUNDLE" \
		"$PEBBLE_MGMT_URL/cert-status-by-serial/$1"
}

# pebble_add_a HOST IP: HOST resolves to IP (for http-01 on a test node).
pebble_add_a() {
	curl -fsS --max-time 5 -X POST \
		-d "{\"host\":\"$1\",\"addresses\":[\"$2\"]}" \
		"$CHALLTESTSRV_URL/add-a" >/dev/null
}

pebble_down() {
	for _pb_pid in $PEBBLE_PID $CHALLTESTSRV_PID; do
		kill "$_pb_pid" 2>/dev/null || :
	done
	for _pb_pid in $PEBBLE_PID $CHALLTESTSRV_PID; do
		wait "$_pb_pid" 2>/dev/null || :
	done
	PEBBLE_PID="" CHALLTESTSRV_PID=""
	if [ -n "$PEBBLE_DIR" ] && [ -z "${PEBBLE_KEEP:-}" ]; then
		rm -rf "$PEBBLE_DIR"
	fi
	PEBBLE_DIR="" PEBBLE_ROOT_PEM=""
}
