// SPDX-License-Identifier: MIT
/*
 * ACPI: the AML writer's encodings, and the tables platform_write_acpi() puts into a fake
 * guest RAM, parsed back the way a kernel would (RSDP scan, checksums, XSDT walk, FADT
 * fields, MADT entries per CPU count, DSDT content, contributed DSDT AML and MCFG). When
 * iasl (acpica-tools) is installed, the DSDT is also disassembled by ACPICA as a
 * cross-check of the AML encoding.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmm/acpi/acpi.h"
#include "vmm/bus.h"
#include "vmm/dev/pm.h"
#include "vmm/layout.h"
#include "vmm/memory.h"
#include "vmm/platform.h"

#define RAM_SIZE	(2 * MIB)

struct fixture {
	struct bus pio, mmio;
	struct guest_mem mem;
	uint8_t *ram;
	struct platform *p;
};

static int fixture_make(struct fixture *f, unsigned int nr_cpus)
{
	struct platform_env env;

	memset(f, 0, sizeof(*f));
	f->ram = calloc(1, RAM_SIZE);
	if (!f->ram || bus_init(&f->pio, "pio") || bus_init(&f->mmio, "mmio"))
		return -1;
	/* A struct guest_mem built by hand: one region at gpa 0 backed by a heap buffer. */
	f->mem.memfd = -1;
	f->mem.base = f->ram;
	f->mem.size = RAM_SIZE;
	f->mem.regions[0] = (struct guest_mem_region){ .gpa = 0, .size = RAM_SIZE,
						       .fd_offset = 0, .hva = f->ram };
	f->mem.nr_regions = 1;
	env = (struct platform_env){ .pio = &f->pio, .mmio = &f->mmio, .mem = &f->mem,
				     .vm_fd = -1, .nr_cpus = nr_cpus, .console_out_fd = -1 };
	return platform_create(&env, &f->p);
}

static void fixture_free(struct fixture *f)
{
	platform_destroy(f->p);
	bus_destroy(&f->pio);
	bus_destroy(&f->mmio);
	free(f->ram);
}

static void *gpa(struct fixture *f, uint64_t a, uint64_t len)
{
	void *p = guest_mem_ptr(&f->mem, a, len);

	assert_non_null(p);
	return p;
}

/* Find the RSDP the way Linux does: 16-byte steps over 0xE0000..0xFFFFF. */
static uint64_t scan_rsdp(struct fixture *f)
{
	for (uint64_t a = 0xe0000; a < 0x100000; a += 16)
		if (!memcmp(gpa(f, a, 8), "RSD PTR ", 8))
			return a;
	return 0;
}

static const struct acpi_header *table_at(struct fixture *f, uint64_t a)
{
	const struct acpi_header *h = gpa(f, a, sizeof(*h));

	assert_true(h->length >= sizeof(*h));
	gpa(f, a, h->length);
	assert_int_equal(acpi_checksum(h, h->length), 0);
	return h;
}

/* Look a table up through the XSDT; NULL if absent. */
static const struct acpi_header *find_table(struct fixture *f, uint64_t rsdp, const char *sig)
{
	const struct acpi_rsdp *r = gpa(f, rsdp, sizeof(*r));
	const struct acpi_header *x = table_at(f, r->xsdt_address);
	size_t n = (x->length - sizeof(*x)) / 8;

	for (size_t i = 0; i < n; i++) {
		uint64_t e;
		const struct acpi_header *t;

		memcpy(&e, (const uint8_t *)x + sizeof(*x) + 8 * i, 8);
		t = table_at(f, e);
		if (!memcmp(t->signature, sig, 4))
			return t;
	}
	return NULL;
}

static int mem_contains(const void *hay, size_t n, const void *needle, size_t m)
{
	return memmem(hay, n, needle, m) != NULL;
}

/* ---- AML writer ---- */

