/* test_tlsprobe.c - probe a real TLS server running in a thread of this
 * test (OpenSSL, 127.0.0.1, ephemeral port): exact DER back, SNI sent (or
 * not, for IP literals), deadline honoured against a server that never
 * answers, refused and non-TLS peers classified. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certfleet/crypto.h"
#include "certfleet/tlsprobe.h"
#include "certfleet/util.h"

#define assert_ok(call)                                                        \
	do {                                                                   \
		if ((call) != 0)                                               \
			fail_msg("%s: %s", #call, err.msg);                    \
	} while (0)

enum srv_mode { SRV_TLS, SRV_GARBAGE };

struct cert {
	EVP_PKEY *key;
	X509 *x;
	unsigned char *der; /* the SHA-256 of the DER: what a probe reports */
	int der_len;
};

struct srv {
	int lfd;
	unsigned port;
	enum srv_mode mode;
	SSL_CTX *ctx, *ctx_other;
	pthread_t thr;
	pthread_mutex_t mu;
	char last_sni[256]; /* "" = none sent */
	unsigned handshakes;
	unsigned resumed;
};

static struct cert c_default, c_other;

static void
make_cert(struct cert *c, const char *cn)
{
	X509_NAME *nm;

	c->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(c->key);
	c->x = X509_new();
	X509_set_version(c->x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(c->x), 1);
	X509_gmtime_adj(X509_getm_notBefore(c->x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(c->x), 86400);
	X509_set_pubkey(c->x, c->key);
	nm = X509_get_subject_name(c->x);
	X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
	                           (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(c->x, nm);
	assert_true(X509_sign(c->x, c->key, EVP_sha256()) > 0);
	{
		unsigned char *d = NULL;
		int dl = i2d_X509(c->x, &d);

		assert_true(dl > 0);
		c->der = OPENSSL_malloc(32);
		crypto_sha256(d, (size_t)dl, c->der);
		c->der_len = 32;
		OPENSSL_free(d);
	}
}

static void
free_cert(struct cert *c)
{
	EVP_PKEY_free(c->key);
	X509_free(c->x);
	OPENSSL_free(c->der);
}

static SSL_CTX *
server_ctx(const struct cert *c)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_use_certificate(ctx, c->x), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, c->key), 1);
	return ctx;
}

/* Record the SNI and, for "other.test", switch to the other cert, as a
 * virtual-hosting nginx would. */
static int
sni_cb(SSL *ssl, int *alert, void *arg)
{
	struct srv *s = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	(void)alert;
	pthread_mutex_lock(&s->mu);
	snprintf(s->last_sni, sizeof(s->last_sni), "%s", name ? name : "");
	pthread_mutex_unlock(&s->mu);
	if (name != NULL && strcmp(name, "other.test") == 0)
		SSL_set_SSL_CTX(ssl, s->ctx_other);
	return SSL_TLSEXT_ERR_OK;
}

/* One probe on a context of its own, timeout_ms from when the context
 * is ready (0: no deadline): loading the system trust store takes a while
 * under ASan, and must not eat the probe's time. */
static int
probe_one_shot(const char *host, unsigned port, const char *server_name,
               int64_t timeout_ms, unsigned char **der, size_t *der_len,
               cf_err_t *err)
{
	struct tlsprobe_ctx *ctx = NULL;
	struct tlsprobe_result res;
	int rc = -1;

	*der = NULL;
	if (tlsprobe_ctx_new(NULL, &ctx, err) == 0 &&
	    tlsprobe_fetch_ctx(ctx, host, port, STARTTLS_NONE, server_name,
	                       timeout_ms > 0 ? cf_now_ms() + timeout_ms : 0,
	                       &res, err) == 0) {
		/* the leaf's SHA-256, as the cert fixtures hold it */
		*der = malloc(32);
		assert_non_null(*der);
		assert_int_equal(res.n_chain, 1);
		memcpy(*der, res.chain[0].sha256, 32);
		*der_len = 32;
		tlsprobe_result_free(&res);
		rc = 0;
	}
	tlsprobe_ctx_free(ctx);
	return rc;
}

static int
listen_local(unsigned *port)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void *
srv_main(void *arg)
{
	struct srv *s = arg;
	SSL *ssl;
	int fd;

	for (;;) {
		fd = accept(s->lfd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break; /* listening socket shut down: stop */
		}
		if (s->mode == SRV_GARBAGE) {
			static const char banner[] =
			    "SSH-2.0-OpenSSH_9.2p1\r\n";
			(void)!write(fd, banner, sizeof(banner) - 1);
			close(fd);
			continue;
		}
		ssl = SSL_new(s->ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) == 1) {
			pthread_mutex_lock(&s->mu);
			s->handshakes++;
			s->resumed += SSL_session_reused(ssl) ? 1 : 0;
			pthread_mutex_unlock(&s->mu);
			(void)SSL_shutdown(ssl);
		}
		SSL_free(ssl);
		ERR_clear_error();
		close(fd);
	}
	return NULL;
}

