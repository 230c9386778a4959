// SPDX-License-Identifier: MIT
/*
 * vmm/state.c: TLV round trips, the compatibility rule (old stream without a new tag, unknown
 * optional tag skipped, unknown required tag refused), registry errors, and a hostile stream:
 * every malformed header, length, crc, truncation at every byte and a bit flip at every byte
 * must be refused before any load() runs.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmm/lib/crc32c.h"
#include "vmm/lib/log.h"
#include "vmm/state.h"

/* A fake device with a bit of everything. */
enum { T_A = 1, T_B, T_NAME, T_REGS, T_QUEUES, T_Q, T_Q_IDX, T_BLOB, T_NEWFIELD, T_FUTURE = 99 };

struct fake {
	uint8_t a;
	uint64_t b;
	char name[16];
	uint64_t regs[4];
	uint16_t q_idx[3];
	uint8_t blob[100];
	uint32_t newfield;	/* added "later": default 7 when missing */
	/* test knobs */
	bool save_newfield, save_future, future_required;
	size_t save_junk;	/* extra bytes to write, to hit the writer limit */
	int loads, post_loads, order;
};

static int load_seq;

/* The hostile-stream loops log thousands of expected errors: send them to /dev/null. */
static int saved_stderr = -1;

static void quiet_begin(void)
{
	int fd = open("/dev/null", O_WRONLY);

	fflush(stderr);
	saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
}

static void quiet_end(void)
{
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
}

static int fake_save(void *opaque, struct state_writer *w)
{
	struct fake *f = opaque;
	unsigned int i;

	sw_u8(w, T_A, f->a, 0);
	sw_u64(w, T_B, f->b, STATE_F_REQUIRED);
	sw_str(w, T_NAME, f->name, 0);
	sw_u64_array(w, T_REGS, f->regs, 4, 0);
	sw_nest_begin(w, T_QUEUES, 0);
	for (i = 0; i < 3; i++) {
		sw_nest_begin(w, T_Q, 0);
		sw_u16(w, T_Q_IDX, f->q_idx[i], 0);
		sw_nest_end(w);
	}
	sw_nest_end(w);
	sw_bytes(w, T_BLOB, f->blob, sizeof(f->blob), 0);
	if (f->save_newfield)
		sw_u32(w, T_NEWFIELD, f->newfield, 0);
	if (f->save_future)
		sw_u32(w, T_FUTURE, 0xdead, f->future_required ? STATE_F_REQUIRED : 0);
	if (f->save_junk) {
		void *junk = calloc(1, f->save_junk);

		sw_bytes(w, T_FUTURE, junk, f->save_junk, 0);
		free(junk);
	}
	return sw_error(w);
}

static int load_queues(struct state_reader *r, const struct state_field *qf, uint16_t *q_idx)
{
	struct state_reader qr, er;
	struct state_field f, e;
	unsigned int n = 0;
	int ret;

	ret = sr_nested(r, qf, &qr);
	while (!ret && (ret = sr_next(&qr, &f)) > 0) {
		if (f.tag != T_Q || n >= 3)
			return -EBADMSG;
		ret = sr_nested(&qr, &f, &er);
		while (!ret && (ret = sr_next(&er, &e)) > 0)
			ret = e.tag == T_Q_IDX ? sr_u16(&e, &q_idx[n]) : sr_skip_unknown(&er, &e);
		if (ret < 0)
			return ret;
		n++;
		ret = 0;
	}
	return ret < 0 ? ret : (n == 3 ? 0 : -EBADMSG);
}

static int fake_load(void *opaque, struct state_reader *r, uint16_t version)
{
	struct fake *dev = opaque, t = { 0 };
	struct state_field f;
	size_t n;
	int ret;

	t.newfield = 7;		/* default for streams from before the field existed */
	while ((ret = sr_next(r, &f)) > 0) {
		switch (f.tag) {
		case T_A:	 ret = sr_u8(&f, &t.a); break;
		case T_B:	 ret = sr_u64(&f, &t.b); break;
		case T_NAME:	 ret = sr_str(&f, t.name, sizeof(t.name)); break;
		case T_REGS:	 ret = sr_u64_array(&f, t.regs, 4, &n); break;
		case T_QUEUES:	 ret = load_queues(r, &f, t.q_idx); break;
		case T_BLOB:	 ret = sr_bytes(&f, t.blob, sizeof(t.blob)); break;
		case T_NEWFIELD: ret = sr_u32(&f, &t.newfield); break;
		default:	 ret = sr_skip_unknown(r, &f); break;
		}
		if (ret < 0)
			return ret;
	}
	if (ret < 0)
		return ret;
	/* Commit only after everything parsed. */
	dev->a = t.a;
	dev->b = t.b;
	memcpy(dev->name, t.name, sizeof(t.name));
	memcpy(dev->regs, t.regs, sizeof(t.regs));
	memcpy(dev->q_idx, t.q_idx, sizeof(t.q_idx));
	memcpy(dev->blob, t.blob, sizeof(t.blob));
	dev->newfield = t.newfield;
	dev->loads++;
	dev->order = ++load_seq;
	return 0;
}

