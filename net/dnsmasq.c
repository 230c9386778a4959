/* SPDX-License-Identifier: MIT */
/* net/dnsmasq.c: a NAT network's dnsmasq — its configuration, start, stop, and "is it ours". */
#define LOG_TAG "dnsmasq"
#include "net/dnsmasq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net/rundir.h"
#include "vmm/lib/log.h"

#define DNSMASQ_DEFAULT_BIN "/usr/sbin/dnsmasq"
#define DNSMASQ_DEFAULT_LEASE_SECS 3600
/* dnsmasq's parent exits once the daemon is set up (sockets bound, pid file written). */
#define DNSMASQ_START_TIMEOUT_MS 10000
#define DNSMASQ_STOP_TIMEOUT_MS 5000
#define DNSMASQ_PIDFILE_GRACE_MS 2000
#define DNSMASQ_POLL_MS 20

static const char *dnsmasq_binary(void)
{
	const char *bin = getenv("VMCTL_DNSMASQ");

	return bin && *bin ? bin : DNSMASQ_DEFAULT_BIN;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* <run_dir>/<file>; the run directory must be absolute because dnsmasq runs in "/". */
static int run_path(const char *run_dir, const char *file, char *buf, size_t len)
{
	int n;

	if (!run_dir || run_dir[0] != '/') {
		log_err("run directory '%s' is not an absolute path", run_dir ? run_dir : "");
		return -EINVAL;
	}
	n = snprintf(buf, len, "%s/%s", run_dir, file);
	if (n < 0 || (size_t)n >= len) {
		log_err("run directory %s: path too long", run_dir);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* The argument that identifies our dnsmasq on its command line. */
static int conf_arg(const char *run_dir, char *buf, size_t len)
{
	char conf[PATH_MAX];
	int ret = run_path(run_dir, "dnsmasq.conf", conf, sizeof(conf));
	int n;

	if (ret)
		return ret;
	n = snprintf(buf, len, "--conf-file=%s", conf);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* A value we put on a line of the file: no control characters, so nothing can add a line. */
static bool line_safe(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static void fmt_ip(uint32_t ip, char buf[INET_ADDRSTRLEN])
{
	struct in_addr a = { .s_addr = htonl(ip) };

	inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

struct text {
	char *buf;
	size_t len, used;
	bool overflow;
};

static void __attribute__((format(printf, 2, 3))) add_line(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->buf + t->used, t->len - t->used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n + 1 >= t->len - t->used) {	/* + 1: the newline */
		t->overflow = true;
		return;
	}
	t->used += n;
	t->buf[t->used++] = '\n';
	t->buf[t->used] = '\0';
}

static int check_params(const struct dnsmasq_params *p)
{
	uint32_t mask = p->prefix >= 1 && p->prefix <= 32 ? ~0u << (32 - p->prefix) : 0;
	const char *net = p->network && *p->network ? p->network : "?";

	if (!p->network || !*p->network || !line_safe(p->network)) {
		log_err("network name missing or not printable");
		return -EINVAL;
	}
	/* An interface name: 1-15 characters, none that dnsmasq's option parser splits on. */
	if (!p->bridge || !*p->bridge || strlen(p->bridge) > 15 || !line_safe(p->bridge) ||
	    strpbrk(p->bridge, " ,/#")) {
		log_err("network %s: bridge name '%s' is not a 1-15 character interface name", net,
			p->bridge ? p->bridge : "");
		return -EINVAL;
	}
	if (!mask || (p->dhcp_start & mask) != (p->gateway & mask) ||
	    (p->dhcp_end & mask) != (p->gateway & mask) || p->dhcp_start > p->dhcp_end) {
		log_err("network %s: dhcp range is not an ordered range in the gateway's /%u subnet",
			net, p->prefix);
		return -EINVAL;
	}
	if (p->resolv_file && !line_safe(p->resolv_file)) {
		log_err("network %s: resolv file name is not printable", net);
		return -EINVAL;
	}
	if (!p->run_dir || p->run_dir[0] != '/' || !line_safe(p->run_dir)) {
		log_err("network %s: run directory '%s' is not a printable absolute path", net,
			p->run_dir ? p->run_dir : "");
		return -EINVAL;
	}
	return 0;
}

int dnsmasq_conf_write(const struct dnsmasq_params *p, char *buf, size_t len)
{
	char gw[INET_ADDRSTRLEN], start[INET_ADDRSTRLEN], end[INET_ADDRSTRLEN], mask[INET_ADDRSTRLEN];
	struct text t = { .buf = buf, .len = len };
	int ret = check_params(p);

	if (ret)
		return ret;
	if (len)
		buf[0] = '\0';
	fmt_ip(p->gateway, gw);
	fmt_ip(p->dhcp_start, start);
	fmt_ip(p->dhcp_end, end);
	fmt_ip(~0u << (32 - p->prefix), mask);
	add_line(&t, "# vmctl network %s: written at each start, edits are lost", p->network);
	/* Ask upstream servers in the order the resolv file lists them, as libvirt does. */
	add_line(&t, "strict-order");
	/*
	 * bind-dynamic with interface= and no listen-address: dnsmasq binds the bridge's own
	 * addresses (following them if they change) and never answers DNS that arrives on any
	 * other interface: libvirt's choice since CVE-2012-3411, where such a dnsmasq answered
	 * queries from outside the host. interface= would add lo implicitly, hence the except.
	 */
	add_line(&t, "bind-dynamic");
	add_line(&t, "interface=%s", p->bridge);
	add_line(&t, "except-interface=lo");
	add_line(&t, "pid-file=%s/dnsmasq.pid", p->run_dir);
	/*
	 * DNS stays on (port 53 on the gateway) so VMs resolve through the host. Upstream: the
	 * host's /etc/resolv.conf by default (dnsmasq's own default, what libvirt relies on), a
	 * given file, or with "" none at all — then it answers only from its local data.
	 */
	if (p->resolv_file && !*p->resolv_file)
		add_line(&t, "no-resolv");
	else if (p->resolv_file)
		add_line(&t, "resolv-file=%s", p->resolv_file);
	add_line(&t, "dhcp-range=%s,%s,%s,%u", start, end, mask,
		 p->lease_secs ? p->lease_secs : DNSMASQ_DEFAULT_LEASE_SECS);
	/* dnsmasq's default of 1000 leases would cap a large range silently. */
	add_line(&t, "dhcp-lease-max=%u", p->dhcp_end - p->dhcp_start + 1);
	add_line(&t, "dhcp-option=option:router,%s", gw);
	/*
	 * The only DHCP server on this bridge: answer a VM asking for an address we have no lease
	 * for (leases lost, VM migrated in) at once instead of making it wait and start over.
	 */
	add_line(&t, "dhcp-authoritative");
	add_line(&t, "dhcp-leasefile=%s/dnsmasq.leases", p->run_dir);
	if (t.overflow) {
		log_err("network %s: dnsmasq configuration does not fit in %zu bytes", p->network, len);
		return -ENOSPC;
	}
	return 0;
}

/* The pid the pid file of @run_dir names, 0 if none (absent, empty, garbage). */
static pid_t read_pid_file(const char *run_dir)
{
	char path[PATH_MAX], text[32];
	ssize_t n;
	long pid;
	char *end;
	int fd;

	if (run_path(run_dir, "dnsmasq.pid", path, sizeof(path)))
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	errno = 0;
	pid = strtol(text, &end, 10);
	if (errno || end == text || (*end && *end != '\n') || pid <= 1 || pid > INT_MAX)
		return 0;
	return pid;
}

/* Whether process @pid has @arg as one of its arguments (a zombie has none). */
static bool has_arg(pid_t pid, const char *arg)
{
	char path[64], cmdline[8192];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, cmdline, sizeof(cmdline) - 1);
	close(fd);
	if (n <= 0)
		return false;
	cmdline[n] = '\0';
	for (char *a = cmdline; a < cmdline + n; a += strlen(a) + 1)
		if (!strcmp(a, arg))
			return true;
	return false;
}

/* Our dnsmasq's pid for @run_dir, 0 if none runs, -errno on a bad run directory. */
static pid_t our_pid(const char *run_dir)
{
	char arg[PATH_MAX + 16];
	int ret = conf_arg(run_dir, arg, sizeof(arg));
	pid_t pid;

	if (ret)
		return ret;
	pid = read_pid_file(run_dir);
	return pid > 0 && has_arg(pid, arg) ? pid : 0;
}

int dnsmasq_running(const char *run_dir)
{
	return our_pid(run_dir) > 0;
}

/* Write @text to @path through a temporary file and rename, so dnsmasq never reads half. */
static int write_atomically(const char *network, const char *path, const char *text)
{
	char tmp[PATH_MAX + 8];
	size_t len = strlen(text);
	int fd, ret = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		log_err("network %s: creating %s: %s", network, tmp, strerror(errno));
		return ret;
	}
	if (write(fd, text, len) != (ssize_t)len)
		ret = -EIO;
	if (close(fd) && !ret)
		ret = -EIO;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret) {
		log_err("network %s: writing %s: %s", network, path, strerror(-ret));
		unlink(tmp);
	}
	return ret;
}

/* What dnsmasq wrote to stderr (its reason for refusing to start), as one line. */
static void read_reason(int fd, char *buf, size_t len)
{
	size_t used = 0, lead;
	ssize_t n;

	/* Non-blocking: the daemon may still hold the pipe; only what is already there counts. */
	fcntl(fd, F_SETFL, O_NONBLOCK);
	while (used + 1 < len && (n = read(fd, buf + used, len - 1 - used)) > 0)
		used += n;
	buf[used] = '\0';
	for (char *c = buf; *c; c++)
		if (*c == '\n' || *c == '\r')
			*c = ' ';
	while (used && buf[used - 1] == ' ')
		buf[--used] = '\0';
	lead = strspn(buf, " ");
	memmove(buf, buf + lead, used - lead + 1);
	if (!buf[0])
		snprintf(buf, len, "(no message)");
}

/*
 * Run @bin --conf-file=... with stdin/stdout on /dev/null and stderr into a pipe; wait for the
 * parent to exit (bounded). 0 when it exited 0, else -errno/-EIO with dnsmasq's reason logged.
 */
static int run_dnsmasq(const char *network, const char *bin, const char *arg)
{
	char *const argv[] = { (char *)bin, (char *)arg, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	char reason[512];
	sigset_t none, all;
	int pipefd[2], st = 0, ret, waited;
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC)) {
		ret = -errno;
		log_err("network %s: pipe: %s", network, strerror(errno));
		return ret;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDERR_FILENO);
	/*
	 * The caller's blocked or ignored signals would be inherited through exec (a daemon that
	 * blocks SIGTERM for a signalfd, say), and dnsmasq would then ignore our SIGTERM.
	 */
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	ret = -posix_spawn(&pid, bin, &fa, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	if (ret) {
		log_err("network %s: running %s: %s", network, bin, strerror(-ret));
		close(pipefd[0]);
		return ret;
	}
	for (waited = 0; waited < DNSMASQ_START_TIMEOUT_MS; waited += DNSMASQ_POLL_MS) {
		ret = waitpid(pid, &st, WNOHANG);
		if (ret != 0)
			break;
		sleep_ms(DNSMASQ_POLL_MS);
	}
	if (ret == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		log_err("network %s: %s did not finish starting within %d s", network, bin,
			DNSMASQ_START_TIMEOUT_MS / 1000);
		close(pipefd[0]);
		return -ETIMEDOUT;
	}
	if (ret < 0) {
		ret = -errno;
		log_err("network %s: waiting for %s: %s", network, bin, strerror(errno));
		close(pipefd[0]);
		return ret;
	}
	read_reason(pipefd[0], reason, sizeof(reason));
	close(pipefd[0]);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		log_err("network %s: %s failed to start (%s %d): %s", network, bin,
			WIFEXITED(st) ? "exit status" : "signal",
			WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), reason);
		return -EIO;
	}
	return 0;
}

