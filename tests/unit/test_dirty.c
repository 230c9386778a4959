// SPDX-License-Identifier: MIT
/*
 * migrate/dirty.c, twice:
 *  - against a fake KVM (kvm_ioctl wrapped): slot bitmaps merged at the right pfns (also
 *    slots that do not start on a 64-page boundary), manual-protect CLEAR of exactly the bits
 *    taken, get-and-clear fallback, the vmm's bitmap OR-ed and cleared, the ring harvested
 *    (wrap-around, bogus slots ignored) and reset, first sync = all RAM;
 *  - against this machine's /dev/kvm (kvm_ioctl passes through; skipped without KVM): a
 *    real-mode guest writes a known handful of pages and each back-end must report exactly
 *    those. With MIG_DIRTY_BENCH_GIB=N it also times syncs of an N GiB mostly clean guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "migrate/dirty.h"
#include "migrate/pages.h"
#include "vmm/kvm.h"
#include "vmm/layout.h"
#include "vmm/memory.h"

/* ------------------------------------------------------------ fake KVM */

#define FAKE_VM_FD	1000
#define FAKE_SLOTS	2
#define FAKE_BM_WORDS	4096		/* 262144 pages per fake slot */

static struct {
	bool on;
	int cap_manual;			/* KVM_CHECK_EXTENSION results */
	int cap_ring;
	bool manual_enabled;
	uint64_t manual_args;
	uint32_t slot_flags[FAKE_SLOTS];
	uint64_t slot_words[FAKE_SLOTS];
	uint64_t *bm[FAKE_SLOTS];	/* KVM's dirty bitmaps */
	unsigned int gets, clears, resets, enables;
} fk;

int __real_kvm_ioctl(int fd, unsigned long req, void *arg);
int __wrap_kvm_ioctl(int fd, unsigned long req, void *arg);

int __wrap_kvm_ioctl(int fd, unsigned long req, void *arg)
{
	if (!fk.on)
		return __real_kvm_ioctl(fd, req, arg);
	assert_int_equal(fd, FAKE_VM_FD);
	switch (req) {
	case KVM_CHECK_EXTENSION:
		switch ((long)arg) {
		case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: return fk.cap_manual;
		case KVM_CAP_DIRTY_LOG_RING_ACQ_REL:	return 0;
		case KVM_CAP_DIRTY_LOG_RING:		return fk.cap_ring;
		}
		return 0;
	case KVM_ENABLE_CAP: {
		struct kvm_enable_cap *c = arg;

		fk.enables++;
		if (c->cap == KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) {
			fk.manual_enabled = true;
			fk.manual_args = c->args[0];
		}
		return 0;
	}
	case KVM_SET_USER_MEMORY_REGION: {
		struct kvm_userspace_memory_region *r = arg;

		assert_true(r->slot < FAKE_SLOTS);
		fk.slot_flags[r->slot] = r->flags;
		fk.slot_words[r->slot] = (r->memory_size / 4096 + 63) / 64;
		return 0;
	}
	case KVM_GET_DIRTY_LOG: {
		struct kvm_dirty_log *l = arg;

		assert_true(l->slot < FAKE_SLOTS);
		if (!(fk.slot_flags[l->slot] & KVM_MEM_LOG_DIRTY_PAGES))
			return -ENOENT;
		fk.gets++;
		/* Exactly the slot's bitmap size, as KVM writes it (ASan checks the buffer). */
		memcpy(l->dirty_bitmap, fk.bm[l->slot], fk.slot_words[l->slot] * 8);
		if (!fk.manual_enabled)		/* old semantics: get and clear */
			memset(fk.bm[l->slot], 0, fk.slot_words[l->slot] * 8);
		return 0;
	}
	case KVM_CLEAR_DIRTY_LOG: {
		struct kvm_clear_dirty_log *c = arg;
		const uint64_t *m = c->dirty_bitmap;
		unsigned int i;

		assert_true(fk.manual_enabled);
		/* KVM's rules: first_page 64-aligned, num_pages too unless it ends the slot. */
		assert_int_equal(c->first_page % 64, 0);
		assert_true(c->num_pages % 64 == 0 ||
			    (c->first_page + c->num_pages + 63) / 64 == fk.slot_words[c->slot]);
		assert_true((c->first_page + c->num_pages + 63) / 64 <= fk.slot_words[c->slot]);
		fk.clears++;
		for (i = 0; i < (c->num_pages + 63) / 64; i++)
			fk.bm[c->slot][c->first_page / 64 + i] &= ~m[i];
		return 0;
	}
	case KVM_RESET_DIRTY_RINGS:
		fk.resets++;
		return 0;
	}
	fail_msg("unexpected fake ioctl 0x%lx", req);
	return -ENOTTY;
}

