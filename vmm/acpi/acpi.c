// SPDX-License-Identifier: MIT
/*
 * ACPI table builder (see acpi.h for the layout and the contribution contract). The fixed
 * tables describe a legacy-free-enough PC: a full (not hardware-reduced) FADT because Linux
 * then drives the power button, S5 power-off and the reset register through the fixed ACPI
 * hardware the platform emulates in dev/pm.c — the hardware-reduced alternative would need
 * a GED device and a sleep control register instead, for no gain with an 8259/IOAPIC PC.
 * References: ACPI 6.5 §5.2 (tables), §4.8 (fixed hardware), §7.4.2 (\_Sx objects).
 */
#define LOG_TAG "acpi"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/acpi/acpi.h"
#include "vmm/lib/log.h"

struct acpi_table {
	void *data;
	size_t len;
};

struct acpi {
	struct aml dsdt_extra;		/* contributed AML, appended to the DSDT body */
	struct acpi_table *tables;	/* contributed tables, in add order */
	size_t nr_tables;
};

int acpi_create(struct acpi **out)
{
	struct acpi *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	aml_init(&a->dsdt_extra);
	*out = a;
	return 0;
}

void acpi_destroy(struct acpi *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->nr_tables; i++)
		free(a->tables[i].data);
	free(a->tables);
	aml_free(&a->dsdt_extra);
	free(a);
}

uint8_t acpi_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + b[i]);
	return sum;
}

void acpi_header_init(struct acpi_header *h, const char sig[4], uint32_t len, uint8_t rev)
{
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = rev;
	h->checksum = 0;
	memcpy(h->oem_id, ACPI_OEM_ID, 6);
	memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, 8);
	h->oem_revision = ACPI_OEM_REVISION;
	memcpy(h->creator_id, ACPI_CREATOR_ID, 4);
	h->creator_revision = ACPI_CREATOR_REVISION;
}

static void header_fix_checksum(void *table)
{
	struct acpi_header *h = table;

	h->checksum = 0;
	h->checksum = (uint8_t)(0 - acpi_checksum(table, h->length));
}

int acpi_add_table(struct acpi *a, const void *table, size_t len)
{
	static const char *const reserved[] = { "RSD ", "XSDT", "RSDT", "FACP", "FACS", "APIC",
						"DSDT" };
	const struct acpi_header *h = table;
	struct acpi_table *t;
	void *copy;

	if (len < sizeof(*h) || h->length != len || len > ACPI_TABLE_MAX)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (!memcmp(h->signature, reserved[i], 4))
			return -EINVAL;
	t = realloc(a->tables, (a->nr_tables + 1) * sizeof(*t));
	if (!t)
		return -ENOMEM;
	a->tables = t;
	copy = malloc(len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, table, len);
	a->tables[a->nr_tables++] = (struct acpi_table){ copy, len };
	return 0;
}

int acpi_dsdt_append(struct acpi *a, const struct aml *aml)
{
	int ret = aml_error(aml);

	if (ret < 0)
		return ret;
	aml_bytes(&a->dsdt_extra, aml->buf, aml->len);
	return aml_error(&a->dsdt_extra);
}

/* The DSDT body the platform itself owns: \_S5 and the legacy devices under \_SB. */
static void dsdt_platform(struct aml *d, const struct acpi_platform_info *info)
{
	/* \_S5: {SLP_TYPa, SLP_TYPb, reserved, reserved}; written to PM1a_CNT to power off. */
	aml_name_begin(d, "\\_S5_");
	aml_package_begin(d, 4);
	aml_int(d, info->slp_typ_s5);
	aml_int(d, info->slp_typ_s5);
	aml_int(d, 0);
	aml_int(d, 0);
	aml_end(d);

	aml_scope_begin(d, "\\_SB_");

	if (info->com1_port) {
		aml_device_begin(d, "COM1");
		aml_name_eisaid(d, "_HID", "PNP0501");
		aml_name_int(d, "_UID", 1);
		aml_name_begin(d, "_CRS");
		aml_restemplate_begin(d);
		aml_res_io(d, info->com1_port, info->com1_port, 1, 8);
		aml_res_irq_noflags(d, info->com1_irq);
		aml_restemplate_end(d);
		aml_end(d);
	}

	if (info->rtc_port) {
		aml_device_begin(d, "RTC_");
		aml_name_eisaid(d, "_HID", "PNP0B00");
		aml_name_begin(d, "_CRS");
		aml_restemplate_begin(d);
		aml_res_io(d, info->rtc_port, info->rtc_port, 1, 2);
		aml_res_irq_noflags(d, info->rtc_irq);
		aml_restemplate_end(d);
		aml_end(d);
	}

	aml_end(d);	/* \_SB */
}

