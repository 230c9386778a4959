/* SPDX-License-Identifier: MIT */
/*
 * KVM-side state of a VM for snapshots and migration (vmm/state.h components):
 *
 *   "kvm-vm" [""]   vm_state.c: the in-kernel irqchip (PIC master, PIC slave, IOAPIC), the
 *                   PIT (KVM_GET_PIT2) and the KVM clock (KVM_GET_CLOCK).
 *   "vcpu"   ["N"]  vcpu_state.c: one per vCPU — GPRs, special registers (sregs2 when KVM
 *                   has it), XSAVE (KVM_GET_XSAVE2 size from KVM_CAP_XSAVE2) or the legacy
 *                   FPU, XCRs, every MSR of KVM_GET_MSR_INDEX_LIST that KVM can read (TSC,
 *                   kvmclock MSRs included), the LAPIC, vCPU events, MP state, debug
 *                   registers, and the TSC frequency.
 *
 * vm_state_register_all() registers them in the order KVM needs on load: the irqchip and PIT
 * before any LAPIC, the vCPUs before the platform devices (whose post_load re-drives their
 * interrupt lines). The byte format of each section is described in docs/state-format.md
 * ("KVM sections").
 *
 * Threading: save/load run with every vCPU paused (vmm/state.h), on the thread that drives
 * the snapshot or migration.
 */
#ifndef VMM_VM_STATE_H
#define VMM_VM_STATE_H

struct state_registry;
struct vm;
struct vcpu;

/* The section types, for tests and for callers that register by hand. */
extern const struct state_ops vm_kvm_state_ops;		/* opaque: struct vm * */
extern const struct state_ops vcpu_state_ops;		/* opaque: struct vcpu * */

/*
 * Register "kvm-vm", every "vcpu" and the platform's section into @reg, in load order.
 * Main loop, before any save/load. 0 or -errno (logged).
 */
int vm_state_register_all(struct vm *vm, struct state_registry *reg);

#endif
