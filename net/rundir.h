/* SPDX-License-Identifier: MIT */
/*
 * Where a started network keeps its run-time files (dnsmasq's configuration, pid and leases):
 * $VMCTL_RUN_DIR/net/<name>, default /run/vmctl/net/<name>. Under /run because none of it
 * should outlive a reboot, when no network is started any more.
 */
#ifndef NET_RUNDIR_H
#define NET_RUNDIR_H

#include <stddef.h>
#include <sys/types.h>

/* The run directory of network @network into @buf; -EINVAL bad name, -ENAMETOOLONG. */
int net_run_dir(const char *network, char *buf, size_t len);
/* mkdir -p @path with @mode for each directory it creates; 0 or -errno (logged). */
int net_mkdir_p(const char *path, mode_t mode);

#endif
