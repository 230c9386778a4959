// SPDX-License-Identifier: MIT
/*
 * virtio-blk's state section for snapshots and migration (vmm/state.h): the plain
 * struct virtio_blk_state of blk.h written as TLV fields, plus quiesce. Kept apart from blk.c
 * (Firecracker's "persist" role, style guide §3.4.7); it only uses blk.h's public API.
 *
 * Section "virtio-blk" version 1, fields (all REQUIRED unless noted):
 *   1 TRANSPORT  nested: virtio_pci_state_write()
 *   2 VQ         nested: the request queue's vq_state (virtio_vq_state_write_nest)
 *   3 CAPACITY   u64 sectors — load refuses another disk size
 *   4 READ_ONLY  u8 0/1      — and another read-only flag
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

enum { BLK_T_TRANSPORT = 1, BLK_T_VQ, BLK_T_CAPACITY, BLK_T_READ_ONLY };

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
	virtio_vq_state_write_nest(w, BLK_T_VQ, &st->vq);
	sw_u64(w, BLK_T_CAPACITY, st->capacity, R);
	sw_u8(w, BLK_T_READ_ONLY, st->read_only, R);
	if (ret == 0)
		ret = sw_error(w);
out:
	free(st);
	return ret;
}

static int blk_state_load(void *opaque, struct state_reader *r, uint16_t version)
{
	struct virtio_blk_state *st = calloc(1, sizeof(*st));
	unsigned int have = 0;
	struct state_field f;
	int ret;

	if (!st)
		return -ENOMEM;
	while ((ret = sr_next(r, &f)) > 0) {
		switch (f.tag) {
		case BLK_T_TRANSPORT:
			ret = virtio_pci_state_read_nest(r, &f, &st->transport);
			break;
		case BLK_T_VQ:
			ret = virtio_vq_state_read_nest(r, &f, &st->vq);
			break;
		case BLK_T_CAPACITY:
			ret = sr_u64(&f, &st->capacity);
			break;
		case BLK_T_READ_ONLY:
			ret = sr_u8(&f, &st->read_only);
			if (ret == 0 && st->read_only > 1)
				ret = -EBADMSG;
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
