// SPDX-License-Identifier: MIT
/*
 * migrate/proto.c: header encode/decode and every bound, HELLO negotiation, CONFIG round trip
 * and every refusal reason, ACK/ROUND_END/ABORT layouts, and the receive order.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "migrate/proto.h"

static int saved_stderr = -1;

static void quiet_begin(void)
{
	int fd = open("/dev/null", O_WRONLY);

	fflush(stderr);
	saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
}

static void quiet_end(void)
{
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
}

static void test_hdr_layout(void **unused)
{
	static const uint8_t want[16] = { 'V', 'M', 'M', 'G', 3, 0, 0, 0,
					  0x08, 0x10, 0x10, 0, 0, 0, 0, 0 };
	uint8_t b[16];
	struct mig_hdr h;

	mig_hdr_encode(b, MIG_RAM, 0, 0x101008);
	assert_memory_equal(b, want, 16);
	assert_int_equal(mig_hdr_decode(b, &h), 0);
	assert_int_equal(h.cmd, MIG_RAM);
	assert_int_equal(h.len, 0x101008);
}

static void test_hdr_bounds_every_cmd(void **unused)
{
	uint8_t b[16];
	struct mig_hdr h;
	unsigned int cmd;
	uint64_t min, max;

	quiet_begin();
	for (cmd = 0; cmd < 64; cmd++) {
		if (!mig_cmd_len_bounds((uint16_t)cmd, &min, &max)) {
			/* Unknown and reserved post-copy commands are refused in v1. */
			mig_hdr_encode(b, (uint16_t)cmd, 0, 0);
			assert_int_equal(mig_hdr_decode(b, &h), -EPROTO);
			continue;
		}
		mig_hdr_encode(b, (uint16_t)cmd, 0, min);
		assert_int_equal(mig_hdr_decode(b, &h), 0);
		mig_hdr_encode(b, (uint16_t)cmd, 0, max);
		assert_int_equal(mig_hdr_decode(b, &h), 0);
		mig_hdr_encode(b, (uint16_t)cmd, 0, max + 1);
		assert_int_equal(mig_hdr_decode(b, &h), -E2BIG);
		mig_hdr_encode(b, (uint16_t)cmd, 0, UINT64_MAX);
		assert_int_equal(mig_hdr_decode(b, &h), -E2BIG);
		if (min) {
			mig_hdr_encode(b, (uint16_t)cmd, 0, min - 1);
			assert_int_equal(mig_hdr_decode(b, &h), -EBADMSG);
		}
		mig_hdr_encode(b, (uint16_t)cmd, 1, min);
		assert_int_equal(mig_hdr_decode(b, &h), -EBADMSG);
		/* Every bound fits in memory a receiver can afford (< 100 MiB). */
		assert_true(max < (100ull << 20));
	}
	mig_hdr_encode(b, 0xffff, 0, 0);
	assert_int_equal(mig_hdr_decode(b, &h), -EPROTO);
	mig_hdr_encode(b, MIG_HELLO, 0, 16);
	b[3] = 'X';
	assert_int_equal(mig_hdr_decode(b, &h), -EBADMSG);
	quiet_end();
	assert_int_equal(mig_cmd_len_bounds(MIG_PAGE_REQ, &min, &max), 0);
	assert_string_equal(mig_cmd_name(MIG_PAGE_REQ), "PAGE_REQ");
	assert_string_equal(mig_cmd_name(MIG_STATE), "STATE");
	assert_string_equal(mig_cmd_name(200), "unknown");
}

