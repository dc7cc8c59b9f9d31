/*
 * snapshot.c — named snapshots and clones.
 *
 * A snapshot is one small object, nbd/<vol>/snap/<name>, naming the manifest
 * that held the volume's drained state when it was taken. It pins that
 * manifest and every segment the manifest references: compaction and purge
 * leave them alone. A clone is a new volume whose volume.json names its
 * lineage (ancestors, root first) and its parent's snapshot manifest as its
 * base; it shares the ancestors' segments and writes only to its own prefix.
 * Creating one is three small PUTs whatever the parent's size; the child's
 * volume.json is written last, with If-None-Match, so a crash leaves either
 * no clone or a complete one. Its map is flat (manifests record each
 * segment's origin), so reads never walk the chain.
 */
#include "volume_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cleanup.h"
#include "manifest.h"
#include "segment.h"

#define SNAP_JSON_MAX (16u << 10)
#define VOLUME_JSON_MAX (64u << 10) /* as volmeta.c */
#define MANIFEST_MAX (4ull << 30)

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
    return v->npins && bsearch(&k, v->pins, v->npins, sizeof k, cmp_pin) != NULL;
}

int gfs_manifest_pinned(const struct glidefs_volume *v, const char *key)
{
    for (size_t i = 0; i < v->npinned_manifests; i++)
        if (strcmp(v->pinned_manifests[i], key) == 0)
            return 1;
    return 0;
}

/* Is `epoch` (our own, without origin bits) held for a fenced node? (lock held) */
int gfs_held_epoch(const struct glidefs_volume *v, uint64_t epoch)
{
    for (size_t i = 0; i < v->nholds; i++)
        if (v->holds[i].epoch == epoch)
            return 1;
    return 0;
}

void gfs_snapshots_free(struct glidefs_volume *v)
{
    free(v->holds);
    v->holds = NULL;
    v->nholds = 0;
    free(v->pins);
    for (size_t i = 0; i < v->npinned_manifests; i++)
        free(v->pinned_manifests[i]);
    free(v->pinned_manifests);
    v->pins = NULL;
    v->npins = 0;
    v->pinned_manifests = NULL;
    v->npinned_manifests = 0;
}

struct keylist {
    char **keys;
    size_t n, cap;
};

static int collect_keys(void *arg, const char *key, uint64_t size)
{
    (void)size;
    struct keylist *l = arg;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        char **nk = realloc(l->keys, nc * sizeof *nk);
        if (!nk)
            return -ENOMEM;
        l->keys = nk;
        l->cap = nc;
    }
    l->keys[l->n] = strdup(key);
    return l->keys[l->n++] ? 0 : -ENOMEM;
}

static void keylist_free(struct keylist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i]);
    free(l->keys);
}

static int read_json(struct gfs_objstore *st, const char *key, json_t **out)
{
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    int r = st->ops->get(st, key, SNAP_JSON_MAX, &buf, &len, NULL);
    if (r < 0)
        return r == -EFBIG ? -EIO : r;
    json_error_t jerr;
    *out = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    return *out ? 0 : -EIO;
}

