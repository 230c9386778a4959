// SPDX-License-Identifier: MIT
/*
 * virtio-net (vmm/virtio/net.c) driven like a guest driver would: feature negotiation and
 * queues through the virtio-pci BAR, split rings in a memfd "guest RAM", kicks through
 * virtio_pci_kick and the real event loop. The back-end is an AF_UNIX SOCK_SEQPACKET pair
 * (one datagram = virtio_net_hdr_v1 + frame, exactly what a tap with IFF_VNET_HDR gives), and
 * one test uses a real tap in a private network namespace (skipped where that is impossible).
 *
 * Covered: offered features follow the back-end's offloads, config space, tx (split header,
 * counters), rx without and with mergeable buffers (num_buffers, lengths, contents), a packet
 * held until the guest posts enough buffers, rx stopping and resuming on the guest's kick,
 * interrupts, the control queue, link status and announce, save/load, and every hostile case
 * (short/long/invalid-header tx, device-writable tx buffers, readable or tiny rx buffers,
 * invalid feature combinations, malformed control chains). kvm_ioctl is mocked (kvm_mock.h).
 */
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <linux/virtio_net.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>

#include "kvm_mock.h"
#include "net/tap.h"
#include "vmm/irq.h"
#include "vmm/lib/evloop.h"
#include "vmm/memory.h"
#include "vmm/state.h"
#include "vmm/virtio/net.h"
#include "vmm/virtio/pci.h"

#define RAM		(8u << 20)
#define QSZ		16
#define HDR		12
#define RING(q)		(0x10000u + (q) * 0x4000u)
#define BUF		0x100000u
#define ALL_TUN		(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)
#define F(b)		(1ull << (b))
#define BASE_F		(F(VIRTIO_F_VERSION_1) | F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS) | \
			 F(VIRTIO_NET_F_CTRL_VQ) | F(VIRTIO_NET_F_CTRL_RX) | F(VIRTIO_RING_F_EVENT_IDX))
#define TSO_F		(F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO4) | \
			 F(VIRTIO_NET_F_HOST_TSO4))
#define S_ALL		(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | \
			 VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK)

/* One driver-side split ring. */
struct drvq {
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t next, avail_idx;
};

struct fx {
	struct guest_mem mem;
	struct evloop loop;
	struct irq irq;
	struct pci_bus pb;
	struct virtio_net *net;
	struct virtio_pci *vp;
	int peer;			/* the "tap" side of the socket pair */
	struct drvq q[3];
	uint64_t buf_next;		/* bump allocator for guest buffers */
};

static const uint8_t MAC[6] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc };

static void *gp(struct fx *f, uint64_t gpa, uint64_t len)
{
	void *p = guest_mem_ptr(&f->mem, gpa, len);

	assert_non_null(p);
	return p;
}

static uint64_t galloc(struct fx *f, uint32_t len)
{
	uint64_t g = f->buf_next;

	f->buf_next += (len + 63) & ~63u;
	assert_true(f->buf_next < RAM);
	return g;
}

static void bar_wr(struct fx *f, uint32_t off, uint32_t len, uint32_t v)
{
	virtio_pci_bar_write(f->vp, off, &v, len);
}

static uint32_t bar_rd(struct fx *f, uint32_t off, uint32_t len)
{
	uint32_t v = 0;

	virtio_pci_bar_read(f->vp, off, &v, len);
	return v;
}

static uint8_t dev_status(struct fx *f) { return (uint8_t)bar_rd(f, VIRTIO_PCI_COMMON_STATUS, 1); }

