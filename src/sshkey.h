/* sshkey.h - the SSH identity parsed once per run, for the publickey
 * signature of every session.  Private to the ssh module (ssh.c).
 *
 * libssh2_userauth_publickey_frommemory parses the key text again on every
 * login (base64, PEM, OpenSSL's decoders: about 15% of the coordinator's
 * CPU per node).  Here the key is decoded once into an EVP_PKEY, and each
 * login only signs: libssh2_userauth_publickey with sshkey_sign as the
 * callback.  Keys this module does not take (RSA, whose SHA-1 "ssh-rsa"
 * signatures are libssh2 1.10's business) stay on the frommemory path. */
#ifndef CERTFLEET_SSHKEY_H
#define CERTFLEET_SSHKEY_H

#include <stddef.h>

typedef struct cf_sshkey cf_sshkey_t;

/* Decode an unencrypted ed25519 or ecdsa (nistp256/384/521) private key,
 * OpenSSH format or PEM/PKCS#8.  Returns NULL for anything else (the
 * caller falls back to libssh2's own parsing and its error messages). */
cf_sshkey_t *sshkey_load(const char *text, size_t len);
void sshkey_free(cf_sshkey_t *k);

/* The binary "openssh-key-v1" container inside an OpenSSH private key
 * file's base64 armour; *bin is secret: wipe (OPENSSL_cleanse) and free.
 * 0, or -1 if there is none or it is not base64. */
int sshkey_openssh_container(const char *text, size_t len, unsigned char **bin,
                             size_t *bin_len);

/* The public key in SSH wire format (string type, key data), as
 * publickey authentication sends it. */
const unsigned char *sshkey_blob(const cf_sshkey_t *k, size_t *len);

/* The signature libssh2's publickey callback returns: ed25519's 64 bytes,
 * or ecdsa's mpint r, mpint s; in *sig, malloc'd (libssh2's default
 * allocator frees it).  0 or -1. */
int sshkey_sign(const cf_sshkey_t *k, unsigned char **sig, size_t *sig_len,
                const unsigned char *data, size_t data_len);

#endif
