// SPDX-License-Identifier: MIT
/*
 * Tell a hardware-accelerated /dev/kvm from an emulation-only one (see kvm_detect.h).
 *
 * Three pieces of evidence, cheapest first: which vendor module is loaded
 * (/sys/module/{kvm_intel,kvm_amd,kvm_pvm}), whether the CPU advertises vmx/svm, and a short
 * calibration guest. The calibration is the only one that measures what matters — how fast a
 * guest actually runs — so it overrides the other two when they disagree.
 *
 * The calibration guest is a few bytes of real-mode code in one page (32-bit operands):
 *
 *	0x1000: in   eax, 0x10		; ask the host for the next chunk size
 *	        mov  ecx, eax
 *	loop:   dec  ecx
 *	        jnz  loop
 *	        jmp  0x1000
 *
 * Each `in` is an exit, so the host regains control after every chunk: it can stop without
 * signals or threads (a library must not install signal handlers behind the vmm's back). The
 * chunk doubles from a small size until one chunk alone takes CAL_CHUNK_NS, and the speed is
 * the best of CAL_SAMPLES chunks of that size: long enough that the cost of the exit itself (large when KVM is nested in the
 * TCG test host) does not dominate, short enough on a slow KVM (PVM: ~5 ms in all). Real mode
 * needs no page tables or GDT and runs on every KVM flavour, including PVM's native mode (a
 * 64-bit int3 does not: it ends in KVM_EXIT_INTERNAL_ERROR).
 */
#define LOG_TAG "kvm-detect"
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm/kvm_detect.h"
#include "vmm/lib/log.h"

#define CAL_PORT	0x10
#define CAL_GPA		0x1000
#define CAL_CHUNK_NS	(5 * 1000 * 1000ull)	/* one chunk this long gives the speed */
#define CAL_LIMIT_NS	(2000 * 1000 * 1000ull)	/* never calibrate longer than this */
#define CAL_SAMPLES	8			/* chunks of that size measured */
#define CAL_FIRST_CHUNK	1000u
#define CAL_MAX_CHUNK	(1u << 28)
/*
 * Below this a guest kernel cannot boot in useful time. PVM's native mode measures ~1.5
 * (0.2 with the machine loaded); hardware measures in the thousands, and even nested inside
 * the TCG test host ~230 on a quiet machine and still ~25 when other jobs load it 10x.
 */
#define CAL_MIN_MIPS	10.0
/*
 * With kvm_intel/kvm_amd loaded the CPU does the work, and the calibration only has to catch
 * a KVM that is really an emulator behind a hardware module name: anything that slow runs
 * at PVM-like speeds (~1.5). A nested hardware KVM on a TCG test host with the machine
 * loaded 15x has been seen near 10, so the bar is lower than for an unknown module.
 */
#define CAL_MIN_MIPS_HW_MODULE	3.0

static const uint8_t cal_code[] = {
	0x66, 0xe5, CAL_PORT,	/* in eax, 0x10 */
	0x66, 0x89, 0xc1,	/* mov ecx, eax */
	0x66, 0x49,		/* dec ecx */
	0x75, 0xfc,		/* jnz -4 (the dec) */
	0xeb, 0xf4,		/* jmp -12 (the in) */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool path_exists(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0;
}

/* "kvm_amd" etc. into @out; "" when none of the known vendor modules is loaded. */
static void detect_module(char *out, size_t len)
{
	/* PVM first: it can sit beside kvm_amd/kvm_intel, and then /dev/kvm may be either */
	static const char *const mods[] = { "kvm_pvm", "kvm_intel", "kvm_amd" };
	char p[64];

	out[0] = '\0';
	for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
		snprintf(p, sizeof(p), "/sys/module/%s", mods[i]);
		if (path_exists(p)) {
			snprintf(out, len, "%s", mods[i]);
			return;
		}
	}
}

/* Does /proc/cpuinfo's first "flags" line name vmx or svm? */
static bool cpu_has_virt_flag(void)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	char line[4096];
	bool found = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		found = strstr(line, " vmx") || strstr(line, " svm");
		break;
	}
	fclose(f);
	return found;
}

