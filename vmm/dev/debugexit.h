/* SPDX-License-Identifier: MIT */
/*
 * Debug-exit port (0xF4, like QEMU's isa-debug-exit but without its (v << 1) | 1 encoding):
 * a 1-, 2- or 4-byte write of v at the port asks the VMM to exit with status v. Only the
 * tiny self-made test guests use it. Reads return 0. Runs on vCPU threads; no state.
 */
#ifndef VMM_DEV_DEBUGEXIT_H
#define VMM_DEV_DEBUGEXIT_H

#include "vmm/bus.h"
#include "vmm/platform.h"

#define DEBUGEXIT_NR_PORTS	4

struct debugexit {
	void (*request_exit)(void *opaque, enum platform_exit why, int code);
	void *opaque;
};

/* Handlers for [0xf4, 0xf8); opaque = struct debugexit *. */
extern const struct bus_ops debugexit_ops;

#endif
