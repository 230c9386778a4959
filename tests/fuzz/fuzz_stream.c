// SPDX-License-Identifier: MIT
/*
 * libFuzzer target over everything a migration destination parses from the network or a
 * snapshot file: the message framing (mig_hdr_decode + receive order), HELLO, CONFIG, RAM and
 * RAM_ZERO (applied to a real 2 MiB guest_mem), ROUND_END, ACK, ABORT, and STATE streams
 * (vmm/state.c, loaded into two registered components that read every field type).
 *
 * An input starting with "VMST" is a bare state stream (a snapshot's device state); anything
 * else is a sequence of migration messages. Build and run: see tests/fuzz/README.
 *
 * Built with -DFUZZ_GEN_CORPUS it is instead a program that writes the seed corpus
 * (tests/fuzz/corpus_stream/) from the real encoders, so seeds follow format changes.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/pages.h"
#include "migrate/postcopy_proto.h"
#include "migrate/proto.h"
#include "vmm/memory.h"
#include "vmm/state.h"

/* ---- two components, reading every kind of field ---- */

struct comp {
	uint64_t regs[16];
	uint32_t a;
	uint16_t b;
	uint8_t c;
	bool d;
	char name[32];
	uint8_t blob[64];
};

enum { T_REGS = 1, T_A, T_B, T_C, T_D, T_NAME, T_BLOB, T_LIST, T_ITEM };

static int comp_save(void *opaque, struct state_writer *w)
{
	struct comp *c = opaque;

	sw_u64_array(w, T_REGS, c->regs, 16, STATE_F_REQUIRED);
	sw_u32(w, T_A, c->a, 0);
	sw_u16(w, T_B, c->b, 0);
	sw_u8(w, T_C, c->c, 0);
	sw_u8(w, T_D, c->d, 0);
	sw_str(w, T_NAME, c->name, 0);
	sw_bytes(w, T_BLOB, c->blob, sizeof(c->blob), 0);
	sw_nest_begin(w, T_LIST, 0);
	sw_u32(w, T_ITEM, 1, 0);
	sw_u32(w, T_ITEM, 2, 0);
	sw_nest_end(w);
	return sw_error(w);
}

static int comp_load(void *opaque, struct state_reader *r, uint16_t version)
{
	struct comp *c = opaque, t;
	struct state_reader sub;
	struct state_field f, g;
	size_t n;
	int ret;

	memset(&t, 0, sizeof(t));
	while ((ret = sr_next(r, &f)) > 0) {
		switch (f.tag) {
		case T_REGS: ret = sr_u64_array(&f, t.regs, 16, &n); break;
		case T_A: ret = sr_u32(&f, &t.a); break;
		case T_B: ret = sr_u16(&f, &t.b); break;
		case T_C: ret = sr_u8(&f, &t.c); break;
		case T_D: ret = sr_bool(&f, &t.d); break;
		case T_NAME: ret = sr_str(&f, t.name, sizeof(t.name)); break;
		case T_BLOB: ret = sr_bytes(&f, t.blob, sizeof(t.blob)); break;
		case T_LIST:
			ret = sr_nested(r, &f, &sub);
			while (!ret && (ret = sr_next(&sub, &g)) > 0) {
				uint32_t v;

				ret = g.tag == T_ITEM ? sr_u32(&g, &v) : sr_skip_unknown(&sub, &g);
			}
			break;
		default: ret = sr_skip_unknown(r, &f); break;
		}
		if (ret < 0)
			return ret;
	}
	if (ret < 0)
		return ret;
	*c = t;
	return 0;
}

static const struct state_ops vcpu_ops = {
	.name = "vcpu", .version = 2, .min_version = 1, .save = comp_save, .load = comp_load,
};
static const struct state_ops blk_ops = {
	.name = "virtio-blk", .version = 1, .min_version = 1, .flags = STATE_OPS_OPTIONAL,
	.save = comp_save, .load = comp_load,
};

static struct comp comps[2];
static struct guest_mem mem;
static struct mig_pages_rx rx;
static bool ready;

static int setup(void)
{
	if (ready)
		return 0;
	if (guest_mem_init(&mem, 2u << 20) < 0 || mig_pages_rx_init(&rx, &mem) < 0)
		return -1;
	ready = true;
	return 0;
}

static void registry_make(struct state_registry *reg)
{
	state_registry_init(reg);
	state_register(reg, "0", &vcpu_ops, &comps[0]);
	state_register(reg, "blk0", &blk_ops, &comps[1]);
}

