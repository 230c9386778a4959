// SPDX-License-Identifier: MIT
/*
 * kvm_detect() against this machine's real /dev/kvm: the verdict must agree with the vendor
 * module in /sys/module, the calibration must have run and be bounded in time, and the line
 * must say what to do. (The hardware verdict is tested inside the test host by
 * tests/guest/kvm-hardware.sh; here we test whatever this machine is.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/kvm_detect.h"

static bool have(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void test_verdict_matches_module(void **state)
{
	struct kvm_accel_info info;
	double t0 = now();

	(void)state;
	assert_int_equal(kvm_detect(&info, true), 0);
	assert_true(now() - t0 < 3.0);		/* bounded even on an emulation-only KVM */
	assert_true(info.line[0] != '\0');
	assert_non_null(strstr(info.line, "kvm: "));

	if (!have("/dev/kvm")) {
		assert_int_equal(info.accel, KVM_ACCEL_NO_DEVICE);
		return;
	}
	if (have("/sys/module/kvm_pvm")) {
		assert_int_equal(info.accel, KVM_ACCEL_EMULATED);
		assert_string_equal(info.module, "kvm_pvm");
		assert_true(info.mips > 0.0 && info.mips < 10.0);
		assert_non_null(strstr(info.line, "emulation-only"));
		assert_non_null(strstr(info.line, "tests/lab/run"));
	} else if (have("/sys/module/kvm_amd") || have("/sys/module/kvm_intel")) {
		assert_int_equal(info.accel, KVM_ACCEL_HARDWARE);
		assert_true(info.mips >= 10.0);
		assert_non_null(strstr(info.line, "hardware-accelerated"));
	}
}

static void test_without_calibration(void **state)
{
	struct kvm_accel_info a, b;

	(void)state;
	assert_int_equal(kvm_detect(&a, false), 0);
	assert_true(a.mips == 0.0);
	assert_int_equal(kvm_detect(&b, true), 0);
	/* the cheap evidence and the measurement agree on this machine */
	assert_int_equal(a.accel, b.accel);
	assert_string_equal(a.module, b.module);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verdict_matches_module),
		cmocka_unit_test(test_without_calibration),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
