// SPDX-License-Identifier: MIT
/*
 * Post-copy, source side (contract in postcopy.h, protocol in docs/migration-protocol.md
 * "Post-copy"): POSTCOPY_START, then the serve loop on the migration worker thread.
 *
 * The loop is single-threaded on purpose — the io_uring stream belongs to one thread — and
 * gives requests priority by checking the socket before every batch: whatever PAGE_REQs have
 * arrived are answered (PAGE_URGENT, raw, ≤ 64 pages) before the next background batch is
 * built. A requested page's bit is cleared in the background bitmap so it is not sent twice;
 * a request for a page already sent is ignored (the page is on the wire, and TCP keeps order).
 * The worst extra latency of a request is what is already queued ahead of it: the stream's
 * depth of background batches plus the socket's send buffer. Both are cut for this phase —
 * batches of PC_BG_BATCH pages (8 × 64 KiB instead of 8 × 1 MiB) and SO_SNDBUF PC_SNDBUF
 * (the kernel doubles it; autotuned loopback buffers reach 4 MiB) — so at the test host's
 * ~100 MB/s an answer waits ≲ 10 ms behind the stream rather than ~100 ms. Throughput does
 * not suffer on a LAN (its bandwidth-delay product is below that).
 *
 * The source's vCPUs stay paused from the final dirty sync on, so every copy of a page has
 * the same bytes (ordering rule 1), and guest RAM is only read here.
 */
#define LOG_TAG "postcopy"
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "migrate/dirty.h"
#include "migrate/migration.h"
#include "migrate/pages.h"
#include "migrate/postcopy.h"
#include "migrate/proto.h"
#include "migrate/stream.h"
#include "vmm/lib/log.h"

#define URGENT_QUEUE	4096u		/* requested pages waiting; more stay in the background */
#define IDLE_POLL_MS	100
#define PC_BG_BATCH	16u		/* pages per background RAM message */
#define PC_SNDBUF	(256 << 10)

struct urgent_q {
	uint64_t pfn[URGENT_QUEUE];
	unsigned int head, len;
};

static int pc_fail(struct mig_pc_src *ps, int err, const char *what)
{
	if (!ps->err[0])
		snprintf(ps->err, sizeof(ps->err), "post-copy: %s: %s", what, strerror(-err));
	return err < 0 ? err : -EIO;
}

int mig_pc_src_start(struct mig_pc_src *ps)
{
	uint64_t npages = ps->tx->npages;
	uint64_t len = mig_pc_start_len(npages);
	uint8_t *buf = malloc(len);
	int ret;

	if (!buf)
		return pc_fail(ps, -ENOMEM, "POSTCOPY_START");
	ps->pending = mig_pc_start_encode(buf, npages, ps->bm);
	ret = mig_stream_send_msg(ps->s, MIG_POSTCOPY_START, buf, len);
	free(buf);
	if (ret < 0)
		return pc_fail(ps, ret, "sending POSTCOPY_START");
	mig_seq_postcopy(ps->seq);
	pthread_mutex_lock(&ps->m->lock);
	ps->m->st.postcopy = true;
	ps->m->st.pc_pages_pending = ps->pending;
	pthread_mutex_unlock(&ps->m->lock);
	log_info("post-copy: switching over with %" PRIu64 " of %" PRIu64 " pages still to send",
		 ps->pending, npages);
	return 0;
}

/* A PAGE_REQ: queue the pages the destination has not been sent yet. Hostile input. */
static int on_request(struct mig_pc_src *ps, struct urgent_q *q, const uint8_t *p, size_t len)
{
	uint64_t gpa[MIG_PC_MAX_REQ];
	uint32_t n, i;

	if (mig_pc_req_decode(p, len, gpa, &n) < 0) {
		snprintf(ps->err, sizeof(ps->err), "post-copy: malformed PAGE_REQ");
		return -EBADMSG;
	}
	ps->requests++;
	for (i = 0; i < n; i++) {
		uint64_t pfn;

		if (mig_gpa_to_pfn(ps->tx->mem, gpa[i], &pfn) < 0) {
			snprintf(ps->err, sizeof(ps->err),
				 "post-copy: PAGE_REQ for gpa 0x%" PRIx64 " outside guest RAM", gpa[i]);
			return -ERANGE;
		}
		if (q->len == URGENT_QUEUE || !mig_pc_bit_test(ps->bm, pfn))
			continue;	/* queue full: the background stream brings it */
		mig_pc_bits_clear(ps->bm, pfn, 1);
		q->pfn[(q->head + q->len++) % URGENT_QUEUE] = pfn;
	}
	return 0;
}

