// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the virtio-blk request parser (vmm/virtio/blk_req.c): header type and
 * sector, data and status placement, size_max per segment, discard / write-zeroes ranges and
 * flags, read-only disks. The input is a descriptor chain as the virtqueue walker hands it
 * over: each segment its own malloc'd buffer, so AddressSanitizer reports any access past a
 * segment, and the result is checked against what blk.c relies on (iovecs inside the chain's
 * device-readable or -writable segments, inside the disk, status byte the last writable byte).
 *
 * Input layout (little-endian):
 *   [0]      bit0: read-only disk; bits 1..7: capacity = (b >> 1) * 8 sectors
 *   [1]      segments n = 1 + b % 16; [2] readable segments = b % (n + 1)
 *   [3..]    n × le16 segment lengths (1 + v % 8192), then the segment contents in order
 *            (short input: zero-filled)
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/virtio/blk_req.h"

#define MAX_SEGS	16u
#define SEG_MAX		8192u

/* LLVMFuzzerInitialize, the kvm_ioctl stub and the chain builder: fuzz_common.c. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int fuzz_chain_build(const uint8_t *data, size_t size, size_t pos, unsigned int n,
		     unsigned int nout, uint32_t seg_max, struct vq_chain *ch);
void fuzz_chain_free(struct vq_chain *ch);

/* @p lies inside one of segments [first, last) of @ch. */
static bool iov_inside(const struct vq_chain *ch, unsigned int first, unsigned int last,
		       const struct iovec *v)
{
	for (unsigned int i = first; i < last; i++) {
		uint8_t *a = ch->segs[i].addr;

		if ((uint8_t *)v->iov_base >= a && v->iov_len <= ch->segs[i].len &&
		    (uint8_t *)v->iov_base - a <= (ptrdiff_t)(ch->segs[i].len - v->iov_len))
			return true;
	}
	return false;
}

static void check(const struct vq_chain *ch, uint64_t cap, bool ro)
{
	static struct iovec iov[BLK_CHAIN_MAX];
	static struct virtio_blk_discard_write_zeroes range[BLK_DWZ_SEG_MAX];
	const struct vq_seg *last = &ch->segs[ch->n - 1];
	struct blk_parsed p;
	uint64_t total = 0;

	if (blk_req_parse(ch, cap, ro, iov, range, &p) < 0) {
		if (ch->out_len >= BLK_HDR_LEN && ch->in_len >= 1)
			abort();		/* a chain that can be answered must be */
		return;
	}
	if (ch->out_len < BLK_HDR_LEN || ch->in_len < 1 || !last->writable ||
	    p.status_ptr != (uint8_t *)last->addr + last->len - 1)
		abort();
	if (!p.submit) {
		if (p.status > VIRTIO_BLK_S_UNSUPP)
			abort();
		if (p.id_len > VIRTIO_BLK_ID_BYTES || p.id_len > ch->in_len - 1u)
			abort();
		return;
	}
	switch (p.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (p.type == VIRTIO_BLK_T_OUT && ro)
			abort();
		if (p.iovcnt <= 0 || p.iovcnt > (int)BLK_CHAIN_MAX || p.bytes % BLK_SECTOR)
			abort();
		for (int i = 0; i < p.iovcnt; i++) {
			if (iov[i].iov_len == 0 || iov[i].iov_len > BLK_SIZE_MAX)
				abort();
			if (p.type == VIRTIO_BLK_T_IN ? !iov_inside(ch, ch->n_out, ch->n, &iov[i]) :
			    !iov_inside(ch, 0, ch->n_out, &iov[i]))
				abort();
			/* The status byte is never a data byte. */
			if (p.type == VIRTIO_BLK_T_IN && p.status_ptr >= (uint8_t *)iov[i].iov_base &&
			    p.status_ptr < (uint8_t *)iov[i].iov_base + iov[i].iov_len)
				abort();
			total += iov[i].iov_len;
		}
		if (total != p.bytes || p.sector > cap || p.bytes / BLK_SECTOR > cap - p.sector)
			abort();
		break;
	case VIRTIO_BLK_T_FLUSH:
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (ro || p.nr_ranges == 0 || p.nr_ranges > BLK_DWZ_SEG_MAX)
			abort();
		for (unsigned int i = 0; i < p.nr_ranges; i++) {
			uint64_t s = le64toh(range[i].sector);
			uint32_t n = le32toh(range[i].num_sectors);

			if (n == 0 || s > cap || n > cap - s)
				abort();
		}
		break;
	default:
		abort();			/* unknown types are never submitted */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vq_seg segs[MAX_SEGS];
	struct vq_chain ch = { .segs = segs, .cap = MAX_SEGS };
	unsigned int n, nout;
	uint64_t cap;

	if (size < 3)
		return 0;
	cap = (uint64_t)(data[0] >> 1) * 8;
	n = 1 + data[1] % MAX_SEGS;
	nout = data[2] % (n + 1);
	if (fuzz_chain_build(data, size, 3, n, nout, SEG_MAX, &ch) < 0)
		return 0;
	check(&ch, cap, data[0] & 1);
	fuzz_chain_free(&ch);
	return 0;
}
