// SPDX-License-Identifier: MIT
/*
 * virtio-balloon (virtio 1.2 §5.5). Queues: 0 inflateq, 1 deflateq, 2 statsq (only with
 * VIRTIO_BALLOON_F_STATS_VQ; Linux numbers the queues it uses densely, and it always uses the
 * first two). Features offered: STATS_VQ and, by default, DEFLATE_ON_OOM; no free page
 * hinting/reporting yet. Configuration space: num_pages (the balloon size the host wants, in
 * 4 KiB pages; read-only for the driver) and actual (what the driver holds; driver-written).
 *
 * Inflate: each buffer is an array of le32 PFNs (4 KiB units, whatever the guest's page size).
 * The PFNs are copied out of guest RAM once, every one is checked to lie inside guest RAM, and
 * only then are the pages released: a hole is punched in the memfd that backs RAM
 * (fallocate(PUNCH_HOLE), which also unmaps the pages from every mapping, KVM's included
 * through its MMU notifier). MADV_DONTNEED would not do: on a MAP_SHARED memfd it only drops
 * this process's page-table entries and the page cache keeps the pages. A released page reads
 * as zero the next time anyone touches it. Deflate needs no host work (the guest may use the
 * pages again at once: MUST_TELL_HOST is not offered); it is counted.
 *
 * Stats (§5.5.6.3): the driver posts one device-readable buffer of 10-byte {le16 tag, le64 val}
 * entries. The device keeps it (popped, not used); to ask for fresh values it returns it
 * (used, length 0), and the driver refills and posts it again. A timer on the event loop does
 * that every stats_interval_ns; the last values and their time are kept for balloon-info.
 *
 * Hostile guests: a PFN buffer that is writable, not a multiple of 4 bytes, longer than
 * BALLOON_MAX_PFNS entries or naming a page outside RAM, and a stats buffer that is writable,
 * not a multiple of 10 bytes or longer than BALLOON_MAX_STATS entries, put the device in
 * DEVICE_NEEDS_RESET (logged, rate-limited) without releasing anything from that buffer.
 *
 * Threading: queue_notify runs on the main loop with vd.lock held (the transport takes it);
 * config access, activate and reset run on vCPU threads under the same lock. The stats timer
 * and the ctl commands run on the main loop and take vd.lock. Hole punching is a synchronous
 * syscall on the main loop: at most BALLOON_MAX_PFNS pages per buffer (64 MiB).
 */
#define LOG_TAG "virtio-balloon"
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include <linux/falloc.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_ring.h>

#include "vmm/ctl.h"
#include "vmm/lib/evloop.h"
#include "vmm/lib/log.h"
#include "vmm/memory.h"
#include "vmm/state.h"
#include "vmm/virtio/balloon.h"
#include "vmm/virtio/pci.h"
#include "vmm/virtio/pci_state.h"
#include "vmm/virtio/queue.h"

enum { BALLOON_Q_INFLATE, BALLOON_Q_DEFLATE, BALLOON_Q_STATS };

#define BALLOON_QUEUE_SIZE	128
#define BALLOON_STATS_QSIZE	8
#define BALLOON_MAX_SEGS	16
/* Linux sends at most 256 PFNs per buffer; 16 Ki PFNs (64 KiB of array, 64 MiB of RAM) bounds
 * the main loop's time per buffer and the copy buffer. */
#define BALLOON_MAX_PFNS	16384u
/* Linux 6.12 sends 16 tags; unknown ones are accepted, so leave room. */
#define BALLOON_MAX_STATS	64u
#define BALLOON_STAT_SIZE	10u	/* le16 tag + le64 value, packed */
#define BALLOON_CONFIG_LEN	8u	/* num_pages, actual (no FREE_PAGE_HINT/PAGE_POISON) */

struct virtio_balloon {
	struct virtio_dev vd;		/* vd.lock protects everything below unless noted */
	struct vq vqs[BALLOON_NR_VQS];
	char qname[BALLOON_NR_VQS][48];
	struct virtio_pci *vp;
	struct guest_mem *mem;		/* immutable after create */
	struct evloop *loop;		/* NULL: no stats timer */
	bool offer_deflate_on_oom;

	uint32_t num_pages;		/* config: target balloon size, host-set */
	uint32_t actual;		/* config: driver-reported balloon size */

	bool stats_held;		/* we hold the driver's stats buffer ... */
	uint16_t stats_head;		/* ... with this head descriptor */
	uint64_t stats[BALLOON_S_NR];
	uint32_t stats_valid;
	uint64_t stats_time_ns, stats_updates;
	uint64_t stats_interval_ns;	/* written on the loop thread, under the lock */

	uint64_t inflate_pages, deflate_pages, released_bytes, release_errors;

	/* loop thread only */
	struct ev_req stats_timer;
	bool destroying;

	/* scratch for one buffer's validated copy (vd.lock) */
	uint32_t pfns[BALLOON_MAX_PFNS];
	uint8_t statbuf[BALLOON_MAX_STATS * BALLOON_STAT_SIZE];
};

