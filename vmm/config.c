// SPDX-License-Identifier: MIT
/*
 * vmm command-line parsing (config.h). getopt_long is used for the usual GNU behaviour
 * (--opt=value and --opt value); optind is reset on entry so tests can call it repeatedly.
 */
#define LOG_TAG "config"
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/config.h"
#include "vmm/virtio/net.h"

static const char usage_text[] =
"usage: vmm --kernel BZIMAGE [--initrd FILE] [--append CMDLINE] [--memory SIZE] [--cpus N]\n"
"           [--console file:PATH] [--control SOCKET] [--allow-emulated] [--kvm-device PATH]\n"
"           [--disk PATH[,ro][,direct][,serial=S][,queues=N]]...\n"
"           [--net tap=NAME|network=NAME[,mac=MAC]]... [--name NAME]\n"
"           [--rng] [--balloon[=stats=SEC][,deflate-on-oom=on|off]]\n"
"       vmm --firmware FLAT.bin [--memory SIZE] [--cpus N] [--console file:PATH]\n"
"\n"
"  --kernel PATH        Linux bzImage, booted through its 64-bit entry point\n"
"  --initrd PATH        initramfs, placed at the top of RAM below 3 GiB\n"
"  --append STR         kernel command line\n"
"  --memory SIZE        guest RAM, e.g. 512M, 2G (default 512M); above 3 GiB the rest\n"
"                       is mapped from 4 GiB up, across the MMIO gap\n"
"  --cpus N             vCPUs (default 1)\n"
"  --console file:PATH  guest serial output to PATH (no console input); default stdin/stdout\n"
"  --control PATH       per-VM control socket (line-delimited JSON)\n"
"  --firmware PATH      flat test image (firmware/tiny) entered in 64-bit mode at 1 MiB\n"
"  --allow-emulated     run a Linux kernel even if /dev/kvm is emulation-only (very slow)\n"
"  --kvm-device PATH    KVM device node (default /dev/kvm)\n"
"  --disk PATH[,ro][,direct][,serial=S][,queues=N]  a virtio-blk disk on a raw image (file\n"
"                       or block device); ro: read-only, direct: O_DIRECT, serial: up to 20\n"
"                       bytes, queues: request queues 1..16 (default one per vCPU, at most\n"
"                       16; a migration destination needs the source's count);\n"
"                       repeatable (blk0, blk1, ... in order)\n"
"  --net tap=NAME[,mac=MAC]  a virtio-net NIC on tap NAME (opened, or created with\n"
"                       CAP_NET_ADMIN); repeatable; default MAC: 02:xx:.. derived from\n"
"                       --name (else the control socket path, else the tap name) and\n"
"                       the NIC index; tx-hold-us=N: hold tx completions up to N µs\n"
"                       (0..100000, 0 = off, default 10000; docs/pci-virtio.md)\n"
"  --net network=NAME[,tap=NAME][,mac=MAC]  a NIC on a started vmctl network (vmctl net\n"
"                       start): the vmm creates its own tap (vmt<N>, or NAME), puts it on\n"
"                       the network's bridge; the kernel removes it when the vmm exits\n"
"  --name NAME          the VM's name (default MACs, log lines)\n"
"  --rng                a virtio-rng device (entropy from the host's getrandom)\n"
"  --balloon[=OPTS]     a virtio-balloon (control socket: balloon-set, balloon-info);\n"
"                       stats=SEC guest statistics period (default 5, 0 = off),\n"
"                       deflate-on-oom=on|off (default on)\n"
"  --no-announce        after --incoming/--restore, send no RARP and do not ask the guest\n"
"                       to announce itself (measurements only; docs/migration-protocol.md)\n"
"\n"
"exit status:\n"
"  0  the guest powered off (ACPI S5)\n"
"  1  start-up error (a one-line message on stderr says what and why)\n"
"  2  bad command line\n"
"  3  the guest asked for a reboot (reset); the supervisor starts it again\n"
"  4  the guest triple-faulted (vCPU registers dumped on stderr)\n"
"  5  unhandled vCPU exit or KVM internal error (registers dumped on stderr)\n"
"  6  the guest reported a crash (KVM system event)\n"
"  7  killed (control socket 'kill', SIGTERM, SIGINT, SIGHUP)\n"
"  8  post-copy migration lost the VM (the peer or the link died after switch-over)\n"
"  other  a --firmware test guest wrote that value to the debug-exit port 0xf4\n";

const char *config_usage(void)
{
	return usage_text;
}

