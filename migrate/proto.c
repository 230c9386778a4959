// SPDX-License-Identifier: MIT
/*
 * Migration wire protocol (contract in proto.h, byte layouts and the message sequence in
 * docs/migration-protocol.md). Everything received here comes from a peer we do not trust:
 * a header's length is compared with the command's bounds before the transport allocates,
 * every payload decoder checks its exact layout, and text from the peer is sanitised before
 * it reaches a log line.
 */
#define LOG_TAG "mig-proto"
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/postcopy_proto.h"
#include "migrate/proto.h"
#include "vmm/lib/log.h"

static void put_le16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static void put_le32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put_le64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint16_t get_le16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static uint32_t get_le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get_le64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

/* ---------------------------------------------------------------- header */

static const struct {
	const char *name;
	uint64_t min, max;
} cmd_table[] = {
	[MIG_HELLO]	= { "HELLO", MIG_HELLO_LEN, MIG_HELLO_MAX },
	[MIG_CONFIG]	= { "CONFIG", 0, MIG_MAX_CONFIG },
	/* at least one gpa and one byte of data */
	[MIG_RAM]	= { "RAM", MIG_RAM_HDR_LEN + 8 + 1, MIG_RAM_MAX_LEN },
	[MIG_RAM_ZERO]	= { "RAM_ZERO", MIG_RAM_HDR_LEN + 8, MIG_RAM_ZERO_MAX_LEN },
	[MIG_ROUND_END]	= { "ROUND_END", MIG_ROUND_END_LEN, MIG_ROUND_END_LEN },
	[MIG_STATE]	= { "STATE", 16, MIG_STATE_MAX_LEN },
	[MIG_COMPLETE]	= { "COMPLETE", 0, 0 },
	[MIG_ACK]	= { "ACK", MIG_ACK_LEN, MIG_ACK_LEN },
	[MIG_ABORT]	= { "ABORT", MIG_ABORT_MIN, MIG_ABORT_MIN + MIG_MAX_ABORT_MSG },
};
#define NR_CMDS (sizeof(cmd_table) / sizeof(cmd_table[0]))

/*
 * Version 3 (post-copy). POSTCOPY_START's bitmap is 1 bit per 4 KiB page: 1 TiB of guest RAM
 * → 32 MiB (+ 16 bytes), under the 70 MiB every bound stays below; the decoder then requires
 * the exact length for this VM's RAM.
 */
#define MIG_PC_MAX_RAM_PAGES	((1ull << 40) / MIG_PAGE_SIZE)
static const struct {
	const char *name;
	uint64_t min, max;
} pc_cmd_table[] = {
	[MIG_PAGE_REQ - MIG_PAGE_REQ]		= { "PAGE_REQ", MIG_PC_REQ_HDR + 8, MIG_PC_REQ_MAX_LEN },
	[MIG_PAGE_URGENT - MIG_PAGE_REQ]	= { "PAGE_URGENT", MIG_RAM_HDR_LEN + 8 + 1,
						    MIG_RAM_HDR_LEN + (uint64_t)MIG_PC_MAX_REQ * (8 + MIG_PAGE_SIZE) },
	[MIG_POSTCOPY_START - MIG_PAGE_REQ]	= { "POSTCOPY_START", MIG_PC_START_HDR + 8,
						    MIG_PC_START_HDR + MIG_PC_MAX_RAM_PAGES / 8 },
	[MIG_POSTCOPY_DONE - MIG_PAGE_REQ]	= { "POSTCOPY_DONE", MIG_PC_DONE_LEN, MIG_PC_DONE_LEN },
};

const char *mig_cmd_name(uint16_t cmd)
{
	if (cmd >= MIG_PAGE_REQ && cmd <= MIG_POSTCOPY_DONE)
		return pc_cmd_table[cmd - MIG_PAGE_REQ].name;
	if (cmd < NR_CMDS && cmd_table[cmd].name)
		return cmd_table[cmd].name;
	return "unknown";
}

int mig_cmd_len_bounds(uint16_t cmd, uint64_t *min, uint64_t *max)
{
	if (cmd >= NR_CMDS || !cmd_table[cmd].name)
		return 0;
	*min = cmd_table[cmd].min;
	*max = cmd_table[cmd].max;
	return 1;
}