static int fake_post_load(void *opaque)
{
	struct fake *dev = opaque;

	/* post_load runs after every load: the sequence counter is past all loads. */
	assert_true(load_seq >= 2);
	dev->post_loads++;
	return 0;
}

static const struct state_ops fake_ops = {
	.name = "fake", .version = 2, .min_version = 1,
	.save = fake_save, .load = fake_load, .post_load = fake_post_load,
};
static const struct state_ops other_ops = {
	.name = "other-dev", .version = 1, .min_version = 1,
	.save = fake_save, .load = fake_load, .post_load = fake_post_load,
};

static void fake_fill(struct fake *f, unsigned int seed)
{
	unsigned int i;

	memset(f, 0, sizeof(*f));
	f->a = (uint8_t)(0x10 + seed);
	f->b = 0x0123456789abcdefull ^ seed;
	snprintf(f->name, sizeof(f->name), "dev%u", seed);
	for (i = 0; i < 4; i++)
		f->regs[i] = 0x1111111111111111ull * (i + 1) + seed;
	for (i = 0; i < 3; i++)
		f->q_idx[i] = (uint16_t)(100 * i + seed);
	for (i = 0; i < sizeof(f->blob); i++)
		f->blob[i] = (uint8_t)(i ^ seed);
	f->newfield = 1000 + seed;
	f->save_newfield = true;
}

static void assert_same_state(const struct fake *x, const struct fake *y)
{
	assert_int_equal(x->a, y->a);
	assert_int_equal(x->b, y->b);
	assert_string_equal(x->name, y->name);
	assert_memory_equal(x->regs, y->regs, sizeof(x->regs));
	assert_memory_equal(x->q_idx, y->q_idx, sizeof(x->q_idx));
	assert_memory_equal(x->blob, y->blob, sizeof(x->blob));
	assert_int_equal(x->newfield, y->newfield);
}

/* Source: two components; returns the stream in *buf (free). */
static size_t save_two(struct fake *src0, struct fake *src1, uint8_t **buf)
{
	struct state_registry reg;
	struct state_mem_sink ms;

	state_registry_init(&reg);
	assert_int_equal(state_register(&reg, "0", &fake_ops, src0), 0);
	assert_int_equal(state_register(&reg, "net1", &other_ops, src1), 0);
	state_mem_sink_init(&ms);
	assert_int_equal(state_save_all(&reg, &ms.sink), 0);
	state_registry_destroy(&reg);
	*buf = ms.buf;
	return ms.len;
}

/* Destination with the same two components. */
struct dest {
	struct state_registry reg;
	struct fake d0, d1;
};

static void dest_init(struct dest *d)
{
	memset(d, 0, sizeof(*d));
	state_registry_init(&d->reg);
	assert_int_equal(state_register(&d->reg, "0", &fake_ops, &d->d0), 0);
	assert_int_equal(state_register(&d->reg, "net1", &other_ops, &d->d1), 0);
	load_seq = 0;
}

static void dest_untouched(const struct dest *d)
{
	assert_int_equal(d->d0.loads + d->d1.loads + d->d0.post_loads + d->d1.post_loads, 0);
}

static void test_round_trip(void **unused)
{
	struct fake s0, s1;
	struct dest d;
	uint8_t *buf;
	size_t len;

	fake_fill(&s0, 1);
	fake_fill(&s1, 2);
	len = save_two(&s0, &s1, &buf);
	dest_init(&d);
	assert_int_equal(state_load_buf(&d.reg, buf, len, NULL), 0);
	assert_same_state(&s0, &d.d0);
	assert_same_state(&s1, &d.d1);
	assert_int_equal(d.d0.loads, 1);
	assert_int_equal(d.d1.post_loads, 1);
	/* Load order is registration order. */
	assert_int_equal(d.d0.order, 1);
	assert_int_equal(d.d1.order, 2);
	assert_int_equal(state_verify_buf(buf, len, NULL), 0);
	state_registry_destroy(&d.reg);
	free(buf);
}

