/* jsonpos.h - find where things are in JSON text, for playbook.c's
 * messages (private to the playbook module).
 *
 * jansson keeps no source positions for values, yet an operator fixing a
 * playbook needs "web.json:14:", not just "nodes[2].host".  These functions
 * re-scan the raw text with a minimal tokenizer (strings with escapes,
 * nesting, scalars) and never allocate.  They are meant for text that
 * jansson has already parsed (or failed to parse); on malformed input they
 * stay in bounds and return the best position they reached. */
#ifndef CERTFLEET_JSONPOS_H
#define CERTFLEET_JSONPOS_H

#include <stdbool.h>
#include <stddef.h>

/* One step of a key path: an object member (key != NULL) or an array
 * element (key == NULL, index). */
struct jsonpos_elem {
	const char *key;
	size_t index;
};

/* Line (1-based) of the element at path: for an object member the line of
 * its key, for an array element the line where its value starts; n == 0 is
 * the document itself (line 1).  When the path does not exist, *found is
 * false and the result is the line of the deepest container that does
 * (the opening brace of the object a missing key belongs in), or of the
 * value that was not the container the path expected. */
unsigned jsonpos_line(const char *text, size_t len,
                      const struct jsonpos_elem *path, size_t n, bool *found);

/* True if objects/arrays nest deeper than max_depth (the top-level value
 * is depth 1); *line is where the first too-deep container opens.  Works
 * on any bytes, valid JSON or not. */
bool jsonpos_too_deep(const char *text, size_t len, unsigned max_depth,
                      unsigned *line);

/* The key path ("ssh.port", "nodes[2].host") of the object key whose
 * closing quote ends just before byte `offset` — where jansson reports a
 * duplicate key.  Written to buf; false if no key ends there. */
bool jsonpos_key_path_at(const char *text, size_t len, size_t offset, char *buf,
                         size_t buflen);

/* What people used to other config formats write and JSON lacks, judged
 * from the byte jansson stopped at (its error position counts the bytes
 * consumed, so the offending one is offset - 1): " (JSON allows no
 * comments)", " (JSON allows no trailing commas)", or "". */
const char *jsonpos_syntax_hint(const char *text, size_t len, size_t offset);

/* Render a path as "a.b[3].c" into buf (truncated with "..." if needed). */
void jsonpos_format_path(const struct jsonpos_elem *path, size_t n, char *buf,
                         size_t buflen);

#endif
