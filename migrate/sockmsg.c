// SPDX-License-Identifier: MIT
/*
 * Blocking message I/O on a shared socket (contract in sockmsg.h). Every wait is a poll()
 * bounded by the caller's no-progress timeout, so a vanished peer is noticed.
 */
#define LOG_TAG "mig-sock"
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "migrate/sockmsg.h"

static int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	/* POLLHUP/POLLERR: the next recv/send reports what happened. */
	return 0;
}

int mig_sock_send_msg(int fd, uint16_t cmd, const void *payload, size_t len, int timeout_ms)
{
	uint8_t hdr[MIG_HDR_LEN];
	struct iovec iov[2] = {
		{ .iov_base = hdr, .iov_len = sizeof(hdr) },
		{ .iov_base = (void *)payload, .iov_len = len },
	};
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	size_t left = sizeof(hdr) + len;
	int ret;

	mig_hdr_encode(hdr, cmd, 0, len);
	while (left) {
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			ret = wait_fd(fd, POLLOUT, timeout_ms);
			if (ret < 0)
				return ret;
			continue;
		}
		left -= (size_t)n;
		/* Step the iovecs past what went out. */
		while (n > 0 && mh.msg_iovlen) {
			size_t k = (size_t)n < mh.msg_iov->iov_len ? (size_t)n : mh.msg_iov->iov_len;

			mh.msg_iov->iov_base = (uint8_t *)mh.msg_iov->iov_base + k;
			mh.msg_iov->iov_len -= k;
			n -= (ssize_t)k;
			if (!mh.msg_iov->iov_len) {
				mh.msg_iov++;
				mh.msg_iovlen--;
			}
		}
	}
	return 0;
}

static int recv_exact(int fd, void *buf, size_t len, int timeout_ms, uint64_t *bytes)
{
	size_t got = 0;
	int ret;

	while (got < len) {
		ssize_t n = recv(fd, (uint8_t *)buf + got, len - got, MSG_DONTWAIT);

		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			ret = wait_fd(fd, POLLIN, timeout_ms);
			if (ret < 0)
				return ret;
			continue;
		}
		got += (size_t)n;
		*bytes += (uint64_t)n;
	}
	return 0;
}

int mig_sock_recv_msg(int fd, uint32_t version, int timeout_ms, struct mig_hdr *h,
		      uint8_t **payload, uint64_t *bytes)
{
	uint8_t raw[MIG_HDR_LEN];
	uint8_t *p = NULL;
	int ret;

	*payload = NULL;
	ret = recv_exact(fd, raw, sizeof(raw), timeout_ms, bytes);
	if (ret < 0)
		return ret;
	ret = mig_hdr_decode_ver(raw, version, h);
	if (ret < 0)
		return ret;
	if (h->len) {
		p = malloc(h->len);	/* bounded by mig_hdr_decode_ver: < 70 MiB */
		if (!p)
			return -ENOMEM;
		ret = recv_exact(fd, p, h->len, timeout_ms, bytes);
		if (ret < 0) {
			free(p);
			return ret;
		}
	}
	*payload = p;
	return 0;
}
