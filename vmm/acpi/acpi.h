/* SPDX-License-Identifier: MIT */
/*
 * ACPI table builder. Collects what the platform and other modules contribute (DSDT AML,
 * extra tables such as MCFG) and lays the tables out in one guest-physical window:
 *
 *   base+0x000  RSDP (v2, 36 bytes, 16-byte aligned, so the kernel's 0xE0000..0xFFFFF scan finds it)
 *   then        XSDT, FADT, FACS (64-byte aligned), MADT, DSDT, extra tables in add order
 *
 * Every table's header checksum (and the RSDP's two checksums) is computed by the builder
 * when the tables are written; contributed tables need only a correct length.
 *
 * Contract for other modules (PCI, later devices): build before platform_write_acpi():
 *	struct acpi *acpi = platform_acpi(p);
 *	struct aml a;
 *	aml_init(&a); ... write e.g. Scope(\_SB) { Device(PCI0) {...} } ...
 *	ret = acpi_dsdt_append(acpi, &a);	// copies the AML, appended at the DSDT's root
 *	aml_free(&a);
 *	struct acpi_mcfg mcfg = {...}; acpi_header_init(&mcfg.hdr, "MCFG", sizeof(mcfg), 1);
 *	ret = acpi_add_table(acpi, &mcfg, sizeof(mcfg));	// copied, listed in the XSDT
 *
 * All multi-byte fields are little-endian (x86 only, so host order).
 * Threading: start-up only, one thread.
 */
#ifndef VMM_ACPI_ACPI_H
#define VMM_ACPI_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/acpi/aml.h"

/* A contributed table larger than this is a bug in the contributor. */
#define ACPI_TABLE_MAX	(64u * 1024)

#define ACPI_OEM_ID		"VMCTL "	/* 6 bytes */
#define ACPI_OEM_TABLE_ID	"VMCTLVMM"	/* 8 bytes */
#define ACPI_OEM_REVISION	1
#define ACPI_CREATOR_ID		"VMCT"
#define ACPI_CREATOR_REVISION	1

struct acpi_header {
	char     signature[4];
	uint32_t length;
	uint8_t  revision;
	uint8_t  checksum;
	char     oem_id[6];
	char     oem_table_id[8];
	uint32_t oem_revision;
	char     creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_header) == 36, "ACPI header");

