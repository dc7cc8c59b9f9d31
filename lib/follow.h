/*
 * follow.h — a read-only volume following the store: the segments the
 * writer uploads since the map was loaded, the fences a takeover adds, a
 * raised fence floor, and full reloads when compaction moved blocks under
 * us. Called by the ownership thread (own_lock held) and by readers that
 * found a segment gone (gfs_volume_catch_up, gfs_volume_reload take it).
 */
#ifndef GLIDEFS_FOLLOW_H
#define GLIDEFS_FOLLOW_H

struct glidefs_volume;

/* New segments and fences (own_lock held). */
int gfs_volume_refresh(struct glidefs_volume *v);
/* The same from a reader's thread (serialised with the ownership thread's). */
int gfs_volume_catch_up(struct glidefs_volume *v);
/* Full reload of the map from the store (a reader whose segment was
 * compacted away and that the newer segments do not explain). */
int gfs_volume_reload(struct glidefs_volume *v);

#endif
