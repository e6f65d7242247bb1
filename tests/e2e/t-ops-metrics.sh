#!/bin/bash
# --metrics and the Prometheus rules: a real deploy with one blackholed
# node writes a textfile that `promtool check metrics` accepts, with the
# right values (the quarantined node carries reason="timeout"); a later
# verify into the same file keeps deploy's run series; the shipped alert
# rules pass `promtool check rules` and behave as documented under
# `promtool test rules`.
. "$(dirname "$0")/../lib/common.sh"
t_start
command -v promtool >/dev/null || t_skip "promtool not installed (Debian package prometheus; tests/lib/deps.sh)"
RULES=$T_ROOT/hooks/prometheus/certfleet.rules.yml

t_step "the alert rules: promtool check rules, promtool test rules"
assert_exit 0 promtool check rules "$RULES"
assert_file_match "$T_OUT" 'SUCCESS: 7 rules found' "7 rules"
for a in CertfleetNodeQuarantined CertfleetRenewalFailing \
    CertfleetCertificateExpiringSoon CertfleetNodeCertificateExpiringSoon \
    CertfleetNodeServesStaleCertificate CertfleetNodeEndpointMisconfigured \
    CertfleetNoRecentRun; do
	assert_file_match "$RULES" "alert: $a\$" "rule $a is there"