int gfs_snap_name_ok(const char *s)
{
    if (!s || s[0] != '@')
        return glidefs_name_valid(s);
    size_t n = strlen(s);
    if (n < 2 || n > GLIDEFS_NAME_MAX + 7)
        return 0;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int gfs_snap_parse(const char *buf, size_t len, const char *name, struct gfs_snapinfo *si)
{
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return -EIO;
    json_t *nm = json_object_get(root, "name");
    json_t *man = json_object_get(root, "manifest");
    json_t *created = json_object_get(root, "created_ms");
    json_t *size = json_object_get(root, "size");
    uint64_t e, s;
    int r = -EIO;
    /* the size becomes a clone's volume size: the same bounds as volume.json */
    if (json_is_object(root) && json_is_integer(size) && json_integer_value(size) > 0 &&
        json_integer_value(size) % 512 == 0 &&
        (uint64_t)json_integer_value(size) <= GLIDEFS_MAX_VOLUME_SIZE &&
        (!created || (json_is_integer(created) && json_integer_value(created) >= 0)) &&
        (!nm || (json_is_string(nm) && name && strcmp(json_string_value(nm), name) == 0)) &&
        (json_is_null(man) ||
         (json_is_string(man) && gfs_parse_epoch_seq(json_string_value(man), &e, &s) == 0))) {
        snprintf(si->manifest, sizeof si->manifest, "%s",
                 json_is_string(man) ? json_string_value(man) : "");
        si->created_ms = json_is_integer(created) ? json_integer_value(created) : 0;
        si->size = (uint64_t)json_integer_value(size);
        r = 0;
    }
    json_decref(root);
    return r;
}

int gfs_child_marker_parse(const char *buf, size_t len, char *snap, size_t slen)
{
    snap[0] = '\0';
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *s = root ? json_object_get(root, "snapshot") : NULL;
    int r = -EIO;
    if (json_is_string(s) && gfs_snap_name_ok(json_string_value(s)) &&
        strlen(json_string_value(s)) < slen) {
        snprintf(snap, slen, "%s", json_string_value(s));
        r = 0;
    }
    json_decref(root);
    return r;
}

int gfs_clone_origin_parse(const char *buf, size_t len, char *parent, size_t plen, char *snap,
                           size_t slen)
{
    parent[0] = snap[0] = '\0';
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return -EIO;
    json_t *par = json_object_get(root, "parent");
    json_t *pn = json_is_object(par) ? json_object_get(par, "name") : NULL;
    json_t *ps = json_is_object(par) ? json_object_get(par, "snapshot") : NULL;
    int r = par ? -EIO : 0;
    if (json_is_string(pn) && json_is_string(ps) && glidefs_name_valid(json_string_value(pn)) &&
        gfs_snap_name_ok(json_string_value(ps)) && strlen(json_string_value(pn)) < plen &&
        strlen(json_string_value(ps)) < slen) {
        snprintf(parent, plen, "%s", json_string_value(pn));
        snprintf(snap, slen, "%s", json_string_value(ps));
        r = 0;
    }
    json_decref(root);
    return r;
}

static int snap_read(struct gfs_objstore *st, const char *vol, const char *name,
                     struct gfs_snapinfo *si)
{
    char key[512];
    snprintf(key, sizeof key, "nbd/%s/snap/%s", vol, name);
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    int r = st->ops->get(st, key, SNAP_JSON_MAX, &buf, &len, NULL);
    if (r < 0)
        return r == -EFBIG ? -EIO : r;
    return gfs_snap_parse(buf, len, name, si);
}

/* The snapshot a clone marker names ("" when it names none validly). */
static int marker_read(struct gfs_objstore *st, const char *key, char *snap, size_t slen)
{
    snap[0] = '\0';
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    int r = st->ops->get(st, key, SNAP_JSON_MAX, &buf, &len, NULL);
    if (r < 0)
        return r == -EFBIG ? -EIO : r;
    return gfs_child_marker_parse(buf, len, snap, slen);
}

/* Append the segments manifest `mkey` names to *pins, and the key to *mans. */
static int pins_of_manifest(struct glidefs_volume *v, const char *mkey, struct gfs_pin **pins,
                            size_t *npins, char ***mans, size_t *nmans)
{
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    int r = v->store->ops->get(v->store, mkey, MANIFEST_MAX, &buf, &len, NULL);
    struct gfs_manifest m;
    if (r == 0)
        r = gfs_manifest_decode_mac(buf, len, v->codec, &m) < 0 ? -EIO : 0;
    if (r < 0)
        return r;
    struct gfs_pin *np = realloc(*pins, (*npins + m.nsegs + 1) * sizeof *np);
    if (np)
        *pins = np;
    char **nm = realloc(*mans, (*nmans + 1) * sizeof *nm);
    if (nm)
        *mans = nm;
    if (!np || !nm || !((*mans)[*nmans] = strdup(mkey))) {
        gfs_manifest_free(&m);
        return -ENOMEM;
    }
    (*nmans)++;
    for (uint32_t k = 0; k < m.nsegs; k++)
        (*pins)[(*npins)++] = (struct gfs_pin){m.segs[k].epoch, m.segs[k].seq};
    gfs_manifest_free(&m);
    return 0;
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
    for (;;) {
        pthread_mutex_lock(&v->lock);
        uint64_t gen = v->snap_gen;
        pthread_mutex_unlock(&v->lock);
        char prefix[512];
        snprintf(prefix, sizeof prefix, "nbd/%s/snap/", v->name);
        struct keylist l = {0};
        int r = v->store->ops->list(v->store, prefix, NULL, collect_keys, &l);
        struct gfs_pin *pins = NULL;
        size_t npins = 0;
        char **mans = NULL;
        size_t nmans = 0;
        struct gfs_hold *holds = NULL;
        size_t nholds = 0;
        for (size_t i = 0; i < l.n && r >= 0; i++) {
            struct gfs_snapinfo si;
            const char *sname = strrchr(l.keys[i], '/') + 1;
            r = snap_read(v->store, v->name, sname, &si);
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
        }
        keylist_free(&l);
        if (r < 0) {
            pins_free(pins, mans, nmans);
            free(holds);
            return r;
        }
        if (npins)
            qsort(pins, npins, sizeof *pins, cmp_pin);
        pthread_mutex_lock(&v->lock);
        if (v->snap_gen != gen) {
            pthread_mutex_unlock(&v->lock);
            pins_free(pins, mans, nmans);
            free(holds);
            continue;
        }
        gfs_snapshots_free(v);
        v->holds = holds;
        v->nholds = nholds;
        v->pins = pins;
        v->npins = npins;
        v->pinned_manifests = mans;
        v->npinned_manifests = nmans;
        pthread_mutex_unlock(&v->lock);
        return 0;
    }
}

/* Pin manifest `mkey` now, before the snapshot naming it is stored: from the
 * moment the snapshot exists, compaction must keep what it names. */
static int pin_now(struct glidefs_volume *v, const char *mkey)
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
    v->snap_gen++;
    struct gfs_pin *np = realloc(v->pins, (v->npins + npins + 1) * sizeof *np);
    char **nm = realloc(v->pinned_manifests, (v->npinned_manifests + 1) * sizeof *nm);
    if (np)
        v->pins = np;
    if (nm)
        v->pinned_manifests = nm;
    if (np && nm) {
        memcpy(v->pins + v->npins, pins, npins * sizeof *pins);
        v->npins += npins;
        qsort(v->pins, v->npins, sizeof *v->pins, cmp_pin);
        v->pinned_manifests[v->npinned_manifests++] = mans[0];
        mans[0] = NULL;
    }
    pthread_mutex_unlock(&v->lock);
    pins_free(pins, mans, nmans);
    return np && nm ? 0 : -ENOMEM;
}

