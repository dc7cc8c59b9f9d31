/*
 * manifest.c — encoding and validating manifest objects (see manifest.h for
 * the layout) and their keys.
 *
 * A manifest comes from the object store, so decoding treats it as hostile:
 * the fixed header is checked (CRC, counts against the limits and against
 * the volume's block count, stored length against the object's length)
 * before anything is allocated, the compressed body must be exactly one zstd
 * frame whose declared size is the size the counts imply, and the
 * decompressor's output buffer grows only as real output arrives (capped at
 * that size), so a tiny frame that claims gigabytes costs nothing. Only once
 * the whole body has been decoded and its CRC holds are the result arrays
 * allocated. On sealed volumes the trailing MAC over fixed header and stored
 * body is verified before the body is touched.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "bytes.h"
#include "cleanup.h"
#include "codec.h"
#include "crc32c.h"
#include "glidefs/glidefs.h"
#include "manifest.h"
#include "segment.h"

#define MAN_SEG_LEN 16u
#define MAN_ENTRY_LEN 32u
#define MAN_FLAGS_LEN 4u
#define MAN_KEYGEN_LEN 4u
#define MAN_ZSTD_LEVEL 3
#define SEGF_ALL (GFS_SEGF_HOLE | GFS_SEGF_ZSTD | GFS_SEGF_SEALED | GFS_SEGF_TRAILER)

/* zstd emits at most 128 KiB per block and every block costs at least 4
 * bytes (3 of header, 1 of content), so no valid frame expands more than
 * 32768-fold. A declared size beyond that is a lie. */
#define ZSTD_MAX_RATIO 32768u

static void zstd_dctx_freep(ZSTD_DCtx **d)
{
    ZSTD_freeDCtx(*d);
}

static int block_size_ok(uint32_t bs)
{
    return bs >= 4096u && bs <= (4u << 20) && (bs & (bs - 1)) == 0;
}

/* Decoded body size for these counts (fits in 64 bits within the limits). */
static uint64_t body_size(uint32_t nsegs, uint64_t nentries, int keygens)
{
    return (uint64_t)nsegs * (MAN_SEG_LEN + (keygens ? MAN_KEYGEN_LEN : 0u)) +
           nentries * (MAN_ENTRY_LEN + MAN_FLAGS_LEN) + 4u;
}

/* Does any segment name a key generation (then the body lists them)? */
static int has_keygens(const struct gfs_manifest *m)
{
    for (uint32_t i = 0; i < m->nsegs; i++)
        if (m->segs[i].key_gen)
            return 1;
    return 0;
}

/* Header fields alone: counts within the limits and within the volume. */
static int check_counts(uint64_t volume_size, uint32_t block_size, uint32_t nsegs,
                        uint64_t nentries)
{
    if (!block_size_ok(block_size) || volume_size % GLIDEFS_SECTOR_SIZE)
        return -EBADMSG;
    if (nsegs > GFS_MAN_MAX_SEGS || nentries > GFS_MAN_MAX_ENTRIES)
        return -EBADMSG;
    /* Entries have distinct block indexes below the volume's block count. */
    uint64_t vol_blocks = volume_size / block_size + (volume_size % block_size != 0);
    if (nentries > vol_blocks)
        return -EBADMSG;
    return 0;
}

/* A delta's link (manifest.h): it extends an earlier manifest of the same
 * epoch, its base is at or before that one, and depth counts the links. A
 * base has none. */
static int check_link(const struct gfs_manifest *m)
{
    if (m->depth == 0)
        return m->prev_epoch || m->prev_seq || m->base_seq ? -EBADMSG : 0;
    if (m->depth > GFS_MAN_MAX_CHAIN || m->prev_epoch != m->epoch || m->prev_seq >= m->seq ||
        m->base_seq > m->prev_seq || (m->depth == 1) != (m->prev_seq == m->base_seq))
        return -EBADMSG;
    return 0;
}

