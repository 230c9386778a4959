/* SPDX-License-Identifier: MIT */
/*
 * virtio-net request parsers, internal to vmm/virtio/net*.c: pure functions over a popped
 * descriptor chain and the negotiated feature bits, with no device, tap or event loop, so
 * that tests/fuzz/fuzz_net.c can drive them with hostile chains. net.c applies the result.
 */
#ifndef VMM_VIRTIO_NET_PARSE_H
#define VMM_VIRTIO_NET_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include <linux/virtio_net.h>

#include "net/tap.h"
#include "vmm/virtio/queue.h"

#define NET_HDR_LEN		TAP_VNET_HDR_LEN
/* Largest frame: a 64 KiB GSO packet plus Ethernet and a VLAN tag. */
#define NET_MAX_FRAME		(65535u + 14u + 4u)
#define NET_BOUNCE_LEN		(NET_HDR_LEN + NET_MAX_FRAME)
#define NET_CTRL_MAX_DATA	4096	/* MAC table of ~680 entries; larger: VIRTIO_NET_ERR */

/* A transmit request: the guest's header (copied once) and the frame length after it. */
struct net_tx_req {
	struct virtio_net_hdr_v1 hdr;
	uint32_t frame;
	const char *why;		/* -EBADMSG: what was wrong, for the log */
};

/*
 * Parse a popped tx chain (virtio 1.2 §5.1.6.2) against @features (acked feature bits).
 * 0: valid, send @req->hdr + the payload after NET_HDR_LEN; -EBADMSG: malformed packet, drop
 * it and push the chain (@req->why says why); -EINVAL: the chain has device-writable buffers,
 * a driver error (DEVICE_NEEDS_RESET).
 */
int net_tx_parse(uint64_t features, const struct vq_chain *ch, struct net_tx_req *req);

/* The check of a tx header alone: NULL when valid, else what is wrong. */
const char *net_tx_hdr_invalid(uint64_t features, const struct virtio_net_hdr_v1 *h,
			       uint32_t frame);

enum net_ctrl_op {
	NET_CTRL_NONE,			/* refused (ack VIRTIO_NET_ERR) */
	NET_CTRL_PROMISC,		/* val */
	NET_CTRL_ALLMULTI,		/* val */
	NET_CTRL_MAC_ADDR,		/* mac */
	NET_CTRL_MAC_TABLE,		/* uc, mc entries (not filtered: accepted, nothing kept) */
	NET_CTRL_ANNOUNCE_ACK,
};

/* A control queue command (virtio 1.2 §5.1.6.5). */
struct net_ctrl_req {
	uint8_t cls, cmd;
	enum net_ctrl_op op;
	uint8_t val;
	uint8_t mac[6];
	uint32_t uc, mc;
};

/*
 * Parse a popped control chain: class + command + data readable, an ack byte writable.
 * @buf (@bufsz bytes) receives a copy of the command data. 0: @req->op says what to apply
 * (NET_CTRL_NONE: answer VIRTIO_NET_ERR, anything else VIRTIO_NET_OK once applied);
 * -EINVAL: the chain cannot carry a command and an ack, a driver error.
 */
int net_ctrl_parse(uint64_t features, const struct vq_chain *ch, uint8_t *buf, size_t bufsz,
		   struct net_ctrl_req *req);

#endif
