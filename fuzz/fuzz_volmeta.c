/*
 * fuzz_volmeta.c — libFuzzer target for volume.json as read from the store
 * (lib/volmeta.c gfs_volmeta_parse). An accepted document must describe a
 * consistent volume (a clone has a lineage whose last name is its parent, a
 * root has neither, every name valid and not its own), must survive a
 * round trip through gfs_volmeta_text unchanged, and the purge's own reading
 * of the parent (gfs_clone_origin_parse) must agree with it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "snapobj.h"
#include "volume_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzzvol"

static void check(const struct gfs_volmeta *m)
{
    if (m->depth > GFS_MAX_DEPTH || m->format != 1 || m->size == 0 || m->size % 512 ||
        m->size > GLIDEFS_MAX_VOLUME_SIZE || m->block_size < 4096 ||
        (m->block_size & (m->block_size - 1)))
        abort();
    /* a clone has a parent snapshot, a root has no base */
    if (!m->depth != !m->parent_snapshot[0] || (m->base_manifest[0] && !m->depth))
        abort();
    for (uint32_t i = 0; i < m->depth; i++)
        if (!glidefs_name_valid(m->lineage[i]) || strcmp(m->lineage[i], NAME) == 0)
            abort();
    if (!m->depth && memcmp(m->uuid, m->data_uuid, 16) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gfs_volmeta *m = calloc(2, sizeof *m);
    if (!m)
        return 0;
    int r = gfs_volmeta_parse(&m[0], NAME, NULL, (const char *)data, size);
    char par[GLIDEFS_NAME_MAX + 1], snap[GLIDEFS_NAME_MAX + 8];
    int o = gfs_clone_origin_parse((const char *)data, size, par, sizeof par, snap, sizeof snap);
    if (o == 0 && par[0] && (!glidefs_name_valid(par) || !gfs_snap_name_ok(snap)))
        abort();
    if (r == 0) {
        check(&m[0]);
        /* what the purge reads as the parent is what the volume is cloned from */
        if (m[0].depth && (o < 0 || strcmp(par, m[0].lineage[m[0].depth - 1]) != 0 ||
                           strcmp(snap, m[0].parent_snapshot) != 0))
            abort();
        /* the round trip gives the same volume */
        char *txt = gfs_volmeta_text(&m[0], 0);
        if (txt) {
            if (gfs_volmeta_parse(&m[1], NAME, NULL, txt, strlen(txt)) != 0)
                abort();
            const struct gfs_volmeta *a = &m[0], *b = &m[1];
            if (a->depth != b->depth || a->size != b->size || a->block_size != b->block_size ||
                a->created_ms != b->created_ms || a->encrypted != b->encrypted ||
                memcmp(a->uuid, b->uuid, 16) || memcmp(a->data_uuid, b->data_uuid, 16) ||
                strcmp(a->compression, b->compression) ||
                strcmp(a->parent_snapshot, b->parent_snapshot) ||
                strcmp(a->base_manifest, b->base_manifest))
                abort();
            for (uint32_t i = 0; i < a->depth; i++)
                if (strcmp(a->lineage[i], b->lineage[i]) != 0)
                    abort();
            free(txt);
        }
    }
    free(m);
    return 0;
}