static void
srv_start(struct srv *s, enum srv_mode mode)
{
	memset(s, 0, sizeof(*s));
	s->mode = mode;
	pthread_mutex_init(&s->mu, NULL);
	s->ctx = server_ctx(&c_default);
	s->ctx_other = server_ctx(&c_other);
	SSL_CTX_set_tlsext_servername_callback(s->ctx, sni_cb);
	SSL_CTX_set_tlsext_servername_arg(s->ctx, s);
	s->lfd = listen_local(&s->port);
	assert_int_equal(pthread_create(&s->thr, NULL, srv_main, s), 0);
}

static void
srv_stop(struct srv *s)
{
	/* Wakes the blocked accept() on Linux. */
	shutdown(s->lfd, SHUT_RDWR);
	pthread_join(s->thr, NULL);
	close(s->lfd);
	SSL_CTX_free(s->ctx);
	SSL_CTX_free(s->ctx_other);
	pthread_mutex_destroy(&s->mu);
}

static int
group_setup(void **state)
{
	(void)state;
	make_cert(&c_default, "default.test");
	make_cert(&c_other, "other.test");
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	free_cert(&c_default);
	free_cert(&c_other);
	return 0;
}

/* ------------------------------------------------------------------ */

static void
test_fetch_exact_der_and_sni(void **state)
{
	struct srv s;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_err_t err = {0};

	(void)state;
	srv_start(&s, SRV_TLS);

	assert_ok(probe_one_shot("127.0.0.1", s.port, "www.example.test", 5000,
	                         &der, &len, &err));
	assert_int_equal(len, (size_t)c_default.der_len);
	assert_memory_equal(der, c_default.der, len);
	assert_string_equal(s.last_sni, "www.example.test");
	free(der);

	/* SNI selects the certificate, so it must really be sent. */
	assert_ok(probe_one_shot("127.0.0.1", s.port, "other.test", 5000, &der,
	                         &len, &err));
	assert_int_equal(len, (size_t)c_other.der_len);
	assert_memory_equal(der, c_other.der, len);
	free(der);

	/* IP literals are not sent as SNI (RFC 6066 3). */
	assert_ok(probe_one_shot("localhost", s.port, "127.0.0.1", 5000, &der,
	                         &len, &err));
	assert_string_equal(s.last_sni, "");
	assert_memory_equal(der, c_default.der, len);
	free(der);
	assert_ok(
	    probe_one_shot("127.0.0.1", s.port, "::1", 5000, &der, &len, &err));
	assert_string_equal(s.last_sni, "");
	free(der);
	assert_ok(
	    probe_one_shot("127.0.0.1", s.port, NULL, 0, &der, &len, &err));
	assert_string_equal(s.last_sni, "");
	free(der);

	srv_stop(&s); /* joins the server: its count is final */
	assert_int_equal(s.handshakes, 5);
}