static void gas_io(struct acpi_gas *g, uint16_t port, uint8_t bytes, uint8_t access)
{
	g->space_id = ACPI_GAS_IO;
	g->bit_width = (uint8_t)(bytes * 8);
	g->bit_offset = 0;
	g->access_size = access;
	g->address = port;
}

static void build_fadt(struct acpi_fadt *f, const struct acpi_platform_info *info,
		       uint64_t facs, uint64_t dsdt)
{
	memset(f, 0, sizeof(*f));
	acpi_header_init(&f->hdr, "FACP", sizeof(*f), 6);
	f->firmware_ctrl = 0;		/* X_FIRMWARE_CTRL is used: the spec wants one, not both */
	f->x_firmware_ctrl = facs;
	f->dsdt = (uint32_t)dsdt;	/* equal to X_DSDT, so ACPICA sees no mismatch */
	f->x_dsdt = dsdt;
	f->preferred_pm_profile = 0;	/* unspecified */
	f->sci_int = info->sci_irq;
	f->smi_cmd = 0;			/* no SMM: the hardware is always in ACPI mode (SCI_EN=1) */

	f->pm1a_evt_blk = info->pm1a_evt_port;
	f->pm1_evt_len = 4;
	gas_io(&f->x_pm1a_evt_blk, info->pm1a_evt_port, 4, 2);
	f->pm1a_cnt_blk = info->pm1a_cnt_port;
	f->pm1_cnt_len = 2;
	gas_io(&f->x_pm1a_cnt_blk, info->pm1a_cnt_port, 2, 2);
	if (info->pm_tmr_port) {
		f->pm_tmr_blk = info->pm_tmr_port;
		f->pm_tmr_len = 4;
		gas_io(&f->x_pm_tmr_blk, info->pm_tmr_port, 4, 3);
	}
	/* No C2/C3: latencies above 100/1000 us mean "not supported" (§5.2.9). */
	f->p_lvl2_lat = 101;
	f->p_lvl3_lat = 1001;
	f->century = info->rtc_century_index;
	/*
	 * Legacy devices exist (COM1, CMOS); no 8042 flag: the i8042 is only there for the reset
	 * pulse, so Linux should not probe a keyboard; no VGA.
	 */
	f->iapc_boot_arch = ACPI_FADT_BOOT_LEGACY_DEVICES | ACPI_FADT_BOOT_NO_VGA;
	f->flags = ACPI_FADT_F_WBINVD | ACPI_FADT_F_PROC_C1 | ACPI_FADT_F_SLP_BUTTON |
		   ACPI_FADT_F_FIX_RTC | ACPI_FADT_F_RESET_REG_SUP |
		   (info->pm_tmr_port ? ACPI_FADT_F_TMR_VAL_EXT : 0);
	gas_io(&f->reset_reg, info->reset_port, 1, 1);
	f->reset_value = info->reset_value;
	f->minor_version = 5;		/* ACPI 6.5 */
}

static void build_facs(struct acpi_facs *f)
{
	memset(f, 0, sizeof(*f));
	memcpy(f->signature, "FACS", 4);
	f->length = sizeof(*f);
	f->version = 2;
}

/* The MADT's size for @n CPUs. */
static size_t madt_size(unsigned int n)
{
	return sizeof(struct acpi_madt) + n * sizeof(struct acpi_madt_lapic) +
	       sizeof(struct acpi_madt_ioapic) + 2 * sizeof(struct acpi_madt_iso) +
	       sizeof(struct acpi_madt_lapic_nmi);
}

