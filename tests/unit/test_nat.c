/* SPDX-License-Identifier: MIT */
/*
 * net/nat.c's refusals, which come before any netlink (so no root is needed): bad network
 * names, bridge names and subnets are -EINVAL. The kernel side is tests/host/net-nat-bare.sh.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <cmocka.h>

#include "net/nat.h"

static void apply_refuses_bad_input(void **state)
{
	(void)state;
	assert_int_equal(nat_apply("lan0", 0x0a090000, 24, "vb-0123456789abcdef"), -EINVAL);
	assert_int_equal(nat_apply("lan0", 0x0a090000, 24, ""), -EINVAL);
	assert_int_equal(nat_apply("lan0", 0x0a090000, 24, NULL), -EINVAL);
	assert_int_equal(nat_apply("", 0x0a090000, 24, "vb-lan0"), -EINVAL);
	assert_int_equal(nat_apply("a-name-of-13c", 0x0a090000, 24, "vb-lan0"), -EINVAL);
	assert_int_equal(nat_apply("lan0", 0x0a090001, 24, "vb-lan0"), -EINVAL);	/* host bits */
	assert_int_equal(nat_apply("lan0", 0x0a090000, 0, "vb-lan0"), -EINVAL);
	assert_int_equal(nat_apply("lan0", 0x0a090000, 33, "vb-lan0"), -EINVAL);
}

static void remove_and_exists_refuse_bad_names(void **state)
{
	(void)state;
	assert_int_equal(nat_remove(""), -EINVAL);
	assert_int_equal(nat_remove(NULL), -EINVAL);
	assert_int_equal(nat_exists("a-name-of-13c"), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(apply_refuses_bad_input),
		cmocka_unit_test(remove_and_exists_refuse_bad_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
