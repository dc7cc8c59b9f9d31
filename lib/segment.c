/*
 * segment.c — encoding and validating segment headers (see segment.h for the
 * layout), segment keys, and the "<epoch>-<seq>" key tails shared with
 * manifests.
 *
 * A segment header comes from the object store, so it is hostile input:
 * nothing in it is used before every count, length and offset has been
 * checked, and the same checks guard encoding so a bad header is never
 * written in the first place. On sealed volumes the header MAC is checked
 * right after the CRC, before any entry is parsed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "cleanup.h"
#include "codec.h"
#include "crc32c.h"
#include "glidefs/glidefs.h"
#include "segment.h"

#define SEG_MIN_BLOCK_SIZE 4096u
#define SEG_MAX_BLOCK_SIZE (4u << 20)
#define SEGF_ALL (GFS_SEGF_HOLE | GFS_SEGF_ZSTD | GFS_SEGF_SEALED | GFS_SEGF_TRAILER)

static int block_size_ok(uint32_t bs)
{
    return bs >= SEG_MIN_BLOCK_SIZE && bs <= SEG_MAX_BLOCK_SIZE && (bs & (bs - 1)) == 0;
}

struct extent {
    uint64_t off, end;
};

static int extent_cmp(const void *a, const void *b)
{
    const struct extent *x = a, *y = b;
    return (x->off > y->off) - (x->off < y->off);
}

/* The invariants of segment.h on a list of entries, shared by encode and
 * decode. hdr_size is gfs_seg_header_size(n); object_size 0 = unknown. */
static int check_entries(const struct gfs_seg_entry *e, uint32_t n, uint32_t block_size,
                         size_t hdr_size, uint64_t object_size)
{
    CLEANUP_FREE struct extent *ext = NULL;
    size_t next = 0;

    if (n) {
        ext = malloc((size_t)n * sizeof(*ext));
        if (!ext)
            return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct gfs_seg_entry *x = &e[i];
        if (i && x->block_index <= e[i - 1].block_index)
            return -EBADMSG; /* unsorted or duplicate */
        if (x->flags & ~SEGF_ALL)
            return -EBADMSG;
        if (x->flags & GFS_SEGF_HOLE) {
            /* A hole is only a marker: nothing stored, nothing else set. */
            if (x->flags != GFS_SEGF_HOLE || x->offset || x->length || x->raw_length || x->crc)
                return -EBADMSG;
            continue;
        }
        if (x->length == 0 || x->raw_length != block_size)
            return -EBADMSG;
        if (!(x->flags & GFS_SEGF_CODED) && x->length != x->raw_length)
            return -EBADMSG; /* plain payload is the block itself */
        if (x->length > GFS_SEG_MAX_STORED(block_size))
            return -EBADMSG;
        uint64_t end = (uint64_t)x->offset + gfs_seg_span(x->length, x->flags);
        if (x->offset < hdr_size)
            return -EBADMSG;
        if (object_size && end > object_size)
            return -EBADMSG;
        ext[next].off = x->offset;
        ext[next].end = end;
        next++;
    }
    if (next > 1) {
        qsort(ext, next, sizeof(*ext), extent_cmp);
        for (size_t i = 1; i < next; i++)
            if (ext[i].off < ext[i - 1].end)
                return -EBADMSG; /* overlapping payloads */
    }
    return 0;
}

int gfs_seg_payload_check(const void *p, size_t got, uint32_t length, uint32_t flags,
                          uint32_t crc, uint32_t *crc_out)
{
    if (!p || got != gfs_seg_span(length, flags))
        return -EBADMSG;
    uint32_t c = gfs_crc32c(0, p, length);
    if (flags & GFS_SEGF_TRAILER)
        crc = gfs_le32_get((const uint8_t *)p + length);
    if (c != crc)
        return -EBADMSG;
    if (crc_out)
        *crc_out = c;
    return 0;
}

void gfs_seg_put_trailer(void *p, uint32_t length, uint32_t crc)
{
    gfs_le32_put((uint8_t *)p + length, crc);
}

