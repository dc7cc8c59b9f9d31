/*
 * volmeta.c — a volume's metadata in the store: volume.json (create, load,
 * rewrite on resize), loading the block map from the newest manifest plus the
 * segment headers after it, writing manifests, the start-up store check and
 * deleting a volume.
 */
#include "volume_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>
#include <ftw.h>
#include <fcntl.h>
#include <sys/file.h>

#include "cleanup.h"
#include "objstore_azure.h"
#include "store_probe.h"
#include "manifest.h"
#include "segment.h"
#include "keywrap.h"
#include <mbedtls/platform_util.h>

#define VOLUME_JSON_MAX (64u << 10)
#define MANIFEST_MAX (4ull << 30)

static void key_of(char *buf, size_t len, const char *name, const char *leaf)
{
    snprintf(buf, len, "nbd/%s/%s", name, leaf);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int parse_uuid(const char *s, uint8_t out[16])
{
    int n = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '-')
            continue;
        int hi = hexval(p[0]);
        int lo = p[1] ? hexval(p[1]) : -1;
        if (hi < 0 || lo < 0 || n >= 16)
            return -EINVAL;
        out[n++] = (uint8_t)(hi << 4 | lo);
        p++;
    }
    return n == 16 ? 0 : -EINVAL;
}

static void format_uuid(const uint8_t u[16], char out[40])
{
    snprintf(out, 40,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
             u[13], u[14], u[15]);
}

static int valid_bs(uint64_t bs)
{
    return bs >= 4096 && bs <= (4u << 20) && (bs & (bs - 1)) == 0;
}

/* An optional non-negative integer field (absent: 0). */
static int opt_nonneg(json_t *j, int64_t *out)
{
    *out = 0;
    if (!j)
        return 0;
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return -1;
    *out = json_integer_value(j);
    return 0;
}

/* Parse and validate volume.json (input from the store: trust nothing):
 * each field, and the fields against each other - a clone has a lineage of
 * at least one ancestor, root first, none of them itself or repeated, and a
 * parent that is the last of them; a root has neither and its data uuid is
 * its own. Optional fields: data_uuid, lineage, parent {name, snapshot,
 * manifest}, created_ms, deleted. Fills *m on success; on failure logs what
 * is wrong (naming the volume) and returns -EIO (-ENOENT for a tombstone,
 * -ENOTSUP for a compression this build cannot read). */
