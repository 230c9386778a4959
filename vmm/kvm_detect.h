/* SPDX-License-Identifier: MIT */
/*
 * What is behind /dev/kvm? Hardware-accelerated KVM (kvm_intel / kvm_amd) runs an unmodified
 * Linux guest; an emulation-only one (PVM's "native" mode, kvm_pvm, which runs ordinary
 * guests through KVM's instruction emulator at ~1.5 M instructions/s) never boots it. The vmm
 * calls kvm_detect() at start-up to refuse at once instead of hanging for minutes; the
 * `kvmcheck` command prints the same verdict for people and scripts.
 */
#ifndef VMM_KVM_DETECT_H
#define VMM_KVM_DETECT_H

#include <stdbool.h>

enum kvm_accel {
	KVM_ACCEL_HARDWARE,		/* kvm_intel / kvm_amd and calibration passed */
	KVM_ACCEL_EMULATED,		/* PVM native mode, or failed the calibration */
	KVM_ACCEL_NO_DEVICE,		/* no /dev/kvm */
	KVM_ACCEL_NO_PERMISSION,	/* /dev/kvm exists but cannot be opened */
	KVM_ACCEL_BROKEN,		/* opens, but KVM_CREATE_VM or the calibration guest fails */
};

struct kvm_accel_info {
	enum kvm_accel accel;
	char module[32];		/* "kvm_amd", "kvm_intel", "kvm_pvm", or "" if unknown */
	double mips;			/* calibration: guest instructions per second / 1e6 (0 if not run) */
	char line[256];			/* one human-readable line: what it is and what to do */
};

/*
 * Probe /dev/kvm. With @calibrate, also run a tiny real-mode guest loop (well under a
 * second even on an emulation-only KVM) to measure its speed. Returns 0 and fills @out; the
 * verdict is in out->accel. Never exits or prints.
 */
int kvm_detect(struct kvm_accel_info *out, bool calibrate);

#endif
