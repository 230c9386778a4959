// SPDX-License-Identifier: MIT
/*
 * Post-copy, destination side (contract in postcopy.h, protocol and failure rules in
 * docs/migration-protocol.md "Post-copy").
 *
 * Threads, from POSTCOPY_START until every page is in:
 *   receiver  reads the connection (sockmsg.h: plain syscalls, the io_uring stream is one
 *             thread's): STATE and COMPLETE for the main thread, then RAM / RAM_ZERO (the
 *             background stream) and PAGE_URGENT (answers), installed with UFFDIO_COPY via
 *             the page receiver's install hook; sends POSTCOPY_DONE when the bitmap is empty.
 *   fault     reads userfaultfd: a missing page that is still to come becomes a PAGE_REQ; a
 *             missing page that is not (a zero page pre-copy never had to write) gets a zero
 *             page at once.
 *   main      waits for COMPLETE, loads the state (which may fault: the two threads above
 *             are already running), starts the vCPUs, sends ACK(POSTCOPY_START).
 * Neither the receiver nor the fault thread touches guest RAM through the mapping or waits
 * for a thread that may (the send lock is held only around a send of prepared bytes), so no
 * missing page can block the path that brings it.
 *
 * Ordering: a page is installed only by UFFDIO_COPY, which refuses (EEXIST) a page that is
 * present, so the first copy wins and a page the guest already wrote is never replaced; the
 * source's copies are all identical (its vCPUs stay paused).
 *
 * Source lost (connection closed, reset, 30 s of silence, ABORT, a rejected message):
 * before the main thread took the state it is the pre-copy failure (an error for mig_dest_run,
 * the guest never ran). After that the main thread may itself be blocked on a missing page
 * that will never come, so the receiver ends the process: `_exit(VM_EXIT_POSTCOPY_LOST)` once
 * ACK(POSTCOPY_START) was sent (the VM is lost: the source will not resume it), else
 * `_exit(VM_EXIT_STARTUP)` (the source did not get the ACK and resumes). This is the one
 * exit outside main.c: every clean-up path would have to wake the blocked threads, which would
 * then run the guest — and the devices — on pages that are holes.
 */
#define LOG_TAG "postcopy"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrate/migration.h"
#include "migrate/pages.h"
#include "migrate/postcopy.h"
#include "migrate/proto.h"
#include "migrate/sockmsg.h"
#include "migrate/stream.h"
#include "migrate/uffd.h"
#include "vmm/lib/log.h"
#include "vmm/vm.h"

#define PC_PAGE			4096u
#define ZERO_CHUNK		64u		/* zero pages per UFFDIO_COPY */
#define RX_TIMEOUT_MS		30000		/* silence from the source = lost */
#define SEND_TIMEOUT_MS		10000
#define FAULT_POLL_MS		100
#define MAX_OUTSTANDING		64u		/* faults timed at once (≈ blocked threads) */
#define MAX_SAMPLES		65536u

enum pc_kind { PC_STREAMED, PC_ON_DEMAND };

struct pc_out {
	uint64_t pfn, t_ns;
};

struct mig_pc_dst {
	struct vm *vm;
	struct guest_mem *mem;
	int fd;				/* the connection (the caller's stream's socket) */
	uint32_t version;
	uint64_t npages;
	uint64_t *pending;		/* bit set = page still to come (atomic words) */
	uint64_t missing;		/* atomic: set bits in @pending */
	int uffd;
	bool registered;
	uint8_t *zero, *bounce;		/* page-aligned sources for UFFDIO_COPY */

	/* receiver thread only */
	struct mig_seq seq;
	struct mig_pages_rx rx;
	bool rx_init;
	enum pc_kind kind;		/* of the message being installed */
	uint64_t on_demand, streamed;

	pthread_t rx_thr, fault_thr;
	bool rx_started, fault_started, fault_joined;
	bool fault_stop;		/* atomic */

	pthread_mutex_t lock;		/* leaf; the hand-over with the main thread: below */
	pthread_cond_t cond;
	uint8_t *state;
	size_t state_len;
	bool complete;			/* COMPLETE received */
	bool main_has_state;		/* main thread loads: it may block on a missing page now */
	bool acked;			/* ACK(POSTCOPY_START) sent: the VM is this process's */
	bool stop;			/* destroy: the receiver ends quietly */
	int err;			/* receiver failure before main_has_state */
	char why[300];
	uint64_t t_begin, t_ack;

