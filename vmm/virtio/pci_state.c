// SPDX-License-Identifier: MIT
/*
 * virtio-pci transport state <-> the state stream's TLV fields (vmm/state.h,
 * docs/state-format.md). A device's state_ops writes the transport as one nested field:
 *
 *	virtio_pci_save(vp, &st);                      // plain struct, vCPUs paused
 *	sw_nest_begin(w, MYDEV_T_TRANSPORT, STATE_F_REQUIRED);
 *	virtio_pci_state_write(&st, w);
 *	sw_nest_end(w);
 *
 * and on load parses it back with virtio_pci_state_read() (defaults for missing optional
 * fields, unknown required ones refused) before virtio_pci_load() validates and applies it.
 * Tags are part of the format: never renumber, add new ones.
 *
 * The devices' own sections share two more encodings, kept here once: the transport as a
 * nested field (virtio_pci_state_*_nest) and a queue's struct vq_state (virtio_vq_state_*).
 */
#define LOG_TAG "virtio-pci"
#include <errno.h>
#include <string.h>

#include "vmm/lib/log.h"
#include "vmm/state.h"
#include "vmm/virtio/pci.h"
#include "vmm/virtio/pci_state.h"
#include "vmm/virtio/queue.h"

enum {
	T_PCI_CFG = 1,		/* bytes[4096]: config space image */
	T_MSIX_NR,		/* u16 */
	T_MSIX_TABLE,		/* u64[nr * 2]: (addr_lo | addr_hi << 32), (data | ctrl << 32) */
	T_MSIX_PBA,		/* u64[(nr + 63) / 64] */
	T_STATUS,		/* u8 */
	T_ISR,			/* u8 */
	T_CFG_GEN,		/* u8 */
	T_DEV_FSEL,		/* u32 */
	T_DRV_FSEL,		/* u32 */
	T_DRV_FEATURES,		/* u64 */
	T_ACKED_FEATURES,	/* u64 */
	T_CONFIG_VECTOR,	/* u16 */
	T_QUEUE_SEL,		/* u16 */
	T_NR_VQS,		/* u16 */
	T_QUEUE,		/* nested, one per queue (QT_*) */
};

enum { QT_INDEX = 1, QT_SIZE, QT_VECTOR, QT_ENABLED, QT_DESC, QT_DRIVER, QT_DEVICE };

int virtio_pci_state_write(const struct virtio_pci_state *st, struct state_writer *w)
{
	const uint16_t R = STATE_F_REQUIRED;
	uint64_t tbl[2 * MSIX_MAX_VECTORS];

	if (st->msix.nr > MSIX_MAX_VECTORS || st->nr_vqs > VIRTIO_MAX_QUEUES)
		return -EINVAL;
	for (unsigned int i = 0; i < st->msix.nr; i++) {
		tbl[2 * i] = st->msix.table[i][0] | (uint64_t)st->msix.table[i][1] << 32;
		tbl[2 * i + 1] = st->msix.table[i][2] | (uint64_t)st->msix.table[i][3] << 32;
	}
	sw_bytes(w, T_PCI_CFG, st->pci.cfg, sizeof(st->pci.cfg), R);
	sw_u16(w, T_MSIX_NR, st->msix.nr, R);
	sw_u64_array(w, T_MSIX_TABLE, tbl, 2u * st->msix.nr, R);
	sw_u64_array(w, T_MSIX_PBA, st->msix.pba, (st->msix.nr + 63u) / 64, R);
	sw_u8(w, T_STATUS, st->status, R);
	sw_u8(w, T_ISR, st->isr, 0);
	sw_u8(w, T_CFG_GEN, st->config_generation, 0);
	sw_u32(w, T_DEV_FSEL, st->dev_feature_sel, 0);
	sw_u32(w, T_DRV_FSEL, st->drv_feature_sel, 0);
	sw_u64(w, T_DRV_FEATURES, st->driver_features, R);
	sw_u64(w, T_ACKED_FEATURES, st->acked_features, R);
	sw_u16(w, T_CONFIG_VECTOR, st->config_vector, R);
	sw_u16(w, T_QUEUE_SEL, st->queue_sel, 0);
	sw_u16(w, T_NR_VQS, st->nr_vqs, R);
	for (unsigned int q = 0; q < st->nr_vqs; q++) {
		const struct virtio_pci_queue_state *qs = &st->q[q];

		sw_nest_begin(w, T_QUEUE, R);
		sw_u16(w, QT_INDEX, (uint16_t)q, R);
		sw_u16(w, QT_SIZE, qs->size, R);
		sw_u16(w, QT_VECTOR, qs->msix_vector, R);
		sw_u8(w, QT_ENABLED, qs->enabled, R);
		sw_u64(w, QT_DESC, qs->desc, R);
		sw_u64(w, QT_DRIVER, qs->driver, R);
		sw_u64(w, QT_DEVICE, qs->device, R);
		sw_nest_end(w);
	}
	/* Not sw_error(): the caller's nest is still open, which it would count as an error. */
	return w->err;
}

