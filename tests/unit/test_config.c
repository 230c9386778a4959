// SPDX-License-Identifier: MIT
/* vmm command line: defaults, every option, sizes, and the one-line errors for bad input. */
/* argv arrays of string literals, as main() gets them */
#pragma GCC diagnostic ignored "-Wdiscarded-qualifiers"
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/config.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])) - 1)

static int parse(int argc, char **argv, struct vm_config *cfg, char *err)
{
	return config_parse(argc, argv, cfg, err, 256);
}

static void test_defaults(void **state)
{
	char *argv[] = { "vmm", "--kernel", "bz", NULL };
	struct vm_config c;
	char err[256];

	assert_int_equal(parse(ARGC(argv), argv, &c, err), CONFIG_OK);
	assert_string_equal(c.kernel, "bz");
	assert_null(c.initrd);
	assert_string_equal(c.append, "");
	assert_int_equal(c.mem_bytes, 512ull << 20);
	assert_int_equal(c.cpus, 1);
	assert_null(c.console_file);
	assert_null(c.control_path);
	assert_string_equal(c.kvm_path, "/dev/kvm");
	assert_false(c.allow_emulated);
}

static void test_all_options(void **state)
{
	char *argv[] = { "vmm", "--kernel", "k", "--initrd", "i", "--append", "console=ttyS0 quiet",
			 "--memory=2G", "--cpus", "4", "--console", "file:/tmp/c.log",
			 "--control", "/run/x.sock", "--allow-emulated", "--kvm-device", "/dev/null", NULL };
	struct vm_config c;
	char err[256];

	assert_int_equal(parse(ARGC(argv), argv, &c, err), CONFIG_OK);
	assert_string_equal(c.initrd, "i");
	assert_string_equal(c.append, "console=ttyS0 quiet");
	assert_int_equal(c.mem_bytes, 2ull << 30);
	assert_int_equal(c.cpus, 4);
	assert_string_equal(c.console_file, "/tmp/c.log");
	assert_string_equal(c.control_path, "/run/x.sock");
	assert_true(c.allow_emulated);
	assert_string_equal(c.kvm_path, "/dev/null");
}

