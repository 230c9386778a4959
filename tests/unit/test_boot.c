// SPDX-License-Identifier: MIT
/*
 * Linux boot protocol: e820 for small and >4 GiB guests, boot_params built from a synthetic
 * bzImage (setup header copied and validated, command line, initrd at the top of low RAM),
 * page tables, GDT and long-mode registers; and the clean refusals for bad images.
 */
#include <asm/bootparam.h>
#include <errno.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/boot/linux.h"
#include "vmm/layout.h"
#include "vmm/memory.h"

#define KSIZE (256 * 1024)

/* A minimal bzImage: 4 setup sectors + boot sector, then a "protected-mode kernel". */
static uint8_t *fake_bzimage(uint16_t version, uint16_t xloadflags)
{
	uint8_t *k = calloc(1, KSIZE);
	struct setup_header *h = (struct setup_header *)(k + 0x1f1);
	size_t i;

	h->setup_sects = 4;
	h->boot_flag = 0xAA55;
	h->jump = 0x66eb;				/* jmp +0x66: header ends at 0x268 */
	h->header = 0x53726448;
	h->version = version;
	h->loadflags = LOADED_HIGH;
	h->initrd_addr_max = 0x7fffffff;
	h->kernel_alignment = 0x200000;
	h->relocatable_kernel = 1;
	h->xloadflags = xloadflags;
	h->cmdline_size = 2047;
	h->pref_address = 0x1000000;
	h->init_size = 0x800000;
	for (i = 5 * 512; i < KSIZE; i++)
		k[i] = (uint8_t)(i * 7);
	return k;
}

static void test_e820_small(void **state)
{
	struct boot_e820 e[8];
	struct guest_mem m;
	unsigned int n;

	assert_int_equal(guest_mem_init(&m, 256 * MIB), 0);
	n = boot_e820_build(&m, e, 8);
	assert_int_equal(n, 4);
	assert_int_equal(e[0].addr, 0);
	assert_int_equal(e[0].size, 0xA0000);
	assert_int_equal(e[0].type, BOOT_E820_RAM);
	assert_int_equal(e[1].addr, LAYOUT_ACPI_BASE);
	assert_int_equal(e[1].type, BOOT_E820_RESERVED);
	assert_int_equal(e[2].addr, 0x100000);
	assert_int_equal(e[2].addr + e[2].size, 256 * MIB);
	assert_int_equal(e[2].type, BOOT_E820_RAM);
	assert_int_equal(e[3].addr, LAYOUT_PCI_ECAM_BASE);
	assert_int_equal(e[3].type, BOOT_E820_RESERVED);
	guest_mem_destroy(&m);
}

static void test_e820_above_4g(void **state)
{
	struct boot_e820 e[8];
	struct guest_mem m;
	uint64_t ram = 0;
	unsigned int n, i;

	assert_int_equal(guest_mem_init(&m, 5 * GIB), 0);
	n = boot_e820_build(&m, e, 8);
	assert_int_equal(n, 5);
	assert_int_equal(e[2].addr + e[2].size, MEM_32BIT_GAP_START);
	assert_int_equal(e[4].addr, MEM_32BIT_GAP_END);
	assert_int_equal(e[4].size, 2 * GIB);
	assert_int_equal(e[4].type, BOOT_E820_RAM);
	for (i = 0; i < n; i++) {
		if (e[i].type == BOOT_E820_RAM)
			ram += e[i].size;
		/* sorted, no overlaps, nothing RAM inside the gap */
		if (i)
			assert_true(e[i].addr >= e[i - 1].addr + e[i - 1].size);
		if (e[i].type == BOOT_E820_RAM)
			assert_true(e[i].addr + e[i].size <= MEM_32BIT_GAP_START ||
				    e[i].addr >= MEM_32BIT_GAP_END);
	}
	/* all of RAM except the 384 KiB VGA/BIOS hole */
	assert_int_equal(ram, 5 * GIB - (0x100000 - 0xA0000));
	/* truncated output is bounded */
	assert_int_equal(boot_e820_build(&m, e, 2), 2);
	guest_mem_destroy(&m);
}