static int read_queue(struct state_reader *parent, const struct state_field *f,
		      struct virtio_pci_state *st, uint64_t *seen)
{
	struct virtio_pci_queue_state qs = { 0 };
	struct state_reader r;
	struct state_field g;
	uint16_t idx = 0xffff;
	int ret = sr_nested(parent, f, &r);

	while (ret == 0 && (ret = sr_next(&r, &g)) > 0) {
		switch (g.tag) {
		case QT_INDEX:   ret = sr_u16(&g, &idx); break;
		case QT_SIZE:    ret = sr_u16(&g, &qs.size); break;
		case QT_VECTOR:  ret = sr_u16(&g, &qs.msix_vector); break;
		case QT_ENABLED: ret = sr_u8(&g, &qs.enabled); break;
		case QT_DESC:    ret = sr_u64(&g, &qs.desc); break;
		case QT_DRIVER:  ret = sr_u64(&g, &qs.driver); break;
		case QT_DEVICE:  ret = sr_u64(&g, &qs.device); break;
		default:         ret = sr_skip_unknown(&r, &g); break;
		}
	}
	if (ret < 0)
		return ret;
	if (idx >= VIRTIO_MAX_QUEUES || (*seen & (1ull << idx))) {
		log_err("state: virtio-pci queue index %u out of range or repeated", idx);
		return -EBADMSG;
	}
	*seen |= 1ull << idx;
	st->q[idx] = qs;
	return 0;
}

int virtio_pci_state_read(struct state_reader *r, struct virtio_pci_state *st)
{
	uint64_t tbl[2 * MSIX_MAX_VECTORS], queues = 0;
	size_t n_tbl = 0, n_pba = 0;
	struct state_field f;
	bool have_cfg = false, have_tbl = false;
	int ret;

	memset(st, 0, sizeof(*st));
	st->config_vector = VIRTIO_NO_VECTOR;
	while ((ret = sr_next(r, &f)) > 0) {
		switch (f.tag) {
		case T_PCI_CFG:
			ret = sr_bytes(&f, st->pci.cfg, sizeof(st->pci.cfg));
			have_cfg = ret == 0;
			break;
		case T_MSIX_NR:        ret = sr_u16(&f, &st->msix.nr); break;
		case T_MSIX_TABLE:
			ret = sr_u64_array(&f, tbl, 2 * MSIX_MAX_VECTORS, &n_tbl);
			have_tbl = ret == 0;
			break;
		case T_MSIX_PBA:
			ret = sr_u64_array(&f, st->msix.pba, MSIX_MAX_VECTORS / 64, &n_pba);
			break;
		case T_STATUS:         ret = sr_u8(&f, &st->status); break;
		case T_ISR:            ret = sr_u8(&f, &st->isr); break;
		case T_CFG_GEN:        ret = sr_u8(&f, &st->config_generation); break;
		case T_DEV_FSEL:       ret = sr_u32(&f, &st->dev_feature_sel); break;
		case T_DRV_FSEL:       ret = sr_u32(&f, &st->drv_feature_sel); break;
		case T_DRV_FEATURES:   ret = sr_u64(&f, &st->driver_features); break;
		case T_ACKED_FEATURES: ret = sr_u64(&f, &st->acked_features); break;
		case T_CONFIG_VECTOR:  ret = sr_u16(&f, &st->config_vector); break;
		case T_QUEUE_SEL:      ret = sr_u16(&f, &st->queue_sel); break;
		case T_NR_VQS:         ret = sr_u16(&f, &st->nr_vqs); break;
		case T_QUEUE:          ret = read_queue(r, &f, st, &queues); break;
		default:               ret = sr_skip_unknown(r, &f); break;
		}
		if (ret < 0)
			return ret;
	}
	if (ret < 0)
		return ret;
	/* Shape checks here; meaning (ids, features, sizes) is virtio_pci_load()'s to check. */
	if (!have_cfg || !have_tbl || st->msix.nr == 0 || st->msix.nr > MSIX_MAX_VECTORS ||
	    n_tbl != 2u * st->msix.nr || st->nr_vqs > VIRTIO_MAX_QUEUES ||
	    queues != (st->nr_vqs == 64 ? ~0ull : (1ull << st->nr_vqs) - 1)) {
		log_err("state: virtio-pci section is incomplete or inconsistent");
		return -EBADMSG;
	}
	for (unsigned int i = 0; i < st->msix.nr; i++) {
		st->msix.table[i][0] = (uint32_t)tbl[2 * i];
		st->msix.table[i][1] = (uint32_t)(tbl[2 * i] >> 32);
		st->msix.table[i][2] = (uint32_t)tbl[2 * i + 1];
		st->msix.table[i][3] = (uint32_t)(tbl[2 * i + 1] >> 32);
	}
	return 0;
}

int virtio_pci_state_write_nest(struct state_writer *w, uint16_t tag,
				const struct virtio_pci_state *st)
{
	int ret;

	sw_nest_begin(w, tag, STATE_F_REQUIRED);
	ret = virtio_pci_state_write(st, w);
	sw_nest_end(w);
	return ret;
}

