// SPDX-License-Identifier: MIT
/*
 * ACPI description of the PCI host (ACPI 6.4 §6.1-6.2, §19 AML; PCI Firmware 3.2 §4.1 MCFG):
 * the DSDT's PCI0 device with its resource windows and INTx routing (_PRT), a motherboard
 * resource device reserving ECAM (Linux refuses MMCONFIG it cannot see reserved), and MCFG.
 *
 * AML is emitted with a tiny growable buffer: a term that has a PkgLength is built body
 * first and then wrapped, since the length prefix's own size depends on the body's.
 */
#define LOG_TAG "pci-acpi"
#include <stdlib.h>
#include <string.h>

#include "vmm/layout.h"
#include "vmm/pci/pci.h"

struct aml {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static void put(struct aml *a, const void *src, size_t n)
{
	if (a->oom)
		return;
	if (a->len + n > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 256;
		uint8_t *p;

		while (cap < a->len + n)
			cap *= 2;
		p = realloc(a->p, cap);
		if (!p) {
			a->oom = true;
			return;
		}
		a->p = p;
		a->cap = cap;
	}
	memcpy(a->p + a->len, src, n);
	a->len += n;
}

static void put8(struct aml *a, uint8_t v) { put(a, &v, 1); }

static void put_le(struct aml *a, uint64_t v, unsigned int bytes)
{
	for (unsigned int i = 0; i < bytes; i++)
		put8(a, (uint8_t)(v >> (8 * i)));
}

/* Append @body wrapped as: op bytes, PkgLength, body. Frees @body. */
static void put_pkg(struct aml *a, const uint8_t *op, size_t oplen, struct aml *body)
{
	size_t n = body->len, total;

	put(a, op, oplen);
	/* PkgLength counts itself: 1 byte up to 63, else 2-4 bytes (low nibble + bytes). */
	if (n + 1 < 64) {
		put8(a, (uint8_t)(n + 1));
	} else {
		unsigned int extra = n + 2 < (1u << 12) ? 1 : n + 3 < (1u << 20) ? 2 : 3;

		total = n + 1 + extra;
		put8(a, (uint8_t)(extra << 6 | (total & 0xf)));
		for (unsigned int i = 0; i < extra; i++)
			put8(a, (uint8_t)(total >> (4 + 8 * i)));
	}
	put(a, body->p, body->len);
	a->oom |= body->oom;
	free(body->p);
	memset(body, 0, sizeof(*body));
}

static void put_int(struct aml *a, uint64_t v)
{
	if (v == 0) {
		put8(a, 0x00);		/* ZeroOp */
	} else if (v == 1) {
		put8(a, 0x01);		/* OneOp */
	} else if (v <= 0xff) {
		put8(a, 0x0a);
		put8(a, (uint8_t)v);
	} else if (v <= 0xffff) {
		put8(a, 0x0b);
		put_le(a, v, 2);
	} else if (v <= 0xffffffff) {
		put8(a, 0x0c);
		put_le(a, v, 4);
	} else {
		put8(a, 0x0e);
		put_le(a, v, 8);
	}
}

/* Name (NAME, <integer>) with a 4-character name. */
static void put_name_int(struct aml *a, const char *name, uint64_t v)
{
	put8(a, 0x08);
	put(a, name, 4);
	put_int(a, v);
}

/* EISA id "PNP0A08" compressed into a DWord (ACPI 6.4 §19.6.35 EISAID). */
static uint32_t eisa_id(const char *s)
{
	uint16_t vendor = (uint16_t)(((s[0] - 0x40) & 0x1f) << 10 | ((s[1] - 0x40) & 0x1f) << 5 |
				     ((s[2] - 0x40) & 0x1f));
	uint32_t prod = (uint32_t)strtoul(s + 3, NULL, 16);

	return (uint32_t)(vendor >> 8) | (uint32_t)(vendor & 0xff) << 8 |
	       ((prod >> 8) & 0xff) << 16 | (prod & 0xff) << 24;
}

static void put_name_eisa(struct aml *a, const char *name, const char *id)
{
	put8(a, 0x08);
	put(a, name, 4);
	put8(a, 0x0c);
	put_le(a, eisa_id(id), 4);
}

/* Name (NAME, Buffer () { @res, EndTag }) for a resource template. */
static void put_name_restemplate(struct aml *a, const char *name, struct aml *res)
{
	struct aml buf = { 0 };
	static const uint8_t buffer_op = 0x11;

	put8(res, 0x79);	/* End Tag, checksum 0 = "treat as valid" */
	put8(res, 0x00);
	put_int(&buf, res->len);
	put(&buf, res->p, res->len);
	buf.oom |= res->oom;
	free(res->p);
	memset(res, 0, sizeof(*res));
	put8(a, 0x08);
	put(a, name, 4);
	put_pkg(a, &buffer_op, 1, &buf);
}

/* Word Address Space descriptor (bus numbers: type 2, I/O: type 1). */
static void res_word(struct aml *r, uint8_t type, uint8_t tflags, uint16_t min, uint16_t max)
{
	put8(r, 0x88);
	put_le(r, 13, 2);
	put8(r, type);
	put8(r, 0x0c);		/* MinFixed, MaxFixed, PosDecode, ResourceProducer */
	put8(r, tflags);
	put_le(r, 0, 2);	/* granularity */
	put_le(r, min, 2);
	put_le(r, max, 2);
	put_le(r, 0, 2);	/* translation */
	put_le(r, (uint32_t)max - min + 1, 2);
}

static void res_dword_mem(struct aml *r, uint32_t base, uint32_t size)
{
	put8(r, 0x87);
	put_le(r, 23, 2);
	put8(r, 0);		/* memory */
	put8(r, 0x0c);
	put8(r, 0x01);		/* ReadWrite, NonCacheable */
	put_le(r, 0, 4);
	put_le(r, base, 4);
	put_le(r, base + size - 1, 4);
	put_le(r, 0, 4);
	put_le(r, size, 4);
}

static void res_qword_mem(struct aml *r, uint64_t base, uint64_t size)
{
	put8(r, 0x8a);
	put_le(r, 43, 2);
	put8(r, 0);
	put8(r, 0x0c);
	put8(r, 0x03);		/* ReadWrite, Cacheable */
	put_le(r, 0, 8);
	put_le(r, base, 8);
	put_le(r, base + size - 1, 8);
	put_le(r, 0, 8);
	put_le(r, size, 8);
}

static void put_pci0_crs(struct aml *a, const struct pci_bus *pb)
{
	struct aml r = { 0 };

	res_word(&r, 2, 0, 0, 0xff);				/* buses 0-255 (= MCFG) */
	put8(&r, 0x47);						/* I/O 0xCF8-0xCFF */
	put8(&r, 0x01);
	put_le(&r, PCI_CONF1_ADDR_PORT, 2);
	put_le(&r, PCI_CONF1_ADDR_PORT, 2);
	put8(&r, 0x01);
	put8(&r, 0x08);
	res_word(&r, 1, 0x03, 0x0000, 0x0cf7);			/* I/O window, EntireRange */
	res_word(&r, 1, 0x03, 0x0d00, 0xffff);
	res_dword_mem(&r, (uint32_t)pb->mmio32.base, (uint32_t)pb->mmio32.size);
	res_qword_mem(&r, pb->mmio64.base, pb->mmio64.size);
	put_name_restemplate(a, "_CRS", &r);
}

static void put_prt(struct aml *a)
{
	static const uint8_t pkg_op = 0x12;
	struct aml outer = { 0 };

	put8(&outer, 4 * (PCI_NR_SLOTS - 1));	/* NumElements */
	for (unsigned int slot = 1; slot < PCI_NR_SLOTS; slot++) {
		for (unsigned int pin = 0; pin < 4; pin++) {
			struct aml e = { 0 };

			put8(&e, 4);
			put_int(&e, (uint64_t)slot << 16 | 0xffff);	/* any function */
			put_int(&e, pin);
			put_int(&e, 0);		/* Source: none -> SourceIndex is a GSI */
			put_int(&e, pci_intx_gsi(slot, pin));
			put_pkg(&outer, &pkg_op, 1, &e);
		}
	}
	put8(a, 0x08);
	put(a, "_PRT", 4);
	put_pkg(a, &pkg_op, 1, &outer);
}

static size_t finish(struct aml *a, uint8_t *buf, size_t cap)
{
	size_t len = a->oom ? (size_t)-1 : a->len;

	if (!a->oom && len <= cap)
		memcpy(buf, a->p, len);
	free(a->p);
	return len;
}

size_t pci_acpi_dsdt(const struct pci_bus *pb, uint8_t *buf, size_t cap)
{
	static const uint8_t scope_op = 0x10, dev_op[2] = { 0x5b, 0x82 }, method_op = 0x14;
	struct aml sb = { 0 }, pci0 = { 0 }, osc = { 0 }, pres = { 0 }, res = { 0 }, out = { 0 };

	/* Device (PCI0) */
	put(&pci0, "PCI0", 4);
	put_name_eisa(&pci0, "_HID", "PNP0A08");	/* PCI Express root bridge */
	put_name_eisa(&pci0, "_CID", "PNP0A03");	/* PCI root bridge */
	put_name_int(&pci0, "_SEG", 0);
	put_name_int(&pci0, "_BBN", 0);
	put_name_int(&pci0, "_UID", 0);
	put_pci0_crs(&pci0, pb);
	put_prt(&pci0);
	/*
	 * Method (_OSC, 4) { Return (Arg3) }: grant whatever the OS asks for. There is no
	 * hotplug, AER or PME hardware to hand over, and without _OSC Linux logs a failure
	 * and disables ASPM handling.
	 */
	put(&osc, "_OSC", 4);
	put8(&osc, 0x04);		/* 4 args, NotSerialized */
	put8(&osc, 0xa4);		/* ReturnOp */
	put8(&osc, 0x6b);		/* Arg3 */
	put_pkg(&pci0, &method_op, 1, &osc);

	/* Device (PRES): ECAM as a motherboard resource */
	put(&pres, "PRES", 4);
	put_name_eisa(&pres, "_HID", "PNP0C02");
	put_name_int(&pres, "_UID", 1);
	put8(&res, 0x86);		/* Memory32Fixed, ReadWrite */
	put_le(&res, 9, 2);
	put8(&res, 0x01);
	put_le(&res, LAYOUT_PCI_ECAM_BASE, 4);
	put_le(&res, LAYOUT_PCI_ECAM_SIZE, 4);
	put_name_restemplate(&pres, "_CRS", &res);

	/* Scope (\_SB) { PCI0, PRES } */
	put8(&sb, '\\');
	put(&sb, "_SB_", 4);
	put_pkg(&sb, dev_op, 2, &pci0);
	put_pkg(&sb, dev_op, 2, &pres);
	put_pkg(&out, &scope_op, 1, &sb);
	return finish(&out, buf, cap);
}

size_t pci_acpi_mcfg(const struct pci_bus *pb, uint8_t *buf, size_t cap)
{
	struct aml t = { 0 };
	uint8_t sum = 0;
	size_t len;

	(void)pb;
	put(&t, "MCFG", 4);
	put_le(&t, 60, 4);		/* length */
	put8(&t, 1);			/* revision */
	put8(&t, 0);			/* checksum, below */
	put(&t, "VMCTL ", 6);
	put(&t, "VMCTLPCI", 8);
	put_le(&t, 1, 4);		/* OEM revision */
	put(&t, "VMCT", 4);
	put_le(&t, 1, 4);		/* creator revision */
	put_le(&t, 0, 8);		/* reserved */
	put_le(&t, LAYOUT_PCI_ECAM_BASE, 8);
	put_le(&t, 0, 2);		/* segment */
	put8(&t, 0);			/* start bus */
	put8(&t, (uint8_t)(LAYOUT_PCI_ECAM_SIZE / MIB - 1));	/* end bus: 1 MiB per bus */
	put_le(&t, 0, 4);
	if (!t.oom) {
		for (size_t i = 0; i < t.len; i++)
			sum = (uint8_t)(sum + t.p[i]);
		t.p[9] = (uint8_t)-sum;
	}
	len = finish(&t, buf, cap);
	return len;
}
