// SPDX-License-Identifier: MIT
/*
 * Unit tests for vmm/virtio/queue: the split virtqueue walker against a fake guest memory
 * made of two RAM regions with a hole between them, each surrounded by PROT_NONE guard
 * pages — any host access outside guest RAM faults the test. Covers every hostile case
 * of issue 4 (addresses outside RAM, overflowing lengths, loops, over-long chains, indirect
 * tables, readable-after-writable, bad sizes, avail idx jumps), used-ring pushes with dirty
 * marking, event-index notification suppression both ways, and save/restore.
 */
#include <endian.h>
#include <errno.h>
#include <linux/virtio_ring.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#include <cmocka.h>

#include "vmm/memory.h"
#include "vmm/virtio/queue.h"

#define PG		4096ull
#define R0_GPA		0x0ull
#define R0_SIZE		(1ull << 20)		/* 1 MiB at gpa 0 */
#define R1_GPA		0x200000ull
#define R1_SIZE		(64ull << 10)		/* 64 KiB at 2 MiB; hole in between */

#define DESC_GPA	0x1000ull
#define AVAIL_GPA	0x3000ull
#define USED_GPA	0x4000ull
#define BUF_GPA		0x10000ull

struct fake {
	struct guest_mem mem;
	uint8_t *map;
	size_t map_len;
	struct vq vq;
	struct vq_seg segs[64];
	struct vq_chain ch;
	uint16_t size;
	uint16_t avail_idx;		/* the driver's */
};

static int setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));
	uint64_t npages = (R0_SIZE + R1_SIZE) / PG;

	/* [guard][R0][guard][R1][guard] */
	f->map_len = PG + R0_SIZE + PG + R1_SIZE + PG;
	f->map = mmap(NULL, f->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f->map == MAP_FAILED)
		return -1;
	if (mprotect(f->map + PG, R0_SIZE, PROT_READ | PROT_WRITE) ||
	    mprotect(f->map + 2 * PG + R0_SIZE, R1_SIZE, PROT_READ | PROT_WRITE))
		return -1;
	f->mem.memfd = -1;
	f->mem.size = R0_SIZE + R1_SIZE;
	f->mem.regions[0] = (struct guest_mem_region){ .gpa = R0_GPA, .size = R0_SIZE,
						       .fd_offset = 0, .hva = f->map + PG };
	f->mem.regions[1] = (struct guest_mem_region){ .gpa = R1_GPA, .size = R1_SIZE,
						       .fd_offset = R0_SIZE,
						       .hva = f->map + 2 * PG + R0_SIZE, .slot = 1 };
	f->mem.nr_regions = 2;
	f->mem.dirty_bitmap = calloc((npages + 63) / 64, sizeof(uint64_t));
	f->ch.segs = f->segs;
	f->ch.cap = 64;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fake *f = *state;

	munmap(f->map, f->map_len);
	free(f->mem.dirty_bitmap);
	free(f);
	return 0;
}

/* ---- driver-side helpers writing the fake guest's rings ---- */

static uint8_t *g(struct fake *f, uint64_t gpa)
{
	uint8_t *p = guest_mem_ptr(&f->mem, gpa, 1);

	assert_non_null(p);
	return p;
}

static void w16(struct fake *f, uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	memcpy(g(f, gpa), &v, 2);
}

static uint16_t r16(struct fake *f, uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, g(f, gpa), 2);
	return le16toh(v);
}

static uint32_t r32(struct fake *f, uint64_t gpa)
{
	uint32_t v;

	memcpy(&v, g(f, gpa), 4);
	return le32toh(v);
}

static void desc_at(struct fake *f, uint64_t table, unsigned int i, uint64_t addr, uint32_t len,
		    uint16_t flags, uint16_t next)
{
	uint8_t *p = g(f, table + 16ull * i);
	uint64_t a = htole64(addr);
	uint32_t l = htole32(len);
	uint16_t fl = htole16(flags), n = htole16(next);

	memcpy(p, &a, 8);
	memcpy(p + 8, &l, 4);
	memcpy(p + 12, &fl, 2);
	memcpy(p + 14, &n, 2);
}

static void desc(struct fake *f, unsigned int i, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	desc_at(f, DESC_GPA, i, addr, len, flags, next);
}

static void avail_add(struct fake *f, uint16_t head)
{
	w16(f, AVAIL_GPA + 4 + 2ull * (f->avail_idx % f->size), head);
	f->avail_idx++;
	w16(f, AVAIL_GPA + 2, f->avail_idx);
}