/* Take snapshot `name` (internal names may start with '@'). */
static int snapshot_take(glidefs_volume *v, const char *name)
{
    pthread_mutex_lock(&v->lock);
    int owner = v->owner && !v->fenced;
    pthread_mutex_unlock(&v->lock);
    if (!owner)
        return -EROFS;
    int r = glidefs_drain(v, -1); /* stores a manifest covering everything */
    if (r < 0)
        return r;
    pthread_mutex_lock(&v->lock);
    int need_own = v->meta.depth && !v->manifest_epoch && !v->manifest_seq && !v->manifest_gen;
    pthread_mutex_unlock(&v->lock);
    if (need_own) {
        /* a clone still reading its parent's manifest: store its own (key
         * 0-0 when it has no segments yet), or the snapshot would name none */
        r = gfs_volume_write_manifest_force(v);
        if (r < 0)
            return r;
    }
    pthread_mutex_lock(&v->lock);
    char man[40] = "";
    if (v->manifest_epoch || v->manifest_seq || v->manifest_gen)
        snprintf(man, sizeof man, "%016" PRIx64 "-%016" PRIx64, v->manifest_epoch,
                 v->manifest_seq);
    int covered = v->segs_since_manifest == 0;
    uint64_t size = v->size;
    pthread_mutex_unlock(&v->lock);
    if (!covered)
        return -EAGAIN; /* the writer raced us; the caller may retry */
    json_t *root = json_pack("{s:s, s:o, s:I, s:I}", "name", name, "manifest",
                             man[0] ? json_string(man) : json_null(), "created_ms",
                             (json_int_t)gfs_wall_ms(), "size", (json_int_t)size);
    CLEANUP_FREE char *txt = root ? json_dumps(root, JSON_SORT_KEYS) : NULL;
    json_decref(root);
    if (!txt)
        return -ENOMEM;
    char key[512];
    if (man[0]) {
        snprintf(key, sizeof key, "nbd/%s/manifest/%s", v->name, man);
        r = pin_now(v, key);
        if (r < 0)
            return r;
    }
    snprintf(key, sizeof key, "nbd/%s/snap/%s", v->name, name);
    r = v->store->ops->put(v->store, key, txt, strlen(txt), GFS_PUT_IF_NONE_MATCH, NULL);
    if (r < 0)
        return r;
    gfs_info(&v->log, "%s: snapshot %s taken (manifest %s)", v->name, name, man[0] ? man : "none");
    return gfs_snapshots_load(v);
}