/* Every invariant of manifest.h, shared by encode and decode. */
static int check_manifest(const struct gfs_manifest *m)
{
    int r = check_counts(m->volume_size, m->block_size, m->nsegs, m->nentries);
    if (r < 0)
        return r;
    if (check_link(m) < 0)
        return -EBADMSG;
    if ((m->nsegs && !m->segs) || (m->nentries && !m->entries))
        return -EBADMSG;
    for (uint32_t i = 1; i < m->nsegs; i++) {
        const struct gfs_man_seg *a = &m->segs[i - 1], *b = &m->segs[i];
        if (b->epoch < a->epoch || (b->epoch == a->epoch && b->seq <= a->seq))
            return -EBADMSG;
    }
    uint64_t vol_blocks = m->volume_size / m->block_size + (m->volume_size % m->block_size != 0);
    for (uint64_t i = 0; i < m->nentries; i++) {
        const struct gfs_man_entry *e = &m->entries[i];
        if (i && e->block_index <= m->entries[i - 1].block_index)
            return -EBADMSG;
        if (e->block_index >= vol_blocks || (e->flags & ~SEGF_ALL))
            return -EBADMSG;
        if (e->seg == GFS_MAN_HOLE) {
            if (e->flags != GFS_SEGF_HOLE || e->offset || e->length || e->crc)
                return -EBADMSG;
            continue;
        }
        if (e->seg >= m->nsegs || (e->flags & GFS_SEGF_HOLE) || e->length == 0 ||
            e->length > GFS_SEG_MAX_STORED(m->block_size) ||
            e->offset < gfs_seg_header_size(1))
            return -EBADMSG;
        if (!(e->flags & GFS_SEGF_CODED) && e->length != m->block_size)
            return -EBADMSG;
    }
    return 0;
}

static void put_fixed(uint8_t *p, const struct gfs_manifest *m, uint32_t flags, uint32_t body_len)
{
    memcpy(p, GFS_MAN_MAGIC, 8);
    gfs_le32_put(p + 8, GFS_MAN_VERSION);
    gfs_le32_put(p + 12, flags);
    gfs_le64_put(p + 16, m->epoch);
    gfs_le64_put(p + 24, m->seq);
    gfs_le64_put(p + 32, m->volume_size);
    gfs_le32_put(p + 40, m->nsegs);
    gfs_le32_put(p + 44, m->block_size);
    gfs_le64_put(p + 48, m->nentries);
    gfs_le32_put(p + 56, body_len);
    gfs_le32_put(p + 60, gfs_crc32c(0, p, 60));
}

/* The link after the fixed header (deltas only). */
static size_t link_len(const struct gfs_manifest *m)
{
    return m->depth ? GFS_MAN_LINK_LEN : 0;
}

static void put_link(uint8_t *p, const struct gfs_manifest *m)
{
    if (!m->depth)
        return;
    uint8_t *q = p + GFS_MAN_FIXED_LEN;
    gfs_le64_put(q, m->prev_epoch);
    gfs_le64_put(q + 8, m->prev_seq);
    gfs_le64_put(q + 16, m->base_seq);
    gfs_le32_put(q + 24, m->depth);
    gfs_le32_put(q + 28, gfs_crc32c(0, q, 28));
}

static void put_body(uint8_t *b, const struct gfs_manifest *m, size_t len, int keygens)
{
    uint8_t *q = b;
    for (uint32_t i = 0; i < m->nsegs; i++, q += MAN_SEG_LEN) {
        gfs_le64_put(q, m->segs[i].epoch);
        gfs_le64_put(q + 8, m->segs[i].seq);
    }
    for (uint64_t i = 0; i < m->nentries; i++, q += MAN_ENTRY_LEN) {
        const struct gfs_man_entry *e = &m->entries[i];
        gfs_le64_put(q, e->block_index);
        gfs_le64_put(q + 8, e->write_seq);
        gfs_le32_put(q + 16, e->seg);
        gfs_le32_put(q + 20, e->offset);
        gfs_le32_put(q + 24, e->length);
        gfs_le32_put(q + 28, e->crc);
    }
    for (uint64_t i = 0; i < m->nentries; i++, q += MAN_FLAGS_LEN)
        gfs_le32_put(q, m->entries[i].flags);
    for (uint32_t i = 0; keygens && i < m->nsegs; i++, q += MAN_KEYGEN_LEN)
        gfs_le32_put(q, m->segs[i].key_gen);
    gfs_le32_put(q, gfs_crc32c(0, b, len - 4));
}

int gfs_manifest_encode(const struct gfs_manifest *m, int compress, void **out, size_t *outlen)
{
    return gfs_manifest_encode_mac(m, compress, NULL, out, outlen);
}

