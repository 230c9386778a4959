/* SPDX-License-Identifier: MIT */
/* net/netstore.c on a real temporary state directory: define, duplicate, overlap, lookup, list, undefine. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <cmocka.h>

#include "net/netstore.h"

static char tmpdir[] = "/tmp/test_netstore.XXXXXX";

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(tmpdir))
		return -1;
	return setenv("VMCTL_STATE_DIR", tmpdir, 1);
}

static int teardown(void **state)
{
	char p[128];

	(void)state;
	snprintf(p, sizeof(p), "%s/networks", tmpdir);
	rmdir(p);
	return rmdir(tmpdir);
}

static void define_lookup_list_undefine(void **state)
{
	struct netdef d, all[8];
	char p[128];

	(void)state;
	assert_int_equal(net_list(all, 8), 0);			/* no directory yet */
	assert_int_equal(net_define("{\"name\":\"n1\",\"type\":\"nat\",\"subnet\":\"10.5.0.0/16\"}", &d), 0);
	assert_int_equal(net_define("{\"name\":\"n1\",\"type\":\"nat\",\"subnet\":\"10.6.0.0/16\"}", NULL), -EEXIST);
	assert_int_equal(net_define("{\"name\":\"n2\",\"type\":\"nat\",\"subnet\":\"10.5.3.0/24\"}", NULL), -EADDRINUSE);
	assert_int_equal(net_define("{\"name\":\"n2\",\"type\":\"nat\",\"subnet\":\"10.5.3.1/24\"}", NULL), -EINVAL);
	assert_int_equal(net_define("{\"name\":\"b1\",\"type\":\"bridged\",\"host_port\":\"eth0\"}", NULL), 0);
	assert_int_equal(net_list(all, 8), 2);
	/* the refused defines left no file behind */
	snprintf(p, sizeof(p), "%s/networks/n2.json", tmpdir);
	assert_int_not_equal(access(p, F_OK), 0);
	snprintf(p, sizeof(p), "%s/networks/n1.json.tmp", tmpdir);
	assert_int_not_equal(access(p, F_OK), 0);
	memset(&d, 0, sizeof(d));
	assert_int_equal(net_lookup("n1", &d), 0);
	assert_int_equal(d.subnet, 0x0a050000u);
	assert_int_equal(d.prefix, 16);
	assert_int_equal(net_lookup("nope", &d), -ENOENT);
	assert_int_equal(net_lookup("../x", &d), -EINVAL);
	assert_int_equal(net_undefine("n1"), 0);
	assert_int_equal(net_undefine("n1"), -ENOENT);
	/* with n1 gone the overlapping subnet is free */
	assert_int_equal(net_define("{\"name\":\"n2\",\"type\":\"nat\",\"subnet\":\"10.5.3.0/24\"}", NULL), 0);
	assert_int_equal(net_list(all, 8), 2);
	assert_int_equal(net_undefine("n2"), 0);
	assert_int_equal(net_undefine("b1"), 0);
	assert_int_equal(net_list(all, 8), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(define_lookup_list_undefine),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
