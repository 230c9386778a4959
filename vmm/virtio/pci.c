// SPDX-License-Identifier: MIT
/*
 * virtio-pci modern transport (virtio 1.2 §4.1; layout and limits in pci.h). This file owns
 * the common configuration registers — feature negotiation (VERSION_1 required: FEATURES_OK
 * is refused otherwise), the device status state machine and reset, per-queue configuration —
 * the ISR register, config-change and queue interrupts (MSI-X, INTx when MSI-X is off), and
 * the notify path (ioeventfd -> main loop -> ops->queue_notify).
 *
 * All register state is under vd->lock; BAR accesses arrive with pci_bus.lock held for reading
 * (see pci.h for the order). Guest writes that break the rules (clearing status bits, changing
 * features after FEATURES_OK, bad queue sizes) are ignored or refused as the spec allows, with
 * a rate-limited log line; nothing a guest writes can make the monitor fail.
 */
#define LOG_TAG "virtio-pci"
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/virtio_pci.h>

#include "vmm/lib/log.h"
#include "vmm/virtio/pci.h"

#ifndef VIRTIO_PCI_ISR_QUEUE
#define VIRTIO_PCI_ISR_QUEUE	0x1
#endif
#define CAP_LEN		16	/* struct virtio_pci_cap */
#define NOTIFY_CAP_LEN	20	/* + notify_off_multiplier */

static struct virtio_queue_cfg *sel_queue(struct virtio_pci *vp)
{
	return vp->queue_sel < vp->vd->nr_vqs ? &vp->vd->vqs[vp->queue_sel] : NULL;
}

static uint64_t offered_features(struct virtio_pci *vp)
{
	return vp->vd->ops->features(vp->vd) | VIRTIO_PCI_TRANSPORT_FEATURES;
}

/* ---- interrupts ---- */

/* Raise @isr_bit and interrupt through @vector (MSI-X) or INTx. vd->lock held. */
static void raise_irq(struct virtio_pci *vp, uint8_t isr_bit, uint16_t vector)
{
	if (msix_enabled(&vp->msix)) {
		if (isr_bit == VIRTIO_PCI_ISR_CONFIG)
			vp->isr |= isr_bit;	/* harmless; some drivers look */
		if (vector != VIRTIO_NO_VECTOR)
			msix_notify(&vp->msix, vector);	/* out-of-range: -EINVAL, dropped */
		return;
	}
	vp->isr |= isr_bit;
	pci_device_set_intx(&vp->pci, true);
}

static void tr_notify_queue(struct virtio_dev *vd, unsigned int q)
{
	struct virtio_pci *vp = vd->transport;

	raise_irq(vp, VIRTIO_PCI_ISR_QUEUE, vd->vqs[q].msix_vector);
}

static void tr_notify_config(struct virtio_dev *vd)
{
	struct virtio_pci *vp = vd->transport;

	raise_irq(vp, VIRTIO_PCI_ISR_CONFIG, vp->config_vector);
}

static const struct virtio_transport_ops transport_ops = {
	.notify_queue = tr_notify_queue,
	.notify_config = tr_notify_config,
};

/* ---- status, reset, activation ---- */

/* Transport registers back to their initial values (at creation and on device reset). */
static void transport_reset_locked(struct virtio_pci *vp)
{
	struct virtio_dev *vd = vp->vd;

	vd->status = 0;
	vd->active = false;
	vd->acked_features = 0;
	vp->driver_features = 0;
	vp->dev_feature_sel = vp->drv_feature_sel = 0;
	vp->config_vector = VIRTIO_NO_VECTOR;
	vp->queue_sel = 0;
	for (unsigned int q = 0; q < vd->nr_vqs; q++) {
		struct virtio_queue_cfg *c = &vd->vqs[q];

		c->size = c->max_size;
		c->enabled = false;
		c->desc = c->driver = c->device = 0;
		c->msix_vector = VIRTIO_NO_VECTOR;
	}
	vp->isr = 0;
	pci_device_set_intx(&vp->pci, false);
}

/* Device reset (status 0): the device drops its work, then everything the driver set is gone. */
static void reset_locked(struct virtio_pci *vp)
{
	if (vp->vd->ops->reset)
		vp->vd->ops->reset(vp->vd);
	transport_reset_locked(vp);
}

/* Ring addresses must be aligned as virtio 1.2 §2.7 requires for split queues. */
static bool queue_cfg_valid(const struct virtio_queue_cfg *c)
{
	return c->size && !(c->size & (c->size - 1)) && c->size <= c->max_size &&
	       !(c->desc & 15) && !(c->driver & 1) && !(c->device & 3);
}

