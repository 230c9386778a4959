// SPDX-License-Identifier: MIT
/*
 * Unit tests for vmm/ctl: request parsing (good and every bad case), dispatch into a fake
 * VM ops table, argument specs, and round trips through a real unix socket in a temp dir
 * with the event loop running on its own thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/ctl.h"
#include "vmm/lib/evloop.h"

/* ---- fake VM ---- */

struct fake_vm {
	enum ctl_run_state state;
	int pauses, resumes, powerdowns, kills, quits;
	int fail_with;			/* returned by every op when non-zero */
};

static int fake_status(void *o, struct ctl_vm_status *st)
{
	struct fake_vm *vm = o;

	st->state = vm->state;
	st->vcpus = 4;
	st->memory_bytes = 512ull << 20;
	st->uptime_ns = 1500ull * 1000000ull;
	return 0;
}

static void fake_status_extra(void *o, json_object *ret)
{
	json_object_object_add(ret, "devices", json_object_new_int(0));
}

static int fake_pause(void *o)
{
	struct fake_vm *vm = o;

	if (vm->fail_with)
		return vm->fail_with;
	if (vm->state == CTL_RUN_PAUSED)
		return -EALREADY;
	vm->state = CTL_RUN_PAUSED;
	vm->pauses++;
	return 0;
}

static int fake_resume(void *o)
{
	struct fake_vm *vm = o;

	if (vm->fail_with)
		return vm->fail_with;
	if (vm->state != CTL_RUN_PAUSED)
		return -EALREADY;
	vm->state = CTL_RUN_RUNNING;
	vm->resumes++;
	return 0;
}

static int fake_powerdown(void *o)
{
	struct fake_vm *vm = o;

	vm->state = CTL_RUN_SHUTTING_DOWN;
	vm->powerdowns++;
	return 0;
}

static int fake_kill(void *o)
{
	((struct fake_vm *)o)->kills++;
	return 0;
}

static const struct ctl_vm_ops fake_ops = {
	.status = fake_status, .status_extra = fake_status_extra, .pause = fake_pause,
	.resume = fake_resume, .powerdown = fake_powerdown, .kill = fake_kill,
	/* .quit left NULL: "not supported" path */
};

/* ---- extra commands, as a later module would register them ---- */

static const struct ctl_arg migrate_args[] = {
	{ "uri", CTL_ARG_STRING, true },
	{ "downtime-ms", CTL_ARG_INT, false },
	{ "compress", CTL_ARG_BOOL, false },
	{ "ratio", CTL_ARG_NUMBER, false },
	{ "opts", CTL_ARG_OBJECT, false },
	{ NULL, 0, false },
};

static int last_downtime;

static int cmd_migrate(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	json_object *v;

	last_downtime = -1;
	if (json_object_object_get_ex(args, "downtime-ms", &v))
		last_downtime = json_object_get_int(v);
	json_object_object_add(ret, "uri", json_object_get(json_object_object_get(args, "uri")));
	return 0;
}

static int cmd_fail(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	return ctl_call_error(call, CTL_ERR_STATE, "no migration in progress");
}

static struct evloop *g_loop;

struct deferred {
	struct ctl_call *call;
	struct ev_work work;
	int value;
};

static void *deferred_thread(void *opaque);

static void finish_deferred(void *opaque)
{
	struct deferred *d = opaque;

	json_object_object_add(ctl_call_result(d->call), "value", json_object_new_int(d->value));
	ctl_call_complete(d->call, 0);
	free(d);
}

/* Replies later: a worker thread posts the completion back to the loop. */
static int cmd_slow(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	struct deferred *d = calloc(1, sizeof(*d));
	pthread_t tid;

	d->call = call;
	d->value = json_object_get_int(json_object_object_get(args, "value"));
	if (pthread_create(&tid, NULL, deferred_thread, d)) {
		free(d);
		return -EAGAIN;
	}
	pthread_detach(tid);
	return CTL_DEFERRED;
}

static void *deferred_thread(void *opaque)
{
	struct deferred *d = opaque;

	usleep(50 * 1000);
	d->work.fn = finish_deferred;
	d->work.opaque = d;
	evloop_post_work(g_loop, &d->work);
	return NULL;
}

