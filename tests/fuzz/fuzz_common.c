// SPDX-License-Identifier: MIT
/*
 * Linked into the fuzz targets over guest memory (fuzz_virtqueue, fuzz_net): the libFuzzer
 * start-up hook and the KVM ioctl wrapper memory.c references for guest_mem_map_kvm.
 */
#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/lib/log.h"
#include "vmm/virtio/queue.h"

int kvm_ioctl(int fd, unsigned long req, void *arg);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int fuzz_chain_build(const uint8_t *data, size_t size, size_t pos, unsigned int n,
		     unsigned int nout, uint32_t seg_max, struct vq_chain *ch);
void fuzz_chain_free(struct vq_chain *ch);

/* Never called: the targets map no guest memory into a VM. */
int kvm_ioctl(int fd, unsigned long req, void *arg)
{
	(void)fd; (void)req; (void)arg;
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc; (void)argv;
	log_max_level = LOG_ERR;	/* hostile inputs log warnings by design */
	return 0;
}

/*
 * Fill @ch (segs, cap already set) with @n segments from @data[@pos..@size): lengths first
 * (n × le16, each 1 + v % @seg_max), then their contents in order (zero-filled when the input
 * runs out); the first @nout are device-readable. Each segment is its own calloc'd buffer so
 * that ASan catches any access past it (free with fuzz_chain_free). -1 if the input is too short.
 */
int fuzz_chain_build(const uint8_t *data, size_t size, size_t pos, unsigned int n,
		     unsigned int nout, uint32_t seg_max, struct vq_chain *ch)
{
	size_t lens = pos;

	pos += 2 * (size_t)n;
	if (pos > size)
		return -1;
	ch->n = ch->n_out = ch->out_len = ch->in_len = 0;
	for (unsigned int i = 0; i < n; i++) {
		uint16_t raw;
		uint32_t l;

		memcpy(&raw, data + lens + 2 * i, 2);
		l = 1 + le16toh(raw) % seg_max;
		ch->segs[i] = (struct vq_seg){ .len = l, .writable = i >= nout, .gpa = 0x10000ull * i };
		ch->segs[i].addr = calloc(1, l);
		if (!ch->segs[i].addr)
			abort();
		if (pos < size) {
			size_t c = size - pos < l ? size - pos : l;

			memcpy(ch->segs[i].addr, data + pos, c);
			pos += c;
		}
		if (i < nout)
			ch->out_len += l;
		else
			ch->in_len += l;
		ch->n = i + 1;
	}
	ch->n_out = nout;
	return 0;
}

void fuzz_chain_free(struct vq_chain *ch)
{
	for (unsigned int i = 0; i < ch->n; i++)
		free(ch->segs[i].addr);
}
