/* SPDX-License-Identifier: MIT */
/*
 * The vmm's main event loop: one io_uring (liburing 2.3), driven by one thread — "the loop
 * thread". Shaped like Redis' ae (a small API, a before-wait hook for batching), but
 * completion-based: the caller embeds a struct ev_req in its own object, the request's
 * user_data is a pointer to it, and the loop calls req->cb(loop, req, res) with res = the
 * CQE's result (>= 0, or -errno).
 *
 * Threading
 *   - evloop_post(), evloop_stop() and evloop_in_loop_thread() may be called from any thread
 *     (vCPU threads, the migration worker). Everything else is loop-thread only, or before
 *     evloop_run() starts / after it returned, with no other thread inside the loop.
 *   - Callbacks (request completions, posted functions, before-wait hooks) all run on the
 *     loop thread, one at a time; they may submit, cancel and post freely.
 *   - evloop_post() is not async-signal-safe (mutex, malloc): signal handlers should use a
 *     signalfd polled by the loop instead.
 *   - Only the loop thread submits to the ring, so io_uring's task work — which can make the
 *     submitting thread's blocking syscalls return early (EINTR on sockets with timeouts) —
 *     never lands on vCPU threads.
 *   - Nothing may block the loop thread for long: it serves the virtqueue kicks, disk and
 *     tap I/O, the control socket and the migration stream. Threads that post work here
 *     must never wait for the loop while holding something the loop needs (vCPU threads
 *     in particular never wait on the loop).
 *
 * Request lifetime
 *   A request is "busy" from submission until its final completion has been delivered
 *   (for a multishot poll: the completion with no more to follow). The memory of a busy
 *   request — and the buffers/iovecs it points to — must stay valid. To get rid of one:
 *   evloop_cancel(), then wait for its callback (res = -ECANCELED, or its normal result if
 *   it raced), or check ev_req_busy(). A request may be resubmitted from its own callback.
 *
 * Short reads and writes are the caller's job (the liburing io_uring-cp.c pattern).
 */
#ifndef VMM_LIB_EVLOOP_H
#define VMM_LIB_EVLOOP_H

#include <linux/time_types.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct evloop;
struct ev_req;

/* res: the CQE result (>= 0) or -errno. Runs on the loop thread. */
typedef void (*ev_cb)(struct evloop *l, struct ev_req *req, int res);

struct ev_req {			/* embed in the caller's struct; user_data = this */
	ev_cb cb;
	void *opaque;		/* the caller's; the loop never touches it */

	/* private to evloop.c */
	uint8_t op;
	uint8_t state;
	uint32_t cqe_flags;	/* flags of the completion being delivered */
	int fd;
	unsigned int poll_mask;
	struct __kernel_timespec ts;	/* timeouts: must outlive submission */
};

/* Set cb/opaque and clear the private part. Call once before first use. */
void ev_req_init(struct ev_req *req, ev_cb cb, void *opaque);
/* True from submission until the final completion was delivered. */
bool ev_req_busy(const struct ev_req *req);
/* Inside a multishot poll's callback: true if the poll stays armed after this completion. */
bool ev_req_more(const struct ev_req *req);

/* Work posted from other threads; also the intrusive form for allocation-free posting. */
typedef void (*ev_work_fn)(void *opaque);
struct ev_work {
	ev_work_fn fn;
	void *opaque;
	struct ev_work *next;	/* private */
	bool allocated;		/* private: freed by the loop after fn ran */
};

/* Hook run on the loop thread right before every wait (Redis' beforesleep): batching. */
struct ev_hook {
	void (*fn)(struct evloop *l, void *opaque);
	void *opaque;
	struct ev_hook *next;	/* private */
};

/* Optional opcodes found by io_uring_get_probe at init. */
enum {
	EVLOOP_CAP_READ		= 1u << 0,	/* IORING_OP_READ/WRITE (5.6) */
	EVLOOP_CAP_SEND_RECV	= 1u << 1,	/* IORING_OP_SEND/RECV (5.6) */
	EVLOOP_CAP_MULTISHOT	= 1u << 2,	/* multishot poll (5.13); else emulated by re-arming */
};

