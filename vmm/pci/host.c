// SPDX-License-Identifier: MIT
/*
 * The PCI host: bus 0 with a host bridge at 00:00.0, type-1 configuration access through
 * 0xCF8/0xCFC, ECAM, and the MMIO windows in which BARs decode (pci.h explains why BARs are
 * decoded here rather than registered on the MMIO bus one by one). Initial BAR placement
 * plays the firmware's role: Linux keeps assignments that fit the host bridge's _CRS windows.
 */
#define LOG_TAG "pci"
#include <errno.h>
#include <string.h>

#include "vmm/layout.h"
#include "vmm/lib/log.h"
#include "vmm/pci/pci.h"
#include "vmm/pci/pci_internal.h"

#define HOST_VENDOR	0x1b36		/* Red Hat: a generic PCIe host bridge id */
#define HOST_DEVICE	0x0008
#define HOST_CLASS	0x060000	/* bridge / host bridge */

static struct pci_device *lookup(struct pci_bus *pb, unsigned int bus, unsigned int dev,
				 unsigned int fn)
{
	/* Single-function devices on bus 0 only; everything else is absent (reads all-ones). */
	if (bus != 0 || fn != 0 || dev >= PCI_NR_SLOTS)
		return NULL;
	return pb->slots[dev];
}

static bool cfg_access_ok(uint32_t off, uint32_t len)
{
	return (len == 1 || len == 2 || len == 4) && (off & (len - 1)) == 0 && off + len <= PCI_CFG_SIZE;
}

uint32_t pci_cfg_read(struct pci_bus *pb, unsigned int bus, unsigned int dev, unsigned int fn,
		      uint32_t off, uint32_t len)
{
	struct pci_device *d;
	uint32_t v = len >= 4 ? 0xffffffffu : (1u << (8 * len)) - 1;

	if (!cfg_access_ok(off, len))
		return v;
	/* Write side: reads have side effects on nothing, but must not see a half-done write. */
	pthread_rwlock_wrlock(&pb->lock);
	d = lookup(pb, bus, dev, fn);
	if (d)
		v = pci_device_cfg_read(d, off, len);
	pthread_rwlock_unlock(&pb->lock);
	return v;
}

void pci_cfg_write(struct pci_bus *pb, unsigned int bus, unsigned int dev, unsigned int fn,
		   uint32_t off, uint32_t len, uint32_t val)
{
	struct pci_device *d;

	if (!cfg_access_ok(off, len))
		return;
	pthread_rwlock_wrlock(&pb->lock);
	d = lookup(pb, bus, dev, fn);
	if (d)
		pci_device_cfg_write(d, off, len, val);
	pthread_rwlock_unlock(&pb->lock);
}

static uint32_t le_get(const void *data, uint32_t len)
{
	const uint8_t *p = data;
	uint32_t v = 0;

	for (uint32_t i = 0; i < len && i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static void le_put(void *data, uint32_t len, uint64_t v)
{
	uint8_t *p = data;

	for (uint32_t i = 0; i < len; i++)
		p[i] = i < 8 ? (uint8_t)(v >> (8 * i)) : 0xff;
}

/* ---- type-1: 0xCF8 (address; 0xCF9 is the reset control register) and 0xCFC data ---- */

static void conf1_addr_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct pci_bus *pb = opaque;
	uint32_t v;

	if (off == 1 && len == 1) {
		le_put(data, 1, pb->env.cf9_read ? pb->env.cf9_read(pb->env.opaque) : 0);
		return;
	}
	if (off != 0 || len != 4) {
		le_put(data, len, 0);	/* odd-sized accesses read 0 */
		return;
	}
	pthread_rwlock_rdlock(&pb->lock);
	v = pb->conf1_addr;
	pthread_rwlock_unlock(&pb->lock);
	le_put(data, 4, v);
}

static void conf1_addr_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct pci_bus *pb = opaque;

	if (off == 0 && len == 4) {
		pthread_rwlock_wrlock(&pb->lock);
		pb->conf1_addr = le_get(data, 4) & 0x80fffffcu;
		pthread_rwlock_unlock(&pb->lock);
	} else if (off == 1 && len == 1) {
		if (pb->env.cf9_write)
			pb->env.cf9_write(pb->env.opaque, *(const uint8_t *)data);
	}
	/* Linux's type-1 probe also writes 0xCFB; other narrow writes do nothing. */
}

/* Decode the latched address; false if the enable bit is clear. */
static bool conf1_decode(struct pci_bus *pb, uint64_t off, unsigned int *bus, unsigned int *dev,
			 unsigned int *fn, uint32_t *reg)
{
	uint32_t a;

	pthread_rwlock_rdlock(&pb->lock);
	a = pb->conf1_addr;
	pthread_rwlock_unlock(&pb->lock);
	if (!(a & 0x80000000u))
		return false;
	*bus = (a >> 16) & 0xff;
	*dev = (a >> 11) & 0x1f;
	*fn = (a >> 8) & 7;
	*reg = (a & 0xfc) + (uint32_t)off;
	return true;
}

