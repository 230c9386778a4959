// SPDX-License-Identifier: MIT
/*
 * AML writer (see aml.h). Encodings follow ACPI 6.5 chapter 20 ("ACPI Machine Language
 * Specification") and §6.4 (resource descriptors). Objects with a PkgLength are written body
 * first and the length is inserted in front of the body when the object is closed: the
 * PkgLength is 1–4 bytes depending on the total, so it cannot be reserved in advance
 * without padding tricks, and a memmove at close time keeps the encoding minimal.
 */
#define LOG_TAG "aml"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/acpi/aml.h"

enum { KIND_PKG, KIND_BUFFER };

void aml_init(struct aml *a)
{
	memset(a, 0, sizeof(*a));
}

void aml_free(struct aml *a)
{
	free(a->buf);
	memset(a, 0, sizeof(*a));
}

int aml_error(const struct aml *a)
{
	if (a->err)
		return a->err;
	return a->depth ? -EPROTO : 0;
}

static void set_err(struct aml *a, int err)
{
	if (!a->err)
		a->err = err;
}

static int reserve(struct aml *a, size_t n)
{
	if (a->err)
		return -1;
	if (a->len + n > a->cap) {
		size_t cap = a->cap ? a->cap : 256;
		uint8_t *p;

		while (cap < a->len + n)
			cap *= 2;
		p = realloc(a->buf, cap);
		if (!p) {
			set_err(a, -ENOMEM);
			return -1;
		}
		a->buf = p;
		a->cap = cap;
	}
	return 0;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (n == 0)
		return;		/* p may be NULL (an empty writer's buffer) */
	if (reserve(a, n) < 0)
		return;
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void put_le(struct aml *a, uint64_t v, unsigned int n)
{
	uint8_t b[8];

	for (unsigned int i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	aml_bytes(a, b, n);
}

/* Insert @n bytes at @pos, shifting what follows. */
static void insert(struct aml *a, size_t pos, const uint8_t *p, size_t n)
{
	if (reserve(a, n) < 0)
		return;
	memmove(a->buf + pos + n, a->buf + pos, a->len - pos);
	memcpy(a->buf + pos, p, n);
	a->len += n;
}

/* Encode a PkgLength for a body of @body bytes; returns the encoding's size (0 if too big). */
static size_t pkglen_encode(size_t body, uint8_t out[4])
{
	size_t total;

	if (body + 1 < 0x40) {
		out[0] = (uint8_t)(body + 1);
		return 1;
	}
	for (size_t n = 2; n <= 4; n++) {
		total = body + n;
		if (total < (1ull << (4 + 8 * (n - 1)))) {
			out[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
			for (size_t i = 1; i < n; i++)
				out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
			return n;
		}
	}
	return 0;
}

static int seg_char_ok(char c, int first)
{
	if (c == '_' || (c >= 'A' && c <= 'Z'))
		return 1;
	return !first && c >= '0' && c <= '9';
}

void aml_namestring(struct aml *a, const char *path)
{
	const char *p = path;
	char segs[32][4];
	unsigned int nsegs = 0;

	if (*p == '\\') {
		aml_byte(a, '\\');
		p++;
	} else {
		while (*p == '^') {
			aml_byte(a, '^');
			p++;
		}
	}
	while (*p) {
		unsigned int n = 0;

		if (nsegs == 32) {
			set_err(a, -EINVAL);
			return;
		}
		memset(segs[nsegs], '_', 4);
		while (*p && *p != '.') {
			if (n == 4 || !seg_char_ok(*p, n == 0)) {
				set_err(a, -EINVAL);
				return;
			}
			segs[nsegs][n++] = *p++;
		}
		if (n == 0) {
			set_err(a, -EINVAL);
			return;
		}
		nsegs++;
		if (*p == '.')
			p++;
	}
	if (nsegs == 0) {
		aml_byte(a, 0x00);		/* NullName */
	} else if (nsegs == 2) {
		aml_byte(a, 0x2e);		/* DualNamePrefix */
	} else if (nsegs > 2) {
		aml_byte(a, 0x2f);		/* MultiNamePrefix */
		aml_byte(a, (uint8_t)nsegs);
	}
	for (unsigned int i = 0; i < nsegs; i++)
		aml_bytes(a, segs[i], 4);
}

void aml_int(struct aml *a, uint64_t v)
{
	if (v == 0) {
		aml_byte(a, 0x00);		/* ZeroOp */
	} else if (v == 1) {
		aml_byte(a, 0x01);		/* OneOp */
	} else if (v <= 0xff) {
		aml_byte(a, 0x0a);
		put_le(a, v, 1);
	} else if (v <= 0xffff) {
		aml_byte(a, 0x0b);
		put_le(a, v, 2);
	} else if (v <= 0xffffffffull) {
		aml_byte(a, 0x0c);
		put_le(a, v, 4);
	} else {
		aml_byte(a, 0x0e);
		put_le(a, v, 8);
	}
}

void aml_string(struct aml *a, const char *s)
{
	for (const char *p = s; *p; p++) {
		if ((unsigned char)*p > 0x7f) {	/* AML strings are ASCII */
			set_err(a, -EINVAL);
			return;
		}
	}
	aml_byte(a, 0x0d);
	aml_bytes(a, s, strlen(s) + 1);
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = 0;
	uint8_t b[4];

	if (strlen(id) != 7) {
		set_err(a, -EINVAL);
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			set_err(a, -EINVAL);
			return;
		}
		v = (v << 5) | (uint32_t)(id[i] - 0x40);
	}
	for (int i = 3; i < 7; i++) {
		char c = id[i];
		unsigned int d;

		if (c >= '0' && c <= '9')
			d = (unsigned int)(c - '0');
		else if (c >= 'A' && c <= 'F')
			d = (unsigned int)(c - 'A' + 10);
		else {
			set_err(a, -EINVAL);
			return;
		}
		v = (v << 4) | d;
	}
	/* The 32-bit id is stored big-endian, then read as a little-endian DWord. */
	b[0] = (uint8_t)(v >> 24);
	b[1] = (uint8_t)(v >> 16);
	b[2] = (uint8_t)(v >> 8);
	b[3] = (uint8_t)v;
	aml_int(a, (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
		   (uint32_t)b[3] << 24);
}

void aml_arg(struct aml *a, unsigned int n)
{
	if (n > 6)
		set_err(a, -EINVAL);
	else
		aml_byte(a, (uint8_t)(0x68 + n));
}

void aml_local(struct aml *a, unsigned int n)
{
	if (n > 7)
		set_err(a, -EINVAL);
	else
		aml_byte(a, (uint8_t)(0x60 + n));
}

void aml_name_begin(struct aml *a, const char *path)
{
	aml_byte(a, 0x08);			/* NameOp */
	aml_namestring(a, path);
}

void aml_name_int(struct aml *a, const char *path, uint64_t v)
{
	aml_name_begin(a, path);
	aml_int(a, v);
}

void aml_name_string(struct aml *a, const char *path, const char *s)
{
	aml_name_begin(a, path);
	aml_string(a, s);
}

void aml_name_eisaid(struct aml *a, const char *path, const char *id)
{
	aml_name_begin(a, path);
	aml_eisaid(a, id);
}

static void open_obj(struct aml *a, uint8_t kind)
{
	if (a->err)
		return;
	if (a->depth == AML_MAX_DEPTH) {
		set_err(a, -EPROTO);
		return;
	}
	a->open[a->depth] = a->len;
	a->kind[a->depth] = kind;
	a->depth++;
}

void aml_scope_begin(struct aml *a, const char *path)
{
	aml_byte(a, 0x10);			/* ScopeOp */
	open_obj(a, KIND_PKG);
	aml_namestring(a, path);
}

void aml_device_begin(struct aml *a, const char *path)
{
	aml_bytes(a, "\x5b\x82", 2);		/* ExtOpPrefix DeviceOp */
	open_obj(a, KIND_PKG);
	aml_namestring(a, path);
}

void aml_method_begin(struct aml *a, const char *path, unsigned int nargs, int serialized)
{
	if (nargs > 7) {
		set_err(a, -EINVAL);
		return;
	}
	aml_byte(a, 0x14);			/* MethodOp */
	open_obj(a, KIND_PKG);
	aml_namestring(a, path);
	aml_byte(a, (uint8_t)(nargs | (serialized ? 0x08 : 0)));
}

void aml_package_begin(struct aml *a, unsigned int nelems)
{
	if (nelems > 255) {
		set_err(a, -EINVAL);
		return;
	}
	aml_byte(a, 0x12);			/* PackageOp */
	open_obj(a, KIND_PKG);
	aml_byte(a, (uint8_t)nelems);
}

void aml_buffer_begin(struct aml *a)
{
	aml_byte(a, 0x11);			/* BufferOp */
	open_obj(a, KIND_BUFFER);
}

void aml_end(struct aml *a)
{
	uint8_t pre[16];
	size_t start, body, n;

	if (a->err)
		return;
	if (a->depth == 0) {
		set_err(a, -EPROTO);
		return;
	}
	a->depth--;
	start = a->open[a->depth];
	body = a->len - start;
	if (a->kind[a->depth] == KIND_BUFFER) {
		/* Buffer := BufferOp PkgLength BufferSize ByteList; BufferSize is an integer. */
		struct aml sz;
		size_t m;

		aml_init(&sz);
		aml_int(&sz, body);
		if (sz.err) {
			set_err(a, sz.err);
			aml_free(&sz);
			return;
		}
		n = pkglen_encode(body + sz.len, pre);
		if (n == 0) {
			aml_free(&sz);
			set_err(a, -EINVAL);
			return;
		}
		m = sz.len;
		memcpy(pre + n, sz.buf, m);
		aml_free(&sz);
		insert(a, start, pre, n + m);
		return;
	}
	n = pkglen_encode(body, pre);
	if (n == 0) {
		set_err(a, -EINVAL);
		return;
	}
	insert(a, start, pre, n);
}

void aml_return(struct aml *a)
{
	aml_byte(a, 0xa4);			/* ReturnOp */
}

void aml_restemplate_begin(struct aml *a)
{
	aml_buffer_begin(a);
}

void aml_restemplate_end(struct aml *a)
{
	aml_bytes(a, "\x79\x00", 2);		/* End Tag, checksum 0 = "ok" */
	aml_end(a);
}

void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
	aml_byte(a, 0x47);			/* I/O port descriptor, 7 bytes */
	aml_byte(a, 0x01);			/* 16-bit decode */
	put_le(a, min, 2);
	put_le(a, max, 2);
	aml_byte(a, align);
	aml_byte(a, len);
}

void aml_res_irq_noflags(struct aml *a, unsigned int irq)
{
	if (irq > 15) {
		set_err(a, -EINVAL);
		return;
	}
	aml_byte(a, 0x22);			/* IRQ descriptor, 2 bytes: edge, active-high */
	put_le(a, 1u << irq, 2);
}

/* Address space descriptor header: type, length, resource type, flags. */
static void addr_hdr(struct aml *a, uint8_t tag, uint16_t len, uint8_t rtype, uint8_t tflags)
{
	aml_byte(a, tag);
	put_le(a, len, 2);
	aml_byte(a, rtype);
	aml_byte(a, 0x0c);			/* producer, MinFixed, MaxFixed, PosDecode */
	aml_byte(a, tflags);
}

void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max)
{
	addr_hdr(a, 0x88, 13, 2, 0);
	put_le(a, 0, 2);			/* granularity */
	put_le(a, min, 2);
	put_le(a, max, 2);
	put_le(a, 0, 2);			/* translation */
	put_le(a, (uint16_t)(max - min + 1), 2);
}

void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max)
{
	addr_hdr(a, 0x88, 13, 1, 0x03);		/* EntireRange */
	put_le(a, 0, 2);
	put_le(a, min, 2);
	put_le(a, max, 2);
	put_le(a, 0, 2);
	put_le(a, (uint16_t)(max - min + 1), 2);
}

void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max, int cacheable)
{
	addr_hdr(a, 0x87, 23, 0, (uint8_t)(0x01 | (cacheable ? 0x02 : 0)));	/* ReadWrite */
	put_le(a, 0, 4);
	put_le(a, min, 4);
	put_le(a, max, 4);
	put_le(a, 0, 4);
	put_le(a, (uint32_t)(max - min + 1), 4);
}

void aml_res_qword_mem(struct aml *a, uint64_t min, uint64_t max, int cacheable)
{
	addr_hdr(a, 0x8a, 43, 0, (uint8_t)(0x01 | (cacheable ? 0x02 : 0)));
	put_le(a, 0, 8);
	put_le(a, min, 8);
	put_le(a, max, 8);
	put_le(a, 0, 8);
	put_le(a, max - min + 1, 8);
}

void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len)
{
	aml_byte(a, 0x86);			/* Memory32Fixed, 9 bytes */
	put_le(a, 9, 2);
	aml_byte(a, 0x01);			/* ReadWrite */
	put_le(a, base, 4);
	put_le(a, len, 4);
}
