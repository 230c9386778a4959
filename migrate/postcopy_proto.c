// SPDX-License-Identifier: MIT
/*
 * Post-copy payload codecs (layouts in postcopy_proto.h). Every decoder treats its input as
 * hostile: lengths are checked against the count before any read.
 */
#define LOG_TAG "mig-pc-proto"
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "migrate/postcopy_proto.h"

#define PC_PAGE 4096u

static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }

/* Mask of the valid bits in the last bitmap word (all ones when ram_pages % 64 == 0). */
static uint64_t last_word_mask(uint64_t ram_pages)
{
	unsigned int r = (unsigned int)(ram_pages % 64);

	return r ? (1ull << r) - 1 : ~0ull;
}

size_t mig_pc_req_encode(uint8_t *out, const uint64_t *gpa, uint32_t n)
{
	if (!n || n > MIG_PC_MAX_REQ)
		return 0;
	for (uint32_t i = 0; i < n; i++)
		if (gpa[i] & (PC_PAGE - 1))
			return 0;
	put32(out, n);
	put32(out + 4, 0);
	for (uint32_t i = 0; i < n; i++)
		put64(out + MIG_PC_REQ_HDR + 8 * i, gpa[i]);
	return MIG_PC_REQ_HDR + 8 * (size_t)n;
}

int mig_pc_req_decode(const uint8_t *in, size_t len, uint64_t *gpa, uint32_t *n)
{
	uint32_t cnt;

	if (len < MIG_PC_REQ_HDR)
		return -EBADMSG;
	cnt = get32(in);
	if (!cnt || cnt > MIG_PC_MAX_REQ || get32(in + 4) ||
	    len != MIG_PC_REQ_HDR + 8 * (size_t)cnt)
		return -EBADMSG;
	for (uint32_t i = 0; i < cnt; i++) {
		uint64_t g = get64(in + MIG_PC_REQ_HDR + 8 * i);

		if (g & (PC_PAGE - 1))
			return -EBADMSG;
		gpa[i] = g;
	}
	*n = cnt;
	return 0;
}

uint64_t mig_pc_start_encode(uint8_t *out, uint64_t ram_pages, const uint64_t *bitmap)
{
	uint64_t words = (ram_pages + 63) / 64, pending = 0;

	for (uint64_t i = 0; i < words; i++) {
		uint64_t w = bitmap[i];

		if (i == words - 1)
			w &= last_word_mask(ram_pages);
		pending += (uint64_t)__builtin_popcountll(w);
		put64(out + MIG_PC_START_HDR + 8 * i, w);
	}
	put64(out, ram_pages);
	put64(out + 8, pending);
	return pending;
}

int mig_pc_start_decode(const uint8_t *in, size_t len, uint64_t ram_pages, uint64_t *bitmap,
			uint64_t *pending)
{
	uint64_t words = (ram_pages + 63) / 64, count = 0;

	if (len < MIG_PC_START_HDR || get64(in) != ram_pages ||
	    (uint64_t)len != mig_pc_start_len(ram_pages))
		return -EBADMSG;
	for (uint64_t i = 0; i < words; i++) {
		uint64_t w = get64(in + MIG_PC_START_HDR + 8 * i);

		if (i == words - 1 && (w & ~last_word_mask(ram_pages)))
			return -EBADMSG;
		count += (uint64_t)__builtin_popcountll(w);
		bitmap[i] = w;
	}
	if (count != get64(in + 8))
		return -EBADMSG;
	*pending = count;
	return 0;
}

void mig_pc_done_encode(uint8_t out[MIG_PC_DONE_LEN], const struct mig_pc_done *d)
{
	put64(out, d->on_demand);
	put64(out + 8, d->streamed);
	put64(out + 16, d->faults);
	put32(out + 24, d->lat_median_us);
	put32(out + 28, d->lat_max_us);
}

/* Figures only (nothing is allocated or indexed by them): any values are accepted. */
int mig_pc_done_decode(const uint8_t *in, size_t len, struct mig_pc_done *d)
{
	if (len != MIG_PC_DONE_LEN)
		return -EBADMSG;
	d->on_demand = get64(in);
	d->streamed = get64(in + 8);
	d->faults = get64(in + 16);
	d->lat_median_us = get32(in + 24);
	d->lat_max_us = get32(in + 28);
	return 0;
}
