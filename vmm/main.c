// SPDX-License-Identifier: MIT
/*
 * vmm: one process per VM. Parse the command line, refuse hosts that cannot run the guest,
 * build the VM, then run the event loop on this (main) thread until the guest stops: console
 * input, the control socket, termination signals. The exit status says why the VM stopped
 * (the table is in config.c's usage text and enum vm_exit_status).
 */
#define LOG_TAG "vmm"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "migrate/migration.h"
#include "vmm/config.h"
#include "vmm/ctl.h"
#include "vmm/kvm_detect.h"
#include "vmm/lib/evloop.h"
#include "vmm/lib/log.h"
#include "vmm/platform.h"
#include "vmm/vm.h"
#include "vmm/virtio/net.h"
#include "net/announce.h"


struct vmm {
	struct vm *vm;
	struct evloop loop;
	struct ev_req stop_req, stdin_req, sig_req;
	int sig_fd;
	bool stdin_console;
	bool escape;			/* saw Ctrl-A on the console */
	bool tty_raw;
	struct termios tty_saved;
	struct ctl_server *ctl;
	struct mig_ctx *mig;
	struct announce announce;	/* RARP rounds after --incoming/--restore */
};

/*
 * The VM now runs here after a migration or a restore: tell the LAN (RARP out of every tap,
 * net/announce.h) and the guest (VIRTIO_NET_S_ANNOUNCE: its own GARP + unsolicited NA).
 */
static void announce_nics(struct vmm *m)
{
	struct announce_nic nics[ANNOUNCE_MAX_NICS];
	unsigned int i, n = 0;

	for (i = 0; i < m->vm->nr_nets && n < ANNOUNCE_MAX_NICS; i++) {
		struct announce_nic *a = &nics[n];

		memset(a, 0, sizeof(*a));
		if (virtio_net_announce_target(m->vm->nets[i], &a->fd, a->mac, &a->vnet_hdr_len) < 0)
			continue;
		a->guest_announce = virtio_net_announce(m->vm->nets[i]);
		n++;
	}
	if (n && announce_start(&m->announce, &m->loop, nics, n, ANNOUNCE_ROUNDS) < 0)
		log_warn("announce: could not start the announce rounds");
}

static void tty_restore(struct vmm *m)
{
	if (m->tty_raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &m->tty_saved);
		m->tty_raw = false;
	}
}

/* Raw mode only for a terminal: keystrokes go to the guest unprocessed (Ctrl-A x quits). */
static void tty_make_raw(struct vmm *m)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &m->tty_saved) < 0)
		return;
	t = m->tty_saved;
	cfmakeraw(&t);
	t.c_oflag |= OPOST | ONLCR;	/* host-side messages stay readable */
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0)
		m->tty_raw = true;
}

static void on_stop(struct evloop *l, struct ev_req *req, int res)
{
	evloop_stop(l);
}

