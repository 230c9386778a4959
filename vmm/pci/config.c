// SPDX-License-Identifier: MIT
/*
 * Configuration space of one PCI function: header set-up and write masks, BAR sizing and
 * decode, the capability list, INTx, save/load. The access paths (0xCF8/0xCFC, ECAM) and the
 * window dispatch are in host.c; pci.h explains the locking.
 *
 * BAR sizing (PCI 3.0 §6.2.5.1): the writable bits of a BAR are exactly its address bits,
 * so writing all-ones and reading back yields ~(size-1) plus the read-only type bits, with
 * no special case. A 64-bit BAR's upper dword is fully writable when size <= 4 GiB.
 */
#define LOG_TAG "pci"
#include <errno.h>
#include <string.h>

#include "vmm/irq.h"
#include "vmm/lib/log.h"
#include "vmm/pci/msix.h"
#include "vmm/pci/pci.h"
#include "vmm/pci/pci_internal.h"

void pci_cfg_set8(struct pci_device *d, uint32_t off, uint8_t v, uint8_t wmask)
{
	d->cfg[off] = v;
	d->wmask[off] = wmask;
}

void pci_cfg_set16(struct pci_device *d, uint32_t off, uint16_t v, uint16_t wmask)
{
	pci_cfg_set8(d, off, (uint8_t)v, (uint8_t)wmask);
	pci_cfg_set8(d, off + 1, (uint8_t)(v >> 8), (uint8_t)(wmask >> 8));
}

void pci_cfg_set32(struct pci_device *d, uint32_t off, uint32_t v, uint32_t wmask)
{
	pci_cfg_set16(d, off, (uint16_t)v, (uint16_t)wmask);
	pci_cfg_set16(d, off + 2, (uint16_t)(v >> 16), (uint16_t)(wmask >> 16));
}

void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class_code, uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id)
{
	memset(d, 0, sizeof(*d));
	d->name = name;
	pthread_mutex_init(&d->intx_lock, NULL);
	pci_cfg_set16(d, PCI_VENDOR_ID, vendor, 0);
	pci_cfg_set16(d, PCI_DEVICE_ID, device, 0);
	pci_cfg_set16(d, PCI_COMMAND, 0,
		      PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
		      PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
	/* Error bits are RW1C; we never set them, but the guest may clear them. */
	pci_cfg_set16(d, PCI_STATUS, 0, 0);
	d->w1cmask[PCI_STATUS + 1] = (PCI_STATUS_PARITY | PCI_STATUS_SIG_TARGET_ABORT |
				      PCI_STATUS_REC_TARGET_ABORT | PCI_STATUS_REC_MASTER_ABORT |
				      PCI_STATUS_SIG_SYSTEM_ERROR | PCI_STATUS_DETECTED_PARITY) >> 8;
	pci_cfg_set8(d, PCI_REVISION_ID, revision, 0);
	pci_cfg_set8(d, PCI_CLASS_PROG, (uint8_t)class_code, 0);
	pci_cfg_set16(d, PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8), 0);
	pci_cfg_set8(d, PCI_CACHE_LINE_SIZE, 0, 0xff);
	pci_cfg_set8(d, PCI_LATENCY_TIMER, 0, 0xff);
	pci_cfg_set8(d, PCI_HEADER_TYPE, PCI_HEADER_TYPE_NORMAL, 0);
	pci_cfg_set16(d, PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor, 0);
	pci_cfg_set16(d, PCI_SUBSYSTEM_ID, subsys_id, 0);
	pci_cfg_set8(d, PCI_INTERRUPT_LINE, 0, 0xff);
	pci_cfg_set8(d, PCI_INTERRUPT_PIN, 0, 0);
	d->cap_end = PCI_FIRST_CAP;
}

