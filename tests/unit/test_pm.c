// SPDX-License-Identifier: MIT
/*
 * ACPI fixed hardware: PM1 status write-1-to-clear, the SCI level following status & enable,
 * the power button, S5 power-off, the reset register and 0xCF9, the PM timer rate; plus the
 * debug-exit port. Interrupts and exit requests go to recorders.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "vmm/dev/debugexit.h"
#include "vmm/dev/pm.h"

struct rec {
	int sci, sci_calls;
	unsigned int sci_gsi;
	int exits[3];		/* per enum platform_exit */
	int last_code;
};

static struct timespec fake_mono;

static void fake_clock(void *opaque, struct timespec *ts)
{
	*ts = fake_mono;
}

static void rec_sci(void *opaque, unsigned int gsi, int level)
{
	struct rec *r = opaque;

	r->sci = level;
	r->sci_gsi = gsi;
	r->sci_calls++;
}

static void rec_exit(void *opaque, enum platform_exit why, int code)
{
	struct rec *r = opaque;

	r->exits[why]++;
	r->last_code = code;
}

struct fx {
	struct pm *pm;
	struct rec rec;
};

static int setup(void **state)
{
	static struct fx f;
	struct pm_config cfg;

	memset(&f, 0, sizeof(f));
	cfg = (struct pm_config){ .sci = { rec_sci, &f.rec, 9 }, .request_exit = rec_exit,
				  .opaque = &f.rec, .now = fake_clock };
	if (pm_create(&cfg, &f.pm) < 0)
		return -1;
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	pm_destroy(f->pm);
	return 0;
}

static uint32_t rd(struct fx *f, unsigned int off, unsigned int len)
{
	uint32_t v = 0;

	pm_ops.read(f->pm, off, &v, len);
	return v;
}

static void wr(struct fx *f, unsigned int off, uint32_t v, unsigned int len)
{
	pm_ops.write(f->pm, off, &v, len);
}

static void test_power_button_sci(void **state)
{
	struct fx *f = *state;
	struct pm_regs regs;

	assert_int_equal(rd(f, PM_CNT_OFF, 2) & PM1_CNT_SCI_EN, PM1_CNT_SCI_EN);
	/* Not enabled: status latches, no SCI. */
	pm_power_button(f->pm);
	assert_int_equal(rd(f, PM_EVT_OFF, 2) & PM1_PWRBTN, PM1_PWRBTN);
	assert_int_equal(f->rec.sci, 0);
	/* Enabling a pending event raises the SCI (level-triggered on GSI 9). */
	wr(f, PM_EVT_OFF + 2, PM1_PWRBTN, 2);
	assert_int_equal(f->rec.sci, 1);
	assert_int_equal(f->rec.sci_gsi, 9);
	/* Writing 0 to the status bit does nothing; writing 1 clears it and drops the SCI. */
	wr(f, PM_EVT_OFF, 0, 2);
	assert_int_equal(f->rec.sci, 1);
	wr(f, PM_EVT_OFF, PM1_PWRBTN, 2);
	assert_int_equal(f->rec.sci, 0);
	assert_int_equal(rd(f, PM_EVT_OFF, 2) & PM1_PWRBTN, 0);
	/* Pressed again while enabled: SCI at once; a 32-bit access covers STS and EN. */
	pm_power_button(f->pm);
	assert_int_equal(f->rec.sci, 1);
	assert_int_equal(rd(f, PM_EVT_OFF, 4), (uint32_t)PM1_PWRBTN << 16 | PM1_PWRBTN);
	wr(f, PM_EVT_OFF, (uint32_t)PM1_PWRBTN << 16 | PM1_PWRBTN, 4);
	assert_int_equal(f->rec.sci, 0);
	pm_get_regs(f->pm, &regs);
	assert_int_equal(regs.en, PM1_PWRBTN);
	assert_int_equal(regs.sts, 0);
	/* Disabling while pending drops the line too. */
	pm_power_button(f->pm);
	assert_int_equal(f->rec.sci, 1);
	wr(f, PM_EVT_OFF + 2, 0, 2);
	assert_int_equal(f->rec.sci, 0);
	assert_int_equal(f->rec.exits[PLATFORM_EXIT_POWEROFF], 0);
}

