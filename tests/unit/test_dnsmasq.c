/* SPDX-License-Identifier: MIT */
/*
 * net/dnsmasq.c and net/rundir.c without root: the configuration text, its refusals, and
 * start/stop against a missing binary and against small shell stand-ins for dnsmasq (one
 * that fails like it, one that daemonizes like it) in a temporary run directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "net/dnsmasq.h"
#include "net/rundir.h"

static char tmpdir[] = "/tmp/test_dnsmasq.XXXXXX";
static char run_dir[256];

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(run_dir, sizeof(run_dir), "%s/run/net/lan0", tmpdir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd);
}

static struct dnsmasq_params params_24(void)
{
	return (struct dnsmasq_params){
		.network = "lan0", .bridge = "vb-lan0", .gateway = 0x0a090001, .prefix = 24,
		.dhcp_start = 0x0a090002, .dhcp_end = 0x0a0900fe, .run_dir = run_dir,
	};
}

/* The text holds @line as a whole line. */
static void assert_line(const char *text, const char *line)
{
	size_t len = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[len] == '\n')
			return;
	fail_msg("no line '%s' in:\n%s", line, text);
}

static void conf_slash24(void **state)
{
	struct dnsmasq_params p = params_24();
	char text[4096], line[512];

	(void)state;
	assert_int_equal(dnsmasq_conf_write(&p, text, sizeof(text)), 0);
	assert_line(text, "strict-order");
	assert_line(text, "bind-dynamic");
	assert_line(text, "interface=vb-lan0");
	assert_line(text, "except-interface=lo");
	assert_line(text, "dhcp-range=10.9.0.2,10.9.0.254,255.255.255.0,3600");
	assert_line(text, "dhcp-lease-max=253");
	assert_line(text, "dhcp-option=option:router,10.9.0.1");
	assert_line(text, "dhcp-authoritative");
	snprintf(line, sizeof(line), "dhcp-leasefile=%s/dnsmasq.leases", run_dir);
	assert_line(text, line);
	snprintf(line, sizeof(line), "pid-file=%s/dnsmasq.pid", run_dir);
	assert_line(text, line);
	/* upstream DNS: the host's resolv.conf unless told otherwise */
	assert_null(strstr(text, "no-resolv"));
	assert_null(strstr(text, "resolv-file"));
	assert_null(strstr(text, "listen-address"));
}

static void conf_slash16(void **state)
{
	struct dnsmasq_params p = params_24();
	char text[4096];

	(void)state;
	p.prefix = 16;
	p.gateway = 0x0a140001;		/* 10.20.0.1 */
	p.dhcp_start = 0x0a140100;	/* 10.20.1.0 */
	p.dhcp_end = 0x0a14fffe;	/* 10.20.255.254 */
	p.lease_secs = 600;
	p.resolv_file = "";
	assert_int_equal(dnsmasq_conf_write(&p, text, sizeof(text)), 0);
	assert_line(text, "dhcp-range=10.20.1.0,10.20.255.254,255.255.0.0,600");
	assert_line(text, "dhcp-lease-max=65279");
	assert_line(text, "dhcp-option=option:router,10.20.0.1");
	assert_line(text, "no-resolv");
	p.resolv_file = "/etc/vmctl/resolv.conf";
	assert_int_equal(dnsmasq_conf_write(&p, text, sizeof(text)), 0);
	assert_line(text, "resolv-file=/etc/vmctl/resolv.conf");
	assert_null(strstr(text, "no-resolv"));
}

static void conf_refusals(void **state)
{
	struct dnsmasq_params p = params_24();
	char text[4096], small[64];
	size_t need;

	(void)state;
	assert_int_equal(dnsmasq_conf_write(&p, small, sizeof(small)), -ENOSPC);
	assert_int_equal(dnsmasq_conf_write(&p, text, 0), -ENOSPC);
	/* the exact size fits; one byte short of it does not */
	assert_int_equal(dnsmasq_conf_write(&p, text, sizeof(text)), 0);
	need = strlen(text) + 1;
	assert_int_equal(dnsmasq_conf_write(&p, text, need - 1), -ENOSPC);
	assert_int_equal(dnsmasq_conf_write(&p, text, need), 0);
	assert_int_equal(strlen(text) + 1, need);

	p.bridge = "vb-lan0\ndhcp-script=/bin/evil";	/* a smuggled line */
	assert_int_equal(dnsmasq_conf_write(&p, text, sizeof(text)), -EINVAL);
	p.bridge = "vb-0123456789abc";			/* 16 characters */
	assert_int_equal(dnsmasq_conf_write(&p, text, sizeof(text)), -EINVAL);
	p = params_24();
	p.run_dir = "relative/dir";
	assert_int_equal(dnsmasq_conf_write(&p, text, sizeof(text)), -EINVAL);
	p = params_24();
	p.dhcp_end = 0x0a0a0001;			/* outside the /24 */
	assert_int_equal(dnsmasq_conf_write(&p, text, sizeof(text)), -EINVAL);
	p = params_24();
	p.dhcp_start = 0x0a090010;
	p.dhcp_end = 0x0a09000f;			/* reversed */
	assert_int_equal(dnsmasq_conf_write(&p, text, sizeof(text)), -EINVAL);
	p = params_24();
	p.prefix = 0;
	assert_int_equal(dnsmasq_conf_write(&p, text, sizeof(text)), -EINVAL);
}

static void write_script(const char *path, const char *body)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fprintf(f, "#!/bin/sh\n%s", body);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, 0755), 0);
}