static void test_hello(void **unused)
{
	struct mig_hello a = { 1, 3, MIG_FEAT_ZSTD }, b = { 2, 5, 0 }, c = { 4, 6, 0 }, d;
	uint8_t buf[MIG_HELLO_MAX];
	uint32_t v;

	mig_hello_encode(buf, &a);
	assert_int_equal(mig_hello_decode(buf, MIG_HELLO_LEN, &d), 0);
	assert_int_equal(d.min_version, 1);
	assert_int_equal(d.max_version, 3);
	assert_int_equal(d.features, MIG_FEAT_ZSTD);
	/* A longer HELLO from a newer peer: extra bytes ignored. */
	memset(buf + MIG_HELLO_LEN, 0xee, sizeof(buf) - MIG_HELLO_LEN);
	assert_int_equal(mig_hello_decode(buf, sizeof(buf), &d), 0);
	assert_int_equal(mig_hello_decode(buf, MIG_HELLO_LEN - 1, &d), -EBADMSG);

	assert_int_equal(mig_version_pick(&a, &b, &v), 0);
	assert_int_equal(v, 3);
	assert_int_equal(mig_version_pick(&b, &a, &v), 0);	/* symmetric */
	assert_int_equal(v, 3);
	assert_int_equal(mig_version_pick(&b, &c, &v), 0);
	assert_int_equal(v, 5);
	quiet_begin();
	assert_int_equal(mig_version_pick(&a, &c, &v), -EPROTONOSUPPORT);
	/* Bad ranges. */
	d = (struct mig_hello){ 3, 2, 0 };
	mig_hello_encode(buf, &d);
	assert_int_equal(mig_hello_decode(buf, MIG_HELLO_LEN, &d), -EBADMSG);
	d = (struct mig_hello){ 0, 2, 0 };
	mig_hello_encode(buf, &d);
	assert_int_equal(mig_hello_decode(buf, MIG_HELLO_LEN, &d), -EBADMSG);
	quiet_end();
}

static void make_config(struct mig_config *c)
{
	struct mig_cpuid l1 = { .function = 1, .ecx = 0x80000001u | (1u << 27), .edx = 0x1fff },
			 l7 = { .function = 7, .index = 0, .ebx = 0x209 },
			 lx = { .function = 0x80000001, .ecx = 0x1, .edx = 0x20100800 };

	mig_config_init(c);
	c->mem_bytes = 1ull << 30;
	c->nr_vcpus = 2;
	assert_int_equal(mig_config_add_device(c, "vcpu", "0"), 0);
	assert_int_equal(mig_config_add_device(c, "vcpu", "1"), 0);
	assert_int_equal(mig_config_add_device(c, "virtio-blk", "blk0"), 0);
	assert_int_equal(mig_config_add_cpuid(c, &l1), 0);
	assert_int_equal(mig_config_add_cpuid(c, &l7), 0);
	assert_int_equal(mig_config_add_cpuid(c, &lx), 0);
}

static void test_config_round_trip(void **unused)
{
	struct mig_config a, b;
	uint8_t *buf;
	size_t len, i;
	char err[256];

	make_config(&a);
	assert_int_equal(mig_config_encode(&a, &buf, &len), 0);
	assert_int_equal(mig_config_decode(buf, len, &b), 0);
	assert_int_equal(b.mem_bytes, a.mem_bytes);
	assert_int_equal(b.nr_vcpus, 2);
	assert_int_equal(b.nr_devices, 3);
	assert_string_equal(b.devices[2], "virtio-blk[blk0]");
	assert_int_equal(b.nr_cpuid, 3);
	assert_memory_equal(b.cpuid, a.cpuid, 3 * sizeof(struct mig_cpuid));
	/* Identical shape, host supports exactly what the VM uses (OSXSAVE is not required). */
	a.cpuid[0].ecx &= ~(1u << 27);
	assert_int_equal(mig_config_check(&b, &b, a.cpuid, a.nr_cpuid, err, sizeof(err)), 0);

	/* Every truncation of the CONFIG payload is refused or decodes to fewer items, never read past. */
	quiet_begin();
	for (i = 0; i < len; i++) {
		struct mig_config t;
		uint8_t *copy = malloc(i ? i : 1);
		int ret;

		memcpy(copy, buf, i);
		ret = mig_config_decode(copy, i, &t);
		if (ret == 0) {
			assert_true(t.nr_devices + t.nr_cpuid < 6);
			mig_config_free(&t);
		}
		free(copy);
	}
	quiet_end();
	free(buf);
	mig_config_free(&a);
	mig_config_free(&b);
}

