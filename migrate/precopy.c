// SPDX-License-Identifier: MIT
/*
 * Live migration, source side: iterative pre-copy on a worker thread that owns the VM for
 * the duration (style.md §3.2). The sequence and wire format are in
 * docs/migration-protocol.md; this file decides *when* to stop copying.
 *
 *   setup     connect, HELLO both ways, CONFIG → ACK (the destination refuses an
 *             incompatible VM here, before any page moves), dirty logging on.
 *   rounds    sync the dirty log (the first sync reports all RAM), send those pages
 *             (zero pages as runs, the rest raw or zstd), ROUND_END, measure the rate.
 *   converge  after each sync: expected downtime = remaining pages / the rate at which data
 *             pages went out in the last round (copy + compression + link together). Stop-and-copy when it fits the budget
 *             (default 50 ms) or nothing is dirty. Policy minimal-downtime: when a round
 *             does not shrink the dirty set by 10 %, or two rounds in a row do not halve
 *             it, throttle the vCPUs (run/pause duty cycle, +20 % per step up to 95 %:
 *             QEMU's auto-converge idea). Policy suspend:
 *             never throttle. At max_rounds both stop-and-copy anyway (a longer pause);
 *             at the overall timeout the migration fails and the VM keeps running here.
 *   stop      pause the vCPUs (downtime starts), quiesce devices, final dirty sync, last
 *             pages, STATE, COMPLETE, wait for ACK(COMPLETE) — the destination sends it once
 *             its vCPUs run — then the VM is the destination's: this process exits.
 *
 * Failure at any point before ACK (peer gone, connection cut, refused, cancel, timeout):
 * dirty logging off, throttle off, the vCPUs resumed if we paused them; the VM never
 * stopped being this process's, with all its memory (guest RAM is only ever read here).
 *
 * Downtime is measured here as vCPU pause → ACK(COMPLETE) received: the destination's vCPU
 * resume plus one one-way latency, i.e. an upper bound of the true figure.
 *
 * Policy post-copy (opt-in): after postcopy_after_rounds rounds, or earlier when a round did
 * not shrink the dirty set, pause + final sync as for stop-and-copy, then POSTCOPY_START with
 * the pages still dirty instead of the pages themselves, STATE, COMPLETE, and postcopy_src.c
 * serves the rest. Until ACK(POSTCOPY_START) a failure is the pre-copy one (resume here);
 * after it the vCPUs here never run again: a failure then loses the VM (exit status 8).
 */
#define LOG_TAG "precopy"
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migrate/dirty.h"
#include "migrate/migration.h"
#include "migrate/pages.h"
#include "migrate/postcopy.h"
#include "migrate/proto.h"
#include "migrate/stream.h"
#include "vmm/lib/evloop.h"
#include "vmm/lib/log.h"
#include "vmm/vm.h"

#define THROTTLE_CYCLE_NS	(20ull * 1000000)
#define THROTTLE_FIRST		30u
#define THROTTLE_STEP		20u
#define THROTTLE_MAX		95u
#define CONNECT_TIMEOUT_MS	5000
#define ACK_TIMEOUT_MS		30000

void mig_report_end(struct mig_ctx *m);		/* ctl_cmds.c */

struct precopy {
	struct mig_ctx *m;
	struct vm *vm;
	struct mig_params p;
	struct mig_stream s;
	bool stream_ok;
	struct mig_seq seq;
	struct mig_dirty d;
	bool dirty_init, dirty_started;
	struct mig_pages_tx tx;
	bool tx_init;
	uint64_t *bm;
	bool paused_by_us;
	uint32_t version;		/* negotiated protocol version */
	struct mig_pc_src ps;		/* post-copy: ps.acked = the VM is no longer ours */

	/* throttle thread */
	pthread_t thr;
	bool thr_started;
	unsigned int throttle;		/* atomic: percent of each cycle the vCPUs are paused */
	bool thr_stop;			/* atomic */

	char err[256];
};

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull) };

	nanosleep(&ts, NULL);
}

/* The vCPUs run (100 - throttle) % of each 20 ms cycle. */
static void *throttle_thread(void *arg)
{
	struct precopy *pc = arg;

	while (!__atomic_load_n(&pc->thr_stop, __ATOMIC_ACQUIRE)) {
		unsigned int pct = __atomic_load_n(&pc->throttle, __ATOMIC_ACQUIRE);

		if (!pct) {
			sleep_ns(THROTTLE_CYCLE_NS);
			continue;
		}
		if (vm_pause(pc->vm) == 0) {
			sleep_ns(THROTTLE_CYCLE_NS * pct / 100);
			vm_resume(pc->vm);
		}
		sleep_ns(THROTTLE_CYCLE_NS * (100 - pct) / 100);
	}
	return NULL;
}

