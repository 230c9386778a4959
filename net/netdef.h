/* SPDX-License-Identifier: MIT */
/*
 * Network definitions (issue 6 item 3): a named bridged or NAT network, its JSON form on disk,
 * validation, subnet overlap, and the stable per-(VM, NIC) MAC scheme. Pure logic, no netlink:
 * the link/nft/dnsmasq side (net_start/net_stop) builds on these.
 */
#ifndef NET_NETDEF_H
#define NET_NETDEF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A network name becomes part of link names ("vb-<name>"), so it must fit IFNAMSIZ-1 with the prefix. */
#define NETDEF_NAME_MAX 12
#define NETDEF_IFNAME_MAX 16

enum netdef_kind { NETDEF_BRIDGED, NETDEF_NAT };

struct netdef {
	char name[NETDEF_NAME_MAX + 1];
	enum netdef_kind kind;
	unsigned int mtu;		/* 68..9000; 0 in JSON means 1500 */
	/* bridged */
	char host_port[NETDEF_IFNAME_MAX];
	unsigned int vlan;		/* 0 = untagged, else 1..4094 */
	/* nat: all IPv4 addresses in host byte order */
	uint32_t subnet;
	unsigned int prefix;		/* 8..30 */
	uint32_t gateway;
	uint32_t dhcp_start, dhcp_end;
};

/* Parse and validate one definition; -EINVAL with a one-line log_err on anything wrong. */
int netdef_from_json(const char *text, struct netdef *d);
/* The canonical JSON text (malloc'd, caller frees) or NULL on -ENOMEM. */
char *netdef_to_json(const struct netdef *d);
int netdef_validate(const struct netdef *d);
/* True when two NAT networks' subnets share any address (bridged networks never overlap). */
bool netdef_subnets_overlap(const struct netdef *a, const struct netdef *b);
/* The bridge a network uses: "vb-<name>". */
int netdef_bridge_name(const struct netdef *d, char *buf, size_t len);

/*
 * Stable MAC for (VM name, NIC index): virtio_net_mac_generate()'s scheme (02: + FNV-1a 64 of
 * "vmctl-nic", the name and the index; 0x02 = locally administered unicast). If the result is in
 * `used` (n known NICs) the key becomes "<vm>#<salt>", salt 1, 2, ..., so the answer is stable
 * for a given set of known NICs and never one of them. -EEXIST if 256 salts all collide.
 * Parse a MAC with virtio_net_mac_parse().
 */
int netdef_mac_generate(const char *vm, unsigned int nic, const uint8_t (*used)[6], size_t n,
			uint8_t mac[6]);

#endif
