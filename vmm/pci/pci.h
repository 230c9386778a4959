/* SPDX-License-Identifier: MIT */
/*
 * PCI: one root bus (segment 0, bus 0) behind a host bridge at 00:00.0, reached through
 * type-1 configuration access (0xCF8/0xCFC on the PIO bus) and ECAM (LAYOUT_PCI_ECAM_BASE on
 * the MMIO bus). Devices are conventional PCI functions (function 0 of a slot) with a
 * 4 KiB configuration space image, per-byte write masks (read-only fields) and RW1C masks
 * (status bits), memory BARs (32/64-bit; no I/O BARs), a capability list, INTx and MSI-X
 * (pci/msix.h).
 *
 * BARs and the bus lock (bus.h). Configuration writes arrive on a vCPU thread *inside*
 * bus_dispatch (PIO bus for 0xCFC, MMIO bus for ECAM), holding that bus's read lock, while
 * BARs live on the MMIO bus. Registering/unregistering a BAR range from there would take the
 * MMIO bus's write lock under its own read lock (ECAM path: self-deadlock) or under a device
 * lock that a concurrent BAR access on another vCPU holds while waiting... So BARs are never
 * registered on the MMIO bus individually. Instead pci_init() registers the two PCI MMIO
 * windows (the 32-bit one from layout.h and a 64-bit one above RAM) once, and this module
 * decodes BARs inside them itself, under its own rwlock @pci_bus.lock:
 *   - a BAR access (vCPU, MMIO bus read lock held) takes pci_bus.lock for reading, finds the
 *     active BAR containing the address and calls its handler with the lock still held;
 *   - a configuration access takes pci_bus.lock for writing, so moving a BAR or toggling
 *     COMMAND.MEM waits for in-flight BAR accesses and is visible to the very next access of
 *     any vCPU — no deferral to the main loop, no window where the guest's new address is
 *     not yet decoded. A BAR the guest places outside the windows (e.g. the all-ones pattern
 *     while sizing) simply does not decode.
 * Lock order: MMIO/PIO bus (read) -> pci_bus.lock -> device lock (virtio) -> pci intx_lock /
 * msix lock -> irq lock. BAR handlers must therefore never take pci_bus.lock themselves and
 * must not register ranges on any bus. pci_device_ops.bar_moved runs under pci_bus.lock held
 * for writing and may call KVM (ioeventfd re-registration) but not the buses.
 */
#ifndef VMM_PCI_PCI_H
#define VMM_PCI_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/pci_regs.h>

#include "vmm/bus.h"

struct irq;
struct msix;
struct pci_bus;
struct pci_device;

#define PCI_NR_SLOTS		32
#define PCI_CFG_SIZE		4096		/* ECAM: extended configuration space */
#define PCI_NR_BARS		6
#define PCI_FIRST_CAP		0x40
#define PCI_INTX_FIRST_GSI	16		/* _PRT: slot s, pin p -> GSI 16 + (s + p) % 8 */
#define PCI_MMIO64_SIZE		(32ull << 30)	/* 64-bit window: 32 GiB above RAM */
#define PCI_MMIO64_ALIGN	(1ull << 30)
#define PCI_ECAM_LAST_BUS	0xff		/* LAYOUT_PCI_ECAM_SIZE / 1 MiB - 1 */

/* Type-1 configuration access registers (0xCF8 address, 0xCFC-0xCFF data). */
#define PCI_CONF1_ADDR_PORT	0xCF8
#define PCI_CONF1_DATA_PORT	0xCFC

/* Where pci_device_intx_gsi() routes a slot's pin; the DSDT's _PRT says the same. */
static inline uint32_t pci_intx_gsi(unsigned int slot, unsigned int pin /* 0 = INTA */)
{
	return PCI_INTX_FIRST_GSI + (slot + pin) % 8;
}

struct pci_device_ops {
	/*
	 * A memory BAR started or stopped decoding, or moved (the guest wrote the BAR or toggled
	 * COMMAND.MEM): @active says whether it now decodes at @addr. vCPU thread (config write)
	 * or the caller of pci_register_device()/pci_device_load(); pci_bus.lock held for
	 * writing. Used to move ioeventfds. May be NULL.
	 */
	void (*bar_moved)(struct pci_device *d, unsigned int bar, uint64_t addr, bool active);
	/*
	 * After the generic handling of a config write at [off, off+len), and before a config
	 * read of [off, off+len) (to refresh bytes that mirror device state). vCPU thread,
	 * pci_bus.lock held for writing. May be NULL.
	 */
	void (*config_written)(struct pci_device *d, uint32_t off, uint32_t len);
	void (*config_before_read)(struct pci_device *d, uint32_t off, uint32_t len);
};

