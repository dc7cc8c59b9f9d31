/*
 * fuzz_segment.c — libFuzzer target for segment headers and payloads as read
 * from the store (lib/segment.c gfs_seg_decode_header_mac, the payload
 * checks, and the codec's decoder behind them). The first input byte picks
 * the reader: no codec, an unsealed codec, or a sealed one holding key
 * generations 1 and 2 (fixed keys, so seeds can carry valid MACs). An
 * accepted header must satisfy every rule of docs/design.md 5.5 and encode
 * back to the same bytes.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gfs_codec *make_codec(int sealed)
{
    struct gfs_datakey dk[2];
    for (unsigned g = 0; g < 2; g++) {
        dk[g].gen = g + 1;
        memset(dk[g].key, 0x41 + (int)g, sizeof dk[g].key);
    }
    struct gfs_codec_params p = {.block_size = 4096, .compress = 1};
    memset(p.volume_uuid, 0x11, 16);
    if (sealed) {
        p.keys = dk;
        p.nkeys = 2;
    }
    struct gfs_codec *c = NULL;
    if (gfs_codec_new(&p, &c) < 0)
        abort();
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 3;
    data++;
    size--;
    struct gfs_codec *c = mode ? make_codec(mode == 2) : NULL;
    struct gfs_seg_header h;
    size_t need = 0;
    int r = gfs_seg_decode_header_mac(data, size, size, &h, &need, c);
    if (r == -EAGAIN && need <= size)
        abort(); /* asked for bytes it already had */
    if (r == 0) {
        int sealed = gfs_codec_sealed(c);
        size_t hs = gfs_seg_header_size_mac(h.nblocks, sealed);
        if (h.nblocks > GFS_SEG_MAX_BLOCKS || (h.key_gen && !sealed) || hs > size)
            abort();
        uint8_t *out = malloc(hs);
        uint8_t *blk = malloc(h.block_size);
        if (!out || !blk)
            abort();
        for (uint32_t i = 0; i < h.nblocks; i++) {
            const struct gfs_seg_entry *e = &h.entries[i];
            if (i && e->block_index <= h.entries[i - 1].block_index)
                abort();
            if (e->flags & GFS_SEGF_HOLE)
                continue;
            uint64_t span = gfs_seg_span(e->length, e->flags);
            if (e->offset < hs || e->offset + span > size)
                abort();
            /* the payload as a ranged read returns it, through the codec */
            if (gfs_seg_payload_check(data + e->offset, span, e->length, e->flags, e->crc,
                                      NULL) == 0 && c) {
                struct gfs_sealkey k = {0};
                int have = sealed && gfs_codec_sealkey(c, h.key_gen, "nbd/v/seg/0000000000000001-"
                                                       "0000000000000001", &k) == 0;
                if (h.block_size == 4096 && (!sealed || have))
                    (void)gfs_codec_decode_k(c, have ? &k : NULL, e->block_index, e->write_seq,
                                             e->flags & GFS_SEGF_CODED, data + e->offset,
                                             e->length, blk);
                gfs_sealkey_wipe(&k);
            }
        }
        /* encode(decode(x)) == x over the header (the MAC is deterministic,
         * made under the newest generation: compare only what it covers) */
        int n = gfs_seg_encode_header_mac(&h, out, hs, c);
        if (n != (int)hs || memcmp(out, data, gfs_seg_header_size(h.nblocks)) != 0)
            abort();
        free(out);
        free(blk);
        gfs_seg_header_free(&h);
    }
    gfs_codec_free(c);
    return 0;
}
