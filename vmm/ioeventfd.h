/* SPDX-License-Identifier: MIT */
/*
 * KVM_IOEVENTFD registration: a guest write to an address (a virtio notify register) signals
 * an eventfd inside KVM, without an exit to user space; the main loop polls the eventfd.
 * So a queue kick costs the vCPU no trip through the vmm, and the device work runs on the
 * main loop, never on the vCPU thread.
 *
 * Threading: any thread. KVM serialises registrations itself (kvm->slots_lock).
 */
#ifndef VMM_IOEVENTFD_H
#define VMM_IOEVENTFD_H

#include <stdbool.h>
#include <stdint.h>

struct ioeventfd {
	uint64_t addr;
	uint32_t len;		/* 1, 2, 4 or 8; 0 = any length (KVM_CAP_IOEVENTFD_ANY_LENGTH, MMIO) */
	int fd;			/* the eventfd, owned by the caller */
	bool pio;		/* port I/O instead of MMIO */
	bool datamatch;		/* only writes of @data signal */
	uint64_t data;
	bool active;		/* registered with KVM right now */
};

/* Register @ev with KVM. 0 or -errno (logged). No-op if already active. */
int ioeventfd_assign(int vm_fd, struct ioeventfd *ev);
/* Unregister; no-op if not active. 0 or -errno (logged). */
int ioeventfd_deassign(int vm_fd, struct ioeventfd *ev);

#endif
