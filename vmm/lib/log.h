/* SPDX-License-Identifier: MIT */
/*
 * Leveled logging to stderr. Each .c defines LOG_TAG before including this header, so every
 * line says which module wrote it ("virtio-blk: ..."). Anything a guest or a peer can trigger
 * goes through log_ratelimited() so a hostile guest cannot flood the host's logs.
 */
#ifndef VMM_LIB_LOG_H
#define VMM_LIB_LOG_H

#include <stdbool.h>
#include <stdint.h>

#ifndef LOG_TAG
#define LOG_TAG "vmm"
#endif

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DBG };

/* Messages above this level are dropped. Default LOG_INFO; VMM_LOG=debug in the environment. */
extern enum log_level log_max_level;

void log_init_from_env(void);
void log_msg(enum log_level lvl, const char *tag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_err(...)  log_msg(LOG_ERR, LOG_TAG, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, LOG_TAG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, LOG_TAG, __VA_ARGS__)
#define log_dbg(...)  do { if (log_max_level >= LOG_DBG) log_msg(LOG_DBG, LOG_TAG, __VA_ARGS__); } while (0)

/*
 * Rate limit: at most `burst` messages per call site every 5 seconds; the state lives in a
 * static at the call site, so each site is limited on its own.
 */
struct log_ratelimit {
	uint64_t window_start_ns;
	unsigned int printed;
	unsigned int suppressed;
};
bool log_ratelimit_ok(struct log_ratelimit *rl, unsigned int burst);

#define log_ratelimited(lvl, ...) do {					\
		static struct log_ratelimit _rl;			\
		if (log_ratelimit_ok(&_rl, 10))				\
			log_msg(lvl, LOG_TAG, __VA_ARGS__);		\
	} while (0)

/* A state that cannot happen: log where, then abort. Never for guest- or peer-controlled data. */
#define BUG_ON(cond) do { if (cond) { log_msg(LOG_ERR, LOG_TAG, "BUG at %s:%d: %s", \
		__FILE__, __LINE__, #cond); abort(); } } while (0)

#endif
