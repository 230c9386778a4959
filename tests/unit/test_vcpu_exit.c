// SPDX-License-Identifier: MIT
/*
 * vCPU exit decoding driven by a fake struct kvm_run: PIO (single and string), MMIO, the
 * unclaimed paths, and every exit that stops the VM; KVM_RUN itself through a mocked
 * kvm_ioctl (-Wl,--wrap=kvm_ioctl): a kick (-EINTR), a triple fault with its register dump,
 * a failing KVM_RUN. Also the per-vCPU CPUID topology patch and the pause protocol.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmm/bus.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

/* ---- mock ---- */
/*
 * Threaded mode (the pause test): KVM_RUN "runs the guest" until immediate_exit is set, like
 * a kicked vCPU, without cmocka's expectation queue (not thread-safe).
 */
static struct {
	bool threaded;
	struct kvm_run **runs;		/* by fd */
	int in_run;			/* vCPUs inside KVM_RUN now */
	int entries;
} tm;

int __wrap_kvm_ioctl(int fd, unsigned long req, void *arg);
int __wrap_kvm_ioctl(int fd, unsigned long req, void *arg)
{
	if (tm.threaded) {
		struct kvm_run *run = tm.runs[fd];

		if (req != KVM_RUN)
			return 0;
		__atomic_fetch_add(&tm.in_run, 1, __ATOMIC_SEQ_CST);
		__atomic_fetch_add(&tm.entries, 1, __ATOMIC_SEQ_CST);
		while (!__atomic_load_n(&run->immediate_exit, __ATOMIC_SEQ_CST))
			usleep(100);
		__atomic_fetch_sub(&tm.in_run, 1, __ATOMIC_SEQ_CST);
		return -EINTR;
	}
	check_expected(req);
	if (req == KVM_GET_REGS) {
		struct kvm_regs *r = arg;

		memset(r, 0, sizeof(*r));
		r->rip = 0x100020;
		r->r15 = 0x5a5a5a5a;
	} else if (req == KVM_GET_SREGS) {
		memset(arg, 0, sizeof(struct kvm_sregs));
	}
	return mock_type(int);
}

/* ---- a recording device ---- */
struct rec {
	uint64_t off;
	uint32_t len;
	bool write;
	uint8_t data[8];
	unsigned int n;
};

static void rec_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct rec *r = opaque;

	r->off = off;
	r->len = len;
	r->write = false;
	r->n++;
	memset(data, 0x40 + (int)r->n, len);
}

static void rec_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct rec *r = opaque;

	r->off = off;
	r->len = len;
	r->write = true;
	r->n++;
	memcpy(r->data, data, len < 8 ? len : 8);
}

static const struct bus_ops rec_ops = { .read = rec_read, .write = rec_write };

struct fixture {
	struct vm vm;
	struct vcpu vcpu;
	struct kvm_run *run;
	struct rec pio_dev, mmio_dev;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->run = calloc(1, 8192);		/* kvm_run + room for the PIO data page */
	bus_init(&f->vm.pio, "pio");
	bus_init(&f->vm.mmio, "mmio");
	bus_register(&f->vm.pio, 0x3f8, 8, "uart", &rec_ops, &f->pio_dev);
	bus_register(&f->vm.mmio, 0xd0000000, 0x1000, "dev", &rec_ops, &f->mmio_dev);
	f->vcpu.vm = &f->vm;
	f->vcpu.fd = 42;
	f->vcpu.run = f->run;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	bus_destroy(&f->vm.pio);
	bus_destroy(&f->vm.mmio);
	free(f->run);
	free(f);
	return 0;
}

static enum vm_stop_reason decode(struct fixture *f, uint64_t *code)
{
	return vcpu_exit_handle(f->run, &f->vm.pio, &f->vm.mmio, code);
}