/*
 * One migration message stream, as the destination's receive loop would consume it.
 * Returns the receive phase reached and, in *@failures, how many payloads were refused.
 */
static enum mig_phase run_messages(const uint8_t *p, size_t len, unsigned int *failures)
{
	struct mig_seq seq;

	*failures = 0;
	mig_seq_init(&seq, MIG_ROLE_DEST);
	while (len >= MIG_HDR_LEN) {
		struct mig_hdr h;
		const uint8_t *pl;
		uint16_t ack_cmd = 0;
		int ret;

		/* version 3: the post-copy commands' decoders too */
		if (mig_hdr_decode_ver(p, MIG_VERSION_POSTCOPY, &h) < 0)
			return seq.phase;
		p += MIG_HDR_LEN;
		len -= MIG_HDR_LEN;
		if (h.len > len)
			return seq.phase;	/* truncated stream: the transport reports EOF */
		pl = p;
		p += h.len;
		len -= h.len;
		if (h.cmd == MIG_ACK && mig_ack_decode(pl, h.len, &ack_cmd) < 0)
			return seq.phase;
		/* Keep going past an order violation: it widens coverage of the decoders. */
		if (mig_seq_accept(&seq, h.cmd, ack_cmd) < 0)
			(*failures)++;
		ret = 0;

		switch (h.cmd) {
		case MIG_HELLO: {
			struct mig_hello hello, local = { MIG_VERSION_MIN, MIG_VERSION_MAX, 0 };
			uint32_t v;

			ret = mig_hello_decode(pl, h.len, &hello);
			if (ret == 0)
				ret = mig_version_pick(&local, &hello, &v);
			break;
		}
		case MIG_CONFIG: {
			struct mig_config c, self;
			char err[256];

			ret = mig_config_decode(pl, h.len, &c);
			if (ret == 0) {
				mig_config_init(&self);
				self.mem_bytes = mem.size;
				self.nr_vcpus = 1;
				mig_config_add_device(&self, "vcpu", "0");
				mig_config_add_device(&self, "virtio-blk", "blk0");
				ret = mig_config_check(&c, &self, c.cpuid, c.nr_cpuid, err, sizeof(err));
				mig_config_free(&self);
				mig_config_free(&c);
			}
			break;
		}
		case MIG_RAM:
		case MIG_PAGE_URGENT:
			ret = mig_pages_rx_ram(&rx, pl, h.len);
			break;
		case MIG_PAGE_REQ: {
			uint64_t gpa[MIG_PC_MAX_REQ];
			uint32_t n;

			ret = mig_pc_req_decode(pl, h.len, gpa, &n);
			break;
		}
		case MIG_POSTCOPY_START: {
			uint64_t pages = mem.size / MIG_PAGE_SIZE, pending;
			uint64_t *bm = calloc((pages + 63) / 64, sizeof(*bm));

			ret = bm ? mig_pc_start_decode(pl, h.len, pages, bm, &pending) : -ENOMEM;
			free(bm);
			break;
		}
		case MIG_POSTCOPY_DONE: {
			struct mig_pc_done d;

			ret = mig_pc_done_decode(pl, h.len, &d);
			break;
		}
		case MIG_RAM_ZERO:
			ret = mig_pages_rx_zero(&rx, pl, h.len);
			break;
		case MIG_ROUND_END: {
			uint32_t round;
			uint64_t pages;

			ret = mig_round_end_decode(pl, h.len, &round, &pages);
			break;
		}
		case MIG_STATE: {
			struct state_registry reg;

			registry_make(&reg);
			ret = state_load_buf(&reg, pl, h.len, NULL);
			state_registry_destroy(&reg);
			break;
		}
		case MIG_ABORT: {
			char msg[128];
			int err;

			ret = mig_abort_decode(pl, h.len, &err, msg, sizeof(msg));
			break;
		}
		default:
			break;
		}
		if (ret < 0)
			(*failures)++;
	}
	return seq.phase;
}

#ifndef FUZZ_GEN_CORPUS

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Every rejected input logs an error line: run with -close_fd_mask=2 (libFuzzer keeps its
 * own and the sanitizers' reports on a duplicate of stderr).
 */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return setup();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size >= 4 && !memcmp(data, "VMST", 4)) {
		struct state_registry reg;

		registry_make(&reg);
		(void)state_load_buf(&reg, data, size, NULL);
		state_registry_destroy(&reg);
		(void)state_verify_buf(data, size, NULL);
		return 0;
	}
	unsigned int failures;

	(void)run_messages(data, size, &failures);
	return 0;
}

