// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the control socket's request handling (vmm/ctl.c): each input is one
 * request line as a client would send it. Whatever the bytes, the reply must be a JSON
 * object holding exactly one of "return" or "error", and nothing may crash or leak. A fake
 * VM and a command with an argument spec (as migration will register) are behind it.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/ctl.h"
#include "vmm/lib/evloop.h"
#include "vmm/lib/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct evloop loop;
static struct ctl_server *srv;
static char dir[] = "/tmp/fuzz-ctl.XXXXXX";
static char path[64];
static int paused;

static int st(void *o, struct ctl_vm_status *s)
{
	s->state = paused ? CTL_RUN_PAUSED : CTL_RUN_RUNNING;
	s->vcpus = 2;
	s->memory_bytes = 256ull << 20;
	return 0;
}

static int pause_op(void *o)
{
	if (paused)
		return -EALREADY;
	paused = 1;
	return 0;
}

static int resume_op(void *o)
{
	if (!paused)
		return -EALREADY;
	paused = 0;
	return 0;
}

static const struct ctl_vm_ops ops = { .status = st, .pause = pause_op, .resume = resume_op };

static const struct ctl_arg mig_args[] = {
	{ "uri", CTL_ARG_STRING, true }, { "downtime-ms", CTL_ARG_INT, false },
	{ "compress", CTL_ARG_BOOL, false }, { "ratio", CTL_ARG_NUMBER, false },
	{ "opts", CTL_ARG_OBJECT, false }, { "list", CTL_ARG_ARRAY, false },
	{ "any", CTL_ARG_ANY, false }, { NULL, 0, false },
};

static int mig(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	json_object *v;

	if (json_object_object_get_ex(args, "downtime-ms", &v) && json_object_get_int64(v) < 0)
		return ctl_call_error(call, CTL_ERR_ARGUMENT, "negative downtime");
	json_object_object_add(ret, "uri", json_object_get(json_object_object_get(args, "uri")));
	return 0;
}

static const struct ctl_cmd cmds[] = { { .name = "migrate", .args = mig_args, .fn = mig } };

static void cleanup(void)
{
	ctl_server_destroy(srv);
	evloop_destroy(&loop);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct ctl_config cfg = { .loop = &loop, .ops = &ops };

	log_max_level = LOG_ERR;
	if (!mkdtemp(dir) || evloop_init(&loop, 8) < 0)
		abort();
	snprintf(path, sizeof(path), "%s/ctl.sock", dir);
	cfg.path = path;
	if (ctl_server_create(&cfg, &srv) < 0 || ctl_server_register(srv, cmds, 1, NULL) < 0)
		abort();
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *reply, *r = NULL, *e = NULL;
	bool has_r, has_e;

	if (size > CTL_MAX_LINE)
		return 0;	/* the socket layer refuses these before parsing */
	reply = ctl_server_handle_line(srv, (const char *)data, size);
	if (!reply || !json_object_is_type(reply, json_type_object))
		abort();
	has_r = json_object_object_get_ex(reply, "return", &r);
	has_e = json_object_object_get_ex(reply, "error", &e);
	if (has_r == has_e)
		abort();
	if (has_e && (!json_object_is_type(e, json_type_object) ||
		      !json_object_is_type(json_object_object_get(e, "class"), json_type_string) ||
		      !json_object_is_type(json_object_object_get(e, "desc"), json_type_string)))
		abort();
	/* The reply must serialise (what goes on the wire). */
	if (!json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN))
		abort();
	json_object_put(reply);
	return 0;
}
