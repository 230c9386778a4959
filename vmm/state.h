/* SPDX-License-Identifier: MIT */
/*
 * Device/vCPU state for snapshots and migration: a registry of components, each saving one
 * versioned section of tagged little-endian fields, and the stream that carries the sections.
 * The byte format is specified in docs/state-format.md; this header is the API.
 *
 * How a component takes part (e.g. the core registering vCPU 0 and a virtio-blk device):
 *
 *	static int blk_save(void *opaque, struct state_writer *w)
 *	{
 *		struct blk *b = opaque;
 *		sw_u64(w, BLK_T_CAPACITY, b->capacity, STATE_F_REQUIRED);
 *		sw_bytes(w, BLK_T_CONFIG, &b->cfg_le, sizeof(b->cfg_le), 0);
 *		return sw_error(w);			// errors are sticky: check once
 *	}
 *	static int blk_load(void *opaque, struct state_reader *r, uint16_t version)
 *	{
 *		struct state_field f;  uint64_t cap = 0;  int ret;
 *		while ((ret = sr_next(r, &f)) > 0) {
 *			switch (f.tag) {
 *			case BLK_T_CAPACITY: ret = sr_u64(&f, &cap); break;
 *			default:	     ret = sr_skip_unknown(r, &f); break;
 *			}
 *			if (ret < 0) return ret;
 *		}
 *		... validate everything, only then write it into the device ...
 *	}
 *	static const struct state_ops blk_state_ops = {
 *		.name = "virtio-blk", .version = 1, .min_version = 1,
 *		.quiesce = blk_quiesce, .save = blk_save, .load = blk_load, .post_load = blk_post_load,
 *	};
 *	state_register(&vm->state, "blk0", &blk_state_ops, blk);
 *
 * Compatibility rule: a new field gets a new tag; a reader skips an unknown tag unless its
 * STATE_F_REQUIRED flag is set (sr_skip_unknown), and load() fills a default for a tag that is
 * missing. Bump ops->version only when a field's meaning changes; keep the old decode until
 * min_version moves past it. A section's name never changes.
 *
 * Threading: the registry is not locked. Register/unregister from the thread that owns the VM
 * (main loop) and only while no save/load runs; save/load run with every vCPU paused.
 */
#ifndef VMM_STATE_H
#define VMM_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- wire constants (docs/state-format.md) ---- */

#define STATE_STREAM_MAGIC	0x54534d56u	/* "VMST" as bytes on the wire (LE u32) */
#define STATE_SECTION_MAGIC	0x53534d56u	/* "VMSS" */
#define STATE_STREAM_VERSION	1u

#define STATE_NAME_MAX		64u		/* bytes of a section name / id, no NUL */
#define STATE_ID_MAX		64u

/* Field flags (u16 in each TLV header). Unknown flag bits are ignored by readers. */
#define STATE_F_REQUIRED	0x0001u		/* reader must understand this tag or fail */
#define STATE_F_NESTED		0x0002u		/* value is itself a TLV list (sw_nest_begin) */

/* Section flags (u16 in the section header); none defined yet, must be 0. */

/* state_ops.flags */
#define STATE_OPS_OPTIONAL	0x0001u		/* a stream without this section is accepted;
						   load() is not called and the component keeps
						   its reset state */

#define STATE_NEST_MAX		8u		/* nesting depth for sw_nest_begin */

/* Limits a loader enforces before allocating (hostile stream). */
struct state_limits {
	uint32_t max_sections;		/* sections per stream */
	uint64_t max_section_body;	/* bytes of one section body */
	uint64_t max_total;		/* all sections together (they are held in memory) */
};
/*
 * Defaults. LIMITS: the biggest sections expected are a vCPU (~4 KiB XSAVE + ~100 MSRs ×16 B +
 * LAPIC 1 KiB ≈ 8 KiB) and a virtio-net/blk device with MSI-X tables (≤ 2048 vectors × 16 B =
 * 32 KiB). 1 MiB per section and 64 MiB per stream leave room for 256 vCPUs and many devices
 * while bounding what a hostile peer can make us allocate.
 */
#define STATE_DEFAULT_MAX_SECTIONS	4096u
#define STATE_DEFAULT_MAX_BODY		(1ull << 20)
#define STATE_DEFAULT_MAX_TOTAL		(64ull << 20)

/* ---- writer ---- */