static void test_fd_round_trip(void **unused)
{
	char path[] = "/tmp/test_state_XXXXXX";
	struct state_registry reg;
	struct state_fd_sink fs;
	struct state_fd_source fsrc;
	struct fake s0, s1;
	struct dest d;
	int fd;

	fake_fill(&s0, 3);
	fake_fill(&s1, 4);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	state_registry_init(&reg);
	assert_int_equal(state_register(&reg, "0", &fake_ops, &s0), 0);
	assert_int_equal(state_register(&reg, "net1", &other_ops, &s1), 0);
	state_fd_sink_init(&fs, fd);
	assert_int_equal(state_save_all(&reg, &fs.sink), 0);
	state_registry_destroy(&reg);

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	dest_init(&d);
	state_fd_source_init(&fsrc, fd);
	assert_int_equal(state_load_all(&d.reg, &fsrc.src, NULL), 0);
	assert_same_state(&s0, &d.d0);
	assert_same_state(&s1, &d.d1);
	state_registry_destroy(&d.reg);

	/* A file cut short is refused. */
	assert_int_equal(ftruncate(fd, 40), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	dest_init(&d);
	assert_int_equal(state_load_all(&d.reg, &fsrc.src, NULL), -EBADMSG);
	dest_untouched(&d);
	state_registry_destroy(&d.reg);
	close(fd);
}

/* §3.4.10: a stream from before T_NEWFIELD existed loads with the default. */
static void test_old_stream_without_new_tag(void **unused)
{
	struct fake s0, s1;
	struct dest d;
	uint8_t *buf;
	size_t len;

	fake_fill(&s0, 5);
	fake_fill(&s1, 6);
	s0.save_newfield = false;
	len = save_two(&s0, &s1, &buf);
	dest_init(&d);
	assert_int_equal(state_load_buf(&d.reg, buf, len, NULL), 0);
	assert_int_equal(d.d0.newfield, 7);
	assert_int_equal(d.d1.newfield, s1.newfield);
	s0.newfield = 7;
	assert_same_state(&s0, &d.d0);
	state_registry_destroy(&d.reg);
	free(buf);
}

static void test_unknown_optional_tag_skipped(void **unused)
{
	struct fake s0, s1;
	struct dest d;
	uint8_t *buf;
	size_t len;

	fake_fill(&s0, 7);
	fake_fill(&s1, 8);
	s0.save_future = true;
	len = save_two(&s0, &s1, &buf);
	dest_init(&d);
	assert_int_equal(state_load_buf(&d.reg, buf, len, NULL), 0);
	assert_same_state(&s0, &d.d0);
	state_registry_destroy(&d.reg);
	free(buf);
}

static void test_unknown_required_tag_rejected(void **unused)
{
	struct fake s0, s1;
	struct dest d;
	uint8_t *buf;
	size_t len;

	fake_fill(&s0, 9);
	fake_fill(&s1, 10);
	s1.save_future = true;
	s1.future_required = true;
	len = save_two(&s0, &s1, &buf);
	dest_init(&d);
	assert_int_equal(state_load_buf(&d.reg, buf, len, NULL), -EPROTO);
	/* That component's load() refused before committing anything; nothing post-loaded. */
	assert_int_equal(d.d1.loads, 0);
	assert_int_equal(d.d0.post_loads + d.d1.post_loads, 0);
	state_registry_destroy(&d.reg);
	free(buf);
}

static void test_unknown_section_rejected(void **unused)
{
	static const struct state_ops extra_ops = {
		.name = "gpu", .version = 1, .min_version = 1, .save = fake_save, .load = fake_load,
	};
	struct state_registry reg;
	struct state_mem_sink ms;
	struct fake s0, s1, s2;
	struct dest d;

	fake_fill(&s0, 1);
	fake_fill(&s1, 2);
	fake_fill(&s2, 3);
	state_registry_init(&reg);
	assert_int_equal(state_register(&reg, "0", &fake_ops, &s0), 0);
	assert_int_equal(state_register(&reg, "net1", &other_ops, &s1), 0);
	assert_int_equal(state_register(&reg, "gpu0", &extra_ops, &s2), 0);
	state_mem_sink_init(&ms);
	assert_int_equal(state_save_all(&reg, &ms.sink), 0);
	dest_init(&d);
	assert_int_equal(state_load_buf(&d.reg, ms.buf, ms.len, NULL), -EPROTO);
	dest_untouched(&d);
	state_registry_destroy(&d.reg);
	state_registry_destroy(&reg);
	free(ms.buf);
}

static void test_missing_section(void **unused)
{
	static const struct state_ops opt_ops = {
		.name = "opt", .version = 1, .min_version = 1, .flags = STATE_OPS_OPTIONAL,
		.save = fake_save, .load = fake_load,
	};
	struct fake s0, s1, o;
	struct dest d;
	uint8_t *buf;
	size_t len;

	fake_fill(&s0, 1);
	fake_fill(&s1, 2);
	len = save_two(&s0, &s1, &buf);

	/* A required third component with no section: refused. */
	dest_init(&d);
	memset(&o, 0, sizeof(o));
	assert_int_equal(state_register(&d.reg, "1", &fake_ops, &o), 0);
	assert_int_equal(state_load_buf(&d.reg, buf, len, NULL), -ENOENT);
	dest_untouched(&d);
	state_registry_destroy(&d.reg);

	/* An optional one: accepted, its load() not called. */
	dest_init(&d);
	assert_int_equal(state_register(&d.reg, "x", &opt_ops, &o), 0);
	assert_int_equal(state_load_buf(&d.reg, buf, len, NULL), 0);
	assert_int_equal(o.loads, 0);
	assert_int_equal(d.d0.loads, 1);
	state_registry_destroy(&d.reg);
	free(buf);
}

static void test_version_range(void **unused)
{
	static const struct state_ops fake_v5 = {
		.name = "fake", .version = 5, .min_version = 5, .save = fake_save, .load = fake_load,
	};
	static const struct state_ops fake_v1 = {
		.name = "fake", .version = 1, .min_version = 1, .save = fake_save, .load = fake_load,
	};
	struct state_registry reg;
	struct state_mem_sink ms;
	struct fake s0, s1;
	struct dest d;
	const struct state_ops *variants[] = { &fake_v5, &fake_v1 };
	unsigned int v;

	for (v = 0; v < 2; v++) {
		fake_fill(&s0, 1);
		fake_fill(&s1, 2);
		state_registry_init(&reg);
		/* v5: newer than the destination's [1,2]; v1 saved → dest [1,2] accepts it. */
		assert_int_equal(state_register(&reg, "0", variants[v], &s0), 0);
		assert_int_equal(state_register(&reg, "net1", &other_ops, &s1), 0);
		state_mem_sink_init(&ms);
		assert_int_equal(state_save_all(&reg, &ms.sink), 0);
		dest_init(&d);
		assert_int_equal(state_load_buf(&d.reg, ms.buf, ms.len, NULL),
				 v == 0 ? -EPROTONOSUPPORT : 0);
		state_registry_destroy(&d.reg);

		/* The other direction: a destination that only loads v5 refuses a v2 stream. */
		if (v == 1) {
			struct state_registry r2;
			struct fake x, y;
			uint8_t *buf;
			size_t len = save_two(&s0, &s1, &buf);

			memset(&x, 0, sizeof(x));
			memset(&y, 0, sizeof(y));
			state_registry_init(&r2);
			assert_int_equal(state_register(&r2, "0", &fake_v5, &x), 0);
			assert_int_equal(state_register(&r2, "net1", &other_ops, &y), 0);
			assert_int_equal(state_load_buf(&r2, buf, len, NULL), -EPROTONOSUPPORT);
			assert_int_equal(x.loads + y.loads, 0);
			state_registry_destroy(&r2);
			free(buf);
		}
		state_registry_destroy(&reg);
		free(ms.buf);
	}
}

/* Every prefix of a valid stream is refused, before any load(). */
static void test_truncated_every_offset(void **unused)
{
	struct fake s0, s1;
	struct dest d;
	uint8_t *buf;
	size_t len, cut;

	fake_fill(&s0, 1);
	fake_fill(&s1, 2);
	len = save_two(&s0, &s1, &buf);
	quiet_begin();
	for (cut = 0; cut < len; cut++) {
		uint8_t *copy = malloc(cut ? cut : 1);	/* exact size: ASan catches over-reads */

		memcpy(copy, buf, cut);
		dest_init(&d);
		assert_int_equal(state_load_buf(&d.reg, copy, cut, NULL), -EBADMSG);
		dest_untouched(&d);
		assert_int_equal(state_verify_buf(copy, cut, NULL), -EBADMSG);
		state_registry_destroy(&d.reg);
		free(copy);
	}
	quiet_end();
	free(buf);
}

/* A single bit flipped anywhere is refused before any load(). */
static void test_bitflip_every_byte(void **unused)
{
	struct fake s0, s1;
	struct dest d;
	uint8_t *buf;
	size_t len, i;
	unsigned int bit;

	fake_fill(&s0, 1);
	fake_fill(&s1, 2);
	len = save_two(&s0, &s1, &buf);
	quiet_begin();
	for (i = 0; i < len; i++) {
		for (bit = 0; bit < 8; bit += 3) {
			int ret;

			buf[i] ^= (uint8_t)(1u << bit);
			dest_init(&d);
			ret = state_load_buf(&d.reg, buf, len, NULL);
			assert_true(ret < 0);
			dest_untouched(&d);
			state_registry_destroy(&d.reg);
			buf[i] ^= (uint8_t)(1u << bit);
		}
	}
	quiet_end();
	free(buf);
}

static void test_trailing_bytes(void **unused)
{
	struct fake s0, s1;
	struct dest d;
	uint8_t *buf;
	size_t len;

	fake_fill(&s0, 1);
	fake_fill(&s1, 2);
	len = save_two(&s0, &s1, &buf);
	buf = realloc(buf, len + 1);
	buf[len] = 0;
	dest_init(&d);
	assert_int_equal(state_load_buf(&d.reg, buf, len + 1, NULL), -EBADMSG);
	dest_untouched(&d);
	state_registry_destroy(&d.reg);
	free(buf);
}

/* ---- hand-built streams, for cases a correct writer never produces ---- */

struct builder { uint8_t buf[4096]; size_t len; };

static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }

