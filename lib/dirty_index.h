/*
 * dirty_index.h — a closed volume's dirty index handed to the next open on
 * this node in the same boot (docs/design.md 6.7, dirty.idx): the in-memory
 * dirty extents (which journal file and offset hold which sectors of which
 * block), the journal's files as they were left (identified on disk), its
 * current file and next seq. An open that finds a matching index adopts it
 * instead of replaying the journal (reading and CRC-checking every record),
 * which is what makes a takeover's pause short.
 *
 * Format (little-endian): a 112-byte header "GFSDIDX1", u32 version (1),
 * u32 block size, 16-byte volume uuid, 16-byte boot id, u64 volume size,
 * u64 journal epoch, u64 next seq, u64 journal next file id, u64 current
 * file id (0: none), u32 file count, u32 0, u64 block count, u64 extent
 * count; then the files (64 bytes each: u64 id, size, used, st_dev, st_ino,
 * mtime ns, ctime ns, u32 CRC-32C of the bytes around the tail, u32 0);
 * then the blocks (40 bytes: u64 block, u64 first seq, i64 first ms, i64
 * last ms, u32 extent count, u32 0); then the extents, each block's in
 * order (32 bytes: u32 start sector, u32 sectors, u32 flags, u32 file
 * index, u64 seq, u64 data offset); then the CRC-32C of everything before.
 *
 * Valid only in the boot that wrote it (the monotonic clock and the files'
 * identities mean nothing after a reboot), so it is written without fsync;
 * it is read back from local disk, so the parser trusts nothing: every
 * count, bound and cross-field relation is checked and a bad file is
 * refused whole (the open then replays the journal).
 */
#ifndef GLIDEFS_DIRTY_INDEX_H
#define GLIDEFS_DIRTY_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "journal.h"

#define GFS_DIDX_HEADER 112
#define GFS_DIDX_FILE 64
#define GFS_DIDX_BLOCK 40
#define GFS_DIDX_EXT 32
#define GFS_DIDX_VERSION 1
#define GFS_DIDX_MAX_FILES (UINT32_C(1) << 20)

struct gfs_didx_block {
    uint64_t block, first_seq;
    int64_t first_ms, last_ms;
    uint32_t n;      /* its extents */
    uint64_t ext0;   /* index of its first extent in exts (set by the parser) */
};

struct gfs_didx_ext {
    uint32_t start, count, flags, file; /* file: index into files */
    uint64_t seq, data_off;
};

struct gfs_didx {
    uint32_t block_size;
    uint8_t uuid[16], boot_id[16];
    uint64_t vol_size, epoch, next_seq, next_id, cur_id;
    uint32_t nfiles;
    uint64_t nblocks, nexts;
    struct gfs_jfile_id *files;
    struct gfs_didx_block *blocks;
    struct gfs_didx_ext *exts;
};

/* This boot's id (/proc/sys/kernel/random/boot_id): 0 or a negative errno. */
int gfs_didx_boot_id(uint8_t out[16]);

/* Parse n bytes for a volume with this block size, uuid and size, in the
 * boot boot_id: 0 and *out (free with gfs_didx_free), -EINVAL (malformed:
 * length, CRC, version, a count, bound or order that does not hold),
 * -ESTALE (another volume's, size's or boot's). */
int gfs_didx_parse(const uint8_t *buf, size_t n, uint32_t block_size, const uint8_t uuid[16],
                   uint64_t vol_size, const uint8_t boot_id[16], struct gfs_didx *out);
void gfs_didx_free(struct gfs_didx *x);
/* Encode x (its counts and arrays; ext0 is ignored): a malloc'd buffer of
 * *len bytes, or NULL. */
uint8_t *gfs_didx_encode(const struct gfs_didx *x, size_t *len);
/* Write x at path (a temporary file renamed over it; no fsync: the index
 * is only valid in this boot). */
int gfs_didx_write(const char *path, const struct gfs_didx *x);
/* Read and remove path, then parse it: 0, -ENOENT (none), or the parse or
 * I/O error (the file is removed then too). */
int gfs_didx_take(const char *path, uint32_t block_size, const uint8_t uuid[16],
                  uint64_t vol_size, const uint8_t boot_id[16], struct gfs_didx *out);

#endif