int mig_cmd_len_bounds_ver(uint16_t cmd, uint32_t version, uint64_t *min, uint64_t *max)
{
	if (version >= MIG_VERSION_POSTCOPY && cmd >= MIG_PAGE_REQ && cmd <= MIG_POSTCOPY_DONE) {
		*min = pc_cmd_table[cmd - MIG_PAGE_REQ].min;
		*max = pc_cmd_table[cmd - MIG_PAGE_REQ].max;
		return 1;
	}
	return mig_cmd_len_bounds(cmd, min, max);
}

void mig_hdr_encode(uint8_t out[MIG_HDR_LEN], uint16_t cmd, uint16_t flags, uint64_t len)
{
	put_le32(out, MIG_MAGIC);
	put_le16(out + 4, cmd);
	put_le16(out + 6, flags);
	put_le64(out + 8, len);
}

int mig_hdr_decode(const uint8_t in[MIG_HDR_LEN], struct mig_hdr *h)
{
	return mig_hdr_decode_ver(in, MIG_VERSION_POSTCOPY - 1, h);
}

int mig_hdr_decode_ver(const uint8_t in[MIG_HDR_LEN], uint32_t version, struct mig_hdr *h)
{
	uint64_t min, max;

	h->magic = get_le32(in);
	h->cmd = get_le16(in + 4);
	h->flags = get_le16(in + 6);
	h->len = get_le64(in + 8);
	if (h->magic != MIG_MAGIC) {
		log_err("bad message magic 0x%08x: not a vmctl migration stream, or out of sync",
			h->magic);
		return -EBADMSG;
	}
	if (!mig_cmd_len_bounds_ver(h->cmd, version, &min, &max)) {
		log_err("message %u (%s) is not part of protocol version %u", h->cmd,
			mig_cmd_name(h->cmd), version);
		return -EPROTO;
	}
	if (h->flags) {
		log_err("%s: unknown header flags 0x%x", mig_cmd_name(h->cmd), h->flags);
		return -EBADMSG;
	}
	if (h->len > max) {
		log_err("%s: length %" PRIu64 " exceeds the maximum of %" PRIu64,
			mig_cmd_name(h->cmd), h->len, max);
		return -E2BIG;
	}
	if (h->len < min) {
		log_err("%s: length %" PRIu64 " below the minimum of %" PRIu64,
			mig_cmd_name(h->cmd), h->len, min);
		return -EBADMSG;
	}
	return 0;
}

/* ----------------------------------------------------------------- HELLO */

void mig_hello_encode(uint8_t out[MIG_HELLO_LEN], const struct mig_hello *h)
{
	put_le32(out, h->min_version);
	put_le32(out + 4, h->max_version);
	put_le64(out + 8, h->features);
}

int mig_hello_decode(const uint8_t *in, size_t len, struct mig_hello *h)
{
	if (len < MIG_HELLO_LEN || len > MIG_HELLO_MAX)
		return -EBADMSG;
	h->min_version = get_le32(in);
	h->max_version = get_le32(in + 4);
	h->features = get_le64(in + 8);
	if (h->min_version == 0 || h->min_version > h->max_version) {
		log_err("HELLO: bad version range %u..%u", h->min_version, h->max_version);
		return -EBADMSG;
	}
	return 0;
}

int mig_version_pick(const struct mig_hello *local, const struct mig_hello *peer,
		     uint32_t *version)
{
	uint32_t lo = local->min_version > peer->min_version ? local->min_version : peer->min_version;
	uint32_t hi = local->max_version < peer->max_version ? local->max_version : peer->max_version;

	if (lo > hi) {
		log_err("no common protocol version: we speak %u..%u, the peer %u..%u",
			local->min_version, local->max_version, peer->min_version, peer->max_version);
		return -EPROTONOSUPPORT;
	}
	*version = hi;
	return 0;
}

int mig_hello_agree(const struct mig_hello *local, const struct mig_hello *peer,
		    uint32_t *version, uint64_t *features)
{
	uint64_t f = local->features & peer->features;
	uint32_t v;
	int ret;

	ret = mig_version_pick(local, peer, &v);
	if (ret < 0)
		return ret;
	/*
	 * Version 3 only means "post-copy commands allowed"; without both sides able to do it
	 * stay on 2, so a v3 build without userfaultfd talks to anyone exactly as a v2 build.
	 */
	if (v >= MIG_VERSION_POSTCOPY && !(f & MIG_FEAT_POSTCOPY)) {
		uint32_t lo = local->min_version > peer->min_version ?
			      local->min_version : peer->min_version;

		if (lo >= MIG_VERSION_POSTCOPY) {
			log_err("no common protocol version without post-copy (both need %u or above)", lo);
			return -EPROTONOSUPPORT;
		}
		v = MIG_VERSION_POSTCOPY - 1;
	}
	if (v < MIG_VERSION_POSTCOPY)
		f &= ~MIG_FEAT_POSTCOPY;
	*version = v;
	*features = f;
	return 0;
}

