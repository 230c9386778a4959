// SPDX-License-Identifier: MIT
/*
 * Linux x86 boot protocol, 64-bit entry (contract and memory use in linux.h). The image is
 * untrusted input: every offset and length taken from its header is checked against the file
 * size and the guest's RAM before anything is copied.
 */
#define LOG_TAG "boot"
#include <asm/bootparam.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <string.h>

#include "vmm/boot/linux.h"
#include "vmm/layout.h"
#include "vmm/lib/log.h"
#include "vmm/memory.h"

#define SETUP_HDR_OFFSET	0x1f1
#define HDRS_MAGIC		0x53726448u	/* "HdrS" */
#define MIN_PROTOCOL		0x020c		/* 2.12: xloadflags, which announces the 64-bit entry */
#define PAGE_MASK_4K		(~0xfffull)

static uint64_t low_ram_end(const struct guest_mem *m)
{
	return m->regions[0].size;
}

unsigned int boot_e820_build(const struct guest_mem *m, struct boot_e820 *e, unsigned int max)
{
	uint64_t low = low_ram_end(m);
	unsigned int n = 0;

#define ADD(a, s, t) do { if (n < max) e[n] = (struct boot_e820){ (a), (s), (t) }; n++; } while (0)
	/* Conventional memory; the VGA hole 0xA0000-0xE0000 is left out (nothing there). */
	ADD(0, 0xA0000, BOOT_E820_RAM);
	/* ACPI tables and the legacy BIOS area the kernel scans for the RSDP. */
	ADD(LAYOUT_ACPI_BASE, LAYOUT_ACPI_SIZE, BOOT_E820_RESERVED);
	ADD(0x100000, low - 0x100000, BOOT_E820_RAM);
	/* PCI ECAM must be reserved in e820 or Linux refuses MMCONFIG ("not reserved"). */
	ADD(LAYOUT_PCI_ECAM_BASE, LAYOUT_PCI_ECAM_SIZE, BOOT_E820_RESERVED);
	if (m->nr_regions > 1)
		ADD(m->regions[1].gpa, m->regions[1].size, BOOT_E820_RAM);
#undef ADD
	return n < max ? n : max;
}

static uint64_t gdt_entry(uint8_t access, uint8_t flags, uint32_t base, uint32_t limit)
{
	return (uint64_t)(limit & 0xffff) |
	       ((uint64_t)(base & 0xffffff) << 16) |
	       ((uint64_t)access << 40) |
	       ((uint64_t)((limit >> 16) & 0xf) << 48) |
	       ((uint64_t)(flags & 0xf) << 52) |
	       ((uint64_t)(base >> 24) << 56);
}

/* GDT and identity page tables shared by both entry paths. */
static int write_cpu_tables(struct guest_mem *m)
{
	uint64_t *gdt = guest_mem_ptr(m, BOOT_GDT_ADDR, 6 * 8);
	uint64_t *pml4 = guest_mem_ptr(m, BOOT_PML4_ADDR, 4096);
	uint64_t *pdpt = guest_mem_ptr(m, BOOT_PDPT_ADDR, 4096);
	uint64_t *pd = guest_mem_ptr(m, BOOT_PD_ADDR, 4 * 4096);
	unsigned int i;

	if (!gdt || !pml4 || !pdpt || !pd)
		return -ENOSPC;
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[BOOT_SEL_CODE / 8] = gdt_entry(0x9b, 0xa, 0, 0xfffff);	/* code, L=1, G=1 */
	gdt[BOOT_SEL_DATA / 8] = gdt_entry(0x93, 0xc, 0, 0xfffff);	/* data, D=1, G=1 */
	gdt[BOOT_SEL_TSS / 8] = gdt_entry(0x8b, 0x0, 0, 0x67);		/* busy 64-bit TSS, */
	gdt[BOOT_SEL_TSS / 8 + 1] = 0;					/* 16 bytes long */

	/* 2 MiB pages for 0-4 GiB: present, writable, PS. The kernel builds its own tables. */
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = BOOT_PDPT_ADDR | 0x3;
	for (i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PD_ADDR + i * 4096ull) | 0x3;
	for (i = 0; i < 4 * 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x83;
	return 0;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int code)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->base = 0;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->s = 1;
	s->g = 1;
	s->l = code;
	s->db = !code;
}

