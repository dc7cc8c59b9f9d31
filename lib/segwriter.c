/*
 * segwriter.c — one segment object built, stored and entered into the
 * block map (segwriter.h).
 */
#include "segwriter.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "crc32c.h"
#include "objstore.h"
#include "volume_internal.h"

int gfs_segw_begin(struct gfs_segw *w, struct gfs_codec *codec, const char *vol, uint64_t epoch,
                   uint64_t seq, uint32_t max, size_t payload_max)
{
    memset(w, 0, sizeof *w);
    int r = gfs_seg_key(w->name, sizeof w->name, vol, epoch, seq);
    if (r < 0)
        return r;
    w->codec = codec;
    w->epoch = epoch;
    w->seq = seq;
    w->sealed = gfs_codec_sealed(codec);
    if (w->sealed) {
        /* the newest generation; registered, so that it is not retired
         * while this segment is being sealed (a rotation may just have
         * made a newer one: then take that) */
        uint32_t gen = gfs_codec_key_gen(codec);
        r = gfs_codec_writer_begin(codec, gen);
        if (r == -ENOKEY)
            r = gfs_codec_writer_begin(codec, gen = gfs_codec_key_gen(codec));
        if (r < 0)
            return r;
        w->writer_gen = gen;
        r = gfs_codec_sealkey(codec, gen, w->name, &w->key);
        if (r < 0)
            return r;
    }
    w->hlen = gfs_seg_header_size_mac(max, w->sealed);
    w->cap = w->hlen + payload_max;
    w->off = w->hlen;
    w->max = max;
    w->obj = malloc(w->cap);
    w->ents = calloc(max ? max : 1, sizeof *w->ents);
    if (!w->obj || !w->ents) {
        gfs_segw_free(w);
        return -ENOMEM;
    }
    return 0;
}

static struct gfs_seg_entry *next_entry(struct gfs_segw *w, uint64_t block, uint64_t write_seq)
{
    if (w->n == w->max)
        return NULL;
    struct gfs_seg_entry *e = &w->ents[w->n++];
    memset(e, 0, sizeof *e);
    e->block_index = block;
    e->write_seq = write_seq;
    return e;
}

int gfs_segw_add_block(struct gfs_segw *w, uint32_t bs, uint64_t block, uint64_t write_seq,
                       const void *data, struct gfs_seg_entry *out)
{
    if (w->cap - w->off < gfs_codec_max_stored(w->codec) + GFS_SEG_TRAILER_LEN)
        return -ENOSPC;
    struct gfs_seg_entry *e = next_entry(w, block, write_seq);
    if (!e)
        return -ENOSPC;
    uint32_t len = 0, flags = 0;
    int r = gfs_codec_encode_k(w->codec, w->sealed ? &w->key : NULL, block, write_seq, data,
                               w->obj + w->off, &len, &flags);
    if (r < 0)
        return r;
    e->offset = (uint32_t)w->off;
    e->length = len;
    e->raw_length = bs;
    e->flags = flags | GFS_SEGF_TRAILER;
    e->crc = gfs_crc32c(0, w->obj + w->off, len);
    gfs_seg_put_trailer(w->obj + w->off, len, e->crc);
    w->off += gfs_seg_span(len, e->flags);
    if (out)
        *out = *e;
    return 0;
}

int gfs_segw_add_stored(struct gfs_segw *w, const struct gfs_sealkey *from, uint64_t block,
                        uint64_t write_seq, const void *payload, uint32_t length, uint32_t flags,
                        uint32_t crc, uint32_t raw_length, struct gfs_seg_entry *out)
{
    if (w->cap - w->off < gfs_seg_span(length, GFS_SEGF_TRAILER) || w->n == w->max)
        return -ENOSPC;
    if (w->sealed != ((flags & GFS_SEGF_SEALED) != 0) || (w->sealed && !from))
        return -EINVAL;
    uint8_t *dst = w->obj + w->off;
    if (w->sealed) {
        /* the new segment's own key: open and seal again, fresh nonce */
        int r = gfs_codec_reseal(w->codec, from, &w->key, block, write_seq,
                                 flags & GFS_SEGF_CODED, payload, length, dst);
        if (r < 0)
            return r;
        crc = gfs_crc32c(0, dst, length);
    } else {
        memcpy(dst, payload, length);
    }
    struct gfs_seg_entry *e = next_entry(w, block, write_seq);
    e->offset = (uint32_t)w->off;
    e->length = length;
    e->raw_length = raw_length;
    e->crc = crc;
    e->flags = flags | GFS_SEGF_TRAILER; /* a copy gains one if it had none */
    gfs_seg_put_trailer(dst, length, crc);
    w->off += gfs_seg_span(length, e->flags);
    if (out)
        *out = *e;
    return 0;
}

void gfs_segw_add_hole(struct gfs_segw *w, uint64_t block, uint64_t write_seq,
                       struct gfs_seg_entry *out)
{
    struct gfs_seg_entry *e = next_entry(w, block, write_seq);
    if (!e)
        return;
    e->flags = GFS_SEGF_HOLE;
    if (out)
        *out = *e;
}

int gfs_segw_finish(struct gfs_segw *w, uint32_t bs, const uint8_t volume_uuid[16])
{
    /* the payloads start where a header of max entries ends; a copy refused
     * by its seal (gfs_segw_add_stored) leaves its 40 bytes unused there */
    if (w->n > w->max)
        return -EINVAL;
    struct gfs_seg_header h = {
        .epoch = w->epoch,
        .seq = w->seq,
        .nblocks = w->n,
        .block_size = bs,
        .header_len = (uint32_t)(w->hlen - 4),
        .entries = w->ents,
        .key_gen = w->sealed ? w->key.gen : 0,
    };
    memcpy(h.volume_uuid, volume_uuid, 16);
    int r = gfs_seg_encode_header_mac(&h, w->obj, w->hlen, w->codec);
    return r < 0 ? r : 0;
}

int gfs_segw_put(const struct gfs_segw *w, struct gfs_objstore *st)
{
    return st->ops->put(st, w->name, w->obj, w->off, 0, NULL);
}

void gfs_segw_free(struct gfs_segw *w)
{
    free(w->obj);
    free(w->ents);
    w->obj = NULL;
    w->ents = NULL;
    gfs_sealkey_wipe(&w->key);
    if (w->writer_gen) {
        gfs_codec_writer_end(w->codec, w->writer_gen);
        w->writer_gen = 0;
    }
}

int64_t gfs_segw_commit(struct glidefs_volume *v, const struct gfs_segw *w)
{
    int64_t si = gfs_bm_seg_add(&v->sv.bm, gfs_ep(v->meta.depth, w->epoch), w->seq, w->off);
    if (si < 0)
        return si;
    v->sv.bm.segs[si].key_gen = w->sealed ? w->key.gen : 0;
    v->sv.last_seg_epoch = w->epoch;
    v->sv.last_seg_seq = w->seq;
    v->sv.segs_since_manifest++;
    return si;
}
