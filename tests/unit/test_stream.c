// SPDX-License-Identifier: MIT
/*
 * migrate/stream: framed messages over a socket through io_uring. A reader thread on the
 * other end of a socketpair (small socket buffers, reading in odd-sized pieces) checks that
 * many messages sent with several in flight arrive complete and in order; plus receive
 * framing and header checks, peer close, the no-progress timeout, shutdown from another
 * thread, and the bandwidth limit.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate/proto.h"
#include "migrate/stream.h"

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void pair(int sv[2], int sndbuf)
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	if (sndbuf) {
		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));
	}
}

#define NMSG	300

struct reader {
	int fd;
	int bad;		/* first message index that was wrong + 1 */
	uint64_t bytes;
};

static int read_exact(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t chunk = 1;

	while (len) {
		/* odd-sized reads, growing: the writer sees short sends and full buffers */
		size_t n = chunk < len ? chunk : len;
		ssize_t r = read(fd, p, n);

		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
		chunk = chunk * 3 + 1;
		if (chunk > 70000)
			chunk = 7;
	}
	return 0;
}

/* Message i: RAM command, payload of (i * 997) % 200000 + 17 bytes, byte k = (i + k) & 0xff. */
static size_t msg_len(unsigned int i)
{
	return (size_t)(i * 997u) % 200000 + 17;	/* RAM payloads are ≥ 17 bytes */
}

static void *reader_thread(void *arg)
{
	struct reader *rd = arg;
	uint8_t *buf = malloc(200017);
	unsigned int i;

	for (i = 0; i < NMSG && buf; i++) {
		uint8_t raw[MIG_HDR_LEN];
		struct mig_hdr h;
		size_t k;

		if (read_exact(rd->fd, raw, sizeof(raw)) || mig_hdr_decode(raw, &h) ||
		    h.cmd != MIG_RAM || h.len != msg_len(i) || read_exact(rd->fd, buf, h.len)) {
			rd->bad = (int)i + 1;
			break;
		}
		for (k = 0; k < h.len; k++)
			if (buf[k] != (uint8_t)(i + k)) {
				rd->bad = (int)i + 1;
				goto out;
			}
		rd->bytes += MIG_HDR_LEN + h.len;
	}
out:
	free(buf);
	return NULL;
}

static void test_many_in_flight_in_order(void **state)
{
	struct mig_stream s;
	struct reader rd = { 0 };
	pthread_t t;
	uint64_t total = 0;
	unsigned int i;
	int sv[2];

	pair(sv, 8192);
	rd.fd = sv[1];
	assert_int_equal(mig_stream_init(&s, sv[0], 8, 10000), 0);
	assert_int_equal(pthread_create(&t, NULL, reader_thread, &rd), 0);
	for (i = 0; i < NMSG; i++) {
		struct mig_buf *b;
		size_t k, len = msg_len(i);

		assert_int_equal(mig_stream_buf_get(&s, MIG_HDR_LEN + len, &b), 0);
		mig_hdr_encode(b->data, MIG_RAM, 0, len);
		for (k = 0; k < len; k++)
			b->data[MIG_HDR_LEN + k] = (uint8_t)(i + k);
		b->len = MIG_HDR_LEN + len;
		assert_int_equal(mig_stream_buf_submit(&s, b), 0);
		total += MIG_HDR_LEN + len;
	}
	assert_int_equal(mig_stream_flush(&s), 0);
	pthread_join(t, NULL);
	assert_int_equal(rd.bad, 0);
	assert_int_equal(rd.bytes, total);
	assert_int_equal(s.bytes_sent, total);
	/* several buffers did go out per chain (pipelining), not one at a time */
	assert_true(s.chains < NMSG);
	mig_stream_destroy(&s);
	close(sv[1]);
}

static void test_recv_framing_and_header_checks(void **state)
{
	struct mig_stream s;
	struct mig_hdr h;
	uint8_t raw[MIG_HDR_LEN + 8], *p;
	int sv[2];

	pair(sv, 0);
	assert_int_equal(mig_stream_init(&s, sv[1], 2, 2000), 0);
	/* a message in three writes */
	mig_hdr_encode(raw, MIG_ACK, 0, MIG_ACK_LEN);
	mig_ack_encode(raw + MIG_HDR_LEN, MIG_CONFIG);
	assert_int_equal(write(sv[0], raw, 5), 5);
	assert_int_equal(write(sv[0], raw + 5, 13), 13);
	assert_int_equal(write(sv[0], raw + 18, sizeof(raw) - 18), (ssize_t)sizeof(raw) - 18);
	assert_int_equal(mig_stream_recv_msg(&s, &h, &p), 0);
	assert_int_equal(h.cmd, MIG_ACK);
	assert_int_equal(h.len, MIG_ACK_LEN);
	assert_memory_equal(p, raw + MIG_HDR_LEN, MIG_ACK_LEN);
	free(p);
	/* an oversize length is refused from the header alone, before any allocation */
	mig_hdr_encode(raw, MIG_RAM, 0, 1ull << 40);
	assert_int_equal(write(sv[0], raw, MIG_HDR_LEN), MIG_HDR_LEN);
	assert_int_equal(mig_stream_recv_msg(&s, &h, &p), -E2BIG);
	assert_null(p);
	/* bad magic */
	mig_hdr_encode(raw, MIG_ACK, 0, MIG_ACK_LEN);
	raw[0] ^= 1;
	assert_int_equal(write(sv[0], raw, MIG_HDR_LEN), MIG_HDR_LEN);
	assert_int_equal(mig_stream_recv_msg(&s, &h, &p), -EBADMSG);
	/* the peer closes mid-message */
	mig_hdr_encode(raw, MIG_ACK, 0, MIG_ACK_LEN);
	assert_int_equal(write(sv[0], raw, MIG_HDR_LEN + 3), MIG_HDR_LEN + 3);
	close(sv[0]);
	assert_int_equal(mig_stream_recv_msg(&s, &h, &p), -ECONNRESET);
	mig_stream_destroy(&s);
}

