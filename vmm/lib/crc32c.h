/* SPDX-License-Identifier: MIT */
/*
 * CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), as used by iSCSI, ext4
 * and btrfs. It guards every state section against corruption (not against an attacker: that
 * is what the length and range checks are for).
 *
 * Check value: crc32c("123456789") == 0xE3069283.
 */
#ifndef VMM_LIB_CRC32C_H
#define VMM_LIB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * Continue a CRC over @len bytes. Start with crc = 0; the pre/post inversion is done inside, so
 * crc32c(crc32c(0, a, n), b, m) == crc32c(0, a||b, n+m). Uses the SSE4.2 crc32 instruction when
 * the CPU has it, a slicing-by-8 table otherwise. Thread-safe (tables are built once).
 */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable table path, exported so tests can compare both implementations. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
