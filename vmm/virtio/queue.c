// SPDX-License-Identifier: MIT
/*
 * Split virtqueue walker (contract in queue.h; virtio 1.2 §2.7). Ring layout, all
 * little-endian, offsets from each ring's guest-physical base:
 *
 *   desc:  size x { le64 addr; le32 len; le16 flags; le16 next; }           16*size bytes
 *   avail: le16 flags; le16 idx; le16 ring[size]; le16 used_event;          6 + 2*size
 *   used:  le16 flags; le16 idx; { le32 id; le32 len; } ring[size];
 *          le16 avail_event;                                                6 + 8*size
 *
 * The three rings are range-checked once at init, so any index taken modulo size stays in
 * them. Descriptor buffers and indirect tables are checked one by one with guest_mem_ptr().
 *
 * Ordering (virtio 1.2 §2.7.7, §2.7.13): read avail->idx with acquire before the ring
 * entries and descriptors it covers; write used elements before publishing used->idx
 * (release); a full barrier between publishing used->idx and reading used_event, and
 * between writing avail_event / used->flags and re-reading avail->idx, because both are
 * store-then-load races with the driver that only a full fence orders (x86 included).
 *
 * The guest may rewrite any of its memory at any time: every shared field is loaded once
 * into a local, and only the local is checked and used.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/virtio_ring.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LOG_TAG "virtq"
#include "vmm/lib/log.h"
#include "vmm/memory.h"
#include "vmm/virtio/queue.h"

#define DESC_SIZE		16u
#define AVAIL_RING_OFF		4u
#define USED_RING_OFF		4u
#define USED_ELEM_SIZE		8u

/* Running totals of one chain walk. */
struct walk {
	uint64_t out, in;
	bool seen_write;	/* a device-writable descriptor was seen, even an empty one */
};

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* Stop the compiler from re-reading guest memory instead of using our copy. */
#define guest_copy_barrier() __asm__ __volatile__("" ::: "memory")

static inline uint16_t load16(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED));
}

static inline uint16_t load16_acquire(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_ACQUIRE));
}

static inline void store16(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELAXED);
}

static inline void store16_release(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELEASE);
}

static inline void store32(uint8_t *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)(void *)p, htole32(v), __ATOMIC_RELAXED);
}

/* Copy one descriptor (table entries may be unaligned in an indirect table). */
static void read_desc(const uint8_t *p, struct desc *d)
{
	uint8_t raw[DESC_SIZE];
	uint64_t a;
	uint32_t l;
	uint16_t f, n;

	memcpy(raw, p, sizeof(raw));
	guest_copy_barrier();
	memcpy(&a, raw, 8);
	memcpy(&l, raw + 8, 4);
	memcpy(&f, raw + 12, 2);
	memcpy(&n, raw + 14, 2);
	d->addr = le64toh(a);
	d->len = le32toh(l);
	d->flags = le16toh(f);
	d->next = le16toh(n);
}

static uint8_t *avail_ring(const struct vq *vq, uint16_t slot)
{
	return vq->avail + AVAIL_RING_OFF + 2u * slot;
}

static uint8_t *used_event_ptr(const struct vq *vq)
{
	return vq->avail + AVAIL_RING_OFF + 2u * vq->size;
}

static uint8_t *avail_event_ptr(const struct vq *vq)
{
	return vq->used + USED_RING_OFF + USED_ELEM_SIZE * vq->size;
}

static uint64_t used_gpa_of(const struct vq *vq, const uint8_t *p)
{
	return vq->used_gpa + (uint64_t)(p - vq->used);
}

/* The guest broke the rules: log (rate-limited), mark broken, return @err. */
static int __attribute__((format(printf, 3, 4))) vq_fail(struct vq *vq, int err, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vq->broken = true;
	log_ratelimited(LOG_WARN, "%s: %s; queue stopped until reset", vq->name, msg);
	return err;
}

bool vq_enabled(const struct vq *vq)
{
	return vq->enabled;
}

uint16_t vq_size(const struct vq *vq)
{
	return vq->enabled ? vq->size : 0;
}

bool vq_broken(const struct vq *vq)
{
	return vq->broken;
}

void vq_reset(struct vq *vq)
{
	struct guest_mem *mem = vq->mem;
	const char *name = vq->name;

	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
	vq->name = name ? name : "vq";
}

