/* proc_alive.h - for unit tests that start processes and must see them
 * gone: is PID running and not a zombie?  A zombie still answers
 * kill(pid, 0), and a container's pid 1 may never reap the orphans it
 * inherits, so /proc/PID/stat's state is what counts. */
#ifndef CERTFLEET_TEST_PROC_ALIVE_H
#define CERTFLEET_TEST_PROC_ALIVE_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static inline bool
alive(long pid)
{
	char path[64], buf[256], *p;
	FILE *fp;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	fp = fopen(path, "r");
	if (fp == NULL)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

#endif
