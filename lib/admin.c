/*
 * admin.c — volumes as a whole, without opening them for I/O: does one
 * exist, is the store usable (and does it honour conditional writes), and
 * delete one — locally, or purged from the store while keeping what its
 * live clones still read (a tombstone in place of volume.json), and
 * forgetting it in its parent once nothing of it is left.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "manchain.h"
#include "manifest.h"
#include "objstore_azure.h"
#include "objstore_s3.h"
#include "snapobj.h"
#include "store_probe.h"
#include "volume_internal.h"

static void key_of(char *buf, size_t len, const char *name, const char *leaf)
{
    snprintf(buf, len, "nbd/%s/%s", name, leaf);
}

/* For a purge: the store keys of `name` that live clones still need (their
 * snapshots, those snapshots' manifests and the segments of ours they name,
 * the children markers), and the tombstone volume.json to leave in place of
 * the real one (so the name is never reused under their feet). *keep gets
 * a malloc'd array of malloc'd keys; *tombstone NULL when no clone lives. */
static int purge_plan(const struct glidefs_config *cfg, const char *name, char ***keep,
                      size_t *nkeep, char **tombstone)
{
    *keep = NULL;
    *nkeep = 0;
    *tombstone = NULL;
    glidefs_volume *v;
    int r = glidefs_volume_open(cfg, name, 0, GLIDEFS_OPEN_READONLY, &v);
    if (r == -ENOENT)
        return 0; /* nothing readable: everything goes */
    if (r < 0)
        return r;
    char prefix[512];
    snprintf(prefix, sizeof prefix, "nbd/%s/children/", name);
    struct gfs_keylist children = {0}, out = {0};
    r = v->store->ops->list(v->store, prefix, NULL, gfs_keylist_add, &children);
    for (size_t i = 0; i < children.n && r >= 0; i++) {
        char snap[GLIDEFS_NAME_MAX + 8] = "";
        if (gfs_marker_read(v->store, children.keys[i], snap, sizeof snap) < 0)
            continue;
        if (!snap[0] || gfs_snapshot_in_use(v->store, name, snap) <= 0)
            continue;
        char k[512];
        r = gfs_keylist_add(&out, children.keys[i], 0);
        snprintf(k, sizeof k, "nbd/%s/snap/%s", name, snap);
        if (r >= 0)
            r = gfs_keylist_add(&out, k, 0);
        struct gfs_snapinfo si;
        if (r < 0 || gfs_snap_read(v->store, name, snap, &si) < 0 || !si.manifest[0])
            continue;
        snprintf(k, sizeof k, "nbd/%s/manifest/%s", name, si.manifest);
        struct gfs_manchain c = {0};
        if (gfs_manchain_load(v->store, &v->log, name, k, v->codec, NULL, &c) < 0) {
            /* cannot tell what it needs: keep everything rather than guess */
            r = -EIO;
            break;
        }
        /* every link of its chain (a snapshot's is a base, but a store may
         * hold a delta) and the segments of ours they name */
        for (size_t l = 0; l < c.n && r >= 0; l++) {
            const struct gfs_manifest *m = &c.links[l];
            char lk[512];
            r = gfs_manchain_sibling(lk, sizeof lk, k, m->epoch, m->seq);
            if (r >= 0)
                r = gfs_keylist_add(&out, lk, 0);
            for (uint32_t j = 0; j < m->nsegs && r >= 0; j++) {
                if ((m->segs[j].epoch >> GFS_ORIGIN_SHIFT) != v->meta.depth)
                    continue; /* an ancestor's: not under our prefix */
                char sk[512];
                gfs_seg_key(sk, sizeof sk, name, m->segs[j].epoch & GFS_EPOCH_MASK,
                            m->segs[j].seq);
                r = gfs_keylist_add(&out, sk, 0);
            }
        }
        gfs_manchain_free(&c);
    }
    gfs_keylist_free(&children);
    if (r >= 0 && out.n)
        *tombstone = gfs_volmeta_text(&v->meta, 1);
    glidefs_volume_close(v);
    if (r < 0 || (out.n && !*tombstone)) {
        gfs_keylist_free(&out);
        return r < 0 ? r : -ENOMEM;
    }
    *keep = out.keys;
    *nkeep = out.n;
    return 0;
}

