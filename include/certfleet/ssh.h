/* ssh.h - one libssh2 session to one node: connect with deadlines, strict
 * host key checking against an OpenSSH known_hosts file, public key auth,
 * exclusive file upload (SFTP) and remote command execution.
 * Knows nothing about certificates: it moves bytes and runs commands.
 *
 * Every call is bounded: the session runs libssh2 in non-blocking mode and
 * waits with poll() until the session's current deadline, so a peer that
 * stops answering mid-transfer cannot hold a worker past it. */
#ifndef CERTFLEET_SSH_H
#define CERTFLEET_SSH_H

#include <stddef.h>
#include <stdint.h>

#include "certfleet/err.h"

/* Read-only material shared by every session of a run (thread-safe to
 * share after creation): the identity key bytes and known_hosts lines. */
typedef struct cf_ssh_ctx cf_ssh_ctx_t;

/* Loads identity (private key file; refused with CF_ERR_CONFIG if it is
 * readable or writable by group/others, as OpenSSH does) and known_hosts
 * (OpenSSH format, hashed |1| entries, [host]:port entries; missing file =
 * empty, so every host is unknown).  Calls libssh2_init once.
 * Caller frees with ssh_ctx_free (wipes the key). */
int ssh_ctx_new(const char *identity_path, const char *known_hosts_path,
                cf_ssh_ctx_t **out, cf_err_t *err);
void ssh_ctx_free(cf_ssh_ctx_t *ctx);

typedef struct cf_ssh cf_ssh_t;

/* TCP connect, SSH handshake and host key check, all bounded by
 * connect_deadline; then user authentication bounded by op_deadline.
 * Host key algorithms are limited to the types known_hosts holds for this
 * host (as OpenSSH does), so a host with an ecdsa entry is not reported as
 * changed because it also has an ed25519 key.
 * Errors: CF_ERR_TIMEOUT, CF_ERR_REFUSED, CF_ERR_UNREACHABLE, CF_ERR_SSH,
 * CF_ERR_HOSTKEY_UNKNOWN, CF_ERR_HOSTKEY_CHANGED (message says "possible
 * interception" and gives the offered key's SHA256 fingerprint), CF_ERR_AUTH.
 * Nothing is sent to the host after a host key failure. */
int ssh_connect(const cf_ssh_ctx_t *ctx, const char *host, unsigned port,
                const char *user, int64_t connect_deadline,
                int64_t op_deadline, cf_ssh_t **out, cf_err_t *err);

/* Replace the deadline for all later calls on this session. */
void ssh_set_deadline(cf_ssh_t *s, int64_t deadline);

/* Create remote_path exclusively (O_CREAT|O_EXCL: an existing file or
 * symlink there is an error, never followed) with permission `mode` from the
 * first byte, write all of data, fsync (fsync@openssh.com), close.
 * Errors: CF_ERR_WRITE (message includes the SFTP status, e.g. "no space",
 * "permission denied"), CF_ERR_TIMEOUT, CF_ERR_SSH. */
int ssh_upload(cf_ssh_t *s, const char *remote_path, const void *data,
               size_t len, unsigned mode, cf_err_t *err);

/* Remove a remote file (best effort cleanup); missing file is success. */
int ssh_remove(cf_ssh_t *s, const char *remote_path, cf_err_t *err);

/* Run `command` through the remote user's shell.  stdin_data (may be NULL)
 * is written to its stdin, then EOF.  stdout and stderr are captured
 * together into *output (NUL-terminated, capped at 64 KiB, caller frees;
 * output may be NULL to discard).  *exit_status is the command's exit code
 * (or 128+signal, or -1 if none was reported). Returns -1 only for
 * transport failures (CF_ERR_TIMEOUT, CF_ERR_SSH), never for a non-zero
 * exit. */
int ssh_exec(cf_ssh_t *s, const char *command, const void *stdin_data,
             size_t stdin_len, int *exit_status, char **output,
             cf_err_t *err);

/* Disconnect politely (bounded by a short deadline) and free. NULL ok. */
void ssh_close(cf_ssh_t *s);

/* Host key fingerprint "SHA256:base64" of the connected peer (borrowed). */
const char *ssh_hostkey_fingerprint(const cf_ssh_t *s);

#endif