int gfs_seg_encode_header(const struct gfs_seg_header *h, void *out, size_t outlen)
{
    return gfs_seg_encode_header_mac(h, out, outlen, NULL);
}

int gfs_seg_encode_header_mac(const struct gfs_seg_header *h, void *out, size_t outlen,
                              const struct gfs_codec *codec)
{
    if (!h || !out || h->nblocks > GFS_SEG_MAX_BLOCKS || !block_size_ok(h->block_size) ||
        (h->nblocks && !h->entries))
        return -EINVAL;
    int has_mac = gfs_codec_sealed(codec);
    size_t total = gfs_seg_header_size_mac(h->nblocks, has_mac);
    if (outlen < total || (h->key_gen && !has_mac))
        return -EINVAL;
    int r = check_entries(h->entries, h->nblocks, h->block_size, total, 0);
    if (r < 0)
        return r == -ENOMEM ? r : -EINVAL;

    uint8_t *p = out;
    uint32_t header_len = (uint32_t)(gfs_seg_header_size(h->nblocks) - 4);
    memcpy(p, GFS_SEG_MAGIC, 8);
    gfs_le32_put(p + 8, GFS_SEG_VERSION);
    gfs_le32_put(p + 12, has_mac ? GFS_SEG_HDR_MAC : 0);
    gfs_le64_put(p + 16, h->epoch);
    gfs_le64_put(p + 24, h->seq);
    gfs_le32_put(p + 32, h->nblocks);
    gfs_le32_put(p + 36, h->block_size);
    gfs_le32_put(p + 40, header_len);
    gfs_le32_put(p + 44, h->key_gen);
    memcpy(p + 48, h->volume_uuid, 16);
    for (uint32_t i = 0; i < h->nblocks; i++) {
        const struct gfs_seg_entry *x = &h->entries[i];
        uint8_t *q = p + GFS_SEG_FIXED_LEN + (size_t)GFS_SEG_ENTRY_LEN * i;
        gfs_le64_put(q, x->block_index);
        gfs_le64_put(q + 8, x->write_seq);
        gfs_le32_put(q + 16, x->offset);
        gfs_le32_put(q + 20, x->length);
        gfs_le32_put(q + 24, x->raw_length);
        gfs_le32_put(q + 28, x->crc);
        gfs_le32_put(q + 32, x->flags);
        gfs_le32_put(q + 36, 0);
    }
    gfs_le32_put(p + header_len, gfs_crc32c(0, p, header_len));
    if (has_mac) {
        r = gfs_codec_mac(codec, p, header_len, p + header_len + 4);
        if (r < 0)
            return r;
    }
    return (int)total;
}

int gfs_seg_decode_header(const void *buf, size_t len, uint64_t object_size,
                          struct gfs_seg_header *h, size_t *need)
{
    return gfs_seg_decode_header_mac(buf, len, object_size, h, need, NULL);
}

