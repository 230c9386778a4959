/* SPDX-License-Identifier: MIT */
/* net/nat.c: a network's masquerading nftables table over netlink (libnftnl + libmnl). */
#define LOG_TAG "nat"
#include "net/nat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "net/netdef.h"
#include "vmm/lib/log.h"

/* nft's own names: priority srcnat is 100, priority filter is 0. */
#define NAT_PRIO_SRCNAT 100
#define NAT_PRIO_FILTER 0
/* Far more than the batch needs (nine messages of a few hundred bytes). */
#define NAT_BATCH_LIMIT 8192
#define NAT_MAX_MSGS 16
/* The kernel answers a batch while we send it; this only bounds a lost answer. */
#define NAT_REPLY_TIMEOUT_MS 5000

/*
 * One nftables transaction being built: the messages between BATCH_BEGIN and BATCH_END, each
 * with NLM_F_ACK so the kernel answers every one, and what each does for the error line.
 */
struct nat_batch {
	char buf[2 * NAT_BATCH_LIMIT];	/* mnl batches may overrun their limit by one message */
	struct mnl_nlmsg_batch *b;
	uint32_t first_seq;		/* the BATCH_BEGIN's; message i has first_seq + 1 + i */
	const char *what[NAT_MAX_MSGS];
	unsigned int n;
	bool full;
};

static int batch_init(struct nat_batch *nb, const char *network)
{
	nb->b = mnl_nlmsg_batch_start(nb->buf, NAT_BATCH_LIMIT);
	if (!nb->b) {
		log_err("network %s: building the nftables batch: out of memory", network);
		return -ENOMEM;
	}
	nb->first_seq = 1;
	nb->n = 0;
	nb->full = false;
	nftnl_batch_begin(mnl_nlmsg_batch_current(nb->b), nb->first_seq);
	mnl_nlmsg_batch_next(nb->b);
	return 0;
}

static struct nlmsghdr *msg_begin(struct nat_batch *nb, uint16_t type, uint16_t flags,
				  const char *what)
{
	BUG_ON(nb->n >= NAT_MAX_MSGS);
	nb->what[nb->n++] = what;
	return nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(nb->b), type, NFPROTO_IPV4,
				     flags | NLM_F_ACK, nb->first_seq + nb->n);
}

static void msg_end(struct nat_batch *nb)
{
	if (!mnl_nlmsg_batch_next(nb->b))
		nb->full = true;
}

static int add_table_msg(struct nat_batch *nb, uint16_t type, uint16_t flags, const char *table,
			 const char *what)
{
	struct nftnl_table *t = nftnl_table_alloc();

	if (!t || nftnl_table_set_str(t, NFTNL_TABLE_NAME, table)) {
		nftnl_table_free(t);
		return -ENOMEM;
	}
	nftnl_table_nlmsg_build_payload(msg_begin(nb, type, flags, what), t);
	msg_end(nb);
	nftnl_table_free(t);
	return 0;
}

static int add_chain_msg(struct nat_batch *nb, const char *table, const char *name,
			 const char *type, uint32_t hook, int32_t prio, const char *what)
{
	struct nftnl_chain *c = nftnl_chain_alloc();

	if (!c || nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table) ||
	    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name) ||
	    nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, type)) {
		nftnl_chain_free(c);
		return -ENOMEM;
	}
	nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, hook);
	nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	nftnl_chain_nlmsg_build_payload(msg_begin(nb, NFT_MSG_NEWCHAIN, NLM_F_CREATE, what), c);
	msg_end(nb);
	nftnl_chain_free(c);
	return 0;
}

/* Expressions, each a register operation as `nft --debug=netlink` shows them; NULL on ENOMEM. */
static struct nftnl_expr *expr_payload_ip(uint32_t offset)
{
	struct nftnl_expr *e = nftnl_expr_alloc("payload");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, sizeof(uint32_t));
	}
	return e;
}