static void check_boot_params(struct guest_mem *m, const struct boot_info *bi, const uint8_t *k,
			      size_t initrd_len)
{
	struct boot_params *bp = guest_mem_ptr(m, BOOT_PARAMS_ADDR, sizeof(*bp));
	uint64_t low_end = m->regions[0].size;
	uint64_t initrd;

	assert_non_null(bp);
	assert_int_equal(bp->hdr.header, 0x53726448);
	assert_int_equal(bp->hdr.type_of_loader, 0xff);
	assert_int_equal(bp->hdr.cmd_line_ptr, BOOT_CMDLINE_ADDR);
	assert_string_equal((char *)guest_mem_ptr(m, BOOT_CMDLINE_ADDR, 1), "console=ttyS0 quiet");
	assert_int_equal(bp->acpi_rsdp_addr, 0xE0000);
	assert_int_equal(bp->e820_entries, m->nr_regions > 1 ? 5 : 4);
	assert_int_equal(bp->e820_table[0].type, 1);

	assert_int_equal(bi->entry, 0x1000200);
	assert_int_equal(bi->rsi, BOOT_PARAMS_ADDR);
	assert_memory_equal(guest_mem_ptr(m, 0x1000000, KSIZE - 5 * 512), k + 5 * 512, KSIZE - 5 * 512);

	initrd = bp->hdr.ramdisk_image | ((uint64_t)bp->ext_ramdisk_image << 32);
	assert_int_equal(initrd, bi->initrd_addr);
	assert_int_equal(bp->hdr.ramdisk_size, initrd_len);
	assert_int_equal(initrd % 4096, 0);
	/* at the top of low RAM, below initrd_addr_max, above the kernel */
	assert_true(initrd + initrd_len <= low_end);
	assert_true(low_end - (initrd + initrd_len) < 4096);
	assert_true(initrd >= bi->kernel_end);
	assert_int_equal(*(uint8_t *)guest_mem_ptr(m, initrd, 1), 0x5a);
}

static void test_linux_load(void **state)
{
	uint8_t *k = fake_bzimage(0x020f, XLF_KERNEL_64);
	size_t ilen = 3 * MIB + 123;
	uint8_t *initrd = malloc(ilen);
	struct boot_info bi;
	struct guest_mem m;
	uint64_t *pml4, *pdpt, *pd, *gdt;

	memset(initrd, 0x5a, ilen);
	assert_int_equal(guest_mem_init(&m, 128 * MIB), 0);
	assert_int_equal(boot_linux_load(&m, k, KSIZE, initrd, ilen, "console=ttyS0 quiet",
					 0xE0000, &bi), 0);
	check_boot_params(&m, &bi, k, ilen);

	/* identity map of 4 GiB with 2 MiB pages */
	pml4 = guest_mem_ptr(&m, BOOT_PML4_ADDR, 4096);
	pdpt = guest_mem_ptr(&m, BOOT_PDPT_ADDR, 4096);
	pd = guest_mem_ptr(&m, BOOT_PD_ADDR, 4 * 4096);
	assert_int_equal(pml4[0] & ~0xfffull, BOOT_PDPT_ADDR);
	assert_int_equal(pdpt[3] & ~0xfffull, BOOT_PD_ADDR + 3 * 4096);
	assert_int_equal(pd[0], 0x83);
	assert_int_equal(pd[2047], (2047ull << 21) | 0x83);
	/* GDT: 64-bit code at __BOOT_CS, flat data at __BOOT_DS */
	gdt = guest_mem_ptr(&m, BOOT_GDT_ADDR, 48);
	assert_true(gdt[BOOT_SEL_CODE / 8] & (1ull << 53));	/* L */
	assert_int_equal((gdt[BOOT_SEL_CODE / 8] >> 40) & 0xff, 0x9b);
	assert_int_equal((gdt[BOOT_SEL_DATA / 8] >> 40) & 0xff, 0x93);
	guest_mem_destroy(&m);
	free(initrd);
	free(k);
}

static void test_linux_load_above_4g(void **state)
{
	uint8_t *k = fake_bzimage(0x020f, XLF_KERNEL_64);
	uint8_t initrd[8192];
	struct boot_info bi;
	struct guest_mem m;

	memset(initrd, 0x5a, sizeof(initrd));
	((struct setup_header *)(k + 0x1f1))->initrd_addr_max = 0xffffffff;
	assert_int_equal(guest_mem_init(&m, 6 * GIB), 0);
	assert_int_equal(boot_linux_load(&m, k, KSIZE, initrd, sizeof(initrd),
					 "console=ttyS0 quiet", 0xE0000, &bi), 0);
	/* the initrd stays below the gap even though RAM continues above 4 GiB */
	assert_true(bi.initrd_addr + sizeof(initrd) <= MEM_32BIT_GAP_START);
	check_boot_params(&m, &bi, k, sizeof(initrd));
	guest_mem_destroy(&m);
	free(k);
}

