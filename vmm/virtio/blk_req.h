/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk request parser: a popped descriptor chain (already checked to lie in guest RAM by
 * the virtqueue walker) → a validated request, as a pure function of the chain and the disk's
 * geometry, so the fuzz target (tests/fuzz/fuzz_blk_req.c) can drive it without an image.
 */
#ifndef VMM_VIRTIO_BLK_REQ_H
#define VMM_VIRTIO_BLK_REQ_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/virtio_blk.h>

#include "vmm/virtio/queue.h"

#define BLK_QUEUE_SIZE		256
#define BLK_SEG_MAX		(BLK_QUEUE_SIZE - 2)	/* data segments; a chain adds header + status */
#define BLK_CHAIN_MAX		(BLK_SEG_MAX + 2)
#define BLK_SIZE_MAX		(1u << 20)	/* bytes per data segment */
#define BLK_SECTOR		512u
#define BLK_HDR_LEN		16u
#define BLK_DWZ_SEG_MAX		32		/* ranges per discard / write-zeroes request */
#define BLK_DWZ_SECTORS_MAX	(1u << 22)	/* sectors per range: 2 GiB */

struct blk_parsed {
	uint32_t type;			/* VIRTIO_BLK_T_* from the header */
	uint64_t sector;
	uint64_t bytes;			/* data bytes moved (counters) */
	bool submit;			/* start it on the image; else complete at once with status */
	uint8_t status;			/* VIRTIO_BLK_S_* when !submit */
	int iovcnt;			/* IN/OUT: iovecs filled */
	unsigned int nr_ranges;		/* DISCARD/WRITE_ZEROES: ranges copied (little-endian) */
	uint32_t id_len;		/* GET_ID: serial bytes to copy to the chain's start */
	uint8_t *status_ptr;		/* host pointer to the status byte (last writable byte) */
};

/*
 * Parse @ch for a disk of @capacity sectors. @iov has room for BLK_CHAIN_MAX entries, @range
 * for BLK_DWZ_SEG_MAX. Returns 0 with *p filled, or -EINVAL if the chain cannot hold a header
 * and a status byte (no status can be given: the device needs a reset).
 */
int blk_req_parse(const struct vq_chain *ch, uint64_t capacity, bool read_only,
		  struct iovec *iov, struct virtio_blk_discard_write_zeroes *range,
		  struct blk_parsed *p);
#endif
