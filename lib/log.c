/*
 * log.c — gfs_logf: formats a message on the stack and hands it to the
 * user's callback. No global state: the callback travels in struct gfs_log.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

/* Long enough for any one-line message the library writes; longer ones are
 * cut and end in "...". */
#define GFS_LOG_LINE_MAX 1024

void gfs_logf(const struct gfs_log *log, int level, const char *fmt, ...)
{
    /* Check first so disabled levels cost no formatting. */
    if (!log || !log->fn || level > log->max_level || !fmt)
        return;

    char buf[GFS_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(buf))
        memcpy(buf + sizeof(buf) - 4, "...", 4);
    log->fn(log->arg, level, buf);
}
