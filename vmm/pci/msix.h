/* SPDX-License-Identifier: MIT */
/*
 * MSI-X (PCI Local Bus 3.0 §6.8.2): the capability in config space, the vector table and
 * the pending-bit array in a memory BAR the owner chooses, and delivery through KVM.
 *
 * Delivery: a vector that is unmasked while MSI-X is enabled gets a GSI with an MSI route
 * (its table address/data, KVM_SET_GSI_ROUTING) and an irqfd; msix_notify() then writes that
 * eventfd. Routes are brought up to date when the guest writes an unmasked entry or unmasks
 * one (vector mask, function mask or enable), and only if address/data changed. A masked
 * vector's notification sets its PBA bit instead; unmasking a vector with its PBA bit set
 * clears the bit and delivers. Without irqfd (or if a route cannot be set) KVM_SIGNAL_MSI is
 * used.
 *
 * Threading: table/PBA accessors run on vCPU threads (BAR handler, pci_bus.lock held for
 * reading); msix_ctrl_written() on a vCPU thread under pci_bus.lock held for writing;
 * msix_notify() from any thread (normally the main loop, device lock held). @lock orders
 * after device locks and before the irq lock.
 */
#ifndef VMM_PCI_MSIX_H
#define VMM_PCI_MSIX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/irq.h"

struct pci_device;

#define MSIX_ENTRY_SIZE		16
#define MSIX_MAX_VECTORS	2048
#define MSIX_NO_VECTOR		0xffff

struct msix_vec {
	uint32_t addr_lo, addr_hi, data, ctrl;	/* the guest's table entry */
	int efd;				/* irqfd eventfd, -1 until first needed */
	uint32_t gsi;
	bool routed;				/* KVM route == (addr, data) below */
	uint64_t route_addr;
	uint32_t route_data;
};

struct msix {
	pthread_mutex_t lock;
	struct pci_device *pdev;
	struct irq *irq;
	uint16_t nr;			/* vectors */
	uint8_t cap;			/* capability offset in config space */
	bool enabled, func_masked;	/* mirror of the capability's message control */
	struct msix_vec *vecs;
	uint64_t *pba;
	uint64_t fired, pended;		/* counters */
};

/*
 * Add the MSI-X capability to @d for @nr vectors whose table is at @table_off and PBA at
 * @pba_off inside BAR @bar (both 8-byte aligned; the owner routes those BAR offsets to
 * msix_table_read/write and msix_pba_read). 0 or -errno.
 */
int  msix_init(struct msix *m, struct pci_device *d, struct irq *irq, uint16_t nr,
	       unsigned int bar, uint32_t table_off, uint32_t pba_off);
/* Release eventfds, irqfds and routes. */
void msix_destroy(struct msix *m);

/* Table size in bytes and PBA size in bytes (for the owner's BAR layout). */
static inline uint32_t msix_table_size(uint16_t nr) { return (uint32_t)nr * MSIX_ENTRY_SIZE; }
static inline uint32_t msix_pba_size(uint16_t nr) { return ((uint32_t)nr + 63) / 64 * 8; }

/* @off relative to the table / the PBA. Only aligned 4- and 8-byte accesses take effect. */
void msix_table_read(struct msix *m, uint64_t off, void *data, uint32_t len);
void msix_table_write(struct msix *m, uint64_t off, const void *data, uint32_t len);
void msix_pba_read(struct msix *m, uint64_t off, void *data, uint32_t len);

/* The guest wrote the capability's message control (pci core calls this). */
void msix_ctrl_written(struct msix *m);

bool msix_enabled(struct msix *m);
/*
 * Signal @vec: delivered now, or pended if masked. 0, -EINVAL for a vector out of range
 * (the guest can program any number: callers pass it through unchecked and drop the error).
 */
int  msix_notify(struct msix *m, uint16_t vec);

/* Device reset: all vectors masked, PBA clear, routes kept for reuse. */
void msix_reset(struct msix *m);

/* Saved state: the table and PBA (enable/function mask live in config space). */
struct msix_state {
	uint16_t nr;
	uint32_t table[MSIX_MAX_VECTORS][4];
	uint64_t pba[MSIX_MAX_VECTORS / 64];
};
void msix_save(struct msix *m, struct msix_state *st);
/* After pci_device_load() of the owner. 0 or -EINVAL (vector count mismatch). */
int  msix_load(struct msix *m, const struct msix_state *st);

#endif