static int activate_locked(struct virtio_pci *vp)
{
	struct virtio_dev *vd = vp->vd;

	for (unsigned int q = 0; q < vd->nr_vqs; q++) {
		if (vd->vqs[q].enabled && !queue_cfg_valid(&vd->vqs[q])) {
			log_ratelimited(LOG_WARN, "%s: queue %u: size %u / ring addresses invalid",
					vd->id, q, vd->vqs[q].size);
			return -EINVAL;
		}
	}
	return vd->ops->activate ? vd->ops->activate(vd) : 0;
}

static void status_write(struct virtio_pci *vp, uint8_t val)
{
	struct virtio_dev *vd = vp->vd;
	uint8_t old = vd->status;

	if (val == 0) {
		reset_locked(vp);
		return;
	}
	/* The driver only ever adds bits (§3.1.1); NEEDS_RESET is the device's to set. */
	if ((old & ~val) & ~VIRTIO_CONFIG_S_NEEDS_RESET) {
		log_ratelimited(LOG_WARN, "%s: driver cleared status bits (0x%02x -> 0x%02x), ignored",
				vd->id, old, val);
		return;
	}
	val &= ~VIRTIO_CONFIG_S_NEEDS_RESET;
	val |= old & VIRTIO_CONFIG_S_NEEDS_RESET;

	if ((val & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
		uint64_t offered = offered_features(vp);

		/* §2.2.2 and §6.1: a modern transport needs VERSION_1; nothing unoffered. */
		if (!(vp->driver_features & (1ull << VIRTIO_F_VERSION_1)) ||
		    (vp->driver_features & ~offered)) {
			log_ratelimited(LOG_WARN, "%s: refusing features 0x%llx (offered 0x%llx)",
					vd->id, (unsigned long long)vp->driver_features,
					(unsigned long long)offered);
			val &= ~VIRTIO_CONFIG_S_FEATURES_OK;
		} else {
			vd->acked_features = vp->driver_features;
		}
	}
	if ((val & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK)) {
		if (!(val & VIRTIO_CONFIG_S_FEATURES_OK) || (val & VIRTIO_CONFIG_S_FAILED)) {
			val &= ~VIRTIO_CONFIG_S_DRIVER_OK;
		} else {
			vd->status = val;	/* activate() sees DRIVER_OK */
			if (activate_locked(vp) < 0) {
				virtio_dev_needs_reset(vd);
				return;
			}
			vd->active = true;
		}
	}
	vd->status = val | (vd->status & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* ---- common configuration ---- */

static uint32_t common_read_field(struct virtio_pci *vp, uint32_t off)
{
	struct virtio_dev *vd = vp->vd;
	struct virtio_queue_cfg *c = sel_queue(vp);
	uint64_t v;

	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:	v = vp->dev_feature_sel; break;
	case VIRTIO_PCI_COMMON_DF:
		v = vp->dev_feature_sel < 2 ? (uint32_t)(offered_features(vp) >> (32 * vp->dev_feature_sel)) : 0;
		break;
	case VIRTIO_PCI_COMMON_GFSELECT:	v = vp->drv_feature_sel; break;
	case VIRTIO_PCI_COMMON_GF:
		v = vp->drv_feature_sel < 2 ? (uint32_t)(vp->driver_features >> (32 * vp->drv_feature_sel)) : 0;
		break;
	case VIRTIO_PCI_COMMON_MSIX:		v = vp->config_vector; break;
	case VIRTIO_PCI_COMMON_NUMQ:		v = vd->nr_vqs; break;
	case VIRTIO_PCI_COMMON_STATUS:		v = vd->status; break;
	case VIRTIO_PCI_COMMON_CFGGENERATION:	v = vd->config_generation; break;
	case VIRTIO_PCI_COMMON_Q_SELECT:	v = vp->queue_sel; break;
	case VIRTIO_PCI_COMMON_Q_SIZE:		v = c ? c->size : 0; break;
	case VIRTIO_PCI_COMMON_Q_MSIX:		v = c ? c->msix_vector : VIRTIO_NO_VECTOR; break;
	case VIRTIO_PCI_COMMON_Q_ENABLE:	v = c ? c->enabled : 0; break;
	case VIRTIO_PCI_COMMON_Q_NOFF:		v = c ? vp->queue_sel : 0; break;
	case VIRTIO_PCI_COMMON_Q_DESCLO:	v = c ? (uint32_t)c->desc : 0; break;
	case VIRTIO_PCI_COMMON_Q_DESCHI:	v = c ? (uint32_t)(c->desc >> 32) : 0; break;
	case VIRTIO_PCI_COMMON_Q_AVAILLO:	v = c ? (uint32_t)c->driver : 0; break;
	case VIRTIO_PCI_COMMON_Q_AVAILHI:	v = c ? (uint32_t)(c->driver >> 32) : 0; break;
	case VIRTIO_PCI_COMMON_Q_USEDLO:	v = c ? (uint32_t)c->device : 0; break;
	case VIRTIO_PCI_COMMON_Q_USEDHI:	v = c ? (uint32_t)(c->device >> 32) : 0; break;
	default:				v = 0; break;	/* reserved / unimplemented */
	}
	return (uint32_t)v;
}

/* Field widths of the common configuration, by offset (virtio 1.2 §4.1.4.3). */
static uint32_t common_field_len(uint32_t off)
{
	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT: case VIRTIO_PCI_COMMON_DF:
	case VIRTIO_PCI_COMMON_GFSELECT: case VIRTIO_PCI_COMMON_GF:
	case VIRTIO_PCI_COMMON_Q_DESCLO: case VIRTIO_PCI_COMMON_Q_DESCHI:
	case VIRTIO_PCI_COMMON_Q_AVAILLO: case VIRTIO_PCI_COMMON_Q_AVAILHI:
	case VIRTIO_PCI_COMMON_Q_USEDLO: case VIRTIO_PCI_COMMON_Q_USEDHI:
		return 4;
	case VIRTIO_PCI_COMMON_STATUS: case VIRTIO_PCI_COMMON_CFGGENERATION:
		return 1;
	case VIRTIO_PCI_COMMON_MSIX: case VIRTIO_PCI_COMMON_NUMQ:
	case VIRTIO_PCI_COMMON_Q_SELECT: case VIRTIO_PCI_COMMON_Q_SIZE:
	case VIRTIO_PCI_COMMON_Q_MSIX: case VIRTIO_PCI_COMMON_Q_ENABLE:
	case VIRTIO_PCI_COMMON_Q_NOFF: case VIRTIO_PCI_COMMON_Q_NDATA:
	case VIRTIO_PCI_COMMON_Q_RESET:
		return 2;
	default:
		return 0;
	}
}

static void common_read(struct virtio_pci *vp, uint32_t off, uint8_t *data, uint32_t len)
{
	uint32_t v;

	memset(data, 0, len);
	/* One field per access at its natural width, or an 8-byte read of two dword fields. */
	if (len == 8 && common_field_len(off) == 4 && common_field_len(off + 4) == 4) {
		common_read(vp, off, data, 4);
		common_read(vp, off + 4, data + 4, 4);
		return;
	}
	if (common_field_len(off) != len) {
		log_ratelimited(LOG_WARN, "%s: common cfg read of %u bytes at 0x%x", vp->vd->id, len, off);
		return;
	}
	v = common_read_field(vp, off);
	for (uint32_t i = 0; i < len; i++)
		data[i] = (uint8_t)(v >> (8 * i));
}

/* Queue fields may be changed only before the driver enables the queue / goes live. */
static bool queue_writable(struct virtio_pci *vp, struct virtio_queue_cfg *c)
{
	return c && !c->enabled && !(vp->vd->status & VIRTIO_CONFIG_S_DRIVER_OK);
}

static void set_lo(uint64_t *r, uint32_t v) { *r = (*r & ~0xffffffffull) | v; }
static void set_hi(uint64_t *r, uint32_t v) { *r = (*r & 0xffffffffull) | (uint64_t)v << 32; }

static void common_write_field(struct virtio_pci *vp, uint32_t off, uint32_t v)
{
	struct virtio_dev *vd = vp->vd;
	struct virtio_queue_cfg *c = sel_queue(vp);

	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		vp->dev_feature_sel = v;
		break;
	case VIRTIO_PCI_COMMON_GFSELECT:
		vp->drv_feature_sel = v;
		break;
	case VIRTIO_PCI_COMMON_GF:
		/* Frozen once FEATURES_OK is set (§3.1.1 step 5). */
		if (vp->drv_feature_sel < 2 && !(vd->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
			if (vp->drv_feature_sel == 0)
				set_lo(&vp->driver_features, v);
			else
				set_hi(&vp->driver_features, v);
		}
		break;
	case VIRTIO_PCI_COMMON_MSIX:
		/* A vector the function does not have reads back NO_VECTOR (§4.1.5.1.2). */
		vp->config_vector = v < vp->msix.nr ? (uint16_t)v : VIRTIO_NO_VECTOR;
		break;
	case VIRTIO_PCI_COMMON_STATUS:
		status_write(vp, (uint8_t)v);
		break;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		vp->queue_sel = (uint16_t)v;
		break;
	case VIRTIO_PCI_COMMON_Q_SIZE:
		/* Only a reduction is meaningful (§4.1.4.3); power of 2 is checked at enable. */
		if (queue_writable(vp, c) && v && v <= c->max_size)
			c->size = (uint16_t)v;
		break;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		if (c)
			c->msix_vector = v < vp->msix.nr ? (uint16_t)v : VIRTIO_NO_VECTOR;
		break;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		/* Only 1 may be written (§4.1.4.3.2); a queue with a bad config is refused. */
		if (v == 1 && queue_writable(vp, c)) {
			if (queue_cfg_valid(c))
				c->enabled = true;
			else
				log_ratelimited(LOG_WARN, "%s: queue %u: not enabling size %u desc 0x%llx",
						vd->id, vp->queue_sel, c->size,
						(unsigned long long)c->desc);
		}
		break;
	case VIRTIO_PCI_COMMON_Q_DESCLO:  if (queue_writable(vp, c)) set_lo(&c->desc, v); break;
	case VIRTIO_PCI_COMMON_Q_DESCHI:  if (queue_writable(vp, c)) set_hi(&c->desc, v); break;
	case VIRTIO_PCI_COMMON_Q_AVAILLO: if (queue_writable(vp, c)) set_lo(&c->driver, v); break;
	case VIRTIO_PCI_COMMON_Q_AVAILHI: if (queue_writable(vp, c)) set_hi(&c->driver, v); break;
	case VIRTIO_PCI_COMMON_Q_USEDLO:  if (queue_writable(vp, c)) set_lo(&c->device, v); break;
	case VIRTIO_PCI_COMMON_Q_USEDHI:  if (queue_writable(vp, c)) set_hi(&c->device, v); break;
	default:
		break;	/* read-only fields */
	}
}

static void common_write(struct virtio_pci *vp, uint32_t off, const uint8_t *data, uint32_t len)
{
	uint64_t v = 0;

	for (uint32_t i = 0; i < len && i < 8; i++)
		v |= (uint64_t)data[i] << (8 * i);
	if (len == 8 && common_field_len(off) == 4 && common_field_len(off + 4) == 4) {
		common_write_field(vp, off, (uint32_t)v);
		common_write_field(vp, off + 4, (uint32_t)(v >> 32));
		return;
	}
	if (common_field_len(off) != len) {
		log_ratelimited(LOG_WARN, "%s: common cfg write of %u bytes at 0x%x ignored",
				vp->vd->id, len, off);
		return;
	}
	common_write_field(vp, off, (uint32_t)v);
}

/* ---- the BAR ---- */

static void signal_eventfd(int fd)
{
	uint64_t one = 1;

	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0)
		log_ratelimited(LOG_ERR, "eventfd write: %s", strerror(errno));
}

