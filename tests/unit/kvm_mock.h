/* SPDX-License-Identifier: MIT */
/*
 * A recording mock of kvm_ioctl() for unit tests linked with -Wl,--wrap=kvm_ioctl: it keeps
 * the last GSI routing table, the irqfds, MSIs and IRQ lines it was given, and can be told to
 * fail one request type. Include in exactly one test file.
 */
#ifndef TESTS_UNIT_KVM_MOCK_H
#define TESTS_UNIT_KVM_MOCK_H

#include <errno.h>
#include <string.h>

#include <linux/kvm.h>

#define MOCK_MAX_ROUTES 256

static struct {
	unsigned int calls, set_routing, irqfd_assign, irqfd_deassign, signal_msi, irq_line;
	unsigned int ioeventfd_assign, ioeventfd_deassign;
	unsigned long fail_req;		/* this request fails with -EINVAL */
	unsigned int nr_routes;
	struct kvm_irq_routing_entry routes[MOCK_MAX_ROUTES];
	struct kvm_irqfd last_irqfd;
	struct kvm_msi last_msi;
	struct kvm_irq_level last_line;
	struct kvm_ioeventfd last_ioeventfd;
} mock;

int __wrap_kvm_ioctl(int fd, unsigned long req, void *arg);
int __wrap_kvm_ioctl(int fd, unsigned long req, void *arg)
{
	mock.calls++;
	if (req == mock.fail_req)
		return -EINVAL;
	switch (req) {
	case KVM_SET_GSI_ROUTING: {
		struct kvm_irq_routing *r = arg;

		mock.set_routing++;
		mock.nr_routes = r->nr < MOCK_MAX_ROUTES ? r->nr : MOCK_MAX_ROUTES;
		memcpy(mock.routes, r->entries, mock.nr_routes * sizeof(r->entries[0]));
		break;
	}
	case KVM_IRQFD:
		mock.last_irqfd = *(struct kvm_irqfd *)arg;
		if (mock.last_irqfd.flags & KVM_IRQFD_FLAG_DEASSIGN)
			mock.irqfd_deassign++;
		else
			mock.irqfd_assign++;
		break;
	case KVM_SIGNAL_MSI:
		mock.signal_msi++;
		mock.last_msi = *(struct kvm_msi *)arg;
		break;
	case KVM_IRQ_LINE:
		mock.irq_line++;
		mock.last_line = *(struct kvm_irq_level *)arg;
		break;
	case KVM_IOEVENTFD:
		mock.last_ioeventfd = *(struct kvm_ioeventfd *)arg;
		if (mock.last_ioeventfd.flags & KVM_IOEVENTFD_FLAG_DEASSIGN)
			mock.ioeventfd_deassign++;
		else
			mock.ioeventfd_assign++;
		break;
	default:
		return -ENOTTY;
	}
	return 0;
}

/* The MSI route for @gsi in the last table KVM was given, or NULL. */
static inline const struct kvm_irq_routing_entry *mock_msi_route(uint32_t gsi)
{
	for (unsigned int i = 0; i < mock.nr_routes; i++)
		if (mock.routes[i].gsi == gsi && mock.routes[i].type == KVM_IRQ_ROUTING_MSI)
			return &mock.routes[i];
	return NULL;
}

#endif
