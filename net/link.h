/* SPDX-License-Identifier: MIT */
/*
 * Host links through rtnetlink (libnl-route-3): bridges, VLAN sub-interfaces, enslaving a port
 * to a bridge, MTU, up/down, IPv4 addresses. The building blocks net/network.c starts and stops
 * networks with, and the vmm attaches its taps with.
 *
 * Every call opens its own netlink socket, so there is no shared state and no threading rule;
 * these run at network start/stop and VM start, never on a hot path. Calls act in the caller's
 * network namespace. All return 0 (or a count / boolean as said) or -errno, and log one line
 * saying what failed; EPERM says that CAP_NET_ADMIN is missing.
 *
 * Idempotence is per call: creating a bridge that exists as a bridge, adding an address that is
 * there, deleting a link that is gone, enslaving a port to the bridge it is in — all succeed.
 */
#ifndef NET_LINK_H
#define NET_LINK_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 1 if a link of that name exists, 0 if not, -errno. */
int link_exists(const char *name);
/* 1 if @name is a bridge, 0 if it is something else or absent, -errno. */
int link_is_bridge(const char *name);

/* Create bridge @name with @mtu (0: kernel default); an existing bridge gets the MTU set. A
 * link of that name that is not a bridge: -EEXIST. */
int link_bridge_create(const char *name, unsigned int mtu);
/* A VLAN sub-interface @name of @parent with id @vid (802.1Q). An existing VLAN link of that
 * name on the same parent and id is accepted; anything else with that name: -EEXIST. */
int link_vlan_create(const char *name, const char *parent, unsigned int vid, unsigned int mtu);
/* Delete @name; a link that is already gone is success. */
int link_delete(const char *name);

/* Make @port a port of @bridge. Already there: 0. A port of another bridge: -EBUSY (a port
 * never silently changes owners). @bridge NULL: release @port from whatever bridge holds it. */
int link_set_master(const char *port, const char *bridge);
/* The name of @port's bridge into @buf (IFNAMSIZ), "" if none. 0 or -errno. */
int link_get_master(const char *port, char *buf);
/* The ports of @bridge: up to @max names, returns how many there are in all (may be > max). */
int link_bridge_ports(const char *bridge, char (*names)[IFNAMSIZ], size_t max);

int link_set_up(const char *name, bool up);
int link_set_mtu(const char *name, unsigned int mtu);
/* MTU of @name, or -errno. */
int link_get_mtu(const char *name);

/* Add @ipv4/@prefix (host byte order) to @name; the same address already there is success. */
int link_addr_add(const char *name, uint32_t ipv4, unsigned int prefix);
/* Name of a link other than @except that holds an IPv4 address inside @net/@prefix (host byte
 * order), into @who (IFNAMSIZ): 1 found, 0 none, -errno. For "this subnet is already in use on
 * this host" before a NAT network takes it. */
int link_find_addr_in(uint32_t net, unsigned int prefix, const char *except, char *who);

#endif