int pci_device_set_bar(struct pci_device *d, unsigned int idx, uint64_t size, bool is64,
		       bool prefetch, const struct bus_ops *ops, void *opaque)
{
	uint32_t off = PCI_BASE_ADDRESS_0 + 4 * idx;
	uint32_t flags = PCI_BASE_ADDRESS_SPACE_MEMORY;
	uint64_t mask;

	if (idx >= PCI_NR_BARS || (is64 && idx + 1 >= PCI_NR_BARS) || size < 16 ||
	    (size & (size - 1)) || (!is64 && size > (1ull << 31)) || !ops)
		return -EINVAL;
	if (d->bars[idx].size || (is64 && d->bars[idx + 1].size) ||
	    (idx > 0 && d->bars[idx - 1].is64))
		return -EEXIST;
	flags |= is64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 : PCI_BASE_ADDRESS_MEM_TYPE_32;
	if (prefetch)
		flags |= PCI_BASE_ADDRESS_MEM_PREFETCH;
	mask = ~(size - 1);
	pci_cfg_set32(d, off, flags, (uint32_t)mask & ~0xfu);
	if (is64)
		pci_cfg_set32(d, off + 4, 0, (uint32_t)(mask >> 32));
	d->bars[idx] = (struct pci_bar){ .size = size, .is64 = is64, .prefetch = prefetch,
					 .ops = ops, .opaque = opaque };
	return 0;
}