static void throttle_stop(struct precopy *pc)
{
	if (!pc->thr_started)
		return;
	__atomic_store_n(&pc->thr_stop, true, __ATOMIC_RELEASE);
	pthread_join(pc->thr, NULL);
	pc->thr_started = false;
	__atomic_store_n(&pc->throttle, 0, __ATOMIC_RELEASE);
}

static int throttle_raise(struct precopy *pc)
{
	unsigned int t = __atomic_load_n(&pc->throttle, __ATOMIC_ACQUIRE);
	int ret;

	t = t ? t + THROTTLE_STEP : THROTTLE_FIRST;
	if (t > THROTTLE_MAX)
		t = THROTTLE_MAX;
	__atomic_store_n(&pc->throttle, t, __ATOMIC_RELEASE);
	if (!pc->thr_started) {
		ret = pthread_create(&pc->thr, NULL, throttle_thread, pc);
		if (ret)
			return -ret;
		pc->thr_started = true;
	}
	pthread_mutex_lock(&pc->m->lock);
	pc->m->st.throttle_pct = t;
	pthread_mutex_unlock(&pc->m->lock);
	log_info("auto-converge: vCPUs throttled to %u%% pause", t);
	return 0;
}

static bool cancelled(struct precopy *pc)
{
	bool c;

	pthread_mutex_lock(&pc->m->lock);
	c = pc->m->cancel;
	pthread_mutex_unlock(&pc->m->lock);
	return c;
}

static void set_phase(struct precopy *pc, enum mig_phase_pub ph)
{
	pthread_mutex_lock(&pc->m->lock);
	pc->m->st.phase = ph;
	pthread_mutex_unlock(&pc->m->lock);
}

static int fail(struct precopy *pc, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct precopy *pc, int err, const char *fmt, ...)
{
	va_list ap;

	if (!pc->err[0]) {
		va_start(ap, fmt);
		vsnprintf(pc->err, sizeof(pc->err), fmt, ap);
		va_end(ap);
	}
	return err < 0 ? err : -EIO;
}

/* Receive one message the source expects (HELLO, ACK, or an ABORT that explains a refusal). */
static int expect(struct precopy *pc, uint16_t want, uint16_t want_ack, uint8_t **payload,
		  size_t *len)
{
	struct mig_hdr h;
	uint16_t ack = 0;
	int ret;

	ret = mig_stream_recv_msg(&pc->s, &h, payload);
	if (ret < 0)
		return fail(pc, ret, "waiting for %s%s%s from the destination: %s",
			    want == MIG_ACK ? "ACK(" : "", mig_cmd_name(want == MIG_ACK ? want_ack : want),
			    want == MIG_ACK ? ")" : "", strerror(-ret));
	if (h.cmd == MIG_ABORT) {
		char msg[MIG_MAX_ABORT_MSG + 1];
		int e = 0;

		if (mig_abort_decode(*payload, h.len, &e, msg, sizeof(msg)) < 0)
			snprintf(msg, sizeof(msg), "(malformed ABORT)");
		free(*payload);
		*payload = NULL;
		return fail(pc, -ECONNABORTED, "destination refused: %s", msg);
	}
	if (h.cmd == MIG_ACK && mig_ack_decode(*payload, h.len, &ack) < 0)
		ack = 0;
	ret = mig_seq_accept(&pc->seq, h.cmd, ack);
	if (ret < 0 || h.cmd != want || (want == MIG_ACK && ack != want_ack)) {
		free(*payload);
		*payload = NULL;
		return fail(pc, -EPROTO, "destination sent %s out of order", mig_cmd_name(h.cmd));
	}
	if (len)
		*len = h.len;
	return 0;
}