int gfs_volmeta_parse(struct gfs_volmeta *m, const char *name, const struct gfs_log *log,
                      const char *buf, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        if (root)
            gfs_err(log, "%s: volume.json is not a JSON object", name);
        else
            gfs_err(log, "%s: volume.json is not valid JSON (line %d: %s)", name, jerr.line,
                    jerr.text);
        json_decref(root);
        return -EIO;
    }
    int r = -EIO;
    const char *bad = NULL; /* what is wrong, for the one error line */
    json_t *fmt = json_object_get(root, "format");
    json_t *uuid = json_object_get(root, "uuid");
    json_t *duuid = json_object_get(root, "data_uuid");
    json_t *size = json_object_get(root, "size");
    json_t *bs = json_object_get(root, "block_size");
    json_t *created = json_object_get(root, "created_ms");
    json_t *comp = json_object_get(root, "compression");
    json_t *enc = json_object_get(root, "encryption");
    json_t *lin = json_object_get(root, "lineage");
    json_t *parent = json_object_get(root, "parent");
    json_t *deleted = json_object_get(root, "deleted");
    json_t *pname = json_is_object(parent) ? json_object_get(parent, "name") : NULL;
    json_t *psnap = json_is_object(parent) ? json_object_get(parent, "snapshot") : NULL;
    json_t *pman = json_is_object(parent) ? json_object_get(parent, "manifest") : NULL;
    size_t depth = json_is_array(lin) ? json_array_size(lin) : 0;
    uint64_t e, q;
    int64_t created_ms = 0;
    memset(m, 0, sizeof *m);
    if (!json_is_integer(fmt) || json_integer_value(fmt) != 1) {
        bad = "an unsupported format version";
    } else if (deleted && !json_is_boolean(deleted)) {
        bad = "a \"deleted\" that is not true or false";
    } else if (json_is_true(deleted)) {
        gfs_err(log, "%s: the volume was deleted (its clones still use its data)", name);
        r = -ENOENT;
    } else if (!json_is_string(uuid) || parse_uuid(json_string_value(uuid), m->uuid) < 0 ||
               (duuid && (!json_is_string(duuid) ||
                          parse_uuid(json_string_value(duuid), m->data_uuid) < 0))) {
        bad = "a bad uuid";
    } else if (!json_is_integer(size) || json_integer_value(size) <= 0 ||
               json_integer_value(size) % 512 ||
               (uint64_t)json_integer_value(size) > GLIDEFS_MAX_VOLUME_SIZE) {
        bad = "a bad size";
    } else if (!json_is_integer(bs) || !valid_bs((uint64_t)json_integer_value(bs))) {
        bad = "a bad block_size";
    } else if (opt_nonneg(created, &created_ms) < 0) {
        bad = "a bad created_ms";
    } else if (enc && !json_is_null(enc) && gfs_keywrap_from_json(enc, &m->kw) < 0) {
        bad = "malformed encryption parameters";
    } else if (comp && !(json_is_string(comp) && (strcmp(json_string_value(comp), "none") == 0 ||
                                                  strcmp(json_string_value(comp), "zstd") == 0))) {
        gfs_err(log, "%s: volume uses a compression this build cannot read", name);
        r = -ENOTSUP;
    } else if (lin && (!json_is_array(lin) || depth > GFS_MAX_DEPTH)) {
        bad = "a lineage that is not a list of at most 255 names";
    } else if (parent && (!json_is_object(parent) || !json_is_string(pname) ||
                          !json_is_string(psnap) ||
                          !gfs_snap_name_ok(json_string_value(psnap)) ||
                          (pman && !json_is_null(pman) &&
                           (!json_is_string(pman) ||
                            gfs_parse_epoch_seq(json_string_value(pman), &e, &q) < 0)))) {
        bad = "a malformed parent (name, snapshot, manifest)";
    } else if (!depth != !parent) {
        /* lineage [] with a parent would leave depth 0 while the map
         * loader reads the parent's manifest as lineage[depth - 1] */
        bad = parent ? "a parent but no lineage" : "a lineage but no parent";
    } else if (!parent && duuid && memcmp(m->data_uuid, m->uuid, 16) != 0) {
        bad = "a data_uuid other than its uuid but no parent";
    } else {
        r = 0;
        for (size_t i = 0; i < depth && r == 0; i++) {
            json_t *n = json_array_get(lin, i);
            const char *s = json_is_string(n) ? json_string_value(n) : NULL;
            if (!s || !glidefs_name_valid(s) || strcmp(s, name) == 0) {
                bad = "a lineage naming an invalid volume name or itself";
                r = -EIO;
                break;
            }
            for (size_t k = 0; k < i; k++)
                if (strcmp(m->lineage[k], s) == 0) {
                    bad = "a lineage naming one volume twice";
                    r = -EIO;
                }
            snprintf(m->lineage[i], sizeof m->lineage[i], "%s", s);
        }
        if (r == 0 && depth && strcmp(json_string_value(pname), m->lineage[depth - 1]) != 0) {
            bad = "a parent other than the last of its lineage";
            r = -EIO;
        }
        if (r == 0) {
            m->depth = (uint32_t)depth;
            m->format = 1;
            m->size = (uint64_t)json_integer_value(size);
            m->block_size = (uint32_t)json_integer_value(bs);
            m->created_ms = created_ms;
            snprintf(m->compression, sizeof m->compression, "%s",
                     comp ? json_string_value(comp) : "none");
            m->encrypted = enc && !json_is_null(enc);
            if (!duuid)
                memcpy(m->data_uuid, m->uuid, 16);
            format_uuid(m->uuid, m->uuid_str);
            format_uuid(m->data_uuid, m->data_uuid_str);
            if (parent) {
                snprintf(m->parent_snapshot, sizeof m->parent_snapshot, "%s",
                         json_string_value(psnap));
                if (json_is_string(pman))
                    snprintf(m->base_manifest, sizeof m->base_manifest, "%s",
                             json_string_value(pman));
            }
        }
    }
    if (bad)
        gfs_err(log, "%s: volume.json has %s: the volume is refused", name, bad);
    json_decref(root);
    return r;
}

static int parse_volmeta(struct glidefs_volume *v, const char *buf, size_t len)
{
    return gfs_volmeta_parse(&v->meta, v->name, &v->log, buf, len);
}

/* volume.json of meta, as text (caller frees). */
char *gfs_volmeta_text(const struct gfs_volmeta *m, int deleted)
{
    json_t *enc = m->encrypted ? gfs_keywrap_to_json(&m->kw) : json_null();
    if (!enc)
        return NULL;
    json_t *root = json_pack("{s:i, s:s, s:s, s:I, s:I, s:I, s:s, s:o}", "format", 1, "uuid",
                             m->uuid_str, "data_uuid", m->data_uuid_str, "size",
                             (json_int_t)m->size, "block_size", (json_int_t)m->block_size,
                             "created_ms", (json_int_t)m->created_ms, "compression",
                             m->compression, "encryption", enc);
    if (!root)
        return NULL;
    if (m->depth) {
        json_t *lin = json_array();
        for (uint32_t i = 0; lin && i < m->depth; i++)
            json_array_append_new(lin, json_string(m->lineage[i]));
        json_t *par = json_pack("{s:s, s:s, s:o}", "name", m->lineage[m->depth - 1], "snapshot",
                                m->parent_snapshot, "manifest",
                                m->base_manifest[0] ? json_string(m->base_manifest) : json_null());
        json_object_set_new(root, "lineage", lin);
        json_object_set_new(root, "parent", par);
    }
    if (deleted)
        json_object_set_new(root, "deleted", json_true());
    char *txt = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    return txt;
}

static int put_volmeta(struct glidefs_volume *v, unsigned flags)
{
    CLEANUP_FREE char *txt = gfs_volmeta_text(&v->meta, 0);
    if (!txt)
        return -ENOMEM;
    char key[512];
    key_of(key, sizeof key, v->name, "volume.json");
    return v->store->ops->put(v->store, key, txt, strlen(txt), flags, NULL);
}

int gfs_volmeta_store(struct glidefs_volume *v)
{
    return put_volmeta(v, 0);
}

