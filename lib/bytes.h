/*
 * bytes.h — little-endian loads and stores at any alignment, for the on-disk
 * and in-store formats (segments, manifests, journal records). Byte-wise
 * shifts keep them free of alignment and strict-aliasing undefined behaviour
 * and independent of host byte order; GCC and Clang fold them into single
 * moves on little-endian hosts.
 */
#ifndef GLIDEFS_BYTES_H
#define GLIDEFS_BYTES_H

#include <stdint.h>

static inline uint32_t gfs_le32_get(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline uint64_t gfs_le64_get(const void *p)
{
    const uint8_t *b = p;
    return (uint64_t)gfs_le32_get(b) | (uint64_t)gfs_le32_get(b + 4) << 32;
}

static inline void gfs_le32_put(void *p, uint32_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
}

static inline void gfs_le64_put(void *p, uint64_t v)
{
    uint8_t *b = p;
    gfs_le32_put(b, (uint32_t)v);
    gfs_le32_put(b + 4, (uint32_t)(v >> 32));
}

#endif
