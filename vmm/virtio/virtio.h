/* SPDX-License-Identifier: MIT */
/*
 * The device side of virtio: what a device (rng, blk, net, balloon) implements and what it may
 * call. The transport (virtio/pci.c, the modern virtio-pci transport of virtio 1.2 §4.1) owns
 * feature negotiation, the status register and reset sequencing, the queue configuration the
 * driver writes (sizes, ring addresses, enable, MSI-X vectors), interrupts and queue
 * notifications; the device decides its features, its configuration space and what a queue
 * notification means.
 *
 * Locking and threads. @lock (a mutex) serialises the transport and the device:
 *   - every virtio_dev_ops callback is called with @lock held: config_read/config_write,
 *     reset and activate on a vCPU thread (a register access), queue_notify on the main loop;
 *   - the device's own main-loop work that touches queues or device state (I/O completions)
 *     takes @lock;
 *   - the virtio_dev_*() helpers below must be called with @lock held.
 * Lock order: pci_bus.lock (BAR access) -> virtio_dev.lock -> msix/intx locks -> irq lock.
 * vCPU threads never do device I/O: queue_notify runs on the main loop, reached through a
 * per-queue ioeventfd that the main loop polls.
 *
 * Hostile guests: the transport validates everything in the queue configuration it can
 * (power-of-two size <= max_size, alignment) before activate(); descriptor contents are the
 * device's/virtqueue walker's to check. A device that finds the guest broke the rules calls
 * virtio_dev_needs_reset() and stops processing.
 */
#ifndef VMM_VIRTIO_VIRTIO_H
#define VMM_VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>

struct guest_mem;
struct state_ops;
struct virtio_dev;

#define VIRTIO_MAX_QUEUES	64
#define VIRTIO_NO_VECTOR	0xffff

/*
 * One queue as the driver configured it through the transport (virtio 1.2 §4.1.4.3). The
 * device reads this in activate() to set up its ring walker (vmm/virtio/queue.h).
 */
struct virtio_queue_cfg {
	uint16_t max_size;	/* set by the device before registration: its limit (power of 2) */
	uint16_t size;		/* driver's choice, validated: power of 2, 1..max_size */
	bool enabled;
	uint64_t desc, driver, device;	/* guest-physical ring addresses */
	uint16_t msix_vector;	/* VIRTIO_NO_VECTOR if none */
};

struct virtio_dev_ops {
	/* Device feature bits (the transport adds VIRTIO_F_VERSION_1 and transport features). */
	uint64_t (*features)(struct virtio_dev *vd);
	/* Device configuration space; @off + @len is within config_len (checked by caller). */
	void (*config_read)(struct virtio_dev *vd, uint32_t off, void *data, uint32_t len);
	void (*config_write)(struct virtio_dev *vd, uint32_t off, const void *data, uint32_t len);
	/*
	 * DRIVER_OK: acked_features is final and every enabled queue's configuration is valid.
	 * 0, or -errno: the transport sets DEVICE_NEEDS_RESET.
	 */
	int  (*activate)(struct virtio_dev *vd);
	/* The driver kicked queue @q (enabled, device active). Main loop only. */
	void (*queue_notify)(struct virtio_dev *vd, unsigned int q);
	/* Back to the initial state (driver wrote 0 to status). Drop in-flight work. */
	void (*reset)(struct virtio_dev *vd);
	const struct state_ops *state;	/* NULL = blocks migration */
};

/* What a transport provides to the helpers below (virtio/pci.c fills it). */
struct virtio_transport_ops {
	void (*notify_queue)(struct virtio_dev *vd, unsigned int q);
	void (*notify_config)(struct virtio_dev *vd);
};

struct virtio_dev {
	/* filled by the device before registering with a transport */
	const char *id;				/* stable, e.g. "rng0": state section id, logs */
	uint32_t device_type;			/* VIRTIO_ID_RNG ... */
	const struct virtio_dev_ops *ops;
	struct virtio_queue_cfg vqs[VIRTIO_MAX_QUEUES];	/* max_size set for [0, nr_vqs) */
	unsigned int nr_vqs;
	uint32_t config_len;			/* bytes of device configuration space */
	struct guest_mem *mem;			/* guest RAM, for the device's ring walker */
	void *opaque;				/* the device's */

	/* owned by the transport */
	pthread_mutex_t lock;			/* see top of file */
	uint64_t acked_features;		/* valid from FEATURES_OK */
	uint8_t status;				/* VIRTIO_CONFIG_S_* */
	uint8_t config_generation;
	bool active;				/* DRIVER_OK accepted, not reset since */
	const struct virtio_transport_ops *tops;
	void *transport;
};

static inline bool virtio_dev_has_feature(const struct virtio_dev *vd, unsigned int bit)
{
	return vd->acked_features & (1ull << bit);
}

/* Used-buffer notification for queue @q (MSI-X vector or INTx). @lock held. */
void virtio_dev_notify(struct virtio_dev *vd, unsigned int q);
/* The device changed its configuration: bump config_generation, config interrupt. @lock held. */
void virtio_dev_config_changed(struct virtio_dev *vd);
/*
 * The device hit an unrecoverable guest error: set DEVICE_NEEDS_RESET, send a config
 * interrupt, stop delivering queue notifications until reset (virtio 1.2 §2.1.2). @lock held.
 */
void virtio_dev_needs_reset(struct virtio_dev *vd);

#endif
