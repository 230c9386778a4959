/* SPDX-License-Identifier: MIT */
/*
 * virtio-pci modern transport (virtio 1.2 §4.1): wraps a struct virtio_dev (virtio.h) into a
 * PCI function with vendor 0x1af4, device 0x1040 + type, revision 1, and one 64-bit memory
 * BAR (BAR0) holding, at fixed offsets:
 *   0x0000 common configuration   (VIRTIO_PCI_CAP_COMMON_CFG)
 *   0x1000 ISR status             (VIRTIO_PCI_CAP_ISR_CFG)
 *   0x2000 device configuration   (VIRTIO_PCI_CAP_DEVICE_CFG)
 *   0x3000 notify area, 4 bytes per queue (VIRTIO_PCI_CAP_NOTIFY_CFG, multiplier 4)
 *   then   MSI-X table and PBA (nr_vqs + 1 vectors: one per queue + config)
 * Each queue's notify address has an ioeventfd (KVM_IOEVENTFD, moved with the BAR) that the
 * main loop polls; a notify write that still traps (no ioeventfd, or an unexpected width)
 * signals the same eventfd from the vCPU thread, so queue work always runs on the main loop.
 *
 * plus a VIRTIO_PCI_CAP_PCI_CFG window (BAR0 reached through configuration space).
 * Not implemented: legacy/transitional interfaces, VIRTIO_F_NOTIFICATION_DATA,
 * VIRTIO_F_RING_RESET, shared memory regions.
 */
#ifndef VMM_VIRTIO_PCI_H
#define VMM_VIRTIO_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/ioeventfd.h"
#include "vmm/lib/evloop.h"
#include "vmm/pci/msix.h"
#include "vmm/pci/pci.h"
#include "vmm/virtio/virtio.h"

#define VIRTIO_PCI_VENDOR		0x1af4
#define VIRTIO_PCI_DEVICE_BASE		0x1040
#define VIRTIO_PCI_SUBSYS_ID		0x1100

#define VIRTIO_PCI_COMMON_OFF		0x0000
#define VIRTIO_PCI_COMMON_LEN		0x003c	/* through queue_reset (1.2) */
#define VIRTIO_PCI_ISR_OFF		0x1000
#define VIRTIO_PCI_DEVCFG_OFF		0x2000
#define VIRTIO_PCI_DEVCFG_MAX		0x1000
#define VIRTIO_PCI_NOTIFY_OFF		0x3000
#define VIRTIO_PCI_NOTIFY_MULT		4

/* Transport feature bits we offer on top of the device's. */
#define VIRTIO_PCI_TRANSPORT_FEATURES	(1ull << VIRTIO_F_VERSION_1)

struct virtio_pci_env {
	struct pci_bus *pci;
	struct irq *irq;
	struct evloop *loop;		/* NULL: notifications are not polled (unit tests) */
	int vm_fd;			/* -1: no ioeventfds (unit tests) */
	uint32_t class_code;		/* 24-bit PCI class; 0 = 0xff0000 ("other") */
};

struct virtio_pci_notify {
	struct virtio_pci *vp;
	unsigned int q;
	struct ioeventfd ioev;		/* fd = the eventfd the main loop polls */
	struct ev_req req;
	uint64_t kicks;
};

struct virtio_pci {
	struct pci_device pci;
	struct msix msix;
	struct virtio_dev *vd;
	struct virtio_pci_env env;
	uint32_t bar_size, msix_table_off, msix_pba_off;
	uint8_t pci_cfg_cap;		/* offset of the VIRTIO_PCI_CAP_PCI_CFG capability */

	/* common configuration registers; under vd->lock */
	uint32_t dev_feature_sel, drv_feature_sel;
	uint64_t driver_features;	/* what the driver wrote (acked at FEATURES_OK) */
	uint16_t config_vector, queue_sel;
	uint8_t isr;			/* bit 0 queue, bit 1 config; read clears */

	struct virtio_pci_notify notify[VIRTIO_MAX_QUEUES];
};

/*
 * Wrap @vd (id, device_type, ops, nr_vqs with vqs[].max_size, config_len, mem filled) into a
 * virtio-pci function and register it on env->pci (next free slot, BARs placed), start
 * polling its queue eventfds on env->loop. Main thread, before vCPUs run. 0 or -errno.
 */
int  virtio_pci_add(const struct virtio_pci_env *env, struct virtio_dev *vd, struct virtio_pci **out);
/* Unregister and free. vCPUs stopped; the loop must not be running (or run it to drain). */
void virtio_pci_remove(struct virtio_pci *vp);

/*
 * Process pending kicks of queue @q as the main loop does after its eventfd fired (public for
 * tests and for post_load re-kicks). Main loop.
 */
void virtio_pci_kick(struct virtio_pci *vp, unsigned int q);

/* BAR0 register access (what the guest's MMIO reaches); public for tests. vCPU thread. */
void virtio_pci_bar_read(void *opaque, uint64_t off, void *data, uint32_t len);
void virtio_pci_bar_write(void *opaque, uint64_t off, const void *data, uint32_t len);

/* ---- state (migration): plain struct, serialised field by field by the state stream ---- */
struct virtio_pci_queue_state {
	uint16_t size, msix_vector;
	uint8_t enabled;
	uint64_t desc, driver, device;
};

struct virtio_pci_state {
	struct pci_device_state pci;	/* config space: BAR addresses, COMMAND, MSI-X control */
	struct msix_state msix;
	uint8_t status, isr, config_generation;
	uint32_t dev_feature_sel, drv_feature_sel;
	uint64_t driver_features, acked_features;
	uint16_t config_vector, queue_sel;
	uint16_t nr_vqs;
	struct virtio_pci_queue_state q[VIRTIO_MAX_QUEUES];
};

/* vCPUs paused. The device's own state is the device's (its state_ops). */
void virtio_pci_save(struct virtio_pci *vp, struct virtio_pci_state *st);
/*
 * Validate and apply @st (untrusted): queue count, sizes, features subset of what this build
 * offers. Then, if the device was active, calls ops->activate(). vCPUs paused. 0 or -EINVAL.
 */
int  virtio_pci_load(struct virtio_pci *vp, const struct virtio_pci_state *st);

#endif
