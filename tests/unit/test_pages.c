// SPDX-License-Identifier: MIT
/*
 * migrate/pages.c over real guest_mem (memfd) instances: source → messages → destination
 * round trips (zero, hole, compressible, incompressible pages; compression on and off; RAM
 * above 4 GiB), raw fallback, zero runs, and hostile messages (gpa outside RAM or
 * misaligned, wrong sizes, bad zstd frames, every truncation) refused with guest RAM untouched.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <zstd.h>

#include "migrate/pages.h"
#include "vmm/layout.h"
#include "vmm/memory.h"

#define PG 4096u
#define MEM_SIZE (8u << 20)		/* 2048 pages */

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

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }

static uint8_t *page(struct guest_mem *m, uint64_t pfn)
{
	return (uint8_t *)m->base + pfn * PG;
}

/* Kinds of pages in the source: 0 hole, 1 written zeros, 2 text-like, 3 random, 4 one byte. */
static void fill(struct guest_mem *m, uint64_t pfn, int kind)
{
	uint8_t *p = page(m, pfn);
	unsigned int i;

	switch (kind) {
	case 0: break;
	case 1: memset(p, 0, PG); p[0] = 1; p[0] = 0; break;	/* allocated, reads zero */
	case 2: for (i = 0; i < PG; i++) p[i] = (uint8_t)("migrate "[i % 8] + pfn % 3); break;
	case 3: for (i = 0; i < PG; i += 8) { uint64_t v = rnd(); memcpy(p + i, &v, 8); } break;
	case 4: p[(pfn * 37) % PG] = (uint8_t)(pfn | 1); break;
	}
}

static uint64_t *bitmap_all(uint64_t npages)
{
	uint64_t *bm = calloc((npages + 63) / 64, 8);
	uint64_t i;

	for (i = 0; i < npages; i++)
		bm[i / 64] |= 1ull << (i % 64);
	return bm;
}

/* Send every page set in @bm from @src to @rx. Returns the number of tx_next calls. */
static unsigned int transfer(struct mig_pages_tx *tx, struct mig_pages_rx *rx, uint64_t *bm)
{
	struct mig_buf ram, zero;
	struct mig_hdr h;
	uint64_t pos = 0;
	unsigned int calls = 0;
	int ret;

	assert_int_equal(mig_pages_buf_alloc_ram(tx, &ram), 0);
	assert_int_equal(mig_pages_buf_alloc_zero(&zero), 0);
	while ((ret = mig_pages_tx_next(tx, bm, &pos, &ram, &zero)) > 0) {
		calls++;
		if (ram.len) {
			/* The message passes the receiver's header check, then applies. */
			assert_int_equal(mig_hdr_decode(ram.data, &h), 0);
			assert_int_equal(h.cmd, MIG_RAM);
			assert_int_equal(h.len, ram.len - MIG_HDR_LEN);
			assert_int_equal(mig_pages_rx_ram(rx, ram.data + MIG_HDR_LEN, h.len), 0);
		}
		if (zero.len) {
			assert_int_equal(mig_hdr_decode(zero.data, &h), 0);
			assert_int_equal(h.cmd, MIG_RAM_ZERO);
			assert_int_equal(mig_pages_rx_zero(rx, zero.data + MIG_HDR_LEN, h.len), 0);
		}
	}
	assert_int_equal(ret, 0);
	mig_buf_free(&ram);
	mig_buf_free(&zero);
	return calls;
}

static void check_same(struct guest_mem *a, struct guest_mem *b)
{
	uint64_t i;

	for (i = 0; i < a->size / PG; i++)
		if (memcmp(page(a, i), page(b, i), PG)) {
			fprintf(stderr, "page %" PRIu64 " differs\n", (uint64_t)i);
			fail();
		}
}