int gfs_volmeta_follow_size(struct glidefs_volume *v)
{
    char key[512];
    key_of(key, sizeof key, v->name, "volume.json");
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    int r = v->store->ops->get(v->store, key, VOLUME_JSON_MAX, &buf, &len, NULL);
    if (r < 0)
        return r;
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, 0, &jerr);
    json_t *size = root ? json_object_get(root, "size") : NULL;
    int64_t ns = json_is_integer(size) ? json_integer_value(size) : -1;
    json_decref(root);
    if (ns <= 0 || ns % 512 || (uint64_t)ns > GLIDEFS_MAX_VOLUME_SIZE)
        return -EIO;
    pthread_mutex_lock(&v->lock);
    if ((uint64_t)ns > v->size && gfs_bm_grow(&v->bm, ((uint64_t)ns + v->bs - 1) / v->bs) == 0) {
        v->size = v->meta.size = (uint64_t)ns;
        gfs_info(&v->log, "%s: the writer grew the volume to %" PRId64 " bytes", v->name, ns);
    }
    pthread_mutex_unlock(&v->lock);
    return 0;
}

/* Build the block codec: unwrap the data key with the configured password
 * (before anything else touches the volume, so a wrong password changes
 * nothing anywhere). */
static int make_codec(struct glidefs_volume *v, const struct glidefs_config *cfg,
                      const uint8_t *fresh_key)
{
    uint8_t dk[32];
    const uint8_t *key = NULL;
    const char *pw = cfg->encryption_password;
    if (v->meta.encrypted) {
        if (fresh_key) {
            memcpy(dk, fresh_key, sizeof dk);
        } else {
            if (!pw || !*pw) {
                gfs_err(&v->log, "%s: the volume is encrypted and storage.encryption_password "
                        "is not set", v->name);
                return -EACCES;
            }
            int r = gfs_keywrap_unwrap(pw, &v->meta.kw, v->meta.data_uuid, dk);
            if (r == -EACCES) {
                gfs_err(&v->log, "%s: wrong encryption password", v->name);
                return -EACCES;
            }
            if (r < 0) {
                gfs_err(&v->log, "%s: cannot unwrap the data key: %s", v->name,
                        glidefs_strerror(r));
                return r == -EINVAL ? -EIO : r;
            }
        }
        key = dk;
    } else if (pw && *pw) {
        gfs_warn(&v->log, "%s: created without encryption; storage.encryption_password applies "
                 "to new volumes only", v->name);
    }
    struct gfs_codec_params p = {
        .block_size = v->meta.block_size,
        .compress = strcmp(v->meta.compression, "zstd") == 0,
        .level = cfg->compression_level,
        .data_key = key,
    };
    memcpy(p.volume_uuid, v->meta.data_uuid, 16);
    int r = gfs_codec_new(&p, &v->codec);
    mbedtls_platform_zeroize(dk, sizeof dk);
    return r;
}

int gfs_volmeta_load(struct glidefs_volume *v, const struct glidefs_config *cfg, int create,
                     int exclusive, uint64_t create_size)
{
    char key[512];
    key_of(key, sizeof key, v->name, "volume.json");
    for (int attempt = 0; attempt < 3; attempt++) {
        CLEANUP_FREE void *buf = NULL;
        size_t len = 0;
        int r = v->store->ops->get(v->store, key, VOLUME_JSON_MAX, &buf, &len, NULL);
        if (r == 0) {
            if (exclusive)
                return -EEXIST;
            r = parse_volmeta(v, buf, len);
            return r < 0 ? r : make_codec(v, cfg, NULL);
        }
        if (r != -ENOENT) {
            gfs_err(&v->log, "%s: cannot read %s: %s", v->name, key, glidefs_strerror(r));
            return r == -EFBIG ? -EIO : r;
        }
        if (!create)
            return -ENOENT;
        if (getrandom(v->meta.uuid, sizeof v->meta.uuid, 0) != sizeof v->meta.uuid)
            return -EIO;
        v->meta.uuid[6] = (v->meta.uuid[6] & 0x0f) | 0x40; /* version 4 */
        v->meta.uuid[8] = (v->meta.uuid[8] & 0x3f) | 0x80;
        format_uuid(v->meta.uuid, v->meta.uuid_str);
        memcpy(v->meta.data_uuid, v->meta.uuid, 16);
        format_uuid(v->meta.data_uuid, v->meta.data_uuid_str);
        v->meta.depth = 0;
        v->meta.format = 1;
        v->meta.size = create_size;
        v->meta.block_size = cfg->block_size ? cfg->block_size : 131072;
        v->meta.created_ms = gfs_wall_ms();
        snprintf(v->meta.compression, sizeof v->meta.compression, "%s",
                 cfg->compression && strcmp(cfg->compression, "zstd") == 0 ? "zstd" : "none");
        uint8_t dk[32];
        v->meta.encrypted = cfg->encryption_password && *cfg->encryption_password;
        if (v->meta.encrypted) {
            r = gfs_keywrap_create(cfg->encryption_password, GFS_KDF_ITERATIONS, v->meta.data_uuid,
                                   dk, &v->meta.kw);
            if (r < 0)
                return r;
        }
        r = put_volmeta(v, GFS_PUT_IF_NONE_MATCH);
        if (r == 0) {
            gfs_info(&v->log, "%s: created volume of %" PRIu64 " bytes (uuid %s%s%s)", v->name,
                     create_size, v->meta.uuid_str, v->meta.encrypted ? ", encrypted" : "",
                     strcmp(v->meta.compression, "zstd") == 0 ? ", zstd" : "");
            r = make_codec(v, cfg, v->meta.encrypted ? dk : NULL);
            mbedtls_platform_zeroize(dk, sizeof dk);
            return r;
        }
        mbedtls_platform_zeroize(dk, sizeof dk);
        if (r != -EEXIST)
            return r;
        /* someone created it at the same moment: load theirs */
        exclusive = exclusive && 0;
    }
    return -EIO;
}

