// SPDX-License-Identifier: MIT
/*
 * probe-int3: the smallest guest that separates a real KVM from PVM's emulation-only mode.
 * A 64-bit long-mode loop executes `int3` N times; each one is delivered through an IDT gate
 * to a handler that counts it in r8 and returns with iretq. Hardware KVM (or SVM in the test
 * host) runs it in milliseconds; PVM's native mode stops at the first int3 with
 * KVM_EXIT_INTERNAL_ERROR (see shared/kvm-here.md).
 *
 *   usage: probe-int3 [N]      (default 100000)
 *   exit:  0 all N int3 handled (prints the time), 3 KVM_EXIT_INTERNAL_ERROR at the int3,
 *          1 any other failure. A 20 s alarm bounds the run.
 *
 * Guest-physical layout (2 MiB of RAM, one 2 MiB identity-mapped page):
 *   0x0500 GDT   0x1000 PML4   0x2000 PDPT   0x3000 PD   0x4000 IDT (32 gates)
 *   0x7000 stack top   0x8000 code   0x9000 int3 handler   0x9100 other-vector handler
 */
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RAM_SIZE	(2u << 20)
#define GDT		0x0500
#define PML4		0x1000
#define PDPT		0x2000
#define PD		0x3000
#define IDT		0x4000
#define STACK_TOP	0x7000
#define CODE		0x8000
#define H_INT3		0x9000
#define H_OTHER		0x9100
#define INT3_OFFSET	7		/* the int3 is the 8th byte of the code below */

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* A 64-bit interrupt gate: present, DPL0, type 0xE, selector 8 (the code segment). */
static void set_gate(uint8_t *ram, int vec, uint64_t handler)
{
	uint64_t *g = (uint64_t *)(ram + IDT + vec * 16);

	g[0] = (handler & 0xffff) | (8ull << 16) | (0x8eull << 40) | (((handler >> 16) & 0xffff) << 48);
	g[1] = handler >> 32;
}

static struct kvm_segment seg(uint16_t sel, uint8_t type, int code)
{
	struct kvm_segment s = {
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type, .present = 1,
		.dpl = 0, .s = 1, .g = 1, .l = code ? 1 : 0, .db = code ? 0 : 1,
	};
	return s;
}

int main(int argc, char **argv)
{
	uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 0) : 100000;
	struct {
		struct kvm_cpuid2 c;
		struct kvm_cpuid_entry2 e[256];
	} cpuid = { .c.nent = 256 };
	struct kvm_userspace_memory_region region;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_run *run;
	uint8_t *ram;
	double t0;
	int kvm, vm, vcpu;
	long sz;

	alarm(20);
	if (n == 0)
		errx(1, "N must be > 0");
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		err(1, "/dev/kvm");
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		err(1, "KVM_CREATE_VM");
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED)
		err(1, "mmap");
	region = (struct kvm_userspace_memory_region){
		.slot = 0, .guest_phys_addr = 0, .memory_size = RAM_SIZE, .userspace_addr = (uintptr_t)ram,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		err(1, "KVM_SET_USER_MEMORY_REGION");
	(void)ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		err(1, "KVM_CREATE_VCPU");
	/* EFER.LME is refused unless the guest's CPUID says long mode */
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0)
		err(1, "KVM_GET_SUPPORTED_CPUID");
	if (ioctl(vcpu, KVM_SET_CPUID2, &cpuid) < 0)
		err(1, "KVM_SET_CPUID2");
	sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		err(1, "mmap kvm_run");

	/* GDT: null, 64-bit code (0x08), data (0x10) */
	uint64_t *gdt = (uint64_t *)(ram + GDT);
	gdt[0] = 0;
	gdt[1] = 0x00af9b000000ffffull;
	gdt[2] = 0x00cf93000000ffffull;
	/* one 2 MiB page, identity-mapped, writable */
	((uint64_t *)(ram + PML4))[0] = PDPT | 3;
	((uint64_t *)(ram + PDPT))[0] = PD | 3;
	((uint64_t *)(ram + PD))[0] = 0x83;
	for (int v = 0; v < 32; v++)
		set_gate(ram, v, v == 3 ? H_INT3 : H_OTHER);

	static const uint8_t code[] = {
		0xb9, 0, 0, 0, 0,		/* mov ecx, N (patched) */
		0x90, 0x90,			/* nop; nop */
		0xcc,				/* int3           <- INT3_OFFSET */
		0x48, 0xff, 0xc9,		/* dec rcx */
		0x75, 0xfa,			/* jnz int3 */
		0xf4,				/* hlt */
	};
	static const uint8_t int3_handler[] = { 0x49, 0xff, 0xc0, 0x48, 0xcf };	/* inc r8; iretq */
	/* any other exception: report the vector's stand-in 'X' on port 0xe9 and stop */
	static const uint8_t other_handler[] = { 0xb0, 'X', 0xe6, 0xe9, 0xf4 };
	memcpy(ram + CODE, code, sizeof(code));
	memcpy(ram + CODE + 1, &n, 4);
	memcpy(ram + H_INT3, int3_handler, sizeof(int3_handler));
	memcpy(ram + H_OTHER, other_handler, sizeof(other_handler));

	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		err(1, "KVM_GET_SREGS");
	sregs.cs = seg(0x08, 0xb, 1);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = seg(0x10, 0x3, 0);
	sregs.gdt.base = GDT;
	sregs.gdt.limit = 3 * 8 - 1;
	sregs.idt.base = IDT;
	sregs.idt.limit = 32 * 16 - 1;
	sregs.cr3 = PML4;
	sregs.cr4 = 1u << 5;			/* PAE */
	sregs.cr0 = 0x80000011;			/* PG | ET | PE */
	sregs.efer = (1u << 8) | (1u << 10);	/* LME | LMA */
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		err(1, "KVM_SET_SREGS");
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE;
	regs.rsp = STACK_TOP;
	regs.rflags = 0x2;
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		err(1, "KVM_SET_REGS");

	t0 = now();
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			err(1, "KVM_RUN");
		}
		if (ioctl(vcpu, KVM_GET_REGS, &regs) < 0)
			err(1, "KVM_GET_REGS");
		switch (run->exit_reason) {
		case KVM_EXIT_HLT:
			if (regs.r8 != n || regs.rcx != 0 || regs.rip != CODE + sizeof(code)) {
				printf("probe-int3: FAIL: halted with r8=%llu rcx=%llu rip=%#llx (want r8=%u)\n",
				       regs.r8, regs.rcx, regs.rip, n);
				return 1;
			}
			printf("probe-int3: OK: %u int3 handled through the IDT in %.3f s\n", n, now() - t0);
			return 0;
		case KVM_EXIT_INTERNAL_ERROR:
			printf("probe-int3: KVM_EXIT_INTERNAL_ERROR (suberror %u) at rip=%#llx%s after %llu int3\n",
			       run->internal.suberror, regs.rip,
			       regs.rip == CODE + INT3_OFFSET ? " (the int3)" : "", regs.r8);
			return 3;
		case KVM_EXIT_IO:
			printf("probe-int3: FAIL: unexpected exception (marker on port %#x)\n", run->io.port);
			return 1;
		default:
			printf("probe-int3: FAIL: exit reason %u at rip=%#llx\n", run->exit_reason, regs.rip);
			return 1;
		}
	}
}
