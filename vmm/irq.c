// SPDX-License-Identifier: MIT
/*
 * KVM GSI routing, irqfd, MSI injection and INTx lines (see irq.h for the contract).
 * The routing table is rebuilt into one struct kvm_irq_routing on every commit: commits are
 * rare (the guest programming MSI-X vectors at driver load) and the table is small.
 */
#define LOG_TAG "irq"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/kvm.h>

#include "vmm/irq.h"
#include "vmm/kvm.h"
#include "vmm/lib/log.h"

static void route_irqchip(struct kvm_irq_routing_entry *e, uint32_t gsi, uint32_t chip, uint32_t pin)
{
	memset(e, 0, sizeof(*e));
	e->gsi = gsi;
	e->type = KVM_IRQ_ROUTING_IRQCHIP;
	e->u.irqchip.irqchip = chip;
	e->u.irqchip.pin = pin;
}

static int routes_reserve(struct irq *irq, unsigned int n)
{
	struct kvm_irq_routing_entry *r;
	unsigned int cap;

	if (irq->nr_routes + n <= irq->cap_routes)
		return 0;
	cap = irq->cap_routes ? irq->cap_routes * 2 : 64;
	while (cap < irq->nr_routes + n)
		cap *= 2;
	r = realloc(irq->routes, cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	irq->routes = r;
	irq->cap_routes = cap;
	return 0;
}

/* Push the whole table to KVM. Caller holds irq->lock. */
static int commit_locked(struct irq *irq)
{
	struct kvm_irq_routing *tbl;
	size_t sz = sizeof(*tbl) + irq->nr_routes * sizeof(tbl->entries[0]);
	int ret;

	tbl = calloc(1, sz);
	if (!tbl)
		return -ENOMEM;
	tbl->nr = irq->nr_routes;
	memcpy(tbl->entries, irq->routes, irq->nr_routes * sizeof(tbl->entries[0]));
	ret = kvm_ioctl(irq->vm_fd, KVM_SET_GSI_ROUTING, tbl);
	free(tbl);
	irq->commits++;
	if (ret < 0)
		log_err("KVM_SET_GSI_ROUTING (%u routes): %s", irq->nr_routes, strerror(-ret));
	return ret < 0 ? ret : 0;
}

int irq_init(struct irq *irq, int vm_fd, uint32_t nr_gsis)
{
	uint32_t i;
	int ret;

	memset(irq, 0, sizeof(*irq));
	irq->vm_fd = vm_fd;
	irq->nr_gsis = nr_gsis ? nr_gsis : IRQ_DEFAULT_NR_GSIS;
	if (irq->nr_gsis <= IRQ_FIRST_MSI_GSI)
		return -EINVAL;
	irq->gsi_used = calloc((irq->nr_gsis + 63) / 64, sizeof(uint64_t));
	if (!irq->gsi_used)
		return -ENOMEM;
	ret = routes_reserve(irq, 16 + IRQ_NR_IOAPIC_PINS);
	if (ret < 0) {
		free(irq->gsi_used);
		return ret;
	}
	/* The kernel's default x86 table (kvm_setup_default_irq_routing). */
	for (i = 0; i < IRQ_NR_IOAPIC_PINS; i++) {
		route_irqchip(&irq->routes[irq->nr_routes++], i, KVM_IRQCHIP_IOAPIC, i);
		if (i < 16)
			route_irqchip(&irq->routes[irq->nr_routes++], i,
				      i < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, i % 8);
	}
	for (i = 0; i < IRQ_FIRST_MSI_GSI; i++)
		irq->gsi_used[i / 64] |= 1ull << (i % 64);
	pthread_mutex_init(&irq->lock, NULL);
	return 0;
}

void irq_destroy(struct irq *irq)
{
	free(irq->routes);
	free(irq->gsi_used);
	pthread_mutex_destroy(&irq->lock);
	memset(irq, 0, sizeof(*irq));
	irq->vm_fd = -1;
}

int irq_route_ioapic(struct irq *irq, uint32_t gsi, uint32_t pin)
{
	unsigned int i;
	int ret = -ENOENT;

	if (gsi >= IRQ_NR_IOAPIC_PINS || pin >= IRQ_NR_IOAPIC_PINS)
		return -EINVAL;
	pthread_mutex_lock(&irq->lock);
	for (i = 0; i < irq->nr_routes; i++) {
		struct kvm_irq_routing_entry *e = &irq->routes[i];

		if (e->gsi == gsi && e->type == KVM_IRQ_ROUTING_IRQCHIP &&
		    e->u.irqchip.irqchip == KVM_IRQCHIP_IOAPIC) {
			e->u.irqchip.pin = pin;
			ret = commit_locked(irq);
			break;
		}
	}
	pthread_mutex_unlock(&irq->lock);
	return ret;
}

int irq_msi_alloc(struct irq *irq, uint32_t *gsi)
{
	uint32_t i;
	int ret = -ENOSPC;

	pthread_mutex_lock(&irq->lock);
	for (i = IRQ_FIRST_MSI_GSI; i < irq->nr_gsis; i++) {
		if (!(irq->gsi_used[i / 64] & (1ull << (i % 64)))) {
			irq->gsi_used[i / 64] |= 1ull << (i % 64);
			*gsi = i;
			ret = 0;
			break;
		}
	}
	pthread_mutex_unlock(&irq->lock);
	if (ret < 0)
		log_ratelimited(LOG_WARN, "out of GSIs for MSI routes (%u)", irq->nr_gsis);
	return ret;
}

/* Index of @gsi's MSI route, or -1. Caller holds the lock. */
static int find_msi_locked(const struct irq *irq, uint32_t gsi)
{
	unsigned int i;

	for (i = 0; i < irq->nr_routes; i++)
		if (irq->routes[i].gsi == gsi && irq->routes[i].type == KVM_IRQ_ROUTING_MSI)
			return (int)i;
	return -1;
}

void irq_msi_free(struct irq *irq, uint32_t gsi)
{
	int i;

	if (gsi < IRQ_FIRST_MSI_GSI || gsi >= irq->nr_gsis)
		return;
	pthread_mutex_lock(&irq->lock);
	i = find_msi_locked(irq, gsi);
	if (i >= 0) {
		irq->routes[i] = irq->routes[--irq->nr_routes];
		commit_locked(irq);
	}
	irq->gsi_used[gsi / 64] &= ~(1ull << (gsi % 64));
	pthread_mutex_unlock(&irq->lock);
}

int irq_msi_set(struct irq *irq, uint32_t gsi, uint64_t addr, uint32_t data)
{
	struct kvm_irq_routing_entry *e;
	int i, ret;

	if (gsi < IRQ_FIRST_MSI_GSI || gsi >= irq->nr_gsis)
		return -EINVAL;
	pthread_mutex_lock(&irq->lock);
	i = find_msi_locked(irq, gsi);
	if (i < 0) {
		ret = routes_reserve(irq, 1);
		if (ret < 0)
			goto out;
		i = (int)irq->nr_routes++;
	} else if (irq->routes[i].u.msi.address_lo == (uint32_t)addr &&
		   irq->routes[i].u.msi.address_hi == (uint32_t)(addr >> 32) &&
		   irq->routes[i].u.msi.data == data) {
		ret = 0;	/* unchanged: spare KVM a table swap (and its RCU grace period) */
		goto out;
	}
	e = &irq->routes[i];
	memset(e, 0, sizeof(*e));
	e->gsi = gsi;
	e->type = KVM_IRQ_ROUTING_MSI;
	e->u.msi.address_lo = (uint32_t)addr;
	e->u.msi.address_hi = (uint32_t)(addr >> 32);
	e->u.msi.data = data;
	ret = commit_locked(irq);
out:
	pthread_mutex_unlock(&irq->lock);
	return ret;
}

int irq_irqfd_assign(struct irq *irq, int efd, uint32_t gsi, int resample_fd)
{
	struct kvm_irqfd req = { .fd = (uint32_t)efd, .gsi = gsi };
	int ret;

	if (resample_fd >= 0) {
		req.flags = KVM_IRQFD_FLAG_RESAMPLE;
		req.resamplefd = (uint32_t)resample_fd;
	}
	ret = kvm_ioctl(irq->vm_fd, KVM_IRQFD, &req);
	if (ret < 0)
		log_err("KVM_IRQFD assign fd %d gsi %u: %s", efd, gsi, strerror(-ret));
	return ret < 0 ? ret : 0;
}

int irq_irqfd_deassign(struct irq *irq, int efd, uint32_t gsi)
{
	struct kvm_irqfd req = { .fd = (uint32_t)efd, .gsi = gsi, .flags = KVM_IRQFD_FLAG_DEASSIGN };
	int ret = kvm_ioctl(irq->vm_fd, KVM_IRQFD, &req);

	if (ret < 0)
		log_err("KVM_IRQFD deassign fd %d gsi %u: %s", efd, gsi, strerror(-ret));
	return ret < 0 ? ret : 0;
}

int irq_signal_msi(struct irq *irq, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = {
		.address_lo = (uint32_t)addr,
		.address_hi = (uint32_t)(addr >> 32),
		.data = data,
	};
	int ret = kvm_ioctl(irq->vm_fd, KVM_SIGNAL_MSI, &msi);

	if (ret < 0) {
		log_ratelimited(LOG_ERR, "KVM_SIGNAL_MSI addr 0x%llx data 0x%x: %s",
				(unsigned long long)addr, data, strerror(-ret));
		return ret;
	}
	return 0;
}

int irq_line(struct irq *irq, uint32_t gsi, bool level)
{
	struct kvm_irq_level l = { .irq = gsi, .level = level ? 1 : 0 };
	int ret = kvm_ioctl(irq->vm_fd, KVM_IRQ_LINE, &l);

	if (ret < 0) {
		log_ratelimited(LOG_ERR, "KVM_IRQ_LINE gsi %u level %d: %s", gsi, level, strerror(-ret));
		return ret;
	}
	return 0;
}
