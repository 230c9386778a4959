/* SPDX-License-Identifier: MIT */
/*
 * Payload codecs of the post-copy commands (migrate/proto.h numbers 16–19; protocol
 * version 3, docs/migration-protocol.md "Post-copy"). Pure functions, hostile input.
 * mig_hdr_decode_ver() accepts commands 16–19 only in version 3 (both HELLOs offered
 * MIG_FEAT_POSTCOPY).
 *
 *   PAGE_REQ       u32 n, u32 0, u64 gpa[n]          1 <= n <= MIG_PC_MAX_REQ, page-aligned
 *   POSTCOPY_START u64 ram_pages, u64 pending, u64 bitmap[ceil(ram_pages / 64)]
 *                  (bit set = page not sent yet; pending = popcount; no bit past ram_pages)
 *   POSTCOPY_DONE  u64 pages on demand, u64 pages streamed, u64 faults requested,
 *                  u32 fault latency median µs, u32 fault latency max µs
 *   PAGE_URGENT    the RAM layout (migrate/pages.h), raw, at most MIG_PC_MAX_REQ pages
 */
#ifndef MIGRATE_POSTCOPY_PROTO_H
#define MIGRATE_POSTCOPY_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define MIG_PC_MAX_REQ		64u
#define MIG_PC_REQ_HDR		8u
#define MIG_PC_REQ_MAX_LEN	(MIG_PC_REQ_HDR + 8u * MIG_PC_MAX_REQ)
#define MIG_PC_START_HDR	16u
#define MIG_PC_DONE_LEN		32u

/* Bytes of a POSTCOPY_START payload for @ram_pages pages. */
static inline uint64_t mig_pc_start_len(uint64_t ram_pages)
{
	return MIG_PC_START_HDR + (ram_pages + 63) / 64 * 8;
}

/* Encode @n gpas into @out (>= MIG_PC_REQ_HDR + 8n); returns the length, or 0 if n is 0,
 * over MIG_PC_MAX_REQ, or a gpa is not page-aligned. */
size_t mig_pc_req_encode(uint8_t *out, const uint64_t *gpa, uint32_t n);
/* Decode into @gpa (room for MIG_PC_MAX_REQ); *n set. -EBADMSG: length does not match n,
 * n == 0 or too big, nonzero reserved word, unaligned gpa. Whether each gpa is inside RAM
 * is the caller's check (guest_mem_ptr). */
int mig_pc_req_decode(const uint8_t *in, size_t len, uint64_t *gpa, uint32_t *n);

/* Encode START: @bitmap has ceil(ram_pages/64) words. @out has mig_pc_start_len() bytes.
 * Bits past ram_pages are cleared on the wire. Returns the pending count it wrote. */
uint64_t mig_pc_start_encode(uint8_t *out, uint64_t ram_pages, const uint64_t *bitmap);
/*
 * Decode START for a VM of @ram_pages pages into @bitmap (ceil(ram_pages/64) words) and
 * *pending. -EBADMSG: ram_pages differs from ours, wrong length, a bit past ram_pages, or
 * pending != popcount.
 */
int mig_pc_start_decode(const uint8_t *in, size_t len, uint64_t ram_pages, uint64_t *bitmap,
			uint64_t *pending);

/* What the destination reports when every page is in (its own figures, for the source's status). */
struct mig_pc_done {
	uint64_t on_demand;		/* pages installed from PAGE_URGENT answers */
	uint64_t streamed;		/* pages installed from the background stream */
	uint64_t faults;		/* faults that became a PAGE_REQ */
	uint32_t lat_median_us, lat_max_us;	/* fault read → page installed */
};
void mig_pc_done_encode(uint8_t out[MIG_PC_DONE_LEN], const struct mig_pc_done *d);
int  mig_pc_done_decode(const uint8_t *in, size_t len, struct mig_pc_done *d);

#endif
