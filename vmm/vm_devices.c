// SPDX-License-Identifier: MIT
/*
 * The VM's virtio devices, made from the command line (struct vm_config): virtio-rng, one
 * virtio-blk per --disk, one virtio-net per --net, the balloon. Kept out of vm.c because it
 * is the one place that knows every device type: vm.c knows the PCI bus, each device knows
 * only the virtio-pci transport. Devices are created after the event loop exists (their
 * queue kicks and I/O run there) and before any vCPU runs, and they register their state
 * sections in creation order, which the destination of a migration repeats exactly — it is
 * started with the same device options.
 *
 * The control socket's "query-devices" reports every device's counters.
 */
#define LOG_TAG "vm"
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "net/network.h"
#include "vmm/ctl.h"
#include "vmm/lib/log.h"
#include "vmm/virtio/balloon.h"
#include "vmm/virtio/blk.h"
#include "vmm/virtio/net.h"
#include "vmm/virtio/pci.h"
#include "vmm/virtio/rng.h"
#include "vmm/vm.h"

_Static_assert(VM_DISK_MAX_QUEUES == BLK_MAX_QUEUES, "--disk queues= bound");

/*
 * A disk's request queues: queues=N, else one per vCPU (VIRTIO_BLK_F_MQ; Linux maps each
 * vCPU to a queue and its MSI-X vector), capped at BLK_MAX_QUEUES. The destination of a
 * migration has the same --cpus and --disk options, hence the same count (load checks it).
 */
static unsigned int disk_queues(const struct vm_config *cfg, const struct vm_disk_config *dc)
{
	unsigned int n = cfg->cpus ? cfg->cpus : 1;

	if (dc->queues)
		return dc->queues;
	return n < BLK_MAX_QUEUES ? n : BLK_MAX_QUEUES;
}

