// SPDX-License-Identifier: MIT
/*
 * Live migration, destination side: `vmm --incoming HOST:PORT`. The VM was created from the
 * same command line as the source's, but its vCPUs have not started; this file accepts one
 * connection, checks everything the source sends and loads it. Only when COMPLETE arrived
 * and the whole state stream loaded does it return 0, main.c starts the vCPUs, and
 * mig_dest_ack() sends ACK(COMPLETE) — from then on the VM is this process's.
 *
 * Everything received is hostile until checked: headers by mig_hdr_decode (length bounds
 * before allocation), order by mig_seq_accept, pages by mig_pages_rx_* (every gpa inside RAM,
 * exact sizes, whole zstd frames), state by state_verify_buf then the two-phase load. Any
 * failure sends ABORT with the reason (best effort), logs one line and returns -errno; the
 * process then exits non-zero without ever running a vCPU.
 *
 * Guest RAM is zeroed (memfd hole punched) before the first page is applied: vm_create wrote
 * the firmware/kernel and ACPI tables, and the page receiver relies on fresh zero memory to
 * skip zero pages it never wrote.
 *
 * Post-copy (protocol version 3, only when HELLO agreed on MIG_FEAT_POSTCOPY, which this side
 * offers when userfaultfd works here): POSTCOPY_START instead of STATE hands the connection to
 * postcopy_dst.c, which receives STATE and COMPLETE (and pages) on its own thread; the state is
 * loaded here as usual and mig_started() sends ACK(POSTCOPY_START) instead of ACK(COMPLETE).
 */
#define LOG_TAG "incoming"
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrate/migration.h"
#include "migrate/pages.h"
#include "migrate/postcopy.h"
#include "migrate/proto.h"
#include "migrate/stream.h"
#include "migrate/uffd.h"
#include "vmm/lib/log.h"
#include "vmm/vm.h"

#define DEST_TIMEOUT_MS		30000

/*
 * Fault injection for the failure tests (tests/migrate/failure-tiny.sh), from the
 * environment: VMM_MIG_FAULT=at-state (give up when STATE arrives: the source is then in
 * stop-and-copy with its vCPUs paused) or no-ack (load and start, then stop without sending
 * ACK(COMPLETE): the source waits for it), no-postcopy (do not offer MIG_FEAT_POSTCOPY, as
 * on a host without userfaultfd). Never set in production.
 */
/* When COMPLETE's state was loaded: the ACK's log line gives the vCPU start's share of the downtime. */
static uint64_t t_state_loaded_ns;

static bool fault(const char *what)
{
	const char *f = getenv("VMM_MIG_FAULT");

	if (!f || strcmp(f, what))
		return false;
	log_warn("VMM_MIG_FAULT=%s: failing on purpose", what);
	return true;
}

/* Wait for the source; SIGTERM/SIGINT (blocked in main, not yet on a signalfd) end the wait. */
static int accept_one(int lfd, int *fd_out)
{
	sigset_t pend;
	int fd;

	for (;;) {
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };
		int n = poll(&pfd, 1, 200);

		if (n < 0 && errno != EINTR)
			return -errno;
		sigpending(&pend);
		if (sigismember(&pend, SIGTERM) || sigismember(&pend, SIGINT) ||
		    sigismember(&pend, SIGHUP)) {
			log_err("signal while waiting for the migration: giving up");
			return -EINTR;
		}
		if (n <= 0)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			*fd_out = fd;
			return 0;
		}
		if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN)
			return -errno;
	}
}

/* Errors of the state loader (vmm/state.h) in words for the one-line reason. */
static const char *state_err(int err)
{
	switch (err) {
	case -EILSEQ: return "checksum mismatch (corrupted)";
	case -EBADMSG: return "malformed or truncated";
	case -E2BIG: return "over a size limit";
	case -EPROTO: return "unknown or repeated section, or unknown required field";
	case -EPROTONOSUPPORT: return "section version not supported here";
	case -ENOENT: return "a section this VM needs is missing";
	default: return strerror(-err);
	}
}