/* Append the MAC of the len bytes of buf (which has room for it). */
static int put_mac(const struct gfs_codec *codec, uint8_t *buf, size_t len)
{
    return gfs_codec_mac(codec, buf, len, buf + len);
}

int gfs_manifest_encode_mac(const struct gfs_manifest *m, int compress,
                            const struct gfs_codec *codec, void **out, size_t *outlen)
{
    if (!m || !out || !outlen)
        return -EINVAL;
    if (check_manifest(m) < 0)
        return -EINVAL;
    int has_mac = gfs_codec_sealed(codec);
    int kg = has_keygens(m);
    if (kg && !has_mac)
        return -EINVAL; /* key generations belong to sealed volumes */
    size_t maclen = has_mac ? GFS_MAN_MAC_LEN : 0;
    uint32_t mflag = (has_mac ? GFS_MANF_MAC : 0) | (kg ? GFS_MANF_KEYGEN : 0) |
                     (m->depth ? GFS_MANF_DELTA : 0);
    size_t hl = GFS_MAN_FIXED_LEN + link_len(m); /* header and link */
    uint64_t blen64 = body_size(m->nsegs, m->nentries, kg);
    if (blen64 > SIZE_MAX - hl - GFS_MAN_MAC_LEN)
        return -EINVAL;
    size_t blen = (size_t)blen64;

    if (!compress) {
        if (blen64 > UINT32_MAX)
            return -EINVAL; /* body_len is 32 bits: too big to store uncompressed */
        CLEANUP_FREE uint8_t *buf = malloc(hl + blen + maclen);
        if (!buf)
            return -ENOMEM;
        put_body(buf + hl, m, blen, kg);
        put_fixed(buf, m, mflag, (uint32_t)blen);
        put_link(buf, m);
        if (has_mac) {
            int r = put_mac(codec, buf, hl + blen);
            if (r < 0)
                return r;
        }
        *out = TAKE_PTR(buf);
        *outlen = hl + blen + maclen;
        return 0;
    }

    CLEANUP_FREE uint8_t *body = malloc(blen);
    if (!body)
        return -ENOMEM;
    put_body(body, m, blen, kg);
    size_t bound = ZSTD_compressBound(blen);
    if (ZSTD_isError(bound) || bound > SIZE_MAX - hl - GFS_MAN_MAC_LEN)
        return -EINVAL;
    CLEANUP_FREE uint8_t *buf = malloc(hl + bound + maclen);
    if (!buf)
        return -ENOMEM;
    /* ZSTD_compress records the content size in the frame header, which
     * decode insists on. */
    size_t clen = ZSTD_compress(buf + hl, bound, body, blen, MAN_ZSTD_LEVEL);
    if (ZSTD_isError(clen))
        return -ENOMEM;
    if (clen > UINT32_MAX)
        return -EINVAL;
    put_fixed(buf, m, GFS_MANF_ZSTD | mflag, (uint32_t)clen);
    put_link(buf, m);
    if (has_mac) {
        int r = put_mac(codec, buf, hl + clen);
        if (r < 0)
            return r;
    }
    uint8_t *shrunk = realloc(buf, hl + clen + maclen);
    if (shrunk)
        buf = shrunk;
    *out = TAKE_PTR(buf);
    *outlen = hl + clen + maclen;
    return 0;
}

/* Decompress exactly one frame of src into a buffer of exactly want bytes,
 * growing the buffer only as output is produced. */
