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
 * Files: net.c the device (features, config space, activate/reset, queue notify, state,
 * create/destroy, the public calls), net_tx.c transmit, net_rx.c receive, net_ctrl.c the
 * control queue, net_parse.c the pure request parsers (fuzzed: tests/fuzz/fuzz_net.c),
 * net_state.c the state section encoding; net_internal.h the structs they share.
 *
 * Threading: packet work runs on the main loop with vd.lock held. activate/reset/config run
 * on vCPU threads under the same lock and never touch the event loop: they set flags and post
 * qp->work, which reconciles the poll with the device state on the loop thread.
 */
#define LOG_TAG "virtio-net"
#include "vmm/virtio/net_internal.h"

/* Guest-visible offload features and the tap flag each one needs. */
static const struct { unsigned int bit; unsigned int tun; } offload_map[] = {
	{ VIRTIO_NET_F_GUEST_CSUM, TUN_F_CSUM },
	{ VIRTIO_NET_F_GUEST_TSO4, TUN_F_TSO4 },
	{ VIRTIO_NET_F_GUEST_TSO6, TUN_F_TSO6 },
	{ VIRTIO_NET_F_GUEST_ECN, TUN_F_TSO_ECN },
	{ VIRTIO_NET_F_GUEST_UFO, TUN_F_UFO },
};

/* Interrupt decisions for every queue with new used entries: once per loop turn. */
void net_flush_notify_locked(struct virtio_net *net)
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
	net_flush_notify_locked(net);
	pthread_mutex_unlock(&net->vd.lock);
}

void net_broken(struct virtio_net *net)
{
	virtio_dev_needs_reset(&net->vd);
	for (unsigned int i = 0; i < net->nr_qp; i++) {
		net->qp[i].rx_want = false;
		net_qp_post_work(&net->qp[i]);
	}
}

/* qp->work: runs on the loop thread. */
static void qp_work(void *opaque)
{
	struct net_qp *qp = opaque;

	pthread_mutex_lock(&qp->net->vd.lock);
	qp->work_posted = false;
	if (net_live(qp->net) && vq_enabled(&qp->rx) && qp->net->link_up && !qp->rx_want &&
	    !qp->pend_len)
		qp->rx_want = true;	/* activated / link up: look at the tap */
	if (qp->rx_want)
		net_rx_process(qp);
	else
		net_rx_poll_sync(qp);
	if (qp->tx_more) {
		qp->tx_more = false;
		net_tx_process(qp);
	}
	if (qp == &qp->net->qp[0] && qp->net->ctrl_replay) {
		qp->net->ctrl_replay = false;
		net_ctrl_process(qp->net);
	}
	if (!net_live(qp->net) && !qp->net->quiesced) {
		qp->tx_blocked = false;
		if (ev_req_busy(&qp->tx_req))
			evloop_cancel(qp->net->loop, &qp->tx_req);
	}
	pthread_mutex_unlock(&qp->net->vd.lock);
}

void net_qp_post_work(struct net_qp *qp)
{
	if (qp->work_posted || !qp->net->loop)
		return;
	qp->work_posted = true;
	evloop_post_work(qp->net->loop, &qp->work);
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
	bool gcsum = net_has(net, VIRTIO_NET_F_GUEST_CSUM), hcsum = net_has(net, VIRTIO_NET_F_CSUM);

	if (!gcsum && (net_has(net, VIRTIO_NET_F_GUEST_TSO4) || net_has(net, VIRTIO_NET_F_GUEST_TSO6) ||
		       net_has(net, VIRTIO_NET_F_GUEST_UFO)))
		return "guest TSO/UFO without GUEST_CSUM";
	if (net_has(net, VIRTIO_NET_F_GUEST_ECN) &&
	    !net_has(net, VIRTIO_NET_F_GUEST_TSO4) && !net_has(net, VIRTIO_NET_F_GUEST_TSO6))
		return "GUEST_ECN without GUEST_TSO4/6";
	if (!hcsum && (net_has(net, VIRTIO_NET_F_HOST_TSO4) || net_has(net, VIRTIO_NET_F_HOST_TSO6) ||
		       net_has(net, VIRTIO_NET_F_HOST_UFO)))
		return "host TSO/UFO without CSUM";
	if (net_has(net, VIRTIO_NET_F_HOST_ECN) &&
	    !net_has(net, VIRTIO_NET_F_HOST_TSO4) && !net_has(net, VIRTIO_NET_F_HOST_TSO6))
		return "HOST_ECN without HOST_TSO4/6";
	if (!net_has(net, VIRTIO_NET_F_CTRL_VQ) &&
	    (net_has(net, VIRTIO_NET_F_CTRL_RX) || net_has(net, VIRTIO_NET_F_CTRL_MAC_ADDR) ||
	     net_has(net, VIRTIO_NET_F_GUEST_ANNOUNCE)))
		return "control features without CTRL_VQ";
	return NULL;
}