/* reg 1 = (reg 1 & mask) ^ 0 over a 4-byte value in the byte order it was loaded in. */
static struct nftnl_expr *expr_mask(uint32_t mask)
{
	struct nftnl_expr *e = nftnl_expr_alloc("bitwise");
	uint32_t zero = 0;

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, sizeof(mask));
		nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, &mask, sizeof(mask));
		nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, &zero, sizeof(zero));
	}
	return e;
}

static struct nftnl_expr *expr_cmp(uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("cmp");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
		nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	}
	return e;
}

/* An expression set by two u32 attributes, as meta, ct and an immediate verdict are. */
static struct nftnl_expr *expr_u32_pair(const char *name, uint16_t attr1, uint32_t val1,
					uint16_t attr2, uint32_t val2)
{
	struct nftnl_expr *e = nftnl_expr_alloc(name);

	if (e) {
		nftnl_expr_set_u32(e, attr1, val1);
		nftnl_expr_set_u32(e, attr2, val2);
	}
	return e;
}

static struct nftnl_expr *expr_meta(uint32_t key)
{
	return expr_u32_pair("meta", NFTNL_EXPR_META_KEY, key, NFTNL_EXPR_META_DREG, NFT_REG_1);
}

static struct nftnl_expr *expr_ct_state(void)
{
	return expr_u32_pair("ct", NFTNL_EXPR_CT_KEY, NFT_CT_STATE, NFTNL_EXPR_CT_DREG, NFT_REG_1);
}

static struct nftnl_expr *expr_accept(void)
{
	return expr_u32_pair("immediate", NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT,
			     NFTNL_EXPR_IMM_VERDICT, NF_ACCEPT);
}

/* Append a rule made of @n expressions (any NULL: all are freed, -ENOMEM) to @chain. */
static int add_rule_msg(struct nat_batch *nb, const char *table, const char *chain,
			struct nftnl_expr **e, size_t n, const char *what)
{
	struct nftnl_rule *r = nftnl_rule_alloc();
	bool ok = r && !nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table) &&
		  !nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);

	for (size_t i = 0; i < n; i++)
		ok = ok && e[i];
	for (size_t i = 0; i < n; i++) {
		if (ok)
			nftnl_rule_add_expr(r, e[i]);	/* the rule owns it now */
		else if (e[i])
			nftnl_expr_free(e[i]);
	}
	if (ok) {
		nftnl_rule_nlmsg_build_payload(
			msg_begin(nb, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, what), r);
		msg_end(nb);
	}
	if (r)
		nftnl_rule_free(r);
	return ok ? 0 : -ENOMEM;
}

/* ip saddr <subnet> ip daddr != <subnet> masquerade */
static int add_masquerade_rule(struct nat_batch *nb, const char *table, uint32_t subnet,
			       unsigned int prefix)
{
	/* Packet bytes are big-endian, so the mask and the subnet are too. */
	uint32_t mask_be = htonl(prefix ? ~0u << (32 - prefix) : 0), net_be = htonl(subnet);
	struct nftnl_expr *e[] = {
		expr_payload_ip(offsetof(struct iphdr, saddr)),
		expr_mask(mask_be),
		expr_cmp(NFT_CMP_EQ, &net_be, sizeof(net_be)),
		expr_payload_ip(offsetof(struct iphdr, daddr)),
		expr_mask(mask_be),
		expr_cmp(NFT_CMP_NEQ, &net_be, sizeof(net_be)),
		nftnl_expr_alloc("masq"),
	};

	return add_rule_msg(nb, table, "postrouting", e, sizeof(e) / sizeof(e[0]),
			    "adding the masquerade rule");
}

