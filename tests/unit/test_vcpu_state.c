// SPDX-License-Identifier: MIT
/*
 * vmm/vcpu_state.c and vmm/vm_state.c against this machine's real /dev/kvm: two VMs are
 * created from a 3-byte flat guest; VM A gets distinctive register, MSR, LAPIC, debug-register
 * and IOAPIC values, its "kvm-vm" + "vcpu" sections are saved and loaded into VM B, and B must
 * then report the same values through KVM. Malformed sections (a register file of the wrong
 * length, a missing required part, an MSR KVM refuses) are rejected, the first two without
 * touching the vCPU.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/config.h"
#include "vmm/kvm.h"
#include "vmm/state.h"
#include "vmm/vm.h"
#include "vmm/vm_state.h"

struct fixture {
	char fw[64];
	struct vm_config cfg;
	struct vm *a, *b;
	int devnull;
};

static int setup(void **state)
{
	static const uint8_t hlt_loop[] = { 0xf4, 0xeb, 0xfd };	/* hlt; jmp .-3 */
	struct fixture *f = calloc(1, sizeof(*f));
	int fd;

	snprintf(f->fw, sizeof(f->fw), "/tmp/test_vcpu_state.%d.bin", getpid());
	fd = open(f->fw, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, hlt_loop, sizeof(hlt_loop)) != sizeof(hlt_loop))
		return -1;
	close(fd);
	f->cfg.firmware = f->fw;
	f->cfg.append = "";
	f->cfg.mem_bytes = 16ull << 20;
	f->cfg.cpus = 1;
	f->cfg.kvm_path = "/dev/kvm";
	f->devnull = open("/dev/null", O_WRONLY);
	if (access("/dev/kvm", R_OK | W_OK) || vm_create(&f->cfg, f->devnull, &f->a) < 0) {
		unlink(f->fw);
		free(f);
		*state = NULL;
		return 0;
	}
	if (vm_create(&f->cfg, f->devnull, &f->b) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (!f)
		return 0;
	vm_destroy(f->a);
	vm_destroy(f->b);
	close(f->devnull);
	unlink(f->fw);
	free(f);
	return 0;
}

#define NEED_KVM(f) do { if (!(f)) { skip(); } } while (0)

static void set_msr(int fd, uint32_t index, uint64_t v)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e; } m = {
		.h.nmsrs = 1, .e.index = index, .e.data = v };

	assert_int_equal(kvm_ioctl(fd, KVM_SET_MSRS, &m), 1);
}

static uint64_t get_msr(int fd, uint32_t index)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e; } m = { .h.nmsrs = 1, .e.index = index };

	assert_int_equal(kvm_ioctl(fd, KVM_GET_MSRS, &m), 1);
	return m.e.data;
}

static void registry(struct state_registry *r, struct vm *vm)
{
	state_registry_init(r);
	assert_int_equal(state_register(r, "", &vm_kvm_state_ops, vm), 0);
	assert_int_equal(state_register(r, "0", &vcpu_state_ops, &vm->vcpus[0]), 0);
}

static void test_round_trip(void **state)
{
	struct fixture *f = *state;
	struct state_registry ra, rb;
	struct state_mem_sink sink;
	struct kvm_regs regs, rb_regs;
	struct kvm_debugregs dbg, rb_dbg;
	struct kvm_lapic_state lapic;
	struct kvm_irqchip chip;
	int fa, fb;

	NEED_KVM(f);
	fa = f->a->vcpus[0].fd;
	fb = f->b->vcpus[0].fd;
	assert_int_equal(kvm_ioctl(fa, KVM_GET_REGS, &regs), 0);
	regs.rax = 0x1122334455667788ull;
	regs.rbx = 0xcafef00d;
	regs.r15 = 0xfedcba9876543210ull;
	regs.rip = 0x100001;
	assert_int_equal(kvm_ioctl(fa, KVM_SET_REGS, &regs), 0);
	set_msr(fa, 0x175, 0xabcdef000ull);		/* SYSENTER_ESP */
	set_msr(fa, 0xc0000102, 0x7777000ull);		/* KERNEL_GS_BASE */
	memset(&dbg, 0, sizeof(dbg));
	dbg.db[0] = 0x1000;
	dbg.db[3] = 0x4000;
	dbg.dr7 = 0x400;
	assert_int_equal(kvm_ioctl(fa, KVM_SET_DEBUGREGS, &dbg), 0);
	assert_int_equal(kvm_ioctl(fa, KVM_GET_LAPIC, &lapic), 0);
	lapic.regs[0x80] = 0x20;			/* TPR */
	assert_int_equal(kvm_ioctl(fa, KVM_SET_LAPIC, &lapic), 0);
	memset(&chip, 0, sizeof(chip));
	chip.chip_id = KVM_IRQCHIP_IOAPIC;
	assert_int_equal(kvm_ioctl(f->a->kvm.vm_fd, KVM_GET_IRQCHIP, &chip), 0);
	chip.chip.ioapic.redirtbl[5].bits = 0x10000 | 0x45;	/* masked, vector 0x45 */
	assert_int_equal(kvm_ioctl(f->a->kvm.vm_fd, KVM_SET_IRQCHIP, &chip), 0);

	registry(&ra, f->a);
	registry(&rb, f->b);
	state_mem_sink_init(&sink);
	assert_int_equal(state_save_all(&ra, &sink.sink), 0);
	assert_int_equal(state_load_buf(&rb, sink.buf, sink.len, NULL), 0);

	assert_int_equal(kvm_ioctl(fb, KVM_GET_REGS, &rb_regs), 0);
	assert_memory_equal(&rb_regs, &regs, sizeof(regs));
	assert_int_equal(get_msr(fb, 0x175), 0xabcdef000ull);
	assert_int_equal(get_msr(fb, 0xc0000102), 0x7777000ull);
	assert_int_equal(kvm_ioctl(fb, KVM_GET_DEBUGREGS, &rb_dbg), 0);
	assert_int_equal(rb_dbg.db[0], 0x1000);
	assert_int_equal(rb_dbg.db[3], 0x4000);
	assert_int_equal(rb_dbg.dr7 & 0xffff, 0x400);
	assert_int_equal(kvm_ioctl(fb, KVM_GET_LAPIC, &lapic), 0);
	assert_int_equal((uint8_t)lapic.regs[0x80], 0x20);
	memset(&chip, 0, sizeof(chip));
	chip.chip_id = KVM_IRQCHIP_IOAPIC;
	assert_int_equal(kvm_ioctl(f->b->kvm.vm_fd, KVM_GET_IRQCHIP, &chip), 0);
	assert_int_equal(chip.chip.ioapic.redirtbl[5].bits & 0x1ffff, 0x10045);

	/* saving B again gives the same vCPU section as A's, byte for byte, except the
	 * TSC and kvmclock, which move: compare sizes as a cheap sanity check */
	{
		struct state_mem_sink s2;

		state_mem_sink_init(&s2);
		assert_int_equal(state_save_all(&rb, &s2.sink), 0);
		assert_int_equal(s2.len, sink.len);
		free(s2.buf);
	}
	free(sink.buf);
	state_registry_destroy(&ra);
	state_registry_destroy(&rb);
}

