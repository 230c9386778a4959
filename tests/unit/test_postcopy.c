// SPDX-License-Identifier: MIT
/*
 * Post-copy (migrate/postcopy.h): the pure helpers (pending bitmap, median), and the whole
 * data path in one process without KVM — a source (postcopy_src.c serving from a memfd
 * "guest RAM" filled with a pattern) and a destination (postcopy_dst.c on a second memfd
 * under real userfaultfd) joined by a socketpair, with "vCPU" threads reading and writing
 * missing pages on the destination while the background stream runs. Then the loss rules:
 * source gone after ACK(POSTCOPY_START) → the process exits 8; after the state was taken but
 * before the ACK → exits 1; before COMPLETE → wait_complete fails and nothing exits.
 * The userfaultfd parts skip without userfaultfd (non-root, vm.unprivileged_userfaultfd = 0).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "migrate/dirty.h"
#include "migrate/migration.h"
#include "migrate/pages.h"
#include "migrate/postcopy.h"
#include "migrate/proto.h"
#include "migrate/sockmsg.h"
#include "migrate/stream.h"
#include "migrate/uffd.h"
#include "vmm/vm.h"

#define MEM	(8u << 20)
#define NPAGES	(MEM / 4096)

/* ---- pure helpers ---- */

static void test_bits_clear(void **state)
{
	uint64_t bm[4] = { ~0ull, ~0ull, 0x5, 0 };

	assert_true(mig_pc_bit_test(bm, 0));
	assert_int_equal(mig_pc_bits_clear(bm, 3, 1), 1);
	assert_false(mig_pc_bit_test(bm, 3));
	assert_int_equal(mig_pc_bits_clear(bm, 3, 1), 0);	/* twice: counted once */
	/* across words, 60..131: bits 60..63 (4), 64..127 (64), 128 and 130 (2) */
	assert_int_equal(mig_pc_bits_clear(bm, 60, 72), 4 + 64 + 2);
	assert_int_equal(bm[0], ~0ull >> 4 & ~(1ull << 3));
	assert_int_equal(bm[1], 0);
	assert_int_equal(bm[2], 0);
	assert_int_equal(mig_pc_bits_clear(bm, 0, 256), 59);
	assert_int_equal(mig_pc_bits_clear(bm, 200, 0), 0);
}

static void test_median(void **state)
{
	uint32_t a[] = { 9, 1, 5 }, b[] = { 4, 1, 3, 10 }, c[] = { 7 };

	assert_int_equal(mig_pc_median(NULL, 0), 0);
	assert_int_equal(mig_pc_median(a, 3), 5);
	assert_int_equal(mig_pc_median(b, 4), 3);	/* (3 + 4) / 2 */
	assert_int_equal(mig_pc_median(c, 1), 7);
}

/* ---- sockmsg: whole messages through small socket buffers ---- */

struct sender {
	int fd;
	uint8_t *buf;
	size_t len;
	int ret;
};

static void *send_big(void *arg)
{
	struct sender *s = arg;

	s->ret = mig_sock_send_msg(s->fd, MIG_PAGE_URGENT, s->buf, s->len, 5000);
	if (s->ret == 0)
		s->ret = mig_sock_send_msg(s->fd, MIG_COMPLETE, NULL, 0, 5000);
	return NULL;
}

static void test_sockmsg(void **state)
{
	int sv[2], small = 4096;
	struct sender s = { .len = MIG_RAM_HDR_LEN + 64 * (8 + 4096) };
	struct mig_hdr h;
	uint8_t *p = NULL, raw[MIG_HDR_LEN];
	uint64_t bytes = 0;
	pthread_t t;
	size_t i;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	s.fd = sv[0];
	s.buf = malloc(s.len);
	assert_non_null(s.buf);
	for (i = 0; i < s.len; i++)
		s.buf[i] = (uint8_t)(i * 7);
	assert_int_equal(pthread_create(&t, NULL, send_big, &s), 0);
	/* many partial sends and receives: the message arrives whole */
	assert_int_equal(mig_sock_recv_msg(sv[1], MIG_VERSION_POSTCOPY, 5000, &h, &p, &bytes), 0);
	assert_int_equal(h.cmd, MIG_PAGE_URGENT);
	assert_int_equal(h.len, s.len);
	assert_memory_equal(p, s.buf, s.len);
	free(p);
	assert_int_equal(mig_sock_recv_msg(sv[1], MIG_VERSION_POSTCOPY, 5000, &h, &p, &bytes), 0);
	assert_int_equal(h.cmd, MIG_COMPLETE);
	assert_null(p);
	pthread_join(t, NULL);
	assert_int_equal(s.ret, 0);
	assert_int_equal(bytes, 2 * MIG_HDR_LEN + s.len);
	/* nothing comes: bounded wait */
	assert_int_equal(mig_sock_recv_msg(sv[1], MIG_VERSION_POSTCOPY, 100, &h, &p, &bytes),
			 -ETIMEDOUT);
	/* a post-copy command at version 2 is refused before any payload is read */
	mig_hdr_encode(raw, MIG_PAGE_REQ, 0, 16);
	assert_int_equal(write(sv[0], raw, sizeof(raw)), (ssize_t)sizeof(raw));
	assert_int_equal(mig_sock_recv_msg(sv[1], 2, 1000, &h, &p, &bytes), -EPROTO);
	/* the peer closes mid-message */
	mig_hdr_encode(raw, MIG_PAGE_REQ, 0, 16);
	assert_int_equal(write(sv[0], raw, sizeof(raw)), (ssize_t)sizeof(raw));
	assert_int_equal(write(sv[0], raw, 4), 4);
	close(sv[0]);
	assert_int_equal(mig_sock_recv_msg(sv[1], 3, 1000, &h, &p, &bytes), -ECONNRESET);
	assert_int_equal(mig_sock_send_msg(sv[1], MIG_ACK, raw, 8, 1000) < 0, 1);	/* EPIPE */
	close(sv[1]);
	free(s.buf);
}

