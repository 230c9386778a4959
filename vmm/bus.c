// SPDX-License-Identifier: MIT
/*
 * Address-range buses for PIO and MMIO exits (see bus.h for the contract and locking).
 * Ranges live in a sorted array: registration is rare (start-up, BAR moves) and dispatch is
 * hot, so an O(log n) lookup without pointer chasing is the right trade.
 */
#define LOG_TAG "bus"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/bus.h"
#include "vmm/lib/log.h"

int bus_init(struct bus *b, const char *name)
{
	memset(b, 0, sizeof(*b));
	b->name = name;
	return -pthread_rwlock_init(&b->lock, NULL);
}

void bus_destroy(struct bus *b)
{
	free(b->ranges);
	pthread_rwlock_destroy(&b->lock);
	memset(b, 0, sizeof(*b));
}

/* Index of the first range whose base is > addr. Caller holds the lock. */
static size_t upper_bound(const struct bus *b, uint64_t addr)
{
	size_t lo = 0, hi = b->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (b->ranges[mid].base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, const char *name,
		 const struct bus_ops *ops, void *opaque)
{
	size_t pos;
	int ret = 0;

	if (len == 0 || base + len < base)
		return -EINVAL;

	pthread_rwlock_wrlock(&b->lock);
	pos = upper_bound(b, base);
	/* Overlap with the range before (it may extend past base) or the one after. */
	if ((pos > 0 && b->ranges[pos - 1].base + b->ranges[pos - 1].len > base) ||
	    (pos < b->nr && b->ranges[pos].base < base + len)) {
		ret = -EEXIST;
		goto out;
	}
	if (b->nr == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct bus_range *r = realloc(b->ranges, cap * sizeof(*r));

		if (!r) {
			ret = -ENOMEM;
			goto out;
		}
		b->ranges = r;
		b->cap = cap;
	}
	memmove(&b->ranges[pos + 1], &b->ranges[pos], (b->nr - pos) * sizeof(b->ranges[0]));
	b->ranges[pos] = (struct bus_range){ base, len, name, ops, opaque };
	b->nr++;
out:
	pthread_rwlock_unlock(&b->lock);
	if (ret == -EEXIST)
		log_err("%s: %s [0x%llx, +0x%llx) overlaps a registered range", b->name, name,
			(unsigned long long)base, (unsigned long long)len);
	return ret;
}

int bus_unregister(struct bus *b, uint64_t base)
{
	size_t pos;
	int ret = -ENOENT;

	pthread_rwlock_wrlock(&b->lock);
	pos = upper_bound(b, base);
	if (pos > 0 && b->ranges[pos - 1].base == base) {
		memmove(&b->ranges[pos - 1], &b->ranges[pos], (b->nr - pos) * sizeof(b->ranges[0]));
		b->nr--;
		ret = 0;
	}
	pthread_rwlock_unlock(&b->lock);
	return ret;
}

bool bus_dispatch(struct bus *b, uint64_t addr, void *data, uint32_t len, bool is_write)
{
	const struct bus_range *r = NULL;
	size_t pos;

	pthread_rwlock_rdlock(&b->lock);
	pos = upper_bound(b, addr);
	if (pos > 0) {
		r = &b->ranges[pos - 1];
		if (addr - r->base >= r->len || len > r->len - (addr - r->base))
			r = NULL;
	}
	if (r) {
		if (is_write) {
			if (r->ops->write)
				r->ops->write(r->opaque, addr - r->base, data, len);
		} else if (r->ops->read) {
			r->ops->read(r->opaque, addr - r->base, data, len);
		} else {
			memset(data, 0xff, len);
		}
	}
	pthread_rwlock_unlock(&b->lock);

	if (!r) {
		__atomic_add_fetch(&b->unclaimed, 1, __ATOMIC_RELAXED);
		if (!is_write)
			memset(data, 0xff, len);
		log_dbg("%s: unclaimed %s of %u bytes at 0x%llx", b->name, is_write ? "write" : "read",
			len, (unsigned long long)addr);
	}
	return r != NULL;
}
