/* SPDX-License-Identifier: MIT */
/* net/announce.c: RARP/GARP frame bytes, and the rounds written to a packet fd with a header. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <errno.h>
#include <cmocka.h>

#include "net/announce.h"

static const uint8_t mac[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static void check_arp_common(const uint8_t *f, uint16_t ethertype, uint16_t op)
{
	assert_memory_equal(f, bcast, 6);
	assert_memory_equal(f + 6, mac, 6);
	assert_int_equal(f[12] << 8 | f[13], ethertype);
	assert_int_equal(f[14] << 8 | f[15], 1);	/* Ethernet */
	assert_int_equal(f[16] << 8 | f[17], 0x0800);	/* IPv4 */
	assert_int_equal(f[18], 6);
	assert_int_equal(f[19], 4);
	assert_int_equal(f[20] << 8 | f[21], op);
	assert_memory_equal(f + 22, mac, 6);		/* sender hardware address */
}

static void test_rarp(void **state)
{
	uint8_t f[ANNOUNCE_FRAME_LEN + 4], zero[ANNOUNCE_FRAME_LEN] = { 0 };

	(void)state;
	memset(f, 0xaa, sizeof(f));
	assert_int_equal(announce_build_rarp(mac, f), 60);
	check_arp_common(f, 0x8035, 3);			/* RARP request reverse */
	assert_memory_equal(f + 28, zero, 4);		/* no sender IP */
	assert_memory_equal(f + 32, mac, 6);		/* target hardware = own MAC */
	assert_memory_equal(f + 38, zero, 4);
	assert_memory_equal(f + 42, zero, 60 - 42);	/* padding to the Ethernet minimum */
	assert_int_equal(f[60], 0xaa);			/* nothing written past 60 bytes */
}

static void test_garp(void **state)
{
	uint8_t f[ANNOUNCE_FRAME_LEN], zero[ANNOUNCE_FRAME_LEN] = { 0 };
	uint8_t ip[4] = { 192, 0, 2, 7 };
	uint32_t ipv4;

	(void)state;
	memcpy(&ipv4, ip, 4);
	memset(f, 0xaa, sizeof(f));
	assert_int_equal(announce_build_garp(mac, ipv4, f), 60);
	check_arp_common(f, 0x0806, 1);			/* ARP request */
	assert_memory_equal(f + 28, ip, 4);		/* sender IP = target IP */
	assert_memory_equal(f + 32, zero, 6);
	assert_memory_equal(f + 38, ip, 4);
	assert_memory_equal(f + 42, zero, 60 - 42);
}

/* One round over a SOCK_SEQPACKET pair: header zeroed and prepended, then the frame. */
static void test_round_with_header(void **state)
{
	struct announce a;
	struct announce_nic nic = { .vnet_hdr_len = 12, .ipv4 = htonl(0xc0000207) };
	uint8_t buf[128], zero[12] = { 0 }, want[ANNOUNCE_FRAME_LEN];
	int sv[2];
	ssize_t n;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	nic.fd = sv[0];
	memcpy(nic.mac, mac, 6);
	memset(&a, 0, sizeof(a));
	a.nr_nics = 1;
	a.rounds = 1;
	a.nic[0] = nic;
	announce_send_round(&a);
	assert_int_equal(a.round, 1);
	assert_int_equal(a.nic[0].sent, 1);

	n = read(sv[1], buf, sizeof(buf));
	assert_int_equal(n, 12 + 60);
	assert_memory_equal(buf, zero, 12);
	announce_build_rarp(mac, want);
	assert_memory_equal(buf + 12, want, 60);
	n = read(sv[1], buf, sizeof(buf));		/* GARP follows when the IPv4 is known */
	assert_int_equal(n, 12 + 60);
	announce_build_garp(mac, nic.ipv4, want);
	assert_memory_equal(buf + 12, want, 60);

	/* A dead peer: counted as failed, nothing crashes. */
	close(sv[1]);
	announce_send_round(&a);
	assert_int_equal(a.nic[0].failed, 1);
	close(sv[0]);
}

static void test_start_rejects(void **state)
{
	struct announce a;
	struct announce_nic nic = { .fd = -1 };

	(void)state;
	memset(&a, 0, sizeof(a));
	assert_int_equal(announce_start(&a, NULL, &nic, 1, 5), -EINVAL);
	nic.fd = 0;
	nic.vnet_hdr_len = ANNOUNCE_MAX_HDR + 1;
	assert_int_equal(announce_start(&a, NULL, &nic, 1, 5), -EINVAL);
	assert_int_equal(announce_start(&a, NULL, &nic, ANNOUNCE_MAX_NICS + 1, 5), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rarp),
		cmocka_unit_test(test_garp),
		cmocka_unit_test(test_round_with_header),
		cmocka_unit_test(test_start_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
