// SPDX-License-Identifier: MIT
/*
 * Tap devices for virtio-net (see tap.h): open /dev/net/tun, attach to or create the named tap
 * with a virtio_net_hdr on every packet, probe and set the offloads the guest accepts. The
 * contract is the kernel's Documentation/networking/tuntap.rst and include/uapi/linux/if_tun.h.
 */
#define LOG_TAG "tap"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/if_tun.h>

#include "net/tap.h"
#include "vmm/lib/log.h"

/* Offload sets probed in order; each is accepted or not as a whole (TSO needs CSUM). */
static const unsigned int probe_sets[] = {
	TUN_F_CSUM,
	TUN_F_CSUM | TUN_F_TSO4,
	TUN_F_CSUM | TUN_F_TSO6,
	TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN,
	TUN_F_CSUM | TUN_F_UFO,
};

static int attach(const char *name, short flags, int *out)
{
	struct ifreq ifr;
	int fd, ret;

	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = flags;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*out = fd;
	return 0;
}

int tap_open(const char *name, bool multi_queue, struct tap *t)
{
	short base = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	unsigned int feat = 0;
	struct ifreq ifr;
	int fd = -1, ret;

	memset(t, 0, sizeof(*t));
	t->fd = -1;
	if (!name || !*name || strlen(name) >= IFNAMSIZ) {
		log_err("tap '%s': name must be 1..%d characters", name ? name : "", IFNAMSIZ - 1);
		return -EINVAL;
	}
	ret = attach(name, base | (multi_queue ? IFF_MULTI_QUEUE : 0), &fd);
	/* EINVAL: the tap exists with the other queue mode; try that one. */
	if (ret == -EINVAL) {
		multi_queue = !multi_queue;
		ret = attach(name, base | (multi_queue ? IFF_MULTI_QUEUE : 0), &fd);
	}
	if (ret < 0) {
		if (ret == -ENOENT || ret == -ENODEV)
			log_err("tap %s: /dev/net/tun: %s (tun module not loaded?)", name, strerror(-ret));
		else if (ret == -EPERM || ret == -EACCES)
			log_err("tap %s: %s (needs CAP_NET_ADMIN, or a persistent tap owned by this user)",
				name, strerror(-ret));
		else if (ret == -EBUSY)
			log_err("tap %s: %s (another process has it open, or it is not a tap)",
				name, strerror(-ret));
		else
			log_err("tap %s: TUNSETIFF: %s", name, strerror(-ret));
		return ret;
	}
	t->fd = fd;
	t->multi_queue = multi_queue;
	memset(&ifr, 0, sizeof(ifr));
	if (ioctl(fd, TUNGETIFF, &ifr) == 0)
		snprintf(t->name, sizeof(t->name), "%s", ifr.ifr_name);
	else
		snprintf(t->name, sizeof(t->name), "%s", name);
	/* IFF_VNET_HDR is silently ignored by no kernel we support, but check, it is the ABI. */
	if (ioctl(fd, TUNGETFEATURES, &feat) == 0 && !(feat & IFF_VNET_HDR)) {
		log_err("tap %s: kernel tun lacks IFF_VNET_HDR", t->name);
		ret = -EOPNOTSUPP;
		goto err;
	}
	ret = tap_set_vnet_hdr_size(t, TAP_VNET_HDR_LEN);
	if (ret < 0)
		goto err;
	for (unsigned int i = 0; i < sizeof(probe_sets) / sizeof(probe_sets[0]); i++)
		if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)probe_sets[i]) == 0)
			t->offloads_supported |= probe_sets[i];
	ret = tap_set_offload(t, 0);
	if (ret < 0)
		goto err;
	return 0;
err:
	close(fd);
	t->fd = -1;
	return ret;
}

void tap_close(struct tap *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
}

int tap_set_vnet_hdr_size(struct tap *t, int size)
{
	if (ioctl(t->fd, TUNSETVNETHDRSZ, &size) < 0) {
		int ret = -errno;

		log_err("tap %s: TUNSETVNETHDRSZ %d: %s", t->name, size, strerror(-ret));
		return ret;
	}
	return 0;
}

int tap_set_offload(struct tap *t, unsigned int tun_flags)
{
	if ((tun_flags & ~t->offloads_supported) && tun_flags) {
		log_err("tap %s: offloads 0x%x not supported (have 0x%x)", t->name, tun_flags,
			t->offloads_supported);
		return -EOPNOTSUPP;
	}
	if (ioctl(t->fd, TUNSETOFFLOAD, (unsigned long)tun_flags) < 0) {
		int ret = -errno;

		log_err("tap %s: TUNSETOFFLOAD 0x%x: %s", t->name, tun_flags, strerror(-ret));
		return ret;
	}
	t->offloads = tun_flags;
	return 0;
}

int tap_get_flags(const char *name, short *flags)
{
	struct ifreq ifr;
	int s, ret = 0;

	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		ret = -errno;
	else
		*flags = ifr.ifr_flags;
	close(s);
	return ret;
}
