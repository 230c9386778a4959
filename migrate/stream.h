/* SPDX-License-Identifier: MIT */
/*
 * The migration transport: framed messages (migrate/proto.h) over a connected TCP socket,
 * through a private io_uring owned by the thread that migrates (the source's migration
 * worker, or the destination's main thread before its loop runs).
 *
 * Sending: the caller takes a buffer from the stream's pool (mig_stream_buf_get), fills a
 * whole message into it (header + payload, e.g. with mig_pages_tx_next) and hands it back
 * with mig_stream_buf_submit. Up to @depth buffers are in flight at once: while the kernel
 * sends one batch the caller compresses the next. Submitted buffers go out as one linked
 * SQE chain, so they leave in order; a short send (or the -ECANCELED of the rest of a chain
 * after it) is resubmitted from where it stopped, so a message is never torn or reordered.
 * A bandwidth limit delays submissions (token bucket over the whole transfer).
 *
 * Receiving: mig_stream_recv_msg reads a header, checks it with mig_hdr_decode (so the
 * length is bounded before anything is allocated), then reads exactly that payload.
 *
 * Every wait is bounded by @timeout_ms without progress (-ETIMEDOUT), and the socket has
 * TCP_USER_TIMEOUT set to the same, so a peer that vanished without a RST does not hang
 * the source for the TCP retransmission timeout (~15 min).
 *
 * Threading: one thread uses a stream; mig_stream_shutdown() may be called from any thread
 * to make every pending and future operation fail (cancel).
 */
#ifndef MIGRATE_STREAM_H
#define MIGRATE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrate/pages.h"
#include "migrate/proto.h"

#define MIG_STREAM_DEFAULT_DEPTH	8
#define MIG_STREAM_MAX_DEPTH		64
#define MIG_STREAM_DEFAULT_TIMEOUT_MS	10000

struct mig_stream_slot {
	struct mig_buf buf;
	size_t off;			/* bytes of buf already sent */
	bool busy;			/* handed out or queued */
};

struct mig_stream {
	int fd;
	void *ring;			/* struct io_uring * */
	unsigned int depth;
	struct mig_stream_slot *slots;
	unsigned int *fifo;		/* slot indexes in send order, circular */
	unsigned int fifo_head, fifo_len;
	unsigned int chain;		/* fifo entries in the chain now in flight */
	unsigned int inflight;		/* of those, completions still to come */
	int timeout_ms;
	uint64_t bw_limit;		/* bytes per second, 0 = none */
	uint64_t bw_start_ns, bw_bytes;	/* token bucket */
	int err;			/* sticky first error */
	uint32_t version;		/* negotiated (HELLO); received headers are checked for it */
	/* statistics */
	uint64_t bytes_sent;		/* completed */
	uint64_t bytes_recv;
	uint64_t short_sends, chains;
};

/* Take over the connected socket @fd (closed by destroy). 0 or -errno. */
int  mig_stream_init(struct mig_stream *s, int fd, unsigned int depth, int timeout_ms);
/* Wait (bounded) for sends in flight, tear down the ring, close the socket. */
void mig_stream_destroy(struct mig_stream *s);
/* 0 = unlimited. Takes effect for the next submission. */
void mig_stream_set_bandwidth(struct mig_stream *s, uint64_t bytes_per_sec);
/* Make everything pending or later fail with -ECONNABORTED. Any thread. */
void mig_stream_shutdown(struct mig_stream *s);

/*
 * A free buffer with at least @cap bytes (grown if needed), len 0. Waits for sends in
 * flight to complete when all @depth buffers are busy. 0 or -errno (the stream's sticky
 * error, -ETIMEDOUT, -ENOMEM). Give it back with _submit or _release.
 */
int  mig_stream_buf_get(struct mig_stream *s, size_t cap, struct mig_buf **out);
/* Queue @b (its data[0..len) is one or more whole messages) for sending. len 0 = release. */
int  mig_stream_buf_submit(struct mig_stream *s, struct mig_buf *b);
void mig_stream_buf_release(struct mig_stream *s, struct mig_buf *b);
/* One message from a header and a payload (copied). */
int  mig_stream_send_msg(struct mig_stream *s, uint16_t cmd, const void *payload, size_t len);
/* Wait until every submitted buffer has been sent. 0 or -errno. */
int  mig_stream_flush(struct mig_stream *s);

/* Exactly @len bytes. 0, -ECONNRESET (peer closed, also mid-message), -ETIMEDOUT, -errno. */
int  mig_stream_recv(struct mig_stream *s, void *buf, size_t len);
/*
 * One message: header decoded and checked (mig_hdr_decode's errors), then its payload into
 * a malloc'ed buffer (*payload, NULL when len 0; free it). 0 or -errno.
 */
int  mig_stream_recv_msg(struct mig_stream *s, struct mig_hdr *h, uint8_t **payload);

/* "HOST:PORT" → connected / listening sockets (IPv4 or IPv6, numeric or names). */
int  mig_tcp_connect(const char *uri, int timeout_ms, int *fd_out);
int  mig_tcp_listen(const char *uri, int *fd_out);

#endif
