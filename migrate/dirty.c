// SPDX-License-Identifier: MIT
/*
 * Dirty-page tracking (contract in dirty.h; back-end choice and figures in
 * docs/migration-protocol.md). Every KVM call goes through kvm_ioctl(), which the unit test
 * replaces with a fake KVM (-Wl,--wrap=kvm_ioctl) and the KVM test passes through.
 *
 * Ordering that makes "no page lost" hold: a sync first takes KVM's bits and re-arms write
 * protection for exactly those pages (CLEAR_DIRTY_LOG / RESET_DIRTY_RINGS), then takes the
 * vmm's bits with an atomic exchange. The caller reads page contents only after the sync
 * returns, so a write racing with the sync is either already visible in what is read or
 * faults after re-arming and lands in the next sync.
 */
#define LOG_TAG "mig-dirty"
#include <errno.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "migrate/dirty.h"
#include "vmm/kvm.h"
#include "vmm/lib/log.h"

#define PAGE_SIZE	4096ull

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t mig_bitmap_weight(const uint64_t *bm, uint64_t nbits)
{
	uint64_t i, n = 0;

	for (i = 0; i < nbits / 64; i++)
		n += (uint64_t)__builtin_popcountll(bm[i]);
	if (nbits % 64)
		n += (uint64_t)__builtin_popcountll(bm[i] & ((1ull << (nbits % 64)) - 1));
	return n;
}

/* OR @nbits bits of @src into @dst starting at bit @at (any alignment). */
static void bitmap_or_at(uint64_t *dst, uint64_t at, const uint64_t *src, uint64_t nbits)
{
	uint64_t i, words = (nbits + 63) / 64;
	unsigned int sh = at % 64;
	uint64_t *d = dst + at / 64;

	for (i = 0; i < words; i++) {
		uint64_t w = src[i];

		if (i == words - 1 && nbits % 64)
			w &= (1ull << (nbits % 64)) - 1;
		if (!w)
			continue;
		d[i] |= w << sh;
		if (sh && (w >> (64 - sh)))
			d[i + 1] |= w >> (64 - sh);
	}
}

static unsigned int region_words(const struct guest_mem_region *r)
{
	return (unsigned int)((r->size / PAGE_SIZE + 63) / 64);
}

int mig_dirty_ring_enable(int vm_fd, uint32_t entries)
{
	struct kvm_enable_cap cap = { 0 };
	long caps[] = { KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_CAP_DIRTY_LOG_RING };
	unsigned int i;
	int max, ret = -ENOTSUP;

	if (!entries)
		entries = MIG_DIRTY_RING_DEFAULT_ENTRIES;
	if (entries & (entries - 1)) {
		log_err("dirty ring of %u entries: must be a power of two", entries);
		return -EINVAL;
	}
	for (i = 0; i < 2; i++) {
		max = kvm_ioctl(vm_fd, KVM_CHECK_EXTENSION, (void *)caps[i]);
		if (max <= 0)
			continue;
		if ((uint64_t)entries * sizeof(struct kvm_dirty_gfn) > (uint64_t)max) {
			log_err("dirty ring of %u entries exceeds KVM's maximum of %d bytes", entries, max);
			return -EINVAL;
		}
		cap.cap = (uint32_t)caps[i];
		cap.args[0] = (uint64_t)entries * sizeof(struct kvm_dirty_gfn);
		ret = kvm_ioctl(vm_fd, KVM_ENABLE_CAP, &cap);
		if (ret == 0)
			return 0;
	}
	log_err("cannot enable the KVM dirty ring: %s (it must be enabled before vCPUs exist)",
		strerror(-ret));
	return ret;
}

int mig_dirty_init(struct mig_dirty *d, int vm_fd, struct guest_mem *mem,
		   enum mig_dirty_mode mode, uint32_t entries)
{
	unsigned int i, max_words = 0;

	memset(d, 0, sizeof(*d));
	d->vm_fd = vm_fd;
	d->mem = mem;
	d->mode = mode;
	d->npages = mem->size / PAGE_SIZE;
	d->ring_entries = entries ? entries : MIG_DIRTY_RING_DEFAULT_ENTRIES;
	pthread_mutex_init(&d->lock, NULL);
	for (i = 0; i < mem->nr_regions; i++)
		if (region_words(&mem->regions[i]) > max_words)
			max_words = region_words(&mem->regions[i]);
	d->slot_bm = calloc(max_words, sizeof(uint64_t));
	d->pending = calloc((d->npages + 63) / 64, sizeof(uint64_t));
	if (!d->slot_bm || !d->pending) {
		mig_dirty_destroy(d);
		return -ENOMEM;
	}
	return 0;
}

