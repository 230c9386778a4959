/* SPDX-License-Identifier: MIT */
/* net/link.c: bridges, VLAN links, ports, MTU, up/down and addresses over rtnetlink (libnl). */
#define LOG_TAG "net-link"
#include "net/link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/vlan.h>

#include "vmm/lib/log.h"

/* libnl reports its own NLE_* codes; callers of this module speak errno. */
static int nl_errno(int nle)
{
	switch (nle < 0 ? -nle : nle) {
	case 0: return 0;
	case NLE_PERM: return -EPERM;
	case NLE_NOACCESS: return -EACCES;
	case NLE_EXIST: return -EEXIST;
	case NLE_NODEV: case NLE_OBJ_NOTFOUND: return -ENODEV;
	case NLE_NOMEM: return -ENOMEM;
	case NLE_BUSY: return -EBUSY;
	case NLE_INVAL: case NLE_MSG_TOOSHORT: return -EINVAL;
	case NLE_RANGE: return -ERANGE;
	case NLE_NOADDR: return -EADDRNOTAVAIL;
	case NLE_OPNOTSUPP: return -EOPNOTSUPP;
	case NLE_AGAIN: return -EAGAIN;
	case NLE_AF_NOSUPPORT: return -EAFNOSUPPORT;
	default: return -EIO;
	}
}

/* One line for a failed operation; EPERM names the missing capability. */
static int report(int err, const char *what, const char *name)
{
	if (err == -EPERM || err == -EACCES)
		log_err("%s %s: permission denied: needs CAP_NET_ADMIN (run as root)", what, name);
	else
		log_err("%s %s: %s", what, name, strerror(-err));
	return err;
}

static struct nl_sock *rt_open(void)
{
	struct nl_sock *sk = nl_socket_alloc();

	if (!sk) {
		log_err("netlink: out of memory");
		return NULL;
	}
	if (nl_connect(sk, NETLINK_ROUTE) < 0) {
		log_err("netlink: cannot open a NETLINK_ROUTE socket");
		nl_socket_free(sk);
		return NULL;
	}
	return sk;
}

static int name_ok(const char *name)
{
	if (!name || !*name || strlen(name) >= IFNAMSIZ || strchr(name, '/')) {
		log_err("'%s': not a valid interface name (1..%d characters, no '/')",
			name ? name : "", IFNAMSIZ - 1);
		return -EINVAL;
	}
	return 0;
}

/* The kernel's current view of @name: 0 and *out, -ENODEV when absent (not logged), -errno. */
static int get_link(struct nl_sock *sk, const char *name, struct rtnl_link **out)
{
	return nl_errno(rtnl_link_get_kernel(sk, 0, name, out));
}

/* get_link() for a link the caller needs: its absence or a failed look-up is logged, naming
 * it as "@what @name" ("host port eth1", "bridge vb-lan"; @what "" for just the name). */
static int get_needed_link(struct nl_sock *sk, const char *what, const char *name,
			   struct rtnl_link **out)
{
	int ret = get_link(sk, name, out);

	if (ret == -ENODEV)
		log_err("%s%s%s does not exist", what, *what ? " " : "", name);
	else if (ret < 0)
		report(ret, "looking up", name);
	return ret;
}

/*
 * Validate @name, open a socket and look the link up. 0 or -ENODEV (absent, not logged) with
 * *skp open; the caller ends with done(). Other errors: nothing left open.
 */
static int lookup(const char *name, struct nl_sock **skp, struct rtnl_link **lp)
{
	int ret;

	*skp = NULL;
	*lp = NULL;
	if ((ret = name_ok(name)) < 0)
		return ret;
	if (!(*skp = rt_open()))
		return -EIO;
	ret = get_link(*skp, name, lp);
	if (ret < 0 && ret != -ENODEV) {
		nl_socket_free(*skp);
		*skp = NULL;
	}
	return ret;
}

static void done(struct nl_sock *sk, struct rtnl_link *l)
{
	rtnl_link_put(l);
	nl_socket_free(sk);
}

int link_exists(const char *name)
{
	struct rtnl_link *l;
	struct nl_sock *sk;
	int ret = lookup(name, &sk, &l);

	done(sk, l);
	return ret == 0 ? 1 : ret == -ENODEV ? 0 : ret;
}

static bool is_bridge(struct rtnl_link *l)
{
	const char *type = rtnl_link_get_type(l);

	return type && strcmp(type, "bridge") == 0;
}

