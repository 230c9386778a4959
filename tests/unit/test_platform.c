// SPDX-License-Identifier: MIT
/*
 * The platform as the VM core sees it: its port map on a real PIO bus (devices reachable at
 * their ISA addresses, exit requests delivered), and the "platform" state section: saved
 * from one platform, loaded into a fresh one through the state stream, guest-visible
 * registers equal afterwards; a corrupt device list is refused without touching the device.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/bus.h"
#include "vmm/dev/pm.h"
#include "vmm/platform.h"
#include "vmm/state.h"

struct exits {
	int n[3];
	int code;
};

static void on_exit_req(void *opaque, enum platform_exit why, int code)
{
	struct exits *e = opaque;

	e->n[why]++;
	e->code = code;
}

struct fx {
	struct bus pio, mmio;
	struct platform *p;
	struct exits ex;
};

static void fx_make(struct fx *f)
{
	struct platform_env env;

	memset(f, 0, sizeof(*f));
	assert_int_equal(bus_init(&f->pio, "pio"), 0);
	assert_int_equal(bus_init(&f->mmio, "mmio"), 0);
	env = (struct platform_env){ .pio = &f->pio, .mmio = &f->mmio, .vm_fd = -1,
				     .nr_cpus = 1, .console_out_fd = -1,
				     .request_exit = on_exit_req, .opaque = &f->ex };
	assert_int_equal(platform_create(&env, &f->p), 0);
}

static void fx_free(struct fx *f)
{
	platform_destroy(f->p);
	assert_int_equal(f->pio.nr, 0);		/* every range unregistered */
	bus_destroy(&f->pio);
	bus_destroy(&f->mmio);
}

static uint32_t in(struct fx *f, uint16_t port, uint32_t len)
{
	uint32_t v = 0;

	assert_true(bus_dispatch(&f->pio, port, &v, len, false));
	return v;
}

static void out(struct fx *f, uint16_t port, uint32_t v, uint32_t len)
{
	assert_true(bus_dispatch(&f->pio, port, &v, len, true));
}

static void test_port_map(void **unused)
{
	struct fx f;

	fx_make(&f);
	/* COM1 scratch, CMOS RAM, i8042 self test, PM1 control, POST, speaker */
	out(&f, 0x3ff, 0x5a, 1);
	assert_int_equal(in(&f, 0x3ff, 1), 0x5a);
	out(&f, 0x70, 0x40, 1);
	out(&f, 0x71, 0x99, 1);
	out(&f, 0x70, 0x40, 1);
	assert_int_equal(in(&f, 0x71, 1), 0x99);
	out(&f, 0x64, 0xaa, 1);
	assert_int_equal(in(&f, 0x60, 1), 0x55);
	assert_int_equal(in(&f, PLATFORM_PM_PORT + PM_CNT_OFF, 2) & 1, 1);	/* SCI_EN */
	out(&f, 0x80, 0x12, 1);
	/* Exits: debug port, S5, reset register, i8042 pulse, 0xCF9 */
	out(&f, 0xf4, 0x2a, 4);
	assert_int_equal(f.ex.n[PLATFORM_EXIT_DEBUG], 1);
	assert_int_equal(f.ex.code, 0x2a);
	out(&f, PLATFORM_PM_PORT + PM_CNT_OFF, PM_SLP_TYP_S5 << 10 | PM1_CNT_SLP_EN, 2);
	assert_int_equal(f.ex.n[PLATFORM_EXIT_POWEROFF], 1);
	out(&f, PLATFORM_PM_PORT + PM_RESET_OFF, PM_RESET_VALUE, 1);
	out(&f, 0x64, 0xfe, 1);
	out(&f, 0xcf9, 0x06, 1);
	assert_int_equal(f.ex.n[PLATFORM_EXIT_RESET], 3);
	platform_reset_control_write(f.p, 0x02);
	assert_int_equal(platform_reset_control_read(f.p), 0x02);
	/* Not ours: COM2 is unclaimed, so Linux's probe sees 0xff and skips it. */
	{
		uint8_t v;

		assert_false(bus_dispatch(&f.pio, 0x2f9, &v, 1, false));
	}
	/* Console input and the power button with no KVM behind (vm_fd -1): logged, no crash. */
	platform_console_input(f.p, (const uint8_t *)"k", 1);
	assert_int_equal(in(&f, 0x3fd, 1) & 1, 1);
	assert_int_equal(in(&f, 0x3f8, 1), 'k');
	platform_power_button(f.p);
	assert_int_equal(in(&f, PLATFORM_PM_PORT, 2) & PM1_PWRBTN, PM1_PWRBTN);
	fx_free(&f);
}

