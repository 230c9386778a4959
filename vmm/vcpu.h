/* SPDX-License-Identifier: MIT */
/*
 * One virtual CPU: its KVM fd and kvm_run page, its thread, and the pause/stop handshake.
 *
 * Run loop (vcpu thread): KVM_RUN, then vcpu_exit_handle() decodes the exit — PIO/MMIO go to
 * the VM's buses (no switch over port numbers), the rest becomes a VM stop reason.
 *
 * Pause protocol (style.md §3.2): the controller sets @request, sets run->immediate_exit and
 * sends SIGVCPUKICK to the thread (empty handler). KVM_RUN returns -EINTR (or returns at
 * once, if the request landed before entry), the thread sees the request, acknowledges it
 * under vm->lock and waits on vm->cond until the request is cleared. vm_pause() returns
 * only when every vCPU has acknowledged, i.e. none is inside KVM_RUN.
 */
#ifndef VMM_VCPU_H
#define VMM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;
struct bus;

#define SIGVCPUKICK	(SIGRTMIN + 1)

enum vcpu_request {
	VCPU_REQ_NONE = 0,
	VCPU_REQ_PAUSE,
	VCPU_REQ_STOP,			/* leave the thread */
};

/* Why the VM stops; the order is not the exit status (vm_exit_status() maps it). */
enum vm_stop_reason {
	VM_STOP_NONE = 0,
	VM_STOP_POWEROFF,		/* ACPI S5 or KVM_SYSTEM_EVENT_SHUTDOWN */
	VM_STOP_RESET,			/* reset register, i8042 pulse, KVM_SYSTEM_EVENT_RESET */
	VM_STOP_DEBUG_EXIT,		/* test guest wrote the debug-exit port */
	VM_STOP_TRIPLE_FAULT,		/* KVM_EXIT_SHUTDOWN */
	VM_STOP_INTERNAL,		/* internal error, failed entry, unknown exit */
	VM_STOP_CRASH,			/* KVM_SYSTEM_EVENT_CRASH */
	VM_STOP_HALT,			/* HLT reached userspace (only without an in-kernel LAPIC) */
	VM_STOP_KILLED,			/* control 'kill' / signal */
	VM_STOP_POSTCOPY_LOST,		/* post-copy: the other side died after switch-over */
};

struct vcpu {
	struct vm *vm;
	unsigned int id;		/* = APIC id */
	int fd;
	struct kvm_run *run;
	int run_size;
	pthread_t thread;
	bool thread_started;
	int request;			/* enum vcpu_request; atomic (any thread writes) */
	bool acked;			/* paused and acknowledged; under vm->lock */
	uint64_t exits;			/* KVM_RUN returns, for stats */
};

/* Create the vCPU @id in @vm: fd, kvm_run mapping, CPUID, MSRs, LAPIC, MP state. */
int  vcpu_init(struct vcpu *v, struct vm *vm, unsigned int id);
void vcpu_destroy(struct vcpu *v);
/* Put the BSP at the 64-bit entry point (registers from boot/linux.c). */
struct boot_info;
int  vcpu_set_boot_state(struct vcpu *v, const struct boot_info *bi);

/*
 * Decode the exit in @run: dispatch PIO/MMIO on @pio/@mmio and return VM_STOP_NONE to keep
 * running, or the reason the VM must stop. Pure apart from the bus handlers, so unit tests
 * drive it with a fake kvm_run. @code receives a detail (system event type, exit reason).
 */
enum vm_stop_reason vcpu_exit_handle(struct kvm_run *run, struct bus *pio, struct bus *mmio,
				     uint64_t *code);
/*
 * One KVM_RUN and its exit: VM_STOP_NONE to continue (also after -EINTR from a kick), a stop
 * reason, or VM_STOP_INTERNAL when KVM_RUN itself fails. Stop reasons that are vCPU faults
 * have the registers dumped to the log.
 */
enum vm_stop_reason vcpu_run_once(struct vcpu *v, uint64_t *code);
/* Log the general-purpose and system registers of @v (error level). */
void vcpu_dump_regs(struct vcpu *v);

/* Thread management (vcpu.c); vm.c drives them. */
int  vcpu_start(struct vcpu *v);
void vcpu_kick(struct vcpu *v);		/* set immediate_exit + signal; request already set */
void vcpu_join(struct vcpu *v);
/* Install the empty SIGVCPUKICK handler (once per process). */
int  vcpu_signal_setup(void);

/* CPUID (cpuid.c): the host's supported list, and the per-vCPU patch applied to a copy. */
int  cpuid_get_supported(int sys_fd, struct kvm_cpuid2 **out);
void cpuid_patch(struct kvm_cpuid2 *c, unsigned int apic_id, unsigned int nr_cpus);
/* MSRs (msr.c): KVM's index list, and boot values for the ones it reports. */
int  msr_list_get(int sys_fd, struct kvm_msr_list **out);
/* @mtrr: CPUID has MTRR, so MTRRdefType is programmed too. */
int  msr_init(int vcpu_fd, const struct kvm_msr_list *list, bool mtrr);
/* CPUID.1:EDX bit @bit of the supported list. */
bool cpuid_has_edx1(const struct kvm_cpuid2 *c, unsigned int bit);
/* Set CPUID.1:ECX bit @bit (features KVM emulates but leaves to userspace to advertise). */
void cpuid_set_ecx1(struct kvm_cpuid2 *c, unsigned int bit);
/* Values msr_init() programs, for tests: true if @index is initialised, value in @val. */
bool msr_boot_value(uint32_t index, uint64_t *val);

#endif