static void test_send_to_closed_peer_fails(void **state)
{
	struct mig_stream s;
	uint8_t big[65536] = { 0 };
	int sv[2], i, ret = 0;

	pair(sv, 0);
	assert_int_equal(mig_stream_init(&s, sv[0], 4, 2000), 0);
	close(sv[1]);
	for (i = 0; i < 10 && ret == 0; i++)
		ret = mig_stream_send_msg(&s, MIG_RAM, big, sizeof(big));
	if (ret == 0)
		ret = mig_stream_flush(&s);
	assert_int_equal(ret, -ECONNRESET);
	/* sticky: later calls fail at once */
	assert_int_equal(mig_stream_send_msg(&s, MIG_ACK, big, MIG_ACK_LEN), -ECONNRESET);
	mig_stream_destroy(&s);
}

static void test_timeout_without_progress(void **state)
{
	struct mig_stream s;
	uint8_t b[16];
	uint64_t t0;
	int sv[2];

	pair(sv, 0);
	assert_int_equal(mig_stream_init(&s, sv[0], 2, 300), 0);
	t0 = now_ms();
	assert_int_equal(mig_stream_recv(&s, b, sizeof(b)), -ETIMEDOUT);
	assert_true(now_ms() - t0 >= 250);
	assert_true(now_ms() - t0 < 3000);
	mig_stream_destroy(&s);
	close(sv[1]);
}

struct shut { struct mig_stream *s; };

static void *shutter(void *arg)
{
	struct timespec ts = { 0, 100 * 1000000 };

	nanosleep(&ts, NULL);
	mig_stream_shutdown(((struct shut *)arg)->s);
	return NULL;
}

static void test_shutdown_from_another_thread(void **state)
{
	struct mig_stream s;
	struct shut sh = { &s };
	pthread_t t;
	uint8_t b[16];
	uint64_t t0;
	int sv[2], ret;

	pair(sv, 0);
	assert_int_equal(mig_stream_init(&s, sv[0], 2, 10000), 0);
	t0 = now_ms();
	pthread_create(&t, NULL, shutter, &sh);
	ret = mig_stream_recv(&s, b, sizeof(b));
	pthread_join(t, NULL);
	assert_true(ret < 0);
	assert_true(now_ms() - t0 < 5000);
	mig_stream_destroy(&s);
	close(sv[1]);
}

static void *drain_thread(void *arg)
{
	uint8_t buf[65536];
	int fd = *(int *)arg;

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

static void test_bandwidth_limit(void **state)
{
	struct mig_stream s;
	static uint8_t chunk[256 << 10];
	pthread_t t;
	uint64_t t0, ms;
	int sv[2], i;

	pair(sv, 0);
	assert_int_equal(mig_stream_init(&s, sv[0], 4, 5000), 0);
	pthread_create(&t, NULL, drain_thread, &sv[1]);
	mig_stream_set_bandwidth(&s, 8u << 20);		/* 8 MiB/s */
	t0 = now_ms();
	for (i = 0; i < 16; i++)			/* 4 MiB */
		assert_int_equal(mig_stream_send_msg(&s, MIG_RAM, chunk, sizeof(chunk)), 0);
	assert_int_equal(mig_stream_flush(&s), 0);
	ms = now_ms() - t0;
	/* 4 MiB at 8 MiB/s: the last chunk may leave at 3.75 MiB worth of time */
	assert_true(ms >= 400);
	assert_true(ms < 5000);
	mig_stream_shutdown(&s);
	pthread_join(t, NULL);
	mig_stream_destroy(&s);
	close(sv[1]);
}

static void test_tcp_loopback(void **state)
{
	int lfd, cfd = -1, afd;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char uri[64];

	assert_int_equal(mig_tcp_listen("127.0.0.1:0", &lfd), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&ss, &sl), 0);
	snprintf(uri, sizeof(uri), "127.0.0.1:%u", ntohs(((struct sockaddr_in *)&ss)->sin_port));
	assert_int_equal(mig_tcp_connect(uri, 2000, &cfd), 0);
	afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);
	assert_int_equal(write(cfd, "x", 1), 1);
	close(afd);
	close(cfd);
	close(lfd);
	assert_int_equal(mig_tcp_connect("nonsense", 100, &cfd), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_in_flight_in_order),
		cmocka_unit_test(test_recv_framing_and_header_checks),
		cmocka_unit_test(test_send_to_closed_peer_fails),
		cmocka_unit_test(test_timeout_without_progress),
		cmocka_unit_test(test_shutdown_from_another_thread),
		cmocka_unit_test(test_bandwidth_limit),
		cmocka_unit_test(test_tcp_loopback),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
