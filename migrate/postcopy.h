/* SPDX-License-Identifier: MIT */
/*
 * Post-copy migration (opt-in policy "post-copy"; protocol version 3, sequence and failure
 * rules in docs/migration-protocol.md "Post-copy"):
 *
 *   source (postcopy_src.c)       after the pre-copy rounds precopy.c pauses the vCPUs and
 *                                 syncs; here POSTCOPY_START carries the bitmap of pages the
 *                                 destination lacks; precopy.c sends STATE and COMPLETE; then
 *                                 mig_pc_src_serve() answers PAGE_REQs first and streams the
 *                                 rest until POSTCOPY_DONE. One thread (the migration worker).
 *   destination (postcopy_dst.c)  at POSTCOPY_START: the missing pages dropped, guest RAM
 *                                 registered with userfaultfd (MISSING), a receiver thread and
 *                                 a fault thread started — before the state load, which may
 *                                 itself touch guest RAM. The vCPUs resume at once; every
 *                                 missing page a vCPU or the vmm touches is requested, the
 *                                 toucher blocks until UFFDIO_COPY installs it.
 *
 * No thread that installs pages ever touches guest RAM through the mapping, and neither takes
 * a lock a faulting thread could hold (the send lock is never held across guest RAM
 * accesses), so a missing page cannot deadlock the fault handling.
 */
#ifndef MIGRATE_POSTCOPY_H
#define MIGRATE_POSTCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrate/postcopy_proto.h"

struct mig_ctx;
struct mig_stream;
struct mig_seq;
struct mig_pages_tx;

/* ---- source ---- */

struct mig_pc_src {
	/* set by the caller */
	struct mig_ctx *m;		/* status (under m->lock) */
	struct mig_stream *s;
	struct mig_seq *seq;
	struct mig_pages_tx *tx;	/* the background stream's batches */
	uint64_t *bm;			/* pages the destination still lacks; consumed */
	int reply_timeout_ms;		/* silence from the destination that fails the migration */
	uint64_t t_pause;		/* when the vCPUs were paused (downtime starts) */
	/* results */
	uint64_t pending;		/* pages in POSTCOPY_START */
	bool acked;			/* ACK(POSTCOPY_START) received: never resume after it */
	uint64_t t_ack, t_done;
	uint64_t pages_urgent, requests;
	struct mig_pc_done done;	/* the destination's figures */
	char err[256];
};

/* Send POSTCOPY_START with ps->bm (vCPUs paused, final dirty sync done). 0 or -errno (err set). */
int mig_pc_src_start(struct mig_pc_src *ps);
/*
 * After COMPLETE: answer PAGE_REQ with PAGE_URGENT ahead of the background stream of every
 * page still in ps->bm, until POSTCOPY_DONE. 0, or -errno with ps->err; ps->acked says
 * whether the destination may already run the VM (then the VM is lost, not resumable).
 */
int mig_pc_src_serve(struct mig_pc_src *ps);

/* ---- destination ---- */

struct mig_pc_dst;

/*
 * At POSTCOPY_START (payload @p, @len; already accepted by @seq): drop the pages still to
 * come from the memfd, register guest RAM with userfaultfd, start the receiver and fault
 * threads. From here the socket of @s is read by the receiver only (@s stays the caller's).
 * 0, or -errno with a reason in @why (nothing left running).
 */
int  mig_pc_dst_begin(struct mig_ctx *m, struct mig_stream *s, const struct mig_seq *seq,
		      const uint8_t *p, size_t len, struct mig_pc_dst **out, char *why,
		      size_t whylen);
/* Wait for STATE (verified) and COMPLETE: *state is malloc'ed (free it). 0 or -errno + @why. */
int  mig_pc_dst_wait_complete(struct mig_pc_dst *pc, uint8_t **state, size_t *len, char *why,
			      size_t whylen);
/*
 * Main thread, vCPUs running: ACK(POSTCOPY_START). From the moment this is called a lost
 * source loses the VM (the receiver logs it and the process exits VM_EXIT_POSTCOPY_LOST).
 */
int  mig_pc_dst_ack(struct mig_pc_dst *pc);
/* Stop the threads, unregister guest RAM, free. Before vm_destroy (mig_detach). */
void mig_pc_dst_destroy(struct mig_pc_dst *pc);

/*
 * Pure helpers (tests/unit/test_postcopy.c): the destination's bitmap of pages still to
 * come, cleared as pages are installed; and the fault-latency figures.
 */
/* Clear bits [pfn, pfn + n) of @bm atomically; returns how many were set. Any thread. */
uint64_t mig_pc_bits_clear(uint64_t *bm, uint64_t pfn, uint64_t n);
bool     mig_pc_bit_test(const uint64_t *bm, uint64_t pfn);
/* Median of @n samples (sorted in place); 0 if n == 0. */
uint32_t mig_pc_median(uint32_t *v, size_t n);

#endif
