/*
 * manchain.c — a manifest and the chain of deltas it heads, loaded and
 * checked link by link (manchain.h). The chain is bounded by the format
 * (depth <= GFS_MAN_MAX_CHAIN, strictly decreasing towards the base), so a
 * hostile store cannot make a reader loop or fetch without end.
 */
#include "manchain.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "glidefs/glidefs.h"
#include "lease.h"
#include "log.h"
#include "objstore.h"
#include "segment.h"
#include "snapobj.h"

void gfs_manchain_free(struct gfs_manchain *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        gfs_manifest_free(&c->links[i]);
    free(c->links);
    memset(c, 0, sizeof *c);
}

int gfs_manchain_sibling(char *buf, size_t buflen, const char *key, uint64_t epoch, uint64_t seq)
{
    const char *slash = strrchr(key, '/');
    if (!slash)
        return -EINVAL;
    int n = snprintf(buf, buflen, "%.*s/%016" PRIx64 "-%016" PRIx64, (int)(slash - key), key,
                     epoch, seq);
    return n < 0 || (size_t)n >= buflen ? -ENAMETOOLONG : 0;
}

/* GET and decode one link, which must sit at (e, s). */
static int load_one(struct gfs_objstore *store, const struct gfs_log *log, const char *who,
                    const char *key,
                    uint64_t e, uint64_t s, const struct gfs_codec *codec, struct gfs_manifest *m,
                    uint64_t *bytes)
{
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    int r = store->ops->get(store, key, GFS_MANIFEST_MAX, &buf, &len, NULL);
    if (r < 0) {
        gfs_err(log, "%s: cannot read manifest %s: %s", who, key, glidefs_strerror(r));
        return r == -ENOENT || r == -EFBIG ? -EIO : r;
    }
    *bytes += len;
    r = gfs_manifest_decode_mac(buf, len, codec, m);
    if (r < 0) {
        gfs_err(log, "%s: manifest %s is corrupt or fails authentication", who, key);
        return r == -ENOMEM ? r : -EIO;
    }
    if (m->epoch != e || m->seq != s) {
        gfs_err(log, "%s: manifest %s names another position than its key", who, key);
        gfs_manifest_free(m);
        return -EIO;
    }
    return 0;
}

int gfs_manchain_load(struct gfs_objstore *store, const struct gfs_log *log, const char *who,
                      const char *key, const struct gfs_codec *codec,
                      const struct gfs_lease *lease, struct gfs_manchain *c)
{
    memset(c, 0, sizeof *c);
    const char *slash = strrchr(key, '/');
    uint64_t e, s;
    if (!slash || gfs_parse_epoch_seq(slash + 1, &e, &s) < 0) {
        gfs_err(log, "%s: manifest key %s does not name a position", who, key);
        return -EIO;
    }
    c->links = calloc(GFS_MAN_MAX_CHAIN + 1, sizeof *c->links);
    if (!c->links)
        return -ENOMEM;
    char k[512];
    snprintf(k, sizeof k, "%s", key);
    int r = 0;
    for (;;) {
        if (c->n > GFS_MAN_MAX_CHAIN) { /* cannot happen: depth decreases */
            r = -EIO;
            break;
        }
        if (lease && c->n && gfs_lease_fenced(lease, e, s)) {
            gfs_err(log, "%s: manifest %s extends %s, which is fenced", who, key, k);
            r = -EIO;
            break;
        }
        struct gfs_manifest *m = &c->links[c->n];
        r = load_one(store, log, who, k, e, s, codec, m, &c->bytes);
        if (r < 0)
            break;
        c->n++;
        if (c->n > 1) {
            const struct gfs_manifest *child = &c->links[c->n - 2], *head = &c->links[0];
            /* a base at a link's place is complete at its key (a writer
             * that folded there since); a delta must be the child's link */
            if (m->block_size != head->block_size || m->volume_size != head->volume_size ||
                (m->depth && (m->depth + 1 != child->depth || m->base_seq != child->base_seq))) {
                gfs_err(log, "%s: manifest %s: link %s does not belong to its chain", who, key, k);
                r = -EIO;
                break;
            }
        }
        if (m->depth == 0)
            break;
        e = m->prev_epoch;
        s = m->prev_seq;
        r = gfs_manchain_sibling(k, sizeof k, key, e, s);
        if (r < 0) {
            r = -EIO;
            break;
        }
    }
    if (r < 0) {
        gfs_manchain_free(c);
        return r;
    }
    /* base first */
    for (size_t i = 0; i < c->n / 2; i++) {
        struct gfs_manifest t = c->links[i];
        c->links[i] = c->links[c->n - 1 - i];
        c->links[c->n - 1 - i] = t;
    }
    return 0;
}

