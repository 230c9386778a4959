// SPDX-License-Identifier: MIT
/*
 * PCI host and configuration space: header write masks, RW1C status, BAR sizing (32/64-bit),
 * placement in the windows, decode on/off and moves, capability list walking, 0xCF8/0xCFC
 * and ECAM agreeing, 0xCF9 forwarding, save/load, and the ACPI contribution. Real PIO and
 * MMIO buses (vmm/bus.c) are used, so accesses go through bus_dispatch like a vCPU's would.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmm/acpi/acpi.h"
#include "vmm/bus.h"
#include "vmm/layout.h"
#include "vmm/pci/pci.h"

struct fixture {
	struct bus pio, mmio;
	struct pci_bus pb;
	struct pci_device dev;
	unsigned int bar_reads, bar_writes, moves;
	uint64_t last_off;
	uint32_t last_val;
	uint8_t cf9;
	unsigned int cf9_writes;
};

static void bar_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct fixture *f = opaque;

	f->bar_reads++;
	f->last_off = off;
	memset(data, 0, len);
	memcpy(data, &(uint32_t){ 0xabcd0000u | (uint32_t)off }, len < 4 ? len : 4);
}

static void bar_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct fixture *f = opaque;

	f->bar_writes++;
	f->last_off = off;
	f->last_val = 0;
	memcpy(&f->last_val, data, len < 4 ? len : 4);
}

static const struct bus_ops test_bar_ops = { .read = bar_read, .write = bar_write };

static void bar_moved(struct pci_device *d, unsigned int bar, uint64_t addr, bool active)
{
	struct fixture *f = d->opaque;

	f->moves++;
}

static const struct pci_device_ops test_dev_ops = { .bar_moved = bar_moved };

static uint8_t cf9_read(void *opaque) { return ((struct fixture *)opaque)->cf9; }
static void cf9_write(void *opaque, uint8_t v)
{
	struct fixture *f = opaque;

	f->cf9 = v;
	f->cf9_writes++;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct pci_env env;
	uint8_t cap;

	assert_non_null(f);
	assert_int_equal(bus_init(&f->pio, "pio"), 0);
	assert_int_equal(bus_init(&f->mmio, "mmio"), 0);
	/* The platform's own 0xCF9 range, which pci_init must take over. */
	assert_int_equal(bus_register(&f->pio, 0xcf9, 1, "rcr", &test_bar_ops, f), 0);
	env = (struct pci_env){ .pio = &f->pio, .mmio = &f->mmio, .irq = NULL, .vm_fd = -1,
				.ram_top = 6ull << 30, .cf9_read = cf9_read, .cf9_write = cf9_write,
				.opaque = f };
	assert_int_equal(pci_init(&f->pb, &env), 0);

	pci_device_init(&f->dev, "test", 0x1234, 0x5678, 0x020000, 3, 0x1af4, 0x0042);
	f->dev.ops = &test_dev_ops;
	f->dev.opaque = f;
	assert_int_equal(pci_device_set_bar(&f->dev, 0, 0x1000, false, false, &test_bar_ops, f), 0);
	assert_int_equal(pci_device_set_bar(&f->dev, 2, 0x4000, true, false, &test_bar_ops, f), 0);
	assert_int_equal(pci_device_set_bar(&f->dev, 4, 1ull << 30, true, true, &test_bar_ops, f), 0);
	assert_int_equal(pci_device_add_cap(&f->dev, PCI_CAP_ID_VNDR, 16, &cap), 0);
	assert_int_equal(pci_device_add_cap(&f->dev, PCI_CAP_ID_MSIX, 12, &cap), 0);
	assert_int_equal(pci_device_add_cap(&f->dev, PCI_CAP_ID_VNDR, 20, &cap), 0);
	assert_int_equal(pci_register_device(&f->pb, &f->dev), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	pci_destroy(&f->pb);
	bus_destroy(&f->pio);
	bus_destroy(&f->mmio);
	free(f);
	return 0;
}

/* ---- access helpers through the buses ---- */

