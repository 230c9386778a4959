// SPDX-License-Identifier: MIT
/*
 * Logging back-end: one line per message on stderr, "tag: level: text". Kept deliberately
 * simple — the vmm's stderr is captured by vmctld (or the journal under systemd).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/lib/log.h"

enum log_level log_max_level = LOG_INFO;

void log_init_from_env(void)
{
	const char *v = getenv("VMM_LOG");

	if (!v)
		return;
	if (!strcmp(v, "debug"))
		log_max_level = LOG_DBG;
	else if (!strcmp(v, "info"))
		log_max_level = LOG_INFO;
	else if (!strcmp(v, "warn"))
		log_max_level = LOG_WARN;
	else if (!strcmp(v, "error"))
		log_max_level = LOG_ERR;
}

void log_msg(enum log_level lvl, const char *tag, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	char buf[1024];
	va_list ap;

	if (lvl > log_max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* One fprintf per line so lines from different threads do not interleave. */
	fprintf(stderr, "%s: %s: %s\n", tag, names[lvl], buf);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool log_ratelimit_ok(struct log_ratelimit *rl, unsigned int burst)
{
	const uint64_t window = 5ull * 1000000000ull;
	uint64_t now = now_ns();

	/* Racy across threads on purpose: losing a count only changes how many lines print. */
	if (now - rl->window_start_ns > window) {
		if (rl->suppressed)
			fprintf(stderr, "log: %u similar messages suppressed\n", rl->suppressed);
		rl->window_start_ns = now;
		rl->printed = 0;
		rl->suppressed = 0;
	}
	if (rl->printed < burst) {
		rl->printed++;
		return true;
	}
	rl->suppressed++;
	return false;
}
