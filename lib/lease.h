/*
 * lease.h — who may write a volume (docs/design.md promise 2.5; the object
 * and its protocol: sections 5.8 and 5.11). The object
 * nbd/<name>/lease holds the writer's node id, its epoch, a heartbeat time,
 * whether it is held or released, and the fences: for each earlier epoch the
 * last segment seq that counts. Taking the lease over bumps the epoch and
 * fences the previous one at the last segment the new writer has seen, so a
 * late segment from a deposed writer is ignored by every reader. All changes
 * are conditional writes (If-None-Match on create, If-Match on the ETag read
 * before), so two nodes can never both believe they won.
 *
 * Guarantee without conditional writes (a store that ignores If-Match): two
 * nodes promoting at the same instant could both take epoch E+1; fences still
 * keep deposed epochs out, but the two E+1 writers are not told apart. AWS S3,
 * MinIO and the file:// store honour the conditions.
 */
#ifndef GLIDEFS_LEASE_H
#define GLIDEFS_LEASE_H

#include <stdint.h>

#include "objstore.h"

#define GFS_LEASE_MAX_FENCES 1024

struct gfs_fence {
    uint64_t epoch;
    uint64_t last_seq; /* segments of this epoch with a larger seq are ignored */
};

struct gfs_lease {
    char node_id[129];
    uint64_t epoch;
    int64_t heartbeat_ms;   /* wall clock of the holder's last heartbeat */
    int released;
    struct gfs_fence fences[GFS_LEASE_MAX_FENCES];
    uint32_t nfences;
    char etag[72];          /* of the object as read */
    int exists;
};

/* Read the lease. A missing lease gives 0 with l->exists = 0. -EIO for a
 * corrupt object (never trusted). */
int gfs_lease_read(struct gfs_objstore *st, const char *name, struct gfs_lease *l);

/* Decode and validate a lease object (fields and their consistency: fences
 * only of earlier epochs, each epoch once). -EIO when malformed. */
int gfs_lease_decode(const char *buf, size_t len, struct gfs_lease *l);

/* Write l conditionally: if l->exists, If-Match l->etag (-ECANCELED when it
 * changed), else If-None-Match (-EEXIST when someone created one). On success
 * l->etag is refreshed (by reading back) and l->exists set. */
int gfs_lease_write(struct gfs_objstore *st, const char *name, struct gfs_lease *l);

/* Is a segment (epoch, seq) fenced off? */
int gfs_lease_fenced(const struct gfs_lease *l, uint64_t epoch, uint64_t seq);

/* Add or update the fence of epoch. -ENOSPC when the table is full. */
int gfs_lease_add_fence(struct gfs_lease *l, uint64_t epoch, uint64_t last_seq);

/* The holder's heartbeat is older than timeout_ms (by this node's clock). */
int gfs_lease_expired(const struct gfs_lease *l, int64_t now_wall_ms, int64_t timeout_ms);

#endif
