// SPDX-License-Identifier: MIT
/*
 * The vmm-facing glue of migration (migration.h): the --incoming/--restore options, the
 * per-VM struct mig_ctx with its state registry, and the control-socket commands
 *
 *   migrate {uri, downtime_ms?, bandwidth_mbps?, compress_level?, policy?, max_rounds?,
 *            timeout_s?, stall_timeout_s?, postcopy_after_rounds?, wait?}
 *                                 start a live migration (returns at once; wait=true replies
 *                                 when it ended, with the final figures); policy post-copy is
 *                                 opt-in only and refused here without userfaultfd
 *   migrate-status                phase, round, bytes, rates, expected and final figures
 *   migrate-cancel                stop it; the VM keeps running here
 *   snapshot-save {path}          write a snapshot (the VM is paused for it if running)
 *
 * All handlers run on the loop thread (ctl.h); the migration itself runs on its own worker
 * thread (precopy.c) and reports through ctx->lock.
 */
#define LOG_TAG "migration"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migrate/migration.h"
#include "migrate/proto.h"
#include "migrate/postcopy.h"
#include "migrate/stream.h"
#include "migrate/uffd.h"
#include "vmm/ctl.h"
#include "vmm/lib/log.h"
#include "vmm/vm.h"

uint64_t mig_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *mig_phase_name(enum mig_phase_pub p)
{
	switch (p) {
	case MIG_ST_NONE: return "none";
	case MIG_ST_SETUP: return "setup";
	case MIG_ST_PRECOPY: return "precopy";
	case MIG_ST_STOPCOPY: return "stop-and-copy";
	case MIG_ST_COMPLETING: return "completing";
	case MIG_ST_COMPLETED: return "completed";
	case MIG_ST_FAILED: return "failed";
	case MIG_ST_CANCELLED: return "cancelled";
	case MIG_ST_POSTCOPY: return "postcopy";
	}
	return "?";
}

void mig_params_default(struct mig_params *p)
{
	memset(p, 0, sizeof(*p));
	p->downtime_ns = 50ull * 1000000;
	p->zstd_level = 0;
	p->policy = MIG_POLICY_MIN_DOWNTIME;
	p->max_rounds = 30;
	p->timeout_ns = 600ull * 1000000000;
	p->batch_pages = 256;
	p->postcopy_after_rounds = 2;
}

/* ---- command line ---- */

int mig_args_extract(int *argc, char **argv, struct mig_opts *o, char *err, size_t errlen)
{
	static const struct { const char *name; size_t off; } opts[] = {
		{ "--incoming", offsetof(struct mig_opts, incoming) },
		{ "--restore", offsetof(struct mig_opts, restore) },
	};
	int i, j, out = 1;

	memset(o, 0, sizeof(*o));
	for (i = 1; i < *argc; i++) {
		bool taken = false;

		if (!strcmp(argv[i], "--")) {
			/* Leave the rest alone. */
			for (; i < *argc; i++)
				argv[out++] = argv[i];
			break;
		}
		for (j = 0; j < 2 && !taken; j++) {
			size_t n = strlen(opts[j].name);
			const char **dst = (const char **)((char *)o + opts[j].off);

			if (strncmp(argv[i], opts[j].name, n))
				continue;
			if (argv[i][n] == '=') {
				*dst = argv[i] + n + 1;
			} else if (argv[i][n] == '\0') {
				if (i + 1 >= *argc) {
					snprintf(err, errlen, "%s needs an argument", opts[j].name);
					return -EINVAL;
				}
				*dst = argv[++i];
			} else {
				continue;
			}
			if (!**dst) {
				snprintf(err, errlen, "%s needs a non-empty argument", opts[j].name);
				return -EINVAL;
			}
			taken = true;
		}
		if (!taken)
			argv[out++] = argv[i];
	}
	argv[out] = NULL;
	*argc = out;
	if (o->incoming && o->restore) {
		snprintf(err, errlen, "--incoming and --restore exclude each other");
		return -EINVAL;
	}
	return 0;
}

/* ---- shared helpers ---- */

