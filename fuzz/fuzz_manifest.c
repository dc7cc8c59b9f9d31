/*
 * fuzz_manifest.c — libFuzzer target for manifest objects as read from the
 * store (lib/manifest.c gfs_manifest_decode_mac). The first input byte picks
 * the reader: no codec, or a sealed one holding key generations 1 and 2
 * (fixed keys, so seeds can carry valid MACs). An accepted manifest must
 * satisfy the rules of docs/design.md 5.7 (a delta's link included), and
 * encoding it again must give a manifest that decodes to the same thing,
 * whose link gfs_manifest_peek reads back from its first bytes alone.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "manifest.h"
#include "segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gfs_codec *sealed_codec(void)
{
    struct gfs_datakey dk[2];
    for (unsigned g = 0; g < 2; g++) {
        dk[g].gen = g + 1;
        memset(dk[g].key, 0x41 + (int)g, sizeof dk[g].key);
    }
    struct gfs_codec_params p = {.block_size = 4096, .keys = dk, .nkeys = 2};
    struct gfs_codec *c = NULL;
    if (gfs_codec_new(&p, &c) < 0)
        abort();
    return c;
}

static int same(const struct gfs_manifest *a, const struct gfs_manifest *b)
{
    if (a->epoch != b->epoch || a->seq != b->seq || a->volume_size != b->volume_size ||
        a->block_size != b->block_size || a->nsegs != b->nsegs || a->nentries != b->nentries ||
        a->depth != b->depth || a->prev_epoch != b->prev_epoch || a->prev_seq != b->prev_seq ||
        a->base_seq != b->base_seq)
        return 0;
    for (uint32_t i = 0; i < a->nsegs; i++)
        if (a->segs[i].epoch != b->segs[i].epoch || a->segs[i].seq != b->segs[i].seq ||
            a->segs[i].key_gen != b->segs[i].key_gen)
            return 0;
    return a->nentries == 0 ||
           memcmp(a->entries, b->entries, (size_t)a->nentries * sizeof *a->entries) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int sealed = data[0] & 1;
    data++;
    size--;
    struct gfs_codec *c = sealed ? sealed_codec() : NULL;
    struct gfs_manifest m;
    if (gfs_manifest_decode_mac(data, size, c, &m) == 0) {
        uint64_t vb = m.volume_size / m.block_size + (m.volume_size % m.block_size != 0);
        int kg = 0;
        for (uint32_t i = 0; i < m.nsegs; i++)
            kg |= m.segs[i].key_gen != 0;
        if (m.nentries > vb || (kg && !sealed))
            abort();
        /* a delta extends an earlier manifest of its epoch, within a bounded chain */
        if (m.depth ? (m.depth > GFS_MAN_MAX_CHAIN || m.prev_epoch != m.epoch ||
                       m.prev_seq >= m.seq || m.base_seq > m.prev_seq ||
                       (m.depth == 1) != (m.base_seq == m.prev_seq))
                    : (m.prev_epoch || m.prev_seq || m.base_seq))
            abort();
        for (uint64_t i = 0; i < m.nentries; i++) {
            const struct gfs_man_entry *e = &m.entries[i];
            if (e->block_index >= vb || (i && e->block_index <= m.entries[i - 1].block_index))
                abort();
            if (e->seg == GFS_MAN_HOLE ? (e->flags != GFS_SEGF_HOLE || e->length)
                                       : (e->seg >= m.nsegs || e->length == 0 ||
                                          e->offset < gfs_seg_header_size(1)))
                abort();
        }
        void *enc = NULL;
        size_t enclen = 0;
        struct gfs_manifest back;
        struct gfs_manifest pk;
        if (gfs_manifest_encode_mac(&m, 0, c, &enc, &enclen) != 0 ||
            gfs_manifest_decode_mac(enc, enclen, c, &back) != 0 || !same(&m, &back) ||
            gfs_manifest_peek(enc, enclen, &pk) != (m.depth > 0) || pk.depth != m.depth ||
            pk.prev_seq != m.prev_seq || pk.base_seq != m.base_seq)
            abort();
        gfs_manifest_free(&back);
        free(enc);
        gfs_manifest_free(&m);
    }
    gfs_codec_free(c);
    return 0;
}
