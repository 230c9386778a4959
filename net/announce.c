/* SPDX-License-Identifier: MIT */
/* Post-migration self-announce: RARP (and GARP when the address is known) out of each tap. */
#define LOG_TAG "announce"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net/announce.h"
#include "vmm/lib/log.h"

/* Ethernet + ARP header for Ethernet/IPv4 (RFC 826; RARP RFC 903 reuses the layout). */
static size_t build_arp(uint8_t f[ANNOUNCE_FRAME_LEN], uint16_t ethertype, uint16_t op,
			const uint8_t mac[6], const uint8_t tha[6], uint32_t spa, uint32_t tpa)
{
	uint8_t *p = f;

	memset(f, 0, ANNOUNCE_FRAME_LEN);	/* the padding to 60 bytes is zeros */
	memset(p, 0xff, 6);			/* destination: broadcast */
	memcpy(p + 6, mac, 6);
	p[12] = (uint8_t)(ethertype >> 8);
	p[13] = (uint8_t)ethertype;
	p += 14;
	p[0] = 0x00; p[1] = 0x01;		/* htype: Ethernet */
	p[2] = 0x08; p[3] = 0x00;		/* ptype: IPv4 */
	p[4] = 6;				/* hlen */
	p[5] = 4;				/* plen */
	p[6] = (uint8_t)(op >> 8);
	p[7] = (uint8_t)op;
	memcpy(p + 8, mac, 6);			/* sender hardware address */
	memcpy(p + 14, &spa, 4);		/* already network order */
	memcpy(p + 18, tha, 6);
	memcpy(p + 24, &tpa, 4);
	return ANNOUNCE_FRAME_LEN;
}

size_t announce_build_rarp(const uint8_t mac[6], uint8_t frame[ANNOUNCE_FRAME_LEN])
{
	/* Request reverse (3): "who has this MAC" with our own MAC as target; no IPs. */
	return build_arp(frame, ETH_P_RARP_FRAME, 3, mac, mac, 0, 0);
}

size_t announce_build_garp(const uint8_t mac[6], uint32_t ipv4,
			   uint8_t frame[ANNOUNCE_FRAME_LEN])
{
	static const uint8_t zero[6];

	/* A request (not a reply) for our own address: RFC 5227 §3 prefers it for announcements. */
	return build_arp(frame, 0x0806, 1, mac, zero, ipv4, ipv4);
}

static int send_frame(struct announce_nic *n, const uint8_t *frame, size_t len)
{
	static const uint8_t hdr[ANNOUNCE_MAX_HDR];	/* no offloads: flags 0, gso NONE */
	struct iovec iov[2] = {
		{ .iov_base = (void *)hdr, .iov_len = n->vnet_hdr_len },
		{ .iov_base = (void *)frame, .iov_len = len },
	};
	ssize_t r;

	/* Non-blocking tap fd, one small frame: never blocks the loop; EAGAIN = lost round. */
	r = writev(n->fd, iov, 2);
	if (r < 0)
		return -errno;
	return (size_t)r == n->vnet_hdr_len + len ? 0 : -EIO;
}

void announce_send_round(struct announce *a)
{
	uint8_t frame[ANNOUNCE_FRAME_LEN];
	unsigned int i;

	for (i = 0; i < a->nr_nics; i++) {
		struct announce_nic *n = &a->nic[i];
		int ret;

		ret = send_frame(n, frame, announce_build_rarp(n->mac, frame));
		if (ret == 0 && n->ipv4)
			ret = send_frame(n, frame, announce_build_garp(n->mac, n->ipv4, frame));
		if (ret == 0) {
			n->sent++;
		} else {
			n->failed++;
			log_ratelimited(LOG_WARN, "%02x:%02x:%02x:%02x:%02x:%02x: %s", n->mac[0],
					n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5],
					strerror(-ret));
		}
	}
	a->round++;
}

static uint64_t gap_ns(unsigned int sent)
{
	/* after round 1: 50 ms, then 150, 250, 350 ms (QEMU's announce-initial/step) */
	return ((uint64_t)ANNOUNCE_FIRST_MS + (uint64_t)(sent - 1) * ANNOUNCE_STEP_MS) * 1000000ull;
}

static void on_timer(struct evloop *l, struct ev_req *req, int res)
{
	struct announce *a = req->opaque;

	if (res == -ECANCELED)
		return;
	announce_send_round(a);
	if (a->round < a->rounds && evloop_timeout(l, &a->timer, gap_ns(a->round)) < 0)
		log_warn("could not arm the next announce round: %u of %u sent", a->round, a->rounds);
}

int announce_start(struct announce *a, struct evloop *loop, const struct announce_nic *nics,
		   unsigned int nr_nics, unsigned int rounds)
{
	unsigned int i;
	int ret;

	if (a->loop && ev_req_busy(&a->timer))
		return -EBUSY;
	if (nr_nics > ANNOUNCE_MAX_NICS || !rounds)
		return -EINVAL;
	for (i = 0; i < nr_nics; i++)
		if (nics[i].fd < 0 || nics[i].vnet_hdr_len > ANNOUNCE_MAX_HDR)
			return -EINVAL;
	memset(a, 0, sizeof(*a));
	a->loop = loop;
	a->nr_nics = nr_nics;
	a->rounds = rounds;
	memcpy(a->nic, nics, nr_nics * sizeof(*nics));
	ev_req_init(&a->timer, on_timer, a);
	for (i = 0; i < nr_nics; i++) {
		const uint8_t *m = nics[i].mac;

		log_info("%02x:%02x:%02x:%02x:%02x:%02x x%u (rarp%s, guest announce %s)",
			 m[0], m[1], m[2], m[3], m[4], m[5], rounds, nics[i].ipv4 ? " + garp" : "",
			 nics[i].guest_announce ? "asked" : "not negotiated");
	}
	announce_send_round(a);
	if (a->round < a->rounds) {
		ret = evloop_timeout(loop, &a->timer, gap_ns(a->round));
		if (ret < 0)
			return ret;
	}
	return 0;
}

void announce_stop(struct announce *a)
{
	if (a->loop && ev_req_busy(&a->timer))
		evloop_cancel(a->loop, &a->timer);
}