static int handshake(struct precopy *pc)
{
	struct mig_hello local = { MIG_VERSION_MIN, MIG_VERSION_MAX, MIG_FEAT_ZSTD }, peer;
	uint8_t hello[MIG_HELLO_LEN], *payload = NULL, *cfg = NULL;
	struct mig_config c;
	uint64_t features;
	uint32_t version;
	size_t len = 0;
	int ret;

	/* Offered only when asked for: any other migration negotiates version 2 as before. */
	if (pc->p.policy == MIG_POLICY_POSTCOPY)
		local.features |= MIG_FEAT_POSTCOPY;
	mig_hello_encode(hello, &local);
	ret = mig_stream_send_msg(&pc->s, MIG_HELLO, hello, sizeof(hello));
	if (ret < 0)
		return fail(pc, ret, "sending HELLO: %s", strerror(-ret));
	ret = expect(pc, MIG_HELLO, 0, &payload, &len);
	if (ret < 0)
		return ret;
	ret = mig_hello_decode(payload, len, &peer);
	free(payload);
	if (ret < 0)
		return fail(pc, ret, "malformed HELLO from the destination");
	ret = mig_hello_agree(&local, &peer, &version, &features);
	if (ret < 0)
		return fail(pc, ret, "no common protocol version (we speak %u..%u, the destination %u..%u)",
			    local.min_version, local.max_version, peer.min_version, peer.max_version);
	pc->version = version;
	pc->s.version = version;
	if (pc->p.policy == MIG_POLICY_POSTCOPY && !(features & MIG_FEAT_POSTCOPY))
		return fail(pc, -EOPNOTSUPP, "the destination does not offer post-copy (no "
			    "userfaultfd there, or an older vmm): refused, the VM stays here");

	mig_config_init(&c);
	ret = mig_local_config(pc->m, &c);
	if (ret == 0)
		ret = mig_config_encode(&c, &cfg, &len);
	mig_config_free(&c);
	if (ret < 0)
		return fail(pc, ret, "encoding CONFIG: %s", strerror(-ret));
	ret = mig_stream_send_msg(&pc->s, MIG_CONFIG, cfg, len);
	free(cfg);
	if (ret < 0)
		return fail(pc, ret, "sending CONFIG: %s", strerror(-ret));
	ret = expect(pc, MIG_ACK, MIG_CONFIG, &payload, NULL);
	free(payload);
	return ret;
}

/* Send every page whose bit is set in pc->bm (clearing them). */
static int send_pages(struct precopy *pc, uint64_t deadline)
{
	uint64_t pos = 0;
	int ret;

	mig_pages_tx_round_begin(&pc->tx);
	for (;;) {
		struct mig_buf *ram, *zero;

		if (cancelled(pc))
			return fail(pc, -ECANCELED, "cancelled");
		if (deadline && mig_now_ns() > deadline)
			return fail(pc, -ETIMEDOUT, "overall migration timeout reached");
		ret = mig_stream_buf_get(&pc->s, MIG_HDR_LEN + MIG_RAM_HDR_LEN +
					 (size_t)pc->tx.batch * (8 + MIG_PAGE_SIZE), &ram);
		if (ret < 0)
			break;
		ret = mig_stream_buf_get(&pc->s, MIG_HDR_LEN + MIG_RAM_ZERO_MAX_LEN, &zero);
		if (ret < 0) {
			mig_stream_buf_release(&pc->s, ram);
			break;
		}
		ret = mig_pages_tx_next(&pc->tx, pc->bm, &pos, ram, zero);
		if (ret <= 0) {
			mig_stream_buf_release(&pc->s, ram);
			mig_stream_buf_release(&pc->s, zero);
			if (ret < 0)
				return fail(pc, ret, "reading guest pages: %s", strerror(-ret));
			return 0;
		}
		/* Zero runs first: a page in both (impossible in one call) would be harmless. */
		ret = mig_stream_buf_submit(&pc->s, zero);
		if (ret < 0) {
			mig_stream_buf_release(&pc->s, ram);
			break;
		}
		ret = mig_stream_buf_submit(&pc->s, ram);
		if (ret < 0)
			break;
		pthread_mutex_lock(&pc->m->lock);
		pc->m->st.bytes_wire = pc->s.bytes_sent;
		pc->m->st.pages_data = pc->tx.st.pages_data;
		pc->m->st.pages_zero = pc->tx.st.pages_zero;
		pc->m->st.bytes_raw = pc->tx.st.pages_data * MIG_PAGE_SIZE;
		pthread_mutex_unlock(&pc->m->lock);
	}
	if (cancelled(pc))
		return fail(pc, -ECANCELED, "cancelled");
	return fail(pc, ret, "sending pages: %s", strerror(-ret));
}

/*
 * @wait_applied (protocol ≥ 2): return only once the destination acknowledged the round, i.e.
 * applied every page of it. A completed send only means the bytes reached socket buffers,
 * which hold megabytes — with zstd tens of MiB of pages — that the destination may still be
 * decompressing and faulting in when we pause: that backlog was the 1–2.5 s zstd downtime.
 */
static int round_end(struct precopy *pc, uint32_t round, uint64_t pages, bool wait_applied)
{
	uint8_t b[MIG_ROUND_END_LEN], *payload = NULL;
	int ret;

	mig_round_end_encode(b, round, pages);
	ret = mig_stream_send_msg(&pc->s, MIG_ROUND_END, b, sizeof(b));
	if (ret == 0)
		ret = mig_stream_flush(&pc->s);
	if (ret < 0) {
		if (cancelled(pc))
			return fail(pc, -ECANCELED, "cancelled");
		return fail(pc, ret, "sending round %u: %s", round, strerror(-ret));
	}
	if (wait_applied && pc->version >= 2) {
		ret = expect(pc, MIG_ACK, MIG_ROUND_END, &payload, NULL);
		free(payload);
		if (ret < 0 && cancelled(pc))
			return fail(pc, -ECANCELED, "cancelled");
		return ret;
	}
	return 0;
}

