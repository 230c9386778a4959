// SPDX-License-Identifier: MIT
/*
 * virtio-blk's state section for snapshots and migration (vmm/state.h): the plain
 * struct virtio_blk_state of blk.h written as TLV fields, plus quiesce. Kept apart from blk.c
 * (Firecracker's "persist" role, style guide §3.4.7); it only uses blk.h's public API.
 *
 * Section "virtio-blk" version 1, fields (all REQUIRED unless noted):
 *   1 TRANSPORT  nested: virtio_pci_state_write()
 *   2 VQ         nested: queue 0's vq_state (virtio_vq_state_write_nest)
 *   3 CAPACITY   u64 sectors — load refuses another disk size
 *   4 READ_ONLY  u8 0/1      — and another read-only flag
 *   5 NUM_QUEUES u16, optional: missing = 1 (streams from before VIRTIO_BLK_F_MQ)
 *   6 VQ_MORE    nested, one per queue 1 .. NUM_QUEUES-1: u8 index at tag 1, the queue's
 *                fields from tag 2 (virtio_vq_state_write_indexed); absent with one queue
 * Tags 5 and 6 were added with multi-queue, keeping version 1 (docs/state-format.md: new
 * fields get new tags). A one-queue disk writes the same bytes as before plus the optional
 * tag 5, so older vmms still load it; a several-queue stream carries required tag-6 fields
 * that an older vmm refuses instead of restoring queue 0 alone. Load refuses a queue count
 * other than the device's (virtio_blk_load).
 */
#define LOG_TAG "virtio-blk"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/lib/log.h"
#include "vmm/state.h"
#include "vmm/virtio/blk.h"
#include "vmm/virtio/pci_state.h"

/* Longest a quiesce waits for in-flight requests (a disk that takes longer is broken). */
#define BLK_QUIESCE_MS	10000

enum { BLK_T_TRANSPORT = 1, BLK_T_VQ, BLK_T_CAPACITY, BLK_T_READ_ONLY, BLK_T_NUM_QUEUES,
       BLK_T_VQ_MORE };

static int blk_state_quiesce(void *opaque)
{
	return virtio_blk_quiesce(opaque, BLK_QUIESCE_MS);
}

static int blk_state_save(void *opaque, struct state_writer *w)
{
	struct virtio_blk_state *st = malloc(sizeof(*st));
	const uint16_t R = STATE_F_REQUIRED;
	int ret;

	if (!st)
		return -ENOMEM;
	ret = virtio_blk_save(opaque, st);
	if (ret < 0)
		goto out;
	ret = virtio_pci_state_write_nest(w, BLK_T_TRANSPORT, &st->transport);
	virtio_vq_state_write_nest(w, BLK_T_VQ, &st->vq[0]);
	sw_u64(w, BLK_T_CAPACITY, st->capacity, R);
	sw_u8(w, BLK_T_READ_ONLY, st->read_only, R);
	sw_u16(w, BLK_T_NUM_QUEUES, st->num_queues, 0);
	for (unsigned int i = 1; i < st->num_queues; i++)
		virtio_vq_state_write_indexed(w, BLK_T_VQ_MORE, (uint8_t)i, &st->vq[i]);
	if (ret == 0)
		ret = sw_error(w);
out:
	free(st);
	return ret;
}

/* A VQ_MORE nest: queue index 1..BLK_MAX_QUEUES-1, each once (the count is checked after). */
static int read_vq_more(struct state_reader *r, const struct state_field *f,
			struct virtio_blk_state *st, uint32_t *seen)
{
	struct vq_state v;
	uint8_t idx;
	int ret = virtio_vq_state_read_indexed(r, f, &idx, &v);

	if (ret < 0)
		return ret;
	if (idx == 0 || idx >= BLK_MAX_QUEUES || (*seen & (1u << idx))) {
		log_err("%s section: queue index %u out of range or repeated", "virtio-blk", idx);
		return -EBADMSG;
	}
	*seen |= 1u << idx;
	st->vq[idx] = v;
	return 0;
}

static int blk_state_load(void *opaque, struct state_reader *r, uint16_t version)
{
	struct virtio_blk_state *st = calloc(1, sizeof(*st));
	unsigned int have = 0;
	uint32_t more = 0;
	struct state_field f;
	int ret;

	if (!st)
		return -ENOMEM;
	st->num_queues = 1;
	while ((ret = sr_next(r, &f)) > 0) {
		switch (f.tag) {
		case BLK_T_TRANSPORT:
			ret = virtio_pci_state_read_nest(r, &f, &st->transport);
			break;
		case BLK_T_VQ:
			ret = virtio_vq_state_read_nest(r, &f, &st->vq[0]);
			break;
		case BLK_T_CAPACITY:
			ret = sr_u64(&f, &st->capacity);
			break;
		case BLK_T_READ_ONLY:
			ret = sr_u8(&f, &st->read_only);
			if (ret == 0 && st->read_only > 1)
				ret = -EBADMSG;
			break;
		case BLK_T_NUM_QUEUES:
			ret = sr_u16(&f, &st->num_queues);
			break;
		case BLK_T_VQ_MORE:
			ret = read_vq_more(r, &f, st, &more);
			break;
		default:
			ret = sr_skip_unknown(r, &f);
			break;
		}
		if (ret < 0)
			break;
		if (f.tag >= BLK_T_TRANSPORT && f.tag <= BLK_T_READ_ONLY)
			have |= 1u << f.tag;
	}
	if (ret == 0 && have != 0x1e) {
		log_err("%s section without a required field", "virtio-blk");
		ret = -EBADMSG;
	}
	/* Queues 1 .. num_queues-1 exactly: a stream cannot leave one of them at zero. */
	if (ret == 0 && (st->num_queues == 0 || st->num_queues > BLK_MAX_QUEUES ||
			 more != ((1u << st->num_queues) - 1) - 1)) {
		log_err("%s section: %u queues, but queue states 0x%x", "virtio-blk",
			st->num_queues, more | 1u);
		ret = -EBADMSG;
	}
	if (ret == 0)
		ret = virtio_blk_load(opaque, st);
	free(st);
	return ret;
}

static const struct state_ops blk_state_ops = {
	.name = "virtio-blk",
	.version = 1,
	.min_version = 1,
	.quiesce = blk_state_quiesce,
	.save = blk_state_save,
	.load = blk_state_load,
	.post_load = NULL,	/* load kicks the queue itself */
};

int virtio_blk_register_state(struct virtio_blk *blk, struct state_registry *reg)
{
	return state_register(reg, virtio_blk_id(blk), &blk_state_ops, blk);
}
