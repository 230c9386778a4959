// SPDX-License-Identifier: MIT
/*
 * virtio-blk (virtio 1.2 §5.2) over a raw image (storage/image.h). The driver posts chains of
 * [16-byte header | data | status byte]; this device validates each, turns it into one
 * io_uring operation whose iovecs are the guest's own buffers (zero copy: the segments come
 * from vq_pop, each checked to lie in guest RAM), and on completion writes the status byte and
 * returns the chain. Used-buffer interrupts are batched: completions only mark the queue, and a
 * before-wait hook of the main loop sends at most one interrupt per queue per loop turn
 * (honouring event-idx suppression).
 *
 * Message framing is the driver's choice (§2.6.4): the header may share a descriptor with data,
 * the status byte is the last writable byte wherever it lies. Requests the spec defines but that
 * are wrong get a status: IOERR for bad lengths, ranges and writes to a read-only disk, UNSUPP
 * for unknown types and flags. A chain too short to hold a header and a status byte, or with
 * more segments than seg_max + 2, cannot be answered: the device needs a reset (queue broken).
 *
 * Threading. vd.lock (struct virtio_dev) protects everything in struct virtio_blk below it.
 * queue_notify (main loop), activate/reset/config_read (vCPU threads) are called with it held;
 * image completions and the before-wait hook (main loop) take it. No I/O is started or waited
 * for on a vCPU thread: reset only bumps a generation so that completions of requests started
 * before it are dropped instead of returned to the new rings (their buffers stay valid: guest
 * RAM outlives the device, and destroy drains).
 *
 * Queues (VIRTIO_BLK_F_MQ, offered when the device has more than one): nr_queues request queues,
 * fixed at create (the VM gives a disk one per vCPU). Each has its own ring, notify eventfd,
 * MSI-X vector (the transport's nr_vqs + 1 vectors), request pool, stall/kick state and
 * in-flight count; a request completes on the queue it came from. All of them are served by
 * the one main loop: what the guest gains is a ring and an interrupt per vCPU (no shared
 * submission lock, completions on the submitting CPU), not host threads. blk->inflight is
 * the sum over the queues, so drain and save cover every queue.
 */
#define LOG_TAG "virtio-blk"
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <linux/virtio_ring.h>

#include "storage/image.h"
#include "vmm/lib/log.h"
#include "vmm/virtio/blk.h"
#include "vmm/virtio/blk_req.h"

#define BLK_DRAIN_MS		30000		/* destroy: longest wait for in-flight I/O */

struct blk_queue;

/*
 * One request, from vq_pop to vq_push. A pool of BLK_QUEUE_SIZE per queue, allocated at
 * create: a well-behaved driver cannot have more chains outstanding than the ring holds.
 * (A hostile one can — it may reuse heads still in flight — and then the queue just waits
 * for a free request.)
 */
struct blk_req {
	struct image_io io;
	struct blk_queue *q;
	struct blk_req *next_free;
	uint64_t gen;			/* blk->gen at submission */
	uint32_t type;
	uint64_t bytes;			/* data bytes (counters) */
	uint8_t *status;		/* host pointer to the status byte in guest RAM */
	struct vq_chain ch;
	struct vq_seg segs[BLK_CHAIN_MAX];
	struct iovec iov[BLK_CHAIN_MAX];
	int iovcnt;
	struct virtio_blk_discard_write_zeroes range[BLK_DWZ_SEG_MAX];	/* host-endian copy */
	unsigned int nr_ranges, cur_range;
};

struct blk_queue {
	struct virtio_blk *blk;
	unsigned int index;
	struct vq vq;
	char name[48];
	struct blk_req *reqs;		/* pool */
	struct blk_req *free;
	bool stalled;			/* popping stopped: no free request (resumed on completion) */
	bool kick_pending;		/* kicked while quiesced */
	bool need_notify;		/* chains pushed since the last interrupt decision (atomic) */
	uint64_t inflight;		/* this queue's share of blk->inflight */
	uint64_t completed;		/* chains returned (counters: is the guest spreading?) */
};

