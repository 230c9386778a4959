// SPDX-License-Identifier: MIT
/*
 * ACPI description of the PCI host (ACPI 6.5 §6.1-6.2; PCI Firmware 3.2 §4.1 MCFG), written
 * with the platform's AML writer and table builder (vmm/acpi/): the DSDT's PCI0 root bridge
 * with its resource windows and INTx routing (_PRT), a motherboard-resource device reserving
 * the ECAM range (Linux ignores MMCONFIG space it cannot see reserved), and MCFG.
 */
#define LOG_TAG "pci-acpi"
#include <string.h>

#include "vmm/acpi/acpi.h"
#include "vmm/layout.h"
#include "vmm/lib/log.h"
#include "vmm/pci/pci.h"

static void pci0_crs(struct aml *a, const struct pci_bus *pb)
{
	aml_name_begin(a, "_CRS");
	aml_restemplate_begin(a);
	aml_res_word_bus(a, 0, PCI_ECAM_LAST_BUS);		/* = what MCFG covers */
	aml_res_io(a, PCI_CONF1_ADDR_PORT, PCI_CONF1_ADDR_PORT, 1, 8);
	aml_res_word_io(a, 0x0000, 0x0cf7);
	aml_res_word_io(a, 0x0d00, 0xffff);
	aml_res_dword_mem(a, (uint32_t)pb->mmio32.base,
			  (uint32_t)(pb->mmio32.base + pb->mmio32.size - 1), 0);
	aml_res_qword_mem(a, pb->mmio64.base, pb->mmio64.base + pb->mmio64.size - 1, 1);
	aml_restemplate_end(a);
}

/* _PRT: Package { Package { slot << 16 | 0xFFFF, pin, 0 (no link: GSI), GSI } ... } */
static void pci0_prt(struct aml *a)
{
	aml_name_begin(a, "_PRT");
	aml_package_begin(a, 4 * (PCI_NR_SLOTS - 1));
	for (unsigned int slot = 1; slot < PCI_NR_SLOTS; slot++) {
		for (unsigned int pin = 0; pin < 4; pin++) {
			aml_package_begin(a, 4);
			aml_int(a, (uint64_t)slot << 16 | 0xffff);
			aml_int(a, pin);
			aml_int(a, 0);
			aml_int(a, pci_intx_gsi(slot, pin));
			aml_end(a);
		}
	}
	aml_end(a);
}

void pci_acpi_dsdt_aml(const struct pci_bus *pb, struct aml *a)
{
	aml_scope_begin(a, "\\_SB_");

	aml_device_begin(a, "PCI0");
	aml_name_eisaid(a, "_HID", "PNP0A08");		/* PCI Express root bridge */
	aml_name_eisaid(a, "_CID", "PNP0A03");		/* PCI root bridge */
	aml_name_int(a, "_SEG", 0);
	aml_name_int(a, "_BBN", 0);
	aml_name_int(a, "_UID", 0);
	pci0_crs(a, pb);
	pci0_prt(a);
	/*
	 * Method (_OSC, 4) { Return (Arg3) }: grant what the OS asks for. There is no hotplug,
	 * AER or PME hardware to hand over, and without _OSC Linux logs a failure.
	 */
	aml_method_begin(a, "_OSC", 4, 0);
	aml_return(a);
	aml_arg(a, 3);
	aml_end(a);
	aml_end(a);

	aml_device_begin(a, "PRES");
	aml_name_eisaid(a, "_HID", "PNP0C02");		/* motherboard resources */
	aml_name_int(a, "_UID", 1);
	aml_name_begin(a, "_CRS");
	aml_restemplate_begin(a);
	aml_res_mem32_fixed(a, (uint32_t)LAYOUT_PCI_ECAM_BASE, (uint32_t)LAYOUT_PCI_ECAM_SIZE);
	aml_restemplate_end(a);
	aml_end(a);

	aml_end(a);
}

void pci_acpi_mcfg(struct acpi_mcfg *mcfg)
{
	memset(mcfg, 0, sizeof(*mcfg));
	acpi_header_init(&mcfg->hdr, "MCFG", sizeof(*mcfg), 1);
	mcfg->alloc[0].base = LAYOUT_PCI_ECAM_BASE;
	mcfg->alloc[0].segment = 0;
	mcfg->alloc[0].start_bus = 0;
	mcfg->alloc[0].end_bus = PCI_ECAM_LAST_BUS;
}

int pci_acpi_contribute(const struct pci_bus *pb, struct acpi *acpi)
{
	struct acpi_mcfg mcfg;
	struct aml a;
	int ret;

	aml_init(&a);
	pci_acpi_dsdt_aml(pb, &a);
	ret = aml_error(&a);
	if (ret == 0)
		ret = acpi_dsdt_append(acpi, &a);
	aml_free(&a);
	if (ret == 0) {
		pci_acpi_mcfg(&mcfg);
		ret = acpi_add_table(acpi, &mcfg, sizeof(mcfg));
	}
	if (ret < 0)
		log_err("cannot add the PCI host to the ACPI tables: %s", strerror(-ret));
	return ret;
}
