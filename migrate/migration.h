/* SPDX-License-Identifier: MIT */
/*
 * Migration and snapshots as the vmm process sees them: the one object main.c holds
 * (struct mig_ctx), the command-line options it adds (--incoming, --restore), and the
 * hooks main.c calls around vm_start(). The pieces:
 *
 *   precopy.c   source: the worker thread that runs a live migration (rounds, convergence,
 *               auto-converge, stop-and-copy, failure → the VM keeps running here)
 *   postcopy_src.c / postcopy_dst.c  the post-copy switch-over (opt-in policy): the source
 *               serves page requests and streams the rest; the destination runs the VM on
 *               userfaultfd-guarded RAM
 *   dest.c      destination: `vmm --incoming HOST:PORT` receives and loads before any
 *               vCPU runs
 *   snapshot.c  snapshot files: save while paused, `vmm --restore PATH`
 *   ctl_cmds.c  control-socket commands: migrate, migrate-status, migrate-cancel,
 *               snapshot-save; and the glue below
 *
 * How main.c uses it (the wiring patch, docs/migration-protocol.md "Process wiring"):
 *
 *	mig_args_extract(&argc, argv, &mopts, err, sizeof(err));   // before config_parse
 *	vm_create(...); setup_loop(...);
 *	mig_attach(m.vm, &m.loop, m.ctl, &m.mig);                  // state sections + commands
 *	if (mopts.incoming || mopts.restore)
 *		if (mig_prepare_incoming(m.mig, &mopts) < 0) exit(VM_EXIT_STARTUP);  // RAM + state in
 *	vm_start(m.vm);
 *	mig_started(m.mig);                                        // dest: ACK(COMPLETE)
 *	evloop_run(...);
 *	mig_detach(m.mig);                                         // before vm_destroy
 */
#ifndef MIGRATE_MIGRATION_H
#define MIGRATE_MIGRATION_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/state.h"

struct vm;
struct evloop;
struct ctl_server;
struct ctl_call;
struct mig_stream;
struct mig_pc_dst;

struct mig_opts {
	const char *incoming;		/* --incoming HOST:PORT */
	const char *restore;		/* --restore PATH */
};

/*
 * Remove --incoming/--restore (and their values, "--opt V" or "--opt=V") from argv so the
 * core's config_parse never sees them. 0, or -EINVAL with a reason in @err.
 */
int mig_args_extract(int *argc, char **argv, struct mig_opts *o, char *err, size_t errlen);

/* Convergence policy when rounds do not fit the downtime budget. */
enum mig_policy {
	MIG_POLICY_MIN_DOWNTIME,	/* default: auto-converge (throttle vCPUs progressively) */
	MIG_POLICY_SUSPEND,		/* no throttling; after max rounds stop-and-copy anyway */
	MIG_POLICY_POSTCOPY,		/* opt-in: switch to post-copy after postcopy_after_rounds */
};

struct mig_params {
	char uri[256];
	uint64_t downtime_ns;		/* budget, default 50 ms */
	uint64_t bandwidth;		/* bytes/s, 0 = unlimited */
	int zstd_level;			/* 0 = off */
	enum mig_policy policy;
	unsigned int max_rounds;	/* default 30 */
	uint64_t timeout_ns;		/* whole migration, default 10 min */
	unsigned int batch_pages;	/* RAM message size, default 256 */
	unsigned int stall_ms;		/* no progress on the connection: fail; 0 = 10 s */
	unsigned int postcopy_after_rounds;	/* post-copy: pre-copy rounds first (default 2) */
};
void mig_params_default(struct mig_params *p);

enum mig_phase_pub {
	MIG_ST_NONE, MIG_ST_SETUP, MIG_ST_PRECOPY, MIG_ST_STOPCOPY, MIG_ST_COMPLETING,
	MIG_ST_COMPLETED, MIG_ST_FAILED, MIG_ST_CANCELLED,
	MIG_ST_POSTCOPY,		/* COMPLETE sent after POSTCOPY_START: pages on demand */
};
const char *mig_phase_name(enum mig_phase_pub p);

