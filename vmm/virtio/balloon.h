/* SPDX-License-Identifier: MIT */
/*
 * virtio-balloon (virtio 1.2 §5.5) on the virtio-pci transport: the host sets a target, the
 * guest's driver gives pages back (inflate) or takes them again (deflate), and reports its
 * memory statistics on the stats queue. Inflated pages are released from the memfd that backs
 * guest RAM (a hole is punched: they stop counting against the host and read as zero).
 *
 * Units. The device speaks in 4 KiB pages (num_pages, actual, PFNs). This API speaks about
 * the guest's memory the way an operator does: the *target* is how much RAM the guest should
 * keep (guest RAM size - balloon size), as QEMU's `balloon` command does.
 *
 * Threading. Every function here runs on the main loop thread (or before evloop_run / after it
 * returned), except where noted. The device's state is under its virtio_dev.lock.
 */
#ifndef VMM_VIRTIO_BALLOON_H
#define VMM_VIRTIO_BALLOON_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/virtio/pci.h"
#include "vmm/virtio/queue.h"

struct ctl_server;
struct guest_mem;
struct state_registry;
struct virtio_balloon;

#define BALLOON_PAGE_SIZE	4096u		/* VIRTIO_BALLOON_PFN_SHIFT */

/* Statistics tags (virtio 1.2 §5.5.6.3; 10..15 are Linux 6.12 additions). */
enum {
	BALLOON_S_SWAP_IN, BALLOON_S_SWAP_OUT, BALLOON_S_MAJFLT, BALLOON_S_MINFLT,
	BALLOON_S_MEMFREE, BALLOON_S_MEMTOT, BALLOON_S_AVAIL, BALLOON_S_CACHES,
	BALLOON_S_HTLB_PGALLOC, BALLOON_S_HTLB_PGFAIL, BALLOON_S_OOM_KILL, BALLOON_S_ALLOC_STALL,
	BALLOON_S_ASYNC_SCAN, BALLOON_S_DIRECT_SCAN, BALLOON_S_ASYNC_RECLAIM,
	BALLOON_S_DIRECT_RECLAIM,
	BALLOON_S_NR				/* tags >= this are accepted and ignored */
};
/* "free_memory", ... : the key used in balloon-info; NULL for tag >= BALLOON_S_NR. */
const char *virtio_balloon_stat_name(unsigned int tag);

#define BALLOON_DEFAULT_STATS_INTERVAL_NS	(5ull * 1000000000ull)

struct virtio_balloon_opts {
	/*
	 * How often the device asks the guest for fresh statistics (returns the stats buffer).
	 * 0: never on its own (virtio_balloon_request_stats only). Needs env->loop.
	 */
	uint64_t stats_interval_ns;
	/*
	 * Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM: the guest may take pages back under memory
	 * pressure instead of going OOM. Linux then keeps MemTotal unchanged while inflated
	 * (the pages show as used); without it MemTotal shrinks by the balloon size.
	 */
	bool deflate_on_oom;
};

/*
 * Create the device @id (e.g. "balloon0") over @mem and register it on env->pci. @opts NULL:
 * stats every 5 s, deflate-on-oom offered. The target starts at "all of RAM" (empty balloon).
 * Main thread, before vCPUs run. 0 or -errno.
 */
int  virtio_balloon_create(const struct virtio_pci_env *env, struct guest_mem *mem, const char *id,
			   const struct virtio_balloon_opts *opts, struct virtio_balloon **out);
/* vCPUs stopped; cancels and drains the stats timer on env->loop (not running). */
void virtio_balloon_destroy(struct virtio_balloon *b);

/*
 * Ask the guest to keep @guest_bytes of RAM: num_pages = (RAM - guest_bytes) / 4 KiB, with a
 * configuration-change interrupt when the driver is live. @guest_bytes is rounded down to
 * 4 KiB. -EINVAL if it is more than guest RAM or the balloon would exceed 2^32-1 pages.
 */
int  virtio_balloon_set_target(struct virtio_balloon *b, uint64_t guest_bytes);
/* Change the stats refresh period (0 = off). Loop thread. 0, -EINVAL without a loop. */
int  virtio_balloon_set_stats_interval(struct virtio_balloon *b, uint64_t ns);
/*
 * Return the stats buffer to the guest now so it refills it (the statsq protocol, §5.5.6.3).
 * 0, or -EAGAIN when the device holds no buffer (driver not live, no STATS_VQ, or the guest
 * has not given the buffer back yet since the last request).
 */
