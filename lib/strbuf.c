/*
 * strbuf.c — the growable string of strbuf.h.
 */
#include "strbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void gfs_sb_add(struct gfs_sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void gfs_sb_str(struct gfs_sbuf *b, const char *s) { gfs_sb_add(b, s, strlen(s)); }

void gfs_sb_chr(struct gfs_sbuf *b, char c) { gfs_sb_add(b, &c, 1); }

int gfs_sb_finish(struct gfs_sbuf *b, char **out)
{
    if (!b->oom && !b->p)
        gfs_sb_add(b, "", 0);
    if (b->oom) {
        free(b->p);
        *out = NULL;
        return -ENOMEM;
    }
    *out = b->p;
    return 0;
}
