// SPDX-License-Identifier: MIT
/*
 * virtio-pci modern transport: PCI identity and vendor capabilities, feature negotiation
 * (VERSION_1 required, unoffered bits refused, frozen after FEATURES_OK), status transitions
 * and reset, queue configuration validation, NEEDS_RESET and config interrupts over INTx and
 * MSI-X, ioeventfd placement following the BAR, state save/load, and virtio-rng end to end
 * (split ring in a memfd "guest RAM", kick through the event loop, entropy in the buffer,
 * used ring updated, MSI-X interrupt). kvm_ioctl is mocked (kvm_mock.h).
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>

#include "kvm_mock.h"
#include "vmm/irq.h"
#include "vmm/lib/evloop.h"
#include "vmm/memory.h"
#include "vmm/state.h"
#include "vmm/virtio/pci.h"
#include "vmm/virtio/pci_state.h"
#include "vmm/virtio/rng.h"

#define FAKE_FEATURE	5
#define NQ		2

struct fake {
	struct virtio_dev vd;
	unsigned int activates, resets, notifies[NQ];
	int activate_ret;
	uint8_t config[8];
};

struct fixture {
	struct irq irq;
	struct pci_bus pb;
	struct fake fk;
	struct virtio_pci *vp;
};

static uint64_t fk_features(struct virtio_dev *vd) { return 1ull << FAKE_FEATURE; }
static void fk_config_read(struct virtio_dev *vd, uint32_t off, void *d, uint32_t len)
{
	memcpy(d, ((struct fake *)vd->opaque)->config + off, len);
}
static void fk_config_write(struct virtio_dev *vd, uint32_t off, const void *d, uint32_t len)
{
	memcpy(((struct fake *)vd->opaque)->config + off, d, len);
}
static int fk_activate(struct virtio_dev *vd)
{
	struct fake *fk = vd->opaque;

	fk->activates++;
	return fk->activate_ret;
}
static void fk_notify(struct virtio_dev *vd, unsigned int q) { ((struct fake *)vd->opaque)->notifies[q]++; }
static void fk_reset(struct virtio_dev *vd) { ((struct fake *)vd->opaque)->resets++; }

static const struct virtio_dev_ops fake_ops = {
	.features = fk_features, .config_read = fk_config_read, .config_write = fk_config_write,
	.activate = fk_activate, .queue_notify = fk_notify, .reset = fk_reset,
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct pci_env penv = { .vm_fd = 42, .ram_top = 1ull << 30 };
	struct virtio_pci_env env;

	assert_non_null(f);
	memset(&mock, 0, sizeof(mock));
	assert_int_equal(irq_init(&f->irq, 42, 0), 0);
	penv.irq = &f->irq;
	assert_int_equal(pci_init(&f->pb, &penv), 0);
	f->fk.vd.id = "fake0";
	f->fk.vd.device_type = 4;		/* entropy */
	f->fk.vd.ops = &fake_ops;
	f->fk.vd.nr_vqs = NQ;
	f->fk.vd.vqs[0].max_size = 256;
	f->fk.vd.vqs[1].max_size = 64;
	f->fk.vd.config_len = sizeof(f->fk.config);
	f->fk.vd.opaque = &f->fk;
	memcpy(f->fk.config, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	env = (struct virtio_pci_env){ .pci = &f->pb, .irq = &f->irq, .loop = NULL, .vm_fd = 42 };
	assert_int_equal(virtio_pci_add(&env, &f->fk.vd, &f->vp), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	virtio_pci_remove(f->vp);
	pci_destroy(&f->pb);
	irq_destroy(&f->irq);
	free(f);
	return 0;
}

/* ---- register helpers ---- */

static uint32_t rd(struct fixture *f, uint32_t off, uint32_t len)
{
	uint32_t v = 0;

	virtio_pci_bar_read(f->vp, off, &v, len);
	return v;
}

static void wr(struct fixture *f, uint32_t off, uint32_t len, uint32_t v)
{
	virtio_pci_bar_write(f->vp, off, &v, len);
}

static uint8_t status(struct fixture *f) { return (uint8_t)rd(f, VIRTIO_PCI_COMMON_STATUS, 1); }

static void set_status(struct fixture *f, uint8_t s) { wr(f, VIRTIO_PCI_COMMON_STATUS, 1, s); }

static void write_features(struct fixture *f, uint64_t feat)
{
	wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	wr(f, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)feat);
	wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	wr(f, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)(feat >> 32));
}

