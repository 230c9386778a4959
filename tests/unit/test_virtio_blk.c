// SPDX-License-Identifier: MIT
/*
 * virtio-blk (vmm/virtio/blk.c) and the raw image back-end (storage/image.c) end to end:
 * a split ring in a memfd "guest RAM", the device on a real virtio-pci transport (kvm_ioctl
 * mocked, kvm_mock.h), a real io_uring event loop and a temporary image file. Every request
 * type (IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES) is checked against the file's bytes and
 * allocation; every hostile case gets the status the spec asks for (IOERR / UNSUPP) or
 * DEVICE_NEEDS_RESET, and the monitor carries on. Also: many requests in flight with batched
 * interrupts, reset with I/O in flight, quiesce/resume, save/load, read-only disks, O_DIRECT
 * (aligned and misaligned buffers) and the write-zeroes fallbacks on tmpfs. Multi-queue: a
 * 2-queue device whose queue 1 has its own rings (slots 64.. so headers never collide with
 * queue 0's) and MSI-X vector 1; hostile notifies; state with 2 queues, count mismatches and
 * streams from before multi-queue.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvm_mock.h"
#include "storage/image.h"
#include "vmm/irq.h"
#include "vmm/lib/evloop.h"
#include "vmm/memory.h"
#include "vmm/state.h"
#include "vmm/virtio/blk.h"
#include "vmm/virtio/pci.h"
#include "vmm/virtio/pci_state.h"

#define RAM		(8u << 20)
#define QSZ		128
#define DESC		0x1000
#define AVAIL		0x2000
#define USED		0x3000
#define HDR		0x4000		/* 16-byte headers, one slot per descriptor index */
#define STATUS		0x6000		/* status bytes, one per descriptor index */
#define INDIR		0x7000		/* an indirect table */
#define DESC1		0x8000		/* queue 1's rings (multi-queue tests) */
#define AVAIL1		0x9000
#define USED1		0xa000
#define SLOT1		64		/* queue 1's first descriptor index */
#define BUF		0x100000	/* data */
#define IMG_SECTORS	4096		/* 2 MiB image */
#define SERIAL		"SN-blk-test-0001"

/* A queue's driver side; fx holds the current queue's, use_queue() swaps them. */
struct ring {
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t avail_idx, next_desc;
};

struct fx {
	struct irq irq;
	struct pci_bus pb;
	struct guest_mem mem;
	struct evloop loop;
	struct virtio_blk *blk;
	struct virtio_pci *vp;
	char path[64];
	int fd;				/* the image, for checking */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t avail_idx, next_desc;
	bool ro;
	unsigned int nq;		/* the device's queues (1 or 2) */
	unsigned int cur;		/* the queue post()/kick() use */
	unsigned int enable_mask;	/* queues driver_init enables (default all) */
	struct ring other;		/* the queue that is not current (nq == 2) */
};

static void *gp(struct fx *f, uint64_t gpa, uint64_t len)
{
	void *p = guest_mem_ptr(&f->mem, gpa, len);

	assert_non_null(p);
	return p;
}

/* ---- the driver side ---- */

static void wr(struct fx *f, uint32_t off, uint32_t len, uint32_t v)
{
	virtio_pci_bar_write(f->vp, off, &v, len);
}

static uint32_t rd(struct fx *f, uint32_t off, uint32_t len)
{
	uint32_t v = 0;

	virtio_pci_bar_read(f->vp, off, &v, len);
	return v;
}

