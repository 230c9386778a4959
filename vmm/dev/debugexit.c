// SPDX-License-Identifier: MIT
/*
 * Debug-exit port (see debugexit.h). The range is 4 ports wide so a 2- or 4-byte write at
 * the base is claimed by the bus; accesses that start inside it are the guest's mistake.
 */
#define LOG_TAG "debugexit"
#include <string.h>

#include "vmm/dev/debugexit.h"
#include "vmm/lib/log.h"

static void de_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	memset(data, 0, len);
}

static void de_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct debugexit *de = opaque;
	uint32_t v = 0;

	if (off != 0 || (len != 1 && len != 2 && len != 4)) {
		log_ratelimited(LOG_WARN, "ignoring %u-byte write at offset %llu", len,
				(unsigned long long)off);
		return;
	}
	memcpy(&v, data, len);		/* little-endian host: the low bytes are the value */
	if (de->request_exit)
		de->request_exit(de->opaque, PLATFORM_EXIT_DEBUG, (int)v);
}

const struct bus_ops debugexit_ops = {
	.read = de_read,
	.write = de_write,
};