static int inflate_body(const uint8_t *src, size_t srclen, uint64_t want, uint8_t **out)
{
    unsigned long long fcs = ZSTD_getFrameContentSize(src, srclen);
    if (fcs == ZSTD_CONTENTSIZE_ERROR || fcs == ZSTD_CONTENTSIZE_UNKNOWN || fcs != want)
        return -EBADMSG;
    if (want / ZSTD_MAX_RATIO > srclen)
        return -EBADMSG;
    if (ZSTD_findFrameCompressedSize(src, srclen) != srclen)
        return -EBADMSG; /* trailing bytes or a second frame */
    if (want > SIZE_MAX - 1)
        return -ENOMEM;

    __attribute__((cleanup(zstd_dctx_freep))) ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!dctx)
        return -ENOMEM;
    /* The frame's window must not make the decoder allocate more than the
     * body itself could need. */
    if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 27)))
        return -ENOMEM;

    /* One byte of slack past want: output reaching it means the frame lied. */
    size_t cap_max = (size_t)want + 1;
    size_t cap = cap_max < (1u << 20) ? cap_max : (1u << 20);
    CLEANUP_FREE uint8_t *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    ZSTD_inBuffer in = { src, srclen, 0 };
    ZSTD_outBuffer ob = { buf, cap, 0 };
    for (;;) {
        size_t in_was = in.pos, out_was = ob.pos;
        size_t r = ZSTD_decompressStream(dctx, &ob, &in);
        if (ZSTD_isError(r))
            return -EBADMSG;
        if (r != 0 && in.pos == in_was && ob.pos == out_was && ob.pos < ob.size)
            return -EBADMSG; /* no progress possible: truncated frame */
        if (ob.pos > want)
            return -EBADMSG;
        if (r == 0)
            break; /* frame complete */
        if (ob.pos == ob.size) {
            size_t ncap = cap > cap_max / 2 ? cap_max : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb)
                return -ENOMEM;
            buf = nb;
            cap = ncap;
            ob.dst = buf;
            ob.size = cap;
        } else if (in.pos == in.size) {
            return -EBADMSG; /* truncated frame */
        }
    }
    if (ob.pos != want || in.pos != in.size)
        return -EBADMSG;
    *out = TAKE_PTR(buf);
    return 0;
}

int gfs_manifest_decode(const void *buf, size_t len, struct gfs_manifest *m)
{
    return gfs_manifest_decode_mac(buf, len, NULL, m);
}

#define MANF_ALL (GFS_MANF_ZSTD | GFS_MANF_MAC | GFS_MANF_KEYGEN | GFS_MANF_DELTA)

/* The fixed header and, for a delta, the link: CRCs, version, flags and
 * the link's rules. Sets t's header fields, *flags, *body_len, *hl. */
static int parse_head(const uint8_t *p, size_t len, struct gfs_manifest *t, uint32_t *flags,
                      uint32_t *body_len, size_t *hl)
{
    if (len < GFS_MAN_FIXED_LEN)
        return -EAGAIN;
    if (memcmp(p, GFS_MAN_MAGIC, 8) != 0 || gfs_crc32c(0, p, 60) != gfs_le32_get(p + 60))
        return -EBADMSG;
    *flags = gfs_le32_get(p + 12);
    memset(t, 0, sizeof *t);
    t->epoch = gfs_le64_get(p + 16);
    t->seq = gfs_le64_get(p + 24);
    t->volume_size = gfs_le64_get(p + 32);
    t->nsegs = gfs_le32_get(p + 40);
    t->block_size = gfs_le32_get(p + 44);
    t->nentries = gfs_le64_get(p + 48);
    *body_len = gfs_le32_get(p + 56);
    if (gfs_le32_get(p + 8) != GFS_MAN_VERSION || (*flags & ~MANF_ALL))
        return -EBADMSG;
    *hl = GFS_MAN_FIXED_LEN;
    if (!(*flags & GFS_MANF_DELTA))
        return 0;
    if (len < GFS_MAN_FIXED_LEN + GFS_MAN_LINK_LEN)
        return -EAGAIN;
    const uint8_t *q = p + GFS_MAN_FIXED_LEN;
    if (gfs_crc32c(0, q, 28) != gfs_le32_get(q + 28))
        return -EBADMSG;
    t->prev_epoch = gfs_le64_get(q);
    t->prev_seq = gfs_le64_get(q + 8);
    t->base_seq = gfs_le64_get(q + 16);
    t->depth = gfs_le32_get(q + 24);
    if (t->depth == 0 || check_link(t) < 0)
        return -EBADMSG;
    *hl += GFS_MAN_LINK_LEN;
    return 0;
}

int gfs_manifest_peek(const void *buf, size_t len, struct gfs_manifest *m)
{
    if (!m || (!buf && len))
        return -EINVAL;
    uint32_t flags, body_len;
    size_t hl;
    int r = parse_head(buf, len, m, &flags, &body_len, &hl);
    if (r < 0) {
        memset(m, 0, sizeof *m);
        return r;
    }
    return m->depth > 0;
}