static uint64_t dev_features(struct fx *f)
{
	uint64_t v;

	wr(f, VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
	v = rd(f, VIRTIO_PCI_COMMON_DF, 4);
	wr(f, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	return v | (uint64_t)rd(f, VIRTIO_PCI_COMMON_DF, 4) << 32;
}

/* @r becomes the current queue's driver side (fx's own fields, which the older tests use). */
static void ring_put(struct fx *f, const struct ring *r)
{
	f->desc = r->desc;
	f->avail = r->avail;
	f->used = r->used;
	f->avail_idx = r->avail_idx;
	f->next_desc = r->next_desc;
}

/* Make queue @q the one post()/kick()/do_req() use (nq == 2). */
static void use_queue(struct fx *f, unsigned int q)
{
	struct ring cur = { f->desc, f->avail, f->used, f->avail_idx, f->next_desc };

	if (q == f->cur)
		return;
	ring_put(f, &f->other);
	f->other = cur;
	f->cur = q;
}

static void setup_queue(struct fx *f, unsigned int q, uint64_t desc, uint64_t avail, uint64_t used)
{
	wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
	wr(f, VIRTIO_PCI_COMMON_Q_SIZE, 2, QSZ);
	wr(f, VIRTIO_PCI_COMMON_Q_MSIX, 2, q);
	wr(f, VIRTIO_PCI_COMMON_Q_DESCLO, 4, (uint32_t)desc);
	wr(f, VIRTIO_PCI_COMMON_Q_AVAILLO, 4, (uint32_t)avail);
	wr(f, VIRTIO_PCI_COMMON_Q_USEDLO, 4, (uint32_t)used);
	if (f->enable_mask & (1u << q))
		wr(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
}

static void ring_clear(struct fx *f, struct ring *r, uint64_t desc, uint64_t avail,
		       uint64_t used, uint16_t first)
{
	r->desc = gp(f, desc, 16 * QSZ);
	r->avail = gp(f, avail, 6 + 2 * QSZ);
	r->used = gp(f, used, 6 + 8 * QSZ);
	memset(r->desc, 0, 16 * QSZ);
	r->avail->flags = 0;
	r->avail->idx = 0;
	r->used->idx = 0;
	r->avail_idx = 0;
	r->next_desc = first;
}

/*
 * Bring the device to DRIVER_OK with @feat (& offered); queue q gets MSI-X vector q. Leaves
 * queue 0 current.
 */
static void driver_init(struct fx *f, uint64_t drop)
{
	uint64_t feat = dev_features(f) & ~drop;
	uint32_t zero = 0, addr = 0xfee00000, data = 0x23;
	struct ring r0;

	use_queue(f, 0);
	pci_cfg_write(&f->pb, 0, f->vp->pci.slot, 0, f->vp->msix.cap + PCI_MSIX_FLAGS, 2,
		      PCI_MSIX_FLAGS_ENABLE);
	for (unsigned int v = 0; v < f->nq; v++) {
		uint32_t e = f->vp->msix_table_off + 16 * v, d = data + v;

		virtio_pci_bar_write(f->vp, e + 0, &addr, 4);
		virtio_pci_bar_write(f->vp, e + 8, &d, 4);
		virtio_pci_bar_write(f->vp, e + 12, &zero, 4);
	}

	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	wr(f, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)feat);
	wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	wr(f, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)(feat >> 32));
	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	   VIRTIO_CONFIG_S_FEATURES_OK);
	assert_true(rd(f, VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_CONFIG_S_FEATURES_OK);
	setup_queue(f, 0, DESC, AVAIL, USED);
	if (f->nq > 1)
		setup_queue(f, 1, DESC1, AVAIL1, USED1);
	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	   VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	assert_true(rd(f, VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_CONFIG_S_DRIVER_OK);
	ring_clear(f, &r0, DESC, AVAIL, USED, 0);
	ring_put(f, &r0);
	if (f->nq > 1)
		ring_clear(f, &f->other, DESC1, AVAIL1, USED1, SLOT1);
}

struct d { uint64_t gpa; uint32_t len; bool w; };

/* Place a chain and make it available (no kick). Returns its head. */
static uint16_t post(struct fx *f, const struct d *ds, unsigned int n)
{
	uint16_t head = f->next_desc;

	for (unsigned int i = 0; i < n; i++) {
		uint16_t at = (uint16_t)((head + i) % QSZ), nx = (uint16_t)((head + i + 1) % QSZ);

		f->desc[at] = (struct vring_desc){ htole64(ds[i].gpa), htole32(ds[i].len),
			htole16((ds[i].w ? VRING_DESC_F_WRITE : 0) | (i + 1 < n ? VRING_DESC_F_NEXT : 0)),
			htole16(nx) };
	}
	f->next_desc = (uint16_t)((head + n) % QSZ);
	f->avail->ring[f->avail_idx % QSZ] = htole16(head);
	__atomic_store_n(&f->avail->idx, htole16(++f->avail_idx), __ATOMIC_RELEASE);
	return head;
}

/* The driver's notify for the current queue: its index, at its notify address. */
static void kick(struct fx *f)
{
	uint16_t q = (uint16_t)f->cur;

	/* trapped: eventfd */
	virtio_pci_bar_write(f->vp, VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * q, &q, 2);
}

/* Run the loop until used->idx reaches @want (bounded: 5 s). */
static void run_until(struct fx *f, uint16_t want)
{
	for (int i = 0; i < 500 && le16toh(__atomic_load_n(&f->used->idx, __ATOMIC_ACQUIRE)) != want; i++)
		assert_true(evloop_run_once(&f->loop, 10 * 1000 * 1000) >= 0);
	assert_int_equal(le16toh(f->used->idx), want);
}

static void run_a_while(struct fx *f)
{
	for (int i = 0; i < 5; i++)
		evloop_run_once(&f->loop, 5 * 1000 * 1000);
}

static uint8_t *hdr_at(struct fx *f, uint16_t slot, uint32_t type, uint64_t sector)
{
	struct virtio_blk_outhdr *h = gp(f, HDR + 16u * slot, 16);

	h->type = htole32(type);
	h->ioprio = 0;
	h->sector = htole64(sector);
	return (uint8_t *)h;
}

/* A standard 3-part request: header | data (readable for OUT, writable for IN) | status. */
static uint8_t do_req(struct fx *f, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
		      bool data_writable)
{
	uint16_t slot = f->next_desc;
	uint8_t *st = gp(f, STATUS + slot, 1);
	struct d ds[3] = { { HDR + 16u * slot, 16, false }, { data, len, data_writable },
			   { STATUS + slot, 1, true } };
	uint16_t want = (uint16_t)(le16toh(f->used->idx) + 1);

	hdr_at(f, slot, type, sector);
	*st = 0xee;
	if (len)
		post(f, ds, 3);
	else
		post(f, (struct d[]){ ds[0], ds[2] }, 2);
	kick(f);
	run_until(f, want);
	return *st;
}

static uint8_t blk_write(struct fx *f, uint64_t sector, uint64_t data, uint32_t len)
{
	return do_req(f, VIRTIO_BLK_T_OUT, sector, data, len, false);
}

static uint8_t blk_read(struct fx *f, uint64_t sector, uint64_t data, uint32_t len)
{
	return do_req(f, VIRTIO_BLK_T_IN, sector, data, len, true);
}

static bool needs_reset(struct fx *f)
{
	return f->vp->vd->status & VIRTIO_CONFIG_S_NEEDS_RESET;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

static void pread_all(struct fx *f, void *buf, size_t len, off_t off)
{
	assert_int_equal(pread(f->fd, buf, len, off), (ssize_t)len);
}

/* ---- fixtures ---- */

static int make_fx(void **state, const char *dir, bool ro, bool direct, unsigned int nq)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM };
	struct virtio_pci_env env;
	struct virtio_blk_opts o = { .id = "blk0", .read_only = ro, .direct = direct, .serial = SERIAL };
	char err[256];
	uint8_t *pat;
	int ret;

	assert_non_null(f);
	memset(&mock, 0, sizeof(mock));
	snprintf(f->path, sizeof(f->path), "%s/vblk-test.XXXXXX", dir);
	f->fd = mkstemp(f->path);
	assert_true(f->fd >= 0);
	/* A recognisable image: sector s starts with "S<s>". */
	pat = calloc(IMG_SECTORS, 512);
	assert_non_null(pat);
	for (unsigned int s = 0; s < IMG_SECTORS; s++)
		snprintf((char *)pat + 512u * s, 16, "S%u", s);
	assert_int_equal(pwrite(f->fd, pat, IMG_SECTORS * 512u, 0), IMG_SECTORS * 512);
	free(pat);
	assert_int_equal(evloop_init(&f->loop, 64), 0);
	assert_int_equal(guest_mem_init(&f->mem, RAM), 0);
	assert_int_equal(irq_init(&f->irq, 42, 0), 0);
	penv.irq = &f->irq;
	assert_int_equal(pci_init(&f->pb, &penv), 0);
	env = (struct virtio_pci_env){ .pci = &f->pb, .irq = &f->irq, .loop = &f->loop, .vm_fd = -1 };
	o.path = f->path;
	o.num_queues = nq;
	f->nq = nq;
	f->enable_mask = ~0u;
	ret = virtio_blk_create(&env, &f->mem, &o, &f->blk, err, sizeof(err));
	if (ret < 0) {
		print_message("create: %s\n", err);
		return -1;
	}
	f->vp = f->pb.slots[1]->opaque;
	f->desc = gp(f, DESC, 16 * QSZ);
	f->avail = gp(f, AVAIL, 6 + 2 * QSZ);
	f->used = gp(f, USED, 6 + 8 * QSZ);
	f->ro = ro;
	*state = f;
	return 0;
}

static int setup_rw(void **state) { return make_fx(state, "/tmp", false, false, 1); }
static int setup_ro(void **state) { return make_fx(state, "/tmp", true, false, 1); }
static int setup_direct(void **state) { return make_fx(state, "/tmp", false, true, 1); }
static int setup_shm(void **state) { return make_fx(state, "/dev/shm", false, false, 1); }
static int setup_mq(void **state) { return make_fx(state, "/tmp", false, false, 2); }

static int teardown(void **state)
{
	struct fx *f = *state;

	virtio_blk_destroy(f->blk);
	pci_destroy(&f->pb);
	irq_destroy(&f->irq);
	evloop_destroy(&f->loop);
	guest_mem_destroy(&f->mem);
	close(f->fd);
	unlink(f->path);
	free(f);
	return 0;
}

/* ---- tests ---- */

static void test_config_and_features(void **state)
{
	struct fx *f = *state;
	uint64_t feat = dev_features(f);
	uint32_t off = VIRTIO_PCI_DEVCFG_OFF;
	uint64_t cap;

	assert_int_equal(pci_cfg_read(&f->pb, 0, f->vp->pci.slot, 0, PCI_DEVICE_ID, 2), 0x1042);
	assert_true(feat & (1ull << VIRTIO_F_VERSION_1));
	assert_true(feat & (1ull << VIRTIO_BLK_F_SEG_MAX));
	assert_true(feat & (1ull << VIRTIO_BLK_F_SIZE_MAX));
	assert_true(feat & (1ull << VIRTIO_BLK_F_BLK_SIZE));
	assert_true(feat & (1ull << VIRTIO_BLK_F_FLUSH));
	assert_true(feat & (1ull << VIRTIO_RING_F_EVENT_IDX));
	assert_true(feat & (1ull << VIRTIO_RING_F_INDIRECT_DESC));
	assert_false(feat & (1ull << VIRTIO_BLK_F_MQ));
	assert_int_equal(!!(feat & (1ull << VIRTIO_BLK_F_RO)), f->ro);
	assert_int_equal(!!(feat & (1ull << VIRTIO_BLK_F_DISCARD)), !f->ro);
	assert_int_equal(!!(feat & (1ull << VIRTIO_BLK_F_WRITE_ZEROES)), !f->ro);

	cap = rd(f, off + offsetof(struct virtio_blk_config, capacity), 4) |
	      (uint64_t)rd(f, off + offsetof(struct virtio_blk_config, capacity) + 4, 4) << 32;
	assert_int_equal(cap, IMG_SECTORS);
	assert_int_equal(rd(f, off + offsetof(struct virtio_blk_config, seg_max), 4), 254);
	assert_int_equal(rd(f, off + offsetof(struct virtio_blk_config, size_max), 4), 1u << 20);
	assert_int_equal(rd(f, off + offsetof(struct virtio_blk_config, blk_size), 4), 512);
	if (!f->ro) {
		assert_int_equal(rd(f, off + offsetof(struct virtio_blk_config, max_discard_seg), 4), 32);
		assert_true(rd(f, off + offsetof(struct virtio_blk_config, max_discard_sectors), 4) > 0);
		assert_true(rd(f, off + offsetof(struct virtio_blk_config, discard_sector_alignment), 4) >= 1);
		assert_int_equal(rd(f, off + offsetof(struct virtio_blk_config, write_zeroes_may_unmap), 1), 1);
	}
	/* Past config_len: the transport answers 0 and never reaches the device. */
	assert_int_equal(rd(f, off + 0x400, 4), 0);
	/* Writes to the read-only config are ignored. */
	wr(f, off, 4, 0xdeadbeef);
	assert_int_equal(rd(f, off + offsetof(struct virtio_blk_config, capacity), 4), IMG_SECTORS);
}

static void test_read_write_flush_getid(void **state)
{
	struct fx *f = *state;
	uint8_t *buf = gp(f, BUF, 65536), *chk = malloc(65536);
	struct virtio_blk_stats st;

	assert_non_null(chk);
	driver_init(f, 0);
	/* Read sectors 10..17: the image's pattern. */
	assert_int_equal(blk_read(f, 10, BUF, 4096), VIRTIO_BLK_S_OK);
	assert_string_equal((char *)buf, "S10");
	assert_string_equal((char *)buf + 7 * 512, "S17");
	assert_int_equal(le32toh(f->used->ring[0].len), 4097);	/* data + status */

	/* Write 64 KiB at sector 100, read it back into another buffer, compare with the file. */
	fill(buf, 65536, 7);
	assert_int_equal(blk_write(f, 100, BUF, 65536), VIRTIO_BLK_S_OK);
	pread_all(f, chk, 65536, 100 * 512);
	assert_memory_equal(chk, buf, 65536);
	memset(gp(f, BUF + 0x20000, 65536), 0, 65536);
	assert_int_equal(blk_read(f, 100, BUF + 0x20000, 65536), VIRTIO_BLK_S_OK);
	assert_memory_equal(gp(f, BUF + 0x20000, 65536), buf, 65536);

	/* Last sector of the disk is fine. */
	assert_int_equal(blk_read(f, IMG_SECTORS - 1, BUF, 512), VIRTIO_BLK_S_OK);
	assert_string_equal((char *)buf, "S4095");

	assert_int_equal(do_req(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false), VIRTIO_BLK_S_OK);

	memset(buf, 0xaa, 32);
	assert_int_equal(do_req(f, VIRTIO_BLK_T_GET_ID, 0, BUF, 20, true), VIRTIO_BLK_S_OK);
	assert_memory_equal(buf, SERIAL "\0\0\0\0", 20);
	assert_int_equal(buf[20], 0xaa);

	virtio_blk_stats(f->blk, &st);
	assert_int_equal(st.read_reqs, 3);
	assert_int_equal(st.read_bytes, 4096 + 65536 + 512);
	assert_int_equal(st.write_reqs, 1);
	assert_int_equal(st.write_bytes, 65536);
	assert_int_equal(st.flush_reqs, 1);
	assert_int_equal(st.get_id_reqs, 1);
	assert_int_equal(st.ioerr + st.unsupp + st.inflight, 0);
	assert_int_equal(st.capacity, IMG_SECTORS);
	free(chk);
}

/* Framing is the driver's choice: header+data in one descriptor, data+status in one. */
static void test_any_framing_and_indirect(void **state)
{
	struct fx *f = *state;
	uint8_t *blob = gp(f, BUF, 16 + 1024), *chk = malloc(1024);
	uint8_t *in = gp(f, BUF + 0x10000, 1024 + 1);
	struct vring_desc *ind = gp(f, INDIR, 16 * 4);
	uint16_t head;

	driver_init(f, 0);
	/* OUT: [hdr|1024 data] [status] */
	hdr_at(f, 0, VIRTIO_BLK_T_OUT, 20);
	memcpy(blob, gp(f, HDR, 16), 16);
	fill(blob + 16, 1024, 99);
	*(uint8_t *)gp(f, STATUS, 1) = 0xee;
	post(f, (struct d[]){ { BUF, 16 + 1024, false }, { STATUS, 1, true } }, 2);
	kick(f);
	run_until(f, 1);
	assert_int_equal(*(uint8_t *)gp(f, STATUS, 1), VIRTIO_BLK_S_OK);
	pread_all(f, chk, 1024, 20 * 512);
	assert_memory_equal(chk, blob + 16, 1024);

	/* IN through an indirect table: [hdr] [512 data] [512 data + status] */
	hdr_at(f, 5, VIRTIO_BLK_T_IN, 20);
	ind[0] = (struct vring_desc){ htole64(HDR + 16 * 5), htole32(16), htole16(VRING_DESC_F_NEXT), htole16(1) };
	ind[1] = (struct vring_desc){ htole64(BUF + 0x10000), htole32(512),
				      htole16(VRING_DESC_F_NEXT | VRING_DESC_F_WRITE), htole16(2) };
	ind[2] = (struct vring_desc){ htole64(BUF + 0x10000 + 512), htole32(513),
				      htole16(VRING_DESC_F_WRITE), 0 };
	in[1024] = 0xee;
	head = f->next_desc;
	f->desc[head] = (struct vring_desc){ htole64(INDIR), htole32(16 * 3), htole16(VRING_DESC_F_INDIRECT), 0 };
	f->next_desc++;
	f->avail->ring[f->avail_idx % QSZ] = htole16(head);
	__atomic_store_n(&f->avail->idx, htole16(++f->avail_idx), __ATOMIC_RELEASE);
	kick(f);
	run_until(f, 2);
	assert_int_equal(in[1024], VIRTIO_BLK_S_OK);
	assert_memory_equal(in, blob + 16, 1024);
	free(chk);
}

static void test_discard_write_zeroes(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_discard_write_zeroes *r = gp(f, BUF, 16 * 3);
	uint8_t *buf = gp(f, BUF + 0x10000, 65536), *chk = malloc(65536);
	struct virtio_blk_stats st;
	struct stat sb0, sb1;

	assert_non_null(chk);
	driver_init(f, 0);
	assert_int_equal(fsync(f->fd), 0);
	assert_int_equal(fstat(f->fd, &sb0), 0);
	/* Discard 1 MiB at sector 1024 (2 ranges): deallocated, reads back zero. */
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(1024), htole32(1024), 0 };
	r[1] = (struct virtio_blk_discard_write_zeroes){ htole64(2048), htole32(1024), 0 };
	assert_int_equal(do_req(f, VIRTIO_BLK_T_DISCARD, 0, BUF, 32, false), VIRTIO_BLK_S_OK);
	assert_int_equal(fstat(f->fd, &sb1), 0);
	if (strncmp(f->path, "/dev/shm", 8))	/* ext4: holes punched */
		assert_true(sb1.st_blocks <= sb0.st_blocks - 2 * 1024 * 512 / 512);
	assert_true(lseek(f->fd, 1024 * 512, SEEK_HOLE) == 1024 * 512);
	pread_all(f, chk, 4096, 1024 * 512);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(chk[i], 0);

	/* Write-zeroes without unmap, then with unmap: zeroes either way, data around intact. */
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(300), htole32(8), 0 };
	assert_int_equal(do_req(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, BUF, 16, false), VIRTIO_BLK_S_OK);
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(400), htole32(500),
		htole32(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) };
	assert_int_equal(do_req(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, BUF, 16, false), VIRTIO_BLK_S_OK);
	pread_all(f, chk, 10 * 512, 299 * 512);
	assert_string_equal((char *)chk, "S299");
	for (int i = 512; i < 9 * 512; i++)
		assert_int_equal(chk[i], 0);
	assert_string_equal((char *)chk + 9 * 512, "S308");
	pread_all(f, chk, 512, 399 * 512);
	assert_string_equal((char *)chk, "S399");
	assert_int_equal(blk_read(f, 400, BUF + 0x10000, 4096), VIRTIO_BLK_S_OK);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(buf[i], 0);
	pread_all(f, chk, 512, 900 * 512);
	assert_string_equal((char *)chk, "S900");

	virtio_blk_stats(f->blk, &st);
	assert_int_equal(st.discard_reqs, 1);
	assert_int_equal(st.discard_bytes, 2 * 1024 * 512);
	assert_int_equal(st.write_zeroes_reqs, 2);
	assert_int_equal(st.ioerr + st.unsupp, 0);
	free(chk);
}

