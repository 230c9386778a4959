// SPDX-License-Identifier: MIT
/*
 * Migration transport over io_uring (contract in stream.h). Written to liburing 2.3.
 *
 * Ordering and short sends. Sends submitted as separate SQEs on one socket may be executed
 * concurrently by io-wq, and a short send followed by the next SQE would interleave two
 * messages. So every submission is one IOSQE_IO_LINK chain: the kernel runs a chain's SQEs
 * strictly one after the other, and a short result breaks the chain (the rest
 * complete with -ECANCELED). The next chain is submitted only when every CQE of the previous
 * one is in; then whatever is unsent — the tail of the short one, the cancelled ones, and
 * the buffers queued meanwhile — goes out as the next chain, in order. MSG_WAITALL makes
 * short sends rare (the kernel retries them itself on 5.19+).
 *
 * Pipelining: the caller fills buffer N+1 (compressing pages) while the chain with buffer N
 * is being sent by the kernel; with depth 8 and 1 MiB batches, up to 8 MiB is queued.
 */
#define LOG_TAG "mig-stream"
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "migrate/stream.h"
#include "vmm/lib/log.h"

#define RECV_TAG	0xfffffffful

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct io_uring *ring_of(struct mig_stream *s)
{
	return s->ring;
}

int mig_stream_init(struct mig_stream *s, int fd, unsigned int depth, int timeout_ms)
{
	unsigned int tmo;
	int one = 1, ret;

	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->depth = depth ? depth : MIG_STREAM_DEFAULT_DEPTH;
	if (s->depth > MIG_STREAM_MAX_DEPTH)
		s->depth = MIG_STREAM_MAX_DEPTH;
	s->timeout_ms = timeout_ms > 0 ? timeout_ms : MIG_STREAM_DEFAULT_TIMEOUT_MS;
	s->slots = calloc(s->depth, sizeof(*s->slots));
	s->fifo = calloc(s->depth, sizeof(*s->fifo));
	s->ring = calloc(1, sizeof(struct io_uring));
	if (!s->slots || !s->fifo || !s->ring) {
		ret = -ENOMEM;
		goto err;
	}
	/* A chain is at most @depth sends plus one receive. */
	ret = io_uring_queue_init(2 * s->depth + 4, ring_of(s), 0);
	if (ret < 0) {
		log_err("io_uring_queue_init: %s", strerror(-ret));
		goto err;
	}
	/* Not fatal when they fail (a unix socket in tests): they only speed up or bound. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	tmo = (unsigned int)s->timeout_ms;
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &tmo, sizeof(tmo));
	return 0;
err:
	free(s->ring);
	free(s->fifo);
	free(s->slots);
	s->ring = NULL;
	s->slots = NULL;
	s->fifo = NULL;
	return ret;
}

void mig_stream_set_bandwidth(struct mig_stream *s, uint64_t bytes_per_sec)
{
	s->bw_limit = bytes_per_sec;
	s->bw_start_ns = now_ns();
	s->bw_bytes = 0;
}

void mig_stream_shutdown(struct mig_stream *s)
{
	shutdown(s->fd, SHUT_RDWR);
}

static void set_err(struct mig_stream *s, int err)
{
	if (!s->err)
		s->err = err;
}

/* Sleep until the token bucket allows @bytes more. */
static void bw_wait(struct mig_stream *s, uint64_t bytes)
{
	uint64_t due, now;

	if (!s->bw_limit)
		return;
	if (!s->bw_start_ns)
		s->bw_start_ns = now_ns();
	due = s->bw_start_ns + (uint64_t)((double)s->bw_bytes * 1e9 / (double)s->bw_limit);
	now = now_ns();
	if (due > now) {
		uint64_t d = due - now;
		struct timespec ts;

		if (d > 1000000000ull)		/* a changed limit never stalls for long */
			d = 1000000000ull;
		ts.tv_sec = (time_t)(d / 1000000000ull);
		ts.tv_nsec = (long)(d % 1000000000ull);
		nanosleep(&ts, NULL);
	}
	s->bw_bytes += bytes;
}

/* Submit every unsent fifo entry as one linked chain (only when nothing is in flight). */
static int submit_chain(struct mig_stream *s)
{
	struct io_uring_sqe *sqe = NULL;
	uint64_t bytes = 0;
	unsigned int i;
	int ret;

	if (s->inflight || !s->fifo_len || s->err)
		return s->err;
	for (i = 0; i < s->fifo_len; i++) {
		struct mig_stream_slot *sl = &s->slots[s->fifo[(s->fifo_head + i) % s->depth]];

		bytes += sl->buf.len - sl->off;
	}
	bw_wait(s, bytes);
	for (i = 0; i < s->fifo_len; i++) {
		unsigned int idx = s->fifo[(s->fifo_head + i) % s->depth];
		struct mig_stream_slot *sl = &s->slots[idx];

		sqe = io_uring_get_sqe(ring_of(s));
		if (!sqe)
			break;		/* ring sized for depth: cannot happen, but stay correct */
		io_uring_prep_send(sqe, s->fd, sl->buf.data + sl->off, sl->buf.len - sl->off,
				   MSG_WAITALL | MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, idx);
		sqe->flags |= IOSQE_IO_LINK;
	}
	if (sqe)
		sqe->flags &= (uint8_t)~IOSQE_IO_LINK;
	s->chain = i;
	s->inflight = i;
	s->chains++;
	ret = io_uring_submit(ring_of(s));
	if (ret < 0) {
		log_err("io_uring_submit: %s", strerror(-ret));
		s->inflight = 0;
		set_err(s, ret);
		return ret;
	}
	return 0;
}

/* A send CQE. When the chain is complete: drop finished buffers, submit what is left. */
static void send_done(struct mig_stream *s, unsigned int idx, int res)
{
	struct mig_stream_slot *sl = &s->slots[idx];

	if (res > 0) {
		if ((size_t)res < sl->buf.len - sl->off)
			s->short_sends++;
		sl->off += (size_t)res;
		s->bytes_sent += (uint64_t)res;
	} else if (res == 0) {
		set_err(s, -ECONNRESET);
	} else if (res != -ECANCELED) {
		set_err(s, res == -EPIPE ? -ECONNRESET : res);
	}
	s->inflight--;
	if (s->inflight)
		return;
	while (s->fifo_len) {
		struct mig_stream_slot *h = &s->slots[s->fifo[s->fifo_head]];

		if (h->off < h->buf.len)
			break;
		h->busy = false;
		h->buf.len = 0;
		h->off = 0;
		s->fifo_head = (s->fifo_head + 1) % s->depth;
		s->fifo_len--;
	}
	s->chain = 0;
	if (s->err) {
		/* Nothing more will go out: free the rest so callers waiting for a slot return. */
		while (s->fifo_len) {
			s->slots[s->fifo[s->fifo_head]].busy = false;
			s->fifo_head = (s->fifo_head + 1) % s->depth;
			s->fifo_len--;
		}
		return;
	}
	submit_chain(s);
}

/*
 * Wait for one completion (any kind), bounded by the timeout. Returns 0 after handling a
 * CQE; a receive's result is stored in *@recv_res (left untouched otherwise).
 */
static int reap_one(struct mig_stream *s, int *recv_res, bool *recv_seen)
{
	struct __kernel_timespec ts = {
		.tv_sec = s->timeout_ms / 1000, .tv_nsec = (long long)(s->timeout_ms % 1000) * 1000000,
	};
	struct io_uring_cqe *cqe;
	uint64_t tag;
	int ret, res;

	ret = io_uring_wait_cqe_timeout(ring_of(s), &cqe, &ts);
	if (ret == -ETIME) {
		log_err("no progress on the migration connection for %d ms", s->timeout_ms);
		set_err(s, -ETIMEDOUT);
		/* Make the operations in flight complete (with an error) so they can be reaped. */
		shutdown(s->fd, SHUT_RDWR);
		return -ETIMEDOUT;
	}
	if (ret < 0) {
		if (ret == -EINTR)
			return 0;
		set_err(s, ret);
		return ret;
	}
	tag = io_uring_cqe_get_data64(cqe);
	res = cqe->res;
	io_uring_cqe_seen(ring_of(s), cqe);
	if (tag == RECV_TAG) {
		*recv_res = res;
		*recv_seen = true;
	} else if (tag < s->depth) {
		send_done(s, (unsigned int)tag, res);
	}
	return 0;
}

int mig_stream_buf_get(struct mig_stream *s, size_t cap, struct mig_buf **out)
{
	unsigned int i;
	int ret, dummy;
	bool seen;

	for (;;) {
		if (s->err)
			return s->err;
		for (i = 0; i < s->depth; i++) {
			struct mig_stream_slot *sl = &s->slots[i];

			if (sl->busy)
				continue;
			if (sl->buf.cap < cap) {
				uint8_t *p = realloc(sl->buf.data, cap);

				if (!p)
					return -ENOMEM;
				sl->buf.data = p;
				sl->buf.cap = cap;
			}
			sl->busy = true;
			sl->buf.len = 0;
			sl->off = 0;
			*out = &sl->buf;
			return 0;
		}
		if (!s->inflight) {
			/* Every slot handed out and none queued: a caller bug. */
			return -ENOBUFS;
		}
		ret = reap_one(s, &dummy, &seen);
		if (ret < 0)
			return ret;
	}
}

static struct mig_stream_slot *slot_of(struct mig_stream *s, struct mig_buf *b)
{
	struct mig_stream_slot *sl = (struct mig_stream_slot *)((uint8_t *)b -
					offsetof(struct mig_stream_slot, buf));

	return (sl >= s->slots && sl < s->slots + s->depth) ? sl : NULL;
}

void mig_stream_buf_release(struct mig_stream *s, struct mig_buf *b)
{
	struct mig_stream_slot *sl = slot_of(s, b);

	if (sl) {
		sl->busy = false;
		sl->buf.len = 0;
	}
}

int mig_stream_buf_submit(struct mig_stream *s, struct mig_buf *b)
{
	struct mig_stream_slot *sl = slot_of(s, b);

	if (!sl)
		return -EINVAL;
	if (s->err || !b->len) {
		mig_stream_buf_release(s, b);
		return s->err;
	}
	sl->off = 0;
	s->fifo[(s->fifo_head + s->fifo_len) % s->depth] = (unsigned int)(sl - s->slots);
	s->fifo_len++;
	return submit_chain(s);
}

int mig_stream_send_msg(struct mig_stream *s, uint16_t cmd, const void *payload, size_t len)
{
	struct mig_buf *b;
	int ret;

	ret = mig_stream_buf_get(s, MIG_HDR_LEN + len, &b);
	if (ret < 0)
		return ret;
	mig_hdr_encode(b->data, cmd, 0, len);
	if (len)
		memcpy(b->data + MIG_HDR_LEN, payload, len);
	b->len = MIG_HDR_LEN + len;
	return mig_stream_buf_submit(s, b);
}

int mig_stream_flush(struct mig_stream *s)
{
	int ret, dummy;
	bool seen;

	while (s->inflight || (s->fifo_len && !s->err)) {
		if (!s->inflight) {
			ret = submit_chain(s);
			if (ret < 0)
				return ret;
			continue;
		}
		ret = reap_one(s, &dummy, &seen);
		if (ret < 0)
			return ret;
	}
	return s->err;
}

int mig_stream_recv(struct mig_stream *s, void *buf, size_t len)
{
	size_t got = 0;
	int ret;

	if (s->err)
		return s->err;
	while (got < len) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring_of(s));
		int res = 0;
		bool seen = false;

		if (!sqe)
			return -EBUSY;
		io_uring_prep_recv(sqe, s->fd, (uint8_t *)buf + got, len - got, MSG_WAITALL);
		io_uring_sqe_set_data64(sqe, RECV_TAG);
		ret = io_uring_submit(ring_of(s));
		if (ret < 0)
			return ret;
		while (!seen) {
			ret = reap_one(s, &res, &seen);
			if (ret < 0) {
				/* The recv is still in flight: wait (bounded) for it to end. */
				struct __kernel_timespec ts = { .tv_sec = 1 };
				struct io_uring_cqe *cqe;

				while (!seen && io_uring_wait_cqe_timeout(ring_of(s), &cqe, &ts) == 0) {
					uint64_t tag = io_uring_cqe_get_data64(cqe);
					int r = cqe->res;

					io_uring_cqe_seen(ring_of(s), cqe);
					if (tag == RECV_TAG)
						seen = true;
					else if (tag < s->depth)
						send_done(s, (unsigned int)tag, r);
				}
				return ret;
			}
		}
		if (res == 0)
			return -ECONNRESET;	/* orderly close by the peer */
		if (res < 0) {
			if (res == -EINTR || res == -EAGAIN)
				continue;
			return res;
		}
		got += (size_t)res;
		s->bytes_recv += (uint64_t)res;
	}
	return 0;
}