/*
 * Collects one section body in memory. Every sw_*() call appends one field; on error
 * (-ENOMEM, -E2BIG past the body limit, -EINVAL bad nesting) the writer remembers the first
 * error, ignores later calls, and sw_error() returns it — so save() can write many fields and
 * check once.
 */
struct state_writer {
	uint8_t *buf;
	size_t len, cap;
	size_t limit;				/* max body bytes */
	size_t nest[STATE_NEST_MAX];		/* offsets of open nested TLV headers */
	unsigned int depth;
	int err;
};

/*
 * For users of the TLV codec outside a section (e.g. the migration CONFIG message):
 * an empty writer limited to @limit bytes, and freeing its buffer. state_save_all does this
 * itself for sections.
 */
void sw_init(struct state_writer *w, size_t limit);
void sw_release(struct state_writer *w);

int sw_u8(struct state_writer *w, uint16_t tag, uint8_t v, uint16_t flags);
int sw_u16(struct state_writer *w, uint16_t tag, uint16_t v, uint16_t flags);
int sw_u32(struct state_writer *w, uint16_t tag, uint32_t v, uint16_t flags);
int sw_u64(struct state_writer *w, uint16_t tag, uint64_t v, uint16_t flags);
/* Raw bytes, copied as they are: the caller makes them little-endian and padding-free. */
int sw_bytes(struct state_writer *w, uint16_t tag, const void *data, size_t len, uint16_t flags);
/* A string without its NUL. */
int sw_str(struct state_writer *w, uint16_t tag, const char *s, uint16_t flags);
/* n u64 values, each converted to little-endian (MSR lists, register files). */
int sw_u64_array(struct state_writer *w, uint16_t tag, const uint64_t *v, size_t n, uint16_t flags);
/* Open a field whose value is a TLV list (e.g. one per virtqueue); close it with sw_nest_end. */
int sw_nest_begin(struct state_writer *w, uint16_t tag, uint16_t flags);
int sw_nest_end(struct state_writer *w);
/* First error seen (0 if none), also -EINVAL for a nest left open. */
int sw_error(const struct state_writer *w);

/* ---- reader ---- */

struct state_field {
	uint16_t tag;
	uint16_t flags;
	uint32_t len;
	const uint8_t *data;		/* points into the section body; valid during load() */
};

struct state_reader {
	const uint8_t *p;
	size_t len, off;
	const char *name, *id;		/* section, for error messages */
};

/*
 * Next field: 1 and *f filled, 0 at the end of the list, -EBADMSG if the list is malformed
 * (a header or value that runs past the end). The loader has already checked the whole body's
 * structure, so -EBADMSG here means a bug or a nested list (which is checked too).
 */
int sr_next(struct state_reader *r, struct state_field *f);
/* A reader over a bare TLV list (outside a section); @what names it in error messages. */
void sr_init(struct state_reader *r, const void *buf, size_t len, const char *what);
/*
 * For load()'s default case: 0 (skip) for an unknown optional tag, -EPROTO with a clear log
 * line for an unknown REQUIRED one.
 */
int sr_skip_unknown(const struct state_reader *r, const struct state_field *f);

/* Typed getters: -EBADMSG unless f->len is exactly the size of the type. */
int sr_u8(const struct state_field *f, uint8_t *v);
int sr_u16(const struct state_field *f, uint16_t *v);
int sr_u32(const struct state_field *f, uint32_t *v);
int sr_u64(const struct state_field *f, uint64_t *v);
int sr_bool(const struct state_field *f, bool *v);		/* u8 0/1, anything else -EBADMSG */
/* Exactly @len bytes into @dst. */
int sr_bytes(const struct state_field *f, void *dst, size_t len);
/* A string into @dst (NUL-terminated); -EBADMSG if it contains NUL or does not fit in @cap. */
int sr_str(const struct state_field *f, char *dst, size_t cap);
/* Up to @max u64 values (converted from LE); *n = count. -EBADMSG if len % 8 or > max. */
int sr_u64_array(const struct state_field *f, uint64_t *v, size_t max, size_t *n);
/* A reader over a nested TLV list. */
int sr_nested(const struct state_reader *parent, const struct state_field *f,
	      struct state_reader *sub);

/* ---- components ---- */

/*
 * Non-iterative state of one component, saved while every vCPU is paused. Callbacks run on
 * the thread that calls state_save_all/state_load_all (the migration worker or main loop),
 * with the vCPUs paused and no device lock held.
 */
