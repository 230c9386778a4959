// SPDX-License-Identifier: MIT
/*
 * The VM object (vm.h): creation in a fixed order, the vCPU threads, pause/resume and stop.
 *
 * Creation order matters to KVM: the TSS and identity-map addresses and the irqchip must
 * exist before any vCPU; CPUID must be set before the vCPU first runs; the platform must
 * have written the ACPI tables before boot_params records the RSDP.
 *
 * The legacy platform (platform.h: ACPI, PM, UART, RTC, i8042, debug-exit) is created through
 * its env seam; it reports power-off/reset/debug-exit back through platform_request_exit().
 */
#define LOG_TAG "vm"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm/boot/linux.h"
#include "vmm/lib/log.h"
#include "vmm/layout.h"
#include "vmm/platform.h"
#include "vmm/virtio/balloon.h"
#include "vmm/virtio/blk.h"
#include "vmm/virtio/net.h"
#include "vmm/virtio/rng.h"
#include "vmm/virtio/pci.h"
#include "vmm/vm.h"
#include "vmm/vm_state.h"

static uint8_t cf9_read(void *o) { return platform_reset_control_read(o); }
static void cf9_write(void *o, uint8_t v) { platform_reset_control_write(o, v); }

/* Below 4 GiB, above the LAPIC, in the MMIO gap: KVM's private pages on Intel VMX. */
#define VM_IDENTITY_MAP_ADDR	0xfffbc000ull
#define VM_TSS_ADDR		0xfffbd000ull

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *vm_stop_reason_name(enum vm_stop_reason r)
{
	switch (r) {
	case VM_STOP_NONE: return "running";
	case VM_STOP_POWEROFF: return "power-off";
	case VM_STOP_RESET: return "reset";
	case VM_STOP_DEBUG_EXIT: return "debug-exit";
	case VM_STOP_TRIPLE_FAULT: return "triple-fault";
	case VM_STOP_INTERNAL: return "internal-error";
	case VM_STOP_CRASH: return "guest-crash";
	case VM_STOP_HALT: return "halt";
	case VM_STOP_KILLED: return "killed";
	case VM_STOP_POSTCOPY_LOST: return "post-copy-lost";
	}
	return "?";
}

static void platform_request_exit(void *opaque, enum platform_exit why, int code)
{
	struct vm *vm = opaque;

	switch (why) {
	case PLATFORM_EXIT_POWEROFF:
		vm_request_stop(vm, VM_STOP_POWEROFF, 0);
		break;
	case PLATFORM_EXIT_RESET:
		vm_request_stop(vm, VM_STOP_RESET, 0);
		break;
	case PLATFORM_EXIT_DEBUG:
		vm_request_stop(vm, VM_STOP_DEBUG_EXIT, (uint64_t)(unsigned int)code);
		break;
	}
}


/* Map a whole file read-only; the caller munmaps. Logs "what: path: why". */
static int map_file(const char *what, const char *path, void **buf, size_t *len)
{
	struct stat st;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		log_err("%s %s: %s", what, path, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		ret = S_ISREG(st.st_mode) ? -ENOEXEC : -EINVAL;
		log_err("%s %s: not a regular, non-empty file", what, path);
		goto out;
	}
	*buf = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (*buf == MAP_FAILED) {
		ret = -errno;
		log_err("%s %s: mmap: %s", what, path, strerror(-ret));
		goto out;
	}
	*len = (size_t)st.st_size;
	ret = 0;
out:
	close(fd);
	return ret;
}

static int load_guest(struct vm *vm, struct boot_info *bi)
{
	const struct vm_config *cfg = vm->cfg;
	void *kbuf = NULL, *ibuf = NULL;
	size_t klen = 0, ilen = 0;
	int ret;

	if (cfg->firmware) {
		ret = map_file("firmware", cfg->firmware, &kbuf, &klen);
		if (ret < 0)
			return ret;
		ret = boot_flat_load(&vm->mem, kbuf, klen, bi);
		munmap(kbuf, klen);
		return ret;
	}
	ret = map_file("kernel", cfg->kernel, &kbuf, &klen);
	if (ret < 0)
		return ret;
	if (cfg->initrd) {
		ret = map_file("initrd", cfg->initrd, &ibuf, &ilen);
		if (ret < 0)
			goto out;
	}
	ret = boot_linux_load(&vm->mem, kbuf, klen, ibuf, ilen, cfg->append, vm->rsdp_gpa, bi);
	if (ibuf)
		munmap(ibuf, ilen);
out:
	munmap(kbuf, klen);
	return ret;
}

