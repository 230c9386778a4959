/* SPDX-License-Identifier: MIT */
/* Shared between pci/config.c and pci/host.c only. Callers hold pci_bus.lock for writing
 * (or own the device exclusively before registration). */
#ifndef VMM_PCI_PCI_INTERNAL_H
#define VMM_PCI_PCI_INTERNAL_H

#include "vmm/pci/pci.h"

uint32_t pci_device_cfg_read(struct pci_device *d, uint32_t off, uint32_t len);
void     pci_device_cfg_write(struct pci_device *d, uint32_t off, uint32_t len, uint32_t val);
void     pci_device_update_bars_locked(struct pci_device *d);
void     pci_bar_set_addr(struct pci_device *d, unsigned int i, uint64_t addr);

#endif