/* Load a hand-built vcpu section body into B's vCPU. */
static int load_fields(struct fixture *f, void (*build)(struct state_writer *w))
{
	struct state_writer w;
	struct state_reader r;
	int ret;

	sw_init(&w, 1 << 20);
	build(&w);
	assert_int_equal(sw_error(&w), 0);
	sr_init(&r, w.buf, w.len, "vcpu[0]");
	ret = vcpu_state_ops.load(&f->b->vcpus[0], &r, 1);
	sw_release(&w);
	return ret;
}

static void build_short_regs(struct state_writer *w)
{
	uint64_t v[17] = { 0 };

	sw_u64_array(w, 1, v, 17, STATE_F_REQUIRED);		/* REGS wants 18 words */
}

static void build_regs_only(struct state_writer *w)
{
	uint64_t v[18] = { 0x99 };

	sw_u64_array(w, 1, v, 18, STATE_F_REQUIRED);
}

static void test_malformed_sections_leave_vcpu_alone(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs before, after;

	NEED_KVM(f);
	assert_int_equal(kvm_ioctl(f->b->vcpus[0].fd, KVM_GET_REGS, &before), 0);
	assert_int_equal(load_fields(f, build_short_regs), -EBADMSG);
	assert_int_equal(load_fields(f, build_regs_only), -EBADMSG);	/* sregs, MSRs... missing */
	assert_int_equal(kvm_ioctl(f->b->vcpus[0].fd, KVM_GET_REGS, &after), 0);
	assert_memory_equal(&before, &after, sizeof(before));
}

static void test_refused_msr_is_an_error(void **state)
{
	struct fixture *f = *state;
	struct state_registry ra, rb;
	struct state_mem_sink sink;
	struct state_writer w;
	struct state_reader r;
	struct state_field fl;
	int ret;

	NEED_KVM(f);
	/* Take A's real vcpu body and append a bogus MSR to its MSR list. */
	registry(&ra, f->a);
	registry(&rb, f->b);
	sw_init(&w, 1 << 20);
	assert_int_equal(vcpu_state_ops.save(&f->a->vcpus[0], &w), 0);
	{
		struct state_writer w2;
		uint64_t *pairs = calloc(2 * 2049, sizeof(uint64_t));
		size_t n = 0;

		sw_init(&w2, 1 << 20);
		sr_init(&r, w.buf, w.len, "vcpu[0]");
		while ((ret = sr_next(&r, &fl)) > 0) {
			if (fl.tag == 8) {
				assert_int_equal(sr_u64_array(&fl, pairs, 2 * 2048, &n), 0);
				pairs[n++] = 0xdeadbeef;		/* no such MSR */
				pairs[n++] = 1;
				sw_u64_array(&w2, 8, pairs, n, STATE_F_REQUIRED);
			} else {
				sw_bytes(&w2, fl.tag, fl.data, fl.len, fl.flags);
			}
		}
		assert_int_equal(ret, 0);
		sr_init(&r, w2.buf, w2.len, "vcpu[0]");
		assert_int_equal(vcpu_state_ops.load(&f->b->vcpus[0], &r, 1), -EINVAL);
		sw_release(&w2);
		free(pairs);
	}
	sw_release(&w);
	state_mem_sink_init(&sink);
	free(sink.buf);
	state_registry_destroy(&ra);
	state_registry_destroy(&rb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_malformed_sections_leave_vcpu_alone),
		cmocka_unit_test(test_refused_msr_is_an_error),
	};
	return cmocka_run_group_tests_name("vcpu_state", tests, setup, teardown);
}
