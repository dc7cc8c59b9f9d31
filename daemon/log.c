/*
 * log.c — glidefsd's stderr logger (see log.h). Each line is formatted in
 * full and written with one write(2), so lines from different threads never
 * interleave. The level is the only process-wide state, set once at start-up.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int max_level = GLIDEFS_LOG_INFO;

void gd_log_set_level(int level) { atomic_store(&max_level, level); }
int gd_log_get_level(void) { return atomic_load(&max_level); }

static const char *level_names[] = { "error", "warn", "info", "debug" };

int gd_log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return GLIDEFS_LOG_WARN;
    return -1;
}

static void emit(int level, const char *msg)
{
    if (level > atomic_load(&max_level))
        return;
    if (level < 0)
        level = 0;
    if (level > 3)
        level = 3;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[2048];
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ glidefsd[%ld]: %s: %s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, (long)getpid(), level_names[level], msg);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line - 1 ? (size_t)n : sizeof line - 2;
    /* Keep one message on one line. */
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void gd_log(int level, const char *fmt, ...)
{
    if (level > atomic_load(&max_level))
        return;
    char msg[1800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(level, msg);
}

void gd_log_lib(void *arg, int level, const char *msg)
{
    (void)arg;
    emit(level, msg);
}