static uint64_t dev_features(struct fx *f)
{
	uint64_t v;

	bar_wr(f, VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
	v = bar_rd(f, VIRTIO_PCI_COMMON_DF, 4);
	bar_wr(f, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	return v | (uint64_t)bar_rd(f, VIRTIO_PCI_COMMON_DF, 4) << 32;
}

static void run_loop(struct fx *f)
{
	/* A few short turns: posted work, polls, the before-wait hook (interrupts). */
	for (int i = 0; i < 6; i++)
		evloop_run_once(&f->loop, 5 * 1000 * 1000);
}

static unsigned int fx_tx_hold_us;	/* the next fx_create's tx completion hold */

/* Create the device on a socket pair whose back-end "supports" @tun offloads. */
static void fx_create(struct fx *f, unsigned int tun)
{
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM };
	struct virtio_pci_env env;
	struct virtio_net_params p = { .id = "net0", .fd_offloads = tun, .mtu = 1500,
				       .tx_hold_us = fx_tx_hold_us };
	int sv[2];

	memset(f, 0, sizeof(*f));
	memset(&mock, 0, sizeof(mock));
	assert_int_equal(evloop_init(&f->loop, 64), 0);
	assert_int_equal(guest_mem_init(&f->mem, RAM), 0);
	assert_int_equal(irq_init(&f->irq, 42, 0), 0);
	penv.irq = &f->irq;
	assert_int_equal(pci_init(&f->pb, &penv), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	p.fd = sv[0];
	f->peer = sv[1];
	memcpy(p.mac, MAC, 6);
	env = (struct virtio_pci_env){ .pci = &f->pb, .irq = &f->irq, .loop = &f->loop, .vm_fd = -1 };
	assert_int_equal(virtio_net_create(&env, &f->mem, &p, &f->net), 0);
	f->vp = f->pb.slots[1]->opaque;
	f->buf_next = BUF;
}

static void fx_destroy(struct fx *f)
{
	virtio_net_destroy(f->net);
	close(f->peer);
	pci_destroy(&f->pb);
	irq_destroy(&f->irq);
	guest_mem_destroy(&f->mem);
	evloop_destroy(&f->loop);
}

/* Negotiate @feat, set up all three queues, DRIVER_OK. */
static void drv_start(struct fx *f, uint64_t feat)
{
	bar_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	bar_wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	bar_wr(f, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)feat);
	bar_wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	bar_wr(f, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)(feat >> 32));
	bar_wr(f, VIRTIO_PCI_COMMON_STATUS, 1,
	       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
	assert_true(dev_status(f) & VIRTIO_CONFIG_S_FEATURES_OK);
	for (uint16_t q = 0; q < 3; q++) {
		struct drvq *d = &f->q[q];

		memset(gp(f, RING(q), 0x3000), 0, 0x3000);
		d->desc = gp(f, RING(q), 16 * QSZ);
		d->avail = gp(f, RING(q) + 0x1000, 6 + 2 * QSZ);
		d->used = gp(f, RING(q) + 0x2000, 6 + 8 * QSZ);
		d->next = d->avail_idx = 0;
		bar_wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
		bar_wr(f, VIRTIO_PCI_COMMON_Q_SIZE, 2, QSZ);
		bar_wr(f, VIRTIO_PCI_COMMON_Q_DESCLO, 4, RING(q));
		bar_wr(f, VIRTIO_PCI_COMMON_Q_AVAILLO, 4, RING(q) + 0x1000);
		bar_wr(f, VIRTIO_PCI_COMMON_Q_USEDLO, 4, RING(q) + 0x2000);
		bar_wr(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	}
	bar_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, S_ALL);
	run_loop(f);	/* the device starts polling its back-end */
}

struct seg { uint64_t gpa; uint32_t len; bool w; };

/* Post one chain (descriptors taken round-robin) and publish it. Returns the head. */
static uint16_t post(struct fx *f, unsigned int q, const struct seg *s, int n)
{
	struct drvq *d = &f->q[q];
	uint16_t head = d->next;

	for (int i = 0; i < n; i++) {
		uint16_t id = d->next;

		d->next = (uint16_t)((d->next + 1) % QSZ);
		d->desc[id] = (struct vring_desc){ s[i].gpa, s[i].len,
			(uint16_t)((s[i].w ? VRING_DESC_F_WRITE : 0) | (i + 1 < n ? VRING_DESC_F_NEXT : 0)),
			d->next };
	}
	d->avail->ring[d->avail_idx % QSZ] = head;
	__atomic_store_n(&d->avail->idx, ++d->avail_idx, __ATOMIC_RELEASE);
	return head;
}

static uint64_t post_rx(struct fx *f, uint32_t len)
{
	uint64_t g = galloc(f, len);
	struct seg s = { g, len, true };

	memset(gp(f, g, len), 0xee, len);
	post(f, 0, &s, 1);
	return g;
}

static void kick(struct fx *f, unsigned int q)
{
	virtio_pci_kick(f->vp, q);
	run_loop(f);
}

static uint16_t used_idx(struct fx *f, unsigned int q)
{
	return __atomic_load_n(&f->q[q].used->idx, __ATOMIC_ACQUIRE);
}

static struct virtio_net_stats stats(struct fx *f)
{
	struct virtio_net_stats s;

	virtio_net_stats(f->net, &s);
	return s;
}

/* A frame: hdr (zero but for @gso) + @len bytes of pattern @seed. */
static size_t make_pkt(uint8_t *p, size_t len, uint8_t seed)
{
	memset(p, 0, HDR);
	for (size_t i = 0; i < len; i++)
		p[HDR + i] = (uint8_t)(seed + i * 7);
	return HDR + len;
}

/* ---- features and config ---- */

static void test_features_follow_backend(void **state)
{
	struct fx f;
	uint64_t df;
	uint8_t cfg[17];

	(void)state;
	fx_create(&f, 0);
	df = dev_features(&f);
	assert_true(df & F(VIRTIO_F_VERSION_1));
	assert_true(df & F(VIRTIO_NET_F_MAC) && df & F(VIRTIO_NET_F_STATUS) && df & F(VIRTIO_NET_F_MTU));
	assert_true(df & F(VIRTIO_NET_F_MRG_RXBUF) && df & F(VIRTIO_NET_F_CTRL_VQ));
	assert_true(df & F(VIRTIO_NET_F_CSUM));		/* tx partial checksums: any tap */
	assert_false(df & (F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO4) |
			   F(VIRTIO_NET_F_GUEST_TSO6) | F(VIRTIO_NET_F_HOST_TSO4) |
			   F(VIRTIO_NET_F_HOST_TSO6) | F(VIRTIO_NET_F_GUEST_UFO) | F(VIRTIO_NET_F_HOST_UFO)));
	assert_false(df & F(VIRTIO_NET_F_MQ));
	for (unsigned int i = 0; i < sizeof(cfg); i++)
		cfg[i] = (uint8_t)bar_rd(&f, VIRTIO_PCI_DEVCFG_OFF + i, 1);
	assert_memory_equal(cfg, MAC, 6);
	assert_int_equal(cfg[6] | cfg[7] << 8, VIRTIO_NET_S_LINK_UP);
	assert_int_equal(cfg[8] | cfg[9] << 8, 1);		/* max_virtqueue_pairs */
	assert_int_equal(cfg[10] | cfg[11] << 8, 1500);		/* mtu */
	/* Writes to the config space change nothing. */
	bar_wr(&f, VIRTIO_PCI_DEVCFG_OFF, 4, 0x11223344);
	assert_int_equal(bar_rd(&f, VIRTIO_PCI_DEVCFG_OFF, 1), MAC[0]);
	fx_destroy(&f);

	fx_create(&f, ALL_TUN);
	df = dev_features(&f);
	assert_true((df & TSO_F) == TSO_F);
	assert_true(df & F(VIRTIO_NET_F_GUEST_TSO6) && df & F(VIRTIO_NET_F_HOST_TSO6));
	assert_true(df & F(VIRTIO_NET_F_GUEST_ECN) && df & F(VIRTIO_NET_F_HOST_ECN));
	assert_false(df & (F(VIRTIO_NET_F_GUEST_UFO) | F(VIRTIO_NET_F_HOST_UFO)));
	fx_destroy(&f);
}