static const struct ctl_arg slow_args[] = {
	{ "value", CTL_ARG_INT, true },
	{ NULL, 0, false },
};

static const struct ctl_cmd extra_cmds[] = {
	{ .name = "migrate", .args = migrate_args, .fn = cmd_migrate },
	{ .name = "migrate-cancel", .fn = cmd_fail },
	{ .name = "slow", .args = slow_args, .fn = cmd_slow },
};

/* ---- fixture ---- */

struct fx {
	struct evloop loop;
	struct ctl_server *srv;
	struct fake_vm vm;
	char dir[64];
	char path[128];
	pthread_t loop_tid;
	bool loop_running;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct ctl_config cfg;

	strcpy(f->dir, "/tmp/test_ctl.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/vm.sock", f->dir);
	if (evloop_init(&f->loop, 64) < 0)
		return -1;
	g_loop = &f->loop;
	f->vm.state = CTL_RUN_RUNNING;
	cfg = (struct ctl_config){ .path = f->path, .loop = &f->loop, .ops = &fake_ops,
				   .vm_opaque = &f->vm };
	if (ctl_server_create(&cfg, &f->srv) < 0)
		return -1;
	if (ctl_server_register(f->srv, extra_cmds, 3, NULL) < 0)
		return -1;
	*state = f;
	return 0;
}

static void *loop_thread(void *opaque)
{
	struct fx *f = opaque;

	evloop_run(&f->loop);
	return NULL;
}

static void start_loop(struct fx *f)
{
	assert_int_equal(pthread_create(&f->loop_tid, NULL, loop_thread, f), 0);
	f->loop_running = true;
}

static void stop_loop(struct fx *f)
{
	if (!f->loop_running)
		return;
	evloop_stop(&f->loop);
	pthread_join(f->loop_tid, NULL);
	f->loop_running = false;
	/* Teardown happens on this thread now: make it the loop thread again. */
	f->loop.owner = pthread_self();
}