static void test_refusals(void **state)
{
	uint8_t *k = fake_bzimage(0x020f, XLF_KERNEL_64);
	uint8_t *old = fake_bzimage(0x0206, 0);
	uint8_t *no64 = fake_bzimage(0x020f, 0);
	uint8_t junk[8192];
	char *longcmd = malloc(4096);
	struct boot_info bi;
	struct guest_mem m;
	uint8_t *initrd;

	memset(junk, 'x', sizeof(junk));
	memset(longcmd, 'a', 4095);
	longcmd[4095] = 0;
	assert_int_equal(guest_mem_init(&m, 64 * MIB), 0);
	assert_int_equal(boot_linux_load(&m, junk, sizeof(junk), NULL, 0, "", 0, &bi), -ENOEXEC);
	assert_int_equal(boot_linux_load(&m, junk, 100, NULL, 0, "", 0, &bi), -ENOEXEC);
	assert_int_equal(boot_linux_load(&m, old, KSIZE, NULL, 0, "", 0, &bi), -ENOEXEC);
	assert_int_equal(boot_linux_load(&m, no64, KSIZE, NULL, 0, "", 0, &bi), -ENOEXEC);
	assert_int_equal(boot_linux_load(&m, k, KSIZE, NULL, 0, longcmd, 0, &bi), -E2BIG);
	/* setup sectors past the end of the file */
	((struct setup_header *)(k + 0x1f1))->setup_sects = 255;
	assert_int_equal(boot_linux_load(&m, k, 4096 * 2, NULL, 0, "", 0, &bi), -ENOEXEC);
	((struct setup_header *)(k + 0x1f1))->setup_sects = 4;
	/* an initrd that does not fit between the kernel (16+8 MiB) and the end of 64 MiB */
	initrd = calloc(1, 48 * MIB);
	assert_int_equal(boot_linux_load(&m, k, KSIZE, initrd, 48 * MIB, "", 0, &bi), -ENOSPC);
	/* ... and one that just fits */
	assert_int_equal(boot_linux_load(&m, k, KSIZE, initrd, 36 * MIB, "", 0, &bi), 0);
	guest_mem_destroy(&m);
	/* a kernel whose init_size does not fit in RAM */
	assert_int_equal(guest_mem_init(&m, 20 * MIB), 0);
	assert_int_equal(boot_linux_load(&m, k, KSIZE, NULL, 0, "", 0, &bi), -ENOSPC);
	guest_mem_destroy(&m);
	free(initrd);
	free(longcmd);
	free(k);
	free(old);
	free(no64);
}

static void test_flat_and_regs(void **state)
{
	static const uint8_t img[] = { 0xb0, 0x2a, 0xe6, 0xf4 };	/* mov al,42; out 0xf4,al */
	struct kvm_sregs s;
	struct kvm_regs r;
	struct boot_info bi;
	struct guest_mem m;

	assert_int_equal(guest_mem_init(&m, 4 * MIB), 0);
	assert_int_equal(boot_flat_load(&m, img, sizeof(img), &bi), 0);
	assert_int_equal(bi.entry, BOOT_FLAT_ADDR);
	assert_memory_equal(guest_mem_ptr(&m, BOOT_FLAT_ADDR, sizeof(img)), img, sizeof(img));
	/* an image running past the end of RAM is refused */
	assert_int_equal(boot_flat_load(&m, img, 4 * MIB, &bi), -ENOSPC);

	memset(&s, 0, sizeof(s));
	boot_sregs_setup(&s);
	assert_true(s.cr0 & 1);				/* PE */
	assert_true(s.cr0 & (1u << 31));		/* PG */
	assert_true(s.cr4 & (1u << 5));			/* PAE */
	assert_int_equal(s.efer & 0x500, 0x500);	/* LME | LMA */
	assert_int_equal(s.cr3, BOOT_PML4_ADDR);
	assert_int_equal(s.cs.selector, BOOT_SEL_CODE);
	assert_int_equal(s.cs.l, 1);
	assert_int_equal(s.cs.db, 0);
	assert_int_equal(s.ss.selector, BOOT_SEL_DATA);
	assert_int_equal(s.tr.type, 0xb);

	bi.rsi = BOOT_PARAMS_ADDR;
	boot_regs_setup(&r, &bi);
	assert_int_equal(r.rip, BOOT_FLAT_ADDR);
	assert_int_equal(r.rsi, BOOT_PARAMS_ADDR);
	assert_int_equal(r.rflags, 2);			/* interrupts off */
	guest_mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_e820_small),
		cmocka_unit_test(test_e820_above_4g),
		cmocka_unit_test(test_linux_load),
		cmocka_unit_test(test_linux_load_above_4g),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_flat_and_regs),
	};
	return cmocka_run_group_tests_name("boot", tests, NULL, NULL);
}