done
sed "s|@RULES@|$RULES|" >"$T_TMP/rules-test.yml" <<'YAML'
rule_files: [@RULES@]
evaluation_interval: 1m
tests:
  # 90-day certificate valid from t=0; web1 fine, web3 quarantined
  # (timeout), web7 pinned by hand; renewal starts failing at 2h.
  - interval: 1m
    input_series:
      - series: 'certfleet_certificate_not_before_seconds{certificate="web"}'
        values: '0x2000'
      - series: 'certfleet_certificate_not_after_seconds{certificate="web"}'
        values: '7776000x2000'
      - series: 'certfleet_node_serving_not_after_seconds{certificate="web",node="web1"}'
        values: '7776000x2000'
      - series: 'certfleet_node_quarantined{certificate="web",node="web1",reason=""}'
        values: '0x2000'
      - series: 'certfleet_node_quarantined{certificate="web",node="web3",reason="timeout"}'
        values: '1x2000'
      - series: 'certfleet_node_quarantined{certificate="web",node="web7",reason="manual"}'
        values: '1x2000'
      - series: 'certfleet_node_serving_current{certificate="web",node="web1"}'
        values: '1x2000'
      - series: 'certfleet_node_serving_current{certificate="web",node="web3"}'
        values: '0x2000'
      - series: 'certfleet_node_serving_current{certificate="web",node="web7"}'
        values: '0x2000'
      - series: 'certfleet_renewal_consecutive_failures{certificate="web"}'
        values: '0x119 2x1880'
      - series: 'certfleet_last_run_timestamp_seconds{certificate="web",command="renew"}'
        values: '0x2000'
      # web1: www.a.test on 443 fails from 1h (a run found it), fixed at
      # 3h; a.test fine; web7 (pinned) fails and does not alert
      - series: 'certfleet_node_endpoint_ok{certificate="web",node="web1",port="443",starttls="none",sni="a.test",reason=""}'
        values: '1x2000'
      - series: 'certfleet_node_endpoint_ok{certificate="web",node="web1",port="443",starttls="none",sni="www.a.test",reason=""}'
        values: '1x59 _x120 1x1800'
      - series: 'certfleet_node_endpoint_ok{certificate="web",node="web1",port="443",starttls="none",sni="www.a.test",reason="verify-name"}'
        values: '_x59 0x120'
      - series: 'certfleet_node_endpoint_ok{certificate="web",node="web7",port="25",starttls="smtp",sni="a.test",reason="verify-chain"}'
        values: '0x2000'
      - series: 'certfleet_last_run_timestamp_seconds{certificate="web",command="deploy"}'
        values: '3600x2000'
    alert_rule_test:
      - eval_time: 30m
        alertname: CertfleetNodeEndpointMisconfigured
        exp_alerts: []
      - eval_time: 2h
        alertname: CertfleetNodeEndpointMisconfigured
        exp_alerts:
          - exp_labels: {severity: critical, certificate: web, node: web1, port: "443", starttls: none, sni: www.a.test, reason: verify-name}
            exp_annotations:
              summary: "certfleet web: node web1 endpoint misconfigured: port 443 (starttls none) SNI www.a.test: verify-name"
              description: "Node web1 port 443 (STARTTLS none) under SNI name www.a.test failed certfleet's check for certificate web (verify-name): wrong certificate, incomplete or stale chain, or untrusted.  `certfleet -p PLAYBOOK verify` names what is wrong."
      - eval_time: 4h
        alertname: CertfleetNodeEndpointMisconfigured
        exp_alerts: []
      - eval_time: 30m
        alertname: CertfleetNodeQuarantined
        exp_alerts: []
      - eval_time: 2h
        alertname: CertfleetNodeQuarantined
        exp_alerts:
          - exp_labels: {severity: warning, certificate: web, node: web3, reason: timeout}
            exp_annotations:
              summary: "certfleet web: node web3 quarantined (timeout)"
              description: "Node web3 failed its last certfleet run for certificate web with reason \"timeout\" and keeps whatever certificate it had. certfleet retries it on every run.  See `certfleet -p PLAYBOOK status` for the detail; pin it with `certfleet quarantine add` if it is being decommissioned."
      - eval_time: 1h
        alertname: CertfleetRenewalFailing
        exp_alerts: []
      - eval_time: 3h
        alertname: CertfleetRenewalFailing
        exp_alerts:
          - exp_labels: {severity: warning, certificate: web}
            exp_annotations:
              summary: "certfleet web: renewal failed 2 time(s) in a row"
              description: "The ACME CA did not issue a new certificate for web on the last 2 attempt(s). The nodes keep the current certificate; `journalctl -u certfleet-renew@web` has the CA's answer."
      - eval_time: 13h
        alertname: CertfleetNodeServesStaleCertificate
        exp_alerts: []
      - eval_time: 15h
        alertname: CertfleetNodeServesStaleCertificate
        exp_alerts:
          - exp_labels: {severity: warning, certificate: web, node: web3}
            exp_annotations:
              summary: "certfleet web: node web3 does not serve the current certificate"
              description: "Node web3 has not been seen serving the current certificate of web for 14 hours (it is quarantined, unreachable, or was never deployed to)."
      - eval_time: 20h
        alertname: CertfleetNoRecentRun
        exp_alerts: []
      - eval_time: 28h
        alertname: CertfleetNoRecentRun
        exp_alerts:
          - exp_labels: {severity: warning, certificate: web}
            exp_annotations:
              summary: "certfleet web: no run for 1d 3h 0m 0s"
              description: "No certfleet run has written metrics for web for 1d 3h 0m 0s. Is certfleet-renew@web.timer enabled (`systemctl list-timers 'certfleet-renew@*'`)?"
      - eval_time: 28h
        alertname: CertfleetCertificateExpiringSoon
        exp_alerts: []
  # Expiry: a 90-day certificate at 80 days (10 left < 14) alerts; a
  # 6-day one at 4 days (2 left > 1) does not, at 5.5 days it does.  web2
  # serves an old certificate expiring at 10 days (alerts: 9 days left at
  # 24h), web9 too but it is pinned (no alert).
  - interval: 1h
    input_series:
      - series: 'certfleet_certificate_not_before_seconds{certificate="long"}'
        values: '0x200'
      - series: 'certfleet_certificate_not_after_seconds{certificate="long"}'
        values: '7776000x200'
      - series: 'certfleet_node_serving_not_after_seconds{certificate="long",node="web1"}'
        values: '7776000x200'
      - series: 'certfleet_node_serving_not_after_seconds{certificate="long",node="web2"}'
        values: '864000x200'
      - series: 'certfleet_node_serving_not_after_seconds{certificate="long",node="web9"}'
        values: '864000x200'
      - series: 'certfleet_node_quarantined{certificate="long",node="web9",reason="manual"}'
        values: '1x200'
      - series: 'certfleet_certificate_not_before_seconds{certificate="short"}'
        values: '0x200'
      - series: 'certfleet_certificate_not_after_seconds{certificate="short"}'
        values: '518400x200'
    alert_rule_test:
      - eval_time: 96h
        alertname: CertfleetCertificateExpiringSoon
        exp_alerts: []
      - eval_time: 132h
        alertname: CertfleetCertificateExpiringSoon
        exp_alerts:
          - exp_labels: {severity: critical, certificate: short}
            exp_annotations:
              summary: "certfleet short: certificate expires in 12h 0m 0s"
              description: "The current certificate of short expires in 12h 0m 0s and has not been renewed."
      - eval_time: 24h
        alertname: CertfleetNodeCertificateExpiringSoon
        exp_alerts:
          - exp_labels: {severity: critical, certificate: long, node: web2}
            exp_annotations:
              summary: "certfleet long: node web2 serves a certificate expiring in 9d 0h 0m 0s"
              description: "Node web2 was last seen serving a certificate that expires in 9d 0h 0m 0s."
