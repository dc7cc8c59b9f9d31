/*
 * rest_handlers.c — the REST API's handlers, one per route: exports
 * (list, create, status, resize, delete, drain, promote, release, compact, scrub,
 * metrics), fenced data, snapshots and clones (rest_internal.h).
 */
#include "rest_internal.h"
#include "scrubber.h"

#include "sockets.h"
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "api_guard.h"
#include "cleanup.h"
#include "config.h"
#include "exports.h"
#include "log.h"
#include "metrics.h"
#include "nbd_server.h"

/* ------------------------------------------------------------------------ */
/* Exports                                                                   */
/* ------------------------------------------------------------------------ */

static void human_bytes(uint64_t v, char *buf, size_t len)
{
    static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double d = (double)v;
    int u = 0;
    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " bytes", v);
    else
        snprintf(buf, len, "%.1f %s", d, units[u]);
}

static struct drain_mark *find_drain_locked(struct gd_rest *r, const char *name)
{
    for (struct drain_mark *d = r->drains; d; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

void rest_drain_mark(struct gd_rest *r, const char *name, uint64_t dirty)
{
    SCOPED_LOCK(&r->lock);
    struct drain_mark *d = find_drain_locked(r, name);
    if (d) {
        d->count++;
        return;
    }
    d = calloc(1, sizeof *d);
    if (!d)
        return; /* only the "draining" state is lost */
    snprintf(d->name, sizeof d->name, "%s", name);
    d->count = 1;
    d->dirty_at_start = dirty;
    d->started_ms = gfs_wall_ms();
    d->next = r->drains;
    r->drains = d;
}

static void drain_unmark(struct gd_rest *r, const char *name)
{
    SCOPED_LOCK(&r->lock);
    for (struct drain_mark **pp = &r->drains; *pp; pp = &(*pp)->next) {
        struct drain_mark *d = *pp;
        if (strcmp(d->name, name) == 0) {
            if (--d->count == 0) {
                *pp = d->next;
                free(d);
            }
            return;
        }
    }
}

/* fenced: another node took the lease from us, or we came back with data of
 * a lost lease kept aside (until it is discarded); draining: an API drain runs;
 * idle: no clients and no lease here (handed back when the last client left;
 * the next client takes it again, or another node promotes). */
static const char *state_of(const struct glidefs_stats *st, int conns, bool draining)
{
    if (st->fenced || (st->fenced_bytes && st->read_only))
        return "fenced";
    if (draining)
        return "draining";
    if (!st->read_only)
        return "read-write";
    return conns == 0 && !st->lease_owner ? "idle" : "read-only";
}

#define J(v) ((json_int_t)(v))

/* The export object of docs/design.md section 3: {"name", "size_bytes", "read_only",
 * "connections", "dirty_bytes", "state", ...}. */
static json_t *export_json(struct gd_rest *r, const char *name, const struct glidefs_stats *st,
                           int conns)
{
    bool draining = false;
    int64_t drain_started = 0;
    uint64_t drain_dirty0 = 0;
    {
        SCOPED_LOCK(&r->lock);
        struct drain_mark *d = find_drain_locked(r, name);
        if (d) {
            draining = true;
            drain_started = d->started_ms;
            drain_dirty0 = d->dirty_at_start;
        }
    }
    char last_sync[40] = "", drain_at[40] = "";
    if (st->last_sync_time_ms > 0)
        gd_metrics_iso_time(st->last_sync_time_ms, last_sync, sizeof last_sync);
    if (draining)
        gd_metrics_iso_time(drain_started, drain_at, sizeof drain_at);
    json_t *o = json_pack("{s:s, s:I, s:b, s:I, s:I, s:s}", "name", name, "size_bytes",
                          J(st->size_bytes), "read_only", st->read_only != 0, "connections",
                          J(conns), "dirty_bytes", J(st->dirty_bytes), "state",
                          state_of(st, conns, draining));
    json_t *lease = json_pack("{s:I, s:b, s:b, s:I, s:s, s:s, s:s}", "lease_epoch",
                              J(st->lease_epoch), "lease_owner", st->lease_owner != 0, "fenced",
                              st->fenced != 0, "fenced_bytes", J(st->fenced_bytes),
                              "lease_node", st->lease_node, "lease_instance",
                              st->lease_instance, "store_conditional_writes",
                              gd_metrics_cond_name(st->store_conditional));
    json_t *cache = json_pack("{s:I, s:I, s:I, s:I, s:I, s:f}", "block_size", J(st->block_size),
                              "cached_bytes", J(st->cached_bytes), "journal_bytes",
                              J(st->journal_bytes), "cache_hits", J(st->cache_hits),
                              "cache_misses", J(st->cache_misses), "cache_hit_ratio",
                              gd_metrics_hit_ratio(st));
    json_t *store = json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:f}",
                              "key_generation", J(st->key_generation), "key_generations",
                              J(st->key_generations), "segments_old_key",
                              J(st->segments_old_key), "stored_bytes",
                              J(st->stored_bytes), "live_bytes", J(st->live_bytes),
                              "overhead_ratio", gd_metrics_overhead_ratio(st), "segments",
                              J(st->segments), "store_puts", J(st->store_puts), "store_gets",
                              J(st->store_gets), "store_errors", J(st->store_errors),
                              "store_retries", J(st->store_retries), "est_monthly_cost_usd",
                              st->est_monthly_cost_usd);
    json_t *sync = json_pack("{s:I, s:I, s:s?, s:I, s:I, s:I, s:b, s:s?, s:I, s:s?}",
                             "dirty_bytes", J(st->dirty_bytes), "oldest_dirty_age_ms",
                             J(st->oldest_dirty_age_ms), "last_sync_time",
                             last_sync[0] ? last_sync : NULL, "last_sync_time_ms",
                             J(st->last_sync_time_ms), "segments_uploaded",
                             J(st->segments_uploaded), "blocks_uploaded", J(st->blocks_uploaded),
                             "draining", draining, "drain_started", drain_at[0] ? drain_at : NULL,
                             "drain_dirty_at_start", J(drain_dirty0), "last_error",
                             st->last_error ? glidefs_strerror(st->last_error) : NULL);
    json_t *cold = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "profile_blocks_recorded",
                             J(st->profile_blocks_recorded), "prefetched_blocks",
                             J(st->prefetched_blocks), "prefetch_hits", J(st->prefetch_hits),
                             "prefetch_wasted_bytes", J(st->prefetch_wasted_bytes),
                             "first_read_ms", J(st->first_read_ms), "cache_restored_blocks",
                             J(st->cache_restored_blocks), "layout_blocks",
                             J(st->layout_blocks));
    json_t *tail = json_pack("{s:s?, s:I, s:s?, s:s, s:I, s:I}", "last_sync_time",
                             last_sync[0] ? last_sync : NULL, "oldest_dirty_age_ms",
                             J(st->oldest_dirty_age_ms), "last_error",
                             st->last_error ? glidefs_strerror(st->last_error) : NULL,
                             "durability", gd_metrics_durability_name(st->durability),
                             "max_unsynced_s", J(st->max_unsynced_ms / 1000),
                             "max_unsynced_bytes", J(st->max_unsynced_bytes));
    /* exposure: what losing this node with its disk would lose */
    json_t *expo = json_pack("{s:I, s:I, s:I, s:I, s:I}", "unsynced_bytes", J(st->dirty_bytes),
                             "unsynced_age_ms", J(st->oldest_dirty_age_ms), "store_flushes",
                             J(st->store_flushes), "store_flush_errors",
                             J(st->store_flush_errors), "unsynced_waits",
                             J(st->unsynced_waits));
    if (sync && (!expo || json_object_update(sync, expo) < 0)) {
        json_decref(sync);
        sync = NULL;
    }
    json_decref(expo);
    json_t *scrub = gd_scrubber_json(gd_registry_scrubber(r->reg), name);
    int bad = !o || !lease || !cache || !store || !sync || !tail || !cold || !scrub ||
              json_object_update(o, cold) < 0 ||
              json_object_update(o, lease) < 0 || json_object_update(o, cache) < 0 ||
              json_object_update(o, store) < 0 || json_object_update(o, tail) < 0 ||
              json_object_set(o, "sync", sync) < 0 || json_object_set(o, "scrub", scrub) < 0;
    json_decref(cold);
    json_decref(scrub);
    json_decref(lease);
    json_decref(cache);
    json_decref(store);
    json_decref(tail);
    json_decref(sync);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Take a reference to c->name: flags as gd_export_acquire_ex (0: open it if
 * it exists in the store; GD_ACQUIRE_OPEN_ONLY: only if open here; WRITER:
 * like a connecting client, take back the write lease the registry handed
 * back when the last client left, unless another node took it). 0, or -1
 * after rest_fail(). */