static void on_signal(struct evloop *l, struct ev_req *req, int res)
{
	struct vmm *m = req->opaque;
	struct signalfd_siginfo si;

	if (read(m->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		log_info("signal %u: stopping the VM", si.ssi_signo);
		vm_request_stop(m->vm, VM_STOP_KILLED, si.ssi_signo);
	}
}

static void on_stdin(struct evloop *l, struct ev_req *req, int res)
{
	struct vmm *m = req->opaque;
	uint8_t buf[256], out[256];
	size_t n = 0;
	ssize_t len;

	len = read(STDIN_FILENO, buf, sizeof(buf));
	if (len <= 0) {
		/* EOF or error: no more console input; keep running headless. */
		if (len == 0 || (errno != EAGAIN && errno != EINTR))
			evloop_cancel(l, req);
		return;
	}
	for (ssize_t i = 0; i < len; i++) {
		if (m->tty_raw && m->escape) {
			m->escape = false;
			if (buf[i] == 'x') {
				vm_request_stop(m->vm, VM_STOP_KILLED, 0);
				return;
			}
			if (buf[i] != 0x01)
				out[n++] = 0x01;
		} else if (m->tty_raw && buf[i] == 0x01) {
			m->escape = true;
			continue;
		}
		out[n++] = buf[i];
	}
	if (n)
		platform_console_input(m->vm->platform, out, n);
}

static int ctl_status(void *opaque, struct ctl_vm_status *st)
{
	struct vmm *m = opaque;

	st->state = vm_stopped(m->vm) ? CTL_RUN_SHUTDOWN :
		    vm_is_paused(m->vm) ? CTL_RUN_PAUSED : CTL_RUN_RUNNING;
	st->vcpus = m->vm->nr_vcpus;
	st->memory_bytes = m->vm->mem.size;
	st->uptime_ns = 0;
	return 0;
}

/* Per-vCPU KVM_RUN return counts: cheap evidence that a paused VM really stands still. */
static void ctl_status_extra(void *opaque, json_object *ret)
{
	struct vmm *m = opaque;
	json_object *arr = json_object_new_array();
	unsigned int i;

	if (!arr)
		return;
	for (i = 0; i < m->vm->nr_vcpus; i++)
		json_object_array_add(arr, json_object_new_int64(
			(int64_t)__atomic_load_n(&m->vm->vcpus[i].exits, __ATOMIC_RELAXED)));
	json_object_object_add(ret, "vcpu-exits", arr);
}

/* A running migration owns pause/resume (its stop-and-copy and throttling): -EBUSY. */
static int ctl_pause(void *opaque)
{
	struct vmm *m = opaque;

	return mig_busy(m->mig) ? -EBUSY : vm_pause(m->vm);
}

static int ctl_resume(void *opaque)
{
	struct vmm *m = opaque;

	return mig_busy(m->mig) ? -EBUSY : vm_resume(m->vm);
}

static int ctl_powerdown(void *opaque)
{
	platform_power_button(((struct vmm *)opaque)->vm->platform);
	return 0;
}

static int ctl_kill(void *opaque)
{
	vm_request_stop(((struct vmm *)opaque)->vm, VM_STOP_KILLED, 0);
	return 0;
}

static const struct ctl_vm_ops ctl_ops = {
	.status = ctl_status, .status_extra = ctl_status_extra, .pause = ctl_pause, .resume = ctl_resume,
	.powerdown = ctl_powerdown, .kill = ctl_kill, .quit = ctl_kill,
};

/*
 * Refuse a Linux guest at once on a KVM that cannot run it (emulation-only PVM would take
 * hours), with kvm_detect()'s one-line verdict. Tiny --firmware guests run anywhere.
 */
static int check_host(const struct vm_config *cfg)
{
	struct kvm_accel_info info;

	if (cfg->firmware || strcmp(cfg->kvm_path, "/dev/kvm"))
		return 0;
	if (kvm_detect(&info, false) < 0)
		return 0;
	switch (info.accel) {
	case KVM_ACCEL_HARDWARE:
		return 0;
	case KVM_ACCEL_EMULATED:
		if (cfg->allow_emulated)
			return 0;
		/* fall through */
	default:
		fprintf(stderr, "vmm: %s\n", info.line);
		return -ENOTSUP;
	}
}

/*
 * VMM_REPORT_RSS=1: one line at exit with the peak RSS and how much of it is guest RAM (the
 * memfd shows as shared memory), for bench/boot-vmm.sh's "monitor overhead" figure.
 */
static void report_rss(void)
{
	unsigned long hwm = 0, shmem = 0, anon = 0, file = 0, v;
	char line[128];
	FILE *f;

	if (!getenv("VMM_REPORT_RSS") || !(f = fopen("/proc/self/status", "r")))
		return;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "VmHWM: %lu", &v) == 1)
			hwm = v;
		else if (sscanf(line, "RssShmem: %lu", &v) == 1)
			shmem = v;
		else if (sscanf(line, "RssAnon: %lu", &v) == 1)
			anon = v;
		else if (sscanf(line, "RssFile: %lu", &v) == 1)
			file = v;
	}
	fclose(f);
	fprintf(stderr, "vmm-rss: peak_kib=%lu guest_kib=%lu anon_kib=%lu file_kib=%lu overhead_kib=%lu\n",
		hwm, shmem, anon, file, hwm > shmem ? hwm - shmem : 0);
}

