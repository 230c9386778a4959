// SPDX-License-Identifier: MIT
/*
 * Raw image back-end over the main loop's io_uring (contract in image.h). Each operation is a
 * small state machine driven by its own completions: submit, then on completion either
 * finish, resume a short transfer, retry an interrupted one, run the fdatasync a synchronous
 * write asks for, or fall back to the next way of writing zeroes.
 */
#define LOG_TAG "image"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/image.h"
#include "vmm/lib/log.h"

#define SECTOR			512u
#define IMAGE_MAX_RETRIES	8	/* -EINTR/-EAGAIN resubmissions of one operation */
/* Write-zeroes fallback: plain writes of this many zero bytes at a time (1 MiB of RSS-free
 * anonymous zero pages, mapped once per image on first use). */
#define ZERO_CHUNK		(1u << 20)

struct image {
	struct evloop *loop;
	char *path;
	int fd;			/* buffered (or the only) descriptor */
	int dfd;		/* O_DIRECT descriptor, -1 without config.direct */
	uint64_t size;
	bool read_only, is_bdev;
	uint32_t mem_align, off_align;	/* direct-I/O alignment (bytes, powers of two) */
	uint32_t lbs, pbs;		/* block sizes advertised to the guest */
	bool no_zero_range, no_punch;	/* fallbacks learnt from -EOPNOTSUPP */
	void *zero_buf;
	struct image_stats st;
};

/* ---- helpers ---- */

static bool pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Can this read/write go through the O_DIRECT descriptor? */
static bool direct_ok(const struct image *img, const struct iovec *iov, int n, uint64_t off)
{
	uint64_t om = img->off_align - 1, mm = img->mem_align - 1;

	if (img->dfd < 0 || (off & om))
		return false;
	for (int i = 0; i < n; i++)
		if ((iov[i].iov_len & om) || ((uintptr_t)iov[i].iov_base & mm))
			return false;
	return true;
}

/* Drop @n bytes from the front of io->iov (after a short transfer). */
static void iov_advance(struct image_io *io, uint64_t n)
{
	while (n && io->iovcnt) {
		if (n < io->iov->iov_len) {
			io->iov->iov_base = (uint8_t *)io->iov->iov_base + n;
			io->iov->iov_len -= n;
			return;
		}
		n -= io->iov->iov_len;
		io->iov++;
		io->iovcnt--;
	}
	/* Skip zero-length entries so the next submission has something to do. */
	while (io->iovcnt && !io->iov->iov_len) {
		io->iov++;
		io->iovcnt--;
	}
}

static void finish(struct image_io *io, int res)
{
	struct image *img = io->img;

	img->st.inflight--;
	io->op = IMAGE_OP_NONE;
	io->cb(io, res);
}

/* ---- the per-operation state machine ---- */

static int submit_rw(struct image_io *io)
{
	struct image *img = io->img;
	off_t off = (off_t)(io->off + io->done);

	if (io->op == IMAGE_OP_READ)
		return evloop_readv(img->loop, &io->ev, io->fd, io->iov, io->iovcnt, off);
	return evloop_writev(img->loop, &io->ev, io->fd, io->iov, io->iovcnt, off);
}

/* Next step of write-zeroes from io->done on, with the fallbacks learnt so far. */
static int submit_zeroes(struct image_io *io)
{
	struct image *img = io->img;
	uint64_t left = io->len - io->done;
	off_t off = (off_t)(io->off + io->done);

	if (!img->no_zero_range) {
		io->stage = 0;
		return evloop_fallocate(img->loop, &io->ev, img->fd,
					FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, (off_t)left);
	}
	if ((io->flags & IMAGE_ZEROES_UNMAP) && !img->no_punch) {
		io->stage = 1;
		return evloop_fallocate(img->loop, &io->ev, img->fd,
					FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, (off_t)left);
	}
	if (!img->zero_buf) {
		void *p = mmap(NULL, ZERO_CHUNK, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return -ENOMEM;
		img->zero_buf = p;
	}
	io->stage = 2;
	return evloop_write(img->loop, &io->ev, img->fd, img->zero_buf,
			    left < ZERO_CHUNK ? (unsigned int)left : ZERO_CHUNK, off);
}

static int resubmit(struct image_io *io)
{
	struct image *img = io->img;

	switch (io->op) {
	case IMAGE_OP_READ:
	case IMAGE_OP_WRITE:
		if (io->stage == 1)
			return evloop_fsync(img->loop, &io->ev, io->fd, true);
		return submit_rw(io);
	case IMAGE_OP_FLUSH:
		return evloop_fsync(img->loop, &io->ev, img->dfd >= 0 ? img->dfd : img->fd, true);
	case IMAGE_OP_DISCARD:
		return evloop_fallocate(img->loop, &io->ev, img->fd,
					FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)io->off, (off_t)io->len);
	case IMAGE_OP_WRITE_ZEROES:
		return submit_zeroes(io);
	}
	return -EINVAL;
}

