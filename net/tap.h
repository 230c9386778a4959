/* SPDX-License-Identifier: MIT */
/*
 * A tap device opened for a virtio-net back-end: /dev/net/tun with IFF_TAP | IFF_NO_PI |
 * IFF_VNET_HDR, so every read and write carries a virtio_net_hdr in front of the Ethernet frame
 * (the guest's header passes straight through, Linux does checksum/segmentation). The fd is
 * non-blocking and close-on-exec.
 *
 * Offloads. TUNSETOFFLOAD tells the kernel what the *reader* (our guest) accepts: TUN_F_CSUM
 * (partial checksums), TUN_F_TSO4/6/TSO_ECN/UFO (GSO packets). What a tap can do depends on the
 * kernel; tap_open() probes every flag once and records the ones the kernel accepted in
 * @offloads_supported, so virtio-net offers the matching guest features only when they work.
 * Writes of GSO/partial-checksum packets (host offloads, guest -> tap) need no setting.
 *
 * Multiqueue. A tap created with IFF_MULTI_QUEUE (issue 6's net/ code will create them so)
 * can only be opened with that flag, and one without only without it: tap_open() tries the
 * form asked for and falls back to the other, recording which worked in @multi_queue, so a
 * later multiqueue virtio-net opens one fd per queue pair with the same call.
 *
 * Threading: none inside; the owner serialises calls.
 */
#ifndef NET_TAP_H
#define NET_TAP_H

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>

/* The virtio 1.x header (struct virtio_net_hdr_v1: with num_buffers), what the tap reads/writes. */
#define TAP_VNET_HDR_LEN	12

struct tap {
	int fd;
	char name[IFNAMSIZ];		/* the kernel's name (a "%d" pattern resolved) */
	bool multi_queue;		/* opened with IFF_MULTI_QUEUE */
	unsigned int offloads_supported;	/* TUN_F_* mask TUNSETOFFLOAD accepted */
	unsigned int offloads;		/* TUN_F_* currently set */
};

/*
 * Open (or create, with CAP_NET_ADMIN) tap @name. @multi_queue: prefer IFF_MULTI_QUEUE. Sets
 * the vnet header size to TAP_VNET_HDR_LEN, probes the offloads and leaves them all off.
 * 0 or -errno, with one log line saying what failed and, for EPERM, what is missing.
 */
int  tap_open(const char *name, bool multi_queue, struct tap *t);
/* Close the fd (a persistent tap stays; a non-persistent one disappears). */
void tap_close(struct tap *t);

/* TUNSETVNETHDRSZ. 0 or -errno. */
int  tap_set_vnet_hdr_size(struct tap *t, int size);
/* TUNSETOFFLOAD with @tun_flags (must be a subset of offloads_supported). 0 or -errno. */
int  tap_set_offload(struct tap *t, unsigned int tun_flags);
/* Interface flags (IFF_UP ...) through a socket ioctl, for tests and status. 0 or -errno. */
int  tap_get_flags(const char *name, short *flags);

#endif