static void round_trip(int level, unsigned int batch)
{
	struct guest_mem src, dst;
	struct mig_pages_tx tx;
	struct mig_pages_rx rx;
	uint64_t npages, i, *bm, holes = 0, zeros = 0;

	assert_int_equal(guest_mem_init(&src, MEM_SIZE), 0);
	assert_int_equal(guest_mem_init(&dst, MEM_SIZE), 0);
	npages = MEM_SIZE / PG;
	for (i = 0; i < npages; i++) {
		/* Long hole runs, some single pages of every kind. */
		int kind = (i < 600 || (i >= 1500 && i < 1800)) ? 0 : (int)(rnd() % 5);

		fill(&src, i, kind);
		holes += kind == 0;
		zeros += kind <= 1;
	}
	assert_int_equal(mig_pages_tx_init(&tx, &src, level, batch), 0);
	assert_int_equal(mig_pages_rx_init(&rx, &dst), 0);
	bm = bitmap_all(npages);
	transfer(&tx, &rx, bm);
	check_same(&src, &dst);
	for (i = 0; i < (npages + 63) / 64; i++)
		assert_int_equal(bm[i], 0);		/* every bit consumed */
	assert_int_equal(tx.st.pages_zero, zeros);
	assert_true(tx.st.pages_hole >= holes);		/* the kernel may report more */
	assert_int_equal(tx.st.pages_data, npages - zeros);
	assert_int_equal(rx.st.pages_data, npages - zeros);
	assert_int_equal(rx.st.pages_zero, zeros);
	assert_int_equal(rx.st.bytes_wire, tx.st.bytes_wire);
	if (level)
		assert_true(tx.st.msgs_ram_zstd > 0);
	else
		assert_int_equal(tx.st.msgs_ram_zstd, 0);

	/* Round 2: some data pages become zero, some zero pages get data; only those are sent. */
	memset(bm, 0, (npages + 63) / 64 * 8);
	for (i = 700; i < 1400; i += 7) {
		memset(page(&src, i), 0, PG);
		bm[i / 64] |= 1ull << (i % 64);
	}
	fill(&src, 1, 3);
	bm[0] |= 2;
	transfer(&tx, &rx, bm);
	check_same(&src, &dst);

	mig_pages_rx_destroy(&rx);
	mig_pages_tx_destroy(&tx);
	free(bm);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
}

static void test_round_trip_zstd(void **unused) { round_trip(1, 0); }
static void test_round_trip_zstd_small_batch(void **unused) { round_trip(3, 7); }
static void test_round_trip_raw(void **unused) { round_trip(0, 0); }
static void test_round_trip_raw_odd_batch(void **unused) { round_trip(0, 13); }
static void test_round_trip_fast_level(void **unused) { round_trip(-5, MIG_MAX_BATCH); }

/* A batch of random pages does not shrink: it must go raw, with exact sizes. */
static void test_incompressible_goes_raw(void **unused)
{
	struct guest_mem src, dst;
	struct mig_pages_tx tx;
	struct mig_pages_rx rx;
	struct mig_buf ram, zero;
	uint64_t *bm, pos = 0, i;
	uint32_t flags, n;

	assert_int_equal(guest_mem_init(&src, MEM_SIZE), 0);
	assert_int_equal(guest_mem_init(&dst, MEM_SIZE), 0);
	for (i = 0; i < 16; i++)
		fill(&src, 100 + i, 3);
	bm = calloc(MEM_SIZE / PG / 64, 8);
	bm[100 / 64] = ~0ull;
	bm[100 / 64 + 1] = ~0ull;		/* pages 64..191: 16 random, the rest holes */
	assert_int_equal(mig_pages_tx_init(&tx, &src, 19, 0), 0);
	assert_int_equal(mig_pages_rx_init(&rx, &dst), 0);
	assert_int_equal(mig_pages_buf_alloc_ram(&tx, &ram), 0);
	assert_int_equal(mig_pages_buf_alloc_zero(&zero), 0);
	assert_int_equal(mig_pages_tx_next(&tx, bm, &pos, &ram, &zero), 1);
	memcpy(&n, ram.data + 16, 4);
	memcpy(&flags, ram.data + 20, 4);
	assert_int_equal(le32toh(n), 16);
	assert_int_equal(le32toh(flags), 0);
	assert_int_equal(ram.len, 16 + 8 + 16 * 8 + 16 * PG);
	assert_int_equal(tx.st.msgs_ram_raw_fallback, 1);
	/* Holes before and after the random run: two zero runs, flags only (no page data). */
	assert_int_equal(zero.len, 16 + 8 + 2 * 8);
	assert_int_equal(mig_pages_rx_ram(&rx, ram.data + 16, ram.len - 16), 0);
	assert_int_equal(mig_pages_rx_zero(&rx, zero.data + 16, zero.len - 16), 0);
	check_same(&src, &dst);
	assert_int_equal(mig_pages_tx_next(&tx, bm, &pos, &ram, &zero), 0);
	mig_buf_free(&ram);
	mig_buf_free(&zero);
	mig_pages_rx_destroy(&rx);
	mig_pages_tx_destroy(&tx);
	free(bm);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
}