static uint64_t device_features(struct fixture *f)
{
	uint64_t v;

	wr(f, VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
	v = rd(f, VIRTIO_PCI_COMMON_DF, 4);
	wr(f, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	v |= (uint64_t)rd(f, VIRTIO_PCI_COMMON_DF, 4) << 32;
	return v;
}

static void negotiate(struct fixture *f, uint64_t feat)
{
	set_status(f, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	set_status(f, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	write_features(f, feat);
	set_status(f, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
}

static void setup_queue(struct fixture *f, uint16_t q, uint16_t size, uint64_t desc, uint64_t avail,
			uint64_t used)
{
	wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
	wr(f, VIRTIO_PCI_COMMON_Q_SIZE, 2, size);
	wr(f, VIRTIO_PCI_COMMON_Q_DESCLO, 4, (uint32_t)desc);
	wr(f, VIRTIO_PCI_COMMON_Q_DESCHI, 4, (uint32_t)(desc >> 32));
	wr(f, VIRTIO_PCI_COMMON_Q_AVAILLO, 4, (uint32_t)avail);
	wr(f, VIRTIO_PCI_COMMON_Q_AVAILHI, 4, (uint32_t)(avail >> 32));
	wr(f, VIRTIO_PCI_COMMON_Q_USEDLO, 4, (uint32_t)used);
	wr(f, VIRTIO_PCI_COMMON_Q_USEDHI, 4, (uint32_t)(used >> 32));
	wr(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
}

#define S_ALL (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK | \
	       VIRTIO_CONFIG_S_DRIVER_OK)

/* ---- tests ---- */

static void test_identity_and_caps(void **state)
{
	struct fixture *f = *state;
	unsigned int s = f->vp->pci.slot, seen = 0;
	uint8_t at;

	assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, PCI_VENDOR_ID, 2), 0x1af4);
	assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, PCI_DEVICE_ID, 2), 0x1044);
	assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, PCI_REVISION_ID, 1), 1);
	assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
	assert_true(pci_cfg_read(&f->pb, 0, s, 0, PCI_SUBSYSTEM_ID, 2) >= 0x40);
	/* BAR0: 64-bit memory. */
	assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, PCI_BASE_ADDRESS_0, 4) & 0xf,
			 PCI_BASE_ADDRESS_MEM_TYPE_64);
	for (at = (uint8_t)pci_cfg_read(&f->pb, 0, s, 0, PCI_CAPABILITY_LIST, 1); at;
	     at = (uint8_t)pci_cfg_read(&f->pb, 0, s, 0, at + 1, 1)) {
		uint8_t id = (uint8_t)pci_cfg_read(&f->pb, 0, s, 0, at, 1);
		uint8_t type, bar;
		uint32_t off, len;

		if (id == PCI_CAP_ID_MSIX) {
			assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, at + 2, 2) & 0x7ff, NQ);	/* NQ+1 vectors */
			seen |= 1u << 7;
			continue;
		}
		assert_int_equal(id, PCI_CAP_ID_VNDR);
		type = (uint8_t)pci_cfg_read(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_CFG_TYPE, 1);
		bar = (uint8_t)pci_cfg_read(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_BAR, 1);
		off = pci_cfg_read(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_OFFSET, 4);
		len = pci_cfg_read(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_LENGTH, 4);
		assert_int_equal(bar, 0);
		assert_true(off + len <= f->vp->bar_size);
		switch (type) {
		case VIRTIO_PCI_CAP_COMMON_CFG: assert_int_equal(len, 0x3c); break;
		case VIRTIO_PCI_CAP_ISR_CFG: assert_int_equal(len, 1); break;
		case VIRTIO_PCI_CAP_DEVICE_CFG: assert_int_equal(len, 8); break;
		case VIRTIO_PCI_CAP_NOTIFY_CFG:
			assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_LEN, 1), 20);
			assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, at + 16, 4), 4);
			assert_int_equal(len, NQ * 4);
			break;
		case VIRTIO_PCI_CAP_PCI_CFG: assert_int_equal(len, 0); break;
		default: fail_msg("unexpected cap type %u", type);
		}
		seen |= 1u << type;
	}
	assert_int_equal(seen, (1u << 1) | (1u << 2) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 7));
	/* Device configuration through the BAR, bounded by config_len. */
	assert_int_equal(rd(f, VIRTIO_PCI_DEVCFG_OFF + 4, 4), 0x08070605);
	assert_int_equal(rd(f, VIRTIO_PCI_DEVCFG_OFF + 6, 4), 0);	/* straddles the end */
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_NUMQ, 2), NQ);
}

