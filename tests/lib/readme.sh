# readme.sh - README's "Preparing a node" block, run on a test-bed node
# (bash; needs common.sh).  Tests that prepare nodes as an operator would
# take the commands from README.md itself, so the README cannot drift from
# what works.  Needs $CHECK and $RELOAD (the bed's nginx check/reload).

# README's shell block, for this bed: its paths, the coordinator's address
# and key, the test nginx's check/reload.  Lines matching $2 (an ERE) are
# left out, as an operator who skipped that step would.
readme_prep() {
	local i=$1 skip=${2:-'^$'}
	: "${CHECK:?}" "${RELOAD:?}"
	awk '/^## Preparing a node/ { on = 1 } on && /^```sh/ { blk = 1; next }
	     blk && /^```/ { exit } blk' "$T_ROOT/README.md" |
	    sed -e 's|/etc/nginx/tls|/srv/tls|g' -e 's|/var/www/html|/srv/www|g' \
	        -e "s|192\.0\.2\.1|$(tb_bridge_ip)|" \
	        -e "s|ssh-ed25519 AAAA\.\.\. certfleet@coordinator|$(cat "$TB/id_ed25519.pub")|" \
	        -e "s|/usr/sbin/nginx -t, /usr/bin/systemctl reload nginx|/usr/sbin/$CHECK, /usr/sbin/$RELOAD|" \
	    >"$T_TMP/prep.n$i.sh"
	# a backslash-continued line is one command: join before filtering
	sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$T_TMP/prep.n$i.sh" |
	    grep -Ev -- "$skip" >"$T_TMP/prep.n$i.run.sh"
	grep -q useradd "$T_TMP/prep.n$i.run.sh" || t_fatal "README has no preparation block"
	tb_exec "$i" sh -e "$T_TMP/prep.n$i.run.sh" ||
	    t_fatal "n$i: README's preparation failed"
	# the bed's sshd runs without PAM, which refuses a login whose
	# password is locked ("!"), as useradd leaves it; with PAM (Debian's
	# default) key logins work as they are
	tb_exec "$i" usermod -p '*' certfleet || t_fatal "n$i: usermod"
}

