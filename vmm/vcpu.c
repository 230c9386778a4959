// SPDX-License-Identifier: MIT
/*
 * vCPUs: creation and boot state, the run loop on the vCPU's own thread, exit decoding and
 * the pause/stop handshake with vm.c (protocol in vcpu.h). Exit decoding is a separate,
 * side-effect-free function (apart from device handlers) so unit tests drive it with a fake
 * struct kvm_run, and KVM_RUN goes through kvm_ioctl() so it can be mocked as well.
 */
#define LOG_TAG "vcpu"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/boot/linux.h"
#include "vmm/bus.h"
#include "vmm/kvm.h"
#include "vmm/lib/log.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define APIC_LVT0		0x350
#define APIC_LVT1		0x360
#define APIC_MODE_NMI		0x4
#define APIC_MODE_EXTINT	0x7

static void kick_handler(int sig)
{
	(void)sig;	/* only there to make KVM_RUN return -EINTR */
}

int vcpu_signal_setup(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;	/* no SA_RESTART: KVM_RUN must return */
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGVCPUKICK, &sa, NULL) < 0 ? -errno : 0;
}

static int set_lapic_lvt(struct vcpu *v)
{
	struct kvm_lapic_state lapic;
	uint32_t *lvt0 = (uint32_t *)&lapic.regs[APIC_LVT0];
	uint32_t *lvt1 = (uint32_t *)&lapic.regs[APIC_LVT1];
	int ret;

	ret = kvm_ioctl(v->fd, KVM_GET_LAPIC, &lapic);
	if (ret < 0)
		goto err;
	/* As a PC BIOS leaves them: the 8259 through LINT0 (virtual wire), NMI on LINT1. */
	*lvt0 = (*lvt0 & ~0x700u) | (APIC_MODE_EXTINT << 8);
	*lvt1 = (*lvt1 & ~0x700u) | (APIC_MODE_NMI << 8);
	ret = kvm_ioctl(v->fd, KVM_SET_LAPIC, &lapic);
	if (ret < 0)
		goto err;
	return 0;
err:
	log_err("vcpu%u: LAPIC LVT setup: %s", v->id, strerror(-ret));
	return ret;
}

static int set_cpuid(struct vcpu *v)
{
	const struct kvm_cpuid2 *sup = v->vm->cpuid;
	size_t sz = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int ret;

	if (!c)
		return -ENOMEM;
	memcpy(c, sup, sz);
	cpuid_patch(c, v->id, v->vm->nr_vcpus);
	ret = kvm_ioctl(v->fd, KVM_SET_CPUID2, c);
	free(c);
	if (ret < 0)
		log_err("vcpu%u: KVM_SET_CPUID2: %s", v->id, strerror(-ret));
	return ret;
}

int vcpu_init(struct vcpu *v, struct vm *vm, unsigned int id)
{
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	int ret;

	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->id = id;
	v->fd = kvm_ioctl(vm->kvm.vm_fd, KVM_CREATE_VCPU, (void *)(uintptr_t)id);
	if (v->fd < 0) {
		ret = v->fd;
		log_err("vcpu%u: KVM_CREATE_VCPU: %s", id, strerror(-ret));
		return ret;
	}
	v->run_size = vm->kvm.run_size;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		ret = -errno;
		v->run = NULL;
		log_err("vcpu%u: mmap kvm_run: %s", id, strerror(-ret));
		goto err_close;
	}
	ret = set_cpuid(v);
	if (ret < 0)
		goto err_unmap;
	ret = msr_init(v->fd, vm->msrs, cpuid_has_edx1(vm->cpuid, 12));
	if (ret < 0)
		goto err_unmap;
	ret = kvm_ioctl(v->fd, KVM_SET_FPU, &fpu);
	if (ret < 0) {
		log_err("vcpu%u: KVM_SET_FPU: %s", id, strerror(-ret));
		goto err_unmap;
	}
	if (id == 0) {
		ret = set_lapic_lvt(v);
		if (ret < 0)
			goto err_unmap;
	} else {
		/* Application processors wait for INIT/SIPI from the BSP (in-kernel LAPIC). */
		struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_UNINITIALIZED };

		ret = kvm_ioctl(v->fd, KVM_SET_MP_STATE, &mp);
		if (ret < 0) {
			log_err("vcpu%u: KVM_SET_MP_STATE: %s", id, strerror(-ret));
			goto err_unmap;
		}
	}
	return 0;

err_unmap:
	munmap(v->run, v->run_size);
	v->run = NULL;
err_close:
	close(v->fd);
	v->fd = -1;
	return ret;
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->run)
		munmap(v->run, v->run_size);
	if (v->fd >= 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}

int vcpu_set_boot_state(struct vcpu *v, const struct boot_info *bi)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int ret;

	ret = kvm_ioctl(v->fd, KVM_GET_SREGS, &sregs);
	if (ret < 0)
		goto err;
	boot_sregs_setup(&sregs);
	ret = kvm_ioctl(v->fd, KVM_SET_SREGS, &sregs);
	if (ret < 0)
		goto err;
	boot_regs_setup(&regs, bi);
	ret = kvm_ioctl(v->fd, KVM_SET_REGS, &regs);
	if (ret < 0)
		goto err;
	return 0;