static int check_config(struct guest_mem *mem, const struct vq_config *cfg, const char *name,
			uint8_t **desc, uint8_t **avail, uint8_t **used)
{
	uint32_t n = cfg->size;

	if (n == 0 || n > VQ_MAX_SIZE || (n & (n - 1))) {
		log_ratelimited(LOG_WARN, "%s: queue size %u is not a power of two in 1..%u",
				name, n, VQ_MAX_SIZE);
		return -EINVAL;
	}
	if (cfg->desc % 16 || cfg->avail % 2 || cfg->used % 4) {
		log_ratelimited(LOG_WARN, "%s: misaligned rings (desc 0x%" PRIx64 " avail 0x%" PRIx64
				" used 0x%" PRIx64 ")", name, cfg->desc, cfg->avail, cfg->used);
		return -EINVAL;
	}
	*desc = guest_mem_ptr(mem, cfg->desc, (uint64_t)DESC_SIZE * n);
	*avail = guest_mem_ptr(mem, cfg->avail, 6ull + 2ull * n);
	*used = guest_mem_ptr(mem, cfg->used, 6ull + (uint64_t)USED_ELEM_SIZE * n);
	if (!*desc || !*avail || !*used) {
		log_ratelimited(LOG_WARN, "%s: rings outside guest RAM (desc 0x%" PRIx64 " avail 0x%"
				PRIx64 " used 0x%" PRIx64 ", size %u)", name, cfg->desc, cfg->avail,
				cfg->used, n);
		return -EINVAL;
	}
	return 0;
}

int vq_init(struct vq *vq, struct guest_mem *mem, const struct vq_config *cfg)
{
	const char *name = cfg->name ? cfg->name : "vq";
	uint8_t *desc, *avail, *used;
	int ret;

	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
	vq->name = name;
	ret = check_config(mem, cfg, name, &desc, &avail, &used);
	if (ret < 0)
		return ret;
	vq->size = cfg->size;
	vq->desc_gpa = cfg->desc;
	vq->avail_gpa = cfg->avail;
	vq->used_gpa = cfg->used;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vq->event_idx = cfg->event_idx;
	vq->indirect = cfg->indirect;
	vq->enabled = true;
	return 0;
}

/* ---- popping ---- */

static int add_seg(struct vq *vq, struct vq_chain *ch, const struct desc *d, struct walk *w)
{
	bool writable = d->flags & VRING_DESC_F_WRITE;
	void *p;

	/* §2.7.4: device-readable descriptors precede device-writable ones. */
	if (!writable && w->seen_write)
		return vq_fail(vq, -EINVAL, "head %u: device-readable descriptor after a writable one",
			       ch->head);
	w->seen_write |= writable;
	if (d->len == 0)
		return 0;	/* nothing to map; still counted against the walk bound */
	p = guest_mem_ptr(vq->mem, d->addr, d->len);
	if (!p)
		return vq_fail(vq, -EINVAL, "head %u: buffer 0x%" PRIx64 "+%u outside guest RAM",
			       ch->head, d->addr, d->len);
	if (ch->n >= ch->cap) {
		vq->broken = true;
		log_ratelimited(LOG_WARN, "%s: head %u: more than %u segments (device limit)",
				vq->name, ch->head, ch->cap);
		return -E2BIG;
	}
	if (writable)
		w->in += d->len;
	else
		w->out += d->len;
	if (w->in > UINT32_MAX || w->out > UINT32_MAX)
		return vq_fail(vq, -EINVAL, "head %u: chain longer than 4 GiB", ch->head);
	ch->segs[ch->n] = (struct vq_seg){ .addr = p, .len = d->len, .writable = writable,
					   .gpa = d->addr };
	ch->n++;
	if (!writable)
		ch->n_out = ch->n;
	return 0;
}

/* Walk an indirect table (virtio 1.2 §2.7.5.3): entries from index 0, no nesting. */
static int walk_indirect(struct vq *vq, struct vq_chain *ch, const struct desc *ind, struct walk *w)
{
	unsigned int entries, i = 0, count = 0;
	const uint8_t *table;
	int ret;

	if (!vq->indirect)
		return vq_fail(vq, -EINVAL, "head %u: indirect descriptor not negotiated", ch->head);
	if (ind->flags & VRING_DESC_F_NEXT)
		return vq_fail(vq, -EINVAL, "head %u: indirect descriptor with NEXT set", ch->head);
	if (ind->len == 0 || ind->len % DESC_SIZE)
		return vq_fail(vq, -EINVAL, "head %u: indirect table length %u not a multiple of 16",
			       ch->head, ind->len);
	entries = ind->len / DESC_SIZE;
	/* A chain is at most Queue Size descriptors long (§2.7.5.3.1); bounds our work too. */
	if (entries > vq->size)
		return vq_fail(vq, -EINVAL, "head %u: indirect table of %u entries > queue size %u",
			       ch->head, entries, vq->size);
	table = guest_mem_ptr(vq->mem, ind->addr, ind->len);
	if (!table)
		return vq_fail(vq, -EINVAL, "head %u: indirect table 0x%" PRIx64 "+%u outside guest RAM",
			       ch->head, ind->addr, ind->len);
	for (;;) {
		struct desc d;

		/* Each entry at most once: more steps than entries means a loop. */
		if (++count > entries)
			return vq_fail(vq, -EINVAL, "head %u: loop in indirect table", ch->head);
		read_desc(table + (size_t)i * DESC_SIZE, &d);
		if (d.flags & VRING_DESC_F_INDIRECT)
			return vq_fail(vq, -EINVAL, "head %u: nested indirect table", ch->head);
		ret = add_seg(vq, ch, &d, w);
		if (ret < 0)
			return ret;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		i = d.next;
		if (i >= entries)
			return vq_fail(vq, -EINVAL, "head %u: indirect next %u beyond table of %u",
				       ch->head, i, entries);
	}
}

