// SPDX-License-Identifier: MIT
/*
 * virtio-rng (virtio 1.2 §5.4): one request queue; the driver posts device-writable buffers
 * and the device fills them with entropy from getrandom(2). No feature bits of its own, no
 * configuration space. It is the smallest device and the reference for new ones: the file
 * follows the device layout of the style guide (state, request processing, virtio_dev_ops,
 * public create/destroy).
 *
 * Threading: queue_notify runs on the main loop with vd.lock held (the transport takes it);
 * activate/reset run on a vCPU thread under the same lock. No I/O happens on vCPU threads.
 */
#define LOG_TAG "virtio-rng"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <linux/virtio_ring.h>

#include "vmm/lib/log.h"
#include "vmm/state.h"
#include "vmm/virtio/pci.h"
#include "vmm/virtio/pci_state.h"
#include "vmm/virtio/queue.h"
#include "vmm/virtio/rng.h"

#define RNG_QUEUE_SIZE		64
#define RNG_MAX_SEGS		16
/* Per chain: bounds the main loop's time per kick (64 chains x 64 KiB worst case). */
#define RNG_MAX_CHAIN_BYTES	(64u * 1024)

struct virtio_rng {
	struct virtio_dev vd;		/* vd.lock protects everything below */
	struct vq vq;
	char qname[40];
	struct virtio_pci *vp;
	uint64_t bytes, requests;
};

/* ---- request processing ---- */

/* Fill the writable segments of @ch; returns bytes written. */
static uint32_t fill_chain(struct virtio_rng *rng, const struct vq_chain *ch)
{
	uint32_t written = 0;

	for (unsigned int i = ch->n_out; i < ch->n && written < RNG_MAX_CHAIN_BYTES; i++) {
		uint32_t want = ch->segs[i].len;
		ssize_t got;

		if (want > RNG_MAX_CHAIN_BYTES - written)
			want = RNG_MAX_CHAIN_BYTES - written;
		got = getrandom(ch->segs[i].addr, want, GRND_NONBLOCK);
		if (got < 0) {
			log_ratelimited(LOG_WARN, "%s: getrandom: %s", rng->vd.id, strerror(errno));
			break;
		}
		written += (uint32_t)got;
		/* used.len counts bytes from the first writable byte on: stop at a short read. */
		if ((uint32_t)got < want)
			break;
	}
	return written;
}

static void process_queue(struct virtio_rng *rng)
{
	struct vq_seg segs[RNG_MAX_SEGS];
	struct vq_chain ch = { .segs = segs, .cap = RNG_MAX_SEGS };
	int ret;

	do {
		vq_disable_notify(&rng->vq);
		while ((ret = vq_pop(&rng->vq, &ch)) > 0) {
			uint32_t n = fill_chain(rng, &ch);

			vq_push(&rng->vq, &ch, n);
			rng->bytes += n;
			rng->requests++;
		}
		if (ret < 0) {
			virtio_dev_needs_reset(&rng->vd);
			return;
		}
	} while (vq_enable_notify(&rng->vq));
	if (vq_should_notify(&rng->vq))
		virtio_dev_notify(&rng->vd, 0);
}

/* ---- virtio_dev_ops ---- */

static uint64_t rng_features(struct virtio_dev *vd)
{
	return (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VIRTIO_RING_F_INDIRECT_DESC);
}

static int rng_activate(struct virtio_dev *vd)
{
	struct virtio_rng *rng = vd->opaque;
	const struct virtio_queue_cfg *c = &vd->vqs[0];
	struct vq_config cfg = {
		.name = rng->qname,
		.size = c->size,
		.desc = c->desc,
		.avail = c->driver,
		.used = c->device,
		.event_idx = virtio_dev_has_feature(vd, VIRTIO_RING_F_EVENT_IDX),
		.indirect = virtio_dev_has_feature(vd, VIRTIO_RING_F_INDIRECT_DESC),
	};

	vq_reset(&rng->vq);
	if (!c->enabled)
		return 0;	/* a driver may leave the queue off; kicks are then ignored */
	return vq_init(&rng->vq, vd->mem, &cfg);
}

static void rng_queue_notify(struct virtio_dev *vd, unsigned int q)
{
	process_queue(vd->opaque);
}

static void rng_reset(struct virtio_dev *vd)
{
	struct virtio_rng *rng = vd->opaque;

	vq_reset(&rng->vq);
}

static const struct state_ops rng_state_ops;

static const struct virtio_dev_ops rng_ops = {
	.features = rng_features,
	.activate = rng_activate,
	.queue_notify = rng_queue_notify,
	.reset = rng_reset,
	.state = &rng_state_ops,
};

/* ---- state ---- */