err:
	log_err("vcpu%u: setting boot registers: %s", v->id, strerror(-ret));
	return ret;
}

static const char *exit_name(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_UNKNOWN: return "unknown";
	case KVM_EXIT_EXCEPTION: return "exception";
	case KVM_EXIT_DEBUG: return "debug";
	case KVM_EXIT_FAIL_ENTRY: return "entry failed";
	case KVM_EXIT_INTERNAL_ERROR: return "KVM internal error";
	case KVM_EXIT_SHUTDOWN: return "shutdown (triple fault)";
	default: return "unhandled";
	}
}

enum vm_stop_reason vcpu_exit_handle(struct kvm_run *run, struct bus *pio, struct bus *mmio,
				     uint64_t *code)
{
	uint8_t *data;
	uint32_t i;

	*code = run->exit_reason;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		data = (uint8_t *)run + run->io.data_offset;
		/* String I/O (rep ins/outs) comes as @count consecutive elements. */
		for (i = 0; i < run->io.count; i++)
			bus_dispatch(pio, run->io.port, data + i * run->io.size, run->io.size,
				     run->io.direction == KVM_EXIT_IO_OUT);
		return VM_STOP_NONE;
	case KVM_EXIT_MMIO:
		if (run->mmio.len > sizeof(run->mmio.data))
			return VM_STOP_INTERNAL;
		bus_dispatch(mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
			     run->mmio.is_write);
		return VM_STOP_NONE;
	case KVM_EXIT_INTR:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
		return VM_STOP_NONE;
	case KVM_EXIT_HLT:
		return VM_STOP_HALT;
	case KVM_EXIT_SHUTDOWN:
		return VM_STOP_TRIPLE_FAULT;
	case KVM_EXIT_SYSTEM_EVENT:
		*code = run->system_event.type;
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_SHUTDOWN: return VM_STOP_POWEROFF;
		case KVM_SYSTEM_EVENT_RESET: return VM_STOP_RESET;
		case KVM_SYSTEM_EVENT_CRASH: return VM_STOP_CRASH;
		default: return VM_STOP_INTERNAL;
		}
	default:
		/* INTERNAL_ERROR, FAIL_ENTRY, and anything this monitor does not enable. */
		return VM_STOP_INTERNAL;
	}
}

void vcpu_dump_regs(struct vcpu *v)
{
	struct kvm_sregs s;
	struct kvm_regs r;

	if (kvm_ioctl(v->fd, KVM_GET_REGS, &r) < 0 || kvm_ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		log_err("vcpu%u: registers unavailable", v->id);
		return;
	}
	log_err("vcpu%u: rip %016llx rsp %016llx rflags %08llx", v->id, r.rip, r.rsp, r.rflags);
	log_err("vcpu%u: rax %016llx rbx %016llx rcx %016llx rdx %016llx", v->id, r.rax, r.rbx, r.rcx, r.rdx);
	log_err("vcpu%u: rsi %016llx rdi %016llx rbp %016llx r8  %016llx", v->id, r.rsi, r.rdi, r.rbp, r.r8);
	log_err("vcpu%u: r9  %016llx r10 %016llx r11 %016llx r12 %016llx", v->id, r.r9, r.r10, r.r11, r.r12);
	log_err("vcpu%u: r13 %016llx r14 %016llx r15 %016llx", v->id, r.r13, r.r14, r.r15);
	log_err("vcpu%u: cs %04x/%016llx ss %04x ds %04x cr0 %08llx cr2 %016llx cr3 %016llx cr4 %08llx efer %llx",
		v->id, s.cs.selector, s.cs.base, s.ss.selector, s.ds.selector, s.cr0, s.cr2, s.cr3,
		s.cr4, s.efer);
	log_err("vcpu%u: gdt %016llx/%04x idt %016llx/%04x apic_base %016llx", v->id, s.gdt.base,
		s.gdt.limit, s.idt.base, s.idt.limit, s.apic_base);
	/* On AMD SVM the VMCB is undefined after a shutdown intercept and KVM reinitialises the
	 * vCPU, so a triple fault leaves only the reset state to read: say so rather than let it
	 * pass for the state at the fault. */
	if (r.rip == 0xfff0 && s.cs.selector == 0xf000 && s.cs.base == 0xffff0000)
		log_err("vcpu%u: (these are the vCPU's reset values: KVM on AMD SVM resets a vCPU that shut down, the state at the fault is lost)",
			v->id);
}

enum vm_stop_reason vcpu_run_once(struct vcpu *v, uint64_t *code)
{
	struct kvm_run *run = v->run;
	enum vm_stop_reason r;
	int ret;

