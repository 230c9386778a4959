/* SPDX-License-Identifier: MIT */
/*
 * Interrupt plumbing into the in-kernel irqchip: the KVM GSI routing table, irqfds, direct MSI
 * injection and INTx lines. No device logic lives here; devices reach it through pci/msix.c
 * (MSI-X vectors) and pci/config.c (INTx).
 *
 * KVM_SET_GSI_ROUTING replaces the whole table, so this module keeps the full table in user
 * space: the irqchip routes KVM installs by default when the irqchip is created (GSI 0-15 to
 * both PICs and the IOAPIC, 16-23 to the IOAPIC only; arch/x86/kvm/irq_comm.c) followed by
 * the MSI routes devices add. GSIs 0-23 are the IOAPIC pins; MSI routes get GSIs from
 * IRQ_FIRST_MSI_GSI up.
 *
 * Threading: every function may be called from any thread (vCPU threads when the guest writes
 * an MSI-X table entry, the main loop when a device signals). @lock is a leaf lock: nothing
 * else is taken while it is held, except the KVM ioctls themselves.
 */
#ifndef VMM_IRQ_H
#define VMM_IRQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define IRQ_NR_IOAPIC_PINS	24
#define IRQ_FIRST_MSI_GSI	IRQ_NR_IOAPIC_PINS
#define IRQ_DEFAULT_NR_GSIS	1024	/* if KVM_CAP_IRQ_ROUTING does not say */

struct kvm_irq_routing_entry;

struct irq {
	int vm_fd;
	pthread_mutex_t lock;			/* leaf; protects everything below */
	struct kvm_irq_routing_entry *routes;	/* irqchip defaults first, then MSI routes */
	unsigned int nr_routes, cap_routes;
	uint32_t nr_gsis;			/* GSIs are 0 .. nr_gsis-1 */
	uint64_t *gsi_used;			/* bitmap of allocated MSI GSIs */
	uint64_t commits;			/* KVM_SET_GSI_ROUTING calls made (tests, stats) */
};

/*
 * Set up the table with KVM's defaults for an x86 in-kernel irqchip. Does not call KVM (the
 * kernel already holds the same defaults after KVM_CREATE_IRQCHIP). @nr_gsis: the value of
 * KVM_CAP_IRQ_ROUTING (0 = IRQ_DEFAULT_NR_GSIS). 0 or -ENOMEM/-EINVAL.
 */
int  irq_init(struct irq *irq, int vm_fd, uint32_t nr_gsis);
void irq_destroy(struct irq *irq);

/*
 * Point irqchip GSI @gsi (< 24) at IOAPIC pin @pin instead of the default, e.g. GSI 0 -> pin 2
 * to match an interrupt source override for the PIT in the MADT. Commits. 0 or -errno.
 */
int  irq_route_ioapic(struct irq *irq, uint32_t gsi, uint32_t pin);

/* Reserve a GSI for an MSI route (no route yet). 0 and *gsi, or -ENOSPC. */
int  irq_msi_alloc(struct irq *irq, uint32_t *gsi);
/* Drop @gsi's route (committing if it had one) and free the GSI. */
void irq_msi_free(struct irq *irq, uint32_t gsi);
/* Add or replace the MSI route of an allocated @gsi and commit the table. 0 or -errno. */
int  irq_msi_set(struct irq *irq, uint32_t gsi, uint64_t addr, uint32_t data);

/*
 * KVM_IRQFD: writes to eventfd @efd inject @gsi. @resample_fd >= 0 makes it a level-triggered
 * irqfd (KVM_IRQFD_FLAG_RESAMPLE) whose line is lowered on EOI and @resample_fd signalled.
 */
int  irq_irqfd_assign(struct irq *irq, int efd, uint32_t gsi, int resample_fd);
int  irq_irqfd_deassign(struct irq *irq, int efd, uint32_t gsi);

/* KVM_SIGNAL_MSI: one MSI now, no route needed. 0 (also when the guest blocked it) or -errno. */
int  irq_signal_msi(struct irq *irq, uint64_t addr, uint32_t data);
/* KVM_IRQ_LINE: drive IOAPIC/PIC input @gsi (level-triggered INTx: 1 = asserted). */
int  irq_line(struct irq *irq, uint32_t gsi, bool level);

#endif
