/*
 * log.h — the library's logging: a small struct carrying the user's callback,
 * so no global state is needed. Messages are formatted only when the level is
 * enabled.
 */
#ifndef GLIDEFS_LOG_H
#define GLIDEFS_LOG_H

#include "glidefs/glidefs.h"

struct gfs_log {
    glidefs_log_fn fn;
    void *arg;
    int max_level;
};

__attribute__((format(printf, 3, 4)))
void gfs_logf(const struct gfs_log *log, int level, const char *fmt, ...);

#define gfs_err(l, ...) gfs_logf((l), GLIDEFS_LOG_ERROR, __VA_ARGS__)
#define gfs_warn(l, ...) gfs_logf((l), GLIDEFS_LOG_WARN, __VA_ARGS__)
#define gfs_info(l, ...) gfs_logf((l), GLIDEFS_LOG_INFO, __VA_ARGS__)
#define gfs_debug(l, ...) gfs_logf((l), GLIDEFS_LOG_DEBUG, __VA_ARGS__)

#endif
