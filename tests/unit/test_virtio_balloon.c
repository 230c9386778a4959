// SPDX-License-Identifier: MIT
/*
 * virtio-balloon against a fake guest: guest RAM is a real memfd (guest_mem_init), so the
 * hole punching is real and its effect is measured (memfd blocks, RssShmem, pages reading zero,
 * migration dirty bits); the driver side is played here through the virtio-pci registers and
 * split rings written into that RAM, with kicks going BAR notify -> eventfd -> event loop.
 * Covered: features and config space, inflate/deflate, the statsq protocol (hold, return,
 * refill, timed refresh), every malformed-buffer case (-> DEVICE_NEEDS_RESET, nothing
 * released), state save/load (plain struct and TLV stream, hostile states), the ctl commands.
 * kvm_ioctl is mocked (kvm_mock.h): no KVM needed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <linux/virtio_balloon.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>

#include "kvm_mock.h"
#include "vmm/ctl.h"
#include "vmm/irq.h"
#include "vmm/lib/evloop.h"
#include "vmm/memory.h"
#include "vmm/state.h"
#include "vmm/virtio/balloon.h"
#include "vmm/virtio/pci.h"

#define RAM		(64ull << 20)
#define PG		4096ull
#define RING_BASE	0x10000ull		/* queue q: desc/avail/used at + q * 0x4000 */
#define BUF_BASE	0x40000ull		/* PFN arrays: 0x40000 .. 0x7ffff */
#define STATBUF		0x80000ull
#define DATA		(16ull << 20)		/* pages the tests inflate */
#define QSZ_PFN		128
#define QSZ_STATS	8
#ifndef VIRTIO_PCI_ISR_QUEUE
#define VIRTIO_PCI_ISR_QUEUE	0x1
#endif

#define S_ALL (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK | \
	       VIRTIO_CONFIG_S_DRIVER_OK)
#define F_DEFAULT ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_BALLOON_F_STATS_VQ) | \
		   (1ull << VIRTIO_BALLOON_F_DEFLATE_ON_OOM))

struct ring {
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t size, next_desc, avail_idx;
};

struct fx {
	struct guest_mem mem;
	struct evloop loop;
	struct irq irq;
	struct pci_bus pb;
	struct virtio_balloon *b;
	struct virtio_pci *vp;
	struct ring r[3];
	uint64_t buf_next;		/* bump allocator in [BUF_BASE, STATBUF) */
};

static struct fx *fx_new(const struct virtio_balloon_opts *opts)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM };
	struct virtio_pci_env env;

	assert_non_null(f);
	memset(&mock, 0, sizeof(mock));
	assert_int_equal(evloop_init(&f->loop, 64), 0);
	assert_int_equal(guest_mem_init(&f->mem, RAM), 0);
	assert_int_equal(irq_init(&f->irq, 42, 0), 0);
	penv.irq = &f->irq;
	assert_int_equal(pci_init(&f->pb, &penv), 0);
	env = (struct virtio_pci_env){ .pci = &f->pb, .irq = &f->irq, .loop = &f->loop, .vm_fd = -1 };
	assert_int_equal(virtio_balloon_create(&env, &f->mem, "balloon0", opts, &f->b), 0);
	f->vp = f->pb.slots[1]->opaque;
	f->buf_next = BUF_BASE;
	/* Rings and driver buffers resident from the start: memfd figures then move only with
	 * what the balloon releases and the data pages a test touches. */
	memset(guest_mem_ptr(&f->mem, RING_BASE, STATBUF + 0x10000 - RING_BASE), 0,
	       STATBUF + 0x10000 - RING_BASE);
	return f;
}

static void fx_free(struct fx *f)
{
	virtio_balloon_destroy(f->b);
	pci_destroy(&f->pb);
	irq_destroy(&f->irq);
	evloop_destroy(&f->loop);
	guest_mem_destroy(&f->mem);
	free(f);
}

static int setup(void **state)
{
	/* No timer unless a test asks: stats returns must come from the test's own actions. */
	struct virtio_balloon_opts o = { .stats_interval_ns = 0, .deflate_on_oom = true };

	*state = fx_new(&o);
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

/* ---- driver side ---- */

static uint32_t rd(struct fx *f, uint32_t off, uint32_t len)
{
	uint32_t v = 0;

	virtio_pci_bar_read(f->vp, off, &v, len);
	return v;
}

static void wr(struct fx *f, uint32_t off, uint32_t len, uint32_t v)
{
	virtio_pci_bar_write(f->vp, off, &v, len);
}

static uint8_t dev_status(struct fx *f) { return (uint8_t)rd(f, VIRTIO_PCI_COMMON_STATUS, 1); }
static uint8_t isr(struct fx *f) { return (uint8_t)rd(f, VIRTIO_PCI_ISR_OFF, 1); }	/* read clears */

static uint64_t dev_features(struct fx *f)
{
	uint64_t v;

	wr(f, VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
	v = rd(f, VIRTIO_PCI_COMMON_DF, 4);
	wr(f, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	return v | (uint64_t)rd(f, VIRTIO_PCI_COMMON_DF, 4) << 32;
}

static void setup_ring(struct fx *f, unsigned int q, uint16_t size)
{
	uint64_t base = RING_BASE + q * 0x4000ull;
	struct ring *r = &f->r[q];

	r->desc = guest_mem_ptr(&f->mem, base, 16ull * size);
	r->avail = guest_mem_ptr(&f->mem, base + 0x1000, 6 + 2ull * size);
	r->used = guest_mem_ptr(&f->mem, base + 0x2000, 6 + 8ull * size);
	assert_true(r->desc && r->avail && r->used);
	memset(r->desc, 0, 16ull * size);
	memset(r->avail, 0, 6 + 2ull * size);
	memset(r->used, 0, 6 + 8ull * size);
	r->size = size;
	r->next_desc = r->avail_idx = 0;
	wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
	wr(f, VIRTIO_PCI_COMMON_Q_SIZE, 2, size);
	wr(f, VIRTIO_PCI_COMMON_Q_DESCLO, 4, (uint32_t)base);
	wr(f, VIRTIO_PCI_COMMON_Q_AVAILLO, 4, (uint32_t)(base + 0x1000));
	wr(f, VIRTIO_PCI_COMMON_Q_USEDLO, 4, (uint32_t)(base + 0x2000));
	wr(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
}

/* Reset, negotiate @feat, set up @nq queues, DRIVER_OK. */
static void drv_start(struct fx *f, uint64_t feat, unsigned int nq)
{
	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	wr(f, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)feat);
	wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	wr(f, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)(feat >> 32));
	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, S_ALL & ~VIRTIO_CONFIG_S_DRIVER_OK);
	for (unsigned int q = 0; q < nq; q++)
		setup_ring(f, q, q == 2 ? QSZ_STATS : QSZ_PFN);
	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, S_ALL);
	assert_int_equal(dev_status(f), S_ALL);
	(void)isr(f);
}

