/* SPDX-License-Identifier: MIT */
/*
 * The per-VM control socket: a unix stream socket speaking line-delimited JSON (json-c),
 * QMP-like. One request per line, one reply line per request, in order per client:
 *
 *   -> {"execute":"status"}                       ("arguments":{...} and "id":<any> optional)
 *   <- {"return":{"status":"running",...}}         ("id" echoed back when given)
 *   <- {"error":{"class":"CommandNotFound","desc":"..."}}
 *   <- {"event":"SHUTDOWN","data":{...},"timestamp":{"seconds":N,"microseconds":N}}
 *
 * Events may arrive between requests and replies; clients skip lines that have "event".
 * This module emits STOP, RESUME and POWERDOWN itself after pause, resume and powerdown
 * succeed (before their reply); the VM side emits what only it sees (SHUTDOWN when the
 * guest powers off, RESET, GUEST_PANICKED, ...) with ctl_broadcast_event().
 * A request may also be a partial last line when the client half-closes (shutdown(WR)):
 * it is answered, then the connection is closed.
 * Error classes (CTL_ERR_*): ParseError (not JSON), InvalidRequest (not an object, missing
 * or non-string "execute", "arguments" not an object), CommandNotFound, InvalidArgument
 * (unknown/missing/wrongly-typed argument), InvalidState (e.g. resume while running),
 * LineTooLong (> CTL_MAX_LINE bytes without a newline; the connection is then closed),
 * GenericError (the operation failed).
 *
 * Commands live in a table of {name, argument spec, handler}: built-in ones (status, pause,
 * resume, powerdown, kill, quit, query-commands) call the struct ctl_vm_ops the VM side
 * provides, so this module never includes vm.h; later modules (migration, snapshots,
 * device counters, balloon) add theirs with ctl_server_register() without touching the
 * parser. Arguments are checked against the spec before the handler runs.
 *
 * Threading: everything runs on the event-loop thread (vmm/lib/evloop.h), except
 * ctl_broadcast_event(), which may be called from any thread. Handlers and ctl_vm_ops
 * callbacks run on the loop thread and block it while they run — so ops->pause, which
 * returns only once every vCPU acknowledged the pause (the reply must not say "paused"
 * earlier), stalls the loop for the vCPU kick latency (a KVM_RUN exit, normally well under
 * a millisecond). That is harmless because vCPU threads never wait on the loop. Anything
 * slower (migration) must defer its reply: return CTL_DEFERRED and complete later.
 */
#ifndef VMM_CTL_H
#define VMM_CTL_H

#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

struct evloop;
struct ctl_server;
struct ctl_call;

#define CTL_MAX_LINE		(64 * 1024)	/* request line limit, newline excluded */
#define CTL_MAX_OUTPUT		(4u << 20)	/* a client that lets more pile up is dropped */
#define CTL_MAX_CLIENTS		64

/* Error classes (the "class" member of an error reply). */
#define CTL_ERR_PARSE		"ParseError"
#define CTL_ERR_REQUEST		"InvalidRequest"
#define CTL_ERR_NOT_FOUND	"CommandNotFound"
#define CTL_ERR_ARGUMENT	"InvalidArgument"
#define CTL_ERR_STATE		"InvalidState"
#define CTL_ERR_TOO_LONG	"LineTooLong"
#define CTL_ERR_GENERIC		"GenericError"

/* ---- the VM side ---- */

enum ctl_run_state {
	CTL_RUN_CREATED,
	CTL_RUN_RUNNING,
	CTL_RUN_PAUSED,
	CTL_RUN_SHUTTING_DOWN,		/* powerdown requested / guest shutting down */
	CTL_RUN_SHUTDOWN,		/* guest stopped, process about to exit */
};
const char *ctl_run_state_name(enum ctl_run_state s);	/* "running", "shutting-down", ... */

struct ctl_vm_status {
	enum ctl_run_state state;
	unsigned int vcpus;
	uint64_t memory_bytes;
	uint64_t uptime_ns;		/* 0: ctl reports time since ctl_server_create() */
};

/*
 * Callbacks into the VM, all on the loop thread, all 0 or -errno (-EALREADY/-EBUSY turn
 * into InvalidState, others into GenericError with strerror). NULL = command unsupported
 * (GenericError "not supported"). @opaque is ctl_config.vm_opaque.
 */
