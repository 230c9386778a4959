/* SPDX-License-Identifier: MIT */
/*
 * virtio-net internals shared by net.c (device, transport glue, state, lifecycle), net_tx.c,
 * net_rx.c and net_ctrl.c; never included outside vmm/virtio/net*.c. Everything in struct
 * virtio_net and struct net_qp is under net->vd.lock (see net.c's header comment).
 */
#ifndef VMM_VIRTIO_NET_INTERNAL_H
#define VMM_VIRTIO_NET_INTERNAL_H

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <endian.h>

#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#include "net/tap.h"
#include "vmm/lib/evloop.h"
#include "vmm/lib/log.h"
#include "vmm/memory.h"
#include "vmm/state.h"
#include "vmm/virtio/net.h"
#include "vmm/virtio/net_parse.h"

#define NET_Q_RX		VIRTIO_NET_Q_RX0
#define NET_Q_TX		VIRTIO_NET_Q_TX0
#define NET_Q_CTRL		VIRTIO_NET_Q_CTRL
#define NET_CTRL_QUEUE_SIZE	64
/* Tx completion hold (net_tx.c): pushed at once when this much is held. */
#define NET_TX_HOLD_BYTES	65536u
/* Packets per queue per loop turn: bounds the loop's time on one queue, then yield. */
#define NET_BUDGET		256
/*
 * Receive gather limits. A chain never has more descriptors than the queue size (virtio 1.2
 * §2.7.5.3.1), so a pop always gets VIRTIO_NET_QUEUE_SIZE free segments; the pool plus the
 * bounce iovec stays within IOV_MAX (1024) for readv.
 */
#define NET_RX_SEG_POOL		1023
#define NET_RX_MAX_CHAINS	128

/* Device configuration space (virtio 1.2 §5.1.4), through duplex; little-endian. */
#define NET_CFG_LEN		17

enum rx_result { RX_DONE, RX_AGAIN, RX_NOBUF, RX_BROKEN, RX_ERROR };

struct virtio_net;

/* One rx/tx queue pair and its tap fd. Everything under net->vd.lock. */
struct net_qp {
	struct virtio_net *net;
	unsigned int index;
	int fd;
	struct vq rx, tx;
	char rx_name[48], tx_name[48];

	/* rx */
	struct ev_req rx_req;		/* multishot POLLIN on fd */
	bool rx_want;			/* the poll should be armed (active, link up, buffers) */
	bool rx_notify, tx_notify;	/* used entries pushed since the last interrupt decision */
	uint32_t pend_len;		/* a packet held in bounce (mergeable, short of buffers) */
	uint32_t rx_hint;		/* bytes to gather buffers for: recent packet sizes */
	uint8_t *bounce;		/* NET_BOUNCE_LEN */
	struct vq_seg *rx_segs;		/* NET_RX_SEG_POOL */
	struct iovec *rx_iov;		/* NET_RX_SEG_POOL + 1 */
	struct vq_chain rx_ch[NET_RX_MAX_CHAINS];
	uint32_t rx_lens[NET_RX_MAX_CHAINS];

	/* tx */
	struct ev_req tx_req;		/* one-shot POLLOUT while the tap refuses writes */
	bool tx_blocked;
	bool tx_more;			/* budget ran out: continue from qp->work */
	struct vq_seg tx_segs[VIRTIO_NET_QUEUE_SIZE];
	struct iovec tx_iov[VIRTIO_NET_QUEUE_SIZE + 1];
	/* completions held back (net_tx.c, "tx completion hold"): chain heads not yet pushed */
	uint16_t tx_held[VIRTIO_NET_QUEUE_SIZE];
	unsigned int nr_tx_held;
	uint32_t tx_held_bytes;		/* their chains' readable bytes (header + frame) */
	struct ev_req tx_hold_timer;	/* releases them tx_hold_ns after the first was held */

	/* loop-thread work posted by vCPU-thread callbacks and budget exhaustion */
	struct ev_work work;
	bool work_posted;
};

struct virtio_net {
	struct virtio_dev vd;		/* vd.lock protects everything below */
	struct virtio_pci *vp;
	struct evloop *loop;
	struct tap tap;			/* tap.fd < 0 when an fd was handed in */
	bool fd_is_tap;
	unsigned int tun_supported;	/* TUN_F_* the back-end can do */
	char id[32];
	uint8_t mac[6];
	uint16_t mtu;
	bool link_up;
	/*
	 * Stop-and-copy: no packet work at all (net_live() is false), so nothing writes guest
	 * memory or the rings after the source's final dirty sync and state save — packets wait
	 * in the tap. virtio_net_resume() undoes it if the migration fails.
	 */
	bool quiesced;
	bool ctrl_replay;		/* resume: look at the control queue again */
	uint16_t status_extra;		/* VIRTIO_NET_S_ANNOUNCE while an announce is pending */
	uint8_t promisc, allmulti;
	struct vq ctrl;
	char ctrl_name[48];
	struct ev_hook hook;
	bool notify_pending;		/* some qp has rx_notify/tx_notify set */
	uint64_t tx_hold_ns;		/* 0: push every tx completion at once */
	struct virtio_net_stats stats;
	unsigned int nr_qp;
	struct net_qp qp[1];
};

#define dev_ratelimited(net, lvl, fmt, ...) \
	log_ratelimited(lvl, "%s: " fmt, (net)->id, ##__VA_ARGS__)

static inline bool net_has(const struct virtio_net *net, unsigned int bit)
{
	return virtio_dev_has_feature(&net->vd, bit);
}

static inline bool net_live(const struct virtio_net *net)
{
	return net->vd.active && !(net->vd.status & VIRTIO_CONFIG_S_NEEDS_RESET) && !net->quiesced;
}

static inline void net_mark_notify(struct net_qp *qp, bool rx)
{
	if (rx)
		qp->rx_notify = true;
	else
		qp->tx_notify = true;
	qp->net->notify_pending = true;	/* before_wait (or, with no loop, the caller) decides */
}

/* net.c */
void net_broken(struct virtio_net *net);
void net_qp_post_work(struct net_qp *qp);
void net_flush_notify_locked(struct virtio_net *net);
/* net_tx.c */
void net_tx_process(struct net_qp *qp);
void net_on_tx_writable(struct evloop *l, struct ev_req *req, int res);
void net_on_tx_hold_timer(struct evloop *l, struct ev_req *req, int res);
void net_tx_release(struct net_qp *qp);
/* net_rx.c */
void net_rx_process(struct net_qp *qp);
void net_rx_poll_sync(struct net_qp *qp);
void net_on_tap_readable(struct evloop *l, struct ev_req *req, int res);
/* net_ctrl.c */
void net_ctrl_process(struct virtio_net *net);

#endif