static const char *const stat_names[BALLOON_S_NR] = {
	[BALLOON_S_SWAP_IN] = "swap_in",
	[BALLOON_S_SWAP_OUT] = "swap_out",
	[BALLOON_S_MAJFLT] = "major_faults",
	[BALLOON_S_MINFLT] = "minor_faults",
	[BALLOON_S_MEMFREE] = "free_memory",
	[BALLOON_S_MEMTOT] = "total_memory",
	[BALLOON_S_AVAIL] = "available_memory",
	[BALLOON_S_CACHES] = "disk_caches",
	[BALLOON_S_HTLB_PGALLOC] = "hugetlb_allocations",
	[BALLOON_S_HTLB_PGFAIL] = "hugetlb_failures",
	[BALLOON_S_OOM_KILL] = "oom_kills",
	[BALLOON_S_ALLOC_STALL] = "alloc_stalls",
	[BALLOON_S_ASYNC_SCAN] = "async_scans",
	[BALLOON_S_DIRECT_SCAN] = "direct_scans",
	[BALLOON_S_ASYNC_RECLAIM] = "async_reclaims",
	[BALLOON_S_DIRECT_RECLAIM] = "direct_reclaims",
};

const char *virtio_balloon_stat_name(unsigned int tag)
{
	return tag < BALLOON_S_NR ? stat_names[tag] : NULL;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t ram_pages(const struct virtio_balloon *b)
{
	return b->mem->size / BALLOON_PAGE_SIZE;
}

/* ---- inflate / deflate ---- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Give [pfn, pfn + count) back to the host. The range was checked to be in guest RAM. */
static void release_range(struct virtio_balloon *b, uint32_t pfn, uint32_t count)
{
	uint64_t gpa = (uint64_t)pfn * BALLOON_PAGE_SIZE, len = (uint64_t)count * BALLOON_PAGE_SIZE;
	uint8_t *hva = guest_mem_ptr(b->mem, gpa, len);
	off_t off;

	if (!hva) {
		/* A run that crosses a RAM region boundary: do it page by page. */
		for (uint32_t i = 0; i < count; i++)
			release_range(b, pfn + i, 1);
		return;
	}
	/* The whole memfd is mapped linearly at mem->base, so the file offset is the hva's. */
	off = (off_t)(hva - (uint8_t *)b->mem->base);
	if (fallocate(b->mem->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, (off_t)len) < 0 &&
	    madvise(hva, len, MADV_REMOVE) < 0) {
		b->release_errors++;
		log_ratelimited(LOG_WARN, "%s: releasing %" PRIu64 " KiB at gpa 0x%" PRIx64 ": %s",
				b->vd.id, len >> 10, gpa, strerror(errno));
		return;
	}
	b->released_bytes += len;
	/*
	 * The page changed (it reads as zero now) without a vCPU write, so KVM's dirty log does
	 * not see it: tell migration, which then sends it as a hole/zero page.
	 */
	guest_mem_mark_dirty(b->mem, gpa, len);
}

/* Release @n sorted-by-us PFNs, coalescing runs (duplicates fold into their run). */
static void release_pfns(struct virtio_balloon *b, uint32_t *pfns, unsigned int n)
{
	unsigned int i = 0;

	qsort(pfns, n, sizeof(*pfns), cmp_u32);
	while (i < n) {
		uint32_t start = pfns[i], end = start + 1;

		for (i++; i < n && (pfns[i] == end || pfns[i] == end - 1); i++)
			end = pfns[i] + 1;
		release_range(b, start, end - start);
	}
}

/* One inflateq/deflateq buffer. 0, or -EINVAL when the guest broke the protocol. */
static int handle_pfn_chain(struct virtio_balloon *b, const struct vq_chain *ch, bool inflate)
{
	const char *q = inflate ? "inflate" : "deflate";
	unsigned int n, i;

	if (ch->n_out != ch->n) {
		log_ratelimited(LOG_WARN, "%s: %s buffer %u has device-writable descriptors",
				b->vd.id, q, ch->head);
		return -EINVAL;
	}
	if (ch->out_len % sizeof(uint32_t) || ch->out_len > sizeof(b->pfns)) {
		log_ratelimited(LOG_WARN, "%s: %s buffer %u: %u bytes is not an array of 1..%u le32 PFNs",
				b->vd.id, q, ch->head, ch->out_len, BALLOON_MAX_PFNS);
		return -EINVAL;
	}
	n = ch->out_len / sizeof(uint32_t);
	/* One copy, validated and then used: the guest cannot change a PFN after the check. */
	if (vq_chain_copy_from(ch, 0, b->pfns, ch->out_len) != ch->out_len)
		return -EINVAL;		/* cannot happen: out_len is the chain's readable size */
	for (i = 0; i < n; i++) {
		b->pfns[i] = le32toh(b->pfns[i]);
		if (!guest_mem_ptr(b->mem, (uint64_t)b->pfns[i] * BALLOON_PAGE_SIZE, BALLOON_PAGE_SIZE)) {
			log_ratelimited(LOG_WARN, "%s: %s buffer %u: PFN 0x%x is outside guest RAM",
					b->vd.id, q, ch->head, b->pfns[i]);
			return -EINVAL;
		}
	}
	if (inflate) {
		release_pfns(b, b->pfns, n);
		b->inflate_pages += n;
	} else {
		b->deflate_pages += n;
	}
	return 0;
}

static void process_pfn_queue(struct virtio_balloon *b, unsigned int q)
{
	struct vq *vq = &b->vqs[q];
	struct vq_seg segs[BALLOON_MAX_SEGS];
	struct vq_chain ch = { .segs = segs, .cap = BALLOON_MAX_SEGS };
	int ret;

	do {
		vq_disable_notify(vq);
		while ((ret = vq_pop(vq, &ch)) > 0) {
			ret = handle_pfn_chain(b, &ch, q == BALLOON_Q_INFLATE);
			if (ret < 0)
				break;
			vq_push(vq, &ch, 0);
		}
		if (ret < 0) {
			virtio_dev_needs_reset(&b->vd);
			return;
		}
	} while (vq_enable_notify(vq));
	if (vq_should_notify(vq))
		virtio_dev_notify(&b->vd, q);
}

/* ---- stats ---- */

/* Hand the held stats buffer back (used, length 0): "please refill". Lock held. */
static int return_stats_locked(struct virtio_balloon *b)
{
	struct vq *vq = &b->vqs[BALLOON_Q_STATS];
	struct vq_chain ch = { .head = b->stats_head };

	if (!b->stats_held || !b->vd.active || !vq_enabled(vq) || vq_broken(vq))
		return -EAGAIN;
	b->stats_held = false;
	vq_push(vq, &ch, 0);
	if (vq_should_notify(vq))
		virtio_dev_notify(&b->vd, BALLOON_Q_STATS);
	return 0;
}

/* A (re)filled stats buffer. 0, or -EINVAL when malformed. */
static int handle_stats_chain(struct virtio_balloon *b, const struct vq_chain *ch)
{
	uint64_t vals[BALLOON_S_NR] = { 0 };
	uint32_t valid = 0;
	unsigned int n, i;

	if (ch->n_out != ch->n || ch->out_len % BALLOON_STAT_SIZE ||
	    ch->out_len > sizeof(b->statbuf)) {
		log_ratelimited(LOG_WARN, "%s: stats buffer %u: %u bytes%s, not an array of up to %u "
				"10-byte entries", b->vd.id, ch->head, ch->out_len,
				ch->n_out != ch->n ? " with writable descriptors" : "",
				BALLOON_MAX_STATS);
		return -EINVAL;
	}
	n = ch->out_len / BALLOON_STAT_SIZE;
	if (vq_chain_copy_from(ch, 0, b->statbuf, ch->out_len) != ch->out_len)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		const uint8_t *e = b->statbuf + i * BALLOON_STAT_SIZE;
		uint16_t tag;
		uint64_t val;

		memcpy(&tag, e, 2);
		memcpy(&val, e + 2, 8);
		tag = le16toh(tag);
		if (tag >= BALLOON_S_NR)
			continue;	/* a newer driver's tag: allowed (§5.5.6.3.1) */
		vals[tag] = le64toh(val);
		valid |= 1u << tag;
	}
	memcpy(b->stats, vals, sizeof(vals));
	b->stats_valid = valid;
	b->stats_time_ns = realtime_ns();
	b->stats_updates++;
	return 0;
}

