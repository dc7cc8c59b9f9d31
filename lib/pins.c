/*
 * pins.c — what snapshots keep from compaction (pins.h): the segments and
 * manifests named by the volume's snapshot objects, and the holds on
 * fenced epochs, loaded from the store and asked under v->lock.
 */
#include "pins.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "manchain.h"
#include "manifest.h"
#include "snapobj.h"
#include "volume_internal.h"

static int cmp_pin(const void *a, const void *b)
{
    const struct gfs_pin *x = a, *y = b;
    if (x->epoch != y->epoch)
        return x->epoch < y->epoch ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int gfs_pinned(const struct glidefs_volume *v, uint64_t epoch, uint64_t seq)
{
    struct gfs_pin k = {epoch, seq};
    return v->snap.npins && bsearch(&k, v->snap.pins, v->snap.npins, sizeof k, cmp_pin) != NULL;
}

int gfs_manifest_pinned(const struct glidefs_volume *v, const char *key)
{
    for (size_t i = 0; i < v->snap.npinned_manifests; i++)
        if (strcmp(v->snap.pinned_manifests[i], key) == 0)
            return 1;
    return 0;
}

/* Is `epoch` (our own, without origin bits) held for a fenced node? (lock held) */
int gfs_held_epoch(const struct glidefs_volume *v, uint64_t epoch)
{
    for (size_t i = 0; i < v->snap.nholds; i++)
        if (v->snap.holds[i].epoch == epoch)
            return 1;
    return 0;
}

void gfs_snapshots_free(struct glidefs_volume *v)
{
    free(v->snap.holds);
    v->snap.holds = NULL;
    v->snap.nholds = 0;
    free(v->snap.pins);
    for (size_t i = 0; i < v->snap.npinned_manifests; i++)
        free(v->snap.pinned_manifests[i]);
    free(v->snap.pinned_manifests);
    v->snap.pins = NULL;
    v->snap.npins = 0;
    v->snap.pinned_manifests = NULL;
    v->snap.npinned_manifests = 0;
}

/* Append the segments manifest `mkey` names to *pins, and the key to *mans;
 * for a delta (never written for a snapshot, but a store may hold one) the
 * segments and keys of its whole chain. */
static int pins_of_manifest(struct glidefs_volume *v, const char *mkey, struct gfs_pin **pins,
                            size_t *npins, char ***mans, size_t *nmans)
{
    struct gfs_manchain c;
    int r = gfs_manchain_load(v->store, &v->log, v->name, mkey, v->codec, NULL, &c);
    if (r < 0)
        return r == -ENOMEM ? r : -EIO;
    for (size_t l = 0; l < c.n && r == 0; l++) {
        const struct gfs_manifest *m = &c.links[l];
        struct gfs_pin *np = realloc(*pins, (*npins + m->nsegs + 1) * sizeof *np);
        if (np)
            *pins = np;
        char **nm = realloc(*mans, (*nmans + 1) * sizeof *nm);
        if (nm)
            *mans = nm;
        char key[512];
        if (!np || !nm || gfs_manchain_sibling(key, sizeof key, mkey, m->epoch, m->seq) < 0 ||
            !((*mans)[*nmans] = strdup(key))) {
            r = -ENOMEM;
            break;
        }
        (*nmans)++;
        for (uint32_t k = 0; k < m->nsegs; k++)
            (*pins)[(*npins)++] = (struct gfs_pin){m->segs[k].epoch, m->segs[k].seq};
    }
    gfs_manchain_free(&c);
    return r;
}

static void pins_free(struct gfs_pin *pins, char **mans, size_t nmans)
{
    free(pins);
    for (size_t i = 0; i < nmans; i++)
        free(mans[i]);
    free(mans);
}

/* (Re)load what the volume's snapshots pin, from the store: snapshots
 * deleted elsewhere (a purged clone's implicit one) stop pinning. A load
 * that raced a snapshot being taken starts over, so it never installs a set
 * without that snapshot. */
int gfs_snapshots_load(struct glidefs_volume *v)
{
    return gfs_snapshots_load_report(v, NULL, NULL);
}

int gfs_snapshots_load_report(struct glidefs_volume *v, gfs_snap_bad_fn bad, void *arg)
{
    for (;;) {
        int reported = 0;
        pthread_mutex_lock(&v->lock);
        uint64_t gen = v->snap.gen;
        pthread_mutex_unlock(&v->lock);
        char prefix[512];
        snprintf(prefix, sizeof prefix, "nbd/%s/snap/", v->name);
        struct gfs_keylist l = {0};
        int r = v->store->ops->list(v->store, prefix, NULL, gfs_keylist_add, &l);
        struct gfs_pin *pins = NULL;
        size_t npins = 0;
        char **mans = NULL;
        size_t nmans = 0;
        struct gfs_hold *holds = NULL;
        size_t nholds = 0;
        for (size_t i = 0; i < l.n && r >= 0; i++) {
            struct gfs_snapinfo si;
            const char *sname = strrchr(l.keys[i], '/') + 1;
            r = gfs_snap_read(v->store, v->name, sname, &si);
            if (r == -ENOENT) {
                r = 0;
                continue;
            }
            if (r == -EIO)
                gfs_err(&v->log, "%s: snapshot object %s is malformed (or names another "
                        "snapshot): what it keeps from compaction is unknown", v->name,
                        l.keys[i]);
            if (r == 0 && strncmp(sname, GFS_FENCED_HOLD_PREFIX,
                                  strlen(GFS_FENCED_HOLD_PREFIX)) == 0) {
                char *end;
                unsigned long long e =
                    strtoull(sname + strlen(GFS_FENCED_HOLD_PREFIX), &end, 10);
                struct gfs_hold *nh = realloc(holds, (nholds + 1) * sizeof *nh);
                if (!nh)
                    r = -ENOMEM;
                else if (!*end && e)
                    (holds = nh)[nholds++] = (struct gfs_hold){e, si.created_ms};
                else
                    holds = nh;
            }
            if (r < 0 || !si.manifest[0])
                continue;
            char mkey[512];
            snprintf(mkey, sizeof mkey, "nbd/%s/manifest/%s", v->name, si.manifest);
            r = pins_of_manifest(v, mkey, &pins, &npins, &mans, &nmans);
            if (r < 0 && r != -ENOMEM)
                gfs_err(&v->log, "%s: snapshot %s: its manifest %s cannot be read", v->name,
                        l.keys[i], mkey);
            if (r < 0 && r != -ENOMEM && bad && (r == -ENOENT || r == -EIO)) {
                bad(arg, mkey, r); /* lost or damaged: said, and the walk goes on */
                reported = 1;
                r = 0;
            }
        }
        if (r == 0 && reported) {
            /* what the broken snapshot keeps is unknown: the pins in force
             * stay (compaction must not lose what they protect) */
            gfs_keylist_free(&l);
            pins_free(pins, mans, nmans);
            free(holds);
            return 0;
        }
        gfs_keylist_free(&l);
        if (r < 0) {
            pins_free(pins, mans, nmans);
            free(holds);
            return r;
        }
        if (npins)
            qsort(pins, npins, sizeof *pins, cmp_pin);
        pthread_mutex_lock(&v->lock);
        if (v->snap.gen != gen) {
            pthread_mutex_unlock(&v->lock);
            pins_free(pins, mans, nmans);
            free(holds);
            continue;
        }
        gfs_snapshots_free(v);
        v->snap.holds = holds;
        v->snap.nholds = nholds;
        v->snap.pins = pins;
        v->snap.npins = npins;
        v->snap.pinned_manifests = mans;
        v->snap.npinned_manifests = nmans;
        pthread_mutex_unlock(&v->lock);
        return 0;
    }
}

/* Pin manifest `mkey` now, before the snapshot naming it is stored: from the
 * moment the snapshot exists, compaction must keep what it names. */
int gfs_pins_add_manifest(struct glidefs_volume *v, const char *mkey)
{
    struct gfs_pin *pins = NULL;
    size_t npins = 0;
    char **mans = NULL;
    size_t nmans = 0;
    int r = pins_of_manifest(v, mkey, &pins, &npins, &mans, &nmans);
    if (r < 0) {
        pins_free(pins, mans, nmans);
        return r;
    }
    pthread_mutex_lock(&v->lock);
    v->snap.gen++;
    struct gfs_pin *np = realloc(v->snap.pins, (v->snap.npins + npins + 1) * sizeof *np);
    char **nm = realloc(v->snap.pinned_manifests, (v->snap.npinned_manifests + 1) * sizeof *nm);
    if (np)
        v->snap.pins = np;
    if (nm)
        v->snap.pinned_manifests = nm;
    if (np && nm) {
        memcpy(v->snap.pins + v->snap.npins, pins, npins * sizeof *pins);
        v->snap.npins += npins;
        qsort(v->snap.pins, v->snap.npins, sizeof *v->snap.pins, cmp_pin);
        v->snap.pinned_manifests[v->snap.npinned_manifests++] = mans[0];
        mans[0] = NULL;
    }
    pthread_mutex_unlock(&v->lock);
    pins_free(pins, mans, nmans);
    return np && nm ? 0 : -ENOMEM;
}

/* The epochs whose fences a fenced epoch's held view needs (fenced.c):
 * from its manifest's epoch up to the held epoch itself. */
static int hold_range(void *arg, const char *key, uint64_t size)
{
    (void)size;
    struct gfs_epoch_ranges *rs = arg;
    const char *p = strrchr(key, '/');
    p = p ? p + 1 : key;
    if (strncmp(p, GFS_FENCED_HOLD_PREFIX, strlen(GFS_FENCED_HOLD_PREFIX)) != 0)
        return 0;
    char *end;
    unsigned long long e = strtoull(p + strlen(GFS_FENCED_HOLD_PREFIX), &end, 10);
    if (*end || !e || rs->n == GFS_MAX_RANGES)
        return 0; /* not a hold; or more holds than takes in a week could make */
    rs->r[rs->n++] = (struct gfs_epoch_range){0, e, {0}};
    snprintf(rs->r[rs->n - 1].name, sizeof rs->r[rs->n - 1].name, "%s", p);
    return 0;
}

int gfs_fence_hold_ranges(struct gfs_objstore *st, const char *name,
                          struct gfs_epoch_ranges *rs)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "nbd/%s/snap/%s", name, GFS_FENCED_HOLD_PREFIX);
    rs->n = 0;
    int r = st->ops->list(st, prefix, NULL, hold_range, rs);
    for (size_t i = 0; i < rs->n && r >= 0; i++) {
        struct gfs_snapinfo si;
        r = gfs_snap_read(st, name, rs->r[i].name, &si);
        uint64_t me = 0;
        if (r == -ENOENT || (r == 0 && !si.manifest[0])) {
            r = 0; /* gone meanwhile, or nothing held: the whole range below */
        } else if (r == 0 && gfs_parse_epoch_seq(si.manifest, &me, NULL) < 0) {
            r = -EIO;
        }
        rs->r[i].lo = me;
    }
    return r < 0 ? r : 0;
}

