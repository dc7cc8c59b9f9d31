/*
 * ownership.h — the write lease's state in an open volume (v->own) and the
 * ownership thread: it heartbeats the lease while we hold it and follows
 * the store (follow.h) while we do not. The decisions are lease_state.h's.
 */
#ifndef GLIDEFS_OWNERSHIP_H
#define GLIDEFS_OWNERSHIP_H

#include <pthread.h>
#include <stdint.h>

#include "identity.h"
#include "lease.h"

struct glidefs_volume;
struct gfs_objstore;

struct gfs_own_state {
    char node_id[129];
    char node_id_legacy[129];    /* older builds' default node id ("" if node_id was set) */
    char instance[GFS_LEASE_ID_HEX + 1]; /* of the cache dir (identity.h) */
    int wrec_fd;                 /* <dir>/writer, -1 until this volume may write */
    struct gfs_wrec wrec;        /* as last read or written (own_lock) */
    int wrec_valid;              /* wrec holds a record (else none was ever written here) */
    int wrec_cur_landed;         /* the lease PUT of wrec.cur succeeded (or was found) */
    char session[GFS_LEASE_ID_HEX + 1]; /* wrec.cur's session (v->lock) */
    uint64_t gens_sent[8];       /* the session's last lease generations sent (v->lock) */
    unsigned gens_next;
    uint64_t local_epoch;        /* <dir>/epoch at open: the epoch of the journal's records */
    int journal_ours;            /* at open: the journal continues under the lease we hold */
    int unsafe_lax;              /* storage.unsafe_accept_split_brain_on_lax_store */
    struct gfs_objstore *probe_store; /* its own handle: the probe's requests and expected
                                       * failures stay out of the volume's store counters */
    int probe_state;             /* GLIDEFS_STORE_COND_* (v->lock) */
    int64_t probe_wall_ms;       /* when; 0: never (v->lock) */
    int64_t lease_timeout_ms;
    int want_refresh;            /* read-only: follow the store for new segments (v->lock) */
    int nofollow;                /* GLIDEFS_OPEN_NOFOLLOW: never (set at open) */
    uint64_t took_from_epoch;    /* the epoch whose live holder we just fenced (0: none);
                                  * its view is held for the fenced node (snapshot.c) */
    /* the thread */
    pthread_t thr;
    int running, stop;           /* stop: under own_lock */
    pthread_cond_t cond;         /* wakes it (with own_lock; CLOCK_MONOTONIC) */
};

int gfs_own_start(struct glidefs_volume *v);
void gfs_own_stop(struct glidefs_volume *v);

#endif