int mig_local_config(struct mig_ctx *m, struct mig_config *c)
{
	const struct kvm_cpuid2 *cpuid = m->vm->cpuid;
	uint32_t i;
	int ret;

	c->mem_bytes = m->vm->mem.size;
	c->nr_vcpus = m->vm->nr_vcpus;
	ret = mig_config_add_registry(c, m->reg);
	if (ret < 0)
		return ret;
	for (i = 0; cpuid && i < cpuid->nent && i < MIG_MAX_CPUID; i++) {
		const struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
		struct mig_cpuid l = { .function = e->function, .index = e->index,
				       .eax = e->eax, .ebx = e->ebx, .ecx = e->ecx, .edx = e->edx };

		ret = mig_config_add_cpuid(c, &l);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int mig_ram_discard(struct mig_ctx *m)
{
	struct guest_mem *mem = &m->vm->mem;

	/* Punching the whole memfd zeroes it and frees its pages; KVM's mappings follow. */
	if (fallocate(mem->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
		      (off_t)mem->size) < 0) {
		int ret = -errno;

		log_err("clearing guest RAM: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

/* ---- control commands ---- */

static void status_fill(struct mig_ctx *m, json_object *ret)
{
	struct mig_status st;
	double ratio;

	pthread_mutex_lock(&m->lock);
	st = m->st;
	pthread_mutex_unlock(&m->lock);
	ratio = st.bytes_wire ? (double)st.bytes_raw / (double)st.bytes_wire : 0;
	json_object_object_add(ret, "phase", json_object_new_string(mig_phase_name(st.phase)));
	json_object_object_add(ret, "round", json_object_new_int64(st.round));
	json_object_object_add(ret, "bytes_sent", json_object_new_int64((int64_t)st.bytes_wire));
	json_object_object_add(ret, "bytes_remaining",
			       json_object_new_int64((int64_t)st.remaining_bytes));
	json_object_object_add(ret, "pages_data", json_object_new_int64((int64_t)st.pages_data));
	json_object_object_add(ret, "pages_zero", json_object_new_int64((int64_t)st.pages_zero));
	json_object_object_add(ret, "dirty_rate_bps", json_object_new_int64((int64_t)st.dirty_rate));
	json_object_object_add(ret, "bandwidth_bps", json_object_new_int64((int64_t)st.bandwidth));
	json_object_object_add(ret, "compression_ratio", json_object_new_double(ratio));
	json_object_object_add(ret, "expected_downtime_ms",
			       json_object_new_double((double)st.expected_downtime_ns / 1e6));
	json_object_object_add(ret, "throttle_pct", json_object_new_int(st.throttle_pct));
	if (st.phase != MIG_ST_NONE) {
		uint64_t total = st.total_ns ? st.total_ns : mig_now_ns() - st.start_ns;

		json_object_object_add(ret, "total_ms", json_object_new_double((double)total / 1e6));
		json_object_object_add(ret, "setup_ms",
				       json_object_new_double((double)st.setup_ns / 1e6));
	}
	if (st.downtime_ns)
		json_object_object_add(ret, "downtime_ms",
				       json_object_new_double((double)st.downtime_ns / 1e6));
	if (st.postcopy) {
		json_object_object_add(ret, "postcopy_pages_pending",
				       json_object_new_int64((int64_t)st.pc_pages_pending));
		json_object_object_add(ret, "postcopy_pages_on_demand",
				       json_object_new_int64((int64_t)st.pc_on_demand));
		json_object_object_add(ret, "postcopy_pages_streamed",
				       json_object_new_int64((int64_t)st.pc_streamed));
	}
	if (st.postcopy_ns) {		/* from POSTCOPY_DONE: the destination's own figures */
		json_object_object_add(ret, "postcopy_ms",
				       json_object_new_double((double)st.postcopy_ns / 1e6));
		json_object_object_add(ret, "postcopy_faults",
				       json_object_new_int64((int64_t)st.pc_faults));
		json_object_object_add(ret, "fault_latency_median_ms",
				       json_object_new_double(st.pc_lat_median_us / 1e3));
		json_object_object_add(ret, "fault_latency_max_ms",
				       json_object_new_double(st.pc_lat_max_us / 1e3));
	}
	if (st.error[0])
		json_object_object_add(ret, "error", json_object_new_string(st.error));
}

static bool arg_int(json_object *args, const char *name, int64_t *v)
{
	json_object *o;

	if (!json_object_object_get_ex(args, name, &o))
		return false;
	*v = json_object_get_int64(o);
	return true;
}

static int cmd_migrate(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	struct mig_ctx *m = opaque;
	struct mig_params p;
	json_object *o;
	const char *uri;
	int64_t v;
	int err;

	mig_params_default(&p);
	json_object_object_get_ex(args, "uri", &o);
	uri = json_object_get_string(o);
	if (!strncmp(uri, "tcp:", 4))
		uri += 4;
	if (strlen(uri) >= sizeof(p.uri) || !strchr(uri, ':'))
		return ctl_call_error(call, CTL_ERR_ARGUMENT, "uri: expected HOST:PORT");
	strcpy(p.uri, uri);
	if (arg_int(args, "downtime_ms", &v)) {
		if (v < 1 || v > 600000)
			return ctl_call_error(call, CTL_ERR_ARGUMENT, "downtime_ms: 1..600000");
		p.downtime_ns = (uint64_t)v * 1000000;
	}
	if (arg_int(args, "bandwidth_mbps", &v)) {	/* MiB/s; 0 = unlimited */
		if (v < 0 || v > 1000000)
			return ctl_call_error(call, CTL_ERR_ARGUMENT, "bandwidth_mbps: 0..1000000");
		p.bandwidth = (uint64_t)v << 20;
	}
	if (arg_int(args, "compress_level", &v)) {
		if (v < -7 || v > 19)
			return ctl_call_error(call, CTL_ERR_ARGUMENT,
					      "compress_level: 0 (off), -7..-1 (fast), 1..19");
		p.zstd_level = (int)v;
	}
	if (arg_int(args, "max_rounds", &v)) {
		if (v < 1 || v > 10000)
			return ctl_call_error(call, CTL_ERR_ARGUMENT, "max_rounds: 1..10000");
		p.max_rounds = (unsigned int)v;
	}
	if (arg_int(args, "timeout_s", &v)) {
		if (v < 1 || v > 86400)
			return ctl_call_error(call, CTL_ERR_ARGUMENT, "timeout_s: 1..86400");
		p.timeout_ns = (uint64_t)v * 1000000000;
	}
	if (arg_int(args, "stall_timeout_s", &v)) {	/* slow or stalling links (nested hosts) */
		if (v < 1 || v > 3600)
			return ctl_call_error(call, CTL_ERR_ARGUMENT, "stall_timeout_s: 1..3600");
		p.stall_ms = (unsigned int)v * 1000;
	}
	if (json_object_object_get_ex(args, "policy", &o)) {
		const char *pol = json_object_get_string(o);

		if (!strcmp(pol, "minimal-downtime"))
			p.policy = MIG_POLICY_MIN_DOWNTIME;
		else if (!strcmp(pol, "suspend"))
			p.policy = MIG_POLICY_SUSPEND;
		else if (!strcmp(pol, "post-copy"))
			p.policy = MIG_POLICY_POSTCOPY;
		else
			return ctl_call_error(call, CTL_ERR_ARGUMENT,
					      "policy: minimal-downtime, suspend or post-copy");
	}
	if (arg_int(args, "postcopy_after_rounds", &v)) {
		if (v < 0 || v > 10000)
			return ctl_call_error(call, CTL_ERR_ARGUMENT, "postcopy_after_rounds: 0..10000");
		p.postcopy_after_rounds = (unsigned int)v;
	}
	if (p.policy == MIG_POLICY_POSTCOPY) {
		char why[160];

		/*
		 * Refused before anything moves, the VM stays here. (The destination's own check
		 * is its HELLO: without MIG_FEAT_POSTCOPY the worker fails before CONFIG.)
		 */
		if (uffd_probe(why, sizeof(why)) < 0)
			return ctl_call_error(call, CTL_ERR_ARGUMENT,
					      "policy post-copy is not available on this host: %s", why);
	}
	err = mig_precopy_start(m, &p);
	if (err == -EBUSY)
		return ctl_call_error(call, CTL_ERR_STATE, "a migration is already running");
	if (err < 0)
		return err;
	if (json_object_object_get_ex(args, "wait", &o) && json_object_get_boolean(o)) {
		pthread_mutex_lock(&m->lock);
		m->wait_call = call;
		pthread_mutex_unlock(&m->lock);
		return CTL_DEFERRED;
	}
	json_object_object_add(ret, "started", json_object_new_boolean(true));
	return 0;
}

static int cmd_status(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	status_fill(opaque, ret);
	return 0;
}

static int cmd_cancel(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	int err = mig_precopy_cancel(opaque);

	if (err == -ENOENT)
		return ctl_call_error(call, CTL_ERR_STATE, "no migration is running");
	return err;
}

static int cmd_snapshot(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	struct mig_ctx *m = opaque;
	bool was_paused;
	json_object *o;
	uint64_t bytes = 0;
	int err;

	pthread_mutex_lock(&m->lock);
	err = m->worker_running ? -EBUSY : 0;
	pthread_mutex_unlock(&m->lock);
	if (err)
		return ctl_call_error(call, CTL_ERR_STATE, "a migration is running");
	json_object_object_get_ex(args, "path", &o);
	was_paused = m->vm->paused;
	if (!was_paused) {
		err = vm_pause(m->vm);
		if (err < 0)
			return ctl_call_error(call, CTL_ERR_STATE, "cannot pause the VM: %s",
					      strerror(-err));
	}
	err = mig_snapshot_save(m, json_object_get_string(o), &bytes);
	if (!was_paused)
		vm_resume(m->vm);
	if (err < 0)
		return ctl_call_error(call, CTL_ERR_GENERIC, "snapshot: %s", strerror(-err));
	json_object_object_add(ret, "bytes", json_object_new_int64((int64_t)bytes));
	return 0;
}

static const struct ctl_arg migrate_args[] = {
	{ "uri", CTL_ARG_STRING, true },
	{ "downtime_ms", CTL_ARG_INT, false },
	{ "bandwidth_mbps", CTL_ARG_INT, false },
	{ "compress_level", CTL_ARG_INT, false },
	{ "policy", CTL_ARG_STRING, false },
	{ "max_rounds", CTL_ARG_INT, false },
	{ "timeout_s", CTL_ARG_INT, false },
	{ "stall_timeout_s", CTL_ARG_INT, false },
	{ "postcopy_after_rounds", CTL_ARG_INT, false },
	{ "wait", CTL_ARG_BOOL, false },
	{ NULL, 0, false },
};
static const struct ctl_arg snapshot_args[] = {
	{ "path", CTL_ARG_STRING, true },
	{ NULL, 0, false },
};

static const struct ctl_cmd mig_cmds[] = {
	{ "migrate", migrate_args, cmd_migrate, "live-migrate the VM to a vmm --incoming HOST:PORT" },
	{ "migrate-status", NULL, cmd_status, "progress and figures of the last migration" },
	{ "migrate-cancel", NULL, cmd_cancel, "cancel a migration; the VM keeps running here" },
	{ "snapshot-save", snapshot_args, cmd_snapshot, "write a snapshot file (vmm --restore)" },
};

/* For precopy.c: the final status as the deferred reply and as an event. Loop thread. */
void mig_report_end(struct mig_ctx *m);
void mig_report_end(struct mig_ctx *m)
{
	struct ctl_call *call;
	json_object *ev;

	pthread_mutex_lock(&m->lock);
	call = m->wait_call;
	m->wait_call = NULL;
	pthread_mutex_unlock(&m->lock);
	if (call) {
		status_fill(m, ctl_call_result(call));
		ctl_call_complete(call, 0);
	}
	if (m->ctl) {
		ev = json_object_new_object();
		if (ev) {
			status_fill(m, ev);
			ctl_broadcast_event(m->ctl, "MIGRATION", ev);
		}
	}
}

bool mig_busy(struct mig_ctx *m)
{
	bool busy;

	if (!m)
		return false;
	pthread_mutex_lock(&m->lock);
	busy = m->worker_running;
	pthread_mutex_unlock(&m->lock);
	return busy;
}

/* ---- lifecycle ---- */

int mig_attach(struct vm *vm, struct evloop *loop, struct ctl_server *ctl, struct mig_ctx **out)
{
	struct mig_ctx *m;
	int ret;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->vm = vm;
	m->loop = loop;
	m->ctl = ctl;
	pthread_mutex_init(&m->lock, NULL);
	/*
	 * The VM's own registry (vm_create registers the KVM, vCPU and platform sections in
	 * load order; devices add theirs): snapshots and migration carry whatever is there.
	 */
	m->reg = &vm->state;
	if (ctl) {
		ret = ctl_server_register(ctl, mig_cmds, sizeof(mig_cmds) / sizeof(mig_cmds[0]), m);
		if (ret < 0) {
			log_err("registering migration commands: %s", strerror(-ret));
			goto err;
		}
	}
	*out = m;
	return 0;
err:
	pthread_mutex_destroy(&m->lock);
	free(m);
	return ret;
}

int mig_prepare_incoming(struct mig_ctx *m, const struct mig_opts *o)
{
	if (o->restore)
		return mig_snapshot_restore(m, o->restore);
	if (o->incoming)
		return mig_dest_run(m, o->incoming);
	return 0;
}

int mig_started(struct mig_ctx *m)
{
	if (m && m->pc_dst)
		return mig_pc_dst_ack(m->pc_dst);
	if (!m || !m->in_stream)
		return 0;
	return mig_dest_ack(m);
}

void mig_detach(struct mig_ctx *m)
{
	bool running;

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	running = m->worker_running;
	pthread_mutex_unlock(&m->lock);
	if (running)
		mig_precopy_cancel(m);
	if (m->worker_joinable)
		pthread_join(m->worker, NULL);
	/* Post-copy receiver: its threads end before the VM (and its memory) goes. */
	mig_pc_dst_destroy(m->pc_dst);
	m->pc_dst = NULL;
	if (m->in_stream) {
		/* Loaded but never started: no ACK, so the source resumes its copy. */
		mig_stream_destroy(m->in_stream);
		free(m->in_stream);
	}
	pthread_mutex_lock(&m->lock);
	if (m->end_pending) {
		/* The worker's end is still queued on the loop; it frees @m when (if) it runs. */
		m->dead = true;
		m->ctl = NULL;
		pthread_mutex_unlock(&m->lock);
		return;
	}
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