int vq_pop(struct vq *vq, struct vq_chain *ch)
{
	uint16_t avail_idx, pending, head, i;
	unsigned int count = 0;
	struct walk w = { 0 };
	int ret;

	if (!vq->enabled || vq->broken)
		return -EIO;
	avail_idx = load16_acquire(vq->avail + 2);
	pending = (uint16_t)(avail_idx - vq->last_avail_idx);
	if (pending == 0)
		return 0;
	if (pending > vq->size)
		return vq_fail(vq, -EINVAL, "avail idx %u is %u ahead of %u, more than the queue size %u",
			       avail_idx, pending, vq->last_avail_idx, vq->size);
	head = load16(avail_ring(vq, vq->last_avail_idx & (vq->size - 1)));
	if (head >= vq->size)
		return vq_fail(vq, -EINVAL, "avail ring head %u >= queue size %u", head, vq->size);

	ch->n = ch->n_out = 0;
	ch->head = head;
	ch->out_len = ch->in_len = 0;
	for (i = head;;) {
		struct desc d;

		if (++count > vq->size)
			return vq_fail(vq, -EINVAL, "head %u: descriptor loop or chain longer than %u",
				       head, vq->size);
		read_desc(vq->desc + (size_t)i * DESC_SIZE, &d);
		if (d.flags & VRING_DESC_F_INDIRECT) {
			/* Its WRITE flag is ignored (§2.7.5.3.2); it must end the chain. */
			ret = walk_indirect(vq, ch, &d, &w);
			if (ret < 0)
				return ret;
			break;
		}
		ret = add_seg(vq, ch, &d, &w);
		if (ret < 0)
			return ret;
		if (!(d.flags & VRING_DESC_F_NEXT))
			break;
		i = d.next;
		if (i >= vq->size)
			return vq_fail(vq, -EINVAL, "head %u: next %u >= queue size %u", head, i, vq->size);
	}
	ch->out_len = (uint32_t)w.out;
	ch->in_len = (uint32_t)w.in;
	vq->last_avail_idx++;
	return 1;
}

void vq_unpop(struct vq *vq, unsigned int n)
{
	vq->last_avail_idx = (uint16_t)(vq->last_avail_idx - n);
}

unsigned int vq_inflight(const struct vq *vq)
{
	return (uint16_t)(vq->last_avail_idx - vq->used_idx);
}

/* ---- copying ---- */

