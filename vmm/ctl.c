// SPDX-License-Identifier: MIT
/*
 * Per-VM control socket (protocol in ctl.h). I/O model: readiness, not completion — each
 * client has a multishot POLLIN request and, only while output is backed up, a one-shot
 * POLLOUT request on the event loop; the bytes move with non-blocking recv()/send(). Control
 * traffic is tiny, and this way an idle client pins no buffer in the kernel, every pending
 * byte lives in our own buffers (so teardown can flush synchronously), and the only
 * requests to cancel are two polls.
 *
 * Client lifetime: a client that is closing is unlinked from the server at once, its polls
 * are cancelled, and it is freed (fd closed) when both have delivered their last callback.
 * A deferred call holds no reference: closing a client just detaches it from the call.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LOG_TAG "ctl"
#include "vmm/ctl.h"
#include "vmm/lib/evloop.h"
#include "vmm/lib/log.h"

#define IN_INITIAL	4096
#define IN_CAP		(CTL_MAX_LINE + 2)	/* a full line, a '\r' and the '\n' */

struct ctl_client {
	struct ctl_server *srv;
	struct ctl_client *next;
	int fd;
	unsigned int id;		/* for log lines */
	struct ev_req rd_req;		/* multishot POLLIN */
	struct ev_req wr_req;		/* one-shot POLLOUT while output is backed up */
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_off, out_len, out_cap;
	struct ctl_call *pending;	/* deferred call; later lines wait for it */
	bool eof;			/* peer shut its write side: finish replies, then close */
	bool closing;			/* close once the output is flushed (line too long) */
	bool dying;			/* unlinked; freed when both polls are idle */
	bool free_queued;
	struct ev_work free_work;	/* frees from the loop, never under a caller's feet */
};

struct ctl_call {
	struct ctl_server *srv;		/* NULL once the server is gone */
	struct ctl_client *client;	/* NULL for in-process calls or a client gone */
	struct ctl_call *next;		/* server's list of deferred calls */
	json_object *id;		/* the request's "id" (a reference), or NULL */
	json_object *ret;
	const char *err_class;
	char err_desc[256];
};

struct cmd_entry {
	const struct ctl_cmd *cmd;
	void *opaque;
};