struct evloop {
	/* private; the struct is public only so it can be embedded */
	void *ring;			/* struct io_uring * */
	unsigned int caps;
	int wake_fd;			/* eventfd other threads write to wake the loop */
	uint64_t wake_buf;
	struct ev_req wake_req;
	pthread_mutex_t post_lock;	/* protects post_head/tail; leaf lock */
	struct ev_work *post_head, *post_tail;
	struct ev_hook *hooks;
	pthread_t owner;		/* the loop thread (set by init, updated by run) */
	volatile int stop;		/* atomic: written by evloop_stop from any thread */
	bool in_run;
	unsigned int pending_sqes;	/* prepared but not yet submitted */
};

/* Create the ring (@entries SQEs, rounded up by the kernel) and the wakeup eventfd. 0/-errno. */
int  evloop_init(struct evloop *l, unsigned int entries);
/* Tear down. Busy requests are dropped without callbacks: cancel and drain them first. */
void evloop_destroy(struct evloop *l);
unsigned int evloop_caps(const struct evloop *l);

/*
 * Submission helpers: 0 or -errno (-EBUSY if @req is already busy, -EOPNOTSUPP when the
 * kernel lacks the opcode, ring errors). The SQE is submitted at the next wait, so calls
 * in one loop iteration are batched into one io_uring_enter.
 */
/* @events: POLLIN/POLLOUT/...; res = the ready mask. @multishot: stays armed until
 * cancelled or an error (emulated with one-shot re-arming on kernels without it). */
int  evloop_poll(struct evloop *l, struct ev_req *req, int fd, unsigned int events, bool multishot);
int  evloop_read(struct evloop *l, struct ev_req *req, int fd, void *buf, unsigned int len, off_t off);
int  evloop_write(struct evloop *l, struct ev_req *req, int fd, const void *buf, unsigned int len,
		  off_t off);
/* @iov must stay valid until the request completes. @off = -1: current file position. */
int  evloop_readv(struct evloop *l, struct ev_req *req, int fd, const struct iovec *iov, int n,
		  off_t off);
int  evloop_writev(struct evloop *l, struct ev_req *req, int fd, const struct iovec *iov, int n,
		   off_t off);
/* fsync(2) (@datasync: fdatasync) and fallocate(2) (e.g. FALLOC_FL_PUNCH_HOLE|KEEP_SIZE)
 * through the ring (both Linux 5.6, like IORING_OP_READ); res = 0 or -errno. */
int  evloop_fsync(struct evloop *l, struct ev_req *req, int fd, bool datasync);
int  evloop_fallocate(struct evloop *l, struct ev_req *req, int fd, int mode, off_t off, off_t len);
int  evloop_send(struct evloop *l, struct ev_req *req, int fd, const void *buf, size_t len, int flags);
int  evloop_recv(struct evloop *l, struct ev_req *req, int fd, void *buf, size_t len, int flags);
/* Relative timeout: res = 0 when it fires, -ECANCELED when cancelled. */
int  evloop_timeout(struct evloop *l, struct ev_req *req, uint64_t ns);
/* Ask the kernel to cancel @req. 0 if a cancel was queued, -ENOENT if @req is not busy.
 * The request's callback still runs once more (normally with -ECANCELED). */
int  evloop_cancel(struct evloop *l, struct ev_req *req);

/*
 * Run fn(opaque) on the loop thread soon. Thread-safe, never blocks on the loop (a short
 * mutex only). Functions run in posting order. evloop_post allocates (-ENOMEM);
 * evloop_post_work uses the caller's struct ev_work, which must stay valid until fn runs
 * (and must not be posted again before that).
 */
int  evloop_post(struct evloop *l, ev_work_fn fn, void *opaque);
void evloop_post_work(struct evloop *l, struct ev_work *w);

void evloop_before_wait_add(struct evloop *l, struct ev_hook *hook);
void evloop_before_wait_del(struct evloop *l, struct ev_hook *hook);

/* Run until evloop_stop(): 0 after a stop, -errno if the ring fails. Sets the loop thread. */
int  evloop_run(struct evloop *l);
/*
 * One iteration: hooks, submit, wait up to @timeout_ns (0: don't wait) for at least one
 * completion, deliver all available ones. Returns the number of completions delivered,
 * or -errno. For tests and for draining at teardown.
 */
int  evloop_run_once(struct evloop *l, uint64_t timeout_ns);
/* Make evloop_run() return after the current iteration. Thread-safe. */
void evloop_stop(struct evloop *l);
bool evloop_in_loop_thread(const struct evloop *l);

#endif