/* An all-zero guest is sent as a handful of RAM_ZERO entries and no page data. */
static void test_zero_pages_flags_only(void **unused)
{
	struct guest_mem src, dst;
	struct mig_pages_tx tx;
	struct mig_pages_rx rx;
	struct mig_buf ram, zero;
	uint64_t *bm, pos = 0, e;
	unsigned int i;

	assert_int_equal(guest_mem_init(&src, MEM_SIZE), 0);
	assert_int_equal(guest_mem_init(&dst, MEM_SIZE), 0);
	for (i = 0; i < 1024; i++)
		fill(&src, i, 1);			/* half written zeros, half holes */
	bm = bitmap_all(MEM_SIZE / PG);
	assert_int_equal(mig_pages_tx_init(&tx, &src, 1, 0), 0);
	assert_int_equal(mig_pages_rx_init(&rx, &dst), 0);
	assert_int_equal(mig_pages_buf_alloc_ram(&tx, &ram), 0);
	assert_int_equal(mig_pages_buf_alloc_zero(&zero), 0);
	assert_int_equal(mig_pages_tx_next(&tx, bm, &pos, &ram, &zero), 1);
	assert_int_equal(ram.len, 0);
	assert_int_equal(pos, MEM_SIZE / PG);
	/* 2048 contiguous zero pages = one run of 2048 (< 4096 per entry). */
	assert_int_equal(zero.len, 16 + 8 + 8);
	memcpy(&e, zero.data + 24, 8);
	assert_int_equal(le64toh(e), 2047);			/* gpa 0, count 2048 */
	assert_int_equal(tx.st.pages_hole, 1024);
	assert_int_equal(mig_pages_rx_zero(&rx, zero.data + 16, zero.len - 16), 0);
	assert_int_equal(rx.st.pages_zero, 2048);
	assert_int_equal(mig_pages_tx_next(&tx, bm, &pos, &ram, &zero), 0);
	mig_buf_free(&ram);
	mig_buf_free(&zero);
	mig_pages_rx_destroy(&rx);
	mig_pages_tx_destroy(&tx);
	free(bm);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
}

/* ---- hostile messages ---- */

struct rxfix {
	struct guest_mem mem;
	struct mig_pages_rx rx;
};

static int rx_setup(void **state)
{
	struct rxfix *f = calloc(1, sizeof(*f));

	assert_int_equal(guest_mem_init(&f->mem, MEM_SIZE), 0);
	assert_int_equal(mig_pages_rx_init(&f->rx, &f->mem), 0);
	*state = f;
	return 0;
}

static int rx_teardown(void **state)
{
	struct rxfix *f = *state;

	mig_pages_rx_destroy(&f->rx);
	guest_mem_destroy(&f->mem);
	free(f);
	return 0;
}

static size_t build_ram(uint8_t *b, const uint64_t *gpas, uint32_t n, uint32_t flags,
			const void *data, size_t dlen)
{
	uint32_t i;

	put32(b, (n));
	put32(b + 4, (flags));
	for (i = 0; i < n; i++) {
		uint64_t g = htole64(gpas[i]);

		memcpy(b + 8 + 8 * i, &g, 8);
	}
	memcpy(b + 8 + 8 * n, data, dlen);
	return 8 + 8 * (size_t)n + dlen;
}

static bool ram_untouched(struct guest_mem *m)
{
	uint64_t i;

	for (i = 0; i < m->size / PG; i++)
		if (!mig_page_is_zero(page(m, i)))
			return false;
	return true;
}