/* Copy @len bytes between @buf and segments [first, last), starting @off bytes in. */
static size_t chain_copy(const struct vq_chain *ch, unsigned int first, unsigned int last,
			 size_t off, uint8_t *buf, size_t len, bool to_guest)
{
	size_t done = 0;
	unsigned int i;

	for (i = first; i < last && done < len; i++) {
		size_t seg = ch->segs[i].len, n;

		if (off >= seg) {
			off -= seg;
			continue;
		}
		n = seg - off < len - done ? seg - off : len - done;
		if (to_guest)
			memcpy((uint8_t *)ch->segs[i].addr + off, buf + done, n);
		else
			memcpy(buf + done, (const uint8_t *)ch->segs[i].addr + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t vq_chain_copy_from(const struct vq_chain *ch, size_t off, void *dst, size_t len)
{
	return chain_copy(ch, 0, ch->n_out, off, dst, len, false);
}

size_t vq_chain_copy_to(const struct vq_chain *ch, size_t off, const void *src, size_t len)
{
	return chain_copy(ch, ch->n_out, ch->n, off, (uint8_t *)(uintptr_t)src, len, true);
}

/* ---- pushing ---- */

void vq_push(struct vq *vq, const struct vq_chain *ch, uint32_t written)
{
	uint32_t left;
	uint8_t *elem;
	unsigned int i;

	if (!vq->enabled)
		return;		/* reset while the request was in flight: nothing to return */
	if (written > ch->in_len)
		written = ch->in_len;
	/* The device wrote these bytes into guest RAM: migration must resend them. */
	left = written;
	for (i = ch->n_out; i < ch->n && left; i++) {
		uint32_t l = ch->segs[i].len < left ? ch->segs[i].len : left;

		guest_mem_mark_dirty(vq->mem, ch->segs[i].gpa, l);
		left -= l;
	}
	elem = vq->used + USED_RING_OFF + USED_ELEM_SIZE * (vq->used_idx & (vq->size - 1u));
	store32(elem, ch->head);
	store32(elem + 4, written);
	guest_mem_mark_dirty(vq->mem, used_gpa_of(vq, elem), USED_ELEM_SIZE);
	vq->used_idx++;
	/* Release: the element (and the buffer contents) before the index that exposes them. */
	store16_release(vq->used + 2, vq->used_idx);
	guest_mem_mark_dirty(vq->mem, vq->used_gpa + 2, 2);
}

/* virtio 1.2 §2.7.10: interrupt if new_idx moved past event since old (mod 2^16). */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

bool vq_should_notify(struct vq *vq)
{
	uint16_t old, event;
	bool valid;

	if (!vq->enabled)
		return false;
	/* Our used->idx store must be visible before we read the driver's suppression state. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(load16(vq->avail) & VRING_AVAIL_F_NO_INTERRUPT);
	old = vq->signalled_used;
	valid = vq->signalled_used_valid;
	vq->signalled_used = vq->used_idx;
	vq->signalled_used_valid = true;
	if (!valid)
		return true;	/* first time (or after restore): don't risk a lost interrupt */
	event = load16(used_event_ptr(vq));
	return need_event(event, vq->used_idx, old);
}

void vq_disable_notify(struct vq *vq)
{
	if (!vq->enabled || vq->event_idx)
		return;		/* with event idx, a stale avail_event already suppresses kicks */
	store16(vq->used, VRING_USED_F_NO_NOTIFY);
	guest_mem_mark_dirty(vq->mem, vq->used_gpa, 2);
}

bool vq_enable_notify(struct vq *vq)
{
	if (!vq->enabled || vq->broken)
		return false;
	if (vq->event_idx) {
		store16(avail_event_ptr(vq), vq->last_avail_idx);
		guest_mem_mark_dirty(vq->mem, used_gpa_of(vq, avail_event_ptr(vq)), 2);
	} else {
		store16(vq->used, 0);
		guest_mem_mark_dirty(vq->mem, vq->used_gpa, 2);
	}
	/* Store (we listen again) then load (did the driver add meanwhile?): full fence. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return load16_acquire(vq->avail + 2) != vq->last_avail_idx;
}

/* ---- state ---- */

void vq_save(const struct vq *vq, struct vq_state *st)
{
	memset(st, 0, sizeof(*st));
	st->enabled = vq->enabled;
	if (!vq->enabled)
		return;
	st->desc = vq->desc_gpa;
	st->avail = vq->avail_gpa;
	st->used = vq->used_gpa;
	st->size = vq->size;
	st->last_avail_idx = vq->last_avail_idx;
	st->used_idx = vq->used_idx;
	st->signalled_used = vq->signalled_used;
	st->signalled_used_valid = vq->signalled_used_valid;
	st->event_idx = vq->event_idx;
	st->indirect = vq->indirect;
}

int vq_restore(struct vq *vq, struct guest_mem *mem, const struct vq_state *st, const char *name)
{
	struct vq_config cfg = {
		.name = name, .size = st->size, .desc = st->desc, .avail = st->avail,
		.used = st->used, .event_idx = st->event_idx, .indirect = st->indirect,
	};
	int ret;

	if (!st->enabled) {
		memset(vq, 0, sizeof(*vq));
		vq->mem = mem;
		vq->name = name ? name : "vq";
		return 0;
	}
	ret = vq_init(vq, mem, &cfg);
	if (ret < 0)
		return ret;
	if ((uint16_t)(st->last_avail_idx - st->used_idx) > st->size) {
		log_warn("%s: saved state has %u chains in flight for a queue of %u", vq->name,
			 (uint16_t)(st->last_avail_idx - st->used_idx), st->size);
		vq_reset(vq);
		return -EINVAL;
	}
	vq->last_avail_idx = st->last_avail_idx;
	vq->used_idx = st->used_idx;
	vq->signalled_used = st->signalled_used;
	vq->signalled_used_valid = st->signalled_used_valid;
	return 0;
}
