/* SPDX-License-Identifier: MIT */
/*
 * Raw disk image back-end: a regular file or a block device, accessed only through the main
 * loop's io_uring (vmm/lib/evloop.h), so a disk request never blocks a thread and many are in
 * flight at once. Used by virtio-blk (vmm/virtio/blk.c); callers embed a struct image_io in
 * their request, submit, and get one callback when the whole operation is done.
 *
 * What one operation does for the caller:
 *   - read/write: short transfers are resumed (the iovec array is advanced in place) until
 *     all bytes moved; end of file before that is -EIO. -EINTR/-EAGAIN are retried a few times.
 *   - O_DIRECT (config.direct): requests whose file offset, lengths and buffer addresses meet
 *     the file's direct-I/O alignment go through an O_DIRECT descriptor; the others (an odd
 *     guest) through a second, buffered descriptor of the same file. The kernel keeps the two
 *     coherent: a direct read writes back dirty page-cache pages of its range first, a direct
 *     write invalidates them.
 *   - write with IMAGE_WRITE_SYNC: fdatasync after the write (a guest that did not negotiate
 *     a volatile write cache, virtio-blk FLUSH, needs writes durable on completion).
 *   - flush: fdatasync of the file (the image size never changes, so metadata is not needed).
 *   - discard: fallocate(PUNCH_HOLE|KEEP_SIZE); -EOPNOTSUPP from the file system is reported
 *     as success (discard is a hint) and counted in image_stats.discard_unsupported.
 *   - write-zeroes: fallocate(ZERO_RANGE|KEEP_SIZE); where that is unsupported, PUNCH_HOLE if
 *     unmapping is allowed and the image is a regular file (holes read as zeroes), else
 *     plain writes from a zero buffer. The fallback found is remembered per image.
 *
 * Threading: everything here runs on the loop thread (or before the loop runs / after it
 * stopped, with nothing else using the loop). No locks. Callbacks run on the loop thread.
 *
 * Locking against other processes: an OFD lock (write lock, read lock for read-only images)
 * over the whole file, so two VMs cannot open one image for writing.
 */
#ifndef STORAGE_IMAGE_H
#define STORAGE_IMAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/lib/evloop.h"

struct image;
struct image_io;

struct image_config {
	const char *path;
	bool read_only;
	bool direct;		/* O_DIRECT (no host page cache) */
	bool no_lock;		/* skip the OFD lock: a migration destination on the same host,
				   whose source holds it until it exits */
};

/* Called once per submitted operation, on the loop thread: 0 or -errno. */
typedef void (*image_io_cb)(struct image_io *io, int res);

enum image_op {
	IMAGE_OP_NONE,
	IMAGE_OP_READ,
	IMAGE_OP_WRITE,
	IMAGE_OP_FLUSH,
	IMAGE_OP_DISCARD,
	IMAGE_OP_WRITE_ZEROES,
};

#define IMAGE_WRITE_SYNC	0x1u	/* write: fdatasync before completing */
#define IMAGE_ZEROES_UNMAP	0x2u	/* write-zeroes: may deallocate (punch a hole) */

/* Embed in the caller's request; image_io_init once, then submit many times (one at a time). */
struct image_io {
	void *opaque;			/* the caller's */

	/* private */
	struct ev_req ev;
	struct image *img;
	image_io_cb cb;
	uint8_t op;
	uint8_t stage;			/* write: 0 data, 1 the sync after it */
	uint8_t retries;
	uint32_t flags;
	int fd;
	struct iovec *iov;		/* read/write: the caller's array, advanced on short I/O */
	int iovcnt;
	uint64_t off, len, done;	/* byte range, bytes finished */
};

struct image_stats {
	uint64_t inflight;		/* submitted, callback not yet run */
	uint64_t direct_ops, buffered_ops;	/* read/write submissions by path */
	uint64_t short_ops;		/* resubmissions after a short transfer */
	uint64_t discard_unsupported;
};

/*
 * Open @cfg->path, find its size and (direct) alignment, take the OFD lock. On failure
 * returns -errno and writes one line (no newline) into @err, e.g.
 * "disk /x.img: No such file or directory". 0 on success.
 */
int  image_open(const struct image_config *cfg, struct evloop *loop, struct image **out,
		char *err, size_t errlen);
/* Nothing may be in flight (image_stats().inflight == 0). */
void image_close(struct image *img);

uint64_t image_size(const struct image *img);		/* bytes */
bool     image_read_only(const struct image *img);
bool     image_direct(const struct image *img);
/* Logical block size the guest should use: the direct-I/O offset alignment, else 512. */
uint32_t image_block_size(const struct image *img);
/* Physical block size (optimal I/O granularity), >= image_block_size. */
uint32_t image_physical_block_size(const struct image *img);
void     image_get_stats(const struct image *img, struct image_stats *st);

void image_io_init(struct image_io *io, struct image *img, image_io_cb cb, void *opaque);

/*
 * Submit. 0: @cb will run exactly once. -errno (nothing submitted, no callback): -EBUSY if
 * @io is in flight, -EINVAL for a range beyond the image or a bad iovec count, -EROFS for a
 * write-type operation on a read-only image, or a ring error.
 * @iov (read/write) must stay valid until the callback and may be modified.
 */
int image_readv(struct image_io *io, struct iovec *iov, int iovcnt, uint64_t off);
int image_writev(struct image_io *io, struct iovec *iov, int iovcnt, uint64_t off, uint32_t flags);
int image_flush(struct image_io *io);
int image_discard(struct image_io *io, uint64_t off, uint64_t len);
int image_write_zeroes(struct image_io *io, uint64_t off, uint64_t len, uint32_t flags);

#endif
