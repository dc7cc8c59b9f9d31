/*
 * lease_state.h — whose the write lease is and the changes this volume
 * makes to it (lease.h has the object, identity.h the local record):
 * take (at open and promote), heartbeat, confirm before deleting, release,
 * and the decision whether a journal left here is ours to go on with. The
 * ownership thread (ownership.c) and the compactor call down into it;
 * its state is v->own (ownership.h).
 *
 * Lease changes run under own_lock (or before any thread runs); what the
 * I/O paths look at (owner, fenced, read_only, epoch) changes under
 * v->lock. gfs_own_confirm runs without own_lock (see there).
 */
#ifndef GLIDEFS_LEASE_STATE_H
#define GLIDEFS_LEASE_STATE_H

#include <stdint.h>

struct glidefs_volume;
struct gfs_lease;

/* At open: take the lease (want_rw) or attach read-only. */
int gfs_own_acquire(struct glidefs_volume *v, int want_rw);
/* Try to take the lease: *got = 1 when held afterwards, *busy = 1 when a
 * live holder keeps it. force: take it from a live holder too. */
int gfs_own_take(struct glidefs_volume *v, int force, int *got, int *busy);
/* Does lease l name this cache dir's writer (a session our record holds,
 * or an older build's lease we may resume)? */
int gfs_own_lease_ours(const struct glidefs_volume *v, const struct gfs_lease *l);
/* The lease holder's heartbeat: the next generation, conditionally; finds
 * a takeover (then the volume is fenced). */
void gfs_own_heartbeat(struct glidefs_volume *v);
/* Before deleting anything from the store: are we still the writer?
 * 0, or -EROFS (now fenced), or the lease read's error. */
int gfs_own_confirm(struct glidefs_volume *v);
/* Mark the lease released (own_lock held; the syncer is stopped). */
int gfs_own_release(struct glidefs_volume *v);
/* Is a journal written under local_epoch ours to go on with, given lease l
 * (does l name this cache dir's writer record, in that journal's lineage)? */
int gfs_own_journal_ours(const struct glidefs_volume *v, const struct gfs_lease *l,
                         uint64_t local_epoch);

#endif
