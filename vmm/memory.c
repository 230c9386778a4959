// SPDX-License-Identifier: MIT
/*
 * Guest RAM (contract in memory.h). One memfd holds all of RAM; the host maps it once, and
 * KVM sees it as at most two slots split around the 32-bit MMIO gap (layout.h):
 *
 *   memfd offset 0 .. low          -> gpa 0 .. low            (low = min(size, gap start))
 *   memfd offset low .. size       -> gpa 4 GiB .. 4 GiB + (size - low)
 *
 * The mapping is MAP_NORESERVE: the host commits pages only as the guest touches them, which
 * is what the "touched RAM" figure in docs/benchmarks.md measures.
 */
#define LOG_TAG "memory"
#include <errno.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "vmm/kvm.h"
#include "vmm/layout.h"
#include "vmm/lib/log.h"
#include "vmm/memory.h"

#define PAGE_SIZE	4096ull

int guest_mem_init(struct guest_mem *m, uint64_t size)
{
	uint64_t low, nbits;
	struct sysinfo si;
	int ret;

	memset(m, 0, sizeof(*m));
	m->memfd = -1;
	if (size < 2 * MIB || size % PAGE_SIZE) {
		log_err("guest memory %" PRIu64 " bytes: must be a multiple of 4 KiB and at least 2 MiB", size);
		return -EINVAL;
	}
	/*
	 * The memfd is sparse, so an oversized VM would only fail later, when the guest touches
	 * pages the host cannot back (SIGBUS or the OOM killer). Refuse up front instead.
	 */
	if (sysinfo(&si) == 0) {
		uint64_t host = (uint64_t)si.totalram * si.mem_unit + (uint64_t)si.totalswap * si.mem_unit;

		if (size > host) {
			log_err("guest memory %" PRIu64 " MiB is more than this host has (%" PRIu64 " MiB RAM+swap)",
				size >> 20, host >> 20);
			return -ENOMEM;
		}
	}

	m->memfd = memfd_create("guest-ram", MFD_CLOEXEC);
	if (m->memfd < 0) {
		ret = -errno;
		log_err("memfd_create: %s", strerror(-ret));
		return ret;
	}
	if (ftruncate(m->memfd, (off_t)size) < 0) {
		ret = -errno;
		log_err("guest memory %" PRIu64 " MiB: ftruncate: %s", size >> 20, strerror(-ret));
		goto err_close;
	}
	m->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, m->memfd, 0);
	if (m->base == MAP_FAILED) {
		ret = -errno;
		m->base = NULL;
		log_err("guest memory %" PRIu64 " MiB: mmap: %s", size >> 20, strerror(-ret));
		goto err_close;
	}
	/* Guest RAM in a core dump is useless and can be huge. */
	madvise(m->base, size, MADV_DONTDUMP);
	m->size = size;

	low = size < MEM_32BIT_GAP_START ? size : MEM_32BIT_GAP_START;
	m->regions[0] = (struct guest_mem_region){ .gpa = 0, .size = low, .fd_offset = 0,
						   .hva = m->base, .slot = 0 };
	m->nr_regions = 1;
	if (size > low) {
		m->regions[1] = (struct guest_mem_region){ .gpa = MEM_32BIT_GAP_END, .size = size - low,
							   .fd_offset = low,
							   .hva = (uint8_t *)m->base + low, .slot = 1 };
		m->nr_regions = 2;
	}

	nbits = size / PAGE_SIZE;
	m->dirty_bitmap = calloc((nbits + 63) / 64, sizeof(uint64_t));
	if (!m->dirty_bitmap) {
		ret = -ENOMEM;
		goto err_unmap;
	}
	return 0;

err_unmap:
	munmap(m->base, size);
	m->base = NULL;
err_close:
	close(m->memfd);
	m->memfd = -1;
	return ret;
}

int guest_mem_map_kvm(struct guest_mem *m, int vm_fd, uint32_t flags)
{
	unsigned int i;
	int ret;

	for (i = 0; i < m->nr_regions; i++) {
		struct guest_mem_region *r = &m->regions[i];
		struct kvm_userspace_memory_region region = {
			.slot = r->slot,
			.flags = flags,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uintptr_t)r->hva,
		};

		ret = kvm_ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region);
		if (ret < 0) {
			log_err("map slot %u gpa 0x%" PRIx64 " size %" PRIu64 " MiB: %s",
				region.slot, r->gpa, r->size >> 20, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

void guest_mem_destroy(struct guest_mem *m)
{
	free(m->dirty_bitmap);
	if (m->base)
		munmap(m->base, m->size);
	if (m->memfd >= 0)
		close(m->memfd);
	memset(m, 0, sizeof(*m));
	m->memfd = -1;
}

/* The region holding [gpa, gpa+len) entirely, or NULL. Overflow-safe for hostile values. */
static const struct guest_mem_region *region_of(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	unsigned int i;

	for (i = 0; i < m->nr_regions; i++) {
		const struct guest_mem_region *r = &m->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return r;
	}
	return NULL;
}

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	const struct guest_mem_region *r = region_of(m, gpa, len);

	if (!r || (len == 0 && gpa - r->gpa == r->size))
		return NULL;
	return (uint8_t *)r->hva + (gpa - r->gpa);
}

void guest_mem_mark_dirty(struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	const struct guest_mem_region *r = region_of(m, gpa, len);
	uint64_t first, last, pfn;

	if (!r || len == 0 || !m->dirty_bitmap)
		return;
	first = (r->fd_offset + (gpa - r->gpa)) / PAGE_SIZE;
	last = (r->fd_offset + (gpa - r->gpa) + len - 1) / PAGE_SIZE;
	for (pfn = first; pfn <= last; pfn++)
		__atomic_fetch_or(&m->dirty_bitmap[pfn / 64], 1ull << (pfn % 64), __ATOMIC_RELAXED);
}