static void init_q(struct fake *f, uint16_t size, bool event_idx, bool indirect)
{
	struct vq_config cfg = { .name = "test.q0", .size = size, .desc = DESC_GPA,
				 .avail = AVAIL_GPA, .used = USED_GPA, .event_idx = event_idx,
				 .indirect = indirect };

	f->size = size;
	f->avail_idx = 0;
	memset(g(f, DESC_GPA), 0, 0xe000);
	assert_int_equal(vq_init(&f->vq, &f->mem, &cfg), 0);
}

static bool dirty(struct fake *f, uint64_t gpa)
{
	uint64_t pfn = gpa < R0_SIZE ? gpa / PG : (R0_SIZE + gpa - R1_GPA) / PG;

	return f->mem.dirty_bitmap[pfn / 64] & (1ull << (pfn % 64));
}

static void clear_dirty(struct fake *f)
{
	memset(f->mem.dirty_bitmap, 0, ((R0_SIZE + R1_SIZE) / PG + 63) / 64 * 8);
}

/* Pop must fail with @err, and the queue then stays broken until re-init. */
static void expect_broken(struct fake *f, int err)
{
	assert_int_equal(vq_pop(&f->vq, &f->ch), err);
	assert_true(vq_broken(&f->vq));
	assert_int_equal(vq_pop(&f->vq, &f->ch), -EIO);
}

/* ---- configuration ---- */

static void test_init_checks(void **state)
{
	struct fake *f = *state;
	struct vq_config cfg = { .name = "q", .size = 8, .desc = DESC_GPA, .avail = AVAIL_GPA,
				 .used = USED_GPA };
	struct vq vq;
	static const uint16_t bad_sizes[] = { 0, 3, 6, 100, 32767, 65535 };
	unsigned int i;

	assert_int_equal(vq_init(&vq, &f->mem, &cfg), 0);
	assert_true(vq_enabled(&vq));
	for (i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		cfg.size = bad_sizes[i];
		assert_int_equal(vq_init(&vq, &f->mem, &cfg), -EINVAL);
		assert_false(vq_enabled(&vq));
	}
	cfg.size = 32768;	/* the largest legal size, rings must fit: put them in R0 */
	cfg.desc = 0x0;
	cfg.avail = 0x80000;
	cfg.used = 0x90000;
	assert_int_equal(vq_init(&vq, &f->mem, &cfg), 0);
	cfg.size = 8;
	cfg.desc = DESC_GPA + 8;		/* misaligned */
	cfg.avail = AVAIL_GPA;
	cfg.used = USED_GPA;
	assert_int_equal(vq_init(&vq, &f->mem, &cfg), -EINVAL);
	cfg.desc = DESC_GPA;
	cfg.avail = AVAIL_GPA + 1;
	assert_int_equal(vq_init(&vq, &f->mem, &cfg), -EINVAL);
	cfg.avail = AVAIL_GPA;
	cfg.used = USED_GPA + 2;
	assert_int_equal(vq_init(&vq, &f->mem, &cfg), -EINVAL);
	/* Rings outside RAM: in the hole, past the end, straddling a region end, wrapping. */
	cfg.used = USED_GPA;
	cfg.desc = 0x180000;
	assert_int_equal(vq_init(&vq, &f->mem, &cfg), -EINVAL);
	cfg.desc = R0_SIZE - 64;		/* 8 descriptors = 128 bytes: crosses into the hole */
	assert_int_equal(vq_init(&vq, &f->mem, &cfg), -EINVAL);
	cfg.desc = DESC_GPA;
	cfg.used = R1_GPA + R1_SIZE - 8;
	assert_int_equal(vq_init(&vq, &f->mem, &cfg), -EINVAL);
	cfg.used = 0xfffffffffffffff0ull;
	assert_int_equal(vq_init(&vq, &f->mem, &cfg), -EINVAL);
	/* Rings in the second region are fine. */
	cfg.desc = R1_GPA;
	cfg.avail = R1_GPA + 0x1000;
	cfg.used = R1_GPA + 0x2000;
	assert_int_equal(vq_init(&vq, &f->mem, &cfg), 0);
	/* A reset queue refuses to pop. */
	vq_reset(&vq);
	assert_int_equal(vq_pop(&vq, &f->ch), -EIO);
}

/* ---- well-formed chains ---- */