/* Every malformed-but-answerable request gets IOERR/UNSUPP; nothing reaches the file. */
static void test_hostile_requests(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_discard_write_zeroes *r = gp(f, BUF, 16 * 40);
	uint8_t *chk = malloc(8192), *orig = malloc(8192);
	struct virtio_blk_stats st;
	unsigned int n = 0;

	assert_non_null(chk);
	assert_non_null(orig);
	driver_init(f, 0);
	pread_all(f, orig, 8192, 0);
	fill(gp(f, BUF + 0x10000, 8192), 8192, 3);

	/* Ranges: past the end, straddling it, and a sector that overflows 64-bit byte math. */
	assert_int_equal(blk_read(f, IMG_SECTORS, BUF + 0x10000, 512), VIRTIO_BLK_S_IOERR); n++;
	assert_int_equal(blk_read(f, IMG_SECTORS - 1, BUF + 0x10000, 1024), VIRTIO_BLK_S_IOERR); n++;
	assert_int_equal(blk_write(f, UINT64_MAX - 1, BUF + 0x10000, 1024), VIRTIO_BLK_S_IOERR); n++;
	assert_int_equal(blk_write(f, (UINT64_MAX >> 9) + 1, BUF + 0x10000, 512), VIRTIO_BLK_S_IOERR); n++;
	/* Lengths not a multiple of 512. */
	assert_int_equal(blk_read(f, 0, BUF + 0x10000, 513), VIRTIO_BLK_S_IOERR); n++;
	assert_int_equal(blk_write(f, 0, BUF + 0x10000, 100), VIRTIO_BLK_S_IOERR); n++;
	/* Unknown types (also the legacy barrier and SCSI bits): UNSUPP. */
	assert_int_equal(do_req(f, 0x77, 0, BUF + 0x10000, 512, true), VIRTIO_BLK_S_UNSUPP); n++;
	assert_int_equal(do_req(f, VIRTIO_BLK_T_SCSI_CMD, 0, BUF + 0x10000, 512, true), VIRTIO_BLK_S_UNSUPP); n++;
	assert_int_equal(do_req(f, VIRTIO_BLK_T_OUT | VIRTIO_BLK_T_BARRIER, 0, BUF + 0x10000, 512, false),
			 VIRTIO_BLK_S_UNSUPP); n++;
	/* Wrong direction: a read with readable data; a write with writable data. */
	assert_int_equal(do_req(f, VIRTIO_BLK_T_IN, 0, BUF + 0x10000, 512, false), VIRTIO_BLK_S_IOERR); n++;
	assert_int_equal(do_req(f, VIRTIO_BLK_T_OUT, 0, BUF + 0x10000, 512, true), VIRTIO_BLK_S_IOERR); n++;
	/* Flush with data. */
	assert_int_equal(do_req(f, VIRTIO_BLK_T_FLUSH, 0, BUF + 0x10000, 512, true), VIRTIO_BLK_S_IOERR); n++;
	/* A data segment over size_max (1 MiB). */
	assert_int_equal(blk_write(f, 0, BUF, (1u << 20) + 512), VIRTIO_BLK_S_IOERR); n++;

	/* Discard / write-zeroes payloads. */
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(0), htole32(8), htole32(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) };
	assert_int_equal(do_req(f, VIRTIO_BLK_T_DISCARD, 0, BUF, 16, false), VIRTIO_BLK_S_UNSUPP); n++;
	r[0].flags = htole32(0x8);	/* unknown flag */
	assert_int_equal(do_req(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, BUF, 16, false), VIRTIO_BLK_S_UNSUPP); n++;
	r[0].flags = 0;
	assert_int_equal(do_req(f, VIRTIO_BLK_T_DISCARD, 0, BUF, 15, false), VIRTIO_BLK_S_IOERR); n++;
	assert_int_equal(do_req(f, VIRTIO_BLK_T_DISCARD, 0, BUF, 24, false), VIRTIO_BLK_S_IOERR); n++;
	for (int i = 0; i < 33; i++)
		r[i] = (struct virtio_blk_discard_write_zeroes){ htole64(8u * i), htole32(8), 0 };
	assert_int_equal(do_req(f, VIRTIO_BLK_T_DISCARD, 0, BUF, 33 * 16, false), VIRTIO_BLK_S_IOERR); n++;
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(IMG_SECTORS - 4), htole32(8), 0 };
	assert_int_equal(do_req(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, BUF, 16, false), VIRTIO_BLK_S_IOERR); n++;
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(UINT64_MAX - 2), htole32(8), 0 };
	assert_int_equal(do_req(f, VIRTIO_BLK_T_DISCARD, 0, BUF, 16, false), VIRTIO_BLK_S_IOERR); n++;
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(0), htole32(0), 0 };
	assert_int_equal(do_req(f, VIRTIO_BLK_T_DISCARD, 0, BUF, 16, false), VIRTIO_BLK_S_IOERR); n++;
	/* A good range after a bad one: nothing executed (all checked before the first). */
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(0), htole32(8), 0 };
	r[1] = (struct virtio_blk_discard_write_zeroes){ htole64(IMG_SECTORS), htole32(8), 0 };
	assert_int_equal(do_req(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, BUF, 32, false), VIRTIO_BLK_S_IOERR); n++;

	pread_all(f, chk, 8192, 0);
	assert_memory_equal(chk, orig, 8192);
	assert_false(needs_reset(f));
	virtio_blk_stats(f->blk, &st);
	assert_int_equal(st.ioerr + st.unsupp, n);
	assert_int_equal(st.unsupp, 5);
	assert_int_equal(st.write_reqs + st.read_reqs + st.discard_reqs + st.write_zeroes_reqs, 0);

	/* And the device still works. */
	assert_int_equal(blk_read(f, 1, BUF + 0x10000, 512), VIRTIO_BLK_S_OK);
	assert_string_equal((char *)gp(f, BUF + 0x10000, 4), "S1");
	free(chk);
	free(orig);
}

