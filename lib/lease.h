/*
 * lease.h — who may write a volume (docs/design.md promise 2.5; the object
 * and its protocol: sections 5.8 and 5.11). The object
 * nbd/<name>/lease holds the writer's identity, its epoch, a heartbeat time,
 * whether it is held or released, and the fences: for each earlier epoch the
 * last segment seq that counts.
 *
 * The writer's identity (format 2) is its instance — a random id made with
 * its cache dir and kept there, so two cache dirs on one machine, or two
 * clones of one machine, are two writers — plus a session (random, new at
 * each take of the lease) and a generation counted up by each write of one
 * session; node_id is only for humans. Format 1 (older builds) names the
 * node id alone: it is still read, never written (ownership.c says how an
 * upgraded node resumes such a lease). Taking the lease over bumps the epoch and
 * fences the previous one at the last segment the new writer has seen, so a
 * late segment from a deposed writer is ignored by every reader. All changes
 * are conditional writes (If-None-Match on create, If-Match on the ETag read
 * before), so two nodes can never both believe they won.
 *
 * The fence table stays small: a segment or manifest of an epoch below the
 * lease's floor is never taken from a listing, only through a manifest that
 * names it, so a taker that knows a manifest of epoch F (every reader starts
 * after the newest manifest, and keys sort by epoch) raises the floor to F
 * and drops the fences below it - all but those a fenced epoch's held view
 * is rebuilt with (fenced.c). A follower reloads from the newest manifest
 * when the floor rises (volmeta.c).
 *
 * Guarantee without conditional writes (a store that ignores If-Match): two
 * nodes promoting at the same instant could both take epoch E+1; fences still
 * keep deposed epochs out, but the two E+1 writers are not told apart. AWS S3,
 * current MinIO and the file:// store honour the conditions; store_probe.h
 * finds out, and ownership.c then refuses takeovers unless told otherwise.
 */
#ifndef GLIDEFS_LEASE_H
#define GLIDEFS_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "objstore.h"

#define GFS_LEASE_MAX_FENCES 1024

struct gfs_fence {
    uint64_t epoch;
    uint64_t last_seq; /* segments of this epoch with a larger seq are ignored */
};

#define GFS_LEASE_ID_HEX 32 /* instance and session: 128 bits as lower-case hex */

struct gfs_lease {
    int format;             /* 1: node_id only (read only); 2: with instance/session/gen */
    char node_id[129];
    char instance[GFS_LEASE_ID_HEX + 1]; /* "" in format 1 */
    char session[GFS_LEASE_ID_HEX + 1];  /* "" in format 1 */
    uint64_t gen;           /* writes of this session: heartbeats count it up */
    uint64_t epoch;
    int64_t heartbeat_ms;   /* wall clock of the holder's last heartbeat */
    int released;
    uint64_t floor;         /* epochs below it count only through a manifest (format 2) */
    uint64_t ceiling;       /* never stored: a view of an older epoch (fenced.c) fences
                             * every epoch above it entirely; 0: none */
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

/* Write l conditionally (always as format 2): if l->exists, If-Match l->etag (-ECANCELED when it
 * changed), else If-None-Match (-EEXIST when someone created one). On success
 * l->etag is refreshed (by reading back) and l->exists set. */
int gfs_lease_write(struct gfs_objstore *st, const char *name, struct gfs_lease *l);

/* Is a segment (epoch, seq) fenced off? */
int gfs_lease_fenced(const struct gfs_lease *l, uint64_t epoch, uint64_t seq);

/* Is epoch below the floor: none of its objects may come from a listing? */
static inline int gfs_lease_below_floor(const struct gfs_lease *l, uint64_t epoch)
{
    return epoch < l->floor;
}

/* Raise the floor to at most floor (never above the lease's epoch, never
 * down) and drop the fences below it, except those of epochs inside one of
 * the nkeep ranges [keep[i][0], keep[i][1]] (what a held view needs). */
void gfs_lease_raise_floor(struct gfs_lease *l, uint64_t floor, const uint64_t (*keep)[2],
                           size_t nkeep);

/* Add or update the fence of epoch. -ENOSPC when the table is full. */
int gfs_lease_add_fence(struct gfs_lease *l, uint64_t epoch, uint64_t last_seq);

/* The holder's heartbeat is older than timeout_ms (by this node's clock). */
int gfs_lease_expired(const struct gfs_lease *l, int64_t now_wall_ms, int64_t timeout_ms);

/* "node N (instance 0123abcd)" for log lines: who a lease names. */
void gfs_lease_who(const struct gfs_lease *l, char *buf, size_t len);

/* s is GFS_LEASE_ID_HEX lower-case hex digits. */
int gfs_lease_id_valid(const char *s);

/* A new random id (instance, session, probe keys). 0 or -EIO. */
int gfs_lease_new_id(char out[GFS_LEASE_ID_HEX + 1]);

#endif
