/* starttls.c - SMTP, IMAP and POP3 up to the point where TLS starts.
 *
 * Two rules shape the reader.  It never consumes a byte past the server's
 * final answer: the bytes after it belong to the TLS layer, and a reader
 * that buffered ahead would hide them from the handshake (or, the other
 * way round, let plaintext injected before the handshake be read as if it
 * came over TLS: CVE-2011-0411 was the server side of that mistake).  And
 * nothing a server sends can hold it past the caller's deadline or make
 * it keep an unbounded line. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "certfleet/net.h"
#include "certfleet/starttls.h"
#include "certfleet/util.h"

/* RFC 5321 4.5.3.1.5 (reply line, CRLF included) and RFC 2449 4 (POP3
 * responses).  IMAP sets no limit; servers announce their capabilities in
 * the greeting and in untagged lines, which 2048 covers many times. */
#define LINE_MAX_SMTP 512
#define LINE_MAX_IMAP 2048
#define LINE_MAX_POP3 512
#define LINE_BUF (LINE_MAX_IMAP + 1)
/* A multi-line SMTP reply or IMAP's untagged lines before the tagged one:
 * real servers send about a dozen; a server that streams lines forever
 * fails here, well before the deadline. */
#define MAX_LINES 64
/* How much of an offending line a message quotes. */
#define QUOTE_MAX 160

struct conv {
	int fd;
	starttls_proto_t proto;
	const char *name; /* "smtp", for messages */
	size_t line_max;
	int64_t deadline;
	int64_t t0;
	char line[LINE_BUF]; /* the last line read, CR LF stripped */
	size_t len;
};

int
starttls_proto_parse(const char *name, starttls_proto_t *out)
{
	if (name == NULL)
		return -1;
	if (strcmp(name, "smtp") == 0)
		*out = STARTTLS_SMTP;
	else if (strcmp(name, "imap") == 0)
		*out = STARTTLS_IMAP;
	else if (strcmp(name, "pop3") == 0)
		*out = STARTTLS_POP3;
	else
		return -1;
	return 0;
}

const char *
starttls_proto_name(starttls_proto_t proto)
{
	switch (proto) {
	case STARTTLS_SMTP: return "smtp";
	case STARTTLS_IMAP: return "imap";
	case STARTTLS_POP3: return "pop3";
	default: return "none";
	}
}

static int
timed_out(struct conv *c, const char *waiting, cf_err_t *err)
{
	return cf_err_set(err, CF_ERR_TIMEOUT,
	                  "%s STARTTLS: no answer within %.1fs waiting for "
	                  "%s%s%.*s",
	                  c->name, (double)(cf_now_ms() - c->t0) / 1000.0,
	                  waiting, c->len > 0 ? "; got so far: " : "",
	                  (int)(c->len < QUOTE_MAX ? c->len : QUOTE_MAX),
	                  c->line);
}

/* The server's line, quoted in an error: what it said is the best clue
 * (a 554 banner, a BYE, TLS bytes on a plaintext port).  cf_err_set makes
 * it one printable line. */
static int
bad_answer(struct conv *c, const char *expected, cf_err_t *err)
{
	return cf_err_set(err, CF_ERR_TLS,
	                  "%s STARTTLS: expected %s, server sent: "
	                  "\"%.*s\"%s",
	                  c->name, expected,
	                  (int)(c->len < QUOTE_MAX ? c->len : QUOTE_MAX),
	                  c->line, c->len > QUOTE_MAX ? "..." : "");
}

/* One line into c->line: peek at what is there, then consume exactly up
 * to and including the first LF (or all of it when it holds no LF: those
 * bytes are this line's either way), so nothing after the line is read. */
