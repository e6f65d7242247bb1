#!/bin/sh
# job.sh TOOL - one run of the bench job with one tool, as measure.sh's
# command: put fullchain.pem and privkey.pem into /srv/tls on every node,
# `nginx -t`, reload, and check over TLS that every node serves the new
# certificate.  certfleet verifies by itself; for the others the check is
# tlscheck.sh (openssl s_client, all nodes at once), run on the nodes the
# tool reports as done, inside the measured time.
#
# Environment (from run.sh):
#   BW       work dir: hosts (one IP a line), hosts.ini, ansible.cfg, id_ed25519,
#            known_hosts, certfleet's pb.json and state/
#   CERT     dir with the run's fullchain.pem and privkey.pem
#   FP       its leaf's SHA-256 fingerprint (openssl x509 -fingerprint form)
#   SNI      server name for the TLS check
#   PAR      parallelism (parallel-ssh -p, ansible forks)
#   CT       connect timeout, seconds
#   CERTFLEET  the binary
# The addresses a tool reports done go to $BW/done.TOOL.
set -u
tool=$1
here=$(cd "$(dirname "$0")" && pwd)
done_list=$BW/done.$tool
: >"$done_list"
# What every OpenSSH-based tool gets: the bed's key, strict checking
# against the bed's known_hosts only, no prompts, the connect timeout.
ssh_o="-o IdentityFile=$BW/id_ed25519 -o UserKnownHostsFile=$BW/known_hosts
 -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes
 -o BatchMode=yes -o ConnectTimeout=$CT"
remote='nginx -t -q -c /srv/nginx.conf && nginx -s reload -c /srv/nginx.conf'

case $tool in
seq)
	# acme.sh's ssh deploy, and most hand-written loops: one node after
	# the other, scp the files, then ssh the check and reload.
	while read -r ip; do
		# shellcheck disable=SC2086
		scp -q $ssh_o "$CERT/fullchain.pem" "$CERT/privkey.pem" \
		    "root@$ip:/srv/tls/" </dev/null &&
		    ssh -n $ssh_o "root@$ip" "$remote" &&
		    echo "$ip" >>"$done_list"
	done <"$BW/hosts"
	;;
pssh)
	# Both files in one parallel-scp (one scp, one connection per node),
	# then parallel-ssh on the nodes that got them: 2 connections a node.
	o=$(printf '%s\n' $ssh_o | grep -v '^-o$' | sed 's/^/-O /' | tr '\n' ' ')
	# shellcheck disable=SC2086
	parallel-scp -h "$BW/hosts" -l root -p "$PAR" $o \
	    "$CERT/fullchain.pem" "$CERT/privkey.pem" /srv/tls/ >"$BW/pscp.out" 2>&1
	awk '/\[SUCCESS\]/ { print $4 }' "$BW/pscp.out" >"$BW/pscp.ok"
	if [ -s "$BW/pscp.ok" ]; then
		# shellcheck disable=SC2086
		parallel-ssh -h "$BW/pscp.ok" -l root -p "$PAR" $o "$remote" \
		    >"$BW/pssh.out" 2>&1
		awk '/\[SUCCESS\]/ { print $4 }' "$BW/pssh.out" >"$done_list"
	fi
	;;
ansible)
	# Its own ssh ControlMaster per host (Ansible's default ssh_args), in
	# a directory of this run's own so no run inherits a warm connection.
	ANSIBLE_CONFIG=$BW/ansible.cfg ANSIBLE_SSH_CONTROL_PATH_DIR=$BW/cp.$$ \
	    ansible-playbook -f "$PAR" -e "cert_dir=$CERT" "$here/deploy.yml" \
	    >"$BW/ansible.out" 2>&1
	# PLAY RECAP lines: "10.213.0.11   : ok=4 changed=3 unreachable=0 failed=0 ..."
	awk '$2 == ":" && / unreachable=0 / && / failed=0 / { print $1 }' \
	    "$BW/ansible.out" >"$done_list"
	rm -rf "$BW/cp.$$"
	;;
certfleet)
	"$CERTFLEET" --state-dir "$BW/state" -q -p "$BW/pb.json" deploy \
	    --cert "$CERT/fullchain.pem" --key "$CERT/privkey.pem" \
	    >"$BW/certfleet.out" 2>"$BW/certfleet.err"
	exit $?
	;;
*)
	echo "job.sh: unknown tool $tool" >&2
	exit 64
	;;
esac
exec "$here/tlscheck.sh" "$FP" "$SNI" "$done_list"