void virtio_pci_bar_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *vd = vp->vd;

	if (off >= vp->msix_table_off && off - vp->msix_table_off < msix_table_size(vp->msix.nr)) {
		msix_table_read(&vp->msix, off - vp->msix_table_off, data, len);
		return;
	}
	if (off >= vp->msix_pba_off && off - vp->msix_pba_off < msix_pba_size(vp->msix.nr)) {
		msix_pba_read(&vp->msix, off - vp->msix_pba_off, data, len);
		return;
	}
	memset(data, 0, len);
	pthread_mutex_lock(&vd->lock);
	if (off < VIRTIO_PCI_COMMON_LEN) {
		common_read(vp, (uint32_t)off, data, len);
	} else if (off == VIRTIO_PCI_ISR_OFF && len == 1) {
		/* Read clears, and deasserts INTx (§4.1.4.5). */
		*(uint8_t *)data = vp->isr;
		vp->isr = 0;
		pci_device_set_intx(&vp->pci, false);
	} else if (off >= VIRTIO_PCI_DEVCFG_OFF && off - VIRTIO_PCI_DEVCFG_OFF < vd->config_len &&
		   len <= vd->config_len - (off - VIRTIO_PCI_DEVCFG_OFF)) {
		if (vd->ops->config_read)
			vd->ops->config_read(vd, (uint32_t)(off - VIRTIO_PCI_DEVCFG_OFF), data, len);
	}
	pthread_mutex_unlock(&vd->lock);
}