static void test_aml_encodings(void **unused)
{
	struct aml a;
	static const uint8_t pnp0501[] = { 0x0c, 0x41, 0xd0, 0x05, 0x01 };

	aml_init(&a);
	aml_eisaid(&a, "PNP0501");
	assert_int_equal(aml_error(&a), 0);
	assert_memory_equal(a.buf, pnp0501, sizeof(pnp0501));	/* = 0x0105D041 */
	aml_free(&a);

	aml_init(&a);
	aml_int(&a, 0);
	aml_int(&a, 1);
	aml_int(&a, 0x12);
	aml_int(&a, 0x1234);
	aml_int(&a, 0x12345678);
	aml_int(&a, 0x123456789ull);
	assert_int_equal(a.len, 1 + 1 + 2 + 3 + 5 + 9);
	assert_int_equal(a.buf[0], 0x00);
	assert_int_equal(a.buf[1], 0x01);
	assert_int_equal(a.buf[2], 0x0a);
	assert_int_equal(a.buf[4], 0x0b);
	assert_int_equal(a.buf[7], 0x0c);
	assert_int_equal(a.buf[12], 0x0e);
	aml_free(&a);

	/* Name paths: root + dual name; single segment padded. */
	aml_init(&a);
	aml_namestring(&a, "\\_SB.PCI0");
	assert_int_equal(a.len, 10);
	assert_memory_equal(a.buf, "\\\x2e_SB_PCI0", 10);
	aml_free(&a);
	aml_init(&a);
	aml_namestring(&a, "COM");
	assert_memory_equal(a.buf, "COM_", 4);
	aml_namestring(&a, "9BAD");		/* a segment may not start with a digit */
	assert_int_equal(aml_error(&a), -EINVAL);
	aml_free(&a);
}

static void test_aml_pkglength(void **unused)
{
	struct aml a;
	uint8_t junk[100] = { 0 };

	/* Small: Scope with a 4-byte name -> 1-byte PkgLength = 5. */
	aml_init(&a);
	aml_scope_begin(&a, "ABCD");
	aml_end(&a);
	assert_int_equal(aml_error(&a), 0);
	assert_int_equal(a.len, 6);
	assert_int_equal(a.buf[0], 0x10);
	assert_int_equal(a.buf[1], 5);
	aml_free(&a);

	/* 4 + 100 body bytes -> 2-byte PkgLength, total 106 = 0x6a: lead 0x4a, next 0x06. */
	aml_init(&a);
	aml_scope_begin(&a, "ABCD");
	aml_bytes(&a, junk, sizeof(junk));
	aml_end(&a);
	assert_int_equal(a.len, 1 + 2 + 104);
	assert_int_equal(a.buf[1], 0x4a);
	assert_int_equal(a.buf[2], 0x06);
	aml_free(&a);

	/* Buffer: BufferOp PkgLength BufferSize bytes; a resource template ends in 79 00. */
	aml_init(&a);
	aml_restemplate_begin(&a);
	aml_res_irq_noflags(&a, 4);
	aml_restemplate_end(&a);
	assert_int_equal(aml_error(&a), 0);
	{
		static const uint8_t want[] = { 0x11, 0x08, 0x0a, 0x05, 0x22, 0x10, 0x00, 0x79, 0x00 };

		assert_int_equal(a.len, sizeof(want));
		assert_memory_equal(a.buf, want, sizeof(want));
	}
	aml_free(&a);

	/* Unbalanced: an open scope is an error, as is an extra end. */
	aml_init(&a);
	aml_scope_begin(&a, "ABCD");
	assert_int_equal(aml_error(&a), -EPROTO);
	aml_end(&a);
	aml_end(&a);
	assert_int_equal(aml_error(&a), -EPROTO);
	aml_free(&a);
}

/* ---- tables ---- */