static void test_feature_negotiation(void **state)
{
	struct fixture *f = *state;
	uint64_t df = device_features(f);

	assert_int_equal(df, (1ull << FAKE_FEATURE) | (1ull << VIRTIO_F_VERSION_1));
	wr(f, VIRTIO_PCI_COMMON_DFSELECT, 4, 7);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_DF, 4), 0);

	/* Without VERSION_1 (a legacy driver): FEATURES_OK does not stick. */
	negotiate(f, 1ull << FAKE_FEATURE);
	assert_false(status(f) & VIRTIO_CONFIG_S_FEATURES_OK);
	assert_int_equal(f->fk.vd.acked_features, 0);
	/* DRIVER_OK without FEATURES_OK is refused too. */
	set_status(f, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
	assert_false(status(f) & VIRTIO_CONFIG_S_DRIVER_OK);
	assert_int_equal(f->fk.activates, 0);

	/* Reset, then a bit the device never offered: refused. */
	set_status(f, 0);
	assert_int_equal(status(f), 0);
	assert_int_equal(f->fk.resets, 1);
	negotiate(f, (1ull << VIRTIO_F_VERSION_1) | (1ull << 7));
	assert_false(status(f) & VIRTIO_CONFIG_S_FEATURES_OK);

	/* Good set: accepted, readable back, frozen afterwards. */
	set_status(f, 0);
	negotiate(f, (1ull << VIRTIO_F_VERSION_1) | (1ull << FAKE_FEATURE));
	assert_true(status(f) & VIRTIO_CONFIG_S_FEATURES_OK);
	assert_int_equal(f->fk.vd.acked_features, (1ull << VIRTIO_F_VERSION_1) | (1ull << FAKE_FEATURE));
	write_features(f, 1ull << VIRTIO_F_VERSION_1);
	assert_int_equal(f->fk.vd.acked_features, (1ull << VIRTIO_F_VERSION_1) | (1ull << FAKE_FEATURE));
	wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_GF, 4), 1u << FAKE_FEATURE);
}

static void test_status_transitions(void **state)
{
	struct fixture *f = *state;

	negotiate(f, 1ull << VIRTIO_F_VERSION_1);
	setup_queue(f, 0, 128, 0x10000, 0x20000, 0x30000);
	set_status(f, S_ALL);
	assert_int_equal(status(f), S_ALL);
	assert_int_equal(f->fk.activates, 1);
	assert_true(f->fk.vd.active);
	/* Clearing bits is not the driver's to do: ignored. */
	set_status(f, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	assert_int_equal(status(f), S_ALL);
	/* Queue configuration is frozen while live. */
	wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	wr(f, VIRTIO_PCI_COMMON_Q_SIZE, 2, 32);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), 128);
	wr(f, VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x40000);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0x10000);
	/* Kicks reach the device only for enabled queues of a live device. */
	virtio_pci_kick(f->vp, 0);
	virtio_pci_kick(f->vp, 1);
	virtio_pci_kick(f->vp, 9);
	assert_int_equal(f->fk.notifies[0], 1);
	assert_int_equal(f->fk.notifies[1], 0);
	/* Reset: everything back to the initial values. */
	set_status(f, 0);
	assert_int_equal(status(f), 0);
	assert_false(f->fk.vd.active);
	assert_int_equal(f->fk.vd.acked_features, 0);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), 256);	/* back to max */
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_NO_VECTOR);
	virtio_pci_kick(f->vp, 0);
	assert_int_equal(f->fk.notifies[0], 1);
	/* A failing activate turns into NEEDS_RESET, not DRIVER_OK. */
	f->fk.activate_ret = -EINVAL;
	negotiate(f, 1ull << VIRTIO_F_VERSION_1);
	set_status(f, S_ALL);
	assert_true(status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_false(f->fk.vd.active);
}

static void test_queue_validation(void **state)
{
	struct fixture *f = *state;

	negotiate(f, 1ull << VIRTIO_F_VERSION_1);
	/* Default size is the maximum; queue_notify_off is the index. */
	wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), 64);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_NOFF, 2), 1);
	/* Not a power of two: not enabled. */
	setup_queue(f, 0, 100, 0x10000, 0x20000, 0x30000);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	/* Larger than the maximum, or 0: the write is ignored, the size stays. */
	wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	wr(f, VIRTIO_PCI_COMMON_Q_SIZE, 2, 128);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), 64);
	wr(f, VIRTIO_PCI_COMMON_Q_SIZE, 2, 0);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), 64);
	/* Misaligned rings (desc 16, avail 2, used 4). */
	setup_queue(f, 0, 64, 0x10008, 0x20000, 0x30000);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	setup_queue(f, 0, 64, 0x10000, 0x20001, 0x30000);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	setup_queue(f, 0, 64, 0x10000, 0x20000, 0x30002);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	/* Good, with a 64-bit address; enable cannot be written back to 0. */
	setup_queue(f, 0, 64, 0x100010000ull, 0x20000, 0x30000);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_DESCHI, 4), 1);
	wr(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 0);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	/* A selector past the last queue: size 0, writes go nowhere. */
	wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, 7);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	wr(f, VIRTIO_PCI_COMMON_Q_SIZE, 2, 16);
	wr(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	/* MSI-X vectors beyond the table read back NO_VECTOR. */
	wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	wr(f, VIRTIO_PCI_COMMON_Q_MSIX, 2, NQ + 1);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_NO_VECTOR);
	wr(f, VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);
	wr(f, VIRTIO_PCI_COMMON_MSIX, 2, 0x1234);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_NO_VECTOR);
	/* Wrong access widths are ignored: a byte write into queue_size. */
	wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	wr(f, VIRTIO_PCI_COMMON_Q_SIZE, 1, 8);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), 64);
	/* A queue enabled with a bad size cannot reach DRIVER_OK through other paths either. */
	set_status(f, S_ALL);
	assert_int_equal(f->fk.activates, 1);
}

