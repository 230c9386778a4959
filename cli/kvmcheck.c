// SPDX-License-Identifier: MIT
/*
 * kvmcheck: print in one line what /dev/kvm is (kvm_detect.h) and exit with a status scripts
 * can branch on: 0 hardware-accelerated, 2 emulation-only, 1 missing or unusable.
 *   usage: kvmcheck [--no-calibrate] [--verbose]
 */
#define LOG_TAG "kvmcheck"
#include <stdio.h>
#include <string.h>

#include "vmm/kvm_detect.h"
#include "vmm/lib/log.h"

int main(int argc, char **argv)
{
	struct kvm_accel_info info;
	bool cal = true, verbose = false;

	log_init_from_env();
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--no-calibrate") == 0) {
			cal = false;
		} else if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
			verbose = true;
		} else {
			fprintf(stderr, "usage: kvmcheck [--no-calibrate] [--verbose]\n"
				"  exit 0: hardware-accelerated KVM, 2: emulation-only, 1: none/unusable\n");
			return 1;
		}
	}
	if (kvm_detect(&info, cal) < 0) {
		fprintf(stderr, "kvmcheck: detection failed\n");
		return 1;
	}
	puts(info.line);
	if (verbose)
		printf("accel=%d module=%s mips=%.1f\n", info.accel, info.module, info.mips);
	switch (info.accel) {
	case KVM_ACCEL_HARDWARE:
		return 0;
	case KVM_ACCEL_EMULATED:
		return 2;
	default:
		return 1;
	}
}
