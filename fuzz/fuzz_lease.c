/*
 * fuzz_lease.c — libFuzzer target for the lease object as read from the
 * store (lib/lease.c gfs_lease_decode). An accepted lease names a printable
 * node, an epoch that leaves room for a clone's origin bits, and at most one
 * fence per earlier epoch; gfs_lease_fenced must then agree with the table.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gfs_lease *l = calloc(1, sizeof *l);
    if (!l)
        return 0;
    if (gfs_lease_decode((const char *)data, size, l) == 0) {
        size_t n = strlen(l->node_id);
        if (n == 0 || n > 128 || l->epoch == 0 || l->epoch >= (UINT64_C(1) << 56) ||
            l->heartbeat_ms < 0 || l->nfences > GFS_LEASE_MAX_FENCES)
            abort();
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)l->node_id[i] < 0x20 || l->node_id[i] == 0x7f)
                abort();
        for (uint32_t i = 0; i < l->nfences; i++) {
            const struct gfs_fence *f = &l->fences[i];
            if (f->epoch == 0 || f->epoch >= l->epoch)
                abort();
            for (uint32_t k = 0; k < i; k++)
                if (l->fences[k].epoch == f->epoch)
                    abort();
            if (gfs_lease_fenced(l, f->epoch, f->last_seq) ||
                (f->last_seq < UINT64_MAX && !gfs_lease_fenced(l, f->epoch, f->last_seq + 1)))
                abort();
        }
        /* the current epoch is never fenced */
        if (gfs_lease_fenced(l, l->epoch, UINT64_MAX))
            abort();
    }
    free(l);
    return 0;
}