/* Load the verified state stream (COMPLETE). 0 or -errno with @why. */
static int load_state(struct mig_ctx *m, const uint8_t *state, size_t len, char *why,
		      size_t whylen)
{
	uint64_t t0 = mig_now_ns();
	int ret;

	ret = state_load_buf(m->reg, state, len, NULL);
	if (ret < 0) {
		snprintf(why, whylen, "loading device state: %s", state_err(ret));
		return ret;
	}
	t_state_loaded_ns = mig_now_ns();
	log_info("COMPLETE: %zu KiB of state loaded in %.2f ms", len >> 10,
		 (double)(t_state_loaded_ns - t0) / 1e6);
	return 0;
}

/* What this side offers in HELLO: post-copy only where userfaultfd works. */
static uint64_t local_features(void)
{
	char why[160];

	if (fault("no-postcopy"))
		return MIG_FEAT_ZSTD;
	if (uffd_probe(why, sizeof(why)) < 0) {
		log_dbg("not offering post-copy: %s", why);
		return MIG_FEAT_ZSTD;
	}
	return MIG_FEAT_ZSTD | MIG_FEAT_POSTCOPY;
}

static void send_abort(struct mig_stream *s, int err, const char *msg)
{
	uint8_t ab[8 + MIG_MAX_ABORT_MSG];
	size_t n = mig_abort_encode(ab, err, msg);

	if (mig_stream_send_msg(s, MIG_ABORT, ab, n) == 0)
		mig_stream_flush(s);
}

static int on_config(struct mig_ctx *m, struct mig_stream *s, const uint8_t *p, size_t len,
		     struct mig_pages_rx *rx, bool *rx_init)
{
	struct mig_config src, local;
	uint8_t ack[MIG_ACK_LEN];
	char err[256] = "";
	int ret;

	mig_config_init(&src);
	mig_config_init(&local);
	ret = mig_config_decode(p, len, &src);
	if (ret < 0) {
		snprintf(err, sizeof(err), "malformed CONFIG");
		goto out;
	}
	ret = mig_local_config(m, &local);
	if (ret < 0) {
		snprintf(err, sizeof(err), "building local CONFIG: %s", strerror(-ret));
		goto out;
	}
	ret = mig_config_check(&src, &local, local.cpuid, local.nr_cpuid, err, sizeof(err));
	if (ret < 0)
		goto out;
	ret = mig_ram_discard(m);
	if (ret < 0) {
		snprintf(err, sizeof(err), "clearing guest RAM: %s", strerror(-ret));
		goto out;
	}
	ret = mig_pages_rx_init(rx, &m->vm->mem);
	if (ret < 0) {
		snprintf(err, sizeof(err), "page receiver: %s", strerror(-ret));
		goto out;
	}
	*rx_init = true;
	mig_ack_encode(ack, MIG_CONFIG);
	ret = mig_stream_send_msg(s, MIG_ACK, ack, sizeof(ack));
	if (ret == 0)
		ret = mig_stream_flush(s);
	if (ret < 0)
		snprintf(err, sizeof(err), "sending ACK: %s", strerror(-ret));
out:
	if (ret < 0) {
		log_err("refusing the migration: %s", err);
		send_abort(s, ret, err);
	}
	mig_config_free(&src);
	mig_config_free(&local);
	return ret;
}