	pthread_mutex_t send_lock;	/* one sender on the socket at a time; never held while
					   touching guest RAM */

	pthread_mutex_t lat_lock;	/* leaf: outstanding faults and latency samples */
	struct pc_out out[MAX_OUTSTANDING];
	unsigned int nr_out;		/* also read atomically as a fast "none" check */
	uint32_t *samples;
	size_t nr_samples;
	uint32_t lat_max_us;
	uint64_t faults;
};

/* Latency of the faults waiting for pages [pfn, pfn + n), now installed. */
static void lat_record(struct mig_pc_dst *pc, uint64_t pfn, uint64_t n)
{
	uint64_t now;
	unsigned int i;

	if (!__atomic_load_n(&pc->nr_out, __ATOMIC_ACQUIRE))
		return;
	now = mig_now_ns();
	pthread_mutex_lock(&pc->lat_lock);
	for (i = 0; i < pc->nr_out;) {
		if (pc->out[i].pfn >= pfn && pc->out[i].pfn < pfn + n) {
			uint32_t us = (uint32_t)((now - pc->out[i].t_ns) / 1000);

			if (pc->nr_samples < MAX_SAMPLES)
				pc->samples[pc->nr_samples++] = us;
			if (us > pc->lat_max_us)
				pc->lat_max_us = us;
			pc->out[i] = pc->out[--pc->nr_out];
			continue;
		}
		i++;
	}
	__atomic_store_n(&pc->nr_out, pc->nr_out, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&pc->lat_lock);
}

/* mig_pages_rx install hook (receiver thread): UFFDIO_COPY, then the bitmap. */
static int install(void *opaque, uint64_t pfn, const void *src, uint64_t npages)
{
	struct mig_pc_dst *pc = opaque;
	uint64_t done = 0;

	if (pfn + npages > pc->npages)
		return -ERANGE;		/* the page receiver checked it; keep it local too */
	while (done < npages) {
		uint64_t k = src ? 1 : (npages - done < ZERO_CHUNK ? npages - done : ZERO_CHUNK);
		const void *from = pc->zero;
		uint64_t cleared;
		int ret;

		if (src) {
			/* UFFDIO_COPY wants a page-aligned source; payload data is not. */
			memcpy(pc->bounce, (const uint8_t *)src + done * PC_PAGE, PC_PAGE);
			from = pc->bounce;
		}
		ret = uffd_copy(pc->uffd, (uint8_t *)pc->mem->base + (pfn + done) * PC_PAGE, from,
				k * PC_PAGE);
		if (ret < 0) {
			log_err("UFFDIO_COPY of pfn 0x%" PRIx64 ": %s", pfn + done, strerror(-ret));
			return ret;
		}
		cleared = mig_pc_bits_clear(pc->pending, pfn + done, k);
		if (cleared) {
			__atomic_sub_fetch(&pc->missing, cleared, __ATOMIC_ACQ_REL);
			if (pc->kind == PC_ON_DEMAND)
				pc->on_demand += cleared;
			else
				pc->streamed += cleared;
		}
		lat_record(pc, pfn + done, k);
		done += k;
	}
	return 0;
}

/* ---- fault thread ---- */

