/* test_err.c - the error type and the one sanitizer rule (src/err.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "certfleet/err.h"

static void
test_sanitize_rule(void **state)
{
	char out[64];

	(void)state;
	/* tab, CR, LF: spaces; other C0 controls and DEL: '?' */
	cf_sanitize("a\tb\r\nc\033[2J\x7f", out, sizeof(out));
	assert_string_equal(out, "a b  c?[2J?");
	/* C1 control U+009B (CSI), invalid, overlong, surrogate: '?' a byte */
	cf_sanitize("x\xc2\x9by\xff\xc0\xaf\xed\xa0\x80z", out, sizeof(out));
	assert_string_equal(out, "x??y??????z");
	/* valid multi-byte characters stay */
	cf_sanitize("\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x92", out, sizeof(out));
	assert_string_equal(out, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x92");
	/* NULL reads as "" */
	assert_int_equal(cf_sanitize(NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	/* a cut sequence at the end is invalid */
	cf_sanitize("ab\xe2\x82", out, sizeof(out));
	assert_string_equal(out, "ab??");
}

static void
test_sanitize_fit(void **state)
{
	char small[5], buf[16];

	(void)state;
	/* no half character when it does not fit */
	assert_int_equal(cf_sanitize("abc\xc3\xa9", small, sizeof(small)), 3);
	assert_string_equal(small, "abc");
	/* in place */
	strcpy(buf, "n\x01\xc3\xa9\n");
	cf_sanitize(buf, buf, sizeof(buf));
	assert_string_equal(buf, "n?\xc3\xa9 ");
}

static void
test_err_messages_sanitized(void **state)
{
	cf_err_t err = {0};

	(void)state;
	cf_err_set(&err, CF_ERR_CHECK, "nginx: %s", "bad\n\033]0;x\007");
	assert_string_equal(err.msg, "nginx: bad ?]0;x?");
	cf_err_prefix(&err, "node %s: ", "w\x9b");
	assert_string_equal(err.msg, "node w?: nginx: bad ?]0;x?");
}

int
main(void)
{
	static const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sanitize_rule),
	    cmocka_unit_test(test_sanitize_fit),
	    cmocka_unit_test(test_err_messages_sanitized),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