struct pci_bar {
	uint64_t size;			/* power of two >= 16; 0 = BAR not implemented */
	bool is64;			/* occupies this slot and the next */
	bool prefetch;
	const struct bus_ops *ops;	/* called with offsets inside the BAR */
	void *opaque;
	/* decode state, derived from config space under pci_bus.lock */
	uint64_t addr;
	bool active;
};

struct pci_device {
	const char *name;
	const struct pci_device_ops *ops;
	void *opaque;			/* the owner's */

	uint8_t cfg[PCI_CFG_SIZE];	/* little-endian register image */
	uint8_t wmask[PCI_CFG_SIZE];	/* 1 = bit writable by the guest */
	uint8_t w1cmask[PCI_CFG_SIZE];	/* 1 = write-one-to-clear bit */
	struct pci_bar bars[PCI_NR_BARS];
	uint8_t cap_last;		/* offset of the last capability (0: none yet) */
	uint8_t cap_end;		/* first free byte for the next capability */
	struct msix *msix;		/* set by msix_init(); its cap's control is forwarded */

	/* set by pci_register_device() */
	struct pci_bus *bus;
	unsigned int slot;
	uint32_t intx_gsi;

	pthread_mutex_t intx_lock;	/* protects the two below; taken after device locks */
	bool intx_level;		/* the device asserts INTx */
	bool intx_line;			/* what we last told KVM */
};

struct pci_window {
	struct pci_bus *pb;
	uint64_t base, size;
	uint64_t next;			/* initial BAR placement cursor */
	bool registered;
};

struct pci_env {
	struct bus *pio, *mmio;
	struct irq *irq;		/* INTx lines; MSI-X routes */
	int vm_fd;			/* for ioeventfds of devices */
	uint64_t ram_top;		/* highest guest-physical RAM address + 1 */
	/*
	 * Port 0xCF9 (reset control) shares the dword at 0xCF8 with the type-1 address register:
	 * pci_init() takes [0xCF8, 0xCFC) as one range (unregistering the platform's [0xCF9, 1)
	 * first) and forwards 1-byte accesses at 0xCF9 here — normally to
	 * platform_reset_control_read/write. NULL: reads 0, writes dropped. Any vCPU thread.
	 */
	uint8_t (*cf9_read)(void *opaque);
	void (*cf9_write)(void *opaque, uint8_t val);
	void *opaque;
};

struct pci_bus {
	pthread_rwlock_t lock;		/* config spaces and BAR decode state; see top of file */
	struct pci_env env;
	struct pci_device *slots[PCI_NR_SLOTS];
	uint32_t conf1_addr;		/* type-1 address register (under @lock) */
	struct pci_window mmio32, mmio64;
	struct pci_device host;		/* 00:00.0 */
	bool pio_registered, ecam_registered;
};

/*
 * Register the host bridge, 0xCF8-0xCFF, ECAM and the MMIO windows on the buses. Main thread,
 * before vCPUs run. 0 or -errno (e.g. -EEXIST if a range is taken).
 */
int  pci_init(struct pci_bus *pb, const struct pci_env *env);
void pci_destroy(struct pci_bus *pb);

/*
 * Fill the header of a type-0 function: ids, class (24-bit base/sub/prog-if), revision,
 * subsystem ids, write masks of the standard registers. Call before adding BARs/capabilities.
 */
void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class_code, uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id);
/* Declare memory BAR @idx of @size bytes (power of two >= 16; 64-bit uses idx and idx+1). */
int  pci_device_set_bar(struct pci_device *d, unsigned int idx, uint64_t size, bool is64,
			bool prefetch, const struct bus_ops *ops, void *opaque);
/*
 * Append a capability of @len bytes (including the 2-byte id/next header) to the list.
 * *off receives its offset in config space; the body is zero and read-only until the
 * caller sets cfg/wmask bytes. 0 or -ENOSPC.
 */