static void test_pop_push_simple(void **state)
{
	struct fake *f = *state;

	init_q(f, 8, false, false);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 0);		/* empty */
	/* A virtio-blk-like request: header (r), data (r), status (w). */
	desc(f, 5, BUF_GPA, 16, VRING_DESC_F_NEXT, 2);
	desc(f, 2, BUF_GPA + 0x1000, 512, VRING_DESC_F_NEXT, 7);
	desc(f, 7, R1_GPA + 0x100, 1, VRING_DESC_F_WRITE, 0);
	avail_add(f, 5);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	assert_int_equal(f->ch.head, 5);
	assert_int_equal(f->ch.n, 3);
	assert_int_equal(f->ch.n_out, 2);
	assert_int_equal(f->ch.out_len, 528);
	assert_int_equal(f->ch.in_len, 1);
	assert_ptr_equal(f->ch.segs[0].addr, g(f, BUF_GPA));
	assert_ptr_equal(f->ch.segs[2].addr, g(f, R1_GPA + 0x100));
	assert_true(f->ch.segs[2].writable);
	assert_false(f->ch.segs[1].writable);
	assert_int_equal(vq_inflight(&f->vq), 1);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 0);

	clear_dirty(f);
	*(uint8_t *)f->ch.segs[2].addr = 0;
	vq_push(&f->vq, &f->ch, 1);
	assert_int_equal(r16(f, USED_GPA + 2), 1);
	assert_int_equal(r32(f, USED_GPA + 4), 5);		/* id */
	assert_int_equal(r32(f, USED_GPA + 8), 1);		/* len */
	assert_int_equal(vq_inflight(&f->vq), 0);
	/* Migration sees the used ring and the byte the device wrote, not the read buffers. */
	assert_true(dirty(f, USED_GPA));
	assert_true(dirty(f, R1_GPA + 0x100));
	assert_false(dirty(f, BUF_GPA));
	assert_false(dirty(f, BUF_GPA + 0x1000));
}