int config_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v, mult = 1ull << 20;
	char *end;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': mult = 1ull << 10; end++; break;
	case 'm': case 'M': mult = 1ull << 20; end++; break;
	case 'g': case 'G': mult = 1ull << 30; end++; break;
	case 't': case 'T': mult = 1ull << 40; end++; break;
	case '\0': break;
	default: return -EINVAL;
	}
	if (*end == 'i' && end[-1] != *s)	/* accept "MiB"-style suffixes */
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*out = v * mult;
	return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_APPEND, OPT_MEMORY, OPT_CPUS, OPT_CONSOLE, OPT_CONTROL,
       OPT_FIRMWARE, OPT_ALLOW_EMU, OPT_KVMDEV, OPT_DISK, OPT_NET, OPT_RNG, OPT_BALLOON, OPT_NO_ANNOUNCE,
       OPT_NAME, OPT_HELP };

static const struct option long_opts[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "append", required_argument, NULL, OPT_APPEND },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "console", required_argument, NULL, OPT_CONSOLE },
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "firmware", required_argument, NULL, OPT_FIRMWARE },
	{ "allow-emulated", no_argument, NULL, OPT_ALLOW_EMU },
	{ "kvm-device", required_argument, NULL, OPT_KVMDEV },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "net", required_argument, NULL, OPT_NET },
	{ "rng", no_argument, NULL, OPT_RNG },
	{ "balloon", optional_argument, NULL, OPT_BALLOON },
	{ "no-announce", no_argument, NULL, OPT_NO_ANNOUNCE },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

/* A decimal option value: digits only (no sign, no blanks), @lo..@hi. 0 or -EINVAL. */
static int parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned int *out)
{
	char *end;
	unsigned long n;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	n = strtoul(s, &end, 10);
	if (errno || *end || n < lo || n > hi)
		return -EINVAL;
	*out = (unsigned int)n;
	return 0;
}

/*
 * "PATH[,ro][,direct][,serial=S][,queues=N]"; @arg is modified (commas become NULs). 0, or
 * -EINVAL with *bad = the option not understood ("" for an empty path).
 */
static int parse_disk(char *arg, struct vm_disk_config *d, const char **bad)
{
	char *p = strchr(arg, ',');

	d->path = arg;
	while (p) {
		char *opt = p + 1;

		*p = '\0';
		p = strchr(opt, ',');
		if (p)
			*p = '\0';
		if (!strcmp(opt, "ro"))
			d->read_only = true;
		else if (!strcmp(opt, "direct"))
			d->direct = true;
		else if (!strncmp(opt, "serial=", 7) && opt[7] && strlen(opt + 7) <= 20)
			d->serial = opt + 7;
		else if (!strncmp(opt, "queues=", 7) && parse_uint(opt + 7, 1, VM_DISK_MAX_QUEUES, &d->queues) == 0)
			;
		else
			return *bad = opt, -EINVAL;
	}
	if (!*d->path)
		return *bad = "", -EINVAL;
	return 0;
}

