/* SPDX-License-Identifier: MIT */
/* virtio-rng (virtio 1.2 §5.4) on the virtio-pci transport: entropy from getrandom(2). */
#ifndef VMM_VIRTIO_RNG_H
#define VMM_VIRTIO_RNG_H

#include <stdint.h>

#include "vmm/virtio/pci.h"
#include "vmm/virtio/queue.h"

struct guest_mem;
struct virtio_pci_env;
struct virtio_rng;

/*
 * Create the device @id (e.g. "rng0") and register it on the PCI bus through virtio-pci.
 * Main thread, before vCPUs run. 0 or -errno.
 */
int  virtio_rng_create(const struct virtio_pci_env *env, struct guest_mem *mem, const char *id,
		       struct virtio_rng **out);
/* vCPUs stopped. */
void virtio_rng_destroy(struct virtio_rng *rng);

/* Counters: bytes of entropy handed to the guest, requests (chains) served. */
void virtio_rng_stats(struct virtio_rng *rng, uint64_t *bytes, uint64_t *requests);

/* Saved state: transport + the request queue's indices. Plain struct (see virtio/pci.h). */
struct virtio_rng_state {
	struct virtio_pci_state transport;
	struct vq_state vq;
};

/* vCPUs paused, main loop. Nothing is in flight in this device (requests complete at once). */
void virtio_rng_save(struct virtio_rng *rng, struct virtio_rng_state *st);
/*
 * Load into a freshly created device (same id/queue layout). Validates everything (untrusted
 * input), then re-kicks the queue so buffers posted before the save are served. vCPUs paused,
 * main loop. 0 or -EINVAL.
 */
int  virtio_rng_load(struct virtio_rng *rng, const struct virtio_rng_state *st);

struct state_registry;
/*
 * Register the device's state section ("virtio-rng", id = the device id) so snapshots and
 * migration carry it. Main loop, before any save/load. 0 or -errno.
 */
int  virtio_rng_register_state(struct virtio_rng *rng, struct state_registry *reg);

#endif