/* A guest_mem built by hand: two slots, the second starting at an odd pfn (333). */
static void odd_mem(struct guest_mem *m)
{
	memset(m, 0, sizeof(*m));
	m->memfd = -1;
	m->size = 1000 * 4096ull;
	m->regions[0] = (struct guest_mem_region){ .gpa = 0, .size = 333 * 4096ull, .slot = 0 };
	m->regions[1] = (struct guest_mem_region){ .gpa = 4ull << 30, .size = 667 * 4096ull,
						   .fd_offset = 333 * 4096ull, .slot = 1 };
	m->nr_regions = 2;
	m->dirty_bitmap = calloc(16, 8);
}

static int fake_setup(void **state)
{
	unsigned int i;

	memset(&fk, 0, sizeof(fk));
	for (i = 0; i < FAKE_SLOTS; i++)
		fk.bm[i] = calloc(FAKE_BM_WORDS, 8);
	fk.on = true;
	return 0;
}

static int fake_teardown(void **state)
{
	unsigned int i;

	for (i = 0; i < FAKE_SLOTS; i++)
		free(fk.bm[i]);
	fk.on = false;
	return 0;
}

static bool bit(const uint64_t *bm, uint64_t n)
{
	return bm[n / 64] >> (n % 64) & 1;
}

static void assert_exactly(const uint64_t *bm, uint64_t nbits, const uint64_t *want, size_t n)
{
	size_t i;

	assert_int_equal(mig_bitmap_weight(bm, nbits), n);
	for (i = 0; i < n; i++)
		if (!bit(bm, want[i]))
			fail_msg("pfn %" PRIu64 " not reported", want[i]);
}

static void set_fake(unsigned int slot, uint64_t off)
{
	fk.bm[slot][off / 64] |= 1ull << (off % 64);
}

static void test_bitmap_manual(void **unused)
{
	static const uint64_t want[] = { 3, 5, 6, 332, 333, 363, 364, 999 };
	struct guest_mem m;
	struct mig_dirty d;
	uint64_t out[16] = { 0 }, n;

	odd_mem(&m);
	fk.cap_manual = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
	assert_int_equal(mig_dirty_init(&d, FAKE_VM_FD, &m, MIG_DIRTY_BITMAP, 0), 0);
	assert_int_equal(mig_dirty_sync(&d, out, &n), -EINVAL);	/* not started */
	assert_int_equal(mig_dirty_start(&d), 0);
	assert_true(fk.manual_enabled);
	assert_int_equal(fk.manual_args, 3);
	assert_int_equal(fk.slot_flags[0], KVM_MEM_LOG_DIRTY_PAGES);
	assert_int_equal(fk.slot_flags[1], KVM_MEM_LOG_DIRTY_PAGES);

	/* First sync: everything (round 0). */
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_int_equal(n, 1000);
	assert_int_equal(mig_bitmap_weight(out, 1000), 1000);
	assert_int_equal(out[15] >> (1000 % 64), 0);		/* nothing past the end */

	/* KVM bits in both slots + two vmm-written pages. */
	memset(out, 0, sizeof(out));
	set_fake(0, 3);
	set_fake(0, 332);
	set_fake(1, 0);
	set_fake(1, 30);
	set_fake(1, 31);
	set_fake(1, 666);
	guest_mem_mark_dirty(&m, 0x5000, 0x2000);		/* pages 5, 6 */
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_int_equal(n, 8);
	assert_exactly(out, 1000, want, 8);
	/* Exactly what was taken was cleared in KVM; the vmm bitmap was consumed. */
	assert_int_equal(mig_bitmap_weight(fk.bm[0], 333), 0);
	assert_int_equal(mig_bitmap_weight(fk.bm[1], 667), 0);
	assert_int_equal(mig_bitmap_weight(m.dirty_bitmap, 1000), 0);
	assert_int_equal(fk.clears, 2);

	/* Clean: nothing, no CLEAR calls; bits already in @out stay (OR semantics). */
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(fk.clears, 2);
	assert_int_equal(mig_bitmap_weight(out, 1000), 8);

	assert_int_equal(mig_dirty_stop(&d), 0);
	assert_int_equal(fk.slot_flags[0], 0);
	assert_int_equal(fk.slot_flags[1], 0);
	assert_int_equal(d.st.syncs, 3);
	assert_int_equal(d.st.pages_vmm, 2);
	mig_dirty_destroy(&d);
	free(m.dirty_bitmap);
}

