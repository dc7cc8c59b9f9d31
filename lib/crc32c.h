/*
 * crc32c.h — CRC-32C (Castagnoli), the checksum of journal records, segment
 * blocks and object headers. Hardware (SSE4.2) when the CPU has it.
 */
#ifndef GLIDEFS_CRC32C_H
#define GLIDEFS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: crc32c(crc32c(0, a), b) == crc32c(0, a||b). */
uint32_t gfs_crc32c(uint32_t crc, const void *buf, size_t len);

/* The two implementations behind gfs_crc32c, for tests and benchmarks.
 * gfs_crc32c_hw may only be called when gfs_crc32c_hw_available() is 1. */
uint32_t gfs_crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t gfs_crc32c_hw(uint32_t crc, const void *buf, size_t len);
int gfs_crc32c_hw_available(void);

#endif
