/* SPDX-License-Identifier: MIT */
/*
 * Loading a guest into RAM before its first instruction: a Linux bzImage through the Linux
 * x86 boot protocol (Documentation/arch/x86/boot.rst, 64-bit entry), or a flat test image
 * (firmware/tiny). Both are entered in 64-bit long mode with identity-mapped page tables for
 * the first 4 GiB and a flat GDT, which this module writes into guest memory; the vCPU code
 * turns struct boot_info into registers. Nothing here talks to KVM, so it is unit-tested
 * against a plain guest_mem.
 *
 * Guest-physical use of low memory (all below 1 MiB, outside the ACPI area at 0xE0000):
 *   0x0500  GDT            0x7000  boot_params (zero page)     0x8000  initial stack top (flat)
 *   0x9000  PML4, 0xA000 PDPT, 0xB000-0xEFFF four page directories (2 MiB pages)
 *   0x20000 kernel command line
 * The kernel goes to its preferred address (16 MiB for Debian's), the initrd to the top of
 * RAM below 3 GiB and below the kernel's initrd_addr_max.
 */
#ifndef VMM_BOOT_LINUX_H
#define VMM_BOOT_LINUX_H

#include <stddef.h>
#include <stdint.h>

struct guest_mem;
struct kvm_sregs;
struct kvm_regs;

#define BOOT_GDT_ADDR		0x500ull
#define BOOT_PARAMS_ADDR	0x7000ull
#define BOOT_STACK_TOP		0x8000ull
#define BOOT_PML4_ADDR		0x9000ull
#define BOOT_PDPT_ADDR		0xA000ull
#define BOOT_PD_ADDR		0xB000ull	/* 4 pages */
#define BOOT_CMDLINE_ADDR	0x20000ull
#define BOOT_CMDLINE_MAX	0x10000ull
#define BOOT_FLAT_ADDR		0x100000ull	/* where a --firmware image is loaded and entered */

#define BOOT_SEL_CODE		0x10		/* __BOOT_CS, as the boot protocol expects */
#define BOOT_SEL_DATA		0x18		/* __BOOT_DS */
#define BOOT_SEL_TSS		0x20

/* e820 types (ACPI address range types). */
#define BOOT_E820_RAM		1
#define BOOT_E820_RESERVED	2

struct boot_e820 {
	uint64_t addr, size;
	uint32_t type;
};

struct boot_info {
	uint64_t entry;			/* RIP */
	uint64_t rsi;			/* boot_params for Linux, 0 for flat images */
	uint64_t kernel_addr, kernel_end;	/* [load address, load + init_size) */
	uint64_t initrd_addr, initrd_size;
	uint16_t protocol;		/* boot protocol version, 0 for flat images */
};

/*
 * Fill @e with the guest's memory map (low RAM, the reserved ACPI area, the reserved ECAM
 * window in the MMIO gap, RAM below the gap, RAM above 4 GiB). Returns the entry count.
 */
unsigned int boot_e820_build(const struct guest_mem *m, struct boot_e820 *e, unsigned int max);

/*
 * Load a bzImage, optional initrd and command line; write boot_params, the GDT and page
 * tables. @rsdp_gpa (0 if none) goes into boot_params.acpi_rsdp_addr. Returns 0 or -errno
 * with one logged line: -ENOEXEC not a bzImage / too old / no 64-bit entry, -E2BIG command
 * line too long, -ENOSPC kernel or initrd does not fit in RAM.
 */
int boot_linux_load(struct guest_mem *m, const void *kernel, size_t kernel_len,
		    const void *initrd, size_t initrd_len, const char *cmdline,
		    uint64_t rsdp_gpa, struct boot_info *out);

/* Load a flat 64-bit image at BOOT_FLAT_ADDR and write the GDT and page tables. */
int boot_flat_load(struct guest_mem *m, const void *image, size_t len, struct boot_info *out);

/* Long mode, paging on, flat segments from the GDT above (modifies a KVM_GET_SREGS result). */
void boot_sregs_setup(struct kvm_sregs *s);
/* RIP, RSI, RSP, RFLAGS for the entry. */
void boot_regs_setup(struct kvm_regs *r, const struct boot_info *bi);

#endif