static int cmp_seg(const void *a, const void *b)
{
    const struct gfs_man_seg *x = a, *y = b;
    if (x->epoch != y->epoch)
        return x->epoch < y->epoch ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int gfs_manchain_flatten(const struct gfs_manchain *c, struct gfs_manifest *out)
{
    memset(out, 0, sizeof *out);
    if (c->n == 0)
        return -EINVAL;
    const struct gfs_manifest *head = &c->links[c->n - 1];
    /* every link's segments, sorted, each once (a segment named by two
     * links must have the same key generation in both) */
    uint64_t nall = 0, nent = 0;
    for (size_t i = 0; i < c->n; i++) {
        nall += c->links[i].nsegs;
        nent += c->links[i].nentries;
    }
    CLEANUP_FREE struct gfs_man_seg *all = calloc(nall ? nall : 1, sizeof *all);
    CLEANUP_FREE struct gfs_man_entry *cur = calloc(nent ? nent : 1, sizeof *cur);
    CLEANUP_FREE struct gfs_man_entry *nxt = calloc(nent ? nent : 1, sizeof *nxt);
    if (!all || !cur || !nxt)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++)
        for (uint32_t j = 0; j < c->links[i].nsegs; j++)
            all[k++] = c->links[i].segs[j];
    qsort(all, k, sizeof *all, cmp_seg);
    size_t u = 0;
    for (size_t i = 0; i < k; i++) {
        if (u && cmp_seg(&all[u - 1], &all[i]) == 0) {
            if (all[u - 1].key_gen != all[i].key_gen)
                return -EIO;
            continue;
        }
        all[u++] = all[i];
    }
    /* merge the links' entries in order, a later link's entry winning;
     * seg indexes become indexes into all[] */
    uint64_t ncur = 0;
    for (size_t i = 0; i < c->n; i++) {
        const struct gfs_manifest *m = &c->links[i];
        uint64_t a = 0, b = 0, n = 0;
        while (a < ncur || b < m->nentries) {
            if (b == m->nentries ||
                (a < ncur && cur[a].block_index < m->entries[b].block_index)) {
                nxt[n++] = cur[a++];
                continue;
            }
            if (a < ncur && cur[a].block_index == m->entries[b].block_index)
                a++; /* replaced */
            struct gfs_man_entry e = m->entries[b++];
            if (e.seg != GFS_MAN_HOLE) {
                const struct gfs_man_seg *f =
                    bsearch(&m->segs[e.seg], all, u, sizeof *all, cmp_seg);
                e.seg = (uint32_t)(f - all);
            }
            nxt[n++] = e;
        }
        struct gfs_man_entry *t = cur;
        cur = nxt;
        nxt = t;
        ncur = n;
    }
    /* only the segments the result references, as a base would list them */
    CLEANUP_FREE uint32_t *remap = calloc(u ? u : 1, sizeof *remap);
    if (!remap)
        return -ENOMEM;
    for (uint64_t i = 0; i < ncur; i++)
        if (cur[i].seg != GFS_MAN_HOLE)
            remap[cur[i].seg] = 1;
    uint32_t ns = 0;
    for (size_t i = 0; i < u; i++)
        if (remap[i]) {
            all[ns] = all[i];
            remap[i] = ns++;
        }
    for (uint64_t i = 0; i < ncur; i++)
        if (cur[i].seg != GFS_MAN_HOLE)
            cur[i].seg = remap[cur[i].seg];
    out->epoch = head->epoch;
    out->seq = head->seq;
    out->volume_size = head->volume_size;
    out->block_size = head->block_size;
    out->nsegs = ns;
    out->nentries = ncur;
    out->segs = TAKE_PTR(all);
    out->entries = TAKE_PTR(cur);
    return 0;
}
