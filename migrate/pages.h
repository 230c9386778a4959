/* SPDX-License-Identifier: MIT */
/*
 * RAM page batches for migration: the source turns a bitmap of pages to send into MIG_RAM
 * (raw or zstd) and MIG_RAM_ZERO messages; the destination checks and applies them. No socket
 * code: the sender (precopy loop + transport) asks for the next messages and sends them, the
 * receiver hands payloads in after mig_hdr_decode() accepted the header.
 *
 * Page numbering. Bitmaps here are indexed like guest_mem's own dirty bitmap: bit n = the
 * page at memfd offset n × 4 KiB (pfn n). Low RAM pfns equal gpa/4096; RAM above 4 GiB
 * continues right after low RAM (vmm/memory.h). mig_pfn_to_gpa() converts.
 *
 * Wire (see docs/migration-protocol.md):
 *   RAM:      u32 npages, u32 flags (MIG_RAM_F_ZSTD), u64 gpa[npages], data
 *             data = npages × 4096 raw bytes, or one zstd frame (content size recorded) that
 *             decompresses to exactly that. A batch whose frame would not be smaller than the
 *             raw data goes raw.
 *   RAM_ZERO: u32 nentries, u32 0, u64 entry[nentries]
 *             entry = gpa | (count - 1): a run of 1..4096 zero pages starting at the
 *             page-aligned gpa (the low 12 bits of a page address are free). An idle 1 GiB
 *             guest is 64 entries, not 262144.
 *
 * Ordering: a page sent in round N must reach the receiver before the same page in round
 * N+1; one ordered stream (TCP, sends completed in order) guarantees it.
 *
 * Threading: a tx or rx is used by one thread at a time. The tx reads guest RAM while vCPUs
 * run; that is safe because the caller synced (and cleared) the dirty log before building
 * the round, so a page changed after it was read is dirty again for the next round.
 */
#ifndef MIGRATE_PAGES_H
#define MIGRATE_PAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrate/proto.h"
#include "vmm/memory.h"

#define MIG_ZERO_RUN_MAX	4096u		/* pages in one RAM_ZERO entry */
#define MIG_DEFAULT_BATCH	256u		/* pages per RAM message: 1 MiB */
#define MIG_DEFAULT_ZSTD_LEVEL	1

/* A message ready to send: 16-byte header + payload in @data[0..len). */
struct mig_buf {
	uint8_t *data;
	size_t len, cap;
};

struct mig_pages_stats {
	uint64_t pages_data;		/* pages sent in RAM messages */
	uint64_t pages_zero;		/* pages sent as RAM_ZERO runs */
	uint64_t pages_hole;		/* of those, never touched (memfd hole; not even read) */
	uint64_t msgs_ram, msgs_ram_zstd, msgs_ram_raw_fallback, msgs_zero;
	uint64_t bytes_wire;		/* headers + payloads produced / consumed */
};

struct mig_pages_tx {
	const struct guest_mem *mem;
	uint64_t npages;		/* mem->size / 4096 */
	int level;			/* zstd level; 0 = off */
	unsigned int batch;		/* pages per RAM message */
	void *cctx;			/* ZSTD_CCtx */
	uint8_t *staging;		/* batch × 4 KiB: pages copied out of the guest */
	/* memfd extents known this round (lseek SEEK_DATA/SEEK_HOLE), by memfd offset */
	uint64_t hole_from, hole_until, data_from, data_until;
	uint64_t last_pos;		/* where the previous tx_next stopped */
	struct mig_pages_stats st;
};

/*
 * @zstd_level: 0 = no compression, else a zstd level (negative = faster, 1..19 as zstd);
 * @batch_pages: 1..MIG_MAX_BATCH (0 = MIG_DEFAULT_BATCH). 0, -EINVAL, -ENOMEM.
 */
int  mig_pages_tx_init(struct mig_pages_tx *tx, const struct guest_mem *mem, int zstd_level,
		       unsigned int batch_pages);
void mig_pages_tx_destroy(struct mig_pages_tx *tx);
/* Allocate a buffer big enough for any RAM / RAM_ZERO message of this tx. */
int  mig_pages_buf_alloc_ram(const struct mig_pages_tx *tx, struct mig_buf *b);
int  mig_pages_buf_alloc_zero(struct mig_buf *b);
void mig_buf_free(struct mig_buf *b);

/*
 * Start a new round (after each dirty sync). Implied when tx_next is called with *pos == 0
 * or below where the last call stopped, which is how a round normally starts.
 */
void mig_pages_tx_round_begin(struct mig_pages_tx *tx);

/*
 * Build the next messages from the pages whose bits are set in @bitmap (tx->npages bits),
 * starting at pfn *@pos. Each page taken has its bit cleared. Stops when the RAM batch or the
 * zero list is full, or at the end of the bitmap; *@pos is where to continue.
 * @ram and @zero get complete messages (header included) or len 0 when that kind is empty.
 * Returns 1 if at least one message has content, 0 if no set bit remains from *@pos, -errno.
 */
int  mig_pages_tx_next(struct mig_pages_tx *tx, uint64_t *bitmap, uint64_t *pos,
		       struct mig_buf *ram, struct mig_buf *zero);

/* ---- destination ---- */

struct mig_pages_rx {
	struct guest_mem *mem;
	uint64_t npages;
	void *dctx;			/* ZSTD_DCtx */
	uint8_t *scratch;		/* MIG_MAX_BATCH × 4 KiB decompression target */
	uint64_t *populated;		/* pfns written with data by this rx */
	struct mig_pages_stats st;
	/*
	 * Post-copy (postcopy_dst.c) sets this: every page goes through it instead of being
	 * written through the mapping, which userfaultfd then guards (a write there would fault
	 * on the receiving thread itself). @src = npages × 4 KiB, or NULL for zero pages.
	 * 0 or -errno (the message fails with it). Called after the whole message was checked.
	 */
	int (*install)(void *opaque, uint64_t pfn, const void *src, uint64_t npages);
	void *install_opaque;
};

/*
 * @mem must be freshly created (all zero): pages never written with data need no work when
 * a RAM_ZERO names them, so an idle guest's zero pages cost the destination nothing.
 */
int  mig_pages_rx_init(struct mig_pages_rx *rx, struct guest_mem *mem);
void mig_pages_rx_destroy(struct mig_pages_rx *rx);
/*
 * Apply one RAM / RAM_ZERO payload (after the 16-byte header). Everything is checked before
 * the first guest byte changes: counts against MIG_MAX_*, flags, every gpa page-aligned and
 * inside guest RAM (a RAM_ZERO run entirely inside one region), the data length exactly
 * npages × 4096 (raw) or one complete zstd frame decoding to exactly that.
 * 0, -EBADMSG (malformed), -ERANGE (a gpa outside guest RAM), -ENOMEM.
 */
int  mig_pages_rx_ram(struct mig_pages_rx *rx, const uint8_t *payload, size_t len);
int  mig_pages_rx_zero(struct mig_pages_rx *rx, const uint8_t *payload, size_t len);

/* ---- helpers ---- */

/* true if the 4 KiB at @p are all zero. */
bool mig_page_is_zero(const void *p);
/* pfn (memfd page index) ↔ gpa. 0, or -ERANGE outside RAM. */
int  mig_pfn_to_gpa(const struct guest_mem *mem, uint64_t pfn, uint64_t *gpa);
int  mig_gpa_to_pfn(const struct guest_mem *mem, uint64_t gpa, uint64_t *pfn);

#endif
