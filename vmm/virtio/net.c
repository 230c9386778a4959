// SPDX-License-Identifier: MIT
/*
 * virtio-net (virtio 1.2 §5.1) over a tap with IFF_VNET_HDR (net/tap.h). The guest's
 * virtio_net_hdr_v1 (12 bytes, the size we set with TUNSETVNETHDRSZ) passes through in both
 * directions, so checksum offload and TSO are the kernel's: the device only validates what the
 * guest sends and tells the tap (TUNSETOFFLOAD) which offloads the guest accepts.
 *
 * Queues: 0 = receiveq0, 1 = transmitq0, 2 = controlq (max_virtqueue_pairs = 1). Everything
 * per pair lives in struct net_qp so VIRTIO_NET_F_MQ can add pairs, each with its own tap fd.
 *
 *   tx: on a kick, pop chains, copy and check the header, writev(header copy + the guest's
 *       payload segments) to the tap, push used. A header the guest may rewrite is copied
 *       first (checked once, used once); the payload is the guest's own business.
 *   rx: the tap fd is polled (multishot). When it is readable, gather receive chains for the
 *       size recent packets had, readv straight into them with a bounce buffer as the last
 *       iovec (a longer packet spills there instead of being truncated by the tap: then it is
 *       completed from the bounce buffer with more chains), and return the chains the packet
 *       used with num_buffers in its header, all at once (rx_push_batch). Mergeable buffers
 *       short of a whole packet: it waits in the bounce buffer for the guest's next buffers.
 *       No buffers at all: the poll is cancelled and rx waits for the guest's next rx kick
 *       (event idx: avail_event is set so the guest kicks once).
 *   Interrupts are decided once per loop turn (a before-wait hook) with event-idx suppression.
 *
 * Threading: packet work runs on the main loop with vd.lock held. activate/reset/config run
 * on vCPU threads under the same lock and never touch the event loop: they set flags and post
 * qp->work, which reconciles the poll with the device state on the loop thread.
 */
#define LOG_TAG "virtio-net"
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

/* Guest-visible offload features and the tap flag each one needs. */
static const struct { unsigned int bit; unsigned int tun; } offload_map[] = {
	{ VIRTIO_NET_F_GUEST_CSUM, TUN_F_CSUM },
	{ VIRTIO_NET_F_GUEST_TSO4, TUN_F_TSO4 },
	{ VIRTIO_NET_F_GUEST_TSO6, TUN_F_TSO6 },
	{ VIRTIO_NET_F_GUEST_ECN, TUN_F_TSO_ECN },
	{ VIRTIO_NET_F_GUEST_UFO, TUN_F_UFO },
};

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
	uint16_t status_extra;		/* VIRTIO_NET_S_ANNOUNCE while an announce is pending */
	uint8_t promisc, allmulti;
	struct vq ctrl;
	char ctrl_name[48];
	struct ev_hook hook;
	bool notify_pending;		/* some qp has rx_notify/tx_notify set */
	struct virtio_net_stats stats;
	unsigned int nr_qp;
	struct net_qp qp[1];
};