/* iifname <bridge> accept; oifname <bridge> ct state established,related accept */
static int add_forward_rules(struct nat_batch *nb, const char *table, const char *bridge)
{
	/* The kernel compares the whole IFNAMSIZ name, zero-padded, for an exact match. */
	char ifname[IFNAMSIZ] = { 0 };
	uint32_t states = NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED);
	uint32_t zero = 0;
	int ret;

	memcpy(ifname, bridge, strlen(bridge));
	struct nftnl_expr *from_vms[] = {
		expr_meta(NFT_META_IIFNAME),
		expr_cmp(NFT_CMP_EQ, ifname, sizeof(ifname)),
		expr_accept(),
	};
	ret = add_rule_msg(nb, table, "forward", from_vms, sizeof(from_vms) / sizeof(from_vms[0]),
			   "adding the forward rule for traffic from the bridge");
	if (ret)
		return ret;
	/* ct state is a host-endian bit set: (state & wanted) != 0 */
	struct nftnl_expr *replies[] = {
		expr_meta(NFT_META_OIFNAME),
		expr_cmp(NFT_CMP_EQ, ifname, sizeof(ifname)),
		expr_ct_state(),
		expr_mask(states),
		expr_cmp(NFT_CMP_NEQ, &zero, sizeof(zero)),
		expr_accept(),
	};
	return add_rule_msg(nb, table, "forward", replies, sizeof(replies) / sizeof(replies[0]),
			    "adding the forward rule for replies to the bridge");
}

/* The extended ACK's message, if the kernel sent one (NETLINK_EXT_ACK). */
static const char *ext_ack_msg(const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
	size_t off = sizeof(*err);
	const struct nlattr *a;

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return NULL;
	/* Unless capped, the request's own payload sits between the error and the TLVs. */
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += err->msg.nlmsg_len - sizeof(struct nlmsghdr);
	if (off > mnl_nlmsg_get_payload_len(nlh))
		return NULL;
	mnl_attr_for_each(a, nlh, off)
		if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
		    mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
			return mnl_attr_get_str(a);
	return NULL;
}

/* One line for a failed nftables request; the missing-capability and missing-kernel-support
 * cases say so, since those are what a user can fix. */
static void report(const char *network, const char *what, int err, const char *ext)
{
	if (err == -EPERM || err == -EACCES)
		log_err("network %s: %s: permission denied: nftables needs CAP_NET_ADMIN (run as root)",
			network, what);
	else if (err == -EPROTONOSUPPORT || err == -EOPNOTSUPP || err == -EAFNOSUPPORT)
		log_err("network %s: %s: %s: this kernel has no nf_tables (CONFIG_NF_TABLES, module nf_tables)",
			network, what, strerror(-err));
	else if (err == -ENOENT)
		log_err("network %s: %s: %s%s%s (kernel without nft_chain_nat, nft_masq or nft_ct?)",
			network, what, strerror(-err), ext ? ": " : "", ext ? ext : "");
	else
		log_err("network %s: %s: %s%s%s", network, what, strerror(-err),
			ext ? ": " : "", ext ? ext : "");
}

static int nft_open(const char *network, struct mnl_socket **out)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	int on = 1, ret;

	if (!nl) {
		ret = -errno;
		report(network, "opening a netfilter netlink socket", ret, NULL);
		return ret;
	}
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		ret = -errno;
		report(network, "binding a netfilter netlink socket", ret, NULL);
		mnl_socket_close(nl);
		return ret;
	}
	/* Small acknowledgements with the kernel's reason text; older kernels ignore these. */
	mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &on, sizeof(on));
	mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &on, sizeof(on));
	*out = nl;
	return 0;
}

/* Wait (bounded) for the next datagram from the kernel; its length, or -errno. */
static ssize_t nft_recv(struct mnl_socket *nl, void *buf, size_t len, int timeout_ms)
{
	struct pollfd pfd = { .fd = mnl_socket_get_fd(nl), .events = POLLIN };
	int pr = poll(&pfd, 1, timeout_ms);
	ssize_t n;

	if (pr < 0)
		return -errno;
	if (pr == 0)
		return -ETIMEDOUT;
	n = mnl_socket_recvfrom(nl, buf, len);
	return n < 0 ? -errno : n;
}

/*
 * Send the batch as one transaction and read one answer per message. The first failure is the
 * cause (the kernel then rejects the rest as well, and commits none of it); it is logged unless
 * it is @quiet_err, which the caller handles. 0 or -errno.
 */
