/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd building blocks for post-copy migration (issue 5 item 4; NOT wired into the
 * migration yet — `migrate {"policy":"post-copy"}` is still refused, see
 * docs/migration-protocol.md "Post-copy").
 *
 * On the destination, guest RAM (a memfd mapping, vmm/memory.h) is registered with
 * UFFDIO_REGISTER_MODE_MISSING: a vCPU (or the vmm) touching a page that was never filled
 * blocks until a fault thread installs the page with UFFDIO_COPY. For shmem/memfd this needs
 * Linux >= 4.11 (UFFD_FEATURE_MISSING_SHMEM); uffd_open() checks it.
 *
 * Ordering rule (why a stale copy can never overwrite a newer one): after switch-over the
 * source's memory is frozen, so every copy of a page (urgent answer or background stream)
 * carries the same bytes. UFFDIO_COPY installs a page only where none is present and fails
 * with -EEXIST otherwise; uffd_copy() reports that as 1 ("already present") and the caller
 * drops its copy. Pages are never written through the mapping before they are installed.
 */
#ifndef MIGRATE_UFFD_H
#define MIGRATE_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Open a userfaultfd (O_CLOEXEC | O_NONBLOCK) and negotiate the API with UFFD_FEATURE_MISSING_SHMEM. Returns the fd, or
 * -errno: -ENOSYS (no userfaultfd), -EPERM (vm.unprivileged_userfaultfd = 0 and not
 * privileged), -EOPNOTSUPP (no MISSING faults on shmem: kernel < 4.11).
 */
int uffd_open(void);
/* Register [addr, addr+len) for MISSING faults; page-aligned. 0 or -errno (-EOPNOTSUPP if
 * UFFDIO_COPY is not offered on the range). */
int uffd_register_missing(int uffd, void *addr, uint64_t len);
int uffd_unregister(int uffd, void *addr, uint64_t len);
/*
 * Install @len bytes (whole pages) from @src at @dst, waking the faulting threads.
 * 0 installed, 1 already present (the page was installed by an earlier copy: the caller's
 * copy is dropped), -errno otherwise. -EAGAIN retries are handled here.
 */
int uffd_copy(int uffd, void *dst, const void *src, uint64_t len);
/*
 * Wait up to @timeout_ms for one fault; *addr = the faulting address rounded down to a page.
 * 1 a fault was read, 0 timeout, -errno (e.g. -EBADF). Non-fault events are ignored (0).
 */
int uffd_wait_fault(int uffd, int timeout_ms, uint64_t *addr);
/* Can this process do post-copy here? 0 or the -errno of uffd_open()/register on a memfd,
 * with a reason in @why (for the refusal message). */
int uffd_probe(char *why, size_t whylen);

#endif