static void process_stats_queue(struct virtio_balloon *b)
{
	struct vq *vq = &b->vqs[BALLOON_Q_STATS];
	struct vq_seg segs[BALLOON_MAX_SEGS];
	struct vq_chain ch = { .segs = segs, .cap = BALLOON_MAX_SEGS };
	bool pushed = false;
	int ret;

	/*
	 * The same disable/pop/re-enable loop as the PFN queues even though buffers are held,
	 * not used: re-enabling publishes avail_event (EVENT_IDX), without which the driver
	 * would never kick for its refills after the first.
	 */
	do {
		vq_disable_notify(vq);
		while ((ret = vq_pop(vq, &ch)) > 0) {
			ret = handle_stats_chain(b, &ch);
			if (ret < 0)
				break;
			if (b->stats_held) {
				/*
				 * A second buffer while we hold one: the driver broke §5.5.6.3
				 * but nothing is at risk. Give the older one back (as QEMU
				 * does) and keep the newest.
				 */
				struct vq_chain old = { .head = b->stats_head };

				log_ratelimited(LOG_DBG, "%s: second stats buffer, returning %u",
						b->vd.id, b->stats_head);
				vq_push(vq, &old, 0);
				pushed = true;
			}
			b->stats_held = true;
			b->stats_head = ch.head;
		}
		if (ret < 0) {
			virtio_dev_needs_reset(&b->vd);
			return;
		}
	} while (vq_enable_notify(vq));
	if (pushed && vq_should_notify(vq))
		virtio_dev_notify(&b->vd, BALLOON_Q_STATS);
}

static void arm_stats_timer(struct virtio_balloon *b)
{
	uint64_t ns;
	int ret;

	pthread_mutex_lock(&b->vd.lock);
	ns = b->stats_interval_ns;
	pthread_mutex_unlock(&b->vd.lock);
	if (!b->loop || !ns || b->destroying || ev_req_busy(&b->stats_timer))
		return;
	ret = evloop_timeout(b->loop, &b->stats_timer, ns);
	if (ret < 0)
		log_err("%s: stats timer: %s", b->vd.id, strerror(-ret));
}

/* Loop thread: ask for fresh stats, then re-arm (also after a cancel: the interval changed). */
static void stats_timer_cb(struct evloop *l, struct ev_req *req, int res)
{
	struct virtio_balloon *b = req->opaque;

	(void)l;
	if (b->destroying)
		return;
	if (res == 0) {
		pthread_mutex_lock(&b->vd.lock);
		return_stats_locked(b);
		pthread_mutex_unlock(&b->vd.lock);
	}
	arm_stats_timer(b);
}

/* ---- virtio_dev_ops ---- */