int dnsmasq_start(const struct dnsmasq_params *p)
{
	char text[4096], conf[PATH_MAX], arg[PATH_MAX + 16];
	const char *bin = dnsmasq_binary();
	int ret, waited;

	ret = dnsmasq_conf_write(p, text, sizeof(text));
	if (ret)
		return ret;
	ret = run_path(p->run_dir, "dnsmasq.conf", conf, sizeof(conf));
	ret = ret ?: conf_arg(p->run_dir, arg, sizeof(arg));
	if (ret)
		return ret;
	if (our_pid(p->run_dir) > 0)
		return 0;
	if (access(bin, X_OK)) {
		ret = -errno;
		if (ret == -ENOENT)
			log_err("%s not found: install dnsmasq-base (scripts/install-deps.sh)", bin);
		else
			log_err("%s: %s", bin, strerror(errno));
		return ret;
	}
	ret = net_mkdir_p(p->run_dir, 0755);
	ret = ret ?: write_atomically(p->network, conf, text);
	if (ret)
		return ret;
	ret = run_dnsmasq(p->network, bin, arg);
	/* dnsmasq writes its pid file before its parent exits 0; a moment's grace all the same. */
	for (waited = 0; !ret && waited < DNSMASQ_PIDFILE_GRACE_MS; waited += DNSMASQ_POLL_MS) {
		if (our_pid(p->run_dir) > 0)
			return 0;
		sleep_ms(DNSMASQ_POLL_MS);
	}
	if (!ret) {
		log_err("network %s: %s exited 0 but no dnsmasq with %s runs", p->network, bin, conf);
		ret = -EIO;
	}
	unlink(conf);	/* all or nothing: no configuration without its dnsmasq */
	return ret;
}