int mig_stream_recv_msg(struct mig_stream *s, struct mig_hdr *h, uint8_t **payload)
{
	uint8_t raw[MIG_HDR_LEN];
	uint8_t *p = NULL;
	int ret;

	*payload = NULL;
	ret = mig_stream_recv(s, raw, sizeof(raw));
	if (ret < 0)
		return ret;
	ret = mig_hdr_decode_ver(raw, s->version, h);
	if (ret < 0)
		return ret;
	if (h->len) {
		p = malloc(h->len);	/* bounded by mig_hdr_decode: < 70 MiB */
		if (!p)
			return -ENOMEM;
		ret = mig_stream_recv(s, p, h->len);
		if (ret < 0) {
			free(p);
			return ret;
		}
	}
	*payload = p;
	return 0;
}

void mig_stream_destroy(struct mig_stream *s)
{
	unsigned int i;

	if (!s->ring)
		return;
	if (s->inflight) {
		/* Bounded: after an error the socket is shut down and they finish at once. */
		if (!s->err)
			mig_stream_flush(s);
		if (s->inflight) {
			shutdown(s->fd, SHUT_RDWR);
			while (s->inflight) {
				int dummy;
				bool seen;

				if (reap_one(s, &dummy, &seen) < 0 && s->inflight) {
					struct __kernel_timespec ts = { .tv_sec = 1 };
					struct io_uring_cqe *cqe;

					while (io_uring_wait_cqe_timeout(ring_of(s), &cqe, &ts) == 0)
						io_uring_cqe_seen(ring_of(s), cqe);
					break;
				}
			}
		}
	}
	io_uring_queue_exit(ring_of(s));
	free(s->ring);
	s->ring = NULL;
	for (i = 0; i < s->depth; i++)
		free(s->slots[i].buf.data);
	free(s->slots);
	free(s->fifo);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

/* ---- sockets ---- */

static int split_uri(const char *uri, char *host, size_t hostlen, const char **port)
{
	const char *p;
	size_t n;

	if (!strncmp(uri, "tcp:", 4))
		uri += 4;
	if (uri[0] == '[') {		/* [v6]:port */
		p = strchr(uri, ']');
		if (!p || p[1] != ':')
			return -EINVAL;
		n = (size_t)(p - uri - 1);
		uri++;
		p++;
	} else {
		p = strrchr(uri, ':');
		if (!p)
			return -EINVAL;
		n = (size_t)(p - uri);
	}
	if (n >= hostlen || !p[1])
		return -EINVAL;
	memcpy(host, uri, n);
	host[n] = '\0';
	*port = p + 1;
	return 0;
}

static int resolve(const char *uri, bool passive, struct addrinfo **res)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0 };
	const char *port;
	char host[256];
	int ret;

	if (split_uri(uri, host, sizeof(host), &port) < 0) {
		log_err("'%s': expected HOST:PORT", uri);
		return -EINVAL;
	}
	ret = getaddrinfo(host[0] ? host : NULL, port, &hints, res);
	if (ret) {
		log_err("'%s': %s", uri, gai_strerror(ret));
		return -EHOSTUNREACH;
	}
	return 0;
}