/* Chains that cannot be answered: the device needs a reset, and a reset revives it. */
static void test_unanswerable_chains(void **state)
{
	struct fx *f = *state;
	struct vring_desc *ind = gp(f, INDIR, 16 * 300);

	/* No writable byte for the status. */
	driver_init(f, 0);
	hdr_at(f, 0, VIRTIO_BLK_T_OUT, 0);
	post(f, (struct d[]){ { HDR, 16, false }, { BUF, 512, false } }, 2);
	kick(f);
	run_a_while(f);
	assert_true(needs_reset(f));
	assert_int_equal(f->used->idx, 0);

	/* Header shorter than 16 bytes. */
	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	driver_init(f, 0);
	assert_false(needs_reset(f));
	post(f, (struct d[]){ { HDR, 8, false }, { STATUS, 1, true } }, 2);
	kick(f);
	run_a_while(f);
	assert_true(needs_reset(f));

	/* More segments than seg_max + 2 (through an indirect table of 258). */
	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	driver_init(f, 0);
	hdr_at(f, 0, VIRTIO_BLK_T_IN, 0);
	ind[0] = (struct vring_desc){ htole64(HDR), htole32(16), htole16(VRING_DESC_F_NEXT), htole16(1) };
	for (int i = 1; i < 258; i++)
		ind[i] = (struct vring_desc){ htole64(BUF + 512u * i), htole32(i == 257 ? 1 : 512),
			htole16(VRING_DESC_F_WRITE | (i < 257 ? VRING_DESC_F_NEXT : 0)), htole16(i + 1) };
	f->desc[0] = (struct vring_desc){ htole64(INDIR), htole32(16 * 258), htole16(VRING_DESC_F_INDIRECT), 0 };
	f->avail->ring[0] = 0;
	__atomic_store_n(&f->avail->idx, htole16(1), __ATOMIC_RELEASE);
	kick(f);
	run_a_while(f);
	assert_true(needs_reset(f));

	/* Reset, and a normal read works again. */
	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	driver_init(f, 0);
	assert_int_equal(blk_read(f, 3, BUF, 512), VIRTIO_BLK_S_OK);
	assert_string_equal((char *)gp(f, BUF, 4), "S3");
}

static void test_read_only(void **state)
{
	struct fx *f = *state;
	uint8_t *chk = malloc(1024);
	struct virtio_blk_discard_write_zeroes *r = gp(f, BUF + 0x20000, 16);

	assert_non_null(chk);
	driver_init(f, 0);
	fill(gp(f, BUF, 1024), 1024, 5);
	assert_int_equal(blk_write(f, 0, BUF, 1024), VIRTIO_BLK_S_IOERR);
	*r = (struct virtio_blk_discard_write_zeroes){ htole64(0), htole32(2), 0 };
	assert_int_equal(do_req(f, VIRTIO_BLK_T_DISCARD, 0, BUF + 0x20000, 16, false), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(do_req(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, BUF + 0x20000, 16, false), VIRTIO_BLK_S_UNSUPP);
	pread_all(f, chk, 1024, 0);
	assert_string_equal((char *)chk, "S0");
	assert_string_equal((char *)chk + 512, "S1");
	assert_int_equal(blk_read(f, 0, BUF, 1024), VIRTIO_BLK_S_OK);
	assert_string_equal((char *)gp(f, BUF, 4), "S0");
	assert_int_equal(do_req(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false), VIRTIO_BLK_S_OK);
	free(chk);
}

/* 64 requests posted before one kick: all served, interrupts batched well below 64. */
static void test_many_in_flight(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_stats st;
	uint64_t irqs = 0, before = 0;
	const int N = 40;

	driver_init(f, 0);
	(void)!read(f->vp->msix.vecs[0].efd, &before, 8);	/* drain */
	for (int i = 0; i < N; i++) {
		uint16_t slot = f->next_desc;

		hdr_at(f, slot, i % 2 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, 8u * i);
		*(uint8_t *)gp(f, STATUS + slot, 1) = 0xee;
		if (i % 2)
			fill(gp(f, BUF + 4096u * i, 4096), 4096, (uint32_t)i);
		post(f, (struct d[]){ { HDR + 16u * slot, 16, false }, { BUF + 4096u * i, 4096, !(i % 2) },
				      { STATUS + slot, 1, true } }, 3);
	}
	kick(f);
	run_until(f, N);
	run_a_while(f);		/* the last interrupt goes out in the next before-wait hook */
	for (int i = 0; i < N; i++)
		assert_int_equal(*(uint8_t *)gp(f, STATUS + 3u * i, 1), VIRTIO_BLK_S_OK);
	for (int i = 0; i < N; i += 2) {
		char want[16];

		snprintf(want, sizeof(want), "S%d", 8 * i);
		assert_string_equal((char *)gp(f, BUF + 4096u * i, 8), want);
	}
	assert_int_equal(read(f->vp->msix.vecs[0].efd, &irqs, 8), 8);
	print_message("%d requests, %llu interrupts\n", N, (unsigned long long)irqs);
	assert_true(irqs >= 1 && irqs < (uint64_t)N / 2);
	virtio_blk_stats(f->blk, &st);
	assert_int_equal(st.read_reqs + st.write_reqs, N);
	assert_int_equal(st.inflight, 0);
}

/* Reset with requests in flight: they finish, are dropped, the device works afterwards. */
static void test_reset_in_flight(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_stats st;

	driver_init(f, 0);
	for (int i = 0; i < 8; i++) {
		uint16_t slot = f->next_desc;

		hdr_at(f, slot, VIRTIO_BLK_T_IN, 0);
		post(f, (struct d[]){ { HDR + 16u * slot, 16, false }, { BUF + 65536u * i, 65536, true },
				      { STATUS + slot, 1, true } }, 3);
	}
	/* The kick is processed by the transport at once (trapped write -> eventfd -> loop);
	 * drive only the notify: queue_notify submits; then reset before completions are reaped. */
	virtio_pci_kick(f->vp, 0);
	virtio_blk_stats(f->blk, &st);
	assert_int_equal(st.inflight, 8);
	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, 0);		/* reset (vCPU) */
	f->used->idx = 0;
	run_a_while(f);
	virtio_blk_stats(f->blk, &st);
	assert_int_equal(st.inflight, 0);
	assert_int_equal(st.read_reqs, 0);		/* dropped, not returned */
	assert_int_equal(f->used->idx, 0);
	driver_init(f, 0);
	assert_int_equal(blk_read(f, 2, BUF, 512), VIRTIO_BLK_S_OK);
	assert_string_equal((char *)gp(f, BUF, 4), "S2");
}