void boot_sregs_setup(struct kvm_sregs *s)
{
	seg(&s->cs, BOOT_SEL_CODE, 0xb, 1);
	seg(&s->ds, BOOT_SEL_DATA, 0x3, 0);
	s->es = s->fs = s->gs = s->ss = s->ds;

	memset(&s->tr, 0, sizeof(s->tr));
	s->tr.selector = BOOT_SEL_TSS;
	s->tr.limit = 0x67;
	s->tr.type = 0xb;
	s->tr.present = 1;

	s->gdt.base = BOOT_GDT_ADDR;
	s->gdt.limit = 6 * 8 - 1;
	s->idt.base = 0;
	s->idt.limit = 0;

	s->cr3 = BOOT_PML4_ADDR;
	s->cr4 = 1u << 5;			/* PAE */
	s->cr0 = (1u << 0) | (1u << 4) | (1u << 5) | (1u << 31);	/* PE, ET, NE, PG */
	s->efer = (1u << 8) | (1u << 10);	/* LME, LMA */
}

void boot_regs_setup(struct kvm_regs *r, const struct boot_info *bi)
{
	memset(r, 0, sizeof(*r));
	r->rip = bi->entry;
	r->rsi = bi->rsi;
	r->rsp = BOOT_STACK_TOP;
	r->rbp = BOOT_STACK_TOP;
	r->rflags = 0x2;
}

int boot_flat_load(struct guest_mem *m, const void *image, size_t len, struct boot_info *out)
{
	void *dst = guest_mem_ptr(m, BOOT_FLAT_ADDR, len);
	int ret;

	if (len == 0 || !dst) {
		log_err("firmware image of %zu bytes does not fit in guest RAM at 0x%llx", len,
			(unsigned long long)BOOT_FLAT_ADDR);
		return -ENOSPC;
	}
	ret = write_cpu_tables(m);
	if (ret < 0)
		return ret;
	memcpy(dst, image, len);
	memset(out, 0, sizeof(*out));
	out->entry = BOOT_FLAT_ADDR;
	out->kernel_addr = BOOT_FLAT_ADDR;
	out->kernel_end = BOOT_FLAT_ADDR + len;
	return 0;
}

static int place_initrd(struct guest_mem *m, const struct setup_header *hdr, const void *initrd,
			size_t len, struct boot_info *bi)
{
	uint64_t top = low_ram_end(m), addr;
	void *dst;

	/* The kernel reads the initrd below initrd_addr_max (inclusive) and below the gap. */
	if (hdr->initrd_addr_max && (uint64_t)hdr->initrd_addr_max + 1 < top)
		top = (uint64_t)hdr->initrd_addr_max + 1;
	if (len > top || ((top - len) & PAGE_MASK_4K) < bi->kernel_end) {
		log_err("initrd of %zu MiB does not fit between the kernel's end (%" PRIu64
			" MiB) and %" PRIu64 " MiB: give the VM more memory", len >> 20,
			bi->kernel_end >> 20, top >> 20);
		return -ENOSPC;
	}
	addr = (top - len) & PAGE_MASK_4K;
	dst = guest_mem_ptr(m, addr, len);
	if (!dst)
		return -ENOSPC;
	memcpy(dst, initrd, len);
	bi->initrd_addr = addr;
	bi->initrd_size = len;
	return 0;
}