#define WRITER GD_ACQUIRE_CLIENT
static int get_export(struct call *c, unsigned flags, struct gd_export **e)
{
    int rc = gd_export_acquire_ex(c->r->reg, c->name, 0, 0, flags, e);
    if (rc == 0)
        return 0;
    if (rc == -ENOENT && (flags & GD_ACQUIRE_OPEN_ONLY))
        return rest_fail(c, 404, "export %s is not open on this node (it opens when a client "
                            "connects; GET /api/exports lists the open ones)", c->name);
    if (rc == -ENOENT)
        return rest_fail(c, 404, "no export %s in the store (create it with POST /api/exports, or "
                            "connect a client to create it)", c->name);
    if (rc == -ESHUTDOWN)
        return rest_fail(c, 503, "glidefsd is shutting down");
    return rest_fail(c, rest_status_for(rc), "cannot open export %s: %s (see the glidefsd log)", c->name,
                     glidefs_strerror(rc));
}

/* Stats of an export we hold; rest_fail() 500 on error. */
static int export_stats(struct call *c, struct gd_export *e, struct glidefs_stats *st)
{
    memset(st, 0, sizeof *st);
    int rc = glidefs_stats(gd_export_volume(e), st, sizeof *st);
    if (rc < 0)
        return rest_fail(c, 500, "cannot read the stats of export %s: %s", c->name,
                         glidefs_strerror(rc));
    return 0;
}

/* A snapshot name as the API shows it: a clone of the live state is made
 * from an implicit snapshot ("@clone-CHILD", not listed): null. */
static json_t *snap_name_json(const char *snap)
{
    return snap && snap[0] && glidefs_name_valid(snap) ? json_string(snap) : json_null();
}

#ifdef GLIDEFS_HAVE_LINEAGE
/* "lineage": ancestor names, root first ([] unless a clone), and "parent":
 * {"name", "snapshot"} (null unless a clone). NULL on failure, logged. */
static json_t *lineage_json(const char *name, glidefs_volume *vol)
{
    char snap[GLIDEFS_NAME_MAX + 8] = "";
    int depth = glidefs_volume_lineage(vol, NULL, 0, snap, sizeof snap);
    char (*names)[GLIDEFS_NAME_MAX + 1] = NULL;
    if (depth > 0) {
        names = calloc((size_t)depth, sizeof *names);
        if (!names)
            return NULL;
        int d2 = glidefs_volume_lineage(vol, names, depth, snap, sizeof snap);
        if (d2 != depth)
            depth = d2 < 0 ? d2 : -EAGAIN;
    }
    if (depth < 0) {
        gd_warn("api: export %s: cannot read its lineage: %s", name, glidefs_strerror(depth));
        free(names);
        return NULL;
    }
    json_t *lin = json_array();
    for (int i = 0; lin && i < depth; i++)
        if (json_array_append_new(lin, json_string(names[i])) < 0) {
            json_decref(lin);
            lin = NULL;
        }
    json_t *o = lin ? json_pack("{s:o, s:o}", "lineage", lin, "parent",
                                depth > 0 ? json_pack("{s:s, s:o}", "name", names[depth - 1],
                                                      "snapshot", snap_name_json(snap))
                                          : json_null())
                    : NULL;
    free(names);
    return o;
}
#endif

/* Answer with the export object of e (and release it). key/extra: one more
 * member (extra stolen); key NULL and extra an object: its members. */
static int answer_export_ex(struct call *c, unsigned status, struct gd_export *e,
                            const char *key, json_t *extra, bool peek)
{
    struct glidefs_stats st;
    int rc = export_stats(c, e, &st);
    int conns = gd_export_conns(e);
#ifdef GLIDEFS_HAVE_LINEAGE
    json_t *lin = rc < 0 ? NULL : lineage_json(c->name, gd_export_volume(e));
#endif
    if (peek)
        gd_export_release_peek(e);
    else
        gd_export_release(e, 0);
    if (rc < 0) {
        json_decref(extra);
        return -1;
    }
    json_t *o = export_json(c->r, c->name, &st, conns);
#ifdef GLIDEFS_HAVE_LINEAGE
    if (o && lin)
        json_object_update(o, lin);
    json_decref(lin);
#endif
    if (o && key && extra)
        json_object_set(o, key, extra);
    else if (o && !key && json_is_object(extra))
        json_object_update(o, extra);
    json_decref(extra);
    return rest_ok(c, status, o);
}

static int answer_export(struct call *c, unsigned status, struct gd_export *e, const char *key,
                         json_t *extra)
{
    return answer_export_ex(c, status, e, key, extra, false);
}

/* ------------------------------------------------------------------------ */
/* Handlers                                                                  */
/* ------------------------------------------------------------------------ */

int rest_h_healthz(struct call *c)
{
    const glidefs_config *cfg = c->r->cfg;
    char instance[64] = "";
    if (glidefs_instance_id(cfg, instance, sizeof instance) < 0)
        instance[0] = '\0';
    int cond = atomic_load_explicit(&cfg->probe_state, memory_order_acquire);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "status", "ok", "version",
                          GLIDEFSD_VERSION, "libglidefs", glidefs_version(), "node_id",
                          cfg->node_id ? cfg->node_id : "", "instance", instance,
                          "store_conditional_writes", gd_metrics_cond_name(cond),
                          "unsafe_accept_split_brain_on_lax_store",
                          cfg->storage_unsafe_lax_takeover != 0);
    if (o && (cond == GLIDEFS_STORE_COND_IGNORED || cond == GLIDEFS_STORE_COND_BROKEN)) {
        /* liveness stays "ok" (the daemon serves); the warning is loud */
        char w[600];
        snprintf(w, sizeof w, "the object store %s conditional writes (%s): taking a write "
                 "lease from another node, promote and forced promote are %s",
                 cond == GLIDEFS_STORE_COND_IGNORED ? "ignores" : "breaks", cfg->probe_detail,
                 cfg->storage_unsafe_lax_takeover
                     ? "allowed by storage.unsafe_accept_split_brain_on_lax_store: two nodes "
                       "taking one at once could both write"
                     : "refused");
        json_object_set_new(o, "warnings", json_pack("[s]", w));
    } else if (o && cond == GLIDEFS_STORE_COND_OK && cfg->probe_detail[0]) {
        /* honoured, in a way of its own (Ceph RGW's bare If-Match) */
        json_object_set_new(o, "store_notes", json_pack("[s]", cfg->probe_detail));
    }
    return rest_ok(c, 200, o);
}

int rest_h_prometheus(struct call *c)
{
    struct gd_export_snap *snaps = NULL;
    size_t n = 0;
    if (gd_metrics_collect(c->r->reg, &snaps, &n) < 0)
        return rest_fail(c, 500, "out of memory");
    size_t len = 0;
    char *text = gd_metrics_prometheus(snaps, n, atomic_load_explicit(&c->r->cfg->probe_state,
                                                                      memory_order_acquire), &len);
    /* the scrub families (scrubber.c keeps their record) */
    const char **names = malloc((n ? n : 1) * sizeof *names);
    for (size_t i = 0; names && i < n; i++)
        names[i] = snaps[i].name;
    if (text && (!names || gd_scrubber_prometheus(gd_registry_scrubber(c->r->reg), names, n,
                                                  &text, &len) < 0)) {
        free(text);
        text = NULL;
    }
    free(names);
    free(snaps);
    if (!text)
        return rest_fail(c, 500, "out of memory");
    c->text = text;
    c->text_len = len;
    c->content_type = "text/plain; version=0.0.4; charset=utf-8";
    c->status = 200;
    return 0;
}

int rest_h_list(struct call *c)
{
    struct gd_export_snap *snaps = NULL;
    size_t n = 0;
    if (gd_metrics_collect(c->r->reg, &snaps, &n) < 0)
        return rest_fail(c, 500, "out of memory");
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        json_t *o = export_json(c->r, snaps[i].name, &snaps[i].st, snaps[i].conns);
        if (!o || json_array_append_new(arr, o) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(snaps);
    return rest_ok(c, 200, arr ? json_pack("{s:o}", "exports", arr) : NULL);
}

static int clone_export(struct call *c, const char *child, const char *parent,
                        const char *snap);

/* Copy the name in member `key` of obj (must be a valid name) into out.
 * 0, or -1 after rest_fail(). */
static int body_name(struct call *c, json_t *obj, const char *key, const char *what, char *out,
                     size_t outlen)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return rest_fail(c, 400, "missing \"%s\" (a string) in the request body", key);
    const char *s = json_string_value(v);
    if (!glidefs_name_valid(s) || strlen(s) >= outlen)
        return rest_fail(c, 400, "invalid %s name in \"%s\": names are 1 to %d characters of A-Z "
                         "a-z 0-9 . _ -, not starting with '.'", what, key, GLIDEFS_NAME_MAX);
    snprintf(out, outlen, "%s", s);
    return 0;
}

