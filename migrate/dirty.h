/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page tracking for migration: which guest pages changed since the last sync, from
 * KVM (pages vCPUs wrote) OR-ed with guest_mem's own bitmap (pages the vmm wrote on the
 * guest's behalf: used rings, rx buffers — KVM never sees those). Two KVM back-ends, so both
 * can be measured (docs/migration-protocol.md, "Dirty tracking"):
 *
 *  MIG_DIRTY_BITMAP  KVM_MEM_LOG_DIRTY_PAGES + KVM_GET_DIRTY_LOG, with
 *                    KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (+ INITIALLY_SET) and KVM_CLEAR_DIRTY_LOG
 *                    when the kernel has it, else the old get-and-clear GET_DIRTY_LOG.
 *                    Can be switched on at any time; a sync costs O(guest RAM / 32 K)
 *                    (one bit per page is copied out and scanned).
 *  MIG_DIRTY_RING    KVM_CAP_DIRTY_LOG_RING: a per-vCPU ring of dirtied gfns. A sync costs
 *                    O(pages dirtied) only, but the ring must be enabled on the VM before the
 *                    first vCPU is created (mig_dirty_ring_enable), each vCPU's ring mapped
 *                    (mig_dirty_add_vcpu), and a vCPU that fills its ring exits with
 *                    KVM_EXIT_DIRTY_RING_FULL: its thread calls mig_dirty_ring_harvest().
 *
 * Bitmaps are indexed by pfn = memfd offset / 4 KiB, like guest_mem's dirty_bitmap and
 * migrate/pages.h. The contents of a page must be read after the sync that reported it: a
 * write after the sync is then reported by the next one.
 *
 * Threading: one migration thread calls start/sync/stop. mig_dirty_ring_harvest() may also
 * be called from vCPU threads (ring full); the ring state is under @lock.
 */
#ifndef MIGRATE_DIRTY_H
#define MIGRATE_DIRTY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/memory.h"

enum mig_dirty_mode {
	MIG_DIRTY_BITMAP,
	MIG_DIRTY_RING,
};

#define MIG_DIRTY_RING_DEFAULT_ENTRIES	4096u	/* 64 KiB per vCPU */

struct mig_dirty_ring {
	int vcpu_fd;
	void *gfns;			/* struct kvm_dirty_gfn[entries], mmapped from the vCPU */
	uint32_t next;			/* next entry to harvest (free-running index) */
};

struct mig_dirty_stats {
	uint64_t syncs;
	uint64_t pages;			/* pages reported, all syncs (KVM ∪ vmm) */
	uint64_t pages_vmm;		/* of those, found in guest_mem's bitmap */
	uint64_t last_sync_ns;		/* wall time of the last mig_dirty_sync */
	uint64_t ring_harvests;		/* harvest calls (sync + ring-full exits) */
};

struct mig_dirty {
	int vm_fd;
	struct guest_mem *mem;
	enum mig_dirty_mode mode;
	uint64_t npages;
	bool manual;			/* bitmap: MANUAL_DIRTY_LOG_PROTECT2 enabled */
	bool initially_set;		/* bitmap: ... with INITIALLY_SET */
	bool started, first_sync;
	uint64_t *slot_bm;		/* bitmap: scratch for one slot's KVM bitmap */
	/* ring */
	pthread_mutex_t lock;
	struct mig_dirty_ring *rings;
	unsigned int nr_rings;
	uint32_t ring_entries;
	uint64_t *pending;		/* bits collected, not yet returned by a sync (all zero
					   between syncs, except ring-full harvests) */
	struct mig_dirty_stats st;
};

/*
 * Ring mode only: enable KVM_CAP_DIRTY_LOG_RING(_ACQ_REL) with @entries per vCPU (a power of
 * two; 0 = default). Must run on the VM before any KVM_CREATE_VCPU. 0, -ENOTSUP, -errno.
 */
int  mig_dirty_ring_enable(int vm_fd, uint32_t entries);

/* Set up (no KVM call yet). @entries: what mig_dirty_ring_enable used (ring mode only). */
int  mig_dirty_init(struct mig_dirty *d, int vm_fd, struct guest_mem *mem,
		    enum mig_dirty_mode mode, uint32_t entries);
/* Ring mode: map @vcpu_fd's ring (KVM_DIRTY_LOG_PAGE_OFFSET). Once per vCPU, before start. */
int  mig_dirty_add_vcpu(struct mig_dirty *d, int vcpu_fd);
/*
 * Begin logging: enable manual protect (bitmap mode, when available) and set
 * KVM_MEM_LOG_DIRTY_PAGES on every RAM slot. The first sync after start reports every page
 * (round 0 = all RAM), whatever the back-end. 0 or -errno (logged).
 */
int  mig_dirty_start(struct mig_dirty *d);
/*
 * OR every page dirtied since the last sync (or all pages, on the first) into @out
 * (npages bits) and re-arm tracking for them. *@count (may be NULL) = pages this sync
 * reported (KVM ∪ vmm, before OR-ing with what @out already had). 0 or -errno.
 */
int  mig_dirty_sync(struct mig_dirty *d, uint64_t *out, uint64_t *count);
/* Ring mode, from a vCPU thread on KVM_EXIT_DIRTY_RING_FULL: collect and reset the rings. */
int  mig_dirty_ring_harvest(struct mig_dirty *d);
/* Stop logging (clear KVM_MEM_LOG_DIRTY_PAGES): after a failed migration the source runs on. */
int  mig_dirty_stop(struct mig_dirty *d);
void mig_dirty_destroy(struct mig_dirty *d);

/* Number of set bits in the first @nbits of @bm. */
uint64_t mig_bitmap_weight(const uint64_t *bm, uint64_t nbits);

#endif
