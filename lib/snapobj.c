/*
 * snapobj.c — snapshot objects, clone markers and a volume.json's parent
 * (snapobj.h): decoding them (input from the store: trust nothing) and
 * the store queries built on them.
 */
#include "snapobj.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "glidefs/glidefs.h"
#include "objstore.h"
#include "segment.h"

int gfs_read_json(struct gfs_objstore *st, const char *key, json_t **out)
{
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    int r = st->ops->get(st, key, GFS_SNAP_JSON_MAX, &buf, &len, NULL);
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

int gfs_snap_read(struct gfs_objstore *st, const char *vol, const char *name,
                     struct gfs_snapinfo *si)
{
    char key[512];
    snprintf(key, sizeof key, "nbd/%s/snap/%s", vol, name);
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    int r = st->ops->get(st, key, GFS_SNAP_JSON_MAX, &buf, &len, NULL);
    if (r < 0)
        return r == -EFBIG ? -EIO : r;
    return gfs_snap_parse(buf, len, name, si);
}

/* The snapshot a clone marker names ("" when it names none validly). */
int gfs_marker_read(struct gfs_objstore *st, const char *key, char *snap, size_t slen)
{
    snap[0] = '\0';
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    int r = st->ops->get(st, key, GFS_SNAP_JSON_MAX, &buf, &len, NULL);
    if (r < 0)
        return r == -EFBIG ? -EIO : r;
    return gfs_child_marker_parse(buf, len, snap, slen);
}

/* Does a live clone use snapshot `snap` of volume `vol`? */
int gfs_snapshot_in_use(struct gfs_objstore *st, const char *vol, const char *snap)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "nbd/%s/children/", vol);
    struct gfs_keylist l = {0};
    int r = st->ops->list(st, prefix, NULL, gfs_keylist_add, &l);
    int used = 0;
    for (size_t i = 0; i < l.n && r >= 0 && !used; i++) {
        char s[GLIDEFS_NAME_MAX + 8];
        if (!glidefs_name_valid(strrchr(l.keys[i], '/') + 1) ||
            gfs_marker_read(st, l.keys[i], s, sizeof s) < 0 || strcmp(s, snap) != 0)
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
    gfs_keylist_free(&l);
    return r < 0 ? r : used;
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
    int r = st->ops->get(st, key, GFS_VOLUME_JSON_MAX, &buf, &len, NULL);
    if (r == -ENOENT || r == -EFBIG)
        return 0;
    if (r < 0)
        return r;
    if (gfs_clone_origin_parse(buf, len, parent, plen, snap, slen) < 0)
        parent[0] = snap[0] = '\0'; /* names no parent validly: touch none */
    return 0;
}