static uint64_t balloon_features(struct virtio_dev *vd)
{
	struct virtio_balloon *b = vd->opaque;
	uint64_t f = (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VIRTIO_RING_F_INDIRECT_DESC) |
		     (1ull << VIRTIO_BALLOON_F_STATS_VQ);

	if (b->offer_deflate_on_oom)
		f |= 1ull << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
	return f;
}

static void config_image(const struct virtio_balloon *b, uint8_t img[BALLOON_CONFIG_LEN])
{
	uint32_t v = htole32(b->num_pages);

	memcpy(img, &v, 4);
	v = htole32(b->actual);
	memcpy(img + 4, &v, 4);
}

static void balloon_config_read(struct virtio_dev *vd, uint32_t off, void *data, uint32_t len)
{
	uint8_t img[BALLOON_CONFIG_LEN];

	config_image(vd->opaque, img);
	memcpy(data, img + off, len);	/* the transport checked off + len <= config_len */
}

static void balloon_config_write(struct virtio_dev *vd, uint32_t off, const void *data, uint32_t len)
{
	struct virtio_balloon *b = vd->opaque;
	uint8_t img[BALLOON_CONFIG_LEN];
	uint32_t v;

	/* Only actual (bytes 4..7) is the driver's; num_pages is read-only for it. */
	if (off < 4) {
		log_ratelimited(LOG_DBG, "%s: driver wrote num_pages, ignored", vd->id);
		if (off + len <= 4)
			return;
		data = (const uint8_t *)data + (4 - off);
		len -= 4 - off;
		off = 4;
	}
	config_image(b, img);
	memcpy(img + off, data, len);
	memcpy(&v, img + 4, 4);
	b->actual = le32toh(v);
}

static int balloon_activate(struct virtio_dev *vd)
{
	struct virtio_balloon *b = vd->opaque;
	unsigned int nq = virtio_dev_has_feature(vd, VIRTIO_BALLOON_F_STATS_VQ) ? 3 : 2;

	for (unsigned int q = 0; q < BALLOON_NR_VQS; q++)
		vq_reset(&b->vqs[q]);
	b->stats_held = false;
	for (unsigned int q = 0; q < nq; q++) {
		const struct virtio_queue_cfg *c = &vd->vqs[q];
		struct vq_config cfg = {
			.name = b->qname[q],
			.size = c->size,
			.desc = c->desc,
			.avail = c->driver,
			.used = c->device,
			.event_idx = virtio_dev_has_feature(vd, VIRTIO_RING_F_EVENT_IDX),
			.indirect = virtio_dev_has_feature(vd, VIRTIO_RING_F_INDIRECT_DESC),
		};
		int ret;

		if (!c->enabled)
			continue;	/* kicks for it are ignored */
		ret = vq_init(&b->vqs[q], vd->mem, &cfg);
		if (ret < 0)
			return ret;
	}
	/*
	 * Linux queues its first statistics buffer and kicks in probe, before DRIVER_OK, and that
	 * kick was ignored (device not live yet). Signal the queue's eventfd so the main loop
	 * looks at the ring now, as if the driver had kicked (it runs after we return and the
	 * transport has marked the device live). An eventfd write only: no device work here.
	 */
	if (nq == 3 && vd->vqs[BALLOON_Q_STATS].enabled) {
		struct virtio_pci *vp = vd->transport;
		const uint64_t one = 1;

		if (vp && vp->notify[BALLOON_Q_STATS].ioev.fd >= 0 &&
		    write(vp->notify[BALLOON_Q_STATS].ioev.fd, &one, sizeof(one)) < 0)
			log_ratelimited(LOG_WARN, "%s: statsq: replaying the kick: %s", vd->id,
					strerror(errno));
	}
	return 0;
}

static void balloon_queue_notify(struct virtio_dev *vd, unsigned int q)
{
	struct virtio_balloon *b = vd->opaque;

	if (q >= BALLOON_NR_VQS || !vq_enabled(&b->vqs[q])) {
		/* e.g. statsq enabled without STATS_VQ negotiated: not a queue of this device */
		log_ratelimited(LOG_DBG, "%s: kick for queue %u, not in use", vd->id, q);
		return;
	}
	if (q == BALLOON_Q_STATS)
		process_stats_queue(b);
	else
		process_pfn_queue(b, q);
}

static void balloon_reset(struct virtio_dev *vd)
{
	struct virtio_balloon *b = vd->opaque;

	for (unsigned int q = 0; q < BALLOON_NR_VQS; q++)
		vq_reset(&b->vqs[q]);
	b->stats_held = false;
	/* A reset driver holds no pages; the target (the host's wish) stays. */
	b->actual = 0;
}

static const struct state_ops balloon_state_ops;

static const struct virtio_dev_ops balloon_ops = {
	.features = balloon_features,
	.config_read = balloon_config_read,
	.config_write = balloon_config_write,
	.activate = balloon_activate,
	.queue_notify = balloon_queue_notify,
	.reset = balloon_reset,
	.state = &balloon_state_ops,
};

/* ---- host-side control ---- */