static void test_config_refusals(void **unused)
{
	struct mig_config src, dst;
	struct mig_cpuid host[3];
	char err[256];

	make_config(&src);
	make_config(&dst);
	memcpy(host, src.cpuid, sizeof(host));

	dst.mem_bytes = 2ull << 30;
	assert_int_equal(mig_config_check(&src, &dst, NULL, 0, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "memory size"));
	dst.mem_bytes = src.mem_bytes;

	dst.nr_vcpus = 4;
	assert_int_equal(mig_config_check(&src, &dst, NULL, 0, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "vCPU count"));
	dst.nr_vcpus = 2;

	assert_int_equal(mig_config_add_device(&dst, "virtio-net", "net0"), 0);
	assert_int_equal(mig_config_check(&src, &dst, NULL, 0, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "virtio-net[net0]"));
	assert_int_equal(mig_config_check(&dst, &src, NULL, 0, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "virtio-net[net0]"));
	mig_config_free(&dst);
	make_config(&dst);

	/* The host lacks a leaf-7 bit the source VM uses. */
	host[1].ebx &= ~0x200u;
	assert_int_equal(mig_config_check(&src, &dst, host, 3, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "CPUID.7.0:EBX bits 0x00000200"));
	/* The host lacks the whole extended leaf. */
	memcpy(host, src.cpuid, sizeof(host));
	assert_int_equal(mig_config_check(&src, &dst, host, 2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "80000001"));
	/* Host has more than the VM uses: fine. */
	host[0].ecx |= 0x7000;
	assert_int_equal(mig_config_check(&src, &dst, host, 3, err, sizeof(err)), 0);

	mig_config_free(&src);
	mig_config_free(&dst);
}

static void put16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }

static void test_config_malformed(void **unused)
{
	uint8_t b[64];
	struct mig_config c;

	quiet_begin();
	/* Empty: required fields missing. */
	assert_int_equal(mig_config_decode(b, 0, &c), -EBADMSG);
	/* Wrong size for the memory field. */
	put16(b, MIG_CFG_T_MEM_BYTES); put16(b + 2, 1); put32(b + 4, 4);
	assert_int_equal(mig_config_decode(b, 12, &c), -EBADMSG);
	/* Unknown required field from a newer source. */
	put16(b, 77); put16(b + 2, 1); put32(b + 4, 0);
	assert_int_equal(mig_config_decode(b, 8, &c), -EPROTO);
	/* Device name with a control character. */
	put16(b, MIG_CFG_T_DEVICE); put16(b + 2, 1); put32(b + 4, 3);
	memcpy(b + 8, "a\033b", 3);
	assert_int_equal(mig_config_decode(b, 11, &c), -EBADMSG);
	/* CPUID entry of the wrong size. */
	put16(b, MIG_CFG_T_CPUID); put16(b + 2, 1); put32(b + 4, 20);
	assert_int_equal(mig_config_decode(b, 28, &c), -EBADMSG);
	/* TLV length past the end. */
	put16(b, MIG_CFG_T_NR_VCPUS); put16(b + 2, 1); put32(b + 4, 0xfffffff0u);
	assert_int_equal(mig_config_decode(b, 16, &c), -EBADMSG);
	quiet_end();
}