static void
test_timeout_silent_server(void **state)
{
	unsigned port;
	int lfd =
	    listen_local(&port); /* the kernel completes TCP; nobody talks */
	struct tlsprobe_ctx *ctx = NULL;
	struct tlsprobe_result res;
	cf_err_t err = {0};
	int64_t t0, took;
	char want[128];

	(void)state;
	/* the context first: loading the system trust store takes a while
	 * under ASan, and the deadline is the probe's, not the setup's */
	assert_int_equal(tlsprobe_ctx_new(NULL, &ctx, &err), 0);
	t0 = cf_now_ms();
	assert_int_equal(tlsprobe_fetch_ctx(ctx, "127.0.0.1", port,
	                                    STARTTLS_NONE, "www.example.test",
	                                    t0 + 300, &res, &err),
	                 -1);
	took = cf_now_ms() - t0;
	assert_int_equal(err.code, CF_ERR_TIMEOUT);
	/* the deadline holds: never before it, and not long after (the
	 * bound is loose because a loaded 2-core test machine can stall
	 * any process for a while; the probe itself never waits past it) */
	assert_true(took >= 300);
	assert_true(took < 300 + 2000);
	snprintf(want, sizeof(want),
	         "TLS handshake with 127.0.0.1:%u timed out after", port);
	if (strstr(err.msg, want) == NULL)
		fail_msg("unexpected message: %s", err.msg);

	/* A deadline already past fails at once. */
	t0 = cf_now_ms();
	assert_int_equal(tlsprobe_fetch_ctx(ctx, "127.0.0.1", port,
	                                    STARTTLS_NONE, NULL, t0 - 1, &res,
	                                    &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_TIMEOUT);
	assert_true(cf_now_ms() - t0 < 2000);
	tlsprobe_ctx_free(ctx);
	close(lfd);
}

static void
test_refused(void **state)
{
	unsigned port;
	int lfd = listen_local(&port);
	unsigned char *der = NULL;
	size_t len = 0;
	cf_err_t err = {0};

	(void)state;
	close(lfd); /* nothing listens there any more */
	assert_int_equal(probe_one_shot("127.0.0.1", port, "x.test", 2000, &der,
	                                &len, &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_REFUSED);
	assert_null(der);
}

static void
test_not_tls(void **state)
{
	struct srv s;
	unsigned char *der = NULL;
	size_t len = 0;
	cf_err_t err = {0};

	(void)state;
	srv_start(&s, SRV_GARBAGE);
	assert_int_equal(probe_one_shot("127.0.0.1", s.port, "x.test", 2000,
	                                &der, &len, &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_TLS);
	assert_non_null(strstr(err.msg, "TLS handshake with 127.0.0.1:"));
	assert_non_null(strstr(err.msg, "failed: "));
	assert_null(der);
	srv_stop(&s);
}

struct worker {
	struct tlsprobe_ctx *ctx;
	unsigned port;
	int ok;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct tlsprobe_result res;
	const struct cert *c;
	int64_t want = 0;
	cf_err_t err;
	int i;

	for (i = 0; i < 20; i++) {
		c = i % 2 ? &c_other : &c_default;
		if (tlsprobe_fetch_ctx(w->ctx, "127.0.0.1", w->port,
		                       STARTTLS_NONE,
		                       i % 2 ? "other.test" : "default.test",
		                       cf_now_ms() + 5000, &res, &err) < 0)
			return NULL;
		/* notAfter comes from the handshake's certificate: the same
		 * as the certificate's own */
		if (crypto_asn1_time_epoch(X509_get0_notAfter(c->x), &want) <
		        0 ||
		    want != res.not_after || res.not_after <= 0 ||
		    res.n_chain != 1 ||
		    memcmp(res.chain[0].sha256, c->der, 32) != 0) {
			tlsprobe_result_free(&res);
			return NULL;
		}
		tlsprobe_result_free(&res);
	}
	w->ok = 1;
	return NULL;
}

/* The reasons verify gives for a served chain, from the identities alone. */
static void
test_chain_diff(void **state)
{
	struct tlsprobe_cert leaf = {{1}, "leaf"}, a = {{2}, "Int A"},
	                     b = {{3}, "Int B"}, x = {{4}, "Old X"};
	struct tlsprobe_cert want[] = {a, b};
	char why[256];

	(void)state;
	{
		struct tlsprobe_cert s[] = {leaf, a, b};
		assert_int_equal(tlsprobe_chain_diff(s, 3, want, 2, why,
		                                     sizeof(why)),
		                 0);
	}
	{
		struct tlsprobe_cert s[] = {leaf};
		assert_int_equal(tlsprobe_chain_diff(s, 1, want, 2, why,
		                                     sizeof(why)),
		                 -1);
		assert_string_equal(why, "sends the leaf without intermediate "
		                         "'Int A'");
	}
	{
		struct tlsprobe_cert s[] = {leaf, a};
		assert_int_equal(tlsprobe_chain_diff(s, 2, want, 2, why,
		                                     sizeof(why)),
		                 -1);
		assert_string_equal(why, "does not send intermediate 'Int B'");
	}
	{
		struct tlsprobe_cert s[] = {leaf, a, b, x};
		assert_int_equal(tlsprobe_chain_diff(s, 4, want, 2, why,
		                                     sizeof(why)),
		                 -1);
		assert_string_equal(why,
		                    "sends a stale extra certificate 'Old X'");
	}
	{
		struct tlsprobe_cert s[] = {leaf, b, a};
		assert_int_equal(tlsprobe_chain_diff(s, 3, want, 2, why,
		                                     sizeof(why)),
		                 -1);
		assert_string_equal(why,
		                    "sends intermediates in the wrong order");
	}
	{
		struct tlsprobe_cert s[] = {leaf, a, a, b};
		assert_int_equal(tlsprobe_chain_diff(s, 4, want, 2, why,
		                                     sizeof(why)),
		                 -1);
		assert_string_equal(why,
		                    "sends an intermediate more than once");
	}
	{
		struct tlsprobe_cert s[] = {leaf};
		assert_int_equal(tlsprobe_chain_diff(s, 1, NULL, 0, why,
		                                     sizeof(why)),
		                 0);
	}
}

/* One shared context used by many threads at once, as rollout does. */
static void
test_shared_ctx_threads(void **state)
{
	struct tlsprobe_ctx *ctx = NULL;
	struct worker w[8];
	pthread_t t[8];
	struct srv s;
	cf_err_t err = {0};
	int i;

	(void)state;
	srv_start(&s, SRV_TLS);
	assert_ok(tlsprobe_ctx_new(NULL, &ctx, &err));
	for (i = 0; i < 8; i++) {
		w[i].ctx = ctx;
		w[i].port = s.port;
		w[i].ok = 0;
		assert_int_equal(pthread_create(&t[i], NULL, worker_main,
		                                &w[i]),
		                 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, 1);
	}
	tlsprobe_ctx_free(ctx);
	srv_stop(&s);
	/* Never resumed: every probe was a full handshake the server saw. */
	assert_int_equal(s.handshakes, 160);
	assert_int_equal(s.resumed, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fetch_exact_der_and_sni),
	    cmocka_unit_test(test_timeout_silent_server),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_not_tls),
	    cmocka_unit_test(test_shared_ctx_threads),
	    cmocka_unit_test(test_chain_diff),
	};

	/* As in main: a peer resetting mid-write must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
