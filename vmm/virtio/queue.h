/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueue, device side (virtio 1.2 §2.7), over guest RAM (vmm/memory.h). The guest
 * is hostile: every index, length and address read from the rings is checked, each shared
 * field is read exactly once (a copy is validated and used, so the guest cannot change a
 * descriptor between check and use), and no host access ever leaves guest RAM.
 *
 * Use (all calls for one queue under the device's lock — virtio_dev.lock — normally on the
 * main loop thread):
 *
 *	struct vq_seg segs[N];
 *	struct vq_chain ch = { .segs = segs, .cap = N };
 *	do {
 *		vq_disable_notify(vq);
 *		while ((ret = vq_pop(vq, &ch)) > 0) {
 *			... read ch.segs[0 .. ch.n_out), write ch.segs[ch.n_out .. ch.n) ...
 *			vq_push(vq, &ch, bytes_written);
 *		}
 *		if (ret < 0) { virtio_dev_needs_reset(vd); return; }
 *	} while (vq_enable_notify(vq));		// buffers added while we weren't listening
 *	if (vq_should_notify(vq)) virtio_dev_notify(vd, q);
 *
 * Errors. A malformed chain makes vq_pop return -EINVAL (or -E2BIG when the chain has more
 * segments than the caller's array — a device limit, e.g. virtio-blk's seg_max, which a
 * driver that honours the config never exceeds) and marks the queue broken: every later
 * pop returns -EIO until vq_init/vq_reset. The device turns that into DEVICE_NEEDS_RESET.
 * Errors are logged with the queue's name through one rate-limited call site (a guest
 * cannot flood the host's log). -EIO needs no action: the queue was already reported.
 *
 * Migration. Every byte the vmm writes into guest RAM here — used ring elements, used idx,
 * avail_event, used flags, and (via vq_push's @written) the device-writable buffers — is
 * passed to guest_mem_mark_dirty(), because KVM's dirty log only sees vCPU writes.
 * vq_save()/vq_restore() carry the queue's own state in a plain struct.
 */
#ifndef VMM_VIRTIO_QUEUE_H
#define VMM_VIRTIO_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct guest_mem;

#define VQ_MAX_SIZE	32768		/* virtio 1.2 §2.7: Queue Size <= 32768 */

/* One buffer of a chain: a host pointer into guest RAM, checked to lie inside it. */
struct vq_seg {
	void *addr;
	uint32_t len;
	bool writable;			/* device-writable (VIRTQ_DESC_F_WRITE) */
	uint64_t gpa;			/* for dirty marking and logs */
};

/*
 * A popped chain. The caller sets segs/cap; vq_pop fills the rest. Readable segments come
 * first: segs[0 .. n_out) device-readable, segs[n_out .. n) device-writable. Zero-length
 * descriptors are dropped.
 */
struct vq_chain {
	struct vq_seg *segs;
	unsigned int cap;
	unsigned int n;
	unsigned int n_out;
	uint16_t head;			/* descriptor index, returned in the used element */
	uint32_t out_len;		/* total readable bytes */
	uint32_t in_len;		/* total writable bytes */
};

/*
 * Copy between a chain and a flat buffer, starting @off bytes into the readable part
 * (copy_from) or the writable part (copy_to). Return the bytes copied (short at the end
 * of the chain). copy_to does not mark dirty: vq_push(written) does, so pass it the
 * bytes written from the start of the writable part.
 */
size_t vq_chain_copy_from(const struct vq_chain *ch, size_t off, void *dst, size_t len);
size_t vq_chain_copy_to(const struct vq_chain *ch, size_t off, const void *src, size_t len);

/* Queue configuration, as the transport validated and the driver wrote it. */
struct vq_config {
	const char *name;		/* for logs, e.g. "blk0.q0"; must outlive the queue */
	uint16_t size;			/* power of two, 1..VQ_MAX_SIZE */
	uint64_t desc, avail, used;	/* guest-physical ring addresses */
	bool event_idx;			/* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool indirect;			/* VIRTIO_RING_F_INDIRECT_DESC negotiated */
};

struct vq {
	/* private: read with the accessors below */
	struct guest_mem *mem;
	const char *name;
	uint16_t size;
	bool enabled;
	bool event_idx;
	bool indirect;
	bool broken;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint8_t *desc;			/* host pointers to the rings, range-checked at init */
	uint8_t *avail;
	uint8_t *used;
	uint16_t last_avail_idx;	/* next avail ring slot to pop */
	uint16_t used_idx;		/* our copy of used->idx */
	uint16_t signalled_used;	/* used_idx at the last notification (event idx) */
	bool signalled_used_valid;
};

/*
 * Set up @vq from @cfg: sizes, alignment (desc 16, avail 2, used 4) and that each ring lies
 * inside guest RAM. 0 or -EINVAL (logged). Indexes start at 0 (a fresh queue).
 */
int  vq_init(struct vq *vq, struct guest_mem *mem, const struct vq_config *cfg);
/* Back to disabled and empty (device reset). */
void vq_reset(struct vq *vq);
bool vq_enabled(const struct vq *vq);
uint16_t vq_size(const struct vq *vq);	/* the driver's queue size; 0 while disabled */
bool vq_broken(const struct vq *vq);

/*
 * Pop the next available chain into @chain. 1: a chain; 0: the queue is empty;
 * -EINVAL: malformed (queue now broken); -E2BIG: more segments than chain->cap (broken);
 * -EIO: already broken or not enabled.
 */
int  vq_pop(struct vq *vq, struct vq_chain *chain);
/* Give back the last @n popped chains unprocessed (e.g. no rx buffer fits yet). */
void vq_unpop(struct vq *vq, unsigned int n);
/*
 * Return @chain to the driver with @written bytes written into its writable segments
 * (clamped to in_len), marking those bytes and the used ring dirty. Publishes used->idx
 * with a release barrier. Chains may be pushed in any order.
 */
void vq_push(struct vq *vq, const struct vq_chain *chain, uint32_t written);
/* Chains popped and not yet pushed (what a quiesce before migration waits for). */
unsigned int vq_inflight(const struct vq *vq);

/*
 * Device -> driver: after pushing, should the guest be interrupted? Honours
 * VRING_AVAIL_F_NO_INTERRUPT, or with event idx the driver's used_event (virtio 1.2
 * §2.7.10). Call once per batch: it records what was signalled.
 */
bool vq_should_notify(struct vq *vq);
/*
 * Driver -> device: stop/start asking for kicks while the device is busy polling the ring.
 * vq_enable_notify returns true if buffers were added meanwhile (keep processing).
 * Both write guest memory (used->flags or avail_event) and mark it dirty.
 */
void vq_disable_notify(struct vq *vq);
bool vq_enable_notify(struct vq *vq);

/* ---- state for migration and snapshots (vmm/state.h TLV fields are built from this) ---- */

struct vq_state {
	uint64_t desc, avail, used;
	uint16_t size;
	uint16_t last_avail_idx;
	uint16_t used_idx;
	uint16_t signalled_used;
	uint8_t enabled;
	uint8_t event_idx;
	uint8_t indirect;
	uint8_t signalled_used_valid;
};

void vq_save(const struct vq *vq, struct vq_state *st);
/*
 * Rebuild @vq from a saved state. The state comes from a stream, so it is checked like a
 * driver's configuration (vq_init), plus that the in-flight count is <= size. A disabled
 * queue restores to the reset state. 0 or -EINVAL.
 */
int  vq_restore(struct vq *vq, struct guest_mem *mem, const struct vq_state *st,
		const char *name);

#endif