static void test_small_messages(void **unused)
{
	uint8_t b[8 + MIG_MAX_ABORT_MSG + 8];
	char big[2000];
	char msg[64];
	uint16_t cmd;
	uint32_t round;
	uint64_t pages;
	size_t n;
	int err;

	mig_ack_encode(b, MIG_CONFIG);
	assert_int_equal(mig_ack_decode(b, MIG_ACK_LEN, &cmd), 0);
	assert_int_equal(cmd, MIG_CONFIG);
	assert_int_equal(mig_ack_decode(b, 7, &cmd), -EBADMSG);
	b[5] = 1;
	assert_int_equal(mig_ack_decode(b, MIG_ACK_LEN, &cmd), -EBADMSG);

	mig_round_end_encode(b, 7, 123456789012ull);
	assert_int_equal(mig_round_end_decode(b, MIG_ROUND_END_LEN, &round, &pages), 0);
	assert_int_equal(round, 7);
	assert_int_equal(pages, 123456789012ull);
	assert_int_equal(mig_round_end_decode(b, 15, &round, &pages), -EBADMSG);

	n = mig_abort_encode(b, -ENOSPC, "disk full\n\x01");
	assert_int_equal(n, 8 + 11);
	assert_int_equal(mig_abort_decode(b, n, &err, msg, sizeof(msg)), 0);
	assert_int_equal(err, ENOSPC);
	assert_string_equal(msg, "disk full??");		/* control chars neutralised */
	assert_int_equal(mig_abort_decode(b, n - 1, &err, msg, sizeof(msg)), -EBADMSG);
	assert_int_equal(mig_abort_decode(b, n, &err, msg, 5), 0);
	assert_string_equal(msg, "disk");
	/* Oversized text is cut at the maximum; a bogus errno becomes EPROTO. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	n = mig_abort_encode(b, 999999, big);
	assert_int_equal(n, 8 + MIG_MAX_ABORT_MSG);
	assert_int_equal(mig_abort_decode(b, n, &err, msg, sizeof(msg)), 0);
	assert_int_equal(err, EPROTO);
}

/* Commands 16–19 exist only in version 3: refused by a v2 (and v1) decoder. */
static void test_hdr_postcopy_v3_only(void **unused)
{
	static const uint16_t pc[] = { MIG_PAGE_REQ, MIG_PAGE_URGENT, MIG_POSTCOPY_START,
				       MIG_POSTCOPY_DONE };
	uint8_t b[16];
	struct mig_hdr h;
	uint64_t min, max;
	unsigned int i, cmd;

	quiet_begin();
	for (i = 0; i < 4; i++) {
		assert_int_equal(mig_cmd_len_bounds_ver(pc[i], 3, &min, &max), 1);
		assert_int_equal(mig_cmd_len_bounds_ver(pc[i], 2, &min, &max), 0);
		assert_int_equal(mig_cmd_len_bounds_ver(pc[i], 3, &min, &max), 1);
		mig_hdr_encode(b, pc[i], 0, min);
		assert_int_equal(mig_hdr_decode(b, &h), -EPROTO);
		assert_int_equal(mig_hdr_decode_ver(b, 1, &h), -EPROTO);
		assert_int_equal(mig_hdr_decode_ver(b, 2, &h), -EPROTO);
		assert_int_equal(mig_hdr_decode_ver(b, 3, &h), 0);
		assert_int_equal(h.cmd, pc[i]);
		mig_hdr_encode(b, pc[i], 0, max);
		assert_int_equal(mig_hdr_decode_ver(b, 3, &h), 0);
		mig_hdr_encode(b, pc[i], 0, max + 1);
		assert_int_equal(mig_hdr_decode_ver(b, 3, &h), -E2BIG);
		mig_hdr_encode(b, pc[i], 0, min - 1);
		assert_int_equal(mig_hdr_decode_ver(b, 3, &h), -EBADMSG);
		mig_hdr_encode(b, pc[i], 1, min);
		assert_int_equal(mig_hdr_decode_ver(b, 3, &h), -EBADMSG);
		assert_true(max < (70ull << 20));
	}
	/* exact bounds from the design */
	assert_int_equal(mig_cmd_len_bounds_ver(MIG_PAGE_REQ, 3, &min, &max), 1);
	assert_int_equal(min, 16);
	assert_int_equal(max, 520);
	assert_int_equal(mig_cmd_len_bounds_ver(MIG_PAGE_URGENT, 3, &min, &max), 1);
	assert_int_equal(min, 17);
	assert_int_equal(max, 8 + 64 * 4104);
	assert_int_equal(mig_cmd_len_bounds_ver(MIG_POSTCOPY_DONE, 3, &min, &max), 1);
	assert_int_equal(min, max);
	/* the rest of 10..63 stays unknown in v3; the v1/v2 commands keep their bounds */
	for (cmd = 10; cmd < 64; cmd++) {
		if (cmd >= MIG_PAGE_REQ && cmd <= MIG_POSTCOPY_DONE)
			continue;
		mig_hdr_encode(b, (uint16_t)cmd, 0, 0);
		assert_int_equal(mig_hdr_decode_ver(b, 3, &h), -EPROTO);
	}
	mig_hdr_encode(b, MIG_ROUND_END, 0, MIG_ROUND_END_LEN);
	assert_int_equal(mig_hdr_decode_ver(b, 3, &h), 0);
	quiet_end();
}

/* Version 3 only when both offer post-copy; otherwise exactly the v2 protocol. */
static void test_hello_agree_postcopy(void **unused)
{
	const uint64_t Z = MIG_FEAT_ZSTD, P = MIG_FEAT_POSTCOPY;
	struct mig_hello v3p = { 1, 3, Z | P }, v3 = { 1, 3, Z }, v2 = { 1, 2, Z | P },
			 only3 = { 3, 3, Z }, v3p_b = { 1, 3, P };
	uint64_t f;
	uint32_t v;

	assert_int_equal(mig_hello_agree(&v3p, &v3p_b, &v, &f), 0);
	assert_int_equal(v, 3);
	assert_int_equal(f, P);
	assert_int_equal(mig_hello_agree(&v3p_b, &v3p, &v, &f), 0);	/* symmetric */
	assert_int_equal(v, 3);
	assert_int_equal(f, P);
	/* one side without post-copy: version 2, the feature dropped */
	assert_int_equal(mig_hello_agree(&v3p, &v3, &v, &f), 0);
	assert_int_equal(v, 2);
	assert_int_equal(f, Z);
	assert_int_equal(mig_hello_agree(&v3, &v3p, &v, &f), 0);
	assert_int_equal(v, 2);
	/* a v2 peer (even one that sets the bit): 2, no post-copy */
	assert_int_equal(mig_hello_agree(&v3p, &v2, &v, &f), 0);
	assert_int_equal(v, 2);
	assert_int_equal(f, Z);
	assert_int_equal(mig_hello_agree(&v2, &v3p, &v, &f), 0);
	assert_int_equal(v, 2);
	assert_int_equal(f, Z);
	quiet_begin();
	/* a peer that speaks only 3 but we have no post-copy: nothing in common */
	assert_int_equal(mig_hello_agree(&v3, &only3, &v, &f), -EPROTONOSUPPORT);
	quiet_end();
}

static void test_sequence_postcopy(void **unused)
{
	static const uint16_t good_dst[] = { MIG_HELLO, MIG_CONFIG, MIG_RAM_ZERO, MIG_RAM,
					     MIG_ROUND_END, MIG_POSTCOPY_START, MIG_STATE,
					     MIG_COMPLETE, MIG_RAM, MIG_PAGE_URGENT, MIG_RAM_ZERO,
					     MIG_PAGE_URGENT };
	struct mig_seq s;
	size_t i;

	mig_seq_init(&s, MIG_ROLE_DEST);
	for (i = 0; i < sizeof(good_dst) / sizeof(good_dst[0]); i++)
		assert_int_equal(mig_seq_accept(&s, good_dst[i], 0), 0);
	assert_int_equal(s.phase, MIG_PH_POSTCOPY);
	quiet_begin();
	assert_int_equal(mig_seq_accept(&s, MIG_STATE, 0), -EPROTO);
	assert_int_equal(mig_seq_accept(&s, MIG_POSTCOPY_START, 0), -EPROTO);
	assert_int_equal(mig_seq_accept(&s, MIG_ROUND_END, 0), -EPROTO);
	mig_seq_init(&s, MIG_ROLE_DEST);
	assert_int_equal(mig_seq_accept(&s, MIG_HELLO, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_POSTCOPY_START, 0), -EPROTO);	/* before CONFIG */
	assert_int_equal(mig_seq_accept(&s, MIG_CONFIG, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_POSTCOPY_START, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_RAM, 0), -EPROTO);	/* STATE must follow */
	assert_int_equal(mig_seq_accept(&s, MIG_PAGE_URGENT, 0), -EPROTO);
	assert_int_equal(mig_seq_accept(&s, MIG_STATE, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_PAGE_URGENT, 0), -EPROTO);	/* before COMPLETE */
	assert_int_equal(mig_seq_accept(&s, MIG_COMPLETE, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_PAGE_URGENT, 0), 0);
	/* a pre-copy destination never accepts page data after COMPLETE */
	mig_seq_init(&s, MIG_ROLE_DEST);
	assert_int_equal(mig_seq_accept(&s, MIG_HELLO, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_CONFIG, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_PAGE_URGENT, 0), -EPROTO);
	assert_int_equal(mig_seq_accept(&s, MIG_STATE, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_COMPLETE, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_RAM, 0), -EPROTO);

	/* source: page requests before and after the ACK, DONE only after it, once */
	mig_seq_init(&s, MIG_ROLE_SOURCE);
	assert_int_equal(mig_seq_accept(&s, MIG_HELLO, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_CONFIG), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_PAGE_REQ, 0), -EPROTO);	/* not switched yet */
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_ROUND_END), 0);
	mig_seq_postcopy(&s);
	assert_int_equal(mig_seq_accept(&s, MIG_PAGE_REQ, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_POSTCOPY_DONE, 0), -EPROTO);	/* before ACK */
	mig_seq_init(&s, MIG_ROLE_SOURCE);
	assert_int_equal(mig_seq_accept(&s, MIG_HELLO, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_CONFIG), 0);
	mig_seq_postcopy(&s);
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_COMPLETE), -EPROTO);
	mig_seq_init(&s, MIG_ROLE_SOURCE);
	assert_int_equal(mig_seq_accept(&s, MIG_HELLO, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_CONFIG), 0);
	mig_seq_postcopy(&s);
	assert_int_equal(mig_seq_accept(&s, MIG_PAGE_REQ, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_POSTCOPY_START), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_POSTCOPY_START), -EPROTO);	/* twice */
	mig_seq_init(&s, MIG_ROLE_SOURCE);
	assert_int_equal(mig_seq_accept(&s, MIG_HELLO, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_CONFIG), 0);
	mig_seq_postcopy(&s);
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_POSTCOPY_START), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_PAGE_REQ, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_POSTCOPY_DONE, 0), 0);
	assert_int_equal(s.phase, MIG_PH_DONE);
	assert_int_equal(mig_seq_accept(&s, MIG_PAGE_REQ, 0), -EPROTO);
	quiet_end();
}

