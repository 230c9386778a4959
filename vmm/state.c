// SPDX-License-Identifier: MIT
/*
 * State sections (API in state.h, byte format in docs/state-format.md): the component
 * registry, the TLV writer and reader, and the stream that frames sections with a header and
 * a crc32c each.
 *
 * Loading is deliberately two-phase. Every byte of the stream is read, bounded and checked
 * (lengths before allocation, crc, known (name, id), version range, TLV structure, missing
 * sections) before the first load() runs, so a truncated, corrupted or mismatched stream is
 * refused while the destination VM is still untouched. Everything that arrives is hostile:
 * no length is used before it is compared with what is left and with a limit.
 */
#define LOG_TAG "state"
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/lib/crc32c.h"
#include "vmm/lib/log.h"
#include "vmm/state.h"

/*
 * Wire layouts, little-endian, for documentation and size checks. The code encodes and
 * decodes them field by field (put_le32, get_le32, ...) rather than memcpy'ing structs, so host
 * padding or endianness can never leak into the format.
 */
struct state_stream_hdr {
	uint32_t magic;		/* STATE_STREAM_MAGIC */
	uint16_t version;	/* STATE_STREAM_VERSION */
	uint16_t flags;		/* 0 */
	uint32_t nr_sections;
	uint32_t crc;		/* crc32c of the 12 bytes above */
};
_Static_assert(sizeof(struct state_stream_hdr) == 16, "wire layout");

struct state_section_hdr {
	uint32_t magic;		/* STATE_SECTION_MAGIC */
	uint16_t version;	/* the component's state_ops.version at save time */
	uint16_t flags;		/* 0 */
	uint32_t name_len;
	uint32_t id_len;
	uint64_t body_len;
	/* then name, id, body, and u32 crc32c over header + name + id + body */
};
_Static_assert(sizeof(struct state_section_hdr) == 24, "wire layout");

#define TLV_HDR_LEN	8u	/* u16 tag, u16 flags, u32 len */
#define CRC_LEN		4u

static void put_le16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static void put_le32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put_le64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint16_t get_le16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static uint32_t get_le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get_le64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

/* ---------------------------------------------------------------- writer */

void sw_init(struct state_writer *w, size_t limit)
{
	memset(w, 0, sizeof(*w));
	w->limit = limit;
}

void sw_release(struct state_writer *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
}

/* Reserve @n bytes at the end; NULL (and w->err set) on failure. */
static uint8_t *writer_grow(struct state_writer *w, size_t n)
{
	uint8_t *p;

	if (w->err)
		return NULL;
	if (n > w->limit - w->len) {
		w->err = -E2BIG;
		return NULL;
	}
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 256;

		while (cap < w->len + n)
			cap *= 2;
		p = realloc(w->buf, cap);
		if (!p) {
			w->err = -ENOMEM;
			return NULL;
		}
		w->buf = p;
		w->cap = cap;
	}
	p = w->buf + w->len;
	w->len += n;
	return p;
}

static uint8_t *tlv_put(struct state_writer *w, uint16_t tag, uint16_t flags, size_t len)
{
	uint8_t *p;

	if (!w->err && len > UINT32_MAX)
		w->err = -E2BIG;
	p = writer_grow(w, TLV_HDR_LEN + len);
	if (!p)
		return NULL;
	put_le16(p, tag);
	put_le16(p + 2, flags);
	put_le32(p + 4, (uint32_t)len);
	return p + TLV_HDR_LEN;
}

int sw_u8(struct state_writer *w, uint16_t tag, uint8_t v, uint16_t flags)
{
	uint8_t *p = tlv_put(w, tag, flags, 1);

	if (p)
		*p = v;
	return w->err;
}

int sw_u16(struct state_writer *w, uint16_t tag, uint16_t v, uint16_t flags)
{
	uint8_t *p = tlv_put(w, tag, flags, 2);

	if (p)
		put_le16(p, v);
	return w->err;
}

int sw_u32(struct state_writer *w, uint16_t tag, uint32_t v, uint16_t flags)
{
	uint8_t *p = tlv_put(w, tag, flags, 4);

	if (p)
		put_le32(p, v);
	return w->err;
}

int sw_u64(struct state_writer *w, uint16_t tag, uint64_t v, uint16_t flags)
{
	uint8_t *p = tlv_put(w, tag, flags, 8);

	if (p)
		put_le64(p, v);
	return w->err;
}

