/* test_starttls.c - the STARTTLS dialogue's framing against a scripted
 * peer (a thread on the other end of a socketpair): multi-line replies,
 * lines split across reads, a missing capability, refusals and garbage
 * quoted (sanitised) in the error, over-long lines, servers too slow for
 * the deadline, and bytes after the final answer left unread for TLS.
 * The dialogue against real postfix and dovecot is t-starttls-real. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
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

#include "certfleet/starttls.h"
#include "certfleet/util.h"

/* A script is a NULL-terminated list of steps:
 *   "S<bytes>"  send the bytes (C escapes already resolved by the compiler)
 *   "B<bytes>"  send the bytes one at a time, 2 ms apart
 *   "R<line>"   read one line (up to LF), which must equal <line> + CRLF
 *   "W<ms>"     wait
 *   "H"         hold: wait until the client closes
 * When the script ends the peer closes its end. */
struct peer {
	int fd;
	const char *const *script;
	pthread_t thr;
	char mismatch[256]; /* "" = every R step matched */
};

static void
sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void
peer_send(int fd, const char *p, size_t n, int bytewise)
{
	size_t i;

	if (!bytewise) {
		(void)send(fd, p, n, MSG_NOSIGNAL);
		return;
	}
	for (i = 0; i < n; i++) {
		(void)send(fd, p + i, 1, MSG_NOSIGNAL);
		sleep_ms(2);
	}
}

static void *
peer_main(void *arg)
{
	struct peer *p = arg;
	const char *const *s;
	char line[512], c;
	size_t n;

	for (s = p->script; *s != NULL; s++) {
		const char *a = *s + 1;

		switch (**s) {
		case 'S':
		case 'B': peer_send(p->fd, a, strlen(a), **s == 'B'); break;
		case 'R':
			n = 0;
			while (n + 1 < sizeof(line) &&
			       recv(p->fd, &c, 1, 0) == 1) {
				line[n++] = c;
				if (c == '\n')
					break;
			}
			line[n] = '\0';
			if (n < 2 || strncmp(line, a, strlen(a)) != 0 ||
			    strcmp(line + strlen(a), "\r\n") != 0) {
				if (p->mismatch[0] == '\0')
					snprintf(p->mismatch,
					         sizeof(p->mismatch),
					         "expected \"%.100s\", got "
					         "\"%.100s\"",
					         a, line);
				goto out;
			}
			break;
		case 'W': sleep_ms(atol(a)); break;
		case 'H':
			while (recv(p->fd, &c, 1, 0) > 0)
				;
			break;
		}
	}
out:
	shutdown(p->fd, SHUT_WR);
	return NULL;
}

struct run {
	int rc;
	cf_err_t err;
	int64_t elapsed_ms;
	char after[64]; /* what the client end could still read afterwards */
	size_t after_len;
	char mismatch[256];
};

/* Run the dialogue against a script, with a deadline of deadline_ms. */
static void
run_script(starttls_proto_t proto, const char *ehlo, const char *const *script,
           int64_t deadline_ms, struct run *r)
{
	struct peer p = {.script = script};
	int sv[2];
	int64_t t0;
	ssize_t n;

	memset(r, 0, sizeof(*r));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
	                 0);
	p.fd = sv[1];
	assert_int_equal(pthread_create(&p.thr, NULL, peer_main, &p), 0);
	t0 = cf_now_ms();
	r->rc = starttls_begin(sv[0], proto, ehlo, t0 + deadline_ms, &r->err);
	r->elapsed_ms = cf_now_ms() - t0;
	if (r->rc == 0) {
		/* the peer sends its bytes then closes its write side: read
		 * whatever followed the final answer, until EOF */
		while (r->after_len < sizeof(r->after) - 1 &&
		       (n = recv(sv[0], r->after + r->after_len,
		                 sizeof(r->after) - 1 - r->after_len, 0)) > 0)
			r->after_len += (size_t)n;
	}
	shutdown(sv[0], SHUT_RDWR);
	pthread_join(p.thr, NULL);
	memcpy(r->mismatch, p.mismatch, sizeof(r->mismatch));
	close(sv[0]);
	close(sv[1]);
}