/* Holds older than compaction.fenced_hold_s go: that node had its time to
 * export what it kept (it still can after, while the data happens to be
 * there). Returns how many went, or a negative errno. */
int gfs_fence_holds_expire(struct glidefs_volume *v)
{
    int64_t now = gfs_wall_ms();
    int n = 0, r = 0;
    pthread_mutex_lock(&v->lock);
    size_t nh = v->snap.nholds;
    struct gfs_hold *h = nh ? malloc(nh * sizeof *h) : NULL;
    if (h)
        memcpy(h, v->snap.holds, nh * sizeof *h);
    pthread_mutex_unlock(&v->lock);
    if (nh && !h)
        return -ENOMEM;
    for (size_t i = 0; i < nh && r >= 0; i++) {
        if (v->snap.fenced_hold_ms > 0 && now - h[i].created_ms < v->snap.fenced_hold_ms)
            continue;
        char key[512];
        snprintf(key, sizeof key, "nbd/%s/snap/%s%" PRIu64, v->name, GFS_FENCED_HOLD_PREFIX,
                 h[i].epoch);
        r = v->store->ops->del(v->store, key);
        if (r == -ENOENT)
            r = 0;
        if (r == 0) {
            n++;
            gfs_info(&v->log, "%s: the hold on fenced epoch %" PRIu64 " expired; its data "
                     "may now be compacted away", v->name, h[i].epoch);
        }
    }
    free(h);
    if (r == 0 && n)
        r = gfs_snapshots_load(v);
    return r < 0 ? r : n;
}
