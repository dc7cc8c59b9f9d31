/*
 * snapshot.h — taking snapshots (the public calls are in glidefs.h) and
 * the implicit hold a takeover leaves for the node it fenced.
 */
#ifndef GLIDEFS_SNAPSHOT_H
#define GLIDEFS_SNAPSHOT_H

struct glidefs_volume;

/* Take snapshot `name` (internal names may start with '@'): drain, store a
 * manifest covering everything, pin it, store the snapshot object. */
int gfs_snapshot_take(struct glidefs_volume *v, const char *name);
/* After a takeover from a live-looking holder: hold its epoch's view
 * ("@fenced-<epoch>"). Best effort: a failure is logged. */
int gfs_fence_hold(struct glidefs_volume *v);

#endif