static void test_s5_poweroff(void **state)
{
	struct fx *f = *state;
	uint32_t typ5 = PM_SLP_TYP_S5 << PM1_CNT_SLP_TYP_SHIFT;

	/* ACPICA writes SLP_TYP first, then SLP_TYP | SLP_EN. */
	wr(f, PM_CNT_OFF, typ5, 2);
	assert_int_equal(f->rec.exits[PLATFORM_EXIT_POWEROFF], 0);
	assert_int_equal(rd(f, PM_CNT_OFF, 2), typ5 | PM1_CNT_SCI_EN);	/* SLP_EN write-only */
	wr(f, PM_CNT_OFF, typ5 | PM1_CNT_SLP_EN, 2);
	assert_int_equal(f->rec.exits[PLATFORM_EXIT_POWEROFF], 1);
	/* Another sleep type (no \_S3 in the DSDT) is logged, not obeyed. */
	wr(f, PM_CNT_OFF, 1u << PM1_CNT_SLP_TYP_SHIFT | PM1_CNT_SLP_EN, 2);
	assert_int_equal(f->rec.exits[PLATFORM_EXIT_POWEROFF], 1);
	/* Byte-wise write of the high byte with SLP_EN also works. */
	wr(f, PM_CNT_OFF + 1, (typ5 | PM1_CNT_SLP_EN) >> 8, 1);
	assert_int_equal(f->rec.exits[PLATFORM_EXIT_POWEROFF], 2);
}

static void test_reset_paths(void **state)
{
	struct fx *f = *state;

	wr(f, PM_RESET_OFF, 0x01, 1);
	assert_int_equal(f->rec.exits[PLATFORM_EXIT_RESET], 0);
	wr(f, PM_RESET_OFF, PM_RESET_VALUE, 1);
	assert_int_equal(f->rec.exits[PLATFORM_EXIT_RESET], 1);
	/* Linux's 0xCF9 sequence: SYS_RST, then SYS_RST|RST_CPU -> one reset. */
	pm_cf9_write(f->pm, 0x02);
	assert_int_equal(f->rec.exits[PLATFORM_EXIT_RESET], 1);
	assert_int_equal(pm_cf9_read(f->pm), 0x02);
	pm_cf9_write(f->pm, 0x06);
	assert_int_equal(f->rec.exits[PLATFORM_EXIT_RESET], 2);
	assert_int_equal(pm_cf9_read(f->pm) & 0x04, 0);
	/* Through the bus ops as well. */
	{
		uint8_t v = 0x0e;

		pm_cf9_ops.write(f->pm, 0, &v, 1);
	}
	assert_int_equal(f->rec.exits[PLATFORM_EXIT_RESET], 3);
}

static void test_pm_timer(void **state)
{
	struct fx *f = *state;
	uint32_t t0, t1;

	fake_mono.tv_sec = 100;
	fake_mono.tv_nsec = 0;
	t0 = rd(f, PM_TMR_OFF, 4);
	fake_mono.tv_sec = 101;
	t1 = rd(f, PM_TMR_OFF, 4);
	assert_int_equal((uint32_t)(t1 - t0), (uint32_t)PM_TMR_HZ);
	fake_mono.tv_nsec = 1000;		/* 1 us = 3.58 ticks */
	assert_in_range((uint32_t)(rd(f, PM_TMR_OFF, 4) - t1), 3, 4);
	/* Writes to the timer are ignored. */
	wr(f, PM_TMR_OFF, 0, 4);
	assert_int_equal(rd(f, PM_TMR_OFF, 4), t1 + 3);
	/* Reserved offsets read 0. */
	assert_int_equal(rd(f, 0x6, 2), 0);
}

static void test_debug_exit(void **state)
{
	struct rec r = { 0 };
	struct debugexit de = { rec_exit, &r };
	uint32_t v = 0x1234567;
	uint8_t b = 3;
	uint16_t w = 0x101;

	debugexit_ops.write(&de, 0, &b, 1);
	assert_int_equal(r.exits[PLATFORM_EXIT_DEBUG], 1);
	assert_int_equal(r.last_code, 3);
	debugexit_ops.write(&de, 0, &w, 2);
	assert_int_equal(r.last_code, 0x101);
	debugexit_ops.write(&de, 0, &v, 4);
	assert_int_equal(r.last_code, 0x1234567);
	/* Misaligned: ignored. */
	debugexit_ops.write(&de, 1, &b, 1);
	assert_int_equal(r.exits[PLATFORM_EXIT_DEBUG], 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_power_button_sci, setup, teardown),
		cmocka_unit_test_setup_teardown(test_s5_poweroff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pm_timer, setup, teardown),
		cmocka_unit_test(test_debug_exit),
	};
	return cmocka_run_group_tests_name("pm", tests, NULL, NULL);
}
