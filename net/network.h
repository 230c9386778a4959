/* SPDX-License-Identifier: MIT */
/*
 * Networks at run time (issue 6 items 1-3): start and stop a stored network definition
 * (net/netstore.h) on this host, and attach a VM's tap to a started one. The library API the
 * `vmctl net` commands call today and vmctld will call.
 *
 * A started network is its bridge, "vb-<name>": the bridge existing is what "active" means, so
 * there is no run-state file that could disagree with the kernel after a crash.
 *   bridged: vb-<name> (MTU of the definition) with the host port as its uplink — the port
 *            itself, or for a tagged network a VLAN link "vv-<name>" on the port.
 *   NAT:     vb-<name> with the gateway address, IPv4 forwarding on, a masquerading nftables
 *            table "ip vmctl-<name>" (net/nat.h) and a dnsmasq for DHCP/DNS on the bridge
 *            (net/dnsmasq.h), its files in $VMCTL_RUN_DIR/net/<name>.
 * Start is idempotent (each step is) and all or nothing: a step that fails undoes the ones
 * before it, so no half-made bridge, rule or process is left. Stop removes everything start
 * made; it refuses while VM taps are still ports of the bridge unless forced.
 *
 * A VM's taps are not this module's to delete: the vmm creates them without IFF_PERSIST, so
 * the kernel removes them (and their bridge ports) when the vmm exits, also when it is killed.
 */
#ifndef NET_NETWORK_H
#define NET_NETWORK_H

#include <stdbool.h>

#include "net/netdef.h"

int net_start(const char *name);
/* @force: stop even while VMs' taps are attached (they lose their network). */
int net_stop(const char *name, bool force);
/* 1 started, 0 not, -errno. */
int net_is_active(const struct netdef *d);
/* Undefine, refusing a started network (-EBUSY). */
int net_delete(const char *name);

/*
 * Attach tap @tap (already created by the caller) to started network @name: MTU of the
 * network, port of its bridge, up. *@mtu_out (if given) = the network's MTU, which the guest's
 * NIC should use too. -ENOENT unknown network, -ENETDOWN not started.
 */
int net_attach_tap(const char *name, const char *tap, unsigned int *mtu_out);
/* The MTU of started network @name (for the guest NIC before its tap exists); errors as above. */
int net_network_mtu(const char *name, unsigned int *mtu);

#endif