/* The durability fields of a body (create, PATCH) over *d: "durability"
 * ("local" or "store"), "max_unsynced_s" (0..86400), "max_unsynced_bytes"
 * (0..2^50). *have: any was given. 0, or -1 after rest_fail(). */
static int body_durability(struct call *c, json_t *j, struct glidefs_durability *d, int *have)
{
    json_t *m = json_object_get(j, "durability");
    if (m) {
        const char *s = json_is_string(m) ? json_string_value(m) : "";
        if (strcmp(s, "local") != 0 && strcmp(s, "store") != 0)
            return rest_fail(c, 400, "\"durability\" is \"local\" (a flush is durable on this "
                                "node) or \"store\" (a flush waits for the store)");
        d->mode = strcmp(s, "store") == 0 ? GLIDEFS_DURABILITY_STORE : GLIDEFS_DURABILITY_LOCAL;
        *have = 1;
    }
    json_t *t = json_object_get(j, "max_unsynced_s");
    if (t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > 86400)
            return rest_fail(c, 400, "\"max_unsynced_s\" is an integer, 0 (unbounded) to 86400");
        d->max_unsynced_ms = (uint32_t)json_integer_value(t) * 1000u;
        *have = 1;
    }
    json_t *b = json_object_get(j, "max_unsynced_bytes");
    if (b) {
        if (!json_is_integer(b) || json_integer_value(b) < 0 ||
            json_integer_value(b) > ((json_int_t)1 << 50))
            return rest_fail(c, 400, "\"max_unsynced_bytes\" is an integer, 0 (unbounded) to "
                                "2^50");
        d->max_unsynced_bytes = (uint64_t)json_integer_value(b);
        *have = 1;
    }
    return 0;
}

static void log_durability(const char *name, const struct glidefs_durability *d)
{
    gd_info("api: export %s: durability %s, max_unsynced_s %u, max_unsynced_bytes %" PRIu64,
            name, gd_metrics_durability_name((int)d->mode), d->max_unsynced_ms / 1000,
            d->max_unsynced_bytes);
}

int rest_h_create(struct call *c)
{
    json_t *j = rest_body_object(c);
    if (!j)
        return -1;
    uint64_t size = c->r->cfg->nbd_auto_create_size;
    int have = 0;
    char name[GLIDEFS_NAME_MAX + 1], parent[GLIDEFS_NAME_MAX + 1] = "";
    char snap[GLIDEFS_NAME_MAX + 1] = "";
    bool clone = json_object_get(j, "clone_of") != NULL;
    /* the config's defaults, as an open would take them */
    const glidefs_config *cfg = c->r->cfg;
    struct glidefs_durability dur = {
        cfg->storage_durability && strcmp(cfg->storage_durability, "store") == 0
            ? GLIDEFS_DURABILITY_STORE : GLIDEFS_DURABILITY_LOCAL,
        (uint32_t)cfg->storage_max_unsynced_s * 1000u, cfg->storage_max_unsynced_bytes};
    int have_dur = 0;
    if (rest_only_fields(c, j, "name,size_gb,size_bytes,size,clone_of,snapshot,durability,"
                               "max_unsynced_s,max_unsynced_bytes") < 0 ||
        body_durability(c, j, &dur, &have_dur) < 0 ||
        rest_body_size(c, j, &size, &have) < 0 ||
        body_name(c, j, "name", "export", name, sizeof name) < 0 ||
        (clone && body_name(c, j, "clone_of", "export", parent, sizeof parent) < 0) ||
        (json_object_get(j, "snapshot") &&
         body_name(c, j, "snapshot", "snapshot", snap, sizeof snap) < 0)) {
        json_decref(j);
        return -1;
    }
    json_decref(j);
    if (snap[0] && !clone)
        return rest_fail(c, 400, "\"snapshot\" needs \"clone_of\": send {\"name\": \"CHILD\", "
                            "\"clone_of\": \"PARENT\", \"snapshot\": \"SNAP\"} to clone");
    if (clone && have)
        return rest_fail(c, 400, "a clone has the size of its parent's snapshot: leave out the size "
                            "(grow the clone afterwards with PUT /api/exports/%s)", name);
    if (clone && have_dur)
        return rest_fail(c, 400, "set a clone's durability once it exists: PATCH /api/exports/%s",
                         name);
    if (clone)
        return clone_export(c, name, parent, snap[0] ? snap : NULL);
    c->name = name;
    struct gd_export *e = NULL;
    int rc = gd_export_acquire_ex(c->r->reg, name, 0, size,
                                  GLIDEFS_OPEN_CREATE | GLIDEFS_OPEN_EXCLUSIVE, &e);
    if (rc == -EEXIST)
        return rest_fail(c, 409, "export %s already exists (GET /api/exports/%s shows it when it is "
                            "open; PUT /api/exports/%s grows it)", name, name, name);
    if (rc < 0) {
        c->name = NULL;
        if (rc == -ESHUTDOWN)
            return rest_fail(c, 503, "glidefsd is shutting down");
        return rest_fail(c, rest_status_for(rc), "cannot create export %s: %s (see the glidefsd log)",
                         name, glidefs_strerror(rc));
    }
    char hs[32];
    human_bytes(size, hs, sizeof hs);
    gd_info("api: created export %s (%" PRIu64 " bytes, %s)", name, size, hs);
    if (have_dur) {
        rc = gd_registry_set_durability(c->r->reg, name, &dur);
        if (rc < 0) {
            gd_export_release(e, 0);
            c->name = NULL;
            return rest_fail(c, 500, "export %s created, but its durability was not set: %s",
                             name, glidefs_strerror(rc));
        }
        log_durability(name, &dur);
    }
    snprintf(c->location, sizeof c->location, "/api/exports/%s", name);
    rc = answer_export(c, 201, e, NULL, NULL);
    c->name = NULL; /* points into this frame */
    return rc;
}

int rest_h_patch(struct call *c)
{
    json_t *j = rest_body_object(c);
    if (!j)
        return -1;
    if (rest_only_fields(c, j, "durability,max_unsynced_s,max_unsynced_bytes") < 0) {
        json_decref(j);
        return -1;
    }
    struct gd_export *e = NULL;
    if (get_export(c, 0, &e) < 0) {
        json_decref(j);
        return -1;
    }
    glidefs_volume *vol = gd_export_volume(e);
    struct glidefs_durability d;
    int have = 0;
    int rc = glidefs_volume_get_durability(vol, &d, sizeof d);
    if (rc == 0 && body_durability(c, j, &d, &have) < 0)
        rc = 1;
    json_decref(j);
    if (rc == 0 && !have)
        rc = rest_fail(c, 400, "nothing to change: send any of {\"durability\": \"local\" or "
                               "\"store\", \"max_unsynced_s\": N, \"max_unsynced_bytes\": N}");
    else if (rc == 0)
        rc = gd_registry_set_durability(c->r->reg, c->name, &d);
    if (rc < 0 && rc != -1)
        rc = rest_fail(c, 500, "cannot set the durability of export %s: %s", c->name,
                       glidefs_strerror(rc));
    if (rc != 0) {
        gd_export_release(e, 0);
        return -1;
    }
    log_durability(c->name, &d);
    return answer_export(c, 200, e, NULL, NULL);
}

int rest_h_status(struct call *c)
{
    struct gd_export *e = NULL;
    if (get_export(c, GD_ACQUIRE_OPEN_ONLY, &e) < 0)
        return -1;
    return answer_export_ex(c, 200, e, NULL, NULL, true); /* a look: not a use */
}

int rest_h_export_metrics(struct call *c)
{
    struct gd_export *e = NULL;
    if (get_export(c, GD_ACQUIRE_OPEN_ONLY, &e) < 0)
        return -1;
    struct gd_export_snap s;
    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "%s", c->name);
    int rc = export_stats(c, e, &s.st);
    s.conns = gd_export_conns(e);
    gd_export_release_peek(e);
    if (rc < 0)
        return -1;
    return rest_ok(c, 200, gd_metrics_json(&s));
}