static uint32_t pio_in(struct fixture *f, uint16_t port, uint32_t len)
{
	uint32_t v = 0;

	assert_true(bus_dispatch(&f->pio, port, &v, len, false));
	return v;
}

static void pio_out(struct fixture *f, uint16_t port, uint32_t len, uint32_t v)
{
	assert_true(bus_dispatch(&f->pio, port, &v, len, true));
}

static uint32_t conf1_read(struct fixture *f, unsigned int dev, uint32_t reg, uint32_t len)
{
	pio_out(f, 0xcf8, 4, 0x80000000u | dev << 11 | (reg & 0xfc));
	return pio_in(f, (uint16_t)(0xcfc + (reg & 3)), len);
}

static void conf1_write(struct fixture *f, unsigned int dev, uint32_t reg, uint32_t len, uint32_t v)
{
	pio_out(f, 0xcf8, 4, 0x80000000u | dev << 11 | (reg & 0xfc));
	pio_out(f, (uint16_t)(0xcfc + (reg & 3)), len, v);
}

static uint64_t ecam_addr(unsigned int bus, unsigned int dev, unsigned int fn, uint32_t reg)
{
	return LAYOUT_PCI_ECAM_BASE + ((uint64_t)bus << 20 | dev << 15 | fn << 12 | reg);
}

static uint32_t ecam_read(struct fixture *f, unsigned int dev, uint32_t reg, uint32_t len)
{
	uint32_t v = 0;

	assert_true(bus_dispatch(&f->mmio, ecam_addr(0, dev, 0, reg), &v, len, false));
	return v;
}

static void ecam_write(struct fixture *f, unsigned int dev, uint32_t reg, uint32_t len, uint32_t v)
{
	assert_true(bus_dispatch(&f->mmio, ecam_addr(0, dev, 0, reg), &v, len, true));
}

static uint64_t bar_addr(struct fixture *f, unsigned int i, bool is64)
{
	uint64_t a = ecam_read(f, f->dev.slot, PCI_BASE_ADDRESS_0 + 4 * i, 4) & ~0xfull;

	if (is64)
		a |= (uint64_t)ecam_read(f, f->dev.slot, PCI_BASE_ADDRESS_0 + 4 * i + 4, 4) << 32;
	return a;
}

/* ---- tests ---- */

static void test_host_bridge_and_absent_slots(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(conf1_read(f, 0, PCI_VENDOR_ID, 4), 0x00081b36);
	assert_int_equal(conf1_read(f, 0, PCI_CLASS_REVISION, 4) >> 8, 0x060000);
	assert_int_equal(conf1_read(f, 17, PCI_VENDOR_ID, 4), 0xffffffff);	/* empty slot */
	assert_int_equal(ecam_read(f, 0, PCI_VENDOR_ID, 2), 0x1b36);
	/* Other buses and functions are absent. */
	{
		uint32_t v = 0;

		assert_true(bus_dispatch(&f->mmio, ecam_addr(1, 0, 0, 0), &v, 4, false));
		assert_int_equal(v, 0xffffffff);
		assert_true(bus_dispatch(&f->mmio, ecam_addr(0, f->dev.slot, 3, 0), &v, 4, false));
		assert_int_equal(v, 0xffffffff);
	}
	/* Enable bit clear: type-1 data reads all-ones. */
	pio_out(f, 0xcf8, 4, 0x00000000);
	assert_int_equal(pio_in(f, 0xcfc, 4), 0xffffffff);
	/* The address register reads back what was written, minus reserved bits. */
	pio_out(f, 0xcf8, 4, 0x80000803u);
	assert_int_equal(pio_in(f, 0xcf8, 4), 0x80000800u);
}

static void test_cf9_forwarded(void **state)
{
	struct fixture *f = *state;

	pio_out(f, 0xcf9, 1, 0x06);
	assert_int_equal(f->cf9_writes, 1);
	assert_int_equal(f->cf9, 0x06);
	assert_int_equal(pio_in(f, 0xcf9, 1), 0x06);
	/* Linux's type-1 probe writes 0xCFB: no effect on the address register. */
	pio_out(f, 0xcf8, 4, 0x80000000u);
	pio_out(f, 0xcfb, 1, 0x01);
	assert_int_equal(pio_in(f, 0xcf8, 4), 0x80000000u);
	assert_int_equal(f->cf9_writes, 1);
}