int  virtio_balloon_request_stats(struct virtio_balloon *b);

struct virtio_balloon_info {
	uint64_t ram_bytes;		/* guest RAM */
	uint64_t target_bytes;		/* RAM the guest should keep: ram - num_pages * 4 KiB */
	uint64_t actual_bytes;		/* RAM the guest keeps: ram - actual * 4 KiB (0 floor) */
	uint32_t num_pages;		/* config: balloon size the host wants */
	uint32_t actual;		/* config: balloon size the driver reports */
	bool driver_ok;			/* driver live (DRIVER_OK, not needing reset) */
	bool stats_vq;			/* VIRTIO_BALLOON_F_STATS_VQ negotiated */
	bool deflate_on_oom;		/* VIRTIO_BALLOON_F_DEFLATE_ON_OOM negotiated */
	bool needs_reset;		/* the guest broke the protocol (DEVICE_NEEDS_RESET) */
	uint64_t stats[BALLOON_S_NR];
	uint32_t stats_valid;		/* bit n: stats[n] was in the last report */
	uint64_t stats_updates;		/* reports received */
	uint64_t stats_time_ns;		/* CLOCK_REALTIME of the last report, 0 = none yet */
	uint64_t stats_interval_ns;
	/* device counters */
	uint64_t inflate_pages, deflate_pages;	/* PFNs received */
	uint64_t released_bytes;		/* hole-punched in the memfd (incl. repeats) */
	uint64_t release_errors;		/* punch failed (host problem, not the guest's) */
	/* host: memfd blocks actually allocated (fstat st_blocks * 512), -1 if unknown */
	int64_t host_ram_bytes;
};

/* A consistent snapshot of the above. Any thread. */
void virtio_balloon_get_info(struct virtio_balloon *b, struct virtio_balloon_info *info);

/*
 * Register on @srv (loop thread, before clients talk):
 *   balloon-set  {"target_mib": N} | {"target_bytes": N}   [, "stats_interval_ms": N]
 *                (at least one argument; target = RAM the guest keeps)
 *   balloon-info → {"target_bytes","actual_bytes","ram_bytes","num_pages","actual_pages",
 *                   "driver_ok","stats_interval_ms","host_ram_bytes","inflated_pages",
 *                   "deflated_pages","stats":{"free_memory":N,...},"stats_updates":N,
 *                   "last_update":{"seconds":N,"microseconds":N} | null}
 * The device must outlive the server. 0 or -errno (-EEXIST: one balloon per server).
 */
int  virtio_balloon_ctl_register(struct virtio_balloon *b, struct ctl_server *srv);

/* ---- state (migration/snapshots): plain struct, like virtio-rng's ---- */

#define BALLOON_NR_VQS	3		/* inflateq, deflateq, statsq */

struct virtio_balloon_state {
	struct virtio_pci_state transport;
	struct vq_state vq[BALLOON_NR_VQS];
	uint32_t num_pages, actual;
	uint8_t stats_held;		/* the device holds the guest's stats buffer ... */
	uint16_t stats_head;		/* ... whose descriptor head is this */
	uint32_t stats_valid;
	uint64_t stats[BALLOON_S_NR];
	uint64_t stats_time_ns, stats_updates;
};

/* vCPUs paused, main loop. Nothing is in flight besides the held stats buffer. */
void virtio_balloon_save(struct virtio_balloon *b, struct virtio_balloon_state *st);
/*
 * Load into a freshly created device on the same RAM size. Validates everything (untrusted):
 * queue states against the transport's queue configuration, num_pages <= RAM pages, a held
 * stats buffer consistent with the stats queue's in-flight count. vCPUs paused, main loop.
 * 0 or -EINVAL.
 */
int  virtio_balloon_load(struct virtio_balloon *b, const struct virtio_balloon_state *st);
/* Register the "virtio-balloon" state section (id = device id). 0 or -errno. */
int  virtio_balloon_register_state(struct virtio_balloon *b, struct state_registry *reg);

#endif