static void test_pio_out_in(void **state)
{
	struct fixture *f = *state;
	uint8_t *data = (uint8_t *)f->run + 4096;
	uint64_t code;

	f->run->exit_reason = KVM_EXIT_IO;
	f->run->io.direction = KVM_EXIT_IO_OUT;
	f->run->io.port = 0x3f8 + 5;
	f->run->io.size = 1;
	f->run->io.count = 1;
	f->run->io.data_offset = 4096;
	data[0] = 'A';
	assert_int_equal(decode(f, &code), VM_STOP_NONE);
	assert_int_equal(f->pio_dev.n, 1);
	assert_int_equal(f->pio_dev.off, 5);		/* offset, not the port */
	assert_true(f->pio_dev.write);
	assert_int_equal(f->pio_dev.data[0], 'A');

	f->run->io.direction = KVM_EXIT_IO_IN;
	f->run->io.port = 0x3f8;
	assert_int_equal(decode(f, &code), VM_STOP_NONE);
	assert_false(f->pio_dev.write);
	assert_int_equal(data[0], 0x42);		/* second access */
}

static void test_pio_string(void **state)
{
	struct fixture *f = *state;
	uint8_t *data = (uint8_t *)f->run + 4096;
	uint64_t code;

	/* rep outsb of "HEY": one exit, three elements */
	f->run->exit_reason = KVM_EXIT_IO;
	f->run->io.direction = KVM_EXIT_IO_OUT;
	f->run->io.port = 0x3f8;
	f->run->io.size = 1;
	f->run->io.count = 3;
	f->run->io.data_offset = 4096;
	memcpy(data, "HEY", 3);
	assert_int_equal(decode(f, &code), VM_STOP_NONE);
	assert_int_equal(f->pio_dev.n, 3);
	assert_int_equal(f->pio_dev.data[0], 'Y');	/* the last one */

	/* rep insw of 2 words from an unclaimed port: all-ones */
	f->run->io.direction = KVM_EXIT_IO_IN;
	f->run->io.port = 0x510;
	f->run->io.size = 2;
	f->run->io.count = 2;
	memset(data, 0, 4);
	assert_int_equal(decode(f, &code), VM_STOP_NONE);
	assert_int_equal(*(uint32_t *)data, 0xffffffff);
	assert_int_equal(f->pio_dev.n, 3);
}

static void test_mmio(void **state)
{
	struct fixture *f = *state;
	uint64_t code, v = 0x1122334455667788ull;

	f->run->exit_reason = KVM_EXIT_MMIO;
	f->run->mmio.phys_addr = 0xd0000010;
	f->run->mmio.len = 8;
	f->run->mmio.is_write = 1;
	memcpy(f->run->mmio.data, &v, 8);
	assert_int_equal(decode(f, &code), VM_STOP_NONE);
	assert_int_equal(f->mmio_dev.off, 0x10);
	assert_int_equal(f->mmio_dev.len, 8);
	assert_memory_equal(f->mmio_dev.data, &v, 8);

	f->run->mmio.is_write = 0;
	f->run->mmio.len = 4;
	assert_int_equal(decode(f, &code), VM_STOP_NONE);
	assert_int_equal(*(uint32_t *)f->run->mmio.data, 0x42424242);

	/* unclaimed (the gap between devices) reads all-ones */
	f->run->mmio.phys_addr = 0xd0001000;
	assert_int_equal(decode(f, &code), VM_STOP_NONE);
	assert_int_equal(*(uint32_t *)f->run->mmio.data, 0xffffffff);
	/* a straddling access is not claimed either */
	f->run->mmio.phys_addr = 0xd0000ffc;
	f->run->mmio.len = 8;
	assert_int_equal(decode(f, &code), VM_STOP_NONE);
	assert_int_equal(f->mmio_dev.n, 2);
	/* a length KVM never produces is an internal error, not an overflow */
	f->run->mmio.len = 64;
	assert_int_equal(decode(f, &code), VM_STOP_INTERNAL);
}