static int iterate(struct precopy *pc)
{
	uint64_t t0 = mig_now_ns(), deadline = t0 + pc->p.timeout_ns;
	uint64_t last_sync = t0, prev_count = UINT64_MAX, bw = 0, page_rate = 0;
	uint32_t round = 0, slow_rounds = 0;
	int ret;

	for (;; round++) {
		uint64_t count = 0, remaining, now, t_round, wire0, data0, zero0, sent_pages, dt;

		ret = mig_dirty_sync(&pc->d, pc->bm, &count);
		if (ret < 0)
			return fail(pc, ret, "dirty log sync: %s", strerror(-ret));
		now = mig_now_ns();
		remaining = mig_bitmap_weight(pc->bm, pc->tx.npages);
		/* postcopy_after_rounds 0: nothing is pre-copied, every page comes after the switch */
		if (round == 0 && pc->p.policy == MIG_POLICY_POSTCOPY && !pc->p.postcopy_after_rounds)
			return 1;
		if (round > 0) {
			/*
			 * Every dirty page is costed as a data page at the rate data pages went
			 * out in the last rounds — copy, compression and the link together. An
			 * average over all pages sent would count round 0's free zero/hole pages
			 * and underestimate by orders of magnitude.
			 */
			uint64_t est = page_rate ? (uint64_t)((double)remaining * 1e9 /
							      (double)page_rate) : UINT64_MAX;

			pthread_mutex_lock(&pc->m->lock);
			pc->m->st.round = round;
			pc->m->st.remaining_bytes = remaining * MIG_PAGE_SIZE;
			pc->m->st.dirty_rate = now > last_sync ?
				(uint64_t)((double)count * MIG_PAGE_SIZE * 1e9 / (double)(now - last_sync)) : 0;
			pc->m->st.expected_downtime_ns = est;
			pthread_mutex_unlock(&pc->m->lock);
			log_info("round %u: %" PRIu64 " dirty pages (%" PRIu64 " KiB), bandwidth %.1f MiB/s,"
				 " expected downtime %.1f ms", round, remaining, remaining * 4,
				 (double)bw / 1048576.0, est == UINT64_MAX ? -1.0 : (double)est / 1e6);
			if (remaining == 0)
				return 0;
			/*
			 * Post-copy: after the rounds asked for, or as soon as a round did not shrink
			 * the dirty set (more rounds would not converge either).
			 */
			if (pc->p.policy == MIG_POLICY_POSTCOPY &&
			    (round >= pc->p.postcopy_after_rounds || count >= prev_count))
				return 1;
			if (est <= pc->p.downtime_ns)
				return 0;
			if (round >= pc->p.max_rounds) {
				log_warn("round %u: max rounds reached, stopping with %.1f ms expected "
					 "downtime", round, (double)est / 1e6);
				return 0;
			}
			/*
			 * Auto-converge. A round that shrank the dirty set by less than 10 % is not
			 * converging at all: throttle now. A round that shrank it by less than half is
			 * converging slowly: throttle after two of those in a row (QEMU's trigger, dirty
			 * bytes > 50 % of those sent, two periods), else a guest dirtying at about the
			 * link rate costs many long rounds for the same pause at the end.
			 */
			slow_rounds = count * 2 >= prev_count ? slow_rounds + 1 : 0;
			if (pc->p.policy == MIG_POLICY_MIN_DOWNTIME && round >= 2 &&
			    (count * 10 >= prev_count * 9 || slow_rounds >= 2)) {
				slow_rounds = 0;
				ret = throttle_raise(pc);
				if (ret < 0)
					return fail(pc, ret, "throttle thread: %s", strerror(-ret));
			}
		}
		last_sync = now;
		prev_count = count;
		t_round = mig_now_ns();
		wire0 = pc->s.bytes_sent;
		data0 = pc->tx.st.pages_data;
		zero0 = pc->tx.st.pages_zero;
		ret = send_pages(pc, deadline);
		if (ret < 0)
			return ret;
		sent_pages = pc->tx.st.pages_data - data0 + pc->tx.st.pages_zero - zero0;
		ret = round_end(pc, round, sent_pages, true);
		if (ret < 0)
			return ret;
		dt = mig_now_ns() - t_round;
		/* A round that moved little says little about the link: keep the old estimate. */
		if (pc->s.bytes_sent - wire0 >= (256u << 10) || !bw)
			bw = (uint64_t)((double)(pc->s.bytes_sent - wire0) * 1e9 /
					(double)(dt ? dt : 1));
		{
			uint64_t data = pc->tx.st.pages_data - data0;

			/* A round with few data pages says little: keep the old rate then. */
			if (data && (data >= 64 || !page_rate))
				page_rate = (uint64_t)((double)data * 1e9 / (double)(dt ? dt : 1));
		}
		pthread_mutex_lock(&pc->m->lock);
		pc->m->st.bandwidth = bw;
		pc->m->st.bytes_wire = pc->s.bytes_sent;
		pthread_mutex_unlock(&pc->m->lock);
		if (round == 0)
			log_info("round 0: %" PRIu64 " data + %" PRIu64 " zero pages, %.1f MiB on the wire"
				 " in %.0f ms", pc->tx.st.pages_data, pc->tx.st.pages_zero,
				 (double)pc->s.bytes_sent / 1048576.0, (double)dt / 1e6);
	}
}

