/*
 * cache_index.c — the parked clean cache's index file: encode, parse with
 * full validation, write durably, take (read and remove) (cache_index.h).
 */
#include "cache_index.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "crc32c.h"
#include "fsutil.h"

static const char MAGIC[8] = {'G', 'F', 'S', 'C', 'I', 'D', 'X', '1'};

int gfs_cidx_parse(const uint8_t *buf, size_t n, uint32_t block_size, const uint8_t uuid[16],
                   struct gfs_cidx_entry **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    if (n < GFS_CIDX_HEADER + 4 || memcmp(buf, MAGIC, sizeof MAGIC) != 0)
        return -EINVAL;
    uint64_t k = gfs_le64_get(buf + 32);
    /* the count must say exactly the file's size (no overflow: k is bounded first) */
    if (k > GFS_CIDX_MAX_ENTRIES || n != GFS_CIDX_HEADER + k * GFS_CIDX_ENTRY + 4)
        return -EINVAL;
    if (gfs_crc32c(0, buf, n - 4) != gfs_le32_get(buf + n - 4))
        return -EINVAL;
    if (gfs_le32_get(buf + 8) != GFS_CIDX_VERSION || gfs_le64_get(buf + 40) != 0)
        return -EINVAL;
    if (gfs_le32_get(buf + 12) != block_size || memcmp(buf + 16, uuid, 16) != 0)
        return -ESTALE;
    if (k == 0)
        return 0;
    struct gfs_cidx_entry *e = malloc((size_t)k * sizeof *e);
    if (!e)
        return -ENOMEM;
    for (uint64_t i = 0; i < k; i++) {
        const uint8_t *p = buf + GFS_CIDX_HEADER + i * GFS_CIDX_ENTRY;
        e[i].block = gfs_le64_get(p);
        e[i].epoch = gfs_le64_get(p + 8);
        e[i].seq = gfs_le64_get(p + 16);
        e[i].offset = gfs_le32_get(p + 24);
        if (gfs_le32_get(p + 28) != 0) {
            free(e);
            return -EINVAL;
        }
    }
    *out = e;
    *count = (size_t)k;
    return 0;
}

uint8_t *gfs_cidx_encode(uint32_t block_size, const uint8_t uuid[16],
                         const struct gfs_cidx_entry *e, size_t count, size_t *len)
{
    size_t n = GFS_CIDX_HEADER + count * GFS_CIDX_ENTRY + 4;
    uint8_t *buf = calloc(1, n);
    if (!buf)
        return NULL;
    memcpy(buf, MAGIC, sizeof MAGIC);
    gfs_le32_put(buf + 8, GFS_CIDX_VERSION);
    gfs_le32_put(buf + 12, block_size);
    memcpy(buf + 16, uuid, 16);
    gfs_le64_put(buf + 32, count);
    for (size_t i = 0; i < count; i++) {
        uint8_t *p = buf + GFS_CIDX_HEADER + i * GFS_CIDX_ENTRY;
        gfs_le64_put(p, e[i].block);
        gfs_le64_put(p + 8, e[i].epoch);
        gfs_le64_put(p + 16, e[i].seq);
        gfs_le32_put(p + 24, e[i].offset);
    }
    gfs_le32_put(buf + n - 4, gfs_crc32c(0, buf, n - 4));
    *len = n;
    return buf;
}

int gfs_cidx_write(const char *path, uint32_t block_size, const uint8_t uuid[16],
                   const struct gfs_cidx_entry *e, size_t count)
{
    size_t n;
    uint8_t *buf = gfs_cidx_encode(block_size, uuid, e, count, &n);
    if (!buf)
        return -ENOMEM;
    int r = gfs_file_put(path, buf, n, 1);
    free(buf);
    return r;
}

int gfs_cidx_take(const char *path, uint32_t block_size, const uint8_t uuid[16],
                  struct gfs_cidx_entry **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    uint8_t *buf;
    size_t n;
    /* gone before anything uses the cache: a crash later must not find an
     * index for data that has changed since */
    int r = gfs_file_take(path, GFS_CIDX_HEADER + 4 + (size_t)UINT32_MAX * GFS_CIDX_ENTRY, &buf,
                          &n);
    if (r == -ENOENT)
        return r;
    gfs_fsync_parent(path);
    if (r == 0)
        r = gfs_cidx_parse(buf, n, block_size, uuid, out, count);
    free(buf);
    return r;
}
