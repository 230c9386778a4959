/* SPDX-License-Identifier: MIT */
/*
 * virtio-net (virtio 1.2 §5.1) on the virtio-pci transport, backed by a tap device (net/tap.h)
 * opened with a virtio_net_hdr per packet. One receive/transmit queue pair now (queues 0 = rx,
 * 1 = tx) plus a control queue (2); the per-pair state is its own struct so multiqueue
 * (VIRTIO_NET_F_MQ, one tap fd per pair) can follow without reshaping the device.
 *
 * All packet work runs on the main event loop: tx on the queue's kick, rx when the tap fd is
 * readable (a multishot poll, cancelled while the guest has no receive buffers and re-armed
 * by its next rx kick). Interrupts are batched: one per queue per loop turn, with event-idx
 * suppression (vq_should_notify).
 */
#ifndef VMM_VIRTIO_NET_H
#define VMM_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/virtio/pci.h"
#include "vmm/virtio/queue.h"

struct guest_mem;
struct virtio_net;

#define VIRTIO_NET_QUEUE_SIZE	256
#define VIRTIO_NET_NR_VQS	3	/* rx0, tx0, ctrl */

struct virtio_net_params {
	const char *id;			/* "net0": logs, state section id; must outlive the device */
	const char *tap;		/* tap name to open/create (ignored when fd >= 0) */
	/*
	 * An already-open packet fd instead of a tap name (owned by the device from then on):
	 * a tap fd opened by someone else with IFF_VNET_HDR and a 12-byte header, or any
	 * datagram fd speaking "virtio_net_hdr_v1 + frame" per packet (unit tests use an
	 * AF_UNIX SOCK_SEQPACKET pair). -1: open @tap. With an fd that is not a tap, no tap
	 * ioctls are made and @fd_offloads says which TUN_F_* offloads to pretend it supports.
	 */
	int fd;
	unsigned int fd_offloads;
	uint8_t mac[6];			/* all-zero: the caller must have made one (see below) */
	uint16_t mtu;			/* 0: 1500; offered with VIRTIO_NET_F_MTU (68..65535) */
	bool link_down;			/* start with the link down */
	/* tx completion hold (net_tx.c): push tx completions up to this long after the packet
	 * went out (at once when 64 KiB are held), so the guest batches; 0 = at once.
	 * <= VIRTIO_NET_TX_HOLD_MAX_US. vm_devices.c gives VIRTIO_NET_TX_HOLD_DEFAULT_US. */
	unsigned int tx_hold_us;
};

#define VIRTIO_NET_TX_HOLD_DEFAULT_US	10000
#define VIRTIO_NET_TX_HOLD_MAX_US	100000

/* Counters (per device, summed over queue pairs). */
struct virtio_net_stats {
	uint64_t rx_packets, rx_bytes;	/* delivered to the guest (frame bytes, no header) */
	uint64_t rx_drops;		/* read from the tap but not delivered */
	uint64_t rx_nobuf;		/* times rx stopped because the guest had no buffers */
	uint64_t tx_packets, tx_bytes;	/* written to the tap */
	uint64_t tx_drops;		/* invalid header/length, link down, tap error */
};

/*
 * Create device @cfg->id, open its tap (one log line and -errno if that fails, e.g. -EPERM
 * without CAP_NET_ADMIN) and register it on env->pci. env->loop must be set for the data path
 * to run. Main thread, before vCPUs run. 0 or -errno.
 */
int  virtio_net_create(const struct virtio_pci_env *env, struct guest_mem *mem,
		       const struct virtio_net_params *cfg, struct virtio_net **out);
/* vCPUs stopped, loop not running; cancels the tap poll and drains it if a loop is given. */
void virtio_net_destroy(struct virtio_net *net);

/*
 * A locally administered unicast MAC (02:xx:..) derived from @vm_key (e.g. the VM name or
 * its uuid) and the NIC @index: stable across restarts and migrations, distinct per index.
 */
void virtio_net_mac_generate(const char *vm_key, unsigned int index, uint8_t mac[6]);
/* "52:54:00:12:34:56" -> 6 bytes; 0 or -EINVAL (also for multicast and all-zero). */
int  virtio_net_mac_parse(const char *s, uint8_t mac[6]);

void virtio_net_stats(struct virtio_net *net, struct virtio_net_stats *st);
/* Link up/down: VIRTIO_NET_S_LINK_UP in the config, config interrupt. Main loop. */
void virtio_net_set_link(struct virtio_net *net, bool up);
/*
 * Ask the guest to announce itself (VIRTIO_NET_S_ANNOUNCE, if it negotiated
 * VIRTIO_NET_F_GUEST_ANNOUNCE): after migration. Returns false if the guest cannot. Main loop.
 */
bool virtio_net_announce(struct virtio_net *net);
/* The tap's name as the kernel reports it (for logs and issue 6's bridge code). */
const char *virtio_net_tap_name(const struct virtio_net *net);
/*
 * Where to send post-migration announce frames for this NIC (net/announce.h): queue pair 0's
 * packet fd (still owned by the device), the MAC, and the virtio_net_hdr length every write
 * to that fd must start with. 0, or -ENODEV when the device has no fd. Any thread.
 */
int  virtio_net_announce_target(struct virtio_net *net, int *fd, uint8_t mac[6],
				unsigned int *vnet_hdr_len);

/* ---- state: plain struct like virtio_rng_state (see virtio/pci.h) ---- */
enum { VIRTIO_NET_Q_RX0 = 0, VIRTIO_NET_Q_TX0 = 1, VIRTIO_NET_Q_CTRL = 2 };	/* vq[] below */
struct virtio_net_state {
	struct virtio_pci_state transport;
	struct vq_state vq[VIRTIO_NET_NR_VQS];
	uint8_t mac[6];
	uint16_t status;		/* VIRTIO_NET_S_* as the guest last saw it */
	uint8_t promisc, allmulti;
};

/*
 * Stop packet work before the final RAM pass of a migration or snapshot (any thread; the
 * vCPUs are paused): afterwards nothing writes guest memory until virtio_net_resume(), which
 * a VM resumed after a failed migration must call (vm_resume does).
 */
void virtio_net_quiesce(struct virtio_net *net);
void virtio_net_resume(struct virtio_net *net);

/* vCPUs paused, main loop. No packet is ever in flight inside the device (all synchronous). */
void virtio_net_save(struct virtio_net *net, struct virtio_net_state *st);
/*
 * Load into a freshly created device with the same id (its own tap). Validates everything
 * (untrusted), re-applies the negotiated tap offloads, re-kicks the queues. 0 or -EINVAL.
 */
int  virtio_net_load(struct virtio_net *net, const struct virtio_net_state *st);

struct state_registry;
struct state_ops;
extern const struct state_ops virtio_net_state_ops;	/* net_state.c: the TLV encoding */
/*
 * Register the device's state section ("virtio-net", id = its id) for snapshots and
 * migration: the struct above as TLV fields. Main thread, at creation. 0 or -errno.
 */
int  virtio_net_register_state(struct virtio_net *net, struct state_registry *reg);

#endif