/* A 70000-page slot is cleared in 128 MiB chunks, skipping chunks with no dirty page. */
static void test_bitmap_clear_chunks(void **unused)
{
	static const uint64_t want[] = { 5, 69999, 70000 };
	struct guest_mem m;
	struct mig_dirty d;
	uint64_t *out, n;

	memset(&m, 0, sizeof(m));
	m.memfd = -1;
	m.size = 71000 * 4096ull;
	m.regions[0] = (struct guest_mem_region){ .gpa = 0, .size = 70000 * 4096ull, .slot = 0 };
	m.regions[1] = (struct guest_mem_region){ .gpa = 4ull << 30, .size = 1000 * 4096ull,
						  .fd_offset = 70000 * 4096ull, .slot = 1 };
	m.nr_regions = 2;
	m.dirty_bitmap = calloc((71000 + 63) / 64, 8);
	out = calloc((71000 + 63) / 64, 8);
	fk.cap_manual = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
	assert_int_equal(mig_dirty_init(&d, FAKE_VM_FD, &m, MIG_DIRTY_BITMAP, 0), 0);
	assert_int_equal(mig_dirty_start(&d), 0);
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);	/* round 0 */

	memset(out, 0, (71000 + 63) / 64 * 8);
	set_fake(0, 5);			/* chunk 0 */
	set_fake(0, 69999);		/* chunk 2: the slot's last, partial (4464 pages) chunk */
	set_fake(1, 0);
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_exactly(out, 71000, want, 3);
	assert_int_equal(fk.clears, 3);	/* chunk 1 of slot 0 skipped; one for slot 1 */
	assert_int_equal(mig_bitmap_weight(fk.bm[0], 70000), 0);
	mig_dirty_destroy(&d);
	free(out);
	free(m.dirty_bitmap);
}

static void test_bitmap_get_and_clear(void **unused)
{
	static const uint64_t want[] = { 0, 400 };
	struct guest_mem m;
	struct mig_dirty d;
	uint64_t out[16] = { 0 }, n;

	odd_mem(&m);
	fk.cap_manual = 0;				/* an old kernel */
	assert_int_equal(mig_dirty_init(&d, FAKE_VM_FD, &m, MIG_DIRTY_BITMAP, 0), 0);
	assert_int_equal(mig_dirty_start(&d), 0);
	assert_false(fk.manual_enabled);
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_int_equal(n, 1000);
	memset(out, 0, sizeof(out));
	set_fake(0, 0);
	set_fake(1, 67);
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_exactly(out, 1000, want, 2);
	assert_int_equal(fk.clears, 0);
	memset(out, 0, sizeof(out));
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_int_equal(n, 0);
	mig_dirty_destroy(&d);
	free(m.dirty_bitmap);
}