static void test_stops(void **state)
{
	struct fixture *f = *state;
	uint64_t code;

	f->run->exit_reason = KVM_EXIT_SHUTDOWN;
	assert_int_equal(decode(f, &code), VM_STOP_TRIPLE_FAULT);
	f->run->exit_reason = KVM_EXIT_HLT;
	assert_int_equal(decode(f, &code), VM_STOP_HALT);
	f->run->exit_reason = KVM_EXIT_INTR;
	assert_int_equal(decode(f, &code), VM_STOP_NONE);
	f->run->exit_reason = KVM_EXIT_INTERNAL_ERROR;
	assert_int_equal(decode(f, &code), VM_STOP_INTERNAL);
	f->run->exit_reason = KVM_EXIT_FAIL_ENTRY;
	assert_int_equal(decode(f, &code), VM_STOP_INTERNAL);
	f->run->exit_reason = 999;
	assert_int_equal(decode(f, &code), VM_STOP_INTERNAL);
	assert_int_equal(code, 999);

	f->run->exit_reason = KVM_EXIT_SYSTEM_EVENT;
	f->run->system_event.type = KVM_SYSTEM_EVENT_SHUTDOWN;
	assert_int_equal(decode(f, &code), VM_STOP_POWEROFF);
	f->run->system_event.type = KVM_SYSTEM_EVENT_RESET;
	assert_int_equal(decode(f, &code), VM_STOP_RESET);
	f->run->system_event.type = KVM_SYSTEM_EVENT_CRASH;
	assert_int_equal(decode(f, &code), VM_STOP_CRASH);
	assert_int_equal(code, KVM_SYSTEM_EVENT_CRASH);
	f->run->system_event.type = 77;
	assert_int_equal(decode(f, &code), VM_STOP_INTERNAL);
}

static void test_run_once(void **state)
{
	struct fixture *f = *state;
	uint64_t code;

	/* a kick: -EINTR, immediate_exit is cleared so the next KVM_RUN enters the guest */
	f->run->immediate_exit = 1;
	expect_value(__wrap_kvm_ioctl, req, KVM_RUN);
	will_return(__wrap_kvm_ioctl, -EINTR);
	assert_int_equal(vcpu_run_once(&f->vcpu, &code), VM_STOP_NONE);
	assert_int_equal(f->run->immediate_exit, 0);

	/* a PIO exit is dispatched and the vCPU keeps running */
	f->run->exit_reason = KVM_EXIT_IO;
	f->run->io.direction = KVM_EXIT_IO_OUT;
	f->run->io.port = 0x3f8;
	f->run->io.size = 1;
	f->run->io.count = 1;
	f->run->io.data_offset = 4096;
	expect_value(__wrap_kvm_ioctl, req, KVM_RUN);
	will_return(__wrap_kvm_ioctl, 0);
	assert_int_equal(vcpu_run_once(&f->vcpu, &code), VM_STOP_NONE);
	assert_int_equal(f->pio_dev.n, 1);

	/* a triple fault stops the VM and dumps the registers */
	f->run->exit_reason = KVM_EXIT_SHUTDOWN;
	expect_value(__wrap_kvm_ioctl, req, KVM_RUN);
	will_return(__wrap_kvm_ioctl, 0);
	expect_value(__wrap_kvm_ioctl, req, KVM_GET_REGS);
	will_return(__wrap_kvm_ioctl, 0);
	expect_value(__wrap_kvm_ioctl, req, KVM_GET_SREGS);
	will_return(__wrap_kvm_ioctl, 0);
	assert_int_equal(vcpu_run_once(&f->vcpu, &code), VM_STOP_TRIPLE_FAULT);

	/* KVM_RUN failing outright is an internal error (registers dumped, unavailable here) */
	expect_value(__wrap_kvm_ioctl, req, KVM_RUN);
	will_return(__wrap_kvm_ioctl, -EFAULT);
	expect_value(__wrap_kvm_ioctl, req, KVM_GET_REGS);
	will_return(__wrap_kvm_ioctl, -EIO);
	assert_int_equal(vcpu_run_once(&f->vcpu, &code), VM_STOP_INTERNAL);
	assert_int_equal(code, EFAULT);
}