static void test_rx_rejects_bad_gpa(void **state)
{
	struct rxfix *f = *state;
	static uint8_t data[2 * PG], msg[64 + 2 * PG];
	uint64_t gpas[2];
	size_t len;

	memset(data, 0xab, sizeof(data));
	quiet_begin();
	/* Second gpa just past the end of RAM: nothing written, not even the first page. */
	gpas[0] = 0;
	gpas[1] = MEM_SIZE;
	len = build_ram(msg, gpas, 2, 0, data, 2 * PG);
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len), -ERANGE);
	/* Far outside, and in the 32-bit MMIO gap. */
	gpas[1] = LAYOUT_LAPIC_BASE;
	len = build_ram(msg, gpas, 2, 0, data, 2 * PG);
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len), -ERANGE);
	gpas[1] = 0xfffffffffffff000ull;
	len = build_ram(msg, gpas, 2, 0, data, 2 * PG);
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len), -ERANGE);
	/* Not page-aligned. */
	gpas[1] = 0x1800;
	len = build_ram(msg, gpas, 2, 0, data, 2 * PG);
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len), -EBADMSG);
	assert_true(ram_untouched(&f->mem));

	/* RAM_ZERO runs: one past the end of RAM, and one starting outside. */
	{
		uint8_t z[24];
		uint64_t e;

		put32(z, (2));
		put32(z + 4, 0);
		e = htole64(0);
		memcpy(z + 8, &e, 8);
		e = htole64((MEM_SIZE - 2 * PG) | 2);		/* 3 pages from 2 before the end */
		memcpy(z + 16, &e, 8);
		assert_int_equal(mig_pages_rx_zero(&f->rx, z, 24), -ERANGE);
		e = htole64((uint64_t)MEM_SIZE);
		memcpy(z + 16, &e, 8);
		assert_int_equal(mig_pages_rx_zero(&f->rx, z, 24), -ERANGE);
		e = htole64((MEM_SIZE - 2 * PG) | 1);		/* exactly the last 2: fine */
		memcpy(z + 16, &e, 8);
		assert_int_equal(mig_pages_rx_zero(&f->rx, z, 24), 0);
		assert_int_equal(mig_pages_rx_zero(&f->rx, z, 23), -EBADMSG);
		z[4] = 1;					/* reserved word */
		assert_int_equal(mig_pages_rx_zero(&f->rx, z, 24), -EBADMSG);
		put32(z, 0);
		assert_int_equal(mig_pages_rx_zero(&f->rx, z, 8), -EBADMSG);
	}
	quiet_end();
}

static void test_rx_rejects_bad_sizes(void **state)
{
	struct rxfix *f = *state;
	static uint8_t data[3 * PG], msg[64 + 4 * PG], z[4 * PG];
	uint64_t gpas[3] = { 0, PG, 2 * PG };
	size_t len, zl, i;

	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i / 100);
	quiet_begin();
	/* Raw: one byte short, one byte long. */
	len = build_ram(msg, gpas, 3, 0, data, 3 * PG - 1);
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len), -EBADMSG);
	len = build_ram(msg, gpas, 3, 0, data, 3 * PG);
	msg[len] = 0;
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len + 1), -EBADMSG);
	/* npages 0, too many, unknown flag, no room for gpas. */
	len = build_ram(msg, gpas, 0, 0, data, 1);
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len), -EBADMSG);
	put32(msg, (MIG_MAX_BATCH + 1));
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len), -EBADMSG);
	len = build_ram(msg, gpas, 3, 0x2, data, 3 * PG);
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len), -EBADMSG);
	put32(msg, (1000));
	put32(msg + 4, 0);
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, 8 + 8 * 1000), -EBADMSG);
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, 7), -EBADMSG);

	/* zstd frame of 2 pages claimed as 3. */
	zl = ZSTD_compress(z, sizeof(z), data, 2 * PG, 1);
	assert_false(ZSTD_isError(zl));
	len = build_ram(msg, gpas, 3, MIG_RAM_F_ZSTD, z, zl);
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len), -EBADMSG);
	/* 4 pages claimed as 3. */
	{
		static uint8_t d4[4 * PG];

		zl = ZSTD_compress(z, sizeof(z), d4, 4 * PG, 1);
		len = build_ram(msg, gpas, 3, MIG_RAM_F_ZSTD, z, zl);
		assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len), -EBADMSG);
	}
	/* Right frame plus a trailing byte; then a frame with its content size removed. */
	zl = ZSTD_compress(z, sizeof(z), data, 3 * PG, 1);
	len = build_ram(msg, gpas, 3, MIG_RAM_F_ZSTD, z, zl);
	msg[len] = 0;
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len + 1), -EBADMSG);
	{
		ZSTD_CCtx *c = ZSTD_createCCtx();

		ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
		zl = ZSTD_compress2(c, z, sizeof(z), data, 3 * PG);
		ZSTD_freeCCtx(c);
		assert_false(ZSTD_isError(zl));
		len = build_ram(msg, gpas, 3, MIG_RAM_F_ZSTD, z, zl);
		assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len), -EBADMSG);
	}
	/* Raw data flagged as zstd. */
	len = build_ram(msg, gpas, 3, MIG_RAM_F_ZSTD, data, 3 * PG);
	assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len), -EBADMSG);
	/* Corrupt a compressed frame's body: refused (checksum-free frames may decode to junk of
	 * the right size, which is the crc's job upstream; but a structural break is caught). */
	zl = ZSTD_compress(z, sizeof(z), data, 3 * PG, 1);
	z[zl / 2] ^= 0xff;
	z[zl / 2 + 1] ^= 0xff;
	len = build_ram(msg, gpas, 3, MIG_RAM_F_ZSTD, z, zl);
	(void)mig_pages_rx_ram(&f->rx, msg, len);	/* must not crash or overrun (ASan) */
	quiet_end();
}