struct ctl_server {
	struct evloop *loop;
	const struct ctl_vm_ops *ops;
	void *vm_opaque;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t sock_dev;
	ino_t sock_ino;
	int listen_fd;
	struct ev_req accept_req;
	struct ctl_client *clients;
	unsigned int nr_clients;
	unsigned int next_client_id;
	struct ctl_call *deferred;
	struct cmd_entry *cmds;
	unsigned int nr_cmds, cap_cmds;
	uint64_t start_ns;
	int posted_events;		/* atomic: cross-thread events not yet delivered */
	unsigned int nr_dying;		/* closed clients not yet freed */
	bool destroying;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *ctl_run_state_name(enum ctl_run_state s)
{
	switch (s) {
	case CTL_RUN_CREATED:		return "created";
	case CTL_RUN_RUNNING:		return "running";
	case CTL_RUN_PAUSED:		return "paused";
	case CTL_RUN_SHUTTING_DOWN:	return "shutting-down";
	case CTL_RUN_SHUTDOWN:		return "shutdown";
	}
	return "unknown";
}

/* ---- replies ---- */

int ctl_call_error(struct ctl_call *call, const char *cls, const char *fmt, ...)
{
	va_list ap;

	call->err_class = cls;
	va_start(ap, fmt);
	vsnprintf(call->err_desc, sizeof(call->err_desc), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

json_object *ctl_call_result(struct ctl_call *call)
{
	return call->ret;
}

static json_object *make_error(const char *cls, const char *desc, json_object *id)
{
	json_object *reply = json_object_new_object();
	json_object *err = json_object_new_object();

	json_object_object_add(err, "class", json_object_new_string(cls));
	json_object_object_add(err, "desc", json_object_new_string(desc));
	json_object_object_add(reply, "error", err);
	if (id)
		json_object_object_add(reply, "id", json_object_get(id));
	return reply;
}

/* Build the reply for a finished call and free the call. */
static json_object *call_finish(struct ctl_call *call, int err)
{
	json_object *reply;

	if (err < 0) {
		if (!call->err_class) {
			call->err_class = (err == -EALREADY || err == -EBUSY) ? CTL_ERR_STATE
									       : CTL_ERR_GENERIC;
			snprintf(call->err_desc, sizeof(call->err_desc), "%s",
				 (err == -EOPNOTSUPP || err == -ENOSYS) ? "not supported by this VM"
									  : strerror(-err));
		}
		reply = make_error(call->err_class, call->err_desc, call->id);
		json_object_put(call->ret);
	} else {
		reply = json_object_new_object();
		json_object_object_add(reply, "return", call->ret);
		if (call->id)
			json_object_object_add(reply, "id", json_object_get(call->id));
	}
	json_object_put(call->id);
	free(call);
	return reply;
}

/* ---- client output ---- */

static void client_close(struct ctl_client *c);
static void client_input(struct ctl_client *c);

static int out_reserve(struct ctl_client *c, size_t more)
{
	size_t need, cap;
	char *p;

	/* Compact first: what was sent is at the front. */
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	need = c->out_len + more;
	if (need <= c->out_cap)
		return 0;
	if (need > CTL_MAX_OUTPUT)
		return -ENOBUFS;
	cap = c->out_cap ? c->out_cap : 4096;
	while (cap < need)
		cap *= 2;
	p = realloc(c->out, cap);
	if (!p)
		return -ENOMEM;
	c->out = p;
	c->out_cap = cap;
	return 0;
}

static void wr_cb(struct evloop *l, struct ev_req *req, int res);

/*
 * Close a client that has nothing left to do: after a fatal line error once its output is
 * out, or after EOF once every complete line was answered.
 */
static void client_maybe_done(struct ctl_client *c)
{
	if (c->dying || c->out_off != c->out_len)
		return;
	if (c->closing ||
	    (c->eof && !c->pending && !memchr(c->in, '\n', c->in_len)))
		client_close(c);
}

/* Send what we can without blocking; arm POLLOUT for the rest. */
static void client_flush(struct ctl_client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				if (!ev_req_busy(&c->wr_req) &&
				    evloop_poll(c->srv->loop, &c->wr_req, c->fd, POLLOUT, false) < 0)
					client_close(c);
				return;
			}
			log_dbg("client %u: send: %s", c->id, strerror(errno));
			client_close(c);	/* EPIPE/ECONNRESET: the peer is gone */
			return;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	client_maybe_done(c);
}

static void client_queue_str(struct ctl_client *c, const char *s, size_t len)
{
	int ret;

	if (c->dying)
		return;
	ret = out_reserve(c, len + 1);
	if (ret < 0) {
		log_ratelimited(LOG_WARN, "client %u: dropped, %s (not reading its replies?)",
				c->id, strerror(-ret));
		client_close(c);
		return;
	}
	memcpy(c->out + c->out_len, s, len);
	c->out[c->out_len + len] = '\n';
	c->out_len += len + 1;
}

static void client_send(struct ctl_client *c, json_object *msg)
{
	size_t len;
	const char *s = json_object_to_json_string_length(msg,
			JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);

	client_queue_str(c, s, len);
	client_flush(c);
}

static void wr_cb(struct evloop *l, struct ev_req *req, int res)
{
	struct ctl_client *c = req->opaque;

	if (c->dying || res < 0) {
		client_close(c);	/* maybe the last callback: queues the free */
		return;
	}
	client_flush(c);		/* send() itself reports POLLERR/POLLHUP as errors */
}

/* ---- request handling ---- */

static const struct cmd_entry *find_cmd(const struct ctl_server *srv, const char *name)
{
	unsigned int i;

	for (i = 0; i < srv->nr_cmds; i++)
		if (!strcmp(srv->cmds[i].cmd->name, name))
			return &srv->cmds[i];
	return NULL;
}

static bool type_ok(enum ctl_arg_type t, json_object *v)
{
	switch (t) {
	case CTL_ARG_STRING:	return json_object_is_type(v, json_type_string);
	case CTL_ARG_INT:	return json_object_is_type(v, json_type_int);
	case CTL_ARG_BOOL:	return json_object_is_type(v, json_type_boolean);
	case CTL_ARG_NUMBER:	return json_object_is_type(v, json_type_int) ||
				       json_object_is_type(v, json_type_double);
	case CTL_ARG_OBJECT:	return json_object_is_type(v, json_type_object);
	case CTL_ARG_ARRAY:	return json_object_is_type(v, json_type_array);
	case CTL_ARG_ANY:	return true;
	}
	return false;
}

static const char *type_name(enum ctl_arg_type t)
{
	static const char *const names[] = {
		[CTL_ARG_STRING] = "a string", [CTL_ARG_INT] = "an integer",
		[CTL_ARG_BOOL] = "a boolean", [CTL_ARG_NUMBER] = "a number",
		[CTL_ARG_OBJECT] = "an object", [CTL_ARG_ARRAY] = "an array",
		[CTL_ARG_ANY] = "any value",
	};
	return names[t];
}

/* Check @args against the command's spec; 0 or an error set on @call. */
static int check_args(struct ctl_call *call, const struct ctl_cmd *cmd, json_object *args)
{
	const struct ctl_arg *a;

	json_object_object_foreach(args, key, val) {
		for (a = cmd->args; a && a->name; a++)
			if (!strcmp(a->name, key))
				break;
		if (!a || !a->name)
			return ctl_call_error(call, CTL_ERR_ARGUMENT,
					      "command '%s' has no argument '%.64s'", cmd->name, key);
		if (!type_ok(a->type, val))
			return ctl_call_error(call, CTL_ERR_ARGUMENT,
					      "argument '%s' of '%s' must be %s", a->name,
					      cmd->name, type_name(a->type));
	}
	for (a = cmd->args; a && a->name; a++)
		if (a->required && !json_object_object_get_ex(args, a->name, NULL))
			return ctl_call_error(call, CTL_ERR_ARGUMENT,
					      "command '%s' needs argument '%s'", cmd->name, a->name);
	return 0;
}

/*
 * Parse, validate and run one request. Returns the reply, or NULL if the handler deferred
 * it (then *deferred is the call).
 */
static json_object *handle_line(struct ctl_server *srv, struct ctl_client *c, const char *line,
				size_t len, struct ctl_call **deferred)
{
	struct json_tokener *tok;
	json_object *req, *execute = NULL, *args = NULL, *id = NULL, *reply;
	const struct cmd_entry *ent;
	struct ctl_call *call;
	enum json_tokener_error jerr;
	size_t end;
	int ret;

	*deferred = NULL;
	if (len > INT32_MAX)	/* json_tokener takes an int length */
		return make_error(CTL_ERR_TOO_LONG, "request too long", NULL);
	tok = json_tokener_new();
	if (!tok)
		return make_error(CTL_ERR_GENERIC, "out of memory", NULL);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	req = json_tokener_parse_ex(tok, line, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	if (!req && jerr == json_tokener_continue) {
		/* A bare number may go on; the line is complete, so say the input ended. */
		req = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		end = len;
	}
	json_tokener_free(tok);
	if (jerr != json_tokener_success) {
		char desc[160];

		json_object_put(req);
		snprintf(desc, sizeof(desc), "JSON parse error: %s",
			 jerr == json_tokener_continue ? "unexpected end of input"
						       : json_tokener_error_desc(jerr));
		return make_error(CTL_ERR_PARSE, desc, NULL);
	}
	for (; end < len; end++) {
		if (line[end] != ' ' && line[end] != '\t') {
			json_object_put(req);
			return make_error(CTL_ERR_PARSE,
					  "JSON parse error: trailing data after the request", NULL);
		}
	}
	if (!req || !json_object_is_type(req, json_type_object)) {	/* NULL: JSON null */
		json_object_put(req);
		return make_error(CTL_ERR_REQUEST, "a request must be a JSON object", NULL);
	}
	json_object_object_get_ex(req, "id", &id);
	json_object_object_foreach(req, key, val) {
		(void)val;
		if (strcmp(key, "execute") && strcmp(key, "arguments") && strcmp(key, "id")) {
			char desc[128];

			snprintf(desc, sizeof(desc), "unexpected member '%.64s' in request", key);
			reply = make_error(CTL_ERR_REQUEST, desc, id);
			json_object_put(req);
			return reply;
		}
	}
	if (!json_object_object_get_ex(req, "execute", &execute)) {
		reply = make_error(CTL_ERR_REQUEST, "missing member 'execute'", id);
		goto out;
	}
	if (!json_object_is_type(execute, json_type_string)) {
		reply = make_error(CTL_ERR_REQUEST, "'execute' must be a string", id);
		goto out;
	}
	if (json_object_object_get_ex(req, "arguments", &args) &&
	    !json_object_is_type(args, json_type_object)) {
		reply = make_error(CTL_ERR_REQUEST, "'arguments' must be an object", id);
		goto out;
	}
	ent = find_cmd(srv, json_object_get_string(execute));
	if (!ent) {
		char desc[128];

		snprintf(desc, sizeof(desc), "the command '%.64s' does not exist",
			 json_object_get_string(execute));
		reply = make_error(CTL_ERR_NOT_FOUND, desc, id);
		goto out;
	}

	call = calloc(1, sizeof(*call));
	if (!call) {
		reply = make_error(CTL_ERR_GENERIC, "out of memory", id);
		goto out;
	}
	call->srv = srv;
	call->client = c;
	call->id = id ? json_object_get(id) : NULL;
	call->ret = json_object_new_object();
	args = args ? json_object_get(args) : json_object_new_object();
	ret = check_args(call, ent->cmd, args);
	if (ret == 0)
		ret = ent->cmd->fn(call, args, call->ret, ent->opaque);
	json_object_put(args);
	if (ret == CTL_DEFERRED) {
		call->next = srv->deferred;
		srv->deferred = call;
		*deferred = call;
		reply = NULL;
	} else {
		reply = call_finish(call, ret > 0 ? 0 : ret);
	}
out:
	json_object_put(req);
	return reply;
}

json_object *ctl_server_handle_line(struct ctl_server *srv, const char *line, size_t len)
{
	struct ctl_call *deferred;

	return handle_line(srv, NULL, line, len, &deferred);
}

void ctl_call_complete(struct ctl_call *call, int err)
{
	struct ctl_client *c = call->client;
	struct ctl_server *srv = call->srv;
	json_object *reply;

	if (srv) {
		struct ctl_call **pp;

		for (pp = &srv->deferred; *pp; pp = &(*pp)->next) {
			if (*pp == call) {
				*pp = call->next;
				break;
			}
		}
	}
	reply = call_finish(call, err);
	if (c) {
		c->pending = NULL;
		client_send(c, reply);
		/* Lines that arrived meanwhile; also re-reads if the buffer was full. */
		if (!c->dying)
			client_input(c);
	}
	json_object_put(reply);
}

/* ---- client input ---- */

static void client_fail_line(struct ctl_client *c, const char *desc)
{
	json_object *reply = make_error(CTL_ERR_TOO_LONG, desc, NULL);

	c->closing = true;
	c->in_len = 0;
	client_send(c, reply);
	json_object_put(reply);
}

/* Run every complete line in the buffer, unless a deferred call or a close stops us. */
static void process_lines(struct ctl_client *c)
{
	size_t start = 0;

	while (!c->pending && !c->closing && !c->dying) {
		char *nl = memchr(c->in + start, '\n', c->in_len - start);
		struct ctl_call *deferred;
		json_object *reply;
		size_t len;

		if (!nl)
			break;
		len = (size_t)(nl - (c->in + start));
		if (len && c->in[start + len - 1] == '\r')
			len--;
		if (len > CTL_MAX_LINE) {
			client_fail_line(c, "request line longer than 65536 bytes");
			return;
		}
		if (len) {
			reply = handle_line(c->srv, c, c->in + start, len, &deferred);
			if (deferred)
				c->pending = deferred;
			if (reply) {
				client_send(c, reply);
				json_object_put(reply);
			}
		}
		start = (size_t)(nl - c->in) + 1;
	}
	if (c->dying || c->closing)
		return;
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
	if (!c->pending && c->in_len > CTL_MAX_LINE + 1)
		client_fail_line(c, "request line longer than 65536 bytes");
}

/* Read what is available (bounded by the buffer), then process. */
static void client_input(struct ctl_client *c)
{
	for (;;) {
		ssize_t n;

		if (c->dying || c->closing || c->eof)
			break;
		if (c->in_len == c->in_cap) {
			size_t cap;
			char *p;

			if (c->in_cap >= IN_CAP)
				break;	/* full: only while a deferred call blocks processing */
			cap = c->in_cap ? c->in_cap * 2 : IN_INITIAL;
			if (cap > IN_CAP)
				cap = IN_CAP;
			p = realloc(c->in, cap);
			if (!p) {
				client_close(c);
				return;
			}
			c->in = p;
			c->in_cap = cap;
		}
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			log_dbg("client %u: recv: %s", c->id, strerror(errno));
			client_close(c);
			return;
		}
		if (n == 0) {
			/*
			 * Half-close: answer what is complete, then close. A last line without
			 * its newline (printf '...' | socat) still counts as a request.
			 */
			c->eof = true;
			if (c->in_len && c->in[c->in_len - 1] != '\n' && c->in_len < c->in_cap)
				c->in[c->in_len++] = '\n';
			break;
		}
		c->in_len += (size_t)n;
		process_lines(c);
	}
	process_lines(c);
	if (c->eof && !c->dying) {
		if (ev_req_busy(&c->rd_req))
			evloop_cancel(c->srv->loop, &c->rd_req);
		client_maybe_done(c);
	}
}

static void rd_cb(struct evloop *l, struct ev_req *req, int res)
{
	struct ctl_client *c = req->opaque;

	if (c->dying) {
		client_close(c);
		return;
	}
	if (res < 0) {
		if (res != -ECANCELED)
			log_dbg("client %u: poll: %s", c->id, strerror(-res));
		if (!c->eof)
			client_close(c);
		return;
	}
	client_input(c);
	/* POLLHUP with nothing left to read is an EOF client_input already saw as n == 0. */
}

static void client_free(void *opaque)
{
	struct ctl_client *c = opaque;

	c->srv->nr_dying--;
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

/*
 * Unlink and start teardown. Idempotent. The free always happens later from the loop
 * (posted work), once both polls delivered their last callback, so callers up the stack
 * may still look at c->dying.
 */
static void client_close(struct ctl_client *c)
{
	struct ctl_server *srv = c->srv;

	if (!c->dying) {
		struct ctl_client **pp;

		c->dying = true;
		for (pp = &srv->clients; *pp; pp = &(*pp)->next) {
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		}
		srv->nr_clients--;
		srv->nr_dying++;
		if (c->pending) {
			c->pending->client = NULL;	/* its reply will be dropped */
			c->pending = NULL;
		}
		log_dbg("client %u: closed", c->id);
		/* The fd stays open until the polls are gone, so its number can't be reused. */
		shutdown(c->fd, SHUT_RDWR);
	}
	if (ev_req_busy(&c->rd_req))
		evloop_cancel(srv->loop, &c->rd_req);
	if (ev_req_busy(&c->wr_req))
		evloop_cancel(srv->loop, &c->wr_req);
	if (!ev_req_busy(&c->rd_req) && !ev_req_busy(&c->wr_req) && !c->free_queued) {
		c->free_queued = true;
		c->free_work.fn = client_free;
		c->free_work.opaque = c;
		c->free_work.allocated = false;
		evloop_post_work(srv->loop, &c->free_work);
	}
}

/* ---- accepting ---- */

static void accept_cb(struct evloop *l, struct ev_req *req, int res)
{
	struct ctl_server *srv = req->opaque;

	if (res < 0) {
		if (res != -ECANCELED)
			log_err("poll on listening socket: %s", strerror(-res));
		return;
	}
	for (;;) {
		struct ctl_client *c;
		int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				log_ratelimited(LOG_WARN, "accept: %s", strerror(errno));
			return;
		}
		if (srv->nr_clients >= CTL_MAX_CLIENTS) {
			static const char msg[] = "{\"error\":{\"class\":\"GenericError\","
						  "\"desc\":\"too many control clients\"}}\n";

			(void)!send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->srv = srv;
		c->fd = fd;
		c->id = ++srv->next_client_id;
		ev_req_init(&c->rd_req, rd_cb, c);
		ev_req_init(&c->wr_req, wr_cb, c);
		if (evloop_poll(srv->loop, &c->rd_req, fd, POLLIN | POLLRDHUP, true) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = srv->clients;
		srv->clients = c;
		srv->nr_clients++;
		log_dbg("client %u: connected", c->id);
	}
}

/* ---- events ---- */

static void broadcast_str(struct ctl_server *srv, const char *s, size_t len)
{
	struct ctl_client *c, *next;

	for (c = srv->clients; c; c = next) {
		next = c->next;		/* client_flush may close (and unlink) c */
		client_queue_str(c, s, len);
		if (!c->dying)
			client_flush(c);
	}
}

struct posted_event {
	struct ctl_server *srv;
	size_t len;
	char s[];
};

static void posted_event_run(void *opaque)
{
	struct posted_event *pe = opaque;

	broadcast_str(pe->srv, pe->s, pe->len);
	__atomic_sub_fetch(&pe->srv->posted_events, 1, __ATOMIC_RELEASE);
	free(pe);
}

int ctl_broadcast_event(struct ctl_server *srv, const char *name, json_object *data)
{
	json_object *ev = json_object_new_object(), *ts;
	struct timespec now;
	const char *s;
	size_t len;
	int ret = 0;

	if (!ev) {
		json_object_put(data);
		return -ENOMEM;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	ts = json_object_new_object();
	json_object_object_add(ts, "seconds", json_object_new_int64(now.tv_sec));
	json_object_object_add(ts, "microseconds", json_object_new_int64(now.tv_nsec / 1000));
	json_object_object_add(ev, "event", json_object_new_string(name));
	if (data)
		json_object_object_add(ev, "data", data);
	json_object_object_add(ev, "timestamp", ts);
	s = json_object_to_json_string_length(ev, JSON_C_TO_STRING_PLAIN |
					      JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (evloop_in_loop_thread(srv->loop)) {
		broadcast_str(srv, s, len);
	} else {
		struct posted_event *pe = malloc(sizeof(*pe) + len + 1);

		if (!pe) {
			ret = -ENOMEM;
		} else {
			pe->srv = srv;
			pe->len = len;
			memcpy(pe->s, s, len + 1);
			__atomic_add_fetch(&srv->posted_events, 1, __ATOMIC_ACQ_REL);
			ret = evloop_post(srv->loop, posted_event_run, pe);
			if (ret < 0) {
				__atomic_sub_fetch(&srv->posted_events, 1, __ATOMIC_RELEASE);
				free(pe);
			}
		}
	}
	json_object_put(ev);
	return ret;
}

/* ---- built-in commands ---- */

static int cmd_status(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	struct ctl_server *srv = opaque;
	struct ctl_vm_status st = { 0 };
	int err;

	if (!srv->ops || !srv->ops->status)
		return -EOPNOTSUPP;
	err = srv->ops->status(srv->vm_opaque, &st);
	if (err < 0)
		return err;
	if (!st.uptime_ns)
		st.uptime_ns = mono_ns() - srv->start_ns;
	json_object_object_add(ret, "status", json_object_new_string(ctl_run_state_name(st.state)));
	json_object_object_add(ret, "running", json_object_new_boolean(st.state == CTL_RUN_RUNNING));
	json_object_object_add(ret, "vcpus", json_object_new_int64(st.vcpus));
	json_object_object_add(ret, "memory", json_object_new_int64((int64_t)st.memory_bytes));
	json_object_object_add(ret, "uptime-ms", json_object_new_int64((int64_t)(st.uptime_ns / 1000000)));
	if (srv->ops->status_extra)
		srv->ops->status_extra(srv->vm_opaque, ret);
	return 0;
}

/* One body for the ops that take nothing and return nothing; @event follows success. */
static int simple_op(struct ctl_call *call, int (*fn)(void *), struct ctl_server *srv,
		     const char *event)
{
	int err;

	if (!fn)
		return -EOPNOTSUPP;
	err = fn(srv->vm_opaque);
	if (err == -EALREADY)
		return ctl_call_error(call, CTL_ERR_STATE, "the VM is already in that state");
	if (err < 0)
		return err;
	if (event)
		ctl_broadcast_event(srv, event, NULL);
	return 0;
}

#define OPS(srv) ((srv)->ops ? (srv)->ops : &no_ops)
static const struct ctl_vm_ops no_ops;

static int cmd_pause(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	struct ctl_server *srv = opaque;

	return simple_op(call, OPS(srv)->pause, srv, "STOP");
}

static int cmd_resume(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	struct ctl_server *srv = opaque;

	return simple_op(call, OPS(srv)->resume, srv, "RESUME");
}

static int cmd_powerdown(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	struct ctl_server *srv = opaque;

	return simple_op(call, OPS(srv)->powerdown, srv, "POWERDOWN");
}

static int cmd_kill(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	struct ctl_server *srv = opaque;

	return simple_op(call, OPS(srv)->kill, srv, NULL);
}

static int cmd_quit(struct ctl_call *call, json_object *args, json_object *ret, void *opaque)
{
	struct ctl_server *srv = opaque;

	return simple_op(call, OPS(srv)->quit, srv, NULL);
}

static int cmd_query_commands(struct ctl_call *call, json_object *args, json_object *ret,
			      void *opaque)
{
	struct ctl_server *srv = opaque;
	json_object *arr = json_object_new_array();
	unsigned int i;

	for (i = 0; i < srv->nr_cmds; i++) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "name", json_object_new_string(srv->cmds[i].cmd->name));
		if (srv->cmds[i].cmd->help)
			json_object_object_add(o, "help",
					       json_object_new_string(srv->cmds[i].cmd->help));
		json_object_array_add(arr, o);
	}
	json_object_object_add(ret, "commands", arr);
	return 0;
}

static const struct ctl_cmd builtin_cmds[] = {
	{ .name = "status", .fn = cmd_status,
	  .help = "run state, vCPUs, memory, uptime and VM details" },
	{ .name = "pause", .fn = cmd_pause,
	  .help = "stop all vCPUs; replies once every vCPU acknowledged" },
	{ .name = "resume", .fn = cmd_resume, .help = "restart paused vCPUs" },
	{ .name = "powerdown", .fn = cmd_powerdown, .help = "press the ACPI power button" },
	{ .name = "kill", .fn = cmd_kill, .help = "stop the VM at once" },
	{ .name = "quit", .fn = cmd_quit, .help = "stop the VM and exit the vmm" },
	{ .name = "query-commands", .fn = cmd_query_commands, .help = "list the commands" },
};

/* ---- server ---- */

int ctl_server_register(struct ctl_server *srv, const struct ctl_cmd *cmds, unsigned int n,
			void *opaque)
{
	unsigned int i, j;

	for (i = 0; i < n; i++) {
		if (!cmds[i].name || !cmds[i].fn)
			return -EINVAL;
		if (find_cmd(srv, cmds[i].name))
			return -EEXIST;
		for (j = 0; j < i; j++)
			if (!strcmp(cmds[i].name, cmds[j].name))
				return -EEXIST;
	}
	if (srv->nr_cmds + n > srv->cap_cmds) {
		unsigned int cap = srv->cap_cmds ? srv->cap_cmds : 16;
		struct cmd_entry *p;

		while (cap < srv->nr_cmds + n)
			cap *= 2;
		p = realloc(srv->cmds, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		srv->cmds = p;
		srv->cap_cmds = cap;
	}
	for (i = 0; i < n; i++) {
		srv->cmds[srv->nr_cmds].cmd = &cmds[i];
		srv->cmds[srv->nr_cmds].opaque = opaque;
		srv->nr_cmds++;
	}
	return 0;
}

unsigned int ctl_server_nr_clients(const struct ctl_server *srv)
{
	return srv->nr_clients;
}

/*
 * After a successful connect: does the server answer? A process killed a moment ago still
 * has its listening socket while the kernel tears its io_uring down asynchronously, so a
 * connect can succeed and then be reset. Ask for the command list and wait up to 500 ms:
 * any reply, or silence (a server busy for a moment), counts as live; EOF/reset as dead.
 */
static bool answers(int fd)
{
	static const char probe[] = "{\"execute\":\"query-commands\"}\n";
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char c;

	if (send(fd, probe, sizeof(probe) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN)
		return false;
	if (poll(&pfd, 1, 500) <= 0)
		return true;
	return recv(fd, &c, 1, MSG_DONTWAIT) == 1;
}

/* Is a server accepting on @addr? Connect test: refused = stale, anything else = live. */
static int probe_existing(const char *path, const struct sockaddr_un *addr)
{
	struct stat st;
	int fd, ret;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		log_err("control socket %s: the path exists and is not a socket; refusing to replace it",
			path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	ret = connect(fd, (const struct sockaddr *)addr, sizeof(*addr));
	if (ret == 0 && !answers(fd)) {
		/* A vmm that just died: its listener lingers until its ring is torn down. */
		close(fd);
		errno = ECONNREFUSED;
		ret = -1;
	}
	if (ret == 0 || errno == EAGAIN || errno == EINPROGRESS) {
		/* EAGAIN: a live server whose backlog is full. */
		close(fd);
		log_err("control socket %s: in use by a running server (another vmm for this VM?)",
			path);
		return -EADDRINUSE;
	}
	ret = errno;
	close(fd);
	if (ret != ECONNREFUSED) {
		log_err("control socket %s: cannot probe the existing socket: %s", path, strerror(ret));
		return -ret;
	}
	/* Left behind by a vmm that died: nobody listens, take it over. */
	if (unlink(path) < 0 && errno != ENOENT) {
		ret = -errno;
		log_err("control socket %s: cannot remove the stale socket: %s", path, strerror(errno));
		return ret;
	}
	log_info("control socket %s: removed a stale socket", path);
	return 0;
}

int ctl_server_create(const struct ctl_config *cfg, struct ctl_server **out)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct ctl_server *srv;
	struct stat st;
	int ret;

	if (!cfg->path || !cfg->loop)
		return -EINVAL;
	if (strlen(cfg->path) >= sizeof(addr.sun_path)) {
		log_err("control socket %s: path longer than %zu bytes", cfg->path,
			sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	if (!cfg->path[0]) {
		log_err("control socket: empty path");
		return -EINVAL;
	}
	memcpy(addr.sun_path, cfg->path, strlen(cfg->path) + 1);

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->loop = cfg->loop;
	srv->ops = cfg->ops;
	srv->vm_opaque = cfg->vm_opaque;
	srv->start_ns = mono_ns();
	srv->listen_fd = -1;
	memcpy(srv->path, addr.sun_path, sizeof(srv->path));
	ev_req_init(&srv->accept_req, accept_cb, srv);

	ret = ctl_server_register(srv, builtin_cmds,
				  sizeof(builtin_cmds) / sizeof(builtin_cmds[0]), srv);
	if (ret < 0)
		goto err_free;
	ret = probe_existing(cfg->path, &addr);
	if (ret < 0)
		goto err_free;

	srv->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (srv->listen_fd < 0) {
		ret = -errno;
		log_err("control socket: socket(): %s", strerror(errno));
		goto err_free;
	}
	if (bind(srv->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		ret = -errno;
		/* EADDRINUSE here: another vmm won the race since the probe. */
		log_err("control socket %s: bind: %s", cfg->path, strerror(errno));
		goto err_close;
	}
	/* Only the owner may drive the VM. (chmod after bind: umask is process-wide.) */
	if (chmod(cfg->path, 0600) < 0 || stat(cfg->path, &st) < 0) {
		ret = -errno;
		log_err("control socket %s: chmod/stat: %s", cfg->path, strerror(errno));
		goto err_unlink;
	}
	srv->sock_dev = st.st_dev;
	srv->sock_ino = st.st_ino;
	if (listen(srv->listen_fd, 16) < 0) {
		ret = -errno;
		log_err("control socket %s: listen: %s", cfg->path, strerror(errno));
		goto err_unlink;
	}
	ret = evloop_poll(srv->loop, &srv->accept_req, srv->listen_fd, POLLIN, true);
	if (ret < 0) {
		log_err("control socket %s: poll: %s", cfg->path, strerror(-ret));
		goto err_unlink;
	}
	*out = srv;
	return 0;

err_unlink:
	unlink(cfg->path);
err_close:
	close(srv->listen_fd);
err_free:
	free(srv->cmds);
	free(srv);
	return ret;
}

/* Blocking best-effort flush of one client's output, bounded by @deadline_ns. */
static void flush_blocking(struct ctl_client *c, uint64_t deadline_ns)
{
	while (c->out_off < c->out_len) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
		uint64_t now = mono_ns();
		ssize_t n;

		if (now >= deadline_ns)
			return;
		if (poll(&pfd, 1, (int)((deadline_ns - now) / 1000000) + 1) <= 0)
			return;
		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return;
		}
		c->out_off += (size_t)n;
	}
}

static bool all_idle(const struct ctl_server *srv)
{
	return !ev_req_busy(&srv->accept_req) && !srv->nr_dying &&
	       !__atomic_load_n(&srv->posted_events, __ATOMIC_ACQUIRE);
}

void ctl_server_destroy(struct ctl_server *srv)
{
	uint64_t deadline = mono_ns() + 100 * 1000000ull;
	struct ctl_client *c, *next;
	struct stat st;
	struct ctl_call *call;

	if (!srv)
		return;
	srv->destroying = true;
	/* Events other threads posted still reference srv: let them run first. */
	while (__atomic_load_n(&srv->posted_events, __ATOMIC_ACQUIRE) && mono_ns() < deadline)
		evloop_run_once(srv->loop, 10 * 1000000ull);

	if (ev_req_busy(&srv->accept_req))
		evloop_cancel(srv->loop, &srv->accept_req);
	for (call = srv->deferred; call; call = call->next) {
		call->srv = NULL;
		call->client = NULL;
	}
	srv->deferred = NULL;
	/* Flush, then tear down each client; the loop frees them as cancellations come back. */
	for (c = srv->clients; c; c = next) {
		next = c->next;
		flush_blocking(c, deadline);
	}
	while (srv->clients)
		client_close(srv->clients);
	/* Reap cancellations (bounded): polls reference clients and srv->accept_req. */
	deadline = mono_ns() + 1000 * 1000000ull;
	while (!all_idle(srv) && mono_ns() < deadline)
		evloop_run_once(srv->loop, 10 * 1000000ull);
	if (!all_idle(srv))
		log_warn("control socket: requests still in flight at teardown");

	/* Remove the socket only if it is still ours (not replaced by a newer vmm). */
	if (stat(srv->path, &st) == 0 && st.st_dev == srv->sock_dev && st.st_ino == srv->sock_ino)
		unlink(srv->path);
	close(srv->listen_fd);
	free(srv->cmds);
	free(srv);
}