/* Progress and figures (migrate-status), updated by the worker under ctx->lock. */
struct mig_status {
	enum mig_phase_pub phase;
	unsigned int round;
	uint64_t bytes_wire;		/* bytes handed to the socket and sent */
	uint64_t bytes_raw;		/* guest bytes those carried (data pages × 4 KiB) */
	uint64_t pages_data, pages_zero;
	uint64_t remaining_bytes;	/* dirty pages × 4 KiB at the last sync */
	uint64_t dirty_rate;		/* bytes/s dirtied, last round */
	uint64_t bandwidth;		/* bytes/s measured, last round */
	uint64_t expected_downtime_ns;
	unsigned int throttle_pct;
	uint64_t start_ns;		/* CLOCK_MONOTONIC */
	uint64_t setup_ns, total_ns, downtime_ns;
	/* post-copy (0 otherwise): ACK(POSTCOPY_START) → POSTCOPY_DONE, and the destination's figures */
	bool postcopy;			/* the switch-over happened */
	uint64_t postcopy_ns;
	uint64_t pc_pages_pending;	/* in POSTCOPY_START's bitmap */
	uint64_t pc_on_demand, pc_streamed, pc_faults;
	uint32_t pc_lat_median_us, pc_lat_max_us;
	char error[256];
};

struct mig_ctx {
	struct vm *vm;
	struct evloop *loop;
	struct ctl_server *ctl;
	struct state_registry *reg;	/* &vm->state */

	pthread_mutex_t lock;		/* leaf: status, cancel, stream pointer */
	struct mig_status st;
	struct mig_params params;
	bool worker_running;		/* between start and the end of the worker */
	bool worker_joinable;		/* a finished worker not yet joined */
	pthread_t worker;
	bool cancel;
	struct mig_stream *stream;	/* the live one, for cancel */
	struct ctl_call *wait_call;	/* "migrate" with wait=true: replied at the end */
	bool end_pending;		/* the worker posted its end to the loop, not run yet */
	bool dead;			/* detached while end_pending: the posted end frees */

	/* destination: the stream kept open until ACK(COMPLETE) is sent */
	struct mig_stream *in_stream;
	uint64_t in_start_ns;
	struct mig_pc_dst *pc_dst;	/* post-copy receiver (owns in_stream's socket use) */

	/* source: post-copy failed after ACK(POSTCOPY_START): stop, never resume (exit 8) */
	bool vm_lost;
};

/* Register the VM's state sections and the control commands. 0 or -errno. */
int  mig_attach(struct vm *vm, struct evloop *loop, struct ctl_server *ctl, struct mig_ctx **out);
/* --restore / --incoming: fill RAM and load state, vCPUs not started. 0 or -errno (logged). */
int  mig_prepare_incoming(struct mig_ctx *m, const struct mig_opts *o);
/*
 * After vm_start: the destination acknowledges COMPLETE. If the ACK cannot be sent the
 * source will resume its copy, so the caller must stop this VM (returns -errno).
 */
int  mig_started(struct mig_ctx *m);
/* Cancel a running migration (the VM keeps running here) and join the worker; free. */
void mig_detach(struct mig_ctx *m);

/*
 * True while a migration owns the VM (worker running): the control socket's pause/resume
 * must then be refused (-EBUSY), or a resume could let vCPUs run during stop-and-copy.
 * Loop thread.
 */
bool mig_busy(struct mig_ctx *m);

/* ---- used between the migrate/ files ---- */

/* Start the source worker with @p. -EBUSY if one runs. */
int  mig_precopy_start(struct mig_ctx *m, const struct mig_params *p);
int  mig_precopy_cancel(struct mig_ctx *m);
/* Receive a migration on @uri into m->vm (vCPUs not started). */
int  mig_dest_run(struct mig_ctx *m, const char *uri);
/* Acknowledge COMPLETE once the vCPUs run. */
int  mig_dest_ack(struct mig_ctx *m);

/* Snapshot file: the VM must be paused (vCPUs out of KVM_RUN). */
int  mig_snapshot_save(struct mig_ctx *m, const char *path, uint64_t *bytes_out);
int  mig_snapshot_restore(struct mig_ctx *m, const char *path);

/* Fill @c (mig_config_init'ed) with this VM's shape: memory, vCPUs, sections, CPUID. */
struct mig_config;
int  mig_local_config(struct mig_ctx *m, struct mig_config *c);
/* Zero guest RAM and give its pages back (destination and restore start from zeros). */
int  mig_ram_discard(struct mig_ctx *m);

uint64_t mig_now_ns(void);

#endif
