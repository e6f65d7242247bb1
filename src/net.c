/* net.c - TCP connect and wait with absolute deadlines.
 * Blocking connect() has no deadline of its own; a blackholed host would
 * hold a worker for the kernel's SYN retry time (~2 min), which is exactly
 * the failure certfleet exists to contain. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "certfleet/net.h"
#include "certfleet/util.h"

int
net_wait(int fd, short events, int64_t deadline)
{
	struct pollfd pfd;
	int64_t left;
	int rc;

	for (;;) {
		left = cf_ms_left(deadline);
		if (left <= 0)
			return 0;
		pfd.fd = fd;
		pfd.events = events;
		pfd.revents = 0;
		rc = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -1;
		if (rc > 0)
			return 1;
	}
}

/* One address: 0 connected, else errno-ish failure code in *why. */
static int
connect_one(const struct addrinfo *ai, int64_t deadline, int *fd_out,
            int *why)
{
	int fd, rc, soerr = 0, one = 1;
	socklen_t sl = sizeof(soerr);

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
	            ai->ai_protocol);
	if (fd < 0) {
		*why = errno;
		return -1;
	}
	rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
	if (rc < 0 && errno != EINPROGRESS) {
		*why = errno;
		close(fd);
		return -1;
	}
	if (rc < 0) {
		rc = net_wait(fd, POLLOUT, deadline);
		if (rc <= 0) {
			*why = rc == 0 ? ETIMEDOUT : errno;
			close(fd);
			return -1;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr != 0) {
			*why = soerr;
			close(fd);
			return -1;
		}
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*fd_out = fd;
	return 0;
}

int
net_connect(const char *host, unsigned port, int64_t deadline, int *fd,
            cf_err_t *err)
{
	struct addrinfo hints, *res = NULL, *ai;
	char portstr[16];
	int rc, why = 0, s = -1;
	int64_t t0 = cf_now_ms();

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	snprintf(portstr, sizeof(portstr), "%u", port);
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0)
		return cf_err_set(err, CF_ERR_UNREACHABLE, "cannot resolve %s: %s",
		                  host, gai_strerror(rc));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (connect_one(ai, deadline, &s, &why) == 0)
			break;
		if (cf_ms_left(deadline) <= 0)
			break;
	}
	freeaddrinfo(res);
	if (s >= 0) {
		*fd = s;
		return 0;
	}
	if (why == ETIMEDOUT || cf_ms_left(deadline) <= 0)
		return cf_err_set(err, CF_ERR_TIMEOUT,
		                  "connect to %s:%u timed out after %.1fs", host,
		                  port, (double)(cf_now_ms() - t0) / 1000.0);
	if (why == ECONNREFUSED)
		return cf_err_set(err, CF_ERR_REFUSED,
		                  "connect to %s:%u refused", host, port);
	return cf_err_set(err, CF_ERR_UNREACHABLE, "connect to %s:%u: %s", host,
	                  port, strerror(why));
}