/*
 * A memory sink that also times each section's save (the gap before its header is written:
 * state_save_all encodes a section, then writes header, name, id, body, crc), so the
 * stop-and-copy log names the sections that cost downtime.
 */
#define SLOWEST_N	3
struct timed_sink {
	struct state_sink sink;
	struct state_mem_sink mem;
	uint64_t t_last, gap, t_saved;
	unsigned int after_hdr;		/* 1: the next write is the section's name */
	unsigned int sections;
	char slow_name[SLOWEST_N][24];
	uint64_t slow_ns[SLOWEST_N];
};

static int timed_sink_write(struct state_sink *sk, const void *buf, size_t len)
{
	struct timed_sink *t = (struct timed_sink *)sk;
	const uint8_t *b = buf;
	uint64_t now = mig_now_ns();
	int ret;

	if (len == 24 && (b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24) == STATE_SECTION_MAGIC) {
		t->gap = now - t->t_last;
		t->after_hdr = 1;
		t->sections++;
	} else if (t->after_hdr) {
		unsigned int i, j;

		t->after_hdr = 0;
		for (i = 0; i < SLOWEST_N && t->slow_ns[i] >= t->gap; i++)
			;
		if (i < SLOWEST_N) {
			for (j = SLOWEST_N - 1; j > i; j--) {
				t->slow_ns[j] = t->slow_ns[j - 1];
				memcpy(t->slow_name[j], t->slow_name[j - 1], sizeof(t->slow_name[j]));
			}
			t->slow_ns[i] = t->gap;
			snprintf(t->slow_name[i], sizeof(t->slow_name[i]), "%.*s",
				 (int)(len < 23 ? len : 23), (const char *)buf);
		}
	}
	ret = t->mem.sink.write(&t->mem.sink, buf, len);
	t->t_last = mig_now_ns();
	return ret;
}

/* Downtime starts: throttle off, vCPUs paused, devices quiesced, the final dirty sync. */
static int pause_and_sync(struct precopy *pc, uint64_t *t_pause, uint64_t *t_paused)
{
	uint64_t count = 0;
	int ret;

	throttle_stop(pc);
	set_phase(pc, MIG_ST_STOPCOPY);
	*t_pause = mig_now_ns();
	ret = vm_pause(pc->vm);
	if (ret == 0)
		pc->paused_by_us = true;
	else if (ret != -EALREADY)
		return fail(pc, ret, "pausing the vCPUs: %s", strerror(-ret));
	*t_paused = mig_now_ns();
	ret = state_quiesce_all(pc->m->reg);
	if (ret < 0)
		return fail(pc, ret, "quiescing devices: %s", strerror(-ret));
	ret = mig_dirty_sync(&pc->d, pc->bm, &count);
	if (ret < 0)
		return fail(pc, ret, "final dirty sync: %s", strerror(-ret));
	return 0;
}

/* STATE (every section saved now, timed into @ts) and COMPLETE, flushed. */
static int send_state(struct precopy *pc, struct timed_sink *ts)
{
	int ret;

	state_mem_sink_init(&ts->mem);
	ts->t_last = mig_now_ns();
	ret = state_save_all(pc->m->reg, &ts->sink);
	if (ret < 0) {
		free(ts->mem.buf);
		return fail(pc, ret, "saving device state: %s", strerror(-ret));
	}
	ts->t_saved = mig_now_ns();
	ret = mig_stream_send_msg(&pc->s, MIG_STATE, ts->mem.buf, ts->mem.len);
	free(ts->mem.buf);
	ts->mem.buf = NULL;
	if (ret == 0)
		ret = mig_stream_send_msg(&pc->s, MIG_COMPLETE, NULL, 0);
	if (ret == 0)
		ret = mig_stream_flush(&pc->s);
	if (ret < 0)
		return fail(pc, ret, "sending state: %s", strerror(-ret));
	return 0;
}

