/* SPDX-License-Identifier: MIT */
/*
 * The guest-physical address map, in one place. Every module that places something in the
 * guest (RAM, ACPI, boot data, PCI windows, the interrupt controllers) takes its address from
 * here, so the e820 map, the ACPI tables and the buses cannot disagree.
 *
 *   0x0000_0000  low RAM (real-mode area; boot data below 1 MiB, see firmware/ and boot/)
 *   0x000E_0000  ACPI tables (RSDP found by the BIOS-area scan, and via boot_params)
 *   0x0010_0000  kernel, initrd, the rest of RAM ... up to MEM_32BIT_GAP_START
 *   0xC000_0000  32-bit MMIO gap: PCI MMIO window (BARs), ECAM, IOAPIC, HPET, LAPIC
 *     0xE000_0000  PCI ECAM (256 buses x 1 MiB)  (MCFG)
 *     0xFEC0_0000  IOAPIC
 *     0xFEE0_0000  LAPIC
 *   0x1_0000_0000 RAM above 4 GiB, when the VM has more than MEM_32BIT_GAP_START of RAM
 */
#ifndef VMM_LAYOUT_H
#define VMM_LAYOUT_H

#define GIB				(1ull << 30)
#define MIB				(1ull << 20)

#define MEM_32BIT_GAP_START		0xC0000000ull
#define MEM_32BIT_GAP_END		0x100000000ull	/* = start of high RAM */

#define LAYOUT_ACPI_BASE		0x000E0000ull	/* 128 KiB up to 1 MiB */
#define LAYOUT_ACPI_SIZE		0x00020000ull

#define LAYOUT_PCI_MMIO32_BASE		0xC0000000ull	/* BARs below 4 GiB */
#define LAYOUT_PCI_MMIO32_SIZE		0x20000000ull
#define LAYOUT_PCI_ECAM_BASE		0xE0000000ull
#define LAYOUT_PCI_ECAM_SIZE		0x10000000ull
#define LAYOUT_IOAPIC_BASE		0xFEC00000ull
#define LAYOUT_LAPIC_BASE		0xFEE00000ull

#endif
