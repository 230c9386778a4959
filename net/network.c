/* SPDX-License-Identifier: MIT */
/* net/network.c: start/stop a defined network (bridge, uplink, NAT rules, dnsmasq); attach taps. */
#define LOG_TAG "network"
#include "net/network.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

#include "net/dnsmasq.h"
#include "net/link.h"
#include "net/nat.h"
#include "net/netstore.h"
#include "net/rundir.h"
#include "vmm/lib/log.h"

#define MAX_PORTS 64

/* The link a bridged network's bridge uses towards the LAN: the port, or its VLAN link. */
static void uplink_name(const struct netdef *d, char buf[IFNAMSIZ])
{
	if (d->vlan)
		snprintf(buf, IFNAMSIZ, "vv-%s", d->name);
	else
		snprintf(buf, IFNAMSIZ, "%s", d->host_port);
}

static void ip_text(uint32_t host_order, char buf[INET_ADDRSTRLEN])
{
	uint32_t be = htonl(host_order);

	inet_ntop(AF_INET, &be, buf, INET_ADDRSTRLEN);
}

int net_is_active(const struct netdef *d)
{
	char br[IFNAMSIZ];

	if (netdef_bridge_name(d, br, sizeof(br)) < 0)
		return -EINVAL;
	return link_is_bridge(br);
}

static int bridged_start(const struct netdef *d, const char *br)
{
	char up[IFNAMSIZ], master[IFNAMSIZ];
	bool made_vlan = false, made_br;
	int ret;

	ret = link_exists(d->host_port);
	if (ret <= 0) {
		if (ret == 0)
			log_err("network %s: host port %s does not exist", d->name, d->host_port);
		return ret < 0 ? ret : -ENODEV;
	}
	uplink_name(d, up);
	/* A port that is already in another bridge belongs to someone else: say so before
	 * creating anything. */
	if (link_exists(up) == 1 && link_get_master(up, master) == 0 && master[0] &&
	    strcmp(master, br) != 0) {
		log_err("network %s: %s is already a port of bridge %s", d->name, up, master);
		return -EBUSY;
	}
	made_br = link_exists(br) == 0;
	ret = link_bridge_create(br, d->mtu);
	if (ret < 0)
		return ret;
	if (d->vlan) {
		made_vlan = link_exists(up) == 0;
		ret = link_vlan_create(up, d->host_port, d->vlan, d->mtu);
		if (ret < 0)
			goto undo;
		/* the parent must carry the tagged frames' size */
		if ((ret = link_get_mtu(d->host_port)) >= 0 && (unsigned int)ret < d->mtu &&
		    (ret = link_set_mtu(d->host_port, d->mtu)) < 0)
			goto undo;
		if ((ret = link_set_up(d->host_port, true)) < 0)
			goto undo;
	} else if ((ret = link_set_mtu(up, d->mtu)) < 0) {
		goto undo;
	}
	if ((ret = link_set_master(up, br)) < 0 || (ret = link_set_up(up, true)) < 0 ||
	    (ret = link_set_up(br, true)) < 0)
		goto undo;
	return 0;
undo:
	if (made_vlan)
		link_delete(up);
	else
		link_set_master(up, NULL);
	if (made_br)
		link_delete(br);
	return ret;
}

static void dnsmasq_params_of(const struct netdef *d, const char *br, const char *run_dir,
			      struct dnsmasq_params *p)
{
	memset(p, 0, sizeof(*p));
	p->network = d->name;
	p->bridge = br;
	p->gateway = d->gateway;
	p->prefix = d->prefix;
	p->dhcp_start = d->dhcp_start;
	p->dhcp_end = d->dhcp_end;
	p->run_dir = run_dir;
}

static int nat_start(const struct netdef *d, const char *br)
{
	char who[IFNAMSIZ], run_dir[4096], a[INET_ADDRSTRLEN];
	struct dnsmasq_params p;
	bool made_br;
	int ret;

	if ((ret = net_run_dir(d->name, run_dir, sizeof(run_dir))) < 0)
		return ret;
	/* Our subnet must not be one this host already uses elsewhere: its traffic would be
	 * routed to the VMs instead (libvirt refuses this too). */
	ret = link_find_addr_in(d->subnet, d->prefix, br, who);
	if (ret < 0)
		return ret;
	if (ret) {
		ip_text(d->subnet, a);
		log_err("network %s: subnet %s/%u overlaps an address on %s", d->name, a, d->prefix,
			who);
		return -EADDRINUSE;
	}
	made_br = link_exists(br) == 0;
	ret = link_bridge_create(br, d->mtu);
	if (ret < 0)
		return ret;
	if ((ret = link_addr_add(br, d->gateway, d->prefix)) < 0 ||
	    (ret = link_set_up(br, true)) < 0 ||
	    (ret = ipv4_forwarding_enable()) < 0 ||
	    (ret = nat_apply(d->name, d->subnet, d->prefix, br)) < 0)
		goto undo;
	dnsmasq_params_of(d, br, run_dir, &p);
	if ((ret = dnsmasq_start(&p)) < 0)
		goto undo;
	return 0;
undo:
	nat_remove(d->name);
	if (made_br)
		link_delete(br);
	return ret;
}