static void *fault_thread(void *arg)
{
	struct mig_pc_dst *pc = arg;
	uint8_t req[MIG_PC_REQ_MAX_LEN];
	uint64_t gpa[MIG_PC_MAX_REQ], pfn[MIG_PC_MAX_REQ];

	while (!__atomic_load_n(&pc->fault_stop, __ATOMIC_ACQUIRE)) {
		uint64_t addr, t;
		unsigned int n = 0, i;
		size_t len;
		int r, ret;

		r = uffd_wait_fault(pc->uffd, FAULT_POLL_MS, &addr);
		if (r < 0)
			break;
		if (r == 0)
			continue;
		t = mig_now_ns();
		do {
			uint64_t f = (addr - (uint64_t)(uintptr_t)pc->mem->base) / PC_PAGE;
			bool dup = false;

			if (addr < (uint64_t)(uintptr_t)pc->mem->base || f >= pc->npages)
				continue;
			if (!mig_pc_bit_test(pc->pending, f)) {
				/*
				 * Not coming: a page pre-copy left as the memfd's zeros (never written
				 * there), or one installed since the fault was queued (then EEXIST).
				 */
				ret = uffd_copy(pc->uffd, (uint8_t *)pc->mem->base + f * PC_PAGE,
						pc->zero, PC_PAGE);
				if (ret < 0)
					log_err("zero page for pfn 0x%" PRIx64 ": %s", f, strerror(-ret));
				continue;
			}
			for (i = 0; i < n && !dup; i++)
				dup = pfn[i] == f;
			if (!dup && mig_pfn_to_gpa(pc->mem, f, &gpa[n]) == 0)
				pfn[n++] = f;
		} while (n < MIG_PC_MAX_REQ && uffd_wait_fault(pc->uffd, 0, &addr) == 1);
		if (!n)
			continue;
		pthread_mutex_lock(&pc->lat_lock);
		for (i = 0; i < n && pc->nr_out < MAX_OUTSTANDING; i++)
			pc->out[pc->nr_out++] = (struct pc_out){ pfn[i], t };
		__atomic_store_n(&pc->nr_out, pc->nr_out, __ATOMIC_RELEASE);
		pc->faults += n;
		pthread_mutex_unlock(&pc->lat_lock);
		len = mig_pc_req_encode(req, gpa, n);
		pthread_mutex_lock(&pc->send_lock);
		ret = mig_sock_send_msg(pc->fd, MIG_PAGE_REQ, req, len, SEND_TIMEOUT_MS);
		pthread_mutex_unlock(&pc->send_lock);
		if (ret < 0) {
			/* The receiver sees the dead connection too and decides. */
			log_warn("sending PAGE_REQ: %s", strerror(-ret));
			break;
		}
	}
	return NULL;
}

/* ---- receiver thread ---- */

/* The source is gone or misbehaved. Returns only if the main thread can still be told. */
static void source_lost(struct mig_pc_dst *pc, int err, const char *why)
{
	bool acked;

	pthread_mutex_lock(&pc->lock);
	if (pc->stop) {				/* destroy shut the socket down: not a loss */
		pthread_mutex_unlock(&pc->lock);
		return;
	}
	if (!pc->main_has_state) {
		pc->err = err < 0 ? err : -EIO;
		snprintf(pc->why, sizeof(pc->why), "%s", why);
		pthread_cond_broadcast(&pc->cond);
		pthread_mutex_unlock(&pc->lock);
		return;
	}
	acked = pc->acked;
	pthread_mutex_unlock(&pc->lock);
	log_err("post-copy: %s", why);
	if (!acked) {
		log_err("post-copy: source lost before the switch-over completed: the source keeps "
			"the VM, this copy stops");
		_exit(VM_EXIT_STARTUP);
	}
	vm_request_stop(pc->vm, VM_STOP_POSTCOPY_LOST, 0);
	log_err("post-copy: source lost after switch-over with %" PRIu64 " pages missing: VM lost",
		__atomic_load_n(&pc->missing, __ATOMIC_ACQUIRE));
	_exit(VM_EXIT_POSTCOPY_LOST);
}

/* Every page is in: POSTCOPY_DONE (after the ACK), then userfaultfd off. */
static void finish(struct mig_pc_dst *pc)
{
	struct mig_pc_done d = { 0 };
	uint8_t b[MIG_PC_DONE_LEN];
	uint64_t t_ack;
	int ret;

	pthread_mutex_lock(&pc->lock);
	while (!pc->acked && !pc->stop)
		pthread_cond_wait(&pc->cond, &pc->lock);
	t_ack = pc->t_ack;
	ret = pc->stop;
	pthread_mutex_unlock(&pc->lock);
	if (ret)
		return;
	pthread_mutex_lock(&pc->lat_lock);
	d.faults = pc->faults;
	d.lat_median_us = mig_pc_median(pc->samples, pc->nr_samples);
	d.lat_max_us = pc->lat_max_us;
	pthread_mutex_unlock(&pc->lat_lock);
	d.on_demand = pc->on_demand;
	d.streamed = pc->streamed;
	mig_pc_done_encode(b, &d);
	pthread_mutex_lock(&pc->send_lock);
	ret = mig_sock_send_msg(pc->fd, MIG_POSTCOPY_DONE, b, sizeof(b), SEND_TIMEOUT_MS);
	pthread_mutex_unlock(&pc->send_lock);
	if (ret < 0)	/* every page is here: the VM is whole, only the source waits in vain */
		log_warn("sending POSTCOPY_DONE: %s", strerror(-ret));
	__atomic_store_n(&pc->fault_stop, true, __ATOMIC_RELEASE);
	pthread_join(pc->fault_thr, NULL);
	pc->fault_joined = true;
	uffd_unregister(pc->uffd, pc->mem->base, pc->mem->size);
	pc->registered = false;
	log_info("post-copy: all pages in %.1f ms after the vCPUs started: %" PRIu64 " on demand, %"
		 PRIu64 " streamed; %" PRIu64 " faults requested, fault latency median %.2f ms, max %.2f ms",
		 (double)(mig_now_ns() - t_ack) / 1e6, d.on_demand, d.streamed, d.faults,
		 d.lat_median_us / 1e3, d.lat_max_us / 1e3);
}