static void conf1_data_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	unsigned int bus, dev, fn;
	uint32_t reg;

	if (len > 4 || !conf1_decode(opaque, off, &bus, &dev, &fn, &reg)) {
		le_put(data, len, ~0ull);
		return;
	}
	le_put(data, len, pci_cfg_read(opaque, bus, dev, fn, reg, len));
}

static void conf1_data_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	unsigned int bus, dev, fn;
	uint32_t reg;

	if (len > 4 || !conf1_decode(opaque, off, &bus, &dev, &fn, &reg))
		return;
	pci_cfg_write(opaque, bus, dev, fn, reg, len, le_get(data, len));
}

static const struct bus_ops conf1_addr_ops = { .read = conf1_addr_read, .write = conf1_addr_write };
static const struct bus_ops conf1_data_ops = { .read = conf1_data_read, .write = conf1_data_write };

/* ---- ECAM: offset = bus << 20 | dev << 15 | fn << 12 | reg ---- */

static void ecam_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	if (len > 4) {
		le_put(data, len, ~0ull);
		return;
	}
	le_put(data, len, pci_cfg_read(opaque, (off >> 20) & 0xff, (off >> 15) & 0x1f,
				       (off >> 12) & 7, off & 0xfff, len));
}

static void ecam_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	if (len > 4)
		return;
	pci_cfg_write(opaque, (off >> 20) & 0xff, (off >> 15) & 0x1f, (off >> 12) & 7,
		      off & 0xfff, len, le_get(data, len));
}

static const struct bus_ops ecam_ops = { .read = ecam_read, .write = ecam_write };

/* ---- MMIO windows: find the decoding BAR and forward ---- */

static void window_access(struct pci_window *w, uint64_t off, void *data, uint32_t len, bool write)
{
	struct pci_bus *pb = w->pb;
	uint64_t addr = w->base + off;
	bool done = false;

	pthread_rwlock_rdlock(&pb->lock);
	for (unsigned int s = 0; s < PCI_NR_SLOTS && !done; s++) {
		struct pci_device *d = pb->slots[s];

		if (!d)
			continue;
		for (unsigned int i = 0; i < PCI_NR_BARS; i++) {
			struct pci_bar *b = &d->bars[i];

			if (!b->active || addr < b->addr || addr - b->addr >= b->size ||
			    len > b->size - (addr - b->addr))
				continue;
			if (write) {
				if (b->ops->write)
					b->ops->write(b->opaque, addr - b->addr, data, len);
			} else if (b->ops->read) {
				b->ops->read(b->opaque, addr - b->addr, data, len);
			} else {
				memset(data, 0xff, len);
			}
			done = true;
			break;
		}
	}
	pthread_rwlock_unlock(&pb->lock);
	if (!done && !write)
		memset(data, 0xff, len);
}

static void window_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	window_access(opaque, off, data, len, false);
}

static void window_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	window_access(opaque, off, (void *)data, len, true);
}

static const struct bus_ops window_ops = { .read = window_read, .write = window_write };

/* ---- set-up ---- */

static void host_bridge_init(struct pci_bus *pb)
{
	struct pci_device *h = &pb->host;

	pci_device_init(h, "host-bridge", HOST_VENDOR, HOST_DEVICE, HOST_CLASS, 0,
			HOST_VENDOR, 0x1100);
	h->bus = pb;
	h->slot = 0;
	pb->slots[0] = h;
}

int pci_init(struct pci_bus *pb, const struct pci_env *env)
{
	uint64_t top = env->ram_top > MEM_32BIT_GAP_END ? env->ram_top : MEM_32BIT_GAP_END;
	int ret;

	memset(pb, 0, sizeof(*pb));
	pb->env = *env;
	ret = -pthread_rwlock_init(&pb->lock, NULL);
	if (ret < 0)
		return ret;
	host_bridge_init(pb);
	pb->mmio32 = (struct pci_window){ pb, LAYOUT_PCI_MMIO32_BASE, LAYOUT_PCI_MMIO32_SIZE,
					   LAYOUT_PCI_MMIO32_BASE, false };
	pb->mmio64.pb = pb;
	pb->mmio64.base = (top + PCI_MMIO64_ALIGN - 1) & ~(PCI_MMIO64_ALIGN - 1);
	pb->mmio64.size = PCI_MMIO64_SIZE;
	pb->mmio64.next = pb->mmio64.base;
	if (!env->pio || !env->mmio)
		return 0;	/* unit tests drive pci_cfg_* directly */

	/* 0xCF9 is forwarded from our range (pci_env.cf9_*); -ENOENT if the platform has none. */
	bus_unregister(env->pio, PCI_CONF1_ADDR_PORT + 1);
	ret = bus_register(env->pio, PCI_CONF1_ADDR_PORT, 4, "pci-conf1-addr", &conf1_addr_ops, pb);
	if (ret < 0)
		goto err;
	ret = bus_register(env->pio, PCI_CONF1_DATA_PORT, 4, "pci-conf1-data", &conf1_data_ops, pb);
	if (ret < 0) {
		bus_unregister(env->pio, PCI_CONF1_ADDR_PORT);
		goto err;
	}
	pb->pio_registered = true;
	ret = bus_register(env->mmio, LAYOUT_PCI_ECAM_BASE, LAYOUT_PCI_ECAM_SIZE, "pci-ecam",
			   &ecam_ops, pb);
	if (ret < 0)
		goto err;
	pb->ecam_registered = true;
	ret = bus_register(env->mmio, pb->mmio32.base, pb->mmio32.size, "pci-mmio32", &window_ops,
			   &pb->mmio32);
	if (ret < 0)
		goto err;
	pb->mmio32.registered = true;
	ret = bus_register(env->mmio, pb->mmio64.base, pb->mmio64.size, "pci-mmio64", &window_ops,
			   &pb->mmio64);
	if (ret < 0)
		goto err;
	pb->mmio64.registered = true;
	return 0;
err:
	log_err("cannot register the PCI host's ranges: %s", strerror(-ret));
	pci_destroy(pb);
	return ret;
}

