// SPDX-License-Identifier: MIT
/*
 * /dev/kvm access (see kvm.h). kvm_ioctl() is the only place the monitor calls ioctl() on a
 * KVM file descriptor, so error conventions (-errno) and EINTR handling live in one spot and
 * unit tests can replace it with a mock.
 */
#define LOG_TAG "kvm"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/kvm.h"
#include "vmm/lib/log.h"

int kvm_ioctl(int fd, unsigned long req, void *arg)
{
	int ret;

	do {
		ret = ioctl(fd, req, arg);
	} while (ret < 0 && errno == EINTR && req != KVM_RUN);
	return ret < 0 ? -errno : ret;
}

int kvm_cap(const struct kvm *k, long cap)
{
	int ret = kvm_ioctl(k->sys_fd, KVM_CHECK_EXTENSION, (void *)cap);

	return ret < 0 ? 0 : ret;
}

/* Capabilities without which the monitor cannot run a guest the way it is built. */
static const struct {
	long cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_IRQCHIP, "in-kernel irqchip" },
	{ KVM_CAP_PIT2, "in-kernel PIT" },
	{ KVM_CAP_USER_MEMORY, "user memory regions" },
	{ KVM_CAP_SET_TSS_ADDR, "TSS address" },
	{ KVM_CAP_EXT_CPUID, "KVM_GET_SUPPORTED_CPUID" },
	{ KVM_CAP_IMMEDIATE_EXIT, "immediate_exit" },
	{ KVM_CAP_MP_STATE, "MP state" },
};

int kvm_open(struct kvm *k, const char *path)
{
	unsigned int i;
	int ret;

	memset(k, 0, sizeof(*k));
	k->vm_fd = -1;
	k->sys_fd = open(path, O_RDWR | O_CLOEXEC);
	if (k->sys_fd < 0) {
		ret = -errno;
		if (ret == -ENOENT)
			log_err("%s does not exist: this host has no KVM (load kvm_intel/kvm_amd, or run in a VM with nested virtualisation)", path);
		else if (ret == -EACCES || ret == -EPERM)
			log_err("cannot open %s: permission denied (run as root or join the 'kvm' group)", path);
		else
			log_err("cannot open %s: %s", path, strerror(-ret));
		return ret;
	}

	ret = kvm_ioctl(k->sys_fd, KVM_GET_API_VERSION, NULL);
	if (ret != KVM_API_VERSION) {
		log_err("%s: KVM API version %d, expected %d", path, ret, KVM_API_VERSION);
		ret = -ENOTSUP;
		goto err_close;
	}
	for (i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++) {
		if (!kvm_cap(k, required_caps[i].cap)) {
			log_err("%s lacks a required capability: %s", path, required_caps[i].name);
			ret = -ENOTSUP;
			goto err_close;
		}
	}
	k->nr_vcpus = kvm_cap(k, KVM_CAP_NR_VCPUS);
	k->max_vcpus = kvm_cap(k, KVM_CAP_MAX_VCPUS);
	if (k->nr_vcpus <= 0)
		k->nr_vcpus = 4;	/* documented default when the capability is absent */
	if (k->max_vcpus <= 0)
		k->max_vcpus = k->nr_vcpus;

	ret = kvm_ioctl(k->sys_fd, KVM_GET_VCPU_MMAP_SIZE, NULL);
	if (ret < 0) {
		log_err("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(-ret));
		goto err_close;
	}
	k->run_size = ret;

	ret = kvm_ioctl(k->sys_fd, KVM_CREATE_VM, 0);
	if (ret < 0) {
		log_err("KVM_CREATE_VM: %s", strerror(-ret));
		goto err_close;
	}
	k->vm_fd = ret;
	return 0;

err_close:
	close(k->sys_fd);
	k->sys_fd = -1;
	return ret;
}

void kvm_close(struct kvm *k)
{
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->sys_fd >= 0)
		close(k->sys_fd);
	k->vm_fd = k->sys_fd = -1;
}
