// SPDX-License-Identifier: MIT
/*
 * io_uring event loop (contract in evloop.h). One ring, one loop thread. user_data of every
 * SQE is the struct ev_req it belongs to; internal SQEs (cancels) carry user_data 0 and
 * their completions are dropped. Other threads reach the loop through a mutex-protected
 * FIFO of struct ev_work plus an eventfd the loop keeps a read outstanding on.
 */
#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define LOG_TAG "evloop"
#include "vmm/lib/evloop.h"
#include "vmm/lib/log.h"

enum {
	REQ_IDLE = 0,
	REQ_BUSY = 1u << 0,
	REQ_CANCELLED = 1u << 1,	/* cancel requested: don't re-arm emulated multishot */
	REQ_MULTISHOT = 1u << 2,	/* caller asked for a persistent poll */
};

enum { OP_NONE, OP_POLL, OP_RW, OP_TIMEOUT };

#define RING(l) ((struct io_uring *)(l)->ring)

void ev_req_init(struct ev_req *req, ev_cb cb, void *opaque)
{
	memset(req, 0, sizeof(*req));
	req->cb = cb;
	req->opaque = opaque;
	req->fd = -1;
}

bool ev_req_busy(const struct ev_req *req)
{
	return req->state & REQ_BUSY;
}

bool ev_req_more(const struct ev_req *req)
{
	return req->state & REQ_BUSY;	/* during a callback: still armed afterwards */
}

unsigned int evloop_caps(const struct evloop *l)
{
	return l->caps;
}

/* An SQE, submitting what is queued if the SQ ring is full. NULL only if that fails too. */
static struct io_uring_sqe *get_sqe(struct evloop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(RING(l));

	if (!sqe) {
		if (io_uring_submit(RING(l)) < 0)
			return NULL;
		l->pending_sqes = 0;
		sqe = io_uring_get_sqe(RING(l));
	}
	if (sqe)
		l->pending_sqes++;
	return sqe;
}

static int req_start(struct evloop *l, struct ev_req *req, struct io_uring_sqe **sqep)
{
	if (req->state & REQ_BUSY)
		return -EBUSY;
	*sqep = get_sqe(l);
	if (!*sqep)
		return -EAGAIN;
	req->state = REQ_BUSY;
	req->cqe_flags = 0;
	return 0;
}

static void req_commit(struct io_uring_sqe *sqe, struct ev_req *req)
{
	io_uring_sqe_set_data(sqe, req);
}

static void arm_poll(struct evloop *l, struct io_uring_sqe *sqe, struct ev_req *req)
{
	if ((req->state & REQ_MULTISHOT) && (l->caps & EVLOOP_CAP_MULTISHOT))
		io_uring_prep_poll_multishot(sqe, req->fd, req->poll_mask);
	else
		io_uring_prep_poll_add(sqe, req->fd, req->poll_mask);
	req_commit(sqe, req);
}

int evloop_poll(struct evloop *l, struct ev_req *req, int fd, unsigned int events, bool multishot)
{
	struct io_uring_sqe *sqe;
	int ret = req_start(l, req, &sqe);

	if (ret < 0)
		return ret;
	req->op = OP_POLL;
	req->fd = fd;
	req->poll_mask = events;
	if (multishot)
		req->state |= REQ_MULTISHOT;
	arm_poll(l, sqe, req);
	return 0;
}

int evloop_read(struct evloop *l, struct ev_req *req, int fd, void *buf, unsigned int len, off_t off)
{
	struct io_uring_sqe *sqe;
	int ret;

	if (!(l->caps & EVLOOP_CAP_READ))
		return -EOPNOTSUPP;
	ret = req_start(l, req, &sqe);
	if (ret < 0)
		return ret;
	req->op = OP_RW;
	io_uring_prep_read(sqe, fd, buf, len, (__u64)off);
	req_commit(sqe, req);
	return 0;
}