void pci_destroy(struct pci_bus *pb)
{
	if (pb->mmio64.registered)
		bus_unregister(pb->env.mmio, pb->mmio64.base);
	if (pb->mmio32.registered)
		bus_unregister(pb->env.mmio, pb->mmio32.base);
	if (pb->ecam_registered)
		bus_unregister(pb->env.mmio, LAYOUT_PCI_ECAM_BASE);
	if (pb->pio_registered) {
		bus_unregister(pb->env.pio, PCI_CONF1_ADDR_PORT);
		bus_unregister(pb->env.pio, PCI_CONF1_DATA_PORT);
	}
	pb->mmio64.registered = pb->mmio32.registered = false;
	pb->ecam_registered = pb->pio_registered = false;
	pthread_rwlock_destroy(&pb->lock);
}

/* Naturally aligned space for @size bytes from window @w, or 0. */
static uint64_t window_alloc(struct pci_window *w, uint64_t size)
{
	uint64_t at = (w->next + size - 1) & ~(size - 1);

	if (at < w->next || at - w->base > w->size || size > w->size - (at - w->base))
		return 0;
	w->next = at + size;
	return at;
}

int pci_register_device(struct pci_bus *pb, struct pci_device *d)
{
	unsigned int slot, order[PCI_NR_BARS], n = 0;
	int ret = 0;

	pthread_rwlock_wrlock(&pb->lock);
	for (slot = 1; slot < PCI_NR_SLOTS && pb->slots[slot]; slot++)
		;
	if (slot == PCI_NR_SLOTS) {
		ret = -ENOSPC;
		goto out;
	}
	/* Largest BAR first keeps natural alignment from wasting the window. */
	for (unsigned int i = 0; i < PCI_NR_BARS; i++)
		if (d->bars[i].size)
			order[n++] = i;
	for (unsigned int i = 1; i < n; i++)
		for (unsigned int j = i; j > 0 && d->bars[order[j]].size > d->bars[order[j - 1]].size; j--) {
			unsigned int t = order[j];

			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	for (unsigned int k = 0; k < n; k++) {
		struct pci_bar *b = &d->bars[order[k]];
		/* 64-bit BARs of 256 MiB and more go above 4 GiB; the rest below. */
		uint64_t at = 0;

		if (b->is64 && b->size >= (256ull << 20))
			at = window_alloc(&pb->mmio64, b->size);
		if (!at)
			at = window_alloc(&pb->mmio32, b->size);
		if (!at && b->is64)
			at = window_alloc(&pb->mmio64, b->size);
		if (!at) {
			log_err("%s: no window space for BAR%u (%llu bytes)", d->name, order[k],
				(unsigned long long)b->size);
			ret = -ENOSPC;
			goto out;
		}
		pci_bar_set_addr(d, order[k], at);
	}
	d->bus = pb;
	d->slot = slot;
	d->intx_gsi = pci_intx_gsi(slot, 0);
	pci_cfg_set8(d, PCI_INTERRUPT_PIN, 1, 0);	/* INTA */
	pci_cfg_set8(d, PCI_INTERRUPT_LINE, (uint8_t)d->intx_gsi, 0xff);
	pb->slots[slot] = d;
	pci_device_update_bars_locked(d);
	log_dbg("%s at 00:%02x.0, INTA -> GSI %u", d->name, slot, d->intx_gsi);
out:
	pthread_rwlock_unlock(&pb->lock);
	return ret;
}

void pci_unregister_device(struct pci_bus *pb, struct pci_device *d)
{
	pthread_rwlock_wrlock(&pb->lock);
	if (d->bus == pb && d->slot < PCI_NR_SLOTS && pb->slots[d->slot] == d) {
		pb->slots[d->slot] = NULL;
		for (unsigned int i = 0; i < PCI_NR_BARS; i++) {
			if (d->bars[i].active && d->ops && d->ops->bar_moved)
				d->ops->bar_moved(d, i, d->bars[i].addr, false);
			d->bars[i].active = false;
		}
	}
	pthread_rwlock_unlock(&pb->lock);
}
