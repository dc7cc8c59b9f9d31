/*
 * volmeta.c — a volume's volume.json (volmeta.h): parse and validate it
 * (input from the store: trust nothing), write it, create it for a new
 * volume with its data key, follow a resize as a reader, and the two calls
 * that rewrite it: resize and rekey. The codec is built from it here.
 */
#include "volmeta.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mbedtls/platform_util.h>

#include "cleanup.h"
#include "fsutil.h"
#include "snapobj.h"
#include "volume_internal.h"

static void key_of(char *buf, size_t len, const char *name, const char *leaf)
{
    snprintf(buf, len, "nbd/%s/%s", name, leaf);
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
    } else if (!json_is_string(uuid) || gfs_uuid_parse(json_string_value(uuid), m->uuid) < 0 ||
               (duuid && (!json_is_string(duuid) ||
                          gfs_uuid_parse(json_string_value(duuid), m->data_uuid) < 0))) {
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
            gfs_uuid_format(m->uuid, m->uuid_str);
            gfs_uuid_format(m->data_uuid, m->data_uuid_str);
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

/* volume.json of v as the store holds it now (a follower's re-read). */
static int get_volmeta(struct glidefs_volume *v, void **buf, size_t *len)
{
    char key[512];
    key_of(key, sizeof key, v->name, "volume.json");
    return v->store->ops->get(v->store, key, GFS_VOLUME_JSON_MAX, buf, len, NULL);
}

int gfs_volmeta_follow_size(struct glidefs_volume *v)
{
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    int r = get_volmeta(v, &buf, &len);
    if (r < 0)
        return r;
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, 0, &jerr);
    json_t *size = root ? json_object_get(root, "size") : NULL;
    int64_t ns = json_is_integer(size) ? json_integer_value(size) : -1;
    json_decref(root);
    if (ns <= 0 || ns % 512 || (uint64_t)ns > GLIDEFS_MAX_VOLUME_SIZE)
        return -EIO;
    SCOPED_LOCK(&v->lock);
    if ((uint64_t)ns > v->size && gfs_bm_grow(&v->sv.bm, ((uint64_t)ns + v->bs - 1) / v->bs) == 0) {
        v->size = v->meta.size = (uint64_t)ns;
        gfs_info(&v->log, "%s: the writer grew the volume to %" PRId64 " bytes", v->name, ns);
    }
    return 0;
}

/* Build the block codec: unwrap the data keys with the configured password
 * (before anything else touches the volume, so a wrong password changes
 * nothing anywhere). fresh_key: a volume just created (generation 1). The
 * codec keeps the password's KEK, for rotation and retirement later. */
static int make_codec(struct glidefs_volume *v, const struct glidefs_config *cfg,
                      const uint8_t *fresh_key)
{
    struct gfs_datakey keys[GFS_KEYWRAP_MAX_GENS];
    uint8_t kek[32];
    unsigned n = 0;
    int have = 0;
    const char *pw = cfg->encryption_password;
    if (v->meta.encrypted) {
        if (!pw || !*pw) {
            gfs_err(&v->log, "%s: the volume is encrypted and storage.encryption_password "
                    "is not set", v->name);
            return -EACCES;
        }
        int r = gfs_keywrap_kek(pw, &v->meta.kw, kek);
        if (r == 0 && fresh_key) {
            keys[0].gen = 1;
            memcpy(keys[0].key, fresh_key, 32);
            n = 1;
        } else if (r == 0) {
            r = gfs_keywrap_open_all(kek, &v->meta.kw, v->meta.data_uuid, keys, &n);
        }
        if (r == -EACCES) {
            gfs_err(&v->log, "%s: wrong encryption password", v->name);
            mbedtls_platform_zeroize(kek, sizeof kek);
            return -EACCES;
        }
        if (r < 0) {
            gfs_err(&v->log, "%s: cannot unwrap the data key: %s", v->name,
                    glidefs_strerror(r));
            mbedtls_platform_zeroize(kek, sizeof kek);
            return r == -EINVAL ? -EIO : r;
        }
        have = 1;
    } else if (pw && *pw) {
        gfs_warn(&v->log, "%s: created without encryption; storage.encryption_password applies "
                 "to new volumes only", v->name);
    }
    struct gfs_codec_params p = {
        .block_size = v->meta.block_size,
        .compress = strcmp(v->meta.compression, "zstd") == 0,
        .level = cfg->compression_level,
        .keys = have ? keys : NULL,
        .nkeys = n,
        .kek = have ? kek : NULL,
    };
    memcpy(p.volume_uuid, v->meta.data_uuid, 16);
    int r = gfs_codec_new(&p, &v->codec);
    mbedtls_platform_zeroize(keys, sizeof keys);
    mbedtls_platform_zeroize(kek, sizeof kek);
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
        int r = v->store->ops->get(v->store, key, GFS_VOLUME_JSON_MAX, &buf, &len, NULL);
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
        if (gfs_uuid_new(v->meta.uuid) < 0)
            return -EIO;
        gfs_uuid_format(v->meta.uuid, v->meta.uuid_str);
        memcpy(v->meta.data_uuid, v->meta.uuid, 16);
        gfs_uuid_format(v->meta.data_uuid, v->meta.data_uuid_str);
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
    if (r == 0) {
        uint8_t kek[32];
        if (gfs_keywrap_kek(new_pw, &kw, kek) == 0)
            gfs_codec_set_kek(v->codec, kek); /* later rotations wrap under it */
        mbedtls_platform_zeroize(kek, sizeof kek);
        gfs_info(&v->log, "%s: encryption password changed (data not rewritten)", v->name);
    }
    return r;
}

