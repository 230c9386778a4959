/* SPDX-License-Identifier: MIT */
/* net/netdef.c: definition parsing/validation, subnet overlap, MAC stability/uniqueness, JSON round trip. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "net/netdef.h"
#include "vmm/virtio/net.h"

static void parse_nat_defaults(void **state)
{
	struct netdef d;

	(void)state;
	assert_int_equal(netdef_from_json("{\"name\":\"lan0\",\"type\":\"nat\",\"subnet\":\"10.9.0.0/24\"}", &d), 0);
	assert_int_equal(d.kind, NETDEF_NAT);
	assert_int_equal(d.mtu, 1500);
	assert_int_equal(d.prefix, 24);
	assert_int_equal(d.subnet, 0x0a090000u);
	assert_int_equal(d.gateway, 0x0a090001u);
	assert_int_equal(d.dhcp_start, 0x0a090002u);
	assert_int_equal(d.dhcp_end, 0x0a0900feu);
}

static void parse_bridged(void **state)
{
	struct netdef d;
	char br[NETDEF_IFNAME_MAX];

	(void)state;
	assert_int_equal(netdef_from_json("{\"name\":\"uplink\",\"type\":\"bridged\",\"host_port\":\"eth0\","
					  "\"vlan\":42,\"mtu\":9000}", &d), 0);
	assert_int_equal(d.kind, NETDEF_BRIDGED);
	assert_string_equal(d.host_port, "eth0");
	assert_int_equal(d.vlan, 42);
	assert_int_equal(d.mtu, 9000);
	assert_int_equal(netdef_bridge_name(&d, br, sizeof(br)), 0);
	assert_string_equal(br, "vb-uplink");
}

static void parse_rejects(void **state)
{
	static const char *bad[] = {
		"not json",
		"[1,2]",
		"{\"type\":\"nat\",\"subnet\":\"10.0.0.0/24\"}",				/* no name */
		"{\"name\":\"Bad_Name\",\"type\":\"nat\",\"subnet\":\"10.0.0.0/24\"}",
		"{\"name\":\"waytoolongname\",\"type\":\"nat\",\"subnet\":\"10.0.0.0/24\"}",
		"{\"name\":\"a\",\"type\":\"wifi\"}",
		"{\"name\":\"a\",\"type\":\"nat\",\"subnet\":\"10.0.0.1/24\"}",			/* host bits */
		"{\"name\":\"a\",\"type\":\"nat\",\"subnet\":\"10.0.0.0/31\"}",
		"{\"name\":\"a\",\"type\":\"nat\",\"subnet\":\"10.0.0.0/4\"}",
		"{\"name\":\"a\",\"type\":\"nat\",\"subnet\":\"10.0.0.0\"}",
		"{\"name\":\"a\",\"type\":\"nat\",\"subnet\":\"300.0.0.0/24\"}",
		"{\"name\":\"a\",\"type\":\"nat\",\"subnet\":\"10.0.0.0/24\",\"gateway\":\"10.0.1.1\"}",
		"{\"name\":\"a\",\"type\":\"nat\",\"subnet\":\"10.0.0.0/24\",\"gateway\":\"10.0.0.255\"}",
		"{\"name\":\"a\",\"type\":\"nat\",\"subnet\":\"10.0.0.0/24\",\"gateway\":\"10.0.0.50\"}", /* in range */
		"{\"name\":\"a\",\"type\":\"nat\",\"subnet\":\"10.0.0.0/24\",\"dhcp_start\":\"10.0.0.90\",\"dhcp_end\":\"10.0.0.80\"}",
		"{\"name\":\"a\",\"type\":\"nat\",\"subnet\":\"10.0.0.0/24\",\"mtu\":9001}",
		"{\"name\":\"a\",\"type\":\"nat\",\"subnet\":\"10.0.0.0/24\",\"mtu\":\"big\"}",
		"{\"name\":\"a\",\"type\":\"bridged\"}",					/* no port */
		"{\"name\":\"a\",\"type\":\"bridged\",\"host_port\":\"eth0\",\"vlan\":4095}",
		"{\"name\":\"a\",\"type\":\"bridged\",\"host_port\":\"averyveryverylongifname\"}",
	};
	struct netdef d;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (netdef_from_json(bad[i], &d) != -EINVAL)
			fail_msg("accepted: %s", bad[i]);
	}
}