static void test_invalid_feature_combination(void **state)
{
	struct fx f;

	(void)state;
	fx_create(&f, ALL_TUN);
	/* GUEST_TSO4 without GUEST_CSUM (§5.1.3.1): refused at DRIVER_OK. */
	drv_start(&f, BASE_F | F(VIRTIO_NET_F_GUEST_TSO4));
	assert_true(dev_status(&f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* After a reset a valid set works. */
	bar_wr(&f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	drv_start(&f, BASE_F | TSO_F);
	assert_false(dev_status(&f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	fx_destroy(&f);
}

/* ---- transmit ---- */

static void test_tx(void **state)
{
	struct fx f;
	uint8_t pkt[200], got[300];
	uint64_t g;
	ssize_t n;

	(void)state;
	fx_create(&f, 0);
	drv_start(&f, BASE_F | F(VIRTIO_NET_F_CSUM));
	make_pkt(pkt, 60, 1);
	/* Header split across two descriptors, payload over two more. */
	g = galloc(&f, 200);
	memcpy(gp(&f, g, 72), pkt, 72);
	{
		struct seg s[4] = { { g, 5, false }, { g + 5, 7, false }, { g + 12, 20, false },
				    { g + 32, 40, false } };

		post(&f, 1, s, 4);
	}
	kick(&f, 1);
	assert_int_equal(used_idx(&f, 1), 1);
	assert_int_equal(f.q[1].used->ring[0].len, 0);
	n = recv(f.peer, got, sizeof(got), MSG_DONTWAIT);
	assert_int_equal(n, 72);
	assert_memory_equal(got, pkt, 72);
	assert_int_equal(stats(&f).tx_packets, 1);
	assert_int_equal(stats(&f).tx_bytes, 60);
	/* The used-buffer interrupt went out (INTx: no MSI-X set up). */
	assert_true(mock.irq_line > 0);

	/* NEEDS_CSUM with a valid position is passed through. */
	{
		struct virtio_net_hdr_v1 *h = gp(&f, g, HDR);
		struct seg s = { g, 72, false };

		h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		h->csum_start = 34;
		h->csum_offset = 16;
		post(&f, 1, &s, 1);
		kick(&f, 1);
		assert_int_equal(recv(f.peer, got, sizeof(got), MSG_DONTWAIT), 72);
		assert_int_equal(got[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
	}
	fx_destroy(&f);
}

/* Tx completion hold: the packet goes out at once, its used entry comes later. */
static void test_tx_hold(void **state)
{
	struct fx f;
	uint8_t pkt[100], got[200];
	uint64_t g;
	struct timespec t0, t1;

	(void)state;
	fx_tx_hold_us = 20000;		/* 20 ms: far longer than run_loop's turns here */
	fx_create(&f, 0);
	fx_tx_hold_us = 0;
	drv_start(&f, BASE_F | F(VIRTIO_NET_F_CSUM));
	make_pkt(pkt, 60, 1);
	g = galloc(&f, 100);
	memcpy(gp(&f, g, 72), pkt, 72);
	{
		struct seg s = { g, 72, false };

		post(&f, 1, &s, 1);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	virtio_pci_kick(f.vp, 1);
	evloop_run_once(&f.loop, 0);
	assert_int_equal(recv(f.peer, got, sizeof(got), MSG_DONTWAIT), 72);	/* on the wire */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if ((t1.tv_sec - t0.tv_sec) * 1000000000L + t1.tv_nsec - t0.tv_nsec < 15000000L)
		assert_int_equal(used_idx(&f, 1), 0);	/* ... and still held */
	/* The timer releases it (bounded wait). */
	for (int i = 0; i < 200 && used_idx(&f, 1) == 0; i++)
		evloop_run_once(&f.loop, 5 * 1000 * 1000);
	assert_int_equal(used_idx(&f, 1), 1);
	assert_int_equal(stats(&f).tx_packets, 1);

	/* A quarter of the ring (QSZ / 4 = 4 chains) is pushed without waiting for the timer. */
	for (int i = 0; i < 4; i++) {
		struct seg s = { g, 72, false };

		post(&f, 1, &s, 1);
	}
	virtio_pci_kick(f.vp, 1);
	evloop_run_once(&f.loop, 0);
	assert_int_equal(used_idx(&f, 1), 5);

	/* 64 KiB held (one chain this big) is pushed at once too: a fast sender never waits. */
	{
		uint64_t big = galloc(&f, 65536);
		struct seg s = { big, 65536, false };

		memset(gp(&f, big, 65536), 0, 65536);
		memcpy(gp(&f, big, 72), pkt, 72);
		post(&f, 1, &s, 1);
	}
	virtio_pci_kick(f.vp, 1);
	evloop_run_once(&f.loop, 0);
	assert_int_equal(used_idx(&f, 1), 6);

	/* Quiesce (stop-and-copy) pushes what is held: a saved ring owes the guest nothing. */
	{
		struct seg s = { g, 72, false };

		post(&f, 1, &s, 1);
	}
	virtio_pci_kick(f.vp, 1);
	evloop_run_once(&f.loop, 0);
	virtio_net_quiesce(f.net);
	assert_int_equal(used_idx(&f, 1), 7);
	virtio_net_resume(f.net);
	while (recv(f.peer, got, sizeof(got), MSG_DONTWAIT) > 0)
		;
	assert_int_equal(stats(&f).tx_packets + stats(&f).tx_drops, 7);
	fx_destroy(&f);
}

static void test_tx_hostile(void **state)
{
	struct fx f;
	uint8_t got[100];
	uint64_t g;
	struct virtio_net_hdr_v1 *h;
	uint16_t u = 0;

	(void)state;
	fx_create(&f, ALL_TUN);
	drv_start(&f, BASE_F | F(VIRTIO_NET_F_CSUM));	/* no HOST_TSO negotiated */
	g = galloc(&f, 70000);
	memset(gp(&f, g, 70000), 0, 70000);
	h = gp(&f, g, HDR);
	{
		struct seg shorty = { g, 8, false };		/* shorter than the header */
		struct seg huge = { g, 70000, false };		/* beyond 64 KiB + header */
		struct seg ok = { g, 100, false };

		post(&f, 1, &shorty, 1);
		post(&f, 1, &huge, 1);
		kick(&f, 1);
		u += 2;
		h->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;		/* not negotiated */
		h->gso_size = 1448;
		post(&f, 1, &ok, 1);
		kick(&f, 1);
		u++;
		h->gso_type = 0;
		h->gso_size = 0;
		h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;		/* checksum field past the end */
		h->csum_start = 80;
		h->csum_offset = 16;
		post(&f, 1, &ok, 1);
		kick(&f, 1);
		u++;
		h->flags = 0x80;				/* unknown flag */
		post(&f, 1, &ok, 1);
		kick(&f, 1);
		u++;
	}
	assert_int_equal(used_idx(&f, 1), u);			/* every chain returned */
	assert_int_equal(stats(&f).tx_drops, 5);
	assert_int_equal(stats(&f).tx_packets, 0);
	assert_int_equal(recv(f.peer, got, sizeof(got), MSG_DONTWAIT), -1);	/* nothing sent */
	assert_false(dev_status(&f) & VIRTIO_CONFIG_S_NEEDS_RESET);

	/* A device-writable buffer in a tx chain breaks the rules: NEEDS_RESET. */
	{
		struct seg bad[2] = { { g, 50, false }, { g + 64, 50, true } };

		post(&f, 1, bad, 2);
		kick(&f, 1);
	}
	assert_true(dev_status(&f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(used_idx(&f, 1), u);
	fx_destroy(&f);

	/* A descriptor outside guest RAM. */
	fx_create(&f, 0);
	drv_start(&f, BASE_F);
	{
		struct seg out = { RAM - 8, 64, false };

		post(&f, 1, &out, 1);
		kick(&f, 1);
	}
	assert_true(dev_status(&f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	fx_destroy(&f);
}

/* ---- receive ---- */

static void test_rx_single_buffers(void **state)
{
	struct fx f;
	uint8_t pkt[2000];
	uint64_t g;
	unsigned int irqs;
	size_t n;

	(void)state;
	fx_create(&f, 0);
	drv_start(&f, BASE_F);			/* no MRG_RXBUF: one chain per packet */
	g = post_rx(&f, HDR + 1514);
	kick(&f, 0);
	irqs = mock.irq_line;
	n = make_pkt(pkt, 100, 3);
	assert_int_equal(send(f.peer, pkt, n, 0), (ssize_t)n);
	run_loop(&f);
	assert_int_equal(used_idx(&f, 0), 1);
	assert_int_equal(f.q[0].used->ring[0].len, n);
	assert_memory_equal(gp(&f, g + HDR, 100), pkt + HDR, 100);
	assert_int_equal(((struct virtio_net_hdr_v1 *)gp(&f, g, HDR))->num_buffers, 1);
	assert_true(mock.irq_line > irqs);
	assert_int_equal(stats(&f).rx_packets, 1);
	assert_int_equal(stats(&f).rx_bytes, 100);

	/* A packet larger than the posted buffer: dropped, the buffer stays for the next one. */
	g = post_rx(&f, 200);
	kick(&f, 0);		/* rx had stopped with an empty ring: the driver must kick */
	n = make_pkt(pkt, 1000, 4);
	assert_int_equal(send(f.peer, pkt, n, 0), (ssize_t)n);
	n = make_pkt(pkt, 150, 5);
	assert_int_equal(send(f.peer, pkt, n, 0), (ssize_t)n);
	run_loop(&f);
	assert_int_equal(stats(&f).rx_drops, 1);
	assert_int_equal(used_idx(&f, 0), 2);
	assert_int_equal(f.q[0].used->ring[1].len, n);
	assert_memory_equal(gp(&f, g + HDR, 150), pkt + HDR, 150);
	fx_destroy(&f);
}

static void test_rx_mergeable(void **state)
{
	struct fx f;
	static uint8_t pkt[4000];
	uint64_t g[6];
	struct virtio_net_hdr_v1 *h;
	size_t n;

	(void)state;
	fx_create(&f, ALL_TUN);
	drv_start(&f, BASE_F | TSO_F | F(VIRTIO_NET_F_MRG_RXBUF));
	for (int i = 0; i < 6; i++)
		g[i] = post_rx(&f, 1024);
	kick(&f, 0);
	n = make_pkt(pkt, 3000, 9);
	pkt[0] = VIRTIO_NET_HDR_F_DATA_VALID;
	assert_int_equal(send(f.peer, pkt, n, 0), (ssize_t)n);
	run_loop(&f);
	/* 3012 bytes: 1024 + 1024 + 964, num_buffers 3, one used->idx step of 3. */
	assert_int_equal(used_idx(&f, 0), 3);
	assert_int_equal(f.q[0].used->ring[0].len, 1024);
	assert_int_equal(f.q[0].used->ring[1].len, 1024);
	assert_int_equal(f.q[0].used->ring[2].len, 964);
	for (int i = 0; i < 3; i++)
		assert_int_equal(f.q[0].used->ring[i].id, i);
	h = gp(&f, g[0], HDR);
	assert_int_equal(h->num_buffers, 3);
	assert_int_equal(h->flags, VIRTIO_NET_HDR_F_DATA_VALID);
	assert_memory_equal(gp(&f, g[0] + HDR, 1012), pkt + HDR, 1012);
	assert_memory_equal(gp(&f, g[1], 1024), pkt + 1024, 1024);
	assert_memory_equal(gp(&f, g[2], 964), pkt + 2048, 964);
	/* The chains not needed went back: the next packet starts in chain 3. */
	n = make_pkt(pkt, 60, 10);
	assert_int_equal(send(f.peer, pkt, n, 0), (ssize_t)n);
	run_loop(&f);
	assert_int_equal(used_idx(&f, 0), 4);
	assert_int_equal(f.q[0].used->ring[3].id, 3);
	assert_int_equal(f.q[0].used->ring[3].len, n);
	assert_int_equal(((struct virtio_net_hdr_v1 *)gp(&f, g[3], HDR))->num_buffers, 1);
	fx_destroy(&f);
}

static void test_rx_waits_for_buffers(void **state)
{
	struct fx f;
	static uint8_t pkt[4000];
	uint64_t g0;
	size_t n;

	(void)state;
	fx_create(&f, ALL_TUN);
	drv_start(&f, BASE_F | TSO_F | F(VIRTIO_NET_F_MRG_RXBUF));
	/* No buffers at all: the packet waits in the back-end, rx stops. */
	n = make_pkt(pkt, 100, 1);
	assert_int_equal(send(f.peer, pkt, n, 0), (ssize_t)n);
	run_loop(&f);
	assert_int_equal(used_idx(&f, 0), 0);
	assert_true(stats(&f).rx_nobuf >= 1);
	g0 = post_rx(&f, 1024);
	kick(&f, 0);				/* the guest's kick restarts rx */
	assert_int_equal(used_idx(&f, 0), 1);
	assert_memory_equal(gp(&f, g0 + HDR, 100), pkt + HDR, 100);

	/* One 1 KiB buffer for a 3 KiB packet: held until the guest posts two more. */
	g0 = post_rx(&f, 1024);
	kick(&f, 0);
	n = make_pkt(pkt, 3000, 2);
	assert_int_equal(send(f.peer, pkt, n, 0), (ssize_t)n);
	run_loop(&f);
	assert_int_equal(used_idx(&f, 0), 1);
	post_rx(&f, 1024);
	post_rx(&f, 1024);
	kick(&f, 0);
	assert_int_equal(used_idx(&f, 0), 4);
	assert_int_equal(((struct virtio_net_hdr_v1 *)gp(&f, g0, HDR))->num_buffers, 3);
	assert_memory_equal(gp(&f, g0 + HDR, 1012), pkt + HDR, 1012);
	assert_int_equal(stats(&f).rx_packets, 2);
	assert_int_equal(stats(&f).rx_drops, 0);
	fx_destroy(&f);
}

static void test_rx_hostile(void **state)
{
	struct fx f;
	uint8_t pkt[200];
	size_t n;

	(void)state;
	/* A device-readable descriptor in a receive chain. */
	fx_create(&f, 0);
	drv_start(&f, BASE_F);
	{
		uint64_t g = galloc(&f, 2000);
		struct seg s[2] = { { g, 12, false }, { g + 64, 1600, true } };

		post(&f, 0, s, 2);
	}
	n = make_pkt(pkt, 100, 1);
	assert_int_equal(send(f.peer, pkt, n, 0), (ssize_t)n);
	kick(&f, 0);
	assert_true(dev_status(&f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(used_idx(&f, 0), 0);
	fx_destroy(&f);

	/* A mergeable buffer smaller than the header (§5.1.6.3.1). */
	fx_create(&f, 0);
	drv_start(&f, BASE_F | F(VIRTIO_NET_F_MRG_RXBUF));
	post_rx(&f, 8);
	assert_int_equal(send(f.peer, pkt, n, 0), (ssize_t)n);
	kick(&f, 0);
	assert_true(dev_status(&f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(used_idx(&f, 0), 0);
	fx_destroy(&f);
}

/* ---- control queue, link, announce ---- */

static uint8_t ctrl_cmd(struct fx *f, const void *cmd, uint32_t len)
{
	uint64_t g = galloc(f, len + 1);
	uint8_t *ack = gp(f, g + len, 1);
	struct seg s[2] = { { g, len, false }, { g + len, 1, true } };
	uint16_t before = used_idx(f, 2);

	memcpy(gp(f, g, len), cmd, len);
	*ack = 0x55;
	post(f, 2, s, 2);
	kick(f, 2);
	assert_int_equal(used_idx(f, 2), (uint16_t)(before + 1));
	return *ack;
}

static void test_ctrl_link_announce(void **state)
{
	struct fx f;
	uint8_t promisc[3] = { VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, 1 };
	uint8_t bogus[3] = { 99, 0, 0 };
	uint8_t table[2 + 4 + 6 + 4] = { VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, 1, 0, 0, 0,
					 0x02, 1, 2, 3, 4, 5, 0, 0, 0, 0 };
	uint8_t badtable[2 + 4] = { VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, 9, 0, 0, 0 };
	uint8_t setmac[8] = { VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, 0x02, 9, 8, 7, 6, 5 };
	uint8_t annack[2] = { VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK };
	uint8_t gen;

	(void)state;
	fx_create(&f, 0);
	drv_start(&f, BASE_F | F(VIRTIO_NET_F_CTRL_MAC_ADDR) | F(VIRTIO_NET_F_GUEST_ANNOUNCE));
	assert_int_equal(ctrl_cmd(&f, promisc, 3), VIRTIO_NET_OK);
	assert_int_equal(ctrl_cmd(&f, bogus, 3), VIRTIO_NET_ERR);
	assert_int_equal(ctrl_cmd(&f, table, sizeof(table)), VIRTIO_NET_OK);
	assert_int_equal(ctrl_cmd(&f, badtable, sizeof(badtable)), VIRTIO_NET_ERR);
	assert_int_equal(ctrl_cmd(&f, setmac, sizeof(setmac)), VIRTIO_NET_OK);
	assert_int_equal(bar_rd(&f, VIRTIO_PCI_DEVCFG_OFF + 1, 1), 9);

	/* Link down: status bit cleared, config generation moves, tx dropped. */
	gen = (uint8_t)bar_rd(&f, VIRTIO_PCI_COMMON_CFGGENERATION, 1);
	virtio_net_set_link(f.net, false);
	run_loop(&f);
	assert_int_equal(bar_rd(&f, VIRTIO_PCI_DEVCFG_OFF + 6, 2) & VIRTIO_NET_S_LINK_UP, 0);
	assert_int_not_equal(bar_rd(&f, VIRTIO_PCI_COMMON_CFGGENERATION, 1), gen);
	{
		uint64_t g = galloc(&f, 100);
		struct seg s = { g, 80, false };
		uint8_t got[100];

		memset(gp(&f, g, 80), 0, 80);
		post(&f, 1, &s, 1);
		kick(&f, 1);
		assert_int_equal(recv(f.peer, got, sizeof(got), MSG_DONTWAIT), -1);
		assert_int_equal(stats(&f).tx_drops, 1);
	}
	virtio_net_set_link(f.net, true);
	assert_true(bar_rd(&f, VIRTIO_PCI_DEVCFG_OFF + 6, 2) & VIRTIO_NET_S_LINK_UP);

	/* Announce: status bit until the guest acks it on the control queue. */
	assert_true(virtio_net_announce(f.net));
	assert_true(bar_rd(&f, VIRTIO_PCI_DEVCFG_OFF + 6, 2) & VIRTIO_NET_S_ANNOUNCE);
	assert_int_equal(ctrl_cmd(&f, annack, 2), VIRTIO_NET_OK);
	assert_false(bar_rd(&f, VIRTIO_PCI_DEVCFG_OFF + 6, 2) & VIRTIO_NET_S_ANNOUNCE);

	/* A control chain without a writable ack byte: malformed. */
	{
		uint64_t g = galloc(&f, 4);
		struct seg s = { g, 3, false };

		memcpy(gp(&f, g, 3), promisc, 3);
		post(&f, 2, &s, 1);
		kick(&f, 2);
	}
	assert_true(dev_status(&f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	fx_destroy(&f);
}

/* ---- state ---- */

static void test_save_load(void **state)
{
	struct fx f;
	struct virtio_net_state *st = calloc(1, sizeof(*st));
	struct virtio_net *net2;
	struct pci_bus pb2;
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM, .irq = NULL };
	struct virtio_net_params p = { .id = "net0", .mtu = 1500 };
	struct virtio_pci_env env2;
	uint8_t pkt[100], got[200];
	uint64_t g;
	int sv[2];
	size_t n;

	(void)state;
	assert_non_null(st);
	fx_create(&f, 0);
	drv_start(&f, BASE_F | F(VIRTIO_NET_F_MRG_RXBUF));
	post_rx(&f, 1024);
	post_rx(&f, 1024);
	kick(&f, 0);
	n = make_pkt(pkt, 60, 1);
	assert_int_equal(send(f.peer, pkt, n, 0), (ssize_t)n);
	run_loop(&f);
	assert_int_equal(used_idx(&f, 0), 1);
	virtio_net_set_link(f.net, false);
	virtio_net_save(f.net, st);
	assert_int_equal(st->vq[0].last_avail_idx, 1);
	assert_int_equal(st->vq[0].used_idx, 1);
	assert_memory_equal(st->mac, MAC, 6);
	assert_int_equal(st->status, 0);

	/* A second device on another bus, same RAM, its own back-end: it continues the rings. */
	penv.irq = &f.irq;
	assert_int_equal(pci_init(&pb2, &penv), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	p.fd = sv[0];
	memcpy(p.mac, "\x02\x00\x00\x00\x00\x01", 6);
	env2 = (struct virtio_pci_env){ .pci = &pb2, .irq = &f.irq, .loop = &f.loop, .vm_fd = -1 };
	assert_int_equal(virtio_net_create(&env2, &f.mem, &p, &net2), 0);
	assert_int_equal(virtio_net_load(net2, st), 0);
	virtio_net_set_link(net2, true);
	run_loop(&f);
	assert_int_equal(send(sv[1], pkt, n, 0), (ssize_t)n);
	run_loop(&f);
	assert_int_equal(used_idx(&f, 0), 2);		/* the second posted buffer */
	assert_int_equal(f.q[0].used->ring[1].id, 1);
	g = galloc(&f, 100);
	memcpy(gp(&f, g, n), pkt, n);
	{
		struct seg s = { g, (uint32_t)n, false };

		post(&f, 1, &s, 1);
	}
	virtio_pci_kick(pb2.slots[1]->opaque, 1);
	run_loop(&f);
	assert_int_equal(recv(sv[1], got, sizeof(got), MSG_DONTWAIT), (ssize_t)n);

	/* Hostile states are refused. */
	st->vq[0].used += 0x1000;
	assert_int_equal(virtio_net_load(net2, st), -EINVAL);
	st->vq[0].used -= 0x1000;
	st->mac[0] = 1;					/* multicast */
	assert_int_equal(virtio_net_load(net2, st), -EINVAL);

	virtio_net_destroy(net2);
	close(sv[1]);
	pci_destroy(&pb2);
	free(st);
	fx_destroy(&f);
}


/* The same through the state stream: a "virtio-net" section, TLV round trip. */
static void test_state_stream(void **state)
{
	struct fx f;
	struct state_registry reg1 = { 0 }, reg2 = { 0 };
	struct state_mem_sink sink;
	struct virtio_net *net2;
	struct pci_bus pb2;
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM };
	struct virtio_net_params p = { .id = "net0", .mtu = 1500, .mac = { 0x02, 0, 0, 0, 0, 9 } };
	struct virtio_pci_env env2;
	struct virtio_net_state *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	uint8_t pkt[100];
	int sv[2];
	size_t n;

	(void)state;
	assert_true(a && b);
	fx_create(&f, 0);
	drv_start(&f, BASE_F | F(VIRTIO_NET_F_MRG_RXBUF));
	post_rx(&f, 1024);
	kick(&f, 0);
	n = make_pkt(pkt, 60, 1);
	assert_int_equal(send(f.peer, pkt, n, 0), (ssize_t)n);
	run_loop(&f);
	assert_int_equal(used_idx(&f, 0), 1);
	assert_int_equal(virtio_net_register_state(f.net, &reg1), 0);
	state_mem_sink_init(&sink);
	assert_int_equal(state_save_all(&reg1, &sink.sink), 0);

	penv.irq = &f.irq;
	assert_int_equal(pci_init(&pb2, &penv), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	p.fd = sv[0];
	env2 = (struct virtio_pci_env){ .pci = &pb2, .irq = &f.irq, .loop = &f.loop, .vm_fd = -1 };
	assert_int_equal(virtio_net_create(&env2, &f.mem, &p, &net2), 0);
	assert_int_equal(virtio_net_register_state(net2, &reg2), 0);
	assert_int_equal(state_load_buf(&reg2, sink.buf, sink.len, NULL), 0);
	virtio_net_save(f.net, a);
	virtio_net_save(net2, b);
	for (int q = 0; q < 3; q++) {		/* the re-kick after load may move signalled_used */
		assert_int_equal(a->vq[q].enabled, b->vq[q].enabled);
		assert_int_equal(a->vq[q].desc, b->vq[q].desc);
		assert_int_equal(a->vq[q].used, b->vq[q].used);
		assert_int_equal(a->vq[q].last_avail_idx, b->vq[q].last_avail_idx);
		assert_int_equal(a->vq[q].used_idx, b->vq[q].used_idx);
	}
	assert_int_equal(b->vq[0].used_idx, 1);
	assert_memory_equal(b->mac, MAC, 6);			/* the source's MAC, not ours */
	assert_int_equal(b->status, VIRTIO_NET_S_LINK_UP);
	assert_int_equal(b->transport.acked_features, a->transport.acked_features);
	/* A truncated stream is refused before the device changes. */
	assert_true(state_load_buf(&reg2, sink.buf, sink.len - 9, NULL) < 0);

	state_registry_destroy(&reg1);
	state_registry_destroy(&reg2);
	free(sink.buf);
	virtio_net_destroy(net2);
	close(sv[1]);
	pci_destroy(&pb2);
	free(a);
	free(b);
	fx_destroy(&f);
}

/* ---- MAC helpers ---- */

static void test_mac(void **state)
{
	uint8_t a[6], b[6], c[6];

	(void)state;
	virtio_net_mac_generate("vm-a", 0, a);
	virtio_net_mac_generate("vm-a", 0, b);
	virtio_net_mac_generate("vm-a", 1, c);
	assert_memory_equal(a, b, 6);				/* stable */
	assert_memory_not_equal(a, c, 6);			/* per index */
	virtio_net_mac_generate("vm-b", 0, c);
	assert_memory_not_equal(a, c, 6);			/* per VM */
	assert_int_equal(a[0] & 3, 2);				/* local, unicast */
	assert_int_equal(virtio_net_mac_parse("52:54:00:12:34:56", a), 0);
	assert_int_equal(a[5], 0x56);
	assert_int_equal(virtio_net_mac_parse("01:00:5e:00:00:01", a), -EINVAL);
	assert_int_equal(virtio_net_mac_parse("00:00:00:00:00:00", a), -EINVAL);
	assert_int_equal(virtio_net_mac_parse("52:54:00:12:34", a), -EINVAL);
	assert_int_equal(virtio_net_mac_parse("52:54:00:12:34:56:78", a), -EINVAL);
	assert_int_equal(virtio_net_mac_parse("52:54:00:12:34:5g", a), -EINVAL);
}

/* ---- a real tap, in a private network namespace ---- */

static int ifflags(const char *name, short set)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM, 0), ret;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ret = ioctl(s, SIOCGIFFLAGS, &ifr);
	ifr.ifr_flags |= set;
	if (!ret)
		ret = ioctl(s, SIOCSIFFLAGS, &ifr);
	close(s);
	return ret;
}

static int tap_tso(const char *name)
{
	struct ethtool_value ev = { .cmd = ETHTOOL_GTSO };
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM, 0), ret;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_data = (void *)&ev;
	ret = ioctl(s, SIOCETHTOOL, &ifr);
	close(s);
	return ret < 0 ? -1 : (int)ev.data;
}

#define TEST_ETHERTYPE	0x88b5		/* IEEE local experimental */

static void test_real_tap(void **state)
{
	struct fx f;
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM };
	struct virtio_pci_env env;
	struct virtio_net_params p = { .id = "net0", .tap = "vmctltest0", .fd = -1 };
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	struct tap t;
	uint8_t frame[64], got[200];
	uint64_t g;
	int ps, found = 0;
	FILE *fp;

	(void)state;
	if (unshare(CLONE_NEWNET) < 0)
		skip();		/* not root / no user namespaces: covered by tests/guest/net.sh */
	/* Keep the kernel's own IPv6 chatter off the tap. */
	fp = fopen("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w");
	if (fp) {
		fputs("1", fp);
		fclose(fp);
	}
	/* tap_open on a name that is too long fails cleanly. */
	assert_int_equal(tap_open("a-name-much-too-long", false, &t), -EINVAL);

	memset(&f, 0, sizeof(f));
	memset(&mock, 0, sizeof(mock));
	assert_int_equal(evloop_init(&f.loop, 64), 0);
	assert_int_equal(guest_mem_init(&f.mem, RAM), 0);
	assert_int_equal(irq_init(&f.irq, 42, 0), 0);
	penv.irq = &f.irq;
	assert_int_equal(pci_init(&f.pb, &penv), 0);
	memcpy(p.mac, MAC, 6);
	env = (struct virtio_pci_env){ .pci = &f.pb, .irq = &f.irq, .loop = &f.loop, .vm_fd = -1 };
	assert_int_equal(virtio_net_create(&env, &f.mem, &p, &f.net), 0);
	f.vp = f.pb.slots[1]->opaque;
	f.buf_next = BUF;
	f.peer = -1;
	assert_string_equal(virtio_net_tap_name(f.net), "vmctltest0");
	/* Linux taps support checksum and TSO offloads: offered to the guest. */
	assert_true((dev_features(&f) & TSO_F) == TSO_F);
	assert_int_equal(tap_tso("vmctltest0"), 0);
	drv_start(&f, BASE_F | TSO_F | F(VIRTIO_NET_F_MRG_RXBUF));
	assert_false(dev_status(&f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* Negotiated guest TSO reached the tap (TUNSETOFFLOAD -> netdev features). */
	assert_int_equal(tap_tso("vmctltest0"), 1);
	assert_int_equal(ifflags("vmctltest0", IFF_UP), 0);

	ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(TEST_ETHERTYPE));
	assert_true(ps >= 0);
	sll.sll_protocol = htons(TEST_ETHERTYPE);
	sll.sll_ifindex = (int)if_nametoindex("vmctltest0");
	assert_int_equal(bind(ps, (struct sockaddr *)&sll, sizeof(sll)), 0);

	/* host -> guest: a frame sent on the tap's netdev comes out of the tap fd into rx. */
	for (int i = 0; i < 8; i++)
		post_rx(&f, 2048);
	kick(&f, 0);
	memcpy(frame, MAC, 6);
	memcpy(frame + 6, "\x02\x11\x22\x33\x44\x55", 6);
	frame[12] = TEST_ETHERTYPE >> 8;
	frame[13] = TEST_ETHERTYPE & 0xff;
	for (int i = 14; i < 64; i++)
		frame[i] = (uint8_t)i;
	assert_int_equal(send(ps, frame, sizeof(frame), 0), (ssize_t)sizeof(frame));
	for (int tries = 0; tries < 20 && !found; tries++) {
		run_loop(&f);
		for (uint16_t u = 0; u < used_idx(&f, 0); u++) {
			struct vring_used_elem *e = &f.q[0].used->ring[u];
			uint8_t *b = gp(&f, f.q[0].desc[e->id].addr, 2048);

			if (e->len == HDR + 64 && !memcmp(b + HDR, frame, 64))
				found = 1;
		}
	}
	assert_true(found);

	/* guest -> host: a tx chain comes out on the netdev. */
	g = galloc(&f, 100);
	memset(gp(&f, g, HDR), 0, HDR);
	memcpy(gp(&f, g + HDR, 64), frame, 64);
	memcpy(gp(&f, g + HDR, 12), "\xff\xff\xff\xff\xff\xff", 6);
	{
		struct seg s = { g, HDR + 64, false };

		post(&f, 1, &s, 1);
	}
	kick(&f, 1);
	{
		struct pollfd pfd = { ps, POLLIN, 0 };
		ssize_t n = -1;

		for (int tries = 0; tries < 10; tries++) {
			if (poll(&pfd, 1, 100) == 1 && (n = recv(ps, got, sizeof(got), 0)) > 0 &&
			    !memcmp(got, "\xff\xff\xff\xff\xff\xff", 6))
				break;
			n = -1;
		}
		assert_int_equal(n, 64);
	}
	assert_int_equal(stats(&f).tx_packets, 1);

	/* Reset: offloads off again. */
	bar_wr(&f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	run_loop(&f);
	assert_int_equal(tap_tso("vmctltest0"), 0);
	close(ps);
	virtio_net_destroy(f.net);
	pci_destroy(&f.pb);
	irq_destroy(&f.irq);
	guest_mem_destroy(&f.mem);
	evloop_destroy(&f.loop);
	/* The tap was not persistent: gone with our fd. */
	assert_int_equal(if_nametoindex("vmctltest0"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_features_follow_backend),
		cmocka_unit_test(test_invalid_feature_combination),
		cmocka_unit_test(test_tx),
		cmocka_unit_test(test_tx_hold),
		cmocka_unit_test(test_tx_hostile),
		cmocka_unit_test(test_rx_single_buffers),
		cmocka_unit_test(test_rx_mergeable),
		cmocka_unit_test(test_rx_waits_for_buffers),
		cmocka_unit_test(test_rx_hostile),
		cmocka_unit_test(test_ctrl_link_announce),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_state_stream),
		cmocka_unit_test(test_mac),
		cmocka_unit_test(test_real_tap),	/* last: it moves the process to a new netns */
	};
	return cmocka_run_group_tests_name("virtio_net", tests, NULL, NULL);
}