int virtio_pci_state_read_nest(const struct state_reader *parent, const struct state_field *f,
			       struct virtio_pci_state *st)
{
	struct state_reader sub;
	int ret = sr_nested(parent, f, &sub);

	return ret < 0 ? ret : virtio_pci_state_read(&sub, st);
}

/* Offsets from first_tag: the order the devices' sections have always used. */
enum { VQ_DESC, VQ_AVAIL, VQ_USED, VQ_SIZE, VQ_LAST_AVAIL, VQ_USED_IDX, VQ_SIGNALLED,
       VQ_ENABLED, VQ_EVENT_IDX, VQ_INDIRECT, VQ_SIGNALLED_VALID, VQ_NR_TAGS };

void virtio_vq_state_write(struct state_writer *w, const struct vq_state *vq, uint16_t first_tag)
{
	const uint16_t R = STATE_F_REQUIRED, t = first_tag;

	sw_u64(w, t + VQ_DESC, vq->desc, R);
	sw_u64(w, t + VQ_AVAIL, vq->avail, R);
	sw_u64(w, t + VQ_USED, vq->used, R);
	sw_u16(w, t + VQ_SIZE, vq->size, R);
	sw_u16(w, t + VQ_LAST_AVAIL, vq->last_avail_idx, R);
	sw_u16(w, t + VQ_USED_IDX, vq->used_idx, R);
	sw_u16(w, t + VQ_SIGNALLED, vq->signalled_used, 0);
	sw_u8(w, t + VQ_ENABLED, vq->enabled, R);
	sw_u8(w, t + VQ_EVENT_IDX, vq->event_idx, R);
	sw_u8(w, t + VQ_INDIRECT, vq->indirect, R);
	sw_u8(w, t + VQ_SIGNALLED_VALID, vq->signalled_used_valid, 0);
}

int virtio_vq_state_read_field(const struct state_reader *r, const struct state_field *g,
			       struct vq_state *vq, uint16_t first_tag)
{
	if (g->tag < first_tag || g->tag >= first_tag + VQ_NR_TAGS)
		return sr_skip_unknown(r, g);
	switch (g->tag - first_tag) {
	case VQ_DESC:		return sr_u64(g, &vq->desc);
	case VQ_AVAIL:		return sr_u64(g, &vq->avail);
	case VQ_USED:		return sr_u64(g, &vq->used);
	case VQ_SIZE:		return sr_u16(g, &vq->size);
	case VQ_LAST_AVAIL:	return sr_u16(g, &vq->last_avail_idx);
	case VQ_USED_IDX:	return sr_u16(g, &vq->used_idx);
	case VQ_SIGNALLED:	return sr_u16(g, &vq->signalled_used);
	case VQ_ENABLED:	return sr_u8(g, &vq->enabled);
	case VQ_EVENT_IDX:	return sr_u8(g, &vq->event_idx);
	case VQ_INDIRECT:	return sr_u8(g, &vq->indirect);
	default:		return sr_u8(g, &vq->signalled_used_valid);
	}
}

void virtio_vq_state_write_nest(struct state_writer *w, uint16_t tag, const struct vq_state *vq)
{
	sw_nest_begin(w, tag, STATE_F_REQUIRED);
	virtio_vq_state_write(w, vq, 1);
	sw_nest_end(w);
}

int virtio_vq_state_read_nest(const struct state_reader *parent, const struct state_field *f,
			      struct vq_state *vq)
{
	struct state_reader r;
	struct state_field g;
	int ret = sr_nested(parent, f, &r);

	memset(vq, 0, sizeof(*vq));
	while (ret == 0 && (ret = sr_next(&r, &g)) > 0)
		ret = virtio_vq_state_read_field(&r, &g, vq, 1);
	return ret;
}

enum { VQI_T_INDEX = 1, VQI_T_FIRST };

void virtio_vq_state_write_indexed(struct state_writer *w, uint16_t tag, uint8_t index,
				   const struct vq_state *vq)
{
	sw_nest_begin(w, tag, STATE_F_REQUIRED);
	sw_u8(w, VQI_T_INDEX, index, STATE_F_REQUIRED);
	virtio_vq_state_write(w, vq, VQI_T_FIRST);
	sw_nest_end(w);
}

int virtio_vq_state_read_indexed(const struct state_reader *parent, const struct state_field *f,
				 uint8_t *index, struct vq_state *vq)
{
	struct state_reader r;
	struct state_field g;
	int ret = sr_nested(parent, f, &r);

	memset(vq, 0, sizeof(*vq));
	*index = 0xff;
	while (ret == 0 && (ret = sr_next(&r, &g)) > 0) {
		if (g.tag == VQI_T_INDEX)
			ret = sr_u8(&g, index);
		else
			ret = virtio_vq_state_read_field(&r, &g, vq, VQI_T_FIRST);
	}
	return ret;
}