/* One message after POSTCOPY_START. 0, or -errno with @why. */
static int rx_one(struct mig_pc_dst *pc, const struct mig_hdr *h, uint8_t **pp, char *why,
		  size_t whylen)
{
	uint8_t *p = *pp;
	int ret;

	if (h->cmd == MIG_ABORT) {
		char msg[MIG_MAX_ABORT_MSG + 1];
		int e = 0;

		if (mig_abort_decode(p, h->len, &e, msg, sizeof(msg)) < 0)
			snprintf(msg, sizeof(msg), "(malformed ABORT)");
		snprintf(why, whylen, "the source aborted: %.200s", msg);
		return -ECONNABORTED;
	}
	if (mig_seq_accept(&pc->seq, h->cmd, 0) < 0) {
		snprintf(why, whylen, "%s out of order", mig_cmd_name(h->cmd));
		return -EPROTO;
	}
	switch (h->cmd) {
	case MIG_STATE:
		ret = state_verify_buf(p, h->len, NULL);
		if (ret < 0) {
			snprintf(why, whylen, "device state rejected (%s)", strerror(-ret));
			return ret;
		}
		pthread_mutex_lock(&pc->lock);
		pc->state = p;
		pc->state_len = h->len;
		pthread_mutex_unlock(&pc->lock);
		*pp = NULL;
		return 0;
	case MIG_COMPLETE:
		pthread_mutex_lock(&pc->lock);
		pc->complete = true;
		pthread_cond_broadcast(&pc->cond);
		pthread_mutex_unlock(&pc->lock);
		return 0;
	case MIG_PAGE_URGENT:
		/* The RAM layout, raw, at most MIG_PC_MAX_REQ pages. */
		if (h->len < MIG_RAM_HDR_LEN || p[4] | p[5] | p[6] | p[7] ||
		    (p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24) > MIG_PC_MAX_REQ) {
			snprintf(why, whylen, "malformed PAGE_URGENT");
			return -EBADMSG;
		}
		pc->kind = PC_ON_DEMAND;
		ret = mig_pages_rx_ram(&pc->rx, p, h->len);
		break;
	case MIG_RAM:
		pc->kind = PC_STREAMED;
		ret = mig_pages_rx_ram(&pc->rx, p, h->len);
		break;
	case MIG_RAM_ZERO:
		pc->kind = PC_STREAMED;
		ret = mig_pages_rx_zero(&pc->rx, p, h->len);
		break;
	default:
		ret = -EPROTO;
		break;
	}
	if (ret < 0)
		snprintf(why, whylen, "%s rejected: %s", mig_cmd_name(h->cmd),
			 ret == -ERANGE ? "a page lies outside guest RAM" : strerror(-ret));
	return ret;
}

static void *rx_thread(void *arg)
{
	struct mig_pc_dst *pc = arg;
	uint64_t bytes = 0;

	for (;;) {
		struct mig_hdr h;
		uint8_t *p = NULL;
		char why[300];
		bool complete;
		int ret;

		ret = mig_sock_recv_msg(pc->fd, pc->version, RX_TIMEOUT_MS, &h, &p, &bytes);
		if (ret < 0) {
			snprintf(why, sizeof(why), "%s", ret == -ECONNRESET ?
				 "the source closed the connection" :
				 ret == -ETIMEDOUT ? "no data from the source for 30 s" :
				 strerror(-ret));
			source_lost(pc, ret, why);
			return NULL;
		}
		ret = rx_one(pc, &h, &p, why, sizeof(why));
		free(p);
		if (ret < 0) {
			source_lost(pc, ret, why);
			return NULL;
		}
		pthread_mutex_lock(&pc->lock);
		complete = pc->complete;
		pthread_mutex_unlock(&pc->lock);
		if (complete && !__atomic_load_n(&pc->missing, __ATOMIC_ACQUIRE)) {
			finish(pc);
			return NULL;
		}
	}
}