#define assert_msg_has(r, s)                                                   \
	do {                                                                   \
		if (strstr((r)->err.msg, (s)) == NULL)                         \
			fail_msg("message \"%s\" lacks \"%s\"", (r)->err.msg,  \
			         (s));                                         \
	} while (0)

static void
assert_ok_run(const struct run *r)
{
	if (r->rc != 0)
		fail_msg("starttls_begin failed: %s", r->err.msg);
	if (r->mismatch[0] != '\0')
		fail_msg("peer: %s", r->mismatch);
}

/* ---- SMTP ---- */

static void
test_smtp_multiline_and_tls_bytes_left(void **state)
{
	/* the 220 after STARTTLS and the first TLS record arrive together:
	 * the record must stay in the socket for the handshake */
	static const char *const script[] =
	    {"S220-mx.test ESMTP\r\n220-second line\r\n220 ready\r\n",
	     "REHLO client.test",
	     "S250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n",
	     "W20",
	     "S250-starttls\r\n250 8BITMIME\r\n",
	     "RSTARTTLS",
	     "S220 2.0.0 Ready to start TLS\r\n\x16\x03\x01\x02",
	     NULL};
	struct run r;

	(void)state;
	run_script(STARTTLS_SMTP, "client.test", script, 5000, &r);
	assert_ok_run(&r);
	assert_int_equal(r.after_len, 4);
	assert_memory_equal(r.after, "\x16\x03\x01\x02", 4);
}

static void
test_smtp_bytewise(void **state)
{
	/* every line split across many reads, bare LF endings and a bare
	 * "250" last line */
	static const char *const script[] = {"B220 hi\n",
	                                     "REHLO certfleet.invalid",
	                                     "B250-x\n250-STARTTLS\n250\n",
	                                     "RSTARTTLS",
	                                     "B220 go\r\n",
	                                     "SZ",
	                                     NULL};
	struct run r;

	(void)state;
	run_script(STARTTLS_SMTP, NULL, script, 5000, &r);
	assert_ok_run(&r);
	assert_int_equal(r.after_len, 1);
	assert_int_equal(r.after[0], 'Z');
}

static void
test_smtp_no_capability(void **state)
{
	static const char *const script[] =
	    {"S220 mx ESMTP\r\n", "REHLO a.test",
	     "S250-mx\r\n250-STARTTLSX\r\n250 SIZE\r\n", "H", NULL};
	struct run r;

	(void)state;
	run_script(STARTTLS_SMTP, "a.test", script, 5000, &r);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.err.code, CF_ERR_TLS);
	assert_string_equal(r.err.msg,
	                    "smtp STARTTLS: the server does not offer "
	                    "STARTTLS (not in its EHLO reply)");
}

static void
test_smtp_refused_quoted(void **state)
{
	static const char *const script[] = {"S554 5.3.2 no service here\r\n",
	                                     "H", NULL};
	struct run r;

	(void)state;
	run_script(STARTTLS_SMTP, "a.test", script, 5000, &r);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.err.code, CF_ERR_TLS);
	assert_string_equal(r.err.msg,
	                    "smtp STARTTLS: expected a 220 reply to the "
	                    "greeting, server sent: \"554 5.3.2 no "
	                    "service here\"");
}

static void
test_smtp_starttls_refused(void **state)
{
	static const char *const script[] =
	    {"S220 mx\r\n",
	     "REHLO a.test",
	     "S250 STARTTLS\r\n",
	     "RSTARTTLS",
	     "S454 4.7.0 TLS not available due to local problem\r\n",
	     "H",
	     NULL};
	struct run r;

	(void)state;
	run_script(STARTTLS_SMTP, "a.test", script, 5000, &r);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.err.code, CF_ERR_TLS);
	assert_msg_has(&r, "expected a 220 reply to STARTTLS, server sent: "
	                   "\"454 4.7.0 TLS not available");
}

