/*
 * fuzz_dirty_index.c — libFuzzer target for a closed volume's dirty index
 * as read back from the cache dir (lib/dirty_index.c gfs_didx_parse,
 * docs/design.md 6.7): block size 131072, the uuid 16 x 0x11, a volume of
 * 64 blocks and the boot id 16 x 0x33 are the reader's. An accepted index
 * must re-encode to exactly the input (the format has one encoding), hold
 * only extents inside the volume, its blocks and the journal files it
 * names, and be refused in another boot.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dirty.h"
#include "dirty_index.h"

#define BS 131072u
#define VOL ((uint64_t)64 * BS)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t uuid[16], boot[16], other[16];
    memset(uuid, 0x11, sizeof uuid);
    memset(boot, 0x33, sizeof boot);
    memset(other, 0x44, sizeof other);
    struct gfs_didx x;
    if (gfs_didx_parse(data, size, BS, uuid, VOL, boot, &x) != 0)
        return 0;
    size_t len = 0;
    uint8_t *again = gfs_didx_encode(&x, &len);
    if (!again || len != size || memcmp(again, data, size) != 0)
        abort();
    free(again);
    for (uint64_t b = 0; b < x.nblocks; b++) {
        const struct gfs_didx_block *db = &x.blocks[b];
        if (db->block >= VOL / BS || db->ext0 + db->n > x.nexts)
            abort();
        for (uint32_t k = 0; k < db->n; k++) {
            const struct gfs_didx_ext *e = &x.exts[db->ext0 + k];
            if (e->file >= x.nfiles || (uint64_t)e->start + e->count > BS / 512)
                abort();
            if (!(e->flags & GFS_EXT_ZERO) &&
                e->data_off + (uint64_t)e->count * 512 > x.files[e->file].used)
                abort();
        }
    }
    gfs_didx_free(&x);
    struct gfs_didx y;
    if (gfs_didx_parse(data, size, BS, uuid, VOL, other, &y) == 0)
        abort();
    return 0;
}