int evloop_write(struct evloop *l, struct ev_req *req, int fd, const void *buf, unsigned int len,
		 off_t off)
{
	struct io_uring_sqe *sqe;
	int ret;

	if (!(l->caps & EVLOOP_CAP_READ))
		return -EOPNOTSUPP;
	ret = req_start(l, req, &sqe);
	if (ret < 0)
		return ret;
	req->op = OP_RW;
	io_uring_prep_write(sqe, fd, buf, len, (__u64)off);
	req_commit(sqe, req);
	return 0;
}

int evloop_readv(struct evloop *l, struct ev_req *req, int fd, const struct iovec *iov, int n,
		 off_t off)
{
	struct io_uring_sqe *sqe;
	int ret;

	if (n <= 0 || n > IOV_MAX)
		return -EINVAL;
	ret = req_start(l, req, &sqe);
	if (ret < 0)
		return ret;
	req->op = OP_RW;
	io_uring_prep_readv(sqe, fd, iov, (unsigned int)n, (__u64)off);
	req_commit(sqe, req);
	return 0;
}

int evloop_writev(struct evloop *l, struct ev_req *req, int fd, const struct iovec *iov, int n,
		  off_t off)
{
	struct io_uring_sqe *sqe;
	int ret;

	if (n <= 0 || n > IOV_MAX)
		return -EINVAL;
	ret = req_start(l, req, &sqe);
	if (ret < 0)
		return ret;
	req->op = OP_RW;
	io_uring_prep_writev(sqe, fd, iov, (unsigned int)n, (__u64)off);
	req_commit(sqe, req);
	return 0;
}

int evloop_fsync(struct evloop *l, struct ev_req *req, int fd, bool datasync)
{
	struct io_uring_sqe *sqe;
	int ret = req_start(l, req, &sqe);

	if (ret < 0)
		return ret;
	req->op = OP_RW;
	io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
	req_commit(sqe, req);
	return 0;
}

int evloop_fallocate(struct evloop *l, struct ev_req *req, int fd, int mode, off_t off, off_t len)
{
	struct io_uring_sqe *sqe;
	int ret;

	if (off < 0 || len <= 0)
		return -EINVAL;
	ret = req_start(l, req, &sqe);
	if (ret < 0)
		return ret;
	req->op = OP_RW;
	io_uring_prep_fallocate(sqe, fd, mode, off, len);
	req_commit(sqe, req);
	return 0;
}

int evloop_send(struct evloop *l, struct ev_req *req, int fd, const void *buf, size_t len, int flags)
{
	struct io_uring_sqe *sqe;
	int ret;

	if (!(l->caps & EVLOOP_CAP_SEND_RECV))
		return -EOPNOTSUPP;
	if (len > UINT32_MAX)
		return -EINVAL;
	ret = req_start(l, req, &sqe);
	if (ret < 0)
		return ret;
	req->op = OP_RW;
	io_uring_prep_send(sqe, fd, buf, len, flags);
	req_commit(sqe, req);
	return 0;
}

int evloop_recv(struct evloop *l, struct ev_req *req, int fd, void *buf, size_t len, int flags)
{
	struct io_uring_sqe *sqe;
	int ret;

	if (!(l->caps & EVLOOP_CAP_SEND_RECV))
		return -EOPNOTSUPP;
	if (len > UINT32_MAX)
		return -EINVAL;
	ret = req_start(l, req, &sqe);
	if (ret < 0)
		return ret;
	req->op = OP_RW;
	io_uring_prep_recv(sqe, fd, buf, len, flags);
	req_commit(sqe, req);
	return 0;
}