GLIDEFS_API int glidefs_volume_rekey(glidefs_volume *v, const char *old_pw, const char *new_pw)
{
    if (!old_pw || !new_pw || !*new_pw)
        return -EINVAL;
    SCOPED_LOCK(&v->own_lock); /* one metadata writer at a time */
    pthread_mutex_lock(&v->lock);
    int owner = v->owner, enc = v->meta.encrypted;
    struct gfs_keywrap kw = v->meta.kw;
    pthread_mutex_unlock(&v->lock);
    if (!enc)
        return -EINVAL;
    if (!owner)
        return -EROFS;
    int r = gfs_keywrap_rewrap(old_pw, new_pw, GFS_KDF_ITERATIONS, v->meta.data_uuid, &kw);
    if (r < 0)
        return r;
    /* v->meta changes only under own_lock, which we hold: PUT without v->lock */
    pthread_mutex_lock(&v->lock);
    struct gfs_keywrap old = v->meta.kw;
    v->meta.kw = kw;
    pthread_mutex_unlock(&v->lock);
    r = put_volmeta(v, 0);
    if (r < 0) {
        pthread_mutex_lock(&v->lock);
        v->meta.kw = old;
        pthread_mutex_unlock(&v->lock);
    }
    if (r == 0)
        gfs_info(&v->log, "%s: encryption password changed (data not rewritten)", v->name);
    return r;
}

/* ---- loading the map ---- */

struct name_pick {
    char best[512];
    int found;
    const struct gfs_lease *lease;
};

static int pick_last(void *arg, const char *key, uint64_t size)
{
    struct name_pick *p = arg;
    (void)size;
    const char *slash = strrchr(key, '/');
    uint64_t e, s;
    if (!slash || gfs_parse_epoch_seq(slash + 1, &e, &s) < 0)
        return 0; /* not ours: ignore */
    if (gfs_lease_fenced(p->lease, e, s) || gfs_lease_below_floor(p->lease, e))
        return 0; /* written by a deposed writer (or older than the newest one) */
    if (strcmp(key, p->best) > 0) {
        snprintf(p->best, sizeof p->best, "%s", key);
        p->found = 1;
    }
    return 0;
}

static int apply_manifest(struct glidefs_volume *v, const char *key, int is_base)
{
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    int r = v->store->ops->get(v->store, key, MANIFEST_MAX, &buf, &len, NULL);
    if (r < 0) {
        gfs_err(&v->log, "%s: cannot read manifest %s: %s", v->name, key, glidefs_strerror(r));
        return r == -ENOENT || r == -EFBIG ? -EIO : r;
    }
    struct gfs_manifest m;
    r = gfs_manifest_decode_mac(buf, len, v->codec, &m);
    if (r < 0) {
        gfs_err(&v->log, "%s: manifest %s is corrupt or fails authentication", v->name, key);
        return -EIO;
    }
    uint64_t ke, ks;
    if (gfs_parse_epoch_seq(strrchr(key, '/') + 1, &ke, &ks) < 0 || ke != m.epoch || ks != m.seq) {
        gfs_err(&v->log, "%s: manifest %s names another position than its key", v->name, key);
        gfs_manifest_free(&m);
        return -EIO;
    }
    if (is_base && v->meta.depth == 0) {
        /* only a clone has a base, its parent's (volume.json guarantees it) */
        gfs_err(&v->log, "%s: manifest %s taken as a base of a volume that has no parent",
                v->name, key);
        gfs_manifest_free(&m);
        return -EIO;
    }
    if (m.block_size != v->bs) {
        gfs_err(&v->log, "%s: manifest %s has block size %u, volume has %u", v->name, key,
                m.block_size, v->bs);
        gfs_manifest_free(&m);
        return -EIO;
    }
    CLEANUP_FREE int64_t *idx = calloc(m.nsegs ? m.nsegs : 1, sizeof *idx);
    /* the table sized exactly for what the manifest names (a wake) */
    if (!idx || gfs_bm_seg_reserve(&v->bm, m.nsegs) < 0) {
        gfs_manifest_free(&m);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < m.nsegs; i++) {
        /* origins: an ancestor's manifest names only ancestors; ours up to us */
        if ((m.segs[i].epoch >> GFS_ORIGIN_SHIFT) > v->meta.depth - (is_base ? 1u : 0u)) {
            gfs_err(&v->log, "%s: manifest %s names a segment outside the lineage", v->name, key);
            gfs_manifest_free(&m);
            return -EIO;
        }
        idx[i] = gfs_bm_seg_add(&v->bm, m.segs[i].epoch, m.segs[i].seq, 0);
        if (idx[i] < 0) {
            gfs_manifest_free(&m);
            return (int)idx[i];
        }
    }
    uint64_t max_seq = 0;
    for (uint64_t i = 0; i < m.nentries; i++) {
        const struct gfs_man_entry *me = &m.entries[i];
        if (me->block_index >= v->bm.nblocks) {
            gfs_err(&v->log, "%s: manifest %s maps block %" PRIu64 " past the volume's end",
                    v->name, key, me->block_index);
            gfs_manifest_free(&m);
            return -EIO;
        }
        struct gfs_bm_entry e = {0};
        if (me->seg == GFS_MAN_HOLE) {
            e.seg = GFS_BM_HOLE;
        } else {
            e.seg = (uint32_t)idx[me->seg];
            e.offset = me->offset;
            e.length = me->length;
            e.crc = me->crc;
            e.flags = me->flags;
        }
        e.write_seq = me->write_seq;
        if (me->write_seq > max_seq)
            max_seq = me->write_seq;
        r = gfs_bm_set(&v->bm, me->block_index, &e);
        if (r < 0) {
            gfs_manifest_free(&m);
            return r;
        }
    }
    if (max_seq >= v->next_seq)
        v->next_seq = max_seq + 1;
    if (!is_base) {
        v->manifest_epoch = v->last_seg_epoch = m.epoch;
        v->manifest_seq = v->last_seg_seq = m.seq;
    }
    gfs_manifest_free(&m);
    return 0;
}

