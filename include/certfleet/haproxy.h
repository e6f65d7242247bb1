/* haproxy.h - HAProxy's runtime API (its "stats socket" CLI, HAProxy 2.2+)
 * on a node, reached through the node's SSH session with a direct-tcpip
 * channel (ssh.h), so the node needs no socat and the API listens only on
 * the node's loopback: `stats socket ipv4@127.0.0.1:PORT level admin`.
 *
 * A certificate is replaced in the running process, with no reload and
 * no dropped connection: `set ssl cert FILE <<` with the combined PEM as
 * payload opens a transaction, `commit ssl cert FILE` makes it live for
 * new handshakes, `abort ssl cert FILE` drops it after any failure, and
 * `show ssl cert FILE` confirms the serial HAProxy now uses.  Only an
 * admin-level socket accepts these.  Nothing is written to disk by
 * HAProxy: the caller keeps the file in step (a restart reads the file).
 *
 * One connection per command (HAProxy's non-interactive mode: it answers
 * one command and closes), so no prompt parsing. */
#ifndef CERTFLEET_HAPROXY_H
#define CERTFLEET_HAPROXY_H

#include <stdbool.h>
#include <stddef.h>

#include "certfleet/err.h"
#include "certfleet/ssh.h"

/* Replace the certificate HAProxy loaded from `path` (exactly as its
 * configuration names it) by `pem`: the leaf, its chain and its key (the
 * key travels only inside the SSH channel; pem is borrowed, not copied
 * except into one wiped buffer).  The API is at 127.0.0.1:port on the
 * node.  serial_hex (hex, any case, leading zeros ignored) is what
 * `show ssl cert` must report after the commit; NULL skips that check.
 * *committed is set true once `commit` was sent (HAProxy may then serve
 * the new certificate even if an error follows: the caller pushes the
 * previous one back).  All bounded by the session's deadline.
 * Errors: CF_ERR_RELOAD (the push takes the reload's place) quoting
 * HAProxy's answer, sanitized, or saying the node refused the channel
 * (nothing listening at the port, TCP forwarding off); CF_ERR_TIMEOUT,
 * CF_ERR_SSH (the session failed). */
int haproxy_cert_update(cf_ssh_t *s, unsigned port, const char *path,
                        const char *pem, size_t pem_len, const char *serial_hex,
                        bool *committed, cf_err_t *err);

/* Push the file at `path` on the node, as it is now on disk, to HAProxy
 * (after a rollback restored it), confirming its leaf's serial. */
int haproxy_cert_reload_file(cf_ssh_t *s, unsigned port, const char *path,
                             cf_err_t *err);

#endif
