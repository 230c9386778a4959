// SPDX-License-Identifier: MIT
/*
 * migrate/precopy + dest + ctl glue, in one process on the real /dev/kvm: VM A runs a guest
 * loop that keeps incrementing one word in each of 1024 pages; it is live-migrated over
 * loopback TCP into VM B (whose vCPUs never start). Afterwards B's RAM equals A's byte for
 * byte (A's vCPUs are stopped at the switch-over, so A's RAM is the final truth) and B's
 * registers equal A's. A cancelled migration leaves A running, unpaused, with dirty logging
 * off. The --incoming/--restore option extraction is tested on its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate/migration.h"
#include "vmm/config.h"
#include "vmm/kvm.h"
#include "vmm/lib/evloop.h"
#include "vmm/vm.h"

/* mov $0x400000,%edi; 1: incq (%rdi); add $4096,%rdi; cmp $0x800000,%rdi; jb 1b; jmp start */
static const uint8_t guest_loop[] = {
	0xbf, 0x00, 0x00, 0x40, 0x00, 0x48, 0xff, 0x07, 0x48, 0x81, 0xc7, 0x00,
	0x10, 0x00, 0x00, 0x48, 0x81, 0xff, 0x00, 0x00, 0x80, 0x00, 0x72, 0xed,
	0xeb, 0xe6,
};

static void test_args_extract(void **state)
{
	char a0[] = "vmm", a1[] = "--firmware", a2[] = "x.bin", a3[] = "--incoming",
	     a4[] = "1.2.3.4:5", a5[] = "--memory", a6[] = "32M", a7[] = "--restore=/s";
	char *argv[] = { a0, a1, a2, a3, a4, a5, a6, NULL, NULL };
	char *argv2[] = { a0, a7, a1, a2, NULL };
	char *argv3[] = { a0, a3, a4, a7, NULL };
	char *argv4[] = { a0, a3, NULL };
	struct mig_opts o;
	char err[128];
	int argc = 7;

	assert_int_equal(mig_args_extract(&argc, argv, &o, err, sizeof(err)), 0);
	assert_int_equal(argc, 5);
	assert_string_equal(o.incoming, "1.2.3.4:5");
	assert_null(o.restore);
	assert_string_equal(argv[3], "--memory");
	assert_string_equal(argv[4], "32M");
	assert_null(argv[5]);
	argc = 4;
	assert_int_equal(mig_args_extract(&argc, argv2, &o, err, sizeof(err)), 0);
	assert_string_equal(o.restore, "/s");
	assert_int_equal(argc, 3);
	argc = 4;
	assert_int_equal(mig_args_extract(&argc, argv3, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "exclude"));
	argc = 2;
	assert_int_equal(mig_args_extract(&argc, argv4, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "needs an argument"));
}

struct fixture {
	char fw[64];
	struct vm_config cfg;
	struct vm *a, *b;
	struct evloop loop;
	struct mig_ctx *ma, *mb;
	int devnull;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	sigset_t set;
	int fd;

	*state = NULL;
	snprintf(f->fw, sizeof(f->fw), "/tmp/test_precopy.%d.bin", getpid());
	fd = open(f->fw, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, guest_loop, sizeof(guest_loop)) != sizeof(guest_loop))
		return -1;
	close(fd);
	f->cfg.firmware = f->fw;
	f->cfg.append = "";
	f->cfg.mem_bytes = 16ull << 20;
	f->cfg.cpus = 1;
	f->cfg.kvm_path = "/dev/kvm";
	f->devnull = open("/dev/null", O_WRONLY);
	sigemptyset(&set);
	sigaddset(&set, SIGVCPUKICK);
	pthread_sigmask(SIG_BLOCK, &set, NULL);	/* as main.c: only vCPU threads take kicks */
	signal(SIGPIPE, SIG_IGN);
	if (access("/dev/kvm", R_OK | W_OK) || vm_create(&f->cfg, f->devnull, &f->a) < 0) {
		unlink(f->fw);
		free(f);
		return 0;
	}
	assert_int_equal(vm_create(&f->cfg, f->devnull, &f->b), 0);
	assert_int_equal(evloop_init(&f->loop, 16), 0);
	assert_int_equal(mig_attach(f->a, &f->loop, NULL, &f->ma), 0);
	assert_int_equal(mig_attach(f->b, &f->loop, NULL, &f->mb), 0);
	assert_int_equal(vm_start(f->a), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (!f)
		return 0;
	mig_detach(f->ma);
	mig_detach(f->mb);
	/* run what the worker posted (its end), then drop the loop */
	evloop_run_once(&f->loop, 0);
	vm_destroy(f->a);
	vm_destroy(f->b);
	evloop_destroy(&f->loop);
	close(f->devnull);
	unlink(f->fw);
	free(f);
	return 0;
}

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

struct dest_arg {
	struct mig_ctx *m;
	char uri[64];
	int ret;
};

