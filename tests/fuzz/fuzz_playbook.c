/* fuzz_playbook.c - libFuzzer target: playbook_load_buf on arbitrary bytes.
 * A playbook is operator input, but it is also the first thing a typo or a
 * hostile edit reaches; the parser must reject, never crash, leak or read
 * past the buffer (the input is not NUL-terminated on purpose). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "certfleet/playbook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cf_playbook *pb = NULL;
	cf_err_t err;
	/* an exact-size copy so ASan catches any read past the end */
	char *buf = malloc(size ? size : 1);

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	memset(&err, 0, sizeof(err));
	if (playbook_load_buf("fuzz.json", buf, size, &pb, &err) == 0) {
		/* touch what callers use */
		for (size_t i = 0; i < pb->n_nodes; i++)
			(void)playbook_node(pb, pb->nodes[i].name);
		playbook_free(pb);
	} else if (memchr(err.msg, '\0', sizeof(err.msg)) == NULL) {
		abort(); /* the message must be a terminated string */
	}
	free(buf);
	return 0;
}
