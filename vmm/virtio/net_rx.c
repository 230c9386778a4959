// SPDX-License-Identifier: MIT
/*
 * virtio-net receive (see net.c for the whole picture): gather receive chains for the size
 * recent packets had, readv from the tap straight into them with a bounce buffer as the last
 * iovec, complete longer packets from the bounce buffer with more chains (mergeable buffers),
 * and cancel the tap poll while the guest has no buffers.
 */
#define LOG_TAG "virtio-net"
#include "vmm/virtio/net_internal.h"

/* ---- receive ---- */

static uint32_t rx_max_packet(const struct virtio_net *net)
{
	bool gso = net_has(net, VIRTIO_NET_F_GUEST_TSO4) || net_has(net, VIRTIO_NET_F_GUEST_TSO6) ||
		   net_has(net, VIRTIO_NET_F_GUEST_UFO);

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
	bool mrg = net_has(net, VIRTIO_NET_F_MRG_RXBUF);
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
	net_mark_notify(qp, true);
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
	if (!net_has(net, VIRTIO_NET_F_MRG_RXBUF)) {
		dev_ratelimited(net, LOG_WARN, "rx: %u-byte packet, guest buffer holds %u: dropped", len, cap);
		net->stats.rx_drops++;
		return RX_DONE;
	}
	qp->pend_len = len;
	return rx_pending(qp);
}

/* Arm or cancel the tap poll to match rx_want. Loop thread, lock held. */
void net_rx_poll_sync(struct net_qp *qp)
{
	struct evloop *l = qp->net->loop;

	if (!l)
		return;
	if (qp->rx_want && !ev_req_busy(&qp->rx_req)) {
		int ret = evloop_poll(l, &qp->rx_req, qp->fd, POLLIN, true);

		if (ret < 0) {
			/* Ring full: qp->work retries on the next loop turn. */
			dev_ratelimited(qp->net, LOG_WARN, "tap poll: %s", strerror(-ret));
			net_qp_post_work(qp);
		}
	} else if (!qp->rx_want && ev_req_busy(&qp->rx_req)) {
		evloop_cancel(l, &qp->rx_req);
	}
}

/* Drain the tap into the guest. Loop thread, lock held. */
void net_rx_process(struct net_qp *qp)
{
	struct virtio_net *net = qp->net;
	unsigned int budget = NET_BUDGET;

	if (!net_live(net) || !vq_enabled(&qp->rx) || !net->link_up) {
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
			net_broken(net);
			goto out;
		case RX_ERROR:
			qp->rx_want = false;
			goto out;
		}
	}
	/* Budget used up: the poll fires only on new packets, so continue from qp->work. */
	net_qp_post_work(qp);
out:
	net_rx_poll_sync(qp);
	if (!net->loop)
		net_flush_notify_locked(net);
}

void net_on_tap_readable(struct evloop *l, struct ev_req *req, int res)
{
	struct net_qp *qp = req->opaque;

	pthread_mutex_lock(&qp->net->vd.lock);
	if (res > 0 && qp->rx_want)
		net_rx_process(qp);
	else if (res < 0 && res != -ECANCELED)
		dev_ratelimited(qp->net, LOG_WARN, "tap poll: %s", strerror(-res));
	else
		net_rx_poll_sync(qp);	/* cancelled (final): re-arm if wanted again since */
	pthread_mutex_unlock(&qp->net->vd.lock);
}