/* "tap=NAME[,mac=MAC][,tx-hold-us=N]"; @arg is modified (the comma becomes a NUL). */
static int parse_net(char *arg, struct vm_nic_config *nic)
{
	char *save = NULL;

	for (char *kv = strtok_r(arg, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		if (!strncmp(kv, "tap=", 4) && !nic->tap) {
			nic->tap = kv + 4;
			if (!*nic->tap || strlen(nic->tap) >= 16)
				return -EINVAL;
		} else if (!strncmp(kv, "network=", 8) && !nic->network) {
			nic->network = kv + 8;
			if (!*nic->network)
				return -EINVAL;
		} else if (!strncmp(kv, "mac=", 4) && !nic->mac_set) {
			if (virtio_net_mac_parse(kv + 4, nic->mac) < 0)
				return -EINVAL;
			nic->mac_set = true;
		} else if (!strncmp(kv, "tx-hold-us=", 11) && nic->tx_hold_us < 0) {
			unsigned int us;

			if (parse_uint(kv + 11, 0, VIRTIO_NET_TX_HOLD_MAX_US, &us) < 0)
				return -EINVAL;
			nic->tx_hold_us = (int)us;
		} else {
			return -EINVAL;
		}
	}
	return nic->tap || nic->network ? 0 : -EINVAL;
}

/* "stats=SEC,deflate-on-oom=on|off", either part optional. */
static int parse_balloon(const char *arg, struct vm_config *cfg)
{
	while (arg && *arg) {
		const char *comma = strchr(arg, ',');
		size_t len = comma ? (size_t)(comma - arg) : strlen(arg);
		unsigned long n;
		char *end;

		if (len > 6 && !strncmp(arg, "stats=", 6)) {
			errno = 0;
			n = strtoul(arg + 6, &end, 10);
			if (errno || end != arg + len || arg[6] == '-' || n > 86400)
				return -EINVAL;
			cfg->balloon_stats_ms = (uint32_t)n * 1000;
		} else if (len == 17 && !strncmp(arg, "deflate-on-oom=on", 17)) {
			cfg->balloon_deflate_on_oom = true;
		} else if (len == 18 && !strncmp(arg, "deflate-on-oom=off", 18)) {
			cfg->balloon_deflate_on_oom = false;
		} else {
			return -EINVAL;
		}
		arg = comma ? comma + 1 : NULL;
	}
	return 0;
}

int config_parse(int argc, char **argv, struct vm_config *cfg, char *err, size_t errlen)
{
	unsigned long n;
	char *end;
	const char *bad = NULL;
	int c, ret;

	memset(cfg, 0, sizeof(*cfg));
	cfg->balloon_deflate_on_oom = true;
	cfg->balloon_stats_ms = 5000;
	cfg->append = "";
	cfg->mem_bytes = 512ull << 20;
	cfg->cpus = 1;
	cfg->kvm_path = "/dev/kvm";
	err[0] = '\0';

	optind = 0;		/* full re-initialisation of getopt's state (GNU) */
	opterr = 0;		/* we report errors ourselves, in one line */
	while ((c = getopt_long(argc, argv, ":", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_KERNEL: cfg->kernel = optarg; break;
		case OPT_INITRD: cfg->initrd = optarg; break;
		case OPT_APPEND: cfg->append = optarg; break;
		case OPT_FIRMWARE: cfg->firmware = optarg; break;
		case OPT_CONTROL: cfg->control_path = optarg; break;
		case OPT_NAME:
			if (!*optarg || strlen(optarg) > 64 || strpbrk(optarg, "/ \t\n"))
				return fail(err, errlen, "--name '%s': 1..64 characters, no '/' or spaces", optarg);
			cfg->name = optarg;
			break;
		case OPT_KVMDEV: cfg->kvm_path = optarg; break;
		case OPT_ALLOW_EMU: cfg->allow_emulated = true; break;
		case OPT_HELP: return CONFIG_HELP;
		case OPT_DISK:
			if (cfg->nr_disks == VM_MAX_DISKS)
				return fail(err, errlen, "--disk: at most %d disks", VM_MAX_DISKS);
			if (parse_disk(optarg, &cfg->disks[cfg->nr_disks], &bad) < 0)
				return fail(err, errlen, "--disk: bad option '%s': expected PATH[,ro][,direct][,serial=S][,queues=N] (serial 1..20 bytes, queues 1..16)", bad);
			cfg->nr_disks++;
			break;
		case OPT_NET: {
			char net_arg[256];	/* parse_net cuts optarg; the message quotes it whole */

			if (cfg->nr_nics == VM_MAX_NICS)
				return fail(err, errlen, "--net: at most %d NICs", VM_MAX_NICS);
			snprintf(net_arg, sizeof(net_arg), "%s", optarg);
			cfg->nics[cfg->nr_nics].tx_hold_us = -1;
			if (parse_net(optarg, &cfg->nics[cfg->nr_nics]) < 0)
				return fail(err, errlen, "--net '%s': expected tap=NAME and/or network=NAME, [,mac=XX:XX:XX:XX:XX:XX][,tx-hold-us=N] (unicast MAC, tap name < 16 chars, N 0..%d)", net_arg, VIRTIO_NET_TX_HOLD_MAX_US);
			cfg->nr_nics++;
			break;
		}
		case OPT_RNG: cfg->rng = true; break;
		case OPT_NO_ANNOUNCE: cfg->no_announce = true; break;
		case OPT_BALLOON:
			cfg->balloon = true;
			if (parse_balloon(optarg, cfg) < 0)
				return fail(err, errlen, "--balloon '%s': expected stats=SEC (0..86400) and/or deflate-on-oom=on|off", optarg);
			break;
		case OPT_MEMORY:
			ret = config_parse_size(optarg, &cfg->mem_bytes);
			if (ret < 0)
				return fail(err, errlen, "--memory '%s': not a size (use e.g. 512M or 2G)", optarg);
			if (cfg->mem_bytes < (2ull << 20) || cfg->mem_bytes % 4096)
				return fail(err, errlen, "--memory '%s': must be at least 2M and a multiple of 4K", optarg);
			break;
		case OPT_CPUS:
			errno = 0;
			n = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || n == 0 || n > VM_CONFIG_MAX_CPUS)
				return fail(err, errlen, "--cpus '%s': must be a number from 1 to %d", optarg,
					    VM_CONFIG_MAX_CPUS);
			cfg->cpus = (unsigned int)n;
			break;
		case OPT_CONSOLE:
			if (strncmp(optarg, "file:", 5) || !optarg[5])
				return fail(err, errlen, "--console '%s': expected file:PATH", optarg);
			cfg->console_file = optarg + 5;
			break;
		case ':':
			return fail(err, errlen, "%s needs an argument", argv[optind - 1]);
		default:
			return fail(err, errlen, "unknown option '%s' (see --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fail(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
	if (!cfg->kernel && !cfg->firmware)
		return fail(err, errlen, "--kernel or --firmware is required (see --help)");
	if (cfg->kernel && cfg->firmware)
		return fail(err, errlen, "--kernel and --firmware exclude each other");
	if (cfg->firmware && cfg->initrd)
		return fail(err, errlen, "--initrd needs --kernel");
	return CONFIG_OK;
}
