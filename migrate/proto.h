/* SPDX-License-Identifier: MIT */
/*
 * Migration wire protocol: the 16-byte message header, the commands, HELLO version
 * negotiation, the CONFIG compatibility check, ACK/ABORT, and the per-command length limits
 * every received header is checked against before anything is allocated. The sequence of
 * messages and every payload layout is specified in docs/migration-protocol.md; RAM and
 * RAM_ZERO payloads are built and checked by migrate/pages.h.
 *
 * No I/O here: the transport (migrate/stream.c, later) reads 16 bytes, calls
 * mig_hdr_decode(), then reads exactly hdr.len bytes into a buffer of that size.
 * All functions are pure and thread-safe.
 */
#ifndef MIGRATE_PROTO_H
#define MIGRATE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/state.h"

#define MIG_MAGIC		0x474d4d56u	/* "VMMG" as bytes on the wire (LE u32) */
#define MIG_HDR_LEN		16u

/*
 * Protocol versions this build speaks (HELLO picks the highest common one). Version 3 adds
 * the post-copy commands 16–19 and is only used when both HELLOs carry MIG_FEAT_POSTCOPY
 * (mig_hello_agree); without it two v3 builds speak 2, exactly as before.
 */
#define MIG_VERSION_MIN		1u
#define MIG_VERSION_MAX		3u
#define MIG_VERSION_POSTCOPY	3u	/* first version with commands 16–19 */

#define MIG_PAGE_SIZE		4096u
/*
 * LIMITS. One RAM message carries at most MIG_MAX_BATCH pages: 1024 × 4 KiB = 4 MiB of data
 * + 8 KiB of gpas, so a receiver never holds more than ~8 MiB per message (the compressed
 * input plus the decompressed output). A RAM_ZERO message lists at most 65536 gpas (512 KiB)
 * = 256 MiB of guest RAM per message.
 */
#define MIG_MAX_BATCH		1024u
#define MIG_MAX_ZERO_BATCH	65536u
#define MIG_MAX_CONFIG		(1u << 20)	/* CONFIG TLV list */
/*
 * RAM payload: u32 npages, u32 flags, u64 gpa[npages], data (raw npages × 4 KiB, or one zstd
 * frame that decompresses to exactly that). RAM_ZERO payload: u32 npages, u32 0, u64 gpa[].
 */
#define MIG_RAM_HDR_LEN		8u
#define MIG_RAM_F_ZSTD		0x1u		/* data is a zstd frame */
#define MIG_RAM_MAX_LEN		(MIG_RAM_HDR_LEN + (uint64_t)MIG_MAX_BATCH * (8 + MIG_PAGE_SIZE))
#define MIG_RAM_ZERO_MAX_LEN	(MIG_RAM_HDR_LEN + (uint64_t)MIG_MAX_ZERO_BATCH * 8)
/* A whole state stream: its header, every section header + crc, and the byte limit. */
#define MIG_STATE_MAX_LEN	(16 + 28ull * STATE_DEFAULT_MAX_SECTIONS + STATE_DEFAULT_MAX_TOTAL)
#define MIG_MAX_ABORT_MSG	1024u		/* text in ABORT */

enum mig_cmd {
	MIG_HELLO	= 1,	/* both ways first: versions + feature bits */
	MIG_CONFIG	= 2,	/* src → dst: VM shape; dst answers ACK or ABORT */
	MIG_RAM		= 3,	/* src → dst: a batch of pages (raw or zstd) */
	MIG_RAM_ZERO	= 4,	/* src → dst: gpas of pages that are all zero */
	MIG_ROUND_END	= 5,	/* src → dst: end of a dirty round (progress/accounting) */
	MIG_STATE	= 6,	/* src → dst: the device state stream (vmm/state.h), once */
	MIG_COMPLETE	= 7,	/* src → dst: nothing more follows; load and resume */
	MIG_ACK		= 8,	/* dst → src: a command succeeded (CONFIG, COMPLETE) */
	MIG_ABORT	= 9,	/* either way: give up, with errno and text */
	/*
	 * Post-copy, protocol version 3 only (mig_hdr_decode_ver refuses them below it):
	 * dst → src page request by gpa list, src → dst urgent page data, src → dst "switch to
	 * post-copy", dst → src "all pages present". Payloads: migrate/postcopy_proto.h.
	 */
	MIG_PAGE_REQ		= 16,
	MIG_PAGE_URGENT		= 17,
	MIG_POSTCOPY_START	= 18,
	MIG_POSTCOPY_DONE	= 19,
};

/* Header flags: none defined in version 1; a receiver refuses nonzero flags. */

struct mig_hdr {		/* little-endian on the wire; decoded copy in host order */
	uint32_t magic;
	uint16_t cmd;
	uint16_t flags;
	uint64_t len;		/* payload bytes that follow */
};
_Static_assert(sizeof(struct mig_hdr) == MIG_HDR_LEN, "wire layout");

