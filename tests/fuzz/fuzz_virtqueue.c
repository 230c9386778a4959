// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the split virtqueue walker (vmm/virtio/queue.c): the input is a
 * whole guest — queue configuration plus the contents of guest RAM holding the rings,
 * descriptors, indirect tables and buffers. The device side then does what a device does:
 * pop every chain, touch every byte of every segment (read the readable ones, write the
 * writable ones), push them back, compute notifications, save and restore the queue and
 * go again. Guest RAM is two separately malloc'd regions with a hole between them, so
 * AddressSanitizer reports any host access the walker lets out of guest RAM.
 *
 * Input layout (little-endian):
 *   [0]      size = 1 << (b % 9)                  (1..256)
 *   [1]      bit0 EVENT_IDX, bit1 INDIRECT_DESC, bit2 unpop one chain per round
 *   [2]      segment capacity of the device = 1 + b % 64
 *   [3]      seed for the "written" byte counts the device reports
 *   [4..9]   desc, avail, used ring offsets in region 0 (le16 each; aligned down)
 *   [10..]   region 0 contents (8 KiB at gpa 0), then region 1 (4 KiB at gpa 0x3000)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/lib/log.h"
#include "vmm/memory.h"
#include "vmm/virtio/queue.h"

/* Small RAM on purpose: mutations then land on ring and descriptor bytes, not filler. */
#define R0_SIZE		0x2000u
#define R1_GPA		0x3000u
#define R1_SIZE		0x1000u
#define HDR		10u

/* LLVMFuzzerInitialize and the kvm_ioctl stub: fuzz_common.c. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

/* Read every readable byte, write every writable one: ASan checks each access. */
static uint32_t touch(const struct vq_chain *ch)
{
	uint32_t written = 0;
	unsigned int i;

	for (i = 0; i < ch->n; i++) {
		uint8_t *p = ch->segs[i].addr;
		uint32_t j;

		if (i < ch->n_out) {
			for (j = 0; j < ch->segs[i].len; j++)
				sink ^= p[j];
		} else {
			memset(p, 0xa5, ch->segs[i].len);
			written += ch->segs[i].len;
		}
	}
	return written;
}

static void run_queue(struct vq *vq, struct vq_chain *ch, uint8_t seed, bool unpop)
{
	unsigned int round, n;
	int ret;

	for (round = 0; round < 2; round++) {
		vq_disable_notify(vq);
		for (n = 0; n <= 2u * VQ_MAX_SIZE; n++) {
			uint32_t w;

			ret = vq_pop(vq, ch);
			if (ret <= 0)
				break;
			if (unpop && n == 0) {
				vq_unpop(vq, 1);
				ret = vq_pop(vq, ch);
				if (ret <= 0)
					break;
			}
			w = touch(ch);
			{
				uint8_t tmp[300];
				size_t off = (size_t)seed * 3;

				(void)vq_chain_copy_from(ch, off, tmp, sizeof(tmp));
				(void)vq_chain_copy_to(ch, off / 2, tmp, sizeof(tmp));
			}
			seed = (uint8_t)(seed * 33 + 7);
			vq_push(vq, ch, seed & 1 ? w : w / (1u + seed % 5) + seed);
		}
		(void)vq_enable_notify(vq);
		(void)vq_should_notify(vq);
		if (vq_broken(vq))
			return;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vq_seg segs[64];
	struct vq_chain ch = { .segs = segs };
	struct guest_mem mem;
	struct vq_config cfg;
	struct vq_state st;
	struct vq vq, vq2;
	uint8_t *r0, *r1;
	size_t body;

	if (size < HDR)
		return 0;
	r0 = calloc(1, R0_SIZE);
	r1 = calloc(1, R1_SIZE);
	if (!r0 || !r1)
		abort();
	body = size - HDR;
	memcpy(r0, data + HDR, body < R0_SIZE ? body : R0_SIZE);
	if (body > R0_SIZE)
		memcpy(r1, data + HDR + R0_SIZE, body - R0_SIZE < R1_SIZE ? body - R0_SIZE : R1_SIZE);

	memset(&mem, 0, sizeof(mem));
	mem.memfd = -1;
	mem.size = R0_SIZE + R1_SIZE;
	mem.regions[0] = (struct guest_mem_region){ .gpa = 0, .size = R0_SIZE, .hva = r0 };
	mem.regions[1] = (struct guest_mem_region){ .gpa = R1_GPA, .size = R1_SIZE,
						    .fd_offset = R0_SIZE, .hva = r1, .slot = 1 };
	mem.nr_regions = 2;
	mem.dirty_bitmap = calloc(1, sizeof(uint64_t));	/* 3 pages */

	memset(&cfg, 0, sizeof(cfg));
	cfg.name = "fuzz";
	cfg.size = (uint16_t)(1u << (data[0] % 9));
	cfg.event_idx = data[1] & 1;
	cfg.indirect = data[1] & 2;
	cfg.desc = (uint64_t)(data[4] | data[5] << 8) & 0x3ff0ull;
	cfg.avail = (uint64_t)(data[6] | data[7] << 8) & 0x3ffeull;
	cfg.used = (uint64_t)(data[8] | data[9] << 8) & 0x3ffcull;
	ch.cap = 1u + data[2] % 64u;

	if (vq_init(&vq, &mem, &cfg) == 0) {
		run_queue(&vq, &ch, data[3], data[1] & 4);
		/* Migration round trip: the restored queue continues where the first stopped. */
		vq_save(&vq, &st);
		if (vq_restore(&vq2, &mem, &st, "fuzz-restored") == 0 && !vq_broken(&vq))
			run_queue(&vq2, &ch, (uint8_t)(data[3] + 1), false);
	}
	free(mem.dirty_bitmap);
	free(r0);
	free(r1);
	return 0;
}
