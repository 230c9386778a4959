// SPDX-License-Identifier: MIT
/*
 * blkbench: a small fio stand-in for the test guest (fio is dynamically linked against ~60
 * libraries, too much for the initramfs). O_DIRECT I/O on a block device, N threads each
 * doing synchronous pread/pwrite (so N requests in flight, like fio's psync with numjobs=N):
 *   seqwrite  1 MiB blocks over the region, for -t seconds (wrapping), then fdatasync
 *   seqread   the same, reads
 * (All four are time-bounded: one size-bounded pass over a 128 MiB region took 0.5 s on a
 * ramdisk, too short to measure anything but start-up noise.)
 *   randwrite 4 KiB blocks at random 4 KiB-aligned offsets, for -t seconds
 *   randread  the same, reads
 * Each thread works on its own stripe of the region. Output, one line per test:
 *   BENCH <test> threads=N bs=B ops=N bytes=N secs=S.sss MBps=X iops=Y
 * usage: blkbench [-s REGION_MIB] [-t SECONDS] [-j THREADS] [-J SEQ_THREADS] DEVICE [TEST...]
 */
#define _GNU_SOURCE		/* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEQ_BS	(1u << 20)
#define RAND_BS	4096u
#define MAX_THREADS 64

struct job {
	pthread_t t;
	int fd;
	int write, random;
	uint64_t base, len;		/* the thread's stripe */
	double deadline;		/* stop at this CLOCK_MONOTONIC time */
	uint64_t ops, bytes;
	int err;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	uint32_t bs = j->random ? RAND_BS : SEQ_BS;
	uint64_t blocks = j->len / bs, pos = 0, x = 0x9e3779b97f4a7c15ull ^ j->base;
	void *buf;

	if (posix_memalign(&buf, 4096, bs)) {
		j->err = ENOMEM;
		return NULL;
	}
	memset(buf, 0x5a, bs);
	while (blocks) {
		uint64_t blk;
		ssize_t n;

		if (j->random) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;	/* xorshift64 */
			blk = x % blocks;
		} else {
			if (pos == blocks)
				pos = 0;
			blk = pos++;
		}
		n = j->write ? pwrite(j->fd, buf, bs, (off_t)(j->base + blk * bs))
			     : pread(j->fd, buf, bs, (off_t)(j->base + blk * bs));
		if (n != (ssize_t)bs) {
			j->err = n < 0 ? errno : EIO;
			break;
		}
		j->ops++;
		j->bytes += bs;
		/* Check the clock every 16 ops: cheap, and fine-grained enough at >= 100 IOPS. */
		if (!(j->ops & 15) && now() >= j->deadline)
			break;
	}
	free(buf);
	return NULL;
}

static int run(const char *dev, const char *test, uint64_t region, double secs, int threads)
{
	int write = strstr(test, "write") != NULL, random = !strncmp(test, "rand", 4);
	struct job jobs[MAX_THREADS];
	uint64_t ops = 0, bytes = 0, stripe;
	double t0, el;
	int fd, err = 0;

	fd = open(dev, (write ? O_RDWR : O_RDONLY) | O_DIRECT);
	if (fd < 0) {
		fprintf(stderr, "blkbench: %s: %s\n", dev, strerror(errno));
		return 1;
	}
	stripe = region / (uint64_t)threads / SEQ_BS * SEQ_BS;
	t0 = now();
	for (int i = 0; i < threads; i++) {
		jobs[i] = (struct job){ .fd = fd, .write = write, .random = random,
			.base = stripe * (uint64_t)i, .len = stripe,
			.deadline = t0 + secs };
		pthread_create(&jobs[i].t, NULL, worker, &jobs[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(jobs[i].t, NULL);
		ops += jobs[i].ops;
		bytes += jobs[i].bytes;
		if (jobs[i].err)
			err = jobs[i].err;
	}
	if (write)
		fdatasync(fd);
	el = now() - t0;
	close(fd);
	if (err) {
		fprintf(stderr, "blkbench: %s: %s\n", test, strerror(err));
		return 1;
	}
	printf("BENCH %s threads=%d bs=%u ops=%llu bytes=%llu secs=%.3f MBps=%.1f iops=%.0f\n", test,
	       threads, random ? RAND_BS : SEQ_BS, (unsigned long long)ops, (unsigned long long)bytes,
	       el, (double)bytes / el / 1e6, (double)ops / el);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	static const char *const all[] = { "seqwrite", "seqread", "randwrite", "randread" };
	uint64_t region = 128ull << 20;
	double secs = 5;
	int threads = 4, seq_threads = 1, c, ret = 0;

	while ((c = getopt(argc, argv, "s:t:j:J:")) != -1) {
		switch (c) {
		case 's': region = strtoull(optarg, NULL, 10) << 20; break;
		case 't': secs = atof(optarg); break;
		case 'j': threads = atoi(optarg); break;
		case 'J': seq_threads = atoi(optarg); break;
		default: goto usage;
		}
	}
	if (optind >= argc || threads < 1 || threads > MAX_THREADS || seq_threads < 1 ||
	    seq_threads > MAX_THREADS || region < (uint64_t)SEQ_BS * MAX_THREADS || secs <= 0)
		goto usage;
	if (optind + 1 == argc) {
		for (unsigned int i = 0; i < 4; i++)
			ret |= run(argv[optind], all[i], region, secs,
				   !strncmp(all[i], "rand", 4) ? threads : seq_threads);
	} else {
		for (int i = optind + 1; i < argc; i++)
			ret |= run(argv[optind], argv[i], region, secs,
				   !strncmp(argv[i], "rand", 4) ? threads : seq_threads);
	}
	return ret;
usage:
	fprintf(stderr, "usage: blkbench [-s REGION_MIB>=64] [-t SECONDS] [-j THREADS] [-J SEQ_THREADS] DEVICE [seqwrite|seqread|randwrite|randread...]\n");
	return 2;
}