static void b_stream(struct builder *b, uint32_t nr)
{
	b->len = 16;
	put32(b->buf, STATE_STREAM_MAGIC);
	put16(b->buf + 4, STATE_STREAM_VERSION);
	put16(b->buf + 6, 0);
	put32(b->buf + 8, nr);
	put32(b->buf + 12, crc32c(0, b->buf, 12));
}

/* Append a section; body_len_claim lets a test lie about the length. */
static void b_section(struct builder *b, const char *name, const char *id, uint16_t version,
		      const void *body, size_t body_len, uint64_t body_len_claim)
{
	uint8_t *s = b->buf + b->len;
	size_t nl = strlen(name), il = strlen(id), n;

	put32(s, STATE_SECTION_MAGIC);
	put16(s + 4, version);
	put16(s + 6, 0);
	put32(s + 8, (uint32_t)nl);
	put32(s + 12, (uint32_t)il);
	put64(s + 16, body_len_claim);
	memcpy(s + 24, name, nl);
	memcpy(s + 24 + nl, id, il);
	memcpy(s + 24 + nl + il, body, body_len);
	n = 24 + nl + il + body_len;
	put32(s + n, crc32c(0, s, n));
	b->len += n + 4;
}

static void tlv(uint8_t *p, uint16_t tag, uint16_t flags, uint32_t len)
{
	put16(p, tag);
	put16(p + 2, flags);
	put32(p + 4, len);
}