/* ---- the data path ---- */

struct side {
	struct vm *vm;			/* only ->mem (and the stop handshake) is used */
	struct mig_ctx m;
	struct mig_stream s;
	struct mig_seq seq;
};

static uint8_t pattern(uint64_t pfn, unsigned int i)
{
	return (uint8_t)(pfn * 131 + i * 7 + 1);
}

static void side_init(struct side *sd, int fd, enum mig_role role, bool fill)
{
	uint64_t pfn;

	memset(sd, 0, sizeof(*sd));
	sd->vm = calloc(1, sizeof(*sd->vm));
	assert_non_null(sd->vm);
	pthread_mutex_init(&sd->vm->lock, NULL);
	pthread_cond_init(&sd->vm->cond, NULL);
	sd->vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_int_equal(guest_mem_init(&sd->vm->mem, MEM), 0);
	/* Every 8th page stays a hole (never touched), every 5th is zero, the rest a pattern. */
	for (pfn = 0; fill && pfn < NPAGES; pfn++) {
		uint8_t *p = (uint8_t *)sd->vm->mem.base + pfn * 4096;

		if (pfn % 8 == 0 || pfn % 5 == 0)
			continue;
		for (unsigned int i = 0; i < 4096; i++)
			p[i] = pattern(pfn, i);
	}
	sd->m.vm = sd->vm;
	pthread_mutex_init(&sd->m.lock, NULL);
	assert_int_equal(mig_stream_init(&sd->s, fd, 8, 10000), 0);
	sd->s.version = MIG_VERSION_POSTCOPY;
	mig_seq_init(&sd->seq, role);
	/* HELLO and CONFIG done: into the RAM phase */
	assert_int_equal(mig_seq_accept(&sd->seq, MIG_HELLO, 0), 0);
	if (role == MIG_ROLE_DEST)
		assert_int_equal(mig_seq_accept(&sd->seq, MIG_CONFIG, 0), 0);
	else
		assert_int_equal(mig_seq_accept(&sd->seq, MIG_ACK, MIG_CONFIG), 0);
}

static void side_destroy(struct side *sd)
{
	mig_stream_destroy(&sd->s);
	guest_mem_destroy(&sd->vm->mem);
	pthread_mutex_destroy(&sd->m.lock);
	close(sd->vm->stop_fd);
	free(sd->vm);
}

struct src_run {
	struct side *sd;
	struct mig_pages_tx tx;
	uint64_t *bm;
	struct mig_pc_src ps;
	int ret;
	bool serve;			/* false: only START, STATE, COMPLETE */
};

/* An empty but valid state stream (no sections). */
static void send_state(struct mig_stream *s)
{
	struct state_registry reg = { 0 };
	struct state_mem_sink ms;

	state_mem_sink_init(&ms);
	assert_int_equal(state_save_all(&reg, &ms.sink), 0);
	assert_int_equal(mig_stream_send_msg(s, MIG_STATE, ms.buf, ms.len), 0);
	free(ms.buf);
	assert_int_equal(mig_stream_send_msg(s, MIG_COMPLETE, NULL, 0), 0);
	assert_int_equal(mig_stream_flush(s), 0);
}

static void *src_thread(void *arg)
{
	struct src_run *r = arg;

	r->ret = mig_pc_src_start(&r->ps);
	if (r->ret == 0)
		send_state(&r->sd->s);
	if (r->ret == 0 && r->serve)
		r->ret = mig_pc_src_serve(&r->ps);
	return NULL;
}

