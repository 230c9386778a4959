/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk (virtio 1.2 §5.2) on the virtio-pci transport, backed by a raw image
 * (storage/image.h) through the main loop's io_uring. Several instances per VM (blk0, blk1...),
 * each with 1..BLK_MAX_QUEUES request queues (VIRTIO_BLK_F_MQ when more than one).
 */
#ifndef VMM_VIRTIO_BLK_H
#define VMM_VIRTIO_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/virtio_blk.h>

#include "vmm/virtio/pci.h"
#include "vmm/virtio/queue.h"

struct guest_mem;
struct virtio_blk;

/*
 * Request queues per device. The VM gives a disk one per vCPU (vm_devices.c), so each vCPU's
 * block layer context has its own ring and interrupt vector; past 16 the guest gains little
 * and every queue costs a request pool (~1 MiB resident, blk.c).
 */
#define BLK_MAX_QUEUES		16

struct virtio_blk_opts {
	const char *path;		/* raw image: regular file or block device */
	const char *id;			/* stable device id, e.g. "blk0" (state section, logs) */
	bool read_only;			/* VIRTIO_BLK_F_RO; the image is opened read-only */
	bool direct;			/* O_DIRECT */
	const char *serial;		/* GET_ID answer, up to 20 bytes; NULL: the id */
	bool no_lock;			/* don't lock the image (migration destination on the
					   same host: the source holds the lock until it exits) */
	unsigned int num_queues;	/* request queues, 1..BLK_MAX_QUEUES; 0 means 1 */
};

/*
 * Open the image, create the device and register it on the PCI bus (env->loop must be the
 * main loop: the device's I/O and its interrupt batching hook run there). Main thread,
 * before vCPUs run. 0 or -errno; on failure a one-line reason (no newline) is written to @err,
 * e.g. "disk /img/a.raw: No such file or directory" — the caller prints it.
 */
int  virtio_blk_create(const struct virtio_pci_env *env, struct guest_mem *mem,
		       const struct virtio_blk_opts *opts, struct virtio_blk **out,
		       char *err, size_t errlen);
/*
 * vCPUs stopped, the loop not running (teardown): runs the loop until in-flight requests
 * completed (bounded), then frees.
 */
void virtio_blk_destroy(struct virtio_blk *blk);

/* ---- counters (the control socket's per-device report) ---- */

struct virtio_blk_stats {
	uint64_t read_reqs, read_bytes;
	uint64_t write_reqs, write_bytes;
	uint64_t flush_reqs;
	uint64_t discard_reqs, discard_bytes;
	uint64_t write_zeroes_reqs, write_zeroes_bytes;
	uint64_t get_id_reqs;
	uint64_t ioerr;			/* requests completed with VIRTIO_BLK_S_IOERR */
	uint64_t unsupp;		/* ... with VIRTIO_BLK_S_UNSUPP */
	uint64_t inflight;		/* submitted to the image, not completed (all queues) */
	uint64_t capacity;		/* sectors */
	unsigned int num_queues;
	uint64_t queue_reqs[BLK_MAX_QUEUES];	/* requests completed per queue [0, num_queues) */
	bool read_only, direct;
};
/* Any thread (takes the device lock briefly). */
void virtio_blk_stats(struct virtio_blk *blk, struct virtio_blk_stats *st);
const char *virtio_blk_id(const struct virtio_blk *blk);

/* ---- migration / snapshots ---- */

/*
 * Register the device's state section ("virtio-blk" v1, TLV fields of struct virtio_blk_state;
 * blk_state.c) under its id. A stream with another queue count than this device's is refused. Its quiesce drains and then holds new requests back (so nothing
 * touches guest RAM or the image after the final RAM pass): a caller that resumes the vCPUs
 * after a failed migration must also call virtio_blk_resume(), or the disk stays stopped.
 * 0 or state_register()'s -errno.
 */
struct state_registry;
int  virtio_blk_register_state(struct virtio_blk *blk, struct state_registry *reg);

/*
 * Drain: wait (bounded by @timeout_ms) until nothing is in flight, and stop starting new
 * requests (kicks are remembered). On the loop thread it runs the loop itself; on another
 * thread it waits for the loop. 0 or -ETIMEDOUT. vCPUs paused.
 */
int  virtio_blk_quiesce(struct virtio_blk *blk, unsigned int timeout_ms);
/*
 * Undo quiesce (e.g. a failed migration resumes the source): serve remembered kicks. Any
 * thread (from another one the work is posted to the loop); a no-op when not quiesced.
 */
void virtio_blk_resume(struct virtio_blk *blk);

/* Saved state: transport + queue indices + the config space the guest saw (plain struct). */
struct virtio_blk_state {
	struct virtio_pci_state transport;
	uint16_t num_queues;		/* load refuses another count than the device's */
	struct vq_state vq[BLK_MAX_QUEUES];	/* [0, num_queues) */
	uint64_t capacity;		/* sectors: load refuses a different-sized image */
	uint8_t read_only;
};

/* Quiesced, vCPUs paused. -EBUSY if requests are still in flight. */
int  virtio_blk_save(struct virtio_blk *blk, struct virtio_blk_state *st);
/*
 * Load into a freshly created device on the same image (same capacity, read-only flag and
 * queue count). Validates everything (untrusted), then kicks every queue so requests posted
 * before the save are served. vCPUs paused, main loop. 0 or -EINVAL.
 */
int  virtio_blk_load(struct virtio_blk *blk, const struct virtio_blk_state *st);

#endif