int gfs_manifest_decode_mac(const void *buf, size_t len, const struct gfs_codec *codec,
                            struct gfs_manifest *m)
{
    if (!m || (!buf && len))
        return -EINVAL;
    memset(m, 0, sizeof(*m));
    const uint8_t *p = buf;
    struct gfs_manifest t;
    uint32_t flags, body_len;
    size_t hl;
    if (parse_head(p, len, &t, &flags, &body_len, &hl) < 0)
        return -EBADMSG;
    int has_mac = (flags & GFS_MANF_MAC) != 0;
    int kg = (flags & GFS_MANF_KEYGEN) != 0;
    if (kg && !has_mac)
        return -EBADMSG;
    if (has_mac != gfs_codec_sealed(codec))
        return -EACCES; /* cannot check the MAC, or a MAC is required */
    if (check_counts(t.volume_size, t.block_size, t.nsegs, t.nentries) < 0)
        return -EBADMSG;
    size_t maclen = has_mac ? GFS_MAN_MAC_LEN : 0;
    if (len - hl < maclen || len - hl - maclen != body_len)
        return -EBADMSG;
    if (has_mac) {
        size_t mlen = hl + (size_t)body_len;
        int r = gfs_codec_mac_verify(codec, p, mlen, p + mlen);
        if (r < 0)
            return r; /* -EBADMSG: forged or damaged; -EIO/-ENOMEM: hash failed */
    }
    uint64_t want = body_size(t.nsegs, t.nentries, kg);

    const uint8_t *body;
    CLEANUP_FREE uint8_t *inflated = NULL;
    if (flags & GFS_MANF_ZSTD) {
        int r = inflate_body(p + hl, body_len, want, &inflated);
        if (r < 0)
            return r;
        body = inflated;
    } else {
        if (body_len != want)
            return -EBADMSG;
        body = p + hl;
    }
    size_t blen = (size_t)want;
    if (gfs_crc32c(0, body, blen - 4) != gfs_le32_get(body + blen - 4))
        return -EBADMSG;

    /* The body is real and intact: the counts are now backed by bytes. */
    CLEANUP_FREE struct gfs_man_seg *segs = NULL;
    CLEANUP_FREE struct gfs_man_entry *ents = NULL;
    if (t.nsegs && !(segs = calloc(t.nsegs, sizeof(*segs))))
        return -ENOMEM;
    if (t.nentries && !(ents = calloc((size_t)t.nentries, sizeof(*ents))))
        return -ENOMEM;
    const uint8_t *q = body;
    for (uint32_t i = 0; i < t.nsegs; i++, q += MAN_SEG_LEN) {
        segs[i].epoch = gfs_le64_get(q);
        segs[i].seq = gfs_le64_get(q + 8);
    }
    for (uint64_t i = 0; i < t.nentries; i++, q += MAN_ENTRY_LEN) {
        ents[i].block_index = gfs_le64_get(q);
        ents[i].write_seq = gfs_le64_get(q + 8);
        ents[i].seg = gfs_le32_get(q + 16);
        ents[i].offset = gfs_le32_get(q + 20);
        ents[i].length = gfs_le32_get(q + 24);
        ents[i].crc = gfs_le32_get(q + 28);
    }
    for (uint64_t i = 0; i < t.nentries; i++, q += MAN_FLAGS_LEN)
        ents[i].flags = gfs_le32_get(q);
    for (uint32_t i = 0; kg && i < t.nsegs; i++, q += MAN_KEYGEN_LEN)
        segs[i].key_gen = gfs_le32_get(q);
    t.segs = segs;
    t.entries = ents;
    if (check_manifest(&t) < 0)
        return -EBADMSG;
    t.segs = TAKE_PTR(segs);
    t.entries = TAKE_PTR(ents);
    *m = t;
    return 0;
}

void gfs_manifest_free(struct gfs_manifest *m)
{
    if (!m)
        return;
    free(m->segs);
    free(m->entries);
    memset(m, 0, sizeof(*m));
}

int gfs_manifest_key(char *buf, size_t buflen, const char *name, uint64_t epoch, uint64_t seq)
{
    if (!buf || !glidefs_name_valid(name))
        return -EINVAL;
    int n = snprintf(buf, buflen, "nbd/%s/manifest/%016" PRIx64 "-%016" PRIx64, name, epoch,
                     seq);
    if (n < 0 || (size_t)n >= buflen)
        return -ENAMETOOLONG;
    return 0;
}
