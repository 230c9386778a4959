/* SPDX-License-Identifier: MIT */
/*
 * PIO and MMIO buses. A device registers the address range it claims with a small ops table;
 * a vCPU exit is dispatched by address with a binary search, so the run loop never switches
 * over port numbers. Handlers see the offset inside their range, not the absolute address.
 *
 * Threading: dispatch runs on vCPU threads and holds the read side of @lock for the whole
 * call, so a concurrent unregister (a BAR being moved by the guest) waits for in-flight
 * accesses to finish instead of racing them (the use-after-free kvmtool's mmio.c describes).
 * Consequence: a handler must not register or unregister ranges on its own bus — it would
 * deadlock; defer such work to the main loop.
 */
#ifndef VMM_BUS_H
#define VMM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bus_ops {
	/* @data is @len bytes (1, 2, 4 or 8; larger for MMIO string ops), little-endian. */
	void (*read)(void *opaque, uint64_t off, void *data, uint32_t len);
	void (*write)(void *opaque, uint64_t off, const void *data, uint32_t len);
};

struct bus_range {
	uint64_t base, len;
	const char *name;
	const struct bus_ops *ops;
	void *opaque;
};

struct bus {
	pthread_rwlock_t lock;
	struct bus_range *ranges;	/* sorted by base, non-overlapping */
	size_t nr, cap;
	const char *name;		/* "pio" or "mmio", for logs */
	uint64_t unclaimed;		/* accesses nobody claimed (reads all-ones, writes dropped) */
};

int  bus_init(struct bus *b, const char *name);
void bus_destroy(struct bus *b);

/* 0, -EEXIST if [base, base+len) overlaps a registered range, -EINVAL for len 0/overflow. */
int  bus_register(struct bus *b, uint64_t base, uint64_t len, const char *name,
		  const struct bus_ops *ops, void *opaque);
/* 0, or -ENOENT if no range starts at @base. */
int  bus_unregister(struct bus *b, uint64_t base);

/*
 * Dispatch an access of @len bytes at @addr. Returns true if a device claimed it. An access
 * nobody claims reads as all-ones and its write is dropped (logged at debug level only).
 * An access that straddles the end of a range is not claimed.
 */
bool bus_dispatch(struct bus *b, uint64_t addr, void *data, uint32_t len, bool is_write);

#endif
