/*
 * layout.h — layout follows use (issue 28, docs/design.md 4.12): the blocks
 * of a volume's access profile, wherever their writes left them, are copied
 * together, in first-read order, into new segments, so that the prefetch of
 * the next cold open fetches them with few, large GETs. Runs in the
 * compactor's step (the syncer thread, writer only), in bounded chunks, once
 * the recording has gone quiet, and only where the profile recurs: at least
 * half of a chunk's blocks were in the profile loaded at open (the last
 * session's), so a boot is laid out from its second time on and one-off
 * scans or random reads never are. Blocks a clone reads from its
 * ancestors' segments are left there (the parent's own layout serves the
 * clone).
 */
#ifndef GLIDEFS_LAYOUT_H
#define GLIDEFS_LAYOUT_H

#include <stdint.h>

struct glidefs_volume;

#define GFS_LAYOUT_MIN 16          /* new profile blocks worth a pass */
#define GFS_LAYOUT_QUIET_MS 10000  /* no new block recorded for this long: lay out */
#define GFS_LAYOUT_CHUNK 256       /* profile positions looked at per step */

/* The syncer, idle: when this node writes the volume, GFS_LAYOUT_MIN blocks
 * were recorded since the last look and the recording is over (window,
 * size) or quiet, and compaction's rate allows, look at the next chunk of
 * the profile and, when its blocks are scattered over more segments than a
 * dense layout needs, copy them together in profile order (at
 * compaction.rate_mb_s). v->lock held; dropped for I/O. 1 if it copied
 * something, 0 if not, -errno (that chunk is given up: a later recording
 * tries again). */
int gfs_layout_step(struct glidefs_volume *v);

#endif
