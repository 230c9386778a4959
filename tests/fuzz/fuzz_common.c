// SPDX-License-Identifier: MIT
/*
 * Linked into the fuzz targets over guest memory (fuzz_virtqueue, fuzz_net): the libFuzzer
 * start-up hook and the KVM ioctl wrapper memory.c references for guest_mem_map_kvm.
 */
#include <stdlib.h>

#include "vmm/lib/log.h"

int kvm_ioctl(int fd, unsigned long req, void *arg);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Never called: the targets map no guest memory into a VM. */
int kvm_ioctl(int fd, unsigned long req, void *arg)
{
	(void)fd; (void)req; (void)arg;
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc; (void)argv;
	log_max_level = LOG_ERR;	/* hostile inputs log warnings by design */
	return 0;
}
