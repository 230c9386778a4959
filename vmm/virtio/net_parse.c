// SPDX-License-Identifier: MIT
/*
 * virtio-net request parsers (see net_parse.h): the transmit header and the control queue
 * commands, validated against the negotiated features before net.c acts on them. Guest
 * input is hostile: every length comes from the chain's own totals (already bounded by the
 * virtqueue walker) and every copy goes through vq_chain_copy_from.
 */
#define LOG_TAG "virtio-net"
#include "vmm/virtio/net_parse.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include <linux/if_ether.h>

_Static_assert(sizeof(struct virtio_net_hdr_v1) == NET_HDR_LEN, "virtio 1.x net header");
_Static_assert(NET_MAX_FRAME == 65535u + ETH_HLEN + 4u, "frame limit");

static bool fhas(uint64_t features, unsigned int bit)
{
	return features & (1ull << bit);
}

/* Check a guest's tx header against what was negotiated (virtio 1.2 §5.1.6.2.1). */
const char *net_tx_hdr_invalid(uint64_t features, const struct virtio_net_hdr_v1 *h,
			       uint32_t frame)
{
	uint8_t gso = h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;

	if (h->flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
		return "unknown header flags";
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if (!fhas(features, VIRTIO_NET_F_CSUM))
			return "NEEDS_CSUM without VIRTIO_NET_F_CSUM";
		if ((uint32_t)le16toh(h->csum_start) + le16toh(h->csum_offset) + 2 > frame)
			return "checksum position beyond the frame";
	}
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_NONE:
		if (h->gso_type & VIRTIO_NET_HDR_GSO_ECN)
			return "ECN without GSO";
		return NULL;
	case VIRTIO_NET_HDR_GSO_TCPV4:
		if (!fhas(features, VIRTIO_NET_F_HOST_TSO4))
			return "TSO4 not negotiated";
		break;
	case VIRTIO_NET_HDR_GSO_TCPV6:
		if (!fhas(features, VIRTIO_NET_F_HOST_TSO6))
			return "TSO6 not negotiated";
		break;
	case VIRTIO_NET_HDR_GSO_UDP:
		if (!fhas(features, VIRTIO_NET_F_HOST_UFO))
			return "UFO not negotiated";
		break;
	default:
		return "unknown gso_type";
	}
	if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !fhas(features, VIRTIO_NET_F_HOST_ECN))
		return "ECN not negotiated";
	if (!le16toh(h->gso_size))
		return "GSO with gso_size 0";
	if (le16toh(h->hdr_len) > frame)
		return "hdr_len beyond the frame";
	return NULL;
}

int net_tx_parse(uint64_t features, const struct vq_chain *ch, struct net_tx_req *req)
{
	req->why = NULL;
	req->frame = 0;
	if (ch->n != ch->n_out)
		return -EINVAL;
	if (ch->out_len < NET_HDR_LEN + ETH_HLEN || ch->out_len > NET_BOUNCE_LEN) {
		req->why = "frame length out of range";
		return -EBADMSG;
	}
	req->frame = ch->out_len - NET_HDR_LEN;
	vq_chain_copy_from(ch, 0, &req->hdr, sizeof(req->hdr));
	req->why = net_tx_hdr_invalid(features, &req->hdr, req->frame);
	return req->why ? -EBADMSG : 0;
}

/* The command data (@d, @len bytes) for class/command in @req: fills in @req->op. */
static void ctrl_decode(uint64_t features, const uint8_t *d, uint32_t len,
			struct net_ctrl_req *req)
{
	req->op = NET_CTRL_NONE;
	switch (req->cls) {
	case VIRTIO_NET_CTRL_RX:
		/* We do not filter: the guest's stack drops what it did not ask for. */
		if (!fhas(features, VIRTIO_NET_F_CTRL_RX) || len != 1)
			return;
		req->val = d[0] != 0;
		if (req->cmd == VIRTIO_NET_CTRL_RX_PROMISC)
			req->op = NET_CTRL_PROMISC;
		else if (req->cmd == VIRTIO_NET_CTRL_RX_ALLMULTI)
			req->op = NET_CTRL_ALLMULTI;
		return;
	case VIRTIO_NET_CTRL_MAC:
		if (req->cmd == VIRTIO_NET_CTRL_MAC_ADDR_SET) {
			if (!fhas(features, VIRTIO_NET_F_CTRL_MAC_ADDR) || len != 6)
				return;
			memcpy(req->mac, d, 6);
			req->op = NET_CTRL_MAC_ADDR;
			return;
		}
		if (req->cmd == VIRTIO_NET_CTRL_MAC_TABLE_SET && fhas(features, VIRTIO_NET_F_CTRL_RX)) {
			/* Two tables: le32 count + count MACs each, nothing after. */
			uint32_t off = 0, cnt[2];

			for (int t = 0; t < 2; t++) {
				if (len - off < 4)
					return;
				memcpy(&cnt[t], d + off, 4);
				cnt[t] = le32toh(cnt[t]);
				off += 4;
				if (cnt[t] > (len - off) / 6)
					return;
				off += cnt[t] * 6;
			}
			if (off != len)
				return;
			req->uc = cnt[0];
			req->mc = cnt[1];
			req->op = NET_CTRL_MAC_TABLE;
		}
		return;
	case VIRTIO_NET_CTRL_ANNOUNCE:
		if (req->cmd == VIRTIO_NET_CTRL_ANNOUNCE_ACK &&
		    fhas(features, VIRTIO_NET_F_GUEST_ANNOUNCE))
			req->op = NET_CTRL_ANNOUNCE_ACK;
		return;
	default:
		/* VLAN and MQ are not offered: refused like any unknown class. */
		return;
	}
}

int net_ctrl_parse(uint64_t features, const struct vq_chain *ch, uint8_t *buf, size_t bufsz,
		   struct net_ctrl_req *req)
{
	uint8_t hdr[2];
	uint32_t len;

	memset(req, 0, sizeof(*req));
	/* class + command readable, at least the ack byte writable (§5.1.6.5). */
	if (ch->out_len < 2 || ch->in_len < 1)
		return -EINVAL;
	len = ch->out_len - 2;
	vq_chain_copy_from(ch, 0, hdr, 2);
	req->cls = hdr[0];
	req->cmd = hdr[1];
	if (len > bufsz)
		return 0;		/* NET_CTRL_NONE */
	vq_chain_copy_from(ch, 2, buf, len);
	ctrl_decode(features, buf, len, req);
	return 0;
}
