// SPDX-License-Identifier: MIT
/* KVM_IOEVENTFD helpers (see ioeventfd.h). */
#define LOG_TAG "ioeventfd"
#include <errno.h>
#include <string.h>

#include <linux/kvm.h>

#include "vmm/ioeventfd.h"
#include "vmm/kvm.h"
#include "vmm/lib/log.h"

static int ioeventfd_ioctl(int vm_fd, const struct ioeventfd *ev, bool deassign)
{
	struct kvm_ioeventfd req = {
		.datamatch = ev->data,
		.addr = ev->addr,
		.len = ev->len,
		.fd = ev->fd,
	};
	int ret;

	if (ev->pio)
		req.flags |= KVM_IOEVENTFD_FLAG_PIO;
	if (ev->datamatch)
		req.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
	if (deassign)
		req.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	ret = kvm_ioctl(vm_fd, KVM_IOEVENTFD, &req);
	if (ret < 0)
		log_err("KVM_IOEVENTFD %s %s 0x%llx len %u: %s", deassign ? "deassign" : "assign",
			ev->pio ? "pio" : "mmio", (unsigned long long)ev->addr, ev->len, strerror(-ret));
	return ret < 0 ? ret : 0;
}

int ioeventfd_assign(int vm_fd, struct ioeventfd *ev)
{
	int ret;

	if (ev->active)
		return 0;
	ret = ioeventfd_ioctl(vm_fd, ev, false);
	if (ret == 0)
		ev->active = true;
	return ret;
}

int ioeventfd_deassign(int vm_fd, struct ioeventfd *ev)
{
	int ret;

	if (!ev->active)
		return 0;
	ret = ioeventfd_ioctl(vm_fd, ev, true);
	ev->active = false;	/* even on error: nothing sensible to retry */
	return ret;
}
