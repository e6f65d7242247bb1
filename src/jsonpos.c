/* jsonpos.c - source positions for JSON that jansson has parsed.
 *
 * The tokenizer here knows just enough JSON to walk it: strings (escapes,
 * including \uXXXX surrogate pairs, so a key written as "\u0070ort" still
 * matches "port"), nesting, and scalars as runs of bytes up to a delimiter.
 * Every loop is bounded by the end of the text, so malformed input only
 * yields a less precise position, never an out-of-bounds read. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "jsonpos.h"

/* key_path_at keeps one frame per open container; callers reject deeper
 * documents before asking. */
#define MAX_FRAMES 64

struct scan {
	const char *p;
	const char *end;
	unsigned line;
};

static void
skip_ws(struct scan *s)
{
	for (; s->p < s->end; s->p++) {
		if (*s->p == '\n')
			s->line++;
		else if (*s->p != ' ' && *s->p != '\t' && *s->p != '\r')
			break;
	}
}

/* At an opening quote: move past the closing one. */
static void
skip_string(struct scan *s)
{
	s->p++;
	while (s->p < s->end) {
		char c = *s->p++;

		if (c == '"')
			return;
		if (c == '\n')
			s->line++;
		if (c == '\\' && s->p < s->end) {
			if (*s->p == '\n')
				s->line++;
			s->p++;
		}
	}
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Four hex digits after "\u" (s->p at the first digit); -1 if malformed. */
static long
read_hex4(struct scan *s)
{
	long v = 0;

	if (s->end - s->p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		int h = hexval(s->p[i]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	s->p += 4;
	return v;
}

static size_t
utf8_encode(unsigned long cp, unsigned char out[4])
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | (cp >> 6));
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | (cp >> 12));
		out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | (cp >> 18));
	out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Decode the next character of a string body into out (1-4 bytes).
 * Returns the byte count, or 0 once the closing quote has been consumed
 * (or the text ended). */
static size_t
next_char(struct scan *s, unsigned char out[4])
{
	char c;

	if (s->p >= s->end)
		return 0;
	c = *s->p++;
	if (c == '"')
		return 0;
	if (c == '\n')
		s->line++;
	if (c != '\\') {
		out[0] = (unsigned char)c;
		return 1;
	}
	if (s->p >= s->end)
		return 0;
	c = *s->p++;
	switch (c) {
	case 'b': out[0] = '\b'; return 1;
	case 'f': out[0] = '\f'; return 1;
	case 'n': out[0] = '\n'; return 1;
	case 'r': out[0] = '\r'; return 1;
	case 't': out[0] = '\t'; return 1;
	case 'u': {
		long cp = read_hex4(s);

		if (cp < 0) {
			out[0] = '?';
			return 1;
		}
		if (cp >= 0xd800 && cp <= 0xdbff && s->end - s->p >= 6 &&
		    s->p[0] == '\\' && s->p[1] == 'u') {
			struct scan save = *s;
			long lo;

			s->p += 2;
			lo = read_hex4(s);
			if (lo >= 0xdc00 && lo <= 0xdfff)
				return utf8_encode(0x10000 +
				                       (((unsigned long)cp -
				                         0xd800)
				                        << 10) +
				                       ((unsigned long)lo -
				                        0xdc00),
				                   out);
			*s = save;
		}
		if (cp >= 0xd800 && cp <= 0xdfff)
			cp =
			    0xfffd; /* lone surrogate: jansson rejects it anyway */
		return utf8_encode((unsigned long)cp, out);
	}
	default:
		/* \" \\ \/ and anything jansson would have refused */
		out[0] = (unsigned char)c;
		return 1;
	}
}

/* At an opening quote: consume the string, true if it decodes to key. */
static bool
string_equals(struct scan *s, const char *key)
{
	size_t klen = strlen(key), pos = 0, n;
	unsigned char u[4];
	bool same = true;

	s->p++;
	while ((n = next_char(s, u)) > 0) {
		if (same && (pos + n > klen || memcmp(key + pos, u, n) != 0))
			same = false;
		pos += n;
	}
	return same && pos == klen;
}

/* At an opening quote: consume the string, decoding into buf (always
 * NUL-terminated, cut short with "..." if it does not fit). */
