// SPDX-License-Identifier: MIT
/*
 * Snapshot files (suspend to disk / resume): the VM's CONFIG (the same field list the
 * migration handshake sends), its state stream (vmm/state.h) and a RAM image, written while
 * the VM is paused and restored by `vmm --restore PATH` into a new process started with the
 * same VM arguments. Format (docs/migration-protocol.md, "Snapshot files"):
 *
 *   0     header, 64 bytes, little-endian
 *           u32 magic "VMSN"  u16 version 1  u16 arch 1 (x86-64)  u32 flags 0
 *           u32 config_len    u64 mem_bytes  u64 state_off  u64 state_len
 *           u64 ram_off       u64 ram_len    u32 reserved 0 u32 crc32c(bytes 0..59)
 *   64    CONFIG field list (config_len bytes)
 *   ...   state stream (state_len bytes, its own crcs)
 *   ram_off (4 KiB aligned)  RAM image: ram_len = mem_bytes bytes in memfd order (low RAM,
 *         then RAM above 4 GiB). Pages that are zero are not written: they are holes in a
 *         sparse file, so an idle 1 GiB guest's snapshot occupies what it uses.
 *
 * Restore checks the header (crc, sizes against the file size and the limits) and the
 * CONFIG against this process's VM — a different memory size, vCPU count or device set is
 * refused with a one-line reason — before touching RAM, and verifies the whole state
 * stream before loading it. The RAM image has no checksum of its own (the filesystem's
 * integrity is trusted for it; the state stream and header are checked).
 */
#define LOG_TAG "snapshot"
#include <errno.h>
#include <endian.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migrate/migration.h"
#include "migrate/pages.h"
#include "migrate/proto.h"
#include "vmm/lib/crc32c.h"
#include "vmm/lib/log.h"
#include "vmm/vm.h"

#define SNAP_MAGIC	0x4e534d56u	/* "VMSN" */
#define SNAP_VERSION	1u
#define SNAP_ARCH_X86_64 1u
#define SNAP_HDR_LEN	64u
#define PAGE		4096ull

struct snap_hdr {
	uint32_t config_len;
	uint64_t mem_bytes, state_off, state_len, ram_off, ram_len;
};

static void put16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

static void hdr_encode(uint8_t *b, const struct snap_hdr *h)
{
	memset(b, 0, SNAP_HDR_LEN);
	put32(b + 0, SNAP_MAGIC);
	put16(b + 4, SNAP_VERSION);
	put16(b + 6, SNAP_ARCH_X86_64);
	put32(b + 8, 0);
	put32(b + 12, h->config_len);
	put64(b + 16, h->mem_bytes);
	put64(b + 24, h->state_off);
	put64(b + 32, h->state_len);
	put64(b + 40, h->ram_off);
	put64(b + 48, h->ram_len);
	put32(b + 56, 0);
	put32(b + 60, crc32c(0, b, 60));
}