/* Fill 16 wire bytes. */
void mig_hdr_encode(uint8_t out[MIG_HDR_LEN], uint16_t cmd, uint16_t flags, uint64_t len);
/*
 * Decode and check 16 wire bytes: magic (-EBADMSG), known command (-EPROTO; the post-copy
 * commands too, below version 3), flags zero (-EBADMSG), and len within the command's bounds
 * (mig_cmd_len_bounds_ver; -E2BIG over the maximum, -EBADMSG under the minimum). Safe to
 * allocate h->len bytes after it returns 0. mig_hdr_decode() is mig_hdr_decode_ver() for
 * version 2 (what every stream speaks until HELLO agreed on post-copy).
 */
int mig_hdr_decode(const uint8_t in[MIG_HDR_LEN], struct mig_hdr *h);
int mig_hdr_decode_ver(const uint8_t in[MIG_HDR_LEN], uint32_t version, struct mig_hdr *h);
/* The payload bounds of a command in versions 1..2: [min, max]. 0 for an unknown command. */
int mig_cmd_len_bounds(uint16_t cmd, uint64_t *min, uint64_t *max);
/* The same in @version (the post-copy commands exist from MIG_VERSION_POSTCOPY on). */
int mig_cmd_len_bounds_ver(uint16_t cmd, uint32_t version, uint64_t *min, uint64_t *max);
const char *mig_cmd_name(uint16_t cmd);

/* ---- HELLO ---- */

/* Feature bits in HELLO: informational in v1 (what the sender can do), ANDed by both. */
#define MIG_FEAT_ZSTD		(1ull << 0)	/* may send MIG_RAM_F_ZSTD batches */
#define MIG_FEAT_POSTCOPY	(1ull << 1)	/* can do post-copy (destination: userfaultfd works) */

struct mig_hello {
	uint32_t min_version;
	uint32_t max_version;
	uint64_t features;
};
#define MIG_HELLO_LEN		16u	/* v1 payload; longer HELLOs (future fields) are accepted */
#define MIG_HELLO_MAX		256u

void mig_hello_encode(uint8_t out[MIG_HELLO_LEN], const struct mig_hello *h);
/* -EBADMSG if @len < 16 or min > max or min == 0; trailing bytes ignored (newer peers). */
int mig_hello_decode(const uint8_t *in, size_t len, struct mig_hello *h);
/*
 * The highest version both sides speak, or -EPROTONOSUPPORT (logged with both ranges).
 * Both sides call this with the same two ranges and so agree without another round trip.
 */
int mig_version_pick(const struct mig_hello *local, const struct mig_hello *peer,
		     uint32_t *version);
/*
 * What both sides use: *features = local & peer, *version = mig_version_pick's, but never
 * MIG_VERSION_POSTCOPY or above unless both offered MIG_FEAT_POSTCOPY (then the highest
 * common version below it; -EPROTONOSUPPORT if there is none). Symmetric like _pick.
 */
int mig_hello_agree(const struct mig_hello *local, const struct mig_hello *peer,
		    uint32_t *version, uint64_t *features);

/* ---- CONFIG: what the destination compares before any memory moves ---- */

/* One CPUID leaf as the VM sees it (the VM's configured CPUID, or the host's supported set). */
struct mig_cpuid {
	uint32_t function, index;
	uint32_t eax, ebx, ecx, edx;
};

struct mig_config {
	uint64_t mem_bytes;
	uint32_t nr_vcpus;
	char **devices;			/* "name[id]" of every state section, sorted */
	size_t nr_devices;
	struct mig_cpuid *cpuid;	/* the CPUID the VM runs with */
	size_t nr_cpuid;
};

#define MIG_MAX_DEVICES		STATE_DEFAULT_MAX_SECTIONS
#define MIG_MAX_CPUID		256u

/* CONFIG TLV tags (unknown optional tags are skipped, as in state sections). */
enum {
	MIG_CFG_T_MEM_BYTES	= 1,	/* u64, required */
	MIG_CFG_T_NR_VCPUS	= 2,	/* u32, required */
	MIG_CFG_T_DEVICE	= 3,	/* string "name[id]", repeated */
	MIG_CFG_T_CPUID		= 4,	/* 24 bytes: function, index, eax, ebx, ecx, edx (LE u32) */
};

void mig_config_init(struct mig_config *c);
void mig_config_free(struct mig_config *c);
/* Append a device "name[id]" / a CPUID leaf. 0, -ENOMEM, -E2BIG past the limits. */
int mig_config_add_device(struct mig_config *c, const char *name, const char *id);
int mig_config_add_cpuid(struct mig_config *c, const struct mig_cpuid *leaf);
/* Add every section of @reg as a device (what the core normally does). */
int mig_config_add_registry(struct mig_config *c, const struct state_registry *reg);

