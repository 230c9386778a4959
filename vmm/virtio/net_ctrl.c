// SPDX-License-Identifier: MIT
/*
 * virtio-net control queue (virtio 1.2 §5.1.6.5): commands parsed by net_ctrl_parse
 * (net_parse.c) and applied here: rx mode, MAC address, MAC tables, announce ack.
 */
#define LOG_TAG "virtio-net"
#include "vmm/virtio/net_internal.h"

/* ---- control queue (§5.1.6.5): rx mode, MAC table/address, announce ack ---- */

/* Apply a parsed command: the ack to answer. */
static uint8_t ctrl_apply(struct virtio_net *net, const struct net_ctrl_req *req)
{
	switch (req->op) {
	case NET_CTRL_PROMISC:
		net->promisc = req->val;
		break;
	case NET_CTRL_ALLMULTI:
		net->allmulti = req->val;
		break;
	case NET_CTRL_MAC_ADDR:
		memcpy(net->mac, req->mac, 6);
		break;
	case NET_CTRL_MAC_TABLE:
		break;		/* not filtered: the guest's stack drops what it did not ask for */
	case NET_CTRL_ANNOUNCE_ACK:
		net->status_extra &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
		break;
	case NET_CTRL_NONE:
	default:
		return VIRTIO_NET_ERR;
	}
	return VIRTIO_NET_OK;
}

void net_ctrl_process(struct virtio_net *net)
{
	struct vq_seg segs[NET_CTRL_QUEUE_SIZE];
	struct vq_chain ch = { .segs = segs, .cap = NET_CTRL_QUEUE_SIZE };
	static uint8_t data[NET_CTRL_MAX_DATA];		/* loop thread only */
	int ret;

	if (!net_live(net) || !vq_enabled(&net->ctrl))
		return;
	do {
		vq_disable_notify(&net->ctrl);
		while ((ret = vq_pop(&net->ctrl, &ch)) > 0) {
			struct net_ctrl_req req;
			uint8_t ack;

			if (net_ctrl_parse(net->vd.acked_features, &ch, data, sizeof(data), &req) < 0) {
				dev_ratelimited(net, LOG_WARN, "control chain %u: %u/%u bytes", ch.head,
						ch.out_len, ch.in_len);
				net_broken(net);
				return;
			}
			ack = ctrl_apply(net, &req);
			if (ack != VIRTIO_NET_OK)
				dev_ratelimited(net, LOG_DBG, "control class %u cmd %u refused", req.cls,
						req.cmd);
			vq_chain_copy_to(&ch, 0, &ack, 1);
			vq_push(&net->ctrl, &ch, 1);
		}
		if (ret < 0) {
			net_broken(net);
			return;
		}
	} while (vq_enable_notify(&net->ctrl));
	if (vq_should_notify(&net->ctrl))
		virtio_dev_notify(&net->vd, NET_Q_CTRL);
}