void virtio_rng_save(struct virtio_rng *rng, struct virtio_rng_state *st)
{
	virtio_pci_save(rng->vp, &st->transport);
	pthread_mutex_lock(&rng->vd.lock);
	vq_save(&rng->vq, &st->vq);
	pthread_mutex_unlock(&rng->vd.lock);
}

int virtio_rng_load(struct virtio_rng *rng, const struct virtio_rng_state *st)
{
	int ret = virtio_pci_load(rng->vp, &st->transport);	/* re-activates: fresh vq */

	if (ret < 0)
		return ret;
	pthread_mutex_lock(&rng->vd.lock);
	if (rng->vd.active && st->vq.enabled) {
		/* The ring must be the one the transport state describes. */
		const struct virtio_queue_cfg *c = &rng->vd.vqs[0];

		if (st->vq.size != c->size || st->vq.desc != c->desc || st->vq.avail != c->driver ||
		    st->vq.used != c->device)
			ret = -EINVAL;
		else
			ret = vq_restore(&rng->vq, rng->vd.mem, &st->vq, rng->qname);
		if (ret < 0) {
			log_err("%s: saved queue state does not match its configuration", rng->vd.id);
			virtio_dev_needs_reset(&rng->vd);
		}
	}
	pthread_mutex_unlock(&rng->vd.lock);
	if (ret == 0)
		virtio_pci_kick(rng->vp, 0);
	return ret;
}

/* ---- state_ops: the plain structs above as TLV fields ---- */

enum { RNG_T_TRANSPORT = 1, RNG_T_VQ };

static int rng_state_save(void *opaque, struct state_writer *w)
{
	struct virtio_rng_state *st = malloc(sizeof(*st));
	int ret;

	if (!st)
		return -ENOMEM;
	virtio_rng_save(opaque, st);
	ret = virtio_pci_state_write_nest(w, RNG_T_TRANSPORT, &st->transport);
	virtio_vq_state_write_nest(w, RNG_T_VQ, &st->vq);
	free(st);
	return ret < 0 ? ret : sw_error(w);
}

static int rng_state_load(void *opaque, struct state_reader *r, uint16_t version)
{
	struct virtio_rng_state *st = calloc(1, sizeof(*st));
	bool have_tr = false, have_vq = false;
	struct state_field f;
	int ret;

	if (!st)
		return -ENOMEM;
	while ((ret = sr_next(r, &f)) > 0) {
		switch (f.tag) {
		case RNG_T_TRANSPORT:
			ret = virtio_pci_state_read_nest(r, &f, &st->transport);
			have_tr = ret == 0;
			break;
		case RNG_T_VQ:
			ret = virtio_vq_state_read_nest(r, &f, &st->vq);
			have_vq = ret == 0;
			break;
		default:
			ret = sr_skip_unknown(r, &f);
			break;
		}
		if (ret < 0)
			break;
	}
	if (ret == 0 && (!have_tr || !have_vq))
		ret = -EBADMSG;
	if (ret == 0)
		ret = virtio_rng_load(opaque, st);
	free(st);
	return ret;
}

static const struct state_ops rng_state_ops = {
	.name = "virtio-rng",
	.version = 1,
	.min_version = 1,
	.quiesce = NULL,	/* requests complete synchronously: nothing in flight */
	.save = rng_state_save,
	.load = rng_state_load,
};

int virtio_rng_register_state(struct virtio_rng *rng, struct state_registry *reg)
{
	return state_register(reg, rng->vd.id, &rng_state_ops, rng);
}

/* ---- public ---- */

int virtio_rng_create(const struct virtio_pci_env *env, struct guest_mem *mem, const char *id,
		      struct virtio_rng **out)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	int ret;

	if (!rng)
		return -ENOMEM;
	snprintf(rng->qname, sizeof(rng->qname), "%s.q0", id);
	rng->vd.id = id;
	rng->vd.device_type = VIRTIO_ID_RNG;
	rng->vd.ops = &rng_ops;
	rng->vd.nr_vqs = 1;
	rng->vd.vqs[0].max_size = RNG_QUEUE_SIZE;
	rng->vd.config_len = 0;
	rng->vd.mem = mem;
	rng->vd.opaque = rng;
	ret = virtio_pci_add(env, &rng->vd, &rng->vp);
	if (ret < 0) {
		free(rng);
		return ret;
	}
	*out = rng;
	return 0;
}

void virtio_rng_destroy(struct virtio_rng *rng)
{
	if (!rng)
		return;
	virtio_pci_remove(rng->vp);
	free(rng);
}

void virtio_rng_stats(struct virtio_rng *rng, uint64_t *bytes, uint64_t *requests)
{
	pthread_mutex_lock(&rng->vd.lock);
	*bytes = rng->bytes;
	*requests = rng->requests;
	pthread_mutex_unlock(&rng->vd.lock);
}