static void build_madt(uint8_t *p, const struct acpi_platform_info *info)
{
	struct acpi_madt *m = (struct acpi_madt *)p;
	size_t off = sizeof(*m);

	acpi_header_init(&m->hdr, "APIC", (uint32_t)madt_size(info->nr_cpus), 5);
	m->lapic_address = (uint32_t)info->lapic_base;
	m->flags = 1;			/* PCAT_COMPAT: the in-kernel 8259 pair exists */

	for (unsigned int i = 0; i < info->nr_cpus; i++) {
		struct acpi_madt_lapic l = {
			.type = ACPI_MADT_LAPIC, .length = sizeof(l),
			.processor_uid = (uint8_t)i, .apic_id = (uint8_t)i, .flags = 1,
		};
		memcpy(p + off, &l, sizeof(l));
		off += sizeof(l);
	}
	{
		struct acpi_madt_ioapic io = {
			.type = ACPI_MADT_IOAPIC, .length = sizeof(io), .ioapic_id = info->ioapic_id,
			.address = (uint32_t)info->ioapic_base, .gsi_base = 0,
		};
		memcpy(p + off, &io, sizeof(io));
		off += sizeof(io);
	}
	{
		/* The PIT's IRQ0 is wired to IOAPIC pin 2, as on every PC since the IOAPIC. */
		struct acpi_madt_iso iso0 = {
			.type = ACPI_MADT_ISO, .length = sizeof(iso0), .bus = 0, .source = 0,
			.gsi = 2, .flags = 0,
		};
		/* The SCI is level-triggered, active high (the ACPI default, stated explicitly). */
		struct acpi_madt_iso sci = {
			.type = ACPI_MADT_ISO, .length = sizeof(sci), .bus = 0,
			.source = (uint8_t)info->sci_irq, .gsi = info->sci_irq,
			.flags = ACPI_MPS_POLARITY_HIGH | ACPI_MPS_TRIGGER_LEVEL,
		};
		memcpy(p + off, &iso0, sizeof(iso0));
		off += sizeof(iso0);
		memcpy(p + off, &sci, sizeof(sci));
		off += sizeof(sci);
	}
	{
		struct acpi_madt_lapic_nmi nmi = {
			.type = ACPI_MADT_LAPIC_NMI, .length = sizeof(nmi), .processor_uid = 0xff,
			.flags = 0, .lint = 1,
		};
		memcpy(p + off, &nmi, sizeof(nmi));
		off += sizeof(nmi);
	}
	BUG_ON(off != madt_size(info->nr_cpus));
}

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

