/*
 * dirty_handoff.h — a volume's dirty state handed from its close to its
 * next open on this node in the same boot (the dirty index, dirty_index.h,
 * docs/design.md 6.7): saved at close, adopted at open instead of a journal
 * replay when everything still matches.
 */
#ifndef GLIDEFS_DIRTY_HANDOFF_H
#define GLIDEFS_DIRTY_HANDOFF_H

#include <stdint.h>

struct glidefs_volume;

#define GFS_DIDX_NAME "dirty.idx"

/* At close, after the journal's last write and flush, threads stopped:
 * write <dir>/dirty.idx. Advisory: a failure is logged (the next open
 * replays). */
void gfs_didx_save(struct glidefs_volume *v);

/* At open, instead of gfs_journal_recover, journal initialised and empty:
 * take <dir>/dirty.idx (it is removed whatever happens) and, when it
 * matches this boot, volume and journal (its files unchanged, written
 * under the journal's epoch), adopt it: the journal's files and the dirty
 * extents as the close left them. 1 if adopted (*max_seq set), 0 if not
 * (why logged; the journal is untouched: recover it), or a negative errno
 * (out of memory half-way: the open fails). */
int gfs_didx_adopt(struct glidefs_volume *v, uint64_t *max_seq);

#endif