int mig_dirty_add_vcpu(struct mig_dirty *d, int vcpu_fd)
{
	struct mig_dirty_ring *r;
	size_t len = (size_t)d->ring_entries * sizeof(struct kvm_dirty_gfn);
	void *p;

	if (d->mode != MIG_DIRTY_RING)
		return 0;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd,
		 KVM_DIRTY_LOG_PAGE_OFFSET * sysconf(_SC_PAGESIZE));
	if (p == MAP_FAILED) {
		int ret = -errno;

		log_err("map the dirty ring of vCPU fd %d: %s", vcpu_fd, strerror(-ret));
		return ret;
	}
	pthread_mutex_lock(&d->lock);
	r = realloc(d->rings, (d->nr_rings + 1) * sizeof(*r));
	if (!r) {
		pthread_mutex_unlock(&d->lock);
		munmap(p, len);
		return -ENOMEM;
	}
	d->rings = r;
	d->rings[d->nr_rings++] = (struct mig_dirty_ring){ .vcpu_fd = vcpu_fd, .gfns = p };
	pthread_mutex_unlock(&d->lock);
	return 0;
}

int mig_dirty_start(struct mig_dirty *d)
{
	int ret;

	if (d->mode == MIG_DIRTY_BITMAP) {
		int cap = kvm_ioctl(d->vm_fd, KVM_CHECK_EXTENSION,
				    (void *)(long)KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);

		if (cap > 0) {
			struct kvm_enable_cap ec = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 };

			/*
			 * INITIALLY_SET: logging starts with every bit set and nothing
			 * write-protected; protection is re-armed page by page as syncs clear
			 * bits, instead of all of RAM at once when logging starts.
			 */
			ec.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE |
				     ((uint64_t)cap & KVM_DIRTY_LOG_INITIALLY_SET);
			ret = kvm_ioctl(d->vm_fd, KVM_ENABLE_CAP, &ec);
			if (ret == 0) {
				d->manual = true;
				d->initially_set = !!(ec.args[0] & KVM_DIRTY_LOG_INITIALLY_SET);
			} else {
				log_warn("manual dirty-log protect: %s; using get-and-clear", strerror(-ret));
			}
		}
	}
	ret = guest_mem_map_kvm(d->mem, d->vm_fd, KVM_MEM_LOG_DIRTY_PAGES);
	if (ret < 0)
		return ret;		/* logged by guest_mem_map_kvm */
	d->started = true;
	d->first_sync = true;
	return 0;
}

/* Harvest every ring into d->pending and reset them; lock held. Returns entries taken. */
static int ring_harvest_locked(struct mig_dirty *d)
{
	uint32_t mask = d->ring_entries - 1;
	uint64_t taken = 0;
	unsigned int i, k;
	int ret;

	for (i = 0; i < d->nr_rings; i++) {
		struct kvm_dirty_gfn *gfns = d->rings[i].gfns;

		for (;;) {
			struct kvm_dirty_gfn *e = &gfns[d->rings[i].next & mask];
			uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
			uint32_t slot;
			uint64_t off;

			if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
				break;
			slot = e->slot & 0xffff;	/* high half: address space, 0 here */
			off = e->offset;
			for (k = 0; k < d->mem->nr_regions; k++) {
				const struct guest_mem_region *r = &d->mem->regions[k];

				if (r->slot == slot && off < r->size / PAGE_SIZE) {
					uint64_t pfn = r->fd_offset / PAGE_SIZE + off;

					d->pending[pfn / 64] |= 1ull << (pfn % 64);
					break;
				}
			}
			__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
			d->rings[i].next++;
			taken++;
		}
	}
	d->st.ring_harvests++;
	if (taken) {
		ret = kvm_ioctl(d->vm_fd, KVM_RESET_DIRTY_RINGS, NULL);
		if (ret < 0) {
			log_err("KVM_RESET_DIRTY_RINGS: %s", strerror(-ret));
			return ret;
		}
	}
	return (int)(taken > INT32_MAX ? INT32_MAX : taken);
}

int mig_dirty_ring_harvest(struct mig_dirty *d)
{
	int ret;

	pthread_mutex_lock(&d->lock);
	ret = ring_harvest_locked(d);
	pthread_mutex_unlock(&d->lock);
	return ret < 0 ? ret : 0;
}

/*
 * Re-arm write protection for exactly the pages in d->slot_bm, in chunks of
 * CLEAR_CHUNK_PAGES, skipping chunks with no bit set. Chunks bound how long KVM holds its
 * MMU lock at a time: the first sync with INITIALLY_SET protects all of RAM (≈ 200 ms for
 * 16 GiB measured here), and vCPUs faulting meanwhile wait for the lock.
 */
#define CLEAR_CHUNK_PAGES	32768u		/* 128 MiB; a multiple of 64 as KVM requires */

