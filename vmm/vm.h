/* SPDX-License-Identifier: MIT */
/*
 * struct vm owns everything of one virtual machine: the KVM fds, guest RAM, the PIO/MMIO
 * buses, the vCPUs and the legacy platform. vm_create() builds it in a fixed, explicit order
 * (no constructor magic); main.c runs the event loop and turns the stop reason into the
 * process exit status.
 *
 * Threading and locks: @lock protects the pause/stop handshake (vcpu->acked, nr_acked,
 * paused, stop_reason); it is a leaf lock, never held while calling into devices or KVM.
 * vm_pause()/vm_resume() are called from one controlling thread at a time (the loop thread).
 * vm_request_stop() may be called from any thread, including vCPU threads in a device
 * handler (platform request_exit): it only records the reason, kicks and signals @stop_fd.
 */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "vmm/irq.h"
#include "vmm/pci/pci.h"
#include "vmm/config.h"
#include "vmm/kvm.h"
#include "vmm/memory.h"
#include "vmm/state.h"
#include "vmm/vcpu.h"

struct platform;
struct evloop;
struct virtio_blk;
struct virtio_net;
struct virtio_rng;
struct virtio_balloon;
struct ctl_server;

/* Process exit statuses (also in config.c's usage text). */
enum vm_exit_status {
	VM_EXIT_POWEROFF = 0,
	VM_EXIT_STARTUP = 1,
	VM_EXIT_USAGE = 2,
	VM_EXIT_REBOOT = 3,
	VM_EXIT_TRIPLE_FAULT = 4,
	VM_EXIT_INTERNAL = 5,
	VM_EXIT_CRASH = 6,
	VM_EXIT_KILLED = 7,
	/*
	 * Post-copy migration lost the VM: after the switch-over its memory was split between
	 * source and destination and one of them (or the link) died (migrate/postcopy_*.c).
	 */
	VM_EXIT_POSTCOPY_LOST = 8,
};

struct vm {
	const struct vm_config *cfg;
	struct kvm kvm;
	struct guest_mem mem;
	struct bus pio, mmio;
	struct vcpu *vcpus;
	unsigned int nr_vcpus;
	struct platform *platform;
	struct kvm_cpuid2 *cpuid;	/* supported list, patched per vCPU on a copy */
	struct kvm_msr_list *msrs;
	uint64_t rsdp_gpa;
	/*
	 * Snapshot/migration sections, in load order: "kvm-vm" (irqchip, PIT, clock), one "vcpu"
	 * per vCPU, then the platform devices. Save/load only while paused (vm_pause()).
	 */
	struct state_registry state;
	int console_out_fd;		/* UART output */
	struct irq irq;			/* GSI routing, irqfds (PCI INTx/MSI-X) */
	struct pci_bus pci;
	bool pci_ready;
	struct virtio_blk *disks[VM_MAX_DISKS];	/* blk0.. in --disk order */
	char disk_ids[VM_MAX_DISKS][16];
	unsigned int nr_disks;
	struct virtio_net *nets[VM_MAX_NICS];	/* net0.. in --net order */
	char nic_ids[VM_MAX_NICS][16];
	unsigned int nr_nets;
	struct virtio_rng *rng;			/* --rng, else NULL */
	struct virtio_balloon *balloon;		/* --balloon, else NULL */

	pthread_mutex_t lock;		/* leaf: pause/stop handshake, see above */
	pthread_cond_t cond;		/* vCPU acks and resume */
	unsigned int nr_acked;
	bool paused;
	enum vm_stop_reason stop_reason;	/* first reason wins */
	uint64_t stop_code;
	int stop_fd;			/* eventfd: becomes readable when the VM stops */
	uint64_t start_ns;
};

/* Build the VM from @cfg (kernel/firmware loaded, vCPUs created, not running). 0/-errno. */
int  vm_create(const struct vm_config *cfg, int console_out_fd, struct vm **out);
/*
 * The virtio devices of cfg (rng, disks, NICs, balloon), which need the event loop, with
 * their state sections. After vm_create, before vm_start. 0 or -errno (a one-line reason
 * printed); vm_destroy() frees the ones made. (vm_devices.c)
 */
int  vm_add_virtio(struct vm *vm, struct evloop *loop);
/* Control-socket commands of the devices (balloon-set/-info, query-devices). */
int  vm_devices_ctl_register(struct vm *vm, struct ctl_server *srv);
/* Free the virtio devices (vCPUs stopped, loop not running). */
void vm_devices_destroy(struct vm *vm);
/* Start one thread per vCPU. */
int  vm_start(struct vm *vm);
/* Stop and join the vCPU threads, free everything. */
void vm_destroy(struct vm *vm);

/* Returns once every vCPU is out of KVM_RUN and acknowledged. -EALREADY if paused. */
int  vm_pause(struct vm *vm);
int  vm_resume(struct vm *vm);
/* Record why the VM stops (first caller wins), stop the vCPUs, wake stop_fd. Any thread. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason why, uint64_t code);
bool vm_stopped(struct vm *vm);
bool vm_is_paused(struct vm *vm);
/* The process exit status for the recorded stop reason (enum vm_exit_status or a debug code). */
int  vm_exit_status(struct vm *vm);
/* "power-off", "reset", ... for logs. */
const char *vm_stop_reason_name(enum vm_stop_reason r);

#endif