struct virtio_blk {
	struct virtio_dev vd;		/* vd.lock protects everything below */
	struct virtio_pci *vp;
	struct image *img;
	struct evloop *loop;
	struct ev_hook hook;
	char id[32];
	char serial[VIRTIO_BLK_ID_BYTES];
	struct virtio_blk_config cs;	/* configuration space, little-endian, read-only */
	uint64_t capacity;		/* sectors */
	bool read_only;
	uint64_t gen;			/* bumped by reset */
	bool quiesced;
	uint64_t inflight;		/* image operations outstanding, all queues (incl. orphans) */
	pthread_cond_t idle;		/* inflight reached 0 (with vd.lock) */
	struct virtio_blk_stats st;
	unsigned int nr_queues;		/* 1..BLK_MAX_QUEUES, fixed at create */
	struct blk_queue *q;		/* [nr_queues] */
};

static void process_queue(struct blk_queue *q);
static void req_done(struct image_io *io, int res);

/* One image operation more / less in flight on @q (vd.lock held). */
static void inflight_inc(struct blk_queue *q)
{
	q->inflight++;
	q->blk->inflight++;
}

static void inflight_dec(struct blk_queue *q)
{
	q->inflight--;
	q->blk->inflight--;
}

/* ---- request processing (vd.lock held) ---- */

static void req_free(struct blk_queue *q, struct blk_req *r)
{
	r->next_free = q->free;
	q->free = r;
}

/* Write the status, return the chain, count. */
static void req_complete(struct blk_queue *q, struct blk_req *r, uint8_t status)
{
	struct virtio_blk *blk = q->blk;
	struct virtio_blk_stats *st = &blk->st;

	*r->status = status;
	if (status == VIRTIO_BLK_S_IOERR) {
		st->ioerr++;
	} else if (status == VIRTIO_BLK_S_UNSUPP) {
		st->unsupp++;
	} else {
		switch (r->type) {
		case VIRTIO_BLK_T_IN:	st->read_reqs++; st->read_bytes += r->bytes; break;
		case VIRTIO_BLK_T_OUT:	st->write_reqs++; st->write_bytes += r->bytes; break;
		case VIRTIO_BLK_T_FLUSH: st->flush_reqs++; break;
		case VIRTIO_BLK_T_GET_ID: st->get_id_reqs++; break;
		case VIRTIO_BLK_T_DISCARD: st->discard_reqs++; st->discard_bytes += r->bytes; break;
		case VIRTIO_BLK_T_WRITE_ZEROES:
			st->write_zeroes_reqs++; st->write_zeroes_bytes += r->bytes; break;
		}
	}
	/*
	 * used.len: the whole writable part. For a read that is the data plus the status; for an
	 * error it over-states what was written, which drivers ignore and which only makes
	 * migration resend a few more bytes (vq_push marks [0, len) dirty).
	 */
	vq_push(&q->vq, &r->ch, r->ch.in_len);
	q->completed++;
	__atomic_store_n(&q->need_notify, true, __ATOMIC_RELAXED);
	req_free(q, r);
}

static int submit_range(struct blk_req *r)
{
	const struct virtio_blk_discard_write_zeroes *d = &r->range[r->cur_range];
	uint64_t off = le64toh(d->sector) * BLK_SECTOR;
	uint64_t len = (uint64_t)le32toh(d->num_sectors) * BLK_SECTOR;

	if (r->type == VIRTIO_BLK_T_DISCARD)
		return image_discard(&r->io, off, len);
	return image_write_zeroes(&r->io, off, len,
				  (le32toh(d->flags) & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) ?
				  IMAGE_ZEROES_UNMAP : 0);
}

/*
 * Validate and start one popped chain. Either it is submitted to the image (completion in
 * req_done), or completed at once with a status, or — too short to answer — the device is
 * marked for reset. Returns false in that last case.
 */
