// SPDX-License-Identifier: MIT
/*
 * Model-specific registers a vCPU starts with. Only MSRs that KVM lists in
 * KVM_GET_MSR_INDEX_LIST are written, so an older or different KVM never gets an MSR it
 * would reject (a failed KVM_SET_MSRS stops at the first bad entry).
 */
#define LOG_TAG "msr"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/kvm.h"
#include "vmm/lib/log.h"
#include "vmm/vcpu.h"

#define MSR_IA32_SYSENTER_CS	0x174
#define MSR_IA32_SYSENTER_ESP	0x175
#define MSR_IA32_SYSENTER_EIP	0x176
#define MSR_IA32_MISC_ENABLE	0x1a0
#define MSR_MTRR_DEF_TYPE	0x2ff
#define MSR_IA32_CR_PAT		0x277
#define MSR_STAR		0xc0000081
#define MSR_LSTAR		0xc0000082
#define MSR_CSTAR		0xc0000083
#define MSR_SYSCALL_MASK	0xc0000084
#define MSR_KERNEL_GS_BASE	0xc0000102
#define MSR_IA32_TSC		0x10

static const struct {
	uint32_t index;
	uint64_t value;
} boot_msrs[] = {
	{ MSR_IA32_SYSENTER_CS, 0 },
	{ MSR_IA32_SYSENTER_ESP, 0 },
	{ MSR_IA32_SYSENTER_EIP, 0 },
	{ MSR_STAR, 0 },
	{ MSR_LSTAR, 0 },
	{ MSR_CSTAR, 0 },
	{ MSR_SYSCALL_MASK, 0 },
	{ MSR_KERNEL_GS_BASE, 0 },
	{ MSR_IA32_MISC_ENABLE, 1 },			/* fast-string operations enabled */
	{ MSR_IA32_CR_PAT, 0x0007040600070406ull },	/* the architectural reset value */
};

/*
 * MTRRs on, write-back as the default type: what firmware leaves for an OS (without it Linux
 * logs "MTRRs disabled, skipping PAT initialization" and loses write-combining). KVM does not
 * list the MTRR MSRs in KVM_GET_MSR_INDEX_LIST (QEMU saves them by name), but emulates them
 * for every guest whose CPUID has MTRR, so this one is written when CPUID.1:EDX.MTRR is set.
 */
#define MTRR_DEF_TYPE_BOOT	((1u << 11) | 6)

bool msr_boot_value(uint32_t index, uint64_t *val)
{
	unsigned int i;

	if (index == MSR_MTRR_DEF_TYPE) {
		*val = MTRR_DEF_TYPE_BOOT;
		return true;
	}
	for (i = 0; i < sizeof(boot_msrs) / sizeof(boot_msrs[0]); i++)
		if (boot_msrs[i].index == index) {
			*val = boot_msrs[i].value;
			return true;
		}
	return false;
}

int msr_list_get(int sys_fd, struct kvm_msr_list **out)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *l;
	int ret;

	/* The first call fails with E2BIG and reports how many there are. */
	ret = kvm_ioctl(sys_fd, KVM_GET_MSR_INDEX_LIST, &probe);
	if (ret < 0 && ret != -E2BIG) {
		log_err("KVM_GET_MSR_INDEX_LIST: %s", strerror(-ret));
		return ret;
	}
	l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(l->indices[0]));
	if (!l)
		return -ENOMEM;
	l->nmsrs = probe.nmsrs;
	ret = kvm_ioctl(sys_fd, KVM_GET_MSR_INDEX_LIST, l);
	if (ret < 0) {
		log_err("KVM_GET_MSR_INDEX_LIST: %s", strerror(-ret));
		free(l);
		return ret;
	}
	*out = l;
	return 0;
}

static bool listed(const struct kvm_msr_list *list, uint32_t index)
{
	unsigned int i;

	for (i = 0; i < list->nmsrs; i++)
		if (list->indices[i] == index)
			return true;
	return false;
}

int msr_init(int vcpu_fd, const struct kvm_msr_list *list, bool mtrr)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[sizeof(boot_msrs) / sizeof(boot_msrs[0]) + 1];
	} m;
	unsigned int i, n = 0;
	int ret;

	memset(&m, 0, sizeof(m));
	for (i = 0; i < sizeof(boot_msrs) / sizeof(boot_msrs[0]); i++) {
		if (!listed(list, boot_msrs[i].index))
			continue;
		m.e[n].index = boot_msrs[i].index;
		m.e[n].data = boot_msrs[i].value;
		n++;
	}
	if (mtrr) {
		m.e[n].index = MSR_MTRR_DEF_TYPE;
		m.e[n].data = MTRR_DEF_TYPE_BOOT;
		n++;
	}
	m.hdr.nmsrs = n;
	ret = kvm_ioctl(vcpu_fd, KVM_SET_MSRS, &m);
	if (ret < 0) {
		log_err("KVM_SET_MSRS: %s", strerror(-ret));
		return ret;
	}
	if ((unsigned int)ret != n) {
		log_err("KVM_SET_MSRS: KVM refused MSR 0x%x", m.e[ret].index);
		return -EINVAL;
	}
	return 0;
}