static void test_needs_reset_intx(void **state)
{
	struct fixture *f = *state;

	negotiate(f, 1ull << VIRTIO_F_VERSION_1);
	set_status(f, S_ALL);
	mock.irq_line = 0;
	pthread_mutex_lock(&f->fk.vd.lock);
	virtio_dev_needs_reset(&f->fk.vd);
	pthread_mutex_unlock(&f->fk.vd.lock);
	assert_true(status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* MSI-X off: config change bit in ISR and INTx asserted on the slot's GSI. */
	assert_int_equal(mock.irq_line, 1);
	assert_int_equal(mock.last_line.irq, pci_intx_gsi(f->vp->pci.slot, 0));
	assert_int_equal(mock.last_line.level, 1);
	assert_true(pci_cfg_read(&f->pb, 0, f->vp->pci.slot, 0, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	assert_int_equal(rd(f, VIRTIO_PCI_ISR_OFF, 1), VIRTIO_PCI_ISR_CONFIG);
	assert_int_equal(mock.last_line.level, 0);		/* read cleared and deasserted */
	assert_int_equal(rd(f, VIRTIO_PCI_ISR_OFF, 1), 0);
	/* The driver cannot clear NEEDS_RESET except by resetting. */
	set_status(f, S_ALL);
	assert_true(status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	virtio_pci_kick(f->vp, 0);
	assert_int_equal(f->fk.notifies[0], 0);
	set_status(f, 0);
	assert_int_equal(status(f), 0);
	/* COMMAND.INTX_DISABLE holds the line low. */
	pci_cfg_write(&f->pb, 0, f->vp->pci.slot, 0, PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
	mock.irq_line = 0;
	pthread_mutex_lock(&f->fk.vd.lock);
	virtio_dev_config_changed(&f->fk.vd);
	pthread_mutex_unlock(&f->fk.vd.lock);
	assert_int_equal(mock.irq_line, 0);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_CFGGENERATION, 1), 1);
}

static void test_msix_queue_interrupt(void **state)
{
	struct fixture *f = *state;
	struct virtio_pci *vp = f->vp;
	uint32_t tbl = vp->msix_table_off, zero = 0, addr = 0xfee00000, data = 0x41;
	uint64_t n = 0;

	/* Guest enables MSI-X, programs vector 1 for queue 0, unmasks. */
	pci_cfg_write(&f->pb, 0, vp->pci.slot, 0, vp->msix.cap + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
	virtio_pci_bar_write(vp, tbl + 16 + 0, &addr, 4);
	virtio_pci_bar_write(vp, tbl + 16 + 8, &data, 4);
	virtio_pci_bar_write(vp, tbl + 16 + 12, &zero, 4);
	negotiate(f, 1ull << VIRTIO_F_VERSION_1);
	wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	wr(f, VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	setup_queue(f, 0, 64, 0x10000, 0x20000, 0x30000);
	set_status(f, S_ALL);
	pthread_mutex_lock(&f->fk.vd.lock);
	virtio_dev_notify(&f->fk.vd, 0);
	pthread_mutex_unlock(&f->fk.vd.lock);
	assert_int_equal(read(vp->msix.vecs[1].efd, &n, 8), 8);
	assert_int_equal(n, 1);
	assert_int_equal(mock.irq_line, 0);		/* no INTx with MSI-X on */
	/* PBA is in the BAR too. */
	{
		uint64_t pba = 0;

		virtio_pci_bar_read(vp, vp->msix_pba_off, &pba, 8);
		assert_int_equal(pba, 0);
	}
}

static void test_ioeventfd_follows_bar(void **state)
{
	struct fixture *f = *state;
	struct virtio_pci *vp = f->vp;
	unsigned int s = vp->pci.slot;
	uint64_t bar = vp->pci.bars[0].addr ? vp->pci.bars[0].addr :
		       (pci_cfg_read(&f->pb, 0, s, 0, PCI_BASE_ADDRESS_0, 4) & ~0xfu);
	uint64_t moved = bar + 0x100000;

	assert_int_equal(mock.ioeventfd_assign, 0);	/* not decoding yet */
	pci_cfg_write(&f->pb, 0, s, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_int_equal(mock.ioeventfd_assign, NQ);
	assert_int_equal(mock.last_ioeventfd.addr, bar + VIRTIO_PCI_NOTIFY_OFF + 4 * (NQ - 1));
	assert_int_equal(mock.last_ioeventfd.len, 2);
	assert_int_equal(mock.last_ioeventfd.fd, vp->notify[NQ - 1].ioev.fd);
	pci_cfg_write(&f->pb, 0, s, 0, PCI_BASE_ADDRESS_0, 4, (uint32_t)moved);
	assert_int_equal(mock.ioeventfd_deassign, NQ);
	assert_int_equal(mock.ioeventfd_assign, 2 * NQ);
	assert_int_equal(mock.last_ioeventfd.addr, moved + VIRTIO_PCI_NOTIFY_OFF + 4 * (NQ - 1));
	pci_cfg_write(&f->pb, 0, s, 0, PCI_COMMAND, 2, 0);
	assert_int_equal(mock.ioeventfd_deassign, 2 * NQ);
	/* A trapped notify write signals the queue's eventfd (for the main loop). */
	{
		uint16_t q = 1;
		uint64_t n = 0;

		virtio_pci_bar_write(vp, VIRTIO_PCI_NOTIFY_OFF + 4, &q, 2);
		assert_int_equal(read(vp->notify[1].ioev.fd, &n, 8), 8);
		assert_int_equal(n, 1);
	}
}

static void test_pci_cfg_window(void **state)
{
	struct fixture *f = *state;
	unsigned int s = f->vp->pci.slot;
	uint8_t at = f->vp->pci_cfg_cap;

	assert_true(at >= PCI_FIRST_CAP);
	/* Read num_queues through configuration space. */
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_BAR, 1, 0);
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_COMMON_NUMQ);
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_LENGTH, 4, 2);
	assert_int_equal(pci_cfg_read(&f->pb, 0, s, 0, at + 16, 2), NQ);
	/* Write device_status through it. */
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_COMMON_STATUS);
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_LENGTH, 4, 1);
	pci_cfg_write(&f->pb, 0, s, 0, at + 16, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	assert_int_equal(status(f), VIRTIO_CONFIG_S_ACKNOWLEDGE);
	/* Misaligned, bad length, other BAR, past the BAR: ignored. */
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_COMMON_STATUS - 1);
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_LENGTH, 4, 2);
	pci_cfg_write(&f->pb, 0, s, 0, at + 16, 4, 0);
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_LENGTH, 4, 3);
	pci_cfg_write(&f->pb, 0, s, 0, at + 16, 4, 0);
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_COMMON_STATUS);
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_LENGTH, 4, 1);
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_BAR, 1, 2);
	pci_cfg_write(&f->pb, 0, s, 0, at + 16, 4, 0);
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_BAR, 1, 0);
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_OFFSET, 4, 0xfffffffe);
	pci_cfg_write(&f->pb, 0, s, 0, at + VIRTIO_PCI_CAP_LENGTH, 4, 2);
	pci_cfg_write(&f->pb, 0, s, 0, at + 16, 4, 0);
	assert_int_equal(status(f), VIRTIO_CONFIG_S_ACKNOWLEDGE);
}