/* Encode into a malloc'ed buffer (*out, *len; free it). 0 or -errno. */
int mig_config_encode(const struct mig_config *c, uint8_t **out, size_t *len);
/* Decode a CONFIG payload (hostile). 0 or -EBADMSG/-EPROTO/-E2BIG/-ENOMEM. Free with _free. */
int mig_config_decode(const uint8_t *in, size_t len, struct mig_config *c);

/*
 * Destination side: can a VM of shape @src run here as @dst (the VM this process was started
 * with), on a host whose KVM supports @host (KVM_GET_SUPPORTED_CPUID; NULL skips the CPU
 * check)? 0, or -EINVAL with the first reason in @err (for ABORT and the log): memory size,
 * vCPU count, device set, or CPU feature bits the source VM uses that this host lacks.
 */
int mig_config_check(const struct mig_config *src, const struct mig_config *dst,
		     const struct mig_cpuid *host, size_t nr_host, char *err, size_t errlen);

/* ---- ACK, ABORT, ROUND_END ---- */

#define MIG_ACK_LEN		8u	/* u16 cmd acknowledged, u16 0, u32 status (0) */
#define MIG_ROUND_END_LEN	16u	/* u32 round, u32 0, u64 pages sent in the round */
#define MIG_ABORT_MIN		8u	/* u32 errno (positive), u32 text length, text */

void mig_ack_encode(uint8_t out[MIG_ACK_LEN], uint16_t cmd);
int  mig_ack_decode(const uint8_t *in, size_t len, uint16_t *cmd);
void mig_round_end_encode(uint8_t out[MIG_ROUND_END_LEN], uint32_t round, uint64_t pages);
int  mig_round_end_decode(const uint8_t *in, size_t len, uint32_t *round, uint64_t *pages);
/* Encode an ABORT payload into @out (≥ 8 + MIG_MAX_ABORT_MSG); returns its length. Text cut. */
size_t mig_abort_encode(uint8_t *out, int err, const char *msg);
/* Decode: *err positive errno, @msg NUL-terminated printable copy. -EBADMSG if malformed. */
int  mig_abort_decode(const uint8_t *in, size_t len, int *err, char *msg, size_t msglen);

/* ---- receive order ---- */

/*
 * Which command may come next, per side. The destination expects HELLO, CONFIG, then any of
 * RAM/RAM_ZERO/ROUND_END, then STATE, then COMPLETE; the source expects HELLO, ACK(CONFIG),
 * then any number of ACK(ROUND_END) (version 2: the destination applied that round), then
 * ACK(COMPLETE). ABORT is accepted at any point. mig_seq_accept() returns 0 and advances,
 * or -EPROTO (logged) for a message out of order — e.g. RAM before CONFIG was accepted, or a
 * second STATE. Post-copy (v3): the destination takes POSTCOPY_START instead of STATE during
 * the rounds, then STATE, COMPLETE, then RAM/RAM_ZERO/PAGE_URGENT; the source, after
 * mig_seq_postcopy(), PAGE_REQ (any number), one ACK(POSTCOPY_START), then POSTCOPY_DONE.
 */
enum mig_role { MIG_ROLE_SOURCE, MIG_ROLE_DEST };
enum mig_phase {
	MIG_PH_HELLO,		/* nothing received yet */
	MIG_PH_CONFIG,		/* dst: waiting for CONFIG / src: waiting for ACK(CONFIG) */
	MIG_PH_RAM,		/* dst: RAM rounds until STATE */
	MIG_PH_COMPLETE,	/* dst: STATE received, waiting for COMPLETE / src: for ACK */
	MIG_PH_PC_STATE,	/* dst: POSTCOPY_START received, STATE must follow */
	MIG_PH_PC_COMPLETE,	/* dst: post-copy STATE received, waiting for COMPLETE */
	MIG_PH_POSTCOPY,	/* dst: RAM/RAM_ZERO/PAGE_URGENT until every page is in /
				   src: PAGE_REQ, one ACK(POSTCOPY_START), then POSTCOPY_DONE */
	MIG_PH_DONE,
	MIG_PH_ABORTED,
};
struct mig_seq {
	enum mig_role role;
	enum mig_phase phase;
	bool pc_acked;		/* src: ACK(POSTCOPY_START) seen (POSTCOPY_DONE only after it) */
};
void mig_seq_init(struct mig_seq *s, enum mig_role role);
/* Source: POSTCOPY_START was sent; from now on accept the post-copy replies. */
void mig_seq_postcopy(struct mig_seq *s);
/* @ack_cmd: for MIG_ACK, the acknowledged command (from mig_ack_decode), else ignored. */
int  mig_seq_accept(struct mig_seq *s, uint16_t cmd, uint16_t ack_cmd);

#endif