	*code = 0;
	ret = kvm_ioctl(v->fd, KVM_RUN, NULL);
	__atomic_fetch_add(&v->exits, 1, __ATOMIC_RELAXED);
	if (ret == -EINTR || ret == -EAGAIN) {
		/* Kicked (or interrupted by an unrelated signal): the caller checks requests. */
		__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		return VM_STOP_NONE;
	}
	if (ret < 0) {
		log_err("vcpu%u: KVM_RUN: %s", v->id, strerror(-ret));
		vcpu_dump_regs(v);
		*code = (uint64_t)-ret;
		return VM_STOP_INTERNAL;
	}
	r = vcpu_exit_handle(run, &v->vm->pio, &v->vm->mmio, code);
	switch (r) {
	case VM_STOP_TRIPLE_FAULT:
		log_err("vcpu%u: guest triple fault (KVM_EXIT_SHUTDOWN)", v->id);
		vcpu_dump_regs(v);
		break;
	case VM_STOP_INTERNAL:
		if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
			log_err("vcpu%u: %s, suberror %u", v->id, exit_name(run->exit_reason),
				run->internal.suberror);
		else if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
			log_err("vcpu%u: %s, hardware reason 0x%llx", v->id, exit_name(run->exit_reason),
				(unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		else if (run->exit_reason == KVM_EXIT_SYSTEM_EVENT)
			log_err("vcpu%u: unhandled system event %u", v->id, run->system_event.type);
		else
			log_err("vcpu%u: %s exit %u", v->id, exit_name(run->exit_reason), run->exit_reason);
		vcpu_dump_regs(v);
		break;
	case VM_STOP_HALT:
		log_info("vcpu%u: halted", v->id);
		break;
	default:
		break;
	}
	return r;
}

/*
 * Finish the instruction of the last PIO/MMIO exit before the vCPU is reported paused. KVM
 * applies an exit's result (the value an IN or MMIO read returns, the RIP advance) only when
 * KVM_RUN is entered again; until then the registers show the instruction not yet executed.
 * A state save in that window would make the destination execute it a second time (a
 * register read twice, a doorbell rung twice). Entering with immediate_exit set completes
 * the pending operation and returns -EINTR without running any further guest instruction
 * (KVM API, "immediate_exit"). A completion can itself need userspace (the next element of
 * a rep ins/outs): handled like any exit, a bounded number of times.
 */
static enum vm_stop_reason vcpu_complete_pending(struct vcpu *v, uint64_t *code)
{
	enum vm_stop_reason r = VM_STOP_NONE;
	int i;

	*code = 0;
	for (i = 0; i < 64; i++) {
		int ret;

		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		ret = kvm_ioctl(v->fd, KVM_RUN, NULL);
		if (ret == -EINTR || ret == -EAGAIN)
			break;
		if (ret < 0) {
			log_err("vcpu%u: KVM_RUN (completing an exit): %s", v->id, strerror(-ret));
			*code = (uint64_t)-ret;
			r = VM_STOP_INTERNAL;
			break;
		}
		r = vcpu_exit_handle(v->run, &v->vm->pio, &v->vm->mmio, code);
		if (r != VM_STOP_NONE)
			break;
	}
	__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	return r;
}

/* The pause handshake, vCPU side (protocol in vcpu.h). */
static void pause_ack_wait(struct vcpu *v)
{
	struct vm *vm = v->vm;

	pthread_mutex_lock(&vm->lock);
	v->acked = true;
	vm->nr_acked++;
	pthread_cond_broadcast(&vm->cond);
	while (__atomic_load_n(&v->request, __ATOMIC_SEQ_CST) == VCPU_REQ_PAUSE)
		pthread_cond_wait(&vm->cond, &vm->lock);
	v->acked = false;
	vm->nr_acked--;
	pthread_mutex_unlock(&vm->lock);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	enum vm_stop_reason r;
	sigset_t set;
	uint64_t code;

	sigemptyset(&set);
	sigaddset(&set, SIGVCPUKICK);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	for (;;) {
		int req = __atomic_load_n(&v->request, __ATOMIC_SEQ_CST);

		if (req == VCPU_REQ_STOP)
			break;
		if (req == VCPU_REQ_PAUSE) {
			r = vcpu_complete_pending(v, &code);
			if (r != VM_STOP_NONE) {
				vm_request_stop(v->vm, r, code);
				break;
			}
			pause_ack_wait(v);
			continue;
		}
		r = vcpu_run_once(v, &code);
		if (r != VM_STOP_NONE) {
			vm_request_stop(v->vm, r, code);
			break;
		}
	}
	/* A stopped vCPU counts as acknowledged, so a pause racing a stop cannot hang. */
	pthread_mutex_lock(&v->vm->lock);
	if (!v->acked) {
		v->acked = true;
		v->vm->nr_acked++;
	}
	pthread_cond_broadcast(&v->vm->cond);
	pthread_mutex_unlock(&v->vm->lock);
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	char name[16];
	int ret;

	ret = pthread_create(&v->thread, NULL, vcpu_thread, v);
	if (ret) {
		log_err("vcpu%u: pthread_create: %s", v->id, strerror(ret));
		return -ret;
	}
	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(v->thread, name);
	v->thread_started = true;
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (v->thread_started)
		pthread_kill(v->thread, SIGVCPUKICK);
}

void vcpu_join(struct vcpu *v)
{
	if (!v->thread_started)
		return;
	pthread_join(v->thread, NULL);
	v->thread_started = false;
}
