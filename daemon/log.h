/*
 * log.h — glidefsd's logger: one line per message on stderr,
 * "2026-11-26T01:02:03.123Z glidefsd[pid]: level: text", safe from any
 * thread. The library's log callback is routed here too.
 */
#ifndef GLIDEFSD_LOG_H
#define GLIDEFSD_LOG_H

#include "glidefs/glidefs.h"

/* Levels are the library's: GLIDEFS_LOG_ERROR .. GLIDEFS_LOG_DEBUG. */
void gd_log_set_level(int level);
int gd_log_get_level(void);
/* Parse "error|warn|info|debug"; -1 if unknown. */
int gd_log_parse_level(const char *s);

__attribute__((format(printf, 2, 3)))
void gd_log(int level, const char *fmt, ...);

/* Matches glidefs_log_fn, to hand to glidefs_config_set_log. */
void gd_log_lib(void *arg, int level, const char *msg);

#define gd_err(...) gd_log(GLIDEFS_LOG_ERROR, __VA_ARGS__)
#define gd_warn(...) gd_log(GLIDEFS_LOG_WARN, __VA_ARGS__)
#define gd_info(...) gd_log(GLIDEFS_LOG_INFO, __VA_ARGS__)
#define gd_debug(...) gd_log(GLIDEFS_LOG_DEBUG, __VA_ARGS__)

#endif
