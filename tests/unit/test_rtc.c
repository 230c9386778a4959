// SPDX-License-Identifier: MIT
/*
 * CMOS/RTC against a fake wall clock: BCD and binary, 24- and 12-hour encodings, the
 * century byte, setting the time (with and without B.SET), UIP timing, status registers,
 * CMOS RAM and the NMI mask bit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "vmm/dev/rtc.h"

static struct timespec fake_now;

static void fake_clock(void *opaque, struct timespec *ts)
{
	*ts = fake_now;
}

static void set_fake(int y, int mon, int d, int h, int mi, int s, long ns)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mon - 1, .tm_mday = d,
			 .tm_hour = h, .tm_min = mi, .tm_sec = s };

	fake_now.tv_sec = timegm(&tm);
	fake_now.tv_nsec = ns;
}

static int setup(void **state)
{
	struct rtc_config cfg = { .now = fake_clock };
	struct rtc *r;

	/* Sunday 2026-11-22 17:04:09.5 UTC */
	set_fake(2026, 11, 22, 17, 4, 9, 500000000L);
	if (rtc_create(&cfg, &r) < 0)
		return -1;
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	rtc_destroy(*state);
	return 0;
}

static uint8_t cmos_rd(struct rtc *r, uint8_t idx)
{
	uint8_t v = 0;

	rtc_ops.write(r, 0, &idx, 1);
	rtc_ops.read(r, 1, &v, 1);
	return v;
}

static void cmos_wr(struct rtc *r, uint8_t idx, uint8_t v)
{
	rtc_ops.write(r, 0, &idx, 1);
	rtc_ops.write(r, 1, &v, 1);
}

static void test_bcd_24h(void **state)
{
	struct rtc *r = *state;

	assert_int_equal(cmos_rd(r, 0x0b) & 0x06, 0x02);	/* BCD, 24h by default */
	assert_int_equal(cmos_rd(r, 0x00), 0x09);
	assert_int_equal(cmos_rd(r, 0x02), 0x04);
	assert_int_equal(cmos_rd(r, 0x04), 0x17);
	assert_int_equal(cmos_rd(r, 0x06), 0x01);		/* Sunday */
	assert_int_equal(cmos_rd(r, 0x07), 0x22);
	assert_int_equal(cmos_rd(r, 0x08), 0x11);
	assert_int_equal(cmos_rd(r, 0x09), 0x26);
	assert_int_equal(cmos_rd(r, 0x32), 0x20);		/* century */
	/* Time moves with the host clock. */
	fake_now.tv_sec += 61;
	assert_int_equal(cmos_rd(r, 0x00), 0x10);
	assert_int_equal(cmos_rd(r, 0x02), 0x05);
}

static void test_binary_12h(void **state)
{
	struct rtc *r = *state;

	cmos_wr(r, 0x0b, 0x04);					/* binary, 12h */
	assert_int_equal(cmos_rd(r, 0x00), 9);
	assert_int_equal(cmos_rd(r, 0x04), 0x80 | 5);		/* 5 PM */
	assert_int_equal(cmos_rd(r, 0x09), 26);
	assert_int_equal(cmos_rd(r, 0x32), 20);
	set_fake(2026, 11, 22, 0, 30, 0, 0);			/* 12:30 AM */
	assert_int_equal(cmos_rd(r, 0x04), 12);
	set_fake(2026, 11, 22, 12, 30, 0, 0);			/* 12:30 PM */
	assert_int_equal(cmos_rd(r, 0x04), 0x80 | 12);
	cmos_wr(r, 0x0b, 0x00);					/* BCD, 12h */
	set_fake(2026, 11, 22, 23, 0, 0, 0);
	assert_int_equal(cmos_rd(r, 0x04), 0x80 | 0x11);
}