#define dev_ratelimited(net, lvl, fmt, ...) \
	log_ratelimited(lvl, "%s: " fmt, (net)->id, ##__VA_ARGS__)

static void qp_post_work(struct net_qp *qp);

static bool has(const struct virtio_net *net, unsigned int bit)
{
	return virtio_dev_has_feature(&net->vd, bit);
}

static void mark_notify(struct net_qp *qp, bool rx)
{
	if (rx)
		qp->rx_notify = true;
	else
		qp->tx_notify = true;
	qp->net->notify_pending = true;	/* before_wait (or, with no loop, the caller) decides */
}

/* Interrupt decisions for every queue with new used entries: once per loop turn. */
static void flush_notify_locked(struct virtio_net *net)
{
	if (!net->notify_pending)
		return;
	net->notify_pending = false;
	for (unsigned int i = 0; i < net->nr_qp; i++) {
		struct net_qp *qp = &net->qp[i];

		if (qp->rx_notify) {
			qp->rx_notify = false;
			if (vq_should_notify(&qp->rx))
				virtio_dev_notify(&net->vd, 2 * i + NET_Q_RX);
		}
		if (qp->tx_notify) {
			qp->tx_notify = false;
			if (vq_should_notify(&qp->tx))
				virtio_dev_notify(&net->vd, 2 * i + NET_Q_TX);
		}
	}
}

static void before_wait(struct evloop *l, void *opaque)
{
	struct virtio_net *net = opaque;

	if (!__atomic_load_n(&net->notify_pending, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&net->vd.lock);
	flush_notify_locked(net);
	pthread_mutex_unlock(&net->vd.lock);
}

static void broken(struct virtio_net *net)
{
	virtio_dev_needs_reset(&net->vd);
	for (unsigned int i = 0; i < net->nr_qp; i++) {
		net->qp[i].rx_want = false;
		qp_post_work(&net->qp[i]);
	}
}

static bool live(const struct virtio_net *net)
{
	return net->vd.active && !(net->vd.status & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* ---- transmit ---- */

/* 0: sent or dropped (push the chain); -EAGAIN: the tap is full; -EINVAL: malformed chain. */
static int tx_one(struct net_qp *qp, const struct vq_chain *ch)
{
	struct virtio_net *net = qp->net;
	struct net_tx_req req;
	struct virtio_net_hdr_v1 *hdr = &req.hdr;
	uint32_t frame, skip;
	unsigned int n = 1;
	ssize_t w;
	int ret;

	ret = net_tx_parse(net->vd.acked_features, ch, &req);
	if (ret == -EINVAL) {
		dev_ratelimited(net, LOG_WARN, "tx chain %u has device-writable buffers", ch->head);
		return -EINVAL;
	}
	if (ret < 0 && !req.frame) {
		dev_ratelimited(net, LOG_WARN, "tx chain %u: %u bytes, want %u..%u: dropped",
				ch->head, ch->out_len, NET_HDR_LEN + ETH_HLEN, NET_BOUNCE_LEN);
		goto drop;
	}
	if (ret < 0) {
		dev_ratelimited(net, LOG_WARN, "tx chain %u: %s: dropped", ch->head, req.why);
		goto drop;
	}
	frame = req.frame;
	if (!net->link_up)
		goto drop;
	hdr->num_buffers = 0;
	qp->tx_iov[0] = (struct iovec){ hdr, sizeof(*hdr) };
	skip = NET_HDR_LEN;
	for (unsigned int i = 0; i < ch->n; i++) {
		const struct vq_seg *s = &ch->segs[i];

		if (skip >= s->len) {
			skip -= s->len;
			continue;
		}
		qp->tx_iov[n++] = (struct iovec){ (uint8_t *)s->addr + skip, s->len - skip };
		skip = 0;
	}
	w = writev(qp->fd, qp->tx_iov, (int)n);
	if (w < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		dev_ratelimited(net, LOG_WARN, "tap write: %s: dropped", strerror(errno));
		goto drop;
	}
	net->stats.tx_packets++;
	net->stats.tx_bytes += frame;
	return 0;
drop:
	net->stats.tx_drops++;
	return 0;
}

static void tx_wait_writable(struct net_qp *qp)
{
	qp->tx_blocked = true;
	if (!ev_req_busy(&qp->tx_req) &&
	    evloop_poll(qp->net->loop, &qp->tx_req, qp->fd, POLLOUT, false) < 0)
		qp->tx_blocked = false;		/* ring full: retry on the next kick */
}

static void tx_process(struct net_qp *qp)
{
	struct virtio_net *net = qp->net;
	struct vq_chain ch = { .segs = qp->tx_segs, .cap = VIRTIO_NET_QUEUE_SIZE };
	unsigned int budget = NET_BUDGET;
	int ret;

	if (!live(net) || !vq_enabled(&qp->tx) || qp->tx_blocked)
		return;
	do {
		vq_disable_notify(&qp->tx);
		while (budget && (ret = vq_pop(&qp->tx, &ch)) > 0) {
			int r = tx_one(qp, &ch);

			if (r == -EAGAIN) {
				vq_unpop(&qp->tx, 1);
				tx_wait_writable(qp);
				return;
			}
			if (r < 0) {
				broken(net);
				return;
			}
			vq_push(&qp->tx, &ch, 0);
			mark_notify(qp, false);
			budget--;
		}
		if (budget && ret < 0) {
			broken(net);
			return;
		}
		if (!budget) {
			/* Kicks stay off; qp->work continues after other loop events ran. */
			qp->tx_more = true;
			qp_post_work(qp);
			return;
		}
	} while (vq_enable_notify(&qp->tx));
}

static void on_tx_writable(struct evloop *l, struct ev_req *req, int res)
{
	struct net_qp *qp = req->opaque;

	pthread_mutex_lock(&qp->net->vd.lock);
	qp->tx_blocked = false;
	tx_process(qp);
	pthread_mutex_unlock(&qp->net->vd.lock);
}

/* ---- receive ---- */

static uint32_t rx_max_packet(const struct virtio_net *net)
{
	bool gso = has(net, VIRTIO_NET_F_GUEST_TSO4) || has(net, VIRTIO_NET_F_GUEST_TSO6) ||
		   has(net, VIRTIO_NET_F_GUEST_UFO);

	return NET_HDR_LEN + (gso ? NET_MAX_FRAME : net->mtu + ETH_HLEN + 4u);
}

/*
 * Give chains [0, n) of one packet back in one step: every used element, then used->idx once.
 * vq_push() publishes per chain, and a driver polling the ring could see the first buffer of
 * a merged packet (num_buffers = n) before the rest and drop it (Linux: "rx error: N buffers
 * out of M missing"). Written against the split-ring layout (virtio 1.2 §2.7.8) and the vq's
 * ring pointers, which vq_init range-checked; TODO: a vq_push_batch() in queue.c.
 */
static void rx_push_batch(struct vq *vq, const struct vq_chain *chs, const uint32_t *lens,
			  unsigned int n)
{
	for (unsigned int c = 0; c < n; c++) {
		const struct vq_chain *ch = &chs[c];
		uint32_t left = lens[c];
		uint8_t *elem;
		uint32_t v;

		for (unsigned int i = ch->n_out; i < ch->n && left; i++) {
			uint32_t l = ch->segs[i].len < left ? ch->segs[i].len : left;

			guest_mem_mark_dirty(vq->mem, ch->segs[i].gpa, l);
			left -= l;
		}
		elem = vq->used + 4 + 8 * ((uint16_t)(vq->used_idx + c) & (vq->size - 1u));
		v = htole32(ch->head);
		memcpy(elem, &v, 4);
		v = htole32(lens[c]);
		memcpy(elem + 4, &v, 4);
		guest_mem_mark_dirty(vq->mem, vq->used_gpa + (uint64_t)(elem - vq->used), 8);
	}
	vq->used_idx = (uint16_t)(vq->used_idx + n);
	__atomic_store_n((uint16_t *)(vq->used + 2), htole16(vq->used_idx), __ATOMIC_RELEASE);
	guest_mem_mark_dirty(vq->mem, vq->used_gpa + 2, 2);
}

/*
 * Pop receive chains into qp->rx_ch until they hold @want bytes. Returns the number popped
 * (-EINVAL: malformed chain or queue), *cap = their total size, *empty = the ring ran dry.
 */
static int rx_gather(struct net_qp *qp, uint32_t want, uint32_t *cap, bool *empty)
{
	struct virtio_net *net = qp->net;
	bool mrg = has(net, VIRTIO_NET_F_MRG_RXBUF);
	unsigned int max_chains = mrg ? NET_RX_MAX_CHAINS : 1, nch = 0, segs = 0;
	uint32_t qsize = qp->rx.size;

	*cap = 0;
	*empty = false;
	while (*cap < want && nch < max_chains && NET_RX_SEG_POOL - segs >= qsize) {
		struct vq_chain *ch = &qp->rx_ch[nch];
		int r;

		ch->segs = qp->rx_segs + segs;
		ch->cap = qsize;
		r = vq_pop(&qp->rx, ch);
		if (r == 0) {
			*empty = true;
			break;
		}
		if (r < 0)
			return -EINVAL;
		nch++;
		if (ch->n_out) {
			dev_ratelimited(net, LOG_WARN, "rx chain %u has device-readable buffers", ch->head);
			return -EINVAL;
		}
		/* §5.1.6.3.1: every buffer (mergeable) or the one buffer holds at least the header. */
		if (ch->in_len < NET_HDR_LEN) {
			dev_ratelimited(net, LOG_WARN, "rx chain %u: %u bytes, smaller than the header",
					ch->head, ch->in_len);
			return -EINVAL;
		}
		*cap += ch->in_len;
		segs += ch->n;
	}
	return (int)nch;
}

/* The packet (@len bytes with header) is in chains [0, nch): publish it. */
static void rx_complete(struct net_qp *qp, unsigned int nch, uint32_t len)
{
	uint32_t left = len;
	unsigned int k = 0;
	uint16_t nb;

	while (left) {
		uint32_t l = qp->rx_ch[k].in_len < left ? qp->rx_ch[k].in_len : left;

		qp->rx_lens[k++] = l;
		left -= l;
	}
	/* The tap skips the last 2 header bytes (its header is 10 bytes): num_buffers is ours. */
	nb = htole16((uint16_t)k);
	vq_chain_copy_to(&qp->rx_ch[0], offsetof(struct virtio_net_hdr_v1, num_buffers), &nb, 2);
	rx_push_batch(&qp->rx, qp->rx_ch, qp->rx_lens, k);
	vq_unpop(&qp->rx, nch - k);
	qp->net->stats.rx_packets++;
	qp->net->stats.rx_bytes += len - NET_HDR_LEN;
	mark_notify(qp, true);
}

/* Copy a packet from the bounce buffer into chains [0, nch) (which hold >= len bytes). */
static void rx_copy_bounce(struct net_qp *qp, unsigned int nch, uint32_t len)
{
	uint32_t off = 0;

	for (unsigned int i = 0; i < nch && off < len; i++) {
		uint32_t l = qp->rx_ch[i].in_len < len - off ? qp->rx_ch[i].in_len : len - off;

		vq_chain_copy_to(&qp->rx_ch[i], 0, qp->bounce + off, l);
		off += l;
	}
}

/* Deliver the packet waiting in the bounce buffer, if the guest has room for it now. */
static enum rx_result rx_pending(struct net_qp *qp)
{
	uint32_t cap;
	bool empty;
	int nch = rx_gather(qp, qp->pend_len, &cap, &empty);

	if (nch < 0)
		return RX_BROKEN;
	if (cap >= qp->pend_len) {
		rx_copy_bounce(qp, (unsigned int)nch, qp->pend_len);
		rx_complete(qp, (unsigned int)nch, qp->pend_len);
		qp->pend_len = 0;
		return RX_DONE;
	}
	vq_unpop(&qp->rx, (unsigned int)nch);
	/* The whole ring cannot hold it, or past our gather limits: it never will fit. */
	if (!empty || (unsigned int)nch >= qp->rx.size) {
		dev_ratelimited(qp->net, LOG_WARN, "rx: %u-byte packet does not fit the guest's buffers: dropped",
				qp->pend_len);
		qp->net->stats.rx_drops++;
		qp->pend_len = 0;
		return RX_DONE;
	}
	return RX_NOBUF;
}

static enum rx_result rx_error(struct net_qp *qp, unsigned int nch)
{
	int err = errno;

	vq_unpop(&qp->rx, nch);
	if (err == EAGAIN || err == EWOULDBLOCK)
		return RX_AGAIN;
	if (err == EINTR)
		return RX_DONE;
	dev_ratelimited(qp->net, LOG_WARN, "tap read: %s", strerror(err));
	return RX_ERROR;
}

/* Track recent packet sizes: jump up at once, decay slowly (1/16 of the gap per packet). */
static void rx_hint_update(struct net_qp *qp, uint32_t len)
{
	if (len >= qp->rx_hint)
		qp->rx_hint = len;
	else
		qp->rx_hint -= (qp->rx_hint - len) / 16;
}

/*
 * Receive one packet from the tap. Chains are gathered for the size recent packets had
 * (rx_hint), not for the largest possible one: popping and giving back ~40 buffers for every
 * 66-byte ACK costs more than the occasional miss. A packet longer than the gathered buffers
 * spills into the bounce buffer behind them (the tap never truncates); then the part already in
 * guest buffers is copied next to it and the whole packet goes the rx_pending way (more
 * buffers, or wait for them, or drop without mergeable buffers).
 */
static enum rx_result rx_one(struct net_qp *qp)
{
	struct virtio_net *net = qp->net;
	uint32_t max = rx_max_packet(net), want, cap, len, off = 0;
	unsigned int niov = 0;
	bool empty;
	ssize_t n;
	int nch;

	if (qp->pend_len)
		return rx_pending(qp);
	want = qp->rx_hint < max ? qp->rx_hint : max;
	nch = rx_gather(qp, want, &cap, &empty);
	if (nch < 0)
		return RX_BROKEN;
	if (nch == 0)
		return RX_NOBUF;
	for (int c = 0; c < nch; c++)
		for (unsigned int i = 0; i < qp->rx_ch[c].n; i++)
			qp->rx_iov[niov++] = (struct iovec){ qp->rx_ch[c].segs[i].addr,
							     qp->rx_ch[c].segs[i].len };
	if (cap < NET_BOUNCE_LEN)
		qp->rx_iov[niov++] = (struct iovec){ qp->bounce + cap, NET_BOUNCE_LEN - cap };
	n = readv(qp->fd, qp->rx_iov, (int)niov);
	if (n < 0)
		return rx_error(qp, (unsigned int)nch);
	len = (uint32_t)n;
	if (len < NET_HDR_LEN + ETH_HLEN) {
		vq_unpop(&qp->rx, (unsigned int)nch);
		net->stats.rx_drops++;
		return RX_DONE;
	}
	rx_hint_update(qp, len);
	if (len <= cap) {
		rx_complete(qp, (unsigned int)nch, len);	/* zero copy */
		return RX_DONE;
	}
	/* Spilled: bring the head of the packet next to its tail in the bounce buffer. */
	for (int c = 0; c < nch; c++)
		for (unsigned int i = 0; i < qp->rx_ch[c].n; i++) {
			memcpy(qp->bounce + off, qp->rx_ch[c].segs[i].addr, qp->rx_ch[c].segs[i].len);
			off += qp->rx_ch[c].segs[i].len;
		}
	vq_unpop(&qp->rx, (unsigned int)nch);
	if (!has(net, VIRTIO_NET_F_MRG_RXBUF)) {
		dev_ratelimited(net, LOG_WARN, "rx: %u-byte packet, guest buffer holds %u: dropped", len, cap);
		net->stats.rx_drops++;
		return RX_DONE;
	}
	qp->pend_len = len;
	return rx_pending(qp);
}

/* Arm or cancel the tap poll to match rx_want. Loop thread, lock held. */
static void rx_poll_sync(struct net_qp *qp)
{
	struct evloop *l = qp->net->loop;

	if (!l)
		return;
	if (qp->rx_want && !ev_req_busy(&qp->rx_req)) {
		int ret = evloop_poll(l, &qp->rx_req, qp->fd, POLLIN, true);

		if (ret < 0) {
			/* Ring full: qp->work retries on the next loop turn. */
			dev_ratelimited(qp->net, LOG_WARN, "tap poll: %s", strerror(-ret));
			qp_post_work(qp);
		}
	} else if (!qp->rx_want && ev_req_busy(&qp->rx_req)) {
		evloop_cancel(l, &qp->rx_req);
	}
}

/* Drain the tap into the guest. Loop thread, lock held. */
static void rx_process(struct net_qp *qp)
{
	struct virtio_net *net = qp->net;
	unsigned int budget = NET_BUDGET;

	if (!live(net) || !vq_enabled(&qp->rx) || !net->link_up) {
		qp->rx_want = false;
		goto out;
	}
	qp->rx_want = true;
	vq_disable_notify(&qp->rx);
	while (budget--) {
		switch (rx_one(qp)) {
		case RX_DONE:
			continue;
		case RX_AGAIN:
			goto out;
		case RX_NOBUF:
			/* Ask for a kick when buffers come; re-check the race with the driver. */
			if (vq_enable_notify(&qp->rx))
				continue;
			net->stats.rx_nobuf++;
			qp->rx_want = false;
			goto out;
		case RX_BROKEN:
			broken(net);
			goto out;
		case RX_ERROR:
			qp->rx_want = false;
			goto out;
		}
	}
	/* Budget used up: the poll fires only on new packets, so continue from qp->work. */
	qp_post_work(qp);
out:
	rx_poll_sync(qp);
	if (!net->loop)
		flush_notify_locked(net);
}

static void on_tap_readable(struct evloop *l, struct ev_req *req, int res)
{
	struct net_qp *qp = req->opaque;

	pthread_mutex_lock(&qp->net->vd.lock);
	if (res > 0 && qp->rx_want)
		rx_process(qp);
	else if (res < 0 && res != -ECANCELED)
		dev_ratelimited(qp->net, LOG_WARN, "tap poll: %s", strerror(-res));
	else
		rx_poll_sync(qp);	/* cancelled (final): re-arm if wanted again since */
	pthread_mutex_unlock(&qp->net->vd.lock);
}

/* qp->work: runs on the loop thread. */
static void qp_work(void *opaque)
{
	struct net_qp *qp = opaque;

	pthread_mutex_lock(&qp->net->vd.lock);
	qp->work_posted = false;
	if (live(qp->net) && vq_enabled(&qp->rx) && qp->net->link_up && !qp->rx_want &&
	    !qp->pend_len)
		qp->rx_want = true;	/* activated / link up: look at the tap */
	if (qp->rx_want)
		rx_process(qp);
	else
		rx_poll_sync(qp);
	if (qp->tx_more) {
		qp->tx_more = false;
		tx_process(qp);
	}
	if (!live(qp->net)) {
		qp->tx_blocked = false;
		if (ev_req_busy(&qp->tx_req))
			evloop_cancel(qp->net->loop, &qp->tx_req);
	}
	pthread_mutex_unlock(&qp->net->vd.lock);
}

static void qp_post_work(struct net_qp *qp)
{
	if (qp->work_posted || !qp->net->loop)
		return;
	qp->work_posted = true;
	evloop_post_work(qp->net->loop, &qp->work);
}

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

static void ctrl_process(struct virtio_net *net)
{
	struct vq_seg segs[NET_CTRL_QUEUE_SIZE];
	struct vq_chain ch = { .segs = segs, .cap = NET_CTRL_QUEUE_SIZE };
	static uint8_t data[NET_CTRL_MAX_DATA];		/* loop thread only */
	int ret;

	if (!live(net) || !vq_enabled(&net->ctrl))
		return;
	do {
		vq_disable_notify(&net->ctrl);
		while ((ret = vq_pop(&net->ctrl, &ch)) > 0) {
			struct net_ctrl_req req;
			uint8_t ack;

			if (net_ctrl_parse(net->vd.acked_features, &ch, data, sizeof(data), &req) < 0) {
				dev_ratelimited(net, LOG_WARN, "control chain %u: %u/%u bytes", ch.head,
						ch.out_len, ch.in_len);
				broken(net);
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
			broken(net);
			return;
		}
	} while (vq_enable_notify(&net->ctrl));
	if (vq_should_notify(&net->ctrl))
		virtio_dev_notify(&net->vd, NET_Q_CTRL);
}

/* ---- virtio_dev_ops ---- */

static uint64_t net_features(struct virtio_dev *vd)
{
	struct virtio_net *net = vd->opaque;
	uint64_t f = (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS) |
		     (1ull << VIRTIO_NET_F_MRG_RXBUF) | (1ull << VIRTIO_NET_F_MTU) |
		     (1ull << VIRTIO_NET_F_CSUM) | (1ull << VIRTIO_NET_F_CTRL_VQ) |
		     (1ull << VIRTIO_NET_F_CTRL_RX) | (1ull << VIRTIO_NET_F_CTRL_MAC_ADDR) |
		     (1ull << VIRTIO_NET_F_GUEST_ANNOUNCE) |
		     (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VIRTIO_RING_F_INDIRECT_DESC);
	unsigned int sup = net->tun_supported;

	/*
	 * Guest offloads need the tap to hand us such packets (TUNSETOFFLOAD accepted the flag);
	 * host offloads are offered alongside, so a kernel without them gets neither direction.
	 */
	for (unsigned int i = 0; i < sizeof(offload_map) / sizeof(offload_map[0]); i++)
		if (sup & offload_map[i].tun)
			f |= 1ull << offload_map[i].bit;
	if (sup & TUN_F_TSO4)
		f |= 1ull << VIRTIO_NET_F_HOST_TSO4;
	if (sup & TUN_F_TSO6)
		f |= 1ull << VIRTIO_NET_F_HOST_TSO6;
	if (sup & TUN_F_TSO_ECN)
		f |= 1ull << VIRTIO_NET_F_HOST_ECN;
	if (sup & TUN_F_UFO)
		f |= 1ull << VIRTIO_NET_F_HOST_UFO;
	return f;
}

static void config_bytes(const struct virtio_net *net, uint8_t *c)
{
	uint16_t status = (uint16_t)((net->link_up ? VIRTIO_NET_S_LINK_UP : 0) | net->status_extra);
	uint16_t v;
	uint32_t speed = htole32(0xffffffffu);		/* unknown */

	memcpy(c, net->mac, 6);
	v = htole16(status);
	memcpy(c + 6, &v, 2);
	v = htole16(1);					/* max_virtqueue_pairs */
	memcpy(c + 8, &v, 2);
	v = htole16(net->mtu);
	memcpy(c + 10, &v, 2);
	memcpy(c + 12, &speed, 4);
	c[16] = 0xff;					/* duplex unknown */
}

static void net_config_read(struct virtio_dev *vd, uint32_t off, void *data, uint32_t len)
{
	uint8_t c[NET_CFG_LEN];

	config_bytes(vd->opaque, c);
	memcpy(data, c + off, len);
}

static void net_config_write(struct virtio_dev *vd, uint32_t off, const void *data, uint32_t len)
{
	/* Read-only for a 1.x driver (the MAC changes through the control queue). */
	log_ratelimited(LOG_DBG, "%s: config write at %u ignored", ((struct virtio_net *)vd->opaque)->id, off);
}

/* Feature dependencies of virtio 1.2 §5.1.3.1 that the transport does not know. */
static const char *features_invalid(const struct virtio_net *net)
{
	bool gcsum = has(net, VIRTIO_NET_F_GUEST_CSUM), hcsum = has(net, VIRTIO_NET_F_CSUM);

	if (!gcsum && (has(net, VIRTIO_NET_F_GUEST_TSO4) || has(net, VIRTIO_NET_F_GUEST_TSO6) ||
		       has(net, VIRTIO_NET_F_GUEST_UFO)))
		return "guest TSO/UFO without GUEST_CSUM";
	if (has(net, VIRTIO_NET_F_GUEST_ECN) &&
	    !has(net, VIRTIO_NET_F_GUEST_TSO4) && !has(net, VIRTIO_NET_F_GUEST_TSO6))
		return "GUEST_ECN without GUEST_TSO4/6";
	if (!hcsum && (has(net, VIRTIO_NET_F_HOST_TSO4) || has(net, VIRTIO_NET_F_HOST_TSO6) ||
		       has(net, VIRTIO_NET_F_HOST_UFO)))
		return "host TSO/UFO without CSUM";
	if (has(net, VIRTIO_NET_F_HOST_ECN) &&
	    !has(net, VIRTIO_NET_F_HOST_TSO4) && !has(net, VIRTIO_NET_F_HOST_TSO6))
		return "HOST_ECN without HOST_TSO4/6";
	if (!has(net, VIRTIO_NET_F_CTRL_VQ) &&
	    (has(net, VIRTIO_NET_F_CTRL_RX) || has(net, VIRTIO_NET_F_CTRL_MAC_ADDR) ||
	     has(net, VIRTIO_NET_F_GUEST_ANNOUNCE)))
		return "control features without CTRL_VQ";
	return NULL;
}

static unsigned int guest_tun_offloads(const struct virtio_net *net)
{
	unsigned int t = 0;

	for (unsigned int i = 0; i < sizeof(offload_map) / sizeof(offload_map[0]); i++)
		if (has(net, offload_map[i].bit))
			t |= offload_map[i].tun;
	return t;
}

static int queue_init(struct virtio_net *net, unsigned int q, struct vq *vq, const char *name)
{
	const struct virtio_queue_cfg *c = &net->vd.vqs[q];
	struct vq_config cfg = {
		.name = name, .size = c->size, .desc = c->desc, .avail = c->driver, .used = c->device,
		.event_idx = has(net, VIRTIO_RING_F_EVENT_IDX),
		.indirect = has(net, VIRTIO_RING_F_INDIRECT_DESC),
	};

	vq_reset(vq);
	if (!c->enabled)
		return 0;	/* a driver may leave a queue off; its kicks are ignored */
	return vq_init(vq, net->vd.mem, &cfg);
}

static void qp_reset(struct net_qp *qp)
{
	vq_reset(&qp->rx);
	vq_reset(&qp->tx);
	qp->rx_want = false;
	qp->rx_notify = qp->tx_notify = false;
	qp->pend_len = 0;		/* a packet for the old driver instance */
	qp->rx_hint = NET_HDR_LEN + qp->net->mtu + ETH_HLEN + 4u;
	qp->tx_more = false;
	qp_post_work(qp);		/* cancels the polls on the loop thread */
}

static int net_activate(struct virtio_dev *vd)
{
	struct virtio_net *net = vd->opaque;
	const char *why = features_invalid(net);
	int ret;

	if (why) {
		log_warn("%s: driver features 0x%llx: %s", net->id, (unsigned long long)vd->acked_features, why);
		return -EINVAL;
	}
	if (net->fd_is_tap) {
		ret = tap_set_offload(&net->tap, guest_tun_offloads(net));
		if (ret < 0)
			return ret;
	}
	for (unsigned int i = 0; i < net->nr_qp; i++) {
		struct net_qp *qp = &net->qp[i];

		qp_reset(qp);
		ret = queue_init(net, 2 * i + NET_Q_RX, &qp->rx, qp->rx_name);
		if (!ret)
			ret = queue_init(net, 2 * i + NET_Q_TX, &qp->tx, qp->tx_name);
		if (ret < 0)
			return ret;
	}
	ret = queue_init(net, NET_Q_CTRL, &net->ctrl, net->ctrl_name);
	if (ret < 0)
		return ret;
	for (unsigned int i = 0; i < net->nr_qp; i++)
		qp_post_work(&net->qp[i]);	/* start polling the tap (loop thread) */
	return 0;
}

static void net_queue_notify(struct virtio_dev *vd, unsigned int q)
{
	struct virtio_net *net = vd->opaque;
	struct net_qp *qp;

	if (q == NET_Q_CTRL) {
		ctrl_process(net);
		return;
	}
	qp = &net->qp[q / 2];
	if (q % 2 == NET_Q_RX) {
		rx_process(qp);		/* buffers came: deliver what waits, re-arm the poll */
	} else {
		tx_process(qp);
		if (!net->loop)
			flush_notify_locked(net);
	}
}

static void net_reset(struct virtio_dev *vd)
{
	struct virtio_net *net = vd->opaque;

	for (unsigned int i = 0; i < net->nr_qp; i++)
		qp_reset(&net->qp[i]);
	vq_reset(&net->ctrl);
	net->promisc = net->allmulti = 0;
	net->status_extra = 0;
	if (net->fd_is_tap)
		tap_set_offload(&net->tap, 0);
}

static const struct virtio_dev_ops net_ops = {
	.features = net_features,
	.config_read = net_config_read,
	.config_write = net_config_write,
	.activate = net_activate,
	.queue_notify = net_queue_notify,
	.reset = net_reset,
	.state = &virtio_net_state_ops,	/* net_state.c */
};

/* ---- state ---- */

void virtio_net_save(struct virtio_net *net, struct virtio_net_state *st)
{
	memset(st, 0, sizeof(*st));
	virtio_pci_save(net->vp, &st->transport);
	pthread_mutex_lock(&net->vd.lock);
	vq_save(&net->qp[0].rx, &st->vq[NET_Q_RX]);
	vq_save(&net->qp[0].tx, &st->vq[NET_Q_TX]);
	vq_save(&net->ctrl, &st->vq[NET_Q_CTRL]);
	memcpy(st->mac, net->mac, 6);
	st->status = (uint16_t)((net->link_up ? VIRTIO_NET_S_LINK_UP : 0) | net->status_extra);
	st->promisc = net->promisc;
	st->allmulti = net->allmulti;
	pthread_mutex_unlock(&net->vd.lock);
}

static int restore_vq(struct virtio_net *net, unsigned int q, struct vq *vq, const char *name,
		      const struct vq_state *s)
{
	const struct virtio_queue_cfg *c = &net->vd.vqs[q];

	if (!s->enabled)
		return c->enabled ? -EINVAL : 0;
	if (!c->enabled || s->size != c->size || s->desc != c->desc || s->avail != c->driver ||
	    s->used != c->device)
		return -EINVAL;
	return vq_restore(vq, net->vd.mem, s, name);
}

int virtio_net_load(struct virtio_net *net, const struct virtio_net_state *st)
{
	int ret;

	if ((st->status & ~(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE)) || st->promisc > 1 ||
	    st->allmulti > 1 || (st->mac[0] & 1))
		return -EINVAL;
	ret = virtio_pci_load(net->vp, &st->transport);	/* re-activates: fresh queues */
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&net->vd.lock);
	memcpy(net->mac, st->mac, 6);
	net->link_up = st->status & VIRTIO_NET_S_LINK_UP;
	net->status_extra = st->status & VIRTIO_NET_S_ANNOUNCE;
	net->promisc = st->promisc;
	net->allmulti = st->allmulti;
	if (net->vd.active) {
		ret = restore_vq(net, NET_Q_RX, &net->qp[0].rx, net->qp[0].rx_name, &st->vq[NET_Q_RX]);
		if (!ret)
			ret = restore_vq(net, NET_Q_TX, &net->qp[0].tx, net->qp[0].tx_name, &st->vq[NET_Q_TX]);
		if (!ret)
			ret = restore_vq(net, NET_Q_CTRL, &net->ctrl, net->ctrl_name, &st->vq[NET_Q_CTRL]);
		if (ret < 0) {
			log_err("%s: saved queue state does not match its configuration", net->id);
			virtio_dev_needs_reset(&net->vd);
		}
	}
	pthread_mutex_unlock(&net->vd.lock);
	if (ret == 0 && net->vd.active) {
		/* Buffers posted before the save: transmit what waits, look at the tap. */
		virtio_pci_kick(net->vp, NET_Q_TX);
		virtio_pci_kick(net->vp, NET_Q_CTRL);
		virtio_pci_kick(net->vp, NET_Q_RX);
	}
	return ret;
}

int virtio_net_register_state(struct virtio_net *net, struct state_registry *reg)
{
	return state_register(reg, net->vd.id, &virtio_net_state_ops, net);
}

/* ---- public ---- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

void virtio_net_mac_generate(const char *vm_key, unsigned int index, uint8_t mac[6])
{
	uint64_t h = 0xcbf29ce484222325ull;
	uint32_t idx = htole32(index);

	h = fnv1a(h, "vmctl-nic", 9);
	h = fnv1a(h, vm_key, strlen(vm_key));
	h = fnv1a(h, &idx, sizeof(idx));
	mac[0] = 0x02;				/* locally administered, unicast */
	mac[1] = (uint8_t)(h >> 40);
	mac[2] = (uint8_t)(h >> 32);
	mac[3] = (uint8_t)(h >> 24);
	mac[4] = (uint8_t)(h >> 16);
	mac[5] = (uint8_t)(h >> 8);
}

int virtio_net_mac_parse(const char *s, uint8_t mac[6])
{
	unsigned int b[6];
	char end;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &end) != 6 ||
	    strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	if ((mac[0] & 1) || !(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]))
		return -EINVAL;		/* multicast / all-zero cannot be a NIC's address */
	return 0;
}

static void qp_free(struct net_qp *qp)
{
	free(qp->bounce);
	free(qp->rx_segs);
	free(qp->rx_iov);
}

static int qp_init(struct virtio_net *net, unsigned int i, int fd)
{
	struct net_qp *qp = &net->qp[i];

	qp->net = net;
	qp->index = i;
	qp->fd = fd;
	snprintf(qp->rx_name, sizeof(qp->rx_name), "%s.rx%u", net->id, i);
	snprintf(qp->tx_name, sizeof(qp->tx_name), "%s.tx%u", net->id, i);
	ev_req_init(&qp->rx_req, on_tap_readable, qp);
	ev_req_init(&qp->tx_req, on_tx_writable, qp);
	qp->work = (struct ev_work){ .fn = qp_work, .opaque = qp };
	qp->bounce = malloc(NET_BOUNCE_LEN);
	qp->rx_segs = calloc(NET_RX_SEG_POOL, sizeof(*qp->rx_segs));
	qp->rx_iov = calloc(NET_RX_SEG_POOL + 1, sizeof(*qp->rx_iov));
	if (!qp->bounce || !qp->rx_segs || !qp->rx_iov) {
		qp_free(qp);
		return -ENOMEM;
	}
	return 0;
}

int virtio_net_create(const struct virtio_pci_env *env, struct guest_mem *mem,
		      const struct virtio_net_params *cfg, struct virtio_net **out)
{
	struct virtio_net *net;
	int fd, ret;

	if (!cfg->id || (cfg->mtu && cfg->mtu < 68) || (cfg->mac[0] & 1) ||
	    !(cfg->mac[0] | cfg->mac[1] | cfg->mac[2] | cfg->mac[3] | cfg->mac[4] | cfg->mac[5])) {
		log_err("%s: invalid configuration (id, MTU >= 68, unicast MAC required)",
			cfg->id ? cfg->id : "net");
		return -EINVAL;
	}
	net = calloc(1, sizeof(*net));
	if (!net)
		return -ENOMEM;
	snprintf(net->id, sizeof(net->id), "%s", cfg->id);
	net->tap.fd = -1;
	if (cfg->fd >= 0) {
		fd = cfg->fd;
		net->tun_supported = cfg->fd_offloads;
	} else {
		ret = tap_open(cfg->tap, false, &net->tap);
		if (ret < 0)
			goto err_free;
		fd = net->tap.fd;
		net->fd_is_tap = true;
		net->tun_supported = net->tap.offloads_supported;
	}
	memcpy(net->mac, cfg->mac, 6);
	net->mtu = cfg->mtu ? cfg->mtu : 1500;
	net->link_up = !cfg->link_down;
	net->loop = env->loop;
	net->nr_qp = 1;
	snprintf(net->ctrl_name, sizeof(net->ctrl_name), "%s.ctrl", net->id);
	ret = qp_init(net, 0, fd);
	if (ret < 0)
		goto err_tap;

	net->vd.id = net->id;
	net->vd.device_type = VIRTIO_ID_NET;
	net->vd.ops = &net_ops;
	net->vd.nr_vqs = VIRTIO_NET_NR_VQS;
	net->vd.vqs[NET_Q_RX].max_size = VIRTIO_NET_QUEUE_SIZE;
	net->vd.vqs[NET_Q_TX].max_size = VIRTIO_NET_QUEUE_SIZE;
	net->vd.vqs[NET_Q_CTRL].max_size = NET_CTRL_QUEUE_SIZE;
	net->vd.config_len = NET_CFG_LEN;
	net->vd.mem = mem;
	net->vd.opaque = net;
	ret = virtio_pci_add(env, &net->vd, &net->vp);
	if (ret < 0) {
		log_err("%s: virtio-pci: %s", net->id, strerror(-ret));
		goto err_qp;
	}
	if (net->loop) {
		net->hook = (struct ev_hook){ .fn = before_wait, .opaque = net };
		evloop_before_wait_add(net->loop, &net->hook);
	}
	log_info("%s: tap %s mac %02x:%02x:%02x:%02x:%02x:%02x mtu %u offloads 0x%x", net->id,
		 net->fd_is_tap ? net->tap.name : "(fd)", net->mac[0], net->mac[1], net->mac[2],
		 net->mac[3], net->mac[4], net->mac[5], net->mtu, net->tun_supported);
	*out = net;
	return 0;

err_qp:
	qp_free(&net->qp[0]);
err_tap:
	if (net->fd_is_tap)
		tap_close(&net->tap);
err_free:
	free(net);
	return ret;
}

void virtio_net_destroy(struct virtio_net *net)
{
	if (!net)
		return;
	if (net->loop) {
		/* Cancel our requests and run the loop until their last callbacks ran. */
		pthread_mutex_lock(&net->vd.lock);
		for (unsigned int i = 0; i < net->nr_qp; i++) {
			net->qp[i].rx_want = false;
			if (ev_req_busy(&net->qp[i].rx_req))
				evloop_cancel(net->loop, &net->qp[i].rx_req);
			if (ev_req_busy(&net->qp[i].tx_req))
				evloop_cancel(net->loop, &net->qp[i].tx_req);
		}
		pthread_mutex_unlock(&net->vd.lock);
		for (int spins = 0; spins < 100; spins++) {
			bool busy = false;

			for (unsigned int i = 0; i < net->nr_qp; i++)
				busy |= ev_req_busy(&net->qp[i].rx_req) || ev_req_busy(&net->qp[i].tx_req) ||
					net->qp[i].work_posted;
			if (!busy)
				break;
			evloop_run_once(net->loop, 10 * 1000 * 1000);
		}
		evloop_before_wait_del(net->loop, &net->hook);
	}
	virtio_pci_remove(net->vp);
	for (unsigned int i = 0; i < net->nr_qp; i++) {
		qp_free(&net->qp[i]);
		if (!net->fd_is_tap && net->qp[i].fd >= 0)
			close(net->qp[i].fd);
	}
	if (net->fd_is_tap)
		tap_close(&net->tap);
	free(net);
}

void virtio_net_stats(struct virtio_net *net, struct virtio_net_stats *st)
{
	pthread_mutex_lock(&net->vd.lock);
	*st = net->stats;
	pthread_mutex_unlock(&net->vd.lock);
}

void virtio_net_set_link(struct virtio_net *net, bool up)
{
	pthread_mutex_lock(&net->vd.lock);
	if (net->link_up != up) {
		net->link_up = up;
		virtio_dev_config_changed(&net->vd);
		if (!up)
			net->qp[0].rx_want = false;
		qp_post_work(&net->qp[0]);
	}
	pthread_mutex_unlock(&net->vd.lock);
}

bool virtio_net_announce(struct virtio_net *net)
{
	bool ok;

	pthread_mutex_lock(&net->vd.lock);
	ok = net->vd.active && has(net, VIRTIO_NET_F_GUEST_ANNOUNCE);
	if (ok) {
		net->status_extra |= VIRTIO_NET_S_ANNOUNCE;
		virtio_dev_config_changed(&net->vd);
	}
	pthread_mutex_unlock(&net->vd.lock);
	return ok;
}

const char *virtio_net_tap_name(const struct virtio_net *net)
{
	return net->fd_is_tap ? net->tap.name : "";
}

int virtio_net_announce_target(struct virtio_net *net, int *fd, uint8_t mac[6],
			       unsigned int *vnet_hdr_len)
{
	pthread_mutex_lock(&net->vd.lock);
	*fd = net->qp[0].fd;
	memcpy(mac, net->mac, 6);
	/* tap_open's TUNSETVNETHDRSZ, and the size a handed-in fd must speak too */
	*vnet_hdr_len = sizeof(struct virtio_net_hdr_v1);
	pthread_mutex_unlock(&net->vd.lock);
	return *fd >= 0 ? 0 : -ENODEV;
}
