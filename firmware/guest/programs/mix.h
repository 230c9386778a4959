/* SPDX-License-Identifier: MIT */
/*
 * The 64-bit finalizer of MurmurHash3 (fmix64): the test programs derive every word they
 * write from (generation, position) with it, so a verifier can recompute what must be there
 * without keeping a copy. Shared by memverify.c and diskverify.c.
 */
#ifndef GUEST_PROGRAMS_MIX_H
#define GUEST_PROGRAMS_MIX_H

#include <stdint.h>

static inline uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

#endif