static int add_disks(struct vm *vm, const struct virtio_pci_env *venv)
{
	const struct vm_config *cfg = vm->cfg;
	char err[256];
	int ret;

	for (unsigned int i = 0; i < cfg->nr_disks; i++) {
		const struct vm_disk_config *dc = &cfg->disks[i];
		struct virtio_blk_opts o = { .path = dc->path, .read_only = dc->read_only,
			.direct = dc->direct, .serial = dc->serial,
			/* a destination on the same host: the source holds the lock until it exits */
			.no_lock = cfg->incoming, .num_queues = disk_queues(cfg, dc) };

		snprintf(vm->disk_ids[i], sizeof(vm->disk_ids[i]), "blk%u", i);
		o.id = vm->disk_ids[i];
		ret = virtio_blk_create(venv, &vm->mem, &o, &vm->disks[i], err, sizeof(err));
		if (ret < 0) {
			log_err("%s", err);
			return ret;
		}
		vm->nr_disks++;
		ret = virtio_blk_register_state(vm->disks[i], &vm->state);
		if (ret < 0) {
			log_err("%s: state section: %s", o.id, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int add_nics(struct vm *vm, const struct virtio_pci_env *venv_in)
{
	const struct vm_config *cfg = vm->cfg;
	struct virtio_pci_env venv = *venv_in;
	int ret;

	venv.class_code = 0x020000;	/* network controller: what lspci and udev expect */
	for (unsigned int i = 0; i < cfg->nr_nics; i++) {
		const struct vm_nic_config *nc = &cfg->nics[i];
		/* A NIC on a vmctl network without a tap name gets a new tap of its own; the
		 * kernel picks the number, and removes the tap when this process ends. */
		struct virtio_net_params p = { .tap = nc->tap ? nc->tap : "vmt%d", .fd = -1 };
		const char *key = cfg->name ? cfg->name : cfg->control_path;
		unsigned int mtu;

		snprintf(vm->nic_ids[i], sizeof(vm->nic_ids[i]), "net%u", i);
		p.id = vm->nic_ids[i];
		p.tx_hold_us = nc->tx_hold_us < 0 ? VIRTIO_NET_TX_HOLD_DEFAULT_US : (unsigned int)nc->tx_hold_us;
		if (nc->mac_set)
			memcpy(p.mac, nc->mac, 6);
		else
			virtio_net_mac_generate(key ? key : p.tap, i, p.mac);
		if (nc->network) {
			/* the guest's MTU is the network's: offered before the device exists */
			ret = net_network_mtu(nc->network, &mtu);
			if (ret < 0)
				return ret;
			p.mtu = (uint16_t)mtu;
		}
		ret = virtio_net_create(&venv, &vm->mem, &p, &vm->nets[i]);
		if (ret < 0)
			return ret;	/* logged by the device */
		vm->nr_nets++;
		if (nc->network) {
			ret = net_attach_tap(nc->network, virtio_net_tap_name(vm->nets[i]), NULL);
			if (ret < 0)
				return ret;
		}
		ret = virtio_net_register_state(vm->nets[i], &vm->state);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int vm_add_virtio(struct vm *vm, struct evloop *loop)
{
	const struct vm_config *cfg = vm->cfg;
	struct virtio_pci_env venv = { .pci = &vm->pci, .irq = &vm->irq, .loop = loop,
		.vm_fd = vm->kvm.vm_fd };
	int ret;

	if (!vm->pci_ready)
		return 0;	/* --firmware test guests have no PCI */
	if (cfg->rng) {
		ret = virtio_rng_create(&venv, &vm->mem, "rng0", &vm->rng);
		if (!ret)
			ret = virtio_rng_register_state(vm->rng, &vm->state);
		if (ret < 0) {
			log_err("virtio-rng: %s", strerror(-ret));
			return ret;
		}
	}
	ret = add_disks(vm, &venv);
	if (!ret)
		ret = add_nics(vm, &venv);
	if (ret < 0)
		return ret;
	if (cfg->balloon) {
		struct virtio_balloon_opts o = {
			.stats_interval_ns = (uint64_t)cfg->balloon_stats_ms * 1000000ull,
			.deflate_on_oom = cfg->balloon_deflate_on_oom,
		};

		ret = virtio_balloon_create(&venv, &vm->mem, "balloon0", &o, &vm->balloon);
		if (!ret)
			ret = virtio_balloon_register_state(vm->balloon, &vm->state);
		if (ret < 0) {
			log_err("virtio-balloon: %s", strerror(-ret));
			return ret;
		}
	}
	return 0;
}

void vm_devices_destroy(struct vm *vm)
{
	unsigned int i;

	if (vm->balloon)
		virtio_balloon_destroy(vm->balloon);
	for (i = 0; i < vm->nr_nets; i++)
		virtio_net_destroy(vm->nets[i]);
	for (i = 0; i < vm->nr_disks; i++)
		virtio_blk_destroy(vm->disks[i]);
	if (vm->rng)
		virtio_rng_destroy(vm->rng);
	vm->balloon = NULL;
	vm->rng = NULL;
	vm->nr_nets = vm->nr_disks = 0;
}

static void add_u64(json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

static json_object *blk_json(struct virtio_blk *blk)
{
	struct virtio_blk_stats st;
	json_object *o = json_object_new_object();

	virtio_blk_stats(blk, &st);
	json_object_object_add(o, "id", json_object_new_string(virtio_blk_id(blk)));
	json_object_object_add(o, "type", json_object_new_string("virtio-blk"));
	add_u64(o, "read-requests", st.read_reqs);
	add_u64(o, "read-bytes", st.read_bytes);
	add_u64(o, "write-requests", st.write_reqs);
	add_u64(o, "write-bytes", st.write_bytes);
	add_u64(o, "flush-requests", st.flush_reqs);
	add_u64(o, "discard-requests", st.discard_reqs);
	add_u64(o, "discard-bytes", st.discard_bytes);
	add_u64(o, "write-zeroes-requests", st.write_zeroes_reqs);
	add_u64(o, "io-errors", st.ioerr);
	add_u64(o, "unsupported", st.unsupp);
	add_u64(o, "in-flight", st.inflight);
	add_u64(o, "capacity-sectors", st.capacity);
	add_u64(o, "queues", st.num_queues);
	{
		json_object *per = json_object_new_array();

		for (unsigned int i = 0; i < st.num_queues; i++)
			json_object_array_add(per, json_object_new_int64((int64_t)st.queue_reqs[i]));
		json_object_object_add(o, "queue-requests", per);
	}
	json_object_object_add(o, "read-only", json_object_new_boolean(st.read_only));
	json_object_object_add(o, "direct", json_object_new_boolean(st.direct));
	return o;
}

static json_object *net_json(struct virtio_net *net, const char *id)
{
	struct virtio_net_stats st;
	json_object *o = json_object_new_object();

	virtio_net_stats(net, &st);
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "type", json_object_new_string("virtio-net"));
	add_u64(o, "rx-packets", st.rx_packets);
	add_u64(o, "rx-bytes", st.rx_bytes);
	add_u64(o, "rx-drops", st.rx_drops);
	add_u64(o, "rx-no-buffer", st.rx_nobuf);
	add_u64(o, "tx-packets", st.tx_packets);
	add_u64(o, "tx-bytes", st.tx_bytes);
	add_u64(o, "tx-drops", st.tx_drops);
	return o;
}

/* query-devices: every virtio device with its counters. */
static int cmd_query_devices(struct ctl_call *call, json_object *args, json_object *ret,
			     void *opaque)
{
	struct vm *vm = opaque;
	json_object *arr = json_object_new_array();
	unsigned int i;

	if (vm->rng) {
		json_object *o = json_object_new_object();
		uint64_t bytes, reqs;

		virtio_rng_stats(vm->rng, &bytes, &reqs);
		json_object_object_add(o, "id", json_object_new_string("rng0"));
		json_object_object_add(o, "type", json_object_new_string("virtio-rng"));
		add_u64(o, "bytes", bytes);
		add_u64(o, "requests", reqs);
		json_object_array_add(arr, o);
	}
	for (i = 0; i < vm->nr_disks; i++)
		json_object_array_add(arr, blk_json(vm->disks[i]));
	for (i = 0; i < vm->nr_nets; i++)
		json_object_array_add(arr, net_json(vm->nets[i], vm->nic_ids[i]));
	if (vm->balloon) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "id", json_object_new_string("balloon0"));
		json_object_object_add(o, "type", json_object_new_string("virtio-balloon"));
		json_object_array_add(arr, o);
	}
	json_object_object_add(ret, "devices", arr);
	return 0;
}

static const struct ctl_cmd device_cmds[] = {
	{ .name = "query-devices", .fn = cmd_query_devices,
	  .help = "virtio devices and their counters" },
};

int vm_devices_ctl_register(struct vm *vm, struct ctl_server *srv)
{
	int ret;

	ret = ctl_server_register(srv, device_cmds, 1, vm);
	if (!ret && vm->balloon)
		ret = virtio_balloon_ctl_register(vm->balloon, srv);
	return ret;
}