static void io_done(struct evloop *l, struct ev_req *req, int res)
{
	struct image_io *io = req->opaque;
	struct image *img = io->img;
	int ret;

	if ((res == -EINTR || res == -EAGAIN) && io->retries < IMAGE_MAX_RETRIES) {
		io->retries++;
		goto again;
	}
	switch (io->op) {
	case IMAGE_OP_READ:
	case IMAGE_OP_WRITE:
		if (res < 0 || io->stage == 1)
			break;
		if (res == 0) {
			/* End of file inside the image's size: it shrank under us. */
			log_ratelimited(LOG_ERR, "%s: %s at %" PRIu64 ": unexpected end of file",
					img->path, io->op == IMAGE_OP_READ ? "read" : "write",
					io->off + io->done);
			res = -EIO;
			break;
		}
		io->done += (uint64_t)res;
		if (io->done < io->len) {
			img->st.short_ops++;
			iov_advance(io, (uint64_t)res);
			goto again;
		}
		res = 0;
		if (io->op == IMAGE_OP_WRITE && (io->flags & IMAGE_WRITE_SYNC)) {
			io->stage = 1;
			goto again;
		}
		break;
	case IMAGE_OP_DISCARD:
		if (res == -EOPNOTSUPP) {
			/* A hint the file system cannot take: the guest still gets success. */
			img->st.discard_unsupported++;
			res = 0;
		}
		break;
	case IMAGE_OP_WRITE_ZEROES:
		if (res == -EOPNOTSUPP && io->stage == 0) {
			img->no_zero_range = true;
			goto again;
		}
		if (res == -EOPNOTSUPP && io->stage == 1) {
			img->no_punch = true;
			goto again;
		}
		if (res < 0)
			break;
		if (io->stage == 2) {
			if (res == 0) {
				res = -EIO;
				break;
			}
			io->done += (uint64_t)res;
			if (io->done < io->len)
				goto again;
		}
		res = 0;
		break;
	default:
		break;
	}
	finish(io, res);
	return;

again:
	ret = resubmit(io);
	if (ret < 0)
		finish(io, ret);
}

/* Common start of every operation; the first submission's error is returned, no callback. */
static int start(struct image_io *io, uint8_t op, uint64_t off, uint64_t len, uint32_t flags)
{
	struct image *img = io->img;
	int ret;

	if (io->op != IMAGE_OP_NONE)
		return -EBUSY;
	if (op != IMAGE_OP_READ && op != IMAGE_OP_FLUSH && img->read_only)
		return -EROFS;
	if (op != IMAGE_OP_FLUSH && (len == 0 || len > img->size || off > img->size - len))
		return -EINVAL;
	io->op = op;
	io->stage = 0;
	io->retries = 0;
	io->flags = flags;
	io->off = off;
	io->len = len;
	io->done = 0;
	ret = resubmit(io);
	if (ret < 0) {
		io->op = IMAGE_OP_NONE;
		return ret;
	}
	img->st.inflight++;
	return 0;
}

static int start_rw(struct image_io *io, uint8_t op, struct iovec *iov, int n, uint64_t off,
		    uint32_t flags)
{
	struct image *img = io->img;
	uint64_t len = 0;
	bool direct;
	int ret;

	if (n <= 0 || n > IOV_MAX)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;		/* n <= IOV_MAX entries of size_t: no overflow */
	direct = direct_ok(img, iov, n, off);

	if (io->op != IMAGE_OP_NONE)
		return -EBUSY;		/* before touching io->iov of the operation in flight */
	io->iov = iov;
	io->iovcnt = n;
	io->fd = direct ? img->dfd : img->fd;
	ret = start(io, op, off, len, flags);
	if (ret == 0) {
		if (direct)
			img->st.direct_ops++;
		else
			img->st.buffered_ops++;
	}
	return ret;
}

/* ---- public: operations ---- */

void image_io_init(struct image_io *io, struct image *img, image_io_cb cb, void *opaque)
{
	memset(io, 0, sizeof(*io));
	io->img = img;
	io->cb = cb;
	io->opaque = opaque;
	io->fd = -1;
	ev_req_init(&io->ev, io_done, io);
}

int image_readv(struct image_io *io, struct iovec *iov, int iovcnt, uint64_t off)
{
	return start_rw(io, IMAGE_OP_READ, iov, iovcnt, off, 0);
}

int image_writev(struct image_io *io, struct iovec *iov, int iovcnt, uint64_t off, uint32_t flags)
{
	if (io->img->read_only)
		return -EROFS;
	return start_rw(io, IMAGE_OP_WRITE, iov, iovcnt, off, flags & IMAGE_WRITE_SYNC);
}

int image_flush(struct image_io *io)
{
	return start(io, IMAGE_OP_FLUSH, 0, 0, 0);
}

int image_discard(struct image_io *io, uint64_t off, uint64_t len)
{
	return start(io, IMAGE_OP_DISCARD, off, len, 0);
}

int image_write_zeroes(struct image_io *io, uint64_t off, uint64_t len, uint32_t flags)
{
	return start(io, IMAGE_OP_WRITE_ZEROES, off, len, flags & IMAGE_ZEROES_UNMAP);
}