static int setup_kvm_vm(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	uint64_t ident = VM_IDENTITY_MAP_ADDR;
	int ret;

	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident);
	if (ret < 0 && ret != -EINVAL && ret != -ENOTTY) {
		log_err("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(-ret));
		return ret;
	}
	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_SET_TSS_ADDR, (void *)(uintptr_t)VM_TSS_ADDR);
	if (ret < 0) {
		log_err("KVM_SET_TSS_ADDR: %s", strerror(-ret));
		return ret;
	}
	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_CREATE_IRQCHIP, NULL);
	if (ret < 0) {
		log_err("KVM_CREATE_IRQCHIP: %s", strerror(-ret));
		return ret;
	}
	ret = kvm_ioctl(vm->kvm.vm_fd, KVM_CREATE_PIT2, &pit);
	if (ret < 0) {
		log_err("KVM_CREATE_PIT2: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

int vm_create(const struct vm_config *cfg, int console_out_fd, struct vm **out)
{
	struct platform_env env;
	struct boot_info bi;
	struct vm *vm;
	unsigned int i;
	int ret;

	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->start_ns = now_ns();
	vm->cfg = cfg;
	vm->console_out_fd = console_out_fd;
	vm->kvm.sys_fd = vm->kvm.vm_fd = -1;
	vm->mem.memfd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_fd < 0) {
		ret = -errno;
		log_err("eventfd: %s", strerror(-ret));
		goto err_free;
	}
	ret = vcpu_signal_setup();
	if (ret < 0)
		goto err_stopfd;

	ret = kvm_open(&vm->kvm, cfg->kvm_path);
	if (ret < 0)
		goto err_stopfd;
	if (cfg->cpus > (unsigned int)vm->kvm.max_vcpus) {
		log_err("%u vCPUs requested but KVM on this host allows at most %d", cfg->cpus,
			vm->kvm.max_vcpus);
		ret = -E2BIG;
		goto err_kvm;
	}
	if (cfg->cpus > VM_MAX_CPUS) {
		log_err("%u vCPUs requested but this monitor supports at most %d (8-bit xAPIC ids)",
			cfg->cpus, VM_MAX_CPUS);
		ret = -E2BIG;
		goto err_kvm;
	}
	if (cfg->cpus > (unsigned int)vm->kvm.nr_vcpus)
		log_warn("%u vCPUs is more than KVM recommends on this host (%d)", cfg->cpus,
			 vm->kvm.nr_vcpus);
	ret = setup_kvm_vm(vm);
	if (ret < 0)
		goto err_kvm;

	ret = guest_mem_init(&vm->mem, cfg->mem_bytes);
	if (ret < 0)
		goto err_kvm;
	ret = guest_mem_map_kvm(&vm->mem, vm->kvm.vm_fd, 0);
	if (ret < 0)
		goto err_mem;

	ret = bus_init(&vm->pio, "pio");
	if (ret < 0)
		goto err_mem;
	ret = bus_init(&vm->mmio, "mmio");
	if (ret < 0)
		goto err_pio;

	ret = cpuid_get_supported(vm->kvm.sys_fd, &vm->cpuid);
	if (ret < 0)
		goto err_mmio;
	ret = msr_list_get(vm->kvm.sys_fd, &vm->msrs);
	if (ret < 0)
		goto err_cpuid;
	/*
	 * The in-kernel LAPIC emulates the TSC-deadline timer, but KVM leaves advertising it to
	 * userspace (KVM_CAP_TSC_DEADLINE_TIMER). Linux prefers it to the periodic LAPIC timer.
	 */
	if (kvm_cap(&vm->kvm, KVM_CAP_TSC_DEADLINE_TIMER))
		cpuid_set_ecx1(vm->cpuid, 24);

	vm->nr_vcpus = cfg->cpus;
	env = (struct platform_env){
		.pio = &vm->pio, .mmio = &vm->mmio, .mem = &vm->mem, .vm_fd = vm->kvm.vm_fd,
		.nr_cpus = vm->nr_vcpus, .console_out_fd = console_out_fd,
		.request_exit = platform_request_exit, .opaque = vm,
	};
	ret = platform_create(&env, &vm->platform);
	if (ret < 0) {
		log_err("platform devices: %s", strerror(-ret));
		goto err_msrs;
	}
	{
		uint64_t mb = cfg->mem_bytes;
		struct pci_env penv = { .pio = &vm->pio, .mmio = &vm->mmio, .irq = &vm->irq,
			.vm_fd = vm->kvm.vm_fd,
			.ram_top = mb > MEM_32BIT_GAP_START ? MEM_32BIT_GAP_END + mb - MEM_32BIT_GAP_START : mb,
			.cf9_read = cf9_read, .cf9_write = cf9_write, .opaque = vm->platform };

		ret = irq_init(&vm->irq, vm->kvm.vm_fd, kvm_cap(&vm->kvm, KVM_CAP_IRQ_ROUTING));
		if (ret) {
			log_err("irq routing: %s", strerror(-ret));
			goto err_platform;
		}
		ret = irq_route_ioapic(&vm->irq, 0, 2);
		if (!ret)
			ret = pci_init(&vm->pci, &penv);
		if (ret) {
			log_err("pci: %s", strerror(-ret));
			goto err_irq;
		}
		ret = pci_acpi_contribute(&vm->pci, platform_acpi(vm->platform));
		if (ret) {
			log_err("pci: %s", strerror(-ret));
			goto err_pci;
		}
		vm->pci_ready = true;
	}
	ret = platform_write_acpi(vm->platform, &vm->rsdp_gpa);
	if (ret < 0) {
		log_err("ACPI tables: %s", strerror(-ret));
		goto err_pci;
	}

	ret = load_guest(vm, &bi);
	if (ret < 0)
		goto err_pci;

	vm->vcpus = calloc(vm->nr_vcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		ret = -ENOMEM;
		goto err_pci;
	}
	for (i = 0; i < vm->nr_vcpus; i++) {
		ret = vcpu_init(&vm->vcpus[i], vm, i);
		if (ret < 0)
			goto err_vcpus;
	}
	ret = vcpu_set_boot_state(&vm->vcpus[0], &bi);
	if (ret < 0)
		goto err_vcpus;
	/* Snapshot/migration sections in load order: KVM devices, vCPUs, platform (vm_state.h). */
	state_registry_init(&vm->state);
	ret = vm_state_register_all(vm, &vm->state);
	if (ret < 0) {
		state_registry_destroy(&vm->state);
		goto err_vcpus;
	}

	log_dbg("created: %u vCPUs, %" PRIu64 " MiB, entry 0x%" PRIx64 ", initrd 0x%" PRIx64 "+%" PRIu64,
		vm->nr_vcpus, cfg->mem_bytes >> 20, bi.entry, bi.initrd_addr, bi.initrd_size);
	*out = vm;
	return 0;

err_vcpus:
	while (i-- > 0)
		vcpu_destroy(&vm->vcpus[i]);
	free(vm->vcpus);
err_pci:
	vm->pci_ready = false;
	pci_destroy(&vm->pci);
err_irq:
	irq_destroy(&vm->irq);
err_platform:
	platform_destroy(vm->platform);
err_msrs:
	free(vm->msrs);
err_cpuid:
	free(vm->cpuid);
err_mmio:
	bus_destroy(&vm->mmio);
err_pio:
	bus_destroy(&vm->pio);
err_mem:
	guest_mem_destroy(&vm->mem);
err_kvm:
	kvm_close(&vm->kvm);
err_stopfd:
	close(vm->stop_fd);
err_free:
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
	return ret;
}

int vm_start(struct vm *vm)
{
	unsigned int i;
	int ret;

	for (i = 0; i < vm->nr_vcpus; i++) {
		ret = vcpu_start(&vm->vcpus[i]);
		if (ret < 0) {
			vm_request_stop(vm, VM_STOP_INTERNAL, 0);
			return ret;
		}
	}
	return 0;
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason why, uint64_t code)
{
	uint64_t one = 1;
	unsigned int i;

	pthread_mutex_lock(&vm->lock);
	if (vm->stop_reason == VM_STOP_NONE) {
		vm->stop_reason = why;
		vm->stop_code = code;
	}
	for (i = 0; i < vm->nr_vcpus; i++)
		__atomic_store_n(&vm->vcpus[i].request, VCPU_REQ_STOP, __ATOMIC_SEQ_CST);
	pthread_cond_broadcast(&vm->cond);	/* paused vCPUs leave their wait */
	pthread_mutex_unlock(&vm->lock);
	for (i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i].run)
			vcpu_kick(&vm->vcpus[i]);
	if (write(vm->stop_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("stop eventfd: %s", strerror(errno));
}

bool vm_stopped(struct vm *vm)
{
	bool stopped;

	pthread_mutex_lock(&vm->lock);
	stopped = vm->stop_reason != VM_STOP_NONE;
	pthread_mutex_unlock(&vm->lock);
	return stopped;
}

bool vm_is_paused(struct vm *vm)
{
	bool paused;

	pthread_mutex_lock(&vm->lock);
	paused = vm->paused;
	pthread_mutex_unlock(&vm->lock);
	return paused;
}

int vm_pause(struct vm *vm)
{
	struct timespec deadline;
	unsigned int i;
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->paused || vm->stop_reason != VM_STOP_NONE) {
		ret = vm->paused ? -EALREADY : -ESHUTDOWN;
		goto out;
	}
	for (i = 0; i < vm->nr_vcpus; i++) {
		int expect = VCPU_REQ_NONE;

		__atomic_compare_exchange_n(&vm->vcpus[i].request, &expect, VCPU_REQ_PAUSE, false,
					    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	}
	pthread_mutex_unlock(&vm->lock);
	for (i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);

	/* A vCPU leaves KVM_RUN within microseconds of the kick; 5 s means KVM is stuck. */
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	pthread_mutex_lock(&vm->lock);
	while (vm->nr_acked < vm->nr_vcpus && ret == 0)
		ret = -pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline);
	if (ret == 0)
		vm->paused = true;
	else
		log_err("pause: only %u of %u vCPUs acknowledged", vm->nr_acked, vm->nr_vcpus);
out:
	pthread_mutex_unlock(&vm->lock);
	if (ret == -ETIMEDOUT)
		vm_resume(vm);
	return ret;
}

int vm_resume(struct vm *vm)
{
	unsigned int i;
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	for (i = 0; i < vm->nr_vcpus; i++) {
		int expect = VCPU_REQ_PAUSE;

		__atomic_compare_exchange_n(&vm->vcpus[i].request, &expect, VCPU_REQ_NONE, false,
					    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	}
	if (!vm->paused)
		ret = -EALREADY;
	vm->paused = false;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	/* A migration that failed after quiescing the disks resumes them here (no-op otherwise). */
	for (i = 0; i < vm->nr_disks; i++)
		virtio_blk_resume(vm->disks[i]);
	for (i = 0; i < vm->nr_nets; i++)
		virtio_net_resume(vm->nets[i]);
	return ret;
}

int vm_exit_status(struct vm *vm)
{
	enum vm_stop_reason r;
	uint64_t code;

	pthread_mutex_lock(&vm->lock);
	r = vm->stop_reason;
	code = vm->stop_code;
	pthread_mutex_unlock(&vm->lock);
	switch (r) {
	case VM_STOP_POWEROFF: return VM_EXIT_POWEROFF;
	case VM_STOP_RESET: return VM_EXIT_REBOOT;
	case VM_STOP_DEBUG_EXIT: return (int)(code & 0xff);
	case VM_STOP_TRIPLE_FAULT: return VM_EXIT_TRIPLE_FAULT;
	case VM_STOP_CRASH: return VM_EXIT_CRASH;
	case VM_STOP_KILLED: return VM_EXIT_KILLED;
	case VM_STOP_POSTCOPY_LOST: return VM_EXIT_POSTCOPY_LOST;
	case VM_STOP_HALT:		/* a halted vCPU with no LAPIC to wake it never runs again */
	case VM_STOP_INTERNAL:
	case VM_STOP_NONE:
		break;
	}
	return VM_EXIT_INTERNAL;
}

void vm_destroy(struct vm *vm)
{
	unsigned int i;

	if (!vm)
		return;
	vm_request_stop(vm, VM_STOP_KILLED, 0);
	for (i = 0; i < vm->nr_vcpus; i++)
		vcpu_join(&vm->vcpus[i]);
	for (i = 0; i < vm->nr_vcpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
	free(vm->vcpus);
	state_registry_destroy(&vm->state);
	vm_devices_destroy(vm);
	if (vm->pci_ready) {
		pci_destroy(&vm->pci);
		irq_destroy(&vm->irq);
	}
	platform_destroy(vm->platform);
	free(vm->msrs);
	free(vm->cpuid);
	bus_destroy(&vm->mmio);
	bus_destroy(&vm->pio);
	guest_mem_destroy(&vm->mem);
	kvm_close(&vm->kvm);
	close(vm->stop_fd);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
}