/* Every prefix of a valid RAM message (raw and zstd) is refused with RAM untouched. */
static void test_rx_truncated_every_offset(void **state)
{
	struct rxfix *f = *state;
	static uint8_t data[3 * PG], msg[64 + 4 * PG], z[4 * PG];
	uint64_t gpas[3] = { 5 * PG, 9 * PG, 2 * PG };
	size_t len, zl, cut, i;
	int pass;

	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i % 251 + 1);
	zl = ZSTD_compress(z, sizeof(z), data, 3 * PG, 1);
	quiet_begin();
	for (pass = 0; pass < 2; pass++) {
		len = pass ? build_ram(msg, gpas, 3, MIG_RAM_F_ZSTD, z, zl)
			   : build_ram(msg, gpas, 3, 0, data, 3 * PG);
		for (cut = 0; cut < len; cut++) {
			uint8_t *copy = malloc(cut ? cut : 1);

			memcpy(copy, msg, cut);
			assert_int_equal(mig_pages_rx_ram(&f->rx, copy, cut), -EBADMSG);
			free(copy);
			for (i = 0; i < 3; i++)
				assert_true(mig_page_is_zero(page(&f->mem, gpas[i] / PG)));
		}
		assert_int_equal(mig_pages_rx_ram(&f->rx, msg, len), 0);
		for (i = 0; i < 3; i++)
			assert_memory_equal(page(&f->mem, gpas[i] / PG), data + i * PG, PG);
		for (i = 0; i < 3; i++)
			memset(page(&f->mem, gpas[i] / PG), 0, PG);
	}
	quiet_end();
}

static void test_is_zero(void **unused)
{
	uint8_t *p = aligned_alloc(PG, PG);
	unsigned int i;

	memset(p, 0, PG);
	assert_true(mig_page_is_zero(p));
	for (i = 0; i < PG; i++) {
		p[i] = 0x80;
		assert_false(mig_page_is_zero(p));
		p[i] = 0;
	}
	free(p);
}

/* RAM above 4 GiB: pfn/gpa mapping and a transfer of pages on both sides of the gap. */
static void test_high_ram(void **unused)
{
	struct guest_mem src, dst;
	struct mig_pages_tx tx;
	struct mig_pages_rx rx;
	uint64_t size = MEM_32BIT_GAP_START + (16ull << 20), low = MEM_32BIT_GAP_START / PG;
	uint64_t *bm, gpa, pfn;

	if (guest_mem_init(&src, size) < 0)
		skip();
	assert_int_equal(guest_mem_init(&dst, size), 0);
	assert_int_equal(mig_pfn_to_gpa(&src, low - 1, &gpa), 0);
	assert_int_equal(gpa, MEM_32BIT_GAP_START - PG);
	assert_int_equal(mig_pfn_to_gpa(&src, low, &gpa), 0);
	assert_int_equal(gpa, MEM_32BIT_GAP_END);
	assert_int_equal(mig_gpa_to_pfn(&src, MEM_32BIT_GAP_END + PG, &pfn), 0);
	assert_int_equal(pfn, low + 1);
	assert_int_equal(mig_gpa_to_pfn(&src, MEM_32BIT_GAP_START, &pfn), -ERANGE);
	assert_int_equal(mig_pfn_to_gpa(&src, size / PG, &gpa), -ERANGE);

	fill(&src, low - 2, 2);
	fill(&src, low - 1, 3);
	fill(&src, low, 3);
	fill(&src, low + 1, 4);
	bm = calloc(size / PG / 64, 8);
	bm[(low - 64) / 64] = ~0ull;
	bm[low / 64] = ~0ull;
	assert_int_equal(mig_pages_tx_init(&tx, &src, 1, 0), 0);
	assert_int_equal(mig_pages_rx_init(&rx, &dst), 0);
	transfer(&tx, &rx, bm);
	assert_memory_equal(page(&src, low - 2), page(&dst, low - 2), 4 * PG);
	assert_int_equal(tx.st.pages_data, 4);
	/* 62 zeros below the gap and 62 above: two runs (they are not gpa-contiguous). */
	assert_int_equal(tx.st.pages_zero, 124);
	mig_pages_rx_destroy(&rx);
	mig_pages_tx_destroy(&tx);
	free(bm);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
}