/* Generic Address Structure (ACPI 6.5 §5.2.3.2). */
struct acpi_gas {
	uint8_t  space_id;		/* 0 memory, 1 system I/O */
	uint8_t  bit_width;
	uint8_t  bit_offset;
	uint8_t  access_size;		/* 1 byte, 2 word, 3 dword, 4 qword */
	uint64_t address;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS");

#define ACPI_GAS_MEMORY		0
#define ACPI_GAS_IO		1

struct acpi_rsdp {
	char     signature[8];		/* "RSD PTR " */
	uint8_t  checksum;		/* first 20 bytes */
	char     oem_id[6];
	uint8_t  revision;		/* 2 = ACPI 2.0+ */
	uint32_t rsdt_address;
	uint32_t length;		/* 36 */
	uint64_t xsdt_address;
	uint8_t  extended_checksum;	/* all 36 bytes */
	uint8_t  reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP");

/* FADT revision 6 (ACPI 6.5 §5.2.9), 276 bytes. */
struct acpi_fadt {
	struct acpi_header hdr;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t  reserved0;
	uint8_t  preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t  acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
	uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk;
	uint32_t pm2_cnt_blk, pm_tmr_blk, gpe0_blk, gpe1_blk;
	uint8_t  pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len;
	uint8_t  gpe0_blk_len, gpe1_blk_len, gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat;
	uint16_t flush_size, flush_stride;
	uint8_t  duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t  reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t  reset_value;
	uint16_t arm_boot_arch;
	uint8_t  minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk, x_pm_tmr_blk, x_gpe0_blk, x_gpe1_blk;
	struct acpi_gas sleep_control_reg, sleep_status_reg;
	uint64_t hypervisor_vendor_id;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT rev 6");

/* FADT flags (ACPI 6.5 Table 5.10) */
#define ACPI_FADT_F_WBINVD		(1u << 0)
#define ACPI_FADT_F_PROC_C1		(1u << 2)
#define ACPI_FADT_F_PWR_BUTTON		(1u << 4)	/* set = NO fixed power button */
#define ACPI_FADT_F_SLP_BUTTON		(1u << 5)	/* set = NO fixed sleep button */
#define ACPI_FADT_F_FIX_RTC		(1u << 6)	/* set = RTC wake status not in fixed regs */
#define ACPI_FADT_F_TMR_VAL_EXT		(1u << 8)	/* 32-bit PM timer */
#define ACPI_FADT_F_RESET_REG_SUP	(1u << 10)
#define ACPI_FADT_F_HW_REDUCED		(1u << 20)
/* IA-PC boot architecture flags */
#define ACPI_FADT_BOOT_LEGACY_DEVICES	(1u << 0)
#define ACPI_FADT_BOOT_8042		(1u << 1)
#define ACPI_FADT_BOOT_NO_VGA		(1u << 2)
#define ACPI_FADT_BOOT_NO_CMOS_RTC	(1u << 5)

struct acpi_facs {
	char     signature[4];		/* "FACS" */
	uint32_t length;		/* 64 */
	uint32_t hardware_signature;
	uint32_t firmware_waking_vector;
	uint32_t global_lock;
	uint32_t flags;
	uint64_t x_firmware_waking_vector;
	uint8_t  version;		/* 2 */
	uint8_t  reserved[3];
	uint32_t ospm_flags;
	uint8_t  reserved2[24];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_facs) == 64, "FACS");

struct acpi_madt {
	struct acpi_header hdr;
	uint32_t lapic_address;
	uint32_t flags;			/* bit 0 PCAT_COMPAT: dual 8259s present */
} __attribute__((packed));

#define ACPI_MADT_LAPIC		0
#define ACPI_MADT_IOAPIC	1
#define ACPI_MADT_ISO		2
#define ACPI_MADT_LAPIC_NMI	4

struct acpi_madt_lapic {
	uint8_t  type, length;		/* 0, 8 */
	uint8_t  processor_uid;
	uint8_t  apic_id;
	uint32_t flags;			/* bit 0 enabled */
} __attribute__((packed));

struct acpi_madt_ioapic {
	uint8_t  type, length;		/* 1, 12 */
	uint8_t  ioapic_id;
	uint8_t  reserved;
	uint32_t address;
	uint32_t gsi_base;
} __attribute__((packed));

struct acpi_madt_iso {
	uint8_t  type, length;		/* 2, 10 */
	uint8_t  bus;			/* 0 = ISA */
	uint8_t  source;		/* ISA IRQ */
	uint32_t gsi;
	uint16_t flags;			/* MPS INTI flags: polarity bits 0-1, trigger bits 2-3 */
} __attribute__((packed));

struct acpi_madt_lapic_nmi {
	uint8_t  type, length;		/* 4, 6 */
	uint8_t  processor_uid;		/* 0xff = all */
	uint16_t flags;
	uint8_t  lint;
} __attribute__((packed));

#define ACPI_MPS_POLARITY_HIGH	0x1
#define ACPI_MPS_POLARITY_LOW	0x3
#define ACPI_MPS_TRIGGER_EDGE	(0x1 << 2)
#define ACPI_MPS_TRIGGER_LEVEL	(0x3 << 2)

/* MCFG (PCI Firmware spec 3.2 §4.1.2), one allocation: for the PCI module's convenience. */
struct acpi_mcfg {
	struct acpi_header hdr;
	uint64_t reserved;
	struct {
		uint64_t base;
		uint16_t segment;
		uint8_t  start_bus, end_bus;
		uint32_t reserved;
	} __attribute__((packed)) alloc[1];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_mcfg) == 60, "MCFG with one allocation");

/* What the fixed tables describe: filled by the platform from its devices and layout.h. */
struct acpi_platform_info {
	unsigned int nr_cpus;		/* LAPICs with APIC ids and UIDs 0..nr_cpus-1 */
	uint64_t lapic_base, ioapic_base;
	uint8_t  ioapic_id;
	uint16_t sci_irq;		/* ISA IRQ = GSI of the SCI (level, active high) */
	uint16_t pm1a_evt_port;		/* 4 bytes: status, enable */
	uint16_t pm1a_cnt_port;		/* 2 bytes */
	uint16_t pm_tmr_port;		/* 4 bytes, 32-bit counter at 3.579545 MHz; 0 = none */
	uint16_t reset_port;		/* 1 byte; the reset register */
	uint8_t  reset_value;
	uint8_t  slp_typ_s5;		/* SLP_TYP for \_S5 */
	uint8_t  rtc_century_index;	/* CMOS index of the century byte, 0 = none */
	uint16_t com1_port;
	uint8_t  com1_irq;
	uint16_t rtc_port;
	uint8_t  rtc_irq;
};

struct acpi;

/* 0 or -ENOMEM. */
int  acpi_create(struct acpi **out);
void acpi_destroy(struct acpi *a);

/* Fill signature, length, revision and the OEM fields of a header; checksum is left 0. */
void acpi_header_init(struct acpi_header *h, const char sig[4], uint32_t len, uint8_t rev);

/*
 * Add a table (copied) to be placed after the fixed tables and listed in the XSDT. @len must
 * equal the header's length field. The checksum is computed at write time.
 * 0, -EINVAL (bad length, or a signature the builder makes itself), -ENOMEM.
 */
int  acpi_add_table(struct acpi *a, const void *table, size_t len);
/* Append AML to the DSDT body, at the root scope (use absolute paths or Scope()). */
int  acpi_dsdt_append(struct acpi *a, const struct aml *aml);

/*
 * Lay out all tables for guest-physical @base into @buf (@size bytes, zeroed first).
 * *rsdp_off receives the RSDP's offset in @buf (0). 0, -ENOSPC if they do not fit,
 * -EINVAL for a bad @info (nr_cpus 0 or > 255), -ENOMEM, or an AML error.
 */
int  acpi_build(struct acpi *a, const struct acpi_platform_info *info, uint64_t base,
		void *buf, size_t size, size_t *rsdp_off, size_t *used);

/* Sum of @len bytes mod 256 (a valid table sums to 0). */
uint8_t acpi_checksum(const void *p, size_t len);

#endif
