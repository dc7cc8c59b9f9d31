/*
 * volmeta.h — a volume's volume.json (docs/design.md 5.4): its identity,
 * size, block size, coding and lineage; parsed and validated, written,
 * followed (a reader learning a resize), rewritten by resize and rekey.
 * Also the origin bits a clone's segments carry (5.3).
 */
#ifndef GLIDEFS_VOLMETA_H
#define GLIDEFS_VOLMETA_H

#include <stddef.h>
#include <stdint.h>

#include "glidefs/glidefs.h"
#include "keywrap.h"

struct gfs_log;
struct glidefs_volume;

/* Clones: a volume's segments may live in its ancestors' prefixes. In the
 * block map and in manifests a segment's epoch carries its origin — its
 * depth in the lineage, the root being 0 — in the top 8 bits, so a root
 * volume's format is unchanged and a clone's own segments (origin = depth)
 * sort after everything it inherits. */
#define GFS_ORIGIN_SHIFT 56
#define GFS_MAX_DEPTH 255
#define GFS_EPOCH_MASK ((UINT64_C(1) << GFS_ORIGIN_SHIFT) - 1)
static inline uint64_t gfs_ep(uint32_t origin, uint64_t epoch)
{
    return ((uint64_t)origin << GFS_ORIGIN_SHIFT) | epoch;
}

struct gfs_volmeta {
    uint32_t format;
    uint8_t uuid[16];
    char uuid_str[40];
    uint8_t data_uuid[16];      /* the lineage root's uuid: seals, MACs and key wraps bind it */
    char data_uuid_str[40];
    uint32_t depth;             /* ancestors in lineage[] */
    char lineage[GFS_MAX_DEPTH][GLIDEFS_NAME_MAX + 1]; /* root first; the parent last */
    char parent_snapshot[GLIDEFS_NAME_MAX + 8];
    char base_manifest[40];     /* "<epoch>-<seq>" of the parent's snapshot manifest, "" if none */
    uint64_t size;
    uint32_t block_size;
    int64_t created_ms;
    char compression[16];       /* "none" or "zstd": how new blocks are stored */
    int encrypted;
    struct gfs_keywrap kw;      /* the password-wrapped data key (encrypted volumes) */
};

/* The prefix name of the volume that stores segments of origin o (name:
 * the volume's own). */
static inline const char *gfs_origin_name(const struct gfs_volmeta *m, const char *name,
                                          uint32_t o)
{
    return o < m->depth ? m->lineage[o] : name;
}

/* Parse and validate volume.json of volume `name` into *m (every field, and
 * the fields against each other); logs what is wrong. -EIO when invalid,
 * -ENOENT for a tombstone, -ENOTSUP for an unknown compression. */
int gfs_volmeta_parse(struct gfs_volmeta *m, const char *name, const struct gfs_log *log,
                      const char *buf, size_t len);
/* volume.json of m, as text (caller frees); deleted: as a tombstone. */
char *gfs_volmeta_text(const struct gfs_volmeta *m, int deleted);

/* Load v's volume.json (or create it: create, exclusive, create_size as
 * glidefs_volume_open) and build v's codec from it. */
int gfs_volmeta_load(struct glidefs_volume *v, const struct glidefs_config *cfg, int create,
                     int exclusive, uint64_t create_size);
/* Write v->meta as volume.json. */
int gfs_volmeta_store(struct glidefs_volume *v);
/* Re-read volume.json's size (a follower catching a resize by the writer). */
int gfs_volmeta_follow_size(struct glidefs_volume *v);
/* Re-read volume.json's data key generations (a follower meeting a segment
 * of a generation it does not hold): adds the new ones to the codec and
 * stops holding retired ones. Returns how many were added, or -errno. */
int gfs_volmeta_follow_keys(struct glidefs_volume *v);
/* The lease holder forgets generations <= upto: volume.json without them,
 * then the codec. The caller has made sure nothing it keeps needs them.
 * Never waits for own_lock (called from the syncer thread): -EAGAIN when it
 * is taken, try again later. 0 (also: nothing to retire), -EINVAL (the
 * newest would go), -errno. */
int gfs_volmeta_retire_keys(struct glidefs_volume *v, uint32_t upto);

#endif
