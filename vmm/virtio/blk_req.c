// SPDX-License-Identifier: MIT
/*
 * virtio-blk request parser (blk_req.h): header, data and status placement of one chain checked
 * against the spec (virtio 1.2 §5.2.6) and the disk's size. Moved out of blk.c so that it can be
 * fuzzed on its own; blk.c applies the result (image I/O, status byte, used ring).
 */
#define LOG_TAG "virtio-blk"
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "vmm/virtio/blk_req.h"

_Static_assert(sizeof(struct virtio_blk_outhdr) == BLK_HDR_LEN, "virtio-blk header");
_Static_assert(sizeof(struct virtio_blk_discard_write_zeroes) == 16, "discard range");

/*
 * iovecs for @len bytes of segments [first, last) starting @skip bytes in. Returns the count,
 * or -1 if a piece is longer than size_max (the driver broke the limit it was given).
 */
static int build_iov(const struct vq_chain *ch, struct iovec *iov, unsigned int first,
		     unsigned int last, uint64_t skip, uint64_t len)
{
	int n = 0;

	for (unsigned int i = first; i < last && len; i++) {
		uint64_t seg = ch->segs[i].len, take;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		take = seg - skip < len ? seg - skip : len;
		if (take > BLK_SIZE_MAX)
			return -1;
		iov[n].iov_base = (uint8_t *)ch->segs[i].addr + skip;
		iov[n].iov_len = take;
		n++;
		len -= take;
		skip = 0;
	}
	return n;
}

/* Sectors [sector, sector + nsec) inside the disk, without overflowing. */
static bool range_ok(uint64_t capacity, uint64_t sector, uint64_t nsec)
{
	return sector <= capacity && nsec <= capacity - sector;
}

/*
 * Check a discard / write-zeroes payload (readable bytes after the header) and copy it.
 * Returns a VIRTIO_BLK_S_* status: OK if it may be executed.
 */
static uint8_t parse_ranges(const struct vq_chain *ch, uint64_t capacity,
			    struct virtio_blk_discard_write_zeroes *range, struct blk_parsed *p)
{
	uint32_t data = ch->out_len - BLK_HDR_LEN;
	uint32_t allowed = p->type == VIRTIO_BLK_T_WRITE_ZEROES ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;

	if (data == 0 || data % sizeof(range[0]) || data / sizeof(range[0]) > BLK_DWZ_SEG_MAX ||
	    ch->in_len != 1)
		return VIRTIO_BLK_S_IOERR;
	p->nr_ranges = data / sizeof(range[0]);
	vq_chain_copy_from(ch, BLK_HDR_LEN, range, data);	/* read once, then checked */
	for (unsigned int i = 0; i < p->nr_ranges; i++) {
		uint64_t sector = le64toh(range[i].sector);
		uint32_t nsec = le32toh(range[i].num_sectors);

		/* §5.2.6.2: unknown flags, and unmap on a discard, are UNSUPP. */
		if (le32toh(range[i].flags) & ~allowed)
			return VIRTIO_BLK_S_UNSUPP;
		if (nsec == 0 || nsec > BLK_DWZ_SECTORS_MAX || !range_ok(capacity, sector, nsec))
			return VIRTIO_BLK_S_IOERR;
		p->bytes += (uint64_t)nsec * BLK_SECTOR;
	}
	return VIRTIO_BLK_S_OK;
}

int blk_req_parse(const struct vq_chain *ch, uint64_t capacity, bool read_only,
		  struct iovec *iov, struct virtio_blk_discard_write_zeroes *range,
		  struct blk_parsed *p)
{
	struct virtio_blk_outhdr hdr;
	const struct vq_seg *last;
	uint64_t len;

	memset(p, 0, sizeof(*p));
	p->status = VIRTIO_BLK_S_IOERR;
	if (ch->out_len < BLK_HDR_LEN || ch->in_len < 1)
		return -EINVAL;
	vq_chain_copy_from(ch, 0, &hdr, sizeof(hdr));	/* one read of guest memory */
	p->type = le32toh(hdr.type);
	p->sector = le64toh(hdr.sector);
	last = &ch->segs[ch->n - 1];			/* writable: in_len >= 1 */
	p->status_ptr = (uint8_t *)last->addr + last->len - 1;

	switch (p->type) {
	case VIRTIO_BLK_T_IN:
		len = ch->in_len - 1u;
		if (ch->out_len != BLK_HDR_LEN || len % BLK_SECTOR ||
		    !range_ok(capacity, p->sector, len / BLK_SECTOR))
			return 0;
		if (len == 0)
			break;
		p->iovcnt = build_iov(ch, iov, ch->n_out, ch->n, 0, len);
		if (p->iovcnt < 0)
			return 0;
		p->bytes = len;
		p->submit = true;
		break;
	case VIRTIO_BLK_T_OUT:
		len = ch->out_len - BLK_HDR_LEN;
		if (read_only || ch->in_len != 1 || len % BLK_SECTOR ||
		    !range_ok(capacity, p->sector, len / BLK_SECTOR))
			return 0;
		if (len == 0)
			break;
		p->iovcnt = build_iov(ch, iov, 0, ch->n_out, BLK_HDR_LEN, len);
		if (p->iovcnt < 0)
			return 0;
		p->bytes = len;
		p->submit = true;
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (ch->out_len != BLK_HDR_LEN || ch->in_len != 1)
			return 0;
		p->submit = true;
		break;
	case VIRTIO_BLK_T_GET_ID:
		/* Up to 20 bytes, NUL-padded; no NUL if the serial is exactly 20 long. */
		if (ch->out_len != BLK_HDR_LEN)
			return 0;
		p->id_len = ch->in_len - 1u < VIRTIO_BLK_ID_BYTES ? ch->in_len - 1u : VIRTIO_BLK_ID_BYTES;
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (read_only) {
			/* Not offered on read-only disks: the driver should not send them. */
			p->status = VIRTIO_BLK_S_UNSUPP;
			return 0;
		}
		p->status = parse_ranges(ch, capacity, range, p);
		if (p->status != VIRTIO_BLK_S_OK) {
			p->bytes = 0;
			return 0;
		}
		p->submit = true;
		return 0;
	default:
		p->status = VIRTIO_BLK_S_UNSUPP;
		return 0;
	}
	p->status = VIRTIO_BLK_S_OK;
	return 0;
}