static void test_state_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct virtio_pci_state *st = malloc(sizeof(*st));
	unsigned int act;

	assert_non_null(st);
	negotiate(f, (1ull << VIRTIO_F_VERSION_1) | (1ull << FAKE_FEATURE));
	wr(f, VIRTIO_PCI_COMMON_MSIX, 2, 0);
	setup_queue(f, 1, 32, 0x50000, 0x51000, 0x52000);
	set_status(f, S_ALL);
	virtio_pci_save(f->vp, st);
	assert_int_equal(st->status, S_ALL);
	assert_int_equal(st->q[1].size, 32);

	set_status(f, 0);
	act = f->fk.activates;
	assert_int_equal(virtio_pci_load(f->vp, st), 0);
	assert_int_equal(status(f), S_ALL);
	assert_int_equal(f->fk.activates, act + 1);	/* re-activated from the loaded config */
	assert_true(f->fk.vd.active);
	wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), 32);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_Q_USEDLO, 4), 0x52000);
	assert_int_equal(rd(f, VIRTIO_PCI_COMMON_MSIX, 2), 0);

	/* Hostile streams: unoffered features, bad queue size, wrong queue count. */
	st->acked_features |= 1ull << 9;
	assert_int_equal(virtio_pci_load(f->vp, st), -EINVAL);
	st->acked_features &= ~(1ull << 9);
	st->q[1].size = 48;
	assert_int_equal(virtio_pci_load(f->vp, st), -EINVAL);
	st->q[1].size = 32;
	st->nr_vqs = 3;
	assert_int_equal(virtio_pci_load(f->vp, st), -EINVAL);
	free(st);
}