int gfs_volume_apply_manifest_key(struct glidefs_volume *v, const char *key, int is_base)
{
    return apply_manifest(v, key, is_base);
}

struct seg_list {
    char **keys;
    uint64_t *sizes;
    size_t n, cap;
    const struct gfs_lease *lease;
};

static int collect_seg(void *arg, const char *key, uint64_t size)
{
    struct seg_list *l = arg;
    const char *slash = strrchr(key, '/');
    uint64_t e, s;
    if (!slash || gfs_parse_epoch_seq(slash + 1, &e, &s) < 0)
        return 0;
    if (l->lease && (gfs_lease_fenced(l->lease, e, s) || gfs_lease_below_floor(l->lease, e)))
        return 0; /* a deposed writer's late segment: never part of the volume */
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        char **nk = realloc(l->keys, nc * sizeof *nk);
        if (!nk)
            return -ENOMEM;
        l->keys = nk;
        uint64_t *ns = realloc(l->sizes, nc * sizeof *ns);
        if (!ns)
            return -ENOMEM;
        l->sizes = ns;
        l->cap = nc;
    }
    l->keys[l->n] = strdup(key);
    if (!l->keys[l->n])
        return -ENOMEM;
    l->sizes[l->n++] = size;
    return 0;
}

static int fetch_seg_header(struct glidefs_volume *v, const char *key, uint64_t size,
                            struct gfs_seg_header *hout)
{
    size_t want = 4096;
    CLEANUP_FREE uint8_t *buf = NULL;
    struct gfs_seg_header h;
    for (int i = 0; i < 3; i++) {
        if (want > size)
            want = (size_t)size;
        if (want == 0)
            return -EIO;
        uint8_t *nb = realloc(buf, want);
        if (!nb)
            return -ENOMEM;
        buf = nb;
        size_t got = 0;
        int r = v->store->ops->get_range(v->store, key, 0, want, buf, &got);
        if (r < 0) {
            gfs_err(&v->log, "%s: cannot read segment %s: %s", v->name, key, glidefs_strerror(r));
            return r == -ENOENT ? -EIO : r;
        }
        size_t need = 0;
        r = gfs_seg_decode_header_mac(buf, got, size, &h, &need, v->codec);
        if (r == -EAGAIN && need > got && need <= gfs_seg_header_size_mac(GFS_SEG_MAX_BLOCKS, 1)) {
            want = need;
            continue;
        }
        if (r < 0) {
            gfs_err(&v->log, "%s: segment %s has a corrupt header", v->name, key);
            return -EIO;
        }
        break;
    }
    if (buf == NULL)
        return -EIO;
    uint64_t ke, ks;
    if (h.block_size != v->bs || memcmp(h.volume_uuid, v->meta.data_uuid, 16) != 0 ||
        gfs_parse_epoch_seq(strrchr(key, '/') + 1, &ke, &ks) < 0 || ke != h.epoch ||
        ks != h.seq) {
        gfs_err(&v->log, "%s: segment %s belongs to another volume, block size or key", v->name,
                key);
        gfs_seg_header_free(&h);
        return -EIO;
    }
    *hout = h;
    return 0;
}

static int apply_seg_header(struct glidefs_volume *v, const char *key, uint64_t size,
                            struct gfs_seg_header *hp)
{
    struct gfs_seg_header h = *hp;
    int64_t si = gfs_bm_seg_add(&v->bm, gfs_ep(v->meta.depth, h.epoch), h.seq, size);
    if (si < 0) {
        gfs_seg_header_free(&h);
        return (int)si;
    }
    int r = 0;
    for (uint32_t i = 0; i < h.nblocks && r == 0; i++) {
        const struct gfs_seg_entry *se = &h.entries[i];
        if (se->block_index >= v->bm.nblocks) {
            gfs_warn(&v->log, "%s: segment %s maps block %" PRIu64 " past the end; ignored",
                     v->name, key, se->block_index);
            continue;
        }
        /* The newest write wins, not the newest segment: compaction copies
         * blocks into later segments, and a copy must not override a write
         * that was uploaded while it ran. Equal seqs are the same data: take
         * the later copy, since the earlier segment is the one deleted. */
        struct gfs_bm_entry cur = gfs_bm_get(&v->bm, se->block_index);
        if (cur.seg != GFS_BM_NONE && se->write_seq < cur.write_seq)
            continue;
        struct gfs_bm_entry e = {0};
        if (se->flags & GFS_SEGF_HOLE) {
            e.seg = GFS_BM_HOLE;
        } else {
            e.seg = (uint32_t)si;
            e.offset = se->offset;
            e.length = se->length;
            e.crc = se->crc;
            e.flags = se->flags;
        }
        e.write_seq = se->write_seq;
        if (se->write_seq >= v->next_seq)
            v->next_seq = se->write_seq + 1;
        r = gfs_bm_set(&v->bm, se->block_index, &e);
    }
    v->last_seg_epoch = h.epoch;
    v->last_seg_seq = h.seq;
    v->segs_since_manifest++;
    return r;
}