int rest_h_resize(struct call *c)
{
    json_t *j = rest_body_object(c);
    if (!j)
        return -1;
    uint64_t size = 0;
    int have = 0;
    int rc = rest_only_fields(c, j, "size_gb,size_bytes,size");
    if (rc == 0)
        rc = rest_body_size(c, j, &size, &have);
    json_decref(j);
    if (rc < 0)
        return -1;
    if (!have)
        return rest_fail(c, 400, "missing the new size: send {\"size_gb\": N}, {\"size_bytes\": N} or "
                            "{\"size\": \"10G\"}");
    struct gd_export *e = NULL;
    if (get_export(c, WRITER, &e) < 0)
        return -1;
    glidefs_volume *vol = gd_export_volume(e);
    uint64_t cur = glidefs_volume_size(vol);
    char a[32], b[32];
    human_bytes(cur, a, sizeof a);
    human_bytes(size, b, sizeof b);
    if (size < cur) {
        gd_export_release(e, 0);
        return rest_fail(c, 400, "cannot shrink export %s from %" PRIu64 " bytes (%s) to %" PRIu64
                         " bytes (%s): volumes only grow", c->name, cur, a, size, b);
    }
    rc = glidefs_resize(vol, size);
    if (rc == -EROFS) {
        gd_export_release(e, 0);
        return rest_fail(c, 409, "export %s is read-only on this node (another node holds its write "
                            "lease, or it was released here): resize it on the writer, or "
                            "promote it here first", c->name);
    }
    if (rc < 0) {
        gd_export_release(e, 0);
        return rest_fail(c, rest_status_for(rc), "cannot resize export %s to %" PRIu64 " bytes: %s",
                         c->name, size, glidefs_strerror(rc));
    }
    if (size != cur)
        gd_info("api: export %s grown from %" PRIu64 " to %" PRIu64 " bytes (%s)", c->name, cur,
                size, b);
    return answer_export(c, 200, e, "previous_size_bytes", json_integer(J(cur)));
}

/* glidefs_drain in slices, so that SIGTERM is not held up. timeout_ms < 0:
 * no limit. */
static int drain_sliced(struct gd_rest *r, glidefs_volume *vol, int64_t timeout_ms)
{
    int64_t deadline = timeout_ms >= 0 ? gfs_now_ms() + timeout_ms : -1;
    for (;;) {
        if (atomic_load(&r->stopping))
            return -ESHUTDOWN;
        int64_t slice = DRAIN_SLICE_MS;
        if (deadline >= 0) {
            int64_t left = deadline - gfs_now_ms();
            if (left <= 0)
                return -ETIMEDOUT;
            if (left < slice)
                slice = left;
        }
        int rc = glidefs_drain(vol, slice);
        if (rc != -ETIMEDOUT)
            return rc;
    }
}

int rest_h_drain(struct call *c)
{
    int64_t timeout_s = -1;
    if (rest_param_seconds(c, "timeout_s", &timeout_s) < 0)
        return -1;
    struct gd_export *e = NULL;
    if (get_export(c, 0, &e) < 0)
        return -1;
    glidefs_volume *vol = gd_export_volume(e);
    struct glidefs_stats before, after;
    if (export_stats(c, e, &before) < 0) {
        gd_export_release(e, 0);
        return -1;
    }
    rest_drain_mark(c->r, c->name, before.dirty_bytes);
    int64_t t0 = gfs_now_ms();
    int rc = drain_sliced(c->r, vol, timeout_s > 0 ? timeout_s * 1000 : -1);
    int64_t took = gfs_now_ms() - t0;
    drain_unmark(c->r, c->name);
    int src = export_stats(c, e, &after);
    gd_export_release(e, 0);
    if (src < 0)
        return -1;
    uint64_t left = after.dirty_bytes;
    uint64_t synced = before.dirty_bytes > left ? before.dirty_bytes - left : 0;
    if (rc == 0) {
        synced = before.dirty_bytes;
        gd_info("api: export %s drained (%" PRIu64 " bytes) in %" PRId64 " ms", c->name, synced,
                took);
        char ls[40] = "";
        if (after.last_sync_time_ms > 0)
            gd_metrics_iso_time(after.last_sync_time_ms, ls, sizeof ls);
        return rest_ok(c, 200, json_pack("{s:s, s:I, s:I, s:I, s:I, s:s?}", "name", c->name,
                                    "bytes_synced", J(synced), "uploaded_bytes",
                                    J(after.store_put_bytes - before.store_put_bytes),
                                    "dirty_bytes", J(left), "duration_ms", J(took),
                                    "last_sync_time", ls[0] ? ls : NULL));
    }
    char lb[32];
    human_bytes(left, lb, sizeof lb);
    if (rc == -ETIMEDOUT) {
        rest_fail(c, 504, "drain of export %s did not finish within %" PRId64 " s: %s still dirty; "
                  "the syncer keeps uploading (check last_error in GET /api/exports/%s, or retry "
                  "with a longer ?timeout_s=)", c->name, timeout_s, lb, c->name);
    } else if (rc == -EROFS) {
        rest_fail(c, 409, "export %s is not the writer here (%s): its %s of local data cannot be "
                  "uploaded from this node", c->name, after.fenced ? "fenced by a newer writer"
                                                              : "read-only", lb);
    } else if (rc == -ESHUTDOWN) {
        rest_fail(c, 503, "glidefsd is shutting down; its own drain of every export takes over");
    } else {
        rest_fail(c, rest_status_for(rc), "drain of export %s failed: %s; %s still dirty, kept in the "
                  "journal (see the glidefsd log)", c->name, glidefs_strerror(rc), lb);
    }
    json_object_set_new(c->json, "dirty_bytes", json_integer(J(left)));
    json_object_set_new(c->json, "bytes_synced", json_integer(J(synced)));
    return -1;
}

/* POST /api/exports/{name}/vhost-user: the export (created with
 * servers.nbd.auto_create_size if it does not exist) on a vhost-user-blk
 * socket, servers.vhost_user.dir/NAME.sock. A body, if any, must be an
 * empty object. The export is released again here: a connecting frontend
 * takes it as a client (vhost_server.c). */
int rest_h_vhost_user(struct call *c)
{
    if (rest_empty_body(c) < 0)
        return -1;
    if (!c->r->vhost)
        return rest_fail(c, 409, "vhost-user is off on this node: set servers.vhost_user.dir "
                         "(glidefs.yaml(5)) and restart glidefsd");
    struct gd_export *e = NULL;
    int rc = gd_export_acquire_ex(c->r->reg, c->name, 0, c->r->cfg->nbd_auto_create_size,
                                  GLIDEFS_OPEN_CREATE, &e);
    if (rc == -ESHUTDOWN)
        return rest_fail(c, 503, "glidefsd is shutting down");
    if (rc < 0)
        return rest_fail(c, rest_status_for(rc), "cannot open or create export %s: %s (see the "
                         "glidefsd log)", c->name, glidefs_strerror(rc));
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)], err[256] = "";
    rc = gd_vhost_serve(c->r->vhost, c->name, path, sizeof path, err, sizeof err);
    gd_export_release(e, 0);
    if (rc == -ESHUTDOWN)
        return rest_fail(c, 503, "glidefsd is shutting down");
    if (rc < 0)
        return rest_fail(c, 500, "cannot serve export %s over vhost-user: %s", c->name,
                         err[0] ? err : glidefs_strerror(rc));
    return rest_ok(c, 200, json_pack("{s:s, s:s}", "name", c->name, "socket", path));
}

int rest_h_promote(struct call *c)
{
    bool force = false;
    if (rest_param_bool(c, "force", &force) < 0)
        return -1;
    struct gd_export *e = NULL;
    if (get_export(c, 0, &e) < 0)
        return -1;
    glidefs_volume *vol = gd_export_volume(e);
    bool was_ro = glidefs_volume_read_only(vol) != 0;
    int rc = glidefs_promote(vol, force ? GLIDEFS_PROMOTE_FORCE : 0);
    if (rc < 0) {
        gd_export_release(e, 0);
        if (rc == -EBUSY && force)
            return rest_fail(c, 409, "forced promote of export %s could not take the write lease: "
                             "every conditional write of it was refused (another node kept "
                             "changing it, or the store does not honour If-Match as sent: see the "
                             "glidefsd log); nothing changed", c->name);
        if (rc == -EBUSY)
            return rest_fail(c, 409, "the write lease of export %s is held by a live node: drain and "
                             "disconnect the export there (its lease is released once the last "
                             "client leaves), wait for the lease to expire "
                             "(servers.lease_timeout_ms), or use ?force=true to take it over "
                             "(fences that node)", c->name);
        if (rc == -EROFS)
            return rest_fail(c, 409, "export %s was opened read-only by configuration and cannot be "
                             "promoted", c->name);
        if (rc == -ENOLCK)
            return rest_fail(c, 409, "promote of export %s refused: the object store does not "
                             "honour conditional writes, so taking the write lease from another "
                             "node could leave two writers (split brain); use a store that does, "
                             "or set storage.unsafe_accept_split_brain_on_lax_store: true to accept "
                             "that risk (see /healthz)", c->name);
        if (rc == -ESTALE)
            return rest_fail(c, 409, "export %s was fenced with unsynced writes of the epoch it "
                             "lost: disconnect its clients so it closes (they are kept aside, see "
                             "fenced_bytes), then promote", c->name);
        return rest_fail(c, rest_status_for(rc), "promote of export %s failed: %s", c->name,
                         glidefs_strerror(rc));
    }
    if (was_ro)
        gd_info("api: export %s promoted to read-write%s", c->name, force ? " (forced)" : "");
    return answer_export(c, 200, e, "promoted", json_boolean(was_ro));
}

