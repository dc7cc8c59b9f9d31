/*
 * ratelog.h — at most one log line per interval for a kind of event that
 * may come in floods (refused clients, pushed-out connections): the line
 * that goes out says how many were left out since the last one. Not
 * thread-safe: the caller holds the lock that guards the struct.
 */
#ifndef GLIDEFSD_RATELOG_H
#define GLIDEFSD_RATELOG_H

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"

struct gd_ratelog {
    int64_t next_ms;    /* no line before this (gfs_now_ms) */
    unsigned dropped;   /* events not logged since the last line */
};

/* true: log now, with *dropped events left out before it; false: count
 * this one as left out. */
static inline bool gd_ratelog_ok(struct gd_ratelog *rl, int64_t every_ms, unsigned *dropped)
{
    int64_t now = gfs_now_ms();
    if (now < rl->next_ms) {
        rl->dropped++;
        return false;
    }
    *dropped = rl->dropped;
    rl->dropped = 0;
    rl->next_ms = now + every_ms;
    return true;
}

#endif
