/* metrics.c - placeholder until the Prometheus writer lands: no output. */
#include "certfleet/metrics.h"

int
metrics_write(const char *path, const struct cf_metrics_input *in,
              cf_err_t *err)
{
	(void)in;
	return cf_err_set(err, CF_ERR_INTERNAL,
	                  "%s: metrics output is not implemented yet", path);
}