int virtio_balloon_set_target(struct virtio_balloon *b, uint64_t guest_bytes)
{
	uint64_t pages;

	if (guest_bytes > b->mem->size)
		return -EINVAL;
	pages = ram_pages(b) - guest_bytes / BALLOON_PAGE_SIZE;
	if (pages > UINT32_MAX)
		return -EINVAL;
	pthread_mutex_lock(&b->vd.lock);
	if (b->num_pages != pages) {
		b->num_pages = (uint32_t)pages;
		/* A live driver re-reads the config on the interrupt; others read it at probe. */
		if ((b->vd.status & VIRTIO_CONFIG_S_DRIVER_OK) &&
		    !(b->vd.status & VIRTIO_CONFIG_S_NEEDS_RESET))
			virtio_dev_config_changed(&b->vd);
	}
	pthread_mutex_unlock(&b->vd.lock);
	log_dbg("%s: target %" PRIu64 " MiB (balloon %" PRIu64 " pages)", b->vd.id,
		guest_bytes >> 20, pages);
	return 0;
}

int virtio_balloon_set_stats_interval(struct virtio_balloon *b, uint64_t ns)
{
	if (!b->loop)
		return ns ? -EINVAL : 0;
	pthread_mutex_lock(&b->vd.lock);
	b->stats_interval_ns = ns;
	pthread_mutex_unlock(&b->vd.lock);
	if (ev_req_busy(&b->stats_timer))
		evloop_cancel(b->loop, &b->stats_timer);	/* its callback re-arms */
	else
		arm_stats_timer(b);
	return 0;
}

int virtio_balloon_request_stats(struct virtio_balloon *b)
{
	int ret;

	pthread_mutex_lock(&b->vd.lock);
	ret = return_stats_locked(b);
	pthread_mutex_unlock(&b->vd.lock);
	return ret;
}