static void test_header_masks(void **state)
{
	struct fixture *f = *state;
	unsigned int s = f->dev.slot;

	assert_int_equal(ecam_read(f, s, PCI_VENDOR_ID, 4), 0x56781234);
	ecam_write(f, s, PCI_VENDOR_ID, 4, 0xdeadbeef);				/* read-only */
	assert_int_equal(ecam_read(f, s, PCI_VENDOR_ID, 4), 0x56781234);
	ecam_write(f, s, PCI_CLASS_REVISION, 4, 0xffffffff);
	assert_int_equal(ecam_read(f, s, PCI_CLASS_REVISION, 4), 0x02000003);
	assert_int_equal(ecam_read(f, s, PCI_SUBSYSTEM_VENDOR_ID, 4), 0x00421af4);
	/* COMMAND: only the implemented bits stick. */
	ecam_write(f, s, PCI_COMMAND, 2, 0xffff);
	assert_int_equal(ecam_read(f, s, PCI_COMMAND, 2),
			 PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
			 PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
	ecam_write(f, s, PCI_COMMAND, 2, 0);
	/* STATUS: capability bit read-only, error bits RW1C. */
	assert_true(ecam_read(f, s, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	f->dev.cfg[PCI_STATUS + 1] |= PCI_STATUS_REC_MASTER_ABORT >> 8;
	ecam_write(f, s, PCI_STATUS, 2, 0);					/* 0: no effect */
	assert_true(ecam_read(f, s, PCI_STATUS, 2) & PCI_STATUS_REC_MASTER_ABORT);
	ecam_write(f, s, PCI_STATUS, 2, PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_CAP_LIST);
	assert_false(ecam_read(f, s, PCI_STATUS, 2) & PCI_STATUS_REC_MASTER_ABORT);
	assert_true(ecam_read(f, s, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	/* Interrupt line is the guest's scratch register; pin is INTA, read-only. */
	assert_int_equal(ecam_read(f, s, PCI_INTERRUPT_PIN, 1), 1);
	assert_int_equal(ecam_read(f, s, PCI_INTERRUPT_LINE, 1), pci_intx_gsi(s, 0));
	ecam_write(f, s, PCI_INTERRUPT_LINE, 1, 0x0b);
	ecam_write(f, s, PCI_INTERRUPT_PIN, 1, 0x04);
	assert_int_equal(ecam_read(f, s, PCI_INTERRUPT_LINE, 2), 0x010b);
	/* Misaligned and odd-sized accesses do nothing. */
	assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, 1, 2), 0xffff);
	pci_cfg_write(&f->pb, 0, s, 0, PCI_INTERRUPT_LINE, 3, 0);
	assert_int_equal(ecam_read(f, s, PCI_INTERRUPT_LINE, 1), 0x0b);
}

static void test_bar_sizing(void **state)
{
	struct fixture *f = *state;
	unsigned int s = f->dev.slot;

	/* 32-bit, 4 KiB, non-prefetchable */
	ecam_write(f, s, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
	assert_int_equal(ecam_read(f, s, PCI_BASE_ADDRESS_0, 4), 0xfffff000);
	/* unimplemented BAR1 */
	ecam_write(f, s, PCI_BASE_ADDRESS_1, 4, 0xffffffff);
	assert_int_equal(ecam_read(f, s, PCI_BASE_ADDRESS_1, 4), 0);
	/* 64-bit, 16 KiB */
	ecam_write(f, s, PCI_BASE_ADDRESS_2, 4, 0xffffffff);
	ecam_write(f, s, PCI_BASE_ADDRESS_3, 4, 0xffffffff);
	assert_int_equal(ecam_read(f, s, PCI_BASE_ADDRESS_2, 4), 0xffffc000 | PCI_BASE_ADDRESS_MEM_TYPE_64);
	assert_int_equal(ecam_read(f, s, PCI_BASE_ADDRESS_3, 4), 0xffffffff);
	/* 64-bit prefetchable, 1 GiB */
	ecam_write(f, s, PCI_BASE_ADDRESS_4, 4, 0xffffffff);
	ecam_write(f, s, PCI_BASE_ADDRESS_5, 4, 0xffffffff);
	assert_int_equal(ecam_read(f, s, PCI_BASE_ADDRESS_4, 4),
			 0xc0000000 | PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH);
	assert_int_equal(ecam_read(f, s, PCI_BASE_ADDRESS_5, 4), 0xffffffff);
	/* ROM BAR not implemented */
	ecam_write(f, s, PCI_ROM_ADDRESS, 4, 0xfffff801);
	assert_int_equal(ecam_read(f, s, PCI_ROM_ADDRESS, 4), 0);
	/* Byte writes merge into the address bits only. */
	ecam_write(f, s, PCI_BASE_ADDRESS_0, 4, 0);
	ecam_write(f, s, PCI_BASE_ADDRESS_0 + 1, 1, 0xff);
	assert_int_equal(ecam_read(f, s, PCI_BASE_ADDRESS_0, 4), 0x0000f000);
}

static void test_bar_placement(void **state)
{
	struct fixture *f = *state;
	uint64_t b0 = bar_addr(f, 0, false), b2 = bar_addr(f, 2, true), b4 = bar_addr(f, 4, true);

	/* Natural alignment, inside the windows, no overlap; 1 GiB 64-bit BAR above 4 GiB. */
	assert_int_equal(b0 & 0xfff, 0);
	assert_int_equal(b2 & 0x3fff, 0);
	assert_int_equal(b4 & ((1ull << 30) - 1), 0);
	assert_true(b0 >= LAYOUT_PCI_MMIO32_BASE && b0 + 0x1000 <= LAYOUT_PCI_MMIO32_BASE + LAYOUT_PCI_MMIO32_SIZE);
	assert_true(b2 >= LAYOUT_PCI_MMIO32_BASE && b2 + 0x4000 <= LAYOUT_PCI_MMIO32_BASE + LAYOUT_PCI_MMIO32_SIZE);
	assert_true(b0 + 0x1000 <= b2 || b2 + 0x4000 <= b0);
	assert_true(b4 >= f->pb.mmio64.base && b4 >= (6ull << 30));
	assert_true(f->pb.mmio64.base >= (6ull << 30));
	/* Not decoding until the guest sets COMMAND.MEM. */
	assert_false(f->dev.bars[0].active);
}

static void test_bar_decode_and_move(void **state)
{
	struct fixture *f = *state;
	unsigned int s = f->dev.slot;
	uint64_t b0 = bar_addr(f, 0, false), b4 = bar_addr(f, 4, true);
	uint64_t newb = LAYOUT_PCI_MMIO32_BASE + 0x100000;
	uint32_t v = 0x11223344, r = 0;

	/* MEM off: the window answers all-ones and the device is not called. */
	assert_true(bus_dispatch(&f->mmio, b0 + 8, &r, 4, false));
	assert_int_equal(r, 0xffffffff);
	assert_int_equal(f->bar_reads, 0);

	ecam_write(f, s, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_int_equal(f->moves, 3);		/* three BARs came up */
	assert_true(bus_dispatch(&f->mmio, b0 + 8, &r, 4, false));
	assert_int_equal(r, 0xabcd0008);
	assert_int_equal(f->last_off, 8);
	assert_true(bus_dispatch(&f->mmio, b4 + 0x12340, &v, 4, true));
	assert_int_equal(f->last_off, 0x12340);
	assert_int_equal(f->last_val, 0x11223344);
	/* An access straddling the BAR's end is not the device's. */
	r = 0;
	assert_true(bus_dispatch(&f->mmio, b0 + 0xffe, &r, 4, false));
	assert_int_equal(r, 0xffffffff);

	/* Move BAR0: the old address stops decoding, the new one starts, at once. */
	f->moves = 0;
	ecam_write(f, s, PCI_BASE_ADDRESS_0, 4, (uint32_t)newb);
	assert_int_equal(f->moves, 2);		/* off at old, on at new */
	assert_true(f->dev.bars[0].active);
	assert_int_equal(f->dev.bars[0].addr, newb);
	f->bar_reads = 0;
	assert_true(bus_dispatch(&f->mmio, b0 + 8, &r, 4, false));
	assert_int_equal(r, 0xffffffff);
	assert_int_equal(f->bar_reads, 0);
	assert_true(bus_dispatch(&f->mmio, newb + 4, &r, 4, false));
	assert_int_equal(r, 0xabcd0004);

	/* Sizing pattern (outside every window) does not decode and breaks nothing. */
	ecam_write(f, s, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
	assert_false(f->dev.bars[0].active);
	ecam_write(f, s, PCI_BASE_ADDRESS_0, 4, (uint32_t)b0);
	assert_true(f->dev.bars[0].active);

	/* MEM off again: everything stops. */
	f->moves = 0;
	ecam_write(f, s, PCI_COMMAND, 2, 0);
	assert_int_equal(f->moves, 3);
	assert_false(f->dev.bars[0].active || f->dev.bars[2].active || f->dev.bars[4].active);
}

static void test_capability_walk(void **state)
{
	struct fixture *f = *state;
	unsigned int s = f->dev.slot, n = 0;
	uint8_t ids[8], at;

	at = (uint8_t)ecam_read(f, s, PCI_CAPABILITY_LIST, 1);
	while (at && n < 8) {
		assert_true(at >= 0x40 && (at & 3) == 0);
		ids[n++] = (uint8_t)conf1_read(f, s, at, 1);
		at = (uint8_t)conf1_read(f, s, at + 1, 1);
	}
	assert_int_equal(n, 3);
	assert_int_equal(ids[0], PCI_CAP_ID_VNDR);
	assert_int_equal(ids[1], PCI_CAP_ID_MSIX);
	assert_int_equal(ids[2], PCI_CAP_ID_VNDR);
	/* The list pointer and next pointers are read-only. */
	ecam_write(f, s, PCI_CAPABILITY_LIST, 1, 0x80);
	assert_int_equal(ecam_read(f, s, PCI_CAPABILITY_LIST, 1), 0x40);
	/* Capability space is bounded: a huge one does not fit. */
	assert_int_equal(pci_device_add_cap(&f->dev, PCI_CAP_ID_VNDR, 200, &at), -ENOSPC);
}

static void test_conf1_and_ecam_agree(void **state)
{
	struct fixture *f = *state;
	unsigned int s = f->dev.slot;

	for (uint32_t reg = 0; reg < 0x100; reg += 4) {
		assert_int_equal(conf1_read(f, s, reg, 4), ecam_read(f, s, reg, 4));
		assert_int_equal(conf1_read(f, s, reg + 2, 2), ecam_read(f, s, reg + 2, 2));
		assert_int_equal(conf1_read(f, s, reg + 3, 1), ecam_read(f, s, reg + 3, 1));
	}
	/* Write through one, read through the other. */
	conf1_write(f, s, PCI_LATENCY_TIMER, 1, 0x40);
	assert_int_equal(ecam_read(f, s, PCI_LATENCY_TIMER, 1), 0x40);
	ecam_write(f, s, PCI_CACHE_LINE_SIZE, 1, 0x10);
	assert_int_equal(conf1_read(f, s, PCI_CACHE_LINE_SIZE, 1), 0x10);
	/* Extended space: ECAM only, empty (no extended capabilities). */
	assert_int_equal(ecam_read(f, s, 0x100, 4), 0);
}

static void test_save_load(void **state)
{
	struct fixture *f = *state;
	unsigned int s = f->dev.slot;
	struct pci_device_state *st = malloc(sizeof(*st));
	uint64_t newb = LAYOUT_PCI_MMIO32_BASE + 0x200000;

	assert_non_null(st);
	ecam_write(f, s, PCI_BASE_ADDRESS_0, 4, (uint32_t)newb);
	ecam_write(f, s, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	pci_device_save(&f->dev, st);
	ecam_write(f, s, PCI_COMMAND, 2, 0);
	ecam_write(f, s, PCI_BASE_ADDRESS_0, 4, 0);
	assert_false(f->dev.bars[0].active);

	/* A hostile stream cannot rewrite read-only bits (class code here). */
	st->cfg[PCI_CLASS_DEVICE + 1] = 0x99;
	assert_int_equal(pci_device_load(&f->dev, st), 0);
	assert_int_equal(ecam_read(f, s, PCI_CLASS_DEVICE, 2), 0x0200);
	assert_true(f->dev.bars[0].active);
	assert_int_equal(f->dev.bars[0].addr, newb);
	assert_int_equal(ecam_read(f, s, PCI_COMMAND, 2), PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	/* State of another device is refused. */
	st->cfg[PCI_VENDOR_ID] ^= 1;
	assert_int_equal(pci_device_load(&f->dev, st), -EINVAL);
	free(st);
}

static void test_register_limits(void **state)
{
	struct fixture *f = *state;
	struct pci_device d;

	pci_device_init(&d, "x", 1, 2, 0, 0, 0, 0);
	assert_int_equal(pci_device_set_bar(&d, 0, 0x1800, false, false, &test_bar_ops, f), -EINVAL);
	assert_int_equal(pci_device_set_bar(&d, 5, 0x1000, true, false, &test_bar_ops, f), -EINVAL);
	assert_int_equal(pci_device_set_bar(&d, 0, 8, false, false, &test_bar_ops, f), -EINVAL);
	assert_int_equal(pci_device_set_bar(&d, 0, 0x1000, true, false, &test_bar_ops, f), 0);
	assert_int_equal(pci_device_set_bar(&d, 1, 0x1000, false, false, &test_bar_ops, f), -EEXIST);
	/* A BAR larger than the 32-bit window and not 64-bit cannot be placed. */
	{
		struct pci_device *big = malloc(sizeof(*big));

		assert_non_null(big);
		pci_device_init(big, "big", 1, 3, 0, 0, 0, 0);
		assert_int_equal(pci_device_set_bar(big, 0, 1ull << 31, false, false, &test_bar_ops, f), 0);
		assert_int_equal(pci_register_device(&f->pb, big), -ENOSPC);
		free(big);
	}
}

static void test_two_devices(void **state)
{
	struct fixture *f = *state;
	struct pci_device *d2 = malloc(sizeof(*d2));
	uint64_t a0, a1;

	assert_non_null(d2);
	pci_device_init(d2, "second", 0x1234, 0x9999, 0x010000, 0, 0, 0);
	assert_int_equal(pci_device_set_bar(d2, 0, 0x1000, false, false, &test_bar_ops, f), 0);
	assert_int_equal(pci_register_device(&f->pb, d2), 0);
	assert_int_equal(d2->slot, f->dev.slot + 1);
	assert_int_equal(ecam_read(f, d2->slot, PCI_DEVICE_ID, 2), 0x9999);
	assert_int_equal(ecam_read(f, d2->slot, PCI_INTERRUPT_LINE, 1), pci_intx_gsi(d2->slot, 0));
	a0 = bar_addr(f, 0, false);
	a1 = ecam_read(f, d2->slot, PCI_BASE_ADDRESS_0, 4) & ~0xfu;
	assert_true(a1 >= a0 + 0x1000 || a1 + 0x1000 <= a0);
	/* Each decodes its own BAR. */
	ecam_write(f, f->dev.slot, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	ecam_write(f, d2->slot, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_true(d2->bars[0].active && f->dev.bars[0].active);
	pci_unregister_device(&f->pb, d2);
	assert_false(d2->bars[0].active);
	assert_int_equal(ecam_read(f, d2->slot, PCI_VENDOR_ID, 4), 0xffffffff);
	free(d2);
}

/*
 * A vCPU hammering a BAR while another moves it through ECAM (the MMIO bus's read lock held
 * while pci_bus.lock is taken for writing): no deadlock, and every access sees either the
 * device or all-ones, never a torn state. alarm() bounds the test if it ever deadlocks.
 */
struct race { struct fixture *f; uint64_t a, b; volatile int stop; unsigned long hits, misses, iters; };

static void *race_reader(void *arg)
{
	struct race *r = arg;

	while (!r->stop) {
		uint32_t v = 0;

		bus_dispatch(&r->f->mmio, r->a + 4, &v, 4, false);
		if (v == 0xabcd0004)
			r->hits++;
		else if (v == 0xffffffff)
			r->misses++;
		else
			abort();
		bus_dispatch(&r->f->mmio, r->b + 4, &v, 4, false);
		__atomic_add_fetch(&r->iters, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void test_bar_move_race(void **state)
{
	struct fixture *f = *state;
	struct race r = { .f = f, .a = LAYOUT_PCI_MMIO32_BASE + 0x400000,
			  .b = LAYOUT_PCI_MMIO32_BASE + 0x800000 };
	pthread_t t;

	alarm(60);
	ecam_write(f, f->dev.slot, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_int_equal(pthread_create(&t, NULL, race_reader, &r), 0);
	/* Keep moving until both sides did real work concurrently (alarm bounds it). */
	for (int i = 0; i < 20000 || __atomic_load_n(&r.iters, __ATOMIC_RELAXED) < 2000; i++) {
		ecam_write(f, f->dev.slot, PCI_BASE_ADDRESS_0, 4, (uint32_t)(i & 1 ? r.b : r.a));
		if (i % 7 == 0)
			conf1_write(f, f->dev.slot, PCI_COMMAND, 2, i % 14 ? PCI_COMMAND_MEMORY : 0);
	}
	r.stop = 1;
	pthread_join(t, NULL);
	alarm(0);
	assert_true(r.iters >= 2000);
	assert_true(r.hits + r.misses > 0);
}

static void test_acpi(void **state)
{
	struct fixture *f = *state;
	struct acpi_mcfg mcfg;
	struct aml a;
	static const uint8_t pnp0a08[] = { 0x0c, 0x41, 0xd0, 0x0a, 0x08 };
	static const uint8_t pnp0c02[] = { 0x0c, 0x41, 0xd0, 0x0c, 0x02 };
	bool found = false, found2 = false;

	aml_init(&a);
	pci_acpi_dsdt_aml(&f->pb, &a);
	assert_int_equal(aml_error(&a), 0);
	assert_true(a.len > 200);
	assert_non_null(memmem(a.buf, a.len, "PCI0", 4));
	assert_non_null(memmem(a.buf, a.len, "_PRT", 4));
	assert_non_null(memmem(a.buf, a.len, "_OSC", 4));
	found = memmem(a.buf, a.len, pnp0a08, sizeof(pnp0a08)) != NULL;
	found2 = memmem(a.buf, a.len, pnp0c02, sizeof(pnp0c02)) != NULL;
	assert_true(found && found2);
	/* The MMIO32 window's DWord descriptor carries min/max from layout.h. */
	{
		uint8_t desc[11] = { 0x87, 23, 0, 0, 0x0c, 0x01, 0, 0, 0, 0 };
		uint32_t min = (uint32_t)LAYOUT_PCI_MMIO32_BASE;
		uint8_t *p = memmem(a.buf, a.len, desc, 10);

		assert_non_null(p);
		assert_memory_equal(p + 10, &min, 4);
	}
	aml_free(&a);

	pci_acpi_mcfg(&mcfg);
	assert_memory_equal(mcfg.hdr.signature, "MCFG", 4);
	assert_int_equal(mcfg.hdr.length, 60);
	assert_int_equal(mcfg.alloc[0].base, LAYOUT_PCI_ECAM_BASE);
	assert_int_equal(mcfg.alloc[0].end_bus, LAYOUT_PCI_ECAM_SIZE / MIB - 1);

	{
		struct acpi *acpi;

		assert_int_equal(acpi_create(&acpi), 0);
		assert_int_equal(pci_acpi_contribute(&f->pb, acpi), 0);
		acpi_destroy(acpi);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_host_bridge_and_absent_slots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cf9_forwarded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_masks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_placement, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_decode_and_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capability_walk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conf1_and_ecam_agree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_devices, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_move_race, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acpi, setup, teardown),
	};
	return cmocka_run_group_tests_name("pci", tests, NULL, NULL);
}