static int batch_send(struct nat_batch *nb, const char *network, int quiet_err)
{
	char rbuf[16384];
	const char *what = NULL, *ext = NULL;
	char ext_copy[256] = "";
	unsigned int answered = 0;
	struct mnl_socket *nl;
	int err = 0;

	nftnl_batch_end(mnl_nlmsg_batch_current(nb->b), nb->first_seq + nb->n + 1);
	msg_end(nb);
	BUG_ON(nb->full);
	err = nft_open(network, &nl);
	if (err)
		return err;
	if (mnl_socket_sendto(nl, mnl_nlmsg_batch_head(nb->b), mnl_nlmsg_batch_size(nb->b)) < 0) {
		err = -errno;
		what = "sending the nftables batch";
		goto out;
	}
	/* After a failure, only answers already queued matter: do not wait for more. */
	while (answered < nb->n) {
		ssize_t len = nft_recv(nl, rbuf, sizeof(rbuf), err ? 0 : NAT_REPLY_TIMEOUT_MS);
		int left;

		if (len < 0) {
			if (!err) {
				err = len;
				what = "reading the kernel's answer to the nftables batch";
			}
			break;
		}
		left = len;
		for (const struct nlmsghdr *nlh = (void *)rbuf; mnl_nlmsg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
			uint32_t idx = nlh->nlmsg_seq - nb->first_seq;

			if (nlh->nlmsg_type != NLMSG_ERROR ||
			    mnl_nlmsg_get_payload_len(nlh) < sizeof(*e) || idx > nb->n)
				continue;
			if (idx > 0)
				answered++;
			else	/* BATCH_BEGIN itself refused: the kernel read no further */
				answered = nb->n;
			if (e->error && !err) {
				err = e->error;
				what = idx > 0 ? nb->what[idx - 1] : "starting an nftables transaction";
				if ((ext = ext_ack_msg(nlh))) {
					snprintf(ext_copy, sizeof(ext_copy), "%s", ext);
					ext = ext_copy;
				}
			}
		}
	}
out:
	mnl_socket_close(nl);
	if (err && err != quiet_err)
		report(network, what, err, ext);
	return err;
}

/* Send the batch if building it (@built) went well; free it either way. */
static int batch_commit(struct nat_batch *nb, const char *network, int built, int quiet_err)
{
	int ret = built;

	if (ret)
		log_err("network %s: building the nftables batch: %s", network, strerror(-ret));
	else
		ret = batch_send(nb, network, quiet_err);
	mnl_nlmsg_batch_stop(nb->b);
	return ret;
}

/* "vmctl-<network>" into @table, after checking the name fits (nft allows 256 characters). */
static int table_for(const char *network, char table[32])
{
	size_t len = network ? strlen(network) : 0;

	if (len == 0 || len > NETDEF_NAME_MAX) {
		log_err("network name '%s': 1-%d characters", network ? network : "", NETDEF_NAME_MAX);
		return -EINVAL;
	}
	snprintf(table, 32, "vmctl-%s", network);
	return 0;
}