int link_is_bridge(const char *name)
{
	struct rtnl_link *l;
	struct nl_sock *sk;
	int ret = lookup(name, &sk, &l);

	if (ret == 0)
		ret = is_bridge(l);
	else if (ret == -ENODEV)
		ret = 0;
	done(sk, l);
	return ret;
}

/* Apply @changes to the link @name already looked up as @orig. */
static int change(struct nl_sock *sk, struct rtnl_link *orig, struct rtnl_link *changes)
{
	return nl_errno(rtnl_link_change(sk, orig, changes, 0));
}

static int set_mtu_sk(struct nl_sock *sk, const char *name, unsigned int mtu)
{
	struct rtnl_link *orig = NULL, *ch;
	int ret;

	ret = get_link(sk, name, &orig);
	if (ret < 0)
		return report(ret, "looking up", name);
	if (rtnl_link_get_mtu(orig) == mtu) {
		rtnl_link_put(orig);
		return 0;
	}
	ch = rtnl_link_alloc();
	if (!ch) {
		rtnl_link_put(orig);
		return -ENOMEM;
	}
	rtnl_link_set_mtu(ch, mtu);
	ret = change(sk, orig, ch);
	rtnl_link_put(ch);
	rtnl_link_put(orig);
	if (ret < 0) {
		if (ret == -EINVAL || ret == -ERANGE)
			log_err("setting MTU %u on %s: the device does not take it", mtu, name);
		else
			report(ret, "setting the MTU of", name);
	}
	return ret;
}

int link_bridge_create(const char *name, unsigned int mtu)
{
	struct rtnl_link *l = NULL;
	struct nl_sock *sk;
	int ret;

	if ((ret = name_ok(name)) < 0)
		return ret;
	if (!(sk = rt_open()))
		return -EIO;
	l = rtnl_link_bridge_alloc();
	if (!l) {
		ret = -ENOMEM;
		goto out;
	}
	rtnl_link_set_name(l, name);
	ret = nl_errno(rtnl_link_add(sk, l, NLM_F_CREATE | NLM_F_EXCL));
	rtnl_link_put(l);
	l = NULL;
	if (ret == -EEXIST) {
		ret = get_link(sk, name, &l);
		if (ret == 0 && !is_bridge(l)) {
			log_err("%s exists and is not a bridge", name);
			ret = -EEXIST;
		}
	} else if (ret < 0) {
		report(ret, "creating bridge", name);
		goto out;
	}
	if (ret == 0 && mtu)
		ret = set_mtu_sk(sk, name, mtu);
out:
	rtnl_link_put(l);
	nl_socket_free(sk);
	return ret;
}

int link_vlan_create(const char *name, const char *parent, unsigned int vid, unsigned int mtu)
{
	struct rtnl_link *l = NULL, *p = NULL;
	struct nl_sock *sk;
	int ret, pidx;

	if ((ret = name_ok(name)) < 0 || (ret = name_ok(parent)) < 0)
		return ret;
	if (vid < 1 || vid > 4094) {
		log_err("VLAN id %u: must be 1..4094", vid);
		return -EINVAL;
	}
	if (!(sk = rt_open()))
		return -EIO;
	ret = get_needed_link(sk, "host port", parent, &p);
	if (ret < 0)
		goto out;
	pidx = rtnl_link_get_ifindex(p);
	ret = get_link(sk, name, &l);
	if (ret == 0) {
		const char *type = rtnl_link_get_type(l);

		if (type && strcmp(type, "vlan") == 0 && rtnl_link_get_link(l) == pidx &&
		    rtnl_link_vlan_get_id(l) == (int)vid) {
			ret = mtu ? set_mtu_sk(sk, name, mtu) : 0;
		} else {
			log_err("%s exists and is not VLAN %u of %s", name, vid, parent);
			ret = -EEXIST;
		}
		goto out;
	}
	rtnl_link_put(l);
	if (!(l = rtnl_link_vlan_alloc())) {
		ret = -ENOMEM;
		goto out;
	}
	rtnl_link_set_name(l, name);
	rtnl_link_set_link(l, pidx);
	rtnl_link_vlan_set_id(l, (uint16_t)vid);
	if (mtu)
		rtnl_link_set_mtu(l, mtu);
	ret = nl_errno(rtnl_link_add(sk, l, NLM_F_CREATE | NLM_F_EXCL));
	if (ret == -EOPNOTSUPP)
		log_err("creating VLAN link %s: this kernel has no 802.1Q VLAN support (module 8021q)",
			name);
	else if (ret < 0)
		report(ret, "creating VLAN link", name);
out:
	rtnl_link_put(l);
	rtnl_link_put(p);
	nl_socket_free(sk);
	return ret;
}