int rest_h_release(struct call *c)
{
    int64_t timeout_s = RELEASE_DRAIN_DEFAULT_S;
    if (rest_param_seconds(c, "timeout_s", &timeout_s) < 0)
        return -1;
    struct gd_export *e = NULL;
    if (get_export(c, GD_ACQUIRE_OPEN_ONLY, &e) < 0)
        return -1;
    glidefs_volume *vol = gd_export_volume(e);
    struct glidefs_stats st;
    if (export_stats(c, e, &st) < 0) {
        gd_export_release(e, 0);
        return -1;
    }
    /* Drain in slices first (SIGTERM is not held up), then release: its own
     * drain only has what was written meanwhile. */
    int64_t t0 = gfs_now_ms();
    int rc = st.lease_owner ? drain_sliced(c->r, vol, timeout_s * 1000) : 0;
    if (rc == 0) {
        int64_t left = timeout_s * 1000 - (gfs_now_ms() - t0);
        rc = glidefs_release(vol, left > 1000 ? left : 1000);
    }
    if (rc < 0) {
        gd_export_release(e, 0);
        if (rc == -ETIMEDOUT)
            return rest_fail(c, 504, "release of export %s: the drain did not finish within %" PRId64
                             " s; the lease is kept (retry with a longer ?timeout_s=)", c->name,
                             timeout_s);
        if (rc == -EAGAIN)
            return rest_fail(c, 409, "release of export %s: writes kept arriving; disconnect its "
                             "clients first; the lease is kept", c->name);
        if (rc == -ESHUTDOWN)
            return rest_fail(c, 503, "glidefsd is shutting down; its own drain takes over");
        return rest_fail(c, rest_status_for(rc), "release of export %s failed: %s", c->name,
                         glidefs_strerror(rc));
    }
    if (st.lease_owner)
        gd_info("api: export %s released its write lease", c->name);
    return answer_export(c, 200, e, "released", json_boolean(st.lease_owner != 0));
}

int rest_h_compact(struct call *c)
{
    struct gd_export *e = NULL;
    if (get_export(c, WRITER, &e) < 0)
        return -1;
    struct glidefs_compact_result res;
    memset(&res, 0, sizeof res);
    int64_t t0 = gfs_now_ms();
    int rc = glidefs_compact(gd_export_volume(e), &res, sizeof res);
    gd_export_release(e, 0);
    if (rc == -EROFS)
        return rest_fail(c, 409, "export %s is read-only on this node: only the write lease holder "
                         "compacts (promote it first, or compact on the node that writes)", c->name);
    if (rc < 0)
        return rest_fail(c, rest_status_for(rc), "compaction of export %s failed: %s (see the glidefsd "
                         "log)", c->name, glidefs_strerror(rc));
    gd_info("api: export %s compacted: %" PRIu64 " segments rewritten, %" PRIu64
            " bytes reclaimed", c->name, res.segments_rewritten, res.bytes_reclaimed);
    return rest_ok(c, 200, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "name", c->name,
                                "segments_rewritten", J(res.segments_rewritten),
                                "bytes_rewritten", J(res.bytes_rewritten), "segments_deleted",
                                J(res.segments_deleted), "bytes_reclaimed",
                                J(res.bytes_reclaimed), "stored_bytes", J(res.stored_bytes),
                                "live_bytes", J(res.live_bytes), "duration_ms",
                                J(gfs_now_ms() - t0)));
}

/* Scrub an export (glidefs_scrub; ?deep=true fetches every live block;
 * ?repair=true also writes damaged blocks back from this node's cache, and
 * ?delete_orphans=true deletes the orphan objects, on the writer only): any
 * node that has it open or can open it. 200 whenever the scrub ran, "clean"
 * false and the findings when something is wrong, "repaired" true when a
 * repair and the orphans' deletion mended every one of them. */
int rest_h_scrub(struct call *c)
{
    bool deep = false, fix = false, del = false;
    if (rest_param_bool(c, "deep", &deep) < 0 || rest_param_bool(c, "repair", &fix) < 0 ||
        rest_param_bool(c, "delete_orphans", &del) < 0)
        return -1;
    deep = deep || fix;
    struct gd_export *e = NULL;
    if (get_export(c, 0, &e) < 0)
        return -1;
    struct glidefs_scrub_result res;
    memset(&res, 0, sizeof res);
    int64_t t0 = gfs_now_ms();
    int rc = glidefs_scrub(gd_export_volume(e),
                           (fix ? GLIDEFS_SCRUB_REPAIR : deep ? GLIDEFS_SCRUB_DEEP : 0) |
                               (del ? GLIDEFS_SCRUB_DELETE_ORPHANS : 0),
                           &res, sizeof res);
    gd_export_release(e, 0);
    if (rc == 0) /* status and metrics show it like a background pass */
        gd_scrubber_record(gd_registry_scrubber(c->r->reg), c->name, deep, &res,
                           gfs_now_ms() - t0);
    if (rc < 0)
        return rest_fail(c, rest_status_for(rc), "scrub of export %s failed: %s (see the glidefsd "
                         "log)", c->name, glidefs_strerror(rc));
    static const char *kinds[] = {"?", "missing", "truncated", "bad_header", "damaged",
                                  "snapshot", "orphan"};
    json_t *list = json_array();
    uint64_t mended = 0;
    for (uint32_t i = 0; list && i < res.nfindings && i < GLIDEFS_SCRUB_FINDINGS; i++) {
        const struct glidefs_scrub_finding *f = &res.findings[i];
        bool ok = f->flags & (GLIDEFS_SCRUB_FOUND_REPAIRED | GLIDEFS_SCRUB_FOUND_DELETED);
        mended += ok;
        json_t *o = f->kind == GLIDEFS_SCRUB_DAMAGED_BLOCK
                        ? json_pack("{s:s, s:s, s:I, s:I, s:b}", "kind", kinds[f->kind], "key",
                                    f->key, "offset", J(f->offset), "length", J(f->length),
                                    "repaired", ok)
                    : f->kind == GLIDEFS_SCRUB_ORPHAN
                        ? json_pack("{s:s, s:s, s:I, s:b}", "kind", kinds[f->kind], "key", f->key,
                                    "size", J(f->length), "deleted", ok)
                        : json_pack("{s:s, s:s, s:b}", "kind",
                                    f->kind < 7 ? kinds[f->kind] : "?", "key", f->key,
                                    "repaired", ok);
        if (!o || json_array_append_new(list, o) < 0) {
            json_decref(list);
            list = NULL;
        }
    }
    if (!list)
        return rest_fail(c, 500, "out of memory");
    uint64_t bad = res.missing_segments + res.size_mismatches + res.bad_headers +
                   res.damaged_blocks + res.bad_snapshots + res.orphan_objects;
    if (bad)
        gd_info("api: scrub of export %s found %" PRIu64 " problems", c->name, bad);
    /* every finding listed (none left out) and mended */
    bool all_mended = (fix || del) && bad && res.nfindings == bad && mended == bad &&
                      res.unrepaired_blocks == 0;
    return rest_ok(c, 200, json_pack("{s:s, s:b, s:b, s:b, s:b, s:I, s:I, s:b, s:I, s:I, s:I, "
                                     "s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:I}",
                                     "name", c->name, "deep", deep, "repair", fix,
                                     "delete_orphans", del,
                                     "repaired", all_mended,
                                     "repaired_blocks", J(res.repaired_blocks),
                                     "unrepaired_blocks", J(res.unrepaired_blocks),
                                     "clean", bad == 0,
                                     "segments_checked", J(res.segments_checked),
                                     "blocks_checked", J(res.blocks_checked),
                                     "bytes_read", J(res.bytes_read),
                                     "missing_segments", J(res.missing_segments),
                                     "size_mismatches", J(res.size_mismatches),
                                     "bad_headers", J(res.bad_headers),
                                     "damaged_blocks", J(res.damaged_blocks),
                                     "bad_snapshots", J(res.bad_snapshots),
                                     "orphan_objects", J(res.orphan_objects),
                                     "orphan_bytes", J(res.orphan_bytes),
                                     "orphans_deleted", J(res.orphans_deleted), "findings", list,
                                     "duration_ms", J(gfs_now_ms() - t0)));
}

