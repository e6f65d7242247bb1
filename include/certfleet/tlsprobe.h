/* tlsprobe.h - what a node actually serves: one fresh TLS handshake with
 * SNI, no chain validation (we compare the exact leaf), bounded by a
 * deadline.  The node's own address is dialled, never DNS for server_name. */
#ifndef CERTFLEET_TLSPROBE_H
#define CERTFLEET_TLSPROBE_H

#include <stddef.h>
#include <stdint.h>

#include "certfleet/err.h"

/* Handshake to host:port sending SNI server_name; on success *der (caller
 * frees) holds the served leaf certificate.  Errors: CF_ERR_TIMEOUT,
 * CF_ERR_REFUSED, CF_ERR_UNREACHABLE, CF_ERR_TLS (handshake failed or no
 * certificate).  deadline is absolute cf_now_ms(). */
int tlsprobe_fetch(const char *host, unsigned port, const char *server_name,
                   int64_t deadline, unsigned char **der, size_t *der_len,
                   cf_err_t *err);

#endif
