// SPDX-License-Identifier: MIT
/* Device-facing helpers shared by all transports (see virtio.h). */
#define LOG_TAG "virtio"
#include "vmm/lib/log.h"
#include "vmm/virtio/virtio.h"

void virtio_dev_notify(struct virtio_dev *vd, unsigned int q)
{
	if (q < vd->nr_vqs && vd->tops && !(vd->status & VIRTIO_CONFIG_S_NEEDS_RESET))
		vd->tops->notify_queue(vd, q);
}

void virtio_dev_config_changed(struct virtio_dev *vd)
{
	vd->config_generation++;
	if (vd->tops)
		vd->tops->notify_config(vd);
}

void virtio_dev_needs_reset(struct virtio_dev *vd)
{
	if (vd->status & VIRTIO_CONFIG_S_NEEDS_RESET)
		return;
	log_ratelimited(LOG_WARN, "%s: device needs reset", vd->id);
	vd->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	vd->active = false;
	if (vd->tops)
		vd->tops->notify_config(vd);
}