static void test_ring_fake(void **unused)
{
	const uint32_t entries = 16;
	size_t ring_len = entries * sizeof(struct kvm_dirty_gfn);
	long pg = sysconf(_SC_PAGESIZE);
	struct kvm_dirty_gfn *ring;
	struct guest_mem m;
	struct mig_dirty d;
	uint64_t out[16] = { 0 }, n, want[40];
	unsigned int i, k = 0, nwant = 0;
	int vcpu_fd;

	odd_mem(&m);
	fk.cap_ring = 65536;
	assert_int_equal(mig_dirty_ring_enable(FAKE_VM_FD, 4096), 0);
	assert_int_equal(mig_dirty_ring_enable(FAKE_VM_FD, 8192), -EINVAL);	/* > 64 KiB */
	assert_int_equal(mig_dirty_ring_enable(FAKE_VM_FD, 1000), -EINVAL);	/* not 2^n */

	/* A memfd stands in for the vCPU fd: the ring lives at page 64 of its mapping. */
	vcpu_fd = memfd_create("fake-vcpu", MFD_CLOEXEC);
	assert_true(vcpu_fd >= 0);
	assert_int_equal(ftruncate(vcpu_fd, KVM_DIRTY_LOG_PAGE_OFFSET * pg + pg), 0);
	ring = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd,
		    KVM_DIRTY_LOG_PAGE_OFFSET * pg);
	assert_true(ring != MAP_FAILED);

	assert_int_equal(mig_dirty_init(&d, FAKE_VM_FD, &m, MIG_DIRTY_RING, entries), 0);
	assert_int_equal(mig_dirty_add_vcpu(&d, vcpu_fd), 0);
	assert_int_equal(mig_dirty_start(&d), 0);
	assert_false(fk.manual_enabled);		/* ring mode does not touch the log caps */
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_int_equal(n, 1000);
	assert_int_equal(fk.resets, 0);			/* nothing harvested, nothing to reset */

	/* Three rounds of 7 entries each: the ring (16) wraps. Bogus slot/offset ignored. */
	for (int round = 0; round < 3; round++) {
		memset(out, 0, sizeof(out));
		nwant = 0;
		for (i = 0; i < 7; i++, k++) {
			struct kvm_dirty_gfn *e = &ring[k % entries];
			uint32_t slot = i % 2;
			uint64_t off = (uint64_t)(round * 50 + i * 3);

			if (i == 6) {
				slot = 7;			/* no such slot */
			} else if (i == 5) {
				slot = 0;
				off = 333;			/* past slot 0's end */
			} else {
				want[nwant++] = (slot ? 333 : 0) + off;
			}
			e->slot = slot;
			e->offset = off;
			__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
		}
		assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
		assert_exactly(out, 1000, want, nwant);
		assert_int_equal(n, nwant);
		assert_int_equal(fk.resets, (unsigned int)round + 1);
		for (i = k - 7; i < k; i++)
			assert_int_equal(ring[i % entries].flags, KVM_DIRTY_GFN_F_RESET);
		/* KVM would now reset the entries: model it. */
		for (i = k - 7; i < k; i++)
			ring[i % entries].flags = 0;
	}

	/* Ring-full harvest from a "vCPU thread", then the sync returns what it collected. */
	ring[k % entries] = (struct kvm_dirty_gfn){ .flags = KVM_DIRTY_GFN_F_DIRTY, .slot = 1, .offset = 9 };
	k++;
	assert_int_equal(mig_dirty_ring_harvest(&d), 0);
	memset(out, 0, sizeof(out));
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	want[0] = 342;
	assert_exactly(out, 1000, want, 1);

	mig_dirty_destroy(&d);
	munmap(ring, ring_len);
	close(vcpu_fd);
	free(m.dirty_bitmap);
}

/* ------------------------------------------------------------ real KVM */

struct kvm_guest {
	int sys_fd, vm_fd, vcpu_fd;
	struct kvm_run *run;
	size_t run_size;
	struct guest_mem mem;
};

/*
 * Real-mode programs at 0x1000 / 0x1100 / 0x1200 (hand-assembled 16-bit code):
 *  A: es=0x1000; byte [es:0]=1 (0x10000); byte [es:0x3000]=2 (0x13000);
 *     es=0x7000; word [es:0xf000]=3 (0x7f000); hlt
 *  B: es=0x2000; byte [es:0]=5 (0x20000); byte [es:0x1fff]=6 (0x21fff);
 *     es=0x9000; byte [es:0xf000]=7 (0x9f000); hlt
 *  C: es=0x1000; cx=200; loop { byte [es:0]=1; es += 0x100 }  -> pages 0x10..0xd7; hlt
 */
static const uint8_t prog_a[] = {
	0xb8, 0x00, 0x10, 0x8e, 0xc0, 0x26, 0xc6, 0x06, 0x00, 0x00, 0x01,
	0x26, 0xc6, 0x06, 0x00, 0x30, 0x02, 0xb8, 0x00, 0x70, 0x8e, 0xc0,
	0x26, 0xc7, 0x06, 0x00, 0xf0, 0x03, 0x00, 0xf4,
};
static const uint8_t prog_b[] = {
	0xb8, 0x00, 0x20, 0x8e, 0xc0, 0x26, 0xc6, 0x06, 0x00, 0x00, 0x05,
	0x26, 0xc6, 0x06, 0xff, 0x1f, 0x06, 0xb8, 0x00, 0x90, 0x8e, 0xc0,
	0x26, 0xc6, 0x06, 0x00, 0xf0, 0x07, 0xf4,
};
static const uint8_t prog_c[] = {
	0xb8, 0x00, 0x10, 0x8e, 0xc0, 0xb9, 0xc8, 0x00,
	0x26, 0xc6, 0x06, 0x00, 0x00, 0x01, 0x8c, 0xc0, 0x05, 0x00, 0x01, 0x8e, 0xc0, 0xe2, 0xf1,
	0xf4,
};

