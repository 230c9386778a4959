// SPDX-License-Identifier: MIT
/* i8042: status/OBF, self tests, command byte, keyboard replies, and the reset paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/dev/i8042.h"

static int resets;

static void on_reset(void *opaque)
{
	resets++;
}

static int setup(void **state)
{
	struct i8042_config cfg = { .reset = on_reset };
	struct i8042 *k;

	resets = 0;
	if (i8042_create(&cfg, &k) < 0)
		return -1;
	*state = k;
	return 0;
}

static int teardown(void **state)
{
	i8042_destroy(*state);
	return 0;
}

static uint8_t status(struct i8042 *k)
{
	uint8_t v;

	i8042_cmd_ops.read(k, 0, &v, 1);
	return v;
}

static uint8_t data(struct i8042 *k)
{
	uint8_t v;

	i8042_data_ops.read(k, 0, &v, 1);
	return v;
}

static void cmd(struct i8042 *k, uint8_t c)
{
	i8042_cmd_ops.write(k, 0, &c, 1);
}

static void out(struct i8042 *k, uint8_t v)
{
	i8042_data_ops.write(k, 0, &v, 1);
}

static void test_status_and_self_test(void **state)
{
	struct i8042 *k = *state;

	assert_int_equal(status(k) & 0x03, 0x00);	/* no output, input buffer never full */
	assert_int_equal(status(k) & 0x04, 0x04);	/* SYS */
	cmd(k, 0xaa);
	assert_int_equal(status(k) & 0x01, 0x01);
	assert_int_equal(data(k), 0x55);
	assert_int_equal(status(k) & 0x01, 0x00);
	cmd(k, 0xab);
	assert_int_equal(data(k), 0x00);
	assert_int_equal(status(k) & 0x08, 0x08);	/* last write was a command */
}

static void test_command_byte(void **state)
{
	struct i8042 *k = *state;

	cmd(k, 0x60);
	out(k, 0x65);
	assert_int_equal(status(k) & 0x08, 0x00);
	cmd(k, 0x20);
	assert_int_equal(data(k), 0x65);
	cmd(k, 0xad);				/* disable keyboard: CTR bit 4 */
	cmd(k, 0x20);
	assert_int_equal(data(k), 0x75);
}

static void test_keyboard_replies(void **state)
{
	struct i8042 *k = *state;

	out(k, 0xff);
	assert_int_equal(data(k), 0xfa);
	assert_int_equal(data(k), 0xaa);
	out(k, 0xf2);
	assert_int_equal(data(k), 0xfa);
	assert_int_equal(data(k), 0xab);
	assert_int_equal(data(k), 0x83);
	out(k, 0xed);				/* LEDs + argument: two ACKs */
	out(k, 0x07);
	assert_int_equal(data(k), 0xfa);
	assert_int_equal(data(k), 0xfa);
	assert_int_equal(status(k) & 0x01, 0x00);
	/* A flood of commands never overflows anything. */
	for (int i = 0; i < 100; i++)
		out(k, 0xf2);
	assert_int_equal(status(k) & 0x01, 0x01);
	assert_int_equal(resets, 0);
}

static void test_reset_pulse(void **state)
{
	struct i8042 *k = *state;

	cmd(k, 0xff);				/* pulse nothing: no reset */
	assert_int_equal(resets, 0);
	cmd(k, 0xfe);				/* Linux's reboot: pulse bit 0 */
	assert_int_equal(resets, 1);
	cmd(k, 0xd1);				/* output port with A20 but reset low */
	out(k, 0x02);
	assert_int_equal(resets, 2);
	cmd(k, 0xd1);
	out(k, 0x03);
	assert_int_equal(resets, 2);
	cmd(k, 0xd0);
	assert_int_equal(data(k), 0x03);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_status_and_self_test, setup, teardown),
		cmocka_unit_test_setup_teardown(test_command_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyboard_replies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_pulse, setup, teardown),
	};
	return cmocka_run_group_tests_name("i8042", tests, NULL, NULL);
}