int net_start(const char *name)
{
	struct netdef d;
	char br[IFNAMSIZ];
	int ret;

	if ((ret = net_lookup(name, &d)) < 0)
		return ret;
	if ((ret = netdef_bridge_name(&d, br, sizeof(br))) < 0)
		return ret;
	ret = d.kind == NETDEF_NAT ? nat_start(&d, br) : bridged_start(&d, br);
	if (ret == 0)
		log_info("network %s started (bridge %s)", d.name, br);
	return ret;
}

/* The bridge's ports that are not its uplink: VM taps. Their count, names of the first few. */
static int vm_ports(const struct netdef *d, const char *br, char *list, size_t len)
{
	char ports[MAX_PORTS][IFNAMSIZ], up[IFNAMSIZ] = "";
	int n, vms = 0;
	size_t used = 0;

	if (d->kind == NETDEF_BRIDGED)
		uplink_name(d, up);
	n = link_bridge_ports(br, ports, MAX_PORTS);
	if (n < 0)
		return n;
	list[0] = 0;
	for (int i = 0; i < n && i < MAX_PORTS; i++) {
		if (strcmp(ports[i], up) == 0)
			continue;
		vms++;
		if (used + strlen(ports[i]) + 2 < len)
			used += (size_t)snprintf(list + used, len - used, "%s%s", used ? " " : "",
						 ports[i]);
	}
	return vms;
}

int net_stop(const char *name, bool force)
{
	char br[IFNAMSIZ], up[IFNAMSIZ], list[256], run_dir[4096];
	struct netdef d;
	int ret, n;

	if ((ret = net_lookup(name, &d)) < 0)
		return ret;
	if ((ret = netdef_bridge_name(&d, br, sizeof(br))) < 0)
		return ret;
	ret = link_is_bridge(br);
	if (ret < 0)
		return ret;
	if (ret == 1) {
		n = vm_ports(&d, br, list, sizeof(list));
		if (n < 0)
			return n;
		if (n > 0 && !force) {
			log_err("network %s is in use by %d VM NIC(s) (%s): stop those VMs first, or force",
				d.name, n, list);
			return -EBUSY;
		}
	}
	/* Stop is also the cleanup of a half-started network: every step runs even when the
	 * bridge is gone, and each tolerates what is already absent. */
	if (d.kind == NETDEF_NAT) {
		if ((ret = net_run_dir(d.name, run_dir, sizeof(run_dir))) < 0)
			return ret;
		if ((ret = dnsmasq_stop(run_dir)) < 0 || (ret = nat_remove(d.name)) < 0)
			return ret;
	} else {
		uplink_name(&d, up);
		if (d.vlan)
			ret = link_delete(up);
		else if (link_exists(up) == 1) {
			char m[IFNAMSIZ];

			if (link_get_master(up, m) == 0 && strcmp(m, br) == 0)
				ret = link_set_master(up, NULL);
		}
		if (ret < 0)
			return ret;
	}
	ret = link_delete(br);
	if (ret == 0)
		log_info("network %s stopped", d.name);
	return ret;
}

int net_delete(const char *name)
{
	struct netdef d;
	int ret;

	if ((ret = net_lookup(name, &d)) < 0)
		return ret;
	ret = net_is_active(&d);
	if (ret < 0)
		return ret;
	if (ret) {
		log_err("network %s is started: stop it first", name);
		return -EBUSY;
	}
	return net_undefine(name);
}

/* Look up @name and require it started; *br = its bridge. */
static int started(const char *name, struct netdef *d, char br[IFNAMSIZ])
{
	int ret;

	if ((ret = net_lookup(name, d)) < 0)
		return ret;
	if ((ret = netdef_bridge_name(d, br, IFNAMSIZ)) < 0)
		return ret;
	ret = link_is_bridge(br);
	if (ret < 0)
		return ret;
	if (!ret) {
		log_err("network %s is not started (no bridge %s): vmctl net start %s", name, br, name);
		return -ENETDOWN;
	}
	return 0;
}

int net_network_mtu(const char *name, unsigned int *mtu)
{
	struct netdef d;
	char br[IFNAMSIZ];
	int ret = started(name, &d, br);

	if (ret == 0)
		*mtu = d.mtu;
	return ret;
}

int net_attach_tap(const char *name, const char *tap, unsigned int *mtu_out)
{
	struct netdef d;
	char br[IFNAMSIZ];
	int ret;

	if ((ret = started(name, &d, br)) < 0)
		return ret;
	if ((ret = link_set_mtu(tap, d.mtu)) < 0 || (ret = link_set_master(tap, br)) < 0 ||
	    (ret = link_set_up(tap, true)) < 0)
		return ret;
	if (mtu_out)
		*mtu_out = d.mtu;
	return 0;
}
