// SPDX-License-Identifier: MIT
/*
 * migrate/uffd.c on a real memfd mapping (as guest RAM is): MISSING registration, a reader
 * thread blocked on an absent page released by uffd_copy() with the right bytes, the
 * ordering rule (a second copy of an installed page is refused and leaves the first bytes),
 * multi-page copies over a partly installed range, argument checks, and a real KVM vCPU
 * whose code and data pages all arrive by userfault. Skipped only when
 * the kernel or sysctl forbids userfaultfd (uffd_probe() says why).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "migrate/uffd.h"

#define PG 4096u
#define NPAGES 16u

struct fx {
	int uffd, mfd;
	uint8_t *map;
};

static int setup(void **state)
{
	static struct fx f;
	char why[160];
	int r = uffd_probe(why, sizeof(why));

	if (r) {
		/* Not a failure of ours: every test skips (cmocka prints it). */
		fprintf(stderr, "userfaultfd not usable here: %s\n", why);
		*state = NULL;
		return 0;
	}
	f.mfd = memfd_create("test-uffd", MFD_CLOEXEC);
	assert_true(f.mfd >= 0);
	assert_int_equal(ftruncate(f.mfd, NPAGES * PG), 0);
	f.map = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, f.mfd, 0);
	assert_true(f.map != MAP_FAILED);
	f.uffd = uffd_open();
	assert_true(f.uffd >= 0);
	assert_int_equal(uffd_register_missing(f.uffd, f.map, NPAGES * PG), 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (!f)
		return 0;
	uffd_unregister(f->uffd, f->map, NPAGES * PG);
	munmap(f->map, NPAGES * PG);
	close(f->mfd);
	close(f->uffd);
	return 0;
}

struct reader {
	volatile uint8_t *p;
	uint8_t got;
};

static void *reader_fn(void *arg)
{
	struct reader *r = arg;

	r->got = r->p[123];	/* blocks in the kernel until the page is installed */
	return NULL;
}

static void fill(uint8_t *buf, uint8_t v)
{
	memset(buf, v, PG);
}

static void test_fault_then_copy(void **state)
{
	struct fx *f = *state;

	if (!f)
		skip();
	static uint8_t src[PG];
	struct reader r = { .p = f->map + 3 * PG };
	pthread_t t;
	uint64_t addr = 0;
	int n;

	assert_int_equal(pthread_create(&t, NULL, reader_fn, &r), 0);
	n = uffd_wait_fault(f->uffd, 5000, &addr);
	assert_int_equal(n, 1);
	assert_int_equal(addr, (uintptr_t)(f->map + 3 * PG));
	fill(src, 0xa5);
	assert_int_equal(uffd_copy(f->uffd, (void *)(uintptr_t)addr, src, PG), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r.got, 0xa5);
	/* The memfd itself now holds the page (the destination's guest RAM). */
	uint8_t b = 0;
	assert_int_equal(pread(f->mfd, &b, 1, 3 * PG + 7), 1);
	assert_int_equal(b, 0xa5);
}

static void test_second_copy_refused(void **state)
{
	struct fx *f = *state;

	if (!f)
		skip();
	static uint8_t a[PG], b[PG];

	fill(a, 0x11);
	fill(b, 0x22);
	assert_int_equal(uffd_copy(f->uffd, f->map + 5 * PG, a, PG), 0);
	/* A later (e.g. background-stream) copy of the same page is dropped: 1, bytes kept. */
	assert_int_equal(uffd_copy(f->uffd, f->map + 5 * PG, b, PG), 1);
	assert_int_equal(f->map[5 * PG], 0x11);
	assert_int_equal(f->map[6 * PG - 1], 0x11);
	/* No fault is pending after that (the reads above were of an installed page). */
	uint64_t addr;
	assert_int_equal(uffd_wait_fault(f->uffd, 0, &addr), 0);
}