static void test_state_round_trip(void **unused)
{
	struct fx a, b;
	struct state_registry ra, rb;
	struct state_mem_sink sink;

	fx_make(&a);
	fx_make(&b);
	state_registry_init(&ra);
	state_registry_init(&rb);
	assert_int_equal(platform_state_register(a.p, &ra), 0);
	assert_int_equal(platform_state_register(b.p, &rb), 0);

	/* Give A some state a guest would have. */
	out(&a, 0x3fb, 0x83, 1);		/* DLAB */
	out(&a, 0x3f8, 0x01, 1);		/* divisor 1 */
	out(&a, 0x3fb, 0x03, 1);
	out(&a, 0x3f9, 0x05, 1);		/* IER */
	out(&a, 0x3fa, 0x01, 1);		/* FIFO on */
	out(&a, 0x3ff, 0x77, 1);
	platform_console_input(a.p, (const uint8_t *)"xyz", 3);
	out(&a, 0x70, 0x50, 1);
	out(&a, 0x71, 0xab, 1);
	out(&a, 0x64, 0x60, 1);
	out(&a, 0x60, 0x61, 1);			/* i8042 command byte */
	out(&a, PLATFORM_PM_PORT + 2, PM1_PWRBTN, 2);
	platform_power_button(a.p);

	state_mem_sink_init(&sink);
	assert_int_equal(state_save_all(&ra, &sink.sink), 0);
	assert_int_equal(state_load_buf(&rb, sink.buf, sink.len, NULL), 0);

	out(&b, 0x3fb, 0x83, 1);
	assert_int_equal(in(&b, 0x3f8, 1), 0x01);
	out(&b, 0x3fb, 0x03, 1);
	assert_int_equal(in(&b, 0x3f9, 1), 0x05);
	assert_int_equal(in(&b, 0x3ff, 1), 0x77);
	assert_int_equal(in(&b, 0x3fa, 1), 0xc4);	/* FIFO on, data pending */
	assert_int_equal(in(&b, 0x3f8, 1), 'x');
	assert_int_equal(in(&b, 0x3f8, 1), 'y');
	assert_int_equal(in(&b, 0x3f8, 1), 'z');
	out(&b, 0x70, 0x50, 1);
	assert_int_equal(in(&b, 0x71, 1), 0xab);
	out(&b, 0x64, 0x20, 1);
	assert_int_equal(in(&b, 0x60, 1), 0x61);
	assert_int_equal(in(&b, PLATFORM_PM_PORT, 4), (uint32_t)PM1_PWRBTN << 16 | PM1_PWRBTN);

	/* A flipped byte is caught by the stream's crc before the device changes. */
	sink.buf[sink.len - 10] ^= 0xff;
	out(&b, 0x3ff, 0x11, 1);
	assert_int_not_equal(state_load_buf(&rb, sink.buf, sink.len, NULL), 0);
	assert_int_equal(in(&b, 0x3ff, 1), 0x11);

	free(sink.buf);
	state_registry_destroy(&ra);
	state_registry_destroy(&rb);
	fx_free(&a);
	fx_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_port_map),
		cmocka_unit_test(test_state_round_trip),
	};
	return cmocka_run_group_tests_name("platform", tests, NULL, NULL);
}
