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
static int net_state_quiesce(void *opaque)
{
	virtio_net_quiesce(opaque);
	return 0;
}

static int net_state_save(void *opaque, struct state_writer *w)
{
	struct virtio_net_state *st = malloc(sizeof(*st));
	const uint16_t R = STATE_F_REQUIRED;
	int ret;

	if (!st)
		return -ENOMEM;
	virtio_net_save(opaque, st);
	ret = virtio_pci_state_write_nest(w, NET_T_TRANSPORT, &st->transport);
	virtio_vq_state_write_nest(w, NET_T_VQ_RX, &st->vq[VIRTIO_NET_Q_RX0]);
	virtio_vq_state_write_nest(w, NET_T_VQ_TX, &st->vq[VIRTIO_NET_Q_TX0]);
	virtio_vq_state_write_nest(w, NET_T_VQ_CTRL, &st->vq[VIRTIO_NET_Q_CTRL]);
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
		switch (f.tag) {
		case NET_T_TRANSPORT:	ret = virtio_pci_state_read_nest(r, &f, &st->transport); break;
		case NET_T_VQ_RX:	ret = virtio_vq_state_read_nest(r, &f, &st->vq[VIRTIO_NET_Q_RX0]); break;
		case NET_T_VQ_TX:	ret = virtio_vq_state_read_nest(r, &f, &st->vq[VIRTIO_NET_Q_TX0]); break;
		case NET_T_VQ_CTRL:	ret = virtio_vq_state_read_nest(r, &f, &st->vq[VIRTIO_NET_Q_CTRL]); break;
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
	.quiesce = net_state_quiesce,	/* no rx/tx after the final dirty sync (see net.h) */
	.save = net_state_save,
	.load = net_state_load,
};