static int stop_and_copy(struct precopy *pc, uint64_t *t_pause)
{
	struct timed_sink ts = { .sink.write = timed_sink_write };
	uint8_t *payload = NULL;
	uint64_t count = 0, pages0, t_paused, t_pages, t_saved, t_state, t_applied = 0;
	int ret;

	ret = pause_and_sync(pc, t_pause, &t_paused);
	if (ret < 0)
		return ret;
	pages0 = pc->tx.st.pages_data + pc->tx.st.pages_zero;
	ret = send_pages(pc, 0);
	if (ret < 0)
		return ret;
	/* Not waiting for this round's ACK here: the state is saved while the destination applies. */
	ret = round_end(pc, pc->m->st.round + 1, pc->tx.st.pages_data + pc->tx.st.pages_zero - pages0,
			false);
	if (ret < 0)
		return ret;
	t_pages = mig_now_ns();
	count = pc->tx.st.pages_data + pc->tx.st.pages_zero - pages0;

	ret = send_state(pc, &ts);
	if (ret < 0)
		return ret;
	t_saved = ts.t_saved;
	set_phase(pc, MIG_ST_COMPLETING);
	t_state = mig_now_ns();
	/* the destination loads state first */
	if (pc->s.timeout_ms < ACK_TIMEOUT_MS)
		pc->s.timeout_ms = ACK_TIMEOUT_MS;
	if (pc->version >= 2) {
		ret = expect(pc, MIG_ACK, MIG_ROUND_END, &payload, NULL);
		free(payload);
		payload = NULL;
		if (ret < 0)
			return ret;
		t_applied = mig_now_ns();
	}
	ret = expect(pc, MIG_ACK, MIG_COMPLETE, &payload, NULL);
	free(payload);
	if (ret == 0)
		log_info("stop-and-copy: state: %u sections, %zu KiB saved in %.2f ms, sent in %.2f ms;"
			 " slowest %s %.2f ms, %s %.2f ms, %s %.2f ms", ts.sections, ts.mem.len >> 10,
			 (double)(t_saved - t_pages) / 1e6, (double)(t_state - t_saved) / 1e6,
			 ts.slow_name[0], (double)ts.slow_ns[0] / 1e6, ts.slow_name[1],
			 (double)ts.slow_ns[1] / 1e6, ts.slow_name[2], (double)ts.slow_ns[2] / 1e6);
	if (ret == 0)
		log_info("stop-and-copy: pause %.2f ms, last %" PRIu64 " pages %.2f ms, state %.2f ms,"
			 " destination load+resume+ack %.2f ms (last pages applied after %.2f ms of it)",
			 (double)(t_paused - *t_pause) / 1e6,
			 count, (double)(t_pages - t_paused) / 1e6, (double)(t_state - t_pages) / 1e6,
			 (double)(mig_now_ns() - t_state) / 1e6,
			 t_applied ? (double)(t_applied - t_state) / 1e6 : -1.0);
	return ret;
}

/*
 * Post-copy switch-over: pause and sync as for stop-and-copy, then POSTCOPY_START (the pages
 * still dirty), STATE, COMPLETE, and serve pages until POSTCOPY_DONE (postcopy_src.c).
 * Downtime = pause → ACK(POSTCOPY_START), which the destination sends once its vCPUs run.
 */
static int postcopy(struct precopy *pc, uint64_t *t_pause)
{
	struct timed_sink ts = { .sink.write = timed_sink_write };
	uint64_t t_paused, t_sent;
	int ret;

	ret = pause_and_sync(pc, t_pause, &t_paused);
	if (ret < 0)
		return ret;
	pc->ps.m = pc->m;
	pc->ps.s = &pc->s;
	pc->ps.seq = &pc->seq;
	pc->ps.tx = &pc->tx;
	pc->ps.bm = pc->bm;
	pc->ps.t_pause = *t_pause;
	pc->ps.reply_timeout_ms = (int)(pc->s.timeout_ms > ACK_TIMEOUT_MS ? pc->s.timeout_ms :
					ACK_TIMEOUT_MS);
	ret = mig_pc_src_start(&pc->ps);
	if (ret == 0)
		ret = send_state(pc, &ts);
	if (ret < 0)
		return fail(pc, ret, "%s", pc->ps.err[0] ? pc->ps.err : strerror(-ret));
	t_sent = mig_now_ns();
	set_phase(pc, MIG_ST_POSTCOPY);
	if (pc->s.timeout_ms < ACK_TIMEOUT_MS)
		pc->s.timeout_ms = ACK_TIMEOUT_MS;	/* the destination loads state first */
	ret = mig_pc_src_serve(&pc->ps);
	if (ret < 0)
		return fail(pc, ret, "%s", pc->ps.err);
	log_info("post-copy: pause %.2f ms, state %u sections %zu KiB sent %.2f ms after it; "
		 "downtime %.2f ms; post-copy phase %.1f ms: %" PRIu64 " pages on demand, %" PRIu64
		 " streamed, %" PRIu64 " faults, fault latency median %.2f ms, max %.2f ms",
		 (double)(t_paused - *t_pause) / 1e6, ts.sections, ts.mem.len >> 10,
		 (double)(t_sent - t_paused) / 1e6, (double)(pc->ps.t_ack - *t_pause) / 1e6,
		 (double)(pc->ps.t_done - pc->ps.t_ack) / 1e6, pc->ps.done.on_demand,
		 pc->ps.done.streamed, pc->ps.done.faults, pc->ps.done.lat_median_us / 1e3,
		 pc->ps.done.lat_max_us / 1e3);
	return 0;
}