void virtio_pci_bar_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *vd = vp->vd;

	if (off >= vp->msix_table_off && off - vp->msix_table_off < msix_table_size(vp->msix.nr)) {
		msix_table_write(&vp->msix, off - vp->msix_table_off, data, len);
		return;
	}
	if (off >= VIRTIO_PCI_NOTIFY_OFF &&
	    off - VIRTIO_PCI_NOTIFY_OFF < (uint64_t)vd->nr_vqs * VIRTIO_PCI_NOTIFY_MULT) {
		/* Trapped kick (no ioeventfd for this width): hand it to the main loop. */
		unsigned int q = (unsigned int)((off - VIRTIO_PCI_NOTIFY_OFF) / VIRTIO_PCI_NOTIFY_MULT);

		signal_eventfd(vp->notify[q].ioev.fd);
		return;
	}
	pthread_mutex_lock(&vd->lock);
	if (off < VIRTIO_PCI_COMMON_LEN) {
		common_write(vp, (uint32_t)off, data, len);
	} else if (off >= VIRTIO_PCI_DEVCFG_OFF && off - VIRTIO_PCI_DEVCFG_OFF < vd->config_len &&
		   len <= vd->config_len - (off - VIRTIO_PCI_DEVCFG_OFF)) {
		if (vd->ops->config_write)
			vd->ops->config_write(vd, (uint32_t)(off - VIRTIO_PCI_DEVCFG_OFF), data, len);
	}
	pthread_mutex_unlock(&vd->lock);
}