static int open_console(const struct vm_config *cfg)
{
	int fd;

	if (!cfg->console_file)
		return STDOUT_FILENO;
	fd = open(cfg->console_file, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		log_err("--console file:%s: %s", cfg->console_file, strerror(errno));
	return fd;
}

static int setup_loop(struct vmm *m, const struct vm_config *cfg)
{
	sigset_t set;
	int ret;

	ret = evloop_init(&m->loop, 64);
	if (ret < 0) {
		log_err("event loop (io_uring): %s", strerror(-ret));
		return ret;
	}
	ev_req_init(&m->stop_req, on_stop, m);
	ret = evloop_poll(&m->loop, &m->stop_req, m->vm->stop_fd, POLLIN, false);
	if (ret < 0)
		return ret;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	m->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (m->sig_fd < 0) {
		ret = -errno;
		log_err("signalfd: %s", strerror(-ret));
		return ret;
	}
	ev_req_init(&m->sig_req, on_signal, m);
	ret = evloop_poll(&m->loop, &m->sig_req, m->sig_fd, POLLIN, true);
	if (ret < 0)
		return ret;

	if (m->stdin_console) {
		fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
		ev_req_init(&m->stdin_req, on_stdin, m);
		ret = evloop_poll(&m->loop, &m->stdin_req, STDIN_FILENO, POLLIN, true);
		if (ret < 0)
			return ret;
	}

	if (cfg->control_path) {
		struct ctl_config cc = { .path = cfg->control_path, .loop = &m->loop,
					 .ops = &ctl_ops, .vm_opaque = m };

		ret = ctl_server_create(&cc, &m->ctl);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct vm_config cfg;
	struct mig_opts mopts;
	struct vmm m;
	char err[256];
	sigset_t set;
	int ret, status, console_fd;

	log_init_from_env();
	memset(&m, 0, sizeof(m));
	m.sig_fd = -1;
	/* --incoming / --restore belong to migrate/; config_parse never sees them. */
	if (mig_args_extract(&argc, argv, &mopts, err, sizeof(err)) < 0) {
		fprintf(stderr, "vmm: %s\n", err);
		return VM_EXIT_USAGE;
	}
	ret = config_parse(argc, argv, &cfg, err, sizeof(err));
	if (ret == CONFIG_HELP) {
		fputs(config_usage(), stdout);
		return 0;
	}
	if (ret < 0) {
		fprintf(stderr, "vmm: %s\n", err);
		return VM_EXIT_USAGE;
	}
	cfg.incoming = mopts.incoming != NULL;
	if (check_host(&cfg) < 0)
		return VM_EXIT_STARTUP;

	/* Block the termination signals before any thread exists: they arrive on signalfd. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGVCPUKICK);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	console_fd = open_console(&cfg);
	if (console_fd < 0)
		return VM_EXIT_STARTUP;
	m.stdin_console = !cfg.console_file;

	ret = vm_create(&cfg, console_fd, &m.vm);
	if (ret < 0)
		return VM_EXIT_STARTUP;
	ret = setup_loop(&m, &cfg);
	if (ret >= 0)
		ret = vm_add_virtio(m.vm, &m.loop);
	if (ret >= 0 && m.ctl)
		ret = vm_devices_ctl_register(m.vm, m.ctl);
	if (ret < 0) {
		status = VM_EXIT_STARTUP;
		goto out;
	}
	/* State sections + control commands; then RAM and state in before any vCPU runs. */
	if (mig_attach(m.vm, &m.loop, m.ctl, &m.mig) < 0 ||
	    mig_prepare_incoming(m.mig, &mopts) < 0) {
		status = VM_EXIT_STARTUP;
		goto out;
	}
	if (m.stdin_console)
		tty_make_raw(&m);
	ret = vm_start(m.vm);
	/* Destination: acknowledge only once the vCPUs run; no ACK → the source keeps the VM. */
	if (ret == 0 && mig_started(m.mig) < 0)
		vm_request_stop(m.vm, VM_STOP_KILLED, 0);
	else if (ret == 0 && (mopts.incoming || mopts.restore) && !cfg.no_announce)
		announce_nics(&m);
	if (ret == 0) {
		ret = evloop_run(&m.loop);
		if (ret < 0) {
			log_err("event loop: %s", strerror(-ret));
			vm_request_stop(m.vm, VM_STOP_INTERNAL, 0);
		}
	}
	status = vm_exit_status(m.vm);
	report_rss();
	tty_restore(&m);
	{
		enum vm_stop_reason r = m.vm->stop_reason;

		if (r == VM_STOP_POWEROFF || r == VM_STOP_DEBUG_EXIT)
			log_dbg("guest %s: exit status %d", vm_stop_reason_name(r), status);
		else
			log_info("guest %s: exit status %d", vm_stop_reason_name(r), status);
	}
out:
	tty_restore(&m);
	mig_detach(m.mig);		/* joins the migration worker before the VM goes */
	if (m.ctl)
		ctl_server_destroy(m.ctl);
	vm_destroy(m.vm);
	if (m.sig_fd >= 0)
		close(m.sig_fd);
	evloop_destroy(&m.loop);
	return status;
}