static void test_quiesce_save_load(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_state *s = malloc(sizeof(*s));
	struct virtio_blk_stats st;
	struct pci_bus pb2;
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM, .irq = &f->irq };
	struct virtio_pci_env env2;
	struct virtio_blk *b2;
	struct virtio_blk_opts o = { .path = f->path, .id = "blk0" };
	char err[256];

	assert_non_null(s);
	driver_init(f, 0);
	for (int i = 0; i < 4; i++) {
		uint16_t slot = f->next_desc;

		hdr_at(f, slot, VIRTIO_BLK_T_IN, 4u * i);
		post(f, (struct d[]){ { HDR + 16u * slot, 16, false }, { BUF + 4096u * i, 2048, true },
				      { STATUS + slot, 1, true } }, 3);
	}
	virtio_pci_kick(f->vp, 0);
	/* Quiesce on the loop thread: drains by running the loop itself. */
	assert_int_equal(virtio_blk_quiesce(f->blk, 5000), 0);
	virtio_blk_stats(f->blk, &st);
	assert_int_equal(st.inflight, 0);
	assert_int_equal(le16toh(f->used->idx), 4);
	/* A request posted while quiesced waits. */
	hdr_at(f, f->next_desc, VIRTIO_BLK_T_IN, 9);
	post(f, (struct d[]){ { HDR + 16u * f->next_desc, 16, false }, { BUF + 0x40000, 512, true },
			      { STATUS + f->next_desc, 1, true } }, 3);
	kick(f);
	run_a_while(f);
	assert_int_equal(le16toh(f->used->idx), 4);
	assert_int_equal(virtio_blk_save(f->blk, s), 0);
	assert_int_equal(s->num_queues, 1);
	assert_int_equal(s->vq[0].last_avail_idx, 4);
	assert_int_equal(s->capacity, IMG_SECTORS);

	/* Load into a second device on the same image and RAM: it serves the waiting request. */
	assert_int_equal(pci_init(&pb2, &penv), 0);
	env2 = (struct virtio_pci_env){ .pci = &pb2, .irq = &f->irq, .loop = &f->loop, .vm_fd = -1 };
	/* The first device holds the image's write lock: a second writer is refused. */
	assert_int_equal(virtio_blk_create(&env2, &f->mem, &o, &b2, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "in use"));
	o.read_only = true;
	assert_int_equal(virtio_blk_create(&env2, &f->mem, &o, &b2, err, sizeof(err)), -EBUSY);
	/* A migration destination on the same host opens it without the lock. */
	o.no_lock = true;
	assert_int_equal(virtio_blk_create(&env2, &f->mem, &o, &b2, err, sizeof(err)), 0);
	virtio_blk_destroy(b2);
	o.no_lock = false;
	virtio_blk_destroy(f->blk);
	f->blk = NULL;
	o.read_only = false;
	assert_int_equal(virtio_blk_create(&env2, &f->mem, &o, &b2, err, sizeof(err)), 0);
	s->capacity++;
	assert_int_equal(virtio_blk_load(b2, s), -EINVAL);	/* another disk size */
	s->capacity--;
	assert_int_equal(virtio_blk_load(b2, s), 0);
	run_until(f, 5);
	assert_string_equal((char *)gp(f, BUF + 0x40000, 4), "S9");
	f->blk = b2;			/* teardown destroys it; pb2 must go after */
	virtio_blk_destroy(b2);
	f->blk = NULL;
	pci_destroy(&pb2);
	free(s);
	{
		/* teardown expects a device: recreate on the original bus */
		struct virtio_pci_env env = { .pci = &f->pb, .irq = &f->irq, .loop = &f->loop, .vm_fd = -1 };

		assert_int_equal(virtio_blk_create(&env, &f->mem, &o, &f->blk, err, sizeof(err)), 0);
	}
}

/* The TLV section through the state registry: quiesce, save, load into a new device. */
static void test_state_section(void **state)
{
	struct fx *f = *state;
	struct state_registry reg1 = { 0 }, reg2 = { 0 };
	struct state_mem_sink sink;
	struct pci_bus pb2;
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM, .irq = &f->irq };
	struct virtio_pci_env env2;
	struct virtio_blk *b2;
	struct virtio_blk_opts o = { .path = f->path, .id = "blk0" };
	char err[256];

	driver_init(f, 0);
	assert_int_equal(blk_read(f, 7, BUF, 512), VIRTIO_BLK_S_OK);
	assert_int_equal(virtio_blk_register_state(f->blk, &reg1), 0);
	hdr_at(f, f->next_desc, VIRTIO_BLK_T_IN, 11);
	post(f, (struct d[]){ { HDR + 16u * f->next_desc, 16, false }, { BUF + 0x1000, 512, true },
			      { STATUS + f->next_desc, 1, true } }, 3);
	assert_int_equal(state_quiesce_all(&reg1), 0);
	kick(f);
	run_a_while(f);				/* held back: quiesced */
	assert_int_equal(le16toh(f->used->idx), 1);
	state_mem_sink_init(&sink);
	assert_int_equal(state_save_all(&reg1, &sink.sink), 0);
	state_registry_destroy(&reg1);
	virtio_blk_destroy(f->blk);
	f->blk = NULL;

	assert_int_equal(pci_init(&pb2, &penv), 0);
	env2 = (struct virtio_pci_env){ .pci = &pb2, .irq = &f->irq, .loop = &f->loop, .vm_fd = -1 };
	assert_int_equal(virtio_blk_create(&env2, &f->mem, &o, &b2, err, sizeof(err)), 0);
	assert_int_equal(virtio_blk_register_state(b2, &reg2), 0);
	assert_int_equal(state_load_buf(&reg2, sink.buf, sink.len, NULL), 0);
	run_until(f, 2);
	assert_string_equal((char *)gp(f, BUF + 0x1000, 4), "S11");
	/* A stream cut short is refused before anything changes. */
	assert_true(state_load_buf(&reg2, sink.buf, sink.len - 5, NULL) < 0);
	state_registry_destroy(&reg2);
	virtio_blk_destroy(b2);
	pci_destroy(&pb2);
	free(sink.buf);
	{
		struct virtio_pci_env env = { .pci = &f->pb, .irq = &f->irq, .loop = &f->loop, .vm_fd = -1 };

		assert_int_equal(virtio_blk_create(&env, &f->mem, &o, &f->blk, err, sizeof(err)), 0);
	}
}

static void test_resume_after_quiesce(void **state)
{
	struct fx *f = *state;

	driver_init(f, 0);
	assert_int_equal(virtio_blk_quiesce(f->blk, 1000), 0);
	hdr_at(f, 0, VIRTIO_BLK_T_IN, 6);
	post(f, (struct d[]){ { HDR, 16, false }, { BUF, 512, true }, { STATUS, 1, true } }, 3);
	kick(f);
	run_a_while(f);
	assert_int_equal(le16toh(f->used->idx), 0);
	virtio_blk_resume(f->blk);
	run_until(f, 1);
	assert_string_equal((char *)gp(f, BUF, 4), "S6");
}

/* ---- multi-queue ---- */

/* Interrupts on MSI-X vector @v since the last call (its irqfd counter, non-blocking). */
static uint64_t irqs_on(struct fx *f, unsigned int v)
{
	uint64_t n = 0;

	if (read(f->vp->msix.vecs[v].efd, &n, 8) != 8)
		return 0;
	return n;
}

