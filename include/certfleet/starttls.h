/* starttls.h - the plaintext dialogue before TLS on a mail port (SMTP
 * RFC 3207, IMAP RFC 9051 6.2.1 / RFC 2595, POP3 RFC 2595 4), spoken by
 * certfleet itself so that verify can look at the certificate a STARTTLS
 * port serves over its own bounded connection, with no external tool.
 *
 * The dialogue reads only up to the end of the server's final answer
 * (peek, then consume exactly one line), so the next byte on the socket is
 * the server's first TLS byte: the caller starts its TLS handshake on the
 * same fd right after starttls_begin returns. */
#ifndef CERTFLEET_STARTTLS_H
#define CERTFLEET_STARTTLS_H

#include <stdint.h>

#include "certfleet/err.h"

typedef enum {
	STARTTLS_NONE = 0, /* implicit TLS: nothing to say first */
	STARTTLS_SMTP,     /* 220 greeting, EHLO, 250-STARTTLS, STARTTLS, 220 */
	STARTTLS_IMAP,     /* * OK greeting, a001 STARTTLS, a001 OK */
	STARTTLS_POP3,     /* +OK greeting, STLS, +OK */
} starttls_proto_t;

/* "smtp", "imap", "pop3" (exact, lower case) -> *out; -1 for anything
 * else (no cf_err_t: the playbook parser names the key itself). */
int starttls_proto_parse(const char *name, starttls_proto_t *out);

/* The protocol's name as starttls_proto_parse takes it; "none" for
 * STARTTLS_NONE. */
const char *starttls_proto_name(starttls_proto_t proto);

/* Run proto's dialogue on the connected socket fd (blocking or not; every
 * wait is a poll bounded by the absolute deadline, cf_now_ms()) up to the
 * point where TLS starts.  ehlo_name: the name SMTP's EHLO gives for
 * certfleet (NULL or "" = "certfleet.invalid"; letters, digits, '.', '-',
 * '_' only, or an address literal "[...]" of the same plus ':').  Lines
 * are bounded (SMTP and POP3: 512 octets with CRLF, RFC 5321 4.5.3.1.5 and
 * RFC 2449 4; IMAP: 2048) and so is their number.
 * Errors: CF_ERR_TIMEOUT (deadline passed; says what was awaited),
 * CF_ERR_TLS (the server refused, closed, or said something that is not
 * the protocol; the message quotes the line it sent, sanitised by
 * cf_err_set), CF_ERR_CONFIG (bad ehlo_name or proto), CF_ERR_IO. */
int starttls_begin(int fd, starttls_proto_t proto, const char *ehlo_name,
                   int64_t deadline, cf_err_t *err);

#endif