static void start_missing_binary(void **state)
{
	struct dnsmasq_params p = params_24();
	struct stat st;

	(void)state;
	setenv("VMCTL_DNSMASQ", "/nonexistent", 1);
	assert_int_equal(dnsmasq_start(&p), -ENOENT);
	unsetenv("VMCTL_DNSMASQ");
	/* nothing made, nothing running, and stopping nothing is fine */
	assert_int_not_equal(stat(run_dir, &st), 0);
	assert_int_equal(dnsmasq_running(run_dir), 0);
	assert_int_equal(dnsmasq_stop(run_dir), 0);
}

static void start_refused(void **state)
{
	struct dnsmasq_params p = params_24();
	char fake[300], conf[300];

	(void)state;
	snprintf(fake, sizeof(fake), "%s/fake-failing-dnsmasq", tmpdir);
	write_script(fake, "echo 'dnsmasq: failed to create listening socket: Address in use' >&2\n"
		     "exit 2\n");
	setenv("VMCTL_DNSMASQ", fake, 1);
	assert_int_equal(dnsmasq_start(&p), -EIO);
	unsetenv("VMCTL_DNSMASQ");
	assert_int_equal(dnsmasq_running(run_dir), 0);
	snprintf(conf, sizeof(conf), "%s/dnsmasq.conf", run_dir);
	assert_int_not_equal(access(conf, F_OK), 0);	/* no configuration without its dnsmasq */
}

/*
 * A stand-in that daemonizes like dnsmasq: a background process whose command line carries
 * the --conf-file argument, its pid in the pid file, and the foreground part exits 0.
 */
static void start_idempotent_stop(void **state)
{
	struct dnsmasq_params p = params_24();
	char fake[300], pidfile[300], conf[300];
	FILE *f;
	int pid, pid2;

	(void)state;
	snprintf(fake, sizeof(fake), "%s/fake-dnsmasq", tmpdir);
	write_script(fake,
		     "dir=$(dirname \"${1#--conf-file=}\")\n"
		     "sh -c 'trap \"exit 0\" TERM; while :; do sleep 0.1; done' fake \"$1\" "
		     "</dev/null >/dev/null 2>&1 &\n"
		     "echo $! > \"$dir/dnsmasq.pid\"\n");
	setenv("VMCTL_DNSMASQ", fake, 1);
	assert_int_equal(dnsmasq_start(&p), 0);
	assert_int_equal(dnsmasq_running(run_dir), 1);
	snprintf(pidfile, sizeof(pidfile), "%s/dnsmasq.pid", run_dir);
	assert_non_null(f = fopen(pidfile, "r"));
	assert_int_equal(fscanf(f, "%d", &pid), 1);
	fclose(f);
	/* again: the same process, not a second one */
	assert_int_equal(dnsmasq_start(&p), 0);
	assert_non_null(f = fopen(pidfile, "r"));
	assert_int_equal(fscanf(f, "%d", &pid2), 1);
	fclose(f);
	assert_int_equal(pid, pid2);
	unsetenv("VMCTL_DNSMASQ");

	assert_int_equal(dnsmasq_stop(run_dir), 0);
	assert_int_equal(dnsmasq_running(run_dir), 0);
	assert_int_not_equal(access(pidfile, F_OK), 0);
	snprintf(conf, sizeof(conf), "%s/dnsmasq.conf", run_dir);
	assert_int_not_equal(access(conf, F_OK), 0);
	assert_int_equal(dnsmasq_stop(run_dir), 0);
}

/* A pid file naming a process that is not ours (here: this test) is never signalled. */
static void stop_spares_unrelated_pid(void **state)
{
	char pidfile[300];
	FILE *f;

	(void)state;
	assert_int_equal(net_mkdir_p(run_dir, 0755), 0);
	snprintf(pidfile, sizeof(pidfile), "%s/dnsmasq.pid", run_dir);
	assert_non_null(f = fopen(pidfile, "w"));
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
	assert_int_equal(dnsmasq_running(run_dir), 0);
	assert_int_equal(dnsmasq_stop(run_dir), 0);	/* we are still here */
	assert_int_not_equal(access(pidfile, F_OK), 0);
}

static void run_dir_paths(void **state)
{
	char buf[256], deep[300];
	struct stat st;

	(void)state;
	unsetenv("VMCTL_RUN_DIR");
	assert_int_equal(net_run_dir("lan0", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/run/vmctl/net/lan0");
	setenv("VMCTL_RUN_DIR", "/tmp/x", 1);
	assert_int_equal(net_run_dir("lan0", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/tmp/x/net/lan0");
	assert_int_equal(net_run_dir("lan0", buf, 10), -ENAMETOOLONG);
	assert_int_equal(net_run_dir("../etc", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(net_run_dir("", buf, sizeof(buf)), -EINVAL);
	unsetenv("VMCTL_RUN_DIR");

	snprintf(deep, sizeof(deep), "%s/a/b/c", tmpdir);
	assert_int_equal(net_mkdir_p(deep, 0755), 0);
	assert_int_equal(net_mkdir_p(deep, 0755), 0);	/* already there */
	assert_int_equal(stat(deep, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(conf_slash24),
		cmocka_unit_test(conf_slash16),
		cmocka_unit_test(conf_refusals),
		cmocka_unit_test(start_missing_binary),
		cmocka_unit_test(start_refused),
		cmocka_unit_test(start_idempotent_stop),
		cmocka_unit_test(stop_spares_unrelated_pid),
		cmocka_unit_test(run_dir_paths),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