/* ---- main thread ---- */

/* Drop every page still to come, so it is missing (a stale pre-copy copy would be EEXIST). */
static int punch_pending(struct mig_pc_dst *pc)
{
	uint64_t pfn = 0;

	while (pfn < pc->npages) {
		uint64_t end;

		if (!mig_pc_bit_test(pc->pending, pfn)) {
			pfn++;
			continue;
		}
		for (end = pfn + 1; end < pc->npages && mig_pc_bit_test(pc->pending, end); end++)
			;
		if (fallocate(pc->mem->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(pfn * PC_PAGE), (off_t)((end - pfn) * PC_PAGE)) < 0)
			return -errno;
		pfn = end;
	}
	return 0;
}

static void pc_free(struct mig_pc_dst *pc)
{
	if (pc->uffd >= 0) {
		if (pc->registered)
			uffd_unregister(pc->uffd, pc->mem->base, pc->mem->size);
		close(pc->uffd);
	}
	if (pc->rx_init)
		mig_pages_rx_destroy(&pc->rx);
	free(pc->pending);
	free(pc->zero);
	free(pc->bounce);
	free(pc->samples);
	free(pc->state);
	pthread_mutex_destroy(&pc->lock);
	pthread_cond_destroy(&pc->cond);
	pthread_mutex_destroy(&pc->send_lock);
	pthread_mutex_destroy(&pc->lat_lock);
	free(pc);
}

int mig_pc_dst_begin(struct mig_ctx *m, struct mig_stream *s, const struct mig_seq *seq,
		     const uint8_t *p, size_t len, struct mig_pc_dst **out, char *why,
		     size_t whylen)
{
	struct mig_pc_dst *pc = calloc(1, sizeof(*pc));
	int ret;

	if (!pc)
		return -ENOMEM;
	pthread_mutex_init(&pc->lock, NULL);
	pthread_cond_init(&pc->cond, NULL);
	pthread_mutex_init(&pc->send_lock, NULL);
	pthread_mutex_init(&pc->lat_lock, NULL);
	pc->uffd = -1;
	pc->vm = m->vm;
	pc->mem = &m->vm->mem;
	pc->fd = s->fd;
	pc->version = s->version;
	pc->seq = *seq;
	pc->npages = pc->mem->size / PC_PAGE;
	pc->t_begin = mig_now_ns();
	pc->pending = calloc((pc->npages + 63) / 64, sizeof(uint64_t));
	pc->zero = aligned_alloc(PC_PAGE, ZERO_CHUNK * PC_PAGE);
	pc->bounce = aligned_alloc(PC_PAGE, PC_PAGE);
	pc->samples = malloc(MAX_SAMPLES * sizeof(uint32_t));
	if (!pc->pending || !pc->zero || !pc->bounce || !pc->samples) {
		snprintf(why, whylen, "post-copy: out of memory");
		ret = -ENOMEM;
		goto err;
	}
	memset(pc->zero, 0, ZERO_CHUNK * PC_PAGE);
	ret = mig_pc_start_decode(p, len, pc->npages, pc->pending, &pc->missing);
	if (ret < 0) {
		snprintf(why, whylen, "malformed POSTCOPY_START (not this VM's page count, or a bad bitmap)");
		goto err;
	}
	/* Nothing may be queued on the stream's ring once other threads use the socket. */
	ret = mig_stream_flush(s);
	if (ret == 0)
		ret = punch_pending(pc);
	if (ret < 0) {
		snprintf(why, whylen, "post-copy: preparing guest RAM: %s", strerror(-ret));
		goto err;
	}
	ret = uffd_open();
	if (ret >= 0) {
		pc->uffd = ret;
		ret = uffd_register_missing(pc->uffd, pc->mem->base, pc->mem->size);
	}
	if (ret < 0) {
		snprintf(why, whylen, "post-copy: userfaultfd on guest RAM: %s", strerror(-ret));
		goto err;
	}
	pc->registered = true;
	ret = mig_pages_rx_init(&pc->rx, pc->mem);
	if (ret < 0) {
		snprintf(why, whylen, "post-copy: page receiver: %s", strerror(-ret));
		goto err;
	}
	pc->rx_init = true;
	pc->rx.install = install;
	pc->rx.install_opaque = pc;
	ret = -pthread_create(&pc->fault_thr, NULL, fault_thread, pc);
	if (ret == 0) {
		pc->fault_started = true;
		pthread_setname_np(pc->fault_thr, "pc-fault");
		ret = -pthread_create(&pc->rx_thr, NULL, rx_thread, pc);
	}
	if (ret < 0) {
		snprintf(why, whylen, "post-copy: threads: %s", strerror(-ret));
		goto err;
	}
	pc->rx_started = true;
	pthread_setname_np(pc->rx_thr, "pc-recv");
	log_info("post-copy: %" PRIu64 " of %" PRIu64 " pages still to come; guest RAM under "
		 "userfaultfd", pc->missing, pc->npages);
	*out = pc;
	return 0;
err:
	if (pc->fault_started) {
		__atomic_store_n(&pc->fault_stop, true, __ATOMIC_RELEASE);
		pthread_join(pc->fault_thr, NULL);
	}
	pc_free(pc);
	return ret;
}

