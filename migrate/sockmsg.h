/* SPDX-License-Identifier: MIT */
/*
 * Whole migration messages over a connected socket with plain blocking syscalls, for the
 * destination's post-copy phase: three threads share the connection there (the receiver, the
 * fault thread's page requests, the main thread's ACK), which the io_uring stream
 * (migrate/stream.h: one thread per stream) cannot serve. Nothing may be in flight on the
 * stream's ring while these are used (the destination's stream is flushed before).
 *
 * Threading: one receiver; senders serialise themselves (a message is written whole, but
 * two concurrent senders would interleave bytes).
 */
#ifndef MIGRATE_SOCKMSG_H
#define MIGRATE_SOCKMSG_H

#include <stddef.h>
#include <stdint.h>

#include "migrate/proto.h"

/*
 * Send header + @len payload bytes. Waits for socket space, at most @timeout_ms without
 * progress (-ETIMEDOUT). 0, -EPIPE/-ECONNRESET (peer gone), -errno.
 */
int mig_sock_send_msg(int fd, uint16_t cmd, const void *payload, size_t len, int timeout_ms);
/*
 * Receive one message: the header checked by mig_hdr_decode_ver(@version) before the
 * payload (malloc'ed into *payload, NULL if empty; free it) is read. *bytes += what was
 * read. 0, -ECONNRESET (orderly close, also mid-message), -ETIMEDOUT after @timeout_ms
 * without a byte, mig_hdr_decode's errors, -errno.
 */
int mig_sock_recv_msg(int fd, uint32_t version, int timeout_ms, struct mig_hdr *h,
		      uint8_t **payload, uint64_t *bytes);

#endif