/* Seal keys (consecutive generations) into a copy of v->meta.kw and write
 * volume.json with it; v->meta.kw is replaced only when the PUT succeeded.
 * own_lock held. */
/* The codec's KEK and a copy of v->meta.kw (taken under the lock). */
static int kek_and_wrap(struct glidefs_volume *v, uint8_t kek[32], struct gfs_keywrap *kw)
{
    int r = gfs_codec_kek(v->codec, kek);
    SCOPED_LOCK(&v->lock);
    *kw = v->meta.kw;
    return r;
}

static int store_keys(struct glidefs_volume *v, const struct gfs_datakey *keys, unsigned n)
{
    uint8_t kek[32];
    struct gfs_keywrap kw;
    int r = kek_and_wrap(v, kek, &kw);
    struct gfs_keywrap old = kw;
    if (r == 0)
        r = gfs_keywrap_seal_all(kek, v->meta.data_uuid, keys, n, &kw);
    mbedtls_platform_zeroize(kek, sizeof kek);
    if (r < 0)
        return r;
    pthread_mutex_lock(&v->lock);
    v->meta.kw = kw;
    pthread_mutex_unlock(&v->lock);
    r = put_volmeta(v, 0);
    if (r < 0) {
        pthread_mutex_lock(&v->lock);
        v->meta.kw = old;
        pthread_mutex_unlock(&v->lock);
    }
    return r;
}

/* The data keys v->meta.kw holds, oldest first. */
static int held_keys(struct glidefs_volume *v, struct gfs_datakey *keys, unsigned *n)
{
    uint8_t kek[32];
    struct gfs_keywrap kw;
    int r = kek_and_wrap(v, kek, &kw);
    if (r == 0)
        r = gfs_keywrap_open_all(kek, &kw, v->meta.data_uuid, keys, n);
    mbedtls_platform_zeroize(kek, sizeof kek);
    return r;
}

GLIDEFS_API int glidefs_volume_rotate_key(glidefs_volume *v, unsigned flags)
{
    if (!v || flags)
        return -EINVAL;
    SCOPED_LOCK(&v->own_lock); /* one metadata writer at a time */
    pthread_mutex_lock(&v->lock);
    int owner = v->owner, enc = v->meta.encrypted;
    pthread_mutex_unlock(&v->lock);
    if (!enc)
        return -EINVAL;
    if (!owner)
        return -EROFS;
    struct gfs_datakey keys[GFS_KEYWRAP_MAX_GENS];
    unsigned n = 0;
    int r = held_keys(v, keys, &n);
    if (r == 0 && n == GFS_KEYWRAP_MAX_GENS)
        r = -ENOSPC; /* old generations still in use: let compaction retire them first */
    if (r == 0) {
        keys[n].gen = keys[n - 1].gen + 1;
        r = gfs_random_bytes(keys[n].key, 32);
    }
    /* volume.json holds the new key before any segment is sealed under it */
    if (r == 0)
        r = store_keys(v, keys, n + 1);
    if (r == 0)
        r = gfs_codec_add_gen(v->codec, &keys[n]);
    if (r == 0)
        gfs_info(&v->log, "%s: data key rotated: new writes use generation %u; compaction "
                 "re-seals the %u older one(s)", v->name, keys[n].gen, n);
    else
        gfs_err(&v->log, "%s: data key rotation failed: %s", v->name, glidefs_strerror(r));
    mbedtls_platform_zeroize(keys, sizeof keys);
    return r;
}

static int retire_locked(struct glidefs_volume *v, uint32_t upto);

