/*
 * cache_index.h — the index of a parked clean cache (docs/design.md 6.6):
 * which block each cached slot of <dir>/cache.dat holds and the store copy
 * (segment epoch and seq, offset) it was read from, written when a volume
 * closes so that its next open on this node starts warm.
 *
 * Format (little-endian): a 48-byte header "GFSCIDX1", u32 version (1), u32
 * block size, 16-byte volume uuid, u64 entry count, u64 reserved (0); then
 * 32-byte entries (u64 block, u64 segment epoch, u64 segment seq, u32 offset
 * in the segment, u32 0); then the CRC-32C of everything before it.
 *
 * The file is read back from local disk, which another program (or a
 * half-copied directory) may have changed: the parser trusts nothing —
 * sizes, counts, the version, the block size, the uuid and the CRC must all
 * agree, and a bad file is refused whole (the cache then starts empty).
 */
#ifndef GLIDEFS_CACHE_INDEX_H
#define GLIDEFS_CACHE_INDEX_H

#include <stddef.h>
#include <stdint.h>

#define GFS_CIDX_HEADER 48
#define GFS_CIDX_ENTRY 32
#define GFS_CIDX_VERSION 1
#define GFS_CIDX_MAX_ENTRIES (UINT64_C(1) << 32) /* a cache has < 2^32 slots */

struct gfs_cidx_entry {
    uint64_t block, epoch, seq;
    uint32_t offset;
};

/* Parse an index of n bytes written for a volume with this block size and
 * uuid: 0 and *out (malloc'd, *count entries; NULL when 0), or -EINVAL
 * (malformed), -ESTALE (another volume's or block size's). */
int gfs_cidx_parse(const uint8_t *buf, size_t n, uint32_t block_size, const uint8_t uuid[16],
                   struct gfs_cidx_entry **out, size_t *count);
/* Encode count entries: a malloc'd buffer of *len bytes, or NULL. */
uint8_t *gfs_cidx_encode(uint32_t block_size, const uint8_t uuid[16],
                         const struct gfs_cidx_entry *e, size_t count, size_t *len);
/* Write the index at path durably (a temporary file, fsync, rename, fsync
 * of the directory). */
int gfs_cidx_write(const char *path, uint32_t block_size, const uint8_t uuid[16],
                   const struct gfs_cidx_entry *e, size_t count);
/* Read and parse path, then remove it (and sync the directory) before
 * returning, so that a crash from here on never finds it again: 0 with the
 * entries, -ENOENT (no index), or the parse or I/O error (the file is
 * removed then too). */
int gfs_cidx_take(const char *path, uint32_t block_size, const uint8_t uuid[16],
                  struct gfs_cidx_entry **out, size_t *count);

#endif