int sw_bytes(struct state_writer *w, uint16_t tag, const void *data, size_t len, uint16_t flags)
{
	uint8_t *p = tlv_put(w, tag, flags, len);

	if (p && len)
		memcpy(p, data, len);
	return w->err;
}

int sw_str(struct state_writer *w, uint16_t tag, const char *s, uint16_t flags)
{
	return sw_bytes(w, tag, s, strlen(s), flags);
}

int sw_u64_array(struct state_writer *w, uint16_t tag, const uint64_t *v, size_t n, uint16_t flags)
{
	uint8_t *p;
	size_t i;

	if (!w->err && n > SIZE_MAX / 8)
		w->err = -E2BIG;
	p = tlv_put(w, tag, flags, n * 8);
	for (i = 0; p && i < n; i++)
		put_le64(p + 8 * i, v[i]);
	return w->err;
}

int sw_nest_begin(struct state_writer *w, uint16_t tag, uint16_t flags)
{
	uint8_t *p;

	if (!w->err && w->depth >= STATE_NEST_MAX)
		w->err = -EINVAL;
	p = tlv_put(w, tag, flags | STATE_F_NESTED, 0);
	if (p)
		w->nest[w->depth++] = (size_t)(p - w->buf) - TLV_HDR_LEN;
	return w->err;
}

int sw_nest_end(struct state_writer *w)
{
	size_t hdr, len;

	if (w->err)
		return w->err;
	if (!w->depth) {
		w->err = -EINVAL;
		return w->err;
	}
	hdr = w->nest[--w->depth];
	len = w->len - hdr - TLV_HDR_LEN;
	if (len > UINT32_MAX) {
		w->err = -E2BIG;
		return w->err;
	}
	put_le32(w->buf + hdr + 4, (uint32_t)len);
	return 0;
}

int sw_error(const struct state_writer *w)
{
	if (w->err)
		return w->err;
	return w->depth ? -EINVAL : 0;
}

/* ---------------------------------------------------------------- reader */

int sr_next(struct state_reader *r, struct state_field *f)
{
	size_t left = r->len - r->off;
	const uint8_t *p = r->p + r->off;
	uint32_t len;

	if (left == 0)
		return 0;
	if (left < TLV_HDR_LEN)
		return -EBADMSG;
	len = get_le32(p + 4);
	if (len > left - TLV_HDR_LEN)
		return -EBADMSG;
	f->tag = get_le16(p);
	f->flags = get_le16(p + 2);
	f->len = len;
	f->data = p + TLV_HDR_LEN;
	r->off += TLV_HDR_LEN + len;
	return 1;
}

void sr_init(struct state_reader *r, const void *buf, size_t len, const char *what)
{
	r->p = buf;
	r->len = len;
	r->off = 0;
	r->name = what;
	r->id = "";
}

int sr_skip_unknown(const struct state_reader *r, const struct state_field *f)
{
	if (f->flags & STATE_F_REQUIRED) {
		log_err("section %s[%s]: field tag %u is marked required but this version does not know it (stream from a newer vmm?)",
			r->name ? r->name : "?", r->id ? r->id : "?", f->tag);
		return -EPROTO;
	}
	log_dbg("section %s[%s]: skipping unknown field tag %u (%u bytes)",
		r->name ? r->name : "?", r->id ? r->id : "?", f->tag, f->len);
	return 0;
}

int sr_u8(const struct state_field *f, uint8_t *v)
{
	if (f->len != 1)
		return -EBADMSG;
	*v = f->data[0];
	return 0;
}

int sr_u16(const struct state_field *f, uint16_t *v)
{
	if (f->len != 2)
		return -EBADMSG;
	*v = get_le16(f->data);
	return 0;
}

int sr_u32(const struct state_field *f, uint32_t *v)
{
	if (f->len != 4)
		return -EBADMSG;
	*v = get_le32(f->data);
	return 0;
}

int sr_u64(const struct state_field *f, uint64_t *v)
{
	if (f->len != 8)
		return -EBADMSG;
	*v = get_le64(f->data);
	return 0;
}

int sr_bool(const struct state_field *f, bool *v)
{
	if (f->len != 1 || f->data[0] > 1)
		return -EBADMSG;
	*v = f->data[0];
	return 0;
}