int acpi_build(struct acpi *a, const struct acpi_platform_info *info, uint64_t base,
	       void *buf, size_t size, size_t *rsdp_off, size_t *used)
{
	uint8_t *p = buf;
	size_t off, xsdt_off, rsdt_off, fadt_off, facs_off, madt_off, dsdt_off;
	size_t nr_xsdt = 2 + a->nr_tables;	/* FADT, MADT, contributed */
	size_t xsdt_len = sizeof(struct acpi_header) + 8 * nr_xsdt;
	size_t rsdt_len = sizeof(struct acpi_header) + 4 * nr_xsdt;
	size_t *tbl_off = NULL;
	struct aml dsdt;
	int ret;

	if (info->nr_cpus == 0 || info->nr_cpus > 255)
		return -EINVAL;		/* xAPIC MADT entries carry 8-bit ids */
	if (base + size > (1ull << 32))
		return -EINVAL;		/* the RSDT and 32-bit FADT fields need < 4 GiB */

	aml_init(&dsdt);
	dsdt_platform(&dsdt, info);
	aml_bytes(&dsdt, a->dsdt_extra.buf, a->dsdt_extra.len);
	ret = aml_error(&dsdt);
	if (ret < 0) {
		log_err("DSDT AML: %s", strerror(-ret));
		goto out;
	}
	tbl_off = calloc(a->nr_tables + 1, sizeof(*tbl_off));
	if (!tbl_off) {
		ret = -ENOMEM;
		goto out;
	}

	/* Layout first, so every pointer is known before anything is written. */
	off = sizeof(struct acpi_rsdp);
	xsdt_off = off = align_up(off, 16);
	rsdt_off = off = align_up(off + xsdt_len, 16);
	fadt_off = off = align_up(off + rsdt_len, 16);
	facs_off = off = align_up(off + sizeof(struct acpi_fadt), 64);	/* FACS: 64-byte aligned */
	madt_off = off = align_up(off + sizeof(struct acpi_facs), 16);
	dsdt_off = off = align_up(off + madt_size(info->nr_cpus), 16);
	off += sizeof(struct acpi_header) + dsdt.len;
	for (size_t i = 0; i < a->nr_tables; i++) {
		off = align_up(off, 16);
		tbl_off[i] = off;
		off += a->tables[i].len;
	}
	if (off > size) {
		log_err("ACPI tables need %zu bytes, window has %zu", off, size);
		ret = -ENOSPC;
		goto out;
	}
	memset(buf, 0, size);

	/* DSDT */
	acpi_header_init((struct acpi_header *)(p + dsdt_off), "DSDT",
			 (uint32_t)(sizeof(struct acpi_header) + dsdt.len), 2);
	memcpy(p + dsdt_off + sizeof(struct acpi_header), dsdt.buf, dsdt.len);
	header_fix_checksum(p + dsdt_off);

	/* FACS has no checksum. */
	build_facs((struct acpi_facs *)(p + facs_off));

	build_fadt((struct acpi_fadt *)(p + fadt_off), info, base + facs_off, base + dsdt_off);
	header_fix_checksum(p + fadt_off);

	build_madt(p + madt_off, info);
	header_fix_checksum(p + madt_off);

	for (size_t i = 0; i < a->nr_tables; i++) {
		memcpy(p + tbl_off[i], a->tables[i].data, a->tables[i].len);
		header_fix_checksum(p + tbl_off[i]);
	}

	/* XSDT (64-bit pointers) and RSDT (32-bit, for acpi=rsdt and old readers). */
	{
		struct acpi_header *x = (struct acpi_header *)(p + xsdt_off);
		struct acpi_header *r = (struct acpi_header *)(p + rsdt_off);
		uint64_t ent[nr_xsdt];

		ent[0] = base + fadt_off;
		ent[1] = base + madt_off;
		for (size_t i = 0; i < a->nr_tables; i++)
			ent[2 + i] = base + tbl_off[i];
		acpi_header_init(x, "XSDT", (uint32_t)xsdt_len, 1);
		acpi_header_init(r, "RSDT", (uint32_t)rsdt_len, 1);
		for (size_t i = 0; i < nr_xsdt; i++) {
			uint32_t e32 = (uint32_t)ent[i];

			memcpy(p + xsdt_off + sizeof(*x) + 8 * i, &ent[i], 8);
			memcpy(p + rsdt_off + sizeof(*r) + 4 * i, &e32, 4);
		}
		header_fix_checksum(x);
		header_fix_checksum(r);
	}

	/* RSDP v2: checksum over the first 20 bytes, extended checksum over all 36. */
	{
		struct acpi_rsdp *r = (struct acpi_rsdp *)p;

		memcpy(r->signature, "RSD PTR ", 8);
		memcpy(r->oem_id, ACPI_OEM_ID, 6);
		r->revision = 2;
		r->rsdt_address = (uint32_t)(base + rsdt_off);
		r->length = sizeof(*r);
		r->xsdt_address = base + xsdt_off;
		r->checksum = (uint8_t)(0 - acpi_checksum(r, 20));
		r->extended_checksum = (uint8_t)(0 - acpi_checksum(r, sizeof(*r)));
	}
	*rsdp_off = 0;
	if (used)
		*used = off;
	ret = 0;
out:
	free(tbl_off);
	aml_free(&dsdt);
	return ret;
}