/* Post a 512-byte read of @sector on the current queue into @data (no kick). Returns its slot. */
static uint16_t post_read(struct fx *f, uint64_t sector, uint64_t data)
{
	uint16_t slot = f->next_desc;

	hdr_at(f, slot, VIRTIO_BLK_T_IN, sector);
	*(uint8_t *)gp(f, STATUS + slot, 1) = 0xee;
	post(f, (struct d[]){ { HDR + 16u * slot, 16, false }, { data, 512, true },
			      { STATUS + slot, 1, true } }, 3);
	return slot;
}

static void test_mq_config(void **state)
{
	struct fx *f = *state;
	uint32_t nq_off = VIRTIO_PCI_DEVCFG_OFF + offsetof(struct virtio_blk_config, num_queues);

	assert_true(dev_features(f) & (1ull << VIRTIO_BLK_F_MQ));
	assert_int_equal(rd(f, nq_off, 2), 2);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_NUMQ, 2), 2);
	/* One vector per queue plus the config vector; a notify address per queue. */
	assert_int_equal(f->vp->msix.nr, 3);
	assert_true(f->vp->msix_table_off >= VIRTIO_PCI_NOTIFY_OFF + 2 * VIRTIO_PCI_NOTIFY_MULT);
	wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), 256);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_NOFF, 2), 1);
	wr(f, VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), 2);
	wr(f, VIRTIO_PCI_COMMON_Q_MSIX, 2, 3);		/* past the table */
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_NO_VECTOR);
	wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, 2);		/* no queue 2 */
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
}

/* A request completes on the queue it was posted on, with that queue's vector. */
static void test_mq_completes_on_own_queue(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_stats st;
	uint16_t slots[2][8];
	const int N = 8;

	driver_init(f, 0);
	irqs_on(f, 0);
	irqs_on(f, 1);
	use_queue(f, 1);
	assert_int_equal(blk_read(f, 5, BUF, 512), VIRTIO_BLK_S_OK);
	assert_string_equal((char *)gp(f, BUF, 4), "S5");
	assert_int_equal(le32toh(f->used->ring[0].id), SLOT1);
	assert_int_equal(le16toh(f->other.used->idx), 0);	/* nothing on queue 0 */
	run_a_while(f);
	assert_true(irqs_on(f, 1) >= 1);
	assert_int_equal(irqs_on(f, 0), 0);

	/*
	 * Both queues busy at once: each ring gets back exactly its own chains. used_event
	 * (EVENT_IDX) = the current used index: interrupt me for anything new.
	 */
	for (unsigned int q = 0; q < 2; q++) {
		use_queue(f, q);
		f->avail->ring[QSZ] = f->used->idx;
		for (int i = 0; i < N; i++)
			slots[q][i] = post_read(f, 100u * q + (unsigned int)i, BUF + 0x10000 * (q + 1) + 512u * i);
	}
	use_queue(f, 0);
	kick(f);
	use_queue(f, 1);
	kick(f);
	run_until(f, N + 1);
	use_queue(f, 0);
	run_until(f, N);
	run_a_while(f);
	for (unsigned int q = 0; q < 2; q++) {
		use_queue(f, q);
		for (int k = 0; k < N; k++) {
			uint16_t id = (uint16_t)le32toh(f->used->ring[(k + q) % QSZ].id);
			bool mine = false;

			for (int i = 0; i < N; i++)
				mine |= id == slots[q][i];
			assert_true(mine);
		}
		for (int i = 0; i < N; i++) {
			char want[16];

			snprintf(want, sizeof(want), "S%u", 100u * q + (unsigned int)i);
			assert_int_equal(*(uint8_t *)gp(f, STATUS + slots[q][i], 1), VIRTIO_BLK_S_OK);
			assert_string_equal((char *)gp(f, BUF + 0x10000 * (q + 1) + 512u * i, 8), want);
		}
	}
	assert_true(irqs_on(f, 0) >= 1);
	assert_true(irqs_on(f, 1) >= 1);
	virtio_blk_stats(f->blk, &st);
	assert_int_equal(st.num_queues, 2);
	assert_int_equal(st.queue_reqs[0], N);
	assert_int_equal(st.queue_reqs[1], N + 1);
	assert_int_equal(st.read_reqs, 2 * N + 1);
	assert_int_equal(st.inflight, 0);
}

/* Notifies for queues the device does not have, or has but the driver left off: ignored. */
static void test_mq_hostile_notify(void **state)
{
	struct fx *f = *state;
	struct virtio_dev *vd = f->vp->vd;
	uint16_t idx;

	driver_init(f, 0);
	use_queue(f, 1);
	post_read(f, 9, BUF);
	/* A kick on queue 0's address does not serve queue 1. */
	use_queue(f, 0);
	kick(f);
	run_a_while(f);
	use_queue(f, 1);
	assert_int_equal(le16toh(f->used->idx), 0);
	/* Past the notify area (queue 2, 63, the area's last bytes): not a queue at all. */
	for (unsigned int q = 2; q < 64; q += 61) {
		idx = (uint16_t)q;
		virtio_pci_bar_write(f->vp, VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * q, &idx, 2);
	}
	idx = 0xffff;
	virtio_pci_bar_write(f->vp, VIRTIO_PCI_NOTIFY_OFF + 0xffe, &idx, 2);
	/* The transport's kick entry point and the device's own notify op, out of range. */
	virtio_pci_kick(f->vp, 2);
	virtio_pci_kick(f->vp, VIRTIO_MAX_QUEUES);
	virtio_pci_kick(f->vp, ~0u);
	pthread_mutex_lock(&vd->lock);
	vd->ops->queue_notify(vd, 2);
	vd->ops->queue_notify(vd, BLK_MAX_QUEUES + 5);
	pthread_mutex_unlock(&vd->lock);
	run_a_while(f);
	assert_int_equal(le16toh(f->used->idx), 0);
	assert_false(needs_reset(f));
	/* Its own kick serves it. */
	kick(f);
	run_until(f, 1);
	assert_string_equal((char *)gp(f, BUF, 4), "S9");

	/* A driver that uses only queue 0 (fewer CPUs than queues): queue 1's kicks are ignored. */
	wr(f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	f->enable_mask = 1;
	driver_init(f, 0);
	use_queue(f, 1);
	post_read(f, 3, BUF);
	kick(f);
	run_a_while(f);
	assert_int_equal(le16toh(f->used->idx), 0);
	use_queue(f, 0);
	assert_int_equal(blk_read(f, 4, BUF + 512, 512), VIRTIO_BLK_S_OK);
	assert_string_equal((char *)gp(f, BUF + 512, 4), "S4");
	assert_false(needs_reset(f));
}

/* Quiesce (before migration's final stop) waits for requests in flight on every queue. */
static void test_mq_quiesce_drains_all_queues(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_stats st;

	driver_init(f, 0);
	for (unsigned int q = 0; q < 2; q++) {
		use_queue(f, q);
		for (int i = 0; i < 4; i++) {
			uint16_t slot = f->next_desc;

			hdr_at(f, slot, VIRTIO_BLK_T_IN, 8u * i);
			post(f, (struct d[]){ { HDR + 16u * slot, 16, false },
					      { BUF + 0x40000 * q + 65536u * i, 65536, true },
					      { STATUS + slot, 1, true } }, 3);
		}
		virtio_pci_kick(f->vp, q);		/* submitted, completions not reaped yet */
	}
	virtio_blk_stats(f->blk, &st);
	assert_int_equal(st.inflight, 8);
	assert_int_equal(virtio_blk_quiesce(f->blk, 5000), 0);
	virtio_blk_stats(f->blk, &st);
	assert_int_equal(st.inflight, 0);
	assert_int_equal(st.queue_reqs[0], 4);
	assert_int_equal(st.queue_reqs[1], 4);
	for (unsigned int q = 0; q < 2; q++) {
		use_queue(f, q);
		assert_int_equal(le16toh(f->used->idx), 4);
	}
	virtio_blk_resume(f->blk);
}

/* A second device on @pb for the same image (the first one destroyed or no_lock). */
static struct virtio_blk *new_dev(struct fx *f, struct pci_bus *pb, unsigned int nq)
{
	struct virtio_pci_env env = { .pci = pb, .irq = &f->irq, .loop = &f->loop, .vm_fd = -1 };
	struct virtio_blk_opts o = { .path = f->path, .id = "blk0", .num_queues = nq, .no_lock = true };
	struct virtio_blk *b;
	char err[256];

	assert_int_equal(virtio_blk_create(&env, &f->mem, &o, &b, err, sizeof(err)), 0);
	return b;
}

/* Put a device back into the fixture (teardown destroys it). */
static void refill_fx(struct fx *f)
{
	struct virtio_pci_env env = { .pci = &f->pb, .irq = &f->irq, .loop = &f->loop, .vm_fd = -1 };
	struct virtio_blk_opts o = { .path = f->path, .id = "blk0", .num_queues = f->nq };
	char err[256];

	assert_int_equal(virtio_blk_create(&env, &f->mem, &o, &f->blk, err, sizeof(err)), 0);
	f->vp = f->pb.slots[1]->opaque;
}

/* The transport of the (only) device on @pb: its status register, as the guest reads it. */
static uint8_t bus_dev_status(struct pci_bus *pb)
{
	struct virtio_pci *vp = pb->slots[1]->opaque;

	return vp->vd->status;
}

/* Save @blk's section (quiesced through the registry) into *buf / *len. */
static void save_section(struct virtio_blk *blk, uint8_t **buf, size_t *len)
{
	struct state_registry reg = { 0 };
	struct state_mem_sink sink;

	assert_int_equal(virtio_blk_register_state(blk, &reg), 0);
	assert_int_equal(state_quiesce_all(&reg), 0);
	state_mem_sink_init(&sink);
	assert_int_equal(state_save_all(&reg, &sink.sink), 0);
	state_registry_destroy(&reg);
	*buf = sink.buf;
	*len = sink.len;
}

static int load_section(struct virtio_blk *blk, const uint8_t *buf, size_t len)
{
	struct state_registry reg = { 0 };
	int ret;

	assert_int_equal(virtio_blk_register_state(blk, &reg), 0);
	ret = state_load_buf(&reg, buf, len, NULL);
	state_registry_destroy(&reg);
	return ret;
}

/* Requests waiting on both queues across save/load: each served on its queue afterwards. */
static void test_mq_state_round_trip(void **state)
{
	struct fx *f = *state;
	struct pci_bus pb2;
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM, .irq = &f->irq };
	struct virtio_blk *b2;
	struct virtio_blk_state *st = malloc(sizeof(*st));
	uint8_t *buf;
	size_t len;

	assert_non_null(st);
	driver_init(f, 0);
	use_queue(f, 1);
	assert_int_equal(blk_read(f, 1, BUF, 512), VIRTIO_BLK_S_OK);	/* queue 1 at index 1 */
	use_queue(f, 0);
	assert_int_equal(virtio_blk_quiesce(f->blk, 1000), 0);
	post_read(f, 20, BUF + 0x1000);
	kick(f);
	use_queue(f, 1);
	post_read(f, 21, BUF + 0x2000);
	kick(f);
	run_a_while(f);						/* held back: quiesced */
	assert_int_equal(le16toh(f->used->idx), 1);
	assert_int_equal(virtio_blk_save(f->blk, st), 0);
	assert_int_equal(st->num_queues, 2);
	assert_int_equal(st->vq[0].last_avail_idx, 0);
	assert_int_equal(st->vq[1].last_avail_idx, 1);
	assert_int_equal(st->vq[1].desc, DESC1);
	assert_int_equal(st->transport.q[1].msix_vector, 1);
	save_section(f->blk, &buf, &len);
	virtio_blk_destroy(f->blk);
	f->blk = NULL;

	assert_int_equal(pci_init(&pb2, &penv), 0);
	b2 = new_dev(f, &pb2, 2);
	assert_int_equal(load_section(b2, buf, len), 0);
	f->vp = pb2.slots[1]->opaque;				/* kicks reach the new device */
	run_until(f, 2);					/* queue 1 (current) */
	assert_string_equal((char *)gp(f, BUF + 0x2000, 4), "S21");
	assert_int_equal(le32toh(f->used->ring[1].id), SLOT1 + 3);	/* 3 descriptors each */
	use_queue(f, 0);
	run_until(f, 1);
	assert_string_equal((char *)gp(f, BUF + 0x1000, 4), "S20");
	/* And both keep working on the destination. */
	assert_int_equal(blk_read(f, 22, BUF, 512), VIRTIO_BLK_S_OK);
	use_queue(f, 1);
	assert_int_equal(blk_read(f, 23, BUF + 512, 512), VIRTIO_BLK_S_OK);
	assert_string_equal((char *)gp(f, BUF + 512, 4), "S23");
	virtio_blk_destroy(b2);
	pci_destroy(&pb2);
	free(buf);
	free(st);
	refill_fx(f);
}