int link_delete(const char *name)
{
	struct rtnl_link *l;
	struct nl_sock *sk;
	int ret = lookup(name, &sk, &l);

	if (ret == 0) {
		ret = nl_errno(rtnl_link_delete(sk, l));
		if (ret == -ENODEV)
			ret = 0;	/* gone meanwhile */
		else if (ret < 0)
			report(ret, "deleting", name);
	} else if (ret == -ENODEV) {
		ret = 0;
	} else {
		report(ret, "looking up", name);
	}
	done(sk, l);
	return ret;
}

int link_get_master(const char *port, char *buf)
{
	struct rtnl_link *l;
	struct nl_sock *sk;
	int ret, m;

	buf[0] = 0;
	ret = lookup(port, &sk, &l);
	if (ret < 0) {
		report(ret, "looking up", port);
	} else if ((m = rtnl_link_get_master(l)) > 0 && !if_indextoname(m, buf)) {
		ret = -errno;
		buf[0] = 0;
	}
	done(sk, l);
	return ret;
}

int link_set_master(const char *port, const char *bridge)
{
	struct rtnl_link *p = NULL, *b = NULL;
	struct nl_sock *sk;
	int ret, cur;

	if ((ret = name_ok(port)) < 0 || (bridge && (ret = name_ok(bridge)) < 0))
		return ret;
	if (!(sk = rt_open()))
		return -EIO;
	ret = get_needed_link(sk, "", port, &p);
	if (ret < 0)
		goto out;
	cur = rtnl_link_get_master(p);
	if (!bridge) {
		ret = cur ? nl_errno(rtnl_link_release_ifindex(sk, rtnl_link_get_ifindex(p))) : 0;
		if (ret < 0)
			report(ret, "releasing", port);
		goto out;
	}
	ret = get_needed_link(sk, "bridge", bridge, &b);
	if (ret < 0)
		goto out;
	if (!is_bridge(b)) {
		log_err("%s is not a bridge", bridge);
		ret = -EINVAL;
		goto out;
	}
	if (cur == rtnl_link_get_ifindex(b))
		goto out;
	if (cur) {
		char other[IFNAMSIZ] = "?";

		if_indextoname(cur, other);
		log_err("%s is already a port of %s", port, other);
		ret = -EBUSY;
		goto out;
	}
	ret = nl_errno(rtnl_link_enslave_ifindex(sk, rtnl_link_get_ifindex(b),
						 rtnl_link_get_ifindex(p)));
	if (ret < 0)
		report(ret, "adding a port to bridge", bridge);
out:
	rtnl_link_put(b);
	rtnl_link_put(p);
	nl_socket_free(sk);
	return ret;
}

int link_bridge_ports(const char *bridge, char (*names)[IFNAMSIZ], size_t max)
{
	struct nl_cache *cache = NULL;
	struct nl_object *o;
	struct nl_sock *sk;
	int ret, bidx, n = 0;

	if ((ret = name_ok(bridge)) < 0)
		return ret;
	if (!(sk = rt_open()))
		return -EIO;
	ret = nl_errno(rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache));
	if (ret < 0) {
		report(ret, "listing links for", bridge);
		goto out;
	}
	bidx = rtnl_link_name2i(cache, bridge);
	if (!bidx) {
		ret = -ENODEV;
		goto out;
	}
	for (o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_link *l = (struct rtnl_link *)o;

		if (rtnl_link_get_master(l) != bidx)
			continue;
		if ((size_t)n < max)
			snprintf(names[n], IFNAMSIZ, "%s", rtnl_link_get_name(l));
		n++;
	}
	ret = n;
out:
	nl_cache_free(cache);
	nl_socket_free(sk);
	return ret;
}

int link_set_up(const char *name, bool up)
{
	struct rtnl_link *orig, *ch = NULL;
	struct nl_sock *sk;
	int ret = lookup(name, &sk, &orig);

	if (ret < 0) {
		report(ret, "looking up", name);
		goto out;
	}
	if (!!(rtnl_link_get_flags(orig) & IFF_UP) == up)
		goto out;
	if (!(ch = rtnl_link_alloc())) {
		ret = -ENOMEM;
		goto out;
	}
	if (up)
		rtnl_link_set_flags(ch, IFF_UP);
	else
		rtnl_link_unset_flags(ch, IFF_UP);
	ret = change(sk, orig, ch);
	if (ret < 0)
		report(ret, up ? "setting up" : "setting down", name);
out:
	rtnl_link_put(ch);
	done(sk, orig);
	return ret;
}

