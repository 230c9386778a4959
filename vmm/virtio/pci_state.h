/* SPDX-License-Identifier: MIT */
/* virtio-pci transport state as state-stream fields (see pci_state.c for the pattern). */
#ifndef VMM_VIRTIO_PCI_STATE_H
#define VMM_VIRTIO_PCI_STATE_H

#include <stdint.h>

struct state_field;
struct state_reader;
struct state_writer;
struct virtio_pci_state;
struct vq_state;

/* Append @st's fields to @w (inside the caller's nested field). 0 or the writer's -errno. */
int virtio_pci_state_write(const struct virtio_pci_state *st, struct state_writer *w);
/*
 * Parse a field list written by virtio_pci_state_write into *st (zeroed first). Checks the
 * shape (required fields present, counts consistent, queue indexes unique); the caller then
 * hands *st to virtio_pci_load(), which checks it against the device. 0, -EBADMSG, -EPROTO.
 */
int virtio_pci_state_read(struct state_reader *r, struct virtio_pci_state *st);

/*
 * What every virtio device section holds (virtio-rng, -net, -blk, -balloon): the transport as
 * one nested field and each queue's struct vq_state as one nested field.
 *
 * virtio_pci_state_write_nest: nested field @tag (required) holding virtio_pci_state_write's
 * fields; returns virtio_pci_state_write's result. virtio_pci_state_read_nest: its reverse for
 * field @f of @parent.
 */
int virtio_pci_state_write_nest(struct state_writer *w, uint16_t tag,
				const struct virtio_pci_state *st);
int virtio_pci_state_read_nest(const struct state_reader *parent, const struct state_field *f,
			       struct virtio_pci_state *st);
/*
 * A queue's fields, tags first_tag .. first_tag + 10 in this order: desc, avail, used (u64),
 * size, last_avail_idx, used_idx, signalled_used (u16, optional), enabled, event_idx,
 * indirect, signalled_used_valid (u8, optional). first_tag is 1 for rng/net/blk; 2 for the
 * balloon, whose queue nests start with the queue index at tag 1.
 * virtio_vq_state_read_field parses one field @g of nested reader @r into @vq; a tag outside
 * the range goes to sr_skip_unknown (so it serves as a caller's default: branch).
 */
void virtio_vq_state_write(struct state_writer *w, const struct vq_state *vq, uint16_t first_tag);
int virtio_vq_state_read_field(const struct state_reader *r, const struct state_field *g,
			       struct vq_state *vq, uint16_t first_tag);
/* One queue as nested field @tag (required), fields from tag 1; read: *vq zeroed first. */
void virtio_vq_state_write_nest(struct state_writer *w, uint16_t tag, const struct vq_state *vq);
int virtio_vq_state_read_nest(const struct state_reader *parent, const struct state_field *f,
			      struct vq_state *vq);
/*
 * One queue as nested field @tag (required) that carries its own index: u8 @index at tag 1,
 * the queue's fields from tag 2 (the balloon's queues; virtio-blk's queues after the first).
 * read: *vq zeroed first, *index 0xff when the nest has none; the caller checks the range.
 */
void virtio_vq_state_write_indexed(struct state_writer *w, uint16_t tag, uint8_t index,
				   const struct vq_state *vq);
int virtio_vq_state_read_indexed(const struct state_reader *parent, const struct state_field *f,
				 uint8_t *index, struct vq_state *vq);

#endif
