// SPDX-License-Identifier: MIT
/*
 * RAM page batches (contract and wire layout in pages.h, protocol in
 * docs/migration-protocol.md). Source: walk a bitmap of pages, classify each as never
 * touched (a memfd hole: not even read, so migrating an idle guest does not make the source
 * allocate its RAM), zero, or data; zero pages become runs in RAM_ZERO, data pages are copied
 * out and sent as one zstd frame per batch, or raw when the frame would not be smaller.
 * Destination: validate a whole message before writing one guest byte, then apply it.
 */
#define LOG_TAG "mig-pages"
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "migrate/pages.h"
#include "vmm/lib/log.h"

#define PAGE_SIZE	MIG_PAGE_SIZE
#define PAGE_MASK	((uint64_t)PAGE_SIZE - 1)

static void put_le32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put_le64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint32_t get_le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get_le64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

/* ---------------------------------------------------------------- helpers */

bool mig_page_is_zero(const void *p)
{
	const uint64_t *w = __builtin_assume_aligned(p, 8);
	unsigned int i;

	/*
	 * OR eight words at a time and leave at the first non-zero cache line: data pages
	 * usually differ from zero in the first line, and a zero page costs one pass at memory
	 * speed (measured in docs/migration-protocol.md).
	 */
	for (i = 0; i < PAGE_SIZE / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
			return false;
	return true;
}

int mig_pfn_to_gpa(const struct guest_mem *mem, uint64_t pfn, uint64_t *gpa)
{
	uint64_t off = pfn * PAGE_SIZE;
	unsigned int i;

	if (pfn >= mem->size / PAGE_SIZE)
		return -ERANGE;
	for (i = 0; i < mem->nr_regions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];

		if (off >= r->fd_offset && off - r->fd_offset < r->size) {
			*gpa = r->gpa + (off - r->fd_offset);
			return 0;
		}
	}
	return -ERANGE;
}

int mig_gpa_to_pfn(const struct guest_mem *mem, uint64_t gpa, uint64_t *pfn)
{
	unsigned int i;

	for (i = 0; i < mem->nr_regions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size) {
			*pfn = (r->fd_offset + (gpa - r->gpa)) / PAGE_SIZE;
			return 0;
		}
	}
	return -ERANGE;
}