static void test_state_tlv(void **state)
{
	struct fixture *f = *state;
	struct virtio_pci_state *st = malloc(sizeof(*st)), *back = malloc(sizeof(*back));
	struct state_writer w;
	struct state_reader r;

	assert_true(st && back);
	negotiate(f, 1ull << VIRTIO_F_VERSION_1);
	setup_queue(f, 1, 32, 0x50000, 0x51000, 0x52000);
	set_status(f, S_ALL);
	virtio_pci_save(f->vp, st);

	sw_init(&w, 1u << 20);
	assert_int_equal(virtio_pci_state_write(st, &w), 0);
	assert_int_equal(sw_error(&w), 0);
	sr_init(&r, w.buf, w.len, "test");
	assert_int_equal(virtio_pci_state_read(&r, back), 0);
	assert_memory_equal(back->pci.cfg, st->pci.cfg, sizeof(st->pci.cfg));
	assert_int_equal(back->msix.nr, st->msix.nr);
	assert_memory_equal(back->msix.table, st->msix.table, st->msix.nr * 16);
	assert_int_equal(back->status, S_ALL);
	assert_int_equal(back->acked_features, st->acked_features);
	assert_int_equal(back->nr_vqs, NQ);
	assert_int_equal(back->q[1].size, 32);
	assert_int_equal(back->q[1].device, 0x52000);
	assert_int_equal(virtio_pci_load(f->vp, back), 0);
	sw_release(&w);

	/* Missing required fields. */
	sw_init(&w, 1u << 20);
	sw_bytes(&w, 1, st->pci.cfg, sizeof(st->pci.cfg), STATE_F_REQUIRED);
	sr_init(&r, w.buf, w.len, "test");
	assert_int_equal(virtio_pci_state_read(&r, back), -EBADMSG);
	/* An unknown required field from a "newer" writer. */
	sw_u32(&w, 999, 1, STATE_F_REQUIRED);
	sr_init(&r, w.buf, w.len, "test");
	assert_int_equal(virtio_pci_state_read(&r, back), -EPROTO);
	sw_release(&w);
	/* More queues claimed than described. */
	st->nr_vqs = NQ + 1;
	st->q[NQ].size = 0;
	sw_init(&w, 1u << 20);
	assert_int_equal(virtio_pci_state_write(st, &w), 0);
	sr_init(&r, w.buf, w.len, "test");
	assert_int_equal(virtio_pci_state_read(&r, back), 0);
	assert_int_equal(virtio_pci_load(f->vp, back), -EINVAL);	/* device has NQ queues */
	sw_release(&w);
	free(st);
	free(back);
}

/* ---- virtio-rng end to end ---- */

#define RAM	(4u << 20)
#define DESC	0x1000
#define AVAIL	0x2000
#define USED	0x3000
#define BUF	0x8000