int evloop_timeout(struct evloop *l, struct ev_req *req, uint64_t ns)
{
	struct io_uring_sqe *sqe;
	int ret = req_start(l, req, &sqe);

	if (ret < 0)
		return ret;
	req->op = OP_TIMEOUT;
	req->ts.tv_sec = (long long)(ns / 1000000000ull);
	req->ts.tv_nsec = (long long)(ns % 1000000000ull);
	/* The kernel copies ts at submission; it lives in req, which outlives that. */
	io_uring_prep_timeout(sqe, &req->ts, 0, 0);
	req_commit(sqe, req);
	return 0;
}

int evloop_cancel(struct evloop *l, struct ev_req *req)
{
	struct io_uring_sqe *sqe;

	if (!(req->state & REQ_BUSY))
		return -ENOENT;
	if (req->state & REQ_CANCELLED)
		return 0;
	sqe = get_sqe(l);
	if (!sqe)
		return -EAGAIN;
	/* Works for polls, timeouts and I/O alike (the kernel looks in all three places). */
	io_uring_prep_cancel(sqe, req, 0);
	io_uring_sqe_set_data(sqe, NULL);
	req->state |= REQ_CANCELLED;
	return 0;
}

/* ---- cross-thread posting ---- */

static void wake(struct evloop *l)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is saturated: the loop is certainly going to wake. */
	while (write(l->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

void evloop_post_work(struct evloop *l, struct ev_work *w)
{
	bool was_empty;

	w->next = NULL;
	pthread_mutex_lock(&l->post_lock);
	was_empty = !l->post_head;
	if (l->post_tail)
		l->post_tail->next = w;
	else
		l->post_head = w;
	l->post_tail = w;
	pthread_mutex_unlock(&l->post_lock);
	/*
	 * Only the empty → non-empty transition needs a wakeup: the loop takes the whole list
	 * after consuming the eventfd, so a non-empty list always has a wakeup outstanding.
	 * The loop thread posting to itself needs none either — it drains before waiting.
	 */
	if (was_empty && !evloop_in_loop_thread(l))
		wake(l);
}

int evloop_post(struct evloop *l, ev_work_fn fn, void *opaque)
{
	struct ev_work *w = malloc(sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->fn = fn;
	w->opaque = opaque;
	w->allocated = true;
	evloop_post_work(l, w);
	return 0;
}

static unsigned int run_posted(struct evloop *l)
{
	struct ev_work *w, *next;
	unsigned int n = 0;

	pthread_mutex_lock(&l->post_lock);
	w = l->post_head;
	l->post_head = l->post_tail = NULL;
	pthread_mutex_unlock(&l->post_lock);

	for (; w; w = next) {
		bool allocated = w->allocated;

		/* Read next first: fn may free or re-post its own ev_work. */
		next = w->next;
		w->fn(w->opaque);
		if (allocated)
			free(w);
		n++;
	}
	return n;
}

static void wake_cb(struct evloop *l, struct ev_req *req, int res)
{
	int ret;

	if (res < 0 && res != -EAGAIN && res != -EINTR)
		log_err("wakeup eventfd read: %s", strerror(-res));
	run_posted(l);
	if (res == -ECANCELED)
		return;		/* only at teardown */
	ret = evloop_read(l, &l->wake_req, l->wake_fd, &l->wake_buf, sizeof(l->wake_buf), 0);
	if (ret < 0)
		log_err("re-arm wakeup read: %s", strerror(-ret));
}

void evloop_stop(struct evloop *l)
{
	__atomic_store_n(&l->stop, 1, __ATOMIC_RELEASE);
	if (!evloop_in_loop_thread(l))
		wake(l);
}

bool evloop_in_loop_thread(const struct evloop *l)
{
	return pthread_equal(l->owner, pthread_self());
}

void evloop_before_wait_add(struct evloop *l, struct ev_hook *hook)
{
	hook->next = l->hooks;
	l->hooks = hook;
}

void evloop_before_wait_del(struct evloop *l, struct ev_hook *hook)
{
	struct ev_hook **pp;

	for (pp = &l->hooks; *pp; pp = &(*pp)->next) {
		if (*pp == hook) {
			*pp = hook->next;
			return;
		}
	}
}

/* ---- completion dispatch ---- */

static void dispatch(struct evloop *l, struct ev_req *req, int res, unsigned int flags)
{
	bool final = !(flags & IORING_CQE_F_MORE);

	req->cqe_flags = flags;
	if (req->op == OP_TIMEOUT && res == -ETIME)
		res = 0;	/* expiry is the normal outcome of a timeout */

	if (final && req->op == OP_POLL && (req->state & REQ_MULTISHOT) &&
	    !(req->state & REQ_CANCELLED) && res >= 0) {
		/*
		 * A persistent poll ended without being cancelled: one-shot emulation, or the
		 * kernel dropped a multishot (CQ overflow). Re-arm so the caller sees a poll
		 * that stays armed; ev_req_more() is true during the callback.
		 */
		struct io_uring_sqe *sqe = get_sqe(l);

		if (sqe) {
			arm_poll(l, sqe, req);
			final = false;
		}
	} else if (final && req->op == OP_POLL && (req->state & REQ_MULTISHOT) &&
		   res == -EINVAL && (l->caps & EVLOOP_CAP_MULTISHOT) &&
		   !(req->state & REQ_CANCELLED)) {
		/* Kernel has the opcodes we probed but not multishot polls: fall back once. */
		struct io_uring_sqe *sqe = get_sqe(l);

		log_warn("multishot poll refused; emulating with one-shot polls");
		l->caps &= ~EVLOOP_CAP_MULTISHOT;
		if (sqe) {
			arm_poll(l, sqe, req);
			return;
		}
	}
	if (final)
		req->state = REQ_IDLE;
	req->cb(l, req, res);
}

static int reap(struct evloop *l)
{
	struct io_uring_cqe *cqe;
	int n = 0;

	while (io_uring_peek_cqe(RING(l), &cqe) == 0) {
		struct ev_req *req = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		unsigned int flags = cqe->flags;

		/* Mark seen before the callback: it may submit and wait itself (teardown). */
		io_uring_cqe_seen(RING(l), cqe);
		if (!req)
			continue;	/* a cancel SQE's own completion */
		dispatch(l, req, res, flags);
		n++;
	}
	return n;
}

static void run_hooks(struct evloop *l)
{
	struct ev_hook *h, *next;

	for (h = l->hooks; h; h = next) {
		next = h->next;		/* a hook may remove itself */
		h->fn(l, h->opaque);
	}
}

int evloop_run_once(struct evloop *l, uint64_t timeout_ns)
{
	struct __kernel_timespec ts = {
		.tv_sec = (long long)(timeout_ns / 1000000000ull),
		.tv_nsec = (long long)(timeout_ns % 1000000000ull),
	};
	struct io_uring_cqe *cqe;
	int ret, n;

	/* Work the loop thread posted to itself has no wakeup: run it now. */
	n = (int)run_posted(l);
	run_hooks(l);
	if (n > 0 || timeout_ns == 0 || __atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
		ret = io_uring_submit(RING(l));
	} else {
		ret = io_uring_submit_and_wait_timeout(RING(l), &cqe, 1, &ts, NULL);
		if (ret == -ETIME || ret == -EINTR)
			ret = 0;
	}
	if (ret < 0 && ret != -EBUSY && ret != -EAGAIN) {
		log_err("io_uring submit/wait: %s", strerror(-ret));
		return ret;
	}
	l->pending_sqes = 0;
	return n + reap(l);
}

int evloop_run(struct evloop *l)
{
	int ret = 0;

	l->owner = pthread_self();
	l->in_run = true;
	while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
		/* A long wait bound: the loop normally wakes on a completion or the eventfd. */
		ret = evloop_run_once(l, 3600ull * 1000000000ull);
		if (ret < 0)
			break;
		ret = 0;
	}
	l->in_run = false;
	__atomic_store_n(&l->stop, 0, __ATOMIC_RELEASE);
	return ret;
}

/* ---- setup ---- */

static void probe_caps(struct evloop *l)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(RING(l));

	l->caps = 0;
	if (p) {
		if (io_uring_opcode_supported(p, IORING_OP_READ) &&
		    io_uring_opcode_supported(p, IORING_OP_WRITE))
			l->caps |= EVLOOP_CAP_READ;
		if (io_uring_opcode_supported(p, IORING_OP_SEND) &&
		    io_uring_opcode_supported(p, IORING_OP_RECV))
			l->caps |= EVLOOP_CAP_SEND_RECV;
		io_uring_free_probe(p);
	}
	/*
	 * Multishot poll is a flag, not an opcode, so the probe can't see it. It arrived in
	 * 5.13 together with IORING_FEAT_RSRC_TAGS; dispatch() also falls back at run time
	 * if the kernel refuses it with -EINVAL.
	 */
	if (RING(l)->features & IORING_FEAT_RSRC_TAGS)
		l->caps |= EVLOOP_CAP_MULTISHOT;
}

int evloop_init(struct evloop *l, unsigned int entries)
{
	struct io_uring_params p;
	struct io_uring *ring;
	int ret;

	memset(l, 0, sizeof(*l));
	l->wake_fd = -1;
	ring = calloc(1, sizeof(*ring));
	if (!ring)
		return -ENOMEM;
	l->ring = ring;

	/*
	 * Not COOP_TASKRUN: with it, some completions that arrive while the loop sleeps in
	 * io_uring_enter are noticed late. Measured here from another thread's evloop_post to
	 * the function running: median ~10 us either way, but mean 0.13-1.1 ms with it against
	 * 25-80 us without — a tail the control socket and virtqueue kicks would feel.
	 * Not SINGLE_ISSUER: the ring may be created on one thread and run on another.
	 */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CLAMP;
	ret = io_uring_queue_init_params(entries, ring, &p);
	if (ret < 0) {
		log_err("io_uring_queue_init(%u entries): %s", entries, strerror(-ret));
		goto err_free;
	}
	probe_caps(l);
	if (!(l->caps & EVLOOP_CAP_READ)) {
		log_err("kernel io_uring lacks IORING_OP_READ (needs Linux >= 5.6)");
		ret = -EOPNOTSUPP;
		goto err_ring;
	}

	/* Blocking: io_uring returns -EAGAIN at once for O_NONBLOCK files instead of waiting. */
	l->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (l->wake_fd < 0) {
		ret = -errno;
		log_err("eventfd: %s", strerror(errno));
		goto err_ring;
	}
	ret = pthread_mutex_init(&l->post_lock, NULL);
	if (ret) {
		ret = -ret;
		goto err_fd;
	}
	l->owner = pthread_self();
	ev_req_init(&l->wake_req, wake_cb, l);
	ret = evloop_read(l, &l->wake_req, l->wake_fd, &l->wake_buf, sizeof(l->wake_buf), 0);
	if (ret < 0)
		goto err_mutex;
	return 0;

err_mutex:
	pthread_mutex_destroy(&l->post_lock);
err_fd:
	close(l->wake_fd);
err_ring:
	io_uring_queue_exit(ring);
err_free:
	free(ring);
	l->ring = NULL;
	return ret;
}

void evloop_destroy(struct evloop *l)
{
	struct ev_work *w, *next;

	if (!l->ring)
		return;
	io_uring_queue_exit(RING(l));
	free(l->ring);
	l->ring = NULL;
	close(l->wake_fd);
	l->wake_fd = -1;
	/* Posted work that never ran: free our allocations, the rest belongs to the poster. */
	for (w = l->post_head; w; w = next) {
		next = w->next;
		if (w->allocated)
			free(w);
	}
	l->post_head = l->post_tail = NULL;
	pthread_mutex_destroy(&l->post_lock);
}