int nat_apply(const char *network, uint32_t subnet, unsigned int prefix, const char *bridge)
{
	struct nat_batch nb;
	char table[32];
	int ret;

	ret = table_for(network, table);
	if (ret)
		return ret;
	if (!bridge || !*bridge || strlen(bridge) >= IFNAMSIZ) {
		log_err("network %s: bridge name '%s' is not 1-%d characters", network,
			bridge ? bridge : "", IFNAMSIZ - 1);
		return -EINVAL;
	}
	if (prefix < 1 || prefix > 32 || (subnet & ~(~0u << (32 - prefix)))) {
		log_err("network %s: %u.%u.%u.%u/%u is not a network address with a prefix of 1-32",
			network, subnet >> 24, (subnet >> 16) & 0xff, (subnet >> 8) & 0xff,
			subnet & 0xff, prefix);
		return -EINVAL;
	}
	ret = batch_init(&nb, network);
	if (ret)
		return ret;
	/*
	 * "add table; delete table; add table ..." in one transaction: the first add makes the
	 * delete valid whether or not the table exists, the delete drops whatever an earlier
	 * apply left in it, and the kernel commits all of it or none. This is nft's own idiom.
	 */
	ret = add_table_msg(&nb, NFT_MSG_NEWTABLE, NLM_F_CREATE, table, "creating the table");
	ret = ret ?: add_table_msg(&nb, NFT_MSG_DELTABLE, 0, table, "replacing the old table");
	ret = ret ?: add_table_msg(&nb, NFT_MSG_NEWTABLE, NLM_F_CREATE, table, "creating the table");
	ret = ret ?: add_chain_msg(&nb, table, "postrouting", "nat", NF_INET_POST_ROUTING,
				   NAT_PRIO_SRCNAT, "adding the postrouting nat chain");
	ret = ret ?: add_masquerade_rule(&nb, table, subnet, prefix);
	/*
	 * The forward chain is this table's own statement and nothing more. The kernel runs every
	 * base chain on a hook, and an accept ends only the chain it is in: a drop in another
	 * table's forward chain (a host firewall with policy drop, iptables-nft's FORWARD) still
	 * drops the VMs' traffic, and has to be opened there. What these rules give is the
	 * network's intent written down where `nft list ruleset` shows it.
	 */
	ret = ret ?: add_chain_msg(&nb, table, "forward", "filter", NF_INET_FORWARD,
				   NAT_PRIO_FILTER, "adding the forward filter chain");
	ret = ret ?: add_forward_rules(&nb, table, bridge);
	return batch_commit(&nb, network, ret, 0);
}

int nat_remove(const char *network)
{
	struct nat_batch nb;
	char table[32];
	int ret;

	ret = table_for(network, table);
	ret = ret ?: batch_init(&nb, network);
	if (ret)
		return ret;
	ret = add_table_msg(&nb, NFT_MSG_DELTABLE, 0, table, "deleting the table");
	ret = batch_commit(&nb, network, ret, -ENOENT);
	return ret == -ENOENT ? 0 : ret;
}

int nat_exists(const char *network)
{
	char buf[8192], table[32];
	struct nftnl_table *t;
	struct mnl_socket *nl;
	struct nlmsghdr *nlh;
	ssize_t len;
	int ret;

	ret = table_for(network, table);
	if (ret)
		return ret;
	t = nftnl_table_alloc();
	if (!t || nftnl_table_set_str(t, NFTNL_TABLE_NAME, table)) {
		nftnl_table_free(t);
		log_err("network %s: looking up the table: out of memory", network);
		return -ENOMEM;
	}
	/* Without NLM_F_ACK the kernel answers exactly once: the table, or an error. */
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, NFPROTO_IPV4, 0, 1);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftnl_table_free(t);
	ret = nft_open(network, &nl);
	if (ret)
		return ret;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		ret = -errno;
	else if ((len = nft_recv(nl, buf, sizeof(buf), NAT_REPLY_TIMEOUT_MS)) < 0)
		ret = len;
	else if (!mnl_nlmsg_ok((nlh = (void *)buf), len))
		ret = -EBADMSG;
	else if (nlh->nlmsg_type == NLMSG_ERROR)
		ret = ((const struct nlmsgerr *)mnl_nlmsg_get_payload(nlh))->error;
	else
		ret = NFNL_MSG_TYPE(nlh->nlmsg_type) == NFT_MSG_NEWTABLE;
	mnl_socket_close(nl);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		report(network, "looking up the table", ret, NULL);
	return ret;
}

int ipv4_forwarding_enable(void)
{
	static const char path[] = "/proc/sys/net/ipv4/ip_forward";
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		ret = -errno;
	else if (write(fd, "1\n", 2) < 0)
		ret = -errno;
	if (fd >= 0)
		close(fd);
	if (ret == -EACCES || ret == -EPERM || ret == -EROFS)
		log_err("writing 1 to %s: %s: turning on IPv4 forwarding needs root", path,
			strerror(-ret));
	else if (ret)
		log_err("writing 1 to %s: %s", path, strerror(-ret));
	return ret;
}
