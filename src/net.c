/* net.c - TCP connect and wait with absolute deadlines.
 * Blocking connect() has no deadline of its own; a blackholed host would
 * hold a worker for the kernel's SYN retry time (~2 min), which is exactly
 * the failure certfleet exists to contain.  Name resolution gets the same
 * deadline (net_resolve). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
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
connect_one(const struct addrinfo *ai, int64_t deadline, int *fd_out, int *why)
{
	int fd, rc, soerr = 0, one = 1;
	socklen_t sl = sizeof(soerr);

	fd = socket(ai->ai_family,
	            ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
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

/* ---- name resolution with a deadline ----
 * getaddrinfo has no deadline: a resolver that never answers holds the
 * caller for timeout x attempts of resolv.conf (up to minutes), a worker
 * stalled on one node's name.  So a helper thread resolves and we wait
 * for it until the deadline; one we stop waiting for finishes on its own
 * and frees the shared request (the last of the two out frees it). */
struct resolve_req {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done, abandoned;
	int rc;
	struct addrinfo *res;
	char *host;
	char port[16];
};

static void
resolve_req_free(struct resolve_req *q)
{
	if (q->res != NULL)
		freeaddrinfo(q->res);
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->mu);
	free(q->host);
	free(q);
}

static const struct addrinfo resolve_hints = {
    .ai_family = AF_UNSPEC,
    .ai_socktype = SOCK_STREAM,
    .ai_flags = AI_ADDRCONFIG,
};

static void *
resolve_thread(void *arg)
{
	struct resolve_req *q = arg;
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(q->host, q->port, &resolve_hints, &res);
	bool abandoned;

	pthread_mutex_lock(&q->mu);
	q->rc = rc;
	q->res = res;
	q->done = true;
	abandoned = q->abandoned;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	if (abandoned)
		resolve_req_free(q);
	return NULL;
}

int
net_resolve(const char *host, unsigned port, int64_t deadline,
            struct addrinfo **out, cf_err_t *err)
{
	struct addrinfo hints = resolve_hints, *res = NULL;
	struct resolve_req *q = NULL;
	pthread_condattr_t ca;
	pthread_attr_t ta;
	pthread_t th;
	char portstr[16];
	int rc;
	bool done;
	int64_t t0 = cf_now_ms();

	snprintf(portstr, sizeof(portstr), "%u", port);
	/* an address literal needs no resolver, nor a thread */
	hints.ai_flags |= AI_NUMERICHOST;
	if (getaddrinfo(host, portstr, &hints, &res) == 0) {
		*out = res;
		return 0;
	}
	q = calloc(1, sizeof(*q));
	if (q == NULL || (q->host = strdup(host)) == NULL) {
		free(q);
		return cf_err_set(err, CF_ERR_NOMEM, "out of memory");
	}
	memcpy(q->port, portstr, sizeof(portstr));
	pthread_mutex_init(&q->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* as cf_now_ms */
	pthread_cond_init(&q->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&th, &ta, resolve_thread, q);
	pthread_attr_destroy(&ta);
	if (rc != 0) {
		resolve_req_free(q);
		return cf_err_set(err, CF_ERR_IO,
		                  "cannot resolve %s: no thread "
		                  "for it: %s",
		                  host, strerror(rc));
	}
	pthread_mutex_lock(&q->mu);
	while (!q->done && cf_ms_left(deadline) > 0) {
		struct timespec ts = {
		    .tv_sec = (time_t)(deadline / 1000),
		    .tv_nsec = (long)(deadline % 1000) * 1000000L,
		};

		pthread_cond_timedwait(&q->cv, &q->mu, &ts);
	}
	done = q->done;
	if (!done)
		q->abandoned = true; /* the thread frees q */
	pthread_mutex_unlock(&q->mu);
	if (!done)
		return cf_err_set(err, CF_ERR_TIMEOUT,
		                  "resolving %s timed out "
		                  "after %.1fs (DNS not answering)",
		                  host, (double)(cf_now_ms() - t0) / 1000.0);
	rc = q->rc;
	res = q->res;
	q->res = NULL;
	resolve_req_free(q);
	if (rc != 0)
		return cf_err_set(err, CF_ERR_UNREACHABLE,
		                  "cannot resolve %s: %s", host,
		                  gai_strerror(rc));
	*out = res;
	return 0;
}

int
net_connect(const char *host, unsigned port, int64_t deadline, int *fd,
            cf_err_t *err)
{
	struct addrinfo *res = NULL, *ai;
	int why = 0, s = -1;
	int64_t t0 = cf_now_ms();

	if (net_resolve(host, port, deadline, &res, err) < 0)
		return -1;
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
		                  "connect to %s:%u timed out after %.1fs",
		                  host, port,
		                  (double)(cf_now_ms() - t0) / 1000.0);
	if (why == ECONNREFUSED)
		return cf_err_set(err, CF_ERR_REFUSED,
		                  "connect to %s:%u refused", host, port);
	return cf_err_set(err, CF_ERR_UNREACHABLE, "connect to %s:%u: %s", host,
	                  port, strerror(why));
}
