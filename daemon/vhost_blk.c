/*
 * vhost_blk.c — virtio-blk requests against a GlideFS volume (vhost_blk.h).
 *
 * A request (virtio 1.x, 5.2.6): a 16-byte header (type, ioprio, sector)
 * in the readable buffers, then data (readable for OUT, DISCARD and
 * WRITE_ZEROES, writable for IN and GET_ID), then one writable status byte,
 * the chain's last. Data goes straight between guest memory and the volume,
 * one library call per buffer, when every buffer is a whole number of
 * sectors (what Linux sends); otherwise through a bounce buffer of at most
 * VU_BLK_BOUNCE_MAX.
 *
 * The config advertises 512-byte logical blocks (disk images keep their
 * meaning) with 4 KiB physical blocks and minimum I/O (the journal takes
 * 4 KiB writes without a read-modify-write), like NBD's block sizes.
 */
#include "vhost_blk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "vhost_msg.h"

#define SECTOR 512u

uint64_t vu_blk_features(const struct vu_blk *b)
{
    uint64_t f = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_RING_F_INDIRECT_DESC |
                 1ull << VIRTIO_RING_F_EVENT_IDX |
                 1ull << VU_F_PROTOCOL_FEATURES | 1ull << VIRTIO_BLK_F_SEG_MAX |
                 1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH |
                 1ull << VIRTIO_BLK_F_TOPOLOGY | 1ull << VIRTIO_BLK_F_MQ |
                 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
    if (b->ro)
        f |= 1ull << VIRTIO_BLK_F_RO;
    return f;
}

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

void vu_blk_config(const struct vu_blk *b, uint8_t out[256])
{
    memset(out, 0, 256);
    uint64_t cap = b->size / SECTOR;
    memcpy(out + 0, &cap, 8);                         /* capacity, 512-byte sectors */
    put32(out + 12, VU_BLK_SEG_MAX);                  /* seg_max */
    put32(out + 20, SECTOR);                          /* blk_size */
    out[24] = 3;                                      /* physical_block_exp: 4 KiB */
    put16(out + 26, 8);                               /* min_io_size, in blk_size units */
    put16(out + 34, b->num_queues);                   /* num_queues */
    put32(out + 36, VU_BLK_MAX_DISCARD_SECTORS);      /* max_discard_sectors */
    put32(out + 40, VU_BLK_MAX_DISCARD_SEG);          /* max_discard_seg */
    put32(out + 44, 8);                               /* discard_sector_alignment */
    put32(out + 48, VU_BLK_MAX_DISCARD_SECTORS);      /* max_write_zeroes_sectors */
    put32(out + 52, VU_BLK_MAX_DISCARD_SEG);          /* max_write_zeroes_seg */
    out[56] = 1;                                      /* write_zeroes_may_unmap */
}

/* The bytes of bufs[0..n) from `skip` on, at most `max` of them, as a list
 * of pieces in seg (capacity VU_CHAIN_MAX). Returns the bytes listed. */
static uint64_t slice(const struct vu_buf *bufs, unsigned n, uint64_t skip, uint64_t max,
                      struct vu_buf *seg, unsigned *nseg)
{
    uint64_t total = 0;
    *nseg = 0;
    for (unsigned i = 0; i < n && total < max; i++) {
        uint64_t len = bufs[i].len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        uint64_t k = len - skip;
        if (k > max - total)
            k = max - total;
        seg[(*nseg)++] = (struct vu_buf){ bufs[i].p + skip, (size_t)k };
        total += k;
        skip = 0;
    }
    return total;
}

static uint64_t bytes_of(const struct vu_buf *bufs, unsigned n)
{
    uint64_t t = 0;
    for (unsigned i = 0; i < n; i++)
        t += bufs[i].len;
    return t;
}

static void gather(const struct vu_buf *seg, unsigned n, uint8_t *dst)
{
    for (unsigned i = 0; i < n; i++) {
        memcpy(dst, seg[i].p, seg[i].len);
        dst += seg[i].len;
    }
}

static void scatter(const struct vu_buf *seg, unsigned n, const uint8_t *src)
{
    for (unsigned i = 0; i < n; i++) {
        memcpy(seg[i].p, src, seg[i].len);
        src += seg[i].len;
    }
}

/* [sector * 512, + len) inside the volume, without overflow. */
static bool in_range(const struct vu_blk *b, uint64_t sector, uint64_t len)
{
    if (sector > b->size / SECTOR)
        return false;
    return len <= b->size - sector * SECTOR;
}

/* IN or OUT over the data pieces. */
static int rw(const struct vu_blk *b, bool write, uint64_t off, const struct vu_buf *seg,
              unsigned n, uint64_t total)
{
    bool whole = true;
    for (unsigned i = 0; i < n; i++)
        if (seg[i].len % SECTOR)
            whole = false;
    if (whole) {
        for (unsigned i = 0; i < n; i++) {
            int rc = write ? glidefs_pwrite(b->vol, seg[i].p, seg[i].len, off, 0)
                           : glidefs_pread(b->vol, seg[i].p, seg[i].len, off);
            if (rc < 0)
                return rc;
            off += seg[i].len;
        }
        return 0;
    }
    if (total > VU_BLK_BOUNCE_MAX)
        return -EINVAL;
    uint8_t *bounce = malloc(total ? (size_t)total : 1);
    if (!bounce)
        return -ENOMEM;
    int rc;
    if (write) {
        gather(seg, n, bounce);
        rc = glidefs_pwrite(b->vol, bounce, (size_t)total, off, 0);
    } else {
        rc = glidefs_pread(b->vol, bounce, (size_t)total, off);
        if (rc == 0)
            scatter(seg, n, bounce);
    }
    free(bounce);
    return rc;
}

