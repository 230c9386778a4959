/* SPDX-License-Identifier: MIT */
/*
 * DHCP and DNS for a NAT network (issue 6): one dnsmasq per network, started and stopped by us
 * with its own files in the network's run directory (net/rundir.h):
 *   dnsmasq.conf     the configuration we write (dnsmasq_conf_write)
 *   dnsmasq.pid      written by dnsmasq once it runs; how stop finds it
 *   dnsmasq.leases   its leases; kept across stop/start so a VM keeps its address
 * The binary is /usr/sbin/dnsmasq (Debian's dnsmasq-base) or $VMCTL_DNSMASQ.
 *
 * A process is "our dnsmasq" only if the pid file names it and its command line carries our
 * --conf-file=<run_dir>/dnsmasq.conf: a pid reused by an unrelated process is never signalled.
 * All calls return 0 (or the boolean said) or -errno with one log line.
 */
#ifndef NET_DNSMASQ_H
#define NET_DNSMASQ_H

#include <stddef.h>
#include <stdint.h>

/* Addresses are IPv4 in host byte order, as in struct netdef. */
struct dnsmasq_params {
	const char *network;		/* for log lines and the file's header */
	const char *bridge;		/* the interface dnsmasq serves, and only it */
	uint32_t gateway;		/* the bridge's address: router and DNS server for VMs */
	unsigned int prefix;		/* of the network's subnet, 1..32 */
	uint32_t dhcp_start, dhcp_end;	/* inside the subnet, start <= end */
	unsigned int lease_secs;	/* 0: one hour */
	const char *resolv_file;	/* upstream DNS servers; NULL: the host's /etc/resolv.conf,
					 * "": none (DNS answers only local names) */
	const char *run_dir;		/* absolute; see net_run_dir() */
};

/*
 * The configuration text for @p into @buf (NUL-terminated). -EINVAL on a bad parameter
 * (including anything that could smuggle a line into the file), -ENOSPC if @len is too small.
 */
int dnsmasq_conf_write(const struct dnsmasq_params *p, char *buf, size_t len);

/*
 * Start the network's dnsmasq: mkdir -p the run directory, write the configuration atomically,
 * run dnsmasq (it daemonizes and writes its pid file) and check it came up. Already running
 * with our configuration: 0 and nothing changes. -ENOENT: no dnsmasq binary. -EIO: dnsmasq
 * refused to start; the line carries its own message. The bridge need not have its address
 * yet: dnsmasq (bind-dynamic) binds it when it appears.
 */
int dnsmasq_start(const struct dnsmasq_params *p);
/*
 * Stop the dnsmasq of @run_dir: SIGTERM, up to 5 s, then SIGKILL; then remove its pid and
 * configuration files. None running: 0.
 */
int dnsmasq_stop(const char *run_dir);
/* 1 if our dnsmasq of @run_dir runs, else 0. */
int dnsmasq_running(const char *run_dir);

#endif