/* Add one chain of @n descriptors (gpa, len, flags each) to queue @q; returns the head. */
static uint16_t post_chain(struct fx *f, unsigned int q, unsigned int n, const uint64_t *gpa,
			   const uint32_t *len, const uint16_t *flags)
{
	struct ring *r = &f->r[q];
	uint16_t head = r->next_desc % r->size;

	for (unsigned int i = 0; i < n; i++) {
		uint16_t d = (r->next_desc++) % r->size;

		r->desc[d] = (struct vring_desc){ gpa[i], len[i], flags ? flags[i] : 0,
						  (uint16_t)(r->next_desc % r->size) };
		if (i + 1 < n)
			r->desc[d].flags |= VRING_DESC_F_NEXT;
	}
	r->avail->ring[r->avail_idx % r->size] = head;
	r->avail_idx++;
	__atomic_store_n(&r->avail->idx, r->avail_idx, __ATOMIC_RELEASE);
	return head;
}

static uint16_t post(struct fx *f, unsigned int q, uint64_t gpa, uint32_t len, uint16_t flags)
{
	return post_chain(f, q, 1, &gpa, &len, &flags);
}

/* Write @n PFNs as le32 into a fresh buffer in guest RAM; returns its gpa. */
static uint64_t pfn_buf(struct fx *f, const uint32_t *pfns, unsigned int n)
{
	uint64_t gpa = f->buf_next;
	uint32_t *p = guest_mem_ptr(&f->mem, gpa, 4ull * n);

	assert_non_null(p);
	assert_true(gpa + 4ull * n <= STATBUF);
	for (unsigned int i = 0; i < n; i++)
		p[i] = htole32(pfns[i]);
	f->buf_next = (gpa + 4ull * n + 15) & ~15ull;
	return gpa;
}

/* The guest's notify write, served by the event loop (bounded wait for the kick to land). */
static void kick(struct fx *f, unsigned int q)
{
	uint64_t before = f->vp->notify[q].kicks;
	uint16_t v = (uint16_t)q;

	virtio_pci_bar_write(f->vp, VIRTIO_PCI_NOTIFY_OFF + q * VIRTIO_PCI_NOTIFY_MULT, &v, 2);
	for (int i = 0; i < 100 && f->vp->notify[q].kicks == before; i++)
		assert_true(evloop_run_once(&f->loop, 10 * 1000 * 1000) >= 0);
	assert_true(f->vp->notify[q].kicks > before);
}

static uint16_t used_idx(struct fx *f, unsigned int q)
{
	return __atomic_load_n(&f->r[q].used->idx, __ATOMIC_ACQUIRE);
}

/*
 * Kick the way Linux's driver does after adding buffers since avail index @old: only if the
 * device asked for it (avail_event with EVENT_IDX, else used->flags). A device that forgets
 * to ask would hang a real driver: fail then.
 */
static void drv_kick(struct fx *f, unsigned int q, uint16_t old, bool event_idx)
{
	struct ring *r = &f->r[q];
	bool need;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (event_idx) {
		uint16_t ev = __atomic_load_n((uint16_t *)&r->used->ring[r->size], __ATOMIC_ACQUIRE);

		need = (uint16_t)(r->avail_idx - ev - 1) < (uint16_t)(r->avail_idx - old);
	} else {
		need = !(__atomic_load_n(&r->used->flags, __ATOMIC_ACQUIRE) & VRING_USED_F_NO_NOTIFY);
	}
	if (!need)
		fail_msg("queue %u: the device did not ask for a kick at avail %u", q, r->avail_idx);
	kick(f, q);
}

/* The driver consumed the used ring up to its index (Linux then moves used_event there). */
static void drv_consume(struct fx *f, unsigned int q)
{
	struct ring *r = &f->r[q];

	__atomic_store_n(&r->avail->ring[r->size], used_idx(f, q), __ATOMIC_RELEASE);
}

static int64_t memfd_bytes(struct fx *f)
{
	struct stat st;

	assert_int_equal(fstat(f->mem.memfd, &st), 0);
	return (int64_t)st.st_blocks * 512;
}

/* RssShmem of this process in KiB (the memfd pages mapped here), -1 if unavailable. */
static long rss_shmem_kib(void)
{
	char line[128];
	long v = -1;
	FILE *fp = fopen("/proc/self/status", "r");

	if (!fp)
		return -1;
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "RssShmem: %ld", &v) == 1)
			break;
	fclose(fp);
	return v;
}

static bool page_is(struct fx *f, uint64_t gpa, uint8_t val)
{
	const uint8_t *p = guest_mem_ptr(&f->mem, gpa, PG);

	for (uint64_t i = 0; i < PG; i++)
		if (p[i] != val)
			return false;
	return true;
}

static bool dirty(struct fx *f, uint64_t gpa)
{
	uint64_t pfn = gpa / PG;

	return f->mem.dirty_bitmap[pfn / 64] & (1ull << (pfn % 64));
}