/* Rotate the data key of an encrypted export (glidefs_volume_rotate_key): the
 * password stays in glidefsd's configuration, nothing secret travels. */
int rest_h_rotate_key(struct call *c)
{
    struct gd_export *e = NULL;
    if (get_export(c, WRITER, &e) < 0)
        return -1;
    glidefs_volume *vol = gd_export_volume(e);
    int rc = glidefs_volume_rotate_key(vol, 0);
    struct glidefs_stats st;
    memset(&st, 0, sizeof st);
    if (rc == 0)
        rc = glidefs_stats(vol, &st, sizeof st);
    gd_export_release(e, 0);
    if (rc == -EINVAL)
        return rest_fail(c, 400, "export %s is not encrypted: there is no data key to rotate",
                         c->name);
    if (rc == -EROFS)
        return rest_fail(c, 409, "export %s is read-only on this node: only the write lease holder "
                         "rotates its key (promote it first, or rotate on the node that writes)",
                         c->name);
    if (rc == -ENOSPC)
        return rest_fail(c, 409, "export %s holds 16 data key generations: let compaction re-seal "
                         "and retire older ones first (segments_old_key in its status)", c->name);
    if (rc < 0)
        return rest_fail(c, rest_status_for(rc), "key rotation of export %s failed: %s (see the "
                         "glidefsd log)", c->name, glidefs_strerror(rc));
    gd_info("api: export %s: data key rotated to generation %" PRIu64 "; %" PRIu64
            " segments to re-seal", c->name, st.key_generation, st.segments_old_key);
    return rest_ok(c, 200, json_pack("{s:s, s:I, s:I, s:I}", "name", c->name, "key_generation",
                                     J(st.key_generation), "key_generations",
                                     J(st.key_generations), "segments_old_key",
                                     J(st.segments_old_key)));
}

/* ------------------------------------------------------------------------ */
/* Fenced data: what a node wrote under a lease it lost (kept aside at open)  */
/* ------------------------------------------------------------------------ */

/* Open (like drain) the export and check it has fenced data kept aside.
 * 0, or -1 after rest_fail(). */
static int get_fenced(struct call *c, struct gd_export **e, struct glidefs_stats *st)
{
    if (get_export(c, 0, e) < 0)
        return -1;
    if (export_stats(c, *e, st) < 0) {
        gd_export_release(*e, 0);
        return -1;
    }
    if (st->fenced_bytes == 0) {
        gd_export_release(*e, 0);
        return rest_fail(c, 409, "export %s has no fenced data kept aside on this node%s", c->name,
                         st->fenced ? " yet (it is set aside when the export is next opened: "
                                 "disconnect its clients)" : "");
    }
    return 0;
}

int rest_h_fenced_discard(struct call *c)
{
    if (rest_empty_body(c) < 0) /* no body expected; refuse one rather than ignore it */
        return -1;
    struct gd_export *e = NULL;
    struct glidefs_stats st;
    if (get_fenced(c, &e, &st) < 0)
        return -1;
    int rc = glidefs_fenced_discard(gd_export_volume(e));
    if (rc < 0) {
        gd_export_release(e, 0);
        return rest_fail(c, rest_status_for(rc), "discarding the fenced data of export %s failed: %s",
                         c->name, glidefs_strerror(rc));
    }
    gd_warn("api: export %s: discarded %" PRIu64 " bytes of fenced data (never uploaded)",
            c->name, st.fenced_bytes);
    return answer_export(c, 200, e, "discarded_bytes", json_integer(J(st.fenced_bytes)));
}

/* POST .../fenced/export {"path": "NAME" or "/export/dir/NAME"}: the fenced
 * node's view as a sparse raw image. glidefsd may run as root and its API
 * may have no token, so it writes only into servers.api.export_dir (none
 * set: 403), a new file (O_EXCL, no symlink followed, mode 0600) that never
 * overwrites anything. A failed export removes what it created. */
int rest_h_fenced_export(struct call *c)
{
    json_t *j = rest_body_object(c);
    if (!j)
        return -1;
    if (rest_only_fields(c, j, "path") < 0) {
        json_decref(j);
        return -1;
    }
    json_t *jp = json_object_get(j, "path");
    if (!json_is_string(jp)) {
        json_decref(j);
        return rest_fail(c, 400, "\"path\" (a string: a file name in servers.api.export_dir, or "
                            "an absolute path there) is required");
    }
    char req[4096];
    size_t plen = json_string_length(jp);
    int bad = plen == 0 || plen >= sizeof req || strlen(json_string_value(jp)) != plen;
    if (!bad)
        memcpy(req, json_string_value(jp), plen + 1);
    json_decref(j);
    if (bad)
        return rest_fail(c, 400, "\"path\" must be a file name or an absolute path");
    const char *xdir = c->r->cfg->api_export_dir;
    if (!xdir || !*xdir)
        return rest_fail(c, 403, "the API writes files only into servers.api.export_dir, which is "
                            "not set: set it, or run glidefs-image export-fenced on the host");
    /* the file's name, and the directory it must be in */
    const char *slash = strrchr(req, '/');
    const char *fname = slash ? slash + 1 : req;
    if (!*fname || strcmp(fname, ".") == 0 || strcmp(fname, "..") == 0)
        return rest_fail(c, 400, "\"path\" must name a file");
    char xreal[PATH_MAX], dreal[PATH_MAX];
    if (!realpath(xdir, xreal))
        return rest_fail(c, 500, "servers.api.export_dir (%s): %s", xdir, strerror(errno));
    if (slash) {
        char dir[4096];
        memcpy(dir, req, (size_t)(slash - req));
        dir[slash - req] = 0;
        if (req[0] != '/' || !realpath(dir[0] ? dir : "/", dreal) || strcmp(dreal, xreal) != 0)
            return rest_fail(c, 400, "\"path\" must be a file name, or a path in "
                                "servers.api.export_dir (%s)", xdir);
    }
    char path[PATH_MAX + 256];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", xreal, fname) >= sizeof path)
        return rest_fail(c, 400, "\"path\" is too long");

    struct gd_export *e = NULL;
    struct glidefs_stats st;
    if (get_fenced(c, &e, &st) < 0)
        return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int err = errno;
        gd_export_release(e, 0);
        if (err == EEXIST)
            return rest_fail(c, 409, "%s exists: the export never overwrites a file (choose a new "
                             "path, or remove it)", path);
        return rest_fail(c, err == EACCES || err == EPERM ? 403 : 400, "cannot create %s: %s", path,
                         strerror(err));
    }
    int64_t t0 = gfs_now_ms();
    uint64_t epoch = 0;
    int rc = glidefs_fenced_export(gd_export_volume(e), fd, &epoch);
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0) {
        unlink(path);
        gd_export_release(e, 0);
        if (rc == -ENODATA)
            return rest_fail(c, 410, "export %s: the store no longer holds all of this node's view "
                             "of its epoch (the newer writer has compacted it away); nothing was "
                             "written; the fenced data stays kept aside", c->name);
        if (rc == -ENOENT)
            return rest_fail(c, 409, "export %s has no fenced data kept aside on this node", c->name);
        return rest_fail(c, rest_status_for(rc), "exporting the fenced data of export %s failed: %s "
                         "(see the glidefsd log); %s was removed", c->name, glidefs_strerror(rc),
                         path);
    }
    gd_info("api: export %s: fenced view of epoch %" PRIu64 " written to %s", c->name, epoch,
            path);
    return answer_export(c, 200, e, NULL,
                         json_pack("{s:{s:s, s:I, s:I, s:I}}", "fenced_export", "path", path,
                                   "epoch", J(epoch), "size_bytes", J(st.size_bytes),
                                   "duration_ms", J(gfs_now_ms() - t0)));
}

/* ------------------------------------------------------------------------ */
/* Snapshots and clones                                                      */
/* ------------------------------------------------------------------------ */

#define SNAPSHOT_RETRIES 5 /* -EAGAIN: a write landed between drain and snapshot */

/* Between two snapshot tries: 20 ms doubling, with jitter (no store request
 * is retried without a pause: daemon/README.md, "Lease hand-over and retries") */
