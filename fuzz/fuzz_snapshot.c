/*
 * fuzz_snapshot.c — libFuzzer target for the snapshot objects as read from
 * the store (lib/snapshot.c): nbd/<vol>/snap/<name> (gfs_snap_parse) and the
 * clone markers nbd/<vol>/children/<child> (gfs_child_marker_parse). The
 * first input byte picks the snapshot name the object is read under; an
 * accepted snapshot has a size a volume can have and names a manifest key
 * or none, and a marker names a snapshot that is safe in a key.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "segment.h"
#include "snapobj.h"
#include "volume_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static const char *const names[] = {"s1", "@clone-child", "@fenced-7", "other"};
    const char *name = names[data[0] % 4];
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    struct gfs_snapinfo si;
    if (gfs_snap_parse(buf, len, name, &si) == 0) {
        uint64_t e, s;
        if (si.size == 0 || si.size % 512 || si.size > GLIDEFS_MAX_VOLUME_SIZE ||
            si.created_ms < 0 || (si.manifest[0] && gfs_parse_epoch_seq(si.manifest, &e, &s) < 0))
            abort();
    }
    char snap[GLIDEFS_NAME_MAX + 8];
    if (gfs_child_marker_parse(buf, len, snap, sizeof snap) == 0) {
        if (!gfs_snap_name_ok(snap) || strchr(snap, '/'))
            abort();
    } else if (snap[0]) {
        abort(); /* refused: nothing half-filled */
    }
    return 0;
}