int sr_bytes(const struct state_field *f, void *dst, size_t len)
{
	if (f->len != len)
		return -EBADMSG;
	if (len)
		memcpy(dst, f->data, len);
	return 0;
}

int sr_str(const struct state_field *f, char *dst, size_t cap)
{
	if (cap == 0 || f->len > cap - 1 || memchr(f->data, 0, f->len))
		return -EBADMSG;
	memcpy(dst, f->data, f->len);
	dst[f->len] = 0;
	return 0;
}

int sr_u64_array(const struct state_field *f, uint64_t *v, size_t max, size_t *n)
{
	size_t i;

	if (f->len % 8 || f->len / 8 > max)
		return -EBADMSG;
	for (i = 0; i < f->len / 8; i++)
		v[i] = get_le64(f->data + 8 * i);
	*n = f->len / 8;
	return 0;
}

int sr_nested(const struct state_reader *parent, const struct state_field *f,
	      struct state_reader *sub)
{
	if (!(f->flags & STATE_F_NESTED))
		return -EBADMSG;
	sub->p = f->data;
	sub->len = f->len;
	sub->off = 0;
	sub->name = parent->name;
	sub->id = parent->id;
	return 0;
}

/* Structure check of a TLV list, recursing into nested lists. */
static int tlv_list_check(const uint8_t *p, size_t len, unsigned int depth)
{
	struct state_reader r = { .p = p, .len = len };
	struct state_field f;
	int ret;

	if (depth > STATE_NEST_MAX)
		return -EBADMSG;
	while ((ret = sr_next(&r, &f)) > 0) {
		if (f.flags & STATE_F_NESTED) {
			ret = tlv_list_check(f.data, f.len, depth + 1);
			if (ret < 0)
				return ret;
		}
	}
	return ret;
}

/* -------------------------------------------------------------- registry */

void state_registry_init(struct state_registry *reg)
{
	memset(reg, 0, sizeof(*reg));
}

void state_registry_destroy(struct state_registry *reg)
{
	free(reg->entries);
	memset(reg, 0, sizeof(*reg));
}