void virtio_balloon_get_info(struct virtio_balloon *b, struct virtio_balloon_info *info)
{
	const struct virtio_dev *vd = &b->vd;
	uint64_t ram = b->mem->size;
	struct stat st;

	memset(info, 0, sizeof(*info));
	pthread_mutex_lock(&b->vd.lock);
	info->ram_bytes = ram;
	info->num_pages = b->num_pages;
	info->actual = b->actual;
	info->driver_ok = vd->active && !(vd->status & VIRTIO_CONFIG_S_NEEDS_RESET);
	info->needs_reset = vd->status & VIRTIO_CONFIG_S_NEEDS_RESET;
	info->stats_vq = vd->active && virtio_dev_has_feature(vd, VIRTIO_BALLOON_F_STATS_VQ);
	info->deflate_on_oom = vd->active && virtio_dev_has_feature(vd, VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
	memcpy(info->stats, b->stats, sizeof(info->stats));
	info->stats_valid = b->stats_valid;
	info->stats_updates = b->stats_updates;
	info->stats_time_ns = b->stats_time_ns;
	info->stats_interval_ns = b->stats_interval_ns;
	info->inflate_pages = b->inflate_pages;
	info->deflate_pages = b->deflate_pages;
	info->released_bytes = b->released_bytes;
	info->release_errors = b->release_errors;
	pthread_mutex_unlock(&b->vd.lock);
	info->target_bytes = ram - (uint64_t)info->num_pages * BALLOON_PAGE_SIZE;
	info->actual_bytes = (uint64_t)info->actual * BALLOON_PAGE_SIZE >= ram ? 0 :
			     ram - (uint64_t)info->actual * BALLOON_PAGE_SIZE;
	info->host_ram_bytes = fstat(b->mem->memfd, &st) == 0 ? (int64_t)st.st_blocks * 512 : -1;
}

/* ---- control socket ---- */

static int cmd_balloon_set(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	struct virtio_balloon *b = opaque;
	json_object *mib = NULL, *bytes = NULL, *ival = NULL;
	uint64_t target = 0;
	int err;

	json_object_object_get_ex(args, "target_mib", &mib);
	json_object_object_get_ex(args, "target_bytes", &bytes);
	json_object_object_get_ex(args, "stats_interval_ms", &ival);
	if (!mib && !bytes && !ival)
		return ctl_call_error(call, CTL_ERR_ARGUMENT,
				      "give target_mib, target_bytes or stats_interval_ms");
	if (mib && bytes)
		return ctl_call_error(call, CTL_ERR_ARGUMENT, "give target_mib or target_bytes, not both");
	if (mib || bytes) {
		int64_t v = json_object_get_int64(mib ? mib : bytes);

		/* Compare before scaling: a huge target_mib must not wrap into range. */
		if (v < 0 || (uint64_t)v > (mib ? b->mem->size >> 20 : b->mem->size))
			return ctl_call_error(call, CTL_ERR_ARGUMENT,
					      "target must be 0..%" PRIu64 " MiB (guest RAM)",
					      b->mem->size >> 20);
		target = mib ? (uint64_t)v << 20 : (uint64_t)v;
	}
	if (ival) {
		int64_t ms = json_object_get_int64(ival);

		if (ms < 0 || ms > 24 * 3600 * 1000)
			return ctl_call_error(call, CTL_ERR_ARGUMENT, "stats_interval_ms must be 0..86400000");
		if (ms && !b->loop)
			return ctl_call_error(call, CTL_ERR_STATE, "no event loop for a stats timer");
	}
	/* All arguments checked: now apply. */
	if (mib || bytes) {
		err = virtio_balloon_set_target(b, target);
		if (err < 0)
			return ctl_call_error(call, CTL_ERR_ARGUMENT, "target %" PRIu64 " bytes: %s",
					      target, strerror(-err));
	}
	if (ival) {
		err = virtio_balloon_set_stats_interval(b, (uint64_t)json_object_get_int64(ival) * 1000000ull);
		if (err < 0)
			return err;
	}
	{
		struct virtio_balloon_info in;

		virtio_balloon_get_info(b, &in);
		json_object_object_add(ret, "target_bytes", json_object_new_int64((int64_t)in.target_bytes));
		json_object_object_add(ret, "num_pages", json_object_new_int64(in.num_pages));
		json_object_object_add(ret, "stats_interval_ms",
				       json_object_new_int64((int64_t)(in.stats_interval_ns / 1000000)));
	}
	return 0;
}

static int cmd_balloon_info(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	struct virtio_balloon_info in;
	json_object *stats;

	(void)call;
	(void)args;
	virtio_balloon_get_info(opaque, &in);
#define ADD(k, v) json_object_object_add(ret, k, json_object_new_int64((int64_t)(v)))
	ADD("target_bytes", in.target_bytes);
	ADD("actual_bytes", in.actual_bytes);
	ADD("ram_bytes", in.ram_bytes);
	ADD("num_pages", in.num_pages);
	ADD("actual_pages", in.actual);
	json_object_object_add(ret, "driver_ok", json_object_new_boolean(in.driver_ok));
	json_object_object_add(ret, "needs_reset", json_object_new_boolean(in.needs_reset));
	json_object_object_add(ret, "stats_vq", json_object_new_boolean(in.stats_vq));
	json_object_object_add(ret, "deflate_on_oom", json_object_new_boolean(in.deflate_on_oom));
	ADD("stats_interval_ms", in.stats_interval_ns / 1000000);
	ADD("host_ram_bytes", in.host_ram_bytes);
	ADD("inflated_pages", in.inflate_pages);
	ADD("deflated_pages", in.deflate_pages);
	ADD("released_bytes", in.released_bytes);
	ADD("release_errors", in.release_errors);
	ADD("stats_updates", in.stats_updates);
#undef ADD
	stats = json_object_new_object();
	for (unsigned int t = 0; t < BALLOON_S_NR; t++)
		if (in.stats_valid & (1u << t))
			json_object_object_add(stats, stat_names[t],
					       json_object_new_int64((int64_t)in.stats[t]));
	json_object_object_add(ret, "stats", stats);
	if (in.stats_time_ns) {
		json_object *ts = json_object_new_object();

		json_object_object_add(ts, "seconds",
				       json_object_new_int64((int64_t)(in.stats_time_ns / 1000000000ull)));
		json_object_object_add(ts, "microseconds",
				       json_object_new_int64((int64_t)(in.stats_time_ns % 1000000000ull / 1000)));
		json_object_object_add(ret, "last_update", ts);
	} else {
		json_object_object_add(ret, "last_update", NULL);
	}
	return 0;
}

static const struct ctl_arg balloon_set_args[] = {
	{ "target_mib", CTL_ARG_INT, false },
	{ "target_bytes", CTL_ARG_INT, false },
	{ "stats_interval_ms", CTL_ARG_INT, false },
	{ NULL, 0, false },
};

static const struct ctl_arg no_args[] = { { NULL, 0, false } };

static const struct ctl_cmd balloon_cmds[] = {
	{ "balloon-set", balloon_set_args, cmd_balloon_set,
	  "set the guest's memory target (target_mib/target_bytes) and/or the stats period" },
	{ "balloon-info", no_args, cmd_balloon_info,
	  "balloon target, actual size, guest memory statistics and their time" },
};

int virtio_balloon_ctl_register(struct virtio_balloon *b, struct ctl_server *srv)
{
	return ctl_server_register(srv, balloon_cmds, sizeof(balloon_cmds) / sizeof(balloon_cmds[0]), b);
}

/* ---- state ---- */

void virtio_balloon_save(struct virtio_balloon *b, struct virtio_balloon_state *st)
{
	virtio_pci_save(b->vp, &st->transport);
	pthread_mutex_lock(&b->vd.lock);
	for (unsigned int q = 0; q < BALLOON_NR_VQS; q++)
		vq_save(&b->vqs[q], &st->vq[q]);
	st->num_pages = b->num_pages;
	st->actual = b->actual;
	st->stats_held = b->stats_held;
	st->stats_head = b->stats_held ? b->stats_head : 0;
	st->stats_valid = b->stats_valid;
	memcpy(st->stats, b->stats, sizeof(st->stats));
	st->stats_time_ns = b->stats_time_ns;
	st->stats_updates = b->stats_updates;
	pthread_mutex_unlock(&b->vd.lock);
}

/* Checks on @st alone (before the transport load changes the device). */
static int check_state(const struct virtio_balloon *b, const struct virtio_balloon_state *st)
{
	if (st->num_pages > ram_pages(b)) {
		log_err("%s: saved target of %u pages is more than guest RAM", b->vd.id, st->num_pages);
		return -EINVAL;
	}
	if (st->stats_valid >> BALLOON_S_NR)
		return -EINVAL;
	for (unsigned int q = 0; q < BALLOON_NR_VQS; q++) {
		const struct vq_state *v = &st->vq[q];
		const struct virtio_pci_queue_state *t = &st->transport.q[q];
		uint16_t inflight = (uint16_t)(v->last_avail_idx - v->used_idx);
		uint16_t want = q == BALLOON_Q_STATS && st->stats_held ? 1 : 0;
		bool in_use = (st->transport.status & VIRTIO_CONFIG_S_DRIVER_OK) &&
			      !(st->transport.status & VIRTIO_CONFIG_S_NEEDS_RESET) &&
			      q < st->transport.nr_vqs && t->enabled &&
			      (q != BALLOON_Q_STATS ||
			       (st->transport.acked_features & (1ull << VIRTIO_BALLOON_F_STATS_VQ)));

		/* A live queue's indices must come along, and describe the transport's ring. */
		if (in_use != !!v->enabled ||
		    (in_use && (v->size != t->size || v->desc != t->desc ||
				v->avail != t->driver || v->used != t->device))) {
			log_err("%s: saved queue %u does not match the transport state", b->vd.id, q);
			return -EINVAL;
		}
		if (!v->enabled)
			continue;
		/* PFN buffers complete at once; only the stats buffer is ever held. */
		if (inflight != want) {
			log_err("%s: saved queue %u has %u buffers in flight, expected %u",
				b->vd.id, q, inflight, want);
			return -EINVAL;
		}
	}
	if (st->stats_held && (!st->vq[BALLOON_Q_STATS].enabled ||
			       st->stats_head >= st->vq[BALLOON_Q_STATS].size)) {
		log_err("%s: saved stats buffer %u does not fit the stats queue", b->vd.id, st->stats_head);
		return -EINVAL;
	}
	return 0;
}

int virtio_balloon_load(struct virtio_balloon *b, const struct virtio_balloon_state *st)
{
	int ret = check_state(b, st);

	if (ret < 0)
		return ret;
	ret = virtio_pci_load(b->vp, &st->transport);	/* re-activates: fresh queues */
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&b->vd.lock);
	b->num_pages = st->num_pages;
	b->actual = st->actual;
	b->stats_valid = st->stats_valid;
	memcpy(b->stats, st->stats, sizeof(b->stats));
	b->stats_time_ns = st->stats_time_ns;
	b->stats_updates = st->stats_updates;
	b->stats_held = false;
	for (unsigned int q = 0; b->vd.active && q < BALLOON_NR_VQS && ret == 0; q++) {
		const struct vq_state *v = &st->vq[q];
		const struct virtio_queue_cfg *c = &b->vd.vqs[q];

		if (!v->enabled)
			continue;
		/* The ring must be the one the transport state describes, and one we set up. */
		if (!vq_enabled(&b->vqs[q]) || v->size != c->size || v->desc != c->desc ||
		    v->avail != c->driver || v->used != c->device)
			ret = -EINVAL;
		else
			ret = vq_restore(&b->vqs[q], b->vd.mem, v, b->qname[q]);
		if (ret < 0) {
			log_err("%s: saved queue %u state does not match its configuration", b->vd.id, q);
			virtio_dev_needs_reset(&b->vd);
		}
	}
	if (ret == 0 && b->vd.active && st->stats_held) {
		b->stats_held = true;
		b->stats_head = st->stats_head;
	}
	pthread_mutex_unlock(&b->vd.lock);
	/* Buffers the driver posted before the save and we had not seen yet. */
	for (unsigned int q = 0; ret == 0 && q < BALLOON_NR_VQS; q++)
		virtio_pci_kick(b->vp, q);
	return ret;
}