int pci_device_add_cap(struct pci_device *d, uint8_t cap_id, uint8_t len, uint8_t *off)
{
	unsigned int at = (d->cap_end + 3u) & ~3u;

	if (len < 2 || at + len > 0x100)
		return -ENOSPC;
	pci_cfg_set8(d, at, cap_id, 0);
	pci_cfg_set8(d, at + 1, 0, 0);
	if (d->cap_last)
		d->cfg[d->cap_last + 1] = (uint8_t)at;
	else
		d->cfg[PCI_CAPABILITY_LIST] = (uint8_t)at;
	d->cfg[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
	d->cap_last = (uint8_t)at;
	d->cap_end = (uint8_t)(at + len);
	*off = (uint8_t)at;
	return 0;
}

/* The address BAR @i holds in config space (low type bits stripped). */
static uint64_t bar_cfg_addr(const struct pci_device *d, unsigned int i)
{
	uint32_t off = PCI_BASE_ADDRESS_0 + 4 * i;
	uint64_t addr = pci_cfg_get32(d, off) & ~0xfull;

	if (d->bars[i].is64)
		addr |= (uint64_t)pci_cfg_get32(d, off + 4) << 32;
	return addr;
}

void pci_bar_set_addr(struct pci_device *d, unsigned int i, uint64_t addr)
{
	uint32_t off = PCI_BASE_ADDRESS_0 + 4 * i;
	uint32_t lo = pci_cfg_get32(d, off);

	lo = (lo & 0xfu) | ((uint32_t)addr & ~0xfu);
	d->cfg[off] = (uint8_t)lo;
	d->cfg[off + 1] = (uint8_t)(lo >> 8);
	d->cfg[off + 2] = (uint8_t)(lo >> 16);
	d->cfg[off + 3] = (uint8_t)(lo >> 24);
	if (d->bars[i].is64)
		for (int b = 0; b < 4; b++)
			d->cfg[off + 4 + b] = (uint8_t)(addr >> (32 + 8 * b));
}

/* Inside one of the PCI windows entirely? Only there can a BAR be reached. */
static bool in_window(const struct pci_bus *pb, uint64_t addr, uint64_t size)
{
	const struct pci_window *w[2] = { &pb->mmio32, &pb->mmio64 };

	for (int i = 0; i < 2; i++)
		if (w[i]->size && addr >= w[i]->base && size <= w[i]->size &&
		    addr - w[i]->base <= w[i]->size - size)
			return true;
	return false;
}

void pci_device_update_bars_locked(struct pci_device *d)
{
	bool mem = pci_cfg_get16(d, PCI_COMMAND) & PCI_COMMAND_MEMORY;

	for (unsigned int i = 0; i < PCI_NR_BARS; i++) {
		struct pci_bar *b = &d->bars[i];
		uint64_t addr;
		bool active;

		if (!b->size)
			continue;
		addr = bar_cfg_addr(d, i);
		active = mem && d->bus && in_window(d->bus, addr, b->size);
		if (active == b->active && (!active || addr == b->addr))
			continue;
		if (b->active && d->ops && d->ops->bar_moved)
			d->ops->bar_moved(d, i, b->addr, false);
		b->addr = addr;
		b->active = active;
		if (active && d->ops && d->ops->bar_moved)
			d->ops->bar_moved(d, i, addr, true);
		log_dbg("%s: BAR%u %s at 0x%llx", d->name, i, active ? "decodes" : "off",
			(unsigned long long)addr);
	}
}

/* Recompute the INTx line from the device's level and COMMAND.INTX_DISABLE. */
static void intx_sync_locked(struct pci_device *d)
{
	bool disabled = pci_cfg_get16(d, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE;
	bool line = d->intx_level && !disabled;

	if (line == d->intx_line || !d->bus || !d->bus->env.irq)
		return;
	d->intx_line = line;
	irq_line(d->bus->env.irq, d->intx_gsi, line);
}

void pci_device_set_intx(struct pci_device *d, bool level)
{
	pthread_mutex_lock(&d->intx_lock);
	d->intx_level = level;
	/*
	 * COMMAND is read without pci_bus.lock: a concurrent config write re-syncs after it
	 * changes COMMAND (pci_device_cfg_write takes intx_lock), so the line converges.
	 */
	intx_sync_locked(d);
	pthread_mutex_unlock(&d->intx_lock);
}

uint32_t pci_device_cfg_read(struct pci_device *d, uint32_t off, uint32_t len)
{
	uint32_t v = 0;

	if (d->ops && d->ops->config_before_read)
		d->ops->config_before_read(d, off, len);
	for (uint32_t i = 0; i < len; i++)
		v |= (uint32_t)d->cfg[off + i] << (8 * i);
	/* STATUS.INTERRUPT reflects the device's INTx level (PCI 3.0 §6.2.3). */
	if (off <= PCI_STATUS && off + len > PCI_STATUS) {
		pthread_mutex_lock(&d->intx_lock);
		if (d->intx_level)
			v |= (uint32_t)PCI_STATUS_INTERRUPT << (8 * (PCI_STATUS - off));
		pthread_mutex_unlock(&d->intx_lock);
	}
	return v;
}

static bool overlaps(uint32_t off, uint32_t len, uint32_t start, uint32_t n)
{
	return off < start + n && start < off + len;
}

void pci_device_cfg_write(struct pci_device *d, uint32_t off, uint32_t len, uint32_t val)
{
	for (uint32_t i = 0; i < len; i++) {
		uint8_t v = (uint8_t)(val >> (8 * i));
		uint8_t wm = d->wmask[off + i], w1c = d->w1cmask[off + i];
		uint8_t cur = d->cfg[off + i];

		cur = (uint8_t)((cur & ~wm) | (v & wm));
		cur &= (uint8_t)~(v & w1c);
		d->cfg[off + i] = cur;
	}
	if (overlaps(off, len, PCI_COMMAND, 2) ||
	    overlaps(off, len, PCI_BASE_ADDRESS_0, 4 * PCI_NR_BARS))
		pci_device_update_bars_locked(d);
	if (overlaps(off, len, PCI_COMMAND, 2)) {
		pthread_mutex_lock(&d->intx_lock);
		intx_sync_locked(d);
		pthread_mutex_unlock(&d->intx_lock);
	}
	if (d->msix && overlaps(off, len, d->msix->cap + PCI_MSIX_FLAGS, 2))
		msix_ctrl_written(d->msix);
	if (d->ops && d->ops->config_written)
		d->ops->config_written(d, off, len);
}

void pci_device_save(struct pci_device *d, struct pci_device_state *st)
{
	struct pci_bus *pb = d->bus;

	if (pb)
		pthread_rwlock_rdlock(&pb->lock);
	memcpy(st->cfg, d->cfg, sizeof(st->cfg));
	if (pb)
		pthread_rwlock_unlock(&pb->lock);
}

int pci_device_load(struct pci_device *d, const struct pci_device_state *st)
{
	struct pci_bus *pb = d->bus;

	if (memcmp(st->cfg, d->cfg, PCI_COMMAND) != 0) {
		log_err("%s: saved config space is for %02x%02x:%02x%02x", d->name,
			st->cfg[1], st->cfg[0], st->cfg[3], st->cfg[2]);
		return -EINVAL;
	}
	if (pb)
		pthread_rwlock_wrlock(&pb->lock);
	/* Only the bits the guest could have written; RW1C bits are taken as saved. */
	for (unsigned int i = 0; i < PCI_CFG_SIZE; i++) {
		uint8_t m = d->wmask[i] | d->w1cmask[i];

		d->cfg[i] = (uint8_t)((d->cfg[i] & ~m) | (st->cfg[i] & m));
	}
	pci_device_update_bars_locked(d);
	if (d->msix)
		msix_ctrl_written(d->msix);
	pthread_mutex_lock(&d->intx_lock);
	intx_sync_locked(d);
	pthread_mutex_unlock(&d->intx_lock);
	if (pb)
		pthread_rwlock_unlock(&pb->lock);
	return 0;
}