static unsigned int guest_tun_offloads(const struct virtio_net *net)
{
	unsigned int t = 0;

	for (unsigned int i = 0; i < sizeof(offload_map) / sizeof(offload_map[0]); i++)
		if (net_has(net, offload_map[i].bit))
			t |= offload_map[i].tun;
	return t;
}

static int queue_init(struct virtio_net *net, unsigned int q, struct vq *vq, const char *name)
{
	const struct virtio_queue_cfg *c = &net->vd.vqs[q];
	struct vq_config cfg = {
		.name = name, .size = c->size, .desc = c->desc, .avail = c->driver, .used = c->device,
		.event_idx = net_has(net, VIRTIO_RING_F_EVENT_IDX),
		.indirect = net_has(net, VIRTIO_RING_F_INDIRECT_DESC),
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
	qp->nr_tx_held = 0;		/* their ring is gone; a pending hold timer finds none */
	qp->tx_held_bytes = 0;
	net_qp_post_work(qp);		/* cancels the polls on the loop thread */
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
		net_qp_post_work(&net->qp[i]);	/* start polling the tap (loop thread) */
	return 0;
}

static void net_queue_notify(struct virtio_dev *vd, unsigned int q)
{
	struct virtio_net *net = vd->opaque;
	struct net_qp *qp;

	if (q == NET_Q_CTRL) {
		net_ctrl_process(net);
		return;
	}
	qp = &net->qp[q / 2];
	if (q % 2 == NET_Q_RX) {
		net_rx_process(qp);		/* buffers came: deliver what waits, re-arm the poll */
	} else {
		net_tx_process(qp);
		if (!net->loop)
			net_flush_notify_locked(net);
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
	ev_req_init(&qp->rx_req, net_on_tap_readable, qp);
	ev_req_init(&qp->tx_req, net_on_tx_writable, qp);
	ev_req_init(&qp->tx_hold_timer, net_on_tx_hold_timer, qp);
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
	net->tx_hold_ns = (uint64_t)(cfg->tx_hold_us > VIRTIO_NET_TX_HOLD_MAX_US ?
				     VIRTIO_NET_TX_HOLD_MAX_US : cfg->tx_hold_us) * 1000u;
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
			if (ev_req_busy(&net->qp[i].tx_hold_timer))
				evloop_cancel(net->loop, &net->qp[i].tx_hold_timer);
		}
		pthread_mutex_unlock(&net->vd.lock);
		for (int spins = 0; spins < 100; spins++) {
			bool busy = false;

			for (unsigned int i = 0; i < net->nr_qp; i++)
				busy |= ev_req_busy(&net->qp[i].rx_req) || ev_req_busy(&net->qp[i].tx_req) ||
					ev_req_busy(&net->qp[i].tx_hold_timer) || net->qp[i].work_posted;
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
		net_qp_post_work(&net->qp[0]);
	}
	pthread_mutex_unlock(&net->vd.lock);
}

bool virtio_net_announce(struct virtio_net *net)
{
	bool ok;

	pthread_mutex_lock(&net->vd.lock);
	ok = net->vd.active && net_has(net, VIRTIO_NET_F_GUEST_ANNOUNCE);
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

/* ---- quiesce for stop-and-copy (net_state.c) ---- */

void virtio_net_quiesce(struct virtio_net *net)
{
	/* Packet work runs with vd.lock held: once we hold it, none is half done. */
	pthread_mutex_lock(&net->vd.lock);
	net->quiesced = true;
	/* Held tx completions go into the rings (and their interrupt into the vCPU state) now,
	 * before the final dirty sync and the save: a saved ring must not owe the guest any. */
	for (unsigned int i = 0; i < net->nr_qp; i++)
		net_tx_release(&net->qp[i]);
	net_flush_notify_locked(net);
	pthread_mutex_unlock(&net->vd.lock);
}

void virtio_net_resume(struct virtio_net *net)
{
	pthread_mutex_lock(&net->vd.lock);
	if (net->quiesced) {
		net->quiesced = false;
		/* Kicks and packets that came meanwhile: look at every queue again, on the loop. */
		net->ctrl_replay = true;
		for (unsigned int i = 0; i < net->nr_qp; i++) {
			net->qp[i].tx_more = true;
			net_qp_post_work(&net->qp[i]);
		}
	}
	pthread_mutex_unlock(&net->vd.lock);
}