static int del_missing_ok(struct gfs_objstore *st, const char *key)
{
    int r = st->ops->del(st, key);
    return r == -ENOENT ? 0 : r;
}

/* `child` (a clone of `parent` from snapshot `snap`) is gone from the store
 * with nothing left of it: the parent stops pinning data for it. Its marker
 * goes, and the implicit "@clone-<child>" snapshot taken for it (a named
 * snapshot stays: the user made it). A parent that is itself a tombstone,
 * kept only for its clones, goes entirely once it has none left - and the
 * same is then done for its own parent, up the lineage. */
static int purge_forget(struct gfs_objstore *st, const char *parent, const char *child,
                        const char *snap)
{
    char p[GLIDEFS_NAME_MAX + 1], c[GLIDEFS_NAME_MAX + 1], s[GLIDEFS_NAME_MAX + 8];
    snprintf(p, sizeof p, "%s", parent);
    snprintf(c, sizeof c, "%s", child);
    snprintf(s, sizeof s, "%s", snap);
    char key[512];
    int r = 0;
    for (int depth = 0; p[0] && depth <= GFS_MAX_DEPTH; depth++) {
        snprintf(key, sizeof key, "nbd/%s/children/%s", p, c);
        r = del_missing_ok(st, key);
        char implicit[GLIDEFS_NAME_MAX + 8];
        snprintf(implicit, sizeof implicit, "@clone-%s", c);
        if (r == 0 && strcmp(s, implicit) == 0) {
            snprintf(key, sizeof key, "nbd/%s/snap/%s", p, s);
            r = del_missing_ok(st, key);
        }
        if (r < 0)
            return r;
        /* a live parent keeps the rest; a tombstone with clones left too */
        snprintf(key, sizeof key, "nbd/%s/volume.json", p);
        json_t *root;
        r = gfs_read_json(st, key, &root);
        if (r < 0)
            return r == -ENOENT ? 0 : r;
        int tomb = json_is_true(json_object_get(root, "deleted"));
        json_decref(root);
        if (!tomb)
            return 0;
        char prefix[512];
        snprintf(prefix, sizeof prefix, "nbd/%s/children/", p);
        struct gfs_keylist kids = {0};
        r = st->ops->list(st, prefix, NULL, gfs_keylist_add, &kids);
        size_t left = kids.n;
        gfs_keylist_free(&kids);
        if (r < 0)
            return r;
        if (left)
            return 0;
        char gp[GLIDEFS_NAME_MAX + 1], gs[GLIDEFS_NAME_MAX + 8];
        r = gfs_clone_origin(st, p, gp, sizeof gp, gs, sizeof gs);
        if (r < 0)
            return r;
        /* everything but the tombstone, then the tombstone: a crash in
         * between leaves a tombstone with no children, which the next purge
         * of this name removes */
        snprintf(prefix, sizeof prefix, "nbd/%s/", p);
        struct gfs_keylist all = {0};
        r = st->ops->list(st, prefix, NULL, gfs_keylist_add, &all);
        for (size_t i = 0; i < all.n && r >= 0; i++)
            if (strcmp(all.keys[i], key) != 0)
                r = del_missing_ok(st, all.keys[i]);
        gfs_keylist_free(&all);
        if (r == 0)
            r = del_missing_ok(st, key);
        if (r < 0)
            return r;
        snprintf(c, sizeof c, "%s", p);
        snprintf(p, sizeof p, "%s", gp);
        snprintf(s, sizeof s, "%s", gs);
    }
    return r;
}

