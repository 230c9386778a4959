// SPDX-License-Identifier: MIT
/*
 * Post-copy payload codecs (migrate/postcopy_proto.c): round trips, and every malformed
 * payload refused — wrong lengths, counts, reserved words, unaligned gpas, bits past the
 * end of RAM, a pending count that does not match the bitmap, every truncation.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "migrate/postcopy_proto.h"

static void test_req_roundtrip(void **state)
{
	uint64_t gpa[MIG_PC_MAX_REQ], out[MIG_PC_MAX_REQ];
	uint8_t buf[MIG_PC_REQ_MAX_LEN];
	uint32_t n = 0;
	size_t len;

	for (unsigned int i = 0; i < MIG_PC_MAX_REQ; i++)
		gpa[i] = 0x100000000ull + 4096ull * i * 3;
	len = mig_pc_req_encode(buf, gpa, MIG_PC_MAX_REQ);
	assert_int_equal(len, MIG_PC_REQ_MAX_LEN);
	assert_int_equal(mig_pc_req_decode(buf, len, out, &n), 0);
	assert_int_equal(n, MIG_PC_MAX_REQ);
	assert_memory_equal(out, gpa, sizeof(gpa));
	len = mig_pc_req_encode(buf, gpa + 5, 1);
	assert_int_equal(len, 16);
	assert_int_equal(mig_pc_req_decode(buf, len, out, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0], gpa[5]);
}

static void test_req_refused(void **state)
{
	uint64_t gpa[MIG_PC_MAX_REQ + 1] = { 0 }, out[MIG_PC_MAX_REQ];
	uint8_t buf[MIG_PC_REQ_MAX_LEN + 8];
	uint32_t n;
	size_t len;

	assert_int_equal(mig_pc_req_encode(buf, gpa, 0), 0);
	assert_int_equal(mig_pc_req_encode(buf, gpa, MIG_PC_MAX_REQ + 1), 0);
	gpa[1] = 4097;
	assert_int_equal(mig_pc_req_encode(buf, gpa, 2), 0);
	gpa[1] = 8192;
	len = mig_pc_req_encode(buf, gpa, 2);
	assert_int_equal(len, 24);
	for (size_t l = 0; l < len; l++)	/* every truncation */
		assert_int_equal(mig_pc_req_decode(buf, l, out, &n), -EBADMSG);
	assert_int_equal(mig_pc_req_decode(buf, len + 8, out, &n), -EBADMSG);	/* trailing */
	buf[4] = 1;					/* reserved word */
	assert_int_equal(mig_pc_req_decode(buf, len, out, &n), -EBADMSG);
	buf[4] = 0;
	buf[16] |= 0x10;				/* second gpa unaligned */
	assert_int_equal(mig_pc_req_decode(buf, len, out, &n), -EBADMSG);
	buf[16] &= (uint8_t)~0x10;
	assert_int_equal(mig_pc_req_decode(buf, len, out, &n), 0);
	/* A count over the limit with a matching length: refused before the loop. */
	memset(buf, 0, sizeof(buf));
	buf[0] = MIG_PC_MAX_REQ + 1;
	assert_int_equal(mig_pc_req_decode(buf, MIG_PC_REQ_MAX_LEN + 8, out, &n), -EBADMSG);
	buf[0] = 0;					/* n = 0 */
	assert_int_equal(mig_pc_req_decode(buf, 8, out, &n), -EBADMSG);
}

static void test_start_roundtrip(void **state)
{
	const uint64_t sizes[] = { 0, 1, 63, 64, 65, 200, 2048 };

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		uint64_t pages = sizes[s], words = (pages + 63) / 64, pending, want = 0;
		uint64_t bm[40], got[40];
		uint8_t buf[16 + 40 * 8];

		for (uint64_t i = 0; i < words; i++)
			bm[i] = 0x9e3779b97f4a7c15ull * (i + 1);
		/* Bits past the end are not put on the wire. */
		for (uint64_t p = 0; p < pages; p++)
			want += (bm[p / 64] >> (p % 64)) & 1;
		assert_int_equal(mig_pc_start_len(pages), 16 + words * 8);
		assert_int_equal(mig_pc_start_encode(buf, pages, bm), want);
		assert_int_equal(mig_pc_start_decode(buf, mig_pc_start_len(pages), pages, got,
						     &pending), 0);
		assert_int_equal(pending, want);
		for (uint64_t p = 0; p < pages; p++)
			assert_int_equal((got[p / 64] >> (p % 64)) & 1, (bm[p / 64] >> (p % 64)) & 1);
	}
}

static void test_start_refused(void **state)
{
	uint64_t bm[2] = { 0xffull, 0x3ull }, got[2], pending;
	uint8_t buf[16 + 16 + 8];
	uint64_t pages = 70, len = mig_pc_start_len(pages);

	assert_int_equal(mig_pc_start_encode(buf, pages, bm), 10);
	assert_int_equal(mig_pc_start_decode(buf, len, pages, got, &pending), 0);
	for (uint64_t l = 0; l < len; l++)
		assert_int_equal(mig_pc_start_decode(buf, l, pages, got, &pending), -EBADMSG);
	assert_int_equal(mig_pc_start_decode(buf, len + 8, pages, got, &pending), -EBADMSG);
	/* Another VM size than ours. */
	assert_int_equal(mig_pc_start_decode(buf, len, 71, got, &pending), -EBADMSG);
	/* A bit for page 70 (past the end). */
	buf[16 + 8] |= 0x40;
	buf[8] = 11;
	assert_int_equal(mig_pc_start_decode(buf, len, pages, got, &pending), -EBADMSG);
	buf[16 + 8] &= (uint8_t)~0x40;
	/* pending does not match the bitmap. */
	assert_int_equal(mig_pc_start_decode(buf, len, pages, got, &pending), -EBADMSG);
	buf[8] = 10;
	assert_int_equal(mig_pc_start_decode(buf, len, pages, got, &pending), 0);
	assert_int_equal(pending, 10);
}

static void test_done(void **state)
{
	struct mig_pc_done in = { 12345, 0x1122334455ull, 77, 250, 0xfffffff0u }, out;
	uint8_t buf[MIG_PC_DONE_LEN];

	mig_pc_done_encode(buf, &in);
	assert_int_equal(mig_pc_done_decode(buf, sizeof(buf), &out), 0);
	assert_int_equal(out.on_demand, 12345);
	assert_int_equal(out.streamed, 0x1122334455ull);
	assert_int_equal(out.faults, 77);
	assert_int_equal(out.lat_median_us, 250);
	assert_int_equal(out.lat_max_us, 0xfffffff0u);
	/* little-endian on the wire */
	assert_int_equal(buf[0], 0x39);
	assert_int_equal(buf[1], 0x30);
	assert_int_equal(buf[28], 0xf0);
	assert_int_equal(mig_pc_done_decode(buf, 16, &out), -EBADMSG);	/* the old 16-byte draft */
	assert_int_equal(mig_pc_done_decode(buf, MIG_PC_DONE_LEN - 1, &out), -EBADMSG);
	assert_int_equal(mig_pc_done_decode(buf, MIG_PC_DONE_LEN + 1, &out), -EBADMSG);
	assert_int_equal(mig_pc_done_decode(buf, 0, &out), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_req_roundtrip),
		cmocka_unit_test(test_req_refused),
		cmocka_unit_test(test_start_roundtrip),
		cmocka_unit_test(test_start_refused),
		cmocka_unit_test(test_done),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