int mig_dest_run(struct mig_ctx *m, const char *uri)
{
	struct mig_hello local = { MIG_VERSION_MIN, MIG_VERSION_MAX, 0 }, peer;
	struct mig_pc_dst *pc = NULL;
	struct mig_pages_rx rx;
	struct mig_stream *s;
	struct mig_seq seq;
	uint8_t *state = NULL;
	size_t state_len = 0;
	bool rx_init = false, done = false;
	uint64_t t_first = 0, rounds = 0;
	uint32_t version = 1;		/* negotiated in HELLO */
	uint64_t features;
	char why[300] = "";
	int lfd, fd = -1, ret;

	local.features = local_features();
	ret = mig_tcp_listen(uri, &lfd);
	if (ret < 0)
		return ret;
	log_info("waiting for a migration on %s", uri);
	ret = accept_one(lfd, &fd);
	close(lfd);
	if (ret < 0) {
		log_err("accepting the migration connection: %s", strerror(-ret));
		return ret;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	ret = mig_stream_init(s, fd, 4, DEST_TIMEOUT_MS);
	if (ret < 0) {
		close(fd);
		free(s);
		return ret;
	}
	mig_seq_init(&seq, MIG_ROLE_DEST);
	t_first = mig_now_ns();

	while (!done) {
		struct mig_hdr h;
		uint8_t *p = NULL;

		ret = mig_stream_recv_msg(s, &h, &p);
		if (ret < 0) {
			snprintf(why, sizeof(why), "%s", ret == -ECONNRESET ?
				 "the source closed the connection mid-stream" :
				 ret == -ETIMEDOUT ? "no data from the source for 30 s" :
				 ret == -EBADMSG ? "malformed message header" :
				 ret == -E2BIG ? "message length over its limit" :
				 ret == -EPROTO ? "unknown command" : strerror(-ret));
			break;
		}
		ret = mig_seq_accept(&seq, h.cmd, 0);
		if (ret < 0) {
			snprintf(why, sizeof(why), "%s out of order", mig_cmd_name(h.cmd));
			free(p);
			break;
		}
		switch (h.cmd) {
		case MIG_HELLO: {
			uint8_t out[MIG_HELLO_LEN];
			uint32_t v;

			ret = mig_hello_decode(p, h.len, &peer);
			if (ret == 0)
				ret = mig_hello_agree(&local, &peer, &v, &features);
			if (ret < 0) {
				snprintf(why, sizeof(why), "no common protocol version (we speak %u..%u)",
					 local.min_version, local.max_version);
				break;
			}
			version = v;
			s->version = v;		/* post-copy commands decode from here on in v3 */
			mig_hello_encode(out, &local);
			ret = mig_stream_send_msg(s, MIG_HELLO, out, sizeof(out));
			if (ret == 0)
				ret = mig_stream_flush(s);
			if (ret < 0)
				snprintf(why, sizeof(why), "sending HELLO: %s", strerror(-ret));
			break;
		}
		case MIG_CONFIG:
			ret = on_config(m, s, p, h.len, &rx, &rx_init);
			if (ret < 0)
				snprintf(why, sizeof(why), "-");	/* already logged + ABORT sent */
			break;
		case MIG_RAM:
			ret = mig_pages_rx_ram(&rx, p, h.len);
			if (ret < 0)
				snprintf(why, sizeof(why), "RAM batch rejected: %s",
					 ret == -ERANGE ? "a page lies outside guest RAM" : strerror(-ret));
			break;
		case MIG_RAM_ZERO:
			ret = mig_pages_rx_zero(&rx, p, h.len);
			if (ret < 0)
				snprintf(why, sizeof(why), "zero-page list rejected: %s",
					 ret == -ERANGE ? "a page lies outside guest RAM" : strerror(-ret));
			break;
		case MIG_ROUND_END: {
			uint32_t round;
			uint64_t pages;

			ret = mig_round_end_decode(p, h.len, &round, &pages);
			if (ret < 0)
				snprintf(why, sizeof(why), "malformed ROUND_END");
			else
				log_dbg("round %u: %" PRIu64 " pages", round, pages);
			rounds++;
			if (ret == 0 && version >= 2) {
				/*
				 * Every page before it is applied: tell the source, so it pauses only
				 * with nothing left in the pipe and costs pages at our landing rate.
				 */
				uint8_t ack[MIG_ACK_LEN];

				mig_ack_encode(ack, MIG_ROUND_END);
				ret = mig_stream_send_msg(s, MIG_ACK, ack, sizeof(ack));
				if (ret == 0)
					ret = mig_stream_flush(s);
				if (ret < 0)
					snprintf(why, sizeof(why), "sending ACK(ROUND_END): %s", strerror(-ret));
			}
			break;
		}
		case MIG_STATE:
			if (fault("at-state")) {
				snprintf(why, sizeof(why), "fault injected at STATE");
				ret = -ECONNABORTED;	/* no ABORT: like a crash */
				break;
			}
			ret = state_verify_buf(p, h.len, NULL);
			if (ret < 0) {
				snprintf(why, sizeof(why), "device state rejected: %s", state_err(ret));
				break;
			}
			state = p;
			state_len = h.len;
			p = NULL;
			break;
		case MIG_COMPLETE:
			ret = load_state(m, state, state_len, why, sizeof(why));
			done = ret == 0;
			break;
		case MIG_POSTCOPY_START:
			/* From here the post-copy receiver reads the connection (STATE, COMPLETE too). */
			ret = mig_pc_dst_begin(m, s, &seq, p, h.len, &pc, why, sizeof(why));
			if (ret == 0)
				ret = mig_pc_dst_wait_complete(pc, &state, &state_len, why, sizeof(why));
			if (ret == 0)
				ret = load_state(m, state, state_len, why, sizeof(why));
			done = ret == 0;
			break;
		case MIG_ABORT: {
			char msg[MIG_MAX_ABORT_MSG + 1];
			int e = 0;

			if (mig_abort_decode(p, h.len, &e, msg, sizeof(msg)) < 0)
				snprintf(msg, sizeof(msg), "(malformed ABORT)");
			snprintf(why, sizeof(why), "the source aborted: %.200s", msg);
			ret = -ECONNABORTED;
			break;
		}
		default:
			snprintf(why, sizeof(why), "unexpected %s", mig_cmd_name(h.cmd));
			ret = -EPROTO;
			break;
		}
		free(p);
		if (ret < 0)
			break;
	}
	free(state);
	if (rx_init)
		mig_pages_rx_destroy(&rx);
	if (!done && pc) {
		mig_pc_dst_destroy(pc);		/* the guest never ran: its threads just stop */
		pc = NULL;
	}
	if (!done) {
		if (ret >= 0)
			ret = -EPROTO;
		if (strcmp(why, "-")) {
			log_err("migration failed, the VM was not started: %s", why);
			if (ret != -ECONNRESET && ret != -ECONNABORTED && ret != -ETIMEDOUT)
				send_abort(s, ret, why);
		}
		mig_stream_destroy(s);
		free(s);
		return ret;
	}
	log_info("received %.1f MiB in %" PRIu64 " rounds, %.1f ms; state loaded",
		 (double)s->bytes_recv / 1048576.0, rounds, (double)(mig_now_ns() - t_first) / 1e6);
	m->in_stream = s;
	m->in_start_ns = t_first;
	m->pc_dst = pc;
	return 0;
}

int mig_dest_ack(struct mig_ctx *m)
{
	struct mig_stream *s = m->in_stream;
	uint8_t ack[MIG_ACK_LEN];
	int ret;

	mig_ack_encode(ack, MIG_COMPLETE);
	ret = fault("no-ack") ? -ECONNABORTED : mig_stream_send_msg(s, MIG_ACK, ack, sizeof(ack));
	if (ret == 0)
		ret = mig_stream_flush(s);
	if (ret < 0)
		log_err("could not acknowledge the migration (%s): the source keeps the VM, "
			"stopping this copy", strerror(-ret));
	else
		log_info("migration complete: running (vCPUs started and ACK sent %.2f ms after the "
			 "state load)", (double)(mig_now_ns() - t_state_loaded_ns) / 1e6);
	mig_stream_destroy(s);
	free(s);
	m->in_stream = NULL;
	return ret;
}