/* Loop thread: publish the end and, after success, stop this VM (the destination runs it). */
static void end_on_loop(void *opaque)
{
	struct mig_ctx *m = opaque;
	bool done;

	pthread_mutex_lock(&m->lock);
	m->end_pending = false;
	done = m->dead;
	pthread_mutex_unlock(&m->lock);
	if (done) {			/* mig_detach ran first: only the memory is left */
		pthread_mutex_destroy(&m->lock);
		free(m);
		return;
	}
	mig_report_end(m);
	pthread_mutex_lock(&m->lock);
	done = m->st.phase == MIG_ST_COMPLETED;
	pthread_mutex_unlock(&m->lock);
	if (done)
		vm_request_stop(m->vm, VM_STOP_POWEROFF, 0);
	else if (m->vm_lost)		/* post-copy failed after the switch-over */
		vm_request_stop(m->vm, VM_STOP_POSTCOPY_LOST, 0);
}

static void cleanup(struct precopy *pc, int ret)
{
	struct mig_ctx *m = pc->m;

	throttle_stop(pc);
	if (ret < 0) {
		/* Tell the destination why, if the connection still works (best effort). */
		if (pc->stream_ok && ret != -ECONNRESET && ret != -ETIMEDOUT && !pc->s.err) {
			uint8_t ab[8 + MIG_MAX_ABORT_MSG];
			size_t n = mig_abort_encode(ab, ret, pc->err);

			if (mig_stream_send_msg(&pc->s, MIG_ABORT, ab, n) == 0)
				mig_stream_flush(&pc->s);
		}
		if (pc->dirty_started)
			mig_dirty_stop(&pc->d);
		/* After ACK(POSTCOPY_START) the destination may have run the VM: never resume. */
		if (pc->paused_by_us && !pc->ps.acked)
			vm_resume(pc->vm);
	}
	pthread_mutex_lock(&m->lock);
	m->stream = NULL;
	pthread_mutex_unlock(&m->lock);
	if (pc->stream_ok)
		mig_stream_destroy(&pc->s);
	if (pc->tx_init)
		mig_pages_tx_destroy(&pc->tx);
	if (pc->dirty_init)
		mig_dirty_destroy(&pc->d);
	free(pc->bm);
}