GLIDEFS_API int glidefs_snapshot_create(glidefs_volume *v, const char *name)
{
    if (!name || !glidefs_name_valid(name))
        return -EINVAL;
    return snapshot_take(v, name);
}

GLIDEFS_API int glidefs_snapshot_list(glidefs_volume *v, glidefs_snapshot_fn fn, void *arg)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "nbd/%s/snap/", v->name);
    struct keylist l = {0};
    int r = v->store->ops->list(v->store, prefix, NULL, collect_keys, &l);
    for (size_t i = 0; i < l.n && r >= 0; i++) {
        const char *name = strrchr(l.keys[i], '/') + 1;
        if (!glidefs_name_valid(name))
            continue; /* internal ones (a clone's implicit snapshot) */
        struct gfs_snapinfo si;
        if (snap_read(v->store, v->name, name, &si) == 0)
            r = fn(arg, name, si.created_ms, si.size);
    }
    keylist_free(&l);
    return r < 0 ? r : 0;
}

/* Does a live clone use snapshot `snap` of volume `vol`? */
static int snapshot_in_use(struct gfs_objstore *st, const char *vol, const char *snap)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "nbd/%s/children/", vol);
    struct keylist l = {0};
    int r = st->ops->list(st, prefix, NULL, collect_keys, &l);
    int used = 0;
    for (size_t i = 0; i < l.n && r >= 0 && !used; i++) {
        char s[GLIDEFS_NAME_MAX + 8];
        if (!glidefs_name_valid(strrchr(l.keys[i], '/') + 1) ||
            marker_read(st, l.keys[i], s, sizeof s) < 0 || strcmp(s, snap) != 0)
            continue;
        /* a tombstone counts too: it is left only while clones of that child
         * still read through it */
        char ck[512];
        snprintf(ck, sizeof ck, "nbd/%s/volume.json", strrchr(l.keys[i], '/') + 1);
        /* whatever it holds (a deep clone's is larger than a marker; a
         * corrupt one may still need the data): it exists, so it counts */
        struct gfs_obj_info info;
        int h = st->ops->head(st, ck, &info);
        if (h == 0)
            used = 1;
        else if (h != -ENOENT)
            r = h;
    }
    keylist_free(&l);
    return r < 0 ? r : used;
}

GLIDEFS_API int glidefs_snapshot_delete(glidefs_volume *v, const char *name)
{
    if (!name || !glidefs_name_valid(name))
        return -EINVAL;
    pthread_mutex_lock(&v->lock);
    int owner = v->owner && !v->fenced;
    pthread_mutex_unlock(&v->lock);
    if (!owner)
        return -EROFS;
    struct gfs_snapinfo si;
    int r = snap_read(v->store, v->name, name, &si);
    if (r < 0)
        return r;
    r = snapshot_in_use(v->store, v->name, name);
    if (r < 0)
        return r;
    if (r > 0)
        return -EBUSY;
    char key[512];
    snprintf(key, sizeof key, "nbd/%s/snap/%s", v->name, name);
    r = v->store->ops->del(v->store, key);
    return r < 0 ? r : gfs_snapshots_load(v);
}