static void
test_smtp_garbage_sanitised(void **state)
{
	/* an HTTP server on the port, then a terminal escape and a NUL */
	static const char *const script[] = {"SHTTP/1.1 400 Bad\x1b[31m\r\n",
	                                     "H", NULL};
	struct run r;

	(void)state;
	run_script(STARTTLS_SMTP, "a.test", script, 5000, &r);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.err.code, CF_ERR_TLS);
	assert_msg_has(&r, "server sent: \"HTTP/1.1 400 Bad?[31m\"");
	assert_null(strchr(r.err.msg, '\x1b'));
}

static void
test_smtp_silent_server(void **state)
{
	/* what an implicit-TLS port (465) looks like to a STARTTLS client:
	 * a TLS server says nothing first, so a timeout naming the greeting */
	static const char *const script[] = {"H", NULL};
	struct run r;

	(void)state;
	run_script(STARTTLS_SMTP, "a.test", script, 300, &r);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.err.code, CF_ERR_TIMEOUT);
	assert_msg_has(&r, "waiting for the greeting");
	assert_true(r.elapsed_ms >= 250 && r.elapsed_ms < 2000);
}

static void
test_smtp_line_too_long(void **state)
{
	static char big[700];
	static const char *script[] = {big, "H", NULL};
	struct run r;

	(void)state;
	big[0] = 'S';
	memset(big + 1, 'A', sizeof(big) - 2);
	big[sizeof(big) - 1] = '\0';
	run_script(STARTTLS_SMTP, "a.test", script, 5000, &r);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.err.code, CF_ERR_TLS);
	assert_msg_has(&r, "longer than 512 octets");
}

static void
test_smtp_slow_partial_line(void **state)
{
	static const char *const script[] = {"S220 mx.t", "H", NULL};
	struct run r;

	(void)state;
	run_script(STARTTLS_SMTP, "a.test", script, 300, &r);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.err.code, CF_ERR_TIMEOUT);
	assert_msg_has(&r, "got so far: 220 mx.t");
	assert_true(r.elapsed_ms < 2000);
}

static void
test_smtp_endless_reply(void **state)
{
	static char many[100 * 8 + 2];
	static const char *script[] = {many, "H", NULL};
	struct run r;
	size_t i;

	(void)state;
	many[0] = 'S';
	for (i = 0; i < 100; i++)
		memcpy(many + 1 + i * 8, "220-xx\r\n", 8);
	run_script(STARTTLS_SMTP, "a.test", script, 5000, &r);
	assert_int_equal(r.rc, -1);
	assert_msg_has(&r, "more than 64 lines");
}

static void
test_smtp_bad_ehlo_name(void **state)
{
	cf_err_t err = {0};

	(void)state;
	/* refused before a byte is read or sent: fd -1 is never touched */
	assert_int_equal(starttls_begin(-1, STARTTLS_SMTP,
	                                "a.test\r\nRCPT TO:<x>",
	                                cf_now_ms() + 1000, &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_CONFIG);
	assert_int_equal(starttls_begin(-1, STARTTLS_SMTP, "a b",
	                                cf_now_ms() + 1000, &err),
	                 -1);
	assert_int_equal(err.code, CF_ERR_CONFIG);
}

/* ---- IMAP ---- */

static void
test_imap_ok(void **state)
{
	static const char *const script[] =
	    {"S* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n",
	     "Ra001 STARTTLS",
	     "S* CAPABILITY IMAP4rev1 STARTTLS\r\na001 OK Begin TLS "
	     "negotiation now.\r\n"
	     "\x16\x03",
	     NULL};
	struct run r;

	(void)state;
	run_script(STARTTLS_IMAP, NULL, script, 5000, &r);
	assert_ok_run(&r);
	assert_int_equal(r.after_len, 2);
	assert_memory_equal(r.after, "\x16\x03", 2);
}

static void
test_imap_refusals(void **state)
{
	static const char *const bad[] = {"S* OK hi\r\n", "Ra001 STARTTLS",
	                                  "Sa001 BAD unknown command\r\n", "H",
	                                  NULL};
	static const char *const preauth[] = {"S* PREAUTH logged in\r\n", "H",
	                                      NULL};
	static const char *const bye[] = {"S* BYE too many connections\r\n",
	                                  NULL};
	struct run r;

	(void)state;
	run_script(STARTTLS_IMAP, NULL, bad, 5000, &r);
	assert_int_equal(r.rc, -1);
	assert_string_equal(r.err.msg,
	                    "imap STARTTLS: expected \"a001 OK\" to "
	                    "STARTTLS, server sent: \"a001 BAD unknown "
	                    "command\"");
	run_script(STARTTLS_IMAP, NULL, preauth, 5000, &r);
	assert_int_equal(r.rc, -1);
	assert_msg_has(&r, "server sent: \"* PREAUTH logged in\"");
	run_script(STARTTLS_IMAP, NULL, bye, 5000, &r);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.err.code, CF_ERR_TLS);
	assert_msg_has(&r, "\"* BYE too many connections\"");
}