#else /* FUZZ_GEN_CORPUS: write seeds into argv[1] */

static const char *outdir;

static void put_file(const char *name, const void *buf, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len) {
		perror(path);
		exit(1);
	}
	fclose(f);
}

struct out { uint8_t *b; size_t len; };

static void msg(struct out *o, uint16_t cmd, const void *pl, size_t len)
{
	o->b = realloc(o->b, o->len + MIG_HDR_LEN + len);
	mig_hdr_encode(o->b + o->len, cmd, 0, len);
	if (len)
		memcpy(o->b + o->len + MIG_HDR_LEN, pl, len);
	o->len += MIG_HDR_LEN + len;
}

/* Self-check: the seed is accepted end to end by the same code the fuzzer drives. */
static bool seed_accepted(const struct out *o, enum mig_phase want)
{
	unsigned int failures;
	enum mig_phase ph;

	memset(mem.base, 0, mem.size);
	ph = run_messages(o->b, o->len, &failures);
	if (ph != want || failures) {
		fprintf(stderr, "seed not accepted: phase %d (want %d), %u failures\n", ph, want,
			failures);
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	struct state_registry reg;
	struct state_mem_sink state;
	struct mig_pages_tx tx;
	struct mig_buf ram, zero;
	struct mig_config cfg;
	struct mig_hello hello = { MIG_VERSION_MIN, MIG_VERSION_MAX, MIG_FEAT_ZSTD };
	struct mig_cpuid leaf = { .function = 1, .ecx = 0x80202001, .edx = 0x178bfbff };
	struct out o = { 0 };
	uint8_t hb[MIG_HELLO_LEN], small[64], *cb;
	uint64_t *bm, pos = 0, i;
	size_t clen, n;
	int level;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	if (setup() < 0)
		return 1;

	/* A state stream. */
	for (i = 0; i < 16; i++)
		comps[0].regs[i] = i * 0x1111;
	strcpy(comps[0].name, "cpu0");
	strcpy(comps[1].name, "blk0");
	registry_make(&reg);
	state_mem_sink_init(&state);
	if (state_save_all(&reg, &state.sink))
		return 1;
	put_file("state-valid", state.buf, state.len);

	/* A whole migration, RAM both raw and compressed. */
	/* Six data pages (0, 3, ..., 15) among zeros: small seeds, every message kind. */
	for (i = 0; i < 6; i++)
		memset((uint8_t *)mem.base + i * 4096 * 3, (int)(i + 1), 100 + i);
	mig_hello_encode(hb, &hello);
	msg(&o, MIG_HELLO, hb, sizeof(hb));
	mig_config_init(&cfg);
	cfg.mem_bytes = mem.size;
	cfg.nr_vcpus = 1;
	mig_config_add_registry(&cfg, &reg);
	mig_config_add_cpuid(&cfg, &leaf);
	mig_config_encode(&cfg, &cb, &clen);
	msg(&o, MIG_CONFIG, cb, clen);
	for (level = 0; level <= 1; level++) {
		mig_pages_tx_init(&tx, &mem, level, 32);
		mig_pages_buf_alloc_ram(&tx, &ram);
		mig_pages_buf_alloc_zero(&zero);
		bm = calloc(mem.size / 4096 / 64, 8);
		/* Raw pass: pages 0..2 (one data page); zstd pass: pages 3..31. */
		for (i = level ? 3 : 0; i < (level ? 32u : 3u); i++)
			bm[i / 64] |= 1ull << (i % 64);
		pos = 0;
		while (mig_pages_tx_next(&tx, bm, &pos, &ram, &zero) > 0) {
			if (zero.len) {
				o.b = realloc(o.b, o.len + zero.len);
				memcpy(o.b + o.len, zero.data, zero.len);
				o.len += zero.len;
			}
			if (ram.len) {
				o.b = realloc(o.b, o.len + ram.len);
				memcpy(o.b + o.len, ram.data, ram.len);
				o.len += ram.len;
			}
		}
		mig_round_end_encode(small, (uint32_t)level, level ? 29 : 3);
		msg(&o, MIG_ROUND_END, small, MIG_ROUND_END_LEN);
		free(bm);
		mig_buf_free(&ram);
		mig_buf_free(&zero);
		mig_pages_tx_destroy(&tx);
	}
	msg(&o, MIG_STATE, state.buf, state.len);
	msg(&o, MIG_COMPLETE, NULL, 0);
	put_file("migration-valid", o.b, o.len);
	if (!seed_accepted(&o, MIG_PH_DONE))
		return 1;

	/* Short ones: an ABORT, an ACK, a HELLO from a newer peer. */
	o.len = 0;
	n = mig_abort_encode(small, ENOSPC, "no space");
	msg(&o, MIG_ABORT, small, n);
	put_file("abort", o.b, o.len);
	o.len = 0;
	mig_ack_encode(small, MIG_CONFIG);
	msg(&o, MIG_ACK, small, MIG_ACK_LEN);
	put_file("ack", o.b, o.len);
	o.len = 0;
	hello = (struct mig_hello){ 2, 9, ~0ull };
	mig_hello_encode(small, &hello);
	memset(small + MIG_HELLO_LEN, 0x5a, 16);
	msg(&o, MIG_HELLO, small, MIG_HELLO_LEN + 16);
	put_file("hello-newer", o.b, o.len);

	/*
	 * Post-copy (version 3): HELLO, CONFIG, POSTCOPY_START (pages 0..31 to come), STATE,
	 * COMPLETE, a PAGE_URGENT for page 3 and the background RAM / RAM_ZERO of the rest; and
	 * the destination's two messages (decoded though out of order here).
	 */
	o.len = 0;
	hello = (struct mig_hello){ MIG_VERSION_MIN, MIG_VERSION_MAX,
				    MIG_FEAT_ZSTD | MIG_FEAT_POSTCOPY };
	mig_hello_encode(hb, &hello);
	msg(&o, MIG_HELLO, hb, sizeof(hb));
	msg(&o, MIG_CONFIG, cb, clen);
	{
		uint64_t pages = mem.size / 4096, words = (pages + 63) / 64;
		uint8_t *st = malloc(mig_pc_start_len(pages)), *urg;
		size_t ulen = MIG_RAM_HDR_LEN + 8 + 4096;
		struct mig_pc_done d = { 1, 31, 2, 150, 900 };
		uint64_t gpa = 3 * 4096, le = htole64(gpa);

		bm = calloc(words, 8);
		bm[0] = 0xffffffffull;
		mig_pc_start_encode(st, pages, bm);
		msg(&o, MIG_POSTCOPY_START, st, mig_pc_start_len(pages));
		free(st);
		msg(&o, MIG_STATE, state.buf, state.len);
		msg(&o, MIG_COMPLETE, NULL, 0);
		urg = calloc(1, ulen);
		urg[0] = 1;
		memcpy(urg + MIG_RAM_HDR_LEN, &le, 8);
		memcpy(urg + MIG_RAM_HDR_LEN + 8, (uint8_t *)mem.base + gpa, 4096);
		msg(&o, MIG_PAGE_URGENT, urg, ulen);
		free(urg);
		mig_pages_tx_init(&tx, &mem, 0, 32);
		mig_pages_buf_alloc_ram(&tx, &ram);
		mig_pages_buf_alloc_zero(&zero);
		bm[0] &= ~(1ull << 3);
		pos = 0;
		while (mig_pages_tx_next(&tx, bm, &pos, &ram, &zero) > 0) {
			if (zero.len)
				msg(&o, MIG_RAM_ZERO, zero.data + MIG_HDR_LEN, zero.len - MIG_HDR_LEN);
			if (ram.len)
				msg(&o, MIG_RAM, ram.data + MIG_HDR_LEN, ram.len - MIG_HDR_LEN);
		}
		mig_buf_free(&ram);
		mig_buf_free(&zero);
		mig_pages_tx_destroy(&tx);
		free(bm);
		put_file("postcopy-valid", o.b, o.len);
		if (!seed_accepted(&o, MIG_PH_POSTCOPY))
			return 1;
		o.len = 0;
		n = mig_pc_req_encode(small, (const uint64_t[]){ 0, 5 * 4096 }, 2);
		msg(&o, MIG_PAGE_REQ, small, n);
		mig_pc_done_encode(small, &d);
		msg(&o, MIG_POSTCOPY_DONE, small, MIG_PC_DONE_LEN);
		put_file("postcopy-dst", o.b, o.len);
	}

	free(o.b);
	free(cb);
	free(state.buf);
	mig_config_free(&cfg);
	state_registry_destroy(&reg);
	return 0;
}

#endif