GLIDEFS_API int glidefs_volume_lineage(glidefs_volume *v, char names[][GLIDEFS_NAME_MAX + 1],
                                       int max, char *snapshot, size_t snaplen)
{
    SCOPED_LOCK(&v->lock);
    int n = (int)v->meta.depth;
    for (int i = 0; i < n && i < max; i++)
        snprintf(names[i], GLIDEFS_NAME_MAX + 1, "%s", v->meta.lineage[i]);
    if (snapshot && snaplen)
        snprintf(snapshot, snaplen, "%s", n ? v->meta.parent_snapshot : "");
    return n;
}

GLIDEFS_API int glidefs_clone(glidefs_volume *parent, const char *snapshot, const char *child)
{
    if (!child || !glidefs_name_valid(child) || strcmp(child, parent->name) == 0 ||
        (snapshot && !glidefs_name_valid(snapshot)))
        return -EINVAL;
    if (parent->meta.depth + 1 > GFS_MAX_DEPTH)
        return -EMLINK;
    char snap[GLIDEFS_NAME_MAX + 8];
    char key[512];
    int r;
    /* the child must not exist (a tombstone counts): refuse before writing anything */
    snprintf(key, sizeof key, "nbd/%s/volume.json", child);
    struct gfs_obj_info info;
    r = parent->store->ops->head(parent->store, key, &info);
    if (r == 0)
        return -EEXIST;
    if (r != -ENOENT)
        return r;
    if (snapshot) {
        snprintf(snap, sizeof snap, "%s", snapshot);
    } else {
        /* of the current flushed state: an implicit snapshot only this clone
         * uses; one left by a crashed attempt (or a deleted clone of the same
         * name) is stale, so take it anew */
        snprintf(snap, sizeof snap, "@clone-%s", child);
        snprintf(key, sizeof key, "nbd/%s/snap/%s", parent->name, snap);
        r = parent->store->ops->del(parent->store, key);
        if (r == 0)
            r = snapshot_take(parent, snap);
        if (r < 0)
            return r;
    }
    struct gfs_snapinfo si;
    r = snap_read(parent->store, parent->name, snap, &si);
    if (r < 0)
        return r == -ENOENT ? -ENOENT : r;

    struct gfs_volmeta *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    pthread_mutex_lock(&parent->lock);
    *m = parent->meta;
    pthread_mutex_unlock(&parent->lock);
    /* a new identity; the data identity (seals, MACs, key wrap) stays the root's */
    if (getrandom(m->uuid, 16, 0) != 16) {
        free(m);
        return -EIO;
    }
    m->uuid[6] = (m->uuid[6] & 0x0f) | 0x40;
    m->uuid[8] = (m->uuid[8] & 0x3f) | 0x80;
    snprintf(m->uuid_str, sizeof m->uuid_str,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", m->uuid[0],
             m->uuid[1], m->uuid[2], m->uuid[3], m->uuid[4], m->uuid[5], m->uuid[6], m->uuid[7],
             m->uuid[8], m->uuid[9], m->uuid[10], m->uuid[11], m->uuid[12], m->uuid[13],
             m->uuid[14], m->uuid[15]);
    snprintf(m->lineage[m->depth], sizeof m->lineage[m->depth], "%s", parent->name);
    m->depth++;
    m->size = si.size;
    m->created_ms = gfs_wall_ms();
    snprintf(m->parent_snapshot, sizeof m->parent_snapshot, "%s", snap);
    snprintf(m->base_manifest, sizeof m->base_manifest, "%s", si.manifest);
    CLEANUP_FREE char *txt = gfs_volmeta_text(m, 0);
    free(m);
    if (!txt)
        return -ENOMEM;

    /* the parent learns of the child first: a crash here leaves only a marker
     * (the child does not exist, so a marker of that name is stale) */
    json_t *mk = json_pack("{s:s, s:I}", "snapshot", snap, "created_ms",
                           (json_int_t)gfs_wall_ms());
    CLEANUP_FREE char *mtxt = mk ? json_dumps(mk, JSON_SORT_KEYS) : NULL;
    json_decref(mk);
    if (!mtxt)
        return -ENOMEM;
    snprintf(key, sizeof key, "nbd/%s/children/%s", parent->name, child);
    r = parent->store->ops->put(parent->store, key, mtxt, strlen(mtxt), 0, NULL);
    if (r < 0)
        return r;
    snprintf(key, sizeof key, "nbd/%s/volume.json", child);
    r = parent->store->ops->put(parent->store, key, txt, strlen(txt), GFS_PUT_IF_NONE_MATCH, NULL);
    if (r == 0)
        gfs_info(&parent->log, "%s: cloned into %s from snapshot %s", parent->name, child, snap);
    return r;
}