/*
 * The memfd hole cache lives for one round only. Round 1 sees pages 0..99 as holes; the
 * guest then writes page 50 (dirty again); round 2, starting at pos 0, must send its data,
 * not the hole answer cached in round 1.
 */
static void test_hole_cache_per_round(void **unused)
{
	struct guest_mem src, dst;
	struct mig_pages_tx tx;
	struct mig_pages_rx rx;
	uint64_t *bm;
	unsigned int i;

	assert_int_equal(guest_mem_init(&src, MEM_SIZE), 0);
	assert_int_equal(guest_mem_init(&dst, MEM_SIZE), 0);
	fill(&src, 0, 3);				/* data, then a hole run to the end */
	bm = calloc(MEM_SIZE / PG / 64, 8);
	for (i = 0; i < 256; i++)
		bm[i / 64] |= 1ull << (i % 64);
	assert_int_equal(mig_pages_tx_init(&tx, &src, 0, 4), 0);	/* small batches: many calls */
	assert_int_equal(mig_pages_rx_init(&rx, &dst), 0);
	transfer(&tx, &rx, bm);
	assert_int_equal(tx.st.pages_hole, 255);
	fill(&src, 50, 3);
	bm[0] |= 1ull << 50;
	transfer(&tx, &rx, bm);
	assert_int_equal(tx.st.pages_data, 2);
	assert_memory_equal(page(&src, 50), page(&dst, 50), PG);
	mig_pages_rx_destroy(&rx);
	mig_pages_tx_destroy(&tx);
	free(bm);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
}

static void test_tx_args(void **unused)
{
	struct guest_mem m;
	struct mig_pages_tx tx;

	assert_int_equal(guest_mem_init(&m, MEM_SIZE), 0);
	quiet_begin();
	assert_int_equal(mig_pages_tx_init(&tx, &m, 1, MIG_MAX_BATCH + 1), -EINVAL);
	assert_int_equal(mig_pages_tx_init(&tx, &m, 1000, 0), -EINVAL);
	quiet_end();
	assert_int_equal(mig_pages_tx_init(&tx, &m, 0, 1), 0);
	mig_pages_tx_destroy(&tx);
	guest_mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_zstd),
		cmocka_unit_test(test_round_trip_zstd_small_batch),
		cmocka_unit_test(test_round_trip_raw),
		cmocka_unit_test(test_round_trip_raw_odd_batch),
		cmocka_unit_test(test_round_trip_fast_level),
		cmocka_unit_test(test_incompressible_goes_raw),
		cmocka_unit_test(test_zero_pages_flags_only),
		cmocka_unit_test_setup_teardown(test_rx_rejects_bad_gpa, rx_setup, rx_teardown),
		cmocka_unit_test_setup_teardown(test_rx_rejects_bad_sizes, rx_setup, rx_teardown),
		cmocka_unit_test_setup_teardown(test_rx_truncated_every_offset, rx_setup, rx_teardown),
		cmocka_unit_test(test_is_zero),
		cmocka_unit_test(test_high_ram),
		cmocka_unit_test(test_hole_cache_per_round),
		cmocka_unit_test(test_tx_args),
	};
	return cmocka_run_group_tests_name("pages", tests, NULL, NULL);
}
