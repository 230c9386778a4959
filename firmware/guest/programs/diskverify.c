// SPDX-License-Identifier: MIT
/*
 * diskverify: the disk-side migration oracle inside the test guest.
 *
 *   diskverify DEV BLOCKS MAX_SECONDS [STOP_DEV]
 *
 * Writes the first BLOCKS 4 KiB blocks of DEV in generations, with O_DIRECT (every write is a
 * virtio request the monitor must carry out, nothing stays in the guest's page cache) and an
 * fsync after every FSYNC_EVERY writes. Every block of generation g holds a header {magic,
 * g, block index, global write sequence}, a payload derived from (g, index) and a checksum
 * over all of it. Before generation g starts, every block is read back (O_DIRECT) and must be
 * exactly generation g-1: a write the monitor acknowledged but lost, or one that landed from
 * a stale request after a migration, is found.
 *
 * It stops when the first bytes of STOP_DEV read "DV-STOP" (the test writes them into that
 * image on the host once the migrations are done) or after MAX_SECONDS; it then completes
 * the running generation, fsyncs and verifies every block once more.
 *
 * Output (one line each, on stdout = the serial console):
 *   DV-START blocks=<B> dev=<DEV>
 *   DV gen=<g> writes=<w> t=<seconds since start>      after each verified generation
 *   DV-BAD gen=<g> block=<i> why=<...>                   then exit 1
 *   DV-DONE gen=<g> blocks=<B> writes=<w> stop=<told|timeout>   exit 0
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mix.h"

#define BLK		4096u
#define CHUNK		16u		/* blocks per write request (64 KiB) */
#define FSYNC_EVERY	8u		/* write requests between fsyncs */
#define MAGIC		0x4456455249465931ull	/* "DVERIFY1" */
#define WORDS		(BLK / 8)

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t sum_words(const uint64_t *w)
{
	uint64_t s = 0x9e3779b97f4a7c15ull;
	unsigned int k;

	for (k = 0; k < WORDS - 1; k++)
		s = mix(s ^ w[k]) + k;
	return s;
}

static void fill(uint64_t *w, uint64_t gen, uint64_t idx, uint64_t seq)
{
	unsigned int k;

	w[0] = MAGIC;
	w[1] = gen;
	w[2] = idx;
	w[3] = seq;
	for (k = 4; k < WORDS - 1; k++)
		w[k] = mix((gen << 32) ^ (idx << 12) ^ k);
	w[WORDS - 1] = sum_words(w);
}

/* 0 when @w is exactly block @idx of generation @gen (any sequence number) */
static const char *check(const uint64_t *w, uint64_t gen, uint64_t idx)
{
	unsigned int k;

	if (gen == 0) {
		for (k = 0; k < WORDS; k++)
			if (w[k])
				return "not-zero";
		return NULL;
	}
	if (w[0] != MAGIC)
		return "magic";
	if (w[2] != idx)
		return "index";
	if (w[1] != gen)
		return w[1] < gen ? "stale" : "future";
	if (w[WORDS - 1] != sum_words(w))
		return "checksum";
	for (k = 4; k < WORDS - 1; k++)
		if (w[k] != mix((gen << 32) ^ (idx << 12) ^ k))
			return "payload";
	return NULL;
}

static int verify_all(int fd, uint64_t *buf, uint64_t blocks, uint64_t gen)
{
	uint64_t b, n, i;
	const char *why;

	for (b = 0; b < blocks; b += n) {
		n = blocks - b < CHUNK ? blocks - b : CHUNK;
		if (pread(fd, buf, n * BLK, (off_t)(b * BLK)) != (ssize_t)(n * BLK)) {
			printf("DV-BAD gen=%llu block=%llu why=read:%s\n", (unsigned long long)gen,
			       (unsigned long long)b, strerror(errno));
			return -1;
		}
		for (i = 0; i < n; i++) {
			why = check(buf + i * WORDS, gen, b + i);
			if (why) {
				printf("DV-BAD gen=%llu block=%llu why=%s got_gen=%llu\n",
				       (unsigned long long)gen, (unsigned long long)(b + i), why,
				       (unsigned long long)buf[i * WORDS + 1]);
				return -1;
			}
		}
	}
	return 0;
}

static int told_to_stop(int sfd, char *sbuf)
{
	if (sfd < 0 || pread(sfd, sbuf, 512, 0) != 512)
		return 0;
	return !memcmp(sbuf, "DV-STOP", 7);
}

int main(int argc, char **argv)
{
	uint64_t blocks, gen = 0, seq = 0, b, n, i, writes = 0;
	double t0 = now_s(), max_s;
	int fd, sfd = -1, stop = 0;
	uint64_t *buf;
	char *sbuf;

	if (argc < 4) {
		fprintf(stderr, "usage: diskverify DEV BLOCKS MAX_SECONDS [STOP_DEV]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	blocks = strtoull(argv[2], NULL, 0);
	max_s = strtod(argv[3], NULL);
	fd = open(argv[1], O_RDWR | O_DIRECT);
	if (fd < 0 || !blocks) {
		printf("DV-BAD gen=0 block=0 why=open:%s\n", strerror(errno));
		return 1;
	}
	if (argc > 4) {
		sfd = open(argv[4], O_RDONLY | O_DIRECT);
		if (sfd < 0) {
			printf("DV-BAD gen=0 block=0 why=open-stop:%s\n", strerror(errno));
			return 1;
		}
	}
	if (posix_memalign((void **)&buf, BLK, CHUNK * BLK) || posix_memalign((void **)&sbuf, BLK, BLK))
		return 1;
	printf("DV-START blocks=%llu dev=%s\n", (unsigned long long)blocks, argv[1]);
	for (;;) {
		/* every block must still hold the last generation before the next one starts */
		if (verify_all(fd, buf, blocks, gen))
			return 1;
		if (gen)
			printf("DV gen=%llu writes=%llu t=%.1f\n", (unsigned long long)gen,
			       (unsigned long long)writes, now_s() - t0);
		if (stop)
			break;
		gen++;
		for (b = 0; b < blocks; b += n) {
			n = blocks - b < CHUNK ? blocks - b : CHUNK;
			for (i = 0; i < n; i++)
				fill(buf + i * WORDS, gen, b + i, ++seq);
			if (pwrite(fd, buf, n * BLK, (off_t)(b * BLK)) != (ssize_t)(n * BLK)) {
				printf("DV-BAD gen=%llu block=%llu why=write:%s\n",
				       (unsigned long long)gen, (unsigned long long)b, strerror(errno));
				return 1;
			}
			if (++writes % FSYNC_EVERY == 0 && fsync(fd)) {
				printf("DV-BAD gen=%llu block=%llu why=fsync:%s\n",
				       (unsigned long long)gen, (unsigned long long)b, strerror(errno));
				return 1;
			}
		}
		if (fsync(fd)) {
			printf("DV-BAD gen=%llu block=0 why=fsync:%s\n", (unsigned long long)gen,
			       strerror(errno));
			return 1;
		}
		if (told_to_stop(sfd, sbuf))
			stop = 1;
		else if (now_s() - t0 > max_s)
			stop = 2;
	}
	printf("DV-DONE gen=%llu blocks=%llu writes=%llu stop=%s\n", (unsigned long long)gen,
	       (unsigned long long)blocks, (unsigned long long)writes, stop == 1 ? "told" : "timeout");
	return 0;
}
