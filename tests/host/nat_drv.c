/* SPDX-License-Identifier: MIT */
/*
 * Test driver for tests/host/net-nat-bare.sh: one library call per run, so the script can run
 * it inside a network namespace and look at the kernel with nft/ss in between. Built by the
 * script against libvmm.a. Prints the call's result; exits 0 when it is >= 0, else 1.
 *   nat_drv apply NETWORK SUBNET/PREFIX BRIDGE | remove NETWORK | exists NETWORK | forward
 *   nat_drv dns-start NETWORK BRIDGE GATEWAY/PREFIX START END RUN_DIR
 *   nat_drv dns-stop RUN_DIR | dns-running RUN_DIR
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/dnsmasq.h"
#include "net/nat.h"

static uint32_t ip(const char *s)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1) {
		fprintf(stderr, "nat_drv: bad address %s\n", s);
		exit(2);
	}
	return ntohl(a.s_addr);
}

/* "a.b.c.d/p" -> address, prefix */
static uint32_t cidr(char *s, unsigned int *prefix)
{
	char *slash = strchr(s, '/');

	if (!slash) {
		fprintf(stderr, "nat_drv: %s is not a CIDR\n", s);
		exit(2);
	}
	*slash = '\0';
	*prefix = atoi(slash + 1);
	return ip(s);
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";
	unsigned int prefix;
	int ret;

	if (!strcmp(cmd, "apply") && argc == 5) {
		uint32_t net = cidr(argv[3], &prefix);

		ret = nat_apply(argv[2], net, prefix, argv[4]);
	} else if (!strcmp(cmd, "remove") && argc == 3) {
		ret = nat_remove(argv[2]);
	} else if (!strcmp(cmd, "exists") && argc == 3) {
		ret = nat_exists(argv[2]);
	} else if (!strcmp(cmd, "forward") && argc == 2) {
		ret = ipv4_forwarding_enable();
	} else if (!strcmp(cmd, "dns-start") && argc == 8) {
		struct dnsmasq_params p = {
			.network = argv[2], .bridge = argv[3], .dhcp_start = ip(argv[5]),
			.dhcp_end = ip(argv[6]), .run_dir = argv[7],
		};

		p.gateway = cidr(argv[4], &p.prefix);
		ret = dnsmasq_start(&p);
	} else if (!strcmp(cmd, "dns-stop") && argc == 3) {
		ret = dnsmasq_stop(argv[2]);
	} else if (!strcmp(cmd, "dns-running") && argc == 3) {
		ret = dnsmasq_running(argv[2]);
	} else {
		fprintf(stderr, "usage: see tests/host/nat_drv.c\n");
		return 2;
	}
	printf("%d\n", ret);
	return ret < 0;
}