static void test_exit_status(void **state)
{
	struct fixture *f = *state;
	static const struct { enum vm_stop_reason r; uint64_t code; int status; } t[] = {
		{ VM_STOP_POWEROFF, 0, 0 }, { VM_STOP_RESET, 0, 3 }, { VM_STOP_TRIPLE_FAULT, 0, 4 },
		{ VM_STOP_INTERNAL, 0, 5 }, { VM_STOP_HALT, 0, 5 }, { VM_STOP_CRASH, 0, 6 },
		{ VM_STOP_KILLED, 15, 7 }, { VM_STOP_DEBUG_EXIT, 42, 42 },
		{ VM_STOP_POSTCOPY_LOST, 0, 8 },
	};
	unsigned int i;

	pthread_mutex_init(&f->vm.lock, NULL);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		f->vm.stop_reason = t[i].r;
		f->vm.stop_code = t[i].code;
		assert_int_equal(vm_exit_status(&f->vm), t[i].status);
		assert_string_not_equal(vm_stop_reason_name(t[i].r), "?");
	}
	pthread_mutex_destroy(&f->vm.lock);
}

static struct kvm_cpuid2 *fake_cpuid(bool amd)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 8 * sizeof(c->entries[0]));

	c->nent = 7;
	c->entries[0] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0x1f,
		.ebx = amd ? 0x68747541 : 0x756e6547 };
	c->entries[1] = (struct kvm_cpuid_entry2){ .function = 1, .ebx = 0xff00ff00, .edx = 1u << 12 };
	c->entries[2] = (struct kvm_cpuid_entry2){ .function = 0xb, .index = 0 };
	c->entries[3] = (struct kvm_cpuid_entry2){ .function = 0xb, .index = 1 };
	c->entries[4] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 0, .eax = 0x207 };
	c->entries[5] = (struct kvm_cpuid_entry2){ .function = 0x80000008, .ecx = 0xffff };
	c->entries[6] = (struct kvm_cpuid_entry2){ .function = 7, .index = 0, .ecx = 0x18 };
	return c;
}

static void test_cpuid_topology(void **state)
{
	struct kvm_cpuid2 *c = fake_cpuid(true);

	assert_true(cpuid_has_edx1(c, 12));		/* MTRR */
	cpuid_patch(c, 3, 4);
	assert_int_equal(c->entries[1].ebx >> 24, 3);		/* initial APIC id */
	assert_int_equal((c->entries[1].ebx >> 16) & 0xff, 4);	/* logical count */
	assert_true(c->entries[1].edx & (1u << 28));		/* HTT */
	assert_true(c->entries[1].ecx & (1u << 31));		/* hypervisor */
	assert_int_equal(c->entries[2].ebx, 1);			/* SMT: 1 thread */
	assert_int_equal(c->entries[2].ecx, 0x100);
	assert_int_equal(c->entries[2].edx, 3);			/* x2APIC id */
	assert_int_equal(c->entries[3].eax, 2);			/* 4 cores: 2 bits */
	assert_int_equal(c->entries[3].ebx, 4);
	assert_int_equal(c->entries[3].ecx, 0x201);
	assert_int_equal(c->entries[4].eax, 0x7);		/* PKRU hidden */
	assert_int_equal(c->entries[5].ecx & 0xff, 3);		/* AMD: cores - 1 */
	assert_int_equal(c->entries[6].ecx, 0);			/* PKU, OSPKE */
	free(c);

	c = fake_cpuid(false);
	cpuid_patch(c, 0, 1);
	assert_int_equal(c->entries[1].ebx >> 24, 0);
	assert_int_equal((c->entries[1].ebx >> 16) & 0xff, 1);
	assert_false(c->entries[1].edx & (1u << 28));
	assert_int_equal(c->entries[5].ecx, 0xffff);		/* Intel: untouched */
	free(c);
}