static void test_push_clamps_and_marks_only_written(void **state)
{
	struct fake *f = *state;

	init_q(f, 8, false, false);
	desc(f, 0, BUF_GPA, 100, VRING_DESC_F_NEXT, 1);
	desc(f, 1, BUF_GPA + 0x2000, 0x1000, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
	desc(f, 2, BUF_GPA + 0x5000, 0x1000, VRING_DESC_F_WRITE, 0);
	avail_add(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	assert_int_equal(f->ch.in_len, 0x2000);
	clear_dirty(f);
	vq_push(&f->vq, &f->ch, 10);		/* only the first writable page */
	assert_true(dirty(f, BUF_GPA + 0x2000));
	assert_false(dirty(f, BUF_GPA + 0x5000));
	avail_add(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	vq_push(&f->vq, &f->ch, 0xffffffff);	/* device bug: clamped to the writable length */
	assert_int_equal(r32(f, USED_GPA + 4 + 8 + 4), 0x2000);
	assert_true(dirty(f, BUF_GPA + 0x5000));
}

static void test_many_chains_and_index_wrap(void **state)
{
	struct fake *f = *state;
	struct vq_state st;
	unsigned int i;

	init_q(f, 4, false, false);
	for (i = 0; i < 4; i++)
		desc(f, i, BUF_GPA + i * 0x100, 0x100, VRING_DESC_F_WRITE, 0);
	/* Jump both sides to just below the 16-bit wrap, as after a long uptime. */
	vq_save(&f->vq, &st);
	st.last_avail_idx = st.used_idx = 65534;
	assert_int_equal(vq_restore(&f->vq, &f->mem, &st, "test.q0"), 0);
	f->avail_idx = 65534;
	for (i = 0; i < 40; i++) {
		avail_add(f, (uint16_t)(i % 4));
		avail_add(f, (uint16_t)((i + 1) % 4));
		assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
		assert_int_equal(f->ch.head, i % 4);
		vq_push(&f->vq, &f->ch, 4);
		assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
		vq_push(&f->vq, &f->ch, 4);
		assert_int_equal(vq_pop(&f->vq, &f->ch), 0);
	}
	assert_int_equal(r16(f, USED_GPA + 2), (uint16_t)(65534 + 80));
	/* A full ring (idx exactly size ahead) is legal. */
	for (i = 0; i < 4; i++)
		avail_add(f, (uint16_t)i);
	for (i = 0; i < 4; i++)
		assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	assert_int_equal(vq_inflight(&f->vq), 4);
	vq_unpop(&f->vq, 2);
	assert_int_equal(vq_inflight(&f->vq), 2);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	assert_int_equal(f->ch.head, 2);
}

static void test_zero_length_descriptors_dropped(void **state)
{
	struct fake *f = *state;

	init_q(f, 8, false, false);
	desc(f, 0, 0xdead0000000ull, 0, VRING_DESC_F_NEXT, 1);	/* no bytes: address unused */
	desc(f, 1, BUF_GPA, 8, 0, 0);
	avail_add(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	assert_int_equal(f->ch.n, 1);
	assert_int_equal(f->ch.out_len, 8);
}


static void test_chain_copy(void **state)
{
	struct fake *f = *state;
	char out[32] = { 0 };

	init_q(f, 8, false, false);
	memcpy(g(f, BUF_GPA), "hello ", 6);
	memcpy(g(f, BUF_GPA + 0x100), "virtio", 6);
	desc(f, 0, BUF_GPA, 6, VRING_DESC_F_NEXT, 1);
	desc(f, 1, BUF_GPA + 0x100, 6, VRING_DESC_F_NEXT, 2);
	desc(f, 2, BUF_GPA + 0x200, 4, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 3);
	desc(f, 3, R1_GPA, 4, VRING_DESC_F_WRITE, 0);
	avail_add(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	/* Across a segment boundary, from an offset, short at the end. */
	assert_int_equal(vq_chain_copy_from(&f->ch, 0, out, sizeof(out)), 12);
	assert_memory_equal(out, "hello virtio", 12);
	assert_int_equal(vq_chain_copy_from(&f->ch, 4, out, 4), 4);
	assert_memory_equal(out, "o vi", 4);
	assert_int_equal(vq_chain_copy_from(&f->ch, 12, out, 4), 0);
	/* Writes go only to the writable part, never past it. */
	assert_int_equal(vq_chain_copy_to(&f->ch, 2, "ABCDEFGH", 8), 6);
	assert_memory_equal(g(f, BUF_GPA + 0x200), "\0\0AB", 4);
	assert_memory_equal(g(f, R1_GPA), "CDEF", 4);
	assert_memory_equal(g(f, R1_GPA + 4), "\0", 1);
	assert_memory_equal(g(f, BUF_GPA), "hello ", 6);	/* readable part untouched */
}

/* ---- hostile chains ---- */

static void test_desc_outside_ram(void **state)
{
	struct fake *f = *state;
	static const struct { uint64_t addr; uint32_t len; } bad[] = {
		{ 0x180000, 16 },			/* in the hole */
		{ R0_SIZE - 8, 16 },			/* straddles the end of R0 */
		{ R1_GPA - 8, 16 },			/* starts in the hole, ends in R1 */
		{ R1_GPA + R1_SIZE, 1 },		/* just past the end of RAM */
		{ 0x100000000ull, 16 },			/* far away */
		{ 0xfffffffffffff000ull, 0x2000 },	/* addr + len wraps around */
		{ 0, 0xffffffff },			/* longer than RAM */
	};
	unsigned int i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		init_q(f, 8, false, false);
		desc(f, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 1);
		desc(f, 1, bad[i].addr, bad[i].len, VRING_DESC_F_WRITE, 0);
		avail_add(f, 0);
		expect_broken(f, -EINVAL);
		assert_int_equal(vq_inflight(&f->vq), 0);
	}
	/* After re-init (device reset) the queue works again. */
	init_q(f, 8, false, false);
	desc(f, 0, BUF_GPA, 16, 0, 0);
	avail_add(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
}

static void test_total_length_overflow(void **state)
{
	struct fake *f = *state;
	struct vq_seg *segs = calloc(8192, sizeof(*segs));
	struct vq_chain ch = { .segs = segs, .cap = 8192 };
	struct vq_config cfg = { .name = "big", .size = 8192, .desc = 0x20000, .avail = 0x50000,
				 .used = 0x60000 };
	unsigned int i;

	/* 4096 readable descriptors of 1 MiB each, all the same RAM: 4 GiB > UINT32_MAX. */
	assert_int_equal(vq_init(&f->vq, &f->mem, &cfg), 0);
	for (i = 0; i < 4096; i++)
		desc_at(f, 0x20000, i, 0, (uint32_t)R0_SIZE, VRING_DESC_F_NEXT, (uint16_t)(i + 1));
	desc_at(f, 0x20000, 4095, 0, (uint32_t)R0_SIZE, 0, 0);
	w16(f, 0x50000 + 4, 0);
	w16(f, 0x50000 + 2, 1);
	assert_int_equal(vq_pop(&f->vq, &ch), -EINVAL);
	assert_true(vq_broken(&f->vq));
	/* 4095 of them (just under 4 GiB) are accepted. */
	assert_int_equal(vq_init(&f->vq, &f->mem, &cfg), 0);
	desc_at(f, 0x20000, 4094, 0, (uint32_t)R0_SIZE, 0, 0);
	assert_int_equal(vq_pop(&f->vq, &ch), 1);
	assert_int_equal(ch.n, 4095);
	assert_int_equal(ch.out_len, 4095u << 20);
	free(segs);
}

static void test_loops_and_bad_indexes(void **state)
{
	struct fake *f = *state;

	/* Self loop. */
	init_q(f, 8, false, false);
	desc(f, 3, BUF_GPA, 8, VRING_DESC_F_NEXT, 3);
	avail_add(f, 3);
	expect_broken(f, -EINVAL);
	/* Longer loop 0 -> 1 -> 2 -> 0. */
	init_q(f, 8, false, false);
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	desc(f, 1, BUF_GPA, 8, VRING_DESC_F_NEXT, 2);
	desc(f, 2, BUF_GPA, 8, VRING_DESC_F_NEXT, 0);
	avail_add(f, 0);
	expect_broken(f, -EINVAL);
	/* Loop of zero-length descriptors (nothing mapped, still bounded). */
	init_q(f, 8, false, false);
	desc(f, 0, 0, 0, VRING_DESC_F_NEXT, 1);
	desc(f, 1, 0, 0, VRING_DESC_F_NEXT, 0);
	avail_add(f, 0);
	expect_broken(f, -EINVAL);
	/* A chain using every descriptor once is fine (longest legal chain). */
	init_q(f, 8, false, false);
	for (int i = 0; i < 8; i++)
		desc(f, (unsigned int)i, BUF_GPA, 8, i < 7 ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	avail_add(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	assert_int_equal(f->ch.n, 8);
	/* next out of range. */
	init_q(f, 8, false, false);
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 8);
	avail_add(f, 0);
	expect_broken(f, -EINVAL);
	/* head out of range. */
	init_q(f, 8, false, false);
	avail_add(f, 8);
	expect_broken(f, -EINVAL);
	init_q(f, 8, false, false);
	avail_add(f, 0xffff);
	expect_broken(f, -EINVAL);
}

static void test_avail_idx_jump(void **state)
{
	struct fake *f = *state;

	init_q(f, 8, false, false);
	desc(f, 0, BUF_GPA, 8, 0, 0);
	w16(f, AVAIL_GPA + 2, 9);		/* 9 new buffers in a ring of 8 */
	expect_broken(f, -EINVAL);
	init_q(f, 8, false, false);
	w16(f, AVAIL_GPA + 2, 0xffff);		/* "backwards" = huge jump */
	expect_broken(f, -EINVAL);
}

static void test_readable_after_writable(void **state)
{
	struct fake *f = *state;

	init_q(f, 8, false, false);
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc(f, 1, BUF_GPA + 8, 8, 0, 0);
	avail_add(f, 0);
	expect_broken(f, -EINVAL);
	/* Even when the writable one is empty. */
	init_q(f, 8, false, false);
	desc(f, 0, BUF_GPA, 0, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc(f, 1, BUF_GPA + 8, 8, 0, 0);
	avail_add(f, 0);
	expect_broken(f, -EINVAL);
}

static void test_too_many_segments_for_device(void **state)
{
	struct fake *f = *state;

	init_q(f, 8, false, false);
	f->ch.cap = 2;
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	desc(f, 1, BUF_GPA, 8, VRING_DESC_F_NEXT, 2);
	desc(f, 2, BUF_GPA, 8, 0, 0);
	avail_add(f, 0);
	expect_broken(f, -E2BIG);
	f->ch.cap = 64;
}

/* ---- indirect descriptors ---- */

#define IND_GPA 0x8000ull

static void test_indirect_good(void **state)
{
	struct fake *f = *state;

	init_q(f, 8, false, true);
	/* A direct readable header, then an indirect table with data + status. */
	desc(f, 4, BUF_GPA, 16, VRING_DESC_F_NEXT, 6);
	/* WRITE on the indirect descriptor itself is ignored (§2.7.5.3.2). */
	desc(f, 6, IND_GPA, 3 * 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE, 0);
	desc_at(f, IND_GPA, 0, BUF_GPA + 0x100, 32, VRING_DESC_F_NEXT, 2);
	desc_at(f, IND_GPA, 2, BUF_GPA + 0x200, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc_at(f, IND_GPA, 1, BUF_GPA + 0x300, 1, VRING_DESC_F_WRITE, 0);
	avail_add(f, 4);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	assert_int_equal(f->ch.head, 4);
	assert_int_equal(f->ch.n, 4);
	assert_int_equal(f->ch.n_out, 2);
	assert_int_equal(f->ch.out_len, 48);
	assert_int_equal(f->ch.in_len, 65);
	assert_ptr_equal(f->ch.segs[3].addr, g(f, BUF_GPA + 0x300));
	vq_push(&f->vq, &f->ch, 65);
	assert_int_equal(r32(f, USED_GPA + 4), 4);
	/* An unaligned table in the second region is fine too. */
	desc(f, 0, R1_GPA + 0x1008, 16, VRING_DESC_F_INDIRECT, 0);
	desc_at(f, R1_GPA + 0x1008, 0, BUF_GPA, 8, 0, 0);
	avail_add(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	assert_int_equal(f->ch.n, 1);
}

static void indirect_case(struct fake *f, bool negotiated, uint64_t addr, uint32_t len,
			  uint16_t flags)
{
	init_q(f, 8, false, negotiated);
	desc(f, 0, addr, len, flags, 1);
	desc(f, 1, BUF_GPA, 8, 0, 0);
	avail_add(f, 0);
}

static void test_indirect_hostile(void **state)
{
	struct fake *f = *state;

	/* Entries of a valid-looking 2-entry table at IND_GPA. */
	desc_at(f, IND_GPA, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	desc_at(f, IND_GPA, 1, BUF_GPA, 8, 0, 0);

	indirect_case(f, false, IND_GPA, 32, VRING_DESC_F_INDIRECT);	/* not negotiated */
	expect_broken(f, -EINVAL);
	indirect_case(f, true, IND_GPA, 24, VRING_DESC_F_INDIRECT);	/* not a multiple of 16 */
	expect_broken(f, -EINVAL);
	indirect_case(f, true, IND_GPA, 0, VRING_DESC_F_INDIRECT);	/* empty */
	expect_broken(f, -EINVAL);
	indirect_case(f, true, IND_GPA, 16 * 9, VRING_DESC_F_INDIRECT);	/* > queue size */
	expect_broken(f, -EINVAL);
	indirect_case(f, true, 0x180000, 32, VRING_DESC_F_INDIRECT);	/* table in the hole */
	expect_broken(f, -EINVAL);
	indirect_case(f, true, R0_SIZE - 16, 32, VRING_DESC_F_INDIRECT);	/* straddles */
	expect_broken(f, -EINVAL);
	indirect_case(f, true, 0xfffffffffffffff0ull, 32, VRING_DESC_F_INDIRECT);	/* wraps */
	expect_broken(f, -EINVAL);
	indirect_case(f, true, IND_GPA, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT);
	expect_broken(f, -EINVAL);

	/* Nested indirect. */
	init_q(f, 8, false, true);
	desc(f, 0, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	desc_at(f, IND_GPA, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	desc_at(f, IND_GPA, 1, IND_GPA + 0x100, 16, VRING_DESC_F_INDIRECT, 0);
	avail_add(f, 0);
	expect_broken(f, -EINVAL);
	/* Loop inside the table. */
	init_q(f, 8, false, true);
	desc(f, 0, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	desc_at(f, IND_GPA, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	desc_at(f, IND_GPA, 1, BUF_GPA, 8, VRING_DESC_F_NEXT, 0);
	avail_add(f, 0);
	expect_broken(f, -EINVAL);
	/* next beyond the table. */
	init_q(f, 8, false, true);
	desc(f, 0, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	desc_at(f, IND_GPA, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 2);
	avail_add(f, 0);
	expect_broken(f, -EINVAL);
	/* Buffer outside RAM inside the table. */
	init_q(f, 8, false, true);
	desc(f, 0, IND_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	desc_at(f, IND_GPA, 0, 0x180000, 8, 0, 0);
	avail_add(f, 0);
	expect_broken(f, -EINVAL);
	/* Writable direct descriptor followed by a readable entry in the table. */
	init_q(f, 8, false, true);
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc(f, 1, IND_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	desc_at(f, IND_GPA, 0, BUF_GPA, 8, 0, 0);
	avail_add(f, 0);
	expect_broken(f, -EINVAL);
}

/* ---- notification suppression ---- */

static void test_notify_no_event_idx(void **state)
{
	struct fake *f = *state;

	init_q(f, 8, false, false);
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_WRITE, 0);
	avail_add(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	vq_push(&f->vq, &f->ch, 8);
	assert_true(vq_should_notify(&f->vq));
	w16(f, AVAIL_GPA, VRING_AVAIL_F_NO_INTERRUPT);		/* the driver polls */
	assert_false(vq_should_notify(&f->vq));
	w16(f, AVAIL_GPA, 0);

	/* Driver -> device: NO_NOTIFY in used->flags while the device is busy. */
	clear_dirty(f);
	vq_disable_notify(&f->vq);
	assert_int_equal(r16(f, USED_GPA), VRING_USED_F_NO_NOTIFY);
	assert_true(dirty(f, USED_GPA));
	assert_false(vq_enable_notify(&f->vq));			/* nothing new */
	assert_int_equal(r16(f, USED_GPA), 0);
	vq_disable_notify(&f->vq);
	avail_add(f, 0);					/* added while not listening */
	assert_true(vq_enable_notify(&f->vq));
}

static void test_notify_event_idx(void **state)
{
	struct fake *f = *state;
	uint64_t used_event = AVAIL_GPA + 4 + 2 * 8;
	uint64_t avail_event = USED_GPA + 4 + 8 * 8;
	int i;

	init_q(f, 8, true, false);
	for (i = 0; i < 8; i++)
		desc(f, (unsigned int)i, BUF_GPA, 8, VRING_DESC_F_WRITE, 0);
	/* First notification always goes out. */
	avail_add(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	vq_push(&f->vq, &f->ch, 8);				/* used idx 1 */
	assert_true(vq_should_notify(&f->vq));
	/* The driver wants an interrupt only once used idx passes 3 (used_event = 3). */
	w16(f, used_event, 3);
	for (i = 0; i < 3; i++) {
		avail_add(f, (uint16_t)i);
		assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
		vq_push(&f->vq, &f->ch, 8);
		/* used idx 2: no, 3: no, 4: yes (crossed used_event 3 -> entry 3 consumed) */
		if (i < 1)
			assert_false(vq_should_notify(&f->vq));
		else if (i == 1)
			assert_false(vq_should_notify(&f->vq));
		else
			assert_true(vq_should_notify(&f->vq));
	}
	/* A batch that jumps over used_event still notifies (idx 4 -> 7, event 5). */
	w16(f, used_event, 5);
	for (i = 0; i < 3; i++) {
		avail_add(f, (uint16_t)i);
		assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
		vq_push(&f->vq, &f->ch, 8);
	}
	assert_true(vq_should_notify(&f->vq));
	/* used_event far behind: nothing to say. */
	avail_add(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	vq_push(&f->vq, &f->ch, 8);
	assert_false(vq_should_notify(&f->vq));

	/* Driver -> device: avail_event tells the driver when to kick next. */
	clear_dirty(f);
	vq_disable_notify(&f->vq);		/* no-op with event idx */
	assert_false(vq_enable_notify(&f->vq));
	assert_int_equal(r16(f, avail_event), f->avail_idx);
	assert_true(dirty(f, avail_event));
	avail_add(f, 1);
	assert_true(vq_enable_notify(&f->vq));
}


/* ---- a guest rewriting its rings while the device walks them ---- */

struct scribbler {
	struct fake *f;
	volatile int stop;
	unsigned int seed;
};

static void *scribble(void *opaque)
{
	struct scribbler *sc = opaque;
	static const uint64_t addrs[] = { BUF_GPA, R0_SIZE - 8, 0x180000, R1_GPA + R1_SIZE - 4,
					  0xfffffffffffff000ull, IND_GPA };

	while (!sc->stop) {
		unsigned int r = rand_r(&sc->seed), r2 = rand_r(&sc->seed);
		unsigned int i = r % 8;
		/* Mostly plausible descriptors with a fair share of hostile ones. */
		uint64_t addr = r2 % 8 ? BUF_GPA + (r2 >> 8) % 0x1000 : addrs[(r2 >> 4) % 6];
		uint16_t flags = (uint16_t)((r >> 4) & VRING_DESC_F_WRITE);

		if ((r >> 6) % 8 == 0)
			flags |= VRING_DESC_F_NEXT;
		if ((r >> 9) % 16 == 0)
			flags |= VRING_DESC_F_INDIRECT;
		/* Racy on purpose: the walker must never trust two reads of the same field. */
		desc(sc->f, i, flags & VRING_DESC_F_INDIRECT ? IND_GPA : addr,
		     (r >> 12) % 16 ? (flags & VRING_DESC_F_INDIRECT ? 32 : 64) : 0xffffffffu,
		     flags, (uint16_t)((r >> 16) % 10));
		desc_at(sc->f, IND_GPA, (r >> 20) % 4, addr, 32, (uint16_t)((r2 >> 25) & 7),
			(uint16_t)((r >> 28) % 5));
		w16(sc->f, AVAIL_GPA + 4 + 2 * ((r >> 3) % 8), (uint16_t)((r >> 9) % 9));
		if ((r2 >> 20) % 4 == 0)
			w16(sc->f, AVAIL_GPA + 2,
			    (uint16_t)(sc->f->vq.last_avail_idx + (r2 >> 22) % 10));
	}
	return NULL;
}

static bool in_ram(struct fake *f, const struct vq_seg *sg)
{
	const uint8_t *p = sg->addr;
	const uint8_t *r0 = f->mem.regions[0].hva, *r1 = f->mem.regions[1].hva;

	return (p >= r0 && p + sg->len <= r0 + R0_SIZE) || (p >= r1 && p + sg->len <= r1 + R1_SIZE);
}

static void test_concurrent_guest_rewrites(void **state)
{
	struct fake *f = *state;
	struct scribbler sc = { .f = f, .seed = 1234 };
	struct timespec t0, t;
	unsigned int pops = 0, errors = 0, i;
	pthread_t tid;

	init_q(f, 8, true, true);
	assert_int_equal(pthread_create(&tid, NULL, scribble, &sc), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		int ret = vq_pop(&f->vq, &f->ch);

		if (ret > 0) {
			pops++;
			for (i = 0; i < f->ch.n; i++)
				assert_true(in_ram(f, &f->ch.segs[i]));
			assert_true(f->ch.n_out <= f->ch.n);
			vq_push(&f->vq, &f->ch, f->ch.in_len);
			vq_should_notify(&f->vq);
		} else if (ret < 0) {
			struct vq_config cfg = { .name = "race", .size = 8, .desc = DESC_GPA,
						 .avail = AVAIL_GPA, .used = USED_GPA,
						 .event_idx = true, .indirect = true };

			errors++;
			assert_int_equal(vq_init(&f->vq, &f->mem, &cfg), 0);	/* device reset */
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 300000000L);
	sc.stop = 1;
	pthread_join(tid, NULL);
	/* Both outcomes happened: chains accepted and hostile ones refused. */
	assert_true(pops > 0);
	assert_true(errors > 0);
}

/* ---- state ---- */

static void test_save_restore(void **state)
{
	struct fake *f = *state;
	struct vq_state st, bad;
	struct vq vq2;

	init_q(f, 8, true, true);
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_WRITE, 0);
	avail_add(f, 0);
	avail_add(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	vq_push(&f->vq, &f->ch, 8);
	assert_true(vq_should_notify(&f->vq));
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);		/* one in flight */
	vq_save(&f->vq, &st);
	assert_int_equal(st.size, 8);
	assert_int_equal(st.last_avail_idx, 2);
	assert_int_equal(st.used_idx, 1);
	assert_true(st.enabled && st.event_idx && st.indirect && st.signalled_used_valid);
	assert_int_equal(vq_restore(&vq2, &f->mem, &st, "restored"), 0);
	assert_int_equal(vq_inflight(&vq2), 1);
	vq_push(&vq2, &f->ch, 8);
	assert_int_equal(r16(f, USED_GPA + 2), 2);
	assert_int_equal(vq_pop(&vq2, &f->ch), 0);
	avail_add(f, 0);
	assert_int_equal(vq_pop(&vq2, &f->ch), 1);

	/* A hostile stream: bad size, rings outside RAM, more in flight than the ring holds. */
	bad = st;
	bad.size = 6;
	assert_int_equal(vq_restore(&vq2, &f->mem, &bad, "r"), -EINVAL);
	bad = st;
	bad.used = 0x180000;
	assert_int_equal(vq_restore(&vq2, &f->mem, &bad, "r"), -EINVAL);
	bad = st;
	bad.last_avail_idx = 100;
	bad.used_idx = 1;
	assert_int_equal(vq_restore(&vq2, &f->mem, &bad, "r"), -EINVAL);
	assert_false(vq_enabled(&vq2));
	/* A disabled queue restores to the reset state whatever else the struct holds. */
	bad = st;
	bad.enabled = 0;
	bad.size = 3;
	assert_int_equal(vq_restore(&vq2, &f->mem, &bad, "r"), 0);
	assert_false(vq_enabled(&vq2));
	vq_save(&vq2, &bad);
	assert_int_equal(bad.size, 0);
}

static void test_push_after_reset_is_dropped(void **state)
{
	struct fake *f = *state;

	init_q(f, 8, false, false);
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_WRITE, 0);
	avail_add(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->ch), 1);
	vq_reset(&f->vq);			/* the driver reset the device mid-request */
	vq_push(&f->vq, &f->ch, 8);
	assert_int_equal(r16(f, USED_GPA + 2), 0);
	assert_false(vq_should_notify(&f->vq));
	assert_false(vq_enable_notify(&f->vq));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pop_push_simple, setup, teardown),
		cmocka_unit_test_setup_teardown(test_push_clamps_and_marks_only_written, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_chains_and_index_wrap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_length_descriptors_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_desc_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_total_length_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loops_and_bad_indexes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_avail_idx_jump, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readable_after_writable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_segments_for_device, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_good, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_no_event_idx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_event_idx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_push_after_reset_is_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_guest_rewrites, setup, teardown),
	};

	return cmocka_run_group_tests_name("virtqueue", tests, NULL, NULL);
}