/* DISCARD and WRITE_ZEROES: their 16-byte ranges in the readable data. */
static uint8_t ranges(const struct vu_blk *b, uint32_t type, const struct vu_buf *seg,
                      unsigned n, uint64_t total)
{
    if (total == 0 || total % 16 || total / 16 > VU_BLK_MAX_DISCARD_SEG)
        return VIRTIO_BLK_S_IOERR;
    uint8_t raw[16 * VU_BLK_MAX_DISCARD_SEG];
    gather(seg, n, raw);
    if (b->ro)
        return VIRTIO_BLK_S_IOERR;
    for (uint64_t i = 0; i < total / 16; i++) {
        uint64_t sector;
        uint32_t num, flags;
        memcpy(&sector, raw + 16 * i, 8);
        memcpy(&num, raw + 16 * i + 8, 4);
        memcpy(&flags, raw + 16 * i + 12, 4);
        /* bit 0 is "unmap": only meaningful (and allowed) for WRITE_ZEROES */
        if (flags & ~(type == VIRTIO_BLK_T_WRITE_ZEROES ? 1u : 0u))
            return VIRTIO_BLK_S_UNSUPP;
        if (num > VU_BLK_MAX_DISCARD_SECTORS || !in_range(b, sector, (uint64_t)num * SECTOR))
            return VIRTIO_BLK_S_IOERR;
        if (num == 0)
            continue;
        int rc = type == VIRTIO_BLK_T_DISCARD
                     ? glidefs_trim(b->vol, sector * SECTOR, (uint64_t)num * SECTOR, 0)
                     : glidefs_write_zeroes(b->vol, sector * SECTOR, (uint64_t)num * SECTOR, 0);
        if (rc < 0) {
            gd_debug("vhost-user: %s at sector %llu (%u sectors): %s",
                     type == VIRTIO_BLK_T_DISCARD ? "DISCARD" : "WRITE_ZEROES",
                     (unsigned long long)sector, num, glidefs_strerror(rc));
            return VIRTIO_BLK_S_IOERR;
        }
    }
    return VIRTIO_BLK_S_OK;
}

int vu_blk_run(const struct vu_blk *b, struct vu_chain *c, uint32_t *used_len)
{
    if (c->nw == 0)
        return -EPROTO; /* no room for a status: the chain is broken */
    const struct vu_buf *rd = c->b, *wr = c->b + c->nr;
    struct vu_buf *last = &c->b[c->nr + c->nw - 1];
    uint8_t *status = last->p + last->len - 1;
    uint64_t rbytes = bytes_of(rd, c->nr);
    uint64_t wbytes = bytes_of(wr, c->nw) - 1; /* data before the status byte */
    *used_len = 1;

    struct vu_buf *piece = malloc(sizeof(struct vu_buf) * VU_CHAIN_MAX);
    if (!piece) {
        *status = VIRTIO_BLK_S_IOERR;
        return 0;
    }
    unsigned np = 0;
    uint8_t hdr[16];
    uint8_t st = VIRTIO_BLK_S_OK;
    if (slice(rd, c->nr, 0, 16, piece, &np) < 16) {
        st = VIRTIO_BLK_S_IOERR;
        goto out;
    }
    gather(piece, np, hdr);
    uint32_t type;
    uint64_t sector;
    memcpy(&type, hdr, 4);
    memcpy(&sector, hdr + 8, 8);

    switch (type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT: {
        bool write = type == VIRTIO_BLK_T_OUT;
        uint64_t total = write ? slice(rd, c->nr, 16, rbytes, piece, &np)
                               : slice(wr, c->nw, 0, wbytes, piece, &np);
        if (write && b->ro) {
            st = VIRTIO_BLK_S_IOERR;
            break;
        }
        if (total % SECTOR || total > VU_BLK_REQ_MAX || !in_range(b, sector, total)) {
            st = VIRTIO_BLK_S_IOERR;
            break;
        }
        int rc = rw(b, write, sector * SECTOR, piece, np, total);
        if (rc < 0) {
            gd_debug("vhost-user: %s at sector %llu (%llu bytes): %s", write ? "OUT" : "IN",
                     (unsigned long long)sector, (unsigned long long)total, glidefs_strerror(rc));
            st = VIRTIO_BLK_S_IOERR;
        } else if (!write) {
            *used_len += (uint32_t)total;
        }
        break;
    }
    case VIRTIO_BLK_T_FLUSH:
        if (glidefs_flush(b->vol) < 0)
            st = VIRTIO_BLK_S_IOERR;
        break;
    case VIRTIO_BLK_T_GET_ID: {
        uint64_t total = slice(wr, c->nw, 0, wbytes < 20 ? wbytes : 20, piece, &np);
        uint8_t id[20] = { 0 };
        memcpy(id, b->serial, strnlen(b->serial, sizeof id));
        scatter(piece, np, id);
        *used_len += (uint32_t)total;
        break;
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES: {
        uint64_t total = slice(rd, c->nr, 16, rbytes, piece, &np);
        st = ranges(b, type, piece, np, total);
        break;
    }
    default:
        st = VIRTIO_BLK_S_UNSUPP;
        break;
    }
out:
    free(piece);
    *status = st;
    return 0;
}
