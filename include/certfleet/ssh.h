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
 * Caller frees with ssh_ctx_free (wipes the key).
 *
 * libssh2_init/libssh2_exit are counted but not thread-safe: call
 * ssh_ctx_new and ssh_ctx_free from one thread while no session exists
 * (main, before the workers start and after they are joined).
 * Identities (libssh2 1.10 + OpenSSL 3, checked against OpenSSH 9.2):
 * unencrypted ed25519 and ecdsa keys in the OpenSSH key format (what
 * ssh-keygen writes), ecdsa in PEM/PKCS#8.  Passphrase-protected keys are
 * refused (CF_ERR_CONFIG; no agent support).  RSA keys load, but libssh2
 * 1.10 signs only with SHA-1 "ssh-rsa", which OpenSSH >= 8.8 refuses by
 * default, so authentication fails with a CF_ERR_AUTH message saying so.
 * known_hosts details are in src/knownhosts.h; note "@revoked" keys are
 * refused for every host and "@cert-authority" lines are ignored. */
int ssh_ctx_new(const char *identity_path, const char *known_hosts_path,
                cf_ssh_ctx_t **out, cf_err_t *err);
void ssh_ctx_free(cf_ssh_ctx_t *ctx);

/* `validate`'s local checks, the same ones ssh_ctx_new makes on the
 * identity (exists, regular, mode 0600 or stricter, a usable key format)
 * plus: known_hosts exists, is readable, a regular file and not writable
 * by group or others.  CF_ERR_CONFIG naming the file.  Needs no
 * libssh2_init. */
int ssh_check_files(const char *identity_path, const char *known_hosts_path,
                    cf_err_t *err);

typedef struct cf_ssh cf_ssh_t;

/* TCP connect, SSH handshake and host key check, all bounded by
 * connect_deadline; then user authentication bounded by op_deadline.
 * Host key algorithms are limited to the types known_hosts holds for this
 * host (as OpenSSH does), so a host with an ecdsa entry is not reported as
 * changed because it also has an ed25519 key.
 * Errors: CF_ERR_TIMEOUT, CF_ERR_REFUSED, CF_ERR_UNREACHABLE, CF_ERR_SSH,
 * CF_ERR_HOSTKEY_UNKNOWN, CF_ERR_HOSTKEY_CHANGED (message says "possible
 * interception" and gives the offered key's SHA256 fingerprint; also for a
 * key listed as @revoked), CF_ERR_AUTH, CF_ERR_CONFIG (host name too long,
 * or libssh2 cannot use the identity).
 * Nothing is sent to the host after a host key failure.  Host keys libssh2
 * 1.10 can verify: ssh-ed25519, ecdsa-sha2-nistp256/384/521, and RSA only
 * as SHA-1 ssh-rsa (which OpenSSH >= 8.8 does not offer: an RSA-only
 * known_hosts entry ends in CF_ERR_SSH saying so).
 * Timeouts name the step: "ssh handshake with HOST:PORT timed out after
 * 5.0s", "authentication as USER@HOST timed out after ...". */
int ssh_connect(const cf_ssh_ctx_t *ctx, const char *host, unsigned port,
                const char *user, int64_t connect_deadline, int64_t op_deadline,
                cf_ssh_t **out, cf_err_t *err);

/* Replace the deadline for all later calls on this session.  A call that
 * hits its deadline leaves the session unusable (libssh2 cannot resume an
 * abandoned call): later calls fail with CF_ERR_SSH; ssh_close it. */
void ssh_set_deadline(cf_ssh_t *s, int64_t deadline);

/* Create remote_path exclusively (O_CREAT|O_EXCL: an existing file or
 * symlink there is an error, never followed) with permission `mode` from the
 * first byte, write all of data, fsync (fsync@openssh.com), close.
 * Errors: CF_ERR_WRITE (message includes the SFTP status, e.g. "no space",
 * "permission denied"), CF_ERR_TIMEOUT, CF_ERR_SSH.
 * The exact mode is set with fsetstat after the data (the server's umask
 * can only have removed bits at create).  OpenSSH's sftp-server speaks
 * SFTP v3, where a full disk and a read-only file system are a bare
 * "failure": messages then say "write of PATH failed (disk full?)".  An
 * existing target is reported as "file exists", "a symlink is there (not
 * followed)" or "something other than a file is there".  After a failed
 * write the partial file is removed if the session is still usable; after
 * a timeout it is left (the session is dead): use temporary names.
 * A server without fsync@openssh.com gets no fsync rather than no upload.
 * The SFTP subsystem is opened on first use and kept for the session. */
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
 * exit.
 * Caveats of libssh2 1.10: it cannot tell "no exit-status" from 0, so -1
 * is never returned (OpenSSH always reports one).  stdin is written in full
 * before output is read: a command that exits without reading more stdin
 * than the server's channel window (2 MiB on OpenSSH) ends at the deadline
 * with CF_ERR_TIMEOUT; output up to 2 MiB before the command reads its
 * stdin is fine. */
int ssh_exec(cf_ssh_t *s, const char *command, const void *stdin_data,
             size_t stdin_len, int *exit_status, char **output, cf_err_t *err);

/* Read a whole remote file (SFTP) of at most max bytes into *out
 * (NUL-terminated, *out_len bytes; caller frees with cf_free_secret: it
 * may be a key, and is held in one buffer of the file's size, never
 * grown).  Errors: CF_ERR_WRITE (SFTP status: missing, permission, too
 * large), CF_ERR_TIMEOUT, CF_ERR_SSH. */
int ssh_download(cf_ssh_t *s, const char *remote_path, size_t max, char **out,
                 size_t *out_len, cf_err_t *err);

/* A TCP connection made by the node's sshd on our behalf (RFC 4254 7.2,
 * "direct-tcpip") to host:port as the node sees it: a service that
 * listens only on the node's loopback (HAProxy's runtime API), later a
 * node behind a jump host.  Bytes travel inside the encrypted session;
 * nothing is needed on the node but sshd with TCP forwarding allowed
 * (AllowTcpForwarding, the default; an authorized_keys "restrict" line
 * needs "port-forwarding" and may narrow it with permitopen="HOST:PORT").
 * All calls are bounded by the session's deadline (ssh_set_deadline).
 * A refused open (nothing listening there, forwarding not allowed) is
 * CF_ERR_REFUSED and leaves the session usable; a timeout breaks it as any
 * other call does. */
typedef struct cf_ssh_tcpip cf_ssh_tcpip_t;
int ssh_tcpip_open(cf_ssh_t *s, const char *host, unsigned port,
                   cf_ssh_tcpip_t **out, cf_err_t *err);
/* All of data, or an error (CF_ERR_SSH also when the peer closed). */
int
ssh_tcpip_send(cf_ssh_tcpip_t *c, const void *data, size_t len, cf_err_t *err);
/* What the peer sends until it closes the connection, or, with until
 * non-NULL, until what arrived ends with `until` (a prompt).  *out is
 * NUL-terminated, capped at 64 KiB (the rest is read and dropped), caller
 * frees. */
int
ssh_tcpip_recv(cf_ssh_tcpip_t *c, const char *until, char **out, cf_err_t *err);
/* Close the channel (bounded by the session's deadline) and free; NULL ok.
 * Always before ssh_close of its session. */
void ssh_tcpip_close(cf_ssh_tcpip_t *c);

/* Disconnect politely (bounded by a short deadline, 1 s) and free; a
 * session that failed its host key check or timed out is just torn down.
 * Always closes the socket. NULL ok. */
void ssh_close(cf_ssh_t *s);

#endif