struct state_ops {
	const char *name;		/* "virtio-blk": part of the format, never rename */
	uint16_t version;		/* bump only for changes old readers can't skip */
	uint16_t min_version;		/* oldest version load() accepts */
	uint32_t flags;			/* STATE_OPS_* */
	/* Finish or cancel in-flight I/O before the final RAM pass; may be NULL. */
	int (*quiesce)(void *opaque);
	/* Write fields; return sw_error(w) or another -errno. Must not change the device. */
	int (*save)(void *opaque, struct state_writer *w);
	/*
	 * Read fields of a section whose @version is in [min_version, version]. Parse and check
	 * everything before touching the device, so a failing load leaves it unchanged.
	 */
	int (*load)(void *opaque, struct state_reader *r, uint16_t version);
	/* After every section has loaded: re-arm ioeventfd/irqfd, kick queues. May be NULL. */
	int (*post_load)(void *opaque);
};

struct state_entry {
	char id[STATE_ID_MAX + 1];
	const struct state_ops *ops;
	void *opaque;
};

/* Embedded in struct vm (or a test). Zero-initialise or state_registry_init(). */
struct state_registry {
	struct state_entry *entries;	/* registration order = save, load and post_load order */
	size_t nr, cap;
};

void state_registry_init(struct state_registry *reg);
void state_registry_destroy(struct state_registry *reg);
/*
 * Register a component. @id distinguishes instances of one @ops->name ("0", "blk0").
 * 0, -EEXIST for a duplicate (name, id), -EINVAL for a bad name/id/ops, -ENOMEM.
 * Order matters: load() runs in registration order (e.g. irqchip before vCPU LAPICs).
 */
int state_register(struct state_registry *reg, const char *id, const struct state_ops *ops,
		   void *opaque);
/* 0 or -ENOENT. */
int state_unregister(struct state_registry *reg, const char *name, const char *id);

/* Call every quiesce() in order; stops at the first error and returns it. */
int state_quiesce_all(struct state_registry *reg);

/* ---- byte sinks and sources ---- */

/* write: all @len bytes or -errno. */
struct state_sink {
	int (*write)(struct state_sink *s, const void *buf, size_t len);
};
/* read: exactly @len bytes and 0, -ENODATA at end of stream (also mid-read), or -errno. */
struct state_source {
	int (*read)(struct state_source *s, void *buf, size_t len);
};

struct state_fd_sink { struct state_sink sink; int fd; };
struct state_fd_source { struct state_source src; int fd; };
struct state_mem_sink { struct state_sink sink; uint8_t *buf; size_t len, cap; };	/* free(buf) */
struct state_mem_source { struct state_source src; const uint8_t *buf; size_t len, off; };

void state_fd_sink_init(struct state_fd_sink *s, int fd);
void state_fd_source_init(struct state_fd_source *s, int fd);
void state_mem_sink_init(struct state_mem_sink *s);
void state_mem_source_init(struct state_mem_source *s, const void *buf, size_t len);

/* ---- streams ---- */

/*
 * Save every registered component into @sink: stream header, then one section each in
 * registration order. 0 or the first -errno (logged with the section's name[id]).
 */
int state_save_all(struct state_registry *reg, struct state_sink *sink);

/*
 * Load a stream from @src into the registered components. Two phases, so a hostile or
 * mismatched stream is refused before any component changes:
 *   1. read and verify everything: stream header, each section's header, limits (@lim, or
 *      defaults when NULL) before allocating, crc32c, (name, id) known to @reg and not
 *      repeated, version inside [min_version, version], field-list structure;
 *      then that no non-optional registered component is missing;
 *   2. load() each section in registration order, then post_load() each.
 * Errors: -EBADMSG malformed/truncated, -EILSEQ crc mismatch, -E2BIG over a limit,
 * -EPROTO unknown or repeated section or unknown required field, -EPROTONOSUPPORT version out
 * of range, -ENOENT a registered component has no section, or load()'s own error. Phase 2
 * errors leave the VM partly loaded: the caller must not run it (it never does: it exits).
 */
int state_load_all(struct state_registry *reg, struct state_source *src,
		   const struct state_limits *lim);
/* The same from a buffer, which must hold exactly one stream (trailing bytes: -EBADMSG). */
int state_load_buf(struct state_registry *reg, const void *buf, size_t len,
		   const struct state_limits *lim);

/*
 * Phase 1 only, with no registry: check a stream's structure, limits and crcs. Used by the
 * fuzz target and by tools that inspect a snapshot. Same error codes as state_load_all.
 */
int state_verify_buf(const void *buf, size_t len, const struct state_limits *lim);

#endif
