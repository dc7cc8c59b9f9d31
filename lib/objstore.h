/*
 * objstore.h — the object-store interface every backend implements (file://,
 * s3://, azure://). Shaped after S3's semantics: whole-object PUT, ranged GET, HEAD,
 * DELETE, paginated LIST by prefix. Keys are relative to the store's root
 * (the URL's path/prefix) and never start with '/'.
 *
 * All functions return 0 or a negative errno:
 *   -ENOENT   no such object (GET/HEAD/DELETE may treat missing as success, see below)
 *   -EEXIST   conditional PUT (GFS_PUT_IF_NONE_MATCH) found an object
 *   -ECANCELED conditional PUT (if_match etag) did not match (412)
 *   -EACCES   credentials refused (not retried)
 *   -EIO      anything else after retries were exhausted
 * A store is safe to use from many threads at once.
 */
#ifndef GLIDEFS_OBJSTORE_H
#define GLIDEFS_OBJSTORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct gfs_log;

/* put flags */
#define GFS_PUT_IF_NONE_MATCH 0x1u /* fail with -EEXIST if the key exists */

struct gfs_obj_info {
    uint64_t size;
    char etag[72]; /* opaque version tag, "" if the store has none */
};

/* Called once per listed key, in lexical order. Return 0 to go on, non-zero
 * to stop the listing (that value is then returned by list). */
typedef int (*gfs_list_cb)(void *arg, const char *key, uint64_t size);

struct gfs_objstore;

struct gfs_objstore_ops {
    /* Store the whole object atomically (readers see the old or the new object). */
    int (*put)(struct gfs_objstore *st, const char *key, const void *buf, size_t len,
               unsigned flags, const char *if_match_etag);
    /* Ranged GET: read up to len bytes from offset into buf; *got = bytes read
     * (short only at the object's end). len == 0 is not allowed. */
    int (*get_range)(struct gfs_objstore *st, const char *key, uint64_t offset, size_t len,
                     void *buf, size_t *got);
    /* Whole-object GET into a malloc'd buffer (*out, *outlen); max_len bounds it
     * (-EFBIG if larger). */
    int (*get)(struct gfs_objstore *st, const char *key, size_t max_len, void **out,
               size_t *outlen, struct gfs_obj_info *info);
    int (*head)(struct gfs_objstore *st, const char *key, struct gfs_obj_info *info);
    /* Deleting a missing key is success (as on S3). */
    int (*del)(struct gfs_objstore *st, const char *key);
    /* List keys beginning with prefix whose key is > start_after (or all if
     * NULL), in lexical order, paging internally. */
    int (*list)(struct gfs_objstore *st, const char *prefix, const char *start_after,
                gfs_list_cb cb, void *arg);
    void (*destroy)(struct gfs_objstore *st);
    /* put that also returns the new object's ETag (what a following
     * conditional write must name), saving a read-back. */
    int (*put_etag)(struct gfs_objstore *st, const char *key, const void *buf, size_t len,
                    unsigned flags, const char *if_match_etag, char etag_out[72]);
    /* Delete n keys, as few requests as the store allows (S3 DeleteObjects:
     * up to 1000 keys each; file://: one by one). Missing keys count as
     * deleted. 0 when every key is gone; -EIO when some were not deleted
     * (*failed, if not NULL, says how many; which ones is unknown: delete
     * them all again); -EACCES, -ENOENT (no bucket), -EINVAL as for del.
     * Call it through gfs_objstore_del_many(). */
    int (*del_many)(struct gfs_objstore *st, const char *const *keys, size_t n,
                    size_t *failed);
};

struct gfs_objstore_stats {
    _Atomic uint64_t puts, put_bytes, gets, get_bytes, heads, deletes, lists, errors, retries;
    _Atomic uint64_t delete_requests; /* DELETE and DeleteObjects requests (deletes counts keys) */
};

/* Count n into a stats counter: relaxed, the counters order nothing. */
static inline void gfs_stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* Common head of every backend's state. Backends embed it first. */
struct gfs_objstore {
    const struct gfs_objstore_ops *ops;
    struct gfs_log *log;
    /* counters, updated by the backends with gfs_stat_add */
    struct gfs_objstore_stats stats;
};

struct glidefs_config;

/* Open the store named by cfg's storage.url (file://, s3:// or azure://
 * (objstore_azure.h)). On failure
 * returns a negative errno and writes one line into err. */
int gfs_objstore_open(const struct glidefs_config *cfg, struct gfs_log *log,
                      struct gfs_objstore **out, char *err, size_t errlen);

int gfs_objstore_file_open(const char *root_dir, struct gfs_log *log,
                           struct gfs_objstore **out, char *err, size_t errlen);
int gfs_objstore_s3_open(const struct glidefs_config *cfg, struct gfs_log *log,
                         struct gfs_objstore **out, char *err, size_t errlen);
/* Tests: make file store s resolve paths one component at a time, as it
 * does on a kernel without openat2. */
void gfs_objstore_file_walk_only(struct gfs_objstore *s);

/* ops->del_many, or del key by key for a backend without it. */
int gfs_objstore_del_many(struct gfs_objstore *st, const char *const *keys, size_t n,
                          size_t *failed);
/* del key by key with del_many's contract (stops at the first -EACCES,
 * -ENOENT, -EINVAL or -ENOMEM: the rest would fail the same way). */
int gfs_objstore_del_each(struct gfs_objstore *st, const char *const *keys, size_t n,
                          size_t *failed);

/* Keys collected by a list call: pass gfs_keylist_add as the callback and
 * a zeroed struct gfs_keylist as its argument. */
struct gfs_keylist {
    char **keys;
    size_t n, cap;
};
int gfs_keylist_add(void *arg, const char *key, uint64_t size);
void gfs_keylist_free(struct gfs_keylist *l);

static inline void gfs_objstore_close(struct gfs_objstore *st)
{
    if (st)
        st->ops->destroy(st);
}

#endif
