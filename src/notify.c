/* notify.c - placeholder until webhooks/command notifiers land. */
#include "certfleet/notify.h"

int
notify_send(const struct cf_playbook *pb, const struct cf_event *ev, size_t n)
{
	(void)pb;
	(void)ev;
	(void)n;
	return 0;
}