/* ---- state_ops: the plain struct as TLV fields ---- */

enum { BAL_T_TRANSPORT = 1, BAL_T_VQ, BAL_T_NUM_PAGES, BAL_T_ACTUAL, BAL_T_STATS_HELD,
       BAL_T_STATS_HEAD, BAL_T_STATS_VALID, BAL_T_STATS, BAL_T_STATS_TIME, BAL_T_STATS_UPDATES };

static int balloon_state_save(void *opaque, struct state_writer *w)
{
	struct virtio_balloon_state *st = malloc(sizeof(*st));
	const uint16_t R = STATE_F_REQUIRED;
	int ret;

	if (!st)
		return -ENOMEM;
	virtio_balloon_save(opaque, st);
	ret = virtio_pci_state_write_nest(w, BAL_T_TRANSPORT, &st->transport);
	/* A queue nest: its index at tag 1, then virtio_vq_state_write's fields from tag 2. */
	for (unsigned int q = 0; q < BALLOON_NR_VQS; q++)
		virtio_vq_state_write_indexed(w, BAL_T_VQ, (uint8_t)q, &st->vq[q]);
	sw_u32(w, BAL_T_NUM_PAGES, st->num_pages, R);
	sw_u32(w, BAL_T_ACTUAL, st->actual, R);
	sw_u8(w, BAL_T_STATS_HELD, st->stats_held, R);
	sw_u16(w, BAL_T_STATS_HEAD, st->stats_head, R);
	/* The statistics are a host-side record: optional, a reader may drop them. */
	sw_u32(w, BAL_T_STATS_VALID, st->stats_valid, 0);
	sw_u64_array(w, BAL_T_STATS, st->stats, BALLOON_S_NR, 0);
	sw_u64(w, BAL_T_STATS_TIME, st->stats_time_ns, 0);
	sw_u64(w, BAL_T_STATS_UPDATES, st->stats_updates, 0);
	free(st);
	return ret < 0 ? ret : sw_error(w);
}

static int read_vq(struct state_reader *parent, const struct state_field *f,
		   struct virtio_balloon_state *st, unsigned int *seen)
{
	struct vq_state v;
	uint8_t idx;
	int ret = virtio_vq_state_read_indexed(parent, f, &idx, &v);

	if (ret < 0)
		return ret;
	if (idx >= BALLOON_NR_VQS || (*seen & (1u << idx)))
		return -EBADMSG;
	*seen |= 1u << idx;
	st->vq[idx] = v;
	return 0;
}

