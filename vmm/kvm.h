/* SPDX-License-Identifier: MIT */
/*
 * Thin layer over /dev/kvm: one ioctl wrapper (also the unit tests' mock point, linked with
 * -Wl,--wrap=kvm_ioctl), opening the system and VM file descriptors, and capability probing.
 * Nothing here knows about vCPUs, memory layout or devices.
 */
#ifndef VMM_KVM_H
#define VMM_KVM_H

#include <stdbool.h>
#include <linux/kvm.h>

struct kvm {
	int sys_fd;			/* /dev/kvm */
	int vm_fd;			/* KVM_CREATE_VM */
	int run_size;			/* KVM_GET_VCPU_MMAP_SIZE */
	int nr_vcpus;			/* KVM_CAP_NR_VCPUS: recommended maximum */
	int max_vcpus;			/* KVM_CAP_MAX_VCPUS: hard maximum */
};

/*
 * ioctl(fd, req, arg). Returns the ioctl's non-negative result or -errno. EINTR is retried,
 * except for KVM_RUN, whose EINTR is how a kicked vCPU leaves the guest (vcpu.c).
 */
int kvm_ioctl(int fd, unsigned long req, void *arg);

/*
 * Open @path (normally /dev/kvm), check the API version and the capabilities the monitor
 * needs, and create the VM. Logs one line and returns -errno on failure:
 * -ENOENT no device, -EACCES/-EPERM no permission, -ENOTSUP a required capability missing.
 */
int  kvm_open(struct kvm *k, const char *path);
void kvm_close(struct kvm *k);

/* KVM_CHECK_EXTENSION on the system fd: the capability's value (0 = absent). */
int  kvm_cap(const struct kvm *k, long cap);

#endif