static bool handle_req(struct blk_queue *q, struct blk_req *r)
{
	struct virtio_blk *blk = q->blk;
	struct vq_chain *ch = &r->ch;
	struct blk_parsed p;
	uint64_t sector;
	uint8_t status;
	int ret;

	if (blk_req_parse(ch, blk->capacity, blk->read_only, r->iov, r->range, &p) < 0) {
		log_ratelimited(LOG_WARN, "%s: request %u: %u readable / %u writable bytes: no room "
				"for header and status", q->name, ch->head, ch->out_len, ch->in_len);
		req_free(q, r);
		virtio_dev_needs_reset(&blk->vd);
		return false;
	}
	r->type = p.type;
	sector = p.sector;
	r->status = p.status_ptr;
	r->bytes = p.bytes;
	r->gen = blk->gen;
	r->iovcnt = p.iovcnt;
	r->nr_ranges = p.nr_ranges;
	r->cur_range = 0;
	status = p.status;
	image_io_init(&r->io, blk->img, req_done, r);
	if (p.type == VIRTIO_BLK_T_GET_ID && status == VIRTIO_BLK_S_OK)
		vq_chain_copy_to(ch, 0, blk->serial, p.id_len);
	if (!p.submit)
		goto done;

	switch (r->type) {
	case VIRTIO_BLK_T_IN:
		ret = image_readv(&r->io, r->iov, r->iovcnt, sector * BLK_SECTOR);
		break;
	case VIRTIO_BLK_T_OUT:
		/* Without FLUSH negotiated the driver assumes no volatile cache: write through. */
		ret = image_writev(&r->io, r->iov, r->iovcnt, sector * BLK_SECTOR,
				   virtio_dev_has_feature(&blk->vd, VIRTIO_BLK_F_FLUSH) ? 0 : IMAGE_WRITE_SYNC);
		break;
	case VIRTIO_BLK_T_FLUSH:
		ret = image_flush(&r->io);
		break;
	default:
		ret = submit_range(r);
		break;
	}
	if (ret < 0) {
		log_ratelimited(LOG_ERR, "%s: request %u (type %u): submit: %s", q->name, ch->head,
				r->type, strerror(-ret));
		status = VIRTIO_BLK_S_IOERR;
		goto done;
	}
	inflight_inc(q);
	return true;

done:
	req_complete(q, r, status);
	return true;
}