/*
 * Run the calibration guest on @vm. Returns 0 and sets *mips, or -errno; on a guest exit we
 * do not expect, -EIO and a description in @why.
 */
static int calibrate(int kvm, int vm, double *mips, char *why, size_t whylen)
{
	struct kvm_userspace_memory_region region = { 0 };
	struct kvm_run *run = MAP_FAILED;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	uint64_t t0, t_last, t, elapsed = 0;
	uint32_t chunk = 0, next = CAL_FIRST_CHUNK;
	unsigned int measured = 0;
	bool sized = false;
	void *mem;
	long run_size;
	int vcpu = -1, ret;

	mem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	memcpy(mem, cal_code, sizeof(cal_code));

	region.slot = 0;
	region.guest_phys_addr = CAL_GPA;
	region.memory_size = 0x1000;
	region.userspace_addr = (uintptr_t)mem;
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		ret = -errno;
		snprintf(why, whylen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
		goto out_mem;
	}
	/* Intel without unrestricted guest needs a TSS for real mode; harmless elsewhere */
	(void)ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul);

	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) {
		ret = -errno;
		snprintf(why, whylen, "KVM_CREATE_VCPU: %s", strerror(errno));
		goto out_mem;
	}
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (long)sizeof(*run)) {
		ret = -EINVAL;
		snprintf(why, whylen, "KVM_GET_VCPU_MMAP_SIZE: %ld", run_size);
		goto out_vcpu;
	}
	run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED) {
		ret = -errno;
		snprintf(why, whylen, "mmap kvm_run: %s", strerror(errno));
		goto out_vcpu;
	}

	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) {
		ret = -errno;
		snprintf(why, whylen, "KVM_GET_SREGS: %s", strerror(errno));
		goto out_run;
	}
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) {
		ret = -errno;
		snprintf(why, whylen, "KVM_SET_SREGS: %s", strerror(errno));
		goto out_run;
	}
	memset(&regs, 0, sizeof(regs));
	regs.rip = CAL_GPA;
	regs.rflags = 0x2;
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) {
		ret = -errno;
		snprintf(why, whylen, "KVM_SET_REGS: %s", strerror(errno));
		goto out_run;
	}

	*mips = 0.0;
	t0 = t_last = now_ns();
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			ret = -errno;
			snprintf(why, whylen, "KVM_RUN: %s", strerror(errno));
			goto out_run;
		}
		t = now_ns();
		elapsed = t - t0;
		if (run->exit_reason != KVM_EXIT_IO || run->io.port != CAL_PORT ||
		    run->io.direction != KVM_EXIT_IO_IN || run->io.size != 4 || run->io.count != 1) {
			ret = -EIO;
			snprintf(why, whylen, "calibration guest: unexpected exit %u", run->exit_reason);
			goto out_run;
		}
		/* the chunk just finished: its loop (dec+jnz per turn), plus in/mov/jmp */
		if (chunk && (sized || t - t_last >= CAL_CHUNK_NS || chunk >= CAL_MAX_CHUNK)) {
			double m = (2.0 * chunk + 3.0) * 1000.0 / (double)(t - t_last);

			/* noise (preemption, host load) only ever slows a chunk: keep the best */
			if (m > *mips)
				*mips = m;
			sized = true;
			if (++measured >= CAL_SAMPLES)
				break;
		}
		if (elapsed >= CAL_LIMIT_NS)
			break;
		if (!sized) {
			chunk = next;
			next = next >= CAL_MAX_CHUNK / 2 ? CAL_MAX_CHUNK : next * 2;
		}
		memcpy((uint8_t *)run + run->io.data_offset, &chunk, 4);
		t_last = now_ns();
	}
	ret = 0;

out_run:
	munmap(run, run_size);
out_vcpu:
	close(vcpu);
out_mem:
	munmap(mem, 0x1000);
	return ret;
}