int boot_linux_load(struct guest_mem *m, const void *kernel, size_t kernel_len,
		    const void *initrd, size_t initrd_len, const char *cmdline,
		    uint64_t rsdp_gpa, struct boot_info *out)
{
	const uint8_t *k = kernel;
	struct boot_params *bp;
	struct boot_e820 map[E820_MAX_ENTRIES_ZEROPAGE];
	struct setup_header *hdr;
	uint64_t load, pm_off, pm_len, need;
	size_t hdr_len, cmd_len = strlen(cmdline);
	unsigned int i, n;
	void *dst;
	int ret;

	memset(out, 0, sizeof(*out));
	bp = guest_mem_ptr(m, BOOT_PARAMS_ADDR, sizeof(*bp));
	if (!bp)
		return -ENOSPC;
	memset(bp, 0, sizeof(*bp));

	if (kernel_len < 0x1000) {
		log_err("kernel image: %zu bytes is too small to be a bzImage", kernel_len);
		return -ENOEXEC;
	}
	/* The header's length is announced by the jump at 0x200: 0x202 + its 8-bit offset. */
	hdr_len = 0x202 + k[0x201] - SETUP_HDR_OFFSET;
	if (hdr_len > sizeof(bp->hdr))
		hdr_len = sizeof(bp->hdr);
	memcpy(&bp->hdr, k + SETUP_HDR_OFFSET, hdr_len);
	hdr = &bp->hdr;
	if (hdr->header != HDRS_MAGIC || hdr->boot_flag != 0xAA55) {
		log_err("kernel image is not a bzImage (no \"HdrS\" boot header)");
		return -ENOEXEC;
	}
	if (hdr->version < MIN_PROTOCOL || !(hdr->xloadflags & XLF_KERNEL_64) ||
	    !(hdr->loadflags & LOADED_HIGH)) {
		log_err("kernel boot protocol %u.%02u without a 64-bit entry point: need 2.12+ with XLF_KERNEL_64",
			hdr->version >> 8, hdr->version & 0xff);
		return -ENOEXEC;
	}
	out->protocol = hdr->version;

	pm_off = (uint64_t)((hdr->setup_sects ? hdr->setup_sects : 4) + 1) * 512;
	if (pm_off >= kernel_len) {
		log_err("kernel image: setup size %" PRIu64 " beyond the file (%zu bytes)", pm_off, kernel_len);
		return -ENOEXEC;
	}
	pm_len = kernel_len - pm_off;

	/* The preferred address is also where a non-relocatable kernel must go. */
	load = hdr->pref_address ? hdr->pref_address : 0x100000;
	if (load < 0x100000 || (load & 0xfff)) {
		log_err("kernel image: odd preferred load address 0x%" PRIx64, load);
		return -ENOEXEC;
	}
	need = hdr->init_size > pm_len ? hdr->init_size : pm_len;
	if (load + need > low_ram_end(m)) {
		log_err("kernel needs %" PRIu64 " MiB from %" PRIu64 " MiB but the VM has %" PRIu64
			" MiB below the MMIO gap", need >> 20, load >> 20, low_ram_end(m) >> 20);
		return -ENOSPC;
	}
	dst = guest_mem_ptr(m, load, pm_len);
	if (!dst)
		return -ENOSPC;
	memcpy(dst, k + pm_off, pm_len);
	out->kernel_addr = load;
	out->kernel_end = load + need;
	out->entry = load + 0x200;		/* startup_64 */
	out->rsi = BOOT_PARAMS_ADDR;

	if (cmd_len + 1 > BOOT_CMDLINE_MAX || (hdr->cmdline_size && cmd_len > hdr->cmdline_size)) {
		log_err("kernel command line of %zu bytes is longer than the kernel accepts (%u)",
			cmd_len, hdr->cmdline_size);
		return -E2BIG;
	}
	dst = guest_mem_ptr(m, BOOT_CMDLINE_ADDR, cmd_len + 1);
	if (!dst)
		return -ENOSPC;
	memcpy(dst, cmdline, cmd_len + 1);
	hdr->cmd_line_ptr = (uint32_t)BOOT_CMDLINE_ADDR;
	bp->ext_cmd_line_ptr = 0;

	if (initrd && initrd_len) {
		ret = place_initrd(m, hdr, initrd, initrd_len, out);
		if (ret < 0)
			return ret;
		hdr->ramdisk_image = (uint32_t)out->initrd_addr;
		hdr->ramdisk_size = (uint32_t)initrd_len;
		bp->ext_ramdisk_image = (uint32_t)(out->initrd_addr >> 32);
		bp->ext_ramdisk_size = (uint32_t)((uint64_t)initrd_len >> 32);
	}

	hdr->type_of_loader = 0xff;		/* "undefined" boot loader */
	hdr->code32_start = (uint32_t)load;
	hdr->loadflags |= CAN_USE_HEAP;
	hdr->heap_end_ptr = 0xfe00;
	hdr->vid_mode = 0xffff;			/* "normal": no video mode change */
	if (hdr->version >= 0x020e)
		bp->acpi_rsdp_addr = rsdp_gpa;

	n = boot_e820_build(m, map, E820_MAX_ENTRIES_ZEROPAGE);
	for (i = 0; i < n; i++) {
		bp->e820_table[i].addr = map[i].addr;
		bp->e820_table[i].size = map[i].size;
		bp->e820_table[i].type = map[i].type;
	}
	bp->e820_entries = (uint8_t)n;

	return write_cpu_tables(m);
}