static void
string_decode(struct scan *s, char *buf, size_t buflen)
{
	size_t pos = 0, n;
	unsigned char u[4];
	bool cut = false;

	s->p++;
	while ((n = next_char(s, u)) > 0) {
		if (!cut && pos + n + 4 <= buflen) {
			memcpy(buf + pos, u, n);
			pos += n;
		} else if (!cut) {
			cut = true;
		}
	}
	if (cut && buflen >= 4) {
		memcpy(buf + pos, "...", 3);
		pos += 3;
	}
	if (buflen > 0)
		buf[pos < buflen ? pos : buflen - 1] = '\0';
}

static bool
is_delim(char c)
{
	return c == ',' || c == ']' || c == '}' || c == ':' || c == ' ' ||
	       c == '\t' || c == '\r' || c == '\n' || c == '"' || c == '{' ||
	       c == '[';
}

/* At the first byte of a value: move past all of it. */
static void
skip_value(struct scan *s)
{
	size_t depth = 0;

	skip_ws(s);
	if (s->p >= s->end)
		return;
	if (*s->p == '"') {
		skip_string(s);
		return;
	}
	if (*s->p != '{' && *s->p != '[') {
		while (s->p < s->end && !is_delim(*s->p))
			s->p++;
		return;
	}
	while (s->p < s->end) {
		char c = *s->p;

		if (c == '"') {
			skip_string(s);
			continue;
		}
		s->p++;
		if (c == '\n')
			s->line++;
		else if (c == '{' || c == '[')
			depth++;
		else if ((c == '}' || c == ']') && --depth == 0)
			return;
	}
}

unsigned
jsonpos_line(const char *text, size_t len, const struct jsonpos_elem *path,
             size_t n, bool *found)
{
	struct scan s = {text, text + len, 1};

	if (found != NULL)
		*found = n == 0;
	if (n == 0)
		return 1;
	skip_ws(&s);
	for (size_t i = 0; i < n; i++) {
		bool last = i + 1 == n;
		/* Where the value we are about to descend into starts: the
		 * answer whenever the next step cannot be found in it. */
		unsigned here = s.line;

		if (path[i].key != NULL) {
			if (s.p >= s.end || *s.p != '{')
				return here;
			s.p++;
			for (;;) {
				unsigned key_line;
				bool match;

				skip_ws(&s);
				if (s.p >= s.end || *s.p != '"')
					return here;
				key_line = s.line;
				match = string_equals(&s, path[i].key);
				skip_ws(&s);
				if (s.p >= s.end || *s.p != ':')
					return here;
				s.p++;
				skip_ws(&s);
				if (match && last) {
					if (found != NULL)
						*found = true;
					return key_line;
				}
				if (match)
					break;
				skip_value(&s);
				skip_ws(&s);
				if (s.p >= s.end || *s.p != ',')
					return here;
				s.p++;
			}
		} else {
			if (s.p >= s.end || *s.p != '[')
				return here;
			s.p++;
			for (size_t idx = 0;; idx++) {
				skip_ws(&s);
				if (s.p >= s.end || *s.p == ']')
					return here;
				if (idx == path[i].index) {
					if (last) {
						if (found != NULL)
							*found = true;
						return s.line;
					}
					break;
				}
				skip_value(&s);
				skip_ws(&s);
				if (s.p >= s.end || *s.p != ',')
					return here;
				s.p++;
			}
		}
	}
	return s.line; /* not reached: the last step returns */
}

bool
jsonpos_too_deep(const char *text, size_t len, unsigned max_depth,
                 unsigned *line)
{
	struct scan s = {text, text + len, 1};
	unsigned depth = 0;

	while (s.p < s.end) {
		char c = *s.p;

		if (c == '"') {
			skip_string(&s);
			continue;
		}
		s.p++;
		if (c == '\n') {
			s.line++;
		} else if (c == '{' || c == '[') {
			if (++depth > max_depth) {
				if (line != NULL)
					*line = s.line;
				return true;
			}
		} else if ((c == '}' || c == ']') && depth > 0) {
			depth--;
		}
	}
	return false;
}

