/* SPDX-License-Identifier: MIT */
/* virtio-rng (virtio 1.2 §5.4) on the virtio-pci transport: entropy from getrandom(2). */
#ifndef VMM_VIRTIO_RNG_H
#define VMM_VIRTIO_RNG_H

#include <stdint.h>

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

#endif