static int
read_line(struct conv *c, const char *waiting, cf_err_t *err)
{
	char peek[LINE_BUF];
	ssize_t n, got;
	size_t room, take, i;
	char *lf;
	int w;

	c->len = 0;
	for (;;) {
		room = c->line_max - c->len;
		if (room == 0)
			return cf_err_set(err, CF_ERR_TLS,
			                  "%s STARTTLS: the server's "
			                  "line is longer than %zu octets "
			                  "(while "
			                  "waiting for %s): \"%.*s...\"",
			                  c->name, c->line_max, waiting,
			                  QUOTE_MAX, c->line);
		w = net_wait(c->fd, POLLIN, c->deadline);
		if (w == 0)
			return timed_out(c, waiting, err);
		if (w < 0)
			return cf_err_set(err, CF_ERR_IO,
			                  "%s STARTTLS: poll: %s", c->name,
			                  strerror(errno));
		n = recv(c->fd, peek, room, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 &&
		    (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			continue;
		if (n < 0)
			return cf_err_set(err, CF_ERR_TLS,
			                  "%s STARTTLS: reading %s: "
			                  "%s",
			                  c->name, waiting, strerror(errno));
		if (n == 0) {
			c->line[c->len] = '\0';
			return cf_err_set(
			    err, CF_ERR_TLS,
			    "%s STARTTLS: the server "
			    "closed the connection while we waited "
			    "for %s%s%.*s",
			    c->name, waiting,
			    c->len > 0 ? "; it had sent: " : "",
			    (int)(c->len < QUOTE_MAX ? c->len : QUOTE_MAX),
			    c->line);
		}
		lf = memchr(peek, '\n', (size_t)n);
		take = lf != NULL ? (size_t)(lf - peek) + 1 : (size_t)n;
		got = recv(c->fd, c->line + c->len, take, MSG_DONTWAIT);
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (got <= 0 || (size_t)got != take)
			return cf_err_set(err, CF_ERR_IO,
			                  "%s STARTTLS: reading %s: "
			                  "%s",
			                  c->name, waiting,
			                  got < 0 ? strerror(errno)
			                          : "short read");
		/* A NUL would end the quoted line early in a message. */
		for (i = c->len; i < c->len + take; i++)
			if (c->line[i] == '\0')
				c->line[i] = '?';
		c->len += take;
		if (lf != NULL)
			break;
	}
	c->len--; /* the LF */
	if (c->len > 0 && c->line[c->len - 1] == '\r')
		c->len--;
	c->line[c->len] = '\0';
	return 0;
}

static int
send_line(struct conv *c, const char *cmd, cf_err_t *err)
{
	char buf[300];
	size_t len, off = 0;
	ssize_t n;
	int w;

	len = (size_t)snprintf(buf, sizeof(buf), "%s\r\n", cmd);
	if (len >= sizeof(buf))
		return cf_err_set(err, CF_ERR_INTERNAL,
		                  "%s STARTTLS: command too "
		                  "long",
		                  c->name);
	while (off < len) {
		w = net_wait(c->fd, POLLOUT, c->deadline);
		if (w == 0) {
			c->len = 0;
			return timed_out(c, "the server to take our command",
			                 err);
		}
		if (w < 0)
			return cf_err_set(err, CF_ERR_IO,
			                  "%s STARTTLS: poll: %s", c->name,
			                  strerror(errno));
		n = send(c->fd, buf + off, len - off,
		         MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 &&
		    (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			continue;
		if (n < 0)
			return cf_err_set(err, CF_ERR_TLS,
			                  "%s STARTTLS: sending "
			                  "\"%.*s\": %s",
			                  c->name, (int)(len - 2), buf,
			                  strerror(errno));
		off += (size_t)n;
	}
	return 0;
}

/* ---- SMTP (RFC 5321 4.2, RFC 3207) ---- */

/* One reply (all its lines) with code `want`; *has_starttls (if asked)
 * is set when a line of it names the STARTTLS extension (RFC 3207 4:
 * the EHLO keyword, case-insensitive, alone or before parameters). */
static int
smtp_reply(struct conv *c, const char *want, const char *waiting,
           bool *has_starttls, cf_err_t *err)
{
	char expected[64];
	unsigned lines;
	const char *kw;
	size_t kwlen;

	snprintf(expected, sizeof(expected), "a %s reply to %s", want, waiting);
	for (lines = 0; lines < MAX_LINES; lines++) {
		if (read_line(c, waiting, err) < 0)
			return -1;
		/* "250-more", "250 last", or a bare "250" as the last line */
		if (c->len < 3 || strncmp(c->line, want, 3) != 0 ||
		    (c->len > 3 && c->line[3] != '-' && c->line[3] != ' '))
			return bad_answer(c, expected, err);
		if (has_starttls != NULL && c->len > 4) {
			kw = c->line + 4;
			kwlen = strcspn(kw, " ");
			if (kwlen == 8 && strncasecmp(kw, "STARTTLS", 8) == 0)
				*has_starttls = true;
		}
		if (c->len == 3 || c->line[3] == ' ')
			return 0;
	}
	return cf_err_set(err, CF_ERR_TLS,
	                  "%s STARTTLS: the reply to %s goes on "
	                  "for more than %d lines",
	                  c->name, waiting, MAX_LINES);
}

static int
smtp_dialogue(struct conv *c, const char *ehlo_name, cf_err_t *err)
{
	char cmd[300];
	bool tls = false;

	if (smtp_reply(c, "220", "the greeting", NULL, err) < 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "EHLO %s", ehlo_name);
	if (send_line(c, cmd, err) < 0 ||
	    smtp_reply(c, "250", "EHLO", &tls, err) < 0)
		return -1;
	if (!tls)
		return cf_err_set(err, CF_ERR_TLS,
		                  "smtp STARTTLS: the server does "
		                  "not offer STARTTLS (not in its EHLO reply)");
	if (send_line(c, "STARTTLS", err) < 0 ||
	    smtp_reply(c, "220", "STARTTLS", NULL, err) < 0)
		return -1;
	return 0;
}

/* ---- IMAP (RFC 9051 7.1, 6.2.1) ---- */

static int
imap_dialogue(struct conv *c, cf_err_t *err)
{
	unsigned lines;

	if (read_line(c, "the greeting", err) < 0)
		return -1;
	/* PREAUTH forbids STARTTLS (RFC 9051 6.2.1); BYE is a refusal. */
	if (c->len < 4 || strncasecmp(c->line, "* OK", 4) != 0 ||
	    (c->len > 4 && c->line[4] != ' ' && c->line[4] != '['))
		return bad_answer(c, "an \"* OK\" greeting", err);
	if (send_line(c, "a001 STARTTLS", err) < 0)
		return -1;
	for (lines = 0; lines < MAX_LINES; lines++) {
		if (read_line(c, "the answer to STARTTLS", err) < 0)
			return -1;
		if (c->len >= 2 && strncmp(c->line, "* ", 2) == 0)
			continue; /* untagged data may come first */
		if (c->len >= 7 && strncasecmp(c->line, "a001 OK", 7) == 0 &&
		    (c->len == 7 || c->line[7] == ' '))
			return 0;
		return bad_answer(c, "\"a001 OK\" to STARTTLS", err);
	}
	return cf_err_set(err, CF_ERR_TLS,
	                  "imap STARTTLS: more than %d untagged "
	                  "lines and no answer to STARTTLS",
	                  MAX_LINES);
}

/* ---- POP3 (RFC 1939 3, RFC 2595 4) ---- */

static bool
pop3_ok(const struct conv *c)
{
	return c->len >= 3 && strncmp(c->line, "+OK", 3) == 0 &&
	       (c->len == 3 || c->line[3] == ' ');
}

static int
pop3_dialogue(struct conv *c, cf_err_t *err)
{
	if (read_line(c, "the greeting", err) < 0)
		return -1;
	if (!pop3_ok(c))
		return bad_answer(c, "a \"+OK\" greeting", err);
	if (send_line(c, "STLS", err) < 0 ||
	    read_line(c, "the answer to STLS", err) < 0)
		return -1;
	if (!pop3_ok(c))
		return bad_answer(c, "\"+OK\" to STLS", err);
	return 0;
}

/* EHLO's argument goes on the wire as is: nothing in it may end the
 * command early or add one (CR, LF, space). */
static bool
ehlo_name_ok(const char *s)
{
	size_t i, n = strlen(s);
	bool literal = n >= 2 && s[0] == '[' && s[n - 1] == ']';

	if (n == 0 || n > 255)
		return false;
	for (i = literal ? 1 : 0; i < (literal ? n - 1 : n); i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' ||
		      ch == '_' || (literal && ch == ':')))
			return false;
	}
	return true;
}

int
starttls_begin(int fd, starttls_proto_t proto, const char *ehlo_name,
               int64_t deadline, cf_err_t *err)
{
	struct conv c = {.fd = fd, .proto = proto, .deadline = deadline};

	c.t0 = cf_now_ms();
	c.name = starttls_proto_name(proto);
	if (ehlo_name == NULL || ehlo_name[0] == '\0')
		ehlo_name = "certfleet.invalid";
	switch (proto) {
	case STARTTLS_SMTP:
		if (!ehlo_name_ok(ehlo_name))
			return cf_err_set(err, CF_ERR_CONFIG,
			                  "smtp STARTTLS: "
			                  "unusable EHLO name \"%.64s\"",
			                  ehlo_name);
		c.line_max = LINE_MAX_SMTP;
		return smtp_dialogue(&c, ehlo_name, err);
	case STARTTLS_IMAP:
		c.line_max = LINE_MAX_IMAP;
		return imap_dialogue(&c, err);
	case STARTTLS_POP3:
		c.line_max = LINE_MAX_POP3;
		return pop3_dialogue(&c, err);
	default:
		return cf_err_set(err, CF_ERR_CONFIG,
		                  "STARTTLS: unknown protocol "
		                  "%d",
		                  (int)proto);
	}
}