static const struct bus_ops bar_ops = { .read = virtio_pci_bar_read, .write = virtio_pci_bar_write };

/* ---- notifications: ioeventfd -> main loop ---- */

static void bar_moved(struct pci_device *d, unsigned int bar, uint64_t addr, bool active)
{
	struct virtio_pci *vp = d->opaque;

	if (bar != 0 || vp->env.vm_fd < 0)
		return;
	for (unsigned int q = 0; q < vp->vd->nr_vqs; q++) {
		struct ioeventfd *ev = &vp->notify[q].ioev;

		ioeventfd_deassign(vp->env.vm_fd, ev);
		if (active) {
			ev->addr = addr + VIRTIO_PCI_NOTIFY_OFF + (uint64_t)q * VIRTIO_PCI_NOTIFY_MULT;
			ev->len = 2;	/* the driver writes the 16-bit queue index */
			/* On failure the write traps and virtio_pci_bar_write signals the fd. */
			ioeventfd_assign(vp->env.vm_fd, ev);
		}
	}
}

/*
 * VIRTIO_PCI_CAP_PCI_CFG (virtio 1.2 §4.1.4.9): a window into BAR0 through configuration
 * space. The driver writes cap.bar/offset/length, then writing pci_cfg_data writes that many
 * bytes at the offset, and reading it reads them. Accesses that are not 1, 2 or 4 bytes,
 * misaligned, outside BAR0 or for another BAR are ignored (reads leave the data field as is).
 */
static bool pcicfg_target(struct virtio_pci *vp, uint32_t *off, uint32_t *len)
{
	uint8_t at = vp->pci_cfg_cap;

	*off = pci_cfg_get32(&vp->pci, at + VIRTIO_PCI_CAP_OFFSET);
	*len = pci_cfg_get32(&vp->pci, at + VIRTIO_PCI_CAP_LENGTH);
	return vp->pci.cfg[at + VIRTIO_PCI_CAP_BAR] == 0 && (*len == 1 || *len == 2 || *len == 4) &&
	       !(*off & (*len - 1)) && *off < vp->bar_size && *len <= vp->bar_size - *off;
}

static bool touches_pcicfg_data(struct virtio_pci *vp, uint32_t off, uint32_t len)
{
	uint32_t data = vp->pci_cfg_cap + CAP_LEN;

	return vp->pci_cfg_cap && off < data + 4 && data < off + len;
}

static void pcicfg_written(struct pci_device *d, uint32_t off, uint32_t len)
{
	struct virtio_pci *vp = d->opaque;
	uint32_t boff, blen;

	if (touches_pcicfg_data(vp, off, len) && pcicfg_target(vp, &boff, &blen))
		virtio_pci_bar_write(vp, boff, &d->cfg[vp->pci_cfg_cap + CAP_LEN], blen);
}

static void pcicfg_before_read(struct pci_device *d, uint32_t off, uint32_t len)
{
	struct virtio_pci *vp = d->opaque;
	uint32_t boff, blen;

	if (touches_pcicfg_data(vp, off, len) && pcicfg_target(vp, &boff, &blen))
		virtio_pci_bar_read(vp, boff, &d->cfg[vp->pci_cfg_cap + CAP_LEN], blen);
}

static const struct pci_device_ops pci_ops = {
	.bar_moved = bar_moved,
	.config_written = pcicfg_written,
	.config_before_read = pcicfg_before_read,
};