static void check_tables(unsigned int nr_cpus)
{
	struct fixture f;
	uint64_t rsdp = 0, found;
	const struct acpi_rsdp *r;
	const struct acpi_fadt *fadt;
	const struct acpi_header *madt, *dsdt, *rsdt;
	const struct acpi_facs *facs;
	unsigned int lapics = 0, ioapics = 0, isos = 0, nmis = 0;
	size_t off;

	assert_int_equal(fixture_make(&f, nr_cpus), 0);
	assert_int_equal(platform_write_acpi(f.p, &rsdp), 0);

	/* RSDP: where the BIOS-area scan finds it, 16-byte aligned, both checksums right. */
	found = scan_rsdp(&f);
	assert_int_equal(found, rsdp);
	assert_int_equal(rsdp % 16, 0);
	assert_true(rsdp >= LAYOUT_ACPI_BASE && rsdp < LAYOUT_ACPI_BASE + LAYOUT_ACPI_SIZE);
	r = gpa(&f, rsdp, sizeof(*r));
	assert_int_equal(r->revision, 2);
	assert_int_equal(r->length, 36);
	assert_int_equal(acpi_checksum(r, 20), 0);
	assert_int_equal(acpi_checksum(r, 36), 0);
	rsdt = table_at(&f, r->rsdt_address);
	assert_memory_equal(rsdt->signature, "RSDT", 4);
	assert_memory_equal(table_at(&f, r->xsdt_address)->signature, "XSDT", 4);

	/* FADT */
	fadt = (const struct acpi_fadt *)find_table(&f, rsdp, "FACP");
	assert_non_null(fadt);
	assert_int_equal(fadt->hdr.length, sizeof(*fadt));
	assert_true(fadt->hdr.revision >= 5);
	assert_int_equal(fadt->sci_int, 9);
	assert_int_equal(fadt->smi_cmd, 0);
	assert_int_equal(fadt->pm1a_evt_blk, PLATFORM_PM_PORT + PM_EVT_OFF);
	assert_int_equal(fadt->pm1_evt_len, 4);
	assert_int_equal(fadt->pm1a_cnt_blk, PLATFORM_PM_PORT + PM_CNT_OFF);
	assert_int_equal(fadt->pm1_cnt_len, 2);
	assert_int_equal(fadt->pm_tmr_blk, PLATFORM_PM_PORT + PM_TMR_OFF);
	assert_int_equal(fadt->pm_tmr_len, 4);
	assert_int_equal(fadt->x_pm1a_evt_blk.space_id, ACPI_GAS_IO);
	assert_int_equal(fadt->x_pm1a_evt_blk.address, fadt->pm1a_evt_blk);
	assert_int_equal(fadt->x_pm1a_cnt_blk.address, fadt->pm1a_cnt_blk);
	assert_true(fadt->flags & ACPI_FADT_F_RESET_REG_SUP);
	assert_false(fadt->flags & ACPI_FADT_F_HW_REDUCED);
	assert_false(fadt->flags & ACPI_FADT_F_PWR_BUTTON);	/* fixed power button present */
	assert_false(fadt->iapc_boot_arch & ACPI_FADT_BOOT_8042);
	assert_false(fadt->iapc_boot_arch & ACPI_FADT_BOOT_NO_CMOS_RTC);
	assert_int_equal(fadt->reset_reg.space_id, ACPI_GAS_IO);
	assert_int_equal(fadt->reset_reg.bit_width, 8);
	assert_int_equal(fadt->reset_reg.address, PLATFORM_PM_PORT + PM_RESET_OFF);
	assert_int_equal(fadt->reset_value, PM_RESET_VALUE);
	assert_int_equal(fadt->century, 0x32);
	assert_int_equal(fadt->firmware_ctrl, 0);
	facs = gpa(&f, fadt->x_firmware_ctrl, sizeof(*facs));
	assert_int_equal(fadt->x_firmware_ctrl % 64, 0);
	assert_memory_equal(facs->signature, "FACS", 4);
	assert_int_equal(facs->length, 64);
	assert_int_equal(fadt->dsdt, fadt->x_dsdt);

	/* MADT: one enabled LAPIC per vCPU with APIC id = index, IOAPIC, 2 ISOs, NMI LINT1. */
	madt = find_table(&f, rsdp, "APIC");
	assert_non_null(madt);
	{
		const struct acpi_madt *m = (const struct acpi_madt *)madt;

		assert_int_equal(m->lapic_address, LAYOUT_LAPIC_BASE);
		assert_int_equal(m->flags & 1, 1);
	}
	for (off = sizeof(struct acpi_madt); off < madt->length;) {
		const uint8_t *e = (const uint8_t *)madt + off;

		assert_true(e[1] >= 2 && off + e[1] <= madt->length);
		switch (e[0]) {
		case ACPI_MADT_LAPIC: {
			const struct acpi_madt_lapic *l = (const void *)e;

			assert_int_equal(l->length, 8);
			assert_int_equal(l->apic_id, lapics);
			assert_int_equal(l->processor_uid, lapics);
			assert_int_equal(l->flags & 1, 1);
			lapics++;
			break;
		}
		case ACPI_MADT_IOAPIC: {
			const struct acpi_madt_ioapic *io = (const void *)e;

			assert_int_equal(io->address, LAYOUT_IOAPIC_BASE);
			assert_int_equal(io->gsi_base, 0);
			ioapics++;
			break;
		}
		case ACPI_MADT_ISO: {
			const struct acpi_madt_iso *iso = (const void *)e;

			if (iso->source == 0) {
				assert_int_equal(iso->gsi, 2);
			} else {
				assert_int_equal(iso->source, 9);
				assert_int_equal(iso->gsi, 9);
				assert_int_equal(iso->flags, ACPI_MPS_POLARITY_HIGH | ACPI_MPS_TRIGGER_LEVEL);
			}
			isos++;
			break;
		}
		case ACPI_MADT_LAPIC_NMI: {
			const struct acpi_madt_lapic_nmi *n = (const void *)e;

			assert_int_equal(n->processor_uid, 0xff);
			assert_int_equal(n->lint, 1);
			nmis++;
			break;
		}
		default:
			fail_msg("unexpected MADT entry type %u", e[0]);
		}
		off += e[1];
	}
	assert_int_equal(off, madt->length);
	assert_int_equal(lapics, nr_cpus);
	assert_int_equal(ioapics, 1);
	assert_int_equal(isos, 2);
	assert_int_equal(nmis, 1);

	/* DSDT: \_S5 package, COM1 (PNP0501) and RTC (PNP0B00). */
	dsdt = table_at(&f, fadt->x_dsdt);
	assert_memory_equal(dsdt->signature, "DSDT", 4);
	assert_int_equal(dsdt->revision, 2);
	{
		/* Name(\_S5_, Package(4){5, 5, 0, 0}) */
		static const uint8_t s5[] = { 0x08, '\\', '_', 'S', '5', '_', 0x12, 0x08, 0x04,
					      0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00 };
		static const uint8_t com1[] = { 0x0c, 0x41, 0xd0, 0x05, 0x01 };
		static const uint8_t rtc[] = { 0x0c, 0x41, 0xd0, 0x0b, 0x00 };
		static const uint8_t io3f8[] = { 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08 };

		assert_true(mem_contains(dsdt, dsdt->length, s5, sizeof(s5)));
		assert_true(mem_contains(dsdt, dsdt->length, com1, sizeof(com1)));
		assert_true(mem_contains(dsdt, dsdt->length, rtc, sizeof(rtc)));
		assert_true(mem_contains(dsdt, dsdt->length, io3f8, sizeof(io3f8)));
	}
	fixture_free(&f);
}

