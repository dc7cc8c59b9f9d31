/*
 * identity.h — who this writer is, as kept on local disk (the lease in the
 * store says who writes; ownership.c decides with both).
 *
 *  - The instance id of a cache dir: <cache.dir>/.instance, 32 random hex
 *    digits made on first use. Two cache dirs are two writers, even on one
 *    machine or on clones of one machine (node_id is only for humans).
 *    Export names never start with '.', so no volume dir can be named so.
 *  - The writer record of a volume: <cache.dir>/<name>/writer, what this
 *    cache dir last put (or was about to put) into the volume's lease: the
 *    session, epoch and generation. It is written and fdatasync'd BEFORE the
 *    lease PUT that carries them, so a lease naming our instance with a
 *    session or generation the record does not hold was written by someone
 *    else with our identity: a copy of this cache dir (or a VM snapshot of
 *    it restored elsewhere). Two slots, written in turn, each with its own
 *    sequence number and CRC-32C: a torn write loses at most the newest
 *    slot, and the file never grows (no ENOSPC on a full cache disk).
 */
#ifndef GLIDEFS_IDENTITY_H
#define GLIDEFS_IDENTITY_H

#include <stdint.h>

#include "lease.h"

struct gfs_log;

/* Read <cache_dir>/.instance, creating it (and cache_dir) when missing.
 * -EIO (logged) for a file that is not an instance id. */
int gfs_instance_get(const char *cache_dir, struct gfs_log *log,
                     char out[GFS_LEASE_ID_HEX + 1]);

/* One lease this writer wrote or was about to write. */
struct gfs_wslot {
    char session[GFS_LEASE_ID_HEX + 1]; /* "" when the slot is empty */
    uint64_t epoch;
    uint64_t from_epoch; /* a resume carried the journal of this epoch into epoch; 0: none */
    uint64_t gen;        /* the highest generation of the session written or about to be */
};

struct gfs_wrec {
    char instance[GFS_LEASE_ID_HEX + 1];
    uint64_t seq;        /* count of record writes; the higher valid slot wins */
    struct gfs_wslot cur;  /* the session now (or the one being taken) */
    struct gfs_wslot prev; /* the session before it, while cur may not have landed */
};

/* Open <dir>/writer (create: make it, two empty slots, when missing).
 * -ENOENT when missing and !create. */
int gfs_wrec_open(const char *dir, int create, int *fd);

/* The newest valid slot. -ENOENT when neither slot is valid. */
int gfs_wrec_read(int fd, struct gfs_wrec *rec);

/* Bump rec->seq and write rec into the older slot, then fdatasync. */
int gfs_wrec_write(int fd, struct gfs_wrec *rec);

#endif
