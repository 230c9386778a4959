// SPDX-License-Identifier: MIT
/*
 * virtio-net's state section for snapshots and migration (vmm/state.h, docs/state-format.md):
 * struct virtio_net_state (net.h) as TLV fields — the transport, the three queues' indices,
 * MAC, status and rx mode. Save and load go through virtio_net_save/virtio_net_load, which
 * validate; this file only encodes. Kept apart from net.c as the style guide asks of devices
 * past ~600 lines.
 */
#define LOG_TAG "virtio-net"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/state.h"
#include "vmm/virtio/net.h"
#include "vmm/virtio/pci_state.h"

/* ---- state_ops: virtio_net_state as TLV fields (docs/state-format.md) ---- */

enum { NET_T_TRANSPORT = 1, NET_T_VQ_RX, NET_T_VQ_TX, NET_T_VQ_CTRL, NET_T_MAC, NET_T_STATUS,
       NET_T_PROMISC, NET_T_ALLMULTI };
/* The same vq field tags as virtio-rng's section. */
enum { VQ_T_DESC = 1, VQ_T_AVAIL, VQ_T_USED, VQ_T_SIZE, VQ_T_LAST_AVAIL, VQ_T_USED_IDX,
       VQ_T_SIGNALLED, VQ_T_ENABLED, VQ_T_EVENT_IDX, VQ_T_INDIRECT, VQ_T_SIGNALLED_VALID };

static void write_vq(struct state_writer *w, uint16_t tag, const struct vq_state *vq)
{
	const uint16_t R = STATE_F_REQUIRED;

	sw_nest_begin(w, tag, R);
	sw_u64(w, VQ_T_DESC, vq->desc, R);
	sw_u64(w, VQ_T_AVAIL, vq->avail, R);
	sw_u64(w, VQ_T_USED, vq->used, R);
	sw_u16(w, VQ_T_SIZE, vq->size, R);
	sw_u16(w, VQ_T_LAST_AVAIL, vq->last_avail_idx, R);
	sw_u16(w, VQ_T_USED_IDX, vq->used_idx, R);
	sw_u16(w, VQ_T_SIGNALLED, vq->signalled_used, 0);
	sw_u8(w, VQ_T_ENABLED, vq->enabled, R);
	sw_u8(w, VQ_T_EVENT_IDX, vq->event_idx, R);
	sw_u8(w, VQ_T_INDIRECT, vq->indirect, R);
	sw_u8(w, VQ_T_SIGNALLED_VALID, vq->signalled_used_valid, 0);
	sw_nest_end(w);
}

static int read_vq(const struct state_reader *parent, const struct state_field *f, struct vq_state *vq)
{
	struct state_reader r;
	struct state_field g;
	int ret = sr_nested(parent, f, &r);

	memset(vq, 0, sizeof(*vq));
	while (ret == 0 && (ret = sr_next(&r, &g)) > 0) {
		switch (g.tag) {
		case VQ_T_DESC:		ret = sr_u64(&g, &vq->desc); break;
		case VQ_T_AVAIL:	ret = sr_u64(&g, &vq->avail); break;
		case VQ_T_USED:		ret = sr_u64(&g, &vq->used); break;
		case VQ_T_SIZE:		ret = sr_u16(&g, &vq->size); break;
		case VQ_T_LAST_AVAIL:	ret = sr_u16(&g, &vq->last_avail_idx); break;
		case VQ_T_USED_IDX:	ret = sr_u16(&g, &vq->used_idx); break;
		case VQ_T_SIGNALLED:	ret = sr_u16(&g, &vq->signalled_used); break;
		case VQ_T_ENABLED:	ret = sr_u8(&g, &vq->enabled); break;
		case VQ_T_EVENT_IDX:	ret = sr_u8(&g, &vq->event_idx); break;
		case VQ_T_INDIRECT:	ret = sr_u8(&g, &vq->indirect); break;
		case VQ_T_SIGNALLED_VALID: ret = sr_u8(&g, &vq->signalled_used_valid); break;
		default:		ret = sr_skip_unknown(&r, &g); break;
		}
	}
	return ret;
}

static int net_state_save(void *opaque, struct state_writer *w)
{
	struct virtio_net_state *st = malloc(sizeof(*st));
	const uint16_t R = STATE_F_REQUIRED;
	int ret;

	if (!st)
		return -ENOMEM;
	virtio_net_save(opaque, st);
	sw_nest_begin(w, NET_T_TRANSPORT, R);
	ret = virtio_pci_state_write(&st->transport, w);
	sw_nest_end(w);
	write_vq(w, NET_T_VQ_RX, &st->vq[VIRTIO_NET_Q_RX0]);
	write_vq(w, NET_T_VQ_TX, &st->vq[VIRTIO_NET_Q_TX0]);
	write_vq(w, NET_T_VQ_CTRL, &st->vq[VIRTIO_NET_Q_CTRL]);
	sw_bytes(w, NET_T_MAC, st->mac, 6, R);
	sw_u16(w, NET_T_STATUS, st->status, R);
	sw_u8(w, NET_T_PROMISC, st->promisc, 0);
	sw_u8(w, NET_T_ALLMULTI, st->allmulti, 0);
	free(st);
	return ret < 0 ? ret : sw_error(w);
}

static int net_state_load(void *opaque, struct state_reader *r, uint16_t version)
{
	struct virtio_net_state *st = calloc(1, sizeof(*st));
	unsigned int have = 0;
	struct state_field f;
	int ret;

	if (!st)
		return -ENOMEM;
	while ((ret = sr_next(r, &f)) > 0) {
		struct state_reader sub;

		switch (f.tag) {
		case NET_T_TRANSPORT:
			ret = sr_nested(r, &f, &sub);
			if (ret == 0)
				ret = virtio_pci_state_read(&sub, &st->transport);
			break;
		case NET_T_VQ_RX:	ret = read_vq(r, &f, &st->vq[VIRTIO_NET_Q_RX0]); break;
		case NET_T_VQ_TX:	ret = read_vq(r, &f, &st->vq[VIRTIO_NET_Q_TX0]); break;
		case NET_T_VQ_CTRL:	ret = read_vq(r, &f, &st->vq[VIRTIO_NET_Q_CTRL]); break;
		case NET_T_MAC:		ret = sr_bytes(&f, st->mac, 6); break;
		case NET_T_STATUS:	ret = sr_u16(&f, &st->status); break;
		case NET_T_PROMISC:	ret = sr_u8(&f, &st->promisc); break;
		case NET_T_ALLMULTI:	ret = sr_u8(&f, &st->allmulti); break;
		default:		ret = sr_skip_unknown(r, &f); break;
		}
		if (ret < 0)
			break;
		if (f.tag <= NET_T_STATUS)
			have |= 1u << f.tag;
	}
	/* Everything but promisc/allmulti (default off) is required. */
	if (ret == 0 && have != 0x7eu)
		ret = -EBADMSG;
	if (ret == 0)
		ret = virtio_net_load(opaque, st);
	free(st);
	return ret;
}

const struct state_ops virtio_net_state_ops = {
	.name = "virtio-net",
	.version = 1,
	.min_version = 1,
	.quiesce = NULL,	/* packets are handled synchronously: nothing in flight */
	.save = net_state_save,
	.load = net_state_load,
};
