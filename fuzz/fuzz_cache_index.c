/*
 * fuzz_cache_index.c — libFuzzer target for a parked cache's index as read
 * back from the cache dir (lib/cache_index.c gfs_cidx_parse, docs/design.md
 * 5.16): block size 131072 and the uuid 16 x 0x11 are the volume's. An
 * accepted index must re-encode to exactly the input (the format has one
 * encoding), and a parse for another uuid must refuse it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache_index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t uuid[16], other[16];
    memset(uuid, 0x11, sizeof uuid);
    memset(other, 0x22, sizeof other);
    struct gfs_cidx_entry *e = NULL;
    size_t n = 0;
    if (gfs_cidx_parse(data, size, 131072, uuid, &e, &n) == 0) {
        size_t len = 0;
        uint8_t *again = gfs_cidx_encode(131072, uuid, e, n, &len);
        if (!again || len != size || memcmp(again, data, size) != 0)
            abort();
        free(again);
        struct gfs_cidx_entry *e2 = NULL;
        size_t n2 = 0;
        if (gfs_cidx_parse(data, size, 131072, other, &e2, &n2) == 0)
            abort();
        free(e2);
    }
    free(e);
    return 0;
}