/* One message from the destination (the socket is readable). 1 = POSTCOPY_DONE. */
static int on_message(struct mig_pc_src *ps, struct urgent_q *q)
{
	struct mig_hdr h;
	uint8_t *p = NULL;
	uint16_t ack = 0;
	int ret;

	ret = mig_stream_recv_msg(ps->s, &h, &p);
	if (ret < 0)
		return pc_fail(ps, ret, ps->acked ? "destination lost after switch-over: VM lost" :
			       "destination lost before it ran the VM");
	if (h.cmd == MIG_ACK && mig_ack_decode(p, h.len, &ack) < 0)
		ack = 0;
	if (h.cmd == MIG_ABORT) {
		char msg[MIG_MAX_ABORT_MSG + 1];
		int e = 0;

		if (mig_abort_decode(p, h.len, &e, msg, sizeof(msg)) < 0)
			snprintf(msg, sizeof(msg), "(malformed ABORT)");
		snprintf(ps->err, sizeof(ps->err), "post-copy: destination aborted: %.200s", msg);
		free(p);
		return -ECONNABORTED;
	}
	ret = mig_seq_accept(ps->seq, h.cmd, ack);
	if (ret < 0) {
		snprintf(ps->err, sizeof(ps->err), "post-copy: destination sent %s out of order",
			 mig_cmd_name(h.cmd));
		free(p);
		return ret;
	}
	switch (h.cmd) {
	case MIG_PAGE_REQ:
		ret = on_request(ps, q, p, h.len);
		break;
	case MIG_ACK:			/* POSTCOPY_START: the destination runs the VM now */
		ps->acked = true;
		ps->t_ack = mig_now_ns();
		/* The downtime is over: show it now (the phase may last a while). */
		pthread_mutex_lock(&ps->m->lock);
		ps->m->st.downtime_ns = ps->t_ack - ps->t_pause;
		pthread_mutex_unlock(&ps->m->lock);
		log_info("post-copy: the destination runs the VM; %" PRIu64 " requests so far",
			 ps->requests);
		break;
	case MIG_POSTCOPY_DONE:
		ret = mig_pc_done_decode(p, h.len, &ps->done);
		if (ret < 0)
			snprintf(ps->err, sizeof(ps->err), "post-copy: malformed POSTCOPY_DONE");
		else
			ret = 1;
		ps->t_done = mig_now_ns();
		break;
	default:
		break;
	}
	free(p);
	return ret;
}

/* PAGE_URGENT with up to MIG_PC_MAX_REQ queued pages, raw (latency first: no zstd). */
static int send_urgent(struct mig_pc_src *ps, struct urgent_q *q)
{
	const struct guest_mem *mem = ps->tx->mem;
	unsigned int n = q->len < MIG_PC_MAX_REQ ? q->len : MIG_PC_MAX_REQ, i;
	size_t plen = MIG_RAM_HDR_LEN + (size_t)n * (8 + MIG_PAGE_SIZE);
	struct mig_buf *b;
	uint8_t *pl;
	int ret;

	ret = mig_stream_buf_get(ps->s, MIG_HDR_LEN + plen, &b);
	if (ret < 0)
		return pc_fail(ps, ret, "sending pages");
	pl = b->data + MIG_HDR_LEN;
	memset(pl, 0, MIG_RAM_HDR_LEN);
	pl[0] = (uint8_t)n;			/* u32 npages LE (n ≤ 64), flags 0 */
	for (i = 0; i < n; i++) {
		uint64_t pfn = q->pfn[q->head], gpa = 0, le;

		q->head = (q->head + 1) % URGENT_QUEUE;
		q->len--;
		mig_pfn_to_gpa(mem, pfn, &gpa);		/* pfn < npages: checked at the request */
		le = htole64(gpa);
		memcpy(pl + MIG_RAM_HDR_LEN + 8 * i, &le, 8);
		memcpy(pl + MIG_RAM_HDR_LEN + 8 * (size_t)n + (size_t)i * MIG_PAGE_SIZE,
		       (const uint8_t *)mem->base + pfn * MIG_PAGE_SIZE, MIG_PAGE_SIZE);
	}
	mig_hdr_encode(b->data, MIG_PAGE_URGENT, 0, plen);
	b->len = MIG_HDR_LEN + plen;
	ret = mig_stream_buf_submit(ps->s, b);
	if (ret < 0)
		return pc_fail(ps, ret, "sending pages");
	ps->pages_urgent += n;
	return 0;
}