/* For a purge: the store keys of `name` that live clones still need (their
 * snapshots, those snapshots' manifests and the segments of ours they name,
 * the children markers), and the tombstone volume.json to leave in place of
 * the real one (so the name is never reused under their feet). *keep gets
 * a malloc'd array of malloc'd keys; *tombstone NULL when no clone lives. */
int gfs_purge_plan(const struct glidefs_config *cfg, const char *name, char ***keep,
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
    struct keylist children = {0}, out = {0};
    r = v->store->ops->list(v->store, prefix, NULL, collect_keys, &children);
    for (size_t i = 0; i < children.n && r >= 0; i++) {
        char snap[GLIDEFS_NAME_MAX + 8] = "";
        if (marker_read(v->store, children.keys[i], snap, sizeof snap) < 0)
            continue;
        if (!snap[0] || snapshot_in_use(v->store, name, snap) <= 0)
            continue;
        char k[512];
        r = collect_keys(&out, children.keys[i], 0);
        snprintf(k, sizeof k, "nbd/%s/snap/%s", name, snap);
        if (r >= 0)
            r = collect_keys(&out, k, 0);
        struct gfs_snapinfo si;
        if (r < 0 || snap_read(v->store, name, snap, &si) < 0 || !si.manifest[0])
            continue;
        snprintf(k, sizeof k, "nbd/%s/manifest/%s", name, si.manifest);
        r = collect_keys(&out, k, 0);
        CLEANUP_FREE void *buf = NULL;
        size_t len = 0;
        struct gfs_manifest m;
        if (r < 0 || v->store->ops->get(v->store, k, MANIFEST_MAX, &buf, &len, NULL) < 0 ||
            gfs_manifest_decode_mac(buf, len, v->codec, &m) < 0) {
            /* cannot tell what it needs: keep everything rather than guess */
            r = -EIO;
            break;
        }
        for (uint32_t j = 0; j < m.nsegs && r >= 0; j++) {
            if ((m.segs[j].epoch >> GFS_ORIGIN_SHIFT) != v->meta.depth)
                continue; /* an ancestor's: not under our prefix */
            gfs_seg_key(k, sizeof k, name, m.segs[j].epoch & GFS_EPOCH_MASK, m.segs[j].seq);
            r = collect_keys(&out, k, 0);
        }
        gfs_manifest_free(&m);
    }
    keylist_free(&children);
    if (r >= 0 && out.n)
        *tombstone = gfs_volmeta_text(&v->meta, 1);
    glidefs_volume_close(v);
    if (r < 0 || (out.n && !*tombstone)) {
        keylist_free(&out);
        return r < 0 ? r : -ENOMEM;
    }
    *keep = out.keys;
    *nkeep = out.n;
    return 0;
}

/* The volume `name` is a clone of: its parent's name and the snapshot it was
 * taken from, read from its volume.json (or tombstone); both "" for a root,
 * a missing volume, or a volume.json that does not say (then nothing of the
 * parent's is touched). */