struct ctl_vm_ops {
	int (*status)(void *opaque, struct ctl_vm_status *st);
	/* Optional: add VM-specific members to the status reply object (devices, ...). */
	void (*status_extra)(void *opaque, json_object *ret);
	int (*pause)(void *opaque);	/* synchronous: returns when all vCPUs are paused */
	int (*resume)(void *opaque);
	int (*powerdown)(void *opaque);	/* press the ACPI power button; returns at once */
	int (*kill)(void *opaque);	/* stop the VM now, no guest cooperation */
	int (*quit)(void *opaque);	/* stop the VM and make the vmm exit */
};

/* ---- commands ---- */

enum ctl_arg_type {
	CTL_ARG_STRING,
	CTL_ARG_INT,			/* a JSON integer (not a double, not a string) */
	CTL_ARG_BOOL,
	CTL_ARG_NUMBER,			/* integer or double */
	CTL_ARG_OBJECT,
	CTL_ARG_ARRAY,
	CTL_ARG_ANY,
};

struct ctl_arg {
	const char *name;		/* NULL terminates the list */
	enum ctl_arg_type type;
	bool required;
};

/* Handler return values besides 0 and -errno. */
#define CTL_DEFERRED	1

/*
 * A command handler. @args: the request's "arguments" (an empty object if absent), already
 * checked against the spec; @ret: an empty object to fill, sent as "return". Return 0 to
 * reply with @ret; -errno for an error reply (set class/desc first with ctl_call_error(),
 * else GenericError + strerror); or CTL_DEFERRED to keep @call and finish it later with
 * ctl_call_complete() (loop thread; use evloop_post from other threads). The client's
 * later requests wait until a deferred one completes, so replies stay in order.
 */
typedef int (*ctl_cmd_fn)(struct ctl_call *call, json_object *args, json_object *ret,
			  void *opaque);

struct ctl_cmd {
	const char *name;
	const struct ctl_arg *args;	/* NULL or {NULL}-terminated; others are rejected */
	ctl_cmd_fn fn;
	const char *help;		/* one line, shown by query-commands */
};

/* Set the error of @call (class: a CTL_ERR_* string). Returns -EINVAL for convenience. */
int  ctl_call_error(struct ctl_call *call, const char *cls, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The result object of a deferred call (fill it before ctl_call_complete). */
json_object *ctl_call_result(struct ctl_call *call);
/* Finish a deferred call: err 0 → {"return":result}, < 0 → error reply. Frees @call. If the
 * client went away meanwhile, the reply is dropped. Loop thread only. */
void ctl_call_complete(struct ctl_call *call, int err);

/* ---- the server ---- */

struct ctl_config {
	const char *path;		/* socket path (< 108 bytes) */
	struct evloop *loop;
	const struct ctl_vm_ops *ops;
	void *vm_opaque;
};

/*
 * Listen on cfg->path. If the path exists: a socket a live server accepts on →
 * -EADDRINUSE; a stale socket (connection refused) → removed and reused; anything that is
 * not a socket → -EEXIST. Each failure logs one line saying what and why. The socket is
 * mode 0600. Call before evloop_run, or on the loop thread.
 */
int  ctl_server_create(const struct ctl_config *cfg, struct ctl_server **out);
/*
 * Flush pending replies (best effort, bounded to ~100 ms), close every client, remove the
 * socket file. Call on the loop thread with no callback running (normally after
 * evloop_run returned, before evloop_destroy): it runs the loop briefly to reap the
 * cancelled requests.
 */
void ctl_server_destroy(struct ctl_server *srv);

/* Add commands (the table must outlive the server). -EEXIST if a name is taken. */
int  ctl_server_register(struct ctl_server *srv, const struct ctl_cmd *cmds, unsigned int n,
			 void *opaque);
unsigned int ctl_server_nr_clients(const struct ctl_server *srv);

/*
 * Push {"event":@name,"data":@data,"timestamp":...} to every client. Takes ownership of
 * @data (may be NULL). Any thread: off the loop thread it is serialised and posted.
 * Returns 0 or -ENOMEM.
 */
int  ctl_broadcast_event(struct ctl_server *srv, const char *name, json_object *data);

/*
 * Process one request line (no newline) and return the reply object (caller puts it), or
 * NULL for a deferred call. What the socket path does per line; exposed for unit tests
 * and for in-process callers. Loop thread only.
 */
json_object *ctl_server_handle_line(struct ctl_server *srv, const char *line, size_t len);

#endif