void virtio_pci_kick(struct virtio_pci *vp, unsigned int q)
{
	struct virtio_dev *vd = vp->vd;

	if (q >= vd->nr_vqs)
		return;
	pthread_mutex_lock(&vd->lock);
	vp->notify[q].kicks++;
	/* A kick for a queue never set up, or a device not live, is ignored (hostile case). */
	if (vd->active && vd->vqs[q].enabled && !(vd->status & VIRTIO_CONFIG_S_NEEDS_RESET))
		vd->ops->queue_notify(vd, q);
	else
		log_ratelimited(LOG_DBG, "%s: kick for inactive queue %u", vd->id, q);
	pthread_mutex_unlock(&vd->lock);
}

static void notify_cb(struct evloop *l, struct ev_req *req, int res)
{
	struct virtio_pci_notify *n = req->opaque;
	uint64_t cnt;

	if (res < 0) {
		if (res != -ECANCELED)
			log_err("%s: queue %u notify poll: %s", n->vp->vd->id, n->q, strerror(-res));
		return;
	}
	if (read(n->ioev.fd, &cnt, sizeof(cnt)) == sizeof(cnt))
		virtio_pci_kick(n->vp, n->q);
	if (!ev_req_more(req))
		evloop_poll(l, req, n->ioev.fd, POLLIN, true);
}

/* ---- set-up ---- */

static int add_vendor_cap(struct virtio_pci *vp, uint8_t type, uint32_t off, uint32_t len,
			  bool notify)
{
	uint8_t at;
	int ret = pci_device_add_cap(&vp->pci, PCI_CAP_ID_VNDR, notify ? NOTIFY_CAP_LEN : CAP_LEN, &at);

	if (ret < 0)
		return ret;
	pci_cfg_set8(&vp->pci, at + VIRTIO_PCI_CAP_LEN, notify ? NOTIFY_CAP_LEN : CAP_LEN, 0);
	pci_cfg_set8(&vp->pci, at + VIRTIO_PCI_CAP_CFG_TYPE, type, 0);
	pci_cfg_set8(&vp->pci, at + VIRTIO_PCI_CAP_BAR, 0, 0);
	pci_cfg_set32(&vp->pci, at + VIRTIO_PCI_CAP_OFFSET, off, 0);
	pci_cfg_set32(&vp->pci, at + VIRTIO_PCI_CAP_LENGTH, len, 0);
	if (notify)
		pci_cfg_set32(&vp->pci, at + CAP_LEN, VIRTIO_PCI_NOTIFY_MULT, 0);
	return 0;
}

/* The PCI_CFG capability: bar, offset, length and data are the driver's to write. */
static int add_pcicfg_cap(struct virtio_pci *vp)
{
	uint8_t at;
	int ret = pci_device_add_cap(&vp->pci, PCI_CAP_ID_VNDR, CAP_LEN + 4, &at);

	if (ret < 0)
		return ret;
	pci_cfg_set8(&vp->pci, at + VIRTIO_PCI_CAP_LEN, CAP_LEN + 4, 0);
	pci_cfg_set8(&vp->pci, at + VIRTIO_PCI_CAP_CFG_TYPE, VIRTIO_PCI_CAP_PCI_CFG, 0);
	pci_cfg_set8(&vp->pci, at + VIRTIO_PCI_CAP_BAR, 0, 0xff);
	pci_cfg_set32(&vp->pci, at + VIRTIO_PCI_CAP_OFFSET, 0, 0xffffffff);
	pci_cfg_set32(&vp->pci, at + VIRTIO_PCI_CAP_LENGTH, 0, 0xffffffff);
	pci_cfg_set32(&vp->pci, at + CAP_LEN, 0, 0xffffffff);
	vp->pci_cfg_cap = at;
	return 0;
}

static uint32_t align_up(uint32_t v, uint32_t a) { return (v + a - 1) & ~(a - 1); }