static int hdr_decode(const uint8_t *b, uint64_t file_size, struct snap_hdr *h)
{
	if (get32(b) != SNAP_MAGIC) {
		log_err("not a vmm snapshot (bad magic)");
		return -EBADMSG;
	}
	if (get32(b + 60) != crc32c(0, b, 60)) {
		log_err("snapshot header is corrupt (crc mismatch)");
		return -EILSEQ;
	}
	if (get16(b + 4) != SNAP_VERSION || get16(b + 6) != SNAP_ARCH_X86_64) {
		log_err("snapshot format %u arch %u: this vmm reads format %u arch %u",
			get16(b + 4), get16(b + 6), SNAP_VERSION, SNAP_ARCH_X86_64);
		return -EPROTONOSUPPORT;
	}
	if (get32(b + 8) || get32(b + 56)) {
		log_err("snapshot header has unknown flags");
		return -EBADMSG;
	}
	h->config_len = get32(b + 12);
	h->mem_bytes = get64(b + 16);
	h->state_off = get64(b + 24);
	h->state_len = get64(b + 32);
	h->ram_off = get64(b + 40);
	h->ram_len = get64(b + 48);
	/* Limits before any allocation; offsets must be ordered and inside the file. */
	if (h->config_len > MIG_MAX_CONFIG || h->state_len > MIG_STATE_MAX_LEN ||
	    h->state_off != SNAP_HDR_LEN + (uint64_t)h->config_len ||
	    h->ram_off < h->state_off + h->state_len || h->ram_off % PAGE ||
	    h->ram_len != h->mem_bytes || h->ram_len % PAGE ||
	    h->ram_len > file_size || h->ram_off > file_size - h->ram_len) {
		log_err("snapshot header is inconsistent (sizes/offsets do not fit a %" PRIu64
			"-byte file)", file_size);
		return -EBADMSG;
	}
	return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Write non-zero pages of guest RAM at @ram_off; skips memfd holes without reading them. */
static int ram_write(struct guest_mem *mem, int fd, uint64_t ram_off, uint64_t *written)
{
	const uint8_t *base = mem->base;
	uint64_t off = 0, run_start = 0, run_len = 0;
	int ret;

	*written = 0;
	while (off < mem->size) {
		off_t data = lseek(mem->memfd, (off_t)off, SEEK_DATA);
		off_t hole;

		if (data < 0)
			break;			/* ENXIO: only holes remain */
		hole = lseek(mem->memfd, data, SEEK_HOLE);
		if (hole < 0)
			hole = (off_t)mem->size;
		for (off = (uint64_t)data & ~(PAGE - 1); off < (uint64_t)hole && off < mem->size;
		     off += PAGE) {
			bool zero = mig_page_is_zero(base + off);

			if (run_len && (zero || run_start + run_len != off || run_len >= (8ull << 20))) {
				ret = pwrite_all(fd, base + run_start, run_len, ram_off + run_start);
				if (ret < 0)
					return ret;
				*written += run_len;
				run_len = 0;
			}
			if (!zero) {
				if (!run_len)
					run_start = off;
				run_len += PAGE;
			}
		}
	}
	if (run_len) {
		ret = pwrite_all(fd, base + run_start, run_len, ram_off + run_start);
		if (ret < 0)
			return ret;
		*written += run_len;
	}
	return 0;
}

int mig_snapshot_save(struct mig_ctx *m, const char *path, uint64_t *bytes_out)
{
	struct vm *vm = m->vm;
	struct state_mem_sink sink;
	struct mig_config c;
	struct snap_hdr h;
	uint8_t hdr[SNAP_HDR_LEN], *cfg = NULL;
	uint64_t written = 0;
	size_t cfg_len = 0;
	char tmp[4096];
	int fd, ret;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	mig_config_init(&c);
	state_mem_sink_init(&sink);
	ret = mig_local_config(m, &c);
	if (ret == 0)
		ret = mig_config_encode(&c, &cfg, &cfg_len);
	if (ret < 0)
		goto out;
	ret = state_quiesce_all(m->reg);
	if (ret < 0)
		goto out;
	ret = state_save_all(m->reg, &sink.sink);
	if (ret < 0)
		goto out;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		log_err("%s: %s", tmp, strerror(-ret));
		goto out;
	}
	h.config_len = (uint32_t)cfg_len;
	h.mem_bytes = vm->mem.size;
	h.state_off = SNAP_HDR_LEN + cfg_len;
	h.state_len = sink.len;
	h.ram_off = (h.state_off + h.state_len + PAGE - 1) & ~(PAGE - 1);
	h.ram_len = vm->mem.size;
	hdr_encode(hdr, &h);
	ret = pwrite_all(fd, cfg, cfg_len, SNAP_HDR_LEN);
	if (ret == 0)
		ret = pwrite_all(fd, sink.buf, sink.len, h.state_off);
	if (ret == 0)
		ret = ram_write(&vm->mem, fd, h.ram_off, &written);
	if (ret == 0 && ftruncate(fd, (off_t)(h.ram_off + h.ram_len)) < 0)
		ret = -errno;
	/* The header last: a file cut short by a crash has no valid header. */
	if (ret == 0)
		ret = pwrite_all(fd, hdr, sizeof(hdr), 0);
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (ret == 0 && rename(tmp, path) < 0)
		ret = -errno;
	if (ret < 0) {
		log_err("writing snapshot %s: %s", path, strerror(-ret));
		unlink(tmp);
		goto out;
	}
	log_info("snapshot %s: %" PRIu64 " MiB RAM (%" PRIu64 " KiB non-zero written), state %zu bytes",
		 path, vm->mem.size >> 20, written >> 10, sink.len);
	if (bytes_out)
		*bytes_out = h.ram_off + written;
out:
	free(cfg);
	free(sink.buf);
	mig_config_free(&c);
	return ret;
}