static void src_prepare(struct src_run *r, struct side *src, struct side *dst, bool serve)
{
	uint64_t pfn;

	memset(r, 0, sizeof(*r));
	r->sd = src;
	r->serve = serve;
	assert_int_equal(mig_pages_tx_init(&r->tx, &src->vm->mem, 0, 64), 0);
	r->bm = calloc(NPAGES / 64, sizeof(uint64_t));
	assert_non_null(r->bm);
	/* "pre-copied": the first quarter is on the destination already; the rest is pending */
	for (pfn = 0; pfn < NPAGES; pfn++) {
		if (pfn < NPAGES / 4)
			memcpy((uint8_t *)dst->vm->mem.base + pfn * 4096,
			       (uint8_t *)src->vm->mem.base + pfn * 4096, 4096);
		else
			r->bm[pfn / 64] |= 1ull << (pfn % 64);
	}
	r->ps.m = &src->m;
	r->ps.s = &src->s;
	r->ps.seq = &src->seq;
	r->ps.tx = &r->tx;
	r->ps.bm = r->bm;
	r->ps.reply_timeout_ms = 10000;
}

static void src_free(struct src_run *r)
{
	mig_pages_tx_destroy(&r->tx);
	free(r->bm);
}

/* The destination up to a running VM: POSTCOPY_START → begin → wait_complete. */
static struct mig_pc_dst *dst_begin(struct side *dst)
{
	struct mig_pc_dst *pc = NULL;
	struct mig_hdr h;
	uint8_t *p = NULL, *st = NULL;
	size_t stlen = 0;
	char why[300] = "";

	assert_int_equal(mig_stream_recv_msg(&dst->s, &h, &p), 0);
	assert_int_equal(h.cmd, MIG_POSTCOPY_START);
	assert_int_equal(mig_seq_accept(&dst->seq, h.cmd, 0), 0);
	assert_int_equal(mig_pc_dst_begin(&dst->m, &dst->s, &dst->seq, p, h.len, &pc, why,
					  sizeof(why)), 0);
	free(p);
	assert_int_equal(mig_pc_dst_wait_complete(pc, &st, &stlen, why, sizeof(why)), 0);
	assert_non_null(st);
	free(st);
	return pc;
}

struct vcpu_run {
	struct side *src, *dst;
	unsigned int seed;
	unsigned int bad;
};

/* A "vCPU": reads pages in a scattered order (each may fault), writes a few. */
static void *vcpu_thread(void *arg)
{
	struct vcpu_run *v = arg;
	unsigned int i;

	for (i = 0; i < 600; i++) {
		uint64_t pfn = (uint64_t)rand_r(&v->seed) % NPAGES;
		const uint8_t *d = (const uint8_t *)v->dst->vm->mem.base + pfn * 4096;
		const uint8_t *s = (const uint8_t *)v->src->vm->mem.base + pfn * 4096;

		if (pfn % 97 == 1)
			continue;	/* written below by the other thread: not comparable */
		if (memcmp(d, s, 4096))
			v->bad++;
	}
	return NULL;
}

static void *writer_thread(void *arg)
{
	struct vcpu_run *v = arg;
	uint64_t pfn;

	/* A guest write to a missing page: it must arrive first, then the write wins. */
	for (pfn = 1; pfn < NPAGES; pfn += 97) {
		uint8_t *d = (uint8_t *)v->dst->vm->mem.base + pfn * 4096;

		if (pfn > NPAGES / 2)
			d[100] ^= 0xff;
	}
	return NULL;
}