static void test_range_partly_present(void **state)
{
	struct fx *f = *state;

	if (!f)
		skip();
	static uint8_t one[PG], four[4 * PG];

	fill(one, 0x33);
	assert_int_equal(uffd_copy(f->uffd, f->map + 9 * PG, one, PG), 0);
	for (unsigned int i = 0; i < 4; i++)
		fill(four + i * PG, (uint8_t)(0x40 + i));
	/* pages 8..11; 9 already present: 8, 10, 11 installed, 9 keeps its bytes. */
	assert_int_equal(uffd_copy(f->uffd, f->map + 8 * PG, four, 4 * PG), 0);
	assert_int_equal(f->map[8 * PG], 0x40);
	assert_int_equal(f->map[9 * PG], 0x33);
	assert_int_equal(f->map[10 * PG], 0x42);
	assert_int_equal(f->map[11 * PG + 100], 0x43);
}

static void test_bad_args(void **state)
{
	struct fx *f = *state;

	if (!f)
		skip();
	static uint8_t src[PG];

	assert_int_equal(uffd_copy(f->uffd, f->map + 1, src, PG), -EINVAL);
	assert_int_equal(uffd_copy(f->uffd, f->map, src, 100), -EINVAL);
	assert_int_equal(uffd_copy(f->uffd, f->map, src, 0), -EINVAL);
	assert_int_equal(uffd_register_missing(f->uffd, f->map + 1, PG), -EINVAL);
	/* Outside any registered range: the kernel refuses (no silent write). */
	uint8_t *other = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			      -1, 0);
	assert_true(other != MAP_FAILED);
	assert_true(uffd_copy(f->uffd, other, src, PG) < 0);
	munmap(other, PG);
	assert_int_equal(uffd_copy(-1, f->map + 12 * PG, src, PG), -EBADF);
}

