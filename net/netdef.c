/* SPDX-License-Identifier: MIT */
/* net/netdef.c: network definitions — JSON, validation, subnet overlap, stable MACs. */
#define LOG_TAG "netdef"
#include "net/netdef.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/lib/log.h"
#include "vmm/virtio/net.h"

static uint32_t prefix_mask(unsigned int prefix)
{
	return prefix ? ~0u << (32 - prefix) : 0;
}

static int parse_ip(const char *s, uint32_t *out)
{
	struct in_addr a;

	if (!s || inet_pton(AF_INET, s, &a) != 1)
		return -EINVAL;
	*out = ntohl(a.s_addr);
	return 0;
}

static void fmt_ip(uint32_t ip, char buf[INET_ADDRSTRLEN])
{
	struct in_addr a = { .s_addr = htonl(ip) };

	inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

static int parse_cidr(const char *s, uint32_t *net, unsigned int *prefix)
{
	char ip[INET_ADDRSTRLEN + 1];
	const char *slash = s ? strchr(s, '/') : NULL;
	char *end;
	unsigned long p;

	if (!slash || (size_t)(slash - s) >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, s, slash - s);
	ip[slash - s] = '\0';
	errno = 0;
	p = strtoul(slash + 1, &end, 10);
	if (errno || end == slash + 1 || *end || p > 32)
		return -EINVAL;
	*prefix = p;
	return parse_ip(ip, net);
}

static bool name_ok(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > NETDEF_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!islower((unsigned char)n[i]) && !isdigit((unsigned char)n[i]) && n[i] != '-')
			return false;
	return true;
}