static int apply_segment(struct glidefs_volume *v, const char *key, uint64_t size)
{
    struct gfs_seg_header h;
    int r = fetch_seg_header(v, key, size, &h);
    if (r < 0)
        return r;
    r = apply_seg_header(v, key, size, &h);
    gfs_seg_header_free(&h);
    return r;
}

int gfs_volume_load_map(struct glidefs_volume *v)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "nbd/%s/manifest/", v->name);
    struct name_pick mp = {.found = 0, .lease = &v->lease};
    int r = v->store->ops->list(v->store, prefix, NULL, pick_last, &mp);
    if (r < 0) {
        gfs_err(&v->log, "%s: cannot list manifests: %s", v->name, glidefs_strerror(r));
        return r;
    }
    char start_after[512] = "";
    if (!mp.found && v->meta.base_manifest[0] && v->meta.depth > 0) {
        /* a clone that has stored nothing of its own yet: its parent's snapshot */
        char base[512];
        snprintf(base, sizeof base, "nbd/%s/manifest/%s", v->meta.lineage[v->meta.depth - 1],
                 v->meta.base_manifest);
        r = apply_manifest(v, base, 1);
        if (r < 0)
            return r;
    }
    if (mp.found) {
        r = apply_manifest(v, mp.best, 0);
        if (r < 0)
            return r;
        snprintf(start_after, sizeof start_after, "nbd/%s/seg/%s", v->name,
                 strrchr(mp.best, '/') + 1);
    }
    /* Every segment: the manifest's get their sizes (for compaction), the
     * ones after it are replayed, and the rest are garbage nothing refers to
     * (crashed uploads, deposed writers, compaction leftovers). */
    snprintf(prefix, sizeof prefix, "nbd/%s/seg/", v->name);
    struct seg_list l = {.lease = NULL};
    r = v->store->ops->list(v->store, prefix, NULL, collect_seg, &l);
    for (size_t i = 0; i < l.n && r >= 0; i++) {
        const char *tail = strrchr(l.keys[i], '/') + 1;
        uint64_t e, s;
        gfs_parse_epoch_seq(tail, &e, &s);
        int fenced = gfs_lease_fenced(&v->lease, e, s);
        /* below the floor only a manifest vouches for a segment: one after
         * the manifest there was uploaded by a writer deposed long ago */
        if (!fenced && !gfs_lease_below_floor(&v->lease, e) &&
            (!start_after[0] || strcmp(l.keys[i], start_after) > 0)) {
            r = apply_segment(v, l.keys[i], l.sizes[i]);
            continue;
        }
        int64_t si = fenced ? -1 : gfs_bm_seg_find(&v->bm, gfs_ep(v->meta.depth, e), s);
        if (si > 0) {
            if (gfs_bm_seg_set_total(&v->bm, (uint32_t)si, l.sizes[i]) < 0)
                gfs_warn(&v->log, "%s: %s has %" PRIu64 " bytes, more than a segment can "
                         "hold; it is never compacted", v->name, l.keys[i], l.sizes[i]);
        } else {
            char **ng = realloc(v->garbage, (v->ngarbage + 1) * sizeof *ng);
            if (!ng) {
                r = -ENOMEM;
                break;
            }
            v->garbage = ng;
            v->garbage[v->ngarbage++] = l.keys[i];
            l.keys[i] = NULL;
        }
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.keys[i]);
    free(l.keys);
    free(l.sizes);
    return r;
}

uint64_t gfs_volume_last_seq_of(struct glidefs_volume *v, uint64_t epoch)
{
    /* The segment table holds only segments that still map blocks; the
     * newest one we know of (and the manifest's) may hold only holes, and
     * must not fall outside the fence. */
    uint64_t best = 0;
    if (v->last_seg_epoch == epoch)
        best = v->last_seg_seq;
    if (v->manifest_epoch == epoch && v->manifest_seq > best)
        best = v->manifest_seq;
    uint64_t own = gfs_ep(v->meta.depth, epoch);
    for (uint32_t i = 1; i < v->bm.nsegs; i++)
        if (v->bm.segs[i].epoch == own && v->bm.segs[i].seq > best)
            best = v->bm.segs[i].seq;
    return best;
}

/* Rebuild the map from the store (a fence now excludes a segment we had
 * applied). Called with own_lock held; takes v->lock. */
