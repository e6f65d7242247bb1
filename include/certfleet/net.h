/* net.h - TCP with deadlines, shared by ssh and tlsprobe. */
#ifndef CERTFLEET_NET_H
#define CERTFLEET_NET_H

#include <stdint.h>

struct addrinfo;

#include "certfleet/err.h"

/* Non-blocking connect to host:port, trying every address getaddrinfo
 * returns, bounded by the absolute deadline (cf_now_ms()).  On success *fd
 * is a connected socket left in NON-blocking mode with TCP_NODELAY.
 * Errors: CF_ERR_TIMEOUT, CF_ERR_REFUSED, CF_ERR_UNREACHABLE. */
int net_connect(const char *host, unsigned port, int64_t deadline, int *fd,
                cf_err_t *err);

/* getaddrinfo(host, port) (AF_UNSPEC, SOCK_STREAM) bounded by the
 * absolute deadline: a resolver that does not answer in time gives
 * CF_ERR_TIMEOUT (the lookup finishes in the background and is freed
 * there); a name that does not resolve CF_ERR_UNREACHABLE.  Address
 * literals are converted without a resolver.  *out: freeaddrinfo. */
int net_resolve(const char *host, unsigned port, int64_t deadline,
                struct addrinfo **out, cf_err_t *err);

/* poll() fd for `events` until deadline.  Returns 1 ready, 0 timed out,
 * -1 error (errno set).  Restarts on EINTR. */
int net_wait(int fd, short events, int64_t deadline);

#endif