int virtio_pci_add(const struct virtio_pci_env *env, struct virtio_dev *vd, struct virtio_pci **out)
{
	struct virtio_pci *vp;
	uint16_t nvec;
	uint32_t end;
	int ret;

	if (!vd->ops || !vd->ops->features || !vd->ops->queue_notify || vd->nr_vqs == 0 ||
	    vd->nr_vqs > VIRTIO_MAX_QUEUES || vd->config_len > VIRTIO_PCI_DEVCFG_MAX)
		return -EINVAL;
	for (unsigned int q = 0; q < vd->nr_vqs; q++)
		if (!vd->vqs[q].max_size || (vd->vqs[q].max_size & (vd->vqs[q].max_size - 1)) ||
		    vd->vqs[q].max_size > 32768)
			return -EINVAL;
	vp = calloc(1, sizeof(*vp));
	if (!vp)
		return -ENOMEM;
	vp->vd = vd;
	vp->env = *env;
	nvec = (uint16_t)(vd->nr_vqs + 1);
	vp->msix_table_off = VIRTIO_PCI_NOTIFY_OFF + align_up(vd->nr_vqs * VIRTIO_PCI_NOTIFY_MULT, 0x1000);
	vp->msix_pba_off = vp->msix_table_off + align_up(msix_table_size(nvec), 0x1000);
	end = vp->msix_pba_off + align_up(msix_pba_size(nvec), 0x1000);
	for (vp->bar_size = 0x1000; vp->bar_size < end; vp->bar_size <<= 1)
		;
	for (unsigned int q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vp->notify[q].ioev.fd = -1;

	pci_device_init(&vp->pci, vd->id, VIRTIO_PCI_VENDOR,
			(uint16_t)(VIRTIO_PCI_DEVICE_BASE + vd->device_type),
			env->class_code ? env->class_code : 0xff0000, 1, VIRTIO_PCI_VENDOR,
			VIRTIO_PCI_SUBSYS_ID);
	vp->pci.ops = &pci_ops;
	vp->pci.opaque = vp;
	ret = pci_device_set_bar(&vp->pci, 0, vp->bar_size, true, false, &bar_ops, vp);
	if (ret < 0)
		goto err_free;
	ret = msix_init(&vp->msix, &vp->pci, env->irq, nvec, 0, vp->msix_table_off, vp->msix_pba_off);
	if (ret < 0)
		goto err_free;
	ret = add_vendor_cap(vp, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_LEN, false);
	if (!ret)
		ret = add_vendor_cap(vp, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFF, 1, false);
	if (!ret && vd->config_len)
		ret = add_vendor_cap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVCFG_OFF, vd->config_len, false);
	if (!ret)
		ret = add_vendor_cap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFF,
				     vd->nr_vqs * VIRTIO_PCI_NOTIFY_MULT, true);
	if (!ret)
		ret = add_pcicfg_cap(vp);
	if (ret < 0)
		goto err_msix;

	for (unsigned int q = 0; q < vd->nr_vqs; q++) {
		struct virtio_pci_notify *n = &vp->notify[q];

		n->vp = vp;
		n->q = q;
		n->ioev.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (n->ioev.fd < 0) {
			ret = -errno;
			goto err_fds;
		}
		ev_req_init(&n->req, notify_cb, n);
	}
	pthread_mutex_init(&vd->lock, NULL);
	vd->transport = vp;
	vd->tops = &transport_ops;
	transport_reset_locked(vp);
	vd->config_generation = 0;

	ret = pci_register_device(env->pci, &vp->pci);
	if (ret < 0)
		goto err_lock;
	if (env->loop) {
		for (unsigned int q = 0; q < vd->nr_vqs; q++) {
			ret = evloop_poll(env->loop, &vp->notify[q].req, vp->notify[q].ioev.fd, POLLIN, true);
			if (ret < 0) {
				log_err("%s: cannot poll queue %u notifications: %s", vd->id, q, strerror(-ret));
				pci_unregister_device(env->pci, &vp->pci);
				goto err_lock;
			}
		}
	}
	log_info("%s: virtio-pci %04x:%04x at 00:%02x.0, BAR0 0x%llx (%u KiB), %u queues",
		 vd->id, VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_BASE + vd->device_type, vp->pci.slot,
		 (unsigned long long)(pci_cfg_get32(&vp->pci, PCI_BASE_ADDRESS_0) & ~0xfu) |
		 (unsigned long long)pci_cfg_get32(&vp->pci, PCI_BASE_ADDRESS_1) << 32,
		 vp->bar_size >> 10, vd->nr_vqs);
	*out = vp;
	return 0;

err_lock:
	pthread_mutex_destroy(&vd->lock);
	vd->tops = NULL;
	vd->transport = NULL;
err_fds:
	for (unsigned int q = 0; q < vd->nr_vqs; q++)
		if (vp->notify[q].ioev.fd >= 0)
			close(vp->notify[q].ioev.fd);
err_msix:
	msix_destroy(&vp->msix);
err_free:
	free(vp);
	return ret;
}

void virtio_pci_remove(struct virtio_pci *vp)
{
	struct virtio_dev *vd;

	if (!vp)
		return;
	vd = vp->vd;
	pci_unregister_device(vp->env.pci, &vp->pci);	/* deassigns the ioeventfds */
	for (unsigned int q = 0; q < vd->nr_vqs; q++) {
		if (vp->env.loop && ev_req_busy(&vp->notify[q].req)) {
			evloop_cancel(vp->env.loop, &vp->notify[q].req);
			/* Bounded drain: the cancel completes within a couple of loop iterations. */
			for (int i = 0; i < 100 && ev_req_busy(&vp->notify[q].req); i++)
				evloop_run_once(vp->env.loop, 10 * 1000 * 1000);
		}
		close(vp->notify[q].ioev.fd);
	}
	msix_destroy(&vp->msix);
	pthread_mutex_destroy(&vd->lock);
	vd->tops = NULL;
	vd->transport = NULL;
	free(vp);
}