static int rebuild_map(struct glidefs_volume *v)
{
    struct gfs_blockmap nb;
    int r = gfs_bm_init(&nb, v->bm.nblocks);
    if (r < 0)
        return r;
    pthread_mutex_lock(&v->lock);
    for (size_t i = 0; i < v->ngarbage; i++)
        free(v->garbage[i]);
    free(v->garbage);
    v->garbage = NULL;
    v->ngarbage = 0;
    struct gfs_blockmap old = v->bm;
    v->bm = nb;
    v->last_seg_epoch = v->last_seg_seq = 0;
    v->segs_since_manifest = 0;
    r = gfs_volume_load_map(v);
    if (r < 0) {
        gfs_bm_free(&v->bm);
        v->bm = old;
    } else {
        gfs_bm_free(&old);
        gfs_cache_clear(&v->cache); /* cached blocks name segments of the old table */
    }
    pthread_mutex_unlock(&v->lock);
    return r;
}

int gfs_volume_reload(struct glidefs_volume *v)
{
    SCOPED_LOCK(&v->own_lock);
    int r = gfs_lease_read(v->store, v->name, &v->lease);
    return r < 0 ? r : rebuild_map(v);
}

int gfs_volume_catch_up(struct glidefs_volume *v)
{
    SCOPED_LOCK(&v->own_lock);
    return gfs_volume_refresh(v);
}

int gfs_volume_refresh(struct glidefs_volume *v)
{
    struct gfs_lease l;
    int r = gfs_lease_read(v->store, v->name, &l);
    if (r < 0)
        return r;
    /* A raised floor dropped fences we could not check our map against
     * (a segment applied before its fence came and went): start again from
     * the newest manifest. */
    int floor_rose = l.exists && l.floor > v->lease.floor;
    if (l.exists)
        v->lease = l;
    /* a new fence over something we applied: start again from the store */
    pthread_mutex_lock(&v->lock);
    int stale = floor_rose;
    for (uint32_t i = 1; i < v->bm.nsegs && !stale; i++)
        stale = (v->bm.segs[i].epoch >> GFS_ORIGIN_SHIFT) == v->meta.depth &&
                gfs_lease_fenced(&v->lease, v->bm.segs[i].epoch & GFS_EPOCH_MASK,
                                 v->bm.segs[i].seq);
    char start_after[512] = "";
    if (v->last_seg_epoch)
        gfs_seg_key(start_after, sizeof start_after, v->name, v->last_seg_epoch, v->last_seg_seq);
    pthread_mutex_unlock(&v->lock);
    if (stale) {
        gfs_info(&v->log, "%s: %s; reloading the map", v->name,
                 floor_rose ? "the lease's fence floor rose" : "a new fence excludes segments we read");
        return rebuild_map(v);
    }
    char prefix[512];
    snprintf(prefix, sizeof prefix, "nbd/%s/seg/", v->name);
    struct seg_list sl = {.lease = &v->lease};
    r = v->store->ops->list(v->store, prefix, start_after[0] ? start_after : NULL, collect_seg,
                            &sl);
    for (size_t i = 0; i < sl.n && r >= 0; i++) {
        struct gfs_seg_header h;
        r = fetch_seg_header(v, sl.keys[i], sl.sizes[i], &h);
        if (r < 0)
            break;
        /* the writer grew the volume and wrote there: learn the new size
         * first, or those blocks would be dropped as past the end */
        uint64_t maxb = 0;
        for (uint32_t k = 0; k < h.nblocks; k++)
            if (h.entries[k].block_index >= maxb)
                maxb = h.entries[k].block_index + 1;
        pthread_mutex_lock(&v->lock);
        int grow = maxb > v->bm.nblocks;
        pthread_mutex_unlock(&v->lock);
        if (grow && (r = gfs_volmeta_follow_size(v)) < 0) {
            gfs_seg_header_free(&h);
            break;
        }
        pthread_mutex_lock(&v->lock);
        r = apply_seg_header(v, sl.keys[i], sl.sizes[i], &h);
        pthread_mutex_unlock(&v->lock);
        gfs_seg_header_free(&h);
    }
    for (size_t i = 0; i < sl.n; i++)
        free(sl.keys[i]);
    free(sl.keys);
    free(sl.sizes);
    return r < 0 ? r : 0;
}

/* ---- writing manifests ---- */

static int write_manifest(struct glidefs_volume *v, int force);

int gfs_volume_write_manifest(struct glidefs_volume *v)
{
    return write_manifest(v, 0);
}

int gfs_volume_write_manifest_force(struct glidefs_volume *v)
{
    return write_manifest(v, 1);
}

/* A manifest keyed no lower than the start of our epoch, (epoch, 0) when we
 * have stored no segment in it yet: every reader then starts after it, so
 * the next taker may raise the lease's floor to our epoch (lease.h). */
int gfs_volume_write_manifest_mark(struct glidefs_volume *v)
{
    return write_manifest(v, 2);
}

