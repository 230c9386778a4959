/* SPDX-License-Identifier: MIT */
/* virtio-pci transport state as state-stream fields (see pci_state.c for the pattern). */
#ifndef VMM_VIRTIO_PCI_STATE_H
#define VMM_VIRTIO_PCI_STATE_H

struct state_reader;
struct state_writer;
struct virtio_pci_state;

/* Append @st's fields to @w (inside the caller's nested field). 0 or the writer's -errno. */
int virtio_pci_state_write(const struct virtio_pci_state *st, struct state_writer *w);
/*
 * Parse a field list written by virtio_pci_state_write into *st (zeroed first). Checks the
 * shape (required fields present, counts consistent, queue indexes unique); the caller then
 * hands *st to virtio_pci_load(), which checks it against the device. 0, -EBADMSG, -EPROTO.
 */
int virtio_pci_state_read(struct state_reader *r, struct virtio_pci_state *st);

#endif