static void snapshot_pause(int tries)
{
    long ms = 20L << (tries < 5 ? tries : 5);
    ms = ms / 2 + (long)((unsigned long)gfs_now_ms() * 2654435761u % (unsigned long)(ms / 2 + 1));
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The pre-drain of a snapshot (or of a live clone), in slices so that
 * SIGTERM is not held up; glidefs_snapshot_create()'s own drain then has
 * only what was written meanwhile. 0, or -1 after rest_fail(). */
static int snapshot_drain(struct call *c, glidefs_volume *vol, const char *what,
                          int64_t timeout_s)
{
    struct glidefs_stats st;
    memset(&st, 0, sizeof st);
    glidefs_stats(vol, &st, sizeof st);
    rest_drain_mark(c->r, c->name, st.dirty_bytes);
    int rc = drain_sliced(c->r, vol, timeout_s > 0 ? timeout_s * 1000 : -1);
    drain_unmark(c->r, c->name);
    if (rc == 0)
        return 0;
    if (rc == -ETIMEDOUT)
        return rest_fail(c, 504, "%s: export %s did not drain within %" PRId64 " s, so nothing was "
                         "taken; the syncer keeps uploading (retry with a longer ?timeout_s=)", what,
                         c->name, timeout_s);
    if (rc == -ESHUTDOWN)
        return rest_fail(c, 503, "glidefsd is shutting down");
    if (rc == -EROFS)
        return rest_fail(c, 409, "%s: export %s is read-only on this node (another node holds its "
                         "write lease, or it is fenced): only the writer can %s", what, c->name,
                         strcmp(what, "snapshot") == 0 ? "take a snapshot"
                                                  : "clone its live state (a clone of a named "
                                                    "snapshot works on any node)");
    return rest_fail(c, rest_status_for(rc), "%s: the drain of export %s failed: %s; nothing was taken "
                     "(see the glidefsd log)", what, c->name, glidefs_strerror(rc));
}

struct snap_find {
    const char *name;
    json_t *found;  /* the snapshot's object, when name matches */
    json_t *all;    /* or every snapshot, when name is NULL */
};

static json_t *snapshot_json(const char *name, int64_t created_ms, uint64_t size)
{
    char iso[40] = "";
    if (created_ms > 0)
        gd_metrics_iso_time(created_ms, iso, sizeof iso);
    return json_pack("{s:s, s:I, s:s?, s:I}", "name", name, "created_ms", J(created_ms),
                     "created", iso[0] ? iso : NULL, "size_bytes", J(size));
}

static int snap_find_fn(void *arg, const char *name, int64_t created_ms, uint64_t size)
{
    struct snap_find *f = arg;
    if (f->name && strcmp(f->name, name) != 0)
        return 0;
    json_t *o = snapshot_json(name, created_ms, size);
    if (!o)
        return -ENOMEM;
    if (f->name) {
        f->found = o;
        return 1; /* stop */
    }
    return json_array_append_new(f->all, o) < 0 ? -ENOMEM : 0;
}

int rest_h_snapshot_create(struct call *c)
{
    int64_t timeout_s = -1;
    if (rest_param_seconds(c, "timeout_s", &timeout_s) < 0)
        return -1;
    json_t *j = rest_body_object(c);
    if (!j)
        return -1;
    char snap[GLIDEFS_NAME_MAX + 1];
    int rc = rest_only_fields(c, j, "name");
    if (rc == 0)
        rc = body_name(c, j, "name", "snapshot", snap, sizeof snap);
    json_decref(j);
    if (rc < 0)
        return -1;
    struct gd_export *e = NULL;
    if (get_export(c, WRITER, &e) < 0)
        return -1;
    glidefs_volume *vol = gd_export_volume(e);
    int64_t t0 = gfs_now_ms();
    if (glidefs_volume_read_only(vol)) {
        gd_export_release(e, 0);
        return rest_fail(c, 409, "snapshot: export %s is read-only on this node (another node holds "
                         "its write lease, or it is fenced): take the snapshot on the writer, or "
                         "promote it here first", c->name);
    }
    if (snapshot_drain(c, vol, "snapshot", timeout_s) < 0) {
        gd_export_release(e, 0);
        return -1;
    }
    for (int tries = 1;; tries++) {
        rc = glidefs_snapshot_create(vol, snap);
        if (rc != -EAGAIN || tries == SNAPSHOT_RETRIES)
            break;
        snapshot_pause(tries);
    }
    struct snap_find f = { .name = snap };
    uint64_t size = glidefs_volume_size(vol);
    if (rc == 0)
        glidefs_snapshot_list(vol, snap_find_fn, &f);
    gd_export_release(e, 0);
    switch (rc) {
    case 0:
        break;
    case -EEXIST:
        return rest_fail(c, 409, "export %s already has a snapshot %s (GET /api/exports/%s/snapshots "
                         "lists them; delete it first to reuse the name)", c->name, snap, c->name);
    case -EROFS:
        return rest_fail(c, 409, "snapshot: export %s is not the writer on this node (its write "
                         "lease was taken by another node)", c->name);
    case -EAGAIN:
        return rest_fail(c, 409, "snapshot of export %s: writes kept arriving between the drain and "
                         "the snapshot; retry (or pause the writer)", c->name);
    default:
        return rest_fail(c, rest_status_for(rc), "snapshot %s of export %s failed: %s (see the glidefsd "
                         "log)", snap, c->name, glidefs_strerror(rc));
    }
    int64_t took = gfs_now_ms() - t0;
    gd_info("api: export %s: snapshot %s taken in %" PRId64 " ms", c->name, snap, took);
    json_t *o = f.found ? f.found : snapshot_json(snap, gfs_wall_ms(), size);
    if (o) {
        json_object_set_new(o, "export", json_string(c->name));
        json_object_set_new(o, "duration_ms", json_integer(J(took)));
    }
    snprintf(c->location, sizeof c->location, "/api/exports/%s/snapshots/%s", c->name, snap);
    return rest_ok(c, 201, o);
}

int rest_h_snapshot_list(struct call *c)
{
    struct gd_export *e = NULL;
    if (get_export(c, 0, &e) < 0)
        return -1;
    struct snap_find f = { .all = json_array() };
    int rc = f.all ? glidefs_snapshot_list(gd_export_volume(e), snap_find_fn, &f) : -ENOMEM;
    gd_export_release(e, 0);
    if (rc < 0) {
        json_decref(f.all);
        return rest_fail(c, rest_status_for(rc), "cannot list the snapshots of export %s: %s", c->name,
                         glidefs_strerror(rc));
    }
    return rest_ok(c, 200, json_pack("{s:s, s:o}", "export", c->name, "snapshots", f.all));
}

int rest_h_snapshot_delete(struct call *c)
{
    struct gd_export *e = NULL;
    if (get_export(c, WRITER, &e) < 0)
        return -1;
    int rc = glidefs_snapshot_delete(gd_export_volume(e), c->snap);
    gd_export_release(e, 0);
    switch (rc) {
    case 0:
        gd_info("api: export %s: snapshot %s deleted", c->name, c->snap);
        return rest_ok(c, 200, json_pack("{s:s, s:s, s:b}", "export", c->name, "name", c->snap,
                                    "deleted", 1));
    case -ENOENT:
        return rest_fail(c, 404, "export %s has no snapshot %s (GET /api/exports/%s/snapshots lists "
                         "them)", c->name, c->snap, c->name);
    case -EBUSY:
        return rest_fail(c, 409, "snapshot %s of export %s is in use by a clone: delete the clones "
                         "made from it first (DELETE /api/exports/CLONE?purge=true)", c->snap,
                         c->name);
    case -EROFS:
        return rest_fail(c, 409, "export %s is read-only on this node (another node holds its write "
                         "lease, or it is fenced): delete the snapshot on the writer", c->name);
    default:
        return rest_fail(c, rest_status_for(rc), "cannot delete snapshot %s of export %s: %s (see the "
                         "glidefsd log)", c->snap, c->name, glidefs_strerror(rc));
    }
}

/* POST /api/exports {"name": child, "clone_of": parent[, "snapshot": snap]}:
 * glidefs_clone (of the parent's current state when snap is NULL), then open
 * the child like a created export and answer with it (201). */
static int clone_export(struct call *c, const char *child, const char *parent, const char *snap)
{
    if (strcmp(child, parent) == 0)
        return rest_fail(c, 400, "a volume cannot be a clone of itself: give the clone a new name");
    int64_t t0 = gfs_now_ms();
    /* The child must not exist: answered before anything is written. */
    struct gd_export *e = NULL;
    int rc = gd_export_acquire_ex(c->r->reg, child, 0, 0, GD_ACQUIRE_OPEN_ONLY, &e);
    if (rc == 0) {
        gd_export_release(e, 0);
        rc = 1;
    } else {
        rc = glidefs_volume_exists(c->r->cfg, child);
    }
    if (rc > 0)
        return rest_fail(c, 409, "export %s already exists: a clone needs a new name", child);
    if (rc < 0)
        return rest_fail(c, rest_status_for(rc), "cannot tell whether export %s exists: %s (see the "
                         "glidefsd log)", child, glidefs_strerror(rc));
    c->name = parent;
    rc = get_export(c, snap ? 0 : WRITER, &e);
    c->name = NULL; /* points at the caller's frame */
    if (rc < 0)
        return -1;
    glidefs_volume *vol = gd_export_volume(e);
    if (!snap) {
        c->name = parent;
        rc = glidefs_volume_read_only(vol)
                 ? rest_fail(c, 409, "clone: export %s is read-only on this node (another node holds "
                             "its write lease): clone its live state on the writer, or clone a named "
                             "snapshot (\"snapshot\": \"NAME\")", parent)
                 : snapshot_drain(c, vol, "clone", -1);
        c->name = NULL;
        if (rc < 0) {
            gd_export_release(e, 0);
            return -1;
        }
    }
    /* Exists check and clone as one step on this node: glidefs_clone writes
     * the parent's children/<child> marker before it finds out that the
     * child exists (see the header comment). */
    pthread_mutex_lock(&c->r->clone_lock);
    rc = glidefs_volume_exists(c->r->cfg, child);
    int64_t tc = gfs_now_ms();
    if (rc == 0) {
        for (int tries = 1;; tries++) {
            rc = glidefs_clone(vol, snap, child);
            if (rc != -EAGAIN || snap || tries == SNAPSHOT_RETRIES)
                break;
            snapshot_pause(tries);
        }
    } else if (rc > 0) {
        rc = -EEXIST;
    }
    int64_t clone_ms = gfs_now_ms() - tc;
    pthread_mutex_unlock(&c->r->clone_lock);
    gd_export_release(e, 0);
    switch (rc) {
    case 0:
        break;
    case -EEXIST:
        return rest_fail(c, 409, "export %s already exists (or its name is kept by a deleted volume "
                         "that live clones still need): a clone needs a new name", child);
    case -ENOENT:
        if (snap)
            return rest_fail(c, 404, "export %s has no snapshot %s (GET /api/exports/%s/snapshots "
                             "lists them)", parent, snap, parent);
        return rest_fail(c, 404, "clone of %s: its implicit snapshot vanished; retry", parent);
    case -EMLINK:
        return rest_fail(c, 409, "export %s is a clone too many levels deep to be cloned again; "
                         "clone one of its ancestors instead", parent);
    case -EROFS:
        return rest_fail(c, 409, "clone: export %s is not the writer on this node: clone its live "
                         "state on the writer, or clone a named snapshot", parent);
    case -EAGAIN:
        return rest_fail(c, 409, "clone of export %s: writes kept arriving while its state was "
                         "taken; retry, or clone a named snapshot", parent);
    default:
        return rest_fail(c, rest_status_for(rc), "clone of export %s into %s failed: %s (see the glidefsd "
                         "log)", parent, child, glidefs_strerror(rc));
    }
    gd_info("api: export %s cloned from %s (%s%s) in %" PRId64 " ms", child, parent,
            snap ? "snapshot " : "its current state", snap ? snap : "", clone_ms);
    rc = gd_export_acquire_ex(c->r->reg, child, 0, 0, 0, &e);
    c->name = child;
    if (rc < 0) {
        rest_fail(c, rest_status_for(rc == -ENOENT ? -EIO : rc), "export %s was cloned from %s but cannot "
                  "be opened: %s (see the glidefsd log)", child, parent, glidefs_strerror(rc));
        c->name = NULL;
        return -1;
    }
    snprintf(c->location, sizeof c->location, "/api/exports/%s", child);
    json_t *extra = json_pack("{s:{s:s, s:o}, s:I, s:I}", "parent", "name", parent, "snapshot",
                              snap_name_json(snap), "clone_ms", J(clone_ms), "duration_ms",
                              J(gfs_now_ms() - t0));
    rc = answer_export(c, 201, e, NULL, extra);
    c->name = NULL;
    return rc;
}

/* A forced delete disconnects the export's NBD clients and vhost-user
 * frontends alike. */
static void kick_clients(void *arg, struct gd_export *e)
{
    struct gd_rest *r = arg;
    if (r->srv)
        gd_server_kick_export(r->srv, e);
    gd_vhost_kick_export(r->vhost, e);
}

int rest_h_delete(struct call *c)
{
    bool force = false, purge = false;
    int64_t timeout_s = DELETE_DRAIN_DEFAULT_S;
    if (rest_param_bool(c, "force", &force) < 0 || rest_param_bool(c, "purge", &purge) < 0 ||
        rest_param_seconds(c, "timeout_s", &timeout_s) < 0)
        return -1;
    struct gd_export *e = NULL;
    if (get_export(c, purge ? WRITER : 0, &e) < 0)
        return -1;
    struct glidefs_stats st;
    if (export_stats(c, e, &st) < 0) {
        gd_export_release(e, 0);
        return -1;
    }
    int conns = gd_export_conns(e);
    if (purge && !st.lease_owner && !force) {
        gd_export_release(e, 0);
        return rest_fail(c, 409, "export %s: this node does not hold the write lease; purging would "
                         "delete the volume under the node that does. Delete it there, or use "
                         "?force=true", c->name);
    }
    if (conns > 0 && !force) {
        gd_export_release(e, 0);
        return rest_fail(c, 409, "export %s has %d client connection(s): disconnect them first, or "
                         "use ?force=true to disconnect them", c->name, conns);
    }
    gd_info("api: deleting export %s%s%s", c->name, purge ? " and its objects in the store" : "",
            force ? " (forced)" : "");
    /* Drain first, in slices (SIGTERM is not held up) and before any client
     * is disconnected: if it fails, nothing has changed. The registry's
     * drain after the clients are gone then has little left. */
    int64_t t0 = gfs_now_ms();
    rest_drain_mark(c->r, c->name, st.dirty_bytes);
    int rc = drain_sliced(c->r, gd_export_volume(e), timeout_s * 1000);
    drain_unmark(c->r, c->name);
    if (rc < 0 && !(rc == -EROFS && force)) {
        gd_export_release(e, 0);
    } else {
        int64_t left = timeout_s * 1000 - (gfs_now_ms() - t0);
        rc = gd_export_remove(e, force, purge, left < 1000 ? 1000 : left > 10000 ? 10000 : left,
                              kick_clients, c->r);
    }
    switch (rc) {
    case 0:
        return rest_ok(c, 200, json_pack("{s:s, s:b, s:b, s:I}", "name", c->name, "deleted", 1,
                                    "purged", purge, "connections_closed",
                                    J(force ? conns : 0)));
    case -EBUSY:
        return rest_fail(c, 409, "export %s has client connections: disconnect them first, or use "
                         "?force=true to disconnect them", c->name);
    case -EAGAIN:
        return rest_fail(c, 409, "export %s is in use by another request or being removed; retry "
                         "shortly", c->name);
    case -ETIMEDOUT:
        return rest_fail(c, 504, "export %s: the drain did not finish within %" PRId64 " s, so "
                         "nothing was deleted (unsynced data is never thrown away). Check the store "
                         "(last_error in GET /api/exports/%s) and retry, with a longer ?timeout_s= if "
                         "needed", c->name, timeout_s, c->name);
    case -EROFS:
        return rest_fail(c, 409, "export %s holds local data it may not upload (another node took "
                         "its write lease), so nothing was deleted; ?force=true discards that data",
                         c->name);
    case -ESHUTDOWN:
        return rest_fail(c, 503, "glidefsd is shutting down");
    default: {
        /* Still open: the drain failed and nothing was deleted. Gone: it was
         * closed, and deleting its files or objects failed part way. */
        struct gd_export *still = NULL;
        bool open = gd_export_acquire_ex(c->r->reg, c->name, 0, 0, GD_ACQUIRE_OPEN_ONLY,
                                         &still) == 0;
        if (open) {
            gd_export_release_peek(still);
            return rest_fail(c, rest_status_for(rc), "export %s: the drain failed (%s), so nothing was "
                             "deleted; check the store and the glidefsd log, then retry", c->name,
                             glidefs_strerror(rc));
        }
        return rest_fail(c, rest_status_for(rc), "export %s was closed, but deleting its %s failed: %s; "
                         "retry the delete (see the glidefsd log)", c->name,
                         purge ? "local files or objects in the store" : "local files",
                         glidefs_strerror(rc));
    }
    }
}
