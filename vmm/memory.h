/* SPDX-License-Identifier: MIT */
/*
 * Guest RAM: one memfd (so it can later be handed to a migration helper or a snapshot),
 * mapped once into the vmm. It is split around the 32-bit MMIO gap (vmm/layout.h) into at
 * most two KVM memory slots: [0, min(size, gap)) and, for larger VMs, [4 GiB, 4 GiB + rest).
 *
 * Every access the vmm makes into guest memory goes through guest_mem_ptr(), which checks
 * that the whole [gpa, gpa+len) lies inside one RAM region — guest-supplied addresses are
 * never trusted. Writes the vmm makes on behalf of devices must also call
 * guest_mem_mark_dirty() so migration sees them (KVM's dirty log only sees vCPU writes).
 */
#ifndef VMM_MEMORY_H
#define VMM_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

struct guest_mem_region {
	uint64_t gpa;		/* guest-physical start */
	uint64_t size;
	uint64_t fd_offset;	/* offset in the memfd (= in the host mapping) */
	void *hva;		/* host address of gpa */
	uint32_t slot;		/* KVM memory slot */
};

struct guest_mem {
	int memfd;
	void *base;				/* host mapping of the whole memfd */
	uint64_t size;				/* total RAM bytes */
	struct guest_mem_region regions[2];
	unsigned int nr_regions;
	uint64_t *dirty_bitmap;			/* vmm-side writes, 1 bit per 4 KiB, by memfd offset */
};

/* Create the memfd of @size bytes and map it; 0 or -errno. Does not talk to KVM. */
int  guest_mem_init(struct guest_mem *m, uint64_t size);
/* Register the regions with KVM (KVM_SET_USER_MEMORY_REGION); @flags e.g. KVM_MEM_LOG_DIRTY_PAGES. */
int  guest_mem_map_kvm(struct guest_mem *m, int vm_fd, uint32_t flags);
void guest_mem_destroy(struct guest_mem *m);

/* Host pointer for [gpa, gpa+len) if it lies entirely inside one RAM region, else NULL. */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);
/* Record a vmm write into guest RAM for migration's dirty tracking. */
void guest_mem_mark_dirty(struct guest_mem *m, uint64_t gpa, uint64_t len);

#endif
