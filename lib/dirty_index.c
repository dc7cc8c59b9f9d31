/*
 * dirty_index.c — the dirty index file handed from a volume's close to its
 * next open in the same boot: encode, parse with full validation, write
 * (no fsync), take (read and remove) (dirty_index.h).
 */
#include "dirty_index.h"

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
#include "dirty.h"

static const char MAGIC[8] = {'G', 'F', 'S', 'D', 'I', 'D', 'X', '1'};

int gfs_didx_boot_id(uint8_t out[16])
{
    char s[64] = "";
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t k = read(fd, s, sizeof s - 1);
    close(fd);
    if (k < 36)
        return -EIO;
    /* 8-4-4-4-12 hex digits */
    size_t o = 0;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return -EIO;
            continue;
        }
        char c = s[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0)
            return -EIO;
        if (o % 2 == 0)
            out[o / 2] = (uint8_t)(v << 4);
        else
            out[o / 2] |= (uint8_t)v;
        o++;
    }
    return 0;
}

void gfs_didx_free(struct gfs_didx *x)
{
    free(x->files);
    free(x->blocks);
    free(x->exts);
    memset(x, 0, sizeof *x);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The header's and the arrays' own checks (the counts already fit n). */
static int parse_body(const uint8_t *buf, uint32_t block_size, uint64_t vol_size,
                      struct gfs_didx *x)
{
    const uint64_t spb = block_size / 512;
    const uint64_t nvblocks = (vol_size + block_size - 1) / block_size;
    const uint8_t *p = buf + GFS_DIDX_HEADER;
    if (x->nfiles && !(x->files = calloc(x->nfiles, sizeof *x->files)))
        return -ENOMEM;
    for (uint32_t i = 0; i < x->nfiles; i++, p += GFS_DIDX_FILE) {
        struct gfs_jfile_id *f = &x->files[i];
        f->id = gfs_le64_get(p);
        f->size = gfs_le64_get(p + 8);
        f->used = gfs_le64_get(p + 16);
        f->dev = gfs_le64_get(p + 24);
        f->ino = gfs_le64_get(p + 32);
        f->mtime_ns = (int64_t)gfs_le64_get(p + 40);
        f->ctime_ns = (int64_t)gfs_le64_get(p + 48);
        f->tail_crc = gfs_le32_get(p + 56);
        if (gfs_le32_get(p + 60) != 0 || f->id == 0 || f->id >= x->next_id ||
            (i && f->id <= x->files[i - 1].id) || f->size == 0 || f->used > f->size)
            return -EINVAL;
    }
    /* the current file is the newest one, or none */
    if (x->cur_id && (!x->nfiles || x->cur_id != x->files[x->nfiles - 1].id))
        return -EINVAL;
    if (x->nblocks && !(x->blocks = calloc(x->nblocks, sizeof *x->blocks)))
        return -ENOMEM;
    if (x->nexts && !(x->exts = calloc(x->nexts, sizeof *x->exts)))
        return -ENOMEM;
    const uint8_t *q = p + x->nblocks * GFS_DIDX_BLOCK; /* the extents */
    uint64_t e = 0;
    for (uint64_t b = 0; b < x->nblocks; b++, p += GFS_DIDX_BLOCK) {
        struct gfs_didx_block *db = &x->blocks[b];
        db->block = gfs_le64_get(p);
        db->first_seq = gfs_le64_get(p + 8);
        db->first_ms = (int64_t)gfs_le64_get(p + 16);
        db->last_ms = (int64_t)gfs_le64_get(p + 24);
        db->n = gfs_le32_get(p + 32);
        db->ext0 = e;
        if (gfs_le32_get(p + 36) != 0 || db->block >= nvblocks || db->n == 0 ||
            db->n > x->nexts - e || db->first_seq == 0 || db->first_ms > db->last_ms)
            return -EINVAL;
        /* the block's extents: sorted, disjoint, inside the block and the volume */
        uint64_t prev_end = 0, bstart = db->block * (uint64_t)block_size;
        for (uint32_t i = 0; i < db->n; i++, e++, q += GFS_DIDX_EXT) {
            struct gfs_didx_ext *x_ = &x->exts[e];
            x_->start = gfs_le32_get(q);
            x_->count = gfs_le32_get(q + 4);
            x_->flags = gfs_le32_get(q + 8);
            x_->file = gfs_le32_get(q + 12);
            x_->seq = gfs_le64_get(q + 16);
            x_->data_off = gfs_le64_get(q + 24);
            if (x_->count == 0 || x_->start < prev_end || x_->start >= spb ||
                x_->count > spb - x_->start)
                return -EINVAL;
            prev_end = (uint64_t)x_->start + x_->count;
            if (bstart + prev_end * 512 > vol_size)
                return -EINVAL;
            if ((x_->flags & ~(uint32_t)GFS_EXT_ZERO) || x_->file >= x->nfiles ||
                x_->seq == 0 || x_->seq >= x->next_seq || x_->seq < db->first_seq)
                return -EINVAL;
            const struct gfs_jfile_id *f = &x->files[x_->file];
            if (x_->flags & GFS_EXT_ZERO) {
                if (x_->data_off != 0)
                    return -EINVAL;
            } else if (x_->data_off < GFS_JREC_HDR || x_->data_off > f->used ||
                       (uint64_t)x_->count * 512 > f->used - x_->data_off) {
                return -EINVAL;
            }
        }
    }
    if (e != x->nexts)
        return -EINVAL;
    /* each block once */
    if (x->nblocks > 1) {
        uint64_t *ids = malloc(x->nblocks * sizeof *ids);
        if (!ids)
            return -ENOMEM;
        for (uint64_t b = 0; b < x->nblocks; b++)
            ids[b] = x->blocks[b].block;
        qsort(ids, x->nblocks, sizeof *ids, cmp_u64);
        int dup = 0;
        for (uint64_t b = 1; b < x->nblocks && !dup; b++)
            dup = ids[b] == ids[b - 1];
        free(ids);
        if (dup)
            return -EINVAL;
    }
    return 0;
}

int gfs_didx_parse(const uint8_t *buf, size_t n, uint32_t block_size, const uint8_t uuid[16],
                   uint64_t vol_size, const uint8_t boot_id[16], struct gfs_didx *out)
{
    memset(out, 0, sizeof *out);
    if (n < GFS_DIDX_HEADER + 4 || memcmp(buf, MAGIC, sizeof MAGIC) != 0)
        return -EINVAL;
    if (block_size < 512 || block_size % 512)
        return -EINVAL;
    uint64_t nfiles = gfs_le32_get(buf + 88), nblocks = gfs_le64_get(buf + 96),
             nexts = gfs_le64_get(buf + 104);
    /* the counts must say exactly the file's size (taken part by part, so
     * no product or sum can overflow) */
    uint64_t rest = (uint64_t)n - GFS_DIDX_HEADER - 4;
    if (nfiles > GFS_DIDX_MAX_FILES || nfiles * GFS_DIDX_FILE > rest)
        return -EINVAL;
    rest -= nfiles * GFS_DIDX_FILE;
    if (nblocks > rest / GFS_DIDX_BLOCK)
        return -EINVAL;
    rest -= nblocks * GFS_DIDX_BLOCK;
    if (rest % GFS_DIDX_EXT || nexts != rest / GFS_DIDX_EXT)
        return -EINVAL;
    if (gfs_crc32c(0, buf, n - 4) != gfs_le32_get(buf + n - 4))
        return -EINVAL;
    if (gfs_le32_get(buf + 8) != GFS_DIDX_VERSION || gfs_le32_get(buf + 92) != 0)
        return -EINVAL;
    out->block_size = gfs_le32_get(buf + 12);
    memcpy(out->uuid, buf + 16, 16);
    memcpy(out->boot_id, buf + 32, 16);
    out->vol_size = gfs_le64_get(buf + 48);
    out->epoch = gfs_le64_get(buf + 56);
    out->next_seq = gfs_le64_get(buf + 64);
    out->next_id = gfs_le64_get(buf + 72);
    out->cur_id = gfs_le64_get(buf + 80);
    out->nfiles = (uint32_t)nfiles;
    out->nblocks = nblocks;
    out->nexts = nexts;
    if (out->block_size != block_size || memcmp(out->uuid, uuid, 16) != 0 ||
        out->vol_size != vol_size || memcmp(out->boot_id, boot_id, 16) != 0)
        return -ESTALE;
    if (out->next_seq == 0 || out->next_id == 0 || (nblocks == 0) != (nexts == 0) ||
        (nfiles == 0 && nblocks))
        return -EINVAL;
    int r = parse_body(buf, block_size, vol_size, out);
    if (r < 0)
        gfs_didx_free(out);
    return r;
}

uint8_t *gfs_didx_encode(const struct gfs_didx *x, size_t *len)
{
    size_t n = GFS_DIDX_HEADER + (size_t)x->nfiles * GFS_DIDX_FILE +
               (size_t)x->nblocks * GFS_DIDX_BLOCK + (size_t)x->nexts * GFS_DIDX_EXT + 4;
    uint8_t *buf = calloc(1, n);
    if (!buf)
        return NULL;
    memcpy(buf, MAGIC, sizeof MAGIC);
    gfs_le32_put(buf + 8, GFS_DIDX_VERSION);
    gfs_le32_put(buf + 12, x->block_size);
    memcpy(buf + 16, x->uuid, 16);
    memcpy(buf + 32, x->boot_id, 16);
    gfs_le64_put(buf + 48, x->vol_size);
    gfs_le64_put(buf + 56, x->epoch);
    gfs_le64_put(buf + 64, x->next_seq);
    gfs_le64_put(buf + 72, x->next_id);
    gfs_le64_put(buf + 80, x->cur_id);
    gfs_le32_put(buf + 88, x->nfiles);
    gfs_le64_put(buf + 96, x->nblocks);
    gfs_le64_put(buf + 104, x->nexts);
    uint8_t *p = buf + GFS_DIDX_HEADER;
    for (uint32_t i = 0; i < x->nfiles; i++, p += GFS_DIDX_FILE) {
        const struct gfs_jfile_id *f = &x->files[i];
        gfs_le64_put(p, f->id);
        gfs_le64_put(p + 8, f->size);
        gfs_le64_put(p + 16, f->used);
        gfs_le64_put(p + 24, f->dev);
        gfs_le64_put(p + 32, f->ino);
        gfs_le64_put(p + 40, (uint64_t)f->mtime_ns);
        gfs_le64_put(p + 48, (uint64_t)f->ctime_ns);
        gfs_le32_put(p + 56, f->tail_crc);
    }
    for (uint64_t b = 0; b < x->nblocks; b++, p += GFS_DIDX_BLOCK) {
        const struct gfs_didx_block *db = &x->blocks[b];
        gfs_le64_put(p, db->block);
        gfs_le64_put(p + 8, db->first_seq);
        gfs_le64_put(p + 16, (uint64_t)db->first_ms);
        gfs_le64_put(p + 24, (uint64_t)db->last_ms);
        gfs_le32_put(p + 32, db->n);
    }
    for (uint64_t e = 0; e < x->nexts; e++, p += GFS_DIDX_EXT) {
        const struct gfs_didx_ext *xe = &x->exts[e];
        gfs_le32_put(p, xe->start);
        gfs_le32_put(p + 4, xe->count);
        gfs_le32_put(p + 8, xe->flags);
        gfs_le32_put(p + 12, xe->file);
        gfs_le64_put(p + 16, xe->seq);
        gfs_le64_put(p + 24, xe->data_off);
    }
    gfs_le32_put(buf + n - 4, gfs_crc32c(0, buf, n - 4));
    *len = n;
    return buf;
}

int gfs_didx_write(const char *path, const struct gfs_didx *x)
{
    size_t n;
    uint8_t *buf = gfs_didx_encode(x, &n);
    if (!buf)
        return -ENOMEM;
    /* no fsync: after a power cut the boot id refuses it anyway */
    int r = gfs_file_put(path, buf, n, 0);
    free(buf);
    return r;
}

int gfs_didx_take(const char *path, uint32_t block_size, const uint8_t uuid[16],
                  uint64_t vol_size, const uint8_t boot_id[16], struct gfs_didx *out)
{
    memset(out, 0, sizeof *out);
    uint8_t *buf;
    size_t n;
    /* gone before the journal it describes changes: a crash from here on
     * (or a failed open) replays the journal (no fsync: same boot only) */
    int r = gfs_file_take(path, SIZE_MAX / 2, &buf, &n);
    if (r == -ENOENT)
        return r;
    if (r == 0)
        r = gfs_didx_parse(buf, n, block_size, uuid, vol_size, boot_id, out);
    free(buf);
    return r;
}