int mig_tcp_connect(const char *uri, int timeout_ms, int *fd_out)
{
	struct addrinfo *ai, *a;
	int fd = -1, ret = -ECONNREFUSED;

	ret = resolve(uri, false, &ai);
	if (ret < 0)
		return ret;
	for (a = ai; a; a = a->ai_next) {
		struct pollfd pfd;
		socklen_t sl = sizeof(ret);
		int soerr = 0;

		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
			ret = -errno;
			goto next;
		}
		pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
		if (poll(&pfd, 1, timeout_ms) != 1) {
			ret = -ETIMEDOUT;
			goto next;
		}
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
		if (soerr) {
			ret = -soerr;
			goto next;
		}
		/* Blocking from here: io_uring does the waiting, bounded by its timeouts. */
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		ret = 0;
		break;
next:
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (ret < 0) {
		log_err("connect %s: %s", uri, strerror(-ret));
		return ret;
	}
	*fd_out = fd;
	return 0;
}

int mig_tcp_listen(const char *uri, int *fd_out)
{
	struct addrinfo *ai, *a;
	int fd = -1, one = 1, ret;

	ret = resolve(uri, true, &ai);
	if (ret < 0)
		return ret;
	ret = -EADDRNOTAVAIL;
	for (a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 1) == 0) {
			ret = 0;
			break;
		}
		ret = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (ret < 0) {
		log_err("listen on %s: %s", uri, strerror(-ret));
		return ret;
	}
	*fd_out = fd;
	return 0;
}