static void test_wait_timeout(void **state)
{
	struct fx *f = *state;

	if (!f)
		skip();
	struct timespec a, b;
	uint64_t addr;

	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(uffd_wait_fault(f->uffd, 50, &addr), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_true((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 >= 40);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/*
 * The fault path without the network: a thread touches a missing page, this thread reads
 * the fault and installs the page; latency = touch → the toucher sees the bytes. Printed
 * (the local floor under post-copy's fault latency); checked only for being sane.
 */
static void test_fault_latency(void **state)
{
	struct fx *f = *state;
	static uint8_t src[PG];
	uint64_t lat[NPAGES - 12];
	unsigned int n = 0;

	if (!f)
		skip();
	for (unsigned int pg = 12; pg < NPAGES; pg++) {
		struct reader r = { .p = f->map + pg * PG };
		uint64_t addr = 0, t0;
		pthread_t t;

		fill(src, (uint8_t)pg);
		t0 = now_ns();
		assert_int_equal(pthread_create(&t, NULL, reader_fn, &r), 0);
		assert_int_equal(uffd_wait_fault(f->uffd, 5000, &addr), 1);
		assert_int_equal(addr, (uintptr_t)(f->map + pg * PG));
		assert_int_equal(uffd_copy(f->uffd, (void *)(uintptr_t)addr, src, PG), 0);
		assert_int_equal(pthread_join(t, NULL), 0);
		lat[n++] = now_ns() - t0;
		assert_int_equal(r.got, (uint8_t)pg);
	}
	qsort(lat, n, sizeof(lat[0]), cmp_u64);
	printf("uffd local fault latency (thread start + fault + UFFDIO_COPY + join), %u faults: "
	       "median %.1f us, max %.1f us\n", n, lat[n / 2] / 1e3, lat[n - 1] / 1e3);
	assert_true(lat[n - 1] < 5000000000ull);
}

/*
 * A real vCPU on guest RAM registered for MISSING faults (what the destination does after
 * switch-over): the code page, a page it writes and a page it reads are all absent at
 * first; KVM's own accesses (instruction fetch, guest store, guest load) raise userfaults
 * that the fault thread resolves with UFFDIO_COPY, and the guest computes the right thing.
 * Skipped without /dev/kvm. alarm() bounds a vCPU stuck on a fault nobody serves.
 */
struct kvm_fx {
	int uffd;
	uint8_t *mem;
	int faults;
};

static void *kvm_fault_thread(void *arg)
{
	struct kvm_fx *k = arg;
	static uint8_t pg[PG];
	/* mov byte [0x8000], 0x5a; mov al, [0x9000]; out 0x10, al; hlt (16-bit real mode) */
	static const uint8_t code[] = { 0xc6, 0x06, 0x00, 0x80, 0x5a, 0xa0, 0x00, 0x90,
					0xe6, 0x10, 0xf4 };

	while (k->faults < 3) {
		uint64_t addr, off;
		int r = uffd_wait_fault(k->uffd, 10000, &addr);

		if (r <= 0)
			return NULL;	/* the vCPU side then times out and fails */
		off = addr - (uintptr_t)k->mem;
		memset(pg, 0, PG);
		if (off == 0)
			memcpy(pg, code, sizeof(code));
		else if (off == 0x9000)
			pg[0] = 0x77;
		if (uffd_copy(k->uffd, (void *)(uintptr_t)addr, pg, PG) < 0)
			return NULL;
		k->faults++;
	}
	return NULL;
}

static void test_kvm_vcpu_faults(void **state)
{
	const uint64_t size = 16 * PG;
	struct kvm_fx k = { .uffd = -1 };
	int kvm, vm = -1, vcpu = -1, mfd = -1, runsz;
	struct kvm_run *run = MAP_FAILED;
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = 0, .rflags = 2 };
	pthread_t t;
	bool out_ok = false, halted = false;

	if (!*state)
		skip();
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		skip();
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	assert_true(vm >= 0);
	mfd = memfd_create("test-uffd-kvm", MFD_CLOEXEC);
	assert_true(mfd >= 0);
	assert_int_equal(ftruncate(mfd, (off_t)size), 0);
	k.mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	assert_true(k.mem != MAP_FAILED);
	k.uffd = uffd_open();
	assert_true(k.uffd >= 0);
	assert_int_equal(uffd_register_missing(k.uffd, k.mem, size), 0);
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = size,
		.userspace_addr = (uintptr_t)k.mem,
	};
	assert_int_equal(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region), 0);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	assert_true(vcpu >= 0);
	runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	assert_true(runsz > 0);
	run = mmap(NULL, (size_t)runsz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	assert_true(run != MAP_FAILED);
	assert_int_equal(ioctl(vcpu, KVM_GET_SREGS, &sregs), 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	assert_int_equal(ioctl(vcpu, KVM_SET_SREGS, &sregs), 0);
	assert_int_equal(ioctl(vcpu, KVM_SET_REGS, &regs), 0);
	assert_int_equal(pthread_create(&t, NULL, kvm_fault_thread, &k), 0);
	alarm(60);
	for (int i = 0; i < 10 && !halted; i++) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0)
			break;
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x10)
			out_ok = ((uint8_t *)run)[run->io.data_offset] == 0x77;
		else if (run->exit_reason == KVM_EXIT_HLT)
			halted = true;
		else
			break;
	}
	alarm(0);
	pthread_join(t, NULL);
	assert_true(out_ok);			/* the load saw the installed page */
	assert_true(halted);
	assert_int_equal(k.faults, 3);		/* code, store target, load source */
	assert_int_equal(k.mem[0x8000], 0x5a);	/* the guest store landed in the memfd */
	munmap(run, (size_t)runsz);
	close(vcpu);
	close(vm);
	munmap(k.mem, size);
	close(mfd);
	close(k.uffd);
	close(kvm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fault_then_copy),
		cmocka_unit_test(test_second_copy_refused),
		cmocka_unit_test(test_range_partly_present),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_wait_timeout),
		cmocka_unit_test(test_fault_latency),
		cmocka_unit_test(test_kvm_vcpu_faults),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