static void json_round_trip(void **state)
{
	static const char *in[] = {
		"{\"name\":\"n1\",\"type\":\"nat\",\"subnet\":\"192.168.77.0/25\",\"gateway\":\"192.168.77.126\","
		"\"dhcp_start\":\"192.168.77.10\",\"dhcp_end\":\"192.168.77.20\",\"mtu\":1400}",
		"{\"name\":\"b-1\",\"type\":\"bridged\",\"host_port\":\"veth9\",\"vlan\":0,\"mtu\":1500}",
	};
	struct netdef a, b;

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		char *j;

		assert_int_equal(netdef_from_json(in[i], &a), 0);
		j = netdef_to_json(&a);
		assert_non_null(j);
		assert_int_equal(netdef_from_json(j, &b), 0);
		assert_memory_equal(&a, &b, sizeof(a));
		free(j);
	}
}

static void nat(struct netdef *d, const char *cidr)
{
	char j[160];

	snprintf(j, sizeof(j), "{\"name\":\"x\",\"type\":\"nat\",\"subnet\":\"%s\"}", cidr);
	assert_int_equal(netdef_from_json(j, d), 0);
}

static void subnet_overlap(void **state)
{
	struct netdef a, b, c, e, br;

	(void)state;
	nat(&a, "10.1.0.0/16");
	nat(&b, "10.1.200.0/24");	/* inside a */
	nat(&c, "10.2.0.0/24");
	nat(&e, "10.1.0.0/16");	/* same */
	assert_true(netdef_subnets_overlap(&a, &b));
	assert_true(netdef_subnets_overlap(&b, &a));
	assert_true(netdef_subnets_overlap(&a, &e));
	assert_false(netdef_subnets_overlap(&a, &c));
	assert_false(netdef_subnets_overlap(&b, &c));
	nat(&b, "10.0.255.252/30");	/* adjacent below a */
	assert_false(netdef_subnets_overlap(&a, &b));
	assert_int_equal(netdef_from_json("{\"name\":\"y\",\"type\":\"bridged\",\"host_port\":\"e\"}", &br), 0);
	assert_false(netdef_subnets_overlap(&a, &br));
}

static void mac_stable_unique(void **state)
{
	uint8_t m1[6], m2[6], used[64][6];

	(void)state;
	assert_int_equal(netdef_mac_generate("web1", 0, NULL, 0, m1), 0);
	assert_int_equal(netdef_mac_generate("web1", 0, NULL, 0, m2), 0);
	assert_memory_equal(m1, m2, 6);			/* stable */
	assert_int_equal(m1[0], 0x02);			/* locally administered unicast */
	/* 64 NICs over 8 VMs: all distinct, all 02:... */
	for (int v = 0; v < 8; v++)
		for (int n = 0; n < 8; n++) {
			char name[16];

			snprintf(name, sizeof(name), "vm%d", v);
			assert_int_equal(netdef_mac_generate(name, n, NULL, 0, used[v * 8 + n]), 0);
			assert_int_equal(used[v * 8 + n][0], 0x02);
			for (int k = 0; k < v * 8 + n; k++)
				assert_memory_not_equal(used[k], used[v * 8 + n], 6);
		}
	/* Salt 0 is the vmm's own scheme (virtio_net_mac_generate). */
	netdef_mac_generate("vm1", 3, NULL, 0, m1);
	virtio_net_mac_generate("vm1", 3, m2);
	assert_memory_equal(m1, m2, 6);
	/* A collision with a known NIC moves to another stable address. */
	netdef_mac_generate("web1", 0, NULL, 0, m1);
	memcpy(used[0], m1, 6);
	assert_int_equal(netdef_mac_generate("web1", 0, (const uint8_t (*)[6])used, 1, m2), 0);
	assert_memory_not_equal(m1, m2, 6);
	assert_int_equal(m2[0], 0x02);
	memcpy(used[1], m2, 6);
	assert_int_equal(netdef_mac_generate("web1", 0, (const uint8_t (*)[6])used, 1, m1), 0);
	assert_memory_equal(m1, m2, 6);			/* same known set -> same answer */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_nat_defaults),
		cmocka_unit_test(parse_bridged),
		cmocka_unit_test(parse_rejects),
		cmocka_unit_test(json_round_trip),
		cmocka_unit_test(subnet_overlap),
		cmocka_unit_test(mac_stable_unique),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