/* The next background batch; 0 when the bitmap is empty, 1 if something went out. */
static int send_background(struct mig_pc_src *ps, uint64_t *pos)
{
	struct mig_buf *ram, *zero;
	int ret;

	ret = mig_stream_buf_get(ps->s, MIG_HDR_LEN + MIG_RAM_HDR_LEN +
				 (size_t)ps->tx->batch * (8 + MIG_PAGE_SIZE), &ram);
	if (ret < 0)
		return pc_fail(ps, ret, "sending pages");
	ret = mig_stream_buf_get(ps->s, MIG_HDR_LEN + MIG_RAM_ZERO_MAX_LEN, &zero);
	if (ret < 0) {
		mig_stream_buf_release(ps->s, ram);
		return pc_fail(ps, ret, "sending pages");
	}
	ret = mig_pages_tx_next(ps->tx, ps->bm, pos, ram, zero);
	if (ret <= 0) {
		mig_stream_buf_release(ps->s, ram);
		mig_stream_buf_release(ps->s, zero);
		return ret < 0 ? pc_fail(ps, ret, "reading guest pages") : 0;
	}
	ret = mig_stream_buf_submit(ps->s, zero);
	if (ret < 0) {
		mig_stream_buf_release(ps->s, ram);
		return pc_fail(ps, ret, "sending pages");
	}
	ret = mig_stream_buf_submit(ps->s, ram);
	return ret < 0 ? pc_fail(ps, ret, "sending pages") : 1;
}

static void publish(struct mig_pc_src *ps, uint64_t streamed0)
{
	struct mig_ctx *m = ps->m;

	pthread_mutex_lock(&m->lock);
	m->st.bytes_wire = ps->s->bytes_sent;
	m->st.pages_data = ps->tx->st.pages_data;
	m->st.pages_zero = ps->tx->st.pages_zero;
	m->st.bytes_raw = ps->tx->st.pages_data * MIG_PAGE_SIZE;
	m->st.pc_on_demand = ps->pages_urgent;
	m->st.pc_streamed = ps->tx->st.pages_data + ps->tx->st.pages_zero - streamed0;
	m->st.remaining_bytes = mig_bitmap_weight(ps->bm, ps->tx->npages) * MIG_PAGE_SIZE;
	pthread_mutex_unlock(&m->lock);
}

int mig_pc_src_serve(struct mig_pc_src *ps)
{
	struct urgent_q *q = calloc(1, sizeof(*q));
	uint64_t pos = 0, last_rx = mig_now_ns(), batches = 0;
	uint64_t streamed0 = ps->tx->st.pages_data + ps->tx->st.pages_zero;
	bool bg_done = false;
	int ret = 0;

	if (!q)
		return pc_fail(ps, -ENOMEM, "serving pages");
	if (ps->tx->batch > PC_BG_BATCH)
		ps->tx->batch = PC_BG_BATCH;	/* smaller is always valid for a tx */
	{
		int sndbuf = PC_SNDBUF;		/* best effort: only latency depends on it */

		setsockopt(ps->s->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	}
	mig_pages_tx_round_begin(ps->tx);
	for (;;) {
		bool idle = bg_done && !q->len;
		struct pollfd pfd = { .fd = ps->s->fd, .events = POLLIN };
		int r;

		if (idle) {
			/* Nothing to send: everything queued must go out before we wait. */
			ret = mig_stream_flush(ps->s);
			if (ret < 0) {
				pc_fail(ps, ret, "sending pages");
				break;
			}
		}
		r = poll(&pfd, 1, idle ? IDLE_POLL_MS : 0);
		if (r < 0 && errno != EINTR) {
			ret = pc_fail(ps, -errno, "poll");
			break;
		}
		if (r > 0) {
			ret = on_message(ps, q);
			if (ret != 0)
				break;
			last_rx = mig_now_ns();
			continue;	/* drain every request before sending more */
		}
		if (idle && mig_now_ns() - last_rx > (uint64_t)ps->reply_timeout_ms * 1000000) {
			ret = pc_fail(ps, -ETIMEDOUT, ps->acked ?
				      "no word from the destination after switch-over: VM lost" :
				      "no word from the destination");
			break;
		}
		if (q->len) {
			ret = send_urgent(ps, q);
		} else if (!bg_done) {
			ret = send_background(ps, &pos);
			if (ret == 0) {
				bg_done = true;
				log_info("post-copy: background stream done, %" PRIu64 " pages on demand",
					 ps->pages_urgent);
			}
			if (ret > 0 && !(++batches % 16))
				publish(ps, streamed0);
		}
		if (ret < 0)
			break;
	}
	free(q);
	publish(ps, streamed0);
	if (ret == 1) {
		pthread_mutex_lock(&ps->m->lock);
		ps->m->st.postcopy_ns = ps->t_done - ps->t_ack;
		ps->m->st.pc_on_demand = ps->done.on_demand;
		ps->m->st.pc_streamed = ps->done.streamed;
		ps->m->st.pc_faults = ps->done.faults;
		ps->m->st.pc_lat_median_us = ps->done.lat_median_us;
		ps->m->st.pc_lat_max_us = ps->done.lat_max_us;
		ps->m->st.remaining_bytes = 0;
		pthread_mutex_unlock(&ps->m->lock);
		return 0;
	}
	return ret < 0 ? ret : -EPROTO;
}
