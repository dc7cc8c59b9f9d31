/*
 * fuzz_profile.c — libFuzzer target for access profile objects as read from
 * the store (lib/profile.c gfs_profile_decode, docs/design.md 5.15). The
 * first input byte picks the reader: no codec, or a sealed one holding key
 * generations 1 and 2 (fixed keys, so seeds can carry valid MACs); the
 * volume's block size is 4096. An accepted profile must satisfy the rules
 * (count bounds, every block inside the volume, no block twice), and
 * encoding it again must give an object that decodes to the same list.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "profile.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int sealed = data[0] & 1;
    data++;
    size--;
    struct gfs_codec *c = sealed ? sealed_codec() : NULL;
    uint64_t *bl = NULL, vs = 0;
    uint32_t n = 0;
    const char *why = NULL;
    if (gfs_profile_decode(data, size, 4096, c, &bl, &n, &vs, &why) == 0) {
        uint64_t nblk = vs / 4096 + (vs % 4096 != 0);
        if (n > GFS_PROFILE_MAX || n > nblk || vs == 0 || vs % 512 || (n && !bl))
            abort();
        for (uint32_t i = 0; i < n; i++) {
            if (bl[i] >= nblk)
                abort();
            for (uint32_t k = 0; k < i && n <= 4096; k++)
                if (bl[k] == bl[i])
                    abort();
        }
        uint8_t *obj = NULL;
        size_t len = 0;
        if (gfs_profile_encode(bl, n, vs, 4096, c, &obj, &len) != 0)
            abort();
        uint64_t *bl2 = NULL, vs2 = 0;
        uint32_t n2 = 0;
        if (gfs_profile_decode(obj, len, 4096, c, &bl2, &n2, &vs2, NULL) != 0 || n2 != n ||
            vs2 != vs || (n && memcmp(bl, bl2, (size_t)n * sizeof *bl) != 0))
            abort();
        free(obj);
        free(bl2);
    } else if (!why && bl) {
        abort();
    }
    free(bl);
    gfs_codec_free(c);
    return 0;
}