int gfs_volmeta_retire_keys(struct glidefs_volume *v, uint32_t upto)
{
    /* the caller is the syncer thread: a holder of own_lock may be waiting
     * for it (a release drains), so never wait for own_lock here */
    if (pthread_mutex_trylock(&v->own_lock) != 0)
        return -EAGAIN;
    int r = retire_locked(v, upto);
    pthread_mutex_unlock(&v->own_lock);
    return r;
}

static int retire_locked(struct glidefs_volume *v, uint32_t upto)
{
    if (!v->meta.encrypted || !v->owner)
        return -EINVAL;
    struct gfs_datakey keys[GFS_KEYWRAP_MAX_GENS];
    unsigned n = 0, k = 0;
    int r = held_keys(v, keys, &n);
    while (r == 0 && k < n && keys[k].gen <= upto)
        k++;
    if (r == 0 && (k == 0 || k == n))
        r = k == 0 ? 0 : -EINVAL; /* nothing to retire / the newest stays */
    else if (r == 0) {
        /* no new segment under them (none is being sealed now: else
         * -EBUSY, try later), then the store forgets them, then this node */
        uint32_t was = 0;
        r = gfs_codec_freeze(v->codec, upto, &was);
        if (r == 0) {
            r = store_keys(v, keys + k, n - k);
            if (r < 0)
                gfs_codec_unfreeze(v->codec, was);
        }
        if (r == 0)
            r = gfs_codec_retire(v->codec, upto);
        if (r == 0)
            gfs_info(&v->log, "%s: data key generation(s) up to %u retired: no segment "
                     "needs them any more", v->name, upto);
    }
    mbedtls_platform_zeroize(keys, sizeof keys);
    return r;
}

int gfs_volmeta_follow_keys(struct glidefs_volume *v)
{
    CLEANUP_FREE void *buf = NULL;
    size_t len = 0;
    int r = get_volmeta(v, &buf, &len);
    if (r < 0)
        return r;
    struct gfs_volmeta m;
    r = gfs_volmeta_parse(&m, v->name, &v->log, buf, len);
    if (r < 0 || !m.encrypted || memcmp(m.data_uuid, v->meta.data_uuid, 16) != 0)
        return r < 0 ? r : -EIO;
    uint8_t kek[32];
    struct gfs_datakey keys[GFS_KEYWRAP_MAX_GENS];
    unsigned n = 0, added = 0;
    r = gfs_codec_kek(v->codec, kek);
    if (r == 0)
        r = gfs_keywrap_open_all(kek, &m.kw, m.data_uuid, keys, &n);
    for (unsigned i = 0; r == 0 && i < n; i++) {
        if (gfs_codec_has_gen(v->codec, keys[i].gen))
            continue;
        r = gfs_codec_add_gen(v->codec, &keys[i]);
        added += r == 0;
    }
    if (r == 0 && gfs_keywrap_first(&m.kw) > 1)
        gfs_codec_retire(v->codec, gfs_keywrap_first(&m.kw) - 1);
    if (r == 0) {
        pthread_mutex_lock(&v->lock);
        v->meta.kw = m.kw;
        pthread_mutex_unlock(&v->lock);
    }
    if (r == 0 && added)
        gfs_info(&v->log, "%s: learnt data key generation %u from volume.json", v->name,
                 keys[n - 1].gen);
    mbedtls_platform_zeroize(kek, sizeof kek);
    mbedtls_platform_zeroize(keys, sizeof keys);
    return r < 0 ? r : (int)added;
}

GLIDEFS_API int glidefs_resize(glidefs_volume *v, uint64_t new_size)
{
    if (new_size % 512 || new_size == 0 || new_size > GLIDEFS_MAX_VOLUME_SIZE)
        return -EINVAL;
    /* metadata changes serialise on own_lock; the PUT runs without the
     * volume lock so I/O goes on meanwhile */
    SCOPED_LOCK(&v->own_lock);
    pthread_mutex_lock(&v->lock);
    int r = 0;
    if (v->read_only)
        r = -EROFS;
    else if (new_size < v->size)
        r = -EINVAL;
    else if (new_size == v->size)
        r = 1;
    else
        r = gfs_bm_grow(&v->sv.bm, (new_size + v->bs - 1) / v->bs);
    uint64_t old = v->meta.size;
    if (r == 0)
        v->meta.size = new_size;
    pthread_mutex_unlock(&v->lock);
    if (r != 0)
        return r > 0 ? 0 : r;
    r = gfs_volmeta_store(v);
    pthread_mutex_lock(&v->lock);
    if (r < 0)
        v->meta.size = old;
    else
        v->size = new_size;
    pthread_mutex_unlock(&v->lock);
    if (r == 0)
        gfs_info(&v->log, "%s: grown to %" PRIu64 " bytes", v->name, new_size);
    return r;
}