/* Image completion (main loop, vd.lock not held). */
static void req_done(struct image_io *io, int res)
{
	struct blk_req *r = io->opaque;
	struct blk_queue *q = r->q;
	struct virtio_blk *blk = q->blk;

	pthread_mutex_lock(&blk->vd.lock);
	inflight_dec(q);
	if (r->gen != blk->gen) {
		/* Started before a reset: the rings it came from are gone. */
		req_free(q, r);
		goto out;
	}
	if (res == 0 && (r->type == VIRTIO_BLK_T_DISCARD || r->type == VIRTIO_BLK_T_WRITE_ZEROES) &&
	    r->cur_range + 1 < r->nr_ranges) {
		r->cur_range++;
		res = submit_range(r);
		if (res == 0) {
			inflight_inc(q);
			goto out;
		}
	}
	if (res < 0)
		log_ratelimited(LOG_WARN, "%s: request %u (type %u): %s", q->name, r->ch.head, r->type,
				strerror(-res));
	req_complete(q, r, res < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
	if (q->stalled && blk->vd.active) {
		q->stalled = false;
		process_queue(q);
	}
out:
	if (blk->inflight == 0)
		pthread_cond_broadcast(&blk->idle);
	pthread_mutex_unlock(&blk->vd.lock);
}

/* Pop and start everything available (vd.lock held, main loop). */
static void process_queue(struct blk_queue *q)
{
	struct virtio_blk *blk = q->blk;
	int ret;

	if (blk->quiesced) {
		q->kick_pending = true;
		return;
	}
	if (!vq_enabled(&q->vq))
		return;
	do {
		vq_disable_notify(&q->vq);
		for (;;) {
			struct blk_req *r = q->free;

			if (!r) {
				/* Kicks stay off: the next completion calls us again. */
				q->stalled = true;
				return;
			}
			r->ch = (struct vq_chain){ .segs = r->segs, .cap = BLK_CHAIN_MAX };
			ret = vq_pop(&q->vq, &r->ch);
			if (ret == 0)
				break;
			if (ret < 0) {
				/* Malformed, or more than seg_max + 2 segments: logged by the walker. */
				virtio_dev_needs_reset(&blk->vd);
				return;
			}
			q->free = r->next_free;
			if (!handle_req(q, r))
				return;
		}
	} while (vq_enable_notify(&q->vq));
}

/* Before-wait hook (main loop): at most one interrupt per queue per loop turn. */
static void blk_before_wait(struct evloop *l, void *opaque)
{
	struct virtio_blk *blk = opaque;

	for (unsigned int i = 0; i < blk->nr_queues; i++) {
		struct blk_queue *q = &blk->q[i];

		if (!__atomic_load_n(&q->need_notify, __ATOMIC_RELAXED))
			continue;
		pthread_mutex_lock(&blk->vd.lock);
		__atomic_store_n(&q->need_notify, false, __ATOMIC_RELAXED);
		if (vq_should_notify(&q->vq))
			virtio_dev_notify(&blk->vd, i);
		pthread_mutex_unlock(&blk->vd.lock);
	}
}

/* ---- virtio_dev_ops (vd.lock held) ---- */

static uint64_t blk_features(struct virtio_dev *vd)
{
	struct virtio_blk *blk = vd->opaque;
	uint64_t f = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_SIZE_MAX) |
		     (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH) |
		     (1ull << VIRTIO_BLK_F_TOPOLOGY) |
		     (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VIRTIO_RING_F_INDIRECT_DESC);

	/*
	 * Only with several queues: a one-queue disk looks exactly as before MQ existed, so its
	 * acked features (part of the migration state) are what older vmms offered too.
	 */
	if (blk->nr_queues > 1)
		f |= 1ull << VIRTIO_BLK_F_MQ;
	if (blk->read_only)
		f |= 1ull << VIRTIO_BLK_F_RO;
	else
		f |= (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

static void blk_config_read(struct virtio_dev *vd, uint32_t off, void *data, uint32_t len)
{
	struct virtio_blk *blk = vd->opaque;

	memcpy(data, (const uint8_t *)&blk->cs + off, len);	/* off + len <= config_len: caller */
}

static void blk_config_write(struct virtio_dev *vd, uint32_t off, const void *data, uint32_t len)
{
	/* Only `writeback` is writable, and only with CONFIG_WCE, which is not offered. */
	log_ratelimited(LOG_DBG, "%s: config write at %u ignored", vd->id, off);
}

static int blk_activate(struct virtio_dev *vd)
{
	struct virtio_blk *blk = vd->opaque;

	for (unsigned int i = 0; i < blk->nr_queues; i++) {
		struct blk_queue *q = &blk->q[i];
		const struct virtio_queue_cfg *c = &vd->vqs[i];
		struct vq_config cfg = {
			.name = q->name,
			.size = c->size,
			.desc = c->desc,
			.avail = c->driver,
			.used = c->device,
			.event_idx = virtio_dev_has_feature(vd, VIRTIO_RING_F_EVENT_IDX),
			.indirect = virtio_dev_has_feature(vd, VIRTIO_RING_F_INDIRECT_DESC),
		};
		int ret;

		vq_reset(&q->vq);
		q->stalled = q->kick_pending = false;
		if (!c->enabled)
			continue;
		ret = vq_init(&q->vq, vd->mem, &cfg);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static void blk_queue_notify(struct virtio_dev *vd, unsigned int q)
{
	struct virtio_blk *blk = vd->opaque;

	/*
	 * The transport only notifies queues it has (nr_vqs = nr_queues); checked again here
	 * because the index comes from the guest's choice of notify address.
	 */
	if (q < blk->nr_queues)
		process_queue(&blk->q[q]);
}

static void blk_reset(struct virtio_dev *vd)
{
	struct virtio_blk *blk = vd->opaque;

	/* In-flight requests finish in the background and are dropped (see the file comment). */
	blk->gen++;
	for (unsigned int i = 0; i < blk->nr_queues; i++) {
		vq_reset(&blk->q[i].vq);
		blk->q[i].stalled = blk->q[i].kick_pending = false;
		__atomic_store_n(&blk->q[i].need_notify, false, __ATOMIC_RELAXED);
	}
}

static const struct virtio_dev_ops blk_ops = {
	.features = blk_features,
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.activate = blk_activate,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
	.state = NULL,		/* the TLV section follows once the stream is wired (see blk.h) */
};

/* ---- quiesce and state ---- */

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* vd.lock held; returns with it held. Runs the loop itself when called on its thread. */
static int drain_locked(struct virtio_blk *blk, unsigned int timeout_ms)
{
	uint64_t deadline = mono_ms() + timeout_ms;

	if (evloop_in_loop_thread(blk->loop)) {
		while (blk->inflight) {
			if (mono_ms() >= deadline)
				return -ETIMEDOUT;
			pthread_mutex_unlock(&blk->vd.lock);
			evloop_run_once(blk->loop, 10 * 1000 * 1000);
			pthread_mutex_lock(&blk->vd.lock);
		}
		return 0;
	}
	while (blk->inflight) {
		struct timespec ts;
		uint64_t now = mono_ms();

		if (now >= deadline)
			return -ETIMEDOUT;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&blk->idle, &blk->vd.lock, &ts);
	}
	return 0;
}

/* "q0 3, q2 1": the queues with requests in flight, for a drain that timed out (vd.lock held). */
static void inflight_by_queue(const struct virtio_blk *blk, char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	for (unsigned int i = 0; i < blk->nr_queues && at < len; i++) {
		int n;

		if (!blk->q[i].inflight)
			continue;
		n = snprintf(buf + at, len - at, "%sq%u %" PRIu64, at ? ", " : "", i,
			     blk->q[i].inflight);
		if (n < 0)
			break;
		at += (size_t)n;
	}
}

int virtio_blk_quiesce(struct virtio_blk *blk, unsigned int timeout_ms)
{
	char where[256];
	uint64_t left;
	int ret;

	pthread_mutex_lock(&blk->vd.lock);
	blk->quiesced = true;
	ret = drain_locked(blk, timeout_ms);
	left = blk->inflight;
	inflight_by_queue(blk, where, sizeof(where));
	pthread_mutex_unlock(&blk->vd.lock);
	if (ret < 0)
		log_err("%s: %" PRIu64 " requests still in flight after %u ms (%s)", blk->id, left,
			timeout_ms, where[0] ? where : "orphans of a reset");
	return ret;
}

static void resume_on_loop(void *opaque)
{
	struct virtio_blk *blk = opaque;

	pthread_mutex_lock(&blk->vd.lock);
	blk->quiesced = false;
	for (unsigned int i = 0; i < blk->nr_queues; i++) {
		struct blk_queue *q = &blk->q[i];

		if (q->kick_pending && blk->vd.active) {
			q->kick_pending = false;
			process_queue(q);
		}
	}
	pthread_mutex_unlock(&blk->vd.lock);
}

void virtio_blk_resume(struct virtio_blk *blk)
{
	/* Requests are only ever submitted on the loop thread (evloop.h). */
	if (evloop_in_loop_thread(blk->loop))
		resume_on_loop(blk);
	else if (evloop_post(blk->loop, resume_on_loop, blk) < 0)
		log_err("%s: resume: out of memory; the disk stays stopped", blk->id);
}

int virtio_blk_save(struct virtio_blk *blk, struct virtio_blk_state *st)
{
	memset(st, 0, sizeof(*st));
	virtio_pci_save(blk->vp, &st->transport);
	pthread_mutex_lock(&blk->vd.lock);
	if (blk->inflight) {
		pthread_mutex_unlock(&blk->vd.lock);
		log_err("%s: save with %" PRIu64 " requests in flight (not quiesced)", blk->id,
			blk->inflight);
		return -EBUSY;
	}
	st->num_queues = (uint16_t)blk->nr_queues;
	for (unsigned int i = 0; i < blk->nr_queues; i++)
		vq_save(&blk->q[i].vq, &st->vq[i]);
	st->capacity = blk->capacity;
	st->read_only = blk->read_only;
	pthread_mutex_unlock(&blk->vd.lock);
	return 0;
}

/* Restore queue @i from @v; the ring must be the one the transport state describes. */
static int load_queue(struct virtio_blk *blk, unsigned int i, const struct vq_state *v)
{
	const struct virtio_queue_cfg *c = &blk->vd.vqs[i];

	if (!blk->vd.active || !v->enabled)
		return 0;
	if (!c->enabled || v->size != c->size || v->desc != c->desc || v->avail != c->driver ||
	    v->used != c->device)
		return -EINVAL;
	return vq_restore(&blk->q[i].vq, blk->vd.mem, v, blk->q[i].name);
}

int virtio_blk_load(struct virtio_blk *blk, const struct virtio_blk_state *st)
{
	int ret = 0;

	if (st->capacity != blk->capacity || st->read_only != blk->read_only) {
		log_err("%s: saved disk has %" PRIu64 " sectors%s, this one %" PRIu64 "%s", blk->id,
			st->capacity, st->read_only ? " (ro)" : "", blk->capacity,
			blk->read_only ? " (ro)" : "");
		return -EINVAL;
	}
	/* Before the transport, whose own check would only say it "does not fit". */
	if (st->num_queues != blk->nr_queues) {
		log_err("%s: saved disk has %u queues, this one %u (start the destination with the "
			"same --cpus, or --disk ...,queues=%u)", blk->id, st->num_queues,
			blk->nr_queues, st->num_queues);
		return -EINVAL;
	}
	ret = virtio_pci_load(blk->vp, &st->transport);	/* re-activates: fresh queues */
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&blk->vd.lock);
	blk->quiesced = false;
	for (unsigned int i = 0; i < blk->nr_queues && ret == 0; i++) {
		ret = load_queue(blk, i, &st->vq[i]);
		if (ret < 0) {
			log_err("%s: saved state of queue %u does not match its configuration",
				blk->id, i);
			virtio_dev_needs_reset(&blk->vd);
		}
	}
	pthread_mutex_unlock(&blk->vd.lock);
	for (unsigned int i = 0; i < blk->nr_queues && ret == 0; i++)
		virtio_pci_kick(blk->vp, i);
	return ret;
}

/* ---- public ---- */

static void build_config(struct virtio_blk *blk)
{
	struct virtio_blk_config *cs = &blk->cs;
	uint32_t lbs = image_block_size(blk->img), pbs = image_physical_block_size(blk->img);
	uint8_t exp = 0;

	while ((lbs << (exp + 1)) <= pbs && exp < 15)
		exp++;
	memset(cs, 0, sizeof(*cs));
	cs->capacity = htole64(blk->capacity);
	cs->size_max = htole32(BLK_SIZE_MAX);
	cs->seg_max = htole32(BLK_SEG_MAX);
	cs->blk_size = htole32(lbs);
	cs->physical_block_exp = exp;
	cs->alignment_offset = 0;
	cs->min_io_size = htole16((uint16_t)(1u << exp));	/* in logical blocks */
	cs->opt_io_size = htole32(0);
	cs->num_queues = htole16((uint16_t)blk->nr_queues);	/* read only with MQ */
	if (!blk->read_only) {
		cs->max_discard_sectors = htole32(BLK_DWZ_SECTORS_MAX);
		cs->max_discard_seg = htole32(BLK_DWZ_SEG_MAX);
		cs->discard_sector_alignment = htole32(pbs / BLK_SECTOR);
		cs->max_write_zeroes_sectors = htole32(BLK_DWZ_SECTORS_MAX);
		cs->max_write_zeroes_seg = htole32(BLK_DWZ_SEG_MAX);
		cs->write_zeroes_may_unmap = 1;
	}
}

int virtio_blk_create(const struct virtio_pci_env *env, struct guest_mem *mem,
		      const struct virtio_blk_opts *opts, struct virtio_blk **out,
		      char *err, size_t errlen)
{
	struct image_config icfg = { .path = opts->path, .read_only = opts->read_only,
				     .direct = opts->direct, .no_lock = opts->no_lock };
	const char *serial = opts->serial ? opts->serial : opts->id;
	unsigned int nq = opts->num_queues ? opts->num_queues : 1;
	struct virtio_blk *blk;
	int ret;

	if (!env->loop || !opts->path || !opts->id) {
		snprintf(err, errlen, "disk: no event loop, path or id");
		return -EINVAL;
	}
	if (nq > BLK_MAX_QUEUES) {
		snprintf(err, errlen, "disk %s: %u queues, at most %u", opts->path, nq,
			 BLK_MAX_QUEUES);
		return -EINVAL;
	}
	if (strlen(serial) > VIRTIO_BLK_ID_BYTES) {
		snprintf(err, errlen, "disk %s: serial \"%s\" longer than %u bytes", opts->path,
			 serial, VIRTIO_BLK_ID_BYTES);
		return -EINVAL;
	}
	blk = calloc(1, sizeof(*blk));
	if (blk)
		blk->q = calloc(nq, sizeof(*blk->q));
	if (!blk || !blk->q) {
		free(blk);
		snprintf(err, errlen, "disk %s: %s", opts->path, strerror(ENOMEM));
		return -ENOMEM;
	}
	blk->nr_queues = nq;
	snprintf(blk->id, sizeof(blk->id), "%s", opts->id);
	memcpy(blk->serial, serial, strlen(serial));	/* NUL-padded (calloc), maybe unterminated */
	blk->loop = env->loop;
	ret = image_open(&icfg, env->loop, &blk->img, err, errlen);
	if (ret < 0)
		goto err_free;
	blk->read_only = opts->read_only;
	blk->capacity = image_size(blk->img) / BLK_SECTOR;
	build_config(blk);
	ret = -pthread_cond_init(&blk->idle, NULL);
	if (ret < 0)
		goto err_image;
	for (unsigned int i = 0; i < nq; i++) {
		struct blk_queue *q = &blk->q[i];

		q->blk = blk;
		q->index = i;
		snprintf(q->name, sizeof(q->name), "%s.q%u", blk->id, i);
		q->reqs = calloc(BLK_QUEUE_SIZE, sizeof(*q->reqs));
		if (!q->reqs) {
			ret = -ENOMEM;
			snprintf(err, errlen, "disk %s: %s", opts->path, strerror(ENOMEM));
			goto err_queues;
		}
		for (unsigned int j = BLK_QUEUE_SIZE; j-- > 0;) {
			q->reqs[j].q = q;
			req_free(q, &q->reqs[j]);
		}
		blk->vd.vqs[i].max_size = BLK_QUEUE_SIZE;
	}
	blk->vd.id = blk->id;
	blk->vd.device_type = VIRTIO_ID_BLOCK;
	blk->vd.ops = &blk_ops;
	blk->vd.nr_vqs = nq;		/* the transport sizes notify area and MSI-X (nq + 1) on it */
	blk->vd.config_len = offsetof(struct virtio_blk_config, max_secure_erase_sectors);
	blk->vd.mem = mem;
	blk->vd.opaque = blk;
	{
		struct virtio_pci_env e = *env;

		if (!e.class_code)
			e.class_code = 0x010000;	/* mass storage, SCSI-class as QEMU's */
		ret = virtio_pci_add(&e, &blk->vd, &blk->vp);
	}
	if (ret < 0) {
		snprintf(err, errlen, "disk %s: virtio-pci: %s", opts->path, strerror(-ret));
		goto err_queues;
	}
	blk->hook = (struct ev_hook){ .fn = blk_before_wait, .opaque = blk };
	evloop_before_wait_add(env->loop, &blk->hook);
	log_info("%s: %s, %" PRIu64 " sectors, block %u/%u, %u queue%s%s%s", blk->id, opts->path,
		 blk->capacity, image_block_size(blk->img), image_physical_block_size(blk->img),
		 nq, nq > 1 ? "s" : "", blk->read_only ? ", read-only" : "",
		 image_direct(blk->img) ? ", O_DIRECT" : "");
	*out = blk;
	return 0;

err_queues:
	for (unsigned int i = 0; i < nq; i++)
		free(blk->q[i].reqs);
	pthread_cond_destroy(&blk->idle);
err_image:
	image_close(blk->img);
err_free:
	free(blk->q);
	free(blk);
	return ret;
}

void virtio_blk_destroy(struct virtio_blk *blk)
{
	int ret;

	if (!blk)
		return;
	pthread_mutex_lock(&blk->vd.lock);
	blk->quiesced = true;
	ret = drain_locked(blk, BLK_DRAIN_MS);
	pthread_mutex_unlock(&blk->vd.lock);
	{
		const struct virtio_blk_stats *s = &blk->st;
		struct image_stats is;

		image_get_stats(blk->img, &is);

		/* Lifecycle summary: what the guest did to the disk (tests assert on it). */
		log_info("%s: stop: read %" PRIu64 "/%" PRIu64 " B, write %" PRIu64 "/%" PRIu64
			 " B, flush %" PRIu64 ", discard %" PRIu64 "/%" PRIu64 " B, write-zeroes %"
			 PRIu64 "/%" PRIu64 " B, get-id %" PRIu64 ", ioerr %" PRIu64 ", unsupp %" PRIu64 ", direct/buffered %"
			 PRIu64 "/%" PRIu64,
			 blk->id, s->read_reqs, s->read_bytes, s->write_reqs, s->write_bytes,
			 s->flush_reqs, s->discard_reqs, s->discard_bytes, s->write_zeroes_reqs,
			 s->write_zeroes_bytes, s->get_id_reqs, s->ioerr, s->unsupp, is.direct_ops,
			 is.buffered_ops);
		if (blk->nr_queues > 1) {
			char per[BLK_MAX_QUEUES * 24];
			size_t at = 0;

			/* Its own line: the one above is parsed by tests, field by field. */
			for (unsigned int i = 0; i < blk->nr_queues && at < sizeof(per); i++)
				at += (size_t)snprintf(per + at, sizeof(per) - at, " %" PRIu64,
						       blk->q[i].completed);
			log_info("%s: queues %u, requests completed per queue:%s", blk->id,
				 blk->nr_queues, per);
		}
	}
	evloop_before_wait_del(blk->loop, &blk->hook);
	virtio_pci_remove(blk->vp);
	if (ret < 0) {
		/* The kernel still owns buffers of ours: leak them rather than free under it. */
		log_err("%s: %" PRIu64 " requests stuck in flight; leaking the device", blk->id,
			blk->inflight);
		return;
	}
	for (unsigned int i = 0; i < blk->nr_queues; i++)
		free(blk->q[i].reqs);
	pthread_cond_destroy(&blk->idle);
	image_close(blk->img);
	free(blk->q);
	free(blk);
}

void virtio_blk_stats(struct virtio_blk *blk, struct virtio_blk_stats *st)
{
	pthread_mutex_lock(&blk->vd.lock);
	*st = blk->st;
	st->inflight = blk->inflight;
	st->capacity = blk->capacity;
	st->num_queues = blk->nr_queues;
	for (unsigned int i = 0; i < blk->nr_queues; i++)
		st->queue_reqs[i] = blk->q[i].completed;
	st->read_only = blk->read_only;
	st->direct = image_direct(blk->img);
	pthread_mutex_unlock(&blk->vd.lock);
}

const char *virtio_blk_id(const struct virtio_blk *blk)
{
	return blk->id;
}