/* ---- public: lifetime and properties ---- */

/* Direct-I/O alignment of @fd: statx(STATX_DIOALIGN) (Linux 6.1), else the device's logical
 * block size, else 4096 (safe: a stricter guess only sends more requests down the buffered path). */
static void probe_dio_align(struct image *img, int fd)
{
	struct statx stx;
	int lbs = 0;

	img->off_align = img->mem_align = 4096;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN) && pow2(stx.stx_dio_offset_align) &&
	    pow2(stx.stx_dio_mem_align)) {
		img->off_align = stx.stx_dio_offset_align;
		img->mem_align = stx.stx_dio_mem_align;
	} else if (img->is_bdev && ioctl(fd, BLKSSZGET, &lbs) == 0 && lbs > 0 && pow2((uint64_t)lbs)) {
		img->off_align = img->mem_align = (uint32_t)lbs;
	}
	if (img->off_align < SECTOR)
		img->off_align = SECTOR;
}

int image_open(const struct image_config *cfg, struct evloop *loop, struct image **out,
	       char *err, size_t errlen)
{
	int flags = (cfg->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct flock fl = { .l_type = cfg->read_only ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET };
	struct image *img;
	struct stat sb;
	int ret;

	img = calloc(1, sizeof(*img));
	if (!img || !(img->path = strdup(cfg->path))) {
		free(img);
		snprintf(err, errlen, "disk %s: %s", cfg->path, strerror(ENOMEM));
		return -ENOMEM;
	}
	img->loop = loop;
	img->read_only = cfg->read_only;
	img->dfd = -1;
	img->fd = open(cfg->path, flags);
	if (img->fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "disk %s: %s", cfg->path, strerror(errno));
		goto err_free;
	}
	if (fstat(img->fd, &sb) < 0) {
		ret = -errno;
		snprintf(err, errlen, "disk %s: stat: %s", cfg->path, strerror(errno));
		goto err_close;
	}
	img->pbs = SECTOR;
	if (S_ISREG(sb.st_mode)) {
		img->size = (uint64_t)sb.st_size;
		if (pow2((uint64_t)sb.st_blksize) && sb.st_blksize <= 65536)
			img->pbs = (uint32_t)sb.st_blksize;
	} else if (S_ISBLK(sb.st_mode)) {
		unsigned int pbs = 0;

		img->is_bdev = true;
		if (ioctl(img->fd, BLKGETSIZE64, &img->size) < 0) {
			ret = -errno;
			snprintf(err, errlen, "disk %s: BLKGETSIZE64: %s", cfg->path, strerror(errno));
			goto err_close;
		}
		if (ioctl(img->fd, BLKPBSZGET, &pbs) == 0 && pow2(pbs) && pbs <= 65536)
			img->pbs = pbs;
	} else {
		ret = -EINVAL;
		snprintf(err, errlen, "disk %s: not a regular file or block device", cfg->path);
		goto err_close;
	}
	if (img->size < SECTOR) {
		ret = -EINVAL;
		snprintf(err, errlen, "disk %s: smaller than one 512-byte sector", cfg->path);
		goto err_close;
	}
	/* Whole-file OFD lock: a second writer (another vmm, QEMU's locks aside) is refused. */
	if (!cfg->no_lock && fcntl(img->fd, F_OFD_SETLK, &fl) < 0) {
		if (errno == EAGAIN || errno == EACCES) {
			ret = -EBUSY;
			snprintf(err, errlen, "disk %s: in use by another process (locked)", cfg->path);
			goto err_close;
		}
		log_warn("disk %s: no file lock (%s), continuing", cfg->path, strerror(errno));
	}
	img->lbs = SECTOR;
	if (cfg->direct) {
		img->dfd = open(cfg->path, flags | O_DIRECT);
		if (img->dfd < 0) {
			ret = -errno;
			snprintf(err, errlen, "disk %s: O_DIRECT: %s%s", cfg->path, strerror(errno),
				 errno == EINVAL ? " (not supported by its file system)" : "");
			goto err_close;
		}
		probe_dio_align(img, img->dfd);
		img->lbs = img->off_align;
	}
	if (img->pbs < img->lbs)
		img->pbs = img->lbs;
	*out = img;
	return 0;

err_close:
	close(img->fd);
err_free:
	free(img->path);
	free(img);
	return ret;
}

void image_close(struct image *img)
{
	if (!img)
		return;
	BUG_ON(img->st.inflight);
	if (img->zero_buf)
		munmap(img->zero_buf, ZERO_CHUNK);
	if (img->dfd >= 0)
		close(img->dfd);
	close(img->fd);
	free(img->path);
	free(img);
}

uint64_t image_size(const struct image *img) { return img->size; }
bool image_read_only(const struct image *img) { return img->read_only; }
bool image_direct(const struct image *img) { return img->dfd >= 0; }
uint32_t image_block_size(const struct image *img) { return img->lbs; }
uint32_t image_physical_block_size(const struct image *img) { return img->pbs; }

void image_get_stats(const struct image *img, struct image_stats *st)
{
	*st = img->st;
}
