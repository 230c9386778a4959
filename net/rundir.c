/* SPDX-License-Identifier: MIT */
/* net/rundir.c: a network's run-time directory, $VMCTL_RUN_DIR/net/<name>, and mkdir -p. */
#define LOG_TAG "net-rundir"
#include "net/rundir.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vmm/lib/log.h"

int net_run_dir(const char *network, char *buf, size_t len)
{
	const char *base = getenv("VMCTL_RUN_DIR");
	int n;

	/* The name becomes a path component: refuse anything that could leave the directory. */
	if (!network || !*network || strchr(network, '/') || !strcmp(network, "..") ||
	    !strcmp(network, ".")) {
		log_err("network name '%s' cannot name a run directory", network ? network : "");
		return -EINVAL;
	}
	n = snprintf(buf, len, "%s/net/%s", base && *base ? base : "/run/vmctl", network);
	if (n < 0 || (size_t)n >= len) {
		log_err("network %s: run directory path too long", network);
		return -ENAMETOOLONG;
	}
	return 0;
}

int net_mkdir_p(const char *path, mode_t mode)
{
	char dir[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(dir)) {
		log_err("mkdir '%s': empty or too long a path", path);
		return -ENAMETOOLONG;
	}
	memcpy(dir, path, len + 1);
	/* Each prefix ending before a '/', then the whole path; existing ones are fine. */
	for (char *p = dir + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;

		*p = '\0';
		if (mkdir(dir, mode) && errno != EEXIST) {
			int ret = -errno;

			log_err("mkdir %s: %s", dir, strerror(errno));
			return ret;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	return 0;
}
