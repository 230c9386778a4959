// SPDX-License-Identifier: MIT
/*
 * memverify: the migration oracle inside the test guest (style.md §3.4 item 13).
 *
 * Takes most of the guest's free RAM (or MiB given as argv[1]; argv[2] = a dirtying rate in
 * MiB/s to pace the writes at, for benchmarks; 0 or absent = as fast as it can) and runs in
 * passes: pass n
 * writes into every page a header {magic, pass n, page index, checksum} and fills the rest
 * of the page's first 64 bytes from a hash of (n, index); then it reads every page back and
 * checks all of it. Between writing and verifying it also checks, at the start of each pass,
 * that every page still holds pass n-1's content — so a page that a migration lost, or
 * delivered from an older round, is found whether the switch-over happened while pages
 * were being written or while they were being verified.
 *
 * Output (one line each, on stdout = the serial console):
 *   MV-START mib=<M> pages=<P>
 *   MV pass=<n> pages=<P> ms=<pass time> t=<seconds since start>   after each full pass
 *   MV-BAD pass=<n> page=<i> want=<..> got=<..>                     then exit 1
 * A test migrates the VM while this runs and then requires that "MV pass=" lines keep
 * coming on the destination, numbered on from the source's, and that no MV-BAD appears.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "mix.h"

#define PAGE		4096u
#define MAGIC		0x4d56455249465931ull	/* "MVERIFY1" */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* What page @i holds after pass @n: 8 words. */
static void expect(uint64_t n, uint64_t i, uint64_t w[8])
{
	uint64_t h = mix(n * 0x9e3779b97f4a7c15ull ^ i);
	unsigned int k;

	w[0] = MAGIC;
	w[1] = n;
	w[2] = i;
	for (k = 3; k < 7; k++)
		w[k] = h = mix(h + k);
	w[7] = w[0] ^ w[1] ^ w[2] ^ w[3] ^ w[4] ^ w[5] ^ w[6];	/* checksum */
}

static int check(const uint8_t *mem, uint64_t pages, uint64_t n)
{
	uint64_t w[8], i;

	for (i = 0; i < pages; i++) {
		const uint64_t *p = (const uint64_t *)(mem + i * PAGE);

		expect(n, i, w);
		if (memcmp(p, w, sizeof(w)) || p[PAGE / 8 - 1] != w[7]) {
			printf("MV-BAD pass=%llu page=%llu want=%016llx got=%016llx (pass %llu)\n",
			       (unsigned long long)n, (unsigned long long)i,
			       (unsigned long long)w[7], (unsigned long long)p[7],
			       (unsigned long long)p[1]);
			fflush(stdout);
			return -1;
		}
	}
	return 0;
}

static uint64_t avail_mib(void)
{
	char line[256];
	unsigned long long kb = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return 64;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return kb / 1024 * 7 / 10;	/* leave the kernel and the shell room */
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 0) : avail_mib();
	uint64_t rate = argc > 2 ? strtoull(argv[2], NULL, 0) : 0;	/* MiB/s, 0 = unpaced */
	uint64_t pages, n, i, t0, tp, written = 0;
	uint8_t *mem;

	if (mib < 1)			/* "0": the default size */
		mib = avail_mib();
	pages = mib * 1024 * 1024 / PAGE;
	mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (mem == MAP_FAILED) {
		perror("MV-BAD mmap");
		return 1;
	}
	mlock(mem, pages * PAGE);	/* no swap here anyway; keeps the pages resident */
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("MV-START mib=%llu pages=%llu\n", (unsigned long long)mib, (unsigned long long)pages);
	t0 = now_ms();
	for (n = 1;; n++) {
		tp = now_ms();
		if (n > 1 && check(mem, pages, n - 1))
			return 1;
		for (i = 0; i < pages; i++) {
			uint64_t *p = (uint64_t *)(mem + i * PAGE), w[8];

			expect(n, i, w);
			memcpy(p, w, sizeof(w));
			p[PAGE / 8 - 1] = w[7];
			/* pace: every 1 MiB written, sleep until the rate allows the next */
			if (rate && ++written % 256 == 0) {
				uint64_t due = t0 + written * 1000 / (rate * 256), t = now_ms();

				if (due > t)
					usleep((useconds_t)(due - t) * 1000);
			}
		}
		if (check(mem, pages, n))
			return 1;
		printf("MV pass=%llu pages=%llu ms=%llu t=%llu\n", (unsigned long long)n,
		       (unsigned long long)pages, (unsigned long long)(now_ms() - tp),
		       (unsigned long long)((now_ms() - t0) / 1000));
	}
}