static void *dest_thread(void *arg)
{
	struct dest_arg *d = arg;

	d->ret = mig_dest_run(d->m, d->uri);
	if (d->ret == 0)
		d->ret = mig_dest_ack(d->m);	/* the test never starts B's vCPUs */
	return NULL;
}

static enum mig_phase_pub phase(struct mig_ctx *m)
{
	enum mig_phase_pub p;

	pthread_mutex_lock(&m->lock);
	p = m->st.phase;
	pthread_mutex_unlock(&m->lock);
	return p;
}

/* Drive the loop until the migration ends (bounded). */
static enum mig_phase_pub run_until_end(struct fixture *f, int secs)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		enum mig_phase_pub p = phase(f->ma);

		if (p == MIG_ST_COMPLETED || p == MIG_ST_FAILED || p == MIG_ST_CANCELLED)
			return p;
		evloop_run_once(&f->loop, 50 * 1000000ull);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > secs)
			return MIG_ST_NONE;
	}
}

static void start_dest(struct dest_arg *d, struct mig_ctx *mb, pthread_t *t)
{
	struct timespec ts = { 1, 0 };

	d->m = mb;
	snprintf(d->uri, sizeof(d->uri), "127.0.0.1:%d", free_port());
	assert_int_equal(pthread_create(t, NULL, dest_thread, d), 0);
	nanosleep(&ts, NULL);		/* listening (generous: ASan on a loaded machine) */
}

static void test_cancel_keeps_source_running(void **state)
{
	struct fixture *f = *state;
	struct dest_arg d;
	struct mig_params p;
	struct timespec ts = { 0, 300 * 1000000 };
	uint64_t exits;
	pthread_t t;

	if (!f)
		skip();
	start_dest(&d, f->mb, &t);
	mig_params_default(&p);
	snprintf(p.uri, sizeof(p.uri), "%s", d.uri);
	p.bandwidth = 1u << 20;			/* round 0 takes seconds */
	assert_int_equal(mig_precopy_start(f->ma, &p), 0);
	assert_int_equal(mig_precopy_start(f->ma, &p), -EBUSY);
	nanosleep(&ts, NULL);
	assert_int_equal(mig_precopy_cancel(f->ma), 0);
	assert_int_equal(run_until_end(f, 20), MIG_ST_CANCELLED);
	pthread_join(t, NULL);
	assert_true(d.ret < 0);			/* the destination gave up */
	assert_false(f->a->paused);
	assert_false(vm_stopped(f->a));
	/* still running: the guest's counters keep moving (slowly on a loaded emulating KVM) */
	exits = *(volatile uint64_t *)((uint8_t *)f->a->mem.base + 0x400000);
	for (int i = 0; i < 50 && *(volatile uint64_t *)((uint8_t *)f->a->mem.base + 0x400000) == exits; i++)
		nanosleep(&ts, NULL);
	assert_true(*(volatile uint64_t *)((uint8_t *)f->a->mem.base + 0x400000) > exits);
	assert_int_equal(mig_precopy_cancel(f->ma), -ENOENT);
}

static void test_live_migration_byte_exact(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs ra, rb;
	struct dest_arg d;
	struct mig_params p;
	pthread_t t;

	if (!f)
		skip();
	start_dest(&d, f->mb, &t);
	mig_params_default(&p);
	snprintf(p.uri, sizeof(p.uri), "%s", d.uri);
	p.zstd_level = 1;
	assert_int_equal(mig_precopy_start(f->ma, &p), 0);
	if (run_until_end(f, 60) != MIG_ST_COMPLETED)
		fail_msg("migration did not complete: %s", f->ma->st.error);
	pthread_join(t, NULL);
	assert_int_equal(d.ret, 0);
	/* the end ran on the loop: A is stopping (its vCPUs were paused at switch-over) */
	evloop_run_once(&f->loop, 0);
	assert_true(vm_stopped(f->a));
	assert_int_equal(f->a->mem.size, f->b->mem.size);
	assert_memory_equal(f->a->mem.base, f->b->mem.base, f->a->mem.size);
	assert_int_equal(kvm_ioctl(f->a->vcpus[0].fd, KVM_GET_REGS, &ra), 0);
	assert_int_equal(kvm_ioctl(f->b->vcpus[0].fd, KVM_GET_REGS, &rb), 0);
	assert_memory_equal(&ra, &rb, sizeof(ra));
	/* the guest did run and write: its counters are non-zero */
	assert_true(*(uint64_t *)((uint8_t *)f->b->mem.base + 0x400000) > 0);
	pthread_mutex_lock(&f->ma->lock);
	assert_true(f->ma->st.downtime_ns > 0);
	assert_true(f->ma->st.total_ns >= f->ma->st.downtime_ns);
	assert_true(f->ma->st.bytes_wire > 0);
	pthread_mutex_unlock(&f->ma->lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_args_extract),
		cmocka_unit_test(test_cancel_keeps_source_running),
		cmocka_unit_test(test_live_migration_byte_exact),
	};
	return cmocka_run_group_tests_name("precopy", tests, setup, teardown);
}
