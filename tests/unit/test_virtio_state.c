// SPDX-License-Identifier: MIT
/*
 * The shared virtio state encodings in vmm/virtio/pci_state.c (a queue's vq_state as TLV
 * fields, plain or with its index) keep the bytes the devices wrote before they were shared:
 * snapshots and migration streams from older builds must still load. The golden bytes below were written by the
 * per-device encoder (virtio-net's write_vq) the shared one replaced.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <setjmp.h>
#include <cmocka.h>

#include "vmm/state.h"
#include "vmm/virtio/pci_state.h"
#include "vmm/virtio/queue.h"

static const struct vq_state vq_ref = {
	.desc = 0x1122334455667788ull, .avail = 0x2000, .used = 0x3000, .size = 256,
	.last_avail_idx = 7, .used_idx = 5, .signalled_used = 3, .enabled = 1, .event_idx = 1,
	.indirect = 0, .signalled_used_valid = 1,
};

/* Nested field tag 2 holding vq_ref's fields (tags 1..11), as virtio-net/rng/blk wrote it. */
static const uint8_t golden[] = {
	0x02, 0x00, 0x03, 0x00, 0x7c, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00,
	0x08, 0x00, 0x00, 0x00, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
	0x02, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00,
	0x00, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x01, 0x00,
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x05, 0x00, 0x01, 0x00, 0x02, 0x00,
	0x00, 0x00, 0x07, 0x00, 0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00,
	0x05, 0x00, 0x07, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00,
	0x08, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x09, 0x00, 0x01,
	0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x01, 0x00, 0x01, 0x00,
	0x00, 0x00, 0x00, 0x0b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
};

static void test_vq_nest_bytes_unchanged(void **state)
{
	struct state_writer w;
	struct state_reader r, *rp = &r;
	struct state_field f;
	struct vq_state back;

	(void)state;
	sw_init(&w, 4096);
	virtio_vq_state_write_nest(&w, 2, &vq_ref);
	assert_int_equal(sw_error(&w), 0);
	assert_int_equal(w.len, sizeof(golden));
	assert_memory_equal(w.buf, golden, sizeof(golden));
	sw_release(&w);

	sr_init(rp, golden, sizeof(golden), "test");
	assert_true(sr_next(rp, &f) > 0);
	assert_int_equal(f.tag, 2);
	memset(&back, 0x5a, sizeof(back));
	assert_int_equal(virtio_vq_state_read_nest(rp, &f, &back), 0);
	assert_memory_equal(&back, &vq_ref, sizeof(back));
	assert_int_equal(sr_next(rp, &f), 0);
}

/* The balloon's shape: its own index at tag 1, the queue fields from tag 2. */
static void test_vq_fields_from_tag_2(void **state)
{
	struct state_writer w;
	struct state_reader r, sub;
	struct state_field f, g;
	struct vq_state back = { 0 };
	uint8_t idx = 0;
	int ret;

	(void)state;
	sw_init(&w, 4096);
	sw_nest_begin(&w, 2, STATE_F_REQUIRED);
	sw_u8(&w, 1, 2, STATE_F_REQUIRED);
	virtio_vq_state_write(&w, &vq_ref, 2);
	sw_u8(&w, 40, 9, 0);			/* an optional field from a newer build: skipped */
	sw_nest_end(&w);
	assert_int_equal(sw_error(&w), 0);
	/* Same fields as the golden nest, each tag one higher, plus the index and the extra. */
	sr_init(&r, w.buf, w.len, "test");
	assert_true(sr_next(&r, &f) > 0);
	assert_int_equal(sr_nested(&r, &f, &sub), 0);
	while ((ret = sr_next(&sub, &g)) > 0) {
		if (g.tag == 1)
			assert_int_equal(sr_u8(&g, &idx), 0);
		else
			assert_int_equal(virtio_vq_state_read_field(&sub, &g, &back, 2), 0);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(idx, 2);
	assert_memory_equal(&back, &vq_ref, sizeof(back));
	sw_release(&w);
}

/*
 * virtio_vq_state_write_indexed writes exactly the balloon's hand-built queue nest (index at
 * tag 1, fields from tag 2), and reads it back; a nest without an index reads as 0xff.
 */
static void test_vq_indexed_nest(void **state)
{
	struct state_writer hand, w;
	struct state_reader r;
	struct state_field f;
	struct vq_state back;
	uint8_t idx = 0;

	(void)state;
	sw_init(&hand, 4096);
	sw_nest_begin(&hand, 6, STATE_F_REQUIRED);
	sw_u8(&hand, 1, 3, STATE_F_REQUIRED);
	virtio_vq_state_write(&hand, &vq_ref, 2);
	sw_nest_end(&hand);
	sw_init(&w, 4096);
	virtio_vq_state_write_indexed(&w, 6, 3, &vq_ref);
	assert_int_equal(sw_error(&w), 0);
	assert_int_equal(w.len, hand.len);
	assert_memory_equal(w.buf, hand.buf, w.len);

	sr_init(&r, w.buf, w.len, "test");
	assert_true(sr_next(&r, &f) > 0);
	memset(&back, 0x5a, sizeof(back));
	assert_int_equal(virtio_vq_state_read_indexed(&r, &f, &idx, &back), 0);
	assert_int_equal(idx, 3);
	assert_memory_equal(&back, &vq_ref, sizeof(back));
	sw_release(&w);

	/* Without the index field: 0xff, for the caller's range check to refuse. */
	sw_release(&hand);
	sw_init(&hand, 4096);
	sw_nest_begin(&hand, 6, STATE_F_REQUIRED);
	virtio_vq_state_write(&hand, &vq_ref, 2);
	sw_nest_end(&hand);
	sr_init(&r, hand.buf, hand.len, "test");
	assert_true(sr_next(&r, &f) > 0);
	assert_int_equal(virtio_vq_state_read_indexed(&r, &f, &idx, &back), 0);
	assert_int_equal(idx, 0xff);
	/* The queue-0 shape (fields from tag 1) is not an indexed nest: tag 1 is a u64 there. */
	sr_init(&r, golden, sizeof(golden), "test");
	assert_true(sr_next(&r, &f) > 0);
	assert_true(virtio_vq_state_read_indexed(&r, &f, &idx, &back) < 0);
	sw_release(&hand);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vq_indexed_nest),
		cmocka_unit_test(test_vq_nest_bytes_unchanged),
		cmocka_unit_test(test_vq_fields_from_tag_2),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