static void test_rng_end_to_end(void **state)
{
	struct irq irq;
	struct pci_bus pb;
	struct guest_mem mem;
	struct evloop loop;
	struct virtio_rng *rng;
	struct virtio_pci *vp;
	struct pci_env penv = { .vm_fd = -1, .ram_top = RAM };
	struct virtio_pci_env env;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint8_t *buf;
	uint64_t bytes = 0, reqs = 0, n = 0;
	uint16_t q0 = 0;
	uint32_t zero = 0, addr = 0xfee00000, data = 0x22;
	int ret;

	(void)state;
	memset(&mock, 0, sizeof(mock));
	if (evloop_init(&loop, 32) < 0)
		skip();
	assert_int_equal(guest_mem_init(&mem, RAM), 0);
	assert_int_equal(irq_init(&irq, 42, 0), 0);
	penv.irq = &irq;
	assert_int_equal(pci_init(&pb, &penv), 0);
	env = (struct virtio_pci_env){ .pci = &pb, .irq = &irq, .loop = &loop, .vm_fd = -1 };
	assert_int_equal(virtio_rng_create(&env, &mem, "rng0", &rng), 0);
	vp = pb.slots[1]->opaque;

	/* Driver: MSI-X vector 0 for the queue. */
	pci_cfg_write(&pb, 0, 1, 0, vp->msix.cap + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
	virtio_pci_bar_write(vp, vp->msix_table_off + 0, &addr, 4);
	virtio_pci_bar_write(vp, vp->msix_table_off + 8, &data, 4);
	virtio_pci_bar_write(vp, vp->msix_table_off + 12, &zero, 4);

	/* Ring in guest RAM: one 2-descriptor chain, 100 + 60 writable bytes. */
	desc = guest_mem_ptr(&mem, DESC, 16 * 8);
	avail = guest_mem_ptr(&mem, AVAIL, 4 + 2 * 8 + 2);
	used = guest_mem_ptr(&mem, USED, 4 + 8 * 8 + 2);
	buf = guest_mem_ptr(&mem, BUF, 4096);
	assert_true(desc && avail && used && buf);
	desc[0] = (struct vring_desc){ BUF, 100, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1 };
	desc[1] = (struct vring_desc){ BUF + 200, 60, VRING_DESC_F_WRITE, 0 };
	avail->ring[0] = 0;
	__atomic_store_n(&avail->idx, 1, __ATOMIC_RELEASE);

	{
		uint32_t v;
		uint64_t df = 0;

		v = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
		virtio_pci_bar_write(vp, VIRTIO_PCI_COMMON_STATUS, &v, 1);
		v = 1;
		virtio_pci_bar_write(vp, VIRTIO_PCI_COMMON_DFSELECT, &v, 4);
		virtio_pci_bar_read(vp, VIRTIO_PCI_COMMON_DF, &df, 4);
		assert_true(df & 1);			/* VERSION_1 */
		virtio_pci_bar_write(vp, VIRTIO_PCI_COMMON_GFSELECT, &v, 4);
		virtio_pci_bar_write(vp, VIRTIO_PCI_COMMON_GF, &v, 4);
		v = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
		virtio_pci_bar_write(vp, VIRTIO_PCI_COMMON_STATUS, &v, 1);
		v = 8;
		virtio_pci_bar_write(vp, VIRTIO_PCI_COMMON_Q_SIZE, &v, 2);
		v = 0;
		virtio_pci_bar_write(vp, VIRTIO_PCI_COMMON_Q_MSIX, &v, 2);
		v = DESC;
		virtio_pci_bar_write(vp, VIRTIO_PCI_COMMON_Q_DESCLO, &v, 4);
		v = AVAIL;
		virtio_pci_bar_write(vp, VIRTIO_PCI_COMMON_Q_AVAILLO, &v, 4);
		v = USED;
		virtio_pci_bar_write(vp, VIRTIO_PCI_COMMON_Q_USEDLO, &v, 4);
		v = 1;
		virtio_pci_bar_write(vp, VIRTIO_PCI_COMMON_Q_ENABLE, &v, 2);
		v = S_ALL;
		virtio_pci_bar_write(vp, VIRTIO_PCI_COMMON_STATUS, &v, 1);
		virtio_pci_bar_read(vp, VIRTIO_PCI_COMMON_STATUS, &v, 1);
		assert_int_equal(v & 0xff, S_ALL);
	}

	/* Kick (trapped write) -> eventfd -> event loop -> queue_notify, with a bounded wait. */
	virtio_pci_bar_write(vp, VIRTIO_PCI_NOTIFY_OFF, &q0, 2);
	for (int i = 0; i < 50 && __atomic_load_n(&used->idx, __ATOMIC_ACQUIRE) == 0; i++) {
		ret = evloop_run_once(&loop, 100 * 1000 * 1000);
		assert_true(ret >= 0);
	}
	assert_int_equal(used->idx, 1);
	assert_int_equal(used->ring[0].id, 0);
	assert_int_equal(used->ring[0].len, 160);
	{
		static const uint8_t zeros[100];

		/* 100 random bytes are all-zero with probability 2^-800. */
		assert_memory_not_equal(buf, zeros, 100);
		assert_memory_not_equal(buf + 200, zeros, 60);
		assert_memory_equal(buf + 100, zeros, 100);	/* gap untouched */
	}
	virtio_rng_stats(rng, &bytes, &reqs);
	assert_int_equal(bytes, 160);
	assert_int_equal(reqs, 1);
	/* MSI-X vector 0 fired through its irqfd. */
	assert_int_equal(read(vp->msix.vecs[0].efd, &n, 8), 8);
	assert_int_equal(n, 1);

	/*
	 * Migration-style: save, load into a second instance on another PCI bus sharing the
	 * same RAM, post a buffer, and let the restored device (indices continuing) serve it.
	 */
	{
		struct pci_bus pb2;
		struct virtio_rng *rng2;
		struct virtio_rng_state *st = malloc(sizeof(*st));
		struct virtio_pci_env env2;

		assert_non_null(st);
		assert_int_equal(pci_init(&pb2, &penv), 0);
		env2 = (struct virtio_pci_env){ .pci = &pb2, .irq = &irq, .loop = NULL, .vm_fd = -1 };
		assert_int_equal(virtio_rng_create(&env2, &mem, "rng0", &rng2), 0);
		virtio_rng_save(rng, st);
		assert_int_equal(st->vq.last_avail_idx, 1);
		assert_int_equal(st->vq.used_idx, 1);
		desc[3] = (struct vring_desc){ BUF + 400, 16, VRING_DESC_F_WRITE, 0 };
		avail->ring[1] = 3;
		__atomic_store_n(&avail->idx, 2, __ATOMIC_RELEASE);
		assert_int_equal(virtio_rng_load(rng2, st), 0);		/* kicks once loaded */
		assert_int_equal(used->idx, 2);
		assert_int_equal(used->ring[1].id, 3);
		assert_int_equal(used->ring[1].len, 16);
		/* A queue state that disagrees with the transport's ring config is refused. */
		st->vq.used += 0x1000;
		assert_int_equal(virtio_rng_load(rng2, st), -EINVAL);
		virtio_rng_destroy(rng2);
		pci_destroy(&pb2);
		free(st);
		avail->idx = 1;		/* the original device has not seen chain 3 */
		used->idx = 1;
	}
	/* The same through the state stream (TLV sections, crc), and a corrupted stream refused. */
	{
		struct state_registry r1 = { 0 }, r2 = { 0 };
		struct state_mem_sink sink;
		struct pci_bus pb3;
		struct virtio_rng *rng3;
		struct virtio_pci_env env3;

		assert_int_equal(pci_init(&pb3, &penv), 0);
		env3 = (struct virtio_pci_env){ .pci = &pb3, .irq = &irq, .loop = NULL, .vm_fd = -1 };
		assert_int_equal(virtio_rng_create(&env3, &mem, "rng0", &rng3), 0);
		assert_int_equal(virtio_rng_register_state(rng, &r1), 0);
		assert_int_equal(virtio_rng_register_state(rng3, &r2), 0);
		state_mem_sink_init(&sink);
		assert_int_equal(state_save_all(&r1, &sink.sink), 0);
		assert_true(sink.len > 4096);
		sink.buf[sink.len / 2] ^= 0x40;
		assert_int_not_equal(state_load_buf(&r2, sink.buf, sink.len, NULL), 0);
		assert_int_equal(used->idx, 1);
		sink.buf[sink.len / 2] ^= 0x40;
		desc[3] = (struct vring_desc){ BUF + 400, 16, VRING_DESC_F_WRITE, 0 };
		avail->ring[1] = 3;
		__atomic_store_n(&avail->idx, 2, __ATOMIC_RELEASE);
		assert_int_equal(state_load_buf(&r2, sink.buf, sink.len, NULL), 0);
		assert_int_equal(used->idx, 2);
		assert_int_equal(used->ring[1].id, 3);
		assert_true(vp->vd->status == S_ALL);
		free(sink.buf);
		state_registry_destroy(&r1);
		state_registry_destroy(&r2);
		virtio_rng_destroy(rng3);
		pci_destroy(&pb3);
		avail->idx = 1;
		used->idx = 1;
	}

	/* Hostile: a descriptor outside guest RAM -> NEEDS_RESET, monitor fine. */
	desc[2] = (struct vring_desc){ RAM - 8, 64, VRING_DESC_F_WRITE, 0 };
	avail->ring[1] = 2;
	__atomic_store_n(&avail->idx, 2, __ATOMIC_RELEASE);
	virtio_pci_bar_write(vp, VIRTIO_PCI_NOTIFY_OFF, &q0, 2);
	for (int i = 0; i < 50 && !(vp->vd->status & VIRTIO_CONFIG_S_NEEDS_RESET); i++)
		evloop_run_once(&loop, 100 * 1000 * 1000);
	assert_true(vp->vd->status & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(used->idx, 1);

	virtio_rng_destroy(rng);
	pci_destroy(&pb);
	irq_destroy(&irq);
	evloop_destroy(&loop);
	guest_mem_destroy(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity_and_caps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_feature_negotiation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_transitions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_needs_reset_intx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_queue_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ioeventfd_follows_bar, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pci_cfg_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_tlv, setup, teardown),
		cmocka_unit_test(test_rng_end_to_end),
	};
	return cmocka_run_group_tests_name("virtio_pci", tests, NULL, NULL);
}