YAML
assert_exit 0 promtool test rules "$T_TMP/rules-test.yml"
[ "$T_RC" -eq 0 ] || cat "$T_OUT"

t_step "deploy with --metrics, n3 blackholed: exit 2, a valid textfile"
N=3
tb_up $N
tb_make_cert new 90 || t_fatal "tb_make_cert"
NEW=$TB/certs/new
NOT_AFTER=$(date -d "$(openssl x509 -enddate -noout -in "$NEW/cert.pem" | cut -d= -f2)" +%s)
NOT_BEFORE=$(date -d "$(openssl x509 -startdate -noout -in "$NEW/cert.pem" | cut -d= -f2)" +%s)
PB=$TB/pb.json
tb_playbook "$PB"
mkdir -p "$T_TMP/textfile"
M=$T_TMP/textfile/certfleet-web.prom
tb_blackhole 3
T0=$(date +%s)
cf_run 2 --metrics "$M" -p "$PB" deploy --cert "$NEW/fullchain.pem" --key "$NEW/privkey.pem"
T1=$(date +%s)
DEPLOY_SECS=$T_SECS
[ -f "$M" ] || t_fatal "no metrics file at $M"
assert_eq "$(stat -c %a "$M")" 644 "metrics file is 0644 (node_exporter reads it)"
assert_exit 0 promtool check metrics <"$M"
assert_eq "$(ls -A "$T_TMP/textfile")" certfleet-web.prom "no temp file left next to it"
cp "$M" "$T_TMP/after-deploy.prom"
sed 's/^/    : /' "$M" | grep -v '^    : #'

t_step "values: the quarantined node and its reason, counts, the certificate"
m() { assert_file_match "$M" "^$(printf '%s' "$1" | sed 's/[{}.]/\\&/g')\$" "$1"; }
m 'certfleet_node_quarantined{certificate="web",node="n3",reason="timeout"} 1'
m 'certfleet_node_quarantined{certificate="web",node="n1",reason=""} 0'
m 'certfleet_node_quarantined{certificate="web",node="n2",reason=""} 0'
m 'certfleet_node_quarantine_attempts{certificate="web",node="n3"} 1'
m 'certfleet_node_serving_current{certificate="web",node="n1"} 1'
m 'certfleet_node_serving_current{certificate="web",node="n2"} 1'
m 'certfleet_node_serving_current{certificate="web",node="n3"} 0'
m "certfleet_node_serving_not_after_seconds{certificate=\"web\",node=\"n1\"} $NOT_AFTER"
m 'certfleet_nodes{certificate="web"} 3'
m 'certfleet_nodes_serving_current{certificate="web"} 2'
m 'certfleet_nodes_quarantined{certificate="web"} 1'
m "certfleet_certificate_not_after_seconds{certificate=\"web\"} $NOT_AFTER"
m "certfleet_certificate_not_before_seconds{certificate=\"web\"} $NOT_BEFORE"
m 'certfleet_run_exit_code{certificate="web",command="deploy"} 2'
m 'certfleet_renewal_consecutive_failures{certificate="web"} 0'
# per endpoint and SNI name: n1, n2 verified; n3 (not reached) absent
m 'certfleet_node_endpoint_ok{certificate="web",node="n1",port="443",starttls="none",sni="node.test",reason=""} 1'
m 'certfleet_node_endpoint_ok{certificate="web",node="n2",port="443",starttls="none",sni="node.test",reason=""} 1'
assert_eq "$(grep -c '^certfleet_node_endpoint_ok{.*node="n3"' "$M")" 0 "n3 not reached: no endpoint result"
CK=$(sed -n 's/^certfleet_node_endpoint_checked_timestamp_seconds{certificate="web",node="n1",port="443",starttls="none",sni="node.test"} //p' "$M")
assert_le "$T0" "$CK" "n1:443 checked in this run"
assert_le "$CK" "$T1" "n1:443 checked not after the run"
TS=$(sed -n 's/^certfleet_last_run_timestamp_seconds{certificate="web",command="deploy"} //p' "$M")
assert_le "$T0" "$TS" "last run timestamp is not before the run"
assert_le "$TS" "$T1" "last run timestamp is not after the run"
DUR=$(sed -n 's/^certfleet_run_duration_seconds{certificate="web",command="deploy"} //p' "$M")
assert_le "$DUR" "$DEPLOY_SECS" "run duration <= the wall time seen from outside"
assert_le 1 "$DUR" "run duration includes n3's connect timeout"
DS=$(sed -n 's/^certfleet_deploy_last_success_timestamp_seconds{certificate="web"} //p' "$M")
assert_le "$T0" "$DS" "deploy last success is this run"
if grep -Eq '^[^#].*\} [^ ]+ [^ ]+$' "$M"; then
	t_notok "no sample carries a timestamp" "$(grep -E '^[^#].*\} [^ ]+ [^ ]+$' "$M")"