static void test_msr_values(void **state)
{
	uint64_t v;

	assert_true(msr_boot_value(0x1a0, &v));			/* MISC_ENABLE: fast strings */
	assert_int_equal(v & 1, 1);
	assert_true(msr_boot_value(0x277, &v));			/* PAT reset value */
	assert_int_equal(v, 0x0007040600070406ull);
	assert_true(msr_boot_value(0x2ff, &v));			/* MTRRs on, WB default */
	assert_int_equal(v, 0x806);
	assert_false(msr_boot_value(0x10, &v));			/* TSC is left to KVM */
}

static bool wait_in_run(int n)
{
	for (int i = 0; i < 20000; i++) {		/* 2 s */
		if (__atomic_load_n(&tm.in_run, __ATOMIC_SEQ_CST) == n)
			return true;
		usleep(100);
	}
	return false;
}

/*
 * The pause protocol with real threads (style.md §3.2): vm_pause() returns only when every
 * vCPU is out of KVM_RUN and acknowledged, nobody re-enters while paused, resume lets them
 * all back in, and a stop ends the threads with the first reason recorded.
 */
static void test_pause_protocol(void **state)
{
	enum { N = 3 };
	struct kvm_run *runs[N];
	struct vcpu vcpus[N];
	struct vm vm;
	uint64_t ev;
	int entries;
	unsigned int i;

	memset(&vm, 0, sizeof(vm));
	memset(vcpus, 0, sizeof(vcpus));
	pthread_mutex_init(&vm.lock, NULL);
	pthread_cond_init(&vm.cond, NULL);
	vm.stop_fd = eventfd(0, EFD_NONBLOCK);
	vm.vcpus = vcpus;
	vm.nr_vcpus = N;
	tm.threaded = true;
	assert_int_equal(vcpu_signal_setup(), 0);
	for (i = 0; i < N; i++) {
		runs[i] = calloc(1, 4096);
		vcpus[i].vm = &vm;
		vcpus[i].id = i;
		vcpus[i].fd = (int)i;
		vcpus[i].run = runs[i];
	}
	tm.runs = calloc(N, sizeof(*tm.runs));
	for (i = 0; i < N; i++)
		tm.runs[i] = runs[i];

	assert_int_equal(vm_start(&vm), 0);
	assert_true(wait_in_run(N));

	assert_int_equal(vm_pause(&vm), 0);
	assert_int_equal(__atomic_load_n(&tm.in_run, __ATOMIC_SEQ_CST), 0);
	assert_int_equal(vm.nr_acked, N);
	entries = __atomic_load_n(&tm.entries, __ATOMIC_SEQ_CST);
	usleep(20000);
	assert_int_equal(__atomic_load_n(&tm.entries, __ATOMIC_SEQ_CST), entries);	/* nobody re-entered */
	assert_int_equal(vm_pause(&vm), -EALREADY);

	assert_int_equal(vm_resume(&vm), 0);
	assert_true(wait_in_run(N));
	assert_int_equal(vm_resume(&vm), -EALREADY);

	/* pause and resume again, then stop while running */
	assert_int_equal(vm_pause(&vm), 0);
	assert_int_equal(vm_resume(&vm), 0);
	assert_true(wait_in_run(N));
	vm_request_stop(&vm, VM_STOP_POWEROFF, 0);
	vm_request_stop(&vm, VM_STOP_KILLED, 0);		/* the first reason wins */
	for (i = 0; i < N; i++)
		vcpu_join(&vcpus[i]);
	assert_int_equal(vm_exit_status(&vm), 0);
	assert_int_equal(read(vm.stop_fd, &ev, sizeof(ev)), sizeof(ev));
	assert_int_equal(vm_pause(&vm), -ESHUTDOWN);

	tm.threaded = false;
	for (i = 0; i < N; i++)
		free(runs[i]);
	free(tm.runs);
	close(vm.stop_fd);
	pthread_cond_destroy(&vm.cond);
	pthread_mutex_destroy(&vm.lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pio_out_in, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pio_string, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mmio, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_status, setup, teardown),
		cmocka_unit_test(test_cpuid_topology),
		cmocka_unit_test(test_msr_values),
		cmocka_unit_test(test_pause_protocol),
	};
	return cmocka_run_group_tests_name("vcpu_exit", tests, NULL, NULL);
}