static int load_built(struct builder *b, const struct state_limits *lim)
{
	struct dest d;
	int ret;

	dest_init(&d);
	ret = state_load_buf(&d.reg, b->buf, b->len, lim);
	dest_untouched(&d);
	state_registry_destroy(&d.reg);
	return ret;
}

static void test_malformed_headers(void **unused)
{
	struct state_limits lim = { .max_sections = 2, .max_section_body = 64, .max_total = 200 };
	uint8_t body[64], bad[16];
	struct builder b;

	memset(body, 0, sizeof(body));
	tlv(body, T_A, 0, 1);			/* a valid 9-byte list */

	/* Valid control: both sections, small bodies, fits the limits. */
	b_stream(&b, 2);
	b_section(&b, "fake", "0", 1, body, 9, 9);
	b_section(&b, "other-dev", "net1", 1, body, 9, 9);
	{
		struct dest d;

		dest_init(&d);
		assert_int_equal(state_load_buf(&d.reg, b.buf, b.len, &lim), 0);
		assert_int_equal(d.d0.a, 0);
		state_registry_destroy(&d.reg);
	}

	/* Stream header: bad magic, bad crc, unknown version, too many sections. */
	b_stream(&b, 2);
	b.buf[0] ^= 1;
	assert_int_equal(load_built(&b, &lim), -EBADMSG);
	b_stream(&b, 2);
	b.buf[13] ^= 1;
	assert_int_equal(load_built(&b, &lim), -EILSEQ);
	b_stream(&b, 2);
	put16(b.buf + 4, 2);
	put32(b.buf + 12, crc32c(0, b.buf, 12));
	assert_int_equal(load_built(&b, &lim), -EPROTONOSUPPORT);
	b_stream(&b, 3);
	assert_int_equal(load_built(&b, &lim), -E2BIG);
	b_stream(&b, 0xffffffffu);
	assert_int_equal(load_built(&b, NULL), -E2BIG);

	/* Body length beyond the limit is refused before reading or allocating it. */
	b_stream(&b, 2);
	b_section(&b, "fake", "0", 1, body, 9, 65);
	assert_int_equal(load_built(&b, &lim), -E2BIG);
	b_stream(&b, 2);
	b_section(&b, "fake", "0", 1, body, 9, UINT64_MAX);
	assert_int_equal(load_built(&b, NULL), -E2BIG);
	/* Total over the limit (each body a valid 64-byte list: one 56-byte field). */
	tlv(body, T_FUTURE, 0, 56);
	b_stream(&b, 2);
	b_section(&b, "fake", "0", 1, body, 64, 64);
	b_section(&b, "other-dev", "net1", 1, body, 64, 64);
	assert_int_equal(load_built(&b, &(struct state_limits){ 2, 64, 120 }), -E2BIG);
	memset(body, 0, sizeof(body));
	tlv(body, T_A, 0, 1);

	/* Claimed body longer than the data (valid crc impossible): truncated. */
	b_stream(&b, 2);
	b_section(&b, "fake", "0", 1, body, 9, 40);
	assert_int_equal(load_built(&b, &lim), -EBADMSG);

	/* Name/id lengths out of range, empty name, non-printable name. */
	b_stream(&b, 2);
	b_section(&b, "", "0", 1, body, 9, 9);
	assert_int_equal(load_built(&b, &lim), -EBADMSG);
	b_stream(&b, 2);
	b_section(&b, "fake", "0", 1, body, 9, 9);
	put32(b.buf + 16 + 8, 0x80000000u);
	assert_int_equal(load_built(&b, &lim), -EBADMSG);
	b_stream(&b, 2);
	b_section(&b, "fa\nke", "0", 1, body, 9, 9);
	assert_int_equal(load_built(&b, &lim), -EBADMSG);

	/* Section flags must be zero; crc must match. */
	b_stream(&b, 2);
	b_section(&b, "fake", "0", 1, body, 9, 9);
	b.buf[16 + 6] = 1;
	assert_int_equal(load_built(&b, &lim), -EBADMSG);
	b_stream(&b, 2);
	b_section(&b, "fake", "0", 1, body, 9, 9);
	b.buf[b.len - 1] ^= 0x80;
	assert_int_equal(load_built(&b, &lim), -EILSEQ);

	/* The same section twice. */
	b_stream(&b, 2);
	b_section(&b, "fake", "0", 1, body, 9, 9);
	b_section(&b, "fake", "0", 1, body, 9, 9);
	assert_int_equal(load_built(&b, &lim), -EPROTO);

	/* Field list whose last TLV runs past the body (with a valid crc). */
	tlv(bad, T_A, 0, 9);
	b_stream(&b, 2);
	b_section(&b, "fake", "0", 1, bad, 16, 16);
	b_section(&b, "other-dev", "net1", 1, body, 9, 9);
	assert_int_equal(load_built(&b, &lim), -EBADMSG);
	/* A partial TLV header at the end. */
	tlv(bad, T_A, 0, 1);
	b_stream(&b, 2);
	b_section(&b, "fake", "0", 1, bad, 12, 12);
	b_section(&b, "other-dev", "net1", 1, body, 9, 9);
	assert_int_equal(load_built(&b, &lim), -EBADMSG);
	/* A nested field whose inner list is broken. */
	tlv(bad, T_QUEUES, STATE_F_NESTED, 8);
	tlv(bad + 8, T_Q, 0, 100);
	b_stream(&b, 2);
	b_section(&b, "fake", "0", 1, bad, 16, 16);
	b_section(&b, "other-dev", "net1", 1, body, 9, 9);
	assert_int_equal(load_built(&b, &lim), -EBADMSG);
}

