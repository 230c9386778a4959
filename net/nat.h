/* SPDX-License-Identifier: MIT */
/*
 * NAT for a network (issue 6): an nftables table "ip vmctl-<network>" that masquerades the
 * network's subnet behind the host, written over netlink with libnftnl/libmnl (no nft or
 * iptables process). The table holds
 *   chain postrouting  type nat hook postrouting priority srcnat (100), policy accept:
 *       ip saddr <subnet> ip daddr != <subnet> masquerade
 *   chain forward      type filter hook forward priority filter (0), policy accept:
 *       iifname <bridge> accept
 *       oifname <bridge> ct state established,related accept
 * and nothing else, so removing the network's NAT is deleting its table.
 *
 * Addresses are IPv4 in host byte order, as in struct netdef. All calls act in the caller's
 * network namespace, open their own netlink socket, and return 0 (or the boolean said) or
 * -errno with one log line; -EPERM means CAP_NET_ADMIN is missing.
 */
#ifndef NET_NAT_H
#define NET_NAT_H

#include <stdint.h>

/*
 * Create or replace network @network's table for @subnet/@prefix behind bridge @bridge, in one
 * nftables transaction: the table as it was before (or absent) until the commit, the new one
 * after it, never a moment without NAT and never two copies of a rule. -EINVAL on a bad name,
 * bridge name (1-15 characters), prefix (1-32) or a subnet with host bits set.
 */
int nat_apply(const char *network, uint32_t subnet, unsigned int prefix, const char *bridge);
/* Delete network @network's table; a table that is not there is success. */
int nat_remove(const char *network);
/* 1 if network @network's table exists, 0 if not, -errno. */
int nat_exists(const char *network);

/*
 * Turn IPv4 forwarding on in this network namespace (/proc/sys/net/ipv4/ip_forward), which
 * NAT needs. Nothing turns it off again: like libvirt, we cannot know who else relies on it.
 */
int ipv4_forwarding_enable(void);

#endif