/* ---- POP3 ---- */

static void
test_pop3(void **state)
{
	static const char *const ok[] = {"S+OK Dovecot ready.\r\n", "RSTLS",
	                                 "S+OK Begin TLS negotiation now.\r\n",
	                                 NULL};
	static const char *const err[] = {"S+OK hi\r\n", "RSTLS",
	                                  "S-ERR command not recognised\r\n",
	                                  "H", NULL};
	static const char *const closed[] = {"S+OK hi\r\n", "RSTLS", NULL};
	struct run r;

	(void)state;
	run_script(STARTTLS_POP3, NULL, ok, 5000, &r);
	assert_ok_run(&r);
	assert_int_equal(r.after_len, 0);
	run_script(STARTTLS_POP3, NULL, err, 5000, &r);
	assert_int_equal(r.rc, -1);
	assert_string_equal(r.err.msg,
	                    "pop3 STARTTLS: expected \"+OK\" to STLS, "
	                    "server sent: \"-ERR command not "
	                    "recognised\"");
	run_script(STARTTLS_POP3, NULL, closed, 5000, &r);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.err.code, CF_ERR_TLS);
	assert_string_equal(r.err.msg,
	                    "pop3 STARTTLS: the server closed the "
	                    "connection while we waited for the answer "
	                    "to STLS");
}

static void
test_proto_names(void **state)
{
	starttls_proto_t p = STARTTLS_NONE;

	(void)state;
	assert_int_equal(starttls_proto_parse("smtp", &p), 0);
	assert_int_equal(p, STARTTLS_SMTP);
	assert_int_equal(starttls_proto_parse("imap", &p), 0);
	assert_int_equal(p, STARTTLS_IMAP);
	assert_int_equal(starttls_proto_parse("pop3", &p), 0);
	assert_int_equal(p, STARTTLS_POP3);
	assert_int_equal(starttls_proto_parse("SMTP", &p), -1);
	assert_int_equal(starttls_proto_parse("xmpp", &p), -1);
	assert_int_equal(starttls_proto_parse(NULL, &p), -1);
	assert_string_equal(starttls_proto_name(STARTTLS_POP3), "pop3");
	assert_string_equal(starttls_proto_name(STARTTLS_NONE), "none");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_smtp_multiline_and_tls_bytes_left),
	    cmocka_unit_test(test_smtp_bytewise),
	    cmocka_unit_test(test_smtp_no_capability),
	    cmocka_unit_test(test_smtp_refused_quoted),
	    cmocka_unit_test(test_smtp_starttls_refused),
	    cmocka_unit_test(test_smtp_garbage_sanitised),
	    cmocka_unit_test(test_smtp_silent_server),
	    cmocka_unit_test(test_smtp_line_too_long),
	    cmocka_unit_test(test_smtp_slow_partial_line),
	    cmocka_unit_test(test_smtp_endless_reply),
	    cmocka_unit_test(test_smtp_bad_ehlo_name),
	    cmocka_unit_test(test_imap_ok),
	    cmocka_unit_test(test_imap_refusals),
	    cmocka_unit_test(test_pop3),
	    cmocka_unit_test(test_proto_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