int gfs_seg_decode_header_mac(const void *buf, size_t len, uint64_t object_size,
                              struct gfs_seg_header *h, size_t *need,
                              const struct gfs_codec *codec)
{
    if (!h || (!buf && len))
        return -EINVAL;
    memset(h, 0, sizeof(*h));
    const uint8_t *p = buf;

    /* Refuse foreign objects as early as the bytes allow. */
    if (len && memcmp(p, GFS_SEG_MAGIC, len < 8 ? len : 8) != 0)
        return -EBADMSG;
    if (len < GFS_SEG_FIXED_LEN) {
        if (need)
            *need = GFS_SEG_FIXED_LEN;
        return -EAGAIN;
    }

    uint32_t hflags = gfs_le32_get(p + 12);
    uint32_t nblocks = gfs_le32_get(p + 32);
    uint32_t block_size = gfs_le32_get(p + 36);
    uint32_t header_len = gfs_le32_get(p + 40);
    uint32_t key_gen = gfs_le32_get(p + 44);
    if (gfs_le32_get(p + 8) != GFS_SEG_VERSION || (hflags & ~GFS_SEG_HDR_MAC) ||
        nblocks > GFS_SEG_MAX_BLOCKS || !block_size_ok(block_size))
        return -EBADMSG;
    int has_mac = (hflags & GFS_SEG_HDR_MAC) != 0;
    if (key_gen && !has_mac)
        return -EBADMSG; /* a key generation on an unsealed segment */
    if (has_mac != gfs_codec_sealed(codec))
        return -EACCES; /* cannot check the MAC, or a MAC is required */
    if (header_len != gfs_seg_header_size(nblocks) - 4)
        return -EBADMSG;
    size_t total = gfs_seg_header_size_mac(nblocks, has_mac);
    if (object_size && object_size < total)
        return -EBADMSG;
    if (len < total) {
        if (need)
            *need = total;
        return -EAGAIN;
    }
    if (gfs_crc32c(0, p, header_len) != gfs_le32_get(p + header_len))
        return -EBADMSG;
    if (has_mac && !gfs_codec_has_gen(codec, key_gen))
        return -ENOKEY; /* a generation this reader does not hold (yet, or any more) */
    if (has_mac) {
        int r = gfs_codec_mac_verify(codec, p, header_len, p + header_len + 4);
        if (r < 0)
            return r; /* -EBADMSG: forged or damaged; -EIO/-ENOMEM: hash failed */
    }

    CLEANUP_FREE struct gfs_seg_entry *e = NULL;
    if (nblocks) {
        e = calloc(nblocks, sizeof(*e));
        if (!e)
            return -ENOMEM;
    }
    for (uint32_t i = 0; i < nblocks; i++) {
        const uint8_t *q = p + GFS_SEG_FIXED_LEN + (size_t)GFS_SEG_ENTRY_LEN * i;
        if (gfs_le32_get(q + 36) != 0)
            return -EBADMSG;
        e[i].block_index = gfs_le64_get(q);
        e[i].write_seq = gfs_le64_get(q + 8);
        e[i].offset = gfs_le32_get(q + 16);
        e[i].length = gfs_le32_get(q + 20);
        e[i].raw_length = gfs_le32_get(q + 24);
        e[i].crc = gfs_le32_get(q + 28);
        e[i].flags = gfs_le32_get(q + 32);
    }
    int r = check_entries(e, nblocks, block_size, total, object_size);
    if (r < 0)
        return r;

    h->epoch = gfs_le64_get(p + 16);
    h->seq = gfs_le64_get(p + 24);
    h->nblocks = nblocks;
    h->block_size = block_size;
    h->header_len = header_len;
    h->flags = hflags;
    h->key_gen = key_gen;
    memcpy(h->volume_uuid, p + 48, 16);
    h->entries = TAKE_PTR(e);
    return 0;
}

void gfs_seg_header_free(struct gfs_seg_header *h)
{
    if (!h)
        return;
    free(h->entries);
    h->entries = NULL;
    h->nblocks = 0;
}

int gfs_seg_key(char *buf, size_t buflen, const char *name, uint64_t epoch, uint64_t seq)
{
    if (!buf || !glidefs_name_valid(name))
        return -EINVAL;
    int n = snprintf(buf, buflen, "nbd/%s/seg/%016" PRIx64 "-%016" PRIx64, name, epoch, seq);
    if (n < 0 || (size_t)n >= buflen)
        return -ENAMETOOLONG;
    return 0;
}

static int hex16(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return -EINVAL; /* also stops at an early NUL */
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

int gfs_parse_epoch_seq(const char *tail, uint64_t *epoch, uint64_t *seq)
{
    uint64_t e, s;
    if (!tail || hex16(tail, &e) < 0 || tail[16] != '-' || hex16(tail + 17, &s) < 0 ||
        tail[33] != '\0')
        return -EINVAL;
    if (epoch)
        *epoch = e;
    if (seq)
        *seq = s;
    return 0;
}
