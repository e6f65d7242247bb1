/* fuzz_acme.c - libFuzzer target: the ACME protocol object parsers, which
 * read whatever a CA (or anything between us and it) sends.  The first
 * byte picks the parser, the rest is the body (not NUL-terminated). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/acme.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cf_err_t err;
	char *body, *line;
	size_t len;
	unsigned sel;

	if (size < 1)
		return 0;
	sel = data[0] % 5;
	len = size - 1;
	body = malloc(len ? len : 1);
	if (body == NULL)
		return 0;
	memcpy(body, data + 1, len);
	memset(&err, 0, sizeof(err));

	switch (sel) {
	case 0: {
		struct cf_acme_dir d;

		memset(&d, 0, sizeof(d));
		if (acme_dir_parse(body, len, &d, &err) == 0) {
			for (char **p = d.profiles; p != NULL && *p != NULL; p++)
				(void)strlen(*p);
			acme_dir_free(&d);
		}
		break;
	}
	case 1: {
		struct cf_acme_order o;

		memset(&o, 0, sizeof(o));
		if (acme_order_parse(body, len, &o, &err) == 0) {
			for (char **p = o.authorizations; p && *p; p++)
				(void)strlen(*p);
			acme_order_free(&o);
		}
		break;
	}
	case 2: {
		struct cf_acme_authz a;

		memset(&a, 0, sizeof(a));
		if (acme_authz_parse(body, len, &a, &err) == 0) {
			for (size_t i = 0; i < a.n_challs; i++)
				(void)strlen(a.challs[i].type);
			acme_authz_free(&a);
		}
		break;
	}
	case 3:
		line = acme_problem_line(body, len);
		if (line != NULL) {
			/* contract: control characters replaced by spaces */
			for (char *p = line; *p; p++)
				if ((unsigned char)*p < 0x20 || *p == 0x7f)
					abort();
			free(line);
		}
		break;
	case 4: {
		struct cf_ari a;

		memset(&a, 0, sizeof(a));
		if (acme_ari_parse(body, len, &a, &err) == 0) {
			int64_t t = acme_ari_pick(&a, 0.999999);

			/* contract: end is not before start; pick in [start,end) */
			if (a.end < a.start)
				abort();
			if (a.end > a.start && (t < a.start || t >= a.end))
				abort();
			acme_ari_free(&a);
		}
		break;
	}
	}
	free(body);
	return 0;
}