static void test_tables_1cpu(void **unused) { check_tables(1); }
static void test_tables_2cpu(void **unused) { check_tables(2); }
static void test_tables_4cpu(void **unused) { check_tables(4); }
static void test_tables_255cpu(void **unused) { check_tables(255); }

static void test_bad_cpu_counts(void **unused)
{
	struct fixture f;

	assert_int_equal(fixture_make(&f, 0), -EINVAL);
	fixture_free(&f);
	assert_int_equal(fixture_make(&f, 256), -EINVAL);
	fixture_free(&f);
}

/* What the PCI module contributes: PCI0 in the DSDT and an MCFG. */
static void add_pci_like(struct fixture *fx)
{
	struct acpi_mcfg mcfg;
	struct aml a;

	aml_init(&a);
	aml_scope_begin(&a, "\\_SB_");
	aml_device_begin(&a, "PCI0");
	aml_name_eisaid(&a, "_HID", "PNP0A08");
	aml_name_eisaid(&a, "_CID", "PNP0A03");
	aml_name_begin(&a, "_CRS");
	aml_restemplate_begin(&a);
	aml_res_word_bus(&a, 0, 255);
	aml_res_word_io(&a, 0, 0xcf7);
	aml_res_dword_mem(&a, (uint32_t)LAYOUT_PCI_MMIO32_BASE,
			  (uint32_t)(LAYOUT_PCI_MMIO32_BASE + LAYOUT_PCI_MMIO32_SIZE - 1), 0);
	aml_res_qword_mem(&a, 0x8000000000ull, 0x8fffffffffull, 1);
	aml_restemplate_end(&a);
	aml_method_begin(&a, "_OSC", 4, 0);
	aml_return(&a);
	aml_arg(&a, 3);
	aml_end(&a);
	aml_end(&a);
	aml_end(&a);
	assert_int_equal(acpi_dsdt_append(platform_acpi(fx->p), &a), 0);
	aml_free(&a);

	memset(&mcfg, 0, sizeof(mcfg));
	acpi_header_init(&mcfg.hdr, "MCFG", sizeof(mcfg), 1);
	mcfg.alloc[0].base = LAYOUT_PCI_ECAM_BASE;
	mcfg.alloc[0].end_bus = 255;
	assert_int_equal(acpi_add_table(platform_acpi(fx->p), &mcfg, sizeof(mcfg)), 0);
}

