/* SPDX-License-Identifier: MIT */
/*
 * The vmm command line, parsed into a plain struct that vm_create() consumes. Parsing does
 * no I/O (files are opened later), so it can be unit-tested with any argv.
 */
#ifndef VMM_CONFIG_H
#define VMM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VM_CONFIG_MAX_CPUS	4096	/* command-line sanity bound; vm_create() applies the real limits */
#define VM_MAX_DISKS		16	/* --disk options */
#define VM_MAX_NICS		8	/* --net options */
#define VM_MAX_CPUS		255	/* xAPIC ids fit in 8 bits: no x2APIC-only topologies */

#define VM_DISK_MAX_QUEUES	16	/* queues=N; = BLK_MAX_QUEUES (virtio/blk.h) */

/* One --disk PATH[,ro][,direct][,serial=S][,queues=N]. */
struct vm_disk_config {
	const char *path;		/* points into argv (options cut off) */
	bool read_only;
	bool direct;			/* O_DIRECT */
	const char *serial;		/* NULL: the device id ("blk0"...) */
	unsigned int queues;		/* request queues 1..VM_DISK_MAX_QUEUES; 0: one per vCPU */
};

/* One --net tap=NAME|network=NAME[,tap=NAME][,mac=MAC]. */
struct vm_nic_config {
	const char *tap;		/* points into argv (options cut off); NULL: a new vmt<N> */
	const char *network;		/* a vmctl network (net/network.h) the tap joins, or NULL */
	uint8_t mac[6];
	bool mac_set;			/* false: generated, stable per VM + index */
	int tx_hold_us;			/* tx completion hold (vmm/virtio/net_tx.c); -1: default */
};

struct vm_config {
	const char *kernel;		/* bzImage (Linux boot protocol, 64-bit entry) */
	const char *initrd;		/* optional */
	const char *append;		/* kernel command line, "" if not given */
	const char *firmware;		/* flat 64-bit test image instead of a kernel (tiny guests) */
	uint64_t mem_bytes;
	unsigned int cpus;
	const char *console_file;	/* NULL: serial console on stdin/stdout */
	const char *control_path;	/* NULL: no control socket */
	const char *kvm_path;		/* default /dev/kvm */
	const char *name;		/* --name: the VM's name, or NULL */
	bool allow_emulated;		/* run a Linux kernel even on an emulation-only KVM */
	struct vm_disk_config disks[VM_MAX_DISKS];
	unsigned int nr_disks;
	struct vm_nic_config nics[VM_MAX_NICS];
	unsigned int nr_nics;
	bool incoming;			/* set by main for --incoming: a migration destination */
	bool rng;			/* --rng: a virtio-rng device */
	bool balloon;			/* --balloon: a virtio-balloon device */
	bool no_announce;		/* --no-announce: no RARP/guest announce after resume */
	bool balloon_deflate_on_oom;	/* offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM (default on) */
	uint32_t balloon_stats_ms;	/* stats refresh period, 0 = off (default 5000) */
};

enum config_result {
	CONFIG_OK = 0,
	CONFIG_HELP = 1,		/* --help: print config_usage() and exit 0 */
};

/*
 * Parse argv. Returns CONFIG_OK or CONFIG_HELP, or -EINVAL with a one-line reason in @err.
 * Pointers in @cfg point into argv.
 */
int config_parse(int argc, char **argv, struct vm_config *cfg, char *err, size_t errlen);

/* "512M", "2G", "1024K", "4096" (MiB when no suffix). 0 or -EINVAL / -ERANGE. */
int config_parse_size(const char *s, uint64_t *out);

/* The usage text, including the exit statuses. */
const char *config_usage(void);

#endif