/* ---- state ---- */

void virtio_pci_save(struct virtio_pci *vp, struct virtio_pci_state *st)
{
	struct virtio_dev *vd = vp->vd;

	memset(st, 0, sizeof(*st));
	pci_device_save(&vp->pci, &st->pci);
	msix_save(&vp->msix, &st->msix);
	pthread_mutex_lock(&vd->lock);
	st->status = vd->status;
	st->isr = vp->isr;
	st->config_generation = vd->config_generation;
	st->dev_feature_sel = vp->dev_feature_sel;
	st->drv_feature_sel = vp->drv_feature_sel;
	st->driver_features = vp->driver_features;
	st->acked_features = vd->acked_features;
	st->config_vector = vp->config_vector;
	st->queue_sel = vp->queue_sel;
	st->nr_vqs = (uint16_t)vd->nr_vqs;
	for (unsigned int q = 0; q < vd->nr_vqs; q++) {
		const struct virtio_queue_cfg *c = &vd->vqs[q];

		st->q[q] = (struct virtio_pci_queue_state){ c->size, c->msix_vector, c->enabled,
							    c->desc, c->driver, c->device };
	}
	pthread_mutex_unlock(&vd->lock);
}

int virtio_pci_load(struct virtio_pci *vp, const struct virtio_pci_state *st)
{
	struct virtio_dev *vd = vp->vd;
	uint64_t offered = offered_features(vp);
	int ret;

	/* Check everything before touching the device (the stream is untrusted). */
	if (st->nr_vqs != vd->nr_vqs || (st->acked_features & ~offered) ||
	    (st->driver_features & ~offered) || (st->isr & ~3u) ||
	    ((st->status & VIRTIO_CONFIG_S_FEATURES_OK) &&
	     !(st->acked_features & (1ull << VIRTIO_F_VERSION_1)))) {
		log_err("%s: saved transport state does not fit this device", vd->id);
		return -EINVAL;
	}
	for (unsigned int q = 0; q < vd->nr_vqs; q++) {
		struct virtio_queue_cfg c = { vd->vqs[q].max_size, st->q[q].size, st->q[q].enabled,
					      st->q[q].desc, st->q[q].driver, st->q[q].device,
					      st->q[q].msix_vector };

		if (st->q[q].enabled > 1 || (c.enabled && !queue_cfg_valid(&c)) || c.size > c.max_size) {
			log_err("%s: saved queue %u is invalid", vd->id, q);
			return -EINVAL;
		}
	}
	ret = pci_device_load(&vp->pci, &st->pci);
	if (ret == 0)
		ret = msix_load(&vp->msix, &st->msix);
	if (ret < 0)
		return ret;

	pthread_mutex_lock(&vd->lock);
	vd->status = st->status;
	vp->isr = st->isr;
	vd->config_generation = st->config_generation;
	vp->dev_feature_sel = st->dev_feature_sel;
	vp->drv_feature_sel = st->drv_feature_sel;
	vp->driver_features = st->driver_features;
	vd->acked_features = st->acked_features;
	vp->config_vector = st->config_vector < vp->msix.nr ? st->config_vector : VIRTIO_NO_VECTOR;
	vp->queue_sel = st->queue_sel;
	for (unsigned int q = 0; q < vd->nr_vqs; q++) {
		struct virtio_queue_cfg *c = &vd->vqs[q];

		c->size = st->q[q].size;
		c->enabled = st->q[q].enabled;
		c->desc = st->q[q].desc;
		c->driver = st->q[q].driver;
		c->device = st->q[q].device;
		c->msix_vector = st->q[q].msix_vector < vp->msix.nr ? st->q[q].msix_vector : VIRTIO_NO_VECTOR;
	}
	vd->active = false;
	if ((vd->status & VIRTIO_CONFIG_S_DRIVER_OK) && !(vd->status & VIRTIO_CONFIG_S_NEEDS_RESET)) {
		if (activate_locked(vp) < 0)
			virtio_dev_needs_reset(vd);
		else
			vd->active = true;
	}
	if (!msix_enabled(&vp->msix) && vp->isr)
		pci_device_set_intx(&vp->pci, true);
	pthread_mutex_unlock(&vd->lock);
	return 0;
}
