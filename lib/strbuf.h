/*
 * strbuf.h — a growable, always NUL-terminated string for building
 * requests and strings to sign (sigv4.c, azure_auth.c, azure_batch.c). An
 * allocation failure is sticky: later additions do nothing and
 * gfs_sb_finish reports -ENOMEM, so builders check once at the end.
 */
#ifndef GLIDEFS_STRBUF_H
#define GLIDEFS_STRBUF_H

#include <stddef.h>

struct gfs_sbuf {
    char *p;      /* NULL until something is added */
    size_t len, cap;
    int oom;
};

void gfs_sb_add(struct gfs_sbuf *b, const char *s, size_t n);
void gfs_sb_str(struct gfs_sbuf *b, const char *s);
void gfs_sb_chr(struct gfs_sbuf *b, char c);
/* Hand the string out (an empty one is "", not NULL): 0, or -ENOMEM with
 * *out NULL and the buffer freed. */
int gfs_sb_finish(struct gfs_sbuf *b, char **out);

#endif