/* ---------------------------------------------------------------- CONFIG */

#define DEVICE_STR_MAX	(STATE_NAME_MAX + STATE_ID_MAX + 2)	/* "name[id]" */
#define CPUID_WIRE_LEN	24u

void mig_config_init(struct mig_config *c)
{
	memset(c, 0, sizeof(*c));
}

void mig_config_free(struct mig_config *c)
{
	size_t i;

	for (i = 0; i < c->nr_devices; i++)
		free(c->devices[i]);
	free(c->devices);
	free(c->cpuid);
	memset(c, 0, sizeof(*c));
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

/* Takes ownership of @s. */
static int config_add_device_str(struct mig_config *c, char *s)
{
	char **d;

	if (c->nr_devices >= MIG_MAX_DEVICES) {
		free(s);
		return -E2BIG;
	}
	d = realloc(c->devices, (c->nr_devices + 1) * sizeof(*d));
	if (!d) {
		free(s);
		return -ENOMEM;
	}
	c->devices = d;
	c->devices[c->nr_devices++] = s;
	return 0;
}

int mig_config_add_device(struct mig_config *c, const char *name, const char *id)
{
	char *s;

	if (strlen(name) > STATE_NAME_MAX || strlen(id) > STATE_ID_MAX)
		return -EINVAL;
	if (asprintf(&s, "%s[%s]", name, id) < 0)
		return -ENOMEM;
	return config_add_device_str(c, s);
}

int mig_config_add_cpuid(struct mig_config *c, const struct mig_cpuid *leaf)
{
	struct mig_cpuid *p;

	if (c->nr_cpuid >= MIG_MAX_CPUID)
		return -E2BIG;
	p = realloc(c->cpuid, (c->nr_cpuid + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	c->cpuid = p;
	c->cpuid[c->nr_cpuid++] = *leaf;
	return 0;
}

int mig_config_add_registry(struct mig_config *c, const struct state_registry *reg)
{
	size_t i;
	int ret;

	for (i = 0; i < reg->nr; i++) {
		ret = mig_config_add_device(c, reg->entries[i].ops->name, reg->entries[i].id);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int mig_config_encode(const struct mig_config *c, uint8_t **out, size_t *len)
{
	struct state_writer w;
	size_t i;
	int ret;

	sw_init(&w, MIG_MAX_CONFIG);
	sw_u64(&w, MIG_CFG_T_MEM_BYTES, c->mem_bytes, STATE_F_REQUIRED);
	sw_u32(&w, MIG_CFG_T_NR_VCPUS, c->nr_vcpus, STATE_F_REQUIRED);
	for (i = 0; i < c->nr_devices; i++)
		sw_str(&w, MIG_CFG_T_DEVICE, c->devices[i], STATE_F_REQUIRED);
	for (i = 0; i < c->nr_cpuid; i++) {
		const struct mig_cpuid *l = &c->cpuid[i];
		uint8_t b[CPUID_WIRE_LEN];

		put_le32(b, l->function);
		put_le32(b + 4, l->index);
		put_le32(b + 8, l->eax);
		put_le32(b + 12, l->ebx);
		put_le32(b + 16, l->ecx);
		put_le32(b + 20, l->edx);
		sw_bytes(&w, MIG_CFG_T_CPUID, b, sizeof(b), STATE_F_REQUIRED);
	}
	ret = sw_error(&w);
	if (ret < 0) {
		sw_release(&w);
		return ret;
	}
	*out = w.buf;
	*len = w.len;
	return 0;
}

int mig_config_decode(const uint8_t *in, size_t len, struct mig_config *c)
{
	bool have_mem = false, have_vcpus = false;
	struct state_reader r;
	struct state_field f;
	int ret;

	mig_config_init(c);
	if (len > MIG_MAX_CONFIG)
		return -E2BIG;
	sr_init(&r, in, len, "CONFIG");
	while ((ret = sr_next(&r, &f)) > 0) {
		switch (f.tag) {
		case MIG_CFG_T_MEM_BYTES:
			ret = sr_u64(&f, &c->mem_bytes);
			have_mem = true;
			break;
		case MIG_CFG_T_NR_VCPUS:
			ret = sr_u32(&f, &c->nr_vcpus);
			have_vcpus = true;
			break;
		case MIG_CFG_T_DEVICE: {
			char buf[DEVICE_STR_MAX + 1], *s;

			ret = sr_str(&f, buf, sizeof(buf));
			if (ret < 0 || !printable(buf))
				ret = -EBADMSG;
			else if (!(s = strdup(buf)))
				ret = -ENOMEM;
			else
				ret = config_add_device_str(c, s);
			break;
		}
		case MIG_CFG_T_CPUID: {
			struct mig_cpuid l;

			if (f.len != CPUID_WIRE_LEN) {
				ret = -EBADMSG;
				break;
			}
			l.function = get_le32(f.data);
			l.index = get_le32(f.data + 4);
			l.eax = get_le32(f.data + 8);
			l.ebx = get_le32(f.data + 12);
			l.ecx = get_le32(f.data + 16);
			l.edx = get_le32(f.data + 20);
			ret = mig_config_add_cpuid(c, &l);
			break;
		}
		default:
			ret = sr_skip_unknown(&r, &f);
			break;
		}
		if (ret < 0)
			break;
	}
	if (!ret && (!have_mem || !have_vcpus))
		ret = -EBADMSG;
	if (ret < 0) {
		log_err("CONFIG from the source is malformed: %s", strerror(-ret));
		mig_config_free(c);
		return ret;
	}
	return 0;
}

/*
 * CPUID registers that are feature bitmaps: a bit the VM saw on the source must be supported
 * here, or the guest may execute an instruction this host faults on. @ignore masks bits the
 * monitor or the guest set at run time (OSXSAVE, OSPKE mirror CR4; HYPERVISOR is added by the
 * vmm), which KVM_GET_SUPPORTED_CPUID need not report.
 */
static const struct {
	uint32_t function, index;
	unsigned int reg;		/* 0 eax, 1 ebx, 2 ecx, 3 edx */
	uint32_t ignore;
	const char *what;
} feature_regs[] = {
	{ 0x00000001, 0, 2, (1u << 27) | (1u << 31), "CPUID.1:ECX" },
	{ 0x00000001, 0, 3, 0, "CPUID.1:EDX" },
	{ 0x00000007, 0, 1, 0, "CPUID.7.0:EBX" },
	{ 0x00000007, 0, 2, 1u << 4, "CPUID.7.0:ECX" },
	{ 0x00000007, 0, 3, 0, "CPUID.7.0:EDX" },
	{ 0x00000007, 1, 0, 0, "CPUID.7.1:EAX" },
	{ 0x0000000d, 1, 0, 0, "CPUID.D.1:EAX" },
	{ 0x80000001, 0, 2, 0, "CPUID.80000001:ECX" },
	{ 0x80000001, 0, 3, 0, "CPUID.80000001:EDX" },
	{ 0x80000008, 0, 1, 0, "CPUID.80000008:EBX" },
};

static const struct mig_cpuid *cpuid_find(const struct mig_cpuid *v, size_t n, uint32_t function,
					  uint32_t index)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i].function == function && v[i].index == index)
			return &v[i];
	return NULL;
}

static uint32_t cpuid_reg(const struct mig_cpuid *l, unsigned int reg)
{
	return reg == 0 ? l->eax : reg == 1 ? l->ebx : reg == 2 ? l->ecx : l->edx;
}

static bool device_in(const struct mig_config *c, const char *dev)
{
	size_t i;

	for (i = 0; i < c->nr_devices; i++)
		if (!strcmp(c->devices[i], dev))
			return true;
	return false;
}

int mig_config_check(const struct mig_config *src, const struct mig_config *dst,
		     const struct mig_cpuid *host, size_t nr_host, char *err, size_t errlen)
{
	size_t i;

	if (src->mem_bytes != dst->mem_bytes) {
		snprintf(err, errlen, "memory size differs: source VM has %" PRIu64 " MiB, this one %" PRIu64 " MiB",
			 src->mem_bytes >> 20, dst->mem_bytes >> 20);
		return -EINVAL;
	}
	if (src->nr_vcpus != dst->nr_vcpus) {
		snprintf(err, errlen, "vCPU count differs: source VM has %u, this one %u",
			 src->nr_vcpus, dst->nr_vcpus);
		return -EINVAL;
	}
	for (i = 0; i < src->nr_devices; i++) {
		if (!device_in(dst, src->devices[i])) {
			snprintf(err, errlen, "device set differs: source VM has %s, this one does not",
				 src->devices[i]);
			return -EINVAL;
		}
	}
	for (i = 0; i < dst->nr_devices; i++) {
		if (!device_in(src, dst->devices[i])) {
			snprintf(err, errlen, "device set differs: this VM has %s, the source VM does not",
				 dst->devices[i]);
			return -EINVAL;
		}
	}
	if (!host)
		return 0;
	for (i = 0; i < sizeof(feature_regs) / sizeof(feature_regs[0]); i++) {
		const struct mig_cpuid *s = cpuid_find(src->cpuid, src->nr_cpuid,
						       feature_regs[i].function, feature_regs[i].index);
		const struct mig_cpuid *h = cpuid_find(host, nr_host, feature_regs[i].function,
						       feature_regs[i].index);
		uint32_t want, have, missing;

		if (!s)
			continue;
		want = cpuid_reg(s, feature_regs[i].reg) & ~feature_regs[i].ignore;
		have = h ? cpuid_reg(h, feature_regs[i].reg) : 0;
		missing = want & ~have;
		if (missing) {
			snprintf(err, errlen, "CPU features the source VM uses are missing on this host: %s bits 0x%08x",
				 feature_regs[i].what, missing);
			return -EINVAL;
		}
	}
	return 0;
}

/* ---------------------------------------------------- ACK, ROUND_END, ABORT */

void mig_ack_encode(uint8_t out[MIG_ACK_LEN], uint16_t cmd)
{
	put_le16(out, cmd);
	put_le16(out + 2, 0);
	put_le32(out + 4, 0);
}

int mig_ack_decode(const uint8_t *in, size_t len, uint16_t *cmd)
{
	if (len != MIG_ACK_LEN || get_le16(in + 2) || get_le32(in + 4))
		return -EBADMSG;
	*cmd = get_le16(in);
	return 0;
}

void mig_round_end_encode(uint8_t out[MIG_ROUND_END_LEN], uint32_t round, uint64_t pages)
{
	put_le32(out, round);
	put_le32(out + 4, 0);
	put_le64(out + 8, pages);
}

int mig_round_end_decode(const uint8_t *in, size_t len, uint32_t *round, uint64_t *pages)
{
	if (len != MIG_ROUND_END_LEN || get_le32(in + 4))
		return -EBADMSG;
	*round = get_le32(in);
	*pages = get_le64(in + 8);
	return 0;
}

size_t mig_abort_encode(uint8_t *out, int err, const char *msg)
{
	size_t n = msg ? strlen(msg) : 0;

	if (n > MIG_MAX_ABORT_MSG)
		n = MIG_MAX_ABORT_MSG;
	put_le32(out, (uint32_t)(err < 0 ? -err : err));
	put_le32(out + 4, (uint32_t)n);
	if (n)
		memcpy(out + 8, msg, n);
	return 8 + n;
}

int mig_abort_decode(const uint8_t *in, size_t len, int *err, char *msg, size_t msglen)
{
	uint32_t n, i;
	size_t o = 0;

	if (len < MIG_ABORT_MIN || len > MIG_ABORT_MIN + MIG_MAX_ABORT_MSG)
		return -EBADMSG;
	n = get_le32(in + 4);
	if (n != len - MIG_ABORT_MIN)
		return -EBADMSG;
	*err = (int)get_le32(in);
	if (*err <= 0 || *err > 4095)		/* an errno, whatever the peer claims */
		*err = EPROTO;
	/* The text goes into our logs: keep printable ASCII only. */
	for (i = 0; i < n && msglen && o < msglen - 1; i++) {
		uint8_t ch = in[8 + i];

		msg[o++] = (ch >= 0x20 && ch <= 0x7e) ? (char)ch : '?';
	}
	if (msglen)
		msg[o] = 0;
	return 0;
}

/* ---------------------------------------------------------------- sequence */

void mig_seq_init(struct mig_seq *s, enum mig_role role)
{
	s->role = role;
	s->phase = MIG_PH_HELLO;
	s->pc_acked = false;
}

void mig_seq_postcopy(struct mig_seq *s)
{
	if (s->role == MIG_ROLE_SOURCE && s->phase == MIG_PH_RAM)
		s->phase = MIG_PH_POSTCOPY;
}

static int seq_next(const struct mig_seq *s, uint16_t cmd, uint16_t ack_cmd, enum mig_phase *next)
{
	if (s->phase == MIG_PH_DONE || s->phase == MIG_PH_ABORTED)
		return -EPROTO;
	if (cmd == MIG_ABORT) {
		*next = MIG_PH_ABORTED;
		return 0;
	}
	if (s->role == MIG_ROLE_DEST) {
		switch (s->phase) {
		case MIG_PH_HELLO:
			if (cmd == MIG_HELLO) { *next = MIG_PH_CONFIG; return 0; }
			break;
		case MIG_PH_CONFIG:
			if (cmd == MIG_CONFIG) { *next = MIG_PH_RAM; return 0; }
			break;
		case MIG_PH_RAM:
			if (cmd == MIG_RAM || cmd == MIG_RAM_ZERO || cmd == MIG_ROUND_END) {
				*next = MIG_PH_RAM;
				return 0;
			}
			if (cmd == MIG_STATE) { *next = MIG_PH_COMPLETE; return 0; }
			/* (the header decoder lets it through only in version 3) */
			if (cmd == MIG_POSTCOPY_START) { *next = MIG_PH_PC_STATE; return 0; }
			break;
		case MIG_PH_COMPLETE:
			if (cmd == MIG_COMPLETE) { *next = MIG_PH_DONE; return 0; }
			break;
		case MIG_PH_PC_STATE:
			if (cmd == MIG_STATE) { *next = MIG_PH_PC_COMPLETE; return 0; }
			break;
		case MIG_PH_PC_COMPLETE:
			if (cmd == MIG_COMPLETE) { *next = MIG_PH_POSTCOPY; return 0; }
			break;
		case MIG_PH_POSTCOPY:
			/* Until every page is in; the receiver ends the sequence itself. */
			if (cmd == MIG_RAM || cmd == MIG_RAM_ZERO || cmd == MIG_PAGE_URGENT) {
				*next = MIG_PH_POSTCOPY;
				return 0;
			}
			break;
		default:
			break;
		}
		return -EPROTO;
	}
	switch (s->phase) {
	case MIG_PH_HELLO:
		if (cmd == MIG_HELLO) { *next = MIG_PH_CONFIG; return 0; }
		break;
	case MIG_PH_CONFIG:
		if (cmd == MIG_ACK && ack_cmd == MIG_CONFIG) { *next = MIG_PH_RAM; return 0; }
		break;
	case MIG_PH_RAM:
		/* Version 2: each pre-copy round acknowledged once applied (see precopy.c). */
		if (cmd == MIG_ACK && ack_cmd == MIG_ROUND_END) { *next = MIG_PH_RAM; return 0; }
		/* fall through */
	case MIG_PH_COMPLETE:
		if (cmd == MIG_ACK && ack_cmd == MIG_COMPLETE) { *next = MIG_PH_DONE; return 0; }
		break;
	case MIG_PH_POSTCOPY:
		/* Page requests may come before the ACK: the destination's state load faults too. */
		if (cmd == MIG_PAGE_REQ) { *next = MIG_PH_POSTCOPY; return 0; }
		if (cmd == MIG_ACK && ack_cmd == MIG_POSTCOPY_START && !s->pc_acked) {
			*next = MIG_PH_POSTCOPY;
			return 0;
		}
		if (cmd == MIG_POSTCOPY_DONE && s->pc_acked) { *next = MIG_PH_DONE; return 0; }
		break;
	default:
		break;
	}
	return -EPROTO;
}

int mig_seq_accept(struct mig_seq *s, uint16_t cmd, uint16_t ack_cmd)
{
	static const char *const phase_names[] = {
		[MIG_PH_HELLO] = "HELLO", [MIG_PH_CONFIG] = "CONFIG", [MIG_PH_RAM] = "RAM",
		[MIG_PH_COMPLETE] = "COMPLETE", [MIG_PH_PC_STATE] = "POSTCOPY_START",
		[MIG_PH_PC_COMPLETE] = "POSTCOPY STATE", [MIG_PH_POSTCOPY] = "POSTCOPY",
		[MIG_PH_DONE] = "DONE", [MIG_PH_ABORTED] = "ABORTED",
	};
	enum mig_phase next;

	if (seq_next(s, cmd, ack_cmd, &next) < 0) {
		log_err("%s: unexpected %s in phase %s", s->role == MIG_ROLE_DEST ? "destination" : "source",
			mig_cmd_name(cmd), phase_names[s->phase]);
		return -EPROTO;
	}
	if (s->role == MIG_ROLE_SOURCE && cmd == MIG_ACK && ack_cmd == MIG_POSTCOPY_START)
		s->pc_acked = true;
	s->phase = next;
	return 0;
}
