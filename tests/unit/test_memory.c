// SPDX-License-Identifier: MIT
/* Guest RAM: the split around the MMIO gap, gpa->hva bounds checks, dirty marking. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/layout.h"
#include "vmm/memory.h"

static void test_small(void **state)
{
	struct guest_mem m;

	assert_int_equal(guest_mem_init(&m, 64 * MIB), 0);
	assert_int_equal(m.nr_regions, 1);
	assert_int_equal(m.regions[0].gpa, 0);
	assert_int_equal(m.regions[0].size, 64 * MIB);
	assert_ptr_equal(guest_mem_ptr(&m, 0, 4096), m.base);
	assert_ptr_equal(guest_mem_ptr(&m, 64 * MIB - 8, 8), (uint8_t *)m.base + 64 * MIB - 8);
	assert_null(guest_mem_ptr(&m, 64 * MIB - 8, 9));		/* runs off the end */
	assert_null(guest_mem_ptr(&m, 64 * MIB, 1));
	assert_null(guest_mem_ptr(&m, UINT64_MAX, 2));			/* wraps */
	assert_null(guest_mem_ptr(&m, 8, UINT64_MAX));
	assert_null(guest_mem_ptr(&m, MEM_32BIT_GAP_END, 1));
	guest_mem_destroy(&m);
}

static void test_split_across_gap(void **state)
{
	struct guest_mem m;
	uint64_t size = 5 * GIB, low = MEM_32BIT_GAP_START;
	uint8_t *p;

	assert_int_equal(guest_mem_init(&m, size), 0);
	assert_int_equal(m.nr_regions, 2);
	assert_int_equal(m.regions[0].size, low);
	assert_int_equal(m.regions[1].gpa, MEM_32BIT_GAP_END);
	assert_int_equal(m.regions[1].size, size - low);
	assert_int_equal(m.regions[1].fd_offset, low);
	assert_int_equal(m.regions[0].slot, 0);
	assert_int_equal(m.regions[1].slot, 1);

	/* the gap is not RAM; a range may not straddle regions */
	assert_null(guest_mem_ptr(&m, MEM_32BIT_GAP_START, 1));
	assert_null(guest_mem_ptr(&m, LAYOUT_LAPIC_BASE, 4));
	assert_null(guest_mem_ptr(&m, low - 4, 8));
	/* gpa 4 GiB is memfd offset 3 GiB */
	p = guest_mem_ptr(&m, MEM_32BIT_GAP_END, 8);
	assert_ptr_equal(p, (uint8_t *)m.base + low);
	memcpy(p, "HIGH-RAM", 8);
	assert_memory_equal((uint8_t *)m.base + low, "HIGH-RAM", 8);
	assert_non_null(guest_mem_ptr(&m, MEM_32BIT_GAP_END + (size - low) - 1, 1));
	assert_null(guest_mem_ptr(&m, MEM_32BIT_GAP_END + (size - low), 1));
	guest_mem_destroy(&m);
}

static void test_dirty(void **state)
{
	struct guest_mem m;
	uint64_t pfn;

	assert_int_equal(guest_mem_init(&m, 4 * GIB), 0);
	guest_mem_mark_dirty(&m, 0x5000, 1);
	assert_true(m.dirty_bitmap[0] & (1ull << 5));
	guest_mem_mark_dirty(&m, 0x7fff, 2);				/* spans pages 7 and 8 */
	assert_true(m.dirty_bitmap[0] & (1ull << 7));
	assert_true(m.dirty_bitmap[0] & (1ull << 8));
	assert_false(m.dirty_bitmap[0] & (1ull << 6));
	/* high RAM is tracked by memfd offset: gpa 4 GiB -> offset 3 GiB */
	guest_mem_mark_dirty(&m, MEM_32BIT_GAP_END, 4096);
	pfn = MEM_32BIT_GAP_START / 4096;
	assert_true(m.dirty_bitmap[pfn / 64] & (1ull << (pfn % 64)));
	/* outside RAM: ignored, no crash */
	guest_mem_mark_dirty(&m, MEM_32BIT_GAP_START, 4096);
	guest_mem_mark_dirty(&m, UINT64_MAX - 10, 100);
	guest_mem_destroy(&m);
}

static void test_bad_sizes(void **state)
{
	struct guest_mem m;

	assert_int_equal(guest_mem_init(&m, 1 * MIB), -EINVAL);
	assert_int_equal(guest_mem_init(&m, 64 * MIB + 100), -EINVAL);
	/* more than any test machine has: refused before the memfd is made */
	assert_int_equal(guest_mem_init(&m, 1ull << 52), -ENOMEM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small),
		cmocka_unit_test(test_split_across_gap),
		cmocka_unit_test(test_dirty),
		cmocka_unit_test(test_bad_sizes),
	};
	return cmocka_run_group_tests_name("memory", tests, NULL, NULL);
}