static void test_sequence(void **unused)
{
	static const uint16_t good_dst[] = { MIG_HELLO, MIG_CONFIG, MIG_RAM_ZERO, MIG_RAM, MIG_RAM,
					     MIG_ROUND_END, MIG_RAM, MIG_ROUND_END, MIG_STATE,
					     MIG_COMPLETE };
	struct mig_seq s;
	size_t i;

	mig_seq_init(&s, MIG_ROLE_DEST);
	for (i = 0; i < sizeof(good_dst) / sizeof(good_dst[0]); i++)
		assert_int_equal(mig_seq_accept(&s, good_dst[i], 0), 0);
	assert_int_equal(s.phase, MIG_PH_DONE);

	quiet_begin();
	assert_int_equal(mig_seq_accept(&s, MIG_RAM, 0), -EPROTO);	/* after the end */
	mig_seq_init(&s, MIG_ROLE_DEST);
	assert_int_equal(mig_seq_accept(&s, MIG_RAM, 0), -EPROTO);	/* before HELLO */
	assert_int_equal(mig_seq_accept(&s, MIG_HELLO, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_RAM, 0), -EPROTO);	/* before CONFIG */
	assert_int_equal(mig_seq_accept(&s, MIG_CONFIG, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_COMPLETE, 0), -EPROTO);	/* before STATE */
	assert_int_equal(mig_seq_accept(&s, MIG_STATE, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_STATE, 0), -EPROTO);	/* twice */
	assert_int_equal(mig_seq_accept(&s, MIG_RAM, 0), -EPROTO);	/* RAM after STATE */
	assert_int_equal(mig_seq_accept(&s, MIG_ABORT, 0), 0);
	assert_int_equal(s.phase, MIG_PH_ABORTED);
	assert_int_equal(mig_seq_accept(&s, MIG_COMPLETE, 0), -EPROTO);

	mig_seq_init(&s, MIG_ROLE_SOURCE);
	assert_int_equal(mig_seq_accept(&s, MIG_HELLO, 0), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_COMPLETE), -EPROTO);
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_CONFIG), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_RAM, 0), -EPROTO);	/* source never gets RAM */
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_ROUND_END), 0);	/* v2: round applied */
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_ROUND_END), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_STATE), -EPROTO);
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_COMPLETE), 0);
	assert_int_equal(mig_seq_accept(&s, MIG_ACK, MIG_ROUND_END), -EPROTO);	/* after the end */
	assert_int_equal(s.phase, MIG_PH_DONE);
	quiet_end();
}