/* What the PCI module does: DSDT AML and an MCFG table, before platform_write_acpi(). */
static void test_contributions(void **unused)
{
	struct fixture f;
	struct acpi_mcfg mcfg;
	const struct acpi_mcfg *got;
	const struct acpi_fadt *fadt;
	const struct acpi_header *dsdt;
	uint64_t rsdp;

	assert_int_equal(fixture_make(&f, 2), 0);
	add_pci_like(&f);
	memset(&mcfg, 0, sizeof(mcfg));
	/* Tables the builder makes itself, and wrong lengths, are refused. */
	acpi_header_init(&mcfg.hdr, "FACP", sizeof(mcfg), 1);
	assert_int_equal(acpi_add_table(platform_acpi(f.p), &mcfg, sizeof(mcfg)), -EINVAL);
	acpi_header_init(&mcfg.hdr, "MCFG", sizeof(mcfg) + 1, 1);
	assert_int_equal(acpi_add_table(platform_acpi(f.p), &mcfg, sizeof(mcfg)), -EINVAL);

	assert_int_equal(platform_write_acpi(f.p, &rsdp), 0);
	got = (const struct acpi_mcfg *)find_table(&f, rsdp, "MCFG");
	assert_non_null(got);
	assert_int_equal(got->alloc[0].base, LAYOUT_PCI_ECAM_BASE);
	assert_int_equal(got->alloc[0].end_bus, 255);
	fadt = (const struct acpi_fadt *)find_table(&f, rsdp, "FACP");
	dsdt = table_at(&f, fadt->x_dsdt);
	assert_true(mem_contains(dsdt, dsdt->length, "PCI0", 4));
	assert_true(mem_contains(dsdt, dsdt->length, "_OSC", 4));
	fixture_free(&f);
}

/* A contributor's AML error is reported, not written. */
static void test_bad_contribution(void **unused)
{
	struct fixture f;
	struct aml a;

	assert_int_equal(fixture_make(&f, 1), 0);
	aml_init(&a);
	aml_scope_begin(&a, "\\_SB_");		/* never closed */
	assert_int_equal(acpi_dsdt_append(platform_acpi(f.p), &a), -EPROTO);
	aml_free(&a);
	fixture_free(&f);
}

/*
 * ACPICA's disassembler as an independent AML parser (skipped without iasl). Bounded: iasl
 * on a tiny table takes milliseconds.
 */
static void test_iasl_disassembles_dsdt(void **unused)
{
	struct fixture f;
	const struct acpi_fadt *fadt;
	const struct acpi_header *dsdt;
	char dir[] = "/tmp/test_acpi.XXXXXX", cmd[512], path[256], *dsl;
	uint64_t rsdp;
	FILE *fp;
	long n;

	if (system("command -v iasl >/dev/null 2>&1") != 0) {
		print_message("iasl not installed: ACPICA cross-check skipped\n");
		skip();
	}
	assert_int_equal(fixture_make(&f, 4), 0);
	add_pci_like(&f);
	assert_int_equal(platform_write_acpi(f.p, &rsdp), 0);
	fadt = (const struct acpi_fadt *)find_table(&f, rsdp, "FACP");
	dsdt = table_at(&f, fadt->x_dsdt);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/dsdt.dat", dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(dsdt, 1, dsdt->length, fp), dsdt->length);
	fclose(fp);
	snprintf(cmd, sizeof(cmd), "cd %s && timeout 20 iasl -d dsdt.dat >iasl.log 2>&1", dir);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/dsdt.dsl", dir);
	fp = fopen(path, "r");
	assert_non_null(fp);
	dsl = calloc(1, 65536);
	n = (long)fread(dsl, 1, 65535, fp);
	fclose(fp);
	assert_true(n > 0);
	assert_non_null(strstr(dsl, "Name (\\_S5, Package (0x04)"));
	assert_non_null(strstr(dsl, "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode"));
	assert_non_null(strstr(dsl, "QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite"));
	assert_non_null(strstr(dsl, "Return (Arg3)"));
	assert_non_null(strstr(dsl, "EisaId (\"PNP0501\")"));
	assert_non_null(strstr(dsl, "EisaId (\"PNP0B00\")"));
	assert_non_null(strstr(dsl, "IO (Decode16,"));
	assert_non_null(strstr(dsl, "IRQNoFlags ()"));
	free(dsl);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	fixture_free(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aml_encodings),
		cmocka_unit_test(test_aml_pkglength),
		cmocka_unit_test(test_tables_1cpu),
		cmocka_unit_test(test_tables_2cpu),
		cmocka_unit_test(test_tables_4cpu),
		cmocka_unit_test(test_tables_255cpu),
		cmocka_unit_test(test_bad_cpu_counts),
		cmocka_unit_test(test_contributions),
		cmocka_unit_test(test_bad_contribution),
		cmocka_unit_test(test_iasl_disassembles_dsdt),
	};
	return cmocka_run_group_tests_name("acpi", tests, NULL, NULL);
}
