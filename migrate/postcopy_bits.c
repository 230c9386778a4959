// SPDX-License-Identifier: MIT
/*
 * Small pure helpers of post-copy (postcopy.h): the pending-page bitmap, shared between the
 * destination's receiver (clears) and fault thread (tests) without a lock, and the median of
 * the fault-latency samples. Tested by tests/unit/test_postcopy.c.
 */
#include <stdlib.h>

#include "migrate/postcopy.h"

uint64_t mig_pc_bits_clear(uint64_t *bm, uint64_t pfn, uint64_t n)
{
	uint64_t cleared = 0;

	while (n) {
		unsigned int bit = (unsigned int)(pfn % 64);
		uint64_t k = 64 - bit < n ? 64 - bit : n;
		uint64_t mask = (k == 64 ? ~0ull : ((1ull << k) - 1)) << bit;
		uint64_t old = __atomic_fetch_and(&bm[pfn / 64], ~mask, __ATOMIC_ACQ_REL);

		cleared += (uint64_t)__builtin_popcountll(old & mask);
		pfn += k;
		n -= k;
	}
	return cleared;
}

bool mig_pc_bit_test(const uint64_t *bm, uint64_t pfn)
{
	return __atomic_load_n(&bm[pfn / 64], __ATOMIC_ACQUIRE) & (1ull << (pfn % 64));
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

uint32_t mig_pc_median(uint32_t *v, size_t n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u32);
	return n % 2 ? v[n / 2] : (uint32_t)(((uint64_t)v[n / 2 - 1] + v[n / 2]) / 2);
}