int link_set_mtu(const char *name, unsigned int mtu)
{
	struct nl_sock *sk;
	int ret;

	if ((ret = name_ok(name)) < 0)
		return ret;
	if (!(sk = rt_open()))
		return -EIO;
	ret = set_mtu_sk(sk, name, mtu);
	nl_socket_free(sk);
	return ret;
}

int link_get_mtu(const char *name)
{
	struct rtnl_link *l;
	struct nl_sock *sk;
	int ret = lookup(name, &sk, &l);

	if (ret == 0)
		ret = (int)rtnl_link_get_mtu(l);
	done(sk, l);
	return ret;
}

static uint32_t prefix_mask(unsigned int prefix)
{
	return prefix ? 0xffffffffu << (32 - prefix) : 0;
}

int link_addr_add(const char *name, uint32_t ipv4, unsigned int prefix)
{
	struct rtnl_addr *a = NULL;
	struct nl_addr *local = NULL, *brd = NULL;
	struct nl_sock *sk;
	uint32_t be = htonl(ipv4), bbe = htonl(ipv4 | ~prefix_mask(prefix));
	int ret, idx;
	char txt[INET_ADDRSTRLEN];

	if ((ret = name_ok(name)) < 0)
		return ret;
	if (prefix < 1 || prefix > 32) {
		log_err("prefix /%u: must be 1..32", prefix);
		return -EINVAL;
	}
	idx = (int)if_nametoindex(name);
	if (!idx)
		return report(-ENODEV, "adding an address to", name);
	if (!(sk = rt_open()))
		return -EIO;
	a = rtnl_addr_alloc();
	local = nl_addr_build(AF_INET, &be, 4);
	brd = nl_addr_build(AF_INET, &bbe, 4);
	if (!a || !local || !brd) {
		ret = -ENOMEM;
		goto out;
	}
	nl_addr_set_prefixlen(local, (int)prefix);
	rtnl_addr_set_ifindex(a, idx);
	rtnl_addr_set_local(a, local);
	rtnl_addr_set_prefixlen(a, (int)prefix);
	if (prefix < 31)
		rtnl_addr_set_broadcast(a, brd);
	ret = nl_errno(rtnl_addr_add(sk, a, 0));
	if (ret == -EEXIST)
		ret = 0;
	if (ret < 0) {
		inet_ntop(AF_INET, &be, txt, sizeof(txt));
		log_err("adding %s/%u to %s: %s%s", txt, prefix, name, strerror(-ret),
			ret == -EPERM ? " (needs CAP_NET_ADMIN)" : "");
	}
out:
	nl_addr_put(brd);
	nl_addr_put(local);
	rtnl_addr_put(a);
	nl_socket_free(sk);
	return ret;
}

int link_find_addr_in(uint32_t net, unsigned int prefix, const char *except, char *who)
{
	struct nl_cache *cache = NULL;
	struct nl_object *o;
	struct nl_sock *sk;
	int ret;

	who[0] = 0;
	if (!(sk = rt_open()))
		return -EIO;
	ret = nl_errno(rtnl_addr_alloc_cache(sk, &cache));
	if (ret < 0) {
		report(ret, "listing addresses", "");
		goto out;
	}
	for (o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		struct nl_addr *l = rtnl_addr_get_local(a);
		char name[IFNAMSIZ];
		unsigned int p;
		uint32_t v, m;

		if (rtnl_addr_get_family(a) != AF_INET || !l || nl_addr_get_len(l) != 4)
			continue;
		memcpy(&v, nl_addr_get_binary_addr(l), 4);
		v = ntohl(v);
		/* Two blocks overlap iff they agree on the shorter of the two prefixes. */
		p = (unsigned int)rtnl_addr_get_prefixlen(a);
		m = prefix_mask(p < prefix ? p : prefix);
		if ((v & m) != (net & m))
			continue;
		if (!if_indextoname((unsigned int)rtnl_addr_get_ifindex(a), name))
			continue;
		if (except && strcmp(name, except) == 0)
			continue;
		snprintf(who, IFNAMSIZ, "%s", name);
		ret = 1;
		goto out;
	}
	ret = 0;
out:
	nl_cache_free(cache);
	nl_socket_free(sk);
	return ret;
}