int gfs_clone_origin(struct gfs_objstore *st, const char *name, char *parent, size_t plen,
                     char *snap, size_t slen)
{
    parent[0] = snap[0] = '\0';
    char key[512];
    snprintf(key, sizeof key, "nbd/%s/volume.json", name);
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    int r = st->ops->get(st, key, VOLUME_JSON_MAX, &buf, &len, NULL);
    if (r == -ENOENT || r == -EFBIG)
        return 0;
    if (r < 0)
        return r;
    if (gfs_clone_origin_parse(buf, len, parent, plen, snap, slen) < 0)
        parent[0] = snap[0] = '\0'; /* names no parent validly: touch none */
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
int gfs_purge_forget(struct gfs_objstore *st, const char *parent, const char *child,
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
        r = read_json(st, key, &root);
        if (r < 0)
            return r == -ENOENT ? 0 : r;
        int tomb = json_is_true(json_object_get(root, "deleted"));
        json_decref(root);
        if (!tomb)
            return 0;
        char prefix[512];
        snprintf(prefix, sizeof prefix, "nbd/%s/children/", p);
        struct keylist kids = {0};
        r = st->ops->list(st, prefix, NULL, collect_keys, &kids);
        size_t left = kids.n;
        keylist_free(&kids);
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
        struct keylist all = {0};
        r = st->ops->list(st, prefix, NULL, collect_keys, &all);
        for (size_t i = 0; i < all.n && r >= 0; i++)
            if (strcmp(all.keys[i], key) != 0)
                r = del_missing_ok(st, all.keys[i]);
        keylist_free(&all);
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

/* We just took the write lease from a holder that had not released it
 * (forced, or its heartbeat expired): that node may come back with writes
 * it never uploaded, kept aside, and glidefs_fenced_export rebuilds its view
 * from the store. Hold that view: an implicit snapshot "@fenced-<epoch>" of
 * the state we took over pins its manifest and segments, and compaction
 * keeps that epoch's late segments while it exists, until
 * compaction.fenced_hold_s has passed (compactor.c). Best effort: a failure
 * is logged, the takeover stands. */
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
        r = snap_read(st, name, rs->r[i].name, &si);
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

int gfs_fence_hold(struct glidefs_volume *v)
{
    pthread_mutex_lock(&v->lock);
    uint64_t e = v->took_from_epoch;
    v->took_from_epoch = 0;
    pthread_mutex_unlock(&v->lock);
    if (!e || v->fenced_hold_ms <= 0)
        return 0;
    char name[GLIDEFS_NAME_MAX + 8];
    snprintf(name, sizeof name, "%s%" PRIu64, GFS_FENCED_HOLD_PREFIX, e);
    int r = snapshot_take(v, name);
    if (r == -EEXIST)
        r = 0;
    if (r < 0)
        gfs_warn(&v->log, "%s: cannot hold the data of fenced epoch %" PRIu64
                 " for its node: %s (its kept-aside writes may become unexportable once "
                 "compaction runs)", v->name, e, glidefs_strerror(r));
    else
        gfs_info(&v->log, "%s: holding the view of fenced epoch %" PRIu64 " (snapshot %s)",
                 v->name, e, name);
    return r;
}

/* Holds older than compaction.fenced_hold_s go: that node had its time to
 * export what it kept (it still can after, while the data happens to be
 * there). Returns how many went, or a negative errno. */
int gfs_fence_holds_expire(struct glidefs_volume *v)
{
    int64_t now = gfs_wall_ms();
    int n = 0, r = 0;
    pthread_mutex_lock(&v->lock);
    size_t nh = v->nholds;
    struct gfs_hold *h = nh ? malloc(nh * sizeof *h) : NULL;
    if (h)
        memcpy(h, v->holds, nh * sizeof *h);
    pthread_mutex_unlock(&v->lock);
    if (nh && !h)
        return -ENOMEM;
    for (size_t i = 0; i < nh && r >= 0; i++) {
        if (v->fenced_hold_ms > 0 && now - h[i].created_ms < v->fenced_hold_ms)
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