/* A name or id: printable ASCII, so it can go into log lines and file names safely. */
static bool label_ok(const char *s, size_t len, size_t max, bool may_be_empty)
{
	size_t i;

	if (len > max || (!len && !may_be_empty))
		return false;
	for (i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

static struct state_entry *entry_find(struct state_registry *reg, const char *name, size_t name_len,
				      const char *id, size_t id_len)
{
	size_t i;

	for (i = 0; i < reg->nr; i++) {
		struct state_entry *e = &reg->entries[i];

		if (strlen(e->ops->name) == name_len && !memcmp(e->ops->name, name, name_len) &&
		    strlen(e->id) == id_len && !memcmp(e->id, id, id_len))
			return e;
	}
	return NULL;
}

int state_register(struct state_registry *reg, const char *id, const struct state_ops *ops,
		   void *opaque)
{
	struct state_entry *e;

	if (!ops || !ops->name || !ops->save || !ops->load || !id ||
	    !label_ok(ops->name, strlen(ops->name), STATE_NAME_MAX, false) ||
	    !label_ok(id, strlen(id), STATE_ID_MAX, true) ||
	    ops->min_version > ops->version) {
		log_err("register %s[%s]: bad name, id, versions or missing save/load",
			ops && ops->name ? ops->name : "?", id ? id : "?");
		return -EINVAL;
	}
	if (entry_find(reg, ops->name, strlen(ops->name), id, strlen(id))) {
		log_err("register %s[%s]: already registered", ops->name, id);
		return -EEXIST;
	}
	if (reg->nr == reg->cap) {
		size_t cap = reg->cap ? 2 * reg->cap : 16;

		e = realloc(reg->entries, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		reg->entries = e;
		reg->cap = cap;
	}
	e = &reg->entries[reg->nr++];
	memset(e, 0, sizeof(*e));
	strcpy(e->id, id);		/* length checked by label_ok */
	e->ops = ops;
	e->opaque = opaque;
	return 0;
}

int state_unregister(struct state_registry *reg, const char *name, const char *id)
{
	struct state_entry *e = entry_find(reg, name, strlen(name), id, strlen(id));

	if (!e)
		return -ENOENT;
	memmove(e, e + 1, (size_t)(reg->entries + reg->nr - (e + 1)) * sizeof(*e));
	reg->nr--;
	return 0;
}

int state_quiesce_all(struct state_registry *reg)
{
	size_t i;
	int ret;

	for (i = 0; i < reg->nr; i++) {
		struct state_entry *e = &reg->entries[i];

		if (!e->ops->quiesce)
			continue;
		ret = e->ops->quiesce(e->opaque);
		if (ret < 0) {
			log_err("%s[%s]: quiesce: %s", e->ops->name, e->id, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* ------------------------------------------------------- sinks, sources */

static int fd_sink_write(struct state_sink *s, const void *buf, size_t len)
{
	struct state_fd_sink *fs = (struct state_fd_sink *)s;
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fs->fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fd_source_read(struct state_source *s, void *buf, size_t len)
{
	struct state_fd_source *fs = (struct state_fd_source *)s;
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fs->fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int mem_sink_write(struct state_sink *s, const void *buf, size_t len)
{
	struct state_mem_sink *ms = (struct state_mem_sink *)s;

	if (len > ms->cap - ms->len) {
		size_t cap = ms->cap ? ms->cap : 4096;
		uint8_t *p;

		while (cap - ms->len < len) {
			if (cap > SIZE_MAX / 2)
				return -ENOMEM;
			cap *= 2;
		}
		p = realloc(ms->buf, cap);
		if (!p)
			return -ENOMEM;
		ms->buf = p;
		ms->cap = cap;
	}
	memcpy(ms->buf + ms->len, buf, len);
	ms->len += len;
	return 0;
}

static int mem_source_read(struct state_source *s, void *buf, size_t len)
{
	struct state_mem_source *ms = (struct state_mem_source *)s;

	if (len > ms->len - ms->off) {
		ms->off = ms->len;
		return -ENODATA;
	}
	memcpy(buf, ms->buf + ms->off, len);
	ms->off += len;
	return 0;
}

/* The casts above are valid because the ops struct is the first member of each. */
_Static_assert(offsetof(struct state_fd_sink, sink) == 0, "first member");
_Static_assert(offsetof(struct state_fd_source, src) == 0, "first member");
_Static_assert(offsetof(struct state_mem_sink, sink) == 0, "first member");
_Static_assert(offsetof(struct state_mem_source, src) == 0, "first member");

void state_fd_sink_init(struct state_fd_sink *s, int fd)
{
	s->sink.write = fd_sink_write;
	s->fd = fd;
}

void state_fd_source_init(struct state_fd_source *s, int fd)
{
	s->src.read = fd_source_read;
	s->fd = fd;
}

void state_mem_sink_init(struct state_mem_sink *s)
{
	memset(s, 0, sizeof(*s));
	s->sink.write = mem_sink_write;
}

void state_mem_source_init(struct state_mem_source *s, const void *buf, size_t len)
{
	s->src.read = mem_source_read;
	s->buf = buf;
	s->len = len;
	s->off = 0;
}

/* ------------------------------------------------------------------ save */

static int section_save(struct state_entry *e, struct state_sink *sink)
{
	const struct state_ops *ops = e->ops;
	size_t name_len = strlen(ops->name), id_len = strlen(e->id);
	uint8_t hdr[sizeof(struct state_section_hdr)], crcb[CRC_LEN];
	struct state_writer w;
	uint32_t crc;
	int ret;

	sw_init(&w, STATE_DEFAULT_MAX_BODY);
	ret = ops->save(e->opaque, &w);
	if (ret >= 0)
		ret = sw_error(&w);
	if (ret < 0) {
		log_err("%s[%s]: save: %s", ops->name, e->id,
			ret == -E2BIG ? "state larger than the per-section limit" : strerror(-ret));
		goto out;
	}

	put_le32(hdr, STATE_SECTION_MAGIC);
	put_le16(hdr + 4, ops->version);
	put_le16(hdr + 6, 0);
	put_le32(hdr + 8, (uint32_t)name_len);
	put_le32(hdr + 12, (uint32_t)id_len);
	put_le64(hdr + 16, w.len);
	crc = crc32c(0, hdr, sizeof(hdr));
	crc = crc32c(crc, ops->name, name_len);
	crc = crc32c(crc, e->id, id_len);
	crc = crc32c(crc, w.buf, w.len);
	put_le32(crcb, crc);

	ret = sink->write(sink, hdr, sizeof(hdr));
	if (!ret && name_len)
		ret = sink->write(sink, ops->name, name_len);
	if (!ret && id_len)
		ret = sink->write(sink, e->id, id_len);
	if (!ret && w.len)
		ret = sink->write(sink, w.buf, w.len);
	if (!ret)
		ret = sink->write(sink, crcb, sizeof(crcb));
	if (ret < 0)
		log_err("%s[%s]: write: %s", ops->name, e->id, strerror(-ret));
out:
	sw_release(&w);
	return ret;
}

int state_save_all(struct state_registry *reg, struct state_sink *sink)
{
	uint8_t hdr[sizeof(struct state_stream_hdr)];
	size_t i;
	int ret;

	if (reg->nr > STATE_DEFAULT_MAX_SECTIONS) {
		log_err("%zu state sections: more than a loader accepts (%u)", reg->nr,
			STATE_DEFAULT_MAX_SECTIONS);
		return -E2BIG;
	}
	put_le32(hdr, STATE_STREAM_MAGIC);
	put_le16(hdr + 4, STATE_STREAM_VERSION);
	put_le16(hdr + 6, 0);
	put_le32(hdr + 8, (uint32_t)reg->nr);
	put_le32(hdr + 12, crc32c(0, hdr, 12));
	ret = sink->write(sink, hdr, sizeof(hdr));
	if (ret < 0) {
		log_err("write stream header: %s", strerror(-ret));
		return ret;
	}
	for (i = 0; i < reg->nr; i++) {
		ret = section_save(&reg->entries[i], sink);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* ------------------------------------------------------------------ load */

struct parsed_section {
	uint8_t *mem;			/* name + id + body + crc, one allocation */
	const char *name, *id;		/* NUL-terminated copies */
	char name_buf[STATE_NAME_MAX + 1], id_buf[STATE_ID_MAX + 1];
	const uint8_t *body;
	uint64_t body_len;
	uint16_t version;
	struct state_entry *entry;	/* NULL in verify-only mode */
};

static void parsed_free(struct parsed_section *ps, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(ps[i].mem);
	free(ps);
}

static int read_or_truncated(struct state_source *src, void *buf, size_t len, const char *what,
			     size_t idx)
{
	int ret = src->read(src, buf, len);

	if (ret == -ENODATA) {
		log_err("state stream truncated in %s of section %zu", what, idx);
		return -EBADMSG;
	}
	if (ret < 0)
		log_err("state stream: read %s of section %zu: %s", what, idx, strerror(-ret));
	return ret;
}

/* Phase 1 for one section: read, bound, crc, identify, structure. */
static int section_parse(struct state_registry *reg, struct state_source *src,
			 const struct state_limits *lim, uint64_t *total, size_t idx,
			 struct parsed_section *ps)
{
	uint8_t hdr[sizeof(struct state_section_hdr)];
	uint32_t name_len, id_len, crc_want, crc;
	uint64_t body_len, need;
	uint16_t flags;
	int ret;

	ret = read_or_truncated(src, hdr, sizeof(hdr), "header", idx);
	if (ret < 0)
		return ret;
	if (get_le32(hdr) != STATE_SECTION_MAGIC) {
		log_err("state section %zu: bad magic 0x%08x", idx, get_le32(hdr));
		return -EBADMSG;
	}
	ps->version = get_le16(hdr + 4);
	flags = get_le16(hdr + 6);
	name_len = get_le32(hdr + 8);
	id_len = get_le32(hdr + 12);
	body_len = get_le64(hdr + 16);
	if (flags) {
		log_err("state section %zu: unknown section flags 0x%x", idx, flags);
		return -EBADMSG;
	}
	if (name_len == 0 || name_len > STATE_NAME_MAX || id_len > STATE_ID_MAX) {
		log_err("state section %zu: name length %u / id length %u out of range", idx,
			name_len, id_len);
		return -EBADMSG;
	}
	if (body_len > lim->max_section_body) {
		log_err("state section %zu: body of %" PRIu64 " bytes exceeds the limit of %" PRIu64,
			idx, body_len, lim->max_section_body);
		return -E2BIG;
	}
	/* All terms are bounded above, so this cannot overflow. */
	need = (uint64_t)name_len + id_len + body_len + CRC_LEN;
	if (need > lim->max_total - *total) {
		log_err("state stream exceeds the total limit of %" PRIu64 " bytes at section %zu",
			lim->max_total, idx);
		return -E2BIG;
	}
	*total += need;

	ps->mem = malloc(need);
	if (!ps->mem)
		return -ENOMEM;
	ret = read_or_truncated(src, ps->mem, need, "body", idx);
	if (ret < 0)
		return ret;

	crc_want = get_le32(ps->mem + need - CRC_LEN);
	crc = crc32c(0, hdr, sizeof(hdr));
	crc = crc32c(crc, ps->mem, need - CRC_LEN);
	if (crc != crc_want) {
		log_err("state section %zu: crc32c mismatch (stream 0x%08x, computed 0x%08x): corrupted",
			idx, crc_want, crc);
		return -EILSEQ;
	}

	if (!label_ok((const char *)ps->mem, name_len, STATE_NAME_MAX, false) ||
	    !label_ok((const char *)ps->mem + name_len, id_len, STATE_ID_MAX, true)) {
		log_err("state section %zu: name or id has non-printable bytes", idx);
		return -EBADMSG;
	}
	memcpy(ps->name_buf, ps->mem, name_len);
	ps->name_buf[name_len] = 0;
	memcpy(ps->id_buf, ps->mem + name_len, id_len);
	ps->id_buf[id_len] = 0;
	ps->name = ps->name_buf;
	ps->id = ps->id_buf;
	ps->body = ps->mem + name_len + id_len;
	ps->body_len = body_len;

	ret = tlv_list_check(ps->body, body_len, 0);
	if (ret < 0) {
		log_err("section %s[%s]: malformed field list", ps->name, ps->id);
		return ret;
	}

	if (!reg)
		return 0;
	ps->entry = entry_find(reg, ps->name, name_len, ps->id, id_len);
	if (!ps->entry) {
		log_err("stream has section %s[%s], which this VM does not have (device set or vmm version differs)",
			ps->name, ps->id);
		return -EPROTO;
	}
	if (ps->version < ps->entry->ops->min_version || ps->version > ps->entry->ops->version) {
		log_err("section %s[%s]: version %u, this vmm loads versions %u..%u", ps->name, ps->id,
			ps->version, ps->entry->ops->min_version, ps->entry->ops->version);
		return -EPROTONOSUPPORT;
	}
	return 0;
}

/* Phase 1 for a stream. On success *out holds *nr parsed sections (caller frees). */
static int stream_parse(struct state_registry *reg, struct state_source *src,
			const struct state_limits *lim, struct parsed_section **out, size_t *nr)
{
	static const struct state_limits defaults = {
		.max_sections = STATE_DEFAULT_MAX_SECTIONS,
		.max_section_body = STATE_DEFAULT_MAX_BODY,
		.max_total = STATE_DEFAULT_MAX_TOTAL,
	};
	uint8_t hdr[sizeof(struct state_stream_hdr)];
	struct parsed_section *ps = NULL;
	uint64_t total = 0;
	uint32_t count;
	size_t i = 0, j;
	int ret;

	if (!lim)
		lim = &defaults;
	ret = src->read(src, hdr, sizeof(hdr));
	if (ret < 0) {
		log_err("state stream: %s", ret == -ENODATA ? "truncated in the stream header" :
			strerror(-ret));
		return ret == -ENODATA ? -EBADMSG : ret;
	}
	if (get_le32(hdr) != STATE_STREAM_MAGIC) {
		log_err("state stream: bad magic 0x%08x (not a vmctl state stream)", get_le32(hdr));
		return -EBADMSG;
	}
	if (get_le32(hdr + 12) != crc32c(0, hdr, 12)) {
		log_err("state stream: header crc32c mismatch: corrupted");
		return -EILSEQ;
	}
	if (get_le16(hdr + 4) != STATE_STREAM_VERSION || get_le16(hdr + 6)) {
		log_err("state stream: format version %u flags 0x%x, this vmm reads version %u",
			get_le16(hdr + 4), get_le16(hdr + 6), STATE_STREAM_VERSION);
		return -EPROTONOSUPPORT;
	}
	count = get_le32(hdr + 8);
	if (count > lim->max_sections) {
		log_err("state stream: %u sections, limit %u", count, lim->max_sections);
		return -E2BIG;
	}

	ps = calloc(count ? count : 1, sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	for (i = 0; i < count; i++) {
		ret = section_parse(reg, src, lim, &total, i, &ps[i]);
		if (ret < 0) {
			i++;
			goto err;
		}
		for (j = 0; reg && j < i; j++) {
			if (ps[j].entry == ps[i].entry) {
				log_err("stream has section %s[%s] twice", ps[i].name, ps[i].id);
				ret = -EPROTO;
				i++;
				goto err;
			}
		}
	}
	*out = ps;
	*nr = count;
	return 0;
err:
	parsed_free(ps, i);
	return ret;
}

/* The rest of phase 1 (missing sections), then phase 2. Frees @ps. */
static int stream_apply(struct state_registry *reg, struct parsed_section *ps, size_t nr)
{
	size_t i, j;
	int ret;

	/* Every registered component must be in the stream unless it says it may be missing. */
	for (i = 0; i < reg->nr; i++) {
		struct state_entry *e = &reg->entries[i];
		bool found = false;

		for (j = 0; j < nr && !found; j++)
			found = ps[j].entry == e;
		if (!found && !(e->ops->flags & STATE_OPS_OPTIONAL)) {
			log_err("stream lacks section %s[%s], which this VM needs", e->ops->name, e->id);
			ret = -ENOENT;
			goto out;
		}
	}

	/* Phase 2: apply in registration order (the core's dependency order), not stream order. */
	for (i = 0; i < reg->nr; i++) {
		struct state_entry *e = &reg->entries[i];

		for (j = 0; j < nr; j++) {
			struct state_reader r;

			if (ps[j].entry != e)
				continue;
			r = (struct state_reader){ .p = ps[j].body, .len = ps[j].body_len,
						   .name = ps[j].name, .id = ps[j].id };
			ret = e->ops->load(e->opaque, &r, ps[j].version);
			if (ret < 0) {
				log_err("section %s[%s] version %u: load failed: %s", ps[j].name,
					ps[j].id, ps[j].version, strerror(-ret));
				goto out;
			}
		}
	}
	for (i = 0; i < reg->nr; i++) {
		struct state_entry *e = &reg->entries[i];

		if (!e->ops->post_load)
			continue;
		ret = e->ops->post_load(e->opaque);
		if (ret < 0) {
			log_err("%s[%s]: post_load: %s", e->ops->name, e->id, strerror(-ret));
			goto out;
		}
	}
	ret = 0;
out:
	parsed_free(ps, nr);
	return ret;
}

int state_load_all(struct state_registry *reg, struct state_source *src,
		   const struct state_limits *lim)
{
	struct parsed_section *ps = NULL;
	size_t nr = 0;
	int ret;

	ret = stream_parse(reg, src, lim, &ps, &nr);
	if (ret < 0)
		return ret;
	return stream_apply(reg, ps, nr);
}

int state_load_buf(struct state_registry *reg, const void *buf, size_t len,
		   const struct state_limits *lim)
{
	struct state_mem_source ms;
	struct parsed_section *ps = NULL;
	size_t nr = 0;
	int ret;

	state_mem_source_init(&ms, buf, len);
	ret = stream_parse(reg, &ms.src, lim, &ps, &nr);
	if (ret < 0)
		return ret;
	/* Trailing bytes mean a framing error upstream: refuse before anything loads. */
	if (ms.off != ms.len) {
		log_err("state stream: %zu unexpected bytes after the last section", ms.len - ms.off);
		parsed_free(ps, nr);
		return -EBADMSG;
	}
	return stream_apply(reg, ps, nr);
}

int state_verify_buf(const void *buf, size_t len, const struct state_limits *lim)
{
	struct state_mem_source ms;
	struct parsed_section *ps = NULL;
	size_t nr = 0;
	int ret;

	state_mem_source_init(&ms, buf, len);
	ret = stream_parse(NULL, &ms.src, lim, &ps, &nr);
	if (ret < 0)
		return ret;
	parsed_free(ps, nr);
	if (ms.off != ms.len) {
		log_err("state stream: %zu unexpected bytes after the last section", ms.len - ms.off);
		return -EBADMSG;
	}
	return 0;
}