static int teardown(void **state)
{
	struct fx *f = *state;
	struct stat st;

	stop_loop(f);
	ctl_server_destroy(f->srv);
	/* The socket file is removed at teardown. */
	assert_int_equal(stat(f->path, &st), -1);
	evloop_destroy(&f->loop);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* ---- helpers ---- */

/* Handle @line in-process and return the reply (caller puts it). */
static json_object *call(struct fx *f, const char *line)
{
	json_object *r = ctl_server_handle_line(f->srv, line, strlen(line));

	assert_non_null(r);
	return r;
}

static const char *err_class(json_object *r)
{
	json_object *e, *c;

	if (!json_object_object_get_ex(r, "error", &e) || !json_object_object_get_ex(e, "class", &c))
		return "";
	return json_object_get_string(c);
}

static void expect_error(struct fx *f, const char *line, const char *cls)
{
	json_object *r = call(f, line);

	if (strcmp(err_class(r), cls))
		fail_msg("%s -> %s (wanted class %s)", line, json_object_to_json_string(r), cls);
	json_object_put(r);
}

static json_object *expect_return(struct fx *f, const char *line)
{
	json_object *r = call(f, line), *ret;

	if (!json_object_object_get_ex(r, "return", &ret))
		fail_msg("%s -> %s (wanted a return)", line, json_object_to_json_string(r));
	return r;
}

/* ---- parsing and dispatch (no socket) ---- */

static void test_status(void **state)
{
	struct fx *f = *state;
	json_object *r = expect_return(f, "{\"execute\":\"status\",\"id\":{\"seq\":7}}");
	json_object *ret = json_object_object_get(r, "return");

	assert_string_equal(json_object_get_string(json_object_object_get(ret, "status")), "running");
	assert_true(json_object_get_boolean(json_object_object_get(ret, "running")));
	assert_int_equal(json_object_get_int(json_object_object_get(ret, "vcpus")), 4);
	assert_int_equal(json_object_get_int64(json_object_object_get(ret, "memory")), 512ll << 20);
	assert_int_equal(json_object_get_int(json_object_object_get(ret, "uptime-ms")), 1500);
	assert_int_equal(json_object_get_int(json_object_object_get(ret, "devices")), 0);
	/* The id comes back as it was sent, any JSON value. */
	assert_int_equal(json_object_get_int(json_object_object_get(
				json_object_object_get(r, "id"), "seq")), 7);
	json_object_put(r);
}

static void test_pause_resume_dispatch(void **state)
{
	struct fx *f = *state;
	json_object *r;

	json_object_put(expect_return(f, "{\"execute\":\"pause\"}"));
	assert_int_equal(f->vm.pauses, 1);
	r = expect_return(f, "{\"execute\":\"status\"}");
	assert_string_equal(json_object_get_string(json_object_object_get(
				json_object_object_get(r, "return"), "status")), "paused");
	json_object_put(r);
	/* Pausing twice is a state error, not a crash or a silent success. */
	expect_error(f, "{\"execute\":\"pause\"}", CTL_ERR_STATE);
	assert_int_equal(f->vm.pauses, 1);
	json_object_put(expect_return(f, "{\"execute\":\"resume\",\"arguments\":{}}"));
	assert_int_equal(f->vm.resumes, 1);
	expect_error(f, "{\"execute\":\"resume\"}", CTL_ERR_STATE);
	json_object_put(expect_return(f, "{\"execute\":\"powerdown\"}"));
	assert_int_equal(f->vm.powerdowns, 1);
	json_object_put(expect_return(f, "{\"execute\":\"kill\"}"));
	assert_int_equal(f->vm.kills, 1);
	/* An op the VM does not provide. */
	expect_error(f, "{\"execute\":\"quit\"}", CTL_ERR_GENERIC);
	/* An op that fails: GenericError with the errno text. */
	f->vm.fail_with = -EIO;
	r = call(f, "{\"execute\":\"pause\"}");
	assert_string_equal(err_class(r), CTL_ERR_GENERIC);
	assert_string_equal(json_object_get_string(json_object_object_get(
				json_object_object_get(r, "error"), "desc")), "Input/output error");
	json_object_put(r);
}

static void test_bad_requests(void **state)
{
	struct fx *f = *state;
	static const char *const parse_errors[] = {
		"{", "{\"execute\":", "not json", "{\"execute\":\"status\"", "{'execute':'status'}",
		"{\"execute\":\"status\"} trailing", "{\"execute\":\"status\"}{}", "\"\\u00",
		"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
	};
	static const char *const request_errors[] = {
		"[]", "42", "\"status\"", "null", "true", "{}", "{\"arguments\":{}}",
		"{\"execute\":42}", "{\"execute\":null}", "{\"execute\":[\"status\"]}",
		"{\"execute\":\"status\",\"arguments\":[]}", "{\"execute\":\"status\",\"arguments\":1}",
		"{\"execute\":\"status\",\"extra\":1}",
	};
	unsigned int i;

	for (i = 0; i < sizeof(parse_errors) / sizeof(parse_errors[0]); i++)
		expect_error(f, parse_errors[i], CTL_ERR_PARSE);
	for (i = 0; i < sizeof(request_errors) / sizeof(request_errors[0]); i++)
		expect_error(f, request_errors[i], CTL_ERR_REQUEST);
	expect_error(f, "{\"execute\":\"no-such-command\"}", CTL_ERR_NOT_FOUND);
	expect_error(f, "{\"execute\":\"\"}", CTL_ERR_NOT_FOUND);
	/* A NUL inside the line is not JSON. */
	{
		json_object *r = ctl_server_handle_line(f->srv, "{\"execute\"\0:1}", 15);

		assert_string_equal(err_class(r), CTL_ERR_PARSE);
		json_object_put(r);
	}
	/* The id is echoed on errors too, once the request is an object. */
	{
		json_object *r = call(f, "{\"execute\":\"nope\",\"id\":\"abc\"}");

		assert_string_equal(json_object_get_string(json_object_object_get(r, "id")), "abc");
		json_object_put(r);
	}
	assert_int_equal(f->vm.pauses + f->vm.kills, 0);
}

static void test_argument_specs(void **state)
{
	struct fx *f = *state;
	json_object *r;

	r = expect_return(f, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:1.2.3.4:5\","
			     "\"downtime-ms\":50,\"compress\":true,\"ratio\":1.5,\"opts\":{}}}");
	assert_int_equal(last_downtime, 50);
	assert_string_equal(json_object_get_string(json_object_object_get(
				json_object_object_get(r, "return"), "uri")), "tcp:1.2.3.4:5");
	json_object_put(r);
	json_object_put(expect_return(f, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"x\",\"ratio\":2}}"));
	/* Wrong types. */
	expect_error(f, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":5}}", CTL_ERR_ARGUMENT);
	expect_error(f, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"x\",\"downtime-ms\":\"50\"}}",
		     CTL_ERR_ARGUMENT);
	expect_error(f, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"x\",\"downtime-ms\":5.5}}",
		     CTL_ERR_ARGUMENT);
	expect_error(f, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"x\",\"compress\":1}}",
		     CTL_ERR_ARGUMENT);
	expect_error(f, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"x\",\"ratio\":\"1\"}}",
		     CTL_ERR_ARGUMENT);
	expect_error(f, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":null}}", CTL_ERR_ARGUMENT);
	expect_error(f, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"x\",\"opts\":[]}}",
		     CTL_ERR_ARGUMENT);
	/* Missing required, unknown argument, arguments to a command that takes none. */
	expect_error(f, "{\"execute\":\"migrate\"}", CTL_ERR_ARGUMENT);
	expect_error(f, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"x\",\"bogus\":1}}",
		     CTL_ERR_ARGUMENT);
	expect_error(f, "{\"execute\":\"status\",\"arguments\":{\"verbose\":true}}", CTL_ERR_ARGUMENT);
	/* A handler's own error class. */
	expect_error(f, "{\"execute\":\"migrate-cancel\"}", CTL_ERR_STATE);
}

static void test_register(void **state)
{
	struct fx *f = *state;
	static const struct ctl_cmd dup[] = { { .name = "status", .fn = cmd_fail } };
	static const struct ctl_cmd dup2[] = { { .name = "a", .fn = cmd_fail },
					       { .name = "a", .fn = cmd_fail } };
	static const struct ctl_cmd nofn[] = { { .name = "b" } };
	json_object *r, *cmds;
	size_t i;
	bool seen = false;

	assert_int_equal(ctl_server_register(f->srv, dup, 1, NULL), -EEXIST);
	assert_int_equal(ctl_server_register(f->srv, dup2, 2, NULL), -EEXIST);
	assert_int_equal(ctl_server_register(f->srv, nofn, 1, NULL), -EINVAL);
	r = expect_return(f, "{\"execute\":\"query-commands\"}");
	cmds = json_object_object_get(json_object_object_get(r, "return"), "commands");
	for (i = 0; i < json_object_array_length(cmds); i++)
		if (!strcmp(json_object_get_string(json_object_object_get(
				json_object_array_get_idx(cmds, i), "name")), "migrate"))
			seen = true;
	assert_true(seen);
	assert_int_equal(json_object_array_length(cmds), 7 + 3);
	json_object_put(r);
}

/* ---- the socket ---- */

static int connect_to(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	strcpy(a.sun_path, path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	/* Every wait in these tests is bounded. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

static void send_str(int fd, const char *s)
{
	send_all(fd, s, strlen(s));
}

/* Read one line (bounded by SO_RCVTIMEO); returns NULL at EOF. Caller frees. */
static char *read_line_ex(int fd, bool allow_reset)
{
	size_t len = 0, cap = 256;
	char *buf = malloc(cap);

	for (;;) {
		ssize_t n;

		if (len + 1 == cap)
			buf = realloc(buf, cap *= 2);
		n = recv(fd, buf + len, 1, 0);
		/*
		 * EINTR: this thread used the ring in an earlier teardown, and io_uring's
		 * task-work notification interrupts socket waits that have SO_RCVTIMEO.
		 */
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ECONNRESET && allow_reset) {
			free(buf);
			return NULL;
		}
		if (n < 0)
			fail_msg("recv: %s", strerror(errno));
		if (n == 0) {
			free(buf);
			return NULL;
		}
		if (buf[len] == '\n') {
			buf[len] = '\0';
			return buf;
		}
		len++;
	}
}

static char *read_line(int fd)
{
	return read_line_ex(fd, false);
}

/* Read lines until a reply (skipping events); returns the parsed reply. */
static json_object *read_reply(int fd)
{
	for (;;) {
		char *line = read_line(fd);
		json_object *o;

		assert_non_null(line);
		o = json_tokener_parse(line);
		assert_non_null(o);
		free(line);
		if (!json_object_object_get_ex(o, "event", NULL))
			return o;
		json_object_put(o);
	}
}

static void wait_clients(struct fx *f, unsigned int n)
{
	int i;

	/* nr_clients is read racily from the test thread; fine for a bounded poll. */
	for (i = 0; i < 500 && ctl_server_nr_clients(f->srv) != n; i++)
		usleep(10 * 1000);
	assert_int_equal(ctl_server_nr_clients(f->srv), n);
}

static void test_socket_round_trip(void **state)
{
	struct fx *f = *state;
	json_object *r;
	struct stat st;
	int fd;

	assert_int_equal(stat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	start_loop(f);
	fd = connect_to(f->path);
	send_str(fd, "{\"execute\":\"status\",\"id\":1}\n");
	r = read_reply(fd);
	assert_int_equal(json_object_get_int(json_object_object_get(r, "id")), 1);
	assert_string_equal(json_object_get_string(json_object_object_get(
				json_object_object_get(r, "return"), "status")), "running");
	json_object_put(r);
	/* Pipelined requests in one write, CRLF line ends, an empty line: answered in order. */
	send_str(fd, "{\"execute\":\"pause\",\"id\":2}\r\n\n{\"execute\":\"bogus\",\"id\":3}\n"
		     "{\"execute\":\"resume\",\"id\":4}\n");
	r = read_reply(fd);
	assert_int_equal(json_object_get_int(json_object_object_get(r, "id")), 2);
	assert_non_null(json_object_object_get(r, "return"));
	json_object_put(r);
	r = read_reply(fd);
	assert_int_equal(json_object_get_int(json_object_object_get(r, "id")), 3);
	assert_string_equal(err_class(r), CTL_ERR_NOT_FOUND);
	json_object_put(r);
	r = read_reply(fd);
	assert_int_equal(json_object_get_int(json_object_object_get(r, "id")), 4);
	json_object_put(r);
	/* A request split across writes. */
	send_str(fd, "{\"execute\":");
	usleep(20 * 1000);
	send_str(fd, "\"status\"}\n");
	r = read_reply(fd);
	assert_non_null(json_object_object_get(r, "return"));
	json_object_put(r);
	close(fd);
	wait_clients(f, 0);
}

static void test_socket_events_and_pause_events(void **state)
{
	struct fx *f = *state;
	int a, b;
	char *line;

	start_loop(f);
	a = connect_to(f->path);
	b = connect_to(f->path);
	wait_clients(f, 2);
	/* From a non-loop thread (this one): serialised and posted to the loop. */
	assert_int_equal(ctl_broadcast_event(f->srv, "SHUTDOWN",
					     json_tokener_parse("{\"guest\":true}")), 0);
	line = read_line(a);
	assert_non_null(strstr(line, "\"event\":\"SHUTDOWN\""));
	assert_non_null(strstr(line, "\"guest\":true"));
	assert_non_null(strstr(line, "\"timestamp\""));
	free(line);
	line = read_line(b);
	assert_non_null(strstr(line, "\"event\":\"SHUTDOWN\""));
	free(line);
	/* pause emits STOP to everyone; the caller gets its reply after the event. */
	send_str(a, "{\"execute\":\"pause\"}\n");
	line = read_line(a);
	assert_non_null(strstr(line, "\"event\":\"STOP\""));
	free(line);
	line = read_line(a);
	assert_string_equal(line, "{\"return\":{}}");
	free(line);
	line = read_line(b);
	assert_non_null(strstr(line, "\"event\":\"STOP\""));
	free(line);
	close(a);
	close(b);
	wait_clients(f, 0);
}

#define NCLIENTS 40

static void test_socket_many_clients(void **state)
{
	struct fx *f = *state;
	int fds[NCLIENTS], i;
	char buf[64];

	start_loop(f);
	for (i = 0; i < NCLIENTS; i++)
		fds[i] = connect_to(f->path);
	/* All connected and idle at once, then every one asks. */
	for (i = 0; i < NCLIENTS; i++) {
		int n = snprintf(buf, sizeof(buf), "{\"execute\":\"status\",\"id\":%d}\n", i);

		send_all(fds[i], buf, (size_t)n);
	}
	for (i = NCLIENTS - 1; i >= 0; i--) {
		json_object *r = read_reply(fds[i]);

		assert_int_equal(json_object_get_int(json_object_object_get(r, "id")), i);
		json_object_put(r);
	}
	wait_clients(f, NCLIENTS);
	for (i = 0; i < NCLIENTS; i++)
		close(fds[i]);
	wait_clients(f, 0);
}

static void test_socket_line_too_long(void **state)
{
	struct fx *f = *state;
	size_t len = CTL_MAX_LINE + 100;
	char *big = malloc(len);
	json_object *r;
	int fd;

	start_loop(f);
	/* Exactly at the limit is fine (it is just bad JSON). */
	fd = connect_to(f->path);
	memset(big, ' ', CTL_MAX_LINE);
	memcpy(big, "{\"execute\":\"status\"}", 20);
	big[CTL_MAX_LINE] = '\n';
	send_all(fd, big, CTL_MAX_LINE + 1);
	r = read_reply(fd);
	assert_non_null(json_object_object_get(r, "return"));
	json_object_put(r);
	/* Over the limit, no newline in sight: error, then the server closes. */
	memset(big, 'x', len);
	send_all(fd, big, len);
	r = read_reply(fd);
	assert_string_equal(err_class(r), CTL_ERR_TOO_LONG);
	json_object_put(r);
	/* Then EOF — or a reset, as unix sockets do when closed with unread input. */
	assert_null(read_line_ex(fd, true));
	close(fd);
	/* Over the limit but with a newline in the same write. */
	fd = connect_to(f->path);
	big[CTL_MAX_LINE + 50] = '\n';
	send(fd, big, CTL_MAX_LINE + 51, MSG_NOSIGNAL);
	r = read_reply(fd);
	assert_string_equal(err_class(r), CTL_ERR_TOO_LONG);
	json_object_put(r);
	close(fd);
	free(big);
	wait_clients(f, 0);
	/* The server still serves. */
	fd = connect_to(f->path);
	send_str(fd, "{\"execute\":\"status\"}\n");
	r = read_reply(fd);
	assert_non_null(json_object_object_get(r, "return"));
	json_object_put(r);
	close(fd);
}

static void test_socket_disconnects(void **state)
{
	struct fx *f = *state;
	json_object *r;
	char *line;
	int fd, i;

	start_loop(f);
	/* Half a request, then gone. */
	fd = connect_to(f->path);
	send_str(fd, "{\"execute\":\"sta");
	close(fd);
	/* Requests and then a reset before reading the replies. */
	for (i = 0; i < 10; i++) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		fd = connect_to(f->path);
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		send_str(fd, "{\"execute\":\"status\"}\n{\"execute\":\"status\"}\n");
		close(fd);
	}
	/* Gone while a deferred request is pending: its reply is dropped later. */
	fd = connect_to(f->path);
	send_str(fd, "{\"execute\":\"slow\",\"arguments\":{\"value\":1}}\n");
	usleep(10 * 1000);
	close(fd);
	wait_clients(f, 0);
	usleep(100 * 1000);	/* let the deferred completion run against the closed client */
	/* Half-close with a last line lacking its newline: still answered. */
	fd = connect_to(f->path);
	send_str(fd, "{\"execute\":\"status\",\"id\":9}");
	shutdown(fd, SHUT_WR);
	r = read_reply(fd);
	assert_int_equal(json_object_get_int(json_object_object_get(r, "id")), 9);
	json_object_put(r);
	line = read_line(fd);
	assert_null(line);
	close(fd);
	wait_clients(f, 0);
}

static void test_socket_deferred_keeps_order(void **state)
{
	struct fx *f = *state;
	json_object *r;
	int fd;

	start_loop(f);
	fd = connect_to(f->path);
	send_str(fd, "{\"execute\":\"slow\",\"arguments\":{\"value\":42},\"id\":1}\n"
		     "{\"execute\":\"status\",\"id\":2}\n");
	r = read_reply(fd);
	assert_int_equal(json_object_get_int(json_object_object_get(r, "id")), 1);
	assert_int_equal(json_object_get_int(json_object_object_get(
				json_object_object_get(r, "return"), "value")), 42);
	json_object_put(r);
	r = read_reply(fd);
	assert_int_equal(json_object_get_int(json_object_object_get(r, "id")), 2);
	json_object_put(r);
	/* Another client is not held up by the first one's deferred call. */
	{
		int other = connect_to(f->path);

		send_str(fd, "{\"execute\":\"slow\",\"arguments\":{\"value\":1},\"id\":3}\n");
		send_str(other, "{\"execute\":\"status\",\"id\":4}\n");
		r = read_reply(other);
		assert_int_equal(json_object_get_int(json_object_object_get(r, "id")), 4);
		json_object_put(r);
		r = read_reply(fd);
		assert_int_equal(json_object_get_int(json_object_object_get(r, "id")), 3);
		json_object_put(r);
		close(other);
	}
	close(fd);
	wait_clients(f, 0);
}


static void test_socket_client_limit(void **state)
{
	struct fx *f = *state;
	int fds[CTL_MAX_CLIENTS], extra, i;
	json_object *r;

	start_loop(f);
	for (i = 0; i < CTL_MAX_CLIENTS; i++)
		fds[i] = connect_to(f->path);
	wait_clients(f, CTL_MAX_CLIENTS);
	/* One more: told why, then closed; the others are unaffected. */
	extra = connect_to(f->path);
	r = read_reply(extra);
	assert_string_equal(err_class(r), CTL_ERR_GENERIC);
	json_object_put(r);
	assert_null(read_line_ex(extra, true));
	close(extra);
	send_str(fds[0], "{\"execute\":\"status\"}\n");
	r = read_reply(fds[0]);
	assert_non_null(json_object_object_get(r, "return"));
	json_object_put(r);
	for (i = 0; i < CTL_MAX_CLIENTS; i++)
		close(fds[i]);
	wait_clients(f, 0);
}

/* Consume exactly @n lines, in big reads (peek for the newlines, then take them). */
static void drain_lines(int fd, int n)
{
	static char buf[65536];

	while (n > 0) {
		ssize_t got = recv(fd, buf, sizeof(buf), MSG_PEEK), take = 0;

		if (got < 0 && errno == EINTR)
			continue;
		assert_true(got > 0);
		while (take < got && n > 0) {
			char *nl = memchr(buf + take, '\n', (size_t)(got - take));

			if (!nl)
				break;
			take = nl - buf + 1;
			n--;
		}
		if (take == 0)
			take = got;	/* one long partial line: consume it, keep counting */
		while (recv(fd, buf, (size_t)take, 0) < 0 && errno == EINTR)
			;
	}
}

/* A client that never reads its events is dropped once CTL_MAX_OUTPUT piles up. */
static void test_socket_slow_reader_dropped(void **state)
{
	struct fx *f = *state;
	char *pad = malloc(8192);
	int lazy, good, i;
	json_object *r;

	memset(pad, 'p', 8191);
	pad[8191] = '\0';
	start_loop(f);
	lazy = connect_to(f->path);
	good = connect_to(f->path);
	wait_clients(f, 2);
	for (i = 0; i < (int)(CTL_MAX_OUTPUT / 8192) + 200; i++) {
		json_object *d = json_object_new_object();

		json_object_object_add(d, "pad", json_object_new_string(pad));
		assert_int_equal(ctl_broadcast_event(f->srv, "NOISE", d), 0);
		/* Keep the good client drained as we go. */
		if (i % 8 == 7)
			drain_lines(good, 8);
	}
	wait_clients(f, 1);
	send_str(good, "{\"execute\":\"status\"}\n");
	r = read_reply(good);
	assert_non_null(json_object_object_get(r, "return"));
	json_object_put(r);
	close(lazy);
	close(good);
	free(pad);
}


/* ---- cli/vmm-ctl against the real server (skipped if the tool was not built) ---- */

static char vmm_ctl[512];

static bool find_vmm_ctl(void)
{
	char self[400];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (n <= 0)
		return false;
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (!slash)
		return false;
	*slash = '\0';		/* $(O)/tests -> $(O)/bin/vmm-ctl */
	snprintf(vmm_ctl, sizeof(vmm_ctl), "%s/../bin/vmm-ctl", self);
	return access(vmm_ctl, X_OK) == 0;
}

/* Run vmm-ctl with @args (shell words); its first output line into @out; exit status. */
static int run_ctl(const char *args, char *out, size_t outlen)
{
	char cmd[1024];
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd), "timeout 20 %s %s 2>&1", vmm_ctl, args);
	p = popen(cmd, "r");
	assert_non_null(p);
	out[0] = '\0';
	if (fgets(out, (int)outlen, p))
		out[strcspn(out, "\n")] = '\0';
	while (fgetc(p) != EOF)
		;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_vmm_ctl_tool(void **state)
{
	struct fx *f = *state;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char out[1024], args[512], mute[160];
	int lfd;

	if (!find_vmm_ctl())
		skip();
	start_loop(f);
	snprintf(args, sizeof(args), "%s status", f->path);
	assert_int_equal(run_ctl(args, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "\"status\":\"running\""));
	snprintf(args, sizeof(args), "%s '{\"execute\":\"pause\",\"id\":5}'", f->path);
	assert_int_equal(run_ctl(args, out, sizeof(out)), 0);
	assert_string_equal(out, "{\"return\":{},\"id\":5}");
	assert_int_equal(f->vm.pauses, 1);
	/* An error reply: printed, exit 1. */
	snprintf(args, sizeof(args), "%s pause", f->path);
	assert_int_equal(run_ctl(args, out, sizeof(out)), 1);
	assert_non_null(strstr(out, CTL_ERR_STATE));
	/* Not JSON, no server: exit 2. */
	snprintf(args, sizeof(args), "%s '{oops'", f->path);
	assert_int_equal(run_ctl(args, out, sizeof(out)), 2);
	snprintf(args, sizeof(args), "%s/none.sock status", f->dir);
	assert_int_equal(run_ctl(args, out, sizeof(out)), 2);
	/* A server that accepts nothing and answers nothing: the timeout, exit 3. */
	snprintf(mute, sizeof(mute), "%s/mute.sock", f->dir);
	strcpy(a.sun_path, mute);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	snprintf(args, sizeof(args), "-t 0.3 %s status", mute);
	assert_int_equal(run_ctl(args, out, sizeof(out)), 3);
	close(lfd);
	unlink(mute);
}

/* ---- socket path handling ---- */

static void test_path_in_use_stale_and_bad(void **state)
{
	struct fx *f = *state;
	struct ctl_server *srv2 = NULL;
	struct ctl_config cfg = { .loop = &f->loop, .ops = &fake_ops, .vm_opaque = &f->vm };
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char path[160], longpath[200];
	int fd;

	/* A live server holds the path. */
	cfg.path = f->path;
	assert_int_equal(ctl_server_create(&cfg, &srv2), -EADDRINUSE);

	/* A stale socket file (its process is gone: nobody listens) is replaced. */
	snprintf(path, sizeof(path), "%s/stale.sock", f->dir);
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	close(fd);
	cfg.path = path;
	assert_int_equal(ctl_server_create(&cfg, &srv2), 0);
	ctl_server_destroy(srv2);
	assert_int_equal(access(path, F_OK), -1);

	/* A regular file is never removed. */
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(ctl_server_create(&cfg, &srv2), -EEXIST);
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);

	/* Too long for sun_path; a directory that does not exist. */
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	cfg.path = longpath;
	assert_int_equal(ctl_server_create(&cfg, &srv2), -ENAMETOOLONG);
	cfg.path = "/nonexistent-dir-for-test/x.sock";
	assert_int_equal(ctl_server_create(&cfg, &srv2), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume_dispatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_argument_specs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_events_and_pause_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_many_clients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_line_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_disconnects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_deferred_keeps_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_client_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_slow_reader_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vmm_ctl_tool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_in_use_stale_and_bad, setup, teardown),
	};

	return cmocka_run_group_tests_name("ctl", tests, NULL, NULL);
}