static int write_manifest(struct glidefs_volume *v, int force)
{
    SCOPED_LOCK(&v->manifest_lock);
    struct gfs_manifest m = {0};
    pthread_mutex_lock(&v->lock);
    if (!force && (v->segs_since_manifest == 0 || v->last_seg_epoch == 0)) {
        pthread_mutex_unlock(&v->lock);
        return 0;
    }
    if (force == 2 && v->last_seg_epoch < v->epoch) {
        /* the segments we know end before our epoch began; none of ours
         * is committed (that would have moved last_seg), so this manifest
         * is the map as our epoch began, and ours will sort after it */
        v->last_seg_epoch = v->epoch;
        v->last_seg_seq = 0;
    }
    m.epoch = v->last_seg_epoch;
    m.seq = v->last_seg_seq;
    m.volume_size = v->size;
    m.block_size = v->bs;
    uint32_t covered = v->segs_since_manifest;
    CLEANUP_FREE uint32_t *remap = calloc(v->bm.nsegs, sizeof *remap);
    m.segs = malloc((size_t)v->bm.nsegs * sizeof *m.segs);
    m.entries = malloc((v->bm.written_blocks ? v->bm.written_blocks : 1) * sizeof *m.entries);
    if (!remap || !m.segs || !m.entries) {
        pthread_mutex_unlock(&v->lock);
        free(m.segs);
        free(m.entries);
        return -ENOMEM;
    }
    /* segments in table order (sorted), only those still referenced */
    for (uint32_t i = 1; i < v->bm.nsegs; i++) {
        if (v->bm.segs[i].live_bytes == 0)
            continue;
        remap[i] = m.nsegs + 1;
        m.segs[m.nsegs].epoch = v->bm.segs[i].epoch;
        m.segs[m.nsegs].seq = v->bm.segs[i].seq;
        m.nsegs++;
    }
    struct gfs_bm_entry ent;
    for (uint64_t b = 0; gfs_bm_next(&v->bm, &b, &ent); b++) {
        {
            const struct gfs_bm_entry *e = &ent;
            struct gfs_man_entry *me = &m.entries[m.nentries++];
            me->block_index = b;
            me->write_seq = e->write_seq;
            if (e->seg == GFS_BM_HOLE) {
                me->seg = GFS_MAN_HOLE;
                me->offset = me->length = me->crc = 0;
                me->flags = GFS_SEGF_HOLE;
            } else {
                me->seg = remap[e->seg] - 1;
                me->offset = e->offset;
                me->length = e->length;
                me->crc = e->crc;
                me->flags = e->flags;
            }
        }
    }
    pthread_mutex_unlock(&v->lock);

    CLEANUP_FREE void *out = NULL;
    size_t outlen = 0;
    int r = gfs_manifest_encode_mac(&m, 1, v->codec, &out, &outlen);
    free(m.segs);
    free(m.entries);
    if (r < 0)
        return r;
    char key[512];
    gfs_manifest_key(key, sizeof key, v->name, m.epoch, m.seq);
    r = v->store->ops->put(v->store, key, out, outlen, 0, NULL);
    if (r < 0) {
        gfs_err(&v->log, "%s: writing manifest %s failed: %s", v->name, key, glidefs_strerror(r));
        return r;
    }
    pthread_mutex_lock(&v->lock);
    v->manifest_epoch = m.epoch;
    v->manifest_seq = m.seq;
    v->segs_since_manifest -= covered <= v->segs_since_manifest ? covered : v->segs_since_manifest;
    v->st.manifests_uploaded++;
    v->last_manifest_ms = gfs_now_ms();
    v->manifest_gen++;
    pthread_mutex_unlock(&v->lock);
    gfs_debug(&v->log, "%s: manifest %s written (%" PRIu64 " blocks)", v->name, key, m.nentries);
    return 0;
}

/* ---- store check and delete ---- */

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
    r = st->ops->get(st, key, VOLUME_JSON_MAX, &buf, &len, NULL);
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
            __atomic_store_n(&w->probe_wall_ms, gfs_wall_ms(), __ATOMIC_RELEASE);
            __atomic_store_n(&w->probe_state, res.conditional_writes, __ATOMIC_RELEASE);
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

struct del_ctx {
    struct gfs_objstore *st;
    int err;
    char **keys;
    size_t n, cap;
};

static int collect_all(void *arg, const char *key, uint64_t size)
{
    (void)size;
    struct del_ctx *d = arg;
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 64;
        char **nk = realloc(d->keys, nc * sizeof *nk);
        if (!nk)
            return -ENOMEM;
        d->keys = nk;
        d->cap = nc;
    }
    d->keys[d->n] = strdup(key);
    if (!d->keys[d->n])
        return -ENOMEM;
    d->n++;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

GLIDEFS_API int glidefs_volume_delete(const glidefs_config *cfg, const char *name, int purge_store)
{
    if (!cfg || !name || !glidefs_name_valid(name))
        return -EINVAL;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", cfg->cache_dir, name);
    /* what live clones still need stays (opening it also refuses while in use) */
    char **keep = NULL, *tomb = NULL;
    size_t nkeep = 0;
    if (purge_store) {
        int pr = gfs_purge_plan(cfg, name, &keep, &nkeep, &tomb);
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
            struct del_ctx d = {.st = st};
            /* whose clone it is, read before volume.json goes */
            char par[GLIDEFS_NAME_MAX + 1], psnap[GLIDEFS_NAME_MAX + 8];
            r = gfs_clone_origin(st, name, par, sizeof par, psnap, sizeof psnap);
            if (r == 0)
                r = st->ops->list(st, prefix, NULL, collect_all, &d);
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
                r = gfs_purge_forget(st, par, name, psnap);
            for (size_t i = 0; i < d.n; i++)
                free(d.keys[i]);
            free(d.keys);
            gfs_objstore_close(st);
        }
    }
    if (r == 0 && nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        r = -errno;
    if (fd >= 0)
        close(fd);
    for (size_t i = 0; i < nkeep; i++)
        free(keep[i]);
    free(keep);
    free(tomb);
    return r;
}