int netdef_validate(const struct netdef *d)
{
	uint32_t mask, bcast;

	if (!name_ok(d->name)) {
		log_err("network name '%s': 1-%d characters of a-z 0-9 -", d->name, NETDEF_NAME_MAX);
		return -EINVAL;
	}
	if (d->mtu < 68 || d->mtu > 9000) {
		log_err("network %s: mtu %u out of range 68-9000", d->name, d->mtu);
		return -EINVAL;
	}
	if (d->kind == NETDEF_BRIDGED) {
		if (!d->host_port[0] || strchr(d->host_port, '/') || strchr(d->host_port, ' ')) {
			log_err("network %s: bridged needs a valid host_port", d->name);
			return -EINVAL;
		}
		if (d->vlan > 4094) {
			log_err("network %s: vlan %u out of range 1-4094", d->name, d->vlan);
			return -EINVAL;
		}
		return 0;
	}
	if (d->prefix < 8 || d->prefix > 30) {
		log_err("network %s: subnet prefix /%u out of range /8-/30", d->name, d->prefix);
		return -EINVAL;
	}
	mask = prefix_mask(d->prefix);
	bcast = d->subnet | ~mask;
	if (d->subnet & ~mask) {
		log_err("network %s: subnet has host bits set (not a network address)", d->name);
		return -EINVAL;
	}
	if ((d->gateway & mask) != d->subnet || d->gateway == d->subnet || d->gateway == bcast) {
		log_err("network %s: gateway is not a host address in the subnet", d->name);
		return -EINVAL;
	}
	if ((d->dhcp_start & mask) != d->subnet || (d->dhcp_end & mask) != d->subnet ||
	    d->dhcp_start > d->dhcp_end || d->dhcp_start == d->subnet || d->dhcp_end == bcast) {
		log_err("network %s: dhcp range is not an ordered range of host addresses in the subnet",
			d->name);
		return -EINVAL;
	}
	if (d->gateway >= d->dhcp_start && d->gateway <= d->dhcp_end) {
		log_err("network %s: gateway lies inside the dhcp range", d->name);
		return -EINVAL;
	}
	return 0;
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* Missing key -> def; present but not a non-negative integer -> -EINVAL. */
static int juint(struct json_object *o, const char *key, unsigned int def, unsigned int *out)
{
	struct json_object *v;
	int64_t x;

	if (!json_object_object_get_ex(o, key, &v)) {
		*out = def;
		return 0;
	}
	if (!json_object_is_type(v, json_type_int))
		return -EINVAL;
	x = json_object_get_int64(v);
	if (x < 0 || x > 100000)
		return -EINVAL;
	*out = x;
	return 0;
}

static int copy_str(char *dst, size_t len, const char *src)
{
	if (!src || strlen(src) >= len)
		return -EINVAL;
	strcpy(dst, src);
	return 0;
}

int netdef_from_json(const char *text, struct netdef *d)
{
	struct json_object *o = json_tokener_parse(text);
	const char *kind, *s;
	int ret = -EINVAL;

	memset(d, 0, sizeof(*d));
	if (!o || !json_object_is_type(o, json_type_object)) {
		log_err("network definition: not a JSON object");
		goto out;
	}
	if (copy_str(d->name, sizeof(d->name), jstr(o, "name"))) {
		log_err("network definition: \"name\" missing or longer than %d", NETDEF_NAME_MAX);
		goto out;
	}
	if (juint(o, "mtu", 1500, &d->mtu)) {
		log_err("network %s: \"mtu\" must be an integer", d->name);
		goto out;
	}
	if (d->mtu == 0)
		d->mtu = 1500;
	kind = jstr(o, "type");
	if (kind && !strcmp(kind, "bridged")) {
		d->kind = NETDEF_BRIDGED;
		if (copy_str(d->host_port, sizeof(d->host_port), jstr(o, "host_port"))) {
			log_err("network %s: \"host_port\" missing or too long", d->name);
			goto out;
		}
		if (juint(o, "vlan", 0, &d->vlan)) {
			log_err("network %s: \"vlan\" must be an integer", d->name);
			goto out;
		}
	} else if (kind && !strcmp(kind, "nat")) {
		d->kind = NETDEF_NAT;
		if (parse_cidr(jstr(o, "subnet"), &d->subnet, &d->prefix)) {
			log_err("network %s: \"subnet\" must be an IPv4 CIDR like 10.0.5.0/24", d->name);
			goto out;
		}
		/* Defaults: gateway .1, DHCP from .2 to the last host address. */
		d->gateway = d->subnet + 1;
		d->dhcp_start = d->subnet + 2;
		d->dhcp_end = (d->subnet | ~prefix_mask(d->prefix)) - 1;
		if ((s = jstr(o, "gateway")) && parse_ip(s, &d->gateway)) {
			log_err("network %s: bad \"gateway\" '%s'", d->name, s);
			goto out;
		}
		if ((s = jstr(o, "dhcp_start")) && parse_ip(s, &d->dhcp_start)) {
			log_err("network %s: bad \"dhcp_start\" '%s'", d->name, s);
			goto out;
		}
		if ((s = jstr(o, "dhcp_end")) && parse_ip(s, &d->dhcp_end)) {
			log_err("network %s: bad \"dhcp_end\" '%s'", d->name, s);
			goto out;
		}
	} else {
		log_err("network %s: \"type\" must be \"bridged\" or \"nat\"", d->name);
		goto out;
	}
	ret = netdef_validate(d);
out:
	json_object_put(o);
	return ret;
}

char *netdef_to_json(const struct netdef *d)
{
	struct json_object *o = json_object_new_object();
	char a[INET_ADDRSTRLEN], cidr[INET_ADDRSTRLEN + 4];
	char *out = NULL;

	if (!o)
		return NULL;
	json_object_object_add(o, "name", json_object_new_string(d->name));
	json_object_object_add(o, "type",
			       json_object_new_string(d->kind == NETDEF_NAT ? "nat" : "bridged"));
	json_object_object_add(o, "mtu", json_object_new_int(d->mtu));
	if (d->kind == NETDEF_BRIDGED) {
		json_object_object_add(o, "host_port", json_object_new_string(d->host_port));
		json_object_object_add(o, "vlan", json_object_new_int(d->vlan));
	} else {
		fmt_ip(d->subnet, a);
		snprintf(cidr, sizeof(cidr), "%s/%u", a, d->prefix);
		json_object_object_add(o, "subnet", json_object_new_string(cidr));
		fmt_ip(d->gateway, a);
		json_object_object_add(o, "gateway", json_object_new_string(a));
		fmt_ip(d->dhcp_start, a);
		json_object_object_add(o, "dhcp_start", json_object_new_string(a));
		fmt_ip(d->dhcp_end, a);
		json_object_object_add(o, "dhcp_end", json_object_new_string(a));
	}
	out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
	json_object_put(o);
	return out;
}

bool netdef_subnets_overlap(const struct netdef *a, const struct netdef *b)
{
	unsigned int p;

	if (a->kind != NETDEF_NAT || b->kind != NETDEF_NAT)
		return false;
	/* Two CIDR blocks overlap iff they agree on the shorter prefix. */
	p = a->prefix < b->prefix ? a->prefix : b->prefix;
	return ((a->subnet ^ b->subnet) & prefix_mask(p)) == 0;
}

int netdef_bridge_name(const struct netdef *d, char *buf, size_t len)
{
	int n = snprintf(buf, len, "vb-%s", d->name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int netdef_mac_generate(const char *vm, unsigned int nic, const uint8_t (*used)[6], size_t n,
			uint8_t mac[6])
{
	char key[256];

	/* Salt 0 is exactly the vmm's own scheme, so a VM without clashes keeps the MAC it had. */
	for (unsigned int salt = 0; salt < 256; salt++) {
		bool clash = false;

		if (salt == 0) {
			virtio_net_mac_generate(vm, nic, mac);
		} else {
			snprintf(key, sizeof(key), "%.200s#%u", vm, salt);
			virtio_net_mac_generate(key, nic, mac);
		}
		for (size_t i = 0; i < n && !clash; i++)
			clash = !memcmp(used[i], mac, 6);
		if (!clash)
			return 0;
	}
	log_err("no free MAC for %s nic %u after 256 tries", vm, nic);
	return -EEXIST;
}
