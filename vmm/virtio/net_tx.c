// SPDX-License-Identifier: MIT
/*
 * virtio-net transmit (see net.c for the whole picture): pop tx chains, parse and check the
 * guest's header once (net_tx_parse), writev the header copy + the guest's payload segments to
 * the tap, push used. A tap that refuses writes parks the queue on a one-shot POLLOUT.
 */
#define LOG_TAG "virtio-net"
#include "vmm/virtio/net_internal.h"

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

/* ---- completion hold ---- */

/*
 * Once writev returned, the packet is on the tap: pushing its chain later delays nothing on
 * the wire, only the moment the guest may free the skb. A Linux guest's TCP limits the bytes
 * its socket has queued below it (TCP small queues: at low pacing rates only ~2 skbs) and
 * corks what the application writes meanwhile; when those skbs are freed it sends the
 * corked data as one larger GSO packet. Pushed at once, a slow guest (the nested test host:
 * ~1000 packets/s, each kick and interrupt an expensive exit) sent 2-3x QEMU's packets for
 * the same bytes, with one tx interrupt per packet, and 0.35-0.5x QEMU's throughput; held
 * up to 10 ms it sends 4x fewer, larger packets with 25x fewer tx interrupts, and 1.2x QEMU
 * (docs/benchmarks.md, bench/net.sh).
 *
 * The hold ends at the first of: tx_hold_ns after the first held completion (a timer), 64 KiB
 * held (NET_TX_HOLD_BYTES: a fast sender never waits on us; TSQ on a fast link allows ~1 ms
 * of data, far more), a quarter of the ring held (the guest never runs short of
 * descriptors), quiesce (a saved ring owes the guest nothing). A reset drops them with the ring.
 */
static void push_head(struct net_qp *qp, uint16_t head)
{
	struct vq_chain done = { .head = head };	/* tx writes no guest bytes */

	vq_push(&qp->tx, &done, 0);
	net_mark_notify(qp, false);
}

void net_tx_release(struct net_qp *qp)
{
	for (unsigned int i = 0; i < qp->nr_tx_held; i++)
		push_head(qp, qp->tx_held[i]);
	qp->nr_tx_held = 0;
	qp->tx_held_bytes = 0;
}

static void tx_complete(struct net_qp *qp, const struct vq_chain *ch)
{
	struct virtio_net *net = qp->net;

	if (!net->tx_hold_ns || !net->loop) {
		push_head(qp, ch->head);
		return;
	}
	qp->tx_held[qp->nr_tx_held++] = ch->head;
	qp->tx_held_bytes += ch->out_len;
	if (qp->nr_tx_held >= vq_size(&qp->tx) / 4u || qp->tx_held_bytes >= NET_TX_HOLD_BYTES) {
		net_tx_release(qp);
		return;
	}
	if (!ev_req_busy(&qp->tx_hold_timer) &&
	    evloop_timeout(net->loop, &qp->tx_hold_timer, net->tx_hold_ns) < 0)
		net_tx_release(qp);	/* no timer (ring full): never keep the guest waiting */
}

void net_on_tx_hold_timer(struct evloop *l, struct ev_req *req, int res)
{
	struct net_qp *qp = req->opaque;

	(void)l;
	(void)res;	/* cancelled or expired: either way nothing may stay held */
	pthread_mutex_lock(&qp->net->vd.lock);
	net_tx_release(qp);
	net_flush_notify_locked(qp->net);
	pthread_mutex_unlock(&qp->net->vd.lock);
}

static void tx_wait_writable(struct net_qp *qp)
{
	qp->tx_blocked = true;
	if (!ev_req_busy(&qp->tx_req) &&
	    evloop_poll(qp->net->loop, &qp->tx_req, qp->fd, POLLOUT, false) < 0)
		qp->tx_blocked = false;		/* ring full: retry on the next kick */
}

void net_tx_process(struct net_qp *qp)
{
	struct virtio_net *net = qp->net;
	struct vq_chain ch = { .segs = qp->tx_segs, .cap = VIRTIO_NET_QUEUE_SIZE };
	unsigned int budget = NET_BUDGET;
	int ret;

	if (!net_live(net) || !vq_enabled(&qp->tx) || qp->tx_blocked)
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
				net_broken(net);
				return;
			}
			tx_complete(qp, &ch);
			budget--;
		}
		if (budget && ret < 0) {
			net_broken(net);
			return;
		}
		if (!budget) {
			/* Kicks stay off; qp->work continues after other loop events ran. */
			qp->tx_more = true;
			net_qp_post_work(qp);
			return;
		}
	} while (vq_enable_notify(&qp->tx));
}

void net_on_tx_writable(struct evloop *l, struct ev_req *req, int res)
{
	struct net_qp *qp = req->opaque;

	pthread_mutex_lock(&qp->net->vd.lock);
	qp->tx_blocked = false;
	net_tx_process(qp);
	pthread_mutex_unlock(&qp->net->vd.lock);
}
