// SPDX-License-Identifier: MIT
/*
 * userfaultfd helpers for post-copy (see uffd.h for the contract and the ordering rule).
 */
#define LOG_TAG "mig-uffd"
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "migrate/uffd.h"
#include "vmm/lib/log.h"

#define UFFD_PAGE 4096u

int uffd_open(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MISSING_SHMEM };
	int fd, err;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		err = -errno;
		close(fd);
		/* EINVAL: a requested feature is unknown to this kernel. */
		return err == -EINVAL ? -EOPNOTSUPP : err;
	}
	if (!(api.features & UFFD_FEATURE_MISSING_SHMEM) ||
	    !(api.ioctls & (1ull << _UFFDIO_REGISTER))) {
		close(fd);
		return -EOPNOTSUPP;
	}
	return fd;
}

int uffd_register_missing(int uffd, void *addr, uint64_t len)
{
	struct uffdio_register r = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};

	if (((uintptr_t)addr | len) & (UFFD_PAGE - 1) || !len)
		return -EINVAL;
	if (ioctl(uffd, UFFDIO_REGISTER, &r) < 0)
		return -errno;
	if (!(r.ioctls & (1ull << _UFFDIO_COPY))) {
		uffd_unregister(uffd, addr, len);
		return -EOPNOTSUPP;
	}
	return 0;
}

int uffd_unregister(int uffd, void *addr, uint64_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ioctl(uffd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

int uffd_copy(int uffd, void *dst, const void *src, uint64_t len)
{
	uint64_t done = 0;

	if (((uintptr_t)dst | len) & (UFFD_PAGE - 1) || !len)
		return -EINVAL;
	while (done < len) {
		struct uffdio_copy c = {
			.dst = (uintptr_t)dst + done,
			.src = (uintptr_t)src + done,
			.len = len - done,
		};

		if (ioctl(uffd, UFFDIO_COPY, &c) == 0)
			return 0;
		/* c.copy: bytes copied before the error, or -errno. */
		if (c.copy > 0) {
			done += (uint64_t)c.copy;
			continue;
		}
		if (errno == EAGAIN)	/* mapping changing under us (e.g. unmap in progress) */
			continue;
		if (errno == EEXIST) {
			/* An earlier copy installed this page first; with a multi-page range
			 * skip it and keep going (the rest may still be missing). */
			if (len - done == UFFD_PAGE)
				return done ? 0 : 1;
			done += UFFD_PAGE;
			continue;
		}
		return -errno;
	}
	return 0;
}

int uffd_wait_fault(int uffd, int timeout_ms, uint64_t *addr)
{
	struct pollfd p = { .fd = uffd, .events = POLLIN };
	struct uffd_msg msg;
	ssize_t n;
	int r;

	r = poll(&p, 1, timeout_ms);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	if (r == 0)
		return 0;
	if (p.revents & (POLLERR | POLLNVAL))
		return -EBADF;
	n = read(uffd, &msg, sizeof(msg));
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	if (n != sizeof(msg) || msg.event != UFFD_EVENT_PAGEFAULT)
		return 0;
	*addr = msg.arg.pagefault.address & ~(uint64_t)(UFFD_PAGE - 1);
	return 1;
}

int uffd_probe(char *why, size_t whylen)
{
	void *p = MAP_FAILED;
	int uffd, mfd = -1, err;

	uffd = uffd_open();
	if (uffd < 0) {
		snprintf(why, whylen, "userfaultfd unavailable: %s%s", strerror(-uffd),
			 uffd == -EPERM ? " (vm.unprivileged_userfaultfd = 0 and not privileged)" :
			 uffd == -EOPNOTSUPP ? " (no MISSING faults on shmem: Linux < 4.11)" : "");
		return uffd;
	}
	mfd = memfd_create("vmm-uffd-probe", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, UFFD_PAGE) < 0) {
		err = -errno;
		snprintf(why, whylen, "memfd: %s", strerror(-err));
		goto out;
	}
	p = mmap(NULL, UFFD_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (p == MAP_FAILED) {
		err = -errno;
		snprintf(why, whylen, "mmap: %s", strerror(-err));
		goto out;
	}
	err = uffd_register_missing(uffd, p, UFFD_PAGE);
	if (err) {
		snprintf(why, whylen, "userfaultfd cannot register a memfd mapping: %s",
			 strerror(-err));
		goto out;
	}
	uffd_unregister(uffd, p, UFFD_PAGE);
	snprintf(why, whylen, "ok");
out:
	if (p != MAP_FAILED)
		munmap(p, UFFD_PAGE);
	if (mfd >= 0)
		close(mfd);
	close(uffd);
	return err;
}