/* Copy the file's data extents of the RAM image into guest RAM (holes stay zero). */
static int ram_read(struct guest_mem *mem, int fd, uint64_t ram_off)
{
	uint64_t end = ram_off + mem->size, off = ram_off;
	uint8_t *base = mem->base;
	int ret;

	while (off < end) {
		off_t data = lseek(fd, (off_t)off, SEEK_DATA), hole;
		uint64_t from, to;

		if (data < 0)
			break;
		if ((uint64_t)data >= end)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > end)
			hole = (off_t)end;
		from = (uint64_t)data;
		to = (uint64_t)hole;
		ret = pread_all(fd, base + (from - ram_off), to - from, from);
		if (ret < 0)
			return ret;
		off = to;
	}
	return 0;
}

int mig_snapshot_restore(struct mig_ctx *m, const char *path)
{
	struct mig_config src, local;
	uint8_t hdr[SNAP_HDR_LEN], *cfg = NULL, *state = NULL;
	struct snap_hdr h;
	struct stat st;
	char err[256];
	int fd, ret;

	mig_config_init(&src);
	mig_config_init(&local);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		log_err("--restore %s: %s", path, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)SNAP_HDR_LEN) {
		log_err("--restore %s: not a snapshot file (too small or not a regular file)", path);
		ret = -EBADMSG;
		goto out;
	}
	ret = pread_all(fd, hdr, sizeof(hdr), 0);
	if (ret < 0)
		goto err_io;
	ret = hdr_decode(hdr, (uint64_t)st.st_size, &h);
	if (ret < 0)
		goto out;
	cfg = malloc(h.config_len ? h.config_len : 1);
	state = malloc(h.state_len ? h.state_len : 1);
	if (!cfg || !state) {
		ret = -ENOMEM;
		goto out;
	}
	ret = pread_all(fd, cfg, h.config_len, SNAP_HDR_LEN);
	if (ret == 0)
		ret = pread_all(fd, state, h.state_len, h.state_off);
	if (ret < 0)
		goto err_io;
	ret = mig_config_decode(cfg, h.config_len, &src);
	if (ret < 0) {
		log_err("snapshot %s: malformed VM configuration", path);
		goto out;
	}
	ret = mig_local_config(m, &local);
	if (ret < 0)
		goto out;
	/* No CPU check: the snapshot's CPUID is compared as on migration, against this host. */
	ret = mig_config_check(&src, &local, local.cpuid, local.nr_cpuid, err, sizeof(err));
	if (ret < 0) {
		log_err("cannot restore %s here: %s", path, err);
		goto out;
	}
	ret = state_verify_buf(state, h.state_len, NULL);
	if (ret < 0) {
		log_err("snapshot %s: state stream rejected: %s", path, strerror(-ret));
		goto out;
	}
	ret = mig_ram_discard(m);
	if (ret < 0)
		goto out;
	ret = ram_read(&m->vm->mem, fd, h.ram_off);
	if (ret < 0)
		goto err_io;
	ret = state_load_buf(m->reg, state, h.state_len, NULL);
	if (ret < 0) {
		log_err("snapshot %s: loading state: %s", path, strerror(-ret));
		goto out;
	}
	log_info("restored %s: %" PRIu64 " MiB RAM, state %" PRIu64 " bytes", path,
		 h.mem_bytes >> 20, h.state_len);
	goto out;
err_io:
	log_err("reading %s: %s", path, ret == -ENODATA ? "file is truncated" : strerror(-ret));
out:
	free(cfg);
	free(state);
	mig_config_free(&src);
	mig_config_free(&local);
	close(fd);
	return ret;
}