static int stop_first(void *arg, const char *key, uint64_t size)
{
    (void)arg;
    (void)key;
    (void)size;
    return 1;
}

GLIDEFS_API int glidefs_volume_exists(const glidefs_config *cfg, const char *name)
{
    if (!cfg || !name || !glidefs_name_valid(name))
        return -EINVAL;
    struct gfs_objstore *st = NULL;
    char e[256];
    int r = gfs_objstore_open(cfg, (struct gfs_log *)&cfg->log, &st, e, sizeof e);
    if (r < 0)
        return r;
    char key[512];
    key_of(key, sizeof key, name, "volume.json");
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    r = st->ops->get(st, key, GFS_VOLUME_JSON_MAX, &buf, &len, NULL);
    gfs_objstore_close(st);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, 0, &jerr);
    int exists = root && !json_is_true(json_object_get(root, "deleted"));
    json_decref(root);
    return exists;
}

GLIDEFS_API int glidefs_store_check_info(const glidefs_config *cfg,
                                         struct glidefs_store_info *info, size_t info_size,
                                         char *err, size_t errlen)
{
    if (!cfg)
        return -EINVAL;
    struct glidefs_store_info res = {GLIDEFS_STORE_COND_UNKNOWN, ""};
    struct gfs_objstore *st = NULL;
    char e[256] = "";
    struct gfs_log *log = (struct gfs_log *)&cfg->log;
    int r = gfs_objstore_open(cfg, log, &st, e, sizeof e);
    if (r < 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s", e);
        return r;
    }
    if (gfs_objstore_is_azure(st)) {
        /* one line naming what is wrong: the container, the credentials ... */
        r = gfs_azure_check(st, err, errlen);
    } else if (gfs_objstore_is_s3(st)) {
        /* the bucket, the credentials, the region, TLS: each its own errno */
        r = gfs_s3_check(st, err, errlen);
    } else {
        r = st->ops->list(st, "nbd/", NULL, stop_first, NULL);
        if (r > 0)
            r = 0;
        if (r < 0 && err && errlen)
            snprintf(err, errlen, "storage %s: listing failed: %s", cfg->storage_url,
                     glidefs_strerror(r));
    }
    if (r == 0) {
        /* does the store honour the conditional writes leases rely on?
         * (store_probe.h) A lax store is no start-up error: one node alone
         * is safe on it; ownership.c refuses what is not. */
        r = gfs_store_probe(st, log, &res.conditional_writes, res.detail, sizeof res.detail);
        if (r < 0 && err && errlen)
            snprintf(err, errlen, "storage %s: the conditional-write probe failed: %s",
                     cfg->storage_url, glidefs_strerror(r));
        if (r == 0 && res.conditional_writes != GLIDEFS_STORE_COND_OK)
            gfs_err(log, "storage %s %s conditional writes (%s): taking a volume's write "
                    "lease from another node, promote and forced promote are refused%s",
                    cfg->storage_url,
                    res.conditional_writes == GLIDEFS_STORE_COND_IGNORED ? "ignores" : "breaks",
                    res.detail,
                    cfg->storage_unsafe_lax_takeover
                        ? " unless storage.unsafe_accept_split_brain_on_lax_store, which is "
                          "set: two nodes taking a lease at once could both write"
                        : "; one node alone stays safe");
        else if (r == 0 && res.detail[0])
            gfs_warn(log, "storage %s honours conditional writes, but %s", cfg->storage_url,
                     res.detail);
        if (r == 0) {
            /* remembered for the volumes opened from this config (config.h) */
            struct glidefs_config *w = (struct glidefs_config *)cfg;
            snprintf(w->probe_detail, sizeof w->probe_detail, "%s", res.detail);
            atomic_store_explicit(&w->probe_wall_ms, gfs_wall_ms(), memory_order_release);
            atomic_store_explicit(&w->probe_state, res.conditional_writes,
                                  memory_order_release);
        }
    }
    gfs_objstore_close(st);
    if (info && info_size)
        memcpy(info, &res, info_size < sizeof res ? info_size : sizeof res);
    return r;
}

