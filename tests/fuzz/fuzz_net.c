// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the virtio-net request parsers (vmm/virtio/net_parse.c): the transmit
 * path (virtio_net_hdr_v1 + frame: flags, gso type/size, checksum offsets, lengths) and the
 * control queue commands (rx mode, MAC address and table, announce ack, and the VLAN / MQ
 * classes we refuse). The input is a descriptor chain as the virtqueue walker would hand it
 * over: each segment is its own malloc'd buffer, so AddressSanitizer reports any read or
 * write past a segment, and the parser's result is checked against what it promises.
 *
 * Input layout (little-endian):
 *   [0]      bit0: 0 = tx chain, 1 = control chain
 *   [1..8]   acked feature bits (le64)
 *   [9]      segments n = 1 + b % 16; [10] readable segments = b % (n + 1)
 *   [11..]   n × le16 segment lengths (1 + b % 4096: the walker drops empty descriptors; the tx header
 *            may span several), then
 *            the segment contents in order (short input: zero-filled)
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/virtio/net_parse.h"

#define MAX_SEGS	16u
#define SEG_MAX		4096u

/* LLVMFuzzerInitialize and the kvm_ioctl stub: fuzz_common.c. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_tx(uint64_t f, const struct vq_chain *ch)
{
	static uint8_t frame[NET_BOUNCE_LEN];
	struct net_tx_req req;
	const struct virtio_net_hdr_v1 *h = &req.hdr;
	int ret = net_tx_parse(f, ch, &req);

	if (ret == -EINVAL) {
		if (ch->n == ch->n_out)
			abort();		/* only device-writable buffers make a driver error */
		return;
	}
	if (ret == -EBADMSG) {
		if (!req.why)
			abort();
		return;
	}
	if (ret != 0 || req.frame + NET_HDR_LEN != ch->out_len || req.frame < 14 ||
	    req.frame > NET_MAX_FRAME)
		abort();
	/* What a valid header promises the tap (and net.c's writev). */
	if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
	    (uint32_t)le16toh(h->csum_start) + le16toh(h->csum_offset) + 2 > req.frame)
		abort();
	if (h->flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
		abort();
	if ((h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN) != VIRTIO_NET_HDR_GSO_NONE &&
	    (!le16toh(h->gso_size) || le16toh(h->hdr_len) > req.frame))
		abort();
	/* The payload net.c sends: every byte of it readable. */
	if (vq_chain_copy_from(ch, NET_HDR_LEN, frame, req.frame) != req.frame)
		abort();
}

static void check_ctrl(uint64_t f, const struct vq_chain *ch)
{
	static uint8_t buf[NET_CTRL_MAX_DATA];
	struct net_ctrl_req req;
	uint8_t ack;
	uint32_t len;

	if (net_ctrl_parse(f, ch, buf, sizeof(buf), &req) < 0) {
		if (ch->out_len >= 2 && ch->in_len >= 1)
			abort();
		return;
	}
	len = ch->out_len - 2;
	switch (req.op) {
	case NET_CTRL_PROMISC:
	case NET_CTRL_ALLMULTI:
		if (len != 1 || req.cls != VIRTIO_NET_CTRL_RX || req.val > 1)
			abort();
		break;
	case NET_CTRL_MAC_ADDR:
		if (len != 6 || memcmp(req.mac, buf, 6))
			abort();
		break;
	case NET_CTRL_MAC_TABLE:
		if ((uint64_t)8 + 6ull * ((uint64_t)req.uc + req.mc) != len)
			abort();
		break;
	case NET_CTRL_ANNOUNCE_ACK:
		if (req.cls != VIRTIO_NET_CTRL_ANNOUNCE)
			abort();
		break;
	case NET_CTRL_NONE:
		break;
	default:
		abort();
	}
	ack = req.op == NET_CTRL_NONE ? VIRTIO_NET_ERR : VIRTIO_NET_OK;
	if (vq_chain_copy_to(ch, 0, &ack, 1) != 1)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vq_seg segs[MAX_SEGS];
	struct vq_chain ch = { .segs = segs, .cap = MAX_SEGS };
	uint64_t f;
	size_t pos;
	unsigned int n, nout, i;

	if (size < 11)
		return 0;
	memcpy(&f, data + 1, 8);
	f = le64toh(f);
	n = 1 + data[9] % MAX_SEGS;
	nout = data[10] % (n + 1);
	pos = 11 + 2 * n;
	if (pos > size)
		return 0;
	for (i = 0; i < n; i++) {
		uint32_t l;
		uint16_t raw;

		memcpy(&raw, data + 11 + 2 * i, 2);
		l = 1 + le16toh(raw) % SEG_MAX;
		segs[i] = (struct vq_seg){ .len = l, .writable = i >= nout, .gpa = 0x1000ull * i };
		segs[i].addr = calloc(1, l);
		if (!segs[i].addr)
			abort();
		if (pos < size) {
			size_t c = size - pos < l ? size - pos : l;

			memcpy(segs[i].addr, data + pos, c);
			pos += c;
		}
		if (i < nout)
			ch.out_len += l;
		else
			ch.in_len += l;
	}
	ch.n = n;
	ch.n_out = nout;
	ch.head = 0;
	if (data[0] & 1)
		check_ctrl(f, &ch);
	else
		check_tx(f, &ch);
	for (i = 0; i < n; i++)
		free(segs[i].addr);
	return 0;
}