static void *worker(void *arg)
{
	struct precopy *pc = arg;
	struct mig_ctx *m = pc->m;
	uint64_t t0, t_pause = 0, t_end;
	int fd = -1, ret;

	t0 = mig_now_ns();
	log_info("migrating to %s (downtime budget %" PRIu64 " ms, bandwidth %s, zstd level %d)",
		 pc->p.uri, pc->p.downtime_ns / 1000000,
		 pc->p.bandwidth ? "limited" : "unlimited", pc->p.zstd_level);
	ret = mig_tcp_connect(pc->p.uri, CONNECT_TIMEOUT_MS, &fd);
	if (ret < 0) {
		fail(pc, ret, "connecting to %s: %s", pc->p.uri, strerror(-ret));
		goto out;
	}
	ret = mig_stream_init(&pc->s, fd, MIG_STREAM_DEFAULT_DEPTH, (int)pc->p.stall_ms);
	if (ret < 0) {
		close(fd);
		fail(pc, ret, "stream: %s", strerror(-ret));
		goto out;
	}
	pc->stream_ok = true;
	mig_stream_set_bandwidth(&pc->s, pc->p.bandwidth);
	pthread_mutex_lock(&m->lock);
	m->stream = &pc->s;
	ret = m->cancel ? -ECANCELED : 0;
	pthread_mutex_unlock(&m->lock);
	if (ret < 0) {
		fail(pc, ret, "cancelled");
		goto out;
	}
	mig_seq_init(&pc->seq, MIG_ROLE_SOURCE);
	ret = handshake(pc);
	if (ret < 0)
		goto out;

	ret = mig_dirty_init(&pc->d, pc->vm->kvm.vm_fd, &pc->vm->mem, MIG_DIRTY_BITMAP, 0);
	if (ret < 0) {
		fail(pc, ret, "dirty tracking: %s", strerror(-ret));
		goto out;
	}
	pc->dirty_init = true;
	ret = mig_pages_tx_init(&pc->tx, &pc->vm->mem, pc->p.zstd_level, pc->p.batch_pages);
	if (ret < 0) {
		fail(pc, ret, "page sender: %s", strerror(-ret));
		goto out;
	}
	pc->tx_init = true;
	pc->bm = calloc((pc->tx.npages + 63) / 64, sizeof(uint64_t));
	if (!pc->bm) {
		ret = fail(pc, -ENOMEM, "out of memory");
		goto out;
	}
	ret = mig_dirty_start(&pc->d);
	if (ret < 0) {
		fail(pc, ret, "starting dirty logging: %s", strerror(-ret));
		goto out;
	}
	pc->dirty_started = true;
	pthread_mutex_lock(&m->lock);
	m->st.setup_ns = mig_now_ns() - t0;
	m->st.phase = MIG_ST_PRECOPY;
	pthread_mutex_unlock(&m->lock);

	ret = iterate(pc);
	if (ret < 0)
		goto out;
	ret = ret == 1 ? postcopy(pc, &t_pause) : stop_and_copy(pc, &t_pause);
out:
	t_end = mig_now_ns();
	if (ret < 0 && ret != -ECANCELED && cancelled(pc)) {
		/* Whatever failed, it failed because the cancel shut the connection down. */
		ret = -ECANCELED;
		snprintf(pc->err, sizeof(pc->err), "cancelled");
	}
	if (ret < 0 && !pc->err[0])
		fail(pc, ret, "%s", strerror(-ret));
	cleanup(pc, ret);
	pthread_mutex_lock(&m->lock);
	m->st.total_ns = t_end - t0;
	if (ret == 0) {
		m->st.phase = MIG_ST_COMPLETED;
		m->st.downtime_ns = (pc->ps.acked ? pc->ps.t_ack : t_end) - t_pause;
		m->st.remaining_bytes = 0;
		m->st.bytes_wire = pc->s.bytes_sent ? pc->s.bytes_sent : m->st.bytes_wire;
	} else {
		m->st.phase = ret == -ECANCELED ? MIG_ST_CANCELLED : MIG_ST_FAILED;
		snprintf(m->st.error, sizeof(m->st.error), "%s", pc->err);
		m->vm_lost = pc->ps.acked;
	}
	m->worker_running = false;
	m->end_pending = true;
	pthread_mutex_unlock(&m->lock);
	if (ret == 0)
		log_info("migration completed: total %.1f ms, downtime %.1f ms, setup %.1f ms, "
			 "%" PRIu64 " rounds, %.1f MiB on the wire", (double)m->st.total_ns / 1e6,
			 (double)m->st.downtime_ns / 1e6, (double)m->st.setup_ns / 1e6,
			 (uint64_t)m->st.round + 1, (double)m->st.bytes_wire / 1048576.0);
	else if (pc->ps.acked)
		log_err("post-copy failed after switch-over, the VM is lost (not resumed here): %s",
			pc->err);
	else
		log_err("migration failed, the VM keeps running here: %s", pc->err);
	evloop_post(m->loop, end_on_loop, m);
	free(pc);
	return NULL;
}

int mig_precopy_start(struct mig_ctx *m, const struct mig_params *p)
{
	struct precopy *pc;
	int ret;

	pthread_mutex_lock(&m->lock);
	if (m->worker_running) {
		pthread_mutex_unlock(&m->lock);
		return -EBUSY;
	}
	pthread_mutex_unlock(&m->lock);
	if (m->worker_joinable) {
		pthread_join(m->worker, NULL);
		m->worker_joinable = false;
	}
	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	pc->m = m;
	pc->vm = m->vm;
	pc->p = *p;
	pthread_mutex_lock(&m->lock);
	memset(&m->st, 0, sizeof(m->st));
	m->st.phase = MIG_ST_SETUP;
	m->st.start_ns = mig_now_ns();
	m->params = *p;
	m->cancel = false;
	m->worker_running = true;
	pthread_mutex_unlock(&m->lock);
	ret = pthread_create(&m->worker, NULL, worker, pc);
	if (ret) {
		pthread_mutex_lock(&m->lock);
		m->worker_running = false;
		m->st.phase = MIG_ST_FAILED;
		pthread_mutex_unlock(&m->lock);
		free(pc);
		return -ret;
	}
	pthread_setname_np(m->worker, "migrate");
	m->worker_joinable = true;
	return 0;
}

int mig_precopy_cancel(struct mig_ctx *m)
{
	int ret = 0;

	pthread_mutex_lock(&m->lock);
	if (!m->worker_running || m->st.phase == MIG_ST_COMPLETING ||
	    m->st.phase == MIG_ST_POSTCOPY) {
		/* After COMPLETE went out the destination may already run the VM: too late. */
		ret = m->worker_running ? -EBUSY : -ENOENT;
	} else {
		m->cancel = true;
		if (m->stream)
			mig_stream_shutdown(m->stream);
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}