static void set_line(struct kvm_accel_info *out, const char *detail)
{
	const char *mod = out->module[0] ? out->module : "unknown module";
	char cal[48] = "";

	if (out->mips > 0)
		snprintf(cal, sizeof(cal), ", %.1f M guest instr/s", out->mips);

	switch (out->accel) {
	case KVM_ACCEL_HARDWARE:
		snprintf(out->line, sizeof(out->line),
			 "kvm: hardware-accelerated (%s%s): real guests run here", mod, cal);
		break;
	case KVM_ACCEL_EMULATED:
		snprintf(out->line, sizeof(out->line),
			 "kvm: emulation-only (%s%s): an unmodified Linux guest cannot boot here; "
			 "use a host with VT-x/AMD-V, or the test host (tests/lab/run -- CMD)", mod, cal);
		break;
	case KVM_ACCEL_NO_DEVICE:
		snprintf(out->line, sizeof(out->line),
			 "kvm: no /dev/kvm: load kvm_intel or kvm_amd on a host with VT-x/AMD-V, "
			 "or use the test host (tests/lab/run -- CMD)");
		break;
	case KVM_ACCEL_NO_PERMISSION:
		snprintf(out->line, sizeof(out->line),
			 "kvm: /dev/kvm cannot be opened (%s): run as root or join the kvm group",
			 detail ? detail : "permission denied");
		break;
	case KVM_ACCEL_BROKEN:
		snprintf(out->line, sizeof(out->line), "kvm: /dev/kvm is unusable (%s, %s): %s",
			 mod, detail ? detail : "?",
			 "check dmesg; use a host with VT-x/AMD-V, or the test host (tests/lab/run -- CMD)");
		break;
	}
}

int kvm_detect(struct kvm_accel_info *out, bool calibrate_guest)
{
	char why[160] = "";
	bool virt_flag;
	int kvm, vm, ret, ver;

	memset(out, 0, sizeof(*out));
	detect_module(out->module, sizeof(out->module));
	virt_flag = cpu_has_virt_flag();

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		int e = errno;

		if (e == ENOENT || e == ENXIO || e == ENODEV)
			out->accel = KVM_ACCEL_NO_DEVICE;
		else if (e == EACCES || e == EPERM)
			out->accel = KVM_ACCEL_NO_PERMISSION;
		else
			out->accel = KVM_ACCEL_BROKEN;
		snprintf(why, sizeof(why), "open: %s", strerror(e));
		set_line(out, why);
		return 0;
	}

	ver = ioctl(kvm, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION) {
		out->accel = KVM_ACCEL_BROKEN;
		snprintf(why, sizeof(why), "KVM API version %d, want %d", ver, KVM_API_VERSION);
		goto out_kvm;
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		out->accel = KVM_ACCEL_BROKEN;
		snprintf(why, sizeof(why), "KVM_CREATE_VM: %s", strerror(errno));
		goto out_kvm;
	}

	if (calibrate_guest) {
		ret = calibrate(kvm, vm, &out->mips, why, sizeof(why));
		if (ret < 0) {
			log_dbg("calibration failed: %s", why);
			/* PVM is emulation-only whatever else goes wrong */
			out->accel = strcmp(out->module, "kvm_pvm") == 0 ? KVM_ACCEL_EMULATED
									 : KVM_ACCEL_BROKEN;
			close(vm);
			goto out_kvm;
		}
	}
	close(vm);

	if (strcmp(out->module, "kvm_pvm") == 0)
		out->accel = KVM_ACCEL_EMULATED;
	else if (calibrate_guest)
		out->accel = out->mips >= (out->module[0] ? CAL_MIN_MIPS_HW_MODULE : CAL_MIN_MIPS)
			     ? KVM_ACCEL_HARDWARE : KVM_ACCEL_EMULATED;
	else if (out->module[0] || virt_flag)
		out->accel = KVM_ACCEL_HARDWARE;
	else
		out->accel = KVM_ACCEL_EMULATED;
	log_dbg("module '%s' vmx/svm %d mips %.1f", out->module, virt_flag, out->mips);

out_kvm:
	close(kvm);
	set_line(out, why[0] ? why : NULL);
	return 0;
}