void mig_buf_free(struct mig_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static int buf_alloc(struct mig_buf *b, size_t cap)
{
	/* Page-aligned so the data area of a raw batch is 8-byte aligned as well. */
	if (posix_memalign((void **)&b->data, PAGE_SIZE, cap))
		return -ENOMEM;
	b->cap = cap;
	b->len = 0;
	return 0;
}

/* ---------------------------------------------------------------- source */

int mig_pages_tx_init(struct mig_pages_tx *tx, const struct guest_mem *mem, int zstd_level,
		      unsigned int batch_pages)
{
	memset(tx, 0, sizeof(*tx));
	if (!batch_pages)
		batch_pages = MIG_DEFAULT_BATCH;
	if (batch_pages > MIG_MAX_BATCH ||
	    (zstd_level && (zstd_level < ZSTD_minCLevel() || zstd_level > ZSTD_maxCLevel()))) {
		log_err("batch of %u pages (max %u) / zstd level %d (%d..%d, 0 = off): out of range",
			batch_pages, MIG_MAX_BATCH, zstd_level, ZSTD_minCLevel(), ZSTD_maxCLevel());
		return -EINVAL;
	}
	tx->mem = mem;
	tx->npages = mem->size / PAGE_SIZE;
	tx->level = zstd_level;
	tx->batch = batch_pages;
	if (zstd_level) {
		tx->cctx = ZSTD_createCCtx();
		if (posix_memalign((void **)&tx->staging, PAGE_SIZE, (size_t)batch_pages * PAGE_SIZE))
			tx->staging = NULL;
		if (!tx->cctx || !tx->staging) {
			mig_pages_tx_destroy(tx);
			return -ENOMEM;
		}
	}
	return 0;
}

void mig_pages_tx_destroy(struct mig_pages_tx *tx)
{
	ZSTD_freeCCtx(tx->cctx);
	free(tx->staging);
	tx->cctx = NULL;
	tx->staging = NULL;
}

int mig_pages_buf_alloc_ram(const struct mig_pages_tx *tx, struct mig_buf *b)
{
	return buf_alloc(b, MIG_HDR_LEN + MIG_RAM_HDR_LEN + (size_t)tx->batch * (8 + PAGE_SIZE));
}

int mig_pages_buf_alloc_zero(struct mig_buf *b)
{
	return buf_alloc(b, MIG_HDR_LEN + MIG_RAM_ZERO_MAX_LEN);
}

/*
 * Is the page at memfd offset @off a hole (never written, reads as zero)? The answer is
 * cached per extent for the rest of the round: the cache is filled after the round's dirty
 * sync, so a page that stops being a hole after we looked was written after that sync and is
 * dirty again in the next round. That is also why the cache must be dropped when a round
 * starts (mig_pages_tx_round_begin, or *pos == 0): an answer from the previous round could
 * predate a write whose dirty bit this round consumed. (SEEK_HOLE walks the whole data
 * extent, so asking once per call instead made a fully written 256 MiB guest 5x slower.)
 */
static bool page_in_hole(struct mig_pages_tx *tx, uint64_t off)
{
	int fd = tx->mem->memfd;
	off_t d, h;

	if (off >= tx->hole_from && off < tx->hole_until)
		return true;
	if (off >= tx->data_from && off < tx->data_until)
		return false;
	if (fd < 0)
		return false;
	d = lseek(fd, (off_t)off, SEEK_DATA);
	if (d < 0) {
		if (errno == ENXIO) {		/* no data from here to the end */
			tx->hole_from = off;
			tx->hole_until = tx->mem->size;
			return true;
		}
		return false;			/* no SEEK_DATA support: read the page */
	}
	if ((uint64_t)d > off) {
		tx->hole_from = off;
		tx->hole_until = (uint64_t)d;
		return true;
	}
	h = lseek(fd, (off_t)off, SEEK_HOLE);
	tx->data_from = off;
	tx->data_until = h > (off_t)off ? (uint64_t)h : off + PAGE_SIZE;
	return false;
}

void mig_pages_tx_round_begin(struct mig_pages_tx *tx)
{
	tx->hole_from = tx->hole_until = tx->data_from = tx->data_until = 0;
	tx->last_pos = 0;
}

/* Next set bit at or after @p, or @n. */
static uint64_t bitmap_next(const uint64_t *bm, uint64_t n, uint64_t p)
{
	while (p < n) {
		uint64_t w = bm[p / 64] >> (p % 64);

		if (w)
			return p + (uint64_t)__builtin_ctzll(w) < n ? p + (uint64_t)__builtin_ctzll(w) : n;
		p = (p / 64 + 1) * 64;
	}
	return n;
}

static void ram_finish(struct mig_pages_tx *tx, struct mig_buf *ram, unsigned int n,
		       const uint64_t *gpas)
{
	uint8_t *pl = ram->data + MIG_HDR_LEN;
	uint8_t *data = pl + MIG_RAM_HDR_LEN + 8 * (size_t)n;
	size_t raw = (size_t)n * PAGE_SIZE, dlen = raw;
	uint32_t flags = 0;
	unsigned int i;

	for (i = 0; i < n; i++)
		put_le64(pl + MIG_RAM_HDR_LEN + 8 * i, gpas[i]);
	if (tx->level) {
		/*
		 * Give zstd one byte less than the raw size: if the frame does not fit, it is not
		 * worth sending, and the batch goes raw with no second buffer.
		 */
		size_t z = ZSTD_compressCCtx(tx->cctx, data, raw - 1, tx->staging, raw, tx->level);

		if (!ZSTD_isError(z)) {
			flags = MIG_RAM_F_ZSTD;
			dlen = z;
			tx->st.msgs_ram_zstd++;
		} else {
			memcpy(data, tx->staging, raw);
			tx->st.msgs_ram_raw_fallback++;
		}
	} else if (n < tx->batch) {
		/* Pages were copied where a full batch's data starts; slide them down. */
		memmove(data, pl + MIG_RAM_HDR_LEN + 8 * (size_t)tx->batch, raw);
	}
	put_le32(pl, n);
	put_le32(pl + 4, flags);
	ram->len = MIG_HDR_LEN + MIG_RAM_HDR_LEN + 8 * (size_t)n + dlen;
	mig_hdr_encode(ram->data, MIG_RAM, 0, ram->len - MIG_HDR_LEN);
	tx->st.msgs_ram++;
	tx->st.pages_data += n;
	tx->st.bytes_wire += ram->len;
}

int mig_pages_tx_next(struct mig_pages_tx *tx, uint64_t *bitmap, uint64_t *pos,
		      struct mig_buf *ram, struct mig_buf *zero)
{
	uint64_t gpas[MIG_MAX_BATCH], run_gpa = 0, p = *pos, gpa;
	uint8_t *zl = zero->data + MIG_HDR_LEN + MIG_RAM_HDR_LEN;
	uint8_t *direct = ram->data + MIG_HDR_LEN + MIG_RAM_HDR_LEN + 8 * (size_t)tx->batch;
	unsigned int n = 0, nz = 0, run = 0;
	int ret;

	ram->len = 0;
	zero->len = 0;
	if (ram->cap < MIG_HDR_LEN + MIG_RAM_HDR_LEN + (size_t)tx->batch * (8 + PAGE_SIZE) ||
	    zero->cap < MIG_HDR_LEN + MIG_RAM_ZERO_MAX_LEN)
		return -EINVAL;
	if (p == 0 || p < tx->last_pos)
		mig_pages_tx_round_begin(tx);

	for (;;) {
		const uint8_t *hva;
		bool hole;

		p = bitmap_next(bitmap, tx->npages, p);
		if (p >= tx->npages || n == tx->batch)
			break;
		ret = mig_pfn_to_gpa(tx->mem, p, &gpa);
		BUG_ON(ret < 0);	/* p < npages: every pfn maps to RAM */
		hva = (const uint8_t *)tx->mem->base + p * PAGE_SIZE;
		hole = page_in_hole(tx, p * PAGE_SIZE);
		if (hole || mig_page_is_zero(hva)) {
			if (run && run < MIG_ZERO_RUN_MAX && run_gpa + (uint64_t)run * PAGE_SIZE == gpa) {
				run++;
			} else {
				if (run)
					put_le64(zl + 8 * (nz - 1), run_gpa | (run - 1));
				if (nz == MIG_MAX_ZERO_BATCH)
					break;		/* list full; this page goes next call */
				nz++;
				run_gpa = gpa;
				run = 1;
			}
			tx->st.pages_zero++;
			tx->st.pages_hole += hole;
		} else {
			memcpy(tx->level ? tx->staging + (size_t)n * PAGE_SIZE :
			       direct + (size_t)n * PAGE_SIZE, hva, PAGE_SIZE);
			gpas[n++] = gpa;
		}
		bitmap[p / 64] &= ~(1ull << (p % 64));
		p++;
	}
	*pos = p;
	tx->last_pos = p;

	if (run)
		put_le64(zl + 8 * (nz - 1), run_gpa | (run - 1));
	if (nz) {
		put_le32(zero->data + MIG_HDR_LEN, nz);
		put_le32(zero->data + MIG_HDR_LEN + 4, 0);
		zero->len = MIG_HDR_LEN + MIG_RAM_HDR_LEN + 8 * (size_t)nz;
		mig_hdr_encode(zero->data, MIG_RAM_ZERO, 0, zero->len - MIG_HDR_LEN);
		tx->st.msgs_zero++;
		tx->st.bytes_wire += zero->len;
	}
	if (n)
		ram_finish(tx, ram, n, gpas);
	return (n || nz) ? 1 : 0;
}

/* ----------------------------------------------------------- destination */

int mig_pages_rx_init(struct mig_pages_rx *rx, struct guest_mem *mem)
{
	memset(rx, 0, sizeof(*rx));
	rx->mem = mem;
	rx->npages = mem->size / PAGE_SIZE;
	rx->dctx = ZSTD_createDCtx();
	rx->populated = calloc((rx->npages + 63) / 64, sizeof(uint64_t));
	if (posix_memalign((void **)&rx->scratch, PAGE_SIZE, (size_t)MIG_MAX_BATCH * PAGE_SIZE))
		rx->scratch = NULL;
	if (!rx->dctx || !rx->populated || !rx->scratch) {
		mig_pages_rx_destroy(rx);
		return -ENOMEM;
	}
	return 0;
}

void mig_pages_rx_destroy(struct mig_pages_rx *rx)
{
	ZSTD_freeDCtx(rx->dctx);
	free(rx->populated);
	free(rx->scratch);
	rx->dctx = NULL;
	rx->populated = NULL;
	rx->scratch = NULL;
}

int mig_pages_rx_ram(struct mig_pages_rx *rx, const uint8_t *payload, size_t len)
{
	const uint8_t *data, *src;
	uint32_t n, flags, i;
	size_t dlen, expect;

	if (len < MIG_RAM_HDR_LEN)
		return -EBADMSG;
	n = get_le32(payload);
	flags = get_le32(payload + 4);
	if (n == 0 || n > MIG_MAX_BATCH || (flags & ~MIG_RAM_F_ZSTD)) {
		log_err("RAM: %u pages (max %u), flags 0x%x: malformed", n, MIG_MAX_BATCH, flags);
		return -EBADMSG;
	}
	if (len <= MIG_RAM_HDR_LEN + 8 * (size_t)n) {
		log_err("RAM: %zu bytes cannot hold %u gpas and data", len, n);
		return -EBADMSG;
	}
	for (i = 0; i < n; i++) {
		uint64_t gpa = get_le64(payload + MIG_RAM_HDR_LEN + 8 * i);

		if (gpa & PAGE_MASK) {
			log_err("RAM: gpa 0x%" PRIx64 " is not page-aligned", gpa);
			return -EBADMSG;
		}
		if (!guest_mem_ptr(rx->mem, gpa, PAGE_SIZE)) {
			log_err("RAM: gpa 0x%" PRIx64 " is outside guest RAM", gpa);
			return -ERANGE;
		}
	}
	data = payload + MIG_RAM_HDR_LEN + 8 * (size_t)n;
	dlen = len - MIG_RAM_HDR_LEN - 8 * (size_t)n;
	expect = (size_t)n * PAGE_SIZE;
	if (flags & MIG_RAM_F_ZSTD) {
		unsigned long long csize = ZSTD_getFrameContentSize(data, dlen);
		size_t fsize = ZSTD_findFrameCompressedSize(data, dlen), got;

		/* Exactly one frame, filling the message, that says it holds exactly n pages. */
		if (csize != expect || ZSTD_isError(fsize) || fsize != dlen) {
			log_err("RAM: zstd frame of %zu bytes does not hold exactly %u pages", dlen, n);
			return -EBADMSG;
		}
		got = ZSTD_decompressDCtx(rx->dctx, rx->scratch, expect, data, dlen);
		if (ZSTD_isError(got) || got != expect) {
			log_err("RAM: zstd frame: %s", ZSTD_isError(got) ? ZSTD_getErrorName(got) :
				"short output");
			return -EBADMSG;
		}
		src = rx->scratch;
	} else {
		if (dlen != expect) {
			log_err("RAM: %zu data bytes for %u raw pages", dlen, n);
			return -EBADMSG;
		}
		src = data;
	}
	for (i = 0; i < n; i++) {
		uint64_t gpa = get_le64(payload + MIG_RAM_HDR_LEN + 8 * i), pfn = 0;

		mig_gpa_to_pfn(rx->mem, gpa, &pfn);
		if (rx->install) {
			int ret = rx->install(rx->install_opaque, pfn, src + (size_t)i * PAGE_SIZE, 1);

			if (ret < 0)
				return ret;
			continue;
		}
		memcpy(guest_mem_ptr(rx->mem, gpa, PAGE_SIZE), src + (size_t)i * PAGE_SIZE, PAGE_SIZE);
		rx->populated[pfn / 64] |= 1ull << (pfn % 64);
	}
	rx->st.msgs_ram++;
	rx->st.msgs_ram_zstd += !!(flags & MIG_RAM_F_ZSTD);
	rx->st.pages_data += n;
	rx->st.bytes_wire += MIG_HDR_LEN + len;
	return 0;
}

int mig_pages_rx_zero(struct mig_pages_rx *rx, const uint8_t *payload, size_t len)
{
	uint32_t n, i, k;

	if (len < MIG_RAM_HDR_LEN)
		return -EBADMSG;
	n = get_le32(payload);
	if (n == 0 || n > MIG_MAX_ZERO_BATCH || get_le32(payload + 4) ||
	    len != MIG_RAM_HDR_LEN + 8 * (size_t)n) {
		log_err("RAM_ZERO: %u entries in %zu bytes: malformed", n, len);
		return -EBADMSG;
	}
	for (i = 0; i < n; i++) {
		uint64_t e = get_le64(payload + MIG_RAM_HDR_LEN + 8 * i);
		uint64_t gpa = e & ~PAGE_MASK, count = (e & PAGE_MASK) + 1;

		if (!guest_mem_ptr(rx->mem, gpa, count * PAGE_SIZE)) {
			log_err("RAM_ZERO: %" PRIu64 " pages at gpa 0x%" PRIx64 " are not inside guest RAM",
				count, gpa);
			return -ERANGE;
		}
	}
	for (i = 0; i < n; i++) {
		uint64_t e = get_le64(payload + MIG_RAM_HDR_LEN + 8 * i);
		uint64_t gpa = e & ~PAGE_MASK, count = (e & PAGE_MASK) + 1, pfn = 0;

		mig_gpa_to_pfn(rx->mem, gpa, &pfn);
		if (rx->install) {
			int ret = rx->install(rx->install_opaque, pfn, NULL, count);

			if (ret < 0)
				return ret;
			rx->st.pages_zero += count;
			continue;
		}
		for (k = 0; k < count; k++, pfn++) {
			/* Never written by us: still the fresh memfd's zeros, leave it untouched. */
			if (!(rx->populated[pfn / 64] & (1ull << (pfn % 64))))
				continue;
			memset((uint8_t *)rx->mem->base + pfn * PAGE_SIZE, 0, PAGE_SIZE);
		}
		rx->st.pages_zero += count;
	}
	rx->st.msgs_zero++;
	rx->st.bytes_wire += MIG_HDR_LEN + len;
	return 0;
}