int mig_pc_dst_wait_complete(struct mig_pc_dst *pc, uint8_t **state, size_t *len, char *why,
			     size_t whylen)
{
	int ret = 0;

	pthread_mutex_lock(&pc->lock);
	while (!pc->complete && !pc->err)
		pthread_cond_wait(&pc->cond, &pc->lock);
	if (pc->err) {
		ret = pc->err;
		snprintf(why, whylen, "%s", pc->why);
	} else if (!pc->state) {
		ret = -EPROTO;		/* (mig_seq makes STATE precede COMPLETE) */
		snprintf(why, whylen, "COMPLETE without STATE");
	} else {
		*state = pc->state;
		*len = pc->state_len;
		pc->state = NULL;
		pc->main_has_state = true;
	}
	pthread_mutex_unlock(&pc->lock);
	return ret;
}

int mig_pc_dst_ack(struct mig_pc_dst *pc)
{
	uint8_t ack[MIG_ACK_LEN];
	int ret;

	pthread_mutex_lock(&pc->lock);
	pc->acked = true;		/* before the send: once it may be out, we own the VM */
	pc->t_ack = mig_now_ns();
	pthread_cond_broadcast(&pc->cond);
	pthread_mutex_unlock(&pc->lock);
	mig_ack_encode(ack, MIG_POSTCOPY_START);
	pthread_mutex_lock(&pc->send_lock);
	ret = mig_sock_send_msg(pc->fd, MIG_ACK, ack, sizeof(ack), SEND_TIMEOUT_MS);
	pthread_mutex_unlock(&pc->send_lock);
	if (ret < 0)	/* the receiver sees the connection die and ends the process */
		log_err("sending ACK(POSTCOPY_START): %s", strerror(-ret));
	else
		log_info("post-copy: vCPUs running, %" PRIu64 " pages still to come (%.1f ms after "
			 "POSTCOPY_START)", __atomic_load_n(&pc->missing, __ATOMIC_ACQUIRE),
			 (double)(pc->t_ack - pc->t_begin) / 1e6);
	return 0;
}

void mig_pc_dst_destroy(struct mig_pc_dst *pc)
{
	if (!pc)
		return;
	pthread_mutex_lock(&pc->lock);
	pc->stop = true;
	pthread_cond_broadcast(&pc->cond);
	pthread_mutex_unlock(&pc->lock);
	__atomic_store_n(&pc->fault_stop, true, __ATOMIC_RELEASE);
	shutdown(pc->fd, SHUT_RDWR);	/* the receiver's wait ends */
	if (pc->rx_started)
		pthread_join(pc->rx_thr, NULL);
	if (pc->fault_started && !pc->fault_joined)
		pthread_join(pc->fault_thr, NULL);
	/* Unregistering wakes any thread still waiting for a page (it gets a zero page). */
	pc_free(pc);
}