static int guest_create(struct kvm_guest *g, uint64_t mem_size, bool ring)
{
	struct kvm_sregs sregs;
	int ret;

	memset(g, 0, sizeof(*g));
	g->sys_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (g->sys_fd < 0)
		return -errno;
	g->vm_fd = ioctl(g->sys_fd, KVM_CREATE_VM, 0);
	if (g->vm_fd < 0) {
		close(g->sys_fd);
		return -ENODEV;
	}
	if (ring) {
		ret = mig_dirty_ring_enable(g->vm_fd, 0);
		assert_int_equal(ret, 0);
	}
	assert_int_equal(guest_mem_init(&g->mem, mem_size), 0);
	assert_int_equal(guest_mem_map_kvm(&g->mem, g->vm_fd, 0), 0);
	memcpy((uint8_t *)g->mem.base + 0x1000, prog_a, sizeof(prog_a));
	memcpy((uint8_t *)g->mem.base + 0x1100, prog_b, sizeof(prog_b));
	memcpy((uint8_t *)g->mem.base + 0x1200, prog_c, sizeof(prog_c));
	g->vcpu_fd = ioctl(g->vm_fd, KVM_CREATE_VCPU, 0);
	assert_true(g->vcpu_fd >= 0);
	g->run_size = (size_t)ioctl(g->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	g->run = mmap(NULL, g->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, g->vcpu_fd, 0);
	assert_true(g->run != MAP_FAILED);
	assert_int_equal(ioctl(g->vcpu_fd, KVM_GET_SREGS, &sregs), 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	assert_int_equal(ioctl(g->vcpu_fd, KVM_SET_SREGS, &sregs), 0);
	return 0;
}

static void guest_run(struct kvm_guest *g, uint64_t rip)
{
	struct kvm_regs regs = { .rip = rip, .rflags = 2 };
	int i;

	assert_int_equal(ioctl(g->vcpu_fd, KVM_SET_REGS, &regs), 0);
	for (i = 0; i < 100; i++) {		/* bounded: these programs exit at once */
		assert_int_equal(ioctl(g->vcpu_fd, KVM_RUN, 0), 0);
		if (g->run->exit_reason == KVM_EXIT_HLT)
			return;
		fail_msg("unexpected exit %u", g->run->exit_reason);
	}
	fail_msg("guest did not halt");
}

static void guest_destroy(struct kvm_guest *g)
{
	munmap(g->run, g->run_size);
	close(g->vcpu_fd);
	guest_mem_destroy(&g->mem);
	close(g->vm_fd);
	close(g->sys_fd);
}

static void real_kvm(enum mig_dirty_mode mode)
{
	static const uint64_t want_a[] = { 0x10, 0x13, 0x7f };
	static const uint64_t want_b[] = { 0x20, 0x21, 0x9f, 0x50 };
	struct kvm_guest g;
	struct mig_dirty d;
	uint64_t *out, n, npages = (4u << 20) / 4096, i;

	fk.on = false;
	if (access("/dev/kvm", R_OK | W_OK) || guest_create(&g, 4u << 20, mode == MIG_DIRTY_RING) < 0)
		skip();
	out = calloc(npages / 64, 8);
	assert_int_equal(mig_dirty_init(&d, g.vm_fd, &g.mem, mode, 0), 0);
	assert_int_equal(mig_dirty_add_vcpu(&d, g.vcpu_fd), 0);
	assert_int_equal(mig_dirty_start(&d), 0);
	if (mode == MIG_DIRTY_BITMAP)
		assert_true(d.manual);			/* this KVM has manual protect */

	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_int_equal(n, npages);			/* round 0 */

	memset(out, 0, npages / 8);
	guest_run(&g, 0x1000);
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_exactly(out, npages, want_a, 3);
	assert_int_equal(((uint8_t *)g.mem.base)[0x13000], 2);

	memset(out, 0, npages / 8);
	guest_run(&g, 0x1100);
	guest_mem_mark_dirty(&g.mem, 0x50010, 16);	/* a "device" write */
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_exactly(out, npages, want_b, 4);

	/* Write-protection was re-armed: program A again reports its pages again. */
	memset(out, 0, npages / 8);
	guest_run(&g, 0x1000);
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_exactly(out, npages, want_a, 3);

	memset(out, 0, npages / 8);
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_int_equal(n, 0);

	memset(out, 0, npages / 8);
	guest_run(&g, 0x1200);
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	assert_int_equal(n, 200);
	for (i = 0x10; i < 0x10 + 200; i++)
		assert_true(bit(out, i));

	assert_int_equal(mig_dirty_stop(&d), 0);
	mig_dirty_destroy(&d);
	free(out);
	guest_destroy(&g);
}

static void test_kvm_bitmap(void **unused) { real_kvm(MIG_DIRTY_BITMAP); }

/* Send every page set in @bm through RAM/RAM_ZERO messages into @rx; returns messages sent. */
static unsigned int send_round(struct mig_pages_tx *tx, struct mig_pages_rx *rx, uint64_t *bm)
{
	struct mig_buf ram, zero;
	struct mig_hdr h;
	uint64_t pos = 0;
	unsigned int msgs = 0;
	int ret;

	assert_int_equal(mig_pages_buf_alloc_ram(tx, &ram), 0);
	assert_int_equal(mig_pages_buf_alloc_zero(&zero), 0);
	while ((ret = mig_pages_tx_next(tx, bm, &pos, &ram, &zero)) > 0) {
		if (zero.len) {
			assert_int_equal(mig_hdr_decode(zero.data, &h), 0);
			assert_int_equal(mig_pages_rx_zero(rx, zero.data + MIG_HDR_LEN, h.len), 0);
			msgs++;
		}
		if (ram.len) {
			assert_int_equal(mig_hdr_decode(ram.data, &h), 0);
			assert_int_equal(mig_pages_rx_ram(rx, ram.data + MIG_HDR_LEN, h.len), 0);
			msgs++;
		}
	}
	assert_int_equal(ret, 0);
	mig_buf_free(&ram);
	mig_buf_free(&zero);
	return msgs;
}

/*
 * dirty + pages together on a real guest, as the precopy loop will use them: round 0 (all
 * RAM), rounds after the guest and a "device" wrote pages, then a final round with the vCPU
 * stopped; the destination's RAM must equal the source's byte for byte, and the later
 * rounds must send only the dirtied pages.
 */
static void precopy_pipeline(enum mig_dirty_mode mode)
{
	struct kvm_guest g;
	struct guest_mem dst;
	struct mig_dirty d;
	struct mig_pages_tx tx;
	struct mig_pages_rx rx;
	uint64_t npages = (4u << 20) / 4096, *bm, n, before;

	fk.on = false;
	if (access("/dev/kvm", R_OK | W_OK) || guest_create(&g, 4u << 20, mode == MIG_DIRTY_RING) < 0)
		skip();
	assert_int_equal(guest_mem_init(&dst, g.mem.size), 0);
	bm = calloc(npages / 64, 8);
	assert_int_equal(mig_dirty_init(&d, g.vm_fd, &g.mem, mode, 0), 0);
	assert_int_equal(mig_dirty_add_vcpu(&d, g.vcpu_fd), 0);
	assert_int_equal(mig_dirty_start(&d), 0);
	assert_int_equal(mig_pages_tx_init(&tx, &g.mem, 1, 0), 0);
	assert_int_equal(mig_pages_rx_init(&rx, &dst), 0);

	/* Round 0: everything; most of it holes. */
	assert_int_equal(mig_dirty_sync(&d, bm, &n), 0);
	assert_int_equal(n, npages);
	send_round(&tx, &rx, bm);
	assert_int_equal(tx.st.pages_data, 1);		/* the page holding the programs */

	/* Round 1: the guest wrote 3 pages, and the page of code was not rewritten. */
	guest_run(&g, 0x1000);
	assert_int_equal(mig_dirty_sync(&d, bm, &n), 0);
	assert_int_equal(n, 3);
	before = tx.st.pages_data;
	send_round(&tx, &rx, bm);
	assert_int_equal(tx.st.pages_data - before, 3);

	/* Round 2 (final, vCPU stopped): guest writes + a vmm write + a page zeroed again. */
	guest_run(&g, 0x1100);
	memset((uint8_t *)g.mem.base + 0x13000, 0, 4096);
	guest_mem_mark_dirty(&g.mem, 0x13000, 4096);
	strcpy((char *)g.mem.base + 0x50000, "used ring");
	guest_mem_mark_dirty(&g.mem, 0x50000, 10);
	assert_int_equal(mig_dirty_sync(&d, bm, &n), 0);
	assert_int_equal(n, 5);
	send_round(&tx, &rx, bm);
	assert_int_equal(memcmp(g.mem.base, dst.base, g.mem.size), 0);

	mig_pages_rx_destroy(&rx);
	mig_pages_tx_destroy(&tx);
	mig_dirty_destroy(&d);
	free(bm);
	guest_mem_destroy(&dst);
	guest_destroy(&g);
}

static void test_kvm_precopy_bitmap(void **unused) { precopy_pipeline(MIG_DIRTY_BITMAP); }
static void test_kvm_precopy_ring(void **unused) { precopy_pipeline(MIG_DIRTY_RING); }
static void test_kvm_ring(void **unused) { real_kvm(MIG_DIRTY_RING); }

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* MIG_DIRTY_BENCH_GIB=N: cost of syncing an N GiB guest that is mostly clean. */
static void bench(enum mig_dirty_mode mode, uint64_t gib)
{
	struct kvm_guest g;
	struct mig_dirty d;
	uint64_t npages = (gib << 30) / 4096, *out, n, t, first, clean[21], dirty[11];
	unsigned int i;

	if (guest_create(&g, gib << 30, mode == MIG_DIRTY_RING) < 0)
		skip();
	out = calloc(npages / 64, 8);
	assert_int_equal(mig_dirty_init(&d, g.vm_fd, &g.mem, mode, 0), 0);
	assert_int_equal(mig_dirty_add_vcpu(&d, g.vcpu_fd), 0);
	t = now_ns();
	assert_int_equal(mig_dirty_start(&d), 0);
	t = now_ns() - t;
	assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
	first = d.st.last_sync_ns;
	assert_int_equal(n, npages);
	for (i = 0; i < 21; i++) {
		assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
		assert_int_equal(n, 0);
		clean[i] = d.st.last_sync_ns;
	}
	for (i = 0; i < 11; i++) {
		guest_run(&g, 0x1200);
		assert_int_equal(mig_dirty_sync(&d, out, &n), 0);
		assert_int_equal(n, 200);
		dirty[i] = d.st.last_sync_ns;
	}
	qsort(clean, 21, 8, cmp_u64);
	qsort(dirty, 11, 8, cmp_u64);
	printf("dirty-bench: mode=%s guest=%" PRIu64 " GiB start=%.3f ms first-sync(all)=%.3f ms "
	       "clean-sync median=%.1f us (min %.1f, max %.1f) 200-dirty-sync median=%.1f us\n",
	       mode == MIG_DIRTY_RING ? "ring" : "bitmap", gib, t / 1e6, first / 1e6,
	       clean[10] / 1e3, clean[0] / 1e3, clean[20] / 1e3, dirty[5] / 1e3);
	mig_dirty_destroy(&d);
	free(out);
	guest_destroy(&g);
}

static void test_bench(void **unused)
{
	const char *v = getenv("MIG_DIRTY_BENCH_GIB");
	uint64_t gib = v ? strtoull(v, NULL, 0) : 0;

	fk.on = false;
	if (!gib || access("/dev/kvm", R_OK | W_OK))
		skip();
	bench(MIG_DIRTY_BITMAP, gib);
	bench(MIG_DIRTY_RING, gib);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bitmap_manual, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_bitmap_clear_chunks, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_bitmap_get_and_clear, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_ring_fake, fake_setup, fake_teardown),
		cmocka_unit_test(test_kvm_bitmap),
		cmocka_unit_test(test_kvm_ring),
		cmocka_unit_test(test_kvm_precopy_bitmap),
		cmocka_unit_test(test_kvm_precopy_ring),
		cmocka_unit_test(test_bench),
	};
	return cmocka_run_group_tests_name("dirty", tests, NULL, NULL);
}
