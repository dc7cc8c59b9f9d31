/*
 * fanout.h — run one job per item on a few threads at once (a takeover's
 * volume flushes, closes and opens: each waits mostly on its own fsyncs,
 * so they overlap).
 */
#ifndef GD_FANOUT_H
#define GD_FANOUT_H

#include <stdint.h>

/* fn(arg, i) for every i in [0, n), on up to max_threads threads (the
 * caller's one of them); returns when all are done. Where a thread cannot
 * be started, the others (or the caller) take its share. */
void gd_fanout(uint32_t n, unsigned max_threads, void (*fn)(void *arg, uint32_t i), void *arg);

#endif