/* A stream's queue count must be the destination device's: 2 -> 1, 2 -> 3, 1 -> 2 refused. */
static void test_mq_count_mismatch(void **state)
{
	struct fx *f = *state;
	struct pci_bus pb2;
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM, .irq = &f->irq };
	struct virtio_blk *b;
	struct virtio_blk_state *st = malloc(sizeof(*st));
	uint8_t *buf, *buf1;
	size_t len, len1;

	assert_non_null(st);
	driver_init(f, 0);
	save_section(f->blk, &buf, &len);
	assert_int_equal(pci_init(&pb2, &penv), 0);
	for (unsigned int nq = 1; nq <= 3; nq += 2) {
		b = new_dev(f, &pb2, nq);
		assert_int_equal(load_section(b, buf, len), -EINVAL);
		/* Refused before the transport changed: the device is as created. */
		assert_int_equal(bus_dev_status(&pb2), 0);
		virtio_blk_destroy(b);
	}
	assert_int_equal(virtio_blk_save(f->blk, st), 0);
	b = new_dev(f, &pb2, 1);
	assert_int_equal(virtio_blk_load(b, st), -EINVAL);
	virtio_blk_destroy(b);

	/* A one-queue source (an older vmm, or --cpus 1) into a two-queue destination. */
	b = new_dev(f, &pb2, 1);
	save_section(b, &buf1, &len1);
	virtio_blk_destroy(b);
	b = new_dev(f, &pb2, 2);
	assert_int_equal(load_section(b, buf1, len1), -EINVAL);
	virtio_blk_destroy(b);
	b = new_dev(f, &pb2, 2);
	assert_int_equal(load_section(b, buf, len), 0);			/* the right count loads */
	virtio_blk_destroy(b);
	pci_destroy(&pb2);
	free(buf);
	free(buf1);
	free(st);
}

/*
 * Hand-made "virtio-blk" sections: what a vmm from before multi-queue wrote (tags 1-4 only),
 * and broken multi-queue shapes a hostile or corrupt stream could carry.
 */
enum { OLD_V1, BAD_NO_MORE, BAD_INDEX_0, BAD_INDEX_16, BAD_ZERO_QUEUES, BAD_REPEATED,
       BAD_TOO_MANY };
static int fake_mode;

static int fake_quiesce(void *opaque)
{
	return virtio_blk_quiesce(opaque, 1000);
}

static int fake_save(void *opaque, struct state_writer *w)
{
	struct virtio_blk_state *st = malloc(sizeof(*st));
	const uint16_t R = STATE_F_REQUIRED;

	assert_non_null(st);
	assert_int_equal(virtio_blk_save(opaque, st), 0);
	virtio_pci_state_write_nest(w, 1, &st->transport);
	virtio_vq_state_write_nest(w, 2, &st->vq[0]);
	sw_u64(w, 3, st->capacity, R);
	sw_u8(w, 4, st->read_only, R);
	switch (fake_mode) {
	case BAD_NO_MORE:	sw_u16(w, 5, 2, 0); break;
	case BAD_INDEX_0:	sw_u16(w, 5, 2, 0); virtio_vq_state_write_indexed(w, 6, 0, &st->vq[0]); break;
	case BAD_INDEX_16:	sw_u16(w, 5, 2, 0); virtio_vq_state_write_indexed(w, 6, 16, &st->vq[0]); break;
	case BAD_ZERO_QUEUES:	sw_u16(w, 5, 0, 0); break;
	case BAD_REPEATED:
		sw_u16(w, 5, 3, 0);
		virtio_vq_state_write_indexed(w, 6, 1, &st->vq[0]);
		virtio_vq_state_write_indexed(w, 6, 1, &st->vq[0]);
		break;
	case BAD_TOO_MANY:	sw_u16(w, 5, BLK_MAX_QUEUES + 1, 0); break;
	default:		break;
	}
	free(st);
	return sw_error(w);
}

/* Only the saving side uses fake_ops; the registry wants a load anyway. */
static int fake_load(void *opaque, struct state_reader *r, uint16_t version)
{
	return -EPROTO;
}

static void test_mq_old_and_broken_streams(void **state)
{
	static const struct state_ops fake_ops = { .name = "virtio-blk", .version = 1,
		.min_version = 1, .quiesce = fake_quiesce, .save = fake_save, .load = fake_load };
	struct fx *f = *state;
	struct pci_bus pb2;
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM, .irq = &f->irq };
	struct virtio_blk *b;

	driver_init(f, 0);
	assert_int_equal(blk_read(f, 7, BUF, 512), VIRTIO_BLK_S_OK);
	post_read(f, 30, BUF + 0x1000);
	assert_int_equal(pci_init(&pb2, &penv), 0);
	for (fake_mode = OLD_V1; fake_mode <= BAD_TOO_MANY; fake_mode++) {
		struct state_registry reg = { 0 };
		struct state_mem_sink sink;

		assert_int_equal(state_register(&reg, "blk0", &fake_ops, f->blk), 0);
		assert_int_equal(state_quiesce_all(&reg), 0);
		state_mem_sink_init(&sink);
		assert_int_equal(state_save_all(&reg, &sink.sink), 0);
		state_registry_destroy(&reg);
		virtio_blk_resume(f->blk);
		b = new_dev(f, &pb2, 1);
		if (fake_mode == OLD_V1) {
			/* Loads as one queue; the request posted before the save is served. */
			assert_int_equal(load_section(b, sink.buf, sink.len), 0);
			run_until(f, 2);
			assert_string_equal((char *)gp(f, BUF + 0x1000, 4), "S30");
		} else {
			assert_int_equal(load_section(b, sink.buf, sink.len), -EBADMSG);
			assert_int_equal(bus_dev_status(&pb2), 0);
		}
		virtio_blk_destroy(b);
		free(sink.buf);
	}
	pci_destroy(&pb2);
}