static int clear_chunks(struct mig_dirty *d, const struct guest_mem_region *r, unsigned int words)
{
	uint64_t slot_pages = r->size / PAGE_SIZE, first;
	unsigned int w;
	int ret;

	for (first = 0; first < slot_pages; first += CLEAR_CHUNK_PAGES) {
		uint64_t n = slot_pages - first < CLEAR_CHUNK_PAGES ? slot_pages - first : CLEAR_CHUNK_PAGES;
		unsigned int w_end = (unsigned int)((first + n + 63) / 64);
		bool any = false;
		struct kvm_clear_dirty_log clr = {
			.slot = r->slot,
			.num_pages = (uint32_t)n,
			.first_page = first,
			.dirty_bitmap = d->slot_bm + first / 64,
		};

		for (w = (unsigned int)(first / 64); w < w_end && w < words && !any; w++)
			any = d->slot_bm[w] != 0;
		if (!any)
			continue;
		ret = kvm_ioctl(d->vm_fd, KVM_CLEAR_DIRTY_LOG, &clr);
		if (ret < 0) {
			log_err("KVM_CLEAR_DIRTY_LOG slot %u pages %" PRIu64 "+%" PRIu64 ": %s", r->slot,
				first, n, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* KVM's bits for every slot into @acc (npages bits, zeroed by the caller). */
static int bitmap_collect(struct mig_dirty *d, uint64_t *acc)
{
	unsigned int i, w;
	int ret;

	for (i = 0; i < d->mem->nr_regions; i++) {
		const struct guest_mem_region *r = &d->mem->regions[i];
		unsigned int words = region_words(r);
		struct kvm_dirty_log log = { .slot = r->slot, .dirty_bitmap = d->slot_bm };
		bool any = false;

		memset(d->slot_bm, 0, words * sizeof(uint64_t));
		ret = kvm_ioctl(d->vm_fd, KVM_GET_DIRTY_LOG, &log);
		if (ret < 0) {
			log_err("KVM_GET_DIRTY_LOG slot %u: %s", r->slot, strerror(-ret));
			return ret;
		}
		for (w = 0; w < words && !any; w++)
			any = d->slot_bm[w] != 0;
		if (!any)
			continue;
		if (d->manual) {
			ret = clear_chunks(d, r, words);
			if (ret < 0)
				return ret;
		}
		bitmap_or_at(acc, r->fd_offset / PAGE_SIZE, d->slot_bm, r->size / PAGE_SIZE);
	}
	return 0;
}

int mig_dirty_sync(struct mig_dirty *d, uint64_t *out, uint64_t *count)
{
	uint64_t words = (d->npages + 63) / 64, i, t0 = now_ns(), n_vmm = 0, n_all = 0;
	uint64_t *acc = d->pending;	/* all zero between syncs (ring: harvested bits) */
	int ret;

	if (!d->started)
		return -EINVAL;

	/*
	 * Every pass below is one linear read of a bitmap of npages bits (128 KiB for 4 GiB),
	 * touching only non-zero words otherwise: a clean sync is a few tens of microseconds.
	 */
	pthread_mutex_lock(&d->lock);
	if (d->mode == MIG_DIRTY_BITMAP)
		ret = bitmap_collect(d, acc);
	else
		ret = ring_harvest_locked(d);
	if (ret < 0)
		goto out;

	/* The vmm's own writes: take and clear each non-zero word atomically (devices set
	 * bits at any time; a plain load first keeps the clean case free of atomics). */
	if (d->mem->dirty_bitmap) {
		for (i = 0; i < words; i++) {
			uint64_t w;

			if (!__atomic_load_n(&d->mem->dirty_bitmap[i], __ATOMIC_RELAXED))
				continue;
			w = __atomic_exchange_n(&d->mem->dirty_bitmap[i], 0, __ATOMIC_ACQ_REL);
			n_vmm += (uint64_t)__builtin_popcountll(w);
			acc[i] |= w;
		}
	}

	/* Round 0 is all of RAM, whatever the back-end reported. */
	if (d->first_sync) {
		for (i = 0; i < d->npages / 64; i++)
			acc[i] = ~0ull;
		if (d->npages % 64)
			acc[i] = (1ull << (d->npages % 64)) - 1;
		d->first_sync = false;
	}

	for (i = 0; i < words; i++) {
		if (!acc[i])
			continue;
		n_all += (uint64_t)__builtin_popcountll(acc[i]);
		out[i] |= acc[i];
		acc[i] = 0;
	}
	if (count)
		*count = n_all;
	d->st.syncs++;
	d->st.pages += n_all;
	d->st.pages_vmm += n_vmm;
	ret = 0;
out:
	pthread_mutex_unlock(&d->lock);
	d->st.last_sync_ns = now_ns() - t0;
	return ret;
}

int mig_dirty_stop(struct mig_dirty *d)
{
	int ret;

	if (!d->started)
		return 0;
	ret = guest_mem_map_kvm(d->mem, d->vm_fd, 0);
	if (ret == 0)
		d->started = false;
	return ret;
}

void mig_dirty_destroy(struct mig_dirty *d)
{
	size_t len = (size_t)d->ring_entries * sizeof(struct kvm_dirty_gfn);
	unsigned int i;

	for (i = 0; i < d->nr_rings; i++)
		munmap(d->rings[i].gfns, len);
	free(d->rings);
	free(d->slot_bm);
	free(d->pending);
	pthread_mutex_destroy(&d->lock);
	memset(d, 0, sizeof(*d));
	d->vm_fd = -1;
}