static const struct state_ops vcpu_ops = { .name = "vcpu", .version = 1, .min_version = 1,
	.save = (int (*)(void *, struct state_writer *))1, .load = (int (*)(void *, struct state_reader *, uint16_t))1 };

static void test_config_from_registry(void **unused)
{
	struct state_registry reg;
	struct mig_config c;

	state_registry_init(&reg);
	assert_int_equal(state_register(&reg, "0", &vcpu_ops, NULL), 0);
	assert_int_equal(state_register(&reg, "1", &vcpu_ops, NULL), 0);
	mig_config_init(&c);
	assert_int_equal(mig_config_add_registry(&c, &reg), 0);
	assert_int_equal(c.nr_devices, 2);
	assert_string_equal(c.devices[1], "vcpu[1]");
	mig_config_free(&c);
	state_registry_destroy(&reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_layout),
		cmocka_unit_test(test_hdr_bounds_every_cmd),
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_config_round_trip),
		cmocka_unit_test(test_config_refusals),
		cmocka_unit_test(test_config_malformed),
		cmocka_unit_test(test_small_messages),
		cmocka_unit_test(test_sequence),
		cmocka_unit_test(test_hdr_postcopy_v3_only),
		cmocka_unit_test(test_hello_agree_postcopy),
		cmocka_unit_test(test_sequence_postcopy),
		cmocka_unit_test(test_config_from_registry),
	};
	return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
