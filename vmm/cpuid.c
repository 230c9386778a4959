// SPDX-License-Identifier: MIT
/*
 * Guest CPUID. Start from what KVM can virtualise on this host (KVM_GET_SUPPORTED_CPUID) and
 * make the topology consistent for one socket of @nr_cpus cores with one thread each, APIC
 * id = vCPU index: leaf 1 (initial APIC id, logical count, HTT), leaf 4 (cores per package,
 * Intel), leaves 0xB/0x1F (x2APIC topology), 0x80000008/0x80000001 (AMD core count,
 * CmpLegacy). The hypervisor bit is set and KVM's 0x40000000 leaves are kept so the guest
 * uses kvmclock and the paravirtual features KVM offers.
 */
#define LOG_TAG "cpuid"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/kvm.h"
#include "vmm/lib/log.h"
#include "vmm/vcpu.h"

int cpuid_get_supported(int sys_fd, struct kvm_cpuid2 **out)
{
	unsigned int nent = 64;
	struct kvm_cpuid2 *c;
	int ret;

	for (;;) {
		c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = nent;
		ret = kvm_ioctl(sys_fd, KVM_GET_SUPPORTED_CPUID, c);
		if (ret >= 0)
			break;
		free(c);
		if (ret != -E2BIG || nent >= 4096) {
			log_err("KVM_GET_SUPPORTED_CPUID: %s", strerror(-ret));
			return ret;
		}
		nent *= 2;
	}
	*out = c;
	return 0;
}

bool cpuid_has_edx1(const struct kvm_cpuid2 *c, unsigned int bit)
{
	unsigned int i;

	for (i = 0; i < c->nent; i++)
		if (c->entries[i].function == 1)
			return c->entries[i].edx & (1u << bit);
	return false;
}

void cpuid_set_ecx1(struct kvm_cpuid2 *c, unsigned int bit)
{
	unsigned int i;

	for (i = 0; i < c->nent; i++)
		if (c->entries[i].function == 1)
			c->entries[i].ecx |= 1u << bit;
}

/* Smallest shift with (1 << shift) >= n. */
static unsigned int order(unsigned int n)
{
	unsigned int s = 0;

	while ((1u << s) < n)
		s++;
	return s;
}

static bool vendor_is_amd(const struct kvm_cpuid2 *c)
{
	unsigned int i;

	for (i = 0; i < c->nent; i++)
		if (c->entries[i].function == 0)
			return c->entries[i].ebx == 0x68747541;	/* "Auth" enticAMD */
	return false;
}

/* Leaves 0xB and 0x1F: SMT level (1 thread) then core level (@nr_cpus), then invalid. */
static void topo_leaf(struct kvm_cpuid_entry2 *e, unsigned int apic_id, unsigned int nr_cpus)
{
	unsigned int level = e->index;

	e->edx = apic_id;
	switch (level) {
	case 0:
		e->eax = 0;
		e->ebx = 1;
		e->ecx = (1u << 8) | level;
		break;
	case 1:
		e->eax = order(nr_cpus);
		e->ebx = nr_cpus;
		e->ecx = (2u << 8) | level;
		break;
	default:
		e->eax = 0;
		e->ebx = 0;
		e->ecx = level;
		break;
	}
}

void cpuid_patch(struct kvm_cpuid2 *c, unsigned int apic_id, unsigned int nr_cpus)
{
	bool amd = vendor_is_amd(c);
	unsigned int i;

	for (i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			/* EBX: [31:24] initial APIC id, [23:16] logical processors, [15:8] CLFLUSH. */
			e->ebx = (apic_id << 24) | ((nr_cpus > 1 ? (1u << order(nr_cpus)) : 1) << 16) |
				 (8u << 8);
			if (nr_cpus > 1)
				e->edx |= 1u << 28;		/* HTT: the count field is valid */
			else
				e->edx &= ~(1u << 28);
			e->ecx |= 1u << 31;			/* running under a hypervisor */
			break;
		case 4:
			/* EAX[31:26]: cores per package - 1; [25:14]: threads sharing the cache - 1. */
			if (amd)
				break;
			e->eax &= 0x3fff;
			e->eax |= ((1u << order(nr_cpus)) - 1) << 26;
			if ((e->eax & 0xe0) == 0x60)		/* L3 is shared by the package */
				e->eax |= ((1u << order(nr_cpus)) - 1) << 14;
			break;
		case 7:
			/*
			 * No protection keys: nested hosts (the test host's KVM on TCG) report PKRU
			 * at a standard-format offset past XSAVE state they do not offer, and the
			 * guest then warns "XSAVE consistency problem". Nothing we run needs PKU.
			 */
			if (e->index == 0)
				e->ecx &= ~((1u << 3) | (1u << 4));	/* PKU, OSPKE */
			break;
		case 0xd:
			if (e->index == 0)
				e->eax &= ~(1u << 9);			/* XCR0.PKRU */
			else if (e->index == 9)
				e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 0xb:
		case 0x1f:
			topo_leaf(e, apic_id, nr_cpus);
			break;
		case 0x80000001:
			if (amd && nr_cpus > 1)
				e->ecx |= 1u << 1;		/* CmpLegacy: HTT count = cores */
			break;
		case 0x80000008:
			if (amd) {
				/* ECX[15:12] APIC id bits for the core, [7:0] cores - 1. */
				e->ecx = (order(nr_cpus) << 12) | (nr_cpus - 1);
			}
			break;
		case 0x8000001e:
			if (amd) {
				e->eax = apic_id;		/* extended APIC id */
				e->ebx = apic_id;		/* core id, 1 thread per core */
				e->ecx = 0;			/* node 0, 1 node per package */
			}
			break;
		}
	}
}