else
	t_ok "no sample carries a timestamp"
fi
assert_eq "$(grep -c 'PRIVATE' "$M")" 0 "no key material"

t_step "verify into the same file: both commands' run series, state updated"
tb_unblackhole 3
cf_run 0 -p "$PB" deploy
cf_run 0 --metrics "$M" -p "$PB" verify
assert_exit 0 promtool check metrics <"$M"
m 'certfleet_run_exit_code{certificate="web",command="deploy"} 2'
m 'certfleet_run_exit_code{certificate="web",command="verify"} 0'
m 'certfleet_node_quarantined{certificate="web",node="n3",reason=""} 0'
m 'certfleet_nodes_serving_current{certificate="web"} 3'
assert_eq "$(grep -c '^certfleet_last_run_timestamp_seconds{' "$M")" 2 "two run timestamps (deploy, verify)"

t_step "an unwritable --metrics path does not change the exit code"
cf_run 0 --metrics "$T_TMP/no/such/dir/x.prom" -p "$PB" deploy
assert_file_match "$T_ERR" 'metrics: .*no/such/dir/x\.prom' "the failure is reported on stderr"

t_step "quarantine add into the same file: the certificate's series stay"
# An alert on the certificate's expiry must not lose its series because
# an operator pinned a node.
cf_run 0 --metrics "$M" -p "$PB" quarantine add n2 --reason "decommissioning"
assert_exit 0 promtool check metrics <"$M"
m 'certfleet_node_quarantined{certificate="web",node="n2",reason="manual"} 1'
m "certfleet_certificate_not_after_seconds{certificate=\"web\"} $NOT_AFTER"
m 'certfleet_node_serving_current{certificate="web",node="n1"} 1'
m 'certfleet_nodes_serving_current{certificate="web"} 3'
cf_run 0 --metrics "$M" -p "$PB" quarantine release n2
m "certfleet_certificate_not_after_seconds{certificate=\"web\"} $NOT_AFTER"
m 'certfleet_node_quarantined{certificate="web",node="n2",reason=""} 0'

t_step "status --metrics while a run holds the lock: status works, the file is the run's"
# A run in progress writes the file when it ends; a status that read the
# state before could otherwise put older numbers over the run's.
cp "$M" "$T_TMP/run.prom"
(exec 9<"$TB/state/lock" && flock 9 && exec sleep 30) &
HOLDER=$!
t_wait_locked "$TB/state/lock"
cf_run 0 --metrics "$M" -p "$PB" status
assert_le "$T_SECS" 2 "status does not wait for the lock"
assert_match "$(cat "$T_OUT")" "^certificate web: version " "status printed its report"
assert_file_match "$T_ERR" 'metrics: .* not written: .*lock' "stderr says the metrics file was left to the lock holder"
assert_eq "$(cmp -s "$M" "$T_TMP/run.prom" && echo same)" same "the metrics file is untouched"
cf_run 0 --metrics "$M" -p "$PB" quarantine add n2 --reason x --dry-run
assert_eq "$(cmp -s "$M" "$T_TMP/run.prom" && echo same)" same "quarantine --dry-run left it untouched too"
kill "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null
t_step "lock free: status --metrics writes it"
cf_run 0 --metrics "$M" -p "$PB" status
assert_exit 0 promtool check metrics <"$M"
m 'certfleet_run_exit_code{certificate="web",command="status"} 0'
m "certfleet_certificate_not_after_seconds{certificate=\"web\"} $NOT_AFTER"
t_done