static void fill(struct fx *f, uint64_t gpa, uint64_t len, uint8_t val)
{
	memset(guest_mem_ptr(&f->mem, gpa, len), val, len);
}

static struct virtio_balloon_info info(struct fx *f)
{
	struct virtio_balloon_info in;

	virtio_balloon_get_info(f->b, &in);
	return in;
}

static bool needs_reset(struct fx *f) { return dev_status(f) & VIRTIO_CONFIG_S_NEEDS_RESET; }

/* ---- features and configuration space ---- */

static void test_features_config(void **state)
{
	struct fx *f = *state;
	uint64_t df = dev_features(f);
	uint8_t gen;

	assert_true(df & (1ull << VIRTIO_F_VERSION_1));
	assert_true(df & (1ull << VIRTIO_BALLOON_F_STATS_VQ));
	assert_true(df & (1ull << VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
	assert_false(df & (1ull << VIRTIO_BALLOON_F_MUST_TELL_HOST));
	assert_false(df & (1ull << VIRTIO_BALLOON_F_FREE_PAGE_HINT));
	assert_false(df & (1ull << VIRTIO_BALLOON_F_REPORTING));
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_NUMQ, 2), 3);
	assert_int_equal(rd(f, VIRTIO_PCI_DEVCFG_OFF, 4), 0);	/* empty balloon */

	/* Before the driver is live: the value changes, no interrupt. */
	assert_int_equal(virtio_balloon_set_target(f->b, RAM - (16ull << 20)), 0);
	assert_int_equal(rd(f, VIRTIO_PCI_DEVCFG_OFF, 4), 4096);
	assert_int_equal(isr(f), 0);
	assert_int_equal(info(f).target_bytes, RAM - (16ull << 20));

	drv_start(f, F_DEFAULT, 3);
	gen = (uint8_t)rd(f, VIRTIO_PCI_COMMON_CFGGENERATION, 1);
	assert_int_equal(virtio_balloon_set_target(f->b, RAM - (32ull << 20) + 100), 0);	/* rounds down */
	assert_int_equal(rd(f, VIRTIO_PCI_DEVCFG_OFF, 4), 8192);
	assert_true(isr(f) & VIRTIO_PCI_ISR_CONFIG);
	assert_int_not_equal(rd(f, VIRTIO_PCI_COMMON_CFGGENERATION, 1), gen);
	/* Same target again: no new interrupt. */
	assert_int_equal(virtio_balloon_set_target(f->b, RAM - (32ull << 20)), 0);
	assert_int_equal(isr(f), 0);
	assert_int_equal(virtio_balloon_set_target(f->b, RAM + PG), -EINVAL);
	assert_int_equal(rd(f, VIRTIO_PCI_DEVCFG_OFF, 4), 8192);
	assert_int_equal(virtio_balloon_set_target(f->b, 0), 0);
	assert_int_equal(rd(f, VIRTIO_PCI_DEVCFG_OFF, 4), RAM / PG);
	assert_int_equal(virtio_balloon_set_target(f->b, RAM), 0);
	assert_int_equal(rd(f, VIRTIO_PCI_DEVCFG_OFF, 4), 0);
	assert_int_equal(virtio_balloon_set_target(f->b, RAM - (32ull << 20)), 0);

	/* actual is the driver's: whole and partial writes; num_pages is read-only for it. */
	wr(f, VIRTIO_PCI_DEVCFG_OFF + 4, 4, 100);
	assert_int_equal(info(f).actual, 100);
	assert_int_equal(info(f).actual_bytes, RAM - 100 * PG);
	wr(f, VIRTIO_PCI_DEVCFG_OFF + 5, 1, 1);
	assert_int_equal(info(f).actual, 356);
	assert_int_equal(rd(f, VIRTIO_PCI_DEVCFG_OFF + 4, 4), 356);
	wr(f, VIRTIO_PCI_DEVCFG_OFF, 4, 7);
	assert_int_equal(rd(f, VIRTIO_PCI_DEVCFG_OFF, 4), 8192);
	wr(f, VIRTIO_PCI_DEVCFG_OFF + 2, 4, 0x00090000);	/* bytes 2,3 ignored; 4,5 = 9,0 */
	assert_int_equal(rd(f, VIRTIO_PCI_DEVCFG_OFF, 4), 8192);
	assert_int_equal(info(f).actual, 9);
	/* Out of range of the 8-byte config space: the transport drops it. */
	wr(f, VIRTIO_PCI_DEVCFG_OFF + 8, 4, 0xffffffff);
	assert_int_equal(info(f).actual, 9);
	/* An absurd actual (guest-controlled) does not underflow actual_bytes. */
	wr(f, VIRTIO_PCI_DEVCFG_OFF + 4, 4, 0xffffffff);
	assert_int_equal(info(f).actual_bytes, 0);
	assert_true(info(f).driver_ok && info(f).stats_vq && info(f).deflate_on_oom);

	/* Reset: the driver holds nothing; the host's target stays. */
	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	assert_int_equal(info(f).actual, 0);
	assert_int_equal(info(f).num_pages, 8192);
	assert_false(info(f).driver_ok);

	/* deflate_on_oom = false: not offered. */
	{
		struct virtio_balloon_opts o = { 0 };
		struct fx *g = fx_new(&o);

		assert_false(dev_features(g) & (1ull << VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
		assert_true(dev_features(g) & (1ull << VIRTIO_BALLOON_F_STATS_VQ));
		fx_free(g);
	}
	assert_string_equal(virtio_balloon_stat_name(BALLOON_S_MEMFREE), "free_memory");
	assert_null(virtio_balloon_stat_name(BALLOON_S_NR));
}

/* ---- inflate / deflate ---- */

static void test_inflate_releases_memory(void **state)
{
	struct fx *f = *state;
	enum { N = 2048, PER = 256 };
	static uint32_t pfns[N];
	int64_t before, after;
	long rss0, rss1;
	uint16_t u0;

	drv_start(f, F_DEFAULT | (1ull << VIRTIO_RING_F_EVENT_IDX), 3);
	fill(f, DATA, 32ull << 20, 0xaa);

	/* 8 MiB as 2048 PFNs, in a scrambled order, 256 per buffer (what Linux sends). */
	for (unsigned int i = 0; i < N; i++)
		pfns[i] = (uint32_t)(DATA / PG) + (i * 1237u) % N;	/* 1237 is odd: a permutation */
	u0 = used_idx(f, 0);
	for (unsigned int i = 0; i < N; i += PER)
		post(f, 0, pfn_buf(f, pfns + i, PER), PER * 4, 0);
	/* Measured after the driver wrote its buffers (they are guest RAM too). */
	before = memfd_bytes(f);
	rss0 = rss_shmem_kib();
	assert_true(before >= (int64_t)(32ull << 20));
	drv_kick(f, 0, u0, true);
	assert_true(isr(f) & VIRTIO_PCI_ISR_QUEUE);
	drv_consume(f, 0);
	assert_int_equal(used_idx(f, 0), (uint16_t)(u0 + N / PER));
	assert_int_equal(f->r[0].used->ring[0].len, 0);
	assert_false(needs_reset(f));

	after = memfd_bytes(f);
	assert_int_equal(before - after, 8ll << 20);
	rss1 = rss_shmem_kib();
	if (rss0 >= 0 && rss1 >= 0) {
		print_message("RssShmem %ld -> %ld KiB, memfd %lld -> %lld KiB\n", rss0, rss1,
			      (long long)before >> 10, (long long)after >> 10);
		assert_true(rss0 - rss1 >= 8192 - 64);
	}
	assert_int_equal(info(f).inflate_pages, N);
	assert_int_equal(info(f).released_bytes, 8ull << 20);
	assert_int_equal(info(f).host_ram_bytes, after);
	assert_true(dirty(f, DATA) && dirty(f, DATA + (8ull << 20) - PG));
	assert_false(dirty(f, DATA + (8ull << 20)));
	assert_true(page_is(f, DATA, 0) && page_is(f, DATA + (8ull << 20) - PG, 0));
	assert_true(page_is(f, DATA - PG, 0));			/* never touched */
	assert_true(page_is(f, DATA + (8ull << 20), 0xaa));	/* neighbour kept */
	/*
	 * Unlike anonymous memory, a read fault on a shmem hole allocates a page: the three
	 * zero pages just read are backed again. (So the vmm must not read released pages;
	 * migration finds them with SEEK_HOLE instead.)
	 */
	assert_int_equal(memfd_bytes(f), after + 3 * (int64_t)PG);
	after = memfd_bytes(f);

	/*
	 * Why a hole is punched: MADV_DONTNEED on the shared mapping frees nothing and the
	 * data survives (it only drops this process's page-table entries).
	 */
	assert_int_equal(madvise(guest_mem_ptr(&f->mem, DATA + (8ull << 20), 1 << 20), 1 << 20,
				 MADV_DONTNEED), 0);
	assert_int_equal(memfd_bytes(f), after);
	assert_true(page_is(f, DATA + (8ull << 20), 0xaa));

	/* A chain whose PFNs straddle two descriptors (6 + 2 bytes), plus duplicates. */
	{
		uint32_t two[3] = { (uint32_t)((DATA >> 12) + 3000), (uint32_t)((DATA >> 12) + 3001),
				    (uint32_t)((DATA >> 12) + 3000) };
		uint64_t g = pfn_buf(f, two, 3);
		uint64_t gpa[2] = { g, g + 6 };
		uint32_t len[2] = { 6, 6 };

		post_chain(f, 0, 2, gpa, len, NULL);
		kick(f, 0);
		assert_false(needs_reset(f));
		assert_int_equal(memfd_bytes(f), after - 2 * (int64_t)PG);
		assert_true(page_is(f, DATA + 3001 * PG, 0));
	}

	/* Deflate: accounting only. The guest touches the page again: zero-filled, backed again. */
	{
		uint32_t one = (uint32_t)(DATA >> 12) + 1;		/* released, not read since */
		int64_t m = memfd_bytes(f);

		post(f, 1, pfn_buf(f, &one, 1), 4, 0);
		drv_kick(f, 1, 0, true);
		assert_int_equal(used_idx(f, 1), 1);
		assert_int_equal(info(f).deflate_pages, 1);
		assert_int_equal(memfd_bytes(f), m);
		fill(f, DATA + PG, PG, 0x55);
		assert_int_equal(memfd_bytes(f), m + (int64_t)PG);
		assert_true(page_is(f, DATA + PG, 0x55));
	}
	/* An empty buffer is zero PFNs: accepted. */
	post(f, 0, BUF_BASE, 0, 0);
	kick(f, 0);
	assert_false(needs_reset(f));
}

/* ---- hostile buffers ---- */

enum hostile_kind {
	H_ODD_LEN, H_PFN_PAST_RAM, H_PFN_MAX, H_BAD_LAST, H_WRITABLE, H_TOO_MANY, H_DESC_OUT,
	H_DEFLATE_BAD_PFN, H_STATS_ODD, H_STATS_WRITABLE, H_STATS_TOO_MANY, H_NR
};

static void test_hostile(void **state)
{
	for (int k = 0; k < H_NR; k++) {
		struct virtio_balloon_opts o = { .deflate_on_oom = true };
		struct fx *f = fx_new(&o);
		uint32_t good[4], q = 0;
		int64_t before;

		(void)state;
		drv_start(f, F_DEFAULT, 3);
		fill(f, DATA, 1 << 20, 0xaa);
		before = memfd_bytes(f);
		for (unsigned int i = 0; i < 4; i++)
			good[i] = (uint32_t)(DATA / PG) + i;
		switch (k) {
		case H_ODD_LEN:
			post(f, 0, pfn_buf(f, good, 2), 6, 0);
			break;
		case H_PFN_PAST_RAM:
			good[3] = (uint32_t)(RAM / PG);
			post(f, 0, pfn_buf(f, good, 4), 16, 0);
			break;
		case H_PFN_MAX:
			good[0] = 0xffffffffu;
			post(f, 0, pfn_buf(f, good, 4), 16, 0);
			break;
		case H_BAD_LAST: {
			/* Valid PFNs first: validation is whole-buffer, nothing may be released. */
			static uint32_t many[200];

			for (unsigned int i = 0; i < 200; i++)
				many[i] = (uint32_t)(DATA / PG) + i;
			many[199] = (uint32_t)(RAM / PG) + 5;
			post(f, 0, pfn_buf(f, many, 200), 800, 0);
			break;
		}
		case H_WRITABLE:
			post(f, 0, pfn_buf(f, good, 4), 16, VRING_DESC_F_WRITE);
			break;
		case H_TOO_MANY:
			/* 16385 PFNs (the array contents do not matter: the length is refused). */
			post(f, 0, DATA, 16385 * 4, 0);
			break;
		case H_DESC_OUT:
			post(f, 0, RAM - 8, 16, 0);
			break;
		case H_DEFLATE_BAD_PFN:
			q = 1;
			good[1] = (uint32_t)(RAM / PG) + 1;
			post(f, 1, pfn_buf(f, good, 4), 16, 0);
			break;
		case H_STATS_ODD:
			q = 2;
			post(f, 2, STATBUF, 15, 0);
			break;
		case H_STATS_WRITABLE:
			q = 2;
			post(f, 2, STATBUF, 20, VRING_DESC_F_WRITE);
			break;
		case H_STATS_TOO_MANY:
			q = 2;
			post(f, 2, STATBUF, 65 * 10, 0);
			break;
		}
		kick(f, q);
		if (!needs_reset(f))
			fail_msg("hostile case %d: no NEEDS_RESET", k);
		assert_int_equal(memfd_bytes(f), before);
		assert_true(page_is(f, DATA, 0xaa));
		assert_int_equal(used_idx(f, q), 0);
		assert_int_equal(info(f).inflate_pages, 0);
		assert_true(info(f).needs_reset && !info(f).driver_ok);
		assert_int_equal(virtio_balloon_request_stats(f->b), -EAGAIN);
		/* Later kicks are ignored (device stopped) ... */
		post(f, 0, pfn_buf(f, good, 1), 4, 0);
		kick(f, 0);
		assert_int_equal(used_idx(f, 0), 0);
		/* ... until the driver resets it; then it works again. */
		drv_start(f, F_DEFAULT, 3);
		assert_false(needs_reset(f));
		good[0] = (uint32_t)(DATA / PG);
		post(f, 0, pfn_buf(f, good, 1), 4, 0);
		kick(f, 0);
		assert_int_equal(used_idx(f, 0), 1);
		assert_int_equal(memfd_bytes(f), before - (int64_t)PG);
		fx_free(f);
	}
}

/* A stats queue kick without STATS_VQ negotiated: not a queue of this device, ignored. */
static void test_stats_queue_without_feature(void **state)
{
	struct fx *f = *state;

	drv_start(f, (1ull << VIRTIO_F_VERSION_1), 3);
	post(f, 2, STATBUF, 10, 0);
	kick(f, 2);
	assert_false(needs_reset(f));
	assert_int_equal(used_idx(f, 2), 0);
	assert_int_equal(info(f).stats_updates, 0);
	assert_false(info(f).stats_vq);
	assert_int_equal(virtio_balloon_request_stats(f->b), -EAGAIN);
}

/* ---- stats ---- */

static void put_stats(struct fx *f, uint64_t gpa, const uint16_t *tags, const uint64_t *vals,
		      unsigned int n)
{
	uint8_t *p = guest_mem_ptr(&f->mem, gpa, 10ull * n);

	for (unsigned int i = 0; i < n; i++) {
		uint16_t t = htole16(tags[i]);
		uint64_t v = htole64(vals[i]);

		memcpy(p + 10 * i, &t, 2);
		memcpy(p + 10 * i + 2, &v, 8);
	}
}

static uint64_t now_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The statsq protocol as Linux drives it: kicks and interrupts as the device asks for them. */
static void stats_protocol(struct fx *f, bool ei)
{
	const uint16_t tags[] = { BALLOON_S_MEMFREE, BALLOON_S_MEMTOT, 99, BALLOON_S_MINFLT };
	const uint64_t vals[] = { 100ull << 20, 1ull << 30, 7, 5 };
	const uint64_t feat = F_DEFAULT | (ei ? 1ull << VIRTIO_RING_F_EVENT_IDX : 0);
	struct virtio_balloon_info in;
	uint16_t head, old;
	uint64_t t0 = now_realtime_ns();

	drv_start(f, feat, 3);
	assert_int_equal(virtio_balloon_request_stats(f->b), -EAGAIN);	/* nothing held */

	/* The driver primes the queue with one buffer: the device keeps it. */
	put_stats(f, STATBUF, tags, vals, 4);
	old = f->r[2].avail_idx;
	head = post(f, 2, STATBUF, 40, 0);
	drv_kick(f, 2, old, ei);
	assert_false(needs_reset(f));
	assert_int_equal(used_idx(f, 2), 0);
	in = info(f);
	assert_int_equal(in.stats_updates, 1);
	assert_int_equal(in.stats_valid, (1u << BALLOON_S_MEMFREE) | (1u << BALLOON_S_MEMTOT) |
					 (1u << BALLOON_S_MINFLT));
	assert_int_equal(in.stats[BALLOON_S_MEMFREE], 100ull << 20);
	assert_int_equal(in.stats[BALLOON_S_MEMTOT], 1ull << 30);
	assert_int_equal(in.stats[BALLOON_S_MINFLT], 5);
	assert_true(in.stats_time_ns >= t0 && in.stats_time_ns <= now_realtime_ns());

	/* Request a refresh: the buffer comes back used with length 0, with an interrupt. */
	assert_int_equal(virtio_balloon_request_stats(f->b), 0);
	assert_int_equal(used_idx(f, 2), 1);
	assert_int_equal(f->r[2].used->ring[0].id, head);
	assert_int_equal(f->r[2].used->ring[0].len, 0);
	assert_true(isr(f) & VIRTIO_PCI_ISR_QUEUE);
	drv_consume(f, 2);
	assert_int_equal(virtio_balloon_request_stats(f->b), -EAGAIN);	/* not refilled yet */

	/* The driver refills (a report replaces the previous one whole) and posts it again. */
	{
		const uint16_t t2[] = { BALLOON_S_MEMFREE };
		const uint64_t v2[] = { 50ull << 20 };

		put_stats(f, STATBUF, t2, v2, 1);
		old = f->r[2].avail_idx;
		post(f, 2, STATBUF, 10, 0);
		drv_kick(f, 2, old, ei);
		in = info(f);
		assert_int_equal(in.stats_updates, 2);
		assert_int_equal(in.stats_valid, 1u << BALLOON_S_MEMFREE);
		assert_int_equal(in.stats[BALLOON_S_MEMFREE], 50ull << 20);
	}

	/* Timed refresh through the event loop: 20 ms period, several rounds, each bounded. */
	assert_int_equal(virtio_balloon_set_stats_interval(f->b, 20 * 1000 * 1000), 0);
	assert_int_equal(info(f).stats_interval_ns, 20 * 1000 * 1000);
	for (uint16_t round = 2; round <= 5; round++) {
		for (int i = 0; i < 200 && used_idx(f, 2) == round - 1; i++)
			assert_true(evloop_run_once(&f->loop, 10 * 1000 * 1000) >= 0);
		assert_int_equal(used_idx(f, 2), round);
		if (!(isr(f) & VIRTIO_PCI_ISR_QUEUE))
			fail_msg("round %u: buffer returned without an interrupt", round);
		drv_consume(f, 2);
		old = f->r[2].avail_idx;
		post(f, 2, STATBUF, 10, 0);
		drv_kick(f, 2, old, ei);
		assert_int_equal(info(f).stats_updates, round + 1);
	}

	/* Period 0: the buffer stays with the device. */
	assert_int_equal(virtio_balloon_set_stats_interval(f->b, 0), 0);
	for (int i = 0; i < 10; i++)
		evloop_run_once(&f->loop, 10 * 1000 * 1000);
	assert_int_equal(used_idx(f, 2), 5);

	/* A second buffer while one is held: the older one is returned, the newer kept. */
	old = f->r[2].avail_idx;
	head = post(f, 2, STATBUF + 0x100, 10, 0);
	put_stats(f, STATBUF + 0x100, (const uint16_t[]){ BALLOON_S_AVAIL }, (const uint64_t[]){ 9 }, 1);
	drv_kick(f, 2, old, ei);
	assert_false(needs_reset(f));
	assert_int_equal(used_idx(f, 2), 6);
	assert_true(isr(f) & VIRTIO_PCI_ISR_QUEUE);
	drv_consume(f, 2);
	assert_int_equal(info(f).stats[BALLOON_S_AVAIL], 9);
	assert_int_equal(virtio_balloon_request_stats(f->b), 0);
	assert_int_equal(used_idx(f, 2), 7);
	assert_int_equal(f->r[2].used->ring[6].id, head);
	assert_true(isr(f) & VIRTIO_PCI_ISR_QUEUE);
	drv_consume(f, 2);
}

static void test_stats_protocol_event_idx(void **state)
{
	stats_protocol(*state, true);
}

static void test_stats_protocol(void **state)
{
	struct fx *f = *state;

	stats_protocol(f, false);
	/* A device reset drops the held buffer. */
	post(f, 2, STATBUF, 10, 0);
	kick(f, 2);
	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	assert_int_equal(virtio_balloon_request_stats(f->b), -EAGAIN);
	/* Without a loop, a period cannot be set. */
	{
		struct pci_bus pb2;
		struct pci_env penv = { .vm_fd = -1, .ram_top = RAM, .irq = &f->irq };
		struct virtio_pci_env env = { .pci = &pb2, .irq = &f->irq, .loop = NULL, .vm_fd = -1 };
		struct virtio_balloon *b2;

		assert_int_equal(pci_init(&pb2, &penv), 0);
		assert_int_equal(virtio_balloon_create(&env, &f->mem, "balloon1", NULL, &b2), 0);
		assert_int_equal(virtio_balloon_set_stats_interval(b2, 1000), -EINVAL);
		assert_int_equal(virtio_balloon_set_stats_interval(b2, 0), 0);
		virtio_balloon_destroy(b2);
		pci_destroy(&pb2);
	}
}

/* ---- state ---- */

static void test_state(void **state)
{
	struct fx *f = *state;
	struct virtio_balloon_state *st = malloc(sizeof(*st)), *bad = malloc(sizeof(*bad));
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM, .irq = &f->irq };
	struct pci_bus pb2;
	struct virtio_pci_env env = { .pci = &pb2, .irq = &f->irq, .loop = NULL, .vm_fd = -1 };
	struct virtio_balloon *b2;
	uint32_t pfn = (uint32_t)(DATA / PG);
	uint16_t head;

	assert_true(st && bad);
	drv_start(f, F_DEFAULT, 3);
	put_stats(f, STATBUF, (const uint16_t[]){ BALLOON_S_MEMFREE }, (const uint64_t[]){ 77 }, 1);
	head = post(f, 2, STATBUF, 10, 0);
	kick(f, 2);
	post(f, 0, pfn_buf(f, &pfn, 1), 4, 0);
	kick(f, 0);
	assert_int_equal(virtio_balloon_set_target(f->b, RAM - (4ull << 20)), 0);
	wr(f, VIRTIO_PCI_DEVCFG_OFF + 4, 4, 1);

	virtio_balloon_save(f->b, st);
	assert_int_equal(st->num_pages, 1024);
	assert_int_equal(st->actual, 1);
	assert_int_equal(st->stats_held, 1);
	assert_int_equal(st->stats_head, head);
	assert_int_equal(st->vq[0].last_avail_idx, 1);

	/* Load into a second device (another PCI bus, same RAM). */
	assert_int_equal(pci_init(&pb2, &penv), 0);
	assert_int_equal(virtio_balloon_create(&env, &f->mem, "balloon0", NULL, &b2), 0);
	assert_int_equal(virtio_balloon_load(b2, st), 0);
	{
		struct virtio_balloon_info in;

		virtio_balloon_get_info(b2, &in);
		assert_int_equal(in.num_pages, 1024);
		assert_int_equal(in.actual, 1);
		assert_true(in.driver_ok && in.stats_vq);
		assert_int_equal(in.stats[BALLOON_S_MEMFREE], 77);
		assert_int_equal(in.stats_updates, 1);
	}
	/* The restored device still holds the guest's stats buffer and can return it. */
	assert_int_equal(virtio_balloon_request_stats(b2), 0);
	assert_int_equal(used_idx(f, 2), 1);
	assert_int_equal(f->r[2].used->ring[0].id, head);
	/* And its inflate queue continues where the first left off. */
	{
		uint32_t p2 = pfn + 1;
		struct virtio_pci *vp2 = pb2.slots[1]->opaque;

		fill(f, DATA + PG, PG, 0xaa);
		post(f, 0, pfn_buf(f, &p2, 1), 4, 0);
		virtio_pci_kick(vp2, 0);
		assert_int_equal(used_idx(f, 0), 2);
		assert_true(page_is(f, DATA + PG, 0));
	}

	/* Hostile saved states are refused before anything changes. */
	memcpy(bad, st, sizeof(*bad));
	bad->num_pages = (uint32_t)(RAM / PG) + 1;
	assert_int_equal(virtio_balloon_load(b2, bad), -EINVAL);
	memcpy(bad, st, sizeof(*bad));
	bad->vq[2].used_idx = bad->vq[2].last_avail_idx;	/* "held" but nothing in flight */
	assert_int_equal(virtio_balloon_load(b2, bad), -EINVAL);
	memcpy(bad, st, sizeof(*bad));
	bad->stats_head = QSZ_STATS;
	assert_int_equal(virtio_balloon_load(b2, bad), -EINVAL);
	memcpy(bad, st, sizeof(*bad));
	bad->vq[0].last_avail_idx++;				/* an inflate buffer "in flight" */
	assert_int_equal(virtio_balloon_load(b2, bad), -EINVAL);
	memcpy(bad, st, sizeof(*bad));
	bad->vq[1].desc += 0x1000;				/* ring disagrees with transport */
	assert_int_equal(virtio_balloon_load(b2, bad), -EINVAL);
	memcpy(bad, st, sizeof(*bad));
	bad->vq[0].enabled = 0;					/* a live queue without indices */
	assert_int_equal(virtio_balloon_load(b2, bad), -EINVAL);
	memcpy(bad, st, sizeof(*bad));
	bad->stats_valid = 1u << BALLOON_S_NR;
	assert_int_equal(virtio_balloon_load(b2, bad), -EINVAL);
	{
		struct virtio_balloon_info in;

		virtio_balloon_get_info(b2, &in);
		assert_int_equal(in.num_pages, 1024);
		assert_true(in.driver_ok);
	}

	/* Through the state stream: round trip, a corrupted stream refused. */
	{
		struct state_registry r1 = { 0 }, r2 = { 0 };
		struct state_mem_sink sink;
		struct pci_bus pb3;
		struct virtio_pci_env env3 = { .pci = &pb3, .irq = &f->irq, .loop = NULL, .vm_fd = -1 };
		struct virtio_balloon *b3;
		struct virtio_balloon_info in;

		assert_int_equal(pci_init(&pb3, &penv), 0);
		assert_int_equal(virtio_balloon_create(&env3, &f->mem, "balloon0", NULL, &b3), 0);
		assert_int_equal(virtio_balloon_register_state(b2, &r1), 0);
		assert_int_equal(virtio_balloon_register_state(b3, &r2), 0);
		state_mem_sink_init(&sink);
		assert_int_equal(state_save_all(&r1, &sink.sink), 0);
		sink.buf[sink.len / 2] ^= 0x10;
		assert_int_not_equal(state_load_buf(&r2, sink.buf, sink.len, NULL), 0);
		virtio_balloon_get_info(b3, &in);
		assert_int_equal(in.num_pages, 0);
		sink.buf[sink.len / 2] ^= 0x10;
		assert_int_equal(state_load_buf(&r2, sink.buf, sink.len, NULL), 0);
		virtio_balloon_get_info(b3, &in);
		assert_int_equal(in.num_pages, 1024);
		assert_int_equal(in.actual, 1);
		assert_true(in.driver_ok);
		assert_int_equal(in.stats[BALLOON_S_MEMFREE], 77);
		free(sink.buf);
		state_registry_destroy(&r1);
		state_registry_destroy(&r2);
		virtio_balloon_destroy(b3);
		pci_destroy(&pb3);
	}
	virtio_balloon_destroy(b2);
	pci_destroy(&pb2);
	free(st);
	free(bad);
}

/* ---- control socket commands ---- */

static int fake_status(void *opaque, struct ctl_vm_status *st)
{
	(void)opaque;
	st->state = CTL_RUN_RUNNING;
	return 0;
}

static const struct ctl_vm_ops fake_ops = { .status = fake_status };

static json_object *call(struct ctl_server *srv, const char *line)
{
	json_object *r = ctl_server_handle_line(srv, line, strlen(line));

	assert_non_null(r);
	return r;
}

static int64_t ret_int(json_object *r, const char *key)
{
	json_object *ret, *v;

	if (!json_object_object_get_ex(r, "return", &ret))
		fail_msg("not a return: %s", json_object_to_json_string(r));
	if (!json_object_object_get_ex(ret, key, &v))
		fail_msg("no %s in %s", key, json_object_to_json_string(r));
	return json_object_get_int64(v);
}

static const char *err_class(json_object *r)
{
	json_object *e, *c;

	if (!json_object_object_get_ex(r, "error", &e) || !json_object_object_get_ex(e, "class", &c))
		return "";
	return json_object_get_string(c);
}

static void test_ctl(void **state)
{
	struct fx *f = *state;
	char dir[] = "/tmp/test_balloon.XXXXXX", path[128];
	struct ctl_config cfg;
	struct ctl_server *srv;
	json_object *r, *ret, *v;
	static const char *const bad[] = {
		"{\"execute\":\"balloon-set\",\"arguments\":{\"target_mib\":65}}",
		"{\"execute\":\"balloon-set\",\"arguments\":{\"target_mib\":-1}}",
		"{\"execute\":\"balloon-set\",\"arguments\":{\"target_mib\":1152921504606846976}}",
		"{\"execute\":\"balloon-set\",\"arguments\":{\"target_bytes\":67112960}}",
		"{\"execute\":\"balloon-set\",\"arguments\":{\"target_mib\":1,\"target_bytes\":1}}",
		"{\"execute\":\"balloon-set\"}",
		"{\"execute\":\"balloon-set\",\"arguments\":{\"target_mib\":\"48\"}}",
		"{\"execute\":\"balloon-set\",\"arguments\":{\"target_mib\":48.5}}",
		"{\"execute\":\"balloon-set\",\"arguments\":{\"target\":48}}",
		"{\"execute\":\"balloon-set\",\"arguments\":{\"stats_interval_ms\":-5}}",
		"{\"execute\":\"balloon-info\",\"arguments\":{\"x\":1}}",
	};

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.sock", dir);
	cfg = (struct ctl_config){ .path = path, .loop = &f->loop, .ops = &fake_ops, .vm_opaque = NULL };
	assert_int_equal(ctl_server_create(&cfg, &srv), 0);
	assert_int_equal(virtio_balloon_ctl_register(f->b, srv), 0);
	assert_int_equal(virtio_balloon_ctl_register(f->b, srv), -EEXIST);

	r = call(srv, "{\"execute\":\"balloon-info\"}");
	assert_int_equal(ret_int(r, "target_bytes"), RAM);
	assert_int_equal(ret_int(r, "actual_bytes"), RAM);
	assert_int_equal(ret_int(r, "num_pages"), 0);
	json_object_object_get_ex(r, "return", &ret);
	assert_true(json_object_object_get_ex(ret, "last_update", &v) && v == NULL);
	json_object_put(r);

	r = call(srv, "{\"execute\":\"balloon-set\",\"arguments\":{\"target_mib\":48},\"id\":3}");
	assert_int_equal(ret_int(r, "num_pages"), 4096);
	assert_int_equal(ret_int(r, "target_bytes"), 48ll << 20);
	json_object_put(r);
	assert_int_equal(info(f).num_pages, 4096);
	r = call(srv, "{\"execute\":\"balloon-set\",\"arguments\":{\"target_bytes\":50331748}}");
	assert_int_equal(ret_int(r, "num_pages"), 4096);		/* 48 MiB + 100: rounded down */
	json_object_put(r);
	r = call(srv, "{\"execute\":\"balloon-set\",\"arguments\":{\"stats_interval_ms\":250}}");
	assert_int_equal(ret_int(r, "stats_interval_ms"), 250);
	assert_int_equal(ret_int(r, "num_pages"), 4096);		/* target untouched */
	json_object_put(r);

	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = call(srv, bad[i]);
		if (strcmp(err_class(r), CTL_ERR_ARGUMENT))
			fail_msg("%s -> %s", bad[i], json_object_to_json_string(r));
		json_object_put(r);
	}
	assert_int_equal(info(f).num_pages, 4096);			/* errors changed nothing */
	assert_int_equal(info(f).stats_interval_ns, 250ull * 1000 * 1000);

	/* With a driver, stats and actual show up. */
	drv_start(f, F_DEFAULT, 3);
	put_stats(f, STATBUF, (const uint16_t[]){ BALLOON_S_MEMFREE, BALLOON_S_MEMTOT },
		  (const uint64_t[]){ 10ull << 20, 60ull << 20 }, 2);
	post(f, 2, STATBUF, 20, 0);
	kick(f, 2);
	wr(f, VIRTIO_PCI_DEVCFG_OFF + 4, 4, 4096);
	r = call(srv, "{\"execute\":\"balloon-info\"}");
	assert_int_equal(ret_int(r, "actual_bytes"), 48ll << 20);
	assert_int_equal(ret_int(r, "actual_pages"), 4096);
	assert_int_equal(ret_int(r, "stats_updates"), 1);
	assert_true(ret_int(r, "host_ram_bytes") >= 0);
	json_object_object_get_ex(r, "return", &ret);
	assert_true(json_object_object_get_ex(ret, "stats", &v));
	assert_int_equal(json_object_object_length(v), 2);
	assert_true(json_object_object_get_ex(v, "free_memory", &v));
	assert_int_equal(json_object_get_int64(v), 10ll << 20);
	assert_true(json_object_object_get_ex(ret, "last_update", &v) && v);
	assert_true(json_object_object_get_ex(v, "seconds", &v));
	assert_true(json_object_get_int64(v) > 1600000000);
	assert_true(json_object_object_get_ex(ret, "driver_ok", &v) && json_object_get_boolean(v));
	json_object_put(r);

	ctl_server_destroy(srv);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_features_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inflate_releases_memory, setup, teardown),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test_setup_teardown(test_stats_queue_without_feature, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stats_protocol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stats_protocol_event_idx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctl, setup, teardown),
	};
	return cmocka_run_group_tests_name("virtio_balloon", tests, NULL, NULL);
}