static void test_set_time(void **state)
{
	struct rtc *r = *state;

	/* With SET: registers freeze, writes take effect when SET clears. */
	cmos_wr(r, 0x0b, 0x82);
	fake_now.tv_sec += 5;
	assert_int_equal(cmos_rd(r, 0x00), 0x09);		/* frozen */
	assert_int_equal(cmos_rd(r, 0x0a) & 0x80, 0);		/* no UIP while SET */
	cmos_wr(r, 0x09, 0x30);					/* 2030 */
	cmos_wr(r, 0x08, 0x01);
	cmos_wr(r, 0x07, 0x15);
	cmos_wr(r, 0x04, 0x08);
	cmos_wr(r, 0x02, 0x00);
	cmos_wr(r, 0x00, 0x00);
	cmos_wr(r, 0x0b, 0x02);
	assert_int_equal(cmos_rd(r, 0x09), 0x30);
	assert_int_equal(cmos_rd(r, 0x08), 0x01);
	assert_int_equal(cmos_rd(r, 0x07), 0x15);
	assert_int_equal(cmos_rd(r, 0x04), 0x08);
	assert_int_equal(cmos_rd(r, 0x06), 0x03);		/* 2030-01-15 is a Tuesday */
	fake_now.tv_sec += 3;
	assert_int_equal(cmos_rd(r, 0x00), 0x03);		/* and it runs from there */
	/* Without SET, a single field write applies at once. */
	cmos_wr(r, 0x02, 0x45);
	assert_int_equal(cmos_rd(r, 0x02), 0x45);
	assert_int_equal(cmos_rd(r, 0x04), 0x08);
	/* Garbage from the guest is tolerated. */
	cmos_wr(r, 0x08, 0xff);
	cmos_wr(r, 0x07, 0x00);
	(void)cmos_rd(r, 0x08);
}

static void test_status_and_uip(void **state)
{
	struct rtc *r = *state;

	assert_int_equal(cmos_rd(r, 0x0a), 0x26);
	assert_int_equal(cmos_rd(r, 0x0d), 0x80);		/* VRT */
	assert_int_equal(cmos_rd(r, 0x0c), 0x00);
	fake_now.tv_nsec = 999900000L;				/* inside the 244 us window */
	assert_int_equal(cmos_rd(r, 0x0a), 0xa6);
	fake_now.tv_nsec = 999700000L;
	assert_int_equal(cmos_rd(r, 0x0a), 0x26);
	cmos_wr(r, 0x0a, 0xff);					/* UIP is read-only */
	fake_now.tv_nsec = 0;
	assert_int_equal(cmos_rd(r, 0x0a), 0x7f);
	cmos_wr(r, 0x0d, 0x00);					/* read-only */
	assert_int_equal(cmos_rd(r, 0x0d), 0x80);
}

static void test_cmos_ram_and_nmi(void **state)
{
	struct rtc *r = *state;

	for (unsigned int i = 0x0e; i < 0x80; i++)
		if (i != 0x32)
			cmos_wr(r, (uint8_t)i, (uint8_t)(i ^ 0x5a));
	for (unsigned int i = 0x0e; i < 0x80; i++)
		if (i != 0x32)
			assert_int_equal(cmos_rd(r, (uint8_t)i), (uint8_t)(i ^ 0x5a));
	/* Bit 7 of the index masks NMIs and does not change the register selected. */
	assert_false(rtc_nmi_masked(r));
	assert_int_equal(cmos_rd(r, 0x80 | 0x20), 0x20 ^ 0x5a);
	assert_true(rtc_nmi_masked(r));
	assert_int_equal(cmos_rd(r, 0x20), 0x20 ^ 0x5a);
	assert_false(rtc_nmi_masked(r));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bcd_24h, setup, teardown),
		cmocka_unit_test_setup_teardown(test_binary_12h, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_and_uip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmos_ram_and_nmi, setup, teardown),
	};
	return cmocka_run_group_tests_name("rtc", tests, NULL, NULL);
}