static int balloon_state_load(void *opaque, struct state_reader *r, uint16_t version)
{
	struct virtio_balloon_state *st = calloc(1, sizeof(*st));
	unsigned int have = 0, vqs = 0;
	struct state_field f;
	int ret;

	(void)version;
	if (!st)
		return -ENOMEM;
	while ((ret = sr_next(r, &f)) > 0) {
		size_t n;

		switch (f.tag) {
		case BAL_T_TRANSPORT:
			ret = virtio_pci_state_read_nest(r, &f, &st->transport);
			break;
		case BAL_T_VQ:		ret = read_vq(r, &f, st, &vqs); break;
		case BAL_T_NUM_PAGES:	ret = sr_u32(&f, &st->num_pages); break;
		case BAL_T_ACTUAL:	ret = sr_u32(&f, &st->actual); break;
		case BAL_T_STATS_HELD:	ret = sr_u8(&f, &st->stats_held); break;
		case BAL_T_STATS_HEAD:	ret = sr_u16(&f, &st->stats_head); break;
		case BAL_T_STATS_VALID:	ret = sr_u32(&f, &st->stats_valid); break;
		case BAL_T_STATS:	ret = sr_u64_array(&f, st->stats, BALLOON_S_NR, &n); break;
		case BAL_T_STATS_TIME:	ret = sr_u64(&f, &st->stats_time_ns); break;
		case BAL_T_STATS_UPDATES: ret = sr_u64(&f, &st->stats_updates); break;
		default:		ret = sr_skip_unknown(r, &f); break;
		}
		if (ret < 0)
			break;
		if (f.tag < 32)
			have |= 1u << f.tag;
	}
	{
		const unsigned int need = 1u << BAL_T_TRANSPORT | 1u << BAL_T_NUM_PAGES |
					  1u << BAL_T_ACTUAL | 1u << BAL_T_STATS_HELD |
					  1u << BAL_T_STATS_HEAD;

		if (ret == 0 && ((have & need) != need || vqs != (1u << BALLOON_NR_VQS) - 1))
			ret = -EBADMSG;
	}
	if (ret == 0 && st->stats_held > 1)
		ret = -EBADMSG;
	if (ret == 0)
		ret = virtio_balloon_load(opaque, st);
	free(st);
	return ret;
}

static const struct state_ops balloon_state_ops = {
	.name = "virtio-balloon",
	.version = 1,
	.min_version = 1,
	.quiesce = NULL,	/* PFN buffers complete at once; the held stats buffer is state */
	.save = balloon_state_save,
	.load = balloon_state_load,
};

int virtio_balloon_register_state(struct virtio_balloon *b, struct state_registry *reg)
{
	return state_register(reg, b->vd.id, &balloon_state_ops, b);
}

/* ---- public ---- */

int virtio_balloon_create(const struct virtio_pci_env *env, struct guest_mem *mem, const char *id,
			  const struct virtio_balloon_opts *opts, struct virtio_balloon **out)
{
	static const char *const qn[BALLOON_NR_VQS] = { "inflate", "deflate", "stats" };
	struct virtio_balloon_opts def = { .stats_interval_ns = BALLOON_DEFAULT_STATS_INTERVAL_NS,
					   .deflate_on_oom = true };
	struct virtio_balloon *b;
	int ret;

	if (!opts)
		opts = &def;
	if (mem->size / BALLOON_PAGE_SIZE > UINT32_MAX)
		return -E2BIG;		/* num_pages is le32: 16 TiB */
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (unsigned int q = 0; q < BALLOON_NR_VQS; q++)
		snprintf(b->qname[q], sizeof(b->qname[q]), "%s.%s", id, qn[q]);
	b->mem = mem;
	b->loop = env->loop;
	b->offer_deflate_on_oom = opts->deflate_on_oom;
	b->stats_interval_ns = env->loop ? opts->stats_interval_ns : 0;
	ev_req_init(&b->stats_timer, stats_timer_cb, b);
	b->vd.id = id;
	b->vd.device_type = VIRTIO_ID_BALLOON;
	b->vd.ops = &balloon_ops;
	b->vd.nr_vqs = BALLOON_NR_VQS;
	b->vd.vqs[BALLOON_Q_INFLATE].max_size = BALLOON_QUEUE_SIZE;
	b->vd.vqs[BALLOON_Q_DEFLATE].max_size = BALLOON_QUEUE_SIZE;
	b->vd.vqs[BALLOON_Q_STATS].max_size = BALLOON_STATS_QSIZE;
	b->vd.config_len = BALLOON_CONFIG_LEN;
	b->vd.mem = mem;
	b->vd.opaque = b;
	ret = virtio_pci_add(env, &b->vd, &b->vp);
	if (ret < 0) {
		free(b);
		return ret;
	}
	arm_stats_timer(b);
	*out = b;
	return 0;
}

void virtio_balloon_destroy(struct virtio_balloon *b)
{
	if (!b)
		return;
	b->destroying = true;
	if (b->loop && ev_req_busy(&b->stats_timer)) {
		evloop_cancel(b->loop, &b->stats_timer);
		/* Bounded drain: the cancel completes within a couple of loop iterations. */
		for (int i = 0; i < 100 && ev_req_busy(&b->stats_timer); i++)
			evloop_run_once(b->loop, 10 * 1000 * 1000);
	}
	virtio_pci_remove(b->vp);
	free(b);
}