/* Deeply nested lists are bounded (no unbounded recursion on hostile input). */
static void test_nesting_bounded(void **unused)
{
	uint8_t body[8 * (STATE_NEST_MAX + 3)];
	struct builder b;
	unsigned int i, depth = STATE_NEST_MAX + 3;

	for (i = 0; i < depth; i++)
		tlv(body + 8 * i, T_QUEUES, STATE_F_NESTED, 8 * (depth - i - 1));
	b_stream(&b, 2);
	b_section(&b, "fake", "0", 1, body, sizeof(body), sizeof(body));
	b_section(&b, "other-dev", "net1", 1, body, 0, 0);
	assert_int_equal(load_built(&b, NULL), -EBADMSG);
}

static void test_getters_check_len(void **unused)
{
	uint8_t d[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
	struct state_field f = { .tag = 1, .len = 3, .data = d };
	struct state_reader r = { .name = "x", .id = "y" }, sub;
	uint64_t v64, arr[2];
	uint32_t v32;
	uint16_t v16;
	uint8_t v8;
	bool bl;
	char s[4];
	size_t n;

	assert_int_equal(sr_u8(&f, &v8), -EBADMSG);
	assert_int_equal(sr_u16(&f, &v16), -EBADMSG);
	assert_int_equal(sr_u32(&f, &v32), -EBADMSG);
	assert_int_equal(sr_u64(&f, &v64), -EBADMSG);
	assert_int_equal(sr_bytes(&f, s, 2), -EBADMSG);
	assert_int_equal(sr_str(&f, s, sizeof(s)), 0);
	assert_memory_equal(s, "\1\2\3", 4);
	f.len = 4;
	assert_int_equal(sr_str(&f, s, sizeof(s)), -EBADMSG);	/* no room for NUL */
	assert_int_equal(sr_u32(&f, &v32), 0);
	assert_int_equal(v32, 0x04030201u);
	d[0] = 0;
	f.len = 3;
	assert_int_equal(sr_str(&f, s, sizeof(s)), -EBADMSG);	/* embedded NUL */
	f.len = 1;
	assert_int_equal(sr_bool(&f, &bl), 0);
	assert_false(bl);
	d[0] = 2;
	assert_int_equal(sr_bool(&f, &bl), -EBADMSG);
	f.len = 12;
	assert_int_equal(sr_u64_array(&f, arr, 2, &n), -EBADMSG);
	f.len = 16;
	assert_int_equal(sr_u64_array(&f, arr, 1, &n), -EBADMSG);
	assert_int_equal(sr_u64_array(&f, arr, 2, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(sr_nested(&r, &f, &sub), -EBADMSG);	/* not flagged nested */
	f.flags = STATE_F_REQUIRED;
	assert_int_equal(sr_skip_unknown(&r, &f), -EPROTO);
	f.flags = 0;
	assert_int_equal(sr_skip_unknown(&r, &f), 0);
}

static int big_save(void *opaque, struct state_writer *w)
{
	static uint8_t chunk[4096];
	unsigned int i;

	for (i = 0; i < 300; i++)		/* 300 × 4 KiB > the 1 MiB section limit */
		sw_bytes(w, 1, chunk, sizeof(chunk), 0);
	return sw_error(w);
}

static int open_nest_save(void *opaque, struct state_writer *w)
{
	sw_nest_begin(w, 1, 0);
	return 0;			/* forgot sw_nest_end: save_all must still refuse */
}

static void test_writer_errors(void **unused)
{
	static const struct state_ops big_ops = { .name = "big", .version = 1, .min_version = 1,
						  .save = big_save, .load = fake_load };
	static const struct state_ops nest_ops = { .name = "nest", .version = 1, .min_version = 1,
						   .save = open_nest_save, .load = fake_load };
	struct state_registry reg;
	struct state_mem_sink ms;
	struct state_writer w = { .limit = 1 << 20 };
	unsigned int i;

	state_registry_init(&reg);
	assert_int_equal(state_register(&reg, "", &big_ops, NULL), 0);
	state_mem_sink_init(&ms);
	assert_int_equal(state_save_all(&reg, &ms.sink), -E2BIG);
	state_registry_destroy(&reg);
	free(ms.buf);

	state_registry_init(&reg);
	assert_int_equal(state_register(&reg, "", &nest_ops, NULL), 0);
	state_mem_sink_init(&ms);
	assert_int_equal(state_save_all(&reg, &ms.sink), -EINVAL);
	state_registry_destroy(&reg);
	free(ms.buf);

	/* Too deep, and an end without a begin. */
	for (i = 0; i < STATE_NEST_MAX; i++)
		assert_int_equal(sw_nest_begin(&w, 1, 0), 0);
	assert_int_equal(sw_nest_begin(&w, 1, 0), -EINVAL);
	assert_int_equal(sw_u8(&w, 2, 0, 0), -EINVAL);	/* sticky */
	free(w.buf);
	memset(&w, 0, sizeof(w));
	w.limit = 100;
	assert_int_equal(sw_nest_end(&w), -EINVAL);
}

static void test_registry(void **unused)
{
	static const struct state_ops bad_ver = { .name = "x", .version = 1, .min_version = 2,
						  .save = fake_save, .load = fake_load };
	static const struct state_ops no_load = { .name = "x", .version = 1, .min_version = 1,
						  .save = fake_save };
	static const struct state_ops spacey = { .name = "a b", .version = 1, .min_version = 1,
						 .save = fake_save, .load = fake_load };
	char long_id[STATE_ID_MAX + 2];
	struct state_registry reg;

	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = 0;
	state_registry_init(&reg);
	assert_int_equal(state_register(&reg, "0", &fake_ops, NULL), 0);
	assert_int_equal(state_register(&reg, "0", &fake_ops, NULL), -EEXIST);
	assert_int_equal(state_register(&reg, "1", &fake_ops, NULL), 0);
	assert_int_equal(state_register(&reg, "0", &bad_ver, NULL), -EINVAL);
	assert_int_equal(state_register(&reg, "0", &no_load, NULL), -EINVAL);
	assert_int_equal(state_register(&reg, "0", &spacey, NULL), -EINVAL);
	assert_int_equal(state_register(&reg, long_id, &fake_ops, NULL), -EINVAL);
	assert_int_equal(state_unregister(&reg, "fake", "0"), 0);
	assert_int_equal(state_unregister(&reg, "fake", "0"), -ENOENT);
	assert_int_equal(reg.nr, 1);
	assert_string_equal(reg.entries[0].id, "1");
	state_registry_destroy(&reg);
}

static int quiesce_count;
static int q_ok(void *opaque) { quiesce_count++; return 0; }
static int q_fail(void *opaque) { return -EBUSY; }

static void test_quiesce(void **unused)
{
	static const struct state_ops a = { .name = "a", .version = 1, .min_version = 1,
					    .quiesce = q_ok, .save = fake_save, .load = fake_load };
	static const struct state_ops b = { .name = "b", .version = 1, .min_version = 1,
					    .quiesce = q_fail, .save = fake_save, .load = fake_load };
	struct state_registry reg;

	state_registry_init(&reg);
	assert_int_equal(state_register(&reg, "", &a, NULL), 0);
	assert_int_equal(state_register(&reg, "", &fake_ops, NULL), 0);	/* no quiesce */
	assert_int_equal(state_quiesce_all(&reg), 0);
	assert_int_equal(quiesce_count, 1);
	assert_int_equal(state_register(&reg, "", &b, NULL), 0);
	assert_int_equal(state_quiesce_all(&reg), -EBUSY);
	state_registry_destroy(&reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_fd_round_trip),
		cmocka_unit_test(test_old_stream_without_new_tag),
		cmocka_unit_test(test_unknown_optional_tag_skipped),
		cmocka_unit_test(test_unknown_required_tag_rejected),
		cmocka_unit_test(test_unknown_section_rejected),
		cmocka_unit_test(test_missing_section),
		cmocka_unit_test(test_version_range),
		cmocka_unit_test(test_truncated_every_offset),
		cmocka_unit_test(test_bitflip_every_byte),
		cmocka_unit_test(test_trailing_bytes),
		cmocka_unit_test(test_malformed_headers),
		cmocka_unit_test(test_nesting_bounded),
		cmocka_unit_test(test_getters_check_len),
		cmocka_unit_test(test_writer_errors),
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_quiesce),
	};
	return cmocka_run_group_tests_name("state", tests, NULL, NULL);
}