/* Without FLUSH negotiated the device writes through (fdatasync per write); still correct. */
static void test_no_flush_feature(void **state)
{
	struct fx *f = *state;
	uint8_t chk[1024];

	driver_init(f, 1ull << VIRTIO_BLK_F_FLUSH);
	fill(gp(f, BUF, 1024), 1024, 11);
	assert_int_equal(blk_write(f, 50, BUF, 1024), VIRTIO_BLK_S_OK);
	pread_all(f, chk, 1024, 50 * 512);
	assert_memory_equal(chk, gp(f, BUF, 1024), 1024);
}

/* O_DIRECT: aligned buffers go direct, a misaligned one through the buffered descriptor. */
static void test_direct(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_stats st;
	uint8_t chk[4096];

	virtio_blk_stats(f->blk, &st);
	assert_true(st.direct);
	driver_init(f, 0);
	fill(gp(f, BUF, 8192), 8192, 21);
	assert_int_equal(blk_write(f, 64, BUF, 8192), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_read(f, 64, BUF + 0x10000, 8192), VIRTIO_BLK_S_OK);
	assert_memory_equal(gp(f, BUF + 0x10000, 8192), gp(f, BUF, 8192), 8192);
	/* Odd buffer address and a 512-byte-granular file offset. */
	fill(gp(f, BUF + 0x20001, 1024), 1024, 22);
	assert_int_equal(blk_write(f, 1, BUF + 0x20001, 1024), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_read(f, 1, BUF + 0x30003, 1024), VIRTIO_BLK_S_OK);
	assert_memory_equal(gp(f, BUF + 0x30003, 1024), gp(f, BUF + 0x20001, 1024), 1024);
	pread_all(f, chk, 1024, 512);
	assert_memory_equal(chk, gp(f, BUF + 0x20001, 1024), 1024);
	/* Mixing both paths stays coherent: direct read of what the buffered write left. */
	assert_int_equal(blk_read(f, 0, BUF + 0x40000, 4096), VIRTIO_BLK_S_OK);
	assert_memory_equal(gp(f, BUF + 0x40000 + 512, 1024), gp(f, BUF + 0x20001, 1024), 1024);
}

/* The image layer on its own: errors of open, bounds, read-only, stats of the two paths. */
static void io_cb(struct image_io *io, int res)
{
	*(int *)io->opaque = res;
}

static void test_image_layer(void **state)
{
	struct evloop loop;
	struct image *img;
	struct image_io io;
	struct image_stats st;
	struct image_config c = { .path = "/nonexistent/x.img" };
	char err[256], path[] = "/tmp/vblk-img.XXXXXX";
	static uint8_t buf[8192] __attribute__((aligned(4096)));
	struct iovec iov[2];
	int fd, res = 1;

	(void)state;
	assert_int_equal(evloop_init(&loop, 8), 0);
	assert_int_equal(image_open(&c, &loop, &img, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "disk /nonexistent/x.img: No such file or directory");
	c.path = "/tmp";
	assert_int_equal(image_open(&c, &loop, &img, err, sizeof(err)), -EISDIR);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	c.path = path;
	assert_int_equal(image_open(&c, &loop, &img, err, sizeof(err)), -EINVAL);	/* empty */
	assert_non_null(strstr(err, "smaller than one"));
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	c.read_only = true;
	c.direct = true;
	assert_int_equal(image_open(&c, &loop, &img, err, sizeof(err)), 0);
	assert_true(image_read_only(img) && image_direct(img));
	assert_int_equal(image_size(img), 1 << 20);
	assert_true(image_block_size(img) >= 512);
	image_io_init(&io, img, io_cb, &res);
	iov[0] = (struct iovec){ buf, 4096 };
	assert_int_equal(image_writev(&io, iov, 1, 0, 0), -EROFS);
	assert_int_equal(image_discard(&io, 0, 4096), -EROFS);
	assert_int_equal(image_readv(&io, iov, 1, (1 << 20) - 2048), -EINVAL);	/* past the end */
	assert_int_equal(image_readv(&io, iov, 0, 0), -EINVAL);
	assert_int_equal(image_readv(&io, iov, 1, 0), 0);
	assert_int_equal(image_readv(&io, iov, 1, 0), -EBUSY);			/* one at a time */
	for (int i = 0; i < 100 && res == 1; i++)
		evloop_run_once(&loop, 10 * 1000 * 1000);
	assert_int_equal(res, 0);
	/* Two iovecs, the second misaligned: buffered path. */
	res = 1;
	iov[0] = (struct iovec){ buf, 512 };
	iov[1] = (struct iovec){ buf + 4096 + 7, 512 };
	assert_int_equal(image_readv(&io, iov, 2, 512), 0);
	for (int i = 0; i < 100 && res == 1; i++)
		evloop_run_once(&loop, 10 * 1000 * 1000);
	assert_int_equal(res, 0);
	image_get_stats(img, &st);
	assert_int_equal(st.direct_ops, 1);
	assert_int_equal(st.buffered_ops, 1);
	assert_int_equal(st.inflight, 0);
	image_close(img);
	evloop_destroy(&loop);
	close(fd);
	unlink(path);
}

static void test_create_errors(void **state)
{
	struct pci_bus pb;
	struct irq irq;
	struct evloop loop;
	struct guest_mem mem;
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM };
	struct virtio_pci_env env;
	struct virtio_blk *b;
	struct virtio_blk_opts o = { .path = "/nonexistent.img", .id = "blk9" };
	char err[256];

	(void)state;
	assert_int_equal(evloop_init(&loop, 8), 0);
	assert_int_equal(guest_mem_init(&mem, RAM), 0);
	assert_int_equal(irq_init(&irq, 42, 0), 0);
	penv.irq = &irq;
	assert_int_equal(pci_init(&pb, &penv), 0);
	env = (struct virtio_pci_env){ .pci = &pb, .irq = &irq, .loop = &loop, .vm_fd = -1 };
	assert_int_equal(virtio_blk_create(&env, &mem, &o, &b, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "disk /nonexistent.img: No such file or directory");
	o.path = "/dev/null";		/* a character device */
	assert_int_equal(virtio_blk_create(&env, &mem, &o, &b, err, sizeof(err)), -EINVAL);
	o.serial = "123456789012345678901";	/* 21 bytes */
	assert_int_equal(virtio_blk_create(&env, &mem, &o, &b, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "serial"));
	assert_null(pb.slots[1]);	/* nothing registered */
	pci_destroy(&pb);
	irq_destroy(&irq);
	guest_mem_destroy(&mem);
	evloop_destroy(&loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_config_and_features, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_config_and_features, setup_ro, teardown),
		cmocka_unit_test_setup_teardown(test_read_write_flush_getid, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_any_framing_and_indirect, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_discard_write_zeroes, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_discard_write_zeroes, setup_shm, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_requests, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_unanswerable_chains, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup_ro, teardown),
		cmocka_unit_test_setup_teardown(test_many_in_flight, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_reset_in_flight, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_quiesce_save_load, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_resume_after_quiesce, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_state_section, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_no_flush_feature, setup_rw, teardown),
		cmocka_unit_test_setup_teardown(test_direct, setup_direct, teardown),
		cmocka_unit_test_setup_teardown(test_mq_config, setup_mq, teardown),
		cmocka_unit_test_setup_teardown(test_mq_completes_on_own_queue, setup_mq, teardown),
		cmocka_unit_test_setup_teardown(test_mq_hostile_notify, setup_mq, teardown),
		cmocka_unit_test_setup_teardown(test_mq_quiesce_drains_all_queues, setup_mq, teardown),
		cmocka_unit_test_setup_teardown(test_mq_state_round_trip, setup_mq, teardown),
		cmocka_unit_test_setup_teardown(test_mq_count_mismatch, setup_mq, teardown),
		cmocka_unit_test_setup_teardown(test_mq_old_and_broken_streams, setup_rw, teardown),
		cmocka_unit_test(test_image_layer),
		cmocka_unit_test(test_create_errors),
	};
	return cmocka_run_group_tests_name("virtio_blk", tests, NULL, NULL);
}
