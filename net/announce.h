/* SPDX-License-Identifier: MIT */
/*
 * Announce a VM's NICs on the destination's LAN after a live migration or a snapshot restore,
 * so bridges and switches move the MAC to the new port at once instead of after their fdb
 * ageing (300 s on a Linux bridge) or the next frame the guest happens to send.
 *
 * What is sent, per NIC, out of its own tap fd (so it enters the bridge on the tap's port):
 *   - RARP "request reverse" with sender = target hardware address = the NIC's MAC, to the
 *     broadcast address (what QEMU's self-announce sends). It needs no IP address, which the
 *     vmm does not know (a bridged guest configures its own, statically or by DHCP).
 *   - A gratuitous ARP request only when the caller knows the guest's IPv4 address (ipv4 != 0);
 *     the vmm never does today, so in practice RARP only. Gratuitous ARP and IPv6 unsolicited
 *     neighbour advertisements come from the guest itself: at the same moment every NIC whose
 *     guest negotiated VIRTIO_NET_F_GUEST_ANNOUNCE gets VIRTIO_NET_S_ANNOUNCE (Linux answers with
 *     GARP + unsolicited NA for its addresses).
 * Repeated ANNOUNCE_ROUNDS times with a growing gap (50 ms, then +100 ms each: QEMU's announce
 * defaults), from a timer on the vmm's event loop: a frame lost while the bridge's port is not
 * forwarding yet, or an fdb entry the source's last frame re-learned, is corrected by the next.
 *
 * Threading: loop thread only (start, timer, stop).
 */
#ifndef NET_ANNOUNCE_H
#define NET_ANNOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/lib/evloop.h"

#define ANNOUNCE_FRAME_LEN	60	/* minimum Ethernet frame without FCS: ARP is padded to it */
#define ANNOUNCE_MAX_NICS	8
#define ANNOUNCE_ROUNDS		5
#define ANNOUNCE_FIRST_MS	50
#define ANNOUNCE_STEP_MS	100
#define ANNOUNCE_MAX_HDR	16	/* largest vnet header we prepend (zeroed) */

#define ETH_P_RARP_FRAME	0x8035

/* Build a RARP request-reverse (opcode 3) for @mac into @frame: ANNOUNCE_FRAME_LEN. */
size_t announce_build_rarp(const uint8_t mac[6], uint8_t frame[ANNOUNCE_FRAME_LEN]);
/*
 * Build a gratuitous ARP request (opcode 1, sender = target = @ipv4, target MAC zero) to the
 * broadcast address. @ipv4 in network byte order. Returns ANNOUNCE_FRAME_LEN.
 */
size_t announce_build_garp(const uint8_t mac[6], uint32_t ipv4,
			   uint8_t frame[ANNOUNCE_FRAME_LEN]);

struct announce_nic {
	int fd;				/* the NIC's packet fd (not owned) */
	unsigned int vnet_hdr_len;	/* zeroed header to prepend: 0 or up to ANNOUNCE_MAX_HDR */
	uint8_t mac[6];
	uint32_t ipv4;			/* network order; 0: unknown (RARP only) */
	bool guest_announce;		/* the guest was asked too (for the log line) */
	uint64_t sent, failed;
};

/* Embed in a long-lived object: the timer request must outlive the loop's last turn. */
struct announce {
	struct evloop *loop;
	struct ev_req timer;
	unsigned int nr_nics;
	unsigned int round;		/* rounds sent so far */
	unsigned int rounds;
	struct announce_nic nic[ANNOUNCE_MAX_NICS];
};

/*
 * Send round 1 now and arm the timer for the rest. @nics copied. Loop thread (or before
 * evloop_run, on the thread that will run it). 0 or -errno (-EINVAL: too many NICs or a bad
 * header length, -EBUSY: already running).
 */
int  announce_start(struct announce *a, struct evloop *loop, const struct announce_nic *nics,
		    unsigned int nr_nics, unsigned int rounds);
/* Send one round to every NIC now (used by announce_start and the timer; also for tests). */
void announce_send_round(struct announce *a);
/* Cancel the timer if armed; loop thread. */
void announce_stop(struct announce *a);

#endif
