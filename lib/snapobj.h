/*
 * snapobj.h — the small JSON objects around snapshots and clones in the
 * store (docs/design.md 5.9): snapshot objects nbd/<vol>/snap/<name>,
 * clone markers nbd/<vol>/children/<child>, and the parent a volume.json
 * (or tombstone) names. Decoders that trust nothing, readers that GET and
 * decode, and the store-side questions purge and snapshot deletion ask.
 */
#ifndef GLIDEFS_SNAPOBJ_H
#define GLIDEFS_SNAPOBJ_H

#include <stddef.h>
#include <stdint.h>

struct gfs_objstore;

/* implicit snapshot holding a fenced epoch's view for its node (snapshot.c) */
#define GFS_FENCED_HOLD_PREFIX "@fenced-"
#define GFS_SNAP_JSON_MAX (16u << 10)
#define GFS_VOLUME_JSON_MAX (64u << 10)
#define GFS_MANIFEST_MAX (4ull << 30)

/* A snapshot name a key may carry: a user's (glidefs_name_valid) or an
 * internal one ("@clone-<child>", "@fenced-<epoch>"). */
int gfs_snap_name_ok(const char *s);

/* A snapshot object nbd/<vol>/snap/<name>, validated (its name field, if
 * any, must be <name>). -EIO when malformed. */
struct gfs_snapinfo {
    char manifest[40]; /* "<epoch>-<seq>", "" when the volume held nothing */
    int64_t created_ms;
    uint64_t size;
};
int gfs_snap_parse(const char *buf, size_t len, const char *name, struct gfs_snapinfo *si);
/* GET and parse snapshot `name` of volume `vol`. */
int gfs_snap_read(struct gfs_objstore *st, const char *vol, const char *name,
                  struct gfs_snapinfo *si);

/* A clone marker nbd/<vol>/children/<child>: the snapshot the child was made
 * from, into snap (slen bytes). -EIO when malformed. */
int gfs_child_marker_parse(const char *buf, size_t len, char *snap, size_t slen);
/* GET and parse the marker at key ("" when it names none validly). */
int gfs_marker_read(struct gfs_objstore *st, const char *key, char *snap, size_t slen);

/* The parent name and snapshot a volume.json (or tombstone) names; both ""
 * for a root or a volume.json that does not say. -EIO when it names them
 * but not validly. */
int gfs_clone_origin_parse(const char *buf, size_t len, char *parent, size_t plen, char *snap,
                           size_t slen);
/* The same read from the store for volume `name`; both "" for a root, a
 * missing volume, or a volume.json that does not say validly. */
int gfs_clone_origin(struct gfs_objstore *st, const char *name, char *parent, size_t plen,
                     char *snap, size_t slen);

/* Does a live clone use snapshot `snap` of volume `vol`? 1, 0, or -errno. */
int gfs_snapshot_in_use(struct gfs_objstore *st, const char *vol, const char *snap);

/* GET a JSON object of at most GFS_SNAP_JSON_MAX bytes. -EIO when it is not JSON. */
struct json_t;
int gfs_read_json(struct gfs_objstore *st, const char *key, struct json_t **out);

#endif
