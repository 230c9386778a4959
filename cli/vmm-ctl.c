// SPDX-License-Identifier: MIT
/*
 * vmm-ctl: send one request to a vmm control socket and print the reply (one JSON line).
 * A small tool for scripts and tests until the real vmctl CLI exists.
 *
 *   vmm-ctl [-t SECONDS] [-e] SOCKET REQUEST
 *
 * REQUEST is a JSON object ({"execute":"status"}) or just a command name (status).
 * Event lines that arrive before the reply are skipped (printed with -e).
 * Exit status: 0 reply was "return", 1 reply was "error", 2 usage/connection/protocol
 * error, 3 timeout.
 */
#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPLY (16u << 20)

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void usage(void)
{
	fprintf(stderr, "usage: vmm-ctl [-t SECONDS] [-e] SOCKET REQUEST\n"
			"  REQUEST: a JSON object like '{\"execute\":\"status\"}', or a command name\n");
	exit(2);
}

/* Wait for @events on @fd until @deadline; 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		uint64_t now = mono_ms();
		int ret;

		if (now >= deadline)
			return 0;
		ret = poll(&pfd, 1, (int)(deadline - now));
		if (ret < 0 && errno == EINTR)
			continue;
		return ret < 0 ? -1 : ret;
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	double timeout_s = 10;
	bool show_events = false;
	const char *path, *request;
	json_object *req;
	char *buf = NULL, *line;
	size_t len = 0, cap = 0, off = 0, reqlen;
	uint64_t deadline;
	int fd = -1, opt, ret;

	while ((opt = getopt(argc, argv, "t:eh")) != -1) {
		switch (opt) {
		case 't':
			timeout_s = strtod(optarg, NULL);
			if (timeout_s <= 0)
				usage();
			break;
		case 'e':
			show_events = true;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2)
		usage();
	path = argv[optind];
	request = argv[optind + 1];
	deadline = mono_ms() + (uint64_t)(timeout_s * 1000);

	/* Validate and normalise the request with the JSON library: one line, no newlines. */
	if (request[0] == '{') {
		req = json_tokener_parse(request);
		if (!req || !json_object_is_type(req, json_type_object)) {
			fprintf(stderr, "vmm-ctl: the request is not a JSON object\n");
			json_object_put(req);
			return 2;
		}
	} else {
		req = json_object_new_object();
		json_object_object_add(req, "execute", json_object_new_string(request));
	}
	request = json_object_to_json_string_length(req, JSON_C_TO_STRING_PLAIN, &reqlen);

	ret = 2;
	if (strlen(path) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "vmm-ctl: %s: socket path too long\n", path);
		goto out;
	}
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		fprintf(stderr, "vmm-ctl: %s: cannot connect: %s\n", path, strerror(errno));
		goto out;
	}

	/* Send the request line. */
	while (off < reqlen + 1) {
		const char *p = off < reqlen ? request + off : "\n";
		size_t n = off < reqlen ? reqlen - off : 1;
		ssize_t w;

		if (wait_fd(fd, POLLOUT, deadline) == 0)
			goto timeout;
		w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			fprintf(stderr, "vmm-ctl: %s: send: %s\n", path, strerror(errno));
			goto out;
		}
		off += (size_t)w;
	}

	/* Read lines until one that is not an event. */
	for (;;) {
		char *nl;
		ssize_t n;

		while (len && (nl = memchr(buf, '\n', len))) {
			json_object *reply, *dummy;
			size_t l = (size_t)(nl - buf);

			*nl = '\0';
			line = buf;
			reply = json_tokener_parse(line);
			if (!reply || !json_object_is_type(reply, json_type_object)) {
				fprintf(stderr, "vmm-ctl: malformed reply: %.200s\n", line);
				json_object_put(reply);
				goto out;
			}
			if (json_object_object_get_ex(reply, "event", &dummy)) {
				if (show_events)
					printf("%s\n", line);
				json_object_put(reply);
				memmove(buf, nl + 1, len - l - 1);
				len -= l + 1;
				continue;
			}
			printf("%s\n", line);
			ret = json_object_object_get_ex(reply, "return", &dummy) ? 0 : 1;
			json_object_put(reply);
			goto out;
		}
		if (len == cap) {
			char *p;

			if (cap >= MAX_REPLY) {
				fprintf(stderr, "vmm-ctl: reply line too long\n");
				goto out;
			}
			cap = cap ? cap * 2 : 65536;
			p = realloc(buf, cap);
			if (!p)
				goto out;
			buf = p;
		}
		if (wait_fd(fd, POLLIN, deadline) == 0)
			goto timeout;
		n = recv(fd, buf + len, cap - len, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			fprintf(stderr, "vmm-ctl: %s: recv: %s\n", path, strerror(errno));
			goto out;
		}
		if (n == 0) {
			fprintf(stderr, "vmm-ctl: %s: connection closed before a reply\n", path);
			goto out;
		}
		len += (size_t)n;
	}

timeout:
	fprintf(stderr, "vmm-ctl: %s: no reply within %g s\n", path, timeout_s);
	ret = 3;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	json_object_put(req);
	return ret;
}