GLIDEFS_API int glidefs_store_check(const glidefs_config *cfg, char *err, size_t errlen)
{
    return glidefs_store_check_info(cfg, NULL, 0, err, errlen);
}

GLIDEFS_API int glidefs_volume_delete(const glidefs_config *cfg, const char *name,
                                      unsigned flags)
{
    if (!cfg || !name || !glidefs_name_valid(name) || (flags & ~GLIDEFS_DELETE_PURGE))
        return -EINVAL;
    int purge_store = !!(flags & GLIDEFS_DELETE_PURGE);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", cfg->cache_dir, name);
    /* what live clones still need stays (opening it also refuses while in use) */
    char **keep = NULL, *tomb = NULL;
    size_t nkeep = 0;
    if (purge_store) {
        int pr = purge_plan(cfg, name, &keep, &nkeep, &tomb);
        if (pr < 0)
            return pr;
    }
    /* refuse while someone has it open */
    char lockp[4200];
    snprintf(lockp, sizeof lockp, "%s/lock", path);
    int fd = open(lockp, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            close(fd);
            for (size_t i = 0; i < nkeep; i++)
                free(keep[i]);
            free(keep);
            free(tomb);
            return -EBUSY;
        }
    }
    int r = 0;
    if (purge_store) {
        struct gfs_objstore *st = NULL;
        char e[256];
        r = gfs_objstore_open(cfg, (struct gfs_log *)&cfg->log, &st, e, sizeof e);
        if (r == 0) {
            char prefix[512];
            snprintf(prefix, sizeof prefix, "nbd/%s/", name);
            struct gfs_keylist d = {0};
            /* whose clone it is, read before volume.json goes */
            char par[GLIDEFS_NAME_MAX + 1], psnap[GLIDEFS_NAME_MAX + 8];
            r = gfs_clone_origin(st, name, par, sizeof par, psnap, sizeof psnap);
            if (r == 0)
                r = st->ops->list(st, prefix, NULL, gfs_keylist_add, &d);
            /* the tombstone first (the name can never be reused while clones
             * read its segments), volume.json last otherwise, so a
             * half-deleted volume is still recognisable */
            char vj[512];
            snprintf(vj, sizeof vj, "nbd/%s/volume.json", name);
            if (tomb && r >= 0)
                r = st->ops->put(st, vj, tomb, strlen(tomb), 0, NULL);
            /* everything else in as few requests as the store allows
             * (DeleteObjects: 1000 keys each) */
            size_t nd = 0;
            for (size_t i = 0; i < d.n && r >= 0; i++) {
                int kept = strcmp(d.keys[i], vj) == 0;
                for (size_t k = 0; k < nkeep && !kept; k++)
                    kept = strcmp(d.keys[i], keep[k]) == 0;
                if (!kept) {
                    char *t = d.keys[nd]; /* to the front; every key is freed below */
                    d.keys[nd++] = d.keys[i];
                    d.keys[i] = t;
                }
            }
            if (nd && r >= 0)
                r = gfs_objstore_del_many(st, (const char *const *)d.keys, nd, NULL);
            if (!tomb && r >= 0)
                r = st->ops->del(st, vj);
            /* nothing of it left: its parent stops pinning data for it */
            if (!tomb && r >= 0 && par[0])
                r = purge_forget(st, par, name, psnap);
            gfs_keylist_free(&d);
            gfs_objstore_close(st);
        }
    }
    if (r == 0) {
        r = gfs_rm_tree(path);
        if (r == -ENOENT)
            r = 0;
        if (cfg->budget)
            gfs_budget_unpark(cfg->budget, path); /* its kept cache is gone with it */
    }
    if (fd >= 0)
        close(fd);
    for (size_t i = 0; i < nkeep; i++)
        free(keep[i]);
    free(keep);
    free(tomb);
    return r;
}