static void test_sizes(void **state)
{
	uint64_t v;

	assert_int_equal(config_parse_size("512M", &v), 0);
	assert_int_equal(v, 512ull << 20);
	assert_int_equal(config_parse_size("2G", &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(config_parse_size("4608m", &v), 0);
	assert_int_equal(v, 4608ull << 20);
	assert_int_equal(config_parse_size("1024K", &v), 0);
	assert_int_equal(v, 1ull << 20);
	assert_int_equal(config_parse_size("256", &v), 0);	/* MiB without a suffix */
	assert_int_equal(v, 256ull << 20);
	assert_int_equal(config_parse_size("1GiB", &v), 0);
	assert_int_equal(v, 1ull << 30);
	assert_int_equal(config_parse_size("", &v), -EINVAL);
	assert_int_equal(config_parse_size("G", &v), -EINVAL);
	assert_int_equal(config_parse_size("-1G", &v), -EINVAL);
	assert_int_equal(config_parse_size("12X", &v), -EINVAL);
	assert_int_equal(config_parse_size("1G2", &v), -EINVAL);
	assert_int_equal(config_parse_size("99999999999999T", &v), -ERANGE);
}

static void expect_error(char **argv, int argc, const char *needle)
{
	struct vm_config c;
	char err[256];

	assert_int_equal(parse(argc, argv, &c, err), -EINVAL);
	assert_non_null(strstr(err, needle));
	assert_null(strchr(err, '\n'));		/* one line */
}

static void test_errors(void **state)
{
	char *none[] = { "vmm", NULL };
	char *both[] = { "vmm", "--kernel", "k", "--firmware", "f", NULL };
	char *mem[] = { "vmm", "--kernel", "k", "--memory", "lots", NULL };
	char *small[] = { "vmm", "--kernel", "k", "--memory", "1M", NULL };
	char *odd[] = { "vmm", "--kernel", "k", "--memory", "3001K", NULL };
	char *cpus0[] = { "vmm", "--kernel", "k", "--cpus", "0", NULL };
	char *cpusx[] = { "vmm", "--kernel", "k", "--cpus", "2x", NULL };
	char *cpusneg[] = { "vmm", "--kernel", "k", "--cpus", "-1", NULL };
	char *cpusbig[] = { "vmm", "--kernel", "k", "--cpus", "5000", NULL };
	char *console[] = { "vmm", "--kernel", "k", "--console", "tcp:1", NULL };
	char *unknown[] = { "vmm", "--kernel", "k", "--frobnicate", NULL };
	char *missing[] = { "vmm", "--kernel", NULL };
	char *extra[] = { "vmm", "--kernel", "k", "stray", NULL };
	char *fwinitrd[] = { "vmm", "--firmware", "f", "--initrd", "i", NULL };

	expect_error(none, ARGC(none), "--kernel or --firmware is required");
	expect_error(both, ARGC(both), "exclude each other");
	expect_error(mem, ARGC(mem), "not a size");
	expect_error(small, ARGC(small), "at least 2M");
	expect_error(odd, ARGC(odd), "multiple of 4K");
	expect_error(cpus0, ARGC(cpus0), "--cpus '0'");
	expect_error(cpusx, ARGC(cpusx), "--cpus '2x'");
	expect_error(cpusneg, ARGC(cpusneg), "--cpus '-1'");
	expect_error(cpusbig, ARGC(cpusbig), "--cpus '5000'");
	expect_error(console, ARGC(console), "file:PATH");
	expect_error(unknown, ARGC(unknown), "unknown option '--frobnicate'");
	expect_error(missing, ARGC(missing), "--kernel needs an argument");
	expect_error(extra, ARGC(extra), "unexpected argument 'stray'");
	expect_error(fwinitrd, ARGC(fwinitrd), "--initrd needs --kernel");
}

/* --net takes tap= and/or network=, and mac=, in any order; --name names the VM */
static void test_nics(void **state)
{
	/* writable copies: option parsing cuts the values in place, as it may with argv */
	char a1[] = "tap=tap0,mac=52:54:00:00:00:01", a2[] = "network=lan", a3[] = "mac=02:00:00:00:00:09,network=nat0,tap=vx1";
	char *argv[] = { "vmm", "--kernel", "k", "--net", a1, "--net", a2, "--net", a3, "--name", "web1", NULL };
	char b1[] = "mac=52:54:00:00:00:01", b2[] = "tap=t,tap=u", b3[] = "network=", b4[] = "tap=x,color=red";
	char *nomain[] = { "vmm", "--kernel", "k", "--net", b1, NULL };
	char *twice[] = { "vmm", "--kernel", "k", "--net", b2, NULL };
	char *empty[] = { "vmm", "--kernel", "k", "--net", b3, NULL };
	char *unknown[] = { "vmm", "--kernel", "k", "--net", b4, NULL };
	char *badname[] = { "vmm", "--kernel", "k", "--name", "a/b", NULL };
	char h1[] = "tap=h,tx-hold-us=250", h2[] = "tap=h,tx-hold-us=100001", h3[] = "tap=h,tx-hold-us=5x",
	     h4[] = "tap=h,tx-hold-us=";
	char *hold[] = { "vmm", "--kernel", "k", "--net", h1, NULL };
	char *hold_big[] = { "vmm", "--kernel", "k", "--net", h2, NULL };
	char *hold_junk[] = { "vmm", "--kernel", "k", "--net", h3, NULL };
	char *hold_empty[] = { "vmm", "--kernel", "k", "--net", h4, NULL };
	struct vm_config c;
	char err[256];

	assert_int_equal(parse(ARGC(hold), hold, &c, err), CONFIG_OK);
	assert_int_equal(c.nics[0].tx_hold_us, 250);
	expect_error(hold_big, ARGC(hold_big), "--net 'tap=h,tx-hold-us=100001'");
	expect_error(hold_junk, ARGC(hold_junk), "--net 'tap=h,tx-hold-us=5x'");
	expect_error(hold_empty, ARGC(hold_empty), "N 0..100000");
	assert_int_equal(parse(ARGC(argv), argv, &c, err), CONFIG_OK);
	assert_int_equal(c.nr_nics, 3);
	assert_int_equal(c.nics[0].tx_hold_us, -1);	/* not given: the device default */
	assert_string_equal(c.nics[0].tap, "tap0");
	assert_null(c.nics[0].network);
	assert_true(c.nics[0].mac_set);
	assert_int_equal(c.nics[0].mac[5], 1);
	assert_null(c.nics[1].tap);
	assert_string_equal(c.nics[1].network, "lan");
	assert_false(c.nics[1].mac_set);
	assert_string_equal(c.nics[2].tap, "vx1");
	assert_string_equal(c.nics[2].network, "nat0");
	assert_int_equal(c.nics[2].mac[5], 9);
	assert_string_equal(c.name, "web1");
	expect_error(nomain, ARGC(nomain), "--net 'mac=52:54:00:00:00:01': expected tap=NAME and/or network=NAME");
	expect_error(twice, ARGC(twice), "--net 'tap=t,tap=u'");
	expect_error(empty, ARGC(empty), "--net 'network='");
	expect_error(unknown, ARGC(unknown), "--net 'tap=x,color=red'");
	expect_error(badname, ARGC(badname), "--name 'a/b'");
}

static void test_help_and_reparse(void **state)
{
	char *help[] = { "vmm", "--help", NULL };
	char *fw[] = { "vmm", "--firmware", "t.bin", "--cpus", "2", NULL };
	struct vm_config c;
	char err[256];

	assert_int_equal(parse(ARGC(help), help, &c, err), CONFIG_HELP);
	assert_non_null(strstr(config_usage(), "exit status"));
	assert_non_null(strstr(config_usage(), "3  the guest asked for a reboot"));
	/* getopt state is reset: a second parse in the same process sees all options */
	assert_int_equal(parse(ARGC(fw), fw, &c, err), CONFIG_OK);
	assert_string_equal(c.firmware, "t.bin");
	assert_int_equal(c.cpus, 2);
}

/* --disk PATH[,ro][,direct][,serial=S][,queues=N]: queues 0 (= one per vCPU) unless given */
static void test_disks(void **state)
{
	char a1[] = "/img/a.raw", a2[] = "/img/b.raw,ro,queues=4,serial=SN1", a3[] = "/dev/ram0,direct,queues=16";
	char *argv[] = { "vmm", "--kernel", "k", "--cpus", "2", "--disk", a1, "--disk", a2, "--disk", a3, NULL };
	char b1[] = "x.img,queues=0", b2[] = "x.img,queues=17", b3[] = "x.img,queues=", b4[] = "x.img,queues=2x",
	     b5[] = "x.img,queues=-1";
	char *bad[][6] = {
		{ "vmm", "--kernel", "k", "--disk", b1, NULL }, { "vmm", "--kernel", "k", "--disk", b2, NULL },
		{ "vmm", "--kernel", "k", "--disk", b3, NULL }, { "vmm", "--kernel", "k", "--disk", b4, NULL },
		{ "vmm", "--kernel", "k", "--disk", b5, NULL },
	};
	struct vm_config c;
	char err[256];

	assert_int_equal(parse(ARGC(argv), argv, &c, err), CONFIG_OK);
	assert_int_equal(c.nr_disks, 3);
	assert_string_equal(c.disks[0].path, "/img/a.raw");
	assert_int_equal(c.disks[0].queues, 0);
	assert_string_equal(c.disks[1].path, "/img/b.raw");
	assert_true(c.disks[1].read_only);
	assert_int_equal(c.disks[1].queues, 4);
	assert_string_equal(c.disks[1].serial, "SN1");
	assert_true(c.disks[2].direct);
	assert_int_equal(c.disks[2].queues, 16);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error(bad[i], 5, "queues 1..16");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_all_options),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_nics),
		cmocka_unit_test(test_disks),
		cmocka_unit_test(test_help_and_reparse),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