static void
append(char *buf, size_t buflen, size_t *pos, const char *str)
{
	size_t n = strlen(str);

	if (buflen == 0)
		return;
	if (*pos + n + 1 > buflen) {
		/* Cut and mark; later appends find the buffer full. */
		size_t room = buflen - 1 - *pos;

		memcpy(buf + *pos, str, room);
		*pos = buflen - 1;
		if (buflen >= 4)
			memcpy(buf + buflen - 4, "...", 3);
		buf[*pos] = '\0';
		return;
	}
	memcpy(buf + *pos, str, n);
	*pos += n;
	buf[*pos] = '\0';
}

static void
append_index(char *buf, size_t buflen, size_t *pos, size_t index)
{
	char tmp[32];

	snprintf(tmp, sizeof(tmp), "[%zu]", index);
	append(buf, buflen, pos, tmp);
}

void
jsonpos_format_path(const struct jsonpos_elem *path, size_t n, char *buf,
                    size_t buflen)
{
	size_t pos = 0;

	if (buflen > 0)
		buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (path[i].key == NULL) {
			append_index(buf, buflen, &pos, path[i].index);
			continue;
		}
		if (i > 0)
			append(buf, buflen, &pos, ".");
		append(buf, buflen, &pos, path[i].key);
	}
}

struct frame {
	bool object;
	bool want_key;   /* object: the next string is a key */
	size_t index;    /* array: element being read */
	const char *key; /* object: opening quote of the current key */
};

static void
format_frames(const char *text, size_t len, const struct frame *f, size_t n,
              char *buf, size_t buflen)
{
	size_t pos = 0;

	if (buflen > 0)
		buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char key[128];
		struct scan ks;

		if (!f[i].object) {
			append_index(buf, buflen, &pos, f[i].index);
			continue;
		}
		if (f[i].key == NULL)
			continue;
		ks.p = f[i].key;
		ks.end = text + len;
		ks.line = 0;
		string_decode(&ks, key, sizeof(key));
		if (pos > 0)
			append(buf, buflen, &pos, ".");
		append(buf, buflen, &pos, key);
	}
}

bool
jsonpos_key_path_at(const char *text, size_t len, size_t offset, char *buf,
                    size_t buflen)
{
	struct scan s = {text, text + len, 1};
	struct frame frames[MAX_FRAMES];
	size_t depth = 0;

	if (offset > len)
		return false;
	while (s.p < s.end && (size_t)(s.p - text) < offset) {
		struct frame *top = depth > 0 ? &frames[depth - 1] : NULL;
		char c;

		skip_ws(&s);
		if (s.p >= s.end)
			break;
		c = *s.p;
		if (c == '{' || c == '[') {
			if (depth == MAX_FRAMES)
				return false;
			frames[depth].object = c == '{';
			frames[depth].want_key = c == '{';
			frames[depth].index = 0;
			frames[depth].key = NULL;
			depth++;
			s.p++;
		} else if (c == '}' || c == ']') {
			if (depth > 0)
				depth--;
			s.p++;
		} else if (c == ',') {
			if (top != NULL && top->object)
				top->want_key = true;
			else if (top != NULL)
				top->index++;
			s.p++;
		} else if (c == ':') {
			s.p++;
		} else if (c == '"') {
			bool is_key =
			    top != NULL && top->object && top->want_key;
			const char *start = s.p;

			skip_string(&s);
			if (is_key) {
				top->key = start;
				top->want_key = false;
				if ((size_t)(s.p - text) == offset) {
					format_frames(text, len, frames, depth,
					              buf, buflen);
					return true;
				}
			}
		} else {
			skip_value(&s); /* a scalar: always advances */
		}
	}
	return false;
}

const char *
jsonpos_syntax_hint(const char *text, size_t len, size_t offset)
{
	size_t i;
	char c;

	if (offset == 0 || offset > len)
		return "";
	c = text[offset - 1];
	/* outside a string, '/' and '#' can only start a comment */
	if (c == '/' || c == '#')
		return " (JSON allows no comments)";
	if (c != '}' && c != ']')
		return "";
	for (i = offset - 1; i > 0; i--) {
		c = text[i - 1];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		return c == ',' ? " (JSON allows no trailing commas)" : "";
	}
	return "";
}