int  pci_device_add_cap(struct pci_device *d, uint8_t cap_id, uint8_t len, uint8_t *off);

/*
 * Put @d into a free slot (1..31), route its INTA to pci_intx_gsi(), and place its BARs in the
 * windows like firmware would (COMMAND.MEM left off: the guest enables decoding). Main thread,
 * before vCPUs run. 0, -ENOSPC (no slot or window space) or -EINVAL.
 */
int  pci_register_device(struct pci_bus *pb, struct pci_device *d);

/* Take @d off the bus (its BARs stop decoding, bar_moved(.., false) is called). */
void pci_unregister_device(struct pci_bus *pb, struct pci_device *d);

/*
 * Configuration access by (bus, device, function, register) — the one path both 0xCFC and
 * ECAM use, public for tests. @len 1, 2 or 4 and naturally aligned; others read all-ones /
 * are dropped. Absent functions read all-ones. Takes pci_bus.lock.
 */
uint32_t pci_cfg_read(struct pci_bus *pb, unsigned int bus, unsigned int dev, unsigned int fn,
		      uint32_t off, uint32_t len);
void     pci_cfg_write(struct pci_bus *pb, unsigned int bus, unsigned int dev, unsigned int fn,
		       uint32_t off, uint32_t len, uint32_t val);

/* Raise or lower the device's INTx (level-triggered). Any thread; honours COMMAND.INTX_DISABLE. */
void pci_device_set_intx(struct pci_device *d, bool level);

/* Little-endian accessors on the config image (caller's locking). */
static inline uint16_t pci_cfg_get16(const struct pci_device *d, uint32_t off)
{
	return (uint16_t)(d->cfg[off] | d->cfg[off + 1] << 8);
}

static inline uint32_t pci_cfg_get32(const struct pci_device *d, uint32_t off)
{
	return (uint32_t)pci_cfg_get16(d, off) | (uint32_t)pci_cfg_get16(d, off + 2) << 16;
}

void pci_cfg_set8(struct pci_device *d, uint32_t off, uint8_t v, uint8_t wmask);
void pci_cfg_set16(struct pci_device *d, uint32_t off, uint16_t v, uint16_t wmask);
void pci_cfg_set32(struct pci_device *d, uint32_t off, uint32_t v, uint32_t wmask);

/*
 * Saved state of one function: its config space image (BAR addresses, COMMAND, MSI-X cap
 * control...). INTx level is the device's to re-derive. Plain struct; the state stream
 * serialises it field by field.
 */
struct pci_device_state {
	uint8_t cfg[PCI_CFG_SIZE];
};

void pci_device_save(struct pci_device *d, struct pci_device_state *st);
/*
 * Load @st into @d: only guest-writable bits are taken (read-only ids and masks stay as this
 * build defines them, a hostile stream cannot change them), then BAR decoding and the MSI-X
 * control are re-derived. Main thread, vCPUs paused. 0 or -EINVAL (mismatched ids).
 */
int  pci_device_load(struct pci_device *d, const struct pci_device_state *st);

/* ---- ACPI (pci/acpi.c), through the platform's builder (vmm/acpi/acpi.h) ---- */

struct acpi;
struct acpi_mcfg;
struct aml;

/*
 * Add the PCI host to the ACPI tables: DSDT
 *   Scope (\_SB) { Device (PCI0) { _HID PNP0A08, _CID PNP0A03, _SEG 0, _BBN 0, _UID 0,
 *                                   _CRS (buses 0-255, I/O 0xCF8/8, I/O windows, MMIO32 and
 *                                   MMIO64 windows), _PRT (slots 1-31, INTA-D -> GSIs),
 *                                   _OSC }
 *                   Device (PRES) { _HID PNP0C02, _CRS: the ECAM range } }
 * and MCFG (ECAM at LAYOUT_PCI_ECAM_BASE, buses 0-255). Start-up, before
 * platform_write_acpi(); after pci_init(). 0 or -errno.
 */
int  pci_acpi_contribute(const struct pci_bus *pb, struct acpi *acpi);
/* The pieces, for tests. */
void pci_acpi_dsdt_aml(const struct pci_bus *pb, struct aml *a);
void pci_acpi_mcfg(struct acpi_mcfg *mcfg);

#endif