/* @bw: the source's bandwidth limit (0 = none): slow, the vCPUs' faults are answered urgently. */
static void end_to_end(uint64_t bw)
{
	struct side src, dst;
	struct src_run r;
	struct vcpu_run v[2];
	pthread_t st, vt[2], wt;
	struct mig_pc_dst *pc;
	uint64_t pfn;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	side_init(&src, sv[0], MIG_ROLE_SOURCE, true);
	side_init(&dst, sv[1], MIG_ROLE_DEST, false);
	src_prepare(&r, &src, &dst, true);
	mig_stream_set_bandwidth(&src.s, bw);
	assert_int_equal(pthread_create(&st, NULL, src_thread, &r), 0);
	pc = dst_begin(&dst);
	/* the vCPUs run before any pending page arrived (and the ACK is not out yet) */
	for (int i = 0; i < 2; i++) {
		v[i] = (struct vcpu_run){ &src, &dst, 1234u + (unsigned int)i, 0 };
		assert_int_equal(pthread_create(&vt[i], NULL, vcpu_thread, &v[i]), 0);
	}
	assert_int_equal(pthread_create(&wt, NULL, writer_thread, &v[0]), 0);
	assert_int_equal(mig_pc_dst_ack(pc), 0);
	pthread_join(st, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(vt[i], NULL);
	pthread_join(wt, NULL);
	assert_int_equal(r.ret, 0);
	assert_true(r.ps.acked);
	assert_int_equal(r.ps.pending, NPAGES - NPAGES / 4);
	assert_int_equal(r.ps.done.on_demand + r.ps.done.streamed, r.ps.pending);
	assert_true(r.ps.done.lat_max_us >= r.ps.done.lat_median_us);
	assert_int_equal(v[0].bad + v[1].bad, 0);
	if (bw) {	/* 6 MiB at 4 MiB/s: the vCPUs' first reads come long before the stream */
		assert_true(r.ps.done.on_demand > 0);
		assert_true(r.ps.done.faults > 0);
		assert_true(r.ps.pages_urgent >= r.ps.done.on_demand);
	}
	mig_pc_dst_destroy(pc);
	/* Every page is the source's, except the guest's own writes on top of arrived pages. */
	for (pfn = 0; pfn < NPAGES; pfn++) {
		uint8_t *d = (uint8_t *)dst.vm->mem.base + pfn * 4096;
		const uint8_t *s = (const uint8_t *)src.vm->mem.base + pfn * 4096;

		if (pfn > NPAGES / 2 && pfn % 97 == 1) {
			assert_int_equal(d[100], s[100] ^ 0xff);
			d[100] ^= 0xff;
		}
		assert_memory_equal(d, s, 4096);
	}
	src_free(&r);
	side_destroy(&src);
	side_destroy(&dst);
}

static void test_postcopy_end_to_end(void **state)
{
	char why[160];

	if (uffd_probe(why, sizeof(why)) < 0)
		skip();
	end_to_end(0);
}

static void test_postcopy_on_demand(void **state)
{
	char why[160];

	if (uffd_probe(why, sizeof(why)) < 0)
		skip();
	end_to_end(4u << 20);
}

/*
 * Loss, in a child process (the destination ends the process itself): the source sends
 * START, STATE, COMPLETE and then vanishes at @when. Returns the child's exit status.
 */
enum when { BEFORE_COMPLETE, AFTER_STATE_TAKEN, AFTER_ACK };

static int lost_child(enum when when)
{
	struct side src, dst;
	struct src_run r;
	struct mig_pc_dst *pc = NULL;
	pid_t pid;
	int sv[2], status;

	pid = fork();
	if (pid < 0)
		return -1;
	if (pid) {
		if (waitpid(pid, &status, 0) < 0)
			return -1;
		return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		_exit(100);
	side_init(&src, sv[0], MIG_ROLE_SOURCE, true);
	side_init(&dst, sv[1], MIG_ROLE_DEST, false);
	src_prepare(&r, &src, &dst, false);
	if (when == BEFORE_COMPLETE) {
		struct mig_hdr h;
		uint8_t *p = NULL, *st = NULL;
		size_t stlen;
		char why[300];

		/* POSTCOPY_START only, then the source is gone */
		if (mig_pc_src_start(&r.ps) || mig_stream_flush(&src.s))
			_exit(101);
		if (mig_stream_recv_msg(&dst.s, &h, &p) || mig_seq_accept(&dst.seq, h.cmd, 0) ||
		    mig_pc_dst_begin(&dst.m, &dst.s, &dst.seq, p, h.len, &pc, why, sizeof(why)))
			_exit(102);
		free(p);
		shutdown(sv[0], SHUT_RDWR);
		if (mig_pc_dst_wait_complete(pc, &st, &stlen, why, sizeof(why)) == 0)
			_exit(103);
		mig_pc_dst_destroy(pc);
		_exit(42);		/* a clean failure: the caller reports it, nothing ran */
	}
	src_thread(&r);
	if (r.ret)
		_exit(104);
	pc = dst_begin(&dst);
	if (when == AFTER_ACK)
		mig_pc_dst_ack(pc);
	shutdown(sv[0], SHUT_RDWR);
	sleep(10);			/* the receiver ends the process first */
	_exit(105);
}

static void test_postcopy_source_lost(void **state)
{
	char why[160];

	if (uffd_probe(why, sizeof(why)) < 0)
		skip();
	assert_int_equal(lost_child(AFTER_ACK), VM_EXIT_POSTCOPY_LOST);
	assert_int_equal(lost_child(AFTER_STATE_TAKEN), VM_EXIT_STARTUP);
	assert_int_equal(lost_child(BEFORE_COMPLETE), 42);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bits_clear),
		cmocka_unit_test(test_median),
		cmocka_unit_test(test_sockmsg),
		cmocka_unit_test(test_postcopy_end_to_end),
		cmocka_unit_test(test_postcopy_on_demand),
		cmocka_unit_test(test_postcopy_source_lost),
	};

	return cmocka_run_group_tests_name("postcopy", tests, NULL, NULL);
}