/* Wait up to @ms for process @pid to stop being our dnsmasq (exited, or a zombie). */
static bool wait_gone(pid_t pid, const char *arg, unsigned int ms)
{
	for (unsigned int waited = 0; waited < ms; waited += DNSMASQ_POLL_MS) {
		if (!has_arg(pid, arg))
			return true;
		sleep_ms(DNSMASQ_POLL_MS);
	}
	return !has_arg(pid, arg);
}

int dnsmasq_stop(const char *run_dir)
{
	char arg[PATH_MAX + 16], path[PATH_MAX];
	pid_t pid;
	int ret;

	ret = conf_arg(run_dir, arg, sizeof(arg));
	if (ret)
		return ret;
	pid = our_pid(run_dir);
	if (pid > 0) {
		if (kill(pid, SIGTERM) && errno != ESRCH) {
			ret = -errno;
			log_err("%s: stopping dnsmasq %d: %s", run_dir, (int)pid, strerror(errno));
			return ret;
		}
		if (!wait_gone(pid, arg, DNSMASQ_STOP_TIMEOUT_MS)) {
			log_warn("%s: dnsmasq %d ignored SIGTERM for %d s, killing it", run_dir,
				 (int)pid, DNSMASQ_STOP_TIMEOUT_MS / 1000);
			kill(pid, SIGKILL);
			if (!wait_gone(pid, arg, 1000)) {
				log_err("%s: dnsmasq %d is still there after SIGKILL", run_dir, (int)pid);
				return -ETIMEDOUT;
			}
		}
	}
	/* The leases stay: a restarted network gives each VM the address it had. */
	run_path(run_dir, "dnsmasq.pid", path, sizeof(path));
	unlink(path);
	run_path(run_dir, "dnsmasq.conf", path, sizeof(path));
	unlink(path);
	return 0;
}
